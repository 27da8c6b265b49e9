//! Storage manifests: `SignedManifest` from JSON and `verify` (which decodes and
//! `validate`s the manifest), as a host keeps a `StoreManifest` request and a reader takes
//! a `FetchManifest` answer.
//!
//! Input: the first byte picks the mode (even: a signed manifest as JSON; odd: manifest
//! JSON bytes that the fuzz key signs here); the rest is the record.
//! Invariants: the wire form round-trips; a verified manifest is signed by its owner key,
//! validates, round-trips through JSON, and answers `wrapped_key_for` its own recipients.
#![no_main]

use ed25519_dalek::Signer as _;
use libfuzzer_sys::fuzz_target;
use offgrid_fuzz::{assert_json_round_trip, key, mode, Mode};
use offgrid_storage::manifest::SignedManifest;

fuzz_target!(|data: &[u8]| {
    let Some((m, rest)) = mode(data) else { return };
    let signed = match m {
        Mode::Wire => match serde_json::from_slice::<SignedManifest>(rest) {
            Ok(s) => s,
            Err(_) => return,
        },
        Mode::Signed => SignedManifest {
            signed: rest.to_vec(),
            sig: key()
                .sign(&offgrid_storage::signed_message(
                    offgrid_storage::manifest::MANIFEST_TAG,
                    rest,
                ))
                .to_bytes(),
            pubkey: key().verifying_key().to_bytes(),
        },
    };
    assert_json_round_trip(&signed);
    let Ok(manifest) = signed.verify() else {
        return;
    };
    assert_eq!(manifest.owner_pubkey, hex::encode(signed.pubkey));
    assert!(manifest.validate().is_ok());
    assert_json_round_trip(&manifest);
    assert!(manifest.asset_id_bytes().is_ok());
    for w in &manifest.wrapped_keys {
        // Recipients are matched as lowercase hex, which is how keys are written.
        if let Ok(Ok(r)) = hex::decode(&w.recipient).map(<[u8; 32]>::try_from) {
            if hex::encode(r) == w.recipient {
                assert!(manifest.wrapped_key_for(&r).is_some());
            }
        }
    }
});
