//! The town's matters as Open311 GeoReport v2 services: one service per matter code (group = its
//! major class, keywords = its names and pinyin-free codes), and for some matters a service definition
//! with typed attributes (the questions an outside app asks before it reports), checked on a report.
//!
//! The definitions here are the town's, written once: a lamp fault asks what the lamp does, a
//! component fault may name the component, rubbish may come with its volume, noise with when it is
//! heard. Every datatype of the specification appears at least once.

use civicgrid_core::catalog::Matter;
use civicgrid_core::codes::MatterCode;
use serde::Serialize;
use serde_json::Value;

use crate::{Actor, ServiceError, ServiceResult, Services};

/// One Open311 service (a matter).
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Open311Service {
    /// The matter code.
    pub service_code: String,
    /// Its Chinese name.
    pub service_name: String,
    /// Its major class and English name.
    pub description: String,
    /// Whether it has a service definition with attributes.
    pub metadata: bool,
    /// Always `realtime`: a report gets its id at once.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Comma-separated search words.
    pub keywords: String,
    /// The major class's name.
    pub group: String,
}

/// The datatypes of the specification.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Datatype {
    /// One line.
    String,
    /// A number.
    Number,
    /// A W3C date-time.
    Datetime,
    /// Free text.
    Text,
    /// One key of `values`.
    Singlevaluelist,
    /// Any keys of `values`.
    Multivaluelist,
}

/// One question of a service definition.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Attribute {
    /// Always `true`: these are questions for the reporter.
    pub variable: bool,
    /// Its code (the `attribute[code]` of a report).
    pub code: &'static str,
    /// Its datatype.
    pub datatype: Datatype,
    /// Whether a report must answer it.
    pub required: bool,
    /// What an answer looks like.
    pub datatype_description: &'static str,
    /// Its place among the questions.
    pub order: u32,
    /// The question.
    pub description: &'static str,
    /// The choices of a list.
    pub values: Vec<Choice>,
}

/// One choice of a list attribute.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Choice {
    /// Its key.
    pub key: &'static str,
    /// Its name.
    pub name: &'static str,
}

/// A service definition.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ServiceDefinition {
    /// The service.
    pub service_code: String,
    /// Its questions.
    pub attributes: Vec<Attribute>,
}

const fn choice(key: &'static str, name: &'static str) -> Choice {
    Choice { key, name }
}

/// The questions of a matter, in order.
fn questions(m: &Matter) -> Vec<Attribute> {
    let mut out = Vec::new();
    let mut ask = |code, datatype, required, datatype_description, description, values: Vec<Choice>| {
        let order = out.len() as u32 + 1;
        out.push(Attribute {
            variable: true,
            code,
            datatype,
            required,
            datatype_description,
            order,
            description,
            values,
        });
    };
    if m.component_code.is_some() {
        ask("component_id", Datatype::String, false, "17 位部件编码（部件上的标牌）", "部件编码", vec![]);
    }
    match m.code.as_str() {
        "01037" => ask(
            "lamp_fault",
            Datatype::Singlevaluelist,
            true,
            "选一项",
            "路灯的情况",
            vec![
                choice("dark", "夜间不亮"),
                choice("day_on", "白天常亮"),
                choice("flicker", "闪烁"),
                choice("pole", "灯杆损坏"),
            ],
        ),
        "06010" => {
            ask("volume", Datatype::Number, false, "立方米，0–1000", "估计体量", vec![]);
            ask("seen_at", Datatype::Datetime, false, "发现时间，如 2026-11-24T08:30:00+08:00", "何时发现", vec![]);
        }
        "06028" => {
            ask(
                "periods",
                Datatype::Multivaluelist,
                true,
                "可多选",
                "噪声出现的时段",
                vec![
                    choice("morning", "早晨"),
                    choice("day", "白天"),
                    choice("evening", "傍晚"),
                    choice("night", "夜间（22:00–06:00）"),
                ],
            );
            ask("source_note", Datatype::Text, false, "不超过 500 字", "噪声来源（如施工、商铺音响）", vec![]);
        }
        _ => {}
    }
    out
}

/// The Open311 service of a matter.
fn service_of(m: &Matter) -> Open311Service {
    Open311Service {
        service_code: m.code.to_string(),
        service_name: m.name_zh.clone(),
        description: format!("{}：{}（{}）", m.major_name_zh, m.name_zh, m.name_en),
        metadata: !questions(m).is_empty(),
        kind: "realtime",
        keywords: [m.name_zh.as_str(), m.name_en.as_str(), m.major_name_zh.as_str()].join(","),
        group: m.major_name_zh.clone(),
    }
}

impl Services {
    /// Every matter as an Open311 service, in code order (public: outside apps list them before they
    /// have a key).
    pub fn open311_services(&self) -> Vec<Open311Service> {
        let mut out: Vec<Open311Service> = self.world().catalog.matters().map(service_of).collect();
        out.sort_by(|a, b| a.service_code.cmp(&b.service_code));
        out
    }

    /// The service definition of a matter that has questions; `NotFound` otherwise.
    pub fn open311_definition(&self, code: &str) -> ServiceResult<ServiceDefinition> {
        let code: MatterCode = code.parse().map_err(|_| ServiceError::NotFound("service"))?;
        let world = self.world();
        let matter = world.catalog.matter(code).ok_or(ServiceError::NotFound("service"))?;
        let attributes = questions(matter);
        if attributes.is_empty() {
            return Err(ServiceError::NotFound("service definition"));
        }
        Ok(ServiceDefinition { service_code: code.to_string(), attributes })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_datatype_is_asked_somewhere() {
        let catalog = civicgrid_core::catalog::Catalog::national().expect("catalog");
        let asked: Vec<Datatype> = catalog.matters().flat_map(questions).map(|a| a.datatype).collect();
        for d in [
            Datatype::String,
            Datatype::Number,
            Datatype::Datetime,
            Datatype::Text,
            Datatype::Singlevaluelist,
            Datatype::Multivaluelist,
        ] {
            assert!(asked.contains(&d), "{d:?}");
        }
        let lamp = catalog.matter("01037".parse().expect("code")).expect("lamp");
        let q = questions(lamp);
        assert_eq!(
            q.iter().map(|a| (a.code, a.order)).collect::<Vec<_>>(),
            vec![("component_id", 1), ("lamp_fault", 2)]
        );
        assert!(service_of(lamp).metadata);
        let plain = catalog.matters().find(|m| questions(m).is_empty()).expect("a matter without questions");
        assert!(!service_of(plain).metadata);
    }
}

/// A report as an Open311 client sends it (`POST requests`), its fields already read from the form.
#[derive(Debug, Clone, Default)]
pub struct Open311Report {
    /// The service (matter) code.
    pub service_code: String,
    /// Latitude (WGS84, unless `coord_system` says otherwise).
    pub lat: Option<f64>,
    /// Longitude.
    pub long: Option<f64>,
    /// The coordinate system of lat/long: the specification's WGS84 by default; a client built on a
    /// Chinese map SDK may say `gcj02` or `bd09` (an extension).
    pub coord_system: civicgrid_core::coords::CoordSystem,
    /// Address text.
    pub address_string: String,
    /// What is wrong.
    pub description: String,
    /// A photo's address on the client's side (kept as text: an intranet server fetches nothing).
    pub media_url: String,
    /// Reporter's first name.
    pub first_name: String,
    /// Reporter's last name.
    pub last_name: String,
    /// Reporter's phone.
    pub phone: String,
    /// Answers to the service definition's questions: code → values (one, or several for a
    /// multi-value list).
    pub attributes: Vec<(String, Vec<String>)>,
}

/// A service request as the public may see it (`GET requests`): no reporter's data.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Open311Request {
    /// The case id, as a string.
    pub service_request_id: String,
    /// `open` or `closed`.
    pub status: &'static str,
    /// Where it stands, in words.
    pub status_notes: String,
    /// The matter's name.
    pub service_name: String,
    /// The matter code.
    pub service_code: String,
    /// What was reported.
    pub description: String,
    /// The lead department, once dispatched.
    pub agency_responsible: String,
    /// The tracking number.
    pub service_notice: String,
    /// When it was reported.
    pub requested_datetime: String,
    /// When it last changed.
    pub updated_datetime: String,
    /// The current deadline (handling, else the step's).
    pub expected_datetime: String,
    /// Address text.
    pub address: String,
    /// Latitude.
    pub lat: f64,
    /// Longitude.
    #[serde(rename = "long")]
    pub long: f64,
}

/// A time as Open311 writes it: ISO 8601 with the town's offset.
fn w3c(t: jiff::Timestamp) -> String {
    civicgrid_core::calendar::local(t).strftime("%Y-%m-%dT%H:%M:%S+08:00").to_string()
}

/// Longest description a report may carry (the specification's limit).
const MAX_DESCRIPTION: usize = 4000;

/// Checks the answers against the service's questions; the lines they add to the description.
fn answers(matter: &Matter, given: &[(String, Vec<String>)]) -> ServiceResult<Vec<String>> {
    let asked = questions(matter);
    for (code, _) in given {
        if !asked.iter().any(|a| a.code == code) {
            return Err(ServiceError::invalid(&format!("attribute[{code}]"), "this service asks no such question"));
        }
    }
    let mut lines = Vec::new();
    for a in &asked {
        let field = format!("attribute[{}]", a.code);
        let values: Vec<&str> = given
            .iter()
            .filter(|(c, _)| c == a.code)
            .flat_map(|(_, v)| v.iter().map(|x| x.trim()))
            .filter(|v| !v.is_empty())
            .collect();
        if values.is_empty() {
            if a.required {
                return Err(ServiceError::invalid(&field, format!("{} is required", a.description)));
            }
            continue;
        }
        if values.len() > 1 && a.datatype != Datatype::Multivaluelist {
            return Err(ServiceError::invalid(&field, "one value"));
        }
        let name_of = |key: &str| a.values.iter().find(|c| c.key == key).map(|c| c.name);
        let shown = match a.datatype {
            Datatype::String | Datatype::Text => {
                let max = if a.datatype == Datatype::Text { 500 } else { 200 };
                civicgrid_core::text::line(&field, values[0], 1, max)?
            }
            Datatype::Number => match values[0].parse::<f64>() {
                Ok(n) if n.is_finite() && (0.0..=1000.0).contains(&n) => n.to_string(),
                _ => return Err(ServiceError::invalid(&field, "a number from 0 to 1000")),
            },
            Datatype::Datetime => match values[0].parse::<jiff::Timestamp>() {
                Ok(t) => w3c(t),
                Err(_) => return Err(ServiceError::invalid(&field, "a W3C date-time with its offset")),
            },
            Datatype::Singlevaluelist | Datatype::Multivaluelist => {
                let names: Option<Vec<&str>> = values.iter().map(|v| name_of(v)).collect();
                names.ok_or_else(|| ServiceError::invalid(&field, "one of the listed keys"))?.join("、")
            }
        };
        lines.push(format!("{}：{shown}", a.description));
    }
    Ok(lines)
}

impl Services {
    /// A report from an Open311 client (a service account of the `open311` channel): checked against
    /// the service and its questions, then reported like any other case (source 群众H5).
    pub async fn open311_report(
        &self,
        actor: &Actor,
        report: Open311Report,
    ) -> ServiceResult<civicgrid_core::case::Case> {
        if actor.channel != Some(civicgrid_core::access::Channel::Open311) {
            return Err(ServiceError::forbidden("only an API key of the open311 channel may report here"));
        }
        let matter_code: MatterCode = report
            .service_code
            .trim()
            .parse()
            .map_err(|_| ServiceError::invalid("service_code", "a service code from services"))?;
        let world = self.world();
        let matter = world
            .catalog
            .matter(matter_code)
            .ok_or_else(|| ServiceError::invalid("service_code", "no such service"))?;
        let (Some(lat), Some(lon)) = (report.lat, report.long) else {
            return Err(ServiceError::invalid(
                "lat",
                "lat and long are required: this server cannot look up an address_string (no geocoder on the intranet)",
            ));
        };
        if !(-90.0..=90.0).contains(&lat) || !(-180.0..=180.0).contains(&lon) {
            return Err(ServiceError::invalid("lat", "lat in -90..90 and long in -180..180"));
        }
        let description = report.description.trim();
        check_text("description", description)?;
        check_text("address_string", report.address_string.as_str())?;
        let media = report.media_url.trim();
        check_media(media)?;
        let mut text = vec![if description.is_empty() { matter.name_zh.clone() } else { description.to_owned() }];
        text.extend(answers(matter, &report.attributes)?);
        if !media.is_empty() {
            text.push(format!("照片：{media}"));
        }
        let name = format!("{}{}", report.last_name.trim(), report.first_name.trim());
        let input = civicgrid_core::intake::ReportInput {
            matter: matter_code,
            component_id: None,
            source: None,
            urgency: civicgrid_core::case::Urgency::Normal,
            description: text.join("\n"),
            location: civicgrid_core::case::GeoPoint { lon, lat },
            coord_system: report.coord_system,
            address: report.address_string.trim().to_owned(),
            reporter_name: Some(name).filter(|n| !n.is_empty()),
            reporter_phone: Some(report.phone.trim().to_owned()).filter(|p| !p.is_empty()),
            attachments: Vec::new(),
            upstream: None,
            tracking: None,
        };
        self.report_case(actor, input).await
    }

    /// A service request as the public may see it; `NotFound` for anything but a case id.
    pub async fn open311_request(&self, id: &str) -> ServiceResult<Open311Request> {
        let id: i64 = id.trim().parse().map_err(|_| ServiceError::NotFound("service request"))?;
        let case = self.store.case(id).await?.ok_or(ServiceError::NotFound("service request"))?;
        self.public_view(&case)
    }

    /// A case's public fields.
    fn public_view(&self, case: &civicgrid_core::case::Case) -> ServiceResult<Open311Request> {
        let world = self.world();
        let status = &case.status;
        // The status carries the time of its last event: no history read per request listed.
        let updated = status.updated_at;
        Ok(Open311Request {
            service_request_id: case.id.to_string(),
            status: if is_open(case) { "open" } else { "closed" },
            status_notes: status.state.label_zh().to_owned(),
            service_name: world.catalog.matter(case.facts.matter).map_or_else(String::new, |m| m.name_zh.clone()),
            service_code: case.facts.matter.to_string(),
            description: case.facts.description.clone(),
            agency_responsible: status.lead_dept.as_ref().map(|d| world.department_name(d)).unwrap_or_default(),
            service_notice: format!("案件编号 {}", case.number),
            requested_datetime: w3c(case.facts.reported_at),
            updated_datetime: w3c(updated),
            expected_datetime: status.handle_due_at.or(status.due_at).map(w3c).unwrap_or_default(),
            address: case.facts.address.clone(),
            lat: case.facts.location.lat,
            long: case.facts.location.lon,
        })
    }
}

/// Checks free text from a client: at most [`MAX_DESCRIPTION`] characters, no HTML, and nothing XML
/// 1.0 cannot carry (it could never be answered back in the XML format).
fn check_text(field: &str, text: &str) -> ServiceResult<()> {
    if text.chars().count() > MAX_DESCRIPTION {
        return Err(ServiceError::invalid(field, format!("at most {MAX_DESCRIPTION} characters")));
    }
    if text.contains('<') && text.contains('>') {
        return Err(ServiceError::invalid(field, "plain text, no HTML"));
    }
    let unsendable = text
        .chars()
        .any(|c| (c.is_control() && !matches!(c, '\t' | '\n' | '\r')) || c == '\u{FFFE}' || c == '\u{FFFF}');
    if unsendable {
        return Err(ServiceError::invalid(field, "control characters cannot be stored"));
    }
    Ok(())
}

/// Checks a `media_url`: empty, or an http(s) address of at most 500 characters.
fn check_media(media: &str) -> ServiceResult<()> {
    if !media.is_empty()
        && (!(media.starts_with("http://") || media.starts_with("https://"))
            || media.len() > 500
            || media.contains(char::is_whitespace))
    {
        return Err(ServiceError::invalid("media_url", "an http(s) address"));
    }
    Ok(())
}

/// An update a FixMyStreet-style site sends about a request (mySociety's `POST servicerequestupdates`).
#[derive(Debug, Clone, Default)]
pub struct Open311Update {
    /// The request.
    pub service_request_id: String,
    /// The site's own id of the update (1–64 visible ASCII characters).
    pub update_id: String,
    /// When it was made on the site (W3C date-time).
    pub updated_datetime: String,
    /// The status the site gives the request (FixMyStreet's words: `open`, `fixed`, `closed`, …).
    pub status: String,
    /// What its user said.
    pub description: String,
    /// A photo's address.
    pub media_url: String,
}

/// The statuses FixMyStreet sends (case-insensitive), and whether each says the problem is still
/// there.
const UPDATE_STATUSES: [(&str, bool); 11] = [
    ("open", true),
    ("investigating", true),
    ("in_progress", true),
    ("action_scheduled", true),
    ("fixed", false),
    ("closed", false),
    ("duplicate", false),
    ("not_councils_responsibility", false),
    ("no_further_action", false),
    ("internal_referral", false),
    ("unable_to_fix", false),
];

impl Services {
    /// An update from an Open311 site (a service account of the `open311` channel): the site's user
    /// saying the problem is still there after the department answered is "not fixed" (the lowest
    /// rating of a closed, unrated request, which opens the lead department's rectification); any
    /// other words reach whoever owns the request's step. Answers our id of the update.
    pub async fn open311_post_update(&self, actor: &Actor, u: Open311Update) -> ServiceResult<String> {
        if actor.channel != Some(civicgrid_core::access::Channel::Open311) {
            return Err(ServiceError::forbidden("only an API key of the open311 channel may send updates"));
        }
        let id: i64 = u.service_request_id.trim().parse().map_err(|_| ServiceError::NotFound("service request"))?;
        let case = self.store.case(id).await?.ok_or(ServiceError::NotFound("service request"))?;
        let update_id = u.update_id.trim();
        if update_id.is_empty() || update_id.len() > 64 || !update_id.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(ServiceError::invalid("update_id", "1–64 visible ASCII characters"));
        }
        u.updated_datetime
            .trim()
            .parse::<jiff::Timestamp>()
            .map_err(|_| ServiceError::invalid("updated_datetime", "a W3C date-time with its offset"))?;
        let status = u.status.trim().to_ascii_lowercase();
        let still_there =
            UPDATE_STATUSES.iter().find(|(s, _)| *s == status).map(|(_, open)| *open).ok_or_else(|| {
                ServiceError::invalid("status", "one of FixMyStreet's statuses (open, fixed, closed, …)")
            })?;
        let description = u.description.trim();
        if description.is_empty() {
            return Err(ServiceError::invalid("description", "what the update says"));
        }
        check_text("description", description)?;
        let media = u.media_url.trim();
        check_media(media)?;
        use civicgrid_core::case::CaseState as S;
        let answered = matches!(case.status.state, S::Replied | S::Verified | S::Closed);
        let mut text = description.to_owned();
        if !media.is_empty() {
            text.push_str(&format!("\n照片：{media}"));
        }
        let text: String = text.chars().take(crate::public::MAX_FEEDBACK).collect();
        let feedback = crate::public::PublicFeedback { satisfaction: None, not_fixed: still_there && answered, text };
        self.feedback_on(case, feedback).await?;
        Ok(format!("{id}-{}", &crate::accounts::sha256_hex(update_id.as_bytes())[..12]))
    }
}

/// What `GET requests` asks for, already parsed; empty lists and `None` mean "any".
#[derive(Debug, Clone, Default)]
pub struct Open311Query {
    /// These requests only (they win over every other filter but `status`).
    pub ids: Vec<i64>,
    /// Of these services.
    pub service_codes: Vec<MatterCode>,
    /// Reported at or after.
    pub start: Option<jiff::Timestamp>,
    /// Reported before or at.
    pub end: Option<jiff::Timestamp>,
    /// `open`, `closed`, or both when empty.
    pub open: Option<bool>,
    /// Within `radius` metres of this point.
    pub near: Option<(civicgrid_core::case::GeoPoint, f64)>,
    /// 1-based page.
    pub page: u32,
    /// Requests per page (1–1000).
    pub page_size: u32,
    /// Changed at or after (the widely used `updated_after` extension).
    pub updated_after: Option<jiff::Timestamp>,
    /// Changed before or at (`updated_before`).
    pub updated_before: Option<jiff::Timestamp>,
    /// Add the internal state and departments.
    pub extensions: bool,
}

/// Longest span of `start_date..end_date` (the specification's 90 days).
pub const MAX_SPAN_DAYS: i64 = 90;
/// Most requests one answer carries (the specification's cap).
pub const MAX_REQUESTS: u32 = 1000;

impl Services {
    /// Service requests matching `q`, newest first, with their public fields (and, with extensions,
    /// the internal state and departments).
    pub async fn open311_requests(&self, q: &Open311Query) -> ServiceResult<Vec<Value>> {
        let now = self.clock.now();
        let end = q.end.unwrap_or(now);
        let start = q.start.unwrap_or(end - jiff::SignedDuration::from_hours(24 * MAX_SPAN_DAYS));
        if start > end {
            return Err(ServiceError::invalid("start_date", "before end_date"));
        }
        if end.duration_since(start) > jiff::SignedDuration::from_hours(24 * MAX_SPAN_DAYS) {
            return Err(ServiceError::invalid("start_date", format!("a span of at most {MAX_SPAN_DAYS} days")));
        }
        let size = q.page_size.clamp(1, MAX_REQUESTS) as usize;
        let skip = (q.page.max(1) as usize - 1) * size;
        let mut found: Vec<civicgrid_core::case::Case> = Vec::new();
        if q.ids.is_empty() && (q.updated_after.is_some() || q.updated_before.is_some()) {
            found = self.open311_updated(q, skip + size).await?;
        } else if q.ids.is_empty() {
            let filter = civicgrid_store::CaseFilter {
                matter: (q.service_codes.len() == 1).then(|| q.service_codes[0]),
                reported_from: Some(start),
                reported_to: Some(end + jiff::SignedDuration::from_secs(1)),
                within: q.near.map(|(p, r)| civicgrid_store::Area::around(p, r)),
                ..Default::default()
            };
            let mut before = None;
            // Read newest first until this page is full (a page never needs more than skip + size rows).
            while found.len() < skip + size {
                let page = self.store.list_cases(&filter, civicgrid_store::PageRequest { before, limit: 500 }).await?;
                found.extend(page.items.into_iter().filter(|c| self.open311_wanted(q, c)));
                match page.next {
                    Some(n) => before = Some(n),
                    None => break,
                }
            }
        } else {
            for id in q.ids.iter().take(MAX_REQUESTS as usize) {
                if let Some(c) = self.store.case(*id).await?
                    && q.open.is_none_or(|open| open == is_open(&c))
                {
                    found.push(c);
                }
            }
        }
        let mut out = Vec::new();
        for case in found.into_iter().skip(skip).take(size) {
            let mut v =
                serde_json::to_value(self.public_view(&case)?).map_err(|e| ServiceError::Internal(e.to_string()))?;
            if q.extensions {
                v["extended_attributes"] = serde_json::json!({
                    "state": case.status.state.as_str(),
                    "state_zh": case.status.state.label_zh(),
                    "lead_department": case.status.lead_dept.as_ref().map(|d| d.to_string()),
                    "co_departments": case.status.co_depts.iter().map(|d| d.to_string()).collect::<Vec<_>>(),
                    "grid": case.facts.grid.to_string(),
                    "number": case.number,
                });
            }
            out.push(v);
        }
        Ok(out)
    }

    /// With `updated_after`/`updated_before`: the requests changed in that window (at most 90 days;
    /// by default the 90 days before `updated_before` or now), in the order of their first change in
    /// it, read from the global event log until `want` pass the other filters. `start_date` and
    /// `end_date`, when given, still bound when they were reported.
    async fn open311_updated(&self, q: &Open311Query, want: usize) -> ServiceResult<Vec<civicgrid_core::case::Case>> {
        let span = jiff::SignedDuration::from_hours(24 * MAX_SPAN_DAYS);
        let before = q.updated_before.unwrap_or_else(|| self.clock.now());
        let after = q.updated_after.unwrap_or(before - span);
        if after > before || before.duration_since(after) > span {
            return Err(ServiceError::invalid(
                "updated_after",
                format!("before updated_before, at most {MAX_SPAN_DAYS} days before it"),
            ));
        }
        let reported = |c: &civicgrid_core::case::Case| {
            q.start.is_none_or(|s| c.facts.reported_at >= s) && q.end.is_none_or(|e| c.facts.reported_at <= e)
        };
        let mut seen = std::collections::HashSet::new();
        let mut found = Vec::new();
        let Some(first) = self.store.first_seq_since(after).await? else { return Ok(found) };
        let mut position = first - 1;
        'read: loop {
            let page = self.store.events_after(position, 500).await?;
            let Some(last) = page.last() else { break };
            position = last.seq;
            for e in &page {
                if e.event.at > before {
                    break 'read;
                }
                if e.event.at < after || !seen.insert(e.case_id) {
                    continue;
                }
                if let Some(c) = self.store.case(e.case_id).await?
                    && self.open311_wanted(q, &c)
                    && reported(&c)
                {
                    found.push(c);
                    if found.len() >= want {
                        break 'read;
                    }
                }
            }
        }
        Ok(found)
    }

    /// Whether a listed case passes the filters the store does not apply.
    fn open311_wanted(&self, q: &Open311Query, c: &civicgrid_core::case::Case) -> bool {
        (q.service_codes.is_empty() || q.service_codes.contains(&c.facts.matter))
            && q.open.is_none_or(|open| open == is_open(c))
            && q.near.is_none_or(|(p, r)| civicgrid_core::case::distance_m(p, c.facts.location) <= r)
    }
}

/// Open in Open311's sense: not closed and not void (the core's own meaning of open).
fn is_open(c: &civicgrid_core::case::Case) -> bool {
    c.status.state.is_open()
}

/// The status an update reports, in the words of mySociety's Open311 extension (what FixMyStreet
/// shows its users).
fn update_status(state: civicgrid_core::case::CaseState) -> &'static str {
    use civicgrid_core::case::CaseState as S;
    match state {
        S::Reported | S::Accepted | S::Filed | S::VoidRequested => "open",
        S::Checking => "investigating",
        S::Dispatched | S::Handling | S::ReturnRequested | S::ExtensionRequested | S::ParkRequested => "in_progress",
        S::Parked => "action_scheduled",
        S::Replied | S::Verified => "in_progress",
        S::Closed => "fixed",
        S::Merged => "duplicate",
        S::Void => "closed",
    }
}

impl Services {
    /// Every change to any request between `start` and `end` (mySociety's `servicerequestupdates`),
    /// oldest first, at most [`MAX_REQUESTS`]; `update_id` is the change's global sequence number.
    pub async fn open311_updates(
        &self,
        start: Option<jiff::Timestamp>,
        end: Option<jiff::Timestamp>,
    ) -> ServiceResult<Vec<Value>> {
        let end = end.unwrap_or_else(|| self.clock.now());
        let start = start.unwrap_or(end - jiff::SignedDuration::from_hours(24));
        if start > end || end.duration_since(start) > jiff::SignedDuration::from_hours(24 * MAX_SPAN_DAYS) {
            return Err(ServiceError::invalid(
                "start_date",
                format!("before end_date, at most {MAX_SPAN_DAYS} days before it"),
            ));
        }
        let Some(first) = self.store.first_seq_since(start).await? else {
            return Ok(Vec::new());
        };
        let (mut after, mut out) = (first - 1, Vec::new());
        'read: loop {
            let page = self.store.events_after(after, 500).await?;
            if page.is_empty() {
                break;
            }
            for e in page {
                after = e.seq;
                if e.event.at > end {
                    break 'read;
                }
                if e.event.at < start {
                    continue;
                }
                let label = e.event.action.name();
                let said = e.event.reason.as_deref().map(|r| format!("：{r}")).unwrap_or_default();
                out.push(serde_json::json!({
                    "update_id": e.seq.to_string(),
                    "service_request_id": e.case_id.to_string(),
                    "status": update_status(e.event.to),
                    "updated_datetime": w3c(e.event.at),
                    "description": format!("{}{said}", e.event.to.label_zh()),
                    "external_status_code": label,
                    "media_url": "",
                }));
                if out.len() >= MAX_REQUESTS as usize {
                    break 'read;
                }
            }
        }
        Ok(out)
    }
}
