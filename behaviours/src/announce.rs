//! Signed host announcements, spread on the gossipsub topic [`TOPIC`].
//!
//! An announcement says what a node offers: whether it takes jobs, its prices per resource
//! type (integers of micro-credits), its limits, capacity and listen addresses. The node
//! signs its type tag ([`Announcement::TAG`], `offgrid/announcement/v1`) followed by the
//! announcement's exact JSON bytes with its libp2p Ed25519 key
//! ([`offgrid_ledger::signed_message`]); the bytes travel with the signature, so a verifier
//! checks the signature and then decodes, never re-encodes. A receiver keeps the announcement with the highest `seq` per node.

use std::collections::BTreeMap;

use base64::{engine::general_purpose::STANDARD as B64, Engine as _};
use libp2p::{
    identity::{Keypair, PublicKey},
    PeerId,
};
use offgrid_ledger::{signed_message, Domain};
use serde::{Deserialize, Serialize};

/// The gossipsub topic announcements are published on.
pub const TOPIC: &str = "offgrid/announce/1";

/// Largest encoded signed announcement accepted, in bytes.
pub const MAX_BYTES: usize = 16 * 1024;

/// Capacity a host advertises.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Capacity {
    /// CPU cores offered.
    pub cpu_cores: u32,
    /// Bytes of shard storage offered.
    pub storage_bytes: u64,
}

/// What a host offers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Announcement {
    /// The announcing node's peer id.
    pub node_id: String,
    /// Increases with every new announcement of this node.
    pub seq: u64,
    /// Whether the host takes jobs.
    pub active: bool,
    /// Price per unit, per resource type, in micro-credits.
    pub prices: BTreeMap<String, u64>,
    /// Job types this host has an executor for.
    pub job_types: Vec<String>,
    /// Percent of time the host promises to be on call.
    pub min_oncall_percent: u8,
    /// Highest percent of capacity lent in bursts.
    pub burst_percent_max: u8,
    /// Most jobs run at once.
    pub burst: u32,
    /// Advertised capacity.
    pub capacity: Capacity,
    /// Listen multiaddrs.
    pub listen_addrs: Vec<String>,
    /// When it was issued, Unix milliseconds.
    pub issued_at_ms: u64,
}

/// An announcement with its signature; what travels and what is stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedAnnouncement {
    /// The announcement's JSON bytes, base64.
    pub signed: String,
    /// Ed25519 signature over the decoded `signed` bytes, base64.
    pub sig: String,
    /// The signer's libp2p public key (protobuf encoding), base64.
    pub public_key: String,
}

/// Why an announcement was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AnnounceError {
    /// Larger than [`MAX_BYTES`].
    #[error("announcement too large ({0} bytes)")]
    TooLarge(usize),
    /// Not the expected JSON shape or not valid base64.
    #[error("malformed announcement: {0}")]
    Malformed(String),
    /// The signature does not verify.
    #[error("bad announcement signature")]
    BadSignature,
    /// `node_id` is not the signer's peer id.
    #[error("announcement node_id {claimed} is not the signer {signer}")]
    WrongSigner {
        /// Claimed node id.
        claimed: String,
        /// Peer id of the key that signed.
        signer: String,
    },
    /// Signing failed.
    #[error("cannot sign: {0}")]
    Sign(String),
}

impl Domain for Announcement {
    /// The type tag of a host announcement.
    const TAG: &'static [u8] = b"offgrid/announcement/v1";
}

impl Announcement {
    /// Signs the announcement with the node's key.
    pub fn sign(&self, key: &Keypair) -> Result<SignedAnnouncement, AnnounceError> {
        let bytes = serde_json::to_vec(self).map_err(|e| AnnounceError::Sign(e.to_string()))?;
        let sig = key
            .sign(&signed_message(Self::TAG, &bytes))
            .map_err(|e| AnnounceError::Sign(e.to_string()))?;
        Ok(SignedAnnouncement {
            signed: B64.encode(&bytes),
            sig: B64.encode(sig),
            public_key: B64.encode(key.public().encode_protobuf()),
        })
    }
}

impl SignedAnnouncement {
    /// Decodes a wire message (JSON) without verifying it.
    pub fn from_wire(bytes: &[u8]) -> Result<Self, AnnounceError> {
        if bytes.len() > MAX_BYTES {
            return Err(AnnounceError::TooLarge(bytes.len()));
        }
        serde_json::from_slice(bytes).map_err(|e| AnnounceError::Malformed(e.to_string()))
    }

    /// Encodes for the wire (JSON).
    pub fn to_wire(&self) -> Vec<u8> {
        // A struct of three strings always serialises.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Verifies the signature, then decodes; returns the signer and the announcement.
    pub fn verify(&self) -> Result<(PeerId, Announcement), AnnounceError> {
        let malformed = |e: &dyn std::fmt::Display| AnnounceError::Malformed(e.to_string());
        let bytes = B64.decode(&self.signed).map_err(|e| malformed(&e))?;
        if bytes.len() > MAX_BYTES {
            return Err(AnnounceError::TooLarge(bytes.len()));
        }
        let sig = B64.decode(&self.sig).map_err(|e| malformed(&e))?;
        let pk_bytes = B64.decode(&self.public_key).map_err(|e| malformed(&e))?;
        let pk = PublicKey::try_decode_protobuf(&pk_bytes).map_err(|e| malformed(&e))?;
        if !pk.verify(&signed_message(Announcement::TAG, &bytes), &sig) {
            return Err(AnnounceError::BadSignature);
        }
        let ann: Announcement = serde_json::from_slice(&bytes).map_err(|e| malformed(&e))?;
        let signer = pk.to_peer_id();
        if ann.node_id != signer.to_string() {
            return Err(AnnounceError::WrongSigner {
                claimed: ann.node_id,
                signer: signer.to_string(),
            });
        }
        Ok((signer, ann))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(key: &Keypair) -> Announcement {
        Announcement {
            node_id: key.public().to_peer_id().to_string(),
            seq: 7,
            active: true,
            prices: BTreeMap::from([("compute".into(), 30_000)]),
            job_types: vec!["echo".into()],
            min_oncall_percent: 20,
            burst_percent_max: 80,
            burst: 8,
            capacity: Capacity::default(),
            listen_addrs: vec!["/ip4/127.0.0.1/tcp/1".into()],
            issued_at_ms: 1,
        }
    }

    #[test]
    fn signed_announcement_round_trips_over_the_wire() {
        let key = Keypair::generate_ed25519();
        let signed = sample(&key).sign(&key).unwrap();
        let wire = signed.to_wire();
        let (peer, ann) = SignedAnnouncement::from_wire(&wire)
            .unwrap()
            .verify()
            .unwrap();
        assert_eq!(peer, key.public().to_peer_id());
        assert_eq!(ann, sample(&key));
    }

    #[test]
    fn tampered_or_foreign_announcements_are_refused() {
        let key = Keypair::generate_ed25519();
        let mut signed = sample(&key).sign(&key).unwrap();
        let mut ann = sample(&key);
        ann.active = false;
        signed.signed = B64.encode(serde_json::to_vec(&ann).unwrap());
        assert_eq!(signed.verify(), Err(AnnounceError::BadSignature));

        // Signed correctly, but claiming to be another node.
        let other = Keypair::generate_ed25519();
        let forged = sample(&other).sign(&key).unwrap();
        assert!(matches!(
            forged.verify(),
            Err(AnnounceError::WrongSigner { .. })
        ));

        assert!(matches!(
            SignedAnnouncement::from_wire(b"{"),
            Err(AnnounceError::Malformed(_))
        ));
        // A signature over the bare JSON (no type tag), as before domain separation.
        let bytes = serde_json::to_vec(&sample(&key)).unwrap();
        let untagged = SignedAnnouncement {
            signed: B64.encode(&bytes),
            sig: B64.encode(key.sign(&bytes).unwrap()),
            public_key: B64.encode(key.public().encode_protobuf()),
        };
        assert_eq!(untagged.verify(), Err(AnnounceError::BadSignature));

        let huge = vec![b' '; MAX_BYTES + 1];
        assert!(matches!(
            SignedAnnouncement::from_wire(&huge),
            Err(AnnounceError::TooLarge(_))
        ));
    }
}
