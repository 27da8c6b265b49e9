//! Segment encryption and content-key wrapping.
//!
//! Every file gets a fresh random 32-byte content key ([`new_content_key`]). Each segment is
//! sealed with XChaCha20-Poly1305 under a random 24-byte nonce, stored in front of the
//! ciphertext; the associated data is `asset_id || index (u64 LE)`, so a segment cannot be
//! swapped with another segment of the same file or moved to another asset.
//!
//! The content key reaches readers wrapped for their X25519 public key (ECIES style): an
//! ephemeral X25519 key agrees a secret with the recipient, the wrapping key is
//! `blake3::derive_key("offgrid-net 2026 key wrap v1", shared || eph_pub || recipient_pub)`, and
//! the content key is sealed under it with XChaCha20-Poly1305.

use chacha20poly1305::{
    aead::{inout::InOutBuf, AeadInOut, KeyInit},
    Key, Tag, XChaCha20Poly1305, XNonce,
};
use rand::Rng;
use serde::{Deserialize, Serialize};
use x25519_dalek::{PublicKey, StaticSecret};

/// Length of the random nonce at the front of every sealed segment.
pub const NONCE_LEN: usize = 24;
/// Length of the Poly1305 tag at the end of every sealed segment.
pub const TAG_LEN: usize = 16;
/// Bytes a sealed segment adds to its plaintext: nonce + tag.
pub const SEGMENT_OVERHEAD: usize = NONCE_LEN + TAG_LEN;
/// Domain separation for the key-wrapping key derivation; never change it for v1 wraps.
pub const KEY_WRAP_CONTEXT: &str = "offgrid-net 2026 key wrap v1";

/// The largest plaintext one call seals; XChaCha20's 32-bit block counter allows 256 GiB,
/// segments are far smaller.
const MAX_PLAINTEXT: u64 = 1 << 36;

/// A fresh random content key for one file.
pub fn new_content_key() -> [u8; 32] {
    let mut key = [0u8; 32];
    rand::rng().fill_bytes(&mut key);
    key
}

/// A fresh random segment nonce.
pub fn new_nonce() -> [u8; NONCE_LEN] {
    let mut nonce = [0u8; NONCE_LEN];
    rand::rng().fill_bytes(&mut nonce);
    nonce
}

/// The sealed length of a segment with `plain_len` bytes of plaintext.
pub fn cipher_len(plain_len: usize) -> usize {
    plain_len + SEGMENT_OVERHEAD
}

/// Why a segment could not be sealed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EncryptError {
    /// The plaintext is larger than one XChaCha20 stream can cover.
    #[error("segment plaintext of {len} bytes is too large to seal (limit {limit})")]
    TooLarge {
        /// Plaintext length.
        len: usize,
        /// The limit.
        limit: u64,
    },
}

/// Why a sealed segment could not be opened.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecryptError {
    /// Shorter than nonce + tag: not a sealed segment at all.
    #[error(
        "sealed segment is {len} bytes, shorter than the {SEGMENT_OVERHEAD} bytes of nonce and tag"
    )]
    TooShort {
        /// The length received.
        len: usize,
    },
    /// The tag does not verify. AEAD cannot tell these causes apart, so all are named.
    #[error(
        "segment {index} failed authentication: wrong content key, ciphertext tampered with, \
         or the segment belongs to another index or asset"
    )]
    Authentication {
        /// The segment index that was expected.
        index: u64,
    },
}

fn associated_data(asset_id: &[u8; 32], index: u64) -> [u8; 40] {
    let mut ad = [0u8; 40];
    ad[..32].copy_from_slice(asset_id);
    ad[32..].copy_from_slice(&index.to_le_bytes());
    ad
}

/// Seals segment `index` of asset `asset_id` under a fresh random nonce.
///
/// The output is `nonce (24) || ciphertext || tag (16)`.
///
/// # Errors
/// [`EncryptError::TooLarge`] beyond 64 GiB of plaintext.
pub fn encrypt_segment(
    key: &[u8; 32],
    asset_id: &[u8; 32],
    index: u64,
    plaintext: &[u8],
) -> Result<Vec<u8>, EncryptError> {
    encrypt_segment_with_nonce(key, asset_id, index, &new_nonce(), plaintext)
}

/// Seals a segment under a given nonce.
///
/// Only for resuming an upload: re-sealing the same plaintext with the nonce recorded in the
/// [`crate::upload::UploadState`] reproduces the shards that hosts already acknowledged. The
/// caller must have checked that the plaintext is the same (the upload state records its
/// hash); a nonce reused for a different plaintext breaks confidentiality.
///
/// # Errors
/// [`EncryptError::TooLarge`] beyond 64 GiB of plaintext.
pub fn encrypt_segment_with_nonce(
    key: &[u8; 32],
    asset_id: &[u8; 32],
    index: u64,
    nonce: &[u8; NONCE_LEN],
    plaintext: &[u8],
) -> Result<Vec<u8>, EncryptError> {
    let too_large = || EncryptError::TooLarge {
        len: plaintext.len(),
        limit: MAX_PLAINTEXT,
    };
    if u64::try_from(plaintext.len()).map_or(true, |len| len > MAX_PLAINTEXT) {
        return Err(too_large());
    }
    let cipher = XChaCha20Poly1305::new(&Key::from(*key));
    let mut out = Vec::with_capacity(cipher_len(plaintext.len()));
    out.extend_from_slice(nonce);
    out.extend_from_slice(plaintext);
    let tag = cipher
        .encrypt_inout_detached(
            &XNonce::from(*nonce),
            &associated_data(asset_id, index),
            InOutBuf::from(&mut out[NONCE_LEN..]),
        )
        .map_err(|_| too_large())?;
    out.extend_from_slice(tag.as_slice());
    Ok(out)
}

/// Opens a segment sealed by [`encrypt_segment`].
///
/// # Errors
/// [`DecryptError`]: too short, or authentication failed (wrong key, tampered, wrong index or
/// asset).
pub fn decrypt_segment(
    key: &[u8; 32],
    asset_id: &[u8; 32],
    index: u64,
    sealed: &[u8],
) -> Result<Vec<u8>, DecryptError> {
    if sealed.len() < SEGMENT_OVERHEAD {
        return Err(DecryptError::TooShort { len: sealed.len() });
    }
    let (nonce, rest) = sealed.split_at(NONCE_LEN);
    let (body, tag) = rest.split_at(rest.len() - TAG_LEN);
    let nonce =
        XNonce::try_from(nonce).map_err(|_| DecryptError::TooShort { len: sealed.len() })?;
    let tag = Tag::try_from(tag).map_err(|_| DecryptError::TooShort { len: sealed.len() })?;
    let mut plain = body.to_vec();
    XChaCha20Poly1305::new(&Key::from(*key))
        .decrypt_inout_detached(
            &nonce,
            &associated_data(asset_id, index),
            InOutBuf::from(plain.as_mut_slice()),
            &tag,
        )
        .map_err(|_| DecryptError::Authentication { index })?;
    Ok(plain)
}

/// A content key sealed for one recipient's X25519 public key. All fields are lower-case hex.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WrappedKey {
    /// The recipient's X25519 public key (32 bytes).
    pub recipient: String,
    /// The ephemeral X25519 public key of this wrap (32 bytes).
    pub ephemeral: String,
    /// The XChaCha20-Poly1305 nonce (24 bytes).
    pub nonce: String,
    /// The sealed content key: 32 bytes + 16 bytes of tag.
    pub ciphertext: String,
}

/// Why a content key could not be wrapped.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WrapError {
    /// The recipient key is a small-order point; the shared secret would be public.
    #[error("recipient X25519 key {recipient} is a low-order point: refusing to wrap for it")]
    WeakRecipient {
        /// The recipient key, hex.
        recipient: String,
    },
}

/// Why a wrapped key could not be opened.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UnwrapError {
    /// A field is not hex of the right length.
    #[error("wrapped key field `{field}` is malformed: {reason}")]
    Malformed {
        /// Which field.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The key was wrapped for somebody else.
    #[error("this key was wrapped for X25519 key {recipient}, not for ours ({ours})")]
    NotForUs {
        /// The recipient named in the wrap.
        recipient: String,
        /// Our public key.
        ours: String,
    },
    /// Addressed to us, but the seal does not open: corrupted or forged.
    #[error("wrapped key failed authentication: corrupted or forged")]
    Authentication,
}

fn wrapping_key(shared: &[u8; 32], ephemeral: &[u8; 32], recipient: &[u8; 32]) -> [u8; 32] {
    let mut material = [0u8; 96];
    material[..32].copy_from_slice(shared);
    material[32..64].copy_from_slice(ephemeral);
    material[64..].copy_from_slice(recipient);
    blake3::derive_key(KEY_WRAP_CONTEXT, &material)
}

/// Wraps `content_key` for the holder of the X25519 secret behind `recipient_pub`.
///
/// # Errors
/// [`WrapError::WeakRecipient`] for a low-order recipient key.
pub fn wrap_key(content_key: &[u8; 32], recipient_pub: &[u8; 32]) -> Result<WrappedKey, WrapError> {
    let ephemeral = StaticSecret::random_from_rng(&mut rand::rng());
    let ephemeral_pub = PublicKey::from(&ephemeral).to_bytes();
    let shared = ephemeral.diffie_hellman(&PublicKey::from(*recipient_pub));
    if !shared.was_contributory() {
        return Err(WrapError::WeakRecipient {
            recipient: hex::encode(recipient_pub),
        });
    }
    let key = wrapping_key(shared.as_bytes(), &ephemeral_pub, recipient_pub);
    let nonce = new_nonce();
    let mut sealed = content_key.to_vec();
    let tag = XChaCha20Poly1305::new(&Key::from(key))
        .encrypt_inout_detached(
            &XNonce::from(nonce),
            &[],
            InOutBuf::from(sealed.as_mut_slice()),
        )
        // 32 bytes never exceed the cipher's length limit.
        .map_err(|_| WrapError::WeakRecipient {
            recipient: hex::encode(recipient_pub),
        })?;
    sealed.extend_from_slice(tag.as_slice());
    Ok(WrappedKey {
        recipient: hex::encode(recipient_pub),
        ephemeral: hex::encode(ephemeral_pub),
        nonce: hex::encode(nonce),
        ciphertext: hex::encode(sealed),
    })
}

fn decode_field<const N: usize>(field: &'static str, value: &str) -> Result<[u8; N], UnwrapError> {
    let bytes = hex::decode(value).map_err(|e| UnwrapError::Malformed {
        field,
        reason: e.to_string(),
    })?;
    let len = bytes.len();
    bytes.try_into().map_err(|_| UnwrapError::Malformed {
        field,
        reason: format!("{len} bytes, expected {N}"),
    })
}

/// Opens a [`WrappedKey`] with our X25519 secret and returns the content key.
///
/// # Errors
/// [`UnwrapError::NotForUs`] when wrapped for another key, [`UnwrapError::Authentication`]
/// when the seal does not open, [`UnwrapError::Malformed`] for bad hex.
pub fn unwrap_key(wrapped: &WrappedKey, secret: &StaticSecret) -> Result<[u8; 32], UnwrapError> {
    let recipient: [u8; 32] = decode_field("recipient", &wrapped.recipient)?;
    let ephemeral: [u8; 32] = decode_field("ephemeral", &wrapped.ephemeral)?;
    let nonce: [u8; NONCE_LEN] = decode_field("nonce", &wrapped.nonce)?;
    let sealed: [u8; 48] = decode_field("ciphertext", &wrapped.ciphertext)?;
    let ours = PublicKey::from(secret).to_bytes();
    if ours != recipient {
        return Err(UnwrapError::NotForUs {
            recipient: wrapped.recipient.clone(),
            ours: hex::encode(ours),
        });
    }
    let shared = secret.diffie_hellman(&PublicKey::from(ephemeral));
    if !shared.was_contributory() {
        return Err(UnwrapError::Malformed {
            field: "ephemeral",
            reason: "low-order point".to_owned(),
        });
    }
    let key = wrapping_key(shared.as_bytes(), &ephemeral, &recipient);
    let (body, tag) = sealed.split_at(32);
    let tag = Tag::try_from(tag).map_err(|_| UnwrapError::Authentication)?;
    let mut content_key = [0u8; 32];
    content_key.copy_from_slice(body);
    XChaCha20Poly1305::new(&Key::from(key))
        .decrypt_inout_detached(
            &XNonce::from(nonce),
            &[],
            InOutBuf::from(&mut content_key[..]),
            &tag,
        )
        .map_err(|_| UnwrapError::Authentication)?;
    Ok(content_key)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ASSET: [u8; 32] = [0xAA; 32];

    #[test]
    fn segment_round_trip_and_layout() {
        let key = new_content_key();
        let plain = b"hello offgrid segment".repeat(100);
        let sealed = encrypt_segment(&key, &ASSET, 7, &plain).unwrap();
        assert_eq!(sealed.len(), cipher_len(plain.len()));
        assert!(!sealed.windows(21).any(|w| w == b"hello offgrid segment"));
        assert_eq!(decrypt_segment(&key, &ASSET, 7, &sealed).unwrap(), plain);
        // Two seals of the same plaintext use different nonces.
        let again = encrypt_segment(&key, &ASSET, 7, &plain).unwrap();
        assert_ne!(sealed[..NONCE_LEN], again[..NONCE_LEN]);
        // Empty plaintext works too.
        let empty = encrypt_segment(&key, &ASSET, 0, &[]).unwrap();
        assert_eq!(
            decrypt_segment(&key, &ASSET, 0, &empty).unwrap(),
            Vec::<u8>::new()
        );
    }

    #[test]
    fn segment_refuses_wrong_key_index_asset_or_tampering() {
        let key = new_content_key();
        let sealed = encrypt_segment(&key, &ASSET, 3, b"secret").unwrap();
        let auth = Err(DecryptError::Authentication { index: 3 });
        assert_eq!(
            decrypt_segment(&new_content_key(), &ASSET, 3, &sealed),
            auth
        );
        assert_eq!(decrypt_segment(&key, &[0xBB; 32], 3, &sealed), auth);
        assert_eq!(
            decrypt_segment(&key, &ASSET, 4, &sealed),
            Err(DecryptError::Authentication { index: 4 })
        );
        for pos in [0, NONCE_LEN, sealed.len() - 1] {
            let mut bad = sealed.clone();
            bad[pos] ^= 1;
            assert_eq!(
                decrypt_segment(&key, &ASSET, 3, &bad),
                auth,
                "flip at {pos}"
            );
        }
        assert_eq!(
            decrypt_segment(&key, &ASSET, 3, &sealed[..39]),
            Err(DecryptError::TooShort { len: 39 })
        );
        let message = DecryptError::Authentication { index: 3 }.to_string();
        assert!(message.contains("wrong content key"), "{message}");
    }

    #[test]
    fn with_nonce_is_deterministic() {
        let key = new_content_key();
        let nonce = new_nonce();
        let a = encrypt_segment_with_nonce(&key, &ASSET, 1, &nonce, b"same").unwrap();
        let b = encrypt_segment_with_nonce(&key, &ASSET, 1, &nonce, b"same").unwrap();
        assert_eq!(a, b);
        assert_eq!(&a[..NONCE_LEN], &nonce);
    }

    #[test]
    fn key_wrap_round_trip_and_refusals() {
        let content_key = new_content_key();
        let bob = StaticSecret::random_from_rng(&mut rand::rng());
        let bob_pub = PublicKey::from(&bob).to_bytes();
        let wrapped = wrap_key(&content_key, &bob_pub).unwrap();
        let json = serde_json::to_string(&wrapped).unwrap();
        let back: WrappedKey = serde_json::from_str(&json).unwrap();
        assert_eq!(unwrap_key(&back, &bob).unwrap(), content_key);

        let eve = StaticSecret::random_from_rng(&mut rand::rng());
        let err = unwrap_key(&wrapped, &eve).unwrap_err();
        assert!(matches!(err, UnwrapError::NotForUs { .. }), "{err}");
        assert!(err.to_string().contains("wrapped for"));

        // Eve relabels the wrap as hers: the seal still does not open.
        let mut relabelled = wrapped.clone();
        relabelled.recipient = hex::encode(PublicKey::from(&eve).to_bytes());
        assert_eq!(
            unwrap_key(&relabelled, &eve),
            Err(UnwrapError::Authentication)
        );

        let mut tampered = wrapped.clone();
        let mut sealed = hex::decode(&wrapped.ciphertext).unwrap();
        sealed[5] ^= 0x40;
        tampered.ciphertext = hex::encode(sealed);
        assert_eq!(
            unwrap_key(&tampered, &bob),
            Err(UnwrapError::Authentication)
        );
        let mut malformed = wrapped;
        malformed.nonce = "zz".to_owned();
        assert!(matches!(
            unwrap_key(&malformed, &bob),
            Err(UnwrapError::Malformed { field: "nonce", .. })
        ));
    }

    #[test]
    fn wrap_refuses_low_order_recipient() {
        let err = wrap_key(&new_content_key(), &[0u8; 32]).unwrap_err();
        assert!(matches!(err, WrapError::WeakRecipient { .. }));
    }
}
