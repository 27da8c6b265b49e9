//! `offgrid wallet`, `tx`, `ledger`, `settle`, `quorum`. Amounts are micro-credits
//! (1 credit = 1 000 000), always integers.

use std::time::Duration;

use anyhow::{bail, Context as _};
use clap::Subcommand;
use offgrid_api::{
    ledger::{
        Balance, Balances, BlockDetail, BlockList, CreateBlockRequest, CreatedBlocks, LedgerStatus,
        QuorumItemView, QuorumItems, QuorumPolicy, ReceiptProof, ReconfigResponse, SendRequest,
        SendResponse, SettleResponse, TxList, TxView, WalletGenesis, WalletInitRequest,
        WalletJoinRequest, WitnessChange, WitnessSpec,
    },
    market::SignedEnvelope,
};
use offgrid_ledger::{dag::validate_block, merkle, Block, SignedReceipt};
use serde_json::Value;

use crate::{client::Api, decode, num, output, table};

/// `offgrid wallet …`
#[derive(Debug, Subcommand)]
pub enum WalletCmd {
    /// Final balance of an account (this node's by default), in micro-credits.
    Balance {
        /// Peer id or `system`.
        account: Option<String>,
    },
    /// Every account's final balance and the supply; `--json` prints
    /// `{"accounts": {ACCOUNT: MICRO, …}, "supply": MICRO}`.
    Balances,
    /// Start the wallet of a fresh mesh: sign a genesis here and run it. `--json` prints
    /// `{"genesis_id": …}`; other nodes join with `offgrid wallet join GENESIS_ID`.
    Init {
        /// A witness of epoch 0, `PEER` or `PEER=WEIGHT` (weight 1.0 by default); repeat.
        #[arg(long = "witness", value_name = "PEER[=WEIGHT]", required = true)]
        witnesses: Vec<String>,
        /// An initial balance, `ACCOUNT=MICRO` (peer id or `system`); repeat.
        #[arg(long = "alloc", value_name = "ACCOUNT=MICRO")]
        alloc: Vec<String>,
        /// Weight a transaction's attestations must reach (default: just over half).
        #[arg(long)]
        quorum: Option<f64>,
    },
    /// Change the witness set: a reconfiguration, final once the current epoch's quorum asks
    /// for the same change; it opens the next epoch.
    #[command(subcommand)]
    Witnesses(WitnessesCmd),
    /// Join the wallet of a genesis made elsewhere: fetch it from peers, check it, run it.
    Join {
        /// The id `offgrid wallet init` printed.
        genesis_id: String,
        /// Give up waiting after this many seconds (the node keeps asking).
        #[arg(long, default_value_t = 30)]
        wait: u64,
    },
}

/// `offgrid wallet witnesses …`
#[derive(Debug, Subcommand)]
pub enum WitnessesCmd {
    /// Add a witness (run it on witnesses of the current epoch holding a quorum).
    Add {
        /// The new witness's peer id.
        peer: String,
        /// Its weight.
        #[arg(long, default_value_t = 1.0)]
        weight: f64,
        /// The new epoch's quorum weight (default: just over half).
        #[arg(long)]
        quorum: Option<f64>,
        /// Seconds to wait for it to be final (0: do not wait).
        #[arg(long, default_value_t = 30)]
        wait: u64,
    },
    /// Remove a witness (run it on witnesses of the current epoch holding a quorum).
    Remove {
        /// The witness's peer id.
        peer: String,
        /// The new epoch's quorum weight (default: just over half).
        #[arg(long)]
        quorum: Option<f64>,
        /// Seconds to wait for it to be final (0: do not wait).
        #[arg(long, default_value_t = 30)]
        wait: u64,
    },
}

/// `PEER[=WEIGHT]` of `wallet init --witness`.
fn parse_witness(s: &str) -> anyhow::Result<WitnessSpec> {
    let (peer, weight) = match s.split_once('=') {
        Some((p, w)) => (
            p,
            Some(
                w.parse::<f64>()
                    .with_context(|| format!("--witness {s}: weight {w:?} is not a number"))?,
            ),
        ),
        None => (s, None),
    };
    Ok(WitnessSpec {
        peer: peer.to_owned(),
        weight,
    })
}

/// `ACCOUNT=MICRO` of `wallet init --alloc`.
fn parse_alloc(s: &str) -> anyhow::Result<(String, u64)> {
    let (a, m) = s
        .split_once('=')
        .with_context(|| format!("--alloc {s}: expected ACCOUNT=MICRO"))?;
    let m = m
        .parse::<u64>()
        .with_context(|| format!("--alloc {s}: {m:?} is not a whole number of micro-credits"))?;
    Ok((a.to_owned(), m))
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
        /// Fee in micro-credits (halfway between the configured minimum and maximum by
        /// default).
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
fn credits(m: u64) -> String {
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
    let account = match cmd {
        WalletCmd::Balance { account } => account,
        WalletCmd::Init {
            witnesses,
            alloc,
            quorum,
        } => {
            let mut accounts = std::collections::BTreeMap::new();
            for a in &alloc {
                let (acct, micro) = parse_alloc(a)?;
                if accounts.insert(acct.clone(), micro).is_some() {
                    bail!("--alloc {acct} given twice");
                }
            }
            let req = WalletInitRequest {
                witnesses: witnesses
                    .iter()
                    .map(|w| parse_witness(w))
                    .collect::<anyhow::Result<_>>()?,
                alloc: accounts,
                quorum,
                tx_fee_min: None,
                tx_fee_max: None,
            };
            let v = api
                .post(
                    "/wallet/init",
                    &serde_json::to_value(&req)?,
                    Duration::from_secs(30),
                )
                .await?;
            let g: WalletGenesis = decode(&v)?;
            let printed = serde_json::json!({ "genesis_id": g.genesis_id });
            return output(json, &printed, || {
                format!(
                    "genesis {}\nthe wallet runs; other nodes join with `offgrid wallet join {}`\n",
                    g.genesis_id, g.genesis_id
                )
            });
        }
        WalletCmd::Witnesses(cmd) => {
            let (op, peer, weight, quorum, wait) = match cmd {
                WitnessesCmd::Add {
                    peer,
                    weight,
                    quorum,
                    wait,
                } => ("add", peer, Some(weight), quorum, wait),
                WitnessesCmd::Remove { peer, quorum, wait } => ("remove", peer, None, quorum, wait),
            };
            let req = WitnessChange {
                op: op.into(),
                peer,
                weight,
                quorum,
                wait_ms: (wait > 0).then(|| wait.saturating_mul(1000)),
            };
            let v = api
                .post(
                    "/wallet/witnesses",
                    &serde_json::to_value(&req)?,
                    Duration::from_secs(wait + 10),
                )
                .await?;
            let r: ReconfigResponse = decode(&v)?;
            return output(json, &v, || {
                let state = match &r.view {
                    Some(view) => view.state.clone(),
                    None => "submitted".into(),
                };
                format!(
                    "reconfiguration {} opening epoch {}: {state}\n",
                    r.tx_id, r.epoch
                )
            });
        }
        WalletCmd::Join { genesis_id, wait } => {
            let req = WalletJoinRequest {
                genesis_id,
                wait_ms: Some(wait.saturating_mul(1000)),
            };
            let v = api
                .post(
                    "/wallet/join",
                    &serde_json::to_value(&req)?,
                    Duration::from_secs(wait + 10),
                )
                .await?;
            let g: WalletGenesis = decode(&v)?;
            return output(json, &v, || {
                format!("joined the wallet of genesis {}\n", g.genesis_id)
            });
        }
        WalletCmd::Balances => {
            let v = api.get("/wallet/balances").await?;
            let b: Balances = decode(&v)?;
            return output(json, &v, || {
                let rows: Vec<Vec<String>> = b
                    .accounts
                    .iter()
                    .map(|(a, m)| vec![a.clone(), credits(*m)])
                    .collect();
                table::render(&["ACCOUNT", "BALANCE"], &rows)
                    + &format!("supply {}\n", credits(b.supply))
            });
        }
    };
    let path = match &account {
        Some(a) => format!("/wallet/balance?account={a}"),
        None => "/wallet/balance".into(),
    };
    let v = api.get(&path).await?;
    let b: Balance = decode(&v)?;
    output(json, &v, || {
        format!(
            "account  {}\nbalance  {}\nnonce    {}\n",
            b.account,
            credits(b.balance),
            b.nonce
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
            let body = SendRequest {
                dst,
                amount,
                fee,
                nonce,
                submit: None,
                wait_ms: wait.map(|w| w.saturating_mul(1000)),
            };
            let timeout = Duration::from_secs(wait.unwrap_or(0) + 30);
            let mut v = api
                .post("/wallet/tx", &serde_json::to_value(&body)?, timeout)
                .await?;
            // The signed transaction is for programs that relay it, not for this output.
            if let Some(o) = v.as_object_mut() {
                o.remove("tx");
            }
            let r: SendResponse = decode(&v)?;
            output(json, &v, || match &r.view {
                Some(view) => format!("{} {}\n", r.tx_id, view.state),
                None => format!("{}\n", r.tx_id),
            })
        }
        TxCmd::Show { id } => {
            let v = api.get(&format!("/wallet/tx/{id}")).await?;
            let t: TxView = decode(&v)?;
            output(json, &v, || describe_tx(&t))
        }
        TxCmd::List { limit } => {
            let v = api.get(&format!("/wallet/txs?limit={limit}")).await?;
            let l: TxList = decode(&v)?;
            output(json, &v, || {
                let rows: Vec<Vec<String>> = l
                    .txs
                    .iter()
                    .map(|t| {
                        vec![
                            t.id.chars().take(16).collect(),
                            t.state.clone(),
                            t.kind.clone(),
                            t.src.chars().take(16).collect(),
                            t.dst.chars().take(16).collect(),
                            t.amount.to_string(),
                            t.nonce.to_string(),
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

fn describe_tx(t: &TxView) -> String {
    format!(
        "id         {}\nstate      {}\nkind       {}\nsrc        {}\ndst        {}\namount     {}\nfee        {}\nnonce      {}\nmeta       {}\nweight     {} / {} (milli)\nwitnesses  {}\n",
        t.id,
        t.state,
        t.kind,
        t.src,
        t.dst,
        credits(t.amount),
        credits(t.fee),
        t.nonce,
        t.meta.as_deref().unwrap_or_default(),
        t.weight_milli,
        t.quorum_milli,
        t.witnesses.join("\n           "),
    )
}

pub async fn ledger(api: &Api, json: bool, cmd: LedgerCmd) -> anyhow::Result<()> {
    match cmd {
        LedgerCmd::Blocks { limit } => {
            let v = api.get(&format!("/ledger/blocks?limit={limit}")).await?;
            let l: BlockList = decode(&v)?;
            output(json, &v, || {
                let rows: Vec<Vec<String>> = l
                    .blocks
                    .iter()
                    .map(|b| {
                        vec![
                            b.id.clone(),
                            b.author.chars().take(20).collect(),
                            b.receipts.to_string(),
                            b.parents.len().to_string(),
                        ]
                    })
                    .collect();
                format!(
                    "{} blocks, tips: {}\n{}",
                    l.count,
                    l.tips.join(" "),
                    table::render(&["ID", "AUTHOR", "RECEIPTS", "PARENTS"], &rows)
                )
            })
        }
        LedgerCmd::Show { hash } => {
            let v = api.get(&format!("/ledger/blocks/{hash}")).await?;
            let b: BlockDetail = decode(&v)?;
            output(json, &v, || {
                let b = &b.summary;
                format!(
                    "id        {}\nauthor    {}\ntime ms   {}\nroot      {}\nreceipts  {}\nparents   {}\n",
                    b.id,
                    b.author,
                    b.timestamp_ms,
                    b.root,
                    b.receipts,
                    b.parents.join("\n          "),
                )
            })
        }
        LedgerCmd::Prove { receipt } => {
            let mut v = api.get(&format!("/ledger/prove/{receipt}")).await?;
            let proof: ReceiptProof = decode(&v)?;
            let block: BlockDetail =
                decode(&api.get(&format!("/ledger/blocks/{}", proof.block)).await?)?;
            let checked = verify_proof(&proof, &block.block);
            if let Some(o) = v.as_object_mut() {
                o.insert("verified_locally".into(), Value::Bool(checked.is_ok()));
                if let Err(e) = &checked {
                    o.insert("verify_error".into(), Value::String(e.to_string()));
                }
            }
            output(json, &v, || {
                format!(
                    "receipt  {}\nblock    {}\nroot     {}\nindex    {}\nsteps    {}\nverified {}\n",
                    proof.receipt_hash,
                    proof.block,
                    proof.root,
                    proof.proof.index,
                    proof.proof.siblings.len(),
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
            let body = CreateBlockRequest { allow_empty: empty };
            let v = api
                .post(
                    "/ledger/blocks",
                    &serde_json::to_value(body)?,
                    Duration::from_secs(30),
                )
                .await?;
            let c: CreatedBlocks = decode(&v)?;
            output(json, &v, || {
                if c.created.is_empty() {
                    "no receipts waiting; no block made\n".into()
                } else {
                    format!("{}\n", c.created.join("\n"))
                }
            })
        }
        LedgerCmd::Status => {
            let v = api.get("/ledger/status").await?;
            let st: LedgerStatus = decode(&v)?;
            output(json, &v, || describe_status(&st))
        }
    }
}

/// Checks a proof independently of the node: the block's signature and receipts, that its
/// batch root is the proof's root, and the Merkle path from the receipt's bytes to the root.
fn verify_proof(proof: &ReceiptProof, block: &SignedEnvelope) -> anyhow::Result<()> {
    let block: Block = convert(block).context("block does not decode")?;
    let valid = validate_block(&block).context("block does not validate")?;
    let root_hex = &proof.root;
    if &valid.body.batch.root != root_hex {
        bail!("the block's batch root is not the proof's root");
    }
    let receipt: SignedReceipt = convert(&proof.receipt).context("receipt does not decode")?;
    receipt.verify_signature().context("receipt signature")?;
    let p: merkle::Proof = convert(&proof.proof).context("proof does not decode")?;
    let root = hex32(root_hex).context("root is not 32 hex bytes")?;
    if !merkle::verify(&receipt.bytes, &p, &root) {
        bail!("the Merkle path does not lead to the root");
    }
    Ok(())
}

/// Re-reads an API value as the ledger's own type, which checks its encoding.
fn convert<T: serde::de::DeserializeOwned>(v: &impl serde::Serialize) -> anyhow::Result<T> {
    Ok(serde_json::from_value(serde_json::to_value(v)?)?)
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
        .post(
            "/ledger/settle",
            &Value::Object(Default::default()),
            Duration::from_secs(60),
        )
        .await?;
    let r: SettleResponse = decode(&v)?;
    output(json, &v, || {
        let mut out = format!(
            "{} new block(s), {} settlement(s) submitted\n",
            r.blocks.len(),
            r.submitted
        );
        for m in &r.mints {
            out.push_str(&format!(
                "  {}  {} {} → {}  {}\n",
                m.id.chars().take(16).collect::<String>(),
                credits(m.amount),
                m.src,
                m.dst,
                m.state
            ));
        }
        out
    })
}

pub async fn quorum(api: &Api, json: bool, cmd: QuorumCmd) -> anyhow::Result<()> {
    match cmd {
        QuorumCmd::Show { kind, id } => {
            let v = api.get(&format!("/quorum/items/{kind}/{id}")).await?;
            let item: QuorumItemView = decode(&v)?;
            output(json, &v, || describe_item(&item))
        }
        QuorumCmd::List { kind, limit } => {
            let path = match kind {
                Some(k) => format!("/quorum/items?kind={k}&limit={limit}"),
                None => format!("/quorum/items?limit={limit}"),
            };
            let v = api.get(&path).await?;
            let l: QuorumItems = decode(&v)?;
            output(json, &v, || {
                let rows: Vec<Vec<String>> = l
                    .items
                    .iter()
                    .map(|i| {
                        vec![
                            i.kind.clone(),
                            i.id.chars().take(24).collect(),
                            format!("{:.3}", i.effective_weight),
                            num(i.required),
                            i.reached.to_string(),
                            i.acks.len().to_string(),
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
            let p: QuorumPolicy = decode(&v)?;
            output(json, &v, || {
                let rows: Vec<Vec<String>> =
                    [("upload", &p.upload), ("job", &p.job), ("token", &p.token)]
                        .into_iter()
                        .map(|(kind, k)| {
                            vec![
                                kind.to_owned(),
                                k.required.to_string(),
                                k.weight_default.to_string(),
                                k.node_weights.len().to_string(),
                                k.decay_half_life_s.to_string(),
                                k.max_age_s.to_string(),
                            ]
                        })
                        .collect();
                format!("auto weights: {}\n", p.auto_weights)
                    + &table::render(
                        &[
                            "KIND",
                            "REQUIRED",
                            "WEIGHT",
                            "OVERRIDES",
                            "HALF-LIFE S",
                            "MAX AGE S",
                        ],
                        &rows,
                    )
            })
        }
    }
}

fn describe_status(st: &LedgerStatus) -> String {
    let mut s = format!(
        "peer      {}\nblocks    {} ({} orphans), {} tips\nsync      {} peers\nrejected  {} blocks, {} txs, {} reputation reports\n",
        st.peer_id,
        st.blocks,
        st.orphans,
        st.tips.len(),
        st.peers,
        st.rejected.blocks,
        st.rejected.txs,
        st.rejected.reputation,
    );
    match &st.wallet {
        Some(w) => s += &format!(
            "wallet    {} final, {} pending, supply {}\nwitnesses {} (quorum {}‰){}\ndigest    {}\n",
            w.final_txs,
            w.pending_txs,
            w.supply,
            w.witnesses.len(),
            w.quorum_milli,
            if w.witness { ", this node is one" } else { "" },
            w.final_digest,
        ),
        None => s += "wallet    off\n",
    }
    s
}

fn describe_item(i: &QuorumItemView) -> String {
    let acks: Vec<String> = i
        .acks
        .iter()
        .map(|a| format!("{} weight {} at {}", a.node, num(a.weight), a.at_ms))
        .collect();
    format!(
        "kind      {}\nid        {}\nweight    {:.3} of {}\nreached   {}\nprogress  {}\nacks      {}\n",
        i.kind,
        i.id,
        i.effective_weight,
        num(i.required),
        i.reached,
        num(i.progress),
        acks.join("\n          "),
    )
}
