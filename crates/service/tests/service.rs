//! The service layer driven directly, as jobs and ingest do: durable jobs happen exactly once across
//! crashes (SQLite, random kill points) and across two PostgreSQL nodes; the live feed of one node
//! hears what another node commits; rule followers (ingest, the IoT sweep) take turns on one node and
//! across nodes.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use civicgrid_core::access::Actor;
use civicgrid_core::case::{Action, CaseState, WarnLevel};
use civicgrid_core::clock::{Clock, ManualClock};
use civicgrid_core::intake::ReportInput;
use civicgrid_demo::{DemoOptions, TownData};
use civicgrid_service::jobs::{JobRunner, LEASE};
use civicgrid_service::{ServiceConfig, Services};
use civicgrid_store::postgres::PgStore;
use civicgrid_store::sqlite::SqliteStore;
use civicgrid_store::{PageRequest, Store};
use jiff::{SignedDuration, Timestamp};
use proptest::prelude::*;

fn temp_db() -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "civicgrid-service-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir.join("service.db").to_string_lossy().into_owned()
}

fn pg_url() -> String {
    std::env::var("CIVICGRID_PG_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// A fresh PostgreSQL schema, or None after a loud SKIPPED line (a failure with CIVICGRID_REQUIRE_PG=1).
async fn pg_schema(name: &str) -> Option<(PgStore, String)> {
    use std::io::Write;
    let schema = format!("cg_svc_{}_{}_{}", name, std::process::id(), Timestamp::now().as_millisecond() % 1_000_000);
    let opened =
        tokio::time::timeout(std::time::Duration::from_secs(5), PgStore::open_in_schema(&pg_url(), Some(&schema)))
            .await;
    let why = match opened {
        Ok(Ok(store)) => return Some((store, schema)),
        Ok(Err(e)) => e.to_string(),
        Err(_) => "connection timed out".to_owned(),
    };
    if std::env::var("CIVICGRID_REQUIRE_PG").as_deref() == Ok("1") {
        panic!("CIVICGRID_REQUIRE_PG=1 but PostgreSQL at {} is unusable: {why}", pg_url());
    }
    let _ =
        writeln!(std::io::stderr(), "\n!!!!!!!! SKIPPED: service test {name} — PostgreSQL unusable: {why} !!!!!!!!\n");
    None
}

/// Monday 23 November 2026, 09:00 in China.
fn monday_morning() -> Timestamp {
    "2026-11-23T01:00:00Z".parse().expect("time")
}

/// A small demo town (scale 0.02) with `case_scale` of a year's cases, as of Monday morning.
fn demo_options(case_scale: f64, seed: u64) -> DemoOptions {
    DemoOptions {
        scale: 0.02,
        case_scale,
        seed,
        now: monday_morning(),
        demo_password_hash: "$argon2id$unused".into(),
        admin_password_hash: "$argon2id$unused".into(),
    }
}

async fn populate(store: &dyn Store) -> TownData {
    let opts = demo_options(0.0, 5);
    civicgrid_demo::populate(store, &opts, &|_| {}).await.expect("populate");
    civicgrid_demo::town(&opts).expect("town")
}

async fn services(store: Arc<dyn Store>, clock: &ManualClock) -> Services {
    Services::new(store, Arc::new(clock.clone()), ServiceConfig::default()).await.expect("services")
}

/// A small demo town without cases in a fresh SQLite file, and its services on a clock stopped at
/// Monday morning.
async fn sqlite_town() -> (ManualClock, Arc<dyn Store>, TownData, Services) {
    let clock = ManualClock::new(monday_morning());
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&temp_db()).await.expect("open"));
    let town = populate(store.as_ref()).await;
    let s = services(store.clone(), &clock).await;
    (clock, store, town, s)
}

/// The demo's intake operator.
fn intake() -> Actor {
    Actor {
        user_id: 2,
        username: "intake".into(),
        role: civicgrid_core::access::Role::IntakeOperator,
        grids: vec![],
        department: None,
        job: None,
        channel: None,
    }
}

/// Reports `n` cases as the intake operator; their ids.
async fn report_cases(s: &Services, town: &TownData, n: usize) -> Vec<i64> {
    let intake = intake();
    let m = &town.layout.micro_grids[0];
    let p = civicgrid_demo::layout::point_in(&m.polygon, 0.5, 0.5);
    let mut ids = Vec::new();
    for i in 0..n {
        let input: ReportInput = serde_json::from_value(serde_json::json!({
            "matter": "06010",
            "description": format!("暴露垃圾 {i}"),
            "location": {"lon": p.x, "lat": p.y},
        }))
        .expect("input");
        ids.push(s.report_case(&intake, input).await.expect("report").id);
    }
    ids
}

/// Where a simulated crash stops the runner.
#[derive(Debug, Clone, Copy)]
enum Kill {
    /// After the claim, before the handler ran.
    AfterClaim,
    /// After the handler's effect, before the job was marked done.
    AfterEffect,
    /// No crash.
    Never,
}

fn kill() -> impl Strategy<Value = Kill> {
    prop_oneof![Just(Kill::AfterClaim), Just(Kill::AfterEffect), Just(Kill::Never)]
}

/// What the timers of a case reported at 09:00 must have done by 10:31: the dispatch limit is 30
/// minutes on the centre's clock, so yellow at 09:24, red at 09:30, and the three rungs at 09:30,
/// 10:00 and 10:30 — each exactly once, and each notification once per recipient.
async fn assert_timers_fired_once(store: &dyn Store, ids: &[i64]) {
    let users = store.users().await.expect("users");
    let id_of = |name: &str| users.iter().find(|u| u.username == name).map(|u| u.id).expect("demo user");
    for id in ids {
        let case = store.case(*id).await.expect("read").expect("case");
        let events = store.case_events(*id).await.expect("events");
        let count = |a: &Action| events.iter().filter(|e| &e.action == a).count();
        assert_eq!(count(&Action::Warn { level: WarnLevel::Yellow }), 1, "case {id}: one yellow");
        assert_eq!(count(&Action::Warn { level: WarnLevel::Red }), 1, "case {id}: one red");
        assert_eq!((case.status.escalation_level, count(&Action::Escalate)), (3, 3), "case {id}: the whole ladder");
        let yellow = events.iter().find(|e| e.action == Action::Warn { level: WarnLevel::Yellow }).expect("yellow");
        let warn_at = events[0].timers.as_ref().map(|t| t.warn_at);
        assert_eq!(warn_at, Some(monday_morning() + SignedDuration::from_mins(24)), "yellow at 80 % of 30 min");
        assert!(warn_at.is_some_and(|w| yellow.at >= w), "not before its time");
        assert!(events.iter().skip(1).all(|e| e.actor.job.as_deref() == Some("sla_timer")));
    }
    // The intake operators own a reported case: yellow and red; the shift leader: rungs 1 and 2
    // (no lead department yet); the town leader: rung 3.
    let inbox = |user: i64| async move {
        let page = PageRequest { before: None, limit: 500 };
        store.notifications(user, false, page).await.expect("inbox").items
    };
    for (name, kinds) in [
        ("intake", vec!["sla_breach", "sla_warning"]),
        ("shift", vec!["escalation", "escalation"]),
        ("leader", vec!["escalation"]),
    ] {
        let items = inbox(id_of(name)).await;
        for id in ids {
            let mut got: Vec<&str> = items.iter().filter(|n| n.case_id == Some(*id)).map(|n| n.kind.as_str()).collect();
            got.sort_unstable();
            assert_eq!(got, kinds, "{name}, case {id}");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 10, ..ProptestConfig::default() })]

    /// The timers of several cases run through a process that is killed at random points and started
    /// again on the same file: every warning, escalation and notification happens exactly once.
    #[test]
    fn timers_take_effect_exactly_once_across_crashes_on_sqlite(kills in proptest::collection::vec(kill(), 1..6), cases in 1usize..4) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        rt.block_on(async move {
            let path = temp_db();
            let clock = ManualClock::new(monday_morning());
            let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&path).await.expect("open"));
            let town = populate(store.as_ref()).await;
            let s = services(store.clone(), &clock).await;
            let ids = report_cases(&s, &town, cases).await;
            drop((s, store));
            clock.advance(SignedDuration::from_mins(91));
            for (life, k) in kills.iter().enumerate() {
                // A new process on the same file; the previous one's leases have run out.
                clock.advance(LEASE + SignedDuration::from_secs(1));
                let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&path).await.expect("reopen"));
                let runner = JobRunner::standard(services(store.clone(), &clock).await, format!("life-{life}"));
                runner.schedule(clock.now()).await.expect("schedule");
                let jobs = runner.claim().await.expect("claim");
                for job in &jobs {
                    if matches!(k, Kill::AfterClaim) {
                        break;
                    }
                    let outcome = runner.execute(job).await;
                    if matches!(k, Kill::AfterEffect) {
                        break;
                    }
                    runner.finish(job, outcome).await.expect("finish");
                }
            }
            clock.advance(LEASE + SignedDuration::from_secs(1));
            let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&path).await.expect("reopen"));
            let runner = JobRunner::standard(services(store.clone(), &clock).await, "last-life");
            while runner.run_once().await.expect("run") > 0 {}
            assert_timers_fired_once(store.as_ref(), &ids).await;
            let counts = store.job_counts().await.expect("counts");
            assert_eq!((counts.running, counts.dead), (0, 0));
        });
    }
}

/// A deadline's timers are one job at a time: the log reader enqueues each deadline's first timer, a
/// timer job hands on to the next while the case is still set on that deadline, and a case that has
/// moved on to a new deadline ends the old chain where it stands.
#[tokio::test]
async fn a_deadline_s_timers_run_as_a_chain_of_jobs() {
    use civicgrid_core::case::Command;
    use civicgrid_service::deadlines::{Timer, TimerPayload};
    let (clock, store, town, s) = sqlite_town().await;
    s.schedule_timers().await.expect("the reader starts at the end of the log");
    let ids = report_cases(&s, &town, 2).await;
    s.schedule_timers().await.expect("read");
    let pending = || async { store.job_counts().await.expect("counts").pending };
    assert_eq!(pending().await, 2, "one job per deadline, not one per timer");
    // The second case is accepted before its first timer: a new deadline with a chain of its own.
    let reported_due = store.case(ids[1]).await.expect("read").and_then(|c| c.status.due_at).expect("due");
    clock.advance(SignedDuration::from_mins(5));
    s.transition(&intake(), ids[1], &Command::new(Action::Accept), None).await.expect("accept");
    let users = store.users().await.expect("users");
    let shift = users.iter().find(|u| u.username == "shift").expect("the shift leader");
    let shift = Actor {
        user_id: shift.id,
        username: shift.username.clone(),
        role: civicgrid_core::access::Role::ShiftLeader,
        ..intake()
    };
    s.transition(&shift, ids[1], &Command::new(Action::File), None).await.expect("file");
    let lead = store.departments().await.expect("departments")[0].code.clone();
    let dispatch = Command::new(Action::Dispatch { lead, co: Vec::new() });
    let dispatched = s.transition(&shift, ids[1], &dispatch, None).await.expect("dispatch");
    assert_ne!(dispatched.status.due_at, Some(reported_due), "dispatching sets a new deadline");
    s.schedule_timers().await.expect("read");
    assert_eq!(pending().await, 3);
    clock.advance(SignedDuration::from_mins(86));
    let runner = JobRunner::standard(s.clone(), "node");
    while runner.run_once().await.expect("run") > 0 {}
    assert_timers_fired_once(store.as_ref(), &ids[..1]).await;
    let key = |timer| TimerPayload { case_id: ids[1], due_at: reported_due, timer, task: None }.effect_key();
    let first = store.job(&key(Timer::Warn(WarnLevel::Yellow))).await.expect("job").expect("the first timer ran");
    assert_eq!(first.state, civicgrid_store::JobState::Done);
    assert_eq!(store.job(&key(Timer::Warn(WarnLevel::Red))).await.expect("job"), None, "the old chain ended");
    let events = store.case_events(ids[1]).await.expect("events");
    let dispatched_at = events.iter().position(|e| matches!(e.action, Action::Dispatch { .. })).expect("dispatch");
    let timed = |e: &civicgrid_core::case::CaseEvent| e.actor.job.as_deref() == Some("sla_timer");
    assert!(!events[..dispatched_at].iter().any(timed), "nothing fired on the old deadline");
    let new_due = dispatched.status.due_at.expect("the sign deadline");
    let new_key = |timer| TimerPayload { case_id: ids[1], due_at: new_due, timer, task: None }.effect_key();
    let waiting = store.job(&new_key(Timer::Warn(WarnLevel::Yellow))).await.expect("job").expect("the new chain");
    assert_eq!(waiting.state, civicgrid_store::JobState::Pending, "its first timer waits for its time");
    assert_eq!(store.job(&new_key(Timer::Warn(WarnLevel::Red))).await.expect("job"), None, "and it alone");
}

/// Two nodes read the log and run the same queue at once: every timer fires once.
#[tokio::test]
async fn two_postgres_nodes_fire_each_timer_once() {
    let Some((first, schema)) = pg_schema("jobs").await else { return };
    let clock = ManualClock::new(monday_morning());
    let first: Arc<dyn Store> = Arc::new(first);
    let town = populate(first.as_ref()).await;
    let a = services(first.clone(), &clock).await;
    let second: Arc<dyn Store> = Arc::new(PgStore::open_in_schema(&pg_url(), Some(&schema)).await.expect("node 2"));
    let b = services(second.clone(), &clock).await;
    // Both nodes' schedulers start before the cases, so they read them from the log.
    a.schedule_timers().await.expect("first run");
    a.project_kpis().await.expect("the KPI reader starts at the end of the log");
    let ids = report_cases(&a, &town, 40).await;
    clock.advance(SignedDuration::from_mins(91));
    let runners = [JobRunner::standard(a.clone(), "node-a"), JobRunner::standard(b.clone(), "node-b")];
    let mut tasks = Vec::new();
    for r in runners {
        tasks.push(tokio::spawn(async move {
            let mut ran = 0;
            loop {
                let n = r.run_once().await.expect("run");
                if n == 0 {
                    return ran;
                }
                ran += n;
            }
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await.expect("runner");
    }
    assert!(total >= ids.len() * 5, "every timer ran ({total})");
    assert_timers_fired_once(first.as_ref(), &ids).await;
    // Both nodes counted KPIs from the log as they ran: each event once, as a rebuild counts them.
    let live = first.kpi_dump().await.expect("dump");
    let reported: i64 = live
        .iter()
        .filter(|(k, _)| k.dim.as_str() == "town" && k.bucket.as_str() == "day")
        .map(|(_, c)| c.reported)
        .sum();
    assert_eq!(reported, ids.len() as i64);
    b.rebuild_kpis(&|_, _| {}).await.expect("rebuild");
    assert_eq!(first.kpi_dump().await.expect("dump"), live);
    let counts = first.job_counts().await.expect("counts");
    assert_eq!((counts.running, counts.dead), (0, 0));
    drop((a, b, first, second));
    PgStore::drop_schema(&pg_url(), &schema).await.expect("drop schema");
}

/// The log-in and citizen-page throttles are the cluster's, not a node's: wrong passwords given to
/// either node lock the username on both, the lock lapses as its oldest failure ages out, an
/// administrator's unlock on one node lifts it on the other, one address's attempts and its hour's
/// reports are bounded across the two.
async fn throttles_hold_across_nodes(a: &Services, b: &Services, clock: &ManualClock) {
    use civicgrid_core::access::{AccountInput, Role};
    use civicgrid_service::ServiceError;
    use civicgrid_service::accounts::{LOCKOUT, MAX_FAILURES, MAX_PER_ADDRESS};
    use civicgrid_service::throttles::{PublicUse, REPORTS_PER_HOUR};
    fn throttled<T>(r: &Result<T, ServiceError>) -> bool {
        matches!(r, Err(ServiceError::Throttled { .. }))
    }
    let password = "correct horse 1".to_owned();
    a.create_account_unchecked(AccountInput {
        username: "leader.li".into(),
        display_name: "李值班".into(),
        role: Role::ShiftLeader,
        password: password.clone(),
        department: None,
        grids: vec![],
        phone: None,
    })
    .await
    .expect("account");
    for i in 0..MAX_FAILURES {
        let node = if i % 2 == 0 { a } else { b };
        let wrong = node.login("leader.li", "wrong password".into(), None).await;
        assert!(matches!(wrong, Err(ServiceError::BadCredentials)), "{wrong:?}");
    }
    for node in [a, b] {
        let r = node.login("leader.li", password.clone(), None).await;
        assert!(throttled(&r), "locked on both nodes, even with the right password: {r:?}");
    }
    clock.advance(LOCKOUT - SignedDuration::from_secs(1));
    assert!(throttled(&b.login("leader.li", password.clone(), None).await), "still locked");
    clock.advance(SignedDuration::from_secs(1));
    b.login("leader.li", password.clone(), None).await.expect("the failures have aged out");

    for _ in 0..MAX_FAILURES {
        let _ = a.login("leader.li", "wrong password".into(), None).await;
    }
    assert!(throttled(&b.login("leader.li", password.clone(), None).await));
    let admin = Actor { role: Role::Admin, ..intake() };
    assert!(b.unlock_login(&admin, "leader.li").await.expect("unlock"), "it was locked");
    a.login("leader.li", password.clone(), None).await.expect("unlocked on the other node too");
    assert!(!a.unlock_login(&admin, "leader.li").await.expect("unlock"), "a success forgot the failures");

    let addr: std::net::IpAddr = "10.20.30.40".parse().expect("ip");
    for i in 0..MAX_PER_ADDRESS {
        let node = if i % 2 == 0 { a } else { b };
        let r = node.login(&format!("nobody{i}"), "wrong password".into(), Some(addr)).await;
        assert!(matches!(r, Err(ServiceError::BadCredentials)), "attempt {i}: {r:?}");
    }
    for node in [a, b] {
        assert!(throttled(&node.login("leader.li", password.clone(), Some(addr)).await), "the address is spent");
    }
    let other: std::net::IpAddr = "10.20.30.41".parse().expect("ip");
    a.login("leader.li", password.clone(), Some(other)).await.expect("another address");

    for i in 0..REPORTS_PER_HOUR {
        let node = if i % 2 == 0 { a } else { b };
        node.public_use(PublicUse::Report, Some(addr)).await.expect("a report's slot");
    }
    for node in [a, b] {
        assert!(throttled(&node.public_use(PublicUse::Report, Some(addr)).await), "the hour's reports are spent");
    }
    a.public_use(PublicUse::Lookup, Some(addr)).await.expect("look-ups count apart");
    clock.advance(SignedDuration::from_hours(1));
    assert_eq!(a.purge_throttles().await.expect("purge"), 0, "the last uses are exactly an hour old");
    b.public_use(PublicUse::Report, Some(addr)).await.expect("an hour later");
    clock.advance(SignedDuration::from_secs(1));
    assert!(a.purge_throttles().await.expect("purge") > 0, "older uses are purged");
}

#[tokio::test]
async fn throttles_hold_across_two_sqlite_services() {
    let (clock, store, _, a) = sqlite_town().await;
    let b = services(store, &clock).await;
    throttles_hold_across_nodes(&a, &b, &clock).await;
}

/// Two app nodes, each with its own pool, on one fresh PostgreSQL schema holding the small demo town,
/// on one stopped clock.
struct PgNodes {
    clock: ManualClock,
    town: TownData,
    a: Services,
    b: Services,
    schema: String,
}

impl PgNodes {
    /// The two nodes, or None when PostgreSQL is unusable (see [`pg_schema`]).
    async fn open(name: &str) -> Option<Self> {
        let (first, schema) = pg_schema(name).await?;
        let clock = ManualClock::new(monday_morning());
        let first: Arc<dyn Store> = Arc::new(first);
        let town = populate(first.as_ref()).await;
        let a = services(first, &clock).await;
        let second: Arc<dyn Store> = Arc::new(PgStore::open_in_schema(&pg_url(), Some(&schema)).await.expect("node 2"));
        let b = services(second, &clock).await;
        Some(Self { clock, town, a, b, schema })
    }

    /// Closes both nodes and drops the schema.
    async fn close(self) {
        let schema = self.schema.clone();
        drop(self);
        PgStore::drop_schema(&pg_url(), &schema).await.expect("drop schema");
    }
}

#[tokio::test]
async fn throttles_hold_across_two_postgres_nodes() {
    let Some(nodes) = PgNodes::open("throttles").await else { return };
    throttles_hold_across_nodes(&nodes.a, &nodes.b, &nodes.clock).await;
    nodes.close().await;
}

/// A reference change made through one node reaches the other at its next refresh, which reloads
/// only when the store's world version moved: a case or a second look changes nothing.
async fn reference_changes_reach_the_other_node(a: &Services, b: &Services, town: &TownData) {
    use civicgrid_core::access::Role;
    use civicgrid_core::org::Department;
    let admin = Actor { role: Role::Admin, ..intake() };
    assert!(!b.refresh_world().await.expect("refresh"), "nothing changed since it started");
    report_cases(a, town, 2).await;
    assert!(!b.refresh_world().await.expect("refresh"), "cases are not reference data");
    let code: civicgrid_core::org::DeptCode = "new-unit-01".parse().expect("code");
    let new =
        Department { code: code.clone(), name_zh: "新设部门".into(), name_en: "New unit".into(), parent: None };
    a.put_department(&admin, new).await.expect("department");
    assert!(a.world().has_department(&code), "the node that made the change sees it at once");
    assert!(!b.world().has_department(&code), "the other node before its refresh");
    assert!(b.refresh_world().await.expect("refresh"), "the version moved");
    assert!(b.world().has_department(&code));
    assert!(!b.refresh_world().await.expect("refresh"), "and is read once");
    let mut policy = b.world().sla.clone();
    policy.warn_percent = if policy.warn_percent == 60 { 70 } else { 60 };
    a.set_sla_policy(&admin, policy.clone()).await.expect("policy");
    assert!(b.refresh_world().await.expect("refresh"), "a settings document moves it too");
    assert_eq!(b.world().sla, policy);
}

#[tokio::test]
async fn reference_changes_reach_another_sqlite_services() {
    let (clock, store, town, a) = sqlite_town().await;
    let b = services(store, &clock).await;
    reference_changes_reach_the_other_node(&a, &b, &town).await;
}

#[tokio::test]
async fn reference_changes_reach_another_postgres_node() {
    let Some(nodes) = PgNodes::open("world").await else { return };
    reference_changes_reach_the_other_node(&nodes.a, &nodes.b, &nodes.town).await;
    nodes.close().await;
}

/// A case reported through node A reaches a live-feed subscriber on node B (LISTEN/NOTIFY).
#[tokio::test]
async fn a_commit_on_one_postgres_node_reaches_the_live_feed_of_another() {
    let Some((first, schema)) = pg_schema("feed").await else { return };
    let clock = ManualClock::new(monday_morning());
    let first: Arc<dyn Store> = Arc::new(first);
    let town = populate(first.as_ref()).await;
    let a = services(first.clone(), &clock).await;
    let second: Arc<dyn Store> = Arc::new(PgStore::open_in_schema(&pg_url(), Some(&schema)).await.expect("node 2"));
    let (feed_b, task) = civicgrid_service::feed::Feed::spawn(second.clone()).await.expect("feed");
    let mut sub = feed_b.subscribe(Actor::system("test"), None);
    let started = std::time::Instant::now();
    let id = report_cases(&a, &town, 1).await[0];
    let entry = tokio::time::timeout(std::time::Duration::from_secs(5), sub.next())
        .await
        .expect("in time")
        .expect("read")
        .expect("an entry");
    let civicgrid_store::FeedEntry::Case(entry) = entry.as_ref() else { panic!("a case event: {entry:?}") };
    assert_eq!((entry.case_id, entry.event.to), (id, CaseState::Reported));
    assert!(started.elapsed() < std::time::Duration::from_millis(900), "woken by NOTIFY, not the 1 s poll");
    task.abort();
    drop((a, first, second, feed_b));
    PgStore::drop_schema(&pg_url(), &schema).await.expect("drop schema");
}

/// With disk storage, content lands under its SHA-256 once, however often it is uploaded, and comes
/// back byte for byte; a PNG without EXIF still gets its size and thumbnail.
#[tokio::test]
async fn attachments_on_disk_are_stored_once_by_hash() {
    use civicgrid_service::attachments::{BlobStorage, Content};
    let path = temp_db();
    let files = std::path::PathBuf::from(format!("{path}.files"));
    let clock = ManualClock::new(monday_morning());
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&path).await.expect("open"));
    populate(store.as_ref()).await;
    let config = ServiceConfig { blobs: BlobStorage::Disk(files.clone()), ..ServiceConfig::default() };
    let s = Services::new(store, Arc::new(clock.clone()), config).await.expect("services");
    let worker = Actor::system("test");
    let img = image::RgbImage::from_pixel(64, 32, image::Rgb([10, 20, 30]));
    let mut png = Vec::new();
    image::DynamicImage::ImageRgb8(img)
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .expect("png");
    let a = s.upload_attachment(&worker, "图.png", png.clone()).await.expect("upload");
    let b = s.upload_attachment(&worker, "again.png", png.clone()).await.expect("upload again");
    assert_eq!((a.mime.as_str(), a.width, a.height, a.taken_at), ("image/png", Some(64), Some(32), None));
    assert_eq!(a.sha256, b.sha256);
    assert_ne!(a.id, b.id, "two uploads, one file");
    let on_disk = files.join(&a.sha256[..2]).join(&a.sha256);
    assert_eq!(std::fs::read(&on_disk).expect("file under its hash"), png);
    let stored: Vec<_> = std::fs::read_dir(files.join(&a.sha256[..2])).expect("dir").collect();
    assert_eq!(stored.len(), 1, "no temporary files left behind");
    let (_, content) = s.attachment_content(&worker, a.id, false).await.expect("content");
    let Content::File(mut f) = content else { panic!("disk storage streams a file") };
    let mut back = Vec::new();
    tokio::io::AsyncReadExt::read_to_end(&mut f, &mut back).await.expect("read");
    assert_eq!(back, png);
    let (_, thumb) = s.attachment_content(&worker, a.id, true).await.expect("thumbnail");
    assert!(matches!(thumb, Content::File(_)));
}

/// A subscriber that falls behind the broadcast (more than its buffer) reads the log instead and still
/// gets every entry, in order, once.
#[tokio::test]
async fn a_subscriber_that_falls_behind_misses_nothing() {
    let path = temp_db();
    let clock = ManualClock::new(monday_morning());
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&path).await.expect("open"));
    let town = populate(store.as_ref()).await;
    let s = services(store.clone(), &clock).await;
    let (feed, task) = civicgrid_service::feed::Feed::spawn(store.clone()).await.expect("feed");
    let mut slow = feed.subscribe(Actor::system("test"), None);
    // Read one live entry first, so the subscriber is on the broadcast, not replaying the log.
    report_cases(&s, &town, 1).await;
    let first = tokio::time::timeout(std::time::Duration::from_secs(5), slow.next())
        .await
        .expect("in time")
        .expect("read")
        .expect("entry");
    let start = first.seq();
    // Caught up: the next read finds the log empty and waits on the broadcast (cancel-safe).
    let idle = tokio::time::timeout(std::time::Duration::from_millis(100), slow.next()).await;
    assert!(idle.is_err(), "nothing new yet");
    // One bulk import puts 6,000 entries in the log at once: more than the broadcast holds.
    let m = &town.layout.micro_grids[0];
    let p = civicgrid_demo::layout::point_in(&m.polygon, 0.5, 0.5);
    let sla = civicgrid_core::sla::SlaPolicy::default();
    let clocks = civicgrid_core::sla::Clocks::single(civicgrid_core::calendar::WorkCalendar::china_2026());
    let cases: Vec<civicgrid_store::ImportCase> = (0..6000)
        .map(|i| {
            let facts = civicgrid_core::case::CaseFacts {
                matter: "06010".parse().expect("matter"),
                component_id: None,
                source: civicgrid_core::case::Source::Hotline12345,
                urgency: civicgrid_core::case::Urgency::Normal,
                description: format!("积压 {i}"),
                location: civicgrid_core::case::GeoPoint { lon: p.x, lat: p.y },
                address: String::new(),
                grid: m.grid(),
                micro_grid: m.code,
                reporter: Default::default(),
                attachments: vec![],
                reported_at: clock.now(),
                upstream: None,
            };
            let ctx = civicgrid_core::case::Context::new(clock.now(), &clocks, &sla);
            let (status, event) =
                civicgrid_core::case::CaseStatus::report(&facts, Actor::system("test").event_actor(), &ctx);
            civicgrid_store::ImportCase { facts, events: vec![event], status }
        })
        .collect();
    store.import_cases(town.town.code, cases).await.expect("import");
    // And a few ordinary reports after it.
    report_cases(&s, &town, 3).await;
    // Let the feed broadcast all of it before the subscriber reads a thing.
    let last = store.last_seq().await.expect("last");
    while feed.head() < last {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let mut seqs = Vec::new();
    while seqs.len() < 6003 {
        let e = tokio::time::timeout(std::time::Duration::from_secs(10), slow.next())
            .await
            .expect("in time")
            .expect("read")
            .expect("entry");
        seqs.push(e.seq());
    }
    assert!(seqs.iter().enumerate().all(|(i, s)| *s == start + 1 + i as i64), "every entry once, in order");
    assert!(civicgrid_service::feed::lagged_total() >= 1, "the subscriber did fall behind the broadcast");
    task.abort();
}

/// A log longer than one turn is read a bounded part per turn by each reader, with the due jobs run
/// between reads: under sustained load, the timer reader cannot keep the KPI reader and the SLA timers
/// waiting until the load ends.
#[tokio::test]
async fn a_long_log_is_read_in_turns_with_jobs_run_between() {
    use civicgrid_service::deadlines::TIMERS_CONSUMER;
    use civicgrid_service::jobs::LOG_TURN;
    use civicgrid_service::kpi::KPI_CONSUMER;
    let clock = ManualClock::new(monday_morning());
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&temp_db()).await.expect("open"));
    let opts = demo_options(0.004, 9);
    let (data, users) = civicgrid_demo::populate_town(store.as_ref(), &opts).await.expect("town");
    let s = services(store.clone(), &clock).await;
    let runner = JobRunner::standard(s.clone(), "node-1");
    while runner.run_once().await.expect("run") > 0 {}
    let start = store.last_seq().await.expect("seq");
    civicgrid_demo::populate_cases(store.as_ref(), &data, &users, &opts, None, &|_| {}).await.expect("cases");
    let end = store.last_seq().await.expect("seq");
    assert!(end - start > LOG_TURN as i64, "the log grew by more than a turn ({} entries)", end - start);
    let position = |name: &'static str| {
        let store = store.clone();
        async move { store.consumer_position(name).await.expect("position").expect("set up") }
    };
    clock.advance(SignedDuration::from_hours(1));
    let ran = runner.run_once().await.expect("one turn");
    assert!(ran >= 4, "this hour's recurring jobs ran in the same turn ({ran})");
    let (timers, kpis) = (position(TIMERS_CONSUMER).await, position(KPI_CONSUMER).await);
    assert!(timers > start && timers < end, "the timer reader read part of the log ({start} < {timers} < {end})");
    assert!(kpis > start && kpis < end, "and so did the KPI reader ({start} < {kpis} < {end})");
    assert!(timers - start <= (LOG_TURN + 500) as i64, "at most a turn and a read");
    let mut turns = 1;
    while position(TIMERS_CONSUMER).await < end || position(KPI_CONSUMER).await < end {
        runner.run_once().await.expect("turn");
        turns += 1;
        assert!(turns < 100, "the readers catch up");
    }
    // Counted a window of reads per write, the counters are what a rebuild from the histories gives.
    let live = store.kpi_dump().await.expect("dump");
    s.rebuild_kpis(&|_, _| {}).await.expect("rebuild");
    assert_eq!(store.kpi_dump().await.expect("dump"), live);
}

/// The two log readers share each read but keep their own positions: with the timer scheduler at the
/// end of the log and the KPI reader far behind, a turn hands the KPI reader every entry it has not
/// counted and the scheduler none, and the counters come out as a rebuild gives them.
#[tokio::test]
async fn log_readers_at_different_positions_share_the_reading() {
    use civicgrid_service::deadlines::TIMERS_CONSUMER;
    use civicgrid_service::kpi::KPI_CONSUMER;
    use civicgrid_service::readers::Readers;
    let clock = ManualClock::new(monday_morning());
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&temp_db()).await.expect("open"));
    let opts = demo_options(0.002, 5);
    let (data, users) = civicgrid_demo::populate_town(store.as_ref(), &opts).await.expect("town");
    let s = services(store.clone(), &clock).await;
    s.read_log(Readers::ALL).await.expect("both readers set up");
    let start = store.last_seq().await.expect("seq");
    civicgrid_demo::populate_cases(store.as_ref(), &data, &users, &opts, None, &|_| {}).await.expect("cases");
    let end = store.last_seq().await.expect("seq");
    let mut scheduled = 0;
    while store.consumer_position(TIMERS_CONSUMER).await.expect("position") < Some(end) {
        scheduled += s.schedule_timers().await.expect("timers alone");
    }
    assert_eq!(scheduled as i64, end - start, "the scheduler took every entry once");
    assert_eq!(store.consumer_position(KPI_CONSUMER).await.expect("position"), Some(start), "the KPI reader waited");
    let mut counted = 0;
    while store.consumer_position(KPI_CONSUMER).await.expect("position") < Some(end) {
        let turn = s.read_log(Readers::ALL).await.expect("turn");
        assert_eq!(turn.timers, 0, "nothing new for the scheduler");
        counted += turn.kpis;
    }
    assert_eq!(counted as i64, end - start, "the KPI reader counted every entry once");
    let live = store.kpi_dump().await.expect("dump");
    s.rebuild_kpis(&|_, _| {}).await.expect("rebuild");
    assert_eq!(store.kpi_dump().await.expect("dump"), live);
}

/// The standard runner schedules its recurring work once per period and the purges do their job.
#[tokio::test]
async fn recurring_purges_run_once_per_period() {
    let path = temp_db();
    let clock = ManualClock::new(monday_morning());
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&path).await.expect("open"));
    populate(store.as_ref()).await;
    let s = services(store.clone(), &clock).await;
    let user = store.users().await.expect("users").into_iter().next().expect("a user");
    store
        .create_session("stale", user.id, clock.now(), clock.now() + SignedDuration::from_mins(5))
        .await
        .expect("session");
    store
        .create_session("fresh", user.id, clock.now(), clock.now() + SignedDuration::from_hours(5))
        .await
        .expect("session");
    let runner = JobRunner::standard(s.clone(), "node-1");
    let other = JobRunner::standard(s.clone(), "node-2");
    clock.advance(SignedDuration::from_hours(1));
    assert_eq!(
        runner.run_once().await.expect("run"),
        5,
        "this hour's three purges (sessions, idempotency keys, telemetry), this quarter's of the throttles' \
         uses and this minute's IoT sweep"
    );
    assert_eq!(other.run_once().await.expect("run"), 0, "another node finds them done");
    assert_eq!(store.session_user("stale", monday_morning()).await.expect("lookup"), None, "expired session purged");
    assert!(store.session_user("fresh", clock.now()).await.expect("lookup").is_some());
    assert_eq!(runner.run_once().await.expect("run"), 0, "nothing more this hour (and minute)");
    clock.advance(SignedDuration::from_secs(60));
    assert_eq!(runner.run_once().await.expect("run"), 1, "the next minute's sweep only");
    clock.advance(SignedDuration::from_mins(15));
    assert_eq!(runner.run_once().await.expect("run"), 2, "the next quarter's throttle purge and a sweep");
    clock.advance(SignedDuration::from_hours(1));
    assert_eq!(other.run_once().await.expect("run"), 5, "the next hour's purges and sweep");
}

/// The generated year as the live service finds it: duplicates name their stored primaries (the
/// merged-into filter lists them), and the first start's timers find every case-level warning and
/// 督办 already made, so the inbox and the timeline are not flooded with a year of catch-up.
#[tokio::test]
async fn the_demo_year_is_what_the_service_would_have_made() {
    use civicgrid_store::CaseFilter;
    let clock = ManualClock::new(monday_morning());
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&temp_db()).await.expect("open"));
    let opts = demo_options(0.004, 11);
    civicgrid_demo::populate(store.as_ref(), &opts, &|_| {}).await.expect("populate");
    let merged = CaseFilter { states: vec![CaseState::Merged, CaseState::Closed], ..CaseFilter::default() };
    let mut followers = 0;
    let mut page = PageRequest { before: None, limit: 500 };
    loop {
        let cases = store.list_cases(&merged, page).await.expect("list");
        for c in &cases.items {
            let events = store.case_events(c.id).await.expect("events");
            let Some(into) = events.iter().find_map(|e| match e.action {
                Action::Merge { into } => Some(into),
                _ => None,
            }) else {
                continue;
            };
            let primary = store.case(into).await.expect("read").expect("the primary is stored");
            assert_eq!((primary.facts.matter, primary.facts.grid), (c.facts.matter, c.facts.grid));
            assert!(primary.status.merged_into.is_none() && primary.id != c.id);
            if c.status.merged_into.is_some() {
                let filter = CaseFilter { merged_into: Some(into), ..CaseFilter::default() };
                let listed = store.list_cases(&filter, PageRequest { before: None, limit: 200 }).await.expect("list");
                assert!(listed.items.iter().any(|f| f.id == c.id), "the primary lists its follower");
            }
            followers += 1;
        }
        match cases.next {
            Some(next) => page.before = Some(next),
            None => break,
        }
    }
    assert!(followers > 5, "{followers} duplicates merged");
    let s = services(store.clone(), &clock).await;
    let before = store.last_seq().await.expect("log end");
    let runner = JobRunner::standard(s.clone(), "first-start");
    while runner.run_once().await.expect("run") > 0 {}
    let made = store.events_after(before, 10_000).await.expect("new events");
    let case_level: Vec<_> = made
        .iter()
        .filter(|e| e.event.task.is_none() && matches!(e.event.action, Action::Warn { .. } | Action::Escalate))
        .map(|e| (e.case_id, e.event.action.clone()))
        .collect();
    assert!(case_level.is_empty(), "the first start caught up on {case_level:?}");
}

/// A co-department that never signs gets its own yellow and red warnings, on its own deadline, and its
/// ladder by notification, while the lead department's reply leaves the case waiting for it.
#[tokio::test]
async fn a_silent_co_department_is_warned_on_its_own_task_and_the_case_is_not_escalated_for_it() {
    use civicgrid_core::case::Command;
    let path = temp_db();
    let clock = ManualClock::new(monday_morning());
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&path).await.expect("open"));
    let town = populate(store.as_ref()).await;
    let s = services(store.clone(), &clock).await;
    let users = store.users().await.expect("users");
    let person = |name: &str| {
        let u = users.iter().find(|u| u.username == name).expect("demo user");
        Actor {
            user_id: u.id,
            username: u.username.clone(),
            role: u.role,
            grids: u.grids.clone(),
            department: u.department.clone(),
            job: None,
            channel: None,
        }
    };
    let id = report_cases(&s, &town, 1).await[0];
    let (shift, lead) = (person("shift"), person("dept_huanwei"));
    let dispatch = Action::Dispatch { lead: "huanwei".parse().expect("d"), co: vec!["chengguan".parse().expect("d")] };
    for (who, action) in [(&shift, Action::Accept), (&shift, Action::File), (&shift, dispatch), (&lead, Action::Sign)] {
        clock.advance(SignedDuration::from_mins(2));
        s.transition(who, id, &Command::new(action), None).await.expect("step");
    }
    let case = s.transition(&lead, id, &Command::new(Action::Reply), None).await.expect("lead reply");
    assert_eq!((case.status.state, case.status.due_at), (CaseState::Handling, None), "waiting for chengguan");
    let task_due = case.status.tasks[0].due_at.expect("sign deadline");
    // Past the third rung of the two-working-hour sign limit (09:08 → 11:08, 15:08, 17:08).
    clock.advance(SignedDuration::from_hours(9));
    let runner = JobRunner::standard(s.clone(), "only");
    while runner.run_once().await.expect("run") > 0 {}
    let events = store.case_events(id).await.expect("events");
    let warns: Vec<_> = events.iter().filter(|e| matches!(e.action, Action::Warn { .. })).collect();
    assert_eq!(warns.len(), 2, "one yellow and one red, for the task: {warns:?}");
    assert!(warns.iter().all(|e| e.task.as_ref().map(ToString::to_string).as_deref() == Some("chengguan")));
    let red = warns.iter().find(|e| e.action == Action::Warn { level: WarnLevel::Red }).expect("red");
    assert!(red.at >= task_due, "red at the task's own deadline");
    let case = store.case(id).await.expect("read").expect("case");
    assert_eq!(case.status.escalation_level, 0, "a task's ladder notifies; it does not raise the case's 督办 level");
    let inbox = |name: &str| {
        let user = users.iter().find(|u| u.username == name).expect("user").id;
        let store = store.clone();
        async move {
            let page = PageRequest { before: None, limit: 100 };
            let mut kinds: Vec<String> = store
                .notifications(user, false, page)
                .await
                .expect("inbox")
                .items
                .into_iter()
                .map(|n| n.kind)
                .collect();
            kinds.sort_unstable();
            kinds
        }
    };
    let co_inbox = inbox("dept_chengguan").await;
    assert!(
        co_inbox.contains(&"sla_warning".to_owned()) && co_inbox.contains(&"sla_breach".to_owned()),
        "{co_inbox:?}"
    );
    assert!(inbox("dept_huanwei").await.iter().all(|k| k != "sla_breach"), "the lead is not blamed");
    assert_eq!(inbox("leader").await, vec!["escalation"], "rung 3 reaches the town leader");
}

/// The live timers escalate a late dispatch to the top of the ladder; once dispatched, the department's
/// own late signing is escalated again from rung 1 (the ladder goes by the step's deadline), and the case
/// keeps the highest level it reached.
#[tokio::test]
async fn after_a_dispatch_escalated_to_the_top_the_department_s_late_step_is_escalated_afresh() {
    use civicgrid_core::case::{Command, MAX_ESCALATION_LEVEL};
    let (clock, store, town, s) = sqlite_town().await;
    let shift = demo_actor(store.as_ref(), "shift").await;
    let runner = JobRunner::standard(s.clone(), "only");
    let id = report_cases(&s, &town, 1).await[0];
    // 30 minutes to dispatch: the rungs fall at 09:30, 10:00 and 10:30.
    clock.advance(SignedDuration::from_mins(91));
    while runner.run_once().await.expect("run") > 0 {}
    let level = |c: &civicgrid_core::case::Case| (c.status.escalation_level, c.status.step_escalation);
    let case = store.case(id).await.expect("read").expect("case");
    assert_eq!(level(&case), (MAX_ESCALATION_LEVEL, MAX_ESCALATION_LEVEL));
    let dispatch = Action::Dispatch { lead: "huanwei".parse().expect("d"), co: vec![] };
    for action in [Action::Accept, Action::File, dispatch] {
        s.transition(&shift, id, &Command::new(action), None).await.expect("step");
    }
    let case = store.case(id).await.expect("read").expect("case");
    assert_eq!(level(&case), (MAX_ESCALATION_LEVEL, 0), "the sign deadline starts its own ladder");
    // Two working hours to sign from 10:31, the lunch break skipped: its rungs fall at 14:31 and
    // 16:31, so by 15:31 the late signing is under 督办 at rung 1.
    clock.advance(SignedDuration::from_hours(5));
    while runner.run_once().await.expect("run") > 0 {}
    let case = store.case(id).await.expect("read").expect("case");
    assert_eq!(level(&case), (MAX_ESCALATION_LEVEL, 1), "the late signing is under 督办");
    let events = store.case_events(id).await.expect("events");
    let dispatched = events.iter().position(|e| matches!(e.action, Action::Dispatch { .. })).expect("dispatch");
    let escalations = |from: usize, to: usize| events[from..to].iter().filter(|e| e.action == Action::Escalate).count();
    assert_eq!(escalations(0, dispatched), 3, "the dispatch's three rungs");
    assert_eq!(escalations(dispatched, events.len()), 1, "rung 1 of the new deadline, by the system");
    let last = events.iter().rfind(|e| e.action == Action::Escalate).expect("督办");
    assert_eq!(last.actor.job.as_deref(), Some("sla_timer"));
}

/// A demo user as an actor.
async fn demo_actor(store: &dyn Store, name: &str) -> Actor {
    let u = store.user_by_username(name).await.expect("users").expect("demo user");
    civicgrid_service::accounts::actor_of(&u)
}

/// Live KPI counters against figures worked out by hand from a small day of cases, the same after a
/// second turn (nothing counted twice) and identical after a rebuild from the histories; the XLSX
/// export opens in LibreOffice with the same values.
async fn kpi_story(store: Arc<dyn Store>) {
    use civicgrid_core::case::{Attachment, Command, Satisfaction};
    use civicgrid_core::kpi::Grade;
    use civicgrid_core::kpi::projection::{Counters, Dim};
    use civicgrid_service::kpi::KpiQuery;
    let clock = ManualClock::new(monday_morning());
    let town = populate(store.as_ref()).await;
    let s = services(store.clone(), &clock).await;
    s.project_kpis().await.expect("first turn sets the reader up");
    let ids = report_cases(&s, &town, 4).await;
    let (shift, dept, worker) = (
        demo_actor(store.as_ref(), "shift").await,
        demo_actor(store.as_ref(), "dept_huanwei").await,
        demo_actor(store.as_ref(), "gw001").await,
    );
    let intake = demo_actor(store.as_ref(), "intake").await;
    let dispatcher = demo_actor(store.as_ref(), "dispatch").await;
    let p = civicgrid_demo::layout::point_in(&town.layout.micro_grids[0].polygon, 0.5, 0.5);
    let step = |who: &Actor, id: i64, action: Action, minutes: i64| {
        let (s, clock, who) = (s.clone(), clock.clone(), who.clone());
        async move {
            clock.advance(SignedDuration::from_mins(minutes));
            let mut cmd = Command::new(action.clone()).because("测试");
            if action == Action::VerifyPass {
                let photo = civicgrid_demo::photos::jpeg(32, 24, [90, 90, 90], Some(clock.now()), Some((p.x, p.y)));
                let a = s.upload_attachment(&who, "现场.jpg", photo).await.expect("upload");
                cmd.evidence = vec![Attachment {
                    id: Some(a.id),
                    name: "现场.jpg".into(),
                    mime: "image/jpeg".into(),
                    size: 1,
                    sha256: None,
                    taken_at: None,
                }];
            }
            s.transition(&who, id, &cmd, None).await.unwrap_or_else(|e| panic!("{action:?} on {id}: {e}"));
        }
    };
    let d = |c: &str| c.parse::<civicgrid_core::org::DeptCode>().expect("dept");
    let (a, b, c) = (ids[0], ids[1], ids[2]);
    // A: filed on time, handled on time, closed on time; rated very dissatisfied (a rectification).
    step(&shift, a, Action::Accept, 2).await;
    step(&shift, a, Action::File, 2).await;
    step(&shift, a, Action::Dispatch { lead: d("huanwei"), co: vec![] }, 2).await;
    step(&dept, a, Action::Sign, 5).await;
    step(&dept, a, Action::Reply, 30).await;
    step(&worker, a, Action::VerifyPass, 10).await;
    step(&shift, a, Action::Close, 5).await;
    step(&intake, a, Action::CallBack { satisfaction: Satisfaction::VeryDissatisfied }, 5).await;
    // B: filed late, sent to the wrong department first, replied a day late; rated satisfied.
    step(&shift, b, Action::Accept, 2).await;
    step(&shift, b, Action::File, 40).await;
    step(&dispatcher, b, Action::Dispatch { lead: d("chengguan"), co: vec![] }, 2).await;
    step(&dispatcher, b, Action::Reassign { lead: d("huanwei"), co: vec![] }, 5).await;
    step(&dept, b, Action::Sign, 5).await;
    step(&dept, b, Action::Reply, 24 * 60).await;
    step(&worker, b, Action::VerifyPass, 10).await;
    step(&shift, b, Action::Close, 5).await;
    step(&intake, b, Action::CallBack { satisfaction: Satisfaction::Satisfied }, 5).await;
    // C: voided by the shift leader. The fourth stays reported.
    step(&shift, c, Action::Void, 2).await;

    assert!(s.project_kpis().await.expect("count") > 0);
    assert_eq!(s.project_kpis().await.expect("again"), 0, "nothing left to count");
    let november = |dim| KpiQuery { dim, from: jiff::civil::date(2026, 11, 1), to: jiff::civil::date(2026, 11, 30) };
    let t = s.kpi_table(&shift, november(Dim::Town)).await.expect("town table");
    let n = t.total.counts;
    let town_counts = [
        n.reported,
        n.filed,
        n.filed_on_time,
        n.voided,
        n.dispatched,
        n.misdispatched,
        n.handled,
        n.handled_on_time,
        n.closed,
        n.closed_on_time,
        n.closed_late,
        n.rated,
        n.satisfied,
        n.rectifications,
    ];
    assert_eq!(town_counts, [4, 2, 1, 1, 3, 1, 2, 1, 2, 1, 1, 2, 1, 1], "{n:?}");
    assert_eq!(t.rows.len(), 1);
    let depts = s.kpi_table(&shift, november(Dim::Department)).await.expect("department table");
    let row = |k: &str| depts.rows.iter().find(|r| r.key == k).cloned().expect("department row");
    let (hw, cg) = (row("huanwei"), row("chengguan"));
    assert_eq!((hw.counts.dispatched, hw.counts.closed, hw.counts.closed_late), (2, 2, 1));
    assert_eq!((cg.counts.dispatched, cg.counts.misdispatched), (1, 1));
    assert_eq!((hw.rates.accurate_dispatch, cg.rates.accurate_dispatch), (100.0, 0.0), "准确派遣率");
    assert_eq!((hw.rates.on_time_closure, hw.rates.on_time_handling, hw.rates.satisfaction), (50.0, 50.0, 50.0));
    // 10 (≤ 50 cases) + 30 % × 100 (closed) + 30 % × 50 (on time) + 30 % × (100 − 0 rework) = 85 → B.
    assert_eq!((hw.rates.score, hw.rates.grade), (85.0, Grade::B));
    // Day rows: the late reply and B's closure fell on Tuesday.
    let monday =
        KpiQuery { dim: Dim::Department, from: jiff::civil::date(2026, 11, 23), to: jiff::civil::date(2026, 11, 23) };
    let mon = s.kpi_table(&shift, monday).await.expect("monday");
    let hw_mon = mon.rows.iter().find(|r| r.key == "huanwei").expect("row");
    assert_eq!((hw_mon.counts.handled, hw_mon.counts.closed), (1, 1));
    assert!(s.kpi_table(&dept, november(Dim::Town)).await.is_err(), "departments do not read them");

    // Post scores. The shift leader filed A on time and B late (按时立案率 50), voided C before filing
    // (准确立案率 100) and closed A on time, B late: 25 % × 50 + 40 % × 100 + 35 % × 50 = 70 → C.
    let people = s.kpi_table(&shift, november(Dim::Person)).await.expect("post table");
    let person = |a: &Actor| people.rows.iter().find(|r| r.key == a.user_id.to_string()).cloned().expect("person row");
    let sl = person(&shift);
    assert_eq!((sl.counts.filed, sl.counts.filed_on_time, sl.counts.closed, sl.counts.closed_on_time), (2, 1, 2, 1));
    assert_eq!((sl.rates.score, sl.rates.grade), (70.0, Grade::C), "{:?}", sl.rates);
    assert!(sl.name.contains("值班长"), "{}", sl.name);
    // The dispatcher made B's wrong dispatch, past the file-and-dispatch limit B's late filing had
    // used up, and its 改派 (timely by definition): the only dispatcher, so a full workload score;
    // 20 % × 100 + 40 % × 50 + 40 % × 50 = 60 → C. The shift leader's dispatch of A is the shift
    // leader's.
    let dp = person(&dispatcher);
    assert_eq!((dp.counts.dispatched, dp.counts.dispatched_on_time, dp.counts.misdispatched), (2, 1, 1));
    assert_eq!((dp.rates.score, dp.rates.grade), (60.0, Grade::C));
    assert_eq!((sl.counts.dispatched, sl.counts.misdispatched), (1, 0));
    // The grid worker verified both on time but reported nothing while the two public reports of the
    // grid were filed (漏报 2, 主动发现率 0): 40 % × 100 + 20 % × 0 + 20 % × 100 + 20 % × 100 = 80 → B.
    let gw = person(&worker);
    assert_eq!((gw.counts.verifies, gw.counts.verifies_on_time, gw.counts.missed), (2, 2, 2));
    assert_eq!((gw.rates.discovery, gw.rates.score, gw.rates.grade), (0.0, 80.0, Grade::B));
    assert!(
        people.rows.iter().any(|r| r.key != gw.key && r.name.contains("网格员") && r.counts == Counters::default()),
        "idle grid workers are listed too"
    );
    assert!(people.rows.iter().all(|r| !r.name.contains("受理员")), "only the scored posts are listed");

    let live = store.kpi_dump().await.expect("dump");
    assert!(!live.is_empty());
    s.rebuild_kpis(&|_, _| {}).await.expect("rebuild");
    assert_eq!(store.kpi_dump().await.expect("dump"), live, "the rebuild gives identical numbers");

    // The workbook opens in LibreOffice with the same figures.
    let xlsx = s.kpi_xlsx(&shift, november(Dim::Department)).await.expect("xlsx");
    let Some(csv) = libreoffice_csv(&xlsx) else { return };
    let line = csv.lines().find(|l| l.starts_with("huanwei,")).unwrap_or_else(|| panic!("huanwei row in {csv}"));
    let cells: Vec<&str> = line.split(',').collect();
    assert_eq!(cells[2], "B", "{line}");
    assert_eq!(
        (cells[6], cells[10], cells[11], cells[19]),
        ("2", "2", "50.0", "85.0"),
        "派遣数, 结案数, 按期结案率, 得分: {line}"
    );
    assert!(csv.contains("派遣数") && csv.contains("准确派遣率"), "Chinese headers: {csv}");
}

/// The workbook's first sheet as CSV, converted by headless LibreOffice; `None` (said aloud) where
/// LibreOffice is not installed and CI does not require it.
fn libreoffice_csv(xlsx: &[u8]) -> Option<String> {
    let dir = std::env::temp_dir().join(format!("cg-xlsx-{}-{}", std::process::id(), Timestamp::now().as_nanosecond()));
    std::fs::create_dir_all(&dir).expect("dir");
    let file = dir.join("kpi.xlsx");
    std::fs::write(&file, xlsx).expect("write");
    let run = std::process::Command::new("soffice")
        .args(["--headless", "--norestore", "--convert-to", "csv:Text - txt - csv (StarCalc):44,34,76"])
        .arg("--outdir")
        .arg(&dir)
        .arg(&file)
        .env("HOME", &dir)
        .output();
    match run {
        Ok(out) if out.status.success() => {
            Some(std::fs::read_to_string(dir.join("kpi.csv")).expect("LibreOffice wrote the CSV"))
        }
        other if std::env::var_os("CIVICGRID_REQUIRE_LIBREOFFICE").is_some() => {
            panic!("LibreOffice is required here (CIVICGRID_REQUIRE_LIBREOFFICE) and failed: {other:?}")
        }
        other => {
            use std::io::Write;
            let why = format!("soffice unavailable ({other:?})");
            let _ = writeln!(
                std::io::stderr(),
                "\n!!!!!!!! SKIPPED: the LibreOffice check of the XLSX export — {why} !!!!!!!!\n"
            );
            None
        }
    }
}

#[tokio::test]
async fn kpis_counted_live_match_hand_figures_and_the_rebuild_on_sqlite() {
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&temp_db()).await.expect("open"));
    kpi_story(store).await;
}

#[tokio::test]
async fn kpis_counted_live_match_hand_figures_and_the_rebuild_on_postgres() {
    let Some((store, _schema)) = pg_schema("kpi").await else { return };
    kpi_story(Arc::new(store)).await;
}

/// While `holder` holds the rules' turn, `other`'s ingest of a street lamp's reading and its IoT sweep
/// wait; once the turn is dropped both go ahead.
async fn rule_followers_take_turns(holder: &Services, other: &Services, store: &dyn Store) {
    use civicgrid_core::iot::DeviceKind;
    use std::time::Duration;
    let devices = store.devices().await.expect("devices");
    let lamp = devices.iter().find(|d| d.kind == DeviceKind::StreetLamp).expect("a street lamp").clone();
    let payload = br#"{"values":{"lamp_on":true,"current_a":0.0,"voltage_v":221}}"#;
    let turn = holder.rules_turn().await.expect("turn");
    let ingest = other.ingest(&lamp, payload);
    let sweep = other.iot_sweep();
    tokio::pin!(ingest, sweep);
    assert!(tokio::time::timeout(Duration::from_millis(300), &mut ingest).await.is_err(), "ingest waits for the turn");
    assert!(tokio::time::timeout(Duration::from_millis(300), &mut sweep).await.is_err(), "so does the sweep");
    assert!(store.latest_readings(&lamp.id).await.expect("latest").is_empty(), "nothing stored meanwhile");
    drop(turn);
    let stored = tokio::time::timeout(Duration::from_secs(10), ingest).await.expect("ingest goes on");
    assert_eq!(stored.expect("stored"), 3);
    tokio::time::timeout(Duration::from_secs(10), sweep).await.expect("the sweep goes on").expect("sweep");
    assert_eq!(store.latest_readings(&lamp.id).await.expect("latest").len(), 3);
}

#[tokio::test]
async fn rule_followers_on_one_sqlite_node_take_turns() {
    let (_, store, _, a) = sqlite_town().await;
    rule_followers_take_turns(&a, &a, store.as_ref()).await;
}

#[tokio::test]
async fn rule_followers_on_two_postgres_nodes_take_turns() {
    let Some(nodes) = PgNodes::open("rules").await else { return };
    let store = nodes.b.store.clone();
    rule_followers_take_turns(&nodes.a, &nodes.b, store.as_ref()).await;
    nodes.close().await;
}
