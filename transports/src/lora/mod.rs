//! LoRa radio parameters and the Semtech time-on-air formula, plus airtime budgets.
//!
//! Time on air (Semtech AN1200.13 / SX127x datasheet §4.1.1.7):
//!
//! ```text
//! T_sym      = 2^SF / BW
//! T_preamble = (n_preamble + 4.25) · T_sym
//! n_payload  = 8 + max(ceil((8·PL − 4·SF + 28 + 16·CRC − 20·IH) / (4·(SF − 2·DE))) · (CR + 4), 0)
//! T_packet   = T_preamble + n_payload · T_sym
//! ```
//!
//! with PL the payload length, IH = 1 for implicit header, DE = 1 with low-data-rate
//! optimisation, CR = 1..4 for coding rates 4/5..4/8. The arithmetic here is exact integer
//! nanoseconds, so results are deterministic across platforms.

mod duty;

use std::time::Duration;

pub use duty::{AnnounceBudget, DutyCycle, Region, DUTY_CYCLE_WINDOW, MAX_LEDGER_ENTRIES};

/// The largest payload of one LoRa frame on Offgrid links (⚖ radio contract).
pub const LORA_MTU: usize = 220;

/// Low-data-rate optimisation setting.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum LowDataRate {
    /// On when the symbol time exceeds 16 ms (what Semtech recommends and most firmware does).
    #[default]
    Auto,
    /// Always on.
    On,
    /// Always off.
    Off,
}

/// The modem settings that determine airtime.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoraParams {
    /// Spreading factor, 7..=12.
    pub sf: u8,
    /// Bandwidth in Hz (125_000, 250_000, 500_000, …).
    pub bw_hz: u32,
    /// Coding rate denominator, 5..=8 for 4/5..4/8.
    pub cr: u8,
    /// Preamble length in symbols.
    pub preamble: u16,
    /// Explicit header (the usual mode).
    pub explicit_header: bool,
    /// Payload CRC.
    pub crc: bool,
    /// Low-data-rate optimisation.
    pub low_data_rate_optimize: LowDataRate,
}

impl Default for LoraParams {
    /// SF7, 125 kHz, CR 4/5, 8-symbol preamble, explicit header, CRC on.
    fn default() -> Self {
        LoraParams {
            sf: 7,
            bw_hz: 125_000,
            cr: 5,
            preamble: 8,
            explicit_header: true,
            crc: true,
            low_data_rate_optimize: LowDataRate::Auto,
        }
    }
}

impl LoraParams {
    /// Default parameters with the given spreading factor and bandwidth. Values out of range
    /// are clamped (SF to 7..=12, bandwidth to at least 7.8 kHz).
    pub fn new(sf: u8, bw_hz: u32) -> Self {
        LoraParams {
            sf: sf.clamp(7, 12),
            bw_hz: bw_hz.max(7_800),
            ..Self::default()
        }
    }

    /// Sets the coding rate denominator (5..=8, clamped).
    pub fn with_cr(mut self, cr: u8) -> Self {
        self.cr = cr.clamp(5, 8);
        self
    }

    /// Sets the preamble length in symbols.
    pub fn with_preamble(mut self, preamble: u16) -> Self {
        self.preamble = preamble;
        self
    }

    /// Sets the low-data-rate optimisation mode.
    pub fn with_low_data_rate(mut self, ldro: LowDataRate) -> Self {
        self.low_data_rate_optimize = ldro;
        self
    }

    // Field values are clamped here as well, since the fields are public.
    fn sf(&self) -> u64 {
        u64::from(self.sf.clamp(7, 12))
    }

    fn bw(&self) -> u64 {
        u64::from(self.bw_hz.max(7_800))
    }

    /// Duration of one symbol.
    pub fn symbol_time(&self) -> Duration {
        Duration::from_nanos((1u64 << self.sf()) * 1_000_000_000 / self.bw())
    }

    /// Whether low-data-rate optimisation is in effect.
    pub fn ldro(&self) -> bool {
        match self.low_data_rate_optimize {
            LowDataRate::On => true,
            LowDataRate::Off => false,
            // symbol time > 16 ms  ⇔  2^SF · 1000 > 16 · BW
            LowDataRate::Auto => (1u64 << self.sf()) * 1000 > 16 * self.bw(),
        }
    }

    /// Number of payload symbols (including the 8 fixed ones) for `payload_len` bytes.
    pub fn payload_symbols(&self, payload_len: usize) -> u64 {
        let sf = self.sf() as i64;
        let pl = payload_len as i64;
        let crc = i64::from(self.crc);
        let ih = i64::from(!self.explicit_header);
        let de = i64::from(self.ldro());
        let num = 8 * pl - 4 * sf + 28 + 16 * crc - 20 * ih;
        let den = 4 * (sf - 2 * de);
        let blocks = if num > 0 { (num + den - 1) / den } else { 0 };
        let cr = i64::from(self.cr.clamp(5, 8));
        8 + (blocks * cr) as u64
    }

    /// Time on air of one frame carrying `payload_len` bytes.
    pub fn airtime(&self, payload_len: usize) -> Duration {
        let sym_num = 1u128 << self.sf(); // T_sym = sym_num / BW seconds
        let bw = u128::from(self.bw());
        // Preamble in quarter symbols: 4·n + 17 = 4·(n + 4.25).
        let quarter_syms =
            4 * u128::from(self.preamble) + 17 + 4 * u128::from(self.payload_symbols(payload_len));
        let nanos = quarter_syms * sym_num * 1_000_000_000 / (4 * bw);
        Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(got: Duration, want_ms: f64, tol: f64) {
        let got_ms = got.as_secs_f64() * 1000.0;
        assert!(
            (got_ms - want_ms).abs() <= want_ms * tol,
            "airtime {got_ms:.3} ms, expected {want_ms} ms ± {:.0} %",
            tol * 100.0
        );
    }

    #[test]
    fn known_airtimes() {
        // The figures the design is built on (NOTES.md; Semtech LoRa calculator).
        close(LoraParams::new(7, 125_000).airtime(220), 348.0, 0.01);
        close(LoraParams::new(11, 250_000).airtime(220), 1800.0, 0.01);
        close(LoraParams::new(12, 125_000).airtime(220), 7900.0, 0.01);
        // Exact values from the formula.
        assert_eq!(
            LoraParams::new(7, 125_000).airtime(220),
            Duration::from_micros(348_416)
        );
        assert_eq!(
            LoraParams::new(12, 125_000).airtime(220),
            Duration::from_micros(7_872_512)
        );
        // Small frames: a 10-byte frame at SF7/125 kHz takes 41.2 ms (Semtech calculator).
        close(LoraParams::new(7, 125_000).airtime(10), 41.216, 0.001);
    }

    #[test]
    fn ldro_auto_switches_above_16ms_symbols() {
        assert!(!LoraParams::new(10, 125_000).ldro()); // 8.192 ms
        assert!(LoraParams::new(11, 125_000).ldro()); // 16.384 ms
        assert!(!LoraParams::new(11, 250_000).ldro()); // 8.192 ms
        assert!(LoraParams::new(12, 125_000).ldro());
        let forced = LoraParams::new(12, 125_000).with_low_data_rate(LowDataRate::Off);
        assert!(forced.airtime(220) < LoraParams::new(12, 125_000).airtime(220));
    }

    #[test]
    fn airtime_grows_with_payload_sf_and_cr() {
        let p = LoraParams::default();
        let mut last = Duration::ZERO;
        for len in 0..=255 {
            let t = p.airtime(len);
            assert!(t >= last, "airtime must be monotonic in payload length");
            last = t;
        }
        assert!(p.with_cr(8).airtime(100) > p.airtime(100));
        assert!(LoraParams::new(8, 125_000).airtime(100) > p.airtime(100));
        assert!(LoraParams::new(7, 500_000).airtime(100) < p.airtime(100));
        // Zero payload: preamble + 8 header symbols (implicit content).
        assert_eq!(p.payload_symbols(0), 8 + 5);
    }
}
