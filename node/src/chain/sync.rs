//! The sync protocol's two sides: answering peers, and catching up from their answers.
//!
//! Catch-up: on connect and every `sync_interval_s` the node asks each peer for its tips;
//! unknown tips are fetched, then whatever ancestors they lack, level by level, until the
//! DAG has no orphans; if the peer holds more final transactions, they are paged in with
//! their certificates (each checked against the quorum before it counts).

use libp2p::PeerId;
use offgrid_behaviours::ledger_sync::{
    CertifiedTx, Request, Response, MAX_IDS_PER_REQUEST, MAX_TXS_PER_PAGE,
};
use offgrid_ledger::dag::InsertOutcome;
use tracing::{debug, warn};

use super::{
    blocks,
    service::{Round, Service},
};
use offgrid_net::LedgerOut;

use crate::now_ms;

impl Service {
    /// Answers a peer's sync request from the in-memory state.
    pub(super) fn answer_sync(&self, request: Request) -> Response {
        match request {
            Request::Tips => {
                let (final_txs, final_digest) = self
                    .wallet
                    .as_ref()
                    .map_or((0, String::new()), |w| w.final_digest());
                Response::Tips {
                    tips: self.dag.tips(),
                    blocks: self.dag.len() as u64,
                    final_txs,
                    final_digest,
                }
            }
            Request::Blocks(ids) => Response::Blocks(
                ids.iter()
                    .take(MAX_IDS_PER_REQUEST)
                    .filter_map(|id| self.dag.get(id).cloned())
                    .collect(),
            ),
            Request::FinalTxs { after, limit } => {
                let Some(w) = &self.wallet else {
                    return Response::Unavailable("no wallet".into());
                };
                let limit = (limit as usize).clamp(1, MAX_TXS_PER_PAGE);
                let ids: Vec<&String> = match &after {
                    Some(a) => w
                        .final_ids()
                        .range::<String, _>((
                            std::ops::Bound::Excluded(a.clone()),
                            std::ops::Bound::Unbounded,
                        ))
                        .take(limit)
                        .collect(),
                    None => w.final_ids().iter().take(limit).collect(),
                };
                let next = (ids.len() == limit).then(|| ids[ids.len() - 1].clone());
                let txs: Vec<CertifiedTx> = ids.iter().filter_map(|id| w.certified(id)).collect();
                Response::FinalTxs { txs, next }
            }
            Request::Genesis(id) => Response::Genesis(self.answer_genesis(&id)),
            Request::Txs(ids) => {
                let Some(w) = &self.wallet else {
                    return Response::Unavailable("no wallet".into());
                };
                Response::Txs(
                    ids.iter()
                        .take(MAX_IDS_PER_REQUEST)
                        .filter_map(|id| w.certified(id))
                        .collect(),
                )
            }
        }
    }

    /// Acts on a peer's answer: fetch what is missing, take in what arrived.
    pub(super) fn on_sync_response(&mut self, peer: PeerId, response: Response, round: &mut Round) {
        match response {
            Response::Tips {
                tips, final_txs, ..
            } => {
                let unknown: Vec<String> = tips
                    .into_iter()
                    .filter(|t| !self.dag.contains(t))
                    .take(MAX_IDS_PER_REQUEST)
                    .collect();
                if !unknown.is_empty() {
                    debug!(%peer, unknown = unknown.len(), "peer has tips we lack");
                    round.outs.push(LedgerOut::Request {
                        peer,
                        request: Request::Blocks(unknown),
                    });
                }
                let mine = self.wallet.as_ref().map(|w| w.final_ids().len() as u64);
                if mine.is_some_and(|m| final_txs > m) {
                    round.outs.push(LedgerOut::Request {
                        peer,
                        request: Request::FinalTxs {
                            after: None,
                            limit: MAX_TXS_PER_PAGE as u32,
                        },
                    });
                }
            }
            Response::Blocks(blocks) => {
                let mut progress = false;
                for b in blocks {
                    match blocks::insert_block(&mut self.dag, b, &mut round.fx) {
                        Ok(InsertOutcome::Inserted(_)) => progress = true,
                        Ok(InsertOutcome::MissingParents(_)) => progress = true,
                        Ok(InsertOutcome::Duplicate) => {}
                        Err(e) => {
                            warn!(%peer, error = %e, "peer sent an invalid block");
                            self.rejected.blocks += 1;
                        }
                    }
                }
                round.retry = true;
                let missing: Vec<String> = self
                    .dag
                    .missing_ancestors()
                    .into_iter()
                    .take(MAX_IDS_PER_REQUEST)
                    .collect();
                if progress && !missing.is_empty() {
                    round.outs.push(LedgerOut::Request {
                        peer,
                        request: Request::Blocks(missing),
                    });
                }
            }
            Response::FinalTxs { txs, next } => {
                let Some(w) = self.wallet.as_mut() else {
                    return;
                };
                let now = now_ms();
                let mut refused = 0usize;
                for c in &txs {
                    if !w.on_certified(c, now, &mut round.fx) {
                        refused += 1;
                    }
                }
                if refused > 0 {
                    warn!(%peer, refused, "peer sent transactions without a valid certificate");
                }
                round.retry = true;
                if let Some(after) = next {
                    round.outs.push(LedgerOut::Request {
                        peer,
                        request: Request::FinalTxs {
                            after: Some(after),
                            limit: MAX_TXS_PER_PAGE as u32,
                        },
                    });
                }
            }
            Response::Txs(txs) => {
                let Service { wallet, .. } = self;
                let Some(w) = wallet.as_mut() else {
                    return;
                };
                let mints = offgrid_ledger::NoMints;
                let now = now_ms();
                for c in &txs {
                    if !w.on_certified(c, now, &mut round.fx) {
                        let _ = w.on_tx(&c.tx, &mints, now, &mut round.fx);
                        for a in &c.cert {
                            let _ = w.on_attest(a, now, &mut round.fx);
                        }
                    }
                }
                round.retry = true;
            }
            // Handled by the service (it may start the wallet).
            Response::Genesis(_) => {}
            Response::Unavailable(why) => debug!(%peer, %why, "peer cannot sync"),
        }
    }
}
