//! Local API calls handled by the ledger service, and the JSON views they return.

use offgrid_ledger::{
    dag::{new_block, BlockBody},
    TxBody,
};
use serde_json::{json, Value};

use super::{
    service::{Round, Service},
    wallet::TxStatus,
    ApiReq, LedgerError,
};
use offgrid_net::LedgerOut;

use crate::now_ms;

fn unavailable() -> LedgerError {
    LedgerError::Unavailable("the wallet is not configured ([wallet] witnesses)".into())
}

impl Service {
    /// Handles one API call; effects go into `round` and are released after the commit.
    pub(super) async fn api(
        &mut self,
        req: ApiReq,
        round: &mut Round,
    ) -> Result<Value, LedgerError> {
        match req {
            ApiReq::Status => Ok(self.status()),
            ApiReq::Balance(account) => {
                let w = self.wallet.as_ref().ok_or_else(unavailable)?;
                let account = account.unwrap_or_else(|| self.me.clone());
                let s = w.state();
                Ok(json!({
                    "account": account,
                    "balance": s.balance(&account),
                    "nonce": s.last_nonce(&account),
                    "next_nonce": if account == self.me { w.next_own_nonce() } else { s.next_nonce(&account) },
                    "supply": s.supply(),
                }))
            }
            ApiReq::Balances => {
                let w = self.wallet.as_ref().ok_or_else(unavailable)?;
                let s = w.state();
                let accounts: std::collections::BTreeMap<&str, u64> = s.balances().collect();
                Ok(json!({ "accounts": accounts, "supply": s.supply() }))
            }
            ApiReq::Send {
                dst,
                amount,
                fee,
                nonce,
                submit,
            } => {
                let w = self.wallet.as_ref().ok_or_else(unavailable)?;
                // The original design's default: halfway between the smallest and largest fee.
                let p = w.params();
                let fee = fee.unwrap_or(p.tx_fee_min + (p.tx_fee_max - p.tx_fee_min) / 2);
                let tx = w
                    .sign_transfer(&self.key, &dst, amount, fee, nonce, None, now_ms())
                    .map_err(|e| LedgerError::Invalid(e.to_string()))?;
                let id = tx.id();
                let body: TxBody = serde_json::from_slice(&tx.bytes)
                    .map_err(|e| LedgerError::Internal(e.to_string()))?;
                if submit {
                    self.submit_local(tx.clone(), round)?;
                }
                Ok(json!({ "tx_id": id, "nonce": body.nonce, "submitted": submit, "tx": tx }))
            }
            ApiReq::Submit(tx) => {
                let id = tx.id();
                let new = self.submit_local(tx, round)?;
                Ok(json!({ "tx_id": id, "new": new }))
            }
            // Handled by the service directly (it may answer later).
            ApiReq::WaitFinal(id) => self.tx_view(&id),
            ApiReq::WalletJoin(id) => Err(LedgerError::Invalid(format!("join {id}: not here"))),
            ApiReq::WalletInit(params) => self.wallet_init(params).await,
            ApiReq::Witnesses {
                change,
                quorum_milli,
            } => {
                let w = self.wallet.as_mut().ok_or_else(unavailable)?;
                let tx = w
                    .propose_reconfig(&self.key, &change, quorum_milli, &mut round.fx)
                    .map_err(|e| LedgerError::Invalid(e.to_string()))?;
                let epoch = w.epoch_set().epoch + 1;
                let id = tx.id();
                // Known already if another witness proposed the same change: approving it
                // here is what was missing, so the waiting list is tried again.
                self.submit_local(tx, round)?;
                round.retry = true;
                Ok(json!({ "tx_id": id, "epoch": epoch }))
            }
            ApiReq::TxShow(id) => self.tx_view(&id),
            ApiReq::TxList(limit) => {
                let w = self.wallet.as_ref().ok_or_else(unavailable)?;
                let mut recs: Vec<_> = w.records().collect();
                recs.sort_by(|a, b| b.1.received_ms.cmp(&a.1.received_ms).then(a.0.cmp(b.0)));
                let txs: Vec<Value> = recs
                    .into_iter()
                    .take(limit)
                    .filter_map(|(id, _)| self.tx_view(id).ok())
                    .collect();
                Ok(json!({ "txs": txs }))
            }
            ApiReq::Blocks(limit) => {
                let ids = self.dag.ids_in_order();
                let blocks: Vec<Value> = ids
                    .iter()
                    .rev()
                    .take(limit)
                    .filter_map(|id| self.block_summary(id))
                    .collect();
                Ok(json!({ "count": self.dag.len(), "tips": self.dag.tips(), "blocks": blocks }))
            }
            ApiReq::BlockShow(id) => {
                let b = self
                    .dag
                    .get_valid(&id)
                    .ok_or_else(|| LedgerError::NotFound(format!("no block {id}")))?;
                let mut v = self.block_summary(&id).unwrap_or_default();
                v["receipt_bodies"] = json!(b.receipts);
                v["block"] = json!(b.block);
                Ok(v)
            }
            ApiReq::CreateBlock { allow_empty } => {
                let ids = self.make_blocks(allow_empty, round).await?;
                Ok(json!({ "created": ids }))
            }
            ApiReq::Prove(q) => {
                let p = super::blocks::prove(&self.dag, &q).ok_or_else(|| {
                    LedgerError::NotFound(format!("no receipt {q} in the ledger"))
                })?;
                Ok(json!(p))
            }
            ApiReq::Settle => {
                if self.wallet.is_none() {
                    return Err(unavailable());
                }
                let blocks = self.make_blocks(false, round).await?;
                let mints = self.settle_mints(round);
                let views: Vec<Value> = mints
                    .iter()
                    .filter_map(|id| self.tx_view(id).ok())
                    .collect();
                Ok(json!({ "blocks": blocks, "submitted": mints.len(), "mints": views }))
            }
            ApiReq::TokenItems(limit) => {
                let w = self.wallet.as_ref().ok_or_else(unavailable)?;
                let mut recs: Vec<_> = w.records().collect();
                recs.sort_by_key(|r| std::cmp::Reverse(r.1.received_ms));
                let items: Vec<Value> = recs
                    .into_iter()
                    .take(limit)
                    .filter_map(|(id, _)| w.token_item(id))
                    .map(|i| json!(i))
                    .collect();
                Ok(json!({ "items": items }))
            }
            ApiReq::TokenItem(id) => {
                let w = self.wallet.as_ref().ok_or_else(unavailable)?;
                w.token_item(&id)
                    .map(|i| json!(i))
                    .ok_or_else(|| LedgerError::NotFound(format!("no transaction {id}")))
            }
            ApiReq::Reputation => {
                let r = self
                    .reputation
                    .lock()
                    .map(|r| r.clone())
                    .unwrap_or_default();
                let entries: Vec<_> = r.entries().collect();
                Ok(json!({ "entries": entries }))
            }
            ApiReq::PublishBadBlock => {
                let body_parents = self.dag.tips();
                // A block id hashes the body only: one millisecond earlier, so the bad block
                // never shares its id with the next good block from the same tips.
                let mut block = new_block(&self.key, body_parents, Vec::new(), now_ms() - 1)
                    .map_err(|e| LedgerError::Internal(e.to_string()))?;
                block.sig[0] ^= 0x01;
                let id = block.id();
                let data =
                    serde_json::to_vec(&block).map_err(|e| LedgerError::Internal(e.to_string()))?;
                round.outs.push(LedgerOut::Publish {
                    topic: offgrid_behaviours::ledger_sync::BLOCKS_TOPIC,
                    data,
                });
                Ok(json!({ "block": id }))
            }
        }
    }

    fn status(&self) -> Value {
        let wallet = self.wallet.as_ref().map(|w| {
            let (final_txs, digest) = w.final_digest();
            let pending = w
                .records()
                .filter(|(_, r)| r.status == TxStatus::Pending)
                .count();
            json!({
                "witness": w.is_witness(),
                "epoch": w.epoch_set().epoch,
                "witnesses": w.epoch_set().witnesses.iter().map(|(p, m)| json!({"peer": p, "weight_milli": m})).collect::<Vec<_>>(),
                "quorum_milli": w.epoch_set().quorum_milli,
                "final_txs": final_txs,
                "final_digest": digest,
                "pending_txs": pending,
                "supply": w.state().supply(),
                "genesis_id": self.genesis_id(),
            })
        });
        json!({
            "peer_id": self.me,
            "blocks": self.dag.len(),
            "orphans": self.dag.orphan_count(),
            "tips": self.dag.tips(),
            "peers": self.peers.len(),
            "wallet": wallet,
            "joining": self.joining,
            "rejected": self.rejected,
        })
    }

    fn block_summary(&self, id: &str) -> Option<Value> {
        let b = self.dag.get_valid(id)?;
        let BlockBody {
            parents,
            batch,
            author,
            timestamp_ms,
        } = &b.body;
        Some(json!({
            "id": id,
            "author": author,
            "parents": parents,
            "root": batch.root,
            "receipts": batch.receipts.len(),
            "timestamp_ms": timestamp_ms,
        }))
    }

    /// The JSON view of one transaction.
    pub(super) fn tx_view(&self, id: &str) -> Result<Value, LedgerError> {
        let w = self.wallet.as_ref().ok_or_else(unavailable)?;
        let r = w
            .record(id)
            .ok_or_else(|| LedgerError::NotFound(format!("no transaction {id}")))?;
        let body: TxBody = serde_json::from_slice(&r.tx.bytes)
            .map_err(|e| LedgerError::Internal(e.to_string()))?;
        let witnesses = w.witnesses_of(id);
        let weight: u64 = witnesses
            .iter()
            .filter_map(|p| w.params().weight_of(p))
            .sum();
        Ok(json!({
            "id": id,
            "state": r.status,
            "kind": body.kind,
            "src": body.src,
            "dst": body.dst,
            "amount": body.amount,
            "fee": body.fee,
            "nonce": body.nonce,
            "meta": body.meta,
            "author": body.author,
            "created_ms": body.created_ms,
            "received_ms": r.received_ms,
            "final_ms": r.final_ms,
            "witnesses": witnesses,
            "weight_milli": weight,
            "quorum_milli": w.params().quorum_milli,
            "dead": r.status == TxStatus::Pending && w.is_dead(&r.tx),
        }))
    }
}
