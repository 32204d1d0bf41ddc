// The focused element's focus indicator, for the browser test: "" when it
// has an outline of at least 3:1 contrast against the background around it
// (WCAG 2.2's focus appearance), else what is wrong.
(() => {
  const el = document.activeElement;
  const cs = getComputedStyle(el);
  const name = el.tagName.toLowerCase() + (el.id ? '#' + el.id : '') + ' "' + el.textContent.trim().slice(0, 30) + '"';
  if (cs.outlineStyle === 'none' || parseFloat(cs.outlineWidth) < 2) return name + ' shows no focus outline';
  const lum = (c) => {
    const p = /rgba?\(([^)]+)\)/.exec(c)[1].split(/[ ,/]+/).filter(Boolean).map(parseFloat);
    const lin = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); };
    return { l: 0.2126 * lin(p[0]) + 0.7152 * lin(p[1]) + 0.0722 * lin(p[2]), a: p.length > 3 ? p[3] : 1 };
  };
  let bg = 1;
  for (let e = el.parentElement; e; e = e.parentElement) {
    const c = lum(getComputedStyle(e).backgroundColor);
    if (c.a > 0) { bg = c.l; break; }
  }
  const fg = lum(cs.outlineColor).l;
  const ratio = (Math.max(fg, bg) + 0.05) / (Math.min(fg, bg) + 0.05);
  return ratio < 3 ? name + ': focus outline contrast ' + ratio.toFixed(2) + ':1, want 3:1' : '';
})()
