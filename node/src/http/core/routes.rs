//! Core's adapter: `POST /auction` (synchronous), `POST /jobs` + `GET /jobs/{id}`
//! (asynchronous) and `GET /metrics`. The contract is ARCHITECTURE.md "Core API".

use std::{sync::Arc, time::Instant};

use axum::{
    extract::{Path, Request, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::{get, post},
    Json, Router,
};
use serde_json::{json, Value};

use crate::http::{error::ApiError, extract::read_body, market::MAX_TIMEOUT_S, AppState};
use crate::{
    config::{Credits, MICRO},
    http::core::{
        auth::{AuthError, CoreKeys},
        canonical::{self, Json as Doc},
        jobs::{Admission, JobBook, JobState, Outcome},
    },
    http::metrics::Metrics,
    market::broker::{BrokerError, JobResult, JobSpec},
};

/// Shared state of Core's routes.
pub struct CoreState {
    /// Keys that may sign jobs.
    pub keys: CoreKeys,
    /// Idempotency records and async job states.
    pub book: JobBook,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Deadline of jobs that name none.
    pub default_timeout_s: u64,
}

/// Routes of this module.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/auction", post(auction))
        .route("/jobs", post(submit))
        .route("/jobs/{id}", get(job_state))
        .route("/metrics", get(metrics))
}

fn now_s() -> i64 {
    (crate::now_ms() / 1000) as i64
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::InvalidSignature(m) => {
                ApiError::other(StatusCode::UNAUTHORIZED, "invalid_signature", m)
            }
            AuthError::StaleTimestamp(m) => {
                ApiError::other(StatusCode::UNAUTHORIZED, "stale_timestamp", m)
            }
        }
    }
}

/// Core's error mapping: NoHostsAvailable ← 503, JobTimeout ← 504.
fn broker_error(e: &BrokerError) -> ApiError {
    let msg = e.to_string();
    match e {
        // No host could take it: Core's NoHostsAvailable, and a retry may run it.
        BrokerError::NoHostsAvailable(_) => {
            ApiError::other(StatusCode::SERVICE_UNAVAILABLE, "no_hosts", msg)
        }
        // Hosts received it and failed: the outcome is kept and replayed, never re-run
        // (it was 503 no_hosts, which let a retry run a failing job again).
        BrokerError::AllHostsFailed(_) => {
            ApiError::other(StatusCode::BAD_GATEWAY, "job_failed", msg)
        }
        BrokerError::JobTimeout(_) => {
            ApiError::other(StatusCode::GATEWAY_TIMEOUT, "job_timeout", msg)
        }
        BrokerError::Disagreement(_) => {
            ApiError::other(StatusCode::BAD_GATEWAY, "disagreement", msg)
        }
        BrokerError::Overloaded => {
            ApiError::other(StatusCode::TOO_MANY_REQUESTS, "rate_limited", msg).retry_after(1)
        }
        BrokerError::Invalid(_) => ApiError::invalid_request(msg),
        BrokerError::InsufficientFunds { .. } => {
            ApiError::other(StatusCode::PAYMENT_REQUIRED, "insufficient_funds", msg)
        }
    }
}

/// Runs a job through the broker and counts it in the metrics.
pub async fn run_counted(s: &AppState, job: JobSpec) -> Result<JobResult, BrokerError> {
    let t = Instant::now();
    let (id, ty) = (job.job_id.clone(), job.job_type.clone());
    s.events.job_started(&id, &ty);
    let r = s.broker.run(job).await;
    s.events.job_finished(&id, &ty, &r);
    let outcome = match &r {
        Ok(_) => "completed",
        Err(e) => {
            s.core.metrics.broker_error(e.kind());
            e.kind()
        }
    };
    s.core.metrics.job(outcome, t.elapsed().as_secs_f64());
    r
}

/// Checks the signature: the header form when `X-Offgrid-Signature` is present, else the
/// body form.
fn authenticate(
    s: &AppState,
    headers: &HeaderMap,
    doc: Option<&Doc>,
    signed: &[u8],
) -> Result<(), ApiError> {
    let h = |n: &str| headers.get(n).and_then(|v| v.to_str().ok());
    match (h("x-offgrid-timestamp"), h("x-offgrid-signature")) {
        (Some(ts), Some(sig)) => Ok(s.core.keys.verify_headers(ts, sig, signed, now_s())?),
        (None, Some(_)) | (Some(_), None) => Err(AuthError::InvalidSignature(
            "X-Offgrid-Timestamp and X-Offgrid-Signature go together".into(),
        )
        .into()),
        (None, None) => match doc {
            Some(d) => Ok(s.core.keys.verify_body(d, now_s())?),
            None => Err(AuthError::InvalidSignature("signature missing".into()).into()),
        },
    }
}

/// Fields that sign or date a request but are not part of the job itself.
const ENVELOPE: [&str; 4] = ["signature", "timestamp", "sig_alg", "key_id"];

/// The job in Core's body, and a hash of its content (without the signing envelope, so a
/// re-signed retry is the same job).
fn core_job(doc: &Doc, default_timeout_s: u64) -> Result<(JobSpec, String), ApiError> {
    let Doc::Object(m) = doc else {
        return Err(ApiError::invalid_request("body must be a JSON object"));
    };
    let string = |k: &str| match m.get(k) {
        Some(Doc::String(s)) if !s.is_empty() && s.len() <= 128 => Ok(s.clone()),
        Some(_) => Err(ApiError::invalid_request(format!(
            "`{k}` must be a string of 1..=128 bytes"
        ))),
        None => Err(ApiError::invalid_request(format!("`{k}` is missing"))),
    };
    let int = |k: &str, lo: u64, hi: u64, default: u64| match m.get(k) {
        None | Some(Doc::Null) => Ok(default),
        Some(Doc::Number(n)) => n
            .parse::<u64>()
            .ok()
            .filter(|v| (lo..=hi).contains(v))
            .ok_or_else(|| {
                ApiError::invalid_request(format!("`{k}` must be an integer in {lo}..={hi}"))
            }),
        Some(_) => Err(ApiError::invalid_request(format!("`{k}` must be a number"))),
    };
    let job_id = string("job_id")?;
    let job_type = string("type")?;
    let payload = m
        .get("payload")
        .map_or_else(|| "{}".to_owned(), Doc::canonical);
    let units = match m.get("size") {
        // No size: an LLM call is sized from its prompt and answer budget, anything else
        // is one unit.
        None | Some(Doc::Null) => serde_json::from_str(&payload)
            .ok()
            .and_then(|p| crate::market::size::estimate_units(&p))
            .unwrap_or(MICRO),
        Some(Doc::Number(n)) => {
            Credits::parse_decimal(n)
                .or_else(|_| match n.parse::<f64>() {
                    Ok(f) if f.is_finite() && f >= 0.0 => {
                        Ok(Credits((f * MICRO as f64).round() as u64))
                    }
                    _ => Err(format!("`size` {n} is not a non-negative number")),
                })
                .map_err(ApiError::invalid_request)?
                .0
        }
        Some(_) => return Err(ApiError::invalid_request("`size` must be a number")),
    };
    let timeout_s = int("timeout_s", 1, MAX_TIMEOUT_S, default_timeout_s)?;
    let redundancy = int(
        "redundancy",
        1,
        crate::http::market::MAX_REDUNDANCY as u64,
        1,
    )? as usize;
    let mut content = m.clone();
    for k in ENVELOPE {
        content.remove(k);
    }
    let hash = blake3::hash(Doc::Object(content).canonical().as_bytes())
        .to_hex()
        .to_string();
    let job = JobSpec {
        job_id,
        job_type,
        units,
        payload,
        timeout: std::time::Duration::from_secs(timeout_s),
        redundancy,
        host: None,
    };
    Ok((job, hash))
}

/// Core's success shape.
fn completed(r: &JobResult) -> Value {
    let mut result = crate::http::market::result_json(r);
    let receipt = result["receipt"].take();
    json!({
        "status": "completed",
        "job_id": r.job_id,
        "result": {
            "ok": true,
            "output": result["output"].take(),
            "host": r.host,
            "quote": r.price as f64 / MICRO as f64,
            "offgrid_receipt": receipt,
            "attempts": result["attempts"].take(),
            "duration_ms": r.duration_ms,
        },
    })
}

fn outcome_of(r: &Result<JobResult, BrokerError>) -> Outcome {
    match r {
        Ok(res) => Outcome {
            status: 200,
            body: completed(res),
        },
        Err(e) => {
            let api = broker_error(e);
            Outcome {
                status: api.status.as_u16(),
                body: json!({ "error": api.code, "message": api.message }),
            }
        }
    }
}

fn respond(o: Outcome) -> Response {
    let status = StatusCode::from_u16(o.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, Json(o.body)).into_response()
}

async fn parse_and_authenticate(
    s: &AppState,
    headers: &HeaderMap,
    req: Request,
) -> Result<(JobSpec, String), ApiError> {
    let bytes = read_body(req, s).await?;
    // Parse first: a malformed body is 400 whatever its signature.
    let doc = canonical::parse(&bytes).map_err(|e| ApiError::invalid_request(e.to_string()))?;
    authenticate(s, headers, Some(&doc), &bytes)?;
    check_audience(&doc, &s.keys.peer_id)?;
    core_job(&doc, s.core.default_timeout_s)
}

/// A job may name the broker it is for (`"audience"`: its peer id, inside what is signed):
/// replayed to another broker, it is refused there, so it cannot run twice on two meshes.
fn check_audience(doc: &Doc, me: &str) -> Result<(), ApiError> {
    let Doc::Object(m) = doc else {
        return Ok(());
    };
    match m.get("audience") {
        None | Some(Doc::Null) => Ok(()),
        Some(Doc::String(a)) if a == me => Ok(()),
        Some(Doc::String(a)) => Err(AuthError::InvalidSignature(format!(
            "the job is signed for broker {a}, not this node ({me})"
        ))
        .into()),
        Some(_) => Err(ApiError::invalid_request("`audience` must be a peer id")),
    }
}

fn store_error(e: crate::store::StoreError) -> ApiError {
    tracing::error!(error = %e, "job book");
    e.into()
}

async fn run_ticketed(
    s: &AppState,
    ticket: crate::http::core::jobs::Ticket,
    job: JobSpec,
) -> Outcome {
    let outcome = outcome_of(&run_counted(s, job).await);
    if let Err(e) = s.core.book.finish(ticket, outcome.clone()).await {
        tracing::error!(error = %e, "cannot record a job's answer");
    }
    outcome
}

#[utoipa::path(post, path = "/auction", tag = "core", request_body = crate::http::openapi::CoreJob, security((), ("core_hmac_header" = [])),
    responses((status = 200, description = "Completed", body = crate::http::openapi::CoreCompleted), (status = 400, description = "invalid_request (names the problem)", body = crate::http::openapi::ErrorBody), (status = 401, description = "invalid_signature or stale_timestamp", body = crate::http::openapi::ErrorBody), (status = 402, description = "insufficient_funds: the broker node's account cannot pay for the job (refused before dispatch; not kept, a retry runs it)", body = crate::http::openapi::ErrorBody), (status = 409, description = "conflict: job_id used for another job", body = crate::http::openapi::ErrorBody), (status = 413, description = "too_large", body = crate::http::openapi::ErrorBody), (status = 429, description = "rate_limited (Retry-After)", body = crate::http::openapi::ErrorBody), (status = 502, description = "job_failed: the hosts that received the job failed it (kept: a retry gets this answer, the job is not run again)", body = crate::http::openapi::ErrorBody), (status = 503, description = "no_hosts: no host could take it (not kept: a retry may run it)", body = crate::http::openapi::ErrorBody), (status = 504, description = "job_timeout", body = crate::http::openapi::ErrorBody), (status = 507, description = "insufficient_storage: the node's disk is full (the job book cannot record the job)", body = crate::http::openapi::ErrorBody)))]
pub(crate) async fn auction(
    State(s): State<AppState>,
    headers: HeaderMap,
    req: Request,
) -> Result<Response, ApiError> {
    let (job, hash) = parse_and_authenticate(&s, &headers, req).await?;
    tracing::info!(job_id = %job.job_id, job_type = %job.job_type, "auction requested by Core");
    match s
        .core
        .book
        .admit(&job.job_id, &hash)
        .await
        .map_err(store_error)?
    {
        Admission::Run(ticket) => {
            // The job runs in its own task: a client that disconnects mid-job does not
            // cancel it, and its retry gets the outcome from the book.
            let st = s.clone();
            let task = tokio::spawn(async move { run_ticketed(&st, ticket, job).await });
            Ok(respond(task.await.map_err(|_| ApiError::internal())?))
        }
        Admission::Wait(mut rx) => {
            let o = rx
                .wait_for(Option::is_some)
                .await
                .map_err(|_| ApiError::internal())?
                .clone();
            Ok(respond(o.unwrap_or(Outcome {
                status: 500,
                body: Value::Null,
            })))
        }
        Admission::Done(o) => Ok(respond(o)),
        Admission::Conflict => Err(conflict(&job.job_id)),
    }
}

fn conflict(id: &str) -> ApiError {
    ApiError::other(
        StatusCode::CONFLICT,
        "conflict",
        format!("job_id {id:?} was already used for a different job"),
    )
}

fn state_json(id: &str, st: &JobState) -> Value {
    match st {
        JobState::Running => json!({ "job_id": id, "state": "running" }),
        JobState::Done(o) if o.status == 200 => {
            json!({ "job_id": id, "state": "completed", "status": "completed", "result": o.body["result"] })
        }
        JobState::Done(o) => {
            json!({ "job_id": id, "state": "failed", "http_status": o.status, "error": o.body })
        }
    }
}

#[utoipa::path(post, path = "/jobs", tag = "core", request_body = crate::http::openapi::CoreJob, security((), ("core_hmac_header" = [])),
    responses((status = 202, description = "Accepted: {job_id, state: running, status_url}", body = crate::http::openapi::JobStateBody), (status = 200, description = "Already ended: its state", body = crate::http::openapi::JobStateBody), (status = 400, description = "invalid_request", body = crate::http::openapi::ErrorBody), (status = 401, description = "invalid_signature or stale_timestamp", body = crate::http::openapi::ErrorBody), (status = 409, description = "conflict", body = crate::http::openapi::ErrorBody), (status = 413, description = "too_large", body = crate::http::openapi::ErrorBody), (status = 503, description = "storage_unavailable: the job book cannot be written (retry)", body = crate::http::openapi::ErrorBody), (status = 507, description = "insufficient_storage: the node's disk is full", body = crate::http::openapi::ErrorBody)))]
pub(crate) async fn submit(
    State(s): State<AppState>,
    headers: HeaderMap,
    req: Request,
) -> Result<Response, ApiError> {
    let (job, hash) = parse_and_authenticate(&s, &headers, req).await?;
    let id = job.job_id.clone();
    match s.core.book.admit(&id, &hash).await.map_err(store_error)? {
        Admission::Run(ticket) => {
            let st = s.clone();
            tokio::spawn(async move {
                run_ticketed(&st, ticket, job).await;
            });
            Ok((StatusCode::ACCEPTED, Json(json!({ "job_id": id, "state": "running", "status_url": format!("/jobs/{id}") }))).into_response())
        }
        Admission::Wait(_) => Ok((
            StatusCode::ACCEPTED,
            Json(state_json(&id, &JobState::Running)),
        )
            .into_response()),
        Admission::Done(o) => {
            Ok((StatusCode::OK, Json(state_json(&id, &JobState::Done(o)))).into_response())
        }
        Admission::Conflict => Err(conflict(&id)),
    }
}

#[utoipa::path(get, path = "/jobs/{id}", tag = "core", params(("id" = String, Path, description = "Job id")), security(("bearer" = []), ("core_hmac_header" = [])),
    responses((status = 200, description = "The job's state", body = crate::http::openapi::JobStateBody), (status = 401, description = "Unsigned: sign timestamp + \".\" + path with the X-Offgrid headers", body = crate::http::openapi::ErrorBody), (status = 404, description = "Unknown job", body = crate::http::openapi::ErrorBody)))]
pub(crate) async fn job_state(
    State(s): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    // Core signs `timestamp + "." + path`; local tools may use the node's bearer token.
    let bearer = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|t| crate::http::auth::token_matches(&s.token, t.trim()));
    if !bearer {
        authenticate(&s, &headers, None, format!("/jobs/{id}").as_bytes())?;
    }
    match s.core.book.state(&id).map_err(store_error)? {
        Some(st) => Ok(Json(state_json(&id, &st))),
        None => Err(ApiError::not_found(format!("no job {id:?}"))),
    }
}

#[utoipa::path(get, path = "/metrics", tag = "core",
    responses((status = 200, description = "Prometheus text: offgrid_jobs_total{outcome}, offgrid_job_duration_seconds, offgrid_broker_errors_total{kind}, offgrid_http_requests_total{route,status}, offgrid_peers, offgrid_active_hosts, offgrid_hosted_shards, offgrid_hosted_shard_disk_bytes, offgrid_shard_refusals_total{kind}", content_type = "text/plain")))]
pub(crate) async fn metrics(State(s): State<AppState>) -> Result<Response, ApiError> {
    let net = s.peers.status().await?;
    s.core.metrics.storage(&s.storage.host.status());
    let body = s.core.metrics.render(net.known_peers, net.active_hosts);
    Ok((
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
        .into_response())
}
