//! The witness role: check a transaction, durably record the slot, then attest.

use std::collections::BTreeMap;

use ed25519_dalek::{SigningKey, VerifyingKey};

use super::{
    finality::VerifiedWitness, is_account, Attestation, MintValidator, ParamsError, Slot, Tx,
    TxBody, TxKind, WalletParams, WalletState, Witness, WitnessBody, MAX_META_LEN, SYSTEM,
};
use crate::{
    peer_id::peer_id_from_pubkey,
    signed::{verify_signatures, SignError, VerifyError},
};

/// Why a witness refuses to sign a transaction.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TxReject {
    /// Signature or decoding failure.
    #[error("invalid signature or encoding")]
    BadSignature,
    /// `author` is not the signer's peer id.
    #[error("author does not match the signing key")]
    AuthorMismatch,
    /// A transfer's `src` is not its author.
    #[error("src is not the author")]
    SrcNotAuthor,
    /// `dst` is neither a peer id nor the system account.
    #[error("invalid destination account")]
    BadDestination,
    /// The amount is zero.
    #[error("amount must be positive")]
    ZeroAmount,
    /// A mint is not from the system account, carries a fee or nonce, or lacks `meta`.
    #[error("malformed mint")]
    MalformedMint,
    /// `meta` is longer than [`MAX_META_LEN`].
    #[error("meta too long")]
    MetaTooLong,
    /// The nonce is not the next one for `src`.
    #[error("nonce {got}, expected {expected}")]
    BadNonce {
        /// The nonce `src`'s next transfer must carry.
        expected: u64,
        /// The transaction's nonce.
        got: u64,
    },
    /// The fee is outside `[tx_fee_min, tx_fee_max]`.
    #[error("fee {0} outside the allowed range")]
    FeeOutOfRange(u64),
    /// `amount + fee` overflows.
    #[error("amount plus fee overflows")]
    Overflow,
    /// `src` cannot pay `amount + fee`.
    #[error("insufficient funds: need {needed}, have {available}")]
    InsufficientFunds {
        /// `amount + fee`.
        needed: u64,
        /// `src`'s final balance.
        available: u64,
    },
    /// This witness already signed a different transaction for the same slot.
    #[error("already signed {0} for this slot")]
    Conflict(String),
    /// A mint with this tag is already final.
    #[error("mint tag already used")]
    AlreadyMinted,
    /// The mint validator refused the mint.
    #[error("mint not justified by settlement")]
    MintRejected,
    /// A settlement whose claim does not hold (no order, forged order, units above the
    /// cap, …) or whose fields are not exactly what the claim gives.
    #[error("settlement refused: {0}")]
    BadClaim(String),
    /// The order is paid already.
    #[error("order already settled")]
    AlreadySettled,
    /// A reconfiguration that is malformed, not signed by a current witness, or not a safe
    /// transition from the current epoch.
    #[error("reconfiguration refused: {0}")]
    BadReconfig(String),
    /// This witness's operator has not asked for this reconfiguration (yet).
    #[error("reconfiguration not approved by this witness")]
    NotApproved,
}

/// Why an attestation could not be produced.
#[derive(Debug, thiserror::Error)]
pub enum AttestError {
    /// The transaction does not verify.
    #[error(transparent)]
    Verify(#[from] VerifyError),
    /// The slot was not recorded for this transaction first (see [`WitnessState::record`]).
    #[error("slot not recorded for this transaction")]
    NotRecorded,
    /// Signing failed.
    #[error(transparent)]
    Sign(#[from] SignError),
}

/// A transaction that passed [`WitnessState::check`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    /// The transaction id.
    pub tx_id: String,
    /// Its decoded body.
    pub body: TxBody,
    /// The slot to record before attesting.
    pub slot: Slot,
    /// Whether this witness already recorded this very transaction (re-attesting is fine and
    /// needs no new record).
    pub already_recorded: bool,
}

/// A transaction whose signature was checked once and whose body was decoded, so a node
/// can check, attest and apply it without verifying the same signature again. Only
/// [`VerifiedTx::new`] builds one.
#[derive(Debug, Clone)]
pub struct VerifiedTx {
    tx: Tx,
    id: String,
    body: TxBody,
}

impl VerifiedTx {
    /// Verifies the signature, decodes the body and checks its form.
    pub fn new(tx: &Tx) -> Result<Self, TxReject> {
        let body = tx.verify().map_err(|_| TxReject::BadSignature)?;
        check_shape(&body, &tx.pubkey)?;
        Ok(VerifiedTx {
            id: tx.id(),
            tx: tx.clone(),
            body,
        })
    }

    /// [`VerifiedTx::new`] for many transactions (e.g. one gossip message), with their
    /// signatures checked in one batch. One result per input, in order.
    pub fn new_many(txs: &[&Tx]) -> Vec<Result<Self, TxReject>> {
        let sigs = verify_signatures(txs, |pk| VerifyingKey::from_bytes(pk).ok());
        txs.iter()
            .zip(sigs)
            .map(|(tx, sig)| {
                sig.map_err(|_| TxReject::BadSignature)?;
                let body: TxBody =
                    serde_json::from_slice(&tx.bytes).map_err(|_| TxReject::BadSignature)?;
                check_shape(&body, &tx.pubkey)?;
                Ok(VerifiedTx {
                    id: tx.id(),
                    tx: (*tx).clone(),
                    body,
                })
            })
            .collect()
    }

    /// The signed transaction.
    pub fn tx(&self) -> &Tx {
        &self.tx
    }

    /// Its id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Its decoded body.
    pub fn body(&self) -> &TxBody {
        &self.body
    }
}

/// Stateless checks of a transaction's form, shared by witnesses and [`WalletState`].
pub(crate) fn check_shape(body: &TxBody, signer: &[u8; 32]) -> Result<(), TxReject> {
    if body.kind == TxKind::Reconfig {
        return check_reconfig_shape(body);
    }
    if body.reconfig.is_some() {
        return Err(TxReject::BadReconfig(
            "only a reconfiguration names witnesses".into(),
        ));
    }
    if body.author != peer_id_from_pubkey(signer) {
        return Err(TxReject::AuthorMismatch);
    }
    if !is_account(&body.dst) {
        return Err(TxReject::BadDestination);
    }
    if body.amount == 0 {
        return Err(TxReject::ZeroAmount);
    }
    if body.meta.as_ref().is_some_and(|m| m.len() > MAX_META_LEN) {
        return Err(TxReject::MetaTooLong);
    }
    match body.kind {
        TxKind::Transfer => {
            if body.src != body.author {
                return Err(TxReject::SrcNotAuthor);
            }
            body.debit().ok_or(TxReject::Overflow)?;
        }
        TxKind::Mint => {
            if body.src != SYSTEM || body.fee != 0 || body.nonce != 0 || body.meta.is_none() {
                return Err(TxReject::MalformedMint);
            }
        }
        TxKind::Settle => check_claim(body)?,
        // Checked above, apart.
        TxKind::Reconfig => {}
    }
    if body.kind != TxKind::Settle && body.claim.is_some() {
        return Err(TxReject::BadClaim(
            "only a settlement carries a claim".into(),
        ));
    }
    Ok(())
}

/// A reconfiguration is exactly [`super::epoch::reconfig_body`] of its content.
fn check_reconfig_shape(body: &TxBody) -> Result<(), TxReject> {
    let Some(r) = &body.reconfig else {
        return Err(TxReject::BadReconfig("no witness set".into()));
    };
    if *body != super::epoch::reconfig_body(r.clone()) || r.epoch == 0 {
        return Err(TxReject::BadReconfig(
            "fields other than the witness set must be the fixed ones".into(),
        ));
    }
    Ok(())
}

/// A settlement is exactly what its claim gives: payer → host, the claimed amount, no fee or
/// nonce, tagged with the order, and authored by the host.
fn check_claim(body: &TxBody) -> Result<(), TxReject> {
    let bad = |m: &str| Err(TxReject::BadClaim(m.to_owned()));
    let Some(receipt) = &body.claim else {
        return bad("no claim");
    };
    let c = crate::payment::claim(receipt).map_err(|e| TxReject::BadClaim(e.to_string()))?;
    if body.src != c.payer || body.dst != c.host || body.author != c.host {
        return bad("src, dst and author must be the payer, the host and the host");
    }
    if body.amount != c.amount {
        return bad("amount is not the claim's");
    }
    if body.fee != 0 {
        return bad("a settlement has no fee");
    }
    if body.nonce == 0 {
        return bad("a settlement takes the payer's next nonce");
    }
    if body.meta.as_deref() != Some(crate::payment::order_meta(&c.order_id).as_str()) {
        return bad("meta must be order:<order id>");
    }
    Ok(())
}

/// A witness's durable promises: which transaction it signed for each slot.
#[derive(Debug, Clone)]
pub struct WitnessState {
    params: WalletParams,
    signed: BTreeMap<Slot, String>,
    /// The epoch its attestations are signed in.
    epoch: u64,
}

impl WitnessState {
    /// A witness that has signed nothing yet.
    pub fn new(params: WalletParams) -> Result<Self, ParamsError> {
        Self::from_records(params, [])
    }

    /// A witness restored from its persisted `(slot, tx id)` records.
    pub fn from_records(
        params: WalletParams,
        records: impl IntoIterator<Item = (Slot, String)>,
    ) -> Result<Self, ParamsError> {
        params.validate()?;
        Ok(Self {
            params,
            signed: records.into_iter().collect(),
            epoch: 0,
        })
    }

    /// Signs in `epoch` from now on (once its reconfiguration is final).
    pub fn set_epoch(&mut self, epoch: u64) {
        self.epoch = epoch;
    }

    /// The epoch this witness signs in.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The wallet parameters.
    pub fn params(&self) -> &WalletParams {
        &self.params
    }

    /// The transaction this witness signed for `slot`, if any.
    pub fn recorded(&self, slot: &Slot) -> Option<&str> {
        self.signed.get(slot).map(String::as_str)
    }

    /// Decides whether this witness may sign `tx`, given its view of the final state:
    /// valid signature and form; for transfers author = `src`, nonce = last final + 1, fee in
    /// range and funds ≥ amount + fee; for mints an unused tag the validator accepts; and no
    /// different transaction already signed for the same slot. A transaction this witness
    /// already signed passes again (attesting is idempotent).
    pub fn check(
        &self,
        state: &WalletState,
        tx: &Tx,
        mints: &dyn MintValidator,
    ) -> Result<Checked, TxReject> {
        self.check_verified(state, &VerifiedTx::new(tx)?, mints)
    }

    /// [`WitnessState::check`] for a transaction already verified.
    pub fn check_verified(
        &self,
        state: &WalletState,
        v: &VerifiedTx,
        mints: &dyn MintValidator,
    ) -> Result<Checked, TxReject> {
        let body = v.body.clone();
        let tx_id = v.id.clone();
        let slot = body.slot();
        if let Some(existing) = self.signed.get(&slot) {
            if *existing != tx_id {
                return Err(TxReject::Conflict(existing.clone()));
            }
            return Ok(Checked {
                tx_id,
                body,
                slot,
                already_recorded: true,
            });
        }
        match body.kind {
            TxKind::Transfer => {
                let expected = state.next_nonce(&body.src);
                if body.nonce != expected {
                    return Err(TxReject::BadNonce {
                        expected,
                        got: body.nonce,
                    });
                }
                if body.fee < self.params.tx_fee_min || body.fee > self.params.tx_fee_max {
                    return Err(TxReject::FeeOutOfRange(body.fee));
                }
                let needed = body.debit().ok_or(TxReject::Overflow)?;
                let available = state.balance(&body.src);
                if available < needed {
                    return Err(TxReject::InsufficientFunds { needed, available });
                }
            }
            TxKind::Mint => {
                if state.is_minted(body.meta.as_deref().unwrap_or_default()) {
                    return Err(TxReject::AlreadyMinted);
                }
                if !mints.validate_mint(&body) {
                    return Err(TxReject::MintRejected);
                }
            }
            TxKind::Reconfig => check_reconfig(state, v, mints)?,
            TxKind::Settle => {
                if body.order_id().is_some_and(|o| state.is_settled(o)) {
                    return Err(TxReject::AlreadySettled);
                }
                let expected = state.next_nonce(&body.src);
                if body.nonce != expected {
                    return Err(TxReject::BadNonce {
                        expected,
                        got: body.nonce,
                    });
                }
                let available = state.balance(&body.src);
                if available < body.amount {
                    return Err(TxReject::InsufficientFunds {
                        needed: body.amount,
                        available,
                    });
                }
            }
        }
        Ok(Checked {
            tx_id,
            body,
            slot,
            already_recorded: false,
        })
    }

    /// Records that this witness signs `tx_id` for `slot`. The node must persist the record
    /// durably *before* calling [`WitnessState::attest`], so a restart can never lead it to
    /// sign a conflicting transaction. Returns `true` if the record is new; recording the same
    /// transaction again is a no-op; a different one is refused.
    pub fn record(&mut self, slot: Slot, tx_id: String) -> Result<bool, TxReject> {
        match self.signed.get(&slot) {
            Some(existing) if *existing == tx_id => Ok(false),
            Some(existing) => Err(TxReject::Conflict(existing.clone())),
            None => {
                self.signed.insert(slot, tx_id);
                Ok(true)
            }
        }
    }

    /// Signs an attestation of `tx` with the witness key (a batch of one). Refused unless
    /// the transaction's slot was recorded for it first.
    pub fn attest(&self, key: &SigningKey, tx: &Tx) -> Result<Witness, AttestError> {
        let body = tx.verify()?;
        let witness = peer_id_from_pubkey(key.verifying_key().as_bytes());
        let att = self.attestation_body(&witness, tx.id(), &body)?;
        sign_one(key, &att)
    }

    /// [`WitnessState::attest`] for a transaction already verified.
    pub fn attest_verified(
        &self,
        key: &SigningKey,
        v: &VerifiedTx,
    ) -> Result<Witness, AttestError> {
        let witness = peer_id_from_pubkey(key.verifying_key().as_bytes());
        let att = self.attestation_body(&witness, v.id.clone(), &v.body)?;
        sign_one(key, &att)
    }

    /// [`WitnessState::attest_verified`] (a batch of one), returned in the form
    /// [`super::Finality`] counts without checking the signature this node has just made.
    pub fn attest_own(
        &self,
        key: &SigningKey,
        v: &VerifiedTx,
    ) -> Result<VerifiedWitness, AttestError> {
        self.attest_batch(key, &[v])?
            .pop()
            .ok_or(AttestError::NotRecorded)
    }

    /// Attests many transactions with one signature per Merkle batch (see
    /// [`Attestation::sign_batch`]), in the form [`super::Finality`] counts without checking.
    /// Refused as a whole unless every transaction's slot was recorded for it first.
    pub fn attest_batch(
        &self,
        key: &SigningKey,
        txs: &[&VerifiedTx],
    ) -> Result<Vec<VerifiedWitness>, AttestError> {
        // One peer id encoding per batch, not per attestation.
        let witness = peer_id_from_pubkey(key.verifying_key().as_bytes());
        let bodies = txs
            .iter()
            .map(|v| self.attestation_body(&witness, v.id.clone(), &v.body))
            .collect::<Result<Vec<_>, _>>()?;
        let atts = Attestation::sign_batch(key, &bodies)?;
        Ok(atts
            .into_iter()
            .zip(bodies)
            .map(|(att, body)| VerifiedWitness::signed_here(att, body))
            .collect())
    }

    fn attestation_body(
        &self,
        witness: &str,
        tx_id: String,
        body: &TxBody,
    ) -> Result<WitnessBody, AttestError> {
        if self.signed.get(&body.slot()) != Some(&tx_id) {
            return Err(AttestError::NotRecorded);
        }
        Ok(WitnessBody {
            tx_id,
            src: body.src.clone(),
            nonce: body.nonce,
            witness: witness.to_owned(),
            epoch: self.epoch,
        })
    }
}

/// A witness signs a reconfiguration only if it opens the next epoch, a witness of the
/// current epoch signed it, it is a safe transition, and this witness's operator asked for
/// it. One for a later epoch waits (as a future nonce does).
fn check_reconfig(
    state: &WalletState,
    v: &VerifiedTx,
    mints: &dyn MintValidator,
) -> Result<(), TxReject> {
    let bad = |m: String| TxReject::BadReconfig(m);
    let r = v
        .body
        .reconfig
        .as_ref()
        .ok_or_else(|| bad("no witness set".into()))?;
    let current = state.epoch_set();
    let expected = current.epoch.saturating_add(1);
    if r.epoch != expected {
        return Err(TxReject::BadNonce {
            expected,
            got: r.epoch,
        });
    }
    if current
        .weight_of(&peer_id_from_pubkey(&v.tx.pubkey))
        .is_none()
    {
        return Err(bad("not signed by a witness of the current epoch".into()));
    }
    super::epoch::check_transition(current, r).map_err(|e| bad(e.to_string()))?;
    if !mints.approve_reconfig(&v.id) {
        return Err(TxReject::NotApproved);
    }
    Ok(())
}

fn sign_one(key: &SigningKey, body: &WitnessBody) -> Result<Witness, AttestError> {
    Attestation::sign_batch(key, std::slice::from_ref(body))?
        .pop()
        .ok_or(AttestError::NotRecorded)
}
