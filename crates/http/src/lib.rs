//! civicgrid-http: the JSON API under `/api/v1`, the embedded pages and the health endpoints.
//!
//! - [`state`] — what handlers share (store, clock, reference data).
//! - [`auth`] — passwords, sessions, login and the `Authed` extractor.
//! - [`cases`], [`reference`], [`admin`] — the API handlers.
//! - [`stream`] — the live feed over Server-Sent Events.
//! - [`pages`] — landing page, API docs page, static files, health.
//! - [`openapi`] — the generated OpenAPI 3.1 document.
//! - [`error`], [`extract`] — errors as `{"code","message","field"}`.

pub mod admin;
pub mod auth;
pub mod cases;
pub mod error;
pub mod extract;
pub mod openapi;
pub mod pages;
pub mod reference;
pub mod state;
pub mod stream;

use axum::Router;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::compression::CompressionLayer;
use tower_http::trace::TraceLayer;

pub use state::{AppState, HttpConfig};

/// Largest request body accepted.
pub const MAX_BODY: usize = 1 << 20;

/// The whole application.
pub fn router(state: AppState) -> Router {
    let api = Router::new()
        .route(
            "/openapi.json",
            get(|| async { ([(CONTENT_TYPE, "application/json")], openapi::json()).into_response() }),
        )
        .route("/auth/login", post(auth::login))
        .route("/auth/logout", post(auth::logout))
        .route("/auth/me", get(auth::whoami))
        .route("/auth/password", post(auth::change_password))
        .route("/town", get(reference::town))
        .route("/workstations", get(reference::workstations))
        .route("/grids", get(reference::grids))
        .route("/grids.geojson", get(reference::grids_geojson))
        .route("/micro-grids.geojson", get(reference::micro_grids_geojson))
        .route("/locate", get(reference::locate))
        .route("/departments", get(reference::departments))
        .route("/code-tables/matters", get(reference::matters))
        .route("/code-tables/components", get(reference::component_classes))
        .route("/calendar", get(reference::calendar).put(admin::put_calendar))
        .route("/users", get(admin::list_users).post(admin::create_user))
        .route("/login-locks/{username}", axum::routing::delete(admin::unlock_user))
        .route("/users/{id}/password", post(admin::reset_password))
        .route("/users/{id}/state", axum::routing::put(admin::set_user_state))
        .route("/users/{id}/sessions", axum::routing::delete(admin::end_sessions))
        .route("/service-accounts", get(admin::list_service_accounts).post(admin::create_service_account))
        .route("/service-accounts/{id}/state", axum::routing::put(admin::set_service_account_state))
        .route("/service-accounts/{id}/keys", post(admin::issue_api_key))
        .route("/api-keys/{id}", axum::routing::delete(admin::revoke_api_key))
        .route("/stream", get(stream::stream))
        .route("/components", get(reference::components))
        .route("/components/{id}", get(reference::component).put(admin::put_component))
        .route("/cases", post(cases::create_case).get(cases::list_cases))
        .route("/cases/{id}", get(cases::get_case))
        .route("/cases/{id}/transitions", post(cases::transition))
        .route("/cases/{id}/events", get(cases::case_events))
        .fallback(|| async { error::ApiError::not_found("endpoint") });
    Router::new()
        .route("/", get(pages::index))
        .route("/docs", get(pages::docs))
        .route("/static/{*path}", get(pages::asset))
        .route("/healthz", get(pages::healthz))
        .route("/readyz", get(pages::readyz))
        .nest("/api/v1", api)
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .layer(axum::middleware::map_response(error::json_errors))
        .layer(CompressionLayer::new())
        .layer(CatchPanicLayer::custom(error::panicked))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

/// Serves until `shutdown` resolves, then lets in-flight requests finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = router(state).into_make_service_with_connect_info::<std::net::SocketAddr>();
    axum::serve(listener, app).with_graceful_shutdown(shutdown).await
}
