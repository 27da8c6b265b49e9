//! The link contract every radio (and its simulator) implements.
//!
//! A link is split in two halves, so that one task can receive while others send:
//! - the sending half implements [`Link`]: `send(dest, bytes)` of at most [`Link::mtu`] bytes,
//!   plus the link's kind, address, airtime model and counters. `send` returns a boxed future,
//!   so `Arc<dyn Link>` works without `async_trait`;
//! - the receiving half is a bounded `tokio::sync::mpsc::Receiver<Datagram>`. When the consumer
//!   falls behind, new frames are dropped and counted ([`LinkStats::rx_dropped`]) rather than
//!   queued without limit: on a radio, a late frame is worth little.
//!
//! [`Endpoint`] bundles both halves; every link constructor returns one.

use std::{
    fmt,
    net::SocketAddr,
    str::FromStr,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use futures::future::BoxFuture;
use tokio::sync::mpsc;

/// Capacity of the receive queue of every link unless configured otherwise.
pub const DEFAULT_RX_QUEUE: usize = 64;

/// Which kind of medium a link runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LinkKind {
    /// A LoRa radio (KISS TNC on a serial port).
    Lora,
    /// Bluetooth Low Energy.
    Ble,
    /// UDP multicast on an IP network.
    Udp,
    /// The simulated LoRa medium ([`crate::sim`]).
    Sim,
}

impl LinkKind {
    /// The `via` string of the peer registry. The simulator reports `lora`, because it stands in
    /// for a LoRa radio and the node must behave exactly as it would on one.
    pub fn as_str(&self) -> &'static str {
        match self {
            LinkKind::Lora | LinkKind::Sim => "lora",
            LinkKind::Ble => "ble",
            LinkKind::Udp => "udp",
        }
    }
}

impl fmt::Display for LinkKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The address of a station on a link.
///
/// Text form (Display/FromStr): `*` broadcast, `?` unknown, `id:<decimal>`, an IP socket
/// address, or a BLE MAC `aa:bb:cc:dd:ee:ff`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LinkAddr {
    /// Everyone in range.
    Broadcast,
    /// The link layer carries no sender address (a LoRa KISS TNC): the upper layer must.
    Unknown,
    /// A numeric station id (the simulator, or an upper-layer radio address).
    Id(u64),
    /// An IP socket address (UDP links).
    Ip(SocketAddr),
    /// A Bluetooth device address.
    Ble([u8; 6]),
}

impl fmt::Display for LinkAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LinkAddr::Broadcast => f.write_str("*"),
            LinkAddr::Unknown => f.write_str("?"),
            LinkAddr::Id(id) => write!(f, "id:{id}"),
            LinkAddr::Ip(addr) => write!(f, "{addr}"),
            LinkAddr::Ble(m) => write!(
                f,
                "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
                m[0], m[1], m[2], m[3], m[4], m[5]
            ),
        }
    }
}

/// A string that is not a [`LinkAddr`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid link address {0:?}")]
pub struct ParseLinkAddrError(pub String);

impl FromStr for LinkAddr {
    type Err = ParseLinkAddrError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParseLinkAddrError(s.to_owned());
        match s {
            "*" => return Ok(LinkAddr::Broadcast),
            "?" => return Ok(LinkAddr::Unknown),
            _ => {}
        }
        if let Some(id) = s.strip_prefix("id:") {
            return id.parse().map(LinkAddr::Id).map_err(|_| err());
        }
        if let Ok(addr) = s.parse::<SocketAddr>() {
            return Ok(LinkAddr::Ip(addr));
        }
        let parts: Vec<&str> = s.split(':').collect();
        if parts.len() == 6 && parts.iter().all(|p| p.len() == 2) {
            let mut mac = [0u8; 6];
            for (b, p) in mac.iter_mut().zip(parts) {
                *b = u8::from_str_radix(p, 16).map_err(|_| err())?;
            }
            return Ok(LinkAddr::Ble(mac));
        }
        Err(err())
    }
}

/// A frame received on a link.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Datagram {
    /// Who sent it, as far as the link layer knows.
    pub from: LinkAddr,
    /// The frame's bytes (at most the link's MTU).
    pub payload: Vec<u8>,
}

/// Why a send failed.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// The payload is larger than the link's MTU; fragment it first ([`crate::frag`]).
    #[error("frame of {len} bytes exceeds the link MTU of {mtu}")]
    Oversize {
        /// Payload length.
        len: usize,
        /// The link's MTU.
        mtu: usize,
    },
    /// Sending now would exceed the airtime budget; try again after `retry_after`
    /// (`Duration::MAX` when the frame can never fit the budget).
    #[error("duty-cycle budget exhausted, retry after {retry_after:?}")]
    DutyCycle {
        /// How long until the frame fits the budget.
        retry_after: Duration,
    },
    /// The link cannot send to this kind of address.
    #[error("address {0} is not supported on this link")]
    AddrNotSupported(LinkAddr),
    /// The link has shut down (device gone, hub gone, medium dropped).
    #[error("link closed")]
    Closed,
    /// An I/O error from the device or socket.
    #[error("link I/O: {0}")]
    Io(#[from] std::io::Error),
}

/// A snapshot of a link's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LinkStats {
    /// Frames sent.
    pub frames_out: u64,
    /// Payload bytes sent.
    pub bytes_out: u64,
    /// Airtime spent sending (the link's own model).
    pub airtime_out: Duration,
    /// Frames received and queued for the consumer.
    pub frames_in: u64,
    /// Payload bytes received and queued.
    pub bytes_in: u64,
    /// Frames dropped because the receive queue was full.
    pub rx_dropped: u64,
    /// Frames dropped because they were malformed or oversize on the wire.
    pub rx_malformed: u64,
    /// Sends refused by the duty-cycle budget.
    pub duty_cycle_refusals: u64,
}

/// Shared atomic counters behind [`LinkStats`].
#[derive(Debug, Default)]
pub(crate) struct LinkCounters {
    frames_out: AtomicU64,
    bytes_out: AtomicU64,
    airtime_out_us: AtomicU64,
    frames_in: AtomicU64,
    bytes_in: AtomicU64,
    rx_dropped: AtomicU64,
    rx_malformed: AtomicU64,
    duty_cycle_refusals: AtomicU64,
}

impl LinkCounters {
    pub(crate) fn sent(&self, len: usize, airtime: Duration) {
        self.frames_out.fetch_add(1, Ordering::Relaxed);
        self.bytes_out.fetch_add(len as u64, Ordering::Relaxed);
        let us = u64::try_from(airtime.as_micros()).unwrap_or(u64::MAX);
        self.airtime_out_us.fetch_add(us, Ordering::Relaxed);
    }

    pub(crate) fn received(&self, len: usize) {
        self.frames_in.fetch_add(1, Ordering::Relaxed);
        self.bytes_in.fetch_add(len as u64, Ordering::Relaxed);
    }

    pub(crate) fn dropped(&self) {
        self.rx_dropped.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn malformed(&self, n: u64) {
        self.rx_malformed.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn refused(&self) {
        self.duty_cycle_refusals.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> LinkStats {
        LinkStats {
            frames_out: self.frames_out.load(Ordering::Relaxed),
            bytes_out: self.bytes_out.load(Ordering::Relaxed),
            airtime_out: Duration::from_micros(self.airtime_out_us.load(Ordering::Relaxed)),
            frames_in: self.frames_in.load(Ordering::Relaxed),
            bytes_in: self.bytes_in.load(Ordering::Relaxed),
            rx_dropped: self.rx_dropped.load(Ordering::Relaxed),
            rx_malformed: self.rx_malformed.load(Ordering::Relaxed),
            duty_cycle_refusals: self.duty_cycle_refusals.load(Ordering::Relaxed),
        }
    }

    /// Queues a received frame without waiting; counts it as received or dropped.
    /// Returns false when the consumer is gone, so the reader task can stop.
    pub(crate) fn deliver(&self, queue: &mpsc::Sender<Datagram>, dgram: Datagram) -> bool {
        // Counted before it is queued, so whoever receives it sees it counted.
        match queue.try_reserve() {
            Ok(permit) => {
                self.received(dgram.payload.len());
                permit.send(dgram);
                true
            }
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.dropped();
                true
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }
}

/// The sending half of a link, and its properties. Object safe: use `Arc<dyn Link>`.
pub trait Link: Send + Sync {
    /// Sends one frame of at most [`Link::mtu`] bytes to `dest` ([`LinkAddr::Broadcast`] for
    /// everyone in range). Resolves once the frame is handed to the device (or, on the
    /// simulator, once it has been on the air).
    fn send<'a>(
        &'a self,
        dest: LinkAddr,
        payload: &'a [u8],
    ) -> BoxFuture<'a, Result<(), LinkError>>;

    /// The largest payload one frame carries.
    fn mtu(&self) -> usize;

    /// The kind of medium.
    fn kind(&self) -> LinkKind;

    /// How long a frame of `len` payload bytes occupies the channel.
    fn airtime(&self, len: usize) -> Duration;

    /// This station's own address on the link ([`LinkAddr::Unknown`] if it has none).
    fn local_addr(&self) -> LinkAddr;

    /// The link's counters.
    fn stats(&self) -> LinkStats;
}

impl<T: Link + ?Sized> Link for Arc<T> {
    fn send<'a>(
        &'a self,
        dest: LinkAddr,
        payload: &'a [u8],
    ) -> BoxFuture<'a, Result<(), LinkError>> {
        (**self).send(dest, payload)
    }
    fn mtu(&self) -> usize {
        (**self).mtu()
    }
    fn kind(&self) -> LinkKind {
        (**self).kind()
    }
    fn airtime(&self, len: usize) -> Duration {
        (**self).airtime(len)
    }
    fn local_addr(&self) -> LinkAddr {
        (**self).local_addr()
    }
    fn stats(&self) -> LinkStats {
        (**self).stats()
    }
}

/// Returns [`LinkError::Oversize`] when `len` exceeds `mtu`.
pub(crate) fn check_mtu(len: usize, mtu: usize) -> Result<(), LinkError> {
    if len > mtu {
        Err(LinkError::Oversize { len, mtu })
    } else {
        Ok(())
    }
}

/// Both halves of an open link: a sender `tx` and the bounded queue of received frames.
#[derive(Debug)]
pub struct Endpoint<T> {
    /// The sending half; clone it (or wrap it in an `Arc`) to send from several tasks.
    pub tx: T,
    /// Frames received on the link.
    pub rx: mpsc::Receiver<Datagram>,
}

impl<T: Link> Endpoint<T> {
    /// Sends one frame (see [`Link::send`]).
    pub async fn send(&self, dest: LinkAddr, payload: &[u8]) -> Result<(), LinkError> {
        self.tx.send(dest, payload).await
    }

    /// Waits for the next received frame; `None` once the link has shut down.
    pub async fn recv(&mut self) -> Option<Datagram> {
        self.rx.recv().await
    }

    /// Separates the halves.
    pub fn split(self) -> (T, mpsc::Receiver<Datagram>) {
        (self.tx, self.rx)
    }

    /// Erases the sender's type, so that links of different kinds fit one collection.
    pub fn into_dyn(self) -> Endpoint<Arc<dyn Link>>
    where
        T: 'static,
    {
        Endpoint {
            tx: Arc::new(self.tx),
            rx: self.rx,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn via_strings() {
        assert_eq!(LinkKind::Lora.as_str(), "lora");
        assert_eq!(LinkKind::Sim.as_str(), "lora");
        assert_eq!(LinkKind::Ble.as_str(), "ble");
        assert_eq!(LinkKind::Udp.as_str(), "udp");
    }

    #[test]
    fn addr_text_round_trip() {
        for a in [
            LinkAddr::Broadcast,
            LinkAddr::Unknown,
            LinkAddr::Id(42),
            LinkAddr::Ip("10.77.0.1:47007".parse().unwrap()),
            LinkAddr::Ip("[fe80::1]:5".parse().unwrap()),
            LinkAddr::Ble([0xde, 0xad, 0xbe, 0xef, 0x00, 0x01]),
        ] {
            assert_eq!(a.to_string().parse::<LinkAddr>().unwrap(), a, "{a}");
        }
        assert!("id:x".parse::<LinkAddr>().is_err());
        assert!("zz:zz:zz:zz:zz:zz".parse::<LinkAddr>().is_err());
        assert!("".parse::<LinkAddr>().is_err());
    }

    #[test]
    fn mtu_check() {
        assert!(check_mtu(220, 220).is_ok());
        assert!(matches!(
            check_mtu(221, 220),
            Err(LinkError::Oversize { len: 221, mtu: 220 })
        ));
    }
}
