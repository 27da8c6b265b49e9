//! A [`Link`] over a GATT connection to a peripheral exposing the Offgrid service
//! (feature `ble`; untested here: no Bluetooth).
//!
//! We are the central: frames go out as writes (with response, so they arrive in order and
//! errors surface) to [`OFFGRID_RX_CHAR_UUID`], and come in as notifications on
//! [`OFFGRID_TX_CHAR_UUID`]. Both directions are split to the ATT MTU ([`super::chunk`]).
//! btleplug cannot act as a GATT server on Linux, so a node accepting BLE connections needs a
//! peripheral implementation (BlueZ's GATT server API, or a phone app) that mirrors this.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use btleplug::{
    api::{Characteristic, Peripheral as _, WriteType},
    platform::Peripheral,
};
use futures::{future::BoxFuture, FutureExt, StreamExt};
use tokio::sync::mpsc;
use tracing::debug;

use super::{
    ble_airtime,
    chunk::{max_message_len, Chunker, Reassembler},
    BleError, BLE_MTU, OFFGRID_RX_CHAR_UUID, OFFGRID_TX_CHAR_UUID,
};
use crate::{
    link::{check_mtu, LinkCounters, DEFAULT_RX_QUEUE},
    Datagram, Endpoint, Link, LinkAddr, LinkError, LinkKind, LinkStats,
};

/// How long the fragments of one frame may take to arrive.
const REASSEMBLY_TIMEOUT: Duration = Duration::from_secs(5);

/// The sending half of a GATT link.
#[derive(Clone)]
pub struct GattTx {
    peripheral: Peripheral,
    rx_char: Characteristic,
    address: [u8; 6],
    chunker: Arc<tokio::sync::Mutex<Chunker>>,
    counters: Arc<LinkCounters>,
}

/// A GATT link: [`GattTx`] plus frames received by notification.
pub type GattLink = Endpoint<GattTx>;

impl Endpoint<GattTx> {
    /// Connects to `peripheral`, finds the Offgrid characteristics and subscribes.
    pub async fn connect(peripheral: Peripheral) -> Result<Self, BleError> {
        if !peripheral.is_connected().await? {
            peripheral.connect().await?;
        }
        peripheral.discover_services().await?;
        let chars = peripheral.characteristics();
        let find = |uuid: u128| chars.iter().find(|c| c.uuid.as_u128() == uuid).cloned();
        let rx_char = find(OFFGRID_RX_CHAR_UUID).ok_or(BleError::NoOffgridService)?;
        let tx_char = find(OFFGRID_TX_CHAR_UUID).ok_or(BleError::NoOffgridService)?;
        peripheral.subscribe(&tx_char).await?;
        let mut notes = peripheral.notifications().await?;
        let address = peripheral.address().into_inner();
        let att_mtu = peripheral.mtu();
        if max_message_len(att_mtu)? < BLE_MTU {
            debug!(
                att_mtu,
                "ATT MTU too small for full frames; they will be refused"
            );
        }
        let counters = Arc::new(LinkCounters::default());
        let (queue, rx) = mpsc::channel(DEFAULT_RX_QUEUE);
        let task_counters = counters.clone();
        tokio::spawn(async move {
            let mut reassembler = Reassembler::new(BLE_MTU, REASSEMBLY_TIMEOUT);
            while let Some(note) = notes.next().await {
                if note.uuid.as_u128() != OFFGRID_TX_CHAR_UUID {
                    continue;
                }
                match reassembler.push(&note.value, Instant::now()) {
                    Ok(Some(payload)) => {
                        let dgram = Datagram {
                            from: LinkAddr::Ble(address),
                            payload,
                        };
                        if !task_counters.deliver(&queue, dgram) {
                            return;
                        }
                    }
                    Ok(None) => {}
                    Err(_) => task_counters.malformed(1),
                }
            }
            debug!("GATT notifications ended");
        });
        let tx = GattTx {
            peripheral,
            rx_char,
            address,
            chunker: Arc::new(tokio::sync::Mutex::new(Chunker::new(att_mtu)?)),
            counters,
        };
        Ok(Endpoint { tx, rx })
    }
}

impl GattTx {
    /// The peripheral's Bluetooth address.
    pub fn peer(&self) -> LinkAddr {
        LinkAddr::Ble(self.address)
    }

    async fn send_frame(&self, payload: &[u8]) -> Result<(), LinkError> {
        check_mtu(payload.len(), BLE_MTU)?;
        let mut chunker = self.chunker.lock().await;
        let frags = chunker
            .set_att_mtu(self.peripheral.mtu())
            .and_then(|()| chunker.split(payload))
            .map_err(|e| LinkError::Io(std::io::Error::other(e)))?;
        for frag in frags {
            self.peripheral
                .write(&self.rx_char, &frag, WriteType::WithResponse)
                .await
                .map_err(|e| LinkError::Io(std::io::Error::other(e)))?;
        }
        self.counters
            .sent(payload.len(), ble_airtime(payload.len()));
        Ok(())
    }
}

impl Link for GattTx {
    fn send<'a>(
        &'a self,
        _dest: LinkAddr,
        payload: &'a [u8],
    ) -> BoxFuture<'a, Result<(), LinkError>> {
        self.send_frame(payload).boxed()
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

    /// Our own adapter address is not known to btleplug: [`LinkAddr::Unknown`]. The peer's
    /// is [`GattTx::peer`].
    fn local_addr(&self) -> LinkAddr {
        LinkAddr::Unknown
    }

    fn stats(&self) -> LinkStats {
        self.counters.snapshot()
    }
}
