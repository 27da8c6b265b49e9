//! The broker against the peer service on a fake network, with paused time: the quote
//! window, the activation deadline and failover, the job deadline, hostile answers, and
//! (in real time, as the monitor reads the wall clock) a requeue by the failover monitor.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use libp2p::PeerId;
use offgrid_behaviours::auction::Response;
use offgrid_net::ClientError;
use tokio::time::Instant;

use super::{
    broker::BrokerError,
    broker_fixture::{done, host, job, market, ok, quote, receipt, NOW},
};
use crate::config::MarketConfig;

#[tokio::test(start_paused = true)]
async fn a_quote_after_the_window_is_ignored_and_a_non_quote_is_no_bid() {
    let (a, b, c) = (host(10), host(11), host(12));
    let m = market(
        &[(&a, 50), (&b, 50), (&c, 50)],
        MarketConfig::default(),
        false,
    )
    .await;
    let window = Duration::from_millis(MarketConfig::default().quote_window_ms);
    // B would win on price, but its quote comes after the 250 ms window; C declines.
    m.net.answer(a.peer_id(), window / 2, quote(50));
    m.net.answer(b.peer_id(), window * 4, quote(1));
    m.net.answer(
        c.peer_id(),
        NOW,
        ok(Response::Declined {
            reason: "no".into(),
        }),
    );
    m.net.answer(a.peer_id(), NOW, done(&a, 50));
    let t0 = Instant::now();
    let r = m.broker.run(job(Duration::from_secs(60))).await.unwrap();
    assert_eq!(r.host, a.peer_id().to_string());
    assert_eq!(r.price, 50);
    assert_eq!(r.quotes, 1, "only A's quote counts");
    assert!(
        m.net.quoted().contains(&b.peer_id()),
        "B was asked for a quote"
    );
    let runs = m.net.runs();
    assert_eq!(runs.len(), 1, "{runs:?}");
    // The run was sent when the window closed, not earlier and not at B's late answer.
    let at = runs[0].1 - t0;
    assert!(at >= window && at < window * 2, "run sent after {at:?}");
    m.stop().await;
}

#[tokio::test(start_paused = true)]
async fn the_window_closes_as_soon_as_every_candidate_has_answered() {
    let (a, b) = (host(10), host(11));
    let cfg = MarketConfig {
        quote_window_ms: 5_000,
        ..Default::default()
    };
    let m = market(&[(&a, 50), (&b, 50)], cfg, false).await;
    m.net
        .answer(a.peer_id(), Duration::from_millis(20), quote(40));
    m.net
        .answer(b.peer_id(), Duration::from_millis(30), quote(30));
    m.net.answer(b.peer_id(), NOW, done(&b, 30));
    let t0 = Instant::now();
    let r = m.broker.run(job(Duration::from_secs(60))).await.unwrap();
    assert_eq!(r.host, b.peer_id().to_string(), "the cheaper quote wins");
    assert_eq!(r.quotes, 2);
    let at = m.net.runs()[0].1 - t0;
    assert!(
        at < Duration::from_millis(100),
        "run sent after {at:?}, not at the last quote"
    );
    m.stop().await;
}

/// Heartbeats off: every host is judged by its activation deadline, as radio hosts are.
fn no_heartbeats() -> MarketConfig {
    MarketConfig {
        heartbeat_ms: 0,
        ..Default::default()
    }
}

#[tokio::test(start_paused = true)]
async fn a_host_that_stops_reporting_is_given_up_after_three_heartbeat_intervals() {
    let (a, b) = (host(10), host(11));
    let m = market(&[(&a, 50), (&b, 50)], MarketConfig::default(), false).await;
    m.net.answer(a.peer_id(), NOW, quote(10));
    m.net.answer(b.peer_id(), NOW, quote(20));
    m.net.answer(a.peer_id(), NOW, None);
    m.net.answer(b.peer_id(), NOW, done(&b, 20));
    let r = m.broker.run(job(Duration::from_secs(120))).await.unwrap();
    assert_eq!(r.host, b.peer_id().to_string());
    assert_eq!(r.attempts[0].host, a.peer_id().to_string());
    assert!(
        r.attempts[0].outcome.starts_with("stopped reporting"),
        "{:?}",
        r.attempts
    );
    let runs = m.net.runs();
    let gap = runs[1].1 - runs[0].1;
    let cfg = MarketConfig::default();
    let silence = Duration::from_millis(cfg.heartbeat_ms * u64::from(cfg.heartbeat_misses));
    assert!(
        gap >= silence && gap < silence + Duration::from_millis(cfg.heartbeat_ms),
        "failed over {gap:?} after dispatch, not within 3 intervals ({silence:?})"
    );
    assert!(gap < Duration::from_secs(cfg.t_activate_s), "{gap:?}");
    assert_eq!(
        m.broker.reputation().get(&a.peer_id().to_string()).misses,
        1
    );
    m.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_slow_host_that_keeps_reporting_finishes_past_the_activation_deadline() {
    let (a, b) = (host(10), host(11));
    let m = market(&[(&a, 50), (&b, 50)], MarketConfig::default(), false).await;
    m.net.answer(a.peer_id(), NOW, quote(10));
    m.net.answer(b.peer_id(), NOW, quote(20));
    // 45 s: past t_activate_s (30) and past half the job's timeout (the spare-host cut).
    m.net
        .answer(a.peer_id(), Duration::from_secs(45), done(&a, 10));
    let t0 = Instant::now();
    let r = m.broker.run(job(Duration::from_secs(120))).await.unwrap();
    assert_eq!(r.host, a.peer_id().to_string(), "{:?}", r.attempts);
    assert_eq!(r.attempts.len(), 1, "no failover: {:?}", r.attempts);
    assert!(t0.elapsed() >= Duration::from_secs(45));
    assert_eq!(m.net.runs().len(), 1, "the job ran once");
    m.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_silent_host_is_given_up_at_the_activation_deadline_and_the_next_host_runs_the_job() {
    let (a, b) = (host(10), host(11));
    let m = market(&[(&a, 50), (&b, 50)], no_heartbeats(), false).await;
    m.net.answer(a.peer_id(), NOW, quote(10));
    m.net.answer(b.peer_id(), NOW, quote(20));
    m.net.answer(a.peer_id(), NOW, None);
    m.net.answer(b.peer_id(), NOW, done(&b, 20));
    let r = m.broker.run(job(Duration::from_secs(120))).await.unwrap();
    assert_eq!(r.host, b.peer_id().to_string());
    assert_eq!(r.attempts.len(), 2);
    assert_eq!(r.attempts[0].host, a.peer_id().to_string());
    assert_eq!(
        r.attempts[0].outcome,
        "no answer before the activation deadline"
    );
    let runs = m.net.runs();
    assert_eq!(
        runs.iter().map(|r| r.0).collect::<Vec<_>>(),
        vec![a.peer_id(), b.peer_id()]
    );
    // t_activate_s = 30: B was asked 30 s after A, not sooner.
    let gap = runs[1].1 - runs[0].1;
    let t_activate = Duration::from_secs(MarketConfig::default().t_activate_s);
    assert!(
        gap >= t_activate && gap < t_activate + Duration::from_secs(1),
        "{gap:?}"
    );
    let rep = m.broker.reputation();
    assert_eq!(rep.get(&a.peer_id().to_string()).misses, 1);
    assert_eq!(rep.get(&b.peer_id().to_string()).hits, 1);
    m.stop().await;
}

#[tokio::test(start_paused = true)]
async fn hosts_that_fail_or_decline_are_replaced_at_once_and_when_all_fail_the_job_says_so() {
    let (a, b, c) = (host(10), host(11), host(12));
    let m = market(
        &[(&a, 50), (&b, 50), (&c, 50)],
        MarketConfig::default(),
        false,
    )
    .await;
    for (h, p) in [(&a, 10), (&b, 20), (&c, 30)] {
        m.net.answer(h.peer_id(), NOW, quote(p));
    }
    m.net.answer(
        a.peer_id(),
        NOW,
        Some(Err(ClientError::Refused("dial failed".into()))),
    );
    m.net.answer(
        b.peer_id(),
        NOW,
        ok(Response::Declined {
            reason: "full".into(),
        }),
    );
    m.net.answer(c.peer_id(), NOW, done(&c, 30));
    let t0 = Instant::now();
    let r = m.broker.run(job(Duration::from_secs(60))).await.unwrap();
    assert_eq!(r.host, c.peer_id().to_string());
    let outcomes: Vec<&str> = r.attempts.iter().map(|a| a.outcome.as_str()).collect();
    assert_eq!(outcomes, vec!["dial failed", "declined: full", "ok"]);
    assert!(
        t0.elapsed() < Duration::from_secs(1),
        "no deadline waited out"
    );

    // Again, every host failing: the error lists each attempt. The failures dropped A's
    // and B's cached quotes, so they are asked again; C's quote is still valid and reused.
    m.net.fake.clear();
    for (h, p) in [(&a, 10), (&b, 20)] {
        m.net.answer(h.peer_id(), NOW, quote(p));
    }
    for h in [&a, &b, &c] {
        m.net.answer(
            h.peer_id(),
            NOW,
            ok(Response::Failed {
                error: "boom".into(),
            }),
        );
    }
    let err = m
        .broker
        .run(job(Duration::from_secs(60)))
        .await
        .unwrap_err();
    let quoted = m.net.quoted();
    assert_eq!(quoted.len(), 2, "{quoted:?}");
    assert!(!quoted.contains(&c.peer_id()), "C's cached quote is reused");
    let BrokerError::AllHostsFailed(attempts) = err else {
        panic!("{err:?}")
    };
    assert_eq!(attempts.len(), 3);
    assert!(attempts.iter().all(|a| a.outcome == "boom"), "{attempts:?}");
    m.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_job_whose_hosts_stay_silent_ends_with_job_timeout_at_its_deadline() {
    let (a, b) = (host(10), host(11));
    let cfg = MarketConfig {
        t_activate_s: 20,
        ..no_heartbeats()
    };
    let m = market(&[(&a, 50), (&b, 50)], cfg, false).await;
    m.net.answer(a.peer_id(), NOW, quote(10));
    m.net.answer(b.peer_id(), NOW, quote(20));
    m.net.answer(a.peer_id(), NOW, None);
    m.net.answer(b.peer_id(), NOW, None);
    let t0 = Instant::now();
    let err = m
        .broker
        .run(job(Duration::from_secs(30)))
        .await
        .unwrap_err();
    let took = t0.elapsed();
    assert!(matches!(err, BrokerError::JobTimeout(30_000)), "{err:?}");
    assert_eq!(err.kind(), "job_timeout");
    // The deadline is taken on the std clock at the start of `run` and enforced on tokio's:
    // under paused time the two differ by the real time the test has spent so far.
    assert!(
        took > Duration::from_millis(29_500) && took < Duration::from_millis(30_500),
        "{took:?}"
    );
    // A was given up at 20 s and B tried before the deadline.
    let hosts: Vec<PeerId> = m.net.runs().iter().map(|r| r.0).collect();
    assert_eq!(hosts, vec![a.peer_id(), b.peer_id()]);
    m.stop().await;
}

#[tokio::test(start_paused = true)]
async fn forged_mismatched_and_malformed_answers_to_a_run_are_not_accepted() {
    let (a, b, c, d, e, liar) = (host(10), host(11), host(12), host(13), host(14), host(20));
    let hosts = [(&a, 50), (&b, 50), (&c, 50), (&d, 50), (&e, 50)];
    let cfg = MarketConfig {
        max_retries: 4,
        ..MarketConfig::default()
    };
    let m = market(&hosts, cfg, false).await;
    for (h, p) in [(&a, 10), (&b, 20), (&c, 30), (&d, 40), (&e, 45)] {
        m.net.answer(h.peer_id(), NOW, quote(p));
    }
    // A: a receipt naming A, signed by another key.
    let forged = receipt(&liar, 10, |r| {
        r.node_id = a.peer_id().to_string();
        r.host_pubkey = hex::encode(a.public_key());
    });
    m.net.answer(
        a.peer_id(),
        NOW,
        ok(Response::Done {
            output: "hello".into(),
            receipt: forged,
        }),
    );
    // B: its own valid signature, but over another output than the one it returns.
    m.net.answer(
        b.peer_id(),
        NOW,
        ok(Response::Done {
            output: "tampered".into(),
            receipt: receipt(&b, 20, |_| {}),
        }),
    );
    // C: a receipt at a higher price than it quoted.
    m.net.answer(
        c.peer_id(),
        NOW,
        ok(Response::Done {
            output: "hello".into(),
            receipt: receipt(&c, 999, |_| {}),
        }),
    );
    // D: answers a run with a quote.
    m.net.answer(d.peer_id(), NOW, quote(40));
    // E: a receipt carrying a payment order this broker never signed (a claim on someone
    // else's account).
    let order = offgrid_ledger::payment::sign_order(
        liar.signing_key(),
        &offgrid_ledger::OrderBody {
            domain: offgrid_ledger::payment::ORDER_DOMAIN.into(),
            job_id: "job-1".into(),
            payer: liar.peer_id().to_string(),
            host: e.peer_id().to_string(),
            price: 45,
            max_units: 1_000_000,
            expires_ms: u64::MAX,
            created_ms: 1,
        },
    )
    .unwrap();
    m.net.answer(
        e.peer_id(),
        NOW,
        ok(Response::Done {
            output: "hello".into(),
            receipt: receipt(&e, 45, |r| r.order = Some(order)),
        }),
    );
    let err = m
        .broker
        .run(job(Duration::from_secs(60)))
        .await
        .unwrap_err();
    let BrokerError::AllHostsFailed(attempts) = err else {
        panic!("{err:?}")
    };
    let outcomes: Vec<&str> = attempts.iter().map(|a| a.outcome.as_str()).collect();
    assert_eq!(outcomes.len(), 5, "{outcomes:?}");
    assert!(outcomes[0].starts_with("invalid receipt"), "{outcomes:?}");
    assert_eq!(outcomes[1], "invalid receipt: output hash mismatch");
    assert_eq!(outcomes[2], "invalid receipt: wrong price");
    assert_eq!(outcomes[3], "answered a run with a quote");
    assert_eq!(
        outcomes[4],
        "invalid receipt: carries another payer's order"
    );
    let rep = m.broker.reputation();
    for h in [&a, &b, &c, &d, &e] {
        assert_eq!(rep.get(&h.peer_id().to_string()).hits, 0);
        assert_eq!(rep.get(&h.peer_id().to_string()).misses, 1);
    }
    m.stop().await;
}

// Real time: the failover monitor measures stalls on the wall clock (`now_ms`), which
// paused time does not move.
#[tokio::test]
async fn the_failover_monitor_requeues_a_stalled_attempt_to_the_next_host_before_its_deadline() {
    let (a, b) = (host(10), host(11));
    let m = market(&[(&a, 50), (&b, 50)], MarketConfig::default(), true).await;
    m.net.answer(a.peer_id(), NOW, quote(10));
    m.net.answer(b.peer_id(), NOW, quote(20));
    m.net.answer(a.peer_id(), NOW, None);
    m.net.answer(b.peer_id(), NOW, done(&b, 20));
    let t0 = std::time::Instant::now();
    let r = tokio::time::timeout(
        Duration::from_secs(15),
        m.broker.run(job(Duration::from_secs(60))),
    )
    .await
    .expect("requeued well before the 30 s activation deadline")
    .unwrap();
    assert_eq!(r.host, b.peer_id().to_string());
    assert_eq!(r.attempts[0].host, a.peer_id().to_string());
    assert!(
        r.attempts[0].outcome.contains("requeued"),
        "{:?}",
        r.attempts
    );
    // stall_age_s = 1: given up after a second or so, not at t_activate_s = 30.
    assert!(t0.elapsed() >= Duration::from_secs(1), "{:?}", t0.elapsed());
    m.stop().await;
}
