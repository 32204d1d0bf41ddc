// The browser test's accessibility audit of the page shown, an array of
// problems (empty: none): text below WCAG AA contrast (4.5:1, 3:1 for
// large text) against the background it is drawn on, form fields without
// a label, links and buttons without a name, images without alt, and a
// page without a language, a title or exactly one h1.
(() => {
  const problems = [];
  const rgba = (c) => {
    const m = /rgba?\(([^)]+)\)/.exec(c);
    if (!m) return null;
    const p = m[1].split(/[ ,/]+/).filter(Boolean).map(parseFloat);
    const lin = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); };
    return { l: 0.2126 * lin(p[0]) + 0.7152 * lin(p[1]) + 0.0722 * lin(p[2]), a: p.length > 3 ? p[3] : 1 };
  };
  const background = (el) => {
    for (let e = el; e; e = e.parentElement) {
      const c = rgba(getComputedStyle(e).backgroundColor);
      if (c && c.a > 0) return c.l;
    }
    return 1; // the canvas: white
  };
  const name = (el) => el.tagName.toLowerCase() + (el.id ? '#' + el.id : '') + (typeof el.className === 'string' && el.className ? '.' + el.className.trim().split(/\s+/).join('.') : '');
  for (const el of document.querySelectorAll('body *')) {
    if (el.closest('svg')) continue; // the graphs carry a title and a description instead
    const cs = getComputedStyle(el);
    if (cs.visibility === 'hidden' || el.getClientRects().length === 0) continue;
    if (![...el.childNodes].some((n) => n.nodeType === Node.TEXT_NODE && n.textContent.trim())) continue;
    const fg = rgba(cs.color).l, bg = background(el);
    const ratio = (Math.max(fg, bg) + 0.05) / (Math.min(fg, bg) + 0.05);
    const size = parseFloat(cs.fontSize), bold = parseInt(cs.fontWeight, 10) >= 700;
    const least = size >= 24 || (size >= 18.66 && bold) ? 3 : 4.5;
    if (ratio < least) problems.push('contrast ' + ratio.toFixed(2) + ':1 (want ' + least + ':1) of ' + name(el) + ' "' + el.textContent.trim().slice(0, 40) + '"');
  }
  for (const el of document.querySelectorAll('input, select, textarea')) {
    if (el.type === 'hidden') continue;
    if (!(el.labels && el.labels.length) && !el.getAttribute('aria-label') && !el.getAttribute('aria-labelledby')) problems.push('form field without a label: ' + name(el));
  }
  for (const el of document.querySelectorAll('a[href], button, summary')) {
    if (!el.textContent.trim() && !el.getAttribute('aria-label')) problems.push('no accessible name: ' + name(el));
  }
  for (const el of document.querySelectorAll('img')) if (!el.hasAttribute('alt')) problems.push('image without alt: ' + name(el));
  if (!document.documentElement.lang) problems.push('no lang on <html>');
  if (!document.title) problems.push('no <title>');
  const h1 = document.querySelectorAll('h1').length;
  if (h1 !== 1) problems.push(h1 + ' h1 elements, want 1');
  return [...new Set(problems)];
})()
