//! `offgrid job`, `quote`, `receipts`, `reputation`.

use std::time::Duration;

use anyhow::Context as _;
use clap::Subcommand;
use offgrid_api::market::{
    ExportResponse, QuoteResponse, ReputationResponse, RunRequest, RunResponse,
};
use serde_json::Value;

use crate::{client::Api, decode, num, opt, output, table};

/// `offgrid job …`
#[derive(Debug, Subcommand)]
pub enum JobCmd {
    /// Run a job: auction among hosts, run on the winner, print output and receipt.
    Run {
        /// Job type (hosts need an executor for it).
        #[arg(long = "type")]
        job_type: String,
        /// Size in units (decimal). Absent: an LLM call (a payload with `prompt` or
        /// `messages`) is sized by the node from its prompt and `max_tokens`, anything else
        /// is 1 unit.
        #[arg(long)]
        size: Option<String>,
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
        /// Run on this host only (its peer id), paid and receipted as usual.
        #[arg(long)]
        host: Option<String>,
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
        host,
    } = cmd;
    let payload: Value = serde_json::from_str(&payload).context("--payload is not valid JSON")?;
    let body = RunRequest {
        job_id,
        job_type,
        size: size.map(Value::String),
        payload,
        timeout_s: Some(timeout),
        redundancy: Some(redundancy),
        host,
    };
    let v = api
        .post(
            "/market/run",
            &serde_json::to_value(&body)?,
            Duration::from_secs(timeout + 5),
        )
        .await?;
    let r: RunResponse = decode(&v)?;
    output(json, &v, || {
        let rc = &r.receipt;
        format!(
            "job       {}\nhost      {}\nprice     {} per unit\noutput    {}\nreceipt   units {} · latency {} ms · tokens {} · sig {}…\nattempts  {}\n",
            r.job_id,
            r.host,
            num(r.price),
            r.output,
            rc.units,
            rc.metrics.latency_ms,
            rc.metrics.compute_tokens,
            rc.envelope.sig.chars().take(16).collect::<String>(),
            r.attempts
                .iter()
                .map(|x| format!("{}: {}", short(&x.host), x.outcome))
                .collect::<Vec<_>>()
                .join(", "),
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
    let q: QuoteResponse = decode(&v)?;
    output(json, &v, || {
        if let Some(reason) = &q.declined {
            format!("declined: {reason}\n")
        } else if q.busy.is_some() {
            format!("busy; retry in {} ms\n", opt(q.retry_after_ms))
        } else {
            format!(
                "price {} per unit · valid until {} · capacity left {}\n",
                q.price.map_or("null".into(), num),
                opt(q.valid_until_ms),
                opt(q.capacity_left)
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
    let e: ExportResponse = decode(&v)?;
    output(json, &v, || match e.count {
        0 => "no receipts since the last export\n".into(),
        n => format!(
            "exported {n} receipt(s); batch root {}\n",
            e.root.unwrap_or_default()
        ),
    })
}

pub async fn reputation(api: &Api, json: bool) -> anyhow::Result<()> {
    let v = api.get("/reputation").await?;
    let rep: ReputationResponse = decode(&v)?;
    output(json, &v, || {
        let rows: Vec<Vec<String>> = rep
            .reputation
            .iter()
            .map(|r| {
                vec![
                    r.peer.clone(),
                    r.hits.to_string(),
                    r.misses.to_string(),
                    format!("{:.3}", r.factor),
                ]
            })
            .collect();
        table::render(&["PEER", "HITS", "MISSES", "FACTOR"], &rows)
    })
}
