//! The signed asset manifest: what was stored, where, and under which keys.
//!
//! The owner signs the manifest's compact JSON bytes. Those exact bytes travel with the
//! signature ([`SignedManifest`]); a reader verifies the signature over them and only then
//! decodes them, so no re-encoding can ever make a valid signature fail or a forged one pass.

use base64::{engine::general_purpose::STANDARD as BASE64, Engine as _};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::{crypto::WrappedKey, ec::Scheme, is_valid_hash};

/// The manifest format version this crate writes and reads.
pub const MANIFEST_VERSION: u32 = 1;

/// The type tag of owner-bound asset ids.
pub const ASSET_ID_DOMAIN: &[u8] = b"offgrid/asset-id/v1";

/// The type tag a manifest signature covers before the bytes ([`crate::signed_message`]).
pub const MANIFEST_TAG: &[u8] = b"offgrid/manifest/v1";

/// An owner-bound asset id: BLAKE3(`ASSET_ID_DOMAIN` || owner Ed25519 public key || salt ||
/// created_ms as u64 LE). A manifest carries its salt, so anyone can check that the id
/// belongs to the key that signs it: no one else can publish a manifest under that id.
pub fn bound_asset_id(owner_pubkey: &[u8; 32], salt: &[u8; 16], created_ms: u64) -> [u8; 32] {
    let mut hasher = blake3::Hasher::new();
    hasher.update(ASSET_ID_DOMAIN);
    hasher.update(owner_pubkey);
    hasher.update(salt);
    hasher.update(&created_ms.to_le_bytes());
    *hasher.finalize().as_bytes()
}

/// A new owner-bound asset id and its random salt (see [`bound_asset_id`]).
pub fn new_bound_asset_id(owner_pubkey: &[u8; 32], created_ms: u64) -> ([u8; 32], [u8; 16]) {
    let mut salt = [0u8; 16];
    rand::rng().fill_bytes(&mut salt);
    (bound_asset_id(owner_pubkey, &salt, created_ms), salt)
}

/// A new asset id of the first format: BLAKE3(owner Ed25519 public key || 16 random bytes ||
/// created_ms as u64 LE), not checkable (new uploads use [`new_bound_asset_id`]).
///
/// The random part makes two uploads of the same file by the same owner in the same
/// millisecond distinct; the owner key keeps ids of different owners apart even with a broken
/// random source. The id is opaque: nothing checks how it was made.
pub fn new_asset_id(owner_pubkey: &[u8; 32], created_ms: u64) -> [u8; 32] {
    let mut random = [0u8; 16];
    rand::rng().fill_bytes(&mut random);
    let mut hasher = blake3::Hasher::new();
    hasher.update(owner_pubkey);
    hasher.update(&random);
    hasher.update(&created_ms.to_le_bytes());
    *hasher.finalize().as_bytes()
}

/// One shard of a segment and the host that holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardEntry {
    /// Position in the segment's shard list (0..n; the first k are data shards).
    pub index: u16,
    /// BLAKE3 of the shard bytes, lower-case hex.
    pub hash: String,
    /// Peer id (text) of the host.
    pub host: String,
}

/// One segment of the file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentEntry {
    /// Segment number, from 0.
    pub index: u64,
    /// Length of the sealed segment (plaintext + 40): what reconstruction must return.
    pub cipher_len: u64,
    /// The shards placed (at least k once the upload is complete).
    pub shards: Vec<ShardEntry>,
}

/// Everything needed to find, rebuild, decrypt and check a stored file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Format version, [`MANIFEST_VERSION`].
    pub version: u32,
    /// The asset id, 32 bytes hex; see [`new_asset_id`].
    pub asset_id: String,
    /// Owner peer id (text).
    pub owner: String,
    /// Owner Ed25519 public key, hex; must be the key that signs the manifest.
    pub owner_pubkey: String,
    /// Optional human name of the file.
    pub name: Option<String>,
    /// Plaintext size in bytes.
    pub size: u64,
    /// Erasure-coding scheme used (after any adaptation).
    pub scheme: Scheme,
    /// Shard size in bytes.
    pub shard_size: u32,
    /// Number of segments.
    pub segment_count: u64,
    /// Every segment with its shards.
    pub segments: Vec<SegmentEntry>,
    /// The content key wrapped for each reader (the owner first).
    pub wrapped_keys: Vec<WrappedKey>,
    /// BLAKE3 of the whole plaintext file, hex.
    pub file_blake3: String,
    /// Creation time, milliseconds since the Unix epoch.
    pub created_ms: u64,
    /// Incremented by the owner on every re-signed update (a share, a repair). A holder keeps
    /// the highest revision it has verified, so an old manifest cannot be replayed over a
    /// newer one. Absent in manifests written before updates existed (read as 0).
    #[serde(default)]
    pub revision: u64,
    /// The salt of an owner-bound asset id, hex ([`bound_asset_id`]). Absent in manifests
    /// of the first format, whose ids nothing binds to an owner.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_salt: Option<String>,
    /// When hosts drop the asset, milliseconds since the Unix epoch (`offgrid put
    /// --expires-in`). Absent: kept until the owner deletes it. Signed with the rest, so no
    /// host can shorten or extend it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_ms: Option<u64>,
}

/// A manifest that is not internally consistent.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ManifestError {
    /// A version this crate does not read.
    #[error("unsupported manifest version {0} (this node reads version {MANIFEST_VERSION})")]
    UnsupportedVersion(u32),
    /// A field is malformed or contradicts another.
    #[error("invalid manifest: {0}")]
    Invalid(String),
}

impl Manifest {
    /// Whether the asset's time is up at `now_ms` (never, without an expiry).
    pub fn is_expired(&self, now_ms: u64) -> bool {
        self.expires_ms.is_some_and(|t| t <= now_ms)
    }

    /// The asset id as bytes.
    ///
    /// # Errors
    /// [`ManifestError::Invalid`] when it is not 32 bytes of hex.
    pub fn asset_id_bytes(&self) -> Result<[u8; 32], ManifestError> {
        let bytes = hex::decode(&self.asset_id)
            .map_err(|e| ManifestError::Invalid(format!("asset_id: {e}")))?;
        bytes
            .try_into()
            .map_err(|_| ManifestError::Invalid("asset_id is not 32 bytes".into()))
    }

    /// Whether the asset id is bound to the owner key: its salt is there and the id
    /// recomputes from it (see [`Manifest::validate`], which refuses a salt that does not).
    pub fn owner_bound(&self) -> bool {
        let (Some(salt), Ok(id), Ok(owner)) = (
            self.id_salt.as_deref().and_then(|s| hex::decode(s).ok()),
            self.asset_id_bytes(),
            hex::decode(&self.owner_pubkey),
        ) else {
            return false;
        };
        let (Ok(salt), Ok(owner)) = (<[u8; 16]>::try_from(salt), <[u8; 32]>::try_from(owner))
        else {
            return false;
        };
        bound_asset_id(&owner, &salt, self.created_ms) == id
    }

    /// The wrapped key addressed to this X25519 public key, if there is one.
    pub fn wrapped_key_for(&self, recipient_x25519: &[u8; 32]) -> Option<&WrappedKey> {
        let wanted = hex::encode(recipient_x25519);
        self.wrapped_keys.iter().find(|w| w.recipient == wanted)
    }

    /// Checks internal consistency: version, ids, segment numbering and count, shard indices
    /// within the scheme and unique per segment, hashes well formed.
    ///
    /// # Errors
    /// [`ManifestError`] describing the first problem found.
    pub fn validate(&self) -> Result<(), ManifestError> {
        let invalid = |what: String| Err(ManifestError::Invalid(what));
        if self.version != MANIFEST_VERSION {
            return Err(ManifestError::UnsupportedVersion(self.version));
        }
        self.asset_id_bytes()?;
        if self.id_salt.is_some() && !self.owner_bound() {
            return invalid("the asset id is not bound to the owner key (id_salt)".into());
        }
        if self.scheme.validate().is_err() {
            return invalid(format!("scheme {} is not valid", self.scheme));
        }
        if !is_valid_hash(&self.file_blake3) {
            return invalid("file_blake3 is not a BLAKE3 hex hash".into());
        }
        if self.segments.len() as u64 != self.segment_count {
            return invalid(format!(
                "segment_count is {} but {} segments are listed",
                self.segment_count,
                self.segments.len()
            ));
        }
        let total = self.scheme.total_shards();
        for (position, segment) in self.segments.iter().enumerate() {
            if segment.index != position as u64 {
                return invalid(format!("segment {} listed at {position}", segment.index));
            }
            let mut seen = vec![false; total];
            for shard in &segment.shards {
                let slot = seen.get_mut(usize::from(shard.index));
                match slot {
                    Some(slot) if !*slot => *slot = true,
                    _ => {
                        return invalid(format!(
                            "segment {position}: shard index {} out of range or repeated",
                            shard.index
                        ))
                    }
                }
                if !is_valid_hash(&shard.hash) {
                    return invalid(format!("segment {position}: malformed shard hash"));
                }
            }
        }
        Ok(())
    }
}

/// Why a [`SignedManifest`] was rejected.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// The public key is not a valid Ed25519 key.
    #[error("manifest signer key is not a valid Ed25519 public key")]
    BadPublicKey,
    /// The signature does not verify over the bytes.
    #[error("manifest signature does not verify: forged or altered")]
    BadSignature,
    /// The bytes are not a manifest.
    #[error("signed bytes are not a manifest: {0}")]
    Decode(#[from] serde_json::Error),
    /// Signed by a key other than the manifest's owner key.
    #[error("manifest signed by {signer}, but its owner key is {owner}")]
    NotSignedByOwner {
        /// The key that signed.
        signer: String,
        /// The owner key inside the manifest.
        owner: String,
    },
    /// The manifest is signed correctly but inconsistent.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
}

/// Why a manifest could not be signed.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    /// Serialising to JSON failed (not expected for this type).
    #[error("cannot encode manifest: {0}")]
    Encode(#[from] serde_json::Error),
    /// The manifest names another owner key than the signing key.
    #[error("manifest owner key {owner} is not the signing key {signer}")]
    NotOwner {
        /// The owner key inside the manifest.
        owner: String,
        /// The signing key.
        signer: String,
    },
}

/// A manifest's exact JSON bytes with the owner's Ed25519 signature over [`MANIFEST_TAG`]
/// and them.
///
/// Serialised as `{"signed": base64, "sig": hex, "pubkey": hex}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "SignedManifestWire", into = "SignedManifestWire")]
pub struct SignedManifest {
    /// The compact JSON of the manifest, exactly as signed.
    pub signed: Vec<u8>,
    /// Ed25519 signature over [`crate::signed_message`]`(MANIFEST_TAG, signed)`.
    pub sig: [u8; 64],
    /// The signer's Ed25519 public key.
    pub pubkey: [u8; 32],
}

impl SignedManifest {
    /// Encodes `manifest` as compact JSON and signs the bytes.
    ///
    /// # Errors
    /// [`SignError::NotOwner`] when `manifest.owner_pubkey` is not this key.
    pub fn sign(key: &SigningKey, manifest: &Manifest) -> Result<Self, SignError> {
        let pubkey = key.verifying_key().to_bytes();
        let signer = hex::encode(pubkey);
        if manifest.owner_pubkey != signer {
            return Err(SignError::NotOwner {
                owner: manifest.owner_pubkey.clone(),
                signer,
            });
        }
        let signed = serde_json::to_vec(manifest)?;
        let sig = key
            .sign(&crate::signed_message(MANIFEST_TAG, &signed))
            .to_bytes();
        Ok(SignedManifest {
            signed,
            sig,
            pubkey,
        })
    }

    /// Verifies the signature over the bytes, then decodes and validates the manifest and
    /// checks that its owner key is the signer.
    ///
    /// # Errors
    /// [`VerifyError`] naming what failed.
    pub fn verify(&self) -> Result<Manifest, VerifyError> {
        let key = VerifyingKey::from_bytes(&self.pubkey).map_err(|_| VerifyError::BadPublicKey)?;
        let message = crate::signed_message(MANIFEST_TAG, &self.signed);
        key.verify_strict(&message, &Signature::from_bytes(&self.sig))
            .map_err(|_| VerifyError::BadSignature)?;
        let manifest: Manifest = serde_json::from_slice(&self.signed)?;
        let signer = hex::encode(self.pubkey);
        if manifest.owner_pubkey != signer {
            return Err(VerifyError::NotSignedByOwner {
                signer,
                owner: manifest.owner_pubkey,
            });
        }
        manifest.validate()?;
        Ok(manifest)
    }
}

#[derive(Serialize, Deserialize)]
struct SignedManifestWire {
    signed: String,
    sig: String,
    pubkey: String,
}

impl From<SignedManifest> for SignedManifestWire {
    fn from(m: SignedManifest) -> Self {
        SignedManifestWire {
            signed: BASE64.encode(&m.signed),
            sig: hex::encode(m.sig),
            pubkey: hex::encode(m.pubkey),
        }
    }
}

impl TryFrom<SignedManifestWire> for SignedManifest {
    type Error = String;

    fn try_from(w: SignedManifestWire) -> Result<Self, String> {
        let signed = BASE64
            .decode(&w.signed)
            .map_err(|e| format!("signed: {e}"))?;
        let sig = hex::decode(&w.sig)
            .map_err(|e| format!("sig: {e}"))?
            .try_into()
            .map_err(|_| "sig: not 64 bytes".to_owned())?;
        let pubkey = hex::decode(&w.pubkey)
            .map_err(|e| format!("pubkey: {e}"))?
            .try_into()
            .map_err(|_| "pubkey: not 32 bytes".to_owned())?;
        Ok(SignedManifest {
            signed,
            sig,
            pubkey,
        })
    }
}

#[cfg(test)]
#[path = "manifest_tests.rs"]
mod tests;
