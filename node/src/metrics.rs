//! Prometheus metrics (`GET /metrics`) and the API's per-client rate limiter.

use std::{collections::HashMap, net::IpAddr, sync::Mutex, time::Instant};

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{
        counter::Counter,
        family::Family,
        gauge::Gauge,
        histogram::{exponential_buckets, Histogram},
    },
    registry::Registry,
};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Outcome {
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Kind {
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Http {
    route: String,
    status: String,
}

/// The node's metrics.
pub struct Metrics {
    registry: Registry,
    jobs: Family<Outcome, Counter>,
    duration: Histogram,
    broker_errors: Family<Kind, Counter>,
    http: Family<Http, Counter>,
    peers: Gauge,
    active_hosts: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric.
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let jobs = Family::<Outcome, Counter>::default();
        // 1 ms … ~32 s.
        let duration = Histogram::new(exponential_buckets(0.001, 2.0, 16));
        let broker_errors = Family::<Kind, Counter>::default();
        let http = Family::<Http, Counter>::default();
        let peers = Gauge::default();
        let active_hosts = Gauge::default();
        registry.register("offgrid_jobs", "Jobs brokered, by outcome", jobs.clone());
        registry.register(
            "offgrid_job_duration_seconds",
            "Time from job request to answer",
            duration.clone(),
        );
        registry.register(
            "offgrid_broker_errors",
            "Broker errors, by kind",
            broker_errors.clone(),
        );
        registry.register(
            "offgrid_http_requests",
            "HTTP requests, by route and status",
            http.clone(),
        );
        registry.register("offgrid_peers", "Known peers", peers.clone());
        registry.register(
            "offgrid_active_hosts",
            "Known peers that take jobs",
            active_hosts.clone(),
        );
        Metrics {
            registry,
            jobs,
            duration,
            broker_errors,
            http,
            peers,
            active_hosts,
        }
    }

    /// Counts a brokered job and its duration.
    pub fn job(&self, outcome: &str, secs: f64) {
        self.jobs
            .get_or_create(&Outcome {
                outcome: outcome.into(),
            })
            .inc();
        self.duration.observe(secs);
    }

    /// Counts a broker error.
    pub fn broker_error(&self, kind: &str) {
        self.broker_errors
            .get_or_create(&Kind { kind: kind.into() })
            .inc();
    }

    /// Counts an HTTP request.
    pub fn http(&self, route: &str, status: u16) {
        self.http
            .get_or_create(&Http {
                route: route.into(),
                status: status.to_string(),
            })
            .inc();
    }

    /// Renders the text format, with the gauges set to the given values.
    pub fn render(&self, peers: usize, active_hosts: usize) -> String {
        self.peers.set(peers as i64);
        self.active_hosts.set(active_hosts as i64);
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// Token buckets per client address. Bounded: when full, the stalest buckets go first.
pub struct RateLimiter {
    rate: f64,
    burst: f64,
    buckets: Mutex<HashMap<Option<IpAddr>, (f64, Instant)>>,
}

/// Most client addresses tracked at once.
const MAX_CLIENTS: usize = 10_000;

impl RateLimiter {
    /// `rate` requests per second sustained, `burst` at once.
    pub fn new(rate: u32, burst: u32) -> Self {
        RateLimiter {
            rate: f64::from(rate.max(1)),
            burst: f64::from(burst.max(1)),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes a token for `client`; `Err(seconds to wait)` when none is left.
    pub fn check(&self, client: Option<IpAddr>, now: Instant) -> Result<(), u64> {
        // A poisoned lock only means a panic elsewhere mid-update; the map stays usable.
        let mut b = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if b.len() >= MAX_CLIENTS && !b.contains_key(&client) {
            let cutoff = now - std::time::Duration::from_secs(60);
            b.retain(|_, (_, t)| *t > cutoff);
            if b.len() >= MAX_CLIENTS {
                b.clear();
            }
        }
        let (tokens, last) = b.entry(client).or_insert((self.burst, now));
        *tokens = (*tokens + now.duration_since(*last).as_secs_f64() * self.rate).min(self.burst);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - *tokens) / self.rate).ceil().max(1.0) as u64)
        }
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

    #[test]
    fn metrics_render_the_contract_names() {
        let m = Metrics::new();
        m.job("completed", 0.01);
        m.broker_error("no_hosts");
        m.http("/auction", 200);
        let text = m.render(3, 2);
        for name in [
            "offgrid_jobs_total{outcome=\"completed\"} 1",
            "offgrid_job_duration_seconds_bucket",
            "offgrid_broker_errors_total{kind=\"no_hosts\"} 1",
            "offgrid_http_requests_total{route=\"/auction\",status=\"200\"} 1",
            "offgrid_peers 3",
            "offgrid_active_hosts 2",
        ] {
            assert!(text.contains(name), "missing {name} in\n{text}");
        }
    }
}
