//! The compact radio profile of the auction protocol (`offgrid_node::radio::wire`):
//! `decode_request` as a radio host reads a broker's message, `decode_response` as a
//! broker reads a host's answer (rebuilding a compact `DONE`'s receipt from the run it sent).
//!
//! Needs the whole node: build with `--features node` (see the README).
//!
//! Input: the first byte picks what is read (0 a request; 1 a response to a run, with its
//! receipt context; 2 a response without one); the rest is the message.
//! Invariant: whatever decodes re-encodes and decodes to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use offgrid_behaviours::auction::{Request, RunRequest};
use offgrid_fuzz::{key, peer};
use offgrid_node::radio::wire::{
    decode_request, decode_response, encode_request, encode_response, ReceiptContext,
};

const NOW_MS: u64 = 1_700_000_000_000;

fn context() -> ReceiptContext {
    ReceiptContext {
        run: RunRequest {
            job_id: "0b6e4a52-4a8e-4b4e-9d59-1f8ac1f2d0a7".into(),
            job_type: "echo".into(),
            units: 250_000,
            payload: "ping".into(),
            price: 30_000,
            deadline_ms: NOW_MS + 30_000,
            order: None,
        },
        broker_id: "broker".into(),
        cluster_id: "c1".into(),
        host_id: peer().into(),
        host_key: key().verifying_key().to_bytes(),
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&m, rest)) = data.split_first() else { return };
    match m % 3 {
        0 => {
            let Ok(req) = decode_request(rest, NOW_MS) else { return };
            let enc = encode_request(&req, NOW_MS);
            assert_eq!(decode_request(&enc, NOW_MS), Ok(req), "request round trip");
        }
        mode => {
            let ctx = context();
            let ctx = (mode == 1).then_some(&ctx);
            let Ok(resp) = decode_response(rest, ctx, NOW_MS) else { return };
            let run = Request::Run(context().run);
            let enc = encode_response(&resp, &run, NOW_MS);
            assert_eq!(decode_response(&enc, ctx, NOW_MS), Ok(resp), "response round trip");
        }
    }
});
