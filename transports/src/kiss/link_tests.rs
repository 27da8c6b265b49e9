//! Tests of [`KissLink`] over a serial pair, an in-memory pipe and a real socat PTY pair.

use std::time::Duration;

use tokio::{io::AsyncWriteExt, time::timeout};

use super::*;
use crate::kiss::codec::{encode_data, encode_frame, FEND};

const DEADLINE: Duration = Duration::from_secs(10);

fn quick(lora: LoraParams) -> KissConfig {
    KissConfig::new(lora).with_pacing(false)
}

async fn recv(link: &mut KissLink) -> Datagram {
    timeout(DEADLINE, link.recv())
        .await
        .expect("frame within deadline")
        .expect("link open")
}

fn all_bytes_payload() -> Vec<u8> {
    (0..220u32)
        .map(|i| (i * 7 % 256) as u8)
        .chain([FEND])
        .take(220)
        .collect()
}

async fn exchange(a: &mut KissLink, b: &mut KissLink) {
    let payloads = vec![
        b"hello".to_vec(),
        vec![FEND, 0xDB, 0xDC, 0xDD, FEND, FEND],
        all_bytes_payload(),
        (0..=255u8).take(220).collect(),
    ];
    for p in &payloads {
        a.send(LinkAddr::Broadcast, p).await.unwrap();
    }
    for p in &payloads {
        let d = recv(b).await;
        assert_eq!(&d.payload, p);
        assert_eq!(d.from, LinkAddr::Unknown);
    }
    b.send(LinkAddr::Id(7), b"back").await.unwrap();
    assert_eq!(recv(a).await.payload, b"back");
    assert_eq!(a.tx.stats().frames_out, payloads.len() as u64);
    assert_eq!(b.tx.stats().frames_in, payloads.len() as u64);
    assert_eq!(
        a.tx.stats().airtime_out,
        payloads
            .iter()
            .map(|p| a.tx.airtime(p.len()))
            .sum::<Duration>()
    );
}

#[tokio::test]
async fn serial_pair_round_trip() {
    let (s1, s2) = tokio_serial::SerialStream::pair().expect("pty pair");
    let mut a = KissLink::from_stream(s1, quick(LoraParams::default()));
    let mut b = KissLink::from_stream(s2, quick(LoraParams::default()));
    exchange(&mut a, &mut b).await;
    assert_eq!(a.tx.kind().as_str(), "lora");
    assert_eq!(a.tx.mtu(), 220);
    assert!(matches!(
        a.send(LinkAddr::Broadcast, &[0u8; 221]).await,
        Err(LinkError::Oversize { len: 221, mtu: 220 })
    ));
}

#[tokio::test]
async fn duty_cycle_refuses_the_fifth_sf12_frame() {
    let (s1, _s2) = tokio::io::duplex(64 * 1024);
    let cfg = quick(LoraParams::new(12, 125_000)).with_duty_cycle(DutyCycle::new(0.01));
    let link = KissLink::from_stream(s1, cfg);
    for _ in 0..4 {
        link.send(LinkAddr::Broadcast, &[1u8; 220]).await.unwrap();
    }
    match link.send(LinkAddr::Broadcast, &[1u8; 220]).await {
        Err(LinkError::DutyCycle { retry_after }) => {
            assert!(retry_after > Duration::from_secs(3500), "{retry_after:?}")
        }
        other => panic!("expected a duty-cycle refusal, got {other:?}"),
    }
    let s = link.tx.stats();
    assert_eq!((s.frames_out, s.duty_cycle_refusals), (4, 1));
    // Small frames still fit the remaining 4.5 s.
    link.send(LinkAddr::Broadcast, &[1u8; 10]).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn pacing_holds_send_for_the_airtime() {
    let (s1, _s2) = tokio::io::duplex(64 * 1024);
    let link = KissLink::from_stream(s1, KissConfig::new(LoraParams::default()));
    let t0 = tokio::time::Instant::now();
    link.send(LinkAddr::Broadcast, &[0u8; 220]).await.unwrap();
    link.send(LinkAddr::Broadcast, &[0u8; 220]).await.unwrap();
    // Tokio timers have millisecond resolution: each sleep rounds up by < 1 ms.
    let want = Duration::from_micros(2 * 348_416);
    assert!(t0.elapsed() >= want && t0.elapsed() < want + Duration::from_millis(3));
}

#[tokio::test]
async fn ignores_other_ports_commands_and_junk() {
    let (s1, mut raw) = tokio::io::duplex(64 * 1024);
    let mut link = KissLink::from_stream(s1, quick(LoraParams::default()).with_port(2));
    let mut stream = b"\x00\x01line noise".to_vec();
    stream.extend_from_slice(&encode_data(b"port 0"));
    stream.extend_from_slice(&encode_frame(2, 1, b"txdelay"));
    stream.extend_from_slice(&[FEND, 0x20, 0xDB, 0x01, FEND]); // bad escape
    stream.extend_from_slice(&encode_frame(2, 0, &[9u8; 300])); // oversize
    stream.extend_from_slice(&encode_frame(2, 0, b"mine"));
    raw.write_all(&stream).await.unwrap();
    assert_eq!(recv(&mut link).await.payload, b"mine");
    let s = link.tx.stats();
    assert_eq!((s.frames_in, s.rx_malformed), (1, 2));
    // What we send goes out on port 2.
    link.send(LinkAddr::Broadcast, b"x").await.unwrap();
    let mut buf = [0u8; 4];
    tokio::io::AsyncReadExt::read_exact(&mut raw, &mut buf)
        .await
        .unwrap();
    assert_eq!(buf, [FEND, 0x20, b'x', FEND]);
}

#[tokio::test]
async fn full_queue_drops_and_counts() {
    let (s1, mut raw) = tokio::io::duplex(64 * 1024);
    let mut cfg = quick(LoraParams::default());
    cfg.rx_queue = 2;
    let mut link = KissLink::from_stream(s1, cfg);
    let mut stream = Vec::new();
    for i in 0..5u8 {
        stream.extend_from_slice(&encode_data(&[i]));
    }
    raw.write_all(&stream).await.unwrap();
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while link.tx.stats().frames_in + link.tx.stats().rx_dropped < 5 {
        assert!(tokio::time::Instant::now() < deadline, "reader stalled");
        tokio::task::yield_now().await;
    }
    assert_eq!(link.tx.stats().rx_dropped, 3);
    assert_eq!(recv(&mut link).await.payload, [0]);
    assert_eq!(recv(&mut link).await.payload, [1]);
}

/// A socat process that is killed when the test ends, however it ends.
struct Socat {
    child: tokio::process::Child,
}

impl Drop for Socat {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

#[tokio::test]
async fn socat_pty_pair_round_trip() {
    use tokio::io::{AsyncBufReadExt, BufReader};

    let spawned = tokio::process::Command::new("socat")
        .args(["-d", "-d", "pty,raw,echo=0", "pty,raw,echo=0"])
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn();
    let mut socat = match spawned {
        Ok(child) => Socat { child },
        Err(e) => {
            println!("SKIP socat_pty_pair_round_trip: cannot run socat ({e})");
            return;
        }
    };
    let stderr = socat.child.stderr.take().expect("piped stderr");
    let mut lines = BufReader::new(stderr).lines();
    let mut ptys = Vec::new();
    while ptys.len() < 2 {
        let line = timeout(DEADLINE, lines.next_line())
            .await
            .expect("socat reports its PTYs")
            .unwrap()
            .expect("socat still running");
        // "2026/11/22 10:00:00 socat[123] N PTY is /dev/pts/4"
        if let Some(idx) = line.find("PTY is ") {
            ptys.push(line[idx + 7..].trim().to_owned());
        }
    }
    // socat prints the PTYs before it starts transferring; wait for that line too.
    while let Some(line) = timeout(DEADLINE, lines.next_line()).await.unwrap().unwrap() {
        if line.contains("starting data transfer loop") {
            break;
        }
    }
    let mut a = KissLink::open_with(&ptys[0], 9600, quick(LoraParams::default())).unwrap();
    let mut b = KissLink::open_with(&ptys[1], 9600, quick(LoraParams::default())).unwrap();
    exchange(&mut a, &mut b).await;
    drop(socat);
}
