//! UDP multicast link, for machines without radios (⚖ group `239.23.0.7:47007`).
//!
//! Each link uses two sockets on one IPv4 interface:
//! - a receive socket bound to the group address and port (`SO_REUSEADDR`, so several nodes on
//!   one host can share the group) that joins the group on the interface;
//! - a send socket bound to the interface address with an ephemeral port, with
//!   `IP_MULTICAST_IF` set to the interface, `IP_MULTICAST_LOOP` on and TTL 1 (never routed
//!   off the local segment). Its address is this station's [`LinkAddr::Ip`]: peers see it as
//!   the sender and can reply to it by unicast, which this link also receives.
//!
//! With loopback on, our own multicast comes back to us; frames whose source is our send
//! socket are dropped, so a node never hears itself (as on a radio).
//!
//! After [`UdpConfig::rejoin_after`] without a frame from anyone else the receive socket
//! leaves and re-joins the group: a membership made while the interface was down or
//! flapping (a Wi-Fi reassociation, a veth whose peer was not up yet) can otherwise stay
//! deaf until restart.

use std::{
    net::{Ipv4Addr, SocketAddr, SocketAddrV4},
    sync::Arc,
    time::Duration,
};

use futures::{future::BoxFuture, FutureExt};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::{net::UdpSocket, sync::mpsc};
use tracing::{debug, warn};

use crate::{
    link::{check_mtu, LinkCounters, DEFAULT_RX_QUEUE},
    Datagram, Endpoint, Link, LinkAddr, LinkError, LinkKind, LinkStats,
};

/// The Offgrid multicast group and port.
pub const DEFAULT_GROUP: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(239, 23, 0, 7), 47007);

/// Largest payload per datagram: stays under any path MTU, IPv6 minimum included.
pub const UDP_MTU: usize = 1200;

/// Settings of a UDP multicast link.
#[derive(Clone, Debug)]
pub struct UdpConfig {
    /// Multicast group and port.
    pub group: SocketAddrV4,
    /// IPv4 address of the interface to join and send on.
    pub interface: Ipv4Addr,
    /// Multicast TTL (1: the local segment only).
    pub ttl: u32,
    /// Whether our multicast is looped back to other sockets on this host.
    pub loopback: bool,
    /// Largest payload per datagram.
    pub mtu: usize,
    /// Capacity of the receive queue.
    pub rx_queue: usize,
    /// Bit rate for the airtime model. Wi-Fi sends multicast at a basic rate, often 1 Mbit/s.
    pub bitrate_bps: u64,
    /// Silence after which the group is re-joined (see the module docs).
    pub rejoin_after: Duration,
}

impl UdpConfig {
    /// Defaults on the given interface: group 239.23.0.7:47007, TTL 1, loopback on, MTU 1200.
    pub fn new(interface: Ipv4Addr) -> Self {
        UdpConfig {
            group: DEFAULT_GROUP,
            interface,
            ttl: 1,
            loopback: true,
            mtu: UDP_MTU,
            rx_queue: DEFAULT_RX_QUEUE,
            bitrate_bps: 1_000_000,
            rejoin_after: Duration::from_secs(10),
        }
    }

    /// Sets the silence after which the group is re-joined.
    pub fn with_rejoin_after(mut self, after: Duration) -> Self {
        self.rejoin_after = after;
        self
    }

    /// Sets the multicast group and port.
    pub fn with_group(mut self, group: SocketAddrV4) -> Self {
        self.group = group;
        self
    }

    /// Sets the multicast TTL.
    pub fn with_ttl(mut self, ttl: u32) -> Self {
        self.ttl = ttl;
        self
    }

    /// Turns multicast loopback on or off.
    pub fn with_loopback(mut self, on: bool) -> Self {
        self.loopback = on;
        self
    }

    /// Airtime of `len` payload bytes (plus 28 bytes of IP/UDP headers) at the model bit rate.
    pub fn airtime(&self, len: usize) -> Duration {
        let bits = (len as u64 + 28) * 8;
        Duration::from_nanos(bits.saturating_mul(1_000_000_000) / self.bitrate_bps.max(1))
    }
}

/// The sending half of a UDP multicast link. Cheap to clone.
#[derive(Clone, Debug)]
pub struct UdpTx {
    socket: Arc<UdpSocket>,
    local: SocketAddr,
    config: Arc<UdpConfig>,
    counters: Arc<LinkCounters>,
}

/// A UDP multicast link: [`UdpTx`] plus its received datagrams.
pub type UdpLink = Endpoint<UdpTx>;

impl Endpoint<UdpTx> {
    /// Joins the group on the configured interface. Must be called inside a tokio runtime.
    pub fn bind(config: UdpConfig) -> Result<Self, LinkError> {
        let group = config.group;
        let recv = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
        recv.set_reuse_address(true)?;
        // Bound to the group address, the socket sees only this group's traffic.
        recv.bind(&SocketAddr::V4(group).into())?;
        recv.join_multicast_v4(group.ip(), &config.interface)?;
        recv.set_nonblocking(true)?;
        let recv = UdpSocket::from_std(recv.into())?;

        let send = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
        send.bind(&SocketAddr::from((config.interface, 0)).into())?;
        send.set_multicast_if_v4(&config.interface)?;
        send.set_multicast_loop_v4(config.loopback)?;
        send.set_multicast_ttl_v4(config.ttl)?;
        send.set_nonblocking(true)?;
        let send = Arc::new(UdpSocket::from_std(send.into())?);
        let local = send.local_addr()?;
        debug!(%local, %group, "UDP multicast link up");

        let counters = Arc::new(LinkCounters::default());
        let (queue, rx) = mpsc::channel(config.rx_queue.max(1));
        tokio::spawn(read_loop(
            Group {
                socket: recv,
                addr: *group.ip(),
                interface: config.interface,
                rejoin_after: config.rejoin_after,
            },
            send.clone(),
            local,
            config.mtu,
            queue,
            counters.clone(),
        ));
        let tx = UdpTx {
            socket: send,
            local,
            config: Arc::new(config),
            counters,
        };
        Ok(Endpoint { tx, rx })
    }
}

fn is_own(src: SocketAddr, local: SocketAddr) -> bool {
    src.port() == local.port() && (local.ip().is_unspecified() || src.ip() == local.ip())
}

/// The receive socket and its membership.
struct Group {
    socket: UdpSocket,
    addr: Ipv4Addr,
    interface: Ipv4Addr,
    rejoin_after: Duration,
}

impl Group {
    fn rejoin(&self) {
        // Leaving fails if the kernel already dropped the membership; joining is what counts.
        let _ = self.socket.leave_multicast_v4(self.addr, self.interface);
        match self.socket.join_multicast_v4(self.addr, self.interface) {
            Ok(()) => debug!(group = %self.addr, "silent for a while; re-joined the group"),
            Err(e) => debug!(group = %self.addr, error = %e, "cannot re-join the group yet"),
        }
    }
}

async fn read_loop(
    group: Group,
    unicast: Arc<UdpSocket>,
    local: SocketAddr,
    mtu: usize,
    queue: mpsc::Sender<Datagram>,
    counters: Arc<LinkCounters>,
) {
    // One byte more than the MTU tells an oversize datagram from a full one.
    let mut gbuf = vec![0u8; mtu + 1];
    let mut ubuf = vec![0u8; mtu + 1];
    let mut heard = tokio::time::Instant::now();
    loop {
        let silence = tokio::time::sleep_until(heard + group.rejoin_after);
        let (res, buf) = tokio::select! {
            r = group.socket.recv_from(&mut gbuf) => (r, &gbuf),
            r = unicast.recv_from(&mut ubuf) => (r, &ubuf),
            () = silence => {
                group.rejoin();
                heard = tokio::time::Instant::now();
                continue;
            }
        };
        let (n, src) = match res {
            Ok(r) => r,
            // An ICMP error from an earlier unicast send is not fatal.
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => continue,
            Err(e) => {
                warn!(error = %e, "UDP receive failed; link closed");
                return;
            }
        };
        if is_own(src, local) {
            continue;
        }
        heard = tokio::time::Instant::now();
        if n > mtu {
            counters.malformed(1);
            continue;
        }
        let dgram = Datagram {
            from: LinkAddr::Ip(src),
            payload: buf[..n].to_vec(),
        };
        if !counters.deliver(&queue, dgram) {
            return;
        }
    }
}

impl UdpTx {
    async fn send_to(&self, dest: LinkAddr, payload: &[u8]) -> Result<(), LinkError> {
        check_mtu(payload.len(), self.config.mtu)?;
        let to = match dest {
            LinkAddr::Broadcast => SocketAddr::V4(self.config.group),
            LinkAddr::Ip(addr) => addr,
            other => return Err(LinkError::AddrNotSupported(other)),
        };
        self.socket.send_to(payload, to).await?;
        self.counters
            .sent(payload.len(), self.config.airtime(payload.len()));
        Ok(())
    }
}

impl Link for UdpTx {
    fn send<'a>(
        &'a self,
        dest: LinkAddr,
        payload: &'a [u8],
    ) -> BoxFuture<'a, Result<(), LinkError>> {
        self.send_to(dest, payload).boxed()
    }

    fn mtu(&self) -> usize {
        self.config.mtu
    }

    fn kind(&self) -> LinkKind {
        LinkKind::Udp
    }

    fn airtime(&self, len: usize) -> Duration {
        self.config.airtime(len)
    }

    fn local_addr(&self) -> LinkAddr {
        LinkAddr::Ip(self.local)
    }

    fn stats(&self) -> LinkStats {
        self.counters.snapshot()
    }
}

#[cfg(test)]
mod tests;
