//! [`KissLink`]: a LoRa TNC speaking KISS over a serial port (or any byte stream).

use std::{path::Path, sync::Arc, time::Duration};

use futures::{future::BoxFuture, FutureExt};
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    sync::{mpsc, Mutex},
};
use tracing::{debug, warn};

use super::codec::{encode_frame, KissDecoder, CMD_DATA};
use crate::{
    link::{check_mtu, LinkCounters, DEFAULT_RX_QUEUE},
    lora::{DutyCycle, LoraParams, LORA_MTU},
    Datagram, Endpoint, Link, LinkAddr, LinkError, LinkKind, LinkStats,
};

/// Settings of a KISS link.
#[derive(Clone, Debug)]
pub struct KissConfig {
    /// Radio settings, for the airtime model.
    pub lora: LoraParams,
    /// TNC port to send on and accept from (0..=15); frames on other ports are ignored.
    pub port: u8,
    /// Largest payload per frame.
    pub mtu: usize,
    /// Airtime budget enforced on send; `None` leaves duty-cycle control to the TNC.
    pub duty_cycle: Option<DutyCycle>,
    /// Hold each send until the frame's airtime has passed, so callers cannot outrun the
    /// radio and overflow the TNC's buffer.
    pub pace: bool,
    /// Capacity of the receive queue.
    pub rx_queue: usize,
}

impl KissConfig {
    /// Port 0, MTU 220, no duty cycle, pacing on.
    pub fn new(lora: LoraParams) -> Self {
        KissConfig {
            lora,
            port: 0,
            mtu: LORA_MTU,
            duty_cycle: None,
            pace: true,
            rx_queue: DEFAULT_RX_QUEUE,
        }
    }

    /// Sets the TNC port (masked to 0..=15).
    pub fn with_port(mut self, port: u8) -> Self {
        self.port = port & 0x0f;
        self
    }

    /// Sets the MTU.
    pub fn with_mtu(mut self, mtu: usize) -> Self {
        self.mtu = mtu;
        self
    }

    /// Enforces an airtime budget on send.
    pub fn with_duty_cycle(mut self, budget: DutyCycle) -> Self {
        self.duty_cycle = Some(budget);
        self
    }

    /// Turns pacing on or off.
    pub fn with_pacing(mut self, pace: bool) -> Self {
        self.pace = pace;
        self
    }
}

type Writer = Box<dyn AsyncWrite + Send + Unpin>;

/// The sending half of a KISS link. Cheap to clone.
#[derive(Clone)]
pub struct KissTx {
    writer: Arc<Mutex<Writer>>,
    lora: LoraParams,
    port: u8,
    mtu: usize,
    pace: bool,
    duty: Arc<std::sync::Mutex<Option<DutyCycle>>>,
    counters: Arc<LinkCounters>,
}

impl std::fmt::Debug for KissTx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KissTx")
            .field("port", &self.port)
            .field("mtu", &self.mtu)
            .finish_non_exhaustive()
    }
}

/// A KISS TNC link: [`KissTx`] plus its received frames.
pub type KissLink = Endpoint<KissTx>;

impl Endpoint<KissTx> {
    /// Opens a serial TNC at `path` and `baud` with default settings. Must be called inside a
    /// tokio runtime (it spawns the reader task).
    pub fn open(path: impl AsRef<Path>, baud: u32, lora: LoraParams) -> Result<Self, LinkError> {
        Self::open_with(path, baud, KissConfig::new(lora))
    }

    /// Opens a serial TNC with explicit settings.
    pub fn open_with(
        path: impl AsRef<Path>,
        baud: u32,
        config: KissConfig,
    ) -> Result<Self, LinkError> {
        let path = path.as_ref().to_string_lossy().into_owned();
        let builder = tokio_serial::new(&path, baud);
        let stream = tokio_serial::SerialStream::open(&builder).map_err(std::io::Error::from)?;
        debug!(%path, baud, "KISS serial port open");
        Ok(Self::from_stream(stream, config))
    }

    /// Runs KISS over any byte stream (a PTY, a TCP KISS port, an in-memory pipe).
    pub fn from_stream<S>(stream: S, config: KissConfig) -> Self
    where
        S: AsyncRead + AsyncWrite + Send + 'static,
    {
        let (reader, writer) = tokio::io::split(stream);
        let counters = Arc::new(LinkCounters::default());
        let (queue, rx) = mpsc::channel(config.rx_queue.max(1));
        tokio::spawn(read_loop(
            reader,
            queue,
            KissDecoder::new(config.mtu),
            config.port,
            counters.clone(),
        ));
        let tx = KissTx {
            writer: Arc::new(Mutex::new(Box::new(writer))),
            lora: config.lora,
            port: config.port,
            mtu: config.mtu,
            pace: config.pace,
            duty: Arc::new(std::sync::Mutex::new(config.duty_cycle)),
            counters,
        };
        Endpoint { tx, rx }
    }
}

async fn read_loop<R: AsyncRead + Unpin>(
    mut reader: R,
    queue: mpsc::Sender<Datagram>,
    mut decoder: KissDecoder,
    port: u8,
    counters: Arc<LinkCounters>,
) {
    let mut buf = [0u8; 1024];
    let mut frames = Vec::new();
    loop {
        let n = match reader.read(&mut buf).await {
            Ok(0) => {
                debug!("KISS stream closed");
                return;
            }
            Ok(n) => n,
            Err(e) => {
                warn!(error = %e, "KISS read failed; link closed");
                return;
            }
        };
        let dropped_before = decoder.stats().dropped();
        decoder.push(&buf[..n], &mut frames);
        counters.malformed(decoder.stats().dropped() - dropped_before);
        for frame in frames.drain(..) {
            if frame.port != port || frame.command != CMD_DATA {
                continue; // TNC control frames and other ports are not ours.
            }
            let dgram = Datagram {
                from: LinkAddr::Unknown,
                payload: frame.data,
            };
            if !counters.deliver(&queue, dgram) {
                return; // Nobody is listening any more.
            }
        }
    }
}

impl KissTx {
    async fn send_frame(&self, payload: &[u8]) -> Result<(), LinkError> {
        check_mtu(payload.len(), self.mtu)?;
        let airtime = self.lora.airtime(payload.len());
        let frame = encode_frame(self.port, CMD_DATA, payload);
        let mut writer = self.writer.lock().await;
        // Reserve only once we own the radio, so that budget order matches air order.
        if let Some(budget) = self
            .duty
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .as_mut()
        {
            let now = tokio::time::Instant::now().into_std();
            if let Err(retry_after) = budget.try_reserve(airtime, now) {
                self.counters.refused();
                return Err(LinkError::DutyCycle { retry_after });
            }
        }
        writer.write_all(&frame).await?;
        writer.flush().await?;
        self.counters.sent(payload.len(), airtime);
        if self.pace {
            tokio::time::sleep(airtime).await;
        }
        Ok(())
    }
}

impl Link for KissTx {
    /// Every KISS frame is a broadcast: `dest` is ignored and the upper layer must carry
    /// addresses.
    fn send<'a>(
        &'a self,
        _dest: LinkAddr,
        payload: &'a [u8],
    ) -> BoxFuture<'a, Result<(), LinkError>> {
        self.send_frame(payload).boxed()
    }

    fn mtu(&self) -> usize {
        self.mtu
    }

    fn kind(&self) -> LinkKind {
        LinkKind::Lora
    }

    fn airtime(&self, len: usize) -> Duration {
        self.lora.airtime(len)
    }

    fn local_addr(&self) -> LinkAddr {
        LinkAddr::Unknown
    }

    fn stats(&self) -> LinkStats {
        self.counters.snapshot()
    }
}

#[cfg(test)]
#[path = "link_tests.rs"]
mod tests;
