//! The live feed over Server-Sent Events: `GET /api/v1/stream` pushes every committed event the caller
//! may see, in global order: `case` events (a grid worker only their grids' cases, a department only its
//! own) and, to the centre's posts, `alarm` changes of the smart components. Each
//! message's `id` is the event's global sequence number, so a browser's `EventSource` resumes after a
//! dropped connection with `Last-Event-ID` and misses nothing; `?after=N` does the same on the first
//! connection.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;
use serde::Deserialize;
use utoipa::IntoParams;

use civicgrid_store::FeedEntry;

use crate::auth::Authed;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::ApiQuery;
use crate::state::AppState;

/// Where to resume.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct StreamQuery {
    /// Send the events after this global sequence number first (`Last-Event-ID` wins when both are given).
    pub after: Option<i64>,
}

/// Live feed of committed case events and alarm changes (Server-Sent Events, `event: case` or
/// `event: alarm`, `id:` = global sequence).
#[utoipa::path(get, path = "/api/v1/stream", tag = "cases", params(StreamQuery,
        ("Last-Event-ID" = Option<i64>, Header, description = "resume after this global sequence number")),
    responses((status = 200, content_type = "text/event-stream", body = civicgrid_store::LogEntry,
            description = "a stream of `case` events, each a JSON log entry, and (to the centre's posts) \
                `alarm` events, each a JSON `AlarmLogEntry`"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub async fn stream(
    State(state): State<AppState>,
    Authed(actor): Authed,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<StreamQuery>,
) -> ApiResult<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    let header = headers
        .get("last-event-id")
        .map(|v| v.to_str().ok().and_then(|s| s.trim().parse::<i64>().ok()).filter(|n| *n >= 0))
        .map(|v| v.ok_or_else(|| ApiError::invalid("Last-Event-ID", "a global sequence number")))
        .transpose()?;
    if q.after.is_some_and(|n| n < 0) {
        return Err(ApiError::invalid("after", "a global sequence number"));
    }
    let subscription = state.feed.subscribe(actor, header.or(q.after));
    let events = futures_util::stream::unfold(subscription, |mut sub| async move {
        match sub.next().await {
            Ok(Some(entry)) => {
                let event = Event::default().id(entry.seq().to_string());
                let event = match entry.as_ref() {
                    FeedEntry::Case(e) => event.event("case").json_data(e),
                    FeedEntry::Alarm(e) => event.event("alarm").json_data(e),
                };
                match event {
                    Ok(e) => Some((Ok(e), sub)),
                    Err(e) => {
                        tracing::error!(error = %e, "cannot encode a feed entry");
                        None
                    }
                }
            }
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(error = %e, "a live-feed subscriber stopped");
                None
            }
        }
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}
