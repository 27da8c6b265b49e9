//! Store-and-forward bundles: signed, content-addressed items a node carries for others
//! (transfers that cannot reach their witnesses yet, receipts, blocks, small messages, async job
//! results) until a link to their destination appears.
//!
//! - [`Bundle`]: the signed body and the hop count that travels beside it.
//! - [`queue`]: the bounded queue policy (dedup, per-source and total quotas, expiry, custody).
//! - [`recon`]: range-based set reconciliation, so two nodes that meet swap only what each lacks.
//!
//! A bundle's id is the BLAKE3 hash of its signed bytes, so it cannot be forged without the
//! source's key, and a replay is the same id and is deduplicated. The hop count is the one
//! field a custodian changes, so it lies outside the signature; the signed `hop_limit` bounds it.

pub mod queue;
pub mod recon;

use serde::{Deserialize, Serialize};

use crate::signed::{Domain, Signed, VerifyError};

/// Largest payload a bundle may carry (bytes): small enough for a few radio frames.
pub const MAX_PAYLOAD: usize = 4096;
/// Largest hop limit a source may ask for.
pub const MAX_HOP_LIMIT: u8 = 16;
/// Longest TTL a source may ask for (seconds from creation): one week.
pub const MAX_TTL_S: u64 = 7 * 24 * 3600;

/// What a bundle carries, so the custodian that can deliver knows what to do with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A signed wallet transaction, delivered by submitting it to the witnesses.
    Transaction,
    /// A signed receipt.
    Receipt,
    /// A ledger block.
    Block,
    /// A small message for one peer.
    Message,
    /// The result of an asynchronous job.
    JobResult,
}

/// Where a bundle goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "to", content = "peer")]
pub enum Destination {
    /// One peer, by its libp2p peer id text.
    Peer(String),
    /// The ledger: any node that reaches the witness set delivers it.
    Ledger,
}

/// The signed part of a bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BundleBody {
    /// What the payload is.
    pub kind: Kind,
    /// Where it goes.
    pub destination: Destination,
    /// Unix seconds when the source made it.
    pub created: u64,
    /// Absolute expiry, Unix seconds.
    pub expires: u64,
    /// Most custodians it may pass through.
    pub hop_limit: u8,
    /// Higher goes first (0–7).
    pub priority: u8,
    /// The carried record, e.g. a signed transaction's JSON.
    pub payload: Vec<u8>,
}

impl Domain for BundleBody {
    const TAG: &'static [u8] = b"offgrid/bundle/v1";
}

/// A bundle as it travels: the signed body and the hops it has taken so far.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Bundle {
    /// The source's signed body.
    pub signed: Signed<BundleBody>,
    /// Custodians it has passed through (not signed: each hop raises it).
    pub hops: u8,
}

/// Why a bundle is refused.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    /// The signature does not verify, or the body does not decode.
    #[error("invalid bundle: {0}")]
    Invalid(#[from] VerifyError),
    /// Its expiry has passed.
    #[error("bundle expired")]
    Expired,
    /// Its hop count has reached its hop limit.
    #[error("hop limit reached")]
    HopLimit,
    /// Its payload, TTL, hop limit or priority is outside the bounds above.
    #[error("bundle out of bounds: {0}")]
    OutOfBounds(&'static str),
}

impl Bundle {
    /// Signs a new bundle as its source.
    pub fn new(
        key: &ed25519_dalek::SigningKey,
        body: &BundleBody,
    ) -> Result<Self, crate::SignError> {
        Ok(Self {
            signed: Signed::sign(key, body)?,
            hops: 0,
        })
    }

    /// The content-addressed id: BLAKE3 of the signed bytes.
    pub fn id(&self) -> recon::Id {
        self.signed.hash()
    }

    /// Verifies a bundle received from a peer at time `now` (Unix seconds) and returns its body.
    pub fn check(&self, now: u64) -> Result<BundleBody, BundleError> {
        if self.signed.bytes.len() > MAX_PAYLOAD * 2 + 512 {
            return Err(BundleError::OutOfBounds("size"));
        }
        let body = self.signed.verify()?;
        if body.payload.len() > MAX_PAYLOAD {
            return Err(BundleError::OutOfBounds("payload"));
        }
        if body.hop_limit > MAX_HOP_LIMIT {
            return Err(BundleError::OutOfBounds("hop_limit"));
        }
        if body.priority > 7 {
            return Err(BundleError::OutOfBounds("priority"));
        }
        if body.expires < body.created || body.expires - body.created > MAX_TTL_S {
            return Err(BundleError::OutOfBounds("ttl"));
        }
        if now >= body.expires {
            return Err(BundleError::Expired);
        }
        if self.hops >= body.hop_limit {
            return Err(BundleError::HopLimit);
        }
        Ok(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(b: u8) -> ed25519_dalek::SigningKey {
        ed25519_dalek::SigningKey::from_bytes(&[b; 32])
    }

    fn body() -> BundleBody {
        BundleBody {
            kind: Kind::Transaction,
            destination: Destination::Ledger,
            created: 1000,
            expires: 2000,
            hop_limit: 3,
            priority: 5,
            payload: b"{\"tx\":1}".to_vec(),
        }
    }

    #[test]
    fn honest_bundle_checks_and_id_is_content_addressed() {
        let b = Bundle::new(&key(1), &body()).unwrap();
        assert_eq!(b.check(1500).unwrap(), body());
        let again = Bundle::new(&key(1), &body()).unwrap();
        assert_eq!(b.id(), again.id(), "same signed contents, same id");
        let mut other = body();
        other.priority = 4;
        assert_ne!(b.id(), Bundle::new(&key(1), &other).unwrap().id());
    }

    #[test]
    fn forged_expired_and_overhopped_bundles_are_refused() {
        let b = Bundle::new(&key(1), &body()).unwrap();
        let mut forged = b.clone();
        forged.signed.bytes = serde_json::to_vec(&BundleBody {
            hop_limit: 16,
            ..body()
        })
        .unwrap();
        assert!(matches!(forged.check(1500), Err(BundleError::Invalid(_))));
        let mut wrong_key = b.clone();
        wrong_key.signed.pubkey = key(2).verifying_key().to_bytes();
        assert!(matches!(
            wrong_key.check(1500),
            Err(BundleError::Invalid(_))
        ));
        assert!(matches!(b.check(2000), Err(BundleError::Expired)));
        let mut hopped = b.clone();
        hopped.hops = 3;
        assert!(matches!(hopped.check(1500), Err(BundleError::HopLimit)));
        let big = Bundle::new(
            &key(1),
            &BundleBody {
                payload: vec![0; MAX_PAYLOAD + 1],
                ..body()
            },
        )
        .unwrap();
        assert!(matches!(
            big.check(1500),
            Err(BundleError::OutOfBounds("payload"))
        ));
        let long = Bundle::new(
            &key(1),
            &BundleBody {
                expires: 1000 + MAX_TTL_S + 1,
                ..body()
            },
        )
        .unwrap();
        assert!(matches!(
            long.check(1500),
            Err(BundleError::OutOfBounds("ttl"))
        ));
    }
}
