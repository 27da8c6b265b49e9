//! Tests of the in-process simulated medium (simulated time throughout).

use std::time::Duration;

use tokio::time::{timeout, Instant};

use super::*;

fn id(n: u64) -> LinkAddr {
    LinkAddr::Id(n)
}

#[tokio::test(start_paused = true)]
async fn delivers_after_airtime_to_everyone_else() {
    let medium = SimMedium::new(SimConfig::default());
    let a = medium.attach(id(1));
    let mut b = medium.attach(id(2));
    let mut c = medium.attach(id(3));
    let t0 = Instant::now();
    a.send(LinkAddr::Broadcast, &[7u8; 220]).await.unwrap();
    // Tokio timers round up to the millisecond.
    let took = t0.elapsed();
    assert!(took >= Duration::from_micros(348_416) && took <= Duration::from_millis(350));
    for rx in [&mut b, &mut c] {
        let d = rx.rx.try_recv().expect("delivered when send resolved");
        assert_eq!((d.from, d.payload.len()), (id(1), 220));
    }
    let mut a = a;
    assert!(a.rx.try_recv().is_err(), "a station does not hear itself");
    // Unicast reaches only its destination.
    b.send(id(3), b"psst").await.unwrap();
    assert_eq!(c.rx.try_recv().unwrap().payload, b"psst");
    assert!(a.rx.try_recv().is_err());
    let stats = medium.stats();
    assert_eq!(stats[&id(1)].frames_sent, 1);
    assert_eq!(stats[&id(1)].airtime_sent, Duration::from_micros(348_416));
    assert_eq!(stats[&id(3)].frames_received, 2);
    assert_eq!(a.tx.kind().as_str(), "lora");
    assert!(matches!(
        a.send(LinkAddr::Broadcast, &[0u8; 221]).await,
        Err(LinkError::Oversize { .. })
    ));
}

#[tokio::test(start_paused = true)]
async fn loss_ratio_matches_config() {
    let medium = SimMedium::new(
        SimConfig::default()
            .with_loss(0.1)
            .with_seed(42)
            .with_lora(LoraParams::new(7, 500_000)),
    );
    let a = medium.attach(id(1));
    let mut b = medium.attach(id(2));
    let n = 5000u64;
    let mut got = 0u64;
    for i in 0..n {
        a.send(LinkAddr::Broadcast, &i.to_be_bytes()).await.unwrap();
        while b.rx.try_recv().is_ok() {
            got += 1;
        }
    }
    let s = medium.node_stats(id(2)).unwrap();
    assert_eq!(s.frames_received, got);
    assert_eq!(s.frames_received + s.frames_lost, n);
    // Binomial(5000, 0.1): σ ≈ 21; allow 4σ.
    let lost = s.frames_lost as i64;
    assert!((lost - 500).abs() < 85, "lost {lost} of {n}");
}

#[tokio::test(start_paused = true)]
async fn seeded_loss_is_reproducible() {
    async fn run(seed: u64) -> Vec<u8> {
        let medium = SimMedium::new(SimConfig::default().with_loss(0.5).with_seed(seed));
        let a = medium.attach(id(1));
        let mut b = medium.attach(id(2));
        for i in 0..64u8 {
            a.send(LinkAddr::Broadcast, &[i]).await.unwrap();
        }
        let mut got = Vec::new();
        while let Ok(d) = b.rx.try_recv() {
            got.push(d.payload[0]);
        }
        got
    }
    assert_eq!(run(7).await, run(7).await);
    assert_ne!(run(7).await, run(8).await);
}

#[tokio::test(start_paused = true)]
async fn overlapping_frames_collide() {
    let medium = SimMedium::new(SimConfig::default().with_collisions(true));
    let a = medium.attach(id(1));
    let b = medium.attach(id(2));
    let mut c = medium.attach(id(3));
    // Simultaneous start.
    let (ra, rb) = tokio::join!(
        a.send(LinkAddr::Broadcast, b"from a"),
        b.send(LinkAddr::Broadcast, b"from b")
    );
    ra.unwrap();
    rb.unwrap();
    assert!(c.rx.try_recv().is_err());
    assert_eq!(medium.node_stats(id(3)).unwrap().frames_collided, 2);
    // Partial overlap: b starts while a is halfway through.
    let half = a.tx.airtime(200) / 2;
    let (ra, rb) = tokio::join!(a.send(LinkAddr::Broadcast, &[1u8; 200]), async {
        tokio::time::sleep(half).await;
        b.send(LinkAddr::Broadcast, &[2u8; 10]).await
    });
    ra.unwrap();
    rb.unwrap();
    assert!(c.rx.try_recv().is_err());
    assert_eq!(medium.node_stats(id(3)).unwrap().frames_collided, 4);
    // Back to back: no overlap, both arrive.
    a.send(LinkAddr::Broadcast, b"1").await.unwrap();
    b.send(LinkAddr::Broadcast, b"2").await.unwrap();
    assert_eq!(c.rx.try_recv().unwrap().payload, b"1");
    assert_eq!(c.rx.try_recv().unwrap().payload, b"2");
}

#[tokio::test(start_paused = true)]
async fn without_collision_model_overlaps_are_delivered() {
    let medium = SimMedium::new(SimConfig::default());
    let a = medium.attach(id(1));
    let b = medium.attach(id(2));
    let mut c = medium.attach(id(3));
    let (ra, rb) = tokio::join!(
        a.send(LinkAddr::Broadcast, b"a"),
        b.send(LinkAddr::Broadcast, b"b")
    );
    ra.unwrap();
    rb.unwrap();
    assert!(c.rx.try_recv().is_ok() && c.rx.try_recv().is_ok());
}

#[tokio::test(start_paused = true)]
async fn a_station_is_half_duplex() {
    let medium = SimMedium::new(SimConfig::default().with_collisions(true));
    let a = medium.attach(id(1));
    let mut b = medium.attach(id(2));
    // Two concurrent sends from one station queue up instead of colliding with each other.
    let t0 = Instant::now();
    let (r1, r2) = tokio::join!(
        a.send(LinkAddr::Broadcast, b"1"),
        a.send(LinkAddr::Broadcast, b"2")
    );
    r1.unwrap();
    r2.unwrap();
    assert!(t0.elapsed() >= a.tx.airtime(1) * 2);
    assert_eq!(b.rx.try_recv().unwrap().payload, b"1");
    assert_eq!(b.rx.try_recv().unwrap().payload, b"2");
}

#[tokio::test(start_paused = true)]
async fn aborted_send_leaves_the_air() {
    let medium = SimMedium::new(SimConfig::default().with_collisions(true));
    let a = medium.attach(id(1));
    let b = medium.attach(id(2));
    let mut c = medium.attach(id(3));
    let air = a.tx.airtime(100);
    assert!(timeout(air / 2, a.send(LinkAddr::Broadcast, &[0u8; 100]))
        .await
        .is_err());
    // a's aborted frame neither arrives nor destroys b's.
    b.send(LinkAddr::Broadcast, b"clear").await.unwrap();
    assert_eq!(c.rx.try_recv().unwrap().payload, b"clear");
    assert!(c.rx.try_recv().is_err());
}

#[tokio::test(start_paused = true)]
async fn duty_cycle_is_never_exceeded() {
    // SF12 at 1 %: 36 s of airtime per hour, 7.9 s per full frame.
    let medium = SimMedium::new(
        SimConfig::default()
            .with_lora(LoraParams::new(12, 125_000))
            .with_duty_cycle(0.01),
    );
    let a = medium.attach(id(1));
    let _b = medium.attach(id(2));
    let t0 = Instant::now();
    let mut log = Vec::new();
    let mut refusals = 0;
    let mut i = 0usize;
    while t0.elapsed() < Duration::from_secs(3 * 3600) {
        // Mix of sizes so that small frames fill gaps big ones cannot.
        let len = [220, 60, 220, 10][i % 4];
        let start = Instant::now();
        match a.send(LinkAddr::Broadcast, &vec![0u8; len]).await {
            Ok(()) => {
                log.push((start, a.tx.airtime(len)));
                i += 1;
            }
            Err(LinkError::DutyCycle { retry_after }) => {
                refusals += 1;
                assert!(retry_after > Duration::ZERO && retry_after <= Duration::from_secs(3600));
                tokio::time::sleep(retry_after).await;
            }
            Err(e) => panic!("{e}"),
        }
    }
    let s = medium.node_stats(id(1)).unwrap();
    assert_eq!(s.frames_sent, log.len() as u64);
    assert_eq!(s.airtime_sent, log.iter().map(|l| l.1).sum::<Duration>());
    assert_eq!(s.duty_cycle_refusals, refusals);
    let allowance = Duration::from_secs(36);
    assert!(s.airtime_sent <= allowance * 4, "{:?}", s.airtime_sent);
    assert!(
        s.airtime_sent > allowance * 2,
        "a greedy sender uses its budget"
    );
    for (k, &(start, _)) in log.iter().enumerate() {
        let window: Duration = log[k..]
            .iter()
            .take_while(|(t, _)| *t < start + Duration::from_secs(3600))
            .map(|l| l.1)
            .sum();
        assert!(window <= allowance, "hour from frame {k} holds {window:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn slow_consumer_drops_and_gone_station_detaches() {
    let medium = SimMedium::new(SimConfig {
        rx_queue: 2,
        ..SimConfig::default()
    });
    let a = medium.attach(id(1));
    let b = medium.attach(id(2));
    for _ in 0..5 {
        a.send(LinkAddr::Broadcast, b"x").await.unwrap();
    }
    assert_eq!(medium.node_stats(id(2)).unwrap().rx_dropped, 3);
    assert_eq!(b.tx.stats().rx_dropped, 3);
    let (b_tx, b_rx) = b.split();
    drop(b_rx);
    a.send(LinkAddr::Broadcast, b"x").await.unwrap();
    assert!(matches!(
        b_tx.send(LinkAddr::Broadcast, b"y").await,
        Err(LinkError::Closed)
    ));
    // Counters survive the detach.
    assert_eq!(medium.node_stats(id(2)).unwrap().frames_received, 2);
}
