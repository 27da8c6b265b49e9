//! Parsers for mesh routing daemons' output (pure, no I/O).
//!
//! - BATMAN-adv: `batctl meshif <bat0> originators_json` and `neighbors_json` (batctl ≥
//!   2021: one JSON array of objects named after the kernel's netlink attributes:
//!   `orig_address`, `neigh_address`, `hard_ifname`, `last_seen_msecs`, `tq` (BATMAN IV,
//!   0..=255) or `throughput` (BATMAN V, kbit/s), `best`).
//! - Babel: babeld's local control interface, `dump` command: lines such as
//!   `add neighbour <id> address <ip> if <ifname> reach ffff … cost 96` and
//!   `add route <id> prefix <p> … installed yes … metric 96 … via <ip> if <ifname>`, then
//!   `ok`.
//! - A manual metrics file (JSON: `{"mesh_ok": true, "neighbours": 3, "path_metric": 0.2}`)
//!   for meshes this node cannot query.
//!
//! Each yields a [`MeshStatus`]. `path_metric` is normalised to 0..=1 (0 is perfect): for
//! BATMAN IV `1 − mean TQ of best routes / 255`; for BATMAN V `1 − min(mean throughput /
//! 100 Mbit/s, 1)`; for Babel `min(mean installed route metric / 1024, 1)` (96 is one wired
//! hop, 256 a good wireless hop, 65535 unreachable).

use serde::{Deserialize, Serialize};

/// A neighbour as the mesh daemon sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Neighbour {
    /// MAC (BATMAN) or link-local IP (Babel).
    pub address: String,
    /// Interface it is heard on.
    pub interface: String,
    /// Link cost or quality as the daemon reports it (TQ, throughput or Babel cost).
    pub metric: Option<f64>,
}

/// Mesh health as the broker uses it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MeshStatus {
    /// Where the figures come from: `batman`, `babel` or `file`.
    pub source: String,
    /// The mesh works: at least one live neighbour (or the file says so).
    pub mesh_ok: bool,
    /// Live neighbours.
    pub neighbours: u32,
    /// Mean path metric, 0 (perfect) ..= 1 (unusable); `None` without routes.
    pub path_metric: Option<f64>,
    /// Routes (originators) known.
    pub routes: u32,
    /// The neighbours.
    #[serde(default)]
    pub neighbour_list: Vec<Neighbour>,
    /// When the figures were read, Unix milliseconds.
    #[serde(default)]
    pub polled_at_ms: u64,
}

/// Why output could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Not the JSON expected.
    #[error("bad JSON: {0}")]
    Json(String),
    /// A value is out of range.
    #[error("invalid value: {0}")]
    Invalid(String),
}

/// A neighbour not heard for this long is not live.
pub const LIVE_MS: u64 = 10_000;

#[derive(Deserialize)]
struct BatEntry {
    #[serde(default)]
    orig_address: Option<String>,
    #[serde(default)]
    neigh_address: Option<String>,
    #[serde(default)]
    hard_ifname: Option<String>,
    #[serde(default)]
    last_seen_msecs: Option<u64>,
    #[serde(default)]
    tq: Option<f64>,
    #[serde(default)]
    throughput: Option<f64>,
    #[serde(default)]
    best: Option<bool>,
}

fn bat_list(text: &str) -> Result<Vec<BatEntry>, ParseError> {
    serde_json::from_str(text).map_err(|e| ParseError::Json(e.to_string()))
}

/// Parses `batctl … neighbors_json` and `batctl … originators_json` output.
pub fn parse_batman(
    neighbors_json: &str,
    originators_json: &str,
) -> Result<MeshStatus, ParseError> {
    let neigh = bat_list(neighbors_json)?;
    let orig = bat_list(originators_json)?;
    let neighbour_list: Vec<Neighbour> = neigh
        .iter()
        .filter(|n| n.last_seen_msecs.is_none_or(|t| t < LIVE_MS))
        .filter_map(|n| {
            Some(Neighbour {
                address: n.neigh_address.clone()?,
                interface: n.hard_ifname.clone().unwrap_or_default(),
                metric: n.tq.or(n.throughput),
            })
        })
        .collect();
    // Only the best next hop of each originator describes the route in use.
    let best: Vec<&BatEntry> = orig
        .iter()
        .filter(|o| o.best.unwrap_or(false) && o.orig_address.is_some())
        .collect();
    let path_metric = if best.is_empty() {
        None
    } else if best.iter().all(|o| o.tq.is_some()) {
        let mean = best.iter().filter_map(|o| o.tq).sum::<f64>() / best.len() as f64;
        Some((1.0 - mean / 255.0).clamp(0.0, 1.0))
    } else {
        let tps: Vec<f64> = best.iter().filter_map(|o| o.throughput).collect();
        (!tps.is_empty()).then(|| {
            let mean_kbit = tps.iter().sum::<f64>() / tps.len() as f64;
            1.0 - (mean_kbit / 100_000.0).min(1.0)
        })
    };
    Ok(MeshStatus {
        source: "batman".into(),
        mesh_ok: !neighbour_list.is_empty(),
        neighbours: neighbour_list.len() as u32,
        path_metric,
        routes: best.len() as u32,
        neighbour_list,
        polled_at_ms: 0,
    })
}

/// Parses the reply of babeld's `dump` command.
pub fn parse_babel_dump(text: &str) -> Result<MeshStatus, ParseError> {
    let mut neighbour_list = Vec::new();
    let mut metrics = Vec::new();
    for line in text.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        let field = |name: &str| {
            words
                .windows(2)
                .find(|w| w[0] == name)
                .map(|w| w[1].to_owned())
        };
        match words.as_slice() {
            ["add" | "change", "neighbour", ..] => {
                let reach = field("reach")
                    .and_then(|r| u16::from_str_radix(&r, 16).ok())
                    .unwrap_or(0);
                let cost: Option<f64> = field("cost").and_then(|c| c.parse().ok());
                if reach != 0 && cost.is_some_and(|c| c < 65535.0) {
                    neighbour_list.push(Neighbour {
                        address: field("address").unwrap_or_default(),
                        interface: field("if").unwrap_or_default(),
                        metric: cost,
                    });
                }
            }
            ["add" | "change", "route", ..] if field("installed").as_deref() == Some("yes") => {
                let m: f64 = field("metric")
                    .and_then(|m| m.parse().ok())
                    .ok_or_else(|| ParseError::Invalid(format!("route without metric: {line}")))?;
                if m < 65535.0 {
                    metrics.push(m);
                }
            }
            _ => {}
        }
    }
    let path_metric = (!metrics.is_empty())
        .then(|| (metrics.iter().sum::<f64>() / metrics.len() as f64 / 1024.0).min(1.0));
    Ok(MeshStatus {
        source: "babel".into(),
        mesh_ok: !neighbour_list.is_empty(),
        neighbours: neighbour_list.len() as u32,
        path_metric,
        routes: metrics.len() as u32,
        neighbour_list,
        polled_at_ms: 0,
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ManualFile {
    mesh_ok: bool,
    #[serde(default)]
    neighbours: u32,
    #[serde(default)]
    path_metric: Option<f64>,
}

/// Parses a manual metrics file.
pub fn parse_manual(text: &str) -> Result<MeshStatus, ParseError> {
    let m: ManualFile = serde_json::from_str(text).map_err(|e| ParseError::Json(e.to_string()))?;
    if let Some(p) = m.path_metric {
        if !(0.0..=1.0).contains(&p) {
            return Err(ParseError::Invalid(format!("path_metric {p} not in 0..=1")));
        }
    }
    Ok(MeshStatus {
        source: "file".into(),
        mesh_ok: m.mesh_ok,
        neighbours: m.neighbours,
        path_metric: m.path_metric,
        routes: 0,
        neighbour_list: Vec::new(),
        polled_at_ms: 0,
    })
}

#[cfg(test)]
// A panic in a test is a failure with a message, which is what a test wants.
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    const NEIGHBORS: &str = include_str!("fixtures/batctl_neighbors.json");
    const ORIGINATORS: &str = include_str!("fixtures/batctl_originators.json");
    const BATMAN_V_ORIG: &str = include_str!("fixtures/batctl_v_originators.json");
    const BABEL: &str = include_str!("fixtures/babeld_dump.txt");

    #[test]
    fn batman_iv_capture_gives_neighbours_routes_and_tq_metric() {
        let s = parse_batman(NEIGHBORS, ORIGINATORS).unwrap();
        assert!(s.mesh_ok);
        // Three neighbours, one of them not heard for 42 s.
        assert_eq!(s.neighbours, 2);
        assert_eq!(s.routes, 4);
        // Best TQs 250, 250, 150, 183: mean 208.25 → 1 − 208.25/255.
        let m = s.path_metric.unwrap();
        assert!((m - (1.0 - 208.25 / 255.0)).abs() < 1e-9, "{m}");
        assert_eq!(s.neighbour_list[0].interface, "wlan0");
    }

    #[test]
    fn batman_v_uses_throughput() {
        let s = parse_batman("[]", BATMAN_V_ORIG).unwrap();
        assert!(!s.mesh_ok);
        assert_eq!(s.routes, 2);
        // 54 Mbit/s and 26 Mbit/s: mean 40 → 0.6.
        assert!((s.path_metric.unwrap() - 0.6).abs() < 1e-9);
    }

    #[test]
    fn babel_capture_gives_neighbours_and_installed_routes() {
        let s = parse_babel_dump(BABEL).unwrap();
        assert!(s.mesh_ok);
        assert_eq!(s.neighbours, 2, "{:?}", s.neighbour_list);
        // Installed: 96 and 352; the uninstalled and the retracted (65535) ones don't count.
        assert_eq!(s.routes, 2);
        assert!((s.path_metric.unwrap() - 224.0 / 1024.0).abs() < 1e-9);
        assert_eq!(s.neighbour_list[0].address, "fe80::e828:cbff:fe65:aa2c");
    }

    #[test]
    fn empty_or_broken_input() {
        let s = parse_babel_dump("ok\n").unwrap();
        assert!(!s.mesh_ok);
        assert_eq!(s.path_metric, None);
        assert!(parse_batman("{", "[]").is_err());
        assert!(parse_batman("[]", "[{\"tq\": \"x\"}]").is_err());
        assert!(parse_babel_dump("add route 1 prefix 10.0.0.0/8 installed yes\n").is_err());
    }

    #[test]
    fn manual_file() {
        let s = parse_manual(r#"{"mesh_ok": true, "neighbours": 3, "path_metric": 0.2}"#).unwrap();
        assert_eq!(
            (s.mesh_ok, s.neighbours, s.path_metric),
            (true, 3, Some(0.2))
        );
        assert!(parse_manual(r#"{"mesh_ok": true, "path_metric": 3}"#).is_err());
        assert!(parse_manual(r#"{"neighbours": 3}"#).is_err());
    }
}
