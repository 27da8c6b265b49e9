//! The ledger service: one task owns the DAG and the wallet.
//!
//! Each round takes every input queued (up to a bound), applies it to the in-memory state,
//! commits the resulting writes in one durable transaction, and only then publishes gossip,
//! sends validation verdicts and sync traffic, and answers API calls. Batching rounds this
//! way is the group commit that lets witnesses attest at a high rate. A witness also signs
//! once per round: one Merkle root over every transaction it attests in the round
//! ([`WalletCore::seal`], just before the commit), so peers check one signature per
//! witness per round rather than one per transaction.

use std::{
    collections::{BTreeSet, HashMap},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use ed25519_dalek::SigningKey;
use libp2p::{gossipsub::MessageAcceptance, PeerId};
use offgrid_behaviours::ledger_sync::{self, TxGossip, BLOCKS_TOPIC};
use offgrid_ledger::{
    dag::{Dag, InsertOutcome},
    Block, ReputationCrdt,
};
use offgrid_net::{Client, LedgerOut};

use super::config::WalletConfig;
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use super::{
    blocks,
    config::LedgerConfig,
    wallet::{Effects, WalletCore},
    ApiReq, GossipKind, LedgerError, LedgerIn,
};
use crate::{now_ms, store::Store};

pub use super::reputation::REPUTATION_KEY;
/// Most inputs handled in one round (one commit).
const MAX_ROUND: usize = 512;
/// Most times one round re-seals after its own attestations made transactions final.
const MAX_SEALS: usize = 4;
/// Most callers waiting for finality.
const MAX_WAITERS: usize = 20_000;
/// Timer resolution.
const TICK: Duration = Duration::from_millis(100);

pub(super) type Reply = oneshot::Sender<Result<Value, LedgerError>>;

/// Everything one round produced, released after the commit.
#[derive(Default)]
pub(super) struct Round {
    pub(super) fx: Effects,
    pub(super) outs: Vec<LedgerOut>,
    pub(super) replies: Vec<(Reply, Result<Value, LedgerError>)>,
    /// Retry the witness's waiting list after this round's changes.
    pub(super) retry: bool,
}

/// Counters of rejected gossip, for diagnostics and tests.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Rejected {
    /// Blocks that failed validation.
    pub blocks: u64,
    /// Transaction messages that failed validation.
    pub txs: u64,
    /// Ids of the last rejected blocks (bounded).
    pub block_ids: Vec<String>,
    /// Reputation reports that failed validation (bad signature or form).
    pub reputation: u64,
}

/// The service state.
pub struct Service {
    pub(super) me: String,
    pub(super) key: SigningKey,
    pub(super) store: Arc<Store>,
    pub(super) cfg: LedgerConfig,
    pub(super) dag: Dag,
    pub(super) wallet: Option<WalletCore>,
    /// The running wallet's genesis, when it was made by `wallet init` or `wallet join`.
    pub(super) genesis: Option<offgrid_ledger::wallet::SignedGenesis>,
    /// The genesis id being joined, asked of every peer until one serves it.
    pub(super) joining: Option<String>,
    /// API callers waiting for the join.
    pub(super) join_waiters: Vec<Reply>,
    /// The `[wallet]` section (defaults of `wallet init`).
    pub(super) wallet_cfg: WalletConfig,
    pub(super) client: Client,
    rx: mpsc::Receiver<LedgerIn>,
    pub(super) peers: BTreeSet<PeerId>,
    /// API callers waiting for a transaction to become final.
    pub(super) waiters: HashMap<String, Vec<Reply>>,
    pub(super) rejected: Rejected,
    pub(super) reputation: Arc<Mutex<ReputationCrdt>>,
    /// When the tick last made blocks, asked for tips, published reputation, republished.
    pub(super) last_block: Instant,
    pub(super) last_sync: Instant,
    pub(super) last_reputation: Instant,
    pub(super) last_republish: Instant,
    /// Republish every pending transaction at the next tick, however young (set when a peer
    /// subscribes: it missed what was gossiped before).
    pub(super) republish_all: bool,
    /// Counter of this node's transaction gossip messages (see [`TxGossip::seq`]); starts at
    /// the clock so a restart continues above the last one.
    gossip_seq: u64,
    /// This node's final balance after each round (`None`: no wallet), for the broker.
    balance: tokio::sync::watch::Sender<Option<u64>>,
}

impl Service {
    /// Loads the DAG and the wallet from the store.
    pub fn new(
        cfg: (&LedgerConfig, &WalletConfig),
        identity: &crate::identity::Identity,
        store: Arc<Store>,
        client: Client,
        rx: mpsc::Receiver<LedgerIn>,
        reputation: Arc<Mutex<ReputationCrdt>>,
    ) -> anyhow::Result<Self> {
        let (ledger_cfg, wallet_cfg) = cfg;
        let me = identity.peer_id().to_string();
        let dag = blocks::load_dag(&store)?;
        let super::genesis::Opened {
            wallet,
            genesis,
            joining,
        } = super::genesis::open(&me, wallet_cfg, &store)?;
        info!(
            blocks = dag.len(),
            wallet = wallet.is_some(),
            witness = wallet.as_ref().is_some_and(|w| w.is_witness()),
            final_txs = wallet.as_ref().map_or(0, |w| w.final_ids().len()),
            "ledger loaded"
        );
        let now = Instant::now();
        Ok(Service {
            me,
            key: identity.signing_key().clone(),
            store,
            cfg: ledger_cfg.clone(),
            dag,
            wallet,
            genesis,
            joining,
            join_waiters: Vec::new(),
            wallet_cfg: wallet_cfg.clone(),
            client,
            rx,
            peers: BTreeSet::new(),
            waiters: HashMap::new(),
            rejected: Rejected::default(),
            reputation,
            last_block: now,
            last_sync: now,
            last_reputation: now,
            // Republish soon after a restart.
            last_republish: now,
            republish_all: false,
            gossip_seq: now_ms(),
            balance: tokio::sync::watch::Sender::new(None),
        }
        .with_balance())
    }

    fn with_balance(self) -> Self {
        self.publish_balance();
        self
    }

    /// This node's final balance, kept current after every round.
    pub fn balance_watch(&self) -> tokio::sync::watch::Receiver<Option<u64>> {
        self.balance.subscribe()
    }

    fn publish_balance(&self) {
        let now = self.wallet.as_ref().map(|w| w.state().balance(&self.me));
        self.balance.send_if_modified(|b| {
            let changed = *b != now;
            *b = now;
            changed
        });
    }

    /// Runs until cancelled.
    pub async fn run(mut self, cancel: CancellationToken) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut inputs = Vec::with_capacity(MAX_ROUND);
        // A restarted witness retries what it had not signed yet.
        let mut first = Round {
            retry: true,
            ..Default::default()
        };
        self.retry(&mut first);
        self.flush(first).await;
        loop {
            let mut round = Round::default();
            tokio::select! {
                biased;
                _ = cancel.cancelled() => break,
                n = self.rx.recv_many(&mut inputs, MAX_ROUND) => {
                    if n == 0 {
                        break;
                    }
                    for input in std::mem::take(&mut inputs) {
                        self.handle(input, &mut round).await;
                    }
                }
                _ = tick.tick() => self.on_tick(&mut round).await,
            }
            self.retry(&mut round);
            self.flush(round).await;
            self.publish_balance();
        }
        self.persist_reputation();
        info!("ledger stopped");
    }

    fn retry(&mut self, round: &mut Round) {
        if !round.retry && round.fx.finalized.is_empty() {
            return;
        }
        let Service { wallet, .. } = self;
        if let Some(w) = wallet.as_mut() {
            let mints = offgrid_ledger::NoMints;
            w.retry_waiting(&mints, &mut round.fx);
        }
    }

    async fn handle(&mut self, input: LedgerIn, round: &mut Round) {
        match input {
            LedgerIn::Gossip {
                kind,
                data,
                from,
                message_id,
            } => {
                let verdict = match kind {
                    GossipKind::Blocks => self.on_block_gossip(&data, from, round),
                    GossipKind::Tx => self.on_tx_gossip(&data, round),
                    GossipKind::Reputation => self.on_reputation(&data, from),
                };
                round.outs.push(LedgerOut::Validate {
                    message_id,
                    from,
                    acceptance: verdict,
                });
            }
            LedgerIn::SyncRequest {
                peer,
                request,
                channel,
            } => {
                let response = self.answer_sync(request);
                debug!(%peer, "sync request answered");
                round.outs.push(LedgerOut::Respond { channel, response });
            }
            LedgerIn::SyncResponse {
                peer,
                response: ledger_sync::Response::Genesis(g),
            } => self.on_genesis(peer, g, round).await,
            LedgerIn::SyncResponse { peer, response } => {
                self.on_sync_response(peer, response, round)
            }
            LedgerIn::PeerUp(peer) => {
                if self.peers.insert(peer) {
                    round.outs.push(LedgerOut::Request {
                        peer,
                        request: ledger_sync::Request::Tips,
                    });
                    if let Some(id) = &self.joining {
                        round.outs.push(LedgerOut::Request {
                            peer,
                            request: ledger_sync::Request::Genesis(id.clone()),
                        });
                    }
                }
            }
            LedgerIn::PeerDown(peer) => {
                self.peers.remove(&peer);
            }
            LedgerIn::Subscribed(_) => {
                // Publish everything pending at the next tick: the new subscriber missed it.
                self.last_republish = Instant::now() - Duration::from_secs(3600);
                self.republish_all = true;
            }
            LedgerIn::Api(ApiReq::WaitFinal(id), reply) => self.wait_final(id, reply),
            LedgerIn::Api(ApiReq::WalletJoin(id), reply) => self.wallet_join(id, reply, round),
            LedgerIn::Api(req, reply) => {
                let r = self.api(req, round).await;
                round.replies.push((reply, r));
            }
        }
    }

    fn wait_final(&mut self, id: String, reply: Reply) {
        let Some(w) = &self.wallet else {
            let _ = reply.send(Err(LedgerError::Unavailable(
                "the wallet is not configured".into(),
            )));
            return;
        };
        if w.final_ids().contains(&id) {
            let _ = reply.send(self.tx_view(&id));
            return;
        }
        let total: usize = self.waiters.values().map(Vec::len).sum();
        if total >= MAX_WAITERS {
            let _ = reply.send(Err(LedgerError::Unavailable("too many waiters".into())));
            return;
        }
        self.waiters.entry(id).or_default().push(reply);
    }

    fn on_block_gossip(
        &mut self,
        data: &[u8],
        from: PeerId,
        round: &mut Round,
    ) -> MessageAcceptance {
        let block: Block = match serde_json::from_slice(data) {
            Ok(b) => b,
            Err(e) => {
                warn!(peer = %from, error = %e, "undecodable block rejected");
                self.rejected.blocks += 1;
                return MessageAcceptance::Reject;
            }
        };
        let id = block.id();
        match blocks::insert_block(&mut self.dag, block, &mut round.fx) {
            Ok(InsertOutcome::Inserted(ids)) => {
                debug!(block = %id, joined = ids.len(), "block inserted");
                round.retry = true;
                MessageAcceptance::Accept
            }
            Ok(InsertOutcome::Duplicate) => MessageAcceptance::Accept,
            Ok(InsertOutcome::MissingParents(missing)) => {
                debug!(block = %id, missing = missing.len(), "fetching missing parents");
                round.outs.push(LedgerOut::Request {
                    peer: from,
                    request: ledger_sync::Request::Blocks(
                        missing
                            .into_iter()
                            .take(ledger_sync::MAX_IDS_PER_REQUEST)
                            .collect(),
                    ),
                });
                MessageAcceptance::Accept
            }
            Err(e) => {
                warn!(peer = %from, block = %id, error = %e, "invalid block rejected");
                self.rejected.blocks += 1;
                if self.rejected.block_ids.len() < 64 {
                    self.rejected.block_ids.push(id);
                }
                MessageAcceptance::Reject
            }
        }
    }

    fn on_tx_gossip(&mut self, data: &[u8], round: &mut Round) -> MessageAcceptance {
        let Ok(msg) = serde_json::from_slice::<TxGossip>(data) else {
            self.rejected.txs += 1;
            return MessageAcceptance::Reject;
        };
        let Service {
            wallet, rejected, ..
        } = self;
        let Some(w) = wallet.as_mut() else {
            return MessageAcceptance::Ignore;
        };
        let mints = offgrid_ledger::NoMints;
        let now = now_ms();
        // Each list's signatures are checked in one batch.
        let bad = w.on_txs(&msg.txs, &mints, now, &mut round.fx)
            + w.on_attests(&msg.attests, now, &mut round.fx);
        if bad > 0 {
            rejected.txs += 1;
            MessageAcceptance::Reject
        } else {
            MessageAcceptance::Accept
        }
    }

    /// Submits a transaction made here: handled as if received, then gossiped.
    pub(super) fn submit_local(
        &mut self,
        tx: offgrid_ledger::Tx,
        round: &mut Round,
    ) -> Result<bool, LedgerError> {
        let Service { wallet, .. } = self;
        let w = wallet
            .as_mut()
            .ok_or_else(|| LedgerError::Unavailable("the wallet is not configured".into()))?;
        let mints = offgrid_ledger::NoMints;
        let new = w
            .on_tx(&tx, &mints, now_ms(), &mut round.fx)
            .map_err(|e| LedgerError::Invalid(e.to_string()))?;
        round.fx.txs.push(tx);
        Ok(new)
    }

    /// As a witness, signs the round's attestations (one root). Attestations that make
    /// transactions final here may unblock waiting ones, which are attested in turn.
    fn seal(&mut self, round: &mut Round) {
        for _ in 0..MAX_SEALS {
            let Some(w) = self.wallet.as_mut() else {
                return;
            };
            let before = round.fx.finalized.len();
            w.seal(&self.key, now_ms(), &mut round.fx);
            if round.fx.finalized.len() == before {
                return;
            }
            self.retry(round);
            if round.fx.to_attest.is_empty() {
                return;
            }
        }
        // Still more unblocked: sign them too; the rest waits for the next round.
        if let Some(w) = self.wallet.as_mut() {
            w.seal(&self.key, now_ms(), &mut round.fx);
        }
    }

    /// Seals the round, commits its writes, then sends everything it produced.
    async fn flush(&mut self, mut round: Round) {
        self.seal(&mut round);
        let Round {
            mut fx,
            mut outs,
            mut replies,
            ..
        } = round;
        let committed = if fx.ops.is_empty() {
            true
        } else {
            let ops = std::mem::take(&mut fx.ops);
            let r = match ops
                .iter()
                .map(super::wallet::Write::op)
                .collect::<Result<Vec<_>, _>>()
            {
                Ok(ops) => self.store.commit(ops).await,
                Err(e) => Err(e),
            };
            match r {
                Ok(()) => true,
                Err(e) => {
                    error!(error = %e, "ledger commit failed; nothing from this round is sent");
                    false
                }
            }
        };
        if !committed {
            // Nothing promised in this round may leave: not attestations, not finality.
            for (reply, _) in replies.drain(..) {
                let _ = reply.send(Err(LedgerError::Internal("storage failed".into())));
            }
            outs.retain(|o| matches!(o, LedgerOut::Validate { .. } | LedgerOut::Respond { .. }));
            fx = Effects::default();
        }
        for block in fx.blocks.drain(..) {
            match serde_json::to_vec(&block) {
                Ok(data) => outs.push(LedgerOut::Publish {
                    topic: BLOCKS_TOPIC,
                    data,
                }),
                Err(e) => warn!(error = %e, "cannot encode block"),
            }
        }
        super::gossip::publish_txs(
            &mut outs,
            &mut self.gossip_seq,
            std::mem::take(&mut fx.txs),
            std::mem::take(&mut fx.attests),
        );
        if !fx.want_txs.is_empty() {
            if let Some(peer) = self.peers.iter().next().copied() {
                outs.push(LedgerOut::Request {
                    peer,
                    request: ledger_sync::Request::Txs(
                        fx.want_txs
                            .iter()
                            .take(ledger_sync::MAX_IDS_PER_REQUEST)
                            .cloned()
                            .collect(),
                    ),
                });
            }
        }
        for out in outs {
            if self.client.ledger(out).await.is_err() {
                return;
            }
        }
        for (reply, r) in replies {
            let _ = reply.send(r);
        }
        for id in &fx.finalized {
            if let Some(ws) = self.waiters.remove(id) {
                let view = self.tx_view(id);
                for w in ws {
                    let _ = w.send(view.clone());
                }
            }
        }
    }
}
