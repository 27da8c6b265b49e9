//! Bluetooth LE input: advertising data (`parse_advertisement`, then the Offgrid beacon and
//! device-name endpoint in it, `decode_name`), and GATT fragments (`chunk::Reassembler`).
//!
//! Input: the first byte picks the mode (even: advertising data; odd: a sequence of GATT
//! fragments, each a length byte then that many bytes, with an ATT MTU from the next byte).
//! Invariants: a decoded device name re-encodes to itself; advertisements built from what
//! was parsed parse back to it; the reassembler never buffers more than its cap, and a
//! message split at any MTU reassembles whole.
#![no_main]

use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use offgrid_transports::ble::{
    build_advertisement,
    chunk::{split_message, Reassembler},
    decode_name, encode_name, parse_advertisement,
};

const MAX_MESSAGE: usize = 4096;

fn advertisement(data: &[u8]) {
    let Ok(ad) = parse_advertisement(data) else {
        return;
    };
    let _ = ad.is_offgrid();
    if let Some(name) = &ad.local_name {
        if let Ok(endpoint) = decode_name(name) {
            assert_eq!(
                encode_name(&endpoint).as_deref(),
                Ok(name.as_str()),
                "name not canonical"
            );
            assert_eq!(ad.offgrid_endpoint(), Some(endpoint));
        }
    }
    let beacon = ad.offgrid_beacon();
    if let Ok(built) = build_advertisement(ad.local_name.as_deref(), beacon) {
        let back = parse_advertisement(&built).expect("a built advertisement parses");
        assert_eq!(back.local_name, ad.local_name);
        assert_eq!(back.offgrid_beacon(), beacon);
        assert!(back.is_offgrid());
    }
}

fn fragments(data: &[u8]) {
    let Some((&mtu, mut rest)) = data.split_first() else {
        return;
    };
    let t0 = Instant::now();
    let mut r = Reassembler::new(MAX_MESSAGE, Duration::from_secs(5));
    let mut tick = 0u64;
    while let Some((&len, tail)) = rest.split_first() {
        let Some((frag, tail)) = tail.split_at_checked(usize::from(len).min(tail.len())) else {
            return;
        };
        rest = tail;
        tick += 1;
        if let Ok(Some(msg)) = r.push(frag, t0 + Duration::from_millis(tick * 100)) {
            assert!(msg.len() <= MAX_MESSAGE);
        }
        assert!(r.buffered() <= MAX_MESSAGE, "buffer over its cap");
    }
    // Whatever message the stream's tail is, split at this MTU it reassembles whole.
    let msg = &data[..data.len().min(MAX_MESSAGE)];
    if let Ok(frags) = split_message(mtu, msg, u16::from(mtu).max(23)) {
        let mut r = Reassembler::new(MAX_MESSAGE, Duration::from_secs(5));
        let mut out = None;
        for f in &frags {
            out = r.push(f, t0).expect("a split message reassembles");
        }
        assert_eq!(out.as_deref(), Some(msg), "reassembled message differs");
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&m, rest)) = data.split_first() else {
        return;
    };
    if m & 1 == 0 {
        advertisement(rest);
    } else {
        fragments(rest);
    }
});
