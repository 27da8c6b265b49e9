//! [`SimHub`]: the simulated medium shared between processes over loopback UDP.
//!
//! The hub owns a [`SimMedium`]; each client process registers a station id and then sends
//! frames through the hub, which puts them on its medium (airtime, loss, collisions, duty
//! cycle) and forwards what each station receives. The wire format, big-endian:
//!
//! ```text
//! client → hub  0x01 REGISTER    id:u64
//! hub → client  0x02 REGISTERED  id:u64 sf:u8 bw_hz:u32 cr:u8 preamble:u16 flags:u8 mtu:u16
//!                                (flags: bit0 explicit header, bit1 CRC, bits2-3 LDRO 0 auto 1 on 2 off)
//! client → hub  0x03 FRAME       seq:u32 dest:u8 (0 broadcast, 1 station) [id:u64] payload…
//! hub → client  0x04 ACK         seq:u32 status:u8 (0 sent, 1 duty cycle, 2 oversize, 3 busy)
//!                                [retry_after_ms:u64 when status = 1]
//! hub → client  0x05 DELIVER     from:u64 payload…
//! ```
//!
//! A FRAME's ACK comes once the frame has left the (simulated) air, so a client's `send`
//! behaves as it does in process. The hub serves at most [`MAX_HUB_CLIENTS`] stations.

use std::{
    collections::HashMap,
    net::{Ipv4Addr, SocketAddr},
    sync::{atomic::AtomicU32, atomic::Ordering, Arc, Mutex},
    time::Duration,
};

use tokio::{net::UdpSocket, sync::mpsc, sync::oneshot, task::JoinSet, time::timeout};
use tracing::{debug, warn};

use super::{SimConfig, SimLink, SimMedium, SimTx};
use crate::{
    link::{check_mtu, LinkCounters},
    lora::{LoraParams, LowDataRate},
    Datagram, Endpoint, Link, LinkAddr, LinkError,
};

/// Most stations one hub serves.
pub const MAX_HUB_CLIENTS: usize = 256;
/// Frames a station may have queued at the hub.
const CLIENT_QUEUE: usize = 8;
/// Largest datagram on the hub protocol (header + MTU, with room to spare).
const MAX_DATAGRAM: usize = 2048;

const REGISTER: u8 = 0x01;
const REGISTERED: u8 = 0x02;
const FRAME: u8 = 0x03;
const ACK: u8 = 0x04;
const DELIVER: u8 = 0x05;

const ACK_SENT: u8 = 0;
const ACK_DUTY: u8 = 1;
const ACK_OVERSIZE: u8 = 2;
const ACK_BUSY: u8 = 3;

/// A simulated medium served on a loopback UDP port. Dropping it stops the hub.
#[derive(Debug)]
pub struct SimHub {
    addr: SocketAddr,
    medium: SimMedium,
    tasks: JoinSet<()>,
}

impl SimHub {
    /// Binds `127.0.0.1:0` and starts serving a medium with `config`.
    pub async fn bind(config: SimConfig) -> std::io::Result<SimHub> {
        let socket = Arc::new(UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await?);
        let addr = socket.local_addr()?;
        let medium = SimMedium::new(config);
        let mut tasks = JoinSet::new();
        tasks.spawn(serve(socket, medium.clone()));
        debug!(%addr, "sim hub listening");
        Ok(SimHub {
            addr,
            medium,
            tasks,
        })
    }

    /// Where clients connect ([`SimLink::connect_hub`]).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The medium behind the hub, for its counters.
    pub fn medium(&self) -> &SimMedium {
        &self.medium
    }
}

impl Drop for SimHub {
    fn drop(&mut self) {
        self.tasks.abort_all();
    }
}

struct Outgoing {
    seq: u32,
    dest: LinkAddr,
    payload: Vec<u8>,
}

async fn serve(socket: Arc<UdpSocket>, medium: SimMedium) {
    let mut clients: HashMap<SocketAddr, (u64, mpsc::Sender<Outgoing>)> = HashMap::new();
    let mut stations = JoinSet::new();
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        let (n, peer) = match socket.recv_from(&mut buf).await {
            Ok(r) => r,
            Err(e) => {
                warn!(error = %e, "sim hub receive failed");
                continue;
            }
        };
        let msg = &buf[..n];
        match msg.first() {
            Some(&REGISTER) if n == 9 => {
                let id = u64_at(msg, 1);
                let known = clients.get(&peer).is_some_and(|(old, _)| *old == id);
                if !known {
                    if clients.len() >= MAX_HUB_CLIENTS {
                        warn!(%peer, "sim hub full");
                        continue;
                    }
                    let (queue, frames) = mpsc::channel(CLIENT_QUEUE);
                    let link = medium.attach(LinkAddr::Id(id));
                    stations.spawn(station(link, frames, socket.clone(), peer));
                    clients.insert(peer, (id, queue));
                }
                let reply = registered(id, medium.config());
                let _ = socket.send_to(&reply, peer).await;
            }
            Some(&FRAME) if n >= 6 => {
                let Some((_, queue)) = clients.get(&peer) else {
                    continue;
                };
                let seq = u32_at(msg, 1);
                let (dest, body) = match msg[5] {
                    0 => (LinkAddr::Broadcast, &msg[6..]),
                    1 if n >= 14 => (LinkAddr::Id(u64_at(msg, 6)), &msg[14..]),
                    _ => continue,
                };
                let out = Outgoing {
                    seq,
                    dest,
                    payload: body.to_vec(),
                };
                if queue.try_send(out).is_err() {
                    let _ = socket.send_to(&ack(seq, ACK_BUSY, 0), peer).await;
                }
            }
            _ => debug!(%peer, len = n, "sim hub ignored a datagram"),
        }
    }
}

/// One registered station: sends its frames on the medium, forwards what it receives.
async fn station(
    link: SimLink,
    mut frames: mpsc::Receiver<Outgoing>,
    socket: Arc<UdpSocket>,
    peer: SocketAddr,
) {
    let (tx, mut rx) = link.split();
    loop {
        tokio::select! {
            out = frames.recv() => {
                let Some(out) = out else { return };
                let reply = match tx.send(out.dest, &out.payload).await {
                    Ok(()) => ack(out.seq, ACK_SENT, 0),
                    Err(LinkError::DutyCycle { retry_after }) => {
                        let ms = u64::try_from(retry_after.as_millis()).unwrap_or(u64::MAX);
                        ack(out.seq, ACK_DUTY, ms)
                    }
                    Err(LinkError::Oversize { .. }) => ack(out.seq, ACK_OVERSIZE, 0),
                    Err(_) => ack(out.seq, ACK_BUSY, 0),
                };
                let _ = socket.send_to(&reply, peer).await;
            }
            dgram = rx.recv() => {
                let Some(dgram) = dgram else { return };
                let LinkAddr::Id(from) = dgram.from else { continue };
                let mut msg = Vec::with_capacity(9 + dgram.payload.len());
                msg.push(DELIVER);
                msg.extend_from_slice(&from.to_be_bytes());
                msg.extend_from_slice(&dgram.payload);
                let _ = socket.send_to(&msg, peer).await;
            }
        }
    }
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_be_bytes(a)
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_be_bytes(a)
}

fn ack(seq: u32, status: u8, retry_ms: u64) -> Vec<u8> {
    let mut m = vec![ACK];
    m.extend_from_slice(&seq.to_be_bytes());
    m.push(status);
    if status == ACK_DUTY {
        m.extend_from_slice(&retry_ms.to_be_bytes());
    }
    m
}

fn registered(id: u64, config: &SimConfig) -> Vec<u8> {
    let l = &config.lora;
    let ldro = match l.low_data_rate_optimize {
        LowDataRate::Auto => 0u8,
        LowDataRate::On => 1,
        LowDataRate::Off => 2,
    };
    let flags = u8::from(l.explicit_header) | u8::from(l.crc) << 1 | ldro << 2;
    let mut m = vec![REGISTERED];
    m.extend_from_slice(&id.to_be_bytes());
    m.push(l.sf);
    m.extend_from_slice(&l.bw_hz.to_be_bytes());
    m.push(l.cr);
    m.extend_from_slice(&l.preamble.to_be_bytes());
    m.push(flags);
    m.extend_from_slice(&u16::try_from(config.mtu).unwrap_or(u16::MAX).to_be_bytes());
    m
}

fn parse_registered(m: &[u8]) -> Option<(u64, LoraParams, usize)> {
    // id(1..9) sf(9) bw(10..14) cr(14) preamble(15..17) flags(17) mtu(18..20)
    if m.len() != 20 || m[0] != REGISTERED {
        return None;
    }
    let flags = m[17];
    let lora = LoraParams {
        sf: m[9],
        bw_hz: u32_at(m, 10),
        cr: m[14],
        preamble: u16::from_be_bytes([m[15], m[16]]),
        explicit_header: flags & 1 != 0,
        crc: flags & 2 != 0,
        low_data_rate_optimize: match (flags >> 2) & 3 {
            1 => LowDataRate::On,
            2 => LowDataRate::Off,
            _ => LowDataRate::Auto,
        },
    };
    Some((
        u64_at(m, 1),
        lora,
        usize::from(u16::from_be_bytes([m[18], m[19]])),
    ))
}

/// The client side of a hub station.
pub(crate) struct HubClient {
    pub(crate) id: u64,
    pub(crate) lora: LoraParams,
    pub(crate) mtu: usize,
    pub(crate) counters: Arc<LinkCounters>,
    socket: Arc<UdpSocket>,
    /// Half duplex, and one outstanding FRAME at a time.
    radio: tokio::sync::Mutex<()>,
    seq: AtomicU32,
    pending: Pending,
}

pub(crate) async fn connect(hub: SocketAddr, id: u64) -> Result<SimLink, LinkError> {
    let socket = Arc::new(UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await?);
    socket.connect(hub).await?;
    let mut reg = vec![REGISTER];
    reg.extend_from_slice(&id.to_be_bytes());
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let mut registered = None;
    // UDP may drop the first try; retransmit a few times before giving up.
    for _ in 0..10 {
        socket.send(&reg).await?;
        if let Ok(Ok(n)) = timeout(Duration::from_millis(300), socket.recv(&mut buf)).await {
            if let Some(r) = parse_registered(&buf[..n]).filter(|r| r.0 == id) {
                registered = Some(r);
                break;
            }
        }
    }
    let (_, lora, mtu) = registered.ok_or(LinkError::Closed)?;
    let counters = Arc::new(LinkCounters::default());
    let (queue, rx) = mpsc::channel(crate::link::DEFAULT_RX_QUEUE);
    let pending = Arc::new(Mutex::new(None));
    tokio::spawn(client_reader(
        socket.clone(),
        queue,
        counters.clone(),
        pending.clone(),
    ));
    let client = HubClient {
        id,
        lora,
        mtu,
        counters,
        socket,
        radio: tokio::sync::Mutex::new(()),
        seq: AtomicU32::new(0),
        pending,
    };
    Ok(Endpoint {
        tx: SimTx::from_hub(Arc::new(client)),
        rx,
    })
}

type Pending = Arc<Mutex<Option<(u32, oneshot::Sender<(u8, u64)>)>>>;

async fn client_reader(
    socket: Arc<UdpSocket>,
    queue: mpsc::Sender<Datagram>,
    counters: Arc<LinkCounters>,
    pending: Pending,
) {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        let n = match socket.recv(&mut buf).await {
            Ok(n) => n,
            Err(e) => {
                // On a connected loopback socket this means the hub is gone: so is the link.
                debug!(error = %e, "sim hub client receive failed; link closed");
                // Fail a waiting send at once rather than at its timeout.
                pending.lock().unwrap_or_else(|p| p.into_inner()).take();
                return;
            }
        };
        let m = &buf[..n];
        match m.first() {
            Some(&DELIVER) if n >= 9 => {
                let dgram = Datagram {
                    from: LinkAddr::Id(u64_at(m, 1)),
                    payload: m[9..].to_vec(),
                };
                if !counters.deliver(&queue, dgram) {
                    return;
                }
            }
            Some(&ACK) if n >= 6 => {
                let seq = u32_at(m, 1);
                let retry = if n >= 14 { u64_at(m, 6) } else { 0 };
                let mut slot = pending.lock().unwrap_or_else(|p| p.into_inner());
                if slot.as_ref().is_some_and(|(s, _)| *s == seq) {
                    if let Some((_, reply)) = slot.take() {
                        let _ = reply.send((m[5], retry));
                    }
                }
            }
            _ => counters.malformed(1),
        }
    }
}

impl HubClient {
    pub(crate) async fn send(&self, dest: LinkAddr, payload: &[u8]) -> Result<(), LinkError> {
        check_mtu(payload.len(), self.mtu)?;
        let mut msg = Vec::with_capacity(payload.len() + 14);
        match dest {
            LinkAddr::Broadcast => msg.extend_from_slice(&[FRAME, 0, 0, 0, 0, 0]),
            LinkAddr::Id(id) => {
                msg.extend_from_slice(&[FRAME, 0, 0, 0, 0, 1]);
                msg.extend_from_slice(&id.to_be_bytes());
            }
            other => return Err(LinkError::AddrNotSupported(other)),
        }
        msg.extend_from_slice(payload);
        let _radio = self.radio.lock().await;
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        msg[1..5].copy_from_slice(&seq.to_be_bytes());
        let (reply, answer) = oneshot::channel();
        *self.pending.lock().unwrap_or_else(|p| p.into_inner()) = Some((seq, reply));
        self.socket.send(&msg).await?;
        let airtime = self.lora.airtime(payload.len());
        let wait = airtime + Duration::from_secs(5);
        let (status, retry_ms) = match timeout(wait, answer).await {
            Ok(Ok(a)) => a,
            Ok(Err(_)) => return Err(LinkError::Closed),
            Err(_) => return Err(std::io::Error::from(std::io::ErrorKind::TimedOut).into()),
        };
        match status {
            ACK_SENT => {
                self.counters.sent(payload.len(), airtime);
                Ok(())
            }
            ACK_DUTY => {
                self.counters.refused();
                Err(LinkError::DutyCycle {
                    retry_after: Duration::from_millis(retry_ms),
                })
            }
            ACK_OVERSIZE => Err(LinkError::Oversize {
                len: payload.len(),
                mtu: self.mtu,
            }),
            _ => Err(LinkError::Closed),
        }
    }
}

#[cfg(test)]
#[path = "hub_tests.rs"]
mod tests;
