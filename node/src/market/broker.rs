//! The broker side of the market: candidates, a quote window, scoring, dispatch with an
//! activation deadline, failover, receipt verification and reputation.
//!
//! A job runs as an ordinary async task that talks to the swarm through the [`Client`];
//! the event loop only routes requests and responses.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use futures::{stream::FuturesUnordered, StreamExt};
use libp2p::PeerId;
use offgrid_behaviours::auction::{Request, Response};
use offgrid_ledger::receipt::{verify_receipt, ReceiptBody, SignedReceipt};
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;
use tracing::{debug, info};

pub use super::reputation::{Record, Reputation};
use super::{
    quotes::QuoteCache,
    scoring::{self, Bid},
};
use crate::{
    config::MarketConfig,
    now_ms,
    peers::{Candidate, PeersHandle as Client},
};

/// Shortest quote window when a candidate is reached by radio (`via` other than `ip`).
pub const RADIO_QUOTE_WINDOW: Duration = Duration::from_secs(20);

/// A job as the broker receives it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobSpec {
    /// Job id; generated when absent.
    pub job_id: String,
    /// Job type (selects hosts with that executor).
    pub job_type: String,
    /// Size in micro-units.
    pub units: u64,
    /// Payload as JSON text.
    pub payload: String,
    /// Overall deadline.
    pub timeout: Duration,
    /// Run on this many hosts and accept only if outputs agree (1 = no redundancy).
    pub redundancy: usize,
    /// Run on this host only (`offgrid job run --host`), paid and receipted as usual.
    pub host: Option<String>,
}

/// One host's try at a job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    /// Host peer id.
    pub host: String,
    /// What happened: `ok`, or why it failed.
    pub outcome: String,
}

/// A completed job.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobResult {
    /// Job id.
    pub job_id: String,
    /// The host whose result was accepted.
    pub host: String,
    /// Price per unit, micro-credits.
    pub price: u64,
    /// The output.
    pub output: String,
    /// The host's signed receipt.
    pub receipt: SignedReceipt,
    /// The verified receipt body.
    pub receipt_body: ReceiptBody,
    /// Every host tried, in order.
    pub attempts: Vec<Attempt>,
    /// Hosts that agreed (redundancy > 1).
    pub replicas: Vec<String>,
    /// Quotes received in the auction.
    pub quotes: usize,
    /// Wall-clock time from request to result.
    pub duration_ms: u64,
}

/// Why a job did not complete.
#[derive(Debug, Clone, thiserror::Error, Serialize, Deserialize)]
pub enum BrokerError {
    /// No active host offers this job type, or none quoted.
    #[error("no hosts available: {0}")]
    NoHostsAvailable(String),
    /// The job's deadline passed.
    #[error("job timed out after {0} ms")]
    JobTimeout(u64),
    /// Every host tried failed.
    #[error("all hosts failed: {}", .0.iter().map(|a| format!("{}: {}", a.host, a.outcome)).collect::<Vec<_>>().join("; "))]
    AllHostsFailed(Vec<Attempt>),
    /// Redundant runs produced different outputs.
    #[error("hosts disagree on the output: {}", .0.iter().map(|(h, o)| format!("{h}={o}")).collect::<Vec<_>>().join(", "))]
    Disagreement(Vec<(String, String)>),
    /// The broker is at its concurrency limit.
    #[error("broker is at its limit of concurrent jobs")]
    Overloaded,
    /// The job itself is invalid.
    #[error("invalid job: {0}")]
    Invalid(String),
    /// The paying account cannot cover the job (refused before any host runs it).
    #[error(
        "insufficient funds: the job costs up to {needed} micro-credits, {available} are free"
    )]
    InsufficientFunds {
        /// The job's cost at the best quote.
        needed: u64,
        /// The final balance less what running jobs have been promised.
        available: u64,
    },
}

impl BrokerError {
    /// A short label for metrics and JSON.
    pub fn kind(&self) -> &'static str {
        match self {
            BrokerError::NoHostsAvailable(_) => "no_hosts",
            BrokerError::JobTimeout(_) => "job_timeout",
            BrokerError::AllHostsFailed(_) => "all_hosts_failed",
            BrokerError::Disagreement(_) => "disagreement",
            BrokerError::Overloaded => "overloaded",
            BrokerError::Invalid(_) => "invalid",
            BrokerError::InsufficientFunds { .. } => "insufficient_funds",
        }
    }
}

/// The broker.
pub struct Broker {
    client: Client,
    /// This node's peer id as text, as receipts name the broker.
    local: String,
    cfg: MarketConfig,
    reputation: Arc<Reputation>,
    limit: Semaphore,
    quotes: QuoteCache,
    tracker: Option<Arc<crate::failover::JobTracker>>,
    payer: Option<Arc<super::payer::Payer>>,
}

// Short-lived and moved once per attempt; boxing the success would only add an allocation.
#[allow(clippy::large_enum_variant)]
enum RunOutcome {
    Ok {
        output: String,
        receipt: SignedReceipt,
        body: ReceiptBody,
    },
    Failed(String),
    TimedOut,
}

impl Broker {
    /// A broker that talks through `client`.
    pub fn new(
        client: Client,
        local: PeerId,
        cfg: MarketConfig,
        reputation: Arc<Reputation>,
    ) -> Self {
        let limit = Semaphore::new(cfg.max_concurrent_jobs.max(1));
        Broker {
            client,
            local: local.to_string(),
            cfg,
            reputation,
            limit,
            quotes: QuoteCache::default(),
            tracker: None,
            payer: None,
        }
    }

    /// Pays for jobs from this account: a payment order with every dispatch, and a job the
    /// account cannot cover refused before dispatch.
    pub fn with_payer(mut self, payer: Arc<super::payer::Payer>) -> Self {
        self.payer = Some(payer);
        self
    }

    /// Runs every host attempt under the failover monitor: a stalled attempt is given up
    /// and the job moves to the next host.
    pub fn with_job_tracker(mut self, tracker: Arc<crate::failover::JobTracker>) -> Self {
        self.tracker = Some(tracker);
        self
    }

    /// The reputation table.
    pub fn reputation(&self) -> &Arc<Reputation> {
        &self.reputation
    }

    /// Asks one host for a quote.
    pub async fn quote(
        &self,
        peer: PeerId,
        job_type: &str,
        units: u64,
    ) -> Result<Response, String> {
        let req = Request::Quote {
            job_type: job_type.into(),
            units,
        };
        match tokio::time::timeout(Duration::from_secs(10), self.client.request(peer, req)).await {
            Ok(r) => r.map_err(|e| e.to_string()),
            Err(_) => Err("no answer within 10 s".into()),
        }
    }

    /// Runs a job: auction, dispatch, failover, verification.
    pub async fn run(&self, job: JobSpec) -> Result<JobResult, BrokerError> {
        if job.job_type.is_empty() || job.job_type.len() > 64 {
            return Err(BrokerError::Invalid("job type must be 1..=64 bytes".into()));
        }
        if job.payload.len() > self.cfg.max_payload_bytes {
            return Err(BrokerError::Invalid(format!(
                "payload exceeds {} bytes",
                self.cfg.max_payload_bytes
            )));
        }
        let _permit = self
            .limit
            .try_acquire()
            .map_err(|_| BrokerError::Overloaded)?;
        let started = Instant::now();
        let deadline = started + job.timeout;
        let timeout_ms = job.timeout.as_millis() as u64;
        match tokio::time::timeout_at(deadline.into(), self.run_inner(&job, deadline, started))
            .await
        {
            Ok(r) => r,
            Err(_) => Err(BrokerError::JobTimeout(timeout_ms)),
        }
    }

    async fn run_inner(
        &self,
        job: &JobSpec,
        deadline: Instant,
        started: Instant,
    ) -> Result<JobResult, BrokerError> {
        let mut candidates = self
            .client
            .candidates(job.job_type.clone())
            .await
            .map_err(|e| BrokerError::NoHostsAvailable(e.to_string()))?;
        if let Some(h) = &job.host {
            candidates.retain(|c| c.id == *h);
            if candidates.is_empty() {
                return Err(BrokerError::NoHostsAvailable(format!(
                    "host {h} is not an active host offering job type {:?}",
                    job.job_type
                )));
            }
        }
        if candidates.is_empty() {
            return Err(BrokerError::NoHostsAvailable(format!(
                "no active host offers job type {t:?}: a host runs it once its config has \
                 [executors.{t}] (e.g. kind = \"openai\" for compute) and a price in [host.prices]",
                t = job.job_type
            )));
        }
        let (bids, quote_count) = self.collect_quotes(job, &candidates).await;
        if bids.is_empty() {
            return Err(BrokerError::NoHostsAvailable(format!(
                "{} candidate(s), none quoted for {:?}",
                candidates.len(),
                job.job_type
            )));
        }
        let ranked = scoring::rank(bids);
        if let Some(p) = &self.payer {
            // What the job costs on the best-ranked host; failover re-checks each attempt.
            p.check(job.units, ranked[0].price)?;
        }
        debug!(job_id = %job.job_id, winner = %ranked[0].peer, price = ranked[0].price, quotes = quote_count, "auction decided");
        self.dispatch(job, ranked, deadline, started, quote_count)
            .await
    }

    /// Quotes in parallel; waits for the window or until every candidate answered.
    fn bid(&self, cand: &Candidate, price: u64) -> Bid {
        let rec = self.reputation.get(&cand.id);
        Bid {
            peer: cand.id.clone(),
            price,
            via: cand.via.clone(),
            hits: rec.hits,
            misses: rec.misses,
            mesh: cand.mesh,
        }
    }

    /// Quotes in parallel; waits for the window or until every candidate answered. A host
    /// whose earlier quote is still valid, with capacity this broker has not used up, is not
    /// asked again.
    async fn collect_quotes(&self, job: &JobSpec, candidates: &[Candidate]) -> (Vec<Bid>, usize) {
        let mut window = Duration::from_millis(self.cfg.quote_window_ms.max(1));
        // A quote over LoRa takes seconds of airtime (session setup included); the window
        // still ends as soon as every candidate has answered.
        if candidates.iter().any(|c| c.via != "ip") {
            window = window.max(RADIO_QUOTE_WINDOW);
        }
        let now = now_ms();
        let mut bids = Vec::new();
        let mut ask = Vec::new();
        for c in candidates {
            match self.quotes.get(&c.id, &job.job_type, now) {
                Some(price) => bids.push(self.bid(c, price)),
                None => ask.push(c.clone()),
            }
        }
        let mut count = bids.len();
        let mut pending: FuturesUnordered<_> = ask
            .into_iter()
            .map(|c| {
                let req = Request::Quote {
                    job_type: job.job_type.clone(),
                    units: job.units,
                };
                let client = self.client.clone();
                async move {
                    let r = client.request(c.peer, req).await;
                    (c, r)
                }
            })
            .collect();
        let until = tokio::time::Instant::now() + window;
        while let Ok(Some((cand, resp))) = tokio::time::timeout_at(until, pending.next()).await {
            match resp {
                // Work for nothing is a bid no honest host makes: a liar's way to the top.
                Ok(Response::Quote { price: 0, .. }) => {
                    debug!(peer = %cand.peer, "a zero price is no bid");
                }
                Ok(Response::Quote {
                    price,
                    valid_until_ms,
                    capacity_left,
                }) => {
                    count += 1;
                    self.quotes.put(
                        &cand.id,
                        &job.job_type,
                        price,
                        valid_until_ms,
                        capacity_left,
                    );
                    bids.push(self.bid(&cand, price));
                }
                Ok(other) => debug!(peer = %cand.peer, answer = ?other, "no quote"),
                Err(e) => debug!(peer = %cand.peer, error = %e, "quote failed"),
            }
        }
        (bids, count)
    }

    async fn attempt(
        &self,
        job: &JobSpec,
        bid: &Bid,
        deadline: Instant,
        spare: bool,
    ) -> RunOutcome {
        self.quotes.dispatched(&bid.peer, &job.job_type, true);
        let outcome = self.attempt_once(job, bid, deadline, spare).await;
        self.quotes.dispatched(&bid.peer, &job.job_type, false);
        if !matches!(outcome, RunOutcome::Ok { .. }) {
            // Busy, failed or silent: ask afresh next time.
            self.quotes.forget(&bid.peer);
        }
        outcome
    }

    fn payer_key(&self) -> Option<[u8; 32]> {
        self.payer.as_ref().map(|p| p.pubkey())
    }

    /// Verifies a receipt: signature, host, job, price, broker and the output hashes.
    fn check_receipt(
        &self,
        job: &JobSpec,
        bid: &Bid,
        output: &str,
        r: &SignedReceipt,
    ) -> Result<ReceiptBody, String> {
        let body = verify_receipt(r).map_err(|e| e.to_string())?;
        let checks = [
            (body.node_id == bid.peer, "signed by another node"),
            (body.job_id == job.job_id, "for another job"),
            (body.units <= job.units, "more units than were quoted"),
            (body.price == bid.price, "wrong price"),
            (body.broker_id == self.local, "for another broker"),
            (
                body.order.is_none() || body.order.as_ref().map(|o| o.pubkey) == self.payer_key(),
                "carries another payer's order",
            ),
            (
                body.proofs.input_blake3 == blake3::hash(job.payload.as_bytes()).to_hex().as_str(),
                "input hash mismatch",
            ),
            (
                body.proofs.output_blake3 == blake3::hash(output.as_bytes()).to_hex().as_str(),
                "output hash mismatch",
            ),
        ];
        match checks.iter().find(|(ok, _)| !ok) {
            Some((_, why)) => Err((*why).into()),
            None => Ok(body),
        }
    }

    async fn dispatch(
        &self,
        job: &JobSpec,
        ranked: Vec<Bid>,
        deadline: Instant,
        started: Instant,
        quotes: usize,
    ) -> Result<JobResult, BrokerError> {
        let want = job.redundancy.max(1);
        let budget = want + self.cfg.max_retries as usize;
        // With a host to fail over to, one attempt may take at most half the job's time.
        let spare = ranked.len() > want && budget > want;
        let mut queue = ranked.into_iter().take(budget);
        let attempt = |bid: Bid| async move {
            let o = match &self.tracker {
                // The failover monitor may requeue a stalled attempt: the next host gets it.
                Some(t) => t
                    .watch(
                        &job.job_id,
                        &bid.peer,
                        &bid.via,
                        self.attempt(job, &bid, deadline, spare),
                        |o| matches!(o, RunOutcome::Ok { .. }),
                    )
                    .await
                    .unwrap_or_else(RunOutcome::Failed),
                None => self.attempt(job, &bid, deadline, spare).await,
            };
            (bid, o)
        };
        let mut running = FuturesUnordered::new();
        for bid in queue.by_ref().take(want) {
            running.push(attempt(bid));
        }
        let mut attempts = Vec::new();
        let mut successes: Vec<(Bid, String, SignedReceipt, ReceiptBody)> = Vec::new();
        while let Some((bid, outcome)) = running.next().await {
            match outcome {
                RunOutcome::Ok {
                    output,
                    receipt,
                    body,
                } => {
                    self.reputation.hit(&bid.peer);
                    attempts.push(Attempt {
                        host: bid.peer.clone(),
                        outcome: "ok".into(),
                    });
                    successes.push((bid, output, receipt, body));
                    if successes.len() == want {
                        break;
                    }
                    continue;
                }
                RunOutcome::Failed(why) => {
                    info!(job_id = %job.job_id, host = %bid.peer, reason = %why, "host failed; trying the next");
                    attempts.push(Attempt {
                        host: bid.peer.clone(),
                        outcome: why,
                    });
                }
                RunOutcome::TimedOut => {
                    info!(job_id = %job.job_id, host = %bid.peer, "host did not answer in time; trying the next");
                    attempts.push(Attempt {
                        host: bid.peer.clone(),
                        outcome: "no answer before the activation deadline".into(),
                    });
                }
            }
            self.reputation.miss(&bid.peer);
            if let Some(next) = queue.next() {
                if Instant::now() < deadline {
                    running.push(attempt(next));
                }
            }
        }
        if successes.len() < want {
            if Instant::now() >= deadline {
                return Err(BrokerError::JobTimeout(job.timeout.as_millis() as u64));
            }
            return Err(BrokerError::AllHostsFailed(attempts));
        }
        let first_hash = &successes[0].3.proofs.output_blake3;
        if successes
            .iter()
            .any(|s| &s.3.proofs.output_blake3 != first_hash)
        {
            return Err(BrokerError::Disagreement(
                successes
                    .iter()
                    .map(|s| (s.0.peer.clone(), s.3.proofs.output_blake3.clone()))
                    .collect(),
            ));
        }
        let replicas = successes.iter().map(|s| s.0.peer.clone()).collect();
        let (bid, output, receipt, body) = successes.swap_remove(0);
        Ok(JobResult {
            job_id: job.job_id.clone(),
            host: bid.peer,
            price: bid.price,
            output,
            receipt,
            receipt_body: body,
            attempts,
            replicas,
            quotes,
            duration_ms: started.elapsed().as_millis() as u64,
        })
    }
}

#[path = "broker_attempt.rs"]
mod attempt;

#[cfg(test)]
#[path = "broker_tests.rs"]
mod tests;
