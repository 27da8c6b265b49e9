//! Range and stream reads: the plaintext of an asset, or of one byte range of it, as a
//! stream of chunks in order (`GET /storage/assets/{id}/content`, `offgrid get ASSET -`,
//! `offgrid get ASSET --range START-END`).
//!
//! Only the segments the range covers are fetched, each verified (shard hashes, then the
//! segment's AEAD tag); a whole-file read also checks the whole-file BLAKE3 before it hands
//! over the last chunk, so a reader that gets every byte got the right ones. Memory is
//! bounded per stream: [`STREAM_BUDGET`] of shards asked ahead plus two decoded segments,
//! and at most [`MAX_STREAMS`] streams run at once (beyond, [`StorageError::Busy`]). A
//! reader that stops (drops the stream) ends the fetch at its next segment: the fetch loop's
//! channel closes and its requests in flight are dropped.

use std::sync::Arc;

use futures::Stream;
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit};
use tokio_util::sync::CancellationToken;

use super::fetch::{FetchStats, Span};
use crate::files::{ops::Progress, Storage, StorageError};

/// Bytes of shards one stream asks for ahead of the segment it hands over next.
pub const STREAM_BUDGET: usize = 4 << 20;
/// Streams served at once.
pub const MAX_STREAMS: usize = 4;

/// Why a byte range cannot be served (HTTP 416).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RangeError {
    /// Not `bytes=START-END`, `bytes=START-` or `bytes=-SUFFIX`, or a number that does not
    /// fit in 64 bits.
    #[error("malformed range {0:?}: expected bytes=START-END (END inclusive), bytes=START- or bytes=-SUFFIX")]
    Malformed(String),
    /// More than one range.
    #[error("only one byte range per request is served")]
    Multiple,
    /// END before START.
    #[error("inverted range {start}-{end}: END must be at least START")]
    Inverted {
        /// First byte asked.
        start: u64,
        /// Last byte asked.
        end: u64,
    },
    /// START at or past the end (or an empty suffix).
    #[error("range starts at byte {start}, past the end of the {size}-byte asset")]
    PastEnd {
        /// First byte asked.
        start: u64,
        /// The asset's size.
        size: u64,
    },
}

/// Parses an HTTP `Range` header value against an asset of `size` bytes into the inclusive
/// byte range to serve. An END at or past the end is cut to the last byte (RFC 9110 §14.1.2);
/// a suffix range `-N` is the last N bytes.
///
/// # Errors
/// [`RangeError`] for a range that cannot be served (HTTP 416).
pub fn parse_range(header: &str, size: u64) -> Result<(u64, u64), RangeError> {
    let malformed = || RangeError::Malformed(header.chars().take(80).collect());
    let spec = header
        .trim()
        .strip_prefix("bytes=")
        .ok_or_else(malformed)?
        .trim();
    if spec.contains(',') {
        return Err(RangeError::Multiple);
    }
    let (a, b) = spec.split_once('-').ok_or_else(malformed)?;
    let num = |s: &str| -> Result<Option<u64>, RangeError> {
        let s = s.trim();
        if s.is_empty() {
            return Ok(None);
        }
        if !s.bytes().all(|c| c.is_ascii_digit()) {
            return Err(malformed());
        }
        s.parse().map(Some).map_err(|_| malformed())
    };
    let (start, end) = match (num(a)?, num(b)?) {
        (Some(start), Some(end)) if end < start => {
            return Err(RangeError::Inverted { start, end });
        }
        (Some(start), end) => (start, end.unwrap_or(u64::MAX)),
        (None, Some(suffix)) if suffix > 0 && size > 0 => (size.saturating_sub(suffix), size - 1),
        (None, Some(_)) => return Err(RangeError::PastEnd { start: size, size }),
        (None, None) => return Err(malformed()),
    };
    if start >= size {
        return Err(RangeError::PastEnd { start, size });
    }
    Ok((start, end.min(size - 1)))
}

/// A read being served.
pub struct Content {
    /// The asset's size.
    pub size: u64,
    /// The inclusive byte range served; `None` for the whole file.
    pub range: Option<(u64, u64)>,
    /// The segments fetched, first and last (inclusive); `None` for an empty asset.
    pub segments: Option<(u64, u64)>,
    /// The chunks, in order; an `Err` ends the stream early.
    pub body: std::pin::Pin<Box<dyn Stream<Item = Result<Vec<u8>, std::io::Error>> + Send>>,
}

impl Content {
    /// Bytes the body holds.
    pub fn len(&self) -> u64 {
        self.range.map_or(self.size, |(a, b)| b - a + 1)
    }

    /// Whether the body is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What the body stream walks through.
struct Walk {
    segments: mpsc::Receiver<(u64, Vec<u8>)>,
    failed: Option<oneshot::Receiver<StorageError>>,
    first: Option<(u64, Vec<u8>)>,
    seg_len: u64,
    /// Inclusive byte range to hand over.
    start: u64,
    end: u64,
    last_segment: u64,
    /// Whole-file reads: the hash so far and the one expected.
    whole: Option<(blake3::Hasher, String)>,
    done: bool,
    _permit: OwnedSemaphorePermit,
}

impl Walk {
    /// The next chunk: the part of the next segment inside the range.
    async fn next(&mut self) -> Option<Result<Vec<u8>, std::io::Error>> {
        if self.done {
            return None;
        }
        let next = match self.first.take() {
            Some(s) => Some(s),
            None => self.segments.recv().await,
        };
        let Some((index, plain)) = next else {
            self.done = true;
            let why = match self.failed.take() {
                Some(rx) => rx
                    .await
                    .map_or_else(|_| "the read stopped early".to_owned(), |e| e.to_string()),
                None => "the read stopped early".to_owned(),
            };
            return Some(Err(std::io::Error::other(why)));
        };
        if let Some((hasher, expected)) = &mut self.whole {
            hasher.update(&plain);
            if index == self.last_segment && hasher.finalize().to_hex().as_str() != expected {
                self.done = true;
                return Some(Err(std::io::Error::other(
                    "integrity check failed: the whole-file BLAKE3 does not match the manifest",
                )));
            }
        }
        let offset = index * self.seg_len;
        let from = self.start.saturating_sub(offset) as usize;
        let to = ((self.end + 1 - offset) as usize).min(plain.len());
        if index >= self.last_segment {
            self.done = true;
        }
        let chunk = if from == 0 && to == plain.len() {
            plain
        } else {
            plain.get(from..to).map(<[u8]>::to_vec).unwrap_or_default()
        };
        Some(Ok(chunk))
    }
}

impl Storage {
    /// Opens a read of `asset` (all of it, or the inclusive byte range `range`), fetching
    /// the first segment before it answers so that an asset that cannot be read fails with
    /// its own error rather than a cut stream.
    ///
    /// # Errors
    /// [`StorageError::Busy`] when [`MAX_STREAMS`] are being served, and the errors of a get.
    pub async fn open_content(
        self: &Arc<Self>,
        asset: &str,
        key: Option<[u8; 32]>,
        range: impl FnOnce(u64) -> Result<Option<(u64, u64)>, RangeError>,
    ) -> Result<Result<Content, (RangeError, u64)>, StorageError> {
        let plan = self.plan(asset, key).await?;
        let size = plan.manifest.size;
        let range = match range(size) {
            Ok(r) => r,
            Err(e) => return Ok(Err((e, size))),
        };
        let permit = self.streams.clone().try_acquire_owned().map_err(|_| {
            StorageError::Busy(format!(
                "{MAX_STREAMS} reads are being served; try again shortly"
            ))
        })?;
        let seg_len = plan.segment_len().max(1);
        let (start, end) = range.unwrap_or((0, size.saturating_sub(1)));
        let segments = if size == 0 {
            None
        } else {
            Some((start / seg_len, end / seg_len))
        };
        let (first_seg, last_seg) =
            segments.unwrap_or((0, plan.manifest.segment_count.saturating_sub(1)));
        let whole = if range.is_none() {
            Some((blake3::Hasher::new(), plan.manifest.file_blake3.clone()))
        } else {
            None
        };
        let count = if plan.manifest.segment_count == 0 {
            0
        } else {
            last_seg + 1
        };
        let (seg_tx, mut seg_rx) = mpsc::channel(2);
        let (err_tx, mut err_rx) = oneshot::channel();
        let this = self.clone();
        tokio::spawn(async move {
            let progress = Progress::default();
            let mut stats = FetchStats::default();
            let cancel = CancellationToken::new();
            let r = this
                .fetch_segments(
                    &plan,
                    Span {
                        segments: first_seg..count,
                        budget: STREAM_BUDGET,
                    },
                    seg_tx,
                    &progress,
                    &cancel,
                    &mut stats,
                )
                .await;
            tracing::debug!(asset = %plan.manifest.asset_id, segments = stats.segments, fetched = stats.fetched, "read ended");
            if let Err(e) = r {
                let _ = err_tx.send(e);
            }
        });
        let first = match seg_rx.recv().await {
            Some(s) => Some(s),
            None if count == 0 => None,
            None => {
                // The fetch sends its error after it dropped the channel.
                return Err((&mut err_rx).await.unwrap_or_else(|_| {
                    StorageError::Internal("the read stopped before its first segment".into())
                }));
            }
        };
        let walk = Walk {
            segments: seg_rx,
            failed: Some(err_rx),
            done: first.is_none(),
            first,
            seg_len,
            start,
            end,
            last_segment: last_seg,
            whole,
            _permit: permit,
        };
        let body = futures::stream::unfold(walk, |mut w| async move {
            let item = w.next().await?;
            Some((item, w))
        });
        Ok(Ok(Content {
            size,
            range,
            segments,
            body: Box::pin(body),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_parse_as_http_ranges() {
        assert_eq!(parse_range("bytes=0-0", 10), Ok((0, 0)));
        assert_eq!(parse_range("bytes=3-7", 10), Ok((3, 7)));
        assert_eq!(parse_range("bytes=3-", 10), Ok((3, 9)));
        assert_eq!(parse_range("bytes=-4", 10), Ok((6, 9)));
        assert_eq!(parse_range("bytes=-40", 10), Ok((0, 9)));
        // An END past the end is cut to the last byte.
        assert_eq!(parse_range("bytes=5-1000", 10), Ok((5, 9)));
        assert_eq!(parse_range(" bytes= 1 - 2 ", 10), Ok((1, 2)));
    }

    #[test]
    fn bad_ranges_are_refused_by_kind() {
        assert_eq!(
            parse_range("bytes=7-3", 10),
            Err(RangeError::Inverted { start: 7, end: 3 })
        );
        assert_eq!(
            parse_range("bytes=10-12", 10),
            Err(RangeError::PastEnd {
                start: 10,
                size: 10
            })
        );
        assert!(matches!(
            parse_range("bytes=-0", 10),
            Err(RangeError::PastEnd { .. })
        ));
        assert!(matches!(
            parse_range("bytes=0-0", 0),
            Err(RangeError::PastEnd { .. })
        ));
        assert_eq!(parse_range("bytes=0-1,3-4", 10), Err(RangeError::Multiple));
        for bad in [
            "0-1",
            "bytes=",
            "bytes=-",
            "bytes=a-b",
            "bytes=+1-2",
            "items=0-1",
            "bytes=99999999999999999999999-",
        ] {
            assert!(
                matches!(parse_range(bad, 10), Err(RangeError::Malformed(_))),
                "{bad}"
            );
        }
    }
}
