//! The daemon's configuration: one TOML file, every field defaulted and documented.
//!
//! Precedence is flag > `OFFGRID_*` environment variable > file > default. The flags and
//! their environment variables are declared in `main.rs` (clap reads both); this module
//! holds the file format and applies the overrides. An unknown key in the file is an error
//! that names it. `config.example.toml` at the repository root lists every field with its
//! default; a test keeps the two in step.

mod credits;
mod executor;
pub mod ledger;
mod storage;

use std::{collections::BTreeMap, path::PathBuf};

use serde::{Deserialize, Serialize};

pub use self::storage::StorageConfig;

pub use self::credits::{Credits, MICRO};
pub use self::executor::{ExecutorConfig, ExecutorKind};

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// The whole daemon configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Data directory (key, database, shards, API token). Default: `$OFFGRID_DATA_DIR`, else
    /// `$XDG_DATA_HOME/offgrid`, else `~/.local/share/offgrid`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    /// libp2p listen multiaddrs.
    pub listen: Vec<String>,
    /// Address of the local HTTP API (also Core's adapter). Port 0 picks a free port.
    pub api_listen: String,
    /// Bootstrap peers (multiaddrs ending in `/p2p/<peer id>`), dialled at start and
    /// added to Kademlia.
    pub bootstrap: Vec<String>,
    /// Discover peers on the local network with mDNS.
    pub mdns: bool,
    /// Log format.
    pub log_format: LogFormat,
    /// Cluster name written into receipts.
    pub cluster_id: String,
    /// Swarm limits and timers.
    pub network: NetworkConfig,
    /// What this node offers as a host.
    pub host: HostConfig,
    /// Broker (auction) parameters.
    pub market: MarketConfig,
    /// Job executors by job type. A fresh node runs `echo` jobs only.
    pub executors: BTreeMap<String, ExecutorConfig>,
    /// Local HTTP API limits.
    pub api: ApiConfig,
    /// Ledger blocks, sync and settlement timers.
    pub ledger: ledger::LedgerConfig,
    /// Wallet: witnesses, quorum, genesis, fees, host reserve.
    pub wallet: ledger::WalletConfig,
    /// Quorum engine policies per kind.
    pub quorum: crate::failover::QuorumConfig,
    /// Failover monitor of stalled jobs and uploads.
    pub failover: crate::failover::FailoverConfig,
    /// Core's HTTP adapter (`POST /auction`, `/jobs`): keys, clock window, rate limits.
    pub core: CoreConfig,
    /// Encrypted, erasure-coded file storage: this node as a host and as a client.
    pub storage: StorageConfig,
    /// Radio links (`[[radio]]`, flag `--radio`): none by default.
    pub radio: Vec<crate::radio::RadioConfig>,
    /// Where mesh metrics come from (`[mesh]`).
    pub mesh: crate::mesh::MeshConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: None,
            listen: vec!["/ip4/0.0.0.0/tcp/4747".into()],
            api_listen: "127.0.0.1:9000".into(),
            bootstrap: Vec::new(),
            mdns: true,
            log_format: LogFormat::Text,
            cluster_id: "offgrid-local".into(),
            network: NetworkConfig::default(),
            host: HostConfig::default(),
            market: MarketConfig::default(),
            executors: BTreeMap::from([("echo".into(), ExecutorConfig::default())]),
            api: ApiConfig::default(),
            ledger: Default::default(),
            wallet: Default::default(),
            quorum: Default::default(),
            failover: Default::default(),
            core: CoreConfig::default(),
            storage: StorageConfig::default(),
            radio: Vec::new(),
            mesh: crate::mesh::MeshConfig::default(),
        }
    }
}

/// Swarm limits and timers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NetworkConfig {
    /// Most established connections in total.
    pub max_connections: u32,
    /// Most established connections to one peer.
    pub max_connections_per_peer: u32,
    /// Most connections still negotiating (pending) at once.
    pub max_pending: u32,
    /// Seconds an idle connection is kept open.
    pub idle_timeout_s: u64,
    /// Seconds between periodic re-announcements.
    pub announce_interval_s: u64,
    /// Seconds between redials of known peers that are not connected.
    pub redial_interval_s: u64,
    /// Largest gossipsub message accepted, in bytes.
    pub max_gossip_bytes: usize,
    /// Most peers kept in the registry; the longest unseen are forgotten first.
    pub max_known_peers: usize,
    /// Bytes of inbound requests buffered at once over every peer and protocol; past it a
    /// large request's stream is dropped (the first 8 KiB of each request is not counted).
    pub inbound_budget_bytes: usize,
    /// Seconds an inbound request may take to arrive in full.
    pub request_read_timeout_s: u64,
    /// Serve as a relay v2 for nodes behind NAT (flag `--relay-server`).
    pub relay_server: bool,
    /// Relays (multiaddrs ending in /p2p/<peer id>) on which this node reserves a slot and
    /// whose relayed addresses it announces.
    pub relays: Vec<String>,
    /// Relay server: most reservations held at once, and per peer.
    pub relay_max_reservations: usize,
    /// Relay server: most reservations one peer holds.
    pub relay_max_reservations_per_peer: usize,
    /// Relay server: seconds a reservation lasts before renewal.
    pub relay_reservation_s: u64,
    /// Relay server: most circuits relayed at once.
    pub relay_max_circuits: usize,
    /// Relay server: most circuits relayed for one peer.
    pub relay_max_circuits_per_peer: usize,
    /// Relay server: seconds one circuit may last.
    pub relay_max_circuit_s: u64,
    /// Relay server: most bytes one circuit carries each way.
    pub relay_max_circuit_bytes: u64,
}

impl Default for NetworkConfig {
    fn default() -> Self {
        NetworkConfig {
            max_connections: 256,
            max_connections_per_peer: 2,
            max_pending: 64,
            idle_timeout_s: 120,
            announce_interval_s: 30,
            redial_interval_s: 5,
            max_gossip_bytes: 64 * 1024,
            max_known_peers: 4096,
            inbound_budget_bytes: 32 << 20,
            request_read_timeout_s: 10,
            relay_server: false,
            relays: Vec::new(),
            relay_max_reservations: 128,
            relay_max_reservations_per_peer: 4,
            relay_reservation_s: 3600,
            relay_max_circuits: 16,
            relay_max_circuits_per_peer: 4,
            relay_max_circuit_s: 120,
            relay_max_circuit_bytes: 128 * 1024,
        }
    }
}

/// What this node offers as a host; published in its signed announcement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HostConfig {
    /// Whether the node takes jobs (toggle at run time with `offgrid toggle`).
    pub active: bool,
    /// Price per unit of each resource type, in credits.
    pub prices: BTreeMap<String, Credits>,
    /// Percent of time the host promises to be on call.
    pub min_oncall_percent: u8,
    /// Highest percent of capacity the host lends in bursts.
    pub burst_percent_max: u8,
    /// Most jobs run at once; beyond that quotes and runs answer busy.
    pub burst: u32,
    /// Capacity advertised to brokers.
    pub capacity: CapacityConfig,
    /// OpenAI-compatible backends tried at start, in order, when no `[executors.compute]`
    /// is configured: the first whose `/models` answers runs `compute` jobs (Ollama's and
    /// llama.cpp's usual addresses by default; empty: never probe).
    pub llm_backends: Vec<String>,
}

impl Default for HostConfig {
    fn default() -> Self {
        HostConfig {
            llm_backends: vec![
                "http://127.0.0.1:11434/v1".into(),
                "http://127.0.0.1:8080/v1".into(),
            ],
            active: true,
            prices: BTreeMap::from([
                ("bandwidth".into(), Credits(500)),
                ("compute".into(), Credits(30_000)),
                ("echo".into(), Credits(1_000)),
                ("storage".into(), Credits(2_000)),
            ]),
            min_oncall_percent: 20,
            burst_percent_max: 80,
            burst: 8,
            capacity: CapacityConfig::default(),
        }
    }
}

/// Capacity advertised to brokers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CapacityConfig {
    /// CPU cores offered; 0 means all cores of this machine.
    pub cpu_cores: u32,
    /// Bytes of shard storage offered.
    pub storage_bytes: u64,
}

impl Default for CapacityConfig {
    fn default() -> Self {
        CapacityConfig {
            cpu_cores: 0,
            storage_bytes: 10 * 1024 * 1024 * 1024,
        }
    }
}

/// Broker parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MarketConfig {
    /// Milliseconds to wait for quotes (or until every candidate answered).
    pub quote_window_ms: u64,
    /// Seconds a winning host heard only by radio has to finish a job before the broker
    /// moves on (cut to half the job's timeout when another host could take over). Hosts on
    /// IP links are judged by their heartbeats instead.
    pub t_activate_s: u64,
    /// Milliseconds between heartbeat polls of a host running a job (0: no heartbeats, every
    /// host judged by `t_activate_s`).
    pub heartbeat_ms: u64,
    /// Heartbeat intervals without an answer after which a host is given up.
    pub heartbeat_misses: u32,
    /// How many other hosts to try after the first fails.
    pub max_retries: u32,
    /// Most auctions the broker runs at once.
    pub max_concurrent_jobs: usize,
    /// Largest job payload accepted, in bytes.
    pub max_payload_bytes: usize,
}

impl Default for MarketConfig {
    fn default() -> Self {
        MarketConfig {
            quote_window_ms: 250,
            t_activate_s: 30,
            heartbeat_ms: 1000,
            heartbeat_misses: 3,
            max_retries: 3,
            max_concurrent_jobs: 512,
            max_payload_bytes: 256 * 1024,
        }
    }
}

/// Local HTTP API limits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    /// Largest request body, in bytes (413 beyond).
    pub body_limit_bytes: usize,
    /// Seconds before a request that is not a job times out.
    pub request_timeout_s: u64,
    /// Most requests handled at once.
    pub max_concurrent_requests: usize,
    /// `Host` names (without port) the API answers besides IP addresses and loopback names;
    /// any other name gets `421` (a DNS-rebinding page carries its own name).
    pub allowed_hosts: Vec<String>,
    /// Longest a long-polling call (`wait_ms`) holds its answer, milliseconds; such calls
    /// bound their own time instead of `request_timeout_s`.
    pub max_wait_ms: u64,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            body_limit_bytes: 1024 * 1024,
            request_timeout_s: 10,
            max_concurrent_requests: 1024,
            allowed_hosts: Vec::new(),
            max_wait_ms: 60_000,
        }
    }
}

/// An Ed25519 public key allowed to sign Core jobs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ed25519Key {
    /// The `key_id` jobs name.
    pub id: String,
    /// Hex Ed25519 public key.
    pub public_key: String,
}

/// Core's HTTP adapter.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CoreConfig {
    /// A listener of its own for Core, e.g. `0.0.0.0:8443`: it serves only Core's routes
    /// (`/auction`, `/jobs`, `/jobs/{id}`, `/status`, `/openapi.json`), while the local API
    /// stays on `api_listen`. Off when unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
    /// PEM certificate chain for TLS on `listen` (with `tls_key`); plain HTTP without.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_cert: Option<std::path::PathBuf>,
    /// PEM private key for TLS on `listen`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_key: Option<std::path::PathBuf>,
    /// HMAC-SHA256 keys that may sign jobs (several at once while rotating). Prefer the
    /// environment variable `OFFGRID_AUTH_KEY` (comma-separated), which replaces this list.
    /// Never printed.
    #[serde(skip_serializing)]
    pub hmac_keys: Vec<String>,
    /// Ed25519 public keys that may sign jobs (`"sig_alg": "ed25519"`, `"key_id"`).
    pub ed25519_keys: Vec<Ed25519Key>,
    /// Largest difference between a job's timestamp and the node's clock, seconds.
    pub max_clock_skew_s: u64,
    /// Deadline of a job that does not name `timeout_s`, seconds.
    pub default_timeout_s: u64,
    /// Seconds an ended job's answer is kept for idempotent retries.
    pub idempotency_ttl_s: u64,
    /// Requests per second per client address, sustained (429 beyond).
    pub rate_limit_per_s: u32,
    /// Requests a client may send in a burst.
    pub rate_limit_burst: u32,
}

impl Default for CoreConfig {
    fn default() -> Self {
        CoreConfig {
            listen: None,
            tls_cert: None,
            tls_key: None,
            hmac_keys: Vec::new(),
            ed25519_keys: Vec::new(),
            max_clock_skew_s: 300,
            default_timeout_s: 30,
            idempotency_ttl_s: 86_400,
            rate_limit_per_s: 5_000,
            rate_limit_burst: 10_000,
        }
    }
}

impl std::fmt::Debug for CoreConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The HMAC keys are secrets: count them, never print them.
        f.debug_struct("CoreConfig")
            .field(
                "hmac_keys",
                &format_args!("<{} redacted>", self.hmac_keys.len()),
            )
            .field("ed25519_keys", &self.ed25519_keys)
            .field("max_clock_skew_s", &self.max_clock_skew_s)
            .field("default_timeout_s", &self.default_timeout_s)
            .field("idempotency_ttl_s", &self.idempotency_ttl_s)
            .field("rate_limit_per_s", &self.rate_limit_per_s)
            .field("rate_limit_burst", &self.rate_limit_burst)
            .finish()
    }
}

/// Errors reading the configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// File path.
        path: PathBuf,
        /// Underlying error.
        source: std::io::Error,
    },
    /// The file is not valid TOML for this schema (an unknown key is named here).
    #[error("invalid config file {path}: {message}")]
    Parse {
        /// File path.
        path: PathBuf,
        /// What is wrong, including the key.
        message: String,
    },
    /// A value is out of range or inconsistent.
    #[error("invalid config: {0}")]
    Invalid(String),
}

impl Config {
    /// Parses a TOML document.
    pub fn from_toml(text: &str, path: &std::path::Path) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.to_string().trim().replace('\n', " "),
        })
    }

    /// Reads a TOML file.
    pub fn load(path: &std::path::Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_toml(&text, path)
    }

    /// The effective configuration as TOML.
    pub fn to_toml(&self) -> String {
        // Every type here serialises to TOML (maps have string keys, no NaN floats).
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot print config: {e}\n"))
    }

    /// Checks values that serde cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (job_type, ex) in &self.executors {
            match ex.kind {
                ExecutorKind::Exec if ex.program.is_none() => {
                    return Err(ConfigError::Invalid(format!(
                        "executors.{job_type}: kind = \"exec\" needs `program`"
                    )));
                }
                ExecutorKind::Http if ex.url.is_none() => {
                    return Err(ConfigError::Invalid(format!(
                        "executors.{job_type}: kind = \"http\" needs `url`"
                    )));
                }
                _ => {}
            }
        }
        for r in &self.radio {
            r.validate().map_err(ConfigError::Invalid)?;
        }
        if self.host.burst == 0 {
            return Err(ConfigError::Invalid("host.burst must be at least 1".into()));
        }
        if self.api.body_limit_bytes == 0 {
            return Err(ConfigError::Invalid(
                "api.body_limit_bytes must be positive".into(),
            ));
        }
        ledger::validate(&self.wallet).map_err(ConfigError::Invalid)?;
        Ok(())
    }

    /// The data directory: configured, else the platform default.
    pub fn resolved_data_dir(&self) -> PathBuf {
        if let Some(d) = &self.data_dir {
            return d.clone();
        }
        if let Some(x) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
            return PathBuf::from(x).join("offgrid");
        }
        if let Some(h) = std::env::var_os("HOME").filter(|v| !v.is_empty()) {
            return PathBuf::from(h).join(".local/share/offgrid");
        }
        PathBuf::from(".offgrid")
    }
}

#[cfg(test)]
mod tests;
