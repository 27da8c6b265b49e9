//! The codec of every Offgrid request-response protocol: CBOR, byte for byte what libp2p's
//! `request_response::cbor` puts on the wire, with inbound reads that a hostile peer cannot
//! turn into memory.
//!
//! libp2p's codec reads a request with `read_to_end` into a growing `Vec` and decodes it
//! at the end, so each stream of a protocol may hold its whole size cap for as long as the
//! request timeout. This one:
//! - refuses a request the moment it passes the cap, without reading the rest;
//! - charges every buffered byte past the first [`FREE_BYTES`] of a stream to a node-wide
//!   [`Budget`] shared by all protocols and connections, and drops the stream when the
//!   budget is spent (small requests, such as quotes and fetches, never wait on it);
//! - gives the request a read deadline ([`Inbound::read_timeout`]), far shorter than the
//!   time the answer may take, so a peer that trickles bytes (slowloris) loses the stream.
//!
//! Responses are only capped: they answer requests this node chose to send, so their count
//! is bounded by its own concurrency.

use std::{
    future::Future,
    io,
    marker::PhantomData,
    sync::{
        atomic::{AtomicU64, AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use libp2p::{
    futures::{future::Either, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    request_response, StreamProtocol,
};
use serde::{de::DeserializeOwned, Serialize};

/// Bytes of each inbound request read without charging the [`Budget`]: quotes, fetches,
/// tips and other small requests are served however much of the budget a flood holds.
pub const FREE_BYTES: usize = 8 * 1024;
/// Size of every buffer of a read after the first ([`FREE_BYTES`]). A message is read into
/// a list of such chunks, never one buffer that grows: chunks of one size, below the
/// allocator's mmap threshold, are reused as floods come and go instead of leaving the heap
/// fragmented, and what is charged exceeds what arrived by less than one chunk.
const CHUNK: usize = 64 * 1024;

/// A node-wide budget of inbound request bytes in flight (buffered, not yet decoded).
/// Cloning shares it.
#[derive(Debug, Clone)]
pub struct Budget(Arc<BudgetInner>);

#[derive(Debug)]
struct BudgetInner {
    limit: usize,
    used: AtomicUsize,
    refused: AtomicU64,
}

impl Budget {
    /// A budget of `limit` bytes.
    pub fn new(limit: usize) -> Self {
        Budget(Arc::new(BudgetInner {
            limit,
            used: AtomicUsize::new(0),
            refused: AtomicU64::new(0),
        }))
    }

    /// No limit (tests, tools).
    pub fn unlimited() -> Self {
        Budget::new(usize::MAX)
    }

    /// Bytes charged now.
    pub fn in_use(&self) -> usize {
        self.0.used.load(Ordering::Relaxed)
    }

    /// Streams dropped so far because the budget was spent.
    pub fn refused(&self) -> u64 {
        self.0.refused.load(Ordering::Relaxed)
    }

    fn charge(&self) -> Charge {
        Charge {
            budget: self.clone(),
            bytes: 0,
        }
    }

    fn try_add(&self, n: usize) -> bool {
        let ok = self
            .0
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(n).filter(|t| *t <= self.0.limit)
            })
            .is_ok();
        if !ok {
            let refused = self.0.refused.fetch_add(1, Ordering::Relaxed) + 1;
            // Logged sparsely: a flood refuses thousands.
            if refused.is_power_of_two() {
                tracing::warn!(
                    refused,
                    in_use = self.in_use(),
                    limit = self.0.limit,
                    "inbound budget spent: a large request was dropped"
                );
            }
        }
        ok
    }
}

/// Bytes one read holds against a [`Budget`]; given back on drop.
#[derive(Debug)]
struct Charge {
    budget: Budget,
    bytes: usize,
}

impl Charge {
    /// Grows the charge to `total` bytes; `false` (and no change) when the budget is spent.
    fn grow_to(&mut self, total: usize) -> bool {
        if total <= self.bytes {
            return true;
        }
        if !self.budget.try_add(total - self.bytes) {
            return false;
        }
        self.bytes = total;
        true
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        self.budget.0.used.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

/// Limits on what one protocol takes from peers.
#[derive(Debug, Clone)]
pub struct Inbound {
    /// Most concurrent streams of the protocol per connection (libp2p drops the rest).
    pub max_streams: usize,
    /// Longest the whole of a request may take to arrive; `None`: only the request timeout.
    pub read_timeout: Option<Duration>,
    /// The node-wide budget the protocol's requests are charged to.
    pub budget: Budget,
}

impl Inbound {
    /// `max_streams` per connection, no read deadline and no budget (tests, tools, slow
    /// radio links where a request may take minutes).
    pub fn streams(max_streams: usize) -> Self {
        Inbound {
            max_streams,
            read_timeout: None,
            budget: Budget::unlimited(),
        }
    }

    /// With this read deadline.
    pub fn with_read_timeout(mut self, t: Duration) -> Self {
        self.read_timeout = Some(t);
        self
    }

    /// Charged to this budget.
    pub fn with_budget(mut self, budget: Budget) -> Self {
        self.budget = budget;
        self
    }
}

/// The CBOR codec with the caps above.
pub struct Codec<Req, Resp> {
    max_request: usize,
    max_response: usize,
    read_timeout: Option<Duration>,
    budget: Budget,
    phantom: PhantomData<fn() -> (Req, Resp)>,
}

impl<Req, Resp> Clone for Codec<Req, Resp> {
    fn clone(&self) -> Self {
        Codec {
            max_request: self.max_request,
            max_response: self.max_response,
            read_timeout: self.read_timeout,
            budget: self.budget.clone(),
            phantom: PhantomData,
        }
    }
}

impl<Req, Resp> Codec<Req, Resp> {
    /// A codec capping requests at `max_request` and responses at `max_response` bytes.
    pub fn new(max_request: u64, max_response: u64, inbound: &Inbound) -> Self {
        Codec {
            max_request: usize::try_from(max_request).unwrap_or(usize::MAX),
            max_response: usize::try_from(max_response).unwrap_or(usize::MAX),
            read_timeout: inbound.read_timeout,
            budget: inbound.budget.clone(),
            phantom: PhantomData,
        }
    }
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

/// A message as read: chunks, all full but the last.
#[derive(Debug, Default)]
struct Chunks(Vec<Vec<u8>>);

impl Chunks {
    /// Decodes the message (from the one chunk in place, else through a reader).
    fn decode<T: DeserializeOwned>(&self) -> io::Result<T> {
        match self.0.as_slice() {
            [] => decode(&[]),
            [one] => decode(one),
            many => cbor4ii::serde::from_reader(ChunkReader {
                chunks: many,
                at: 0,
                pos: 0,
            })
            .map_err(|e| invalid(e.to_string())),
        }
    }
}

/// `BufRead` over a message's chunks.
struct ChunkReader<'a> {
    chunks: &'a [Vec<u8>],
    at: usize,
    pos: usize,
}

impl std::io::Read for ChunkReader<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let n = {
            let buf = std::io::BufRead::fill_buf(self)?;
            let n = buf.len().min(out.len());
            out[..n].copy_from_slice(&buf[..n]);
            n
        };
        std::io::BufRead::consume(self, n);
        Ok(n)
    }
}

impl std::io::BufRead for ChunkReader<'_> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        while self.at < self.chunks.len() && self.pos >= self.chunks[self.at].len() {
            self.at += 1;
            self.pos = 0;
        }
        Ok(self.chunks.get(self.at).map_or(&[][..], |c| &c[self.pos..]))
    }

    fn consume(&mut self, n: usize) {
        self.pos += n;
    }
}

/// Reads to the end of `io`, at most `max` bytes. The first [`FREE_BYTES`] are free; every
/// later chunk is charged to `charge` before it is allocated (`None`: not charged).
async fn read_capped<T: AsyncRead + Unpin>(
    io: &mut T,
    max: usize,
    mut charge: Option<&mut Charge>,
) -> io::Result<Chunks> {
    let mut chunks = Chunks::default();
    let mut total = 0usize;
    let mut buf = vec![0u8; FREE_BYTES.min(max)];
    let mut filled = 0;
    loop {
        if filled == buf.len() {
            total += filled;
            if total >= max {
                // At the cap: only the end of the stream may follow.
                let mut probe = [0u8; 1];
                if io.read(&mut probe).await? == 0 {
                    chunks.0.push(buf);
                    return Ok(chunks);
                }
                return Err(invalid(format!("message larger than {max} bytes")));
            }
            let size = CHUNK.min(max - total);
            if let Some(c) = charge.as_deref_mut() {
                if !c.grow_to(c.bytes + size) {
                    return Err(io::Error::new(
                        io::ErrorKind::OutOfMemory,
                        "the node's inbound budget is spent; try again later",
                    ));
                }
            }
            chunks.0.push(std::mem::replace(&mut buf, vec![0u8; size]));
            filled = 0;
        }
        let n = io.read(&mut buf[filled..]).await?;
        if n == 0 {
            buf.truncate(filled);
            chunks.0.push(buf);
            return Ok(chunks);
        }
        filled += n;
    }
}

/// Runs `f`, failing with `TimedOut` after `t` when there is one.
async fn deadline<T>(t: Option<Duration>, f: impl Future<Output = io::Result<T>>) -> io::Result<T> {
    let Some(t) = t else { return f.await };
    let f = std::pin::pin!(f);
    match libp2p::futures::future::select(f, futures_timer::Delay::new(t)).await {
        Either::Left((r, _)) => r,
        Either::Right(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("request not complete within {t:?}"),
        )),
    }
}

fn decode<T: DeserializeOwned>(bytes: &[u8]) -> io::Result<T> {
    cbor4ii::serde::from_slice(bytes).map_err(|e| invalid(e.to_string()))
}

fn encode<T: Serialize>(value: &T) -> io::Result<Vec<u8>> {
    cbor4ii::serde::to_vec(Vec::new(), value).map_err(|e| invalid(e.to_string()))
}

impl<Req, Resp> request_response::Codec for Codec<Req, Resp>
where
    Req: Send + Serialize + DeserializeOwned,
    Resp: Send + Serialize + DeserializeOwned,
{
    type Protocol = StreamProtocol;
    type Request = Req;
    type Response = Resp;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Req>
    where
        T: AsyncRead + Unpin + Send,
    {
        let mut charge = self.budget.charge();
        let chunks = deadline(
            self.read_timeout,
            read_capped(io, self.max_request, Some(&mut charge)),
        )
        .await?;
        let req = chunks.decode();
        drop(chunks);
        drop(charge);
        req
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Resp>
    where
        T: AsyncRead + Unpin + Send,
    {
        read_capped(io, self.max_response, None).await?.decode()
    }

    async fn write_request<T>(&mut self, _: &StreamProtocol, io: &mut T, req: Req) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        io.write_all(&encode(&req)?).await
    }

    async fn write_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        resp: Resp,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        io.write_all(&encode(&resp)?).await
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::{
        pin::Pin,
        task::{Context, Poll},
    };

    use libp2p::request_response::Codec as _;

    use super::*;

    const P: StreamProtocol = StreamProtocol::new("/test/1");

    fn block<T>(f: impl Future<Output = T>) -> T {
        libp2p::futures::executor::block_on(f)
    }

    fn codec(max: u64, budget: &Budget) -> Codec<String, String> {
        Codec::new(max, max, &Inbound::streams(1).with_budget(budget.clone()))
    }

    #[test]
    fn the_wire_is_libp2ps_cbor() {
        let mut ours = codec(1 << 20, &Budget::unlimited());
        let mut theirs = request_response::cbor::codec::Codec::<String, String>::default();
        let mut a = Vec::new();
        let mut b = Vec::new();
        block(ours.write_request(&P, &mut a, "hello".into())).unwrap();
        block(theirs.write_request(&P, &mut b, "hello".into())).unwrap();
        assert_eq!(a, b);
        assert_eq!(
            block(ours.read_request(&P, &mut b.as_slice())).unwrap(),
            "hello"
        );
        let big = "x".repeat(100_000);
        let mut wire = Vec::new();
        block(theirs.write_response(&P, &mut wire, big.clone())).unwrap();
        assert_eq!(
            block(ours.read_response(&P, &mut wire.as_slice())).unwrap(),
            big
        );
    }

    #[test]
    fn a_message_over_many_chunks_decodes_as_one() {
        let mut c = codec(1 << 20, &Budget::unlimited());
        for len in [
            0,
            1,
            FREE_BYTES - 3,
            FREE_BYTES,
            FREE_BYTES + CHUNK,
            300_001,
        ] {
            let s = "z".repeat(len);
            let wire = encode(&s).unwrap();
            assert_eq!(block(c.read_request(&P, &mut wire.as_slice())).unwrap(), s);
            assert_eq!(block(c.read_response(&P, &mut wire.as_slice())).unwrap(), s);
        }
        let v: Vec<u32> = (0..100_000).collect();
        let wire = encode(&v).unwrap();
        let mut c = Codec::<Vec<u32>, Vec<u32>>::new(1 << 20, 1 << 20, &Inbound::streams(1));
        assert_eq!(block(c.read_request(&P, &mut wire.as_slice())).unwrap(), v);
    }

    #[test]
    fn a_request_past_the_cap_is_refused_and_one_at_the_cap_is_read() {
        let budget = Budget::unlimited();
        let mut c = codec(1000, &budget);
        let wire = encode(&"y".repeat(996)).unwrap();
        assert_eq!(wire.len(), 999);
        assert!(block(c.read_request(&P, &mut wire.as_slice())).is_ok());
        let wire = encode(&"y".repeat(997)).unwrap();
        assert_eq!(wire.len(), 1000);
        assert!(block(c.read_request(&P, &mut wire.as_slice())).is_ok());
        let wire = encode(&"y".repeat(998)).unwrap();
        let err = block(c.read_request(&P, &mut wire.as_slice())).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert_eq!(budget.in_use(), 0);
    }

    #[test]
    fn large_requests_are_charged_to_the_budget_and_small_ones_are_not() {
        let budget = Budget::new(64 * 1024);
        let mut c = codec(1 << 20, &budget);
        // Small: free however spent the budget is.
        let small = encode(&"s".repeat(FREE_BYTES - 16)).unwrap();
        let mut hold = budget.charge();
        assert!(hold.grow_to(64 * 1024));
        assert!(block(c.read_request(&P, &mut small.as_slice())).is_ok());
        // Large: refused while the budget is spent, read once it is given back.
        let large = encode(&"l".repeat(40_000)).unwrap();
        let err = block(c.read_request(&P, &mut large.as_slice())).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::OutOfMemory);
        assert_eq!(budget.refused(), 1);
        drop(hold);
        assert_eq!(budget.in_use(), 0);
        assert!(block(c.read_request(&P, &mut large.as_slice())).is_ok());
        assert_eq!(budget.in_use(), 0, "given back after decoding");
        // Larger than the whole budget: never read.
        let huge = encode(&"h".repeat(200_000)).unwrap();
        assert!(block(c.read_request(&P, &mut huge.as_slice())).is_err());
    }

    /// A stream that sends a few bytes and then nothing, never closing.
    struct Trickle(usize);

    impl AsyncRead for Trickle {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &mut [u8],
        ) -> Poll<io::Result<usize>> {
            if self.0 == 0 {
                return Poll::Pending;
            }
            let n = self.0.min(buf.len());
            buf[..n].fill(0x61);
            self.0 -= n;
            Poll::Ready(Ok(n))
        }
    }

    #[test]
    fn a_request_that_never_ends_times_out_and_gives_its_bytes_back() {
        let budget = Budget::new(1 << 20);
        let inbound = Inbound::streams(1)
            .with_budget(budget.clone())
            .with_read_timeout(Duration::from_millis(50));
        let mut c = Codec::<String, String>::new(1 << 20, 1 << 20, &inbound);
        let err = block(c.read_request(&P, &mut Trickle(100_000))).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert_eq!(budget.in_use(), 0);
    }
}
