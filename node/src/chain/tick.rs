//! The ledger service's periodic work, done on its tick: republishing pending
//! transactions, tip sync, block making with settlement, and reputation reports.

use std::time::{Duration, Instant};

use offgrid_behaviours::ledger_sync;
use tracing::{debug, warn};

use super::{
    blocks,
    service::{Round, Service},
    LedgerError,
};
use offgrid_net::LedgerOut;

use crate::now_ms;

impl Service {
    /// The periodic work of a round without input: republish what is pending, ask peers
    /// for their tips, make blocks (and settle them), publish reputation, drop waiters
    /// that gave up.
    pub(super) async fn on_tick(&mut self, round: &mut Round) {
        let now = Instant::now();
        if now.duration_since(self.last_republish)
            >= Duration::from_millis(self.cfg.republish_ms.max(100))
            && !self.peers.is_empty()
        {
            self.last_republish = now;
            self.republish(round);
        }
        if now.duration_since(self.last_sync)
            >= Duration::from_secs(self.cfg.sync_interval_s.max(1))
        {
            self.last_sync = now;
            self.ask_genesis(round);
            for peer in &self.peers {
                round.outs.push(LedgerOut::Request {
                    peer: *peer,
                    request: ledger_sync::Request::Tips,
                });
            }
        }
        if now.duration_since(self.last_block)
            >= Duration::from_secs(self.cfg.block_interval_s.max(1))
        {
            self.last_block = now;
            if let Err(e) = self.make_blocks(false, round).await {
                warn!(error = %e, "cannot make blocks");
            }
            if self.cfg.auto_settle {
                self.settle_mints(round);
            }
        }
        if now.duration_since(self.last_reputation)
            >= Duration::from_secs(self.cfg.reputation_interval_s.max(1))
        {
            self.last_reputation = now;
            self.publish_reputation(round);
        }
        self.waiters.retain(|_, v| {
            v.retain(|r| !r.is_closed());
            !v.is_empty()
        });
    }

    fn republish(&mut self, round: &mut Round) {
        let now = now_ms();
        // Only what has waited a whole interval: a younger transaction is still on its way
        // through the first gossip, and re-sending it would make every witness attest it
        // again (a burst of duplicate signatures and gossip at high load). After a peer
        // subscribes, everything pending: it missed the first gossip.
        let min_age = if std::mem::take(&mut self.republish_all) {
            0
        } else {
            self.cfg.republish_ms
        };
        let Service { wallet, me, .. } = self;
        let Some(w) = wallet.as_mut() else { return };
        let mints = offgrid_ledger::NoMints;
        let pending = w.pending_txs(256, now, min_age);
        for tx in pending {
            if tx.signer_peer_id() == *me {
                round.fx.txs.push(tx.clone());
            }
            // Known and pending: a witness that signed it attests again.
            let _ = w.on_tx(&tx, &mints, now, &mut round.fx);
        }
    }

    /// Exports new receipts and makes one block per batch no block holds yet.
    pub(super) async fn make_blocks(
        &mut self,
        allow_empty: bool,
        round: &mut Round,
    ) -> Result<Vec<String>, LedgerError> {
        let store = self.store.clone();
        let exported = tokio::task::spawn_blocking(move || {
            crate::market::receipts::export(&store, now_ms()).map_err(|e| e.to_string())
        })
        .await
        .map_err(|e| LedgerError::Internal(e.to_string()))?
        .map_err(LedgerError::Internal)?;
        if let Some(b) = &exported {
            debug!(root = %b.root, receipts = b.items.len(), "receipts exported");
        }
        let batches = blocks::unblocked_batches(&self.store, &self.dag)
            .map_err(|e| LedgerError::Internal(e.to_string()))?;
        let mut ids = Vec::new();
        for b in &batches {
            let id = blocks::make_block(&mut self.dag, &self.key, Some(b), now_ms(), &mut round.fx)
                .map_err(|e| LedgerError::Internal(e.to_string()))?;
            ids.push(id);
        }
        if ids.is_empty() && allow_empty {
            ids.push(
                blocks::make_block(&mut self.dag, &self.key, None, now_ms(), &mut round.fx)
                    .map_err(|e| LedgerError::Internal(e.to_string()))?,
            );
        }
        if !ids.is_empty() {
            round.retry = true;
        }
        Ok(ids)
    }

    /// Submits the mints this node's blocks are owed; returns their ids.
    pub(super) fn settle_mints(&mut self, round: &mut Round) -> Vec<String> {
        let Some(w) = &self.wallet else {
            return Vec::new();
        };
        let mints = blocks::settlement_claims(&self.dag, &self.key, &self.me, w.state());
        let mut ids = Vec::new();
        for tx in mints {
            let id = tx.id();
            match self.submit_local(tx, round) {
                Ok(_) => ids.push(id),
                Err(e) => warn!(tx = %id, error = %e, "mint not submitted"),
            }
        }
        ids
    }
}
