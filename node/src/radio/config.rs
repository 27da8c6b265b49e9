//! `[[radio]]` entries and the `--radio` flag.

use serde::{Deserialize, Serialize};

/// One radio link of the node (`[[radio]]` in the config file, `--radio SPEC` on the
/// command line).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RadioConfig {
    /// Which link: `kiss:<serial path>[@<baud>]` (a LoRa TNC speaking KISS), `udp` or
    /// `udp:<interface IPv4>` (multicast 239.23.0.7:47007), `ble` (the first Bluetooth
    /// adapter; needs a build with `--features ble`), or `sim:<hub host:port>` (the
    /// simulated LoRa medium of `offgrid_transports::sim::SimHub`, for tests).
    pub link: String,
    /// LoRa spreading factor (7..=12) used for the airtime model of a KISS link. A simulated
    /// link takes its modem settings from the hub.
    pub sf: u8,
    /// LoRa bandwidth in Hz.
    pub bw_hz: u32,
    /// LoRa coding rate denominator (5..=8 for 4/5..4/8).
    pub cr: u8,
    /// Fraction of time this node may transmit (regional duty cycle; EU868 g1: 0.01).
    /// 1.0 disables the limit.
    pub duty_cycle: f64,
    /// Window over which the duty cycle is counted, seconds (regulators count an hour).
    pub duty_window_s: u64,
    /// Fraction of time spent on beacons at most (the announce cap), counted over the same
    /// window.
    pub announce_fraction: f64,
    /// Seconds between beacons when the budget allows (the announce cap may space them out
    /// further).
    pub beacon_interval_s: u64,
}

impl Default for RadioConfig {
    fn default() -> Self {
        RadioConfig {
            link: "udp".into(),
            sf: 7,
            bw_hz: 125_000,
            cr: 5,
            duty_cycle: 0.01,
            duty_window_s: 3600,
            announce_fraction: 0.0025,
            beacon_interval_s: 60,
        }
    }
}

/// What a `link` string names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkSpec {
    /// A KISS TNC on a serial port.
    Kiss {
        /// Device path.
        path: String,
        /// Baud rate.
        baud: u32,
    },
    /// UDP multicast on an interface (`None`: the default route's).
    Udp(Option<std::net::Ipv4Addr>),
    /// A station on a simulator hub.
    Sim(std::net::SocketAddr),
    /// The first Bluetooth LE adapter (BlueZ).
    Ble,
}

/// Baud rate of a KISS TNC unless the spec names one.
pub const DEFAULT_BAUD: u32 = 115_200;

impl LinkSpec {
    /// Parses `kiss:/dev/ttyUSB0@9600`, `udp`, `udp:10.0.0.2`, `sim:127.0.0.1:7000`.
    pub fn parse(s: &str) -> Result<LinkSpec, String> {
        let (kind, rest) = s.split_once(':').unwrap_or((s, ""));
        match kind {
            "kiss" if !rest.is_empty() => {
                let (path, baud) = match rest.rsplit_once('@') {
                    Some((p, b)) => (
                        p,
                        b.parse()
                            .map_err(|_| format!("bad baud rate {b:?} in {s:?}"))?,
                    ),
                    None => (rest, DEFAULT_BAUD),
                };
                Ok(LinkSpec::Kiss {
                    path: path.into(),
                    baud,
                })
            }
            "udp" if rest.is_empty() => Ok(LinkSpec::Udp(None)),
            "udp" => rest
                .parse()
                .map(|ip| LinkSpec::Udp(Some(ip)))
                .map_err(|_| format!("bad interface address in {s:?}")),
            "sim" => rest
                .parse()
                .map(LinkSpec::Sim)
                .map_err(|_| format!("bad hub address in {s:?} (want sim:<ip>:<port>)")),
            "ble" if rest.is_empty() && cfg!(feature = "ble") => Ok(LinkSpec::Ble),
            "ble" if rest.is_empty() => Err(
                "radio \"ble\": this offgrid-node was built without Bluetooth; rebuild it with \
                 --features ble"
                    .into(),
            ),
            _ => Err(format!(
                "unknown radio {s:?}: use kiss:<path>[@<baud>], udp[:<ip>], ble or sim:<ip>:<port>"
            )),
        }
    }

    /// Short kind name used in link names (`kiss0`, `udp0`, `sim0`).
    pub fn kind(&self) -> &'static str {
        match self {
            LinkSpec::Kiss { .. } => "kiss",
            LinkSpec::Udp(_) => "udp",
            LinkSpec::Sim(_) => "sim",
            LinkSpec::Ble => "ble",
        }
    }
}

impl RadioConfig {
    /// An entry with default settings for a `--radio` spec.
    pub fn from_spec(spec: &str) -> Result<RadioConfig, String> {
        LinkSpec::parse(spec)?;
        Ok(RadioConfig {
            link: spec.into(),
            ..RadioConfig::default()
        })
    }

    /// Checks ranges.
    pub fn validate(&self) -> Result<LinkSpec, String> {
        let spec = LinkSpec::parse(&self.link)?;
        if !(7..=12).contains(&self.sf) {
            return Err(format!("radio {}: sf must be 7..=12", self.link));
        }
        if !(5..=8).contains(&self.cr) {
            return Err(format!("radio {}: cr must be 5..=8", self.link));
        }
        for (name, v) in [
            ("duty_cycle", self.duty_cycle),
            ("announce_fraction", self.announce_fraction),
        ] {
            if !(v > 0.0 && v <= 1.0) {
                return Err(format!("radio {}: {name} must be in (0, 1]", self.link));
            }
        }
        if self.duty_window_s == 0 {
            return Err(format!(
                "radio {}: duty_window_s must be positive",
                self.link
            ));
        }
        Ok(spec)
    }
}

#[cfg(test)]
// A panic in a test is a failure with a message, which is what a test wants.
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse() {
        assert_eq!(
            LinkSpec::parse("kiss:/dev/ttyUSB0@9600").unwrap(),
            LinkSpec::Kiss {
                path: "/dev/ttyUSB0".into(),
                baud: 9600
            }
        );
        assert_eq!(
            LinkSpec::parse("kiss:/dev/pts/3").unwrap(),
            LinkSpec::Kiss {
                path: "/dev/pts/3".into(),
                baud: DEFAULT_BAUD
            }
        );
        assert_eq!(LinkSpec::parse("udp").unwrap(), LinkSpec::Udp(None));
        assert_eq!(
            LinkSpec::parse("udp:10.0.0.2").unwrap(),
            LinkSpec::Udp(Some("10.0.0.2".parse().unwrap()))
        );
        assert_eq!(
            LinkSpec::parse("sim:127.0.0.1:7000").unwrap(),
            LinkSpec::Sim("127.0.0.1:7000".parse().unwrap())
        );
        for bad in [
            "kiss:",
            "kiss:/dev/x@fast",
            "lora",
            "sim:nowhere",
            "udp:eth0",
        ] {
            assert!(LinkSpec::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ble_is_a_link_only_in_a_build_with_bluetooth() {
        let r = LinkSpec::parse("ble");
        if cfg!(feature = "ble") {
            assert_eq!(r.unwrap(), LinkSpec::Ble);
        } else {
            let e = r.unwrap_err();
            assert!(e.contains("--features ble"), "{e}");
        }
        assert!(LinkSpec::parse("ble:hci1").is_err());
    }

    #[test]
    fn ranges_are_checked() {
        let ok = RadioConfig::from_spec("sim:127.0.0.1:1").unwrap();
        assert!(ok.validate().is_ok());
        assert!(RadioConfig {
            sf: 13,
            ..ok.clone()
        }
        .validate()
        .is_err());
        assert!(RadioConfig {
            duty_cycle: 0.0,
            ..ok.clone()
        }
        .validate()
        .is_err());
        assert!(RadioConfig {
            duty_window_s: 0,
            ..ok
        }
        .validate()
        .is_err());
    }
}
