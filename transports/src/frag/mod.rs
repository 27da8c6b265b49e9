//! A reliable, ordered byte stream over a lossy datagram [`Link`](crate::Link): segmentation to the link MTU,
//! selective-repeat ARQ with a window, and keep-alive. The basis of a libp2p transport over
//! radio (Noise + Yamux run on an [`ArqStream`] as on a TCP socket).
//!
//! - The stream is cut into segments of `MTU − 7` bytes, each a DATA packet with a sequence
//!   number ([`wire`]). At most `window` segments are unacknowledged at once.
//! - The receiver holds out-of-order segments (within the window), delivers them in order, and
//!   answers every batch of packets with an ACK: a cumulative number plus a 32-bit selective
//!   bitmap, so the sender resends only what is missing, when its timeout expires (which
//!   grows 1.5× per retry up to `max_rto`; after `max_retries` the stream fails).
//! - An idle connection sends a PING every `keepalive`; one that hears nothing for
//!   `idle_timeout` fails.
//! - Shutting down the write side sends a FIN segment; the reader sees EOF after the data.
//!   Flush resolves when everything written has been acknowledged.
//!
//! Buffers are bounded: `send_buffer` bytes not yet segmented (writes wait when full),
//! `window` segments in flight, `window` held out of order, `recv_buffer` bytes not yet read
//! (the window stalls when full: that is the flow control).
//!
//! An [`ArqStream`] owns a link endpoint's receive queue; datagrams from other stations or
//! with another connection id are ignored. Running several streams and beacons on one radio
//! needs a demultiplexer in front, which the libp2p transport will provide.

mod arq;
mod stream;
pub mod wire;

use std::time::Duration;

pub use arq::ArqStats;
pub use stream::ArqStream;

/// Settings of an ARQ stream.
#[derive(Clone, Debug)]
pub struct ArqConfig {
    /// Segments in flight (and held out of order) at most.
    pub window: u32,
    /// Bytes written but not yet segmented, at most.
    pub send_buffer: usize,
    /// Bytes received in order but not yet read, at most.
    pub recv_buffer: usize,
    /// Initial retransmission timeout; `None` derives it from the link's airtime.
    pub rto: Option<Duration>,
    /// Largest retransmission timeout after backoff.
    pub max_rto: Duration,
    /// Retransmissions of one segment before the stream fails.
    pub max_retries: u32,
    /// Idle time before a keep-alive probe.
    pub keepalive: Duration,
    /// Silence from the peer after which the stream fails.
    pub idle_timeout: Duration,
    /// How long the driver keeps serving a dropped stream (see [`ArqStream`]).
    pub linger: Duration,
}

impl Default for ArqConfig {
    /// Window 8, 16 KiB buffers, RTO from airtime (max 60 s), 12 retries, keep-alive every
    /// 30 s, peer declared gone after 3 min of silence, 60 s linger after drop.
    fn default() -> Self {
        ArqConfig {
            window: 8,
            send_buffer: 16 * 1024,
            recv_buffer: 16 * 1024,
            rto: None,
            max_rto: Duration::from_secs(60),
            max_retries: 12,
            keepalive: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(180),
            linger: Duration::from_secs(60),
        }
    }
}

impl ArqConfig {
    /// Sets the window (1..=32 segments: the selective ACK covers 32).
    pub fn with_window(mut self, window: u32) -> Self {
        self.window = window.clamp(1, 32);
        self
    }

    /// Sets a fixed initial retransmission timeout.
    pub fn with_rto(mut self, rto: Duration) -> Self {
        self.rto = Some(rto);
        self
    }

    /// Sets the keep-alive interval and the silence timeout.
    pub fn with_keepalive(mut self, keepalive: Duration, idle_timeout: Duration) -> Self {
        self.keepalive = keepalive;
        self.idle_timeout = idle_timeout;
        self
    }
}

/// Why a stream failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArqError {
    /// A segment went unacknowledged through every retry.
    #[error("segment unacknowledged after {0} transmissions")]
    Unacknowledged(u32),
    /// Nothing heard from the peer for this long.
    #[error("peer silent for {0:?}")]
    PeerSilent(Duration),
    /// The link failed or closed.
    #[error("link failed: {0}")]
    Link(String),
}
