//! `civicgrid simulate`: publishes the telemetry the demo town's devices would send to an MQTT broker,
//! in real time (each device every `--every` seconds, stamped now), for `--seconds`; with a progress bar.
//! `civicgrid demo` feeds the same readings in-process when no broker is configured ([`feed`]).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use civicgrid_core::iot::{Device, DeviceId, DeviceKind, MAX_BATCH, MAX_PAYLOAD};
use civicgrid_ingest::connection::MAX_PACKET;
use civicgrid_store::Store;
use indicatif::{ProgressBar, ProgressStyle};
use jiff::Timestamp;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};

use crate::AppResult;
use crate::config::Config;

/// What to simulate.
#[derive(Debug, clap::Args)]
pub struct SimulateArgs {
    /// SQLite path or postgres:// URL holding the devices (`civicgrid demo` registers the demo town's).
    #[arg(long)]
    database: Option<String>,
    /// The broker to publish to.
    #[arg(long, default_value = "mqtt://127.0.0.1:1883")]
    mqtt: String,
    /// How long to run, in seconds.
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    /// Seconds between one device's readings (instead of its own reporting interval, to see more).
    #[arg(long, default_value_t = 10)]
    every: u64,
}

/// Runs `civicgrid simulate`.
pub async fn run(args: SimulateArgs, cfg: Config) -> AppResult<()> {
    if args.every == 0 || args.seconds == 0 {
        return Err("--seconds and --every must be at least 1".into());
    }
    let store =
        civicgrid_store::open_with(args.database.as_deref().unwrap_or(&cfg.database), cfg.store_options()).await?;
    let devices: Vec<Device> = store.devices().await?.into_iter().filter(|d| d.retired_at.is_none()).collect();
    if devices.is_empty() {
        return Err("no devices registered: run `civicgrid demo` first, or register some".into());
    }
    let broker = civicgrid_ingest::MqttConfig::from_url(&args.mqtt, "civicgrid-simulator", None)?;
    let suffix = civicgrid_service::accounts::random_hex(4).unwrap_or_default();
    let mut options = MqttOptions::new(format!("civicgrid-simulator-{suffix}"), &broker.host, broker.port);
    // A body may be as large as ingest takes (a counter catching up since midnight sends batches of
    // tens of KiB); rumqttc refuses to send packets above 10 KiB by default.
    options.set_keep_alive(Duration::from_secs(30)).set_max_packet_size(MAX_PACKET, MAX_PACKET);
    let (client, mut events) = AsyncClient::new(options, devices.len() + 100);
    let rounds = args.seconds.div_ceil(args.every);
    let total = rounds * devices.len() as u64;
    // How many messages were published, once all are: until then, more acknowledgements are awaited.
    let published = Arc::new(std::sync::atomic::AtomicU64::new(u64::MAX));
    let finished = Arc::new(tokio::sync::Notify::new());
    // Polls the connection (it sends what is queued) until the broker has acknowledged every message.
    let acks = tokio::spawn({
        let (published, finished) = (published.clone(), finished.clone());
        async move {
            let mut acked = 0u64;
            while acked < published.load(std::sync::atomic::Ordering::Acquire) {
                tokio::select! {
                    event = events.poll() => match event {
                        Ok(Event::Incoming(Packet::PubAck(_))) => acked += 1,
                        Ok(_) => {}
                        Err(e) => {
                            tracing::warn!(error = %e, "broker connection lost; retrying");
                            tokio::time::sleep(Duration::from_secs(1)).await;
                        }
                    },
                    () = finished.notified() => {}
                }
            }
            acked
        }
    });
    let bar = ProgressBar::new(total).with_message("发布遥测 telemetry");
    bar.set_style(
        ProgressStyle::with_template("{spinner} {msg} [{bar:40}] {pos}/{len} ({per_sec}, ETA {eta})")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut rng = fastrand::Rng::new();
    let mut counted = HashMap::new();
    let mut sent = 0u64;
    let mut tick = tokio::time::interval(Duration::from_secs(args.every));
    for _ in 0..rounds {
        tick.tick().await;
        let now = jiff::Timestamp::now();
        for d in &devices {
            let topic = format!("{}{}/telemetry", civicgrid_ingest::TOPIC_PREFIX, d.id);
            bar.inc(1);
            for body in bodies(due_payloads(d, now, &mut counted, &mut rng)) {
                client.publish(&topic, QoS::AtLeastOnce, false, body).await.map_err(|e| e.to_string())?;
                sent += 1;
            }
        }
    }
    bar.finish_with_message("发布完成 published");
    published.store(sent, std::sync::atomic::Ordering::Release);
    finished.notify_one();
    let acked =
        tokio::time::timeout(Duration::from_secs(60), acks).await.map_err(|_| "the broker did not answer")??;
    let _ = client.disconnect().await;
    println!("{acked} messages acknowledged by {}:{} for {} devices", broker.host, broker.port, devices.len());
    Ok(())
}

/// Feeds the devices' telemetry into `services` in-process, each device every `every` (the demo without
/// a broker), until the task is stopped. People counters count what passed in their own reporting
/// interval, so they report once per interval (aligned to it) and, on start, for each interval since
/// local midnight that has none yet: the big screen's flow of the day is whole from the first look.
pub fn feed(
    services: civicgrid_service::Services,
    store: Arc<dyn Store>,
    every: Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut rng = fastrand::Rng::new();
        let mut tick = tokio::time::interval(every);
        // The interval slot each counter last reported for; none yet means since midnight.
        let mut counted: HashMap<DeviceId, i64> = HashMap::new();
        loop {
            tick.tick().await;
            let devices = match store.devices().await {
                Ok(d) => d,
                Err(e) => {
                    tracing::warn!(error = %e, "simulated telemetry: devices not read");
                    continue;
                }
            };
            let now = jiff::Timestamp::now();
            let mut messages: Vec<(String, String)> = Vec::new();
            for d in devices.iter().filter(|d| d.retired_at.is_none()) {
                for p in due_payloads(d, now, &mut counted, &mut rng) {
                    messages.push((d.id.to_string(), p));
                }
            }
            // In batches, as the MQTT path stores them.
            for chunk in messages.chunks(civicgrid_ingest::MAX_BATCH) {
                let batch: Vec<(&str, &[u8])> = chunk.iter().map(|(d, p)| (d.as_str(), p.as_bytes())).collect();
                for (result, (device, _)) in services.ingest_batch(&batch).await.into_iter().zip(chunk) {
                    if let Err(e) = result {
                        tracing::debug!(device = %device, error = %e, "simulated telemetry refused");
                    }
                }
            }
        }
    })
}

/// The message bodies that carry `payloads` (single readings' JSON): one alone as it is, several (a
/// counter catching up) as batches of at most [`MAX_BATCH`] readings and [`MAX_PAYLOAD`] bytes, the
/// limits ingest takes.
fn bodies(payloads: Vec<String>) -> Vec<String> {
    if payloads.len() <= 1 {
        return payloads;
    }
    let mut out = Vec::new();
    let mut body = String::from("[");
    let mut count = 0;
    for p in payloads {
        // The comma (or the opening bracket) and the closing bracket.
        if count > 0 && (count == MAX_BATCH || body.len() + p.len() + 2 > MAX_PAYLOAD) {
            body.push(']');
            out.push(std::mem::replace(&mut body, String::from("[")));
            count = 0;
        }
        if count > 0 {
            body.push(',');
        }
        body.push_str(&p);
        count += 1;
    }
    body.push(']');
    out.push(body);
    out
}

/// What `d` has to report at `now`, one payload per reading: the reading of the moment, or for a
/// people counter (whose flow is per interval) each of its intervals passed since it last reported.
fn due_payloads(
    d: &Device,
    now: Timestamp,
    counted: &mut HashMap<DeviceId, i64>,
    rng: &mut fastrand::Rng,
) -> Vec<String> {
    if d.kind == DeviceKind::PeopleCounter {
        counter_slots(d, now, counted)
            .into_iter()
            .map(|at| civicgrid_demo::devices::payload(d, at, rng.f64()))
            .collect()
    } else {
        vec![civicgrid_demo::devices::payload(d, now, rng.f64())]
    }
}

/// The starts of `counter`'s reporting intervals still to report at `now`: those passed since the last
/// one it reported for, or on the first call since local midnight (at least the one just passed).
fn counter_slots(counter: &Device, now: Timestamp, counted: &mut HashMap<DeviceId, i64>) -> Vec<Timestamp> {
    let interval = i64::from(counter.expected_interval_s.max(60));
    // The slot under way is reported once it has passed.
    let under_way = now.as_second().div_euclid(interval);
    let midnight = civicgrid_core::calendar::from_local(civicgrid_core::calendar::local(now).date().into());
    // On the first call, since midnight, and at least the interval just passed (so a counter is heard at once).
    let since_midnight = midnight.as_second().div_euclid(interval).min(under_way - 1);
    let first = counted.get(&counter.id).map_or(since_midnight, |last| last + 1);
    if first < under_way {
        counted.insert(counter.id.clone(), under_way - 1);
    }
    (first..under_way).filter_map(|n| Timestamp::from_second(n * interval).ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A people counter reporting every five minutes.
    fn people_counter() -> Device {
        Device {
            id: "pc-01".parse().expect("id"),
            kind: DeviceKind::PeopleCounter,
            model: "PC-3D".into(),
            firmware: "1".into(),
            component_id: None,
            cabinet: None,
            feeder: None,
            checkpoint: Some("客运站".into()),
            location: None,
            expected_interval_s: 300,
            created_at: Timestamp::UNIX_EPOCH,
            retired_at: None,
            last_seen_at: None,
        }
    }

    /// A counter catching up on a whole day: every batch is within what ingest takes, and together
    /// they carry every reading once. The simulator once sent this as one 10.6 KiB batch that its MQTT
    /// client refused to send (late in the day only).
    #[test]
    fn a_day_of_counts_goes_in_batches_ingest_takes() {
        let counter = Device { expected_interval_s: 60, ..people_counter() };
        let at_night: Timestamp = "2026-11-24T15:58:30Z".parse().expect("time"); // 23:58:30 local
        let slots = counter_slots(&counter, at_night, &mut HashMap::new());
        assert_eq!(slots.len(), 24 * 60 - 2, "every minute since midnight but the one under way");
        let mut rng = fastrand::Rng::with_seed(7);
        let payloads: Vec<String> =
            slots.iter().map(|at| civicgrid_demo::devices::payload(&counter, *at, rng.f64())).collect();
        let sent = bodies(payloads);
        assert!(sent.len() >= 3, "{} readings make several batches", slots.len());
        let mut readings = 0;
        for body in &sent {
            assert!(body.len() <= MAX_PAYLOAD && body.len() + 100 < MAX_PACKET, "{} bytes", body.len());
            let parsed = civicgrid_core::iot::parse_payload(DeviceKind::PeopleCounter, body.as_bytes(), at_night)
                .expect("ingest takes the batch");
            readings += parsed.len();
        }
        assert_eq!(readings, slots.len() * 2, "in and out counts of every slot, once");
        // Large readings split by size before the count limit.
        let big = vec![format!(r#"{{"values":{{"count_in":1}},"ts":"{}"}}"#, "x".repeat(1000)); 200];
        let sent = bodies(big);
        assert!(sent.len() >= 4 && sent.iter().all(|b| b.len() <= MAX_PAYLOAD));
        let total: usize =
            sent.iter().map(|b| serde_json::from_str::<Vec<serde_json::Value>>(b).expect("a JSON list").len()).sum();
        assert_eq!(total, 200);
        assert_eq!(bodies(vec!["{}".into()]), vec!["{}".to_owned()], "one reading goes alone");
    }

    #[test]
    fn a_counter_reports_each_passed_interval_once_from_local_midnight() {
        let counter = people_counter();
        let mut counted = HashMap::new();
        // 01:02:30 local: the twelve five-minute intervals of the first hour have passed, and 01:00–01:05 has not.
        let now: Timestamp = "2026-11-23T17:02:30Z".parse().expect("time");
        let first = counter_slots(&counter, now, &mut counted);
        assert_eq!(first.len(), 12);
        assert_eq!(first[0], "2026-11-23T16:00:00Z".parse::<Timestamp>().expect("local midnight"));
        assert_eq!(first[11], "2026-11-23T16:55:00Z".parse::<Timestamp>().expect("00:55"));
        // Half a minute later nothing new has passed; at 01:05:10 the interval from 01:00 has.
        assert!(counter_slots(&counter, now + jiff::SignedDuration::from_secs(30), &mut counted).is_empty());
        let next = counter_slots(&counter, "2026-11-23T17:05:10Z".parse().expect("time"), &mut counted);
        assert_eq!(next, ["2026-11-23T17:00:00Z".parse::<Timestamp>().expect("01:00")]);
        // Just after midnight, the first call still reports the interval that ended it.
        let mut fresh = HashMap::new();
        let late = counter_slots(&counter, "2026-11-23T16:01:00Z".parse().expect("00:01 local"), &mut fresh);
        assert_eq!(late, ["2026-11-23T15:55:00Z".parse::<Timestamp>().expect("23:55")]);
    }
}
