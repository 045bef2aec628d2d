//! Deadline, routing and duty endpoints: the SLA policy, the routing rules and a case's proposed
//! route and duplicate suggestions, the duty roster, each person's notification inbox and
//! the outbound notification channels. Thin: parse, call the service layer (which checks the post),
//! answer.

use axum::Json;
use axum::extract::State;
use civicgrid_core::duty::DutyEntry;
use civicgrid_core::routing::{Route, RoutingTable};
use civicgrid_core::sla::SlaPolicy;
use civicgrid_service::notify::{ChannelInput, InboxSummary, RosterInput};
use civicgrid_service::workflow::Duplicate;
use civicgrid_store::{Notification, NotifyChannel, Page, PageRequest};
use jiff::civil::Date;
use serde::Deserialize;
use utoipa::IntoParams;

use crate::auth::Authed;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{ApiJson, ApiQuery, IdPath};
use crate::state::AppState;

/// The SLA policy in force: limits per step, matter and urgency, the warning share, the escalation
/// ladder, the acknowledgement window and departments' working hours.
#[utoipa::path(get, path = "/api/v1/sla-policy", tag = "dispatch",
    responses((status = 200, body = SlaPolicy), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn sla_policy(State(state): State<AppState>, Authed(actor): Authed) -> ApiResult<Json<SlaPolicy>> {
    Ok(Json(state.services.sla_policy(&actor)?))
}

/// Replace the SLA policy (administrators). Deadlines already set keep their times; new ones follow
/// the policy at once.
#[utoipa::path(put, path = "/api/v1/sla-policy", tag = "dispatch", request_body = SlaPolicy,
    responses((status = 200, body = SlaPolicy), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub async fn put_sla_policy(
    State(state): State<AppState>,
    Authed(actor): Authed,
    ApiJson(policy): ApiJson<SlaPolicy>,
) -> ApiResult<Json<SlaPolicy>> {
    Ok(Json(state.services.set_sla_policy(&actor, policy).await?))
}

/// The routing rules (派遣规则): matter × workstation/grid × component owner → lead and co-departments.
#[utoipa::path(get, path = "/api/v1/routing-rules", tag = "dispatch",
    responses((status = 200, body = RoutingTable), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn routing_rules(State(state): State<AppState>, Authed(actor): Authed) -> ApiResult<Json<RoutingTable>> {
    Ok(Json(state.services.routing_rules(&actor)?))
}

/// Replace the routing rules (administrators); cases filed from now on get proposals by them.
#[utoipa::path(put, path = "/api/v1/routing-rules", tag = "dispatch", request_body = RoutingTable,
    responses((status = 200, body = RoutingTable), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub async fn put_routing_rules(
    State(state): State<AppState>,
    Authed(actor): Authed,
    ApiJson(table): ApiJson<RoutingTable>,
) -> ApiResult<Json<RoutingTable>> {
    Ok(Json(state.services.set_routing_rules(&actor, table).await?))
}

/// The route the current rules propose for a case (`null` when no rule applies); filing records the
/// proposal on the case as `proposed_route`.
#[utoipa::path(get, path = "/api/v1/cases/{id}/route", tag = "dispatch", params(("id" = i64, Path, description = "case id")),
    responses((status = 200, body = Option<Route>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn case_route(
    State(state): State<AppState>,
    Authed(actor): Authed,
    IdPath(id): IdPath,
) -> ApiResult<Json<Option<Route>>> {
    Ok(Json(state.services.propose_route(&actor, id).await?))
}

/// Open cases that may report the same problem (并单 suggestions): the same matter within the matter's
/// duplicate radius, or the same component; nearest first. Merge with the `merge` transition.
#[utoipa::path(get, path = "/api/v1/cases/{id}/duplicates", tag = "dispatch", params(("id" = i64, Path, description = "case id")),
    responses((status = 200, body = Vec<Duplicate>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn case_duplicates(
    State(state): State<AppState>,
    Authed(actor): Authed,
    IdPath(id): IdPath,
) -> ApiResult<Json<Vec<Duplicate>>> {
    Ok(Json(state.services.duplicates(&actor, id).await?))
}

/// A span of roster dates.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct RosterQuery {
    /// First date (YYYY-MM-DD).
    pub from: String,
    /// Last date (YYYY-MM-DD), at most 62 days after `from`.
    pub to: String,
}

fn date(field: &str, s: &str) -> ApiResult<Date> {
    s.parse().map_err(|_| ApiError::invalid(field, "a date as YYYY-MM-DD"))
}

/// The duty roster of a span of dates (值班表).
#[utoipa::path(get, path = "/api/v1/duty-roster", tag = "dispatch", params(RosterQuery),
    responses((status = 200, body = [DutyEntry]), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn roster(
    State(state): State<AppState>,
    Authed(actor): Authed,
    ApiQuery(q): ApiQuery<RosterQuery>,
) -> ApiResult<Json<Vec<DutyEntry>>> {
    let (from, to) = (date("from", &q.from)?, date("to", &q.to)?);
    Ok(Json(state.services.roster(&actor, from, to).await?))
}

/// Replace the roster of a span of dates (administrators and shift leaders); answers the new roster.
#[utoipa::path(put, path = "/api/v1/duty-roster", tag = "dispatch", request_body = RosterInput,
    responses((status = 200, body = [DutyEntry]), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub async fn put_roster(
    State(state): State<AppState>,
    Authed(actor): Authed,
    ApiJson(input): ApiJson<RosterInput>,
) -> ApiResult<Json<Vec<DutyEntry>>> {
    Ok(Json(state.services.set_roster(&actor, input).await?))
}

/// Inbox paging.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct InboxQuery {
    /// Only unread notifications.
    pub unread: Option<bool>,
    /// The `next` of the previous page.
    pub before: Option<i64>,
    /// Page size, 1–200 (default 50).
    pub limit: Option<u32>,
}

/// The caller's notifications, newest first (通知).
#[utoipa::path(get, path = "/api/v1/notifications", tag = "dispatch", params(InboxQuery),
    responses((status = 200, body = Page<Notification>), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn inbox(
    State(state): State<AppState>,
    Authed(actor): Authed,
    ApiQuery(q): ApiQuery<InboxQuery>,
) -> ApiResult<Json<Page<Notification>>> {
    let page = PageRequest { before: q.before, limit: q.limit.unwrap_or(50) };
    Ok(Json(state.services.inbox(&actor, q.unread.unwrap_or(false), page).await?))
}

/// How many of the caller's notifications are unread, and how many critical ones unacknowledged.
#[utoipa::path(get, path = "/api/v1/notifications/summary", tag = "dispatch",
    responses((status = 200, body = InboxSummary), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn inbox_summary(State(state): State<AppState>, Authed(actor): Authed) -> ApiResult<Json<InboxSummary>> {
    Ok(Json(state.services.inbox_summary(&actor).await?))
}

/// Mark one of the caller's notifications read.
#[utoipa::path(post, path = "/api/v1/notifications/{id}/read", tag = "dispatch",
    params(("id" = i64, Path, description = "notification id")),
    responses((status = 200, body = Notification), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn mark_read(
    State(state): State<AppState>,
    Authed(actor): Authed,
    IdPath(id): IdPath,
) -> ApiResult<Json<Notification>> {
    Ok(Json(state.services.mark_notification(&actor, id, false).await?))
}

/// Acknowledge one of the caller's notifications (a critical one then stops escalating).
#[utoipa::path(post, path = "/api/v1/notifications/{id}/ack", tag = "dispatch",
    params(("id" = i64, Path, description = "notification id")),
    responses((status = 200, body = Notification), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn acknowledge(
    State(state): State<AppState>,
    Authed(actor): Authed,
    IdPath(id): IdPath,
) -> ApiResult<Json<Notification>> {
    Ok(Json(state.services.mark_notification(&actor, id, true).await?))
}

/// The outbound notification channels (administrators); secrets are never answered.
#[utoipa::path(get, path = "/api/v1/notify-channels", tag = "dispatch",
    responses((status = 200, body = [NotifyChannel]), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn channels(State(state): State<AppState>, Authed(actor): Authed) -> ApiResult<Json<Vec<NotifyChannel>>> {
    Ok(Json(state.services.channels(&actor).await?))
}

/// Add an outbound channel: a signed webhook, a WeCom or DingTalk group robot, or an SMS gateway
/// (administrators).
#[utoipa::path(post, path = "/api/v1/notify-channels", tag = "dispatch", request_body = ChannelInput,
    responses((status = 201, body = NotifyChannel), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create_channel(
    State(state): State<AppState>,
    Authed(actor): Authed,
    ApiJson(input): ApiJson<ChannelInput>,
) -> ApiResult<(axum::http::StatusCode, Json<NotifyChannel>)> {
    Ok((axum::http::StatusCode::CREATED, Json(state.services.create_channel(&actor, input).await?)))
}

/// Switch a channel on or off.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChannelState {
    /// Whether messages are sent to it.
    pub enabled: bool,
}

/// Switch an outbound channel on or off (administrators).
#[utoipa::path(put, path = "/api/v1/notify-channels/{id}/state", tag = "dispatch", request_body = ChannelState,
    params(("id" = i64, Path, description = "channel id")),
    responses((status = 200, body = NotifyChannel), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub async fn set_channel_state(
    State(state): State<AppState>,
    Authed(actor): Authed,
    IdPath(id): IdPath,
    ApiJson(input): ApiJson<ChannelState>,
) -> ApiResult<Json<NotifyChannel>> {
    Ok(Json(state.services.set_channel_enabled(&actor, id, input.enabled).await?))
}
