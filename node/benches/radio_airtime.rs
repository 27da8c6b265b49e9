//! Bytes and airtime on air for the radio profile: a beacon, a secured session setup and
//! one auction round (quote + run + receipt), measured on the simulated LoRa medium (no
//! loss, so every frame counts once), beside Reticulum's figures measured with rns 1.5.7.
//!
//! Run: `cargo bench -p offgrid-node --bench radio_airtime`. Prints figures; asserts nothing.

// A benchmark that cannot set up its link has nothing to measure: failing loudly is right.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use ed25519_dalek::SigningKey;
use offgrid_behaviours::auction::{Request, Response, RunRequest};
use offgrid_ledger::{
    receipt::{Metrics, Proofs, ReceiptBody, RECEIPT_VERSION},
    signed::Signed,
};
use offgrid_node::radio::{arq_config, session::Session, wire};
use offgrid_transports::{
    beacon::{Beacon, BeaconAddr, Capabilities, Flags},
    demux::Demux,
    frag::ArqStream,
    lora::LoraParams,
    sim::{SimConfig, SimMedium},
    Link, LinkAddr,
};

#[derive(Clone, Copy, Default)]
struct Air {
    frames: u64,
    bytes: u64,
    airtime: Duration,
}

fn on_air(m: &SimMedium) -> Air {
    m.stats().values().fold(Air::default(), |a, s| Air {
        frames: a.frames + s.frames_sent,
        bytes: a.bytes + s.bytes_sent,
        airtime: a.airtime + s.airtime_sent,
    })
}

fn minus(a: Air, b: Air) -> Air {
    Air {
        frames: a.frames - b.frames,
        bytes: a.bytes - b.bytes,
        airtime: a.airtime - b.airtime,
    }
}

fn row(what: &str, a: Air, goal: &str, rns: &str) {
    println!(
        "{what:<34} {:>4} B {:>3} frames {:>8.0} ms   goal {goal:<8} Reticulum {rns}",
        a.bytes,
        a.frames,
        a.airtime.as_secs_f64() * 1000.0
    );
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(run());
}

async fn run() {
    let lora = LoraParams::new(7, 125_000);
    let medium = SimMedium::new(SimConfig::default().with_lora(lora));
    let (a_tx, a_rx) = medium.attach(LinkAddr::Id(1)).split();
    let (b_tx, b_rx) = medium.attach(LinkAddr::Id(2)).split();
    let (a_dx, _a_beacons, _a_accept) = Demux::spawn(a_rx, 8, 8);
    let (_b_dx, mut b_beacons, mut b_accept) = Demux::spawn(b_rx, 8, 8);
    let broker_key = SigningKey::from_bytes(&[1; 32]);
    let host_key = SigningKey::from_bytes(&[2; 32]);

    println!("Offgrid radio profile on the simulated LoRa medium, SF7/125 kHz CR 4/5 (no loss)\n");
    // 1. A beacon: active echo/compute host with a price and no IP address, and with two.
    let beacon = Beacon::new(&host_key.verifying_key(), 1_795_000_000)
        .with_flags(Flags::ACTIVE)
        .with_capabilities(Capabilities::ECHO | Capabilities::COMPUTE)
        .with_price(1_000);
    let frame = beacon.encode_signed(&host_key).expect("beacon");
    let before = on_air(&medium);
    b_tx.send(LinkAddr::Broadcast, &frame).await.expect("send");
    let _ = a_tx; // the broker side hears it
    let beacon_air = minus(on_air(&medium), before);
    let with_addrs = beacon
        .clone()
        .with_addr(BeaconAddr::Tcp("10.0.0.2:4747".parse().expect("addr")))
        .with_addr(BeaconAddr::Tcp("192.168.1.2:4747".parse().expect("addr")))
        .encode_signed(&host_key)
        .expect("beacon");
    let _ = b_beacons.try_recv();

    // 2. Secured session setup (HELLO + WELCOME with their ARQ acknowledgements).
    let before = on_air(&medium);
    let conn = a_dx.free_conn();
    let rx = a_dx.register(conn).expect("register");
    let stream = ArqStream::new(a_tx.clone(), rx, LinkAddr::Id(2), conn, arq_config());
    let host_side = {
        let host_key = host_key.clone();
        let b_tx = b_tx.clone();
        tokio::spawn(async move {
            let inbound = b_accept.recv().await.expect("inbound");
            let s = ArqStream::new(b_tx, inbound.rx, inbound.from, inbound.conn, arq_config());
            Session::accept(s, &host_key).await.expect("accept")
        })
    };
    let mut broker = Session::initiate(stream, &broker_key, host_key.verifying_key().to_bytes())
        .await
        .expect("initiate");
    let mut host = host_side.await.expect("join");
    // Let the last ACK go out before counting.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let setup_air = minus(on_air(&medium), before);

    // 3. One auction round: quote, run, done with the receipt.
    let broker_id =
        offgrid_ledger::peer_id::peer_id_from_pubkey(&broker_key.verifying_key().to_bytes());
    let host_id =
        offgrid_ledger::peer_id::peer_id_from_pubkey(&host_key.verifying_key().to_bytes());
    let now = offgrid_node::now_ms();
    let run = RunRequest {
        job_id: "0b8f5a9e-3c1d-4e2f-9a7b-1c2d3e4f5a6b".into(),
        job_type: "echo".into(),
        units: 1_000_000,
        payload: r#"{"msg":"hi"}"#.into(),
        price: 1_000,
        deadline_ms: now + 30_000,
    };
    let body = ReceiptBody {
        version: RECEIPT_VERSION.into(),
        cluster_id: "offgrid-local".into(),
        job_id: run.job_id.clone(),
        resource_type: run.job_type.clone(),
        units: run.units,
        metrics: Metrics {
            compute_tokens: 6,
            latency_ms: 1,
            input_bytes: 12,
            output_bytes: 12,
        },
        proofs: Proofs {
            input_blake3: blake3::hash(run.payload.as_bytes()).to_hex().to_string(),
            output_blake3: blake3::hash(run.payload.as_bytes()).to_hex().to_string(),
        },
        cids: Vec::new(),
        node_id: host_id.clone(),
        host_pubkey: hex::encode(host_key.verifying_key().to_bytes()),
        broker_id: broker_id.clone(),
        started_at_ms: now,
        finished_at_ms: now + 1,
        price: run.price,
    };
    let receipt = Signed::sign(&host_key, &body).expect("sign");
    let full_receipt_len = serde_json::to_vec(&receipt).map(|v| v.len()).unwrap_or(0);
    let before = on_air(&medium);
    let quote = Request::Quote {
        job_type: "echo".into(),
        units: run.units,
    };
    let runreq = Request::Run(run.clone());
    let answers = [
        Response::Quote {
            price: 1_000,
            valid_until_ms: now + 5_000,
            capacity_left: 8,
        },
        Response::Done {
            output: run.payload.clone(),
            receipt: receipt.clone(),
        },
    ];
    let host_task = tokio::spawn(async move {
        for (req, resp) in [quote, runreq].into_iter().zip(answers) {
            let m = host.recv().await.expect("recv").expect("open");
            let got = wire::decode_request(&m, offgrid_node::now_ms()).expect("request");
            assert_eq!(std::mem::discriminant(&got), std::mem::discriminant(&req));
            host.send(&wire::encode_response(&resp, &req, offgrid_node::now_ms()))
                .await
                .expect("send");
        }
        host
    });
    let mut sizes = Vec::new();
    for req in [
        Request::Quote {
            job_type: "echo".into(),
            units: run.units,
        },
        Request::Run(run.clone()),
    ] {
        let enc = wire::encode_request(&req, offgrid_node::now_ms());
        broker.send(&enc).await.expect("send");
        let m = broker.recv().await.expect("recv").expect("open");
        sizes.push((enc.len(), m.len()));
        let ctx = wire::ReceiptContext {
            run: run.clone(),
            broker_id: broker_id.clone(),
            cluster_id: "offgrid-local".into(),
            host_id: host_id.clone(),
            host_key: host_key.verifying_key().to_bytes(),
        };
        let resp = wire::decode_response(&m, Some(&ctx), offgrid_node::now_ms()).expect("response");
        if let Response::Done { receipt: r, .. } = resp {
            offgrid_ledger::receipt::verify_receipt(&r).expect("rebuilt receipt verifies");
            assert_eq!(r.bytes, receipt.bytes);
        }
    }
    let _host = host_task.await.expect("join");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let round_air = minus(on_air(&medium), before);

    row(
        "beacon (no IP address)",
        beacon_air,
        "≤ 160 B",
        "announce 171 B",
    );
    println!(
        "{:<34} {:>4} B",
        "beacon with two IPv4 addresses",
        with_addrs.len()
    );
    row(
        "secured session setup",
        setup_air,
        "≤ 400 B",
        "link setup 296 B in 3 packets",
    );
    row(
        "auction round: quote+run+receipt",
        round_air,
        "≤ 300 B",
        "request + response 250 B",
    );
    println!(
        "\n  messages (plaintext): quote {} B → {} B, run {} B → done {} B; the full JSON receipt \
         would be {full_receipt_len} B on its own",
        sizes[0].0, sizes[0].1, sizes[1].0, sizes[1].1
    );
    println!("  per message on air: +16 B AEAD tag, +1 B length, +7 B ARQ header, +11 B ARQ ACK\n");
    for (sf, bw) in [
        (7u8, 125_000u32),
        (9, 125_000),
        (11, 250_000),
        (12, 125_000),
    ] {
        let p = LoraParams::new(sf, bw);
        let t = |n: u64| p.airtime(n as usize).as_secs_f64() * 1000.0;
        println!(
            "SF{sf}/{} kHz: beacon {:.0} ms; a 220 B frame {:.0} ms",
            bw / 1000,
            t(beacon_air.bytes),
            t(220),
        );
    }
}
