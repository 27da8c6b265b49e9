//! The peer service against a fake network and an in-memory store, with paused time:
//! what it announces and dials, what it accepts from gossip, and what survives a restart.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use libp2p::{
    gossipsub::{IdentTopic, MessageAcceptance, MessageId},
    Multiaddr, PeerId,
};
use offgrid_behaviours::announce::{self, Announcement, SignedAnnouncement};
use offgrid_net::{
    testing::{FakeNet, Sent},
    GossipEvent, Net,
};
use tokio::{sync::watch, task::JoinSet};
use tokio_util::sync::CancellationToken;

use super::{start, Input, Parts, Started};
use crate::{config::Config, identity::Identity, store::Store};

struct Running {
    started: Started,
    cancel: CancellationToken,
    tasks: JoinSet<()>,
}

impl Running {
    async fn stop(mut self) {
        self.cancel.cancel();
        while self.tasks.join_next().await.is_some() {}
    }
}

fn run(net: &FakeNet, store: &Arc<Store>, bootstrap: Vec<(PeerId, Multiaddr)>) -> Running {
    let cancel = CancellationToken::new();
    let mut tasks = JoinSet::new();
    let (_mesh_tx, mesh) = watch::channel(None);
    let net: Arc<dyn Net> = Arc::new(net.clone());
    let started = start(
        Parts {
            identity: Identity::from_seed([1; 32]),
            cfg: Config::default(),
            store: store.clone(),
            net,
            bootstrap,
            mesh,
        },
        cancel.clone(),
        &mut tasks,
    )
    .unwrap();
    Running {
        started,
        cancel,
        tasks,
    }
}

/// Waits until `f` holds: polls every 50 ms of virtual time, for at most 10 s of real time.
/// (Paused time jumps ahead while the service waits on the store's writer thread, so the
/// deadline is real time; what a test asserts about virtual time it measures itself.)
async fn until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(
            std::time::Instant::now() < deadline,
            "never happened: {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn publications(net: &FakeNet) -> Vec<Announcement> {
    net.sent()
        .into_iter()
        .filter_map(|s| match s {
            Sent::Publish(topic, data) if topic == announce::TOPIC => {
                let signed = SignedAnnouncement::from_wire(&data).unwrap();
                Some(signed.verify().unwrap().1)
            }
            _ => None,
        })
        .collect()
}

fn announcement_of(id: &Identity, seq: u64) -> Vec<u8> {
    Announcement {
        node_id: id.peer_id().to_string(),
        seq,
        active: true,
        prices: BTreeMap::from([("echo".to_owned(), 5)]),
        job_types: vec!["echo".into()],
        min_oncall_percent: 50,
        burst_percent_max: 50,
        burst: 1,
        capacity: Default::default(),
        listen_addrs: vec!["/ip4/127.0.0.1/tcp/4999".into()],
        issued_at_ms: crate::now_ms(),
    }
    .sign(id.keypair())
    .unwrap()
    .to_wire()
}

fn gossip(data: Vec<u8>, from: PeerId, id: &str) -> Input {
    Input::Gossip(GossipEvent::Message {
        topic: IdentTopic::new(announce::TOPIC).hash(),
        data,
        from,
        id: MessageId::new(id.as_bytes()),
    })
}

fn verdict(net: &FakeNet, id: &str) -> Option<MessageAcceptance> {
    net.sent().into_iter().find_map(|s| match s {
        Sent::Validate(m, _, a) if m == MessageId::new(id.as_bytes()) => Some(a),
        _ => None,
    })
}

#[tokio::test(start_paused = true)]
async fn announces_at_start_and_again_every_interval_and_dials_the_bootstrap_peers() {
    let (net, store) = (FakeNet::new(), Arc::new(Store::in_memory().unwrap()));
    let boot = Identity::from_seed([9; 32]).peer_id();
    let addr: Multiaddr = "/ip4/127.0.0.1/tcp/4800".parse().unwrap();
    let node = run(&net, &store, vec![(boot, addr.clone())]);
    until("the bootstrap dial", || {
        net.sent()
            .iter()
            .any(|s| matches!(s, Sent::Dial(d) if d.peer == boot && d.addrs == vec![addr.clone()]))
    })
    .await;
    until("a first announcement", || !publications(&net).is_empty()).await;
    let seen_first = tokio::time::Instant::now();
    let first = publications(&net)[0].clone();
    assert_eq!(
        first.node_id,
        Identity::from_seed([1; 32]).peer_id().to_string()
    );
    // The default interval is 30 s: the next one comes no earlier, with a higher seq.
    let interval = Duration::from_secs(Config::default().network.announce_interval_s);
    until("a second announcement", || publications(&net).len() >= 2).await;
    assert!(
        seen_first.elapsed() + Duration::from_millis(300) >= interval,
        "re-announced after {:?}",
        seen_first.elapsed()
    );
    assert!(publications(&net)[1].seq > first.seq);
    node.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_signed_announcement_is_accepted_and_listed_and_a_forged_one_is_rejected() {
    let (net, store) = (FakeNet::new(), Arc::new(Store::in_memory().unwrap()));
    let node = run(&net, &store, Vec::new());
    let other = Identity::from_seed([2; 32]);
    let from = other.peer_id();
    node.started
        .input
        .send(gossip(announcement_of(&other, 1), from, "good"))
        .await
        .unwrap();
    // Forged: a third key's announcement claiming to be `other`.
    let liar = Identity::from_seed([3; 32]);
    let mut forged: SignedAnnouncement =
        SignedAnnouncement::from_wire(&announcement_of(&liar, 1)).unwrap();
    forged.public_key = SignedAnnouncement::from_wire(&announcement_of(&other, 1))
        .unwrap()
        .public_key;
    node.started
        .input
        .send(gossip(forged.to_wire(), liar.peer_id(), "forged"))
        .await
        .unwrap();
    node.started
        .input
        .send(gossip(b"{not json".to_vec(), liar.peer_id(), "garbage"))
        .await
        .unwrap();
    until("three verdicts", || verdict(&net, "garbage").is_some()).await;
    assert_eq!(verdict(&net, "good"), Some(MessageAcceptance::Accept));
    assert_eq!(verdict(&net, "forged"), Some(MessageAcceptance::Reject));
    assert_eq!(verdict(&net, "garbage"), Some(MessageAcceptance::Reject));
    let peers = node.started.handle.peers().await.unwrap();
    let ids: Vec<&str> = peers.iter().map(|p| p.peer_id.as_str()).collect();
    assert_eq!(ids, vec![from.to_string().as_str()]);
    node.stop().await;
}

#[tokio::test(start_paused = true)]
async fn the_registry_is_flushed_at_stop_and_restored_at_start() {
    let (net, store) = (FakeNet::new(), Arc::new(Store::in_memory().unwrap()));
    let node = run(&net, &store, Vec::new());
    let other = Identity::from_seed([4; 32]);
    node.started
        .input
        .send(gossip(announcement_of(&other, 7), other.peer_id(), "a"))
        .await
        .unwrap();
    until("the verdict", || verdict(&net, "a").is_some()).await;
    node.stop().await;

    let net = FakeNet::new();
    let again = run(&net, &store, Vec::new());
    let peers = again.started.handle.peers().await.unwrap();
    assert_eq!(peers.len(), 1, "{peers:?}");
    assert_eq!(peers[0].peer_id, other.peer_id().to_string());
    // A restored peer's address is given to Kademlia, so a request to it can dial.
    until("the restored address for Kademlia", || {
        net.sent()
            .iter()
            .any(|s| matches!(s, Sent::KadAddress(p, _) if *p == other.peer_id()))
    })
    .await;
    again.stop().await;
}
