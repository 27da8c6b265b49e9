//! Host announcements: `SignedAnnouncement::from_wire` and `verify` (the announce gossip
//! topic, the node's `peers::announce`).
//!
//! Input: the first byte picks the mode (even: the wire message; odd: announcement JSON
//! bytes that the fuzz key, as a libp2p Ed25519 keypair, signs here); the rest is the record.
//! Invariants: the wire form round-trips; a verified announcement names its signer and
//! round-trips through JSON.
#![no_main]

use std::sync::OnceLock;

use base64::{engine::general_purpose::STANDARD as B64, Engine as _};
use libfuzzer_sys::fuzz_target;
use libp2p::identity::Keypair;
use offgrid_behaviours::announce::{AnnounceError, Announcement, SignedAnnouncement, MAX_BYTES};
use offgrid_ledger::Domain as _;
use offgrid_fuzz::{assert_json_round_trip, mode, Mode, KEY_SEED};

fn keypair() -> &'static Keypair {
    static KEY: OnceLock<Keypair> = OnceLock::new();
    KEY.get_or_init(|| {
        Keypair::ed25519_from_bytes(KEY_SEED).expect("32 bytes are an Ed25519 secret key")
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((m, rest)) = mode(data) else { return };
    let signed = match m {
        Mode::Wire => match SignedAnnouncement::from_wire(rest) {
            Ok(s) => s,
            Err(e) => {
                if rest.len() > MAX_BYTES {
                    assert_eq!(e, AnnounceError::TooLarge(rest.len()));
                }
                return;
            }
        },
        Mode::Signed => {
            let k = keypair();
            SignedAnnouncement {
                signed: B64.encode(rest),
                sig: B64.encode(
                    k.sign(&offgrid_ledger::signed_message(Announcement::TAG, rest))
                        .expect("Ed25519 signing cannot fail"),
                ),
                public_key: B64.encode(k.public().encode_protobuf()),
            }
        }
    };
    let wire = signed.to_wire();
    if wire.len() <= MAX_BYTES {
        assert_eq!(SignedAnnouncement::from_wire(&wire).as_ref(), Ok(&signed));
    }
    match signed.verify() {
        Ok((peer, ann)) => {
            assert_eq!(ann.node_id, peer.to_string());
            if m == Mode::Signed {
                assert_eq!(peer, keypair().public().to_peer_id());
            }
            assert_json_round_trip(&ann);
        }
        Err(e) => {
            if m == Mode::Signed {
                assert!(
                    !matches!(e, AnnounceError::BadSignature),
                    "an honest signature failed"
                );
            }
        }
    }
});
