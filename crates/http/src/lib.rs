//! civicgrid-http: the JSON API under `/api/v1`, the embedded pages and the health endpoints.
//!
//! - [`state`] — what handlers share (store, clock, reference data).
//! - [`auth`] — passwords, sessions, login and the `Authed` extractor.
//! - [`cases`], [`attachments`], [`reference`], [`admin`], [`duty`], [`kpi`] — the API handlers.
//! - [`cockpit`] — the big screen's reads: the open cases now, the KPI figures, the smart components.
//! - [`stream`] — the live feed over Server-Sent Events.
//! - [`ui`] — the consoles: login, each post's queues, the case page, the report form, the inbox.
//! - [`pages`] — the about page, API docs page, static files, bundled libraries, health.
//! - [`metrics`] — Prometheus metrics.
//! - [`open311`] — Open311 GeoReport v2 (`/open311/v2`), JSON and XML.
//! - [`iot`] — devices, their tokens and telemetry (HTTP ingest, latest values, history).
//! - [`intake`] — tickets pushed by the 12345 and 110 systems, the diversion catalogue, reply hooks.
//! - [`openapi`] — the generated OpenAPI 3.1 document.
//! - [`error`], [`extract`] — errors as `{"code","message","field"}`.

pub mod admin;
pub mod attachments;
pub mod auth;
pub mod cases;
pub mod cockpit;
pub mod duty;
pub mod error;
pub mod extract;
pub mod intake;
pub mod iot;
pub mod kpi;
pub mod metrics;
pub mod open311;
pub mod openapi;
pub mod pages;
pub mod reference;
pub mod state;
pub mod stream;
pub mod ui;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderValue, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::compression::CompressionLayer;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::TraceLayer;

pub use state::{AppState, HttpConfig};

/// The pages' content security policy: everything from this server only (every asset is compiled
/// in), no inline script or style, never framed by another site.
pub const CSP: &str = "default-src 'self'; img-src 'self' data: blob:; object-src 'none'; base-uri 'self'; \
                       form-action 'self'; frame-ancestors 'none'";

/// The origin (`scheme://host[:port]`) of a tile server's URL template, which the pages' content
/// security policy then lets images come from; `None` unless it is an http(s) URL with `{z}`, `{x}`
/// and `{y}` and nothing that could break out of a header or an attribute.
pub fn tiles_origin(template: &str) -> Option<String> {
    let rest = template
        .strip_prefix("https://")
        .map(|r| ("https", r))
        .or_else(|| template.strip_prefix("http://").map(|r| ("http", r)));
    let (scheme, rest) = rest?;
    let host = rest.split('/').next().filter(|h| !h.is_empty())?;
    let clean = |c: char| c.is_ascii_graphic() && !matches!(c, '"' | '\'' | ';' | ',' | '<' | '>' | '\\' | '`');
    let placeholders = ["{z}", "{x}", "{y}"].iter().all(|p| template.contains(p));
    (template.len() <= 500
        && template.chars().all(clean)
        && placeholders
        && host.chars().all(|c| c.is_ascii_alphanumeric() || ".-:[]".contains(c)))
    .then(|| format!("{scheme}://{host}"))
}

/// The pages' content security policy, with the tile server's origin among the image sources when
/// one is configured.
fn csp(config: &HttpConfig) -> HeaderValue {
    match config.map_tiles.as_deref().and_then(tiles_origin) {
        Some(origin) => HeaderValue::from_str(
            &CSP.replace("img-src 'self' data: blob:", &format!("img-src 'self' data: blob: {origin}")),
        )
        .unwrap_or(HeaderValue::from_static(CSP)),
        None => HeaderValue::from_static(CSP),
    }
}

/// Largest request body accepted.
pub const MAX_BODY: usize = 1 << 20;

/// The whole application.
pub fn router(state: AppState) -> Router {
    let policy = csp(&state.config);
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
        .route("/departments/{code}", axum::routing::put(admin::put_department))
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
        .route(
            "/service-accounts/{id}/reply-hook",
            axum::routing::put(intake::put_reply_hook).delete(intake::delete_reply_hook),
        )
        .route("/reply-hooks", get(intake::reply_hooks))
        .route("/intake/tickets", post(intake::push_ticket))
        .route("/devices", get(iot::devices).post(iot::put_device))
        .route("/devices/{id}/token", post(iot::issue_token))
        .route("/devices/{id}/latest", get(iot::latest))
        .route("/devices/{id}/readings", get(iot::readings))
        .route("/devices/{id}/rollups", get(iot::rollups))
        .route("/alarms", get(iot::alarms))
        .route("/alarms/{id}", get(iot::alarm))
        .route("/alarms/{id}/ack", post(iot::acknowledge_alarm))
        .route("/alarm-rules", get(iot::alarm_rules).put(iot::put_alarm_rules))
        .route("/people-flow", get(iot::people_flow))
        .route(
            "/telemetry",
            post(iot::telemetry).layer(axum::extract::DefaultBodyLimit::max(civicgrid_core::iot::MAX_PAYLOAD + 1024)),
        )
        .route("/diversions", get(intake::diversions).put(intake::put_diversions))
        .route("/api-keys/{id}", axum::routing::delete(admin::revoke_api_key))
        .route("/stream", get(stream::stream))
        .route("/sla-policy", get(duty::sla_policy).put(duty::put_sla_policy))
        .route("/routing-rules", get(duty::routing_rules).put(duty::put_routing_rules))
        .route("/cases/{id}/route", get(duty::case_route))
        .route("/cases/{id}/duplicates", get(duty::case_duplicates))
        .route("/kpi", get(kpi::table))
        .route("/cockpit/situation", get(cockpit::situation))
        .route("/cockpit/figures", get(cockpit::figures))
        .route("/cockpit/sensing", get(cockpit::sensing))
        .route("/kpi.xlsx", get(kpi::xlsx))
        .route("/duty-roster", get(duty::roster).put(duty::put_roster))
        .route("/notifications", get(duty::inbox))
        .route("/notifications/summary", get(duty::inbox_summary))
        .route("/notifications/{id}/read", post(duty::mark_read))
        .route("/notifications/{id}/ack", post(duty::acknowledge))
        .route("/notify-channels", get(duty::channels).post(duty::create_channel))
        .route("/notify-channels/{id}/state", axum::routing::put(duty::set_channel_state))
        .route("/components", get(reference::components))
        .route("/components/{id}", get(reference::component).put(admin::put_component))
        .route("/cases", post(cases::create_case).get(cases::list_cases))
        .route("/cases/{id}", get(cases::get_case))
        .route("/cases/{id}/transitions", post(cases::transition))
        .route("/cases/{id}/events", get(cases::case_events))
        .route("/cases/{id}/attachments", get(attachments::of_case))
        .route(
            "/attachments",
            post(attachments::upload).layer(axum::extract::DefaultBodyLimit::max(attachments::MAX_UPLOAD_BODY)),
        )
        .route("/attachments/{id}", get(attachments::metadata))
        .route("/attachments/{id}/content", get(attachments::content))
        .route("/attachments/{id}/thumbnail", get(attachments::thumbnail))
        .fallback(|| async { error::ApiError::not_found("endpoint") });
    Router::new()
        .merge(ui::routes())
        .route("/about", get(pages::index))
        .route("/docs", get(pages::docs))
        .route("/static/{*path}", get(pages::asset))
        .route("/web/{name}", get(pages::web_asset))
        .route("/licenses", get(pages::licenses))
        .route("/healthz", get(pages::healthz))
        .route("/readyz", get(pages::readyz))
        .route("/metrics", get(metrics::render))
        .nest("/api/v1", api)
        .nest("/open311/v2", open311::routes(state.clone()))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .layer(SetResponseHeaderLayer::if_not_present(header::CONTENT_SECURITY_POLICY, policy))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")))
        .layer(SetResponseHeaderLayer::if_not_present(header::REFERRER_POLICY, HeaderValue::from_static("same-origin")))
        .layer(axum::middleware::map_response(error::json_errors))
        .route_layer(axum::middleware::from_fn(metrics::track))
        .layer(CompressionLayer::new())
        .layer(CatchPanicLayer::custom(error::panicked))
        // Spans name the path only: a query string may carry a public reporter's query code.
        .layer(TraceLayer::new_for_http().make_span_with(|req: &axum::http::Request<_>| {
            tracing::debug_span!("request", method = %req.method(), path = %req.uri().path())
        }))
        .with_state(state)
}

/// How the server treats connections.
#[derive(Debug, Clone, Copy)]
pub struct ServeOptions {
    /// Connections held open at once; further clients wait in the kernel's backlog.
    pub max_connections: usize,
    /// Time a client has to send a request's headers, and the longest a kept-alive connection may idle
    /// between requests.
    pub header_timeout: Duration,
    /// Time a client has to send a request's body.
    pub body_timeout: Duration,
    /// How long shutdown waits for open requests (live feeds never finish by themselves).
    pub drain_timeout: Duration,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            max_connections: 10_000,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            drain_timeout: Duration::from_secs(5),
        }
    }
}

/// Serves with the default [`ServeOptions`] until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with(listener, state, ServeOptions::default(), shutdown).await
}

/// Serves until `shutdown` resolves, then lets in-flight requests finish for a while. Slow clients
/// cannot hold connections: headers and bodies must arrive in time and connections are capped.
pub async fn serve_with(
    listener: tokio::net::TcpListener,
    state: AppState,
    options: ServeOptions,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use hyper_util::rt::{TokioIo, TokioTimer};
    let app = router(state).layer(tower_http::timeout::RequestBodyTimeoutLayer::new(options.body_timeout));
    let slots = Arc::new(tokio::sync::Semaphore::new(options.max_connections.max(1)));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(options.header_timeout).keep_alive(true);
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => p.map_err(std::io::Error::other)?,
            () = &mut shutdown => break,
        };
        let (stream, addr) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: wait a little instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let app = app.clone();
        let service = hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
            req.extensions_mut().insert(axum::extract::ConnectInfo(addr));
            tower::ServiceExt::oneshot(app.clone(), req)
        });
        let conn = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, %addr, "connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    if tokio::time::timeout(options.drain_timeout, graceful.shutdown()).await.is_err() {
        tracing::info!("shutdown: closing connections still open (live feeds)");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_tile_urls_open_the_image_policy() {
        assert_eq!(
            tiles_origin("https://t0.tianditu.local/vec_w/{z}/{x}/{y}.png").as_deref(),
            Some("https://t0.tianditu.local")
        );
        assert_eq!(tiles_origin("http://10.1.2.3:8080/tiles/{z}/{x}/{y}").as_deref(), Some("http://10.1.2.3:8080"));
        for bad in [
            "ftp://tiles/{z}/{x}/{y}",
            "https://tiles.local/{z}/{x}",
            "https://tiles.local/{z}/{x}/{y}; script-src *",
            "https://tiles.local/{z}/{x}/{y}\" onload=\"x",
            "https:///{z}/{x}/{y}",
            "javascript:alert(1)//{z}{x}{y}",
        ] {
            assert_eq!(tiles_origin(bad), None, "{bad}");
        }
        let with =
            HttpConfig { map_tiles: Some("https://tiles.local/{z}/{x}/{y}.png".into()), ..HttpConfig::default() };
        let policy = csp(&with);
        assert!(policy.to_str().expect("ascii").contains("img-src 'self' data: blob: https://tiles.local;"));
        assert_eq!(csp(&HttpConfig::default()), HeaderValue::from_static(CSP));
    }
}
