//! The cases of [`super`]: one request per documented error of every route.

use axum::http::Method;
use serde_json::json;

use super::{case, core_case, now_s, reader, Case, ASSET, BODY_LIMIT};

/// The cases a node without peers can produce (with its wallet on when `wallet`).
pub(super) fn cases(wallet: bool) -> Vec<Case> {
    use Method as M;
    let big = vec![b' '; BODY_LIMIT + 1];
    let job = |id: &str, ty: &str| format!(r#"{{"job_id":"{id}","type":"{ty}","payload":{{}}}}"#);
    let mut c = vec![
        // Node.
        case(M::POST, "/announce", 400, "invalid_request").json(json!({"burst": "x"})),
        case(M::POST, "/announce", 401, "unauthorized")
            .no_auth()
            .json(json!({})),
        case(M::POST, "/announce", 413, "too_large").body(big.clone()),
        case(M::POST, "/toggle", 400, "invalid_request").json(json!({"on": true})),
        case(M::POST, "/toggle", 401, "unauthorized")
            .no_auth()
            .json(json!({"active": true})),
        // Dashboard.
        case(M::GET, "/ui/{rev}/{file}", 404, "not_found")
            .no_auth()
            .uri("/ui/0/no-such-file.js"),
        // Market.
        case(M::POST, "/market/run", 400, "invalid_request")
            .json(json!({"type": "echo", "timeout_s": 0})),
        case(M::POST, "/market/run", 401, "unauthorized")
            .no_auth()
            .json(json!({"type": "echo"})),
        case(M::POST, "/market/run", 503, "no_hosts").json(json!({"type": "echo"})),
        case(M::GET, "/market/quote", 400, "invalid_request")
            .uri("/market/quote?peer=nope&type=echo"),
        case(M::GET, "/market/quote", 502, "peer_unreachable").uri(format!(
            "/market/quote?peer={}&type=echo",
            libp2p::PeerId::random()
        )),
        case(M::GET, "/receipts/export", 401, "unauthorized").no_auth(),
        // Core.
        core_case("/auction", &job("a1", "echo"), now_s(), 503, "no_hosts"),
        core_case(
            "/auction",
            r#"{"job_id":"a2","type":"echo""#,
            now_s(),
            400,
            "invalid_request",
        ),
        core_case(
            "/auction",
            &job("a3", "echo"),
            now_s() - 3600,
            401,
            "stale_timestamp",
        ),
        case(M::POST, "/auction", 401, "invalid_signature")
            .no_auth()
            .body(job("a4", "echo"))
            .header("x-offgrid-timestamp", now_s().to_string())
            .header("x-offgrid-signature", "00".repeat(32)),
        case(M::POST, "/auction", 413, "too_large")
            .no_auth()
            .body(big.clone()),
        // `held` is a job the book has answered (see `start`): another job under its id is a
        // conflict on both routes.
        core_case("/jobs", &job("held", "echo"), now_s(), 409, "conflict"),
        core_case("/auction", &job("held", "echo"), now_s(), 409, "conflict"),
        core_case("/jobs", &job("j1", "echo"), now_s(), 202, ""),
        core_case("/jobs", r#"{"job_id":"#, now_s(), 400, "invalid_request"),
        case(M::POST, "/jobs", 401, "invalid_signature")
            .no_auth()
            .body(job("j2", "echo")),
        case(M::POST, "/jobs", 413, "too_large")
            .no_auth()
            .body(big.clone()),
        case(M::GET, "/jobs/{id}", 401, "invalid_signature")
            .uri("/jobs/j1")
            .no_auth(),
        case(M::GET, "/jobs/{id}", 404, "not_found").uri("/jobs/nope"),
        // Storage.
        case(M::POST, "/storage/put", 400, "invalid_request").json(json!({"path": "rel.bin"})),
        case(M::POST, "/storage/put", 401, "unauthorized")
            .no_auth()
            .json(json!({"path": "/x"})),
        case(M::POST, "/storage/put", 403, "path_not_allowed").json(json!({"path": "/etc/shadow"})),
        case(M::POST, "/storage/get", 403, "path_not_allowed")
            .json(json!({"asset": ASSET, "out": "/etc/cron.d/x"})),
        case(M::POST, "/storage/get", 400, "invalid_request")
            .json(json!({"asset": "xyz", "out": "/tmp/x"})),
        case(M::POST, "/storage/get", 401, "unauthorized")
            .no_auth()
            .json(json!({"asset": ASSET, "out": "/tmp/x"})),
        case(M::GET, "/storage/ops/{id}", 400, "invalid_request").uri("/storage/ops/x?wait_ms=no"),
        case(M::GET, "/storage/ops/{id}", 404, "not_found").uri("/storage/ops/nope"),
        case(M::DELETE, "/storage/ops/{id}", 401, "unauthorized")
            .uri("/storage/ops/x")
            .no_auth(),
        case(M::DELETE, "/storage/ops/{id}", 404, "not_found").uri("/storage/ops/nope"),
        case(M::GET, "/storage/assets/{id}/check", 400, "invalid_request")
            .uri("/storage/assets/xyz/check"),
        case(M::GET, "/storage/assets/{id}/check", 404, "not_found")
            .uri(format!("/storage/assets/{ASSET}/check")),
        case(M::POST, "/storage/share", 400, "invalid_request").json(json!({"asset": ASSET})),
        case(M::POST, "/storage/share", 401, "unauthorized")
            .no_auth()
            .json(json!({"asset": ASSET, "peer": "p"})),
        case(M::POST, "/storage/share", 404, "not_found")
            .json(json!({"asset": ASSET, "peer": reader()})),
        case(M::POST, "/storage/repair", 400, "invalid_request").json(json!({"asset": "xyz"})),
        case(M::POST, "/storage/repair", 401, "unauthorized")
            .no_auth()
            .json(json!({"asset": ASSET})),
        case(
            M::GET,
            "/storage/assets/{id}/content",
            400,
            "invalid_request",
        )
        .uri("/storage/assets/xyz/content"),
        case(M::GET, "/storage/assets/{id}/content", 401, "unauthorized")
            .uri(format!("/storage/assets/{ASSET}/content"))
            .no_auth(),
        case(M::GET, "/storage/assets/{id}/content", 404, "not_found")
            .uri(format!("/storage/assets/{ASSET}/content")),
        case(M::POST, "/storage/rm", 400, "invalid_request").json(json!({"asset": "xyz"})),
        case(M::POST, "/storage/rm", 401, "unauthorized")
            .no_auth()
            .json(json!({"asset": ASSET})),
        case(M::POST, "/storage/rm", 404, "not_found").json(json!({"asset": ASSET})),
        case(M::POST, "/storage/key", 400, "invalid_request").json(json!({"asset": "xyz"})),
        case(M::POST, "/storage/key", 401, "unauthorized")
            .no_auth()
            .json(json!({"asset": ASSET})),
        case(M::POST, "/storage/key", 404, "not_found").json(json!({"asset": ASSET})),
        case(M::POST, "/storage/policy/sign", 400, "invalid_request")
            .json(json!({"asset": ASSET, "license": "cc0", "mode": "zip"})),
        case(M::POST, "/storage/policy/sign", 401, "unauthorized")
            .no_auth()
            .json(json!({"asset": ASSET, "license": "cc0"})),
        case(M::POST, "/storage/policy/sign", 404, "not_found")
            .json(json!({"asset": ASSET, "license": "cc0"})),
        // Ledger and quorum.
        case(M::GET, "/ledger/blocks", 400, "invalid_request").uri("/ledger/blocks?limit=x"),
        case(M::POST, "/ledger/blocks", 400, "invalid_request").json(json!({"empty": true})),
        case(M::POST, "/ledger/blocks", 401, "unauthorized")
            .no_auth()
            .json(json!({})),
        case(M::GET, "/ledger/blocks/{id}", 404, "not_found").uri("/ledger/blocks/ab"),
        case(M::GET, "/ledger/prove/{receipt}", 404, "not_found").uri("/ledger/prove/ab"),
        case(M::POST, "/ledger/settle", 401, "unauthorized").no_auth(),
        case(M::POST, "/ledger/debug/bad-block", 401, "unauthorized").no_auth(),
        case(M::POST, "/ledger/debug/bad-block", 404, "not_found"),
        case(M::GET, "/quorum/items", 400, "invalid_request").uri("/quorum/items?kind=cake"),
        case(M::GET, "/quorum/items/{kind}/{id}", 400, "invalid_request")
            .uri("/quorum/items/cake/x"),
        case(M::GET, "/quorum/items/{kind}/{id}", 404, "not_found").uri("/quorum/items/job/nope"),
        // Wallet.
        case(M::GET, "/wallet/balance", 400, "invalid_request")
            .uri("/wallet/balance?account=a&account=b"),
        case(M::POST, "/wallet/tx", 401, "unauthorized")
            .no_auth()
            .json(json!({"dst": "system", "amount": 1})),
        case(M::POST, "/wallet/tx/submit", 400, "invalid_request").json(json!({"tx": {}})),
        case(M::POST, "/wallet/tx/submit", 401, "unauthorized")
            .no_auth()
            .json(json!({})),
        case(M::GET, "/wallet/tx/{id}", 400, "invalid_request").uri("/wallet/tx/ab?wait_ms=x"),
        case(M::GET, "/wallet/txs", 400, "invalid_request").uri("/wallet/txs?limit=-1"),
        case(M::POST, "/wallet/init", 400, "invalid_request").json(json!({"witnesses": []})),
        case(M::POST, "/wallet/init", 401, "unauthorized")
            .no_auth()
            .json(json!({"witnesses": [{"peer": reader()}]})),
        case(M::POST, "/wallet/join", 400, "invalid_request").json(json!({"genesis_id": "xyz"})),
        case(M::POST, "/wallet/join", 401, "unauthorized")
            .no_auth()
            .json(json!({"genesis_id": "ab".repeat(32)})),
        case(M::POST, "/wallet/witnesses", 400, "invalid_request")
            .json(json!({"op": "swap", "peer": reader()})),
        case(M::POST, "/wallet/witnesses", 401, "unauthorized")
            .no_auth()
            .json(json!({"op": "add", "peer": reader()})),
    ];
    if wallet {
        c.extend([
            case(M::POST, "/wallet/tx", 400, "invalid_request")
                .json(json!({"dst": "system", "amount": 0})),
            case(M::GET, "/wallet/tx/{id}", 404, "not_found").uri("/wallet/tx/ab"),
            case(M::POST, "/wallet/init", 409, "conflict")
                .json(json!({"witnesses": [{"peer": reader()}]})),
            case(M::POST, "/wallet/join", 409, "conflict")
                .json(json!({"genesis_id": "ab".repeat(32)})),
        ]);
    } else {
        let off = "unavailable";
        c.extend([
            case(M::POST, "/ledger/settle", 503, off),
            case(M::GET, "/wallet/balance", 503, off),
            case(M::GET, "/wallet/balances", 503, off),
            case(M::POST, "/wallet/tx", 503, off).json(json!({"dst": "system", "amount": 1})),
            case(M::GET, "/wallet/tx/{id}", 503, off).uri("/wallet/tx/ab"),
            case(M::GET, "/wallet/txs", 503, off),
            case(M::POST, "/wallet/witnesses", 503, off)
                .json(json!({"op": "add", "peer": reader()})),
            // No peer to serve it.
            case(M::POST, "/wallet/join", 504, "join_pending")
                .json(json!({"genesis_id": "ab".repeat(32), "wait_ms": 50})),
        ]);
        let tx =
            json!({"tx": {"signed": "e30=", "sig": "00".repeat(64), "pubkey": "11".repeat(32)}});
        c.push(case(M::POST, "/wallet/tx/submit", 503, off).json(tx));
    }
    c
}
