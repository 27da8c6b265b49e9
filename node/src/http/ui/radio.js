// Radio (airtime against the budget per link, beacons, sessions) and mesh metrics.

import { get } from './api.js';
import { ago, bar, bytes, card, el, facts, failure, peerId, table } from './util.js';

export function mountRadio(root) {
  const links = el('div', { id: 'radio-links' });
  const beacons = el('div', { id: 'radio-beacons' });
  root.append(el('div', { class: 'grid' }, card('Links and airtime', links), card('Beacons and sessions', beacons)));
  async function refresh() {
    try {
      const r = await get('/radio');
      if (!r.enabled || !r.status) {
        links.replaceChildren(el('p', { class: 'muted' }, 'No radio link is configured ([[radio]] in the config).'));
        beacons.replaceChildren();
        return;
      }
      const s = r.status;
      links.replaceChildren(table(['link', 'airtime this window', 'frames in / out', 'bytes in / out', 'deferred'], s.links.map((l) => [
        el('span', { title: l.link }, l.name),
        bar(l.airtime_window_ms, l.airtime_budget_ms, `${(l.airtime_window_ms / 1000).toFixed(1)} s of ${(l.airtime_budget_ms / 1000).toFixed(1)} s (${(l.duty_cycle * 100).toFixed(1)} % of ${l.window_s} s)`,
          l.airtime_window_ms >= l.airtime_budget_ms ? 'bad' : 'good'),
        `${l.frames_in} / ${l.frames_out}`, `${bytes(l.bytes_in)} / ${bytes(l.bytes_out)}`, String(l.sends_deferred),
      ])));
      beacons.replaceChildren(facts([
        ['Peers heard by radio', String(s.peers)], ['Beacons accepted', String(s.beacons_accepted)],
        ['Refused', `${s.beacons_malformed} malformed, ${s.beacons_invalid} badly signed, ${s.beacons_replayed} replayed`],
        ['Last heard', ago(s.last_heard_ms)],
      ]), table(['link', 'beacons sent / heard', 'beacon', 'sessions', 'peers'], s.links.map((l) => [
        l.name, `${l.beacons_sent} / ${l.beacons_heard}`, `${l.beacon_bytes} B, ${l.beacon_airtime_ms} ms`, String(l.streams),
        el('span', {}, l.peers.map((p) => [peerId(p), ' '])),
      ])));
    } catch (e) { links.replaceChildren(failure(e)); }
  }
  refresh();
  return { refresh };
}

export function mountMesh(root) {
  const box = el('div', { id: 'mesh' });
  root.append(card('Mesh metrics', box));
  async function refresh() {
    try {
      const m = await get('/mesh');
      if (!m.available || !m.mesh) {
        box.replaceChildren(el('p', { class: 'muted' }, `No mesh metrics (BATMAN-adv, Babel or a metrics file). Host scores use a factor of ${m.mesh_factor}.`));
        return;
      }
      const x = m.mesh;
      box.replaceChildren(facts([
        ['Source', x.source], ['Mesh', el('span', { class: x.mesh_ok ? 'ok' : 'bad' }, x.mesh_ok ? 'working' : 'down')],
        ['Neighbours', String(x.neighbours)], ['Routes', String(x.routes)],
        ['Path metric', x.path_metric === null ? '—' : bar(1 - x.path_metric, 1, `${x.path_metric.toFixed(2)} (0 is perfect)`)],
        ['Score factor', m.mesh_factor.toFixed(2)], ['Read', ago(x.polled_at_ms)],
      ]), table(['neighbour', 'interface', 'metric'], x.neighbour_list.map((n) => [el('code', {}, n.address), n.interface, n.metric === null ? '—' : String(n.metric)])));
    } catch (e) { box.replaceChildren(failure(e)); }
  }
  refresh();
  return { refresh };
}
