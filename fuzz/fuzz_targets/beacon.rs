//! Radio beacons: `Beacon::decode_verified` and `BeaconFilter::accept`, as a radio node
//! reads every beacon frame it hears.
//!
//! Input: the first byte picks the mode (even: a frame as heard; odd: a frame made here
//! from the rest — magic, version, the rest's first byte as flags, the fuzz key, the rest
//! of the rest as the body, and the fuzz key's signature — so the fields behind the
//! signature are reached).
//! Invariants: the filter accepts exactly the frames that decode and verify, and refuses a
//! replay; a decoded beacon re-encodes to exactly the frame (the encoding is canonical).
#![no_main]

use ed25519_dalek::Signer as _;
use libfuzzer_sys::fuzz_target;
use offgrid_fuzz::{key, mode, Mode};
use offgrid_transports::beacon::{
    Beacon, BeaconError, BeaconFilter, FilterError, MAGIC, SIGNING_DOMAIN, VERSION,
};

fuzz_target!(|data: &[u8]| {
    let Some((m, rest)) = mode(data) else { return };
    let frame = match m {
        Mode::Wire => rest.to_vec(),
        Mode::Signed => {
            let Some((&flags, fields)) = rest.split_first() else {
                return;
            };
            let mut body = vec![MAGIC, VERSION, flags];
            body.extend_from_slice(key().verifying_key().as_bytes());
            body.extend_from_slice(fields);
            let mut msg = SIGNING_DOMAIN.to_vec();
            msg.extend_from_slice(&body);
            body.extend_from_slice(&key().sign(&msg).to_bytes());
            body
        }
    };
    let decoded = Beacon::decode_verified(&frame);
    let mut filter = BeaconFilter::new(4);
    let accepted = filter.accept(&frame);
    assert_eq!(
        decoded.as_ref().ok(),
        accepted.as_ref().ok(),
        "filter and decoder disagree"
    );
    let Ok(beacon) = decoded else {
        if m == Mode::Signed {
            assert!(
                !matches!(
                    decoded,
                    Err(BeaconError::BadSignature | BeaconError::BadPublicKey)
                ),
                "an honest frame failed its signature: {decoded:?}"
            );
        }
        return;
    };
    assert!(matches!(
        filter.accept(&frame),
        Err(FilterError::Replayed { .. })
    ));
    assert_eq!(filter.highest_seq(&beacon.public_key), Some(beacon.seq));
    assert_eq!(beacon.encoded_len(), frame.len());
    if beacon.public_key == key().verifying_key().to_bytes() {
        let again = beacon.encode_signed(key()).expect("the beacon's own key");
        assert_eq!(again, frame, "decode→encode is not the identity");
    }
});
