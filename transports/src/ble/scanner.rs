//! Scanning for Offgrid nodes with btleplug (feature `ble`; untested here: no Bluetooth).

use std::{
    pin::Pin,
    task::{Context, Poll},
};

use btleplug::{
    api::{Central, CentralEvent, Manager as _, Peripheral as _, ScanFilter},
    platform::{Adapter, Manager},
};
use futures::{Stream, StreamExt};
use tokio::{sync::mpsc, task::JoinHandle};
use tracing::{debug, warn};

use super::{decode_name, offgrid_service_data, BleError, OFFGRID_SERVICE_UUID};

/// Scanner results queued before the consumer reads them; later ones are dropped.
const SCAN_QUEUE: usize = 64;

/// An Offgrid node seen in an advertisement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Discovered {
    /// The device's Bluetooth address.
    pub address: [u8; 6],
    /// Its local name, if advertised.
    pub name: Option<String>,
    /// The endpoint from an `OFFGRID:` name.
    pub endpoint: Option<Vec<u8>>,
    /// The Offgrid service data: a signed beacon, still to be verified.
    pub service_data: Option<Vec<u8>>,
    /// Received signal strength, dBm.
    pub rssi: Option<i16>,
}

/// The first Bluetooth adapter of the system.
pub async fn default_adapter() -> Result<Adapter, BleError> {
    let manager = Manager::new().await?;
    manager
        .adapters()
        .await?
        .into_iter()
        .next()
        .ok_or(BleError::NoAdapter)
}

/// A running scan: a stream of [`Discovered`] Offgrid nodes. Dropping it stops the scan task.
pub struct BleScanner {
    rx: mpsc::Receiver<Discovered>,
    task: JoinHandle<()>,
}

impl BleScanner {
    /// Starts scanning on `adapter` (all advertisements: nodes known only by name do not list
    /// the service UUID).
    pub async fn start(adapter: Adapter) -> Result<BleScanner, BleError> {
        let mut events = adapter.events().await?;
        adapter.start_scan(ScanFilter::default()).await?;
        let (queue, rx) = mpsc::channel(SCAN_QUEUE);
        let task = tokio::spawn(async move {
            while let Some(event) = events.next().await {
                let id = match event {
                    CentralEvent::DeviceDiscovered(id)
                    | CentralEvent::DeviceUpdated(id)
                    | CentralEvent::ServiceDataAdvertisement { id, .. }
                    | CentralEvent::ServicesAdvertisement { id, .. } => id,
                    _ => continue,
                };
                let props = match adapter.peripheral(&id).await {
                    Ok(p) => match p.properties().await {
                        Ok(Some(props)) => props,
                        _ => continue,
                    },
                    Err(e) => {
                        debug!(error = %e, "peripheral vanished");
                        continue;
                    }
                };
                let endpoint = props
                    .local_name
                    .as_deref()
                    .and_then(|n| decode_name(n).ok());
                let service_data = offgrid_service_data(
                    props
                        .service_data
                        .iter()
                        .map(|(u, d)| (u.as_u128(), d.as_slice())),
                )
                .map(<[u8]>::to_vec);
                let listed = props
                    .services
                    .iter()
                    .any(|u| u.as_u128() == OFFGRID_SERVICE_UUID);
                if endpoint.is_none() && service_data.is_none() && !listed {
                    continue;
                }
                let found = Discovered {
                    address: props.address.into_inner(),
                    name: props.local_name,
                    endpoint,
                    service_data,
                    rssi: props.rssi,
                };
                match queue.try_send(found) {
                    Ok(()) => {}
                    Err(mpsc::error::TrySendError::Full(_)) => debug!("scan queue full"),
                    Err(mpsc::error::TrySendError::Closed(_)) => break,
                }
            }
            if let Err(e) = adapter.stop_scan().await {
                warn!(error = %e, "stopping the BLE scan failed");
            }
        });
        Ok(BleScanner { rx, task })
    }
}

impl Stream for BleScanner {
    type Item = Discovered;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Discovered>> {
        self.rx.poll_recv(cx)
    }
}

impl Drop for BleScanner {
    fn drop(&mut self) {
        self.task.abort();
    }
}
