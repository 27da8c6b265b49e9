//! The failover monitor as [`start`] runs it, on an in-memory store: a job attempt that
//! makes no progress is requeued, one that finishes in time is acked and left alone, and a
//! stalled upload raises an alert (at most `max_retries` of them).
//!
//! Real time, not paused: the monitor compares items' wall-clock stamps (`now_ms`) with
//! the stall window, and paused time does not move the wall clock. The window is 1 s.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use offgrid_ledger::quorum::{QuorumItem, QuorumKind};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::{start, FailoverConfig, JobTracker, QuorumConfig};
use crate::store::{Store, Table};

const STALL: Duration = Duration::from_secs(1);

struct Running {
    tracker: Arc<JobTracker>,
    store: Arc<Store>,
    cancel: CancellationToken,
    tasks: JoinSet<()>,
}

impl Running {
    async fn stop(mut self) {
        self.cancel.cancel();
        while self.tasks.join_next().await.is_some() {}
    }

    fn upload_alerts(&self, id: &str) -> Vec<u32> {
        self.tracker
            .alerts()
            .into_iter()
            .filter(|a| a.id == id)
            .map(|a| a.attempt)
            .collect()
    }
}

fn run() -> Running {
    let store = Arc::new(Store::in_memory().unwrap());
    let cancel = CancellationToken::new();
    let mut tasks = JoinSet::new();
    let tracker = start(
        QuorumConfig::default(),
        FailoverConfig {
            stall_age_s: STALL.as_secs(),
            cooldown_s: 0,
            max_retries: 3,
            check_interval_ms: 50,
            ..Default::default()
        },
        store.clone(),
        Default::default(),
        cancel.clone(),
        &mut tasks,
    )
    .unwrap();
    Running {
        tracker,
        store,
        cancel,
        tasks,
    }
}

/// Waits until `f` holds: polls every 20 ms, for at most 10 s.
async fn until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < deadline, "never happened: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_silent_job_attempt_is_requeued_after_the_stall_window_and_a_prompt_one_is_acked() {
    let node = run();
    let (t1, t2) = (node.tracker.clone(), node.tracker.clone());
    let started = Instant::now();
    // A host that never answers, and one that answers well inside the window.
    let silent = tokio::spawn(async move {
        let r = t1
            .watch("j1", "hostA", "ip", std::future::pending::<u8>(), |_| true)
            .await;
        (r, started.elapsed())
    });
    let prompt = tokio::spawn(async move {
        let answer = async {
            tokio::time::sleep(STALL / 5).await;
            7u8
        };
        t2.watch("j2", "hostB", "ip", answer, |_| true).await
    });
    let (r, after) = tokio::time::timeout(Duration::from_secs(10), silent)
        .await
        .expect("the monitor gives up on the silent attempt")
        .unwrap();
    let err = r.unwrap_err();
    assert!(err.contains("requeued"), "{err}");
    assert!(
        after >= STALL,
        "requeued after {after:?}, before the window"
    );
    assert_eq!(
        prompt.await.unwrap().unwrap(),
        7,
        "the prompt attempt kept its answer"
    );
    let j2 = node
        .tracker
        .with_engine(|e| e.get(QuorumKind::Job, "j2"))
        .unwrap();
    assert_eq!(j2.acks.len(), 1);
    assert_eq!(j2.acks[0].node, "hostB");
    assert_eq!(j2.latest_progress(), 1.0);
    let j1 = node
        .tracker
        .with_engine(|e| e.get(QuorumKind::Job, "j1"))
        .unwrap();
    assert!(j1.acks.is_empty(), "a requeued attempt is not acked");
    // Job stalls are not upload alerts.
    assert!(node.tracker.alerts().is_empty());
    node.stop().await;
}

#[tokio::test]
async fn a_stalled_upload_raises_alerts_up_to_max_retries_and_a_finished_one_none() {
    let node = run();
    node.tracker.upload_started("stalled");
    node.tracker.upload_started("done");
    node.tracker.upload_ack("done", "hostB", "ip");
    node.tracker.upload_progress("done", 1.0);
    until("the stalled upload's alerts", || {
        node.upload_alerts("stalled").len() >= 3
    })
    .await;
    // Started after "done": once it has been alerted, "done" has been checked past its
    // window too.
    node.tracker.upload_started("later");
    until("the later upload's alerts", || {
        node.upload_alerts("later").len() >= 3
    })
    .await;
    assert_eq!(
        node.upload_alerts("stalled"),
        vec![1, 2, 3],
        "max_retries = 3"
    );
    assert_eq!(node.upload_alerts("later"), vec![1, 2, 3]);
    assert!(
        node.upload_alerts("done").is_empty(),
        "{:?}",
        node.tracker.alerts()
    );
    let alert = &node.tracker.alerts()[0];
    assert!(alert.message.contains("no progress"), "{}", alert.message);
    // The monitor writes its items through the store.
    until("the items on disk", || {
        node.store
            .get::<QuorumItem>(Table::Quorum, "upload:done")
            .unwrap()
            .is_some_and(|i| i.latest_progress() == 1.0)
    })
    .await;
    node.stop().await;
}

#[tokio::test]
async fn a_moving_upload_raises_no_alert() {
    let node = run();
    node.tracker.upload_started("moving");
    node.tracker.upload_started("still");
    // "moving" reports progress at a steady pace; "still" shows when a window has passed.
    let mut p = 0.0;
    until("the still upload's alert", || {
        p += 0.01;
        node.tracker.upload_progress("moving", p);
        !node.upload_alerts("still").is_empty()
    })
    .await;
    assert!(p < 1.0, "the window passed before the progress ran out");
    assert!(
        node.upload_alerts("moving").is_empty(),
        "{:?}",
        node.tracker.alerts()
    );
    node.stop().await;
}
