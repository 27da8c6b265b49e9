//! Beacon codec and filter tests, including 100k-case fuzzing of the decoder.

use proptest::prelude::*;

use super::*;
use crate::lora::LoraParams;

fn key(n: u8) -> SigningKey {
    SigningKey::from_bytes(&[n; 32])
}

fn typical(k: &SigningKey, seq: u32) -> Beacon {
    Beacon::new(&k.verifying_key(), seq)
        .with_flags(Flags::ACTIVE)
        .with_capabilities(Capabilities::COMPUTE | Capabilities::STORAGE | Capabilities::ECHO)
        .with_price(30_000)
        .with_addr(BeaconAddr::Tcp("192.168.1.20:4001".parse().unwrap()))
        .with_addr(BeaconAddr::Quic("10.0.0.7:4001".parse().unwrap()))
}

#[test]
fn round_trip_and_size() {
    let k = key(1);
    // Largest sequence numbers take five bytes: the worst case for a typical node.
    let b = typical(&k, u32::MAX);
    let frame = b.encode_signed(&k).unwrap();
    println!(
        "beacon with 2 IPv4 addresses and a price: {} bytes; airtime at SF7/125 kHz {:?}, SF12/125 kHz {:?}",
        frame.len(),
        LoraParams::new(7, 125_000).airtime(frame.len()),
        LoraParams::new(12, 125_000).airtime(frame.len()),
    );
    assert_eq!(frame.len(), 125);
    assert_eq!(frame.len(), b.encoded_len());
    assert!(frame.len() <= 160);
    let d = Beacon::decode_verified(&frame).unwrap();
    assert_eq!(d, b);
    assert!(d.flags.contains(Flags::ACTIVE) && !d.flags.contains(Flags::RELAY));
    assert!(d.capabilities.contains(Capabilities::ECHO));
    assert_eq!(
        d.addrs[1].to_multiaddr(),
        "/ip4/10.0.0.7/udp/4001/quic-v1".to_owned()
    );
    // A Unix-time sequence number (2026) also takes five bytes.
    assert_eq!(varint_len(1_795_000_000), 5);

    let minimal = Beacon::new(&k.verifying_key(), 0);
    let frame = minimal.encode_signed(&k).unwrap();
    assert_eq!(frame.len(), MIN_BEACON_LEN);
    assert_eq!(Beacon::decode_verified(&frame).unwrap(), minimal);
}

#[test]
fn largest_beacon_fits_a_lora_frame() {
    let k = key(2);
    let mut b = Beacon::new(&k.verifying_key(), u32::MAX).with_price(u32::MAX);
    for i in 0..MAX_ADDRS as u16 {
        b = b.with_addr(BeaconAddr::Quic(SocketAddr::new(
            IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, i)),
            4001 + i,
        )));
    }
    let frame = b.encode_signed(&k).unwrap();
    assert_eq!(frame.len(), MAX_BEACON_LEN);
    assert_eq!(Beacon::decode_verified(&frame).unwrap(), b);
    let too_many = b.with_addr(BeaconAddr::Tcp("1.2.3.4:5".parse().unwrap()));
    assert_eq!(
        too_many.encode_signed(&k),
        Err(BeaconError::TooManyAddrs(5))
    );
}

#[test]
fn wrong_key_and_bad_signature_are_rejected() {
    let (k1, k2) = (key(1), key(2));
    assert_eq!(
        typical(&k1, 1).encode_signed(&k2),
        Err(BeaconError::KeyMismatch)
    );
    let mut frame = typical(&k1, 1).encode_signed(&k1).unwrap();
    let last = frame.len() - 1;
    frame[last] ^= 0x01;
    assert_eq!(
        Beacon::decode_verified(&frame),
        Err(BeaconError::BadSignature)
    );
    // A valid signature by another key over the same body: the embedded key rules.
    let mut forged = typical(&k1, 1).encode_signed(&k1).unwrap();
    let body_len = forged.len() - 64;
    let sig = k2.sign(&signed_message(&forged[..body_len]));
    forged[body_len..].copy_from_slice(&sig.to_bytes());
    assert_eq!(
        Beacon::decode_verified(&forged),
        Err(BeaconError::BadSignature)
    );
}

#[test]
fn every_single_bit_flip_is_rejected() {
    let k = key(3);
    let frame = typical(&k, 77).encode_signed(&k).unwrap();
    for pos in 0..frame.len() {
        for bit in 0..8 {
            let mut m = frame.clone();
            m[pos] ^= 1 << bit;
            assert!(
                Beacon::decode_verified(&m).is_err(),
                "flip of bit {bit} at byte {pos} accepted"
            );
        }
    }
    // Truncations and extensions too.
    for len in 0..frame.len() {
        assert!(Beacon::decode_verified(&frame[..len]).is_err());
    }
    let mut longer = frame.clone();
    longer.push(0);
    assert!(Beacon::decode_verified(&longer).is_err());
}

#[test]
fn structural_errors_are_specific() {
    let k = key(4);
    let frame = typical(&k, 5).encode_signed(&k).unwrap();
    let mut m = frame.clone();
    m[0] = 0x50;
    assert_eq!(
        Beacon::decode_verified(&m),
        Err(BeaconError::BadMagic(0x50))
    );
    let mut m = frame.clone();
    m[1] = 2;
    assert_eq!(
        Beacon::decode_verified(&m),
        Err(BeaconError::UnsupportedVersion(2))
    );
    assert_eq!(
        Beacon::decode_verified(&[MAGIC; 10]),
        Err(BeaconError::TooShort(10))
    );
    assert_eq!(
        Beacon::decode_verified(&[MAGIC; 300]),
        Err(BeaconError::TooLong(300))
    );
    // Offsets: flags 2, key 3..35, seq 35 (one byte: 5), caps 36..38, price 38..42, count 42.
    let mut m = frame.clone();
    m[42] = 9;
    assert_eq!(
        Beacon::decode_verified(&m),
        Err(BeaconError::TooManyAddrs(9))
    );
    let mut m = frame.clone();
    m[43] = 0x07;
    assert_eq!(
        Beacon::decode_verified(&m),
        Err(BeaconError::BadAddrType(7))
    );
    let mut m = frame.clone();
    m[42] = 1; // one address declared, two present
    assert_eq!(
        Beacon::decode_verified(&m),
        Err(BeaconError::TrailingBytes(7))
    );
    let mut m = frame;
    m[42] = 3; // three declared, two present
    assert_eq!(Beacon::decode_verified(&m), Err(BeaconError::Truncated));
}

#[test]
fn varints_are_minimal_u32() {
    for v in [0, 1, 127, 128, 16_383, 16_384, 1 << 28, u32::MAX] {
        let mut out = Vec::new();
        write_varint(&mut out, v);
        assert_eq!(out.len(), varint_len(v));
        let mut r = Reader { buf: &out, pos: 0 };
        assert_eq!(r.varint(), Ok(v));
    }
    for bad in [
        &[0x80, 0x00][..],                     // non-minimal zero
        &[0xff, 0xff, 0xff, 0xff, 0x10],       // 2^32
        &[0x80, 0x80, 0x80, 0x80, 0x80, 0x01], // six bytes
        &[0x80],                               // truncated
    ] {
        let mut r = Reader { buf: bad, pos: 0 };
        assert!(r.varint().is_err(), "{bad:?}");
    }
}

#[test]
fn filter_accepts_fresh_and_drops_replays() {
    let (k1, k2) = (key(1), key(2));
    let mut f = BeaconFilter::new(16);
    let b1 = typical(&k1, 10).encode_signed(&k1).unwrap();
    assert_eq!(f.accept(&b1).unwrap().seq, 10);
    assert_eq!(
        f.accept(&b1),
        Err(FilterError::Replayed {
            seq: 10,
            highest: 10
        })
    );
    let stale = typical(&k1, 9).encode_signed(&k1).unwrap();
    assert!(matches!(
        f.accept(&stale),
        Err(FilterError::Replayed { .. })
    ));
    let newer = typical(&k1, 11).encode_signed(&k1).unwrap();
    assert!(f.accept(&newer).is_ok());
    assert!(f
        .accept(&typical(&k2, 1).encode_signed(&k2).unwrap())
        .is_ok());
    assert!(matches!(f.accept(b"junk"), Err(FilterError::Malformed(_))));
    // A forged higher seq: fails verification and does not advance the key's sequence.
    let mut forged = typical(&k1, 50).encode_signed(&k1).unwrap();
    let last = forged.len() - 1;
    forged[last] ^= 0x80;
    assert!(matches!(
        f.accept(&forged),
        Err(FilterError::Invalid(BeaconError::BadSignature))
    ));
    assert_eq!(f.highest_seq(&k1.verifying_key().to_bytes()), Some(11));
    assert_eq!(
        f.stats(),
        FilterStats {
            accepted: 3,
            malformed: 1,
            invalid: 1,
            replayed: 2,
            evicted: 0
        }
    );
}

#[test]
fn filter_is_bounded_and_forgets_least_recent() {
    let mut f = BeaconFilter::new(3);
    let keys: Vec<SigningKey> = (1..=4).map(key).collect();
    for k in &keys[..3] {
        f.accept(&typical(k, 1).encode_signed(k).unwrap()).unwrap();
    }
    // Refresh key 1, so key 2 is now the least recently updated.
    f.accept(&typical(&keys[0], 2).encode_signed(&keys[0]).unwrap())
        .unwrap();
    f.accept(&typical(&keys[3], 1).encode_signed(&keys[3]).unwrap())
        .unwrap();
    assert_eq!(f.len(), 3);
    assert_eq!(f.stats().evicted, 1);
    let pk = |i: usize| keys[i].verifying_key().to_bytes();
    assert_eq!(f.highest_seq(&pk(1)), None);
    assert_eq!(f.highest_seq(&pk(0)), Some(2));
    assert_eq!(f.highest_seq(&pk(2)), Some(1));
    assert_eq!(f.highest_seq(&pk(3)), Some(1));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(100_000))]

    #[test]
    fn decoder_never_panics_on_random_bytes(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        prop_assert!(Beacon::decode_verified(&bytes).is_err());
    }

    #[test]
    fn decoder_never_panics_past_the_header(
        len in MIN_BEACON_LEN..=MAX_BEACON_LEN,
        seed in prop::collection::vec(any::<u8>(), MAX_BEACON_LEN),
        flags in any::<u8>(),
        count in 0u8..6,
    ) {
        // Valid magic, version and a plausible address count, so parsing goes deep.
        let mut bytes = seed[..len].to_vec();
        bytes[0] = MAGIC;
        bytes[1] = VERSION;
        bytes[2] = flags;
        bytes[35] &= 0x7f;
        let count_at = 38 + if flags & FLAG_HAS_PRICE != 0 { 4 } else { 0 };
        bytes[count_at] = count;
        prop_assert!(Beacon::decode_verified(&bytes).is_err());
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn mutated_valid_beacons_are_rejected(
        seq in any::<u32>(),
        pos in any::<prop::sample::Index>(),
        xor in 1u8..=255,
        extra in prop::collection::vec(any::<u8>(), 0..4),
    ) {
        let k = key(9);
        let frame = typical(&k, seq).encode_signed(&k).unwrap();
        prop_assert!(Beacon::decode_verified(&frame).is_ok());
        let mut m = frame.clone();
        m[pos.index(frame.len())] ^= xor;
        prop_assert!(Beacon::decode_verified(&m).is_err());
        let mut longer = frame;
        longer.extend_from_slice(&extra);
        prop_assert_eq!(Beacon::decode_verified(&longer).is_ok(), extra.is_empty());
    }
}
