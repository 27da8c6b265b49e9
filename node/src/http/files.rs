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
    extract::{Path, Query, State},
    http::StatusCode,
    routing::{get, post},
    Json, Router,
};
use offgrid_storage::{Distribution, Scheme};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{
    error::ApiError,
    extract::{Authorized, JsonBody},
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
        .route("/storage/key", post(key))
        .route("/storage/policy/sign", post(policy_sign))
}

impl From<StorageError> for ApiError {
    fn from(e: StorageError) -> Self {
        let status = match e {
            StorageError::Invalid(_) => StatusCode::BAD_REQUEST,
            StorageError::NotFound(_) => StatusCode::NOT_FOUND,
            StorageError::NoHosts { .. } => StatusCode::SERVICE_UNAVAILABLE,
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

/// Body of `POST /storage/put`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PutBody {
    path: PathBuf,
    #[serde(default)]
    mode: Option<String>,
    #[serde(default)]
    k: Option<u16>,
    #[serde(default)]
    n: Option<u16>,
    #[serde(default)]
    r: Option<u16>,
    #[serde(default)]
    shard_size: Option<u32>,
    #[serde(default)]
    name: Option<String>,
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

fn started(op: &crate::files::ops::Op) -> (StatusCode, Json<Value>) {
    (
        StatusCode::ACCEPTED,
        Json(json!({ "op_id": op.id, "kind": op.kind, "state": "running" })),
    )
}

async fn put(
    State(s): State<AppState>,
    _: Authorized,
    JsonBody(b): JsonBody<PutBody>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let st = storage(&s).clone();
    let scheme = scheme_of(&st, b.mode.as_deref(), b.k, b.n, b.r)?;
    let shard_size = b.shard_size.unwrap_or(st.cfg.shard_size);
    if shard_size == 0 || shard_size as usize > offgrid_behaviours::shards::MAX_SHARD_BYTES {
        return Err(ApiError::invalid_request(
            "shard_size must be 1..=1048576 bytes",
        ));
    }
    if !b.path.is_absolute() {
        return Err(ApiError::invalid_request(
            "path must be absolute (the node reads it from its own disk)",
        ));
    }
    let params = PutParams {
        path: b.path,
        scheme,
        shard_size,
        name: b.name,
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct GetBody {
    asset: String,
    out: PathBuf,
    #[serde(default)]
    key: Option<String>,
}

async fn get_file(
    State(s): State<AppState>,
    _: Authorized,
    JsonBody(b): JsonBody<GetBody>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let st = storage(&s).clone();
    if !offgrid_storage::is_valid_hash(&b.asset) {
        return Err(ApiError::invalid_request(
            "asset must be 64 lower-case hex digits",
        ));
    }
    if !b.out.is_absolute() {
        return Err(ApiError::invalid_request(
            "out must be an absolute path (the node writes it on its own disk)",
        ));
    }
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
        out: b.out,
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

#[derive(Debug, Deserialize)]
struct OpQuery {
    #[serde(default)]
    wait_ms: u64,
}

async fn op(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<OpQuery>,
) -> Result<Json<Value>, ApiError> {
    let op = storage(&s)
        .ops
        .get(&id)
        .ok_or_else(|| ApiError::not_found(format!("no operation {id:?}")))?;
    let wait = q.wait_ms.min(crate::files::ops::MAX_WAIT_MS);
    if wait > 0 {
        op.wait_end(std::time::Duration::from_millis(wait)).await;
    }
    Ok(Json(op.json()))
}

/// `DELETE /storage/ops/{id}`: cancels the operation and waits (at most
/// [`MAX_WAIT_MS`](crate::files::ops::MAX_WAIT_MS)) for it to end.
async fn cancel_op(
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

async fn status(State(s): State<AppState>) -> Result<Json<Value>, ApiError> {
    let st = storage(&s);
    let assets = st.list().await?;
    let owned = assets.iter().filter(|a| a["owned"] == true).count();
    let uploads = s
        .store
        .len(crate::store::Table::Uploads)
        .map_err(|_| ApiError::internal())?;
    Ok(Json(json!({
        "host": st.host.status(),
        "assets": assets.len(),
        "assets_owned": owned,
        "uploads_in_progress": uploads,
        "ops_running": st.ops.running(),
    })))
}

async fn list(State(s): State<AppState>) -> Result<Json<Value>, ApiError> {
    Ok(Json(json!({ "assets": storage(&s).list().await? })))
}

async fn check(State(s): State<AppState>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    if !offgrid_storage::is_valid_hash(&id) {
        return Err(ApiError::invalid_request(
            "asset must be 64 lower-case hex digits",
        ));
    }
    Ok(Json(storage(&s).check(&id).await?))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ShareBody {
    asset: String,
    peer: String,
}

async fn share(
    State(s): State<AppState>,
    _: Authorized,
    JsonBody(b): JsonBody<ShareBody>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(storage(&s).share(&b.asset, &b.peer).await?))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AssetBody {
    asset: String,
}

async fn repair(
    State(s): State<AppState>,
    _: Authorized,
    JsonBody(b): JsonBody<AssetBody>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
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
            .map(|report| json!(report));
        task_op.finish(r);
    });
    Ok(started(&op))
}

async fn key(
    State(s): State<AppState>,
    _: Authorized,
    JsonBody(b): JsonBody<AssetBody>,
) -> Result<Json<Value>, ApiError> {
    if !offgrid_storage::is_valid_hash(&b.asset) {
        return Err(ApiError::invalid_request(
            "asset must be 64 lower-case hex digits",
        ));
    }
    Ok(Json(storage(&s).content_key(&b.asset).await?))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyBody {
    asset: String,
    license: String,
    #[serde(default)]
    mode: Option<String>,
    #[serde(default)]
    k: Option<u16>,
    #[serde(default)]
    n: Option<u16>,
    #[serde(default)]
    r: Option<u16>,
    #[serde(default)]
    safety_tags: Vec<String>,
}

async fn policy_sign(
    State(s): State<AppState>,
    _: Authorized,
    JsonBody(b): JsonBody<PolicyBody>,
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
