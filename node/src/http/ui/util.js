// Small DOM and formatting helpers. Every text from the node or its peers goes in through
// textContent, never as HTML: peers are not trusted.

/** Makes an element: el('td', {class: 'x', title: 't'}, 'text', child, …). */
export function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else if (k === 'text') e.textContent = v;
    else e.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

const SVG = 'http://www.w3.org/2000/svg';
/** Makes an SVG element. */
export function svg(tag, attrs, ...children) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
  for (const c of children.flat(Infinity)) {
    if (c !== undefined && c !== null) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

let fullIds = false;
/** Whether peer ids are shown in full. */
export function setFullIds(on) { fullIds = on; }
export function fullIdsOn() { return fullIds; }

/** A peer id shortened to its last 8 characters (`…1a2b3c4d`), or in full. */
export function shortId(id) {
  if (!id) return '';
  if (fullIds || id.length <= 9) return id;
  return '…' + id.slice(-8);
}

/** A peer id as a code element whose title is the full id. */
export function peerId(id) {
  return el('code', { class: 'peer', title: id || '' }, shortId(id));
}

/** "12 s ago", "3 min ago", … from Unix milliseconds. */
export function ago(ms) {
  if (!ms) return '—';
  const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  if (s < 86400) return `${Math.round(s / 3600)} h ago`;
  return `${Math.round(s / 86400)} d ago`;
}

/** Seconds as "2 d 3 h", "4 h 5 min", "6 min 7 s". */
export function duration(s) {
  const d = Math.floor(s / 86400), h = Math.floor(s / 3600) % 24;
  const m = Math.floor(s / 60) % 60, r = s % 60;
  if (d) return `${d} d ${h} h`;
  if (h) return `${h} h ${m} min`;
  if (m) return `${m} min ${r} s`;
  return `${r} s`;
}

/** Bytes in B, KiB, MiB, GiB. */
export function bytes(n) {
  if (n === undefined || n === null) return '—';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return `${i ? n.toFixed(1) : n} ${units[i]}`;
}

/** Micro-credits as credits, exactly (integers in, a decimal string out). */
export function credits(micro) {
  if (micro === undefined || micro === null) return '—';
  const neg = micro < 0; let m = Math.abs(micro);
  const whole = Math.floor(m / 1e6), frac = String(m % 1e6).padStart(6, '0').replace(/0+$/, '');
  return (neg ? '-' : '') + whole + (frac ? '.' + frac : '');
}

/** Credits typed by a person ("0.25") as micro-credits, or null. */
export function toMicro(text) {
  const m = /^\s*(\d+)(?:\.(\d{0,6}))?\s*$/.exec(text);
  if (!m) return null;
  return Number(m[1]) * 1e6 + Number((m[2] || '').padEnd(6, '0'));
}

/** A progress bar: value out of max, with a label. */
export function bar(value, max, label, cls) {
  const pct = max > 0 ? Math.min(100, (100 * value) / max) : 0;
  // The width goes through the CSSOM: the page's CSP forbids style attributes.
  const fill = el('span');
  fill.style.width = `${pct.toFixed(1)}%`;
  return el('div', { class: 'bar ' + (cls || ''), title: label || `${value} / ${max}`, role: 'progressbar',
    'aria-valuenow': Math.round(pct), 'aria-valuemin': 0, 'aria-valuemax': 100 },
  fill, el('em', {}, label || `${Math.round(pct)} %`));
}

/** A table from column names and rows of cells (strings or nodes). */
export function table(cols, rows, attrs) {
  return el('div', { class: 'scroll' }, el('table', attrs || {},
    el('thead', {}, el('tr', {}, cols.map((c) => el('th', {}, c)))),
    el('tbody', {}, rows.length ? rows.map((r) => el('tr', {}, r.map((c) => el('td', {}, c))))
      : el('tr', {}, el('td', { colspan: cols.length, class: 'muted' }, 'none'))),
  ));
}

/** A card: a title and content. */
export function card(title, ...content) {
  return el('section', { class: 'card' }, title ? el('h2', {}, title) : null, ...content);
}

/** Key–value rows. */
export function facts(pairs) {
  return el('dl', { class: 'facts' }, pairs.flatMap(([k, v]) => [el('dt', {}, k), el('dd', {}, v)]));
}

/** A note of failure that keeps the page usable. */
export function failure(e) {
  return el('p', { class: 'error' }, e && e.message ? e.message : String(e));
}

/** The class of a `via`: ip, radio, ble or other (the map and legend colours). */
export function viaClass(via) {
  const v = (via || '').toLowerCase();
  if (v.startsWith('radio') || v.includes('lora') || v.includes('kiss') || v.includes('udp')) return 'radio';
  if (v.includes('ble')) return 'ble';
  if (v === 'mdns' || v === 'bootstrap' || v === 'ip' || v === 'kad' || v === 'dial' || v === 'inbound') return 'ip';
  return 'other';
}
