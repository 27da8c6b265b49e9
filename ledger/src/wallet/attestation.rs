//! Witness attestations, signed in Merkle batches.
//!
//! A witness attests many transactions at once: the [`WitnessBody`] of every transaction it
//! attests in one round are the leaves of a BLAKE3 Merkle tree ([`crate::merkle`]) and it
//! signs only the root. Each transaction's attestation still stands alone: it carries its
//! body, the leaf's inclusion path, the root signature and the witness's key, so it is
//! stored, gossiped and shown to peers as part of a certificate on its own. A verifier
//! folds the path up to the root and checks the signature over the root; it remembers each
//! (key, root, signature) it has checked ([`super::Finality`]), so one Ed25519 check covers
//! a witness's whole batch instead of one check per transaction.
//!
//! **Wire form** (JSON; the same field names in the CBOR of ledger sync):
//!
//! ```text
//! {"signed": "<base64 of the WitnessBody's compact JSON bytes>",
//!  "proof":  [{"side": "left" | "right", "hash": "<hex 32 bytes>"}, ...],
//!  "sig":    "<hex 64 bytes>",
//!  "pubkey": "<hex 32 bytes>"}
//! ```
//!
//! - `signed` is the leaf data: the compact JSON of a [`WitnessBody`], as before batching.
//! - `proof` is the sibling path from the leaf up to the root, leaf level first, following
//!   the rules of [`crate::merkle`] (leaf `blake3(0x00 || signed)`, node
//!   `blake3(0x01 || left || right)`, an odd last node promoted unchanged). A batch of one
//!   has `[]`: its root is the leaf hash. Verifiers refuse paths longer than
//!   [`MAX_PROOF_LEN`]; witnesses sign at most [`MAX_BATCH`] leaves per root.
//! - `sig` is an Ed25519 signature (checked with `verify_strict`) over
//!   [`ROOT_DOMAIN`]` || root`: 22 + 32 bytes. Every other signed record of the project
//!   signs JSON bytes, which start with `{`, so a root signature is never valid as one.
//!
//! **Version 0** (before batching) had no `proof` field, and `sig` was over the `signed`
//! bytes themselves. That form is still read and verified, because nodes stored final
//! certificates in it; witnesses no longer produce it. A version-0 signature never passes as
//! a root signature or the reverse: one covers JSON bytes, the other the domain-separated
//! root.

use std::fmt;

use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::WitnessBody;
use crate::{
    codec,
    merkle::{self, Hash, Sibling},
    peer_id::peer_id_from_pubkey,
    signed::{SignError, VerifyError},
};

/// Domain tag prefixed to a batch root before it is signed.
pub const ROOT_DOMAIN: &[u8] = b"offgrid/witness-root/1";

/// Longest inclusion path a verifier accepts (a tree of up to 65,536 leaves).
pub const MAX_PROOF_LEN: usize = 16;

/// Most leaves a witness signs under one root; a larger batch is split (paths stay ≤ 10).
pub const MAX_BATCH: usize = 1024;

/// Length of the signed message of a batch root.
pub const ROOT_MESSAGE_LEN: usize = ROOT_DOMAIN.len() + 32;

/// The bytes a witness signs for a batch root: [`ROOT_DOMAIN`]` || root`.
pub fn root_message(root: &Hash) -> [u8; ROOT_MESSAGE_LEN] {
    let mut m = [0u8; ROOT_MESSAGE_LEN];
    m[..ROOT_DOMAIN.len()].copy_from_slice(ROOT_DOMAIN);
    m[ROOT_DOMAIN.len()..].copy_from_slice(root);
    m
}

/// One witness's attestation of one transaction (see the module docs for the wire form).
#[derive(Clone, PartialEq, Eq)]
pub struct Attestation {
    /// The compact JSON of the [`WitnessBody`]: the Merkle leaf.
    pub bytes: Vec<u8>,
    /// The leaf's sibling path to the signed root, leaf level first; `None` in the
    /// version-0 form, whose signature is over `bytes` directly.
    pub proof: Option<Vec<Sibling>>,
    /// Ed25519 signature over [`root_message`] of the root (over `bytes` in version 0).
    pub sig: [u8; 64],
    /// The witness's Ed25519 public key.
    pub pubkey: [u8; 32],
}

/// What an attestation's signature covers, once its path is folded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Covers {
    /// [`root_message`] of this batch root.
    Root(Hash),
    /// The body bytes themselves (version 0).
    Body,
}

impl Attestation {
    /// Assembles an attestation from its parts. Nothing is checked until verification.
    pub fn from_parts(
        bytes: Vec<u8>,
        proof: Option<Vec<Sibling>>,
        sig: [u8; 64],
        pubkey: [u8; 32],
    ) -> Self {
        Self {
            bytes,
            proof,
            sig,
            pubkey,
        }
    }

    /// Signs `bodies` as Merkle batches of at most [`MAX_BATCH`] leaves, one signature per
    /// batch, and returns one attestation per body, in order. The caller must have durably
    /// recorded every body's slot first (see [`super::WitnessState::attest_batch`]).
    pub fn sign_batch(key: &SigningKey, bodies: &[WitnessBody]) -> Result<Vec<Self>, SignError> {
        let pubkey = key.verifying_key().to_bytes();
        let mut out = Vec::with_capacity(bodies.len());
        for chunk in bodies.chunks(MAX_BATCH) {
            let leaves = chunk
                .iter()
                .map(serde_json::to_vec)
                .collect::<Result<Vec<_>, _>>()?;
            let hashes = leaves.iter().map(|l| merkle::leaf_hash(l)).collect();
            let (root, paths) = merkle::all_paths(hashes);
            let sig = key.sign(&root_message(&root)).to_bytes();
            out.extend(
                leaves
                    .into_iter()
                    .zip(paths)
                    .map(|(bytes, path)| Self::from_parts(bytes, Some(path), sig, pubkey)),
            );
        }
        Ok(out)
    }

    /// The batch root the path folds to; `None` for the version-0 form or a path longer
    /// than [`MAX_PROOF_LEN`].
    pub fn root(&self) -> Option<Hash> {
        match self.covers() {
            Ok(Covers::Root(r)) => Some(r),
            _ => None,
        }
    }

    /// Folds the path: what the signature must cover.
    pub(crate) fn covers(&self) -> Result<Covers, VerifyError> {
        match &self.proof {
            None => Ok(Covers::Body),
            Some(p) if p.len() > MAX_PROOF_LEN => Err(VerifyError::ProofTooLong),
            Some(p) => Ok(Covers::Root(merkle::fold_path(&self.bytes, p))),
        }
    }

    /// Checks the signature (over the folded root) without decoding the body.
    pub fn verify_signature(&self) -> Result<(), VerifyError> {
        let key = VerifyingKey::from_bytes(&self.pubkey).map_err(|_| VerifyError::BadPublicKey)?;
        let sig = Signature::from_bytes(&self.sig);
        let ok = match self.covers()? {
            Covers::Root(r) => key.verify_strict(&root_message(&r), &sig),
            Covers::Body => key.verify_strict(&self.bytes, &sig),
        };
        ok.map_err(|_| VerifyError::BadSignature)
    }

    /// Checks the signature, then decodes the body.
    pub fn verify(&self) -> Result<WitnessBody, VerifyError> {
        self.verify_signature()?;
        self.body()
    }

    /// Decodes the body without checking anything.
    pub fn body(&self) -> Result<WitnessBody, VerifyError> {
        serde_json::from_slice(&self.bytes).map_err(VerifyError::Decode)
    }

    /// The libp2p peer id text of the signer.
    pub fn signer_peer_id(&self) -> String {
        peer_id_from_pubkey(&self.pubkey)
    }

    /// Rough length of the JSON wire form, for packing gossip messages under a size cap.
    pub fn wire_len_hint(&self) -> usize {
        // base64 body, hex signature and key, field names; ~90 bytes per path step.
        self.bytes.len().div_ceil(3) * 4
            + 128
            + 64
            + 64
            + self.proof.as_ref().map_or(0, |p| 12 + p.len() * 90)
    }
}

impl fmt::Debug for Attestation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Attestation")
            .field("signer", &self.signer_peer_id())
            .field("len", &self.bytes.len())
            .field("proof", &self.proof.as_ref().map(Vec::len))
            .finish()
    }
}

#[derive(Deserialize)]
struct Wire {
    #[serde(with = "codec::base64_bytes")]
    signed: Vec<u8>,
    #[serde(default)]
    proof: Option<Vec<Sibling>>,
    #[serde(with = "codec::hex_bytes")]
    sig: [u8; 64],
    #[serde(with = "codec::hex_bytes")]
    pubkey: [u8; 32],
}

impl Serialize for Attestation {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct WireRef<'a> {
            #[serde(serialize_with = "codec::base64_bytes::serialize")]
            signed: &'a [u8],
            #[serde(skip_serializing_if = "Option::is_none")]
            proof: Option<&'a [Sibling]>,
            #[serde(with = "codec::hex_bytes")]
            sig: [u8; 64],
            #[serde(with = "codec::hex_bytes")]
            pubkey: [u8; 32],
        }
        WireRef {
            signed: &self.bytes,
            proof: self.proof.as_deref(),
            sig: self.sig,
            pubkey: self.pubkey,
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for Attestation {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let w = Wire::deserialize(d)?;
        Ok(Self::from_parts(w.signed, w.proof, w.sig, w.pubkey))
    }
}
