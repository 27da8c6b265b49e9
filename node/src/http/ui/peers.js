// Peers: a table and a map of links coloured by `via`, with last seen.

import { get, on } from './api.js';
import { ago, card, credits, el, failure, fullIdsOn, peerId, setFullIds, shortId, svg, table, viaClass } from './util.js';

/** Most peers drawn on the map (the table lists all). */
const MAP_MAX = 48;

export function mount(root) {
  const full = el('input', { type: 'checkbox', id: 'full-ids', checked: fullIdsOn(),
    onchange: () => { setFullIds(full.checked); refresh(); } });
  const map = el('div', { id: 'peer-map', class: 'map' });
  const list = el('div', { id: 'peer-table' });
  root.append(
    card('Map of links', map, legend()),
    card('Peers', el('label', { class: 'inline' }, full, ' show peer ids in full'), list),
  );

  let me = '';
  async function refresh() {
    try {
      const [s, p] = await Promise.all([get('/status'), get('/peers')]);
      me = s.peer_id;
      const peers = p.peers.slice().sort((a, b) => b.last_seen_ms - a.last_seen_ms);
      list.replaceChildren(table(['peer', 'via', 'state', 'active', 'price', 'last seen'], peers.map((x) => [
        peerId(x.peer_id),
        el('span', { class: 'via ' + viaClass(x.via) }, x.via),
        x.connected ? el('span', { class: 'ok' }, 'connected') : el('span', { class: 'muted' }, 'not connected'),
        x.active === null ? '—' : el('span', { class: x.active ? 'ok' : 'bad', 'data-active': String(x.active) }, x.active ? 'active' : 'inactive'),
        x.announcement ? Object.entries(x.announcement.prices).map(([k, v]) => `${k} ${credits(v)}`).join(', ') : '—',
        el('span', { title: new Date(x.last_seen_ms).toISOString() }, ago(x.last_seen_ms)),
      ]), { id: 'peers', 'data-count': peers.length }));
      for (const [i, tr] of list.querySelectorAll('tbody tr').entries()) {
        if (peers[i]) tr.dataset.peer = peers[i].peer_id;
      }
      map.replaceChildren(draw(me, peers.slice(0, MAP_MAX)));
    } catch (e) {
      list.replaceChildren(failure(e));
    }
  }
  refresh();
  const off = on('peer', () => refresh());
  return { refresh, dispose: off };
}

function legend() {
  return el('p', { class: 'legend' }, ['ip', 'radio', 'ble', 'other'].map((k) =>
    el('span', { class: 'via ' + k }, k === 'ip' ? 'IP (mDNS, bootstrap)' : k)),
  el('span', { class: 'muted' }, 'dashed: not connected; filled: active host'));
}

/** This node in the middle and its peers on a circle, one line per link. */
function draw(me, peers) {
  const W = 360, H = 260, cx = W / 2, cy = H / 2, r = Math.min(W, H) / 2 - 34;
  const g = svg('svg', { viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': `map of ${peers.length} peers` });
  peers.forEach((p, i) => {
    const a = (2 * Math.PI * i) / Math.max(1, peers.length) - Math.PI / 2;
    const x = cx + r * Math.cos(a), y = cy + r * Math.sin(a);
    g.append(svg('line', { x1: cx, y1: cy, x2: x, y2: y, class: `link ${viaClass(p.via)}${p.connected ? '' : ' down'}` },
      svg('title', {}, `${p.via}, ${p.connected ? 'connected' : 'not connected'}, last seen ${ago(p.last_seen_ms)}`)));
    const node = svg('g', { class: 'peer-node' + (p.active ? ' active' : ''), 'data-peer': p.peer_id },
      svg('circle', { cx: x, cy: y, r: 9 }),
      svg('text', { x, y: y + (y < cy ? -14 : 22), 'text-anchor': 'middle' }, shortId(p.peer_id)),
      svg('title', {}, `${p.peer_id}\n${p.via}, last seen ${ago(p.last_seen_ms)}`));
    g.append(node);
  });
  g.append(svg('g', { class: 'peer-node me' }, svg('circle', { cx, cy, r: 13 }),
    svg('text', { x: cx, y: cy + 30, 'text-anchor': 'middle' }, 'this node'), svg('title', {}, me)));
  if (!peers.length) g.append(svg('text', { x: cx, y: 24, 'text-anchor': 'middle', class: 'muted' }, 'no peers yet'));
  return g;
}
