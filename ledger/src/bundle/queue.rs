//! The bounded bundle queue policy: what a node accepts to carry, and what it drops.
//!
//! Pure bookkeeping over bundle metadata, so every rule is unit-tested without a disk; the node
//! keeps the bundles themselves in its store and replays them into a [`Queue`] on start.
//!
//! - **Dedup.** A bundle id already held, or delivered and remembered as a tombstone until its
//!   expiry, is a [`Accept::Duplicate`]: a replay is never stored twice nor re-delivered.
//! - **Quotas.** At most `per_source_count` bundles and `per_source_bytes` bytes per source,
//!   and `total_count` / `total_bytes` in all. A bundle over any of them is refused with
//!   [`QueueFull`] naming the limit; nothing already held is evicted for it, so one source
//!   flooding cannot push out another's bundles.
//! - **Expiry.** [`Queue::expire`] drops bundles and tombstones past their expiry.
//! - **Custody.** When the next custodian (or the destination) acknowledges a bundle,
//!   [`Queue::release`] drops it here and keeps a tombstone.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use super::{recon::Id, Destination, Kind};

/// Limits of one node's queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Most bundles held in all.
    pub total_count: usize,
    /// Most bytes held in all.
    pub total_bytes: usize,
    /// Most bundles held for one source.
    pub per_source_count: usize,
    /// Most bytes held for one source.
    pub per_source_bytes: usize,
    /// Most tombstones remembered (the oldest-expiring go first beyond it).
    pub tombstones: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            total_count: 4096,
            total_bytes: 8 << 20,
            per_source_count: 256,
            per_source_bytes: 512 << 10,
            tombstones: 16384,
        }
    }
}

/// What the queue knows of one held bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Peer id text of the source (the signer).
    pub source: String,
    /// Where it goes.
    pub destination: Destination,
    /// What it carries.
    pub kind: Kind,
    /// Size of the stored bundle, bytes.
    pub bytes: usize,
    /// Unix seconds when this node took custody.
    pub since: u64,
    /// Absolute expiry, Unix seconds.
    pub expires: u64,
    /// Hops taken so far.
    pub hops: u8,
    /// The source's hop limit.
    pub hop_limit: u8,
    /// Higher goes first.
    pub priority: u8,
}

/// A limit a refused bundle would exceed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QueueFull {
    /// The source already holds `per_source_count` bundles.
    #[error("source holds too many bundles")]
    SourceCount,
    /// The source's bundles would exceed `per_source_bytes`.
    #[error("source holds too many bytes")]
    SourceBytes,
    /// The queue holds `total_count` bundles.
    #[error("queue holds too many bundles")]
    TotalCount,
    /// The queue would exceed `total_bytes`.
    #[error("queue holds too many bytes")]
    TotalBytes,
}

/// The outcome of offering a bundle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accept {
    /// Newly held: the caller persists it and acknowledges custody.
    Accepted,
    /// Held or delivered already: acknowledge again, store nothing.
    Duplicate,
}

/// The queue's bookkeeping.
#[derive(Debug, Default)]
pub struct Queue {
    limits: Limits,
    held: BTreeMap<Id, Entry>,
    per_source: HashMap<String, (usize, usize)>,
    total_bytes: usize,
    tombstones: BTreeMap<Id, u64>,
}

impl Queue {
    /// An empty queue with these limits.
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            ..Self::default()
        }
    }

    /// Offers a checked bundle's metadata.
    pub fn offer(&mut self, id: Id, entry: Entry) -> Result<Accept, QueueFull> {
        if self.held.contains_key(&id) || self.tombstones.contains_key(&id) {
            return Ok(Accept::Duplicate);
        }
        let (n, b) = self
            .per_source
            .get(&entry.source)
            .copied()
            .unwrap_or((0, 0));
        if n + 1 > self.limits.per_source_count {
            return Err(QueueFull::SourceCount);
        }
        if b + entry.bytes > self.limits.per_source_bytes {
            return Err(QueueFull::SourceBytes);
        }
        if self.held.len() + 1 > self.limits.total_count {
            return Err(QueueFull::TotalCount);
        }
        if self.total_bytes + entry.bytes > self.limits.total_bytes {
            return Err(QueueFull::TotalBytes);
        }
        self.per_source
            .insert(entry.source.clone(), (n + 1, b + entry.bytes));
        self.total_bytes += entry.bytes;
        self.held.insert(id, entry);
        Ok(Accept::Accepted)
    }

    fn remove(&mut self, id: &Id) -> Option<Entry> {
        let e = self.held.remove(id)?;
        if let Some((n, b)) = self.per_source.get_mut(&e.source) {
            *n -= 1;
            *b -= e.bytes;
            if *n == 0 {
                self.per_source.remove(&e.source);
            }
        }
        self.total_bytes -= e.bytes;
        Some(e)
    }

    /// Drops a bundle whose custody passed on (or that was delivered), remembering its id
    /// until its expiry so a replay is a duplicate.
    pub fn release(&mut self, id: &Id) -> Option<Entry> {
        let e = self.remove(id)?;
        self.tombstones.insert(*id, e.expires);
        while self.tombstones.len() > self.limits.tombstones {
            // Forget the tombstone that expires first: its bundle is the stalest.
            let Some((&old, _)) = self.tombstones.iter().min_by_key(|(_, exp)| **exp) else {
                break;
            };
            self.tombstones.remove(&old);
        }
        Some(e)
    }

    /// Drops everything past its expiry at `now`; returns the ids of the bundles dropped.
    pub fn expire(&mut self, now: u64) -> Vec<Id> {
        let gone: Vec<Id> = self
            .held
            .iter()
            .filter(|(_, e)| now >= e.expires)
            .map(|(id, _)| *id)
            .collect();
        for id in &gone {
            self.remove(id);
        }
        self.tombstones.retain(|_, exp| *exp > now);
        gone
    }

    /// Held ids, sorted: the set the node reconciles.
    pub fn ids(&self) -> Vec<Id> {
        self.held.keys().copied().collect()
    }

    /// A held bundle's entry.
    pub fn get(&self, id: &Id) -> Option<&Entry> {
        self.held.get(id)
    }

    /// Held bundles in delivery order: highest priority first, then oldest custody.
    pub fn by_priority(&self) -> Vec<(Id, &Entry)> {
        let mut v: Vec<(Id, &Entry)> = self.held.iter().map(|(id, e)| (*id, e)).collect();
        v.sort_by(|a, b| {
            b.1.priority
                .cmp(&a.1.priority)
                .then(a.1.since.cmp(&b.1.since))
        });
        v
    }

    /// Bundles and bytes held.
    pub fn usage(&self) -> (usize, usize) {
        (self.held.len(), self.total_bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(source: &str, bytes: usize, expires: u64, priority: u8) -> Entry {
        Entry {
            source: source.into(),
            destination: Destination::Ledger,
            kind: Kind::Transaction,
            bytes,
            since: 10,
            expires,
            hops: 0,
            hop_limit: 4,
            priority,
        }
    }

    fn limits() -> Limits {
        Limits {
            total_count: 10,
            total_bytes: 1000,
            per_source_count: 3,
            per_source_bytes: 300,
            tombstones: 4,
        }
    }

    #[test]
    fn replays_are_duplicates_even_after_delivery() {
        let mut q = Queue::new(limits());
        assert_eq!(
            q.offer([1; 32], entry("a", 10, 100, 1)),
            Ok(Accept::Accepted)
        );
        assert_eq!(
            q.offer([1; 32], entry("a", 10, 100, 1)),
            Ok(Accept::Duplicate)
        );
        assert!(q.release(&[1; 32]).is_some());
        assert_eq!(q.usage(), (0, 0));
        assert_eq!(
            q.offer([1; 32], entry("a", 10, 100, 1)),
            Ok(Accept::Duplicate)
        );
        q.expire(100);
        assert_eq!(
            q.offer([1; 32], entry("a", 10, 200, 1)),
            Ok(Accept::Accepted)
        );
    }

    #[test]
    fn a_flooding_source_is_refused_without_evicting_others() {
        let mut q = Queue::new(limits());
        assert_eq!(
            q.offer([9; 32], entry("honest", 10, 100, 1)),
            Ok(Accept::Accepted)
        );
        for i in 0..3u8 {
            assert_eq!(
                q.offer([i; 32], entry("flood", 10, 100, 1)),
                Ok(Accept::Accepted)
            );
        }
        assert_eq!(
            q.offer([50; 32], entry("flood", 10, 100, 1)),
            Err(QueueFull::SourceCount)
        );
        assert_eq!(
            q.offer([51; 32], entry("fat", 301, 100, 1)),
            Err(QueueFull::SourceBytes)
        );
        assert!(q.get(&[9; 32]).is_some(), "the honest bundle stays");
        for i in 0..6u8 {
            let _ = q.offer([100 + i; 32], entry(&format!("s{i}"), 10, 100, 1));
        }
        assert_eq!(
            q.offer([200; 32], entry("late", 10, 100, 1)),
            Err(QueueFull::TotalCount)
        );
        let mut q = Queue::new(limits());
        for i in 0..4u8 {
            let _ = q.offer([i; 32], entry(&format!("s{i}"), 250, 100, 1));
        }
        assert_eq!(
            q.offer([99; 32], entry("x", 250, 100, 1)),
            Err(QueueFull::TotalBytes)
        );
    }

    #[test]
    fn expiry_drops_and_priority_orders() {
        let mut q = Queue::new(limits());
        q.offer([1; 32], entry("a", 10, 50, 1)).unwrap();
        q.offer([2; 32], entry("b", 10, 100, 7)).unwrap();
        q.offer([3; 32], entry("c", 10, 100, 3)).unwrap();
        let order: Vec<Id> = q.by_priority().into_iter().map(|(id, _)| id).collect();
        assert_eq!(order, vec![[2; 32], [3; 32], [1; 32]]);
        assert_eq!(q.expire(50), vec![[1; 32]]);
        assert_eq!(q.ids(), vec![[2; 32], [3; 32]]);
    }

    #[test]
    fn tombstones_are_bounded() {
        let mut q = Queue::new(limits());
        for i in 0..8u8 {
            q.offer([i; 32], entry(&format!("s{i}"), 1, 100 + u64::from(i), 1))
                .unwrap();
            q.release(&[i; 32]);
        }
        assert_eq!(q.tombstones.len(), 4);
        // The latest-expiring are the ones kept.
        assert!(q.tombstones.contains_key(&[7; 32]));
    }
}
