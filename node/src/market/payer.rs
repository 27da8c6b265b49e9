//! The requester pays: the broker signs a payment order for each dispatch, and refuses a job
//! its account cannot pay for before any host is asked to run it.
//!
//! An order names one job, one host, the quoted price, the job's units as the cap, and an
//! expiry just after the attempt's deadline. What the broker has promised to hosts still
//! running is held against the balance, so concurrent jobs cannot promise more than it.
//! Receipts already returned but not yet settled are not held: a settlement the payer cannot
//! cover waits, final but unapplied, until funds arrive (no balance ever goes negative).

use std::sync::{
    atomic::{AtomicU64, Ordering},
    Arc,
};

use ed25519_dalek::SigningKey;
use offgrid_ledger::payment::{amount_due, sign_order, OrderBody, PaymentOrder, ORDER_DOMAIN};
use tokio::sync::watch;

use super::broker::BrokerError;
use crate::now_ms;

/// How long after an attempt's deadline its order still accepts the receipt (clock skew).
pub const ORDER_GRACE_MS: u64 = 60_000;

/// The paying account of a broker.
pub struct Payer {
    key: SigningKey,
    me: String,
    /// The account's final balance (`None`: the wallet is off, jobs run unpaid).
    balance: watch::Receiver<Option<u64>>,
    /// Micro-credits promised to attempts still running.
    held: AtomicU64,
}

/// An order promised to a running attempt; the hold ends when it drops.
pub struct Hold {
    payer: Arc<Payer>,
    amount: u64,
    /// The order to send with the run.
    pub order: PaymentOrder,
}

impl Drop for Hold {
    fn drop(&mut self) {
        self.payer.held.fetch_sub(self.amount, Ordering::AcqRel);
    }
}

impl Payer {
    /// The account of `key`, whose final balance `balance` follows.
    pub fn new(key: SigningKey, me: String, balance: watch::Receiver<Option<u64>>) -> Arc<Self> {
        Arc::new(Payer {
            key,
            me,
            balance,
            held: AtomicU64::new(0),
        })
    }

    /// The account's public key (orders are signed with it).
    pub fn pubkey(&self) -> [u8; 32] {
        self.key.verifying_key().to_bytes()
    }

    /// Whether jobs are paid at all (the wallet is on).
    pub fn active(&self) -> bool {
        self.balance.borrow().is_some()
    }

    /// Refuses a job whose cost at `price` the account cannot cover beside what it has
    /// promised already.
    pub fn check(&self, units: u64, price: u64) -> Result<(), BrokerError> {
        let Some(balance) = *self.balance.borrow() else {
            return Ok(());
        };
        let needed = amount_due(units, price)
            .ok_or_else(|| BrokerError::Invalid("the job's cost overflows".into()))?;
        let held = self.held.load(Ordering::Relaxed);
        let available = balance.saturating_sub(held);
        if needed > available {
            return Err(BrokerError::InsufficientFunds { needed, available });
        }
        Ok(())
    }

    /// Signs the order for one attempt and holds its amount; `None` when jobs are unpaid.
    pub fn order(
        self: &Arc<Self>,
        job_id: &str,
        host: &str,
        units: u64,
        price: u64,
        deadline_ms: u64,
    ) -> Result<Option<Hold>, BrokerError> {
        if !self.active() {
            return Ok(None);
        }
        let amount = amount_due(units, price)
            .ok_or_else(|| BrokerError::Invalid("the job's cost overflows".into()))?;
        let balance = (*self.balance.borrow()).unwrap_or(0);
        // Check and hold in one step, so concurrent jobs cannot both fit in the same funds.
        self.held
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
                let total = held.checked_add(amount)?;
                (total <= balance).then_some(total)
            })
            .map_err(|held| BrokerError::InsufficientFunds {
                needed: amount,
                available: balance.saturating_sub(held),
            })?;
        let body = OrderBody {
            domain: ORDER_DOMAIN.into(),
            job_id: job_id.into(),
            payer: self.me.clone(),
            host: host.into(),
            price,
            max_units: units,
            expires_ms: deadline_ms.saturating_add(ORDER_GRACE_MS),
            created_ms: now_ms(),
        };
        let order = sign_order(&self.key, &body).map_err(|e| {
            self.held.fetch_sub(amount, Ordering::AcqRel);
            BrokerError::Invalid(format!("cannot sign the payment order: {e}"))
        })?;
        Ok(Some(Hold {
            payer: self.clone(),
            amount,
            order,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payer(balance: Option<u64>) -> (Arc<Payer>, watch::Sender<Option<u64>>) {
        let key = SigningKey::from_bytes(&[4; 32]);
        let me = offgrid_ledger::peer_id_from_pubkey(key.verifying_key().as_bytes());
        let (tx, rx) = watch::channel(balance);
        (Payer::new(key, me, rx), tx)
    }

    #[test]
    fn a_job_the_account_cannot_pay_is_refused_and_holds_add_up() {
        // 2 units at 0.03: 60_000 micro-credits.
        let (p, tx) = payer(Some(100_000));
        let host = offgrid_ledger::peer_id_from_pubkey(&[0; 32]);
        let first = p
            .order("j1", &host, 2_000_000, 30_000, 1_000)
            .unwrap()
            .unwrap();
        let o = offgrid_ledger::payment::verify_order(&first.order).unwrap();
        assert_eq!(
            (o.max_units, o.price, o.expires_ms),
            (2_000_000, 30_000, 61_000)
        );
        // 60_000 held: a second such job no longer fits.
        assert!(matches!(
            p.order("j2", &host, 2_000_000, 30_000, 1_000),
            Err(BrokerError::InsufficientFunds {
                needed: 60_000,
                available: 40_000
            })
        ));
        drop(first);
        assert!(p
            .order("j2", &host, 2_000_000, 30_000, 1_000)
            .unwrap()
            .is_some());
        tx.send(Some(10)).unwrap();
        assert!(p.check(2_000_000, 30_000).is_err());
    }

    #[test]
    fn without_a_wallet_jobs_run_unpaid() {
        let (p, _tx) = payer(None);
        assert!(p.order("j", "h", u64::MAX, u64::MAX, 0).unwrap().is_none());
        assert!(p.check(u64::MAX, u64::MAX).is_ok());
    }
}
