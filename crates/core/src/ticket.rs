//! Tickets pushed by upstream systems — the 12345 hotline platform and the 110 police system's
//! non-police diversion (非警务警情分流) — and the catalogue of matters police may divert. A ticket
//! becomes an ordinary report ([`crate::intake::ReportInput`]) that carries its upstream identity
//! ([`Upstream`]): the ticket number (one case per ticket, ever), the hotline's category, the
//! upstream deadline (the case's handling deadline never falls after it) and, for an urgent
//! diversion the catalogue marks so, that police must be told back at once (回退110).

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::access::Channel;
use crate::case::{GeoPoint, Urgency};
use crate::catalog::Catalog;
use crate::codes::MatterCode;
use crate::coords::CoordSystem;
use crate::error::DomainError;
use crate::intake::ReportInput;

/// Longest ticket number accepted.
pub const MAX_TICKET_NO: usize = 64;
/// Longest ticket content accepted, in characters.
pub const MAX_CONTENT: usize = crate::intake::MAX_DESCRIPTION;
/// Most entries in the diversion catalogue.
pub const MAX_DIVERSIONS: usize = 200;

/// The 12345 hotline's kinds of appeal (诉求类型).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TicketCategory {
    /// 求决: asks for something to be solved.
    SeekHelp,
    /// 投诉: a complaint.
    Complaint,
    /// 咨询: a question.
    Consult,
    /// 建议: a suggestion.
    Suggestion,
    /// 感谢: thanks.
    Thanks,
    /// 举报: reports wrongdoing.
    Report,
}

impl TicketCategory {
    /// The 12345 platform's own answer limit for the kind (city practice: an enquiry in 1 working
    /// day, a request or suggestion in 5, a complaint in 10); `None` where it sets none.
    pub fn answer_limit(self) -> Option<crate::calendar::TimeLimit> {
        use crate::calendar::TimeLimit::WorkingDays;
        match self {
            TicketCategory::Consult => Some(WorkingDays(1)),
            TicketCategory::SeekHelp | TicketCategory::Suggestion => Some(WorkingDays(5)),
            TicketCategory::Complaint => Some(WorkingDays(10)),
            TicketCategory::Thanks | TicketCategory::Report => None,
        }
    }

    /// The Chinese label.
    pub fn label_zh(self) -> &'static str {
        match self {
            TicketCategory::SeekHelp => "求决",
            TicketCategory::Complaint => "投诉",
            TicketCategory::Consult => "咨询",
            TicketCategory::Suggestion => "建议",
            TicketCategory::Thanks => "感谢",
            TicketCategory::Report => "举报",
        }
    }
}

/// Where a case came from upstream; kept in the case's facts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Upstream {
    /// The channel (12345 or 110).
    pub channel: Channel,
    /// The service account that pushed it; replies go to its reply hook.
    pub account_id: i64,
    /// The upstream ticket number.
    pub ticket_no: String,
    /// The appeal's kind (12345).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<TicketCategory>,
    /// The upstream system's deadline for an answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub deadline: Option<Timestamp>,
    /// The diversion catalogue entry (110).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diversion: Option<String>,
    /// An urgent diversion police must attend themselves (回退110); they were told on arrival.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub police_return: bool,
}

/// A ticket as an upstream system pushes it (`POST /api/v1/intake/tickets`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TicketInput {
    /// The upstream ticket number: a ticket pushed again answers with the case made the first time.
    pub ticket_no: String,
    /// 求决 / 投诉 / 咨询 / 建议 / 感谢 / 举报 (required from 12345).
    #[serde(default)]
    pub category: Option<TicketCategory>,
    /// Matter code; from 110 it may be left out when `diversion` is given.
    #[serde(default)]
    pub matter: Option<MatterCode>,
    /// The diversion catalogue entry (110 only).
    #[serde(default)]
    pub diversion: Option<String>,
    /// What the caller said.
    pub content: String,
    /// Where, in `coord_system`.
    pub location: GeoPoint,
    /// The coordinate system of `location` (police and hotline maps often send GCJ-02).
    #[serde(default)]
    pub coord_system: CoordSystem,
    /// Address text.
    #[serde(default)]
    pub address: String,
    /// The caller's name (kept as given; masked for most posts).
    #[serde(default)]
    pub caller_name: Option<String>,
    /// The caller's phone, plain or already masked upstream (138****5678).
    #[serde(default)]
    pub caller_phone: Option<String>,
    /// Urgency (default normal).
    #[serde(default)]
    pub urgency: Urgency,
    /// The upstream system's deadline for an answer (ISO 8601 with offset).
    #[serde(default)]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub deadline: Option<Timestamp>,
}

/// A non-police matter police may divert to the town, and the matter it becomes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Diversion {
    /// Code the police system sends: 2–32 of a–z, 0–9, `_`.
    pub code: String,
    /// Chinese name.
    pub name_zh: String,
    /// English name.
    pub name_en: String,
    /// The matter it becomes.
    pub matter: MatterCode,
    /// Whether an urgent (紧急/特急) ticket of this kind also goes back to police at once (回退110).
    #[serde(default)]
    pub urgent_police_return: bool,
}

/// The diversion catalogue, edited by an administrator as one document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DiversionCatalogue {
    /// The entries.
    pub items: Vec<Diversion>,
}

impl Default for DiversionCatalogue {
    /// The example list: the non-police matters most often diverted in Jiangsu's pilots.
    fn default() -> Self {
        let item = |code: &str, zh: &str, en: &str, matter: &str, urgent_police_return: bool| Diversion {
            code: code.to_owned(),
            name_zh: zh.to_owned(),
            name_en: en.to_owned(),
            matter: matter.parse().expect("a valid matter code"),
            urgent_police_return,
        };
        DiversionCatalogue {
            items: vec![
                item("noise_construction", "施工扰民", "Construction noise", "08001", false),
                item("noise_social", "噪声扰民", "Neighbourhood noise", "06028", true),
                item("cooking_fumes", "油烟污染", "Cooking fumes", "06027", false),
                item("barbecue", "露天烧烤", "Open-air barbecue", "06029", false),
                item("street_vending", "占道经营", "Street vending", "09006", false),
                item("parking_motor", "机动车乱停放", "Badly parked cars", "09009", false),
                item("parking_bicycle", "非机动车乱停放", "Badly parked bicycles", "09010", false),
                item("manhole_cover", "污水井盖异常", "Sewage manhole cover fault", "01002", true),
                item("street_lamp", "路灯不亮", "Street lamp out", "01037", false),
                item("rubbish", "积存垃圾渣土", "Rubbish heaped up", "06011", false),
                item("animal_carcass", "动物尸体", "Animal carcass", "06037", false),
            ],
        }
    }
}

impl DiversionCatalogue {
    /// The entry with this code.
    pub fn get(&self, code: &str) -> Option<&Diversion> {
        self.items.iter().find(|d| d.code == code)
    }

    /// Checks the catalogue against the code table: codes well formed and unique, names given,
    /// every matter in the table.
    pub fn check(&self, catalog: &Catalog) -> Result<(), DomainError> {
        if self.items.len() > MAX_DIVERSIONS {
            return Err(DomainError::invalid("items", format!("at most {MAX_DIVERSIONS} entries")));
        }
        let mut seen = std::collections::BTreeSet::new();
        for d in &self.items {
            let well_formed = (2..=32).contains(&d.code.len())
                && d.code.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
            if !well_formed {
                return Err(DomainError::invalid("code", format!("{:?}: 2–32 of a–z, 0–9, _", d.code)));
            }
            if !seen.insert(d.code.as_str()) {
                return Err(DomainError::invalid("code", format!("{} appears twice", d.code)));
            }
            crate::text::line("name_zh", &d.name_zh, 1, 50)?;
            crate::text::line("name_en", &d.name_en, 1, 80)?;
            if catalog.matter(d.matter).is_none() {
                return Err(DomainError::invalid(
                    "matter",
                    format!("{}: matter {} is not in the code table", d.code, d.matter),
                ));
            }
        }
        Ok(())
    }
}

/// Whether `s` is a phone number masked upstream: digits, `*` and `-`, 7–20 long, at least 3 digits
/// and at least one `*`.
pub fn is_masked_phone(s: &str) -> bool {
    (7..=20).contains(&s.len())
        && s.contains('*')
        && s.bytes().all(|b| b.is_ascii_digit() || b == b'*' || b == b'-')
        && s.bytes().filter(u8::is_ascii_digit).count() >= 3
}

/// Turns a ticket pushed on `channel` by service account `account_id` into a report, or refuses it:
/// a well-formed ticket number, a category from 12345, a matter from the code table (or, from 110, a
/// diversion catalogue entry, which names the matter), and an upstream deadline no further than a year
/// from `now` (one already past is kept but does not shorten anything).
pub fn ticket_report(
    input: TicketInput,
    channel: Channel,
    account_id: i64,
    catalogue: &DiversionCatalogue,
    now: Timestamp,
) -> Result<ReportInput, DomainError> {
    let ticket_no = input.ticket_no.trim();
    if ticket_no.is_empty() || ticket_no.len() > MAX_TICKET_NO || !ticket_no.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(DomainError::invalid("ticket_no", format!("1–{MAX_TICKET_NO} visible ASCII characters")));
    }
    let diversion =
        match (channel, input.diversion.as_deref()) {
            (Channel::Police110, Some(code)) => Some(catalogue.get(code).ok_or_else(|| {
                DomainError::invalid("diversion", format!("{code} is not in the diversion catalogue"))
            })?),
            (Channel::Police110, None) => None,
            (Channel::Hotline12345, Some(_)) => {
                return Err(DomainError::invalid("diversion", "only 110 diverts tickets"));
            }
            (Channel::Hotline12345, None) => None,
            _ => return Err(DomainError::Forbidden("only the 12345 and 110 channels push tickets".into())),
        };
    if channel == Channel::Hotline12345 && input.category.is_none() {
        return Err(DomainError::invalid("category", "a 12345 ticket names its category"));
    }
    let matter = match (input.matter, diversion) {
        (Some(m), Some(d)) if m != d.matter => {
            return Err(DomainError::invalid(
                "matter",
                format!("diversion {} is matter {}, not {m}", d.code, d.matter),
            ));
        }
        (Some(m), _) => m,
        (None, Some(d)) => d.matter,
        (None, None) => return Err(DomainError::invalid("matter", "a matter code (or, from 110, a diversion)")),
    };
    if let Some(deadline) = input.deadline
        && deadline.duration_since(now) > SignedDuration::from_hours(366 * 24)
    {
        return Err(DomainError::invalid("deadline", "more than a year away"));
    }
    if let Some(p) = input.caller_phone.as_deref()
        && !crate::access::is_phone_number(p)
        && !is_masked_phone(p)
    {
        return Err(DomainError::invalid("caller_phone", "a phone number (5–20 digits) or one masked upstream"));
    }
    let police_return = diversion.is_some_and(|d| d.urgent_police_return) && input.urgency != Urgency::Normal;
    let upstream = Upstream {
        channel,
        account_id,
        ticket_no: ticket_no.to_owned(),
        category: input.category,
        deadline: input.deadline,
        diversion: diversion.map(|d| d.code.clone()),
        police_return,
    };
    Ok(ReportInput {
        matter,
        component_id: None,
        source: None,
        urgency: input.urgency,
        description: input.content,
        location: input.location,
        coord_system: input.coord_system,
        address: input.address,
        reporter_name: input.caller_name,
        reporter_phone: input.caller_phone,
        attachments: Vec::new(),
        upstream: Some(upstream),
        tracking: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ticket() -> TicketInput {
        serde_json::from_value(serde_json::json!({
            "ticket_no": "SZ12345-20261124-0001",
            "category": "complaint",
            "matter": "06010",
            "content": "小区门口垃圾三天没人清",
            "location": {"lon": 120.0, "lat": 31.0},
        }))
        .expect("a ticket")
    }

    fn now() -> Timestamp {
        "2026-11-24T01:00:00Z".parse().expect("a time")
    }

    #[test]
    fn the_example_catalogue_names_real_matters() {
        let catalog = Catalog::national().expect("the national table");
        DiversionCatalogue::default().check(&catalog).expect("valid");
    }

    #[test]
    fn a_hotline_ticket_keeps_its_identity() {
        let r = ticket_report(ticket(), Channel::Hotline12345, 7, &DiversionCatalogue::default(), now()).expect("ok");
        let up = r.upstream.expect("upstream");
        assert_eq!(
            (up.ticket_no.as_str(), up.account_id, up.category),
            ("SZ12345-20261124-0001", 7, Some(TicketCategory::Complaint))
        );
        assert!(!up.police_return);
    }

    #[test]
    fn a_diversion_names_its_matter_and_urgent_ones_go_back_to_police() {
        let cat = DiversionCatalogue::default();
        let mut t = ticket();
        (t.matter, t.category, t.diversion, t.urgency) = (None, None, Some("noise_social".into()), Urgency::Urgent);
        let r = ticket_report(t.clone(), Channel::Police110, 3, &cat, now()).expect("ok");
        assert_eq!(r.matter, "06028".parse().expect("code"));
        assert!(r.upstream.expect("upstream").police_return);
        t.urgency = Urgency::Normal;
        assert!(!ticket_report(t, Channel::Police110, 3, &cat, now()).expect("ok").upstream.expect("up").police_return);
    }

    #[test]
    fn bad_tickets_are_refused_by_field() {
        let cat = DiversionCatalogue::default();
        let field = |t: TicketInput, ch| match ticket_report(t, ch, 1, &cat, now()) {
            Err(DomainError::Invalid { field, .. }) => field.unwrap_or_default(),
            other => panic!("{other:?}"),
        };
        assert_eq!(field(TicketInput { ticket_no: " ".into(), ..ticket() }, Channel::Hotline12345), "ticket_no");
        assert_eq!(field(TicketInput { category: None, ..ticket() }, Channel::Hotline12345), "category");
        assert_eq!(field(TicketInput { diversion: Some("x".into()), ..ticket() }, Channel::Hotline12345), "diversion");
        assert_eq!(field(TicketInput { diversion: Some("nope".into()), ..ticket() }, Channel::Police110), "diversion");
        assert_eq!(field(TicketInput { diversion: Some("barbecue".into()), ..ticket() }, Channel::Police110), "matter");
        assert_eq!(field(TicketInput { matter: None, ..ticket() }, Channel::Hotline12345), "matter");
        let far = Some("2028-01-01T00:00:00Z".parse().expect("time"));
        assert_eq!(field(TicketInput { deadline: far, ..ticket() }, Channel::Hotline12345), "deadline");
        assert_eq!(
            field(TicketInput { caller_phone: Some("call me".into()), ..ticket() }, Channel::Hotline12345),
            "caller_phone"
        );
        assert!(matches!(ticket_report(ticket(), Channel::Open311, 1, &cat, now()), Err(DomainError::Forbidden(_))));
    }

    #[test]
    fn masked_phones_are_recognised() {
        assert!(is_masked_phone("138****5678"));
        assert!(!is_masked_phone("13800005678"));
        assert!(!is_masked_phone("********"));
    }
}
