//! Settlement: paying hosts for their receipts, from the accounts that ordered the jobs.
//!
//! A host settles a receipt with a [`TxKind::Settle`] transaction: `src` is the payer named
//! in the receipt's payment order, `dst` the host, `amount` what the claim gives
//! ([`crate::payment::claim`]), tagged `order:<order id>`. Witnesses sign at most one
//! settlement per order, so a receipt is paid at most once whatever batch or block carries
//! it; the host receives `amount` less the reserve (1 % by default) and [`SYSTEM`] the
//! reserve, so the supply never changes. Each receipt is settled on its own: a bad one (no
//! order, forged, above its cap, overflowing) is refused alone and the rest are paid.
//!
//! [`SYSTEM`]: crate::wallet::SYSTEM

use crate::{
    payment::{claim, order_meta, Claim, ClaimError},
    receipt::SignedReceipt,
    wallet::{TxBody, TxKind},
};

/// Basis points in a whole.
pub const BPS: u64 = 10_000;

/// The settlement transaction a receipt calls for, authored by its host, at the payer's
/// nonce `nonce` (its next one: see [`TxKind::Settle`]).
pub fn settlement(
    receipt: &SignedReceipt,
    nonce: u64,
    created_ms: u64,
) -> Result<TxBody, ClaimError> {
    Ok(settle_claim(receipt, claim(receipt)?, nonce, created_ms))
}

/// The settlement of a receipt whose claim is already checked.
fn settle_claim(receipt: &SignedReceipt, c: Claim, nonce: u64, created_ms: u64) -> TxBody {
    TxBody {
        kind: TxKind::Settle,
        src: c.payer,
        dst: c.host.clone(),
        amount: c.amount,
        fee: 0,
        nonce,
        meta: Some(order_meta(&c.order_id)),
        author: c.host,
        created_ms,
        claim: Some(receipt.clone()),
        reconfig: None,
    }
}

/// Settlements of checked claims `(receipt, claim, created_ms)`, each payer's at
/// consecutive nonces from `next_nonce(payer)`, in the order given.
pub fn in_sequence<'a>(
    claims: impl IntoIterator<Item = (&'a SignedReceipt, Claim, u64)>,
    next_nonce: impl Fn(&str) -> u64,
) -> Vec<TxBody> {
    let mut taken: std::collections::BTreeMap<String, u64> = std::collections::BTreeMap::new();
    claims
        .into_iter()
        .map(|(r, c, created_ms)| {
            let k = taken.entry(c.payer.clone()).or_insert(0);
            let nonce = next_nonce(&c.payer).saturating_add(*k);
            *k += 1;
            settle_claim(r, c, nonce, created_ms)
        })
        .collect()
}

/// The settlements of many receipts (see [`in_sequence`]): the good ones, and each bad
/// one's index and reason.
pub fn settlements<'a>(
    receipts: impl IntoIterator<Item = &'a SignedReceipt>,
    next_nonce: impl Fn(&str) -> u64,
    created_ms: u64,
) -> (Vec<TxBody>, Vec<(usize, ClaimError)>) {
    let mut good = Vec::new();
    let mut bad = Vec::new();
    for (i, r) in receipts.into_iter().enumerate() {
        match claim(r) {
            Ok(c) => good.push((r, c, created_ms)),
            Err(e) => bad.push((i, e)),
        }
    }
    (in_sequence(good, next_nonce), bad)
}

#[cfg(test)]
mod tests {
    use ed25519_dalek::SigningKey;

    use super::*;
    use crate::{
        payment::{sign_order, OrderBody, ORDER_DOMAIN},
        peer_id::peer_id_from_pubkey,
        receipt::tests::receipt_with_order,
        signed::Signed,
        wallet::{Slot, WalletParams, WalletState, SYSTEM},
    };

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    fn peer(seed: u8) -> String {
        peer_id_from_pubkey(key(seed).verifying_key().as_bytes())
    }

    fn order(job: &str) -> crate::payment::PaymentOrder {
        sign_order(
            &key(9),
            &OrderBody {
                domain: ORDER_DOMAIN.into(),
                job_id: job.into(),
                payer: peer(9),
                host: peer(1),
                price: 30_000,
                max_units: 1_000_000,
                expires_ms: 10_000,
                created_ms: 1,
            },
        )
        .unwrap()
    }

    fn params() -> WalletParams {
        WalletParams {
            witnesses: vec![(peer(7), 1000)],
            quorum_milli: 1000,
            genesis: vec![(peer(9), 100_000)],
            ..WalletParams::empty()
        }
    }

    #[test]
    fn a_settlement_moves_the_claim_from_payer_to_host_less_the_reserve() {
        let r = receipt_with_order(1, Some(order("j")), |_| {});
        let body = settlement(&r, 1, 5).unwrap();
        assert_eq!(
            (body.src.as_str(), body.dst.as_str()),
            (peer(9).as_str(), peer(1).as_str())
        );
        assert_eq!(body.amount, 30_000);
        let in_sequence = Slot::Account {
            src: peer(9),
            nonce: 1,
        };
        assert_eq!(body.slot(), in_sequence, "in the payer's sequence");
        let tx = Signed::sign(&key(1), &body).unwrap();
        let mut st = WalletState::new(&params()).unwrap();
        st.apply_final(&tx).unwrap();
        assert_eq!(st.balance(&peer(9)), 70_000);
        assert_eq!(st.balance(&peer(1)), 29_700);
        assert_eq!(st.balance(SYSTEM), 300);
        assert_eq!(st.supply(), 100_000, "settling creates no money");
        // The same order again, even in another transaction, is not paid twice (were it
        // ever final, it would only take its nonce).
        let again = Signed::sign(&key(1), &settlement(&r, 2, 6).unwrap()).unwrap();
        assert_ne!(again.id(), tx.id());
        st.apply_final(&again).unwrap();
        assert_eq!(st.balance(&peer(1)), 29_700);
        assert_eq!(st.balance(&peer(9)), 70_000);
        assert_eq!(st.last_nonce(&peer(9)), 2);
    }

    #[test]
    fn a_bad_receipt_is_refused_alone() {
        let good = receipt_with_order(1, Some(order("a")), |r| r.job_id = "a".into());
        let unordered = receipt_with_order(1, None, |_| {});
        let inflated = receipt_with_order(1, Some(order("b")), |r| {
            r.job_id = "b".into();
            r.units = 5_000_000;
        });
        let good2 = receipt_with_order(1, Some(order("c")), |r| r.job_id = "c".into());
        let (ok, bad) = settlements([&good, &unordered, &inflated, &good2], |_| 4, 1);
        assert_eq!(ok.len(), 2);
        let nonces: Vec<u64> = ok.iter().map(|b| b.nonce).collect();
        assert_eq!(nonces, vec![4, 5], "consecutive");
        assert_eq!(bad.iter().map(|(i, _)| *i).collect::<Vec<_>>(), vec![1, 2]);
        assert_eq!(bad[0].1, ClaimError::NoOrder);
    }

    #[test]
    fn witnesses_sign_a_settlement_once_and_only_as_its_claim_gives() {
        use crate::wallet::{NoMints, TxReject, WitnessState};
        let w = WitnessState::new(params()).unwrap();
        let mut st = WalletState::new(&params()).unwrap();
        let r = receipt_with_order(1, Some(order("j")), |_| {});
        let body = settlement(&r, 1, 1).unwrap();
        let tx = Signed::sign(&key(1), &body).unwrap();
        assert!(w.check(&st, &tx, &NoMints).is_ok());
        // Not the payer's next nonce.
        let mut b = body.clone();
        b.nonce = 2;
        let early = Signed::sign(&key(1), &b).unwrap();
        assert!(matches!(
            w.check(&st, &early, &NoMints),
            Err(TxReject::BadNonce {
                expected: 1,
                got: 2
            })
        ));

        // Not the claim: more money, another payee, another author, a fee.
        type Edit = Box<dyn Fn(&mut TxBody)>;
        let edits: Vec<Edit> = vec![
            Box::new(|b| b.amount += 1),
            Box::new(|b| b.dst = peer(2)),
            Box::new(|b| b.fee = 1),
            Box::new(|b| b.meta = Some("order:00".into())),
        ];
        for edit in edits {
            let mut b = body.clone();
            edit(&mut b);
            let bad = Signed::sign(&key(1), &b).unwrap();
            assert!(matches!(
                w.check(&st, &bad, &NoMints),
                Err(TxReject::BadClaim(_))
            ));
        }
        // Authored by someone else than the host.
        let mut b = body.clone();
        b.author = peer(3);
        let other = Signed::sign(&key(3), &b).unwrap();
        assert!(matches!(
            w.check(&st, &other, &NoMints),
            Err(TxReject::BadClaim(_))
        ));
        // A receipt nobody ordered, dressed as a settlement.
        let mut b = body.clone();
        b.claim = Some(receipt_with_order(1, None, |_| {}));
        let unordered = Signed::sign(&key(1), &b).unwrap();
        assert!(matches!(
            w.check(&st, &unordered, &NoMints),
            Err(TxReject::BadClaim(_))
        ));

        // Once it is final, the same order is not paid again.
        st.apply_final(&tx).unwrap();
        let again = Signed::sign(&key(1), &settlement(&r, 2, 2).unwrap()).unwrap();
        assert_eq!(
            w.check(&st, &again, &NoMints),
            Err(TxReject::AlreadySettled)
        );

        // More than the payer has is refused before anyone signs.
        let mut poor = params();
        poor.genesis = vec![(peer(9), 100)];
        let st = WalletState::new(&poor).unwrap();
        assert!(matches!(
            w.check(&st, &tx, &NoMints),
            Err(TxReject::InsufficientFunds {
                needed: 30_000,
                available: 100
            })
        ));
    }

    /// A payer that spends what it promised a host: its transfer and the host's settlement
    /// take the same nonce, so a witness signs only one of them, and nodes agree whatever
    /// order the final one reaches them in.
    #[test]
    fn a_payer_cannot_spend_what_it_promised() {
        use crate::wallet::{NoMints, TxReject, WitnessState};
        let mut p = params();
        p.genesis = vec![(peer(9), 30_000)];
        p.tx_fee_max = 10;
        let r = receipt_with_order(1, Some(order("j")), |_| {});
        let settle = Signed::sign(&key(1), &settlement(&r, 1, 1).unwrap()).unwrap();
        let body = TxBody {
            kind: TxKind::Transfer,
            src: peer(9),
            dst: peer(3),
            amount: 30_000,
            fee: 0,
            nonce: 1,
            meta: None,
            author: peer(9),
            created_ms: 1,
            claim: None,
            reconfig: None,
        };
        let spend = Signed::sign(&key(9), &body).unwrap();
        let mut w = WitnessState::new(p.clone()).unwrap();
        let st = WalletState::new(&p).unwrap();
        let first = w.check(&st, &settle, &NoMints).unwrap();
        w.record(first.slot, first.tx_id).unwrap();
        assert!(matches!(
            w.check(&st, &spend, &NoMints),
            Err(TxReject::Conflict(_))
        ));
        let mut a = WalletState::new(&p).unwrap();
        a.apply_final(&settle).unwrap();
        assert!(a.apply_final(&spend).is_err(), "its nonce is taken");
        assert_eq!(a.balance(&peer(1)), 29_700);
        assert_eq!(a.balance(&peer(3)), 0);
    }

    #[test]
    fn no_mint_is_signed() {
        use crate::wallet::{NoMints, TxReject, WitnessState};
        let w = WitnessState::new(params()).unwrap();
        let st = WalletState::new(&params()).unwrap();
        let mint = TxBody {
            kind: TxKind::Mint,
            src: SYSTEM.into(),
            dst: peer(1),
            amount: 1_000,
            fee: 0,
            nonce: 0,
            meta: Some("batch:ab:x".into()),
            author: peer(1),
            created_ms: 1,
            claim: None,
            reconfig: None,
        };
        let tx = Signed::sign(&key(1), &mint).unwrap();
        assert_eq!(w.check(&st, &tx, &NoMints), Err(TxReject::MintRejected));
    }

    #[test]
    fn a_payer_without_the_balance_is_not_debited_below_zero() {
        let mut p = params();
        p.genesis = vec![(peer(9), 10_000)];
        let mut st = WalletState::new(&p).unwrap();
        let r = receipt_with_order(1, Some(order("j")), |_| {});
        let tx = Signed::sign(&key(1), &settlement(&r, 1, 1).unwrap()).unwrap();
        // Final but unpayable yet: it waits for funds, and no balance moves.
        assert_eq!(
            st.apply_final(&tx).unwrap(),
            crate::wallet::ApplyOutcome::Deferred
        );
        assert_eq!(st.balance(&peer(9)), 10_000);
        assert_eq!(st.balance(&peer(1)), 0);
    }
}
