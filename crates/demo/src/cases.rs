//! A year of cases with a realistic shape: more on weekdays and in summer, fewer at night and over the
//! Spring Festival; grid patrols, hotline, H5, 110, IoT and video; mostly on time, some late, reworked,
//! extended, parked, escalated, returned, reopened or voided. Every case is driven through the real
//! state machine ([`decide`]) on a simulated clock, so each stored history replays to its stored row;
//! cases whose next step lies after "now" simply stay open where they are.

use std::collections::BTreeMap;

use civicgrid_core::access::Role;
use civicgrid_core::calendar::{WorkCalendar, from_local, local};
use civicgrid_core::case::{
    Action, Attachment, CaseEvent, CaseFacts, CaseId, CaseState, CaseStatus, Command, Context, EventActor, GeoPoint,
    Reporter, Satisfaction, Source, Urgency, decide,
};
use civicgrid_core::codes::{CommunityCode, ComponentClassCode, ComponentId, GridCode, MatterCode, MicroGridCode};
use civicgrid_core::component::Component;
use civicgrid_core::cotask::TaskState;
use civicgrid_core::duty::{DutyEntry, DutyPost, Shift};
use civicgrid_core::grid::{MicroGrid, Polygon};
use civicgrid_core::org::DeptCode;
use civicgrid_core::routing::{Route, RoutingRule, RoutingTable};
use civicgrid_core::sla::{Clocks, SlaPolicy};
use civicgrid_store::{ImportCase, User};
use jiff::civil::{Date, Weekday};
use jiff::{SignedDuration, Timestamp};

use crate::{DemoOptions, TownData, layout};

/// Cases a year at scale 1 (Zhangpu handles about 550,000).
pub const CASES_PER_YEAR: f64 = 550_000.0;
/// Cases handed to the store at a time.
pub const CHUNK: usize = 5000;

/// Common matters of non-component cases, with relative weights.
const MATTERS: [(&str, u32); 22] = [
    ("06010", 14),
    ("06012", 9),
    ("06011", 6),
    ("06042", 6),
    ("09006", 6),
    ("09005", 5),
    ("09009", 6),
    ("09010", 4),
    ("06036", 5),
    ("07001", 5),
    ("06013", 4),
    ("06001", 3),
    ("08004", 2),
    ("08002", 2),
    ("06028", 3),
    ("06027", 2),
    ("06029", 2),
    ("06026", 1),
    ("06040", 1),
    ("06034", 1),
    ("10002", 1),
    ("09012", 1),
];

/// Component classes that fail and report (IoT) or get reported, with weights.
const FAULTS: [(&str, u32); 6] = [("01037", 8), ("01002", 3), ("01001", 2), ("01003", 2), ("03005", 3), ("01013", 1)];

/// The demo town's routing rules (派遣规则): a lead department per matter class, exact matters that
/// go elsewhere, some with co-departments, and one area rule (rubbish in the first workstation goes to
/// its own sanitation team's contractor, helped by 城管). Component faults are led by the component's
/// owner whatever the rules say.
pub fn routing_rules(first_community: Option<CommunityCode>) -> RoutingTable {
    let rule = |matter: Option<&str>, class: Option<&str>, lead: &str, co: &[&str]| RoutingRule {
        matter: matter.map(parse),
        matter_class: class.map(str::to_owned),
        community: None,
        grid: None,
        component_owner: None,
        lead: parse(lead),
        co: co.iter().map(|d| parse(d)).collect(),
    };
    let mut rules = vec![
        rule(None, Some("01"), "shizheng", &[]),
        rule(None, Some("02"), "jiaotong", &[]),
        rule(None, Some("03"), "huanwei", &[]),
        rule(None, Some("04"), "shizheng", &[]),
        rule(None, Some("05"), "chengguan", &[]),
        rule(None, Some("06"), "chengguan", &[]),
        rule(None, Some("07"), "chengguan", &[]),
        rule(None, Some("08"), "housing", &[]),
        rule(None, Some("09"), "chengguan", &[]),
        rule(None, Some("10"), "chengguan", &[]),
    ];
    for (matters, lead, co) in [
        (&["06010", "06011", "06012", "06014", "06017", "06037", "06041", "06042"][..], "huanwei", &[][..]),
        (&["06013", "06049", "06050", "06051", "06052", "10001"], "shizheng", &[]),
        (&["06025", "06026", "06030"], "shuiwu", &["huanwei"]),
        (&["06027", "06028", "06020"], "eco", &["chengguan"]),
        (&["09009"], "police", &[]),
        (&["09012"], "fire", &["police"]),
        (&["10002"], "gongdian", &[]),
        (&["01037", "01060"], "shizheng-lamp", &[]),
        (&["01001", "01002", "01003"], "shuiwu", &[]),
        (&["01005"], "gongdian", &[]),
        (&["01013"], "fire", &[]),
    ] {
        rules.extend(matters.iter().map(|m| rule(Some(m), None, lead, co)));
    }
    if let Some(c) = first_community {
        rules.push(RoutingRule { community: Some(c), ..rule(Some("06010"), None, "huanwei", &["chengguan"]) });
    }
    RoutingTable { rules }
}

/// Reports per hour of the day, relative: few at night, peaks mid-morning and mid-afternoon.
const HOUR_WEIGHTS: [(i8, u32); 24] = [
    (0, 2),
    (1, 1),
    (2, 1),
    (3, 1),
    (4, 1),
    (5, 2),
    (6, 4),
    (7, 10),
    (8, 16),
    (9, 17),
    (10, 16),
    (11, 12),
    (12, 7),
    (13, 9),
    (14, 15),
    (15, 15),
    (16, 14),
    (17, 11),
    (18, 8),
    (19, 7),
    (20, 6),
    (21, 5),
    (22, 3),
    (23, 2),
];

/// The share of a day's reports made by `at` (local time of day), by [`HOUR_WEIGHTS`].
pub(crate) fn share_of_day_by(at: jiff::civil::Time) -> f64 {
    let total: u32 = HOUR_WEIGHTS.iter().map(|(_, w)| w).sum();
    let before: u32 = HOUR_WEIGHTS.iter().filter(|(h, _)| *h < at.hour()).map(|(_, w)| w).sum();
    let this = HOUR_WEIGHTS.iter().find(|(h, _)| *h == at.hour()).map_or(0, |(_, w)| *w);
    let into_hour = (f64::from(at.minute()) * 60.0 + f64::from(at.second())) / 3600.0;
    (f64::from(before) + f64::from(this) * into_hour) / f64::from(total.max(1))
}

fn weighted<'a, T>(rng: &mut fastrand::Rng, items: &'a [(T, u32)]) -> &'a T {
    let total: u32 = items.iter().map(|(_, w)| w).sum();
    let mut pick = rng.u32(0..total.max(1));
    for (item, w) in items {
        if pick < *w {
            return item;
        }
        pick -= w;
    }
    &items[0].0
}

fn parse<T: std::str::FromStr>(s: &str) -> T
where
    T::Err: std::fmt::Debug,
{
    s.parse().unwrap_or_else(|e| panic!("demo constant {s:?}: {e:?}"))
}

/// Who plays each post in the simulation.
#[derive(Debug, Clone)]
struct Cast {
    /// The centre's two teams: day and night shifts, swapping every week ([`team_on_duty`]).
    teams: [Team; 2],
    supervisor: EventActor,
    citizen: EventActor,
    leader: EventActor,
    departments: BTreeMap<DeptCode, EventActor>,
    grid_workers: BTreeMap<GridCode, EventActor>,
}

/// The centre's posts on one shift.
#[derive(Debug, Clone)]
struct Team {
    intake: EventActor,
    shift: EventActor,
    dispatcher: EventActor,
}

/// Which of the two teams stands the shift at `at`: team 0 has the day shift in even ISO weeks and
/// the night shift in odd ones. The demo's duty roster says the same.
pub fn team_on_duty(at: Timestamp) -> usize {
    let (date, shift) = Shift::at(at);
    let even = date.iso_week_date().week() % 2 == 0;
    usize::from(even != (shift == Shift::Day))
}

/// The duty roster of `from..=to` the simulated year follows: the centre's posts by team and shift
/// ([`team_on_duty`]), the town leader on the day shift, and each department's handler on call day
/// and night (and its head by day).
pub fn roster(users: &[User], from: Date, to: Date) -> Vec<DutyEntry> {
    let cast = Cast::new(users);
    let mut out = Vec::new();
    let mut day = from;
    while day <= to {
        for (shift, hour) in [(Shift::Day, 9), (Shift::Night, 21)] {
            let team = &cast.teams[team_on_duty(from_local(day.at(hour, 0, 0, 0)))];
            let mut put = |post, department: Option<&DeptCode>, who: &EventActor| {
                if let Some(user_id) = who.user_id {
                    out.push(DutyEntry { date: day, shift, post, department: department.cloned(), user_id });
                }
            };
            put(DutyPost::IntakeOperator, None, &team.intake);
            put(DutyPost::ShiftLeader, None, &team.shift);
            put(DutyPost::Dispatcher, None, &team.dispatcher);
            if shift == Shift::Day {
                put(DutyPost::Leader, None, &cast.leader);
            }
            for (dept, handler) in &cast.departments {
                put(DutyPost::DeptHandler, Some(dept), handler);
                if shift == Shift::Day {
                    put(DutyPost::DeptHead, Some(dept), handler);
                }
            }
        }
        match day.tomorrow() {
            Ok(next) => day = next,
            Err(_) => break,
        }
    }
    out
}

/// Who takes a step: a centre post (whoever of the team on duty stands it when the step is taken), or a
/// given person.
#[derive(Debug, Clone, Copy)]
enum Who<'x> {
    Intake,
    Shift,
    Dispatcher,
    Is(&'x EventActor),
}

impl<'x> From<&'x EventActor> for Who<'x> {
    fn from(a: &'x EventActor) -> Self {
        Who::Is(a)
    }
}

impl Cast {
    fn new(users: &[User]) -> Cast {
        let actor = |u: &User| EventActor::user(u.id, u.role);
        let nth = |role: Role, n: usize| {
            let all: Vec<&User> = users.iter().filter(|u| u.role == role).collect();
            all.get(n).or(all.first()).map(|u| actor(u)).unwrap_or(EventActor { user_id: None, role, job: None })
        };
        let first = |role: Role| nth(role, 0);
        let team = |n| Team {
            intake: nth(Role::IntakeOperator, n),
            shift: nth(Role::ShiftLeader, n),
            dispatcher: nth(Role::Dispatcher, n),
        };
        Cast {
            teams: [team(0), team(1)],
            supervisor: first(Role::Supervisor),
            citizen: first(Role::Citizen),
            leader: first(Role::Leader),
            departments: users
                .iter()
                .filter(|u| u.role == Role::DeptHandler)
                .filter_map(|u| u.department.clone().map(|d| (d, actor(u))))
                .collect(),
            grid_workers: users
                .iter()
                .filter(|u| u.role == Role::GridWorker)
                .flat_map(|u| u.grids.iter().map(move |g| (*g, actor(u))))
                .collect(),
        }
    }
}

/// Everything needed to generate the year, detached from the store so it can run on its own thread.
#[derive(Debug)]
pub struct Plan {
    days: Vec<(Date, u32)>,
    micro: Vec<(MicroGrid, Polygon<f64>)>,
    components: BTreeMap<ComponentClassCode, Vec<Component>>,
    owners: BTreeMap<ComponentId, DeptCode>,
    routing: RoutingTable,
    departments: Vec<DeptCode>,
    cast: Cast,
    clocks: Clocks,
    sla: SlaPolicy,
    seed: u64,
    now: Timestamp,
}

impl Plan {
    /// Plans the year ending at `opts.now`.
    pub fn new(data: &TownData, users: &[User], opts: &DemoOptions) -> Plan {
        let calendar = WorkCalendar::china_2026();
        let sla = SlaPolicy::default();
        let mut rng = fastrand::Rng::with_seed(opts.seed ^ 0x5eed);
        let today = local(opts.now).date();
        let first = today.checked_sub(jiff::Span::new().days(364)).unwrap_or(today);
        let month_factor = [0.8, 0.7, 0.9, 1.0, 1.05, 1.15, 1.25, 1.25, 1.1, 1.0, 0.95, 0.85];
        let mut weights = Vec::new();
        let mut day = first;
        while day <= today {
            let mut w = month_factor[(day.month() - 1) as usize];
            w *= match day.weekday() {
                Weekday::Saturday => 0.65,
                Weekday::Sunday => 0.55,
                _ => 1.0,
            };
            if !calendar.is_working_day(day) && !matches!(day.weekday(), Weekday::Saturday | Weekday::Sunday) {
                w *= 0.5;
            }
            if day == today {
                // Today so far: the cockpit compares it with the same hours of yesterday.
                w *= share_of_day_by(local(opts.now).time());
            }
            weights.push((day, w));
            match day.tomorrow() {
                Ok(d) => day = d,
                Err(_) => break,
            }
        }
        let total = CASES_PER_YEAR * opts.case_scale;
        let sum: f64 = weights.iter().map(|(_, w)| w).sum();
        let days = weights
            .into_iter()
            .map(|(d, w)| {
                let exact = total * w / sum;
                (d, exact.floor() as u32 + u32::from(rng.f64() < exact.fract()))
            })
            .collect();
        let mut components: BTreeMap<ComponentClassCode, Vec<Component>> = BTreeMap::new();
        for c in &data.components {
            components.entry(c.id.class()).or_default().push(c.clone());
        }
        Plan {
            days,
            micro: data.layout.micro_grids.iter().map(|m| (m.clone(), m.polygon.clone())).collect(),
            components,
            owners: data.components.iter().map(|c| (c.id, c.department.clone())).collect(),
            routing: routing_rules(data.layout.workstations.first().map(|(w, _)| w.code)),
            departments: data.departments.iter().map(|d| d.code.clone()).collect(),
            cast: Cast::new(users),
            // The clocks the live service uses with the default policy (the centre runs 24 h).
            clocks: sla.clocks(&calendar).unwrap_or_else(|_| Clocks::single(calendar)),
            sla,
            seed: opts.seed,
            now: opts.now,
        }
    }

    /// How many cases the year holds.
    pub fn total(&self) -> u64 {
        self.days.iter().map(|(_, n)| u64::from(*n)).sum()
    }

    /// Generates every case in time order, handing chunks to `sink`; stops early if it returns false.
    pub fn generate(self, mut sink: impl FnMut(Vec<Generated>) -> bool) {
        let mut rng = fastrand::Rng::with_seed(self.seed ^ 0xca5e);
        // Today's reports fall in the hours gone by, in the same proportions as on a whole day.
        let now = local(self.now);
        let hours_so_far: Vec<(i8, u32)> = HOUR_WEIGHTS.iter().copied().filter(|(h, _)| *h <= now.hour()).collect();
        let into_hour = i64::from(now.minute()) * 60 + i64::from(now.second());
        let mut chunk = Vec::with_capacity(CHUNK);
        let mut recent: BTreeMap<(MatterCode, GridCode), Vec<Candidate>> = BTreeMap::new();
        let mut ordinal = 0;
        for &(day, n) in &self.days {
            let hours: &[(i8, u32)] = if day == now.date() { &hours_so_far } else { &HOUR_WEIGHTS };
            let mut times: Vec<Timestamp> = (0..n)
                .map(|_| {
                    let h = *weighted(&mut rng, hours);
                    let t = from_local(day.at(h, rng.i8(0..60), rng.i8(0..60), 0));
                    if t >= self.now { self.now - SignedDuration::from_secs(rng.i64(1..into_hour.max(2))) } else { t }
                })
                .collect();
            times.sort();
            for t in times {
                chunk.push(self.next_case(&mut rng, t, ordinal, &mut recent));
                ordinal += 1;
                if chunk.len() == CHUNK && !sink(std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK))) {
                    return;
                }
            }
        }
        if !chunk.is_empty() {
            sink(chunk);
        }
    }

    fn facts(&self, rng: &mut fastrand::Rng, at: Timestamp) -> (CaseFacts, EventActor) {
        let source = *weighted(
            rng,
            &[
                (Source::GridPatrol, 50),
                (Source::Hotline12345, 22),
                (Source::CitizenH5, 8),
                (Source::Police110, 4),
                (Source::Iot, 8),
                (Source::Video, 6),
                (Source::Leader, 2),
            ],
        );
        let component_fault = source == Source::Iot || rng.u32(0..100) < 22;
        let (matter, component) = if component_fault {
            let class: ComponentClassCode = parse(weighted::<&str>(rng, &FAULTS));
            let c = self.components.get(&class).and_then(|v| (!v.is_empty()).then(|| v[rng.usize(0..v.len())].clone()));
            (parse::<MatterCode>(class.as_str()), c)
        } else {
            (parse::<MatterCode>(weighted::<&str>(rng, &MATTERS)), None)
        };
        let (location, grid, micro_grid) = match &component {
            Some(c) => (c.location, c.grid, c.micro_grid),
            None => {
                let (m, poly) = &self.micro[rng.usize(0..self.micro.len())];
                let p = layout::point_in(poly, 0.05 + rng.f64() * 0.9, 0.05 + rng.f64() * 0.9);
                (GeoPoint { lon: p.x, lat: p.y }, m.grid(), m.code)
            }
        };
        let intake = self.cast.teams[team_on_duty(at)].intake.clone();
        let worker = self.cast.grid_workers.get(&grid).cloned().unwrap_or(intake.clone());
        let (actor, reporter) = match source {
            Source::GridPatrol => {
                (worker.clone(), Reporter { user_id: worker.user_id, name: None, phone: None, tracking: None })
            }
            Source::Hotline12345 | Source::Police110 => (
                intake.clone(),
                Reporter {
                    user_id: intake.user_id,
                    name: Some(crate::names::person(rng.usize(0..400))),
                    phone: Some(format!("1{}{:09}", rng.u8(3..10), rng.u32(0..1_000_000_000))),
                    tracking: None,
                },
            ),
            Source::CitizenH5 | Source::Suggestion => (
                self.cast.citizen.clone(),
                Reporter {
                    user_id: self.cast.citizen.user_id,
                    name: None,
                    phone: Some(format!("1{}{:09}", rng.u8(3..10), rng.u32(0..1_000_000_000))),
                    tracking: None,
                },
            ),
            Source::Leader => (
                self.cast.leader.clone(),
                Reporter { user_id: self.cast.leader.user_id, name: None, phone: None, tracking: None },
            ),
            Source::Iot | Source::Video => {
                (intake.clone(), Reporter { user_id: intake.user_id, name: None, phone: None, tracking: None })
            }
        };
        let description = match (&component, source) {
            (Some(c), Source::Iot) => format!("{} 传感器告警", c.name),
            (Some(c), _) => format!("{} 损坏，请尽快处理", c.name),
            _ => "现场发现问题，请处理".to_owned(),
        };
        let facts = CaseFacts {
            matter,
            component_id: component.as_ref().map(|c| c.id),
            source,
            urgency: if rng.u32(0..100) < 5 { Urgency::Urgent } else { Urgency::Normal },
            description,
            location,
            address: String::new(),
            grid,
            micro_grid,
            reporter,
            attachments: Vec::new(),
            reported_at: at,
            upstream: None,
        };
        (facts, actor)
    }

    /// The case reported at `at`, the `ordinal`-th of the year. A share of public reports repeat a
    /// problem already open at the same place (same matter and grid, reported in the last three days):
    /// these are merged into it (并单) and close with it; the rest are handled on their own and may
    /// become such a primary.
    fn next_case(
        &self,
        rng: &mut fastrand::Rng,
        at: Timestamp,
        ordinal: usize,
        recent: &mut BTreeMap<(MatterCode, GridCode), Vec<Candidate>>,
    ) -> Generated {
        let (mut facts, reporter) = self.facts(rng, at);
        let key = (facts.matter, facts.grid);
        let primary = if facts.source.is_public() && rng.u32(0..100) < 25 {
            let open = recent.get_mut(&key).and_then(|list| {
                list.retain(|c| at.duration_since(c.reported_at) < SignedDuration::from_hours(72));
                list.iter_mut().find(|c| {
                    c.followers < MAX_FOLLOWERS
                        && c.open_until.is_none_or(|u| u > at + SignedDuration::from_mins(MERGE_WITHIN_MINS))
                })
            });
            open.map(|c| {
                c.followers += 1;
                c.clone()
            })
        } else {
            None
        };
        let mut sim = match &primary {
            Some(p) => {
                // The same problem, a few metres away: well within the duplicate radius.
                facts.location = GeoPoint {
                    lon: p.location.lon + (rng.f64() - 0.5) * 2e-4,
                    lat: p.location.lat + (rng.f64() - 0.5) * 2e-4,
                };
                facts.micro_grid = p.micro_grid;
                facts.address = p.address.clone();
                let mut sim = Sim::new(self, facts, reporter);
                sim.follow(rng, p.open_until);
                sim
            }
            None => {
                let mut sim = Sim::new(self, facts, reporter);
                sim.run(rng);
                sim
            }
        };
        sim.fire_timers(self.now);
        let voided = sim.events.iter().any(|e| e.to == CaseState::Void);
        if primary.is_none() && !voided && sim.status.merged_into.is_none() {
            let open_until = sim.events.iter().find(|e| e.to == CaseState::Closed).map(|e| e.at);
            recent.entry(key).or_default().push(Candidate {
                ordinal,
                location: sim.facts.location,
                micro_grid: sim.facts.micro_grid,
                address: sim.facts.address.clone(),
                reported_at: at,
                open_until,
                followers: 0,
            });
        }
        Generated {
            case: ImportCase { facts: sim.facts, events: sim.events, status: sim.status },
            primary: primary.map(|p| p.ordinal),
        }
    }
}

/// Most followers one primary takes (the service's limit).
const MAX_FOLLOWERS: u32 = 200;
/// A duplicate is merged within this many minutes of its report.
const MERGE_WITHIN_MINS: i64 = 15;
/// The placeholder a follower's merge names until its primary is stored.
const UNRESOLVED: CaseId = 0;

/// A generated case; for a duplicate merged into an earlier case, that case's place in the generated
/// order (its id is known only once it is stored: see [`Generated::resolve`]).
#[derive(Debug, Clone)]
pub struct Generated {
    /// The case.
    pub case: ImportCase,
    /// The ordinal of the case it was merged into.
    pub primary: Option<usize>,
}

impl Generated {
    /// Names the stored primary's id in the follower's merge, generated with a placeholder.
    pub fn resolve(&mut self, primary_id: CaseId) {
        for e in &mut self.case.events {
            if let Action::Merge { into } = &mut e.action {
                *into = primary_id;
            }
        }
        if self.case.status.merged_into.is_some() {
            self.case.status.merged_into = Some(primary_id);
        }
    }
}

/// An open case a later report may duplicate.
#[derive(Debug, Clone)]
struct Candidate {
    ordinal: usize,
    location: GeoPoint,
    micro_grid: MicroGridCode,
    address: String,
    reported_at: Timestamp,
    /// When it first closed; `None` while open.
    open_until: Option<Timestamp>,
    followers: u32,
}

/// One case on its own simulated clock.
struct Sim<'a> {
    plan: &'a Plan,
    facts: CaseFacts,
    status: CaseStatus,
    events: Vec<CaseEvent>,
    clock: Timestamp,
    /// A fix on the spot is drawn for a sampled verification.
    sampled: bool,
}

impl<'a> Sim<'a> {
    fn new(plan: &'a Plan, facts: CaseFacts, reporter: EventActor) -> Sim<'a> {
        let ctx = Context::new(facts.reported_at, &plan.clocks, &plan.sla);
        let (status, event) = CaseStatus::report(&facts, reporter, &ctx);
        let clock = facts.reported_at;
        Sim { plan, facts, status, events: vec![event], clock, sampled: false }
    }

    /// Takes `action` after `minutes`, unless that lies in the future; false when the case stops here.
    fn step<'x>(&mut self, minutes: i64, who: impl Into<Who<'x>>, action: Action, reason: Option<&str>) -> bool {
        let cmd = Command { reason: reason.map(str::to_owned), ..Command::new(action) };
        self.command(minutes, who, &cmd, None)
    }

    /// Takes an on-site step (a verification, a check, a fix) after `minutes`, with the photo taken
    /// there as evidence.
    fn on_site(&mut self, minutes: i64, worker: &EventActor, action: Action, reason: Option<&str>) -> bool {
        self.on_site_routed(minutes, worker, action, reason, None)
    }

    /// [`Sim::on_site`] with the rules' route, for a check that files the case.
    fn on_site_routed(
        &mut self,
        minutes: i64,
        worker: &EventActor,
        action: Action,
        reason: Option<&str>,
        route: Option<&Route>,
    ) -> bool {
        let taken_at = self.clock + SignedDuration::from_mins(minutes.max(1));
        let photo = Attachment {
            id: None,
            name: format!("现场_{}.jpg", self.events.len() + 1),
            mime: "image/jpeg".into(),
            size: 46_000 + (self.events.len() as u64 % 7) * 1_500,
            sha256: None,
            taken_at: Some(taken_at),
        };
        let cmd = Command { reason: reason.map(str::to_owned), evidence: vec![photo], ..Command::new(action) };
        self.command(minutes, worker, &cmd, route)
    }

    /// Takes a step of `dept`'s co-department task after `minutes`.
    fn task_step<'x>(
        &mut self,
        minutes: i64,
        who: impl Into<Who<'x>>,
        dept: &DeptCode,
        action: Action,
        reason: Option<&str>,
    ) -> bool {
        let cmd = Command { reason: reason.map(str::to_owned), ..Command::new(action).for_task(dept.clone()) };
        self.command(minutes, who, &cmd, None)
    }

    /// Takes `cmd` after `minutes`, with the rules' `route` proposal for a step into 待派遣.
    fn command<'x>(&mut self, minutes: i64, who: impl Into<Who<'x>>, cmd: &Command, route: Option<&Route>) -> bool {
        let at = self.clock + SignedDuration::from_mins(minutes.max(1));
        self.fire_timers(at.min(self.plan.now));
        if at >= self.plan.now {
            return false;
        }
        let team = &self.plan.cast.teams[team_on_duty(at)];
        let actor = match who.into() {
            Who::Intake => team.intake.clone(),
            Who::Shift => team.shift.clone(),
            Who::Dispatcher => team.dispatcher.clone(),
            Who::Is(a) => a.clone(),
        };
        self.apply(at, &actor, cmd, route)
    }

    /// What the live SLA timers would have done before `until`, at their times, as the system: the
    /// yellow and red warnings of the current deadline, and the 督办 rungs an open case has not
    /// reached, by the rule the live timers follow ([`civicgrid_core::sla::Timer::action`]).
    /// Co-department tasks' timers are not simulated: live, they warn on the task and notify.
    fn fire_timers(&mut self, until: Timestamp) {
        let system = EventActor::system("sla_timer");
        loop {
            let (Some(due), Some(timers)) = (self.status.due_at, self.status.timers.as_ref()) else { return };
            if self.status.state == CaseState::Parked {
                return;
            }
            // The earliest timer due before `until` that still does something, by the live timers' rule.
            let next = timers
                .schedule(due)
                .into_iter()
                .filter(|(at, _)| *at < until)
                .filter_map(|(at, timer)| Some((at, timer, timer.action(&self.status, &self.events, due, None)?)))
                .min_by_key(|(at, ..)| *at);
            let Some((at, timer, action)) = next else { return };
            let at = at.max(self.clock);
            if !self.apply(at, &system, &Command::new(action).because(timer.reason()), None) {
                return;
            }
        }
    }

    /// Decides and applies `cmd` at `at`; false if the state machine refuses it.
    fn apply(&mut self, at: Timestamp, actor: &EventActor, cmd: &Command, route: Option<&Route>) -> bool {
        let ctx = Context::new(at, &self.plan.clocks, &self.plan.sla).with_route(route).with_sample(self.sampled);
        match decide(&self.facts, &self.status, cmd, actor.clone(), &ctx) {
            Ok(event) if self.status.apply(&event).is_ok() => {
                self.events.push(event);
                self.clock = at;
                true
            }
            _ => false,
        }
    }

    /// Minutes until the handling deadline (at least 10).
    fn window(&self) -> i64 {
        self.status.handle_due_at.map_or(480, |d| d.duration_since(self.clock).as_mins()).max(10)
    }

    /// A co-department's task up to the point where it works: it signs (after asking to be released
    /// and being refused, sometimes), or is released by the dispatcher, or gets more time.
    fn co_task_starts(&mut self, rng: &mut fastrand::Rng, dept: &DeptCode, handler: &EventActor) -> bool {
        let roll = rng.u32(0..100);
        if roll < 15 {
            if !self.task_step(rng.i64(10..90), handler, dept, Action::RejectAssignment, Some("本部门无需协办"))
            {
                return false;
            }
            if roll < 10 {
                return self.task_step(rng.i64(5..60), Who::Dispatcher, dept, Action::ApproveReturn, Some("同意退回"));
            }
            if !self.task_step(rng.i64(5..60), Who::Dispatcher, dept, Action::DenyReturn, Some("请配合主办部门"))
            {
                return false;
            }
        }
        if !self.task_step(rng.i64(5..120), handler, dept, Action::Sign, None) {
            return false;
        }
        if roll > 90 {
            return self.task_step(
                rng.i64(30..240),
                handler,
                dept,
                Action::RequestExtension { working_hours: 8 },
                Some("需调配人员"),
            ) && self.task_step(rng.i64(10..120), Who::Dispatcher, dept, Action::ApproveExtension, None);
        }
        true
    }

    /// A duplicate's life: accepted, merged into its primary; split off again now and then (and then
    /// handled on its own), otherwise closed by the system with the primary when it closes
    /// (`primary_closes`), and called back like any public report.
    fn follow(&mut self, rng: &mut fastrand::Rng, primary_closes: Option<Timestamp>) {
        let merge = Action::Merge { into: UNRESOLVED };
        if !(self.step(rng.i64(1..5), Who::Intake, Action::Accept, None)
            && self.step(rng.i64(1..8), Who::Intake, merge, Some("同一问题重复反映，并入主案")))
        {
            return;
        }
        if rng.u32(0..100) < 8 {
            if self.step(rng.i64(10..120), Who::Shift, Action::Split, Some("并单有误：并非同一问题，拆分办理"))
            {
                self.run(rng);
            }
            return;
        }
        let Some(closes) = primary_closes else { return };
        let after = closes.duration_since(self.clock).as_mins() + rng.i64(1..3);
        if self.step(after, &EventActor::system("merge"), Action::CloseWithPrimary, None) && rng.u32(0..100) < 70 {
            let satisfaction = if rng.u32(0..100) < 90 { Satisfaction::Satisfied } else { Satisfaction::Dissatisfied };
            self.step(rng.i64(240..2880), Who::Intake, Action::CallBack { satisfaction }, None);
        }
    }

    fn run(&mut self, rng: &mut fastrand::Rng) {
        let p = self.plan;
        let cast = &p.cast;
        if rng.u32(0..100) < 4 {
            let reason = if rng.bool() { "重复上报，已并单" } else { "经核实不属实" };
            if !self.facts.source.is_public() {
                self.step(rng.i64(3..15), Who::Intake, Action::Void, Some(reason));
                return;
            }
            // A public report is voided only by the shift leader, who sometimes refuses.
            if !self.step(rng.i64(3..15), Who::Intake, Action::RequestVoid, Some(reason)) {
                return;
            }
            if rng.u32(0..100) < 80 {
                self.step(rng.i64(5..25), Who::Shift, Action::Void, Some("同意作废"));
                return;
            }
            if !self.step(rng.i64(5..25), Who::Shift, Action::DenyVoid, Some("诉求属实，继续办理")) {
                return;
            }
        }
        let owner = self.facts.component_id.and_then(|id| p.owners.get(&id));
        let route = p.routing.propose(&self.facts, owner);
        let worker = cast.grid_workers.get(&self.facts.grid).cloned().unwrap_or(cast.supervisor.clone());
        // 自行处置: the reporting grid worker fixes a small problem there and then, with a before photo
        // on the report and an after photo on the fix; a share is verified by the supervisor.
        if self.facts.source == Source::GridPatrol && rng.u32(0..100) < 12 {
            self.facts.attachments = vec![Attachment {
                id: None,
                name: "处置前.jpg".into(),
                mime: "image/jpeg".into(),
                size: 41_000,
                sha256: None,
                taken_at: Some(self.facts.reported_at),
            }];
            self.sampled = rng.u32(0..100) < u32::from(p.sla.sample_percent);
            let reporter = self.events[0].actor.clone();
            if self.on_site(rng.i64(5..25), &reporter, Action::FixOnSpot, Some("现场已处置"))
                && self.sampled
                && self.on_site(rng.i64(60..600), &cast.supervisor, Action::VerifyPass, None)
            {
                self.step(rng.i64(10..120), Who::Shift, Action::Close, None);
            }
            return;
        }
        // 核实: some public reports go to the grid's worker for an on-site check before filing.
        let checked = self.facts.source.is_public() && rng.u32(0..100) < 10;
        // The centre moves faster on an urgent case (a 10-minute file-and-dispatch limit).
        let pace = if self.facts.urgency == Urgency::Normal { 5 } else { 3 };
        // A case split off from a primary comes back accepted.
        let accepted = self.status.state == CaseState::Accepted;
        if checked {
            if !((accepted || self.step(rng.i64(1..6), Who::Intake, Action::Accept, None))
                && self.step(rng.i64(1..5), Who::Intake, Action::RequestCheck, None))
            {
                return;
            }
            if rng.u32(0..100) < 12 {
                self.on_site(rng.i64(20..90), &worker, Action::RefuteCheck, Some("现场核实，未发现反映的问题"));
                return;
            }
            if !self.on_site_routed(rng.i64(20..90), &worker, Action::ConfirmCheck, None, route.as_ref()) {
                return;
            }
        } else if !((accepted || self.step(rng.i64(1..pace), Who::Intake, Action::Accept, None))
            && self.command(rng.i64(1..pace), Who::Shift, &Command::new(Action::File), route.as_ref()))
        {
            return;
        }
        // The dispatcher follows the proposal, and now and then asks one more department to help.
        let (lead, mut co) = route.map_or((parse("chengguan"), vec![]), |r| (r.lead, r.co));
        if rng.u32(0..100) < 6 {
            let other = &p.departments[rng.usize(0..p.departments.len())];
            if *other != lead && !co.contains(other) {
                co.push(other.clone());
            }
        }
        let handler = cast.departments.get(&lead).cloned().unwrap_or(cast.teams[0].dispatcher.clone());
        let dispatch = Action::Dispatch { lead: lead.clone(), co: co.clone() };
        if !self.step(rng.i64(2..pace * 2 + 2), Who::Dispatcher, dispatch, None) {
            return;
        }
        let co: Vec<_> = co
            .into_iter()
            .map(|d| (cast.departments.get(&d).cloned().unwrap_or(cast.teams[0].dispatcher.clone()), d))
            .collect();
        if rng.u32(0..100) < 3 {
            if !self.step(rng.i64(10..60), &handler, Action::RejectAssignment, Some("不属于本部门职责")) {
                return;
            }
            if !self.step(rng.i64(5..30), Who::Dispatcher, Action::DenyReturn, Some("职责明确，请继续办理")) {
                return;
            }
        }
        if !self.step(rng.i64(5..90), &handler, Action::Sign, None) {
            return;
        }
        for (co_handler, dept) in &co {
            if !self.co_task_starts(rng, dept, co_handler) {
                return;
            }
        }
        let roll = rng.u32(0..1000);
        if roll < 30 {
            let hours = rng.u32(8..40);
            if !(self.step(
                rng.i64(60..600),
                &handler,
                Action::RequestExtension { working_hours: hours },
                Some("需协调材料"),
            ) && self.step(rng.i64(30..240), Who::Shift, Action::ApproveExtension, None))
            {
                return;
            }
        } else if roll < 40 {
            // 挂账 is asked for by the department and decided by the shift leader.
            if !self.step(rng.i64(60..600), &handler, Action::RequestPark, Some("需专项资金，申请挂账")) {
                return;
            }
            let approved = roll < 35;
            let ok = if approved {
                self.step(rng.i64(30..240), Who::Shift, Action::ApprovePark, Some("同意挂账"))
                    && self.step(rng.i64(3 * 1440..20 * 1440), Who::Shift, Action::Unpark, None)
            } else {
                self.step(rng.i64(30..240), Who::Shift, Action::DenyPark, Some("可先行处置，不予挂账"))
            };
            if !ok {
                return;
            }
        }
        let co_working =
            |st: &CaseStatus, d: &DeptCode| st.tasks.iter().any(|t| &t.dept == d && t.state == TaskState::Handling);
        for (co_handler, dept) in &co {
            if !co_working(&self.status, dept) {
                continue;
            }
            let w = self.window();
            if !self.task_step((w as f64 * (0.1 + rng.f64() * 0.5)) as i64, co_handler, dept, Action::Reply, None) {
                return;
            }
        }
        let late = rng.u32(0..100) < 10;
        if late && rng.u32(0..100) < 25 {
            let w = self.window();
            if !self.step(w + rng.i64(10..120), &cast.supervisor, Action::Escalate, None) {
                return;
            }
        }
        let w = self.window();
        let frac = if late { 1.05 + rng.f64() * 1.2 } else { 0.1 + rng.f64() * 0.85 };
        if !self.step((w as f64 * frac) as i64, &handler, Action::Reply, None) {
            return;
        }
        if rng.u32(0..100) < 6 {
            if !self.step(rng.i64(20..180), &worker, Action::VerifyFail, Some("现场核查未整改到位")) {
                return;
            }
            let w = self.window();
            if !self.step((w as f64 * (0.2 + rng.f64() * 0.7)) as i64, &handler, Action::Reply, None) {
                return;
            }
        }
        if !(self.on_site(rng.i64(20..100), &worker, Action::VerifyPass, None)
            && self.step(rng.i64(10..120), Who::Shift, Action::Close, None))
        {
            return;
        }
        if rng.u32(0..100) < 70 {
            let satisfaction = *weighted(
                rng,
                &[
                    (Satisfaction::VerySatisfied, 55),
                    (Satisfaction::Satisfied, 30),
                    (Satisfaction::BasicallySatisfied, 8),
                    (Satisfaction::Dissatisfied, 5),
                    (Satisfaction::VeryDissatisfied, 2),
                ],
            );
            if !self.step(rng.i64(240..2880), Who::Intake, Action::CallBack { satisfaction }, None) {
                return;
            }
            // A poor rating of a public report opens a rectification: the department reports it, mostly
            // within its five working days.
            if self.status.rectification.is_some() {
                let days = if rng.u32(0..100) < 85 { rng.i64(1..4) } else { rng.i64(7..10) };
                if !self.step(
                    days * 1440 + rng.i64(0..480),
                    &handler,
                    Action::Rectify,
                    Some("已约谈责任人，重新清理并加强巡查"),
                ) {
                    return;
                }
            }
            if satisfaction.is_poor() && rng.u32(0..100) < 20 {
                let _ = self.step(rng.i64(60..1440), Who::Shift, Action::Reopen, Some("回访不满意，重新办理"))
                    && self.step(rng.i64(2..30), Who::Dispatcher, Action::Dispatch { lead, co: vec![] }, None)
                    && self.step(rng.i64(5..120), &handler, Action::Sign, None)
                    && self.step(rng.i64(120..960), &handler, Action::Reply, None)
                    && self.on_site(rng.i64(20..180), &worker, Action::VerifyPass, None)
                    && self.step(rng.i64(10..120), Who::Shift, Action::Close, None);
            }
        }
    }
}
