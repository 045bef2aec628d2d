//! Prometheus metrics at `/metrics`: requests per matched route (not raw path, so the label set stays
//! bounded) with latency histograms, the group-commit writer's batch sizes and commit times (recorded
//! by the store), job queue depth, live-feed subscribers, the newest event number, how far each
//! reader of the event log is behind it, and the working calendar's missing year. Scraped by a
//! Prometheus on the same machine (loopback) or by an administrator's session.

use std::sync::OnceLock;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::auth::{Authed, ClientAddr};
use crate::state::AppState;

/// The event log's readers whose lag is exported: how many entries lie between each one's position
/// and the newest case entry (the entries it reads).
const LOG_READERS: [&str; 2] = [civicgrid_service::deadlines::TIMERS_CONSUMER, civicgrid_service::kpi::KPI_CONSUMER];

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the process-wide recorder once; later calls return the same handle.
pub fn install() -> Option<PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let seconds = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];
            let sizes = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0];
            let built = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &seconds)
                .and_then(|b| b.set_buckets_for_metric(Matcher::Full("civicgrid_writer_batch_size".into()), &sizes))
                .and_then(|b| b.install_recorder());
            match built {
                Ok(h) => {
                    // Histograms buffer samples until drained: drain them even when nobody scrapes.
                    let upkeep = h.clone();
                    std::thread::Builder::new()
                        .name("metrics-upkeep".into())
                        .spawn(move || {
                            loop {
                                std::thread::sleep(std::time::Duration::from_secs(5));
                                upkeep.run_upkeep();
                            }
                        })
                        .ok();
                    Some(h)
                }
                Err(e) => {
                    tracing::warn!(error = %e, "metrics recorder not installed");
                    None
                }
            }
        })
        .clone()
}

/// Counts and times every request by method, matched route and status.
pub async fn track(req: Request, next: Next) -> Response {
    let route = req.extensions().get::<MatchedPath>().map_or("unmatched", |m| m.as_str()).to_owned();
    let method = req.method().as_str().to_owned();
    let started = Instant::now();
    let resp = next.run(req).await;
    let status = resp.status().as_u16().to_string();
    metrics::counter!("civicgrid_http_requests_total", "method" => method.clone(), "route" => route.clone(), "status" => status)
        .increment(1);
    metrics::histogram!("civicgrid_http_request_duration_seconds", "method" => method, "route" => route)
        .record(started.elapsed().as_secs_f64());
    resp
}

/// The metrics in Prometheus' text format (loopback clients not behind a proxy, and administrators).
pub async fn render(
    State(state): State<AppState>,
    ClientAddr(addr): ClientAddr,
    headers: axum::http::HeaderMap,
    authed: Option<Authed>,
) -> Response {
    // A request a proxy forwarded is not a local scrape, even when the proxy runs on this host.
    let forwarded = headers.contains_key("x-forwarded-for") || headers.contains_key(axum::http::header::FORWARDED);
    let local = addr.is_some_and(|a| a.is_loopback()) && !forwarded;
    let admin = authed.as_ref().is_some_and(|Authed(a)| a.role == civicgrid_core::access::Role::Admin);
    if !(local || admin) {
        return crate::error::ApiError::forbidden("metrics are for the local Prometheus and administrators")
            .into_response();
    }
    let Some(handle) = install() else {
        return (StatusCode::SERVICE_UNAVAILABLE, "metrics recorder not installed").into_response();
    };
    match state.store.job_counts().await {
        Ok(c) => {
            metrics::gauge!("civicgrid_jobs", "state" => "pending").set(c.pending as f64);
            metrics::gauge!("civicgrid_jobs", "state" => "running").set(c.running as f64);
            metrics::gauge!("civicgrid_jobs", "state" => "dead").set(c.dead as f64);
        }
        Err(e) => tracing::warn!(error = %e, "job counts unavailable for metrics"),
    }
    metrics::gauge!("civicgrid_feed_subscribers").set(state.feed.subscribers() as f64);
    // The year whose holidays deadlines already reach but nobody has entered (0: none), for an alert rule.
    let missing = state.services.missing_calendar_year().map_or(0, i32::from);
    metrics::gauge!("civicgrid_calendar_missing_year").set(f64::from(missing));
    metrics::gauge!("civicgrid_event_log_head").set(state.feed.head() as f64);
    match state.store.last_case_seq().await {
        Ok(last) => {
            for reader in LOG_READERS {
                match state.store.consumer_position(reader).await {
                    Ok(position) => {
                        let behind = (last - position.unwrap_or(last)).max(0);
                        metrics::gauge!("civicgrid_log_reader_behind", "reader" => reader).set(behind as f64);
                    }
                    Err(e) => tracing::warn!(error = %e, reader, "log reader position unavailable for metrics"),
                }
            }
        }
        Err(e) => tracing::warn!(error = %e, "event log unavailable for metrics"),
    }
    ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], handle.render()).into_response()
}
