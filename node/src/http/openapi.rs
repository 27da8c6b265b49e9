//! `GET /openapi.json`: an OpenAPI 3 document generated from the handlers' annotations
//! (utoipa) and the types of `offgrid-api`. Core's job shapes are described here: the
//! adapter builds them from its own canonical-JSON code.

#![allow(dead_code)]

use axum::{extract::State, response::IntoResponse};
use utoipa::{
    openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme},
    Modify, OpenApi, ToSchema,
};

use super::AppState;

pub use offgrid_api::ErrorBody;

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
    /// Peer id of the broker the job is for; another broker refuses it (401
    /// invalid_signature), so a replay cannot run it twice.
    audience: Option<String>,
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
        super::files::put, super::files::get_file, super::files::op, super::files::cancel_op,
        super::files::status, super::files::list, super::files::check, super::files::share,
        super::files::repair, super::files::key, super::files::policy_sign, super::content::content, super::files::rm,
        super::chain::status, super::chain::blocks, super::chain::create_block, super::chain::block,
        super::chain::prove, super::chain::settle, super::chain::reputation, super::chain::bad_block,
        super::chain::balance, super::chain::balances, super::chain::send, super::chain::submit, super::chain::show_tx,
        super::chain::list_txs, super::chain::witness_records, super::chain::quorum_list,
        super::chain::quorum_show, super::chain::quorum_policy, super::chain::quorum_alerts,
        super::wallet::init, super::wallet::join, super::wallet::witnesses,
        super::radio::radio, super::radio::mesh,
        super::events::events, super::events::jobs, super::dashboard::index, super::dashboard::asset,
        openapi_json,
    ),
    components(schemas(ErrorBody, CoreJob, CoreCompleted, CoreResult, JobStateBody,
        offgrid_api::events::StreamStatus, offgrid_api::events::PeerChange, offgrid_api::events::JobRecord)),
    modifiers(&Security),
)]
pub struct ApiDoc;

/// The OpenAPI document of this node's API.
#[utoipa::path(get, path = "/openapi.json", tag = "meta",
    responses((status = 200, description = "OpenAPI 3 document", body = Object)))]
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

    /// Every operation declares each `{param}` of its path as a path parameter, every route
    /// answers with a declared type (no free-form bodies but the documented ones), and
    /// every error it documents has the one error shape.
    #[test]
    fn every_operation_declares_its_parameters_and_types() {
        let v: serde_json::Value =
            serde_json::from_str(&ApiDoc::openapi().to_json().unwrap()).unwrap();
        let free_form = [
            "/openapi.json",
            "/storage/policy/sign",
            "/ledger/debug/bad-block",
            // Bytes, not JSON.
            "/storage/assets/{id}/content",
        ];
        let mut problems = Vec::new();
        for (path, item) in v["paths"].as_object().unwrap() {
            let wanted: Vec<&str> = path
                .split('/')
                .filter_map(|seg| seg.strip_prefix('{')?.strip_suffix('}'))
                .collect();
            for (method, op) in item.as_object().unwrap() {
                let declared: Vec<&str> = op["parameters"]
                    .as_array()
                    .map(|ps| {
                        ps.iter()
                            .filter(|p| p["in"] == "path")
                            .filter_map(|p| p["name"].as_str())
                            .collect()
                    })
                    .unwrap_or_default();
                for w in &wanted {
                    if !declared.contains(w) {
                        problems.push(format!("{method} {path}: path parameter {w} undeclared"));
                    }
                }
                for d in &declared {
                    if !wanted.contains(d) {
                        problems.push(format!("{method} {path}: {d} is not in the path"));
                    }
                }
                for (status, resp) in op["responses"].as_object().unwrap() {
                    let schema = &resp["content"]["application/json"]["schema"];
                    let reference = schema["$ref"].as_str().unwrap_or("");
                    if status.starts_with('2') {
                        // Not JSON: Prometheus text, the dashboard's page and assets, and
                        // the event stream (whose events are documented components).
                        let text = ["/metrics", "/", "/ui/{rev}/{file}", "/events"];
                        let typed = !reference.is_empty() || text.contains(&path.as_str());
                        if !typed && !free_form.contains(&path.as_str()) {
                            problems.push(format!("{method} {path} {status}: no declared type"));
                        }
                    } else if reference != "#/components/schemas/ErrorBody" {
                        problems.push(format!("{method} {path} {status}: not an ErrorBody"));
                    }
                }
            }
        }
        assert!(problems.is_empty(), "{problems:#?}");
        let schemas = v["components"]["schemas"].as_object().unwrap();
        for name in [
            "LedgerStatus",
            "QuorumPolicy",
            "PutRequest",
            "OpStatus",
            "Status",
        ] {
            assert!(
                schemas.contains_key(name),
                "{name} is not in the components"
            );
        }
    }
}
