//! A wallet genesis: the parameters of a mesh's wallet (witnesses, quorum, initial balances,
//! fees), signed by the node that made it.
//!
//! `offgrid wallet init` makes one; its id ([`Signed::id`], the BLAKE3 hash of the signed
//! bytes) names the mesh's wallet. `offgrid wallet join <id>` fetches it from any peer and
//! keeps it only if its bytes hash to that id, its signature holds, its creator is its signer
//! and its parameters are valid ([`verify_genesis`]). A peer can therefore answer a join with
//! nothing but the genesis it was asked for.
//!
//! The signed bytes start with [`GENESIS_DOMAIN`], so no other signed record verifies as a
//! genesis.

use ed25519_dalek::SigningKey;
use serde::{Deserialize, Serialize};

use super::{ParamsError, WalletParams};
use crate::{
    peer_id::peer_id_from_pubkey,
    signed::{SignError, Signed, VerifyError},
};

/// The type tag inside every genesis's signed bytes.
pub const GENESIS_DOMAIN: &str = "offgrid/wallet-genesis/v1";

/// Largest genesis accepted from a peer, in signed bytes (a few thousand accounts).
pub const MAX_GENESIS_BYTES: usize = 256 * 1024;

/// The signed content of a genesis.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GenesisBody {
    /// [`GENESIS_DOMAIN`]; first, so the tag leads the signed bytes.
    pub domain: String,
    /// Peer id of the node that made it (the signer).
    pub creator: String,
    /// When it was made, Unix milliseconds (makes two geneses of equal parameters distinct).
    pub created_ms: u64,
    /// The wallet's parameters at epoch 0.
    pub params: WalletParams,
}

/// A genesis as it travels and is stored.
pub type SignedGenesis = Signed<GenesisBody>;

impl crate::signed::Domain for GenesisBody {
    /// The type tag of a wallet genesis.
    const TAG: &'static [u8] = b"offgrid/wallet-genesis/v1";
}

/// Why a genesis is refused.
#[derive(Debug, thiserror::Error)]
pub enum GenesisError {
    /// Its bytes do not hash to the id asked for.
    #[error("genesis id is {got}, not the {expected} asked for")]
    WrongId {
        /// The id asked for.
        expected: String,
        /// The id of what arrived.
        got: String,
    },
    /// Bad signature or undecodable body.
    #[error("genesis: {0}")]
    Verify(#[from] VerifyError),
    /// Not a genesis (another signed record).
    #[error("not a wallet genesis (domain {0:?})")]
    WrongDomain(String),
    /// The `creator` field is not the signer.
    #[error("genesis creator is not its signer")]
    CreatorMismatch,
    /// Larger than [`MAX_GENESIS_BYTES`].
    #[error("genesis of {0} bytes is too large")]
    TooLarge(usize),
    /// The parameters are unusable.
    #[error("genesis parameters: {0}")]
    Params(#[from] ParamsError),
    /// Signing failed.
    #[error("cannot sign the genesis: {0}")]
    Sign(#[from] SignError),
}

/// Signs a genesis of `params` (validated first).
pub fn make_genesis(
    key: &SigningKey,
    params: WalletParams,
    created_ms: u64,
) -> Result<SignedGenesis, GenesisError> {
    params.validate()?;
    let body = GenesisBody {
        domain: GENESIS_DOMAIN.into(),
        creator: peer_id_from_pubkey(key.verifying_key().as_bytes()),
        created_ms,
        params,
    };
    let g = Signed::sign(key, &body)?;
    if g.bytes.len() > MAX_GENESIS_BYTES {
        return Err(GenesisError::TooLarge(g.bytes.len()));
    }
    Ok(g)
}

/// Checks a genesis and returns its parameters: its id is `expected_id` (when given), its
/// size is bounded, its signature holds, it is a genesis, its creator signed it, and its
/// parameters are valid.
pub fn verify_genesis(
    g: &SignedGenesis,
    expected_id: Option<&str>,
) -> Result<WalletParams, GenesisError> {
    if g.bytes.len() > MAX_GENESIS_BYTES {
        return Err(GenesisError::TooLarge(g.bytes.len()));
    }
    if let Some(expected) = expected_id {
        let got = g.id();
        if got != expected {
            return Err(GenesisError::WrongId {
                expected: expected.to_owned(),
                got,
            });
        }
    }
    let body = g.verify()?;
    if body.domain != GENESIS_DOMAIN {
        return Err(GenesisError::WrongDomain(body.domain));
    }
    if body.creator != g.signer_peer_id() {
        return Err(GenesisError::CreatorMismatch);
    }
    body.params.validate()?;
    Ok(body.params)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    fn params() -> WalletParams {
        let w = peer_id_from_pubkey(key(1).verifying_key().as_bytes());
        WalletParams {
            witnesses: vec![(w.clone(), 1000)],
            quorum_milli: 501,
            genesis: vec![(w, 1_000_000)],
            ..WalletParams::empty()
        }
    }

    #[test]
    fn a_genesis_verifies_under_its_own_id_and_gives_back_its_parameters() {
        let g = make_genesis(&key(1), params(), 7).unwrap();
        assert_eq!(verify_genesis(&g, Some(&g.id())).unwrap(), params());
        assert_eq!(verify_genesis(&g, None).unwrap(), params());
        let again = make_genesis(&key(1), params(), 8).unwrap();
        assert_ne!(
            g.id(),
            again.id(),
            "the time makes equal parameters distinct"
        );
    }

    #[test]
    fn a_genesis_with_another_id_a_bad_signature_or_another_type_is_refused() {
        let g = make_genesis(&key(1), params(), 7).unwrap();
        let other = make_genesis(&key(1), params(), 8).unwrap();
        assert!(matches!(
            verify_genesis(&other, Some(&g.id())),
            Err(GenesisError::WrongId { .. })
        ));
        let mut forged = g.clone();
        forged.sig[0] ^= 1;
        assert!(matches!(
            verify_genesis(&forged, Some(&g.id())),
            Err(GenesisError::Verify(_))
        ));
        // Signed by one key, claiming another creator.
        let mut body: GenesisBody = g.verify().unwrap();
        body.creator = peer_id_from_pubkey(key(2).verifying_key().as_bytes());
        let liar = Signed::sign(&key(1), &body).unwrap();
        assert!(matches!(
            verify_genesis(&liar, None),
            Err(GenesisError::CreatorMismatch)
        ));
        // Another record type signed by the same key.
        body.creator = peer_id_from_pubkey(key(1).verifying_key().as_bytes());
        body.domain = "offgrid/payment-order/v1".into();
        let not_genesis = Signed::sign(&key(1), &body).unwrap();
        assert!(matches!(
            verify_genesis(&not_genesis, None),
            Err(GenesisError::WrongDomain(_))
        ));
        // Parameters that would allow two finals for one slot.
        body.domain = GENESIS_DOMAIN.into();
        body.params.quorum_milli = 500;
        let unsafe_quorum = Signed::sign(&key(1), &body).unwrap();
        assert!(matches!(
            verify_genesis(&unsafe_quorum, None),
            Err(GenesisError::Params(ParamsError::QuorumTooLow { .. }))
        ));
        assert!(make_genesis(&key(1), body.params, 1).is_err());
    }

    #[test]
    fn an_oversized_genesis_is_refused_before_it_is_decoded() {
        let g = make_genesis(&key(1), params(), 7).unwrap();
        let big = SignedGenesis::from_parts(vec![b' '; MAX_GENESIS_BYTES + 1], g.sig, g.pubkey);
        assert!(matches!(
            verify_genesis(&big, None),
            Err(GenesisError::TooLarge(_))
        ));
    }
}
