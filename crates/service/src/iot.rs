//! Smart components' devices and their telemetry: registering devices (administrators), issuing each
//! one an ingest token (`dvt_…`, shown once, only its SHA-256 kept), and taking payloads from any
//! transport — MQTT, `POST /api/v1/telemetry` — through one function, [`Services::ingest`], which
//! parses, stores in one transaction, and counts what it refused by reason
//! (`civicgrid_telemetry_rejected_total{reason}`), so a bad payload is a counted, logged refusal and never
//! a stalled pipeline. History is kept raw for a month, in 5-minute summaries for about a year and in
//! hourly ones for good (the `telemetry.retention` job).

use civicgrid_core::access::{Actor, Channel, Role};
use civicgrid_core::iot::{
    Device, DeviceId, DeviceKind, Metric, Reading, Rejection, Rollup, RollupSpan, parse_payload,
};
use jiff::Timestamp;
use serde::Deserialize;
use utoipa::ToSchema;

use crate::accounts::{random_hex, require, sha256_hex};
use crate::{ServiceError, ServiceResult, Services};

/// The prefix of every device ingest token.
pub const TOKEN_PREFIX: &str = "dvt_";
/// Most readings a history answer carries.
pub const MAX_HISTORY: u32 = 10_000;
/// How long raw readings are kept.
pub const RAW_RETENTION: jiff::SignedDuration = jiff::SignedDuration::from_hours(31 * 24);
/// How long 5-minute summaries are kept (hourly ones are kept for good).
pub const FIVE_MINUTE_RETENTION: jiff::SignedDuration = jiff::SignedDuration::from_hours(400 * 24);
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
    /// How often it reports, in seconds (10–86,400).
    pub expected_interval_s: u32,
    /// Retire it (its payloads are refused from then on).
    #[serde(default)]
    pub retired: bool,
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
            expected_interval_s: d.expected_interval_s,
            created_at: earlier.as_ref().map_or(now, |e| e.created_at),
            retired_at: d.retired.then(|| earlier.as_ref().and_then(|e| e.retired_at).unwrap_or(now)),
            last_seen_at: earlier.and_then(|e| e.last_seen_at),
        };
        self.store.put_device(&device).await?;
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

    /// Takes a payload from `device` (by whatever transport it came): the readings stored (and
    /// followed by the rules), or the refusal, counted by reason and logged.
    pub async fn ingest(&self, device: &Device, payload: &[u8]) -> Result<Vec<Reading>, IngestError> {
        let now = self.clock.now();
        let parsed = if device.retired_at.is_some() {
            Err(Rejection::UnknownDevice)
        } else {
            parse_payload(device.kind, payload, now)
        };
        let readings = match parsed {
            Ok(r) => r,
            Err(why) => {
                refused(Some(&device.id), &why);
                return Err(IngestError::Refused(why));
            }
        };
        self.store.record_readings(&device.id, &readings, now).await.map_err(|e| IngestError::Store(e.to_string()))?;
        metrics::counter!("civicgrid_telemetry_readings_total").increment(readings.len() as u64);
        // The readings are stored: a rule that cannot run now is logged and counted, never a reason to
        // have them sent again.
        if let Err(e) = self.evaluate(device, &readings).await {
            metrics::counter!("civicgrid_rule_failures_total").increment(1);
            tracing::error!(device = %device.id, error = %e, "rules could not follow these readings");
        }
        Ok(readings)
    }

    /// Takes a payload for the device named `id` (the MQTT topic's): unknown devices are refused and
    /// counted like any bad payload.
    pub async fn ingest_for(&self, id: &str, payload: &[u8]) -> Result<Vec<Reading>, IngestError> {
        let device = match id.parse::<DeviceId>() {
            Ok(id) => self.store.device(&id).await.map_err(|e| IngestError::Store(e.to_string()))?,
            Err(_) => None,
        };
        match device {
            Some(d) => self.ingest(&d, payload).await,
            None => {
                refused(None, &Rejection::UnknownDevice);
                Err(IngestError::Refused(Rejection::UnknownDevice))
            }
        }
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

    /// Forgets raw readings after [`RAW_RETENTION`] and 5-minute summaries after
    /// [`FIVE_MINUTE_RETENTION`]; hourly summaries are kept (the retention job).
    pub async fn purge_telemetry(&self) -> ServiceResult<u64> {
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
