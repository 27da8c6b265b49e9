//! Witness epochs: changing the witness set by a reconfiguration transaction.
//!
//! Epoch 0's witnesses are the genesis's. A [`TxKind::Reconfig`] transaction for epoch
//! `e + 1` names the whole next set and its quorum. It occupies the slot
//! [`Slot::Epoch`]` { epoch: e + 1 }`, and becomes final like any transaction: by the
//! attestations of epoch `e`'s witnesses reaching epoch `e`'s quorum. Once it is final,
//! epoch `e + 1` opens: attestations count only if they name the current epoch and come
//! from its witnesses, so an added witness attests to new transactions and a removed one
//! no longer counts.
//!
//! **Safety across the change.** Witnesses of the two epochs do not stop at the same
//! instant, so a transaction certified by an epoch-`e` quorum and a conflicting one
//! certified by an epoch-`e + 1` quorum must be impossible while honest witnesses sign at
//! most one transaction per slot whatever the epoch. That holds when every quorum of the
//! old set shares a witness with every quorum of the new one, which [`check_transition`]
//! checks exactly: one witness is added or removed per epoch, the others keep their
//! weights, and no old quorum fits beside a new one.
//!
//! The body of a reconfiguration is a function of its content only (no author, no time):
//! witnesses that approve the same change sign the same transaction, so their attestations
//! add up instead of splitting the slot.

use serde::{Deserialize, Serialize};

use super::{ParamsError, Slot, TxBody, TxKind, WalletParams, SYSTEM};

/// Most witnesses in one epoch (the transition check enumerates subsets of them).
pub const MAX_WITNESSES: usize = 20;

/// The content of a reconfiguration: epoch `epoch`'s witness set and quorum.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reconfig {
    /// The epoch it opens (the current one plus one).
    pub epoch: u64,
    /// Its witnesses and their milli-weights, sorted by peer id.
    pub witnesses: Vec<(String, u64)>,
    /// Its quorum, milli-weight; more than half the total.
    pub quorum_milli: u64,
}

/// One epoch's witnesses and quorum.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EpochSet {
    /// The epoch number (0 at genesis).
    pub epoch: u64,
    /// Witnesses and their milli-weights.
    pub witnesses: Vec<(String, u64)>,
    /// Quorum, milli-weight.
    pub quorum_milli: u64,
}

impl EpochSet {
    /// Epoch 0 of `params`.
    pub fn genesis(params: &WalletParams) -> Self {
        Self {
            epoch: 0,
            witnesses: params.witnesses.clone(),
            quorum_milli: params.quorum_milli,
        }
    }

    /// Weight of `peer` in this epoch.
    pub fn weight_of(&self, peer: &str) -> Option<u64> {
        self.witnesses
            .iter()
            .find(|(p, _)| p == peer)
            .map(|(_, w)| *w)
    }

    fn total(&self) -> u64 {
        self.witnesses
            .iter()
            .fold(0u64, |a, (_, w)| a.saturating_add(*w))
    }

    /// The epoch `r` opens, if `r` is a valid transition from this one.
    pub fn next(&self, r: &Reconfig) -> Result<EpochSet, ReconfigError> {
        check_transition(self, r)?;
        Ok(EpochSet {
            epoch: r.epoch,
            witnesses: r.witnesses.clone(),
            quorum_milli: r.quorum_milli,
        })
    }
}

/// A change of one witness.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// Add this witness with this milli-weight.
    Add(String, u64),
    /// Remove this witness.
    Remove(String),
}

/// Why a reconfiguration is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReconfigError {
    /// It does not open the epoch after the current one.
    #[error("reconfiguration opens epoch {got}, the next is {expected}")]
    WrongEpoch {
        /// The next epoch.
        expected: u64,
        /// What it names.
        got: u64,
    },
    /// The new set is not a valid witness set.
    #[error("new witness set: {0}")]
    Params(#[from] ParamsError),
    /// Not exactly one witness added or removed, or a kept witness's weight changed.
    #[error("a reconfiguration adds or removes exactly one witness and keeps the others' weights")]
    NotOneChange,
    /// Too many witnesses.
    #[error("more than {MAX_WITNESSES} witnesses")]
    TooMany,
    /// An old quorum and a new quorum could be disjoint: two conflicting transactions could
    /// both become final across the change.
    #[error(
        "an old quorum and a new quorum could share no witness; change the weights or the quorum"
    )]
    QuorumsDisjoint,
    /// The change names a witness that is already in (add) or not in (remove) the set.
    #[error("{0}")]
    BadChange(String),
}

/// The reconfiguration that applies `change` to `current`, with a new quorum of
/// `quorum_milli` (just over half the new total when `None`).
pub fn propose(
    current: &EpochSet,
    change: &Change,
    quorum_milli: Option<u64>,
) -> Result<Reconfig, ReconfigError> {
    let mut witnesses = current.witnesses.clone();
    match change {
        Change::Add(peer, weight) => {
            if current.weight_of(peer).is_some() {
                return Err(ReconfigError::BadChange(format!(
                    "{peer} is already a witness"
                )));
            }
            witnesses.push((peer.clone(), *weight));
        }
        Change::Remove(peer) => {
            if current.weight_of(peer).is_none() {
                return Err(ReconfigError::BadChange(format!("{peer} is not a witness")));
            }
            witnesses.retain(|(p, _)| p != peer);
        }
    }
    witnesses.sort();
    let total = witnesses
        .iter()
        .fold(0u64, |a, (_, w)| a.saturating_add(*w));
    let r = Reconfig {
        epoch: current.epoch.saturating_add(1),
        witnesses,
        quorum_milli: quorum_milli.unwrap_or(total / 2 + 1),
    };
    check_transition(current, &r)?;
    Ok(r)
}

/// Checks that `r` may follow `old`: next epoch, a valid set of at most [`MAX_WITNESSES`],
/// exactly one witness added or removed with the others' weights kept, and every old quorum
/// sharing a witness with every new quorum.
pub fn check_transition(old: &EpochSet, r: &Reconfig) -> Result<(), ReconfigError> {
    let expected = old.epoch.saturating_add(1);
    if r.epoch != expected {
        return Err(ReconfigError::WrongEpoch {
            expected,
            got: r.epoch,
        });
    }
    if r.witnesses.len() > MAX_WITNESSES {
        return Err(ReconfigError::TooMany);
    }
    WalletParams {
        witnesses: r.witnesses.clone(),
        quorum_milli: r.quorum_milli,
        ..WalletParams::empty()
    }
    .validate()?;
    let new = EpochSet {
        epoch: r.epoch,
        witnesses: r.witnesses.clone(),
        quorum_milli: r.quorum_milli,
    };
    let mut changed = 0;
    let mut kept: Vec<u64> = Vec::new();
    for (p, w) in &old.witnesses {
        match new.weight_of(p) {
            Some(nw) if nw == *w => kept.push(*w),
            Some(_) => return Err(ReconfigError::NotOneChange),
            None => changed += 1,
        }
    }
    changed += new.witnesses.len() - kept.len();
    if changed != 1 {
        return Err(ReconfigError::NotOneChange);
    }
    // An old quorum Q1 and a new quorum Q2 are disjoint only if Q2 avoids the kept witnesses
    // T that Q1 uses. Q1 is cheapest for the attacker when it takes every witness that
    // leaves (they cost nothing in the new set) plus kept ones T of least weight, so: unsafe
    // iff some T of the kept witnesses with w(T) ≥ q_old − w(leaving) has
    // w(T) ≤ total_new − q_new.
    let leaving = old.total().saturating_sub(kept.iter().sum());
    let need = old.quorum_milli.saturating_sub(leaving);
    let room = new.total().saturating_sub(new.quorum_milli);
    if min_subset_at_least(&kept, need).is_some_and(|t| t <= room) {
        return Err(ReconfigError::QuorumsDisjoint);
    }
    Ok(())
}

/// The least sum of a subset of `weights` that is at least `need` (`None`: none reaches it).
fn min_subset_at_least(weights: &[u64], need: u64) -> Option<u64> {
    let n = weights.len().min(MAX_WITNESSES);
    let mut best: Option<u64> = None;
    for mask in 0u32..(1u32 << n) {
        let sum = (0..n)
            .filter(|i| mask & (1 << i) != 0)
            .fold(0u64, |a, i| a.saturating_add(weights[i]));
        if sum >= need && best.is_none_or(|b| sum < b) {
            best = Some(sum);
        }
    }
    best
}

/// The transaction body of `r`: a function of `r` alone, so every witness approving it
/// signs the same transaction.
pub fn reconfig_body(r: Reconfig) -> TxBody {
    TxBody {
        kind: TxKind::Reconfig,
        src: SYSTEM.into(),
        dst: SYSTEM.into(),
        amount: 0,
        fee: 0,
        nonce: r.epoch,
        meta: None,
        author: SYSTEM.into(),
        created_ms: 0,
        claim: None,
        reconfig: Some(r),
    }
}

/// The slot of the reconfiguration opening `epoch`.
pub fn epoch_slot(epoch: u64) -> Slot {
    Slot::Epoch { epoch }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::peer_id::peer_id_from_pubkey;

    fn peer(seed: u8) -> String {
        let k = ed25519_dalek::SigningKey::from_bytes(&[seed; 32]);
        peer_id_from_pubkey(k.verifying_key().as_bytes())
    }

    fn set(epoch: u64, seeds: &[u8], quorum: u64) -> EpochSet {
        let mut witnesses: Vec<(String, u64)> = seeds.iter().map(|s| (peer(*s), 1000)).collect();
        witnesses.sort();
        EpochSet {
            epoch,
            witnesses,
            quorum_milli: quorum,
        }
    }

    #[test]
    fn one_witness_at_a_time_can_be_added_and_removed_with_majority_quorums() {
        let one = set(0, &[1], 501);
        let two = propose(&one, &Change::Add(peer(2), 1000), None).unwrap();
        assert_eq!(two.epoch, 1);
        assert_eq!(two.quorum_milli, 1001, "both of two");
        let two = one.next(&two).unwrap();
        let three = two
            .next(&propose(&two, &Change::Add(peer(3), 1000), None).unwrap())
            .unwrap();
        assert_eq!(three.quorum_milli, 1501);
        let back = propose(&three, &Change::Remove(peer(1)), None).unwrap();
        assert_eq!(back.witnesses.len(), 2);
        three.next(&back).unwrap();
    }

    #[test]
    fn transitions_that_would_allow_two_finals_are_refused() {
        let one = set(0, &[1], 501);
        // Two new witnesses at once: {2, 3} is a new quorum that shares nothing with {1}.
        let jump = Reconfig {
            epoch: 1,
            witnesses: set(1, &[1, 2, 3], 2001).witnesses,
            quorum_milli: 2001,
        };
        assert_eq!(
            check_transition(&one, &jump),
            Err(ReconfigError::NotOneChange)
        );
        // One heavy witness whose weight alone is a new quorum.
        let heavy = propose(&one, &Change::Add(peer(2), 5000), None);
        assert_eq!(heavy.unwrap_err(), ReconfigError::QuorumsDisjoint);
        // A low new quorum: {3} is a quorum of {1, 2, 3} at 1000 — not above half anyway.
        let three = set(0, &[1, 2], 1001);
        let low = Reconfig {
            epoch: 1,
            witnesses: set(1, &[1, 2, 3], 0).witnesses,
            quorum_milli: 1000,
        };
        assert!(matches!(
            check_transition(&three, &low),
            Err(ReconfigError::Params(ParamsError::QuorumTooLow { .. }))
        ));
        // Removing a witness from {1,2,3} at quorum 1501 to {1,2} at 1001: old quorum {2,3}
        // and new quorum {1,2} share 2. Safe. From {1,2,3,4} at 2001 to {1,2,3} at 1501:
        // old {3,4}+... needs 3 of 4; {4,a,b} and new {c, d}: shares one. Safe too.
        let four = set(0, &[1, 2, 3, 4], 2001);
        let r = propose(&four, &Change::Remove(peer(4)), None).unwrap();
        four.next(&r).unwrap();
        // A changed weight, the wrong epoch, an unknown witness removed.
        let mut reweighed = r.clone();
        reweighed.witnesses[0].1 = 2000;
        assert!(check_transition(&four, &reweighed).is_err());
        let mut late = r;
        late.epoch = 5;
        assert!(matches!(
            check_transition(&four, &late),
            Err(ReconfigError::WrongEpoch {
                expected: 1,
                got: 5
            })
        ));
        assert!(matches!(
            propose(&four, &Change::Remove(peer(9)), None),
            Err(ReconfigError::BadChange(_))
        ));
    }

    #[test]
    fn two_witnesses_approving_the_same_change_sign_the_same_transaction() {
        let one = set(0, &[1, 2], 1001);
        let a = propose(&one, &Change::Add(peer(3), 1000), None).unwrap();
        let b = propose(&one, &Change::Add(peer(3), 1000), None).unwrap();
        let ka = ed25519_dalek::SigningKey::from_bytes(&[1; 32]);
        let kb = ed25519_dalek::SigningKey::from_bytes(&[2; 32]);
        assert_eq!(reconfig_body(a.clone()).slot(), epoch_slot(1));
        let ta = crate::Signed::sign(&ka, &reconfig_body(a)).unwrap();
        let tb = crate::Signed::sign(&kb, &reconfig_body(b)).unwrap();
        assert_eq!(ta.id(), tb.id());
    }
}
