//! The API's per-client rate limiter (`429 rate_limited` with `Retry-After`).

use std::{net::IpAddr, sync::Mutex, time::Instant};

use crate::buckets::Buckets;

/// Token buckets per client address, bounded (see [`Buckets`]).
pub struct RateLimiter {
    buckets: Mutex<Buckets<Option<IpAddr>>>,
}

/// Most client addresses tracked at once.
const MAX_CLIENTS: usize = 10_000;

impl RateLimiter {
    /// `rate` requests per second sustained, `burst` at once.
    pub fn new(rate: u32, burst: u32) -> Self {
        RateLimiter {
            buckets: Mutex::new(Buckets::new(
                f64::from(rate.max(1)),
                f64::from(burst.max(1)),
                MAX_CLIENTS,
            )),
        }
    }

    /// Takes a token for `client`; `Err(seconds to wait)` when none is left.
    pub fn check(&self, client: Option<IpAddr>, now: Instant) -> Result<(), u64> {
        // A poisoned lock only means a panic elsewhere mid-update; the map stays usable.
        let mut b = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        b.take(client, now)
            .map_err(|wait| wait.ceil().max(1.0) as u64)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn bucket_allows_a_burst_then_the_rate() {
        let r = RateLimiter::new(2, 3);
        let t = Instant::now();
        let ip = Some(IpAddr::from([10, 0, 0, 1]));
        for _ in 0..3 {
            r.check(ip, t).unwrap();
        }
        assert_eq!(r.check(ip, t), Err(1));
        // Another client is unaffected.
        r.check(Some(IpAddr::from([10, 0, 0, 2])), t).unwrap();
        // Half a second later one token (2/s) is back.
        r.check(ip, t + Duration::from_millis(500)).unwrap();
        assert!(r.check(ip, t + Duration::from_millis(500)).is_err());
    }

    /// More clients than it tracks, at once and a minute later: it evicts, never panics,
    /// and stays bounded.
    #[test]
    fn a_flood_of_clients_is_evicted_without_a_panic() {
        let r = RateLimiter::new(1, 1);
        let t = Instant::now();
        for i in 0..(MAX_CLIENTS as u32 + 50) {
            let _ = r.check(Some(IpAddr::from(i.to_be_bytes())), t);
        }
        let later = t + Duration::from_secs(61);
        for i in 0..100u32 {
            r.check(Some(IpAddr::from(((i + 1) << 24).to_be_bytes())), later)
                .unwrap();
        }
        assert!(r.buckets.lock().unwrap().len() <= MAX_CLIENTS);
    }
}
