//! Settlement: host rewards minted from a receipt batch.
//!
//! For each host (`node_id`) in a batch: `gross` = Σ `amount_due` of its receipts
//! (`units × price / 1_000_000`, floored per receipt); `reserve` = `gross × host_reserve_bps /
//! 10_000` (floored); `net` = `gross − reserve`. Settlement mints `net` to each host and the
//! summed reserves to [`SYSTEM`], each tagged `batch:<root>:<dst>` so a witness signs at most
//! one mint per host per batch. The plan is deterministic: hosts in ascending peer-id order,
//! then the reserve mint; zero amounts are left out.
//!
//! Known gap: the same receipt committed in two different batches would be paid twice;
//! witnesses should check [`crate::dag::Dag::find_receipt`] before signing such mints.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{
    batch::ReceiptBatch,
    dag::Dag,
    receipt::ReceiptBody,
    wallet::{MintValidator, TxBody, TxKind, SYSTEM},
};

/// Basis points in a whole.
pub const BPS: u64 = 10_000;

/// Settlement parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SettlementParams {
    /// Share of each host's gross kept as reserve for [`SYSTEM`], in basis points
    /// (default 100 = 1 %).
    pub host_reserve_bps: u64,
}

impl Default for SettlementParams {
    fn default() -> Self {
        Self {
            host_reserve_bps: 100,
        }
    }
}

impl SettlementParams {
    /// Sets the reserve share in basis points.
    pub fn with_host_reserve_bps(mut self, bps: u64) -> Self {
        self.host_reserve_bps = bps;
        self
    }
}

/// One mint settlement calls for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MintPlan {
    /// Receiving account: a host's peer id or [`SYSTEM`].
    pub dst: String,
    /// Micro-credits to mint.
    pub amount: u64,
    /// The mint's tag, `batch:<root>:<dst>`.
    pub meta: String,
}

impl MintPlan {
    /// The mint transaction body for this plan, authored by `author` (the settling node).
    pub fn to_tx_body(&self, author: &str, created_ms: u64) -> TxBody {
        TxBody {
            kind: TxKind::Mint,
            src: SYSTEM.to_string(),
            dst: self.dst.clone(),
            amount: self.amount,
            fee: 0,
            nonce: 0,
            meta: Some(self.meta.clone()),
            author: author.to_string(),
            created_ms,
        }
    }
}

/// Why a batch cannot be settled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettleError {
    /// A receipt does not decode (settle verified batches only).
    #[error("receipt {0} does not decode")]
    Decode(usize),
    /// `host_reserve_bps` exceeds 10 000.
    #[error("reserve share above 100 %")]
    BadReserve,
    /// An amount overflows a u64.
    #[error("amount overflow")]
    Overflow,
}

/// Per-host totals of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HostReward {
    /// Σ amount due over the host's receipts.
    pub gross: u64,
    /// `gross × bps / 10_000`, floored.
    pub reserve: u64,
    /// `gross − reserve`.
    pub net: u64,
}

/// Per-host rewards of the batch, by host peer id. The batch should have passed
/// [`ReceiptBatch::verify`]; this only decodes the receipts.
pub fn host_rewards(
    batch: &ReceiptBatch,
    params: &SettlementParams,
) -> Result<BTreeMap<String, HostReward>, SettleError> {
    if params.host_reserve_bps > BPS {
        return Err(SettleError::BadReserve);
    }
    let mut gross: BTreeMap<String, u64> = BTreeMap::new();
    for (i, item) in batch.items.iter().enumerate() {
        let body: ReceiptBody =
            serde_json::from_slice(&item.receipt.bytes).map_err(|_| SettleError::Decode(i))?;
        let due = body.checked_amount_due().ok_or(SettleError::Overflow)?;
        let g = gross.entry(body.node_id).or_insert(0);
        *g = g.checked_add(due).ok_or(SettleError::Overflow)?;
    }
    Ok(gross
        .into_iter()
        .map(|(host, gross)| {
            let wide = u128::from(gross) * u128::from(params.host_reserve_bps) / u128::from(BPS);
            // reserve ≤ gross because bps ≤ 10 000, so it fits and the subtraction holds.
            let reserve = u64::try_from(wide).unwrap_or(gross).min(gross);
            let reward = HostReward {
                gross,
                reserve,
                net: gross - reserve,
            };
            (host, reward)
        })
        .collect())
}

/// The settlement tag of `dst`'s mint from the batch with `root`.
pub fn mint_meta(root: &str, dst: &str) -> String {
    format!("batch:{root}:{dst}")
}

/// Parses a settlement tag into `(root, dst)`.
pub fn parse_mint_meta(meta: &str) -> Option<(&str, &str)> {
    let rest = meta.strip_prefix("batch:")?;
    rest.split_once(':')
}

/// The mints a batch calls for: each host's net reward (ascending peer id), then the summed
/// reserves to [`SYSTEM`]. Zero amounts are omitted.
pub fn settle(
    batch: &ReceiptBatch,
    params: &SettlementParams,
) -> Result<Vec<MintPlan>, SettleError> {
    let rewards = host_rewards(batch, params)?;
    let mut plans = Vec::with_capacity(rewards.len() + 1);
    let mut reserves: u64 = 0;
    for (host, r) in rewards {
        reserves = reserves
            .checked_add(r.reserve)
            .ok_or(SettleError::Overflow)?;
        if r.net > 0 {
            plans.push(MintPlan {
                meta: mint_meta(&batch.root, &host),
                dst: host,
                amount: r.net,
            });
        }
    }
    if reserves > 0 {
        plans.push(MintPlan {
            dst: SYSTEM.to_string(),
            amount: reserves,
            meta: mint_meta(&batch.root, SYSTEM),
        });
    }
    Ok(plans)
}

/// Whether `body` is exactly one of the mints [`settle`] computes for `batch`: a mint from
/// [`SYSTEM`] with no fee or nonce, whose `dst`, `amount` and `meta` match a plan.
pub fn verify_mint(batch: &ReceiptBatch, body: &TxBody, params: &SettlementParams) -> bool {
    if body.kind != TxKind::Mint || body.src != SYSTEM || body.fee != 0 || body.nonce != 0 {
        return false;
    }
    let Ok(plans) = settle(batch, params) else {
        return false;
    };
    plans.iter().any(|p| {
        p.dst == body.dst && p.amount == body.amount && Some(&p.meta) == body.meta.as_ref()
    })
}

/// A [`MintValidator`] that accepts a mint only if its tag names a batch committed in the DAG
/// and the mint is exactly what settling that batch yields.
#[derive(Debug, Clone, Copy)]
pub struct SettlementValidator<'a> {
    /// Where batches are looked up.
    pub dag: &'a Dag,
    /// Settlement parameters shared by all nodes.
    pub params: SettlementParams,
}

impl MintValidator for SettlementValidator<'_> {
    fn validate_mint(&self, body: &TxBody) -> bool {
        let Some((root, dst)) = body.meta.as_deref().and_then(parse_mint_meta) else {
            return false;
        };
        if dst != body.dst {
            return false;
        }
        // Blocks are validated on insert, so the batch's receipts and root are sound.
        let Some(batch) = self.dag.batch(root) else {
            return false;
        };
        verify_mint(&batch, body, &self.params)
    }
}

#[cfg(test)]
mod tests {
    use ed25519_dalek::SigningKey;

    use super::*;
    use crate::{peer_id::peer_id_from_pubkey, receipt::tests::receipt};

    fn host(seed: u8) -> String {
        peer_id_from_pubkey(
            SigningKey::from_bytes(&[seed; 32])
                .verifying_key()
                .as_bytes(),
        )
    }

    #[test]
    fn one_receipt_exact_amounts() {
        let batch = ReceiptBatch::build(vec![receipt(1, "j", 1_000_000, 30_000)], 0).unwrap();
        let p = SettlementParams::default();
        let r = host_rewards(&batch, &p).unwrap();
        assert_eq!(
            r[&host(1)],
            HostReward {
                gross: 30_000,
                reserve: 300,
                net: 29_700
            }
        );
        let plans = settle(&batch, &p).unwrap();
        assert_eq!(
            plans,
            vec![
                MintPlan {
                    dst: host(1),
                    amount: 29_700,
                    meta: format!("batch:{}:{}", batch.root, host(1)),
                },
                MintPlan {
                    dst: SYSTEM.into(),
                    amount: 300,
                    meta: format!("batch:{}:system", batch.root),
                },
            ]
        );
    }

    #[test]
    fn several_hosts_are_summed_floored_and_ordered() {
        let batch = ReceiptBatch::build(
            vec![
                receipt(2, "a", 250_000, 30_000),   // 7_500
                receipt(1, "b", 1_000_000, 30_000), // 30_000
                receipt(2, "c", 333_333, 10),       // 3.33 → 3
                receipt(3, "d", 1_000, 99),         // 0.099 → 0
            ],
            0,
        )
        .unwrap();
        let p = SettlementParams::default();
        let r = host_rewards(&batch, &p).unwrap();
        assert_eq!(r[&host(2)].gross, 7_503);
        assert_eq!(r[&host(2)].reserve, 75);
        assert_eq!(r[&host(2)].net, 7_428);
        assert_eq!(r[&host(3)], HostReward::default());
        let plans = settle(&batch, &p).unwrap();
        let mut hosts = [host(1), host(2)];
        hosts.sort();
        let dsts: Vec<&str> = plans.iter().map(|p| p.dst.as_str()).collect();
        assert_eq!(dsts, vec![hosts[0].as_str(), hosts[1].as_str(), SYSTEM]);
        assert_eq!(plans[2].amount, 300 + 75);
        let total: u64 = plans.iter().map(|p| p.amount).sum();
        assert_eq!(total, 30_000 + 7_503);
        // Deterministic: settling again yields the identical plan.
        assert_eq!(settle(&batch, &p).unwrap(), plans);
    }

    #[test]
    fn reserve_share_edges() {
        let batch = ReceiptBatch::build(vec![receipt(1, "j", 1_000_000, 30_000)], 0).unwrap();
        let all = SettlementParams::default().with_host_reserve_bps(BPS);
        let plans = settle(&batch, &all).unwrap();
        assert_eq!(plans.len(), 1);
        assert_eq!((plans[0].dst.as_str(), plans[0].amount), (SYSTEM, 30_000));
        let none = SettlementParams::default().with_host_reserve_bps(0);
        assert_eq!(settle(&batch, &none).unwrap().len(), 1);
        let bad = SettlementParams::default().with_host_reserve_bps(BPS + 1);
        assert_eq!(settle(&batch, &bad), Err(SettleError::BadReserve));
        let empty = ReceiptBatch::build(vec![], 0).unwrap();
        assert!(settle(&empty, &SettlementParams::default())
            .unwrap()
            .is_empty());
    }

    #[test]
    fn verify_mint_recomputes_exactly() {
        let batch = ReceiptBatch::build(vec![receipt(1, "j", 1_000_000, 30_000)], 0).unwrap();
        let p = SettlementParams::default();
        let plans = settle(&batch, &p).unwrap();
        for plan in &plans {
            assert!(verify_mint(&batch, &plan.to_tx_body("minter", 5), &p));
        }
        let mut b = plans[0].to_tx_body("minter", 5);
        b.amount += 1;
        assert!(!verify_mint(&batch, &b, &p));
        let mut b = plans[0].to_tx_body("minter", 5);
        b.dst = host(9);
        assert!(!verify_mint(&batch, &b, &p));
        let mut b = plans[0].to_tx_body("minter", 5);
        b.meta = Some(mint_meta(&batch.root, SYSTEM));
        assert!(!verify_mint(&batch, &b, &p));
        let mut b = plans[0].to_tx_body("minter", 5);
        b.kind = TxKind::Transfer;
        assert!(!verify_mint(&batch, &b, &p));
        assert_eq!(
            parse_mint_meta(&plans[0].meta),
            Some((batch.root.as_str(), host(1).as_str()))
        );
    }

    #[test]
    fn validator_uses_batches_committed_in_the_dag() {
        let receipts = vec![receipt(1, "j", 1_000_000, 30_000)];
        let mut dag = Dag::new();
        let block = dag
            .build_block(&SigningKey::from_bytes(&[7; 32]), receipts.clone(), 1)
            .unwrap();
        let batch = ReceiptBatch::build(receipts, 0).unwrap();
        let p = SettlementParams::default();
        let plan = settle(&batch, &p).unwrap().remove(0);
        let v = SettlementValidator {
            dag: &dag,
            params: p,
        };
        assert!(!v.validate_mint(&plan.to_tx_body("m", 1)));
        dag.insert(block).unwrap();
        let v = SettlementValidator {
            dag: &dag,
            params: p,
        };
        assert!(v.validate_mint(&plan.to_tx_body("m", 1)));
        let mut wrong = plan.to_tx_body("m", 1);
        wrong.amount = 29_701;
        assert!(!v.validate_mint(&wrong));
    }
}
