//! One MQTT 3.1.1 connection's life, on rumqttc's packet codec: connect on the node's persistent
//! session, subscribe, hand every message on, and write the acknowledgements the store worker sends —
//! a whole committed batch's in one write — until the connection fails.
//!
//! rumqttc's own event loop writes and flushes each manual acknowledgement on its own. With the broker's
//! window of unacknowledged messages full, every acknowledgement then frees one slot, and the broker
//! sends one message per write back: a system call and a wake-up on both sides per message, which
//! capped ingest at a quarter of what a bare client drains. Here a batch's acknowledgements leave in
//! one write, and the broker refills its window in one go.
//!
//! The hand-off to the worker is bounded, and when it is full the connection stops reading: the
//! socket's buffers fill and the broker waits. Mosquitto 2.0 sends a persistent session's whole
//! backlog the moment it reconnects, whatever its `max_inflight_messages` (measured: 300,000 queued
//! messages arrived in two seconds while the node had stored 85,000), so without the bound a node
//! coming back after a long outage would hold its whole backlog in memory.

use std::time::Duration;

use bytes::{Buf, BytesMut};
use rumqttc::{
    ConnAck, Connect, ConnectReturnCode, Packet, PubAck, QoS, Subscribe, SubscribeFilter, SubscribeReasonCode,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::mpsc::{Sender, UnboundedReceiver};

use crate::MqttConfig;

/// Seconds between keep-alive pings; the broker drops a client silent for one and a half of them.
pub const KEEP_ALIVE: u16 = 30;
/// How long connecting (TCP and the broker's CONNACK) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest packet read whole. A message is at most [`civicgrid_core::iot::MAX_PAYLOAD`] (the
/// service refuses more, and says why); a larger one is skipped as it arrives, acknowledged and
/// counted, so it can never stall the connection by coming back after every reconnect.
pub const MAX_PACKET: usize = 4 * civicgrid_core::iot::MAX_PAYLOAD;
/// The packet id of our one SUBSCRIBE per connection.
const SUBSCRIBE_ID: u16 = 1;

/// A message as the worker receives it: on which connection it came (acknowledgements go back on
/// that one only), its packet id, topic and payload.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The connection it came on.
    pub connection: u64,
    /// Its packet id (0 at QoS 0, which needs no acknowledgement).
    pub pkid: u16,
    /// Its topic.
    pub topic: String,
    /// Its payload.
    pub payload: bytes::Bytes,
}

/// Messages settled — stored, or refused for good — to acknowledge on their connection.
#[derive(Debug)]
pub struct Settled {
    /// The connection they came on.
    pub connection: u64,
    /// Their packet ids.
    pub pkids: Vec<u16>,
}

/// Why a connection ended.
#[derive(Debug, thiserror::Error)]
pub enum ConnectionError {
    /// The network.
    #[error("network: {0}")]
    Io(#[from] std::io::Error),
    /// The broker spoke something we could not read.
    #[error("protocol: {0}")]
    Protocol(#[from] rumqttc::Error),
    /// The broker sent something else before accepting the connection.
    #[error("expected CONNACK, received {0}")]
    Unexpected(String),
    /// The broker refused the connection.
    #[error("the broker refused the connection: {0:?}")]
    Refused(ConnectReturnCode),
    /// The broker did not answer in time.
    #[error("the broker did not answer within {0:?}")]
    Timeout(Duration),
    /// The broker closed the connection.
    #[error("the broker closed the connection")]
    Closed,
    /// The store worker is gone: nothing more can be stored.
    #[error("the store worker stopped")]
    WorkerGone,
}

/// What to do with the bytes of a packet too large to read whole.
#[derive(Debug, Default)]
struct Skipping {
    /// Bytes of it still to come.
    left: usize,
}

/// Reads a fixed header at the start of `buf`: the packet's first byte, the header's length and the
/// remaining length; `None` until enough has arrived.
fn fixed_header(buf: &[u8]) -> Result<Option<(u8, usize, usize)>, ConnectionError> {
    let Some(&first) = buf.first() else { return Ok(None) };
    let mut remaining = 0usize;
    for (i, byte) in buf.iter().skip(1).take(4).enumerate() {
        remaining |= usize::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok(Some((first, i + 2, remaining)));
        }
    }
    if buf.len() >= 5 {
        return Err(ConnectionError::Protocol(rumqttc::Error::MalformedRemainingLength));
    }
    Ok(None)
}

/// The packet id of a QoS 1 or 2 PUBLISH whose start is in `buf` (after its fixed header), once the
/// topic and id have arrived.
fn publish_id(first: u8, header: usize, buf: &[u8]) -> Option<u16> {
    let qos = (first >> 1) & 0b11;
    if qos == 0 {
        return Some(0);
    }
    let body = buf.get(header..)?;
    let topic = usize::from(u16::from_be_bytes([*body.first()?, *body.get(1)?]));
    Some(u16::from_be_bytes([*body.get(2 + topic)?, *body.get(3 + topic)?]))
}

/// Connects, subscribes and then reads messages and writes acknowledgements until the connection fails
/// (an error) or the worker stops. `connected` is called once the broker has accepted the session.
/// While `to_worker` is full the connection reads nothing more (acknowledgements still leave).
pub async fn session(
    config: &MqttConfig,
    id: u64,
    to_worker: &Sender<Delivery>,
    settled: &mut UnboundedReceiver<Settled>,
    connected: impl FnOnce(&ConnAck),
) -> Result<(), ConnectionError> {
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect((config.host.as_str(), config.port)))
        .await
        .map_err(|_| ConnectionError::Timeout(CONNECT_TIMEOUT))??;
    stream.set_nodelay(true)?;
    let (mut rd, mut wr) = stream.into_split();
    let mut out = BytesMut::with_capacity(64 * 1024);
    let mut connect = Connect::new(config.client_id.clone());
    connect.keep_alive = KEEP_ALIVE;
    connect.clean_session = false;
    Packet::Connect(connect).write(&mut out, MAX_PACKET)?;
    wr.write_all(&out).await?;
    out.clear();

    let mut inb = BytesMut::with_capacity(256 * 1024);
    let ack = tokio::time::timeout(CONNECT_TIMEOUT, async {
        loop {
            if rd.read_buf(&mut inb).await? == 0 {
                return Err(ConnectionError::Closed);
            }
            match Packet::read(&mut inb, MAX_PACKET) {
                Ok(Packet::ConnAck(ack)) => return Ok(ack),
                Ok(other) => return Err(ConnectionError::Unexpected(format!("{other:?}"))),
                Err(rumqttc::Error::InsufficientBytes(_)) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    })
    .await
    .map_err(|_| ConnectionError::Timeout(CONNECT_TIMEOUT))??;
    if ack.code != ConnectReturnCode::Success {
        return Err(ConnectionError::Refused(ack.code));
    }
    connected(&ack);

    let filters = config.filters().into_iter().map(|f| SubscribeFilter::new(f, QoS::AtLeastOnce));
    let mut subscribe = Subscribe::new_many(filters);
    subscribe.pkid = SUBSCRIBE_ID;
    Packet::Subscribe(subscribe).write(&mut out, MAX_PACKET)?;
    wr.write_all(&out).await?;
    out.clear();

    let ping_every = Duration::from_secs(u64::from(KEEP_ALIVE) / 2);
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + ping_every, ping_every);
    let mut awaiting_pong = false;
    // Whether reading stopped (for a full hand-off) since the last ping: its answer may be unread.
    let mut stalled = false;
    let mut skipping = Skipping::default();
    // A message the worker had no room for: reading waits until it is handed on.
    let mut waiting: Option<Delivery> = None;
    loop {
        // Whole packets first: also those the broker sent right behind its CONNACK (a persistent
        // session's backlog), which are in `inb` before anything more is read; none while a message
        // waits for room.
        let oversized = take_packets(&mut inb, &mut skipping, id, to_worker, &mut waiting, &mut awaiting_pong)?;
        if !oversized.is_empty() {
            acknowledge(&mut wr, &mut out, &oversized).await?;
        }
        stalled |= waiting.is_some();
        tokio::select! {
            read = rd.read_buf(&mut inb), if waiting.is_none() => {
                if read? == 0 {
                    return Err(ConnectionError::Closed);
                }
            }
            room = to_worker.reserve(), if waiting.is_some() => {
                let room = room.map_err(|_| ConnectionError::WorkerGone)?;
                if let Some(d) = waiting.take() {
                    room.send(d);
                }
            }
            batch = settled.recv() => {
                let Some(first) = batch else { return Err(ConnectionError::WorkerGone) };
                // Everything settled by now, in one write; what belongs to an earlier connection is
                // dropped (the broker sends those messages again on this one).
                let mut pkids: Vec<u16> = Vec::new();
                let mut next = Some(first);
                while let Some(s) = next {
                    if s.connection == id {
                        pkids.extend(s.pkids);
                    }
                    next = settled.try_recv().ok();
                }
                acknowledge(&mut wr, &mut out, &pkids).await?;
            }
            _ = ping.tick() => {
                if awaiting_pong && !stalled {
                    return Err(ConnectionError::Timeout(ping_every));
                }
                Packet::PingReq.write(&mut out, MAX_PACKET)?;
                wr.write_all(&out).await?;
                out.clear();
                awaiting_pong = true;
                stalled = waiting.is_some();
            }
        }
    }
}

/// Writes a PUBACK for each packet id (QoS 0's 0 needs none) in one write.
async fn acknowledge(
    wr: &mut tokio::net::tcp::OwnedWriteHalf,
    out: &mut BytesMut,
    pkids: &[u16],
) -> Result<(), ConnectionError> {
    let mut n = 0u64;
    for pkid in pkids.iter().copied().filter(|p| *p != 0) {
        Packet::PubAck(PubAck::new(pkid)).write(out, MAX_PACKET)?;
        n += 1;
    }
    if !out.is_empty() {
        wr.write_all(out).await?;
        out.clear();
    }
    metrics::counter!("civicgrid_mqtt_acked_total").increment(n);
    Ok(())
}

/// Takes every whole packet off the front of `inb`: messages go to the worker, a SUBACK is checked, a
/// PINGRESP noted. Stops at a message the worker has no room for, left in `waiting`. Returns the packet
/// ids of messages too large to read, skipped as they arrive, to be acknowledged at once.
fn take_packets(
    inb: &mut BytesMut,
    skipping: &mut Skipping,
    id: u64,
    to_worker: &Sender<Delivery>,
    waiting: &mut Option<Delivery>,
    awaiting_pong: &mut bool,
) -> Result<Vec<u16>, ConnectionError> {
    let mut oversized = Vec::new();
    while waiting.is_none() {
        if skipping.left > 0 {
            let n = skipping.left.min(inb.len());
            inb.advance(n);
            skipping.left -= n;
            if skipping.left > 0 {
                return Ok(oversized);
            }
        }
        let Some((first, header, remaining)) = fixed_header(inb)? else { return Ok(oversized) };
        if header + remaining > MAX_PACKET {
            // Too large to read: wait for its topic and id, acknowledge it and skip the rest.
            if first >> 4 != 3 {
                return Err(ConnectionError::Protocol(rumqttc::Error::PayloadSizeLimitExceeded(remaining)));
            }
            let Some(pkid) = publish_id(first, header, inb) else { return Ok(oversized) };
            tracing::warn!(bytes = remaining, max = MAX_PACKET, "MQTT message too large; acknowledged and dropped");
            metrics::counter!("civicgrid_telemetry_rejected_total", "reason" => "oversized").increment(1);
            metrics::counter!("civicgrid_mqtt_messages_total").increment(1);
            oversized.push(pkid);
            skipping.left = header + remaining;
            continue;
        }
        if inb.len() < header + remaining {
            inb.reserve(header + remaining - inb.len());
            return Ok(oversized);
        }
        match Packet::read(inb, MAX_PACKET)? {
            Packet::Publish(p) => {
                metrics::counter!("civicgrid_mqtt_messages_total").increment(1);
                let d = Delivery { connection: id, pkid: p.pkid, topic: p.topic, payload: p.payload };
                match to_worker.try_send(d) {
                    Ok(()) => {}
                    Err(TrySendError::Full(d)) => *waiting = Some(d),
                    Err(TrySendError::Closed(_)) => return Err(ConnectionError::WorkerGone),
                }
            }
            Packet::SubAck(ack) if ack.pkid == SUBSCRIBE_ID => {
                if ack.return_codes.iter().any(|c| matches!(c, SubscribeReasonCode::Failure)) {
                    tracing::error!(codes = ?ack.return_codes, "the broker refused a subscription");
                } else {
                    tracing::info!("MQTT subscribed");
                }
            }
            Packet::PingResp => *awaiting_pong = false,
            other => tracing::debug!(packet = ?other, "MQTT packet ignored"),
        }
    }
    Ok(oversized)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_headers_and_publish_ids_are_read_from_partial_bytes() {
        let mut buf = BytesMut::new();
        let mut p = rumqttc::Publish::new("civicgrid/v1/devices/a/telemetry", QoS::AtLeastOnce, vec![7u8; 300]);
        p.pkid = 4242;
        Packet::Publish(p).write(&mut buf, MAX_PACKET).expect("encode");
        let (first, header, remaining) = fixed_header(&buf).expect("header").expect("complete");
        assert_eq!((first >> 4, header, header + remaining), (3, 3, buf.len()));
        assert_eq!(publish_id(first, header, &buf), Some(4242));
        assert_eq!(publish_id(first, header, &buf[..header + 10]), None, "not yet arrived");
        assert_eq!(fixed_header(&buf[..2]).expect("partial"), None);
        assert!(fixed_header(&[0x30, 0xff, 0xff, 0xff, 0xff, 0x01]).is_err(), "five length bytes");
    }

    /// A broker that answers the CONNECT with its CONNACK and a queued message in one write: the
    /// message is handed on without waiting for more bytes (which would not come while it is unacknowledged).
    #[tokio::test]
    async fn a_message_right_behind_the_connack_is_handed_on_at_once() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let broker = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.expect("accept");
            let mut connect = [0u8; 256];
            let _ = socket.read(&mut connect).await.expect("connect");
            let mut out = BytesMut::new();
            Packet::ConnAck(ConnAck::new(ConnectReturnCode::Success, true))
                .write(&mut out, MAX_PACKET)
                .expect("connack");
            let mut p = rumqttc::Publish::new("civicgrid/v1/devices/a/telemetry", QoS::AtLeastOnce, b"{}".to_vec());
            p.pkid = 7;
            Packet::Publish(p).write(&mut out, MAX_PACKET).expect("publish");
            socket.write_all(&out).await.expect("write");
            // Hold the connection open, reading whatever comes, until the test ends.
            let mut rest = [0u8; 1024];
            while socket.read(&mut rest).await.is_ok_and(|n| n > 0) {}
        });
        let config = MqttConfig::from_url(&format!("mqtt://127.0.0.1:{port}"), "unit", None).expect("url");
        let (to_worker, mut from_connection) = tokio::sync::mpsc::channel(16);
        let (_acks, mut settled) = tokio::sync::mpsc::unbounded_channel();
        let connection = tokio::spawn(async move { session(&config, 1, &to_worker, &mut settled, |_| {}).await });
        let got = tokio::time::timeout(Duration::from_secs(2), from_connection.recv()).await;
        connection.abort();
        broker.abort();
        let d = got.expect("handed on within two seconds").expect("a delivery");
        assert_eq!((d.pkid, d.topic.as_str()), (7, "civicgrid/v1/devices/a/telemetry"));
    }

    /// A broker with a large backlog for us (as Mosquitto sends a persistent session's whole queue on
    /// reconnection): while the worker's queue is full the connection reads nothing more, so the
    /// broker's writes stop; acknowledgements still leave; and when the worker takes the messages, all
    /// of them arrive, in order.
    #[tokio::test]
    async fn a_full_hand_off_holds_the_backlog_in_the_broker() {
        const MESSAGES: usize = 6000;
        const PAYLOAD: usize = 8 * 1024;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let written = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (acked_tx, mut acked) = tokio::sync::mpsc::unbounded_channel::<u16>();
        let progress = written.clone();
        let broker = tokio::spawn(async move {
            let (socket, _) = listener.accept().await.expect("accept");
            let (mut rd, mut wr) = socket.into_split();
            let mut connect = [0u8; 256];
            let _ = rd.read(&mut connect).await.expect("connect");
            // What the client sends from now on: its SUBSCRIBE, then acknowledgements.
            tokio::spawn(async move {
                let mut inb = BytesMut::new();
                while rd.read_buf(&mut inb).await.is_ok_and(|n| n > 0) {
                    while let Ok(p) = Packet::read(&mut inb, MAX_PACKET) {
                        if let Packet::PubAck(a) = p {
                            let _ = acked_tx.send(a.pkid);
                        }
                    }
                }
            });
            let mut out = BytesMut::new();
            Packet::ConnAck(ConnAck::new(ConnectReturnCode::Success, true))
                .write(&mut out, MAX_PACKET)
                .expect("connack");
            wr.write_all(&out).await.expect("write");
            for i in 0..MESSAGES {
                out.clear();
                let mut p =
                    rumqttc::Publish::new("civicgrid/v1/devices/a/telemetry", QoS::AtLeastOnce, vec![b'x'; PAYLOAD]);
                p.pkid = u16::try_from(i + 1).expect("pkid");
                Packet::Publish(p).write(&mut out, MAX_PACKET).expect("publish");
                wr.write_all(&out).await.expect("write");
                progress.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
            // Hold the connection open until the test ends.
            std::future::pending::<()>().await;
        });
        let config = MqttConfig::from_url(&format!("mqtt://127.0.0.1:{port}"), "unit", None).expect("url");
        let (to_worker, mut from_connection) = tokio::sync::mpsc::channel(4);
        let (acks, mut settled) = tokio::sync::mpsc::unbounded_channel();
        let connection = tokio::spawn(async move { session(&config, 1, &to_worker, &mut settled, |_| {}).await });

        // The queue fills and the broker stalls: the socket buffers hold a few MB, not the 48 MB.
        let mut last = usize::MAX;
        for _ in 0..50 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let now = written.load(std::sync::atomic::Ordering::SeqCst);
            if now == last && from_connection.len() == 4 {
                break;
            }
            last = now;
        }
        let stalled_at = written.load(std::sync::atomic::Ordering::SeqCst);
        assert_eq!(from_connection.len(), 4, "the worker's queue is full");
        assert!(stalled_at < MESSAGES / 2, "the broker wrote {stalled_at} of {MESSAGES} messages to a stalled client");

        // Acknowledgements leave while reading waits.
        acks.send(Settled { connection: 1, pkids: vec![1, 2] }).expect("settle");
        let first = tokio::time::timeout(Duration::from_secs(2), acked.recv()).await.expect("acknowledged");
        let second = tokio::time::timeout(Duration::from_secs(2), acked.recv()).await.expect("acknowledged");
        assert_eq!((first, second), (Some(1), Some(2)));
        assert_eq!(written.load(std::sync::atomic::Ordering::SeqCst), stalled_at, "still stalled");

        // The worker takes them all: every message arrives, in order.
        for i in 0..MESSAGES {
            let d = tokio::time::timeout(Duration::from_secs(5), from_connection.recv())
                .await
                .expect("handed on")
                .expect("a delivery");
            assert_eq!(usize::from(d.pkid), i + 1);
            assert_eq!(d.payload.len(), PAYLOAD);
        }
        assert_eq!(written.load(std::sync::atomic::Ordering::SeqCst), MESSAGES);
        assert!(!connection.is_finished(), "the connection is still up");
        connection.abort();
        broker.abort();
    }
}
