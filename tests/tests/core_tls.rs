//! Core's own listener (`[core] listen` with TLS): it answers `/auction` over HTTPS with a
//! job run on a host of the mesh, serves none of the admin routes (`/peers` is 404), and a
//! client that does not trust the certificate, or speaks plain HTTP, gets nothing.

// Test support: a panic is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use offgrid_e2e::{core_headers, TestNode};
use serde_json::Value;

const KEY: &str = "core-tls-test-key";
const T: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_core_listener_answers_auction_over_tls_and_nothing_of_the_admin_api() {
    let certs = tempfile::tempdir().unwrap();
    if !offgrid_e2e::test_certificates(certs.path()) {
        println!("skipped: the openssl CLI cannot make test certificates");
        return;
    }
    let p = |f: &str| certs.path().join(f).display().to_string();
    let host = TestNode::start(&[]).await;
    let cfg = format!(
        "[core]\nlisten = \"127.0.0.1:0\"\ntls_cert = {:?}\ntls_key = {:?}\nhmac_keys = [{KEY:?}]\n",
        p("srv.pem"),
        p("srv.key")
    );
    let broker = TestNode::start_with(&["--bootstrap", &host.addr], &[], Some(&cfg)).await;
    let url = std::fs::read_to_string(broker.dir.join("core.url")).unwrap();
    let url = url.trim();
    assert!(url.starts_with("https://127.0.0.1:"), "{url}");
    broker
        .wait_peer(&host.peer_id, T, "the broker to see the host", |p| {
            p["active"] == true
        })
        .await;

    // A client that connects and never starts its handshake holds up no one.
    let port = url.rsplit(':').next().unwrap();
    let _silent = tokio::net::TcpStream::connect(format!("127.0.0.1:{port}"))
        .await
        .unwrap();

    let ca = reqwest::Certificate::from_pem(&std::fs::read(p("ca.pem")).unwrap()).unwrap();
    let trusting = reqwest::Client::builder()
        .use_rustls_tls()
        .add_root_certificate(ca)
        .build()
        .unwrap();
    let body = r#"{"job_id":"tls-1","type":"echo","payload":{"hello":"over tls"}}"#;
    let [(th, ts), (sh, sig)] = core_headers(KEY, body);
    // Well under the 10 s handshake deadline: served while the silent client waits.
    let r = trusting
        .post(format!("{url}/auction"))
        .timeout(Duration::from_secs(5))
        .header("content-type", "application/json")
        .header(th, ts)
        .header(sh, sig)
        .body(body)
        .send()
        .await
        .unwrap();
    let status = r.status();
    let v: Value = r.json().await.unwrap();
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["job_id"], "tls-1", "{v}");
    assert!(v.to_string().contains("over tls"), "{v}");

    // Only Core's routes: the admin API is not here, whatever the token.
    for path in ["/peers", "/announce", "/wallet/balances", "/storage/status"] {
        let r = trusting
            .get(format!("{url}{path}"))
            .bearer_auth(&broker.token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404, "{path}");
    }
    let r = trusting.get(format!("{url}/status")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    // An unsigned job is refused here as on the local API.
    let r = trusting
        .post(format!("{url}/auction"))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    // A client that does not trust the certificate, or speaks plain HTTP, gets no answer.
    let untrusting = reqwest::Client::builder().use_rustls_tls().build().unwrap();
    let e = untrusting
        .get(format!("{url}/status"))
        .send()
        .await
        .unwrap_err();
    assert!(e.is_connect(), "{e}");
    let plain = url.replace("https://", "http://");
    let r = reqwest::Client::new()
        .get(format!("{plain}/status"))
        .timeout(Duration::from_secs(15))
        .send()
        .await;
    assert!(r.is_err() || !r.unwrap().status().is_success());
    // The local API still answers on its own port.
    assert_eq!(
        broker.get("/status").await["peer_id"],
        broker.peer_id.as_str()
    );
}
