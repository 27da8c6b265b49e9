//! Failover: spot items whose progress stalled and ask for them to be requeued.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{Policies, QuorumItem, QuorumKind};

/// A request to reassign an item to other nodes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Requeue {
    /// The item's kind.
    pub kind: QuorumKind,
    /// The item's id.
    pub id: String,
    /// Which retry this is, from 1.
    pub attempt: u32,
}

/// Float tolerance on progress comparisons.
const PROGRESS_EPSILON: f64 = 1e-9;

#[derive(Debug, Clone, Copy, Default)]
struct Retry {
    attempts: u32,
    last_ms: u64,
}

/// Watches items for stalls.
///
/// An item that has not reached its quorum and whose progress rose by less than
/// `min_progress_delta` over the last `stall_age_s` seconds is *stalled* (an item younger than
/// `stall_age_s` never is). A stalled item yields a [`Requeue`] unless its last requeue was
/// less than `cooldown_s` ago or it was already requeued `max_retries` times.
#[derive(Debug, Clone)]
pub struct Monitor {
    /// Least progress rise over the window that counts as moving.
    pub min_progress_delta: f64,
    /// Window length in seconds.
    pub stall_age_s: u64,
    /// Least time between two requeues of one item, seconds.
    pub cooldown_s: u64,
    /// Most requeues per item.
    pub max_retries: u32,
    retries: BTreeMap<(QuorumKind, String), Retry>,
}

impl Default for Monitor {
    fn default() -> Self {
        Self {
            min_progress_delta: 0.05,
            stall_age_s: 90,
            cooldown_s: 60,
            max_retries: 3,
            retries: BTreeMap::new(),
        }
    }
}

impl Monitor {
    /// Sets the least progress rise that counts as moving.
    pub fn with_min_progress_delta(mut self, d: f64) -> Self {
        self.min_progress_delta = d;
        self
    }

    /// Sets the stall window in seconds.
    pub fn with_stall_age_s(mut self, s: u64) -> Self {
        self.stall_age_s = s;
        self
    }

    /// Sets the cooldown between requeues in seconds.
    pub fn with_cooldown_s(mut self, s: u64) -> Self {
        self.cooldown_s = s;
        self
    }

    /// Sets the most requeues per item.
    pub fn with_max_retries(mut self, n: u32) -> Self {
        self.max_retries = n;
        self
    }

    /// Whether `item` is stalled at `now_ms` (see [`Monitor`]).
    pub fn is_stalled(&self, item: &QuorumItem, policies: &Policies, now_ms: u64) -> bool {
        if item.reached(policies.get(item.kind), now_ms) {
            return false;
        }
        let window_ms = self.stall_age_s.saturating_mul(1000);
        let Some(start) = now_ms.checked_sub(window_ms) else {
            return false;
        };
        if item.created_ms > start {
            return false;
        }
        let rise = item.latest_progress() - item.progress_at(start);
        // The tolerance keeps a rise of exactly the delta (0.30 − 0.25) from reading as less.
        rise + PROGRESS_EPSILON < self.min_progress_delta
    }

    /// Requeues due at `now_ms`, in the order of `items`. Each returned requeue is counted
    /// against its item's retries and starts its cooldown.
    pub fn check(
        &mut self,
        items: &[QuorumItem],
        policies: &Policies,
        now_ms: u64,
    ) -> Vec<Requeue> {
        let cooldown_ms = self.cooldown_s.saturating_mul(1000);
        let mut out = Vec::new();
        for item in items {
            if !self.is_stalled(item, policies, now_ms) {
                continue;
            }
            let retry = self
                .retries
                .entry((item.kind, item.id.clone()))
                .or_default();
            if retry.attempts >= self.max_retries {
                continue;
            }
            if retry.attempts > 0 && now_ms.saturating_sub(retry.last_ms) < cooldown_ms {
                continue;
            }
            retry.attempts += 1;
            retry.last_ms = now_ms;
            out.push(Requeue {
                kind: item.kind,
                id: item.id.clone(),
                attempt: retry.attempts,
            });
        }
        out
    }

    /// Requeues already issued for an item.
    pub fn attempts(&self, kind: QuorumKind, id: &str) -> u32 {
        self.retries
            .get(&(kind, id.to_string()))
            .map_or(0, |r| r.attempts)
    }

    /// Forgets an item (finished or abandoned).
    pub fn forget(&mut self, kind: QuorumKind, id: &str) {
        self.retries.remove(&(kind, id.to_string()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1000;

    fn job(progress: &[(u64, f64)]) -> QuorumItem {
        let mut item = QuorumItem::new(QuorumKind::Job, "job-1", 1.0, 0);
        for (at_s, v) in progress {
            item.record_progress(at_s * S, *v);
        }
        item
    }

    #[test]
    fn a_stalled_job_yields_a_reassignment() {
        let mut m = Monitor::default();
        let p = Policies::default();
        // Progress 0.30 at 10 s and only 0.33 at 100 s: +0.03 over the last 90 s.
        let items = vec![job(&[(10, 0.30), (100, 0.33)])];
        assert_eq!(
            m.check(&items, &p, 100 * S),
            vec![Requeue {
                kind: QuorumKind::Job,
                id: "job-1".into(),
                attempt: 1
            }]
        );
        assert_eq!(m.attempts(QuorumKind::Job, "job-1"), 1);
    }

    #[test]
    fn moving_young_or_done_items_are_left_alone() {
        let mut m = Monitor::default();
        let p = Policies::default();
        // Rose by exactly 0.05 over the window: moving.
        let moving = job(&[(10, 0.25), (100, 0.30)]);
        // Created 50 s ago: younger than the window.
        let mut young = QuorumItem::new(QuorumKind::Upload, "u", 1.0, 50 * S);
        young.record_progress(60 * S, 0.0);
        // No progress at all, but the quorum is reached.
        let mut done = QuorumItem::new(QuorumKind::Token, "t", 1.0, 0);
        done.ack("n", 1.0, 100 * S);
        assert!(m.check(&[moving, young, done], &p, 100 * S).is_empty());
        // Before the first window has even elapsed nothing can be stalled.
        assert!(m.check(&[job(&[])], &p, 89 * S).is_empty());
        // An item with no progress ever, once old enough, is stalled.
        assert_eq!(m.check(&[job(&[])], &p, 90 * S).len(), 1);
    }

    #[test]
    fn cooldown_and_max_retries() {
        let mut m = Monitor::default();
        let p = Policies::default();
        let items = vec![job(&[(0, 0.1)])];
        assert_eq!(m.check(&items, &p, 100 * S)[0].attempt, 1);
        // 59.999 s later: still cooling down.
        assert!(m.check(&items, &p, 160 * S - 1).is_empty());
        // Exactly 60 s later: the second attempt.
        assert_eq!(m.check(&items, &p, 160 * S)[0].attempt, 2);
        assert_eq!(m.check(&items, &p, 220 * S)[0].attempt, 3);
        // Retries exhausted.
        assert!(m.check(&items, &p, 280 * S).is_empty());
        assert!(m.check(&items, &p, 10_000 * S).is_empty());
        assert_eq!(m.attempts(QuorumKind::Job, "job-1"), 3);
        m.forget(QuorumKind::Job, "job-1");
        assert_eq!(m.check(&items, &p, 10_000 * S)[0].attempt, 1);
        // Limits are configurable.
        let mut once = Monitor::default().with_max_retries(1).with_cooldown_s(0);
        assert_eq!(once.check(&items, &p, 100 * S).len(), 1);
        assert!(once.check(&items, &p, 101 * S).is_empty());
    }
}
