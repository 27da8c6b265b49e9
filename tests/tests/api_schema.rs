//! The local API against its own OpenAPI document, with schemathesis: generated requests to
//! every operation (with the wallet on) find no server error and no answer that breaks the
//! document (status, content type, body schema, headers). A node without peers answers the
//! routes that need another node with their documented network statuses; tests/schemathesis.toml
//! lists those. Skips with a reason when schemathesis is not installed (CI installs it).

// Test support: a panic is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

use offgrid_e2e::TestNode;

const CONFIG: &str = r#"
[api]
# Long polls end quickly, so generated wait_ms values do not stall the run.
max_wait_ms = 300
[core]
rate_limit_per_s = 1000000
rate_limit_burst = 1000000
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_server_error_and_no_answer_outside_the_document() {
    if Command::new("schemathesis")
        .arg("--version")
        .output()
        .is_err()
    {
        println!("skipped: schemathesis is not installed (pip install schemathesis)");
        return;
    }
    let node = TestNode::start_with(&[], &[], Some(CONFIG)).await;
    let me = node.peer_id.clone();
    node.cli_json(&[
        "wallet",
        "init",
        "--witness",
        &me,
        "--alloc",
        &format!("{me}=1000000000"),
    ]);
    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/schemathesis.toml");
    let out = Command::new("schemathesis")
        .args(["--config-file", config, "run"])
        .arg(format!("{}/openapi.json", node.api))
        .args(["-H", &format!("Authorization: Bearer {}", node.token)])
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,response_headers_conformance",
            "--max-examples",
            "20",
            "--request-timeout",
            "10",
            "--workers",
            "2",
            // Reproducible in CI; change it locally to explore.
            "--seed",
            "20261207",
            "--no-color",
        ])
        .env("NO_COLOR", "1")
        .output()
        .expect("run schemathesis");
    let text = String::from_utf8_lossy(&out.stdout);
    let summary: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("generated") || l.contains("failure") || l.contains("Tested"))
        .collect();
    println!("{}", summary.join("\n"));
    assert!(
        out.status.success(),
        "schemathesis found problems:\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The node is still up and answers.
    assert_eq!(node.get("/status").await["peer_id"], me.as_str());
}
