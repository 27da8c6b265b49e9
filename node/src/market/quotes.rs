//! The broker's cache of quotes: a host's quote holds while it is valid and while the
//! capacity it quoted has not been used up by this broker's own jobs.

use std::{collections::HashMap, sync::Mutex};

use crate::now_ms;

/// A quote as cached by the broker.
#[derive(Debug, Clone, Copy)]
struct Cached {
    price: u64,
    valid_until_ms: u64,
    capacity_left: u32,
    dispatched: u32,
}

/// Valid quotes per (host, job type), so back-to-back jobs skip the quote round. A cached
/// quote is used only while valid and while this broker's own jobs in flight on that host
/// stay below the capacity the host reported; any failure drops the host's quotes.
#[derive(Debug, Default)]
pub(super) struct QuoteCache {
    map: Mutex<HashMap<(String, String), Cached>>,
}

/// Most cached quotes; beyond, expired ones are dropped first.
const MAX_CACHED_QUOTES: usize = 4096;

impl QuoteCache {
    fn with<R>(&self, f: impl FnOnce(&mut HashMap<(String, String), Cached>) -> R) -> R {
        // A poisoned lock only means a panic elsewhere mid-update; the map stays usable.
        f(&mut self.map.lock().unwrap_or_else(|p| p.into_inner()))
    }

    pub(super) fn get(&self, peer: &str, job_type: &str, now_ms: u64) -> Option<u64> {
        self.with(|m| {
            let c = m.get(&(peer.to_owned(), job_type.to_owned()))?;
            (c.valid_until_ms > now_ms && c.dispatched < c.capacity_left).then_some(c.price)
        })
    }

    pub(super) fn put(
        &self,
        peer: &str,
        job_type: &str,
        price: u64,
        valid_until_ms: u64,
        capacity_left: u32,
    ) {
        self.with(|m| {
            if m.len() >= MAX_CACHED_QUOTES {
                let now = now_ms();
                m.retain(|_, c| c.valid_until_ms > now);
                if m.len() >= MAX_CACHED_QUOTES {
                    m.clear();
                }
            }
            let key = (peer.to_owned(), job_type.to_owned());
            let dispatched = m.get(&key).map_or(0, |c| c.dispatched);
            m.insert(
                key,
                Cached {
                    price,
                    valid_until_ms,
                    capacity_left,
                    dispatched,
                },
            );
        });
    }

    pub(super) fn dispatched(&self, peer: &str, job_type: &str, start: bool) {
        self.with(|m| {
            if let Some(c) = m.get_mut(&(peer.to_owned(), job_type.to_owned())) {
                c.dispatched = if start {
                    c.dispatched.saturating_add(1)
                } else {
                    c.dispatched.saturating_sub(1)
                };
            }
        });
    }

    pub(super) fn forget(&self, peer: &str) {
        self.with(|m| m.retain(|(p, _), _| p != peer));
    }
}
