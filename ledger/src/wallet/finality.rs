//! Collecting witness attestations until a transaction is final.

use std::collections::BTreeMap;

use super::{ParamsError, WalletParams, Witness};
use crate::{peer_id::peer_id_from_pubkey, signed::VerifyError};

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

/// Checks an attestation and returns `(tx id, witness peer id, weight)`.
fn check(params: &WalletParams, w: &Witness) -> Result<(String, String, u64), WitnessError> {
    let body = w.verify()?;
    if body.witness != peer_id_from_pubkey(&w.pubkey) {
        return Err(WitnessError::WitnessMismatch);
    }
    let weight = params
        .weight_of(&body.witness)
        .ok_or_else(|| WitnessError::NotAWitness(body.witness.clone()))?;
    Ok((body.tx_id, body.witness, weight))
}

/// Weight of the valid attestations of `tx_id` in `attestations`, each listed witness counted
/// once. Invalid, foreign and duplicate attestations add nothing. Use it to check a finality
/// certificate received from a peer: final when the result is ≥ `params.quorum_milli`.
pub fn certified_weight(params: &WalletParams, tx_id: &str, attestations: &[Witness]) -> u64 {
    let mut by_witness = BTreeMap::new();
    for w in attestations {
        if let Ok((id, witness, weight)) = check(params, w) {
            if id == tx_id {
                by_witness.insert(witness, weight);
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
    attestations: BTreeMap<String, BTreeMap<String, (u64, Witness)>>,
    max_tracked: usize,
}

impl Finality {
    /// Empty collector for `params` (validated: the quorum must exceed half the weight).
    pub fn new(params: WalletParams) -> Result<Self, ParamsError> {
        params.validate()?;
        Ok(Self {
            params,
            attestations: BTreeMap::new(),
            max_tracked: DEFAULT_MAX_TRACKED,
        })
    }

    /// Adds a verified attestation from a listed witness. Returns whether its transaction is
    /// now final. A witness's repeated attestations count once.
    pub fn add(&mut self, w: &Witness) -> Result<bool, WitnessError> {
        let (tx_id, witness, weight) = check(&self.params, w)?;
        if !self.attestations.contains_key(&tx_id) && self.attestations.len() >= self.max_tracked {
            return Err(WitnessError::Full);
        }
        self.attestations
            .entry(tx_id.clone())
            .or_default()
            .entry(witness)
            .or_insert_with(|| (weight, w.clone()));
        Ok(self.is_final(&tx_id))
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
