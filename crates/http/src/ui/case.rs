//! One case on a console: its facts, deadlines with the working time left, departments and their
//! tasks, photos, the full timeline with who did what and when, and a form for each step this post
//! may take now (`Services::offered_actions`). A refused step comes back on the same page with the
//! message beside the field that caused it.

use std::collections::HashMap;

use askama::Template;
use axum::extract::{Multipart, Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use civicgrid_core::case::{Action, Case, CaseEvent, Command, GeoPoint, Satisfaction};
use civicgrid_core::org::DeptCode;
use civicgrid_service::cases::{Offer, masked_for};

use super::console::{time_left, warn_of};
use super::i18n::{Catalog, Lang, local_time};
use super::{Frame, Session, from_snake, render, see_other, snake_name};
use crate::error::ApiError;
use crate::state::AppState;
use civicgrid_service::World;

/// Most photos one form takes.
pub const MAX_FORM_PHOTOS: usize = 6;

/// A co-department's task as shown.
#[derive(Debug)]
pub struct TaskRow {
    dept: String,
    state: String,
    due: String,
}

/// One entry of the timeline.
#[derive(Debug)]
pub struct Step {
    at: String,
    who: String,
    action: String,
    to: &'static str,
    reason: String,
    task: String,
    evidence: Vec<i64>,
}

/// A photo of the case.
#[derive(Debug)]
pub struct Photo {
    id: i64,
    name: String,
}

/// How a form asks for a field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Not at all.
    No,
    /// Optionally.
    May,
    /// Required.
    Must,
}

/// The form of one offered step.
#[derive(Debug)]
pub struct ActionForm {
    name: &'static str,
    label: String,
    task: String,
    reason: Need,
    departments: bool,
    hours: bool,
    rating: bool,
    into: bool,
    photos: Need,
    /// The field a refusal named, and its message.
    error_field: String,
    error: String,
    /// Steps that end or undo something are drawn as such.
    danger: bool,
}

impl ActionForm {
    fn error_on(&self, field: &str) -> bool {
        !self.error.is_empty() && self.error_field == field
    }

    /// The message when the refusal named no field of this form.
    fn general_error(&self) -> bool {
        let placed = ["reason", "lead", "co", "working_hours", "satisfaction", "into", "evidence", "position"];
        super::unplaced(&self.error, &self.error_field, &placed)
    }
}

/// A department to pick.
#[derive(Debug)]
pub struct DeptOption {
    code: String,
    name: String,
    lead: bool,
    co: bool,
}

#[derive(Template)]
#[template(path = "case.html")]
struct CasePage {
    frame: Frame,
    id: i64,
    number: String,
    version: i64,
    state: &'static str,
    warn: &'static str,
    matter: String,
    urgency: String,
    source: String,
    grid: String,
    address: String,
    description: String,
    reporter: String,
    reported: String,
    lat: String,
    lon: String,
    due: String,
    left: String,
    handle_due: String,
    lead: String,
    co: Vec<TaskRow>,
    escalation: i32,
    /// The current step's 督办 level, shown beside the case's highest when they differ.
    step_escalation: i32,
    rework: i32,
    satisfaction: String,
    merged_into: Option<i64>,
    photos: Vec<Photo>,
    timeline: Vec<Step>,
    forms: Vec<ActionForm>,
    departments: Vec<DeptOption>,
    ratings: Vec<(String, String)>,
    duplicates: Vec<(i64, String, String)>,
}

fn dept_name(world: &World, code: &DeptCode, lang: Lang) -> String {
    world
        .departments
        .get(code)
        .map_or_else(|| code.to_string(), |d| if lang == Lang::Zh { d.name_zh.clone() } else { d.name_en.clone() })
}

fn form_of(t: &Catalog, offer: &Offer, facts: &civicgrid_core::case::CaseFacts) -> ActionForm {
    let a = &offer.action;
    let photos = if a.is_on_site(facts) {
        Need::Must
    } else if matches!(a, Action::Reply | Action::Rectify | Action::VerifyFail | Action::RequestPark) {
        Need::May
    } else {
        Need::No
    };
    ActionForm {
        name: a.name(),
        label: t.action(a.name()).to_owned(),
        task: offer.task.as_ref().map(|d| d.to_string()).unwrap_or_default(),
        reason: if a.needs_reason() { Need::Must } else { Need::May },
        departments: matches!(a, Action::Dispatch { .. } | Action::Reassign { .. }),
        hours: matches!(a, Action::RequestExtension { .. }),
        rating: matches!(a, Action::CallBack { .. }),
        into: matches!(a, Action::Merge { .. }),
        photos,
        error_field: String::new(),
        error: String::new(),
        danger: matches!(
            a,
            Action::Void | Action::RefuteCheck | Action::RejectAssignment | Action::VerifyFail | Action::SendBack
        ),
    }
}

/// Who did a step, as the timeline names them.
async fn who(state: &AppState, t: &Catalog, e: &CaseEvent, names: &mut HashMap<i64, String>) -> String {
    let role = t.role(e.actor.role);
    match e.actor.user_id {
        Some(id) => {
            if let std::collections::hash_map::Entry::Vacant(slot) = names.entry(id) {
                let user = state.store.user(id).await.ok().flatten();
                slot.insert(user.map_or_else(|| format!("#{id}"), |u| u.display_name));
            }
            let name = names.get(&id).map_or("", String::as_str);
            // Demo and many real names already say the post ("李勇（受理员）").
            if name.contains(role) { name.to_owned() } else { format!("{name} · {role}") }
        }
        None => format!("{role} ({})", e.actor.job.as_deref().unwrap_or("")),
    }
}

/// The case page of `case` for `s`, with `error` = (step, field, message) from a refused step.
async fn case_page(state: &AppState, s: &Session, case: Case, error: Option<(String, String, String)>) -> Response {
    let t = s.t();
    let lang = s.lang;
    let now = state.clock.now();
    let world = state.world();
    let offers = state.services.offered_actions(&s.actor, &case);
    let mut forms: Vec<ActionForm> = offers.iter().map(|o| form_of(t, o, &case.facts)).collect();
    if let Some((action, field, message)) = error {
        match forms.iter_mut().find(|f| f.name == action) {
            Some(f) => {
                f.error_field = field;
                f.error = message;
            }
            None => return super::message_text(lang, StatusCode::CONFLICT, message),
        }
    }
    let events = match state.services.case_events(&s.actor, case.id).await {
        Ok(e) => e,
        Err(e) => return super::refusal(lang, e),
    };
    let mut names = HashMap::new();
    let mut timeline = Vec::with_capacity(events.len());
    for e in events.iter().rev() {
        timeline.push(Step {
            at: local_time(e.at),
            who: who(state, t, e, &mut names).await,
            action: t.action(e.action.name()).to_owned(),
            to: t.state(e.to),
            reason: e.reason.clone().unwrap_or_default(),
            task: e.task.as_ref().map(|d| dept_name(&world, d, lang)).unwrap_or_default(),
            evidence: e.evidence.iter().filter_map(|a| a.id).collect(),
        });
    }
    let photos = match state.services.case_attachments(&s.actor, case.id).await {
        Ok(list) => list
            .into_iter()
            .filter(|a| a.mime.starts_with("image/"))
            .map(|a| Photo { id: a.id, name: a.name })
            .collect(),
        Err(e) => return super::refusal(lang, e),
    };
    let proposal = case.status.proposed_route.clone();
    let departments = world
        .departments
        .values()
        .map(|d| DeptOption {
            code: d.code.to_string(),
            name: if lang == Lang::Zh { d.name_zh.clone() } else { d.name_en.clone() },
            lead: proposal.as_ref().is_some_and(|r| r.lead == d.code),
            co: proposal.as_ref().is_some_and(|r| r.co.contains(&d.code)),
        })
        .collect();
    let duplicates = if forms.iter().any(|f| f.into) {
        state
            .services
            .duplicates(&s.actor, case.id)
            .await
            .map(|list| list.into_iter().map(|d| (d.id, d.number, format!("{:.0} m", d.distance_m))).collect())
            .unwrap_or_default()
    } else {
        Vec::new()
    };
    let ratings = [
        Satisfaction::VerySatisfied,
        Satisfaction::Satisfied,
        Satisfaction::BasicallySatisfied,
        Satisfaction::Dissatisfied,
        Satisfaction::VeryDissatisfied,
    ]
    .into_iter()
    .map(|r| {
        let name = snake_name(r);
        let label = t.get(&format!("rating.{name}")).to_owned();
        (name, label)
    })
    .collect();
    let case = masked_for(case, &s.actor);
    let st = &case.status;
    let frame = Frame::new(state, s, &format!("/cases/{}", case.id), "case.title").await;
    let matter = world.catalog.matter(case.facts.matter).map_or_else(
        || case.facts.matter.to_string(),
        |m| format!("{} {}", m.code, if lang == Lang::Zh { &m.name_zh } else { &m.name_en }),
    );
    let page = CasePage {
        id: case.id,
        number: case.number.clone(),
        version: st.version,
        state: t.state(st.state),
        warn: warn_of(&case, now),
        matter,
        urgency: t.get(&format!("urgency.{}", snake_name(case.facts.urgency))).to_owned(),
        source: t.get(&format!("source.{}", case.facts.source.as_str())).to_owned(),
        grid: case.facts.grid.to_string(),
        address: case.facts.address.clone(),
        description: case.facts.description.clone(),
        reporter: [case.facts.reporter.name.clone(), case.facts.reporter.phone.clone()]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(" "),
        reported: local_time(case.facts.reported_at),
        lat: format!("{:.6}", case.facts.location.lat),
        lon: format!("{:.6}", case.facts.location.lon),
        due: st.due_at.filter(|_| st.state.is_open()).map(local_time).unwrap_or_default(),
        left: time_left(&world, &case, now, lang),
        handle_due: st.handle_due_at.map(local_time).unwrap_or_default(),
        lead: st.lead_dept.as_ref().map(|d| dept_name(&world, d, lang)).unwrap_or_default(),
        co: st
            .tasks
            .iter()
            .map(|task| TaskRow {
                dept: dept_name(&world, &task.dept, lang),
                state: t.get(&format!("task.{}", task.state.as_str())).to_owned(),
                due: task.due_at.map(local_time).unwrap_or_default(),
            })
            .collect(),
        escalation: st.escalation_level,
        step_escalation: st.step_escalation,
        rework: st.rework_count,
        satisfaction: st
            .satisfaction
            .map(|r| t.get(&format!("rating.{}", snake_name(r))).to_owned())
            .unwrap_or_default(),
        merged_into: st.merged_into,
        photos,
        timeline,
        forms,
        departments,
        ratings,
        duplicates,
        frame,
    };
    let status =
        if page.forms.iter().any(|f| !f.error.is_empty()) { StatusCode::UNPROCESSABLE_ENTITY } else { StatusCode::OK };
    render(status, &page)
}

/// `GET /cases/{id}`.
pub async fn page(State(state): State<AppState>, s: Session, Path(id): Path<String>) -> Response {
    let Some(id) = id.parse::<i64>().ok().filter(|id| *id > 0) else {
        return super::message(s.lang, StatusCode::NOT_FOUND, "error.not_found");
    };
    match state.services.case(&s.actor, id).await {
        Ok(case) => case_page(&state, &s, case, None).await,
        Err(e) => super::refusal(s.lang, e),
    }
}

/// A step's form as sent: text fields and photos.
#[derive(Debug, Default)]
pub struct Sent {
    fields: HashMap<String, String>,
    co: Vec<String>,
    /// The files sent, by file name.
    pub photos: Vec<(String, Vec<u8>)>,
}

/// Longest text field of a form, in bytes.
const MAX_FIELD: usize = 8 * 1024;

/// Reads a multipart form: bounded text fields, `co` repeated, up to [`MAX_FORM_PHOTOS`] files.
pub async fn read_form(mut mp: Multipart) -> Result<Sent, (String, String)> {
    let mut sent = Sent::default();
    let bad = |field: &str, m: String| (field.to_owned(), m);
    while let Some(field) = mp.next_field().await.map_err(|e| bad("form", e.body_text()))? {
        let name = field.name().unwrap_or_default().to_owned();
        if field.file_name().is_some() {
            let file_name = field.file_name().unwrap_or("photo.jpg").to_owned();
            let bytes = field.bytes().await.map_err(|e| bad(&name, e.body_text()))?;
            if bytes.is_empty() {
                continue; // an empty file input
            }
            if sent.photos.len() >= MAX_FORM_PHOTOS {
                return Err(bad(&name, format!("at most {MAX_FORM_PHOTOS} photos")));
            }
            sent.photos.push((file_name, bytes.to_vec()));
            continue;
        }
        let text = field.text().await.map_err(|e| bad(&name, e.body_text()))?;
        if text.len() > MAX_FIELD || sent.fields.len() > 40 || sent.co.len() > 50 {
            return Err(bad(&name, "the form is too large".to_owned()));
        }
        if name == "co" {
            sent.co.push(text);
        } else {
            sent.fields.insert(name, text);
        }
    }
    Ok(sent)
}

impl Sent {
    /// A text field, trimmed; `None` when absent or blank.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields.get(name).map(|v| v.trim()).filter(|v| !v.is_empty())
    }

    /// The phone's position, when the page filled it in.
    pub fn position(&self) -> Result<Option<GeoPoint>, (String, String)> {
        match (self.get("lat"), self.get("lon")) {
            (Some(lat), Some(lon)) => match (lat.parse::<f64>(), lon.parse::<f64>()) {
                (Ok(lat), Ok(lon)) if (GeoPoint { lat, lon }).is_wgs84() => Ok(Some(GeoPoint { lat, lon })),
                _ => Err(("position".into(), "latitude and longitude are numbers in range".into())),
            },
            _ => Ok(None),
        }
    }
}

/// The command a form asks for.
fn command_of(name: &str, sent: &Sent) -> Result<Action, (String, String)> {
    let dept = |field: &str, v: &str| v.parse::<DeptCode>().map_err(|e| (field.to_owned(), e.to_string()));
    let depts = || -> Result<(DeptCode, Vec<DeptCode>), (String, String)> {
        let lead = dept("lead", sent.get("lead").ok_or(("lead".to_owned(), "choose the lead department".to_owned()))?)?;
        let co = sent.co.iter().map(|c| dept("co", c.trim())).collect::<Result<Vec<_>, _>>()?;
        let co = co.into_iter().filter(|c| *c != lead).collect();
        Ok((lead, co))
    };
    Ok(match name {
        "dispatch" => {
            let (lead, co) = depts()?;
            Action::Dispatch { lead, co }
        }
        "reassign" => {
            let (lead, co) = depts()?;
            Action::Reassign { lead, co }
        }
        "request_extension" => {
            let hours = sent.get("working_hours").and_then(|h| h.parse::<u32>().ok());
            let hours = hours.ok_or(("working_hours".to_owned(), "a whole number of working hours".to_owned()))?;
            Action::RequestExtension { working_hours: hours }
        }
        "call_back" => {
            let v = sent.get("satisfaction").unwrap_or_default();
            let r: Satisfaction =
                from_snake(v).ok_or(("satisfaction".to_owned(), "choose the reporter's rating".to_owned()))?;
            Action::CallBack { satisfaction: r }
        }
        "merge" => {
            let into = sent.get("into").and_then(|v| v.parse::<i64>().ok()).filter(|v| *v > 0);
            Action::Merge { into: into.ok_or(("into".to_owned(), "the primary case's id".to_owned()))? }
        }
        other => {
            let value = serde_json::json!({ "action": other });
            serde_json::from_value(value).map_err(|_| ("action".to_owned(), format!("unknown step {other:?}")))?
        }
    })
}

/// `POST /cases/{id}/act`: takes one step. Photos are uploaded first and become the step's
/// evidence. On success the page reloads; on a refusal it shows the message beside the field.
pub async fn act(State(state): State<AppState>, s: Session, Path(id): Path<String>, mp: Multipart) -> Response {
    let Some(id) = id.parse::<i64>().ok().filter(|id| *id > 0) else {
        return super::message(s.lang, StatusCode::NOT_FOUND, "error.not_found");
    };
    let sent = match read_form(mp).await {
        Ok(sent) => sent,
        Err((_, m)) => return super::message_text(s.lang, StatusCode::BAD_REQUEST, m),
    };
    if let Some(r) = s.csrf_refusal(sent.get("csrf").unwrap_or_default()) {
        return r;
    }
    let name = sent.get("action").unwrap_or_default().to_owned();
    let outcome = take_step(&state, &s, id, &name, &sent).await;
    match outcome {
        Ok(()) => see_other(&format!("/cases/{id}")),
        Err((field, message)) => match state.services.case(&s.actor, id).await {
            Ok(case) => case_page(&state, &s, case, Some((name, field, message))).await,
            Err(e) => super::refusal(s.lang, e),
        },
    }
}

async fn take_step(state: &AppState, s: &Session, id: i64, name: &str, sent: &Sent) -> Result<(), (String, String)> {
    let refused = |e: civicgrid_service::ServiceError| {
        let e = ApiError::from(e);
        (e.body.field.unwrap_or_default(), e.body.message)
    };
    let action = command_of(name, sent)?;
    let position = sent.position()?;
    let mut evidence = Vec::with_capacity(sent.photos.len());
    for (file_name, bytes) in &sent.photos {
        let stored = state
            .services
            .upload_attachment(&s.actor, file_name, bytes.clone())
            .await
            .map_err(|e| ("evidence".to_owned(), refused(e).1))?;
        evidence.push(stored.as_evidence());
    }
    let task = match sent.get("task") {
        Some(t) => Some(t.parse::<DeptCode>().map_err(|e| ("task".to_owned(), e.to_string()))?),
        None => None,
    };
    let expected = sent.get("version").and_then(|v| v.parse::<i64>().ok());
    let cmd = Command { action, reason: sent.get("reason").map(str::to_owned), evidence, position, task };
    state.services.transition(&s.actor, id, &cmd, expected).await.map(|_| ()).map_err(refused)
}
