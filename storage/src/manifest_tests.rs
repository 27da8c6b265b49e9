use super::*;
use crate::crypto::wrap_key;

fn owner_key() -> SigningKey {
    SigningKey::from_bytes(&[42u8; 32])
}

fn sample(key: &SigningKey) -> Manifest {
    let pubkey = key.verifying_key().to_bytes();
    let hash = |i: u8| crate::shard_hash(&[i]);
    Manifest {
        version: MANIFEST_VERSION,
        asset_id: hex::encode(new_asset_id(&pubkey, 1_700_000_000_000)),
        owner: "12D3KooWOwner".into(),
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
                    hash: hash(i),
                    host: format!("12D3KooWHost{i}"),
                })
                .collect(),
        }],
        wrapped_keys: vec![wrap_key(&[7u8; 32], &[9u8; 32]).unwrap()],
        file_blake3: crate::shard_hash(b"file"),
        created_ms: 1_700_000_000_000,
        revision: 0,
        id_salt: None,
        expires_ms: None,
    }
}

fn resign_raw(key: &SigningKey, bytes: Vec<u8>) -> SignedManifest {
    SignedManifest {
        sig: key
            .sign(&crate::signed_message(
                crate::manifest::MANIFEST_TAG,
                &bytes,
            ))
            .to_bytes(),
        pubkey: key.verifying_key().to_bytes(),
        signed: bytes,
    }
}

#[test]
fn sign_verify_round_trip_through_json() {
    let key = owner_key();
    let manifest = sample(&key);
    let signed = SignedManifest::sign(&key, &manifest).unwrap();
    let json = serde_json::to_value(&signed).unwrap();
    let object = json.as_object().unwrap();
    assert_eq!(object.len(), 3);
    assert_eq!(object["sig"].as_str().unwrap().len(), 128);
    assert_eq!(object["pubkey"].as_str().unwrap(), manifest.owner_pubkey);
    let raw = BASE64.decode(object["signed"].as_str().unwrap()).unwrap();
    assert_eq!(
        raw,
        serde_json::to_vec(&manifest).unwrap(),
        "compact JSON is signed"
    );
    let back: SignedManifest = serde_json::from_value(json).unwrap();
    assert_eq!(back.verify().unwrap(), manifest);
}

#[test]
fn verification_uses_the_signed_bytes_as_they_are() {
    // Same manifest, different (pretty) encoding: still verifies, since nothing re-encodes.
    let key = owner_key();
    let manifest = sample(&key);
    let pretty = serde_json::to_vec_pretty(&manifest).unwrap();
    assert_eq!(resign_raw(&key, pretty).verify().unwrap(), manifest);
}

#[test]
fn tampering_and_foreign_signers_are_rejected() {
    let key = owner_key();
    let manifest = sample(&key);
    let signed = SignedManifest::sign(&key, &manifest).unwrap();

    let mut altered = signed.clone();
    let text = String::from_utf8(altered.signed.clone()).unwrap();
    altered.signed = text.replace("\"size\":1000", "\"size\":1001").into_bytes();
    assert_ne!(altered.signed, signed.signed);
    assert!(matches!(altered.verify(), Err(VerifyError::BadSignature)));

    let mut bad_sig = signed.clone();
    bad_sig.sig[0] ^= 1;
    assert!(matches!(bad_sig.verify(), Err(VerifyError::BadSignature)));

    // The owner's signature over the bare bytes (no type tag) is refused.
    let mut untagged = signed.clone();
    untagged.sig = key.sign(&signed.signed).to_bytes();
    assert!(matches!(untagged.verify(), Err(VerifyError::BadSignature)));

    // Mallory signs a manifest that claims the victim as owner.
    let mallory = SigningKey::from_bytes(&[1u8; 32]);
    assert!(matches!(
        SignedManifest::sign(&mallory, &manifest),
        Err(SignError::NotOwner { .. })
    ));
    let forged = resign_raw(&mallory, signed.signed.clone());
    let err = forged.verify().unwrap_err();
    assert!(matches!(err, VerifyError::NotSignedByOwner { .. }), "{err}");

    let garbage = resign_raw(&key, b"not json".to_vec());
    assert!(matches!(garbage.verify(), Err(VerifyError::Decode(_))));
}

#[test]
fn inconsistent_manifests_are_rejected_even_when_signed() {
    let key = owner_key();
    type Mutation = Box<dyn Fn(&mut Manifest)>;
    let cases: Vec<(&str, Mutation)> = vec![
        ("version", Box::new(|m| m.version = 2)),
        ("count", Box::new(|m| m.segment_count = 2)),
        ("order", Box::new(|m| m.segments[0].index = 1)),
        ("range", Box::new(|m| m.segments[0].shards[2].index = 3)),
        ("repeat", Box::new(|m| m.segments[0].shards[1].index = 0)),
        (
            "hash",
            Box::new(|m| m.segments[0].shards[0].hash = "../x".into()),
        ),
        ("asset", Box::new(|m| m.asset_id = "abcd".into())),
        (
            "scheme",
            Box::new(|m| m.scheme = Scheme::ReedSolomon { k: 3, n: 3 }),
        ),
    ];
    for (what, mutate) in cases {
        let mut manifest = sample(&key);
        mutate(&mut manifest);
        let signed = SignedManifest::sign(&key, &manifest).unwrap();
        assert!(
            matches!(signed.verify(), Err(VerifyError::Manifest(_))),
            "{what} accepted"
        );
    }
}

#[test]
fn asset_ids_are_unique_and_wrapped_keys_findable() {
    let key = owner_key();
    let pubkey = key.verifying_key().to_bytes();
    assert_ne!(new_asset_id(&pubkey, 5), new_asset_id(&pubkey, 5));
    let manifest = sample(&key);
    assert!(manifest.wrapped_key_for(&[9u8; 32]).is_some());
    assert!(manifest.wrapped_key_for(&[8u8; 32]).is_none());
    assert_eq!(manifest.asset_id_bytes().unwrap().len(), 32);
}

#[test]
fn a_bound_asset_id_names_its_owner_and_nothing_else_passes_as_it() {
    let key = owner_key();
    let pubkey = key.verifying_key().to_bytes();
    let mut m = sample(&key);
    let (id, salt) = new_bound_asset_id(&pubkey, m.created_ms);
    m.asset_id = hex::encode(id);
    m.id_salt = Some(hex::encode(salt));
    assert!(m.owner_bound());
    assert!(m.validate().is_ok());
    assert!(SignedManifest::sign(&key, &m).unwrap().verify().is_ok());

    // Another owner claiming the id with the same salt: the id does not recompute.
    let thief = SigningKey::from_bytes(&[7u8; 32]);
    let mut stolen = m.clone();
    stolen.owner_pubkey = hex::encode(thief.verifying_key().to_bytes());
    assert!(!stolen.owner_bound());
    assert!(matches!(stolen.validate(), Err(ManifestError::Invalid(_))));
    assert!(SignedManifest::sign(&thief, &stolen)
        .unwrap()
        .verify()
        .is_err());
    // A wrong salt, or another creation time, does not pass either.
    let mut bad = m.clone();
    bad.id_salt = Some(hex::encode([0u8; 16]));
    assert!(bad.validate().is_err());
    let mut bad = m.clone();
    bad.created_ms += 1;
    assert!(bad.validate().is_err());
    // The first format (no salt) still reads, but binds nothing.
    let legacy = sample(&key);
    assert!(legacy.validate().is_ok() && !legacy.owner_bound());
}
