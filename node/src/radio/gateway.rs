//! The gateway: beacons out and in, sessions to radio peers, and the counters behind
//! `GET /radio`.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use libp2p::PeerId;
use offgrid_behaviours::auction::{Request, Response};
use offgrid_transports::{
    beacon::{Beacon, BeaconAddr, BeaconFilter, Capabilities, Flags},
    demux::{Demux, Inbound},
    frag::{ArqConfig, ArqStream},
    lora::AnnounceBudget,
    Datagram, Link, LinkAddr, LinkError, LinkKind,
};
use tokio::sync::{mpsc, Notify, Semaphore};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::{
    config::RadioConfig,
    link::Budgeted,
    session::Session,
    wire::{self, ReceiptContext},
    BeaconInfo, LinkStatus, RadioStatus,
};
use crate::{identity::Identity, now_ms};

/// Sessions served at once per link.
const MAX_INBOUND_SESSIONS: usize = 8;
/// A session unused this long is closed.
const SESSION_IDLE: Duration = Duration::from_secs(60);
/// Shortest gap between two beacons on one link, even when a new peer asks for one.
const MIN_BEACON_GAP: Duration = Duration::from_millis(500);

/// One open link.
pub(super) struct LinkState {
    pub(super) name: String,
    pub(super) cfg: RadioConfig,
    pub(super) tx: Arc<Budgeted>,
    pub(super) demux: Demux,
    announce: Mutex<AnnounceBudget>,
    beacons_sent: AtomicU64,
    beacons_heard: AtomicU64,
    beacon_bytes: AtomicU64,
}

#[derive(Debug, Clone)]
struct Heard {
    link: usize,
    addr: LinkAddr,
    key: [u8; 32],
    last_ms: u64,
}

/// Added to three beacon intervals before a silent radio peer expires (beacons start with
/// up to half a second of jitter, and a frame can wait for the channel).
const PEER_EXPIRY_SLACK: Duration = Duration::from_secs(2);

type SessionSlot = Arc<tokio::sync::Mutex<Option<(Session, tokio::time::Instant)>>>;

/// The running gateway. Shared by its tasks and the peer service.
pub struct Gateway {
    pub(super) identity: Identity,
    pub(super) wiring: super::Wiring,
    pub(super) cluster_id: String,
    pub(super) links: Vec<LinkState>,
    heard: Mutex<HashMap<PeerId, Heard>>,
    filter: Mutex<BeaconFilter>,
    sessions: Mutex<HashMap<PeerId, SessionSlot>>,
    beacon_now: Notify,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway").finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Every critical section here is a single insert, lookup or counter update.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The ARQ settings of radio sessions.
pub fn arq_config() -> ArqConfig {
    ArqConfig::default().with_keepalive(Duration::from_secs(30), Duration::from_secs(120))
}

/// Where to send frames for a station heard at `addr` (a KISS TNC has no addresses).
fn send_addr(addr: LinkAddr) -> LinkAddr {
    match addr {
        LinkAddr::Unknown => LinkAddr::Broadcast,
        a => a,
    }
}

fn addr_text(link: &str, addr: LinkAddr) -> String {
    let a = match addr {
        LinkAddr::Unknown | LinkAddr::Broadcast => "*".to_owned(),
        a => a.to_string(),
    };
    format!("/offgrid-radio/{link}/{a}")
}

/// The libp2p peer id of an Ed25519 public key.
pub fn peer_of(key: &[u8; 32]) -> Option<PeerId> {
    let pk = libp2p::identity::ed25519::PublicKey::try_from_bytes(key).ok()?;
    Some(libp2p::identity::PublicKey::from(pk).to_peer_id())
}

impl Gateway {
    pub(super) fn new(
        identity: Identity,
        wiring: super::Wiring,
        cluster_id: String,
        links: Vec<(String, RadioConfig, Arc<Budgeted>, Demux)>,
    ) -> Gateway {
        let links = links
            .into_iter()
            .map(|(name, cfg, tx, demux)| LinkState {
                announce: Mutex::new(AnnounceBudget::new(
                    cfg.announce_fraction,
                    Duration::from_secs(cfg.duty_window_s),
                )),
                name,
                cfg,
                tx,
                demux,
                beacons_sent: AtomicU64::new(0),
                beacons_heard: AtomicU64::new(0),
                beacon_bytes: AtomicU64::new(0),
            })
            .collect();
        Gateway {
            identity,
            wiring,
            cluster_id,
            links,
            heard: Mutex::new(HashMap::new()),
            filter: Mutex::new(BeaconFilter::default()),
            sessions: Mutex::new(HashMap::new()),
            beacon_now: Notify::new(),
        }
    }

    /// Builds this node's beacon from its current announcement.
    async fn beacon_frame(&self, seq: u32, link: &LinkState) -> Option<Vec<u8>> {
        let ann = self.wiring.announcement.borrow().clone();
        let mut caps = Capabilities::default();
        for t in &ann.job_types {
            caps = caps
                | if t == "echo" {
                    Capabilities::ECHO
                } else {
                    Capabilities::COMPUTE
                };
        }
        let price = ann
            .job_types
            .iter()
            .filter_map(|t| ann.prices.get(t))
            .min()
            .map(|p| u32::try_from(*p).unwrap_or(u32::MAX));
        let mut b =
            Beacon::new(&self.identity.signing_key().verifying_key(), seq).with_capabilities(caps);
        if ann.active {
            b = b.with_flags(Flags::ACTIVE);
        }
        if let Some(p) = price {
            b = b.with_price(p);
        }
        // IP addresses only on links that are not themselves IP, and only routable ones.
        if link.tx.kind() != LinkKind::Udp {
            for a in ann.listen_addrs.iter().filter_map(|a| ip_addr(a)).take(2) {
                b = b.with_addr(a);
            }
        }
        match b.encode_signed(self.identity.signing_key()) {
            Ok(f) => Some(f),
            Err(e) => {
                warn!(error = %e, "cannot sign beacon");
                None
            }
        }
    }

    /// Sends beacons on link `i` within its budgets until cancelled.
    pub(super) async fn beacon_loop(self: Arc<Self>, i: usize, cancel: CancellationToken) {
        let link = &self.links[i];
        let interval = Duration::from_secs(link.cfg.beacon_interval_s.max(1));
        let mut seq = u32::try_from(now_ms() / 1000).unwrap_or(u32::MAX);
        // A little jitter so that nodes started together do not collide forever.
        let mut wait = Duration::from_millis(50 + rand::random::<u64>() % 400);
        loop {
            tokio::select! {
                biased;
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
                _ = self.beacon_now.notified() => {
                    tokio::time::sleep(MIN_BEACON_GAP + Duration::from_millis(rand::random::<u64>() % 500)).await;
                }
            }
            seq = seq
                .saturating_add(1)
                .max(u32::try_from(now_ms() / 1000).unwrap_or(u32::MAX));
            let Some(frame) = self.beacon_frame(seq, link).await else {
                return; // the event loop has stopped
            };
            let airtime = link.tx.airtime(frame.len());
            let cap = lock(&link.announce).try_reserve(airtime, std::time::Instant::now());
            if let Err(after) = cap {
                debug!(link = %link.name, ?after, "announce cap reached; beacon deferred");
                wait = after.min(interval);
                continue;
            }
            match link.tx.send(LinkAddr::Broadcast, &frame).await {
                Ok(()) => {
                    link.beacons_sent.fetch_add(1, Ordering::Relaxed);
                    link.beacon_bytes
                        .store(frame.len() as u64, Ordering::Relaxed);
                    debug!(link = %link.name, seq, bytes = frame.len(), "beacon sent");
                }
                Err(LinkError::DutyCycle { retry_after }) => {
                    debug!(link = %link.name, ?retry_after, "duty cycle spent; beacon deferred");
                }
                Err(LinkError::AddrNotSupported(LinkAddr::Broadcast)) => {
                    // A BLE central cannot advertise: it only hears beacons.
                    info!(link = %link.name, "this link cannot broadcast; no beacons sent on it");
                    return;
                }
                Err(e) => warn!(link = %link.name, error = %e, "beacon not sent"),
            }
            // ±10 % jitter.
            wait = interval
                .mul_f64(0.9 + 0.2 * rand::random::<f64>())
                .max(lock(&link.announce).min_interval(airtime))
                .max(MIN_BEACON_GAP);
        }
    }

    /// Verifies beacons heard on link `i` and hands fresh ones to the event loop.
    pub(super) async fn hear_loop(
        self: Arc<Self>,
        i: usize,
        mut beacons: mpsc::Receiver<Datagram>,
        cancel: CancellationToken,
    ) {
        let link = &self.links[i];
        let own = self.identity.public_key();
        loop {
            let d = tokio::select! {
                biased;
                _ = cancel.cancelled() => return,
                d = beacons.recv() => match d { Some(d) => d, None => return },
            };
            let accepted = lock(&self.filter).accept(&d.payload);
            let b = match accepted {
                Ok(b) => b,
                Err(e) => {
                    debug!(link = %link.name, error = %e, "beacon dropped");
                    continue;
                }
            };
            if b.public_key == own {
                continue;
            }
            let Some(peer) = peer_of(&b.public_key) else {
                continue;
            };
            link.beacons_heard.fetch_add(1, Ordering::Relaxed);
            let new = lock(&self.heard)
                .insert(
                    peer,
                    Heard {
                        link: i,
                        addr: d.from,
                        key: b.public_key,
                        last_ms: now_ms(),
                    },
                )
                .is_none();
            if new {
                info!(%peer, link = %link.name, "radio peer heard");
                // Answer a newcomer with our own beacon soon, budget permitting.
                self.beacon_now.notify_waiters();
            }
            let info = BeaconInfo {
                peer,
                via: link.tx.kind().as_str(),
                addr: addr_text(&link.name, d.from),
                active: b.flags.contains(Flags::ACTIVE),
                capabilities: b.capabilities.0,
                price: b.price,
                ip_addrs: b.addrs.iter().map(BeaconAddr::to_multiaddr).collect(),
            };
            if !self.wiring.beacons.send(info) {
                debug!(%peer, "peer registry busy; beacon dropped");
            }
        }
    }

    /// Serves sessions opened by other stations on link `i`.
    pub(super) async fn accept_loop(
        self: Arc<Self>,
        i: usize,
        mut accept: mpsc::Receiver<Inbound>,
        cancel: CancellationToken,
    ) {
        let limit = Arc::new(Semaphore::new(MAX_INBOUND_SESSIONS));
        loop {
            let inbound = tokio::select! {
                biased;
                _ = cancel.cancelled() => return,
                x = accept.recv() => match x { Some(x) => x, None => return },
            };
            let Ok(permit) = limit.clone().try_acquire_owned() else {
                debug!("too many radio sessions; refusing one");
                continue;
            };
            let gw = self.clone();
            tokio::spawn(async move {
                gw.serve(i, inbound).await;
                drop(permit);
            });
        }
    }

    async fn serve(&self, i: usize, inbound: Inbound) {
        let link = &self.links[i];
        let stream = ArqStream::new(
            link.tx.clone(),
            inbound.rx,
            send_addr(inbound.from),
            inbound.conn,
            arq_config(),
        );
        let mut session = match Session::accept(stream, self.identity.signing_key()).await {
            Ok(s) => s,
            Err(e) => {
                debug!(link = %link.name, error = %e, "radio session refused");
                return;
            }
        };
        let Some(broker) = peer_of(&session.remote_key) else {
            return;
        };
        debug!(%broker, link = %link.name, "radio session open");
        while let Ok(Some(msg)) = session.recv().await {
            let request = match wire::decode_request(&msg, now_ms()) {
                Ok(r) => r,
                Err(e) => {
                    debug!(%broker, error = %e, "bad radio request");
                    break;
                }
            };
            let (reply, answer) = tokio::sync::oneshot::channel();
            let req = offgrid_net::AuctionRequest {
                peer: broker,
                request: request.clone(),
                reply: offgrid_net::Reply::Local(reply),
            };
            if self.wiring.requests.send(req).await.is_err() {
                break;
            }
            let response = answer.await.unwrap_or(Response::Failed {
                error: "host stopped".into(),
            });
            let bytes = wire::encode_response(&response, &request, now_ms());
            if session.send(&bytes).await.is_err() {
                break;
            }
        }
        session.close().await;
    }

    /// Sends `request` to a radio peer over a (cached) session and waits for the answer.
    pub async fn request(&self, peer: PeerId, request: Request) -> Result<Response, String> {
        let heard = lock(&self.heard)
            .get(&peer)
            .cloned()
            .ok_or_else(|| format!("{peer} not heard on any radio"))?;
        let slot = lock(&self.sessions).entry(peer).or_default().clone();
        let mut guard = slot.lock().await;
        // A quote may be retried on a fresh session; a run is never sent twice.
        let tries = if matches!(request, Request::Quote { .. }) {
            2
        } else {
            1
        };
        let mut last = String::new();
        for _ in 0..tries {
            let mut session = match guard.take() {
                Some((s, _)) => s,
                None => self.open(&heard).await.map_err(|e| e.to_string())?,
            };
            match self.call(&mut session, peer, &heard, &request).await {
                Ok(r) => {
                    *guard = Some((session, tokio::time::Instant::now()));
                    return Ok(r);
                }
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    async fn open(&self, heard: &Heard) -> Result<Session, String> {
        let link = &self.links[heard.link];
        let conn = link.demux.free_conn();
        let rx = link.demux.register(conn).map_err(|e| e.to_string())?;
        let stream = ArqStream::new(
            link.tx.clone(),
            rx,
            send_addr(heard.addr),
            conn,
            arq_config(),
        );
        Session::initiate(stream, self.identity.signing_key(), heard.key)
            .await
            .map_err(|e| e.to_string())
    }

    async fn call(
        &self,
        s: &mut Session,
        peer: PeerId,
        heard: &Heard,
        request: &Request,
    ) -> Result<Response, String> {
        s.send(&wire::encode_request(request, now_ms()))
            .await
            .map_err(|e| e.to_string())?;
        let msg = s
            .recv()
            .await
            .map_err(|e| e.to_string())?
            .ok_or("radio session closed")?;
        let ctx = match request {
            Request::Run(run) => Some(ReceiptContext {
                run: run.clone(),
                broker_id: self.identity.peer_id().to_string(),
                cluster_id: self.cluster_id.clone(),
                host_id: peer.to_string(),
                host_key: heard.key,
            }),
            Request::Quote { .. } | Request::Progress { .. } => None,
        };
        wire::decode_response(&msg, ctx.as_ref(), now_ms()).map_err(|e| e.to_string())
    }

    /// Closes sessions idle for [`SESSION_IDLE`], every few seconds until cancelled.
    pub(super) async fn reap_loop(self: Arc<Self>, cancel: CancellationToken) {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tokio::select! {
                biased;
                _ = cancel.cancelled() => return,
                _ = tick.tick() => {}
            }
            let slots: Vec<(PeerId, SessionSlot)> = lock(&self.sessions)
                .iter()
                .map(|(p, s)| (*p, s.clone()))
                .collect();
            for (peer, slot) in slots {
                let Ok(mut g) = slot.try_lock() else { continue };
                if g.as_ref().is_some_and(|(_, t)| t.elapsed() >= SESSION_IDLE) {
                    if let Some((mut s, _)) = g.take() {
                        s.close().await;
                    }
                    lock(&self.sessions).remove(&peer);
                }
            }
        }
    }

    /// How long a peer heard by beacon stays a radio peer without another beacon: three
    /// missed intervals of this node's slowest link (stations on one channel beacon at
    /// similar rates), plus slack for the beacons' jitter.
    pub fn peer_expiry(&self) -> Duration {
        let slowest = self
            .links
            .iter()
            .map(|l| l.cfg.beacon_interval_s.max(1))
            .max()
            .unwrap_or(60);
        Duration::from_secs(3 * slowest) + PEER_EXPIRY_SLACK
    }

    /// Counters for `GET /radio`.
    pub fn status(&self) -> RadioStatus {
        let heard = lock(&self.heard).clone();
        let f = lock(&self.filter).stats();
        let links = self
            .links
            .iter()
            .enumerate()
            .map(|(i, l)| {
                let s = l.tx.stats();
                let (used, allowance) = l.tx.budget();
                let mut peers: Vec<String> = heard
                    .iter()
                    .filter(|(_, h)| h.link == i)
                    .map(|(p, _)| p.to_string())
                    .collect();
                peers.sort();
                LinkStatus {
                    name: l.name.clone(),
                    link: l.cfg.link.clone(),
                    via: l.tx.kind().as_str().to_owned(),
                    mtu: l.tx.mtu(),
                    frames_in: s.frames_in,
                    frames_out: s.frames_out,
                    bytes_in: s.bytes_in,
                    bytes_out: s.bytes_out,
                    airtime_total_ms: s.airtime_out.as_millis() as u64,
                    airtime_window_ms: used.as_millis() as u64,
                    airtime_budget_ms: allowance.as_millis() as u64,
                    duty_cycle: l.cfg.duty_cycle,
                    window_s: l.cfg.duty_window_s,
                    sends_deferred: l.tx.deferred(),
                    beacons_sent: l.beacons_sent.load(Ordering::Relaxed),
                    beacons_heard: l.beacons_heard.load(Ordering::Relaxed),
                    beacon_bytes: l.beacon_bytes.load(Ordering::Relaxed),
                    beacon_airtime_ms: l
                        .tx
                        .airtime(l.beacon_bytes.load(Ordering::Relaxed) as usize)
                        .as_millis() as u64,
                    streams: l.demux.streams(),
                    peers,
                }
            })
            .collect();
        RadioStatus {
            links,
            peers: heard.len(),
            beacons_accepted: f.accepted,
            beacons_malformed: f.malformed,
            beacons_invalid: f.invalid,
            beacons_replayed: f.replayed,
            last_heard_ms: heard.values().map(|h| h.last_ms).max(),
        }
    }
}

/// A `/ip4/a.b.c.d/tcp/p` listen address worth putting in a beacon (not loopback or
/// unspecified: those mean nothing to a station across the air).
fn ip_addr(a: &str) -> Option<BeaconAddr> {
    let parts: Vec<&str> = a.split('/').collect();
    match parts.as_slice() {
        ["", "ip4", ip, "tcp", port] => {
            let ip: std::net::Ipv4Addr = ip.parse().ok()?;
            if ip.is_loopback() || ip.is_unspecified() {
                return None;
            }
            Some(BeaconAddr::Tcp(std::net::SocketAddr::new(
                ip.into(),
                port.parse().ok()?,
            )))
        }
        _ => None,
    }
}
