//! Tests of [`RadioTransport`] on its own (no upgrades) over the simulated medium.

use std::{future::poll_fn, time::Duration};

use futures::{AsyncReadExt, AsyncWriteExt};
use libp2p_core::transport::PortUse;
use tokio::time::timeout;

use super::*;
use crate::{
    lora::LoraParams,
    sim::{SimConfig, SimMedium},
};

/// Simulated time: generous, since `start_paused` makes waiting free.
const DEADLINE: Duration = Duration::from_secs(600);

type Event = TransportEvent<<RadioTransport as Transport>::ListenerUpgrade, Error>;

fn dialer() -> DialOpts {
    DialOpts {
        role: Role::Dialer,
        port_use: PortUse::Reuse,
    }
}

fn ma(s: &str) -> Multiaddr {
    s.parse().unwrap()
}

fn medium(loss: f64) -> SimMedium {
    SimMedium::new(
        SimConfig::default()
            .with_lora(LoraParams::new(7, 125_000))
            .with_loss(loss)
            .with_seed(11),
    )
}

fn transport(m: &SimMedium, id: u64, config: Config) -> RadioTransport {
    RadioTransport::new("sim0", m.attach(LinkAddr::Id(id)), config)
        .unwrap()
        .0
}

async fn next_event(t: &mut RadioTransport) -> Event {
    timeout(DEADLINE, poll_fn(|cx| Pin::new(&mut *t).poll(cx)))
        .await
        .expect("transport event within the deadline")
}

async fn incoming(t: &mut RadioTransport) -> (RadioStream, Multiaddr, Multiaddr) {
    loop {
        if let TransportEvent::Incoming {
            upgrade,
            local_addr,
            send_back_addr,
            ..
        } = next_event(t).await
        {
            return (upgrade.await.unwrap(), local_addr, send_back_addr);
        }
    }
}

fn sent_frames(m: &SimMedium) -> u64 {
    m.stats().values().map(|s| s.frames_sent).sum()
}

#[tokio::test]
async fn unsupported_addresses_are_refused() {
    let m = medium(0.0);
    let mut t = transport(&m, 1, Config::default());
    for addr in [
        "/ip4/127.0.0.1/tcp/4001",
        "/ip4/127.0.0.1/udp/4001/quic-v1",
        "/memory/7",
        "/unix/tmp.sock",
        "/dns/id-2.sim0.offgrid-radio",
        "/unix/offgrid-radio:kiss0:*",
        "/unix/offgrid-radio:sim0:id:2/tcp/1",
    ] {
        match t.dial(ma(addr), dialer()) {
            Err(TransportError::MultiaddrNotSupported(a)) => assert_eq!(a, ma(addr)),
            Err(e) => panic!("{addr}: {e:?}"),
            Ok(_) => panic!("{addr}: dial accepted"),
        }
        assert!(matches!(
            t.listen_on(ListenerId::next(), ma(addr)),
            Err(TransportError::MultiaddrNotSupported(_))
        ));
    }
    // Another station's address cannot be listened on.
    assert!(matches!(
        t.listen_on(ListenerId::next(), ma("/unix/offgrid-radio:sim0:id:2")),
        Err(TransportError::MultiaddrNotSupported(_))
    ));
    let hole_punch = DialOpts {
        role: Role::Listener,
        port_use: PortUse::Reuse,
    };
    assert!(matches!(
        t.dial(ma("/unix/offgrid-radio:sim0:id:2"), hole_punch),
        Err(TransportError::Other(Error::ListenerRole))
    ));
    assert_eq!(t.demux().streams(), 0);
    assert_eq!(sent_frames(&m), 0);
}

#[tokio::test]
async fn bad_link_names_are_refused() {
    let m = medium(0.0);
    for name in ["", "a/b", "a:b", &"x".repeat(MAX_LINK_NAME + 1)] {
        assert!(matches!(
            RadioTransport::new(name, m.attach(LinkAddr::Id(1)), Config::default()),
            Err(RadioAddrError::LinkName(_))
        ));
    }
}

#[tokio::test(start_paused = true)]
async fn dial_does_nothing_until_polled() {
    let m = medium(0.0);
    let mut a = transport(&m, 1, Config::default());
    let dial = a
        .dial(ma("/unix/offgrid-radio:sim0:id:2"), dialer())
        .unwrap();
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(a.demux().streams(), 0, "no route before the dial is polled");
    assert_eq!(sent_frames(&m), 0);
    drop(dial);
    assert_eq!(a.demux().streams(), 0);
    // Polled, it registers a route; the first frame goes out with the first byte written.
    let mut s = a
        .dial(ma("/unix/offgrid-radio:sim0:id:2"), dialer())
        .unwrap()
        .await
        .unwrap();
    assert_eq!(a.demux().streams(), 1);
    assert_eq!(sent_frames(&m), 0);
    s.write_all(b"x").await.unwrap();
    // Half a second of simulated time: the frame is on the air, its retransmission not yet.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(sent_frames(&m), 1);
}

#[tokio::test]
async fn listener_lifecycle() {
    let m = medium(0.0);
    let mut t = transport(&m, 1, Config::default());
    assert_eq!(t.local_addr().to_string(), "/offgrid-radio/sim0/id:1");
    let id = ListenerId::next();
    t.listen_on(id, ma("/unix/offgrid-radio:sim0:*")).unwrap();
    match next_event(&mut t).await {
        TransportEvent::NewAddress {
            listener_id,
            listen_addr,
        } => {
            assert_eq!(listener_id, id);
            assert_eq!(listen_addr, ma("/unix/offgrid-radio:sim0:id:1"));
        }
        _ => panic!("expected NewAddress"),
    }
    assert!(matches!(
        t.listen_on(ListenerId::next(), ma("/unix/offgrid-radio:sim0:id:1")),
        Err(TransportError::Other(Error::AlreadyListening(_)))
    ));
    assert!(!t.remove_listener(ListenerId::next()));
    assert!(t.remove_listener(id));
    match next_event(&mut t).await {
        TransportEvent::ListenerClosed {
            listener_id,
            reason: Ok(()),
        } => assert_eq!(listener_id, id),
        _ => panic!("expected ListenerClosed"),
    }
    assert!(!t.remove_listener(id));
    // Listening on the station's own address works as well as on `*`.
    t.listen_on(ListenerId::next(), ma("/unix/offgrid-radio:sim0:id:1"))
        .unwrap();
}

#[tokio::test]
async fn a_closed_link_closes_the_listener() {
    let m = medium(0.0);
    let (tx, _rx) = m.attach(LinkAddr::Id(1)).split();
    let (feed, rx) = mpsc::channel(4);
    let (demux, _beacons, accept) = Demux::spawn(rx, 4, 4);
    let mut t =
        RadioTransport::with_demux("sim0", Arc::new(tx), demux, accept, Config::default()).unwrap();
    let id = ListenerId::next();
    t.listen_on(id, ma("/unix/offgrid-radio:sim0:*")).unwrap();
    assert!(matches!(
        next_event(&mut t).await,
        TransportEvent::NewAddress { .. }
    ));
    drop(feed);
    match next_event(&mut t).await {
        TransportEvent::ListenerClosed {
            listener_id,
            reason: Err(Error::LinkClosed),
        } => assert_eq!(listener_id, id),
        _ => panic!("expected ListenerClosed with LinkClosed"),
    }
    assert!(matches!(
        t.listen_on(ListenerId::next(), ma("/unix/offgrid-radio:sim0:*")),
        Err(TransportError::Other(Error::LinkClosed))
    ));
}

#[tokio::test(start_paused = true)]
async fn streams_are_bounded() {
    let m = medium(0.0);
    let mut a = transport(&m, 1, Config::default().with_max_streams(2));
    let addr = ma("/unix/offgrid-radio:sim0:id:2");
    let _s1 = a.dial(addr.clone(), dialer()).unwrap().await.unwrap();
    let _s2 = a.dial(addr.clone(), dialer()).unwrap().await.unwrap();
    match a.dial(addr, dialer()).unwrap().await {
        Err(Error::Demux(DemuxError::TooMany)) => {}
        other => panic!("expected TooMany, got {other:?}"),
    }
    assert_eq!(a.demux().streams(), 2);
}

#[tokio::test(start_paused = true)]
async fn inbound_without_a_listener_is_dropped() {
    let m = medium(0.0);
    let mut a = transport(&m, 1, Config::default());
    let mut b = transport(&m, 2, Config::default());
    let mut s = a
        .dial(ma("/unix/offgrid-radio:sim0:id:2"), dialer())
        .unwrap()
        .await
        .unwrap();
    s.write_all(b"anyone?").await.unwrap();
    // Drive b until the demux has accepted the connection and b has dropped it.
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while b.demux().stats().accepted == 0 {
        assert!(tokio::time::Instant::now() < deadline, "never accepted");
        let _ = timeout(
            Duration::from_millis(100),
            poll_fn(|cx| Pin::new(&mut b).poll(cx)),
        )
        .await;
    }
    let _ = timeout(
        Duration::from_millis(100),
        poll_fn(|cx| Pin::new(&mut b).poll(cx)),
    )
    .await;
    assert_eq!(b.demux().streams(), 0, "the route is released");
}

async fn round_trip(loss: f64) {
    let m = medium(loss);
    let mut a = transport(&m, 1, Config::default());
    let mut b = transport(&m, 2, Config::default());
    b.listen_on(ListenerId::next(), ma("/unix/offgrid-radio:sim0:*"))
        .unwrap();
    let dial = a
        .dial(ma("/unix/offgrid-radio:sim0:id:2"), dialer())
        .unwrap();
    let big: Vec<u8> = (0..3000u32).map(|i| (i * 31 % 251) as u8).collect();
    let sent = big.clone();
    let client = tokio::spawn(async move {
        let mut s = dial.await.unwrap();
        s.write_all(&sent).await.unwrap();
        s.close().await.unwrap();
        let mut back = Vec::new();
        s.read_to_end(&mut back).await.unwrap();
        (back, s.stats())
    });
    let (mut s, local, send_back) = incoming(&mut b).await;
    assert_eq!(local, ma("/unix/offgrid-radio:sim0:id:2"));
    assert_eq!(send_back, ma("/unix/offgrid-radio:sim0:id:1"));
    let mut got = Vec::new();
    timeout(DEADLINE, s.read_to_end(&mut got))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got, big);
    s.write_all(b"thanks").await.unwrap();
    s.close().await.unwrap();
    let (back, stats) = timeout(DEADLINE, client).await.unwrap().unwrap();
    assert_eq!(back, b"thanks");
    if loss > 0.0 {
        assert!(stats.retransmissions > 0, "loss should force resends");
    }
}

#[tokio::test(start_paused = true)]
async fn raw_stream_round_trip() {
    round_trip(0.0).await;
}

#[tokio::test(start_paused = true)]
async fn raw_stream_round_trip_with_loss() {
    round_trip(0.1).await;
}
