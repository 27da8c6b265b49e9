//! The broker tests' fixture: a fake network whose auction answers come after a delay or
//! never, the peer service knowing a few hosts, and honest or doctored answers.

#![allow(clippy::unwrap_used, clippy::expect_used)]
use std::{
    collections::{BTreeMap, HashMap, VecDeque},
    sync::{Arc, Mutex},
    time::Duration,
};

use libp2p::{
    gossipsub::{IdentTopic, MessageId},
    PeerId,
};
use offgrid_behaviours::{
    announce::{self, Announcement},
    auction::{Request, Response},
};
use offgrid_ledger::{
    receipt::{Metrics, Proofs, ReceiptBody, RECEIPT_VERSION},
    signed::Signed,
    SignedReceipt,
};
use offgrid_net::{
    testing::{FakeNet, Sent},
    ClientError, GossipEvent,
};
use tokio::{sync::watch, task::JoinSet, time::Instant};
use tokio_util::sync::CancellationToken;

use super::broker::{Broker, JobSpec, Reputation};
use crate::{
    config::{Config, MarketConfig},
    failover::{self, FailoverConfig, QuorumConfig},
    identity::Identity,
    now_ms,
    peers::{self, Input, Parts},
    store::{Store, Table},
};

/// One scripted answer: after `after`, `Some` answer, or `None` for a host that never does.
type Scripted = (Duration, Option<Result<Response, ClientError>>);

/// A [`FakeNet`] whose auction answers come after a delay, or never. Everything is
/// recorded by the fake; auction requests also with the virtual time they arrived.
#[derive(Clone)]
pub(super) struct SlowNet {
    pub(super) fake: FakeNet,
    script: Arc<Mutex<HashMap<PeerId, VecDeque<Scripted>>>>,
    arrivals: Arc<Mutex<Vec<(PeerId, Request, Instant)>>>,
}

impl Default for SlowNet {
    fn default() -> Self {
        let net = SlowNet {
            fake: FakeNet::new(),
            script: Default::default(),
            arrivals: Default::default(),
        };
        let (script, arrivals) = (net.script.clone(), net.arrivals.clone());
        // Hosts that went silent on a run: they answer no heartbeat either.
        let silent: Arc<Mutex<std::collections::HashSet<PeerId>>> = Default::default();
        net.fake
            .respond_auctions_with(Arc::new(move |peer, request: Request| {
                if let Request::Progress { .. } = request {
                    // Heartbeats come from the host's event loop: a host answers them
                    // while its run is out, unless it has gone silent.
                    let quiet = silent.lock().unwrap().contains(&peer);
                    return Box::pin(async move {
                        if quiet {
                            std::future::pending::<()>().await;
                        }
                        Ok(Response::Progress {
                            running: true,
                            elapsed_ms: 0,
                            progress: 0,
                        })
                    });
                }
                let is_run = matches!(request, Request::Run(_));
                arrivals
                    .lock()
                    .unwrap()
                    .push((peer, request, Instant::now()));
                let next = script
                    .lock()
                    .unwrap()
                    .get_mut(&peer)
                    .and_then(VecDeque::pop_front);
                if is_run && matches!(next, Some((_, None))) {
                    silent.lock().unwrap().insert(peer);
                }
                Box::pin(async move {
                    let Some((after, answer)) = next else {
                        return Err(ClientError::Refused("no scripted answer".into()));
                    };
                    tokio::time::sleep(after).await;
                    match answer {
                        Some(a) => a,
                        None => std::future::pending().await,
                    }
                })
            }));
        net
    }
}

impl SlowNet {
    pub(super) fn answer(
        &self,
        peer: PeerId,
        after: Duration,
        r: Option<Result<Response, ClientError>>,
    ) {
        let mut s = self.script.lock().unwrap();
        s.entry(peer).or_default().push_back((after, r));
    }

    /// The hosts asked for a quote, in order.
    pub(super) fn quoted(&self) -> Vec<PeerId> {
        let sent = self.fake.sent();
        let quote = |s: &Sent| match s {
            Sent::Auction(p, Request::Quote { .. }) => Some(*p),
            _ => None,
        };
        sent.iter().filter_map(quote).collect()
    }

    /// When each run request reached a host, in order.
    pub(super) fn runs(&self) -> Vec<(PeerId, Instant)> {
        self.arrivals
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, r, _)| matches!(r, Request::Run(_)))
            .map(|(p, _, t)| (*p, *t))
            .collect()
    }
}

const BROKER_SEED: [u8; 32] = [1; 32];

pub(super) fn host(seed: u8) -> Identity {
    Identity::from_seed([seed; 32])
}

pub(super) struct Market {
    pub(super) net: SlowNet,
    pub(super) broker: Broker,
    cancel: CancellationToken,
    tasks: JoinSet<()>,
}

impl Market {
    pub(super) async fn stop(mut self) {
        self.cancel.cancel();
        while self.tasks.join_next().await.is_some() {}
    }
}

/// The peer service knowing `hosts` (each announcing echo at its price) and a broker on it.
pub(super) async fn market(hosts: &[(&Identity, u64)], cfg: MarketConfig, tracker: bool) -> Market {
    let net = SlowNet::default();
    let store = Arc::new(Store::in_memory().unwrap());
    let cancel = CancellationToken::new();
    let mut tasks = JoinSet::new();
    let (_mesh_tx, mesh) = watch::channel(None);
    let started = peers::start(
        Parts {
            identity: Identity::from_seed(BROKER_SEED),
            cfg: quiet_peers(),
            store: store.clone(),
            net: Arc::new(net.fake.clone()),
            bootstrap: Vec::new(),
            mesh,
        },
        cancel.clone(),
        &mut tasks,
    )
    .unwrap();
    for (i, (id, price)) in hosts.iter().enumerate() {
        let data = Announcement {
            node_id: id.peer_id().to_string(),
            seq: 1,
            active: true,
            prices: BTreeMap::from([("echo".to_owned(), *price)]),
            job_types: vec!["echo".into()],
            min_oncall_percent: 50,
            burst_percent_max: 50,
            burst: 1,
            capacity: Default::default(),
            listen_addrs: vec![format!("/ip4/127.0.0.1/tcp/{}", 4900 + i)],
            issued_at_ms: now_ms(),
        }
        .sign(id.keypair())
        .unwrap()
        .to_wire();
        started
            .input
            .send(Input::Gossip(GossipEvent::Message {
                topic: IdentTopic::new(announce::TOPIC).hash(),
                data,
                from: id.peer_id(),
                id: MessageId::new(format!("ann-{i}").as_bytes()),
            }))
            .await
            .unwrap();
    }
    let handle = started.handle.clone();
    let want = hosts.len();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    // Listed, persisted, and this node's first announcement (with its seq) saved: from
    // here the peer service answers queries without waiting on the store's writer thread,
    // during which paused time would jump ahead to the broker's next deadline.
    loop {
        let listed = handle.candidates("echo".into()).await.unwrap().len();
        let persisted = store.len(Table::Peers).unwrap();
        let announced = net
            .fake
            .sent()
            .iter()
            .any(|s| matches!(s, Sent::Publish(t, _) if t == announce::TOPIC));
        if listed == want && persisted == want as u64 && announced {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "hosts never listed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut broker = Broker::new(
        handle,
        Identity::from_seed(BROKER_SEED).peer_id(),
        cfg,
        Arc::new(Reputation::default()),
    );
    if tracker {
        let t = failover::start(
            QuorumConfig::default(),
            FailoverConfig {
                stall_age_s: 1,
                cooldown_s: 0,
                check_interval_ms: 50,
                ..Default::default()
            },
            store,
            Default::default(),
            cancel.clone(),
            &mut tasks,
        )
        .unwrap();
        broker = broker.with_job_tracker(t);
    }
    Market {
        net,
        broker,
        cancel,
        tasks,
    }
}

/// The peer service's config, announcing (and saving its seq) only once in a test's span.
fn quiet_peers() -> Config {
    let mut cfg = Config::default();
    cfg.network.announce_interval_s = 3600;
    cfg
}

pub(super) fn job(timeout: Duration) -> JobSpec {
    JobSpec {
        job_id: "job-1".into(),
        job_type: "echo".into(),
        units: 1_000_000,
        payload: "hello".into(),
        timeout,
        redundancy: 1,
        host: None,
    }
}

pub(super) fn quote(price: u64) -> Option<Result<Response, ClientError>> {
    ok(Response::Quote {
        price,
        valid_until_ms: now_ms() + 60_000,
        capacity_left: 4,
    })
}

/// The receipt an honest `signer` gives for [`job`] at `price`, with `edit` applied.
pub(super) fn receipt(
    signer: &Identity,
    price: u64,
    edit: impl FnOnce(&mut ReceiptBody),
) -> SignedReceipt {
    let mut body = ReceiptBody {
        version: RECEIPT_VERSION.into(),
        cluster_id: "c".into(),
        job_id: "job-1".into(),
        resource_type: "echo".into(),
        units: 1_000_000,
        metrics: Metrics::default(),
        proofs: Proofs {
            input_blake3: blake3::hash(b"hello").to_hex().to_string(),
            output_blake3: blake3::hash(b"hello").to_hex().to_string(),
        },
        cids: vec![],
        node_id: signer.peer_id().to_string(),
        host_pubkey: hex::encode(signer.public_key()),
        broker_id: Identity::from_seed(BROKER_SEED).peer_id().to_string(),
        started_at_ms: 1,
        finished_at_ms: 2,
        price,
        order: None,
    };
    edit(&mut body);
    Signed::sign(signer.signing_key(), &body).unwrap()
}

pub(super) fn ok(r: Response) -> Option<Result<Response, ClientError>> {
    Some(Ok(r))
}

pub(super) fn done(signer: &Identity, price: u64) -> Option<Result<Response, ClientError>> {
    ok(Response::Done {
        output: "hello".into(),
        receipt: receipt(signer, price, |_| {}),
    })
}

pub(super) const NOW: Duration = Duration::ZERO;
