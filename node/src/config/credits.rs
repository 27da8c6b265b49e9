//! Amounts of money in the config: integers of micro-credits, written as decimals.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An amount of credits, held as an integer number of micro-credits (1e-6).
///
/// Written in files and shown to people as a decimal number (`0.03`); signed data and all
/// arithmetic use the integer. Floats never carry money.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Credits(pub u64);

/// Micro-credits per credit.
pub const MICRO: u64 = 1_000_000;

impl Credits {
    /// Parses a decimal such as `0.03` exactly (up to six decimals).
    pub fn parse_decimal(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let (int, frac) = s.split_once('.').unwrap_or((s, ""));
        if int.is_empty() && frac.is_empty() {
            return Err("empty amount".into());
        }
        if !int.chars().all(|c| c.is_ascii_digit()) || !frac.chars().all(|c| c.is_ascii_digit()) {
            return Err(format!("{s:?} is not a non-negative decimal number"));
        }
        if frac.len() > 6 {
            return Err(format!(
                "{s:?} has more than 6 decimals (1 micro-credit is the smallest unit)"
            ));
        }
        let int: u64 = if int.is_empty() {
            0
        } else {
            int.parse().map_err(|_| format!("{s:?} is too large"))?
        };
        let frac_val: u64 = if frac.is_empty() {
            0
        } else {
            format!("{frac:0<6}")
                .parse()
                .map_err(|_| format!("{s:?} is invalid"))?
        };
        int.checked_mul(MICRO)
            .and_then(|v| v.checked_add(frac_val))
            .map(Credits)
            .ok_or_else(|| format!("{s:?} is too large"))
    }

    /// The amount as a float, for display and JSON only.
    pub fn as_f64(self) -> f64 {
        self.0 as f64 / MICRO as f64
    }
}

impl std::fmt::Display for Credits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let frac = self.0 % MICRO;
        if frac == 0 {
            write!(f, "{}", self.0 / MICRO)
        } else {
            let s = format!("{}.{:06}", self.0 / MICRO, frac);
            f.write_str(s.trim_end_matches('0'))
        }
    }
}

impl Serialize for Credits {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(self.as_f64())
    }
}

impl<'de> Deserialize<'de> for Credits {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(u64),
            Float(f64),
            Str(String),
        }
        match Raw::deserialize(d)? {
            Raw::Int(i) => i
                .checked_mul(MICRO)
                .map(Credits)
                .ok_or_else(|| serde::de::Error::custom("amount too large")),
            // Print the float the way people wrote it, then parse that exactly.
            Raw::Float(f) if f.is_finite() && f >= 0.0 => {
                Credits::parse_decimal(&format!("{}", (f * 1e6).round() / 1e6))
                    .map_err(serde::de::Error::custom)
            }
            Raw::Float(f) => Err(serde::de::Error::custom(format!("invalid amount {f}"))),
            Raw::Str(s) => Credits::parse_decimal(&s).map_err(serde::de::Error::custom),
        }
    }
}
