//! Attachment endpoints: upload (`multipart/form-data` with a `file` field, or the raw bytes with
//! `?name=`), metadata, content (streamed from disk) and thumbnail, and a case's attachments. The
//! rules — accepted types, sizes, who may see what — are the service layer's.

use axum::Json;
use axum::body::Body;
use axum::extract::{FromRequest, Multipart, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use civicgrid_service::attachments::Content;
use civicgrid_store::StoredAttachment;
use serde::Deserialize;
use utoipa::IntoParams;

use crate::auth::Authed;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{ApiQuery, IdPath, IdemKey};
use crate::state::AppState;

/// Largest upload body accepted (the largest attachment plus multipart framing).
pub const MAX_UPLOAD_BODY: usize = (civicgrid_core::case::MAX_ATTACHMENT_BYTES as usize) + (64 << 10);

/// The file name of a raw upload.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct UploadQuery {
    /// File name, for a raw (non-multipart) upload.
    pub name: Option<String>,
}

/// Upload a photo or document (JPEG, PNG, WebP, PDF; at most 20 MiB). Name it by its `id` in a report's
/// `attachments` or a transition's `evidence`.
#[utoipa::path(post, path = "/api/v1/attachments", tag = "attachments", params(UploadQuery,
        ("Idempotency-Key" = Option<String>, Header, description = "a retried upload with the same key returns the first attachment")),
    request_body(content_type = "multipart/form-data", description = "a `file` field; or the raw bytes with `?name=`"),
    responses((status = 201, body = StoredAttachment), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 422, body = ErrorBody, description = "not an accepted type, or damaged")))]
pub async fn upload(
    State(state): State<AppState>,
    Authed(actor): Authed,
    ApiQuery(q): ApiQuery<UploadQuery>,
    IdemKey(key): IdemKey,
    req: Request,
) -> ApiResult<Response> {
    let multipart = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("multipart/form-data"));
    let (name, bytes) = if multipart {
        let mut form = Multipart::from_request(req, &()).await.map_err(|e| body_error(e.status(), e.body_text()))?;
        let mut found = None;
        while let Some(field) = form.next_field().await.map_err(|e| body_error(e.status(), e.body_text()))? {
            if field.name() == Some("file") {
                let name = q.name.clone().or_else(|| field.file_name().map(str::to_owned)).unwrap_or_default();
                let bytes = field.bytes().await.map_err(|e| body_error(e.status(), e.body_text()))?;
                found = Some((name, bytes.to_vec()));
                break;
            }
        }
        found.ok_or_else(|| ApiError::invalid("file", "send the file in a form field named `file`"))?
    } else {
        let name = q.name.clone().ok_or_else(|| ApiError::invalid("name", "name the file with ?name="))?;
        let bytes =
            axum::body::Bytes::from_request(req, &()).await.map_err(|e| body_error(e.status(), e.body_text()))?;
        (name, bytes.to_vec())
    };
    let created = state.services.upload_attachment_once(&actor, &name, bytes, key.as_deref()).await?;
    Ok(crate::extract::created(created.value, created.replayed))
}

fn body_error(status: StatusCode, text: String) -> ApiError {
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        crate::extract::too_large()
    } else {
        ApiError::new(StatusCode::BAD_REQUEST, "malformed_body", text)
    }
}

/// An attachment's metadata (EXIF time and position, size, thumbnail).
#[utoipa::path(get, path = "/api/v1/attachments/{id}", tag = "attachments", params(("id" = i64, Path, description = "attachment id")),
    responses((status = 200, body = StoredAttachment), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub async fn metadata(
    State(state): State<AppState>,
    Authed(actor): Authed,
    IdPath(id): IdPath,
) -> ApiResult<Json<StoredAttachment>> {
    Ok(Json(state.services.attachment(&actor, id).await?))
}

/// The attachments of a case.
#[utoipa::path(get, path = "/api/v1/cases/{id}/attachments", tag = "attachments", params(("id" = i64, Path, description = "case id")),
    responses((status = 200, body = [StoredAttachment]), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub async fn of_case(
    State(state): State<AppState>,
    Authed(actor): Authed,
    IdPath(id): IdPath,
) -> ApiResult<Json<Vec<StoredAttachment>>> {
    Ok(Json(state.services.case_attachments(&actor, id).await?))
}

/// The file itself, streamed.
#[utoipa::path(get, path = "/api/v1/attachments/{id}/content", tag = "attachments", params(("id" = i64, Path, description = "attachment id")),
    responses((status = 200, description = "the file, with its content type"), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn content(State(state): State<AppState>, Authed(actor): Authed, IdPath(id): IdPath) -> ApiResult<Response> {
    let (a, content) = state.services.attachment_content(&actor, id, false).await?;
    Ok(send(&a.mime, &a.name, &a.sha256, content))
}

/// A JPEG thumbnail (images only).
#[utoipa::path(get, path = "/api/v1/attachments/{id}/thumbnail", tag = "attachments", params(("id" = i64, Path, description = "attachment id")),
    responses((status = 200, description = "a JPEG at most 320 px on its longer side"), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn thumbnail(
    State(state): State<AppState>,
    Authed(actor): Authed,
    IdPath(id): IdPath,
) -> ApiResult<Response> {
    let (a, content) = state.services.attachment_content(&actor, id, true).await?;
    Ok(send("image/jpeg", &format!("thumb-{}.jpg", a.id), a.thumb_sha256.as_deref().unwrap_or_default(), content))
}

/// RFC 8187 encoding of a file name for `Content-Disposition`.
fn disposition(name: &str) -> String {
    let encoded: String = name
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") }
        })
        .collect();
    format!("inline; filename*=UTF-8''{encoded}")
}

fn send(mime: &str, name: &str, sha256: &str, content: Content) -> Response {
    let body = match content {
        Content::File(f) => Body::from_stream(tokio_util::io::ReaderStream::new(f)),
        Content::Bytes(b) => Body::from(b),
    };
    let mut resp = body.into_response();
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(mime) {
        h.insert(header::CONTENT_TYPE, v);
    }
    if let Ok(v) = HeaderValue::from_str(&disposition(name)) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    if let Ok(v) = HeaderValue::from_str(&format!("\"{sha256}\"")) {
        h.insert(header::ETAG, v);
    }
    // Content never changes under its hash; it is private to those who may see the case.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("private, max-age=86400, immutable"));
    // A PDF or image is shown, never run.
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static("default-src 'none'; img-src 'self'; sandbox"));
    resp
}
