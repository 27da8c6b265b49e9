// Storage: assets, shard health per host, put and get with progress.

import { act, get, getOptional } from './api.js';
import { bar, bytes, card, el, facts, failure, peerId, table, ago } from './util.js';

export function mount(root) {
  const summary = el('div', { id: 'st-summary' });
  const assets = el('div', { id: 'st-assets' });
  const health = el('div', { id: 'shard-health' }, el('p', { class: 'muted' }, 'Pick an asset to check its shards.'));
  const ops = el('div', { id: 'st-ops' });

  const path = el('input', { name: 'path', placeholder: '/absolute/path/on/the/node', required: true, 'aria-label': 'file path on the node' });
  const mode = el('select', { name: 'mode', 'aria-label': 'scheme' }, el('option', { value: 'ec' }, 'erasure coded'), el('option', { value: 'rep' }, 'replicated'));
  const put = el('form', {
    id: 'put-form', class: 'row',
    onsubmit: (ev) => { ev.preventDefault(); start('put', '/storage/put', { path: path.value.trim(), mode: mode.value }); },
  }, path, mode, el('button', { type: 'submit', id: 'put-button' }, 'Put'));
  const asset = el('input', { name: 'asset', placeholder: 'asset id (64 hex digits)', required: true, 'aria-label': 'asset id' });
  const out = el('input', { name: 'out', placeholder: '/absolute/path/to/write', required: true, 'aria-label': 'output path on the node' });
  const getForm = el('form', {
    id: 'get-form', class: 'row',
    onsubmit: (ev) => { ev.preventDefault(); start('get', '/storage/get', { asset: asset.value.trim(), out: out.value.trim() }); },
  }, asset, out, el('button', { type: 'submit' }, 'Get'));

  root.append(el('div', { class: 'grid' },
    card('Shard store', summary),
    card('Put or get a file', el('p', { class: 'muted' }, 'Paths are on the node\u2019s own disk, inside its allowed paths.'), put, getForm, ops),
    card('Assets', assets),
    card('Shard health per host', health)));

  async function start(kind, route, body) {
    const line = el('div', { class: 'op' }, el('strong', {}, kind), ' starting…');
    ops.prepend(line);
    try {
      const op = await act('POST', route, body);
      await follow(op.op_id, kind, line);
    } catch (e) { line.replaceChildren(el('strong', {}, kind), ' ', failure(e)); }
  }

  async function follow(id, kind, line) {
    for (;;) {
      const o = await get(`/storage/ops/${encodeURIComponent(id)}?wait_ms=1000`);
      const p = o.progress || {};
      line.dataset.state = o.state;
      line.replaceChildren(el('strong', {}, kind), ' ', el('span', { class: 'op-state' }, o.state), ' ',
        bar(p.done_bytes || 0, p.total_bytes || 0, `${bytes(p.done_bytes || 0)} / ${bytes(p.total_bytes || 0)}, ${p.shards_done || 0}/${p.shards_total || 0} shards`));
      if (o.state === 'running') continue;
      if (o.state === 'done' && o.result) {
        const r = o.result;
        line.append(el('p', {}, kind === 'put'
          ? [`stored as `, el('code', { class: 'wrap', id: 'put-asset' }, r.asset_id), ` on ${r.hosts} host(s), ${r.scheme}`]
          : [`wrote ${bytes(r.size)} to `, el('code', {}, r.out), ', hash verified']));
        await refresh();
        if (kind === 'put') await check(r.asset_id);
      } else if (o.message) {
        line.append(el('p', { class: 'error' }, `${o.error}: ${o.message}`));
      }
      return;
    }
  }

  async function check(id) {
    health.replaceChildren(el('p', { class: 'muted' }, 'Checking ', el('code', {}, id.slice(0, 12) + '…'), ' …'));
    try {
      const c = await get(`/storage/assets/${id}/check`);
      const ok = c.segments_lost === 0;
      health.replaceChildren(
        facts([['Asset', el('code', { class: 'wrap' }, c.asset_id)],
          ['Scheme', `${c.k} of ${c.n} per segment, ${c.segments} segment(s)`],
          ['Fewest reachable', el('span', { class: ok ? 'ok' : 'bad', id: 'reachable-min' }, `${c.reachable_min} of ${c.n} (need ${c.k})`)],
          ['Segments below margin', String(c.segments_below_threshold)]]),
        table(['host', 'shards held', 'health'], (c.hosts || []).map((h) => [
          peerId(h.peer), `${h.present} / ${h.shards}`,
          h.up ? bar(h.present, h.shards, h.present === h.shards ? 'healthy' : 'missing shards', h.present === h.shards ? 'good' : 'warn')
            : el('span', { class: 'bad' }, 'down'),
        ]), { id: 'host-health', 'data-asset': c.asset_id }));
    } catch (e) { health.replaceChildren(failure(e)); }
  }

  // The newest asset's health is shown when the page opens.
  let checked = false;
  async function refresh() {
    try {
      const [s, a] = await Promise.all([getOptional('/storage/status'), get('/storage/assets')]);
      if (s) {
        const h = s.host;
        summary.replaceChildren(bar(h.used_bytes, h.quota_bytes, `${bytes(h.used_bytes)} of ${bytes(h.quota_bytes)}`),
          facts([['Shards held', String(h.shards)], ['For peers', String(h.peers)],
            ['Free disk', h.free_bytes === undefined || h.free_bytes === null ? '—' : bytes(h.free_bytes)],
            ['Served', `${h.served_shards} shard(s)`], ['Refused', `${h.quota_refusals + h.limit_refusals + h.low_disk_refusals}`],
            ['Assets', `${s.assets} (${s.assets_owned} owned)`], ['Operations running', String(s.ops_running)]]));
      }
      if (!checked && a.assets.length) { checked = true; check(a.assets[0].asset_id); }
      assets.replaceChildren(table(['name', 'asset', 'size', 'scheme', 'owner', 'stored', ''], a.assets.map((x) => [
        x.name || '—', el('code', { title: x.asset_id }, x.asset_id.slice(0, 12) + '…'), bytes(x.size), x.scheme,
        x.owned ? 'this node' : peerId(x.owner), ago(x.created_ms),
        el('button', { type: 'button', class: 'small', onclick: () => check(x.asset_id) }, 'check'),
      ]), { id: 'assets' }));
    } catch (e) { assets.replaceChildren(failure(e)); }
  }
  refresh();
  return { refresh };
}
