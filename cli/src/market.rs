//! `offgrid job`, `quote`, `receipts`, `reputation`.

use std::time::Duration;

use anyhow::Context as _;
use clap::Subcommand;
use serde_json::{json, Value};

use crate::{client::Api, output, s, table};

/// `offgrid job …`
#[derive(Debug, Subcommand)]
pub enum JobCmd {
    /// Run a job: auction among hosts, run on the winner, print output and receipt.
    Run {
        /// Job type (hosts need an executor for it).
        #[arg(long = "type")]
        job_type: String,
        /// Size in units (decimal).
        #[arg(long, default_value = "1")]
        size: String,
        /// Payload as JSON.
        #[arg(long, default_value = "{}")]
        payload: String,
        /// Overall deadline in seconds.
        #[arg(long, default_value_t = 30)]
        timeout: u64,
        /// Run on R hosts and accept only if their outputs agree.
        #[arg(long, default_value_t = 1)]
        redundancy: usize,
        /// Job id (idempotency key); generated when absent.
        #[arg(long)]
        job_id: Option<String>,
    },
}

/// `offgrid receipts …`
#[derive(Debug, Subcommand)]
pub enum ReceiptsCmd {
    /// Receipts issued since the last export, as a Merkle batch with proofs.
    Export,
}

pub async fn job(api: &Api, json: bool, cmd: JobCmd) -> anyhow::Result<()> {
    let JobCmd::Run {
        job_type,
        size,
        payload,
        timeout,
        redundancy,
        job_id,
    } = cmd;
    let payload: Value = serde_json::from_str(&payload).context("--payload is not valid JSON")?;
    let mut body = json!({
        "type": job_type, "size": size, "payload": payload,
        "timeout_s": timeout, "redundancy": redundancy,
    });
    if let Some(id) = job_id {
        body["job_id"] = json!(id);
    }
    let v = api
        .post("/market/run", &body, Duration::from_secs(timeout + 5))
        .await?;
    output(json, &v, || {
        let r = &v["receipt"];
        format!(
            "job       {}\nhost      {}\nprice     {} per unit\noutput    {}\nreceipt   units {} · latency {} ms · tokens {} · sig {}…\nattempts  {}\n",
            s(&v["job_id"]),
            s(&v["host"]),
            v["price"],
            v["output"],
            r["units"],
            r["metrics"]["latency_ms"],
            r["metrics"]["compute_tokens"],
            s(&r["sig"]).chars().take(16).collect::<String>(),
            v["attempts"]
                .as_array()
                .map(|a| a.iter().map(|x| format!("{}: {}", short(&s(&x["host"])), s(&x["outcome"]))).collect::<Vec<_>>().join(", "))
                .unwrap_or_default(),
        )
    })
}

fn short(peer: &str) -> String {
    if peer.len() > 16 {
        format!("…{}", &peer[peer.len() - 8..])
    } else {
        peer.to_owned()
    }
}

pub async fn quote(
    api: &Api,
    json: bool,
    peer: &str,
    job_type: &str,
    size: &str,
) -> anyhow::Result<()> {
    let path = format!(
        "/market/quote?peer={}&type={}&size={}",
        enc(peer),
        enc(job_type),
        enc(size)
    );
    let v = api.get(&path).await?;
    output(json, &v, || {
        if let Some(reason) = v.get("declined") {
            format!("declined: {}\n", s(reason))
        } else if v.get("busy").is_some() {
            format!("busy; retry in {} ms\n", v["retry_after_ms"])
        } else {
            format!(
                "price {} per unit · valid until {} · capacity left {}\n",
                v["price"], v["valid_until_ms"], v["capacity_left"]
            )
        }
    })
}

fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

pub async fn receipts(api: &Api, json: bool, cmd: ReceiptsCmd) -> anyhow::Result<()> {
    let ReceiptsCmd::Export = cmd;
    let v = api.get("/receipts/export").await?;
    output(json, &v, || match v["count"].as_u64() {
        Some(0) | None => "no receipts since the last export\n".into(),
        Some(n) => format!("exported {n} receipt(s); batch root {}\n", s(&v["root"])),
    })
}

pub async fn reputation(api: &Api, json: bool) -> anyhow::Result<()> {
    let v = api.get("/reputation").await?;
    output(json, &v, || {
        let rows: Vec<Vec<String>> = v["reputation"]
            .as_array()
            .map(|a| a.as_slice())
            .unwrap_or_default()
            .iter()
            .map(|r| {
                vec![
                    s(&r["peer"]),
                    r["hits"].to_string(),
                    r["misses"].to_string(),
                    format!("{:.3}", r["factor"].as_f64().unwrap_or(0.0)),
                ]
            })
            .collect();
        table::render(&["PEER", "HITS", "MISSES", "FACTOR"], &rows)
    })
}
