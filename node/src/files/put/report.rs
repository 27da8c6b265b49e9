//! Progress reports of a put to the failover monitor.

use std::{sync::atomic::Ordering, time::Instant};

use super::REPORT_EVERY;
use crate::files::{ops::Progress, Storage};

/// What a put tells the failover monitor (`GET /quorum/items`): its start, its progress (the
/// share of shards placed) at most every [`REPORT_EVERY`], and at the end an ack from every
/// host that stored shards (weighted by link and reputation), so the item reaches its quorum
/// when the upload is complete. A put that stops making progress before (hosts that keep
/// their connections but never answer) raises an alert at `GET /quorum/alerts`; a cancelled
/// put stays incomplete there until the same put resumes it.
pub(super) struct UploadReport<'a> {
    tracker: Option<&'a crate::failover::JobTracker>,
    asset: String,
    last: Instant,
}

impl<'a> UploadReport<'a> {
    pub(super) fn start(storage: &'a Storage, asset: &str, progress: &Progress) -> Self {
        let tracker = storage.upload_tracker.get().map(|t| &**t);
        if let Some(t) = tracker {
            t.upload_started(asset);
        }
        let mut r = Self {
            tracker,
            asset: asset.to_owned(),
            last: Instant::now(),
        };
        r.progress(progress, true);
        r
    }

    /// The manifest is saved: the upload is complete, whatever share of `n` it placed.
    /// `hosts` are those the manifest names (a resumed put stored on some in an earlier run).
    pub(super) fn done<'h>(&self, hosts: impl IntoIterator<Item = &'h str>) {
        let Some(t) = self.tracker else { return };
        for host in hosts {
            // Shards travel only over IP links (see `hosts`).
            t.upload_ack(&self.asset, host, "ip");
        }
        t.upload_progress(&self.asset, 1.0);
    }

    pub(super) fn progress(&mut self, progress: &Progress, now: bool) {
        let Some(t) = self.tracker else { return };
        if !now && self.last.elapsed() < REPORT_EVERY {
            return;
        }
        self.last = Instant::now();
        let total = progress.shards_total.load(Ordering::Relaxed);
        let done = progress.shards_done.load(Ordering::Relaxed);
        let share = if total == 0 {
            1.0
        } else {
            done as f64 / total as f64
        };
        t.upload_progress(&self.asset, share);
    }
}
