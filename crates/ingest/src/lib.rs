//! civicgrid-ingest: telemetry over MQTT. One subscriber per app node reads
//! `civicgrid/v1/devices/{device_id}/telemetry` and `…/status` at QoS 1 on a persistent session
//! (`clean_session = false` under a fixed client id), so the broker keeps what is published while the
//! node is down and hands it over when it comes back. The connection's poller hands every message to a
//! store worker, which takes whatever has arrived (up to [`MAX_BATCH`]) to the service layer's one
//! ingest path ([`Services::ingest_batch`]) as one transaction, while the next messages arrive. Each
//! message is acknowledged only after it is committed — or refused for good (a bad payload is counted
//! and logged, never retried); messages the database could not take are not acknowledged, so the
//! broker sends them again after the next reconnect. How many may wait unacknowledged is the broker's
//! setting (Mosquitto's `max_inflight_messages`, 20 unless raised): it bounds the batch.
//!
//! The connection is re-made with backoff (0.5 s doubling to 30 s) and the subscriptions are made again
//! after every connection acknowledgement. With several nodes on one database, each subscribes through
//! a shared subscription (`$share/<group>/…`) so each message is processed once across the cluster.
//!
//! rumqttc is the client: maintained, async on tokio, with manual acknowledgements and persistent
//! sessions; built here without TLS (brokers sit on the intranet).

use std::time::Duration;

use civicgrid_service::Services;
use civicgrid_service::iot::IngestError;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, Publish, QoS};
use tokio::sync::mpsc::UnboundedReceiver;

/// The topic prefix of every device.
pub const TOPIC_PREFIX: &str = "civicgrid/v1/devices/";
/// Longest wait between reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Storage attempts for a batch before what is left of it stays unacknowledged (for redelivery).
const STORE_ATTEMPTS: u32 = 5;
/// Most messages stored in one transaction.
pub const MAX_BATCH: usize = 1000;
/// Requests (acknowledgements, subscriptions) queued for the connection.
const REQUESTS: usize = 4 * MAX_BATCH;

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

/// Polls the connection (which also sends what the store worker queues: acknowledgements) and hands
/// every message to the worker; ends if the worker does, so the node's readiness check sees it.
async fn run(services: Services, config: MqttConfig) {
    let mut options = MqttOptions::new(&config.client_id, &config.host, config.port);
    options.set_keep_alive(Duration::from_secs(30)).set_clean_session(false).set_manual_acks(true);
    let (client, mut events) = AsyncClient::new(options, REQUESTS);
    // Unbounded, yet never more than the broker's window of unacknowledged messages long; a bounded
    // channel could stall this loop while the worker waits for it to send acknowledgements.
    let (to_worker, from_poller) = tokio::sync::mpsc::unbounded_channel();
    let worker = tokio::spawn(work(services, client.clone(), from_poller));
    let mut backoff = Duration::from_millis(500);
    loop {
        match events.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                backoff = Duration::from_millis(500);
                tracing::info!(host = %config.host, port = config.port, session = ack.session_present, "MQTT connected");
                metrics::counter!("civicgrid_mqtt_connects_total").increment(1);
                for filter in config.filters() {
                    if let Err(e) = client.try_subscribe(filter.clone(), QoS::AtLeastOnce) {
                        tracing::error!(%filter, error = %e, "MQTT subscribe not queued");
                    }
                }
            }
            Ok(Event::Incoming(Packet::Publish(p))) => {
                metrics::counter!("civicgrid_mqtt_messages_total").increment(1);
                if to_worker.send(p).is_err() {
                    tracing::error!("the MQTT store worker stopped; ingest stops");
                    return;
                }
            }
            Ok(_) => {}
            Err(e) => {
                if worker.is_finished() {
                    tracing::error!("the MQTT store worker stopped; ingest stops");
                    return;
                }
                tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "MQTT connection lost");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

/// Takes the messages that have arrived — all of them, up to [`MAX_BATCH`] — and stores them in one
/// transaction while the next ones arrive.
async fn work(services: Services, client: AsyncClient, mut from_poller: UnboundedReceiver<Publish>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while from_poller.recv_many(&mut batch, MAX_BATCH).await > 0 {
        metrics::histogram!("civicgrid_mqtt_batch_size").record(batch.len() as f64);
        store(&services, &client, &batch).await;
        batch.clear();
    }
}

/// Stores (or refuses) a batch and acknowledges each message settled; tries again with backoff while
/// the database will not take them, and in the end leaves them unacknowledged for the broker to send
/// again.
async fn store(services: &Services, client: &AsyncClient, batch: &[Publish]) {
    // Each message with the device its topic names.
    let mut pending: Vec<(&Publish, &str)> = Vec::with_capacity(batch.len());
    for p in batch {
        match device_of(&p.topic) {
            Some(device) => pending.push((p, device)),
            None => {
                tracing::warn!(topic = %p.topic, "message on an unexpected topic");
                ack(client, p).await;
            }
        }
    }
    let mut delay = Duration::from_millis(100);
    for attempt in 1..=STORE_ATTEMPTS {
        let messages: Vec<(&str, &[u8])> = pending.iter().map(|(p, device)| (*device, &p.payload[..])).collect();
        let outcomes = services.ingest_batch(&messages).await;
        let mut again = Vec::new();
        let mut failure = None;
        for ((p, device), outcome) in pending.into_iter().zip(outcomes) {
            match outcome {
                Ok(_) | Err(IngestError::Refused(_)) => ack(client, p).await,
                Err(IngestError::Store(e)) => {
                    failure = Some(e);
                    again.push((p, device));
                }
            }
        }
        let Some(e) = failure else { return };
        if attempt == STORE_ATTEMPTS {
            tracing::error!(messages = again.len(), error = %e, "telemetry not stored; left for the broker to send again");
            return;
        }
        tracing::warn!(messages = again.len(), error = %e, attempt, "telemetry not stored; trying again");
        tokio::time::sleep(delay).await;
        delay *= 2;
        pending = again;
    }
}

async fn ack(client: &AsyncClient, p: &Publish) {
    match client.ack(p).await {
        Ok(()) => metrics::counter!("civicgrid_mqtt_acked_total").increment(1),
        Err(e) => tracing::error!(topic = %p.topic, error = %e, "MQTT acknowledgement not queued"),
    }
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
