//! Witness attestations: `Attestation` from JSON (alone, as in a `TxGossip` or a
//! certificate), the Merkle path fold behind `covers()` (`root`, `verify_signature`),
//! `Finality::verify` and `add_verified`, and `certified_weight` (a peer's certificate).
//!
//! Input: the first byte picks the mode:
//! - 0: an attestation as JSON.
//! - 1: a batched attestation made here: a byte `n`, then `n` path steps of 33 bytes (a
//!   side byte and a sibling hash), then the body bytes; the fuzz key signs the root the
//!   path folds to, as an honest witness would.
//! - 2: a version-0 attestation made here: the fuzz key signs the body bytes.
//!
//! Invariants: a path folds to the same root `merkle::fold_path` gives; a path longer than
//! `MAX_PROOF_LEN` is refused; an attestation made here is accepted exactly when its body
//! names the fuzz key's witness, and then it alone makes its transaction final.
#![no_main]

use ed25519_dalek::Signer as _;
use libfuzzer_sys::fuzz_target;
use offgrid_fuzz::{key, peer, wallet_params};
use offgrid_ledger::{
    merkle::{self, Sibling, Side},
    signed::VerifyError,
    wallet::{attestation::root_message, certified_weight, MAX_PROOF_LEN},
    Attestation, Finality, WitnessBody,
};

fn made_here(rest: &[u8], batched: bool) -> Option<Attestation> {
    let k = key();
    let pubkey = k.verifying_key().to_bytes();
    if !batched {
        let sig = k.sign(rest).to_bytes();
        return Some(Attestation::from_parts(rest.to_vec(), None, sig, pubkey));
    }
    let (&n, mut rest) = rest.split_first()?;
    let mut path = Vec::new();
    for _ in 0..n {
        let (step, tail) = rest.split_at_checked(33)?;
        let side = if step[0] & 1 == 0 {
            Side::Left
        } else {
            Side::Right
        };
        let hash = step[1..].try_into().ok()?;
        path.push(Sibling { side, hash });
        rest = tail;
    }
    let root = merkle::fold_path(rest, &path);
    let sig = k.sign(&root_message(&root)).to_bytes();
    Some(Attestation::from_parts(
        rest.to_vec(),
        Some(path),
        sig,
        pubkey,
    ))
}

fuzz_target!(|data: &[u8]| {
    let Some((&m, rest)) = data.split_first() else {
        return;
    };
    let att = match m % 3 {
        0 => match serde_json::from_slice::<Attestation>(rest) {
            Ok(a) => a,
            Err(_) => return,
        },
        1 => match made_here(rest, true) {
            Some(a) => a,
            None => return,
        },
        _ => made_here(rest, false).expect("always made"),
    };
    // The wire form round-trips.
    let json = serde_json::to_vec(&att).expect("an attestation encodes");
    let back: Attestation = serde_json::from_slice(&json).expect("an encoded attestation decodes");
    assert!(back == att, "attestation changed in a JSON round trip");

    // What the signature covers.
    match &att.proof {
        Some(p) if p.len() > MAX_PROOF_LEN => {
            assert_eq!(att.root(), None);
            assert!(matches!(
                att.verify_signature(),
                Err(VerifyError::ProofTooLong)
            ));
        }
        Some(p) => assert_eq!(att.root(), Some(merkle::fold_path(&att.bytes, p))),
        None => assert_eq!(att.root(), None),
    }
    let sig_ok = att.verify_signature().is_ok();
    if m % 3 != 0 {
        let too_long = att.proof.as_ref().is_some_and(|p| p.len() > MAX_PROOF_LEN);
        assert_eq!(sig_ok, !too_long, "an honest signature does not verify");
    }

    let params = wallet_params();
    let mut finality = Finality::new(params.clone()).expect("valid params");
    let verdict = finality
        .verify(std::slice::from_ref(&att))
        .pop()
        .expect("one result");
    let body: Option<WitnessBody> = serde_json::from_slice(&att.bytes).ok();
    let listed = body.as_ref().is_some_and(|b| b.witness == peer());
    assert_eq!(
        verdict.is_ok(),
        sig_ok && listed,
        "finality verdict: {verdict:?}"
    );
    if let Ok(v) = verdict {
        let body = body.expect("a verified attestation has a body");
        assert_eq!(v.tx_id(), body.tx_id);
        // Re-checking it is served by the root cache and gives the same verdict.
        assert!(finality
            .verify(std::slice::from_ref(&att))
            .pop()
            .expect("one")
            .is_ok());
        assert_eq!(
            finality.add_verified(v).ok(),
            Some(true),
            "one witness is the quorum"
        );
        assert!(finality.is_final(&body.tx_id));
        assert_eq!(
            certified_weight(&params, &body.tx_id, &[att.clone(), att]),
            1000
        );
    }
});
