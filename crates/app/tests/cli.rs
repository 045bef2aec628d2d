//! The `civicgrid` binary end to end: `migrate`, `demo` on SQLite and PostgreSQL, and durability — a
//! server killed with SIGKILL loses no case whose creation it acknowledged.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use civicgrid_demo::DemoOptions;
use serde_json::{Value, json};
use sqlx::Executor;

const BIN: &str = env!("CARGO_BIN_EXE_civicgrid");
const PASSWORD: &str = "cli-test-password";

fn temp_db() -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let dir =
        std::env::temp_dir().join(format!("civicgrid-cli-{}-{}", std::process::id(), N.fetch_add(1, Ordering::SeqCst)));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir.join("cli.db").to_string_lossy().into_owned()
}

fn civicgrid(args: &[&str]) -> Command {
    let mut c = Command::new(BIN);
    c.args(args)
        .env("CIVICGRID_DEMO_PASSWORD", PASSWORD)
        .env("CIVICGRID_ADMIN_PASSWORD", PASSWORD)
        .env("RUST_LOG", "warn")
        .current_dir(std::env::temp_dir());
    c
}

fn run_ok(args: &[&str]) -> String {
    let out = civicgrid(args).output().expect("run civicgrid");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "civicgrid {args:?} failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    stdout
}

fn pg_base() -> String {
    std::env::var("CIVICGRID_PG_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// A fresh PostgreSQL database for this test, or None (after a loud SKIPPED line).
async fn pg_database(name: &str) -> Option<(String, String)> {
    let db = format!("cg_cli_{name}_{}", std::process::id());
    let connect = tokio::time::timeout(Duration::from_secs(5), sqlx::PgPool::connect(&pg_base())).await;
    let admin = match connect {
        Ok(Ok(p)) => p,
        failed => {
            let why = match failed {
                Ok(Err(e)) => e.to_string(),
                _ => "connection timed out".to_owned(),
            };
            if std::env::var("CIVICGRID_REQUIRE_PG").as_deref() == Ok("1") {
                panic!("CIVICGRID_REQUIRE_PG=1 but PostgreSQL at {} is unusable: {why}", pg_base());
            }
            // Written straight to stderr so the test harness does not capture it.
            use std::io::Write;
            let _ = writeln!(
                std::io::stderr(),
                "\n!!!!!!!! SKIPPED: PostgreSQL CLI test {name} — {} unreachable: {why} !!!!!!!!\n",
                pg_base()
            );
            return None;
        }
    };
    admin.execute(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {db}"))).await.expect("drop");
    admin.execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {db}"))).await.expect("create database");
    let base = pg_base();
    let url = match base.rfind('/') {
        Some(i) => format!("{}/{db}", &base[..i]),
        None => panic!("CIVICGRID_PG_URL has no database part"),
    };
    Some((url, db))
}

async fn drop_pg_database(db: &str) {
    if let Ok(admin) = sqlx::PgPool::connect(&pg_base()).await {
        let _ = admin.execute(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"))).await;
    }
}

struct Server {
    child: Child,
    base: String,
}

fn start_server(database: &str) -> Server {
    let mut child = civicgrid(&["serve", "--database", database, "--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn serve");
    let stdout = child.stdout.take().expect("stdout");
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).expect("banner");
    let base = line.split_whitespace().last().expect("url in banner").to_owned();
    assert!(base.starts_with("http://127.0.0.1:"), "banner: {line}");
    Server { child, base }
}

fn demo_town() -> civicgrid_demo::TownData {
    civicgrid_demo::town(&DemoOptions {
        scale: 0.02,
        case_scale: 0.0,
        seed: 2026,
        now: jiff::Timestamp::now(),
        demo_password_hash: String::new(),
        admin_password_hash: String::new(),
    })
    .expect("town")
}

/// Hammers the server with case creations, kills it with SIGKILL, and checks every acknowledged case
/// is in the database afterwards.
async fn acknowledged_cases_survive_kill_9(database: &str) {
    run_ok(&["demo", "--database", database, "--scale", "0.02", "--case-scale", "0", "--no-serve"]);
    let mut server = start_server(database);
    let http = reqwest::Client::new();
    let login: Value = http
        .post(format!("{}/api/v1/auth/login", server.base))
        .json(&json!({"username": "intake", "password": PASSWORD}))
        .send()
        .await
        .expect("login")
        .json()
        .await
        .expect("json");
    let token = login["token"].as_str().expect("token").to_owned();
    let town = demo_town();
    let p = civicgrid_demo::layout::point_in(&town.layout.micro_grids[0].polygon, 0.5, 0.5);
    let body = json!({"matter": "06010", "description": "kill -9 test", "location": {"lon": p.x, "lat": p.y}});
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for _ in 0..16 {
        let (http, url, token, body, stop) =
            (http.clone(), format!("{}/api/v1/cases", server.base), token.clone(), body.clone(), stop.clone());
        clients.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                match http.post(&url).bearer_auth(&token).json(&body).send().await {
                    Ok(r) if r.status() == reqwest::StatusCode::CREATED => {
                        if let Ok(v) = r.json::<Value>().await {
                            acked.push((
                                v["id"].as_i64().expect("id"),
                                v["number"].as_str().expect("number").to_owned(),
                            ));
                        }
                    }
                    _ => break,
                }
            }
            acked
        }));
    }
    tokio::time::sleep(Duration::from_millis(800)).await;
    server.child.kill().expect("SIGKILL");
    server.child.wait().expect("reaped");
    stop.store(true, Ordering::SeqCst);
    let mut acked = Vec::new();
    for c in clients {
        acked.extend(c.await.expect("client"));
    }
    assert!(acked.len() > 20, "only {} creations were acknowledged before the kill", acked.len());
    let store = civicgrid_store::open(database).await.expect("reopen after kill");
    for (id, number) in &acked {
        let case = store.case(*id).await.expect("read").unwrap_or_else(|| panic!("acknowledged case {id} was lost"));
        assert_eq!(&case.number, number);
        assert_eq!(store.case_events(*id).await.expect("events").len(), 1, "its report event too");
    }
}

#[tokio::test]
async fn sqlite_server_killed_with_sigkill_loses_no_acknowledged_case() {
    acknowledged_cases_survive_kill_9(&temp_db()).await;
}

#[tokio::test]
async fn postgres_server_killed_with_sigkill_loses_no_acknowledged_case() {
    let Some((url, db)) = pg_database("kill").await else {
        return;
    };
    acknowledged_cases_survive_kill_9(&url).await;
    drop_pg_database(&db).await;
}

#[tokio::test]
async fn demo_generates_once_and_fresh_regenerates_on_postgres() {
    let Some((url, db)) = pg_database("demo").await else {
        return;
    };
    let out = run_ok(&["demo", "--database", &url, "--scale", "0.02", "--case-scale", "0.002", "--no-serve"]);
    assert!(out.contains("Generated the demo town"), "{out}");
    assert!(out.contains("intake") && out.contains(PASSWORD), "prints the demo logins: {out}");
    let store = civicgrid_store::open(&url).await.expect("open");
    let n = store.count_cases().await.expect("count");
    assert!((900..1300).contains(&n), "{n} cases");
    // The last week's on-site photos are real uploads: stored JPEGs with a thumbnail, taken at the case.
    let week = civicgrid_store::CaseFilter {
        reported_from: Some(jiff::Timestamp::now() - jiff::SignedDuration::from_hours(24 * 7)),
        ..Default::default()
    };
    let recent =
        store.list_cases(&week, civicgrid_store::PageRequest { before: None, limit: 500 }).await.expect("list");
    let mut photos = 0;
    for c in &recent.items {
        for a in store.case_attachments(c.id).await.expect("attachments") {
            let at = a.location.expect("EXIF GPS read from the uploaded file");
            assert!(civicgrid_core::case::distance_m(at, c.facts.location) < 50.0, "taken at the case");
            assert!(a.thumb_sha256.is_some() && a.taken_at.is_some() && a.mime == "image/jpeg");
            assert!(store.blob(&a.sha256).await.expect("blob").is_some_and(|b| b.starts_with(&[0xFF, 0xD8])));
            photos += 1;
        }
    }
    assert!(photos > 0, "photos among {} recent cases", recent.items.len());
    let again = run_ok(&["demo", "--database", &url, "--scale", "0.02", "--no-serve"]);
    assert!(again.contains("Using the demo town already"), "{again}");
    assert_eq!(store.count_cases().await.expect("count"), n, "not regenerated without --fresh");
    drop(store);
    run_ok(&["demo", "--database", &url, "--scale", "0.02", "--case-scale", "0.001", "--fresh", "--no-serve"]);
    let store = civicgrid_store::open(&url).await.expect("open");
    assert!(store.count_cases().await.expect("count") < n, "--fresh regenerated");
    drop(store);
    drop_pg_database(&db).await;
}

#[test]
fn migrate_creates_a_database_with_the_code_tables() {
    let db = temp_db();
    let out = run_ok(&["migrate", "--database", &db]);
    assert!(out.contains("migrated"));
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let store = civicgrid_store::open(&db).await.expect("open");
        assert_eq!(store.matters().await.expect("matters").len(), 250);
        assert_eq!(store.calendar().await.expect("calendar").len(), 39);
    });
    // The first administrator of a fresh installation.
    let add = [
        "user",
        "add",
        "--database",
        db.as_str(),
        "--username",
        "chief",
        "--display-name",
        "管理员",
        "--role",
        "admin",
    ];
    let out = civicgrid(&add).env("CIVICGRID_NEW_PASSWORD", "first-admin-pw").output().expect("run");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("created chief"));
    let again = civicgrid(&add).env("CIVICGRID_NEW_PASSWORD", "first-admin-pw").output().expect("run");
    assert!(!again.status.success() && String::from_utf8_lossy(&again.stderr).contains("already taken"));
    let mut bad = add;
    bad[9] = "emperor";
    let out = civicgrid(&bad).env("CIVICGRID_NEW_PASSWORD", "first-admin-pw").output().expect("run");
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("unknown role"));
    let out = civicgrid(&["serve", "--database", "mysql://nope"]).output().expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unsupported database URL"));
}

/// `bench --against` measures two builds in turns (here the same binary twice, briefly): a row per run
/// in the alternating order, each build's mean, and the difference; a binary that is not there is refused
/// before anything runs.
#[test]
fn bench_against_measures_two_builds_in_turns() {
    let dir = std::path::Path::new(&temp_db()).parent().expect("dir").join("bench");
    let dir = dir.to_string_lossy().into_owned();
    let args = ["bench", "--dir", &dir, "--against", BIN, "--rounds", "1", "--seconds", "1", "--clients", "2"];
    let out = run_ok(&args);
    let rows: Vec<&str> = out.lines().filter(|l| l.starts_with("| ")).collect();
    let at = |what: &str| rows.iter().position(|r| r.contains(what)).unwrap_or_else(|| panic!("no {what:?} in\n{out}"));
    let (this, other) = (at("round 1, this build: POST /api/v1/cases"), at(&format!("round 1, `{BIN}`: POST")));
    assert!(
        at("bare axum handler") < this && this < other,
        "the bare handler, then this build, then the other:\n{out}"
    );
    for row in [rows[this], rows[other]] {
        let rate: f64 =
            row.split("| ").nth(2).and_then(|r| r.split(' ').next()).and_then(|n| n.parse().ok()).expect("a rate");
        assert!(rate > 0.0 && row.contains(" 0 failed") && row.contains("% of bare handler"), "{row}");
    }
    assert!(rows[at("mean of 1 runs, this build")].contains("req/s (runs "), "{out}");
    let diff = rows[at("this build against the other")];
    assert!(diff.trim_end_matches(" |").ends_with(" %"), "{diff}");

    let missing = civicgrid(&["bench", "--dir", &dir, "--against", "/nonexistent/civicgrid"]).output().expect("run");
    assert!(!missing.status.success());
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("no such binary"),
        "{}",
        String::from_utf8_lossy(&missing.stderr)
    );
}

/// `bench --instructions` counts, under Valgrind's callgrind, the instructions of the bare handler per
/// request and of a created case (its log readers' work included) per case: both counts are there,
/// plausible, and a case costs more than a bare request.
#[test]
fn bench_instructions_counts_the_work_of_a_created_case() {
    let dir = std::path::Path::new(&temp_db()).parent().expect("dir").join("bench-instructions");
    let dir = dir.to_string_lossy().into_owned();
    let out = run_ok(&["bench", "--dir", &dir, "--instructions", "100", "--rounds", "1", "--clients", "4"]);
    let rows: Vec<&str> = out.lines().filter(|l| l.starts_with("| ")).collect();
    let count = |what: &str| -> f64 {
        let row = rows.iter().find(|r| r.contains(what)).unwrap_or_else(|| panic!("no {what:?} in\n{out}"));
        row.split("| ").nth(2).and_then(|r| r.split(' ').next()).and_then(|n| n.parse().ok()).expect("a count")
    };
    let (bare, case) = (count("bare axum handler"), count("POST /api/v1/cases"));
    assert!(bare > 1.0 && case > 2.0 * bare, "bare {bare} k, case {case} k:\n{out}");
    assert!(out.contains("× the bare handler's"), "{out}");
}

/// Whether Debian's `mosquitto` can be started (the ingest bench runs a broker of its own); without it
/// the test is skipped, unless `CIVICGRID_REQUIRE_MQTT=1` (CI) makes that a failure.
fn have_mosquitto() -> bool {
    let found = std::process::Command::new("mosquitto")
        .arg("-h")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok();
    assert!(found || std::env::var("CIVICGRID_REQUIRE_MQTT").as_deref() != Ok("1"), "no mosquitto binary");
    found
}

/// `bench --ingest` drains a backlog through a Mosquitto of its own, to a bare client (its rate
/// received and consumed), to the lean client (the reference) and to a node, and says what each cost
/// the broker and the node per message; with `--instructions` it counts the node's instructions per
/// message under callgrind.
#[test]
fn bench_ingest_measures_the_node_against_a_bare_client() {
    if !have_mosquitto() {
        return;
    }
    let dir = std::path::Path::new(&temp_db()).parent().expect("dir").join("bench-ingest");
    let dir = dir.to_string_lossy().into_owned();
    // Several of the node's batches (up to 4,000 messages each), so that its drain is timed between polls.
    let out = run_ok(&["bench", "--dir", &dir, "--ingest", "12000"]);
    let row = |what: &str| out.lines().find(|l| l.contains(what)).unwrap_or_else(|| panic!("no {what:?} in\n{out}"));
    let micros = |row: &str, after: &str| -> f64 {
        let at = row.find(after).unwrap_or_else(|| panic!("no {after:?} in {row}")) + after.len();
        row[at..]
            .split(' ')
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("a number after {after:?} in {row}"))
    };
    let raw = row("bare rumqttc client");
    assert!(micros(raw, "CPU a message: broker ") > 0.0, "{out}");
    // Consumed (every acknowledgement read by the broker) can be no faster than received.
    let rate_before = |row: &str, what: &str| -> f64 {
        let head = row.split(what).next().unwrap_or_else(|| panic!("no {what:?} in {row}"));
        head.trim_end().rsplit([' ', '(']).next().and_then(|n| n.parse().ok()).unwrap_or_else(|| panic!("{row}"))
    };
    let (consumed, received) = (rate_before(raw, " msg/s consumed"), rate_before(raw, " msg/s received"));
    assert!(consumed > 0.0 && consumed <= received, "{out}");
    let lean = row("lean client draining");
    assert!(rate_before(lean, " msg/s;") > 0.0 && micros(lean, "CPU a message: broker ") > 0.0, "{out}");
    let node = row("civicgrid serve draining");
    assert!(node.contains("% of the lean client") && node.contains("% of the bare client's"), "{out}");
    assert!(micros(node, "node ") > 0.0 && micros(node, ", broker ") > 0.0, "{out}");
    let readings =
        node.split(" readings stored").next().and_then(|r| r.rsplit(' ').next()).and_then(|n| n.parse::<u64>().ok());
    assert!(readings.is_some_and(|n| n >= 12000), "every message stored its readings:\n{out}");

    let out = run_ok(&["bench", "--dir", &dir, "--instructions", "100", "--ingest", "300", "--rounds", "1"]);
    let row = out.lines().find(|l| l.contains("telemetry ingest over MQTT")).unwrap_or_else(|| panic!("{out}"));
    let k: f64 =
        row.split("| ").nth(2).and_then(|r| r.split(' ').next()).and_then(|n| n.parse().ok()).expect("a count");
    assert!(k > 1.0, "{k} k instructions a message:\n{out}");
}

/// `bench --list-only` runs the filtered case list benchmark alone, here on a small demo year: a row per
/// filter shape and one over them all, each with its percentiles.
#[test]
fn bench_list_only_measures_every_filter_shape() {
    let dir = std::path::Path::new(&temp_db()).parent().expect("dir").join("bench-list");
    let out = run_ok(&["bench", "--dir", &dir.to_string_lossy(), "--list-only", "--list-cases", "3000"]);
    let rows: Vec<&str> = out.lines().filter(|l| l.starts_with("| GET /api/v1/cases")).collect();
    assert_eq!(rows.len(), 8, "seven shapes and all of them:\n{out}");
    assert!(rows.iter().all(|r| r.contains("p50 ") && r.contains("p99 ")), "{out}");
    assert!(!out.contains("bare axum handler"), "nothing else runs:\n{out}");
}

/// `backup` copies a database while it is open, `restore` puts it back, and everything reads back as
/// it was at the backup: cases, their histories, the event log, accounts and the attachment files. (The server goes on
/// working after the backup — its timers warn and escalate overdue demo cases — so the original's
/// histories and log may have grown past the copy's, never differed from it.)
#[tokio::test]
async fn backup_and_restore_bring_back_everything() {
    let db = temp_db();
    run_ok(&["demo", "--database", &db, "--scale", "0.02", "--case-scale", "0.003", "--no-serve"]);
    let mut server = start_server(&db);
    let backup = format!("{db}.backup");
    let out = run_ok(&["backup", "--database", &db, "--to", &backup]);
    assert!(out.contains("integrity checked"), "{out}");
    let photos = attachment_files(&format!("{db}.files"));
    assert!(!photos.is_empty(), "the demo stored on-site photos");
    assert_eq!(attachment_files(&format!("{backup}.files")), photos, "the photos go with the backup");
    let _ = server.child.kill();
    let _ = server.child.wait();
    let again = civicgrid(&["backup", "--database", &db, "--to", &backup]).output().expect("run");
    assert!(!again.status.success(), "an existing backup file is never overwritten");
    let restored = format!("{db}.restored");
    let out = run_ok(&["restore", "--from", &backup, "--database", &restored]);
    assert!(out.contains("restored"), "{out}");
    let refused = civicgrid(&["restore", "--from", &backup, "--database", &restored]).output().expect("run");
    assert!(!refused.status.success(), "restore does not replace a database without --force");
    run_ok(&["restore", "--from", &backup, "--database", &restored, "--force"]);
    assert_eq!(attachment_files(&format!("{restored}.files")), photos, "and come back with it");
    let one = photos.iter().next().expect("a photo");
    assert_eq!(
        std::fs::read(format!("{restored}.files/{one}")).expect("restored"),
        std::fs::read(format!("{db}.files/{one}")).expect("original")
    );
    let a = civicgrid_store::open(&db).await.expect("original");
    let b = civicgrid_store::open(&restored).await.expect("restored");
    let n = a.count_cases().await.expect("count");
    assert!(n > 100, "the demo made cases ({n})");
    assert_eq!(b.count_cases().await.expect("count"), n);
    let copied = b.last_seq().await.expect("log");
    assert!(copied > 0 && copied <= a.last_seq().await.expect("log"));
    let (log_a, log_b) = (a.events_after(0, 1000).await.expect("log"), b.events_after(0, 1000).await.expect("log"));
    let same = log_b.len().min(log_a.len());
    assert_eq!(
        log_b.iter().map(|e| (e.seq, &e.event)).take(same).collect::<Vec<_>>(),
        log_a.iter().map(|e| (e.seq, &e.event)).take(same).collect::<Vec<_>>()
    );
    assert_eq!(b.users().await.expect("users"), a.users().await.expect("users"));
    let page = civicgrid_store::PageRequest { before: None, limit: 50 };
    let cases = a.list_cases(&Default::default(), page).await.expect("list");
    for c in &cases.items {
        let (copy, now) = (b.case_events(c.id).await.expect("events"), a.case_events(c.id).await.expect("events"));
        assert!(
            !copy.is_empty() && now.starts_with(&copy),
            "case {}: the copy's history is the original's start",
            c.id
        );
        let restored = b.case(c.id).await.expect("read").expect("restored case");
        assert_eq!((restored.number.as_str(), &restored.facts), (c.number.as_str(), &c.facts));
    }
    let junk = format!("{db}.junk");
    std::fs::write(&junk, b"not a database").expect("write");
    let bad = civicgrid(&["restore", "--from", &junk, "--database", &format!("{db}.x")]).output().expect("run");
    assert!(!bad.status.success(), "a file that is not a civicgrid database is refused");
}

/// The files of an attachment folder (`ab/abcdef…`), as `shard/name`.
fn attachment_files(dir: &str) -> std::collections::BTreeSet<String> {
    let mut out = std::collections::BTreeSet::new();
    for shard in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        for file in std::fs::read_dir(shard.path()).into_iter().flatten().flatten() {
            out.insert(format!("{}/{}", shard.file_name().to_string_lossy(), file.file_name().to_string_lossy()));
        }
    }
    out
}

/// The demo registers its town's devices; `simulate` publishes their telemetry to the real Mosquitto and
/// a node subscribed to it stores every message; without devices it says what to do.
#[tokio::test]
async fn simulate_publishes_the_demo_devices_telemetry_to_the_broker() {
    let mqtt = std::env::var("CIVICGRID_MQTT_URL").unwrap_or_else(|_| "mqtt://127.0.0.1:1883".into());
    let broker = civicgrid_ingest::MqttConfig::from_url(&mqtt, "civicgrid-cli-probe", None).expect("url");
    if tokio::net::TcpStream::connect((broker.host.as_str(), broker.port)).await.is_err() {
        assert_ne!(std::env::var("CIVICGRID_REQUIRE_MQTT").as_deref(), Ok("1"), "no broker at {mqtt}");
        eprintln!("\n!!!!!!!! SKIPPED: simulate test — no MQTT broker at {mqtt} !!!!!!!!\n");
        return;
    }
    let empty = temp_db();
    run_ok(&["migrate", "--database", &empty]);
    let out = civicgrid(&["simulate", "--database", &empty, "--mqtt", &mqtt, "--seconds", "1"]).output().expect("run");
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("civicgrid demo"));

    let db = temp_db();
    run_ok(&["demo", "--database", &db, "--scale", "0.05", "--case-scale", "0", "--no-serve"]);
    // A demo made without cases is found again, not made twice.
    let again = run_ok(&["demo", "--database", &db, "--scale", "0.05", "--case-scale", "0", "--no-serve"]);
    assert!(again.contains("Using the demo town already in"), "{again}");
    let store = civicgrid_store::open(&db).await.expect("open");
    let devices = store.devices().await.expect("devices");
    assert!(devices.iter().any(|d| d.kind == civicgrid_core::iot::DeviceKind::StreetLamp && d.cabinet.is_some()));
    let services = civicgrid_service::Services::new(
        store.clone(),
        std::sync::Arc::new(civicgrid_core::clock::SystemClock),
        civicgrid_service::ServiceConfig::default(),
    )
    .await
    .expect("services");
    let metrics = civicgrid_http::metrics::install().expect("a metrics recorder");
    let client_id = format!("civicgrid-cli-{}", std::process::id());
    let node = civicgrid_ingest::spawn(services, civicgrid_ingest::MqttConfig { client_id, ..broker.clone() });
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let out = run_ok(&["simulate", "--database", &db, "--mqtt", &mqtt, "--seconds", "2", "--every", "1"]);
    // Two rounds of every device, but a people counter reports each five-minute interval once it has
    // passed: all of today's at first, then again only if an interval ended between the rounds.
    let counters = devices.iter().filter(|d| d.kind == civicgrid_core::iot::DeviceKind::PeopleCounter).count();
    let acknowledged: usize = out
        .split_whitespace()
        .zip(out.split_whitespace().skip(1))
        .find_map(|(n, word)| (word == "messages").then(|| n.parse().ok()).flatten())
        .unwrap_or_else(|| panic!("no count in {out}"));
    let others = 2 * (devices.len() - counters);
    assert!((others + counters..=others + 2 * counters).contains(&acknowledged), "{out}");
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    let heard = loop {
        let seen = store.devices().await.expect("devices").iter().filter(|d| d.last_seen_at.is_some()).count();
        if seen == devices.len() || tokio::time::Instant::now() > deadline {
            break seen;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    node.abort();
    assert_eq!(heard, devices.len(), "every device's telemetry arrived through the broker");
    // Each batch's time is measured, so that a slow drain can be told from a slow broker.
    let text = metrics.render();
    let batches = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse::<f64>().ok())
            .unwrap_or_else(|| panic!("no {name}"))
    };
    assert!(batches("civicgrid_mqtt_batch_seconds_count") >= 1.0, "{text}");
    assert!(batches("civicgrid_mqtt_batch_seconds_sum") > 0.0, "{text}");
}
