//! Bluetooth LE: recognising Offgrid nodes, and moving frames over GATT.
//!
//! # Recognising a node (⚖ radio contract)
//! A node is an Offgrid node if its advertisement either
//! - lists [`OFFGRID_SERVICE_UUID`] (`610a1dd6-e7ef-478d-b9ca-e526d2c4d549`, a random
//!   version-4 UUID chosen for Offgrid-Net) and carries its signed [beacon](crate::beacon) as
//!   the service data of that UUID (AD type 0x21), or
//! - has the device name `OFFGRID:<base64url(endpoint)>` ([`encode_name`], [`decode_name`]):
//!   unpadded URL-safe base64 of 1..=[`MAX_ENDPOINT_LEN`] bytes.
//!
//! A legacy advertisement has only 31 bytes: room for a name with an endpoint of up to 15
//! bytes (use an 8-byte short id of the node key), but not for a beacon (103–187 bytes), which
//! needs Bluetooth 5 extended advertising or must be read over GATT. [`parse_advertisement`]
//! decodes raw advertising data; [`Advertisement::offgrid_beacon`] and
//! [`Advertisement::offgrid_endpoint`] extract what Offgrid needs. Verify beacons with
//! [`crate::beacon::BeaconFilter`] before use.
//!
//! # Frames over GATT
//! The Offgrid service has two characteristics: [`OFFGRID_RX_CHAR_UUID`] (the central writes
//! to it) and [`OFFGRID_TX_CHAR_UUID`] (the peripheral notifies on it). One ATT write or
//! notification carries at most `ATT_MTU − 3` bytes, so link frames are split with a 2-byte
//! header and reassembled ([`chunk`]).
//!
//! # Hardware support (feature `ble`, off by default)
//! With `--features ble`, `scanner` and `gatt` use btleplug (BlueZ over D-Bus on Linux; it
//! builds libdbus from source, so no system package is needed). Everything above this line is
//! pure code and unit-tested without the feature. What this repository cannot test (the build
//! machine has no Bluetooth): scanning real adapters, GATT connections, notification delivery,
//! MTU negotiation. To use it on real hardware: run BlueZ (`bluetoothd`), power the adapter on
//! (`bluetoothctl power on`), give the daemon access to the system bus (root or the `bluetooth`
//! group), build `offgrid-node` with `--features ble`, and add `[[radio]] link = "ble"` to its
//! config. [`link::BleLink`] makes the adapter one radio link of the node's gateway: beacons
//! from advertisements in, frames over GATT to peers that expose the Offgrid service.

pub mod chunk;
#[cfg(feature = "ble")]
pub mod gatt;
#[cfg(feature = "ble")]
pub mod link;
#[cfg(feature = "ble")]
pub mod scanner;

use std::time::Duration;

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};

pub use chunk::{split_message, ChunkError, Chunker, Reassembler, ReassemblyStats, CHUNK_HEADER};

/// The Offgrid GATT service UUID, `610a1dd6-e7ef-478d-b9ca-e526d2c4d549`.
pub const OFFGRID_SERVICE_UUID: u128 = 0x610a1dd6_e7ef_478d_b9ca_e526d2c4d549;
/// The characteristic centrals write frames to, `08a07be6-7f83-4922-a3b6-18e0ac14c952`.
pub const OFFGRID_RX_CHAR_UUID: u128 = 0x08a07be6_7f83_4922_a3b6_18e0ac14c952;
/// The characteristic the peripheral notifies frames on, `6eaa9c95-89b6-40ef-900c-36117faf3f0e`.
pub const OFFGRID_TX_CHAR_UUID: u128 = 0x6eaa9c95_89b6_40ef_900c_36117faf3f0e;
/// Device-name prefix of an Offgrid node.
pub const NAME_PREFIX: &str = "OFFGRID:";
/// Longest endpoint a device name may carry.
pub const MAX_ENDPOINT_LEN: usize = 64;

/// Largest link frame over a GATT connection.
pub const BLE_MTU: usize = 512;

/// Airtime model of a `len`-byte frame over GATT at the minimum ATT MTU on the 1M PHY: each
/// 18-byte fragment is a 20-byte ATT PDU plus 14 bytes of link-layer overhead, a 150 µs gap,
/// and a write response (7 + 14 bytes) with another gap.
pub fn ble_airtime(len: usize) -> Duration {
    let fragments = len.div_ceil(18).max(1) as u64;
    let per_fragment_us = (20 + 14) * 8 + 150 + (7 + 14) * 8 + 150;
    Duration::from_micros(fragments * per_fragment_us)
}

/// Errors of the btleplug-based scanner and GATT link.
#[cfg(feature = "ble")]
#[derive(Debug, thiserror::Error)]
pub enum BleError {
    /// btleplug (BlueZ, D-Bus) failed.
    #[error("bluetooth: {0}")]
    Btle(#[from] btleplug::Error),
    /// The system has no Bluetooth adapter.
    #[error("no Bluetooth adapter")]
    NoAdapter,
    /// The peripheral does not expose the Offgrid characteristics.
    #[error("peripheral lacks the Offgrid GATT service")]
    NoOffgridService,
    /// The negotiated ATT MTU is unusable.
    #[error(transparent)]
    Chunk(#[from] ChunkError),
}

/// Formats a UUID given as a `u128` in the usual hyphenated form.
pub fn uuid_string(uuid: u128) -> String {
    let h = format!("{uuid:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// Why a device name is not an Offgrid name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// It does not start with `OFFGRID:`.
    #[error("not an Offgrid device name")]
    NoPrefix,
    /// Nothing after the prefix.
    #[error("empty endpoint")]
    Empty,
    /// Not unpadded, canonical base64url.
    #[error("endpoint is not canonical unpadded base64url")]
    BadBase64,
    /// The endpoint is longer than [`MAX_ENDPOINT_LEN`].
    #[error("endpoint of {0} bytes is too long")]
    TooLong(usize),
}

/// The device name for `endpoint`: `OFFGRID:` + unpadded base64url.
pub fn encode_name(endpoint: &[u8]) -> Result<String, NameError> {
    if endpoint.is_empty() {
        return Err(NameError::Empty);
    }
    if endpoint.len() > MAX_ENDPOINT_LEN {
        return Err(NameError::TooLong(endpoint.len()));
    }
    Ok(format!("{NAME_PREFIX}{}", URL_SAFE_NO_PAD.encode(endpoint)))
}

/// The endpoint in an Offgrid device name. Rejects padding, other alphabets, non-canonical
/// trailing bits, empty and oversize endpoints.
pub fn decode_name(name: &str) -> Result<Vec<u8>, NameError> {
    let body = name.strip_prefix(NAME_PREFIX).ok_or(NameError::NoPrefix)?;
    if body.is_empty() {
        return Err(NameError::Empty);
    }
    // 4 chars per 3 bytes: reject before decoding anything huge.
    if body.len() > MAX_ENDPOINT_LEN.div_ceil(3) * 4 {
        return Err(NameError::TooLong(body.len() * 3 / 4));
    }
    let bytes = URL_SAFE_NO_PAD
        .decode(body)
        .map_err(|_| NameError::BadBase64)?;
    if bytes.is_empty() {
        return Err(NameError::Empty);
    }
    if bytes.len() > MAX_ENDPOINT_LEN {
        return Err(NameError::TooLong(bytes.len()));
    }
    Ok(bytes)
}

/// Why advertising data could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdError {
    /// An AD structure runs past the end of the data.
    #[error("AD structure truncated")]
    Truncated,
    /// A field has the wrong length for its type.
    #[error("AD structure of type {0:#04x} has a bad length")]
    BadLength(u8),
    /// The data would not fit one advertisement (over 254 bytes per structure).
    #[error("advertisement too large")]
    TooLarge,
}

/// The parts of an advertisement Offgrid cares about.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Advertisement {
    /// Complete or shortened local name (lossy UTF-8).
    pub local_name: Option<String>,
    /// Advertised service UUIDs (16- and 32-bit ones expanded to 128 bits).
    pub service_uuids: Vec<u128>,
    /// Service data by UUID.
    pub service_data: Vec<(u128, Vec<u8>)>,
}

const BASE_UUID: u128 = 0x00000000_0000_1000_8000_00805f9b34fb;

fn short_uuid(v: u32) -> u128 {
    (u128::from(v) << 96) | BASE_UUID
}

fn le_uuid(b: &[u8]) -> u128 {
    let mut a = [0u8; 16];
    a.copy_from_slice(&b[..16]);
    u128::from_le_bytes(a)
}

/// Parses raw advertising (or scan response) data: a sequence of `len type data…` structures.
/// Unknown types are skipped; a zero length ends the data (padding).
pub fn parse_advertisement(data: &[u8]) -> Result<Advertisement, AdError> {
    let mut ad = Advertisement::default();
    let mut rest = data;
    while let Some((&len, tail)) = rest.split_first() {
        if len == 0 {
            break;
        }
        let len = usize::from(len);
        if tail.len() < len {
            return Err(AdError::Truncated);
        }
        let (ty, field) = (tail[0], &tail[1..len]);
        rest = &tail[len..];
        match ty {
            0x08 | 0x09 => ad.local_name = Some(String::from_utf8_lossy(field).into_owned()),
            0x02 | 0x03 => {
                if field.len() % 2 != 0 {
                    return Err(AdError::BadLength(ty));
                }
                ad.service_uuids.extend(
                    field
                        .chunks_exact(2)
                        .map(|c| short_uuid(u32::from(u16::from_le_bytes([c[0], c[1]])))),
                );
            }
            0x06 | 0x07 => {
                if field.len() % 16 != 0 {
                    return Err(AdError::BadLength(ty));
                }
                ad.service_uuids.extend(field.chunks_exact(16).map(le_uuid));
            }
            0x16 if field.len() >= 2 => {
                let uuid = short_uuid(u32::from(u16::from_le_bytes([field[0], field[1]])));
                ad.service_data.push((uuid, field[2..].to_vec()));
            }
            0x20 if field.len() >= 4 => {
                let v = u32::from_le_bytes([field[0], field[1], field[2], field[3]]);
                ad.service_data.push((short_uuid(v), field[4..].to_vec()));
            }
            0x21 if field.len() >= 16 => {
                ad.service_data.push((le_uuid(field), field[16..].to_vec()));
            }
            0x16 | 0x20 | 0x21 => return Err(AdError::BadLength(ty)),
            _ => {}
        }
    }
    Ok(ad)
}

/// Builds advertising data with an optional complete local name, the Offgrid service UUID and,
/// if given, a beacon as its service data. Over 31 bytes needs extended advertising.
pub fn build_advertisement(name: Option<&str>, beacon: Option<&[u8]>) -> Result<Vec<u8>, AdError> {
    let mut out = Vec::new();
    let mut push = |ty: u8, parts: &[&[u8]]| -> Result<(), AdError> {
        let len: usize = 1 + parts.iter().map(|p| p.len()).sum::<usize>();
        out.push(u8::try_from(len).map_err(|_| AdError::TooLarge)?);
        out.push(ty);
        for p in parts {
            out.extend_from_slice(p);
        }
        Ok(())
    };
    let uuid = OFFGRID_SERVICE_UUID.to_le_bytes();
    push(0x07, &[&uuid])?;
    if let Some(name) = name {
        push(0x09, &[name.as_bytes()])?;
    }
    if let Some(beacon) = beacon {
        push(0x21, &[&uuid, beacon])?;
    }
    Ok(out)
}

impl Advertisement {
    /// Whether the advertisement names the Offgrid service or has an Offgrid device name.
    pub fn is_offgrid(&self) -> bool {
        self.service_uuids.contains(&OFFGRID_SERVICE_UUID)
            || self.offgrid_beacon().is_some()
            || self.offgrid_endpoint().is_some()
    }

    /// The Offgrid service data: a signed beacon, still to be verified.
    pub fn offgrid_beacon(&self) -> Option<&[u8]> {
        offgrid_service_data(self.service_data.iter().map(|(u, d)| (*u, d.as_slice())))
    }

    /// The endpoint in an `OFFGRID:` device name.
    pub fn offgrid_endpoint(&self) -> Option<Vec<u8>> {
        self.local_name.as_deref().and_then(|n| decode_name(n).ok())
    }
}

/// Picks the Offgrid beacon out of service data keyed by UUID (as btleplug reports it:
/// `props.service_data.iter().map(|(u, d)| (u.as_u128(), d.as_slice()))`).
pub fn offgrid_service_data<'a>(
    service_data: impl IntoIterator<Item = (u128, &'a [u8])>,
) -> Option<&'a [u8]> {
    service_data
        .into_iter()
        .find(|(uuid, data)| *uuid == OFFGRID_SERVICE_UUID && !data.is_empty())
        .map(|(_, data)| data)
}

#[cfg(test)]
mod tests;
