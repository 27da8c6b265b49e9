//! Two libp2p Swarms (identify + ping + a request-response echo, Noise + Yamux) over a radio:
//! the simulated LoRa medium with and without loss, and a real KISS serial path through a
//! socat PTY pair.
//!
//! These run on the real clock: libp2p's own timers (ping intervals, identify triggers,
//! substream timeouts) are `futures-timer` delays, so a paused tokio clock would race ahead
//! of them and a simulated-time deadline could pass while a real-time timer is due. To keep
//! them quick, the medium runs at SF7/500 kHz (a quarter of the SF7/125 kHz airtime).

use std::time::Duration;

use futures::StreamExt;
use libp2p::{
    core::upgrade::Version,
    identify,
    multiaddr::Protocol,
    noise, ping,
    request_response::{self, ProtocolSupport},
    swarm::{NetworkBehaviour, SwarmEvent},
    yamux, Multiaddr, PeerId, StreamProtocol, Swarm, SwarmBuilder,
};
use tokio::time::timeout;

use super::*;
use crate::{
    kiss::{KissConfig, KissLink},
    lora::LoraParams,
    sim::{SimConfig, SimMedium},
};

const ECHO: StreamProtocol = StreamProtocol::new("/offgrid/test-echo/1");
const IDENTIFY: &str = "/offgrid/radio-test/1";

#[derive(NetworkBehaviour)]
struct Behaviour {
    identify: identify::Behaviour,
    ping: ping::Behaviour,
    echo: request_response::cbor::Behaviour<String, String>,
}

fn swarm<T: Link + 'static>(link: &str, endpoint: Endpoint<T>) -> Swarm<Behaviour> {
    SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_other_transport(|key| {
            let (radio, _beacons) = RadioTransport::new(link, endpoint, Config::default())?;
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(
                radio
                    .upgrade(Version::V1Lazy)
                    .authenticate(noise::Config::new(key)?)
                    .multiplex(yamux::Config::default()),
            )
        })
        .unwrap()
        .with_behaviour(|key| Behaviour {
            identify: identify::Behaviour::new(identify::Config::new(
                IDENTIFY.into(),
                key.public(),
            )),
            ping: ping::Behaviour::default(),
            echo: request_response::cbor::Behaviour::new(
                [(ECHO, ProtocolSupport::Full)],
                request_response::Config::default(),
            ),
        })
        .unwrap()
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(3600)))
        .build()
}

/// What the exchange has achieved so far (printed when the deadline passes).
#[derive(Debug, Default)]
struct Progress {
    connected: bool,
    a_identified_b: bool,
    b_identified_a: bool,
    pinged: bool,
    echoed: bool,
}

impl Progress {
    fn done(&self) -> bool {
        self.connected && self.a_identified_b && self.b_identified_a && self.pinged && self.echoed
    }
}

/// `b` listens on `listen`, `a` dials it; both must identify each other, `a` must ping `b`
/// and get its echo request answered, within `deadline`.
async fn exchange(
    mut a: Swarm<Behaviour>,
    mut b: Swarm<Behaviour>,
    listen: Multiaddr,
    a_addr: Multiaddr,
    deadline: Duration,
) {
    let (a_id, b_id) = (*a.local_peer_id(), *b.local_peer_id());
    b.listen_on(listen).unwrap();
    let b_addr = timeout(deadline, async {
        loop {
            if let SwarmEvent::NewListenAddr { address, .. } = b.select_next_some().await {
                break address;
            }
        }
    })
    .await
    .expect("listening");
    a.dial(b_addr.clone().with(Protocol::P2p(b_id))).unwrap();
    let text = "hello over radio".to_owned();
    let mut p = Progress::default();
    let run = async {
        while !p.done() {
            tokio::select! {
                e = a.select_next_some() => match e {
                    SwarmEvent::ConnectionEstablished { peer_id, .. } => {
                        assert_eq!(peer_id, b_id);
                        p.connected = true;
                        a.behaviour_mut().echo.send_request(&b_id, text.clone());
                    }
                    SwarmEvent::Behaviour(BehaviourEvent::Identify(
                        identify::Event::Received { peer_id, info, .. },
                    )) => {
                        assert_eq!(peer_id, b_id);
                        assert_eq!(info.protocol_version, IDENTIFY);
                        assert_eq!(info.listen_addrs, std::slice::from_ref(&b_addr));
                        assert!(info.protocols.contains(&ECHO));
                        p.a_identified_b = true;
                    }
                    SwarmEvent::Behaviour(BehaviourEvent::Ping(ping::Event {
                        result: Ok(_), ..
                    })) => p.pinged = true,
                    SwarmEvent::Behaviour(BehaviourEvent::Echo(
                        request_response::Event::Message {
                            message: request_response::Message::Response { response, .. },
                            ..
                        },
                    )) => {
                        assert_eq!(response, text);
                        p.echoed = true;
                    }
                    SwarmEvent::Behaviour(BehaviourEvent::Echo(
                        request_response::Event::OutboundFailure { error, .. },
                    )) => panic!("echo request failed: {error}"),
                    SwarmEvent::OutgoingConnectionError { error, .. } => {
                        panic!("dial failed: {error}")
                    }
                    SwarmEvent::ConnectionClosed { cause, .. } => {
                        panic!("connection closed at the dialer: {cause:?}")
                    }
                    _ => {}
                },
                e = b.select_next_some() => match e {
                    SwarmEvent::ConnectionEstablished { peer_id, endpoint, .. } => {
                        assert_eq!(peer_id, a_id);
                        assert_eq!(endpoint.get_remote_address(), &a_addr);
                    }
                    SwarmEvent::Behaviour(BehaviourEvent::Identify(
                        identify::Event::Received { peer_id, info, .. },
                    )) => {
                        assert_eq!(peer_id, a_id);
                        // b saw a at its radio address.
                        assert_eq!(info.observed_addr, b_addr);
                        p.b_identified_a = true;
                    }
                    SwarmEvent::Behaviour(BehaviourEvent::Echo(
                        request_response::Event::Message {
                            message: request_response::Message::Request { request, channel, .. },
                            ..
                        },
                    )) => {
                        b.behaviour_mut().echo.send_response(channel, request).unwrap();
                    }
                    SwarmEvent::IncomingConnectionError { error, .. } => {
                        panic!("inbound connection failed: {error}")
                    }
                    _ => {}
                },
            }
        }
    };
    if timeout(deadline, run).await.is_err() {
        panic!("not done within {deadline:?}: {p:?}");
    }
}

async fn over_sim(loss: f64) -> SimMedium {
    let medium = SimMedium::new(
        SimConfig::default()
            .with_lora(LoraParams::new(7, 500_000))
            .with_loss(loss)
            .with_seed(5),
    );
    let a = swarm("sim0", medium.attach(LinkAddr::Id(1)));
    let b = swarm("sim0", medium.attach(LinkAddr::Id(2)));
    exchange(
        a,
        b,
        "/unix/offgrid-radio:sim0:*".parse().unwrap(),
        "/unix/offgrid-radio:sim0:id:1".parse().unwrap(),
        // About 1.5 s of airtime without loss; retransmissions add a few RTOs of ~0.5 s.
        Duration::from_secs(120),
    )
    .await;
    medium
}

#[tokio::test]
async fn swarms_identify_ping_and_echo_over_lossless_sim() {
    let m = over_sim(0.0).await;
    let lost: u64 = m.stats().values().map(|s| s.frames_lost).sum();
    assert_eq!(lost, 0);
}

#[tokio::test]
async fn swarms_identify_ping_and_echo_over_sim_with_ten_percent_loss() {
    let m = over_sim(0.1).await;
    let lost: u64 = m.stats().values().map(|s| s.frames_lost).sum();
    assert!(
        lost > 0,
        "the loss model dropped nothing: the test proves little"
    );
}

#[tokio::test]
async fn swarm_dial_of_an_unsupported_address_fails() {
    let medium = SimMedium::new(SimConfig::default());
    let mut a = swarm("sim0", medium.attach(LinkAddr::Id(1)));
    let peer = PeerId::random();
    for addr in ["/ip4/127.0.0.1/tcp/4001", "/unix/offgrid-radio:other:id:2"] {
        let addr: Multiaddr = addr.parse().unwrap();
        a.dial(addr.clone().with(Protocol::P2p(peer))).unwrap();
        let error = timeout(Duration::from_secs(30), async {
            loop {
                if let SwarmEvent::OutgoingConnectionError { error, .. } =
                    a.select_next_some().await
                {
                    break error;
                }
            }
        })
        .await
        .expect("dial error within the deadline");
        match error {
            libp2p::swarm::DialError::Transport(errors) => {
                assert_eq!(errors.len(), 1);
                assert!(
                    matches!(
                        errors[0].1,
                        libp2p::TransportError::MultiaddrNotSupported(_)
                    ),
                    "{errors:?}"
                );
            }
            e => panic!("expected a transport error, got {e}"),
        }
    }
    assert!(a.listen_on("/memory/1".parse().unwrap()).is_err());
}

/// A socat PTY pair standing in for two KISS TNCs joined by the air; killed on drop.
struct Socat {
    child: tokio::process::Child,
}

impl Drop for Socat {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

async fn socat_pair() -> Result<(Socat, [String; 2]), String> {
    use tokio::io::{AsyncBufReadExt, BufReader};

    let mut child = tokio::process::Command::new("socat")
        .args(["-d", "-d", "pty,raw,echo=0", "pty,raw,echo=0"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot run socat ({e})"))?;
    let stderr = child.stderr.take().ok_or("no stderr")?;
    let socat = Socat { child };
    let mut lines = BufReader::new(stderr).lines();
    let mut paths = Vec::new();
    // "... N PTY is /dev/pts/4" for each end, then "starting data transfer loop".
    loop {
        let line = timeout(Duration::from_secs(10), lines.next_line())
            .await
            .map_err(|_| "socat printed nothing for 10 s".to_owned())?
            .map_err(|e| e.to_string())?
            .ok_or("socat exited")?;
        if let Some(p) = line.split("PTY is ").nth(1) {
            paths.push(p.trim().to_owned());
        }
        if line.contains("starting data transfer loop") {
            break;
        }
    }
    // Keep draining socat's log so that it never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    match paths.as_slice() {
        [a, b] => Ok((socat, [a.clone(), b.clone()])),
        _ => Err(format!("socat printed {paths:?}")),
    }
}

#[tokio::test]
async fn swarms_identify_ping_and_echo_over_kiss_on_a_socat_pty_pair() {
    let (socat, [pa, pb]) = match socat_pair().await {
        Ok(p) => p,
        Err(why) => {
            println!("SKIP swarms_..._over_kiss_on_a_socat_pty_pair: {why}");
            return;
        }
    };
    // No pacing: a PTY has no airtime. The LoRa settings still size the ARQ timeouts.
    let cfg = KissConfig::new(LoraParams::new(7, 125_000)).with_pacing(false);
    let a = swarm(
        "kiss0",
        KissLink::open_with(&pa, 115_200, cfg.clone()).unwrap(),
    );
    let b = swarm("kiss0", KissLink::open_with(&pb, 115_200, cfg).unwrap());
    // A TNC has no station addresses: both ends are `*`.
    exchange(
        a,
        b,
        "/unix/offgrid-radio:kiss0:*".parse().unwrap(),
        "/unix/offgrid-radio:kiss0:*".parse().unwrap(),
        // Real time: the exchange takes well under a second on a PTY.
        Duration::from_secs(60),
    )
    .await;
    drop(socat);
}
