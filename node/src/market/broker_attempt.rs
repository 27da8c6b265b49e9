//! One host's attempt at a job, and the heartbeats that tell a slow host from a stuck one.
//!
//! While a run is out to a host on an IP link, the broker polls it with
//! [`Request::Progress`] every `[market] heartbeat_ms`. The host answers from its table of
//! running jobs at once, whatever its executor is doing. As long as answers say `running`,
//! the attempt may last until the job's deadline, past `t_activate_s`; once no answer has
//! come for `heartbeat_misses` intervals, the host is given up and the job fails over.
//! Polls are bounded: at most `heartbeat_misses` are in flight, each cut off at the silence
//! limit.
//!
//! Hosts heard only by radio are not polled (a poll a second would spend the duty cycle):
//! their attempt ends at its activation deadline, `t_activate_s`, cut to half the job's
//! timeout when another host could take over.

use std::{future::Future, time::Duration};

use futures::{stream::FuturesUnordered, StreamExt};
use libp2p::PeerId;
use offgrid_behaviours::auction::{Request, Response, RunRequest};
use tokio::time::Instant;

use super::{Bid, Broker, JobSpec, RunOutcome};
use crate::now_ms;

/// How often a host is polled, and after how many unanswered intervals it is given up.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Heartbeat {
    pub(crate) interval: Duration,
    pub(crate) misses: u32,
}

impl Heartbeat {
    /// How long a host may stay silent.
    pub(crate) fn silence(&self) -> Duration {
        self.interval * self.misses.max(1)
    }
}

/// What became of a watched run.
pub(crate) enum Watched<T> {
    /// The run answered (or its own deadline passed).
    Answered(T),
    /// No poll was answered `running` for the silence limit.
    Silent,
}

/// Awaits `run` while calling `poll` every interval; `beat` hears the elapsed time and
/// progress of each answer that says the job runs. Ends [`Watched::Silent`] once no such answer has come for
/// [`Heartbeat::silence`], counted from the start.
pub(crate) async fn watch<T, P>(
    run: impl Future<Output = T>,
    hb: Heartbeat,
    mut poll: impl FnMut() -> P,
    mut beat: impl FnMut(u64, u64),
) -> Watched<T>
where
    P: Future<Output = Option<Response>>,
{
    tokio::pin!(run);
    let silence = hb.silence();
    let mut last_heard = Instant::now();
    let mut tick = tokio::time::interval_at(Instant::now() + hb.interval, hb.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut polls = FuturesUnordered::new();
    loop {
        let silent_at = last_heard + silence;
        tokio::select! {
            biased;
            r = &mut run => return Watched::Answered(r),
            Some(answer) = polls.next(), if !polls.is_empty() => {
                if let Ok(Some(Response::Progress { running: true, elapsed_ms, progress })) = answer {
                    last_heard = Instant::now();
                    beat(elapsed_ms, progress);
                }
            }
            _ = tokio::time::sleep_until(silent_at) => return Watched::Silent,
            _ = tick.tick() => {
                if polls.len() < hb.misses.max(1) as usize {
                    polls.push(tokio::time::timeout(silence, poll()));
                }
            }
        }
    }
}

impl Broker {
    /// One host's attempt: a payment order, the run request, and heartbeats (IP hosts) or
    /// the activation deadline (radio hosts) to decide when to give it up.
    pub(super) async fn attempt_once(
        &self,
        job: &JobSpec,
        bid: &Bid,
        deadline: std::time::Instant,
        spare: bool,
    ) -> RunOutcome {
        let Ok(peer) = bid.peer.parse::<PeerId>() else {
            return RunOutcome::Failed("bad peer id".into());
        };
        let hb = (bid.via == "ip" && self.cfg.heartbeat_ms > 0).then(|| Heartbeat {
            interval: Duration::from_millis(self.cfg.heartbeat_ms),
            misses: self.cfg.heartbeat_misses.max(1),
        });
        let now = std::time::Instant::now();
        let left = deadline.saturating_duration_since(now);
        let per_host = match hb {
            // Heartbeats, not a wall clock, decide: the host may use the job's whole time.
            Some(_) => left,
            None => {
                let mut d = Duration::from_secs(self.cfg.t_activate_s.max(1));
                if spare {
                    d = d.min((job.timeout / 2).max(Duration::from_secs(1)));
                }
                d.min(left)
            }
        };
        let deadline_ms = now_ms() + per_host.as_millis() as u64;
        let hold = match &self.payer {
            Some(p) => match p.order(&job.job_id, &bid.peer, job.units, bid.price, deadline_ms) {
                Ok(h) => h,
                Err(e) => return RunOutcome::Failed(e.to_string()),
            },
            None => None,
        };
        let req = Request::Run(RunRequest {
            job_id: job.job_id.clone(),
            job_type: job.job_type.clone(),
            units: job.units,
            payload: job.payload.clone(),
            price: bid.price,
            deadline_ms,
            order: hold.as_ref().map(|h| h.order.clone()),
        });
        let run = tokio::time::timeout(per_host, self.client.request(peer, req));
        let answered = match hb {
            None => run.await,
            Some(hb) => {
                let client = &self.client;
                let poll = || {
                    let job_id = job.job_id.clone();
                    async move {
                        client
                            .request(peer, Request::Progress { job_id })
                            .await
                            .ok()
                    }
                };
                let timeout_ms = job.timeout.as_millis().max(1) as f64;
                let beat = |elapsed_ms: u64, progress: u64| {
                    tracing::debug!(job_id = %job.job_id, host = %bid.peer, elapsed_ms, progress, "heartbeat");
                    if let Some(t) = &self.tracker {
                        // The share of the job's time used while the host reports: it
                        // rises, so the stall monitor never mistakes a live job for a
                        // stuck one.
                        t.progress(&job.job_id, (elapsed_ms as f64 / timeout_ms).min(0.99));
                    }
                };
                match watch(run, hb, poll, beat).await {
                    Watched::Answered(r) => r,
                    Watched::Silent => {
                        return RunOutcome::Failed(format!(
                            "stopped reporting: no heartbeat for {} ms",
                            hb.silence().as_millis()
                        ))
                    }
                }
            }
        };
        let resp = match answered {
            Err(_) => return RunOutcome::TimedOut,
            Ok(Err(e)) => return RunOutcome::Failed(e.to_string()),
            Ok(Ok(r)) => r,
        };
        match resp {
            Response::Done { output, receipt } => {
                match self.check_receipt(job, bid, &output, &receipt) {
                    Ok(body) => RunOutcome::Ok {
                        output,
                        receipt,
                        body,
                    },
                    Err(e) => RunOutcome::Failed(format!("invalid receipt: {e}")),
                }
            }
            Response::Busy { .. } => RunOutcome::Failed("busy".into()),
            Response::Declined { reason } => RunOutcome::Failed(format!("declined: {reason}")),
            Response::Failed { error } => RunOutcome::Failed(error),
            Response::Quote { .. } => RunOutcome::Failed("answered a run with a quote".into()),
            Response::Progress { .. } => {
                RunOutcome::Failed("answered a run with a heartbeat".into())
            }
        }
    }
}
