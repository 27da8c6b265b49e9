//! Long-running storage operations (put, get, repair) and their progress.
//!
//! `POST /storage/put` and friends start an operation and answer its id at once; the CLI
//! polls `GET /storage/ops/{id}` for progress and the outcome (with `?wait_ms=` the poll
//! returns as soon as the operation ends, so a short operation is not stretched to the
//! next poll). Operations run in the node,
//! so a CLI that goes away does not stop them; `DELETE /storage/ops/{id}` does (the CLI
//! sends it when interrupted). A cancelled operation stops at its next step, drops the shard
//! requests it has in flight, keeps what it finished (a put its upload progress, a repair the
//! shards it already rebuilt) and ends in the state `cancelled`. At most [`MAX_OPS`] are
//! remembered; the oldest finished ones are forgotten first.

use std::{
    collections::BTreeMap,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
};

use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use super::StorageError;

/// Operations remembered.
pub const MAX_OPS: usize = 256;
/// Longest wait of one `GET /storage/ops/{id}?wait_ms=`.
pub const MAX_WAIT_MS: u64 = 5_000;

/// Progress counters of one operation.
#[derive(Debug, Default)]
pub struct Progress {
    /// Plaintext bytes of the file.
    pub total_bytes: AtomicU64,
    /// Plaintext bytes whose segments are done.
    pub done_bytes: AtomicU64,
    /// Shards the operation has to place or fetch.
    pub shards_total: AtomicU64,
    /// Shards placed (acknowledged) or fetched and verified.
    pub shards_done: AtomicU64,
    /// Shard bytes sent to hosts by this run.
    pub bytes_sent: AtomicU64,
    /// Shard bytes received from hosts by this run.
    pub bytes_received: AtomicU64,
}

impl Progress {
    /// Adds to a counter.
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    fn json(&self) -> Value {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        json!({
            "total_bytes": get(&self.total_bytes),
            "done_bytes": get(&self.done_bytes),
            "shards_total": get(&self.shards_total),
            "shards_done": get(&self.shards_done),
            "bytes_sent": get(&self.bytes_sent),
            "bytes_received": get(&self.bytes_received),
        })
    }
}

enum Outcome {
    Running,
    Done(Value),
    Failed { code: &'static str, message: String },
    Cancelled { message: String },
}

/// One operation.
pub struct Op {
    /// Its id.
    pub id: String,
    /// `put`, `get` or `repair`.
    pub kind: &'static str,
    /// When it started, ms since the Unix epoch.
    pub started_ms: u64,
    /// Its counters.
    pub progress: Arc<Progress>,
    outcome: Mutex<Outcome>,
    ended: tokio::sync::Notify,
    cancel: CancellationToken,
}

impl Op {
    fn lock(&self) -> std::sync::MutexGuard<'_, Outcome> {
        // A poisoned lock only means a panic while swapping the outcome; the value is whole.
        self.outcome.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records the outcome. [`StorageError::Cancelled`] ends it as `cancelled`.
    pub fn finish(&self, result: Result<Value, StorageError>) {
        *self.lock() = match result {
            Ok(v) => Outcome::Done(v),
            Err(StorageError::Cancelled(message)) => Outcome::Cancelled { message },
            Err(e) => Outcome::Failed {
                code: e.code(),
                message: e.to_string(),
            },
        };
        self.ended.notify_waiters();
    }

    /// Waits until the operation has ended or `wait` has passed, whichever comes first.
    pub async fn wait_end(&self, wait: std::time::Duration) {
        let ended = self.ended.notified();
        tokio::pin!(ended);
        // Registered before the check, so an end between the check and the wait is seen.
        ended.as_mut().enable();
        if !self.running() {
            return;
        }
        let _ = tokio::time::timeout(wait, ended).await;
    }

    /// Whether it is still running.
    pub fn running(&self) -> bool {
        matches!(*self.lock(), Outcome::Running)
    }

    /// The token the operation watches; cancelled by [`Op::cancel`].
    pub fn cancel_token(&self) -> CancellationToken {
        self.cancel.clone()
    }

    /// Asks the operation to stop. It ends as `cancelled` once it has dropped its requests
    /// and saved what it finished; an operation that has ended already is left as it is.
    pub fn cancel(&self) {
        if self.running() {
            self.cancel.cancel();
        }
    }

    /// The JSON view for `GET /storage/ops/{id}`.
    pub fn json(&self) -> Value {
        let mut v = json!({
            "op_id": self.id,
            "kind": self.kind,
            "started_ms": self.started_ms,
            "progress": self.progress.json(),
        });
        match &*self.lock() {
            Outcome::Running => {
                v["state"] = "running".into();
                if self.cancel.is_cancelled() {
                    v["cancel_requested"] = true.into();
                }
            }
            Outcome::Done(result) => {
                v["state"] = "done".into();
                v["result"] = result.clone();
            }
            Outcome::Failed { code, message } => {
                v["state"] = "failed".into();
                v["error"] = (*code).into();
                v["message"] = message.clone().into();
            }
            Outcome::Cancelled { message } => {
                v["state"] = "cancelled".into();
                v["error"] = "cancelled".into();
                v["message"] = message.clone().into();
            }
        }
        v
    }
}

/// The registry of operations.
#[derive(Default)]
pub struct Ops {
    map: Mutex<BTreeMap<String, Arc<Op>>>,
    /// Parent of every operation's token: cancelled at shutdown.
    all: CancellationToken,
}

impl Ops {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Arc<Op>>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a new running operation.
    pub fn start(&self, kind: &'static str) -> Arc<Op> {
        let started_ms = crate::now_ms();
        // Ids sort by start time, so the oldest are found first when evicting.
        let id = format!(
            "{started_ms:013}-{}",
            hex::encode(rand::random::<[u8; 4]>())
        );
        let op = Arc::new(Op {
            id: id.clone(),
            kind,
            started_ms,
            progress: Arc::default(),
            outcome: Mutex::new(Outcome::Running),
            ended: tokio::sync::Notify::new(),
            cancel: self.all.child_token(),
        });
        let mut map = self.lock();
        if map.len() >= MAX_OPS {
            let finished: Vec<String> = map
                .iter()
                .filter(|(_, o)| !o.running())
                .map(|(k, _)| k.clone())
                .take(map.len() + 1 - MAX_OPS)
                .collect();
            for k in finished {
                map.remove(&k);
            }
        }
        map.insert(id, op.clone());
        op
    }

    /// Looks an operation up.
    pub fn get(&self, id: &str) -> Option<Arc<Op>> {
        self.lock().get(id).cloned()
    }

    /// Operations still running.
    pub fn running(&self) -> usize {
        self.lock().values().filter(|o| o.running()).count()
    }

    /// Cancels every running operation (and any started later), as at shutdown, and waits
    /// up to `wait` for them to end: a put saves its progress for a resume, a get removes
    /// its partial file.
    pub async fn cancel_all(&self, wait: std::time::Duration) {
        self.all.cancel();
        let running: Vec<Arc<Op>> = self
            .lock()
            .values()
            .filter(|o| o.running())
            .cloned()
            .collect();
        let deadline = tokio::time::Instant::now() + wait;
        for op in running {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            op.wait_end(left).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn a_waiting_poll_returns_when_the_op_ends_not_at_its_deadline() {
        let ops = Ops::default();
        let op = ops.start("put");
        let finisher = op.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(30)).await;
            finisher.finish(Ok(json!({"ok": true})));
        });
        let t = tokio::time::Instant::now();
        op.wait_end(Duration::from_secs(60)).await;
        // Woken by the end (30 ms), far from the 60 s deadline even on a loaded machine.
        assert!(t.elapsed() < Duration::from_secs(30), "{:?}", t.elapsed());
        assert_eq!(op.json()["state"], "done");
        // Ended already: returns without waiting for the deadline.
        let t = tokio::time::Instant::now();
        op.wait_end(Duration::from_secs(60)).await;
        assert!(t.elapsed() < Duration::from_secs(30));
    }

    #[tokio::test]
    async fn cancel_all_stops_running_ops_waits_for_their_end_and_covers_later_ones() {
        let ops = Ops::default();
        let done = ops.start("get");
        done.finish(Ok(json!({"ok": true})));
        let op = ops.start("put");
        let worker = op.clone();
        tokio::spawn(async move {
            worker.cancel_token().cancelled().await;
            worker.finish(Err(StorageError::Cancelled("put cancelled".into())));
        });
        ops.cancel_all(Duration::from_secs(60)).await;
        assert_eq!(op.json()["state"], "cancelled");
        assert_eq!(done.json()["state"], "done");
        assert_eq!(ops.running(), 0);
        // One started during shutdown is cancelled from the start.
        assert!(ops.start("repair").cancel_token().is_cancelled());
    }

    #[tokio::test]
    async fn a_cancelled_op_reports_cancel_requested_then_cancelled() {
        let ops = Ops::default();
        let op = ops.start("put");
        let token = op.cancel_token();
        assert!(!token.is_cancelled());
        op.cancel();
        assert!(token.is_cancelled());
        // Still winding down: running, with the request noted.
        let v = op.json();
        assert_eq!(
            (v["state"].clone(), v["cancel_requested"].clone()),
            (json!("running"), json!(true))
        );
        op.finish(Err(StorageError::Cancelled("put cancelled".into())));
        let v = op.json();
        assert_eq!(v["state"], "cancelled");
        assert_eq!(v["error"], "cancelled");
        assert_eq!(ops.running(), 0);
        // Cancelling a finished op changes nothing.
        let done = ops.start("get");
        done.finish(Ok(json!({"ok": true})));
        done.cancel();
        assert!(!done.cancel_token().is_cancelled());
        assert_eq!(done.json()["state"], "done");
    }

    #[tokio::test]
    async fn a_waiting_poll_of_a_running_op_gives_up_at_its_deadline() {
        let ops = Ops::default();
        let op = ops.start("get");
        let t = tokio::time::Instant::now();
        op.wait_end(Duration::from_millis(50)).await;
        assert!(t.elapsed() >= Duration::from_millis(50));
        assert!(op.running());
    }
}
