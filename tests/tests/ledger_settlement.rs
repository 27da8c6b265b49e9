//! Settlement and failover end to end: jobs run through the market, the requester's account
//! pays each receipt once (less the reserve), no money is created, and a stalled job moves
//! to the next host.

// Test support: a panic is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod ledger_common;

use std::{collections::BTreeMap, time::Duration};

use ledger_common::{balance, balances_agree, start_mesh, wait_connected, MeshOpts, GENESIS};
use offgrid_e2e::{wait_until, TestNode};

const T: Duration = Duration::from_secs(60);

/// Waits until `broker` lists `hosts` as active hosts.
async fn wait_hosts(broker: &TestNode, hosts: &[&TestNode]) {
    for h in hosts {
        wait_until(T, "the broker to see the host active", || async {
            broker
                .verified_peers()
                .iter()
                .any(|p| p["peer_id"] == h.peer_id.as_str() && p["active"] == true)
                .then_some(())
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_requester_pays_hosts_units_times_price_less_one_percent_exactly_once() {
    // No wallet in any config: one node makes the genesis, the two others join it by id.
    let mut opts = MeshOpts::wallet(3, 2.0);
    opts.witnesses = 0;
    opts.extra =
        "[ledger]\nauto_settle = false\nblock_interval_s = 3600\nsync_interval_s = 1\n".into();
    let nodes = start_mesh(opts).await;
    wait_connected(&nodes, 2).await;
    let broker = &nodes[0];
    let mut init = vec![
        "wallet".to_owned(),
        "init".into(),
        "--quorum".into(),
        "2".into(),
    ];
    for n in &nodes {
        init.extend(["--witness".into(), format!("{}=1", n.peer_id)]);
    }
    init.extend(["--alloc".into(), format!("{}={GENESIS}", broker.peer_id)]);
    let init: Vec<&str> = init.iter().map(String::as_str).collect();
    let g = broker.cli_json(&init);
    let genesis_id = g["genesis_id"].as_str().unwrap().to_owned();
    assert_eq!(
        g.as_object().unwrap().len(),
        1,
        "--json prints only the id: {g}"
    );
    for n in &nodes[1..] {
        let j = n.cli_json(&["wallet", "join", &genesis_id]);
        assert_eq!(j["genesis_id"], genesis_id.as_str(), "{j}");
    }
    assert_eq!(broker.cli_json(&["toggle", "off"])["active"], false);
    wait_hosts(broker, &[&nodes[1], &nodes[2]]).await;
    let accounts: Vec<&str> = nodes
        .iter()
        .map(|n| n.peer_id.as_str())
        .chain(["system"])
        .collect();
    let before = balances_agree(&nodes, &accounts).await;
    let supply = supply_of(broker).await;
    assert_eq!(
        before.iter().sum::<u64>(),
        supply,
        "genesis is all the money"
    );

    // Twenty jobs of several sizes; each receipt claims units × price / 10^6 from the broker.
    let mut owed: BTreeMap<String, u64> = BTreeMap::new();
    let mut job_ids = Vec::new();
    for size in ["1", "3", "2", "1", "5"].repeat(4) {
        let r = broker.cli_json(&["job", "run", "--type", "echo", "--size", size]);
        let receipt = &r["receipt"];
        let (units, price) = (
            receipt["units"].as_u64().unwrap(),
            receipt["price"].as_u64().unwrap(),
        );
        assert!(
            receipt["order"].is_object(),
            "the receipt embeds the order: {r}"
        );
        *owed
            .entry(r["host"].as_str().unwrap().to_owned())
            .or_default() += units * price / 1_000_000;
        job_ids.push(r["job_id"].as_str().unwrap().to_owned());
    }
    assert!(!owed.is_empty());

    // The first settle claims every receipt; hosts settling against one payer at once race
    // for its nonces, so a host settles again until its receipts are paid (each time only the
    // unpaid ones, at the payer's new nonces).
    let first: usize = nodes[1..]
        .iter()
        .map(|h| h.cli_json(&["settle"])["submitted"].as_u64().unwrap() as usize)
        .sum();
    assert_eq!(first, 20, "one settlement per receipt");
    let paid: u64 = owed.values().sum();
    let reserve: u64 = owed.values().map(|g| g / 100).sum();
    for (host, gross) in &owed {
        // units × price × 0.99, exactly: every claim here is a multiple of 100.
        let want = gross / 100 * 99;
        let h = nodes.iter().find(|n| &n.peer_id == host).unwrap();
        wait_until(T, "the host's pay to be final", || async {
            if balance(h, host).await == want {
                return Some(());
            }
            h.cli_json(&["settle"]);
            None
        })
        .await;
        for n in &nodes {
            wait_until(T, "the host's pay to be final everywhere", || async {
                (balance(n, host).await == want).then_some(())
            })
            .await;
        }
    }
    wait_until(T, "the reserve to reach system", || async {
        (balance(&nodes[2], "system").await == reserve).then_some(())
    })
    .await;
    wait_until(T, "the broker to have paid everything", || async {
        (balance(&nodes[1], &broker.peer_id).await == before[0] - paid).then_some(())
    })
    .await;

    // Settling again pays nothing more.
    for host in &nodes[1..] {
        let v = host.cli_json(&["settle"]);
        assert_eq!(v["submitted"], 0, "second settle paid again: {v}");
    }
    let after = balances_agree(&nodes, &accounts).await;
    for n in &nodes {
        assert_eq!(supply_of(n).await, supply, "settling created no money");
    }
    assert_eq!(after.iter().sum::<u64>(), supply);
    // `wallet balances` agrees everywhere, and sums to the supply.
    let all = broker.cli_json(&["wallet", "balances"]);
    assert_eq!(all["supply"], supply);
    let sum: u64 = all["accounts"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(sum, supply);
    for n in &nodes[1..] {
        assert_eq!(n.cli_json(&["wallet", "balances"]), all, "{}", n.peer_id);
    }
    let hosts_gain: u64 = after[1] + after[2] - before[1] - before[2];
    assert_eq!(
        before[0] - after[0],
        hosts_gain + after[3] - before[3],
        "the payer's loss is the hosts' gain plus system's"
    );

    // A host cannot spend what it has not got: a job it asks for is refused up front.
    let out = nodes[1].cli(&["job", "run", "--type", "echo", "--size", "1000000"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("insufficient_funds"), "{err}");

    // Every receipt is provable from any node, and the proof verifies in the CLI.
    for job in &job_ids {
        let p = nodes[0].cli_json(&["ledger", "prove", job]);
        assert_eq!(p["verified_locally"], true, "{p}");
        assert_eq!(p["verified"], true);
    }
}

async fn supply_of(n: &TestNode) -> u64 {
    let (_, v) = n
        .request(reqwest::Method::GET, "/wallet/balance", None, Vec::new())
        .await;
    v["supply"].as_u64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_job_is_reassigned_to_the_next_host() {
    let host_cfg = |program: &str, args: &str, price: &str| {
        format!(
            "[executors.slow]\nkind = \"exec\"\nprogram = \"{program}\"\nargs = [{args}]\ntimeout_s = 60\n\n[host.prices]\nslow = {price}\n"
        )
    };
    let opts = MeshOpts {
        nodes: 3,
        witnesses: 0,
        quorum: 0.0,
        extra: "[failover]\nstall_age_s = 1\ncooldown_s = 1\ncheck_interval_ms = 200\n".into(),
        per_node: vec![
            // The cheaper host wins the auction and then makes no progress.
            (1, host_cfg("/bin/sleep", "\"30\"", "0.001")),
            (2, host_cfg("/bin/cat", "", "0.002")),
        ],
        genesis: Vec::new(),
    };
    let nodes = start_mesh(opts).await;
    let broker = &nodes[0];
    wait_hosts(broker, &[&nodes[1], &nodes[2]]).await;
    let r = broker.cli_json(&["job", "run", "--type", "slow", "--timeout", "60"]);
    assert_eq!(r["host"], nodes[2].peer_id.as_str(), "{r}");
    let attempts = r["attempts"].as_array().unwrap();
    assert_eq!(attempts[0]["host"], nodes[1].peer_id.as_str());
    let why = attempts[0]["outcome"].as_str().unwrap();
    assert!(why.contains("requeued"), "{why}");
    let item = broker.cli_json(&["quorum", "show", "job", r["job_id"].as_str().unwrap()]);
    assert_eq!(item["reached"], true, "{item}");
    assert_eq!(item["acks"][0]["node"], nodes[2].peer_id.as_str());
    assert_eq!(item["progress"], 1.0);
}
