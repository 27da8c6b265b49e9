//! ARQ packets (`Packet::decode`), as the radio demux and ARQ streams read every datagram
//! from a link. A packet that decodes must re-encode to exactly the input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use offgrid_transports::frag::wire::Packet;

fuzz_target!(|data: &[u8]| {
    if let Some(p) = Packet::decode(data) {
        assert_eq!(p.encode(), data, "decode→encode is not the identity");
        assert_eq!(Packet::decode(&p.encode()), Some(p));
    }
});
