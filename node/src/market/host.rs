//! The host side of the market: quotes, runs and signed receipts.
//!
//! The host's task ([`serve`]) calls [`Host::on_request`] for each inbound request, from
//! the swarm or a radio session alike. A run
//! executes in its own task (at most `burst` at once; beyond that the host answers busy),
//! then its receipt is persisted through the store's writer thread (group commit: one
//! durable write for everything that finished meanwhile) before the answer is sent. So a
//! broker never holds a receipt the host could lose.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::Instant,
};

use libp2p::PeerId;
use offgrid_behaviours::auction::{Request, Response, RunRequest};
use offgrid_ledger::{
    receipt::{Metrics, Proofs, ReceiptBody, SignedReceipt, RECEIPT_VERSION},
    signed::Signed,
};
use offgrid_net::Reply;
use tokio::sync::mpsc;
use tracing::warn;

use super::executor::{ExecError, Executor};
use crate::{
    config::Config,
    identity::Identity,
    now_ms,
    peers::HostSettings,
    store::{Op, Store, Table},
};

/// How long a quote holds, milliseconds.
pub const QUOTE_VALID_MS: u64 = 5_000;
/// Suggested wait when busy, milliseconds.
pub const BUSY_RETRY_MS: u64 = 200;

/// Fault injection for tests of the broker's defences, from `OFFGRID_FAULT_INJECT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Behave.
    None,
    /// Sign receipts with a key that is not the node's (a forged receipt).
    ForgeReceipt,
}

impl Fault {
    fn from_env() -> Self {
        if crate::fault_injected("forge_receipt") {
            Fault::ForgeReceipt
        } else {
            Fault::None
        }
    }
}

/// Where a run's answer goes: the libp2p stream, or a radio session waiting for it.
pub type ReplyTo = Reply<Response>;

/// A finished run on its way to the broker.
pub struct Finished {
    /// Where the answer goes.
    pub channel: ReplyTo,
    /// The answer.
    pub response: Response,
    /// The run's entry in the host's table of running jobs.
    pub key: RunKey,
}

/// A running job, as heartbeat polls name it: the broker that sent it and its job id.
pub type RunKey = (PeerId, String);

/// What a heartbeat tells about a running job.
struct Running {
    started: Instant,
    /// Work done so far, as the executor counts it (pieces of a streamed answer).
    progress: Arc<AtomicU64>,
}

/// Host state owned by the event loop.
pub struct Host {
    executors: HashMap<String, Arc<Executor>>,
    identity: Identity,
    /// The identity's peer id as text, as every receipt names it.
    node_id: String,
    cluster_id: String,
    in_flight: usize,
    /// Jobs running now, for heartbeats; at most `burst` entries, as runs are refused
    /// beyond it.
    running: HashMap<RunKey, Running>,
    store: Arc<Store>,
    to_loop: mpsc::Sender<Finished>,
    fault: Fault,
}

/// The current price for a job type given the load: up to 25 % more when every slot is
/// taken, so brokers spread work under load.
pub fn load_price(base: u64, in_flight: usize, burst: u32) -> u64 {
    let burst = u64::from(burst.max(1));
    let busy = (in_flight as u64).min(burst);
    base.saturating_add(base.saturating_mul(busy) / (4 * burst))
}

impl Host {
    /// Builds the host; finished runs come back to the event loop on `to_loop`.
    pub fn new(
        cfg: &Config,
        identity: Identity,
        store: Arc<Store>,
        to_loop: mpsc::Sender<Finished>,
    ) -> Self {
        let executors = cfg
            .executors
            .iter()
            .map(|(t, c)| (t.clone(), Arc::new(Executor::new(c.clone()))))
            .collect();
        let fault = Fault::from_env();
        if fault != Fault::None {
            warn!(
                ?fault,
                "FAULT INJECTION ACTIVE: this host misbehaves on purpose"
            );
        }
        Host {
            executors,
            node_id: identity.peer_id().to_string(),
            identity,
            cluster_id: cfg.cluster_id.clone(),
            in_flight: 0,
            running: HashMap::new(),
            store,
            to_loop,
            fault,
        }
    }

    /// Jobs running now.
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// Called when a finished run's answer is on its way.
    pub fn run_finished(&mut self, key: &RunKey) {
        self.in_flight = self.in_flight.saturating_sub(1);
        self.running.remove(key);
    }

    /// Answers a heartbeat poll: only the broker that sent a job learns of it.
    pub fn progress(&self, broker: PeerId, job_id: String) -> Response {
        match self.running.get(&(broker, job_id)) {
            Some(r) => Response::Progress {
                running: true,
                elapsed_ms: r.started.elapsed().as_millis() as u64,
                progress: r.progress.load(Ordering::Relaxed),
            },
            None => Response::Progress {
                running: false,
                elapsed_ms: 0,
                progress: 0,
            },
        }
    }

    fn price_for(&self, s: &HostSettings, job_type: &str) -> Result<u64, String> {
        if !s.active {
            return Err("host is not taking jobs".into());
        }
        if !self.executors.contains_key(job_type) {
            return Err(format!("no executor for job type {job_type:?}"));
        }
        s.prices
            .get(job_type)
            .copied()
            .ok_or_else(|| format!("no price for job type {job_type:?}"))
    }

    /// Answers a quote request.
    pub fn quote(&self, s: &HostSettings, job_type: &str) -> Response {
        match self.price_for(s, job_type) {
            Err(reason) => Response::Declined { reason },
            Ok(_) if self.in_flight >= s.burst as usize => Response::Busy {
                retry_after_ms: BUSY_RETRY_MS,
            },
            Ok(base) => Response::Quote {
                price: load_price(base, self.in_flight, s.burst),
                valid_until_ms: now_ms() + QUOTE_VALID_MS,
                capacity_left: (s.burst as usize - self.in_flight) as u32,
            },
        }
    }

    /// Handles any inbound request: quotes are answered at once (`Some`), runs start a task
    /// unless refused; its answer comes back on the finished channel.
    pub fn on_request(
        &mut self,
        s: &HostSettings,
        broker: PeerId,
        request: Request,
        reply: ReplyTo,
    ) -> Option<(ReplyTo, Response)> {
        match request {
            Request::Quote { job_type, .. } => Some((reply, self.quote(s, &job_type))),
            Request::Run(run) => self.start_run(s, broker, run, reply),
            Request::Progress { job_id } => Some((reply, self.progress(broker, job_id))),
        }
    }

    fn start_run(
        &mut self,
        s: &HostSettings,
        broker: PeerId,
        run: RunRequest,
        channel: ReplyTo,
    ) -> Option<(ReplyTo, Response)> {
        let base = match self.price_for(s, &run.job_type) {
            Ok(p) => p,
            Err(reason) => return Some((channel, Response::Declined { reason })),
        };
        if self.in_flight >= s.burst as usize {
            return Some((
                channel,
                Response::Busy {
                    retry_after_ms: BUSY_RETRY_MS,
                },
            ));
        }
        if run.price < base {
            return Some((
                channel,
                Response::Declined {
                    reason: format!("price {} is below {base}", run.price),
                },
            ));
        }
        let Some(executor) = self.executors.get(&run.job_type).cloned() else {
            return Some((
                channel,
                Response::Declined {
                    reason: "no executor".into(),
                },
            ));
        };
        if let Err(reason) = check_order(&run, &broker, &self.node_id) {
            return Some((channel, Response::Declined { reason }));
        }
        let key: RunKey = (broker, run.job_id.clone());
        if self.running.contains_key(&key) {
            // The same broker sent the same job again while it runs: never run it twice.
            return Some((
                channel,
                Response::Declined {
                    reason: "this job is already running here".into(),
                },
            ));
        }
        self.in_flight += 1;
        let progress = Arc::new(AtomicU64::new(0));
        self.running.insert(
            key.clone(),
            Running {
                started: Instant::now(),
                progress: progress.clone(),
            },
        );
        let signer = match self.fault {
            Fault::None => self.identity.signing_key().clone(),
            Fault::ForgeReceipt => ed25519_dalek::SigningKey::from_bytes(&rand::random()),
        };
        let ctx = RunContext {
            node_id: self.node_id.clone(),
            host_pubkey: hex::encode(self.identity.public_key()),
            cluster_id: self.cluster_id.clone(),
            broker_id: broker.to_string(),
            signer,
        };
        let (store, to_loop) = (self.store.clone(), self.to_loop.clone());
        tokio::spawn(async move {
            let mut response = execute(&executor, &ctx, run, &progress).await;
            if let Response::Done { receipt, .. } = &response {
                let op = Op::put(Table::Receipts, receipt_key(receipt, now_ms()), receipt);
                if let Err(e) = async { store.commit(vec![op?]).await }.await {
                    warn!(error = %e, "cannot persist receipt; failing the job");
                    response = Response::Failed {
                        error: "host cannot persist its receipt".into(),
                    };
                }
            }
            // The host task outlives every run; if it is gone the node is stopping.
            let _ = to_loop
                .send(Finished {
                    channel,
                    response,
                    key,
                })
                .await;
        });
        None
    }
}

/// A run's payment order, when it has one, must pay this host for this very run: signed by
/// the broker that sent it, for this job, at the agreed price, covering the units, and valid
/// until the run's deadline. A run without one runs unpaid (a mesh without a wallet).
fn check_order(run: &RunRequest, broker: &PeerId, me: &str) -> Result<(), String> {
    let Some(order) = &run.order else {
        return Ok(());
    };
    let o = offgrid_ledger::payment::verify_order(order)
        .map_err(|e| format!("bad payment order: {e}"))?;
    let checks = [
        (o.payer == broker.to_string(), "not signed by the broker"),
        (o.host == me, "pays another host"),
        (o.job_id == run.job_id, "for another job"),
        (o.price == run.price, "at another price"),
        (o.max_units >= run.units, "covers fewer units than the job"),
        (
            o.expires_ms >= run.deadline_ms,
            "expires before the deadline",
        ),
    ];
    match checks.iter().find(|(ok, _)| !ok) {
        Some((_, why)) => Err(format!("bad payment order: {why}")),
        None => Ok(()),
    }
}

struct RunContext {
    node_id: String,
    host_pubkey: String,
    cluster_id: String,
    broker_id: String,
    signer: ed25519_dalek::SigningKey,
}

async fn execute(
    executor: &Executor,
    ctx: &RunContext,
    run: RunRequest,
    progress: &AtomicU64,
) -> Response {
    let started_at_ms = now_ms();
    let t = Instant::now();
    let remaining = run.deadline_ms.saturating_sub(started_at_ms);
    if remaining == 0 {
        return Response::Failed {
            error: "deadline already passed".into(),
        };
    }
    let result = tokio::time::timeout(
        std::time::Duration::from_millis(remaining),
        executor.run_with_progress(&run.payload, progress),
    )
    .await
    .unwrap_or(Err(ExecError::Timeout(std::time::Duration::from_millis(
        remaining,
    ))));
    let out = match result {
        Ok(o) => o,
        Err(e) => {
            warn!(job_id = %run.job_id, error = %e, "job failed");
            return Response::Failed {
                error: e.for_peer(),
            };
        }
    };
    let input_bytes = run.payload.len() as u64;
    let output_bytes = out.output.len() as u64;
    let body = ReceiptBody {
        version: RECEIPT_VERSION.into(),
        cluster_id: ctx.cluster_id.clone(),
        job_id: run.job_id,
        resource_type: run.job_type,
        // Token-billed work is billed from the backend's usage, capped by the quote.
        units: out
            .tokens
            .map_or(run.units, |t| super::size::billed_units(t, run.units)),
        metrics: Metrics {
            // Tokens as the backend reports them, else the usual ~4 bytes per token.
            compute_tokens: out
                .tokens
                .unwrap_or((input_bytes + output_bytes).div_ceil(4)),
            latency_ms: t.elapsed().as_millis() as u64,
            input_bytes,
            output_bytes,
        },
        proofs: Proofs {
            input_blake3: blake3::hash(run.payload.as_bytes()).to_hex().to_string(),
            output_blake3: blake3::hash(out.output.as_bytes()).to_hex().to_string(),
        },
        cids: Vec::new(),
        node_id: ctx.node_id.clone(),
        host_pubkey: ctx.host_pubkey.clone(),
        broker_id: ctx.broker_id.clone(),
        started_at_ms,
        finished_at_ms: now_ms(),
        price: run.price,
        order: run.order,
    };
    match Signed::sign(&ctx.signer, &body) {
        Ok(receipt) => Response::Done {
            output: out.output,
            receipt,
        },
        Err(e) => Response::Failed {
            error: format!("cannot sign receipt: {e}"),
        },
    }
}

/// Key of a receipt in the store: time-ordered so an export takes "everything after".
pub fn receipt_key(receipt: &SignedReceipt, finished_ms: u64) -> String {
    format!("{finished_ms:016}-{}", receipt.id())
}

/// Runs the host: inbound requests from the swarm and from radio sessions, finished runs
/// back to their brokers. `in_flight` mirrors the running jobs for `/status`.
pub async fn serve(
    mut host: Host,
    mut finished: mpsc::Receiver<Finished>,
    mut requests: mpsc::Receiver<offgrid_net::AuctionRequest>,
    offer: crate::peers::Offer,
    net: std::sync::Arc<dyn offgrid_net::Net>,
    in_flight: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    cancel: tokio_util::sync::CancellationToken,
) {
    use std::sync::atomic::Ordering;
    loop {
        tokio::select! {
            biased;
            _ = cancel.cancelled() => break,
            // Finished runs first: they free the slots that new requests are priced by.
            Some(f) = finished.recv() => {
                host.run_finished(&f.key);
                in_flight.store(host.in_flight(), Ordering::Relaxed);
                net.respond_auction(f.channel, f.response).await;
            }
            Some(r) = requests.recv() => {
                let early = offer.read(|s| host.on_request(s, r.peer, r.request, r.reply));
                in_flight.store(host.in_flight(), Ordering::Relaxed);
                if let Some((reply, response)) = early {
                    net.respond_auction(reply, response).await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn price_rises_with_load_up_to_a_quarter() {
        assert_eq!(load_price(1000, 0, 8), 1000);
        assert_eq!(load_price(1000, 4, 8), 1125);
        assert_eq!(load_price(1000, 8, 8), 1250);
        assert_eq!(load_price(1000, 99, 8), 1250);
        assert_eq!(load_price(u64::MAX, 8, 8), u64::MAX);
    }
}
