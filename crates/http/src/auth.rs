//! Authentication over HTTP: the login/logout/me endpoints and the [`Authed`] extractor that turns a
//! bearer token or the session cookie into an [`Actor`]. Passwords, sessions and the log-in throttles
//! are the service layer's (`civicgrid_service::accounts`); this module only carries tokens and cookies,
//! and tells who the client is ([`ClientAddr`]: the peer, or behind a trusted proxy the address it
//! forwards).

use std::net::{IpAddr, SocketAddr};

use axum::Json;
use axum::extract::{ConnectInfo, FromRequestParts, State};
use axum::http::header::{AUTHORIZATION, CACHE_CONTROL, COOKIE, SET_COOKIE};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use civicgrid_core::access::{Actor, Role};
use civicgrid_store::User;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::ApiJson;
use crate::state::AppState;

pub use civicgrid_service::accounts::{hash_password, random_password, token_hash};

/// Name of the session cookie.
pub const COOKIE_NAME: &str = "cg_session";

/// How a request carried its credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Via {
    /// A header the client set itself (`Authorization`, `X-API-Key`): browsers never send it on their own.
    Header,
    /// The session cookie, which a browser sends by itself.
    Cookie,
}

/// The bearer token, else the session cookie.
fn credential(headers: &HeaderMap) -> Option<(String, Via)> {
    if let Some(auth) = headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok()) {
        return auth.strip_prefix("Bearer ").map(|t| (t.trim().to_owned(), Via::Header));
    }
    cookie_token(headers).map(|t| (t, Via::Cookie))
}

fn token_from(headers: &HeaderMap) -> Option<String> {
    credential(headers).map(|(token, _)| token)
}

fn cookie_token(headers: &HeaderMap) -> Option<String> {
    cookie(headers, COOKIE_NAME)
}

/// The value of the cookie `name`, if the request carries it.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

/// Whether a browser's request comes from our own pages: its `Origin` (or, when a browser sends none,
/// `Sec-Fetch-Site`) names this host. A request with neither is refused: every browser sends one.
pub fn same_origin(headers: &HeaderMap) -> bool {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let host = header("host").unwrap_or_default();
    match header("origin") {
        Some(origin) => origin.split_once("://").is_some_and(|(_, rest)| rest == host),
        None => matches!(header("sec-fetch-site"), Some("same-origin" | "none")),
    }
}

/// A write authenticated by the session cookie must come from our own pages ([`same_origin`]).
/// Defence in depth behind SameSite=Strict; bearer tokens and API keys are not sent by browsers on
/// their own and need no such check.
fn check_origin(parts: &Parts) -> ApiResult<()> {
    if matches!(parts.method, axum::http::Method::GET | axum::http::Method::HEAD | axum::http::Method::OPTIONS) {
        return Ok(());
    }
    if same_origin(&parts.headers) {
        Ok(())
    } else {
        let origin = parts.headers.get("origin").and_then(|v| v.to_str().ok());
        tracing::warn!(?origin, "cross-origin write with a session cookie refused");
        Err(ApiError::forbidden("跨站请求被拒绝 (cross-origin request refused)"))
    }
}

/// The authenticated actor of a request; 401 when there is no live session.
#[derive(Debug, Clone)]
pub struct Authed(pub Actor);

impl FromRequestParts<AppState> for Authed {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let api_key =
            parts.headers.get("x-api-key").and_then(|v| v.to_str().ok()).map(|k| (k.trim().to_owned(), Via::Header));
        let (token, via) = api_key.or_else(|| credential(&parts.headers)).ok_or_else(ApiError::unauthenticated)?;
        if token.is_empty() || token.len() > 128 {
            return Err(ApiError::unauthenticated());
        }
        if token.starts_with(civicgrid_service::integrations::KEY_PREFIX) {
            return Ok(Authed(state.services.api_key_actor(&token).await?));
        }
        if via == Via::Cookie {
            check_origin(parts)?;
        }
        Ok(Authed(state.services.session_actor(&token).await?))
    }
}

impl axum::extract::OptionalFromRequestParts<AppState> for Authed {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Option<Self>, Self::Rejection> {
        Ok(<Authed as FromRequestParts<AppState>>::from_request_parts(parts, state).await.ok())
    }
}

impl Authed {
    /// Refuses unless the actor holds one of `roles`.
    pub fn require(&self, roles: &[Role]) -> ApiResult<()> {
        Ok(civicgrid_service::accounts::require(&self.0, roles)?)
    }
}

/// The client's address, when the server was started with connection info: see [`client_addr`].
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub Option<IpAddr>);

impl FromRequestParts<AppState> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let peer = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|ConnectInfo(a)| a.ip());
        Ok(ClientAddr(client_addr(peer, &parts.headers, &state.config.trusted_proxies)))
    }
}

/// Hops of `X-Forwarded-For` read at most, from the right.
const MAX_HOPS: usize = 16;

/// Who the client is. A peer that is not a trusted proxy is the client, whatever headers it sends (so
/// no one can pick the address their throttles are counted under). Behind trusted proxies, the
/// client is the rightmost `X-Forwarded-For` address that is not itself a trusted proxy: each proxy
/// appends the address it heard from, so addresses left of the first untrusted one are the client's
/// own claims. A hop that is not an address stops the walk at the last good one.
pub fn client_addr(peer: Option<IpAddr>, headers: &HeaderMap, trusted: &[ipnet::IpNet]) -> Option<IpAddr> {
    let peer = peer?;
    let is_trusted = |a: &IpAddr| trusted.iter().any(|net| net.contains(a));
    if !is_trusted(&peer) {
        return Some(peer);
    }
    let hops: Vec<&str> =
        headers.get_all("x-forwarded-for").iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(',')).collect();
    let mut client = peer;
    for hop in hops.iter().rev().take(MAX_HOPS) {
        let Ok(addr) = hop.trim().parse::<IpAddr>() else { break };
        client = addr;
        if !is_trusted(&addr) {
            break;
        }
    }
    Some(client)
}

/// Parses the trusted proxies setting: addresses or CIDR ranges, separated by commas (empty: none).
pub fn trusted_proxies(setting: &str) -> Result<Vec<ipnet::IpNet>, String> {
    setting
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<ipnet::IpNet>()
                .or_else(|_| s.parse::<IpAddr>().map(ipnet::IpNet::from))
                .map_err(|_| format!("{s:?} is neither an IP address nor a CIDR range"))
        })
        .collect()
}

/// Login request.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    /// Login name.
    pub username: String,
    /// Password.
    pub password: String,
}

/// Login response.
#[derive(Debug, Serialize, ToSchema)]
pub struct LoginResponse {
    /// Bearer token for API clients (`Authorization: Bearer …`); the web uses the cookie set alongside.
    pub token: String,
    /// When the session ends.
    pub expires_at: String,
    /// Who logged in.
    pub user: Me,
}

/// The logged-in user as shown to themselves.
#[derive(Debug, Serialize, ToSchema)]
pub struct Me {
    /// Id.
    pub id: i64,
    /// Login name.
    pub username: String,
    /// Display name.
    pub display_name: String,
    /// Post.
    pub role: Role,
    /// Post name in Chinese.
    pub role_zh: &'static str,
    /// Grids in scope.
    pub grids: Vec<civicgrid_core::codes::GridCode>,
    /// Department.
    pub department: Option<civicgrid_core::org::DeptCode>,
}

fn me(u: &User) -> Me {
    Me {
        id: u.id,
        username: u.username.clone(),
        display_name: u.display_name.clone(),
        role: u.role,
        role_zh: u.role.label_zh(),
        grids: u.grids.clone(),
        department: u.department.clone(),
    }
}

/// Log in with username and password.
#[utoipa::path(post, path = "/api/v1/auth/login", tag = "auth", request_body = LoginRequest,
    responses((status = 200, body = LoginResponse), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 422, body = ErrorBody),
        (status = 429, body = ErrorBody, description = "too many attempts for this username or address; see Retry-After")))]
pub async fn login(
    State(state): State<AppState>,
    ClientAddr(addr): ClientAddr,
    ApiJson(req): ApiJson<LoginRequest>,
) -> ApiResult<Response> {
    let session = state.services.login(&req.username, req.password, addr).await?;
    let secure = if state.config.secure_cookies { "; Secure" } else { "" };
    let cookie = format!(
        "{COOKIE_NAME}={}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}{secure}",
        session.token,
        state.config.session_hours * 3600
    );
    let body =
        LoginResponse { token: session.token, expires_at: session.expires_at.to_string(), user: me(&session.user) };
    let mut resp = Json(body).into_response();
    resp.headers_mut().insert(SET_COOKIE, HeaderValue::from_str(&cookie).map_err(ApiError::internal)?);
    resp.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(resp)
}

/// End the current session.
#[utoipa::path(post, path = "/api/v1/auth/logout", tag = "auth", responses((status = 204)))]
pub async fn logout(State(state): State<AppState>, headers: HeaderMap) -> ApiResult<Response> {
    if let Some(token) = token_from(&headers).filter(|t| !t.is_empty() && t.len() <= 128) {
        state.services.logout(&token).await?;
    }
    let mut resp = StatusCode::NO_CONTENT.into_response();
    let clear = format!("{COOKIE_NAME}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0");
    resp.headers_mut().insert(SET_COOKIE, HeaderValue::from_str(&clear).map_err(ApiError::internal)?);
    resp.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(resp)
}

/// A password change.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordChange {
    /// The current password.
    pub current_password: String,
    /// The new password, 10–128 characters.
    pub new_password: String,
}

/// Change your own password; your other sessions end.
#[utoipa::path(post, path = "/api/v1/auth/password", tag = "auth", request_body = PasswordChange,
    responses((status = 204), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 413, body = ErrorBody), (status = 415, body = ErrorBody),
        (status = 422, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn change_password(
    State(state): State<AppState>,
    Authed(actor): Authed,
    headers: HeaderMap,
    ApiJson(req): ApiJson<PasswordChange>,
) -> ApiResult<StatusCode> {
    let token = token_from(&headers);
    state.services.change_own_password(&actor, token.as_deref(), req.current_password, req.new_password).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The logged-in user.
#[utoipa::path(get, path = "/api/v1/auth/me", tag = "auth",
    responses((status = 200, body = Me), (status = 401, body = ErrorBody)))]
pub async fn whoami(State(state): State<AppState>, Authed(actor): Authed) -> ApiResult<Json<Me>> {
    Ok(Json(me(&state.services.me(&actor).await?)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_client_is_the_peer_unless_the_peer_is_a_trusted_proxy() {
        let ip = |s: &str| s.parse::<IpAddr>().expect("ip");
        let trusted = trusted_proxies("10.0.0.5, 10.1.0.0/16").expect("parses");
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", HeaderValue::from_static("6.6.6.6, 203.0.113.7, 10.1.2.3"));
        assert_eq!(client_addr(Some(ip("198.51.100.1")), &h, &trusted), Some(ip("198.51.100.1")), "untrusted peer");
        assert_eq!(client_addr(Some(ip("10.0.0.5")), &h, &[]), Some(ip("10.0.0.5")), "no proxy trusted");
        assert_eq!(
            client_addr(Some(ip("10.0.0.5")), &h, &trusted),
            Some(ip("203.0.113.7")),
            "the rightmost address no trusted proxy added; the client's own claim left of it is ignored"
        );
        h.insert("x-forwarded-for", HeaderValue::from_static("not-an-address, 10.1.9.9"));
        assert_eq!(client_addr(Some(ip("10.0.0.5")), &h, &trusted), Some(ip("10.1.9.9")), "stops at the last good hop");
        assert_eq!(client_addr(Some(ip("10.0.0.5")), &HeaderMap::new(), &trusted), Some(ip("10.0.0.5")));
        assert_eq!(client_addr(None, &h, &trusted), None);
        assert!(trusted_proxies("10.0.0.0/33").is_err());
        assert!(trusted_proxies("proxy.lan").is_err());
        assert_eq!(trusted_proxies(" ").expect("empty"), vec![]);
        assert_eq!(trusted_proxies("::1").expect("v6").len(), 1);
    }

    #[test]
    fn tokens_come_from_header_or_cookie() {
        let mut h = HeaderMap::new();
        h.insert(COOKIE, HeaderValue::from_static("a=b; cg_session=tok123"));
        assert_eq!(token_from(&h).as_deref(), Some("tok123"));
        h.insert(AUTHORIZATION, HeaderValue::from_static("Bearer abc"));
        assert_eq!(token_from(&h).as_deref(), Some("abc"));
        assert_eq!(token_hash("abc").len(), 64);
    }
}
