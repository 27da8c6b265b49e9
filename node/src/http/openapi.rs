//! `GET /openapi.json`: an OpenAPI 3 document generated from the handlers' annotations
//! (utoipa). The types here describe JSON shapes for the document; the handlers build the
//! same shapes.

#![allow(dead_code)]

use axum::{extract::State, response::IntoResponse};
use utoipa::{
    openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme},
    Modify, OpenApi, ToSchema,
};

use super::AppState;

/// The one error shape of every route.
#[derive(ToSchema)]
pub struct ErrorBody {
    /// Stable code: `invalid_request`, `unauthorized`, `invalid_signature`,
    /// `stale_timestamp`, `conflict`, `too_large`, `rate_limited`, `no_hosts`,
    /// `job_timeout`, `not_found`, …
    error: String,
    /// Human-readable reason.
    message: String,
}

/// Core's job (`POST /auction`, `POST /jobs`). `signature` is hex HMAC-SHA256 over the
/// canonical JSON of the body without `signature` (keys sorted, compact, UTF-8), or an
/// Ed25519 signature when `sig_alg` is `ed25519`. Alternatively sign with the
/// `X-Offgrid-Timestamp` / `X-Offgrid-Signature` headers over `timestamp + "." + body`.
#[derive(ToSchema)]
pub struct CoreJob {
    /// Idempotency key, 1..=128 bytes.
    job_id: String,
    /// Job type (selects hosts with that executor).
    #[schema(rename = "type")]
    job_type: String,
    /// Size in units (exact to 1e-6).
    size: Option<f64>,
    /// Unix seconds; within the configured skew (300 s) of the node's clock.
    timestamp: i64,
    /// The job's input, any JSON.
    #[schema(value_type = Object)]
    payload: Option<serde_json::Value>,
    /// Overall deadline, 1..=3600 s (default 30).
    timeout_s: Option<u64>,
    /// Run on this many hosts and accept only if outputs agree (1..=5).
    redundancy: Option<u32>,
    /// `hmac-sha256` (default) or `ed25519`.
    sig_alg: Option<String>,
    /// Ed25519 key id from the node's `[core] ed25519_keys`.
    key_id: Option<String>,
    /// Hex signature.
    signature: String,
}

/// A completed job in Core's shape.
#[derive(ToSchema)]
pub struct CoreCompleted {
    /// Always `completed`.
    status: String,
    /// The job id.
    job_id: String,
    /// The result.
    result: CoreResult,
}

/// The result of a completed job.
#[derive(ToSchema)]
pub struct CoreResult {
    /// Always true.
    ok: bool,
    /// The executor's output (JSON when it parses, else a string).
    #[schema(value_type = Object)]
    output: serde_json::Value,
    /// Peer id of the host that ran it.
    host: String,
    /// Price per unit, credits.
    quote: f64,
    /// The host's signed receipt (schema v0.1): every field, `metrics.compute_tokens_m`,
    /// `metrics.latency_ms`, and `signed` (base64 of the signed bytes), `sig`, `pubkey`.
    #[schema(value_type = Object)]
    offgrid_receipt: serde_json::Value,
    /// Hosts tried, in order, with what happened.
    #[schema(value_type = Vec<Object>)]
    attempts: Vec<serde_json::Value>,
    /// Milliseconds from request to answer.
    duration_ms: u64,
}

/// State of an asynchronous job.
#[derive(ToSchema)]
pub struct JobStateBody {
    /// The job id.
    job_id: String,
    /// `running`, `completed` or `failed`.
    state: String,
    /// When completed: the result.
    result: Option<CoreResult>,
    /// When failed: the error body.
    error: Option<ErrorBody>,
}

/// A job posted locally (`POST /market/run`).
#[derive(ToSchema)]
pub struct MarketJob {
    /// Job id; generated when absent.
    job_id: Option<String>,
    /// Job type.
    #[schema(rename = "type")]
    job_type: String,
    /// Size in units.
    size: Option<f64>,
    /// The job's input, any JSON.
    #[schema(value_type = Object)]
    payload: Option<serde_json::Value>,
    /// Overall deadline, seconds.
    timeout_s: Option<u64>,
    /// Hosts to run on and compare.
    redundancy: Option<u32>,
}

/// `POST /toggle`.
#[derive(ToSchema)]
pub struct ToggleBody {
    /// Take jobs or not.
    active: bool,
}

/// `POST /announce`: any subset.
#[derive(ToSchema)]
pub struct AnnounceChange {
    /// Prices per resource type, credits (decimal number or string).
    #[schema(value_type = Object)]
    prices: Option<serde_json::Value>,
    /// Percent on call, 0..=100.
    min_oncall_percent: Option<u8>,
    /// Highest percent of capacity lent in bursts, 0..=100.
    burst_percent_max: Option<u8>,
    /// Most jobs at once, ≥ 1.
    burst: Option<u32>,
    /// Take jobs or not.
    active: Option<bool>,
}

/// A JSON document (shape described in the route's summary).
#[derive(ToSchema)]
#[schema(value_type = Object)]
pub struct AnyJson(serde_json::Value);

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        components.add_security_scheme(
            "core_hmac_header",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("X-Offgrid-Signature"))),
        );
    }
}

/// Routes of the storage, ledger/wallet and radio modules, described from this table (their
/// bodies are documented in the modules and the CLI). `(method, path, tag, summary, auth)`.
const TABLE: &[(&str, &str, &str, &str, bool)] = &[
    ("post", "/storage/put", "storage", "Encrypt, erasure-code and place a local file: {path, mode, k, n, r, shard_size} → operation id", true),
    ("post", "/storage/get", "storage", "Fetch, verify, decode and decrypt an asset to a local file: {asset, out}", true),
    ("get", "/storage/ops/{id}", "storage", "Progress and result of a put, get or repair", false),
    ("delete", "/storage/ops/{id}", "storage", "Cancel a running put, get or repair: 200 with its final state (`cancelled`, or its outcome if it ended first), 202 with `cancel_requested` while it winds down; a cancelled put resumes when run again", true),
    ("get", "/storage/status", "storage", "Shard store usage, quota and received-bytes counters", false),
    ("get", "/storage/assets", "storage", "Assets this node can read", false),
    ("get", "/storage/assets/{id}/check", "storage", "Reachable shards per segment of an asset", false),
    ("post", "/storage/share", "storage", "Wrap an asset's key for another peer: {asset, peer}", true),
    ("post", "/storage/repair", "storage", "Rebuild missing shards of an asset onto other hosts: {asset}", true),
    ("post", "/storage/key", "storage", "Content key operations for an asset the node owns", true),
    ("post", "/storage/policy/sign", "storage", "Sign a public-asset policy document", true),
    ("get", "/ledger/status", "ledger", "Ledger DAG and wallet summary", false),
    ("get", "/ledger/blocks", "ledger", "Blocks of the DAG and its tips", false),
    ("post", "/ledger/blocks", "ledger", "Create a block from this node's next receipt batch", true),
    ("get", "/ledger/blocks/{id}", "ledger", "One block", false),
    ("get", "/ledger/prove/{receipt}", "ledger", "Merkle inclusion proof of a receipt", false),
    ("post", "/ledger/settle", "ledger", "Settle receipt batches in the ledger (mint host rewards)", true),
    ("get", "/ledger/reputation", "ledger", "Merged reputation counters (CRDT)", false),
    ("post", "/ledger/debug/bad-block", "ledger", "Test hook, only with OFFGRID_FAULT_INJECT=bad_block: publish a block with a bad signature", true),
    ("get", "/wallet/balance", "wallet", "Balance of an account (final transactions only)", false),
    ("post", "/wallet/tx", "wallet", "Sign and send a transfer: {dst, amount, fee} → tx id", true),
    ("post", "/wallet/tx/submit", "wallet", "Submit a transaction signed elsewhere", true),
    ("get", "/wallet/tx/{id}", "wallet", "A transaction: pending or final, and its witnesses", false),
    ("get", "/wallet/txs", "wallet", "Transactions known to this node", false),
    ("get", "/wallet/witness-records", "wallet", "What this node has witnessed, per (account, nonce)", false),
    ("get", "/quorum/items", "quorum", "Quorum items (upload, job, token) and their weights", false),
    ("get", "/quorum/items/{kind}/{id}", "quorum", "One quorum item with its acks", false),
    ("get", "/quorum/policy", "quorum", "Quorum policies per kind", false),
    ("get", "/quorum/alerts", "quorum", "Alerts raised by the failover monitor", false),
    ("get", "/radio", "radio", "Radio links: frames in and out, airtime against the budget, peers per link", false),
    ("get", "/mesh", "radio", "Mesh metrics (BATMAN-adv, Babel or manual)", false),
];

struct Table;

impl Modify for Table {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{
            path::{HttpMethod, OperationBuilder, PathItem},
            request_body::RequestBodyBuilder,
            ContentBuilder, Ref, ResponseBuilder,
        };
        for (method, path, tag, summary, auth) in TABLE {
            let json = |d: &str, r: &str| {
                ResponseBuilder::new()
                    .description(d)
                    .content(
                        "application/json",
                        ContentBuilder::new()
                            .schema(Some(Ref::from_schema_name(r)))
                            .build(),
                    )
                    .build()
            };
            let mut op = OperationBuilder::new()
                .tag(*tag)
                .summary(Some(*summary))
                .response("200", json("OK", "AnyJson"))
                .response("400", json("invalid_request", "ErrorBody"))
                .response("404", json("not_found", "ErrorBody"));
            if *auth {
                op = op
                    .response("401", json("missing or wrong bearer token", "ErrorBody"))
                    .security(utoipa::openapi::security::SecurityRequirement::new(
                        "bearer",
                        Vec::<String>::new(),
                    ));
            }
            let m = if *method == "delete" {
                op = op.response(
                    "202",
                    json("accepted, still winding down (cancel_requested)", "AnyJson"),
                );
                HttpMethod::Delete
            } else if *method == "post" {
                op = op.request_body(Some(
                    RequestBodyBuilder::new()
                        .content(
                            "application/json",
                            ContentBuilder::new()
                                .schema(Some(Ref::from_schema_name("AnyJson")))
                                .build(),
                        )
                        .build(),
                ));
                HttpMethod::Post
            } else {
                HttpMethod::Get
            };
            let item = PathItem::new(m, op.build());
            match openapi.paths.paths.get_mut(*path) {
                Some(existing) => existing.merge_operations(item),
                None => {
                    openapi.paths.paths.insert((*path).to_owned(), item);
                }
            }
        }
    }
}

/// The document.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Offgrid-Net node API",
        description = "Local API of an offgrid-node, including Core's adapter (POST /auction). \
                       Every error is {\"error\": code, \"message\": text}.",
    ),
    paths(
        super::status, super::peers, super::get_announce, super::post_announce, super::toggle, super::pubkeys,
        super::market::run, super::market::quote, super::market::export, super::market::reputation,
        super::core::routes::auction, super::core::routes::submit, super::core::routes::job_state, super::core::routes::metrics,
        openapi_json,
    ),
    components(schemas(ErrorBody, CoreJob, CoreCompleted, CoreResult, JobStateBody, MarketJob, ToggleBody, AnnounceChange, AnyJson)),
    modifiers(&Security, &Table),
)]
pub struct ApiDoc;

/// The OpenAPI document of this node's API.
#[utoipa::path(get, path = "/openapi.json", tag = "meta",
    responses((status = 200, description = "OpenAPI 3 document", body = AnyJson)))]
pub(crate) async fn openapi_json(State(_): State<AppState>) -> impl IntoResponse {
    let doc = ApiDoc::openapi();
    axum::Json(doc)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every `.route("…")` registered in the API's source files is in the document, so a
    /// new route cannot ship undocumented.
    #[test]
    fn every_registered_route_is_documented() {
        let doc = ApiDoc::openapi();
        let documented: Vec<String> = doc.paths.paths.keys().cloned().collect();
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/http");
        let mut missing = Vec::new();
        let mut files = Vec::new();
        let mut dirs = vec![dir];
        while let Some(d) = dirs.pop() {
            for entry in std::fs::read_dir(&d).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    dirs.push(path);
                } else if !path.ends_with("openapi.rs") {
                    files.push(path);
                }
            }
        }
        assert!(files.len() >= 8, "route files not found: {files:?}");
        for path in files {
            let text = std::fs::read_to_string(&path).unwrap();
            for (i, _) in text.match_indices(".route(\"") {
                let rest = &text[i + 8..];
                let route = &rest[..rest.find('"').unwrap()];
                if !documented.iter().any(|d| d == route) {
                    missing.push(format!(
                        "{route} ({})",
                        path.file_name().unwrap().to_string_lossy()
                    ));
                }
            }
        }
        assert!(
            missing.is_empty(),
            "routes missing from the OpenAPI document: {missing:?}"
        );
        let json = doc.to_json().unwrap();
        assert!(json.contains("\"openapi\":\"3.1.0\""));
        for schema in ["ErrorBody", "CoreJob", "CoreCompleted"] {
            assert!(json.contains(schema), "{schema}");
        }
        // Routes with two methods keep both operations.
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        let ops = &v["paths"]["/storage/ops/{id}"];
        assert!(ops["get"].is_object() && ops["delete"].is_object(), "{ops}");
        assert!(ops["delete"]["responses"]["401"].is_object(), "{ops}");
    }
}
