//! Pages and operational endpoints: the embedded landing page (zh-CN first), the offline API docs page,
//! static assets with cache headers, `/healthz` and `/readyz`. Nothing here loads from outside.

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
