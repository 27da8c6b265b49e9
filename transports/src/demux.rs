//! [`Demux`]: one link shared by beacons and several [`ArqStream`](crate::frag::ArqStream)s.
//!
//! An `ArqStream` owns a receive queue and ignores frames of other connections, so a link
//! that carries beacons and more than one stream needs a router in front. The demultiplexer
//! owns the link's receive queue and sorts every frame by its first byte:
//! - `0x4F` (the beacon magic) → the beacon queue;
//! - an ARQ packet ([`crate::frag::wire`]) → the queue of its connection id, or, for the
//!   first DATA segment of an unknown connection, a new inbound stream announced on the
//!   accept queue (the way a listener hands out sockets);
//! - anything else is counted as malformed and dropped.
//!
//! Every queue is bounded; a full queue drops the frame (the ARQ retransmits it), and at
//! most `max_streams` connections are routed at once.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
};

use tokio::sync::mpsc;

use crate::{beacon, frag::wire::Packet, Datagram, LinkAddr};

/// Capacity of each per-connection queue.
pub const STREAM_QUEUE: usize = 32;

/// A stream opened by a remote station.
#[derive(Debug)]
pub struct Inbound {
    /// The connection id the remote chose.
    pub conn: u16,
    /// Who sent the first segment, as the link layer knows it.
    pub from: LinkAddr,
    /// The connection's frames, the first segment included; pass it to `ArqStream::new`.
    pub rx: mpsc::Receiver<Datagram>,
}

/// Counters of a demultiplexer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DemuxStats {
    /// Frames routed to the beacon queue.
    pub beacons: u64,
    /// Frames routed to a stream.
    pub stream_frames: u64,
    /// Inbound streams accepted.
    pub accepted: u64,
    /// Frames that were neither a beacon nor an ARQ packet.
    pub malformed: u64,
    /// Frames dropped because a queue was full or the stream limit was reached.
    pub dropped: u64,
}

#[derive(Default)]
struct Counters {
    beacons: AtomicU64,
    stream_frames: AtomicU64,
    accepted: AtomicU64,
    malformed: AtomicU64,
    dropped: AtomicU64,
}

struct Routes {
    streams: Mutex<HashMap<u16, mpsc::Sender<Datagram>>>,
    max_streams: usize,
    counters: Counters,
}

impl Routes {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u16, mpsc::Sender<Datagram>>> {
        // The map stays consistent whatever panicked while holding it (single inserts/removes).
        self.streams.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A cloneable handle to register outbound connections with a running demultiplexer.
#[derive(Clone)]
pub struct Demux {
    routes: Arc<Routes>,
}

impl std::fmt::Debug for Demux {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Demux").finish_non_exhaustive()
    }
}

/// Why a connection could not be registered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DemuxError {
    /// The connection id is already routed.
    #[error("connection id {0} is in use")]
    InUse(u16),
    /// `max_streams` connections are routed already.
    #[error("too many streams on this link")]
    TooMany,
}

impl Demux {
    /// Starts routing the frames of `rx` (a link endpoint's receive queue). Returns the handle,
    /// the beacon queue and the accept queue. Must be called inside a tokio runtime; the
    /// routing task ends when the link closes.
    pub fn spawn(
        mut rx: mpsc::Receiver<Datagram>,
        max_streams: usize,
        queue: usize,
    ) -> (Demux, mpsc::Receiver<Datagram>, mpsc::Receiver<Inbound>) {
        let routes = Arc::new(Routes {
            streams: Mutex::new(HashMap::new()),
            max_streams: max_streams.max(1),
            counters: Counters::default(),
        });
        let (beacon_tx, beacon_rx) = mpsc::channel(queue.max(1));
        let (accept_tx, accept_rx) = mpsc::channel(queue.max(1));
        let r = routes.clone();
        tokio::spawn(async move {
            while let Some(d) = rx.recv().await {
                route(&r, d, &beacon_tx, &accept_tx);
            }
        });
        (Demux { routes }, beacon_rx, accept_rx)
    }

    /// Routes connection `conn` to a new queue (for an outbound `ArqStream`).
    pub fn register(&self, conn: u16) -> Result<mpsc::Receiver<Datagram>, DemuxError> {
        let mut map = self.routes.lock();
        map.retain(|_, tx| !tx.is_closed());
        if map.contains_key(&conn) {
            return Err(DemuxError::InUse(conn));
        }
        if map.len() >= self.routes.max_streams {
            return Err(DemuxError::TooMany);
        }
        let (tx, rx) = mpsc::channel(STREAM_QUEUE);
        map.insert(conn, tx);
        Ok(rx)
    }

    /// A connection id not routed now (random, so that two stations rarely pick the same).
    pub fn free_conn(&self) -> u16 {
        let map = self.routes.lock();
        loop {
            let c: u16 = rand::random();
            if !map.contains_key(&c) {
                return c;
            }
        }
    }

    /// Connections routed now (including lingering ones).
    pub fn streams(&self) -> usize {
        let mut map = self.routes.lock();
        map.retain(|_, tx| !tx.is_closed());
        map.len()
    }

    /// The counters.
    pub fn stats(&self) -> DemuxStats {
        let c = &self.routes.counters;
        DemuxStats {
            beacons: c.beacons.load(Ordering::Relaxed),
            stream_frames: c.stream_frames.load(Ordering::Relaxed),
            accepted: c.accepted.load(Ordering::Relaxed),
            malformed: c.malformed.load(Ordering::Relaxed),
            dropped: c.dropped.load(Ordering::Relaxed),
        }
    }
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

fn route(
    routes: &Routes,
    d: Datagram,
    beacons: &mpsc::Sender<Datagram>,
    accept: &mpsc::Sender<Inbound>,
) {
    let c = &routes.counters;
    if d.payload.first() == Some(&beacon::MAGIC) {
        match beacons.try_send(d) {
            Ok(()) => bump(&c.beacons),
            Err(_) => bump(&c.dropped),
        }
        return;
    }
    let Some(packet) = Packet::decode(&d.payload) else {
        bump(&c.malformed);
        return;
    };
    let conn = packet.conn();
    let mut map = routes.lock();
    if let Some(tx) = map.get(&conn) {
        match tx.try_send(d) {
            Ok(()) => bump(&c.stream_frames),
            Err(mpsc::error::TrySendError::Full(_)) => bump(&c.dropped),
            Err(mpsc::error::TrySendError::Closed(_)) => {
                // The stream has finished lingering; its late frames go nowhere.
                map.remove(&conn);
                bump(&c.dropped);
            }
        }
        return;
    }
    // Only the first segment opens a connection; anything else is a leftover of an old one.
    if !matches!(packet, Packet::Data { seq: 0, .. }) {
        bump(&c.dropped);
        return;
    }
    map.retain(|_, tx| !tx.is_closed());
    if map.len() >= routes.max_streams {
        bump(&c.dropped);
        return;
    }
    let (tx, rx) = mpsc::channel(STREAM_QUEUE);
    let from = d.from;
    if tx.try_send(d).is_err() {
        bump(&c.dropped);
        return;
    }
    match accept.try_send(Inbound { conn, from, rx }) {
        Ok(()) => {
            map.insert(conn, tx);
            bump(&c.accepted);
            bump(&c.stream_frames);
        }
        Err(_) => bump(&c.dropped),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;
    use crate::{
        frag::{ArqConfig, ArqStream},
        lora::LoraParams,
        sim::{SimConfig, SimMedium},
        Link,
    };

    #[tokio::test(start_paused = true)]
    async fn beacons_and_two_streams_share_one_link() {
        let medium = SimMedium::new(
            SimConfig::default()
                .with_lora(LoraParams::new(7, 125_000))
                .with_loss(0.1)
                .with_seed(7),
        );
        let (a_tx, a_rx) = medium.attach(LinkAddr::Id(1)).split();
        let (b_tx, b_rx) = medium.attach(LinkAddr::Id(2)).split();
        let (a, _a_beacons, _a_accept) = Demux::spawn(a_rx, 8, 16);
        let (_b, mut b_beacons, mut b_accept) = Demux::spawn(b_rx, 8, 16);

        let key = ed25519_dalek::SigningKey::from_bytes(&[9; 32]);
        let frame = beacon::Beacon::new(&key.verifying_key(), 1)
            .encode_signed(&key)
            .unwrap();
        let mut streams = Vec::new();
        for i in 0..2u16 {
            let conn = a.free_conn();
            let rx = a.register(conn).unwrap();
            let mut s = ArqStream::new(
                a_tx.clone(),
                rx,
                LinkAddr::Id(2),
                conn,
                ArqConfig::default(),
            );
            streams.push(tokio::spawn(async move {
                s.write_all(format!("stream {i}").as_bytes()).await.unwrap();
                s.shutdown().await.unwrap();
                s
            }));
        }
        // Retry the beacon until one copy crosses the lossy medium.
        let got = loop {
            a_tx.send(LinkAddr::Broadcast, &frame).await.unwrap();
            if let Ok(Some(d)) =
                tokio::time::timeout(Duration::from_secs(2), b_beacons.recv()).await
            {
                break d;
            }
        };
        assert_eq!(got.payload, frame);
        let mut texts = Vec::new();
        for _ in 0..2 {
            let inbound = b_accept.recv().await.unwrap();
            assert_eq!(inbound.from, LinkAddr::Id(1));
            let mut s = ArqStream::new(
                b_tx.clone(),
                inbound.rx,
                inbound.from,
                inbound.conn,
                ArqConfig::default(),
            );
            let mut text = String::new();
            s.read_to_string(&mut text).await.unwrap();
            texts.push(text);
        }
        texts.sort();
        assert_eq!(texts, ["stream 0", "stream 1"]);
        for w in streams {
            w.await.unwrap();
        }
        assert!(a.stats().stream_frames > 0);
    }

    #[tokio::test]
    async fn garbage_is_counted_and_old_segments_open_nothing() {
        let (tx, rx) = mpsc::channel(8);
        let (d, _beacons, mut accept) = Demux::spawn(rx, 1, 4);
        let send = |p: Vec<u8>| Datagram {
            from: LinkAddr::Unknown,
            payload: p,
        };
        tx.send(send(vec![0x00, 1, 2])).await.unwrap();
        tx.send(send(
            Packet::Data {
                conn: 5,
                seq: 3,
                fin: false,
                payload: vec![1],
            }
            .encode(),
        ))
        .await
        .unwrap();
        tx.send(send(
            Packet::Data {
                conn: 6,
                seq: 0,
                fin: false,
                payload: vec![1],
            }
            .encode(),
        ))
        .await
        .unwrap();
        let inbound = accept.recv().await.unwrap();
        assert_eq!(inbound.conn, 6);
        // The stream limit (1) is reached: a second connection is refused.
        assert_eq!(d.register(7).unwrap_err(), DemuxError::TooMany);
        let s = d.stats();
        assert_eq!((s.malformed, s.dropped, s.accepted), (1, 1, 1));
    }
}
