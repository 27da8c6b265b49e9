//! [`ArqStream`]: the ARQ state machine driven over a link by a background task.

use std::{
    hash::{Hash, Hasher},
    io,
    pin::Pin,
    sync::{Arc, Mutex, MutexGuard},
    task::{Context, Poll, Waker},
    time::Duration,
};

use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    sync::{mpsc, Notify},
    task::JoinHandle,
    time::Instant,
};
use tracing::debug;

use super::{
    arq::{Arq, ArqStats},
    wire::{Packet, ACK_LEN},
    ArqConfig, ArqError,
};
use crate::{Datagram, Link, LinkAddr, LinkError};

struct Inner {
    arq: Arq,
    read_waker: Option<Waker>,
    write_waker: Option<Waker>,
    /// The application dropped its handle; the driver lingers, then stops.
    dropped: bool,
}

impl Inner {
    fn wake_all(&mut self) {
        if let Some(w) = self.read_waker.take() {
            w.wake();
        }
        if let Some(w) = self.write_waker.take() {
            w.wake();
        }
    }
}

struct Shared {
    inner: Mutex<Inner>,
    /// Wakes the driver when the application reads, writes or shuts down.
    notify: Notify,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock can only leave the ARQ state as consistent as the
        // last completed call, which is what we keep using.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A reliable ordered byte stream to one station over a link. Implements tokio's
/// `AsyncRead` and `AsyncWrite`.
///
/// Dropping it does not stop the driver task at once: like TCP's TIME-WAIT, it lingers for
/// [`ArqConfig::linger`] to finish sending what was written and to re-acknowledge the peer's
/// retransmissions (its last ACK may have been lost), then stops.
pub struct ArqStream {
    shared: Arc<Shared>,
    _driver: JoinHandle<()>,
}

impl std::fmt::Debug for ArqStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArqStream").finish_non_exhaustive()
    }
}

impl ArqStream {
    /// Starts a stream to `peer` with connection id `conn` (both ends use the same id), over
    /// the sending half `tx` and the receive queue `rx` of a link endpoint. Must be called
    /// inside a tokio runtime.
    pub fn new<T: Link + 'static>(
        tx: T,
        rx: mpsc::Receiver<Datagram>,
        peer: LinkAddr,
        conn: u16,
        config: ArqConfig,
    ) -> ArqStream {
        let mtu = tx.mtu();
        let linger = config.linger;
        // One frame each way, twice (the peer may be mid-transmission), plus processing.
        let rto = config.rto.unwrap_or_else(|| {
            (tx.airtime(mtu) + tx.airtime(ACK_LEN)) * 2 + Duration::from_millis(250)
        });
        // Distinct per station and connection, and reproducible (SipHash with fixed keys).
        let seed = {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            (tx.local_addr(), peer, conn).hash(&mut h);
            h.finish()
        };
        let arq = Arq::new(config, conn, mtu, rto, seed, Instant::now());
        let shared = Arc::new(Shared {
            inner: Mutex::new(Inner {
                arq,
                read_waker: None,
                write_waker: None,
                dropped: false,
            }),
            notify: Notify::new(),
        });
        let driver = tokio::spawn(drive(tx, rx, peer, linger, shared.clone()));
        ArqStream {
            shared,
            _driver: driver,
        }
    }

    /// The connection's counters.
    pub fn stats(&self) -> ArqStats {
        self.shared.lock().arq.stats
    }

    /// Why the stream failed, if it has.
    pub fn error(&self) -> Option<ArqError> {
        self.shared.lock().arq.error().cloned()
    }
}

impl Drop for ArqStream {
    fn drop(&mut self) {
        self.shared.lock().dropped = true;
        self.shared.notify.notify_one();
    }
}

fn accepts(peer: LinkAddr, from: LinkAddr) -> bool {
    // A KISS TNC cannot tell senders apart; the connection id does.
    from == peer || from == LinkAddr::Unknown || peer == LinkAddr::Broadcast
}

async fn drive<T: Link>(
    tx: T,
    mut rx: mpsc::Receiver<Datagram>,
    peer: LinkAddr,
    linger: Duration,
    shared: Arc<Shared>,
) {
    let mut linger_until: Option<Instant> = None;
    let handle = |inner: &mut Inner, d: Datagram| {
        if accepts(peer, d.from) {
            if let Some(p) = Packet::decode(&d.payload) {
                inner.arq.on_packet(p, Instant::now());
            }
        }
    };
    loop {
        let (packet, deadline) = {
            let mut inner = shared.lock();
            loop {
                match rx.try_recv() {
                    Ok(d) => handle(&mut inner, d),
                    Err(mpsc::error::TryRecvError::Empty) => break,
                    Err(mpsc::error::TryRecvError::Disconnected) => {
                        inner.arq.fail(ArqError::Link("link closed".into()));
                        break;
                    }
                }
            }
            let now = Instant::now();
            if inner.dropped {
                let until = *linger_until.get_or_insert(now + linger);
                if now >= until {
                    return;
                }
            }
            let packet = inner.arq.poll_transmit(now);
            let mut deadline = inner.arq.next_deadline();
            if let Some(until) = linger_until {
                deadline = deadline.min(until);
            }
            inner.wake_all();
            if inner.arq.error().is_some() {
                debug!(error = ?inner.arq.error(), %peer, "ARQ stream failed");
                return;
            }
            (packet, deadline)
        };
        if let Some(packet) = packet {
            let bytes = packet.encode();
            loop {
                match tx.send(peer, &bytes).await {
                    Ok(()) => break,
                    Err(LinkError::DutyCycle { retry_after }) if retry_after != Duration::MAX => {
                        // The radio may not send yet: wait for the budget, then send the same
                        // packet, so waiting does not count as a lost transmission.
                        tokio::time::sleep(retry_after).await;
                    }
                    Err(e) => {
                        let mut inner = shared.lock();
                        inner.arq.fail(ArqError::Link(e.to_string()));
                        inner.wake_all();
                        return;
                    }
                }
            }
            continue;
        }
        tokio::select! {
            d = rx.recv() => {
                let mut inner = shared.lock();
                match d {
                    Some(d) => handle(&mut inner, d),
                    None => inner.arq.fail(ArqError::Link("link closed".into())),
                }
            }
            _ = shared.notify.notified() => {}
            _ = tokio::time::sleep_until(deadline) => {}
        }
    }
}

fn io_error(e: &ArqError) -> io::Error {
    let kind = match e {
        ArqError::Unacknowledged(_) | ArqError::PeerSilent(_) => io::ErrorKind::TimedOut,
        ArqError::Link(_) => io::ErrorKind::BrokenPipe,
    };
    io::Error::new(kind, e.clone())
}

impl AsyncRead for ArqStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        let mut inner = self.shared.lock();
        let n = inner.arq.read(buf.initialize_unfilled());
        if n > 0 {
            buf.advance(n);
            drop(inner);
            self.shared.notify.notify_one();
            return Poll::Ready(Ok(()));
        }
        if inner.arq.eof() {
            return Poll::Ready(Ok(()));
        }
        if let Some(e) = inner.arq.error() {
            return Poll::Ready(Err(io_error(e)));
        }
        inner.read_waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

impl AsyncWrite for ArqStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let mut inner = self.shared.lock();
        if let Some(e) = inner.arq.error() {
            return Poll::Ready(Err(io_error(e)));
        }
        let n = inner.arq.write(buf);
        if n > 0 {
            drop(inner);
            self.shared.notify.notify_one();
            return Poll::Ready(Ok(n));
        }
        inner.write_waker = Some(cx.waker().clone());
        Poll::Pending
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut inner = self.shared.lock();
        if inner.arq.flushed() {
            return Poll::Ready(Ok(()));
        }
        if let Some(e) = inner.arq.error() {
            return Poll::Ready(Err(io_error(e)));
        }
        inner.write_waker = Some(cx.waker().clone());
        Poll::Pending
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut inner = self.shared.lock();
        let newly = inner.arq.request_fin();
        if inner.arq.fin_acked() {
            return Poll::Ready(Ok(()));
        }
        if let Some(e) = inner.arq.error() {
            return Poll::Ready(Err(io_error(e)));
        }
        inner.write_waker = Some(cx.waker().clone());
        drop(inner);
        // Only news wakes the driver: notifying on every poll would ping-pong with the
        // driver's wake-ups and never let (simulated) time advance.
        if newly {
            self.shared.notify.notify_one();
        }
        Poll::Pending
    }
}

#[cfg(test)]
#[path = "stream_tests.rs"]
mod tests;
