//! Tests of the UDP hub (real loopback sockets, real time, fast radio settings).

use std::time::Duration;

use tokio::time::timeout;

use super::*;

const DEADLINE: Duration = Duration::from_secs(10);

async fn recv(link: &mut SimLink) -> Datagram {
    timeout(DEADLINE, link.recv())
        .await
        .expect("frame within deadline")
        .expect("link open")
}

fn fast() -> SimConfig {
    // SF7/500 kHz: a full frame is 87 ms on the air.
    SimConfig::default().with_lora(LoraParams::new(7, 500_000))
}

#[tokio::test]
async fn hub_forwards_between_clients() {
    let hub = SimHub::bind(fast()).await.unwrap();
    let a = SimLink::connect_hub(hub.local_addr(), 1).await.unwrap();
    let mut b = SimLink::connect_hub(hub.local_addr(), 2).await.unwrap();
    let mut c = SimLink::connect_hub(hub.local_addr(), 3).await.unwrap();
    assert_eq!(a.tx.airtime(220), LoraParams::new(7, 500_000).airtime(220));
    assert_eq!(a.tx.mtu(), 220);
    assert_eq!(a.tx.local_addr(), LinkAddr::Id(1));

    a.send(LinkAddr::Broadcast, &[0xC0; 220]).await.unwrap();
    for link in [&mut b, &mut c] {
        let d = recv(link).await;
        assert_eq!((d.from, d.payload), (LinkAddr::Id(1), vec![0xC0; 220]));
    }
    c.send(LinkAddr::Id(2), b"to b").await.unwrap();
    assert_eq!(recv(&mut b).await.payload, b"to b");
    let stats = hub.medium().stats();
    assert_eq!(stats[&LinkAddr::Id(1)].frames_sent, 1);
    assert_eq!(stats[&LinkAddr::Id(2)].frames_received, 2);
    assert_eq!(stats[&LinkAddr::Id(3)].frames_received, 1);
    assert_eq!(a.tx.stats().frames_out, 1);
    assert!(matches!(
        a.send(LinkAddr::Broadcast, &[0; 221]).await,
        Err(LinkError::Oversize { .. })
    ));
    assert!(matches!(
        a.send(LinkAddr::Unknown, b"?").await,
        Err(LinkError::AddrNotSupported(_))
    ));
}

#[tokio::test]
async fn hub_enforces_duty_cycle() {
    // 0.01 % of an hour = 360 ms: four 87 ms frames fit, the fifth does not.
    let hub = SimHub::bind(fast().with_duty_cycle(0.0001)).await.unwrap();
    let a = SimLink::connect_hub(hub.local_addr(), 1).await.unwrap();
    for _ in 0..4 {
        a.send(LinkAddr::Broadcast, &[0; 220]).await.unwrap();
    }
    match a.send(LinkAddr::Broadcast, &[0; 220]).await {
        Err(LinkError::DutyCycle { retry_after }) => {
            assert!(retry_after > Duration::from_secs(3000))
        }
        other => panic!("expected DutyCycle, got {other:?}"),
    }
    let s = hub.medium().node_stats(LinkAddr::Id(1)).unwrap();
    assert_eq!((s.frames_sent, s.duty_cycle_refusals), (4, 1));
    assert!(s.airtime_sent <= Duration::from_millis(360));
}

#[tokio::test]
async fn connecting_to_nothing_fails() {
    // A bound socket that never answers stands in for a dead hub.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let started = std::time::Instant::now();
    let r = SimLink::connect_hub(silent.local_addr().unwrap(), 1).await;
    assert!(matches!(r, Err(LinkError::Closed)));
    assert!(started.elapsed() < DEADLINE);
}
