// Jobs: run one, and the jobs this node brokered, live (host, price, latency, receipt).

import { act, get, on } from './api.js';
import { card, credits, el, facts, failure, peerId, table, ago } from './util.js';

export function mount(root) {
  const list = el('div', { id: 'jobs-table' });
  const result = el('div', { id: 'job-result' });
  const hostSel = el('select', { name: 'host', 'aria-label': 'host' }, el('option', { value: '' }, 'best offer'));
  const type = el('input', { name: 'type', value: 'echo', required: true, size: 10, 'aria-label': 'job type' });
  const payload = el('textarea', { name: 'payload', rows: 3, 'aria-label': 'payload (JSON)' }, '{"msg": "hello from the dashboard"}');
  const size = el('input', { name: 'size', value: '1', size: 5, inputmode: 'decimal', 'aria-label': 'size in units' });
  const run = el('button', { type: 'submit', id: 'run-job' }, 'Run job');
  const form = el('form', {
    id: 'job-form', class: 'stack',
    onsubmit: async (ev) => {
      ev.preventDefault();
      let body;
      try { body = JSON.parse(payload.value || 'null'); } catch (e) { result.replaceChildren(failure('The payload is not JSON: ' + e.message)); return; }
      run.disabled = true;
      result.replaceChildren(el('p', { class: 'muted' }, 'Running…'));
      try {
        const req = { type: type.value.trim(), payload: body, size: size.value.trim() || '1', timeout_s: 30 };
        if (hostSel.value) req.host = hostSel.value;
        const r = await act('POST', '/market/run', req);
        result.replaceChildren(receiptCard(r));
      } catch (e) {
        result.replaceChildren(failure(e));
      } finally { run.disabled = false; }
    },
  },
  el('div', { class: 'row' }, el('label', {}, 'Type ', type), el('label', {}, 'Size ', size), el('label', {}, 'Host ', hostSel)),
  el('label', {}, 'Payload (JSON)', payload), el('div', { class: 'row' }, run));
  root.append(el('div', { class: 'grid' }, card('Run a job', form, result), card('Recent jobs (live)', list)));

  const jobs = new Map();
  function render() {
    const rows = [...jobs.values()].sort((a, b) => b.started_ms - a.started_ms).map((j) => [
      el('code', { title: j.job_id }, j.job_id.length > 16 ? '…' + j.job_id.slice(-12) : j.job_id),
      j.job_type,
      el('span', { class: j.state === 'completed' ? 'ok' : j.state === 'failed' ? 'bad' : 'warn', title: j.message || '' }, j.state === 'failed' ? `failed: ${j.error}` : j.state),
      j.host ? peerId(j.host) : '—',
      j.price_micro !== undefined ? credits(j.price_micro) : '—',
      j.latency_ms !== undefined ? `${j.latency_ms} ms` : '—',
      j.receipt ? el('code', { title: j.receipt.sig, class: 'receipt-sig' }, j.receipt.sig.slice(0, 12) + '…') : '—',
      ago(j.started_ms),
    ]);
    list.replaceChildren(table(['job', 'type', 'state', 'host', 'price', 'latency', 'receipt', 'started'], rows, { id: 'jobs' }));
    for (const [i, tr] of list.querySelectorAll('tbody tr').entries()) {
      const j = [...jobs.values()].sort((a, b) => b.started_ms - a.started_ms)[i];
      if (j) { tr.dataset.job = j.job_id; tr.dataset.state = j.state; }
    }
  }
  async function refresh() {
    try {
      const [r, p] = await Promise.all([get('/market/jobs'), get('/peers')]);
      jobs.clear();
      for (const j of r.jobs) jobs.set(j.job_id, j);
      render();
      const chosen = hostSel.value;
      hostSel.replaceChildren(el('option', { value: '' }, 'best offer'),
        p.peers.filter((x) => x.active).map((x) => el('option', { value: x.peer_id, selected: x.peer_id === chosen }, '…' + x.peer_id.slice(-8))));
    } catch (e) { list.replaceChildren(failure(e)); }
  }
  const update = (j) => { jobs.set(j.job_id, j); render(); };
  const offs = [on('job_started', update), on('job_finished', update)];
  refresh();
  return { refresh, dispose: () => offs.forEach((f) => f()) };
}

function receiptCard(r) {
  const rc = r.receipt;
  return el('div', { class: 'receipt', id: 'receipt' },
    el('h3', {}, 'Receipt ', el('span', { class: 'ok' }, 'signed by the host')),
    facts([
      ['Job', el('code', {}, r.job_id)],
      ['Host', peerId(r.host)],
      ['Price', `${credits(r.price_micro)} per unit`],
      ['Latency', `${rc.metrics.latency_ms} ms on the host, ${r.duration_ms} ms in all`],
      ['Units', credits(rc.units)],
      ['Output', el('code', { class: 'wrap', id: 'job-output' }, JSON.stringify(r.output))],
      ['Signature', el('code', { class: 'wrap', id: 'receipt-sig' }, rc.sig)],
      ['Host key', el('code', { class: 'wrap' }, rc.pubkey)],
    ]));
}
