//! The public's own channel (the citizen H5 page, and Open311 updates from outside sites): a
//! report without an account, a tracking number (the case number) with a query code only the
//! reporter holds, a progress view with public-safe fields only, and the reporter's feedback.
//!
//! - **Suggestion:** an opinion (意见建议) for a village's or community's liaison station, contact
//!   optional, placed at that workstation; answered by a department like any case, without a visit.
//! - **Report:** made by the system actor `h5` on the H5 channel; photos are uploaded first and a
//!   photo's EXIF position stands in for a place not pinned. The query code is random; only its
//!   SHA-256 is kept, in the reporter's part of the facts, which no post is ever shown.
//! - **Progress:** received → handling (the department's name) → answered (the department's answer)
//!   → closed, or not accepted (with the reason). No staff names, no other reporter's data.
//! - **Feedback:** once closed, the reporter rates the result (the call-back, by the reporter
//!   themself); "not fixed" is the lowest rating with their words, which opens a rectification
//!   (整改) for the lead department and tells it at once. Before closure, "not fixed" and other
//!   words reach whoever owns the current step (the department while it handles the case).

use civicgrid_core::access::Actor;
use civicgrid_core::case::{Action, Case, CaseEvent, CaseState, Command, GeoPoint, Satisfaction};
use civicgrid_core::codes::MatterCode;
use civicgrid_core::coords::CoordSystem;
use civicgrid_core::duty::{Addressee, DutyPost, Severity, step_owner};
use civicgrid_core::intake::ReportInput;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::accounts::{random_hex, sha256_hex};
use crate::notify::Alert;
use crate::{ServiceError, ServiceResult, Services};

/// Most photos on one public report.
pub const MAX_PUBLIC_PHOTOS: usize = 3;
/// Longest feedback text, in characters.
pub const MAX_FEEDBACK: usize = 500;
/// The job name of the public channel's system actor.
pub const PUBLIC_JOB: &str = "h5";

/// A report as the public page submits it.
#[derive(Debug, Clone)]
pub struct PublicReport {
    /// Matter code.
    pub matter: MatterCode,
    /// What is wrong.
    pub description: String,
    /// Where, in `coord_system`; `None` to take the first photo's EXIF position.
    pub location: Option<GeoPoint>,
    /// The coordinate system of `location` (a phone's map SDK may send GCJ-02 or BD-09).
    pub coord_system: CoordSystem,
    /// Address text.
    pub address: String,
    /// The reporter's name (optional).
    pub name: Option<String>,
    /// The reporter's phone, for the call-back.
    pub phone: String,
    /// Photos: file name and bytes.
    pub photos: Vec<(String, Vec<u8>)>,
}

/// An opinion or suggestion as the public page submits it.
#[derive(Debug, Clone)]
pub struct PublicSuggestion {
    /// What it is about (a matter of the code table).
    pub matter: MatterCode,
    /// The opinion.
    pub text: String,
    /// The village or community (its workstation's liaison station answers for it).
    pub community: civicgrid_core::codes::CommunityCode,
    /// A name, if they leave one.
    pub name: Option<String>,
    /// A phone, if they want to be called back.
    pub phone: Option<String>,
}

/// What the reporter keeps: the tracking number and the query code (shown once).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Receipt {
    /// The tracking number (the case number).
    pub number: String,
    /// The query code.
    pub code: String,
}

/// Where a report is, in the public's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PublicStage {
    /// 已受理: with the centre.
    Received,
    /// 处理中: with a department.
    Handling,
    /// 已答复: the department answered; being checked on site.
    Answered,
    /// 已办结.
    Closed,
    /// 不予受理.
    NotAccepted,
}

impl PublicStage {
    fn of(state: CaseState) -> Self {
        use CaseState as S;
        match state {
            S::Reported | S::Checking | S::Accepted | S::Filed | S::VoidRequested => PublicStage::Received,
            S::Replied | S::Verified => PublicStage::Answered,
            S::Closed => PublicStage::Closed,
            S::Void => PublicStage::NotAccepted,
            _ => PublicStage::Handling,
        }
    }
}

/// One public step of a report's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PublicStep {
    /// When.
    pub at: Timestamp,
    /// What: `reported`, `accepted`, `dispatched`, `answered`, `closed`, `not_accepted`, `rated`,
    /// `rectified`.
    pub kind: &'static str,
    /// The department, for `dispatched`.
    pub department: Option<String>,
    /// The department's answer, the reason for not accepting, the reporter's words.
    pub text: Option<String>,
}

/// A report as its reporter sees it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PublicCase {
    /// Tracking number.
    pub number: String,
    /// The matter's Chinese and English names.
    pub matter: (String, String),
    /// Where it stands.
    pub stage: PublicStage,
    /// When it was reported.
    pub reported_at: Timestamp,
    /// Address as given.
    pub address: String,
    /// The reporter's phone, masked.
    pub phone: Option<String>,
    /// What happened, oldest first.
    pub steps: Vec<PublicStep>,
    /// The reporter's rating, 1–5, once given.
    pub rating: Option<u8>,
    /// Whether the reporter may rate now (closed, not yet rated).
    pub can_rate: bool,
    /// Whether a rectification the reporter asked for is open.
    pub rectifying: bool,
}

/// The reporter's feedback.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct PublicFeedback {
    /// A rating of a closed report.
    pub satisfaction: Option<Satisfaction>,
    /// "Not fixed".
    pub not_fixed: bool,
    /// Their words (required with "not fixed", at most 500 characters).
    pub text: String,
}

fn public_actor() -> Actor {
    Actor::system(PUBLIC_JOB)
}

fn steps(events: &[CaseEvent], world: &crate::world::World) -> Vec<PublicStep> {
    let mut out: Vec<PublicStep> = Vec::new();
    let step = |at, kind, department: Option<String>, text: Option<String>| PublicStep { at, kind, department, text };
    for e in events.iter().filter(|e| e.task.is_none()) {
        let made = match (&e.action, e.to) {
            (Action::Report, _) => Some(step(e.at, "reported", None, None)),
            (Action::Accept | Action::ConfirmCheck, _) if !out.iter().any(|s| s.kind == "accepted") => {
                Some(step(e.at, "accepted", None, None))
            }
            (Action::Dispatch { lead, .. } | Action::Reassign { lead, .. }, _) => {
                Some(step(e.at, "dispatched", Some(world.department_name(lead)), None))
            }
            (_, CaseState::Replied) if e.from == Some(CaseState::Handling) => {
                Some(step(e.at, "answered", None, e.reason.clone()))
            }
            (Action::CallBack { .. }, _) => Some(step(e.at, "rated", None, e.reason.clone())),
            (Action::Rectify, _) => Some(step(e.at, "rectified", None, e.reason.clone())),
            (_, CaseState::Closed) if e.from != Some(CaseState::Closed) => Some(step(e.at, "closed", None, None)),
            (_, CaseState::Void) => Some(step(e.at, "not_accepted", None, e.reason.clone())),
            _ => None,
        };
        out.extend(made);
    }
    out
}

impl Services {
    /// Reports a problem from the public page; the receipt holds the query code, shown this once.
    /// `key` (the rendered form's) makes a resent form one report.
    pub async fn report_public(&self, r: PublicReport, key: Option<&str>) -> ServiceResult<(Case, Receipt)> {
        if r.photos.len() > MAX_PUBLIC_PHOTOS {
            return Err(ServiceError::invalid("photo", format!("at most {MAX_PUBLIC_PHOTOS} photos")));
        }
        if !civicgrid_core::access::is_phone_number(r.phone.trim()) {
            return Err(ServiceError::invalid("reporter_phone", "a phone number for the call-back"));
        }
        let actor = public_actor();
        let mut attachments = Vec::new();
        let mut exif_place = None;
        for (i, (name, bytes)) in r.photos.into_iter().enumerate() {
            let photo_key = key.map(|k| format!("h5-{k}-photo{i}"));
            let stored = self.upload_attachment_once(&actor, &name, bytes, photo_key.as_deref()).await?.value;
            if !stored.mime.starts_with("image/") {
                return Err(ServiceError::invalid("photo", "photos are JPEG, PNG or WebP images"));
            }
            exif_place = exif_place.or(stored.location);
            attachments.push(stored.as_evidence());
        }
        let (location, coord_system) = match (r.location, exif_place) {
            (Some(p), _) => (p, r.coord_system),
            // A phone's camera writes GPS (WGS84) positions.
            (None, Some(p)) => (p, CoordSystem::Wgs84),
            (None, None) => {
                return Err(ServiceError::invalid("location", "pin the place on the map, or add a photo taken there"));
            }
        };
        let input = ReportInput {
            matter: r.matter,
            component_id: None,
            source: Some(civicgrid_core::case::Source::CitizenH5),
            urgency: Default::default(),
            description: r.description,
            location,
            coord_system,
            address: r.address,
            reporter_name: r.name.filter(|n| !n.trim().is_empty()),
            reporter_phone: Some(r.phone.trim().to_owned()),
            attachments,
            upstream: None,
            tracking: None,
        };
        self.file_public(input, key).await
    }

    /// Takes an opinion or suggestion (意见建议) from the public page, for the village or community whose
    /// liaison station answers for it; the contact is optional. It becomes a case of the suggestion
    /// channel, placed at that workstation and answered by a department (no on-site visit).
    pub async fn suggest_public(&self, s: PublicSuggestion, key: Option<&str>) -> ServiceResult<(Case, Receipt)> {
        let phone = s.phone.map(|p| p.trim().to_owned()).filter(|p| !p.is_empty());
        if phone.as_deref().is_some_and(|p| !civicgrid_core::access::is_phone_number(p)) {
            return Err(ServiceError::invalid("reporter_phone", "a phone number, or nothing"));
        }
        let workstation = self
            .store
            .workstations()
            .await?
            .into_iter()
            .find(|w| w.code == s.community)
            .ok_or_else(|| ServiceError::invalid("community", "a village or community of this town"))?;
        let location = self
            .world()
            .index
            .point_in_community(s.community)
            .ok_or_else(|| ServiceError::invalid("community", "this village or community has no grid yet"))?;
        let input = ReportInput {
            matter: s.matter,
            component_id: None,
            source: Some(civicgrid_core::case::Source::Suggestion),
            urgency: Default::default(),
            description: s.text,
            location,
            coord_system: CoordSystem::Wgs84,
            address: format!("{}（网上意见建议）", workstation.name_zh),
            reporter_name: s.name.filter(|n| !n.trim().is_empty()),
            reporter_phone: phone,
            attachments: Vec::new(),
            upstream: None,
            tracking: None,
        };
        self.file_public(input, key).await
    }

    /// Files a report or suggestion of the public channel with a fresh query code; `key` (the rendered
    /// form's) makes a resent form one case.
    async fn file_public(&self, mut input: ReportInput, key: Option<&str>) -> ServiceResult<(Case, Receipt)> {
        let actor = public_actor();
        let code = random_hex(5)?.to_uppercase();
        input.tracking = Some(sha256_hex(code.as_bytes()));
        let idempotency = match key {
            Some(k) => crate::idempotency::key_for(&actor, Some(&format!("h5-{k}")), &input)?,
            None => None,
        };
        let created = self.report_keyed(&actor, input, idempotency).await?;
        if created.replayed {
            // The first answer was lost; its code cannot be shown again (only its digest is kept).
            return Err(ServiceError::invalid("key", "this form was already sent; its tracking number was shown then"));
        }
        let number = created.value.number.clone();
        Ok((created.value, Receipt { number, code }))
    }

    /// The case of a tracking number and query code; `NotFound` for a wrong pair, alike whether the
    /// number or the code is wrong.
    async fn tracked(&self, number: &str, code: &str) -> ServiceResult<Case> {
        let number = number.trim();
        let code = code.trim().to_uppercase();
        if number.is_empty() || number.len() > 40 || code.is_empty() || code.len() > 40 {
            return Err(ServiceError::NotFound("report"));
        }
        let case = self.store.case_by_number(number).await?.ok_or(ServiceError::NotFound("report"))?;
        let digest = sha256_hex(code.as_bytes());
        let matches = case
            .facts
            .reporter
            .tracking
            .as_deref()
            // Digests are compared, so the time taken tells nothing about the code.
            .is_some_and(|kept| kept == digest);
        if !matches {
            return Err(ServiceError::NotFound("report"));
        }
        Ok(case)
    }

    /// A report's progress, for the holder of its tracking number and query code.
    pub async fn public_case(&self, number: &str, code: &str) -> ServiceResult<PublicCase> {
        let case = self.tracked(number, code).await?;
        self.reporter_view(case).await
    }

    async fn reporter_view(&self, case: Case) -> ServiceResult<PublicCase> {
        let world = self.world();
        let events = self.store.case_events(case.id).await?;
        let matter = world
            .catalog
            .matter(case.facts.matter)
            .map(|m| (m.name_zh.clone(), m.name_en.clone()))
            .unwrap_or_else(|| (case.facts.matter.to_string(), case.facts.matter.to_string()));
        let s = &case.status;
        Ok(PublicCase {
            number: case.number.clone(),
            matter,
            stage: PublicStage::of(s.state),
            reported_at: case.facts.reported_at,
            address: case.facts.address.clone(),
            phone: case.facts.reporter.phone.as_deref().map(civicgrid_core::access::mask_phone),
            steps: steps(&events, &world),
            rating: s.satisfaction.map(|v| v.score()),
            can_rate: s.state == CaseState::Closed && s.satisfaction.is_none(),
            rectifying: s.rectification.as_ref().is_some_and(civicgrid_core::case::Rectification::is_open),
        })
    }

    /// The reporter's feedback on their report (see the module's documentation).
    pub async fn public_feedback(&self, number: &str, code: &str, fb: PublicFeedback) -> ServiceResult<PublicCase> {
        let case = self.tracked(number, code).await?;
        self.feedback_on(case, fb).await
    }

    /// The public's feedback on `case`, whoever passes it on (the reporter's page, an Open311 site).
    pub(crate) async fn feedback_on(&self, case: Case, fb: PublicFeedback) -> ServiceResult<PublicCase> {
        let text = civicgrid_core::text::long("text", &fb.text, 0, MAX_FEEDBACK)?;
        if fb.not_fixed && text.is_empty() {
            return Err(ServiceError::invalid("text", "say what is still wrong"));
        }
        let closed = case.status.state == CaseState::Closed;
        let case = match (closed, case.status.satisfaction, fb.satisfaction, fb.not_fixed) {
            (true, None, _, true) | (true, None, Some(_), false) => {
                let satisfaction = if fb.not_fixed {
                    Satisfaction::VeryDissatisfied
                } else {
                    fb.satisfaction.unwrap_or(Satisfaction::Satisfied)
                };
                let reason = if fb.not_fixed { format!("群众反映未解决：{text}") } else { text.clone() };
                let cmd = Command::new(Action::CallBack { satisfaction });
                let cmd = if reason.is_empty() { cmd } else { cmd.because(reason) };
                self.transition(&public_actor(), case.id, &cmd, Some(case.status.version)).await?
            }
            (true, Some(_), Some(_), false) => {
                return Err(ServiceError::invalid("satisfaction", "this report has been rated already"));
            }
            (false, _, Some(_), false) => {
                return Err(ServiceError::invalid("satisfaction", "a report is rated once it is closed"));
            }
            (_, _, None, false) if text.is_empty() => return Err(ServiceError::invalid("text", "nothing to send")),
            _ => case,
        };
        if fb.not_fixed || !text.is_empty() {
            self.tell_owner(&case, fb.not_fixed, &text).await?;
        }
        self.reporter_view(case).await
    }

    /// Tells whoever owns the case's step (the lead department once dispatched, or while a
    /// rectification is open) what the reporter said.
    async fn tell_owner(&self, case: &Case, not_fixed: bool, text: &str) -> ServiceResult<()> {
        let lead = case.status.lead_dept.clone();
        let addressee = match case.status.state {
            CaseState::Closed => lead.map(|d| Addressee::Post(DutyPost::DeptHandler, Some(d))),
            state => step_owner(state, lead.as_ref()),
        };
        let title = if not_fixed { "群众反映问题未解决" } else { "群众补充意见" };
        self.raise(Alert {
            dedup_key: format!("public:{}:{}", case.id, &sha256_hex(text.as_bytes())[..16]),
            kind: if not_fixed { "public_not_fixed" } else { "public_comment" },
            severity: if not_fixed { Severity::Warning } else { Severity::Info },
            case: Some(case.clone()),
            addressee,
            title: format!("{title}：{}", case.number),
            body: text.to_owned(),
        })
        .await
    }
}
