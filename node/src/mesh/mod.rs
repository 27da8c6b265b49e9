//! Mesh metrics: link quality from the Wi-Fi mesh router this node runs on, for the broker.
//!
//! A poller reads, every `poll_interval_s`, one of (in this order with `source = "auto"`):
//! the manual metrics file if one is configured, BATMAN-adv through `batctl`'s JSON output,
//! or babeld's local control socket (`dump`). The figures go to the event loop, which serves
//! them at `GET /mesh` (`offgrid mesh`) and turns them into the broker's mesh factor
//! ([`mesh_factor`]): a small bonus for more neighbours, penalties for
//! a high path metric and for a mesh that is not ok. Parsers: [`parse`].

pub mod parse;

use std::{path::PathBuf, time::Duration};

pub use parse::{MeshStatus, Neighbour, ParseError};
use serde::{Deserialize, Serialize};
use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt},
    sync::watch,
    task::JoinSet,
};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use crate::now_ms;

/// Longest wait for a mesh daemon's answer.
const QUERY_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest answer read from a daemon.
const MAX_ANSWER: u64 = 1 << 20;

/// `[mesh]`: where mesh metrics come from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MeshConfig {
    /// `auto` (file if set, then batman, then babel), `batman`, `babel`, `file` or `off`.
    pub source: String,
    /// The batctl program.
    pub batctl: String,
    /// The BATMAN-adv mesh interface.
    pub mesh_interface: String,
    /// babeld's local control socket: a Unix socket path, or `tcp:<host>:<port>`.
    pub babel_socket: String,
    /// A JSON file `{"mesh_ok": bool, "neighbours": n, "path_metric": 0..1}`; empty for none.
    pub metrics_file: String,
    /// Seconds between polls.
    pub poll_interval_s: u64,
}

impl Default for MeshConfig {
    fn default() -> Self {
        MeshConfig {
            source: "auto".into(),
            batctl: "batctl".into(),
            mesh_interface: "bat0".into(),
            babel_socket: "/var/run/babeld.sock".into(),
            metrics_file: String::new(),
            poll_interval_s: 10,
        }
    }
}

/// Why a poll found no metrics.
#[derive(Debug, thiserror::Error)]
pub enum PollError {
    /// The source is not there (no batctl, no babeld, no file).
    #[error("{0} not available: {1}")]
    Unavailable(&'static str, String),
    /// Its output did not parse.
    #[error("{0}: {1}")]
    Parse(&'static str, ParseError),
}

async fn batctl(cfg: &MeshConfig, table: &str) -> Result<String, PollError> {
    let out = tokio::time::timeout(
        QUERY_TIMEOUT,
        tokio::process::Command::new(&cfg.batctl)
            .args(["meshif", &cfg.mesh_interface, table])
            .kill_on_drop(true)
            .output(),
    )
    .await
    .map_err(|_| PollError::Unavailable("batman", "batctl timed out".into()))?
    .map_err(|e| PollError::Unavailable("batman", e.to_string()))?;
    if !out.status.success() {
        return Err(PollError::Unavailable(
            "batman",
            String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Reads BATMAN-adv metrics through batctl.
pub async fn poll_batman(cfg: &MeshConfig) -> Result<MeshStatus, PollError> {
    let n = batctl(cfg, "neighbors_json").await?;
    let o = batctl(cfg, "originators_json").await?;
    parse::parse_batman(&n, &o).map_err(|e| PollError::Parse("batman", e))
}

/// Sends `dump` and reads until the reply's closing `ok` (the greeting ends with one too).
async fn babel_exchange<S>(mut s: S) -> std::io::Result<String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    s.write_all(b"dump\n").await?;
    let mut lines = tokio::io::BufReader::new(s.take(MAX_ANSWER)).lines();
    let mut text = String::new();
    let mut ends = 0;
    while let Some(line) = lines.next_line().await? {
        text.push_str(&line);
        text.push('\n');
        if matches!(line.trim(), "ok" | "no" | "bad") || line.starts_with("no ") {
            ends += 1;
            if ends == 2 {
                break;
            }
        }
    }
    Ok(text)
}

/// Reads Babel metrics from babeld's local control socket.
pub async fn poll_babel(socket: &str) -> Result<MeshStatus, PollError> {
    let unavailable = |e: std::io::Error| PollError::Unavailable("babel", e.to_string());
    let query = async {
        match socket.strip_prefix("tcp:") {
            Some(addr) => babel_exchange(tokio::net::TcpStream::connect(addr).await?).await,
            None => babel_exchange(tokio::net::UnixStream::connect(socket).await?).await,
        }
    };
    let text = tokio::time::timeout(QUERY_TIMEOUT, query)
        .await
        .map_err(|_| PollError::Unavailable("babel", "babeld timed out".into()))?
        .map_err(unavailable)?;
    parse::parse_babel_dump(&text).map_err(|e| PollError::Parse("babel", e))
}

/// Reads the manual metrics file.
pub async fn poll_file(path: &PathBuf) -> Result<MeshStatus, PollError> {
    let text = tokio::fs::read_to_string(path)
        .await
        .map_err(|e| PollError::Unavailable("file", e.to_string()))?;
    parse::parse_manual(&text).map_err(|e| PollError::Parse("file", e))
}

/// One poll according to `cfg.source`.
pub async fn poll(cfg: &MeshConfig) -> Result<MeshStatus, PollError> {
    let file = (!cfg.metrics_file.is_empty()).then(|| PathBuf::from(&cfg.metrics_file));
    let mut status = match cfg.source.as_str() {
        "batman" => poll_batman(cfg).await,
        "babel" => poll_babel(&cfg.babel_socket).await,
        "file" => match &file {
            Some(f) => poll_file(f).await,
            None => Err(PollError::Unavailable("file", "no metrics_file set".into())),
        },
        _ => {
            let mut last = PollError::Unavailable("mesh", "no source".into());
            if let Some(f) = &file {
                match poll_file(f).await {
                    Ok(s) => return Ok(stamp(s)),
                    Err(e) => last = e,
                }
            }
            match poll_batman(cfg).await {
                Ok(s) => Ok(s),
                Err(e) => {
                    debug!(error = %e, "no BATMAN-adv metrics");
                    poll_babel(&cfg.babel_socket).await.map_err(|e2| {
                        debug!(error = %e2, previous = %last, "no Babel metrics");
                        e2
                    })
                }
            }
        }
    }?;
    status.polled_at_ms = now_ms();
    Ok(status)
}

fn stamp(mut s: MeshStatus) -> MeshStatus {
    s.polled_at_ms = now_ms();
    s
}

/// Mesh factor from mesh metrics: a small bonus for neighbours, penalties for a high path
/// metric and for a mesh that is not ok. `None` (no metrics) is neutral.
pub fn mesh_factor(mesh_ok: Option<bool>, neighbours: u32, path_metric: Option<f64>) -> f64 {
    let Some(ok) = mesh_ok else { return 1.0 };
    let mut f = if ok { 1.0 } else { 1.25 };
    // Up to 5 % off for well-connected hosts.
    f *= 1.0 - 0.01 * f64::from(neighbours.min(5));
    if let Some(m) = path_metric {
        // BATMAN TQ-like metric normalised to 0..1 where 0 is perfect: up to 20 % more.
        f *= 1.0 + 0.2 * m.clamp(0.0, 1.0);
    }
    f
}

/// Starts the poller unless `source = "off"`. The latest metrics are published on the
/// returned watch (`None` until the first poll, and forever without a source).
pub fn start(
    cfg: &MeshConfig,
    cancel: &CancellationToken,
    tasks: &mut JoinSet<()>,
) -> watch::Receiver<Option<MeshStatus>> {
    let (tx, rx) = watch::channel(None);
    if cfg.source == "off" {
        return rx;
    }
    let (cfg, cancel) = (cfg.clone(), cancel.clone());
    tasks.spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(cfg.poll_interval_s.max(1)));
        let mut reported_missing = false;
        loop {
            tokio::select! {
                biased;
                _ = cancel.cancelled() => return,
                _ = tick.tick() => {}
            }
            match poll(&cfg).await {
                Ok(s) => {
                    reported_missing = false;
                    tx.send_replace(Some(s));
                }
                Err(e) if !reported_missing => {
                    reported_missing = true;
                    info!(error = %e, "no mesh metrics; the broker's mesh factor stays neutral");
                }
                Err(_) => {}
            }
        }
    });
    rx
}
