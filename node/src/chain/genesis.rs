//! A wallet for a fresh mesh: `wallet init` makes and signs a genesis here; `wallet join`
//! fetches one by id from peers over the sync protocol and checks it before the wallet
//! starts (`offgrid_ledger::wallet::genesis`).
//!
//! The genesis is stored in `Table::Meta` under [`GENESIS_KEY`] before the wallet starts, so
//! a restarted node runs the same wallet without asking again. A wallet configured in full
//! in `[wallet] witnesses` takes precedence and has no genesis record.

use libp2p::PeerId;
use offgrid_behaviours::ledger_sync::Request;
use offgrid_ledger::{
    wallet::{make_genesis, verify_genesis, SignedGenesis},
    WalletParams,
};
use offgrid_net::LedgerOut;
use serde_json::{json, Value};
use tracing::{info, warn};

use super::{
    config::{GenesisConfig, WalletConfig, WitnessConfig},
    service::{Reply, Round, Service},
    wallet::WalletCore,
    LedgerError,
};
use crate::{
    now_ms,
    store::{Op, Store, Table},
};

/// `Table::Meta` key of the stored genesis.
pub const GENESIS_KEY: &str = "wallet_genesis";
/// Most API callers waiting for a join.
const MAX_JOIN_WAITERS: usize = 64;

/// The wallet a node starts with, and the join it still waits for.
pub(super) struct Opened {
    pub(super) wallet: Option<WalletCore>,
    pub(super) genesis: Option<SignedGenesis>,
    pub(super) joining: Option<String>,
}

/// Opens the wallet: the one `[wallet] witnesses` configures, else the stored genesis's,
/// else none (joining `[wallet] genesis_id` if set).
pub(super) fn open(me: &str, cfg: &WalletConfig, store: &Store) -> anyhow::Result<Opened> {
    if cfg.enabled() {
        let params = cfg.params().map_err(anyhow::Error::msg)?;
        return Ok(Opened {
            wallet: Some(WalletCore::load(me.to_owned(), params, store)?),
            genesis: None,
            joining: None,
        });
    }
    let Some(g) = store.get::<SignedGenesis>(Table::Meta, GENESIS_KEY)? else {
        return Ok(Opened {
            wallet: None,
            genesis: None,
            joining: cfg.genesis_id.clone(),
        });
    };
    if let Some(want) = &cfg.genesis_id {
        anyhow::ensure!(
            *want == g.id(),
            "the stored wallet genesis is {}, but [wallet] genesis_id is {want}",
            g.id()
        );
    }
    let params = verify_genesis(&g, None).map_err(|e| anyhow::anyhow!("stored genesis: {e}"))?;
    Ok(Opened {
        wallet: Some(WalletCore::load(me.to_owned(), params, store)?),
        genesis: Some(g),
        joining: None,
    })
}

/// The parameters `wallet init` asks for, completed from `defaults`.
fn params_of(
    req: offgrid_api::ledger::WalletInitRequest,
    defaults: &WalletConfig,
) -> Result<WalletParams, String> {
    if req.witnesses.is_empty() {
        return Err("a wallet needs at least one witness".into());
    }
    WalletConfig {
        witnesses: req
            .witnesses
            .into_iter()
            .map(|w| WitnessConfig {
                peer: w.peer,
                weight: w.weight.unwrap_or(1.0),
            })
            .collect(),
        quorum: req.quorum.unwrap_or(0.0),
        genesis: req
            .alloc
            .into_iter()
            .map(|(account, amount)| GenesisConfig { account, amount })
            .collect(),
        tx_fee_min: req.tx_fee_min.unwrap_or(defaults.tx_fee_min),
        tx_fee_max: req.tx_fee_max.unwrap_or(defaults.tx_fee_max),
        host_reserve: defaults.host_reserve,
        genesis_id: None,
    }
    .params()
}

impl Service {
    /// The id of the running wallet's genesis (`None`: configured, or no wallet).
    pub(super) fn genesis_id(&self) -> Option<String> {
        self.genesis.as_ref().map(SignedGenesis::id)
    }

    /// `wallet init`: signs a genesis of `req` (fees and reserve default to this node's
    /// `[wallet]` section), stores it, starts the wallet.
    pub(super) async fn wallet_init(
        &mut self,
        req: offgrid_api::ledger::WalletInitRequest,
    ) -> Result<Value, LedgerError> {
        let params = params_of(req, &self.wallet_cfg).map_err(LedgerError::Invalid)?;
        if self.wallet.is_some() {
            return Err(LedgerError::Conflict(match self.genesis_id() {
                Some(id) => format!("a wallet already runs here (genesis {id})"),
                None => "a wallet already runs here ([wallet] witnesses)".into(),
            }));
        }
        let g = make_genesis(&self.key, params.clone(), now_ms())
            .map_err(|e| LedgerError::Invalid(e.to_string()))?;
        let id = g.id();
        self.start_wallet(g, params).await?;
        info!(genesis = %id, "wallet initialised");
        Ok(json!({ "genesis_id": id, "running": true }))
    }

    /// `wallet join`: asks every peer for the genesis `id`; `reply` is answered once the
    /// wallet runs (at once if it already does).
    pub(super) fn wallet_join(&mut self, id: String, reply: Reply, round: &mut Round) {
        if self.wallet.is_some() {
            let r = match self.genesis_id() {
                Some(have) if have == id => Ok(json!({ "genesis_id": id, "running": true })),
                Some(have) => Err(LedgerError::Conflict(format!(
                    "this node runs the wallet of genesis {have}, not {id}"
                ))),
                None => Err(LedgerError::Conflict(
                    "a wallet already runs here ([wallet] witnesses)".into(),
                )),
            };
            let _ = reply.send(r);
            return;
        }
        if self.joining.as_deref().is_some_and(|j| j != id) {
            // The newest join wins; those waiting for the old one learn it.
            for w in self.join_waiters.drain(..) {
                let _ = w.send(Err(LedgerError::Conflict(format!("join changed to {id}"))));
            }
        }
        self.join_waiters.retain(|w| !w.is_closed());
        if self.join_waiters.len() >= MAX_JOIN_WAITERS {
            let _ = reply.send(Err(LedgerError::Unavailable(
                "too many joins waiting".into(),
            )));
            return;
        }
        self.join_waiters.push(reply);
        self.joining = Some(id);
        self.ask_genesis(round);
    }

    /// Asks every connected peer for the genesis being joined.
    pub(super) fn ask_genesis(&self, round: &mut Round) {
        let Some(id) = &self.joining else {
            return;
        };
        for peer in &self.peers {
            round.outs.push(LedgerOut::Request {
                peer: *peer,
                request: Request::Genesis(id.clone()),
            });
        }
    }

    /// Answers a peer's request for a genesis: ours if it is the one asked for.
    pub(super) fn answer_genesis(&self, id: &str) -> Option<SignedGenesis> {
        self.genesis.as_ref().filter(|g| g.id() == id).cloned()
    }

    /// A peer's answer to [`Request::Genesis`]: if it is the genesis being joined, and it
    /// verifies, the wallet starts and catches up from every peer.
    pub(super) async fn on_genesis(
        &mut self,
        peer: PeerId,
        g: Option<SignedGenesis>,
        round: &mut Round,
    ) {
        let (Some(g), Some(want)) = (g, self.joining.clone()) else {
            return;
        };
        let params = match verify_genesis(&g, Some(&want)) {
            Ok(p) => p,
            Err(e) => {
                warn!(%peer, error = %e, "peer sent a bad genesis");
                self.rejected.txs += 1;
                return;
            }
        };
        if let Err(e) = self.start_wallet(g, params).await {
            warn!(error = %e, "cannot start the joined wallet");
            return;
        }
        info!(genesis = %want, %peer, "wallet joined");
        self.joining = None;
        for w in self.join_waiters.drain(..) {
            let _ = w.send(Ok(json!({ "genesis_id": want, "running": true })));
        }
        for p in &self.peers {
            round.outs.push(LedgerOut::Request {
                peer: *p,
                request: Request::Tips,
            });
        }
    }

    /// Stores `g`, whose verified parameters are `params`, durably, then starts its wallet.
    async fn start_wallet(
        &mut self,
        g: SignedGenesis,
        params: WalletParams,
    ) -> Result<(), LedgerError> {
        let op = Op::put(Table::Meta, GENESIS_KEY, &g)
            .map_err(|e| LedgerError::Internal(e.to_string()))?;
        self.store
            .commit(vec![op])
            .await
            .map_err(|e| LedgerError::Internal(e.to_string()))?;
        let wallet = WalletCore::load(self.me.clone(), params, &self.store)
            .map_err(|e| LedgerError::Internal(e.to_string()))?;
        self.wallet = Some(wallet);
        self.genesis = Some(g);
        Ok(())
    }
}
