//! `offgrid-node`: the Offgrid-Net daemon.

mod init;

use std::{path::PathBuf, time::Duration};

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use offgrid_node::{
    config::{Config, LogFormat},
    http::PubKeys,
    identity::Identity,
    Node,
};
use tracing_subscriber::{fmt, EnvFilter};

/// The Offgrid-Net mesh daemon.
#[derive(Debug, Parser)]
#[command(name = "offgrid-node", version, about)]
struct Args {
    /// Config file (TOML). Default: <data-dir>/config.toml if it exists.
    #[arg(long, env = "OFFGRID_CONFIG", global = true)]
    config: Option<PathBuf>,
    /// Data directory (key, database, shards, API token).
    #[arg(long, env = "OFFGRID_DATA_DIR", global = true)]
    data_dir: Option<PathBuf>,
    /// libp2p listen multiaddr (repeatable). Default: /ip4/0.0.0.0/tcp/4747.
    #[arg(long, env = "OFFGRID_LISTEN", value_delimiter = ',')]
    listen: Vec<String>,
    /// Local API address; port 0 picks a free one. Default: 127.0.0.1:9000.
    #[arg(long, env = "OFFGRID_API_LISTEN")]
    api_listen: Option<String>,
    /// Bootstrap peer multiaddr ending in /p2p/<peer id> (repeatable).
    #[arg(long, env = "OFFGRID_BOOTSTRAP", value_delimiter = ',')]
    bootstrap: Vec<String>,
    /// Radio link (repeatable): kiss:<serial path>[@<baud>], udp[:<interface ip>] or
    /// sim:<hub ip:port>. Replaces the config file's [[radio]] entries.
    #[arg(long, env = "OFFGRID_RADIO", value_delimiter = ',')]
    radio: Vec<String>,
    /// Disable mDNS discovery.
    #[arg(long, env = "OFFGRID_NO_MDNS")]
    no_mdns: bool,
    /// Serve as a relay v2 for nodes behind NAT (`[network] relay_server`).
    #[arg(long = "relay-server", env = "OFFGRID_RELAY_SERVER")]
    relay_server: bool,
    /// Also let `put` read and `get` write under this directory (repeatable; adds to
    /// `[storage] allowed_paths`).
    #[arg(
        long = "allow-path",
        env = "OFFGRID_ALLOW_PATHS",
        value_delimiter = ','
    )]
    allow_paths: Vec<std::path::PathBuf>,
    /// Log format.
    #[arg(long, env = "OFFGRID_LOG_FORMAT", value_enum)]
    log_format: Option<LogFormat>,
    /// Print the effective configuration and exit.
    #[arg(long)]
    print_config: bool,
    #[command(subcommand)]
    command: Option<Cmd>,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Print the node's peer id and public keys (creating the key if there is none).
    Id {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// First-run setup: write a commented config (`<data-dir>/config.toml`, or --config),
    /// create the key and the API token, and print the next steps.
    Init {
        /// Overwrite an existing config file.
        #[arg(long)]
        force: bool,
    },
}

/// Applies precedence: flag/env (clap) > file > default.
fn effective_config(args: &Args) -> anyhow::Result<Config> {
    let data_dir_hint = args.data_dir.clone();
    let file = match &args.config {
        Some(p) => Some(p.clone()),
        None => {
            let dir = data_dir_hint
                .clone()
                .unwrap_or_else(|| Config::default().resolved_data_dir());
            let p = dir.join("config.toml");
            p.exists().then_some(p)
        }
    };
    let mut cfg = match &file {
        Some(p) => Config::load(p)?,
        None => Config::default(),
    };
    if let Some(d) = &args.data_dir {
        cfg.data_dir = Some(d.clone());
    }
    if !args.listen.is_empty() {
        cfg.listen = args.listen.clone();
    }
    if let Some(a) = &args.api_listen {
        cfg.api_listen = a.clone();
    }
    if !args.bootstrap.is_empty() {
        cfg.bootstrap = args.bootstrap.clone();
    }
    if args.no_mdns {
        cfg.mdns = false;
    }
    if args.relay_server {
        cfg.network.relay_server = true;
    }
    if !args.allow_paths.is_empty() {
        if cfg.storage.allowed_paths.is_empty() {
            cfg.storage.allowed_paths = offgrid_node::files::paths::default_roots();
        }
        cfg.storage
            .allowed_paths
            .extend(args.allow_paths.iter().cloned());
    }
    if !args.radio.is_empty() {
        cfg.radio = args
            .radio
            .iter()
            .map(|s| offgrid_node::radio::RadioConfig::from_spec(s).map_err(anyhow::Error::msg))
            .collect::<anyhow::Result<_>>()?;
    }
    if let Some(f) = args.log_format {
        cfg.log_format = f;
    }
    // Core's HMAC keys: comma-separated for rotation; replaces the file's list.
    if let Ok(keys) = std::env::var("OFFGRID_AUTH_KEY") {
        cfg.core.hmac_keys = keys
            .split(',')
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .map(String::from)
            .collect();
    }
    cfg.validate()?;
    Ok(cfg)
}

fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // Colours only for a person at a terminal: a log file or journald gets plain text, and
    // NO_COLOR (https://no-color.org) turns them off when set to anything non-empty.
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    let ansi = !no_color && std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    match run(args).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("offgrid-node: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    if let Some(Cmd::Init { force }) = args.command {
        // Before loading any config: the one named may not exist yet.
        let dir = args
            .data_dir
            .clone()
            .unwrap_or_else(|| Config::default().resolved_data_dir());
        print!("{}", init::init(&dir, args.config.clone(), force)?);
        return Ok(());
    }
    let cfg = effective_config(&args)?;
    if args.print_config {
        print!("{}", cfg.to_toml());
        return Ok(());
    }
    if let Some(Cmd::Id { json }) = args.command {
        let dir = cfg.resolved_data_dir();
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let keys = PubKeys::of(&Identity::load_or_create(&dir)?);
        if json {
            println!("{}", serde_json::to_string_pretty(&keys)?);
        } else {
            println!(
                "peer_id  {}\ned25519  {}\nx25519   {}",
                keys.peer_id, keys.ed25519, keys.x25519
            );
        }
        return Ok(());
    }
    init_logging(cfg.log_format);
    let node = Node::start(cfg).await?;
    wait_for_signal().await;
    tracing::info!("shutting down");
    node.shutdown(Duration::from_millis(1500)).await;
    Ok(())
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
