//! The big-screen cockpit (`/cockpit`): the four screens of the brief — 平安, 数说经济, 城乡融合, 幸福民生 —
//! and the smart components' 物联感知, as tabs or a rotation, in one of four post views (指挥长, 协调,
//! 情报, 督查). The page is a shell: `web/src/cockpit.js` draws it with ECharts from
//! `/api/v1/cockpit/situation`, `/api/v1/cockpit/figures` and `/api/v1/cockpit/sensing` and keeps it
//! live from one event stream. Everything the script needs to label it comes in the page, in the
//! reader's language.

use askama::Template;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use civicgrid_core::access::Role;
use civicgrid_service::cockpit::WATCHERS;
use serde::Deserialize;
use serde_json::json;

use super::i18n::Catalog;
use super::{Session, message, render};
use crate::state::AppState;

/// The screens, in rotation order.
pub const SCREENS: [&str; 5] = ["safety", "economy", "rural", "livelihood", "sensing"];
/// The post views.
pub const VIEWS: [&str; 4] = ["commander", "coordinator", "analyst", "supervisor"];
/// Catalogue prefixes the script reads.
const TEXTS: [&str; 7] = ["cockpit.", "state.", "action.", "source.", "fault.", "severity.", "device.kind."];

/// What the address may choose.
#[derive(Debug, Default, Deserialize)]
pub struct CockpitQuery {
    view: Option<String>,
    screen: Option<String>,
    rotate: Option<u8>,
}

/// A tab or a view button.
#[derive(Debug)]
pub struct Choice {
    key: &'static str,
    label: String,
    active: bool,
}

#[derive(Template)]
#[template(path = "cockpit.html")]
struct CockpitPage {
    t: &'static Catalog,
    lang: &'static str,
    town: String,
    screens: Vec<Choice>,
    views: Vec<Choice>,
    rotate: bool,
    data: String,
}

/// The view a post sees first.
pub fn view_of(role: Role) -> &'static str {
    match role {
        Role::Coordinator => "coordinator",
        Role::Analyst => "analyst",
        Role::Supervisor => "supervisor",
        _ => "commander",
    }
}

/// `GET /cockpit`.
pub async fn page(State(state): State<AppState>, s: Session, Query(q): Query<CockpitQuery>) -> Response {
    if !WATCHERS.contains(&s.actor.role) {
        return message(s.lang, StatusCode::FORBIDDEN, "cockpit.forbidden");
    }
    let t = s.t();
    let view = q.view.as_deref().and_then(|v| VIEWS.into_iter().find(|x| *x == v)).unwrap_or(view_of(s.actor.role));
    let screen = q.screen.as_deref().and_then(|v| SCREENS.into_iter().find(|x| *x == v)).unwrap_or(SCREENS[0]);
    // The commander's and the leaders' screens rotate by default; a desk post stays where it is.
    let rotate = q.rotate.map_or(view == "commander", |r| r != 0);
    let choices = |keys: &[&'static str], prefix: &str, active: &str| {
        keys.iter()
            .map(|k| Choice { key: k, label: t.get(&format!("{prefix}{k}")).to_owned(), active: *k == active })
            .collect::<Vec<_>>()
    };
    let workstations = match state.services.workstations().await {
        Ok(w) => w,
        Err(e) => return super::refusal(s.lang, e),
    };
    let texts: serde_json::Map<String, serde_json::Value> =
        t.keys().filter(|k| TEXTS.iter().any(|p| k.starts_with(p))).map(|k| (k.to_owned(), json!(t.get(k)))).collect();
    let world = state.world();
    let data = json!({
        "lang": s.lang.tag(),
        "view": view,
        "screen": screen,
        "screens": SCREENS,
        "rotate": rotate,
        "text": texts,
        "workstations": workstations.iter().map(|w| json!({"code": w.code, "name": w.name_zh, "kind": w.kind})).collect::<Vec<_>>(),
        "town": world.town.as_ref().map(|w| w.name_zh.clone()),
    });
    let town = world.town.as_ref().map_or_else(String::new, |w| match s.lang {
        super::i18n::Lang::Zh => w.name_zh.clone(),
        super::i18n::Lang::En => w.name_en.clone(),
    });
    render(
        StatusCode::OK,
        &CockpitPage {
            t,
            lang: s.lang.tag(),
            town,
            screens: choices(&SCREENS, "cockpit.screen.", screen),
            views: choices(&VIEWS, "cockpit.view.", view),
            rotate,
            data: data.to_string(),
        },
    )
}
