//! Tests of the demo generator: the map tiles the town, components sit in their micro-grids, cases
//! replay, and the same seed gives the same town.

use super::*;
use civicgrid_core::access::Role;
use civicgrid_core::case::{CaseState, CaseStatus};
use civicgrid_core::grid::GridIndex;
use civicgrid_store::{ImportCase, User};
use geo::{Area, BoundingRect, Contains, Point};

fn opts(scale: f64, case_scale: f64) -> DemoOptions {
    DemoOptions {
        scale,
        case_scale,
        seed: 7,
        now: "2026-11-23T02:00:00Z".parse().expect("time"),
        demo_password_hash: "x".into(),
        admin_password_hash: "y".into(),
    }
}

#[test]
fn full_scale_town_has_the_briefs_counts() {
    let data = town(&opts(1.0, 0.0)).expect("town");
    assert_eq!(data.layout.workstations.len(), 28);
    assert_eq!(data.layout.grids.len(), 137);
    assert_eq!(data.layout.micro_grids.len(), 635);
    let households: u32 = data.layout.grids.iter().map(|g| g.households).sum();
    assert!((80_000..=125_000).contains(&households), "{households} households");
    let micro_households: u32 = data.layout.micro_grids.iter().map(|m| m.households).sum();
    assert_eq!(micro_households, households, "micro-grids split their grid's households");
    assert!(data.components.len() > 15_000, "thousands of components");
}

#[test]
fn micro_grids_tile_the_town_without_gaps_or_overlaps() {
    let data = town(&opts(1.0, 0.0)).expect("town");
    let ws_area: f64 = data.layout.workstations.iter().map(|(_, p)| p.unsigned_area()).sum();
    let grid_area: f64 = data.layout.grids.iter().map(|g| g.polygon.unsigned_area()).sum();
    let micro_area: f64 = data.layout.micro_grids.iter().map(|m| m.polygon.unsigned_area()).sum();
    assert!((grid_area - ws_area).abs() < 1e-9 * ws_area, "grids cover their workstations exactly");
    assert!((micro_area - ws_area).abs() < 1e-9 * ws_area, "micro-grids cover the town exactly");
    // Sample points: every point inside the town lies strictly inside exactly one micro-grid.
    let mut rng = fastrand::Rng::with_seed(1);
    let bbox = data.layout.workstations.iter().filter_map(|(_, p)| p.bounding_rect()).fold(
        None,
        |acc: Option<geo::Rect<f64>>, r| {
            Some(match acc {
                None => r,
                Some(a) => geo::Rect::new(
                    geo::Coord { x: a.min().x.min(r.min().x), y: a.min().y.min(r.min().y) },
                    geo::Coord { x: a.max().x.max(r.max().x), y: a.max().y.max(r.max().y) },
                ),
            })
        },
    );
    let bbox = bbox.expect("non-empty town");
    let mut inside = 0;
    for _ in 0..3000 {
        let p = Point::new(bbox.min().x + rng.f64() * bbox.width(), bbox.min().y + rng.f64() * bbox.height());
        let n = data.layout.micro_grids.iter().filter(|m| m.polygon.contains(&p)).count();
        let in_town = data.layout.workstations.iter().any(|(_, w)| w.contains(&p));
        assert!(n <= 1, "overlap at {p:?}");
        if in_town {
            inside += 1;
            assert_eq!(n, 1, "gap at {p:?}");
        }
    }
    assert!(inside > 1000, "most samples fall in the town");
}

#[test]
fn grid_codes_follow_the_hierarchy_and_are_unique() {
    let data = town(&opts(1.0, 0.0)).expect("town");
    let mut codes: Vec<_> = data.layout.micro_grids.iter().map(|m| m.code).collect();
    codes.dedup();
    assert_eq!(codes.len(), 635);
    for g in &data.layout.grids {
        assert_eq!(g.code.town(), data.town.code);
        assert!(data.layout.workstations.iter().any(|(w, _)| w.code == g.community));
    }
}

#[test]
fn components_lie_in_their_micro_grid() {
    let data = town(&opts(0.1, 0.0)).expect("town");
    let index = GridIndex::new(data.layout.micro_grids.iter().map(|m| (m.code, m.polygon.clone())));
    for c in &data.components {
        assert_eq!(index.locate(c.location), Some(c.micro_grid), "{}", c.id);
        assert_eq!(c.micro_grid.grid(), c.grid);
    }
}

fn users_for(data: &TownData) -> Vec<User> {
    accounts(data, &opts(0.02, 0.0))
        .into_iter()
        .enumerate()
        .map(|(i, u)| User {
            id: i as i64 + 1,
            username: u.username,
            display_name: u.display_name,
            role: u.role,
            department: u.department,
            phone: u.phone,
            grids: u.grids,
            password_hash: u.password_hash,
            disabled_at: None,
        })
        .collect()
}

#[test]
fn a_day_so_far_holds_the_share_of_its_hours() {
    use jiff::civil::time;
    assert_eq!(cases::share_of_day_by(time(0, 0, 0, 0)), 0.0);
    let ten = cases::share_of_day_by(time(10, 0, 0, 0));
    assert!((0.29..0.30).contains(&ten), "a night and a morning: {ten}");
    assert!(cases::share_of_day_by(time(23, 59, 59, 0)) > 0.999);
}

#[test]
fn generated_cases_replay_and_have_a_realistic_mix() {
    let o = opts(0.05, 0.01);
    let data = town(&o).expect("town");
    let plan = cases::Plan::new(&data, &users_for(&data), &o);
    let total = plan.total();
    assert!((5_000..=6_000).contains(&total), "{total} cases for 1 % of a year");
    let mut generated = Vec::new();
    plan.generate(|chunk| {
        generated.extend(chunk);
        true
    });
    let all: Vec<ImportCase> = generated.iter().map(|g| g.case.clone()).collect();
    assert_eq!(all.len() as u64, total);
    for c in &all {
        assert_eq!(CaseStatus::replay(&c.events).as_ref(), Ok(&c.status), "history replays to the row");
        assert!(c.facts.reported_at <= o.now);
    }
    // Today (10:00 on a Monday) holds the morning's share of a day, like the four Mondays before it:
    // the cockpit sets it against the same hours of yesterday.
    let morning = |weeks_back: i64| {
        let day = jiff::civil::date(2026, 11, 23) - jiff::Span::new().weeks(weeks_back);
        let at = |h| civicgrid_core::calendar::from_local(day.at(h, 0, 0, 0));
        let (from, to) = (at(0), at(10));
        all.iter().filter(|c| (from..to).contains(&c.facts.reported_at)).count()
    };
    let today = morning(0);
    let mondays: usize = (1..=4).map(morning).sum();
    assert!(today * 4 <= mondays * 2 + 8 && today * 4 * 2 + 8 >= mondays, "today {today}, four Mondays {mondays}");
    let closed = all.iter().filter(|c| c.status.state == civicgrid_core::case::CaseState::Closed).count();
    let late = all.iter().filter(|c| c.status.close_type == Some(civicgrid_core::case::CloseType::Late)).count();
    let void = all.iter().filter(|c| c.status.state == civicgrid_core::case::CaseState::Void).count();
    let rework = all.iter().filter(|c| c.status.rework_count > 0).count();
    let open = all.iter().filter(|c| c.status.state.is_open()).count();
    let n = all.len();
    assert!(closed * 100 / n >= 80, "mostly closed: {closed}/{n}");
    assert!((2..=20).contains(&(late * 100 / n)), "some late: {late}/{n}");
    assert!((1..=8).contains(&(void * 100 / n)), "some void: {void}/{n}");
    assert!(rework > 0 && open > 0, "rework {rework}, open {open}");
    // The year exercises the co-department tasks, the approvals and the routing proposals.
    use civicgrid_core::case::Action;
    let events = || all.iter().flat_map(|c| &c.events);
    let count = |pred: &dyn Fn(&civicgrid_core::case::CaseEvent) -> bool| events().filter(|e| pred(e)).count();
    let task_replies = count(&|e| e.task.is_some() && e.action == Action::Reply);
    let task_returns = count(&|e| e.task.is_some() && e.action == Action::ApproveReturn);
    let task_extensions = count(&|e| e.task.is_some() && e.action == Action::ApproveExtension);
    let (parks, refused_parks) =
        (count(&|e| e.action == Action::ApprovePark), count(&|e| e.action == Action::DenyPark));
    let (void_requests, refused_voids) =
        (count(&|e| e.action == Action::RequestVoid), count(&|e| e.action == Action::DenyVoid));
    let proposed = count(&|e| e.action == Action::File && e.route.is_some());
    let filed = count(&|e| e.action == Action::File);
    assert!(
        task_replies > 50 && task_returns > 0 && task_extensions > 0,
        "co tasks: {task_replies} replies, {task_returns} returns, {task_extensions} extensions"
    );
    assert!(parks > 0 && refused_parks > 0, "parking approved {parks}, refused {refused_parks}");
    assert!(void_requests > 0 && refused_voids > 0, "void requests {void_requests}, refused {refused_voids}");
    assert_eq!(proposed, filed, "every filing records the rules' proposal");
    // On-site checks both ways, fixes on the spot (some sampled and verified), rectifications.
    let (confirmed, refuted) =
        (count(&|e| e.action == Action::ConfirmCheck), count(&|e| e.action == Action::RefuteCheck));
    let fixes = count(&|e| e.action == Action::FixOnSpot);
    let sampled = count(&|e| e.action == Action::FixOnSpot && e.to == civicgrid_core::case::CaseState::Replied);
    let (rectifications, rectified) = (
        count(&|e| matches!(e.action, Action::CallBack { .. }) && e.due_at.is_some()),
        count(&|e| e.action == Action::Rectify),
    );
    assert!(confirmed > 0 && refuted > 0, "checks confirmed {confirmed}, refuted {refuted}");
    assert!(fixes > 100 && sampled > 0 && sampled < fixes / 3, "fixes on the spot {fixes}, sampled {sampled}");
    assert!(rectifications > 0 && rectified > 0, "rectifications {rectifications}, reported {rectified}");
    let verified_with_photo = count(&|e| e.action == Action::VerifyPass && !e.evidence.is_empty());
    assert_eq!(verified_with_photo, count(&|e| e.action == Action::VerifyPass), "every verification has its photo");
    // The SLA timers acted at their times, as the live ones would have: warnings at the yellow share and
    // at the deadline, 督办 rungs by the system; and nothing is left for the first server start to
    // catch up on.
    use civicgrid_core::case::WarnLevel;
    let mut warned = [0, 0];
    for c in &all {
        let mut st = CaseStatus::replay(&c.events[..1]).expect("report");
        for e in &c.events[1..] {
            let timers = st.timers.clone();
            match (&e.action, &timers, st.due_at) {
                (Action::Warn { level: WarnLevel::Yellow }, Some(t), _) => {
                    assert!(e.at >= t.warn_at, "yellow before its time");
                    warned[0] += 1;
                }
                (Action::Warn { level: WarnLevel::Red }, _, Some(due)) => {
                    assert!(e.at >= due, "red before the deadline");
                    warned[1] += 1;
                }
                (Action::Warn { .. }, ..) => panic!("a warning without a deadline"),
                _ => {}
            }
            st.apply(e).expect("replay");
        }
        if let (true, Some(t), Some(due)) =
            (c.status.state.is_open() && c.status.state != CaseState::Parked, &c.status.timers, c.status.due_at)
        {
            let made = |level| {
                c.events.iter().any(|e| e.action == Action::Warn { level } && e.due_at == Some(due) && e.task.is_none())
            };
            assert!(t.warn_at >= o.now || made(WarnLevel::Yellow), "case left with a yellow warning to catch up");
            assert!(due >= o.now || made(WarnLevel::Red), "case left with a red warning to catch up");
        }
    }
    let system_escalations = count(&|e| e.action == Action::Escalate && e.actor.role == Role::System);
    assert!(warned[0] > 100 && warned[1] > 10, "warnings yellow {} red {}", warned[0], warned[1]);
    assert!(system_escalations > 0, "督办 by the timers: {system_escalations}");
    // Duplicates (并单): merged into an open case of the same matter a few metres away, closed with it
    // by the system; a few split off again and handled on their own.
    let (mut merged, mut closed_with, mut split) = (0, 0, 0);
    for g in &generated {
        let Some(p) = g.primary else { continue };
        let (f, primary) = (&g.case, &generated[p].case);
        assert!(generated[p].primary.is_none(), "a primary is not itself merged");
        assert_eq!((f.facts.matter, f.facts.grid), (primary.facts.matter, primary.facts.grid));
        let metres = civicgrid_core::case::distance_m(f.facts.location, primary.facts.location);
        assert!(metres <= 50.0, "{metres} m from its primary");
        let merge = f.events.iter().find(|e| matches!(e.action, Action::Merge { .. })).expect("a merge");
        let primary_closed = primary.events.iter().find(|e| e.to == CaseState::Closed).map(|e| e.at);
        assert!(
            merge.at > primary.facts.reported_at && primary_closed.is_none_or(|c| merge.at < c),
            "merged while open"
        );
        assert!(primary.events.iter().all(|e| e.to != CaseState::Void), "a voided case has no followers");
        merged += 1;
        if let Some(close) = f.events.iter().find(|e| e.action == Action::CloseWithPrimary) {
            assert!(primary_closed.is_some_and(|c| close.at >= c), "closes after its primary");
            assert_eq!(close.actor.role, Role::System);
            closed_with += 1;
        }
        split += usize::from(f.events.iter().any(|e| e.action == Action::Split));
    }
    assert!(
        merged > 30 && closed_with > merged / 2 && split > 0,
        "merged {merged}, closed with primary {closed_with}, split {split}"
    );
    let mut resolved = generated.iter().find(|g| g.primary.is_some()).cloned().expect("a follower");
    resolved.resolve(4242);
    assert!(resolved.case.events.iter().any(|e| e.action == Action::Merge { into: 4242 }));
    assert_eq!(CaseStatus::replay(&resolved.case.events).as_ref(), Ok(&resolved.case.status), "resolved still replays");
    // The centre's posts worked as the demo roster says: each shift leader's and dispatcher's step of
    // the roster's four weeks was taken by whoever the roster has on that shift, and both teams worked.
    let users = users_for(&data);
    let today = civicgrid_core::calendar::local(o.now).date();
    let (from, to) = (today - jiff::Span::new().days(27), today);
    let roster = cases::roster(&users, from, to);
    assert_eq!(roster.iter().filter(|e| e.post == civicgrid_core::duty::DutyPost::ShiftLeader).count(), 2 * 28);
    let mut workers = std::collections::BTreeSet::new();
    for e in events().filter(|e| matches!(e.actor.role, Role::ShiftLeader | Role::Dispatcher)) {
        let (date, shift) = civicgrid_core::duty::Shift::at(e.at);
        if date < from {
            continue;
        }
        let on_duty = roster
            .iter()
            .find(|r| r.date == date && r.shift == shift && r.post.role() == e.actor.role)
            .expect("a rostered post");
        assert_eq!(e.actor.user_id, Some(on_duty.user_id), "{:?} at {}", e.action, e.at);
        workers.insert(on_duty.user_id);
    }
    assert_eq!(workers.len(), 4, "two shift leaders and two dispatchers took turns");
    // Nothing stalls waiting for a co-department the simulation forgot.
    let stuck = all
        .iter()
        .filter(|c| c.status.lead_replied_at.is_some() && c.status.state == civicgrid_core::case::CaseState::Handling)
        .count();
    assert!(stuck * 100 / n < 2, "{stuck} cases wait for co-departments");
    // Weekdays carry more than weekends.
    let weekday = |c: &&ImportCase| {
        !matches!(
            civicgrid_core::calendar::local(c.facts.reported_at).date().weekday(),
            jiff::civil::Weekday::Saturday | jiff::civil::Weekday::Sunday
        )
    };
    let wd = all.iter().filter(weekday).count() as f64 / 5.0;
    let we = (n - all.iter().filter(weekday).count()) as f64 / 2.0;
    assert!(wd > we * 1.2, "weekday/day {wd} vs weekend/day {we}");
}

#[test]
fn the_same_seed_makes_the_same_town() {
    let a = town(&opts(0.1, 0.0)).expect("town");
    let b = town(&opts(0.1, 0.0)).expect("town");
    assert_eq!(a.layout.micro_grids, b.layout.micro_grids);
    assert_eq!(a.components, b.components);
}
