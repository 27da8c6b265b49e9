//! The node's wallet: known transactions, the witness role, finality and balances.
//!
//! Pure state plus [`Effects`]: every method records the store writes and gossip it implies
//! instead of doing I/O, and the service commits the writes *before* it publishes anything.
//! That order is what makes a witness's promise durable: its `(slot → tx id)` record is on
//! disk before its attestation leaves the node.
//!
//! A witness attests in batches: the transactions it records during a service round wait in
//! [`Effects::to_attest`] until [`WalletCore::seal`], which signs one Merkle root over all
//! of them (`offgrid_ledger::wallet::attestation`) just before the round's commit.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use ed25519_dalek::SigningKey;
use offgrid_behaviours::ledger_sync::CertifiedTx;
use offgrid_ledger::{
    wallet::{Finality, VerifiedTx, SYSTEM},
    ApplyOutcome, MintValidator, Signed, Tx, TxBody, TxKind, TxReject, WalletParams, WalletState,
    Witness, WitnessState,
};
use tracing::{debug, error, warn};

use crate::store::{Store, StoreError, Table};

/// Most transactions a witness keeps waiting (future nonce, funds or batch still to come).
pub const MAX_WAITING: usize = 10_000;

pub use super::records::{Effects, SendError, TxRecord, TxStatus, WitnessRecord, Write};

/// The wallet state of one node.
pub struct WalletCore {
    me: String,
    params: WalletParams,
    state: WalletState,
    witness: Option<WitnessState>,
    finality: Finality,
    records: HashMap<String, TxRecord>,
    final_ids: BTreeSet<String>,
    digest: [u8; 32],
    waiting: BTreeMap<String, VerifiedTx>,
    /// Verified forms of pending transactions, so no signature is checked twice.
    verified: HashMap<String, VerifiedTx>,
    /// This node's transfers that are not final: nonce → id.
    own_pending: BTreeMap<u64, String>,
    /// This node's witness promises while it is not a witness of the current epoch.
    dormant: Option<WitnessState>,
    /// Reconfigurations this witness's operator approved (`super::wallet_epochs`).
    approved: BTreeSet<String>,
}

impl WalletCore {
    /// Restores the wallet from the store: witness records, then every known transaction;
    /// final ones are applied in whatever order they come.
    pub fn load(me: String, params: WalletParams, store: &Store) -> Result<Self, StoreError> {
        let records: Vec<(String, WitnessRecord)> = store.scan(Table::WitnessRecords)?;
        let invalid = |e| StoreError::Io(format!("wallet parameters: {e}"));
        // Kept whether or not this node witnesses now: an epoch may make it one again, and
        // it must never sign against an old promise.
        let promises = WitnessState::from_records(
            params.clone(),
            records.into_iter().map(|(_, r)| (r.slot, r.tx_id)),
        )
        .map_err(invalid)?;
        let (witness, dormant) = match params.weight_of(&me) {
            Some(_) => (Some(promises), None),
            None => (None, Some(promises)),
        };
        let approved = store
            .get::<Vec<String>>(Table::Meta, super::records::APPROVALS_KEY)?
            .unwrap_or_default()
            .into_iter()
            .collect();
        let mut core = WalletCore {
            state: WalletState::new(&params).map_err(invalid)?,
            finality: Finality::new(params.clone()).map_err(invalid)?,
            me,
            params,
            witness,
            records: HashMap::new(),
            final_ids: BTreeSet::new(),
            digest: [0; 32],
            waiting: BTreeMap::new(),
            verified: HashMap::new(),
            own_pending: BTreeMap::new(),
            dormant,
            approved,
        };
        for (id, rec) in store.scan::<TxRecord>(Table::Txs)? {
            if rec.status == TxStatus::Final {
                core.mark_final_in_memory(&id);
                if let Err(e) = core.state.apply_final(&rec.tx) {
                    error!(tx = %id, error = %e, "stored final transaction does not apply");
                }
            } else if let Ok(v) = VerifiedTx::new(&rec.tx) {
                // A restarted witness retries what it had not signed yet.
                core.waiting.insert(id.clone(), v.clone());
                core.verified.insert(id.clone(), v);
            }
            core.records.insert(id, rec);
        }
        core.catch_up_epochs();
        core.rebuild_own_pending();
        Ok(core)
    }

    fn rebuild_own_pending(&mut self) {
        let last = self.state.last_nonce(&self.me);
        self.own_pending = self
            .records
            .iter()
            .filter(|(_, r)| r.status == TxStatus::Pending)
            .filter_map(|(id, r)| {
                let b: TxBody = serde_json::from_slice(&r.tx.bytes).ok()?;
                (b.kind == TxKind::Transfer && b.src == self.me && b.nonce > last)
                    .then(|| (b.nonce, id.clone()))
            })
            .collect();
    }

    /// The wallet parameters.
    pub fn params(&self) -> &WalletParams {
        &self.params
    }

    /// Balances and nonces from final transactions.
    pub fn state(&self) -> &WalletState {
        &self.state
    }

    /// Whether this node is a listed witness.
    pub fn is_witness(&self) -> bool {
        self.witness.is_some()
    }

    /// A known transaction.
    pub fn record(&self, id: &str) -> Option<&TxRecord> {
        self.records.get(id)
    }

    /// Every known transaction.
    pub fn records(&self) -> impl Iterator<Item = (&String, &TxRecord)> {
        self.records.iter()
    }

    /// Ids of final transactions, ascending.
    pub fn final_ids(&self) -> &BTreeSet<String> {
        &self.final_ids
    }

    /// Number of final transactions and the XOR digest of their ids' hashes.
    pub fn final_digest(&self) -> (u64, String) {
        (self.final_ids.len() as u64, hex::encode(self.digest))
    }

    /// The next nonce for this node's own transfers, past its pending ones.
    pub fn next_own_nonce(&self) -> u64 {
        let last = self.state.last_nonce(&self.me);
        let pending = self
            .own_pending
            .range(last.saturating_add(1)..)
            .next_back()
            .map_or(last, |(n, _)| *n);
        pending.saturating_add(1)
    }

    /// Signs a transfer from this node. With `nonce` unset, takes the next free one.
    #[allow(clippy::too_many_arguments)]
    pub fn sign_transfer(
        &self,
        key: &SigningKey,
        dst: &str,
        amount: u64,
        fee: u64,
        nonce: Option<u64>,
        meta: Option<String>,
        now_ms: u64,
    ) -> Result<Tx, SendError> {
        let body = TxBody {
            kind: TxKind::Transfer,
            src: self.me.clone(),
            dst: dst.to_owned(),
            amount,
            fee,
            nonce: nonce.unwrap_or_else(|| self.next_own_nonce()),
            meta,
            author: self.me.clone(),
            created_ms: now_ms,
            claim: None,
            reconfig: None,
        };
        if fee < self.params.tx_fee_min || fee > self.params.tx_fee_max {
            return Err(TxReject::FeeOutOfRange(fee).into());
        }
        if amount == 0 {
            return Err(TxReject::ZeroAmount.into());
        }
        if dst != SYSTEM && !offgrid_ledger::peer_id::is_peer_id(dst) {
            return Err(TxReject::BadDestination.into());
        }
        Signed::sign(key, &body).map_err(|e| SendError::Sign(e.to_string()))
    }

    /// Takes in a transaction from gossip, sync or a local user. Checks its signature and
    /// form (anything failing that is rejected and must not be relayed), stores it, and as
    /// a witness attests it if the rules allow. Returns whether it was new.
    pub fn on_tx(
        &mut self,
        tx: &Tx,
        mints: &dyn MintValidator,
        now_ms: u64,
        fx: &mut Effects,
    ) -> Result<bool, TxReject> {
        let id = tx.id();
        if self.records.contains_key(&id) {
            self.on_known_tx(&id, mints, fx)?;
            return Ok(false);
        }
        // The one signature check of this transaction on this node.
        let v = VerifiedTx::new(tx)?;
        self.on_new_tx(v, mints, now_ms, fx);
        Ok(true)
    }

    /// [`WalletCore::on_tx`] for the transactions of one gossip message: the signatures of
    /// those new here are checked in one batch. Returns how many were invalid.
    pub fn on_txs(
        &mut self,
        txs: &[Tx],
        mints: &dyn MintValidator,
        now_ms: u64,
        fx: &mut Effects,
    ) -> usize {
        let mut bad = 0;
        let mut new = Vec::new();
        for tx in txs {
            let id = tx.id();
            if self.records.contains_key(&id) {
                if let Err(e) = self.on_known_tx(&id, mints, fx) {
                    debug!(tx = %id, error = %e, "invalid known transaction");
                    bad += 1;
                }
            } else {
                new.push(tx);
            }
        }
        for v in VerifiedTx::new_many(&new) {
            match v {
                // The same transaction twice in one message is taken in once.
                Ok(v) if self.records.contains_key(v.id()) => {}
                Ok(v) => self.on_new_tx(v, mints, now_ms, fx),
                Err(e) => {
                    debug!(error = %e, "invalid transaction in gossip");
                    bad += 1;
                }
            }
        }
        bad
    }

    /// A re-publication of a known transaction: a witness that signed it attests again
    /// (messages get lost).
    fn on_known_tx(
        &mut self,
        id: &str,
        mints: &dyn MintValidator,
        fx: &mut Effects,
    ) -> Result<(), TxReject> {
        let Some(r) = self.records.get(id) else {
            return Ok(());
        };
        if r.status == TxStatus::Pending {
            let v = match self.verified.get(id) {
                Some(v) => v.clone(),
                None => VerifiedTx::new(&r.tx)?,
            };
            self.try_witness(&v, mints, fx);
        }
        Ok(())
    }

    /// Stores a transaction seen here for the first time and, as a witness, attests it.
    fn on_new_tx(
        &mut self,
        v: VerifiedTx,
        mints: &dyn MintValidator,
        now_ms: u64,
        fx: &mut Effects,
    ) {
        let id = v.id().to_owned();
        let tx = v.tx();
        let body = v.body();
        let rec = TxRecord {
            tx: tx.clone(),
            status: TxStatus::Pending,
            cert: Vec::new(),
            received_ms: now_ms,
            final_ms: None,
        };
        fx.ops.push(Write::Tx(id.clone(), rec.clone()));
        self.records.insert(id.clone(), rec);
        if body.kind == TxKind::Transfer
            && body.src == self.me
            && body.nonce > self.state.last_nonce(&self.me)
        {
            self.own_pending.insert(body.nonce, id.clone());
        }
        self.verified.insert(id.clone(), v.clone());
        if self.finality.is_final(&id) {
            self.finalize(&id, None, now_ms, fx);
        } else {
            self.try_witness(&v, mints, fx);
        }
    }

    /// As a witness: check, record (queued write), attest. Transactions that may become
    /// valid later wait.
    fn try_witness(&mut self, v: &VerifiedTx, mints: &dyn MintValidator, fx: &mut Effects) {
        let Some(w) = self.witness.as_mut() else {
            return;
        };
        let id = v.id().to_owned();
        let rules = epochs::Approvals {
            mints,
            ids: &self.approved,
        };
        match w.check_verified(&self.state, v, &rules) {
            Ok(checked) => {
                if !checked.already_recorded {
                    if let Err(e) = w.record(checked.slot.clone(), id.clone()) {
                        debug!(tx = %id, error = %e, "not recorded");
                        return;
                    }
                    let rec = WitnessRecord {
                        slot: checked.slot.clone(),
                        tx_id: id.clone(),
                    };
                    fx.ops.push(Write::Witness(checked.slot.key(), rec));
                }
                self.waiting.remove(&id);
                // Signed with the rest of the round's batch by `seal`.
                fx.to_attest.push(v.clone());
            }
            Err(TxReject::BadNonce { expected, got }) if got > expected => self.wait(id, v),
            Err(TxReject::InsufficientFunds { .. })
            | Err(TxReject::MintRejected)
            | Err(TxReject::NotApproved) => self.wait(id, v),
            Err(e) => {
                debug!(tx = %id, reason = %e, "witness refuses");
                self.waiting.remove(&id);
            }
        }
    }

    /// Signs this round's attestations (one Merkle root for all of [`Effects::to_attest`]),
    /// queues them for gossip and counts them here, which may make transactions final. The
    /// slots were recorded in `fx.ops`, which the service commits before anything is sent.
    pub fn seal(&mut self, key: &SigningKey, now_ms: u64, fx: &mut Effects) {
        let todo = std::mem::take(&mut fx.to_attest);
        let Some(w) = self.witness.as_ref() else {
            return;
        };
        if todo.is_empty() {
            return;
        }
        let mut seen = HashSet::with_capacity(todo.len());
        let batch: Vec<&VerifiedTx> = todo.iter().filter(|v| seen.insert(v.id())).collect();
        let own = match w.attest_batch(key, &batch) {
            Ok(own) => own,
            Err(e) => {
                error!(txs = batch.len(), error = %e, "cannot attest");
                return;
            }
        };
        fx.attests.reserve(own.len());
        for v in own {
            fx.attests.push(v.attestation().clone());
            // Final meanwhile (e.g. by other witnesses' attestations in this round): the
            // attestation is still sent, but nothing is tracked for it any more.
            if self.final_ids.contains(v.tx_id()) {
                continue;
            }
            let id = v.tx_id().to_owned();
            // Our own attestation counts without checking the signature just made.
            if let Ok(true) = self.finality.add_verified(v) {
                self.finalize(&id, None, now_ms, fx);
            }
        }
    }

    pub(super) fn wait(&mut self, id: String, v: &VerifiedTx) {
        if self.waiting.len() < MAX_WAITING || self.waiting.contains_key(&id) {
            self.waiting.insert(id, v.clone());
        } else {
            warn!(tx = %id, "witness wait list full; dropping");
        }
    }

    /// Retries waiting transactions after the state changed (a final tx, a new block).
    pub fn retry_waiting(&mut self, mints: &dyn MintValidator, fx: &mut Effects) {
        if self.witness.is_none() || self.waiting.is_empty() {
            return;
        }
        // Each round may unlock the next nonce; stop when a round changes nothing.
        for _ in 0..64 {
            let before = self.waiting.len();
            let n_final = self.final_ids.len();
            let txs: Vec<VerifiedTx> = self.waiting.values().cloned().collect();
            for v in txs {
                if self.final_ids.contains(v.id()) {
                    self.waiting.remove(v.id());
                    continue;
                }
                self.try_witness(&v, mints, fx);
            }
            if self.waiting.len() == before && self.final_ids.len() == n_final {
                break;
            }
        }
    }

    /// Counts an attestation; finalizes its transaction at quorum.
    pub fn on_attest(&mut self, w: &Witness, now_ms: u64, fx: &mut Effects) -> Result<(), String> {
        match self.on_attests(std::slice::from_ref(w), now_ms, fx) {
            0 => Ok(()),
            _ => Err("invalid attestation".into()),
        }
    }

    /// Counts the attestations of one gossip message, their signatures checked in one batch;
    /// finalizes transactions at quorum. Returns how many were invalid.
    pub fn on_attests(&mut self, ws: &[Witness], now_ms: u64, fx: &mut Effects) -> usize {
        let mut bad = 0;
        // Attestations of final transactions change nothing: only their form is checked.
        let finals = &self.final_ids;
        let verified = self.finality.verify_open(ws, |id| finals.contains(id));
        for r in verified {
            let v = match r {
                Ok(Some(v)) => v,
                Ok(None) => continue,
                // From an epoch this node has not reached yet: not the sender's fault.
                Err(e) if e.is_epoch_mismatch() => continue,
                Err(e) => {
                    debug!(error = %e, "invalid attestation");
                    bad += 1;
                    continue;
                }
            };
            // An earlier attestation of this message may have finalized it.
            if self.final_ids.contains(v.tx_id()) {
                continue;
            }
            let id = v.tx_id().to_owned();
            match self.finality.add_verified(v) {
                Ok(true) => self.finalize(&id, None, now_ms, fx),
                Ok(false) | Err(offgrid_ledger::wallet::WitnessError::Full) => {}
                Err(e) if e.is_epoch_mismatch() => {}
                Err(e) => {
                    debug!(tx = %id, error = %e, "attestation not counted");
                    bad += 1;
                }
            }
        }
        bad
    }

    /// Takes in a transaction with its certificate (sync). Refused unless the certificate
    /// reaches the quorum.
    pub fn on_certified(&mut self, c: &CertifiedTx, now_ms: u64, fx: &mut Effects) -> bool {
        let id = c.tx.id();
        if self.final_ids.contains(&id) {
            return true;
        }
        if !self.finality.certifies(&id, &c.cert) {
            return false;
        }
        if c.tx.verify_signature().is_err() {
            return false;
        }
        if !self.records.contains_key(&id) {
            self.records.insert(
                id.clone(),
                TxRecord {
                    tx: c.tx.clone(),
                    status: TxStatus::Pending,
                    cert: Vec::new(),
                    received_ms: now_ms,
                    final_ms: None,
                },
            );
        }
        self.finalize(&id, Some(c.cert.clone()), now_ms, fx);
        true
    }

    fn mark_final_in_memory(&mut self, id: &str) {
        if self.final_ids.insert(id.to_owned()) {
            let h = blake3::hash(id.as_bytes());
            for (d, b) in self.digest.iter_mut().zip(h.as_bytes()) {
                *d ^= b;
            }
        }
    }

    /// Marks `id` final (queued write), applies it to balances and drops it from the
    /// pending sets. A certified transaction this node has not seen is fetched.
    fn finalize(&mut self, id: &str, cert: Option<Vec<Witness>>, now_ms: u64, fx: &mut Effects) {
        if self.final_ids.contains(id) {
            return;
        }
        let Some(rec) = self.records.get_mut(id) else {
            fx.want_txs.insert(id.to_owned());
            return;
        };
        rec.status = TxStatus::Final;
        rec.cert = cert.unwrap_or_else(|| self.finality.attestations(id));
        rec.final_ms = Some(now_ms);
        let rec = rec.clone();
        fx.ops.push(Write::Tx(id.to_owned(), rec.clone()));
        self.finality.forget(id);
        self.waiting.remove(id);
        self.mark_final_in_memory(id);
        let applied = match self.verified.remove(id) {
            Some(v) => self.state.apply_final_verified(&v),
            None => self.state.apply_final(&rec.tx),
        };
        match applied {
            Ok(ApplyOutcome::Applied(_)) | Ok(ApplyOutcome::AlreadyApplied) => {}
            Ok(ApplyOutcome::Deferred) => debug!(tx = %id, "final, waiting for an earlier one"),
            Err(e) => error!(tx = %id, error = %e, "final transaction does not apply"),
        }
        let last = self.state.last_nonce(&self.me);
        self.own_pending.retain(|n, pid| *n > last && pid != id);
        fx.finalized.push(id.to_owned());
        if self.state.epoch_set().epoch != self.finality.epoch() {
            self.on_new_epoch();
        }
    }
}

#[path = "wallet_epochs.rs"]
mod epochs;
#[path = "wallet_views.rs"]
mod views;

#[cfg(test)]
#[path = "wallet_tests.rs"]
mod tests;
