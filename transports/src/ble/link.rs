//! One Bluetooth LE adapter as a [`Link`] (feature `ble`), so the node's radio gateway uses
//! BLE like any other radio.
//!
//! - **In:** the scanner's Offgrid advertisements whose service data carries a beacon arrive
//!   as datagrams from [`LinkAddr::Ble`] (the gateway verifies them like beacons heard on
//!   LoRa); frames notified by peers we are connected to arrive the same way.
//! - **Out:** a frame to [`LinkAddr::Ble`] goes over a GATT connection to that device,
//!   opened on first use ([`GattLink`]) and kept; a failed send drops the connection so the
//!   next one reconnects. At most [`MAX_CONNECTIONS`] are open, and opening one takes at most
//!   [`CONNECT_TIMEOUT`] (sends wait for it meanwhile).
//! - **Broadcast** is refused ([`LinkError::AddrNotSupported`]): btleplug is a central only
//!   and cannot advertise, so this node's own beacon goes out on its other links (or from a
//!   peripheral companion). The gateway stops beaconing on such a link after the first try.

use std::{collections::HashMap, sync::Arc, time::Duration};

use btleplug::{
    api::{Central, Peripheral as _},
    platform::Adapter,
};
use futures::{future::BoxFuture, FutureExt, StreamExt};
use tokio::{sync::mpsc, task::JoinHandle};
use tracing::debug;

use super::{
    ble_airtime,
    gatt::{GattLink, GattTx},
    scanner::BleScanner,
    BleError, BLE_MTU,
};
use crate::{
    link::{LinkCounters, DEFAULT_RX_QUEUE},
    Datagram, Endpoint, Link, LinkAddr, LinkError, LinkKind, LinkStats,
};

/// GATT connections open at once.
pub const MAX_CONNECTIONS: usize = 8;
/// Longest a GATT connection (connect, service discovery, subscribe) may take. BlueZ waits
/// for `ServicesResolved`, which a device without a GATT server never sends.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Aborts the task when the last handle goes.
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

struct Conn {
    tx: GattTx,
    _forward: AbortOnDrop,
}

/// The sending half of a BLE link.
pub struct BleTx {
    adapter: Adapter,
    conns: tokio::sync::Mutex<HashMap<[u8; 6], Conn>>,
    inbound: mpsc::Sender<Datagram>,
    counters: Arc<LinkCounters>,
    _scan: AbortOnDrop,
}

/// A BLE link: [`BleTx`] plus beacons and frames received.
pub type BleLink = Endpoint<BleTx>;

fn io(e: impl std::fmt::Display) -> LinkError {
    LinkError::Io(std::io::Error::other(e.to_string()))
}

impl Endpoint<BleTx> {
    /// Starts scanning on `adapter` and returns the link.
    ///
    /// # Errors
    /// [`BleError`] when the scan cannot start (no BlueZ, adapter off, no permission).
    pub async fn start(adapter: Adapter) -> Result<Self, BleError> {
        let mut scanner = BleScanner::start(adapter.clone()).await?;
        let counters = Arc::new(LinkCounters::default());
        let (queue, rx) = mpsc::channel(DEFAULT_RX_QUEUE);
        let (scan_queue, scan_counters) = (queue.clone(), counters.clone());
        let scan = tokio::spawn(async move {
            while let Some(found) = scanner.next().await {
                // A node known only by its name has no beacon to offer: nothing to verify.
                let Some(beacon) = found.service_data else {
                    continue;
                };
                let dgram = Datagram {
                    from: LinkAddr::Ble(found.address),
                    payload: beacon,
                };
                if !scan_counters.deliver(&scan_queue, dgram) {
                    return;
                }
            }
        });
        let tx = BleTx {
            adapter,
            conns: tokio::sync::Mutex::new(HashMap::new()),
            inbound: queue,
            counters,
            _scan: AbortOnDrop(scan),
        };
        Ok(Endpoint { tx, rx })
    }
}

impl BleTx {
    /// The connection to `addr`, opened if needed.
    async fn conn(&self, addr: [u8; 6]) -> Result<GattTx, LinkError> {
        let mut conns = self.conns.lock().await;
        if let Some(c) = conns.get(&addr) {
            return Ok(c.tx.clone());
        }
        if conns.len() >= MAX_CONNECTIONS {
            return Err(io(format!(
                "{MAX_CONNECTIONS} BLE connections open; none free"
            )));
        }
        let peripheral = self
            .adapter
            .peripherals()
            .await
            .map_err(io)?
            .into_iter()
            .find(|p| p.address().into_inner() == addr)
            .ok_or_else(|| io("device not seen by the scanner"))?;
        let GattLink { tx, mut rx } =
            tokio::time::timeout(CONNECT_TIMEOUT, GattLink::connect(peripheral))
                .await
                .map_err(|_| io("GATT connection timed out"))?
                .map_err(io)?;
        let (queue, counters) = (self.inbound.clone(), self.counters.clone());
        let forward = tokio::spawn(async move {
            while let Some(d) = rx.recv().await {
                if !counters.deliver(&queue, d) {
                    return;
                }
            }
        });
        conns.insert(
            addr,
            Conn {
                tx: tx.clone(),
                _forward: AbortOnDrop(forward),
            },
        );
        debug!(peer = %LinkAddr::Ble(addr), "GATT connection open");
        Ok(tx)
    }

    async fn send_to(&self, dest: LinkAddr, payload: &[u8]) -> Result<(), LinkError> {
        let LinkAddr::Ble(addr) = dest else {
            return Err(LinkError::AddrNotSupported(dest));
        };
        let tx = self.conn(addr).await?;
        match tx.send(dest, payload).await {
            Ok(()) => {
                self.counters
                    .sent(payload.len(), ble_airtime(payload.len()));
                Ok(())
            }
            Err(e) => {
                self.conns.lock().await.remove(&addr);
                Err(e)
            }
        }
    }
}

impl Link for BleTx {
    fn send<'a>(
        &'a self,
        dest: LinkAddr,
        payload: &'a [u8],
    ) -> BoxFuture<'a, Result<(), LinkError>> {
        self.send_to(dest, payload).boxed()
    }

    fn mtu(&self) -> usize {
        BLE_MTU
    }

    fn kind(&self) -> LinkKind {
        LinkKind::Ble
    }

    fn airtime(&self, len: usize) -> Duration {
        ble_airtime(len)
    }

    fn local_addr(&self) -> LinkAddr {
        LinkAddr::Unknown
    }

    fn stats(&self) -> LinkStats {
        self.counters.snapshot()
    }
}
