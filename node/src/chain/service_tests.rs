//! The ledger service against a fake router (the receiving end of a [`Client`]) and an
//! in-memory store: the blocks it makes and publishes, and the gossiped blocks it stores
//! or rejects.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use ed25519_dalek::SigningKey;
use libp2p::{
    gossipsub::{MessageAcceptance, MessageId},
    PeerId,
};
use offgrid_behaviours::ledger_sync::{self, BLOCKS_TOPIC};
use offgrid_ledger::{
    dag::new_block,
    peer_id_from_pubkey,
    receipt::{Metrics, Proofs, ReceiptBody, RECEIPT_VERSION},
    Block, BlockBody, Signed, SignedReceipt,
};
use offgrid_net::{Client, Command, LedgerOut};
use serde_json::Value;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::{
    config::{LedgerConfig, WalletConfig},
    ApiReq, GossipKind, LedgerError, LedgerHandle, LedgerIn,
};
use crate::{
    identity::Identity,
    now_ms,
    store::{Op, Store, Table},
};

/// What the service sent to the router, and whether each published block was already in
/// the store when its publication left.
#[derive(Default)]
struct Router {
    outs: Mutex<Vec<LedgerOut>>,
    durable_at_publish: Mutex<Vec<(String, bool)>>,
}

struct Running {
    handle: LedgerHandle,
    router: Arc<Router>,
    store: Arc<Store>,
    cancel: CancellationToken,
    tasks: JoinSet<()>,
}

impl Running {
    async fn stop(mut self) {
        self.cancel.cancel();
        while self.tasks.join_next().await.is_some() {}
    }

    async fn call(&self, req: ApiReq) -> Result<Value, LedgerError> {
        self.handle.call(req).await
    }

    async fn gossip(&self, data: Vec<u8>, from: PeerId, id: &str) {
        self.handle
            .link()
            .send(LedgerIn::Gossip {
                kind: GossipKind::Blocks,
                data,
                from,
                message_id: MessageId::new(id.as_bytes()),
            })
            .await
            .unwrap();
    }

    fn verdict(&self, id: &str) -> Option<MessageAcceptance> {
        self.router
            .outs
            .lock()
            .unwrap()
            .iter()
            .find_map(|o| match o {
                LedgerOut::Validate {
                    message_id,
                    acceptance,
                    ..
                } if *message_id == MessageId::new(id.as_bytes()) => Some(*acceptance),
                _ => None,
            })
    }

    fn published_blocks(&self) -> Vec<Block> {
        self.router
            .outs
            .lock()
            .unwrap()
            .iter()
            .filter_map(|o| match o {
                LedgerOut::Publish { topic, data } if *topic == BLOCKS_TOPIC => {
                    Some(serde_json::from_slice(data).unwrap())
                }
                _ => None,
            })
            .collect()
    }

    fn stored(&self, id: &str) -> Option<Block> {
        self.store.get::<Block>(Table::Blocks, id).unwrap()
    }
}

fn run(store: Arc<Store>) -> Running {
    let (client, mut commands) = Client::channel();
    let router = Arc::new(Router::default());
    let cancel = CancellationToken::new();
    let mut tasks = JoinSet::new();
    let (r, s) = (router.clone(), store.clone());
    tasks.spawn(async move {
        while let Some(cmd) = commands.recv().await {
            let Command::Ledger(out) = cmd else { continue };
            if let LedgerOut::Publish { topic, data } = &out {
                if *topic == BLOCKS_TOPIC {
                    let block: Block = serde_json::from_slice(data).unwrap();
                    let held = s
                        .get::<Block>(Table::Blocks, &block.id())
                        .unwrap()
                        .is_some();
                    r.durable_at_publish
                        .lock()
                        .unwrap()
                        .push((block.id(), held));
                }
            }
            r.outs.lock().unwrap().push(out);
        }
    });
    // Blocks only on request: the periodic block maker would find nothing anyway.
    let ledger = LedgerConfig {
        block_interval_s: 3600,
        ..Default::default()
    };
    let handle = super::start(
        &ledger,
        &WalletConfig::default(),
        &Identity::from_seed([1; 32]),
        store.clone(),
        client,
        Default::default(),
        cancel.clone(),
        &mut tasks,
    )
    .unwrap();
    Running {
        handle,
        router,
        store,
        cancel,
        tasks,
    }
}

/// Waits until `f` holds: polls every 20 ms, for at most 10 s.
async fn until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(
            std::time::Instant::now() < deadline,
            "never happened: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn receipt(host: &Identity, job: &str) -> SignedReceipt {
    let body = ReceiptBody {
        version: RECEIPT_VERSION.into(),
        cluster_id: "c".into(),
        job_id: job.into(),
        resource_type: "echo".into(),
        units: 1_000_000,
        metrics: Metrics::default(),
        proofs: Proofs::default(),
        cids: vec![],
        node_id: host.peer_id().to_string(),
        host_pubkey: hex::encode(host.public_key()),
        broker_id: "b".into(),
        started_at_ms: 1,
        finished_at_ms: 2,
        price: 1000,
        order: None,
    };
    Signed::sign(host.signing_key(), &body).unwrap()
}

fn other_key() -> SigningKey {
    SigningKey::from_bytes(&[7; 32])
}

fn from() -> PeerId {
    Identity::from_seed([7; 32]).peer_id()
}

#[tokio::test]
async fn a_created_block_is_stored_then_published_on_the_block_topic() {
    let node = run(Arc::new(Store::in_memory().unwrap()));
    // A receipt waiting in the store goes into the next block.
    let host = Identity::from_seed([5; 32]);
    let op = Op::put(Table::Receipts, "0001-a", &receipt(&host, "job-a")).unwrap();
    node.store.commit(vec![op]).await.unwrap();
    let created = node
        .call(ApiReq::CreateBlock { allow_empty: false })
        .await
        .unwrap();
    let ids = created["created"].as_array().unwrap().clone();
    assert_eq!(ids.len(), 1, "{created}");
    let id = ids[0].as_str().unwrap().to_owned();
    until("the block's publication", || {
        !node.published_blocks().is_empty()
    })
    .await;
    let published = node.published_blocks();
    assert_eq!(published.len(), 1);
    let block = &published[0];
    assert_eq!(block.id(), id);
    let body: BlockBody = block.verify().unwrap();
    assert_eq!(
        body.author,
        Identity::from_seed([1; 32]).peer_id().to_string()
    );
    assert_eq!(body.batch.receipts, vec![receipt(&host, "job-a")]);
    // Durable before it left.
    assert_eq!(
        *node.router.durable_at_publish.lock().unwrap(),
        vec![(id.clone(), true)]
    );
    assert_eq!(node.stored(&id).as_ref(), Some(block));
    // Nothing new waiting: no block unless an empty one is asked for.
    let none = node
        .call(ApiReq::CreateBlock { allow_empty: false })
        .await
        .unwrap();
    assert_eq!(none["created"].as_array().unwrap().len(), 0);
    node.stop().await;
}

#[tokio::test]
async fn gossiped_blocks_with_a_bad_signature_or_a_forged_author_are_rejected_and_not_stored() {
    let node = run(Arc::new(Store::in_memory().unwrap()));
    let mut bad_sig = new_block(&other_key(), vec![], vec![], now_ms()).unwrap();
    bad_sig.sig[0] ^= 0x01;
    // Validly signed by one key, but naming another node as its author.
    let mut body: BlockBody = new_block(&other_key(), vec![], vec![], now_ms() + 1)
        .unwrap()
        .verify()
        .unwrap();
    body.author = peer_id_from_pubkey(&[9; 32]);
    let forged: Block = Signed::sign(&other_key(), &body).unwrap();
    node.gossip(serde_json::to_vec(&bad_sig).unwrap(), from(), "sig")
        .await;
    node.gossip(serde_json::to_vec(&forged).unwrap(), from(), "author")
        .await;
    node.gossip(b"{not a block".to_vec(), from(), "garbage")
        .await;
    until("three verdicts", || node.verdict("garbage").is_some()).await;
    assert_eq!(node.verdict("sig"), Some(MessageAcceptance::Reject));
    assert_eq!(node.verdict("author"), Some(MessageAcceptance::Reject));
    assert_eq!(node.verdict("garbage"), Some(MessageAcceptance::Reject));
    for b in [&bad_sig, &forged] {
        assert!(node.stored(&b.id()).is_none());
        assert!(matches!(
            node.call(ApiReq::BlockShow(b.id())).await,
            Err(LedgerError::NotFound(_))
        ));
    }
    assert_eq!(node.store.len(Table::Blocks).unwrap(), 0);
    let status = node.call(ApiReq::Status).await.unwrap();
    assert_eq!(status["blocks"], 0);
    assert_eq!(status["rejected"]["blocks"], 3);
    node.stop().await;
}

#[tokio::test]
async fn a_valid_gossiped_block_is_accepted_stored_and_not_republished_by_us() {
    let node = run(Arc::new(Store::in_memory().unwrap()));
    let host = Identity::from_seed([5; 32]);
    let block = new_block(
        &other_key(),
        vec![],
        vec![receipt(&host, "job-b")],
        now_ms(),
    )
    .unwrap();
    node.gossip(serde_json::to_vec(&block).unwrap(), from(), "good")
        .await;
    until("the verdict", || node.verdict("good").is_some()).await;
    assert_eq!(node.verdict("good"), Some(MessageAcceptance::Accept));
    // The verdict leaves after the round's commit: the block is on disk by now.
    assert_eq!(node.stored(&block.id()).as_ref(), Some(&block));
    let shown = node.call(ApiReq::BlockShow(block.id())).await.unwrap();
    assert_eq!(shown["block"], serde_json::to_value(&block).unwrap());
    // Gossipsub relays an accepted message; the service does not publish it again.
    assert!(node.published_blocks().is_empty());
    // Delivered twice, it is a duplicate: accepted, stored once.
    node.gossip(serde_json::to_vec(&block).unwrap(), from(), "again")
        .await;
    until("the second verdict", || node.verdict("again").is_some()).await;
    assert_eq!(node.verdict("again"), Some(MessageAcceptance::Accept));
    assert_eq!(node.store.len(Table::Blocks).unwrap(), 1);
    node.stop().await;
}

#[tokio::test]
async fn a_block_with_unknown_parents_is_held_its_parents_asked_of_the_forwarder_and_stored_once_they_arrive(
) {
    let node = run(Arc::new(Store::in_memory().unwrap()));
    let parent = new_block(&other_key(), vec![], vec![], now_ms()).unwrap();
    let child = new_block(&other_key(), vec![parent.id()], vec![], now_ms() + 1).unwrap();
    node.gossip(serde_json::to_vec(&child).unwrap(), from(), "child")
        .await;
    until("the child's verdict", || node.verdict("child").is_some()).await;
    assert_eq!(node.verdict("child"), Some(MessageAcceptance::Accept));
    let asked = node.router.outs.lock().unwrap().iter().any(|o| {
        matches!(o, LedgerOut::Request { peer, request: ledger_sync::Request::Blocks(ids) }
            if *peer == from() && *ids == vec![parent.id()])
    });
    assert!(asked, "the missing parent is fetched from the forwarder");
    assert!(
        node.stored(&child.id()).is_none(),
        "an orphan is not stored"
    );
    node.gossip(serde_json::to_vec(&parent).unwrap(), from(), "parent")
        .await;
    until("the parent's verdict", || node.verdict("parent").is_some()).await;
    assert!(node.stored(&parent.id()).is_some());
    assert!(
        node.stored(&child.id()).is_some(),
        "the orphan joined with its parent"
    );
    node.stop().await;
}

fn init_request(witness: &str) -> offgrid_api::ledger::WalletInitRequest {
    offgrid_api::ledger::WalletInitRequest {
        witnesses: vec![offgrid_api::ledger::WitnessSpec {
            peer: witness.to_owned(),
            weight: None,
        }],
        alloc: [(witness.to_owned(), 5_000)].into_iter().collect(),
        quorum: None,
        tx_fee_min: None,
        tx_fee_max: None,
    }
}

#[tokio::test]
async fn wallet_init_signs_and_stores_a_genesis_and_refuses_a_second_wallet() {
    let store = Arc::new(Store::in_memory().unwrap());
    let node = run(store.clone());
    let me = Identity::from_seed([1; 32]).peer_id().to_string();
    let bad = node
        .call(ApiReq::WalletInit(init_request("not-a-peer")))
        .await;
    assert!(matches!(bad, Err(LedgerError::Invalid(_))), "{bad:?}");
    let g = node
        .call(ApiReq::WalletInit(init_request(&me)))
        .await
        .unwrap();
    let id = g["genesis_id"].as_str().unwrap().to_owned();
    let stored: offgrid_ledger::wallet::SignedGenesis = store
        .get(Table::Meta, super::genesis::GENESIS_KEY)
        .unwrap()
        .unwrap();
    assert_eq!(stored.id(), id);
    let balance = node.call(ApiReq::Balance(None)).await.unwrap();
    assert_eq!(balance["balance"], 5_000);
    let again = node.call(ApiReq::WalletInit(init_request(&me))).await;
    assert!(matches!(again, Err(LedgerError::Conflict(_))), "{again:?}");
    node.stop().await;
    // A restart runs the same wallet without asking anyone.
    let node = run(store);
    let status = node.call(ApiReq::Status).await.unwrap();
    assert_eq!(status["wallet"]["genesis_id"], id.as_str());
    node.stop().await;
}

#[tokio::test]
async fn a_join_takes_only_the_genesis_asked_for_verified() {
    let node = run(Arc::new(Store::in_memory().unwrap()));
    let creator = Identity::from_seed([9; 32]);
    let params = offgrid_ledger::WalletParams {
        witnesses: vec![(creator.peer_id().to_string(), 1000)],
        quorum_milli: 1000,
        genesis: vec![(creator.peer_id().to_string(), 10)],
        ..offgrid_ledger::WalletParams::empty()
    };
    let genesis =
        offgrid_ledger::wallet::make_genesis(creator.signing_key(), params.clone(), 1).unwrap();
    let other = offgrid_ledger::wallet::make_genesis(creator.signing_key(), params, 2).unwrap();
    let id = genesis.id();
    let (reply, joined) = tokio::sync::oneshot::channel();
    let link = node.handle.link();
    link.send(LedgerIn::Api(ApiReq::WalletJoin(id.clone()), reply))
        .await
        .unwrap();
    let peer = from();
    link.send(LedgerIn::PeerUp(peer)).await.unwrap();
    until("the genesis to be asked of the new peer", || {
        node.router.outs.lock().unwrap().iter().any(|o| {
            matches!(o, LedgerOut::Request { request: ledger_sync::Request::Genesis(g), .. } if *g == id)
        })
    })
    .await;
    // Hostile answers: another genesis, and the right bytes under a forged signature.
    let mut forged = genesis.clone();
    forged.sig[3] ^= 0x40;
    for g in [other, forged] {
        link.send(LedgerIn::SyncResponse {
            peer,
            response: ledger_sync::Response::Genesis(Some(g)),
        })
        .await
        .unwrap();
    }
    // The service handles its input in order: once the status answers, both are handled.
    let status = node.call(ApiReq::Status).await.unwrap();
    assert_eq!(status["rejected"]["txs"], 2, "{status}");
    assert!(status["wallet"].is_null(), "{status}");
    assert_eq!(status["joining"], id.as_str());
    link.send(LedgerIn::SyncResponse {
        peer,
        response: ledger_sync::Response::Genesis(Some(genesis)),
    })
    .await
    .unwrap();
    let r = joined.await.unwrap().unwrap();
    assert_eq!(r["genesis_id"], id.as_str());
    let status = node.call(ApiReq::Status).await.unwrap();
    assert_eq!(status["wallet"]["genesis_id"], id.as_str());
    assert!(status["joining"].is_null());
    node.stop().await;
}
