//! Collecting witness attestations until a transaction is final.
//!
//! Checking attestations is the hot path of finality (every node checks every witness's
//! attestation of every transaction until it is final). Witnesses sign one Merkle root per
//! batch ([`super::attestation`]), so [`Finality`] folds each attestation's path to its root
//! and checks each distinct (witness key, root, signature) once: the distinct ones of a
//! gossip message together in one Ed25519 batch ([`Finality::verify`]), and never again
//! while they stay in a bounded cache of checked roots. The listed witnesses' keys are kept
//! decompressed, with their peer id text.

use std::collections::{BTreeMap, HashMap, VecDeque};

use ed25519_dalek::VerifyingKey;

use super::{
    attestation::{root_message, Covers, ROOT_MESSAGE_LEN},
    epoch::EpochSet,
    ParamsError, WalletParams, Witness, WitnessBody,
};
use crate::{
    merkle::Hash,
    peer_id::{peer_id_from_pubkey, pubkey_from_peer_id},
    signed::{verify_messages, VerifyError},
};

/// Why an attestation was not counted.
#[derive(Debug, thiserror::Error)]
pub enum WitnessError {
    /// Signature or decoding failure.
    #[error(transparent)]
    Verify(#[from] VerifyError),
    /// The body's `witness` is not the signer's peer id.
    #[error("witness field does not match the signing key")]
    WitnessMismatch,
    /// The signer is not a listed witness.
    #[error("{0} is not a listed witness")]
    NotAWitness(String),
    /// Too many transactions are being tracked.
    #[error("too many transactions tracked")]
    Full,
    /// Signed in an epoch this node does not know (yet): not counted, not held against the
    /// sender (it may be ahead).
    #[error("attestation of unknown epoch {0}")]
    UnknownEpoch(u64),
    /// Signed in an epoch that is not the current one: it no longer (or not yet) counts.
    #[error("attestation of epoch {got}, the current one is {current}")]
    OtherEpoch {
        /// The attestation's epoch.
        got: u64,
        /// The current epoch.
        current: u64,
    },
}

impl WitnessError {
    /// Whether the attestation is well formed and signed, only not countable here now (its
    /// sender is not at fault).
    pub fn is_epoch_mismatch(&self) -> bool {
        matches!(self, Self::UnknownEpoch(_) | Self::OtherEpoch { .. })
    }
}

/// An attestation whose signature is known to be valid, from a listed witness whose peer id
/// matches the signing key. Built only by [`Finality::verify`] or, for an attestation this
/// node has just signed, by [`super::WitnessState::attest_own`].
#[derive(Debug, Clone)]
pub struct VerifiedWitness {
    att: Witness,
    tx_id: String,
    witness: String,
    epoch: u64,
}

impl VerifiedWitness {
    /// Wraps an attestation the caller has just signed itself.
    pub(crate) fn signed_here(att: Witness, body: WitnessBody) -> Self {
        Self {
            att,
            tx_id: body.tx_id,
            witness: body.witness,
            epoch: body.epoch,
        }
    }

    /// The epoch it was signed in.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The signed attestation.
    pub fn attestation(&self) -> &Witness {
        &self.att
    }

    /// The attested transaction id.
    pub fn tx_id(&self) -> &str {
        &self.tx_id
    }

    /// The witness's peer id.
    pub fn witness(&self) -> &str {
        &self.witness
    }
}

/// A witness of some epoch: peer id and decompressed key.
#[derive(Debug, Clone)]
struct WitnessKey {
    peer: String,
    key: VerifyingKey,
}

/// The witnesses of every known epoch by public key, and each epoch's weights and quorum.
#[derive(Debug, Clone, Default)]
struct WitnessKeys {
    keys: HashMap<[u8; 32], WitnessKey>,
    /// Epoch → (weight by key, quorum).
    epochs: BTreeMap<u64, (HashMap<[u8; 32], u64>, u64)>,
}

impl WitnessKeys {
    fn new(params: &WalletParams) -> Self {
        let mut keys = Self::default();
        keys.add_epoch(&EpochSet::genesis(params));
        keys
    }

    fn add_epoch(&mut self, set: &EpochSet) {
        let mut weights = HashMap::new();
        for (peer, weight) in &set.witnesses {
            // Validated sets hold Ed25519 peer ids; a point that does not decompress can
            // never sign, so leaving it out refuses its attestations.
            let Some(pk) = pubkey_from_peer_id(peer) else {
                continue;
            };
            if let std::collections::hash_map::Entry::Vacant(slot) = self.keys.entry(pk) {
                let Ok(key) = VerifyingKey::from_bytes(&pk) else {
                    continue;
                };
                slot.insert(WitnessKey {
                    peer: peer.clone(),
                    key,
                });
            }
            weights.insert(pk, *weight);
        }
        self.epochs.insert(set.epoch, (weights, set.quorum_milli));
    }

    /// Decodes `w` (its signature still unchecked) and checks its form: the `witness` field
    /// names the signing key, which is a witness of the epoch it names.
    fn precheck(&self, w: &Witness) -> Result<WitnessBody, WitnessError> {
        let body: WitnessBody = serde_json::from_slice(&w.bytes)
            .map_err(|e| WitnessError::Verify(VerifyError::Decode(e)))?;
        match self.keys.get(&w.pubkey) {
            Some(k) if k.peer == body.witness => match self.epochs.get(&body.epoch) {
                Some((weights, _)) if weights.contains_key(&w.pubkey) => Ok(body),
                Some(_) => Err(WitnessError::NotAWitness(body.witness)),
                None => Err(WitnessError::UnknownEpoch(body.epoch)),
            },
            Some(_) => Err(WitnessError::WitnessMismatch),
            None if body.witness != peer_id_from_pubkey(&w.pubkey) => {
                Err(WitnessError::WitnessMismatch)
            }
            None if !self.epochs.contains_key(&body.epoch) => {
                Err(WitnessError::UnknownEpoch(body.epoch))
            }
            None => Err(WitnessError::NotAWitness(body.witness)),
        }
    }

    fn weight(&self, pubkey: &[u8; 32], epoch: u64) -> Option<u64> {
        self.epochs.get(&epoch)?.0.get(pubkey).copied()
    }

    fn quorum(&self, epoch: u64) -> Option<u64> {
        self.epochs.get(&epoch).map(|(_, q)| *q)
    }

    /// Checks attestations; one result per input, in order. Those whose transaction
    /// `skip` names are only decoded and prechecked, and come back as `Ok(None)`. Each
    /// distinct (key, root, signature) not in `cache` is checked once, all of them in one
    /// batch; those that pass are added to `cache`.
    fn verify(
        &self,
        ws: &[Witness],
        mut cache: Option<&mut RootCache>,
        skip: impl Fn(&str) -> bool,
    ) -> Vec<Result<Option<VerifiedWitness>, WitnessError>> {
        /// A distinct signature still to check and the inputs that rest on it.
        struct Pending {
            covers: Covers,
            /// The input whose message and signature are checked.
            first: usize,
            members: Vec<usize>,
        }
        let mut out: Vec<Result<Option<VerifiedWitness>, WitnessError>> =
            Vec::with_capacity(ws.len());
        let mut pending: Vec<Pending> = Vec::new();
        let mut by_root: HashMap<([u8; 32], Hash, [u8; 64]), usize> = HashMap::new();
        for (i, w) in ws.iter().enumerate() {
            let body = match self.precheck(w) {
                Ok(body) => body,
                Err(e) => {
                    out.push(Err(e));
                    continue;
                }
            };
            if skip(&body.tx_id) {
                out.push(Ok(None));
                continue;
            }
            let covers = match w.covers() {
                Ok(c) => c,
                Err(e) => {
                    out.push(Err(e.into()));
                    continue;
                }
            };
            out.push(Ok(Some(VerifiedWitness::signed_here(w.clone(), body))));
            match covers {
                Covers::Root(root) => {
                    if cache
                        .as_ref()
                        .is_some_and(|c| c.contains(&w.pubkey, &root, &w.sig))
                    {
                        continue;
                    }
                    let n = pending.len();
                    let p = *by_root.entry((w.pubkey, root, w.sig)).or_insert(n);
                    if p == n {
                        pending.push(Pending {
                            covers,
                            first: i,
                            members: Vec::new(),
                        });
                    }
                    pending[p].members.push(i);
                }
                Covers::Body => pending.push(Pending {
                    covers,
                    first: i,
                    members: vec![i],
                }),
            }
        }
        let roots: Vec<[u8; ROOT_MESSAGE_LEN]> = pending
            .iter()
            .map(|p| match p.covers {
                Covers::Root(r) => root_message(&r),
                Covers::Body => [0; ROOT_MESSAGE_LEN],
            })
            .collect();
        let items: Vec<(&[u8], &[u8; 64], &[u8; 32])> = pending
            .iter()
            .zip(&roots)
            .map(|(p, m)| {
                let w = &ws[p.first];
                let msg: &[u8] = match p.covers {
                    Covers::Root(_) => m,
                    Covers::Body => &w.bytes,
                };
                (msg, &w.sig, &w.pubkey)
            })
            .collect();
        let checked = verify_messages(&items, |pk| self.keys.get(pk).map(|k| k.key));
        for (p, r) in pending.iter().zip(checked) {
            let w = &ws[p.first];
            match (r, p.covers) {
                (Ok(()), Covers::Root(root)) => {
                    if let Some(c) = cache.as_deref_mut() {
                        c.insert(w.pubkey, root, w.sig);
                    }
                }
                (Ok(()), Covers::Body) => {}
                (Err(e), _) => {
                    for &m in &p.members {
                        out[m] = Err(WitnessError::Verify(match &e {
                            VerifyError::BadPublicKey => VerifyError::BadPublicKey,
                            _ => VerifyError::BadSignature,
                        }));
                    }
                }
            }
        }
        out
    }
}

/// Checked (witness key, batch root) pairs with the signature that checked, oldest evicted
/// first. A hit needs the same key, root *and* signature, so an attestation whose path
/// folds elsewhere, or that carries another signature, is never let through by it.
#[derive(Debug, Clone)]
struct RootCache {
    seen: HashMap<([u8; 32], Hash), [u8; 64]>,
    order: VecDeque<([u8; 32], Hash)>,
    cap: usize,
}

impl RootCache {
    fn new(cap: usize) -> Self {
        Self {
            seen: HashMap::new(),
            order: VecDeque::new(),
            cap,
        }
    }

    fn contains(&self, pubkey: &[u8; 32], root: &Hash, sig: &[u8; 64]) -> bool {
        self.seen.get(&(*pubkey, *root)) == Some(sig)
    }

    fn insert(&mut self, pubkey: [u8; 32], root: Hash, sig: [u8; 64]) {
        if self.cap == 0 || self.seen.contains_key(&(pubkey, root)) {
            return;
        }
        while self.order.len() >= self.cap {
            if let Some(old) = self.order.pop_front() {
                self.seen.remove(&old);
            }
        }
        self.seen.insert((pubkey, root), sig);
        self.order.push_back((pubkey, root));
    }

    fn len(&self) -> usize {
        self.seen.len()
    }
}

/// Weight of the valid epoch-0 attestations of `tx_id` in `attestations`, each listed
/// witness counted once. Invalid, foreign and duplicate attestations add nothing. Use it to
/// check a finality certificate received from a peer: final when the result is ≥
/// `params.quorum_milli`. [`Finality::certifies`] checks a certificate of any known epoch,
/// without decompressing the keys again or checking again the roots it has checked.
pub fn certified_weight(params: &WalletParams, tx_id: &str, attestations: &[Witness]) -> u64 {
    weights_of_valid(&WitnessKeys::new(params), None, tx_id, attestations)
        .get(&0)
        .copied()
        .unwrap_or(0)
}

/// The weight of the valid attestations of `tx_id` per epoch, each witness counted once.
fn weights_of_valid(
    keys: &WitnessKeys,
    cache: Option<&mut RootCache>,
    tx_id: &str,
    attestations: &[Witness],
) -> BTreeMap<u64, u64> {
    let mut by_witness = BTreeMap::new();
    for v in keys
        .verify(attestations, cache, |id| id != tx_id)
        .into_iter()
        .flatten()
        .flatten()
    {
        if let Some(weight) = keys.weight(&v.att.pubkey, v.epoch) {
            by_witness.insert((v.epoch, v.witness), weight);
        }
    }
    let mut by_epoch = BTreeMap::new();
    for ((epoch, _), w) in by_witness {
        let e: &mut u64 = by_epoch.entry(epoch).or_default();
        *e = e.saturating_add(w);
    }
    by_epoch
}

/// Default bound on the number of transactions [`Finality`] tracks.
pub const DEFAULT_MAX_TRACKED: usize = 100_000;

/// Default bound on the checked batch roots [`Finality`] remembers. Each listed witness
/// signs about one root per round of its ledger service, so this covers several seconds of
/// rounds at full rate.
pub const DEFAULT_ROOT_CACHE: usize = 4096;

/// Attestations collected per transaction.
#[derive(Debug, Clone)]
pub struct Finality {
    keys: WitnessKeys,
    /// The epoch whose attestations count.
    current: u64,
    attestations: BTreeMap<String, BTreeMap<String, (u64, Witness)>>,
    max_tracked: usize,
    roots: RootCache,
}

impl Finality {
    /// Empty collector for `params` (validated: the quorum must exceed half the weight).
    pub fn new(params: WalletParams) -> Result<Self, ParamsError> {
        params.validate()?;
        Ok(Self {
            keys: WitnessKeys::new(&params),
            current: 0,
            attestations: BTreeMap::new(),
            max_tracked: DEFAULT_MAX_TRACKED,
            roots: RootCache::new(DEFAULT_ROOT_CACHE),
        })
    }

    /// Remembers at most `cap` checked batch roots (0: none; every attestation's root is
    /// checked again).
    pub fn with_root_cache(mut self, cap: usize) -> Self {
        self.roots = RootCache::new(cap);
        self
    }

    /// Number of checked batch roots remembered.
    pub fn cached_roots(&self) -> usize {
        self.roots.len()
    }

    /// The peer id text of a witness's key, without encoding it again.
    pub fn witness_peer(&self, pubkey: &[u8; 32]) -> Option<&str> {
        self.keys.keys.get(pubkey).map(|k| k.peer.as_str())
    }

    /// The epoch whose attestations count.
    pub fn epoch(&self) -> u64 {
        self.current
    }

    /// Opens `set`'s epoch: from now on only its witnesses' attestations signed in it
    /// count, towards its quorum. What was collected in the previous epoch is dropped (its
    /// witnesses that remain attest again in the new one).
    pub fn open_epoch(&mut self, set: &EpochSet) {
        self.keys.add_epoch(set);
        if set.epoch > self.current {
            self.current = set.epoch;
            self.attestations.clear();
        }
    }

    fn quorum(&self) -> u64 {
        // The current epoch is always known; an unknown one would make nothing final.
        self.keys.quorum(self.current).unwrap_or(u64::MAX)
    }

    /// Checks attestations, e.g. those of one gossip message: form, listed witness, path
    /// length, and each distinct batch root's signature, those not checked before in one
    /// batch. One result per input, in order.
    pub fn verify(&mut self, ws: &[Witness]) -> Vec<Result<VerifiedWitness, WitnessError>> {
        self.keys
            .verify(ws, Some(&mut self.roots), |_| false)
            .into_iter()
            // Nothing is skipped, so `None` never comes back.
            .map(|r| r.and_then(|v| v.ok_or(WitnessError::Full)))
            .collect()
    }

    /// [`Finality::verify`], except that the signatures of attestations of transactions
    /// `closed` names (e.g. final ones) are not checked: those come back as `Ok(None)`
    /// after the form checks.
    pub fn verify_open(
        &mut self,
        ws: &[Witness],
        closed: impl Fn(&str) -> bool,
    ) -> Vec<Result<Option<VerifiedWitness>, WitnessError>> {
        self.keys.verify(ws, Some(&mut self.roots), closed)
    }

    /// Verifies one attestation and adds it; see [`Finality::add_verified`].
    pub fn add(&mut self, w: &Witness) -> Result<bool, WitnessError> {
        let v = self
            .verify(std::slice::from_ref(w))
            .pop()
            .unwrap_or(Err(WitnessError::Full))?;
        self.add_verified(v)
    }

    /// Adds a verified attestation from a listed witness. Returns whether its transaction is
    /// now final. A witness's repeated attestations count once.
    pub fn add_verified(&mut self, v: VerifiedWitness) -> Result<bool, WitnessError> {
        if v.epoch != self.current {
            return Err(WitnessError::OtherEpoch {
                got: v.epoch,
                current: self.current,
            });
        }
        let weight = self
            .keys
            .weight(&v.att.pubkey, self.current)
            .ok_or_else(|| WitnessError::NotAWitness(v.witness.clone()))?;
        if !self.attestations.contains_key(&v.tx_id) && self.attestations.len() >= self.max_tracked
        {
            return Err(WitnessError::Full);
        }
        let entry = self.attestations.entry(v.tx_id).or_default();
        entry.entry(v.witness).or_insert((weight, v.att));
        Ok(entry
            .values()
            .fold(0u64, |acc, (w, _)| acc.saturating_add(*w))
            >= self.quorum())
    }

    /// [`certified_weight`] with this collector's witness keys and checked roots, in the
    /// current epoch.
    pub fn certified_weight(&mut self, tx_id: &str, attestations: &[Witness]) -> u64 {
        let current = self.current;
        weights_of_valid(&self.keys, Some(&mut self.roots), tx_id, attestations)
            .get(&current)
            .copied()
            .unwrap_or(0)
    }

    /// Whether `attestations` certify `tx_id`: the valid ones of some known epoch reach that
    /// epoch's quorum (a transaction final in an earlier epoch stays final; a node catching
    /// up learns each epoch from the reconfiguration certified by the one before).
    pub fn certifies(&mut self, tx_id: &str, attestations: &[Witness]) -> bool {
        let by_epoch = weights_of_valid(&self.keys, Some(&mut self.roots), tx_id, attestations);
        by_epoch
            .iter()
            .any(|(e, w)| self.keys.quorum(*e).is_some_and(|q| *w >= q))
    }

    /// Sum of the weights of the distinct witnesses that attested `tx_id`.
    pub fn weight(&self, tx_id: &str) -> u64 {
        self.attestations.get(tx_id).map_or(0, |m| {
            m.values().fold(0u64, |acc, (w, _)| acc.saturating_add(*w))
        })
    }

    /// Whether the attestations of `tx_id` reach the quorum.
    pub fn is_final(&self, tx_id: &str) -> bool {
        self.weight(tx_id) >= self.quorum()
    }

    /// The attestations collected for `tx_id` (a finality certificate once final).
    pub fn attestations(&self, tx_id: &str) -> Vec<Witness> {
        self.attestations
            .get(tx_id)
            .map(|m| m.values().map(|(_, w)| w.clone()).collect())
            .unwrap_or_default()
    }

    /// Stops tracking `tx_id` (e.g. once applied and persisted).
    pub fn forget(&mut self, tx_id: &str) {
        self.attestations.remove(tx_id);
    }
}
