//! The market host's task against a fake network and an in-memory store: quotes, runs,
//! refusals, and the receipt that is durable before the answer leaves.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    collections::BTreeMap,
    sync::{atomic::AtomicUsize, Arc},
};

use libp2p::PeerId;
use offgrid_behaviours::auction::{Request, Response, RunRequest};
use offgrid_net::{
    testing::{FakeNet, Sent},
    AuctionRequest, Net, Reply,
};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::host::{serve, Host};
use crate::{
    config::Config,
    identity::Identity,
    now_ms,
    peers::{HostSettings, Offer},
    store::{Store, Table},
};

struct Running {
    requests: mpsc::Sender<AuctionRequest>,
    net: FakeNet,
    store: Arc<Store>,
    identity: Identity,
    cancel: CancellationToken,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

fn settings(active: bool) -> HostSettings {
    HostSettings {
        active,
        prices: BTreeMap::from([("echo".to_owned(), 100)]),
        min_oncall_percent: 50,
        burst_percent_max: 50,
        burst: 4,
        seq: 1,
    }
}

fn run_host(active: bool) -> Running {
    let cfg = Config::default();
    assert!(
        cfg.executors.contains_key("echo"),
        "the default config runs echo"
    );
    run_host_with(cfg, settings(active))
}

fn run_host_with(cfg: Config, settings: HostSettings) -> Running {
    let identity = Identity::from_seed([5; 32]);
    let store = Arc::new(Store::in_memory().unwrap());
    let (finished_tx, finished) = mpsc::channel(8);
    let host = Host::new(&cfg, identity.clone(), store.clone(), finished_tx);
    let (requests, rx) = mpsc::channel(8);
    let net = FakeNet::new();
    let cancel = CancellationToken::new();
    tokio::spawn(serve(
        host,
        finished,
        rx,
        Offer::new(settings),
        Arc::new(net.clone()) as Arc<dyn Net>,
        Arc::new(AtomicUsize::new(0)),
        cancel.clone(),
    ));
    Running {
        requests,
        net,
        store,
        identity,
        cancel,
    }
}

impl Running {
    async fn ask(&self, request: Request) -> Response {
        self.ask_from(PeerId::random(), request).await
    }

    async fn ask_from(&self, peer: PeerId, request: Request) -> Response {
        let (tx, rx) = oneshot::channel();
        self.requests
            .send(AuctionRequest {
                peer,
                request,
                reply: Reply::Local(tx),
            })
            .await
            .unwrap();
        tokio::time::timeout(std::time::Duration::from_secs(10), rx)
            .await
            .expect("the host answers")
            .unwrap()
    }
}

fn run(price: u64, deadline_ms: u64) -> Request {
    Request::Run(RunRequest {
        job_id: "job-1".into(),
        job_type: "echo".into(),
        units: 1_000_000,
        payload: "hello".into(),
        price,
        deadline_ms,
        order: None,
    })
}

#[tokio::test]
async fn a_quote_is_the_announced_price_and_an_unknown_type_is_declined() {
    let h = run_host(true);
    let q = h
        .ask(Request::Quote {
            job_type: "echo".into(),
            units: 1,
        })
        .await;
    assert!(
        matches!(
            q,
            Response::Quote {
                price: 100,
                capacity_left: 4,
                ..
            }
        ),
        "{q:?}"
    );
    let d = h
        .ask(Request::Quote {
            job_type: "gpu".into(),
            units: 1,
        })
        .await;
    assert!(
        matches!(&d, Response::Declined { reason } if reason.contains("gpu")),
        "{d:?}"
    );
    // Answers go out through the network client.
    assert_eq!(
        h.net
            .sent()
            .iter()
            .filter(|s| matches!(s, Sent::AuctionAnswer(_)))
            .count(),
        2
    );
}

#[tokio::test]
async fn a_run_answers_done_with_a_signed_receipt_that_is_already_stored() {
    let h = run_host(true);
    let r = h.ask(run(100, now_ms() + 5_000)).await;
    let Response::Done { output, receipt } = r else {
        panic!("{r:?}")
    };
    assert_eq!(output, "hello");
    let body = receipt.verify().unwrap();
    assert_eq!(body.job_id, "job-1");
    assert_eq!(body.node_id, h.identity.peer_id().to_string());
    assert_eq!(body.price, 100);
    // Durable before the answer left: the store holds it now.
    assert_eq!(h.store.len(Table::Receipts).unwrap(), 1);
}

#[tokio::test]
async fn underpriced_expired_and_inactive_runs_are_refused_and_store_nothing() {
    let h = run_host(true);
    let low = h.ask(run(99, now_ms() + 5_000)).await;
    assert!(
        matches!(&low, Response::Declined { reason } if reason.contains("below")),
        "{low:?}"
    );
    let late = h.ask(run(100, now_ms().saturating_sub(1))).await;
    assert!(matches!(late, Response::Failed { .. }), "{late:?}");
    let off = run_host(false);
    let r = off.ask(run(100, now_ms() + 5_000)).await;
    assert!(matches!(r, Response::Declined { .. }), "{r:?}");
    assert_eq!(h.store.len(Table::Receipts).unwrap(), 0);
    assert_eq!(off.store.len(Table::Receipts).unwrap(), 0);
}

/// A broker's run carrying its payment order: one that pays this host for this very run is
/// embedded in the receipt; forged or mismatched ones are declined and nothing is stored.
#[tokio::test]
async fn a_run_whose_payment_order_does_not_pay_for_it_is_declined() {
    use offgrid_ledger::payment::{sign_order, OrderBody, ORDER_DOMAIN};
    let h = run_host(true);
    let broker = Identity::from_seed([8; 32]);
    let deadline = now_ms() + 5_000;
    let good = OrderBody {
        domain: ORDER_DOMAIN.into(),
        job_id: "job-1".into(),
        payer: broker.peer_id().to_string(),
        host: h.identity.peer_id().to_string(),
        price: 100,
        max_units: 1_000_000,
        expires_ms: deadline + 60_000,
        created_ms: now_ms(),
    };
    let with = |order: OrderBody, key: &Identity| {
        let Request::Run(mut r) = run(100, deadline) else {
            unreachable!()
        };
        r.order = Some(sign_order(key.signing_key(), &order).unwrap());
        Request::Run(r)
    };
    let other = Identity::from_seed([9; 32]);
    let bad: Vec<(&str, Request)> = vec![
        ("signed by someone else", with(good.clone(), &other)),
        (
            "another host",
            with(
                OrderBody {
                    host: other.peer_id().to_string(),
                    ..good.clone()
                },
                &broker,
            ),
        ),
        (
            "another job",
            with(
                OrderBody {
                    job_id: "job-2".into(),
                    ..good.clone()
                },
                &broker,
            ),
        ),
        (
            "another price",
            with(
                OrderBody {
                    price: 101,
                    ..good.clone()
                },
                &broker,
            ),
        ),
        (
            "fewer units",
            with(
                OrderBody {
                    max_units: 999_999,
                    ..good.clone()
                },
                &broker,
            ),
        ),
        (
            "expires first",
            with(
                OrderBody {
                    expires_ms: deadline - 1,
                    ..good.clone()
                },
                &broker,
            ),
        ),
        (
            "not an order",
            with(
                OrderBody {
                    domain: "offgrid/receipt".into(),
                    ..good.clone()
                },
                &broker,
            ),
        ),
    ];
    for (what, request) in bad {
        let r = h.ask_from(broker.peer_id(), request).await;
        assert!(
            matches!(&r, Response::Declined { reason } if reason.contains("bad payment order")),
            "{what}: {r:?}"
        );
    }
    assert_eq!(h.store.len(Table::Receipts).unwrap(), 0);
    // Another peer sending the broker's genuine order is not that broker.
    let r = h
        .ask_from(other.peer_id(), with(good.clone(), &broker))
        .await;
    assert!(matches!(r, Response::Declined { .. }), "{r:?}");

    let r = h.ask_from(broker.peer_id(), with(good, &broker)).await;
    let Response::Done { receipt, .. } = r else {
        panic!("{r:?}")
    };
    let claim = offgrid_ledger::payment::claim(&receipt).unwrap();
    assert_eq!(claim.payer, broker.peer_id().to_string());
    assert_eq!(claim.amount, 100);
}

/// A host with a `slow` job type that runs `sleep 30`.
fn slow_host() -> Running {
    use crate::config::{ExecutorConfig, ExecutorKind};
    let mut cfg = Config::default();
    cfg.executors.insert(
        "slow".into(),
        ExecutorConfig {
            kind: ExecutorKind::Exec,
            program: Some("/bin/sleep".into()),
            args: vec!["30".into()],
            timeout_s: 60,
            ..ExecutorConfig::default()
        },
    );
    let mut s = settings(true);
    s.prices.insert("slow".into(), 100);
    run_host_with(cfg, s)
}

#[tokio::test]
async fn heartbeats_tell_only_the_sending_broker_that_its_job_runs_and_a_second_run_is_refused() {
    let h = slow_host();
    let broker = PeerId::random();
    let slow_run = || {
        Request::Run(RunRequest {
            job_type: "slow".into(),
            ..match run(100, now_ms() + 60_000) {
                Request::Run(r) => r,
                _ => unreachable!(),
            }
        })
    };
    // The run's answer is not awaited: it comes after 30 s.
    let (tx, _answer) = oneshot::channel();
    h.requests
        .send(AuctionRequest {
            peer: broker,
            request: slow_run(),
            reply: Reply::Local(tx),
        })
        .await
        .unwrap();
    let poll = || Request::Progress {
        job_id: "job-1".into(),
    };
    let beat = h.ask_from(broker, poll()).await;
    assert!(
        matches!(beat, Response::Progress { running: true, .. }),
        "{beat:?}"
    );
    // Another peer asking about the same job id learns nothing.
    let other = h.ask_from(PeerId::random(), poll()).await;
    assert!(
        matches!(other, Response::Progress { running: false, .. }),
        "{other:?}"
    );
    // An unknown job is not running.
    let unknown = h
        .ask_from(
            broker,
            Request::Progress {
                job_id: "job-2".into(),
            },
        )
        .await;
    assert!(
        matches!(unknown, Response::Progress { running: false, .. }),
        "{unknown:?}"
    );
    // The same broker sending the same job again while it runs: never run twice.
    let again = h.ask_from(broker, slow_run()).await;
    assert!(
        matches!(&again, Response::Declined { reason } if reason.contains("already running")),
        "{again:?}"
    );
}

#[tokio::test]
async fn a_finished_job_no_longer_reports_running() {
    let h = run_host(true);
    let broker = PeerId::random();
    let r = h.ask_from(broker, run(100, now_ms() + 5_000)).await;
    assert!(matches!(r, Response::Done { .. }), "{r:?}");
    let beat = h
        .ask_from(
            broker,
            Request::Progress {
                job_id: "job-1".into(),
            },
        )
        .await;
    assert!(
        matches!(beat, Response::Progress { running: false, .. }),
        "{beat:?}"
    );
}
