//! Opening configured links, each behind this node's own airtime budget.

use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use futures::{future::BoxFuture, FutureExt};
use offgrid_transports::{
    kiss::{KissConfig, KissLink},
    lora::{DutyCycle, LoraParams},
    sim::SimLink,
    udp::{UdpConfig, UdpLink},
    Endpoint, Link, LinkAddr, LinkError, LinkKind, LinkStats,
};
use tokio::time::Instant;

use super::config::{LinkSpec, RadioConfig};

/// A link whose sends are refused (with the wait) once this node's duty cycle is spent, so
/// the node never relies on the radio or a regulator to stop it. Refusals surface as
/// [`LinkError::DutyCycle`]: the ARQ waits and resends, the beacon task skips a beat.
pub struct Budgeted {
    inner: Arc<dyn Link>,
    duty: Mutex<DutyCycle>,
    deferred: AtomicU64,
}

impl std::fmt::Debug for Budgeted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Budgeted")
            .field("kind", &self.inner.kind())
            .finish_non_exhaustive()
    }
}

impl Budgeted {
    /// Wraps `inner` with `duty`.
    pub fn new(inner: Arc<dyn Link>, duty: DutyCycle) -> Self {
        Budgeted {
            inner,
            duty: Mutex::new(duty),
            deferred: AtomicU64::new(0),
        }
    }

    fn duty(&self) -> std::sync::MutexGuard<'_, DutyCycle> {
        // Only whole reservations happen under the lock; a poisoned one is still consistent.
        self.duty.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Airtime used in the current window and the allowance.
    pub fn budget(&self) -> (Duration, Duration) {
        let mut d = self.duty();
        (d.used(Instant::now().into_std()), d.allowance())
    }

    /// Sends refused because the budget was spent.
    pub fn deferred(&self) -> u64 {
        self.deferred.load(Ordering::Relaxed)
    }
}

impl Link for Budgeted {
    fn send<'a>(
        &'a self,
        dest: LinkAddr,
        payload: &'a [u8],
    ) -> BoxFuture<'a, Result<(), LinkError>> {
        let airtime = self.inner.airtime(payload.len());
        let reserved = self.duty().try_reserve(airtime, Instant::now().into_std());
        match reserved {
            Ok(()) => self.inner.send(dest, payload),
            Err(retry_after) => {
                self.deferred.fetch_add(1, Ordering::Relaxed);
                async move { Err(LinkError::DutyCycle { retry_after }) }.boxed()
            }
        }
    }
    fn mtu(&self) -> usize {
        self.inner.mtu()
    }
    fn kind(&self) -> LinkKind {
        self.inner.kind()
    }
    fn airtime(&self, len: usize) -> Duration {
        self.inner.airtime(len)
    }
    fn local_addr(&self) -> LinkAddr {
        self.inner.local_addr()
    }
    fn stats(&self) -> LinkStats {
        self.inner.stats()
    }
}

/// Opens the link of `cfg`. `station` is this node's station id on a simulator.
pub async fn open(
    cfg: &RadioConfig,
    spec: &LinkSpec,
    station: u64,
) -> Result<Endpoint<Arc<Budgeted>>, LinkError> {
    let lora = LoraParams::new(cfg.sf, cfg.bw_hz).with_cr(cfg.cr);
    let ep: Endpoint<Arc<dyn Link>> = match spec {
        LinkSpec::Kiss { path, baud } => {
            KissLink::open_with(path, *baud, KissConfig::new(lora))?.into_dyn()
        }
        LinkSpec::Udp(iface) => {
            let iface = iface.unwrap_or(std::net::Ipv4Addr::UNSPECIFIED);
            UdpLink::bind(UdpConfig::new(iface))?.into_dyn()
        }
        LinkSpec::Sim(hub) => SimLink::connect_hub(*hub, station).await?.into_dyn(),
        #[cfg(feature = "ble")]
        LinkSpec::Ble => {
            let ble = |e: offgrid_transports::ble::BleError| {
                LinkError::Io(std::io::Error::other(e.to_string()))
            };
            let adapter = offgrid_transports::ble::scanner::default_adapter()
                .await
                .map_err(ble)?;
            offgrid_transports::ble::link::BleLink::start(adapter)
                .await
                .map_err(ble)?
                .into_dyn()
        }
        // `LinkSpec::parse` refuses `ble` in a build without the feature.
        #[cfg(not(feature = "ble"))]
        LinkSpec::Ble => {
            return Err(LinkError::Io(std::io::Error::other(
                "built without Bluetooth (--features ble)",
            )))
        }
    };
    let duty = DutyCycle::with_window(cfg.duty_cycle, Duration::from_secs(cfg.duty_window_s));
    let (tx, rx) = ep.split();
    Ok(Endpoint {
        tx: Arc::new(Budgeted::new(tx, duty)),
        rx,
    })
}
