//! Helpers shared by the fuzz targets in `fuzz_targets/`.
//!
//! Most peer input is signed, and a fuzzer cannot forge Ed25519 signatures, so a target
//! that only fed bytes to `verify` would never get past the signature check. Targets that
//! decode signed records therefore run in two modes chosen by the input's first byte:
//!
//! - **wire** ([`Mode::Wire`]): the rest is the record exactly as a peer sends it (JSON or
//!   CBOR); the target calls the node's decode and verify functions on it.
//! - **signed** ([`Mode::Signed`]): the rest is the *body* bytes of a record; the target
//!   signs them with the fixed [`key`] (as an honest but arbitrary peer would) and then
//!   calls the same verify functions, so everything behind the signature check is reached.
//!
//! The seeds in `corpus/<target>/` are real encodings made with [`key`], so the signer's
//! peer id and public key appear in them and the fuzzer can keep them consistent.

use std::sync::OnceLock;

use ed25519_dalek::{Signer as _, SigningKey};
use offgrid_ledger::{peer_id_from_pubkey, Signed};

/// Seed of the fixed signing key of the fuzz targets and their seed corpora.
pub const KEY_SEED: [u8; 32] = [7; 32];

/// The fixed signing key (see the crate docs).
pub fn key() -> &'static SigningKey {
    static KEY: OnceLock<SigningKey> = OnceLock::new();
    KEY.get_or_init(|| SigningKey::from_bytes(&KEY_SEED))
}

/// The libp2p peer id text of [`key`].
pub fn peer() -> &'static str {
    static PEER: OnceLock<String> = OnceLock::new();
    PEER.get_or_init(|| peer_id_from_pubkey(key().verifying_key().as_bytes()))
}

/// How a target reads its input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The input is a record as a peer sends it.
    Wire,
    /// The input is the body of a record, which the target signs with [`key`].
    Signed,
}

/// Splits off the mode byte: even is [`Mode::Wire`], odd [`Mode::Signed`].
pub fn mode(data: &[u8]) -> Option<(Mode, &[u8])> {
    let (&m, rest) = data.split_first()?;
    Some((if m & 1 == 0 { Mode::Wire } else { Mode::Signed }, rest))
}

/// An envelope over exactly `bytes`, signed with [`key`] under `T`'s type tag.
pub fn sign_bytes<T: offgrid_ledger::Domain>(bytes: &[u8]) -> Signed<T> {
    let k = key();
    Signed::from_parts(
        bytes.to_vec(),
        k.sign(&offgrid_ledger::signed_message(T::TAG, bytes))
            .to_bytes(),
        k.verifying_key().to_bytes(),
    )
}

/// Asserts that an envelope survives its JSON wire form unchanged.
pub fn assert_envelope_round_trip<T>(s: &Signed<T>) {
    let json = serde_json::to_vec(s).expect("an envelope always encodes");
    let back: Signed<T> = serde_json::from_slice(&json).expect("an encoded envelope decodes");
    assert!(back == *s, "envelope changed in a JSON round trip");
}

/// Asserts that `v` survives a JSON round trip unchanged.
pub fn assert_json_round_trip<T>(v: &T)
where
    T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let json = serde_json::to_vec(v).expect("a decoded value encodes");
    let back: T = serde_json::from_slice(&json).expect("an encoded value decodes");
    assert_eq!(&back, v, "value changed in a JSON round trip");
}

/// Decodes `bytes` as a request with `codec`, as the request-response handler does with a
/// peer's inbound stream; then, if it decoded, writes it back and checks that the
/// re-encoding decodes to the same value.
pub fn codec_request<C>(codec: &mut C, protocol: &C::Protocol, bytes: &[u8]) -> Option<C::Request>
where
    C: libp2p::request_response::Codec + Clone,
    C::Request: PartialEq + std::fmt::Debug + Clone,
{
    use futures::executor::block_on;
    let mut io = futures::io::Cursor::new(bytes);
    let req = block_on(codec.read_request(protocol, &mut io)).ok()?;
    let mut out = futures::io::Cursor::new(Vec::new());
    block_on(codec.write_request(protocol, &mut out, req.clone())).expect("a request encodes");
    let enc = out.into_inner();
    let mut io = futures::io::Cursor::new(enc.as_slice());
    match block_on(codec.read_request(protocol, &mut io)) {
        Ok(back) => assert_eq!(back, req, "request changed in a codec round trip"),
        Err(e) => panic!(
            "re-encoded request ({} bytes) does not decode: {e}",
            enc.len()
        ),
    }
    Some(req)
}

/// [`codec_request`] for responses.
pub fn codec_response<C>(codec: &mut C, protocol: &C::Protocol, bytes: &[u8]) -> Option<C::Response>
where
    C: libp2p::request_response::Codec + Clone,
    C::Response: PartialEq + std::fmt::Debug + Clone,
{
    use futures::executor::block_on;
    let mut io = futures::io::Cursor::new(bytes);
    let resp = block_on(codec.read_response(protocol, &mut io)).ok()?;
    let mut out = futures::io::Cursor::new(Vec::new());
    block_on(codec.write_response(protocol, &mut out, resp.clone())).expect("a response encodes");
    let enc = out.into_inner();
    let mut io = futures::io::Cursor::new(enc.as_slice());
    match block_on(codec.read_response(protocol, &mut io)) {
        Ok(back) => assert_eq!(back, resp, "response changed in a codec round trip"),
        Err(e) => panic!(
            "re-encoded response ({} bytes) does not decode: {e}",
            enc.len()
        ),
    }
    Some(resp)
}

/// Wallet parameters whose one witness, and one funded genesis account, is [`key`]: the
/// transactions and attestations the targets sign get past "not a witness" and "no funds".
pub fn wallet_params() -> offgrid_ledger::WalletParams {
    offgrid_ledger::WalletParams {
        witnesses: vec![(peer().to_owned(), 1000)],
        quorum_milli: 1000,
        genesis: vec![(peer().to_owned(), 1_000_000_000_000)],
        tx_fee_min: 0,
        tx_fee_max: 1_000,
        host_reserve_bps: 100,
    }
}
