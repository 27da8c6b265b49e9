//! Tests of the BLE name codec, advertisement parsing and ATT chunking.

use std::time::{Duration, Instant};

use proptest::prelude::*;

use super::{chunk::fragment_capacity, *};

#[test]
fn uuids_are_the_documented_ones() {
    assert_eq!(
        uuid_string(OFFGRID_SERVICE_UUID),
        "610a1dd6-e7ef-478d-b9ca-e526d2c4d549"
    );
    assert_eq!(
        uuid_string(OFFGRID_RX_CHAR_UUID),
        "08a07be6-7f83-4922-a3b6-18e0ac14c952"
    );
    assert_eq!(
        uuid_string(OFFGRID_TX_CHAR_UUID),
        "6eaa9c95-89b6-40ef-900c-36117faf3f0e"
    );
}

#[test]
fn name_codec_round_trips_and_rejects_bad_forms() {
    let ep = [0xfb, 0xff, 0x00, 0x3e, 0x3f, 0x01, 0x02, 0x03];
    let name = encode_name(&ep).unwrap();
    assert_eq!(name, "OFFGRID:-_8APj8BAgM");
    assert!(name.len() <= 29, "fits a legacy advertisement");
    assert_eq!(decode_name(&name).unwrap(), ep);
    assert_eq!(decode_name("offgrid:AAAA"), Err(NameError::NoPrefix));
    assert_eq!(decode_name("Pixel 7"), Err(NameError::NoPrefix));
    assert_eq!(decode_name("OFFGRID:"), Err(NameError::Empty));
    assert_eq!(decode_name("OFFGRID:AQ=="), Err(NameError::BadBase64)); // padding
    assert_eq!(decode_name("OFFGRID:+/8A"), Err(NameError::BadBase64)); // standard alphabet
    assert_eq!(decode_name("OFFGRID:AR"), Err(NameError::BadBase64)); // non-zero trailing bits
    assert_eq!(decode_name("OFFGRID:A"), Err(NameError::BadBase64)); // impossible length
    assert_eq!(decode_name("OFFGRID:AQ AQ"), Err(NameError::BadBase64));
    assert!(matches!(
        decode_name(&format!("OFFGRID:{}", "A".repeat(200))),
        Err(NameError::TooLong(_))
    ));
    assert_eq!(encode_name(&[]), Err(NameError::Empty));
    assert_eq!(encode_name(&[0; 65]), Err(NameError::TooLong(65)));
    assert!(encode_name(&[0; 64]).is_ok());
}

proptest! {
    #[test]
    fn name_codec_round_trips_any_endpoint(ep in prop::collection::vec(any::<u8>(), 1..=64)) {
        let name = encode_name(&ep).unwrap();
        prop_assert_eq!(decode_name(&name).unwrap(), ep);
    }

    #[test]
    fn name_decoder_never_panics(s in ".{0,120}") {
        let _ = decode_name(&s);
        let _ = decode_name(&format!("OFFGRID:{s}"));
    }

    #[test]
    fn advertisement_parser_never_panics(data in prop::collection::vec(any::<u8>(), 0..300)) {
        let _ = parse_advertisement(&data);
    }
}

#[test]
fn advertisement_with_beacon_and_name() {
    let beacon = vec![0x4f; 125];
    let name = encode_name(&[1, 2, 3, 4, 5, 6, 7, 8]).unwrap();
    let mut data = vec![0x02, 0x01, 0x06]; // flags, ignored
    data.extend(build_advertisement(Some(&name), Some(&beacon)).unwrap());
    data.extend([0x03, 0x03, 0x0f, 0x18]); // battery service, 16-bit
    data.extend([0x05, 0x16, 0x0f, 0x18, 0x64, 0x00]); // battery service data
    data.extend([0x00, 0x00, 0x00]); // padding
    let ad = parse_advertisement(&data).unwrap();
    assert!(ad.is_offgrid());
    assert_eq!(ad.offgrid_beacon(), Some(&beacon[..]));
    assert_eq!(ad.offgrid_endpoint(), Some(vec![1, 2, 3, 4, 5, 6, 7, 8]));
    assert!(ad.service_uuids.contains(&OFFGRID_SERVICE_UUID));
    assert!(ad
        .service_uuids
        .contains(&0x0000180f_0000_1000_8000_00805f9b34fb));
    assert_eq!(ad.service_data.len(), 2);

    let other = parse_advertisement(&[0x06, 0x09, b'P', b'h', b'o', b'n', b'e']).unwrap();
    assert!(!other.is_offgrid());
    assert_eq!(other.local_name.as_deref(), Some("Phone"));
    // Service data of another 128-bit UUID is not a beacon.
    let mut foreign = vec![17 + 3, 0x21];
    foreign.extend(1u128.to_le_bytes());
    foreign.extend([1, 2, 3]);
    assert_eq!(
        parse_advertisement(&foreign).unwrap().offgrid_beacon(),
        None
    );
    assert_eq!(
        offgrid_service_data([(OFFGRID_SERVICE_UUID, &[9u8][..])]),
        Some(&[9u8][..])
    );
}

#[test]
fn advertisement_errors() {
    assert_eq!(
        parse_advertisement(&[0x05, 0x09, b'a']),
        Err(AdError::Truncated)
    );
    assert_eq!(
        parse_advertisement(&[0x04, 0x07, 1, 2, 3]),
        Err(AdError::BadLength(0x07))
    );
    assert_eq!(
        parse_advertisement(&[0x03, 0x21, 1, 2]),
        Err(AdError::BadLength(0x21))
    );
    assert_eq!(
        build_advertisement(None, Some(&[0u8; 300])),
        Err(AdError::TooLarge)
    );
}

#[test]
fn gatt_airtime_model() {
    // 220 bytes: 13 fragments of 1.06 ms.
    assert_eq!(ble_airtime(220), Duration::from_micros(13 * 740));
    assert_eq!(ble_airtime(0), ble_airtime(1));
}

#[test]
fn chunking_at_minimum_mtu() {
    assert_eq!(fragment_capacity(23), Ok(18));
    assert_eq!(fragment_capacity(22), Err(ChunkError::MtuTooSmall(22)));
    let msg: Vec<u8> = (0..220u8).collect();
    let frags = split_message(5, &msg, 23).unwrap();
    assert_eq!(frags.len(), 13); // ceil(220 / 18)
    assert!(frags.iter().all(|f| f.len() <= 20));
    assert_eq!(frags[0][..2], [5, 0x80]);
    assert_eq!(frags[12][..2], [5, 12]);
    let mut r = Reassembler::new(1024, Duration::from_secs(5));
    let now = Instant::now();
    for f in &frags[..12] {
        assert_eq!(r.push(f, now), Ok(None));
    }
    assert_eq!(r.push(&frags[12], now), Ok(Some(msg)));
    assert_eq!(r.stats().messages, 1);
    assert_eq!(r.buffered(), 0);
    // Empty message: one empty fragment.
    let empty = split_message(1, &[], 23).unwrap();
    assert_eq!(empty, vec![vec![1, 0]]);
    assert_eq!(r.push(&empty[0], now), Ok(Some(vec![])));
    // 128 fragments at most.
    assert!(split_message(0, &[0; 18 * 128], 23).is_ok());
    assert!(matches!(
        split_message(0, &[0; 18 * 128 + 1], 23),
        Err(ChunkError::MessageTooLarge { .. })
    ));
}

#[test]
fn reassembly_discards_gaps_interruptions_oversize_and_stale() {
    let now = Instant::now();
    let mut c = Chunker::new(23).unwrap();
    let a = c.split(&[1u8; 40]).unwrap(); // 3 fragments, id 0
    let b = c.split(&[2u8; 40]).unwrap(); // id 1
    assert_eq!(b[0][0], 1);
    let mut r = Reassembler::new(100, Duration::from_secs(2));
    // Gap: fragment 1 lost.
    r.push(&a[0], now).unwrap();
    assert_eq!(
        r.push(&a[2], now),
        Err(ChunkError::OutOfSequence { id: 0, index: 2 })
    );
    assert_eq!(r.buffered(), 0);
    // Interruption: a new message restarts assembly.
    r.push(&a[0], now).unwrap();
    r.push(&b[0], now).unwrap();
    r.push(&b[1], now).unwrap();
    assert_eq!(r.push(&b[2], now), Ok(Some(vec![2u8; 40])));
    // Stale partial message.
    r.push(&a[0], now).unwrap();
    assert!(r.push(&a[1], now + Duration::from_secs(3)).is_err());
    assert_eq!(r.stats().timed_out, 1);
    r.push(&a[0], now).unwrap();
    r.expire(now + Duration::from_secs(3));
    assert_eq!(r.buffered(), 0);
    // Oversize.
    let big = split_message(9, &[0; 150], 23).unwrap();
    let mut res = Ok(None);
    for f in &big {
        res = r.push(f, now);
        if res.is_err() {
            break;
        }
    }
    assert_eq!(res, Err(ChunkError::Oversize(100)));
    assert!(r.buffered() <= 100);
    assert_eq!(r.push(&[1], now), Err(ChunkError::Runt));
    let s = r.stats();
    assert_eq!((s.messages, s.timed_out), (1, 2));
}

proptest! {
    #[test]
    fn chunking_round_trips(
        msgs in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..600), 1..6),
        mtu in 23u16..=517,
    ) {
        let mut c = Chunker::new(mtu).unwrap();
        let mut r = Reassembler::new(600, Duration::from_secs(1));
        let now = Instant::now();
        for m in &msgs {
            let frags = c.split(m).unwrap();
            prop_assert!(frags.iter().all(|f| f.len() <= usize::from(mtu) - 3));
            let mut out = None;
            for f in &frags {
                prop_assert!(out.is_none());
                out = r.push(f, now).unwrap();
            }
            prop_assert_eq!(out.as_ref(), Some(m));
        }
    }

    #[test]
    fn reassembler_never_panics_and_stays_bounded(
        frags in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..40), 0..200),
    ) {
        let mut r = Reassembler::new(256, Duration::from_secs(1));
        let now = Instant::now();
        for f in &frags {
            if let Ok(Some(m)) = r.push(f, now) {
                prop_assert!(m.len() <= 256);
            }
            prop_assert!(r.buffered() <= 256);
        }
    }
}
