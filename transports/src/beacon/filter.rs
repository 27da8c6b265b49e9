//! [`BeaconFilter`]: verification plus replay protection for received beacons.

use std::collections::{BTreeMap, HashMap};

use super::{Beacon, BeaconError};

/// Why the filter dropped a frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    /// Not a well-formed beacon.
    #[error("malformed beacon: {0}")]
    Malformed(BeaconError),
    /// Well formed, but the key or signature is invalid.
    #[error("invalid beacon: {0}")]
    Invalid(BeaconError),
    /// A sequence number not above the highest already accepted from this key.
    #[error("stale or replayed beacon: seq {seq}, already have {highest}")]
    Replayed {
        /// The frame's sequence number.
        seq: u32,
        /// The highest accepted so far.
        highest: u32,
    },
}

/// What the filter has seen.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FilterStats {
    /// Beacons accepted.
    pub accepted: u64,
    /// Frames that were not well-formed beacons.
    pub malformed: u64,
    /// Beacons with an invalid key or signature.
    pub invalid: u64,
    /// Beacons with a stale or repeated sequence number.
    pub replayed: u64,
    /// Keys forgotten to stay within capacity.
    pub evicted: u64,
}

/// Remembers the highest sequence number accepted per public key, for up to `capacity` keys
/// (the least recently updated key is forgotten first), and lets only fresh, verified
/// beacons through.
///
/// Checks run cheapest first: parse, then the replay check, then the signature, so a flood
/// of replays costs no signature verifications. A key that was evicted can have its old
/// beacons accepted once more; the peer registry's own "last seen" guards against that.
#[derive(Clone, Debug)]
pub struct BeaconFilter {
    capacity: usize,
    highest: HashMap<[u8; 32], (u32, u64)>,
    by_age: BTreeMap<u64, [u8; 32]>,
    tick: u64,
    stats: FilterStats,
}

impl Default for BeaconFilter {
    /// Room for 1024 keys.
    fn default() -> Self {
        BeaconFilter::new(1024)
    }
}

impl BeaconFilter {
    /// A filter remembering up to `capacity` keys (at least one).
    pub fn new(capacity: usize) -> Self {
        BeaconFilter {
            capacity: capacity.max(1),
            highest: HashMap::new(),
            by_age: BTreeMap::new(),
            tick: 0,
            stats: FilterStats::default(),
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> FilterStats {
        self.stats
    }

    /// Keys currently remembered.
    pub fn len(&self) -> usize {
        self.highest.len()
    }

    /// Whether no key is remembered.
    pub fn is_empty(&self) -> bool {
        self.highest.is_empty()
    }

    /// The highest sequence number accepted from `key`, if remembered.
    pub fn highest_seq(&self, key: &[u8; 32]) -> Option<u32> {
        self.highest.get(key).map(|e| e.0)
    }

    /// Checks a received frame; returns the beacon if it is valid and fresh.
    pub fn accept(&mut self, frame: &[u8]) -> Result<Beacon, FilterError> {
        let beacon = Beacon::parse(frame).map_err(|e| {
            self.stats.malformed += 1;
            FilterError::Malformed(e)
        })?;
        if let Some(&(highest, _)) = self.highest.get(&beacon.public_key) {
            if beacon.seq <= highest {
                self.stats.replayed += 1;
                return Err(FilterError::Replayed {
                    seq: beacon.seq,
                    highest,
                });
            }
        }
        beacon.verify(frame).map_err(|e| {
            self.stats.invalid += 1;
            FilterError::Invalid(e)
        })?;
        self.remember(beacon.public_key, beacon.seq);
        self.stats.accepted += 1;
        Ok(beacon)
    }

    fn remember(&mut self, key: [u8; 32], seq: u32) {
        self.tick += 1;
        if let Some((_, old_tick)) = self.highest.insert(key, (seq, self.tick)) {
            self.by_age.remove(&old_tick);
        } else if self.highest.len() > self.capacity {
            if let Some((_, oldest)) = self.by_age.pop_first() {
                self.highest.remove(&oldest);
                self.stats.evicted += 1;
            }
        }
        self.by_age.insert(self.tick, key);
    }
}
