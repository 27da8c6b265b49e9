//! Airtime budgets: the regional duty cycle and the announce (beacon) cap.
//!
//! Both are a sliding window of transmissions: a frame that starts at `t` counts against the
//! budget until `t + window`. A send is allowed only if the airtime already in the window plus
//! the new frame fits the allowance (`window × fraction`). That guarantees every window of that
//! length, wherever it starts, holds at most the allowance — which is what regulators count.
//! Time is passed in explicitly (`now`), so the accounting is deterministic and testable.

use std::{collections::VecDeque, time::Duration};

use std::time::Instant;

/// The window regulators use for duty cycles (ETSI EN 300 220: one hour).
pub const DUTY_CYCLE_WINDOW: Duration = Duration::from_secs(3600);

/// Most transmissions a budget remembers. When full, sends wait until the oldest expires
/// (at a 1 % budget this allows one frame every 0.9 s on average, more than any LoRa
/// setting can use).
pub const MAX_LEDGER_ENTRIES: usize = 4096;

/// Regulatory duty-cycle presets.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Region {
    /// EU868 sub-band g1 (868.0–868.6 MHz, where the default LoRa channels are): 1 %.
    Eu868G1,
    /// EU868 sub-band g2 (868.7–869.2 MHz): 0.1 %.
    Eu868G2,
    /// EU868 sub-band g3 (869.4–869.65 MHz, 500 mW): 10 %.
    Eu868G3,
    /// A region without a duty-cycle limit (e.g. US915, which limits dwell time instead).
    Unlimited,
    /// Any other fraction of time, `0.0..=1.0`.
    Custom(f64),
}

impl Region {
    /// The fraction of time a transmitter may be on the air, `None` when unlimited.
    pub fn fraction(&self) -> Option<f64> {
        match self {
            Region::Eu868G1 => Some(0.01),
            Region::Eu868G2 => Some(0.001),
            Region::Eu868G3 => Some(0.10),
            Region::Unlimited => None,
            Region::Custom(f) => Some(f.clamp(0.0, 1.0)),
        }
    }

    /// A one-hour budget for this region, `None` when unlimited.
    pub fn budget(&self) -> Option<DutyCycle> {
        self.fraction().map(DutyCycle::new)
    }
}

/// Sliding-window airtime accounting.
#[derive(Clone, Debug)]
pub struct DutyCycle {
    window: Duration,
    allowance: Duration,
    ledger: VecDeque<(Instant, Duration)>,
    used: Duration,
}

impl DutyCycle {
    /// A budget of `fraction` (0.0..=1.0) of a one-hour window.
    pub fn new(fraction: f64) -> Self {
        Self::with_window(fraction, DUTY_CYCLE_WINDOW)
    }

    /// A budget of `fraction` of an arbitrary window.
    pub fn with_window(fraction: f64, window: Duration) -> Self {
        let fraction = if fraction.is_finite() {
            fraction.clamp(0.0, 1.0)
        } else {
            0.0
        };
        DutyCycle {
            window,
            allowance: window.mul_f64(fraction),
            ledger: VecDeque::new(),
            used: Duration::ZERO,
        }
    }

    /// The airtime allowed in any one window.
    pub fn allowance(&self) -> Duration {
        self.allowance
    }

    /// The window length.
    pub fn window(&self) -> Duration {
        self.window
    }

    fn prune(&mut self, now: Instant) {
        while let Some(&(start, airtime)) = self.ledger.front() {
            if now.saturating_duration_since(start) >= self.window {
                self.used = self.used.saturating_sub(airtime);
                self.ledger.pop_front();
            } else {
                break;
            }
        }
    }

    /// Airtime counted in the window ending at `now`.
    pub fn used(&mut self, now: Instant) -> Duration {
        self.prune(now);
        self.used
    }

    /// Airtime still available at `now`.
    pub fn remaining(&mut self, now: Instant) -> Duration {
        self.allowance.saturating_sub(self.used(now))
    }

    /// Reserves `airtime` for a transmission starting at `now`, or says how long to wait
    /// before it would fit (`Duration::MAX` if it never can: larger than the whole allowance).
    pub fn try_reserve(&mut self, airtime: Duration, now: Instant) -> Result<(), Duration> {
        self.prune(now);
        if airtime > self.allowance {
            return Err(Duration::MAX);
        }
        let until_expiry = |start: Instant| (start + self.window).saturating_duration_since(now);
        if self.ledger.len() >= MAX_LEDGER_ENTRIES {
            let oldest = self.ledger.front().map_or(now, |e| e.0);
            return Err(until_expiry(oldest));
        }
        if self.used + airtime <= self.allowance {
            self.ledger.push_back((now, airtime));
            self.used += airtime;
            return Ok(());
        }
        // Find the first moment enough old transmissions have left the window.
        let need = self.used + airtime - self.allowance;
        let mut freed = Duration::ZERO;
        for &(start, t) in &self.ledger {
            freed += t;
            if freed >= need {
                return Err(until_expiry(start));
            }
        }
        // Unreachable in practice: freeing everything frees `used`, and airtime <= allowance.
        Err(self.window)
    }
}

/// A cap on the airtime spent on announcements (beacons), on top of the duty cycle:
/// Reticulum caps announces at 2 % of an interface's capacity, and so do we by default.
///
/// For a duty-cycled link, the cap is a fraction of wall-clock time, so a 2 % cap on a link
/// with a 1 % duty cycle does not bind; pass a smaller fraction (say a quarter of the duty
/// cycle) to keep room for other traffic.
#[derive(Clone, Debug)]
pub struct AnnounceBudget {
    budget: DutyCycle,
}

impl Default for AnnounceBudget {
    /// 2 % of a one-hour window.
    fn default() -> Self {
        AnnounceBudget::new(0.02, DUTY_CYCLE_WINDOW)
    }
}

impl AnnounceBudget {
    /// A cap of `fraction` of any `window`.
    pub fn new(fraction: f64, window: Duration) -> Self {
        AnnounceBudget {
            budget: DutyCycle::with_window(fraction, window),
        }
    }

    /// Reserves airtime for one beacon at `now`, or says how long to wait.
    pub fn try_reserve(&mut self, airtime: Duration, now: Instant) -> Result<(), Duration> {
        self.budget.try_reserve(airtime, now)
    }

    /// The shortest steady beacon interval for frames of `airtime` that stays under the cap.
    pub fn min_interval(&self, airtime: Duration) -> Duration {
        if self.budget.allowance.is_zero() {
            return Duration::MAX;
        }
        let frames = self.budget.allowance.as_nanos() / airtime.as_nanos().max(1);
        if frames == 0 {
            return Duration::MAX;
        }
        self.budget.window / u32::try_from(frames).unwrap_or(u32::MAX)
    }

    /// Airtime used by announcements in the window ending at `now`.
    pub fn used(&mut self, now: Instant) -> Duration {
        self.budget.used(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lora::LoraParams;

    const SEC: Duration = Duration::from_secs(1);

    #[test]
    fn one_percent_at_sf12_allows_four_full_frames_an_hour() {
        let t = LoraParams::new(12, 125_000).airtime(220); // 7.87 s
        let mut dc = Region::Eu868G1.budget().unwrap();
        assert_eq!(dc.allowance(), Duration::from_secs(36));
        let t0 = Instant::now();
        let mut sent = 0;
        let mut now = t0;
        while dc.try_reserve(t, now).is_ok() {
            sent += 1;
            now += t;
        }
        assert_eq!(sent, 4); // 4 × 7.87 s = 31.5 s ≤ 36 s < 5 × 7.87 s
        let retry = dc.try_reserve(t, now).unwrap_err();
        // The first frame leaves the window one hour after it started.
        assert_eq!(now + retry, t0 + DUTY_CYCLE_WINDOW);
        assert!(dc.try_reserve(t, now + retry - SEC).is_err());
        assert!(dc.try_reserve(t, now + retry).is_ok());
    }

    #[test]
    fn retry_after_points_at_enough_expired_airtime() {
        let mut dc = DutyCycle::with_window(0.1, Duration::from_secs(100)); // 10 s allowance
        let t0 = Instant::now();
        dc.try_reserve(3 * SEC, t0).unwrap();
        dc.try_reserve(3 * SEC, t0 + 10 * SEC).unwrap();
        dc.try_reserve(3 * SEC, t0 + 20 * SEC).unwrap();
        assert_eq!(dc.used(t0 + 30 * SEC), 9 * SEC);
        // 5 s more needs 4 s freed: two frames must expire, the second at t0 + 110 s.
        let now = t0 + 30 * SEC;
        assert_eq!(dc.try_reserve(5 * SEC, now), Err(80 * SEC));
        assert_eq!(dc.try_reserve(SEC, now), Ok(()));
        assert_eq!(dc.remaining(now), Duration::ZERO);
        assert_eq!(dc.used(t0 + 100 * SEC), 7 * SEC);
    }

    #[test]
    fn never_fitting_frame_says_so() {
        let mut dc = DutyCycle::new(0.0);
        assert_eq!(dc.try_reserve(SEC, Instant::now()), Err(Duration::MAX));
        let dc = DutyCycle::new(f64::NAN);
        assert_eq!(dc.allowance(), Duration::ZERO);
        assert_eq!(Region::Unlimited.budget().map(|b| b.allowance()), None);
        assert_eq!(
            Region::Eu868G3.budget().unwrap().allowance(),
            Duration::from_secs(360)
        );
    }

    #[test]
    fn every_window_stays_within_allowance_under_greedy_sender() {
        // A sender that transmits whenever allowed, with uneven frame sizes.
        let window = Duration::from_secs(60);
        let mut dc = DutyCycle::with_window(0.05, window);
        let t0 = Instant::now();
        let mut log = Vec::new();
        let mut now = t0;
        for i in 0..2000u64 {
            let air = Duration::from_millis(50 + (i * 37) % 400);
            match dc.try_reserve(air, now) {
                Ok(()) => {
                    log.push((now, air));
                    now += air;
                }
                Err(wait) => now += wait.min(Duration::from_secs(1)),
            }
        }
        assert!(log.len() > 100);
        for (i, &(start, _)) in log.iter().enumerate() {
            let in_window: Duration = log[i..]
                .iter()
                .take_while(|(s, _)| *s < start + window)
                .map(|(_, a)| *a)
                .sum();
            assert!(
                in_window <= dc.allowance(),
                "window at {i} holds {in_window:?}"
            );
        }
    }

    #[test]
    fn announce_budget_caps_beacons() {
        let beacon = LoraParams::new(7, 125_000).airtime(125);
        let mut ab = AnnounceBudget::default(); // 72 s per hour
        let interval = ab.min_interval(beacon);
        // 2 %: one beacon every 50 airtimes.
        assert!(
            interval >= beacon * 50 && interval <= beacon * 51,
            "{interval:?}"
        );
        let t0 = Instant::now();
        let mut ok = 0u32;
        for i in 0..10_000u32 {
            if ab
                .try_reserve(beacon, t0 + Duration::from_millis(100) * i)
                .is_ok()
            {
                ok += 1;
            }
        }
        // 1000 s of trying, all inside one hour: at most 72 s of beacons.
        assert!(beacon * ok <= Duration::from_secs(72));
        assert!(beacon * (ok + 1) > Duration::from_secs(72));
    }
}
