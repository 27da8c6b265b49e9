//! The ledger on the node: block DAG, wallet with witnessed transactions, settlement and
//! reputation gossip. (The quorum engine and the failover monitor are `crate::failover`.)
//!
//! The domain rules live in `offgrid-ledger`; this module wires them to storage and the
//! network. One task, the [`service`], owns the DAG and the wallet. The swarm's event loop
//! forwards gossip and sync traffic to it ([`LedgerIn`]) without waiting, and it answers
//! through the event loop's command channel. API calls reach it through a
//! [`LedgerHandle`]. Each round of work ends with one durable store commit *before* any
//! message leaves, so a witness's `(slot → tx id)` promise is on disk before its
//! attestation is sent, and a transaction is reported final only once stored.

pub mod blocks;
/// The `[ledger]` and `[wallet]` sections (kept with the rest of the config, which no
/// service module may be imported by).
pub use crate::config::ledger as config;
mod genesis;
mod gossip;
mod inbox;
pub mod records;
mod reputation;
pub mod service;
#[cfg(test)]
mod service_tests;
mod sync;
mod tick;
mod views;
pub mod wallet;

use std::sync::{Arc, Mutex};

use libp2p::{gossipsub::MessageId, request_response::ResponseChannel, PeerId};
use offgrid_behaviours::ledger_sync;
use offgrid_ledger::{ReputationCrdt, Tx};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

pub use self::inbox::{sinks, Sinks};
use crate::store::Store;

/// Capacity of the ledger service's input queue. When full, gossip is ignored (not relayed)
/// rather than blocking the swarm.
pub const INPUT_QUEUE: usize = 4096;

/// Which ledger topic a gossip message came on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GossipKind {
    /// `offgrid/blocks/1`.
    Blocks,
    /// `offgrid/tx/1`.
    Tx,
    /// `offgrid/reputation/1`.
    Reputation,
}

/// Input of the ledger service.
#[derive(Debug)]
pub enum LedgerIn {
    /// A gossip message awaiting validation.
    Gossip {
        /// Topic.
        kind: GossipKind,
        /// Payload. Gossip messages are unsigned: every payload carries its own signatures.
        data: Vec<u8>,
        /// The peer that forwarded it.
        from: PeerId,
        /// Id for the validation verdict.
        message_id: MessageId,
    },
    /// A peer's sync request.
    SyncRequest {
        /// The peer.
        peer: PeerId,
        /// What it asks.
        request: ledger_sync::Request,
        /// Where the answer goes.
        channel: ResponseChannel<ledger_sync::Response>,
    },
    /// A peer's answer to our sync request.
    SyncResponse {
        /// The peer.
        peer: PeerId,
        /// Its answer.
        response: ledger_sync::Response,
    },
    /// A connection to a peer opened.
    PeerUp(PeerId),
    /// The last connection to a peer closed.
    PeerDown(PeerId),
    /// A peer subscribed to the transaction topic (pending items can now be published).
    Subscribed(PeerId),
    /// A local API call.
    Api(ApiReq, oneshot::Sender<Result<Value, LedgerError>>),
}

/// A local API call to the ledger service.
#[derive(Debug)]
pub enum ApiReq {
    /// Ledger and wallet summary.
    Status,
    /// Balance of an account (this node's when `None`).
    Balance(Option<String>),
    /// Every account's final balance, and the supply.
    Balances,
    /// Sign a transfer from this node; submit it unless `submit` is false.
    Send {
        /// Destination account.
        dst: String,
        /// Micro-credits.
        amount: u64,
        /// Fee in micro-credits (halfway between the minimum and maximum when unset).
        fee: Option<u64>,
        /// Nonce (the next free one when unset).
        nonce: Option<u64>,
        /// Submit and gossip it; otherwise only return it signed.
        submit: bool,
    },
    /// Submit a transaction signed elsewhere.
    Submit(Tx),
    /// Answer once the transaction is final.
    WaitFinal(String),
    /// One transaction.
    TxShow(String),
    /// Recent transactions, newest first.
    TxList(usize),
    /// Recent blocks, newest first.
    Blocks(usize),
    /// One block.
    BlockShow(String),
    /// Make a block from exported receipts now (an empty one if `allow_empty`).
    CreateBlock {
        /// Make a block even with no receipts waiting.
        allow_empty: bool,
    },
    /// A receipt's inclusion proof (by receipt hash or job id).
    Prove(String),
    /// Put waiting receipts in blocks and mint what this node's batches are owed.
    Settle,
    /// Token items (transactions viewed as quorum items).
    TokenItems(usize),
    /// One token item.
    TokenItem(String),
    /// The merged reputation CRDT.
    Reputation,
    /// Diagnostics: publish a block with a broken signature.
    PublishBadBlock,
    /// `wallet init`: sign a genesis of these parameters and start its wallet.
    WalletInit(offgrid_api::ledger::WalletInitRequest),
    /// `wallet join`: fetch the genesis with this id from peers and start its wallet
    /// (answered once it runs).
    WalletJoin(String),
    /// `wallet witnesses add|remove`: propose (or approve) the reconfiguration opening the
    /// next epoch with this change.
    Witnesses {
        /// The change.
        change: offgrid_ledger::wallet::epoch::Change,
        /// The new quorum, milli-weight (just over half when unset).
        quorum_milli: Option<u64>,
    },
}

/// Why a ledger call failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LedgerError {
    /// Nothing with that id.
    #[error("{0}")]
    NotFound(String),
    /// The request is invalid.
    #[error("{0}")]
    Invalid(String),
    /// The wallet is not configured or the service stopped.
    #[error("{0}")]
    Unavailable(String),
    /// The request contradicts the node's state (e.g. a wallet already runs).
    #[error("{0}")]
    Conflict(String),
    /// Storage or signing failed.
    #[error("{0}")]
    Internal(String),
}

/// A cloneable handle for the API: calls to the service and the store.
#[derive(Clone)]
pub struct LedgerHandle {
    tx: mpsc::Sender<LedgerIn>,
    store: Arc<Store>,
    balance: tokio::sync::watch::Receiver<Option<u64>>,
}

impl LedgerHandle {
    /// Calls the service.
    pub async fn call(&self, req: ApiReq) -> Result<Value, LedgerError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(LedgerIn::Api(req, reply))
            .await
            .map_err(|_| LedgerError::Unavailable("the ledger has stopped".into()))?;
        rx.await
            .map_err(|_| LedgerError::Unavailable("the ledger has stopped".into()))?
    }

    /// This node's final balance, micro-credits (`None` when the wallet is off).
    pub fn own_balance(&self) -> tokio::sync::watch::Receiver<Option<u64>> {
        self.balance.clone()
    }

    /// The service's input (the router's sinks feed it).
    pub fn link(&self) -> mpsc::Sender<LedgerIn> {
        self.tx.clone()
    }

    /// The store.
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }
}

/// Loads the merged reputation CRDT that the ledger gossips and the quorum engine weighs
/// acks by.
pub fn load_reputation(
    store: &Store,
    me: &str,
) -> Result<Arc<Mutex<ReputationCrdt>>, crate::store::StoreError> {
    Ok(Arc::new(Mutex::new(
        store
            .get::<ReputationCrdt>(crate::store::Table::Meta, service::REPUTATION_KEY)?
            .unwrap_or_default()
            .with_local(me),
    )))
}

/// Starts the ledger service.
pub fn start(
    ledger: &config::LedgerConfig,
    wallet: &config::WalletConfig,
    identity: &crate::identity::Identity,
    store: Arc<Store>,
    client: offgrid_net::Client,
    reputation: Arc<Mutex<ReputationCrdt>>,
    cancel: tokio_util::sync::CancellationToken,
    tasks: &mut tokio::task::JoinSet<()>,
) -> anyhow::Result<LedgerHandle> {
    let (tx, rx) = mpsc::channel(INPUT_QUEUE);
    let svc = service::Service::new(
        (ledger, wallet),
        identity,
        store.clone(),
        client,
        rx,
        reputation,
    )?;
    let balance = svc.balance_watch();
    tasks.spawn(svc.run(cancel));
    Ok(LedgerHandle { tx, store, balance })
}
