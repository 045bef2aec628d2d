//! Case endpoints: report, read, list with filters, transition, history. Each handler parses the
//! request, calls one use case of the service layer and maps the answer; the rules live there.

use std::collections::BTreeSet;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use civicgrid_core::access::Actor;
use civicgrid_core::case::{Case, CaseEvent, CaseState, Command, Source};
use civicgrid_core::codes::{ComponentId, GridCode, MatterCode};
use civicgrid_core::intake::ReportInput;
use civicgrid_core::org::DeptCode;
use civicgrid_service::cases::masked_for;
use civicgrid_store::{CaseFilter, Page, PageRequest};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::auth::Authed;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{ApiJson, ApiQuery, IdPath, IdemKey};
use crate::state::AppState;

/// A case as returned by the API: personal data masked for roles that do not need it.
#[derive(Debug, Serialize, ToSchema)]
pub struct CaseView {
    /// The case.
    #[serde(flatten)]
    pub case: Case,
    /// State label in Chinese.
    pub state_zh: &'static str,
    /// Whether the current step is past its deadline now.
    pub overdue: bool,
}

fn view(case: Case, actor: &Actor, now: Timestamp) -> CaseView {
    let case = masked_for(case, actor);
    let overdue = case.is_overdue(now);
    CaseView { state_zh: case.status.state.label_zh(), overdue, case }
}

/// Report a new case. With an `Idempotency-Key` header, repeating the request (after a timeout or a
/// lost connection) returns the first case instead of creating another; the answer then carries
/// `Idempotent-Replayed: true`.
#[utoipa::path(post, path = "/api/v1/cases", tag = "cases", request_body = ReportInput,
    params(("Idempotency-Key" = Option<String>, Header, description = "1–100 visible ASCII characters, unique per report")),
    responses((status = 201, body = CaseView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 413, body = ErrorBody), (status = 415, body = ErrorBody),
        (status = 422, body = ErrorBody, description = "invalid report, or the idempotency key was used for another report"),
        (status = 503, body = ErrorBody, description = "no town set up yet")))]
pub async fn create_case(
    State(state): State<AppState>,
    Authed(actor): Authed,
    IdemKey(key): IdemKey,
    ApiJson(input): ApiJson<ReportInput>,
) -> ApiResult<axum::response::Response> {
    let created = state.services.report_case_once(&actor, input, key.as_deref()).await?;
    Ok(crate::extract::created(view(created.value, &actor, state.clock.now()), created.replayed))
}

/// Read one case.
#[utoipa::path(get, path = "/api/v1/cases/{id}", tag = "cases", params(("id" = i64, Path, description = "case id")),
    responses((status = 200, body = CaseView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody, description = "no such case, or not in the caller's scope")))]
pub async fn get_case(
    State(state): State<AppState>,
    Authed(actor): Authed,
    IdPath(id): IdPath,
) -> ApiResult<Json<CaseView>> {
    let case = state.services.case(&actor, id).await?;
    Ok(Json(view(case, &actor, state.clock.now())))
}

/// A case's history, oldest first.
#[utoipa::path(get, path = "/api/v1/cases/{id}/events", tag = "cases", params(("id" = i64, Path, description = "case id")),
    responses((status = 200, body = [CaseEvent]), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub async fn case_events(
    State(state): State<AppState>,
    Authed(actor): Authed,
    IdPath(id): IdPath,
) -> ApiResult<Json<Vec<CaseEvent>>> {
    Ok(Json(state.services.case_events(&actor, id).await?))
}

/// A requested change to a case. Unknown fields are refused (a misspelt `expected_version` must not
/// silently switch conflict protection off).
#[derive(Debug, Deserialize, ToSchema)]
pub struct TransitionRequest {
    /// The change, its reason and evidence.
    #[serde(flatten)]
    pub command: Command,
    /// The version the client saw; a mismatch is a 409 instead of acting on a changed case.
    #[serde(default)]
    pub expected_version: Option<i64>,
}

/// The fields a transition request may carry (the action's own fields included).
const TRANSITION_FIELDS: [&str; 11] = [
    "action",
    "reason",
    "evidence",
    "position",
    "task",
    "expected_version",
    "lead",
    "co",
    "working_hours",
    "satisfaction",
    "into",
];

/// Change a case: accept, file, dispatch, sign, reply, verify, close, … (see `Action`).
#[utoipa::path(post, path = "/api/v1/cases/{id}/transitions", tag = "cases", params(("id" = i64, Path, description = "case id")),
    request_body = TransitionRequest,
    responses((status = 200, body = CaseView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "illegal in the current state, or the case changed meanwhile"),
        (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn transition(
    State(state): State<AppState>,
    Authed(actor): Authed,
    IdPath(id): IdPath,
    ApiJson(body): ApiJson<serde_json::Map<String, serde_json::Value>>,
) -> ApiResult<Json<CaseView>> {
    if let Some(unknown) = body.keys().find(|k| !TRANSITION_FIELDS.contains(&k.as_str())) {
        return Err(ApiError::invalid(unknown, format!("unknown field `{unknown}`")));
    }
    let req: TransitionRequest = serde_json::from_value(serde_json::Value::Object(body))
        .map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_input", e.to_string()))?;
    let case = state.services.transition(&actor, id, &req.command, req.expected_version).await?;
    Ok(Json(view(case, &actor, state.clock.now())))
}

/// Case list filters. Lists are comma-separated; unknown parameters are refused.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct CaseQuery {
    /// Grid codes, comma-separated.
    pub grid: Option<String>,
    /// One matter code.
    pub matter: Option<String>,
    /// States, comma-separated (e.g. `handling,replied`).
    pub state: Option<String>,
    /// One department (lead or co).
    pub department: Option<String>,
    /// Source channel.
    pub source: Option<Source>,
    /// Reported at or after (RFC 3339).
    pub from: Option<String>,
    /// Reported before (RFC 3339).
    pub to: Option<String>,
    /// Closed at or after (RFC 3339).
    pub closed_from: Option<String>,
    /// Closed before (RFC 3339).
    pub closed_to: Option<String>,
    /// Only cases whose current step is overdue.
    pub overdue: Option<bool>,
    /// Only cases escalated (督办) at least once.
    pub escalated: Option<bool>,
    /// About this component (17 digits).
    pub component: Option<String>,
    /// Merged (并单) into this primary case.
    pub merged_into: Option<i64>,
    /// Only the cases the caller reported (a grid worker's own history).
    pub mine: Option<bool>,
    /// Keyset cursor: the `next` of the previous page.
    pub before: Option<i64>,
    /// Page size, 1–500 (default 50).
    pub limit: Option<u32>,
}

/// Most values in one list parameter.
const MAX_LIST: usize = 200;

fn parse_list<T: std::str::FromStr>(field: &str, s: &Option<String>) -> ApiResult<Vec<T>>
where
    T::Err: std::fmt::Display,
{
    let items: Vec<&str> = s.iter().flat_map(|s| s.split(',')).map(str::trim).filter(|s| !s.is_empty()).collect();
    if items.len() > MAX_LIST {
        return Err(ApiError::invalid(field, format!("at most {MAX_LIST} values")));
    }
    items.into_iter().map(|v| v.parse().map_err(|e: T::Err| ApiError::invalid(field, e.to_string()))).collect()
}

/// A parameter that takes one value.
fn parse_one<T: std::str::FromStr>(field: &str, s: &Option<String>) -> ApiResult<Option<T>>
where
    T::Err: std::fmt::Display,
{
    let mut v: Vec<T> = parse_list(field, s)?;
    if v.len() > 1 {
        return Err(ApiError::invalid(field, format!("`{field}` takes one value")));
    }
    Ok(v.pop())
}

fn parse_time(field: &str, s: &Option<String>) -> ApiResult<Option<Timestamp>> {
    s.as_deref().map(|v| v.parse().map_err(|e: jiff::Error| ApiError::invalid(field, e.to_string()))).transpose()
}

/// List cases the caller may see, newest first, with keyset pagination.
#[utoipa::path(get, path = "/api/v1/cases", tag = "cases", params(CaseQuery),
    responses((status = 200, body = Page<CaseView>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub async fn list_cases(
    State(state): State<AppState>,
    Authed(actor): Authed,
    ApiQuery(q): ApiQuery<CaseQuery>,
) -> ApiResult<Json<Page<CaseView>>> {
    let now = state.clock.now();
    let states: Vec<CaseState> = parse_list("state", &q.state)?;
    let filter = CaseFilter {
        grids: parse_list::<GridCode>("grid", &q.grid)?.into_iter().collect::<BTreeSet<_>>().into_iter().collect(),
        matter: parse_one::<MatterCode>("matter", &q.matter)?,
        states,
        department: parse_one::<DeptCode>("department", &q.department)?,
        source: q.source,
        reported_from: parse_time("from", &q.from)?,
        reported_to: parse_time("to", &q.to)?,
        overdue_at: q.overdue.unwrap_or(false).then_some(now),
        closed_from: parse_time("closed_from", &q.closed_from)?,
        closed_to: parse_time("closed_to", &q.closed_to)?,
        escalated: q.escalated.unwrap_or(false),
        component: parse_one::<ComponentId>("component", &q.component)?,
        within: None,
        merged_into: q.merged_into,
        reporter: q.mine.unwrap_or(false).then_some(actor.user_id),
        scope: None,
    };
    let page = PageRequest { before: q.before, limit: q.limit.unwrap_or(50) };
    let page = state.services.list_cases(&actor, filter, page).await?;
    Ok(Json(Page { items: page.items.into_iter().map(|c| view(c, &actor, now)).collect(), next: page.next }))
}
