//! Request extractors that turn axum's rejections into our JSON error format: malformed JSON is a 400
//! `malformed_json`; JSON of the wrong shape is a 422 `invalid_input` naming the field; a bad query
//! string is a 400 `invalid_query`.

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// A JSON body; rejections become [`ApiError`]s.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(ApiJson(v)),
            Err(JsonRejection::JsonDataError(e)) => {
                let text = e.body_text();
                // axum's text: "Failed to deserialize the JSON body into the target type: path: message"
                let detail = text.split_once("target type: ").map_or(text.as_str(), |(_, d)| d).to_owned();
                let err = ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_input", detail.clone());
                Err(match detail.split_once(": ") {
                    Some((path, _)) if !path.contains(' ') => err.field(path),
                    _ => err,
                })
            }
            Err(JsonRejection::MissingJsonContentType(_)) => Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send the body as application/json",
            )),
            Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => Err(too_large()),
            // tower-http's body timeout surfaces as a buffering failure that names it.
            Err(e) if e.body_text().contains("designated timeout") => {
                Err(ApiError::new(StatusCode::REQUEST_TIMEOUT, "timeout", "the request body did not arrive in time"))
            }
            Err(e) => Err(ApiError::new(StatusCode::BAD_REQUEST, "malformed_json", e.body_text())),
        }
    }
}

/// The 413 answer.
pub fn too_large() -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        format!("the request body is larger than {} KiB", crate::MAX_BODY >> 10),
    )
}

/// The `Idempotency-Key` header of a creating request, if it was sent (its form is the service's to
/// check).
#[derive(Debug, Clone, Default)]
pub struct IdemKey(pub Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for IdemKey {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, _: &S) -> Result<Self, Self::Rejection> {
        let value = parts.headers.get("idempotency-key").map(|v| {
            v.to_str().map(str::to_owned).map_err(|_| ApiError::invalid("Idempotency-Key", "visible ASCII characters"))
        });
        value.transpose().map(IdemKey)
    }
}

/// A 201 answer with `body`, marked `Idempotent-Replayed: true` when it repeats what an earlier request
/// with the same key created.
pub fn created<T: serde::Serialize>(body: T, replayed: bool) -> axum::response::Response {
    use axum::response::IntoResponse;
    let mut resp = (StatusCode::CREATED, axum::Json(body)).into_response();
    if replayed {
        resp.headers_mut().insert("idempotent-replayed", axum::http::HeaderValue::from_static("true"));
    }
    resp
}

/// A numeric id in the path; anything but a positive integer is a 400 in the JSON error format.
#[derive(Debug, Clone, Copy)]
pub struct IdPath(pub i64);

impl<S: Send + Sync> FromRequestParts<S> for IdPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let axum::extract::Path(raw) = axum::extract::Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_path", e.body_text()))?;
        match raw.parse::<i64>() {
            Ok(id) if id > 0 => Ok(IdPath(id)),
            _ => {
                Err(ApiError::new(StatusCode::BAD_REQUEST, "invalid_path", "the id is a positive integer").field("id"))
            }
        }
    }
}

/// A query string; rejections become [`ApiError`]s.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| ApiQuery(q.0))
            .map_err(|e: QueryRejection| ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", e.body_text()))
    }
}
