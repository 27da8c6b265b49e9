//! KISS frame encoder and streaming decoder (pure, no I/O).

/// Frame end: starts and ends every frame.
pub const FEND: u8 = 0xC0;
/// Frame escape.
pub const FESC: u8 = 0xDB;
/// Transposed FEND: `FESC TFEND` stands for a data byte 0xC0.
pub const TFEND: u8 = 0xDC;
/// Transposed FESC: `FESC TFESC` stands for a data byte 0xDB.
pub const TFESC: u8 = 0xDD;
/// The command nibble of a data frame.
pub const CMD_DATA: u8 = 0x00;

/// One decoded KISS frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KissFrame {
    /// TNC port, 0..=15 (high nibble of the type byte).
    pub port: u8,
    /// Command, 0..=15 (low nibble of the type byte); [`CMD_DATA`] for data.
    pub command: u8,
    /// The unescaped frame contents after the type byte.
    pub data: Vec<u8>,
}

/// Encodes a frame with the given port and command (each masked to 4 bits).
pub fn encode_frame(port: u8, command: u8, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + data.len() / 16 + 4);
    out.push(FEND);
    push_escaped(&mut out, ((port & 0x0f) << 4) | (command & 0x0f));
    for &b in data {
        push_escaped(&mut out, b);
    }
    out.push(FEND);
    out
}

/// Encodes a data frame for port 0.
pub fn encode_data(data: &[u8]) -> Vec<u8> {
    encode_frame(0, CMD_DATA, data)
}

fn push_escaped(out: &mut Vec<u8>, b: u8) {
    match b {
        FEND => out.extend_from_slice(&[FESC, TFEND]),
        FESC => out.extend_from_slice(&[FESC, TFESC]),
        _ => out.push(b),
    }
}

/// What the decoder threw away.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DecoderStats {
    /// Frames decoded.
    pub frames: u64,
    /// Frames dropped for exceeding the size cap.
    pub oversize: u64,
    /// Frames dropped for an invalid escape sequence.
    pub bad_escape: u64,
    /// Bytes discarded outside any frame (before the first FEND).
    pub garbage_bytes: u64,
}

impl DecoderStats {
    /// Frames dropped for any reason.
    pub fn dropped(&self) -> u64 {
        self.oversize + self.bad_escape
    }
}

/// A streaming KISS decoder: feed it bytes as they arrive, in any split.
///
/// Bytes before the first FEND are discarded (we may start listening mid-frame). Empty frames
/// (back-to-back FENDs, used by TNCs as idle fill) are skipped. A frame whose contents exceed
/// `max_frame` bytes, or that contains an invalid escape, is dropped and counted; its memory
/// use never exceeds the cap.
#[derive(Clone, Debug)]
pub struct KissDecoder {
    max_frame: usize,
    buf: Vec<u8>,
    in_frame: bool,
    escape: bool,
    oversize: bool,
    bad_escape: bool,
    stats: DecoderStats,
}

impl KissDecoder {
    /// A decoder that accepts frames of at most `max_frame` data bytes (after the type byte).
    pub fn new(max_frame: usize) -> Self {
        KissDecoder {
            max_frame,
            buf: Vec::new(),
            in_frame: false,
            escape: false,
            oversize: false,
            bad_escape: false,
            stats: DecoderStats::default(),
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> DecoderStats {
        self.stats
    }

    fn reset(&mut self) {
        self.buf.clear();
        self.escape = false;
        self.oversize = false;
        self.bad_escape = false;
    }

    fn end_frame(&mut self) -> Option<KissFrame> {
        let frame = if self.oversize {
            self.stats.oversize += 1;
            None
        } else if self.bad_escape || self.escape {
            self.stats.bad_escape += 1;
            None
        } else if let Some((&ty, data)) = self.buf.split_first() {
            self.stats.frames += 1;
            Some(KissFrame {
                port: ty >> 4,
                command: ty & 0x0f,
                data: data.to_vec(),
            })
        } else {
            None
        };
        self.reset();
        frame
    }

    /// Consumes one byte; returns a frame when this byte completes one.
    pub fn push_byte(&mut self, b: u8) -> Option<KissFrame> {
        if b == FEND {
            let frame = if self.in_frame {
                self.end_frame()
            } else {
                None
            };
            self.in_frame = true;
            return frame;
        }
        if !self.in_frame {
            self.stats.garbage_bytes += 1;
            return None;
        }
        let byte = if self.escape {
            self.escape = false;
            match b {
                TFEND => FEND,
                TFESC => FESC,
                _ => {
                    self.bad_escape = true;
                    return None;
                }
            }
        } else if b == FESC {
            self.escape = true;
            return None;
        } else {
            b
        };
        // +1 for the type byte.
        if self.buf.len() > self.max_frame {
            self.oversize = true;
        } else {
            self.buf.push(byte);
        }
        None
    }

    /// Consumes a chunk of bytes, appending every completed frame to `out`.
    pub fn push(&mut self, bytes: &[u8], out: &mut Vec<KissFrame>) {
        out.extend(bytes.iter().filter_map(|&b| self.push_byte(b)));
    }

    /// Consumes a chunk of bytes and returns the completed frames.
    pub fn decode(&mut self, bytes: &[u8]) -> Vec<KissFrame> {
        let mut out = Vec::new();
        self.push(bytes, &mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn escapes_exactly() {
        assert_eq!(
            encode_data(&[0x01, FEND, FESC, TFEND, TFESC]),
            vec![FEND, 0x00, 0x01, FESC, TFEND, FESC, TFESC, TFEND, TFESC, FEND]
        );
        assert_eq!(encode_frame(3, 0x1f, b"x"), vec![FEND, 0x3f, b'x', FEND]);
        // Port 12 makes the type byte 0xC0 itself: it must be escaped too.
        assert_eq!(encode_frame(12, 0, b""), vec![FEND, FESC, TFEND, FEND]);
        let mut d = KissDecoder::new(10);
        let f = d.decode(&encode_frame(12, 0, b"ab"));
        assert_eq!(f[0].port, 12);
    }

    #[test]
    fn skips_garbage_empty_frames_and_bad_escapes() {
        let mut d = KissDecoder::new(100);
        let mut stream = b"garbage".to_vec();
        stream.extend_from_slice(&[FEND, FEND, FEND]); // idle fill
        stream.extend_from_slice(&[0x00, b'a', FESC, 0x42, b'b', FEND]); // bad escape
        stream.extend_from_slice(&encode_data(b"ok"));
        stream.extend_from_slice(&[FEND, 0x00, FESC, FEND]); // escape cut short by FEND
        stream.extend_from_slice(&encode_frame(1, 6, b"hw"));
        let frames = d.decode(&stream);
        assert_eq!(
            frames,
            vec![
                KissFrame {
                    port: 0,
                    command: 0,
                    data: b"ok".to_vec()
                },
                KissFrame {
                    port: 1,
                    command: 6,
                    data: b"hw".to_vec()
                },
            ]
        );
        let s = d.stats();
        assert_eq!((s.frames, s.bad_escape, s.garbage_bytes), (2, 2, 7));
    }

    #[test]
    fn oversize_frames_are_dropped_and_counted() {
        let mut d = KissDecoder::new(4);
        let mut stream = encode_data(b"12345");
        stream.extend_from_slice(&encode_data(b"1234"));
        stream.extend_from_slice(&encode_data(&[0u8; 10_000]));
        let frames = d.decode(&stream);
        assert_eq!(frames.len(), 1);
        assert_eq!(frames[0].data, b"1234");
        assert_eq!(d.stats().oversize, 2);
        assert!(d.buf.capacity() < 64, "buffer stays bounded");
    }

    fn split_feed(d: &mut KissDecoder, stream: &[u8], cuts: &[usize]) -> Vec<KissFrame> {
        let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (stream.len() + 1)).collect();
        cuts.sort_unstable();
        let mut out = Vec::new();
        let mut prev = 0;
        for c in cuts.into_iter().chain([stream.len()]) {
            d.push(&stream[prev..c], &mut out);
            prev = c;
        }
        out
    }

    proptest! {
        #[test]
        fn round_trips_any_frames_in_any_split(
            frames in prop::collection::vec(
                (0u8..16, prop::collection::vec(any::<u8>(), 0..300)), 1..8),
            cuts in prop::collection::vec(any::<usize>(), 0..20),
        ) {
            let mut stream = Vec::new();
            for (port, data) in &frames {
                stream.extend_from_slice(&encode_frame(*port, CMD_DATA, data));
            }
            let mut d = KissDecoder::new(300);
            let got = split_feed(&mut d, &stream, &cuts);
            // A frame with neither type nor data can't exist: the type byte is always there.
            prop_assert_eq!(got.len(), frames.len());
            for (g, (port, data)) in got.iter().zip(&frames) {
                prop_assert_eq!(g.port, *port);
                prop_assert_eq!(&g.data, data);
            }
        }

        #[test]
        fn every_byte_value_round_trips(start in any::<u8>()) {
            let data: Vec<u8> = (0..=255u8).map(|b| b.wrapping_add(start)).collect();
            let mut d = KissDecoder::new(256);
            let got = d.decode(&encode_data(&data));
            prop_assert_eq!(got.len(), 1);
            prop_assert_eq!(&got[0].data, &data);
        }

        #[test]
        fn garbage_never_panics_and_recovers(
            garbage in prop::collection::vec(any::<u8>(), 0..2000),
            max in 0usize..300,
        ) {
            let mut d = KissDecoder::new(max);
            let frames = d.decode(&garbage);
            for f in &frames {
                prop_assert!(f.data.len() <= max);
            }
            // After any garbage, a FEND resynchronises and the next good frame decodes.
            let mut tail = vec![FEND];
            tail.extend_from_slice(&encode_data(&b"resync"[..max.min(6)]));
            let got = d.decode(&tail);
            prop_assert_eq!(got.last().map(|f| &f.data[..]), Some(&b"resync"[..max.min(6)]));
        }
    }
}
