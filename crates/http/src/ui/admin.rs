//! The administrator's pages (`/admin/…`): accounts and posts, service accounts and their API keys,
//! the working calendar (next year's holidays), time limits, routing rules, the duty roster and the
//! departments. Every change goes through the same service call as the JSON API, which checks the
//! post and validates; a refusal comes back on the page with its message. One template
//! (`admin.html`) draws every section.

use std::collections::BTreeMap;

use askama::Template;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use civicgrid_core::access::{AccountInput, Channel, Role};
use civicgrid_core::calendar::{CalendarEntry, DayKind, local};
use civicgrid_core::duty::{DutyEntry, DutyPost, Shift};
use civicgrid_core::routing::{RoutingRule, RoutingTable};
use civicgrid_core::sla::SlaPolicy;
use civicgrid_service::notify::RosterInput;
use jiff::ToSpan;
use jiff::civil::Date;
use serde::Deserialize;
use serde_json::{Value, json};

use super::i18n::{Catalog, local_time};
use super::{Frame, Session, render, see_other, snake_name};
use crate::error::ApiError;
use crate::state::AppState;

/// The sections, in the order of the tabs.
const SECTIONS: [&str; 7] = ["users", "integrations", "calendar", "sla", "routing", "roster", "departments"];
/// The time limits an administrator sets, by their path in the policy document.
pub const LIMITS: [&str; 12] = [
    "dispatch.normal",
    "dispatch.urgent",
    "dispatch.critical",
    "sign",
    "handle.normal",
    "handle.urgent",
    "handle.critical",
    "handle_police_110",
    "verify",
    "close",
    "check",
    "rectify",
];
/// The units a time limit counts in.
const UNITS: [&str; 6] =
    ["working_minutes", "working_hours", "working_days", "calendar_minutes", "calendar_hours", "calendar_days"];
/// The policy's plain numbers.
pub const NUMBERS: [&str; 5] =
    ["warn_percent", "ack_within_minutes", "verify_radius_m", "sample_percent", "duplicate_radius_m"];
/// Days of the roster shown at once.
const ROSTER_DAYS: i64 = 7;

/// A tab, link or choice.
#[derive(Debug)]
pub struct Choice {
    value: String,
    label: String,
    active: bool,
}

/// One account as listed.
#[derive(Debug)]
pub struct UserRow {
    id: i64,
    username: String,
    name: String,
    role: String,
    place: String,
    disabled: bool,
}

/// One service account with its keys.
#[derive(Debug)]
pub struct AccountRow {
    id: i64,
    name: String,
    channel: String,
    disabled: bool,
    keys: Vec<KeyRow>,
}

/// One API key as listed (never the key itself).
#[derive(Debug)]
pub struct KeyRow {
    id: i64,
    prefix: String,
    created: String,
    last_used: String,
    revoked: bool,
}

/// One time limit as edited.
#[derive(Debug)]
pub struct LimitRow {
    path: &'static str,
    label: String,
    amount: u64,
    unit: String,
}

/// One routing rule as listed.
#[derive(Debug)]
pub struct RuleRow {
    index: usize,
    when: String,
    lead: String,
    co: String,
}

/// One roster line: a date and shift, and who holds each post.
#[derive(Debug)]
pub struct RosterRow {
    date: String,
    shift: String,
    cells: Vec<String>,
}

/// What a section shows.
#[derive(Debug)]
pub enum Body {
    /// Accounts, and the form for a new one.
    Users { users: Vec<UserRow>, roles: Vec<Choice>, departments: Vec<Choice>, grids: Vec<Choice> },
    /// Service accounts and keys.
    Integrations { accounts: Vec<AccountRow>, channels: Vec<Choice>, issued: Option<String> },
    /// Calendar entries from this year on.
    Calendar { entries: Vec<(String, String, String, String)>, next_year: i16 },
    /// The SLA policy's limits and numbers.
    Sla {
        limits: Vec<LimitRow>,
        units: Vec<Choice>,
        numbers: Vec<(&'static str, String, String)>,
        multiples: String,
        around_the_clock: bool,
        per_matter: usize,
    },
    /// Routing rules.
    Routing { rules: Vec<RuleRow>, departments: Vec<Choice> },
    /// A week of the roster.
    Roster {
        from: String,
        dept: String,
        posts: Vec<Choice>,
        rows: Vec<RosterRow>,
        shifts: Vec<Choice>,
        users: Vec<Choice>,
        departments: Vec<Choice>,
        prev: String,
        next: String,
    },
    /// Departments, and the form to add or rename one.
    Departments { rows: Vec<(String, String, String, String)>, parents: Vec<Choice> },
}

#[derive(Template)]
#[template(path = "admin.html")]
struct AdminPage {
    frame: Frame,
    tabs: Vec<Choice>,
    notice: String,
    error: String,
    /// The working calendar lacks a year that deadlines reach (shown on every section).
    calendar_missing: String,
    body: Body,
}

/// The address of a section (`?from=` for the roster).
#[derive(Debug, Default, Deserialize)]
pub struct SectionQuery {
    from: Option<String>,
    dept: Option<String>,
    done: Option<String>,
}

/// A submitted form, as name–value pairs (repeated names allowed).
type Fields = Vec<(String, String)>;

fn field<'a>(f: &'a Fields, name: &str) -> &'a str {
    f.iter().find(|(k, _)| k == name).map_or("", |(_, v)| v.as_str()).trim()
}

fn fields<'a>(f: &'a Fields, name: &str) -> Vec<&'a str> {
    f.iter().filter(|(k, _)| k == name).map(|(_, v)| v.trim()).filter(|v| !v.is_empty()).collect()
}

fn optional(v: &str) -> Value {
    if v.is_empty() { Value::Null } else { json!(v) }
}

/// A refusal of a form: the service's message, or ours for a field that does not parse.
fn invalid(field: &str, message: impl Into<String>) -> ApiError {
    ApiError::invalid(field, message.into())
}

/// `GET /admin`.
pub async fn home() -> Response {
    see_other("/admin/users")
}

/// `GET /admin/{section}`.
pub async fn section(
    State(state): State<AppState>,
    s: Session,
    Path(section): Path<String>,
    Query(q): Query<SectionQuery>,
) -> Response {
    let notice = q.done.as_deref().map(|k| s.t().get(&format!("admin.done.{k}")).to_owned()).unwrap_or_default();
    let from = (q.from.as_deref(), q.dept.as_deref());
    show(&state, &s, &section, from, notice, String::new(), None).await
}

/// Draws a section; `error` (with status 422, or the error's own) when a change was refused.
async fn show(
    state: &AppState,
    s: &Session,
    section: &str,
    (from, dept): (Option<&str>, Option<&str>),
    notice: String,
    error: String,
    issued: Option<String>,
) -> Response {
    let Some(section) = SECTIONS.into_iter().find(|x| *x == section) else {
        return super::message(s.lang, StatusCode::NOT_FOUND, "error.not_found");
    };
    if s.actor.role != Role::Admin {
        return super::message(s.lang, StatusCode::FORBIDDEN, "admin.forbidden");
    }
    let t = s.t();
    let body = match body(state, s, section, (from, dept), issued).await {
        Ok(b) => b,
        Err(e) => return super::refusal(s.lang, e),
    };
    let tabs = SECTIONS
        .iter()
        .map(|k| Choice {
            value: (*k).to_owned(),
            label: t.get(&format!("admin.tab.{k}")).to_owned(),
            active: *k == section,
        })
        .collect();
    let calendar_missing = state
        .services
        .missing_calendar_year()
        .map_or_else(String::new, |year| t.get("admin.calendar.missing").replace("{year}", &year.to_string()));
    let frame = Frame::new(state, s, "/admin", "admin.title").await;
    let status = if error.is_empty() { StatusCode::OK } else { StatusCode::UNPROCESSABLE_ENTITY };
    render(status, &AdminPage { frame, tabs, notice, error, calendar_missing, body })
}

fn departments(state: &AppState) -> Vec<Choice> {
    state
        .world()
        .departments
        .values()
        .map(|d| Choice { value: d.code.to_string(), label: d.name_zh.clone(), active: false })
        .collect()
}

fn limit_label(t: &Catalog, path: &str) -> String {
    t.get(&format!("admin.sla.{path}")).to_owned()
}

async fn body(
    state: &AppState,
    s: &Session,
    section: &str,
    (from, dept): (Option<&str>, Option<&str>),
    issued: Option<String>,
) -> Result<Body, ApiError> {
    let t = s.t();
    let services = &state.services;
    let world = state.world();
    let dept_name = |d: &civicgrid_core::org::DeptCode| world.department_name(d);
    Ok(match section {
        "users" => {
            let users = services.users(&s.actor).await?;
            let grids = services.grids().await?;
            let grid_names: BTreeMap<_, _> = grids.iter().map(|g| (g.code, g.name_zh.clone())).collect();
            Body::Users {
                users: users
                    .iter()
                    .map(|u| UserRow {
                        id: u.id,
                        username: u.username.clone(),
                        name: u.display_name.clone(),
                        role: t.role(u.role).to_owned(),
                        place: match (&u.department, u.grids.as_slice()) {
                            (Some(d), _) => dept_name(d),
                            (None, []) => String::new(),
                            (None, gs) => gs
                                .iter()
                                .map(|g| grid_names.get(g).cloned().unwrap_or_else(|| g.to_string()))
                                .collect::<Vec<_>>()
                                .join("、"),
                        },
                        disabled: u.disabled_at.is_some(),
                    })
                    .collect(),
                roles: Role::ALL
                    .into_iter()
                    .filter(|r| !matches!(r, Role::System | Role::Integration))
                    .map(|r| Choice { value: r.as_str().to_owned(), label: t.role(r).to_owned(), active: false })
                    .collect(),
                departments: departments(state),
                grids: grids
                    .iter()
                    .map(|g| Choice { value: g.code.to_string(), label: g.name_zh.clone(), active: false })
                    .collect(),
            }
        }
        "integrations" => Body::Integrations {
            accounts: services
                .service_accounts(&s.actor)
                .await?
                .into_iter()
                .map(|v| AccountRow {
                    id: v.account.id,
                    name: v.account.name,
                    channel: t.get(&format!("admin.channel.{}", snake_name(v.account.channel))).to_owned(),
                    disabled: v.account.disabled_at.is_some(),
                    keys: v
                        .keys
                        .into_iter()
                        .map(|k| KeyRow {
                            id: k.id,
                            prefix: k.prefix,
                            created: local_time(k.created_at),
                            last_used: k.last_used_at.map(local_time).unwrap_or_default(),
                            revoked: k.revoked_at.is_some(),
                        })
                        .collect(),
                })
                .collect(),
            channels: Channel::ALL
                .into_iter()
                .map(|c| {
                    let v = snake_name(c);
                    Choice { label: t.get(&format!("admin.channel.{v}")).to_owned(), value: v, active: false }
                })
                .collect(),
            issued,
        },
        "calendar" => {
            let year = local(state.clock.now()).date().year();
            let entries = services.calendar().await?;
            Body::Calendar {
                entries: entries
                    .into_iter()
                    .filter(|e| e.date.year() >= year)
                    .map(|e| {
                        (
                            e.date.to_string(),
                            t.get(&format!("admin.calendar.{}", snake_name(e.kind))).to_owned(),
                            e.name_zh,
                            e.name_en,
                        )
                    })
                    .collect(),
                next_year: year + 1,
            }
        }
        "sla" => {
            let policy = serde_json::to_value(&world.sla).map_err(|e| ApiError::internal(e.to_string()))?;
            let at = |path: &str| path.split('.').fold(&policy, |v, k| &v[k]);
            Body::Sla {
                limits: LIMITS
                    .iter()
                    .map(|p| LimitRow {
                        path: p,
                        label: limit_label(t, p),
                        amount: at(p)["amount"].as_u64().unwrap_or(0),
                        unit: at(p)["unit"].as_str().unwrap_or_default().to_owned(),
                    })
                    .collect(),
                units: UNITS
                    .iter()
                    .map(|u| Choice {
                        value: (*u).to_owned(),
                        label: t.get(&format!("admin.unit.{u}")).to_owned(),
                        active: false,
                    })
                    .collect(),
                numbers: NUMBERS.iter().map(|n| (*n, limit_label(t, n), at(n).to_string())).collect(),
                multiples: world.sla.escalate_multiples.iter().map(u8::to_string).collect::<Vec<_>>().join(","),
                around_the_clock: world.sla.centre_around_the_clock,
                per_matter: world.sla.per_matter.len(),
            }
        }
        "routing" => Body::Routing {
            rules: world
                .routing
                .rules
                .iter()
                .enumerate()
                .map(|(index, r)| {
                    let mut when = Vec::new();
                    if let Some(m) = r.matter {
                        when.push(format!(
                            "{} {}",
                            t.get("admin.routing.matter"),
                            world.catalog.matter(m).map_or_else(|| m.to_string(), |x| format!("{m} {}", x.name_zh))
                        ));
                    }
                    if let Some(c) = &r.matter_class {
                        when.push(format!("{} {c}", t.get("admin.routing.matter_class")));
                    }
                    if let Some(c) = r.community {
                        when.push(format!("{} {c}", t.get("admin.routing.community")));
                    }
                    if let Some(g) = r.grid {
                        when.push(format!("{} {g}", t.get("admin.routing.grid")));
                    }
                    if let Some(d) = &r.component_owner {
                        when.push(format!("{} {}", t.get("admin.routing.component_owner"), dept_name(d)));
                    }
                    RuleRow {
                        index,
                        when: when.join(" · "),
                        lead: dept_name(&r.lead),
                        co: r.co.iter().map(&dept_name).collect::<Vec<_>>().join("、"),
                    }
                })
                .collect(),
            departments: departments(state),
        },
        "roster" => {
            let today = local(state.clock.now()).date();
            let from = from.and_then(|d| d.parse::<Date>().ok()).unwrap_or(today);
            let shown: Option<civicgrid_core::org::DeptCode> = dept.and_then(|d| d.parse().ok());
            let to = from.checked_add((ROSTER_DAYS - 1).days()).map_err(|e| invalid("from", e.to_string()))?;
            let entries = services.roster(&s.actor, from, to).await?;
            let users = services.users(&s.actor).await?;
            let names: BTreeMap<i64, &str> = users.iter().map(|u| (u.id, u.display_name.as_str())).collect();
            let mut rows = Vec::new();
            let mut day = from;
            while day <= to {
                for shift in [Shift::Day, Shift::Night] {
                    // Who holds a post on this date and shift. Without a chosen department, a
                    // departmental post says how many departments have someone.
                    let cell = |post: DutyPost| -> String {
                        let here: Vec<&DutyEntry> =
                            entries.iter().filter(|e| e.date == day && e.shift == shift && e.post == post).collect();
                        if shown.is_none() && matches!(post, DutyPost::DeptHead | DutyPost::DeptHandler) {
                            let staffed: std::collections::BTreeSet<_> =
                                here.iter().filter_map(|e| e.department.as_ref()).collect();
                            if !staffed.is_empty() {
                                return t.get("admin.roster.departments").replace("{n}", &staffed.len().to_string());
                            }
                        }
                        here.iter()
                            .filter(|e| e.department.is_none() || e.department == shown)
                            .map(|e| {
                                let who = names.get(&e.user_id).copied().unwrap_or("?");
                                match &e.department {
                                    Some(d) if !who.contains(&dept_name(d)) => format!("{who}（{}）", dept_name(d)),
                                    _ => who.to_owned(),
                                }
                            })
                            .collect::<Vec<_>>()
                            .join("、")
                    };
                    let cells = DutyPost::ALL.into_iter().map(cell).collect();
                    rows.push(RosterRow {
                        date: day.to_string(),
                        shift: t.get(&format!("admin.shift.{}", shift.as_str())).to_owned(),
                        cells,
                    });
                }
                day = day.tomorrow().map_err(|e| invalid("from", e.to_string()))?;
            }
            let week = |n: i64| from.checked_add(n.days()).map(|d| d.to_string()).unwrap_or_default();
            Body::Roster {
                from: from.to_string(),
                posts: DutyPost::ALL
                    .iter()
                    .map(|p| Choice { value: p.as_str().to_owned(), label: p.label_zh().to_owned(), active: false })
                    .collect(),
                shifts: [Shift::Day, Shift::Night]
                    .iter()
                    .map(|x| Choice {
                        value: x.as_str().to_owned(),
                        label: t.get(&format!("admin.shift.{}", x.as_str())).to_owned(),
                        active: false,
                    })
                    .collect(),
                users: users
                    .iter()
                    .filter(|u| {
                        u.disabled_at.is_none()
                            && matches!(
                                u.role,
                                Role::IntakeOperator
                                    | Role::ShiftLeader
                                    | Role::Dispatcher
                                    | Role::Leader
                                    | Role::DeptHandler
                            )
                    })
                    .map(|u| Choice {
                        value: u.id.to_string(),
                        label: format!("{} · {}", u.display_name, t.role(u.role)),
                        active: false,
                    })
                    .collect(),
                departments: departments(state)
                    .into_iter()
                    .map(|c| Choice { active: shown.as_ref().is_some_and(|d| d.as_str() == c.value), ..c })
                    .collect(),
                dept: shown.as_ref().map(|d| d.to_string()).unwrap_or_default(),
                rows,
                prev: week(-ROSTER_DAYS),
                next: week(ROSTER_DAYS),
            }
        }
        _ => Body::Departments {
            rows: world
                .departments
                .values()
                .map(|d| {
                    (
                        d.code.to_string(),
                        d.name_zh.clone(),
                        d.name_en.clone(),
                        d.parent.as_ref().map(&dept_name).unwrap_or_default(),
                    )
                })
                .collect(),
            parents: departments(state),
        },
    })
}

/// `POST /admin/{section}`: a new item, or a change of the whole section.
pub async fn change_section(
    State(state): State<AppState>,
    s: Session,
    Path(section): Path<String>,
    Form(f): Form<Fields>,
) -> Response {
    change(&state, &s, section, None, &f).await
}

/// `POST /admin/{section}/{id}`: a change of one item.
pub async fn change_item(
    State(state): State<AppState>,
    s: Session,
    Path((section, id)): Path<(String, i64)>,
    Form(f): Form<Fields>,
) -> Response {
    change(&state, &s, section, Some(id), &f).await
}

/// One change, then back to the section (or the section again with the refusal).
async fn change(state: &AppState, s: &Session, section: String, id: Option<i64>, f: &Fields) -> Response {
    if let Some(refused) = s.csrf_refusal(field(f, "csrf")) {
        return refused;
    }
    let from = field(f, "from").to_owned();
    match apply(state, s, &section, id, f).await {
        Ok(Applied::Done(key)) => {
            let back = if from.is_empty() { String::new() } else { format!("&from={from}") };
            see_other(&format!("/admin/{section}?done={key}{back}"))
        }
        Ok(Applied::Issued(key)) => {
            show(state, s, &section, (None, None), s.t().get("admin.done.issued").to_owned(), String::new(), Some(key))
                .await
        }
        Err(e) => {
            let message = match e.body.field.as_deref() {
                Some(field) if !field.is_empty() => format!("{field}: {}", e.body.message),
                _ => e.body.message,
            };
            let from = Some(from.as_str()).filter(|x| !x.is_empty());
            show(state, s, &section, (from, None), String::new(), message, None).await
        }
    }
}

/// What a change did.
enum Applied {
    /// Done; the key of its notice.
    Done(&'static str),
    /// An API key was issued: shown once, on the page itself, never in an address.
    Issued(String),
}

async fn apply(state: &AppState, s: &Session, section: &str, id: Option<i64>, f: &Fields) -> Result<Applied, ApiError> {
    let services = &state.services;
    let actor = &s.actor;
    let op = field(f, "op");
    match (section, id, op) {
        ("users", None, _) => {
            let role = super::from_snake::<Role>(field(f, "role")).ok_or_else(|| invalid("role", "choose a post"))?;
            let input: AccountInput = serde_json::from_value(json!({
                "username": field(f, "username"),
                "display_name": field(f, "display_name"),
                "role": role,
                "password": field(f, "password"),
                "department": optional(field(f, "department")),
                "grids": fields(f, "grids"),
                "phone": optional(field(f, "phone")),
            }))
            .map_err(|e| invalid("account", e.to_string()))?;
            services.create_account(actor, input, None).await?;
            Ok(Applied::Done("user_created"))
        }
        ("users", Some(id), "enable" | "disable") => {
            services.set_user_enabled(actor, id, op == "enable").await?;
            Ok(Applied::Done("user_state"))
        }
        ("users", Some(id), "password") => {
            services.reset_password(actor, id, field(f, "password").to_owned()).await?;
            Ok(Applied::Done("password"))
        }
        ("users", Some(id), "sessions") => {
            services.end_sessions(actor, id).await?;
            Ok(Applied::Done("sessions"))
        }
        ("integrations", None, _) => {
            let channel = super::from_snake::<Channel>(field(f, "channel"))
                .ok_or_else(|| invalid("channel", "choose a channel"))?;
            services.create_service_account(actor, field(f, "name"), channel, None).await?;
            Ok(Applied::Done("account_created"))
        }
        ("integrations", Some(id), "enable" | "disable") => {
            services.set_service_account_enabled(actor, id, op == "enable").await?;
            Ok(Applied::Done("account_state"))
        }
        ("integrations", Some(id), "issue") => {
            let issued = services.issue_api_key(actor, id, None).await?;
            Ok(Applied::Issued(issued.value.key.unwrap_or_default()))
        }
        ("integrations", Some(key), "revoke") => {
            services.revoke_api_key(actor, key).await?;
            Ok(Applied::Done("revoked"))
        }
        ("calendar", None, "add" | "remove") => {
            let date: Date = field(f, "date").parse().map_err(|_| invalid("date", "a date YYYY-MM-DD"))?;
            let mut entries = services.calendar().await?;
            entries.retain(|e| e.date != date);
            if op == "add" {
                let kind = super::from_snake::<DayKind>(field(f, "kind"))
                    .ok_or_else(|| invalid("kind", "holiday or workday"))?;
                let name_zh = field(f, "name_zh");
                if name_zh.is_empty() || name_zh.chars().count() > 20 {
                    return Err(invalid("name_zh", "a name of 1–20 characters"));
                }
                let name_en = field(f, "name_en").chars().take(40).collect::<String>();
                entries.push(CalendarEntry { date, kind, name_zh: name_zh.to_owned(), name_en });
                entries.sort_by_key(|e| e.date);
            }
            services.put_calendar(actor, &entries).await?;
            Ok(Applied::Done("calendar"))
        }
        ("sla", None, _) => {
            let mut policy = serde_json::to_value(&state.world().sla).map_err(|e| ApiError::internal(e.to_string()))?;
            for path in LIMITS {
                let amount: u32 =
                    field(f, &format!("{path}.amount")).parse().map_err(|_| invalid(path, "a whole number"))?;
                let unit = field(f, &format!("{path}.unit"));
                if !UNITS.contains(&unit) {
                    return Err(invalid(path, "a unit"));
                }
                let slot = path.split('.').fold(&mut policy, |v, k| &mut v[k]);
                *slot = json!({"unit": unit, "amount": amount});
            }
            for n in NUMBERS {
                let v: u64 = field(f, n).parse().map_err(|_| invalid(n, "a whole number"))?;
                policy[n] = json!(v);
            }
            let multiples: Result<Vec<u8>, _> = field(f, "escalate_multiples")
                .split([',', '，', ' '])
                .filter(|x| !x.is_empty())
                .map(str::parse::<u8>)
                .collect();
            policy["escalate_multiples"] =
                json!(multiples.map_err(|_| invalid("escalate_multiples", "whole numbers separated by commas"))?);
            policy["centre_around_the_clock"] = json!(field(f, "centre_around_the_clock") == "on");
            let policy: SlaPolicy = serde_json::from_value(policy).map_err(|e| invalid("policy", e.to_string()))?;
            services.set_sla_policy(actor, policy).await?;
            Ok(Applied::Done("sla"))
        }
        ("routing", None, "add" | "remove") => {
            let mut table: RoutingTable = state.world().routing.clone();
            if op == "remove" {
                let i: usize = field(f, "index").parse().map_err(|_| invalid("index", "a rule"))?;
                if i >= table.rules.len() {
                    return Err(invalid("index", "no such rule"));
                }
                table.rules.remove(i);
            } else {
                let rule: RoutingRule = serde_json::from_value(json!({
                    "matter": optional(field(f, "matter")),
                    "matter_class": optional(field(f, "matter_class")),
                    "community": optional(field(f, "community")),
                    "grid": optional(field(f, "grid")),
                    "component_owner": optional(field(f, "component_owner")),
                    "lead": field(f, "lead"),
                    "co": fields(f, "co"),
                }))
                .map_err(|e| invalid("rule", e.to_string()))?;
                table.rules.push(rule);
            }
            services.set_routing_rules(actor, table).await?;
            Ok(Applied::Done("routing"))
        }
        ("roster", None, "set") => {
            let date: Date = field(f, "date").parse().map_err(|_| invalid("date", "a date YYYY-MM-DD"))?;
            let shift =
                super::from_snake::<Shift>(field(f, "shift")).ok_or_else(|| invalid("shift", "day or night"))?;
            let post = super::from_snake::<DutyPost>(field(f, "post")).ok_or_else(|| invalid("post", "a post"))?;
            let department = match field(f, "department") {
                "" => None,
                d => Some(d.parse().map_err(|_| invalid("department", "a department"))?),
            };
            let mut entries = services.roster(actor, date, date).await?;
            entries.retain(|e| !(e.shift == shift && e.post == post && e.department == department));
            for user in fields(f, "users") {
                let user_id = user.parse().map_err(|_| invalid("users", "a person"))?;
                entries.push(DutyEntry { date, shift, post, department: department.clone(), user_id });
            }
            services.set_roster(actor, RosterInput { from: date, to: date, entries }).await?;
            Ok(Applied::Done("roster"))
        }
        ("departments", None, _) => {
            let code = field(f, "code")
                .parse()
                .map_err(|e: civicgrid_core::org::DeptCodeError| invalid("code", e.to_string()))?;
            let parent = match field(f, "parent") {
                "" => None,
                p => Some(p.parse().map_err(|e: civicgrid_core::org::DeptCodeError| invalid("parent", e.to_string()))?),
            };
            let department = civicgrid_core::org::Department {
                code,
                name_zh: field(f, "name_zh").to_owned(),
                name_en: field(f, "name_en").to_owned(),
                parent,
            };
            services.put_department(actor, department).await?;
            Ok(Applied::Done("department"))
        }
        _ => Err(ApiError::not_found("change")),
    }
}
