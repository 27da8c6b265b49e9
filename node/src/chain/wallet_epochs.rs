//! Witness epochs on the node: proposing and approving a reconfiguration, and opening the
//! next epoch once one is final (`offgrid_ledger::wallet::epoch`).
//!
//! A witness signs a reconfiguration only if its operator asked for the same change
//! (`offgrid wallet witnesses add|remove`), so one hostile witness cannot reshape the set.
//! The approvals are stored with the round's other writes before any attestation leaves.
//! When an epoch opens, [`super::WalletCore`] points its finality at the new set, takes up
//! or sets down the witness role, and queues every pending transaction it had signed to be
//! attested again in the new epoch (the old epoch's attestations no longer count).

use std::collections::BTreeSet;

use ed25519_dalek::SigningKey;
use offgrid_ledger::{
    wallet::epoch::{propose, reconfig_body, Change, EpochSet},
    wallet::VerifiedTx,
    MintValidator, Signed, Tx, TxBody, TxReject,
};
use tracing::info;

use super::{Effects, SendError, TxStatus, WalletCore, Write};

/// Most approvals kept (the newest win).
const MAX_APPROVALS: usize = 64;

/// The mint rules the caller gives, and this witness's approvals of reconfigurations.
pub(super) struct Approvals<'a> {
    pub(super) mints: &'a dyn MintValidator,
    pub(super) ids: &'a BTreeSet<String>,
}

impl MintValidator for Approvals<'_> {
    fn validate_mint(&self, body: &TxBody) -> bool {
        self.mints.validate_mint(body)
    }

    fn approve_reconfig(&self, tx_id: &str) -> bool {
        self.ids.contains(tx_id)
    }
}

impl WalletCore {
    /// The current epoch's witnesses and quorum.
    pub fn epoch_set(&self) -> &EpochSet {
        self.state.epoch_set()
    }

    /// `wallet witnesses add|remove`: the reconfiguration applying `change` to the current
    /// epoch, signed here and approved by this witness (the approval is a queued write).
    /// Another witness asking for the same change makes the same transaction.
    pub fn propose_reconfig(
        &mut self,
        key: &SigningKey,
        change: &Change,
        quorum_milli: Option<u64>,
        fx: &mut Effects,
    ) -> Result<Tx, SendError> {
        let current = self.state.epoch_set();
        if current.weight_of(&self.me).is_none() {
            return Err(TxReject::BadReconfig(format!(
                "only a witness of the current epoch ({}) can propose a change",
                current.epoch
            ))
            .into());
        }
        let r = propose(current, change, quorum_milli)
            .map_err(|e| TxReject::BadReconfig(e.to_string()))?;
        let tx =
            Signed::sign(key, &reconfig_body(r)).map_err(|e| SendError::Sign(e.to_string()))?;
        self.approve(tx.id(), fx);
        Ok(tx)
    }

    fn approve(&mut self, id: String, fx: &mut Effects) {
        if self.approved.insert(id) {
            while self.approved.len() > MAX_APPROVALS {
                // Ids carry no order; drop the smallest: old epochs' approvals are moot.
                self.approved.pop_first();
            }
            fx.ops
                .push(Write::Approvals(self.approved.iter().cloned().collect()));
        }
    }

    /// Points finality and the witness role at the state's current epoch (after load, or
    /// after a reconfiguration became final). Returns whether an epoch opened.
    pub(super) fn catch_up_epochs(&mut self) -> bool {
        let before = self.finality.epoch();
        let epochs: Vec<EpochSet> = self
            .state
            .epochs()
            .iter()
            .filter(|e| e.epoch > before)
            .cloned()
            .collect();
        let Some(last) = epochs.last().map(|e| e.epoch) else {
            return false;
        };
        for e in &epochs {
            self.finality.open_epoch(e);
        }
        let member = self.state.epoch_set().weight_of(&self.me).is_some();
        match (member, self.witness.is_some()) {
            (true, false) => self.witness = self.dormant.take(),
            (false, true) => self.dormant = self.witness.take(),
            _ => {}
        }
        if let Some(w) = self.witness.as_mut() {
            w.set_epoch(last);
        }
        if let Some(w) = self.dormant.as_mut() {
            w.set_epoch(last);
        }
        info!(epoch = last, witness = member, "witness epoch opened");
        true
    }

    /// After a reconfiguration became final: opens the epoch and, as a witness of it, queues
    /// every pending transaction to be attested (again) in it.
    pub(super) fn on_new_epoch(&mut self) {
        if !self.catch_up_epochs() || self.witness.is_none() {
            return;
        }
        let pending: Vec<String> = self
            .records
            .iter()
            .filter(|(_, r)| r.status == TxStatus::Pending && !self.is_dead(&r.tx))
            .map(|(id, _)| id.clone())
            .collect();
        for id in pending {
            let v = match self.verified.get(&id) {
                Some(v) => v.clone(),
                None => match self.records.get(&id).map(|r| VerifiedTx::new(&r.tx)) {
                    Some(Ok(v)) => v,
                    _ => continue,
                },
            };
            self.wait(id, &v);
        }
    }
}
