//! civicgrid-ingest: telemetry over MQTT. One subscriber per app node reads
//! `civicgrid/v1/devices/{device_id}/telemetry` and `…/status` at QoS 1 on a persistent session
//! (`clean_session = false` under a fixed client id), so the broker keeps what is published while the
//! node is down and hands it over when it comes back. The connection hands every message to a store
//! worker through a queue of two batches; when it is full the connection stops reading, so a backlog
//! waits in the broker, not in memory. The worker takes whatever has arrived (up to [`MAX_BATCH`]) to
//! the service layer's one ingest path ([`Services::ingest_batch`]) as one transaction, while the next
//! messages arrive. Each message is acknowledged only after it is committed — or refused for good (a
//! bad payload is counted and logged, never retried) — and a batch's acknowledgements leave in one
//! write; messages the database could not take are not acknowledged, so the broker sends them again
//! after the next reconnect. How many may wait unacknowledged is the broker's setting (Mosquitto's
//! `max_inflight_messages`, 20 unless raised), except for a persistent session's backlog, which
//! Mosquitto 2.0 sends whole on reconnection.
//!
//! The connection is re-made with backoff (0.5 s doubling to 30 s) and the subscriptions are made again
//! after every connection acknowledgement. With several nodes on one database, each subscribes through
//! a shared subscription (`$share/<group>/…`) so each message is processed once across the cluster.
//!
//! The wire is MQTT 3.1.1 through rumqttc's packet codec (maintained, used by its own client); the
//! connection loop is ours ([`connection`]), because rumqttc's event loop flushes every manual
//! acknowledgement on its own, which capped ingest at a quarter of the broker's rate. No TLS: brokers
//! sit on the intranet.

pub mod connection;

use std::time::Duration;

use civicgrid_service::Services;
use civicgrid_service::iot::IngestError;
use connection::{Delivery, Settled};
use tokio::sync::mpsc::{Receiver, UnboundedSender};

/// The topic prefix of every device.
pub const TOPIC_PREFIX: &str = "civicgrid/v1/devices/";
/// Longest wait between reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Storage attempts for a batch before what is left of it stays unacknowledged (for redelivery).
const STORE_ATTEMPTS: u32 = 5;
/// A batch that takes this long to parse, store and follow is logged at the default level (with its
/// size), so that a slow drain leaves a trace; every batch's time is in `civicgrid_mqtt_batch_seconds`.
const SLOW_BATCH: Duration = Duration::from_secs(1);
/// Most messages stored in one transaction. A commit has a cost of its own (the WAL's fsync, the
/// turns between the runtime and the database's thread), which 4,000 messages share four times
/// thinner than 1,000: +40 % on the ingest benchmark, at about 15 ms a batch.
pub const MAX_BATCH: usize = 4000;
/// Most messages read from the broker and not yet taken by the store worker: the next batch gathers
/// while one is stored.
const QUEUE: usize = 2 * MAX_BATCH;

/// Where and how to subscribe.
#[derive(Debug, Clone)]
pub struct MqttConfig {
    /// Broker host.
    pub host: String,
    /// Broker port.
    pub port: u16,
    /// Client id: fixed per node, so its persistent session survives restarts.
    pub client_id: String,
    /// Shared-subscription group, when several nodes share the work.
    pub share_group: Option<String>,
}

impl MqttConfig {
    /// Reads `mqtt://host[:port]`; the client id and share group are given separately.
    pub fn from_url(url: &str, client_id: impl Into<String>, share_group: Option<String>) -> Result<Self, String> {
        let rest = url.strip_prefix("mqtt://").ok_or_else(|| format!("{url:?}: an mqtt://host[:port] URL"))?;
        let rest = rest.trim_end_matches('/');
        let (host, port) = match rest.rsplit_once(':') {
            Some((h, p)) => (h, p.parse::<u16>().map_err(|_| format!("{url:?}: the port is a number"))?),
            None => (rest, 1883),
        };
        if host.is_empty() {
            return Err(format!("{url:?}: no host"));
        }
        Ok(MqttConfig { host: host.to_owned(), port, client_id: client_id.into(), share_group })
    }

    /// The topic filters this node subscribes to.
    pub fn filters(&self) -> Vec<String> {
        let share = self.share_group.as_ref().map(|g| format!("$share/{g}/")).unwrap_or_default();
        ["telemetry", "status"].iter().map(|leaf| format!("{share}{TOPIC_PREFIX}+/{leaf}")).collect()
    }
}

/// The device a topic names: `civicgrid/v1/devices/{id}/telemetry` or `…/status`.
pub fn device_of(topic: &str) -> Option<&str> {
    let rest = topic.strip_prefix(TOPIC_PREFIX)?;
    let (id, leaf) = rest.split_once('/')?;
    matches!(leaf, "telemetry" | "status").then_some(id)
}

/// Runs the subscriber until the task is aborted.
pub fn spawn(services: Services, config: MqttConfig) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move { run(services, config).await })
}

/// Keeps a connection up — made again with backoff whenever it fails, the subscriptions made again
/// on each — and hands every message to the store worker, whose acknowledgements it writes; ends if the
/// worker does, so the node's readiness check sees it.
async fn run(services: Services, config: MqttConfig) {
    // Bounded: while it is full the connection stops reading (and still writes acknowledgements), so
    // a backlog waits in the broker, not in this node's memory. The worker never waits for the
    // connection: acknowledgements go back on an unbounded channel, never longer than this one.
    let (to_worker, from_connection) = tokio::sync::mpsc::channel(QUEUE);
    let (to_connection, mut settled) = tokio::sync::mpsc::unbounded_channel();
    let worker = tokio::spawn(work(services, from_connection, to_connection));
    let mut backoff = Duration::from_millis(500);
    for id in 1u64.. {
        let mut up = false;
        let ended = connection::session(&config, id, &to_worker, &mut settled, |ack| {
            up = true;
            tracing::info!(host = %config.host, port = config.port, session = ack.session_present, "MQTT connected");
            metrics::counter!("civicgrid_mqtt_connects_total").increment(1);
        })
        .await;
        if up {
            backoff = Duration::from_millis(500);
        }
        match ended {
            Err(connection::ConnectionError::WorkerGone) | Ok(()) => {
                tracing::error!("the MQTT store worker stopped; ingest stops");
                return;
            }
            Err(e) if worker.is_finished() => {
                tracing::error!(error = %e, "the MQTT store worker stopped; ingest stops");
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "MQTT connection lost");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

/// Takes the messages that have arrived — all of them, up to [`MAX_BATCH`] — and stores them in one
/// transaction while the next ones arrive; sends back those settled, to acknowledge in one go.
async fn work(services: Services, mut from_connection: Receiver<Delivery>, acks: UnboundedSender<Settled>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while from_connection.recv_many(&mut batch, MAX_BATCH).await > 0 {
        metrics::histogram!("civicgrid_mqtt_batch_size").record(batch.len() as f64);
        let done = store(&services, &batch).await;
        // Per connection (a batch may straddle a reconnection).
        let mut by_connection: Vec<Settled> = Vec::new();
        for d in done {
            match by_connection.last_mut() {
                Some(s) if s.connection == d.connection => s.pkids.push(d.pkid),
                _ => by_connection.push(Settled { connection: d.connection, pkids: vec![d.pkid] }),
            }
        }
        for s in by_connection {
            if acks.send(s).is_err() {
                return;
            }
        }
        batch.clear();
    }
}

/// Stores (or refuses) a batch and returns the messages settled; tries again with backoff while the
/// database will not take them, and in the end leaves them out (unacknowledged, for the broker to send
/// again).
async fn store<'a>(services: &Services, batch: &'a [Delivery]) -> Vec<&'a Delivery> {
    let mut settled = Vec::with_capacity(batch.len());
    // Each message with the device its topic names.
    let mut pending: Vec<(&Delivery, &str)> = Vec::with_capacity(batch.len());
    for d in batch {
        match device_of(&d.topic) {
            Some(device) => pending.push((d, device)),
            None => {
                tracing::warn!(topic = %d.topic, "message on an unexpected topic");
                settled.push(d);
            }
        }
    }
    let mut delay = Duration::from_millis(100);
    for attempt in 1..=STORE_ATTEMPTS {
        let messages: Vec<(&str, &[u8])> = pending.iter().map(|(d, device)| (*device, &d.payload[..])).collect();
        let started = std::time::Instant::now();
        let outcomes = services.ingest_batch(&messages).await;
        let took = started.elapsed();
        metrics::histogram!("civicgrid_mqtt_batch_seconds").record(took.as_secs_f64());
        if took >= SLOW_BATCH {
            tracing::warn!(messages = messages.len(), seconds = took.as_secs_f64(), "slow telemetry batch");
        } else {
            tracing::debug!(messages = messages.len(), seconds = took.as_secs_f64(), "telemetry batch");
        }
        let mut again = Vec::new();
        let mut failure = None;
        for ((d, device), outcome) in pending.into_iter().zip(outcomes) {
            match outcome {
                Ok(_) | Err(IngestError::Refused(_)) => settled.push(d),
                Err(IngestError::Store(e)) => {
                    failure = Some(e);
                    again.push((d, device));
                }
            }
        }
        let Some(e) = failure else { break };
        if attempt == STORE_ATTEMPTS {
            tracing::error!(messages = again.len(), error = %e, "telemetry not stored; left for the broker to send again");
            break;
        }
        tracing::warn!(messages = again.len(), error = %e, attempt, "telemetry not stored; trying again");
        tokio::time::sleep(delay).await;
        delay *= 2;
        pending = again;
    }
    settled
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_topics_and_filters() {
        let c = MqttConfig::from_url("mqtt://127.0.0.1:1883", "node-1", None).expect("url");
        assert_eq!((c.host.as_str(), c.port), ("127.0.0.1", 1883));
        assert_eq!(MqttConfig::from_url("mqtt://broker", "n", None).expect("url").port, 1883);
        assert!(MqttConfig::from_url("http://broker", "n", None).is_err());
        assert!(MqttConfig::from_url("mqtt://:1883", "n", None).is_err());
        let shared = MqttConfig::from_url("mqtt://b", "n", Some("civicgrid".into())).expect("url");
        assert_eq!(shared.filters()[0], "$share/civicgrid/civicgrid/v1/devices/+/telemetry");
        assert_eq!(device_of("civicgrid/v1/devices/lamp-1/telemetry"), Some("lamp-1"));
        assert_eq!(device_of("civicgrid/v1/devices/lamp-1/status"), Some("lamp-1"));
        assert_eq!(device_of("civicgrid/v1/devices/lamp-1/other"), None);
        assert_eq!(device_of("other/lamp-1/telemetry"), None);
    }
}
