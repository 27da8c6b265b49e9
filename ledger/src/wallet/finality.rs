//! Collecting witness attestations until a transaction is final.
//!
//! Checking attestations is the hot path of finality (every node checks every witness's
//! attestation of every transaction until it is final), so [`Finality`] keeps the listed
//! witnesses' keys decompressed, checks a gossip message's attestations in one batch
//! ([`Finality::verify`]) and skips the signature check of an attestation it already counted
//! byte for byte.

use std::collections::{BTreeMap, HashMap};

use ed25519_dalek::VerifyingKey;

use super::{ParamsError, WalletParams, Witness, WitnessBody};
use crate::{
    peer_id::{peer_id_from_pubkey, pubkey_from_peer_id},
    signed::{verify_signatures, VerifyError},
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
}

/// An attestation whose signature is known to be valid, from a listed witness whose peer id
/// matches the signing key. Built only by [`Finality::verify`] or, for an attestation this
/// node has just signed, by [`super::WitnessState::attest_own`].
#[derive(Debug, Clone)]
pub struct VerifiedWitness {
    att: Witness,
    tx_id: String,
    witness: String,
}

impl VerifiedWitness {
    /// Wraps an attestation the caller has just signed itself.
    pub(crate) fn signed_here(att: Witness, body: WitnessBody) -> Self {
        Self {
            att,
            tx_id: body.tx_id,
            witness: body.witness,
        }
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

/// A listed witness: peer id, weight and decompressed key.
#[derive(Debug, Clone)]
struct WitnessKey {
    peer: String,
    weight: u64,
    key: VerifyingKey,
}

/// The listed witnesses by public key.
#[derive(Debug, Clone, Default)]
struct WitnessKeys(HashMap<[u8; 32], WitnessKey>);

impl WitnessKeys {
    fn new(params: &WalletParams) -> Self {
        let mut map = HashMap::new();
        for (peer, weight) in &params.witnesses {
            // `WalletParams::validate` guarantees Ed25519 peer ids; a point that does not
            // decompress can never sign, so leaving it out refuses its attestations.
            let Some(pk) = pubkey_from_peer_id(peer) else {
                continue;
            };
            if let Ok(key) = VerifyingKey::from_bytes(&pk) {
                map.insert(
                    pk,
                    WitnessKey {
                        peer: peer.clone(),
                        weight: *weight,
                        key,
                    },
                );
            }
        }
        Self(map)
    }

    /// Decodes `w` (its signature still unchecked) and checks its form: the `witness` field
    /// names the signing key, which is a listed witness.
    fn precheck(&self, w: &Witness) -> Result<WitnessBody, WitnessError> {
        let body: WitnessBody = serde_json::from_slice(&w.bytes)
            .map_err(|e| WitnessError::Verify(VerifyError::Decode(e)))?;
        match self.0.get(&w.pubkey) {
            Some(k) if k.peer == body.witness => Ok(body),
            Some(_) => Err(WitnessError::WitnessMismatch),
            None if body.witness != peer_id_from_pubkey(&w.pubkey) => {
                Err(WitnessError::WitnessMismatch)
            }
            None => Err(WitnessError::NotAWitness(body.witness)),
        }
    }

    fn weight(&self, pubkey: &[u8; 32]) -> Option<u64> {
        self.0.get(pubkey).map(|k| k.weight)
    }

    /// Checks attestations (batched signature check); one result per input, in order.
    fn verify(
        &self,
        ws: &[Witness],
        known: impl Fn(&WitnessBody, &Witness) -> bool,
    ) -> Vec<Result<VerifiedWitness, WitnessError>> {
        let mut out: Vec<Result<VerifiedWitness, WitnessError>> = Vec::with_capacity(ws.len());
        let mut to_check = Vec::new();
        for w in ws {
            match self.precheck(w) {
                Ok(body) => {
                    let known = known(&body, w);
                    let v = VerifiedWitness::signed_here(w.clone(), body);
                    if !known {
                        to_check.push(out.len());
                    }
                    out.push(Ok(v));
                }
                Err(e) => out.push(Err(e)),
            }
        }
        let refs: Vec<&Witness> = to_check.iter().map(|&i| &ws[i]).collect();
        let checked = verify_signatures(&refs, |pk| self.0.get(pk).map(|k| k.key));
        for (i, r) in to_check.into_iter().zip(checked) {
            if let Err(e) = r {
                out[i] = Err(e.into());
            }
        }
        out
    }
}

/// Weight of the valid attestations of `tx_id` in `attestations`, each listed witness counted
/// once. Invalid, foreign and duplicate attestations add nothing. Use it to check a finality
/// certificate received from a peer: final when the result is ≥ `params.quorum_milli`.
/// [`Finality::certified_weight`] does the same without decompressing the keys again.
pub fn certified_weight(params: &WalletParams, tx_id: &str, attestations: &[Witness]) -> u64 {
    weight_of_valid(&WitnessKeys::new(params), tx_id, attestations)
}

fn weight_of_valid(keys: &WitnessKeys, tx_id: &str, attestations: &[Witness]) -> u64 {
    let mut by_witness = BTreeMap::new();
    for v in keys
        .verify(attestations, |_, _| false)
        .into_iter()
        .flatten()
    {
        if v.tx_id == tx_id {
            if let Some(weight) = keys.weight(&v.att.pubkey) {
                by_witness.insert(v.witness, weight);
            }
        }
    }
    by_witness
        .values()
        .fold(0u64, |acc, w| acc.saturating_add(*w))
}

/// Default bound on the number of transactions [`Finality`] tracks.
pub const DEFAULT_MAX_TRACKED: usize = 100_000;

/// Attestations collected per transaction.
#[derive(Debug, Clone)]
pub struct Finality {
    params: WalletParams,
    keys: WitnessKeys,
    attestations: BTreeMap<String, BTreeMap<String, (u64, Witness)>>,
    max_tracked: usize,
}

impl Finality {
    /// Empty collector for `params` (validated: the quorum must exceed half the weight).
    pub fn new(params: WalletParams) -> Result<Self, ParamsError> {
        params.validate()?;
        Ok(Self {
            keys: WitnessKeys::new(&params),
            params,
            attestations: BTreeMap::new(),
            max_tracked: DEFAULT_MAX_TRACKED,
        })
    }

    /// Checks attestations, e.g. those of one gossip message: form, listed witness, and the
    /// signatures in one batch. An attestation identical to one already counted is valid
    /// without a new signature check. One result per input, in order.
    pub fn verify(&self, ws: &[Witness]) -> Vec<Result<VerifiedWitness, WitnessError>> {
        self.keys.verify(ws, |body, w| {
            self.attestations
                .get(&body.tx_id)
                .and_then(|m| m.get(&body.witness))
                .is_some_and(|(_, counted)| counted == w)
        })
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
        let weight = self
            .keys
            .weight(&v.att.pubkey)
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
            >= self.params.quorum_milli)
    }

    /// [`certified_weight`] with this collector's witness keys.
    pub fn certified_weight(&self, tx_id: &str, attestations: &[Witness]) -> u64 {
        weight_of_valid(&self.keys, tx_id, attestations)
    }

    /// Sum of the weights of the distinct witnesses that attested `tx_id`.
    pub fn weight(&self, tx_id: &str) -> u64 {
        self.attestations.get(tx_id).map_or(0, |m| {
            m.values().fold(0u64, |acc, (w, _)| acc.saturating_add(*w))
        })
    }

    /// Whether the attestations of `tx_id` reach the quorum.
    pub fn is_final(&self, tx_id: &str) -> bool {
        self.weight(tx_id) >= self.params.quorum_milli
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
