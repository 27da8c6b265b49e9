//! The task that owns the swarm.

use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, Instant},
};

use futures::StreamExt;
use libp2p::{
    gossipsub::{self, IdentTopic},
    identify, kad, mdns,
    multiaddr::Protocol,
    request_response::{self, OutboundRequestId},
    swarm::{
        dial_opts::{DialOpts, PeerCondition},
        SwarmEvent,
    },
    Multiaddr, PeerId, Swarm,
};
use offgrid_behaviours::announce::{self, Announcement, Capacity, SignedAnnouncement};
use offgrid_behaviours::auction;
use tokio::sync::mpsc;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::{Behaviour, BehaviourEvent, Candidate, Command, NetStatus};
use crate::{
    config::Config,
    identity::Identity,
    market::{
        host::{Finished, Host},
        offer::{HostSettings, SETTINGS_KEY},
    },
    now_ms,
    peers::registry::{routable, AnnounceOutcome, Registry},
    store::{Store, Table},
};

/// How often the housekeeping timer fires.
const TICK: Duration = Duration::from_millis(250);
/// Delay before announcing after a peer subscribes, so a burst of joins costs one message.
const ANNOUNCE_DEBOUNCE: Duration = Duration::from_millis(200);
/// How long the higher peer id waits for the lower one to dial before dialling itself.
const HIGHER_ID_GRACE: Duration = Duration::from_secs(15);
/// Longest wait between redials of an unreachable peer.
const MAX_REDIAL_BACKOFF: Duration = Duration::from_secs(60);

/// The event loop.
///
/// Fields are visible to sibling modules of `network/` so that each protocol's handling can
/// live in its own file as an `impl EventLoop` block (see `auction` handling for the pattern:
/// a field in [`Behaviour`], a `BehaviourEvent::X(ev) => self.on_x(ev)` arm, and a
/// `Command::X` variant).
pub struct EventLoop {
    pub(super) swarm: Swarm<Behaviour>,
    pub(super) commands: mpsc::Receiver<Command>,
    pub(super) cancel: CancellationToken,
    pub(super) store: Arc<Store>,
    pub(super) identity: Identity,
    pub(super) cfg: Config,
    pub(super) registry: Registry,
    pub(super) settings: HostSettings,
    pub(super) listen_addrs: Vec<Multiaddr>,
    pub(super) announce_topic: IdentTopic,
    pub(super) announce_due: Option<Instant>,
    pub(super) last_announce: Instant,
    pub(super) bootstrap: Vec<(PeerId, Multiaddr)>,
    pub(super) redial: HashMap<PeerId, (Instant, Duration)>,
    pub(super) last_redial: Instant,
    pub(super) last_kad_bootstrap: Instant,
    pub(super) host: Host,
    pub(super) finished: mpsc::Receiver<Finished>,
    pub(super) pending:
        HashMap<OutboundRequestId, oneshot::Sender<Result<auction::Response, String>>>,
    pub(super) ledger: super::LedgerLink,
    pub(super) shards: super::shards::ShardsState,
    pub(super) radio: super::radio::RadioState,
}

impl EventLoop {
    /// Builds the loop: restores the registry and host settings from the store.
    // Each argument is a distinct piece the loop owns; a struct would only rename them.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        swarm: Swarm<Behaviour>,
        commands: mpsc::Receiver<Command>,
        cancel: CancellationToken,
        store: Arc<Store>,
        writer: crate::store::GroupWriter,
        identity: Identity,
        cfg: Config,
        bootstrap: Vec<(PeerId, Multiaddr)>,
    ) -> Result<Self, crate::store::StoreError> {
        let mut registry = Registry::new(cfg.network.max_known_peers);
        let local = identity.peer_id().to_string();
        registry.restore(
            store
                .scan::<crate::peers::registry::PeerRecord>(Table::Peers)?
                .into_iter()
                .map(|(_, r)| r)
                .filter(|r| r.peer_id != local),
        );
        let settings = store
            .get::<HostSettings>(Table::Settings, SETTINGS_KEY)?
            .unwrap_or_else(|| HostSettings::from_config(&cfg));
        let now = Instant::now();
        let (finished_tx, finished) = mpsc::channel(cfg.host.burst.max(1) as usize + 16);
        let host = Host::new(&cfg, identity.clone(), writer, finished_tx);
        Ok(EventLoop {
            host,
            finished,
            pending: HashMap::new(),
            ledger: Default::default(),
            shards: Default::default(),
            radio: Default::default(),
            swarm,
            commands,
            cancel,
            store,
            identity,
            cfg,
            registry,
            settings,
            listen_addrs: Vec::new(),
            announce_topic: IdentTopic::new(announce::TOPIC),
            announce_due: Some(now),
            last_announce: now,
            bootstrap,
            redial: HashMap::new(),
            last_redial: now,
            last_kad_bootstrap: now,
        })
    }

    /// Runs until the cancellation token fires, then flushes the registry.
    pub async fn run(mut self) {
        if let Err(e) = self
            .swarm
            .behaviour_mut()
            .gossipsub
            .subscribe(&self.announce_topic)
        {
            warn!(error = %e, "cannot subscribe to announcements");
        }
        self.ledger_subscribe();
        self.dial_bootstrap();
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                _ = self.cancel.cancelled() => break,
                Some(cmd) = self.commands.recv() => self.on_command(cmd),
                Some(f) = self.finished.recv() => self.deliver_finished(f),
                Some(done) = self.shards.done.recv() => self.on_shard_done(done),
                ev = self.swarm.select_next_some() => {
                    self.on_swarm_event(ev);
                    if self.registry.take_urgent() {
                        self.flush();
                    }
                }
                _ = tick.tick() => self.housekeeping(),
            }
        }
        self.flush();
        info!("network stopped");
    }

    fn dial_bootstrap(&mut self) {
        for (peer, addr) in self.bootstrap.clone() {
            self.swarm
                .behaviour_mut()
                .kad
                .add_address(&peer, addr.clone());
            self.registry
                .observe(&peer.to_string(), Some(&addr.to_string()), "ip", now_ms());
            if !self.swarm.is_connected(&peer) {
                let opts = DialOpts::peer_id(peer).addresses(vec![addr]).build();
                if let Err(e) = self.swarm.dial(opts) {
                    debug!(%peer, error = %e, "bootstrap dial failed");
                }
            }
        }
        if !self.bootstrap.is_empty() {
            let _ = self.swarm.behaviour_mut().kad.bootstrap();
        }
    }

    fn on_command(&mut self, cmd: Command) {
        match cmd {
            Command::Status { reply } => {
                let _ = reply.send(self.status());
            }
            Command::Peers { reply } => {
                let _ = reply.send(self.registry.all());
            }
            Command::GetAnnouncement { reply } => {
                let _ = reply.send(self.announcement());
            }
            Command::UpdateHost { update, reply } => {
                let mut next = self.settings.clone();
                // One durable write holds both the change and the new announcement seq.
                let result = next.apply(update).and_then(|()| {
                    next.bump_seq();
                    self.store
                        .put(Table::Settings, SETTINGS_KEY, &next)
                        .map_err(|e| format!("cannot save settings: {e}"))
                });
                let _ = reply.send(result.map(|()| {
                    self.settings = next;
                    self.send_announcement();
                    self.announcement()
                }));
            }
            Command::Candidates { job_type, reply } => {
                let _ = reply.send(self.candidates(&job_type));
            }
            Command::Request {
                peer,
                request,
                reply,
            } if self.routes_by_radio(&peer) => self.radio_request(peer, request, reply),
            Command::Radio(cmd) => self.on_radio(cmd),
            Command::Request {
                peer,
                request,
                reply,
            } => {
                self.ensure_dialing(peer);
                let id = self
                    .swarm
                    .behaviour_mut()
                    .auction
                    .send_request(&peer, request);
                self.pending.insert(id, reply);
            }
            Command::Shard {
                peer,
                request,
                reply,
            } => self.on_shard_command(peer, request, reply),
            Command::Ledger(out) => self.on_ledger_command(out),
            Command::Dial { addr, reply } => {
                let _ = reply.send(self.swarm.dial(addr).map_err(|e| e.to_string()));
            }
        }
    }

    fn candidates(&self, job_type: &str) -> Vec<Candidate> {
        self.registry
            .iter()
            .filter_map(|r| {
                let a = r.announcement.as_ref()?;
                if !a.active || !a.job_types.iter().any(|t| t == job_type) {
                    return None;
                }
                Some(Candidate {
                    peer: r.peer_id.parse().ok()?,
                    id: r.peer_id.clone(),
                    via: r.via.clone(),
                    price: *a.prices.get(job_type)?,
                    mesh: self.mesh_factor(),
                })
            })
            .chain(self.radio_candidates(job_type))
            .collect()
    }

    /// Before a request to a peer that is not connected, dial it on the addresses the
    /// registry knows (other behaviours may know none).
    pub(super) fn ensure_dialing(&mut self, peer: PeerId) {
        if self.swarm.is_connected(&peer) {
            return;
        }
        let addrs: Vec<Multiaddr> = self
            .registry
            .get(&peer.to_string())
            .map(|r| r.addrs.iter().filter_map(|a| a.parse().ok()).collect())
            .unwrap_or_default();
        if !addrs.is_empty() {
            let opts = DialOpts::peer_id(peer)
                .addresses(addrs)
                .condition(PeerCondition::DisconnectedAndNotDialing)
                .build();
            let _ = self.swarm.dial(opts);
        }
    }

    fn on_auction(&mut self, ev: auction::Event) {
        match ev {
            request_response::Event::Message { peer, message, .. } => match message {
                request_response::Message::Request {
                    request, channel, ..
                } => {
                    if let Some((channel, response)) =
                        self.host.on_request(&self.settings, peer, request, channel)
                    {
                        let _ = self
                            .swarm
                            .behaviour_mut()
                            .auction
                            .send_response(channel, response);
                    }
                }
                request_response::Message::Response {
                    request_id,
                    response,
                } => {
                    if let Some(reply) = self.pending.remove(&request_id) {
                        let _ = reply.send(Ok(response));
                    }
                }
            },
            request_response::Event::OutboundFailure {
                request_id,
                error,
                peer,
                ..
            } => {
                debug!(%peer, %error, "auction request failed");
                if let Some(reply) = self.pending.remove(&request_id) {
                    let _ = reply.send(Err(error.to_string()));
                }
            }
            request_response::Event::InboundFailure { peer, error, .. } => {
                debug!(%peer, %error, "auction answer not delivered");
            }
            request_response::Event::ResponseSent { .. } => {}
        }
    }

    fn status(&self) -> NetStatus {
        NetStatus {
            peer_id: self.identity.peer_id().to_string(),
            listen_addrs: self.listen_addrs.iter().map(|a| a.to_string()).collect(),
            connected_peers: self.swarm.connected_peers().count(),
            known_peers: self.registry.len(),
            active_hosts: self.registry.iter().filter(|r| r.is_active()).count(),
            jobs_in_flight: self.host.in_flight(),
        }
    }

    /// The announcement as it stands (seq is the last one issued).
    fn announcement(&self) -> Announcement {
        let cap = &self.cfg.host.capacity;
        let cpu = if cap.cpu_cores == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get() as u32)
        } else {
            cap.cpu_cores
        };
        Announcement {
            node_id: self.identity.peer_id().to_string(),
            seq: self.settings.seq,
            active: self.settings.active,
            prices: self.settings.prices.clone(),
            job_types: self.cfg.executors.keys().cloned().collect(),
            min_oncall_percent: self.settings.min_oncall_percent,
            burst_percent_max: self.settings.burst_percent_max,
            burst: self.settings.burst,
            capacity: Capacity {
                cpu_cores: cpu,
                storage_bytes: cap.storage_bytes,
            },
            listen_addrs: self
                .listen_addrs
                .iter()
                .map(|a| a.to_string())
                .filter(|a| routable(a))
                .collect(),
            issued_at_ms: now_ms(),
        }
    }

    /// Issues a new announcement: bumps and persists the seq, then publishes.
    fn publish_announcement(&mut self) {
        self.settings.bump_seq();
        if let Err(e) = self
            .store
            .put(Table::Settings, SETTINGS_KEY, &self.settings)
        {
            warn!(error = %e, "cannot persist announcement seq");
        }
        self.send_announcement();
    }

    /// Signs and publishes the announcement with the current seq.
    fn send_announcement(&mut self) {
        self.announce_due = None;
        self.last_announce = Instant::now();
        let ann = self.announcement();
        let signed = match ann.sign(self.identity.keypair()) {
            Ok(s) => s,
            Err(e) => {
                warn!(error = %e, "cannot sign announcement");
                return;
            }
        };
        match self
            .swarm
            .behaviour_mut()
            .gossipsub
            .publish(self.announce_topic.clone(), signed.to_wire())
        {
            Ok(_) => debug!(seq = ann.seq, active = ann.active, "announced"),
            // Nobody subscribed yet: the next Subscribed event triggers a new announcement.
            Err(e) => debug!(error = %e, "announcement not published"),
        }
    }

    fn housekeeping(&mut self) {
        let now = Instant::now();
        if self.announce_due.is_some_and(|t| t <= now)
            || now.duration_since(self.last_announce)
                >= Duration::from_secs(self.cfg.network.announce_interval_s.max(1))
        {
            self.publish_announcement();
        }
        if now.duration_since(self.last_redial)
            >= Duration::from_secs(self.cfg.network.redial_interval_s.max(1))
        {
            self.last_redial = now;
            self.redial_known_peers(now);
        }
        if now.duration_since(self.last_kad_bootstrap) >= Duration::from_secs(60) {
            self.last_kad_bootstrap = now;
            // Fails only when the routing table is empty, which is fine.
            let _ = self.swarm.behaviour_mut().kad.bootstrap();
        }
        self.flush();
    }

    /// Whether this node should be the one to dial `peer`. Only the lower peer id dials at
    /// once, so two nodes that find each other at the same moment never race two Noise
    /// handshakes; the higher one dials only after [`HIGHER_ID_GRACE`].
    fn we_dial(&self, peer: &PeerId) -> bool {
        self.identity.peer_id().to_bytes() < peer.to_bytes()
    }

    fn maybe_dial(&mut self, peer: PeerId, addrs: Vec<Multiaddr>, now: Instant) {
        if addrs.is_empty() || self.swarm.is_connected(&peer) {
            return;
        }
        if !self.we_dial(&peer) && !self.redial.contains_key(&peer) {
            // The lower id should dial us. If it has not after a grace period (it may only
            // know an address we no longer listen on, say after our restart), we dial too.
            self.redial
                .insert(peer, (now + HIGHER_ID_GRACE, HIGHER_ID_GRACE / 2));
            return;
        }
        if let Some((next, _)) = self.redial.get(&peer) {
            if *next > now {
                return;
            }
        }
        let backoff = self
            .redial
            .get(&peer)
            .map_or(Duration::from_secs(1), |(_, b)| {
                (*b * 2).min(MAX_REDIAL_BACKOFF)
            });
        self.redial.insert(peer, (now + backoff, backoff));
        let opts = DialOpts::peer_id(peer)
            .addresses(addrs)
            .allocate_new_port()
            .build();
        if let Err(e) = self.swarm.dial(opts) {
            debug!(%peer, error = %e, "dial not started");
        }
    }

    fn redial_known_peers(&mut self, now: Instant) {
        let candidates: Vec<(PeerId, Vec<Multiaddr>)> = self
            .registry
            .iter()
            .filter(|r| !r.connected && r.via == "ip")
            .filter_map(|r| {
                let peer: PeerId = r.peer_id.parse().ok()?;
                let addrs = r.addrs.iter().filter_map(|a| a.parse().ok()).collect();
                Some((peer, addrs))
            })
            .collect();
        for (peer, addrs) in candidates {
            self.maybe_dial(peer, addrs, now);
        }
        for (peer, addr) in self.bootstrap.clone() {
            if !self.swarm.is_connected(&peer) {
                let _ = self
                    .swarm
                    .dial(DialOpts::peer_id(peer).addresses(vec![addr]).build());
            }
        }
    }

    fn flush(&mut self) {
        let dirty = self.registry.take_dirty();
        if dirty.is_empty() {
            return;
        }
        let res = self.store.write(|b| {
            for (peer, rec) in &dirty {
                match rec {
                    Some(r) => b.put(Table::Peers, peer, r)?,
                    None => b.delete(Table::Peers, peer)?,
                }
            }
            Ok(())
        });
        if let Err(e) = res {
            warn!(error = %e, "cannot persist peer registry");
        }
    }

    fn on_swarm_event(&mut self, ev: SwarmEvent<BehaviourEvent>) {
        let now = now_ms();
        match ev {
            SwarmEvent::NewListenAddr { address, .. } => {
                info!(%address, "listening");
                if !self.listen_addrs.contains(&address) {
                    self.listen_addrs.push(address);
                }
                self.announce_due = Some(Instant::now() + ANNOUNCE_DEBOUNCE);
            }
            SwarmEvent::ExpiredListenAddr { address, .. } => {
                self.listen_addrs.retain(|a| a != &address);
            }
            SwarmEvent::ConnectionEstablished {
                peer_id, endpoint, ..
            } => {
                debug!(%peer_id, "connected");
                self.on_ledger_peer(peer_id, true);
                self.redial.remove(&peer_id);
                self.registry.set_connected(&peer_id.to_string(), true, now);
                if endpoint.is_dialer() {
                    let addr = strip_p2p(endpoint.get_remote_address());
                    self.registry
                        .observe(&peer_id.to_string(), Some(&addr.to_string()), "ip", now);
                }
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established: 0,
                ..
            } => {
                debug!(%peer_id, "disconnected");
                self.on_ledger_peer(peer_id, false);
                self.registry
                    .set_connected(&peer_id.to_string(), false, now);
            }
            SwarmEvent::OutgoingConnectionError { peer_id, error, .. } => {
                debug!(peer = ?peer_id, %error, "dial failed");
            }
            SwarmEvent::Behaviour(ev) => self.on_behaviour_event(ev, now),
            _ => {}
        }
    }

    fn on_behaviour_event(&mut self, ev: BehaviourEvent, now: u64) {
        match ev {
            BehaviourEvent::Identify(identify::Event::Received { peer_id, info, .. }) => {
                let peer = peer_id.to_string();
                for addr in info
                    .listen_addrs
                    .iter()
                    .take(crate::peers::registry::MAX_ADDRS_PER_PEER)
                {
                    let a = strip_p2p(addr).to_string();
                    if routable(&a) && !is_memory(addr) {
                        self.registry.observe(&peer, Some(&a), "ip", now);
                        self.swarm
                            .behaviour_mut()
                            .kad
                            .add_address(&peer_id, addr.clone());
                    }
                }
            }
            BehaviourEvent::Mdns(mdns::Event::Discovered(found)) => {
                let mut by_peer: HashMap<PeerId, Vec<Multiaddr>> = HashMap::new();
                for (peer, addr) in found {
                    self.registry.observe(
                        &peer.to_string(),
                        Some(&strip_p2p(&addr).to_string()),
                        "ip",
                        now,
                    );
                    by_peer.entry(peer).or_default().push(addr);
                }
                let t = Instant::now();
                for (peer, addrs) in by_peer {
                    info!(%peer, "found by mDNS");
                    self.maybe_dial(peer, addrs, t);
                }
            }
            BehaviourEvent::Gossipsub(gossipsub::Event::Message {
                message,
                propagation_source,
                message_id,
            }) if self.is_ledger_topic(&message.topic) => {
                self.on_ledger_gossip(message, propagation_source, message_id)
            }
            BehaviourEvent::Gossipsub(gossipsub::Event::Message {
                message,
                propagation_source,
                message_id,
            }) => {
                // Messages are relayed only once validated, so a bad one stops here.
                let verdict = if message.topic == self.announce_topic.hash() {
                    self.on_announcement(&message.data, propagation_source, now)
                } else {
                    gossipsub::MessageAcceptance::Ignore
                };
                self.swarm
                    .behaviour_mut()
                    .gossipsub
                    .report_message_validation_result(&message_id, &propagation_source, verdict);
            }
            BehaviourEvent::Gossipsub(gossipsub::Event::Subscribed { peer_id, topic, .. }) => {
                self.on_ledger_subscribed(peer_id, &topic);
                if topic == self.announce_topic.hash() {
                    debug!(%peer_id, "peer subscribed to announcements");
                    let due = Instant::now() + ANNOUNCE_DEBOUNCE;
                    self.announce_due = Some(self.announce_due.map_or(due, |d| d.min(due)));
                }
            }
            BehaviourEvent::Auction(ev) => self.on_auction(ev),
            BehaviourEvent::LedgerSync(ev) => self.on_ledger_sync(ev),
            BehaviourEvent::Shards(ev) => self.on_shards(ev),
            BehaviourEvent::Kad(kad::Event::RoutingUpdated {
                peer, addresses, ..
            }) => {
                let p = peer.to_string();
                for a in addresses.iter() {
                    self.registry
                        .observe(&p, Some(&strip_p2p(a).to_string()), "ip", now);
                }
                let addrs = addresses.into_vec();
                self.maybe_dial(peer, addrs, Instant::now());
            }
            _ => {}
        }
    }

    fn on_announcement(
        &mut self,
        data: &[u8],
        from: PeerId,
        now: u64,
    ) -> gossipsub::MessageAcceptance {
        let verified = SignedAnnouncement::from_wire(data).and_then(|s| s.verify().map(|v| (s, v)));
        match verified {
            Ok((signed, (signer, ann))) => {
                if signer == self.identity.peer_id() {
                    return gossipsub::MessageAcceptance::Ignore;
                }
                let seq = ann.seq;
                let active = ann.active;
                if self.registry.announce(ann, signed, "ip", now) == AnnounceOutcome::Updated {
                    debug!(peer = %signer, seq, active, "announcement stored");
                    // The announcer may be new to us: dial it if that is our job.
                    if let Some(rec) = self.registry.get(&signer.to_string()) {
                        let addrs = rec.addrs.iter().filter_map(|a| a.parse().ok()).collect();
                        self.maybe_dial(signer, addrs, Instant::now());
                    }
                }
                gossipsub::MessageAcceptance::Accept
            }
            Err(e) => {
                warn!(peer = %from, error = %e, "announcement rejected");
                gossipsub::MessageAcceptance::Reject
            }
        }
    }
}

fn strip_p2p(addr: &Multiaddr) -> Multiaddr {
    addr.iter()
        .filter(|p| !matches!(p, Protocol::P2p(_)))
        .collect()
}

fn is_memory(addr: &Multiaddr) -> bool {
    addr.iter().any(|p| matches!(p, Protocol::Memory(_)))
}
