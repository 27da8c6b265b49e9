//! Wallet set-up routes: a genesis for a fresh mesh (`wallet init`), joining one by id
//! (`wallet join`). Handlers translate HTTP to [`crate::chain::ApiReq`] calls.

use std::time::Duration;

use axum::{extract::State, routing::post, Json, Router};
use offgrid_api as api;
use serde_json::Value;

use super::{
    chain::MAX_WAIT_MS,
    doc::{AUTH, INVALID},
    error::ApiError,
    extract::{Authorized, JsonBody},
    AppState,
};
use crate::chain::ApiReq;

/// How long `POST /wallet/join` waits for a peer to serve the genesis by default.
pub const DEFAULT_JOIN_WAIT_MS: u64 = 30_000;

/// Routes of this module.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/wallet/init", post(init))
        .route("/wallet/join", post(join))
}

#[utoipa::path(post, path = "/wallet/init", tag = "wallet", request_body = api::ledger::WalletInitRequest, security(("bearer" = [])),
    responses((status = 200, description = "The genesis is signed and stored; the wallet runs", body = api::ledger::WalletGenesis),
        (status = 400, description = "Malformed, or parameters no wallet can run on: no witness, a bad peer id or weight, a quorum not above half the weight, fees out of order, an account twice (invalid_request)", body = api::ErrorBody),
        (status = 401, description = AUTH, body = api::ErrorBody),
        (status = 409, description = "A wallet already runs on this node (conflict)", body = api::ErrorBody)))]
pub(crate) async fn init(
    State(s): State<AppState>,
    _: Authorized,
    JsonBody(b): JsonBody<api::ledger::WalletInitRequest>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(s.ledger.call(ApiReq::WalletInit(b)).await?))
}

#[utoipa::path(post, path = "/wallet/join", tag = "wallet", request_body = api::ledger::WalletJoinRequest, security(("bearer" = [])),
    responses((status = 200, description = "The genesis arrived and verified; the wallet runs", body = api::ledger::WalletGenesis),
        (status = 400, description = INVALID, body = api::ErrorBody),
        (status = 401, description = AUTH, body = api::ErrorBody),
        (status = 409, description = "Another wallet already runs on this node (conflict)", body = api::ErrorBody),
        (status = 504, description = "No peer served the genesis in time; the node keeps asking (join_pending)", body = api::ErrorBody)))]
pub(crate) async fn join(
    State(s): State<AppState>,
    _: Authorized,
    JsonBody(b): JsonBody<api::ledger::WalletJoinRequest>,
) -> Result<Json<Value>, ApiError> {
    let id = b.genesis_id.to_ascii_lowercase();
    if id.len() != 64 || !id.bytes().all(|c| c.is_ascii_hexdigit()) {
        return Err(ApiError::invalid_request(
            "genesis_id must be 64 hex digits",
        ));
    }
    let wait = Duration::from_millis(b.wait_ms.unwrap_or(DEFAULT_JOIN_WAIT_MS).min(MAX_WAIT_MS));
    match tokio::time::timeout(wait, s.ledger.call(ApiReq::WalletJoin(id.clone()))).await {
        Ok(r) => Ok(Json(r?)),
        Err(_) => Err(ApiError::other(
            axum::http::StatusCode::GATEWAY_TIMEOUT,
            "join_pending",
            format!("no peer has served genesis {id} yet; the node keeps asking its peers"),
        )),
    }
}
