//! The `[ledger]` and `[wallet]` sections of the daemon config.
//!
//! Weights are written as floats, as people think of them (`weight = 1.0`); the wallet's
//! finality arithmetic uses integer milli-weights (`1.0` → `1000`) so it is exact. Money
//! (genesis amounts, fees) is always an integer number of micro-credits.

use offgrid_ledger::WalletParams;
use serde::{Deserialize, Serialize};

/// `[ledger]`: blocks, sync, settlement and reputation gossip timers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LedgerConfig {
    /// Seconds between checks for new receipts to put in a block (a block is made only when
    /// receipts are waiting).
    pub block_interval_s: u64,
    /// Seconds between tip exchanges with each connected peer.
    pub sync_interval_s: u64,
    /// Settle each new batch of this node's receipts automatically, once.
    pub auto_settle: bool,
    /// Seconds between rounds of reputation gossip.
    pub reputation_interval_s: u64,
    /// Milliseconds between re-publications of transactions that are not final yet.
    pub republish_ms: u64,
}

impl Default for LedgerConfig {
    fn default() -> Self {
        LedgerConfig {
            block_interval_s: 10,
            sync_interval_s: 5,
            auto_settle: true,
            reputation_interval_s: 30,
            republish_ms: 2000,
        }
    }
}

/// One witness, `{ peer = "<peer id>", weight = 1.0 }`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WitnessConfig {
    /// The witness's peer id.
    pub peer: String,
    /// Its weight.
    #[serde(default = "one")]
    pub weight: f64,
}

fn one() -> f64 {
    1.0
}

/// One genesis balance, `{ account = "<peer id>", amount = N }` (micro-credits).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenesisConfig {
    /// Account (peer id or `system`).
    pub account: String,
    /// Initial balance, micro-credits.
    pub amount: u64,
}

/// `[wallet]`: witnesses, quorum, genesis and fees. Every node of a mesh must use the same
/// values. With no witnesses the wallet is off (blocks still work).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WalletConfig {
    /// Witnesses and their weights.
    pub witnesses: Vec<WitnessConfig>,
    /// Weight a transaction's attestations must reach; 0 means "just over half the total".
    /// Must exceed half the total weight.
    pub quorum: f64,
    /// Initial balances.
    pub genesis: Vec<GenesisConfig>,
    /// Smallest transfer fee, micro-credits.
    pub tx_fee_min: u64,
    /// Largest transfer fee, micro-credits.
    pub tx_fee_max: u64,
    /// Share of each host's settled reward kept as reserve for `system` (0.01 = 1 %).
    pub host_reserve: f64,
    /// Join the wallet of this genesis (as `offgrid wallet init` printed it): fetched from
    /// peers at start, as `offgrid wallet join` does. Not with `witnesses`, which configure
    /// a wallet in full here.
    pub genesis_id: Option<String>,
}

impl Default for WalletConfig {
    fn default() -> Self {
        WalletConfig {
            witnesses: Vec::new(),
            quorum: 0.0,
            genesis: Vec::new(),
            tx_fee_min: 0,
            tx_fee_max: 1_000_000,
            host_reserve: 0.01,
            genesis_id: None,
        }
    }
}

/// Float weight → integer milli-weight, rounded to the nearest.
pub fn milli(w: f64) -> Option<u64> {
    (0.0..1e12)
        .contains(&w)
        .then(|| (w * 1000.0).round() as u64)
}

impl WalletConfig {
    /// Whether the wallet is configured (it has witnesses).
    pub fn enabled(&self) -> bool {
        !self.witnesses.is_empty()
    }

    /// The ledger's wallet parameters, validated.
    pub fn params(&self) -> Result<WalletParams, String> {
        let mut witnesses = Vec::with_capacity(self.witnesses.len());
        for w in &self.witnesses {
            let m = milli(w.weight).ok_or_else(|| {
                format!("wallet.witnesses: bad weight {} for {}", w.weight, w.peer)
            })?;
            witnesses.push((w.peer.clone(), m));
        }
        let total: u64 = witnesses.iter().map(|(_, w)| *w).sum();
        let quorum_milli = if self.quorum == 0.0 {
            total / 2 + 1
        } else {
            milli(self.quorum)
                .ok_or_else(|| format!("wallet.quorum: bad weight {}", self.quorum))?
        };
        let params = WalletParams {
            witnesses,
            quorum_milli,
            genesis: self
                .genesis
                .iter()
                .map(|g| (g.account.clone(), g.amount))
                .collect(),
            tx_fee_min: self.tx_fee_min,
            tx_fee_max: self.tx_fee_max,
            host_reserve_bps: self.reserve_bps()?,
        };
        params.validate().map_err(|e| format!("wallet: {e}"))?;
        Ok(params)
    }

    /// The settlement reserve in basis points.
    pub fn reserve_bps(&self) -> Result<u64, String> {
        if !(self.host_reserve.is_finite() && (0.0..=1.0).contains(&self.host_reserve)) {
            return Err(format!(
                "wallet.host_reserve must be in [0, 1], not {}",
                self.host_reserve
            ));
        }
        Ok((self.host_reserve * 10_000.0).round() as u64)
    }
}

/// Checks the ledger sections of a config.
pub fn validate(wallet: &WalletConfig) -> Result<(), String> {
    if let Some(id) = &wallet.genesis_id {
        if wallet.enabled() {
            return Err("wallet: set either witnesses or genesis_id, not both".into());
        }
        if id.len() != 64 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!("wallet.genesis_id {id:?} is not 64 hex digits"));
        }
    }
    if wallet.enabled() {
        wallet.params()?;
    }
    wallet.reserve_bps()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn pid(seed: u8) -> String {
        let k = ed25519_dalek::SigningKey::from_bytes(&[seed; 32]);
        offgrid_ledger::peer_id_from_pubkey(k.verifying_key().as_bytes())
    }

    #[test]
    fn float_weights_become_exact_milli_weights_and_zero_quorum_means_majority() {
        let w = WalletConfig {
            witnesses: (1..=5)
                .map(|i| WitnessConfig {
                    peer: pid(i),
                    weight: 1.0,
                })
                .collect(),
            ..Default::default()
        };
        let p = w.params().unwrap();
        assert_eq!(p.total_weight(), 5000);
        assert_eq!(p.quorum_milli, 2501);
        let w3 = WalletConfig {
            quorum: 3.0,
            ..w.clone()
        };
        assert_eq!(w3.params().unwrap().quorum_milli, 3000);
        let low = WalletConfig { quorum: 2.5, ..w };
        assert!(low.params().unwrap_err().contains("half"));
        assert_eq!(WalletConfig::default().reserve_bps().unwrap(), 100);
        assert_eq!(w3.params().unwrap().host_reserve_bps, 100);
    }
}
