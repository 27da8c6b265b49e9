//! Payment orders: the requester pays.
//!
//! Before a job is dispatched, the requester (the broker node) signs a [`PaymentOrder`]: one
//! job, one host, a price per unit, a cap on the units and an expiry. It travels with the run
//! request, and the host's receipt embeds it. The receipt is then a claim: a settlement
//! transaction ([`crate::wallet::TxKind::Settle`]) moves [`Claim::amount`] from the payer to
//! the host, less the reserve for `system`. Nothing else creates money after genesis, so a
//! host that fabricates receipts (no order, another host's order, inflated units or price)
//! gains nothing, and an order is paid at most once, whatever batch or block carries it.
//!
//! Every order's signed bytes start with its [`ORDER_DOMAIN`] tag, so no other signed record
//! (receipt, transaction, block) verifies as an order.

use serde::{Deserialize, Serialize};

use crate::{
    peer_id::{is_peer_id, peer_id_from_pubkey},
    receipt::{verify_receipt, SignedReceipt, MICRO},
    signed::{SignError, Signed},
};

/// The type tag inside every order's signed bytes.
pub const ORDER_DOMAIN: &str = "offgrid/payment-order/v1";

/// The signed content of a payment order. Money is micro-credits, sizes micro-units.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderBody {
    /// [`ORDER_DOMAIN`]; first, so the tag leads the signed bytes.
    pub domain: String,
    /// The job it pays for.
    pub job_id: String,
    /// The paying account: the signer's peer id.
    pub payer: String,
    /// The host it pays.
    pub host: String,
    /// Price per whole unit, micro-credits (the host's quote).
    pub price: u64,
    /// Most units the host may claim.
    pub max_units: u64,
    /// Unix milliseconds after which a receipt no longer claims it.
    pub expires_ms: u64,
    /// When the payer signed it, Unix milliseconds.
    pub created_ms: u64,
}

/// An order as it travels: inside a run request, then inside the receipt.
pub type PaymentOrder = Signed<OrderBody>;

impl crate::signed::Domain for OrderBody {
    /// The type tag of a broker's payment order.
    const TAG: &'static [u8] = b"offgrid/payment-order/v1";
}

/// Why an order or a claim is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClaimError {
    /// The receipt carries no order: nobody agreed to pay for it.
    #[error("the receipt carries no payment order")]
    NoOrder,
    /// The receipt does not verify.
    #[error("receipt: {0}")]
    Receipt(String),
    /// The order's signature or encoding is bad.
    #[error("the payment order's signature or encoding is invalid")]
    BadSignature,
    /// The order lacks its type tag.
    #[error("not a payment order (domain {0:?})")]
    WrongDomain(String),
    /// `payer` is not the signer.
    #[error("the order's payer is not its signer")]
    PayerMismatch,
    /// `host` is not a peer id, or not the receipt's host.
    #[error("the order pays another host")]
    HostMismatch,
    /// The receipt is for another job.
    #[error("the order is for another job")]
    JobMismatch,
    /// The order's price is zero.
    #[error("the order's price is zero")]
    ZeroPrice,
    /// The receipt claims more units than the order allows.
    #[error("{units} units claimed, the order allows {cap}")]
    UnitsAboveCap {
        /// Units in the receipt.
        units: u64,
        /// The order's cap.
        cap: u64,
    },
    /// The receipt's price is above the order's.
    #[error("price {price} claimed, the order allows {order}")]
    PriceAboveOrder {
        /// Price in the receipt.
        price: u64,
        /// The order's price.
        order: u64,
    },
    /// The job finished after the order expired.
    #[error("the job finished after the order expired")]
    Expired,
    /// `units × price` does not fit in a u64.
    #[error("amount overflow")]
    Overflow,
    /// The claim is worth nothing.
    #[error("the claim is worth nothing")]
    Zero,
}

/// What a valid receipt claims.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    /// The order's id ([`Signed::id`]): at most one payment per order.
    pub order_id: String,
    /// The paying account.
    pub payer: String,
    /// The paid host.
    pub host: String,
    /// Micro-credits due: `units × price / 1_000_000`, rounded down.
    pub amount: u64,
}

/// `units × price / 1_000_000` micro-credits, or `None` on overflow.
pub fn amount_due(units: u64, price: u64) -> Option<u64> {
    u64::try_from(u128::from(units) * u128::from(price) / u128::from(MICRO)).ok()
}

impl OrderBody {
    /// The most the order can cost its payer, or `None` on overflow.
    pub fn max_amount(&self) -> Option<u64> {
        amount_due(self.max_units, self.price)
    }
}

/// Signs an order with the payer's key; `body.payer` must be that key's peer id.
pub fn sign_order(
    key: &ed25519_dalek::SigningKey,
    body: &OrderBody,
) -> Result<PaymentOrder, SignError> {
    Signed::sign(key, body)
}

/// Verifies an order: signature, type tag, payer = signer, a peer id as host, a price.
pub fn verify_order(order: &PaymentOrder) -> Result<OrderBody, ClaimError> {
    let body = order.verify().map_err(|_| ClaimError::BadSignature)?;
    if body.domain != ORDER_DOMAIN {
        return Err(ClaimError::WrongDomain(body.domain));
    }
    if body.payer != peer_id_from_pubkey(&order.pubkey) {
        return Err(ClaimError::PayerMismatch);
    }
    if !is_peer_id(&body.host) {
        return Err(ClaimError::HostMismatch);
    }
    if body.price == 0 {
        return Err(ClaimError::ZeroPrice);
    }
    Ok(body)
}

/// The claim a receipt makes on the order it embeds: every check a witness runs before it
/// signs a settlement, none of which needs state.
pub fn claim(receipt: &SignedReceipt) -> Result<Claim, ClaimError> {
    let r = verify_receipt(receipt).map_err(|e| ClaimError::Receipt(e.to_string()))?;
    let order = r.order.as_ref().ok_or(ClaimError::NoOrder)?;
    let o = verify_order(order)?;
    if o.job_id != r.job_id {
        return Err(ClaimError::JobMismatch);
    }
    if o.host != r.node_id {
        return Err(ClaimError::HostMismatch);
    }
    if r.units > o.max_units {
        return Err(ClaimError::UnitsAboveCap {
            units: r.units,
            cap: o.max_units,
        });
    }
    if r.price > o.price {
        return Err(ClaimError::PriceAboveOrder {
            price: r.price,
            order: o.price,
        });
    }
    if r.finished_at_ms > o.expires_ms {
        return Err(ClaimError::Expired);
    }
    let amount = amount_due(r.units, r.price).ok_or(ClaimError::Overflow)?;
    if amount == 0 {
        return Err(ClaimError::Zero);
    }
    Ok(Claim {
        order_id: order.id(),
        payer: o.payer,
        host: o.host,
        amount,
    })
}

/// The settlement tag of an order: `order:<id>`.
pub fn order_meta(order_id: &str) -> String {
    format!("order:{order_id}")
}

#[cfg(test)]
mod tests {
    use ed25519_dalek::SigningKey;

    use super::*;
    use crate::receipt::{tests::receipt_with_order, ReceiptBody};

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    fn peer(seed: u8) -> String {
        peer_id_from_pubkey(key(seed).verifying_key().as_bytes())
    }

    /// An order from payer seed 9 to host seed 1 for job `j`: 0.03 per unit, 2 units.
    fn order_body() -> OrderBody {
        OrderBody {
            domain: ORDER_DOMAIN.into(),
            job_id: "j".into(),
            payer: peer(9),
            host: peer(1),
            price: 30_000,
            max_units: 2_000_000,
            expires_ms: 10_000,
            created_ms: 1,
        }
    }

    fn claim_of(
        order: Option<PaymentOrder>,
        edit: impl FnOnce(&mut ReceiptBody),
    ) -> Result<Claim, ClaimError> {
        claim(&receipt_with_order(1, order, edit))
    }

    #[test]
    fn an_ordered_receipt_claims_units_times_price_from_the_payer() {
        let order = sign_order(&key(9), &order_body()).unwrap();
        let c = claim_of(Some(order.clone()), |r| {
            r.units = 1_500_000;
            r.price = 30_000;
        })
        .unwrap();
        assert_eq!(
            c,
            Claim {
                order_id: order.id(),
                payer: peer(9),
                host: peer(1),
                amount: 45_000,
            }
        );
        assert_eq!(order_body().max_amount(), Some(60_000));
    }

    #[test]
    fn receipts_nobody_ordered_or_beyond_their_order_claim_nothing() {
        let order = sign_order(&key(9), &order_body()).unwrap();
        let ok = |r: &mut ReceiptBody| {
            r.units = 1_000_000;
            r.price = 30_000;
        };
        assert_eq!(claim_of(None, ok), Err(ClaimError::NoOrder));
        #[allow(clippy::type_complexity)]
        let cases: Vec<(Box<dyn FnOnce(&mut ReceiptBody)>, ClaimError)> = vec![
            (
                Box::new(|r| {
                    ok(r);
                    r.units = 2_000_001
                }),
                ClaimError::UnitsAboveCap {
                    units: 2_000_001,
                    cap: 2_000_000,
                },
            ),
            (
                Box::new(|r| {
                    ok(r);
                    r.price = 30_001
                }),
                ClaimError::PriceAboveOrder {
                    price: 30_001,
                    order: 30_000,
                },
            ),
            (
                Box::new(|r| {
                    ok(r);
                    r.job_id = "other".into()
                }),
                ClaimError::JobMismatch,
            ),
            (
                Box::new(|r| {
                    ok(r);
                    r.finished_at_ms = 10_001
                }),
                ClaimError::Expired,
            ),
            (
                Box::new(|r| {
                    ok(r);
                    r.units = 1
                }),
                ClaimError::Zero,
            ),
        ];
        for (edit, want) in cases {
            assert_eq!(claim_of(Some(order.clone()), edit), Err(want));
        }
        // Another host's order.
        let mut b = order_body();
        b.host = peer(2);
        let other = sign_order(&key(9), &b).unwrap();
        assert_eq!(claim_of(Some(other), ok), Err(ClaimError::HostMismatch));
    }

    #[test]
    fn forged_orders_are_refused() {
        // Signed by someone else than the payer it names.
        let forged = sign_order(&key(5), &order_body()).unwrap();
        assert_eq!(verify_order(&forged), Err(ClaimError::PayerMismatch));
        // A good order with a flipped signature bit.
        let mut bad = sign_order(&key(9), &order_body()).unwrap();
        bad.sig[3] ^= 1;
        assert_eq!(verify_order(&bad), Err(ClaimError::BadSignature));
        // Another record kind signed by the payer does not pass as an order.
        let mut b = order_body();
        b.domain = "offgrid/receipt/v1".into();
        let wrong = sign_order(&key(9), &b).unwrap();
        assert!(matches!(
            verify_order(&wrong),
            Err(ClaimError::WrongDomain(_))
        ));
        let mut b = order_body();
        b.price = 0;
        assert_eq!(
            verify_order(&sign_order(&key(9), &b).unwrap()),
            Err(ClaimError::ZeroPrice)
        );
        // Overflowing amounts are refused, not wrapped.
        let mut b = order_body();
        b.max_units = u64::MAX;
        b.price = u64::MAX;
        let big = sign_order(&key(9), &b).unwrap();
        assert_eq!(b.max_amount(), None);
        let r = claim_of(Some(big), |r| {
            r.units = u64::MAX;
            r.price = u64::MAX;
        });
        assert_eq!(r, Err(ClaimError::Overflow));
    }
}
