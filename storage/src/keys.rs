//! X25519 keys derived from a node's Ed25519 identity.
//!
//! A file can be shared with any peer known only by its peer id: the peer id embeds the
//! Ed25519 public key, which maps to an X25519 public key (Edwards → Montgomery), and the peer
//! derives the matching X25519 secret from its Ed25519 seed. This is the standard conversion
//! (the one libsodium's `crypto_sign_ed25519_sk_to_curve25519` uses).

use ed25519_dalek::{SigningKey, VerifyingKey};
use x25519_dalek::StaticSecret;

/// Why an Ed25519 public key cannot be turned into an X25519 public key.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    /// The 32 bytes are not the encoding of a point on the Edwards curve.
    #[error("not a valid Ed25519 public key: the point does not decompress")]
    InvalidEd25519Public,
    /// The key is a small-order point: every Diffie-Hellman with it gives a known result, so
    /// anything wrapped for it would be readable by anyone.
    #[error("weak Ed25519 public key (small-order point): refusing to encrypt to it")]
    WeakEd25519Public,
}

/// The X25519 secret that belongs to the Ed25519 key with this 32-byte seed.
///
/// clamp(SHA-512(seed)[..32]), the scalar Ed25519 itself signs with.
pub fn x25519_secret_from_ed25519_seed(seed: &[u8; 32]) -> StaticSecret {
    let mut scalar = SigningKey::from_bytes(seed).to_scalar_bytes();
    // X25519 clamps again on every use; clamping here too makes the stored secret canonical.
    scalar[0] &= 248;
    scalar[31] &= 127;
    scalar[31] |= 64;
    StaticSecret::from(scalar)
}

/// The X25519 public key that belongs to an Ed25519 public key.
///
/// # Errors
/// [`KeyError`] when the bytes are not a point, or are a weak (small-order) one.
pub fn x25519_public_from_ed25519_public(public: &[u8; 32]) -> Result<[u8; 32], KeyError> {
    let key = VerifyingKey::from_bytes(public).map_err(|_| KeyError::InvalidEd25519Public)?;
    if key.is_weak() {
        return Err(KeyError::WeakEd25519Public);
    }
    Ok(key.to_montgomery().to_bytes())
}

#[cfg(test)]
mod tests {
    use x25519_dalek::PublicKey;

    use super::*;

    #[test]
    fn both_derivations_agree() {
        for seed_byte in [1u8, 7, 200] {
            let seed = [seed_byte; 32];
            let ed_public = SigningKey::from_bytes(&seed).verifying_key().to_bytes();
            let secret = x25519_secret_from_ed25519_seed(&seed);
            let derived_public = x25519_public_from_ed25519_public(&ed_public).unwrap();
            assert_eq!(PublicKey::from(&secret).to_bytes(), derived_public);
        }
    }

    #[test]
    fn diffie_hellman_matches_from_both_sides() {
        let (seed_a, seed_b) = ([3u8; 32], [9u8; 32]);
        let pub_a = SigningKey::from_bytes(&seed_a).verifying_key().to_bytes();
        let pub_b = SigningKey::from_bytes(&seed_b).verifying_key().to_bytes();
        let secret_a = x25519_secret_from_ed25519_seed(&seed_a);
        let secret_b = x25519_secret_from_ed25519_seed(&seed_b);
        let x_pub_a = PublicKey::from(x25519_public_from_ed25519_public(&pub_a).unwrap());
        let x_pub_b = PublicKey::from(x25519_public_from_ed25519_public(&pub_b).unwrap());
        let ab = secret_a.diffie_hellman(&x_pub_b);
        let ba = secret_b.diffie_hellman(&x_pub_a);
        assert_eq!(ab.as_bytes(), ba.as_bytes());
        assert!(ab.was_contributory());
        // A different peer gets a different secret.
        let secret_c = x25519_secret_from_ed25519_seed(&[4u8; 32]);
        assert_ne!(secret_c.diffie_hellman(&x_pub_b).as_bytes(), ab.as_bytes());
    }

    #[test]
    fn bad_public_keys_are_refused() {
        // The identity point (y = 1) is small-order.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        assert_eq!(
            x25519_public_from_ed25519_public(&identity),
            Err(KeyError::WeakEd25519Public)
        );
        // y = 2 is not on the curve.
        let mut off_curve = [0u8; 32];
        off_curve[0] = 2;
        assert_eq!(
            x25519_public_from_ed25519_public(&off_curve),
            Err(KeyError::InvalidEd25519Public)
        );
    }
}
