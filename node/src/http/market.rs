//! Market routes: run a job through the broker, ask a host for a quote, export receipts,
//! show reputation.

use std::time::Duration;

use axum::{
    extract::State,
    http::StatusCode,
    routing::{get, post},
    Json, Router,
};
use offgrid_behaviours::auction::Response;
use offgrid_ledger::receipt::core_view;
use serde::Deserialize;
use serde_json::{json, Value};

use offgrid_api as api;

use super::{
    doc::AUTH,
    error::ApiError,
    extract::{Authorized, JsonBody, QueryParams},
    AppState,
};
use crate::{
    config::{Credits, MICRO},
    market::{
        broker::{BrokerError, JobResult, JobSpec},
        receipts,
    },
    now_ms,
};

/// Longest job timeout accepted.
pub const MAX_TIMEOUT_S: u64 = 3600;
/// Most hosts a redundant job runs on.
pub const MAX_REDUNDANCY: usize = 5;

/// Routes of this module.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/market/run", post(run))
        .route("/market/quote", get(quote))
        .route("/receipts/export", get(export))
        .route("/reputation", get(reputation))
}

impl From<BrokerError> for ApiError {
    fn from(e: BrokerError) -> Self {
        let msg = e.to_string();
        match e {
            BrokerError::NoHostsAvailable(_) => {
                ApiError::other(StatusCode::SERVICE_UNAVAILABLE, "no_hosts", msg).retry_after(2)
            }
            BrokerError::JobTimeout(_) => {
                ApiError::other(StatusCode::GATEWAY_TIMEOUT, "job_timeout", msg)
            }
            BrokerError::AllHostsFailed(_) => {
                ApiError::other(StatusCode::BAD_GATEWAY, "all_hosts_failed", msg)
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
}

/// A job as posted to `/market/run`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunBody {
    /// Job id; generated when absent.
    #[serde(default)]
    pub job_id: Option<String>,
    /// Job type.
    #[serde(rename = "type", alias = "job_type")]
    pub job_type: String,
    /// Size in units (decimal, exact to 1e-6). Absent: an LLM call (a payload with
    /// `prompt` or `messages`) is sized from its prompt and `max_tokens`, anything else is
    /// one unit.
    #[serde(default)]
    pub size: Option<Credits>,
    /// Payload, any JSON.
    #[serde(default)]
    pub payload: Value,
    /// Overall deadline, seconds.
    #[serde(default)]
    pub timeout_s: Option<u64>,
    /// Hosts to run on and compare.
    #[serde(default)]
    pub redundancy: Option<usize>,
    /// Run on this host only (its peer id).
    #[serde(default)]
    pub host: Option<String>,
}

/// Turns a posted job into a broker job, checking limits.
pub fn job_spec(b: RunBody, default_timeout_s: u64) -> Result<JobSpec, ApiError> {
    let timeout_s = b.timeout_s.unwrap_or(default_timeout_s);
    if timeout_s == 0 || timeout_s > MAX_TIMEOUT_S {
        return Err(ApiError::invalid_request(format!(
            "timeout_s must be 1..={MAX_TIMEOUT_S}"
        )));
    }
    let redundancy = b.redundancy.unwrap_or(1);
    if redundancy == 0 || redundancy > MAX_REDUNDANCY {
        return Err(ApiError::invalid_request(format!(
            "redundancy must be 1..={MAX_REDUNDANCY}"
        )));
    }
    let job_id = match b.job_id {
        Some(id) if id.is_empty() || id.len() > 128 => {
            return Err(ApiError::invalid_request("job_id must be 1..=128 bytes"));
        }
        Some(id) => id,
        None => format!("job-{}", hex::encode(rand::random::<[u8; 8]>())),
    };
    if let Some(h) = &b.host {
        if h.parse::<libp2p::PeerId>().is_err() {
            return Err(ApiError::invalid_request(format!(
                "host {h:?} is not a peer id"
            )));
        }
        if redundancy > 1 {
            return Err(ApiError::invalid_request(
                "host names one host: redundancy must be 1",
            ));
        }
    }
    Ok(JobSpec {
        job_id,
        job_type: b.job_type,
        units: b
            .size
            .map(|s| s.0)
            .or_else(|| crate::market::size::estimate_units(&b.payload))
            .unwrap_or(MICRO),
        payload: b.payload.to_string(),
        timeout: Duration::from_secs(timeout_s),
        redundancy,
        host: b.host,
    })
}

/// JSON view of a completed job.
pub fn result_json(r: &JobResult) -> Value {
    let output: Value =
        serde_json::from_str(&r.output).unwrap_or_else(|_| Value::String(r.output.clone()));
    json!({
        "job_id": r.job_id,
        "host": r.host,
        "price": r.price as f64 / MICRO as f64,
        "price_micro": r.price,
        "output": output,
        "receipt": core_view(&r.receipt, &r.receipt_body),
        "attempts": r.attempts,
        "replicas": r.replicas,
        "quotes": r.quotes,
        "duration_ms": r.duration_ms,
    })
}

#[utoipa::path(post, path = "/market/run", tag = "market", request_body = api::market::RunRequest, security(("bearer" = [])),
    responses((status = 200, description = "The job's output, host, price, signed receipt and attempts", body = api::market::RunResponse),
        (status = 400, description = "Invalid job: timeout, redundancy, job id or size out of range (invalid_request)", body = api::ErrorBody),
        (status = 401, description = AUTH, body = api::ErrorBody),
        (status = 402, description = "This node's account cannot pay for the job (insufficient_funds), refused before dispatch", body = api::ErrorBody),
        (status = 429, description = "Too many jobs at once (rate_limited, Retry-After)", body = api::ErrorBody),
        (status = 502, description = "all_hosts_failed or disagreement", body = api::ErrorBody),
        (status = 503, description = "No host can take it (no_hosts, Retry-After)", body = api::ErrorBody),
        (status = 504, description = "job_timeout", body = api::ErrorBody)))]
pub(crate) async fn run(
    State(s): State<AppState>,
    _: Authorized,
    JsonBody(b): JsonBody<RunBody>,
) -> Result<Json<Value>, ApiError> {
    let job = job_spec(b, s.core.default_timeout_s)?;
    let r = super::core::routes::run_counted(&s, job).await?;
    Ok(Json(result_json(&r)))
}

#[utoipa::path(get, path = "/market/quote", tag = "market",
    params(("peer" = String, Query, description = "Host peer id"), ("type" = String, Query, description = "Job type"), ("size" = Option<String>, Query, description = "Units, decimal (default 1)")),
    responses((status = 200, description = "The host's quote, or that it declined or is busy", body = api::market::QuoteResponse),
        (status = 400, description = "Missing field, bad peer id or size (invalid_request)", body = api::ErrorBody),
        (status = 502, description = "The host did not answer (peer_unreachable)", body = api::ErrorBody)))]
pub(crate) async fn quote(
    State(s): State<AppState>,
    QueryParams(q): QueryParams<api::market::QuoteQuery>,
) -> Result<Json<api::market::QuoteResponse>, ApiError> {
    let peer = q
        .peer
        .parse()
        .map_err(|_| ApiError::invalid_request(format!("{:?} is not a peer id", q.peer)))?;
    if q.peer == s.keys.peer_id {
        return Err(ApiError::invalid_request(
            "peer is this node: a node does not dial itself for a quote",
        ));
    }
    let units = match q.size {
        Some(sz) => {
            Credits::parse_decimal(&sz)
                .map_err(ApiError::invalid_request)?
                .0
        }
        None => MICRO,
    };
    let resp = s
        .broker
        .quote(peer, &q.job_type, units)
        .await
        .map_err(|e| ApiError::other(StatusCode::BAD_GATEWAY, "peer_unreachable", e))?;
    let mut answer = api::market::QuoteResponse {
        peer: q.peer,
        job_type: None,
        price: None,
        price_micro: None,
        valid_until_ms: None,
        capacity_left: None,
        declined: None,
        busy: None,
        retry_after_ms: None,
        unexpected: None,
    };
    match resp {
        Response::Quote {
            price,
            valid_until_ms,
            capacity_left,
        } => {
            answer.job_type = Some(q.job_type);
            answer.price = Some(price as f64 / MICRO as f64);
            answer.price_micro = Some(price);
            answer.valid_until_ms = Some(valid_until_ms);
            answer.capacity_left = Some(capacity_left.into());
        }
        Response::Declined { reason } => answer.declined = Some(reason),
        Response::Busy { retry_after_ms } => {
            answer.busy = Some(true);
            answer.retry_after_ms = Some(retry_after_ms);
        }
        other => answer.unexpected = Some(format!("{other:?}")),
    }
    Ok(Json(answer))
}

#[utoipa::path(get, path = "/receipts/export", tag = "market", security(("bearer" = [])),
    responses((status = 200, description = "This node's receipts as one Merkle batch with a proof per receipt", body = api::market::ExportResponse),
        (status = 401, description = AUTH, body = api::ErrorBody)))]
pub(crate) async fn export(
    State(s): State<AppState>,
    _: Authorized,
) -> Result<Json<Value>, ApiError> {
    let store = s.store.clone();
    let batch = tokio::task::spawn_blocking(move || receipts::export(&store, now_ms()))
        .await
        .map_err(|_| ApiError::internal())?
        .map_err(|e| {
            tracing::error!(error = %e, "receipt export failed");
            ApiError::internal()
        })?;
    Ok(Json(match batch {
        Some(b) => json!({ "count": b.items.len(), "root": b.root, "batch": b }),
        None => json!({ "count": 0, "root": null, "batch": null }),
    }))
}

#[utoipa::path(get, path = "/reputation", tag = "market",
    responses((status = 200, description = "This node's hits and misses per host, and the factor they give its score", body = api::market::ReputationResponse)))]
pub(crate) async fn reputation(State(s): State<AppState>) -> Json<api::market::ReputationResponse> {
    let reputation = s
        .broker
        .reputation()
        .all()
        .into_iter()
        .map(|(peer, r)| api::market::ReputationRow {
            peer,
            hits: r.hits,
            misses: r.misses,
            factor: crate::market::scoring::reputation_factor(r.hits, r.misses),
        })
        .collect();
    Json(api::market::ReputationResponse { reputation })
}
