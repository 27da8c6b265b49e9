//! Radio addresses: the `/offgrid-radio/<link>/<addr>` notation and its multiaddr form.
//!
//! The multiaddr crate has a fixed table of protocol codes, so `/offgrid-radio/...` cannot be a
//! literal [`Multiaddr`]. A radio address is carried in the `/unix` protocol instead, whose
//! value is a free string, with the three parts joined by `:`:
//!
//! | notation | multiaddr |
//! |---|---|
//! | `/offgrid-radio/sim0/id:2` | `/unix/offgrid-radio:sim0:id:2` |
//! | `/offgrid-radio/kiss0/*` | `/unix/offgrid-radio:kiss0:*` |
//! | `/offgrid-radio/udp0/10.0.0.1:47007` | `/unix/offgrid-radio:udp0:10.0.0.1:47007` |
//!
//! A trailing `/p2p/<peer id>` is allowed on the multiaddr (the Swarm appends one when it
//! dials a known peer) and ignored here.
//!
//! Why `/unix`: no transport in our stack handles it (TCP takes `/ip4`/`/ip6`, QUIC
//! `/udp/../quic-v1`, the memory transport `/memory`), so an `OrTransport` never hands a radio
//! address to the wrong transport; and unlike `/dns/<hex>.<link>.offgrid-radio` it stays
//! readable and is never sent to a resolver should a DNS transport be added later. The
//! multiaddr crate prints and parses a `/unix` value as one path segment, so the value must
//! not contain `/`: link names are restricted to `[A-Za-z0-9._-]` and no [`LinkAddr`] text
//! form contains a slash.

use std::{fmt, str::FromStr};

use libp2p_core::multiaddr::{Multiaddr, Protocol};

use crate::LinkAddr;

/// The tag that starts every radio address.
pub const RADIO_TAG: &str = "offgrid-radio";

/// Longest link name.
pub const MAX_LINK_NAME: usize = 32;

/// A station on a named radio link: `/offgrid-radio/<link>/<addr>`.
///
/// `addr` is the station's [`LinkAddr`] in its text form. `*` names a station reached by
/// broadcast: a KISS TNC carries no addresses, so its stations are dialled at `*` and the
/// connection id tells the streams apart.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RadioAddr {
    link: String,
    addr: LinkAddr,
}

/// Why a string or multiaddr is not a radio address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RadioAddrError {
    /// The address is of another protocol (TCP, memory, a real Unix socket, ...).
    #[error("not an offgrid-radio address")]
    NotRadio,
    /// The link name is empty, too long or has characters other than `[A-Za-z0-9._-]`.
    #[error("invalid radio link name {0:?}")]
    LinkName(String),
    /// The station part is not a [`LinkAddr`].
    #[error("invalid station address {0:?}")]
    Station(String),
    /// Protocols other than a `/p2p` suffix follow the radio address.
    #[error("unexpected protocols after the radio address")]
    Trailing,
}

fn valid_link_name(link: &str) -> bool {
    !link.is_empty()
        && link.len() <= MAX_LINK_NAME
        && link
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

impl RadioAddr {
    /// The station `addr` on the link named `link`.
    pub fn new(link: impl Into<String>, addr: LinkAddr) -> Result<Self, RadioAddrError> {
        let link = link.into();
        if !valid_link_name(&link) {
            return Err(RadioAddrError::LinkName(link));
        }
        Ok(RadioAddr { link, addr })
    }

    /// A station on a link whose name was validated before (a transport's own).
    pub(super) fn known(link: &str, addr: LinkAddr) -> Self {
        debug_assert!(valid_link_name(link));
        RadioAddr {
            link: link.to_owned(),
            addr,
        }
    }

    /// The link's name.
    pub fn link(&self) -> &str {
        &self.link
    }

    /// The station's address on the link.
    pub fn addr(&self) -> LinkAddr {
        self.addr
    }

    /// The multiaddr form, `/unix/offgrid-radio:<link>:<addr>`.
    pub fn to_multiaddr(&self) -> Multiaddr {
        Multiaddr::empty().with(Protocol::Unix(
            format!("{RADIO_TAG}:{}:{}", self.link, self.addr).into(),
        ))
    }

    /// Reads the multiaddr form; a trailing `/p2p/<peer id>` is ignored.
    pub fn from_multiaddr(ma: &Multiaddr) -> Result<Self, RadioAddrError> {
        let mut it = ma.iter();
        let Some(Protocol::Unix(value)) = it.next() else {
            return Err(RadioAddrError::NotRadio);
        };
        let rest = value
            .strip_prefix(RADIO_TAG)
            .and_then(|r| r.strip_prefix(':'))
            .ok_or(RadioAddrError::NotRadio)?;
        let (link, station) = rest
            .split_once(':')
            .ok_or_else(|| RadioAddrError::Station(String::new()))?;
        match (it.next(), it.next()) {
            (None, _) | (Some(Protocol::P2p(_)), None) => {}
            _ => return Err(RadioAddrError::Trailing),
        }
        Self::from_parts(link, station)
    }

    fn from_parts(link: &str, station: &str) -> Result<Self, RadioAddrError> {
        let addr = station
            .parse()
            .map_err(|_| RadioAddrError::Station(station.to_owned()))?;
        Self::new(link, addr)
    }
}

impl fmt::Display for RadioAddr {
    /// The notation of the radio issue, `/offgrid-radio/<link>/<addr>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "/{RADIO_TAG}/{}/{}", self.link, self.addr)
    }
}

impl FromStr for RadioAddr {
    type Err = RadioAddrError;

    /// Reads `/offgrid-radio/<link>/<addr>`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let rest = s
            .strip_prefix('/')
            .and_then(|r| r.strip_prefix(RADIO_TAG))
            .and_then(|r| r.strip_prefix('/'))
            .ok_or(RadioAddrError::NotRadio)?;
        let (link, station) = rest
            .split_once('/')
            .ok_or_else(|| RadioAddrError::Station(String::new()))?;
        Self::from_parts(link, station)
    }
}

impl From<RadioAddr> for Multiaddr {
    fn from(a: RadioAddr) -> Multiaddr {
        a.to_multiaddr()
    }
}

impl TryFrom<&Multiaddr> for RadioAddr {
    type Error = RadioAddrError;

    fn try_from(ma: &Multiaddr) -> Result<Self, Self::Error> {
        RadioAddr::from_multiaddr(ma)
    }
}

#[cfg(test)]
mod tests {
    use libp2p_core::PeerId;

    use super::*;

    fn ma(s: &str) -> Multiaddr {
        s.parse().unwrap()
    }

    #[test]
    fn notation_and_multiaddr_round_trip() {
        for (notation, multiaddr) in [
            ("/offgrid-radio/sim0/id:2", "/unix/offgrid-radio:sim0:id:2"),
            ("/offgrid-radio/kiss0/*", "/unix/offgrid-radio:kiss0:*"),
            ("/offgrid-radio/kiss0/?", "/unix/offgrid-radio:kiss0:?"),
            (
                "/offgrid-radio/udp0/10.0.0.1:47007",
                "/unix/offgrid-radio:udp0:10.0.0.1:47007",
            ),
            (
                "/offgrid-radio/udp-1/[fe80::1]:5",
                "/unix/offgrid-radio:udp-1:[fe80::1]:5",
            ),
            (
                "/offgrid-radio/ble_0/de:ad:be:ef:00:01",
                "/unix/offgrid-radio:ble_0:de:ad:be:ef:00:01",
            ),
        ] {
            let a: RadioAddr = notation.parse().unwrap();
            assert_eq!(a.to_string(), notation);
            assert_eq!(a.to_multiaddr().to_string(), multiaddr);
            // Text and binary multiaddr forms both come back to the same radio address.
            let parsed = ma(multiaddr);
            assert_eq!(RadioAddr::from_multiaddr(&parsed).unwrap(), a);
            let binary = Multiaddr::try_from(parsed.to_vec()).unwrap();
            assert_eq!(RadioAddr::from_multiaddr(&binary).unwrap(), a);
        }
    }

    #[test]
    fn parts() {
        let a = RadioAddr::new("sim0", LinkAddr::Id(7)).unwrap();
        assert_eq!((a.link(), a.addr()), ("sim0", LinkAddr::Id(7)));
        assert_eq!(
            Multiaddr::from(a.clone()),
            ma("/unix/offgrid-radio:sim0:id:7")
        );
        assert_eq!(RadioAddr::try_from(&a.to_multiaddr()).unwrap(), a);
    }

    #[test]
    fn p2p_suffix_is_ignored_other_suffixes_are_not() {
        let peer = PeerId::random();
        let with_peer = ma("/unix/offgrid-radio:sim0:id:2").with(Protocol::P2p(peer));
        assert_eq!(
            RadioAddr::from_multiaddr(&with_peer).unwrap(),
            RadioAddr::new("sim0", LinkAddr::Id(2)).unwrap()
        );
        let twice = with_peer.clone().with(Protocol::P2p(peer));
        assert_eq!(
            RadioAddr::from_multiaddr(&twice),
            Err(RadioAddrError::Trailing)
        );
        assert_eq!(
            RadioAddr::from_multiaddr(&ma("/unix/offgrid-radio:sim0:id:2/tcp/1")),
            Err(RadioAddrError::Trailing)
        );
    }

    #[test]
    fn other_addresses_are_refused() {
        for (s, want) in [
            ("/ip4/127.0.0.1/tcp/4001", RadioAddrError::NotRadio),
            ("/memory/5", RadioAddrError::NotRadio),
            ("/unix/tmp.sock", RadioAddrError::NotRadio),
            ("/unix/offgrid-radiox:sim0:id:1", RadioAddrError::NotRadio),
            ("/dns/id-2.sim0.offgrid-radio", RadioAddrError::NotRadio),
            (
                "/unix/offgrid-radio:sim0",
                RadioAddrError::Station(String::new()),
            ),
            (
                "/unix/offgrid-radio:sim0:id:x",
                RadioAddrError::Station("id:x".into()),
            ),
            (
                "/unix/offgrid-radio::id:1",
                RadioAddrError::LinkName(String::new()),
            ),
            (
                "/unix/offgrid-radio:s%m:id:1",
                RadioAddrError::LinkName("s%m".into()),
            ),
        ] {
            assert_eq!(RadioAddr::from_multiaddr(&ma(s)), Err(want), "{s}");
        }
        assert_eq!(Multiaddr::empty().iter().count(), 0);
        assert_eq!(
            RadioAddr::from_multiaddr(&Multiaddr::empty()),
            Err(RadioAddrError::NotRadio)
        );
    }

    #[test]
    fn notation_errors() {
        assert_eq!(
            "/offgrid-radio/sim0".parse::<RadioAddr>(),
            Err(RadioAddrError::Station(String::new()))
        );
        assert_eq!(
            "offgrid-radio/sim0/id:1".parse::<RadioAddr>(),
            Err(RadioAddrError::NotRadio)
        );
        assert_eq!(
            "/offgrid-radio/sim0/id:1/x".parse::<RadioAddr>(),
            Err(RadioAddrError::Station("id:1/x".into()))
        );
        let long = "a".repeat(MAX_LINK_NAME + 1);
        assert_eq!(
            RadioAddr::new(long.clone(), LinkAddr::Broadcast),
            Err(RadioAddrError::LinkName(long))
        );
        assert!(RadioAddr::new("a/b", LinkAddr::Broadcast).is_err());
        assert!(RadioAddr::new("a:b", LinkAddr::Broadcast).is_err());
    }
}
