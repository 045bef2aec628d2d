//! Devices and telemetry over HTTP: administrators register devices and issue their ingest tokens;
//! the centre's posts read the latest values and the history; devices (with their token) and IoT
//! gateways (with a service account's key, naming the device) push payloads to `/api/v1/telemetry`,
//! the same ingest the MQTT subscriber uses; the posts on duty read and acknowledge alarms and the
//! people flow, administrators set the rules. Thin: parse, call the service layer, answer.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::header::AUTHORIZATION;
use axum::http::{HeaderMap, StatusCode};
use civicgrid_core::alarm::{Alarm, RuleSet, Subject};
use civicgrid_core::iot::{Device, DeviceId, Metric, Reading, Rollup, RollupSpan};
use civicgrid_service::alarms::CheckpointFlow;
use civicgrid_service::iot::{DeviceInput, IngestError};
use civicgrid_store::AlarmFilter;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::auth::Authed;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{ApiJson, ApiQuery};
use crate::state::AppState;

fn device_id(raw: &str) -> ApiResult<DeviceId> {
    raw.parse().map_err(|e: String| ApiError::invalid("id", e))
}

/// Register a device, or replace what is registered of it (administrators).
#[utoipa::path(post, path = "/api/v1/devices", tag = "iot", request_body = DeviceInput,
    responses((status = 200, body = Device), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 413, body = ErrorBody), (status = 415, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub async fn put_device(
    State(state): State<AppState>,
    Authed(actor): Authed,
    ApiJson(input): ApiJson<DeviceInput>,
) -> ApiResult<Json<Device>> {
    Ok(Json(state.services.put_device(&actor, input).await?))
}

/// Every device, with when it was last heard from.
#[utoipa::path(get, path = "/api/v1/devices", tag = "iot",
    responses((status = 200, body = [Device]), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn devices(State(state): State<AppState>, Authed(actor): Authed) -> ApiResult<Json<Vec<Device>>> {
    Ok(Json(state.services.devices(&actor).await?))
}

/// A device's new ingest token, shown this once (administrators); the old one stops working.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeviceToken {
    /// Send it as `Authorization: Bearer <token>` to `/api/v1/telemetry`, or as the MQTT password.
    pub token: String,
}

/// Issue a device a new ingest token (administrators).
#[utoipa::path(post, path = "/api/v1/devices/{id}/token", tag = "iot", params(("id" = String, Path, description = "device id")),
    responses((status = 201, body = DeviceToken), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn issue_token(
    State(state): State<AppState>,
    Authed(actor): Authed,
    Path(id): Path<String>,
) -> ApiResult<(StatusCode, Json<DeviceToken>)> {
    let token = state.services.issue_device_token(&actor, &device_id(&id)?).await?;
    Ok((StatusCode::CREATED, Json(DeviceToken { token })))
}

/// A device's latest value of each metric.
#[utoipa::path(get, path = "/api/v1/devices/{id}/latest", tag = "iot", params(("id" = String, Path, description = "device id")),
    responses((status = 200, body = [Reading]), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn latest(
    State(state): State<AppState>,
    Authed(actor): Authed,
    Path(id): Path<String>,
) -> ApiResult<Json<Vec<Reading>>> {
    Ok(Json(state.services.latest_readings(&actor, &device_id(&id)?).await?))
}

/// Which readings to read.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ReadingsQuery {
    /// The metric, e.g. `pressure_mpa`.
    #[param(value_type = String)]
    pub metric: Metric,
    /// From (inclusive), ISO 8601 with offset.
    #[param(value_type = String)]
    pub from: Timestamp,
    /// To (exclusive), at most 31 days after `from`.
    #[param(value_type = String)]
    pub to: Timestamp,
}

/// A metric's readings in a time range, oldest first (at most 10,000).
#[utoipa::path(get, path = "/api/v1/devices/{id}/readings", tag = "iot",
    params(("id" = String, Path, description = "device id"), ReadingsQuery),
    responses((status = 200, body = [Reading]), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn readings(
    State(state): State<AppState>,
    Authed(actor): Authed,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<ReadingsQuery>,
) -> ApiResult<Json<Vec<Reading>>> {
    let id = device_id(&id)?;
    Ok(Json(state.services.device_readings(&actor, &id, q.metric, q.from, q.to).await?))
}

/// Which summaries to read.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct RollupsQuery {
    /// The metric, e.g. `pressure_mpa`.
    #[param(value_type = String)]
    pub metric: Metric,
    /// `5m` (over at most 31 days) or `1h` (over at most 366).
    #[param(value_type = String)]
    pub every: RollupSpan,
    /// From (inclusive), ISO 8601 with offset.
    #[param(value_type = String)]
    pub from: Timestamp,
    /// To (exclusive).
    #[param(value_type = String)]
    pub to: Timestamp,
}

/// A metric's 5-minute or hourly summaries (count, mean, min, max), oldest first: the history beyond
/// the month raw readings are kept.
#[utoipa::path(get, path = "/api/v1/devices/{id}/rollups", tag = "iot",
    params(("id" = String, Path, description = "device id"), RollupsQuery),
    responses((status = 200, body = [Rollup]), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn rollups(
    State(state): State<AppState>,
    Authed(actor): Authed,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<RollupsQuery>,
) -> ApiResult<Json<Vec<Rollup>>> {
    let id = device_id(&id)?;
    Ok(Json(state.services.device_rollups(&actor, &id, q.metric, q.every, q.from, q.to).await?))
}

/// Which device a gateway pushes for.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct TelemetryQuery {
    /// The device, when a gateway's key (not the device's own token) authenticates.
    #[serde(default)]
    pub device: Option<String>,
}

/// What was stored.
#[derive(Debug, Serialize, ToSchema)]
pub struct Stored {
    /// Readings stored.
    pub stored: usize,
}

/// Push telemetry: one reading `{"ts": …, "values": {…}}`, or a batch of them (an array, or
/// `{"readings": […]}`), at most 64 KiB. Authenticated by the device's own token, or by an IoT
/// gateway's service-account key with `?device=<id>`. A refused payload is counted by reason
/// (`civicgrid_telemetry_rejected_total`) and stores nothing.
#[utoipa::path(post, path = "/api/v1/telemetry", tag = "iot", params(TelemetryQuery),
    request_body(content = Object, content_type = "application/json"),
    responses((status = 200, body = Stored, description = "stored"), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody, description = "no valid device token or gateway key"),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody, description = "the gateway named no such device"),
        (status = 413, body = ErrorBody), (status = 422, body = ErrorBody, description = "refused, with the reason"),
        (status = 503, body = ErrorBody, description = "not stored; send it again")))]
pub async fn telemetry(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<TelemetryQuery>,
    body: Bytes,
) -> ApiResult<Json<Stored>> {
    let token = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .ok_or_else(ApiError::unauthenticated)?;
    let device = if token.starts_with(civicgrid_service::iot::TOKEN_PREFIX) {
        state.services.device_for_token(token).await?
    } else {
        let actor = state.services.api_key_actor(token).await.map_err(|_| ApiError::unauthenticated())?;
        let id = q.device.as_deref().ok_or_else(|| ApiError::invalid("device", "a gateway names the device"))?;
        state.services.device_for_gateway(&actor, id).await?
    };
    match state.services.ingest(&device, &body).await {
        Ok(stored) => Ok(Json(Stored { stored })),
        Err(IngestError::Refused(why)) => Err(ApiError::invalid("payload", why.to_string())),
        Err(IngestError::Store(detail)) => {
            tracing::error!(error = %detail, "telemetry not stored");
            Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "not_stored", "not stored; send it again"))
        }
    }
}

/// Which alarms to list.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AlarmsQuery {
    /// Only those not yet ended (default true).
    #[serde(default)]
    pub open: Option<bool>,
    /// Only those whose fault is present now.
    #[serde(default)]
    pub active: Option<bool>,
    /// Only those of one subject: `component:<id>`, `device:<id>` or `checkpoint:<name>`.
    #[serde(default)]
    #[param(value_type = Option<String>)]
    pub subject: Option<Subject>,
    /// Only those linked to one case.
    #[serde(default)]
    pub case_id: Option<i64>,
    /// At most this many (1–500, default 100).
    #[serde(default)]
    pub limit: Option<u32>,
}

/// Alarms, newest raising first (the centre's posts).
#[utoipa::path(get, path = "/api/v1/alarms", tag = "iot", params(AlarmsQuery),
    responses((status = 200, body = [Alarm]), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody)))]
pub async fn alarms(
    State(state): State<AppState>,
    Authed(actor): Authed,
    ApiQuery(q): ApiQuery<AlarmsQuery>,
) -> ApiResult<Json<Vec<Alarm>>> {
    let filter = AlarmFilter {
        open_only: q.open.unwrap_or(true),
        active_only: q.active.unwrap_or(false),
        subject: q.subject,
        case_id: q.case_id,
        suppressed_by: None,
        limit: q.limit.unwrap_or(100),
    };
    Ok(Json(state.services.alarms(&actor, filter).await?))
}

/// One alarm, with its evidence.
#[utoipa::path(get, path = "/api/v1/alarms/{id}", tag = "iot", params(("id" = i64, Path, description = "alarm id")),
    responses((status = 200, body = Alarm), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn alarm(
    State(state): State<AppState>,
    Authed(actor): Authed,
    Path(id): Path<i64>,
) -> ApiResult<Json<Alarm>> {
    Ok(Json(state.services.alarm(&actor, id).await?))
}

/// Acknowledge an alarm (the posts on duty); it ends once also cleared, with no open case.
#[utoipa::path(post, path = "/api/v1/alarms/{id}/ack", tag = "iot", params(("id" = i64, Path, description = "alarm id")),
    responses((status = 200, body = Alarm), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub async fn acknowledge_alarm(
    State(state): State<AppState>,
    Authed(actor): Authed,
    Path(id): Path<i64>,
) -> ApiResult<Json<Alarm>> {
    Ok(Json(state.services.acknowledge_alarm(&actor, id).await?))
}

/// The smart components' rules, storm and crowd policies.
#[utoipa::path(get, path = "/api/v1/alarm-rules", tag = "iot",
    responses((status = 200, body = RuleSet), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn alarm_rules(State(state): State<AppState>, Authed(actor): Authed) -> ApiResult<Json<RuleSet>> {
    Ok(Json(state.services.alarm_rules(&actor)?))
}

/// Replace the smart components' rules (administrators).
#[utoipa::path(put, path = "/api/v1/alarm-rules", tag = "iot", request_body = RuleSet,
    responses((status = 200, body = RuleSet), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 413, body = ErrorBody), (status = 415, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub async fn put_alarm_rules(
    State(state): State<AppState>,
    Authed(actor): Authed,
    ApiJson(rules): ApiJson<RuleSet>,
) -> ApiResult<Json<RuleSet>> {
    Ok(Json(state.services.set_alarm_rules(&actor, rules).await?))
}

/// Today's people flow per checkpoint: occupancy now and flow per 5 minutes.
#[utoipa::path(get, path = "/api/v1/people-flow", tag = "iot",
    responses((status = 200, body = [CheckpointFlow]), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn people_flow(State(state): State<AppState>, Authed(actor): Authed) -> ApiResult<Json<Vec<CheckpointFlow>>> {
    Ok(Json(state.services.people_flow(&actor).await?))
}
