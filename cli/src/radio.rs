//! `offgrid radio status` and `offgrid mesh`.

use clap::Subcommand;
use serde_json::Value;

use crate::{client::Api, output, s, table};

/// Radio commands.
#[derive(Debug, Subcommand)]
pub enum RadioCmd {
    /// Links, frames in and out, airtime used against the budget, peers per link.
    Status,
}

/// Runs a radio command.
pub async fn radio(api: &Api, json: bool, cmd: RadioCmd) -> anyhow::Result<()> {
    match cmd {
        RadioCmd::Status => {
            let v = api.get("/radio").await?;
            output(json, &v, || render_radio(&v))
        }
    }
}

fn render_radio(v: &Value) -> String {
    if v["enabled"] != Value::Bool(true) {
        return "no radio links (start the node with --radio or [[radio]] entries)\n".into();
    }
    let st = &v["status"];
    let links = st["links"]
        .as_array()
        .map(|a| a.as_slice())
        .unwrap_or_default();
    let rows: Vec<Vec<String>> = links
        .iter()
        .map(|l| {
            let budget = l["airtime_budget_ms"].as_u64().unwrap_or(0);
            let used = l["airtime_window_ms"].as_u64().unwrap_or(0);
            let pct = if budget > 0 {
                100.0 * used as f64 / budget as f64
            } else {
                0.0
            };
            vec![
                s(&l["name"]),
                s(&l["via"]),
                s(&l["frames_in"]),
                s(&l["frames_out"]),
                format!("{used}/{budget} ms ({pct:.1} %)"),
                format!("{}/{}", s(&l["beacons_sent"]), s(&l["beacons_heard"])),
                l["peers"].as_array().map_or(0, Vec::len).to_string(),
            ]
        })
        .collect();
    let mut out = table::render(
        &[
            "LINK",
            "VIA",
            "IN",
            "OUT",
            "AIRTIME/BUDGET",
            "BEACONS OUT/IN",
            "PEERS",
        ],
        &rows,
    );
    out.push_str(&format!(
        "beacons accepted {}, malformed {}, bad signature {}, replayed {}\n",
        s(&st["beacons_accepted"]),
        s(&st["beacons_malformed"]),
        s(&st["beacons_invalid"]),
        s(&st["beacons_replayed"])
    ));
    for l in links {
        for p in l["peers"]
            .as_array()
            .map(|a| a.as_slice())
            .unwrap_or_default()
        {
            out.push_str(&format!("{}: {}\n", s(&l["name"]), s(p)));
        }
    }
    out
}

/// `offgrid mesh`: mesh metrics and the broker's mesh factor.
pub async fn mesh(api: &Api, json: bool) -> anyhow::Result<()> {
    let v = api.get("/mesh").await?;
    output(json, &v, || {
        let m = &v["mesh"];
        if m.is_null() {
            return "no mesh metrics (no batctl, babeld or metrics file); mesh factor 1.0\n".into();
        }
        let mut out = format!(
            "source {}  ok {}  neighbours {}  path metric {}  routes {}  mesh factor {:.3}\n",
            s(&m["source"]),
            s(&m["mesh_ok"]),
            s(&m["neighbours"]),
            m["path_metric"]
                .as_f64()
                .map_or("-".into(), |p| format!("{p:.3}")),
            s(&m["routes"]),
            v["mesh_factor"].as_f64().unwrap_or(1.0)
        );
        let rows: Vec<Vec<String>> = m["neighbour_list"]
            .as_array()
            .map(|a| a.as_slice())
            .unwrap_or_default()
            .iter()
            .map(|n| vec![s(&n["address"]), s(&n["interface"]), s(&n["metric"])])
            .collect();
        if !rows.is_empty() {
            out.push_str(&table::render(&["NEIGHBOUR", "INTERFACE", "METRIC"], &rows));
        }
        out
    })
}
