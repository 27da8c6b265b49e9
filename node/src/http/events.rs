//! Live updates for the dashboard: `GET /events` (Server-Sent Events) and `GET /market/jobs`
//! (the jobs this node brokered lately).
//!
//! Everything here is bounded: events go through one broadcast channel of [`CHANNEL`] slots
//! (a client that falls behind gets a `lagged` event saying how many it missed, never an
//! unbounded queue), at most [`MAX_STREAMS`] streams are open at once (one more gets `503
//! too_many_streams` with `Retry-After`), the job list keeps the last [`RECENT_JOBS`], and
//! each stream sends a keep-alive comment every [`KEEP_ALIVE`] so proxies and browsers keep
//! it open. Streams end when the node shuts down, so they never hold up a graceful stop.

use std::{
    collections::{BTreeMap, VecDeque},
    convert::Infallible,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use axum::{
    extract::State,
    http::StatusCode,
    response::{
        sse::{Event, KeepAlive, Sse},
        IntoResponse, Response,
    },
    routing::get,
    Json, Router,
};
use futures::StreamExt as _;
use offgrid_api::{
    self as api,
    events::{JobList, JobRecord, PeerChange, StreamStatus},
};
use serde::Serialize;
use tokio::sync::{broadcast, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use super::{error::ApiError, AppState};
use crate::{
    market::broker::{BrokerError, JobResult},
    now_ms,
};

/// Slots of the broadcast channel: events a slow client may fall behind by.
pub const CHANNEL: usize = 256;
/// Most event streams open at once.
pub const MAX_STREAMS: usize = 16;
/// Jobs kept for `GET /market/jobs`.
pub const RECENT_JOBS: usize = 64;
/// Interval of the keep-alive comment.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// How often the peer registry is compared for `peer` events while a stream is open.
pub const PEER_POLL: Duration = Duration::from_secs(1);

/// One event, serialised once for every stream.
#[derive(Debug, Clone)]
pub struct Published {
    /// The SSE event name.
    pub kind: &'static str,
    /// Increases by one per event since the node started.
    pub id: u64,
    /// Compact JSON.
    pub data: Arc<str>,
}

/// The event hub: the channel, the stream cap and the recent jobs.
pub struct Events {
    tx: broadcast::Sender<Published>,
    streams: Arc<Semaphore>,
    seq: AtomicU64,
    jobs: Mutex<VecDeque<JobRecord>>,
    cancel: CancellationToken,
}

impl Events {
    /// A hub whose streams end when `cancel` fires.
    pub fn new(cancel: CancellationToken) -> Self {
        Self::with_limit(cancel, MAX_STREAMS)
    }

    /// A hub with another stream cap (tests).
    pub fn with_limit(cancel: CancellationToken, max_streams: usize) -> Self {
        let (tx, _) = broadcast::channel(CHANNEL);
        Events {
            tx,
            streams: Arc::new(Semaphore::new(max_streams)),
            seq: AtomicU64::new(0),
            jobs: Mutex::new(VecDeque::with_capacity(RECENT_JOBS)),
            cancel,
        }
    }

    /// Streams open now.
    pub fn listeners(&self) -> usize {
        self.tx.receiver_count()
    }

    /// Sends `data` as event `kind` to every open stream (none: it is dropped).
    pub fn publish<T: Serialize>(&self, kind: &'static str, data: &T) {
        let Ok(json) = serde_json::to_string(data) else {
            return;
        };
        let id = self.seq.fetch_add(1, Ordering::Relaxed);
        // An error only means no stream is open.
        let _ = self.tx.send(Published {
            kind,
            id,
            data: json.into(),
        });
    }

    fn jobs(&self) -> std::sync::MutexGuard<'_, VecDeque<JobRecord>> {
        // A poisoned lock only means a panic elsewhere mid-update; the list stays usable.
        self.jobs.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The broker took a job: event `job_started`.
    pub fn job_started(&self, job_id: &str, job_type: &str) {
        let rec = new_record(job_id, job_type, "running");
        {
            let mut jobs = self.jobs();
            if jobs.len() >= RECENT_JOBS {
                jobs.pop_back();
            }
            jobs.push_front(rec.clone());
        }
        self.publish("job_started", &rec);
    }

    /// A job ended: event `job_finished` with its host, price, latency and receipt.
    pub fn job_finished(&self, job_id: &str, job_type: &str, r: &Result<JobResult, BrokerError>) {
        let mut rec = self
            .jobs()
            .iter()
            .find(|j| j.job_id == job_id)
            .cloned()
            .unwrap_or_else(|| new_record(job_id, job_type, ""));
        rec.finished_ms = Some(now_ms());
        match r {
            Ok(res) => {
                rec.state = "completed".into();
                rec.host = Some(res.host.clone());
                rec.price_micro = Some(res.price);
                rec.latency_ms = Some(res.receipt_body.metrics.latency_ms);
                rec.duration_ms = Some(res.duration_ms);
                let view = offgrid_ledger::receipt::core_view(&res.receipt, &res.receipt_body);
                rec.receipt = serde_json::from_value::<api::market::ReceiptView>(view).ok();
            }
            Err(e) => {
                let a = ApiError::from(e.clone());
                rec.state = "failed".into();
                rec.error = Some(a.code.to_owned());
                rec.message = Some(a.message);
            }
        }
        {
            let mut jobs = self.jobs();
            match jobs.iter_mut().find(|j| j.job_id == job_id) {
                Some(j) => *j = rec.clone(),
                None => {
                    if jobs.len() >= RECENT_JOBS {
                        jobs.pop_back();
                    }
                    jobs.push_front(rec.clone());
                }
            }
        }
        self.publish("job_finished", &rec);
    }

    /// The recent jobs, newest first.
    pub fn recent(&self) -> Vec<JobRecord> {
        self.jobs().iter().cloned().collect()
    }

    /// Opens a stream: `None` when [`MAX_STREAMS`] are open.
    pub fn open(&self) -> Option<(OwnedSemaphorePermit, broadcast::Receiver<Published>)> {
        let permit = self.streams.clone().try_acquire_owned().ok()?;
        Some((permit, self.tx.subscribe()))
    }
}

/// The routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/events", get(events))
        .route("/market/jobs", get(jobs))
}

fn sse_event(p: &Published) -> Event {
    Event::default()
        .event(p.kind)
        .id(p.id.to_string())
        .data(&*p.data)
}

async fn stream_status(s: &AppState) -> Result<StreamStatus, ApiError> {
    let net = s.peers.status().await?;
    Ok(StreamStatus {
        peer_id: net.peer_id,
        uptime_s: s.started.elapsed().as_secs(),
        connected: net.connected_peers as u64,
        known: net.known_peers as u64,
        active_hosts: net.active_hosts as u64,
        jobs_in_flight: net.jobs_in_flight as u64,
    })
}

#[utoipa::path(get, path = "/events", tag = "dashboard",
    responses((status = 200, description = "Server-Sent Events (text/event-stream), each `data` one compact JSON object: `hello` (a StreamStatus, first), `status` (a StreamStatus, when the peer counts change), `job_started` and `job_finished` (a JobRecord: host, price, latency and receipt once ended), `peer` (a PeerChange), `lagged` ({\"missed\": n} when this client fell behind). A comment every 15 s keeps the stream open; it ends when the node stops.", content_type = "text/event-stream", body = String),
        (status = 503, description = "16 streams are open already (too_many_streams, Retry-After), or the node is stopping (unavailable)", body = api::ErrorBody)))]
pub(crate) async fn events(State(s): State<AppState>) -> Result<Response, ApiError> {
    let Some((permit, rx)) = s.events.open() else {
        return Err(ApiError::other(
            StatusCode::SERVICE_UNAVAILABLE,
            "too_many_streams",
            format!("{MAX_STREAMS} event streams are open already; close one or retry later"),
        )
        .retry_after(5));
    };
    let hello = Published {
        kind: "hello",
        id: s.events.seq.load(Ordering::Relaxed),
        data: serde_json::to_string(&stream_status(&s).await?)
            .map_err(|_| ApiError::internal())?
            .into(),
    };
    let live = futures::stream::unfold((rx, permit), |(mut rx, permit)| async move {
        let ev = match rx.recv().await {
            Ok(p) => sse_event(&p),
            Err(broadcast::error::RecvError::Lagged(n)) => Event::default()
                .event("lagged")
                .data(format!("{{\"missed\":{n}}}")),
            Err(broadcast::error::RecvError::Closed) => return None,
        };
        Some((Ok::<_, Infallible>(ev), (rx, permit)))
    });
    let stream = futures::stream::once(async move { Ok(sse_event(&hello)) })
        .chain(live)
        .take_until(s.events.cancel.clone().cancelled_owned());
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
        .into_response())
}

#[utoipa::path(get, path = "/market/jobs", tag = "dashboard",
    responses((status = 200, description = "The last 64 jobs this node brokered since it started, newest first: running, or ended with host, price, latency and receipt", body = JobList)))]
pub(crate) async fn jobs(State(s): State<AppState>) -> Json<JobList> {
    Json(JobList {
        jobs: s.events.recent(),
    })
}

/// What a `peer` event compares.
type PeerKey = (String, bool, Option<bool>);

/// While a stream is open, compares the peer registry every [`PEER_POLL`] and publishes a
/// `peer` event per change and a `status` event when the counts change.
pub async fn watch_peers(s: AppState, cancel: CancellationToken) {
    let mut tick = tokio::time::interval(PEER_POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut last: Option<BTreeMap<String, PeerKey>> = None;
    let mut last_counts = None;
    loop {
        tokio::select! {
            biased;
            _ = cancel.cancelled() => break,
            _ = tick.tick() => {}
        }
        if s.events.listeners() == 0 {
            // Nobody listens: compare afresh when someone does.
            last = None;
            continue;
        }
        let Ok(peers) = s.peers.peers().await else {
            continue;
        };
        let now: BTreeMap<String, (PeerKey, u64)> = peers
            .into_iter()
            .map(|p| {
                let key = (p.via.clone(), p.connected, p.says_active());
                (p.peer_id, (key, p.last_seen_ms))
            })
            .collect();
        if let Some(before) = &last {
            for (id, (key, seen)) in &now {
                let change = match before.get(id) {
                    None => "added",
                    Some(k) if k != key => "changed",
                    Some(_) => continue,
                };
                s.events
                    .publish("peer", &peer_change(change, id, key, *seen));
            }
            for (id, key) in before {
                if !now.contains_key(id) {
                    s.events
                        .publish("peer", &peer_change("removed", id, key, 0));
                }
            }
        }
        last = Some(now.into_iter().map(|(id, (k, _))| (id, k)).collect());
        if let Ok(st) = stream_status(&s).await {
            let counts = (st.connected, st.known, st.active_hosts, st.jobs_in_flight);
            if last_counts != Some(counts) {
                if last_counts.is_some() {
                    s.events.publish("status", &st);
                }
                last_counts = Some(counts);
            }
        }
    }
}

fn peer_change(change: &str, id: &str, key: &PeerKey, last_seen_ms: u64) -> PeerChange {
    PeerChange {
        change: change.to_owned(),
        peer_id: id.to_owned(),
        via: key.0.clone(),
        connected: key.1,
        active: key.2,
        last_seen_ms,
    }
}

/// A job's record as it starts: nothing known yet but its id, type and state.
fn new_record(job_id: &str, job_type: &str, state: &str) -> JobRecord {
    JobRecord {
        job_id: job_id.to_owned(),
        job_type: job_type.to_owned(),
        state: state.to_owned(),
        started_ms: now_ms(),
        finished_ms: None,
        host: None,
        price_micro: None,
        latency_ms: None,
        duration_ms: None,
        receipt: None,
        error: None,
        message: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn streams_are_capped_and_a_closed_one_frees_its_slot() {
        let ev = Events::with_limit(CancellationToken::new(), 2);
        let a = ev.open().expect("first");
        let _b = ev.open().expect("second");
        assert!(ev.open().is_none(), "a third stream is refused");
        drop(a);
        assert!(ev.open().is_some(), "a closed stream frees its slot");
    }

    #[tokio::test]
    async fn a_slow_client_learns_how_many_events_it_missed() {
        let ev = Events::new(CancellationToken::new());
        let (_permit, mut rx) = ev.open().unwrap();
        for i in 0..(CHANNEL + 10) {
            ev.publish("status", &i);
        }
        match rx.recv().await {
            Err(broadcast::error::RecvError::Lagged(n)) => assert_eq!(n, 10),
            other => panic!("expected a lag, got {other:?}"),
        }
        // Then it goes on with the oldest event still held.
        let p = rx.recv().await.unwrap();
        assert_eq!((p.kind, &*p.data), ("status", "10"));
    }

    #[test]
    fn recent_jobs_are_bounded_newest_first_and_updated_in_place() {
        let ev = Events::new(CancellationToken::new());
        for i in 0..(RECENT_JOBS + 5) {
            ev.job_started(&format!("j{i}"), "echo");
        }
        let jobs = ev.recent();
        assert_eq!(jobs.len(), RECENT_JOBS);
        assert_eq!(jobs[0].job_id, format!("j{}", RECENT_JOBS + 4));
        let last = format!("j{}", RECENT_JOBS + 4);
        ev.job_finished(
            &last,
            "echo",
            &Err(BrokerError::NoHostsAvailable("x".into())),
        );
        let jobs = ev.recent();
        assert_eq!(jobs.len(), RECENT_JOBS);
        assert_eq!(jobs[0].state, "failed");
        assert_eq!(jobs[0].error.as_deref(), Some("no_hosts"));
        assert!(jobs[0].finished_ms.is_some());
    }
}
