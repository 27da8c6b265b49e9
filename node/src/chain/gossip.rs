//! Transaction gossip: packing a round's transactions and attestations into messages of
//! bounded count and size.

use std::collections::BTreeMap;

use offgrid_behaviours::ledger_sync::{TxGossip, TX_TOPIC};
use offgrid_net::LedgerOut;
use tracing::warn;

/// Most items in one gossip message on the transaction topic.
const MAX_GOSSIP_ITEMS: usize = 48;
/// Most estimated bytes of transactions or attestations in one gossip message: well under
/// the gossipsub cap (`network.max_gossip_bytes`, 64 KiB by default), as attestations carry
/// Merkle paths and settlements their receipts.
const MAX_GOSSIP_ATTEST_BYTES: usize = 40 * 1024;

/// Packs transactions and attestations into gossip messages of bounded size.
pub(super) fn publish_txs(
    outs: &mut Vec<LedgerOut>,
    seq: &mut u64,
    txs: Vec<offgrid_ledger::Tx>,
    attests: Vec<offgrid_ledger::Witness>,
) {
    // Deduplicate within the round (a tx may be queued twice, e.g. settle + republish).
    let mut seen = BTreeMap::new();
    for t in txs {
        seen.entry(t.id()).or_insert(t);
    }
    // By count and by size: a settlement carries its receipt and order, a few KiB each.
    let mut chunk: Vec<offgrid_ledger::Tx> = Vec::new();
    let mut bytes = 0;
    for t in seen.into_values() {
        // Base64 of the signed bytes, plus the signature, key and framing.
        let len = t.bytes.len() * 4 / 3 + 256;
        if !chunk.is_empty()
            && (chunk.len() >= MAX_GOSSIP_ITEMS || bytes + len > MAX_GOSSIP_ATTEST_BYTES)
        {
            *seq += 1;
            push_gossip(
                outs,
                TxGossip {
                    txs: std::mem::take(&mut chunk),
                    attests: Vec::new(),
                    seq: *seq,
                },
            );
            bytes = 0;
        }
        bytes += len;
        chunk.push(t);
    }
    if !chunk.is_empty() {
        *seq += 1;
        push_gossip(
            outs,
            TxGossip {
                txs: chunk,
                attests: Vec::new(),
                seq: *seq,
            },
        );
    }
    let mut chunk: Vec<offgrid_ledger::Witness> = Vec::new();
    let mut bytes = 0;
    for a in attests {
        let len = a.wire_len_hint();
        if !chunk.is_empty()
            && (chunk.len() >= MAX_GOSSIP_ITEMS * 2 || bytes + len > MAX_GOSSIP_ATTEST_BYTES)
        {
            *seq += 1;
            push_gossip(
                outs,
                TxGossip {
                    txs: Vec::new(),
                    attests: std::mem::take(&mut chunk),
                    seq: *seq,
                },
            );
            bytes = 0;
        }
        bytes += len;
        chunk.push(a);
    }
    if !chunk.is_empty() {
        *seq += 1;
        push_gossip(
            outs,
            TxGossip {
                txs: Vec::new(),
                attests: chunk,
                seq: *seq,
            },
        );
    }
}

fn push_gossip(outs: &mut Vec<LedgerOut>, g: TxGossip) {
    match serde_json::to_vec(&g) {
        Ok(data) => outs.push(LedgerOut::Publish {
            topic: TX_TOPIC,
            data,
        }),
        Err(e) => warn!(error = %e, "cannot encode transaction gossip"),
    }
}
