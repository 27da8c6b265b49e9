//! The `ledger_sync` request-response protocol: requests and responses as the node's
//! size-capped CBOR codec (`offgrid_behaviours::capped_codec` with `ledger_sync`'s caps) reads
//! them from a peer's stream.
//!
//! Input: the first byte picks what is read (even: a request; odd: a response); the rest is
//! the stream's bytes.
//! Invariant: whatever decodes re-encodes and decodes to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use offgrid_behaviours::{
    capped_codec,
    ledger_sync::{Request, Response, MAX_REQUEST_BYTES, MAX_RESPONSE_BYTES, PROTOCOL_NAME},
};
use offgrid_fuzz::{codec_request, codec_response};

fuzz_target!(|data: &[u8]| {
    let Some((&m, rest)) = data.split_first() else {
        return;
    };
    let mut codec = capped_codec::<Request, Response>(MAX_REQUEST_BYTES, MAX_RESPONSE_BYTES);
    if m & 1 == 0 {
        let _ = codec_request(&mut codec, &PROTOCOL_NAME, rest);
    } else {
        let _ = codec_response(&mut codec, &PROTOCOL_NAME, rest);
    }
});
