//! Splitting link frames into ATT-sized fragments, and putting them back together.
//!
//! Each fragment starts with a 2-byte header:
//!
//! ```text
//! byte 0: message id (wraps at 256)
//! byte 1: bit 7 MORE (more fragments follow), bits 0-6 fragment index (0..=127)
//! ```
//!
//! followed by up to `ATT_MTU − 3 − 2` bytes of the message (3 bytes are the ATT opcode and
//! handle). GATT writes and notifications on one connection arrive in order and without loss
//! when the link is up, so the reassembler accepts only the next expected fragment: a gap, a
//! new message starting mid-way or a stale partial message (older than the timeout) discards
//! what it has. Its buffer never exceeds `max_message` bytes.

use std::time::{Duration, Instant};

/// Bytes of header per fragment.
pub const CHUNK_HEADER: usize = 2;
/// ATT opcode + handle bytes in every write or notification.
const ATT_OVERHEAD: usize = 3;
/// The smallest ATT MTU (Bluetooth Core spec, LE).
pub const MIN_ATT_MTU: u16 = 23;
const MORE: u8 = 0x80;
const MAX_FRAGMENTS: usize = 128;

/// Why a message could not be split or a fragment was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChunkError {
    /// The ATT MTU is below the Bluetooth minimum of 23.
    #[error("ATT MTU {0} is below the minimum of 23")]
    MtuTooSmall(u16),
    /// The message needs more than 128 fragments at this MTU.
    #[error("message of {len} bytes needs more than 128 fragments of {per_fragment}")]
    MessageTooLarge {
        /// Message length.
        len: usize,
        /// Payload bytes per fragment.
        per_fragment: usize,
    },
    /// A fragment shorter than its header.
    #[error("fragment shorter than its header")]
    Runt,
    /// A fragment that does not continue the message being assembled.
    #[error("fragment {index} of message {id} is out of sequence")]
    OutOfSequence {
        /// Message id in the fragment.
        id: u8,
        /// Fragment index.
        index: u8,
    },
    /// The reassembled message would exceed the buffer.
    #[error("reassembled message exceeds {0} bytes")]
    Oversize(usize),
}

/// Payload bytes per fragment at `att_mtu`.
pub fn fragment_capacity(att_mtu: u16) -> Result<usize, ChunkError> {
    if att_mtu < MIN_ATT_MTU {
        return Err(ChunkError::MtuTooSmall(att_mtu));
    }
    Ok(usize::from(att_mtu) - ATT_OVERHEAD - CHUNK_HEADER)
}

/// The largest message that fits 128 fragments at `att_mtu`.
pub fn max_message_len(att_mtu: u16) -> Result<usize, ChunkError> {
    Ok(fragment_capacity(att_mtu)? * MAX_FRAGMENTS)
}

/// Splits `message` into fragments for one ATT MTU, tagged with message id `id`.
/// An empty message is one empty fragment.
pub fn split_message(id: u8, message: &[u8], att_mtu: u16) -> Result<Vec<Vec<u8>>, ChunkError> {
    let per = fragment_capacity(att_mtu)?;
    let count = message.len().div_ceil(per).max(1);
    if count > MAX_FRAGMENTS {
        return Err(ChunkError::MessageTooLarge {
            len: message.len(),
            per_fragment: per,
        });
    }
    let mut out = Vec::with_capacity(count);
    for i in 0..count {
        let part = &message[(i * per).min(message.len())..((i + 1) * per).min(message.len())];
        let more = if i + 1 < count { MORE } else { 0 };
        let mut frag = Vec::with_capacity(CHUNK_HEADER + part.len());
        // i < MAX_FRAGMENTS = 128, so it fits in 7 bits.
        frag.extend_from_slice(&[id, more | i as u8]);
        frag.extend_from_slice(part);
        out.push(frag);
    }
    Ok(out)
}

/// Splits messages with consecutive message ids.
#[derive(Clone, Debug)]
pub struct Chunker {
    att_mtu: u16,
    next_id: u8,
}

impl Chunker {
    /// A chunker for a connection with this ATT MTU.
    pub fn new(att_mtu: u16) -> Result<Self, ChunkError> {
        fragment_capacity(att_mtu)?;
        Ok(Chunker {
            att_mtu,
            next_id: 0,
        })
    }

    /// Updates the ATT MTU after an exchange.
    pub fn set_att_mtu(&mut self, att_mtu: u16) -> Result<(), ChunkError> {
        fragment_capacity(att_mtu)?;
        self.att_mtu = att_mtu;
        Ok(())
    }

    /// Splits the next message.
    pub fn split(&mut self, message: &[u8]) -> Result<Vec<Vec<u8>>, ChunkError> {
        let frags = split_message(self.next_id, message, self.att_mtu)?;
        self.next_id = self.next_id.wrapping_add(1);
        Ok(frags)
    }
}

/// What the reassembler has thrown away.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReassemblyStats {
    /// Messages completed.
    pub messages: u64,
    /// Partial messages discarded (gap, interruption, oversize).
    pub discarded: u64,
    /// Partial messages discarded because they went stale.
    pub timed_out: u64,
}

#[derive(Clone, Debug)]
struct Partial {
    id: u8,
    next_index: u8,
    buf: Vec<u8>,
    started: Instant,
}

/// Reassembles the fragments of one connection.
#[derive(Clone, Debug)]
pub struct Reassembler {
    max_message: usize,
    timeout: Duration,
    partial: Option<Partial>,
    stats: ReassemblyStats,
}

impl Reassembler {
    /// Accepts messages up to `max_message` bytes whose fragments arrive within `timeout` of
    /// the first.
    pub fn new(max_message: usize, timeout: Duration) -> Self {
        Reassembler {
            max_message,
            timeout,
            partial: None,
            stats: ReassemblyStats::default(),
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> ReassemblyStats {
        self.stats
    }

    /// Bytes currently buffered.
    pub fn buffered(&self) -> usize {
        self.partial.as_ref().map_or(0, |p| p.buf.len())
    }

    fn discard(&mut self) {
        if self.partial.take().is_some() {
            self.stats.discarded += 1;
        }
    }

    /// Drops a partial message older than the timeout; call it from a timer too, so a
    /// stalled sender does not pin the buffer.
    pub fn expire(&mut self, now: Instant) {
        if let Some(p) = &self.partial {
            if now.saturating_duration_since(p.started) > self.timeout {
                self.partial = None;
                self.stats.timed_out += 1;
            }
        }
    }

    /// Takes one fragment received at `now`; returns a message when it completes one.
    pub fn push(&mut self, fragment: &[u8], now: Instant) -> Result<Option<Vec<u8>>, ChunkError> {
        self.expire(now);
        let [id, flags, ref data @ ..] = *fragment else {
            return Err(ChunkError::Runt);
        };
        let index = flags & !MORE;
        let more = flags & MORE != 0;
        if index == 0 {
            self.discard(); // a new message interrupts any unfinished one
            self.partial = Some(Partial {
                id,
                next_index: 0,
                buf: Vec::new(),
                started: now,
            });
        }
        let Some(p) = self
            .partial
            .as_mut()
            .filter(|p| p.id == id && p.next_index == index)
        else {
            self.discard();
            return Err(ChunkError::OutOfSequence { id, index });
        };
        if p.buf.len() + data.len() > self.max_message {
            self.discard();
            return Err(ChunkError::Oversize(self.max_message));
        }
        p.buf.extend_from_slice(data);
        p.next_index = p.next_index.wrapping_add(1);
        if more {
            if usize::from(p.next_index) >= MAX_FRAGMENTS {
                self.discard();
                return Err(ChunkError::OutOfSequence { id, index });
            }
            return Ok(None);
        }
        let done = self.partial.take().map(|p| p.buf);
        self.stats.messages += 1;
        Ok(done)
    }
}
