//! The operators' report form: a matter picked by code, name or pinyin initials (a `datalist`, no
//! script needed), the place picked on the town's own grid map (or typed), photos, and the reporter.
//! A hidden key per rendered form makes a double submission one case.

use askama::Template;
use axum::extract::{Multipart, State};
use axum::http::StatusCode;
use axum::response::Response;
use civicgrid_core::case::{Source, Urgency};
use civicgrid_core::codes::MatterCode;
use civicgrid_core::intake::ReportInput;
use pinyin::ToPinyin;

use super::case::read_form;
use super::i18n::Lang;
use super::{Frame, Session, render, see_other};
use crate::error::ApiError;
use crate::state::AppState;

/// A matter to pick.
#[derive(Debug)]
pub struct MatterOption {
    code: String,
    label: String,
}

#[derive(Template)]
#[template(path = "report.html")]
struct ReportPage {
    frame: Frame,
    matters: Vec<MatterOption>,
    sources: Vec<(&'static str, String)>,
    urgencies: Vec<(&'static str, String)>,
    key: String,
    values: std::collections::HashMap<String, String>,
    error_field: String,
    error: String,
}

impl ReportPage {
    fn value(&self, name: &str) -> &str {
        self.values.get(name).map_or("", String::as_str)
    }

    fn selected(&self, name: &str, option: &str) -> bool {
        self.value(name) == option
    }

    fn error_on(&self, field: &str) -> bool {
        !self.error.is_empty() && self.error_field == field
    }

    fn general_error(&self) -> bool {
        let placed = ["matter", "description", "location", "address", "reporter_name", "reporter_phone", "evidence"];
        super::unplaced(&self.error, &self.error_field, &placed)
    }
}

/// The first letters of a name's pinyin (暴露垃圾 → bllj); other characters are kept as they are.
pub fn initials(name: &str) -> String {
    name.chars()
        .filter_map(|c| match c.to_pinyin() {
            Some(p) => p.first_letter().chars().next(),
            None => c.is_ascii_alphanumeric().then(|| c.to_ascii_lowercase()),
        })
        .collect()
}

/// The sources an operator may record for a report they type in (意见建议: an opinion registered at a
/// deputies' liaison station or taken from a suggestion box).
const SOURCES: [Source; 7] = [
    Source::Hotline12345,
    Source::Police110,
    Source::CitizenH5,
    Source::Suggestion,
    Source::Video,
    Source::Leader,
    Source::GridPatrol,
];

async fn page(
    state: &AppState,
    s: &Session,
    mut values: std::collections::HashMap<String, String>,
    error: Option<(String, String)>,
) -> Response {
    let t = s.t();
    // What a grid worker reports comes from their patrol; an operator mostly types in the hotline's.
    let usual = if s.actor.role == civicgrid_core::access::Role::GridWorker { Source::GridPatrol } else { SOURCES[0] };
    values.entry("source".to_owned()).or_insert_with(|| usual.as_str().to_owned());
    let world = state.world();
    let matters = world
        .catalog
        .matters()
        .map(|m| {
            let name = if s.lang == Lang::Zh { &m.name_zh } else { &m.name_en };
            MatterOption {
                code: m.code.to_string(),
                label: format!("{name} · {} · {}", initials(&m.name_zh), m.major_name_zh),
            }
        })
        .collect();
    let sources =
        SOURCES.iter().map(|src| (src.as_str(), t.get(&format!("source.{}", src.as_str())).to_owned())).collect();
    let urgencies = [("normal", "urgency.normal"), ("urgent", "urgency.urgent"), ("critical", "urgency.critical")]
        .into_iter()
        .map(|(v, k)| (v, t.get(k).to_owned()))
        .collect();
    let key = civicgrid_service::accounts::random_hex(16).unwrap_or_default();
    let frame = Frame::new(state, s, "/report", "report.title").await;
    let (error_field, error) = error.unwrap_or_default();
    let status = if error.is_empty() { StatusCode::OK } else { StatusCode::UNPROCESSABLE_ENTITY };
    render(status, &ReportPage { frame, matters, sources, urgencies, key, values, error_field, error })
}

/// `GET /report`.
pub async fn form(State(state): State<AppState>, s: Session) -> Response {
    if !s.actor.role.may_report() {
        return super::message(s.lang, StatusCode::FORBIDDEN, "error.forbidden");
    }
    page(&state, &s, Default::default(), None).await
}

/// `POST /report`: uploads the photos, reports the case and opens it.
pub async fn submit(State(state): State<AppState>, s: Session, mp: Multipart) -> Response {
    let sent = match read_form(mp).await {
        Ok(sent) => sent,
        Err((_, m)) => return super::message_text(s.lang, StatusCode::BAD_REQUEST, m),
    };
    if let Some(r) = s.csrf_refusal(sent.get("csrf").unwrap_or_default()) {
        return r;
    }
    let values: std::collections::HashMap<String, String> =
        ["matter", "source", "urgency", "description", "address", "lat", "lon", "reporter_name", "reporter_phone"]
            .into_iter()
            .filter_map(|k| sent.get(k).map(|v| (k.to_owned(), v.to_owned())))
            .collect();
    match report(&state, &s, &sent).await {
        Ok(id) => see_other(&format!("/cases/{id}")),
        Err(e) => page(&state, &s, values, Some(e)).await,
    }
}

/// A field naming one value of an enumeration by its snake_case name.
fn choice<T: serde::de::DeserializeOwned>(sent: &super::case::Sent, name: &str) -> Result<Option<T>, ()> {
    sent.get(name).map(|v| super::from_snake(v).ok_or(())).transpose()
}

async fn report(state: &AppState, s: &Session, sent: &super::case::Sent) -> Result<i64, (String, String)> {
    let t = s.t();
    let field = |name: &str, key: &str| (name.to_owned(), t.get(key).to_owned());
    let matter = sent
        .get("matter")
        .and_then(|m| m.split_whitespace().next())
        .and_then(|m| m.parse::<MatterCode>().ok())
        .ok_or_else(|| field("matter", "report.need_matter"))?;
    let location = sent.position()?.ok_or_else(|| field("location", "report.need_location"))?;
    let source: Option<Source> = choice(sent, "source").map_err(|_| field("source", "error.filter"))?;
    let urgency: Urgency = choice(sent, "urgency").map_err(|_| field("urgency", "error.filter"))?.unwrap_or_default();
    let refused = |e: civicgrid_service::ServiceError| {
        let e = ApiError::from(e);
        (e.body.field.unwrap_or_default(), e.body.message)
    };
    // The form's key makes a resent form upload the same attachments and report the same case.
    let key = sent.get("key").map(|k| format!("web-report-{k}"));
    let mut attachments = Vec::new();
    for (i, (name, bytes)) in sent.photos.iter().enumerate() {
        let photo_key = key.as_ref().map(|k| format!("{k}-photo{i}"));
        let stored = state
            .services
            .upload_attachment_once(&s.actor, name, bytes.clone(), photo_key.as_deref())
            .await
            .map_err(|e| ("evidence".to_owned(), refused(e).1))?;
        attachments.push(stored.value.as_evidence());
    }
    let input = ReportInput {
        matter,
        component_id: None,
        source,
        urgency,
        description: sent.get("description").unwrap_or_default().to_owned(),
        location,
        coord_system: Default::default(),
        address: sent.get("address").unwrap_or_default().to_owned(),
        reporter_name: sent.get("reporter_name").map(str::to_owned),
        reporter_phone: sent.get("reporter_phone").map(str::to_owned),
        attachments,
        upstream: None,
        tracking: None,
    };
    let created = state.services.report_case_once(&s.actor, input, key.as_deref()).await.map_err(refused)?;
    Ok(created.value.id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn initials_follow_the_pinyin() {
        assert_eq!(initials("暴露垃圾"), "bllj");
        assert_eq!(initials("路灯异常"), "ldyc");
        assert_eq!(initials("5G 基站"), "5gjz");
    }
}
