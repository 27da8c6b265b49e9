//! Range-based set reconciliation of bundle ids, in the style of negentropy.
//!
//! Both sides hold a set of 32-byte ids. A message is a list of contiguous ranges that together
//! cover the whole id space; each range says either "skip" (already agreed), "here is my
//! fingerprint" or "here are all my ids". A side that gets a fingerprint that differs from its
//! own splits the range into [`SPLIT`] parts (or lists its ids when it holds few); a side that
//! gets a list of ids learns exactly what it lacks and answers with the ids the other lacks.
//! So equal sets agree in one round trip, and a difference of `d` ids among `n` costs
//! `O(d · log n)` range entries, never the whole set.
//!
//! Everything a peer sends is checked before use ([`ReconError`]): bounds must rise strictly
//! and end at [`Bound::End`], and a message holds at most [`MAX_RANGES`] ranges and
//! [`MAX_IDS`] ids. Callers stop after [`MAX_ROUNDS`] rounds.

use serde::{Deserialize, Serialize};

/// A bundle id: the BLAKE3 hash of its signed bytes.
pub type Id = [u8; 32];

/// Parts a differing range splits into.
pub const SPLIT: usize = 16;
/// A range holding at most this many of our ids is answered with the ids themselves.
pub const LIST_THRESHOLD: usize = 8;
/// Most ranges one message may hold.
pub const MAX_RANGES: usize = 256;
/// Most ids one message may hold (over all its ranges).
pub const MAX_IDS: usize = 1024;
/// Most messages one reconciliation may exchange before it is abandoned.
pub const MAX_ROUNDS: usize = 16;

/// The exclusive upper end of a range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Bound {
    /// Ids below this one.
    Id(#[serde(with = "crate::codec::hex_bytes")] Id),
    /// Every id (the last range of a message).
    End,
}

impl Bound {
    fn above(&self, id: &Id) -> bool {
        match self {
            Bound::Id(b) => id < b,
            Bound::End => true,
        }
    }
}

/// What a range says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Mode {
    /// Both sides agree on this range (or it needs nothing more).
    Skip,
    /// The sender's fingerprint of its ids in the range.
    Fingerprint(#[serde(with = "crate::codec::hex_bytes")] [u8; 16]),
    /// All the sender's ids in the range.
    List(#[serde(with = "crate::codec::hex_list")] Vec<Id>),
    /// The ids in the range the sender has and the receiver lacks (an answer to `List`).
    Have(#[serde(with = "crate::codec::hex_list")] Vec<Id>),
}

/// One range: from the previous range's bound (or zero) up to `upper`, exclusive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Range {
    /// Exclusive upper end.
    pub upper: Bound,
    /// What the sender says about the range.
    pub mode: Mode,
}

/// One reconciliation message.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Message {
    /// Ranges in rising order, covering the whole id space.
    pub ranges: Vec<Range>,
}

impl Message {
    /// True when nothing in it asks for an answer: reconciliation is over.
    pub fn is_done(&self) -> bool {
        self.ranges
            .iter()
            .all(|r| matches!(r.mode, Mode::Skip | Mode::Have(_)))
    }
}

/// A peer's reconciliation message that is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReconError {
    /// More than [`MAX_RANGES`] ranges.
    #[error("too many ranges")]
    TooManyRanges,
    /// More than [`MAX_IDS`] ids.
    #[error("too many ids")]
    TooManyIds,
    /// Bounds that do not rise strictly, or a last bound that is not `End`.
    #[error("ranges out of order or not covering the id space")]
    BadBounds,
    /// An id listed outside its range, or listed twice.
    #[error("id outside its range")]
    IdOutOfRange,
}

/// Fingerprint of a sorted slice of ids: BLAKE3 over their 256-bit sum and their count, as
/// negentropy does, so it is cheap to combine and does not depend on order.
pub fn fingerprint(ids: &[Id]) -> [u8; 16] {
    let mut sum = [0u8; 32];
    for id in ids {
        let mut carry = 0u16;
        for i in 0..32 {
            let s = u16::from(sum[i]) + u16::from(id[i]) + carry;
            sum[i] = s as u8; // low byte; the high byte is the carry
            carry = s >> 8;
        }
    }
    let mut h = blake3::Hasher::new();
    h.update(b"offgrid/bundle-fp/v1\n");
    h.update(&sum);
    h.update(&(ids.len() as u64).to_le_bytes());
    let mut out = [0u8; 16];
    out.copy_from_slice(&h.finalize().as_bytes()[..16]);
    out
}

/// The first message of a reconciliation, from a side holding `ours` (sorted, deduplicated).
pub fn initiate(ours: &[Id]) -> Message {
    Message {
        ranges: vec![summarise(ours, Bound::End)],
    }
}

fn summarise(ids: &[Id], upper: Bound) -> Range {
    let mode = if ids.len() <= LIST_THRESHOLD {
        Mode::List(ids.to_vec())
    } else {
        Mode::Fingerprint(fingerprint(ids))
    };
    Range { upper, mode }
}

/// Checks a peer's message before it is used.
pub fn validate(msg: &Message) -> Result<(), ReconError> {
    if msg.ranges.len() > MAX_RANGES {
        return Err(ReconError::TooManyRanges);
    }
    let mut ids = 0usize;
    let mut lower: Option<Id> = None;
    for (i, r) in msg.ranges.iter().enumerate() {
        let last = i + 1 == msg.ranges.len();
        match (r.upper, last) {
            (Bound::End, true) => {}
            (Bound::Id(b), false) => {
                if lower.is_some_and(|l| b <= l) {
                    return Err(ReconError::BadBounds);
                }
                lower = Some(b);
            }
            _ => return Err(ReconError::BadBounds),
        }
        if let Mode::List(l) | Mode::Have(l) = &r.mode {
            ids += l.len();
        }
    }
    if msg.ranges.is_empty() {
        return Err(ReconError::BadBounds);
    }
    if ids > MAX_IDS {
        return Err(ReconError::TooManyIds);
    }
    Ok(())
}

/// Answers a peer's message from a side holding `ours` (sorted, deduplicated). Returns the
/// answer and the ids this side learnt it lacks. An answer that [`Message::is_done`] ends the
/// exchange once the peer has read its `Have` lists.
pub fn respond(ours: &[Id], msg: &Message) -> Result<(Message, Vec<Id>), ReconError> {
    validate(msg)?;
    let mut out = Vec::new();
    let mut need = Vec::new();
    let mut lower: Option<Id> = None;
    let mut start = 0usize;
    let mut budget_ids = MAX_IDS;
    for r in &msg.ranges {
        let end = start + ours[start..].partition_point(|id| r.upper.above(id));
        let mine = &ours[start..end];
        let in_range = |id: &Id| lower.is_none_or(|l| *id >= l) && r.upper.above(id);
        match &r.mode {
            Mode::Skip => out.push(Range {
                upper: r.upper,
                mode: Mode::Skip,
            }),
            Mode::Have(theirs) => {
                if !theirs.iter().all(in_range) {
                    return Err(ReconError::IdOutOfRange);
                }
                need.extend(theirs.iter().filter(|id| mine.binary_search(id).is_err()));
                out.push(Range {
                    upper: r.upper,
                    mode: Mode::Skip,
                });
            }
            Mode::List(theirs) => {
                if !theirs.iter().all(in_range) {
                    return Err(ReconError::IdOutOfRange);
                }
                let mut sorted = theirs.clone();
                sorted.sort_unstable();
                sorted.dedup();
                need.extend(sorted.iter().filter(|id| mine.binary_search(id).is_err()));
                let have: Vec<Id> = mine
                    .iter()
                    .filter(|id| sorted.binary_search(id).is_err())
                    .take(budget_ids)
                    .copied()
                    .collect();
                budget_ids -= have.len();
                let mode = if have.is_empty() {
                    Mode::Skip
                } else {
                    Mode::Have(have)
                };
                out.push(Range {
                    upper: r.upper,
                    mode,
                });
            }
            Mode::Fingerprint(fp) => {
                if fingerprint(mine) == *fp {
                    out.push(Range {
                        upper: r.upper,
                        mode: Mode::Skip,
                    });
                } else if mine.len() <= LIST_THRESHOLD || mine.len() < SPLIT {
                    let keep = mine.len().min(budget_ids);
                    budget_ids -= keep;
                    out.push(Range {
                        upper: r.upper,
                        mode: Mode::List(mine[..keep].to_vec()),
                    });
                } else {
                    let chunk = mine.len().div_ceil(SPLIT);
                    let parts: Vec<&[Id]> = mine.chunks(chunk).collect();
                    for (i, part) in parts.iter().enumerate() {
                        let upper = match parts.get(i + 1) {
                            Some(next) => Bound::Id(next[0]),
                            None => r.upper,
                        };
                        // A list only while the message's id budget lasts; past it a
                        // fingerprint, which the peer answers with its list next round.
                        let mode = if part.len() <= LIST_THRESHOLD && part.len() <= budget_ids {
                            budget_ids -= part.len();
                            Mode::List(part.to_vec())
                        } else {
                            Mode::Fingerprint(fingerprint(part))
                        };
                        out.push(Range { upper, mode });
                    }
                }
            }
        }
        if let Bound::Id(b) = r.upper {
            lower = Some(b);
        }
        start = end;
    }
    // Merge neighbouring skips so a long agreement costs one range.
    let mut merged: Vec<Range> = Vec::with_capacity(out.len());
    for r in out {
        match merged.last_mut() {
            Some(prev) if prev.mode == Mode::Skip && r.mode == Mode::Skip => prev.upper = r.upper,
            _ => merged.push(r),
        }
    }
    merged.truncate(MAX_RANGES);
    if let Some(last) = merged.last_mut() {
        last.upper = Bound::End;
    }
    need.sort_unstable();
    need.dedup();
    Ok((Message { ranges: merged }, need))
}

#[cfg(test)]
#[path = "recon_tests.rs"]
mod tests;
