//! Storage against fake hosts, with paused time: each fake host is a real [`ShardHost`] on a
//! temporary directory behind a network that can make it refuse, stay silent (answer with
//! the transport's timeout after 30 s) or corrupt the shards it serves. Puts place shards
//! and record a manifest; gets reject corrupt shards; repair replaces a lost host.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    collections::{BTreeMap, HashMap},
    path::Path,
    sync::{Arc, Mutex},
    time::Duration,
};

use futures::future::BoxFuture;
use libp2p::{
    gossipsub::{IdentTopic, MessageId},
    PeerId,
};
use offgrid_behaviours::{
    announce::{self, Announcement, Capacity},
    shards::{FetchedShard, Request, Response},
};
use offgrid_net::{testing::FakeNet, ClientError, GossipEvent, PeerEvent};
use offgrid_storage::{Codec, Scheme, SignedManifest};
use serde_json::Value;
use tempfile::TempDir;
use tokio::{sync::watch, task::JoinSet};
use tokio_util::sync::CancellationToken;

use super::{
    get::GetParams,
    host::{Handled, ShardHost},
    ops::Progress,
    put::PutParams,
    repair::Threshold,
    Storage, StorageError,
};
use crate::{
    config::{Config, StorageConfig},
    identity::Identity,
    market::broker::Reputation,
    now_ms,
    peers::{self, Input, Parts},
    store::{Store, Table},
};

const SCHEME: Scheme = Scheme::ReedSolomon { k: 2, n: 3 };
const SHARD_SIZE: u32 = 1024;

/// How a fake host behaves.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Mode {
    Good,
    /// Answers every request `Refused`.
    Refuses,
    /// Never answers: the transport times out after 30 s.
    Silent,
    /// Stores honestly, but flips a byte of every shard it serves.
    Corrupts,
}

struct FakeHost {
    host: Arc<ShardHost>,
    mode: Mode,
    _dir: TempDir,
}

/// The network to the fake hosts: a [`FakeNet`] whose shard requests reach them.
#[derive(Clone)]
struct HostsNet {
    fake: FakeNet,
    hosts: Arc<Mutex<HashMap<PeerId, FakeHost>>>,
    /// (host, whether the request was a store) for every shard request.
    asked: Arc<Mutex<Vec<(PeerId, bool)>>>,
}

impl Default for HostsNet {
    fn default() -> Self {
        let net = HostsNet {
            fake: FakeNet::new(),
            hosts: Default::default(),
            asked: Default::default(),
        };
        let (hosts, asked) = (net.hosts.clone(), net.asked.clone());
        net.fake.respond_shards_with(Arc::new(move |peer, request| {
            answer(&hosts, &asked, peer, request)
        }));
        net
    }
}

impl HostsNet {
    fn set_mode(&self, peer: PeerId, mode: Mode) {
        self.hosts.lock().unwrap().get_mut(&peer).unwrap().mode = mode;
    }

    fn stores_asked_of(&self, peer: PeerId) -> usize {
        let asked = self.asked.lock().unwrap();
        asked
            .iter()
            .filter(|(p, store)| *p == peer && *store)
            .count()
    }

    fn held_by(&self, peer: PeerId) -> u64 {
        self.hosts.lock().unwrap()[&peer].host.status().shards
    }
}

fn flip(bytes: &mut [u8]) {
    if let Some(b) = bytes.first_mut() {
        *b ^= 0xff;
    }
}

/// A fake host's answer to one shard request, as its mode makes it.
fn answer(
    hosts: &Mutex<HashMap<PeerId, FakeHost>>,
    asked: &Mutex<Vec<(PeerId, bool)>>,
    peer: PeerId,
    request: Request,
) -> BoxFuture<'static, Result<Response, ClientError>> {
    let is_store = matches!(request, Request::Store { .. } | Request::StoreBatch { .. });
    asked.lock().unwrap().push((peer, is_store));
    let found = hosts
        .lock()
        .unwrap()
        .get(&peer)
        .map(|h| (h.host.clone(), h.mode));
    Box::pin(async move {
        let Some((host, mode)) = found else {
            return Err(ClientError::Refused("unknown peer".into()));
        };
        let response = match mode {
            Mode::Refuses => {
                return Ok(Response::Refused {
                    reason: "not today".into(),
                })
            }
            Mode::Silent => {
                tokio::time::sleep(Duration::from_secs(30)).await;
                return Err(ClientError::Refused("request timed out".into()));
            }
            Mode::Good | Mode::Corrupts => match host.handle(PeerId::random(), request) {
                Handled::Now(r) => r,
                Handled::Later(work) => work.await,
            },
        };
        Ok(match (mode, response) {
            (Mode::Corrupts, Response::Shard { mut bytes }) => {
                flip(&mut bytes.0);
                Response::Shard { bytes }
            }
            (Mode::Corrupts, Response::ShardBatch { mut shards }) => {
                for s in &mut shards {
                    if let FetchedShard::Shard { bytes } = s {
                        flip(&mut bytes.0);
                    }
                }
                Response::ShardBatch { shards }
            }
            (_, r) => r,
        })
    })
}

struct Node {
    net: HostsNet,
    storage: Arc<Storage>,
    store: Arc<Store>,
    hosts: Vec<PeerId>,
    dir: TempDir,
    _local: TempDir,
    cancel: CancellationToken,
    tasks: JoinSet<()>,
}

impl Node {
    async fn stop(mut self) {
        self.cancel.cancel();
        while self.tasks.join_next().await.is_some() {}
    }

    fn file(&self, name: &str, len: usize) -> (std::path::PathBuf, Vec<u8>) {
        let data: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
        let path = self.dir.path().join(name);
        std::fs::write(&path, &data).unwrap();
        (path, data)
    }

    async fn put(&self, path: &Path) -> Result<Value, StorageError> {
        let params = PutParams {
            path: path.to_owned(),
            scheme: SCHEME,
            shard_size: SHARD_SIZE,
            name: None,
            no_adapt: false,
            expires_in: None,
        };
        let progress = Arc::new(Progress::default());
        self.storage
            .put(params, progress, &CancellationToken::new())
            .await
    }

    async fn get(&self, asset: &str, out: &Path) -> Result<Value, StorageError> {
        let params = GetParams {
            asset: asset.to_owned(),
            out: out.to_owned(),
            key: None,
        };
        let progress = Arc::new(Progress::default());
        self.storage
            .get(params, progress, &CancellationToken::new())
            .await
    }

    fn manifest(&self, asset: &str) -> offgrid_storage::Manifest {
        self.store
            .get::<SignedManifest>(Table::Manifests, asset)
            .unwrap()
            .expect("a manifest")
            .verify()
            .unwrap()
    }
}

fn host_dir(cfg: &StorageConfig, id: &Identity) -> (Arc<ShardHost>, TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::in_memory().unwrap());
    let host = ShardHost::open(dir.path(), cfg, store, id.x25519_public())
        .unwrap()
        .roomy();
    (Arc::new(host), dir)
}

/// A node with fake storage hosts in these modes; hosts listed as `connected` rank first.
async fn node(modes: &[Mode], connected: &[usize]) -> Node {
    node_with(modes, connected, StorageConfig::default()).await
}

/// [`node`] with a storage config of its own.
async fn node_with(modes: &[Mode], connected: &[usize], cfg: StorageConfig) -> Node {
    let net = HostsNet::default();
    let store = Arc::new(Store::in_memory().unwrap());
    let cancel = CancellationToken::new();
    let mut tasks = JoinSet::new();
    let (_mesh_tx, mesh) = watch::channel(None);
    let me = Identity::from_seed([1; 32]);
    let started = peers::start(
        Parts {
            identity: me.clone(),
            cfg: Config::default(),
            store: store.clone(),
            net: Arc::new(net.fake.clone()),
            bootstrap: Vec::new(),
            mesh,
        },
        cancel.clone(),
        &mut tasks,
    )
    .unwrap();
    let mut hosts = Vec::new();
    for (i, mode) in modes.iter().enumerate() {
        let id = Identity::from_seed([10 + i as u8; 32]);
        let (host, dir) = host_dir(&cfg, &id);
        let fake = FakeHost {
            host,
            mode: *mode,
            _dir: dir,
        };
        net.hosts.lock().unwrap().insert(id.peer_id(), fake);
        let data = Announcement {
            node_id: id.peer_id().to_string(),
            seq: 1,
            active: true,
            prices: BTreeMap::new(),
            job_types: vec![],
            min_oncall_percent: 50,
            burst_percent_max: 50,
            burst: 1,
            capacity: Capacity {
                cpu_cores: 1,
                storage_bytes: 1 << 30,
            },
            listen_addrs: vec![format!("/ip4/127.0.0.1/tcp/{}", 4900 + i)],
            issued_at_ms: now_ms(),
        }
        .sign(id.keypair())
        .unwrap()
        .to_wire();
        let gossip = GossipEvent::Message {
            topic: IdentTopic::new(announce::TOPIC).hash(),
            data,
            from: id.peer_id(),
            id: MessageId::new(format!("ann-{i}").as_bytes()),
        };
        started.input.send(Input::Gossip(gossip)).await.unwrap();
        if connected.contains(&i) {
            let up = PeerEvent::Connected {
                peer: id.peer_id(),
                dialed: None,
            };
            started.input.send(Input::Peer(up)).await.unwrap();
        }
        hosts.push(id.peer_id());
    }
    let (local, local_dir) = host_dir(&cfg, &me);
    let storage = Storage::open(
        &cfg,
        local,
        me,
        store.clone(),
        started.handle.clone(),
        Arc::new(Reputation::default()),
    )
    .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let known = storage.candidates().await.unwrap();
        let linked = started.handle.peers().await.unwrap();
        let up = linked.iter().filter(|p| p.connected).count();
        if known.len() == modes.len() && up == connected.len() {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "hosts never listed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Node {
        net,
        storage,
        store,
        hosts,
        dir: tempfile::tempdir().unwrap(),
        _local: local_dir,
        cancel,
        tasks,
    }
}

/// A file size of three segments under [`SCHEME`].
fn three_segments() -> usize {
    Codec::new(SCHEME, SHARD_SIZE).unwrap().segment_plain_len() * 3 - 100
}

#[tokio::test(start_paused = true)]
async fn a_put_places_every_shard_on_distinct_hosts_and_records_the_manifest() {
    let n = node(&[Mode::Good, Mode::Good, Mode::Good], &[]).await;
    let (path, data) = n.file("a.bin", three_segments());
    let r = n.put(&path).await.unwrap();
    let asset = r["asset_id"].as_str().unwrap().to_owned();
    assert_eq!(r["shards_placed"], 9, "{r}");
    assert_eq!(r["adapted"], false);
    let m = n.manifest(&asset);
    assert_eq!(m.size, data.len() as u64);
    assert_eq!(m.segment_count, 3);
    assert_eq!(m.file_blake3, blake3::hash(&data).to_hex().as_str());
    for seg in &m.segments {
        let mut hosts: Vec<&str> = seg.shards.iter().map(|s| s.host.as_str()).collect();
        hosts.sort_unstable();
        hosts.dedup();
        assert_eq!(hosts.len(), 3, "one shard of a segment per host");
    }
    for h in &n.hosts {
        assert_eq!(
            n.net.held_by(*h),
            3,
            "each host holds one shard of each segment"
        );
    }
    // The upload is complete: its resume state is gone.
    assert_eq!(n.store.len(Table::Uploads).unwrap(), 0);
    // And the file comes back.
    let out = n.dir.path().join("a.out");
    let g = n.get(&asset, &out).await.unwrap();
    assert_eq!(g["corrupt_shards"], 0);
    assert_eq!(std::fs::read(&out).unwrap(), data);
    n.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_refusing_and_a_silent_host_are_replaced_by_the_others() {
    // The bad hosts are connected, so they rank first and are planned for shards.
    let modes = [
        Mode::Refuses,
        Mode::Silent,
        Mode::Good,
        Mode::Good,
        Mode::Good,
    ];
    let n = node(&modes, &[0, 1]).await;
    let (path, data) = n.file("b.bin", three_segments());
    let r = n.put(&path).await.unwrap();
    let asset = r["asset_id"].as_str().unwrap().to_owned();
    assert_eq!(r["shards_placed"], 9, "{r}");
    let (refuser, silent) = (n.hosts[0], n.hosts[1]);
    assert!(
        n.net.stores_asked_of(refuser) > 0,
        "the refusing host was tried"
    );
    assert!(
        n.net.stores_asked_of(silent) > 0,
        "the silent host was tried"
    );
    let m = n.manifest(&asset);
    for seg in &m.segments {
        assert_eq!(seg.shards.len(), 3);
        for s in &seg.shards {
            let host: PeerId = s.host.parse().unwrap();
            assert!(n.hosts[2..].contains(&host), "shard placed on a bad host");
        }
    }
    assert_eq!(n.net.held_by(refuser) + n.net.held_by(silent), 0);
    let out = n.dir.path().join("b.out");
    n.get(&asset, &out).await.unwrap();
    assert_eq!(std::fs::read(&out).unwrap(), data);
    n.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_put_that_cannot_place_k_shards_is_incomplete_and_keeps_its_progress() {
    let n = node(&[Mode::Refuses, Mode::Silent], &[]).await;
    let (path, _) = n.file("c.bin", three_segments());
    let err = n.put(&path).await.unwrap_err();
    assert!(
        matches!(
            err,
            StorageError::Incomplete {
                segment: 0,
                placed: 0,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(err.code(), "upload_incomplete");
    // Resumable: the upload state is kept, and no manifest was made.
    assert_eq!(
        n.store.len(Table::Uploads).unwrap(),
        1,
        "the upload state is kept for a resume"
    );
    assert_eq!(n.store.len(Table::Manifests).unwrap(), 0);
    n.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_put_with_one_storage_host_fails_with_no_hosts() {
    let n = node(&[Mode::Good], &[]).await;
    let (path, _) = n.file("d.bin", 10);
    let err = n.put(&path).await.unwrap_err();
    assert!(
        matches!(
            err,
            StorageError::NoHosts {
                found: 1,
                needed: 2
            }
        ),
        "{err:?}"
    );
    assert_eq!(n.net.stores_asked_of(n.hosts[0]), 0);
    n.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_get_rejects_corrupt_shards_and_decodes_from_the_others_or_says_how_many_were_bad() {
    // No hedging: each segment asks the corrupt host first and only k shards at once, so
    // every segment meets the rot (a hedged get may finish on the good shards first).
    let cfg = StorageConfig {
        get_margin: 0,
        ..StorageConfig::default()
    };
    let n = node_with(&[Mode::Good, Mode::Good, Mode::Good], &[], cfg).await;
    let (path, data) = n.file("e.bin", three_segments());
    let asset = n.put(&path).await.unwrap()["asset_id"]
        .as_str()
        .unwrap()
        .to_owned();
    // One host of three corrupts what it serves: k = 2 valid shards are left per segment.
    // It measured fastest, so a get asks it first for each segment's shard.
    let bad = n.hosts[0];
    for _ in 0..20 {
        n.storage.stats.observe(bad, Duration::ZERO);
        for h in &n.hosts[1..] {
            n.storage.stats.observe(*h, Duration::from_millis(200));
        }
    }
    n.net.set_mode(bad, Mode::Corrupts);
    let out = n.dir.path().join("e.out");
    let g = n.get(&asset, &out).await.unwrap();
    assert_eq!(g["corrupt_shards"], 3, "one per segment: {g}");
    assert_eq!(g["shards_fetched"], 6, "k valid ones per segment: {g}");
    assert_eq!(std::fs::read(&out).unwrap(), data);
    // Two of three: one valid shard per segment, fewer than k.
    n.net.set_mode(n.hosts[1], Mode::Corrupts);
    let out2 = n.dir.path().join("e2.out");
    let err = n.get(&asset, &out2).await.unwrap_err();
    let StorageError::NotEnoughShards {
        found,
        needed,
        total,
        corrupt,
        ..
    } = err
    else {
        panic!("{err:?}")
    };
    // It gives up as soon as k can no longer be reached, so the one valid shard may still
    // be in flight (`found` 0) and the second corrupt one not yet back (`corrupt` 1).
    assert_eq!((needed, total), (2, 3));
    assert!(
        found < needed && corrupt >= 1,
        "{found} valid, {corrupt} corrupt"
    );
    assert!(!out2.exists(), "nothing is written for a failed get");
    n.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_repair_rebuilds_the_shards_of_a_lost_host_on_a_spare_one() {
    let n = node(
        &[Mode::Good, Mode::Good, Mode::Good, Mode::Good],
        &[0, 1, 2],
    )
    .await;
    let (path, data) = n.file("f.bin", three_segments());
    let asset = n.put(&path).await.unwrap()["asset_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let spare = n.hosts[3];
    assert_eq!(
        n.net.held_by(spare),
        0,
        "the connected hosts took the shards"
    );
    let lost = n.hosts[0];
    n.net.set_mode(lost, Mode::Silent);
    let r = n
        .storage
        .repair(&asset, Threshold::All, None, &CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(r.shards_rebuilt, 3, "{r:?}");
    assert_eq!(r.revision, 1);
    assert_eq!(r.reachable_min_after, 3);
    assert_eq!(n.net.held_by(spare), 3);
    let m = n.manifest(&asset);
    assert_eq!(m.revision, 1);
    let on_lost = m.segments.iter().flat_map(|s| &s.shards);
    assert!(on_lost.clone().all(|s| s.host != lost.to_string()));
    let out = n.dir.path().join("f.out");
    n.get(&asset, &out).await.unwrap();
    assert_eq!(std::fs::read(&out).unwrap(), data);
    n.stop().await;
}
