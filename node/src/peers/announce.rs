//! This node's announcement (signed, gossiped on `offgrid/announce/1`) and the
//! verification of everyone else's.

use tokio::time::Instant;

use libp2p::{gossipsub::MessageAcceptance, Multiaddr, PeerId};
use offgrid_behaviours::announce::{self, Announcement, Capacity, SignedAnnouncement};
use tracing::{debug, warn};

use super::{
    offer::{HostSettings, HostUpdate},
    registry::{routable, AnnounceOutcome},
    service::Service,
};
use crate::{config::Config, identity::Identity, now_ms};

/// The announcement for these settings and listen addresses (seq is the last one issued).
pub(super) fn build(
    identity: &Identity,
    cfg: &Config,
    s: &HostSettings,
    listen_addrs: &[Multiaddr],
) -> Announcement {
    let cap = &cfg.host.capacity;
    let cpu = if cap.cpu_cores == 0 {
        std::thread::available_parallelism().map_or(1, |n| n.get() as u32)
    } else {
        cap.cpu_cores
    };
    Announcement {
        node_id: identity.peer_id().to_string(),
        seq: s.seq,
        active: s.active,
        prices: offered_prices(cfg, s),
        job_types: cfg.executors.keys().cloned().collect(),
        min_oncall_percent: s.min_oncall_percent,
        burst_percent_max: s.burst_percent_max,
        burst: s.burst,
        capacity: Capacity {
            cpu_cores: cpu,
            storage_bytes: cap.storage_bytes,
        },
        listen_addrs: listen_addrs
            .iter()
            .map(|a| a.to_string())
            .filter(|a| routable(a))
            .collect(),
        issued_at_ms: now_ms(),
    }
}

/// Resources priced apart from any executor: storage and bandwidth, which hosts bill
/// without running a job.
pub const RESOURCES: [&str; 2] = ["storage", "bandwidth"];

/// The prices a host announces: only for job types it has an executor for, and for the
/// resources it bills ([`RESOURCES`]). A price without an executor would draw jobs it can
/// only fail.
fn offered_prices(cfg: &Config, s: &HostSettings) -> std::collections::BTreeMap<String, u64> {
    s.prices
        .iter()
        .filter(|(t, _)| cfg.executors.contains_key(*t) || RESOURCES.contains(&t.as_str()))
        .map(|(t, p)| (t.clone(), *p))
        .collect()
}

impl Service {
    /// The announcement as it stands.
    pub(super) fn announcement(&self) -> Announcement {
        self.offer
            .read(|s| build(&self.identity, &self.cfg, s, &self.listen_addrs))
    }

    /// Applies a change, persists it with a new seq, then announces it.
    pub(super) async fn update_offer(
        &mut self,
        update: HostUpdate,
    ) -> Result<Announcement, String> {
        let mut next = self.offer.get();
        next.apply(update)?;
        next.bump_seq();
        self.save_settings(&next)
            .await
            .map_err(|e| format!("cannot save settings: {e}"))?;
        self.offer.set(next);
        self.send_announcement();
        Ok(self.announcement())
    }

    /// Issues a new announcement: bumps and persists the seq, then publishes.
    pub(super) async fn publish_announcement(&mut self) {
        let mut next = self.offer.get();
        next.bump_seq();
        if let Err(e) = self.save_settings(&next).await {
            warn!(error = %e, "cannot persist announcement seq");
        }
        self.offer.set(next);
        self.send_announcement();
    }

    /// Signs and publishes the announcement with the current seq.
    fn send_announcement(&mut self) {
        self.announce_due = None;
        self.last_announce = Instant::now();
        let ann = self.announcement();
        self.announced.send_replace(ann.clone());
        match ann.sign(self.identity.keypair()) {
            Ok(signed) => {
                debug!(seq = ann.seq, active = ann.active, "announced");
                // Nobody subscribed yet is fine: the next Subscribed event re-announces.
                self.net
                    .publish(announce::TOPIC.to_owned(), signed.to_wire());
            }
            Err(e) => warn!(error = %e, "cannot sign announcement"),
        }
    }

    /// Verifies and stores a peer's announcement; only accepted ones are relayed. Stale or
    /// future-dated ones, and those beyond a forwarding peer's rate, are ignored (not relayed,
    /// not stored, no disk write).
    pub(super) fn on_announcement(&mut self, data: &[u8], from: PeerId) -> MessageAcceptance {
        if !self.forwarders.take(from, Instant::now()) {
            return MessageAcceptance::Ignore;
        }
        let verified = SignedAnnouncement::from_wire(data).and_then(|s| s.verify().map(|v| (s, v)));
        match verified {
            Ok((signed, (signer, ann))) => {
                if signer == self.identity.peer_id() {
                    return MessageAcceptance::Ignore;
                }
                if !fresh(ann.issued_at_ms, now_ms()) {
                    debug!(peer = %signer, issued = ann.issued_at_ms, "stale announcement ignored");
                    return MessageAcceptance::Ignore;
                }
                let (seq, active) = (ann.seq, ann.active);
                // Relayed announcements of peers not heard first-hand are held unconfirmed.
                let first_hand = signer == from;
                let outcome = self
                    .registry
                    .announce(ann, signed, "ip", now_ms(), first_hand);
                if outcome == AnnounceOutcome::Updated {
                    debug!(peer = %signer, seq, active, first_hand, "announcement stored");
                    // The announcer may be new to us: dial it if that is our job. Fresh keys
                    // cost nothing, so dials to unconfirmed peers share one slow budget.
                    let id = signer.to_string();
                    let now = Instant::now();
                    let worth = !self.registry.is_unconfirmed(&id) || self.forwarders.dial(now);
                    if let Some(rec) = self.registry.get(&id).filter(|_| worth) {
                        let addrs = rec.addrs.iter().filter_map(|a| a.parse().ok()).collect();
                        self.maybe_dial(signer, addrs, now);
                    }
                }
                MessageAcceptance::Accept
            }
            Err(e) => {
                warn!(peer = %from, error = %e, "announcement rejected");
                MessageAcceptance::Reject
            }
        }
    }
}

/// Oldest announcement taken: peers re-announce far more often than this.
pub const MAX_AGE_MS: u64 = 10 * 60_000;
/// Furthest in the future an announcement may be dated (clock skew).
pub const MAX_SKEW_MS: u64 = 2 * 60_000;

/// Whether an announcement issued at `issued_ms` is fresh at `now_ms`.
pub fn fresh(issued_ms: u64, now_ms: u64) -> bool {
    issued_ms.saturating_add(MAX_AGE_MS) >= now_ms
        && issued_ms <= now_ms.saturating_add(MAX_SKEW_MS)
}

/// Announcements one forwarding peer may bring per second, and at once.
const FORWARD_RATE: f64 = 10.0;
const FORWARD_BURST: f64 = 50.0;
/// Forwarders tracked at once.
const MAX_FORWARDERS: usize = 1024;

/// Dials a second, and at once, to peers known only from relayed announcements.
const UNCONFIRMED_DIAL_RATE: f64 = 1.0;
const UNCONFIRMED_DIAL_BURST: f64 = 8.0;

/// A token bucket per forwarding peer, bounded, and one for dials to unconfirmed peers.
#[derive(Debug)]
pub(crate) struct Forwarders {
    buckets: crate::buckets::Buckets<PeerId>,
    dials: crate::buckets::Buckets<()>,
}

impl Default for Forwarders {
    fn default() -> Self {
        Forwarders {
            buckets: crate::buckets::Buckets::new(FORWARD_RATE, FORWARD_BURST, MAX_FORWARDERS),
            dials: crate::buckets::Buckets::new(UNCONFIRMED_DIAL_RATE, UNCONFIRMED_DIAL_BURST, 1),
        }
    }
}

impl Forwarders {
    /// Takes one announcement from `from`; `false` when its bucket is empty.
    pub(crate) fn take(&mut self, from: PeerId, now: Instant) -> bool {
        self.buckets.take(from, now.into_std()).is_ok()
    }

    /// Takes one dial to an unconfirmed peer; `false` when the budget is spent.
    pub(crate) fn dial(&mut self, now: Instant) -> bool {
        self.dials.take((), now.into_std()).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn stale_and_future_announcements_are_not_fresh() {
        let now = 100 * 60_000;
        assert!(fresh(now, now));
        assert!(fresh(now - MAX_AGE_MS, now));
        assert!(!fresh(now - MAX_AGE_MS - 1, now));
        assert!(fresh(now + MAX_SKEW_MS, now));
        assert!(!fresh(now + MAX_SKEW_MS + 1, now));
        assert!(!fresh(0, now));
    }

    #[test]
    fn a_flooding_forwarder_is_cut_off_and_others_are_not() {
        let mut f = Forwarders::default();
        let (flood, honest) = (PeerId::random(), PeerId::random());
        let t = Instant::now();
        let taken = (0..10_000).filter(|_| f.take(flood, t)).count();
        assert_eq!(taken, FORWARD_BURST as usize);
        assert!(f.take(honest, t), "another peer keeps its own budget");
        // A second later it has ten more.
        let later = t + Duration::from_secs(1);
        assert_eq!((0..100).filter(|_| f.take(flood, later)).count(), 10);
        // Bounded however many forwarders there are.
        for _ in 0..(MAX_FORWARDERS + 10) {
            f.take(PeerId::random(), later);
        }
        assert!(f.buckets.len() <= MAX_FORWARDERS);
    }

    #[test]
    fn only_job_types_with_an_executor_and_billed_resources_get_a_price() {
        let cfg = Config::default();
        let s = HostSettings::from_config(&cfg);
        // The defaults price compute, but no executor runs it until one is configured.
        assert!(s.prices.contains_key("compute"));
        let offered = offered_prices(&cfg, &s);
        assert!(!offered.contains_key("compute"), "{offered:?}");
        assert!(offered.contains_key("echo"));
        assert!(offered.contains_key("storage") && offered.contains_key("bandwidth"));
        let mut with = cfg.clone();
        with.executors
            .insert("compute".into(), crate::config::ExecutorConfig::default());
        assert!(offered_prices(&with, &s).contains_key("compute"));
    }
}
