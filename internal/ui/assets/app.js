'use strict';
// The isolationd console: every page reads the JSON API with the session
// cookie (the browser sends it; no script can read it). Data goes into the
// page as text nodes only, never as HTML. The API decides what the session
// may see; the console only leaves out sections its role cannot read, so
// that it does not ask for what would be refused.

// ---- DOM helpers ----------------------------------------------------------

// h builds an element: attrs are attributes, except text (its text) and
// on* (listeners); children are nodes, strings, or arrays of them.
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  setAttrs(el, attrs);
  append(el, children);
  return el;
}

const SVG = 'http://www.w3.org/2000/svg';

function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG, tag);
  setAttrs(el, attrs);
  append(el, children);
  return el;
}

function setAttrs(el, attrs) {
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'text') el.textContent = v;
    else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

function pill(text, kind) { return h('span', { class: 'pill' + (kind ? ' ' + kind : ''), text }); }

function code(text) { return h('code', { text }); }

// ---- the API --------------------------------------------------------------

class APIError extends Error {
  constructor(status, problem) {
    super((problem && (problem.detail || problem.title)) || ('HTTP ' + status));
    this.status = status;
    this.problem = problem;
  }
}

// api calls the API with the session's cookie; a 401 means the session is
// over (signed out, expired, or its token revoked): back to sign-in.
async function api(path, opts = {}) {
  const init = { credentials: 'same-origin', headers: { 'Accept': 'application/json' }, ...opts };
  if (opts.body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(opts.body);
  }
  const res = await fetch(path, init);
  if (res.status === 401) {
    location.assign('/ui/sign-in');
    throw new APIError(401, null);
  }
  const body = res.status === 204 ? null : await res.json();
  if (!res.ok) throw new APIError(res.status, body);
  return body;
}

// listAll reads every page of a list, up to maxPages.
async function listAll(path, maxPages = 50) {
  const sep = path.includes('?') ? '&' : '?';
  let items = [];
  let cursor = '';
  for (let i = 0; i < maxPages; i++) {
    const page = await api(path + sep + 'limit=1000' + (cursor ? '&cursor=' + encodeURIComponent(cursor) : ''));
    items = items.concat(page.items);
    cursor = page.next_cursor || '';
    if (!cursor) break;
  }
  return items;
}

// ---- formatting -----------------------------------------------------------

const STATES = ['pending', 'provisioning', 'ready', 'updating', 'failed', 'deleting', 'expired'];

function stateKind(state) {
  if (state === 'ready' || state === 'running') return 'ok';
  if (state === 'failed' || state === 'expired' || state === 'exited') return 'bad';
  return 'warn';
}

function duration(ms) {
  const sec = Math.round(Math.abs(ms) / 1000);
  const d = Math.floor(sec / 86400), hr = Math.floor(sec / 3600) % 24, m = Math.floor(sec / 60) % 60;
  if (d) return d + 'd ' + hr + 'h';
  if (hr) return hr + 'h ' + m + 'm';
  if (m) return m + 'm';
  return sec + 's';
}

function ttl(env) {
  if (!env.expires_at) return '—';
  const left = Date.parse(env.expires_at) - Date.now();
  return left > 0 ? 'expires in ' + duration(left) : 'expired';
}

function when(t) { return t ? new Date(t).toISOString().replace('T', ' ').replace(/\.\d+Z$/, 'Z') : '—'; }

function labelsText(labels) {
  return Object.entries(labels || {}).map(([k, v]) => k + '=' + v).join(', ');
}

function portsText(ports) {
  if (!ports || ports.length === 0) return 'all ports';
  return ports.map((p) => {
    const proto = p.protocol || 'tcp';
    if (p.port === undefined || p.port === null) return proto + ' (all)';
    return proto + '/' + p.port + (p.end_port ? '-' + p.end_port : '');
  }).join(', ');
}

function peerText(p) {
  if (p.cidr) return 'CIDR ' + p.cidr + (p.except && p.except.length ? ' except ' + p.except.join(', ') : '');
  if (p.fqdn) return 'name ' + p.fqdn;
  if (p.environment_selector) {
    const sel = labelsText(p.environment_selector.match_labels);
    const envs = (p.environments || []).map((e) => e.name).join(', ');
    return 'environments ' + (sel ? '(' + sel + ')' : '(all of the project)') + (envs ? ': ' + envs : ': none now');
  }
  return 'anywhere';
}

function enforcementText(e) {
  const en = e.enforcement || {};
  const gen = 'generation ' + (en.observed_generation || 0) + '/' + (en.generation || 0);
  return [pill(en.enforced ? 'enforced' : 'not enforced', en.enforced ? 'ok' : 'warn'), ' ', h('span', { class: 'muted', text: gen })];
}

// ---- the frame ------------------------------------------------------------

const main = () => document.getElementById('main');

function page(title, ...content) {
  document.title = title + ' · isolationd console';
  const m = main();
  m.replaceChildren(h('h1', { text: title }), ...content.flat());
}

function failure(err) {
  return h('p', { class: 'error', role: 'alert', text: err.message });
}

let me = null;

function mayReadPolicies() { return me && me.role !== 'developer' && me.role !== 'session'; }
function mayReadAudit() { return me && (me.role === 'admin' || me.role === 'auditor'); }
function orgWide() { return me && (me.role === 'admin' || me.role === 'auditor'); }

async function frame(section) {
  me = await api('/v1/whoami');
  const who = document.getElementById('who');
  who.replaceChildren('Signed in as ', h('strong', { text: me.name || me.token_id }), ' (' + me.role + (me.project_name ? ' of ' + me.project_name : '') + ')');
  for (const a of document.querySelectorAll('#nav a')) {
    const need = a.dataset.needs;
    if ((need === 'policies' && !mayReadPolicies()) || (need === 'audit' && !mayReadAudit())) a.parentElement.hidden = true;
    if (a.dataset.section === section) a.setAttribute('aria-current', 'page');
  }
  document.getElementById('sign-out').addEventListener('click', signOut);
}

async function signOut() {
  try {
    await fetch('/v1/ui/sessions/current', { method: 'DELETE', credentials: 'same-origin' });
  } finally {
    location.assign('/ui/sign-in');
  }
}

// projects returns the projects the session sees, by id.
async function projects() {
  if (!orgWide()) {
    return me.project_id ? new Map([[me.project_id, { id: me.project_id, name: me.project_name || me.project_id }]]) : new Map();
  }
  const list = await listAll('/v1/projects');
  return new Map(list.map((p) => [p.id, p]));
}

function projectName(prjs, id) {
  const p = prjs.get(id);
  return p ? p.name : id;
}

// ---- environments ---------------------------------------------------------

function select(id, label, options, value) {
  return h('div', {},
    h('label', { for: id, text: label }),
    h('select', { id, name: id }, options.map(([v, t]) => h('option', { value: v, text: t, selected: v === value }))));
}

function textInput(id, label, value, attrs = {}) {
  return h('div', {},
    h('label', { for: id, text: label }),
    h('input', { id, name: id, type: 'text', value: value || '', ...attrs }));
}

async function environmentsPage() {
  const q = new URLSearchParams(location.search);
  const filters = new URLSearchParams();
  for (const k of ['project_id', 'label', 'state']) if (q.get(k)) filters.set(k, q.get(k));
  const prjs = await projects();
  const form = h('form', { class: 'filters', method: 'get', action: '/ui/environments', 'aria-label': 'Filter environments' },
    select('project_id', 'Project', [['', 'All projects'], ...[...prjs.values()].map((p) => [p.id, p.name])], q.get('project_id') || ''),
    textInput('label', 'Labels', q.get('label'), { placeholder: 'app=web,tier=dev' }),
    select('state', 'State', [['', 'Any state'], ...STATES.map((st) => [st, st])], q.get('state') || ''),
    h('button', { type: 'submit', text: 'Filter' }),
    h('a', { href: '/ui/environments', text: 'Clear' }));
  const status = h('p', { id: 'env-count', class: 'live', 'aria-live': 'polite', text: 'Loading…' });
  const tbody = h('tbody', {});
  const table = h('table', { id: 'environments' },
    h('caption', { text: 'Environments' }),
    h('thead', {}, h('tr', {}, ['Name', 'Project', 'State', 'Workload', 'Enforcement', 'Address', 'TTL'].map((c) => h('th', { scope: 'col', text: c })))),
    tbody);
  page('Environments', form, status, table);

  const envs = new Map();
  let live = false;
  const render = () => {
    const rows = [...envs.values()].sort((a, b) => a.name.localeCompare(b.name) || a.id.localeCompare(b.id));
    tbody.replaceChildren(...rows.map((e) => h('tr', { 'data-id': e.id },
      h('td', {}, h('a', { href: '/ui/environments/' + encodeURIComponent(e.id), text: e.name })),
      h('td', { text: projectName(prjs, e.project_id) }),
      h('td', {}, pill(e.state, stateKind(e.state))),
      h('td', {}, e.workload ? pill(e.workload.state, stateKind(e.workload.state)) : h('span', { class: 'muted', text: 'none' })),
      h('td', {}, enforcementText(e)),
      h('td', {}, e.enforcement && e.enforcement.address ? code(e.enforcement.address) : '—'),
      h('td', { text: ttl(e) }))));
    status.textContent = rows.length + (rows.length === 1 ? ' environment' : ' environments') + (live ? ' · live' : '');
    table.dataset.rendered = String(rows.length);
  };
  let pending = false;
  const schedule = () => {
    if (!pending) {
      pending = true;
      requestAnimationFrame(() => { pending = false; render(); });
    }
  };
  const qs = filters.toString() ? '?' + filters.toString() : '';
  for (const e of await listAll('/v1/environments' + qs)) envs.set(e.id, e);
  render();
  // The list is laid out (reading its height forces that): a mark for
  // whoever times the page (make bench-ui), in ms since navigation start.
  void table.offsetHeight;
  performance.mark('environments-rendered');

  const watch = new EventSource('/v1/environments/watch' + qs);
  watch.addEventListener('list', (ev) => {
    envs.clear();
    for (const e of JSON.parse(ev.data).items) envs.set(e.id, e);
    live = true;
    schedule();
  });
  watch.addEventListener('environment', (ev) => { const e = JSON.parse(ev.data); envs.set(e.id, e); schedule(); });
  watch.addEventListener('deleted', (ev) => { envs.delete(JSON.parse(ev.data).id); schedule(); });
  watch.addEventListener('error', () => { live = false; schedule(); });
}

// ---- one environment ------------------------------------------------------

function effectiveTable(eff) {
  const rows = [];
  for (const dir of ['ingress', 'egress']) {
    for (const r of eff[dir] || []) {
      rows.push(h('tr', {},
        h('td', { text: dir }),
        h('td', {}, r.peers && r.peers.length ? h('ul', { class: 'plain' }, r.peers.map((p) => h('li', { text: peerText(p) }))) : 'anywhere'),
        h('td', { text: portsText(r.ports) }),
        h('td', {}, mayReadPolicies() ? h('a', { href: '/ui/policies/' + encodeURIComponent(r.policy_id), text: r.policy_name }) : r.policy_name, ' rule ' + r.rule_index),
        h('td', { text: (r.warnings || []).join(' ') })));
    }
  }
  if (rows.length === 0) {
    return h('p', { id: 'effective-empty', text: 'No policy allows anything: all traffic in and out is denied.' });
  }
  return h('table', { id: 'effective-policy' },
    h('caption', { text: 'Allowed connections (everything else is denied)' }),
    h('thead', {}, h('tr', {}, ['Direction', 'Peers', 'Ports', 'Policy', 'Warnings'].map((c) => h('th', { scope: 'col', text: c })))),
    h('tbody', {}, rows));
}

// peerNodes lists the graph's peers of one direction: each environment a
// selector resolved to, each CIDR, each name, with the ports allowed.
function peerNodes(rules) {
  const nodes = new Map();
  for (const r of rules || []) {
    const ports = portsText(r.ports);
    const add = (key, kind, label) => {
      const n = nodes.get(key) || { kind, label, ports: new Set() };
      n.ports.add(ports);
      nodes.set(key, n);
    };
    for (const p of r.peers && r.peers.length ? r.peers : [{ cidr: '0.0.0.0/0' }]) {
      if (p.cidr) add('cidr:' + p.cidr, 'cidr', p.cidr + (p.except && p.except.length ? ' (except ' + p.except.length + ')' : ''));
      else if (p.fqdn) add('fqdn:' + p.fqdn, 'fqdn', p.fqdn);
      else for (const e of p.environments || []) add('env:' + e.id, 'env', e.name);
    }
  }
  return [...nodes.values()].map((n) => ({ ...n, ports: [...n.ports].join('; ') }));
}

function truncate(t, n) { return t.length > n ? t.slice(0, n - 1) + '…' : t; }

// peersGraph draws the allowed peers: ingress peers on the left with
// arrows into the environment, egress peers on the right with arrows out.
function peersGraph(env, eff) {
  const ins = peerNodes(eff.ingress), outs = peerNodes(eff.egress);
  const rowH = 44, nodeW = 210, nodeH = 30, width = 960;
  const height = Math.max(140, 40 + rowH * Math.max(ins.length, outs.length, 1));
  const cx = width / 2, cy = height / 2;
  const g = s('svg', { class: 'graph', id: 'peers-graph', viewBox: '0 0 ' + width + ' ' + height, role: 'img', 'aria-labelledby': 'peers-title peers-desc' },
    s('title', { id: 'peers-title', text: 'Allowed peers of ' + env.name }),
    s('desc', { id: 'peers-desc', text: ins.length + ' ingress peers and ' + outs.length + ' egress peers; the table above lists the same rules.' }),
    s('defs', {}, s('marker', { id: 'arrow', viewBox: '0 0 10 10', refX: '10', refY: '5', markerWidth: '7', markerHeight: '7', orient: 'auto-start-reverse' },
      s('path', { d: 'M0,0 L10,5 L0,10 z', fill: '#6e7781' }))));
  const node = (x, y, kind, label) => s('g', { class: 'node-' + kind },
    s('rect', { x: x - nodeW / 2, y: y - nodeH / 2, width: nodeW, height: nodeH, rx: 6 }),
    s('text', { x, y: y + 4, 'text-anchor': 'middle', text: truncate(label, 30) }));
  const column = (list, x, into) => list.forEach((n, i) => {
    const y = 20 + rowH / 2 + i * rowH + (height - 40 - rowH * list.length) / 2;
    const [x1, x2] = into ? [x + nodeW / 2, cx - nodeW / 2] : [cx + nodeW / 2, x - nodeW / 2];
    const [y1, y2] = into ? [y, cy] : [cy, y];
    g.append(s('path', { class: 'edge', d: 'M' + x1 + ',' + y1 + ' C' + (x1 + x2) / 2 + ',' + y1 + ' ' + (x1 + x2) / 2 + ',' + y2 + ' ' + x2 + ',' + y2, 'marker-end': 'url(#arrow)' }));
    g.append(s('text', { class: 'edge-label', x: (x1 + x2) / 2, y: (y1 + y2) / 2 - 4, 'text-anchor': 'middle', text: truncate(n.ports, 28) }));
    g.append(node(x, y, n.kind, n.label));
  });
  column(ins, 20 + nodeW / 2, true);
  column(outs, width - 20 - nodeW / 2, false);
  g.append(node(cx, cy, 'self', env.name));
  if (ins.length === 0) g.append(s('text', { x: 20, y: cy, text: 'no ingress allowed' }));
  if (outs.length === 0) g.append(s('text', { x: width - 20, y: cy, 'text-anchor': 'end', text: 'no egress allowed' }));
  const legend = h('ul', { class: 'legend', 'aria-hidden': 'true' },
    h('li', {}, h('span', { class: 'swatch env' }), 'environment'),
    h('li', {}, h('span', { class: 'swatch cidr' }), 'CIDR'),
    h('li', {}, h('span', { class: 'swatch fqdn' }), 'name'));
  return [g, legend];
}

function checkForm(env) {
  const result = h('div', { id: 'check-result', 'aria-live': 'polite' });
  const form = h('form', { class: 'check', id: 'check-form', 'aria-label': 'Would this be allowed?' },
    select('check-direction', 'Direction', [['egress', 'egress (out)'], ['ingress', 'ingress (in)']], 'egress'),
    select('check-protocol', 'Protocol', [['tcp', 'tcp'], ['udp', 'udp'], ['icmp', 'icmp']], 'tcp'),
    textInput('check-address', 'Address or host name', '', { required: true, placeholder: '203.0.113.7' }),
    h('div', {}, h('label', { for: 'check-port', text: 'Port' }), h('input', { id: 'check-port', name: 'check-port', type: 'number', min: 1, max: 65535, value: 443 })),
    h('button', { type: 'submit', text: 'Check' }));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const proto = form.querySelector('#check-protocol').value;
    const body = {
      direction: form.querySelector('#check-direction').value, protocol: proto,
      address: form.querySelector('#check-address').value.trim(),
    };
    const port = parseInt(form.querySelector('#check-port').value, 10);
    if (proto !== 'icmp' && port) body.port = port;
    result.replaceChildren(h('p', { class: 'muted', text: 'Checking…' }));
    try {
      const res = await api('/v1/environments/' + encodeURIComponent(env.id) + '/check', { method: 'POST', body });
      const what = body.direction + ' ' + body.protocol + ' ' + (body.direction === 'egress' ? 'to ' : 'from ') + body.address + (body.port ? ':' + body.port : '');
      const reason = res.allowed
        ? 'allowed by policy ' + res.matched.policy_name + ', ' + res.matched.direction + ' rule ' + res.matched.rule_index + (res.fqdn ? ' (name ' + res.fqdn + ')' : '')
        : 'denied: no rule of the effective policy allows it, and everything not allowed is denied';
      result.replaceChildren(h('div', { class: 'answer ' + (res.allowed ? 'ok' : 'bad') },
        h('strong', { class: 'verdict', text: res.allowed ? 'Allowed' : 'Denied' }), ' — ', what,
        h('p', { class: 'reason', text: 'Reason: ' + reason }),
        res.addresses && res.addresses.length ? h('p', { text: 'Addresses: ' + res.addresses.join(', ') }) : null,
        (res.warnings || []).map((w) => h('p', { class: 'warning', text: 'Warning: ' + w }))));
    } catch (err) {
      result.replaceChildren(failure(err));
    }
  });
  return [form, result];
}

function flowsTable(flows, caption, id) {
  if (flows.length === 0) return h('p', { id, class: 'muted', text: 'No flow records in the last hour (flow records come from the netns driver with flow logs on).' });
  return h('table', { id },
    h('caption', { text: caption }),
    h('thead', {}, h('tr', {}, ['Time', 'Verdict', 'Direction', 'Protocol', 'Source', 'Destination', 'Name', 'Count'].map((c) => h('th', { scope: 'col', text: c })))),
    h('tbody', {}, flows.map((f) => h('tr', { class: f.verdict === 'denied' ? 'denied' : 'allowed' },
      h('td', { text: when(f.last_seen || f.time) }),
      h('td', {}, pill(f.verdict, f.verdict === 'denied' ? 'bad' : 'ok')),
      h('td', { text: f.direction }),
      h('td', { text: f.protocol || '' }),
      h('td', { text: (f.src_address || '?') + (f.src_port ? ':' + f.src_port : '') }),
      h('td', { text: (f.dst_address || '?') + (f.dst_port ? ':' + f.dst_port : '') }),
      h('td', { text: f.fqdn || '' }),
      h('td', { text: String(f.count) })))));
}

const noFlows = 'This server keeps no flow records.';

function flowsOn() { return document.body.dataset.flows === 'on'; }

// recentFlows reads the last hour's flow records of path, newest first.
async function recentFlows(path, maxPages) {
  const since = new Date(Date.now() - 3600 * 1000).toISOString();
  const flows = await listAll(path + '?since=' + encodeURIComponent(since), maxPages);
  return flows.reverse();
}

function auditTable(events, id) {
  if (events.length === 0) return h('p', { id, class: 'muted', text: 'No audit events.' });
  return h('table', { id },
    h('caption', { text: 'Audit events' }),
    h('thead', {}, h('tr', {}, ['Seq', 'Time', 'Actor', 'Action', 'Resource', 'Outcome', 'Details'].map((c) => h('th', { scope: 'col', text: c })))),
    h('tbody', {}, events.map((ev) => h('tr', { class: ev.outcome === 'denied' ? 'denied' : '' },
      h('td', { text: String(ev.seq) }),
      h('td', { text: when(ev.time) }),
      h('td', { text: ev.actor.name + (ev.actor.token_id ? ' (' + ev.actor.token_id + ')' : '') }),
      h('td', {}, code(ev.action)),
      h('td', { text: ev.resource.type + ' ' + (ev.resource.id || '') }),
      h('td', {}, pill(ev.outcome + (ev.status_code ? ' ' + ev.status_code : ''), ev.outcome === 'success' ? 'ok' : 'bad')),
      h('td', {}, h('details', {}, h('summary', { text: 'details', 'aria-label': 'details of event ' + ev.seq }),
        h('dl', { class: 'facts' },
          h('dt', { text: 'Request' }), h('dd', { text: ev.request_id || '—' }),
          h('dt', { text: 'Source' }), h('dd', { text: (ev.source.ip || '') + ' ' + (ev.source.user_agent || '') }),
          h('dt', { text: 'Project' }), h('dd', { text: ev.project_id || '—' }),
          h('dt', { text: 'Reason' }), h('dd', { text: ev.reason || '—' }),
          h('dt', { text: 'Hash' }), h('dd', {}, code(ev.hash))),
        ev.changes ? h('pre', { text: JSON.stringify(ev.changes, null, 2) }) : null))))));
}

async function environmentPage(id) {
  const env = await api('/v1/environments/' + encodeURIComponent(id));
  const prjs = await projects();
  const eff = await api('/v1/environments/' + encodeURIComponent(id) + '/effective-policy');
  const facts = h('dl', { class: 'facts', id: 'environment-facts' });
  const fill = (e) => facts.replaceChildren(
    h('dt', { text: 'Id' }), h('dd', {}, code(e.id)),
    h('dt', { text: 'Project' }), h('dd', { text: projectName(prjs, e.project_id) }),
    h('dt', { text: 'State' }), h('dd', {}, pill(e.state, stateKind(e.state)), e.state_message ? ' ' + e.state_message : ''),
    h('dt', { text: 'Workload' }), h('dd', {}, e.workload ? [pill(e.workload.state, stateKind(e.workload.state)), ' ', e.workload.image || ''] : 'none'),
    h('dt', { text: 'Enforcement' }), h('dd', {}, enforcementText(e), e.enforcement.driver ? ' (' + e.enforcement.driver + ')' : ''),
    h('dt', { text: 'Address' }), h('dd', {}, e.enforcement.address ? code(e.enforcement.address) : '—'),
    h('dt', { text: 'Labels' }), h('dd', { text: labelsText(e.labels) || '—' }),
    h('dt', { text: 'TTL' }), h('dd', { text: ttl(e) }));
  fill(env);
  const flowsBox = h('div', { id: 'flows-box' }, h('p', { class: 'muted', text: 'Loading flows…' }));
  const auditBox = h('div', { id: 'audit-box' });
  page('Environment ' + env.name, facts,
    h('h2', { text: 'Effective policy' }), effectiveTable(eff),
    h('h2', { text: 'Allowed peers' }), peersGraph(env, eff),
    h('h2', { text: 'Would this be allowed?' }), checkForm(env),
    h('h2', { text: 'Recent flows' }), flowsBox,
    h('h2', { text: 'Audit events' }), auditBox);

  const watch = new EventSource('/v1/environments/' + encodeURIComponent(id) + '/watch');
  watch.addEventListener('environment', (ev) => fill(JSON.parse(ev.data)));
  watch.addEventListener('deleted', () => { watch.close(); facts.prepend(h('p', { class: 'error', role: 'status', text: 'This environment has been deleted.' })); });

  try {
    if (!flowsOn()) throw new Error(noFlows);
    const flows = await recentFlows('/v1/environments/' + encodeURIComponent(id) + '/flows', 5);
    flowsBox.replaceChildren(flowsTable(flows.slice(0, 50), 'Recent flows, newest first (denied ones highlighted)', 'env-flows'));
  } catch (err) {
    flowsBox.replaceChildren(failure(err));
  }
  if (!mayReadAudit()) {
    auditBox.replaceChildren(h('p', { class: 'muted', text: 'Your token\'s role (' + me.role + ') does not read the audit log.' }));
    return;
  }
  const evs = await api('/v1/audit-events?resource_type=environment&resource_id=' + encodeURIComponent(id) + '&limit=200');
  auditBox.replaceChildren(auditTable(evs.items, 'env-audit'));
}

// ---- policies -------------------------------------------------------------

async function policiesPage() {
  if (!mayReadPolicies()) {
    page('Policies', h('p', { text: 'Your token\'s role (' + me.role + ') does not read policies.' }));
    return;
  }
  const prjs = await projects();
  const pols = await listAll('/v1/policies');
  const counts = new Map(await Promise.all(pols.map((p) =>
    api('/v1/policies/' + encodeURIComponent(p.id) + '/environments').then((l) => [p.id, l.items.length]))));
  pols.sort((a, b) => a.name.localeCompare(b.name));
  page('Policies', pols.length === 0 ? h('p', { text: 'No policies: every environment is denied everything.' }) :
    h('table', { id: 'policies' },
      h('caption', { text: 'Network policies' }),
      h('thead', {}, h('tr', {}, ['Name', 'Project', 'Types', 'Selects', 'Ingress rules', 'Egress rules', 'Environments selected'].map((c) => h('th', { scope: 'col', text: c })))),
      h('tbody', {}, pols.map((p) => h('tr', {},
        h('td', {}, h('a', { href: '/ui/policies/' + encodeURIComponent(p.id), text: p.name })),
        h('td', { text: projectName(prjs, p.project_id) }),
        h('td', { text: (p.policy_types || []).join(', ') }),
        h('td', { text: p.owner_environment_id ? 'its environment ' + p.owner_environment_id : (labelsText(p.environment_selector.match_labels) || 'every environment of the project') }),
        h('td', { text: String((p.ingress || []).length) }),
        h('td', { text: String((p.egress || []).length) }),
        h('td', { text: String(counts.get(p.id)) }))))));
}

function rulesTable(p) {
  const rows = [];
  (p.ingress || []).forEach((r, i) => rows.push(['ingress', i, r.from, r.ports]));
  (p.egress || []).forEach((r, i) => rows.push(['egress', i, r.to, r.ports]));
  if (rows.length === 0) return h('p', { text: 'No rules: the environments it selects are denied everything in its directions.' });
  return h('table', { id: 'policy-rules' },
    h('caption', { text: 'Rules' }),
    h('thead', {}, h('tr', {}, ['Direction', 'Rule', 'Peers', 'Ports'].map((c) => h('th', { scope: 'col', text: c })))),
    h('tbody', {}, rows.map(([dir, i, peers, ports]) => h('tr', {},
      h('td', { text: dir }), h('td', { text: String(i) }),
      h('td', { text: peers && peers.length ? peers.map(peerText).join('; ') : 'anywhere' }),
      h('td', { text: portsText(ports) })))));
}

async function policyPage(id) {
  if (!mayReadPolicies()) {
    page('Policy', h('p', { text: 'Your token\'s role (' + me.role + ') does not read policies.' }));
    return;
  }
  const prjs = await projects();
  const p = await api('/v1/policies/' + encodeURIComponent(id));
  const envs = await api('/v1/policies/' + encodeURIComponent(id) + '/environments');
  page('Policy ' + p.name,
    h('dl', { class: 'facts' },
      h('dt', { text: 'Id' }), h('dd', {}, code(p.id)),
      h('dt', { text: 'Project' }), h('dd', { text: projectName(prjs, p.project_id) }),
      h('dt', { text: 'Description' }), h('dd', { text: p.description || '—' }),
      h('dt', { text: 'Types' }), h('dd', { text: (p.policy_types || []).join(', ') }),
      h('dt', { text: 'Selector' }), h('dd', { text: labelsText(p.environment_selector.match_labels) || 'every environment of the project' }),
      h('dt', { text: 'Generation' }), h('dd', { text: String(p.generation) })),
    rulesTable(p),
    h('h2', { text: 'Environments it selects' }),
    envs.items.length === 0 ? h('p', { id: 'policy-environments', text: 'None now.' }) :
      h('table', { id: 'policy-environments' },
        h('caption', { text: 'Selected environments' }),
        h('thead', {}, h('tr', {}, ['Name', 'State', 'Address', 'Labels'].map((c) => h('th', { scope: 'col', text: c })))),
        h('tbody', {}, envs.items.map((e) => h('tr', {},
          h('td', {}, h('a', { href: '/ui/environments/' + encodeURIComponent(e.id), text: e.name })),
          h('td', {}, pill(e.state, stateKind(e.state))),
          h('td', {}, e.enforcement.address ? code(e.enforcement.address) : '—'),
          h('td', { text: labelsText(e.labels) }))))));
}

// ---- audit ----------------------------------------------------------------

async function auditPage() {
  if (!mayReadAudit()) {
    page('Audit', h('p', { text: 'Your token\'s role (' + me.role + ') does not read the audit log.' }));
    return;
  }
  const q = new URLSearchParams(location.search);
  const params = new URLSearchParams();
  for (const k of ['action', 'resource_type', 'resource_id', 'outcome', 'project_id', 'since', 'cursor']) if (q.get(k)) params.set(k, q.get(k));
  params.set('limit', '100');
  const form = h('form', { class: 'filters', method: 'get', action: '/ui/audit', 'aria-label': 'Filter audit events' },
    textInput('action', 'Action', q.get('action'), { placeholder: 'environment.create' }),
    textInput('resource_type', 'Resource type', q.get('resource_type'), { placeholder: 'environment' }),
    textInput('resource_id', 'Resource id', q.get('resource_id')),
    select('outcome', 'Outcome', [['', 'Any'], ['success', 'success'], ['denied', 'denied'], ['failure', 'failure']], q.get('outcome') || ''),
    textInput('project_id', 'Project id', q.get('project_id')),
    textInput('since', 'Since (RFC 3339)', q.get('since'), { placeholder: '2026-01-02T15:04:05Z' }),
    h('button', { type: 'submit', text: 'Filter' }),
    h('a', { href: '/ui/audit', text: 'Clear' }));
  const list = await api('/v1/audit-events?' + params.toString());
  const evs = list.items;
  const verify = h('div', { id: 'audit-verify', 'aria-live': 'polite' }, h('p', { class: 'muted', text: 'Verifying the chain…' }));
  let pager = null;
  if (list.next_cursor) {
    const next = new URLSearchParams(params);
    next.delete('limit');
    next.set('cursor', list.next_cursor);
    pager = h('p', { class: 'pager' }, h('a', { href: '/ui/audit?' + next.toString(), text: 'Next page' }));
  }
  page('Audit log', form, verify, auditTable(evs, 'audit-events'), pager);
  if (evs.length === 0) {
    verify.replaceChildren(h('p', { class: 'muted', text: 'Nothing to verify: no events shown.' }));
    return;
  }
  const from = evs[0].seq, to = evs[evs.length - 1].seq;
  const res = await api('/v1/audit-events/verify?from_seq=' + from + '&to_seq=' + to);
  verify.replaceChildren(res.ok
    ? h('p', { class: 'verify ok', text: 'Chain verified: the ' + res.events + ' events from seq ' + from + ' to ' + to + ' are intact and link to the event before them' + (res.key_id ? ' (HMAC-SHA256, key ' + res.key_id + ')' : ' (SHA-256)') + '.' })
    : h('p', { class: 'verify bad', role: 'alert', text: 'Chain broken at seq ' + res.broken.seq + ' (' + res.broken.id + '): ' + res.broken.reason }));
}

// ---- flows ----------------------------------------------------------------

// flowsChart draws counts per verdict per minute over the last hour as
// bars, allowed and denied side by side.
function flowsChart(flows) {
  const minute = 60 * 1000, end = Math.ceil(Date.now() / minute) * minute, start = end - 60 * minute;
  const buckets = Array.from({ length: 60 }, () => ({ allowed: 0, denied: 0 }));
  for (const f of flows) {
    const t = Date.parse(f.last_seen || f.time);
    const i = Math.floor((t - start) / minute);
    if (i >= 0 && i < 60) buckets[i][f.verdict === 'denied' ? 'denied' : 'allowed'] += f.count || 1;
  }
  const peak = Math.max(1, ...buckets.map((b) => Math.max(b.allowed, b.denied)));
  const width = 960, height = 260, left = 50, bottom = 30, top = 10;
  const plotH = height - bottom - top, slot = (width - left - 10) / 60, bar = Math.max(1, slot / 2 - 1);
  const totals = buckets.reduce((t, b) => ({ allowed: t.allowed + b.allowed, denied: t.denied + b.denied }), { allowed: 0, denied: 0 });
  const chart = s('svg', { class: 'chart', id: 'flows-chart', viewBox: '0 0 ' + width + ' ' + height, role: 'img', 'aria-labelledby': 'chart-title chart-desc' },
    s('title', { id: 'chart-title', text: 'Flow records per minute, last hour' }),
    s('desc', { id: 'chart-desc', text: totals.allowed + ' allowed and ' + totals.denied + ' denied in the last hour, peaking at ' + peak + ' a minute.' }),
    s('line', { class: 'axis', x1: left, y1: top + plotH, x2: width - 10, y2: top + plotH }),
    s('line', { class: 'axis', x1: left, y1: top, x2: left, y2: top + plotH }),
    s('text', { x: left - 6, y: top + 10, 'text-anchor': 'end', text: String(peak) }),
    s('text', { x: left - 6, y: top + plotH, 'text-anchor': 'end', text: '0' }),
    s('text', { x: left, y: height - 8, text: '60 min ago' }),
    s('text', { x: width - 10, y: height - 8, 'text-anchor': 'end', text: 'now' }));
  buckets.forEach((b, i) => {
    for (const [k, dx] of [['allowed', 0], ['denied', bar + 1]]) {
      if (!b[k]) continue;
      const hgt = Math.max(1, b[k] / peak * plotH);
      chart.append(s('rect', { class: 'bar-' + k, x: left + 1 + i * slot + dx, y: top + plotH - hgt, width: bar, height: hgt },
        s('title', { text: b[k] + ' ' + k + ', ' + (60 - i) + ' min ago' })));
    }
  });
  const legend = h('ul', { class: 'legend' },
    h('li', {}, h('span', { class: 'swatch allowed' }), 'allowed (' + totals.allowed + ')'),
    h('li', {}, h('span', { class: 'swatch denied' }), 'denied (' + totals.denied + ')'));
  return [chart, legend];
}

function topDenied(flows) {
  const by = new Map();
  for (const f of flows) {
    if (f.verdict !== 'denied') continue;
    const key = f.direction + ' ' + (f.protocol || '') + ' ' + (f.dst_address || '?') + (f.dst_port ? ':' + f.dst_port : '');
    const t = by.get(key) || { direction: f.direction, protocol: f.protocol || '', dst: (f.dst_address || 'not itemised') + (f.dst_port ? ':' + f.dst_port : ''), fqdn: f.fqdn || '', count: 0, envs: new Set() };
    t.count += f.count || 1;
    t.envs.add(f.environment_id);
    by.set(key, t);
  }
  const top = [...by.values()].sort((a, b) => b.count - a.count).slice(0, 10);
  if (top.length === 0) return h('p', { id: 'top-denied', class: 'muted', text: 'Nothing denied in the last hour.' });
  return h('table', { id: 'top-denied' },
    h('caption', { text: 'Top denied destinations, last hour' }),
    h('thead', {}, h('tr', {}, ['Destination', 'Name', 'Direction', 'Protocol', 'Count', 'Environments'].map((c) => h('th', { scope: 'col', text: c })))),
    h('tbody', {}, top.map((t) => h('tr', { class: 'denied' },
      h('td', {}, code(t.dst)), h('td', { text: t.fqdn }), h('td', { text: t.direction }), h('td', { text: t.protocol }),
      h('td', { text: String(t.count) }), h('td', { text: String(t.envs.size) })))));
}

async function flowsPage() {
  const box = h('div', {}, h('p', { class: 'muted', text: 'Loading flows…' }));
  page('Flows', box);
  if (!flowsOn()) {
    box.replaceChildren(h('p', { text: noFlows }));
    return;
  }
  const flows = await recentFlows('/v1/flows', 20);
  box.replaceChildren(
    h('h2', { text: 'Flow records per verdict' }), ...flowsChart(flows),
    h('h2', { text: 'Top denied destinations' }), topDenied(flows),
    h('h2', { text: 'Recent flows' }), flowsTable(flows.slice(0, 100), 'Recent flows, newest first (denied ones highlighted)', 'recent-flows'));
}

// ---- routing --------------------------------------------------------------

const routes = [
  [/^\/ui\/environments$/, 'environments', () => environmentsPage()],
  [/^\/ui\/environments\/([^/]+)$/, 'environments', (m) => environmentPage(decodeURIComponent(m[1]))],
  [/^\/ui\/policies$/, 'policies', () => policiesPage()],
  [/^\/ui\/policies\/([^/]+)$/, 'policies', (m) => policyPage(decodeURIComponent(m[1]))],
  [/^\/ui\/audit$/, 'audit', () => auditPage()],
  [/^\/ui\/flows$/, 'flows', () => flowsPage()],
];

async function start() {
  for (const [re, section, render] of routes) {
    const m = location.pathname.match(re);
    if (!m) continue;
    try {
      await frame(section);
      await render(m);
      document.body.dataset.ready = 'true';
    } catch (err) {
      if (err instanceof APIError && err.status === 401) return;
      // A page that failed before it rendered shows only the failure.
      if (main().querySelector('h1')) main().append(failure(err));
      else page('Not shown', failure(err));
      document.body.dataset.ready = 'error';
    }
    return;
  }
  page('Not found', h('p', { text: 'No page here.' }));
}

start();
