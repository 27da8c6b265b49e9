//! A simulated LoRa medium for tests and benchmarks.
//!
//! [`SimMedium`] stands for one shared radio channel. [`SimMedium::attach`] gives each station
//! a [`SimLink`]; a frame sent on it is on the air for its LoRa airtime (tokio time, so tests
//! can `tokio::time::pause()` and run hours of traffic in milliseconds), then delivered to
//! every other station it is addressed to (all of them for a broadcast), except that:
//! - each delivery is lost with probability `loss` (a seeded RNG, so runs are reproducible);
//! - with `collisions`, two frames that overlap in time are both lost at every receiver;
//! - with `duty_cycle`, a send beyond the station's budget fails with
//!   [`LinkError::DutyCycle`] and is never put on the air.
//!
//! A station is half-duplex: its sends are serialised and each resolves once the frame has
//! left the air. The medium counts frames, bytes and airtime per station ([`SimMedium::stats`]).
//!
//! Between processes, [`SimHub`] runs a medium behind a loopback UDP socket and
//! [`SimLink::connect_hub`] attaches a station to it (see [`hub`] for the wire format).

pub mod hub;

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use futures::{future::BoxFuture, FutureExt};
use rand::{rngs::SmallRng, RngExt, SeedableRng};
use tokio::{sync::mpsc, time::Instant};

use hub::HubClient;
pub use hub::SimHub;

use crate::{
    link::{check_mtu, LinkCounters, DEFAULT_RX_QUEUE},
    lora::{DutyCycle, LoraParams, LORA_MTU},
    Datagram, Endpoint, Link, LinkAddr, LinkError, LinkKind, LinkStats,
};

/// How the simulated channel behaves.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Radio settings that determine each frame's airtime.
    pub lora: LoraParams,
    /// Probability (0.0..=1.0) that a given receiver misses a given frame.
    pub loss: f64,
    /// Whether overlapping frames destroy each other.
    pub collisions: bool,
    /// Duty-cycle budget per station (fraction of a one-hour window), `None` for unlimited.
    pub duty_cycle: Option<f64>,
    /// Seed of the loss RNG.
    pub seed: u64,
    /// Largest payload per frame.
    pub mtu: usize,
    /// Receive queue capacity per station.
    pub rx_queue: usize,
}

impl Default for SimConfig {
    /// SF7/125 kHz, no loss, no collisions, no duty cycle, seed 0, MTU 220.
    fn default() -> Self {
        SimConfig {
            lora: LoraParams::default(),
            loss: 0.0,
            collisions: false,
            duty_cycle: None,
            seed: 0,
            mtu: LORA_MTU,
            rx_queue: DEFAULT_RX_QUEUE,
        }
    }
}

impl SimConfig {
    /// Sets the radio settings.
    pub fn with_lora(mut self, lora: LoraParams) -> Self {
        self.lora = lora;
        self
    }
    /// Sets the loss probability.
    pub fn with_loss(mut self, loss: f64) -> Self {
        self.loss = loss;
        self
    }
    /// Turns collisions on or off.
    pub fn with_collisions(mut self, collisions: bool) -> Self {
        self.collisions = collisions;
        self
    }
    /// Sets a per-station duty cycle.
    pub fn with_duty_cycle(mut self, fraction: f64) -> Self {
        self.duty_cycle = Some(fraction);
        self
    }
    /// Sets the RNG seed.
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    fn loss_probability(&self) -> f64 {
        if self.loss.is_finite() {
            self.loss.clamp(0.0, 1.0)
        } else {
            0.0
        }
    }
}

/// What the medium counted for one station.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SimNodeStats {
    /// Frames put on the air.
    pub frames_sent: u64,
    /// Payload bytes put on the air.
    pub bytes_sent: u64,
    /// Airtime used.
    pub airtime_sent: Duration,
    /// Frames delivered to this station.
    pub frames_received: u64,
    /// Payload bytes delivered to this station.
    pub bytes_received: u64,
    /// Frames addressed to this station that the loss model dropped.
    pub frames_lost: u64,
    /// Frames addressed to this station destroyed by a collision.
    pub frames_collided: u64,
    /// Frames dropped because this station's receive queue was full.
    pub rx_dropped: u64,
    /// Sends refused by the duty-cycle budget.
    pub duty_cycle_refusals: u64,
}

struct Station {
    queue: mpsc::Sender<Datagram>,
    counters: Arc<LinkCounters>,
    duty: Option<DutyCycle>,
    stats: SimNodeStats,
}

struct InFlight {
    id: u64,
    end: Instant,
    collided: bool,
}

struct State {
    stations: HashMap<LinkAddr, Station>,
    /// Stations that detached keep their counters here.
    stats: BTreeMap<LinkAddr, SimNodeStats>,
    in_flight: Vec<InFlight>,
    rng: SmallRng,
    next_frame: u64,
}

/// One shared simulated radio channel. Cheap to clone.
#[derive(Clone)]
pub struct SimMedium {
    config: Arc<SimConfig>,
    state: Arc<Mutex<State>>,
}

impl std::fmt::Debug for SimMedium {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimMedium")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl SimMedium {
    /// A channel with the given behaviour and no stations.
    pub fn new(config: SimConfig) -> Self {
        let rng = SmallRng::seed_from_u64(config.seed);
        SimMedium {
            config: Arc::new(config),
            state: Arc::new(Mutex::new(State {
                stations: HashMap::new(),
                stats: BTreeMap::new(),
                in_flight: Vec::new(),
                rng,
                next_frame: 0,
            })),
        }
    }

    /// The channel's configuration.
    pub fn config(&self) -> &SimConfig {
        &self.config
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves counters at worst one frame stale.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Attaches a station at `addr`. Attaching an address twice replaces the first station
    /// (whose receive queue then ends).
    pub fn attach(&self, addr: LinkAddr) -> SimLink {
        let (queue, rx) = mpsc::channel(self.config.rx_queue.max(1));
        let counters = Arc::new(LinkCounters::default());
        let station = Station {
            queue,
            counters: counters.clone(),
            duty: self.config.duty_cycle.map(DutyCycle::new),
            stats: SimNodeStats::default(),
        };
        let mut state = self.lock();
        let stats = state.stats.remove(&addr).unwrap_or_default();
        state.stations.insert(addr, Station { stats, ..station });
        drop(state);
        let tx = SimTx {
            inner: TxInner::Local {
                medium: self.clone(),
                addr,
                radio: Arc::new(tokio::sync::Mutex::new(())),
                counters,
            },
        };
        Endpoint { tx, rx }
    }

    /// Per-station counters, including stations that have gone.
    pub fn stats(&self) -> BTreeMap<LinkAddr, SimNodeStats> {
        let state = self.lock();
        let mut all = state.stats.clone();
        for (addr, s) in &state.stations {
            all.insert(*addr, s.stats);
        }
        all
    }

    /// One station's counters.
    pub fn node_stats(&self, addr: LinkAddr) -> Option<SimNodeStats> {
        self.stats().get(&addr).copied()
    }

    async fn transmit(
        &self,
        from: LinkAddr,
        dest: LinkAddr,
        payload: &[u8],
    ) -> Result<(), LinkError> {
        check_mtu(payload.len(), self.config.mtu)?;
        let airtime = self.config.lora.airtime(payload.len());
        let now = Instant::now();
        let end = now + airtime;
        let id = {
            let mut state = self.lock();
            let State {
                stations,
                in_flight,
                next_frame,
                ..
            } = &mut *state;
            let station = stations.get_mut(&from).ok_or(LinkError::Closed)?;
            if let Some(budget) = station.duty.as_mut() {
                if let Err(retry_after) = budget.try_reserve(airtime, now.into_std()) {
                    station.stats.duty_cycle_refusals += 1;
                    station.counters.refused();
                    return Err(LinkError::DutyCycle { retry_after });
                }
            }
            station.stats.frames_sent += 1;
            station.stats.bytes_sent += payload.len() as u64;
            station.stats.airtime_sent += airtime;
            station.counters.sent(payload.len(), airtime);
            let mut collided = false;
            if self.config.collisions {
                for other in in_flight.iter_mut().filter(|f| f.end > now) {
                    other.collided = true;
                    collided = true;
                }
            }
            *next_frame += 1;
            in_flight.push(InFlight {
                id: *next_frame,
                end,
                collided,
            });
            *next_frame
        };
        // If the caller gives up mid-air, the frame is aborted: take it off the air.
        let guard = AirGuard { medium: self, id };
        tokio::time::sleep_until(end).await;
        std::mem::forget(guard);
        self.land(id, from, dest, payload);
        Ok(())
    }

    fn land(&self, id: u64, from: LinkAddr, dest: LinkAddr, payload: &[u8]) {
        let mut state = self.lock();
        let collided = take_in_flight(&mut state, id).is_some_and(|f| f.collided);
        let loss = self.config.loss_probability();
        let State {
            stations,
            stats,
            rng,
            ..
        } = &mut *state;
        let mut gone = Vec::new();
        for (addr, station) in stations.iter_mut() {
            if *addr == from || (dest != LinkAddr::Broadcast && dest != *addr) {
                continue;
            }
            if collided {
                station.stats.frames_collided += 1;
                continue;
            }
            if loss > 0.0 && rng.random_bool(loss) {
                station.stats.frames_lost += 1;
                continue;
            }
            // Counted before it is queued, so whoever receives it sees it counted.
            match station.queue.try_reserve() {
                Ok(permit) => {
                    station.stats.frames_received += 1;
                    station.stats.bytes_received += payload.len() as u64;
                    station.counters.received(payload.len());
                    permit.send(Datagram {
                        from,
                        payload: payload.to_vec(),
                    });
                }
                Err(mpsc::error::TrySendError::Full(_)) => {
                    station.stats.rx_dropped += 1;
                    station.counters.dropped();
                }
                Err(mpsc::error::TrySendError::Closed(_)) => gone.push(*addr),
            }
        }
        for addr in gone {
            if let Some(station) = stations.remove(&addr) {
                stats.insert(addr, station.stats);
            }
        }
    }
}

fn take_in_flight(state: &mut State, id: u64) -> Option<InFlight> {
    let idx = state.in_flight.iter().position(|f| f.id == id)?;
    Some(state.in_flight.swap_remove(idx))
}

struct AirGuard<'a> {
    medium: &'a SimMedium,
    id: u64,
}

impl Drop for AirGuard<'_> {
    fn drop(&mut self) {
        take_in_flight(&mut self.medium.lock(), self.id);
    }
}

#[derive(Clone)]
enum TxInner {
    Local {
        medium: SimMedium,
        addr: LinkAddr,
        /// Half duplex: one frame on the air at a time per station.
        radio: Arc<tokio::sync::Mutex<()>>,
        counters: Arc<LinkCounters>,
    },
    Hub(Arc<HubClient>),
}

/// The sending half of a simulated station. Cheap to clone.
#[derive(Clone)]
pub struct SimTx {
    inner: TxInner,
}

impl std::fmt::Debug for SimTx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimTx")
            .field("addr", &self.local_addr())
            .finish_non_exhaustive()
    }
}

/// A station on a simulated medium: [`SimTx`] plus its received frames.
pub type SimLink = Endpoint<SimTx>;

impl Endpoint<SimTx> {
    /// Attaches station `id` to the medium of the [`SimHub`] at `hub` (loopback UDP).
    pub async fn connect_hub(hub: std::net::SocketAddr, id: u64) -> Result<Self, LinkError> {
        hub::connect(hub, id).await
    }
}

impl SimTx {
    pub(crate) fn from_hub(client: Arc<HubClient>) -> Self {
        SimTx {
            inner: TxInner::Hub(client),
        }
    }

    fn lora(&self) -> &LoraParams {
        match &self.inner {
            TxInner::Local { medium, .. } => &medium.config.lora,
            TxInner::Hub(client) => &client.lora,
        }
    }
}

impl Link for SimTx {
    fn send<'a>(
        &'a self,
        dest: LinkAddr,
        payload: &'a [u8],
    ) -> BoxFuture<'a, Result<(), LinkError>> {
        match &self.inner {
            TxInner::Local {
                medium,
                addr,
                radio,
                ..
            } => async move {
                let _on_air = radio.lock().await;
                medium.transmit(*addr, dest, payload).await
            }
            .boxed(),
            TxInner::Hub(client) => client.send(dest, payload).boxed(),
        }
    }

    fn mtu(&self) -> usize {
        match &self.inner {
            TxInner::Local { medium, .. } => medium.config.mtu,
            TxInner::Hub(client) => client.mtu,
        }
    }

    fn kind(&self) -> LinkKind {
        LinkKind::Sim
    }

    fn airtime(&self, len: usize) -> Duration {
        self.lora().airtime(len)
    }

    fn local_addr(&self) -> LinkAddr {
        match &self.inner {
            TxInner::Local { addr, .. } => *addr,
            TxInner::Hub(client) => LinkAddr::Id(client.id),
        }
    }

    fn stats(&self) -> LinkStats {
        match &self.inner {
            TxInner::Local { counters, .. } => counters.snapshot(),
            TxInner::Hub(client) => client.counters.snapshot(),
        }
    }
}

#[cfg(test)]
mod tests;
