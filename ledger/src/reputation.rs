//! Reputation as a state-based CRDT.
//!
//! Every observer keeps grow-only counters of hits (jobs or transfers that went well) and
//! misses per subject. A replica maps `(observer, subject)` to `(hits, misses)`; merging takes
//! the per-entry, per-counter maximum. Counters only grow and only their observer increments
//! them, so the maximum is the latest value: merging is commutative, associative and
//! idempotent, and repeated gossip never double counts.
//!
//! Only the observer may raise its own counters: when merging a replica received from a peer,
//! use [`ReputationCrdt::merge_from`] with that peer's id so a peer cannot inflate what others
//! observed.
//!
//! Peer ids cost nothing, so a report counts only as much as its observer's standing *with
//! this node* ([`ReputationCrdt::score`]): what this node saw of the observer itself, which no
//! one else can fake. Each observer casts one bounded vote per subject, so no single report
//! (say `misses = u64::MAX`) can move a score far, and the replica holds at most
//! [`MAX_ENTRIES`] entries.

use std::collections::BTreeMap;

use ed25519_dalek::SigningKey;
use serde::{Deserialize, Serialize};

use crate::{
    peer_id::peer_id_from_pubkey,
    signed::{SignError, Signed, VerifyError},
};

/// Most entries in one [`ReputationReport`].
pub const MAX_REPORT_ENTRIES: usize = 4096;

/// Most entries a replica holds; entries beyond are dropped (those held keep updating).
pub const MAX_ENTRIES: usize = 65_536;

/// Counters above this count as this much in a vote.
pub const VOTE_CAP: u64 = 1_000;

/// Hits an observer needs with this node to count half as much as this node's own view.
pub const STANDING_HALF: u64 = 10;

/// What a node gossips: its own observations, signed with its node key so that a receiver
/// knows who observed them without trusting the gossip envelope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReputationReport {
    /// Peer id of the observer, who signs the report.
    pub observer: String,
    /// When the report was made, Unix milliseconds (informational).
    pub issued_ms: u64,
    /// The observer's own entries (each with `observer` equal to the report's).
    pub entries: Vec<Entry>,
}

/// A signed [`ReputationReport`] as it travels on the reputation topic.
pub type SignedReport = Signed<ReputationReport>;

impl crate::signed::Domain for ReputationReport {
    /// The type tag of a reputation report.
    const TAG: &'static [u8] = b"offgrid/reputation/v1";
}

/// Why a received reputation report is refused.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// The signature or the encoding is invalid.
    #[error(transparent)]
    Verify(#[from] VerifyError),
    /// `observer` is not the signer's peer id.
    #[error("observer does not match the signing key")]
    ObserverMismatch,
    /// An entry speaks for another observer.
    #[error("entry of another observer")]
    ForeignEntry,
    /// More than [`MAX_REPORT_ENTRIES`] entries.
    #[error("too many entries")]
    TooLarge,
}

impl ReputationReport {
    /// Signs the entries `replica` holds for the observer `key`, at most
    /// [`MAX_REPORT_ENTRIES`] of them.
    pub fn sign(
        key: &SigningKey,
        replica: &ReputationCrdt,
        issued_ms: u64,
    ) -> Result<SignedReport, SignError> {
        let observer = peer_id_from_pubkey(key.verifying_key().as_bytes());
        let entries = replica
            .entries()
            .filter(|e| e.observer == observer)
            .take(MAX_REPORT_ENTRIES)
            .collect();
        Signed::sign(
            key,
            &ReputationReport {
                observer,
                issued_ms,
                entries,
            },
        )
    }

    /// Checks a received report (signature over the shipped bytes, then its form) and
    /// returns the observer and its entries, ready for [`ReputationCrdt::merge_from`].
    pub fn open(signed: &SignedReport) -> Result<(String, ReputationCrdt), ReportError> {
        let report = signed.verify()?;
        if report.observer != signed.signer_peer_id() {
            return Err(ReportError::ObserverMismatch);
        }
        if report.entries.len() > MAX_REPORT_ENTRIES {
            return Err(ReportError::TooLarge);
        }
        if report.entries.iter().any(|e| e.observer != report.observer) {
            return Err(ReportError::ForeignEntry);
        }
        Ok((report.observer, ReputationCrdt::from(report.entries)))
    }
}

/// One replicated entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Peer id of the node that observed.
    pub observer: String,
    /// Peer id of the node observed.
    pub subject: String,
    /// Good outcomes.
    pub hits: u64,
    /// Bad outcomes.
    pub misses: u64,
}

/// Grow-only per-observer reputation counters. Serialises as a list of [`Entry`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "Vec<Entry>", into = "Vec<Entry>")]
pub struct ReputationCrdt {
    /// `(observer, subject)` → `(hits, misses)`.
    pub counters: BTreeMap<(String, String), (u64, u64)>,
    /// This node's peer id: whose observations count in full in [`ReputationCrdt::score`].
    /// Not replicated.
    #[serde(skip)]
    pub local: Option<String>,
}

impl From<Vec<Entry>> for ReputationCrdt {
    fn from(entries: Vec<Entry>) -> Self {
        let mut r = Self::default();
        for e in entries {
            r.merge_entry(e.observer, e.subject, e.hits, e.misses);
        }
        r
    }
}

impl From<ReputationCrdt> for Vec<Entry> {
    fn from(r: ReputationCrdt) -> Self {
        r.entries().collect()
    }
}

impl ReputationCrdt {
    /// An empty replica.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records one outcome `observer` saw for `subject` (a local observation).
    pub fn record(&mut self, observer: &str, subject: &str, hit: bool) {
        let c = self
            .counters
            .entry((observer.to_string(), subject.to_string()))
            .or_insert((0, 0));
        if hit {
            c.0 = c.0.saturating_add(1);
        } else {
            c.1 = c.1.saturating_add(1);
        }
    }

    /// The same replica, scoring as `me` (see [`ReputationCrdt::score`]).
    pub fn with_local(mut self, me: &str) -> Self {
        self.local = Some(me.to_owned());
        self
    }

    fn merge_entry(&mut self, observer: String, subject: String, hits: u64, misses: u64) {
        let key = (observer, subject);
        if !self.counters.contains_key(&key) && self.counters.len() >= MAX_ENTRIES {
            return;
        }
        let c = self.counters.entry(key).or_insert((0, 0));
        c.0 = c.0.max(hits);
        c.1 = c.1.max(misses);
    }

    /// Merges another replica: per entry, per counter maximum.
    pub fn merge(&mut self, other: &ReputationCrdt) {
        for ((o, s), (h, m)) in &other.counters {
            self.merge_entry(o.clone(), s.clone(), *h, *m);
        }
    }

    /// Merges only the entries `other` holds as `observer` (use the sending peer's id).
    pub fn merge_from(&mut self, observer: &str, other: &ReputationCrdt) {
        for ((o, s), (h, m)) in &other.counters {
            if o == observer {
                self.merge_entry(o.clone(), s.clone(), *h, *m);
            }
        }
    }

    /// All entries, sorted by `(observer, subject)`.
    pub fn entries(&self) -> impl Iterator<Item = Entry> + '_ {
        self.counters.iter().map(|((o, s), (h, m))| Entry {
            observer: o.clone(),
            subject: s.clone(),
            hits: *h,
            misses: *m,
        })
    }

    /// Hits and misses of `subject` summed over all observers.
    pub fn totals(&self, subject: &str) -> (u64, u64) {
        self.counters
            .iter()
            .filter(|((_, s), _)| s == subject)
            .fold((0u64, 0u64), |(h, m), (_, (eh, em))| {
                (h.saturating_add(*eh), m.saturating_add(*em))
            })
    }

    /// Score of `subject` in (0, 1). Each observer votes its Laplace estimate
    /// `(h + 1) / (h + m + 2)` of the subject, counters capped at [`VOTE_CAP`]; votes are
    /// averaged with a prior vote of 0.5, each weighted by its observer's standing: 1 for this
    /// node ([`ReputationCrdt::local`]), `hits / (hits + misses + STANDING_HALF)` for an
    /// observer from what this node saw of it, so an observer this node never dealt with (a
    /// fresh peer id) counts for nothing. Without a local id every observer weighs 1. An
    /// unknown subject scores 0.5.
    pub fn score(&self, subject: &str) -> f64 {
        let (mut sum, mut weight) = (0.5, 1.0);
        for ((o, s), (h, m)) in &self.counters {
            if s != subject {
                continue;
            }
            let w = self.standing(o);
            if w <= 0.0 {
                continue;
            }
            let (h, m) = (h.min(&VOTE_CAP), m.min(&VOTE_CAP));
            let vote = (*h as f64 + 1.0) / (*h as f64 + *m as f64 + 2.0);
            sum += w * vote;
            weight += w;
        }
        sum / weight
    }

    /// How much `observer`'s reports count, in [0, 1].
    fn standing(&self, observer: &str) -> f64 {
        let Some(me) = &self.local else {
            return 1.0;
        };
        if observer == me {
            return 1.0;
        }
        let (h, m) = self
            .counters
            .get(&(me.clone(), observer.to_owned()))
            .copied()
            .unwrap_or((0, 0));
        let (h, m) = (h.min(VOTE_CAP), m.min(VOTE_CAP));
        h as f64 / (h as f64 + m as f64 + STANDING_HALF as f64)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn scores_use_laplace_smoothing() {
        let mut r = ReputationCrdt::new();
        assert_eq!(r.score("x"), 0.5);
        for _ in 0..3 {
            r.record("a", "x", true);
        }
        r.record("b", "x", false);
        assert_eq!(r.totals("x"), (3, 1));
        // One vote per observer (a: 4/5, b: 1/3) beside the prior 0.5.
        assert!((r.score("x") - (0.5 + 0.8 + 1.0 / 3.0) / 3.0).abs() < 1e-12);
        r.record("a", "y", false);
        assert!((r.score("y") - (0.5 + 1.0 / 3.0) / 2.0).abs() < 1e-12);
    }

    #[test]
    fn a_sybil_report_cannot_zero_a_host_and_strangers_count_for_nothing() {
        let mut r = ReputationCrdt::new().with_local("me");
        for _ in 0..5 {
            r.record("me", "host", true);
        }
        let honest = r.score("host");
        // A peer id nobody has dealt with reports the host as failing u64::MAX times.
        let mut sybil = ReputationCrdt::new();
        sybil
            .counters
            .insert(("sybil".into(), "host".into()), (0, u64::MAX));
        r.merge_from("sybil", &sybil);
        assert_eq!(
            r.score("host"),
            honest,
            "a stranger's report counts for nothing"
        );
        // An observer in good standing moves it, boundedly.
        for _ in 0..30 {
            r.record("me", "friend", true);
        }
        let mut friend = ReputationCrdt::new();
        friend
            .counters
            .insert(("friend".into(), "host".into()), (0, u64::MAX));
        r.merge_from("friend", &friend);
        let moved = r.score("host");
        assert!(moved < honest && moved > 0.3, "{honest} → {moved}");
        // Without a local id each observer still casts one capped vote.
        let mut open = ReputationCrdt::new();
        open.counters
            .insert(("s".into(), "host".into()), (0, u64::MAX));
        assert!(open.score("host") > 0.2);
    }

    #[test]
    fn the_replica_is_bounded() {
        let mut r = ReputationCrdt::new();
        let mut flood = ReputationCrdt::new();
        for i in 0..(MAX_ENTRIES + 100) {
            flood.counters.insert((format!("o{i}"), "x".into()), (1, 0));
        }
        r.merge(&flood);
        assert_eq!(r.counters.len(), MAX_ENTRIES);
    }

    #[test]
    fn repeated_merges_do_not_double_count() {
        let mut a = ReputationCrdt::new();
        a.record("a", "x", true);
        a.record("a", "x", true);
        let mut b = ReputationCrdt::new();
        b.merge(&a);
        b.merge(&a);
        b.record("b", "x", false);
        a.merge(&b);
        a.merge(&b);
        assert_eq!(a.totals("x"), (2, 1));
        assert_eq!(a, b);
    }

    #[test]
    fn merge_from_takes_only_the_senders_own_entries() {
        let mut honest = ReputationCrdt::new();
        let mut liar = ReputationCrdt::new();
        liar.record("liar", "x", true);
        liar.counters
            .insert(("victim".into(), "x".into()), (0, 1_000));
        honest.merge_from("liar", &liar);
        assert_eq!(honest.totals("x"), (1, 0));
    }

    #[test]
    fn wire_form_is_a_list_of_entries() {
        let mut r = ReputationCrdt::new();
        r.record("a", "x", true);
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(
            json,
            serde_json::json!([{"observer": "a", "subject": "x", "hits": 1, "misses": 0}])
        );
        let back: ReputationCrdt = serde_json::from_value(json).unwrap();
        assert_eq!(back, r);
    }

    #[test]
    fn signed_report_carries_only_the_signers_entries() {
        let key = SigningKey::from_bytes(&[3; 32]);
        let me = peer_id_from_pubkey(key.verifying_key().as_bytes());
        let mut r = ReputationCrdt::new();
        r.record(&me, "x", true);
        r.record(&me, "y", false);
        r.record("someone-else", "x", false);
        let signed = ReputationReport::sign(&key, &r, 7).unwrap();
        let wire = serde_json::to_vec(&signed).unwrap();
        let back: SignedReport = serde_json::from_slice(&wire).unwrap();
        let (observer, theirs) = ReputationReport::open(&back).unwrap();
        assert_eq!(observer, me);
        assert_eq!(theirs.totals("x"), (1, 0));
        assert_eq!(theirs.totals("y"), (0, 1));
        assert_eq!(theirs.counters.len(), 2);
    }

    #[test]
    fn forged_or_foreign_reports_are_refused() {
        let key = SigningKey::from_bytes(&[4; 32]);
        let me = peer_id_from_pubkey(key.verifying_key().as_bytes());
        let mut r = ReputationCrdt::new();
        r.record(&me, "x", true);
        let signed = ReputationReport::sign(&key, &r, 1).unwrap();
        // A flipped byte breaks the signature.
        let mut bad = signed.clone();
        let last = bad.bytes.len() - 3;
        bad.bytes[last] ^= 1;
        assert!(matches!(
            ReputationReport::open(&bad),
            Err(ReportError::Verify(VerifyError::BadSignature))
        ));
        // Another key re-signs the victim's report: the observer is not the signer.
        let thief = SigningKey::from_bytes(&[5; 32]);
        let body: ReputationReport = signed.verify().unwrap();
        let stolen = Signed::sign(&thief, &body).unwrap();
        assert!(matches!(
            ReputationReport::open(&stolen),
            Err(ReportError::ObserverMismatch)
        ));
        // A signer that speaks for another observer.
        let liar = peer_id_from_pubkey(thief.verifying_key().as_bytes());
        let mut foreign = body.clone();
        foreign.observer = liar;
        let foreign = Signed::sign(&thief, &foreign).unwrap();
        assert!(matches!(
            ReputationReport::open(&foreign),
            Err(ReportError::ForeignEntry)
        ));
    }

    fn replica() -> impl Strategy<Value = ReputationCrdt> {
        prop::collection::vec((0u8..3, 0u8..3, 0u64..5, 0u64..5), 0..8).prop_map(|es| {
            let mut r = ReputationCrdt::new();
            for (o, s, h, m) in es {
                r.counters
                    .insert((format!("o{o}"), format!("s{s}")), (h, m));
            }
            r
        })
    }

    fn merged(a: &ReputationCrdt, b: &ReputationCrdt) -> ReputationCrdt {
        let mut x = a.clone();
        x.merge(b);
        x
    }

    proptest! {
        #[test]
        fn merge_is_a_join(a in replica(), b in replica(), c in replica()) {
            prop_assert_eq!(merged(&a, &b), merged(&b, &a));
            prop_assert_eq!(merged(&merged(&a, &b), &c), merged(&a, &merged(&b, &c)));
            prop_assert_eq!(merged(&a, &a), a.clone());
            // Merging again changes nothing, and scores stay in (0, 1).
            let ab = merged(&a, &b);
            prop_assert_eq!(merged(&ab, &b), ab.clone());
            for s in ["s0", "s1", "s2"] {
                let score = ab.score(s);
                prop_assert!(score > 0.0 && score < 1.0);
            }
        }
    }
}
