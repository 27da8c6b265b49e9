//! Token buckets per key (a client address, a forwarding peer), bounded: when the map is
//! full, buckets idle long enough to have refilled go first, and if none has, all do (a
//! flood of fresh keys then costs the flood its history, never the node its memory).

use std::{collections::HashMap, hash::Hash, time::Instant};

/// Token buckets keyed by `K`.
#[derive(Debug)]
pub struct Buckets<K> {
    rate: f64,
    burst: f64,
    max_keys: usize,
    map: HashMap<K, (f64, Instant)>,
}

impl<K: Hash + Eq> Buckets<K> {
    /// `rate` tokens a second, at most `burst` at once, for at most `max_keys` keys.
    pub fn new(rate: f64, burst: f64, max_keys: usize) -> Self {
        Buckets {
            rate: rate.max(f64::MIN_POSITIVE),
            burst: burst.max(1.0),
            max_keys: max_keys.max(1),
            map: HashMap::new(),
        }
    }

    /// Takes a token for `key`: `Err(seconds until one is back)` when none is left.
    pub fn take(&mut self, key: K, now: Instant) -> Result<(), f64> {
        if self.map.len() >= self.max_keys && !self.map.contains_key(&key) {
            // A bucket idle for burst / rate seconds is full again: dropping it changes
            // nothing. (`saturating_duration_since`: `now - d` panics on a young clock.)
            let refill = self.burst / self.rate;
            self.map
                .retain(|_, (_, t)| now.saturating_duration_since(*t).as_secs_f64() < refill);
            if self.map.len() >= self.max_keys {
                self.map.clear();
            }
        }
        let (tokens, last) = self.map.entry(key).or_insert((self.burst, now));
        *tokens = (*tokens + now.saturating_duration_since(*last).as_secs_f64() * self.rate)
            .min(self.burst);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err((1.0 - *tokens) / self.rate)
        }
    }

    /// Keys tracked.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether no key is tracked.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}
