//! The peer registry: every peer this node has heard of, how, and what it offers.
//!
//! One writer (the network event loop) owns it, so updates that arrive at once are merged
//! in order and never lost. Changed records are marked dirty and flushed to the store in
//! one write transaction per tick.
//!
//! A peer known only from an announcement that others relayed is *unconfirmed*: anyone can
//! sign announcements with fresh keys, so such records are held in memory only, at most
//! [`Registry::new`]'s `max_unconfirmed`, the longest unseen forgotten first, and never
//! written to the store. Hearing the peer itself (a connection, a dial, mDNS, a beacon)
//! confirms it; a flood of announcements therefore evicts no confirmed peer and writes
//! nothing to disk.

use std::collections::{BTreeSet, HashMap, HashSet};

use offgrid_behaviours::announce::{Announcement, SignedAnnouncement};
use serde::{Deserialize, Serialize};

/// Most addresses remembered per peer; the oldest are dropped first.
pub const MAX_ADDRS_PER_PEER: usize = 8;

/// What the node knows about one peer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PeerRecord {
    /// Peer id.
    pub peer_id: String,
    /// Known multiaddrs, most recent last.
    pub addrs: Vec<String>,
    /// The link the peer was last heard on: `ip`, `lora`, `ble`, `udp`.
    pub via: String,
    /// First heard, Unix milliseconds.
    pub first_seen_ms: u64,
    /// Last heard, Unix milliseconds.
    pub last_seen_ms: u64,
    /// Whether a connection is open now (not meaningful after a restart until reconnected).
    #[serde(default)]
    pub connected: bool,
    /// The latest verified announcement.
    pub announcement: Option<Announcement>,
    /// That announcement as signed, so it can be re-verified or relayed.
    pub signed_announcement: Option<SignedAnnouncement>,
    /// What the peer's latest verified radio beacon said (peers heard only by radio have no
    /// announcement).
    #[serde(default)]
    pub beacon: Option<BeaconSummary>,
}

/// The part of a verified radio beacon the registry keeps.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BeaconSummary {
    /// The ACTIVE flag.
    pub active: bool,
    /// The capability bitmap (`offgrid_transports::beacon::Capabilities`).
    pub capabilities: u16,
    /// The advertised price, micro-credits.
    pub price: Option<u32>,
    /// When it was heard, Unix milliseconds.
    pub heard_ms: u64,
}

impl PeerRecord {
    fn new(peer_id: String, via: &str, now_ms: u64) -> Self {
        PeerRecord {
            peer_id,
            addrs: Vec::new(),
            via: via.to_owned(),
            first_seen_ms: now_ms,
            last_seen_ms: now_ms,
            connected: false,
            announcement: None,
            signed_announcement: None,
            beacon: None,
        }
    }

    /// Whether the peer's latest announcement says it takes jobs.
    pub fn is_active(&self) -> bool {
        self.announcement.as_ref().is_some_and(|a| a.active)
    }

    /// Whether the peer says it takes jobs, by its announcement or else by its latest
    /// beacon; `None` when it has said neither.
    pub fn says_active(&self) -> Option<bool> {
        match (&self.announcement, &self.beacon) {
            (Some(a), _) => Some(a.active),
            (None, Some(b)) => Some(b.active),
            (None, None) => None,
        }
    }
}

/// Result of offering an announcement to the registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnnounceOutcome {
    /// Newer than what we had: stored.
    Updated,
    /// Same or older `seq`: ignored.
    Stale,
}

/// The registry.
#[derive(Debug, Default)]
pub struct Registry {
    peers: HashMap<String, PeerRecord>,
    dirty: BTreeSet<String>,
    /// Set when a change should reach the store before the next tick: a new peer or a new
    /// announcement, which a user may already have seen through the API.
    urgent: bool,
    max_peers: usize,
    /// Peers known only from relayed announcements (in memory only).
    unconfirmed: HashSet<String>,
    max_unconfirmed: usize,
}

impl Registry {
    /// An empty registry holding at most `max_peers` records, a quarter of them at most
    /// unconfirmed.
    pub fn new(max_peers: usize) -> Self {
        let max_peers = max_peers.max(1);
        Registry {
            peers: HashMap::new(),
            dirty: BTreeSet::new(),
            urgent: false,
            max_peers,
            unconfirmed: HashSet::new(),
            max_unconfirmed: (max_peers / 4).max(1),
        }
    }

    /// Restores records loaded from the store. Nothing is connected after a restart.
    pub fn restore(&mut self, records: impl IntoIterator<Item = PeerRecord>) {
        for mut r in records {
            r.connected = false;
            self.peers.insert(r.peer_id.clone(), r);
        }
    }

    /// The record of a peer heard first-hand (confirmed), created if new.
    fn entry(&mut self, peer: &str, via: &str, now_ms: u64) -> &mut PeerRecord {
        if self.unconfirmed.remove(peer) {
            // Confirmed now: written from here on.
            self.urgent = true;
        } else if !self.peers.contains_key(peer) {
            self.urgent = true;
            if self.peers.len() >= self.max_peers {
                self.evict_one();
            }
        }
        self.dirty.insert(peer.to_owned());
        self.peers
            .entry(peer.to_owned())
            .or_insert_with(|| PeerRecord::new(peer.to_owned(), via, now_ms))
    }

    /// The longest unseen unconfirmed record, if any.
    fn oldest_unconfirmed(&self) -> Option<String> {
        self.unconfirmed
            .iter()
            .filter_map(|p| self.peers.get(p))
            .min_by_key(|r| r.last_seen_ms)
            .map(|r| r.peer_id.clone())
    }

    /// Forgets one record to make room: an unconfirmed one if any (never written, so
    /// nothing to delete), else the longest unseen peer that is not connected.
    fn evict_one(&mut self) {
        if let Some(v) = self.oldest_unconfirmed() {
            self.unconfirmed.remove(&v);
            self.peers.remove(&v);
            return;
        }
        let victim = self
            .peers
            .values()
            .filter(|r| !r.connected)
            .min_by_key(|r| r.last_seen_ms)
            .map(|r| r.peer_id.clone());
        if let Some(v) = victim {
            self.peers.remove(&v);
            // Flushing a removed key deletes it from the store.
            self.dirty.insert(v);
        }
    }

    /// Records that `peer` was heard at `addr` over `via`.
    pub fn observe(&mut self, peer: &str, addr: Option<&str>, via: &str, now_ms: u64) {
        let r = self.entry(peer, via, now_ms);
        r.last_seen_ms = r.last_seen_ms.max(now_ms);
        // One record per peer: while an IP connection is open, a beacon heard by radio does
        // not turn a dual-homed peer into a radio peer (it would drop out of shard placement
        // and widen quote windows).
        if !(r.connected && r.via == "ip") {
            r.via = via.to_owned();
        }
        if let Some(a) = addr {
            if !a.is_empty() {
                r.addrs.retain(|x| x != a);
                r.addrs.push(a.to_owned());
                if r.addrs.len() > MAX_ADDRS_PER_PEER {
                    r.addrs.remove(0);
                }
            }
        }
    }

    /// Records a verified beacon heard on `via` at `addr`.
    pub fn beacon(&mut self, peer: &str, addr: &str, via: &str, summary: BeaconSummary) {
        let now = summary.heard_ms;
        self.observe(peer, Some(addr), via, now);
        let r = self.entry(peer, via, now);
        // A changed flag or price is news to a user of the API, like a new announcement.
        let news = r
            .beacon
            .as_ref()
            .map(|b| (b.active, b.capabilities, b.price))
            != Some((summary.active, summary.capabilities, summary.price));
        r.beacon = Some(summary);
        if news {
            self.urgent = true;
        }
    }

    /// Marks the peer connected or disconnected.
    pub fn set_connected(&mut self, peer: &str, connected: bool, now_ms: u64) {
        if connected {
            let r = self.entry(peer, "ip", now_ms);
            r.connected = true;
            r.via = "ip".to_owned();
            r.last_seen_ms = r.last_seen_ms.max(now_ms);
        } else if let Some(r) = self.peers.get_mut(peer) {
            r.connected = false;
            self.dirty.insert(peer.to_owned());
        }
    }

    /// Stores a verified announcement if it is newer than the one held. `first_hand`: the
    /// announcer itself sent it (it is the gossip source), which confirms it; otherwise a
    /// peer not yet known is held unconfirmed.
    pub fn announce(
        &mut self,
        ann: Announcement,
        signed: SignedAnnouncement,
        via: &str,
        now_ms: u64,
        first_hand: bool,
    ) -> AnnounceOutcome {
        let peer = ann.node_id.clone();
        if let Some(r) = self.peers.get(&peer) {
            if r.announcement
                .as_ref()
                .is_some_and(|old| old.seq >= ann.seq)
            {
                return AnnounceOutcome::Stale;
            }
        }
        let addrs = ann.listen_addrs.clone();
        let unconfirmed =
            !first_hand && (self.unconfirmed.contains(&peer) || !self.peers.contains_key(&peer));
        let r = if unconfirmed {
            self.unconfirmed_entry(&peer, via, now_ms)
        } else {
            self.urgent = true;
            self.entry(&peer, via, now_ms)
        };
        r.last_seen_ms = r.last_seen_ms.max(now_ms);
        r.announcement = Some(ann);
        r.signed_announcement = Some(signed);
        for a in addrs.iter().filter(|a| routable(a)) {
            if !r.addrs.contains(a) {
                r.addrs.push(a.clone());
            }
        }
        while r.addrs.len() > MAX_ADDRS_PER_PEER {
            r.addrs.remove(0);
        }
        AnnounceOutcome::Updated
    }

    /// The record of a peer known only from relayed announcements, created if new (in
    /// memory only: not dirty, not urgent).
    fn unconfirmed_entry(&mut self, peer: &str, via: &str, now_ms: u64) -> &mut PeerRecord {
        if !self.peers.contains_key(peer) {
            if self.unconfirmed.len() >= self.max_unconfirmed {
                if let Some(v) = self.oldest_unconfirmed() {
                    self.unconfirmed.remove(&v);
                    self.peers.remove(&v);
                }
            }
            if self.peers.len() >= self.max_peers {
                self.evict_one();
            }
            self.unconfirmed.insert(peer.to_owned());
        }
        self.peers
            .entry(peer.to_owned())
            .or_insert_with(|| PeerRecord::new(peer.to_owned(), via, now_ms))
    }

    /// Whether `peer` is known only from relayed announcements.
    pub fn is_unconfirmed(&self, peer: &str) -> bool {
        self.unconfirmed.contains(peer)
    }

    /// One peer.
    pub fn get(&self, peer: &str) -> Option<&PeerRecord> {
        self.peers.get(peer)
    }

    /// All peers, sorted by peer id.
    pub fn all(&self) -> Vec<PeerRecord> {
        let mut v: Vec<_> = self.peers.values().cloned().collect();
        v.sort_by(|a, b| a.peer_id.cmp(&b.peer_id));
        v
    }

    /// Iterates over all records.
    pub fn iter(&self) -> impl Iterator<Item = &PeerRecord> {
        self.peers.values()
    }

    /// Number of known peers.
    pub fn len(&self) -> usize {
        self.peers.len()
    }

    /// Whether no peer is known.
    pub fn is_empty(&self) -> bool {
        self.peers.is_empty()
    }

    /// Whether a change should be flushed before the next tick.
    pub fn is_urgent(&self) -> bool {
        self.urgent
    }

    /// Whether a change should be flushed now rather than at the next tick; clears the flag.
    pub fn take_urgent(&mut self) -> bool {
        std::mem::take(&mut self.urgent)
    }

    /// Takes the records changed since the last call: `(peer id, Some(record))` to write,
    /// `(peer id, None)` to delete.
    pub fn take_dirty(&mut self) -> Vec<(String, Option<PeerRecord>)> {
        std::mem::take(&mut self.dirty)
            .into_iter()
            .filter(|p| !self.unconfirmed.contains(p))
            .map(|p| {
                let r = self.peers.get(&p).cloned();
                (p, r)
            })
            .collect()
    }
}

/// Whether a listen address is worth dialling from elsewhere (not `0.0.0.0`/`::`).
pub fn routable(addr: &str) -> bool {
    !(addr.starts_with("/ip4/0.0.0.0/") || addr.starts_with("/ip6/::/"))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn ann(peer: &str, seq: u64, active: bool) -> Announcement {
        Announcement {
            node_id: peer.into(),
            seq,
            active,
            prices: BTreeMap::new(),
            job_types: vec![],
            min_oncall_percent: 0,
            burst_percent_max: 0,
            burst: 1,
            capacity: Default::default(),
            listen_addrs: vec!["/ip4/127.0.0.1/tcp/5".into(), "/ip4/0.0.0.0/tcp/5".into()],
            issued_at_ms: seq,
        }
    }

    fn signed() -> SignedAnnouncement {
        SignedAnnouncement {
            signed: String::new(),
            sig: String::new(),
            public_key: String::new(),
        }
    }

    #[test]
    fn a_peer_heard_only_by_beacon_shows_the_beacons_active_flag_until_it_announces() {
        let mut r = Registry::new(10);
        assert_eq!(r.get("p").map(PeerRecord::says_active), None);
        let heard = |active, heard_ms| BeaconSummary {
            active,
            capabilities: 1,
            price: Some(7),
            heard_ms,
        };
        r.beacon("p", "/offgrid-radio/kiss0/01", "lora", heard(true, 5));
        let rec = r.get("p").unwrap();
        assert_eq!(rec.says_active(), Some(true));
        assert_eq!(rec.via, "lora");
        assert_eq!(rec.addrs, vec!["/offgrid-radio/kiss0/01".to_owned()]);
        // Not a market candidate over IP: that takes an announcement.
        assert!(!rec.is_active());
        r.beacon("p", "/offgrid-radio/kiss0/01", "lora", heard(false, 6));
        assert_eq!(r.get("p").unwrap().says_active(), Some(false));
        // An announcement, once there, is what the peer says.
        r.announce(ann("p", 1, true), signed(), "ip", 7, true);
        assert_eq!(r.get("p").unwrap().says_active(), Some(true));
        // The beacon survives a store round trip; records written before it existed load.
        let json = serde_json::to_string(r.get("p").unwrap()).unwrap();
        let back: PeerRecord = serde_json::from_str(&json).unwrap();
        assert_eq!(back.beacon, Some(heard(false, 6)));
        let old = json.replace(
            r#","beacon":{"active":false,"capabilities":1,"price":7,"heard_ms":6}"#,
            "",
        );
        assert!(old.len() < json.len());
        let back: PeerRecord = serde_json::from_str(&old).unwrap();
        assert_eq!(back.beacon, None);
    }

    #[test]
    fn newer_announcements_replace_older_and_stale_ones_are_ignored() {
        let mut r = Registry::new(10);
        assert_eq!(
            r.announce(ann("p", 2, true), signed(), "ip", 10, true),
            AnnounceOutcome::Updated
        );
        assert_eq!(
            r.announce(ann("p", 1, false), signed(), "ip", 11, true),
            AnnounceOutcome::Stale
        );
        assert_eq!(
            r.announce(ann("p", 2, false), signed(), "ip", 11, true),
            AnnounceOutcome::Stale
        );
        assert!(r.get("p").unwrap().is_active());
        assert_eq!(
            r.announce(ann("p", 3, false), signed(), "ip", 12, true),
            AnnounceOutcome::Updated
        );
        assert!(!r.get("p").unwrap().is_active());
        // Unroutable listen addresses are not kept.
        assert_eq!(
            r.get("p").unwrap().addrs,
            vec!["/ip4/127.0.0.1/tcp/5".to_string()]
        );
    }

    #[test]
    fn addresses_are_bounded_and_deduplicated() {
        let mut r = Registry::new(10);
        for i in 0..20 {
            r.observe("p", Some(&format!("/ip4/10.0.0.{i}/tcp/1")), "ip", i);
        }
        r.observe("p", Some("/ip4/10.0.0.19/tcp/1"), "ip", 30);
        let rec = r.get("p").unwrap();
        assert_eq!(rec.addrs.len(), MAX_ADDRS_PER_PEER);
        assert_eq!(rec.addrs.last().unwrap(), "/ip4/10.0.0.19/tcp/1");
        assert_eq!(rec.first_seen_ms, 0);
        assert_eq!(rec.last_seen_ms, 30);
    }

    #[test]
    fn registry_is_bounded_and_evicts_the_longest_unseen_disconnected_peer() {
        let mut r = Registry::new(2);
        r.observe("old", None, "ip", 1);
        r.set_connected("conn", true, 0);
        r.observe("new", None, "ip", 5);
        assert_eq!(r.len(), 2);
        assert!(r.get("old").is_none());
        assert!(r.get("conn").is_some());
        let dirty = r.take_dirty();
        assert!(dirty.contains(&("old".to_string(), None)));
        assert!(r.take_dirty().is_empty());
    }

    #[test]
    fn relayed_announcements_from_fresh_keys_evict_no_confirmed_peer_and_are_never_written() {
        let mut r = Registry::new(40);
        r.set_connected("conn", true, 0);
        r.observe("seen", Some("/ip4/10.0.0.1/tcp/1"), "ip", 1);
        r.announce(ann("direct", 1, true), signed(), "ip", 2, true);
        let _ = r.take_dirty();
        let _ = r.take_urgent();
        for i in 0..10_000u64 {
            let out = r.announce(
                ann(&format!("fresh{i}"), 1, true),
                signed(),
                "ip",
                10 + i,
                false,
            );
            assert_eq!(out, AnnounceOutcome::Updated);
        }
        assert!(r.take_dirty().is_empty(), "nothing to write");
        assert!(!r.take_urgent());
        for p in ["conn", "seen", "direct"] {
            assert!(r.get(p).is_some(), "{p} was evicted");
        }
        assert_eq!(r.len(), 3 + 10, "a quarter of 40 unconfirmed at most");
        // The newest are kept, the oldest forgotten.
        assert!(r.get("fresh9999").is_some() && r.get("fresh0").is_none());
        // Hearing one first-hand confirms it: it is written from then on.
        r.set_connected("fresh9999", true, 20_000);
        assert!(!r.is_unconfirmed("fresh9999"));
        assert_eq!(r.take_dirty().len(), 1);
        // Its later announcements relayed by others update a confirmed record.
        r.announce(ann("fresh9999", 2, false), signed(), "ip", 20_001, false);
        assert_eq!(r.take_dirty().len(), 1);
    }

    #[test]
    fn a_dual_homed_peer_stays_ip_while_connected_and_beacons_are_heard() {
        let mut reg = Registry::new(16);
        reg.set_connected("p", true, 10);
        let summary = |ms| BeaconSummary {
            active: true,
            capabilities: 0,
            price: None,
            heard_ms: ms,
        };
        for ms in [20, 30, 40] {
            reg.beacon("p", "lora:1", "lora", summary(ms));
            assert_eq!(reg.get("p").map(|r| r.via.as_str()), Some("ip"));
        }
        assert_eq!(reg.get("p").map(|r| r.last_seen_ms), Some(40));
        // Once the IP connection closes, the radio link is the one left.
        reg.set_connected("p", false, 50);
        reg.beacon("p", "lora:1", "lora", summary(60));
        assert_eq!(reg.get("p").map(|r| r.via.as_str()), Some("lora"));
        // A reconnection over IP takes the record back to `ip` at once.
        reg.set_connected("p", true, 70);
        assert_eq!(reg.get("p").map(|r| r.via.as_str()), Some("ip"));
    }
}
