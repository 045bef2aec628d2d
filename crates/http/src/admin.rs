//! Administrator endpoints: accounts, log-in locks, service accounts and API keys, the working calendar
//! (next year's holidays are added here) and components. Each parses, calls the service layer (which
//! refuses every post but `admin`) and maps the answer.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use civicgrid_core::access::AccountInput;
use civicgrid_core::calendar::CalendarEntry;
use civicgrid_service::integrations::{IssuedKey, ServiceAccountView};
use civicgrid_service::reference::ComponentInput;
use civicgrid_store::User;

use crate::auth::Authed;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{ApiJson, IdPath, IdemKey, created as created_response};
use crate::state::AppState;

/// Create an account (administrators only). With an `Idempotency-Key` header, repeating the request
/// returns the first account (`Idempotent-Replayed: true`) instead of a 409 for the taken username.
#[utoipa::path(post, path = "/api/v1/users", tag = "admin", request_body = AccountInput,
    params(("Idempotency-Key" = Option<String>, Header, description = "1–100 visible ASCII characters, unique per account")),
    responses((status = 201, body = User), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 409, body = ErrorBody), (status = 413, body = ErrorBody),
        (status = 415, body = ErrorBody), (status = 422, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn create_user(
    State(state): State<AppState>,
    Authed(actor): Authed,
    IdemKey(key): IdemKey,
    ApiJson(input): ApiJson<AccountInput>,
) -> ApiResult<axum::response::Response> {
    let created = state.services.create_account(&actor, input, key.as_deref()).await?;
    Ok(created_response(created.value, created.replayed))
}

/// All accounts (administrators only).
#[utoipa::path(get, path = "/api/v1/users", tag = "admin",
    responses((status = 200, body = [User]), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn list_users(State(state): State<AppState>, Authed(actor): Authed) -> ApiResult<Json<Vec<User>>> {
    Ok(Json(state.services.users(&actor).await?))
}

/// A password set by an administrator.
#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordReset {
    /// The new password, 10–128 characters.
    pub password: String,
}

/// Set a user's password; all the user's sessions end (administrators only).
#[utoipa::path(post, path = "/api/v1/users/{id}/password", tag = "admin", request_body = PasswordReset,
    params(("id" = i64, Path, description = "user id")),
    responses((status = 204), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody),
        (status = 429, body = ErrorBody)))]
pub async fn reset_password(
    State(state): State<AppState>,
    Authed(actor): Authed,
    IdPath(id): IdPath,
    ApiJson(input): ApiJson<PasswordReset>,
) -> ApiResult<StatusCode> {
    state.services.reset_password(&actor, id, input.password).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Enable or disable an account.
#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AccountState {
    /// Whether the account may log in.
    pub enabled: bool,
}

/// Disable or re-enable an account; disabling ends its sessions (administrators only, not themselves).
#[utoipa::path(put, path = "/api/v1/users/{id}/state", tag = "admin", request_body = AccountState,
    params(("id" = i64, Path, description = "user id")),
    responses((status = 204), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn set_user_state(
    State(state): State<AppState>,
    Authed(actor): Authed,
    IdPath(id): IdPath,
    ApiJson(input): ApiJson<AccountState>,
) -> ApiResult<StatusCode> {
    state.services.set_user_enabled(&actor, id, input.enabled).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// How many sessions ended.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct SessionsEnded {
    /// Sessions ended.
    pub ended: u64,
}

/// End every session of a user (administrators only).
#[utoipa::path(delete, path = "/api/v1/users/{id}/sessions", tag = "admin", params(("id" = i64, Path, description = "user id")),
    responses((status = 200, body = SessionsEnded), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody)))]
pub async fn end_sessions(
    State(state): State<AppState>,
    Authed(actor): Authed,
    IdPath(id): IdPath,
) -> ApiResult<Json<SessionsEnded>> {
    Ok(Json(SessionsEnded { ended: state.services.end_sessions(&actor, id).await? }))
}

/// Whether an unlock lifted a lock.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct Unlocked {
    /// The username was locked and is not any more, on any node.
    pub was_locked: bool,
}

/// Lift a username's log-in lockout, on every node (administrators only).
#[utoipa::path(delete, path = "/api/v1/login-locks/{username}", tag = "admin",
    params(("username" = String, Path, description = "login name")),
    responses((status = 200, body = Unlocked), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn unlock_user(
    State(state): State<AppState>,
    Authed(actor): Authed,
    axum::extract::Path(username): axum::extract::Path<String>,
) -> ApiResult<Json<Unlocked>> {
    Ok(Json(Unlocked { was_locked: state.services.unlock_login(&actor, &username).await? }))
}

/// A service account to create.
#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ServiceAccountInput {
    /// Name: 3–40 characters of a–z, 0–9, `-`, `_`, `.`.
    pub name: String,
    /// The channel it reports on.
    pub channel: civicgrid_core::access::Channel,
}

/// Create a service account for an outside system (administrators only). With an `Idempotency-Key`
/// header, repeating the request returns the first account (`Idempotent-Replayed: true`).
#[utoipa::path(post, path = "/api/v1/service-accounts", tag = "admin", request_body = ServiceAccountInput,
    params(("Idempotency-Key" = Option<String>, Header, description = "1–100 visible ASCII characters, unique per account")),
    responses((status = 201, body = civicgrid_store::ServiceAccount), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create_service_account(
    State(state): State<AppState>,
    Authed(actor): Authed,
    IdemKey(key): IdemKey,
    ApiJson(input): ApiJson<ServiceAccountInput>,
) -> ApiResult<axum::response::Response> {
    let created = state.services.create_service_account(&actor, &input.name, input.channel, key.as_deref()).await?;
    Ok(created_response(created.value, created.replayed))
}

/// Every service account with its keys (never the keys themselves; administrators only).
#[utoipa::path(get, path = "/api/v1/service-accounts", tag = "admin",
    responses((status = 200, body = [ServiceAccountView]), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn list_service_accounts(
    State(state): State<AppState>,
    Authed(actor): Authed,
) -> ApiResult<Json<Vec<ServiceAccountView>>> {
    Ok(Json(state.services.service_accounts(&actor).await?))
}

/// Enable or disable a service account.
#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ServiceAccountState {
    /// Whether its keys work.
    pub enabled: bool,
}

/// Disable or re-enable a service account; a disabled account's keys stop working (administrators only).
#[utoipa::path(put, path = "/api/v1/service-accounts/{id}/state", tag = "admin", request_body = ServiceAccountState,
    params(("id" = i64, Path, description = "service account id")),
    responses((status = 204), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn set_service_account_state(
    State(state): State<AppState>,
    Authed(actor): Authed,
    IdPath(id): IdPath,
    ApiJson(input): ApiJson<ServiceAccountState>,
) -> ApiResult<StatusCode> {
    state.services.set_service_account_enabled(&actor, id, input.enabled).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Issue an API key for a service account; the key is shown in this answer only (administrators only).
/// With an `Idempotency-Key` header, repeating the request issues no second key: the answer is the
/// first key's record with `key: null` (`Idempotent-Replayed: true`), since the secret is not kept.
#[utoipa::path(post, path = "/api/v1/service-accounts/{id}/keys", tag = "admin",
    params(("id" = i64, Path, description = "service account id"),
        ("Idempotency-Key" = Option<String>, Header, description = "1–100 visible ASCII characters, unique per key")),
    responses((status = 201, body = IssuedKey), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody, description = "the idempotency key was used for another request")))]
pub async fn issue_api_key(
    State(state): State<AppState>,
    Authed(actor): Authed,
    IdPath(id): IdPath,
    IdemKey(key): IdemKey,
) -> ApiResult<axum::response::Response> {
    let issued = state.services.issue_api_key(&actor, id, key.as_deref()).await?;
    let mut resp = created_response(issued.value, issued.replayed);
    resp.headers_mut().insert(axum::http::header::CACHE_CONTROL, axum::http::HeaderValue::from_static("no-store"));
    Ok(resp)
}

/// Revoke an API key (administrators only).
#[utoipa::path(delete, path = "/api/v1/api-keys/{id}", tag = "admin", params(("id" = i64, Path, description = "key id")),
    responses((status = 204), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn revoke_api_key(
    State(state): State<AppState>,
    Authed(actor): Authed,
    IdPath(id): IdPath,
) -> ApiResult<StatusCode> {
    state.services.revoke_api_key(&actor, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Add or replace working-calendar rows, e.g. next year's holidays (administrators only).
#[utoipa::path(put, path = "/api/v1/calendar", tag = "admin", request_body = [CalendarEntry],
    responses((status = 200, body = [CalendarEntry]), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn put_calendar(
    State(state): State<AppState>,
    Authed(actor): Authed,
    ApiJson(entries): ApiJson<Vec<CalendarEntry>>,
) -> ApiResult<Json<Vec<CalendarEntry>>> {
    Ok(Json(state.services.put_calendar(&actor, &entries).await?))
}

/// Add or replace a component (administrators only). The ID must belong to the town's county and name
/// a class of the national table; the location must fall inside the town.
#[utoipa::path(put, path = "/api/v1/components/{id}", tag = "admin", request_body = ComponentInput,
    params(("id" = String, Path, description = "17-digit component ID")),
    responses((status = 200, body = civicgrid_core::component::Component), (status = 403, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub async fn put_component(
    State(state): State<AppState>,
    Authed(actor): Authed,
    axum::extract::Path(id): axum::extract::Path<String>,
    ApiJson(input): ApiJson<ComponentInput>,
) -> ApiResult<Json<civicgrid_core::component::Component>> {
    let id: civicgrid_core::codes::ComponentId =
        id.parse().map_err(|e: civicgrid_core::codes::CodeError| ApiError::invalid("id", e.to_string()))?;
    Ok(Json(state.services.put_component(&actor, id, input).await?))
}

/// A department's names and parent, as an administrator submits them.
#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DepartmentInput {
    /// Chinese name (1–40 characters).
    pub name_zh: String,
    /// English name (up to 80 characters).
    #[serde(default)]
    pub name_en: String,
    /// Parent department's code, for a sub-unit.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub parent: Option<civicgrid_core::org::DeptCode>,
}

/// Add a department or rename one (administrators only). Codes are lowercase slugs and are never removed.
#[utoipa::path(put, path = "/api/v1/departments/{code}", tag = "admin", request_body = DepartmentInput,
    params(("code" = String, Path, description = "department code, a lowercase slug")),
    responses((status = 200, body = civicgrid_core::org::Department), (status = 403, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub async fn put_department(
    State(state): State<AppState>,
    Authed(actor): Authed,
    axum::extract::Path(code): axum::extract::Path<String>,
    ApiJson(input): ApiJson<DepartmentInput>,
) -> ApiResult<Json<civicgrid_core::org::Department>> {
    let code =
        code.parse().map_err(|e: civicgrid_core::org::DeptCodeError| ApiError::invalid("code", e.to_string()))?;
    let department =
        civicgrid_core::org::Department { code, name_zh: input.name_zh, name_en: input.name_en, parent: input.parent };
    Ok(Json(state.services.put_department(&actor, department).await?))
}
