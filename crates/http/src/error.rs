//! The HTTP layer's error: every failure leaves as `{"code", "message", "field"}` with a fitting status.
//! Store and domain errors are mapped here; internal details are logged, never sent to the client.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use civicgrid_core::DomainError;
use civicgrid_core::case::TransitionError;
use civicgrid_service::ServiceError;
use civicgrid_store::StoreError;
use serde::Serialize;

/// The JSON body of every error response.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// Stable machine-readable code, e.g. `illegal_transition`.
    pub code: &'static str,
    /// Human-readable explanation.
    pub message: String,
    /// The input field concerned, when there is one.
    pub field: Option<String>,
}

/// An error response.
#[derive(Debug)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Body.
    pub body: ErrorBody,
    /// Seconds to wait before trying again (sent as `Retry-After`).
    pub retry_after: Option<u64>,
}

impl ApiError {
    /// An error with no field.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, body: ErrorBody { code, message: message.into(), field: None }, retry_after: None }
    }

    /// Attaches the input field concerned.
    pub fn field(mut self, field: impl Into<String>) -> Self {
        self.body.field = Some(field.into());
        self
    }

    /// 422 invalid input in `field`.
    pub fn invalid(field: &str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_input", message).field(field)
    }

    /// 401: no valid session.
    pub fn unauthenticated() -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthenticated", "请先登录 (log in first)")
    }

    /// 403: the role or scope does not allow it.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    /// 404.
    pub fn not_found(what: &str) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", format!("{what} not found"))
    }

    /// 500 with the detail logged, not sent.
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        tracing::error!(error = %detail, "internal error");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "internal error; see the server log")
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut resp = (self.status, Json(self.body)).into_response();
        if let Some(secs) = self.retry_after {
            resp.headers_mut().insert(axum::http::header::RETRY_AFTER, secs.into());
        }
        resp
    }
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        match e {
            ServiceError::Domain(d) => d.into(),
            ServiceError::Store(s) => s.into(),
            ServiceError::NotFound(what) => ApiError::not_found(what),
            ServiceError::Unauthenticated => ApiError::unauthenticated(),
            ServiceError::BadCredentials => ApiError::new(
                StatusCode::UNAUTHORIZED,
                "bad_credentials",
                "用户名或密码错误 (wrong username or password)",
            ),
            ServiceError::Throttled { retry_after_secs } => ApiError {
                retry_after: Some(retry_after_secs),
                ..ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "too_many_attempts",
                    format!("尝试次数过多，请 {retry_after_secs} 秒后再试 (too many attempts; try again later)"),
                )
            },
            ServiceError::NotReady(what) => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "not_ready", what),
            ServiceError::Internal(detail) => ApiError::internal(detail),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => ApiError::not_found("record"),
            StoreError::IdempotencyMismatch => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency_key_reused",
                "this Idempotency-Key was already used for a different request",
            )
            .field("Idempotency-Key"),
            StoreError::Conflict { expected } => ApiError::new(
                StatusCode::CONFLICT,
                "conflict",
                format!("the case changed meanwhile (you had version {expected}); reload and try again"),
            ),
            StoreError::Duplicate { field } => {
                ApiError::new(StatusCode::CONFLICT, "duplicate", format!("{field} is already taken")).field(field)
            }
            StoreError::BadEvent(detail) => ApiError::new(
                StatusCode::CONFLICT,
                "conflict",
                format!("the case changed meanwhile ({detail}); reload and try again"),
            ),
            StoreError::BadReference => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "bad_reference", "a referenced record does not exist")
            }
            StoreError::Closed => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "shutting_down", "the server is shutting down")
            }
            other => ApiError::internal(other),
        }
    }
}

impl From<DomainError> for ApiError {
    fn from(e: DomainError) -> Self {
        let status = match &e {
            DomainError::Forbidden(_) => StatusCode::FORBIDDEN,
            DomainError::Transition(
                TransitionError::Illegal { .. } | TransitionError::IllegalTask { .. } | TransitionError::AlreadyRated,
            ) => StatusCode::CONFLICT,
            _ => StatusCode::UNPROCESSABLE_ENTITY,
        };
        let field = e.field().map(str::to_owned);
        ApiError { status, body: ErrorBody { code: e.code(), message: e.to_string(), field }, retry_after: None }
    }
}

impl From<TransitionError> for ApiError {
    fn from(e: TransitionError) -> Self {
        DomainError::from(e).into()
    }
}

/// Result of a handler.
pub type ApiResult<T> = Result<T, ApiError>;

/// Rewrites any error response that is not yet in the JSON format (axum's own 405 and 404 for unknown
/// routes, a body-limit 413, a rejected path) into `{code, message, field}`, keeping its status and
/// headers (`Allow` on a 405).
pub async fn json_errors(resp: Response) -> Response {
    let status = resp.status();
    // JSON errors are already in the format; the consoles' own error pages are HTML for people.
    let is_json = resp.headers().get(axum::http::header::CONTENT_TYPE).is_some_and(|v| {
        let v = v.as_bytes();
        // Open311 answers its errors in its own format, JSON or XML.
        v.starts_with(b"application/json") || v.starts_with(b"text/html") || v.starts_with(b"text/xml")
    });
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return resp;
    }
    let (code, message) = match status {
        StatusCode::METHOD_NOT_ALLOWED => ("method_not_allowed", "this endpoint does not take that method"),
        StatusCode::PAYLOAD_TOO_LARGE => ("payload_too_large", "the request body is too large"),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ("unsupported_media_type", "unsupported content type"),
        StatusCode::NOT_FOUND => ("not_found", "not found"),
        StatusCode::REQUEST_TIMEOUT => ("timeout", "the request took too long"),
        s if s.is_server_error() => ("internal", "internal error; see the server log"),
        _ => ("bad_request", "the request is malformed"),
    };
    let (mut parts, _) = resp.into_parts();
    parts.headers.remove(axum::http::header::CONTENT_LENGTH);
    let body = ErrorBody { code, message: message.to_owned(), field: None };
    let mut fresh = (status, Json(body)).into_response();
    for (name, value) in parts.headers.iter() {
        if name != axum::http::header::CONTENT_TYPE {
            fresh.headers_mut().insert(name.clone(), value.clone());
        }
    }
    fresh
}

/// A handler panicked: log it and answer a JSON 500.
pub fn panicked(err: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let detail = err
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| err.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_else(|| "unknown panic".to_owned());
    ApiError::internal(format!("handler panicked: {detail}")).into_response()
}
