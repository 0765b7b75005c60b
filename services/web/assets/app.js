// call-assistant dashboard: one page, views by URL hash, live through one event stream
// (Server-Sent Events from /api/events). Nothing here polls the server: the only timer
// ticks the uptimes shown, from the browser's own clock.
'use strict';

const STATES = ['READY', 'WAITING_FOR_CONFIG', 'STARTING', 'PENDING', 'STOPPING', 'STOPPED', 'ERROR', 'FAILED', 'DISABLED'];
const PRIORITIES = ['emerg', 'alert', 'crit', 'err', 'warning', 'notice', 'info', 'debug'];
const SECRET_PLACEHOLDER = '********';

const app = {
  modules: new Map(),      // name -> module (as /api/modules gives it)
  csrf: null,
  view: null,              // the current view: {name, update(kind, data), leave()}
  events: null,            // the EventSource
  stream: null,            // its id (its first event): a live view lasts as long as this stream
  live: new Set(),         // the live views playing (to end them when the page goes)
  firstRender: false,
};

// ---- small helpers ----

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === 'class') e.className = v;
    else if (k === 'dataset') Object.assign(e.dataset, v);
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

function svg(tag, attrs, ...children) {
  const e = document.createElementNS('http://www.w3.org/2000/svg', tag);
  for (const [k, v] of Object.entries(attrs || {})) if (v !== null && v !== undefined) e.setAttribute(k, v);
  for (const c of children.flat()) if (c !== null && c !== undefined) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return e;
}

function chip(state) {
  return el('span', { class: 'chip s-' + state, dataset: { state } }, state.replaceAll('_', ' '));
}

function fmtBytes(n) {
  if (n === null || n === undefined) return '–';
  const units = ['B', 'KiB', 'MiB', 'GiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i ? n.toFixed(1) : n) + ' ' + units[i];
}

function fmtCpu(p) {
  return p === null || p === undefined ? '–' : (p < 10 ? p.toFixed(1) : p.toFixed(0)) + ' %';
}

function fmtDuration(sec) {
  if (sec < 0) sec = 0;
  const d = Math.floor(sec / 86400), h = Math.floor(sec % 86400 / 3600), m = Math.floor(sec % 3600 / 60), s = Math.floor(sec % 60);
  if (d) return `${d}d ${h}h`;
  if (h) return `${h}h ${m}m`;
  if (m) return `${m}m ${s}s`;
  return `${s}s`;
}

function uptime(m) {
  return m.registered_at_usec ? fmtDuration(Date.now() / 1000 - m.registered_at_usec / 1e6) : '–';
}

function fmtTime(usec) {
  const d = new Date(usec / 1000);
  const pad = (n, w = 2) => String(n).padStart(w, '0');
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
}

function shellQuote(s) {
  return /^[A-Za-z0-9@%_+=:,./-]+$/.test(s) ? s : "'" + s.replaceAll("'", "'\\''") + "'";
}

class HttpError extends Error {
  constructor(status, body) {
    super(body && body.error ? body.error : 'HTTP ' + status);
    this.status = status;
    this.body = body || {};
  }
}

async function api(method, path, body) {
  const headers = {};
  if (method !== 'GET') headers['X-CSRF-Token'] = app.csrf || '';
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const resp = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), credentials: 'same-origin' });
  let data = null;
  try { data = await resp.json(); } catch (e) { data = null; }
  if (resp.status === 401) { location.replace('/login.html'); throw new HttpError(401, data); }
  if (!resp.ok) throw new HttpError(resp.status, data);
  return data;
}

function confirmDialog(title, text, okLabel) {
  const d = document.getElementById('confirm');
  document.getElementById('confirm-title').textContent = title;
  document.getElementById('confirm-text').textContent = text;
  document.getElementById('confirm-ok').textContent = okLabel;
  return new Promise((resolve) => {
    d.addEventListener('close', () => resolve(d.returnValue === 'ok'), { once: true });
    d.returnValue = 'cancel';
    d.showModal();
  });
}

function copyButton(text) {
  return el('button', { type: 'button', class: 'ghost', title: 'Copy to the clipboard', onclick: async (ev) => {
    const b = ev.currentTarget;
    try {
      await navigator.clipboard.writeText(text);
      b.textContent = 'Copied';
    } catch (e) {
      // Plain HTTP on another host has no clipboard API: select the text instead.
      const range = document.createRange();
      range.selectNodeContents(b.previousSibling);
      getSelection().removeAllRanges();
      getSelection().addRange(range);
      b.textContent = 'Selected';
    }
    setTimeout(() => { b.textContent = 'Copy'; }, 1500);
  } }, 'Copy');
}

// ---- the event stream ----

function setLive(state, text) {
  const l = document.getElementById('live');
  l.className = 'live ' + state;
  l.textContent = text;
}

function connectEvents() {
  const es = new EventSource('/api/events');
  es.addEventListener('open', () => setLive('on', 'live'));
  es.addEventListener('error', () => setLive('off', 'reconnecting…'));
  es.addEventListener('stream', (ev) => {
    // A new stream (a reconnection): the server ended the live views of the old one.
    const was = app.stream;
    app.stream = JSON.parse(ev.data).id;
    if (was && was !== app.stream) for (const v of [...app.live]) v.ended('the connection to the dashboard was lost');
  });
  es.addEventListener('flow', (ev) => {
    const f = JSON.parse(ev.data);
    for (const v of [...app.live]) v.flowChanged(f);
  });
  es.addEventListener('modules', (ev) => {
    const list = JSON.parse(ev.data).modules;
    app.modules = new Map(list.map((m) => [m.name, m]));
    if (app.view) app.view.update('modules');
  });
  es.addEventListener('module', (ev) => {
    const m = JSON.parse(ev.data);
    app.modules.set(m.name, m);
    if (app.view) app.view.update('module', m);
  });
  es.addEventListener('resources', (ev) => {
    const figures = JSON.parse(ev.data).modules;
    for (const [name, f] of Object.entries(figures)) {
      const m = app.modules.get(name);
      if (m) Object.assign(m, f);
    }
    if (app.view) app.view.update('resources', figures);
  });
  for (const kind of ['entity', 'config', 'metrics'])
    es.addEventListener(kind, (ev) => { if (app.view) app.view.update(kind, JSON.parse(ev.data)); });
  es.addEventListener('logout', () => { es.close(); location.replace('/login.html'); });
  return es;
}

// ---- overview ----

function layoutGraph(modules) {
  // Layers by longest dependency chain; dependencies to the left, dependents to the right.
  const byName = new Map(modules.map((m) => [m.name, m]));
  const layer = new Map();
  const visiting = new Set();
  const depth = (name) => {
    if (layer.has(name)) return layer.get(name);
    if (visiting.has(name)) return 0; // a cycle (the orchestrator disables those): draw it flat
    visiting.add(name);
    const m = byName.get(name);
    let d = 0;
    for (const dep of (m ? m.dependencies : [])) if (byName.has(dep)) d = Math.max(d, depth(dep) + 1);
    visiting.delete(name);
    layer.set(name, d);
    return d;
  };
  modules.forEach((m) => depth(m.name));
  const columns = [];
  for (const m of modules) {
    const d = layer.get(m.name);
    (columns[d] = columns[d] || []).push(m.name);
  }
  return { layer, columns };
}

function renderGraph(modules) {
  const W = 190, H = 46, GX = 80, GY = 18, PAD = 12;
  const { columns } = layoutGraph(modules);
  const pos = new Map();
  columns.forEach((col, x) => col.forEach((name, y) => pos.set(name, { x: PAD + x * (W + GX), y: PAD + y * (H + GY) })));
  const rows = Math.max(1, ...columns.map((c) => c.length));
  const width = PAD * 2 + columns.length * W + Math.max(0, columns.length - 1) * GX;
  const height = PAD * 2 + rows * H + (rows - 1) * GY;
  const g = svg('svg', { class: 'graph', width, height, viewBox: `0 0 ${width} ${height}`, role: 'img',
                         'aria-label': 'Module dependency graph' },
    svg('defs', {}, svg('marker', { id: 'arrow', viewBox: '0 0 10 10', refX: 10, refY: 5, markerWidth: 7, markerHeight: 7, orient: 'auto-start-reverse' },
      svg('path', { d: 'M 0 0 L 10 5 L 0 10 z' }))));
  for (const m of modules) {
    const to = pos.get(m.name);
    for (const dep of m.dependencies) {
      const from = pos.get(dep);
      if (!from) continue;
      const x1 = from.x + W, y1 = from.y + H / 2, x2 = to.x, y2 = to.y + H / 2, mx = (x1 + x2) / 2;
      g.append(svg('path', { class: 'edge', d: `M ${x1} ${y1} C ${mx} ${y1}, ${mx} ${y2}, ${x2} ${y2}` }));
    }
  }
  for (const m of modules) {
    const p = pos.get(m.name);
    const a = svg('a', { href: '#/modules/' + encodeURIComponent(m.name), class: 'node s-' + m.state, 'data-module': m.name },
      svg('title', {}, `${m.name}: ${m.state}`),
      svg('rect', { x: p.x, y: p.y, width: W, height: H, rx: 8 }),
      svg('text', { x: p.x + 12, y: p.y + 19 }, m.name.length > 22 ? m.name.slice(0, 21) + '…' : m.name),
      svg('text', { x: p.x + 12, y: p.y + 36, class: 'state' }, m.state.replaceAll('_', ' ')));
    g.append(a);
  }
  return g;
}

function overviewRow(m) {
  const unitState = m.active_state + (m.sub_state ? '/' + m.sub_state : '');
  return el('tr', { dataset: { module: m.name } },
    el('td', {}, el('a', { href: '#/modules/' + encodeURIComponent(m.name) }, m.name), el('span', { class: 'sub' }, m.description)),
    el('td', { class: 'c-state' }, chip(m.state), m.state_message ? el('span', { class: 'reason', title: m.state_message }, m.state_message) : null),
    el('td', { class: 'c-unit mono' }, unitState),
    el('td', { class: 'num c-pid' }, m.main_pid || '–'),
    el('td', { class: 'num c-uptime' }, uptime(m)),
    el('td', { class: 'num c-restarts' }, m.restarts),
    el('td', { class: 'c-health h-' + m.health }, m.health === 'not-serving' ? `not serving (${m.health_failures})` : m.health),
    el('td', { class: 'num c-cpu' }, fmtCpu(m.cpu_percent)),
    el('td', { class: 'num c-mem' }, fmtBytes(m.memory_bytes)));
}

function summaryTiles(modules) {
  const count = (f) => modules.filter(f).length;
  const ready = count((m) => m.state === 'READY');
  const waiting = count((m) => m.state === 'WAITING_FOR_CONFIG');
  const bad = count((m) => m.state === 'ERROR' || m.state === 'FAILED');
  const restarts = modules.reduce((n, m) => n + m.restarts, 0);
  return el('div', { class: 'tiles', id: 'tiles' },
    el('div', { class: 'tile ' + (ready === modules.length ? 'ok' : '') }, el('div', { class: 'n' }, `${ready}/${modules.length}`), el('div', { class: 'l' }, 'ready')),
    el('div', { class: 'tile ' + (waiting ? 'warn' : '') }, el('div', { class: 'n' }, waiting), el('div', { class: 'l' }, 'waiting for config')),
    el('div', { class: 'tile ' + (bad ? 'bad' : '') }, el('div', { class: 'n' }, bad), el('div', { class: 'l' }, 'error or failed')),
    el('div', { class: 'tile' }, el('div', { class: 'n' }, restarts), el('div', { class: 'l' }, 'restarts')));
}

function overviewView(root) {
  let rows = new Map();
  let tiles, tbody, graphWrap;

  function build() {
    const modules = [...app.modules.values()];
    root.replaceChildren();
    tiles = summaryTiles(modules);
    tbody = el('tbody');
    rows = new Map();
    for (const m of modules) {
      const r = overviewRow(m);
      rows.set(m.name, r);
      tbody.append(r);
    }
    graphWrap = el('div', { class: 'graph-wrap' }, renderGraph(modules));
    root.append(
      el('div', { class: 'page-head' }, el('div', {}, el('h1', {}, 'Modules'), el('div', { class: 'muted' }, `${modules.length} module(s), live`))),
      tiles,
      el('section', { class: 'panel' }, el('div', { class: 'table-wrap' }, el('table', { id: 'modules' },
        el('thead', {}, el('tr', {}, ['Module', 'State', 'Unit', 'PID', 'Uptime', 'Restarts', 'Health', 'CPU', 'Memory'].map((t, i) =>
          el('th', { class: i >= 3 && i !== 6 ? 'num' : null }, t)))),
        tbody))),
      el('section', { class: 'panel' }, el('h2', {}, 'Dependencies'),
        modules.some((m) => m.dependencies.length) ? null : el('p', { class: 'muted' }, 'No module depends on another.'),
        graphWrap));
    if (modules.length && !app.firstRender) {
      app.firstRender = true;
      performance.mark('overview-rendered');
    }
  }

  function updateOne(m) {
    const old = rows.get(m.name);
    if (!old) return build();
    const r = overviewRow(m);
    if (old.querySelector('.chip').dataset.state !== m.state) r.classList.add('flash');
    old.replaceWith(r);
    rows.set(m.name, r);
    tiles.replaceWith(tiles = summaryTiles([...app.modules.values()]));
    graphWrap.replaceChildren(renderGraph([...app.modules.values()]));
  }

  const tick = setInterval(() => {
    for (const [name, r] of rows) {
      const m = app.modules.get(name);
      if (m) r.querySelector('.c-uptime').textContent = uptime(m);
    }
  }, 1000);

  if (app.modules.size) build();
  else root.replaceChildren(el('p', { class: 'empty' }, 'Waiting for the orchestrator…'));
  return {
    name: 'overview',
    update(kind, data) {
      if (kind === 'modules') build();
      else if (kind === 'module') updateOne(data);
      else if (kind === 'resources')
        for (const [name, r] of rows) {
          const m = app.modules.get(name);
          r.querySelector('.c-cpu').textContent = fmtCpu(m.cpu_percent);
          r.querySelector('.c-mem').textContent = fmtBytes(m.memory_bytes);
        }
    },
    leave() { clearInterval(tick); },
  };
}

// ---- configuration form from a JSON Schema ----

function pointerJoin(base, token) {
  return base + '/' + String(token).replaceAll('~', '~0').replaceAll('/', '~1');
}

function isSecret(schema) {
  return schema && (schema.writeOnly === true || schema.format === 'password');
}

function typeOf(schema) {
  const t = schema && schema.type;
  if (Array.isArray(t)) return t.find((x) => x !== 'null') || 'string';
  if (t) return t;
  if (schema && schema.properties) return 'object';
  if (schema && schema.enum) return typeof schema.enum[0] === 'number' ? 'number' : 'string';
  return 'json';
}

// Each field reads its own value back; a secret that is set and left empty keeps the stored one.
function buildField(schema, value, pointer, name, required) {
  const type = typeOf(schema);
  const label = (schema && schema.title) || name;
  const desc = schema && schema.description ? el('div', { class: 'desc' }, schema.description) : null;
  const id = 'f' + Math.random().toString(36).slice(2);

  if (type === 'object' && schema.properties) {
    const fields = [];
    const fs = el('fieldset', { dataset: { pointer } }, name !== null ? el('legend', {}, label) : null, desc);
    const req = new Set(schema.required || []);
    for (const [key, sub] of Object.entries(schema.properties)) {
      const f = buildField(sub, value && typeof value === 'object' ? value[key] : undefined, pointerJoin(pointer, key), key, req.has(key));
      fields.push([key, f]);
      fs.append(f.node);
    }
    return { node: fs, read() {
      const out = {};
      for (const [key, f] of fields) {
        const v = f.read();
        if (v !== undefined) out[key] = v;
      }
      return out;
    } };
  }

  if (type === 'array' && schema.items && typeOf(schema.items) !== 'json') {
    const items = [];
    const list = el('div', { class: 'array' });
    const wrap = el('div', { class: 'field', dataset: { pointer } }, el('label', {}, label + (required ? ' *' : '')),
      el('div', {}, list, el('button', { type: 'button', class: 'ghost', onclick: () => addItem(undefined) }, '+ Add')), desc);
    function addItem(v) {
      const index = items.length;
      const f = buildField(schema.items, v, pointerJoin(pointer, index), `#${index + 1}`, false);
      const box = el('div', { class: 'array-item', dataset: { pointer: pointerJoin(pointer, index) } }, f.node);
      const entry = { f, box };
      box.prepend(el('button', { type: 'button', class: 'ghost remove', title: 'Remove', onclick: () => {
        items.splice(items.indexOf(entry), 1);
        box.remove();
      } }, '×'));
      items.push(entry);
      list.append(box);
    }
    (Array.isArray(value) ? value : []).forEach(addItem);
    return { node: wrap, read() {
      return items.length || Array.isArray(value) || required ? items.map((i) => i.f.read()) : undefined;
    } };
  }

  let input, read;
  const initial = value !== undefined ? value : schema && schema.default;
  if (isSecret(schema)) {
    const isSet = value === SECRET_PLACEHOLDER;
    input = el('input', { id, type: 'password', autocomplete: 'new-password', placeholder: isSet ? 'set – leave empty to keep' : 'not set' });
    read = () => input.value !== '' ? input.value : (isSet ? SECRET_PLACEHOLDER : undefined);
    const field = el('div', { class: 'field', dataset: { pointer } },
      el('label', { for: id }, label + (required ? ' *' : ''), el('span', { class: 'secret-state ' + (isSet ? 'h-serving' : 'muted') }, isSet ? 'set' : 'not set')),
      input, desc);
    return { node: field, read };
  }
  if (schema && Array.isArray(schema.enum)) {
    input = el('select', { id }, required ? null : el('option', { value: '' }, '–'),
      schema.enum.map((v, i) => el('option', { value: String(i), selected: JSON.stringify(v) === JSON.stringify(initial) }, String(v))));
    read = () => input.value === '' ? undefined : schema.enum[Number(input.value)];
  } else if (type === 'boolean') {
    input = el('input', { id, type: 'checkbox', checked: initial === true });
    read = () => input.checked;
  } else if (type === 'integer' || type === 'number') {
    input = el('input', { id, type: 'number', step: type === 'integer' ? '1' : 'any', min: schema.minimum, max: schema.maximum,
                          value: initial !== undefined && initial !== null ? String(initial) : null });
    read = () => input.value === '' ? undefined : Number(input.value);
  } else if (type === 'string') {
    input = el('input', { id, type: 'text', value: initial !== undefined && initial !== null ? String(initial) : null,
                          maxlength: schema.maxLength, placeholder: schema.pattern ? 'pattern: ' + schema.pattern : null, spellcheck: 'false' });
    read = () => input.value === '' && initial === undefined && !required ? undefined : input.value;
  } else {
    // Anything the form cannot show field by field is edited as JSON.
    input = el('textarea', { id, rows: 4 }, initial !== undefined ? JSON.stringify(initial, null, 2) : '');
    read = () => {
      if (input.value.trim() === '') return undefined;
      try { return JSON.parse(input.value); } catch (e) { throw new Error(`${pointer || '/'}: not valid JSON (${e.message})`); }
    };
  }
  const field = el('div', { class: 'field', dataset: { pointer } }, el('label', { for: id }, label + (required ? ' *' : '')), input, desc);
  return { node: field, read };
}

function clearFieldErrors(form) {
  form.querySelectorAll('.field.invalid').forEach((f) => f.classList.remove('invalid'));
  form.querySelectorAll('.err').forEach((e) => e.remove());
}

// Show each error at the field its JSON pointer names, or at the closest enclosing one.
function showFieldErrors(form, fields) {
  const unplaced = [];
  for (const { path, message } of fields) {
    let p = path, target = null;
    while (true) {
      target = form.querySelector(`[data-pointer="${CSS.escape(p)}"]`);
      if (target || p === '') break;
      p = p.slice(0, p.lastIndexOf('/'));
    }
    if (!target || target.tagName !== 'DIV' || !target.classList.contains('field')) {
      const inner = target && target.querySelector(':scope > .field');
      if (!inner) { unplaced.push(`${path || '(top)'}: ${message}`); continue; }
      target = inner;
    }
    target.classList.add('invalid');
    target.append(el('div', { class: 'err', dataset: { path } }, (p !== path ? path + ': ' : '') + message));
  }
  return unplaced;
}

// ---- module page ----

function facts(m) {
  const dl = el('dl', { class: 'facts' });
  const add = (k, ...v) => dl.append(el('dt', {}, k), el('dd', {}, ...v));
  add('State', chip(m.state), m.state_message ? ' ' + m.state_message : '');
  add('Unit', el('code', {}, m.unit), ' ', el('span', { class: 'muted' }, `${m.active_state}/${m.sub_state}`));
  add('Version', m.version || '–');
  add('Folder', el('code', {}, m.dir));
  add('gRPC port', m.port || '–');
  add('Main PID', m.main_pid || '–');
  add('Up', uptime(m), m.registered_at_usec ? el('span', { class: 'muted' }, ' since ' + fmtTime(m.registered_at_usec)) : '');
  add('Restarts', m.restarts);
  add('Health', el('span', { class: 'h-' + m.health }, m.health), m.health_failures ? ` (${m.health_failures} failed checks in a row)` : '');
  add('CPU / memory', `${fmtCpu(m.cpu_percent)} / ${fmtBytes(m.memory_bytes)}`);
  add('Depends on', m.dependencies.length ? m.dependencies.map((d) => el('a', { class: 'tag', href: '#/modules/' + encodeURIComponent(d) }, d)) : '–');
  const dependents = [...app.modules.values()].filter((x) => x.dependencies.includes(m.name)).map((x) => x.name);
  add('Needed by', dependents.length ? dependents.map((d) => el('a', { class: 'tag', href: '#/modules/' + encodeURIComponent(d) }, d)) : '–');
  add('Configuration', m.config_required ? 'required before READY' : 'optional');
  return dl;
}

function entityTypes(m) {
  if (!m.entity_types.length) return el('p', { class: 'muted' }, 'No entity types.');
  return el('table', {}, el('thead', {}, el('tr', {}, el('th', {}, 'Type'), el('th', {}, 'Capabilities'), el('th', {}, 'Media in → out'))),
    el('tbody', {}, m.entity_types.map((t) => el('tr', {},
      el('td', {}, el('code', {}, t.name), el('span', { class: 'sub' }, t.description)),
      el('td', {}, t.capabilities.map((c) => el('span', { class: 'tag' }, c))),
      el('td', {}, (t.media_in.join(', ') || '–') + ' → ' + (t.media_out.join(', ') || '–'))))));
}

function moduleActions(m, status) {
  const act = async (op) => {
    const verbs = { start: 'Start', stop: 'Stop', restart: 'Restart' };
    const ok = await confirmDialog(`${verbs[op]} ${m.name}?`,
      op === 'stop' ? `systemd stops ${m.unit}; modules that depend on it may stop working.`
        : `systemd will ${op} ${m.unit}.`, verbs[op]);
    if (!ok) return;
    status.replaceChildren();
    try {
      await api('POST', `/api/modules/${encodeURIComponent(m.name)}/${op}`);
      status.replaceChildren(el('span', { class: 'muted' }, `${verbs[op]} requested; the state follows live.`));
    } catch (e) {
      status.replaceChildren(el('span', { class: 'error' }, e.message));
    }
  };
  return el('div', { class: 'actions' },
    el('button', { type: 'button', id: 'act-start', onclick: () => act('start'), disabled: m.state === 'DISABLED' }, 'Start'),
    el('button', { type: 'button', id: 'act-restart', onclick: () => act('restart'), disabled: m.state === 'DISABLED' }, 'Restart'),
    el('button', { type: 'button', id: 'act-stop', class: 'danger', onclick: () => act('stop'), disabled: m.state === 'DISABLED' }, 'Stop'));
}

function configPanel(name) {
  const panel = el('section', { class: 'panel', id: 'config' }, el('h2', {}, 'Configuration'), el('p', { class: 'muted' }, 'Loading…'));
  let form = null;

  async function load() {
    let data;
    try {
      data = await api('GET', `/api/modules/${encodeURIComponent(name)}/config`);
    } catch (e) {
      panel.replaceChildren(el('h2', {}, 'Configuration'), el('p', { class: 'muted' },
        e.status === 404 ? 'This module takes no configuration (it registered no schema).' : 'Cannot load the configuration: ' + e.message));
      return;
    }
    if (!data.schema) {
      panel.replaceChildren(el('h2', {}, 'Configuration'), el('p', { class: 'muted' },
        'The module has not registered a schema in this run of the orchestrator.'));
      return;
    }
    const banner = el('div', { id: 'config-result' });
    const root = buildField(data.schema, data.config, '', null, true);
    const save = el('button', { type: 'submit', class: 'primary', id: 'config-save' }, 'Apply');
    form = el('form', { class: 'config', novalidate: true }, banner, root.node,
      el('div', { class: 'form-actions' }, save,
        el('span', { class: 'muted' }, `Revision ${data.revision}` + (data.updated_at_usec ? ', stored ' + fmtTime(data.updated_at_usec) : ', never set'))));
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      clearFieldErrors(form);
      banner.replaceChildren();
      let config;
      try { config = root.read(); } catch (e) {
        banner.replaceChildren(el('div', { class: 'banner bad' }, e.message));
        return;
      }
      save.disabled = true;
      try {
        const r = await api('PUT', `/api/modules/${encodeURIComponent(name)}/config`, { config, revision: data.revision });
        await load();
        document.getElementById('config-result').replaceChildren(el('div', { class: 'banner ok' },
          `Applied: revision ${r.revision}. The module accepted it.`));
      } catch (e) {
        const unplaced = e.body.fields ? showFieldErrors(form, e.body.fields) : [];
        const what = e.status === 422 ? 'Not applied: the schema or the module refused it (see the fields).'
          : 'Not applied: ' + e.message;
        banner.replaceChildren(el('div', { class: 'banner bad' }, what, unplaced.length ? el('ul', {}, unplaced.map((u) => el('li', {}, u))) : null));
      } finally {
        save.disabled = false;
      }
    });
    panel.replaceChildren(el('h2', {}, 'Configuration'),
      el('p', { class: 'muted' }, 'Checked against the module\u2019s schema, then applied to the module; kept only if it accepts it. Secrets are never shown.'),
      form);
  }
  load();
  return { node: panel, reload: load };
}

function moduleView(root, name, tab) {
  let m = app.modules.get(name);
  const status = el('span', { id: 'op-status' });
  let head, factsPanel, config = null, logs = null;

  function render() {
    m = app.modules.get(name);
    if (!m) {
      root.replaceChildren(el('p', { class: 'empty' }, app.modules.size ? `No module named ${name}.` : 'Waiting for the orchestrator…'));
      return;
    }
    const base = '#/modules/' + encodeURIComponent(name);
    head = el('div', { class: 'page-head' },
      el('div', {}, el('div', { class: 'crumbs' }, el('a', { href: '#/' }, 'Modules'), ' / ', name),
        el('h1', {}, name, ' ', chip(m.state)), el('div', { class: 'muted' }, m.description)),
      moduleActions(m, status));
    const tabs = el('div', { class: 'tabs' },
      el('a', { href: base, class: tab === 'logs' ? null : 'active' }, 'Details'),
      el('a', { href: base + '/logs', class: tab === 'logs' ? 'active' : null, id: 'tab-logs' }, 'Logs'));
    root.replaceChildren(head, status, tabs);
    if (tab === 'logs') {
      if (!logs) logs = logView(m);
      root.append(logs.node);
      return;
    }
    factsPanel = el('section', { class: 'panel', id: 'facts' }, el('h2', {}, 'Status'), facts(m));
    const unit = shellQuote(m.unit);
    const commands = el('section', { class: 'panel' }, el('h2', {}, 'On the host'),
      ...[`systemctl status ${unit}`, `journalctl -u ${unit} -f`, `call-assistantctl status ${shellQuote(m.name)}`].map((c) =>
        el('div', { class: 'cmd' }, el('code', {}, c), copyButton(c))));
    if (!config) config = configPanel(name);
    root.append(el('div', { class: 'grid-2' },
      el('div', {}, factsPanel, commands, el('section', { class: 'panel' }, el('h2', {}, 'Entity types'), entityTypes(m))),
      el('div', {}, config.node)));
  }

  render();
  const tick = setInterval(() => {
    if (factsPanel && app.modules.get(name)) factsPanel.replaceChildren(el('h2', {}, 'Status'), facts(app.modules.get(name)));
  }, 1000);
  return {
    name: 'module',
    update(kind, data) {
      if (kind === 'modules' || (kind === 'module' && data.name === name)) {
        if (!m || !head) return render();
        const now = app.modules.get(name);
        head.querySelector('h1').replaceChildren(name, ' ', chip(now.state));
        head.querySelector('.actions').replaceWith(moduleActions(now, status));
        if (factsPanel) factsPanel.replaceChildren(el('h2', {}, 'Status'), facts(now));
      } else if (kind === 'resources' && factsPanel && app.modules.get(name))
        factsPanel.replaceChildren(el('h2', {}, 'Status'), facts(app.modules.get(name)));
      else if (kind === 'config' && data.module === name && config && tab !== 'logs') {
        // Changed elsewhere (another browser, call-assistantctl): show what is in force now,
        // unless this page just applied it (then load() runs anyway).
        if (!document.querySelector('#config-result .banner')) config.reload();
      }
    },
    leave() { clearInterval(tick); if (logs) logs.close(); },
  };
}

// ---- logs ----

function logLine(e) {
  const p = Math.min(7, Math.max(0, e.priority));
  return el('div', { class: 'line p' + p, dataset: { cursor: e.cursor } },
    el('span', { class: 't' }, fmtTime(e.usec)),
    el('span', { class: 'p p' + p, title: `priority ${p} (${PRIORITIES[p]})` }, PRIORITIES[p]),
    el('span', { class: 'm' }, (e.identifier === 'systemd' ? '[systemd] ' : '') + e.message));
}

function logView(m) {
  const box = el('div', { class: 'log', id: 'log', tabindex: '0' });
  const moreRow = el('div', { class: 'more' });
  const prio = el('select', { id: 'log-priority', title: 'Show entries at least this important' },
    PRIORITIES.map((p, i) => el('option', { value: i, selected: i === 7 }, `${i} ${p}` + (i === 7 ? ' (all)' : ''))));
  const text = el('input', { type: 'search', id: 'log-filter', placeholder: 'Filter messages (case-insensitive)…' });
  const follow = el('input', { type: 'checkbox', id: 'log-follow', checked: true });
  const counter = el('span', { class: 'muted', id: 'log-count' });
  let before = null, complete = true, loading = false, shown = 0, es = null, generation = 0;

  const wanted = (e) => e.priority <= Number(prio.value) && (!text.value || e.message.toLowerCase().includes(text.value.toLowerCase()));
  const count = () => { counter.textContent = `${shown} entr${shown === 1 ? 'y' : 'ies'}`; };

  async function older() {
    if (loading || (!before && shown)) return;
    loading = true;
    const gen = generation;
    moreRow.textContent = 'Loading…';
    const q = new URLSearchParams({ limit: '200' });
    if (before) q.set('before', before);
    if (Number(prio.value) < 7) q.set('priority', prio.value);
    if (text.value) q.set('q', text.value);
    try {
      const r = await api('GET', `/api/modules/${encodeURIComponent(m.name)}/logs?` + q);
      if (gen !== generation) return;
      const first = !shown;
      const oldHeight = box.scrollHeight;
      const frag = document.createDocumentFragment();
      r.entries.forEach((e) => frag.append(logLine(e)));
      moreRow.after(frag);
      shown += r.entries.length;
      before = r.before;
      complete = r.complete;
      if (first) box.scrollTop = box.scrollHeight;
      else box.scrollTop += box.scrollHeight - oldHeight; // keep what the reader looks at in place
      moreRow.replaceChildren(before ? el('button', { type: 'button', class: 'ghost', id: 'log-older', onclick: older },
        complete ? 'Load older entries' : 'Search further back') : 'Beginning of the journal for this unit.');
      count();
    } catch (e) {
      moreRow.textContent = 'Cannot read the journal: ' + e.message;
    } finally {
      loading = false;
    }
  }

  function restart() {
    generation++;
    before = null;
    shown = 0;
    box.replaceChildren(moreRow);
    older();
  }

  box.append(moreRow);
  box.addEventListener('scroll', () => { if (box.scrollTop < 30 && before) older(); });
  prio.addEventListener('change', restart);
  let debounce;
  text.addEventListener('input', () => { clearTimeout(debounce); debounce = setTimeout(restart, 250); });
  follow.addEventListener('change', () => { if (follow.checked) box.scrollTop = box.scrollHeight; });

  // Live lines of this module's unit, from a stream that follows its log.
  es = new EventSource('/api/events?logs=' + encodeURIComponent(m.name));
  es.addEventListener('log', (ev) => {
    const e = JSON.parse(ev.data);
    if (e.module !== m.name || !wanted(e) || box.querySelector(`[data-cursor="${CSS.escape(e.cursor)}"]`)) return;
    const line = logLine(e);
    line.classList.add('new');
    box.append(line);
    shown++;
    count();
    if (follow.checked) box.scrollTop = box.scrollHeight;
  });
  restart();

  const node = el('section', { class: 'panel' },
    el('div', { class: 'log-toolbar' }, prio, text, el('label', {}, follow, ' Follow'), counter),
    box,
    el('p', { class: 'muted' }, 'From the journal (sd-journal) of ', el('code', {}, m.unit),
      ': its own output and what systemd says about it. Scroll up for older entries, without limit.'));
  return { node, close() { es.close(); } };
}

// ---- entities ----

function isCamera(e) {
  const t = e.type_info || {};
  return (t.media_out || []).includes('rtsp') || (t.capabilities || []).includes('rtsp') || /camera|video_source/.test(e.type);
}

function entitiesView(root) {
  let entities = [];
  const body = el('tbody');
  const filter = el('input', { type: 'search', placeholder: 'Filter by module, type, id or name…', id: 'entity-filter' });
  const note = el('p', { class: 'muted' });

  function draw() {
    const f = filter.value.toLowerCase();
    const rows = entities.filter((e) => !f || [e.module, e.type, e.id, e.name].some((x) => (x || '').toLowerCase().includes(f)));
    body.replaceChildren(...rows.map((e) => el('tr', { dataset: { module: e.module, entity: e.id } },
      el('td', {}, el('a', { href: `#/entities/${encodeURIComponent(e.module)}/${encodeURIComponent(e.id)}` }, e.name || e.id), el('span', { class: 'sub mono' }, e.id)),
      el('td', {}, el('code', {}, e.type)),
      el('td', {}, el('a', { href: '#/modules/' + encodeURIComponent(e.module) }, e.module)),
      el('td', {}, e.state || '–'),
      el('td', {}, e.available === false ? el('span', { class: 'chip s-STOPPED', dataset: { state: 'STOPPED' } }, 'unavailable')
        : el('span', { class: 'chip s-READY', dataset: { state: 'READY' } }, 'available')))));
    note.textContent = entities.length ? `${rows.length} of ${entities.length} entit${entities.length === 1 ? 'y' : 'ies'}` : 'No entities: no READY module provides any yet.';
  }

  async function load() {
    try {
      entities = (await api('GET', '/api/entities')).entities;
      entities.sort((a, b) => a.module.localeCompare(b.module) || a.id.localeCompare(b.id));
      app.entities = entities;
      draw();
    } catch (e) {
      note.textContent = 'Cannot list the entities: ' + e.message;
    }
  }

  // Entities change with entity events and when a module becomes READY or stops being so;
  // a burst of those asks the server once.
  const states = new Map([...app.modules.values()].map((m) => [m.name, m.state]));
  let pending = null;
  const reloadSoon = () => { if (!pending) pending = setTimeout(() => { pending = null; load(); }, 300); };

  filter.addEventListener('input', draw);
  root.replaceChildren(
    el('div', { class: 'page-head' }, el('div', {}, el('h1', {}, 'Entities'), el('div', { class: 'muted' }, 'What the modules provide, live'))),
    el('section', { class: 'panel' }, el('div', { class: 'log-toolbar' }, filter), note,
      el('div', { class: 'table-wrap' }, el('table', { id: 'entities' },
        el('thead', {}, el('tr', {}, ['Entity', 'Type', 'Module', 'State', ''].map((t) => el('th', {}, t)))), body))));
  load();
  return {
    name: 'entities',
    update(kind, data) {
      if (kind === 'entity') reloadSoon();
      else if (kind === 'module') {
        const was = states.get(data.name);
        states.set(data.name, data.state);
        if ((was === 'READY') !== (data.state === 'READY')) reloadSoon();
      }
    },
    leave() { clearTimeout(pending); },
  };
}

// A camera's live view: a WebRTC flow from the camera (through a converter the orchestrator
// picks) to this page. The page makes the offer (receive-only video, every ICE candidate
// gathered first: the flow API takes complete SDPs), the orchestrator's StartFlow answers it.
// The flow belongs to this page's event stream: it ends with Stop, when the view is left,
// when the page goes (pagehide), and at the latest when the server sees the stream end.
function iceGathered(pc, ms) {
  if (pc.iceGatheringState === 'complete') return Promise.resolve();
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error('ICE gathering did not complete in time')), ms);
    pc.addEventListener('icegatheringstatechange', () => {
      if (pc.iceGatheringState === 'complete') { clearTimeout(t); resolve(); }
    });
  });
}

function liveView(module, id) {
  const video = el('video', { id: 'live-video', muted: true, playsinline: true, autoplay: true, hidden: true });
  video.muted = true;
  const placeholder = el('div', { class: 'live-placeholder' }, 'Press Play to watch the camera live.');
  const play = el('button', { type: 'button', class: 'primary', id: 'live-play' }, 'Play');
  const stop = el('button', { type: 'button', id: 'live-stop', disabled: true }, 'Stop');
  const status = el('span', { class: 'muted', id: 'live-status', dataset: { state: 'idle' } }, 'Not playing.');
  const node = el('div', {}, el('div', { class: 'live-view' }, video, placeholder),
    el('div', { class: 'actions live-actions' }, play, stop, status));
  let pc = null, flowId = null, attempt = 0;

  const setStatus = (state, text) => { status.dataset.state = state; status.textContent = text; };

  function teardown() {
    app.live.delete(self);
    if (pc) pc.close();
    pc = null;
    video.srcObject = null;
    video.hidden = true;
    placeholder.hidden = false;
    play.disabled = false;
    stop.disabled = true;
  }

  async function start() {
    const mine = ++attempt;
    play.disabled = true;
    stop.disabled = false;
    setStatus('starting', 'Connecting…');
    try {
      if (!app.stream) throw new Error('the dashboard is not connected (wait for "live" at the top)');
      pc = new RTCPeerConnection({ iceServers: [] });
      pc.addTransceiver('video', { direction: 'recvonly' });
      pc.addEventListener('track', (ev) => { video.srcObject = ev.streams[0] || new MediaStream([ev.track]); });
      pc.addEventListener('connectionstatechange', () => {
        if (pc && pc.connectionState === 'failed' && mine === attempt) setStatus('failed', 'The connection to the camera failed.');
      });
      app.live.add(self);
      await pc.setLocalDescription(await pc.createOffer());
      await iceGathered(pc, 10000);
      const r = await api('POST', `/api/entities/${encodeURIComponent(module)}/${encodeURIComponent(id)}/live`,
        { sdp: pc.localDescription.sdp, stream: app.stream });
      if (mine !== attempt || !pc) {
        // Stopped while it was being set up.
        api('DELETE', '/api/live/' + encodeURIComponent(r.flow_id)).catch(() => {});
        return;
      }
      flowId = r.flow_id;
      node.dataset.flow = flowId;
      await pc.setRemoteDescription({ type: 'answer', sdp: r.sdp });
      video.hidden = false;
      placeholder.hidden = true;
      setStatus('connecting', 'Waiting for video…');
      video.addEventListener('playing', () => { if (mine === attempt) setStatus('playing', `Playing (${video.videoWidth}×${video.videoHeight}).`); }, { once: true });
    } catch (e) {
      if (mine !== attempt) return;
      teardown();
      setStatus('failed', 'Cannot play: ' + e.message);
    }
  }

  async function end(keepalive) {
    attempt++;
    const f = flowId;
    flowId = null;
    delete node.dataset.flow;
    teardown();
    setStatus('stopped', 'Stopped.');
    if (!f) return;
    if (keepalive) {
      // The page is going: a request that outlives it (a beacon cannot carry the CSRF header).
      fetch('/api/live/' + encodeURIComponent(f), { method: 'DELETE', keepalive: true, credentials: 'same-origin',
        headers: { 'X-CSRF-Token': app.csrf || '' } }).catch(() => {});
      return;
    }
    try {
      await api('DELETE', '/api/live/' + encodeURIComponent(f));
    } catch (e) {
      if (e.status !== 404) setStatus('failed', 'Stopping failed: ' + e.message);
    }
  }

  const self = {
    node,
    close(keepalive) { if (flowId || pc) end(keepalive); },
    ended(reason) {
      attempt++;
      flowId = null;
      delete node.dataset.flow;
      teardown();
      setStatus('ended', 'Ended: ' + reason + '. Press Play to watch again.');
    },
    flowChanged(f) {
      if (f.id !== flowId) return;
      if (f.state === 'STOPPED' || f.state === 'FAILED') self.ended(f.state_reason || f.state.toLowerCase());
      else if (f.state === 'DEGRADED') setStatus('degraded', 'Interrupted: ' + f.state_reason + ' (recovering…)');
      else if (f.state === 'ACTIVE' && status.dataset.state === 'degraded') setStatus('playing', 'Playing again.');
    },
  };
  play.addEventListener('click', start);
  stop.addEventListener('click', () => end(false));
  return self;
}

window.addEventListener('pagehide', () => { for (const v of [...app.live]) v.close(true); });

function entityView(root, module, id) {
  let live = null;
  async function load() {
    let e = null;
    try {
      e = (await api('GET', '/api/entities')).entities.find((x) => x.module === module && x.id === id);
    } catch (err) { /* shown below */ }
    if (!e) {
      if (live) { live.close(false); live = null; }
      root.replaceChildren(el('p', { class: 'empty' }, `No entity ${id} of module ${module} (now).`), el('a', { href: '#/entities' }, 'All entities'));
      return;
    }
    const dl = el('dl', { class: 'facts' });
    const add = (k, ...v) => dl.append(el('dt', {}, k), el('dd', {}, ...v));
    add('Id', el('code', {}, e.id));
    add('Type', el('code', {}, e.type), e.type_info ? el('span', { class: 'muted' }, ' – ' + e.type_info.description) : '');
    add('Module', el('a', { href: '#/modules/' + encodeURIComponent(e.module) }, e.module));
    add('State', e.state || '–');
    add('Available', e.available === false ? 'no (its module is not READY)' : 'yes');
    if (e.type_info) {
      add('Capabilities', e.type_info.capabilities.map((c) => el('span', { class: 'tag' }, c)));
      add('Media', (e.type_info.media_in.join(', ') || '–') + ' → ' + (e.type_info.media_out.join(', ') || '–'));
    }
    for (const [k, v] of Object.entries(e.attributes || {})) add(k, el('code', {}, v));
    const sections = [el('section', { class: 'panel' }, el('h2', {}, 'Entity'), dl)];
    if (isCamera(e)) {
      // Kept across re-renders of the facts: an entity event must not cut the video.
      if (!live) live = liveView(e.module, e.id);
      sections.push(el('section', { class: 'panel', id: 'live-view', dataset: { module: e.module, entity: e.id } },
        el('h2', {}, 'Live view'), live.node));
    }
    root.replaceChildren(
      el('div', { class: 'page-head' }, el('div', {}, el('div', { class: 'crumbs' }, el('a', { href: '#/entities' }, 'Entities'), ' / ', module),
        el('h1', {}, e.name || e.id))),
      el('div', { class: 'grid-2' }, ...sections));
  }
  load();
  return {
    name: 'entity',
    update(kind, data) { if (kind === 'entity' && data.module === module) load(); },
    leave() { if (live) live.close(false); },
  };
}

// ---- router ----

function route() {
  const root = document.getElementById('view');
  const parts = location.hash.replace(/^#\/?/, '').split('/').map(decodeURIComponent);
  if (app.view) app.view.leave();
  let nav = 'overview';
  if (parts[0] === 'modules' && parts[1]) app.view = moduleView(root, parts[1], parts[2] === 'logs' ? 'logs' : 'details');
  else if (parts[0] === 'entities' && parts[1] && parts[2]) { app.view = entityView(root, parts[1], parts[2]); nav = 'entities'; }
  else if (parts[0] === 'entities') { app.view = entitiesView(root); nav = 'entities'; }
  else app.view = overviewView(root);
  document.querySelectorAll('nav a').forEach((a) => a.classList.toggle('active', a.dataset.nav === nav));
  document.title = (parts[1] ? parts[1] + ' · ' : '') + 'call-assistant';
}

async function main() {
  try {
    app.csrf = (await api('GET', '/api/session')).csrf;
  } catch (e) {
    if (e.status !== 401) setLive('off', 'cannot reach the dashboard');
    return;
  }
  document.getElementById('logout').addEventListener('click', async () => {
    // Our own streams first: the server ends them with a logout event that would navigate too.
    app.events.close();
    if (app.view) app.view.leave();
    try { await api('POST', '/api/logout'); } finally { location.replace('/login.html'); }
  });
  window.addEventListener('hashchange', route);
  route();
  app.events = connectEvents();
}

main();
