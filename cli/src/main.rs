//! `offgrid`: the command-line client of a local `offgrid-node`.
//!
//! Exit status: 0 ok, 1 failure (one line on stderr), 2 usage error; 130 (SIGINT) or 143
//! (SIGTERM) when `put`, `get` or `repair` was interrupted, after cancelling the node's
//! operation (one line on stderr says so and how to resume).

mod client;
mod content;
mod ec;
mod ledger;
mod market;
mod radio;
mod storage;
mod table;

use std::{path::PathBuf, time::Duration};

use anyhow::{bail, Context as _};
use clap::{Parser, Subcommand, ValueEnum};
use offgrid_api::{
    node::{PubKeys, Status, ToggleRequest, ToggleResponse},
    peers::{AnnounceRequest, Announcement, PeersResponse},
};
use serde_json::Value;

use crate::client::Api;

/// Client of the local Offgrid-Net node.
#[derive(Debug, Parser)]
#[command(name = "offgrid", version, about)]
struct Cli {
    /// The node's data directory (finds api.url and api.token there).
    #[arg(long, env = "OFFGRID_DATA_DIR", global = true)]
    data_dir: Option<PathBuf>,
    /// API URL, overriding <data-dir>/api.url.
    #[arg(long, env = "OFFGRID_API", global = true)]
    api: Option<String>,
    /// API token, overriding <data-dir>/api.token.
    #[arg(long, env = "OFFGRID_API_TOKEN", global = true, hide_env_values = true)]
    token: Option<String>,
    /// Print one JSON document instead of tables.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Node health: peer id, version, uptime, addresses, peer counts.
    Status,
    /// Known peers with how they were heard and what they offer.
    Peers,
    /// Show or change what this node offers.
    Announce {
        /// Set a price, e.g. --price compute=0.03 (repeatable).
        #[arg(long = "price", value_name = "TYPE=CREDITS")]
        prices: Vec<String>,
        /// Most jobs at once.
        #[arg(long)]
        burst: Option<u32>,
        /// Percent of time on call.
        #[arg(long)]
        min_oncall: Option<u8>,
        /// Highest percent of capacity lent in bursts.
        #[arg(long)]
        burst_percent_max: Option<u8>,
    },
    /// Take jobs (on) or stop taking them (off).
    Toggle {
        /// on or off.
        state: OnOff,
    },
    /// This node's peer id and public keys.
    Id,
    /// Run jobs through the market.
    #[command(subcommand)]
    Job(market::JobCmd),
    /// Ask a host for a quote: offgrid quote <peer> <type> <size>.
    Quote {
        /// Host peer id.
        peer: String,
        /// Job type.
        job_type: String,
        /// Size in units.
        size: String,
    },
    /// Receipt batches for the ledger.
    #[command(subcommand)]
    Receipts(market::ReceiptsCmd),
    /// Radio links: offgrid radio status.
    #[command(subcommand)]
    Radio(radio::RadioCmd),
    /// Mesh metrics (BATMAN-adv, Babel or a metrics file) and the broker's mesh factor.
    Mesh,
    /// Wallet balances (micro-credits).
    #[command(subcommand)]
    Wallet(ledger::WalletCmd),
    /// Wallet transactions: send, show, list.
    #[command(subcommand)]
    Tx(ledger::TxCmd),
    /// The receipt ledger: blocks, proofs.
    #[command(subcommand)]
    Ledger(ledger::LedgerCmd),
    /// Put waiting receipts in blocks and claim their pay from the accounts that ordered
    /// the jobs (each receipt paid once).
    Settle,
    /// The quorum engine: items and policies.
    #[command(subcommand)]
    Quorum(ledger::QuorumCmd),
    /// Hits and misses of the hosts this node brokered jobs to.
    Reputation,
    /// Erasure-code a file to a folder of shard files and back, without a node.
    #[command(subcommand)]
    Ec(ec::EcCmd),
    /// Print a shell completion script: offgrid completions bash|zsh|fish.
    Completions {
        /// The shell to complete for.
        shell: clap_complete::Shell,
    },
    #[command(flatten)]
    Storage(storage::StorageCmd),
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum OnOff {
    On,
    Off,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("offgrid: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            if let Some(i) = e.downcast_ref::<storage::Interrupted>() {
                eprintln!("offgrid: {i}");
                return std::process::ExitCode::from(i.code);
            }
            let msg = format!("{e:#}").replace('\n', " ");
            eprintln!("offgrid: {msg}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    if let Command::Ec(cmd) = cli.command {
        return ec::run(cli.json, cmd);
    }
    if let Command::Completions { shell } = cli.command {
        // Needs no node: the script comes from the command's own definition.
        use clap::CommandFactory as _;
        clap_complete::generate(
            shell,
            &mut Cli::command(),
            "offgrid",
            &mut std::io::stdout(),
        );
        return Ok(());
    }
    let api = Api::resolve(cli.api, cli.token, cli.data_dir)?;
    let json = cli.json;
    match cli.command {
        Command::Status => {
            let v = api.get("/status").await?;
            let st: Status = decode(&v)?;
            output(json, &v, || {
                let p = &st.peers;
                format!(
                    "peer id   {}\nversion   {}\nuptime    {} s\nlisten    {}\npeers     {} connected, {} known, {} active hosts\n",
                    st.peer_id,
                    st.version,
                    st.uptime_s,
                    st.listen_addrs.join(" "),
                    p.connected,
                    p.known,
                    p.active_hosts,
                )
            })
        }
        Command::Peers => {
            let v = api.get("/peers").await?;
            let list: PeersResponse = decode(&v)?;
            output(json, &v, || {
                let rows: Vec<Vec<String>> = list
                    .peers
                    .iter()
                    .map(|p| {
                        let prices = p
                            .announcement
                            .as_ref()
                            .map(|ann| {
                                ann.prices
                                    .iter()
                                    .map(|(k, v)| format!("{k}={}", micro(*v)))
                                    .collect::<Vec<_>>()
                                    .join(",")
                            })
                            .unwrap_or_default();
                        vec![
                            p.peer_id.clone(),
                            p.via.clone(),
                            if p.connected { "yes" } else { "no" }.into(),
                            match p.active {
                                Some(true) => "yes".into(),
                                Some(false) => "no".into(),
                                None => "?".into(),
                            },
                            prices,
                            p.addrs.last().cloned().unwrap_or_default(),
                        ]
                    })
                    .collect();
                table::render(
                    &["PEER", "VIA", "CONNECTED", "ACTIVE", "PRICES", "ADDRESS"],
                    &rows,
                )
            })
        }
        Command::Announce {
            prices,
            burst,
            min_oncall,
            burst_percent_max,
        } => {
            let changes = !prices.is_empty()
                || burst.is_some()
                || min_oncall.is_some()
                || burst_percent_max.is_some();
            let v = if changes {
                let mut body = AnnounceRequest {
                    burst,
                    min_oncall_percent: min_oncall,
                    burst_percent_max,
                    ..Default::default()
                };
                if !prices.is_empty() {
                    let mut m = std::collections::BTreeMap::new();
                    for p in &prices {
                        let Some((k, val)) = p.split_once('=') else {
                            bail!("--price {p:?}: expected TYPE=CREDITS, e.g. compute=0.03");
                        };
                        // Sent as a string so the node parses the decimal exactly.
                        m.insert(k.trim().to_owned(), Value::String(val.trim().to_owned()));
                    }
                    body.prices = Some(m);
                }
                api.post(
                    "/announce",
                    &serde_json::to_value(&body)?,
                    Duration::from_secs(30),
                )
                .await?
            } else {
                api.get("/announce").await?
            };
            let ann: Announcement = decode(&v)?;
            output(json, &v, || describe_announcement(&ann))
        }
        Command::Toggle { state } => {
            let active = matches!(state, OnOff::On);
            let v = api
                .post(
                    "/toggle",
                    &serde_json::to_value(ToggleRequest { active })?,
                    Duration::from_secs(30),
                )
                .await?;
            let t: ToggleResponse = decode(&v)?;
            output(json, &v, || format!("active: {}\n", t.active))
        }
        Command::Job(cmd) => market::job(&api, json, cmd).await,
        Command::Quote {
            peer,
            job_type,
            size,
        } => market::quote(&api, json, &peer, &job_type, &size).await,
        Command::Receipts(cmd) => market::receipts(&api, json, cmd).await,
        Command::Reputation => market::reputation(&api, json).await,
        Command::Radio(cmd) => radio::radio(&api, json, cmd).await,
        Command::Mesh => radio::mesh(&api, json).await,
        Command::Wallet(cmd) => ledger::wallet(&api, json, cmd).await,
        Command::Tx(cmd) => ledger::tx(&api, json, cmd).await,
        Command::Ledger(cmd) => ledger::ledger(&api, json, cmd).await,
        Command::Settle => ledger::settle(&api, json).await,
        Command::Quorum(cmd) => ledger::quorum(&api, json, cmd).await,
        Command::Storage(cmd) => storage::run(&api, json, cmd).await,
        // Handled above, without the node.
        Command::Ec(cmd) => ec::run(json, cmd),
        Command::Completions { .. } => Ok(()),
        Command::Id => {
            let v = api
                .get("/pubkeys")
                .await
                .context("asking the node for its keys")?;
            let k: PubKeys = decode(&v)?;
            output(json, &v, || {
                format!(
                    "peer_id  {}\ned25519  {}\nx25519   {}\n",
                    k.peer_id, k.ed25519, k.x25519
                )
            })
        }
    }
}

pub(crate) fn output(json: bool, v: &Value, human: impl FnOnce() -> String) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(v)?);
    } else {
        print!("{}", human());
    }
    Ok(())
}

/// Decodes a node answer into its API type.
pub(crate) fn decode<T: serde::de::DeserializeOwned>(v: &Value) -> anyhow::Result<T> {
    T::deserialize(v).context("the node's answer does not have the expected shape")
}

/// Prints a float as the JSON document shows it (`1.0`, `0.03`).
pub(crate) fn num(x: f64) -> String {
    Value::from(x).to_string()
}

/// Prints an optional integer as the JSON document shows it (`null` when absent).
pub(crate) fn opt(x: Option<u64>) -> String {
    x.map_or_else(|| "null".into(), |n| n.to_string())
}

/// Formats micro-credits as a decimal.
fn micro(m: u64) -> String {
    let frac = m % 1_000_000;
    if frac == 0 {
        (m / 1_000_000).to_string()
    } else {
        format!("{}.{:06}", m / 1_000_000, frac)
            .trim_end_matches('0')
            .to_owned()
    }
}

fn describe_announcement(a: &Announcement) -> String {
    let prices = a
        .prices
        .iter()
        .map(|(k, p)| format!("  {k:<10} {}\n", micro(*p)))
        .collect::<String>();
    format!(
        "node      {}\nactive    {}\nburst     {}\non call   {} %\nburst max {} %\njob types {}\nprices (credits per unit):\n{prices}",
        a.node_id,
        a.active,
        a.burst,
        a.min_oncall_percent,
        a.burst_percent_max,
        a.job_types.join(", "),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn micro_credits_print_as_decimals() {
        assert_eq!(micro(30_000), "0.03");
        assert_eq!(micro(2_000_000), "2");
        assert_eq!(micro(1), "0.000001");
    }

    #[test]
    fn floats_print_as_in_json() {
        assert_eq!(num(1.0), "1.0");
        assert_eq!(num(0.03), "0.03");
        assert_eq!(opt(None), "null");
    }
}
