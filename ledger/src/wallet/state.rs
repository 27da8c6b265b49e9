//! Balances and nonces derived from final transactions.

use std::collections::{BTreeMap, BTreeSet};

use super::{
    epoch::EpochSet, witness::check_shape, ParamsError, TxBody, TxKind, TxReject, WalletParams,
    SYSTEM,
};
use crate::{
    signed::VerifyError,
    wallet::{Tx, VerifiedTx},
};

/// Default bound on final transactions waiting for an earlier nonce or for funds.
pub const DEFAULT_MAX_PENDING: usize = 10_000;

/// What [`WalletState::apply_final`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApplyOutcome {
    /// Applied. Lists the ids of every transaction applied in this call: this one first,
    /// then any pending ones it unblocked.
    Applied(Vec<String>),
    /// Kept pending: an earlier nonce of `src` is not applied yet, or `src` lacks funds
    /// until incoming transactions are applied. It is applied as soon as it can be.
    Deferred,
    /// This transaction was applied before; nothing changed.
    AlreadyApplied,
}

/// Why a final transaction cannot be applied. Any of these means the caller handed over a
/// transaction that is not really final, or that safety was broken.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// Signature or decoding failure.
    #[error(transparent)]
    Verify(#[from] VerifyError),
    /// The transaction is malformed.
    #[error("malformed transaction: {0}")]
    Invalid(TxReject),
    /// A different transaction already used this nonce or mint tag.
    #[error("a different transaction already occupies this slot")]
    Conflict,
    /// Crediting would overflow a balance or the supply.
    #[error("balance or supply overflow")]
    Overflow,
    /// Too many transactions are already pending.
    #[error("too many pending transactions")]
    PendingFull,
}

/// Result of trying one transaction.
enum Step {
    Applied,
    Defer,
    Already,
}

/// Account balances and last final nonces, derived only from genesis and final transactions.
#[derive(Debug, Clone)]
pub struct WalletState {
    balances: BTreeMap<String, u64>,
    nonces: BTreeMap<String, u64>,
    /// Mint tag → id of the mint that used it.
    minted: BTreeMap<String, String>,
    /// Order id → id of the settlement that paid it.
    settled: BTreeMap<String, String>,
    reserve_bps: u64,
    applied: BTreeSet<String>,
    supply: u64,
    pending: BTreeMap<String, TxBody>,
    max_pending: usize,
    /// Every epoch's witnesses, from genesis (index = epoch).
    epochs: Vec<EpochSet>,
}

impl WalletState {
    /// The genesis state of `params`.
    pub fn new(params: &WalletParams) -> Result<Self, ParamsError> {
        params.validate()?;
        let mut balances = BTreeMap::new();
        let mut supply = 0u64;
        for (acct, amount) in &params.genesis {
            balances.insert(acct.clone(), *amount);
            supply = supply
                .checked_add(*amount)
                .ok_or(ParamsError::GenesisOverflow)?;
        }
        Ok(Self {
            balances,
            nonces: BTreeMap::new(),
            minted: BTreeMap::new(),
            settled: BTreeMap::new(),
            reserve_bps: params.host_reserve_bps,
            applied: BTreeSet::new(),
            supply,
            pending: BTreeMap::new(),
            max_pending: DEFAULT_MAX_PENDING,
            epochs: vec![EpochSet::genesis(params)],
        })
    }

    /// The current epoch's witnesses and quorum.
    pub fn epoch_set(&self) -> &EpochSet {
        // Never empty: genesis is epoch 0.
        &self.epochs[self.epochs.len() - 1]
    }

    /// Every epoch from genesis, in order.
    pub fn epochs(&self) -> &[EpochSet] {
        &self.epochs
    }

    /// Whether a transaction not yet final can never be: its slot is taken by a final one
    /// (or, for a settlement, its order is paid).
    pub fn is_dead(&self, b: &TxBody) -> bool {
        match b.kind {
            TxKind::Transfer => b.nonce <= self.last_nonce(&b.src),
            TxKind::Mint => self.is_minted(b.meta.as_deref().unwrap_or_default()),
            TxKind::Settle => {
                b.nonce <= self.last_nonce(&b.src)
                    || b.order_id().is_none_or(|o| self.is_settled(o))
            }
            TxKind::Reconfig => b.nonce <= self.epoch_set().epoch,
        }
    }

    /// Whether the order `order_id` is paid.
    pub fn is_settled(&self, order_id: &str) -> bool {
        self.settled.contains_key(order_id)
    }

    /// Balance of `account` in micro-credits (0 if unknown).
    pub fn balance(&self, account: &str) -> u64 {
        self.balances.get(account).copied().unwrap_or(0)
    }

    /// Every non-zero balance, by account.
    pub fn balances(&self) -> impl Iterator<Item = (&str, u64)> {
        self.balances
            .iter()
            .filter(|(_, b)| **b > 0)
            .map(|(a, b)| (a.as_str(), *b))
    }

    /// Nonce of `account`'s last final transfer (0 before the first).
    pub fn last_nonce(&self, account: &str) -> u64 {
        self.nonces.get(account).copied().unwrap_or(0)
    }

    /// The nonce `account`'s next transfer must carry.
    pub fn next_nonce(&self, account: &str) -> u64 {
        self.last_nonce(account).saturating_add(1)
    }

    /// Total money: genesis plus every applied mint. Transfers never change it.
    pub fn supply(&self) -> u64 {
        self.supply
    }

    /// Whether a mint with this tag was applied.
    pub fn is_minted(&self, meta: &str) -> bool {
        self.minted.contains_key(meta)
    }

    /// Whether the transaction with this id was applied.
    pub fn is_applied(&self, tx_id: &str) -> bool {
        self.applied.contains(tx_id)
    }

    /// Number of final transactions waiting to be applied.
    pub fn pending_count(&self) -> usize {
        self.pending.len()
    }

    /// Applies a final transaction. Final transactions may arrive in any order: one that
    /// cannot be applied yet (a gap in `src`'s nonces, or funds still to arrive) is kept
    /// pending and applied once it can be.
    pub fn apply_final(&mut self, tx: &Tx) -> Result<ApplyOutcome, ApplyError> {
        let body = tx.verify()?;
        check_shape(&body, &tx.pubkey).map_err(ApplyError::Invalid)?;
        self.apply_body(tx.id(), body)
    }

    /// [`WalletState::apply_final`] for a transaction already verified.
    pub fn apply_final_verified(&mut self, v: &VerifiedTx) -> Result<ApplyOutcome, ApplyError> {
        self.apply_body(v.id().to_owned(), v.body().clone())
    }

    fn apply_body(&mut self, id: String, body: TxBody) -> Result<ApplyOutcome, ApplyError> {
        if self.pending.contains_key(&id) {
            return Ok(ApplyOutcome::Deferred);
        }
        match self.try_apply(&id, &body)? {
            Step::Already => Ok(ApplyOutcome::AlreadyApplied),
            Step::Defer => {
                if self.pending.len() >= self.max_pending {
                    return Err(ApplyError::PendingFull);
                }
                self.pending.insert(id, body);
                Ok(ApplyOutcome::Deferred)
            }
            Step::Applied => {
                let mut done = vec![id];
                self.drain_pending(&mut done);
                Ok(ApplyOutcome::Applied(done))
            }
        }
    }

    /// Applies pending transactions until none makes progress. A pending transaction that
    /// has become impossible (its slot taken) is dropped.
    fn drain_pending(&mut self, done: &mut Vec<String>) {
        loop {
            let mut progress = false;
            let ids: Vec<String> = self.pending.keys().cloned().collect();
            for pid in ids {
                let Some(body) = self.pending.get(&pid).cloned() else {
                    continue;
                };
                match self.try_apply(&pid, &body) {
                    Ok(Step::Defer) => {}
                    Ok(Step::Applied) => {
                        self.pending.remove(&pid);
                        done.push(pid);
                        progress = true;
                    }
                    Ok(Step::Already) | Err(_) => {
                        self.pending.remove(&pid);
                    }
                }
            }
            if !progress {
                break;
            }
        }
    }

    fn credit(&mut self, account: &str, amount: u64) -> Result<(), ApplyError> {
        let bal = self.balances.entry(account.to_string()).or_insert(0);
        *bal = bal.checked_add(amount).ok_or(ApplyError::Overflow)?;
        Ok(())
    }

    fn try_apply(&mut self, id: &str, body: &TxBody) -> Result<Step, ApplyError> {
        if self.applied.contains(id) {
            return Ok(Step::Already);
        }
        match body.kind {
            TxKind::Reconfig => {
                let current = self.epoch_set().epoch;
                if body.nonce <= current {
                    return Err(ApplyError::Conflict);
                }
                if body.nonce > current.saturating_add(1) {
                    return Ok(Step::Defer);
                }
                let Some(r) = &body.reconfig else {
                    return Err(ApplyError::Invalid(TxReject::BadReconfig("no set".into())));
                };
                let next = self
                    .epoch_set()
                    .next(r)
                    .map_err(|e| ApplyError::Invalid(TxReject::BadReconfig(e.to_string())))?;
                self.epochs.push(next);
            }
            TxKind::Mint => {
                let meta = body.meta.clone().unwrap_or_default();
                if self.minted.contains_key(&meta) {
                    return Err(ApplyError::Conflict);
                }
                let supply = self
                    .supply
                    .checked_add(body.amount)
                    .ok_or(ApplyError::Overflow)?;
                if self.balance(&body.dst).checked_add(body.amount).is_none() {
                    return Err(ApplyError::Overflow);
                }
                self.credit(&body.dst, body.amount)?;
                self.supply = supply;
                self.minted.insert(meta, id.to_string());
            }
            TxKind::Transfer => {
                let last = self.last_nonce(&body.src);
                if body.nonce <= last {
                    return Err(ApplyError::Conflict);
                }
                if body.nonce > last.saturating_add(1) {
                    return Ok(Step::Defer);
                }
                let debit = body
                    .debit()
                    .ok_or(ApplyError::Invalid(TxReject::Overflow))?;
                let Some(left) = self.balance(&body.src).checked_sub(debit) else {
                    return Ok(Step::Defer);
                };
                // Credits cannot overflow: they redistribute `debit`, which is part of the
                // supply, and the supply fits in a u64.
                self.balances.insert(body.src.clone(), left);
                self.credit(&body.dst, body.amount)?;
                self.credit(SYSTEM, body.fee)?;
                self.nonces.insert(body.src.clone(), body.nonce);
            }
            TxKind::Settle => {
                let Some(order) = body.order_id().map(str::to_owned) else {
                    return Err(ApplyError::Invalid(TxReject::BadClaim("no order".into())));
                };
                let last = self.last_nonce(&body.src);
                if body.nonce <= last {
                    return Err(ApplyError::Conflict);
                }
                if body.nonce > last.saturating_add(1) {
                    return Ok(Step::Defer);
                }
                if self.settled.contains_key(&order) {
                    // Witnesses never sign a second payment of an order; should one be final
                    // anyway, it takes its nonce and moves nothing, so every node agrees.
                    self.nonces.insert(body.src.clone(), body.nonce);
                    self.applied.insert(id.to_string());
                    return Ok(Step::Applied);
                }
                let Some(left) = self.balance(&body.src).checked_sub(body.amount) else {
                    return Ok(Step::Defer);
                };
                let reserve = WalletParams {
                    host_reserve_bps: self.reserve_bps,
                    ..WalletParams::empty()
                }
                .reserve_of(body.amount);
                // Credits redistribute `amount`, part of the supply: they cannot overflow.
                self.balances.insert(body.src.clone(), left);
                self.credit(&body.dst, body.amount - reserve)?;
                self.credit(SYSTEM, reserve)?;
                self.nonces.insert(body.src.clone(), body.nonce);
                self.settled.insert(order, id.to_string());
            }
        }
        self.applied.insert(id.to_string());
        Ok(Step::Applied)
    }
}
