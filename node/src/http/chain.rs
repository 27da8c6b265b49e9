//! Ledger, wallet and quorum routes. Handlers only translate HTTP to
//! [`crate::chain::ApiReq`] calls; the ledger service does the work.

use std::time::Duration;

use axum::{
    extract::{Path, State},
    routing::{get, post},
    Json, Router,
};
use offgrid_api as api;
use offgrid_ledger::{
    quorum::{QuorumItem, QuorumKind},
    Tx,
};
use serde::Deserialize;
use serde_json::Value;
use utoipa::IntoParams;

use super::{
    convert,
    doc::{AUTH, INVALID},
    error::ApiError,
    extract::{Authorized, JsonBody, QueryParams},
    AppState,
};
use crate::{
    chain::{wallet::WitnessRecord, ApiReq, LedgerError},
    now_ms,
    store::Table,
};

/// Longest a caller may wait for finality.
pub const MAX_WAIT_MS: u64 = 60_000;
/// Most items in one list.
pub const MAX_LIST: usize = 10_000;

/// Routes of this module.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/ledger/status", get(status))
        .route("/ledger/blocks", get(blocks).post(create_block))
        .route("/ledger/blocks/{id}", get(block))
        .route("/ledger/prove/{receipt}", get(prove))
        .route("/ledger/settle", post(settle))
        .route("/ledger/reputation", get(reputation))
        .route("/ledger/debug/bad-block", post(bad_block))
        .route("/wallet/balance", get(balance))
        .route("/wallet/balances", get(balances))
        .route("/wallet/tx", post(send))
        .route("/wallet/tx/submit", post(submit))
        .route("/wallet/tx/{id}", get(show_tx))
        .route("/wallet/txs", get(list_txs))
        .route("/wallet/witness-records", get(witness_records))
        .route("/quorum/items", get(quorum_list))
        .route("/quorum/items/{kind}/{id}", get(quorum_show))
        .route("/quorum/policy", get(quorum_policy))
        .route("/quorum/alerts", get(quorum_alerts))
}

impl From<LedgerError> for ApiError {
    fn from(e: LedgerError) -> Self {
        match e {
            LedgerError::NotFound(m) => ApiError::not_found(m),
            LedgerError::Invalid(m) => ApiError::invalid_request(m),
            LedgerError::Unavailable(m) => ApiError::unavailable(m),
            LedgerError::Conflict(m) => {
                ApiError::other(axum::http::StatusCode::CONFLICT, "conflict", m)
            }
            LedgerError::Internal(m) => {
                tracing::error!(error = %m, "ledger call failed");
                ApiError::internal()
            }
        }
    }
}

async fn call(s: &AppState, req: ApiReq) -> Result<Json<Value>, ApiError> {
    Ok(Json(s.ledger.call(req).await?))
}

/// Waits up to `wait_ms` for `id` to be final; returns its view either way.
pub(crate) async fn wait_final(s: &AppState, id: &str, wait_ms: u64) -> Result<Value, ApiError> {
    let wait = Duration::from_millis(wait_ms.min(s.max_wait_ms));
    match tokio::time::timeout(wait, s.ledger.call(ApiReq::WaitFinal(id.to_owned()))).await {
        Ok(r) => Ok(r?),
        Err(_) => Ok(s.ledger.call(ApiReq::TxShow(id.to_owned())).await?),
    }
}

/// `?limit=`: most items in the answer (1..=10000, default 100).
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct Limit {
    /// Most items in the answer (1..=10000, default 100).
    #[serde(default)]
    limit: Option<usize>,
}

impl Limit {
    fn get(&self, default: usize) -> usize {
        self.limit.unwrap_or(default).clamp(1, MAX_LIST)
    }
}

#[utoipa::path(get, path = "/ledger/status", tag = "ledger",
    responses((status = 200, description = "Ledger DAG and wallet summary", body = api::ledger::LedgerStatus)))]
pub(crate) async fn status(State(s): State<AppState>) -> Result<Json<Value>, ApiError> {
    call(&s, ApiReq::Status).await
}

#[utoipa::path(get, path = "/ledger/blocks", tag = "ledger", params(Limit),
    responses((status = 200, description = "Blocks of the DAG, newest first, and its tips", body = api::ledger::BlockList),
        (status = 400, description = INVALID, body = api::ErrorBody)))]
pub(crate) async fn blocks(
    State(s): State<AppState>,
    QueryParams(q): QueryParams<Limit>,
) -> Result<Json<Value>, ApiError> {
    call(&s, ApiReq::Blocks(q.get(100))).await
}

#[utoipa::path(get, path = "/ledger/blocks/{id}", tag = "ledger",
    params(("id" = String, Path, description = "Block id, hex")),
    responses((status = 200, description = "One block with its receipts", body = api::ledger::BlockDetail),
        (status = 404, description = "No such block (not_found)", body = api::ErrorBody)))]
pub(crate) async fn block(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    call(&s, ApiReq::BlockShow(id)).await
}

#[utoipa::path(post, path = "/ledger/blocks", tag = "ledger", request_body = api::ledger::CreateBlockRequest, security(("bearer" = [])),
    responses((status = 200, description = "Blocks made from this node's receipt batches", body = api::ledger::CreatedBlocks),
        (status = 400, description = INVALID, body = api::ErrorBody),
        (status = 401, description = AUTH, body = api::ErrorBody)))]
pub(crate) async fn create_block(
    State(s): State<AppState>,
    _: Authorized,
    JsonBody(b): JsonBody<api::ledger::CreateBlockRequest>,
) -> Result<Json<Value>, ApiError> {
    call(
        &s,
        ApiReq::CreateBlock {
            allow_empty: b.allow_empty,
        },
    )
    .await
}

#[utoipa::path(get, path = "/ledger/prove/{receipt}", tag = "ledger",
    params(("receipt" = String, Path, description = "Receipt hash or job id")),
    responses((status = 200, description = "Merkle inclusion proof of a receipt", body = api::ledger::ReceiptProof),
        (status = 404, description = "No block holds it (not_found)", body = api::ErrorBody)))]
pub(crate) async fn prove(
    State(s): State<AppState>,
    Path(r): Path<String>,
) -> Result<Json<Value>, ApiError> {
    call(&s, ApiReq::Prove(r)).await
}

#[utoipa::path(post, path = "/ledger/settle", tag = "ledger", security(("bearer" = [])),
    responses((status = 200, description = "Receipt batches settled: blocks made and host rewards minted", body = api::ledger::SettleResponse),
        (status = 401, description = AUTH, body = api::ErrorBody),
        (status = 503, description = "The wallet is off (unavailable)", body = api::ErrorBody)))]
pub(crate) async fn settle(
    State(s): State<AppState>,
    _: Authorized,
) -> Result<Json<Value>, ApiError> {
    call(&s, ApiReq::Settle).await
}

#[utoipa::path(get, path = "/ledger/reputation", tag = "ledger",
    responses((status = 200, description = "Merged reputation counters (CRDT)", body = api::ledger::ReputationEntries)))]
pub(crate) async fn reputation(State(s): State<AppState>) -> Result<Json<Value>, ApiError> {
    call(&s, ApiReq::Reputation).await
}

/// Test hook: exists only when `OFFGRID_FAULT_INJECT` includes `bad_block`.
#[utoipa::path(post, path = "/ledger/debug/bad-block", tag = "ledger", security(("bearer" = [])),
    responses((status = 200, description = "Test hook, only with OFFGRID_FAULT_INJECT=bad_block: the id of a block published with a bad signature", body = Object),
        (status = 401, description = AUTH, body = api::ErrorBody),
        (status = 404, description = "Fault injection is off (not_found)", body = api::ErrorBody)))]
pub(crate) async fn bad_block(
    State(s): State<AppState>,
    _: Authorized,
) -> Result<Json<Value>, ApiError> {
    if !crate::fault_injected("bad_block") {
        return Err(ApiError::not_found("no such route"));
    }
    tracing::warn!("FAULT INJECTION: publishing a block with a bad signature");
    call(&s, ApiReq::PublishBadBlock).await
}

/// `?account=`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct AccountQuery {
    /// A peer id or `system`; this node's own account when absent.
    #[serde(default)]
    account: Option<String>,
}

#[utoipa::path(get, path = "/wallet/balance", tag = "wallet", params(AccountQuery),
    responses((status = 200, description = "Balance of an account (final transactions only)", body = api::ledger::Balance),
        (status = 400, description = INVALID, body = api::ErrorBody),
        (status = 503, description = "The wallet is off (unavailable)", body = api::ErrorBody)))]
pub(crate) async fn balance(
    State(s): State<AppState>,
    QueryParams(q): QueryParams<AccountQuery>,
) -> Result<Json<Value>, ApiError> {
    call(&s, ApiReq::Balance(q.account.filter(|a| !a.is_empty()))).await
}

#[utoipa::path(get, path = "/wallet/balances", tag = "wallet",
    responses((status = 200, description = "Every account's final balance, and the supply", body = api::ledger::Balances),
        (status = 503, description = "The wallet is off (unavailable)", body = api::ErrorBody)))]
pub(crate) async fn balances(State(s): State<AppState>) -> Result<Json<Value>, ApiError> {
    call(&s, ApiReq::Balances).await
}

#[utoipa::path(post, path = "/wallet/tx", tag = "wallet", request_body = api::ledger::SendRequest, security(("bearer" = [])),
    responses((status = 200, description = "The signed transfer (and its state after `wait_ms`)", body = api::ledger::SendResponse),
        (status = 400, description = "Malformed, or the wallet refuses it: zero amount, fee out of range, bad destination or nonce (invalid_request); the balance is checked when witnesses sign", body = api::ErrorBody),
        (status = 401, description = AUTH, body = api::ErrorBody),
        (status = 503, description = "The wallet is off (unavailable)", body = api::ErrorBody)))]
pub(crate) async fn send(
    State(s): State<AppState>,
    _: Authorized,
    JsonBody(b): JsonBody<api::ledger::SendRequest>,
) -> Result<Json<Value>, ApiError> {
    let submit = b.submit.unwrap_or(true);
    let mut v = s
        .ledger
        .call(ApiReq::Send {
            dst: b.dst,
            amount: b.amount,
            fee: b.fee,
            nonce: b.nonce,
            submit,
        })
        .await?;
    if let (Some(ms), true, Some(id)) = (b.wait_ms, submit, v["tx_id"].as_str()) {
        let id = id.to_owned();
        v["view"] = wait_final(&s, &id, ms).await?;
    }
    Ok(Json(v))
}

#[utoipa::path(post, path = "/wallet/tx/submit", tag = "wallet", request_body = api::ledger::SubmitRequest, security(("bearer" = [])),
    responses((status = 200, description = "The transaction's id, whether it was new (and its state after `wait_ms`)", body = api::ledger::SubmitResponse),
        (status = 400, description = "Malformed, badly signed or refused by the wallet (invalid_request)", body = api::ErrorBody),
        (status = 401, description = AUTH, body = api::ErrorBody),
        (status = 503, description = "The wallet is off (unavailable)", body = api::ErrorBody)))]
pub(crate) async fn submit(
    State(s): State<AppState>,
    _: Authorized,
    JsonBody(b): JsonBody<api::ledger::SubmitRequest>,
) -> Result<Json<Value>, ApiError> {
    let tx: Tx = serde_json::to_value(&b.tx)
        .and_then(serde_json::from_value)
        .map_err(|e| ApiError::invalid_request(format!("tx: {e}")))?;
    let id = tx.id();
    let mut v = s.ledger.call(ApiReq::Submit(tx)).await?;
    if let Some(ms) = b.wait_ms {
        v["view"] = wait_final(&s, &id, ms).await?;
    }
    Ok(Json(v))
}

/// `?wait_ms=`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct WaitQuery {
    /// Hold the answer until the transaction is final or this many ms pass (at most 60000).
    #[serde(default)]
    wait_ms: Option<u64>,
}

#[utoipa::path(get, path = "/wallet/tx/{id}", tag = "wallet",
    params(("id" = String, Path, description = "Transaction id, hex"), WaitQuery),
    responses((status = 200, description = "A transaction: pending or final, and its witnesses", body = api::ledger::TxView),
        (status = 400, description = INVALID, body = api::ErrorBody),
        (status = 404, description = "Unknown transaction (not_found)", body = api::ErrorBody),
        (status = 503, description = "The wallet is off (unavailable)", body = api::ErrorBody)))]
pub(crate) async fn show_tx(
    State(s): State<AppState>,
    Path(id): Path<String>,
    QueryParams(q): QueryParams<WaitQuery>,
) -> Result<Json<Value>, ApiError> {
    match q.wait_ms {
        Some(ms) => Ok(Json(wait_final(&s, &id, ms).await?)),
        None => call(&s, ApiReq::TxShow(id)).await,
    }
}

#[utoipa::path(get, path = "/wallet/txs", tag = "wallet", params(Limit),
    responses((status = 200, description = "Transactions known to this node, newest first", body = api::ledger::TxList),
        (status = 400, description = INVALID, body = api::ErrorBody),
        (status = 503, description = "The wallet is off (unavailable)", body = api::ErrorBody)))]
pub(crate) async fn list_txs(
    State(s): State<AppState>,
    QueryParams(q): QueryParams<Limit>,
) -> Result<Json<Value>, ApiError> {
    call(&s, ApiReq::TxList(q.get(100))).await
}

#[utoipa::path(get, path = "/wallet/witness-records", tag = "wallet",
    responses((status = 200, description = "What this node has witnessed, per (account, nonce)", body = api::ledger::WitnessRecords)))]
pub(crate) async fn witness_records(
    State(s): State<AppState>,
) -> Result<Json<api::ledger::WitnessRecords>, ApiError> {
    let store = s.ledger.store().clone();
    let rows =
        tokio::task::spawn_blocking(move || store.scan::<WitnessRecord>(Table::WitnessRecords))
            .await
            .map_err(|_| ApiError::internal())?
            .map_err(|e| {
                tracing::error!(error = %e, "cannot read witness records");
                ApiError::internal()
            })?;
    let records = rows
        .into_iter()
        .map(|(slot, r)| api::ledger::WitnessRecord {
            slot,
            tx_id: r.tx_id,
        })
        .collect();
    Ok(Json(api::ledger::WitnessRecords { records }))
}

fn parse_kind(k: &str) -> Result<QuorumKind, ApiError> {
    match k {
        "upload" => Ok(QuorumKind::Upload),
        "job" => Ok(QuorumKind::Job),
        "token" => Ok(QuorumKind::Token),
        other => Err(ApiError::invalid_request(format!(
            "kind must be upload, job or token, not {other:?}"
        ))),
    }
}

fn item_view(s: &AppState, item: &QuorumItem) -> Result<api::ledger::QuorumItemView, ApiError> {
    let now = now_ms();
    let policy = s
        .failover
        .with_engine(|e| e.policies().get(item.kind).clone());
    Ok(api::ledger::QuorumItemView {
        kind: convert(&item.kind)?,
        id: item.id.clone(),
        required: item.required,
        effective_weight: item.effective_weight(&policy, now),
        reached: item.reached(&policy, now),
        progress: item.latest_progress(),
        created_ms: item.created_ms,
        acks: convert(&item.acks)?,
    })
}

/// `?kind=&limit=`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct KindQuery {
    /// `upload`, `job` or `token`; every kind when absent.
    #[serde(default)]
    kind: Option<String>,
    /// Most items in the answer (1..=10000, default 100).
    #[serde(default)]
    limit: Option<usize>,
}

#[utoipa::path(get, path = "/quorum/items", tag = "quorum", params(KindQuery),
    responses((status = 200, description = "Quorum items (upload, job, token) and their weights, newest first", body = api::ledger::QuorumItems),
        (status = 400, description = "Unknown kind (invalid_request)", body = api::ErrorBody)))]
pub(crate) async fn quorum_list(
    State(s): State<AppState>,
    QueryParams(q): QueryParams<KindQuery>,
) -> Result<Json<api::ledger::QuorumItems>, ApiError> {
    let kind = q.kind.as_deref().map(parse_kind).transpose()?;
    let limit = q.limit.unwrap_or(100).clamp(1, MAX_LIST);
    let mut items: Vec<QuorumItem> = s.failover.with_engine(|e| e.items());
    if kind.is_none() || kind == Some(QuorumKind::Token) {
        if let Ok(v) = s.ledger.call(ApiReq::TokenItems(limit)).await {
            if let Ok(tokens) = serde_json::from_value::<Vec<QuorumItem>>(v["items"].clone()) {
                items.extend(tokens);
            }
        }
    }
    items.retain(|i| kind.is_none_or(|k| i.kind == k));
    items.sort_by_key(|i| std::cmp::Reverse(i.created_ms));
    items.truncate(limit);
    let items = items
        .iter()
        .map(|i| item_view(&s, i))
        .collect::<Result<_, _>>()?;
    Ok(Json(api::ledger::QuorumItems { items }))
}

#[utoipa::path(get, path = "/quorum/items/{kind}/{id}", tag = "quorum",
    params(("kind" = String, Path, description = "upload, job or token"), ("id" = String, Path, description = "Item id")),
    responses((status = 200, description = "One quorum item with its acks", body = api::ledger::QuorumItemView),
        (status = 400, description = "Unknown kind (invalid_request)", body = api::ErrorBody),
        (status = 404, description = "No such item (not_found)", body = api::ErrorBody)))]
pub(crate) async fn quorum_show(
    State(s): State<AppState>,
    Path((kind, id)): Path<(String, String)>,
) -> Result<Json<api::ledger::QuorumItemView>, ApiError> {
    let kind = parse_kind(&kind)?;
    let item = if kind == QuorumKind::Token {
        let v = s.ledger.call(ApiReq::TokenItem(id.clone())).await?;
        serde_json::from_value(v).map_err(|_| ApiError::internal())?
    } else {
        s.failover
            .with_engine(|e| e.get(kind, &id))
            .ok_or_else(|| ApiError::not_found(format!("no {kind:?} item {id}")))?
    };
    Ok(Json(item_view(&s, &item)?))
}

#[utoipa::path(get, path = "/quorum/policy", tag = "quorum",
    responses((status = 200, description = "Quorum policies per kind (the [quorum] section in force)", body = api::ledger::QuorumPolicy)))]
pub(crate) async fn quorum_policy(
    State(s): State<AppState>,
) -> Result<Json<api::ledger::QuorumPolicy>, ApiError> {
    let cfg = s.failover.with_engine(|e| e.config().clone());
    Ok(Json(convert(&cfg)?))
}

#[utoipa::path(get, path = "/quorum/alerts", tag = "quorum",
    responses((status = 200, description = "Alerts raised by the failover monitor, newest last", body = api::ledger::QuorumAlerts)))]
pub(crate) async fn quorum_alerts(
    State(s): State<AppState>,
) -> Result<Json<api::ledger::QuorumAlerts>, ApiError> {
    Ok(Json(api::ledger::QuorumAlerts {
        alerts: convert(&s.failover.alerts())?,
    }))
}
