//! btleplug against a fake BlueZ (python3-dbusmock's `bluez5` template on a private D-Bus):
//! the adapter is found, a scan reports an Offgrid node by its service data (as a beacon
//! datagram on the BLE link) and by its `OFFGRID:` name, a broadcast is refused, and a send
//! to a device without the Offgrid GATT service fails cleanly.
//!
//! Needs `dbus-daemon` and python3-dbusmock (Debian package; `.ci/run` installs it); skips
//! with a printed reason without them. Built only with `--features ble`.
#![cfg(feature = "ble")]
// A panic in a test is a failure with a message, which is what a test wants.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    io::{BufRead, BufReader, Write},
    process::{Child, ChildStdin, ChildStdout, Command, Stdio},
    sync::mpsc,
    time::Duration,
};

use ed25519_dalek::SigningKey;
use futures::StreamExt;
use offgrid_transports::{
    beacon::{Beacon, Flags},
    ble::{
        encode_name, link::BleLink, scanner::default_adapter, scanner::BleScanner, uuid_string,
        OFFGRID_SERVICE_UUID,
    },
    Link, LinkAddr, LinkError,
};

const PYTHON: &str = "/usr/bin/python3";
const DEADLINE: Duration = Duration::from_secs(20);

/// A private bus and the fake BlueZ on it; both killed on drop.
struct FakeBluez {
    bus: Child,
    mock: Child,
    stdin: ChildStdin,
    lines: mpsc::Receiver<String>,
}

impl Drop for FakeBluez {
    fn drop(&mut self) {
        for c in [&mut self.mock, &mut self.bus] {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn spawn_lines(out: ChildStdout) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

impl FakeBluez {
    fn start() -> Result<FakeBluez, String> {
        let has_mock = Command::new(PYTHON)
            .args(["-c", "import dbusmock"])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        if !has_mock {
            return Err("python3-dbusmock is not installed".into());
        }
        let mut bus = Command::new("dbus-daemon")
            .args(["--session", "--nofork", "--print-address=1"])
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| format!("dbus-daemon: {e}"))?;
        let bus_lines = spawn_lines(bus.stdout.take().unwrap());
        let address = bus_lines
            .recv_timeout(DEADLINE)
            .map_err(|_| "dbus-daemon printed no address".to_string())?;
        // btleplug (libdbus) and the mock both take the "system" bus from here.
        std::env::set_var("DBUS_SYSTEM_BUS_ADDRESS", &address);
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/bluez_mock.py");
        let mut mock = Command::new(PYTHON)
            .arg(script)
            .env("DBUS_SYSTEM_BUS_ADDRESS", &address)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| format!("{PYTHON}: {e}"))?;
        let stdin = mock.stdin.take().unwrap();
        let lines = spawn_lines(mock.stdout.take().unwrap());
        let mut fake = FakeBluez {
            bus,
            mock,
            stdin,
            lines,
        };
        fake.expect("READY")?;
        Ok(fake)
    }

    fn expect(&mut self, word: &str) -> Result<(), String> {
        match self.lines.recv_timeout(DEADLINE) {
            Ok(l) if l == word => Ok(()),
            Ok(l) => Err(format!("fake BlueZ said {l:?}, not {word}")),
            Err(_) => Err(format!("fake BlueZ did not say {word}")),
        }
    }

    fn add(&mut self, args: &str) {
        writeln!(self.stdin, "add {args}").unwrap();
        self.stdin.flush().unwrap();
        self.expect("ADDED").unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scan_finds_offgrid_nodes_by_service_data_and_by_name_on_a_fake_bluez() {
    let mut fake = match FakeBluez::start() {
        Ok(f) => f,
        Err(why) => {
            eprintln!("SKIPPED scan_finds_offgrid_nodes…: {why}");
            return;
        }
    };
    let adapter = tokio::time::timeout(DEADLINE, default_adapter())
        .await
        .expect("adapter lookup in time")
        .expect("the fake adapter is found");
    let mut link = BleLink::start(adapter.clone()).await.expect("scan starts");
    let mut names = BleScanner::start(adapter)
        .await
        .expect("second scan starts");

    let key = SigningKey::from_bytes(&[9; 32]);
    let beacon = Beacon::new(&key.verifying_key(), 42)
        .with_flags(Flags::ACTIVE)
        .encode_signed(&key)
        .unwrap();
    let hex: String = beacon.iter().map(|b| format!("{b:02x}")).collect();
    fake.add(&format!(
        "AA:BB:CC:00:11:22 some-node {} {hex}",
        uuid_string(OFFGRID_SERVICE_UUID)
    ));
    let endpoint = [7u8; 8];
    let name = encode_name(&endpoint).unwrap();
    fake.add(&format!("AA:BB:CC:33:44:55 {name}"));

    // The beacon arrives as a datagram from the advertiser's address.
    let d = tokio::time::timeout(DEADLINE, link.rx.recv())
        .await
        .expect("a beacon datagram in time")
        .expect("link open");
    assert_eq!(d.from, LinkAddr::Ble([0xAA, 0xBB, 0xCC, 0x00, 0x11, 0x22]));
    assert_eq!(d.payload, beacon);
    assert_eq!(link.tx.stats().frames_in, 1);

    // The name-only node is recognised by its OFFGRID: name.
    let found = tokio::time::timeout(DEADLINE, async {
        loop {
            let f = names.next().await.expect("scan running");
            if f.endpoint.is_some() {
                return f;
            }
        }
    })
    .await
    .expect("the named node in time");
    assert_eq!(found.address, [0xAA, 0xBB, 0xCC, 0x33, 0x44, 0x55]);
    assert_eq!(found.endpoint.as_deref(), Some(&endpoint[..]));

    // A central cannot advertise; a device without the Offgrid GATT service takes no frames.
    assert!(matches!(
        link.tx.send(LinkAddr::Broadcast, b"x").await,
        Err(LinkError::AddrNotSupported(LinkAddr::Broadcast))
    ));
    let sent = tokio::time::timeout(
        DEADLINE,
        link.tx
            .send(LinkAddr::Ble([0xAA, 0xBB, 0xCC, 0x33, 0x44, 0x55]), b"x"),
    )
    .await
    .expect("a send fails in time rather than hanging");
    assert!(sent.is_err(), "{sent:?}");
    assert_eq!(link.tx.stats().frames_out, 0);
}
