//! A secured radio session: an authenticated key exchange sized for LoRa, then
//! ChaCha20-Poly1305 frames over an [`ArqStream`].
//!
//! Stock libp2p would spend a multistream-select negotiation, a Noise XX handshake with
//! protobuf payloads and Yamux framing before the first request (well over 400 bytes). Both
//! ends of a radio session already know each other's Ed25519 key from beacons, so two
//! messages do ("SIGMA"-style: each side signs its ephemeral X25519 key and the other's
//! identity):
//!
//! ```text
//! I → R  HELLO    0x01 eph_i:32 key_i:32 sig_i:64   sig_i = Ed25519_i(D_HELLO ‖ eph_i ‖ key_r)
//! R → I  WELCOME  eph_r:32 sig_r:64                 sig_r = Ed25519_r(D_WELCOME ‖ eph_r ‖ eph_i ‖ key_i)
//! ```
//!
//! Keys: `k = BLAKE3-derive("offgrid-radio-v1 <dir>", X25519(eph) ‖ eph_i ‖ eph_r)`, one per
//! direction. Every later message is `len:varint ‖ ChaCha20-Poly1305(k, nonce = counter)`.
//! The ephemeral keys give forward secrecy; the signatures bind them to both identities
//! (no one can relay a HELLO to a third station: it names the responder's key). The whole
//! setup is 225 bytes of payload, 261 on air with the ARQ headers and ACKs.

use chacha20poly1305::{
    aead::{Aead, KeyInit},
    ChaCha20Poly1305, Key, Nonce,
};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use offgrid_transports::frag::ArqStream;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use x25519_dalek::{PublicKey, StaticSecret};

use super::wire::{put_var, MAX_MESSAGE};

pub(crate) const D_HELLO: &[u8] = b"offgrid-radio-hello-v1";
pub(crate) const D_WELCOME: &[u8] = b"offgrid-radio-welcome-v1";
const HELLO: u8 = 0x01;
/// Bytes of a HELLO.
pub const HELLO_LEN: usize = 1 + 32 + 32 + 64;
/// Bytes of a WELCOME.
pub const WELCOME_LEN: usize = 32 + 64;
/// Bytes the AEAD adds to every message.
pub const TAG_LEN: usize = 16;

/// Why a session failed.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The stream failed or closed.
    #[error("radio stream: {0}")]
    Io(#[from] std::io::Error),
    /// The peer's handshake message is malformed.
    #[error("malformed handshake")]
    Malformed,
    /// A signature or key did not check out.
    #[error("handshake authentication failed: {0}")]
    Auth(&'static str),
    /// A frame did not decrypt (tampered, or out of order).
    #[error("frame failed authentication")]
    Decrypt,
    /// A frame over [`MAX_MESSAGE`].
    #[error("frame of {0} bytes is too large")]
    TooLarge(u64),
}

/// An established session.
pub struct Session {
    stream: ArqStream,
    send_key: ChaCha20Poly1305,
    recv_key: ChaCha20Poly1305,
    send_ctr: u64,
    recv_ctr: u64,
    /// The remote's Ed25519 key (authenticated).
    pub remote_key: [u8; 32],
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("remote_key", &hex::encode(self.remote_key))
            .finish_non_exhaustive()
    }
}

fn derive(shared: &[u8; 32], eph_i: &[u8; 32], eph_r: &[u8; 32], dir: &str) -> ChaCha20Poly1305 {
    let mut material = Vec::with_capacity(96);
    material.extend_from_slice(shared);
    material.extend_from_slice(eph_i);
    material.extend_from_slice(eph_r);
    let key = blake3::derive_key(&format!("offgrid-radio-v1 {dir}"), &material);
    ChaCha20Poly1305::new(&Key::from(key))
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

fn verify(key: &[u8; 32], msg: &[u8], sig: &[u8]) -> Result<(), SessionError> {
    let vk = VerifyingKey::from_bytes(key).map_err(|_| SessionError::Auth("bad public key"))?;
    let sig = Signature::from_slice(sig).map_err(|_| SessionError::Malformed)?;
    vk.verify_strict(msg, &sig)
        .map_err(|_| SessionError::Auth("bad signature"))
}

impl Session {
    /// Opens a session as initiator to the station whose identity key is `remote`.
    pub async fn initiate(
        mut stream: ArqStream,
        me: &SigningKey,
        remote: [u8; 32],
    ) -> Result<Session, SessionError> {
        let eph = StaticSecret::from(rand::random::<[u8; 32]>());
        let eph_i = PublicKey::from(&eph).to_bytes();
        let key_i = me.verifying_key().to_bytes();
        let sig_i = me.sign(&cat(&[D_HELLO, &eph_i, &remote]));
        let hello = cat(&[&[HELLO], &eph_i, &key_i, &sig_i.to_bytes()]);
        stream.write_all(&hello).await?;
        stream.flush().await?;
        let mut welcome = [0u8; WELCOME_LEN];
        stream.read_exact(&mut welcome).await?;
        let (eph_r, sig_r) = welcome.split_at(32);
        verify(&remote, &cat(&[D_WELCOME, eph_r, &eph_i, &key_i]), sig_r)?;
        let mut eph_r_arr = [0u8; 32];
        eph_r_arr.copy_from_slice(eph_r);
        let shared = eph.diffie_hellman(&PublicKey::from(eph_r_arr));
        if !shared.was_contributory() {
            return Err(SessionError::Auth("low-order ephemeral key"));
        }
        Ok(Session {
            stream,
            send_key: derive(shared.as_bytes(), &eph_i, &eph_r_arr, "i->r"),
            recv_key: derive(shared.as_bytes(), &eph_i, &eph_r_arr, "r->i"),
            send_ctr: 0,
            recv_ctr: 0,
            remote_key: remote,
        })
    }

    /// Accepts a session as responder; learns (and authenticates) the initiator's key.
    pub async fn accept(mut stream: ArqStream, me: &SigningKey) -> Result<Session, SessionError> {
        let mut hello = [0u8; HELLO_LEN];
        stream.read_exact(&mut hello).await?;
        if hello[0] != HELLO {
            return Err(SessionError::Malformed);
        }
        let mut eph_i = [0u8; 32];
        eph_i.copy_from_slice(&hello[1..33]);
        let mut key_i = [0u8; 32];
        key_i.copy_from_slice(&hello[33..65]);
        let key_r = me.verifying_key().to_bytes();
        verify(&key_i, &cat(&[D_HELLO, &eph_i, &key_r]), &hello[65..])?;
        let eph = StaticSecret::from(rand::random::<[u8; 32]>());
        let eph_r = PublicKey::from(&eph).to_bytes();
        let shared = eph.diffie_hellman(&PublicKey::from(eph_i));
        if !shared.was_contributory() {
            return Err(SessionError::Auth("low-order ephemeral key"));
        }
        let sig_r = me.sign(&cat(&[D_WELCOME, &eph_r, &eph_i, &key_i]));
        stream.write_all(&cat(&[&eph_r, &sig_r.to_bytes()])).await?;
        stream.flush().await?;
        Ok(Session {
            stream,
            send_key: derive(shared.as_bytes(), &eph_i, &eph_r, "r->i"),
            recv_key: derive(shared.as_bytes(), &eph_i, &eph_r, "i->r"),
            send_ctr: 0,
            recv_ctr: 0,
            remote_key: key_i,
        })
    }

    fn nonce(ctr: u64) -> Nonce {
        let mut n = [0u8; 12];
        n[..8].copy_from_slice(&ctr.to_le_bytes());
        Nonce::from(n)
    }

    /// Sends one message (encrypted and authenticated) and waits until it is acknowledged.
    pub async fn send(&mut self, msg: &[u8]) -> Result<(), SessionError> {
        let ct = self
            .send_key
            .encrypt(&Self::nonce(self.send_ctr), msg)
            .map_err(|_| SessionError::TooLarge(msg.len() as u64))?;
        self.send_ctr += 1;
        let mut frame = Vec::with_capacity(ct.len() + 3);
        put_var(&mut frame, ct.len() as u64);
        frame.extend_from_slice(&ct);
        self.stream.write_all(&frame).await?;
        self.stream.flush().await?;
        Ok(())
    }

    /// Receives one message; `Ok(None)` when the peer closed the session cleanly.
    pub async fn recv(&mut self) -> Result<Option<Vec<u8>>, SessionError> {
        let mut len: u64 = 0;
        for i in 0..4 {
            let mut b = [0u8; 1];
            match self.stream.read(&mut b).await? {
                0 if i == 0 => return Ok(None),
                0 => return Err(SessionError::Malformed),
                _ => {}
            }
            len |= u64::from(b[0] & 0x7f) << (7 * i);
            if b[0] & 0x80 == 0 {
                break;
            }
            if i == 3 {
                return Err(SessionError::Malformed);
            }
        }
        if len > (MAX_MESSAGE + TAG_LEN) as u64 {
            return Err(SessionError::TooLarge(len));
        }
        // Bounded just above: len ≤ MAX_MESSAGE + TAG_LEN.
        let mut ct = vec![0u8; len as usize];
        self.stream.read_exact(&mut ct).await?;
        let pt = self
            .recv_key
            .decrypt(&Self::nonce(self.recv_ctr), ct.as_slice())
            .map_err(|_| SessionError::Decrypt)?;
        self.recv_ctr += 1;
        Ok(Some(pt))
    }

    /// Closes the sending side (the peer reads end of stream).
    pub async fn close(&mut self) {
        let _ = self.stream.shutdown().await;
    }

    /// The ARQ stream's counters.
    pub fn stream_stats(&self) -> offgrid_transports::frag::ArqStats {
        self.stream.stats()
    }
}
