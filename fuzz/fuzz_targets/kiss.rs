//! KISS framing: `KissDecoder` (the serial LoRa link's reader), fed a TNC's byte stream.
//!
//! Input: byte 0 sets the frame cap (`max_frame`), byte 1 the chunk size the stream arrives
//! in; the rest is the stream.
//! Invariants: frames do not depend on how the stream is split; none exceeds the cap; the
//! counters match; the frames re-encoded with `encode_frame` decode to the same frames.
#![no_main]

use libfuzzer_sys::fuzz_target;
use offgrid_transports::kiss::codec::{encode_frame, KissDecoder};

fuzz_target!(|data: &[u8]| {
    let [cap, chunk, stream @ ..] = data else {
        return;
    };
    let max_frame = usize::from(*cap);
    let chunk = usize::from(*chunk).max(1);

    let whole = KissDecoder::new(max_frame).decode(stream);

    let mut d = KissDecoder::new(max_frame);
    let bytewise: Vec<_> = stream.iter().filter_map(|&b| d.push_byte(b)).collect();
    assert_eq!(bytewise, whole, "byte-by-byte decoding differs");

    let mut d = KissDecoder::new(max_frame);
    let mut chunked = Vec::new();
    for c in stream.chunks(chunk) {
        d.push(c, &mut chunked);
    }
    assert_eq!(chunked, whole, "chunked decoding differs");
    let stats = d.stats();
    assert_eq!(stats.frames, whole.len() as u64);

    let mut again = Vec::new();
    for f in &whole {
        assert!(
            f.data.len() <= max_frame,
            "frame of {} bytes over the cap {max_frame}",
            f.data.len()
        );
        assert!(f.port <= 15 && f.command <= 15);
        again.extend(encode_frame(f.port, f.command, &f.data));
    }
    assert_eq!(
        KissDecoder::new(max_frame).decode(&again),
        whole,
        "re-encoded frames differ"
    );
});
