//! `offgrid wallet`, `tx`, `ledger`, `settle`, `quorum`. Amounts are micro-credits
//! (1 credit = 1 000 000), always integers.

use std::time::Duration;

use anyhow::{bail, Context as _};
use clap::Subcommand;
use offgrid_ledger::{dag::validate_block, merkle, Block, SignedReceipt};
use serde_json::{json, Value};

use crate::{client::Api, output, s, table};

/// `offgrid wallet …`
#[derive(Debug, Subcommand)]
pub enum WalletCmd {
    /// Final balance of an account (this node's by default), in micro-credits.
    Balance {
        /// Peer id or `system`.
        account: Option<String>,
    },
}

/// `offgrid tx …`
#[derive(Debug, Subcommand)]
pub enum TxCmd {
    /// Send micro-credits from this node; prints the transaction id.
    Send {
        /// Destination peer id (or `system`).
        dst: String,
        /// Amount in micro-credits.
        amount: u64,
        /// Fee in micro-credits (the configured minimum by default).
        #[arg(long)]
        fee: Option<u64>,
        /// Nonce (the next free one by default).
        #[arg(long)]
        nonce: Option<u64>,
        /// Wait up to this many seconds for finality before printing.
        #[arg(long)]
        wait: Option<u64>,
    },
    /// One transaction: state (pending|final) and witnesses.
    Show {
        /// Transaction id.
        id: String,
    },
    /// Recent transactions, newest first.
    List {
        /// Most to show.
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
}

/// `offgrid ledger …`
#[derive(Debug, Subcommand)]
pub enum LedgerCmd {
    /// Recent blocks, newest first, and the DAG tips.
    Blocks {
        /// Most to show.
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// One block.
    Show {
        /// Block id (hash).
        hash: String,
    },
    /// A receipt's Merkle inclusion proof (by receipt hash or job id), verified here.
    Prove {
        /// Receipt hash or job id.
        receipt: String,
    },
    /// Put waiting receipts in a block now.
    MakeBlock {
        /// Make a block even when no receipts wait.
        #[arg(long)]
        empty: bool,
    },
    /// Ledger summary: blocks, tips, wallet, rejected gossip.
    Status,
}

/// `offgrid quorum …`
#[derive(Debug, Subcommand)]
pub enum QuorumCmd {
    /// One item: `offgrid quorum show <upload|job|token> <id>`.
    Show {
        /// upload, job or token.
        kind: String,
        /// Item id (for tokens, the transaction id).
        id: String,
    },
    /// Items, newest first.
    List {
        /// Only this kind.
        #[arg(long)]
        kind: Option<String>,
        /// Most to show.
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Policies per kind.
    Policy,
}

/// Formats micro-credits as `N µ (x credits)`.
fn credits(v: &Value) -> String {
    let Some(m) = v.as_u64() else { return s(v) };
    let frac = m % 1_000_000;
    let dec = if frac == 0 {
        (m / 1_000_000).to_string()
    } else {
        format!("{}.{:06}", m / 1_000_000, frac)
            .trim_end_matches('0')
            .to_owned()
    };
    format!("{m} µ ({dec} credits)")
}

pub async fn wallet(api: &Api, json: bool, cmd: WalletCmd) -> anyhow::Result<()> {
    let WalletCmd::Balance { account } = cmd;
    let path = match &account {
        Some(a) => format!("/wallet/balance?account={a}"),
        None => "/wallet/balance".into(),
    };
    let v = api.get(&path).await?;
    output(json, &v, || {
        format!(
            "account  {}\nbalance  {}\nnonce    {}\n",
            s(&v["account"]),
            credits(&v["balance"]),
            v["nonce"]
        )
    })
}

pub async fn tx(api: &Api, json: bool, cmd: TxCmd) -> anyhow::Result<()> {
    match cmd {
        TxCmd::Send {
            dst,
            amount,
            fee,
            nonce,
            wait,
        } => {
            let mut body = json!({ "dst": dst, "amount": amount });
            if let Some(f) = fee {
                body["fee"] = json!(f);
            }
            if let Some(n) = nonce {
                body["nonce"] = json!(n);
            }
            if let Some(w) = wait {
                body["wait_ms"] = json!(w.saturating_mul(1000));
            }
            let timeout = Duration::from_secs(wait.unwrap_or(0) + 30);
            let mut v = api.post("/wallet/tx", &body, timeout).await?;
            if let Some(o) = v.as_object_mut() {
                o.remove("tx");
            }
            output(json, &v, || match v.get("view") {
                Some(view) => format!("{} {}\n", s(&v["tx_id"]), s(&view["state"])),
                None => format!("{}\n", s(&v["tx_id"])),
            })
        }
        TxCmd::Show { id } => {
            let v = api.get(&format!("/wallet/tx/{id}")).await?;
            output(json, &v, || describe_tx(&v))
        }
        TxCmd::List { limit } => {
            let v = api.get(&format!("/wallet/txs?limit={limit}")).await?;
            output(json, &v, || {
                let rows: Vec<Vec<String>> = list(&v["txs"])
                    .iter()
                    .map(|t| {
                        vec![
                            s(&t["id"]).chars().take(16).collect(),
                            s(&t["state"]),
                            s(&t["kind"]),
                            s(&t["src"]).chars().take(16).collect(),
                            s(&t["dst"]).chars().take(16).collect(),
                            s(&t["amount"]),
                            s(&t["nonce"]),
                        ]
                    })
                    .collect();
                table::render(
                    &["ID", "STATE", "KIND", "SRC", "DST", "AMOUNT µ", "NONCE"],
                    &rows,
                )
            })
        }
    }
}

fn list(v: &Value) -> &[Value] {
    v.as_array().map(Vec::as_slice).unwrap_or_default()
}

fn describe_tx(v: &Value) -> String {
    let witnesses: Vec<String> = list(&v["witnesses"]).iter().map(s).collect();
    format!(
        "id         {}\nstate      {}\nkind       {}\nsrc        {}\ndst        {}\namount     {}\nfee        {}\nnonce      {}\nmeta       {}\nweight     {} / {} (milli)\nwitnesses  {}\n",
        s(&v["id"]),
        s(&v["state"]),
        s(&v["kind"]),
        s(&v["src"]),
        s(&v["dst"]),
        credits(&v["amount"]),
        credits(&v["fee"]),
        v["nonce"],
        s(&v["meta"]),
        v["weight_milli"],
        v["quorum_milli"],
        witnesses.join("\n           "),
    )
}

pub async fn ledger(api: &Api, json: bool, cmd: LedgerCmd) -> anyhow::Result<()> {
    match cmd {
        LedgerCmd::Blocks { limit } => {
            let v = api.get(&format!("/ledger/blocks?limit={limit}")).await?;
            output(json, &v, || {
                let rows: Vec<Vec<String>> = list(&v["blocks"])
                    .iter()
                    .map(|b| {
                        vec![
                            s(&b["id"]),
                            s(&b["author"]).chars().take(20).collect(),
                            s(&b["receipts"]),
                            list(&b["parents"]).len().to_string(),
                        ]
                    })
                    .collect();
                format!(
                    "{} blocks, tips: {}\n{}",
                    v["count"],
                    list(&v["tips"]).iter().map(s).collect::<Vec<_>>().join(" "),
                    table::render(&["ID", "AUTHOR", "RECEIPTS", "PARENTS"], &rows)
                )
            })
        }
        LedgerCmd::Show { hash } => {
            let v = api.get(&format!("/ledger/blocks/{hash}")).await?;
            output(json, &v, || {
                format!(
                    "id        {}\nauthor    {}\ntime ms   {}\nroot      {}\nreceipts  {}\nparents   {}\n",
                    s(&v["id"]),
                    s(&v["author"]),
                    v["timestamp_ms"],
                    s(&v["root"]),
                    v["receipts"],
                    list(&v["parents"]).iter().map(s).collect::<Vec<_>>().join("\n          "),
                )
            })
        }
        LedgerCmd::Prove { receipt } => {
            let mut v = api.get(&format!("/ledger/prove/{receipt}")).await?;
            let block = api
                .get(&format!("/ledger/blocks/{}", s(&v["block"])))
                .await?;
            let checked = verify_proof(&v, &block["block"]);
            v["verified_locally"] = json!(checked.is_ok());
            if let Err(e) = &checked {
                v["verify_error"] = json!(e.to_string());
            }
            output(json, &v, || {
                format!(
                    "receipt  {}\nblock    {}\nroot     {}\nindex    {}\nsteps    {}\nverified {}\n",
                    s(&v["receipt_hash"]),
                    s(&v["block"]),
                    s(&v["root"]),
                    v["proof"]["index"],
                    list(&v["proof"]["siblings"]).len(),
                    match &checked {
                        Ok(()) => "yes (block signature, batch root and Merkle path checked here)".into(),
                        Err(e) => format!("NO: {e}"),
                    }
                )
            })?;
            if checked.is_err() {
                bail!("the proof does not verify");
            }
            Ok(())
        }
        LedgerCmd::MakeBlock { empty } => {
            let v = api
                .post(
                    "/ledger/blocks",
                    &json!({ "allow_empty": empty }),
                    Duration::from_secs(30),
                )
                .await?;
            output(json, &v, || {
                let ids: Vec<String> = list(&v["created"]).iter().map(s).collect();
                if ids.is_empty() {
                    "no receipts waiting; no block made\n".into()
                } else {
                    format!("{}\n", ids.join("\n"))
                }
            })
        }
        LedgerCmd::Status => {
            let v = api.get("/ledger/status").await?;
            output(json, &v, || {
                serde_json::to_string_pretty(&v).unwrap_or_default() + "\n"
            })
        }
    }
}

/// Checks a proof independently of the node: the block's signature and receipts, that its
/// batch root is the proof's root, and the Merkle path from the receipt's bytes to the root.
fn verify_proof(proof: &Value, block: &Value) -> anyhow::Result<()> {
    let block: Block = serde_json::from_value(block.clone()).context("block does not decode")?;
    let valid = validate_block(&block).context("block does not validate")?;
    let root_hex = s(&proof["root"]);
    if valid.body.batch.root != root_hex {
        bail!("the block's batch root is not the proof's root");
    }
    let receipt: SignedReceipt =
        serde_json::from_value(proof["receipt"].clone()).context("receipt does not decode")?;
    receipt.verify_signature().context("receipt signature")?;
    let p: merkle::Proof =
        serde_json::from_value(proof["proof"].clone()).context("proof does not decode")?;
    let root = hex32(&root_hex).context("root is not 32 hex bytes")?;
    if !merkle::verify(&receipt.bytes, &p, &root) {
        bail!("the Merkle path does not lead to the root");
    }
    Ok(())
}

fn hex32(s: &str) -> Option<[u8; 32]> {
    let b = s.as_bytes();
    if b.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        let hi = (b[2 * i] as char).to_digit(16)?;
        let lo = (b[2 * i + 1] as char).to_digit(16)?;
        *o = (hi * 16 + lo) as u8;
    }
    Some(out)
}

pub async fn settle(api: &Api, json: bool) -> anyhow::Result<()> {
    let v = api
        .post("/ledger/settle", &json!({}), Duration::from_secs(60))
        .await?;
    output(json, &v, || {
        let mut out = format!(
            "{} new block(s), {} mint(s) submitted\n",
            list(&v["blocks"]).len(),
            v["submitted"]
        );
        for m in list(&v["mints"]) {
            out.push_str(&format!(
                "  {}  {} → {}  {}\n",
                s(&m["id"]).chars().take(16).collect::<String>(),
                credits(&m["amount"]),
                s(&m["dst"]),
                s(&m["state"])
            ));
        }
        out
    })
}

pub async fn quorum(api: &Api, json: bool, cmd: QuorumCmd) -> anyhow::Result<()> {
    match cmd {
        QuorumCmd::Show { kind, id } => {
            let v = api.get(&format!("/quorum/items/{kind}/{id}")).await?;
            output(json, &v, || describe_item(&v))
        }
        QuorumCmd::List { kind, limit } => {
            let path = match kind {
                Some(k) => format!("/quorum/items?kind={k}&limit={limit}"),
                None => format!("/quorum/items?limit={limit}"),
            };
            let v = api.get(&path).await?;
            output(json, &v, || {
                let rows: Vec<Vec<String>> = list(&v["items"])
                    .iter()
                    .map(|i| {
                        vec![
                            s(&i["kind"]),
                            s(&i["id"]).chars().take(24).collect(),
                            format!("{:.3}", i["effective_weight"].as_f64().unwrap_or(0.0)),
                            s(&i["required"]),
                            s(&i["reached"]),
                            list(&i["acks"]).len().to_string(),
                        ]
                    })
                    .collect();
                table::render(
                    &["KIND", "ID", "WEIGHT", "REQUIRED", "REACHED", "ACKS"],
                    &rows,
                )
            })
        }
        QuorumCmd::Policy => {
            let v = api.get("/quorum/policy").await?;
            output(json, &v, || {
                serde_json::to_string_pretty(&v).unwrap_or_default() + "\n"
            })
        }
    }
}

fn describe_item(v: &Value) -> String {
    let acks: Vec<String> = list(&v["acks"])
        .iter()
        .map(|a| format!("{} weight {} at {}", s(&a["node"]), a["weight"], a["at_ms"]))
        .collect();
    format!(
        "kind      {}\nid        {}\nweight    {:.3} of {}\nreached   {}\nprogress  {}\nacks      {}\n",
        s(&v["kind"]),
        s(&v["id"]),
        v["effective_weight"].as_f64().unwrap_or(0.0),
        v["required"],
        v["reached"],
        v["progress"],
        acks.join("\n          "),
    )
}
