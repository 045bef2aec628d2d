//! `bench --instructions N`: the CPU work of a created case, counted in instructions by Valgrind's
//! callgrind, beside the bare axum handler's work per request.
//!
//! Throughput on this VM drifts by more than most changes gain (BENCHMARKS.md): the same build has
//! measured 5,000 and 9,000 creations a second ten minutes apart. An instruction count does not drift:
//! it counts what the server's threads executed, whatever else the machine was doing. So a change to
//! the write path is judged here first (with `--against` its parent), and by throughput after.
//!
//! Each server runs as a child under `valgrind --tool=callgrind`. Once it has started, the clients
//! have logged in and a first round of requests has warmed it (pools, caches, lazy statics), its
//! counters are zeroed (`callgrind_control -z`); then N requests are sent by the usual concurrent
//! clients, the event log's readers are waited for (their work on those cases is part of a case's
//! cost) and the counters are dumped (`callgrind_control -d`). The count covers every thread of the
//! server, the kernel excepted: a system call counts its user-space side only, so an `fsync` costs
//! what its wrapper does. Callgrind runs one thread at a time, which changes how many cases the writer
//! finds waiting per commit; the per-commit share of the count is therefore not the loaded server's.
//!
//! With `--ingest M` it counts a `serve` node's instructions per telemetry message instead, while the
//! node drains M messages from the bench's own Mosquitto ([`super::ingest::counted_ingest`]).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use super::{
    BenchArgs, Row, Until, check_other, command_of, kill, load_town, load_until, login, read_banner, reader_lag,
    remove_sqlite, this_build,
};
use crate::AppResult;

/// What a counted load did.
struct Counted {
    /// Requests answered as the load expected.
    ok: u64,
    /// Instructions executed by the server while they were served (and the log read after them).
    instructions: u64,
}

impl Counted {
    fn per_request(&self) -> f64 {
        self.instructions as f64 / self.ok.max(1) as f64
    }
}

/// The rows of `bench --instructions cases`: the bare handler's count per request, then this build's
/// (and, with `--against`, the other build's) per created case.
pub(super) async fn instructions_bench(args: &BenchArgs, cases: u64, body: &Value) -> AppResult<Vec<Row>> {
    check_valgrind()?;
    if let Some(other) = &args.against {
        check_other(other)?;
    }
    let this = this_build()?;
    let mut rows = Vec::new();
    eprintln!("· bare axum handler under callgrind, {cases} requests");
    let bare = counted_bare(&this, &args.dir, cases, args.clients, body).await?;
    rows.push(Row {
        what: format!("bare axum handler (this build), {} clients, {cases} requests", args.clients),
        result: format!("{:.1} k instructions per request", bare.per_request() / 1000.0),
    });
    let mut per_case = Vec::new();
    for (name, bin) in builds(args, &this) {
        let mut runs = Vec::new();
        for round in 1..=args.rounds {
            eprintln!("· round {round}: case creation under callgrind, {cases} cases, {name}");
            runs.push(counted_creation(&bin, &args.dir, cases, args.clients, body).await?.per_request());
        }
        let (mean, list) = summary(&runs);
        rows.push(Row {
            what: format!(
                "POST /api/v1/cases, SQLite synchronous=full, {} clients, {cases} cases, {name}",
                args.clients
            ),
            result: format!(
                "{:.1} k instructions per case (runs {list} k), log readers included: {:.1} × the bare handler's",
                mean / 1000.0,
                mean / bare.per_request().max(1.0)
            ),
        });
        per_case.push(mean);
    }
    rows.extend(difference(&per_case, "instructions per case"));
    Ok(rows)
}

/// The rows of `bench --instructions --ingest M`: the node's instructions per message while it drains
/// M messages (after a warm-up), for this build (and, with `--against`, the other).
pub(super) async fn ingest_instructions_bench(args: &BenchArgs, messages: usize) -> AppResult<Vec<Row>> {
    check_valgrind()?;
    if let Some(other) = &args.against {
        check_other(other)?;
    }
    let this = this_build()?;
    let mut rows = Vec::new();
    let mut per_message = Vec::new();
    for (name, bin) in builds(args, &this) {
        let mut runs = Vec::new();
        for round in 1..=args.rounds {
            eprintln!("· round {round}: telemetry ingest under callgrind, {messages} messages, {name}");
            runs.push(super::ingest::counted_ingest(&bin, &args.dir, messages).await?);
        }
        let (mean, list) = summary(&runs);
        rows.push(Row {
            what: format!("telemetry ingest over MQTT, SQLite, {messages} messages, {name}"),
            result: format!("{:.1} k instructions per message (runs {list} k)", mean / 1000.0),
        });
        per_message.push(mean);
    }
    rows.extend(difference(&per_message, "instructions per message"));
    Ok(rows)
}

/// This build, and the `--against` one if given, with their names for the table.
fn builds(args: &BenchArgs, this: &Path) -> Vec<(String, PathBuf)> {
    let mut builds = vec![("this build".to_owned(), this.to_path_buf())];
    if let Some(other) = &args.against {
        builds.push((format!("`{}`", other.display()), other.clone()));
    }
    builds
}

/// The mean of some counts, and the counts in thousands, for a row.
fn summary(runs: &[f64]) -> (f64, String) {
    let mean = runs.iter().sum::<f64>() / runs.len().max(1) as f64;
    (mean, runs.iter().map(|r| format!("{:.1}", r / 1000.0)).collect::<Vec<_>>().join(" / "))
}

/// With two builds' means, the row comparing them.
fn difference(means: &[f64], what: &str) -> Option<Row> {
    let [this, other] = means[..] else { return None };
    Some(Row {
        what: "this build against the other".into(),
        result: format!("{:+.1} % {what}", 100.0 * (this / other.max(1.0) - 1.0)),
    })
}

/// Fails early, with what to install, when Valgrind is missing.
fn check_valgrind() -> AppResult<()> {
    let found = |tool: &str| Command::new(tool).arg("--version").stdout(Stdio::null()).status().is_ok();
    if found("valgrind") && found("callgrind_control") {
        Ok(())
    } else {
        Err("--instructions needs Valgrind (`apt-get install -y valgrind`)".into())
    }
}

/// `bin args` as a child under callgrind writing to `out`, counting from the start (zeroed later).
pub(super) fn under_callgrind(bin: &Path, out: &Path, args: &[&str]) -> AppResult<Command> {
    let child = command_of(bin, args)?;
    let mut cmd = Command::new("valgrind");
    cmd.arg("--tool=callgrind")
        .arg(format!("--callgrind-out-file={}", out.display()))
        .arg(child.get_program())
        .args(child.get_args())
        .envs(child.get_envs().filter_map(|(k, v)| Some((k, v?))))
        .stderr(Stdio::null());
    Ok(cmd)
}

/// Runs `callgrind_control <what> pid`.
pub(super) fn control(pid: u32, what: &str) -> AppResult<()> {
    let ok = Command::new("callgrind_control")
        .arg(what)
        .arg(pid.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()?;
    if ok.success() { Ok(()) } else { Err(format!("callgrind_control {what} {pid} failed").into()) }
}

/// The instruction total of callgrind's first dump of `out` (`out.1`), which it then removes.
pub(super) fn dumped_total(out: &Path) -> AppResult<u64> {
    let dump = PathBuf::from(format!("{}.1", out.display()));
    // The dump is written by the child after the control command returns; give it a moment.
    for _ in 0..100 {
        if let Ok(text) = std::fs::read_to_string(&dump)
            && let Some(total) = text.lines().find_map(|l| l.strip_prefix("totals: ").or(l.strip_prefix("summary: ")))
        {
            let _ = std::fs::remove_file(&dump);
            let _ = std::fs::remove_file(out);
            return Ok(total.trim().parse()?);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(format!("callgrind wrote no dump to {}", dump.display()).into())
}

/// The bare handler's count over `requests` requests.
async fn counted_bare(bin: &Path, dir: &Path, requests: u64, clients: usize, body: &Value) -> AppResult<Counted> {
    let out = dir.join("callgrind.bare.out");
    let (child, base) = read_banner(under_callgrind(bin, &out, &["bench", "--serve-bare", "127.0.0.1:0"])?)?;
    let pid = child.id();
    let counted = async {
        load_until(&base, None, body, clients, Until::Requests(clients as u64)).await?;
        control(pid, "-z")?;
        let r = load_until(&base, None, body, clients, Until::Requests(requests)).await?;
        control(pid, "-d")?;
        AppResult::Ok(Counted { ok: r.ok, instructions: dumped_total(&out)? })
    }
    .await;
    kill(child);
    counted
}

/// A creation load's count over `cases` cases on a fresh small demo town, the log readers' catching up
/// after it included.
async fn counted_creation(bin: &Path, dir: &Path, cases: u64, clients: usize, body: &Value) -> AppResult<Counted> {
    let db = dir.join("bench-instructions.db").to_string_lossy().into_owned();
    load_town(bin, &db)?;
    let out = dir.join("callgrind.create.out");
    let mut cmd = under_callgrind(bin, &out, &["serve", "--database", &db, "--listen", "127.0.0.1:0"])?;
    cmd.env("CIVICGRID_SQLITE_SYNCHRONOUS", "full");
    let (child, base) = read_banner(cmd)?;
    let pid = child.id();
    let counted = async {
        let token = login(&base, "intake").await?;
        load_until(&base, Some(&token), body, clients, Until::Requests(clients as u64)).await?;
        reader_lag(&base).await?;
        control(pid, "-z")?;
        let r = load_until(&base, Some(&token), body, clients, Until::Requests(cases)).await?;
        let lag = reader_lag(&base).await?;
        if lag.caught_up.is_none() {
            return Err("the log readers did not catch up within two minutes".into());
        }
        control(pid, "-d")?;
        if r.failed > 0 {
            return Err(format!("{} of the counted requests failed", r.failed).into());
        }
        AppResult::Ok(Counted { ok: r.ok, instructions: dumped_total(&out)? })
    }
    .await;
    kill(child);
    remove_sqlite(&db)?;
    counted
}
