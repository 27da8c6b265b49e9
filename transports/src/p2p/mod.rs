//! [`RadioTransport`]: a libp2p [`Transport`] over a radio [`Link`].
//!
//! A connection is one [`ArqStream`] (segmentation to the link MTU, selective-repeat ARQ with
//! a window, keep-alive), so the stock upgrades run on it as on a TCP socket:
//!
//! ```no_run
//! use libp2p::{core::{transport::Transport as _, upgrade::Version}, identity, noise, yamux};
//! use offgrid_transports::{p2p::{Config, RadioTransport}, sim::{SimConfig, SimMedium}, LinkAddr};
//! # async fn f() -> Result<(), Box<dyn std::error::Error>> {
//! let key = identity::Keypair::generate_ed25519();
//! let medium = SimMedium::new(SimConfig::default());
//! let (radio, _beacons) =
//!     RadioTransport::new("sim0", medium.attach(LinkAddr::Id(1)), Config::default())?;
//! let transport = radio
//!     .upgrade(Version::V1Lazy)
//!     .authenticate(noise::Config::new(&key)?)
//!     .multiplex(yamux::Config::default())
//!     .boxed();
//! # Ok(()) }
//! ```
//!
//! **Addresses.** A station is `/offgrid-radio/<link>/<addr>`; as a multiaddr that is
//! `/unix/offgrid-radio:<link>:<addr>` (see [`RadioAddr`] for the mapping and why `/unix`).
//! One transport serves one link, whose name it is given; several links are several
//! transports joined with `or_transport`. Addresses of other links or protocols are refused
//! with [`TransportError::MultiaddrNotSupported`], so the Swarm tries its other transports.
//!
//! **Connections.** The link is shared through a [`Demux`], so beacons keep flowing beside
//! the streams. Dialling picks a free connection id and returns a future that does nothing
//! until polled; the remote station learns of the connection from its first segment, which
//! the dialer always sends first (multistream-select and Noise both start with the
//! initiator). On the listening side a new connection id becomes
//! [`TransportEvent::Incoming`]. At most [`Config::max_streams`] connections, in and out and
//! lingering ones included, are open on a link at once; beyond it a dial fails with
//! [`Error::Demux`] and inbound first segments are dropped.
//!
//! **What runs on it.** Radio connections carry only the small protocols (announce,
//! quote/auction, tx witness); bulk shards and the gossipsub mesh stay on IP. The bytes a
//! stock connection setup costs here are measured in `node/benches/radio_airtime.rs`.
//!
//! **KISS.** A TNC carries no addresses: its stations listen and are dialled at `*`, the
//! frames go to everyone in range and the connection id picks the stream. A third station on
//! the same channel sees the first segment of a connection not meant for it and opens an
//! inbound stream that fails its Noise handshake and times out; addressing on KISS belongs
//! to a future link header.

mod addr;

use std::{
    collections::VecDeque,
    io,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, Waker},
};

use futures::{
    future::{self, BoxFuture, Ready},
    FutureExt,
};
use libp2p_core::{
    multiaddr::Multiaddr,
    transport::{DialOpts, ListenerId, Transport, TransportError, TransportEvent},
    Endpoint as Role,
};
use tokio::{io::ReadBuf, sync::mpsc};
use tracing::debug;

pub use addr::{RadioAddr, RadioAddrError, MAX_LINK_NAME, RADIO_TAG};

use crate::{
    demux::{Demux, DemuxError, Inbound},
    frag::{ArqConfig, ArqStats, ArqStream},
    Datagram, Endpoint, Link, LinkAddr,
};

/// Settings of a [`RadioTransport`].
#[derive(Clone, Debug)]
pub struct Config {
    /// Settings of every connection's ARQ stream.
    pub arq: ArqConfig,
    /// Connections open on the link at once (in and out, lingering ones included).
    pub max_streams: usize,
    /// Capacity of the beacon queue and of the queue of inbound connections not yet polled.
    pub queue: usize,
}

impl Default for Config {
    /// Default ARQ settings, 16 connections, queues of 16.
    fn default() -> Self {
        Config {
            arq: ArqConfig::default(),
            max_streams: 16,
            queue: 16,
        }
    }
}

impl Config {
    /// Sets the ARQ settings of every connection.
    pub fn with_arq(mut self, arq: ArqConfig) -> Self {
        self.arq = arq;
        self
    }

    /// Sets the connection limit (at least 1).
    pub fn with_max_streams(mut self, max_streams: usize) -> Self {
        self.max_streams = max_streams.max(1);
        self
    }

    /// Sets the queue capacities (at least 1).
    pub fn with_queue(mut self, queue: usize) -> Self {
        self.queue = queue.max(1);
        self
    }
}

/// Why a transport operation failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The connection limit is reached (or, rarely, the chosen connection id was taken).
    #[error(transparent)]
    Demux(#[from] DemuxError),
    /// The transport listens already: there is one listener per link.
    #[error("already listening on {0}")]
    AlreadyListening(RadioAddr),
    /// The link has closed; nothing more can be accepted or listened on.
    #[error("radio link closed")]
    LinkClosed,
    /// Dialling in the listener role (hole punching) means nothing on a broadcast medium.
    #[error("dialling as listener is not supported on a radio link")]
    ListenerRole,
}

struct Listener {
    id: ListenerId,
    addr: RadioAddr,
}

/// A libp2p transport over one radio link. Its output is a [`RadioStream`].
pub struct RadioTransport {
    link: String,
    tx: Arc<dyn Link>,
    demux: Demux,
    accept: mpsc::Receiver<Inbound>,
    accept_closed: bool,
    listener: Option<Listener>,
    events: VecDeque<TransportEvent<<Self as Transport>::ListenerUpgrade, Error>>,
    waker: Option<Waker>,
    config: Config,
}

impl std::fmt::Debug for RadioTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RadioTransport")
            .field("link", &self.link)
            .field("local_addr", &self.tx.local_addr())
            .finish_non_exhaustive()
    }
}

/// Where frames for a station heard at `addr` go: a KISS TNC has no addresses, so to all.
fn send_addr(addr: LinkAddr) -> LinkAddr {
    match addr {
        LinkAddr::Unknown => LinkAddr::Broadcast,
        a => a,
    }
}

impl RadioTransport {
    /// A transport over the link `endpoint`, named `link` in addresses. Starts a [`Demux`] on
    /// the link (so it must be called inside a tokio runtime) and returns the queue of
    /// beacons heard on it beside the transport; dropping that queue is fine (beacons are
    /// then dropped and counted).
    pub fn new<T: Link + 'static>(
        link: &str,
        endpoint: Endpoint<T>,
        config: Config,
    ) -> Result<(Self, mpsc::Receiver<Datagram>), RadioAddrError> {
        // Validate before anything is spawned.
        RadioAddr::new(link, LinkAddr::Broadcast)?;
        let (tx, rx) = endpoint.split();
        let (demux, beacons, accept) = Demux::spawn(rx, config.max_streams, config.queue);
        let t = Self::with_demux(link, Arc::new(tx), demux, accept, config)?;
        Ok((t, beacons))
    }

    /// A transport over a link whose receive side already runs through `demux`, taking its
    /// accept queue. `config.max_streams` and `config.queue` are then those of the demux.
    pub fn with_demux(
        link: &str,
        tx: Arc<dyn Link>,
        demux: Demux,
        accept: mpsc::Receiver<Inbound>,
        config: Config,
    ) -> Result<Self, RadioAddrError> {
        RadioAddr::new(link, LinkAddr::Broadcast)?;
        Ok(RadioTransport {
            link: link.to_owned(),
            tx,
            demux,
            accept,
            accept_closed: false,
            listener: None,
            events: VecDeque::new(),
            waker: None,
            config,
        })
    }

    /// This station's address: the link's own address, or `*` when it has none (KISS).
    pub fn local_addr(&self) -> RadioAddr {
        RadioAddr::known(&self.link, send_addr(self.tx.local_addr()))
    }

    /// The demultiplexer, for its counters and for routing other streams on the same link.
    pub fn demux(&self) -> &Demux {
        &self.demux
    }

    /// The link's sending half, for its counters.
    pub fn link(&self) -> &Arc<dyn Link> {
        &self.tx
    }

    fn radio_addr(&self, addr: &Multiaddr) -> Option<RadioAddr> {
        RadioAddr::from_multiaddr(addr)
            .ok()
            .filter(|a| a.link() == self.link)
    }

    fn push(&mut self, event: TransportEvent<<Self as Transport>::ListenerUpgrade, Error>) {
        self.events.push_back(event);
        if let Some(w) = self.waker.take() {
            w.wake();
        }
    }
}

impl Transport for RadioTransport {
    type Output = RadioStream;
    type Error = Error;
    type ListenerUpgrade = Ready<Result<RadioStream, Error>>;
    type Dial = BoxFuture<'static, Result<RadioStream, Error>>;

    /// Listens on `/offgrid-radio/<link>/<addr>` where `<addr>` is this station's own
    /// address or `*` (any, like `0.0.0.0`); reports the station's own address.
    fn listen_on(&mut self, id: ListenerId, addr: Multiaddr) -> Result<(), TransportError<Error>> {
        let Some(want) = self.radio_addr(&addr) else {
            return Err(TransportError::MultiaddrNotSupported(addr));
        };
        let local = self.local_addr();
        if !matches!(want.addr(), LinkAddr::Broadcast | LinkAddr::Unknown)
            && want.addr() != local.addr()
        {
            return Err(TransportError::MultiaddrNotSupported(addr));
        }
        if self.accept_closed {
            return Err(TransportError::Other(Error::LinkClosed));
        }
        if let Some(l) = &self.listener {
            return Err(TransportError::Other(Error::AlreadyListening(
                l.addr.clone(),
            )));
        }
        debug!(link = %self.link, %local, "radio listener started");
        self.listener = Some(Listener {
            id,
            addr: local.clone(),
        });
        self.push(TransportEvent::NewAddress {
            listener_id: id,
            listen_addr: local.to_multiaddr(),
        });
        Ok(())
    }

    fn remove_listener(&mut self, id: ListenerId) -> bool {
        if self.listener.as_ref().is_none_or(|l| l.id != id) {
            return false;
        }
        self.listener = None;
        self.push(TransportEvent::ListenerClosed {
            listener_id: id,
            reason: Ok(()),
        });
        true
    }

    fn dial(
        &mut self,
        addr: Multiaddr,
        opts: DialOpts,
    ) -> Result<Self::Dial, TransportError<Error>> {
        let Some(target) = self.radio_addr(&addr) else {
            return Err(TransportError::MultiaddrNotSupported(addr));
        };
        if opts.role == Role::Listener {
            return Err(TransportError::Other(Error::ListenerRole));
        }
        let (tx, demux, arq) = (self.tx.clone(), self.demux.clone(), self.config.arq.clone());
        let link = self.link.clone();
        Ok(async move {
            // `free_conn` and `register` are two steps; another dial may take the id between
            // them, in which case pick again (ids are random among 65536).
            let (conn, rx) = loop {
                let conn = demux.free_conn();
                match demux.register(conn) {
                    Ok(rx) => break (conn, rx),
                    Err(DemuxError::InUse(_)) => continue,
                    Err(e) => return Err(e.into()),
                }
            };
            debug!(%link, peer = %target.addr(), conn, "radio dial");
            let stream = ArqStream::new(tx, rx, send_addr(target.addr()), conn, arq);
            Ok(RadioStream::new(stream, conn))
        }
        .boxed())
    }

    fn poll(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<TransportEvent<Self::ListenerUpgrade, Error>> {
        let this = &mut *self;
        if let Some(event) = this.events.pop_front() {
            return Poll::Ready(event);
        }
        while !this.accept_closed {
            match this.accept.poll_recv(cx) {
                Poll::Ready(Some(inbound)) => {
                    let Some(l) = &this.listener else {
                        // Dropping the queue releases the route; the dialer times out.
                        debug!(link = %this.link, conn = inbound.conn, "no listener: inbound radio connection dropped");
                        continue;
                    };
                    let peer = send_addr(inbound.from);
                    debug!(link = %this.link, %peer, conn = inbound.conn, "inbound radio connection");
                    let stream = ArqStream::new(
                        this.tx.clone(),
                        inbound.rx,
                        peer,
                        inbound.conn,
                        this.config.arq.clone(),
                    );
                    let send_back = RadioAddr::known(&this.link, peer);
                    return Poll::Ready(TransportEvent::Incoming {
                        listener_id: l.id,
                        upgrade: future::ready(Ok(RadioStream::new(stream, inbound.conn))),
                        local_addr: l.addr.to_multiaddr(),
                        send_back_addr: send_back.to_multiaddr(),
                    });
                }
                Poll::Ready(None) => {
                    this.accept_closed = true;
                    if let Some(l) = this.listener.take() {
                        return Poll::Ready(TransportEvent::ListenerClosed {
                            listener_id: l.id,
                            reason: Err(Error::LinkClosed),
                        });
                    }
                }
                Poll::Pending => break,
            }
        }
        this.waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

/// One radio connection: an [`ArqStream`] with the `futures` I/O traits libp2p upgrades use.
#[derive(Debug)]
pub struct RadioStream {
    inner: ArqStream,
    conn: u16,
}

impl RadioStream {
    fn new(inner: ArqStream, conn: u16) -> Self {
        RadioStream { inner, conn }
    }

    /// The connection id on the link.
    pub fn conn(&self) -> u16 {
        self.conn
    }

    /// The ARQ counters of this connection.
    pub fn stats(&self) -> ArqStats {
        self.inner.stats()
    }

    /// The underlying stream.
    pub fn into_inner(self) -> ArqStream {
        self.inner
    }
}

impl futures::io::AsyncRead for RadioStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let mut rb = ReadBuf::new(buf);
        match tokio::io::AsyncRead::poll_read(Pin::new(&mut self.inner), cx, &mut rb) {
            Poll::Ready(Ok(())) => Poll::Ready(Ok(rb.filled().len())),
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl futures::io::AsyncWrite for RadioStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        tokio::io::AsyncWrite::poll_write(Pin::new(&mut self.inner), cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        tokio::io::AsyncWrite::poll_flush(Pin::new(&mut self.inner), cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        tokio::io::AsyncWrite::poll_shutdown(Pin::new(&mut self.inner), cx)
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod swarm_tests;
