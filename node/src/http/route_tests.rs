//! Every route's documented errors, called in-process (`oneshot`) on a real node's router:
//! each case sends one request and checks the status and the error code. A last test reads
//! the OpenAPI document and fails when a documented error has no case here and no named
//! test elsewhere, so a new error cannot be documented untested.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{collections::BTreeSet, time::Duration};

use axum::{
    body::Body,
    http::{Method, Request},
    Router,
};
use hmac::{Hmac, KeyInit, Mac};
use offgrid_api as api;
use serde::de::DeserializeOwned;
use serde_json::{json, Value};
use tower::ServiceExt;
use utoipa::OpenApi;

use super::openapi::ApiDoc;

#[path = "route_cases.rs"]
mod route_cases;
use crate::{config::Config, Node};
use route_cases::cases;

const KEY: &str = "route-test-key";
const ASSET: &str = "0000000000000000000000000000000000000000000000000000000000000000";
const BODY_LIMIT: usize = 64 * 1024;

struct TestNode {
    node: Node,
    app: Router,
    token: String,
    _dir: tempfile::TempDir,
}

async fn start(wallet: bool) -> TestNode {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = Config {
        data_dir: Some(dir.path().to_owned()),
        listen: vec!["/ip4/127.0.0.1/tcp/0".into()],
        api_listen: "127.0.0.1:0".into(),
        mdns: false,
        ..Config::default()
    };
    cfg.api.body_limit_bytes = BODY_LIMIT;
    cfg.core.hmac_keys = vec![KEY.into()];
    if wallet {
        // Its own witness, with a balance to spend.
        let id = crate::identity::Identity::load_or_create(dir.path()).unwrap();
        let me = id.peer_id().to_string();
        cfg.wallet.witnesses = vec![crate::config::ledger::WitnessConfig {
            peer: me.clone(),
            weight: 1.0,
        }];
        cfg.wallet.genesis = vec![crate::config::ledger::GenesisConfig {
            account: me,
            amount: 1_000_000,
        }];
    }
    let node = Node::start(cfg).await.unwrap();
    // A job Core ran before, under the id `held`, with other content than any case sends.
    let held = json!({"content_hash": "ab", "running": false, "outcome": null, "created_ms": crate::now_ms()});
    let op = crate::store::Op::put(crate::store::Table::Jobs, "held", &held).unwrap();
    node.store().commit(vec![op]).await.unwrap();
    let token = std::fs::read_to_string(dir.path().join(super::auth::TOKEN_FILE)).unwrap();
    TestNode {
        app: node.router(),
        token: token.trim().to_owned(),
        node,
        _dir: dir,
    }
}

/// One request: `auth` adds the bearer token, `headers` anything else.
async fn call(
    t: &TestNode,
    method: Method,
    uri: &str,
    auth: bool,
    headers: &[(&str, String)],
    body: Option<Vec<u8>>,
) -> (u16, Value) {
    let mut req = Request::builder().method(method).uri(uri);
    if auth {
        req = req.header("authorization", format!("Bearer {}", t.token));
    }
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    if body.is_some() {
        req = req.header("content-type", "application/json");
    }
    let req = req.body(Body::from(body.unwrap_or_default())).unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(20), t.app.clone().oneshot(req))
        .await
        .unwrap_or_else(|_| panic!("{uri} did not answer in 20 s"))
        .unwrap();
    let status = resp.status().as_u16();
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// A documented error case: what is sent, and the status and code that must come back.
struct Case {
    method: Method,
    route: &'static str,
    uri: String,
    auth: bool,
    headers: Vec<(&'static str, String)>,
    body: Option<Vec<u8>>,
    status: u16,
    code: &'static str,
}

fn case(method: Method, route: &'static str, status: u16, code: &'static str) -> Case {
    Case {
        method,
        route,
        uri: route.to_owned(),
        auth: true,
        headers: Vec::new(),
        body: None,
        status,
        code,
    }
}

impl Case {
    fn uri(mut self, uri: impl Into<String>) -> Self {
        self.uri = uri.into();
        self
    }
    fn body(mut self, b: impl Into<Vec<u8>>) -> Self {
        self.body = Some(b.into());
        self
    }
    fn json(self, v: Value) -> Self {
        self.body(v.to_string())
    }
    fn no_auth(mut self) -> Self {
        self.auth = false;
        self
    }
    fn header(mut self, k: &'static str, v: String) -> Self {
        self.headers.push((k, v));
        self
    }
}

/// A peer id with an Ed25519 key, as a reader must have.
fn reader() -> String {
    crate::identity::Identity::from_seed([9; 32])
        .peer_id()
        .to_string()
}

fn now_s() -> i64 {
    (crate::now_ms() / 1000) as i64
}

/// Core's header signature over `timestamp + "." + body`.
fn core_signed(body: &str, ts: i64) -> Vec<(&'static str, String)> {
    let mut m = Hmac::<sha2::Sha256>::new_from_slice(KEY.as_bytes()).unwrap();
    m.update(format!("{ts}.{body}").as_bytes());
    vec![
        ("x-offgrid-timestamp", ts.to_string()),
        (
            "x-offgrid-signature",
            hex::encode(m.finalize().into_bytes()),
        ),
    ]
}

fn core_case(route: &'static str, body: &str, ts: i64, status: u16, code: &'static str) -> Case {
    let mut c = case(Method::POST, route, status, code).no_auth().body(body);
    c.headers = core_signed(body, ts);
    c
}

/// Runs the cases; returns what they covered as (method, route, status).
async fn run(t: &TestNode, cases: Vec<Case>) -> BTreeSet<(String, String, u16)> {
    let mut covered = BTreeSet::new();
    let mut wrong = Vec::new();
    for c in cases {
        let (status, v) = call(t, c.method.clone(), &c.uri, c.auth, &c.headers, c.body).await;
        let code = v["error"].as_str().unwrap_or("");
        if status != c.status || code != c.code {
            wrong.push(format!(
                "{} {}: want {} {:?}, got {status} {v}",
                c.method, c.uri, c.status, c.code
            ));
        }
        if status >= 400 && v["message"].as_str().is_none_or(str::is_empty) {
            wrong.push(format!("{} {}: no message in {v}", c.method, c.uri));
        }
        covered.insert((
            c.method.as_str().to_lowercase(),
            c.route.to_owned(),
            c.status,
        ));
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
    covered
}

/// Errors that need peers (a silent host, a second owner, a busy broker): the test that
/// shows each, as `file::function`, checked to exist.
const ELSEWHERE: &[(&str, &str, u16, &str)] = &[
    ("post", "/auction", 429, "tests/tests/core_api.rs::per_client_rate_limit_answers_429_with_retry_after"),
    ("post", "/auction", 504, "tests/tests/core_api.rs::no_hosts_is_503_and_a_silent_host_is_504_within_timeout_plus_one_second"),
    ("post", "/auction", 502, "tests/tests/core_api.rs::a_job_that_failed_on_a_host_retried_three_times_ran_once"),
    ("post", "/market/run", 502, "tests/tests/market.rs::redundant_runs_are_accepted_when_outputs_agree_and_refused_when_they_differ"),
    ("post", "/market/run", 429, "node/src/http/route_tests.rs::broker_errors_have_their_documented_statuses"),
    ("post", "/market/run", 402, "node/src/http/route_tests.rs::broker_errors_have_their_documented_statuses"),
    ("post", "/auction", 402, "node/src/http/route_tests.rs::broker_errors_have_their_documented_statuses"),
    ("post", "/auction", 507, "node/src/http/route_tests.rs::store_errors_have_their_documented_statuses"),
    ("post", "/jobs", 503, "node/src/http/route_tests.rs::store_errors_have_their_documented_statuses"),
    ("post", "/jobs", 507, "node/src/http/route_tests.rs::store_errors_have_their_documented_statuses"),
    ("post", "/market/run", 504, "node/src/http/route_tests.rs::broker_errors_have_their_documented_statuses"),
    ("post", "/storage/share", 403, "node/src/http/route_tests.rs::storage_errors_have_their_documented_statuses"),
    ("post", "/storage/key", 403, "node/src/http/route_tests.rs::storage_errors_have_their_documented_statuses"),
    ("get", "/events", 503, "node/src/http/route_tests.rs::the_dashboard_is_served_and_event_streams_are_capped"),
    ("get", "/storage/assets/{id}/content", 403, "node/src/http/route_tests.rs::storage_errors_have_their_documented_statuses"),
    ("get", "/storage/assets/{id}/content", 502, "node/src/http/route_tests.rs::storage_errors_have_their_documented_statuses"),
    ("get", "/storage/assets/{id}/content", 503, "node/src/http/route_tests.rs::storage_errors_have_their_documented_statuses"),
    ("get", "/storage/assets/{id}/content", 416, "tests/tests/storage_range.rs::range_reads_fetch_only_their_segments_and_get_dash_streams_the_whole_file"),
    ("post", "/storage/rm", 403, "tests/tests/storage_lifecycle.rs::rm_by_the_owner_empties_every_host_and_a_non_owner_is_refused"),
    ("post", "/storage/rm", 409, "node/src/http/route_tests.rs::storage_errors_have_their_documented_statuses"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_error_of_every_route_is_answered_as_documented() {
    let on = start(true).await;
    let mut covered = run(&on, cases(true)).await;
    let off = start(false).await;
    covered.extend(run(&off, cases(false)).await);

    // With the services stopped, the routes that ask them answer 503 at once.
    let stopped = start(false).await;
    stopped.node.cancel_token().cancel();
    let stop_cases = vec![
        case(Method::GET, "/radio", 503, "unavailable"),
        case(Method::GET, "/mesh", 503, "unavailable"),
    ];
    // The peer service winds down on its own task: wait for it to stop answering.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while call(&stopped, Method::GET, "/radio", false, &[], None)
        .await
        .0
        != 503
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the peer service never stopped"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    covered.extend(run(&stopped, stop_cases).await);

    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut missing = Vec::new();
    let doc: Value = serde_json::from_str(&ApiDoc::openapi().to_json().unwrap()).unwrap();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            for status in op["responses"].as_object().unwrap().keys() {
                let status: u16 = status.parse().unwrap();
                if status < 400 || covered.contains(&(method.clone(), path.clone(), status)) {
                    continue;
                }
                match ELSEWHERE
                    .iter()
                    .find(|e| (e.0, e.1, e.2) == (method, path, status))
                {
                    Some((_, _, _, at)) => {
                        let (file, func) = at.split_once("::").unwrap();
                        let text = std::fs::read_to_string(root.join(file)).unwrap();
                        assert!(text.contains(&format!("fn {func}(")), "{at} does not exist");
                    }
                    None => missing.push(format!("{method} {path} {status}")),
                }
            }
        }
    }
    assert!(
        missing.is_empty(),
        "documented errors no test shows: {missing:#?}"
    );
    for t in [on, off, stopped] {
        t.node.shutdown(Duration::from_secs(5)).await;
    }
}

fn decode<T: DeserializeOwned>(uri: &str, (status, v): (u16, Value)) -> T {
    assert_eq!(status, 200, "{uri}: {v}");
    serde_json::from_value(v.clone()).unwrap_or_else(|e| panic!("{uri}: {e} in {v}"))
}

/// The read routes answer in their declared types.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_routes_answer_in_their_declared_types() {
    let t = start(true).await;
    macro_rules! get {
        ($uri:expr, $ty:ty) => {{
            let r = call(&t, Method::GET, $uri, false, &[], None).await;
            decode::<$ty>($uri, r)
        }};
    }
    let status = get!("/status", api::node::Status);
    assert_eq!(status.peer_id, t.node.identity.peer_id().to_string());
    get!("/peers", api::peers::PeersResponse);
    let ann = get!("/announce", api::peers::Announcement);
    assert_eq!(ann.node_id, status.peer_id);
    get!("/pubkeys", api::node::PubKeys);
    get!("/reputation", api::market::ReputationResponse);
    get!("/radio", api::radio::RadioResponse);
    get!("/mesh", api::radio::MeshResponse);
    get!("/storage/status", api::storage::StorageStatus);
    get!("/storage/assets", api::storage::AssetList);
    let ledger = get!("/ledger/status", api::ledger::LedgerStatus);
    assert!(ledger.wallet.is_some(), "the wallet is on");
    get!("/ledger/blocks", api::ledger::BlockList);
    get!("/ledger/reputation", api::ledger::ReputationEntries);
    let bal = get!("/wallet/balance", api::ledger::Balance);
    assert_eq!(bal.balance, 1_000_000);
    let all = get!("/wallet/balances", api::ledger::Balances);
    assert_eq!(all.accounts.get(&status.peer_id), Some(&1_000_000));
    assert_eq!(all.supply, 1_000_000);
    get!("/wallet/txs", api::ledger::TxList);
    get!("/wallet/witness-records", api::ledger::WitnessRecords);
    get!("/quorum/items", api::ledger::QuorumItems);
    get!("/quorum/policy", api::ledger::QuorumPolicy);
    get!("/quorum/alerts", api::ledger::QuorumAlerts);
    let r = call(&t, Method::GET, "/receipts/export", true, &[], None).await;
    decode::<api::market::ExportResponse>("/receipts/export", r);

    // A transfer, and the views of it.
    let body = json!({"dst": "system", "amount": 10, "wait_ms": 5000}).to_string();
    let r = call(
        &t,
        Method::POST,
        "/wallet/tx",
        true,
        &[],
        Some(body.into_bytes()),
    )
    .await;
    let sent = decode::<api::ledger::SendResponse>("/wallet/tx", r);
    assert_eq!(sent.view.as_ref().map(|v| v.state.as_str()), Some("final"));
    let uri = format!("/wallet/tx/{}", sent.tx_id);
    get!(&uri, api::ledger::TxView);
    t.node.shutdown(Duration::from_secs(5)).await;
}

/// A page whose `Host` is not the node's (DNS rebinding) gets 421, whatever the route; the
/// data directory and the database are private to the node's user.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_hosts_get_421_and_the_data_dir_is_private() {
    let t = start(false).await;
    for host in [
        "attacker.example",
        "attacker.example:9000",
        "rebind.127.0.0.1.nip.io",
    ] {
        let h = [("host", host.to_owned())];
        for uri in ["/peers", "/wallet/balance", "/no/such/route"] {
            let (status, v) = call(&t, Method::GET, uri, false, &h, None).await;
            assert_eq!(
                (status, v["error"].as_str()),
                (421, Some("misdirected_request")),
                "{host} {uri}"
            );
        }
    }
    for host in [
        "localhost:9000",
        "127.0.0.1:4000",
        "[::1]:9000",
        "LOCALHOST",
        "192.168.1.5:9000",
    ] {
        let (status, _) = call(
            &t,
            Method::GET,
            "/status",
            false,
            &[("host", host.to_owned())],
            None,
        )
        .await;
        assert_eq!(status, 200, "{host}");
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let dir = t.node.data_dir.clone();
        let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join(crate::DB_FILE)), 0o600);
    }
    t.node.shutdown(Duration::from_secs(5)).await;
}

#[test]
fn broker_errors_have_their_documented_statuses() {
    use crate::market::broker::BrokerError as E;
    for (e, status, code) in [
        (E::NoHostsAvailable("x".into()), 503, "no_hosts"),
        (E::JobTimeout(5), 504, "job_timeout"),
        (E::AllHostsFailed(Vec::new()), 502, "all_hosts_failed"),
        (E::Disagreement(Vec::new()), 502, "disagreement"),
        (E::Overloaded, 429, "rate_limited"),
        (E::Invalid("x".into()), 400, "invalid_request"),
        (
            E::InsufficientFunds {
                needed: 2,
                available: 1,
            },
            402,
            "insufficient_funds",
        ),
    ] {
        let a = super::error::ApiError::from(e);
        assert_eq!((a.status.as_u16(), a.code), (status, code));
        if status == 429 || status == 503 {
            assert!(a.retry_after_s.is_some(), "{code}: Retry-After");
        }
    }
}

/// A full disk is 507, any other failure to write 503 (the full-disk path itself is
/// `store/src/lib.rs::a_full_disk_fails_writes_clearly_and_they_recover_when_space_returns`).
#[test]
fn store_errors_have_their_documented_statuses() {
    use crate::store::StoreError as E;
    for (e, status, code) in [
        (E::NoSpace("x".into()), 507, "insufficient_storage"),
        (E::Unavailable, 503, "storage_unavailable"),
        (E::Io("x".into()), 503, "storage_unavailable"),
    ] {
        let a = super::error::ApiError::from(e);
        assert_eq!((a.status.as_u16(), a.code), (status, code));
    }
}

#[test]
fn storage_errors_have_their_documented_statuses() {
    use crate::files::StorageError as E;
    let (asset, owner, me) = ("a".to_owned(), "o".to_owned(), "m".to_owned());
    for (e, status, code) in [
        (
            E::NotOwner {
                asset: asset.clone(),
                owner: owner.clone(),
                action: "share",
            },
            403,
            "not_owner",
        ),
        (E::NotShared { asset, owner, me }, 403, "not_shared"),
        (E::NotFound("a".into()), 404, "not_found"),
        (E::Invalid("a".into()), 400, "invalid_request"),
        (E::Conflict("a".into()), 409, "conflict"),
        (E::Busy("a".into()), 503, "busy"),
        (
            E::NotEnoughShards {
                segment: 0,
                found: 1,
                needed: 2,
                total: 3,
                corrupt: 0,
                unreachable: 2,
            },
            502,
            "not_enough_shards",
        ),
    ] {
        let a = super::error::ApiError::from(e);
        assert_eq!((a.status.as_u16(), a.code), (status, code));
    }
}

/// The page and its assets are served with their types and caching; `/events` starts with
/// `hello`, refuses a stream over the cap with `503 too_many_streams` and `Retry-After`, takes
/// one again once a stream closes, and ends every stream when the node stops.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_is_served_and_event_streams_are_capped() {
    use futures::StreamExt;
    let t = start(false).await;
    let get = |uri: &str| {
        let req = Request::get(uri).body(Body::empty()).unwrap();
        t.app.clone().oneshot(req)
    };
    let page = get("/").await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .contains("default-src 'none'"));
    let rev = super::dashboard::rev();
    let js = get(&format!("/ui/{rev}/app.js")).await.unwrap();
    assert_eq!(js.status(), 200);
    assert!(js.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/javascript"));
    assert!(js.headers()["cache-control"]
        .to_str()
        .unwrap()
        .contains("immutable"));
    let old = get("/ui/000000/app.js").await.unwrap();
    assert_eq!(old.headers()["cache-control"], "no-cache");

    let mut open = Vec::new();
    for _ in 0..super::events::MAX_STREAMS {
        let r = get("/events").await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["content-type"], "text/event-stream");
        open.push(r.into_body().into_data_stream());
    }
    let (status, v) = call(&t, Method::GET, "/events", false, &[], None).await;
    assert_eq!(
        (status, v["error"].as_str()),
        (503, Some("too_many_streams"))
    );
    let full = get("/events").await.unwrap();
    assert!(full.headers().contains_key("retry-after"));
    let first = open[0].next().await.unwrap().unwrap();
    let first = String::from_utf8_lossy(&first).into_owned();
    assert!(first.starts_with("event: hello\n"), "{first}");
    drop(open.remove(0));
    // The slot is free once the dropped stream's task notices; poll until it does.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let mut again = loop {
        let r = get("/events").await.unwrap();
        if r.status() == 200 {
            break r.into_body().into_data_stream();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the slot never came back"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let _hello = again.next().await.unwrap().unwrap();
    // Shutdown ends the streams, so they never hold up a graceful stop.
    t.node.cancel_token().cancel();
    let end = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(chunk) = again.next().await {
            if chunk.is_err() {
                break;
            }
        }
    })
    .await;
    assert!(end.is_ok(), "a stream outlived the node's shutdown");
}
