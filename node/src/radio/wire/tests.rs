use offgrid_ledger::receipt::verify_receipt;

use super::*;

fn run() -> RunRequest {
    RunRequest {
        job_id: "0b8f5a9e-3c1d-4e2f-9a7b-1c2d3e4f5a6b".into(),
        job_type: "echo".into(),
        units: 1_000,
        payload: r#"{"msg":"hi"}"#.into(),
        price: 1_000,
        deadline_ms: 1_000_030_000,
        order: None,
    }
}

fn signed_receipt(
    key: &ed25519_dalek::SigningKey,
    cids: Vec<String>,
) -> (ReceiptContext, SignedReceipt) {
    let host_key = key.verifying_key().to_bytes();
    let host_id = offgrid_ledger::peer_id::peer_id_from_pubkey(&host_key);
    let ctx = ReceiptContext {
        run: run(),
        broker_id: "12D3KooWBroker".into(),
        cluster_id: "offgrid-local".into(),
        host_id,
        host_key,
    };
    let mut body = build_body(
        &ctx,
        &ctx.run.payload,
        "offgrid-local",
        (1_000_000_000, 3, 2, 7),
    );
    body.cids = cids;
    (ctx, Signed::sign(key, &body).unwrap())
}

#[test]
fn requests_round_trip_and_uuids_take_16_bytes() {
    let now = 1_000_000_000;
    for req in [
        Request::Quote {
            job_type: "echo".into(),
            units: 250_000,
        },
        Request::Run(run()),
        Request::Run(RunRequest {
            job_id: "not-a-uuid".into(),
            ..run()
        }),
        Request::Progress {
            job_id: run().job_id,
        },
    ] {
        let b = encode_request(&req, now);
        assert_eq!(decode_request(&b, now).unwrap(), req);
    }
    assert_eq!(
        encode_request(&Request::Run(run()), now).len(),
        1 + 17 + 5 + 2 + 13 + 2 + 3
    );
}

#[test]
fn heartbeats_round_trip_in_a_few_bytes() {
    let poll = Request::Progress {
        job_id: run().job_id,
    };
    let b = encode_request(&poll, 0);
    assert_eq!(b.len(), 1 + 17, "type and a 16-byte UUID");
    for resp in [
        Response::Progress {
            running: true,
            elapsed_ms: 12_345,
            progress: 300,
        },
        Response::Progress {
            running: false,
            elapsed_ms: 0,
            progress: 0,
        },
    ] {
        let b = encode_response(&resp, &poll, 0);
        assert!(b.len() <= 8, "{} bytes", b.len());
        assert_eq!(decode_response(&b, None, 0).unwrap(), resp);
    }
    // A running flag other than 0 or 1 is refused, as is a truncated heartbeat.
    assert!(decode_response(&[0x16, 2, 0, 0], None, 0).is_err());
    assert_eq!(
        decode_response(&[0x16, 1], None, 0),
        Err(WireError::Truncated)
    );
}

#[test]
fn compact_done_rebuilds_a_receipt_that_verifies() {
    let key = ed25519_dalek::SigningKey::from_bytes(&[3; 32]);
    let (ctx, receipt) = signed_receipt(&key, Vec::new());
    let req = Request::Run(ctx.run.clone());
    let resp = Response::Done {
        output: ctx.run.payload.clone(),
        receipt: receipt.clone(),
    };
    let b = encode_response(&resp, &req, 0);
    // type, flags, 4 timing varints, cluster tag, signature: no output, no JSON.
    assert!(b.len() <= 2 + 5 + 1 + 1 + 1 + 2 + 64, "{} bytes", b.len());
    let back = decode_response(&b, Some(&ctx), 0).unwrap();
    let Response::Done {
        output,
        receipt: rebuilt,
    } = back
    else {
        panic!("not done")
    };
    assert_eq!(output, ctx.run.payload);
    assert_eq!(rebuilt.bytes, receipt.bytes);
    verify_receipt(&rebuilt).unwrap();
}

#[test]
fn a_receipt_that_cannot_be_rebuilt_travels_whole() {
    let key = ed25519_dalek::SigningKey::from_bytes(&[4; 32]);
    let (ctx, receipt) = signed_receipt(&key, vec!["cid-1".into()]);
    let req = Request::Run(ctx.run.clone());
    let resp = Response::Done {
        output: "other".into(),
        receipt: receipt.clone(),
    };
    let b = encode_response(&resp, &req, 0);
    let Response::Done {
        output,
        receipt: back,
    } = decode_response(&b, Some(&ctx), 0).unwrap()
    else {
        panic!("not done")
    };
    assert_eq!(output, "other");
    assert_eq!(back.bytes, receipt.bytes);
    verify_receipt(&back).unwrap();
}

#[test]
fn a_forged_compact_receipt_does_not_verify() {
    let key = ed25519_dalek::SigningKey::from_bytes(&[5; 32]);
    let (ctx, receipt) = signed_receipt(&key, Vec::new());
    let req = Request::Run(ctx.run.clone());
    let mut b = encode_response(
        &Response::Done {
            output: ctx.run.payload.clone(),
            receipt,
        },
        &req,
        0,
    );
    let n = b.len();
    b[n - 1] ^= 1;
    let Response::Done { receipt, .. } = decode_response(&b, Some(&ctx), 0).unwrap() else {
        panic!("not done")
    };
    assert!(verify_receipt(&receipt).is_err());
}

#[test]
fn other_responses_round_trip() {
    let req = Request::Quote {
        job_type: "echo".into(),
        units: 1,
    };
    for resp in [
        Response::Quote {
            price: 1_250,
            valid_until_ms: 5_000,
            capacity_left: 7,
        },
        Response::Declined {
            reason: "no".into(),
        },
        Response::Busy {
            retry_after_ms: 200,
        },
        Response::Failed {
            error: "boom".into(),
        },
    ] {
        let b = encode_response(&resp, &req, 0);
        assert_eq!(decode_response(&b, None, 0).unwrap(), resp);
    }
}

#[test]
fn decoders_never_panic_on_random_bytes() {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for _ in 0..100_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let len = (x % 96) as usize;
        let bytes: Vec<u8> = (0..len)
            .map(|i| (x >> (i % 8 * 8)) as u8 ^ i as u8)
            .collect();
        let _ = decode_request(&bytes, 0);
        let _ = decode_response(&bytes, None, 0);
    }
}
