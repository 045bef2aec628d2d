//! `civicgrid bench`: the measurements recorded in BENCHMARKS.md, side by side in one run.
//!
//! - durable case creation over HTTP (N concurrent clients, each waiting for its 201) against a
//!   `civicgrid serve` child process on SQLite and on PostgreSQL;
//! - beside it, a bare axum handler that parses the same JSON and answers 201 (the HTTP upper bound on
//!   this machine) and bare batched inserts through the store (the storage upper bound);
//! - a filtered case list against a database of 1,000,000 cases (latency percentiles per filter);
//! - demo generation time.
//!
//! `--against BINARY` measures this build and another in turns instead (creation on SQLite, or ingest
//! with `--ingest`), so that a change is judged against its parent on the same machine in the same
//! minutes: this VM's speed drifts by more than most changes gain. `--instructions N` counts the
//! instructions a created case costs instead ([`instructions`]), which does not drift at all.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Json;
use axum::http::StatusCode;
use axum::routing::post;
use civicgrid_core::access::Role;
use civicgrid_core::calendar::WorkCalendar;
use civicgrid_core::case::{CaseFacts, CaseStatus, Context, EventActor, GeoPoint, Reporter, Source, Urgency};
use civicgrid_core::sla::{Clocks, SlaPolicy};
use civicgrid_demo::DemoOptions;
use civicgrid_store::ImportCase;
use clap::Args;
use serde_json::{Value, json};
use sqlx::Executor;

use crate::AppResult;

mod ingest;
mod instructions;

const PASSWORD: &str = "bench-password";
/// Town size of the load-test databases (the map matters, not the history).
const LOAD_SCALE: &str = "0.05";

/// `civicgrid bench` options.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Concurrent HTTP clients for the creation benchmarks.
    #[arg(long, default_value_t = 32)]
    clients: usize,
    /// Seconds each load test runs.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// PostgreSQL server to use (a scratch database is created and dropped).
    #[arg(long, env = "CIVICGRID_PG_URL", default_value = "postgres://postgres@127.0.0.1:5432/test")]
    pg: String,
    /// Cases in the list benchmark's database.
    #[arg(long, default_value_t = 1_000_000)]
    list_cases: u64,
    /// Directory for the benchmark databases (kept between runs; the 1 M-case one is reused).
    #[arg(long, default_value = "./bench-data")]
    dir: PathBuf,
    /// Skip the PostgreSQL benchmarks.
    #[arg(long)]
    no_pg: bool,
    /// Skip the list and demo-generation benchmarks.
    #[arg(long)]
    quick: bool,
    /// Live-feed subscribers in the SSE latency benchmark.
    #[arg(long, default_value_t = 500)]
    sse_clients: usize,
    /// Cases reported per second while the SSE clients listen.
    #[arg(long, default_value_t = 50)]
    sse_rate: u64,
    /// Run only the KPI query benchmark, at these case counts (e.g. `550000,5000000`); each database
    /// is generated once in `--dir` and reused.
    #[arg(long, value_delimiter = ',')]
    kpi_cases: Vec<u64>,
    /// Run only the web UI benchmark (console pages, the case page, the cockpit's reads and its first
    /// paint in headless Chromium) at this many cases; the database is generated once in `--dir`.
    #[arg(long)]
    ui_cases: Option<u64>,
    /// Run only the telemetry ingest benchmark with this many MQTT messages (needs Debian's mosquitto).
    #[arg(long)]
    ingest: Option<usize>,
    /// Run only the filtered case list benchmark (its database is generated once in `--dir` and reused).
    #[arg(long)]
    list_only: bool,
    /// Compare this build with another `civicgrid` binary: durable case creation on SQLite (or, with
    /// `--ingest`, telemetry ingest), the two builds taking turns (this, other, other, this, …) so that
    /// the machine's drift between minutes falls on both.
    #[arg(long, value_name = "BINARY")]
    against: Option<PathBuf>,
    /// Runs of each build with `--against` (and with `--instructions`).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=20))]
    rounds: u32,
    /// Count the instructions a created case costs (and the bare handler's per request) over this many
    /// requests, under Valgrind's callgrind: a measure that does not drift with the machine's speed;
    /// with `--against`, both builds. With `--ingest M`, count a node's instructions per telemetry
    /// message over M messages instead (the number given here is then not used).
    #[arg(long, value_name = "CASES", value_parser = clap::value_parser!(u64).range(100..=1_000_000))]
    instructions: Option<u64>,
    /// Internal: run the bare axum server on this address.
    #[arg(long, hide = true)]
    serve_bare: Option<String>,
}

/// One line of the results table.
struct Row {
    what: String,
    result: String,
}

/// Runs the benchmarks and prints a Markdown table.
pub async fn run(args: BenchArgs) -> AppResult<()> {
    if let Some(addr) = &args.serve_bare {
        return serve_bare(addr).await;
    }
    std::fs::create_dir_all(&args.dir)?;
    let mut rows = Vec::new();
    let body = report_body();
    if let Some(n) = args.ui_cases {
        eprintln!("· web UI at {n} cases");
        print_rows(ui_bench(&args, n).await?);
        return Ok(());
    }
    if args.list_only {
        eprintln!("· filtered case list at {} cases", args.list_cases);
        print_rows(list_bench(&args).await?);
        return Ok(());
    }
    if let Some(n) = args.instructions {
        let rows = match args.ingest {
            Some(m) => instructions::ingest_instructions_bench(&args, m).await?,
            None => instructions::instructions_bench(&args, n, &body).await?,
        };
        print_rows(rows);
        return Ok(());
    }
    if let Some(other) = &args.against {
        print_rows(against(&args, other, &body).await?);
        return Ok(());
    }
    if let Some(n) = args.ingest {
        eprintln!("· telemetry ingest, {n} MQTT messages");
        print_rows(ingest::ingest_bench(&this_build()?, &args.dir, n).await?.rows());
        return Ok(());
    }
    if !args.kpi_cases.is_empty() {
        for &n in &args.kpi_cases {
            eprintln!("· KPI tables at {n} cases");
            rows.extend(kpi_bench(&args, n).await?);
        }
        print_rows(rows);
        return Ok(());
    }

    eprintln!("· point → micro-grid lookup");
    rows.push(lookup_bench()?);

    let r = bare_handler(&args, &body).await?;
    rows.push(Row { what: format!("bare axum handler, {} clients", args.clients), result: r.summary() });
    let bare_rate = r.rate();

    for sync in ["full", "normal"] {
        eprintln!("· case creation, SQLite synchronous={sync}");
        let sqlite_db = args.dir.join("bench-load.db").to_string_lossy().into_owned();
        let r = create_load(&this_build()?, &sqlite_db, &body, &args, sync).await?;
        rows.push(Row {
            what: format!("POST /api/v1/cases, SQLite synchronous={sync}, {} clients", args.clients),
            result: format!("{} — {:.0} % of bare handler", r.summary(), 100.0 * r.rate() / bare_rate),
        });
    }

    if !args.no_pg {
        eprintln!("· durable case creation, PostgreSQL");
        let (url, db) = scratch_pg(&args.pg, "cg_bench_load").await?;
        let r = create_load(&this_build()?, &url, &body, &args, "full").await;
        drop_pg(&args.pg, &db).await;
        let r = r?;
        rows.push(Row {
            what: format!("POST /api/v1/cases, PostgreSQL, {} clients", args.clients),
            result: format!("{} — {:.0} % of bare handler", r.summary(), 100.0 * r.rate() / bare_rate),
        });
    }

    eprintln!("· live feed: {} SSE clients", args.sse_clients);
    rows.push(sse_bench(&args, &body).await?);

    eprintln!("· bare batched insert, SQLite");
    let path = args.dir.join("bench-insert.db");
    remove_sqlite(&path.to_string_lossy())?;
    let rate = bare_insert(&path.to_string_lossy()).await?;
    rows.push(Row {
        what: "bare batched insert (512 cases + events per transaction), SQLite".into(),
        result: format!("{rate:.0} cases/s"),
    });
    if !args.no_pg {
        eprintln!("· bare batched insert, PostgreSQL");
        let (url, db) = scratch_pg(&args.pg, "cg_bench_insert").await?;
        let rate = bare_insert(&url).await;
        drop_pg(&args.pg, &db).await;
        rows.push(Row {
            what: "bare batched insert (512 cases + events per transaction), PostgreSQL".into(),
            result: format!("{:.0} cases/s", rate?),
        });
    }

    if !args.quick {
        eprintln!("· filtered case list at {} cases", args.list_cases);
        rows.extend(list_bench(&args).await?);
        eprintln!("· demo generation (scale 1)");
        let db = args.dir.join("bench-demo.db").to_string_lossy().into_owned();
        let started = Instant::now();
        run_child(&["demo", "--database", &db, "--fresh", "--no-serve"])?;
        rows.push(Row {
            what: "civicgrid demo --fresh (scale 1: 635 micro-grids, ~550,000 cases), SQLite".into(),
            result: format!("{:.1} s", started.elapsed().as_secs_f64()),
        });
        remove_sqlite(&db)?;
    }

    print_rows(rows);
    Ok(())
}

/// The creation load against the bare axum handler (this build's): the HTTP upper bound on this machine.
async fn bare_handler(args: &BenchArgs, body: &Value) -> AppResult<LoadResult> {
    eprintln!("· bare axum handler");
    let (child, base) = spawn_child(&["bench", "--serve-bare", "127.0.0.1:0"])?;
    let r = load(&base, None, body, args.clients, args.seconds).await;
    kill(child);
    r
}

/// Which build a turn of `--against` measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Build {
    This,
    Other,
}

/// The order of the builds' turns: this, other, other, this, this, other, … (each pair swapped with the
/// one before, so that a steady drift of the machine favours neither).
fn turns(rounds: u32) -> Vec<Build> {
    (0..rounds)
        .flat_map(|r| if r % 2 == 0 { [Build::This, Build::Other] } else { [Build::Other, Build::This] })
        .collect()
}

/// `--against`: this build and `other` take turns at the same measurement; a row per run, then each
/// build's mean and the difference. Creation runs beside this build's bare handler, measured first.
async fn against(args: &BenchArgs, other: &Path, body: &Value) -> AppResult<Vec<Row>> {
    check_other(other)?;
    let this = this_build()?;
    let bin = |b: Build| if b == Build::This { this.as_path() } else { other };
    let name = |b: Build| match b {
        Build::This => "this build".to_owned(),
        Build::Other => format!("`{}`", other.display()),
    };
    let mut rows = Vec::new();
    let bare_rate = match args.ingest {
        Some(_) => None,
        None => {
            let r = bare_handler(args, body).await?;
            rows.push(Row {
                what: format!("bare axum handler (this build), {} clients", args.clients),
                result: r.summary(),
            });
            Some(r.rate())
        }
    };
    let mut rates: Vec<(Build, f64)> = Vec::new();
    // The reference's (the lean client's) rate in each ingest run.
    let mut reference_runs: Vec<f64> = Vec::new();
    for (i, b) in turns(args.rounds).into_iter().enumerate() {
        let round = i / 2 + 1;
        let (what, result, rate) = match args.ingest {
            Some(n) => {
                eprintln!("· round {round}: telemetry ingest, {n} MQTT messages, {}", name(b));
                let run = ingest::ingest_bench(bin(b), &args.dir, n).await?;
                reference_runs.push(run.reference_rate());
                (format!("round {round}, {}: ingest of {n} messages, SQLite", name(b)), run.node_result(), run.rate())
            }
            None => {
                eprintln!("· round {round}: case creation, SQLite synchronous=full, {}", name(b));
                let db = args.dir.join("bench-against.db").to_string_lossy().into_owned();
                let r = create_load(bin(b), &db, body, args, "full").await?;
                let share = bare_rate
                    .map_or(String::new(), |bare| format!(" — {:.0} % of bare handler", 100.0 * r.rate() / bare));
                (
                    format!(
                        "round {round}, {}: POST /api/v1/cases, SQLite synchronous=full, {} clients",
                        name(b),
                        args.clients
                    ),
                    r.summary() + &share,
                    r.rate(),
                )
            }
        };
        rows.push(Row { what, result });
        rates.push((b, rate));
    }
    let of = |b: Build| -> Vec<f64> { rates.iter().filter(|(x, _)| *x == b).map(|(_, r)| *r).collect() };
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    // The builds are compared by their own rates: the bare MQTT client's drain, the ingest's reference,
    // spreads more between runs than the node's does.
    let unit = if args.ingest.is_some() { "msg/s" } else { "req/s" };
    for b in [Build::This, Build::Other] {
        let v = of(b);
        let (low, high) = spread(&v);
        rows.push(Row {
            what: format!("mean of {} runs, {}", args.rounds, name(b)),
            result: format!("{:.0} {unit} (runs {low:.0} – {high:.0})", mean(&v)),
        });
    }
    if let (Some(reference), Some(ours)) = (median(&reference_runs), median(&of(Build::This))) {
        // The reference's rate varies from one run to the next, so a single run's share says little:
        // the medians over every run say more.
        let (low, high) = spread(&reference_runs);
        rows.push(Row {
            what: format!("the lean client over all {} runs", reference_runs.len()),
            result: format!(
                "median {reference:.0} msg/s (runs {low:.0} – {high:.0}); this build's median rate is {:.0} % of it",
                100.0 * ours / reference
            ),
        });
    }
    let (this_mean, other_mean) = (mean(&of(Build::This)), mean(&of(Build::Other)));
    rows.push(Row {
        what: "this build against the other".into(),
        result: format!("{:+.1} %", 100.0 * (this_mean / other_mean.max(f64::MIN_POSITIVE) - 1.0)),
    });
    Ok(rows)
}

/// The lowest and highest of some rates.
fn spread(v: &[f64]) -> (f64, f64) {
    v.iter().fold((f64::MAX, f64::MIN), |(l, h), r| (l.min(*r), h.max(*r)))
}

/// The median of some rates (the mean of the middle two of an even count); none of none.
fn median(v: &[f64]) -> Option<f64> {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(v[n / 2]),
        _ => Some((v[n / 2 - 1] + v[n / 2]) / 2.0),
    }
}

/// Refuses an `--against` binary that is not there, before anything runs.
fn check_other(other: &Path) -> AppResult<()> {
    if other.is_file() { Ok(()) } else { Err(format!("--against {}: no such binary", other.display()).into()) }
}

fn print_rows(rows: Vec<Row>) {
    println!("| benchmark | result |\n|---|---|");
    for r in rows {
        println!("| {} | {} |", r.what, r.result);
    }
}

/// A demo database of about `cases` cases, file `file` in `--dir`, generated once (with its KPI
/// counters) and reused while it holds that many; its path.
fn demo_db_of(args: &BenchArgs, file: &str, cases: u64) -> AppResult<String> {
    let db = args.dir.join(file).to_string_lossy().into_owned();
    let case_scale = format!("{}", cases as f64 / civicgrid_demo::cases::CASES_PER_YEAR);
    let have = rusqlite_count(&db);
    if have.abs_diff(cases) > cases / 50 {
        remove_sqlite(&db)?;
        run_child(&["demo", "--database", &db, "--scale", "1", "--case-scale", &case_scale, "--no-serve", "--fresh"])?;
    }
    Ok(db)
}

/// How many cases an SQLite file holds (0 if it is not a civicgrid database).
fn rusqlite_count(db: &str) -> u64 {
    rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .and_then(|c| c.query_row("SELECT COUNT(*) FROM cases", [], |r| r.get::<_, i64>(0)))
        .map_or(0, |n| n.max(0) as u64)
}

/// KPI tables over HTTP (the live counters) against a database of `cases` cases, beside the
/// reference: the same year's reports per grid counted straight from the cases table.
async fn kpi_bench(args: &BenchArgs, cases: u64) -> AppResult<Vec<Row>> {
    let db = demo_db_of(args, &format!("bench-kpi-{cases}.db"), cases)?;
    let count = rusqlite_count(&db);
    let (child, base) = spawn_server(&db, "full")?;
    let result = kpi_queries(&base, count).await;
    kill(child);
    let mut rows = result?;
    // The reference: one GROUP BY over the cases of the last year (what a KPI table would cost
    // without counters), on a read-only connection to the same file.
    let conn = rusqlite::Connection::open_with_flags(&db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let year_ago = (jiff::Timestamp::now() - jiff::SignedDuration::from_hours(24 * 365)).as_microsecond();
    let mut lat = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let mut stmt = conn.prepare_cached(
            "SELECT grid, COUNT(*), SUM(close_type = 'late') FROM cases WHERE reported_at >= ?1 GROUP BY grid",
        )?;
        let n = stmt.query_map([year_ago], |r| r.get::<_, i64>(1))?.count();
        lat.push(t.elapsed().as_micros() as u64);
        if n == 0 {
            return Err("the reference query found no grid".into());
        }
    }
    lat.sort_unstable();
    rows.push(Row {
        what: format!("reference: reports and late closures per grid, last 365 days, GROUP BY over the cases table, {count} cases, SQLite"),
        result: format!("p50 {:.1} ms, max {:.1} ms (5 runs)", percentile(&lat, 0.5) as f64 / 1000.0, percentile(&lat, 1.0) as f64 / 1000.0),
    });
    Ok(rows)
}

async fn kpi_queries(base: &str, count: u64) -> AppResult<Vec<Row>> {
    let token = login(base, "commander").await?;
    let http = reqwest::Client::new();
    let today = jiff::Zoned::now().date();
    let back = |days: i64| today.checked_sub(jiff::Span::new().days(days)).unwrap_or(today);
    let shapes: [(&str, &str, jiff::civil::Date); 6] = [
        ("town, last 365 days", "town", back(364)),
        ("grid (137 rows), last 365 days", "grid", back(364)),
        ("workstation, last 90 days", "workstation", back(89)),
        ("department, last 30 days", "department", back(29)),
        ("matter class, last 7 days", "class", back(6)),
        ("source, last 30 days", "source", back(29)),
    ];
    let mut rows = Vec::new();
    let mut all = Vec::new();
    for (name, dim, from) in shapes {
        let url = format!("{base}/api/v1/kpi?dim={dim}&from={from}&to={today}");
        let lat = timed_gets(&http, Auth::Bearer(&token), 200, |_| url.clone()).await?;
        rows.push(latency_row(format!("GET /api/v1/kpi {name} (with 环比 and 同比), {count} cases, SQLite"), &lat));
        all.extend(lat);
    }
    all.sort_unstable();
    rows.push(latency_row(format!("GET /api/v1/kpi, all {} requests above, {count} cases", all.len()), &all));
    Ok(rows)
}

/// How a benchmark client proves who it is: a bearer token (the API) or the session cookie (pages).
#[derive(Debug, Clone, Copy)]
enum Auth<'a> {
    Anonymous,
    Bearer(&'a str),
    Cookie(&'a str),
}

/// The web UI against a demo database of `cases` cases: each post's console page (tab counts and the
/// first page of its queue), a deep page of the closed cases, the case page, and the cockpit's two reads,
/// 200 sequential requests each by one client; the reference is `GET /healthz` through the same stack.
/// Then the cockpit's first paint in headless Chromium (cold cache), beside the static about page.
async fn ui_bench(args: &BenchArgs, cases: u64) -> AppResult<Vec<Row>> {
    let db = demo_db_of(args, &format!("bench-kpi-{cases}.db"), cases)?;
    let count = rusqlite_count(&db);
    let (child, base) = spawn_server(&db, "full")?;
    let result = ui_requests(&base, count).await;
    let paint = if result.is_ok() { cockpit_paint(&base) } else { Ok(Vec::new()) };
    kill(child);
    let mut rows = result?;
    rows.extend(paint?);
    Ok(rows)
}

async fn ui_requests(base: &str, count: u64) -> AppResult<Vec<Row>> {
    let http = reqwest::Client::new();
    let mut rows = Vec::new();
    let health = timed_gets(&http, Auth::Anonymous, 200, |_| format!("{base}/healthz")).await?;
    rows.push(latency_row("reference: GET /healthz (the same HTTP stack, no work)".into(), &health));
    let mut pages = Vec::new();
    for post in ["intake", "shift", "dispatch", "dept_huanwei", "gw001", "supervisor", "commander"] {
        let token = login(base, post).await?;
        let lat = timed_gets(&http, Auth::Cookie(&token), 200, |_| format!("{base}/")).await?;
        rows.push(latency_row(format!("console page `/` as {post} (tab counts + first 30 rows), {count} cases"), &lat));
        pages.extend(lat);
    }
    let commander = login(base, "commander").await?;
    let newest: Value =
        http.get(format!("{base}/api/v1/cases?limit=1")).bearer_auth(&commander).send().await?.json().await?;
    let top = newest["items"][0]["id"].as_i64().ok_or("no case in the benchmark database")?;
    let lat = timed_gets(&http, Auth::Cookie(&commander), 200, |i| {
        format!("{base}/queue?q=closed&before={}", top - (i as i64 * 2_500) % top.max(1))
    })
    .await?;
    rows.push(latency_row(format!("queue page of closed cases, keyset deep in the year, {count} cases"), &lat));
    pages.extend(lat);
    let shift = login(base, "shift").await?;
    let lat = timed_gets(&http, Auth::Cookie(&shift), 200, |i| {
        format!("{base}/cases/{}", top - (i as i64 * 997) % top.max(1))
    })
    .await?;
    rows.push(latency_row(
        format!("case page `/cases/{{id}}` as shift leader (facts, timeline, offered steps), {count} cases"),
        &lat,
    ));
    pages.extend(lat);
    pages.sort_unstable();
    rows.push(latency_row(format!("**all {} console and case page requests above**", pages.len()), &pages));
    for read in ["situation", "figures"] {
        let lat = timed_gets(&http, Auth::Bearer(&commander), 200, |_| format!("{base}/api/v1/cockpit/{read}")).await?;
        rows.push(latency_row(format!("GET /api/v1/cockpit/{read}, {count} cases"), &lat));
    }
    Ok(rows)
}

/// The cockpit's first paint, measured by `web/e2e/paint.mjs` in headless Chromium (skipped, and said
/// so, where node, the web packages or Chromium are missing).
fn cockpit_paint(base: &str) -> AppResult<Vec<Row>> {
    let web = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../web");
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    if !Path::new(&chromium).exists() || !web.join("node_modules/playwright-core").exists() {
        return Ok(vec![Row {
            what: "cockpit first paint".into(),
            result: "skipped: no Chromium or web/node_modules".into(),
        }]);
    }
    let out = Command::new("node").args(["e2e/paint.mjs", base, "7", PASSWORD]).current_dir(&web).output()?;
    if !out.status.success() {
        return Err(format!("paint.mjs: {}", String::from_utf8_lossy(&out.stderr)).into());
    }
    let v: Value = serde_json::from_slice(out.stdout.trim_ascii())?;
    let times = |k: &str| -> Vec<u64> {
        let mut t: Vec<u64> = v[k].as_array().into_iter().flatten().filter_map(|x| x.as_u64()).collect();
        t.sort_unstable();
        t
    };
    let row = |what: &str, t: &[u64]| Row {
        what: what.into(),
        result: format!("median {} ms, max {} ms ({} cold runs)", percentile(t, 0.5), percentile(t, 1.0), t.len()),
    };
    Ok(vec![
        row(
            "cockpit first paint at 1920×1080, headless Chromium, cold cache (navigation → all panels drawn)",
            &times("cockpit"),
        ),
        row("reference: the static about page, same browser, cold cache (navigation → load)", &times("about")),
    ])
}

/// `n` sequential GETs of `url(i)` with `auth`, each of which must succeed; their latencies in µs, sorted.
async fn timed_gets(
    http: &reqwest::Client,
    auth: Auth<'_>,
    n: usize,
    url: impl Fn(usize) -> String,
) -> AppResult<Vec<u64>> {
    let mut lat = Vec::with_capacity(n);
    for i in 0..n {
        let url = url(i);
        let req = match auth {
            Auth::Anonymous => http.get(&url),
            Auth::Bearer(token) => http.get(&url).bearer_auth(token),
            Auth::Cookie(token) => {
                http.get(&url).header(reqwest::header::COOKIE, format!("{}={token}", civicgrid_http::auth::COOKIE_NAME))
            }
        };
        let t = Instant::now();
        let r = req.send().await?;
        if !r.status().is_success() {
            return Err(format!("{url}: {}", r.status()).into());
        }
        let _ = r.bytes().await?;
        lat.push(t.elapsed().as_micros() as u64);
    }
    lat.sort_unstable();
    Ok(lat)
}

/// A result row of sorted latencies: p50 and p99 in milliseconds.
fn latency_row(what: String, sorted: &[u64]) -> Row {
    let ms = |q| percentile(sorted, q) as f64 / 1000.0;
    Row { what, result: format!("p50 {:.1} ms, p99 {:.1} ms", ms(0.5), ms(0.99)) }
}

/// Point → micro-grid lookups over the full demo map (635 micro-grids), random points in the town's box.
fn lookup_bench() -> AppResult<Row> {
    let town = civicgrid_demo::town(&demo_options(1.0))?;
    let index =
        civicgrid_core::grid::GridIndex::new(town.layout.micro_grids.iter().map(|m| (m.code, m.polygon.clone())));
    let mut rng = fastrand::Rng::with_seed(1);
    let points: Vec<GeoPoint> =
        (0..1_000_000).map(|_| GeoPoint { lon: 120.87 + rng.f64() * 0.14, lat: 31.24 + rng.f64() * 0.07 }).collect();
    let started = Instant::now();
    let found = points.iter().filter(|p| index.locate(**p).is_some()).count();
    let per = started.elapsed().as_nanos() as f64 / points.len() as f64;
    Ok(Row {
        what: format!("GridIndex::locate, {} micro-grids, 1,000,000 random points ({found} inside)", index.len()),
        result: format!("{:.2} µs per lookup", per / 1000.0),
    })
}

/// A report inside the demo town's first micro-grid.
fn report_body() -> Value {
    let town = civicgrid_demo::town(&demo_options(0.05)).ok();
    let p = town
        .as_ref()
        .and_then(|t| t.layout.micro_grids.first())
        .map(|m| civicgrid_demo::layout::point_in(&m.polygon, 0.5, 0.5));
    let (lon, lat) = p.map_or((0.0, 0.0), |p| (p.x, p.y));
    json!({"matter": "06010", "description": "压测：路边暴露垃圾", "location": {"lon": lon, "lat": lat},
           "address": "压测路 1 号", "reporter_name": "测试", "reporter_phone": "13800000000"})
}

fn demo_options(scale: f64) -> DemoOptions {
    DemoOptions {
        scale,
        case_scale: 0.0,
        seed: 2026,
        now: jiff::Timestamp::now(),
        demo_password_hash: String::new(),
        admin_password_hash: String::new(),
    }
}

/// This build: the binary running the bench.
fn this_build() -> AppResult<PathBuf> {
    Ok(std::env::current_exe()?)
}

/// A subcommand of the `civicgrid` binary `bin` (this build, or the one `--against` names).
fn command_of(bin: &Path, args: &[&str]) -> AppResult<Command> {
    // The children log warnings only (their output goes on to ours), unless `CIVICGRID_BENCH_LOG`
    // gives another filter, e.g. `info` to see what a node did during a slow run.
    let log = std::env::var("CIVICGRID_BENCH_LOG").unwrap_or_else(|_| "warn".to_owned());
    let mut c = Command::new(bin);
    c.args(args)
        .env("CIVICGRID_DEMO_PASSWORD", PASSWORD)
        .env("CIVICGRID_ADMIN_PASSWORD", PASSWORD)
        .env("RUST_LOG", log);
    Ok(c)
}

/// A subcommand of this build.
fn command(args: &[&str]) -> AppResult<Command> {
    command_of(&this_build()?, args)
}

/// Runs a subcommand of `bin` to its end.
fn run_child_of(bin: &Path, args: &[&str]) -> AppResult<()> {
    let out = command_of(bin, args)?.stdout(Stdio::null()).stderr(Stdio::inherit()).status()?;
    if out.success() { Ok(()) } else { Err(format!("{} {args:?} failed", bin.display()).into()) }
}

/// Runs a subcommand of this build to its end.
fn run_child(args: &[&str]) -> AppResult<()> {
    run_child_of(&this_build()?, args)
}

/// Starts `bin serve` on `database` with the given SQLite durability.
fn spawn_server_of(bin: &Path, database: &str, sync: &str) -> AppResult<(Child, String)> {
    let mut cmd = command_of(bin, &["serve", "--database", database, "--listen", "127.0.0.1:0"])?;
    cmd.env("CIVICGRID_SQLITE_SYNCHRONOUS", sync);
    read_banner(cmd)
}

/// Starts this build's `serve` on `database` with the given SQLite durability.
fn spawn_server(database: &str, sync: &str) -> AppResult<(Child, String)> {
    spawn_server_of(&this_build()?, database, sync)
}

/// Starts a server child and returns it with its base URL (read from its first line of output).
fn spawn_child(args: &[&str]) -> AppResult<(Child, String)> {
    read_banner(command(args)?)
}

fn read_banner(mut cmd: Command) -> AppResult<(Child, String)> {
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn()?;
    let mut line = String::new();
    if let Some(out) = child.stdout.take() {
        let mut out = BufReader::new(out);
        // Log lines may come first (with `CIVICGRID_BENCH_LOG=info`): they go on to our error output.
        for _ in 0..1000 {
            line.clear();
            if out.read_line(&mut line)? == 0
                || line.starts_with("civicgrid serving")
                || line.starts_with("bare server on")
            {
                break;
            }
            eprint!("{line}");
        }
        // The child's later output (its warnings) goes on to ours instead of into a closed pipe.
        std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::stderr()));
    }
    let url = line.split_whitespace().last().unwrap_or_default().to_owned();
    if !url.starts_with("http://") {
        kill(child);
        return Err(format!("server did not start: {line:?}").into());
    }
    Ok((child, url))
}

fn kill(mut child: Child) {
    let _ = child.kill();
    let _ = child.wait();
}

fn remove_sqlite(path: &str) -> AppResult<()> {
    for suffix in ["", "-wal", "-shm"] {
        let p = format!("{path}{suffix}");
        if Path::new(&p).exists() {
            std::fs::remove_file(p)?;
        }
    }
    Ok(())
}

async fn scratch_pg(base: &str, name: &str) -> AppResult<(String, String)> {
    let db = format!("{name}_{}", std::process::id());
    let admin = sqlx::PgPool::connect(base).await?;
    admin.execute(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {db}"))).await?;
    admin.execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {db}"))).await?;
    let i = base.rfind('/').ok_or("the PostgreSQL URL has no database part")?;
    Ok((format!("{}/{db}", &base[..i]), db))
}

async fn drop_pg(base: &str, db: &str) {
    if let Ok(admin) = sqlx::PgPool::connect(base).await {
        let _ = admin.execute(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"))).await;
    }
}

async fn login(base: &str, user: &str) -> AppResult<String> {
    let v: Value = reqwest::Client::new()
        .post(format!("{base}/api/v1/auth/login"))
        .json(&json!({"username": user, "password": PASSWORD}))
        .send()
        .await?
        .json()
        .await?;
    Ok(v["token"].as_str().ok_or("login failed")?.to_owned())
}

/// Makes `bin`'s small demo town without cases in `database` afresh: what a load test reports into.
fn load_town(bin: &Path, database: &str) -> AppResult<()> {
    if !database.starts_with("postgres") {
        remove_sqlite(database)?;
    }
    run_child_of(
        bin,
        &["demo", "--database", database, "--scale", LOAD_SCALE, "--case-scale", "0", "--no-serve", "--fresh"],
    )
}

async fn create_load(bin: &Path, database: &str, body: &Value, args: &BenchArgs, sync: &str) -> AppResult<LoadResult> {
    load_town(bin, database)?;
    let (child, base) = spawn_server_of(bin, database, sync)?;
    let token = login(&base, "intake").await;
    let r = match token {
        Ok(t) => match load(&base, Some(&t), body, args.clients, args.seconds).await {
            Ok(mut r) => {
                // A build older than the readers' lag gauge (`--against`) is measured all the same.
                match reader_lag(&base).await {
                    Ok(lag) => r.readers = Some(lag),
                    Err(e) => eprintln!("  (no log reader lag from {}: {e})", bin.display()),
                }
                Ok(r)
            }
            Err(e) => Err(e),
        },
        Err(e) => Err(e),
    };
    kill(child);
    r
}

/// How far the event log's readers (SLA timers, KPI counters) were behind when a load ended, and how
/// long after it they caught up, read from the server's `/metrics` every 100 ms (at most two minutes).
async fn reader_lag(base: &str) -> AppResult<ReaderLag> {
    let http = reqwest::Client::new();
    let behind = || async {
        let text = http.get(format!("{base}/metrics")).send().await?.error_for_status()?.text().await?;
        let value = |reader: &str| {
            let name = format!("civicgrid_log_reader_behind{{reader=\"{reader}\"}} ");
            text.lines().find_map(|l| l.strip_prefix(&name)).and_then(|v| v.trim().parse::<f64>().ok())
        };
        match (value("sla_timers"), value("kpi")) {
            (Some(t), Some(k)) => Ok::<_, Box<dyn std::error::Error + Send + Sync>>((t as u64, k as u64)),
            _ => Err("the server's metrics have no log reader lag".into()),
        }
    };
    let started = Instant::now();
    let at_end = behind().await?;
    let mut now = at_end;
    while now != (0, 0) && started.elapsed() < Duration::from_secs(120) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        now = behind().await?;
    }
    Ok(ReaderLag { at_end, caught_up: (now == (0, 0)).then(|| started.elapsed()) })
}

/// The log readers' lag after a load.
struct ReaderLag {
    /// Entries the timer and KPI readers had still to read when the load ended.
    at_end: (u64, u64),
    /// How long after the end both had read everything (None: not within two minutes).
    caught_up: Option<Duration>,
}

/// What a load test measured.
struct LoadResult {
    ok: u64,
    failed: u64,
    elapsed: Duration,
    latencies_us: Vec<u64>,
    /// For a creation load: how the event log's readers kept up.
    readers: Option<ReaderLag>,
}

impl LoadResult {
    fn rate(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64()
    }

    fn summary(&self) -> String {
        let p = |q: f64| percentile(&self.latencies_us, q) as f64 / 1000.0;
        format!(
            "{:.0} req/s ({} ok, {} failed in {:.1} s; p50 {:.1} ms, p99 {:.1} ms)",
            self.rate(),
            self.ok,
            self.failed,
            self.elapsed.as_secs_f64(),
            p(0.50),
            p(0.99)
        ) + &self.readers.as_ref().map_or(String::new(), |lag| {
            let caught =
                lag.caught_up.map_or("not within 120 s".to_owned(), |d| format!("{:.1} s after", d.as_secs_f64()));
            format!(
                "; log readers behind at the end: timers {}, KPIs {} entries, caught up {caught}",
                lag.at_end.0, lag.at_end.1
            )
        })
    }
}

fn percentile(sorted: &[u64], q: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

/// `clients` tasks POST `body` to /api/v1/cases for `seconds`, each waiting for its answer.
async fn load(base: &str, token: Option<&str>, body: &Value, clients: usize, seconds: u64) -> AppResult<LoadResult> {
    load_until(base, token, body, clients, Until::Seconds(seconds)).await
}

/// When a load ends.
#[derive(Debug, Clone, Copy)]
enum Until {
    /// After this many seconds.
    Seconds(u64),
    /// After this many requests in all.
    Requests(u64),
}

/// `clients` tasks POST `body` to /api/v1/cases until `until`, each waiting for its answer.
async fn load_until(
    base: &str,
    token: Option<&str>,
    body: &Value,
    clients: usize,
    until: Until,
) -> AppResult<LoadResult> {
    let http = reqwest::Client::builder().pool_max_idle_per_host(clients).build()?;
    let url = format!("{base}/api/v1/cases");
    let payload = Arc::new(serde_json::to_vec(body)?);
    let started = Instant::now();
    let (deadline, budget) = match until {
        Until::Seconds(s) => (started + Duration::from_secs(s), u64::MAX),
        Until::Requests(n) => (started + Duration::from_secs(24 * 3600), n),
    };
    // Requests not yet sent: each client takes one before it sends.
    let left = Arc::new(std::sync::atomic::AtomicU64::new(budget));
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (http, url, payload, token) = (http.clone(), url.clone(), payload.clone(), token.map(str::to_owned));
        let left = left.clone();
        let take = move || {
            left.fetch_update(std::sync::atomic::Ordering::Relaxed, std::sync::atomic::Ordering::Relaxed, |n| {
                n.checked_sub(1)
            })
            .is_ok()
        };
        tasks.push(tokio::spawn(async move {
            let (mut ok, mut failed, mut lat) = (0u64, 0u64, Vec::with_capacity(100_000));
            while Instant::now() < deadline && take() {
                let t = Instant::now();
                let mut req = http.post(&url).header("content-type", "application/json").body(payload.as_ref().clone());
                if let Some(tok) = &token {
                    req = req.bearer_auth(tok);
                }
                match req.send().await {
                    Ok(r) if r.status() == reqwest::StatusCode::CREATED => {
                        let _ = r.bytes().await;
                        ok += 1;
                        lat.push(t.elapsed().as_micros() as u64);
                    }
                    _ => failed += 1,
                }
            }
            (ok, failed, lat)
        }));
    }
    let mut result = LoadResult { ok: 0, failed: 0, elapsed: Duration::ZERO, latencies_us: Vec::new(), readers: None };
    for t in tasks {
        let (ok, failed, lat) = t.await?;
        result.ok += ok;
        result.failed += failed;
        result.latencies_us.extend(lat);
    }
    result.elapsed = started.elapsed();
    result.latencies_us.sort_unstable();
    Ok(result)
}

/// Event → client latency of the live feed: `sse_clients` subscribers of `GET /api/v1/stream` (as the
/// shift leader, who sees every case) while cases are reported at `sse_rate` per second. Latency is the
/// time from the event's own timestamp (taken when the change was decided, before its commit) to the
/// moment a subscriber has read it, on one clock (server and clients share the machine).
async fn sse_bench(args: &BenchArgs, body: &Value) -> AppResult<Row> {
    let database = args.dir.join("bench-sse.db").to_string_lossy().into_owned();
    load_town(&this_build()?, &database)?;
    let (child, base) = spawn_server(&database, "full")?;
    let result = sse_load(&base, body, args).await;
    kill(child);
    let (latencies, expected, received, sent) = result?;
    let p = |q: f64| percentile(&latencies, q) as f64 / 1000.0;
    Ok(Row {
        what: format!(
            "live feed (SSE), {} subscribers, {} cases/s for {} s",
            args.sse_clients, args.sse_rate, args.seconds
        ),
        result: format!(
            "event → client p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({received} of {expected} deliveries, {sent} cases)",
            p(0.50),
            p(0.99),
            p(1.0)
        ),
    })
}

async fn sse_load(base: &str, body: &Value, args: &BenchArgs) -> AppResult<(Vec<u64>, u64, u64, u64)> {
    let shift = login(base, "shift").await?;
    let intake = login(base, "intake").await?;
    let http = reqwest::Client::builder().pool_max_idle_per_host(args.sse_clients + 8).build()?;
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let mut subscribers = Vec::new();
    for _ in 0..args.sse_clients {
        let resp = http.get(format!("{base}/api/v1/stream")).bearer_auth(&shift).send().await?;
        if !resp.status().is_success() {
            return Err(format!("subscribe: {}", resp.status()).into());
        }
        let mut stop = stop.clone();
        subscribers.push(tokio::spawn(async move {
            let mut resp = resp;
            let (mut buf, mut lat) = (String::new(), Vec::new());
            loop {
                let chunk = tokio::select! {
                    c = resp.chunk() => c,
                    _ = stop.changed() => break,
                };
                let Ok(Some(chunk)) = chunk else { break };
                let now = jiff::Timestamp::now();
                buf.push_str(&String::from_utf8_lossy(&chunk));
                while let Some(end) = buf.find("\n\n") {
                    let message: String = buf.drain(..end + 2).collect();
                    let Some(data) = message.lines().find_map(|l| l.strip_prefix("data:")) else { continue };
                    let Ok(v) = serde_json::from_str::<Value>(data.trim()) else { continue };
                    let Some(at) = v["event"]["at"].as_str().and_then(|s| s.parse::<jiff::Timestamp>().ok()) else {
                        continue;
                    };
                    lat.push(now.duration_since(at).as_micros().max(0) as u64);
                }
            }
            lat
        }));
    }
    // Let every subscription settle before the first event.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let payload = serde_json::to_vec(body)?;
    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / args.sse_rate.max(1)));
    let deadline = Instant::now() + Duration::from_secs(args.seconds);
    let mut sent = 0u64;
    while Instant::now() < deadline {
        tick.tick().await;
        let r = http
            .post(format!("{base}/api/v1/cases"))
            .bearer_auth(&intake)
            .header("content-type", "application/json")
            .body(payload.clone())
            .send()
            .await?;
        if r.status() == reqwest::StatusCode::CREATED {
            sent += 1;
        }
    }
    // Give the last events time to arrive, then stop listening.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let _ = stop_tx.send(true);
    let mut all = Vec::new();
    for s in subscribers {
        all.extend(s.await?);
    }
    all.sort_unstable();
    let received = all.len() as u64;
    Ok((all, sent * args.sse_clients as u64, received, sent))
}

/// The bare handler: parse the same JSON, answer 201 with a small body. No auth, no storage.
async fn serve_bare(addr: &str) -> AppResult<()> {
    async fn handler(Json(v): Json<Value>) -> (StatusCode, Json<Value>) {
        (StatusCode::CREATED, Json(json!({"id": 1, "matter": v["matter"], "state": "reported"})))
    }
    let app = axum::Router::new().route("/api/v1/cases", post(handler));
    let listener = tokio::net::TcpListener::bind(addr).await?;
    println!("bare server on http://{}", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}

/// Cases/s through `Store::import_cases` in batches of 512: one case row and its report event each.
async fn bare_insert(database: &str) -> AppResult<f64> {
    let store = civicgrid_store::open(database).await?;
    let town = civicgrid_demo::town(&demo_options(0.05))?;
    let sla = SlaPolicy::default();
    let clocks = Clocks::single(WorkCalendar::china_2026());
    let m = &town.layout.micro_grids[0];
    let now = jiff::Timestamp::now();
    let matter: civicgrid_core::codes::MatterCode = "06010".parse()?;
    let make = |i: usize| {
        let facts = CaseFacts {
            matter,
            component_id: None,
            source: Source::Hotline12345,
            urgency: Urgency::Normal,
            description: format!("压测 {i}"),
            location: GeoPoint { lon: 120.9, lat: 31.3 },
            address: "压测路 1 号".into(),
            grid: m.grid(),
            micro_grid: m.code,
            reporter: Reporter {
                user_id: Some(1),
                name: Some("测试".into()),
                phone: Some("13800000000".into()),
                tracking: None,
            },
            attachments: vec![],
            reported_at: now,
            upstream: None,
        };
        let (status, event) =
            CaseStatus::report(&facts, EventActor::user(1, Role::IntakeOperator), &Context::new(now, &clocks, &sla));
        ImportCase { facts, events: vec![event], status }
    };
    let total = 100_000;
    let batches: Vec<Vec<ImportCase>> =
        (0..total / 512).map(|b| (0..512).map(|i| make(b * 512 + i)).collect()).collect();
    let n = batches.len() * 512;
    let started = Instant::now();
    for batch in batches {
        store.import_cases(town.town.code, batch).await?;
    }
    Ok(n as f64 / started.elapsed().as_secs_f64())
}

/// Latency of filtered lists against a database of `args.list_cases` cases.
async fn list_bench(args: &BenchArgs) -> AppResult<Vec<Row>> {
    let db = demo_db_of(args, "bench-list.db", args.list_cases)?;
    let count = rusqlite_count(&db) as i64;
    let (child, base) = spawn_server(&db, "full")?;
    let result = list_queries(&base, count).await;
    kill(child);
    result
}

/// Builds the query string of the i-th request of a shape.
type QueryFn<'a> = Box<dyn Fn(usize) -> String + 'a>;

async fn list_queries(base: &str, count: i64) -> AppResult<Vec<Row>> {
    let token = login(base, "shift").await?;
    let http = reqwest::Client::new();
    let town = civicgrid_demo::town(&demo_options(1.0))?;
    let grids: Vec<String> = town.layout.grids.iter().map(|g| g.code.to_string()).collect();
    let shapes: [(&str, QueryFn<'_>); 7] = [
        ("newest 50", Box::new(|_| "limit=50".to_owned())),
        ("by grid", Box::new(|i| format!("grid={}&limit=50", grids[i % grids.len()]))),
        ("by state (handling, replied)", Box::new(|_| "state=handling,replied&limit=50".to_owned())),
        ("by department + matter", Box::new(|_| "department=huanwei&matter=06010&limit=50".to_owned())),
        ("small department (co-department only)", Box::new(|_| "department=health&limit=50".to_owned())),
        ("overdue", Box::new(|_| "overdue=true&limit=50".to_owned())),
        (
            "one week, by grid",
            Box::new(|i| {
                let to = jiff::Timestamp::now() - jiff::SignedDuration::from_hours(24 * (i as i64 % 300));
                let from = to - jiff::SignedDuration::from_hours(24 * 7);
                format!("grid={}&from={from}&to={to}&limit=50", grids[(i * 7) % grids.len()])
            }),
        ),
    ];
    let mut rows = Vec::new();
    let mut all = Vec::new();
    for (name, query) in &shapes {
        let lat = timed_gets(&http, Auth::Bearer(&token), 300, |i| format!("{base}/api/v1/cases?{}", query(i))).await?;
        rows.push(latency_row(format!("GET /api/v1/cases {name}, {count} cases, SQLite"), &lat));
        all.extend(lat);
    }
    all.sort_unstable();
    rows.push(latency_row(format!("GET /api/v1/cases, all {} filtered requests above", all.len()), &all));
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::{Build, median, turns};

    #[test]
    fn medians_of_odd_and_even_counts() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[420.0, 210.0, 400.0]), Some(400.0));
        assert_eq!(median(&[420.0, 210.0, 400.0, 220.0]), Some(310.0));
    }

    #[test]
    fn the_builds_take_turns_so_that_a_steady_drift_favours_neither() {
        use Build::{Other, This};
        assert_eq!(turns(1), vec![This, Other]);
        assert_eq!(turns(3), vec![This, Other, Other, This, This, Other]);
        // Under a drift that slows every later run by the same step, two rounds give both builds the
        // same mean.
        let slot = |b: Build| turns(2).iter().enumerate().filter(|(_, x)| **x == b).map(|(i, _)| i).sum::<usize>();
        assert_eq!(slot(This), slot(Other));
    }
}
