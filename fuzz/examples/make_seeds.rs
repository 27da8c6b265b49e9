//! Writes the seed corpora `corpus/<target>/seed-*`: real encodings, made with the crates'
//! own encoders and the fuzz key, with each target's mode byte in front.
//!
//! `cargo run --example make_seeds` (from `fuzz/`); it overwrites the seeds in place.

use std::{fs, net::SocketAddr, path::Path};

use ed25519_dalek::SigningKey;
use libp2p::{identity::Keypair, request_response::Codec as _};
use offgrid_behaviours::{
    announce::{Announcement, Capacity},
    auction, capped_codec,
    ledger_sync::{self, CertifiedTx, TxGossip},
    shards::{self, Bytes, FetchedShard, ShardData},
};
use offgrid_fuzz::{key, peer, KEY_SEED};
use offgrid_ledger::{
    dag::new_block,
    payment::{self, OrderBody},
    receipt::{Metrics, Proofs, ReceiptBody, RECEIPT_VERSION},
    reputation::ReputationReport,
    Attestation, ReputationCrdt, Signed, SignedReceipt, Tx, TxBody, TxKind, WitnessBody,
};
use offgrid_storage::{
    manifest::{
        new_asset_id, Manifest, SegmentEntry, ShardEntry, SignedManifest, MANIFEST_VERSION,
    },
    shard_hash, wrap_key, Scheme,
};
use offgrid_transports::{
    beacon::{Beacon, BeaconAddr, Capabilities, Flags},
    ble::{build_advertisement, chunk::split_message, encode_name},
    frag::wire::Packet,
    kiss::codec::{encode_data, encode_frame},
};

fn write(target: &str, name: &str, mode: Option<u8>, bytes: &[u8]) {
    let dir = Path::new("corpus").join(target);
    fs::create_dir_all(&dir).expect("create corpus dir");
    let mut data = mode.map(|m| vec![m]).unwrap_or_default();
    data.extend_from_slice(bytes);
    fs::write(dir.join(format!("seed-{name}")), data).expect("write seed");
}

fn json<T: serde::Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).expect("encodes")
}

fn order(job: &str) -> (OrderBody, offgrid_ledger::PaymentOrder) {
    let body = OrderBody {
        domain: payment::ORDER_DOMAIN.into(),
        job_id: job.into(),
        payer: peer().into(),
        host: peer().into(),
        price: 30_000,
        max_units: 2_000_000,
        expires_ms: 10_000,
        created_ms: 500,
    };
    let signed = payment::sign_order(key(), &body).expect("signs");
    (body, signed)
}

fn receipt_body(job: &str, with_order: bool) -> ReceiptBody {
    let pubkey = key().verifying_key().to_bytes();
    ReceiptBody {
        version: RECEIPT_VERSION.into(),
        cluster_id: "c1".into(),
        job_id: job.into(),
        resource_type: "compute".into(),
        units: 1_000_000,
        metrics: Metrics {
            compute_tokens: 100_000,
            latency_ms: 1234,
            input_bytes: 10,
            output_bytes: 20,
        },
        proofs: Proofs {
            input_blake3: hex::encode(blake3::hash(b"in").as_bytes()),
            output_blake3: hex::encode(blake3::hash(b"out").as_bytes()),
        },
        cids: vec!["bafy".into()],
        node_id: peer().into(),
        host_pubkey: hex::encode(pubkey),
        broker_id: "broker".into(),
        started_at_ms: 1_000,
        finished_at_ms: 2_234,
        price: 30_000,
        order: with_order.then(|| order(job).1),
    }
}

fn receipt(job: &str) -> SignedReceipt {
    Signed::sign(key(), &receipt_body(job, true)).expect("signs")
}

fn transfer(nonce: u64) -> TxBody {
    TxBody {
        kind: TxKind::Transfer,
        src: peer().into(),
        dst: "system".into(),
        amount: 1_000,
        fee: 10,
        nonce,
        meta: Some("hello".into()),
        author: peer().into(),
        created_ms: 1,
        claim: None,
        reconfig: None,
    }
}

fn settle() -> TxBody {
    let r = receipt("job-s");
    let claim = payment::claim(&r).expect("a valid claim");
    TxBody {
        kind: TxKind::Settle,
        src: claim.payer,
        dst: claim.host,
        amount: claim.amount,
        fee: 0,
        nonce: 1,
        meta: Some(payment::order_meta(&claim.order_id)),
        author: peer().into(),
        created_ms: 1,
        claim: Some(r),
        reconfig: None,
    }
}

fn attestations(txs: &[Tx]) -> Vec<Attestation> {
    let bodies: Vec<WitnessBody> = txs
        .iter()
        .enumerate()
        .map(|(i, tx)| WitnessBody {
            tx_id: tx.id(),
            src: peer().into(),
            nonce: i as u64 + 1,
            witness: peer().into(),
            epoch: 0,
        })
        .collect();
    Attestation::sign_batch(key(), &bodies).expect("signs")
}

fn manifest() -> Manifest {
    let pubkey = key().verifying_key().to_bytes();
    Manifest {
        version: MANIFEST_VERSION,
        asset_id: hex::encode(new_asset_id(&pubkey, 1_700_000_000_000)),
        owner: peer().into(),
        owner_pubkey: hex::encode(pubkey),
        name: Some("photo.jpg".into()),
        size: 1000,
        scheme: Scheme::ReedSolomon { k: 2, n: 3 },
        shard_size: 4096,
        segment_count: 1,
        segments: vec![SegmentEntry {
            index: 0,
            cipher_len: 1040,
            shards: (0..3u8)
                .map(|i| ShardEntry {
                    index: u16::from(i),
                    hash: shard_hash(&[i]),
                    host: peer().into(),
                })
                .collect(),
        }],
        wrapped_keys: vec![wrap_key(&[7u8; 32], &[9u8; 32]).expect("wraps")],
        file_blake3: shard_hash(b"file"),
        created_ms: 1_700_000_000_000,
        revision: 1,
        id_salt: None,
        expires_ms: None,
    }
}

fn cbor_request<Req, Resp>(protocol: &libp2p::StreamProtocol, req: Req) -> Vec<u8>
where
    Req: Send + serde::Serialize + serde::de::DeserializeOwned,
    Resp: Send + serde::Serialize + serde::de::DeserializeOwned,
{
    let mut codec = capped_codec::<Req, Resp>(u64::MAX, u64::MAX);
    let mut out = futures::io::Cursor::new(Vec::new());
    futures::executor::block_on(codec.write_request(protocol, &mut out, req)).expect("encodes");
    out.into_inner()
}

fn cbor_response<Req, Resp>(protocol: &libp2p::StreamProtocol, resp: Resp) -> Vec<u8>
where
    Req: Send + serde::Serialize + serde::de::DeserializeOwned,
    Resp: Send + serde::Serialize + serde::de::DeserializeOwned,
{
    let mut codec = capped_codec::<Req, Resp>(u64::MAX, u64::MAX);
    let mut out = futures::io::Cursor::new(Vec::new());
    futures::executor::block_on(codec.write_response(protocol, &mut out, resp)).expect("encodes");
    out.into_inner()
}

fn beacon_frame() -> Vec<u8> {
    let addr: SocketAddr = "192.168.1.7:4001".parse().expect("addr");
    let addr6: SocketAddr = "[fe80::1]:4002".parse().expect("addr");
    Beacon::new(&key().verifying_key(), 300)
        .with_flags(Flags::ACTIVE)
        .with_capabilities(Capabilities::COMPUTE)
        .with_price(30)
        .with_addr(BeaconAddr::Tcp(addr))
        .with_addr(BeaconAddr::Quic(addr6))
        .encode_signed(key())
        .expect("encodes")
}

fn main() {
    let k: &SigningKey = key();

    // Receipts and payment orders.
    let r = receipt("job-1");
    write("receipt", "with-order", Some(0), &json(&r));
    write(
        "receipt",
        "body",
        Some(1),
        &json(&receipt_body("job-2", true)),
    );
    write(
        "receipt",
        "body-unpaid",
        Some(1),
        &json(&receipt_body("job-3", false)),
    );
    let (ob, o) = order("job-4");
    write("payment_order", "order", Some(0), &json(&o));
    write("payment_order", "body", Some(1), &json(&ob));

    // Transactions, gossip and attestations.
    let t1: Tx = Signed::sign(k, &transfer(1)).expect("signs");
    let t2: Tx = Signed::sign(k, &settle()).expect("signs");
    write("tx", "transfer", Some(0), &json(&t1));
    write("tx", "transfer-body", Some(1), &json(&transfer(1)));
    write("tx", "settle-body", Some(1), &json(&settle()));
    let atts = attestations(&[t1.clone(), t2.clone()]);
    let gossip = TxGossip {
        txs: vec![t1.clone(), t2.clone()],
        attests: atts.clone(),
        seq: 3,
    };
    write("tx", "gossip", Some(2), &json(&gossip));
    write("witness", "batched", Some(0), &json(&atts[0]));
    let wb = json(&WitnessBody {
        tx_id: t1.id(),
        src: peer().into(),
        nonce: 1,
        witness: peer().into(),
        epoch: 0,
    });
    let mut batched = vec![1u8, 1];
    batched.extend_from_slice(&[0xab; 32]);
    batched.extend_from_slice(&wb);
    write("witness", "made-batched", Some(1), &batched);
    write("witness", "made-v0", Some(2), &wb);

    // Blocks.
    let b0 = new_block(k, vec![], vec![receipt("job-5"), receipt("job-6")], 10).expect("block");
    let b1 = new_block(k, vec![b0.id()], vec![receipt("job-7")], 11).expect("block");
    write("block", "genesis", Some(0), &json(&b0));
    write("block", "child", Some(0), &json(&b1));
    write("block", "body", Some(1), &b0.bytes);

    // Reputation.
    let mut crdt = ReputationCrdt::new();
    crdt.record(peer(), "12D3KooWsubject", true);
    crdt.record(peer(), "12D3KooWother", false);
    let report = ReputationReport::sign(k, &crdt, 5).expect("signs");
    write("reputation", "report", Some(0), &json(&report));
    write("reputation", "body", Some(1), &report.bytes);

    // Announcements.
    let kp = Keypair::ed25519_from_bytes(KEY_SEED).expect("key");
    let ann = Announcement {
        node_id: kp.public().to_peer_id().to_string(),
        seq: 7,
        active: true,
        prices: [("compute".to_owned(), 30_000)].into(),
        job_types: vec!["echo".into()],
        min_oncall_percent: 20,
        burst_percent_max: 80,
        burst: 8,
        capacity: Capacity {
            cpu_cores: 4,
            storage_bytes: 1 << 30,
        },
        listen_addrs: vec!["/ip4/127.0.0.1/tcp/4001".into()],
        issued_at_ms: 1,
    };
    write(
        "announce",
        "wire",
        Some(0),
        &ann.sign(&kp).expect("signs").to_wire(),
    );
    write("announce", "body", Some(1), &json(&ann));

    // Request-response codecs.
    let p = &auction::PROTOCOL_NAME;
    let quote = auction::Request::Quote {
        job_type: "echo".into(),
        units: 250_000,
    };
    let run = auction::Request::Run(auction::RunRequest {
        job_id: "job-8".into(),
        job_type: "echo".into(),
        units: 250_000,
        payload: r#"{"prompt":"x"}"#.into(),
        price: 30_000,
        deadline_ms: 99,
        order: Some(order("job-8").1),
    });
    write(
        "auction_codec",
        "quote",
        Some(0),
        &cbor_request::<auction::Request, auction::Response>(p, quote),
    );
    write(
        "auction_codec",
        "run",
        Some(0),
        &cbor_request::<auction::Request, auction::Response>(p, run),
    );
    let done = auction::Response::Done {
        output: "ok".into(),
        receipt: receipt("job-8"),
    };
    let q = auction::Response::Quote {
        price: 1,
        valid_until_ms: 2,
        capacity_left: 3,
    };
    write(
        "auction_codec",
        "done",
        Some(1),
        &cbor_response::<auction::Request, auction::Response>(p, done),
    );
    write(
        "auction_codec",
        "quoted",
        Some(1),
        &cbor_response::<auction::Request, auction::Response>(p, q),
    );

    let p = &ledger_sync::PROTOCOL_NAME;
    write(
        "ledger_sync_codec",
        "tips",
        Some(0),
        &cbor_request::<ledger_sync::Request, ledger_sync::Response>(p, ledger_sync::Request::Tips),
    );
    let blocks = ledger_sync::Request::Blocks(vec![b0.id(), b1.id()]);
    write(
        "ledger_sync_codec",
        "blocks",
        Some(0),
        &cbor_request::<ledger_sync::Request, ledger_sync::Response>(p, blocks),
    );
    let page = ledger_sync::Request::FinalTxs {
        after: Some(t1.id()),
        limit: 64,
    };
    write(
        "ledger_sync_codec",
        "final-txs",
        Some(0),
        &cbor_request::<ledger_sync::Request, ledger_sync::Response>(p, page),
    );
    let answer = ledger_sync::Response::Blocks(vec![b0.clone(), b1.clone()]);
    write(
        "ledger_sync_codec",
        "blocks-answer",
        Some(1),
        &cbor_response::<ledger_sync::Request, ledger_sync::Response>(p, answer),
    );
    let txs = ledger_sync::Response::FinalTxs {
        txs: vec![CertifiedTx {
            tx: t1.clone(),
            cert: vec![atts[0].clone()],
        }],
        next: None,
    };
    write(
        "ledger_sync_codec",
        "final-txs-answer",
        Some(1),
        &cbor_response::<ledger_sync::Request, ledger_sync::Response>(p, txs),
    );
    let tips = ledger_sync::Response::Tips {
        tips: vec![b1.id()],
        blocks: 2,
        final_txs: 1,
        final_digest: "00".repeat(32),
    };
    write(
        "ledger_sync_codec",
        "tips-answer",
        Some(1),
        &cbor_response::<ledger_sync::Request, ledger_sync::Response>(p, tips),
    );

    let p = &shards::PROTOCOL_NAME;
    let shard = vec![0x5au8; 300];
    let store = shards::Request::Store {
        hash: shard_hash(&shard),
        bytes: Bytes(shard.clone()),
    };
    write(
        "shards_codec",
        "store",
        Some(0),
        &cbor_request::<shards::Request, shards::Response>(p, store),
    );
    let batch = shards::Request::StoreBatch {
        shards: vec![
            ShardData {
                hash: shard_hash(b"a"),
                bytes: Bytes(b"a".to_vec()),
            },
            ShardData {
                hash: shard_hash(b"b"),
                bytes: Bytes(b"b".to_vec()),
            },
        ],
    };
    write(
        "shards_codec",
        "store-batch",
        Some(0),
        &cbor_request::<shards::Request, shards::Response>(p, batch),
    );
    let has = shards::Request::Has {
        hashes: vec![shard_hash(b"a"), shard_hash(b"b")],
    };
    write(
        "shards_codec",
        "has",
        Some(0),
        &cbor_request::<shards::Request, shards::Response>(p, has),
    );
    let sm = SignedManifest::sign(k, &manifest()).expect("signs");
    let keep = shards::Request::StoreManifest {
        asset_id: manifest().asset_id,
        manifest: Bytes(json(&sm)),
    };
    write(
        "shards_codec",
        "store-manifest",
        Some(0),
        &cbor_request::<shards::Request, shards::Response>(p, keep),
    );
    let sb = shards::Response::ShardBatch {
        shards: vec![
            FetchedShard::Shard {
                bytes: Bytes(shard.clone()),
            },
            FetchedShard::NotFound,
            FetchedShard::Busy { retry_after_ms: 5 },
        ],
    };
    write(
        "shards_codec",
        "shard-batch",
        Some(1),
        &cbor_response::<shards::Request, shards::Response>(p, sb),
    );
    let mf = shards::Response::Manifest {
        manifest: Bytes(json(&sm)),
    };
    write(
        "shards_codec",
        "manifest",
        Some(1),
        &cbor_response::<shards::Request, shards::Response>(p, mf),
    );

    // Manifests.
    write("manifest", "signed", Some(0), &json(&sm));
    write("manifest", "body", Some(1), &sm.signed);

    // Radio: beacons, KISS, ARQ packets, BLE.
    let frame = beacon_frame();
    write("beacon", "frame", Some(0), &frame);
    // The signed mode: flags, then the fields after the key, without the signature.
    let mut fields = vec![frame[2]];
    fields.extend_from_slice(&frame[35..frame.len() - 64]);
    write("beacon", "fields", Some(1), &fields);
    let mut stream = vec![0x11, 0x22];
    stream.extend(encode_data(&frame));
    stream.extend(encode_frame(3, 0x0f, &[0xc0, 0xdb, 0x01]));
    stream.extend([0xc0, 0xc0]);
    write("kiss", "frames", Some(220), &{
        let mut s = vec![7u8];
        s.extend(stream);
        s
    });
    for (name, p) in [
        (
            "data",
            Packet::Data {
                conn: 7,
                seq: 9,
                fin: false,
                payload: b"hello".to_vec(),
            },
        ),
        (
            "ack",
            Packet::Ack {
                conn: 7,
                cum: 9,
                sack: 0b101,
            },
        ),
        ("ping", Packet::Ping { conn: 7 }),
    ] {
        write("frag_packet", name, None, &p.encode());
    }
    let name = encode_name(b"\x01\x02endpoint").expect("name");
    let ad = build_advertisement(Some(&name), Some(&frame)).expect("ad");
    write("ble", "advertisement", Some(0), &ad);
    let mut frags = vec![40u8];
    for f in split_message(1, &frame, 40).expect("splits") {
        frags.push(f.len() as u8);
        frags.extend(f);
    }
    write("ble", "fragments", Some(1), &frags);
}
