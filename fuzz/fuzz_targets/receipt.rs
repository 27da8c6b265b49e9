//! Receipts: `SignedReceipt` from JSON, `verify_receipt`, and the claim it makes on its
//! embedded payment order (`payment::claim`), as the broker checks a host's receipt and a
//! witness checks a settlement's claim.
#![no_main]

use libfuzzer_sys::fuzz_target;
use offgrid_fuzz::{assert_envelope_round_trip, assert_json_round_trip, mode, sign_bytes, Mode};
use offgrid_ledger::{payment, receipt::MICRO, verify_receipt, SignedReceipt};

fuzz_target!(|data: &[u8]| {
    let Some((m, rest)) = mode(data) else { return };
    let receipt: SignedReceipt = match m {
        Mode::Wire => match serde_json::from_slice(rest) {
            Ok(r) => r,
            Err(_) => return,
        },
        Mode::Signed => sign_bytes(rest),
    };
    assert_envelope_round_trip(&receipt);
    let verified = verify_receipt(&receipt);
    if let Ok(body) = &verified {
        assert_json_round_trip(body);
        // The amount is exact when it fits and saturates otherwise.
        let wide = u128::from(body.units) * u128::from(body.price) / u128::from(MICRO);
        assert_eq!(
            body.checked_amount_due().map(u128::from),
            (wide <= u128::from(u64::MAX)).then_some(wide)
        );
    }
    match payment::claim(&receipt) {
        Ok(c) => {
            let body = verified.expect("a valid claim has a valid receipt");
            let order = body.order.expect("a valid claim has an order");
            assert_eq!(c.order_id, order.id());
            assert!(c.amount > 0);
            assert_eq!(Some(c.amount), payment::amount_due(body.units, body.price));
            let o = payment::verify_order(&order).expect("a valid claim has a valid order");
            assert!(body.units <= o.max_units && body.price <= o.price);
            assert_eq!(c.host, body.node_id);
        }
        Err(_) => {}
    }
});
