// Ledger and wallet: balances, transactions with witness progress, recent blocks; a transfer.

import { act, get, getOptional } from './api.js';
import { ago, bar, card, credits, el, facts, failure, peerId, table, toMicro } from './util.js';

export function mount(root) {
  const wallet = el('div', { id: 'wallet' });
  const txs = el('div', { id: 'txs' });
  const blocks = el('div', { id: 'blocks' });
  const balances = el('div', { id: 'balances' });
  const msg = el('p', { class: 'muted', id: 'send-msg' });
  const dst = el('input', { name: 'dst', placeholder: 'peer id or system', required: true, 'aria-label': 'destination' });
  const amount = el('input', { name: 'amount', placeholder: 'credits', inputmode: 'decimal', required: true, size: 8, 'aria-label': 'amount in credits' });
  const send = el('form', {
    id: 'send-form', class: 'row',
    onsubmit: async (ev) => {
      ev.preventDefault();
      const micro = toMicro(amount.value);
      if (!micro) { msg.textContent = 'The amount is a positive number of credits, e.g. 1.5'; return; }
      msg.textContent = 'Sending, waiting for the witnesses…';
      try {
        const r = await act('POST', '/wallet/tx', { dst: dst.value.trim(), amount: micro, wait_ms: 10000 });
        msg.textContent = `Transaction ${r.tx_id.slice(0, 12)}… is ${r.view ? r.view.state : 'submitted'}.`;
        amount.value = '';
        await refresh();
      } catch (e) { msg.textContent = e.message; }
    },
  }, dst, amount, el('button', { type: 'submit' }, 'Send'));
  root.append(el('div', { class: 'grid' },
    card('Wallet', wallet, el('h3', {}, 'Send a transfer'), send, msg),
    card('Balances', balances), card('Transactions', txs), card('Recent blocks', blocks)));

  async function refresh() {
    try {
      const [st, bal, all, list, bl] = await Promise.all([
        get('/ledger/status'), getOptional('/wallet/balance'), getOptional('/wallet/balances'),
        getOptional('/wallet/txs?limit=20'), get('/ledger/blocks?limit=10'),
      ]);
      const w = st.wallet;
      wallet.replaceChildren(w ? facts([
        ['This node', bal ? el('strong', { id: 'my-balance' }, `${credits(bal.balance)} credits`) : '—'],
        ['Next nonce', bal ? String(bal.next_nonce) : '—'],
        ['Supply', `${credits(w.supply)} credits`],
        ['Witness', w.witness ? 'yes' : 'no'],
        ['Witnesses', el('span', {}, w.witnesses.map((x) => [peerId(x.peer), ` (${x.weight_milli / 1000}) `]))],
        ['Quorum', `${w.quorum_milli / 1000} of the weight, epoch ${w.epoch}`],
        ['Transactions', `${w.final_txs} final, ${w.pending_txs} pending`],
      ]) : el('p', { class: 'muted' }, st.joining ? `Joining wallet ${st.joining.slice(0, 12)}…` : 'The wallet is off: run `offgrid wallet init` or `wallet join`.'));
      balances.replaceChildren(all ? table(['account', 'balance'], Object.entries(all.accounts)
        .sort((a, b) => b[1] - a[1]).map(([k, v]) => [k === 'system' ? 'system' : peerId(k), credits(v)])) : el('p', { class: 'muted' }, '—'));
      txs.replaceChildren(table(['tx', 'from → to', 'amount', 'witnesses', 'state', 'when'], ((list && list.txs) || []).map((t) => [
        el('code', { title: t.id }, t.id.slice(0, 10) + '…'),
        el('span', {}, peerId(t.src), ' → ', t.dst === 'system' ? 'system' : peerId(t.dst)),
        credits(t.amount),
        bar(t.weight_milli, t.quorum_milli, `${t.witnesses.length} witness(es), ${(t.weight_milli / 1000).toFixed(1)} / ${(t.quorum_milli / 1000).toFixed(1)}`, t.state === 'final' ? 'good' : 'warn'),
        el('span', { class: t.state === 'final' ? 'ok' : t.dead ? 'bad' : 'warn' }, t.dead ? 'dead' : t.state),
        ago(t.final_ms || t.received_ms),
      ])));
      blocks.replaceChildren(facts([['Blocks', String(st.blocks)], ['Tips', String(st.tips.length)], ['Orphans', String(st.orphans)]]),
        table(['block', 'author', 'receipts', 'parents', 'when'], bl.blocks.map((b) => [
          el('code', { title: b.id }, b.id.slice(0, 10) + '…'), peerId(b.author), String(b.receipts), String(b.parents.length), ago(b.timestamp_ms),
        ])));
    } catch (e) { wallet.replaceChildren(failure(e)); }
  }
  refresh();
  return { refresh };
}
