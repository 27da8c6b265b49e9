//! `offgrid radio status` and `offgrid mesh`.

use clap::Subcommand;
use offgrid_api::radio::{MeshResponse, RadioResponse};

use crate::{client::Api, decode, num, output, table};

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
            let r: RadioResponse = decode(&v)?;
            output(json, &v, || render_radio(&r))
        }
    }
}

fn render_radio(r: &RadioResponse) -> String {
    let (true, Some(st)) = (r.enabled, &r.status) else {
        return "no radio links (start the node with --radio or [[radio]] entries)\n".into();
    };
    let rows: Vec<Vec<String>> = st
        .links
        .iter()
        .map(|l| {
            let budget = l.airtime_budget_ms;
            let used = l.airtime_window_ms;
            let pct = if budget > 0 {
                100.0 * used as f64 / budget as f64
            } else {
                0.0
            };
            vec![
                l.name.clone(),
                l.via.clone(),
                l.frames_in.to_string(),
                l.frames_out.to_string(),
                format!("{used}/{budget} ms ({pct:.1} %)"),
                format!("{}/{}", l.beacons_sent, l.beacons_heard),
                l.peers.len().to_string(),
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
        st.beacons_accepted, st.beacons_malformed, st.beacons_invalid, st.beacons_replayed
    ));
    for l in &st.links {
        for p in &l.peers {
            out.push_str(&format!("{}: {p}\n", l.name));
        }
    }
    out
}

/// `offgrid mesh`: mesh metrics and the broker's mesh factor.
pub async fn mesh(api: &Api, json: bool) -> anyhow::Result<()> {
    let v = api.get("/mesh").await?;
    let r: MeshResponse = decode(&v)?;
    output(json, &v, || {
        let Some(m) = &r.mesh else {
            return "no mesh metrics (no batctl, babeld or metrics file); mesh factor 1.0\n".into();
        };
        let mut out = format!(
            "source {}  ok {}  neighbours {}  path metric {}  routes {}  mesh factor {:.3}\n",
            m.source,
            m.mesh_ok,
            m.neighbours,
            m.path_metric.map_or("-".into(), |p| format!("{p:.3}")),
            m.routes,
            r.mesh_factor
        );
        let rows: Vec<Vec<String>> = m
            .neighbour_list
            .iter()
            .map(|n| {
                vec![
                    n.address.clone(),
                    n.interface.clone(),
                    n.metric.map(num).unwrap_or_default(),
                ]
            })
            .collect();
        if !rows.is_empty() {
            out.push_str(&table::render(&["NEIGHBOUR", "INTERFACE", "METRIC"], &rows));
        }
        out
    })
}
