//! Reputation reports: `SignedReport` from JSON (the reputation gossip topic) and
//! `ReputationReport::open`, then the merge a node does with what it opened.
//!
//! Input: the first byte picks the mode (even: a report as JSON; odd: a
//! `ReputationReport` signed here with the fuzz key); the rest is the record.
//! Invariants: an opened report speaks only for its signer; merging it twice changes
//! nothing the first merge did not (the CRDT is idempotent); every score is in [0, 1].
#![no_main]

use libfuzzer_sys::fuzz_target;
use offgrid_fuzz::{assert_envelope_round_trip, mode, peer, sign_bytes, Mode};
use offgrid_ledger::{reputation::ReputationReport, ReputationCrdt, SignedReport};

fuzz_target!(|data: &[u8]| {
    let Some((m, rest)) = mode(data) else { return };
    let report: SignedReport = match m {
        Mode::Wire => match serde_json::from_slice(rest) {
            Ok(r) => r,
            Err(_) => return,
        },
        Mode::Signed => sign_bytes(rest),
    };
    assert_envelope_round_trip(&report);
    let Ok((observer, crdt)) = ReputationReport::open(&report) else {
        return;
    };
    assert_eq!(observer, report.signer_peer_id());
    if m == Mode::Signed {
        assert_eq!(observer, peer());
    }
    assert!(crdt.entries().all(|e| e.observer == observer));
    let mut local = ReputationCrdt::new().with_local("local");
    local.merge_from(&observer, &crdt);
    let once: Vec<_> = local.entries().collect();
    local.merge_from(&observer, &crdt);
    let twice: Vec<_> = local.entries().collect();
    assert_eq!(once, twice, "merging a report twice is not idempotent");
    for e in crdt.entries() {
        let score = local.score(&e.subject);
        assert!(
            score.is_finite() && (0.0..=1.0).contains(&score),
            "score {score}"
        );
    }
});
