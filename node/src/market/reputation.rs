//! The broker's view of each host: hits and misses, kept in memory and flushed to the
//! store once a second. Scoring reads it (`scoring::reputation_factor`); placement of
//! storage shards reads it too.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::store::{Op, Store, StoreError, Table};

/// Hits and misses per host, as seen by this broker.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// Jobs completed with a valid receipt.
    pub hits: u64,
    /// Failures, timeouts, busy refusals and invalid receipts.
    pub misses: u64,
}

/// The broker's reputation table, persisted in the store. Updates are kept in memory and
/// flushed once a second; losing the last second of counters to a crash is acceptable.
#[derive(Debug, Default)]
pub struct Reputation {
    table: Mutex<(HashMap<String, Record>, bool)>,
}

impl Reputation {
    /// Loads the table.
    pub fn load(store: &Store) -> Result<Self, StoreError> {
        let map = store
            .scan::<Record>(Table::Reputation)?
            .into_iter()
            .collect();
        Ok(Reputation {
            table: Mutex::new((map, false)),
        })
    }

    fn with<R>(&self, f: impl FnOnce(&mut (HashMap<String, Record>, bool)) -> R) -> R {
        // A poisoned lock only means another thread panicked mid-update of two counters.
        let mut g = self.table.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut g)
    }

    /// Counts a completed job.
    pub fn hit(&self, host: &str) {
        self.with(|(m, d)| {
            m.entry(host.to_owned()).or_default().hits += 1;
            *d = true;
        });
    }

    /// Counts a failed one.
    pub fn miss(&self, host: &str) {
        self.with(|(m, d)| {
            m.entry(host.to_owned()).or_default().misses += 1;
            *d = true;
        });
    }

    /// One host's record.
    pub fn get(&self, host: &str) -> Record {
        self.with(|(m, _)| m.get(host).copied().unwrap_or_default())
    }

    /// Every record.
    pub fn all(&self) -> Vec<(String, Record)> {
        let mut v: Vec<_> = self.with(|(m, _)| m.iter().map(|(k, v)| (k.clone(), *v)).collect());
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    /// Writes the table if it changed.
    pub async fn flush(&self, store: &Store) -> Result<(), StoreError> {
        let Some(snapshot) = self.with(|(m, d)| std::mem::take(d).then(|| m.clone())) else {
            return Ok(());
        };
        let ops = snapshot
            .iter()
            .map(|(k, v)| Op::put(Table::Reputation, k.as_str(), v))
            .collect::<Result<Vec<_>, _>>()?;
        store.commit(ops).await
    }
}

/// Flushes the broker's reputation table once a second and at shutdown.
pub async fn flush_every_second(
    rep: Arc<Reputation>,
    store: Arc<Store>,
    cancel: CancellationToken,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            biased;
            _ = cancel.cancelled() => break,
            _ = tick.tick() => {}
        }
        if let Err(e) = rep.flush(&store).await {
            warn!(error = %e, "cannot persist reputation");
        }
    }
    let _ = rep.flush(&store).await;
}
