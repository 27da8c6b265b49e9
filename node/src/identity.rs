//! The node's identity: one Ed25519 key, kept in the data directory.
//!
//! The key file `node.key` (mode 0600) is JSON: `{"type":"ed25519","seed":hex,"public":hex}`.
//! The public key is stored beside the seed so that a damaged file is detected (the seed no
//! longer derives the stored public key) instead of silently becoming a different identity.
//! A missing file is created; a present but unreadable or corrupt one is an error, never
//! replaced.
//!
//! The X25519 key used to wrap file keys is derived from the same seed (the standard
//! Ed25519→X25519 conversion), so any peer can encrypt to a node it knows only by peer id.

use std::{
    fs,
    io::Write,
    path::{Path, PathBuf},
};

use ed25519_dalek::SigningKey;
use libp2p::{identity::Keypair, PeerId};
use serde::{Deserialize, Serialize};

/// File name of the node key inside the data directory.
pub const KEY_FILE: &str = "node.key";

/// Errors loading or creating the identity.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// The key file exists but could not be read.
    #[error("cannot read key file {path}: {source}")]
    Read {
        /// Key file path.
        path: PathBuf,
        /// Underlying error.
        source: std::io::Error,
    },
    /// The key file is damaged; it is left untouched.
    #[error("key file {path} is corrupt ({reason}); it was left untouched — restore it from a backup or move it away to create a new identity")]
    Corrupt {
        /// Key file path.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The key file could not be written.
    #[error("cannot write key file {path}: {source}")]
    Write {
        /// Key file path.
        path: PathBuf,
        /// Underlying error.
        source: std::io::Error,
    },
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyFile {
    #[serde(rename = "type")]
    kind: String,
    seed: String,
    public: String,
}

/// The node's keys.
#[derive(Clone)]
pub struct Identity {
    signing: SigningKey,
    keypair: Keypair,
    peer_id: PeerId,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("peer_id", &self.peer_id)
            .finish_non_exhaustive()
    }
}

impl Identity {
    /// Builds an identity from a 32-byte Ed25519 seed.
    pub fn from_seed(seed: [u8; 32]) -> Self {
        let signing = SigningKey::from_bytes(&seed);
        let mut bytes = seed;
        // ed25519_from_bytes only fails on a wrong length; the array is always 32 bytes.
        #[allow(clippy::expect_used)]
        let keypair = Keypair::ed25519_from_bytes(&mut bytes).expect("32-byte seed");
        let peer_id = keypair.public().to_peer_id();
        Identity {
            signing,
            keypair,
            peer_id,
        }
    }

    /// A fresh random identity (tests, ephemeral nodes).
    pub fn generate() -> Self {
        Self::from_seed(rand::random())
    }

    /// Loads `<dir>/node.key`, creating it (mode 0600) if it does not exist.
    pub fn load_or_create(dir: &Path) -> Result<Self, IdentityError> {
        let path = dir.join(KEY_FILE);
        match fs::read(&path) {
            Ok(bytes) => Self::parse(&path, &bytes),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let id = Self::generate();
                id.write_new(&path)?;
                Ok(id)
            }
            Err(source) => Err(IdentityError::Read { path, source }),
        }
    }

    fn parse(path: &Path, bytes: &[u8]) -> Result<Self, IdentityError> {
        let corrupt = |reason: String| IdentityError::Corrupt {
            path: path.to_owned(),
            reason,
        };
        let file: KeyFile =
            serde_json::from_slice(bytes).map_err(|e| corrupt(format!("not a key file: {e}")))?;
        if file.kind != "ed25519" {
            return Err(corrupt(format!("unsupported key type {:?}", file.kind)));
        }
        let seed: [u8; 32] = hex::decode(&file.seed)
            .ok()
            .and_then(|v| v.try_into().ok())
            .ok_or_else(|| corrupt("seed is not 32 hex bytes".into()))?;
        let id = Self::from_seed(seed);
        if hex::encode(id.public_key()) != file.public {
            return Err(corrupt("seed does not match the stored public key".into()));
        }
        Ok(id)
    }

    fn write_new(&self, path: &Path) -> Result<(), IdentityError> {
        let err = |source| IdentityError::Write {
            path: path.to_owned(),
            source,
        };
        let file = KeyFile {
            kind: "ed25519".into(),
            seed: hex::encode(self.signing.to_bytes()),
            public: hex::encode(self.public_key()),
        };
        let body = serde_json::to_vec_pretty(&file).map_err(|e| err(e.into()))?;
        let tmp = path.with_extension("key.tmp");
        let mut opts = fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut f = opts.open(&tmp).map_err(err)?;
        f.write_all(&body).map_err(err)?;
        f.sync_all().map_err(err)?;
        drop(f);
        // Never clobber a key that appeared meanwhile: link-free rename is fine because
        // we only get here when the file did not exist a moment ago.
        fs::rename(&tmp, path).map_err(err)?;
        if let Some(parent) = path.parent() {
            if let Ok(d) = fs::File::open(parent) {
                let _ = d.sync_all();
            }
        }
        Ok(())
    }

    /// The libp2p peer id.
    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    /// The libp2p keypair (for the swarm).
    pub fn keypair(&self) -> &Keypair {
        &self.keypair
    }

    /// The Ed25519 signing key (receipts, announcements, blocks, transactions).
    pub fn signing_key(&self) -> &SigningKey {
        &self.signing
    }

    /// The Ed25519 public key.
    pub fn public_key(&self) -> [u8; 32] {
        self.signing.verifying_key().to_bytes()
    }

    /// The X25519 secret derived from the Ed25519 seed (clamped SHA-512 of the seed).
    pub fn x25519_secret(&self) -> x25519_dalek::StaticSecret {
        x25519_dalek::StaticSecret::from(self.signing.to_scalar_bytes())
    }

    /// The X25519 public key matching [`Identity::x25519_secret`].
    pub fn x25519_public(&self) -> [u8; 32] {
        x25519_dalek::PublicKey::from(&self.x25519_secret()).to_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_is_created_once_with_mode_0600_and_reloaded() {
        let dir = tempfile::tempdir().unwrap();
        let a = Identity::load_or_create(dir.path()).unwrap();
        let b = Identity::load_or_create(dir.path()).unwrap();
        assert_eq!(a.peer_id(), b.peer_id());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(dir.path().join(KEY_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn corrupt_key_file_is_an_error_and_left_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(KEY_FILE);
        for garbage in [
            &b"not json"[..],
            b"{\"type\":\"ed25519\",\"seed\":\"00\",\"public\":\"00\"}",
        ] {
            fs::write(&path, garbage).unwrap();
            let err = Identity::load_or_create(dir.path()).unwrap_err();
            assert!(matches!(err, IdentityError::Corrupt { .. }), "{err}");
            assert_eq!(fs::read(&path).unwrap(), garbage);
        }
        // A flipped bit in the seed no longer matches the public key.
        let id = Identity::generate();
        id.write_new(&path).unwrap();
        let mut text = fs::read_to_string(&path).unwrap();
        let seed = hex::encode(id.signing_key().to_bytes());
        let mut flipped = seed.clone().into_bytes();
        flipped[0] = if flipped[0] == b'0' { b'1' } else { b'0' };
        text = text.replace(&seed, std::str::from_utf8(&flipped).unwrap());
        fs::write(&path, &text).unwrap();
        let err = Identity::load_or_create(dir.path()).unwrap_err();
        assert!(err.to_string().contains("does not match"), "{err}");
    }

    #[test]
    fn x25519_key_agrees_with_the_ed25519_public_key() {
        let id = Identity::generate();
        let from_ed = ed25519_dalek::VerifyingKey::from_bytes(&id.public_key())
            .unwrap()
            .to_montgomery()
            .to_bytes();
        assert_eq!(from_ed, id.x25519_public());
    }
}
