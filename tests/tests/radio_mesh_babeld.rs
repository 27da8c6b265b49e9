//! Mesh metrics from a real Babel mesh: babeld runs in two network namespaces joined by a
//! veth pair, each announcing a /32 of its own; a node in the root namespace (with no mDNS:
//! nothing multicasts outside the namespaces) reads babeld's local control socket and must
//! serve the neighbour and the installed route at `GET /mesh` and through `offgrid mesh`.
//! Skips with a printed reason without babeld or without the right to create namespaces.

// A panic in a test is a failure with a message, which is what a test wants.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    process::{Command, Stdio},
    time::Duration,
};

use offgrid_e2e::{
    netns::{ip, VethPair},
    wait_until, TestNode,
};

/// A veth pair of namespaces with a babeld in each, each announcing a /32 of its own.
struct BabelPair {
    net: VethPair,
    dir: tempfile::TempDir,
}

impl BabelPair {
    fn create() -> Result<BabelPair, String> {
        let net = VethPair::create("bab", "10.78.0")?;
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let mut pair = BabelPair { net, dir };
        for i in 0..2 {
            let (ns, dev) = (pair.net.names[i].clone(), pair.net.devs[i].clone());
            ip(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("10.78.{}.1/32", i + 1),
                "dev",
                "lo",
            ])?;
            let d = pair.dir.path();
            let conf = d.join(format!("babeld-{i}.conf"));
            std::fs::write(
                &conf,
                format!(
                    "interface {dev} type wired hello-interval 1\n\
                     local-path {}\n\
                     redistribute local ip 10.78.{}.1/32 allow\n\
                     redistribute local deny\n",
                    d.join(format!("babeld-{i}.sock")).display(),
                    i + 1
                ),
            )
            .map_err(|e| e.to_string())?;
            let child = pair
                .net
                .command(i, "babeld")
                .arg("-c")
                .arg(&conf)
                .arg("-I")
                .arg(d.join(format!("babeld-{i}.pid")))
                .arg("-S")
                .arg(d.join(format!("babeld-{i}.state")))
                .arg("-L")
                .arg(d.join(format!("babeld-{i}.log")))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .map_err(|e| format!("babeld: {e}"))?;
            pair.net.adopt(child);
        }
        Ok(pair)
    }

    fn socket(&self, i: usize) -> std::path::PathBuf {
        self.dir.path().join(format!("babeld-{i}.sock"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn babeld_in_two_namespaces_feeds_real_neighbours_and_routes_to_get_mesh() {
    if Command::new("babeld").arg("-V").output().is_err() {
        eprintln!(
            "SKIPPED babeld_in_two_namespaces_…: babeld is not installed (apt-get install babeld)"
        );
        return;
    }
    let pair = match BabelPair::create() {
        Ok(p) => p,
        Err(why) => {
            eprintln!("SKIPPED babeld_in_two_namespaces_…: cannot build the namespaces: {why}");
            return;
        }
    };
    let cfg = format!(
        "[mesh]\nsource = \"babel\"\nbabel_socket = \"{}\"\npoll_interval_s = 1\n",
        pair.socket(1).display()
    );
    let node = TestNode::start_with(&[], &[], Some(&cfg)).await;
    let mesh = wait_until(
        Duration::from_secs(60),
        "babeld's neighbour and route at GET /mesh",
        || async {
            let m = node.get("/mesh").await;
            let ok = m["mesh"]["source"] == "babel"
                && m["mesh"]["neighbours"].as_u64()? >= 1
                && m["mesh"]["routes"].as_u64()? >= 1;
            ok.then_some(m)
        },
    )
    .await;
    assert_eq!(mesh["mesh"]["mesh_ok"], true, "{mesh}");
    let neighbour = &mesh["mesh"]["neighbour_list"][0];
    assert!(
        neighbour["address"]
            .as_str()
            .unwrap_or("")
            .starts_with("fe80::"),
        "{mesh}"
    );
    // One wired hop: metric 96 → path metric 96/1024; the mesh factor is a small bonus.
    let pm = mesh["mesh"]["path_metric"].as_f64().unwrap();
    assert!(pm > 0.0 && pm < 0.5, "{mesh}");
    assert!(mesh["mesh_factor"].as_f64().unwrap() < 1.05, "{mesh}");
    let cli = node.cli_json(&["mesh"]);
    assert_eq!(cli["mesh"]["source"], "babel", "{cli}");
}
