//! The telemetry ingest benchmark: how fast one Mosquitto hands a backlog of QoS 1 messages to a bare
//! client that only counts and acknowledges them (the raw rate), and to a `civicgrid serve` node that
//! parses, stores and runs the rules on every one (ours), measured in one run against one broker.
//!
//! The bench starts a Mosquitto of its own on a free port (the machine's broker is left alone), makes
//! both persistent sessions, publishes the backlog once while both are away (the broker queues a copy for
//! each) and then lets each drain its copy: the raw client in-process, the node as a child process whose
//! `/metrics` is polled until it has acknowledged every message. The backlog is the demo town's devices
//! reporting once a minute, in their own payloads, ending now.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use civicgrid_core::iot::Device;
use indicatif::{ProgressBar, ProgressStyle};
use jiff::{SignedDuration, Timestamp};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};

use super::{Row, command_of, kill, read_banner, remove_sqlite, run_child_of};
use crate::AppResult;

/// The broker's window of unacknowledged messages per client, raised from Mosquitto's 20 so that a
/// subscriber can hold a batch while it commits (the README's MQTT section says the same for deployments).
pub const INFLIGHT: u16 = 1000;
/// Client id of the measured node.
const NODE_ID: &str = "bench-ingest-node";
/// Client id of the bare client.
const RAW_ID: &str = "bench-ingest-raw";
/// The filter both subscribe to.
const FILTER: &str = "civicgrid/v1/devices/+/telemetry";

/// A Mosquitto of the bench's own, stopped when dropped.
struct Broker {
    child: Child,
    port: u16,
    dir: std::path::PathBuf,
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn free_port() -> AppResult<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn start_broker(dir: &Path) -> AppResult<Broker> {
    let port = free_port()?;
    let dir = dir.join(format!("mosquitto-{port}"));
    std::fs::create_dir_all(&dir)?;
    let conf = dir.join("mosquitto.conf");
    std::fs::write(
        &conf,
        format!(
            "listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n\
             max_inflight_messages {INFLIGHT}\nmax_queued_messages 0\nset_tcp_nodelay true\n"
        ),
    )?;
    let child = Command::new("mosquitto")
        .arg("-c")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("mosquitto could not start ({e}); install Debian's mosquitto"))?;
    let broker = Broker { child, port, dir };
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(broker);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err("mosquitto did not listen within 5 s".into())
}

fn options(id: &str, port: u16) -> MqttOptions {
    let mut o = MqttOptions::new(id, "127.0.0.1", port);
    o.set_keep_alive(Duration::from_secs(60)).set_clean_session(false).set_inflight(INFLIGHT);
    o
}

/// Makes the bare client's persistent session: subscribed, then away.
async fn prime_raw(port: u16) -> AppResult<()> {
    let (client, mut events) = AsyncClient::new(options(RAW_ID, port), 16);
    client.subscribe(FILTER, QoS::AtLeastOnce).await?;
    loop {
        if let Event::Incoming(Packet::SubAck(_)) = events.poll().await? {
            break;
        }
    }
    client.disconnect().await?;
    while events.poll().await.is_ok() {}
    Ok(())
}

/// Publishes every message at QoS 1 and waits for the broker's acknowledgements; the publish rate.
async fn publish(port: u16, messages: &[(String, String)]) -> AppResult<f64> {
    let mut o = MqttOptions::new("bench-ingest-publisher", "127.0.0.1", port);
    o.set_keep_alive(Duration::from_secs(60)).set_inflight(INFLIGHT);
    let (client, mut events) = AsyncClient::new(o, 4096);
    let total = messages.len();
    let bar = progress(total as u64, "publishing the backlog");
    let started = Instant::now();
    let acks = tokio::spawn(async move {
        let mut acked = 0usize;
        while acked < total {
            match events.poll().await {
                Ok(Event::Incoming(Packet::PubAck(_))) => acked += 1,
                Ok(_) => {}
                Err(e) => return Err(format!("publisher: {e}")),
            }
        }
        Ok(())
    });
    for (i, (topic, payload)) in messages.iter().enumerate() {
        client.publish(topic.as_str(), QoS::AtLeastOnce, false, payload.clone().into_bytes()).await?;
        if i.is_multiple_of(4096) {
            bar.set_position(i as u64);
        }
    }
    acks.await??;
    bar.finish_and_clear();
    // The connection went with the acknowledgement task; nothing is left to say to the broker.
    drop(client);
    Ok(total as f64 / started.elapsed().as_secs_f64())
}

/// The bare client drains its backlog (counting and acknowledging); its rate.
async fn raw_drain(port: u16, total: usize) -> AppResult<f64> {
    let (_client, mut events) = AsyncClient::new(options(RAW_ID, port), 4096);
    let bar = progress(total as u64, "bare client draining");
    let started = Instant::now();
    let mut got = 0usize;
    while got < total {
        if let Event::Incoming(Packet::Publish(_)) = events.poll().await? {
            got += 1;
            if got.is_multiple_of(4096) {
                bar.set_position(got as u64);
            }
        }
    }
    bar.finish_and_clear();
    Ok(total as f64 / started.elapsed().as_secs_f64())
}

fn progress(len: u64, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template("  {msg:24} [{bar:40}] {pos}/{len} {per_sec}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_message(what.to_owned());
    bar
}

/// Starts `bin serve` on `db` subscribed to the bench broker under [`NODE_ID`].
fn spawn_node(bin: &Path, db: &str, port: u16) -> AppResult<(Child, String)> {
    let mut cmd = command_of(bin, &["serve", "--database", db, "--listen", "127.0.0.1:0"])?;
    cmd.env("CIVICGRID_MQTT", format!("mqtt://127.0.0.1:{port}")).env("CIVICGRID_MQTT_CLIENT_ID", NODE_ID);
    read_banner(cmd)
}

/// A counter's value in the node's `/metrics` (0 before it is first counted).
async fn metric(http: &reqwest::Client, base: &str, name: &str) -> AppResult<f64> {
    let text = http.get(format!("{base}/metrics")).send().await?.text().await?;
    Ok(text
        .lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum())
}

/// What the node's drain measured.
struct Drain {
    /// Messages acknowledged per second.
    rate: f64,
    /// Readings it stored.
    readings: f64,
    /// Messages per batch (per transaction), on average.
    batch: f64,
    /// Milliseconds a batch took to parse, store and follow, on average (when the node reports it).
    batch_ms: Option<f64>,
}

/// The node drains its backlog: the rate between the first poll that sees it working and the one
/// that sees every message acknowledged, how many readings it stored, and its mean batch.
async fn node_drain(bin: &Path, db: &str, port: u16, total: usize) -> AppResult<Drain> {
    let (child, base) = spawn_node(bin, db, port)?;
    let http = reqwest::Client::new();
    let bar = progress(total as u64, "civicgrid ingesting");
    let mut first: Option<(Instant, f64)> = None;
    let deadline = Instant::now() + Duration::from_secs(600);
    let outcome = loop {
        let taken = match metric(&http, &base, "civicgrid_mqtt_acked_total").await {
            Ok(n) => n,
            Err(e) => break Err(e),
        };
        let now = Instant::now();
        bar.set_position(taken as u64);
        if taken > 0.0 && first.is_none() {
            first = Some((now, taken));
        }
        if taken >= total as f64 {
            let (t0, n0) = first.unwrap_or((now, 0.0));
            let rate = (taken - n0) / now.duration_since(t0).as_secs_f64().max(1e-3);
            let readings = metric(&http, &base, "civicgrid_telemetry_readings_total").await?;
            let batches = metric(&http, &base, "civicgrid_mqtt_batch_size_count").await?;
            let busy = metric(&http, &base, "civicgrid_mqtt_batch_seconds_sum").await?;
            // A build older than the batch timer reports none.
            let batch_ms = (busy > 0.0).then(|| 1e3 * busy / batches.max(1.0));
            break Ok(Drain { rate, readings, batch: taken / batches.max(1.0), batch_ms });
        }
        if now > deadline {
            break Err(format!("the node took {taken} of {total} messages in 10 minutes").into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    bar.finish_and_clear();
    kill(child);
    outcome
}

/// Makes the node's persistent session: the node starts, subscribes and is stopped.
async fn prime_node(bin: &Path, db: &str, port: u16) -> AppResult<()> {
    let (child, base) = spawn_node(bin, db, port)?;
    let http = reqwest::Client::new();
    for _ in 0..200 {
        if metric(&http, &base, "civicgrid_mqtt_connects_total").await? >= 1.0 {
            // The subscription follows the connection acknowledgement at once; give it a moment.
            tokio::time::sleep(Duration::from_millis(300)).await;
            kill(child);
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    kill(child);
    Err("the node did not connect to the bench broker".into())
}

/// The backlog: every device once a minute for as many minutes as `total` needs, ending now.
fn backlog(devices: &[Device], total: usize) -> Vec<(String, String)> {
    let rounds = total.div_ceil(devices.len());
    let start = Timestamp::now() - SignedDuration::from_mins(rounds as i64);
    let mut rng = fastrand::Rng::with_seed(2026);
    (0..total)
        .map(|i| {
            let d = &devices[i % devices.len()];
            let at = start + SignedDuration::from_mins((i / devices.len()) as i64);
            let topic = format!("{}{}/telemetry", civicgrid_ingest::TOPIC_PREFIX, d.id);
            (topic, civicgrid_demo::devices::payload(d, at, rng.f64()))
        })
        .collect()
}

/// What one ingest run measured.
pub(super) struct IngestRun {
    /// The backlog's shape, for the table.
    shape: String,
    /// Publishing the backlog, msg/s.
    publish: f64,
    /// The bare client's drain, msg/s: the reference.
    raw: f64,
    /// The node's drain, msg/s.
    drain: Drain,
}

impl IngestRun {
    /// The node's drain, msg/s.
    pub(super) fn rate(&self) -> f64 {
        self.drain.rate
    }

    /// The node's row: its rate, its share of the bare client's, what it stored.
    pub(super) fn node_result(&self) -> String {
        format!(
            "{:.0} msg/s — {:.0} % of the bare client ({:.0} msg/s); {:.0} readings stored, {:.0} messages per transaction{}",
            self.drain.rate,
            100.0 * self.drain.rate / self.raw,
            self.raw,
            self.drain.readings,
            self.drain.batch,
            self.drain.batch_ms.map_or(String::new(), |ms| format!(", {ms:.1} ms each"))
        )
    }

    /// The three rows of a run.
    pub(super) fn rows(&self) -> Vec<Row> {
        vec![
            Row {
                what: format!("publishing the backlog at QoS 1 ({})", self.shape),
                result: format!("{:.0} msg/s", self.publish),
            },
            Row {
                what: "reference: bare rumqttc client draining it (count and acknowledge)".into(),
                result: format!("{:.0} msg/s", self.raw),
            },
            Row {
                what: "civicgrid serve draining it (parse, store, rules; acknowledged after commit), SQLite".into(),
                result: self.node_result(),
            },
        ]
    }
}

/// Runs the ingest benchmark with `total` messages, `bin` being the measured node; the demo town
/// (devices, components, rules) is generated by that build, without cases, in `dir`.
pub(super) async fn ingest_bench(bin: &Path, dir: &Path, total: usize) -> AppResult<IngestRun> {
    let db = dir.join("bench-ingest.db").to_string_lossy().into_owned();
    remove_sqlite(&db)?;
    run_child_of(bin, &["demo", "--database", &db, "--fresh", "--no-serve", "--case-scale", "0"])?;
    let devices: Vec<Device> = {
        let store = civicgrid_store::open(&db).await?;
        store.devices().await?.into_iter().filter(|d| d.retired_at.is_none()).collect()
    };
    if devices.is_empty() {
        return Err("the demo town has no devices".into());
    }
    let broker = start_broker(dir)?;
    prime_raw(broker.port).await?;
    prime_node(bin, &db, broker.port).await?;
    let messages = backlog(&devices, total);
    let bytes: usize = messages.iter().map(|(t, p)| t.len() + p.len()).sum();
    let publish = publish(broker.port, &messages).await?;
    drop(messages);
    let raw = raw_drain(broker.port, total).await?;
    let drain = node_drain(bin, &db, broker.port, total).await?;
    let shape = format!("{total} messages from {} devices (~{} bytes each)", devices.len(), bytes / total.max(1));
    Ok(IngestRun { shape, publish, raw, drain })
}
