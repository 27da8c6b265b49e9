//! Wallet transactions, witnessing and finality.
//!
//! Accounts are peer ids (plus the [`SYSTEM`] account, which receives fees and reserves).
//! A transaction ([`Tx`]) is signed by its author and sent to the witnesses. Each witness
//! checks it against its own view of the final state ([`WitnessState::check`]), durably
//! records that it signs it ([`WitnessState::record`]) and only then signs an attestation
//! ([`WitnessState::attest`], or [`WitnessState::attest_batch`] for many at once: one
//! signature over the Merkle root of their [`WitnessBody`]s, see [`attestation`] for the
//! wire form). A transaction is final once the attestations of distinct
//! listed witnesses weigh at least the quorum ([`Finality`]). Balances and nonces derive only
//! from final transactions ([`WalletState::apply_final`]).
//!
//! **Safety.** A witness signs at most one transaction per [`Slot`]: `(src, nonce)` for a
//! transfer, the `meta` tag for a mint. The quorum must exceed half of the total witness
//! weight ([`WalletParams::validate`]), so two quorums always share a witness; while the
//! witnesses holding more than half the weight are honest, two conflicting transactions can
//! never both be final.

pub mod attestation;
#[cfg(test)]
mod attestation_tests;
pub mod epoch;
#[cfg(test)]
mod epoch_tests;
mod finality;
pub mod genesis;
#[cfg(test)]
mod safety_tests;
mod state;
#[cfg(test)]
pub(crate) mod tests;
mod witness;

use std::collections::BTreeSet;

pub use attestation::{Attestation, MAX_BATCH, MAX_PROOF_LEN, ROOT_DOMAIN};
pub use finality::{certified_weight, Finality, VerifiedWitness, WitnessError, DEFAULT_ROOT_CACHE};
pub use genesis::{make_genesis, verify_genesis, GenesisBody, GenesisError, SignedGenesis};
use serde::{Deserialize, Serialize};
pub use state::{ApplyError, ApplyOutcome, WalletState, DEFAULT_MAX_PENDING};
pub use witness::{AttestError, Checked, TxReject, VerifiedTx, WitnessState};

use crate::{peer_id::is_peer_id, signed::Signed};

/// The system account: receives transfer fees and settlement reserves, and is the `src` of
/// every mint.
pub const SYSTEM: &str = "system";

/// Longest accepted `meta` tag, in bytes.
pub const MAX_META_LEN: usize = 512;

/// What a transaction does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TxKind {
    /// Moves `amount` from `src` to `dst`; `src` also pays `fee` to [`SYSTEM`].
    Transfer,
    /// Creates `amount` new money for `dst`. Only genesis creates money now: witnesses sign
    /// no mint (kept so older records still decode).
    Mint,
    /// Pays a host for a job from the requester's account: `claim` is the host's receipt
    /// with the requester's payment order in it ([`crate::payment`]). `src` is the payer,
    /// `dst` the host, `amount` the claim; `dst` receives it less the reserve
    /// ([`WalletParams::host_reserve_bps`]), which goes to [`SYSTEM`]. It takes the payer's
    /// next nonce, like the payer's own transfers: every debit of an account is in one
    /// sequence, so a payer cannot spend twice what it promised hosts, and every node applies
    /// the same debits in the same order. An order is paid once.
    Settle,
    /// Opens the next witness epoch ([`epoch`]): `reconfig` names its witnesses and quorum.
    /// `src`, `dst` and `author` are [`SYSTEM`], `nonce` the epoch, everything else zero, so
    /// the body is the same whichever witness proposes it. Signed by a witness of the
    /// current epoch; final by the current epoch's quorum.
    Reconfig,
}

/// The signed content of a transaction. Amounts are micro-credits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxBody {
    /// Transfer or mint.
    pub kind: TxKind,
    /// Paying account: the author's peer id for transfers, [`SYSTEM`] for mints.
    pub src: String,
    /// Receiving account: a peer id or [`SYSTEM`].
    pub dst: String,
    /// Amount moved or minted, micro-credits.
    pub amount: u64,
    /// Fee paid to [`SYSTEM`] (transfers); must be 0 for mints.
    pub fee: u64,
    /// Per-account sequence number, starting at 1 (transfers); must be 0 for mints.
    pub nonce: u64,
    /// Free tag; for mints the settlement tag `batch:<root>:<dst>` (required, unique).
    pub meta: Option<String>,
    /// Peer id of the signer.
    pub author: String,
    /// When the author made it, Unix milliseconds (informational).
    pub created_ms: u64,
    /// A settlement's claim: the host's receipt, which embeds the payer's order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claim: Option<crate::receipt::SignedReceipt>,
    /// A reconfiguration's next witness set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reconfig: Option<epoch::Reconfig>,
}

/// A transaction as it travels and is stored. Its id is [`Signed::id`].
pub type Tx = Signed<TxBody>;

impl crate::signed::Domain for TxBody {
    /// The type tag of a wallet transaction.
    const TAG: &'static [u8] = b"offgrid/tx/v1";
}

/// The conflict slot of a transaction: a witness signs at most one transaction per slot.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Slot {
    /// A transfer's `(src, nonce)`.
    Account {
        /// Paying account.
        src: String,
        /// Its sequence number.
        nonce: u64,
    },
    /// A mint's `meta` tag.
    Mint {
        /// The settlement tag.
        meta: String,
    },
    /// The reconfiguration opening an epoch.
    Epoch {
        /// The epoch it opens.
        epoch: u64,
    },
}

impl Slot {
    /// A stable text key for storage: `acct:<src>:<nonce>` or `mint:<meta>`.
    pub fn key(&self) -> String {
        match self {
            Slot::Account { src, nonce } => format!("acct:{src}:{nonce}"),
            Slot::Mint { meta } => format!("mint:{meta}"),
            Slot::Epoch { epoch } => format!("epoch:{epoch}"),
        }
    }
}

impl TxBody {
    /// The slot this transaction occupies.
    pub fn slot(&self) -> Slot {
        match self.kind {
            TxKind::Transfer | TxKind::Settle => Slot::Account {
                src: self.src.clone(),
                nonce: self.nonce,
            },
            TxKind::Mint => Slot::Mint {
                meta: self.meta.clone().unwrap_or_default(),
            },
            TxKind::Reconfig => Slot::Epoch { epoch: self.nonce },
        }
    }

    /// The payment order a settlement pays (its `meta` is `order:<id>`).
    pub fn order_id(&self) -> Option<&str> {
        match self.kind {
            TxKind::Settle => self.meta.as_deref()?.strip_prefix("order:"),
            _ => None,
        }
    }

    /// `amount + fee`, the debit of a transfer, or `None` on overflow.
    pub fn debit(&self) -> Option<u64> {
        self.amount.checked_add(self.fee)
    }
}

/// The content of a witness attestation: a leaf of the witness's signed Merkle batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WitnessBody {
    /// Id of the attested transaction.
    pub tx_id: String,
    /// The transaction's `src`.
    pub src: String,
    /// The transaction's `nonce`.
    pub nonce: u64,
    /// Peer id of the witness (the signer).
    pub witness: String,
    /// The witness epoch it is signed in ([`epoch`]); counted only in that epoch.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub epoch: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// A witness attestation as it travels and is stored.
pub type Witness = Attestation;

/// Decides whether a mint is justified (e.g. recomputes settlement of the batch named in
/// `meta`). Nodes use [`NoMints`]: only genesis creates money. Also decides whether this
/// witness's operator approved a reconfiguration (none by default).
pub trait MintValidator {
    /// Whether witnesses may sign this mint.
    fn validate_mint(&self, body: &TxBody) -> bool;

    /// Whether this witness may sign this reconfiguration (its operator asked for it).
    fn approve_reconfig(&self, _tx_id: &str) -> bool {
        false
    }
}

impl<F: Fn(&TxBody) -> bool> MintValidator for F {
    fn validate_mint(&self, body: &TxBody) -> bool {
        self(body)
    }
}

/// A [`MintValidator`] that refuses every mint.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoMints;

impl MintValidator for NoMints {
    fn validate_mint(&self, _body: &TxBody) -> bool {
        false
    }
}

/// Wallet parameters shared by every node. Weights are integer milli-weights (`1.0` →
/// `1000`) so the quorum arithmetic is exact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WalletParams {
    /// Witness peer ids and their weights.
    pub witnesses: Vec<(String, u64)>,
    /// Weight a transaction's attestations must reach; more than half the total.
    pub quorum_milli: u64,
    /// Initial balances.
    pub genesis: Vec<(String, u64)>,
    /// Smallest accepted transfer fee.
    pub tx_fee_min: u64,
    /// Largest accepted transfer fee.
    pub tx_fee_max: u64,
    /// Share of each settlement kept as reserve for [`SYSTEM`], in basis points (100 = 1 %).
    #[serde(default = "default_reserve_bps")]
    pub host_reserve_bps: u64,
}

fn default_reserve_bps() -> u64 {
    100
}

/// Why wallet parameters are unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParamsError {
    /// No witnesses are listed.
    #[error("no witnesses")]
    NoWitnesses,
    /// A witness id is not an Ed25519 peer id.
    #[error("witness {0:?} is not a peer id")]
    BadWitnessId(String),
    /// A witness has weight 0.
    #[error("witness {0} has zero weight")]
    ZeroWeight(String),
    /// A witness is listed twice.
    #[error("witness {0} listed twice")]
    DuplicateWitness(String),
    /// The total weight overflows.
    #[error("total witness weight overflows")]
    WeightOverflow,
    /// The quorum is not more than half the total weight, so conflicting transactions could
    /// both become final.
    #[error("quorum {quorum} must exceed half of the total weight {total}")]
    QuorumTooLow {
        /// Configured quorum.
        quorum: u64,
        /// Total witness weight.
        total: u64,
    },
    /// The quorum exceeds the total weight, so nothing could become final.
    #[error("quorum {quorum} exceeds the total weight {total}")]
    QuorumUnreachable {
        /// Configured quorum.
        quorum: u64,
        /// Total witness weight.
        total: u64,
    },
    /// `tx_fee_min > tx_fee_max`.
    #[error("tx_fee_min exceeds tx_fee_max")]
    FeeRange,
    /// A genesis account is listed twice.
    #[error("genesis account {0} listed twice")]
    DuplicateGenesis(String),
    /// The genesis supply overflows.
    #[error("genesis supply overflows")]
    GenesisOverflow,
    /// `host_reserve_bps` exceeds 10 000.
    #[error("reserve share above 100 %")]
    BadReserve,
}

impl WalletParams {
    /// Checks the parameters; see [`ParamsError`].
    pub fn validate(&self) -> Result<(), ParamsError> {
        if self.witnesses.is_empty() {
            return Err(ParamsError::NoWitnesses);
        }
        let mut seen = BTreeSet::new();
        let mut total: u64 = 0;
        for (peer, weight) in &self.witnesses {
            if !is_peer_id(peer) {
                return Err(ParamsError::BadWitnessId(peer.clone()));
            }
            if *weight == 0 {
                return Err(ParamsError::ZeroWeight(peer.clone()));
            }
            if !seen.insert(peer) {
                return Err(ParamsError::DuplicateWitness(peer.clone()));
            }
            total = total
                .checked_add(*weight)
                .ok_or(ParamsError::WeightOverflow)?;
        }
        let quorum = self.quorum_milli;
        // quorum > total / 2 exactly, without rounding: 2 * quorum > total.
        if u128::from(quorum) * 2 <= u128::from(total) {
            return Err(ParamsError::QuorumTooLow { quorum, total });
        }
        if quorum > total {
            return Err(ParamsError::QuorumUnreachable { quorum, total });
        }
        if self.tx_fee_min > self.tx_fee_max {
            return Err(ParamsError::FeeRange);
        }
        if self.host_reserve_bps > crate::settlement::BPS {
            return Err(ParamsError::BadReserve);
        }
        let mut accounts = BTreeSet::new();
        let mut supply: u64 = 0;
        for (acct, amount) in &self.genesis {
            if !accounts.insert(acct) {
                return Err(ParamsError::DuplicateGenesis(acct.clone()));
            }
            supply = supply
                .checked_add(*amount)
                .ok_or(ParamsError::GenesisOverflow)?;
        }
        Ok(())
    }

    /// Weight of `peer` if it is a listed witness.
    pub fn weight_of(&self, peer: &str) -> Option<u64> {
        self.witnesses
            .iter()
            .find(|(p, _)| p == peer)
            .map(|(_, w)| *w)
    }

    /// Parameters with no witnesses, genesis or fees (a base to fill in).
    pub fn empty() -> Self {
        WalletParams {
            witnesses: Vec::new(),
            quorum_milli: 0,
            genesis: Vec::new(),
            tx_fee_min: 0,
            tx_fee_max: 0,
            host_reserve_bps: default_reserve_bps(),
        }
    }

    /// The reserve of a settlement of `amount`: `amount × bps / 10 000`, floored.
    pub fn reserve_of(&self, amount: u64) -> u64 {
        let bps = self.host_reserve_bps.min(crate::settlement::BPS);
        let wide = u128::from(amount) * u128::from(bps) / u128::from(crate::settlement::BPS);
        // bps ≤ 10 000, so the reserve is at most `amount` and fits.
        u64::try_from(wide).unwrap_or(amount).min(amount)
    }

    /// Sum of all witness weights (saturating; [`WalletParams::validate`] rejects overflow).
    pub fn total_weight(&self) -> u64 {
        self.witnesses
            .iter()
            .fold(0u64, |acc, (_, w)| acc.saturating_add(*w))
    }
}

/// Whether `s` may receive money: a peer id or [`SYSTEM`].
pub(crate) fn is_account(s: &str) -> bool {
    s == SYSTEM || is_peer_id(s)
}
