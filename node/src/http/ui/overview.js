// Overview: identity, uptime, links, alerts; the on/off toggle and prices.

import { act, get, getOptional, on } from './api.js';
import { card, credits, duration, el, facts, failure, table, toMicro, ago, peerId } from './util.js';

export function mount(root) {
  const status = el('div', { id: 'ov-status' });
  const links = el('div', { id: 'ov-links' });
  const alerts = el('div', { id: 'ov-alerts' });
  const host = el('div', { id: 'ov-host' });
  root.append(el('div', { class: 'grid' },
    card('Identity', status), card('Links', links), card('Hosting', host), card('Alerts', alerts)));

  async function refresh() {
    const [s, keys, ann, radio, ledger, qa, st] = await Promise.all([
      get('/status'), get('/pubkeys'), get('/announce'), getOptional('/radio'),
      getOptional('/ledger/status'), getOptional('/quorum/alerts'), getOptional('/storage/status'),
    ]).catch((e) => { status.replaceChildren(failure(e)); return []; });
    if (!s) return;
    status.replaceChildren(facts([
      ['Peer id', el('code', { class: 'wrap', id: 'ov-peer-id' }, s.peer_id)],
      ['Ed25519', el('code', { class: 'wrap' }, keys.ed25519)],
      ['Version', s.version],
      ['Uptime', el('span', { id: 'ov-uptime' }, duration(s.uptime_s))],
      ['Jobs in flight', String(s.jobs_in_flight)],
    ]));
    const radios = radio && radio.status ? radio.status.links : [];
    links.replaceChildren(facts([
      ['Connected peers', el('strong', { id: 'ov-connected' }, String(s.peers.connected))],
      ['Known peers', String(s.peers.known)],
      ['Active hosts', String(s.peers.active_hosts)],
      ['Radio links', radios.length ? radios.map((l) => l.name).join(', ') : 'none'],
    ]), el('h3', {}, 'Listening on'), el('ul', { class: 'plain' }, s.listen_addrs.map((a) => el('li', {}, el('code', { class: 'wrap' }, a)))));
    renderHost(ann);
    const items = [];
    if (!ann.active) items.push(['warn', 'This node is off: it takes no jobs.']);
    if (s.peers.connected === 0) items.push(['warn', 'No peer is connected.']);
    if (ledger && ledger.rejected && (ledger.rejected.blocks || ledger.rejected.txs)) {
      items.push(['bad', `Rejected from peers: ${ledger.rejected.blocks} block(s), ${ledger.rejected.txs} transaction(s).`]);
    }
    if (st && st.host.quota_bytes && st.host.used_bytes > 0.9 * st.host.quota_bytes) items.push(['warn', 'Shard store over 90 % of its quota.']);
    if (st && st.host.corrupt) items.push(['bad', `${st.host.corrupt} rotten shard(s) found.`]);
    for (const a of (qa && qa.alerts) || []) items.push(['bad', `Quorum: ${a.id} (attempt ${a.attempt}, ${ago(a.at_ms)})`]);
    for (const l of radios) {
      if (l.airtime_budget_ms && l.airtime_window_ms >= l.airtime_budget_ms) items.push(['warn', `Radio ${l.name}: airtime budget spent.`]);
    }
    alerts.replaceChildren(items.length
      ? el('ul', { class: 'alerts' }, items.map(([k, t]) => el('li', { class: k }, t)))
      : el('p', { class: 'ok' }, 'No alerts.'));
  }

  // The controls are made once, so a refresh never wipes what a person is typing.
  const message = el('p', { class: 'muted', id: 'ov-host-msg' });
  let cur = null;
  const toggle = el('button', {
    id: 'toggle', type: 'button', disabled: true,
    onclick: async () => {
      toggle.disabled = true;
      try {
        const r = await act('POST', '/toggle', { active: !cur.active });
        message.textContent = r.active ? 'Turned on.' : 'Turned off.';
        await refresh();
      } catch (e) { message.textContent = e.message; } finally { toggle.disabled = false; }
    },
  }, 'Turn off');
  const kind = el('input', { name: 'kind', placeholder: 'job type', value: 'echo', required: true, size: 8, 'aria-label': 'job type' });
  const price = el('input', { name: 'price', placeholder: 'credits per unit', inputmode: 'decimal', required: true, size: 8, 'aria-label': 'price' });
  const form = el('form', {
    class: 'row', id: 'price-form',
    onsubmit: async (ev) => {
      ev.preventDefault();
      if (toMicro(price.value) === null) { message.textContent = 'A price is a decimal number of credits, e.g. 0.03'; return; }
      try {
        await act('POST', '/announce', { prices: { [kind.value.trim()]: price.value.trim() } });
        message.textContent = 'Price announced.'; price.value = '';
        await refresh();
      } catch (e) { message.textContent = e.message; }
    },
  }, kind, price, el('button', { type: 'submit' }, 'Set price'));
  const info = el('div');
  host.append(info, form, message);

  function renderHost(ann) {
    cur = ann;
    toggle.disabled = false;
    toggle.textContent = ann.active ? 'Turn off' : 'Turn on';
    const state = el('strong', { id: 'ov-active', class: ann.active ? 'ok' : 'bad' }, ann.active ? 'on: takes jobs' : 'off: takes no jobs');
    const rows = Object.entries(ann.prices).map(([k, v]) => [k, credits(v)]);
    info.replaceChildren(el('p', {}, 'This node is ', state, ' ', toggle),
      facts([['Job types', ann.job_types.join(', ') || 'none'], ['Burst', String(ann.burst)],
        ['Announcement', `#${ann.seq}, ${ago(ann.issued_at_ms)}`], ['Node', peerId(ann.node_id)]]),
      el('h3', {}, 'Prices (credits per unit)'), table(['type', 'price'], rows));
  }

  refresh();
  const off = on('status', () => refresh());
  return { refresh, dispose: off };
}
