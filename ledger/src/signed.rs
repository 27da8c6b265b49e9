//! The signed envelope used by every signed record (receipts, blocks, transactions, witness
//! attestations).
//!
//! The signer serialises the body once to compact JSON (`serde_json::to_vec`) and ships those
//! bytes with an Ed25519 signature over the record kind's type tag followed by them (see
//! [`Domain`]). A verifier checks the signature over the tag and the shipped bytes and only
//! then decodes the bytes; it never re-encodes, so the signature does not depend on any
//! particular JSON encoder and any language's Ed25519 library can verify it.
//!
//! **Domain separation.** What is signed is `TAG || 0x0A || bytes`, where `TAG` names the kind
//! (`offgrid/receipt/v1`, `offgrid/tx/v1`, ...). Tags hold no newline and the bytes are JSON,
//! so the split is unambiguous, and a signature made for one kind never verifies as another,
//! even where one kind's JSON would decode as the other's body.
//!
//! Wire form (JSON): `{"signed": "<base64 body bytes>", "sig": "<hex 64 bytes>",
//! "pubkey": "<hex 32 bytes>"}`.

use std::{fmt, marker::PhantomData};

use ed25519_dalek::{verify_batch, Signature, Signer as _, SigningKey, VerifyingKey};
use serde::{de::DeserializeOwned, Deserialize, Deserializer, Serialize, Serializer};

use crate::{codec, peer_id::peer_id_from_pubkey};

/// Failure to build a [`Signed`] value.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    /// The body could not be serialised to JSON.
    #[error("cannot encode body: {0}")]
    Encode(#[from] serde_json::Error),
}

/// Failure to verify a [`Signed`] value.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// The public key is not a valid Ed25519 point.
    #[error("invalid public key")]
    BadPublicKey,
    /// The signature does not verify over the bytes with the public key.
    #[error("invalid signature")]
    BadSignature,
    /// The signature is valid but the bytes do not decode as the expected body.
    #[error("cannot decode signed body: {0}")]
    Decode(#[source] serde_json::Error),
    /// A Merkle inclusion proof is longer than the verifier accepts.
    #[error("inclusion proof too long")]
    ProofTooLong,
}

/// A kind of signed record. Its [`Domain::TAG`] leads what is signed, so no signature made
/// for one kind verifies as another.
pub trait Domain {
    /// The kind's type tag, e.g. `b"offgrid/receipt/v1"`: ASCII, without a newline, and
    /// distinct from every other kind's (the node's tests check the whole list).
    const TAG: &'static [u8];
}

/// The exact message an Ed25519 signature covers for a record of kind `tag` with body
/// `bytes`: `tag || 0x0A || bytes`.
pub fn signed_message(tag: &[u8], bytes: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(tag.len() + 1 + bytes.len());
    m.extend_from_slice(tag);
    m.push(b'\n');
    m.extend_from_slice(bytes);
    m
}

/// A body of type `T` serialised once, with an Ed25519 signature over those exact bytes and the
/// signer's public key.
pub struct Signed<T> {
    /// The compact JSON encoding of the body, exactly as signed.
    pub bytes: Vec<u8>,
    /// Ed25519 signature over [`signed_message`]`(T::TAG, bytes)`.
    pub sig: [u8; 64],
    /// The signer's Ed25519 public key.
    pub pubkey: [u8; 32],
    _body: PhantomData<fn() -> T>,
}

impl<T> Signed<T> {
    /// Assembles an envelope from its parts (e.g. read from storage). Nothing is checked until
    /// [`Signed::verify`].
    pub fn from_parts(bytes: Vec<u8>, sig: [u8; 64], pubkey: [u8; 32]) -> Self {
        Self {
            bytes,
            sig,
            pubkey,
            _body: PhantomData,
        }
    }

    /// BLAKE3 hash of the signed bytes: the identity of this record.
    pub fn hash(&self) -> [u8; 32] {
        *blake3::hash(&self.bytes).as_bytes()
    }

    /// Lowercase hex of [`Signed::hash`], the id used for blocks and transactions.
    pub fn id(&self) -> String {
        hex::encode(self.hash())
    }

    /// The libp2p peer id text of the signer.
    pub fn signer_peer_id(&self) -> String {
        peer_id_from_pubkey(&self.pubkey)
    }
}

impl<T: Domain> Signed<T> {
    /// Checks the signature over the kind's tag and the bytes without decoding them.
    pub fn verify_signature(&self) -> Result<(), VerifyError> {
        let key = VerifyingKey::from_bytes(&self.pubkey).map_err(|_| VerifyError::BadPublicKey)?;
        let sig = Signature::from_bytes(&self.sig);
        key.verify_strict(&signed_message(T::TAG, &self.bytes), &sig)
            .map_err(|_| VerifyError::BadSignature)
    }
}

/// Checks the signatures of many envelopes at once; one result per envelope, in order.
///
/// `key_of` turns a public key into a [`VerifyingKey`] (callers with a fixed set of signers
/// pass a cache, so no key is decompressed twice); `None` means the key is unusable.
///
/// All signatures are first checked together with Ed25519 batch verification, which costs
/// about half as much per signature. Only if the batch fails is each one checked on its own
/// with [`VerifyingKey::verify_strict`], so one bad signature cannot hide or spoil the good
/// ones. Batch verification never accepts a signature made without the signer's secret key;
/// where it is more lenient than `verify_strict` (a signature deliberately made with a
/// small-order nonce point) the signature was still made by the key's owner. Weak
/// (small-order) keys are refused up front, as `verify_strict` refuses them.
pub fn verify_signatures<T: Domain>(
    items: &[&Signed<T>],
    key_of: impl FnMut(&[u8; 32]) -> Option<VerifyingKey>,
) -> Vec<Result<(), VerifyError>> {
    let messages: Vec<Vec<u8>> = items
        .iter()
        .map(|s| signed_message(T::TAG, &s.bytes))
        .collect();
    let raw: Vec<(&[u8], &[u8; 64], &[u8; 32])> = items
        .iter()
        .zip(&messages)
        .map(|(s, m)| (m.as_slice(), &s.sig, &s.pubkey))
        .collect();
    verify_messages(&raw, key_of)
}

/// [`verify_signatures`] over bare `(message, signature, public key)` triples, for signatures
/// that are not over a [`Signed`] body (e.g. witness attestation roots).
pub fn verify_messages(
    items: &[(&[u8], &[u8; 64], &[u8; 32])],
    mut key_of: impl FnMut(&[u8; 32]) -> Option<VerifyingKey>,
) -> Vec<Result<(), VerifyError>> {
    let mut results: Vec<Result<(), VerifyError>> = Vec::with_capacity(items.len());
    let mut idx = Vec::with_capacity(items.len());
    let mut msgs: Vec<&[u8]> = Vec::with_capacity(items.len());
    let mut sigs = Vec::with_capacity(items.len());
    let mut keys = Vec::with_capacity(items.len());
    for (i, (msg, sig, pubkey)) in items.iter().enumerate() {
        match key_of(pubkey) {
            Some(k) if !k.is_weak() => {
                results.push(Ok(()));
                idx.push(i);
                msgs.push(msg);
                sigs.push(Signature::from_bytes(sig));
                keys.push(k);
            }
            Some(_) => results.push(Err(VerifyError::BadSignature)),
            None => results.push(Err(VerifyError::BadPublicKey)),
        }
    }
    let batch_ok = match msgs.len() {
        0 => true,
        // A batch of one costs more than a single check.
        1 => false,
        _ => verify_batch(&msgs, &sigs, &keys).is_ok(),
    };
    if !batch_ok {
        for (j, &i) in idx.iter().enumerate() {
            if keys[j].verify_strict(msgs[j], &sigs[j]).is_err() {
                results[i] = Err(VerifyError::BadSignature);
            }
        }
    }
    results
}

impl<T: Serialize + Domain> Signed<T> {
    /// Serialises `body` to compact JSON and signs the kind's tag and the bytes with `key`.
    pub fn sign(key: &SigningKey, body: &T) -> Result<Self, SignError> {
        let bytes = serde_json::to_vec(body)?;
        let sig = key.sign(&signed_message(T::TAG, &bytes)).to_bytes();
        Ok(Self::from_parts(bytes, sig, key.verifying_key().to_bytes()))
    }
}

impl<T: DeserializeOwned + Domain> Signed<T> {
    /// Checks the signature over the tag and the bytes, then decodes them. The body is never re-encoded.
    pub fn verify(&self) -> Result<T, VerifyError> {
        self.verify_signature()?;
        serde_json::from_slice(&self.bytes).map_err(VerifyError::Decode)
    }
}

impl<T> Clone for Signed<T> {
    fn clone(&self) -> Self {
        Self::from_parts(self.bytes.clone(), self.sig, self.pubkey)
    }
}

impl<T> PartialEq for Signed<T> {
    fn eq(&self, other: &Self) -> bool {
        self.bytes == other.bytes && self.sig == other.sig && self.pubkey == other.pubkey
    }
}

impl<T> Eq for Signed<T> {}

impl<T> fmt::Debug for Signed<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Signed")
            .field("id", &self.id())
            .field("signer", &self.signer_peer_id())
            .field("len", &self.bytes.len())
            .finish()
    }
}

/// The JSON wire form of an envelope.
#[derive(Deserialize)]
struct Wire {
    #[serde(with = "codec::base64_bytes")]
    signed: Vec<u8>,
    #[serde(with = "codec::hex_bytes")]
    sig: [u8; 64],
    #[serde(with = "codec::hex_bytes")]
    pubkey: [u8; 32],
}

impl<T> Serialize for Signed<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct WireRef<'a> {
            #[serde(serialize_with = "codec::base64_bytes::serialize")]
            signed: &'a [u8],
            #[serde(with = "codec::hex_bytes")]
            sig: [u8; 64],
            #[serde(with = "codec::hex_bytes")]
            pubkey: [u8; 32],
        }
        WireRef {
            signed: &self.bytes,
            sig: self.sig,
            pubkey: self.pubkey,
        }
        .serialize(s)
    }
}

impl<'de, T> Deserialize<'de> for Signed<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let w = Wire::deserialize(d)?;
        Ok(Self::from_parts(w.signed, w.sig, w.pubkey))
    }
}

#[cfg(test)]
mod tests {
    use serde::{Deserialize, Serialize};

    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Body {
        a: u64,
        b: String,
    }

    impl Domain for Body {
        const TAG: &'static [u8] = b"offgrid/test-body/v1";
    }

    /// Another kind whose JSON is the same shape as [`Body`]'s.
    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Twin {
        a: u64,
        b: String,
    }

    impl Domain for Twin {
        const TAG: &'static [u8] = b"offgrid/test-twin/v1";
    }

    impl Domain for String {
        const TAG: &'static [u8] = b"offgrid/test-string/v1";
    }

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    #[test]
    fn sign_verify_round_trip_through_json() {
        let body = Body {
            a: 7,
            b: "x".into(),
        };
        let s = Signed::sign(&key(1), &body).unwrap();
        assert_eq!(s.bytes, br#"{"a":7,"b":"x"}"#);
        let json = serde_json::to_value(&s).unwrap();
        let obj = json.as_object().unwrap();
        assert_eq!(obj.len(), 3);
        assert_eq!(obj["signed"], "eyJhIjo3LCJiIjoieCJ9");
        assert_eq!(obj["sig"].as_str().unwrap().len(), 128);
        assert_eq!(
            obj["pubkey"],
            hex::encode(key(1).verifying_key().as_bytes())
        );
        let back: Signed<Body> = serde_json::from_value(json).unwrap();
        assert_eq!(back, s);
        assert_eq!(back.verify().unwrap(), body);
        assert_eq!(back.hash(), *blake3::hash(br#"{"a":7,"b":"x"}"#).as_bytes());
        assert_eq!(back.signer_peer_id(), peer_id_from_pubkey(&s.pubkey));
    }

    #[test]
    fn verifies_shipped_bytes_without_reencoding() {
        // Bytes with whitespace and a different key order still verify and decode: the
        // verifier must use the shipped bytes, not a re-encoding.
        let bytes = br#"{ "b": "y",  "a": 1 }"#.to_vec();
        let k = key(2);
        let sig = k.sign(&signed_message(Body::TAG, &bytes)).to_bytes();
        let s = Signed::<Body>::from_parts(bytes, sig, k.verifying_key().to_bytes());
        assert_eq!(
            s.verify().unwrap(),
            Body {
                a: 1,
                b: "y".into()
            }
        );
    }

    #[test]
    fn tampering_is_detected() {
        let s = Signed::sign(
            &key(3),
            &Body {
                a: 1,
                b: "z".into(),
            },
        )
        .unwrap();
        let mut t = s.clone();
        t.bytes[5] ^= 1;
        assert!(matches!(t.verify(), Err(VerifyError::BadSignature)));
        let mut t = s.clone();
        t.sig[0] ^= 1;
        assert!(matches!(t.verify(), Err(VerifyError::BadSignature)));
        let mut t = s.clone();
        t.pubkey = key(4).verifying_key().to_bytes();
        assert!(matches!(t.verify(), Err(VerifyError::BadSignature)));
    }

    #[test]
    fn a_record_of_one_kind_never_verifies_as_another() {
        // The same JSON shape, decodable as either kind: only the tag tells them apart.
        let s = Signed::sign(
            &key(5),
            &Body {
                a: 1,
                b: "pay".into(),
            },
        )
        .unwrap();
        let twin = Signed::<Twin>::from_parts(s.bytes.clone(), s.sig, s.pubkey);
        assert!(matches!(twin.verify(), Err(VerifyError::BadSignature)));
        assert!(
            verify_signatures(&[&twin, &twin], |pk| VerifyingKey::from_bytes(pk).ok())
                .iter()
                .all(|r| matches!(r, Err(VerifyError::BadSignature)))
        );
        // A bare signature over the JSON (no tag) is refused too.
        let bare = key(5).sign(&s.bytes).to_bytes();
        let untagged = Signed::<Body>::from_parts(s.bytes.clone(), bare, s.pubkey);
        assert!(matches!(untagged.verify(), Err(VerifyError::BadSignature)));
        // The message is the tag, a newline, then the bytes.
        assert_eq!(
            signed_message(Body::TAG, br#"{"a":1}"#),
            b"offgrid/test-body/v1\n{\"a\":1}".to_vec()
        );
    }

    #[test]
    fn valid_signature_over_wrong_body_is_a_decode_error() {
        let s = Signed::sign(&key(5), &"just a string".to_owned()).unwrap();
        let wrong = Signed::<Body>::from_parts(
            s.bytes.clone(),
            key(5).sign(&signed_message(Body::TAG, &s.bytes)).to_bytes(),
            s.pubkey,
        );
        assert!(matches!(wrong.verify(), Err(VerifyError::Decode(_))));
    }

    fn body(i: u64) -> Body {
        Body {
            a: i,
            b: "batch".into(),
        }
    }

    fn own_key(s: &[u8; 32]) -> Option<VerifyingKey> {
        VerifyingKey::from_bytes(s).ok()
    }

    #[test]
    fn batch_check_accepts_a_good_batch() {
        let signed: Vec<Signed<Body>> = (0..20)
            .map(|i| Signed::sign(&key(i as u8), &body(i)).unwrap())
            .collect();
        let refs: Vec<&Signed<Body>> = signed.iter().collect();
        let r = verify_signatures(&refs, own_key);
        assert_eq!(r.len(), 20);
        assert!(r.iter().all(Result::is_ok));
        assert!(verify_signatures::<Body>(&[], own_key).is_empty());
        assert!(verify_signatures(&refs[..1], own_key)[0].is_ok());
    }

    #[test]
    fn batch_check_singles_out_each_bad_signature() {
        let mut signed: Vec<Signed<Body>> = (0..9)
            .map(|i| Signed::sign(&key(i as u8 + 1), &body(i)).unwrap())
            .collect();
        // A flipped byte in the body, a signature made by another key, a forged s.
        signed[2].bytes[3] ^= 1;
        signed[5].pubkey = key(99).verifying_key().to_bytes();
        signed[7].sig[40] ^= 0x10;
        // A small-order public key (the identity point) accepts forged signatures under a
        // lax check: it must be refused.
        let mut weak = [0u8; 32];
        weak[0] = 1;
        signed[8].pubkey = weak;
        let refs: Vec<&Signed<Body>> = signed.iter().collect();
        let r = verify_signatures(&refs, own_key);
        for (i, res) in r.iter().enumerate() {
            let bad = [2, 5, 7, 8].contains(&i);
            assert_eq!(res.is_err(), bad, "item {i}: {res:?}");
            // Same verdict as the one-by-one check.
            assert_eq!(signed[i].verify_signature().is_err(), bad, "item {i}");
        }
        // A key that is not a curve point.
        let mut t = signed[0].clone();
        t.pubkey = (2u8..)
            .map(|y| {
                let mut k = [0u8; 32];
                k[0] = y;
                k
            })
            .find(|k| VerifyingKey::from_bytes(k).is_err())
            .unwrap();
        let r = verify_signatures(&[&t, &signed[1]], own_key);
        assert!(matches!(r[0], Err(VerifyError::BadPublicKey)));
        assert!(r[1].is_ok());
        // The key lookup is what the caller says: an unknown signer is refused.
        let r = verify_signatures(&[&signed[0], &signed[1]], |_| None);
        assert!(r
            .iter()
            .all(|x| matches!(x, Err(VerifyError::BadPublicKey))));
    }

    #[test]
    fn malformed_wire_is_rejected() {
        let bad = r#"{"signed":"!!","sig":"00","pubkey":"00"}"#;
        assert!(serde_json::from_str::<Signed<Body>>(bad).is_err());
        let short_sig = format!(
            r#"{{"signed":"e30=","sig":"{}","pubkey":"{}"}}"#,
            "00".repeat(63),
            "00".repeat(32)
        );
        assert!(serde_json::from_str::<Signed<Body>>(&short_sig).is_err());
    }
}
