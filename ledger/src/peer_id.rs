//! libp2p `PeerId` text form for Ed25519 keys, without depending on libp2p.
//!
//! A libp2p peer id for an Ed25519 key is the base58btc encoding of an *identity* multihash
//! (code `0x00`, length `0x24` = 36) whose digest is the protobuf-encoded `PublicKey`
//! message: field 1 (`KeyType`) = 1 (Ed25519) as bytes `08 01`, field 2 (`Data`) as bytes
//! `12 20` followed by the 32-byte key. Every such id starts with `12D3KooW`. The node's
//! libp2p `PeerId::to_string()` yields the same text, so ids computed here can be compared
//! with the swarm's.

/// The 6 bytes that precede the raw key in the multihash: identity code, digest length and the
/// protobuf header of `PublicKey { key_type: Ed25519, data: <32 bytes> }`.
const PREFIX: [u8; 6] = [0x00, 0x24, 0x08, 0x01, 0x12, 0x20];

/// Returns the libp2p peer id text (`12D3KooW…`) of an Ed25519 public key.
pub fn peer_id_from_pubkey(pubkey: &[u8; 32]) -> String {
    let mut buf = [0u8; 38];
    buf[..6].copy_from_slice(&PREFIX);
    buf[6..].copy_from_slice(pubkey);
    bs58::encode(buf).into_string()
}

/// Recovers the Ed25519 public key from a peer id text, or `None` if the text is not the
/// identity-multihash form of an Ed25519 key (other key types hash their keys and cannot be
/// inverted).
pub fn pubkey_from_peer_id(peer_id: &str) -> Option<[u8; 32]> {
    // 38 bytes encode to at most 52 base58 characters; refuse long input before decoding.
    if peer_id.len() > 60 {
        return None;
    }
    let bytes = bs58::decode(peer_id).into_vec().ok()?;
    if bytes.len() != 38 || bytes[..6] != PREFIX {
        return None;
    }
    let mut key = [0u8; 32];
    key.copy_from_slice(&bytes[6..]);
    Some(key)
}

/// Whether `s` is a well-formed Ed25519 peer id.
pub fn is_peer_id(s: &str) -> bool {
    pubkey_from_peer_id(s).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_prefix() {
        for seed in 0u8..32 {
            let key = ed25519_dalek::SigningKey::from_bytes(&[seed; 32]).verifying_key();
            let id = peer_id_from_pubkey(key.as_bytes());
            assert!(id.starts_with("12D3KooW"), "{id}");
            assert_eq!(pubkey_from_peer_id(&id), Some(key.to_bytes()));
        }
    }

    #[test]
    fn known_vector() {
        // Both checked against libp2p-identity 0.3.1 `PublicKey::to_peer_id()`.
        let id = peer_id_from_pubkey(&[0u8; 32]);
        assert_eq!(id, "12D3KooW9pNAk8aiBuGVQtWRdbkLmo5qVL3e2h5UxbN2Nz9ttwiw");
        let key = ed25519_dalek::SigningKey::from_bytes(&[1u8; 32]).verifying_key();
        assert_eq!(
            peer_id_from_pubkey(key.as_bytes()),
            "12D3KooWK99VoVxNE7XzyBwXEzW7xhK7Gpv85r9F3V3fyKSUKPH5"
        );
    }

    #[test]
    fn rejects_other_forms() {
        assert_eq!(pubkey_from_peer_id(""), None);
        assert_eq!(pubkey_from_peer_id("system"), None);
        // An RSA/sha256-style id ("Qm…") is a 34-byte sha2 multihash.
        assert_eq!(
            pubkey_from_peer_id("QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N"),
            None
        );
        let mut id = peer_id_from_pubkey(&[7u8; 32]);
        id.push('1');
        assert_eq!(pubkey_from_peer_id(&id), None);
    }
}
