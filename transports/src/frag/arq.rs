//! The selective-repeat ARQ state machine (no I/O: packets in, packets out, time passed in).

use std::{
    collections::{BTreeMap, VecDeque},
    time::Duration,
};

use rand::{rngs::SmallRng, RngExt, SeedableRng};
use tokio::time::Instant;

use super::{
    wire::{Packet, DATA_HEADER},
    ArqConfig, ArqError,
};

/// Counters of one ARQ connection.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ArqStats {
    /// DATA packets sent for the first time.
    pub segments_sent: u64,
    /// DATA packets sent again.
    pub retransmissions: u64,
    /// ACK packets sent.
    pub acks_sent: u64,
    /// Keep-alive probes sent.
    pub pings_sent: u64,
    /// DATA packets received that were already delivered or held (duplicates).
    pub duplicates: u64,
    /// DATA packets outside the receive window, dropped.
    pub out_of_window: u64,
    /// Bytes handed to the reader.
    pub bytes_delivered: u64,
}

struct Segment {
    data: Vec<u8>,
    fin: bool,
    sent_at: Option<Instant>,
    tries: u32,
    rto: Duration,
    /// Random extra wait, so that two stations whose frames collided do not retry in step.
    jitter: Duration,
}

impl Segment {
    fn due_at(&self) -> Option<Instant> {
        self.sent_at.map(|t| t + self.rto + self.jitter)
    }
}

pub(crate) struct Arq {
    cfg: ArqConfig,
    conn: u16,
    seg_len: usize,
    rto: Duration,
    // Sending.
    send_buf: VecDeque<u8>,
    next_seq: u32,
    inflight: BTreeMap<u32, Segment>,
    fin_requested: bool,
    fin_acked: bool,
    fin_sent: bool,
    // Receiving.
    rcv_next: u32,
    held: BTreeMap<u32, (bool, Vec<u8>)>,
    read_buf: VecDeque<u8>,
    eof: bool,
    ack_due: bool,
    // Liveness.
    last_rx: Instant,
    last_tx: Instant,
    error: Option<ArqError>,
    rng: SmallRng,
    pub(crate) stats: ArqStats,
}

impl Arq {
    /// `mtu` is the link's; `rto` the initial retransmission timeout.
    /// `seed` drives the retransmission jitter; give each station its own.
    pub(crate) fn new(
        cfg: ArqConfig,
        conn: u16,
        mtu: usize,
        rto: Duration,
        seed: u64,
        now: Instant,
    ) -> Self {
        Arq {
            rng: SmallRng::seed_from_u64(seed),
            seg_len: mtu.saturating_sub(DATA_HEADER).max(1),
            cfg,
            conn,
            rto,
            send_buf: VecDeque::new(),
            next_seq: 0,
            inflight: BTreeMap::new(),
            fin_requested: false,
            fin_acked: false,
            fin_sent: false,
            rcv_next: 0,
            held: BTreeMap::new(),
            read_buf: VecDeque::new(),
            eof: false,
            ack_due: false,
            last_rx: now,
            last_tx: now,
            error: None,
            stats: ArqStats::default(),
        }
    }

    pub(crate) fn error(&self) -> Option<&ArqError> {
        self.error.as_ref()
    }

    pub(crate) fn fail(&mut self, e: ArqError) {
        self.error.get_or_insert(e);
    }

    // ---- the application side ----

    /// Copies as much of `data` as fits the send buffer; returns how much.
    pub(crate) fn write(&mut self, data: &[u8]) -> usize {
        if self.fin_requested {
            return 0;
        }
        let room = self.cfg.send_buffer.saturating_sub(self.send_buf.len());
        let n = room.min(data.len());
        self.send_buf.extend(&data[..n]);
        n
    }

    /// Everything written has been acknowledged.
    pub(crate) fn flushed(&self) -> bool {
        self.send_buf.is_empty() && self.inflight.is_empty()
    }

    /// Asks for the stream to end after the buffered data; true the first time.
    pub(crate) fn request_fin(&mut self) -> bool {
        !std::mem::replace(&mut self.fin_requested, true)
    }

    pub(crate) fn fin_acked(&self) -> bool {
        self.fin_acked
    }

    /// Moves up to `out.len()` received bytes into `out`.
    pub(crate) fn read(&mut self, out: &mut [u8]) -> usize {
        let n = out.len().min(self.read_buf.len());
        for (dst, src) in out.iter_mut().zip(self.read_buf.drain(..n)) {
            *dst = src;
        }
        if n > 0 {
            // Room in the read buffer may let held segments through.
            self.promote();
        }
        n
    }

    pub(crate) fn eof(&self) -> bool {
        self.eof && self.read_buf.is_empty()
    }

    // ---- the link side ----

    pub(crate) fn on_packet(&mut self, packet: Packet, now: Instant) {
        if packet.conn() != self.conn {
            return;
        }
        self.last_rx = now;
        match packet {
            Packet::Data {
                seq, fin, payload, ..
            } => {
                self.ack_due = true;
                if seq < self.rcv_next || self.held.contains_key(&seq) {
                    self.stats.duplicates += 1;
                } else if seq - self.rcv_next >= self.cfg.window {
                    self.stats.out_of_window += 1;
                } else {
                    self.held.insert(seq, (fin, payload));
                    self.promote();
                }
            }
            Packet::Ack { cum, sack, .. } => {
                self.inflight.retain(|&s, _| {
                    s >= cum && !(s > cum && s - cum <= 32 && sack & (1 << (s - cum - 1)) != 0)
                });
                if self.fin_sent && self.inflight.is_empty() && self.send_buf.is_empty() {
                    self.fin_acked = true;
                }
            }
            Packet::Ping { .. } => self.ack_due = true,
        }
    }

    /// Delivers held in-order segments while the read buffer has room.
    fn promote(&mut self) {
        while let Some(entry) = self.held.first_entry() {
            if *entry.key() != self.rcv_next
                || self.read_buf.len() + entry.get().1.len() > self.cfg.recv_buffer
            {
                break;
            }
            let (fin, data) = entry.remove();
            self.stats.bytes_delivered += data.len() as u64;
            self.read_buf.extend(data);
            self.rcv_next += 1;
            self.ack_due = true;
            if fin {
                self.eof = true;
            }
        }
    }

    fn ack(&mut self) -> Packet {
        let mut sack = 0u32;
        for &s in self.held.keys() {
            let d = s - self.rcv_next;
            if (1..=32).contains(&d) {
                sack |= 1 << (d - 1);
            }
        }
        self.ack_due = false;
        self.stats.acks_sent += 1;
        Packet::Ack {
            conn: self.conn,
            cum: self.rcv_next,
            sack,
        }
    }

    /// The next packet to send now, if any: ACKs first, then retransmissions that are due,
    /// then new segments within the window, then a keep-alive.
    pub(crate) fn poll_transmit(&mut self, now: Instant) -> Option<Packet> {
        if self.error.is_some() {
            return None;
        }
        if now.saturating_duration_since(self.last_rx) >= self.cfg.idle_timeout {
            self.fail(ArqError::PeerSilent(self.cfg.idle_timeout));
            return None;
        }
        let packet = self.next_packet(now);
        if packet.is_some() {
            self.last_tx = now;
        }
        packet
    }

    fn next_packet(&mut self, now: Instant) -> Option<Packet> {
        if self.ack_due {
            return Some(self.ack());
        }
        let (max_tries, max_rto) = (self.cfg.max_retries + 1, self.cfg.max_rto);
        let due = self
            .inflight
            .iter_mut()
            .find(|(_, s)| s.due_at().is_none_or(|t| now >= t));
        if let Some((&seq, seg)) = due {
            if seg.tries >= max_tries {
                let tries = seg.tries;
                self.fail(ArqError::Unacknowledged(tries));
                return None;
            }
            if seg.sent_at.is_some() {
                seg.rto = (seg.rto * 3 / 2).min(max_rto);
                self.stats.retransmissions += 1;
            }
            seg.sent_at = Some(now);
            seg.tries += 1;
            seg.jitter = seg.rto.mul_f64(self.rng.random_range(0.0..0.5));
            return Some(Packet::Data {
                conn: self.conn,
                seq,
                fin: seg.fin,
                payload: seg.data.clone(),
            });
        }
        let window_open = self
            .inflight
            .keys()
            .next()
            .is_none_or(|&base| self.next_seq - base < self.cfg.window);
        let fin_now = self.fin_requested && !self.fin_sent;
        if window_open && (!self.send_buf.is_empty() || fin_now) {
            let n = self.seg_len.min(self.send_buf.len());
            let data: Vec<u8> = self.send_buf.drain(..n).collect();
            let fin = fin_now && self.send_buf.is_empty();
            self.fin_sent |= fin;
            let seq = self.next_seq;
            self.next_seq += 1;
            self.stats.segments_sent += 1;
            self.inflight.insert(
                seq,
                Segment {
                    data: data.clone(),
                    fin,
                    sent_at: Some(now),
                    tries: 1,
                    rto: self.rto,
                    jitter: self.rto.mul_f64(self.rng.random_range(0.0..0.5)),
                },
            );
            return Some(Packet::Data {
                conn: self.conn,
                seq,
                fin,
                payload: data,
            });
        }
        if self.inflight.is_empty()
            && now.saturating_duration_since(self.last_tx) >= self.cfg.keepalive
        {
            self.stats.pings_sent += 1;
            return Some(Packet::Ping { conn: self.conn });
        }
        None
    }

    /// When [`Arq::poll_transmit`] may next have something to send on its own.
    pub(crate) fn next_deadline(&self) -> Instant {
        let mut at = self.last_rx + self.cfg.idle_timeout;
        // Keep-alives only go out when nothing is in flight (retransmissions probe already);
        // counting them otherwise would yield a deadline that has passed and never moves.
        if self.inflight.is_empty() {
            at = at.min(self.last_tx + self.cfg.keepalive);
        }
        for seg in self.inflight.values() {
            if let Some(t) = seg.due_at() {
                at = at.min(t);
            }
        }
        at
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(window: u32) -> (Arq, Arq, Instant) {
        let now = Instant::now();
        let cfg = ArqConfig::default().with_window(window);
        let rto = Duration::from_secs(1);
        (
            Arq::new(cfg.clone(), 1, 27, rto, 1, now), // 20-byte segments
            Arq::new(cfg, 1, 27, rto, 2, now),
            now,
        )
    }

    fn data_seq(p: &Packet) -> u32 {
        match p {
            Packet::Data { seq, .. } => *seq,
            other => panic!("expected DATA, got {other:?}"),
        }
    }

    #[test]
    fn window_limits_segments_in_flight() {
        let (mut a, _, now) = pair(3);
        assert_eq!(a.write(&[7u8; 100]), 100);
        let sent: Vec<u32> = std::iter::from_fn(|| a.poll_transmit(now))
            .map(|p| data_seq(&p))
            .collect();
        assert_eq!(sent, vec![0, 1, 2]);
    }

    #[test]
    fn selective_repeat_resends_only_the_gap() {
        let (mut a, mut b, now) = pair(8);
        a.write(&(0..100u8).collect::<Vec<_>>());
        let segs: Vec<Packet> = std::iter::from_fn(|| a.poll_transmit(now)).collect();
        assert_eq!(segs.len(), 5);
        // Segment 1 is lost.
        for (i, p) in segs.iter().enumerate() {
            if i != 1 {
                b.on_packet(p.clone(), now);
            }
        }
        let mut out = [0u8; 100];
        assert_eq!(b.read(&mut out), 20, "only segment 0 is in order");
        let ack = b.poll_transmit(now).unwrap();
        assert_eq!(
            ack,
            Packet::Ack {
                conn: 1,
                cum: 1,
                sack: 0b111 // seqs 2, 3, 4
            }
        );
        a.on_packet(ack, now);
        assert_eq!(a.poll_transmit(now), None, "nothing due before the RTO");
        let later = now + Duration::from_millis(1500); // RTO plus the most jitter
        let resent: Vec<u32> = std::iter::from_fn(|| a.poll_transmit(later))
            .map(|p| data_seq(&p))
            .collect();
        assert_eq!(resent, vec![1]);
        assert_eq!(a.stats.retransmissions, 1);
        b.on_packet(segs[1].clone(), later);
        assert_eq!(b.read(&mut out), 80);
        a.on_packet(b.poll_transmit(later).unwrap(), later);
        assert!(a.flushed());
    }

    #[test]
    fn duplicates_and_out_of_window_are_dropped() {
        let (mut a, mut b, now) = pair(2);
        a.write(&[1u8; 20]);
        let p = a.poll_transmit(now).unwrap();
        b.on_packet(p.clone(), now);
        b.on_packet(p, now);
        b.on_packet(
            Packet::Data {
                conn: 1,
                seq: 5,
                fin: false,
                payload: vec![0],
            },
            now,
        );
        b.on_packet(
            Packet::Data {
                conn: 2,
                seq: 1,
                fin: false,
                payload: vec![0],
            },
            now,
        );
        assert_eq!((b.stats.duplicates, b.stats.out_of_window), (1, 1));
        assert_eq!(b.stats.bytes_delivered, 20);
    }

    #[test]
    fn fin_ends_the_stream_after_the_data() {
        let (mut a, mut b, now) = pair(8);
        a.write(b"hello");
        a.request_fin();
        assert_eq!(a.write(b"late"), 0);
        let p = a.poll_transmit(now).unwrap();
        assert!(matches!(p, Packet::Data { fin: true, .. }));
        b.on_packet(p, now);
        let mut out = [0u8; 10];
        assert!(!b.eof());
        assert_eq!(b.read(&mut out), 5);
        assert!(b.eof());
        a.on_packet(b.poll_transmit(now).unwrap(), now);
        assert!(a.fin_acked());
    }

    #[test]
    fn full_read_buffer_holds_back_the_window() {
        let now = Instant::now();
        let cfg = ArqConfig {
            recv_buffer: 40,
            ..ArqConfig::default()
        };
        let mut a = Arq::new(cfg.clone(), 1, 27, Duration::from_secs(1), 1, now);
        let mut b = Arq::new(cfg, 1, 27, Duration::from_secs(1), 2, now);
        a.write(&[3u8; 100]);
        for p in std::iter::from_fn(|| a.poll_transmit(now)).collect::<Vec<_>>() {
            b.on_packet(p, now);
        }
        assert_eq!(b.stats.bytes_delivered, 40);
        let mut out = [0u8; 100];
        assert_eq!(b.read(&mut out), 40);
        assert_eq!(
            b.stats.bytes_delivered, 80,
            "held segments move up once read"
        );
    }

    #[test]
    fn gives_up_and_keeps_alive() {
        let (mut a, mut b, now) = pair(8);
        a.write(&[0u8; 5]);
        let mut t = now;
        let mut sends = 0;
        while a.error().is_none() {
            if a.poll_transmit(t).is_some() {
                sends += 1;
            }
            t = a.next_deadline();
            // Keep the idle timer from firing first.
            a.on_packet(Packet::Ping { conn: 1 }, t);
            a.ack_due = false;
        }
        assert!(matches!(a.error(), Some(ArqError::Unacknowledged(_))));
        assert_eq!(sends, ArqConfig::default().max_retries + 1);
        // An idle connection pings, then declares the peer gone.
        let t = now + b.cfg.keepalive;
        assert_eq!(b.poll_transmit(t), Some(Packet::Ping { conn: 1 }));
        assert_eq!(b.poll_transmit(now + b.cfg.idle_timeout), None);
        assert!(matches!(b.error(), Some(ArqError::PeerSilent(_))));
    }
}
