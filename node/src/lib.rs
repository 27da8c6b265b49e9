//! The Offgrid-Net daemon as a library: configuration, identity, store, the swarm's event
//! loop, the peer registry and the local HTTP API. `main.rs` is a thin shell around
//! [`Node::start`].

pub mod buckets;
pub mod chain;
pub mod config;
pub mod failover;
pub mod files;
pub mod http;
pub mod identity;
pub mod market;
pub mod mesh;
pub mod peers;
/// The radio gateway: beacons and the compact auction profile over LoRa, UDP and the simulator.
pub mod radio;
pub use offgrid_store as store;

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use libp2p::{multiaddr::Protocol, Multiaddr, PeerId};
use offgrid_net::{Client, EventLoop, Inbound, Net, Sink};
use tokio::{net::TcpListener, sync::mpsc, task::JoinSet};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::{
    config::Config,
    http::{auth, AppState, PubKeys},
    identity::Identity,
    store::Store,
};

/// File name of the database inside the data directory.
pub const DB_FILE: &str = "node.redb";

/// Whether a test fault is switched on: `OFFGRID_FAULT_INJECT` holds a comma-separated
/// list (`forge_receipt`, `bad_block`). Off in normal operation; the node logs a warning
/// when one is on.
pub fn fault_injected(name: &str) -> bool {
    std::env::var("OFFGRID_FAULT_INJECT").is_ok_and(|v| v.split(',').any(|f| f.trim() == name))
}

/// Unix time in milliseconds.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A running node.
pub struct Node {
    /// Handle to the network event loop.
    pub client: Client,
    /// Where the local API listens.
    pub api_addr: SocketAddr,
    /// The node's identity.
    pub identity: Identity,
    /// The data directory.
    pub data_dir: PathBuf,
    cancel: CancellationToken,
    tasks: JoinSet<()>,
    store: Arc<Store>,
    storage: Arc<files::Storage>,
    app: axum::Router,
}

/// Keys, the database and the wallet live in the data directory: only the node's user may
/// read them.
fn private(path: &std::path::Path, mode: u32) -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
            .with_context(|| format!("making {} private", path.display()))?;
    }
    let _ = (path, mode);
    Ok(())
}

impl Node {
    /// Opens the data directory, starts the swarm and the API.
    pub async fn start(cfg: Config) -> anyhow::Result<Node> {
        cfg.validate()?;
        let cfg = market::openai::with_local_backend(cfg).await;
        let data_dir = cfg.resolved_data_dir();
        std::fs::create_dir_all(&data_dir)
            .with_context(|| format!("creating data directory {}", data_dir.display()))?;
        private(&data_dir, 0o700)?;
        let identity = Identity::load_or_create(&data_dir)?;
        let store = Arc::new(Store::open(&data_dir.join(DB_FILE))?);
        private(&data_dir.join(DB_FILE), 0o600)?;
        let token = auth::load_or_create_token(&data_dir).context("creating the API token")?;

        let cancel = CancellationToken::new();
        let mut tasks = JoinSet::new();

        let bootstrap = parse_bootstrap(&cfg.bootstrap)?;
        let (client, commands) = Client::channel();
        let net: Arc<dyn Net> = Arc::new(client.clone());

        // Services first, each with its inbox; the router gets their sinks.
        let mesh = mesh::start(&cfg.mesh, &cancel, &mut tasks);
        let peers = peers::start(
            peers::Parts {
                identity: identity.clone(),
                cfg: cfg.clone(),
                store: store.clone(),
                net: net.clone(),
                bootstrap,
                mesh,
            },
            cancel.clone(),
            &mut tasks,
        )?;
        let crdt = chain::load_reputation(&store, &identity.peer_id().to_string())?;
        let tracker = failover::start(
            cfg.quorum.clone(),
            cfg.failover.clone(),
            store.clone(),
            crdt.clone(),
            cancel.clone(),
            &mut tasks,
        )
        .context("starting the failover monitor")?;
        let ledger = chain::start(
            &cfg.ledger,
            &cfg.wallet,
            &identity,
            store.clone(),
            client.clone(),
            crdt,
            cancel.clone(),
            &mut tasks,
        )
        .context("starting the ledger")?;
        let (auction_tx, auction_rx) = mpsc::channel(HOST_QUEUE);
        let (finished_tx, finished) = mpsc::channel(cfg.host.burst.max(1) as usize + 16);
        let host = market::host::Host::new(&cfg, identity.clone(), store.clone(), finished_tx);
        tasks.spawn(market::host::serve(
            host,
            finished,
            auction_rx,
            peers.offer.clone(),
            net.clone(),
            peers.in_flight.clone(),
            cancel.clone(),
        ));
        let shard_host = Arc::new(
            files::host::ShardHost::open(
                &data_dir.join(files::SHARDS_DIR),
                &cfg.storage,
                store.clone(),
                identity.x25519_public(),
            )
            .context("opening the shard store")?,
        );
        let shard_host_gc = shard_host.clone();
        let (shard_tx, shard_rx) = mpsc::channel(files::serve::QUEUE);
        tasks.spawn(files::serve::serve(
            shard_host.clone(),
            shard_rx,
            net.clone(),
            cancel.clone(),
        ));

        // The router.
        let ledger_in = chain::sinks(&ledger.link());
        let mut topics = vec![(
            offgrid_behaviours::announce::TOPIC.to_owned(),
            Sink::channel_into(peers.input.clone()),
        )];
        topics.extend(ledger_in.topics);
        let inbound = Inbound {
            peers: Sink::channel_into(peers.input.clone()),
            connections: vec![ledger_in.connections],
            topics,
            auction: Sink::channel(auction_tx.clone()),
            shards: Sink::channel(shard_tx),
            sync: ledger_in.sync,
        };
        let mut swarm = offgrid_net::build_swarm(identity.keypair(), &net_config(&cfg))?;
        for l in &cfg.listen {
            let addr: Multiaddr = l
                .parse()
                .with_context(|| format!("bad listen address {l:?}"))?;
            swarm
                .listen_on(addr.clone())
                .with_context(|| format!("cannot listen on {addr}"))?;
        }
        // A reservation on each known relay: listening on `<relay>/p2p-circuit` makes the
        // relay client dial the relay and reserve a slot; the relayed address is then
        // announced by identify like any listen address.
        for r in &cfg.network.relays {
            let relay: Multiaddr = r
                .parse()
                .with_context(|| format!("bad relay address {r:?}"))?;
            swarm
                .listen_on(relay.clone().with(Protocol::P2pCircuit))
                .with_context(|| format!("cannot reserve on relay {relay}"))?;
        }
        tasks.spawn(EventLoop::new(swarm, commands, inbound, cancel.clone()).run());

        let wiring = radio::Wiring {
            beacons: Sink::channel_into(peers.input.clone()),
            requests: auction_tx,
            announcement: peers.announcement.clone(),
        };
        let gateway = radio::start(
            &cfg.radio,
            &cfg.cluster_id,
            &identity,
            wiring,
            &cancel,
            &mut tasks,
        )
        .await
        .context("starting the radio gateway")?;
        if let Some(gw) = gateway {
            peers
                .input
                .send(peers::Input::Radio(gw))
                .await
                .context("handing the radio gateway to the peer service")?;
        }
        let peers_handle = peers.handle.clone();

        let reputation = Arc::new(market::broker::Reputation::load(&store)?);
        let storage = files::Storage::open(
            &cfg.storage,
            shard_host,
            identity.clone(),
            store.clone(),
            peers_handle.clone(),
            reputation.clone(),
        )?;
        storage.track_uploads(tracker.clone());
        tasks.spawn(storage.clone().background_repair(cancel.clone()));
        tasks.spawn(shard_host_gc.background_gc(
            std::time::Duration::from_secs(cfg.storage.gc_interval_s),
            std::time::Duration::from_secs(cfg.storage.orphan_grace_s),
            cancel.clone(),
        ));
        let broker = Arc::new(
            market::broker::Broker::new(
                peers_handle.clone(),
                identity.peer_id(),
                cfg.market.clone(),
                reputation.clone(),
            )
            .with_job_tracker(tracker.clone())
            .with_payer(market::payer::Payer::new(
                identity.signing_key().clone(),
                identity.peer_id().to_string(),
                ledger.own_balance(),
            )),
        );
        tasks.spawn(market::reputation::flush_every_second(
            reputation,
            store.clone(),
            cancel.clone(),
        ));

        let listener = TcpListener::bind(&cfg.api_listen)
            .await
            .with_context(|| format!("cannot bind the API on {}", cfg.api_listen))?;
        let api_addr = listener.local_addr()?;
        let state = AppState {
            peers: peers_handle,
            token: token.into(),
            body_limit: cfg.api.body_limit_bytes,
            started: Instant::now(),
            keys: Arc::new(PubKeys::of(&identity)),
            broker,
            store: store.clone(),
            ledger: ledger.clone(),
            failover: tracker,
            storage: storage.clone(),
            core: Arc::new(http::core::CoreState {
                keys: http::core::auth::CoreKeys::new(
                    cfg.core.hmac_keys.clone(),
                    &cfg.core
                        .ed25519_keys
                        .iter()
                        .map(|k| (k.id.clone(), k.public_key.clone()))
                        .collect::<Vec<_>>(),
                    cfg.core.max_clock_skew_s,
                )
                .map_err(|e| anyhow::anyhow!("[core] keys: {e}"))?,
                book: http::core::jobs::JobBook::new(store.clone()),
                metrics: Arc::new(http::metrics::Metrics::new()),
                default_timeout_s: cfg.core.default_timeout_s,
            }),
            limiter: Arc::new(http::limit::RateLimiter::new(
                cfg.core.rate_limit_per_s,
                cfg.core.rate_limit_burst,
            )),
            request_timeout_s: cfg.api.request_timeout_s,
            max_wait_ms: cfg.api.max_wait_ms.min(crate::http::chain::MAX_WAIT_MS),
            paths: Arc::new(files::paths::AllowedPaths::new(
                &cfg.storage.allowed_paths,
                &data_dir,
            )),
            allowed_hosts: Arc::new(
                cfg.api
                    .allowed_hosts
                    .iter()
                    .map(|h| h.to_ascii_lowercase())
                    .collect(),
            ),
            events: Arc::new(http::events::Events::new(cancel.clone())),
        };
        tasks.spawn(http::events::watch_peers(state.clone(), cancel.clone()));
        tasks.spawn(prune_jobs(
            state.core.clone(),
            cfg.core.idempotency_ttl_s,
            cancel.clone(),
        ));
        if let Some(listen) = &cfg.core.listen {
            let tls = match (&cfg.core.tls_cert, &cfg.core.tls_key) {
                (Some(c), Some(k)) => Some(http::core_listener::tls_config(c, k)?),
                (None, None) => None,
                _ => anyhow::bail!("[core] tls_cert and tls_key go together"),
            };
            let scheme = if tls.is_some() { "https" } else { "http" };
            let core_app =
                http::core_listener::router(state.clone(), cfg.api.max_concurrent_requests);
            let addr =
                http::core_listener::serve(listen, tls, core_app, cancel.clone(), &mut tasks)
                    .await?;
            auth::write_private(
                &data_dir.join("core.url"),
                format!("{scheme}://{addr}\n").as_bytes(),
            )
            .context("writing core.url")?;
        }
        let app = http::router(state, &cfg);
        let shutdown = cancel.clone();
        let served = app.clone();
        tasks.spawn(async move {
            let app = served.into_make_service_with_connect_info::<SocketAddr>();
            let serve = axum::serve(listener, app).with_graceful_shutdown(async move {
                shutdown.cancelled().await;
            });
            if let Err(e) = serve.await {
                warn!(error = %e, "API server stopped");
            }
        });
        let url_host = if api_addr.ip().is_unspecified() {
            SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), api_addr.port())
        } else {
            api_addr
        };
        auth::write_private(
            &data_dir.join(auth::URL_FILE),
            format!("http://{url_host}\n").as_bytes(),
        )
        .context("writing api.url")?;
        info!(peer_id = %identity.peer_id(), api = %api_addr, data_dir = %data_dir.display(), "node started");
        Ok(Node {
            client,
            api_addr,
            identity,
            data_dir,
            cancel,
            tasks,
            store,
            storage,
            app,
        })
    }

    /// The API's router, to call in-process (`tower::ServiceExt::oneshot`) as the listener
    /// would.
    pub fn router(&self) -> axum::Router {
        self.app.clone()
    }

    /// The store (for in-process tests and tools).
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// A token that fires when shutdown begins.
    pub fn cancel_token(&self) -> CancellationToken {
        self.cancel.clone()
    }

    /// Stops in order: the API stops accepting, in-flight requests and storage operations
    /// get a grace period (a cancelled put saves its progress for a resume), the swarm
    /// closes and the registry is flushed to the store.
    pub async fn shutdown(mut self, grace: Duration) {
        self.cancel.cancel();
        let storage = self.storage.clone();
        let drain = async {
            // Storage operations run outside the task set (the API starts them): they are
            // cancelled, so a put saves its progress, and waited for with the rest.
            tokio::join!(storage.ops.cancel_all(grace), async {
                while self.tasks.join_next().await.is_some() {}
            });
        };
        if tokio::time::timeout(grace, drain).await.is_err() {
            warn!("tasks did not stop within {grace:?}; aborting them");
            self.tasks.abort_all();
        }
        let _ = std::fs::remove_file(self.data_dir.join(auth::URL_FILE));
        info!("node stopped");
    }
}

/// Forgets ended Core jobs older than the idempotency window, every ten minutes, so the
/// job table stays bounded.
async fn prune_jobs(core: Arc<http::core::CoreState>, ttl_s: u64, cancel: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(600));
    loop {
        tokio::select! {
            biased;
            _ = cancel.cancelled() => break,
            _ = tick.tick() => {}
        }
        match core.book.prune(ttl_s.saturating_mul(1000)).await {
            Ok(n) if n > 0 => info!(pruned = n, "forgot old Core job records"),
            Err(e) => warn!(error = %e, "cannot prune Core job records"),
            _ => {}
        }
    }
}

/// Capacity of the market host's request queue; beyond it the router answers busy.
const HOST_QUEUE: usize = 1024;

/// The swarm's settings from the daemon config.
fn net_config(cfg: &Config) -> offgrid_net::Config {
    let n = &cfg.network;
    // A run may take as long as the slowest executor or the activation deadline.
    let longest_job = cfg
        .executors
        .values()
        .map(|e| e.timeout_s)
        .chain([cfg.market.t_activate_s])
        .max()
        .unwrap_or(30);
    offgrid_net::Config {
        max_connections: n.max_connections,
        max_connections_per_peer: n.max_connections_per_peer,
        max_pending: n.max_pending,
        max_gossip_bytes: n.max_gossip_bytes,
        mdns: cfg.mdns,
        idle_timeout: Duration::from_secs(n.idle_timeout_s),
        auction_timeout: Duration::from_secs(longest_job + 5),
        shard_timeout: Duration::from_secs(cfg.storage.request_timeout_s.max(1)),
        agent_version: format!("offgrid-node/{}", env!("CARGO_PKG_VERSION")),
        inbound_budget_bytes: n.inbound_budget_bytes,
        request_read_timeout: Duration::from_secs(n.request_read_timeout_s.max(1)),
        max_streams: offgrid_net::StreamLimits::default(),
        relay_server: n.relay_server.then(|| offgrid_net::RelayLimits {
            max_reservations: n.relay_max_reservations,
            max_reservations_per_peer: n.relay_max_reservations_per_peer,
            reservation_duration: Duration::from_secs(n.relay_reservation_s.max(1)),
            max_circuits: n.relay_max_circuits,
            max_circuits_per_peer: n.relay_max_circuits_per_peer,
            max_circuit_duration: Duration::from_secs(n.relay_max_circuit_s.max(1)),
            max_circuit_bytes: n.relay_max_circuit_bytes,
        }),
    }
}

/// Parses bootstrap multiaddrs; each must end in `/p2p/<peer id>`.
pub fn parse_bootstrap(list: &[String]) -> anyhow::Result<Vec<(PeerId, Multiaddr)>> {
    list.iter()
        .map(|s| {
            let mut addr: Multiaddr = s
                .parse()
                .with_context(|| format!("bad bootstrap address {s:?}"))?;
            match addr.pop() {
                Some(Protocol::P2p(peer)) => Ok((peer, addr)),
                _ => anyhow::bail!("bootstrap address {s:?} must end in /p2p/<peer id>"),
            }
        })
        .collect()
}

/// Reads `<data-dir>/api.url`.
pub fn read_api_url(dir: &Path) -> Option<String> {
    std::fs::read_to_string(dir.join(auth::URL_FILE))
        .ok()
        .map(|s| s.trim().to_owned())
}

#[cfg(test)]
mod domain_tags {
    use offgrid_behaviours::announce::Announcement;
    use offgrid_ledger::{
        bundle::BundleBody,
        dag::BlockBody,
        payment::OrderBody,
        receipt::ReceiptBody,
        reputation::ReputationReport,
        wallet::{attestation::ROOT_DOMAIN, genesis::GenesisBody, TxBody},
        Domain,
    };
    use offgrid_storage::{manifest::MANIFEST_TAG, policy::POLICY_TAG};
    use offgrid_transports::beacon::SIGNING_DOMAIN;

    /// Every domain under which the node signs, tagged records and raw-message domains alike.
    fn all() -> Vec<(&'static str, &'static [u8])> {
        vec![
            ("receipt", ReceiptBody::TAG),
            ("payment order", OrderBody::TAG),
            ("transaction", TxBody::TAG),
            ("block", BlockBody::TAG),
            ("genesis", GenesisBody::TAG),
            ("reputation report", ReputationReport::TAG),
            ("announcement", Announcement::TAG),
            ("bundle", BundleBody::TAG),
            ("manifest", MANIFEST_TAG),
            ("policy", POLICY_TAG),
            ("witness root", ROOT_DOMAIN),
            ("beacon", SIGNING_DOMAIN),
            ("radio hello", crate::radio::session::D_HELLO),
            ("radio welcome", crate::radio::session::D_WELCOME),
        ]
    }

    #[test]
    fn no_two_signed_kinds_share_a_domain() {
        let tags = all();
        for (i, (a, ta)) in tags.iter().enumerate() {
            assert!(
                ta.is_ascii() && !ta.contains(&b'\n'),
                "{a}: tag must be one ASCII line"
            );
            for (b, tb) in &tags[i + 1..] {
                // Not equal, and neither a prefix of the other: a message under one domain can
                // never be read as a message under another, whatever follows the tag.
                assert!(
                    !ta.starts_with(tb) && !tb.starts_with(ta),
                    "{a} and {b} overlap: {:?} / {:?}",
                    String::from_utf8_lossy(ta),
                    String::from_utf8_lossy(tb)
                );
            }
        }
    }
}
