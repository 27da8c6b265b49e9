//! Storage routes: put, get, share, list, repair, status, policies.
//!
//! Put, get and repair are long-running: the POST answers `202 {"op_id": …}` at once and
//! `GET /storage/ops/{id}` gives progress and, when finished, `"state": "done"` with the
//! result or `"state": "failed"` with `error` and `message` (the same codes as the HTTP
//! errors). `?wait_ms=N` (at most 5000) holds that answer until the operation ends or N ms
//! pass, so a client learns of the end at once instead of at its next poll.
//! `DELETE /storage/ops/{id}` (bearer token) cancels a running operation: it answers `200`
//! with the operation's state once it has ended (`"state": "cancelled"`, or its outcome if it
//! ended first), or `202` with `"cancel_requested": true` if it is still winding down after
//! 5 s. Paths are absolute paths on the node's own disk.

use std::{path::PathBuf, sync::Arc};

use axum::{
    extract::{Path, State},
    http::StatusCode,
    routing::{get, post},
    Json, Router,
};
use offgrid_api as api;
use offgrid_storage::{Distribution, Scheme};
use serde::Deserialize;
use serde_json::Value;
use utoipa::IntoParams;

use super::{
    doc::{AUTH, INVALID},
    error::ApiError,
    extract::{Authorized, JsonBody, QueryParams},
    AppState,
};
use crate::files::{get::GetParams, put::PutParams, repair::Threshold, Storage, StorageError};

/// Routes of this module.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/storage/put", post(put))
        .route("/storage/get", post(get_file))
        .route("/storage/ops/{id}", get(op).delete(cancel_op))
        .route("/storage/status", get(status))
        .route("/storage/assets", get(list))
        .route("/storage/assets/{id}/check", get(check))
        .route("/storage/share", post(share))
        .route("/storage/repair", post(repair))
        .route("/storage/rm", post(rm))
        .route("/storage/key", post(key))
        .route("/storage/policy/sign", post(policy_sign))
}

impl From<StorageError> for ApiError {
    fn from(e: StorageError) -> Self {
        let status = match e {
            StorageError::Invalid(_) => StatusCode::BAD_REQUEST,
            StorageError::NotFound(_) => StatusCode::NOT_FOUND,
            StorageError::NoHosts { .. } | StorageError::Busy(_) => StatusCode::SERVICE_UNAVAILABLE,
            StorageError::NotShared { .. }
            | StorageError::WrongKey { .. }
            | StorageError::NotOwner { .. } => StatusCode::FORBIDDEN,
            StorageError::NotEnoughShards { .. }
            | StorageError::Incomplete { .. }
            | StorageError::Integrity(_) => StatusCode::BAD_GATEWAY,
            StorageError::Conflict(_) | StorageError::Cancelled(_) => StatusCode::CONFLICT,
            StorageError::Internal(_) => return ApiError::internal(),
        };
        ApiError::other(status, e.code(), e.to_string())
    }
}

fn storage(s: &AppState) -> &Arc<Storage> {
    &s.storage
}

/// The scheme asked for: `ec` with k/n (defaults from config) or `rep` with r.
fn scheme_of(
    s: &Storage,
    mode: Option<&str>,
    k: Option<u16>,
    n: Option<u16>,
    r: Option<u16>,
) -> Result<Scheme, ApiError> {
    let cfg = &s.cfg;
    let scheme = match mode.unwrap_or("ec") {
        "ec" | "rs" => Scheme::ReedSolomon {
            k: k.unwrap_or(cfg.k),
            n: n.unwrap_or(cfg.n),
        },
        "rep" | "replicate" => Scheme::Replicate {
            r: r.unwrap_or(cfg.r),
        },
        other => {
            return Err(ApiError::invalid_request(format!(
                "mode must be \"ec\" or \"rep\", not {other:?}"
            )))
        }
    };
    scheme
        .validate()
        .map_err(|e| ApiError::invalid_request(e.to_string()))?;
    Ok(scheme)
}

fn started(op: &crate::files::ops::Op) -> (StatusCode, Json<api::storage::OpStatus>) {
    (
        StatusCode::ACCEPTED,
        Json(api::storage::OpStatus {
            op_id: op.id.clone(),
            kind: op.kind.to_owned(),
            state: "running".to_owned(),
            started_ms: None,
            progress: None,
            cancel_requested: None,
            result: None,
            error: None,
            message: None,
        }),
    )
}

/// `403 path_not_allowed` for a path outside `[storage] allowed_paths` or in the data dir.
fn allowed(s: &AppState, path: &std::path::Path) -> Result<(), ApiError> {
    s.paths
        .check(path)
        .map_err(|m| ApiError::other(StatusCode::FORBIDDEN, "path_not_allowed", m))
}

/// Errors of the routes that take an asset id.
/// The longest `expires_in_s` of a put: 100 years.
const MAX_EXPIRES_IN_S: u64 = 3_155_760_000;

const BAD_ASSET: &str =
    "Malformed body, or an asset id that is not 64 lower-case hex digits (invalid_request)";

#[utoipa::path(post, path = "/storage/put", tag = "storage", request_body = api::storage::PutRequest, security(("bearer" = [])),
    responses((status = 202, description = "Started: follow `GET /storage/ops/{id}`; its result is a PutResult", body = api::storage::OpStatus),
        (status = 400, description = "Malformed body, bad scheme or shard size, relative path (invalid_request)", body = api::ErrorBody),
        (status = 401, description = AUTH, body = api::ErrorBody),
        (status = 403, description = "The path is outside [storage] allowed_paths, or in the data directory (path_not_allowed)", body = api::ErrorBody)))]
pub(crate) async fn put(
    State(s): State<AppState>,
    _: Authorized,
    JsonBody(b): JsonBody<api::storage::PutRequest>,
) -> Result<(StatusCode, Json<api::storage::OpStatus>), ApiError> {
    let st = storage(&s).clone();
    let scheme = scheme_of(&st, b.mode.as_deref(), b.k, b.n, b.r)?;
    let shard_size = b.shard_size.unwrap_or(st.cfg.shard_size);
    if shard_size == 0 || shard_size as usize > offgrid_behaviours::shards::MAX_SHARD_BYTES {
        return Err(ApiError::invalid_request(
            "shard_size must be 1..=1048576 bytes",
        ));
    }
    let path = PathBuf::from(b.path);
    if !path.is_absolute() {
        return Err(ApiError::invalid_request(
            "path must be absolute (the node reads it from its own disk)",
        ));
    }
    allowed(&s, &path)?;
    let expires_in = match b.expires_in_s {
        None => None,
        Some(0) => {
            return Err(ApiError::invalid_request(
                "expires_in_s must be at least 1: an asset cannot expire in the past",
            ))
        }
        Some(s) if s > MAX_EXPIRES_IN_S => {
            return Err(ApiError::invalid_request(
                "expires_in_s is at most 3155760000 (100 years)",
            ))
        }
        Some(s) => Some(std::time::Duration::from_secs(s)),
    };
    let params = PutParams {
        expires_in,
        path,
        scheme,
        shard_size,
        name: b.name,
        no_adapt: b.no_adapt.unwrap_or(false),
    };
    let op = st.ops.start("put");
    let task_op = op.clone();
    tokio::spawn(async move {
        let r = st
            .put(params, task_op.progress.clone(), &task_op.cancel_token())
            .await;
        task_op.finish(r);
    });
    Ok(started(&op))
}

#[utoipa::path(post, path = "/storage/get", tag = "storage", request_body = api::storage::GetRequest, security(("bearer" = [])),
    responses((status = 202, description = "Started: follow `GET /storage/ops/{id}`; its result is a GetResult", body = api::storage::OpStatus),
        (status = 400, description = "Malformed body, bad asset id or key, relative out path (invalid_request)", body = api::ErrorBody),
        (status = 401, description = AUTH, body = api::ErrorBody),
        (status = 403, description = "The out path is outside [storage] allowed_paths, or in the data directory (path_not_allowed)", body = api::ErrorBody)))]
pub(crate) async fn get_file(
    State(s): State<AppState>,
    _: Authorized,
    JsonBody(b): JsonBody<api::storage::GetRequest>,
) -> Result<(StatusCode, Json<api::storage::OpStatus>), ApiError> {
    let st = storage(&s).clone();
    if !offgrid_storage::is_valid_hash(&b.asset) {
        return Err(ApiError::invalid_request(
            "asset must be 64 lower-case hex digits",
        ));
    }
    let out = PathBuf::from(b.out);
    if !out.is_absolute() {
        return Err(ApiError::invalid_request(
            "out must be an absolute path (the node writes it on its own disk)",
        ));
    }
    allowed(&s, &out)?;
    let key = match b.key {
        Some(k) => Some(
            hex::decode(&k)
                .ok()
                .and_then(|v| <[u8; 32]>::try_from(v).ok())
                .ok_or_else(|| ApiError::invalid_request("key must be 64 hex digits"))?,
        ),
        None => None,
    };
    let params = GetParams {
        asset: b.asset,
        out,
        key,
    };
    let op = st.ops.start("get");
    let task_op = op.clone();
    tokio::spawn(async move {
        let r = st
            .get(params, task_op.progress.clone(), &task_op.cancel_token())
            .await;
        task_op.finish(r);
    });
    Ok(started(&op))
}

/// `?wait_ms=`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct OpQuery {
    /// Hold the answer until the operation ends or this many ms pass (at most 5000).
    #[serde(default)]
    wait_ms: u64,
}

#[utoipa::path(get, path = "/storage/ops/{id}", tag = "storage",
    params(("id" = String, Path, description = "Operation id"), OpQuery),
    responses((status = 200, description = "Progress and, once ended, the result or the error of a put, get or repair", body = api::storage::OpStatus),
        (status = 400, description = INVALID, body = api::ErrorBody),
        (status = 404, description = "No such operation (not_found)", body = api::ErrorBody)))]
pub(crate) async fn op(
    State(s): State<AppState>,
    Path(id): Path<String>,
    QueryParams(q): QueryParams<OpQuery>,
) -> Result<Json<Value>, ApiError> {
    let op = storage(&s)
        .ops
        .get(&id)
        .ok_or_else(|| ApiError::not_found(format!("no operation {id:?}")))?;
    let wait = q
        .wait_ms
        .min(crate::files::ops::MAX_WAIT_MS)
        .min(s.max_wait_ms);
    if wait > 0 {
        op.wait_end(std::time::Duration::from_millis(wait)).await;
    }
    Ok(Json(op.json()))
}

/// `DELETE /storage/ops/{id}`: cancels the operation and waits (at most
/// [`MAX_WAIT_MS`](crate::files::ops::MAX_WAIT_MS)) for it to end.
#[utoipa::path(delete, path = "/storage/ops/{id}", tag = "storage", security(("bearer" = [])),
    params(("id" = String, Path, description = "Operation id")),
    responses((status = 200, description = "Ended: `cancelled`, or its outcome if it ended first (a cancelled put resumes when run again)", body = api::storage::OpStatus),
        (status = 202, description = "Still winding down: `cancel_requested`", body = api::storage::OpStatus),
        (status = 401, description = AUTH, body = api::ErrorBody),
        (status = 404, description = "No such operation (not_found)", body = api::ErrorBody)))]
pub(crate) async fn cancel_op(
    State(s): State<AppState>,
    _: Authorized,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let op = storage(&s)
        .ops
        .get(&id)
        .ok_or_else(|| ApiError::not_found(format!("no operation {id:?}")))?;
    op.cancel();
    op.wait_end(std::time::Duration::from_millis(
        crate::files::ops::MAX_WAIT_MS,
    ))
    .await;
    let status = if op.running() {
        StatusCode::ACCEPTED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(op.json())))
}

#[utoipa::path(get, path = "/storage/status", tag = "storage",
    responses((status = 200, description = "Shard store usage, quota and received-bytes counters", body = api::storage::StorageStatus)))]
pub(crate) async fn status(
    State(s): State<AppState>,
) -> Result<Json<api::storage::StorageStatus>, ApiError> {
    let st = storage(&s);
    let assets = st.list().await?;
    let owned = assets.iter().filter(|a| a["owned"] == true).count();
    let uploads = s
        .store
        .len(crate::store::Table::Uploads)
        .map_err(|_| ApiError::internal())?;
    Ok(Json(api::storage::StorageStatus {
        host: st.host.status(),
        assets: assets.len() as u64,
        assets_owned: owned as u64,
        uploads_in_progress: uploads,
        ops_running: st.ops.running() as u64,
    }))
}

#[utoipa::path(get, path = "/storage/assets", tag = "storage",
    responses((status = 200, description = "Assets this node can read", body = api::storage::AssetList)))]
pub(crate) async fn list(
    State(s): State<AppState>,
) -> Result<Json<api::storage::AssetList>, ApiError> {
    Ok(Json(api::storage::AssetList {
        assets: super::convert(&storage(&s).list().await?)?,
    }))
}

#[utoipa::path(get, path = "/storage/assets/{id}/check", tag = "storage",
    params(("id" = String, Path, description = "Asset id, 64 lower-case hex digits")),
    responses((status = 200, description = "Reachable shards per segment of an asset", body = api::storage::AssetCheck),
        (status = 400, description = BAD_ASSET, body = api::ErrorBody),
        (status = 404, description = "No such asset here (not_found)", body = api::ErrorBody)))]
pub(crate) async fn check(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    if !offgrid_storage::is_valid_hash(&id) {
        return Err(ApiError::invalid_request(
            "asset must be 64 lower-case hex digits",
        ));
    }
    Ok(Json(storage(&s).check(&id).await?))
}

#[utoipa::path(post, path = "/storage/share", tag = "storage", request_body = api::storage::ShareRequest, security(("bearer" = [])),
    responses((status = 200, description = "The asset's key wrapped for another peer, and the manifest republished", body = api::storage::ShareResponse),
        (status = 400, description = "Malformed body or peer id (invalid_request)", body = api::ErrorBody),
        (status = 401, description = AUTH, body = api::ErrorBody),
        (status = 403, description = "This node does not own the asset (not_owner)", body = api::ErrorBody),
        (status = 404, description = "No such asset here (not_found)", body = api::ErrorBody)))]
pub(crate) async fn share(
    State(s): State<AppState>,
    _: Authorized,
    JsonBody(b): JsonBody<api::storage::ShareRequest>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(storage(&s).share(&b.asset, &b.peer).await?))
}

#[utoipa::path(post, path = "/storage/repair", tag = "storage", request_body = api::storage::AssetRequest, security(("bearer" = [])),
    responses((status = 202, description = "Started: follow `GET /storage/ops/{id}`; its result is a RepairReport", body = api::storage::OpStatus),
        (status = 400, description = BAD_ASSET, body = api::ErrorBody),
        (status = 401, description = AUTH, body = api::ErrorBody)))]
pub(crate) async fn repair(
    State(s): State<AppState>,
    _: Authorized,
    JsonBody(b): JsonBody<api::storage::AssetRequest>,
) -> Result<(StatusCode, Json<api::storage::OpStatus>), ApiError> {
    if !offgrid_storage::is_valid_hash(&b.asset) {
        return Err(ApiError::invalid_request(
            "asset must be 64 lower-case hex digits",
        ));
    }
    let st = storage(&s).clone();
    let op = st.ops.start("repair");
    let task_op = op.clone();
    tokio::spawn(async move {
        let r = st
            .repair(
                &b.asset,
                Threshold::All,
                Some(task_op.progress.clone()),
                &task_op.cancel_token(),
            )
            .await
            .map(|report| serde_json::to_value(report).unwrap_or_default());
        task_op.finish(r);
    });
    Ok(started(&op))
}

#[utoipa::path(post, path = "/storage/rm", tag = "storage", request_body = api::storage::AssetRequest, security(("bearer" = [])),
    responses((status = 200, description = "The owner's signed delete sent to every host of the asset; this node forgets it", body = api::storage::RmResult),
        (status = 400, description = BAD_ASSET, body = api::ErrorBody),
        (status = 401, description = AUTH, body = api::ErrorBody),
        (status = 403, description = "This node does not own the asset (not_owner)", body = api::ErrorBody),
        (status = 404, description = "No such asset here (not_found)", body = api::ErrorBody),
        (status = 409, description = "A repair of the asset is running (conflict)", body = api::ErrorBody)))]
pub(crate) async fn rm(
    State(s): State<AppState>,
    _: Authorized,
    JsonBody(b): JsonBody<api::storage::AssetRequest>,
) -> Result<Json<api::storage::RmResult>, ApiError> {
    let v = storage(&s).rm(&b.asset).await?;
    Ok(Json(super::convert(&v)?))
}

#[utoipa::path(post, path = "/storage/key", tag = "storage", request_body = api::storage::AssetRequest, security(("bearer" = [])),
    responses((status = 200, description = "The asset's content key, to share out of band", body = api::storage::ContentKey),
        (status = 400, description = BAD_ASSET, body = api::ErrorBody),
        (status = 401, description = AUTH, body = api::ErrorBody),
        (status = 403, description = "This node cannot unwrap the key (not_shared)", body = api::ErrorBody),
        (status = 404, description = "No such asset here (not_found)", body = api::ErrorBody)))]
pub(crate) async fn key(
    State(s): State<AppState>,
    _: Authorized,
    JsonBody(b): JsonBody<api::storage::AssetRequest>,
) -> Result<Json<Value>, ApiError> {
    if !offgrid_storage::is_valid_hash(&b.asset) {
        return Err(ApiError::invalid_request(
            "asset must be 64 lower-case hex digits",
        ));
    }
    Ok(Json(storage(&s).content_key(&b.asset).await?))
}

#[utoipa::path(post, path = "/storage/policy/sign", tag = "storage", request_body = api::storage::PolicySignRequest, security(("bearer" = [])),
    responses((status = 200, description = "A public-asset policy document signed by this node", body = Object),
        (status = 400, description = "Malformed body or scheme (invalid_request)", body = api::ErrorBody),
        (status = 401, description = AUTH, body = api::ErrorBody),
        (status = 404, description = "No such asset here (not_found)", body = api::ErrorBody)))]
pub(crate) async fn policy_sign(
    State(s): State<AppState>,
    _: Authorized,
    JsonBody(b): JsonBody<api::storage::PolicySignRequest>,
) -> Result<Json<Value>, ApiError> {
    let st = storage(&s);
    let distribution = match scheme_of(st, b.mode.as_deref(), b.k, b.n, b.r)? {
        Scheme::ReedSolomon { k, n } => Distribution::Ec { k, n },
        Scheme::Replicate { r } => Distribution::Rep { r },
    };
    Ok(Json(
        st.sign_policy(&b.asset, b.license, distribution, b.safety_tags)
            .await?,
    ))
}
