//! The quorum engine's store and the failover monitor.
//!
//! [`QuorumEngine`] keeps [`QuorumItem`]s for jobs and uploads (write-through to
//! `Table::Quorum`), weighs acks by policy or automatically (link × gossiped reputation).
//! [`JobTracker`] is the hook the broker uses: each host attempt is an item; the monitor
//! task asks [`offgrid_ledger::Monitor`] for stalled items and, for a job, signals the
//! broker's running attempt to give up so it moves to the next host; for an upload it raises
//! an alert (log + `GET /quorum/alerts`).

use std::{
    collections::{BTreeMap, HashMap, VecDeque},
    future::Future,
    sync::{Arc, Mutex},
    time::Duration,
};

use offgrid_ledger::{
    auto_weight,
    quorum::{Policies, QuorumItem, QuorumKind},
    Monitor, ReputationCrdt,
};
use serde::Serialize;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

pub mod config;

pub use self::config::{FailoverConfig, KindConfig, QuorumConfig};
use crate::{
    now_ms,
    store::{Op, Store, Table},
};

/// Most job and upload items kept; the oldest finished ones go first.
pub const MAX_ITEMS: usize = 4096;
/// Most alerts kept.
pub const MAX_ALERTS: usize = 256;

fn key(kind: QuorumKind, id: &str) -> String {
    let k = match kind {
        QuorumKind::Upload => "upload",
        QuorumKind::Job => "job",
        QuorumKind::Token => "token",
    };
    format!("{k}:{id}")
}

/// A stalled upload, for operators.
#[derive(Debug, Clone, Serialize)]
pub struct Alert {
    /// The upload id.
    pub id: String,
    /// Which requeue this is.
    pub attempt: u32,
    /// When, Unix milliseconds.
    pub at_ms: u64,
    /// What happened.
    pub message: String,
}

/// Items, policies and reputation used to weigh acks.
pub struct QuorumEngine {
    cfg: QuorumConfig,
    policies: Policies,
    items: BTreeMap<String, QuorumItem>,
    /// Keys changed since the last flush (monitoring state: written in one transaction
    /// per monitor pass, never an fsync per job on the broker's hot path).
    dirty: std::collections::BTreeSet<String>,
    store: Arc<Store>,
    reputation: Arc<Mutex<ReputationCrdt>>,
}

impl QuorumEngine {
    /// Loads stored items.
    pub fn load(
        cfg: QuorumConfig,
        store: Arc<Store>,
        reputation: Arc<Mutex<ReputationCrdt>>,
    ) -> Result<Self, crate::store::StoreError> {
        let items = store
            .scan::<QuorumItem>(Table::Quorum)?
            .into_iter()
            .collect();
        Ok(QuorumEngine {
            policies: cfg.policies(),
            cfg,
            items,
            dirty: Default::default(),
            store,
            reputation,
        })
    }

    /// The policies per kind.
    pub fn policies(&self) -> &Policies {
        &self.policies
    }

    /// The configuration (required weights, auto-weights).
    pub fn config(&self) -> &QuorumConfig {
        &self.cfg
    }

    /// The weight of an ack by `node` heard over `via`: a configured per-node weight, else
    /// the automatic weight (link × reputation) or the policy default.
    pub fn weight_for(&self, kind: QuorumKind, node: &str, via: &str) -> f64 {
        let p = self.policies.get(kind);
        if let Some(w) = p.node_weights.get(node) {
            return *w;
        }
        if self.cfg.auto_weights {
            let score = self.reputation.lock().map(|r| r.score(node)).unwrap_or(0.5);
            return auto_weight(via, score);
        }
        p.weight_default
    }

    fn required(&self, kind: QuorumKind) -> f64 {
        match kind {
            QuorumKind::Upload => self.cfg.upload.required,
            QuorumKind::Job => self.cfg.job.required,
            QuorumKind::Token => self.cfg.token.required,
        }
    }

    fn save(&mut self, kind: QuorumKind, id: &str) {
        self.dirty.insert(key(kind, id));
        if self.items.len() > MAX_ITEMS {
            // Evict the oldest tenth at once, so a full engine costs one sort per many
            // inserts rather than a scan per insert.
            let mut by_age: Vec<(u64, String)> = self
                .items
                .iter()
                .map(|(k, i)| (i.created_ms, k.clone()))
                .collect();
            by_age.sort_unstable();
            for (_, k) in by_age
                .into_iter()
                .take(self.items.len() - MAX_ITEMS * 9 / 10)
            {
                self.items.remove(&k);
                self.dirty.insert(k);
            }
        }
    }

    /// Writes every change since the last flush in one transaction. Blocks: call it from a
    /// blocking thread.
    pub fn flush(&mut self) {
        if self.dirty.is_empty() {
            return;
        }
        let changes: Vec<(String, Option<QuorumItem>)> = std::mem::take(&mut self.dirty)
            .into_iter()
            .map(|k| {
                let item = self.items.get(&k).cloned();
                (k, item)
            })
            .collect();
        let res = changes
            .iter()
            .map(|(k, item)| match item {
                Some(i) => Op::put(Table::Quorum, k.as_str(), i),
                None => Ok(Op::delete(Table::Quorum, k.as_str())),
            })
            .collect::<Result<Vec<_>, _>>()
            .and_then(|ops| self.store.commit_blocking(ops));
        if let Err(e) = res {
            warn!(error = %e, "cannot persist quorum items");
        }
    }

    /// Starts (or restarts) tracking an item with progress 0.
    pub fn start(&mut self, kind: QuorumKind, id: &str) {
        let now = now_ms();
        let mut item = QuorumItem::new(kind, id, self.required(kind), now);
        item.record_progress(now, 0.0);
        self.items.insert(key(kind, id), item);
        self.save(kind, id);
    }

    /// Records progress in [0, 1].
    pub fn progress(&mut self, kind: QuorumKind, id: &str, value: f64) {
        if let Some(i) = self.items.get_mut(&key(kind, id)) {
            i.record_progress(now_ms(), value);
            self.save(kind, id);
        }
    }

    /// Records `node`'s ack, weighted by [`QuorumEngine::weight_for`].
    pub fn ack(&mut self, kind: QuorumKind, id: &str, node: &str, via: &str) {
        let w = self.weight_for(kind, node, via);
        if let Some(i) = self.items.get_mut(&key(kind, id)) {
            i.ack(node, w, now_ms());
            self.save(kind, id);
        }
    }

    /// One item.
    pub fn get(&self, kind: QuorumKind, id: &str) -> Option<QuorumItem> {
        self.items.get(&key(kind, id)).cloned()
    }

    /// Every item (jobs and uploads).
    pub fn items(&self) -> Vec<QuorumItem> {
        self.items.values().cloned().collect()
    }
}

/// The broker's and storage's hook into the engine and the failover monitor.
pub struct JobTracker {
    engine: Mutex<QuorumEngine>,
    running: Mutex<HashMap<String, oneshot::Sender<()>>>,
    alerts: Mutex<VecDeque<Alert>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A poisoned lock only means a panic elsewhere mid-update of plain data.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl JobTracker {
    /// A tracker over `engine`.
    pub fn new(engine: QuorumEngine) -> Self {
        JobTracker {
            engine: Mutex::new(engine),
            running: Mutex::new(HashMap::new()),
            alerts: Mutex::new(VecDeque::new()),
        }
    }

    /// Runs `f` with the engine.
    pub fn with_engine<R>(&self, f: impl FnOnce(&mut QuorumEngine) -> R) -> R {
        f(&mut lock(&self.engine))
    }

    /// Runs one host attempt of a job under the monitor: the item restarts with progress 0,
    /// and if the monitor requeues it before `attempt` finishes, the attempt is dropped and
    /// `Err` says why. On completion the host acks (weighted by link and reputation) when
    /// `is_ok` says the attempt succeeded.
    pub async fn watch<T>(
        &self,
        job_id: &str,
        host: &str,
        via: &str,
        attempt: impl Future<Output = T>,
        is_ok: impl FnOnce(&T) -> bool,
    ) -> Result<T, String> {
        let (tx, rx) = oneshot::channel();
        self.with_engine(|e| e.start(QuorumKind::Job, job_id));
        lock(&self.running).insert(job_id.to_owned(), tx);
        let out = tokio::select! {
            r = attempt => Ok(r),
            Ok(()) = rx => Err("requeued by the failover monitor: no progress".to_owned()),
        };
        lock(&self.running).remove(job_id);
        if let Ok(r) = &out {
            if is_ok(r) {
                self.with_engine(|e| {
                    e.ack(QuorumKind::Job, job_id, host, via);
                    e.progress(QuorumKind::Job, job_id, 1.0);
                });
            }
        }
        out
    }

    /// Reports a running job's progress in [0, 1) (from its host's heartbeats).
    pub fn progress(&self, job_id: &str, value: f64) {
        self.with_engine(|e| e.progress(QuorumKind::Job, job_id, value));
    }

    /// Registers an upload with the monitor.
    pub fn upload_started(&self, upload_id: &str) {
        self.with_engine(|e| e.start(QuorumKind::Upload, upload_id));
    }

    /// Reports an upload's progress in [0, 1].
    pub fn upload_progress(&self, upload_id: &str, value: f64) {
        self.with_engine(|e| e.progress(QuorumKind::Upload, upload_id, value));
    }

    /// Records a host's ack of an upload.
    pub fn upload_ack(&self, upload_id: &str, host: &str, via: &str) {
        self.with_engine(|e| e.ack(QuorumKind::Upload, upload_id, host, via));
    }

    /// Alerts raised so far, newest last.
    pub fn alerts(&self) -> Vec<Alert> {
        lock(&self.alerts).iter().cloned().collect()
    }

    /// One monitor pass at `now`: requeues stalled jobs, alerts on stalled uploads.
    pub fn check(&self, monitor: &mut Monitor, now: u64) -> Vec<offgrid_ledger::Requeue> {
        let (items, policies) = self.with_engine(|e| {
            let items: Vec<QuorumItem> = e
                .items()
                .into_iter()
                .filter(|i| i.kind != QuorumKind::Token)
                // Progress 1 means done: a finished job or upload never stalls.
                .filter(|i| i.latest_progress() < 1.0)
                .collect();
            (items, e.policies().clone())
        });
        let requeues = monitor.check(&items, &policies, now);
        for r in &requeues {
            match r.kind {
                QuorumKind::Job => {
                    if let Some(tx) = lock(&self.running).remove(&r.id) {
                        info!(job_id = %r.id, attempt = r.attempt, "job stalled; reassigning to the next host");
                        let _ = tx.send(());
                    }
                }
                QuorumKind::Upload => {
                    warn!(upload = %r.id, attempt = r.attempt, "upload stalled");
                    let mut a = lock(&self.alerts);
                    if a.len() >= MAX_ALERTS {
                        a.pop_front();
                    }
                    a.push_back(Alert {
                        id: r.id.clone(),
                        attempt: r.attempt,
                        at_ms: now,
                        message: "upload made no progress: its hosts do not answer, or it was cancelled; the same put resumes it".into(),
                    });
                }
                QuorumKind::Token => {}
            }
        }
        requeues
    }

    /// The monitor task: checks every `check_interval_ms` until cancelled.
    pub async fn run_monitor(self: Arc<Self>, cfg: FailoverConfig, cancel: CancellationToken) {
        let mut monitor = cfg.monitor();
        let mut tick = tokio::time::interval(Duration::from_millis(cfg.check_interval_ms.max(50)));
        loop {
            tokio::select! {
                biased;
                _ = cancel.cancelled() => break,
                _ = tick.tick() => {}
            }
            self.check(&mut monitor, now_ms());
            let me = self.clone();
            let _ = tokio::task::spawn_blocking(move || me.with_engine(QuorumEngine::flush)).await;
        }
        let _ = tokio::task::spawn_blocking(move || self.with_engine(QuorumEngine::flush)).await;
    }
}

/// Loads the quorum engine and starts the failover monitor.
pub fn start(
    quorum: QuorumConfig,
    failover: FailoverConfig,
    store: Arc<Store>,
    reputation: Arc<Mutex<ReputationCrdt>>,
    cancel: CancellationToken,
    tasks: &mut tokio::task::JoinSet<()>,
) -> Result<Arc<JobTracker>, crate::store::StoreError> {
    let engine = QuorumEngine::load(quorum, store, reputation)?;
    let tracker = Arc::new(JobTracker::new(engine));
    tasks.spawn(tracker.clone().run_monitor(failover, cancel));
    Ok(tracker)
}

#[cfg(test)]
#[path = "tests.rs"]
mod monitor_tests;

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn tracker() -> Arc<JobTracker> {
        let store = Arc::new(Store::in_memory().unwrap());
        let engine =
            QuorumEngine::load(QuorumConfig::default(), store, Default::default()).unwrap();
        Arc::new(JobTracker::new(engine))
    }

    #[tokio::test]
    async fn a_stalled_job_attempt_is_requeued_and_a_finished_one_is_acked() {
        let t = tracker();
        let mut monitor = FailoverConfig {
            stall_age_s: 1,
            cooldown_s: 0,
            ..Default::default()
        }
        .monitor();
        let t2 = t.clone();
        let stuck = tokio::spawn(async move {
            t2.watch("j1", "hostA", "ip", std::future::pending::<()>(), |_| true)
                .await
        });
        // Let the attempt register, then look 2 s into the future: no progress → requeue.
        while t.with_engine(|e| e.get(QuorumKind::Job, "j1")).is_none() {
            tokio::task::yield_now().await;
        }
        let later = now_ms() + 2_000;
        let rq = t.check(&mut monitor, later);
        assert_eq!(rq.len(), 1);
        assert_eq!(rq[0].id, "j1");
        let err = stuck.await.unwrap().unwrap_err();
        assert!(err.contains("requeued"), "{err}");

        let ok = t.watch("j2", "hostB", "ip", async { 7 }, |_| true).await;
        assert_eq!(ok.unwrap(), 7);
        let item = t.with_engine(|e| e.get(QuorumKind::Job, "j2")).unwrap();
        assert_eq!(item.acks.len(), 1);
        // auto weight over ip with an unknown (0.5) reputation: 1.0 × (0.5 + 0.25).
        assert!((item.acks[0].weight - 0.75).abs() < 1e-12);
        let later = t.check(&mut monitor, now_ms() + 5_000);
        assert!(later.iter().all(|r| r.id != "j2"), "done jobs never stall");
    }
}
