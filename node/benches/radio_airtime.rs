//! Bytes and airtime on air for the radio profile: a beacon, a secured session setup and
//! one auction round (quote + run + receipt), measured on the simulated LoRa medium (no
//! loss, so every frame counts once), beside Reticulum's figures measured with rns 1.5.7.
//!
//! Then the same on stock libp2p over [`RadioTransport`] (multistream-select + Noise XX +
//! Yamux, the auction protocol's request-response CBOR codec), with the same ARQ settings on
//! a fresh medium: the connection setup until the first request can be sent, a quote round
//! on the new connection and on a warm one, and the auction round. These figures are why
//! the node speaks the compact profile on radio (see `node/src/radio/mod.rs`).
//!
//! Run: `cargo bench -p offgrid-node --bench radio_airtime`. Prints figures; asserts nothing.

// A benchmark that cannot set up its link has nothing to measure: failing loudly is right.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use ed25519_dalek::SigningKey;
use futures::StreamExt;
use libp2p::{
    core::{transport::Transport as _, upgrade::Version},
    identity::Keypair,
    multiaddr::Protocol,
    noise, request_response,
    swarm::SwarmEvent,
    yamux, PeerId, Swarm, SwarmBuilder,
};
use offgrid_behaviours::auction::{self, Request, Response, RunRequest};
use offgrid_ledger::{
    receipt::{Metrics, Proofs, ReceiptBody, SignedReceipt, RECEIPT_VERSION},
    signed::Signed,
};
use offgrid_node::radio::{arq_config, session::Session, wire};
use offgrid_transports::{
    beacon::{Beacon, BeaconAddr, Capabilities, Flags},
    demux::Demux,
    frag::ArqStream,
    lora::LoraParams,
    p2p::{self, RadioAddr, RadioTransport},
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

fn plus(a: Air, b: Air) -> Air {
    Air {
        frames: a.frames + b.frames,
        bytes: a.bytes + b.bytes,
        airtime: a.airtime + b.airtime,
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

/// What the compact profile measured, and the messages the stock run repeats.
struct Compact {
    setup: Air,
    round: Air,
    run: RunRequest,
    receipt: SignedReceipt,
    now: u64,
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let compact = rt.block_on(run());
    rt.block_on(stock_libp2p(compact));
}

async fn run() -> Compact {
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
        order: None,
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
        order: None,
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
    Compact {
        setup: setup_air,
        round: round_air,
        run,
        receipt,
        now,
    }
}

/// What stock libp2p spent over the radio transport.
struct Stock {
    setup: Air,
    listener_up: bool,
    first_quote: Air,
    warm_quote: Air,
    auction: Air,
}

fn stock_swarm(medium: &SimMedium, station: u64, secret: [u8; 32]) -> Swarm<auction::Behaviour> {
    let key = Keypair::ed25519_from_bytes(secret).expect("key");
    SwarmBuilder::with_existing_identity(key)
        .with_tokio()
        .with_other_transport(|key| {
            let cfg = p2p::Config::default().with_arq(arq_config());
            let (radio, _beacons) =
                RadioTransport::new("lora0", medium.attach(LinkAddr::Id(station)), cfg)?;
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(
                radio
                    .upgrade(Version::V1Lazy)
                    .authenticate(noise::Config::new(key)?)
                    .multiplex(yamux::Config::default()),
            )
        })
        .expect("transport")
        .with_behaviour(|_| {
            auction::behaviour(
                Duration::from_secs(600),
                &offgrid_behaviours::Inbound::streams(8),
            )
        })
        .expect("behaviour")
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(3600)))
        .build()
}

/// Drives `swarm` until the medium has been silent for two seconds (the last ACKs are out).
async fn settle(medium: &SimMedium, swarm: &mut Swarm<auction::Behaviour>) {
    loop {
        let frames = on_air(medium).frames;
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            loop {
                swarm.select_next_some().await;
            }
        })
        .await;
        if on_air(medium).frames == frames {
            return;
        }
    }
}

/// Sends `req` to `host` and drives `swarm` until its answer.
async fn ask(swarm: &mut Swarm<auction::Behaviour>, host: PeerId, req: Request) -> Response {
    swarm.behaviour_mut().send_request(&host, req);
    loop {
        match swarm.select_next_some().await {
            SwarmEvent::Behaviour(request_response::Event::Message {
                message: request_response::Message::Response { response, .. },
                ..
            }) => return response,
            SwarmEvent::Behaviour(request_response::Event::OutboundFailure { error, .. }) => {
                panic!("request failed: {error}")
            }
            SwarmEvent::ConnectionClosed { cause, .. } => panic!("connection closed: {cause:?}"),
            _ => {}
        }
    }
}

async fn stock_libp2p(compact: Compact) {
    let medium = SimMedium::new(SimConfig::default().with_lora(LoraParams::new(7, 125_000)));
    let mut broker = stock_swarm(&medium, 1, [1; 32]);
    let mut host = stock_swarm(&medium, 2, [2; 32]);
    let host_id = *host.local_peer_id();
    let listen = RadioAddr::new("lora0", LinkAddr::Broadcast).expect("addr");
    host.listen_on(listen.to_multiaddr()).expect("listen");
    let host_addr = loop {
        if let SwarmEvent::NewListenAddr { address, .. } = host.select_next_some().await {
            break address;
        }
    };
    let quote_answer = Response::Quote {
        price: 1_000,
        valid_until_ms: compact.now + 5_000,
        capacity_left: 8,
    };
    let done = Response::Done {
        output: compact.run.payload.clone(),
        receipt: compact.receipt.clone(),
    };
    let (up_tx, mut up_rx) = tokio::sync::oneshot::channel();
    let host_task = tokio::spawn(async move {
        let mut up_tx = Some(up_tx);
        loop {
            match host.select_next_some().await {
                SwarmEvent::ConnectionEstablished { .. } => {
                    if let Some(t) = up_tx.take() {
                        let _ = t.send(());
                    }
                }
                SwarmEvent::Behaviour(request_response::Event::Message {
                    message:
                        request_response::Message::Request {
                            request, channel, ..
                        },
                    ..
                }) => {
                    let answer = match request {
                        Request::Run(_) => done.clone(),
                        _ => quote_answer.clone(),
                    };
                    let _ = host.behaviour_mut().send_response(channel, answer);
                }
                _ => {}
            }
        }
    });

    // 1. Connection setup, until the broker's Swarm reports the connection (the first request
    //    can be sent from then on).
    let before = on_air(&medium);
    broker
        .dial(host_addr.with(Protocol::P2p(host_id)))
        .expect("dial");
    loop {
        match broker.select_next_some().await {
            SwarmEvent::ConnectionEstablished { .. } => break,
            SwarmEvent::OutgoingConnectionError { error, .. } => panic!("dial failed: {error}"),
            _ => {}
        }
    }
    settle(&medium, &mut broker).await;
    let setup = minus(on_air(&medium), before);
    // With `V1Lazy` the dialer's Yamux proposal rides on its first data, so the host may only
    // see the connection complete with the first request.
    let listener_up = up_rx.try_recv().is_ok();

    // 2. A quote round on the new connection, then one on the warm connection.
    let quote = || Request::Quote {
        job_type: "echo".into(),
        units: compact.run.units,
    };
    let mut rounds = Vec::new();
    for _ in 0..2 {
        let before = on_air(&medium);
        let r = ask(&mut broker, host_id, quote()).await;
        assert!(matches!(r, Response::Quote { .. }));
        settle(&medium, &mut broker).await;
        rounds.push(minus(on_air(&medium), before));
    }

    // 3. The auction round the compact profile measures: quote, run, done with the receipt.
    let before = on_air(&medium);
    ask(&mut broker, host_id, quote()).await;
    let r = ask(&mut broker, host_id, Request::Run(compact.run.clone())).await;
    assert!(matches!(r, Response::Done { .. }));
    settle(&medium, &mut broker).await;
    let auction = minus(on_air(&medium), before);
    host_task.abort();
    print_stock(
        &compact,
        &Stock {
            setup,
            listener_up,
            first_quote: rounds[0],
            warm_quote: rounds[1],
            auction,
        },
    );
}

fn print_stock(compact: &Compact, stock: &Stock) {
    println!(
        "\nStock libp2p over offgrid_transports::p2p::RadioTransport (multistream-select + Noise XX \
         + Yamux,\nthe auction protocol's request-response CBOR), same medium and ARQ settings:\n"
    );
    let air = |a: Air| {
        format!(
            "{:>4} B {:>3} frames {:>6.0} ms",
            a.bytes,
            a.frames,
            a.airtime.as_secs_f64() * 1000.0
        )
    };
    println!(
        "{:<34} {:<27}   {:<27}   Reticulum",
        "", "stock libp2p", "compact profile"
    );
    let line = |what: &str, stock: Air, compact: Option<Air>, rns: &str| {
        println!(
            "{what:<34} {}   {:<27}   {rns}",
            air(stock),
            compact.map(air).unwrap_or_else(|| "-".into())
        )
    };
    line(
        "connection setup (to 1st request)",
        stock.setup,
        Some(compact.setup),
        "link setup 296 B",
    );
    line(
        "quote round on the new connection",
        stock.first_quote,
        None,
        "request + response 250 B",
    );
    line(
        "quote round (warm connection)",
        stock.warm_quote,
        None,
        "request + response 250 B",
    );
    line(
        "auction round: quote+run+receipt",
        stock.auction,
        Some(compact.round),
        "request + response 250 B",
    );
    line(
        "setup + auction round",
        plus(stock.setup, stock.auction),
        Some(plus(compact.setup, compact.round)),
        "546 B",
    );
    println!(
        "\n  the host's Swarm reported the connection {} the first request; every request opens a \
         Yamux stream\n  and negotiates the protocol name on it; Done carries the full signed \
         receipt, which the compact profile rebuilds",
        if stock.listener_up {
            "before"
        } else {
            "only with"
        }
    );
}
