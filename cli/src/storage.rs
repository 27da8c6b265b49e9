//! `offgrid put`, `get`, `share`, `ls`, `repair`, `storage …` and `policy …`.
//!
//! The node does the work: the CLI sends absolute paths, starts the operation, and polls
//! `GET /storage/ops/{id}` for progress — an indicatif bar on a terminal, a plain line now
//! and then otherwise (on stderr, so `--json` output stays one document on stdout).
//!
//! Stopping the CLI stops the operation: on SIGINT (Ctrl-C) or SIGTERM while following
//! one, the CLI sends `DELETE /storage/ops/{id}`, waits for the node to end it, prints one
//! line saying so and how to resume, and exits 130 (SIGINT) or 143 (SIGTERM), the shell's
//! 128 + signal number. A second signal while cancelling exits at once.

use std::{
    fmt,
    io::IsTerminal as _,
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _};
use clap::{Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use offgrid_api::storage::{
    AssetCheck, AssetList, AssetRequest, ContentKey, GetRequest, GetResult, OpStatus,
    PolicySignRequest, PutRequest, PutResult, RepairReport, RmResult, ShareRequest, ShareResponse,
    StorageStatus,
};
use serde_json::{json, Value};

use crate::{client::Api, decode, output, table};

/// How often progress is polled.
const POLL: Duration = Duration::from_millis(100);
/// How often a plain progress line is printed when stderr is not a terminal.
const PLAIN_EVERY: Duration = Duration::from_secs(2);

/// Erasure coding or replication.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Mode {
    /// Reed–Solomon k of n.
    Ec,
    /// r full copies.
    Rep,
}

/// Storage commands (flattened into the top level).
#[derive(Debug, Subcommand)]
pub enum StorageCmd {
    /// Store a file encrypted and erasure-coded across the mesh.
    Put {
        /// The file.
        file: PathBuf,
        /// ec (Reed–Solomon, default) or rep (replication).
        #[arg(long, value_enum)]
        mode: Option<Mode>,
        /// Data shards (ec; node default 12).
        #[arg(long)]
        k: Option<u16>,
        /// Total shards (ec; node default 20).
        #[arg(long)]
        n: Option<u16>,
        /// Copies (rep; node default 5).
        #[arg(long)]
        r: Option<u16>,
        /// Shard size, e.g. 64KiB, 1MiB or bytes (node default 64KiB).
        #[arg(long, value_parser = parse_size)]
        shard_size: Option<u32>,
        /// Name recorded in the manifest (default: the file name).
        #[arg(long)]
        name: Option<String>,
        /// Refuse to put with fewer than n hosts instead of shrinking (k, n) to the hosts
        /// available.
        #[arg(long)]
        no_adapt: bool,
        /// Hosts drop the file and free its space after this long: e.g. 90s, 30m, 12h, 7d
        /// (default: kept until `offgrid rm`).
        #[arg(long, value_parser = parse_duration)]
        expires_in: Option<u64>,
    },
    /// Fetch a stored file: offgrid get <asset> -o <file>, or `offgrid get <asset> -` to
    /// stream it to stdout; --range START-END reads only those bytes.
    Get {
        /// Asset id.
        asset: String,
        /// `-` streams the content to stdout (in order, verified, bounded memory); a path
        /// is the same as -o.
        dest: Option<PathBuf>,
        /// Where to write it.
        #[arg(short, long, conflicts_with = "dest")]
        out: Option<PathBuf>,
        /// Only bytes START to END (offsets, END inclusive, as in HTTP Range; `START-` to the
        /// end): only the segments they cover are fetched.
        #[arg(long, value_parser = crate::content::parse_byte_range)]
        range: Option<crate::content::ByteRange>,
        /// The content key (hex) instead of this node's wrapped key.
        #[arg(long)]
        key: Option<String>,
    },
    /// Let another peer read an asset you own.
    Share {
        /// Asset id.
        asset: String,
        /// The peer's id.
        peer: String,
    },
    /// Assets this node can read.
    Ls,
    /// Delete an asset you own: every host drops its shards and manifest.
    Rm {
        /// Asset id.
        asset: String,
    },
    /// Rebuild an asset's missing shards onto other hosts.
    Repair {
        /// Asset id.
        asset: String,
    },
    /// Storage status, checks and keys.
    #[command(subcommand)]
    Storage(Sub),
    /// Signed public-asset policy documents.
    #[command(subcommand)]
    Policy(PolicyCmd),
}

/// `offgrid storage …`
#[derive(Debug, Subcommand)]
pub enum Sub {
    /// Shards held, quota, bytes received, assets.
    Status,
    /// Reachable shards per segment of an asset.
    Check {
        /// Asset id.
        asset: String,
    },
    /// Print an asset's content key (hex), to hand to someone out of band.
    Key {
        /// Asset id.
        asset: String,
    },
}

/// `offgrid policy …`
#[derive(Debug, Subcommand)]
pub enum PolicyCmd {
    /// Sign a policy document with this node's key.
    Sign {
        /// Asset id.
        #[arg(long)]
        asset: String,
        /// License, e.g. MIT.
        #[arg(long)]
        license: String,
        /// ec or rep.
        #[arg(long, value_enum, default_value = "rep")]
        mode: Mode,
        /// Data shards (ec).
        #[arg(long)]
        k: Option<u16>,
        /// Total shards (ec).
        #[arg(long)]
        n: Option<u16>,
        /// Copies (rep).
        #[arg(long)]
        r: Option<u16>,
        /// A safety tag (repeatable).
        #[arg(long = "safety-tag")]
        safety_tags: Vec<String>,
        /// Write the document here instead of stdout.
        #[arg(short, long)]
        out: Option<PathBuf>,
    },
    /// Check a policy document's signature (offline).
    Verify {
        /// The document.
        file: PathBuf,
    },
}

/// Parses `64KiB`, `1MiB`, `64k`, `65536`.
pub(crate) fn parse_size(s: &str) -> Result<u32, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().map_err(|_| format!("{s:?} is not a size"))?;
    let mult = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1024,
        "m" | "mb" | "mib" => 1024 * 1024,
        _ => return Err(format!("{s:?}: unit must be B, KiB or MiB")),
    };
    n.checked_mul(mult)
        .and_then(|v| u32::try_from(v).ok())
        .ok_or_else(|| format!("{s:?} is too large"))
}

/// Parses `90s`, `30m`, `12h`, `7d` or plain seconds into seconds. Zero is passed on: the
/// node refuses an expiry that is not in the future, with its reason.
pub(crate) fn parse_duration(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration (e.g. 90s, 30m, 12h, 7d)"))?;
    let mult = match unit.trim() {
        "" | "s" => 1,
        "m" | "min" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("{s:?}: unit must be s, m, h or d")),
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("{s:?} is too long"))
}

fn mode_name(m: Mode) -> &'static str {
    match m {
        Mode::Ec => "ec",
        Mode::Rep => "rep",
    }
}

/// A path as the node's API takes it (UTF-8).
fn path_text(p: &std::path::Path) -> anyhow::Result<String> {
    p.to_str()
        .map(str::to_owned)
        .with_context(|| format!("{} is not valid UTF-8", p.display()))
}

fn absolute(p: PathBuf) -> anyhow::Result<PathBuf> {
    std::path::absolute(&p).with_context(|| format!("resolving {}", p.display()))
}

/// Runs a storage command.
pub async fn run(api: &Api, json: bool, cmd: StorageCmd) -> anyhow::Result<()> {
    match cmd {
        StorageCmd::Put {
            file,
            mode,
            k,
            n,
            r,
            shard_size,
            name,
            no_adapt,
            expires_in,
        } => {
            let path = std::fs::canonicalize(&file)
                .with_context(|| format!("cannot find {}", file.display()))?;
            let body = serde_json::to_value(PutRequest {
                path: path_text(&path)?,
                mode: mode.map(|m| mode_name(m).to_owned()),
                k,
                n,
                r,
                shard_size,
                name,
                no_adapt: no_adapt.then_some(true),
                expires_in_s: expires_in,
            })?;
            let v = follow(
                api,
                json,
                "/storage/put",
                &body,
                "put",
                "its progress is kept: run the same `offgrid put` again to resume",
            )
            .await?;
            let r: PutResult = decode(&v)?;
            output(json, &v, || {
                format!(
                    "asset     {}\nsize      {} bytes\nscheme    {}{}\nshards    {} placed on {} hosts ({} sent now{})\ntime      {} ms\n",
                    r.asset_id,
                    r.size,
                    r.scheme,
                    if r.adapted { " (adapted to the hosts available)" } else { "" },
                    r.shards_placed,
                    r.hosts,
                    r.shards_sent,
                    if r.resumed { ", resumed" } else { "" },
                    r.duration_ms,
                )
            })
        }
        StorageCmd::Get {
            asset,
            dest,
            out,
            range,
            key,
        } => {
            let Some(out) = out.or(dest) else {
                bail!("say where to write it: offgrid get {asset} -o FILE, or - for stdout");
            };
            let stdout = out.as_os_str() == "-";
            if stdout || range.is_some() {
                let dest = if stdout {
                    crate::content::Dest::Stdout
                } else {
                    crate::content::Dest::File(absolute(out)?)
                };
                return crate::content::read(api, json, &asset, dest, range, key).await;
            }
            let body = serde_json::to_value(GetRequest {
                asset,
                out: path_text(&absolute(out)?)?,
                key,
            })?;
            let v = follow(
                api,
                json,
                "/storage/get",
                &body,
                "get",
                "nothing was written: run the same `offgrid get` again to start over",
            )
            .await?;
            let r: GetResult = decode(&v)?;
            output(json, &v, || {
                format!(
                    "wrote     {} ({} bytes, whole-file BLAKE3 verified)\nshards    {} fetched, {} corrupt bypassed, {} hosts unreachable\ntime      {} ms\n",
                    r.out,
                    r.size,
                    r.shards_fetched,
                    r.corrupt_shards,
                    r.unreachable_hosts,
                    r.duration_ms,
                )
            })
        }
        StorageCmd::Share { asset, peer } => {
            let v = api
                .post(
                    "/storage/share",
                    &serde_json::to_value(ShareRequest { asset, peer })?,
                    Duration::from_secs(60),
                )
                .await?;
            let r: ShareResponse = decode(&v)?;
            output(json, &v, || {
                format!(
                    "shared {} with {} ({} readers)\n",
                    r.asset_id, r.peer, r.readers
                )
            })
        }
        StorageCmd::Ls => {
            let v = api.get("/storage/assets").await?;
            let l: AssetList = decode(&v)?;
            output(json, &v, || {
                let rows: Vec<Vec<String>> = l
                    .assets
                    .iter()
                    .map(|a| {
                        vec![
                            a.asset_id.clone(),
                            a.name.clone().unwrap_or_default(),
                            a.size.to_string(),
                            a.scheme.clone(),
                            if a.owned {
                                "owner".into()
                            } else {
                                "shared".into()
                            },
                            a.readers.to_string(),
                        ]
                    })
                    .collect();
                table::render(
                    &["ASSET", "NAME", "SIZE", "SCHEME", "ROLE", "READERS"],
                    &rows,
                )
            })
        }
        StorageCmd::Rm { asset } => {
            let v = api
                .post(
                    "/storage/rm",
                    &serde_json::to_value(AssetRequest { asset })?,
                    Duration::from_secs(120),
                )
                .await?;
            let r: RmResult = decode(&v)?;
            output(json, &v, || {
                let mut text = format!(
                    "deleted   {}: {} shards dropped by {} of {} hosts\n",
                    r.asset_id, r.shards_deleted, r.hosts_confirmed, r.hosts
                );
                for h in &r.not_confirmed {
                    text.push_str(&format!("kept by   {} ({})\n", h.host, h.answer));
                }
                text
            })
        }
        StorageCmd::Repair { asset } => {
            let hint = format!(
                "the shards rebuilt so far are kept: run `offgrid repair {asset}` again to finish"
            );
            let v = follow(
                api,
                json,
                "/storage/repair",
                &serde_json::to_value(AssetRequest {
                    asset: asset.clone(),
                })?,
                "repair",
                &hint,
            )
            .await?;
            let r: RepairReport = decode(&v)?;
            output(json, &v, || {
                format!(
                    "asset     {}\nreachable min {} → {} of {} per segment\nrebuilt   {} shards in {} segments ({} segments lost)\n",
                    r.asset_id,
                    r.reachable_min_before,
                    r.reachable_min_after,
                    r.n,
                    r.shards_rebuilt,
                    r.segments_repaired,
                    r.segments_lost,
                )
            })
        }
        StorageCmd::Storage(Sub::Status) => {
            let v = api.get("/storage/status").await?;
            let st: StorageStatus = decode(&v)?;
            output(json, &v, || {
                let h = &st.host;
                let free = h
                    .free_bytes
                    .map_or_else(|| "unknown".to_owned(), |f| f.to_string());
                format!(
                    "shards    {} held, {} of {} bytes used on disk\npeers     {} storing, {} bytes on disk; each at most {} bytes and {} shards\ndisk      {} bytes free, floor {}\nreceived  {} shards, {} bytes\nrefused   {} busy, {} over quota, {} over a peer limit, {} below the floor; {} corrupt found\nassets    {} readable, {} owned; {} uploads in progress\n",
                    h.shards, h.used_bytes, h.quota_bytes,
                    h.peers, h.peer_disk_bytes, h.peer_quota_bytes, h.peer_quota_shards,
                    free, h.min_free_bytes,
                    h.received_shards, h.received_bytes,
                    h.busy, h.quota_refusals, h.limit_refusals, h.low_disk_refusals, h.corrupt,
                    st.assets, st.assets_owned, st.uploads_in_progress,
                )
            })
        }
        StorageCmd::Storage(Sub::Check { asset }) => {
            let v = api.get(&format!("/storage/assets/{asset}/check")).await?;
            let c: AssetCheck = decode(&v)?;
            output(json, &v, || {
                format!(
                    "asset     {}\nreachable min {} of {} (k = {}); {} segments below threshold, {} lost\n",
                    c.asset_id,
                    c.reachable_min,
                    c.n,
                    c.k,
                    c.segments_below_threshold,
                    c.segments_lost,
                )
            })
        }
        StorageCmd::Storage(Sub::Key { asset }) => {
            let v = api
                .post(
                    "/storage/key",
                    &serde_json::to_value(AssetRequest { asset })?,
                    Duration::from_secs(30),
                )
                .await?;
            let k: ContentKey = decode(&v)?;
            output(json, &v, || format!("{}\n", k.key))
        }
        StorageCmd::Policy(PolicyCmd::Sign {
            asset,
            license,
            mode,
            k,
            n,
            r,
            safety_tags,
            out,
        }) => {
            let body = serde_json::to_value(PolicySignRequest {
                asset,
                license,
                mode: Some(mode_name(mode).to_owned()),
                k,
                n,
                r,
                safety_tags,
            })?;
            let doc = api
                .post("/storage/policy/sign", &body, Duration::from_secs(30))
                .await?;
            let text = serde_json::to_string_pretty(&doc)?;
            match out {
                Some(path) => {
                    std::fs::write(&path, format!("{text}\n"))
                        .with_context(|| format!("writing {}", path.display()))?;
                    let v = json!({ "written": path, "policy": doc });
                    output(json, &v, || {
                        format!("policy written to {}\n", path.display())
                    })
                }
                None => {
                    println!("{text}");
                    Ok(())
                }
            }
        }
        StorageCmd::Policy(PolicyCmd::Verify { file }) => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("reading {}", file.display()))?;
            let doc: Value = serde_json::from_str(&text)
                .with_context(|| format!("{} is not JSON", file.display()))?;
            let policy = offgrid_storage::Policy::verify(&doc)
                .with_context(|| format!("{} does not verify", file.display()))?;
            let v = json!({ "valid": true, "policy": policy });
            output(json, &v, || {
                format!(
                    "valid: asset {} · license {} · signed by {} · tags [{}]\n",
                    policy.asset_id,
                    policy.license,
                    policy.signer,
                    policy.safety_tags.join(", ")
                )
            })
        }
    }
}

/// The CLI was stopped by a signal while following an operation; `main` prints the
/// message and exits with `code`.
#[derive(Debug)]
pub struct Interrupted {
    /// Exit status: 128 + the signal's number.
    pub code: u8,
    /// The one line for stderr.
    pub message: String,
}

impl fmt::Display for Interrupted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Interrupted {}

/// SIGINT and SIGTERM, registered before an operation starts so that a signal that comes
/// while it is being started is not lost (nor kills the CLI before it can cancel).
#[cfg(unix)]
struct Signals {
    int: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
}

#[cfg(unix)]
impl Signals {
    fn new() -> anyhow::Result<Self> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Signals {
            int: signal(SignalKind::interrupt()).context("listening for SIGINT")?,
            term: signal(SignalKind::terminate()).context("listening for SIGTERM")?,
        })
    }

    /// The next signal's exit status: 130 for SIGINT, 143 for SIGTERM.
    async fn recv(&mut self) -> u8 {
        tokio::select! {
            _ = self.int.recv() => 130,
            _ = self.term.recv() => 143,
        }
    }
}

/// Ctrl-C where there are no Unix signals.
#[cfg(not(unix))]
struct Signals;

#[cfg(not(unix))]
impl Signals {
    fn new() -> anyhow::Result<Self> {
        Ok(Signals)
    }

    /// The next Ctrl-C's exit status, 130.
    async fn recv(&mut self) -> u8 {
        let _ = tokio::signal::ctrl_c().await;
        130
    }
}

/// How long the CLI waits for the node to confirm a cancellation (the node itself waits at
/// most 5 s for the operation to end).
const CANCEL_TIMEOUT: Duration = Duration::from_secs(15);

/// Starts an operation and follows it to its end, showing progress. A signal cancels it
/// on the node; `resume` tells the user what to run next.
async fn follow(
    api: &Api,
    json: bool,
    path: &str,
    body: &Value,
    what: &str,
    resume: &str,
) -> anyhow::Result<Value> {
    let mut signals = Signals::new()?;
    let started = api.post(path, body, Duration::from_secs(30)).await?;
    let id = decode::<OpStatus>(&started)
        .map(|o| o.op_id)
        .unwrap_or_default();
    if id.is_empty() {
        bail!("the node did not start the {what}");
    }
    let tty = !json && std::io::stderr().is_terminal();
    let bar = tty.then(|| {
        let b = ProgressBar::new(0);
        b.set_style(
            ProgressStyle::with_template(
                "{prefix} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        b.set_prefix(what.to_owned());
        b
    });
    let mut last_line = Instant::now();
    loop {
        // The node holds the answer until the operation ends or POLL passes; a node that
        // ignores `wait_ms` answers at once, and then we wait out the rest of POLL here.
        let poll = async {
            let asked = Instant::now();
            let v = api
                .get(&format!("/storage/ops/{id}?wait_ms={}", POLL.as_millis()))
                .await
                .with_context(|| format!("following {what} {id}"))?;
            let op: OpStatus = decode(&v)?;
            if op.state == "running" {
                tokio::time::sleep(POLL.saturating_sub(asked.elapsed())).await;
            }
            anyhow::Ok(op)
        };
        let v = tokio::select! {
            biased;
            code = signals.recv() => {
                if let Some(b) = &bar {
                    b.abandon();
                }
                return Err(cancel(api, &id, what, resume, code, &mut signals).await.into());
            }
            v = poll => v?,
        };
        let p = v.progress.clone().unwrap_or_default();
        let (done, total) = (p.done_bytes, p.total_bytes);
        let shards = format!("{}/{} shards", p.shards_done, p.shards_total);
        if let Some(b) = &bar {
            b.set_length(total);
            b.set_position(done);
            b.set_message(shards.clone());
        } else if !json && last_line.elapsed() >= PLAIN_EVERY {
            last_line = Instant::now();
            eprintln!("{what}: {done}/{total} bytes, {shards}");
        }
        match v.state.as_str() {
            "running" => {}
            "done" => {
                if let Some(b) = &bar {
                    b.finish_and_clear();
                }
                return Ok(v.result.unwrap_or_default());
            }
            _ => {
                if let Some(b) = &bar {
                    b.abandon();
                }
                bail!(
                    "{}: {}",
                    v.error.unwrap_or_default(),
                    v.message.unwrap_or_default()
                );
            }
        }
    }
}

/// Cancels operation `id` on the node after a signal and says what became of it.
async fn cancel(
    api: &Api,
    id: &str,
    what: &str,
    resume: &str,
    code: u8,
    signals: &mut Signals,
) -> Interrupted {
    let route = format!("/storage/ops/{id}");
    let answer = tokio::select! {
        biased;
        _ = signals.recv() => None,
        r = api.delete(&route, CANCEL_TIMEOUT) => Some(r),
    };
    let message = match answer {
        Some(Ok(v)) => cancel_message(&v, id, what, resume),
        Some(Err(e)) => format!(
            "interrupted; could not cancel {what} {id} on the node ({e:#}), so it may still be running"
        ),
        None => format!(
            "interrupted again; {what} {id} may still be running on the node (`offgrid` did not wait for it to stop)"
        ),
    };
    Interrupted { code, message }
}

/// The line printed after `DELETE /storage/ops/{id}` answered `v`.
fn cancel_message(v: &Value, id: &str, what: &str, resume: &str) -> String {
    let op: Option<OpStatus> = decode(v).ok();
    let op = op.as_ref();
    match op.map(|o| o.state.as_str()) {
        Some("cancelled") => format!("{what} cancelled (operation {id}); {resume}"),
        Some("running") => {
            format!("{what} is being cancelled on the node (operation {id}); {resume}")
        }
        Some("done") => format!(
            "interrupted, but the {what} had already finished (operation {id}; `offgrid ls` lists the assets)"
        ),
        _ => format!(
            "interrupted; the {what} had already failed (operation {id}): {}: {}",
            op.and_then(|o| o.error.as_deref()).unwrap_or_default(),
            op.and_then(|o| o.message.as_deref()).unwrap_or_default()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_seconds_minutes_hours_and_days_and_refuse_the_rest() {
        assert_eq!(parse_duration("90"), Ok(90));
        assert_eq!(parse_duration("90s"), Ok(90));
        assert_eq!(parse_duration("30m"), Ok(1800));
        assert_eq!(parse_duration("12h"), Ok(43_200));
        assert_eq!(parse_duration("7d"), Ok(604_800));
        assert_eq!(
            parse_duration("0s"),
            Ok(0),
            "the node says why zero is refused"
        );
        for bad in ["", "-5m", "5y", "1.5h", "h", "99999999999999999999d"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_cancel_says_what_happened_and_how_to_resume_in_one_line() {
        let hint = "its progress is kept: run the same `offgrid put` again to resume";
        let line = cancel_message(&json!({"state": "cancelled"}), "op-1", "put", hint);
        assert_eq!(
            line,
            "put cancelled (operation op-1); its progress is kept: run the same `offgrid put` again to resume"
        );
        let line = cancel_message(
            &json!({"state": "running", "cancel_requested": true}),
            "op-1",
            "put",
            hint,
        );
        assert!(
            line.contains("being cancelled") && line.contains("resume"),
            "{line}"
        );
        let line = cancel_message(&json!({"state": "done"}), "op-1", "get", "x");
        assert!(line.contains("already finished"), "{line}");
        let line = cancel_message(
            &json!({"state": "failed", "error": "no_hosts", "message": "only 0"}),
            "op-1",
            "put",
            hint,
        );
        assert!(line.contains("no_hosts: only 0"), "{line}");
        assert!(!line.contains('\n'));
    }

    #[test]
    fn sizes_parse_with_units() {
        assert_eq!(parse_size("64KiB"), Ok(65536));
        assert_eq!(parse_size("1MiB"), Ok(1 << 20));
        assert_eq!(parse_size("64k"), Ok(65536));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(parse_size("lots").is_err());
        assert!(parse_size("5GiB").is_err());
    }
}
