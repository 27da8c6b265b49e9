//! Prometheus metrics (`GET /metrics`).

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
    hosted_shards: Gauge,
    hosted_disk_bytes: Gauge,
    shard_refusals: Family<Kind, Counter>,
    rss: Gauge,
    open_fds: Gauge,
    cpu: Counter<f64, std::sync::atomic::AtomicU64>,
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
        let hosted_shards = Gauge::default();
        let hosted_disk_bytes = Gauge::default();
        let shard_refusals = Family::<Kind, Counter>::default();
        let rss = Gauge::default();
        let open_fds = Gauge::default();
        let cpu = Counter::<f64, std::sync::atomic::AtomicU64>::default();
        // The names every Prometheus client library uses, so stock dashboards work.
        registry.register(
            "process_resident_memory_bytes",
            "Resident memory size in bytes",
            rss.clone(),
        );
        registry.register(
            "process_open_fds",
            "Number of open file descriptors",
            open_fds.clone(),
        );
        registry.register(
            "process_cpu_seconds",
            "Total user and system CPU time spent in seconds",
            cpu.clone(),
        );
        registry.register(
            "offgrid_hosted_shards",
            "Shards this node keeps for other peers",
            hosted_shards.clone(),
        );
        registry.register(
            "offgrid_hosted_shard_disk_bytes",
            "Bytes on disk charged to the peers whose shards this node keeps",
            hosted_disk_bytes.clone(),
        );
        registry.register(
            "offgrid_shard_refusals",
            "Shard stores refused, by limit (quota, peer_limit, free_space)",
            shard_refusals.clone(),
        );
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
        // Every kind and outcome from the start, at zero, so a dashboard sees the families
        // (and a rate over them) before the first error happens.
        for kind in BROKER_ERRORS {
            drop(broker_errors.get_or_create(&Kind { kind: kind.into() }));
            drop(jobs.get_or_create(&Outcome {
                outcome: kind.into(),
            }));
        }
        drop(jobs.get_or_create(&Outcome {
            outcome: "completed".into(),
        }));
        for kind in ["quota", "peer_limit", "free_space"] {
            drop(shard_refusals.get_or_create(&Kind { kind: kind.into() }));
        }
        Metrics {
            registry,
            jobs,
            duration,
            broker_errors,
            http,
            peers,
            active_hosts,
            hosted_shards,
            hosted_disk_bytes,
            shard_refusals,
            rss,
            open_fds,
            cpu,
        }
    }

    /// Sets the shard host's figures from its status (its counters only grow, so each
    /// refusal counter is moved up to the host's count).
    pub fn storage(&self, h: &crate::files::host::HostStatus) {
        self.hosted_shards
            .set(i64::try_from(h.shards).unwrap_or(i64::MAX));
        self.hosted_disk_bytes
            .set(i64::try_from(h.peer_disk_bytes).unwrap_or(i64::MAX));
        for (kind, total) in [
            ("quota", h.quota_refusals),
            ("peer_limit", h.limit_refusals),
            ("free_space", h.low_disk_refusals),
        ] {
            let c = self
                .shard_refusals
                .get_or_create(&Kind { kind: kind.into() });
            c.inc_by(total.saturating_sub(c.get()));
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
        let p = super::process::sample();
        self.rss.set(i64::try_from(p.rss_bytes).unwrap_or(i64::MAX));
        self.open_fds
            .set(i64::try_from(p.open_fds).unwrap_or(i64::MAX));
        // CPU time only grows; a counter moves up to it.
        let seen = self.cpu.get();
        if p.cpu_seconds > seen {
            self.cpu.inc_by(p.cpu_seconds - seen);
        }
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        classic_text(&out)
    }
}

/// Every kind `BrokerError::kind` reports.
const BROKER_ERRORS: [&str; 7] = [
    "no_hosts",
    "job_timeout",
    "all_hosts_failed",
    "disagreement",
    "overloaded",
    "invalid",
    "insufficient_funds",
];

/// OpenMetrics text as the Prometheus text format 0.0.4 that `/metrics` declares: a
/// counter's `# HELP`/`# TYPE` name its `_total` samples, and there is no `# EOF`. (A
/// classic parser, promtool's included, otherwise sees `_total` samples without help or
/// type.)
fn classic_text(open_metrics: &str) -> String {
    let counters: std::collections::HashSet<&str> = open_metrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(open_metrics.len() + 64);
    for line in open_metrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|p| {
            let rest = line.strip_prefix(p)?;
            let (name, tail) = rest.split_once(' ')?;
            counters
                .contains(name)
                .then(|| format!("{p}{name}_total {tail}"))
        });
        match renamed {
            Some(l) => out.push_str(&l),
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn the_shard_host_figures_follow_its_status() {
        let m = Metrics::new();
        let mut h = crate::files::host::HostStatus {
            shards: 7,
            peer_disk_bytes: 4608,
            limit_refusals: 3,
            ..Default::default()
        };
        m.storage(&h);
        h.limit_refusals = 5;
        h.low_disk_refusals = 1;
        m.storage(&h);
        let text = m.render(0, 0);
        for name in [
            "offgrid_hosted_shards 7",
            "offgrid_hosted_shard_disk_bytes 4608",
            "offgrid_shard_refusals_total{kind=\"peer_limit\"} 5",
            "offgrid_shard_refusals_total{kind=\"free_space\"} 1",
            "offgrid_shard_refusals_total{kind=\"quota\"} 0",
        ] {
            assert!(text.contains(name), "missing {name} in\n{text}");
        }
    }

    #[test]
    fn a_fresh_node_lists_every_family_in_the_classic_text_format_with_zeros() {
        let text = Metrics::new().render(0, 0);
        for kind in BROKER_ERRORS {
            let line = format!("offgrid_broker_errors_total{{kind=\"{kind}\"}} 0");
            assert!(text.contains(&line), "missing {line} in\n{text}");
        }
        assert!(text.contains("offgrid_jobs_total{outcome=\"completed\"} 0"));
        // Counters are typed under their sample names; no OpenMetrics terminator.
        assert!(text.contains("# TYPE offgrid_broker_errors_total counter"));
        assert!(text.contains("# HELP offgrid_jobs_total "));
        assert!(!text.contains("# TYPE offgrid_jobs counter"));
        assert!(!text.contains("# EOF"));
        assert!(text.contains("# TYPE offgrid_peers gauge"));
    }
}
