//! Safety property of the witness protocol under random schedules, partitions and
//! double-spend attempts (transfers, mints, and settlements of jobs by their payers), with
//! every witness honest.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;

use super::{
    tests::{key, mint, params, pid, transfer, ALICE, BOB, CAROL, WITNESSES},
    *,
};

const USERS: [u8; 3] = [ALICE, BOB, CAROL];

fn account(i: usize) -> String {
    USERS.get(i).map_or_else(|| SYSTEM.to_string(), |s| pid(*s))
}

/// How one op's transactions reach the witnesses.
#[derive(Debug, Clone)]
struct Delivery {
    /// Witnesses (bit i = witness i) that receive the first / the conflicting transaction.
    mask_a: u8,
    mask_b: u8,
    /// Order in which witnesses process their inbox.
    order: Vec<usize>,
    /// Whether a witness receiving both sees the conflicting one first.
    b_first: bool,
    /// Witnesses that learn immediately of a transaction becoming final.
    final_mask: u8,
}

#[derive(Debug, Clone)]
enum Op {
    Transfer {
        from: usize,
        to: usize,
        amount: u64,
        fee: u64,
        /// -1: replay the last used nonce, 0: next nonce, 1: skip one.
        nonce_skew: i8,
        /// A double spend: same (src, nonce), another destination and amount.
        conflict: Option<(usize, u64)>,
        delivery: Delivery,
    },
    Mint {
        to: usize,
        amount: u64,
        tag: u8,
        /// A double mint: same tag, another destination and amount.
        conflict: Option<(usize, u64)>,
        delivery: Delivery,
    },
    /// A host settles a job its payer ordered, at the payer's nonce (skewed like a
    /// transfer's); `job` repeats, so orders are settled again.
    Settle {
        payer: usize,
        host: usize,
        job: u8,
        amount: u64,
        nonce_skew: i8,
        /// A second settlement of the same order at the same nonce (another receipt).
        conflict: Option<u64>,
        delivery: Delivery,
    },
    /// Every witness in the mask catches up with all final transactions.
    Sync { mask: u8 },
}

/// One order per (payer, host, job), so a job repeats as the same order; the receipt claims
/// `amount` micro-credits (1 credit per unit).
fn settle_tx(payer: u8, host: u8, job: u8, amount: u64, nonce: u64) -> Tx {
    use crate::payment::{sign_order, OrderBody, ORDER_DOMAIN};
    let order = sign_order(
        &key(payer),
        &OrderBody {
            domain: ORDER_DOMAIN.into(),
            job_id: format!("job{job}"),
            payer: pid(payer),
            host: pid(host),
            price: crate::receipt::MICRO,
            max_units: 1_000,
            expires_ms: u64::MAX,
            created_ms: 1,
        },
    )
    .unwrap();
    let receipt = crate::receipt::tests::receipt_with_order(host, Some(order), |r| {
        r.job_id = format!("job{job}");
        r.units = amount;
        r.price = crate::receipt::MICRO;
    });
    let body = crate::settlement::settlement(&receipt, nonce, 1).unwrap();
    Signed::sign(&key(host), &body).unwrap()
}

/// A random subset of the 5 witnesses, each in it with probability `p`.
fn mask(p: f64) -> impl Strategy<Value = u8> {
    prop::collection::vec(prop::bool::weighted(p), 5).prop_map(|bits| {
        bits.iter()
            .enumerate()
            .fold(0u8, |m, (i, b)| m | (u8::from(*b) << i))
    })
}

fn delivery() -> impl Strategy<Value = Delivery> {
    (
        mask(0.75),
        mask(0.75),
        Just((0..5).collect::<Vec<usize>>()).prop_shuffle(),
        any::<bool>(),
        mask(0.6),
    )
        .prop_map(|(mask_a, mask_b, order, b_first, final_mask)| Delivery {
            mask_a,
            mask_b,
            order,
            b_first,
            final_mask,
        })
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0usize..3, 0usize..4, 1u64..40, 1u64..4, prop_oneof![8 => Just(0i8), 1 => Just(-1i8), 1 => Just(1i8)],
              prop::option::weighted(0.4, (0usize..4, 1u64..40)), delivery())
            .prop_map(|(from, to, amount, fee, nonce_skew, conflict, delivery)| Op::Transfer {
                from, to, amount, fee, nonce_skew, conflict, delivery,
            }),
        2 => (0usize..4, 1u64..1500, 0u8..3, prop::option::weighted(0.5, (0usize..4, 1u64..1500)),
              delivery())
            .prop_map(|(to, amount, tag, conflict, delivery)| Op::Mint {
                to, amount, tag, conflict, delivery,
            }),
        3 => (0usize..3, 0usize..3, 0u8..4, 1u64..60, prop_oneof![8 => Just(0i8), 1 => Just(-1i8), 1 => Just(1i8)],
              prop::option::weighted(0.4, 1u64..60), delivery())
            .prop_map(|(payer, host, job, amount, nonce_skew, conflict, delivery)| Op::Settle {
                payer, host, job, amount, nonce_skew, conflict, delivery,
            }),
        2 => mask(0.6).prop_map(|mask| Op::Sync { mask }),
    ]
}

/// Settlement stand-in: mints up to 1000 are justified (both halves of a double mint may be).
fn validator(body: &TxBody) -> bool {
    body.amount <= 1000
}

struct Sim {
    /// Per witness: its promises and its own view of the final state.
    witnesses: Vec<(WitnessState, WalletState)>,
    finality: Finality,
    finals: Vec<Tx>,
    final_ids: BTreeSet<String>,
    /// All final transactions applied in finality order.
    truth: WalletState,
}

impl Sim {
    fn new() -> Self {
        let p = params();
        Self {
            witnesses: WITNESSES
                .iter()
                .map(|_| {
                    (
                        WitnessState::new(p.clone()).unwrap(),
                        WalletState::new(&p).unwrap(),
                    )
                })
                .collect(),
            finality: Finality::new(p.clone()).unwrap(),
            finals: Vec::new(),
            final_ids: BTreeSet::new(),
            truth: WalletState::new(&p).unwrap(),
        }
    }

    fn deliver(&mut self, w: usize, tx: &Tx, final_mask: u8) -> Result<(), TestCaseError> {
        let (ws, view) = &mut self.witnesses[w];
        let Ok(checked) = ws.check(view, tx, &validator) else {
            return Ok(());
        };
        // Stands for the durable write that precedes the attestation.
        ws.record(checked.slot, checked.tx_id.clone()).unwrap();
        let att = ws.attest(&key(WITNESSES[w]), tx).unwrap();
        let now_final = self.finality.add(&att).unwrap();
        if now_final && self.final_ids.insert(checked.tx_id.clone()) {
            self.finals.push(tx.clone());
            // A final transaction always applies at once in finality order: the witnesses
            // checked nonce and funds against views that are subsets of this state.
            let outcome = self.truth.apply_final(tx);
            prop_assert!(
                matches!(&outcome, Ok(ApplyOutcome::Applied(ids)) if ids[0] == checked.tx_id),
                "final tx not applicable: {:?}",
                outcome
            );
            for (i, (_, view)) in self.witnesses.iter_mut().enumerate() {
                if final_mask >> i & 1 == 1 {
                    view.apply_final(tx).unwrap();
                }
            }
        }
        Ok(())
    }

    fn run(&mut self, txs: &[Tx; 2], conflict: bool, d: &Delivery) -> Result<(), TestCaseError> {
        for &w in &d.order {
            let mut inbox = vec![];
            if d.mask_a >> w & 1 == 1 {
                inbox.push(&txs[0]);
            }
            if conflict && d.mask_b >> w & 1 == 1 {
                inbox.push(&txs[1]);
            }
            if d.b_first {
                inbox.reverse();
            }
            for tx in inbox {
                self.deliver(w, tx, d.final_mask)?;
            }
        }
        Ok(())
    }

    fn step(&mut self, op: &Op) -> Result<(), TestCaseError> {
        match op {
            Op::Transfer {
                from,
                to,
                amount,
                fee,
                nonce_skew,
                conflict,
                delivery,
            } => {
                let src = USERS[*from];
                let next = self.truth.next_nonce(&pid(src));
                let nonce = next.saturating_add_signed(i64::from(*nonce_skew));
                let (to2, amount2) = conflict.unwrap_or((*to, *amount));
                let txs = [
                    transfer(src, &account(*to), *amount, *fee, nonce),
                    transfer(src, &account(to2), amount2, *fee, nonce),
                ];
                self.run(&txs, conflict.is_some(), delivery)
            }
            Op::Mint {
                to,
                amount,
                tag,
                conflict,
                delivery,
            } => {
                let meta = format!("batch:{tag}");
                let (to2, amount2) = conflict.unwrap_or((*to, *amount));
                let txs = [
                    mint(&account(*to), *amount, &meta),
                    mint(&account(to2), amount2, &meta),
                ];
                self.run(&txs, conflict.is_some(), delivery)
            }
            Op::Settle {
                payer,
                host,
                job,
                amount,
                nonce_skew,
                conflict,
                delivery,
            } => {
                let (payer, host) = (USERS[*payer], USERS[*host]);
                let next = self.truth.next_nonce(&pid(payer));
                let nonce = next.saturating_add_signed(i64::from(*nonce_skew));
                let txs = [
                    settle_tx(payer, host, *job, *amount, nonce),
                    settle_tx(payer, host, *job, conflict.unwrap_or(*amount), nonce),
                ];
                self.run(&txs, conflict.is_some(), delivery)
            }
            Op::Sync { mask } => {
                for (i, (_, view)) in self.witnesses.iter_mut().enumerate() {
                    if mask >> i & 1 == 1 {
                        for tx in &self.finals {
                            view.apply_final(tx).unwrap();
                        }
                    }
                }
                Ok(())
            }
        }
    }
}

fn total(state: &WalletState) -> u128 {
    state.balances().map(|(_, b)| u128::from(b)).sum()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn conflicting_transactions_never_both_final(ops in prop::collection::vec(op(), 1..24)) {
        let mut sim = Sim::new();
        for op in &ops {
            sim.step(op)?;
        }

        // 1. At most one final transaction per slot, and one payment per order.
        let mut by_slot: BTreeMap<Slot, String> = BTreeMap::new();
        let mut orders: BTreeSet<String> = BTreeSet::new();
        let mut minted: u128 = 0;
        for tx in &sim.finals {
            let body = tx.verify().unwrap();
            if body.kind == TxKind::Mint {
                minted += u128::from(body.amount);
            }
            if let Some(o) = body.order_id() {
                prop_assert!(orders.insert(o.to_owned()), "order {} paid twice", o);
            }
            if let Some(other) = by_slot.insert(body.slot(), tx.id()) {
                prop_assert!(false, "two final txs for {:?}: {} and {}", body.slot(), other, tx.id());
            }
        }

        // 2. Supply changes only by mints (settlements move money, never make it); balances
        //    add up to it, so no account went below zero.
        let genesis: u128 = params().genesis.iter().map(|(_, a)| u128::from(*a)).sum();
        prop_assert_eq!(u128::from(sim.truth.supply()), genesis + minted);
        prop_assert_eq!(total(&sim.truth), genesis + minted);
        for (_, view) in &sim.witnesses {
            prop_assert_eq!(total(view), u128::from(view.supply()));
        }

        // 3. Final transactions apply in any order (here: reversed), none rejected, none left
        //    pending, and the result is the same state.
        let mut replay = WalletState::new(&params()).unwrap();
        for tx in sim.finals.iter().rev() {
            prop_assert!(replay.apply_final(tx).is_ok());
        }
        prop_assert_eq!(replay.pending_count(), 0);
        let a: Vec<_> = replay.balances().collect();
        let b: Vec<_> = sim.truth.balances().collect();
        prop_assert_eq!(a, b);
        for u in USERS {
            prop_assert_eq!(replay.last_nonce(&pid(u)), sim.truth.last_nonce(&pid(u)));
        }
    }
}

#[test]
fn disjoint_halves_cannot_both_finalise_a_double_spend() {
    let mut sim = Sim::new();
    let txs = [
        transfer(ALICE, &pid(BOB), 10, 1, 1),
        transfer(ALICE, &pid(CAROL), 10, 1, 1),
    ];
    let d = Delivery {
        mask_a: 0b00111,
        mask_b: 0b11000,
        order: vec![0, 1, 2, 3, 4],
        b_first: false,
        final_mask: 0,
    };
    sim.run(&txs, true, &d).unwrap();
    assert!(sim.finality.is_final(&txs[0].id()));
    assert_eq!(sim.finality.weight(&txs[1].id()), 2000);
    // Even if the conflicting one now reaches everyone, the first three refuse it.
    let d = Delivery {
        mask_a: 0,
        mask_b: 0b11111,
        ..d
    };
    sim.run(&txs, true, &d).unwrap();
    assert!(!sim.finality.is_final(&txs[1].id()));
    assert_eq!(sim.finals.len(), 1);
    assert_eq!(sim.truth.balance(&pid(BOB)), 60);
}
