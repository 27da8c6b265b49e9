//! The local HTTP API (axum). Handlers extract, call the node, and return JSON; every
//! error has the shape `{"error": code, "message": text}`.
//!
//! Read-only routes are open to local clients; mutating routes need
//! `Authorization: Bearer <token>` with the token from `<data-dir>/api.token`.

pub mod auth;
pub mod chain;
pub mod content;
pub mod core;
pub mod core_listener;
pub mod dashboard;
pub mod error;
pub mod events;
pub mod extract;
pub mod files;
pub mod limit;
pub mod market;
pub mod metrics;
pub mod openapi;
pub mod process;
pub mod radio;
#[cfg(test)]
mod route_tests;
pub mod wallet;

use std::{sync::Arc, time::Instant};

use axum::{
    extract::{DefaultBodyLimit, State},
    routing::{get, post},
    Json, Router,
};
use offgrid_api as api;
use serde::{Deserialize, Serialize};
use tower::ServiceBuilder;

use self::{
    error::ApiError,
    extract::{Authorized, JsonBody},
};
use crate::{
    config::{Config, Credits},
    identity::Identity,
    peers::{HostUpdate, PeersHandle},
};

/// Shared state of the handlers.
#[derive(Clone)]
pub struct AppState {
    /// The peer service (registry, announcement, status).
    pub peers: PeersHandle,
    /// Bearer token for mutating routes.
    pub token: Arc<str>,
    /// Largest body accepted.
    pub body_limit: usize,
    /// When the node started.
    pub started: Instant,
    /// The node's public keys.
    pub keys: Arc<PubKeys>,
    /// The broker (market jobs).
    pub broker: Arc<crate::market::broker::Broker>,
    /// The store.
    pub store: Arc<crate::store::Store>,
    /// The ledger service (blocks, wallet, quorum engine).
    pub ledger: crate::chain::LedgerHandle,
    /// The quorum engine and failover monitor.
    pub failover: Arc<crate::failover::JobTracker>,
    /// Encrypted, erasure-coded file storage.
    pub storage: Arc<crate::files::Storage>,
    /// Core's adapter: keys, job book, metrics.
    pub core: Arc<core::CoreState>,
    /// Per-client rate limiter.
    pub limiter: Arc<limit::RateLimiter>,
    /// Seconds before a request that is not a job times out.
    pub request_timeout_s: u64,
    /// Longest a long-polling call holds its answer, milliseconds (≤ 60000).
    pub max_wait_ms: u64,
    /// `Host` names answered besides loopback ones (lower case, no port).
    pub allowed_hosts: Arc<Vec<String>>,
    /// Where `put` may read and `get` may write.
    pub paths: Arc<crate::files::paths::AllowedPaths>,
    /// Live events for the dashboard (`GET /events`) and the recent jobs.
    pub events: Arc<events::Events>,
}

/// The node's public keys (`GET /pubkeys`, `offgrid-node id`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PubKeys {
    /// libp2p peer id.
    pub peer_id: String,
    /// Ed25519 public key, hex.
    pub ed25519: String,
    /// X25519 public key (derived from the Ed25519 seed), hex.
    pub x25519: String,
}

impl PubKeys {
    /// The keys of an identity.
    pub fn of(id: &Identity) -> Self {
        PubKeys {
            peer_id: id.peer_id().to_string(),
            ed25519: hex::encode(id.public_key()),
            x25519: hex::encode(id.x25519_public()),
        }
    }
}

/// Builds the router.
pub fn router(state: AppState, cfg: &Config) -> Router {
    let limit = state.body_limit;
    Router::new()
        .route("/status", get(status))
        .route("/peers", get(peers))
        .route("/announce", get(get_announce).post(post_announce))
        .route("/toggle", post(toggle))
        .route("/pubkeys", get(pubkeys))
        .merge(market::routes())
        .merge(radio::routes())
        .merge(chain::routes())
        .merge(wallet::routes())
        .merge(files::routes())
        .merge(content::routes())
        .merge(core::routes())
        .merge(events::routes())
        .merge(dashboard::routes())
        .route("/openapi.json", get(openapi::openapi_json))
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), guard))
        .fallback(|| async { ApiError::not_found("no such route") })
        .method_not_allowed_fallback(|| async { ApiError::method_not_allowed() })
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            host_check,
        ))
        .layer(
            ServiceBuilder::new()
                .layer(DefaultBodyLimit::max(limit))
                .layer(tower::limit::ConcurrencyLimitLayer::new(
                    cfg.api.max_concurrent_requests.max(1),
                )),
        )
        .with_state(state)
}

/// Routes whose requests run as long as their job's own deadline.
/// Routes that bound their own time (jobs, storage operations, long polls up to
/// `max_wait_ms`) rather than `request_timeout_s`.
fn is_job_route(route: &str) -> bool {
    matches!(
        route,
        "/auction"
            | "/jobs"
            | "/market/run"
            | "/wallet/tx"
            | "/wallet/tx/submit"
            | "/wallet/tx/{id}"
            | "/wallet/join"
            | "/wallet/witnesses"
    ) || route.starts_with("/storage/")
}

/// The name in a `Host` header, lower case, without its port.
fn host_name(host: &str) -> String {
    let h = host.trim().to_ascii_lowercase();
    if let Some(end) = h.strip_prefix('[').and_then(|r| r.find(']')) {
        return h[..end + 2].to_owned();
    }
    match h.rsplit_once(':') {
        Some((name, port)) if port.chars().all(|c| c.is_ascii_digit()) => name.to_owned(),
        _ => h,
    }
}

/// Whether the API answers a request addressed to `host`: IP literals (a DNS-rebinding page
/// is addressed by its own domain name, so an address names this node), loopback names and
/// the configured names. A request without `Host` (HTTP/1.0 tools) passes: browsers always
/// send one, so a rebinding page cannot leave it out.
pub(crate) fn host_allowed(host: Option<&str>, allowed: &[String]) -> bool {
    let Some(host) = host else {
        return true;
    };
    let name = host_name(host);
    let literal = name.parse::<std::net::Ipv4Addr>().is_ok()
        || name
            .strip_prefix('[')
            .and_then(|n| n.strip_suffix(']'))
            .is_some_and(|n| n.parse::<std::net::Ipv6Addr>().is_ok());
    let loopback = name == "localhost" || name.ends_with(".localhost");
    literal || loopback || allowed.contains(&name)
}

/// `421 misdirected_request` for a `Host` the node does not answer to.
async fn host_check(
    State(s): State<AppState>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let host = req
        .headers()
        .get(axum::http::header::HOST)
        .map(|h| h.to_str().unwrap_or("\u{fffd}"));
    if host_allowed(host, &s.allowed_hosts) {
        return next.run(req).await;
    }
    ApiError::other(
        axum::http::StatusCode::MISDIRECTED_REQUEST,
        "misdirected_request",
        "this node's API answers only to loopback names and [api] allowed_hosts",
    )
    .into_response()
}

/// Rate limit per client address, a timeout for requests that are not jobs, and request
/// counts by route and status.
async fn guard(
    State(s): State<AppState>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let route = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let client = req
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip());
    let resp = if let Err(wait) = s.limiter.check(client, Instant::now()) {
        ApiError::other(
            axum::http::StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            "too many requests from this client",
        )
        .retry_after(wait)
        .into_response()
    } else if is_job_route(&route) {
        next.run(req).await
    } else {
        let limit = std::time::Duration::from_secs(s.request_timeout_s.max(1));
        match tokio::time::timeout(limit, next.run(req)).await {
            Ok(r) => r,
            Err(_) => ApiError::other(
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                "timeout",
                "the request timed out",
            )
            .into_response(),
        }
    };
    s.core.metrics.http(&route, resp.status().as_u16());
    resp
}

/// Re-encodes a service value as the API type with the same JSON shape.
pub(crate) fn convert<A: Serialize, B: serde::de::DeserializeOwned>(a: &A) -> Result<B, ApiError> {
    serde_json::to_value(a)
        .and_then(serde_json::from_value)
        .map_err(|e| {
            tracing::error!(error = %e, "a service value does not fit its API type");
            ApiError::internal()
        })
}

/// The responses every route may give besides its own.
pub(crate) mod doc {
    /// A mutating route's extra answers.
    pub const AUTH: &str = "Missing or wrong bearer token (unauthorized)";
    /// A malformed body or query.
    pub const INVALID: &str = "Malformed request (invalid_request), naming the problem";
    /// A body over the limit.
    pub const TOO_LARGE: &str = "Body over the limit (too_large)";
}

#[utoipa::path(get, path = "/status", tag = "node",
    responses((status = 200, description = "The node's identity, uptime and peer counts", body = api::node::Status)))]
pub(crate) async fn status(State(s): State<AppState>) -> Result<Json<api::node::Status>, ApiError> {
    let net = s.peers.status().await?;
    Ok(Json(api::node::Status {
        peer_id: net.peer_id,
        version: env!("CARGO_PKG_VERSION").to_owned(),
        uptime_s: s.started.elapsed().as_secs(),
        listen_addrs: net.listen_addrs,
        peers: api::node::PeerCounts {
            connected: net.connected_peers as u64,
            known: net.known_peers as u64,
            active_hosts: net.active_hosts as u64,
        },
        jobs_in_flight: net.jobs_in_flight as u64,
    }))
}

#[utoipa::path(get, path = "/peers", tag = "node",
    responses((status = 200, description = "Known peers; `active` is by announcement, else by radio beacon", body = api::peers::PeersResponse)))]
pub(crate) async fn peers(
    State(s): State<AppState>,
) -> Result<Json<api::peers::PeersResponse>, ApiError> {
    let peers = s.peers.peers().await?;
    let mut list = Vec::with_capacity(peers.len());
    for p in peers {
        list.push(api::peers::PeerInfo {
            active: p.says_active(),
            verified: p.signed_announcement.is_some(),
            announcement: p.announcement.as_ref().map(convert).transpose()?,
            beacon: p.beacon.as_ref().map(convert).transpose()?,
            peer_id: p.peer_id,
            addrs: p.addrs,
            via: p.via,
            connected: p.connected,
            first_seen_ms: p.first_seen_ms,
            last_seen_ms: p.last_seen_ms,
        });
    }
    Ok(Json(api::peers::PeersResponse { peers: list }))
}

#[utoipa::path(get, path = "/announce", tag = "node",
    responses((status = 200, description = "This node's current signed announcement content", body = api::peers::Announcement)))]
pub(crate) async fn get_announce(
    State(s): State<AppState>,
) -> Result<Json<api::peers::Announcement>, ApiError> {
    Ok(Json(convert(&s.peers.announcement().await?)?))
}

#[utoipa::path(post, path = "/announce", tag = "node", request_body = api::peers::AnnounceRequest, security(("bearer" = [])),
    responses((status = 200, description = "The new announcement", body = api::peers::Announcement),
        (status = 400, description = doc::INVALID, body = api::ErrorBody),
        (status = 401, description = doc::AUTH, body = api::ErrorBody),
        (status = 413, description = doc::TOO_LARGE, body = api::ErrorBody)))]
pub(crate) async fn post_announce(
    State(s): State<AppState>,
    _: Authorized,
    JsonBody(b): JsonBody<api::peers::AnnounceRequest>,
) -> Result<Json<api::peers::Announcement>, ApiError> {
    let prices = match b.prices {
        Some(p) => {
            let mut out = std::collections::BTreeMap::new();
            for (k, v) in p {
                let c: Credits = serde_json::from_value(v)
                    .map_err(|e| ApiError::invalid_request(format!("prices.{k}: {e}")))?;
                out.insert(k, c.0);
            }
            Some(out)
        }
        None => None,
    };
    let update = HostUpdate {
        active: b.active,
        prices,
        min_oncall_percent: b.min_oncall_percent,
        burst_percent_max: b.burst_percent_max,
        burst: b.burst,
    };
    Ok(Json(convert(&s.peers.update_host(update).await?)?))
}

#[utoipa::path(post, path = "/toggle", tag = "node", request_body = api::node::ToggleRequest, security(("bearer" = [])),
    responses((status = 200, description = "Whether the node takes jobs now, and its new announcement", body = api::node::ToggleResponse),
        (status = 400, description = doc::INVALID, body = api::ErrorBody),
        (status = 401, description = doc::AUTH, body = api::ErrorBody)))]
pub(crate) async fn toggle(
    State(s): State<AppState>,
    _: Authorized,
    JsonBody(b): JsonBody<api::node::ToggleRequest>,
) -> Result<Json<api::node::ToggleResponse>, ApiError> {
    let ann = s
        .peers
        .update_host(HostUpdate {
            active: Some(b.active),
            ..Default::default()
        })
        .await?;
    Ok(Json(api::node::ToggleResponse {
        active: ann.active,
        announcement: convert(&ann)?,
    }))
}

#[utoipa::path(get, path = "/pubkeys", tag = "node",
    responses((status = 200, description = "The node's public keys", body = api::node::PubKeys)))]
pub(crate) async fn pubkeys(State(s): State<AppState>) -> Json<PubKeys> {
    Json((*s.keys).clone())
}
