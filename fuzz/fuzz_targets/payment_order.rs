//! Payment orders: `PaymentOrder` from JSON (inside a run request) and `verify_order`, as a
//! host checks the order that comes with a job.
#![no_main]

use libfuzzer_sys::fuzz_target;
use offgrid_fuzz::{
    assert_envelope_round_trip, assert_json_round_trip, mode, peer, sign_bytes, Mode,
};
use offgrid_ledger::{payment, peer_id::is_peer_id, PaymentOrder};

fuzz_target!(|data: &[u8]| {
    let Some((m, rest)) = mode(data) else { return };
    let order: PaymentOrder = match m {
        Mode::Wire => match serde_json::from_slice(rest) {
            Ok(o) => o,
            Err(_) => return,
        },
        Mode::Signed => sign_bytes(rest),
    };
    assert_envelope_round_trip(&order);
    if let Ok(body) = payment::verify_order(&order) {
        assert_json_round_trip(&body);
        assert_eq!(body.domain, payment::ORDER_DOMAIN);
        assert!(body.price > 0);
        assert!(is_peer_id(&body.host));
        if m == Mode::Signed {
            assert_eq!(body.payer, peer());
        }
        // The cap on what it costs is exact when it fits.
        let wide = u128::from(body.max_units) * u128::from(body.price) / 1_000_000;
        assert_eq!(
            body.max_amount().map(u128::from),
            (wide <= u128::from(u64::MAX)).then_some(wide)
        );
    }
});
