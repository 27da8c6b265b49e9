//! Read-only views of the wallet: pending transactions to spread, certificates for sync,
//! who attested what, and transactions as quorum-engine items.

use offgrid_behaviours::ledger_sync::CertifiedTx;
use offgrid_ledger::{
    quorum::{QuorumItem, QuorumKind},
    Tx, TxBody,
};

use super::{TxRecord, TxStatus, WalletCore};

impl WalletCore {
    /// Up to `max` transactions that are not final yet and were first seen here at least
    /// `min_age_ms` before `now_ms`, oldest first: the author keeps spreading its own, and a
    /// witness re-attests those it signed (messages get lost). A transaction seen "after"
    /// `now_ms` (the wall clock went back) counts as old enough, so a clock step never holds
    /// one back.
    pub fn pending_txs(&self, max: usize, now_ms: u64, min_age_ms: u64) -> Vec<Tx> {
        let old_enough = |seen: u64| seen > now_ms || now_ms.saturating_sub(seen) >= min_age_ms;
        let mut v: Vec<&TxRecord> = self
            .records
            .values()
            .filter(|r| {
                r.status == TxStatus::Pending && old_enough(r.received_ms) && !self.is_dead(&r.tx)
            })
            .collect();
        v.sort_by_key(|r| r.received_ms);
        v.into_iter().take(max).map(|r| r.tx.clone()).collect()
    }

    /// Whether a pending transaction can never become final: its slot is taken by a final
    /// one.
    pub fn is_dead(&self, tx: &Tx) -> bool {
        serde_json::from_slice::<TxBody>(&tx.bytes).map_or(true, |b| self.state.is_dead(&b))
    }

    /// The certificate-bearing form of a known transaction.
    pub fn certified(&self, id: &str) -> Option<CertifiedTx> {
        let r = self.records.get(id)?;
        let cert = if r.cert.is_empty() {
            self.finality.attestations(id)
        } else {
            r.cert.clone()
        };
        Some(CertifiedTx {
            tx: r.tx.clone(),
            cert,
        })
    }

    /// The witnesses that attested `id` (peer ids).
    pub fn witnesses_of(&self, id: &str) -> Vec<String> {
        let atts = match self.records.get(id) {
            Some(r) if !r.cert.is_empty() => r.cert.clone(),
            _ => self.finality.attestations(id),
        };
        // Listed witnesses' peer ids are kept encoded; anything else is encoded here.
        let mut v: Vec<String> = atts
            .iter()
            .map(|w| {
                self.finality
                    .witness_peer(&w.pubkey)
                    .map_or_else(|| w.signer_peer_id(), str::to_owned)
            })
            .collect();
        v.sort();
        v.dedup();
        v
    }

    /// The transaction as a token item of the quorum engine: required weight = quorum, one
    /// ack per attesting witness with its configured weight.
    pub fn token_item(&self, id: &str) -> Option<QuorumItem> {
        let r = self.records.get(id)?;
        let mut item = QuorumItem::new(
            QuorumKind::Token,
            id,
            self.state.epoch_set().quorum_milli as f64 / 1000.0,
            r.received_ms,
        );
        for w in self.witnesses_of(id) {
            let weight = self.state.epoch_set().weight_of(&w).unwrap_or(0) as f64 / 1000.0;
            item.ack(w, weight, r.final_ms.unwrap_or(r.received_ms));
        }
        Some(item)
    }
}
