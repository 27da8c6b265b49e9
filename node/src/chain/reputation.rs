//! Reputation gossip on the ledger service: this node's broker observations go out as a
//! report signed by its node key (topic `offgrid/reputation/2`); reports from others are
//! merged into the CRDT only under their signer's name, so nobody can inflate or erase
//! another observer's counts, and repeated merges never double count.

use libp2p::{gossipsub::MessageAcceptance, PeerId};
use offgrid_behaviours::ledger_sync::REPUTATION_TOPIC;
use offgrid_ledger::{ReputationCrdt, ReputationReport, SignedReport};
use tracing::{debug, warn};

use super::service::{Round, Service};
use offgrid_net::LedgerOut;

use crate::{
    now_ms,
    store::{Op, Table},
};

/// Meta key of the merged reputation CRDT.
pub const REPUTATION_KEY: &str = "reputation_crdt";

impl Service {
    /// A reputation report: merged only if signed by its observer's key (gossip messages
    /// carry no authenticated source).
    pub(super) fn on_reputation(&mut self, data: &[u8], from: PeerId) -> MessageAcceptance {
        let Ok(mut r) = self.reputation.lock() else {
            return MessageAcceptance::Ignore;
        };
        match merge_report(data, &self.me, &mut r) {
            Ok(_) => MessageAcceptance::Accept,
            Err(e) => {
                debug!(peer = %from, error = %e, "reputation report rejected");
                self.rejected.reputation += 1;
                MessageAcceptance::Reject
            }
        }
    }

    pub(super) fn publish_reputation(&mut self, round: &mut Round) {
        let records: Vec<(String, crate::market::broker::Record)> =
            match self.store.scan(Table::Reputation) {
                Ok(r) => r,
                Err(e) => {
                    warn!(error = %e, "cannot read reputation");
                    return;
                }
            };
        let mut mine = ReputationCrdt::new();
        for (subject, rec) in records {
            mine.counters
                .insert((self.me.clone(), subject), (rec.hits, rec.misses));
        }
        if mine.counters.is_empty() {
            return;
        }
        if let Ok(mut r) = self.reputation.lock() {
            r.merge(&mine);
        }
        self.persist_reputation();
        let signed = ReputationReport::sign(&self.key, &mine, now_ms())
            .map_err(|e| e.to_string())
            .and_then(|r| serde_json::to_vec(&r).map_err(|e| e.to_string()));
        match signed {
            Ok(data) => round.outs.push(LedgerOut::Publish {
                topic: REPUTATION_TOPIC,
                data,
            }),
            Err(e) => warn!(error = %e, "cannot encode reputation"),
        }
    }

    pub(super) fn persist_reputation(&self) {
        let snapshot = self.reputation.lock().map(|r| r.clone());
        if let Ok(r) = snapshot {
            // Soft state, re-merged from gossip anyway: queued, not waited for.
            let queued = Op::put(Table::Meta, REPUTATION_KEY, &r)
                .and_then(|op| self.store.commit_later(vec![op]));
            if let Err(e) = queued {
                warn!(error = %e, "cannot persist reputation");
            }
        }
    }
}

/// Checks a gossiped reputation report and merges the signer's own observations into
/// `into`. Returns the observer, or `None` for this node's own report (nothing to merge).
fn merge_report(
    data: &[u8],
    me: &str,
    into: &mut ReputationCrdt,
) -> Result<Option<String>, String> {
    let signed: SignedReport = serde_json::from_slice(data).map_err(|e| e.to_string())?;
    let (observer, theirs) = ReputationReport::open(&signed).map_err(|e| e.to_string())?;
    if observer == me {
        return Ok(None);
    }
    // Only the signer's own observations count: nobody can inflate another's.
    into.merge_from(&observer, &theirs);
    Ok(Some(observer))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use ed25519_dalek::SigningKey;
    use offgrid_ledger::{peer_id_from_pubkey, Signed};

    use super::*;

    fn observer(seed: u8) -> (SigningKey, String) {
        let key = SigningKey::from_bytes(&[seed; 32]);
        let id = peer_id_from_pubkey(key.verifying_key().as_bytes());
        (key, id)
    }

    #[test]
    fn a_signed_reputation_report_is_merged_under_its_signer() {
        let (key, them) = observer(1);
        let mut theirs = ReputationCrdt::new();
        theirs.record(&them, "host", true);
        let data = serde_json::to_vec(&ReputationReport::sign(&key, &theirs, 5).unwrap()).unwrap();
        let mut mine = ReputationCrdt::new();
        assert_eq!(merge_report(&data, "me", &mut mine), Ok(Some(them.clone())));
        assert_eq!(mine.totals("host"), (1, 0));
        // Our own report coming back changes nothing.
        let mut other = ReputationCrdt::new();
        assert_eq!(merge_report(&data, &them, &mut other), Ok(None));
        assert!(other.counters.is_empty());
    }

    #[test]
    fn a_reputation_report_with_a_bad_signature_is_rejected_and_not_merged() {
        let (key, them) = observer(2);
        let mut theirs = ReputationCrdt::new();
        theirs.record(&them, "host", false);
        let mut signed = ReputationReport::sign(&key, &theirs, 5).unwrap();
        signed.sig[7] ^= 1;
        let mut mine = ReputationCrdt::new();
        let data = serde_json::to_vec(&signed).unwrap();
        assert!(merge_report(&data, "me", &mut mine).is_err());
        // A report re-signed by someone else under the victim's name.
        let (thief, _) = observer(3);
        let body: ReputationReport = serde_json::from_slice(&signed.bytes).unwrap();
        let stolen = serde_json::to_vec(&Signed::sign(&thief, &body).unwrap()).unwrap();
        assert!(merge_report(&stolen, "me", &mut mine).is_err());
        // The old unsigned form (a bare list of entries) is no longer accepted.
        let bare = serde_json::to_vec(&theirs).unwrap();
        assert!(merge_report(&bare, "me", &mut mine).is_err());
        assert!(mine.counters.is_empty());
    }
}
