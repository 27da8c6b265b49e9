//! ArqStream over the simulated medium (simulated time).

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;
use crate::{
    lora::LoraParams,
    sim::{SimConfig, SimMedium},
};

fn pattern(len: usize, salt: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(salt) ^ (i >> 8) as u8)
        .collect()
}

fn streams(medium: &SimMedium, cfg: ArqConfig) -> (ArqStream, ArqStream) {
    let (a_tx, a_rx) = medium.attach(LinkAddr::Id(1)).split();
    let (b_tx, b_rx) = medium.attach(LinkAddr::Id(2)).split();
    (
        ArqStream::new(a_tx, a_rx, LinkAddr::Id(2), 7, cfg.clone()),
        ArqStream::new(b_tx, b_rx, LinkAddr::Id(1), 7, cfg),
    )
}

#[tokio::test(start_paused = true)]
async fn ten_kib_arrive_intact_over_ten_percent_loss() {
    let medium = SimMedium::new(SimConfig::default().with_loss(0.10).with_seed(1234));
    let (mut a, mut b) = streams(&medium, ArqConfig::default());
    let data = pattern(10 * 1024, 1);
    let t0 = tokio::time::Instant::now();
    let sent = data.clone();
    let writer = tokio::spawn(async move {
        a.write_all(&sent).await.unwrap();
        a.shutdown().await.unwrap();
        a
    });
    let mut got = Vec::new();
    b.read_to_end(&mut got).await.unwrap();
    let a = writer.await.unwrap();
    assert_eq!(got.len(), data.len());
    assert!(got == data, "stream corrupted or reordered");
    let (sa, sb) = (a.stats(), b.stats());
    let on_air = medium.node_stats(LinkAddr::Id(1)).unwrap();
    println!(
        "10 KiB over SF7/125 kHz with 10 % loss: {:?} simulated, {} segments + {} resent, \
         {} B / {:?} on air from the sender, {} ACKs back",
        t0.elapsed(),
        sa.segments_sent,
        sa.retransmissions,
        on_air.bytes_sent,
        on_air.airtime_sent,
        sb.acks_sent,
    );
    assert_eq!(sa.segments_sent, 49); // ceil(10240 / 213) data + 1 FIN
    assert!(
        sa.retransmissions > 0,
        "10 % loss must cost retransmissions"
    );
    assert!(
        medium.node_stats(LinkAddr::Id(2)).unwrap().frames_lost > 0,
        "the loss model was active"
    );
    assert_eq!(sb.bytes_delivered, 10 * 1024);
}

#[tokio::test(start_paused = true)]
async fn both_directions_at_once_with_collisions() {
    let medium = SimMedium::new(
        SimConfig::default()
            .with_loss(0.05)
            .with_collisions(true)
            .with_seed(9)
            .with_lora(LoraParams::new(7, 250_000)),
    );
    let (a, b) = streams(&medium, ArqConfig::default().with_window(4));
    let (da, db) = (pattern(3000, 2), pattern(2500, 3));
    let run = |mut s: ArqStream, out: Vec<u8>| async move {
        let (mut r, mut w) = tokio::io::split(&mut s);
        let send = async {
            w.write_all(&out).await.unwrap();
            w.shutdown().await.unwrap();
        };
        let mut got = Vec::new();
        let recv = r.read_to_end(&mut got);
        let (_, n) = tokio::join!(send, recv);
        n.unwrap();
        got
    };
    let (got_b, got_a) = tokio::join!(run(a, da.clone()), run(b, db.clone()));
    assert!(got_a == da && got_b == db);
    let collided = medium.node_stats(LinkAddr::Id(1)).unwrap().frames_collided
        + medium.node_stats(LinkAddr::Id(2)).unwrap().frames_collided;
    println!("bidirectional: {collided} frames lost to collisions, recovered");
}

#[tokio::test(start_paused = true)]
async fn flush_waits_for_acknowledgement() {
    let medium = SimMedium::new(SimConfig::default());
    let (mut a, mut b) = streams(&medium, ArqConfig::default());
    let t0 = tokio::time::Instant::now();
    a.write_all(b"ping").await.unwrap();
    a.flush().await.unwrap();
    // One data frame and one ACK have been on the air.
    let air = LoraParams::default();
    assert!(t0.elapsed() >= air.airtime(4 + 7) + air.airtime(11));
    let mut buf = [0u8; 4];
    b.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"ping");
}

#[tokio::test(start_paused = true)]
async fn silent_peer_fails_the_stream() {
    let medium = SimMedium::new(SimConfig::default());
    let (tx, rx) = medium.attach(LinkAddr::Id(1)).split();
    // Nobody at station 2.
    let cfg = ArqConfig::default().with_keepalive(Duration::from_secs(5), Duration::from_secs(20));
    let mut s = ArqStream::new(tx, rx, LinkAddr::Id(2), 1, cfg);
    s.write_all(b"hello?").await.unwrap();
    let err = s.flush().await.unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
    assert!(matches!(
        s.error(),
        Some(ArqError::PeerSilent(_) | ArqError::Unacknowledged(_))
    ));
    let mut buf = [0u8; 1];
    assert!(s.read(&mut buf).await.is_err());
}

#[tokio::test(start_paused = true)]
async fn keepalive_keeps_an_idle_stream_up() {
    let medium = SimMedium::new(SimConfig::default());
    let cfg = ArqConfig::default().with_keepalive(Duration::from_secs(5), Duration::from_secs(20));
    let (mut a, mut b) = streams(&medium, cfg);
    // Idle for ten silence timeouts: pings keep both sides alive.
    tokio::time::sleep(Duration::from_secs(200)).await;
    assert_eq!(a.error(), None);
    assert!(a.stats().pings_sent > 5);
    a.write_all(b"still here").await.unwrap();
    let mut buf = [0u8; 10];
    b.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"still here");
}

#[tokio::test(start_paused = true)]
async fn duty_cycle_delays_but_does_not_break_the_stream() {
    // 1 % budget: 36 s/h. 2 KiB at SF7 (~10 frames of 348 ms) fits, with ACKs, in one budget.
    let medium = SimMedium::new(SimConfig::default().with_duty_cycle(0.01));
    let (mut a, mut b) = streams(&medium, ArqConfig::default());
    let data = pattern(2048, 4);
    a.write_all(&data).await.unwrap();
    a.shutdown().await.unwrap();
    let mut got = Vec::new();
    b.read_to_end(&mut got).await.unwrap();
    assert!(got == data);
    let s = medium.node_stats(LinkAddr::Id(1)).unwrap();
    assert!(s.airtime_sent <= Duration::from_secs(36));
}
