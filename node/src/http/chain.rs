//! Ledger, wallet and quorum routes. Handlers only translate HTTP to
//! [`crate::chain::ApiReq`] calls; the ledger service does the work.

use std::time::Duration;

use axum::{
    extract::{Path, Query, State},
    routing::{get, post},
    Json, Router,
};
use offgrid_ledger::{
    quorum::{QuorumItem, QuorumKind},
    Tx,
};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{
    error::ApiError,
    extract::{Authorized, JsonBody},
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
async fn wait_final(s: &AppState, id: &str, wait_ms: u64) -> Result<Value, ApiError> {
    let wait = Duration::from_millis(wait_ms.min(MAX_WAIT_MS));
    match tokio::time::timeout(wait, s.ledger.call(ApiReq::WaitFinal(id.to_owned()))).await {
        Ok(r) => Ok(r?),
        Err(_) => Ok(s.ledger.call(ApiReq::TxShow(id.to_owned())).await?),
    }
}

#[derive(Debug, Deserialize)]
struct Limit {
    #[serde(default)]
    limit: Option<usize>,
}

impl Limit {
    fn get(&self, default: usize) -> usize {
        self.limit.unwrap_or(default).clamp(1, MAX_LIST)
    }
}

async fn status(State(s): State<AppState>) -> Result<Json<Value>, ApiError> {
    call(&s, ApiReq::Status).await
}

async fn blocks(
    State(s): State<AppState>,
    Query(q): Query<Limit>,
) -> Result<Json<Value>, ApiError> {
    call(&s, ApiReq::Blocks(q.get(100))).await
}

async fn block(State(s): State<AppState>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    call(&s, ApiReq::BlockShow(id)).await
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBlockBody {
    #[serde(default)]
    allow_empty: bool,
}

async fn create_block(
    State(s): State<AppState>,
    _: Authorized,
    JsonBody(b): JsonBody<CreateBlockBody>,
) -> Result<Json<Value>, ApiError> {
    call(
        &s,
        ApiReq::CreateBlock {
            allow_empty: b.allow_empty,
        },
    )
    .await
}

async fn prove(State(s): State<AppState>, Path(r): Path<String>) -> Result<Json<Value>, ApiError> {
    call(&s, ApiReq::Prove(r)).await
}

async fn settle(State(s): State<AppState>, _: Authorized) -> Result<Json<Value>, ApiError> {
    call(&s, ApiReq::Settle).await
}

async fn reputation(State(s): State<AppState>) -> Result<Json<Value>, ApiError> {
    call(&s, ApiReq::Reputation).await
}

/// Test hook: exists only when `OFFGRID_FAULT_INJECT` includes `bad_block`.
async fn bad_block(State(s): State<AppState>, _: Authorized) -> Result<Json<Value>, ApiError> {
    if !crate::fault_injected("bad_block") {
        return Err(ApiError::not_found("no such route"));
    }
    tracing::warn!("FAULT INJECTION: publishing a block with a bad signature");
    call(&s, ApiReq::PublishBadBlock).await
}

#[derive(Debug, Deserialize)]
struct AccountQuery {
    #[serde(default)]
    account: Option<String>,
}

async fn balance(
    State(s): State<AppState>,
    Query(q): Query<AccountQuery>,
) -> Result<Json<Value>, ApiError> {
    call(&s, ApiReq::Balance(q.account.filter(|a| !a.is_empty()))).await
}

/// Body of `POST /wallet/tx`. Amounts are micro-credits.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SendBody {
    dst: String,
    amount: u64,
    #[serde(default)]
    fee: Option<u64>,
    #[serde(default)]
    nonce: Option<u64>,
    /// `false`: only sign and return the transaction.
    #[serde(default = "yes")]
    submit: bool,
    /// Wait this long for finality before answering.
    #[serde(default)]
    wait_ms: Option<u64>,
}

fn yes() -> bool {
    true
}

async fn send(
    State(s): State<AppState>,
    _: Authorized,
    JsonBody(b): JsonBody<SendBody>,
) -> Result<Json<Value>, ApiError> {
    let mut v = s
        .ledger
        .call(ApiReq::Send {
            dst: b.dst,
            amount: b.amount,
            fee: b.fee,
            nonce: b.nonce,
            submit: b.submit,
        })
        .await?;
    if let (Some(ms), true, Some(id)) = (b.wait_ms, b.submit, v["tx_id"].as_str()) {
        let id = id.to_owned();
        v["view"] = wait_final(&s, &id, ms).await?;
    }
    Ok(Json(v))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SubmitBody {
    tx: Tx,
    #[serde(default)]
    wait_ms: Option<u64>,
}

async fn submit(
    State(s): State<AppState>,
    _: Authorized,
    JsonBody(b): JsonBody<SubmitBody>,
) -> Result<Json<Value>, ApiError> {
    let id = b.tx.id();
    let mut v = s.ledger.call(ApiReq::Submit(b.tx)).await?;
    if let Some(ms) = b.wait_ms {
        v["view"] = wait_final(&s, &id, ms).await?;
    }
    Ok(Json(v))
}

#[derive(Debug, Deserialize)]
struct WaitQuery {
    #[serde(default)]
    wait_ms: Option<u64>,
}

async fn show_tx(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<WaitQuery>,
) -> Result<Json<Value>, ApiError> {
    match q.wait_ms {
        Some(ms) => Ok(Json(wait_final(&s, &id, ms).await?)),
        None => call(&s, ApiReq::TxShow(id)).await,
    }
}

async fn list_txs(
    State(s): State<AppState>,
    Query(q): Query<Limit>,
) -> Result<Json<Value>, ApiError> {
    call(&s, ApiReq::TxList(q.get(100))).await
}

async fn witness_records(State(s): State<AppState>) -> Result<Json<Value>, ApiError> {
    let store = s.ledger.store().clone();
    let rows =
        tokio::task::spawn_blocking(move || store.scan::<WitnessRecord>(Table::WitnessRecords))
            .await
            .map_err(|_| ApiError::internal())?
            .map_err(|e| {
                tracing::error!(error = %e, "cannot read witness records");
                ApiError::internal()
            })?;
    let records: Vec<Value> = rows
        .into_iter()
        .map(|(slot, r)| json!({ "slot": slot, "tx_id": r.tx_id }))
        .collect();
    Ok(Json(json!({ "records": records })))
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

fn item_view(s: &AppState, item: &QuorumItem) -> Value {
    let now = now_ms();
    let policy = s
        .failover
        .with_engine(|e| e.policies().get(item.kind).clone());
    json!({
        "kind": item.kind,
        "id": item.id,
        "required": item.required,
        "effective_weight": item.effective_weight(&policy, now),
        "reached": item.reached(&policy, now),
        "progress": item.latest_progress(),
        "created_ms": item.created_ms,
        "acks": item.acks,
    })
}

#[derive(Debug, Deserialize)]
struct KindQuery {
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    limit: Option<usize>,
}

async fn quorum_list(
    State(s): State<AppState>,
    Query(q): Query<KindQuery>,
) -> Result<Json<Value>, ApiError> {
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
    let views: Vec<Value> = items.iter().map(|i| item_view(&s, i)).collect();
    Ok(Json(json!({ "items": views })))
}

async fn quorum_show(
    State(s): State<AppState>,
    Path((kind, id)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let kind = parse_kind(&kind)?;
    let item = if kind == QuorumKind::Token {
        let v = s.ledger.call(ApiReq::TokenItem(id.clone())).await?;
        serde_json::from_value(v).map_err(|_| ApiError::internal())?
    } else {
        s.failover
            .with_engine(|e| e.get(kind, &id))
            .ok_or_else(|| ApiError::not_found(format!("no {kind:?} item {id}")))?
    };
    Ok(Json(item_view(&s, &item)))
}

async fn quorum_policy(State(s): State<AppState>) -> Json<Value> {
    let cfg = s.failover.with_engine(|e| e.config().clone());
    Json(json!(cfg))
}

async fn quorum_alerts(State(s): State<AppState>) -> Json<Value> {
    Json(json!({ "alerts": s.failover.alerts() }))
}
