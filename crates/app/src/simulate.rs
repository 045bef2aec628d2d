//! `civicgrid simulate`: publishes the telemetry the demo town's devices would send to an MQTT broker,
//! in real time (each device every `--every` seconds, stamped now), for `--seconds`; with a progress bar.
//! `civicgrid demo` feeds the same readings in-process when no broker is configured ([`feed`]).

use std::sync::Arc;
use std::time::Duration;

use civicgrid_core::iot::Device;
use civicgrid_store::Store;
use indicatif::{ProgressBar, ProgressStyle};
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
    options.set_keep_alive(Duration::from_secs(30));
    let (client, mut events) = AsyncClient::new(options, devices.len() + 100);
    let rounds = args.seconds.div_ceil(args.every);
    let total = rounds * devices.len() as u64;
    // Polls the connection (it sends what is queued) until the broker has acknowledged every message.
    let acks = tokio::spawn(async move {
        let mut acked = 0u64;
        while acked < total {
            match events.poll().await {
                Ok(Event::Incoming(Packet::PubAck(_))) => acked += 1,
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "broker connection lost; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
        acked
    });
    let bar = ProgressBar::new(total).with_message("发布遥测 telemetry");
    bar.set_style(
        ProgressStyle::with_template("{spinner} {msg} [{bar:40}] {pos}/{len} ({per_sec}, ETA {eta})")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut rng = fastrand::Rng::new();
    let mut tick = tokio::time::interval(Duration::from_secs(args.every));
    for _ in 0..rounds {
        tick.tick().await;
        let now = jiff::Timestamp::now();
        for d in &devices {
            let topic = format!("{}{}/telemetry", civicgrid_ingest::TOPIC_PREFIX, d.id);
            let body = civicgrid_demo::devices::payload(d, now, rng.f64());
            client.publish(topic, QoS::AtLeastOnce, false, body).await.map_err(|e| e.to_string())?;
            bar.inc(1);
        }
    }
    bar.finish_with_message("发布完成 published");
    let acked =
        tokio::time::timeout(Duration::from_secs(60), acks).await.map_err(|_| "the broker did not answer")??;
    let _ = client.disconnect().await;
    println!("{acked} messages acknowledged by {}:{} for {} devices", broker.host, broker.port, devices.len());
    Ok(())
}

/// Feeds the devices' telemetry into `services` in-process, each device every `every` (the demo without
/// a broker), until the task is stopped.
pub fn feed(
    services: civicgrid_service::Services,
    store: Arc<dyn Store>,
    every: Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut rng = fastrand::Rng::new();
        let mut tick = tokio::time::interval(every);
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
            for d in devices.iter().filter(|d| d.retired_at.is_none()) {
                let body = civicgrid_demo::devices::payload(d, now, rng.f64());
                if let Err(e) = services.ingest(d, body.as_bytes()).await {
                    tracing::debug!(device = %d.id, error = %e, "simulated telemetry refused");
                }
            }
        }
    })
}
