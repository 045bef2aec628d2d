//! The consoles: server-rendered pages (askama templates under `crates/http/templates/`) for every
//! post, with htmx for partial refreshes and the live feed for updates. The pages call the same
//! service layer as the JSON API; nothing here decides what a post may do.
//!
//! - [`i18n`] — the catalogues (zh-CN, en) and local time.
//! - [`login`] — log in, log out, password change, the language switch.
//! - [`console`] — the landing page: each post's queues.
//! - [`case`] — one case: facts, deadlines, photos, timeline, and the steps this post may take now.
//! - [`report`] — the operators' report form.
//! - [`inbox`] — the person's notifications.
//! - [`alarms`] — the smart components' alarms and people flow.
//! - [`admin`] — the administrator's pages: accounts, keys, calendar, time limits, routing, roster.
//! - [`kpi`] — the KPI tables with their XLSX export.
//! - [`cockpit`] — the big-screen cockpit's page (drawn by `web/src/cockpit.js`).
//! - [`h5`] — the citizen H5 page: report without an account, track, rate, "not fixed".
//!
//! Forms are protected twice: the session cookie is `SameSite=Strict`, and every form carries a token
//! derived from the session ([`Session::csrf`]) that the handler checks.

pub mod admin;
pub mod alarms;
pub mod case;
pub mod cockpit;
pub mod console;
pub mod h5;
pub mod i18n;
pub mod inbox;
pub mod kpi;
pub mod login;
pub mod report;

use askama::Template;
use axum::Router;
use axum::extract::FromRequestParts;
use axum::http::header::{CACHE_CONTROL, LOCATION};

use crate::auth::cookie;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use civicgrid_core::access::{Actor, Role};

use crate::state::AppState;
use i18n::{Catalog, Lang};

/// Name of the language cookie.
pub const LANG_COOKIE: &str = "cg_lang";

/// The pages' routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(console::home))
        .route("/queue", get(console::queue))
        .route("/login", get(login::form).post(login::submit))
        .route("/logout", post(login::logout))
        .route("/account/password", get(login::password_form).post(login::password_submit))
        .route("/lang", get(login::switch_language))
        .route("/inbox", get(inbox::page))
        .route("/cockpit", get(cockpit::page))
        .route("/kpi", get(kpi::page))
        .route("/admin", get(admin::home))
        .route("/admin/{section}", get(admin::section).post(admin::change_section))
        .route("/admin/{section}/{id}", post(admin::change_item))
        .route("/inbox/{id}", post(inbox::mark))
        .route("/alarms", get(alarms::page))
        .route("/alarms/{id}/ack", post(alarms::acknowledge))
        .route("/cases/{id}", get(case::page))
        .route(
            "/cases/{id}/act",
            post(case::act).layer(axum::extract::DefaultBodyLimit::max(crate::attachments::MAX_UPLOAD_BODY)),
        )
        .route("/h5", get(h5::home))
        .route(
            "/h5/report",
            get(h5::report_form)
                .post(h5::report_submit)
                .layer(axum::extract::DefaultBodyLimit::max(h5::MAX_REPORT_BODY)),
        )
        .route("/h5/suggest", get(h5::suggest_form).post(h5::suggest_submit))
        .route("/h5/track", get(h5::track).post(h5::answer))
        .route("/h5/grids.geojson", get(h5::grids))
        .route(
            "/report",
            get(report::form)
                .post(report::submit)
                .layer(axum::extract::DefaultBodyLimit::max(crate::attachments::MAX_UPLOAD_BODY)),
        )
}

/// The language a request asks for (its cookie), zh-CN by default.
pub fn lang_of(headers: &HeaderMap) -> Lang {
    cookie(headers, LANG_COOKIE).map_or(Lang::Zh, |v| Lang::from_tag(&v))
}

/// A logged-in person on a page. Without a live session the page answers with the login page's
/// address (a redirect, or `HX-Redirect` for an htmx request).
#[derive(Debug, Clone)]
pub struct Session {
    /// Who.
    pub actor: Actor,
    /// Their session token (for the form token; never rendered).
    token: String,
    /// Their language.
    pub lang: Lang,
}

impl Session {
    /// The form token of this session: a hash of the session token, so a page from another site
    /// cannot know it.
    pub fn csrf(&self) -> String {
        crate::auth::token_hash(&format!("civicgrid-form:{}", self.token))[..32].to_owned()
    }

    /// The refusal of a form whose token is not this session's; `None` when it is.
    pub fn csrf_refusal(&self, sent: &str) -> Option<Response> {
        if sent.len() == 32 && sent == self.csrf() {
            return None;
        }
        tracing::warn!(user = self.actor.username, "form with a wrong token refused");
        Some(message(self.lang, StatusCode::FORBIDDEN, "error.csrf"))
    }

    /// This session's catalogue.
    pub fn t(&self) -> &'static Catalog {
        self.lang.catalog()
    }
}

impl FromRequestParts<AppState> for Session {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let lang = lang_of(&parts.headers);
        let token = cookie(&parts.headers, crate::auth::COOKIE_NAME).filter(|t| !t.is_empty() && t.len() <= 128);
        let actor = match &token {
            Some(t) => state.services.session_actor(t).await.ok(),
            None => None,
        };
        match (actor, token) {
            (Some(actor), Some(token)) => Ok(Session { actor, token, lang }),
            _ => Err(to_login(parts)),
        }
    }
}

/// Where a request without a session goes: the login page, coming back here afterwards.
fn to_login(parts: &Parts) -> Response {
    let here = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let back = if parts.method == axum::http::Method::GET { here } else { "/" };
    let target = format!("/login?next={}", urlencode(back));
    if parts.headers.contains_key("hx-request") {
        let mut resp = StatusCode::UNAUTHORIZED.into_response();
        if let Ok(v) = HeaderValue::from_str(&target) {
            resp.headers_mut().insert("hx-redirect", v);
        }
        return resp;
    }
    see_other(&target)
}

/// A 303 to `to` (after a form, or to the login page).
pub fn see_other(to: &str) -> Response {
    let mut resp = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(to) {
        resp.headers_mut().insert(LOCATION, v);
    }
    resp
}

/// Percent-encodes a query value.
pub fn urlencode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => out.push(b as char),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// A local path to return to after logging in: one of ours (`/…`, not `//host`), else `/`.
pub fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n) if n.starts_with('/') && !n.starts_with("//") && !n.contains('\\') && n.len() <= 512 => n.to_owned(),
        _ => "/".to_owned(),
    }
}

/// The snake_case name an enumeration has in JSON (and in the forms and the catalogue's keys).
pub fn snake_name(value: impl serde::Serialize) -> String {
    serde_json::to_value(value).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
}

/// The value of an enumeration a form names by its snake_case name.
pub fn from_snake<T: serde::de::DeserializeOwned>(name: &str) -> Option<T> {
    serde_json::from_value(serde_json::Value::String(name.to_owned())).ok()
}

/// Whether a refusal (`error`, naming `field`) has no place beside one of a form's `placed` fields,
/// and so is shown at the top of the form.
pub fn unplaced(error: &str, field: &str, placed: &[&str]) -> bool {
    !error.is_empty() && !placed.contains(&field)
}

/// One entry of the page header's navigation.
#[derive(Debug, Clone)]
pub struct Nav {
    /// Where it goes.
    pub href: &'static str,
    /// Its label.
    pub label: &'static str,
    /// Whether it is the current page.
    pub active: bool,
    /// A count shown beside it (unread messages).
    pub badge: Option<i64>,
}

/// What every logged-in page shows around its content: who is logged in, the navigation, the
/// language switch and the form token.
#[derive(Debug, Clone)]
pub struct Frame {
    /// The catalogue.
    pub t: &'static Catalog,
    /// The page's language tag.
    pub lang: &'static str,
    /// The switch's target language tag and label.
    pub other_lang: &'static str,
    /// The page's title.
    pub title: String,
    /// The person's display name.
    pub user: String,
    /// Their post.
    pub role: &'static str,
    /// The form token.
    pub csrf: String,
    /// Navigation.
    pub nav: Vec<Nav>,
    /// This page's path (the language switch returns here).
    pub here: String,
    /// The town's name.
    pub town: String,
    /// An intranet tile server's URL template for the small maps, or empty.
    pub tiles: String,
}

impl Frame {
    /// The frame of a page at `here`, titled by the catalogue key `title`.
    pub async fn new(state: &AppState, s: &Session, here: &str, title: &str) -> Frame {
        let t = s.t();
        let unread = state.services.inbox_summary(&s.actor).await.map(|i| i.unread).ok();
        let role = s.actor.role;
        let mut nav = vec![("/", "nav.console", None)];
        if role.may_report() && role != Role::Citizen {
            nav.push(("/report", "nav.report", None));
        }
        if civicgrid_service::cockpit::WATCHERS.contains(&role) {
            nav.push(("/cockpit", "nav.cockpit", None));
            nav.push(("/kpi", "nav.kpi", None));
        }
        if civicgrid_service::alarms::WATCHERS.contains(&role) {
            nav.push(("/alarms", "nav.alarms", None));
        }
        if role == Role::Admin {
            nav.push(("/admin", "nav.admin", None));
        }
        nav.push(("/inbox", "nav.inbox", unread.filter(|n| *n > 0)));
        nav.push(("/docs", "nav.api", None));
        let nav = nav
            .into_iter()
            .map(|(href, key, badge)| Nav { href, label: t.get(key), active: href == here, badge })
            .collect();
        let town = state.world().town.as_ref().map(|w| match s.lang {
            Lang::Zh => w.name_zh.clone(),
            Lang::En => w.name_en.clone(),
        });
        Frame {
            t,
            lang: s.lang.tag(),
            other_lang: s.lang.other().tag(),
            title: t.get(title).to_owned(),
            user: state.services.me(&s.actor).await.map_or_else(|_| s.actor.username.clone(), |u| u.display_name),
            role: t.role(role),
            csrf: s.csrf(),
            nav,
            here: here.to_owned(),
            town: town.unwrap_or_default(),
            tiles: state.config.map_tiles.clone().filter(|t| crate::tiles_origin(t).is_some()).unwrap_or_default(),
        }
    }
}

/// Renders a template as a page that is never cached (it shows personal work).
pub fn render(status: StatusCode, page: &impl Template) -> Response {
    match page.render() {
        Ok(html) => {
            let mut resp = (status, Html(html)).into_response();
            resp.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
            resp
        }
        Err(e) => crate::error::ApiError::internal(format!("template: {e}")).into_response(),
    }
}

/// A page that only says something (an error, a refusal), with a way back.
#[derive(Template)]
#[template(path = "message.html")]
struct MessagePage {
    t: &'static Catalog,
    lang: &'static str,
    text: String,
}

/// A short page saying the catalogue's `key`, with `status`.
pub fn message(lang: Lang, status: StatusCode, key: &str) -> Response {
    let t = lang.catalog();
    render(status, &MessagePage { t, lang: lang.tag(), text: t.get(key).to_owned() })
}

/// A short page saying `text` (already in the reader's language, or a service's message).
pub fn message_text(lang: Lang, status: StatusCode, text: String) -> Response {
    render(status, &MessagePage { t: lang.catalog(), lang: lang.tag(), text })
}

/// What a refused request shows: the service's message, with the API's status.
pub fn refusal(lang: Lang, e: impl Into<crate::error::ApiError>) -> Response {
    let e = e.into();
    if e.status.is_server_error() {
        return message(lang, e.status, "error.internal");
    }
    if e.status == StatusCode::NOT_FOUND {
        return message(lang, e.status, "error.not_found");
    }
    message_text(lang, e.status, e.body.message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_local_paths_are_returned_to() {
        assert_eq!(safe_next(Some("/cases/5?x=1")), "/cases/5?x=1");
        for bad in ["//evil.example/", "https://evil.example/", "/\\evil", "javascript:alert(1)"] {
            assert_eq!(safe_next(Some(bad)), "/", "{bad}");
        }
        assert_eq!(safe_next(None), "/");
        assert_eq!(urlencode("/cases?q=a b&c"), "/cases%3Fq%3Da%20b%26c");
    }
}
