//! The peer service's task: the registry's single writer.

use std::{
    collections::HashSet,
    sync::{atomic::AtomicUsize, Arc},
    time::Duration,
};

use tokio::time::Instant;

use libp2p::{multiaddr::Protocol, Multiaddr, PeerId};
use offgrid_behaviours::announce::{self, Announcement};
use offgrid_net::{GossipEvent, Net, PeerEvent};
use tokio::{
    sync::{mpsc, watch},
    task::JoinSet,
};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::{
    dial::Dialer,
    offer::{HostSettings, Offer, SETTINGS_KEY},
    radio::RadioPeers,
    registry::{routable, Registry, MAX_ADDRS_PER_PEER},
    NetStatus, PeersHandle, Query, QUEUE,
};
use crate::{
    config::Config,
    identity::Identity,
    mesh::MeshStatus,
    now_ms,
    radio::BeaconInfo,
    store::{Op, Store, StoreError, Table},
};

/// How often the housekeeping timer fires (and flushes the registry).
const TICK: Duration = Duration::from_millis(250);
/// Least time between two flushes of the registry for an urgent change: a flood of new
/// connections then costs a commit per gap, not per connection.
const URGENT_FLUSH_GAP: Duration = Duration::from_millis(50);
/// Delay before announcing after a peer subscribes, so a burst of joins costs one message.
pub(super) const ANNOUNCE_DEBOUNCE: Duration = Duration::from_millis(200);

/// Everything the service takes from the composition root.
pub struct Parts {
    /// The node's keys.
    pub identity: Identity,
    /// The config.
    pub cfg: Config,
    /// The store (read at start).
    pub store: Arc<Store>,
    /// The network.
    pub net: Arc<dyn Net>,
    /// Bootstrap peers.
    pub bootstrap: Vec<(PeerId, Multiaddr)>,
    /// Mesh metrics as the poller publishes them.
    pub mesh: watch::Receiver<Option<MeshStatus>>,
}

/// Inputs of the service from the router and the radio gateway.
#[derive(Debug)]
pub enum Input {
    /// Discovery or connection.
    Peer(PeerEvent),
    /// The announcement topic.
    Gossip(GossipEvent),
    /// A verified radio beacon.
    Beacon(BeaconInfo),
    /// The radio gateway is running: route radio requests through it.
    Radio(crate::radio::RadioHandle),
}

impl From<PeerEvent> for Input {
    fn from(e: PeerEvent) -> Self {
        Input::Peer(e)
    }
}

impl From<BeaconInfo> for Input {
    fn from(b: BeaconInfo) -> Self {
        Input::Beacon(b)
    }
}

impl From<GossipEvent> for Input {
    fn from(e: GossipEvent) -> Self {
        Input::Gossip(e)
    }
}

/// What [`start`] returns: the handle and the ends the other parts plug into.
pub struct Started {
    /// The handle for the other services and the API.
    pub handle: PeersHandle,
    /// What this node offers (read by the market's host).
    pub offer: Offer,
    /// Jobs running on this host (the host counts, `/status` reads).
    pub in_flight: Arc<AtomicUsize>,
    /// The service's inputs (router sinks, radio beacons, the radio handle).
    pub input: mpsc::Sender<Input>,
    /// This node's latest announcement (the radio gateway builds beacons from it).
    pub announcement: watch::Receiver<Announcement>,
}

pub(super) struct Service {
    pub(super) registry: Registry,
    pub(super) offer: Offer,
    pub(super) identity: Identity,
    pub(super) cfg: Config,
    pub(super) net: Arc<dyn Net>,
    pub(super) store: Arc<Store>,
    pub(super) listen_addrs: Vec<Multiaddr>,
    pub(super) connected: HashSet<PeerId>,
    pub(super) announce_due: Option<Instant>,
    pub(super) last_announce: Instant,
    pub(super) announced: watch::Sender<Announcement>,
    pub(super) dialer: Dialer,
    pub(super) radio: RadioPeers,
    pub(super) mesh: watch::Receiver<Option<MeshStatus>>,
    /// Announcements taken per forwarding peer (a flood from one peer is ignored).
    pub(super) forwarders: super::announce::Forwarders,
    /// When the registry was last flushed.
    pub(super) last_flush: Instant,
}

/// Restores the registry and the offer from the store and starts the service.
pub fn start(
    p: Parts,
    cancel: CancellationToken,
    tasks: &mut JoinSet<()>,
) -> Result<Started, StoreError> {
    let mut registry = Registry::new(p.cfg.network.max_known_peers);
    let local = p.identity.peer_id().to_string();
    registry.restore(
        p.store
            .scan::<super::PeerRecord>(Table::Peers)?
            .into_iter()
            .map(|(_, r)| r)
            .filter(|r| r.peer_id != local),
    );
    let settings = p
        .store
        .get::<HostSettings>(Table::Settings, SETTINGS_KEY)?
        .unwrap_or_else(|| HostSettings::from_config(&p.cfg));
    let offer = Offer::new(settings);
    let now = Instant::now();
    let first = super::announce::build(&p.identity, &p.cfg, &offer.get(), &[]);
    let (announced, announcement) = watch::channel(first);
    let svc = Service {
        registry,
        offer: offer.clone(),
        identity: p.identity,
        cfg: p.cfg,
        net: p.net.clone(),
        store: p.store.clone(),
        listen_addrs: Vec::new(),
        connected: HashSet::new(),
        announce_due: Some(now),
        last_announce: now,
        announced,
        dialer: Dialer::new(p.bootstrap, now),
        radio: RadioPeers::default(),
        mesh: p.mesh,
        forwarders: Default::default(),
        last_flush: now,
    };
    let (qtx, queries) = mpsc::channel(QUEUE);
    let (input, inputs) = mpsc::channel(QUEUE);
    let in_flight = Arc::new(AtomicUsize::new(0));
    tasks.spawn(svc.run(queries, inputs, cancel));
    Ok(Started {
        handle: PeersHandle {
            tx: qtx,
            net: p.net,
            in_flight: in_flight.clone(),
        },
        offer,
        in_flight,
        input,
        announcement,
    })
}

impl Service {
    async fn run(
        mut self,
        mut queries: mpsc::Receiver<Query>,
        mut inputs: mpsc::Receiver<Input>,
        cancel: CancellationToken,
    ) {
        self.dial_bootstrap();
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                _ = cancel.cancelled() => break,
                Some(q) = queries.recv() => self.on_query(q).await,
                Some(i) = inputs.recv() => self.on_input(i),
                _ = tick.tick() => self.housekeeping().await,
            }
            if self.registry.is_urgent() && self.last_flush.elapsed() >= URGENT_FLUSH_GAP {
                self.flush().await;
            }
        }
        self.flush().await;
        debug!("peer service stopped");
    }

    async fn on_query(&mut self, q: Query) {
        match q {
            Query::Status(r) => {
                let _ = r.send(self.status());
            }
            Query::Peers(r) => {
                let _ = r.send(self.registry.all());
            }
            Query::Announcement(r) => {
                let _ = r.send(self.announcement());
            }
            Query::Update(update, r) => {
                let _ = r.send(self.update_offer(update).await);
            }
            Query::Candidates(job_type, r) => {
                let _ = r.send(self.candidates(&job_type));
            }
            Query::RadioRoute(peer, r) => {
                let _ = r.send(self.radio_route(&peer));
            }
            Query::RadioStatus(r) => {
                let _ = r.send(self.radio.handle.as_ref().map(|h| h.status()));
            }
            Query::MeshStatus(r) => {
                let _ = r.send(self.mesh.borrow().clone());
            }
        }
    }

    fn on_input(&mut self, i: Input) {
        match i {
            Input::Peer(ev) => self.on_peer_event(ev),
            Input::Gossip(GossipEvent::Message { data, from, id, .. }) => {
                let verdict = self.on_announcement(&data, from);
                self.net.validate(id, from, verdict);
            }
            Input::Gossip(GossipEvent::Subscribed { peer, .. }) => {
                debug!(%peer, "peer subscribed to announcements");
                let due = Instant::now() + ANNOUNCE_DEBOUNCE;
                self.announce_due = Some(self.announce_due.map_or(due, |d| d.min(due)));
            }
            Input::Beacon(b) => self.on_beacon(b),
            Input::Radio(h) => self.radio.handle = Some(h),
        }
    }

    fn on_peer_event(&mut self, ev: PeerEvent) {
        let now = now_ms();
        match ev {
            PeerEvent::Listening(addr) => {
                if !self.listen_addrs.contains(&addr) {
                    self.listen_addrs.push(addr);
                }
                self.announce_due = Some(Instant::now() + ANNOUNCE_DEBOUNCE);
            }
            PeerEvent::ListenExpired(addr) => self.listen_addrs.retain(|a| a != &addr),
            PeerEvent::Connected { peer, dialed } => {
                self.connected.insert(peer);
                self.dialer.connected(&peer);
                let id = peer.to_string();
                self.registry.set_connected(&id, true, now);
                if let Some(addr) = dialed {
                    self.registry
                        .observe(&id, Some(&addr.to_string()), "ip", now);
                }
            }
            PeerEvent::Disconnected(peer) => {
                self.connected.remove(&peer);
                self.registry.set_connected(&peer.to_string(), false, now);
            }
            PeerEvent::Identified { peer, listen_addrs } => {
                let id = peer.to_string();
                for addr in listen_addrs.into_iter().take(MAX_ADDRS_PER_PEER) {
                    let a = addr.to_string();
                    if routable(&a) && !is_memory(&addr) {
                        self.registry.observe(&id, Some(&a), "ip", now);
                        self.net.kad_address(peer, addr);
                    }
                }
            }
            PeerEvent::Mdns(found) => {
                let mut by_peer: std::collections::HashMap<PeerId, Vec<Multiaddr>> =
                    Default::default();
                for (peer, addr) in found {
                    self.registry
                        .observe(&peer.to_string(), Some(&addr.to_string()), "ip", now);
                    by_peer.entry(peer).or_default().push(addr);
                }
                let t = Instant::now();
                for (peer, addrs) in by_peer {
                    info!(%peer, "found by mDNS");
                    self.maybe_dial(peer, addrs, t);
                }
            }
            PeerEvent::Routing { peer, addrs } => {
                let id = peer.to_string();
                for a in &addrs {
                    self.registry.observe(&id, Some(&a.to_string()), "ip", now);
                }
                self.maybe_dial(peer, addrs, Instant::now());
            }
        }
    }

    fn status(&self) -> NetStatus {
        NetStatus {
            peer_id: self.identity.peer_id().to_string(),
            listen_addrs: self.listen_addrs.iter().map(|a| a.to_string()).collect(),
            connected_peers: self.connected.len(),
            known_peers: self.registry.len(),
            active_hosts: self.registry.iter().filter(|r| r.is_active()).count(),
            jobs_in_flight: 0,
        }
    }

    async fn housekeeping(&mut self) {
        let now = Instant::now();
        if self.announce_due.is_some_and(|t| t <= now)
            || now.duration_since(self.last_announce)
                >= Duration::from_secs(self.cfg.network.announce_interval_s.max(1))
        {
            self.publish_announcement().await;
        }
        self.redial_tick(now);
        self.flush().await;
    }

    /// Writes changed records through the store's writer thread.
    pub(super) async fn flush(&mut self) {
        self.registry.take_urgent();
        self.last_flush = Instant::now();
        let dirty = self.registry.take_dirty();
        if dirty.is_empty() {
            return;
        }
        let ops: Result<Vec<Op>, StoreError> = dirty
            .iter()
            .map(|(peer, rec)| match rec {
                Some(r) => Op::put(Table::Peers, peer.clone(), r),
                None => Ok(Op::Delete(Table::Peers, peer.clone())),
            })
            .collect();
        let res = match ops {
            Ok(ops) => self.store.commit(ops).await,
            Err(e) => Err(e),
        };
        if let Err(e) = res {
            warn!(error = %e, "cannot persist peer registry");
        }
    }

    /// Persists settings (one durable write holds the change and the new seq).
    pub(super) async fn save_settings(&self, s: &HostSettings) -> Result<(), StoreError> {
        self.store
            .commit(vec![Op::put(Table::Settings, SETTINGS_KEY, s)?])
            .await
    }
}

/// Whether an address is an in-process memory address (tests), never worth recording.
fn is_memory(addr: &Multiaddr) -> bool {
    addr.iter().any(|p| matches!(p, Protocol::Memory(_)))
}

/// The announce topic's name, for the router's subscription.
pub fn announce_topic() -> String {
    announce::TOPIC.to_owned()
}
