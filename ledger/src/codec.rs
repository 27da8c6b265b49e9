//! Serde helpers for the text forms used on the wire: fixed-size byte arrays as lowercase hex,
//! byte strings as standard base64.

use serde::{de::Error as _, Deserialize, Deserializer, Serializer};

/// Decodes a lowercase or uppercase hex string into exactly `N` bytes.
pub(crate) fn hex_array<const N: usize>(s: &str) -> Option<[u8; N]> {
    let mut out = [0u8; N];
    hex::decode_to_slice(s, &mut out).ok()?;
    Some(out)
}

/// `[u8; N]` as a hex string.
pub(crate) mod hex_bytes {
    use super::*;

    pub(crate) fn serialize<S: Serializer, const N: usize>(
        v: &[u8; N],
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(v))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>, const N: usize>(
        d: D,
    ) -> Result<[u8; N], D::Error> {
        let s = String::deserialize(d)?;
        hex_array(&s).ok_or_else(|| D::Error::custom(format!("expected {N} hex-encoded bytes")))
    }
}

/// `Vec<[u8; N]>` as a list of hex strings.
pub(crate) mod hex_list {
    use super::*;

    pub(crate) fn serialize<S: Serializer, const N: usize>(
        v: &[[u8; N]],
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.collect_seq(v.iter().map(hex::encode))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>, const N: usize>(
        d: D,
    ) -> Result<Vec<[u8; N]>, D::Error> {
        Vec::<String>::deserialize(d)?
            .iter()
            .map(|s| {
                hex_array(s)
                    .ok_or_else(|| D::Error::custom(format!("expected {N} hex-encoded bytes")))
            })
            .collect()
    }
}

/// `Vec<u8>` as a standard (padded) base64 string.
pub(crate) mod base64_bytes {
    use base64::{engine::general_purpose::STANDARD, Engine as _};

    use super::*;

    pub(crate) fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(v))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        STANDARD
            .decode(s.as_bytes())
            .map_err(|e| D::Error::custom(format!("invalid base64: {e}")))
    }
}
