//! Wallet set-up routes: a genesis for a fresh mesh (`wallet init`), joining one by id
//! (`wallet join`). Handlers translate HTTP to [`crate::chain::ApiReq`] calls.

use std::time::Duration;

use axum::{extract::State, routing::post, Json, Router};
use offgrid_api as api;
use serde_json::Value;

use super::{
    doc::{AUTH, INVALID},
    error::ApiError,
    extract::{Authorized, JsonBody},
    AppState,
};
use offgrid_ledger::wallet::epoch::Change;

use crate::chain::ApiReq;

/// How long `POST /wallet/join` waits for a peer to serve the genesis by default.
pub const DEFAULT_JOIN_WAIT_MS: u64 = 30_000;

/// Routes of this module.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/wallet/init", post(init))
        .route("/wallet/join", post(join))
        .route("/wallet/witnesses", post(witnesses))
}

#[utoipa::path(post, path = "/wallet/witnesses", tag = "wallet", request_body = api::ledger::WitnessChange, security(("bearer" = [])),
    responses((status = 200, description = "The reconfiguration is signed, approved by this witness and submitted (and its state after `wait_ms`); final once the current epoch's quorum approves the same change", body = api::ledger::ReconfigResponse),
        (status = 400, description = "Malformed, or a change the wallet refuses: not a witness of the current epoch, a peer already in (add) or not in (remove) the set, a weight or quorum that lets an old and a new quorum share no witness (invalid_request)", body = api::ErrorBody),
        (status = 401, description = AUTH, body = api::ErrorBody),
        (status = 503, description = "The wallet is off (unavailable)", body = api::ErrorBody)))]
pub(crate) async fn witnesses(
    State(s): State<AppState>,
    _: Authorized,
    JsonBody(b): JsonBody<api::ledger::WitnessChange>,
) -> Result<Json<Value>, ApiError> {
    let milli = |what: &str, w: f64| {
        crate::config::ledger::milli(w)
            .filter(|m| *m > 0)
            .ok_or_else(|| {
                ApiError::invalid_request(format!("{what} {w} is not a positive weight"))
            })
    };
    let change = match b.op.as_str() {
        "add" => Change::Add(b.peer, milli("weight", b.weight.unwrap_or(1.0))?),
        "remove" => Change::Remove(b.peer),
        other => {
            return Err(ApiError::invalid_request(format!(
                "op must be add or remove, not {other:?}"
            )))
        }
    };
    let quorum_milli = b.quorum.map(|q| milli("quorum", q)).transpose()?;
    let mut v = s
        .ledger
        .call(ApiReq::Witnesses {
            change,
            quorum_milli,
        })
        .await?;
    if let (Some(ms), Some(id)) = (b.wait_ms, v["tx_id"].as_str()) {
        let id = id.to_owned();
        v["view"] = super::chain::wait_final(&s, &id, ms).await?;
    }
    Ok(Json(v))
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
    let wait = Duration::from_millis(b.wait_ms.unwrap_or(DEFAULT_JOIN_WAIT_MS).min(s.max_wait_ms));
    match tokio::time::timeout(wait, s.ledger.call(ApiReq::WalletJoin(id.clone()))).await {
        Ok(r) => Ok(Json(r?)),
        Err(_) => Err(ApiError::other(
            axum::http::StatusCode::GATEWAY_TIMEOUT,
            "join_pending",
            format!("no peer has served genesis {id} yet; the node keeps asking its peers"),
        )),
    }
}
