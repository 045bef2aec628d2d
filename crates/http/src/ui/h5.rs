//! The citizen H5 page (掌上办 · 随手拍), mobile first and without an account: leave an opinion or
//! suggestion (意见建议) for one's village or community, or report a problem
//! (a matter from a grouped, searchable list; the place pinned on the town's own grid map, by the
//! phone's position, or from a photo's EXIF; photos; the phone for the call-back), receive a
//! tracking number with a query code, follow the report's progress, rate the result or say it is not
//! fixed. The use cases are `civicgrid_service::public`.
//!
//! Abuse is kept down three ways: each address may send a few reports an hour and look up or answer
//! a bounded number of times, counted across the cluster's nodes
//! ([`civicgrid_service::throttles::PublicUse`]); a field hidden from people must stay empty; and a
//! form sent back faster than a person could fill it in, or hours after it was rendered, is refused.

use std::collections::HashMap;
use std::net::IpAddr;

use askama::Template;
use axum::Form;
use axum::extract::{Multipart, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use civicgrid_core::case::Satisfaction;
use civicgrid_core::coords::CoordSystem;
use civicgrid_service::ServiceError;
use civicgrid_service::public::{
    MAX_FEEDBACK, MAX_PUBLIC_PHOTOS, PublicCase, PublicFeedback, PublicReport, PublicSuggestion, Receipt,
};
use civicgrid_service::throttles::PublicUse;
use jiff::{SignedDuration, Timestamp};
use serde::Deserialize;

use super::i18n::{Catalog, Lang};
use super::{lang_of, render};
use crate::auth::ClientAddr;
use crate::error::ApiError;
use crate::state::AppState;

/// Largest report form: its photos at their largest, and the fields.
pub const MAX_REPORT_BODY: usize =
    MAX_PUBLIC_PHOTOS * (civicgrid_core::case::MAX_ATTACHMENT_BYTES as usize) + (64 << 10);
/// A form sent back sooner than this after it was rendered was not filled in by a person.
const MIN_FILL: SignedDuration = SignedDuration::from_secs(3);
/// A form older than this is stale.
const MAX_FORM_AGE: SignedDuration = SignedDuration::from_hours(6);
/// A group of matters in the picker: a major class and its matters (code, name).
#[derive(Debug)]
pub struct MatterGroup {
    name: String,
    matters: Vec<(String, String, String)>,
}

#[derive(Template)]
#[template(path = "h5_home.html")]
struct HomePage {
    t: &'static Catalog,
    lang: &'static str,
    other_lang: &'static str,
    town: String,
    tiles: String,
}

#[derive(Template)]
#[template(path = "h5_report.html")]
struct ReportPage {
    t: &'static Catalog,
    lang: &'static str,
    other_lang: &'static str,
    town: String,
    tiles: String,
    groups: Vec<MatterGroup>,
    form: FormState,
    max_photos: usize,
}

impl ReportPage {
    fn general_error(&self) -> bool {
        self.form.unplaced(&["matter", "description", "location", "reporter_phone", "photo"])
    }
}

/// What a public form carries between renderings: its anti-abuse stamp, its idempotency key, the
/// values sent, and a refusal with the field it names.
#[derive(Debug)]
struct FormState {
    issued: i64,
    key: String,
    values: HashMap<String, String>,
    error_field: String,
    error: String,
}

impl FormState {
    fn new(state: &AppState, values: HashMap<String, String>, error: Option<(String, String)>) -> Self {
        let (error_field, error) = error.unwrap_or_default();
        FormState {
            issued: state.clock.now().as_second(),
            key: civicgrid_service::accounts::random_hex(16).unwrap_or_default(),
            values,
            error_field,
            error,
        }
    }

    fn status(&self) -> StatusCode {
        if self.error.is_empty() { StatusCode::OK } else { StatusCode::UNPROCESSABLE_ENTITY }
    }

    fn value(&self, name: &str) -> &str {
        self.values.get(name).map_or("", String::as_str)
    }

    fn error_on(&self, field: &str) -> bool {
        !self.error.is_empty() && self.error_field == field
    }

    /// Whether the refusal names none of the `placed` fields (it is then shown above the form).
    fn unplaced(&self, placed: &[&str]) -> bool {
        super::unplaced(&self.error, &self.error_field, placed)
    }
}

#[derive(Template)]
#[template(path = "h5_done.html")]
struct DonePage {
    t: &'static Catalog,
    lang: &'static str,
    other_lang: &'static str,
    town: String,
    tiles: String,
    receipt: Receipt,
    track: String,
}

#[derive(Template)]
#[template(path = "h5_track.html")]
struct TrackPage {
    t: &'static Catalog,
    lang: &'static str,
    other_lang: &'static str,
    town: String,
    tiles: String,
    number: String,
    code: String,
    case: Option<PublicCase>,
    notice: String,
    error: String,
    max_feedback: usize,
    ratings: Vec<(&'static str, String)>,
}

impl TrackPage {
    fn stage(&self) -> String {
        self.t.get(&format!("h5.stage.{}", self.stage_key())).to_owned()
    }

    fn matter(&self) -> &str {
        match &self.case {
            Some(c) if self.lang == "zh-CN" => &c.matter.0,
            Some(c) => &c.matter.1,
            None => "",
        }
    }

    fn step_label(&self, kind: &str) -> String {
        self.t.get(&format!("h5.step.{kind}")).to_owned()
    }

    fn when(&self, at: &Timestamp) -> String {
        super::i18n::local_time(*at)
    }

    fn stage_key(&self) -> &'static str {
        self.case.as_ref().map_or("", stage_name)
    }

    fn may_answer(&self) -> bool {
        self.case.as_ref().is_some_and(|c| stage_name(c) != "not_accepted")
    }

    /// Whether the department has answered (so "not fixed" means something).
    fn answered(&self) -> bool {
        matches!(self.stage_key(), "answered" | "closed")
    }
}

fn stage_name(c: &PublicCase) -> &'static str {
    use civicgrid_service::public::PublicStage as P;
    match c.stage {
        P::Received => "received",
        P::Handling => "handling",
        P::Answered => "answered",
        P::Closed => "closed",
        P::NotAccepted => "not_accepted",
    }
}

/// What every public page shows in its header: the catalogue, languages, the town, the tile layer.
fn chrome(state: &AppState, lang: Lang) -> (&'static Catalog, &'static str, &'static str, String, String) {
    let town = state
        .world()
        .town
        .as_ref()
        .map(|t| if lang == Lang::Zh { t.name_zh.clone() } else { t.name_en.clone() })
        .unwrap_or_default();
    let tiles = state.config.map_tiles.clone().filter(|t| crate::tiles_origin(t).is_some()).unwrap_or_default();
    (lang.catalog(), lang.tag(), lang.other().tag(), town, tiles)
}

fn too_many(lang: Lang) -> Response {
    super::message(lang, StatusCode::TOO_MANY_REQUESTS, "h5.too_many")
}

/// The refusal of a citizen's use of the pages: the address has used its hour's share on some node
/// (or the count could not be kept, which refuses too).
async fn use_refusal(state: &AppState, lang: Lang, what: PublicUse, addr: Option<IpAddr>) -> Option<Response> {
    match state.services.public_use(what, addr).await {
        Ok(()) => None,
        Err(ServiceError::Throttled { .. }) => Some(too_many(lang)),
        Err(e) => Some(super::refusal(lang, e)),
    }
}

/// `GET /h5`: report, or follow a report.
pub async fn home(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let (t, lang, other_lang, town, tiles) = chrome(&state, lang_of(&headers));
    render(StatusCode::OK, &HomePage { t, lang, other_lang, town, tiles })
}

fn report_page(
    state: &AppState,
    lang: Lang,
    values: HashMap<String, String>,
    error: Option<(String, String)>,
) -> Response {
    let (t, lang_tag, other_lang, town, tiles) = chrome(state, lang);
    let form = FormState::new(state, values, error);
    let status = form.status();
    let page = ReportPage {
        t,
        lang: lang_tag,
        other_lang,
        town,
        tiles,
        groups: matter_groups(state, lang),
        form,
        max_photos: MAX_PUBLIC_PHOTOS,
    };
    render(status, &page)
}

/// The matters by major class, each with what the search box matches (name, pinyin initials, English).
fn matter_groups(state: &AppState, lang: Lang) -> Vec<MatterGroup> {
    let world = state.world();
    let mut groups: Vec<MatterGroup> = Vec::new();
    for m in world.catalog.matters() {
        let name = if lang == Lang::Zh { m.name_zh.clone() } else { m.name_en.clone() };
        let search = format!("{} {} {}", m.name_zh, super::report::initials(&m.name_zh), m.name_en.to_lowercase());
        match groups.last_mut() {
            Some(g) if g.name == m.major_name_zh => g.matters.push((m.code.to_string(), name, search)),
            _ => groups
                .push(MatterGroup { name: m.major_name_zh.clone(), matters: vec![(m.code.to_string(), name, search)] }),
        }
    }
    groups
}

/// The anti-abuse refusal of a public form, if it gets one: a filled trap field, a form sent back
/// too soon or too late, or an address over its hourly reports.
async fn abuse_refusal(
    state: &AppState,
    lang: Lang,
    sent: &super::case::Sent,
    addr: Option<IpAddr>,
) -> Option<Response> {
    let now = state.clock.now();
    let issued = sent.get("issued").and_then(|v| v.parse::<i64>().ok()).and_then(|s| Timestamp::from_second(s).ok());
    let human = sent.get("website").is_none()
        && issued.is_some_and(|at| now.duration_since(at) >= MIN_FILL && now.duration_since(at) <= MAX_FORM_AGE);
    if !human {
        tracing::warn!(?addr, "public form refused by the anti-abuse check");
        return Some(super::message(lang, StatusCode::BAD_REQUEST, "h5.refused"));
    }
    use_refusal(state, lang, PublicUse::Report, addr).await
}

/// Reads a public form after the origin and anti-abuse checks: the fields sent, and the values of
/// `keep` to show again if it is refused; or the refusal.
async fn read_public_form(
    state: &AppState,
    lang: Lang,
    headers: &HeaderMap,
    addr: Option<IpAddr>,
    mp: Multipart,
    keep: &[&str],
) -> Result<(super::case::Sent, HashMap<String, String>), Response> {
    if !crate::auth::same_origin(headers) {
        return Err(super::message(lang, StatusCode::FORBIDDEN, "error.csrf"));
    }
    let sent =
        super::case::read_form(mp).await.map_err(|(_, m)| super::message_text(lang, StatusCode::BAD_REQUEST, m))?;
    if let Some(refused) = abuse_refusal(state, lang, &sent, addr).await {
        return Err(refused);
    }
    let values = keep.iter().filter_map(|k| sent.get(k).map(|v| ((*k).to_owned(), v.to_owned()))).collect();
    Ok((sent, values))
}

/// What the reporter sees once their report or suggestion is filed: the tracking number and code.
fn receipt_page(state: &AppState, lang: Lang, receipt: Receipt) -> Response {
    let (t, lang_tag, other_lang, town, tiles) = chrome(state, lang);
    let track =
        format!("/h5/track?number={}&code={}", super::urlencode(&receipt.number), super::urlencode(&receipt.code));
    render(StatusCode::CREATED, &DonePage { t, lang: lang_tag, other_lang, town, tiles, receipt, track })
}

/// `GET /h5/report`.
pub async fn report_form(State(state): State<AppState>, headers: HeaderMap) -> Response {
    report_page(&state, lang_of(&headers), HashMap::new(), None)
}

/// `POST /h5/report`: checks the anti-abuse rules, reports, and shows the tracking number.
pub async fn report_submit(
    State(state): State<AppState>,
    ClientAddr(addr): ClientAddr,
    headers: HeaderMap,
    mp: Multipart,
) -> Response {
    let lang = lang_of(&headers);
    let t = lang.catalog();
    let keep = ["matter", "description", "address", "lat", "lon", "coord_system", "reporter_name", "reporter_phone"];
    let (sent, values) = match read_public_form(&state, lang, &headers, addr, mp, &keep).await {
        Ok(read) => read,
        Err(refused) => return refused,
    };
    let field = |name: &str, key: &str| (name.to_owned(), t.get(key).to_owned());
    let parsed = (|| {
        let matter =
            sent.get("matter").and_then(|m| m.parse().ok()).ok_or_else(|| field("matter", "report.need_matter"))?;
        let coord_system = match sent.get("coord_system") {
            Some(tag) => CoordSystem::parse(tag).ok_or_else(|| field("location", "h5.bad_coord_system"))?,
            None => CoordSystem::Wgs84,
        };
        let location = sent.position().map_err(|_| field("location", "h5.bad_location"))?;
        Ok::<_, (String, String)>(PublicReport {
            matter,
            description: sent.get("description").unwrap_or_default().to_owned(),
            location,
            coord_system,
            address: sent.get("address").unwrap_or_default().to_owned(),
            name: sent.get("reporter_name").map(str::to_owned),
            phone: sent.get("reporter_phone").unwrap_or_default().to_owned(),
            photos: sent.photos.clone(),
        })
    })();
    let report = match parsed {
        Ok(r) => r,
        Err(e) => return report_page(&state, lang, values, Some(e)),
    };
    match state.services.report_public(report, sent.get("key")).await {
        Ok((_, receipt)) => receipt_page(&state, lang, receipt),
        Err(e) => {
            let e = ApiError::from(e);
            if e.status.is_server_error() {
                return super::message(lang, e.status, "error.internal");
            }
            let field = e.body.field.unwrap_or_default();
            // The service names the reporter's phone as `reporter_phone` and photos as `photo`/`file`.
            let field = if field == "file" { "photo".to_owned() } else { field };
            report_page(&state, lang, values, Some((field, e.body.message)))
        }
    }
}

#[derive(Template)]
#[template(path = "h5_suggest.html")]
struct SuggestPage {
    t: &'static Catalog,
    lang: &'static str,
    other_lang: &'static str,
    town: String,
    tiles: String,
    groups: Vec<MatterGroup>,
    communities: Vec<(String, String)>,
    form: FormState,
}

impl SuggestPage {
    fn general_error(&self) -> bool {
        self.form.unplaced(&["matter", "description", "community", "reporter_phone"])
    }
}

async fn suggest_page(
    state: &AppState,
    lang: Lang,
    values: HashMap<String, String>,
    error: Option<(String, String)>,
) -> Response {
    let (t, lang_tag, other_lang, town, tiles) = chrome(state, lang);
    let communities = match state.services.workstations().await {
        Ok(list) => list.into_iter().map(|w| (w.code.to_string(), w.name_zh)).collect(),
        Err(e) => return super::refusal(lang, e),
    };
    let form = FormState::new(state, values, error);
    let status = form.status();
    let page = SuggestPage {
        t,
        lang: lang_tag,
        other_lang,
        town,
        tiles,
        groups: matter_groups(state, lang),
        communities,
        form,
    };
    render(status, &page)
}

/// `GET /h5/suggest`: an opinion or suggestion for a village's or community's liaison station.
pub async fn suggest_form(State(state): State<AppState>, headers: HeaderMap) -> Response {
    suggest_page(&state, lang_of(&headers), HashMap::new(), None).await
}

/// `POST /h5/suggest`.
pub async fn suggest_submit(
    State(state): State<AppState>,
    ClientAddr(addr): ClientAddr,
    headers: HeaderMap,
    mp: Multipart,
) -> Response {
    let lang = lang_of(&headers);
    let keep = ["matter", "description", "community", "reporter_name", "reporter_phone"];
    let (sent, values) = match read_public_form(&state, lang, &headers, addr, mp, &keep).await {
        Ok(read) => read,
        Err(refused) => return refused,
    };
    let t = lang.catalog();
    let field = |name: &str, key: &str| Some((name.to_owned(), t.get(key).to_owned()));
    let Some(matter) = sent.get("matter").and_then(|m| m.parse().ok()) else {
        return suggest_page(&state, lang, values, field("matter", "report.need_matter")).await;
    };
    let Some(community) = sent.get("community").and_then(|c| c.parse().ok()) else {
        return suggest_page(&state, lang, values, field("community", "h5.need_community")).await;
    };
    let suggestion = PublicSuggestion {
        matter,
        text: sent.get("description").unwrap_or_default().to_owned(),
        community,
        name: sent.get("reporter_name").map(str::to_owned),
        phone: sent.get("reporter_phone").map(str::to_owned),
    };
    match state.services.suggest_public(suggestion, sent.get("key")).await {
        Ok((_, receipt)) => receipt_page(&state, lang, receipt),
        Err(e) => {
            let e = ApiError::from(e);
            if e.status.is_server_error() {
                return super::message(lang, e.status, "error.internal");
            }
            suggest_page(&state, lang, values, Some((e.body.field.unwrap_or_default(), e.body.message))).await
        }
    }
}

/// The tracking number and query code, in the query (a link) or the form (a look-up, an answer).
#[derive(Debug, Default, Deserialize)]
pub struct TrackQuery {
    #[serde(default)]
    number: String,
    #[serde(default)]
    code: String,
}

fn ratings(t: &'static Catalog) -> Vec<(&'static str, String)> {
    ["very_satisfied", "satisfied", "basically_satisfied", "dissatisfied", "very_dissatisfied"]
        .into_iter()
        .map(|v| (v, t.get(&format!("rating.{v}")).to_owned()))
        .collect()
}

fn track_page(
    state: &AppState,
    lang: Lang,
    q: TrackQuery,
    case: Option<PublicCase>,
    notice: &str,
    error: String,
    status: StatusCode,
) -> Response {
    let (t, lang_tag, other_lang, town, tiles) = chrome(state, lang);
    let page = TrackPage {
        t,
        lang: lang_tag,
        other_lang,
        town,
        tiles,
        number: q.number,
        code: q.code,
        case,
        notice: if notice.is_empty() { String::new() } else { t.get(notice).to_owned() },
        error,
        max_feedback: MAX_FEEDBACK,
        ratings: ratings(t),
    };
    render(status, &page)
}

/// `GET /h5/track`: the look-up form, or a report's progress.
pub async fn track(
    State(state): State<AppState>,
    ClientAddr(addr): ClientAddr,
    headers: HeaderMap,
    Query(q): Query<TrackQuery>,
) -> Response {
    let lang = lang_of(&headers);
    if q.number.trim().is_empty() && q.code.trim().is_empty() {
        return track_page(&state, lang, q, None, "", String::new(), StatusCode::OK);
    }
    if let Some(refused) = use_refusal(&state, lang, PublicUse::Lookup, addr).await {
        return refused;
    }
    match state.services.public_case(&q.number, &q.code).await {
        Ok(case) => track_page(&state, lang, q, Some(case), "", String::new(), StatusCode::OK),
        Err(e) => {
            let e = ApiError::from(e);
            let text = lang.catalog().get("h5.not_found").to_owned();
            track_page(&state, lang, q, None, "", text, e.status)
        }
    }
}

/// The reporter's answer, as the tracking page sends it.
#[derive(Debug, Deserialize)]
pub struct AnswerForm {
    #[serde(default)]
    number: String,
    #[serde(default)]
    code: String,
    #[serde(default)]
    satisfaction: String,
    #[serde(default)]
    not_fixed: Option<String>,
    #[serde(default)]
    text: String,
}

/// `POST /h5/track`: a rating, "not fixed", or a word to whoever handles the report.
pub async fn answer(
    State(state): State<AppState>,
    ClientAddr(addr): ClientAddr,
    headers: HeaderMap,
    Form(f): Form<AnswerForm>,
) -> Response {
    let lang = lang_of(&headers);
    if !crate::auth::same_origin(&headers) {
        return super::message(lang, StatusCode::FORBIDDEN, "error.csrf");
    }
    if let Some(refused) = use_refusal(&state, lang, PublicUse::Lookup, addr).await {
        return refused;
    }
    let satisfaction: Option<Satisfaction> = match f.satisfaction.trim() {
        "" => None,
        v => match super::from_snake(v) {
            Some(s) => Some(s),
            None => return super::message(lang, StatusCode::BAD_REQUEST, "error.filter"),
        },
    };
    let feedback = PublicFeedback { satisfaction, not_fixed: f.not_fixed.is_some(), text: f.text };
    let q = TrackQuery { number: f.number, code: f.code };
    match state.services.public_feedback(&q.number, &q.code, feedback.clone()).await {
        Ok(case) => {
            let notice = match (feedback.not_fixed, feedback.satisfaction) {
                (true, _) => "h5.sent_not_fixed",
                (false, Some(_)) => "h5.sent_rating",
                _ => "h5.sent_text",
            };
            track_page(&state, lang, q, Some(case), notice, String::new(), StatusCode::OK)
        }
        Err(e) => {
            let e = ApiError::from(e);
            let case = state.services.public_case(&q.number, &q.code).await.ok();
            let text = if e.status == StatusCode::NOT_FOUND {
                lang.catalog().get("h5.not_found").to_owned()
            } else {
                e.body.message
            };
            track_page(&state, lang, q, case, "", text, e.status)
        }
    }
}

/// `GET /h5/grids.geojson`: the grids for the public map.
pub async fn grids(State(state): State<AppState>) -> Response {
    use axum::response::IntoResponse;
    crate::reference::grids_feature_collection(&state).await.into_response()
}
