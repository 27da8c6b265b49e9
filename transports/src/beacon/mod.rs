//! Compact signed beacons: who a node is and how to reach it, in one LoRa frame.
//!
//! # Wire format, version 1 (⚖ contract)
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 1 | magic `0x4F` (`'O'`) |
//! | 1 | 1 | version `0x01` |
//! | 2 | 1 | flags: bit 0 ACTIVE (accepting jobs), bit 1 RELAY, bit 2 HAS_PRICE, bit 3 LOW_POWER; bits 4–7 reserved: sent as 0, kept and signed, ignored |
//! | 3 | 32 | Ed25519 public key: the node's libp2p identity key (its peer id derives from it) |
//! | 35 | 1–5 | sequence number: unsigned LEB128 of a `u32`, minimal encoding |
//! | +0 | 2 | capabilities: `u16` little-endian bitmap ([`Capabilities`]) |
//! | +2 | 0 or 4 | price: `u32` little-endian, smallest currency unit per compute unit; present iff HAS_PRICE |
//! | +0 | 1 | address count `n`, 0..=[`MAX_ADDRS`] |
//! | +1 | n × (7 or 19) | addresses: a type byte, then the IP (4 or 16 bytes) and port (2 bytes, big-endian): `0x01` TCP/IPv4, `0x02` TCP/IPv6, `0x03` QUIC/IPv4, `0x04` QUIC/IPv6 |
//! | end − 64 | 64 | Ed25519 signature over `"offgrid-beacon-v1"` ‖ every byte before the signature |
//!
//! Nothing may follow the signature. A node with two IPv4 addresses and a price sends
//! 2 + 1 + 32 + 5 + 2 + 4 + 1 + 2 × 7 + 64 = **125 bytes** at most (Reticulum's announce is
//! 167 B); the largest possible beacon (four IPv6 addresses) is [`MAX_BEACON_LEN`] = 187 bytes,
//! under the 220-byte LoRa MTU.
//!
//! The signature covers a domain-separation prefix because the same key signs libp2p
//! handshakes and receipts: a beacon signature can never be replayed as one of those.
//! The prefix is not sent. Verification uses `verify_strict` (no malleable signatures,
//! no small-order keys).
//!
//! The sequence number must grow with every beacon a node sends, across restarts: a Unix
//! time in seconds (valid until 2106) is a good choice. Receivers drop beacons whose sequence
//! number is not above the highest seen from that key ([`BeaconFilter`]).

mod filter;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};

pub use filter::{BeaconFilter, FilterError, FilterStats};

/// First byte of every beacon.
pub const MAGIC: u8 = 0x4F;
/// The format version this module writes and reads.
pub const VERSION: u8 = 0x01;
/// Most addresses one beacon carries.
pub const MAX_ADDRS: usize = 4;
/// Smallest well-formed beacon (no price, no address, one-byte sequence number).
pub const MIN_BEACON_LEN: usize = 2 + 1 + 32 + 1 + 2 + 1 + 64;
/// Largest well-formed beacon (price, five-byte sequence number, four IPv6 addresses).
pub const MAX_BEACON_LEN: usize = 2 + 1 + 32 + 5 + 2 + 4 + 1 + MAX_ADDRS * 19 + 64;
// Every beacon fits one LoRa frame.
const _: () = assert!(MAX_BEACON_LEN <= crate::lora::LORA_MTU);

/// The prefix signed before the beacon bytes.
pub const SIGNING_DOMAIN: &[u8] = b"offgrid-beacon-v1";

const SIG_LEN: usize = 64;
const FLAG_HAS_PRICE: u8 = 0x04;

/// Beacon flags (the HAS_PRICE bit is derived from [`Beacon::price`] and never appears here).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Flags(pub u8);

impl Flags {
    /// The node accepts jobs now.
    pub const ACTIVE: Flags = Flags(0x01);
    /// The node relays radio traffic for others.
    pub const RELAY: Flags = Flags(0x02);
    /// The node runs on battery or is otherwise saving power.
    pub const LOW_POWER: Flags = Flags(0x08);

    /// Whether every bit of `other` is set.
    pub fn contains(self, other: Flags) -> bool {
        self.0 & other.0 == other.0
    }
}

impl std::ops::BitOr for Flags {
    type Output = Flags;
    fn bitor(self, rhs: Flags) -> Flags {
        Flags(self.0 | rhs.0)
    }
}

/// What a node offers, as a bitmap.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Capabilities(pub u16);

impl Capabilities {
    /// Runs compute jobs.
    pub const COMPUTE: Capabilities = Capabilities(1 << 0);
    /// Stores shards.
    pub const STORAGE: Capabilities = Capabilities(1 << 1);
    /// Answers `echo` jobs.
    pub const ECHO: Capabilities = Capabilities(1 << 2);
    /// Witnesses wallet transactions.
    pub const WITNESS: Capabilities = Capabilities(1 << 3);
    /// Brokers auctions for Core.
    pub const BROKER: Capabilities = Capabilities(1 << 4);
    /// Bridges radio and IP links.
    pub const GATEWAY: Capabilities = Capabilities(1 << 5);

    /// Whether every bit of `other` is set.
    pub fn contains(self, other: Capabilities) -> bool {
        self.0 & other.0 == other.0
    }
}

impl std::ops::BitOr for Capabilities {
    type Output = Capabilities;
    fn bitor(self, rhs: Capabilities) -> Capabilities {
        Capabilities(self.0 | rhs.0)
    }
}

/// A way to reach the node over IP.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BeaconAddr {
    /// libp2p over TCP.
    Tcp(SocketAddr),
    /// libp2p over QUIC v1 (UDP).
    Quic(SocketAddr),
}

impl BeaconAddr {
    fn type_byte(&self) -> u8 {
        match self {
            BeaconAddr::Tcp(SocketAddr::V4(_)) => 0x01,
            BeaconAddr::Tcp(SocketAddr::V6(_)) => 0x02,
            BeaconAddr::Quic(SocketAddr::V4(_)) => 0x03,
            BeaconAddr::Quic(SocketAddr::V6(_)) => 0x04,
        }
    }

    fn socket(&self) -> SocketAddr {
        match self {
            BeaconAddr::Tcp(a) | BeaconAddr::Quic(a) => *a,
        }
    }

    fn encoded_len(&self) -> usize {
        if self.socket().is_ipv4() {
            7
        } else {
            19
        }
    }

    /// The libp2p multiaddr, e.g. `/ip4/10.0.0.2/tcp/4001` or `/ip6/::1/udp/4001/quic-v1`.
    pub fn to_multiaddr(&self) -> String {
        let a = self.socket();
        let ip = match a.ip() {
            IpAddr::V4(ip) => format!("/ip4/{ip}"),
            IpAddr::V6(ip) => format!("/ip6/{ip}"),
        };
        match self {
            BeaconAddr::Tcp(_) => format!("{ip}/tcp/{}", a.port()),
            BeaconAddr::Quic(_) => format!("{ip}/udp/{}/quic-v1", a.port()),
        }
    }
}

/// Why a beacon was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BeaconError {
    /// Shorter than the smallest beacon.
    #[error("beacon too short ({0} bytes)")]
    TooShort(usize),
    /// Longer than the largest beacon.
    #[error("beacon too long ({0} bytes)")]
    TooLong(usize),
    /// Not a beacon.
    #[error("bad magic byte {0:#04x}")]
    BadMagic(u8),
    /// A version this code does not read.
    #[error("unsupported beacon version {0}")]
    UnsupportedVersion(u8),
    /// A field runs past the end of the frame.
    #[error("beacon truncated")]
    Truncated,
    /// The sequence number is not a minimal LEB128 `u32`.
    #[error("bad sequence number encoding")]
    BadVarint,
    /// More addresses than [`MAX_ADDRS`].
    #[error("{0} addresses, at most {MAX_ADDRS} allowed")]
    TooManyAddrs(usize),
    /// An unknown address type.
    #[error("unknown address type {0:#04x}")]
    BadAddrType(u8),
    /// Bytes between the last field and the signature.
    #[error("{0} unexpected bytes before the signature")]
    TrailingBytes(usize),
    /// The public key is not a valid Ed25519 point.
    #[error("invalid public key")]
    BadPublicKey,
    /// The signature does not verify.
    #[error("bad signature")]
    BadSignature,
    /// Encoding with a key other than the beacon's own.
    #[error("signing key does not match the beacon's public key")]
    KeyMismatch,
}

/// A node's beacon.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Beacon {
    /// The node's Ed25519 public key.
    pub public_key: [u8; 32],
    /// Sequence number; must grow with every beacon the node sends.
    pub seq: u32,
    /// Flags.
    pub flags: Flags,
    /// What the node offers.
    pub capabilities: Capabilities,
    /// Price in the smallest currency unit per compute unit, if advertised.
    pub price: Option<u32>,
    /// How to reach the node over IP (at most [`MAX_ADDRS`]).
    pub addrs: Vec<BeaconAddr>,
}

impl Beacon {
    /// An empty beacon (no flags, capabilities, price or addresses) for `key`.
    pub fn new(key: &VerifyingKey, seq: u32) -> Self {
        Beacon {
            public_key: key.to_bytes(),
            seq,
            flags: Flags::default(),
            capabilities: Capabilities::default(),
            price: None,
            addrs: Vec::new(),
        }
    }

    /// Sets the flags.
    pub fn with_flags(mut self, flags: Flags) -> Self {
        self.flags = flags;
        self
    }

    /// Sets the capabilities.
    pub fn with_capabilities(mut self, caps: Capabilities) -> Self {
        self.capabilities = caps;
        self
    }

    /// Sets the price.
    pub fn with_price(mut self, price: u32) -> Self {
        self.price = Some(price);
        self
    }

    /// Adds an address.
    pub fn with_addr(mut self, addr: BeaconAddr) -> Self {
        self.addrs.push(addr);
        self
    }

    /// Size of the signed frame.
    pub fn encoded_len(&self) -> usize {
        3 + 32
            + varint_len(self.seq)
            + 2
            + if self.price.is_some() { 4 } else { 0 }
            + 1
            + self
                .addrs
                .iter()
                .map(BeaconAddr::encoded_len)
                .sum::<usize>()
            + SIG_LEN
    }

    /// Encodes and signs the beacon with `key`, which must be the beacon's own key.
    pub fn encode_signed(&self, key: &SigningKey) -> Result<Vec<u8>, BeaconError> {
        if key.verifying_key().to_bytes() != self.public_key {
            return Err(BeaconError::KeyMismatch);
        }
        if self.addrs.len() > MAX_ADDRS {
            return Err(BeaconError::TooManyAddrs(self.addrs.len()));
        }
        let mut out = Vec::with_capacity(self.encoded_len());
        let flags = (self.flags.0 & !FLAG_HAS_PRICE)
            | if self.price.is_some() {
                FLAG_HAS_PRICE
            } else {
                0
            };
        out.extend_from_slice(&[MAGIC, VERSION, flags]);
        out.extend_from_slice(&self.public_key);
        write_varint(&mut out, self.seq);
        out.extend_from_slice(&self.capabilities.0.to_le_bytes());
        if let Some(price) = self.price {
            out.extend_from_slice(&price.to_le_bytes());
        }
        // Checked above: at most MAX_ADDRS (4) addresses.
        out.push(self.addrs.len() as u8);
        for addr in &self.addrs {
            out.push(addr.type_byte());
            let sa = addr.socket();
            match sa.ip() {
                IpAddr::V4(ip) => out.extend_from_slice(&ip.octets()),
                IpAddr::V6(ip) => out.extend_from_slice(&ip.octets()),
            }
            out.extend_from_slice(&sa.port().to_be_bytes());
        }
        let sig = key.sign(&signed_message(&out));
        out.extend_from_slice(&sig.to_bytes());
        Ok(out)
    }

    /// Decodes a beacon and verifies its signature. Never panics, whatever the input.
    pub fn decode_verified(bytes: &[u8]) -> Result<Beacon, BeaconError> {
        let beacon = Self::parse(bytes)?;
        beacon.verify(bytes)?;
        Ok(beacon)
    }

    /// Decodes the fields without checking the signature (the filter checks cheap things
    /// first). Callers must [`Beacon::verify`] before trusting the result.
    pub(crate) fn parse(bytes: &[u8]) -> Result<Beacon, BeaconError> {
        if bytes.len() < MIN_BEACON_LEN {
            return Err(BeaconError::TooShort(bytes.len()));
        }
        if bytes.len() > MAX_BEACON_LEN {
            return Err(BeaconError::TooLong(bytes.len()));
        }
        if bytes[0] != MAGIC {
            return Err(BeaconError::BadMagic(bytes[0]));
        }
        if bytes[1] != VERSION {
            return Err(BeaconError::UnsupportedVersion(bytes[1]));
        }
        let body = &bytes[..bytes.len() - SIG_LEN];
        let mut r = Reader { buf: body, pos: 2 };
        let flags = r.byte()?;
        let mut public_key = [0u8; 32];
        public_key.copy_from_slice(r.take(32)?);
        let seq = r.varint()?;
        let capabilities = Capabilities(u16::from_le_bytes(r.array()?));
        let price = if flags & FLAG_HAS_PRICE != 0 {
            Some(u32::from_le_bytes(r.array()?))
        } else {
            None
        };
        let n = usize::from(r.byte()?);
        if n > MAX_ADDRS {
            return Err(BeaconError::TooManyAddrs(n));
        }
        let mut addrs = Vec::with_capacity(n);
        for _ in 0..n {
            let ty = r.byte()?;
            let ip = match ty {
                0x01 | 0x03 => IpAddr::V4(Ipv4Addr::from(r.array::<4>()?)),
                0x02 | 0x04 => IpAddr::V6(Ipv6Addr::from(r.array::<16>()?)),
                other => return Err(BeaconError::BadAddrType(other)),
            };
            let sa = SocketAddr::new(ip, u16::from_be_bytes(r.array()?));
            addrs.push(if ty <= 0x02 {
                BeaconAddr::Tcp(sa)
            } else {
                BeaconAddr::Quic(sa)
            });
        }
        if r.pos != body.len() {
            return Err(BeaconError::TrailingBytes(body.len() - r.pos));
        }
        Ok(Beacon {
            public_key,
            seq,
            flags: Flags(flags & !FLAG_HAS_PRICE),
            capabilities,
            price,
            addrs,
        })
    }

    /// Checks the signature of `bytes`, the frame this beacon was parsed from.
    pub(crate) fn verify(&self, bytes: &[u8]) -> Result<(), BeaconError> {
        let split = bytes
            .len()
            .checked_sub(SIG_LEN)
            .ok_or(BeaconError::Truncated)?;
        let (body, sig) = bytes.split_at(split);
        let key =
            VerifyingKey::from_bytes(&self.public_key).map_err(|_| BeaconError::BadPublicKey)?;
        let sig = Signature::from_slice(sig).map_err(|_| BeaconError::BadSignature)?;
        key.verify_strict(&signed_message(body), &sig)
            .map_err(|_| BeaconError::BadSignature)
    }
}

fn signed_message(body: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(SIGNING_DOMAIN.len() + body.len());
    m.extend_from_slice(SIGNING_DOMAIN);
    m.extend_from_slice(body);
    m
}

fn varint_len(v: u32) -> usize {
    match v {
        0..=0x7f => 1,
        0x80..=0x3fff => 2,
        0x4000..=0x1f_ffff => 3,
        0x20_0000..=0x0fff_ffff => 4,
        _ => 5,
    }
}

fn write_varint(out: &mut Vec<u8>, mut v: u32) {
    while v >= 0x80 {
        out.push((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], BeaconError> {
        let end = self.pos.checked_add(n).ok_or(BeaconError::Truncated)?;
        let s = self.buf.get(self.pos..end).ok_or(BeaconError::Truncated)?;
        self.pos = end;
        Ok(s)
    }

    fn byte(&mut self) -> Result<u8, BeaconError> {
        Ok(self.take(1)?[0])
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], BeaconError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    /// Minimal unsigned LEB128 of a u32.
    fn varint(&mut self) -> Result<u32, BeaconError> {
        let mut v: u32 = 0;
        for i in 0..5 {
            let b = self.byte()?;
            let bits = u32::from(b & 0x7f);
            if i == 4 && b > 0x0f {
                return Err(BeaconError::BadVarint); // overflows u32, or a sixth byte
            }
            v |= bits << (7 * i);
            if b & 0x80 == 0 {
                if i > 0 && b == 0 {
                    return Err(BeaconError::BadVarint); // non-minimal
                }
                return Ok(v);
            }
        }
        Err(BeaconError::BadVarint)
    }
}

#[cfg(test)]
mod tests;
