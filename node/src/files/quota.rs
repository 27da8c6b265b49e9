//! Per-peer accounting of the shards a host keeps, so that one peer (whose id costs nothing)
//! cannot fill the host's disk.
//!
//! Each shard is charged to the first peer that stored it, at its cost on disk
//! ([`disk_cost`]: whole 4 KiB blocks plus 512 bytes, not payload, so tiny shards are not
//! nearly free), against that
//! peer's byte and shard quotas. A store first takes a [`Ticket`]: a shard the host already
//! holds is free (an exact duplicate never counts twice, and a peer over its quota may still
//! re-store what it placed), a new one reserves its cost, so concurrent stores from one peer
//! cannot pass the quota together. The store then ends the ticket: kept when the shard was
//! written, given back otherwise.
//!
//! The state is one entry per peer that has shards here (or a store in progress), at most
//! `storage.max_hosted_peers`; an entry goes when its usage drops to zero. Which peer stored
//! which shard is persisted in [`Table::HostedShards`] before the store is acknowledged, and
//! [`PeerQuotas::load`] recomputes the usage from it at start, so a restart does not reset a
//! peer's quota. Shards from before this index are charged to no peer (they still count
//! against the host's total quota).

use std::{
    collections::HashMap,
    sync::{Mutex, MutexGuard},
};

use libp2p::PeerId;
use offgrid_behaviours::shards::LimitCode;
use serde::{Deserialize, Serialize};

use crate::{
    config::StorageConfig,
    store::{Op, Store, StoreError, Table},
};

/// What a shard costs on disk, as charged to its peer (the shard store's own accounting).
pub use offgrid_storage::disk_cost;

/// A limit refused a shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    /// Which limit.
    pub code: LimitCode,
    /// Where the peer (or the disk) stands, in the code's unit.
    pub used: u64,
    /// The limit.
    pub limit: u64,
}

/// One store's claim on its peer's quota; end it with [`PeerQuotas::keep`] or
/// [`PeerQuotas::release`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ticket {
    /// The shard is already held: it costs nothing.
    Free,
    /// `cost` bytes and one shard reserved for `peer`.
    Charged {
        /// The storing peer.
        peer: PeerId,
        /// The shard's length.
        len: u64,
        /// Its [`disk_cost`].
        cost: u64,
    },
}

/// What a peer has here (stored, plus stores in progress).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Bytes on disk ([`disk_cost`] of each shard).
    pub bytes: u64,
    /// Shards.
    pub shards: u64,
}

/// The record of one hosted shard in [`Table::HostedShards`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostedShard {
    /// The peer it is charged to.
    pub peer: String,
    /// Its length, bytes.
    pub len: u64,
    /// When it was stored, Unix milliseconds (0 in records written before it was kept: the
    /// garbage collector then starts its grace period when it first sees the record).
    #[serde(default)]
    pub stored_ms: u64,
}

/// The per-peer quotas of a host.
#[derive(Debug)]
pub struct PeerQuotas {
    bytes: u64,
    shards: u64,
    peers: usize,
    state: Mutex<HashMap<PeerId, Usage>>,
}

impl PeerQuotas {
    /// Empty accounting with the limits of `cfg`.
    pub fn new(cfg: &StorageConfig) -> Self {
        PeerQuotas {
            bytes: cfg.peer_quota_bytes,
            shards: cfg.peer_quota_shards,
            peers: usize::try_from(cfg.max_hosted_peers).unwrap_or(usize::MAX),
            state: Mutex::default(),
        }
    }

    /// Recomputes the usage from the shard index: every record whose shard `held` says is
    /// still there is charged to its peer; the others (a shard gone while the node was down)
    /// are queued for deletion from the index without waiting (callers may be async; a lost
    /// deletion is only done again at the next start). Returns the accounting and how many
    /// records it dropped.
    ///
    /// # Errors
    /// The store's, when the index cannot be read or cleaned.
    pub fn load(
        cfg: &StorageConfig,
        store: &Store,
        held: impl Fn(&str) -> bool,
    ) -> Result<(Self, usize), StoreError> {
        let quotas = Self::new(cfg);
        let mut stale = Vec::new();
        {
            let mut state = quotas.state();
            for (hash, rec) in store.scan::<HostedShard>(Table::HostedShards)? {
                match rec.peer.parse::<PeerId>() {
                    Ok(peer) if held(&hash) => {
                        let u = state.entry(peer).or_default();
                        u.bytes += disk_cost(rec.len);
                        u.shards += 1;
                    }
                    _ => stale.push(Op::delete(Table::HostedShards, hash)),
                }
            }
        }
        let dropped = stale.len();
        if !stale.is_empty() {
            store.commit_later(stale)?;
        }
        Ok((quotas, dropped))
    }

    fn state(&self) -> MutexGuard<'_, HashMap<PeerId, Usage>> {
        // Every change is a few additions under the lock with no call that can panic in
        // between, so a poisoned lock still holds consistent figures.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes a ticket for a shard of `len` bytes from `peer`; `already_held` is asked only
    /// when it matters (a held shard is free, whatever the peer's usage).
    ///
    /// # Errors
    /// The [`Refusal`] of the first limit the shard would pass.
    pub fn reserve(
        &self,
        peer: PeerId,
        len: u64,
        already_held: impl FnOnce() -> bool,
    ) -> Result<Ticket, Refusal> {
        if already_held() {
            return Ok(Ticket::Free);
        }
        let cost = disk_cost(len);
        let mut state = self.state();
        if !state.contains_key(&peer) && state.len() >= self.peers {
            return Err(Refusal {
                code: LimitCode::Peers,
                used: state.len() as u64,
                limit: self.peers as u64,
            });
        }
        let usage = state.entry(peer).or_default();
        let refusal = if usage.shards >= self.shards {
            Some((LimitCode::PeerShards, usage.shards, self.shards))
        } else if usage.bytes.saturating_add(cost) > self.bytes {
            Some((LimitCode::PeerBytes, usage.bytes, self.bytes))
        } else {
            None
        };
        if let Some((code, used, limit)) = refusal {
            if *usage == Usage::default() {
                state.remove(&peer);
            }
            return Err(Refusal { code, used, limit });
        }
        usage.bytes += cost;
        usage.shards += 1;
        Ok(Ticket::Charged { peer, len, cost })
    }

    /// Gives a ticket back: its shard was not written (already there, refused, failed).
    pub fn release(&self, ticket: Ticket) {
        if let Ticket::Charged { peer, cost, .. } = ticket {
            self.uncharge(peer, cost);
        }
    }

    /// A shard charged to `peer` with `len` bytes is gone (it rotted and was quarantined).
    pub fn forget(&self, peer: PeerId, len: u64) {
        self.uncharge(peer, disk_cost(len));
    }

    fn uncharge(&self, peer: PeerId, cost: u64) {
        let mut state = self.state();
        if let Some(u) = state.get_mut(&peer) {
            u.bytes = u.bytes.saturating_sub(cost);
            u.shards = u.shards.saturating_sub(1);
            if *u == Usage::default() {
                state.remove(&peer);
            }
        }
    }

    /// The index record that keeps a written shard's charge across restarts (the ticket's
    /// reservation stays); `None` for a free ticket.
    pub fn keep(ticket: &Ticket, hash: &str) -> Option<Op> {
        let Ticket::Charged { peer, len, .. } = ticket else {
            return None;
        };
        let rec = HostedShard {
            peer: peer.to_string(),
            len: *len,
            stored_ms: crate::now_ms(),
        };
        // A struct of a string and two integers always encodes.
        Op::put(Table::HostedShards, hash, &rec).ok()
    }

    /// What `peer` has here.
    pub fn usage(&self, peer: &PeerId) -> Usage {
        self.state().get(peer).copied().unwrap_or_default()
    }

    /// Peers with shards here, and the bytes and shards charged to them all.
    pub fn totals(&self) -> (u64, Usage) {
        let state = self.state();
        let mut all = Usage::default();
        for u in state.values() {
            all.bytes += u.bytes;
            all.shards += u.shards;
        }
        (state.len() as u64, all)
    }

    /// The per-peer byte quota.
    pub fn quota_bytes(&self) -> u64 {
        self.bytes
    }

    /// The per-peer shard quota.
    pub fn quota_shards(&self) -> u64 {
        self.shards
    }
}

#[cfg(test)]
pub(crate) mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn quotas(bytes: u64, shards: u64, peers: u64) -> PeerQuotas {
        PeerQuotas::new(&StorageConfig {
            peer_quota_bytes: bytes,
            peer_quota_shards: shards,
            max_hosted_peers: peers,
            ..Default::default()
        })
    }

    #[test]
    fn tiny_shards_cost_whole_blocks() {
        assert_eq!(disk_cost(0), 4608);
        assert_eq!(disk_cost(64), 4608);
        assert_eq!(disk_cost(4096), 4608);
        assert_eq!(disk_cost(4097), 8704);
        assert_eq!(disk_cost(1 << 20), (1 << 20) + 512);
    }

    #[test]
    fn each_limit_refuses_with_its_code_and_a_release_gives_the_room_back() {
        let q = quotas(3 * disk_cost(10), 5, 2);
        let (a, b, c) = (PeerId::random(), PeerId::random(), PeerId::random());
        let tickets: Vec<Ticket> = (0..3)
            .map(|_| q.reserve(a, 10, || false).unwrap())
            .collect();
        let over = q.reserve(a, 10, || false).unwrap_err();
        assert_eq!(over.code, LimitCode::PeerBytes);
        assert_eq!((over.used, over.limit), (3 * 4608, 3 * 4608));
        // A shard already held is free even over the quota.
        assert_eq!(q.reserve(a, 10, || true), Ok(Ticket::Free));
        q.release(tickets[0]);
        assert!(q.reserve(a, 10, || false).is_ok());

        // The shard count, for a peer with room in bytes.
        let q = quotas(u64::MAX, 2, 2);
        q.reserve(b, 1, || false).unwrap();
        q.reserve(b, 1, || false).unwrap();
        let over = q.reserve(b, 1, || false).unwrap_err();
        assert_eq!(
            (over.code, over.used, over.limit),
            (LimitCode::PeerShards, 2, 2)
        );
        // Two peers known: a third is refused, and leaves no entry behind.
        q.reserve(a, 1, || false).unwrap();
        let over = q.reserve(c, 1, || false).unwrap_err();
        assert_eq!((over.code, over.used, over.limit), (LimitCode::Peers, 2, 2));
        assert_eq!(q.totals().0, 2);
    }

    #[test]
    fn a_peer_whose_usage_drops_to_zero_leaves_the_map() {
        let q = quotas(u64::MAX, 10, 1);
        let (a, b) = (PeerId::random(), PeerId::random());
        let t = q.reserve(a, 100, || false).unwrap();
        assert!(q.reserve(b, 1, || false).is_err(), "one peer at most");
        q.release(t);
        assert_eq!(q.totals(), (0, Usage::default()));
        assert!(q.reserve(b, 1, || false).is_ok(), "the room went back");
        // A refused first store leaves no entry either.
        let q = quotas(0, 10, 1);
        assert_eq!(
            q.reserve(a, 1, || false).unwrap_err().code,
            LimitCode::PeerBytes
        );
        assert_eq!(q.totals().0, 0);
    }

    #[test]
    fn usage_is_recomputed_from_the_index_and_stale_records_are_dropped() {
        let store = Store::in_memory().unwrap();
        let (a, b) = (PeerId::random(), PeerId::random());
        let rec = |p: PeerId, len| HostedShard {
            peer: p.to_string(),
            len,
            stored_ms: 0,
        };
        let ops = vec![
            Op::put(Table::HostedShards, "h1", &rec(a, 10)).unwrap(),
            Op::put(Table::HostedShards, "h2", &rec(a, 5000)).unwrap(),
            Op::put(Table::HostedShards, "h3", &rec(b, 10)).unwrap(),
            Op::put(Table::HostedShards, "gone", &rec(b, 10)).unwrap(),
        ];
        store.commit_blocking(ops).unwrap();
        let cfg = StorageConfig::default();
        let (q, dropped) = PeerQuotas::load(&cfg, &store, |h| h != "gone").unwrap();
        assert_eq!(dropped, 1);
        assert_eq!(
            q.usage(&a),
            Usage {
                bytes: 4608 + 8704,
                shards: 2
            }
        );
        assert_eq!(q.usage(&b).shards, 1);
        wait_for_records(&store, 3);
    }

    /// Waits (with a deadline) until the shard index holds `n` records.
    pub(crate) fn wait_for_records(store: &Store, n: u64) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while store.len(Table::HostedShards).unwrap() != n {
            assert!(
                std::time::Instant::now() < deadline,
                "the index never held {n} records"
            );
            std::thread::yield_now();
        }
    }
}
