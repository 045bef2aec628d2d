//! Smart components' devices and their telemetry: registering devices (administrators), issuing each
//! one an ingest token (`dvt_…`, shown once, only its SHA-256 kept), and taking payloads from any
//! transport — MQTT batches ([`Services::ingest_batch`]), `POST /api/v1/telemetry` ([`Services::ingest`])
//! — through one path, which parses, lets the rules follow, stores a whole batch in one transaction, and
//! counts what it refused by reason (`civicgrid_telemetry_rejected_total{reason}`), so a bad payload is a
//! counted, logged refusal and never a stalled pipeline. Devices are cached per node for half a minute.
//! History is kept raw for a month, in 5-minute summaries for about a year and in hourly ones for good
//! (the `telemetry.retention` job); the summaries of the hours reports touched are made by the minute's
//! sweep once each hour is over ([`Services::summarise_telemetry`]).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use civicgrid_core::access::{Actor, Channel, Role};
use civicgrid_core::iot::{
    Device, DeviceId, DeviceKind, Metric, Reading, Rejection, Rollup, RollupSpan, parse_payload,
};
use jiff::Timestamp;
use serde::Deserialize;
use utoipa::ToSchema;

use civicgrid_store::{DeviceReadings, TelemetryBatch};

use crate::accounts::{TtlCache, random_hex, require, sha256_hex};
use crate::{ServiceError, ServiceResult, Services};

/// The prefix of every device ingest token.
pub const TOKEN_PREFIX: &str = "dvt_";
/// Most readings a history answer carries.
pub const MAX_HISTORY: u32 = 10_000;
/// How long raw readings are kept.
pub const RAW_RETENTION: jiff::SignedDuration = jiff::SignedDuration::from_hours(31 * 24);
/// How long 5-minute summaries are kept (hourly ones are kept for good).
pub const FIVE_MINUTE_RETENTION: jiff::SignedDuration = jiff::SignedDuration::from_hours(400 * 24);
/// How long after an hour ends its summaries are made: readings of its last minutes arrive meanwhile.
/// (One that arrives later marks the hour again, to be summarised again.)
pub const SUMMARY_GRACE: jiff::SignedDuration = jiff::SignedDuration::from_mins(2);
/// The recurring job that applies the retention.
pub const RETENTION: &str = "telemetry.retention";

/// A device as an administrator registers it.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeviceInput {
    /// Its id on the broker.
    pub id: DeviceId,
    /// What it watches.
    pub kind: DeviceKind,
    /// Maker's model (1–64 characters).
    pub model: String,
    /// Firmware version (1–32 characters).
    pub firmware: String,
    /// The component it is attached to (17 digits).
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub component_id: Option<civicgrid_core::codes::ComponentId>,
    /// A street lamp's cabinet: a registered lamp-cabinet device.
    #[serde(default)]
    pub cabinet: Option<DeviceId>,
    /// A cabinet's feeder (1–64 characters).
    #[serde(default)]
    pub feeder: Option<String>,
    /// A people counter's checkpoint (1–64 characters).
    #[serde(default)]
    pub checkpoint: Option<String>,
    /// Where it stands (WGS84, inside the town's grids), for a device with no component to place it:
    /// a checkpoint is drawn at the middle of its people counters.
    #[serde(default)]
    pub location: Option<civicgrid_core::case::GeoPoint>,
    /// How often it reports, in seconds (10–86,400).
    pub expected_interval_s: u32,
    /// Retire it (its payloads are refused from then on).
    #[serde(default)]
    pub retired: bool,
}

/// How long this node trusts what it read of a device (a change made through another node is seen
/// within this time; one made through this node at once).
const DEVICE_TTL: Duration = Duration::from_secs(30);

/// What ingest keeps of devices on this node: each device as read (unknown ids too, so a stream of
/// them costs no database reads), and when each was last written as heard from, so a device reporting
/// every few seconds does not rewrite its row every time.
#[derive(Debug)]
pub(crate) struct DeviceCache {
    known: TtlCache<Option<Arc<Device>>>,
    written: Mutex<HashMap<DeviceId, Timestamp>>,
}

impl Default for DeviceCache {
    fn default() -> Self {
        Self { known: TtlCache::new(DEVICE_TTL, 200_000), written: Mutex::default() }
    }
}

impl DeviceCache {
    /// Whether `d`'s last-heard time is due to be written at `now`.
    fn heard_due(&self, d: &Device, now: Timestamp) -> bool {
        let lag = jiff::SignedDuration::from_secs(i64::from(d.expected_interval_s / 2))
            .min(civicgrid_core::iot::MAX_HEARD_LAG);
        let Ok(written) = self.written.lock() else { return true };
        written.get(&d.id).is_none_or(|&at| now.duration_since(at) >= lag)
    }

    /// Notes that these devices' last-heard time was written as `now`.
    fn heard(&self, devices: &[DeviceId], now: Timestamp) {
        if let Ok(mut written) = self.written.lock() {
            for d in devices {
                written.insert(d.clone(), now);
            }
        }
    }

    /// Forgets what was read of a device (it was changed).
    pub(crate) fn forget(&self, id: &DeviceId) {
        self.known.forget(id.as_str());
    }
}

/// Who may read devices and telemetry: the centre's posts that watch alarms, and the administrator.
pub(crate) fn may_read(actor: &Actor) -> ServiceResult<()> {
    if actor.role == Role::Admin { Ok(()) } else { require(actor, &crate::alarms::WATCHERS) }
}

fn optional_line(field: &str, value: Option<&str>) -> ServiceResult<Option<String>> {
    Ok(value.map(|v| civicgrid_core::text::line(field, v, 1, 64)).transpose()?)
}

impl Services {
    /// Registers a device, or replaces what is registered of it (administrators). A street lamp's
    /// cabinet must be a registered cabinet; the component, if named, must exist.
    pub async fn put_device(&self, actor: &Actor, d: DeviceInput) -> ServiceResult<Device> {
        require(actor, &[Role::Admin])?;
        let model = civicgrid_core::text::line("model", &d.model, 1, 64)?;
        let firmware = civicgrid_core::text::line("firmware", &d.firmware, 1, 32)?;
        if !(10..=86_400).contains(&d.expected_interval_s) {
            return Err(ServiceError::invalid("expected_interval_s", "10 to 86,400 seconds"));
        }
        if let Some(c) = d.component_id
            && self.store.component(c).await?.is_none()
        {
            return Err(ServiceError::invalid("component_id", format!("component {c} does not exist")));
        }
        match (&d.cabinet, d.kind) {
            (Some(_), kind) if kind != DeviceKind::StreetLamp => {
                return Err(ServiceError::invalid("cabinet", "only a street lamp belongs to a cabinet"));
            }
            (Some(cab), _) => {
                let found = self.store.device(cab).await?;
                if found.is_none_or(|c| c.kind != DeviceKind::LampCabinet) {
                    return Err(ServiceError::invalid("cabinet", format!("{cab} is not a registered lamp cabinet")));
                }
            }
            (None, _) => {}
        }
        if d.feeder.is_some() && d.kind != DeviceKind::LampCabinet {
            return Err(ServiceError::invalid("feeder", "only a lamp cabinet hangs on a feeder"));
        }
        if let Some(at) = d.location {
            self.world().place(at)?;
        }
        let now = self.clock.now();
        let earlier = self.store.device(&d.id).await?;
        let device = Device {
            id: d.id,
            kind: d.kind,
            model,
            firmware,
            component_id: d.component_id,
            cabinet: d.cabinet,
            feeder: optional_line("feeder", d.feeder.as_deref())?,
            checkpoint: optional_line("checkpoint", d.checkpoint.as_deref())?,
            location: d.location,
            expected_interval_s: d.expected_interval_s,
            created_at: earlier.as_ref().map_or(now, |e| e.created_at),
            retired_at: d.retired.then(|| earlier.as_ref().and_then(|e| e.retired_at).unwrap_or(now)),
            last_seen_at: earlier.and_then(|e| e.last_seen_at),
        };
        self.store.put_device(&device).await?;
        self.devices.forget(&device.id);
        tracing::info!(admin = actor.user_id, device = %device.id, kind = device.kind.as_str(), "device registered");
        Ok(device)
    }

    /// Every device (the centre's posts).
    pub async fn devices(&self, actor: &Actor) -> ServiceResult<Vec<Device>> {
        may_read(actor)?;
        Ok(self.store.devices().await?)
    }

    /// Issues a device a new ingest token, replacing its old one (administrators); shown this once.
    pub async fn issue_device_token(&self, actor: &Actor, id: &DeviceId) -> ServiceResult<String> {
        require(actor, &[Role::Admin])?;
        let token = format!("{TOKEN_PREFIX}{}", random_hex(24)?);
        if !self.store.set_device_token(id, &sha256_hex(token.as_bytes())).await? {
            return Err(ServiceError::NotFound("device"));
        }
        tracing::info!(admin = actor.user_id, device = %id, "device token issued");
        Ok(token)
    }

    /// The device an ingest token belongs to.
    pub async fn device_for_token(&self, token: &str) -> ServiceResult<Device> {
        if !token.starts_with(TOKEN_PREFIX) || token.len() > 100 {
            return Err(ServiceError::Unauthenticated);
        }
        self.store.device_by_token(&sha256_hex(token.as_bytes())).await?.ok_or(ServiceError::Unauthenticated)
    }

    /// The device a gateway (a service account of the IoT channel) names.
    pub async fn device_for_gateway(&self, actor: &Actor, id: &str) -> ServiceResult<Device> {
        if actor.role != Role::Integration || actor.channel != Some(Channel::IotGateway) {
            return Err(ServiceError::forbidden("only an IoT gateway's key pushes telemetry for a named device"));
        }
        let id: DeviceId = id.parse().map_err(|e: String| ServiceError::invalid("device", e))?;
        self.store.device(&id).await?.ok_or(ServiceError::NotFound("device"))
    }

    /// Takes a payload from `device` (by whatever transport it came): how many readings were stored
    /// (and followed by the rules), or the refusal, counted by reason and logged.
    pub async fn ingest(&self, device: &Device, payload: &[u8]) -> Result<usize, IngestError> {
        let mut taken = self.take(vec![Ok((Some(Arc::new(device.clone())), payload))]).await;
        taken.pop().unwrap_or_else(|| Err(IngestError::Store("nothing was taken".into())))
    }

    /// Takes a batch of messages, each for the device its topic names, in one transaction: for each
    /// message in order, how many readings were stored or why not. Unknown devices are refused and
    /// counted like any bad payload; a database failure leaves every message that was to be stored
    /// unstored (for the sender to send again) and refuses nothing that was good.
    pub async fn ingest_batch(&self, messages: &[(&str, &[u8])]) -> Vec<Result<usize, IngestError>> {
        let mut items = Vec::with_capacity(messages.len());
        for &(id, payload) in messages {
            let device = match id.parse::<DeviceId>() {
                Ok(id) => self.cached_device(&id).await.map_err(|e| IngestError::Store(e.to_string())),
                Err(_) => Ok(None),
            };
            items.push(device.map(|d| (d, payload)));
        }
        self.take(items).await
    }

    /// The device `id` names, from this node's cache (read from the store when missing or stale).
    async fn cached_device(&self, id: &DeviceId) -> Result<Option<Arc<Device>>, civicgrid_store::StoreError> {
        if let Some(known) = self.devices.known.get(id.as_str()) {
            return Ok(known);
        }
        let found = self.store.device(id).await?.map(Arc::new);
        self.devices.known.put(id.as_str().to_owned(), found.clone());
        Ok(found)
    }

    /// Parses, stores in one transaction, and hands to the rules: the one ingest path.
    async fn take(&self, items: Vec<Result<Arrived<'_>, IngestError>>) -> Vec<Result<usize, IngestError>> {
        let now = self.clock.now();
        // Each message's outcome: a refusal, or (for one to store) the number of its readings.
        let mut outcomes: Vec<Result<usize, IngestError>> = Vec::with_capacity(items.len());
        let mut by_device: BTreeMap<DeviceId, (Arc<Device>, Vec<Reading>)> = BTreeMap::new();
        for (i, item) in items.into_iter().enumerate() {
            // A reading without a time of its own takes the time it arrived, a microsecond apart per
            // message in arrival order, so that two such messages never merge into one report.
            let arrived = now + jiff::SignedDuration::from_micros(i as i64);
            let (device, payload) = match item {
                Ok(found) => found,
                Err(e) => {
                    outcomes.push(Err(e));
                    continue;
                }
            };
            let parsed = match &device {
                Some(d) if d.retired_at.is_none() => parse_payload(d.kind, payload, arrived).map(|r| (d.clone(), r)),
                _ => Err(Rejection::UnknownDevice),
            };
            match parsed {
                Ok((d, readings)) => {
                    outcomes.push(Ok(readings.len()));
                    by_device.entry(d.id.clone()).or_insert_with(|| (d, Vec::new())).1.extend(readings);
                }
                Err(why) => {
                    refused(device.as_deref().map(|d| &d.id), &why);
                    outcomes.push(Err(IngestError::Refused(why)));
                }
            }
        }
        if by_device.is_empty() {
            return outcomes;
        }
        let mut batch: Vec<(Arc<Device>, Vec<Reading>)> = by_device.into_values().collect();
        // The rules follow the readings before they are stored, so that what they remember is
        // committed with the readings it came from; what they find is acted on after the commit. The
        // turn keeps another follower (this node's or another's) from following the same devices
        // from the same memory meanwhile.
        let turn = match self.rules_turn().await {
            Ok(turn) => turn,
            Err(e) => return not_stored(outcomes, &e.to_string()),
        };
        let followed = self.follow_rules(&mut batch).await;
        let heard: Vec<DeviceId> =
            batch.iter().filter(|(d, _)| self.devices.heard_due(d, now)).map(|(d, _)| d.id.clone()).collect();
        let readings: usize = batch.iter().map(|(_, r)| r.len()).sum();
        let (changes, rule_states) = followed.unwrap_or_default();
        let record = TelemetryBatch {
            readings: batch
                .into_iter()
                .map(|(d, readings)| DeviceReadings { device: d.id.clone(), readings })
                .collect(),
            heard,
            heard_at: now,
            rule_states,
        };
        if let Err(e) = self.store.record_telemetry(&record).await {
            return not_stored(outcomes, &e.to_string());
        }
        self.devices.heard(&record.heard, now);
        self.remember(&record.rule_states);
        drop(turn);
        metrics::counter!("civicgrid_telemetry_readings_total").increment(readings as u64);
        // The readings are stored: an alarm that cannot be raised now is logged and counted, never a
        // reason to have them sent again.
        self.act_on(changes).await;
        outcomes
    }

    /// A device's latest value of each metric (the centre's posts).
    pub async fn latest_readings(&self, actor: &Actor, id: &DeviceId) -> ServiceResult<Vec<Reading>> {
        may_read(actor)?;
        self.store.device(id).await?.ok_or(ServiceError::NotFound("device"))?;
        Ok(self.store.latest_readings(id).await?)
    }

    /// Checks a read of a device's history: a post that may read it, a window of at most `days` days,
    /// a registered device.
    async fn check_history(
        &self,
        actor: &Actor,
        id: &DeviceId,
        from: Timestamp,
        to: Timestamp,
        days: i64,
    ) -> ServiceResult<()> {
        may_read(actor)?;
        if from >= to || to.duration_since(from) > jiff::SignedDuration::from_hours(days * 24) {
            return Err(ServiceError::invalid("from", format!("before `to`, at most {days} days before it")));
        }
        self.store.device(id).await?.ok_or(ServiceError::NotFound("device"))?;
        Ok(())
    }

    /// A metric's summaries over `span` in `from..to` (5-minute ones over at most 31 days, hourly ones over
    /// at most 366), oldest first.
    pub async fn device_rollups(
        &self,
        actor: &Actor,
        id: &DeviceId,
        metric: Metric,
        span: RollupSpan,
        from: Timestamp,
        to: Timestamp,
    ) -> ServiceResult<Vec<Rollup>> {
        let days = match span {
            RollupSpan::FiveMinutes => 31,
            RollupSpan::Hour => 366,
        };
        self.check_history(actor, id, from, to, days).await?;
        Ok(self.store.rollups(id, metric, span, from, to, MAX_HISTORY).await?)
    }

    /// Makes the summaries of every (device, hour) that reports touched since they were last made,
    /// once the hour is over (the minute's IoT sweep does this first); how many were made.
    ///
    /// An hour still running is left: a summary asked for is made from its reports on the fly
    /// ([`civicgrid_store::DeviceStore::rollups`]), so storing it each minute would only read the
    /// hour's reports over and over. One pass in (hour, device) order, a hundred pairs a transaction
    /// (so that ingest waits for the write lock a few milliseconds at a time): a pair that reports
    /// touch again meanwhile (a backlog of old readings draining) waits for the next pass instead of
    /// being summarised again and again in this one. At most 20,000 pairs a pass, well within the
    /// sweep's lease; the rest are the next minute's.
    pub async fn summarise_telemetry(&self) -> ServiceResult<u64> {
        const PER_TRANSACTION: u32 = 100;
        const TRANSACTIONS: u32 = 200;
        let ended_by = self.clock.now() - SUMMARY_GRACE;
        let mut done = 0u64;
        let mut after = None;
        for _ in 0..TRANSACTIONS {
            let (n, last) = self.store.summarise_telemetry(ended_by, after.as_ref(), PER_TRANSACTION).await?;
            done += u64::from(n);
            if n < PER_TRANSACTION {
                break;
            }
            after = last;
        }
        Ok(done)
    }

    /// Forgets raw readings after [`RAW_RETENTION`] and 5-minute summaries after
    /// [`FIVE_MINUTE_RETENTION`]; hourly summaries are kept (the retention job).
    pub async fn purge_telemetry(&self) -> ServiceResult<u64> {
        // Hours still pending are summarised first, while their reports are there to be read.
        self.summarise_telemetry().await?;
        let now = self.clock.now();
        Ok(self.store.purge_telemetry(now - RAW_RETENTION, now - FIVE_MINUTE_RETENTION).await?)
    }

    /// A metric's readings in `from..to` (at most 31 days, [`MAX_HISTORY`] readings), oldest first.
    pub async fn device_readings(
        &self,
        actor: &Actor,
        id: &DeviceId,
        metric: Metric,
        from: Timestamp,
        to: Timestamp,
    ) -> ServiceResult<Vec<Reading>> {
        self.check_history(actor, id, from, to, 31).await?;
        Ok(self.store.readings(id, metric, from, to, MAX_HISTORY).await?)
    }
}

/// A message as ingest takes it: the device it is from (none: unknown) and its payload.
type Arrived<'a> = (Option<Arc<Device>>, &'a [u8]);

/// The outcomes of a batch the store did not take: every message that was to be stored is left
/// unstored, for its sender to send again; refusals stay refusals.
fn not_stored(mut outcomes: Vec<Result<usize, IngestError>>, detail: &str) -> Vec<Result<usize, IngestError>> {
    for outcome in outcomes.iter_mut().filter(|o| o.is_ok()) {
        *outcome = Err(IngestError::Store(detail.to_owned()));
    }
    outcomes
}

/// Counts and logs a refused payload.
fn refused(device: Option<&DeviceId>, why: &Rejection) {
    metrics::counter!("civicgrid_telemetry_rejected_total", "reason" => why.reason()).increment(1);
    tracing::warn!(device = device.map(DeviceId::as_str), reason = why.reason(), detail = %why, "telemetry refused");
}

/// Why a payload was not taken.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// Refused (counted under its reason); the sender should not send it again.
    #[error(transparent)]
    Refused(Rejection),
    /// Not stored (the database failed); the sender should send it again.
    #[error("not stored: {0}")]
    Store(String),
}
