//! The telemetry ingest benchmark: how fast one Mosquitto hands a backlog of QoS 1 messages to a bare
//! rumqttc client that only counts and acknowledges them, to a lean client — civicgrid's own MQTT
//! connection with a worker that stores nothing and acknowledges each batch at once (the raw rate,
//! the reference) — and to a `civicgrid serve` node that parses, stores and runs the rules on every
//! one (ours), measured in one run against one broker. The lean client and the node differ only in
//! what happens between a batch's arrival and its acknowledgement, so the node's share of the lean
//! client's rate is what storing and the rules cost.
//!
//! The bench starts a Mosquitto of its own on a free port (the machine's broker is left alone), makes
//! the three persistent sessions, publishes the backlog once while they are away (the broker queues a
//! copy for each) and then lets each drain its copy: the two clients in-process, the node as a child
//! process whose `/metrics` is polled until it has acknowledged every message. The backlog is the demo
//! town's devices reporting once a minute, in their own payloads, ending now.
//!
//! Each drain also reports the CPU time the broker (and the node) spent on it, per message, from
//! `/proc`. Mosquitto reads every acknowledgement with several system calls, and it reads a fast
//! client's only after it has written that client's backlog: the bare client's drain is over before
//! the broker pays for its acknowledgements, the node's is not. So the bare client's rate is taken
//! twice: as received (its last message in), and as consumed — once the broker has read every
//! acknowledgement, which it shows by answering a subscription the client sends after the last of
//! them (it reads a client's packets in order). rumqttc writes each acknowledgement on its own, so
//! the consumed rate is low; the lean client, which acknowledges in batches as the node does, is the
//! reference. Each drain starts only once the broker has finished with the one before (its CPU time
//! stands still), so that no two overlap.

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
/// subscriber can hold two of its largest batches ([`civicgrid_ingest::MAX_BATCH`]), one committing and
/// one gathering (the README's MQTT section says the same for deployments).
pub const INFLIGHT: u16 = 8000;
const _: () = assert!(INFLIGHT as usize >= 2 * civicgrid_ingest::MAX_BATCH);
/// Client id of the measured node.
const NODE_ID: &str = "bench-ingest-node";
/// Client id of the bare client.
const RAW_ID: &str = "bench-ingest-raw";
/// The lean client's persistent session (civicgrid's own connection, storing nothing).
const LEAN_ID: &str = "bench-ingest-lean";
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

/// CPU time (user and system) a process has used so far; `None` where it cannot be read (Linux only).
///
/// `/proc/<pid>/stat` counts in clock ticks of 1/100 s, too coarse for a broker that spends a few
/// milliseconds on a small backlog: a single-threaded process (Mosquitto) is read from
/// `/proc/<pid>/schedstat` instead, in nanoseconds. A process with threads keeps the tick count, which
/// also holds the time of threads that have ended.
fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name, in parentheses, may hold spaces: the fields after it are counted from its end.
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let fields: Vec<&str> = rest.split_ascii_whitespace().collect();
    // Fields 14, 15 (utime, stime) and 20 (num_threads) of proc(5); `rest` starts at field 3.
    let (user, system, threads) = (fields.get(11)?, fields.get(12)?, fields.get(17)?);
    if *threads == "1" {
        let schedstat = std::fs::read_to_string(format!("/proc/{pid}/schedstat")).ok();
        if let Some(ns) = schedstat.as_deref().and_then(|s| s.split(' ').next()?.parse().ok()) {
            return Some(Duration::from_nanos(ns));
        }
    }
    let ticks: u64 = user.parse::<u64>().ok()? + system.parse::<u64>().ok()?;
    Some(Duration::from_millis(10 * ticks))
}

/// Microseconds of CPU a message between two readings of [`cpu_time`].
fn per_message(before: Option<Duration>, after: Option<Duration>, messages: f64) -> Option<f64> {
    let spent = after?.checked_sub(before?)?;
    Some(1e6 * spent.as_secs_f64() / messages.max(1.0))
}

/// Waits until the broker's CPU time stands (nearly) still for 200 ms, under 1 ms spent: it has read
/// what a client left it; at most 30 s. The CPU time it spent meanwhile.
async fn broker_settles(pid: u32) -> Option<Duration> {
    let start = cpu_time(pid)?;
    let mut last = start;
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let now = cpu_time(pid)?;
        if now.saturating_sub(last) < Duration::from_millis(1) {
            break;
        }
        last = now;
    }
    last.checked_sub(start)
}

/// Makes a client's persistent session under `id`: subscribed, then away.
async fn prime(id: &str, port: u16) -> AppResult<()> {
    let (client, mut events) = AsyncClient::new(options(id, port), 16);
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

/// What the bare client's drain measured.
struct RawDrain {
    /// Messages received per second.
    received: f64,
    /// Messages consumed per second: received, and every acknowledgement read by the broker (a QoS 1
    /// delivery is over only then).
    consumed: f64,
    /// The broker's CPU during the drain, µs a message.
    broker_us: Option<f64>,
    /// The broker's CPU after it, until it stood still (reading the client's acknowledgements).
    broker_after: Option<Duration>,
}

/// The bare client drains its backlog (counting and acknowledging); its rate, and the broker's CPU
/// during and after it.
async fn raw_drain(broker: &Broker, total: usize) -> AppResult<RawDrain> {
    let pid = broker.child.id();
    let before = cpu_time(pid);
    let (received, consumed, at_last) = raw_receive(broker, total).await?;
    let broker_us = per_message(before, at_last, total as f64);
    let broker_after = broker_settles(pid).await;
    Ok(RawDrain { received, consumed, broker_us, broker_after })
}

/// The bare client receives its backlog (rumqttc acknowledges each message): the rate received; the
/// rate consumed, once the broker has read every acknowledgement (it answers a subscription sent
/// after the last of them only then, reading the client's packets in order); and the broker's CPU
/// time at the last message.
async fn raw_receive(broker: &Broker, total: usize) -> AppResult<(f64, f64, Option<Duration>)> {
    let (client, mut events) = AsyncClient::new(options(RAW_ID, broker.port), 4096);
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
    let received = started.elapsed();
    let at_last = cpu_time(broker.child.id());
    bar.finish_and_clear();
    client.subscribe(FILTER, QoS::AtLeastOnce).await?;
    loop {
        if let Event::Incoming(Packet::SubAck(_)) = events.poll().await? {
            break;
        }
    }
    let consumed = started.elapsed();
    Ok((total as f64 / received.as_secs_f64(), total as f64 / consumed.as_secs_f64(), at_last))
}

/// What the lean client's drain measured.
struct LeanDrain {
    /// Messages acknowledged per second.
    rate: f64,
    /// The broker's CPU during the drain, µs a message.
    broker_us: Option<f64>,
}

/// The lean client drains its backlog: civicgrid's own MQTT connection
/// ([`civicgrid_ingest::connection`]), the node's queue of two batches, and a worker that stores
/// nothing and hands each batch straight back to be acknowledged in one write, as the node does once a
/// batch is committed. Its rate, from connecting to its last acknowledgement handed over (as the bare
/// client is timed from connecting), is the broker's raw rate for a consumer that acknowledges as the
/// node does, so the node's share of it is what storing and the rules cost. The broker is then left
/// to settle.
async fn lean_drain(broker: &Broker, total: usize) -> AppResult<LeanDrain> {
    use civicgrid_ingest::connection::{self, Settled};
    let config = civicgrid_ingest::MqttConfig {
        host: "127.0.0.1".into(),
        port: broker.port,
        client_id: LEAN_ID.into(),
        share_group: None,
    };
    let (to_worker, mut from_connection) = tokio::sync::mpsc::channel(2 * civicgrid_ingest::MAX_BATCH);
    let (to_connection, mut settled) = tokio::sync::mpsc::unbounded_channel();
    let pid = broker.child.id();
    let bar = progress(total as u64, "lean client draining");
    // From the connection on, as the bare client is timed.
    let (started, before) = (Instant::now(), cpu_time(pid));
    let session = tokio::spawn(async move { connection::session(&config, 1, &to_worker, &mut settled, |_| {}).await });
    let mut batch = Vec::with_capacity(civicgrid_ingest::MAX_BATCH);
    let mut got = 0usize;
    while got < total {
        if from_connection.recv_many(&mut batch, civicgrid_ingest::MAX_BATCH).await == 0 {
            session.abort();
            return Err("the lean client's connection ended before its backlog did".into());
        }
        got += batch.len();
        let connection = batch[0].connection;
        to_connection.send(Settled { connection, pkids: batch.iter().map(|d| d.pkid).collect() })?;
        batch.clear();
        bar.set_position(got as u64);
    }
    let took = started.elapsed();
    let broker_us = per_message(before, cpu_time(pid), total as f64);
    bar.finish_and_clear();
    // Its last acknowledgements go out before the connection is dropped.
    tokio::time::sleep(Duration::from_millis(100)).await;
    session.abort();
    broker_settles(pid).await;
    Ok(LeanDrain { rate: total as f64 / took.as_secs_f64(), broker_us })
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

/// The `serve` arguments of a node on `db`.
fn node_args(db: &str) -> [&str; 5] {
    ["serve", "--database", db, "--listen", "127.0.0.1:0"]
}

/// Subscribes a node's command to the bench broker under [`NODE_ID`].
fn to_broker(cmd: &mut Command, port: u16) {
    cmd.env("CIVICGRID_MQTT", format!("mqtt://127.0.0.1:{port}")).env("CIVICGRID_MQTT_CLIENT_ID", NODE_ID);
}

/// Starts `bin serve` on `db` subscribed to the bench broker.
fn spawn_node(bin: &Path, db: &str, port: u16) -> AppResult<(Child, String)> {
    let mut cmd = command_of(bin, &node_args(db))?;
    to_broker(&mut cmd, port);
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
    /// The node's CPU during the measured drain, µs a message.
    node_us: Option<f64>,
    /// The broker's, likewise.
    broker_us: Option<f64>,
}

/// CPU time used so far by the node and by the broker.
type CpuPair = (Duration, Duration);

/// The node drains its backlog: the rate between the first poll that sees it working and the one
/// that sees every message acknowledged, how many readings it stored, and its mean batch.
async fn node_drain(bin: &Path, db: &str, broker: &Broker, total: usize) -> AppResult<Drain> {
    let (child, base) = spawn_node(bin, db, broker.port)?;
    let cpu = |pid: u32| cpu_time(pid).zip(cpu_time(broker.child.id()));
    let http = reqwest::Client::new();
    let bar = progress(total as u64, "civicgrid ingesting");
    // When the first acknowledgements were seen, how many, and the node's and broker's CPU then.
    let mut first: Option<(Instant, f64, Option<CpuPair>)> = None;
    let deadline = Instant::now() + Duration::from_secs(600);
    let outcome = loop {
        let taken = match metric(&http, &base, "civicgrid_mqtt_acked_total").await {
            Ok(n) => n,
            Err(e) => break Err(e),
        };
        let now = Instant::now();
        bar.set_position(taken as u64);
        if taken > 0.0 && first.is_none() {
            first = Some((now, taken, cpu(child.id())));
        }
        if taken >= total as f64 {
            let cpu_now = cpu(child.id());
            let (t0, n0, cpu0) = first.unwrap_or((now, 0.0, cpu_now));
            let rate = (taken - n0) / now.duration_since(t0).as_secs_f64().max(1e-3);
            let node_us = per_message(cpu0.map(|c| c.0), cpu_now.map(|c| c.0), taken - n0);
            let broker_us = per_message(cpu0.map(|c| c.1), cpu_now.map(|c| c.1), taken - n0);
            let readings = metric(&http, &base, "civicgrid_telemetry_readings_total").await?;
            let batches = metric(&http, &base, "civicgrid_mqtt_batch_size_count").await?;
            let busy = metric(&http, &base, "civicgrid_mqtt_batch_seconds_sum").await?;
            // A build older than the batch timer reports none.
            let batch_ms = (busy > 0.0).then(|| 1e3 * busy / batches.max(1.0));
            break Ok(Drain { rate, readings, batch: taken / batches.max(1.0), batch_ms, node_us, broker_us });
        }
        if now > deadline {
            break Err(format!("the node took {taken} of {total} messages in 10 minutes").into());
        }
        // A tenth of a second: often enough to time a drain of seconds, seldom enough that rendering
        // `/metrics` (which a Prometheus does every 15 s or so) costs the node little.
        tokio::time::sleep(Duration::from_millis(100)).await;
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
    /// The bare rumqttc client's drain.
    raw: RawDrain,
    /// The lean client's drain: the reference.
    lean: LeanDrain,
    /// The node's drain, msg/s.
    drain: Drain,
}

impl IngestRun {
    /// The node's drain, msg/s.
    pub(super) fn rate(&self) -> f64 {
        self.drain.rate
    }

    /// The reference: the lean client's rate, msg/s.
    pub(super) fn reference_rate(&self) -> f64 {
        self.lean.rate
    }

    /// The node's row: its rate, its share of the lean client's (and of the bare client's received),
    /// what it stored.
    pub(super) fn node_result(&self) -> String {
        format!(
            "{:.0} msg/s — {:.0} % of the lean client ({:.0} msg/s); {:.0} % of the bare client's {:.0} msg/s received; {:.0} readings stored, {:.0} messages per transaction{}; CPU a message: node {}, broker {}",
            self.drain.rate,
            100.0 * self.drain.rate / self.lean.rate,
            self.lean.rate,
            100.0 * self.drain.rate / self.raw.received,
            self.raw.received,
            self.drain.readings,
            self.drain.batch,
            self.drain.batch_ms.map_or(String::new(), |ms| format!(", {ms:.1} ms each")),
            micros(self.drain.node_us),
            micros(self.drain.broker_us),
        )
    }

    /// The bare client's row: its rates, and what the broker spent during and after it.
    fn raw_result(&self) -> String {
        format!(
            "{:.0} msg/s consumed ({:.0} msg/s received); CPU a message: broker {} while receiving; broker CPU after it (reading the acknowledgements): {}",
            self.raw.consumed,
            self.raw.received,
            micros(self.raw.broker_us),
            self.raw.broker_after.map_or_else(|| "unknown".to_owned(), |d| format!("{:.1} ms", 1e3 * d.as_secs_f64())),
        )
    }

    /// The four rows of a run.
    pub(super) fn rows(&self) -> Vec<Row> {
        vec![
            Row {
                what: format!("publishing the backlog at QoS 1 ({})", self.shape),
                result: format!("{:.0} msg/s", self.publish),
            },
            Row {
                what: "bare rumqttc client draining it (count and acknowledge; consumed once the broker has read every acknowledgement)".into(),
                result: self.raw_result(),
            },
            Row {
                what: "reference: lean client draining it (civicgrid's own MQTT connection; acknowledges each batch at once, stores nothing)".into(),
                result: format!("{:.0} msg/s; CPU a message: broker {}", self.lean.rate, micros(self.lean.broker_us)),
            },
            Row {
                what: "civicgrid serve draining it (parse, store, rules; acknowledged after commit), SQLite".into(),
                result: self.node_result(),
            },
        ]
    }
}

/// Microseconds, or "unknown" where `/proc` could not be read.
fn micros(us: Option<f64>) -> String {
    us.map_or_else(|| "unknown".to_owned(), |us| format!("{us:.1} µs"))
}

/// The demo town's live devices in a fresh database made by `bin` in `dir`, without cases.
async fn ingest_town(bin: &Path, dir: &Path, name: &str) -> AppResult<(String, Vec<Device>)> {
    let db = dir.join(name).to_string_lossy().into_owned();
    remove_sqlite(&db)?;
    run_child_of(bin, &["demo", "--database", &db, "--fresh", "--no-serve", "--case-scale", "0"])?;
    // Read from a copy: opening a database migrates it, and `bin` may be an older build (`--against`)
    // that refuses a database a newer one has migrated.
    let copy = format!("{db}.devices");
    remove_sqlite(&copy)?;
    for suffix in ["", "-wal"] {
        if Path::new(&format!("{db}{suffix}")).exists() {
            std::fs::copy(format!("{db}{suffix}"), format!("{copy}{suffix}"))?;
        }
    }
    let devices: Vec<Device> = {
        let store = civicgrid_store::open(&copy).await?;
        store.devices().await?.into_iter().filter(|d| d.retired_at.is_none()).collect()
    };
    remove_sqlite(&copy)?;
    if devices.is_empty() {
        return Err("the demo town has no devices".into());
    }
    Ok((db, devices))
}

/// Runs the ingest benchmark with `total` messages, `bin` being the measured node; the demo town
/// (devices, components, rules) is generated by that build, without cases, in `dir`.
pub(super) async fn ingest_bench(bin: &Path, dir: &Path, total: usize) -> AppResult<IngestRun> {
    let (db, devices) = ingest_town(bin, dir, "bench-ingest.db").await?;
    let broker = start_broker(dir)?;
    prime(RAW_ID, broker.port).await?;
    prime(LEAN_ID, broker.port).await?;
    prime_node(bin, &db, broker.port).await?;
    let messages = backlog(&devices, total);
    let bytes: usize = messages.iter().map(|(t, p)| t.len() + p.len()).sum();
    let publish = publish(broker.port, &messages).await?;
    drop(messages);
    let raw = raw_drain(&broker, total).await?;
    let lean = lean_drain(&broker, total).await?;
    let drain = node_drain(bin, &db, &broker, total).await?;
    let shape = format!("{total} messages from {} devices (~{} bytes each)", devices.len(), bytes / total.max(1));
    Ok(IngestRun { shape, publish, raw, lean, drain })
}

/// Messages a node under callgrind takes, beyond one from every device, before its counters are
/// zeroed: with those, start-up and every device's first reading of its cache entry and rule memory.
const WARM_UP: usize = 200;

/// Waits until the node has acknowledged `n` messages (at most 30 minutes: callgrind is slow).
async fn acked_reaches(http: &reqwest::Client, base: &str, n: usize) -> AppResult<()> {
    let deadline = Instant::now() + Duration::from_secs(1800);
    while metric(http, base, "civicgrid_mqtt_acked_total").await? < n as f64 {
        if Instant::now() > deadline {
            return Err(format!("the node under callgrind did not take {n} messages in 30 minutes").into());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Ok(())
}

/// The instructions a node (`bin`) executes per message while it takes `total` messages, counted by
/// callgrind: the node connects, takes a warm-up backlog, its counters are zeroed, then the messages
/// are published and it takes them as they come (in full batches: the publisher is far faster than a
/// node under Valgrind). Its `/metrics` is read twice a second meanwhile, which is counted too.
pub(super) async fn counted_ingest(bin: &Path, dir: &Path, total: usize) -> AppResult<f64> {
    let (db, devices) = ingest_town(bin, dir, "bench-ingest-instructions.db").await?;
    let broker = start_broker(dir)?;
    prime_node(bin, &db, broker.port).await?;
    let warm = devices.len() + WARM_UP;
    let messages = backlog(&devices, warm + total);
    let (warm_up, measured) = messages.split_at(warm);
    publish(broker.port, warm_up).await?;
    let out = dir.join("callgrind.ingest.out");
    let mut cmd = super::instructions::under_callgrind(bin, &out, &node_args(&db))?;
    to_broker(&mut cmd, broker.port);
    let (child, base) = read_banner(cmd)?;
    let pid = child.id();
    let counted = async {
        let http = reqwest::Client::new();
        acked_reaches(&http, &base, warm).await?;
        super::instructions::control(pid, "-z")?;
        publish(broker.port, measured).await?;
        acked_reaches(&http, &base, warm + total).await?;
        super::instructions::control(pid, "-d")?;
        AppResult::Ok(super::instructions::dumped_total(&out)? as f64 / total.max(1) as f64)
    }
    .await;
    kill(child);
    remove_sqlite(&db)?;
    counted
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A single-threaded process that spends a few milliseconds is seen to: the broker's share of a
    /// small backlog is below the 10 ms tick of `/proc/<pid>/stat`.
    #[test]
    fn cpu_time_sees_milliseconds_of_a_single_threaded_process() {
        let mut child = std::process::Command::new("sh")
            .args(["-c", "i=0; while [ $i -lt 3000 ]; do i=$((i+1)); done; read line"])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .expect("sh");
        let pid = child.id();
        let mut spent = Duration::ZERO;
        for _ in 0..200 {
            std::thread::sleep(Duration::from_millis(10));
            spent = cpu_time(pid).expect("readable");
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
            if stat.contains(") S ") && spent > Duration::ZERO {
                break;
            }
        }
        drop(child.stdin.take());
        child.wait().expect("exits");
        assert!(spent > Duration::ZERO && !spent.subsec_nanos().is_multiple_of(10_000_000), "{spent:?}");
        assert!(cpu_time(std::process::id()).is_some());
    }
}
