//! Authentication: argon2 password hashes, random session tokens (only their SHA-256 is stored), the
//! login/logout/me endpoints, and the [`Authed`] extractor that turns a bearer token or the session
//! cookie into an [`Actor`]. A short-lived in-process cache keeps the session lookup off the hot path.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use argon2::Argon2;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use axum::Json;
use axum::extract::{FromRequestParts, State};
use axum::http::header::{AUTHORIZATION, COOKIE, SET_COOKIE};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use civicgrid_core::access::{Actor, Role};
use civicgrid_store::User;
use jiff::SignedDuration;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::ApiJson;
use crate::state::AppState;

/// Name of the session cookie.
pub const COOKIE_NAME: &str = "cg_session";
/// How long a checked session is trusted without asking the store again.
const CACHE_TTL: Duration = Duration::from_secs(30);
/// A hash to verify against when the user does not exist, so timing does not reveal usernames.
const DUMMY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$Yx2Nc6e3dCk3cYxAGi0sMTlbq9tFQJvGk4pF3D7x9Gk";

/// Hashes a password with argon2id and a random salt (PHC string).
pub fn hash_password(password: &str) -> Result<String, ApiError> {
    Argon2::default().hash_password(password.as_bytes()).map(|h| h.to_string()).map_err(ApiError::internal)
}

/// Checks a password against a PHC string.
pub fn verify_password(password: &str, phc: &str) -> bool {
    Argon2::default().verify_password(password.as_bytes(), phc).is_ok()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// SHA-256 of a token, hex: what the store keeps.
pub fn token_hash(token: &str) -> String {
    hex(&Sha256::digest(token.as_bytes()))
}

/// A random 16-character password (for generated admin accounts).
pub fn random_password() -> Result<String, ApiError> {
    const ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyzABCDEFGHJKMNPQRSTUVWXYZ23456789";
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(ApiError::internal)?;
    Ok(bytes.iter().map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char).collect())
}

fn new_token() -> Result<String, ApiError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(ApiError::internal)?;
    Ok(hex(&bytes))
}

/// The actor of a user account.
pub fn actor_of(user: &User) -> Actor {
    Actor {
        user_id: user.id,
        username: user.username.clone(),
        role: user.role,
        grids: user.grids.clone(),
        department: user.department.clone(),
    }
}

/// Failed logins allowed per username before it is locked for [`LOCKOUT`].
pub const MAX_FAILURES: u32 = 5;
/// How long a username stays locked after too many failures (and the window failures are counted in).
pub const LOCKOUT: SignedDuration = SignedDuration::from_mins(15);

/// Failed logins per username, per node: after [`MAX_FAILURES`] in [`LOCKOUT`], the username is refused
/// until the lockout passes, whatever the password. Guards against password guessing.
#[derive(Debug, Default)]
pub struct LoginGuard {
    failures: Mutex<HashMap<String, (u32, jiff::Timestamp)>>,
}

impl LoginGuard {
    /// Whether `username` is locked at `now`.
    fn locked(&self, username: &str, now: jiff::Timestamp) -> bool {
        let Ok(f) = self.failures.lock() else { return false };
        f.get(username).is_some_and(|(n, last)| *n >= MAX_FAILURES && now < *last + LOCKOUT)
    }

    fn failed(&self, username: &str, now: jiff::Timestamp) {
        if let Ok(mut f) = self.failures.lock() {
            if f.len() > 10_000 {
                f.retain(|_, (_, last)| now < *last + LOCKOUT);
            }
            let entry = f.entry(username.to_owned()).or_insert((0, now));
            if now >= entry.1 + LOCKOUT {
                *entry = (0, now);
            }
            entry.0 += 1;
            entry.1 = now;
        }
    }

    fn succeeded(&self, username: &str) {
        if let Ok(mut f) = self.failures.lock() {
            f.remove(username);
        }
    }
}

/// Sessions checked recently: token hash → (actor, when the cache entry lapses).
#[derive(Debug, Default)]
pub struct SessionCache {
    entries: Mutex<HashMap<String, (Actor, Instant)>>,
}

impl SessionCache {
    fn get(&self, hash: &str) -> Option<Actor> {
        let entries = self.entries.lock().ok()?;
        entries.get(hash).filter(|(_, until)| *until > Instant::now()).map(|(a, _)| a.clone())
    }

    fn put(&self, hash: String, actor: Actor) {
        if let Ok(mut entries) = self.entries.lock() {
            if entries.len() > 50_000 {
                let now = Instant::now();
                entries.retain(|_, (_, until)| *until > now);
            }
            entries.insert(hash, (actor, Instant::now() + CACHE_TTL));
        }
    }

    fn forget(&self, hash: &str) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.remove(hash);
        }
    }
}

fn token_from(headers: &HeaderMap) -> Option<String> {
    if let Some(auth) = headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok()) {
        return auth.strip_prefix("Bearer ").map(|t| t.trim().to_owned());
    }
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE_NAME)
        .map(|(_, v)| v.to_owned())
}

/// The authenticated actor of a request; 401 when there is no live session.
#[derive(Debug, Clone)]
pub struct Authed(pub Actor);

impl FromRequestParts<AppState> for Authed {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let token = token_from(&parts.headers).ok_or_else(ApiError::unauthenticated)?;
        let hash = token_hash(&token);
        if let Some(actor) = state.sessions.get(&hash) {
            return Ok(Authed(actor));
        }
        let user = state.store.session_user(&hash, state.clock.now()).await?.ok_or_else(ApiError::unauthenticated)?;
        let actor = actor_of(&user);
        state.sessions.put(hash, actor.clone());
        Ok(Authed(actor))
    }
}

impl Authed {
    /// Refuses unless the actor holds one of `roles`.
    pub fn require(&self, roles: &[Role]) -> ApiResult<()> {
        if roles.contains(&self.0.role) {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!("{} ({}) may not do this", self.0.role.label_zh(), self.0.role.as_str())))
        }
    }
}

/// Login request.
#[derive(Debug, Deserialize, ToSchema)]
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
    responses((status = 200, body = LoginResponse), (status = 401, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn login(State(state): State<AppState>, ApiJson(req): ApiJson<LoginRequest>) -> ApiResult<Response> {
    let username = req.username.trim().to_owned();
    let now = state.clock.now();
    if state.logins.locked(&username, now) {
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_attempts",
            format!("登录失败次数过多，请 {} 分钟后再试 (too many failed logins; try again later)", LOCKOUT.as_mins()),
        ));
    }
    let user = state.store.user_by_username(&username).await?;
    let hash = user.as_ref().map_or(DUMMY_HASH.to_owned(), |u| u.password_hash.clone());
    let password = req.password;
    let ok =
        tokio::task::spawn_blocking(move || verify_password(&password, &hash)).await.map_err(ApiError::internal)?;
    let user = match (ok, user) {
        (true, Some(u)) => {
            state.logins.succeeded(&username);
            u
        }
        _ => {
            state.logins.failed(&username, now);
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "bad_credentials",
                "用户名或密码错误 (wrong username or password)",
            ));
        }
    };
    let token = new_token()?;
    let expires = now + SignedDuration::from_hours(state.config.session_hours);
    state.store.create_session(&token_hash(&token), user.id, now, expires).await?;
    let secure = if state.config.secure_cookies { "; Secure" } else { "" };
    let cookie = format!(
        "{COOKIE_NAME}={token}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}{secure}",
        state.config.session_hours * 3600
    );
    let body = LoginResponse { token, expires_at: expires.to_string(), user: me(&user) };
    let mut resp = Json(body).into_response();
    resp.headers_mut().insert(SET_COOKIE, HeaderValue::from_str(&cookie).map_err(ApiError::internal)?);
    Ok(resp)
}

/// End the current session.
#[utoipa::path(post, path = "/api/v1/auth/logout", tag = "auth", responses((status = 204)))]
pub async fn logout(State(state): State<AppState>, headers: HeaderMap) -> ApiResult<Response> {
    if let Some(token) = token_from(&headers) {
        let hash = token_hash(&token);
        state.sessions.forget(&hash);
        state.store.delete_session(&hash).await?;
    }
    let mut resp = StatusCode::NO_CONTENT.into_response();
    let clear = format!("{COOKIE_NAME}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0");
    resp.headers_mut().insert(SET_COOKIE, HeaderValue::from_str(&clear).map_err(ApiError::internal)?);
    Ok(resp)
}

/// The logged-in user.
#[utoipa::path(get, path = "/api/v1/auth/me", tag = "auth",
    responses((status = 200, body = Me), (status = 401, body = ErrorBody)))]
pub async fn whoami(State(state): State<AppState>, Authed(actor): Authed) -> ApiResult<Json<Me>> {
    let user = state.store.user(actor.user_id).await?.ok_or_else(ApiError::unauthenticated)?;
    Ok(Json(me(&user)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_hash_with_argon2id_and_verify() {
        let h = hash_password("correct horse").expect("hash");
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password("correct horse", &h));
        assert!(!verify_password("wrong", &h));
        assert!(!verify_password("anything", DUMMY_HASH));
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
