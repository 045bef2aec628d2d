//! Pages and operational endpoints: the embedded landing page (zh-CN first), the offline API docs page,
//! static assets with cache headers, the bundled front-end libraries (`/web/…`, built by `build.rs`)
//! and their licences (`/licenses`), `/healthz` and `/readyz`. Nothing here loads from outside.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::response::{Html, IntoResponse, Response};
use rust_embed::RustEmbed;
use serde_json::json;

use crate::state::AppState;

/// Files under `crates/http/assets/`, compiled into the binary.
#[derive(RustEmbed)]
#[folder = "assets/"]
struct Assets;

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn asset_text(name: &str) -> String {
    Assets::get(name).map(|f| String::from_utf8_lossy(&f.data).into_owned()).unwrap_or_default()
}

/// The landing page: what is running and where to go.
pub async fn index(State(state): State<AppState>) -> Response {
    let town = state
        .world()
        .town
        .as_ref()
        .map_or("（尚未配置镇）".to_owned(), |t| format!("{} {}", t.name_zh, t.name_en));
    let backend = match state.store.backend() {
        civicgrid_store::Backend::Sqlite => "SQLite（嵌入式）",
        civicgrid_store::Backend::Postgres => "PostgreSQL",
    };
    let page = asset_text("index.html")
        .replace("{{town}}", &escape(&town))
        .replace("{{backend}}", backend)
        .replace("{{micro_grids}}", &state.world().index.len().to_string())
        .replace("{{version}}", env!("CARGO_PKG_VERSION"));
    Html(page).into_response()
}

/// The offline API documentation page (renders `/api/v1/openapi.json`).
pub async fn docs() -> Response {
    Html(asset_text("docs.html")).into_response()
}

/// Embedded static files, cached for a day.
pub async fn asset(Path(path): Path<String>) -> Response {
    match Assets::get(&path) {
        Some(file) => {
            let mime = file.metadata.mimetype().to_owned();
            ([(CONTENT_TYPE, mime), (CACHE_CONTROL, "public, max-age=86400".to_owned())], file.data).into_response()
        }
        None => (StatusCode::NOT_FOUND, "not found").into_response(),
    }
}

/// Liveness: the process is up.
#[utoipa::path(get, path = "/healthz", tag = "ops", responses((status = 200, description = "process up")))]
pub async fn healthz() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

/// Readiness: the database answers, the group-commit writer runs, and so does every background task
/// (live feed, reference refresh, job runner). A load balancer takes a node that is not ready out.
#[utoipa::path(get, path = "/readyz", tag = "ops", responses((status = 200), (status = 503)))]
pub async fn readyz(State(state): State<AppState>) -> Response {
    if let Err(e) = state.store.ping().await {
        tracing::warn!(error = %e, "readiness check failed");
        let why =
            if matches!(e, civicgrid_store::StoreError::Closed) { "writer stopped" } else { "database unreachable" };
        return (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"status": why}))).into_response();
    }
    let dead = state.dead_tasks();
    if !dead.is_empty() {
        tracing::error!(tasks = ?dead, "background tasks stopped; not ready");
        return (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"status": "background task stopped", "tasks": dead})))
            .into_response();
    }
    Json(json!({"status": "ready"})).into_response()
}

mod web {
    include!(concat!(env!("OUT_DIR"), "/web_assets.rs"));
}

/// A bundled front-end file (`/web/{name}`): esbuild's output of the npm libraries, embedded at build
/// time. Hashed names (fonts, images) are cached for a year; the bundles are revalidated by entity tag.
pub async fn web_asset(Path(name): Path<String>, headers: axum::http::HeaderMap) -> Response {
    let Some((_, bytes, etag)) = web::WEB_ASSETS.iter().find(|(n, _, _)| *n == name) else {
        return (StatusCode::NOT_FOUND, "not found").into_response();
    };
    let cache = if name.contains('-') { "public, max-age=31536000, immutable" } else { "no-cache" };
    if headers.get(axum::http::header::IF_NONE_MATCH).is_some_and(|v| v.as_bytes() == etag.as_bytes()) {
        return (StatusCode::NOT_MODIFIED, [(axum::http::header::ETAG, *etag), (CACHE_CONTROL, cache)]).into_response();
    }
    let mime = match name.rsplit('.').next() {
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("woff2") => "font/woff2",
        Some("png") => "image/png",
        Some("json") => "application/json",
        _ => "application/octet-stream",
    };
    ([(CONTENT_TYPE, mime), (CACHE_CONTROL, cache), (axum::http::header::ETAG, *etag)], *bytes).into_response()
}

/// One shipped third-party package and its licence texts.
#[derive(serde::Deserialize)]
struct Shipped {
    name: String,
    version: String,
    license: String,
    texts: std::collections::BTreeMap<String, String>,
}

/// `/licenses`: every third-party package the pages ship, its licence and the full texts (ECharts'
/// NOTICE among them), gathered from the installed packages when the bundle was built.
pub async fn licenses() -> Response {
    let json = web::WEB_ASSETS.iter().find(|(n, _, _)| *n == "licenses.json").map_or(&b"[]"[..], |(_, b, _)| *b);
    let shipped: Vec<Shipped> = serde_json::from_slice(json).unwrap_or_default();
    let mut body = String::from(
        "<!doctype html><html lang=\"zh-CN\"><head><meta charset=\"utf-8\"><title>第三方软件许可 · Licences</title>\
         <link rel=\"stylesheet\" href=\"/web/fonts.css\"><link rel=\"stylesheet\" href=\"/static/style.css\"></head><body><main>\
         <h1>第三方软件许可 <small>Third-party licences</small></h1>\
         <p>civicgrid 的网页内嵌以下开源软件（离线提供，不从外部加载）。The pages embed the following open-source \
         software, served from the binary.</p><ul>",
    );
    for s in &shipped {
        body.push_str(&format!(
            "<li><a href=\"#{0}\">{0}</a> {1} — {2}</li>",
            escape(&s.name),
            escape(&s.version),
            escape(&s.license)
        ));
    }
    body.push_str("</ul>");
    for s in &shipped {
        body.push_str(&format!(
            "<h2 id=\"{0}\">{0} {1} ({2})</h2>",
            escape(&s.name),
            escape(&s.version),
            escape(&s.license)
        ));
        for (file, text) in &s.texts {
            body.push_str(&format!("<h3>{}</h3><pre>{}</pre>", escape(file), escape(text)));
        }
    }
    body.push_str("</main></body></html>");
    Html(body).into_response()
}
