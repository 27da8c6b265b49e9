//! Authentication of Core's jobs.
//!
//! Three forms are accepted:
//! - **body HMAC** (Core's default): `signature` = lowercase hex HMAC-SHA256 over the
//!   canonical JSON of the body without `signature` ([`super::canonical`]);
//! - **body Ed25519** (design phase 2): the body also holds `"sig_alg": "ed25519"` and
//!   `"key_id"`; `signature` = hex Ed25519 signature over the same canonical JSON, checked
//!   against the configured public key with that id;
//! - **header HMAC**, for clients that cannot canonicalise JSON: `X-Offgrid-Timestamp`
//!   (Unix seconds) and `X-Offgrid-Signature` = hex HMAC-SHA256 over
//!   `timestamp + "." + raw body` (for a `GET`, over `timestamp + "." + path`).
//!
//! Several HMAC keys and Ed25519 keys may be valid at once, so keys rotate without
//! downtime. Comparisons are constant-time. Keys are never logged or echoed.

use std::collections::HashMap;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use super::canonical::Json;

/// Largest clock difference accepted, seconds.
pub const DEFAULT_MAX_SKEW_S: u64 = 300;

/// Keys that may sign jobs.
#[derive(Clone, Default)]
pub struct CoreKeys {
    hmac: Vec<Vec<u8>>,
    ed25519: HashMap<String, ed25519_dalek::VerifyingKey>,
    max_skew_s: u64,
}

impl std::fmt::Debug for CoreKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print secrets.
        f.debug_struct("CoreKeys")
            .field("hmac_keys", &self.hmac.len())
            .field("ed25519_keys", &self.ed25519.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// Why a job was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// The signature is missing, malformed or does not verify with any key.
    #[error("{0}")]
    InvalidSignature(String),
    /// The timestamp is missing or too far from the node's clock.
    #[error("{0}")]
    StaleTimestamp(String),
}

impl CoreKeys {
    /// Builds the key set. Ed25519 keys are `(id, hex public key)`.
    pub fn new(
        hmac: Vec<String>,
        ed25519: &[(String, String)],
        max_skew_s: u64,
    ) -> Result<Self, String> {
        let mut map = HashMap::new();
        for (id, hex_key) in ed25519 {
            let bytes: [u8; 32] = hex::decode(hex_key)
                .ok()
                .and_then(|b| b.try_into().ok())
                .ok_or_else(|| format!("ed25519 key {id:?} is not 32 hex bytes"))?;
            let key = ed25519_dalek::VerifyingKey::from_bytes(&bytes)
                .map_err(|_| format!("ed25519 key {id:?} is not a valid public key"))?;
            map.insert(id.clone(), key);
        }
        Ok(CoreKeys {
            hmac: hmac
                .into_iter()
                .filter(|k| !k.is_empty())
                .map(String::into_bytes)
                .collect(),
            ed25519: map,
            max_skew_s,
        })
    }

    /// Whether any key is configured.
    pub fn is_empty(&self) -> bool {
        self.hmac.is_empty() && self.ed25519.is_empty()
    }

    fn hmac_matches(&self, msg: &[u8], sig_hex: &str) -> bool {
        let Ok(sig) = hex::decode(sig_hex.trim()) else {
            return false;
        };
        self.hmac.iter().any(|k| {
            let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(k) else {
                return false;
            };
            mac.update(msg);
            // verify_slice compares in constant time.
            mac.verify_slice(&sig).is_ok()
        })
    }

    fn check_time(&self, ts: Option<i64>, now_s: i64) -> Result<(), AuthError> {
        let ts = ts.ok_or_else(|| {
            AuthError::StaleTimestamp("timestamp missing or not an integer".into())
        })?;
        let skew = now_s.abs_diff(ts);
        if skew > self.max_skew_s {
            return Err(AuthError::StaleTimestamp(format!(
                "timestamp is {skew} s from the node's clock (limit {} s)",
                self.max_skew_s
            )));
        }
        Ok(())
    }

    fn no_keys() -> AuthError {
        AuthError::InvalidSignature(
            "the node has no Core keys configured (set OFFGRID_AUTH_KEY or [core] keys)".into(),
        )
    }

    /// Verifies a body signed in the body (HMAC or Ed25519).
    pub fn verify_body(&self, body: &Json, now_s: i64) -> Result<(), AuthError> {
        if self.is_empty() {
            return Err(Self::no_keys());
        }
        let Json::Object(map) = body else {
            return Err(AuthError::InvalidSignature(
                "body is not a JSON object".into(),
            ));
        };
        let sig = body
            .str_field("signature")
            .ok_or_else(|| AuthError::InvalidSignature("signature missing".into()))?;
        let mut unsigned = map.clone();
        unsigned.remove("signature");
        let canonical = Json::Object(unsigned).canonical();
        let ok = match body.str_field("sig_alg") {
            Some("ed25519") => {
                let id = body.str_field("key_id").unwrap_or_default();
                let key = self
                    .ed25519
                    .get(id)
                    .ok_or_else(|| AuthError::InvalidSignature(format!("unknown key_id {id:?}")))?;
                let sig: Option<[u8; 64]> =
                    hex::decode(sig.trim()).ok().and_then(|b| b.try_into().ok());
                sig.is_some_and(|s| {
                    key.verify_strict(
                        canonical.as_bytes(),
                        &ed25519_dalek::Signature::from_bytes(&s),
                    )
                    .is_ok()
                })
            }
            Some("hmac-sha256") | None => self.hmac_matches(canonical.as_bytes(), sig),
            Some(other) => {
                return Err(AuthError::InvalidSignature(format!(
                    "unsupported sig_alg {other:?}"
                )))
            }
        };
        if !ok {
            return Err(AuthError::InvalidSignature(
                "signature does not verify".into(),
            ));
        }
        let ts = match map.get("timestamp") {
            Some(Json::Number(n)) => n
                .parse::<i64>()
                .ok()
                .or_else(|| n.parse::<f64>().ok().map(|f| f as i64)),
            _ => None,
        };
        self.check_time(ts, now_s)
    }

    /// Verifies the header form over `signed` (the raw body, or the path of a GET).
    pub fn verify_headers(
        &self,
        ts: &str,
        sig: &str,
        signed: &[u8],
        now_s: i64,
    ) -> Result<(), AuthError> {
        if self.hmac.is_empty() {
            return Err(Self::no_keys());
        }
        let mut msg = Vec::with_capacity(ts.len() + 1 + signed.len());
        msg.extend_from_slice(ts.trim().as_bytes());
        msg.push(b'.');
        msg.extend_from_slice(signed);
        if !self.hmac_matches(&msg, sig) {
            return Err(AuthError::InvalidSignature(
                "signature does not verify".into(),
            ));
        }
        self.check_time(ts.trim().parse().ok(), now_s)
    }
}

/// HMAC-SHA256 hex of `msg` (for tests and clients).
pub fn hmac_hex(key: &[u8], msg: &[u8]) -> String {
    // new_from_slice accepts keys of any length for HMAC.
    match Hmac::<Sha256>::new_from_slice(key) {
        Ok(mut mac) => {
            mac.update(msg);
            hex::encode(mac.finalize().into_bytes())
        }
        Err(_) => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use ed25519_dalek::Signer;

    use super::*;
    use crate::http::core::canonical::parse;

    const NOW: i64 = 1_704_278_400;

    fn signed(key: &str, extra: &str, ts: i64) -> Json {
        let unsigned = format!(
            r#"{{"job_id":"j1","type":"echo","size":0.25,"timestamp":{ts},"payload":{{"p":"Test"}}{extra}}}"#
        );
        let canon = parse(unsigned.as_bytes()).unwrap().canonical();
        let sig = hmac_hex(key.as_bytes(), canon.as_bytes());
        parse(format!(r#"{{"signature":"{sig}",{}"#, &unsigned[1..]).as_bytes()).unwrap()
    }

    #[test]
    fn hmac_over_canonical_json_verifies_with_any_current_key() {
        let keys = CoreKeys::new(vec!["old".into(), "new".into()], &[], 300).unwrap();
        keys.verify_body(&signed("new", "", NOW), NOW).unwrap();
        keys.verify_body(&signed("old", "", NOW), NOW).unwrap();
        assert!(matches!(
            keys.verify_body(&signed("other", "", NOW), NOW),
            Err(AuthError::InvalidSignature(_))
        ));
    }

    #[test]
    fn python_signature_vector_verifies() {
        // python3 -c 'import json,hmac,hashlib; b={"job_id":"job-123","type":"compute","size":0.25,
        //   "timestamp":1704278400,"payload":{"prompt":"Test"}};
        //   print(hmac.new(b"shared-secret", json.dumps(b,sort_keys=True,separators=(",",":"),
        //   ensure_ascii=False).encode(), hashlib.sha256).hexdigest())'
        let body = r#"{"job_id": "job-123", "type": "compute", "size": 0.25, "timestamp": 1704278400,
            "payload": {"prompt": "Test"}, "signature": "PYSIG"}"#;
        let canon = r#"{"job_id":"job-123","payload":{"prompt":"Test"},"size":0.25,"timestamp":1704278400,"type":"compute"}"#;
        let sig = "2b0be0e3bbb0ddb780e7cc0c1b6c176fed678ce7c3d3674269f7de3e384f8990";
        assert_eq!(hmac_hex(b"shared-secret", canon.as_bytes()), sig);
        let keys = CoreKeys::new(vec!["shared-secret".into()], &[], 300).unwrap();
        keys.verify_body(&parse(body.replace("PYSIG", sig).as_bytes()).unwrap(), NOW)
            .unwrap();
    }

    #[test]
    fn timestamps_outside_the_window_are_stale() {
        let keys = CoreKeys::new(vec!["k".into()], &[], 300).unwrap();
        keys.verify_body(&signed("k", "", NOW - 300), NOW).unwrap();
        assert!(matches!(
            keys.verify_body(&signed("k", "", NOW - 301), NOW),
            Err(AuthError::StaleTimestamp(_))
        ));
        assert!(matches!(
            keys.verify_body(&signed("k", "", NOW + 301), NOW),
            Err(AuthError::StaleTimestamp(_))
        ));
    }

    #[test]
    fn ed25519_signed_jobs_verify_against_listed_keys_only() {
        let sk = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
        let keys = CoreKeys::new(
            vec![],
            &[("core-1".into(), hex::encode(sk.verifying_key().to_bytes()))],
            300,
        )
        .unwrap();
        let mk = |key_id: &str, signer: &ed25519_dalek::SigningKey| {
            let unsigned = format!(
                r#"{{"job_id":"j","type":"echo","timestamp":{NOW},"sig_alg":"ed25519","key_id":"{key_id}"}}"#
            );
            let canon = parse(unsigned.as_bytes()).unwrap().canonical();
            let sig = hex::encode(signer.sign(canon.as_bytes()).to_bytes());
            parse(format!(r#"{{"signature":"{sig}",{}"#, &unsigned[1..]).as_bytes()).unwrap()
        };
        keys.verify_body(&mk("core-1", &sk), NOW).unwrap();
        let other = ed25519_dalek::SigningKey::from_bytes(&[8; 32]);
        assert!(keys.verify_body(&mk("core-1", &other), NOW).is_err());
        let e = keys.verify_body(&mk("core-9", &sk), NOW).unwrap_err();
        assert!(e.to_string().contains("unknown key_id"), "{e}");
    }

    #[test]
    fn header_form_signs_timestamp_dot_raw_body() {
        let keys = CoreKeys::new(vec!["k".into()], &[], 300).unwrap();
        let body = br#"{"job_id":"x", "type":"echo"}"#;
        let ts = NOW.to_string();
        let sig = hmac_hex(
            b"k",
            format!("{ts}.{}", std::str::from_utf8(body).unwrap()).as_bytes(),
        );
        keys.verify_headers(&ts, &sig, body, NOW).unwrap();
        assert!(keys.verify_headers(&ts, &sig, b"{}", NOW).is_err());
        assert!(matches!(
            keys.verify_headers(
                &(NOW - 400).to_string(),
                &hmac_hex(b"k", format!("{}.{{}}", NOW - 400).as_bytes()),
                b"{}",
                NOW
            ),
            Err(AuthError::StaleTimestamp(_))
        ));
    }

    #[test]
    fn no_keys_refuses_everything() {
        let keys = CoreKeys::new(vec![], &[], 300).unwrap();
        assert!(keys
            .verify_body(&signed("k", "", NOW), NOW)
            .unwrap_err()
            .to_string()
            .contains("no Core keys"));
    }
}
