//! The `civicgrid` binary: `serve`, `migrate`, `demo` and `bench` (see `--help`).

mod bench;
mod config;
mod demo;
mod simulate;

use std::path::PathBuf;
use std::sync::Arc;

use civicgrid_core::calendar::{CALENDAR_2026_CSV, parse_calendar_csv};
use civicgrid_core::catalog::Catalog;
use civicgrid_core::clock::SystemClock;
use civicgrid_http::{AppState, HttpConfig};
use civicgrid_service::{ServiceConfig, Services};
use civicgrid_store::Store;
use clap::{Parser, Subcommand};

use crate::config::Config;

/// mimalloc: the request path allocates a lot of small JSON strings; glibc malloc showed up at the top
/// of the profile (see BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The integrated command centre of a town.
#[derive(Debug, Parser)]
#[command(name = "civicgrid", version, about)]
struct Cli {
    /// Configuration file (default: ./civicgrid.toml if present).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the API and pages.
    Serve {
        /// SQLite path or postgres:// URL.
        #[arg(long)]
        database: Option<String>,
        /// Address to listen on, e.g. 127.0.0.1:8080.
        #[arg(long)]
        listen: Option<String>,
    },
    /// Create or update the database schema and load the national code tables.
    Migrate {
        /// SQLite path or postgres:// URL.
        #[arg(long)]
        database: Option<String>,
    },
    /// Generate the demo town (once) and serve it.
    Demo(demo::DemoArgs),
    /// Measure throughput and latency (see BENCHMARKS.md).
    Bench(bench::BenchArgs),
    /// Publish the demo town's device telemetry to an MQTT broker (see the README).
    Simulate(simulate::SimulateArgs),
    /// Manage accounts.
    #[command(subcommand)]
    User(UserCommand),
    /// Recount the live KPI counters from every case history (they are kept up to date as events
    /// commit; rebuild after restoring old data or changing how KPIs are counted).
    KpiRebuild {
        /// SQLite path or postgres:// URL.
        #[arg(long)]
        database: Option<String>,
    },
    /// Copy a running SQLite database to a new file, consistently, with its attachment files beside it
    /// (`FILE.files/`; PostgreSQL: use pg_dump).
    Backup {
        /// SQLite path (the database to copy).
        #[arg(long)]
        database: Option<String>,
        /// The backup file to create.
        #[arg(long)]
        to: PathBuf,
    },
    /// Put a backup (and its attachment files) in place of a database (stop the server first).
    Restore {
        /// The backup file.
        #[arg(long)]
        from: PathBuf,
        /// SQLite path to restore to.
        #[arg(long)]
        database: Option<String>,
        /// Replace an existing database file.
        #[arg(long)]
        force: bool,
    },
}

fn sqlite_path(database: &str) -> AppResult<PathBuf> {
    if database.starts_with("postgres://") || database.starts_with("postgresql://") {
        return Err("PostgreSQL is backed up with pg_dump and restored with pg_restore (see the README)".into());
    }
    Ok(PathBuf::from(
        database.strip_prefix("sqlite://").or_else(|| database.strip_prefix("sqlite:")).unwrap_or(database),
    ))
}

async fn backup(database: &str, to: &std::path::Path, files: Option<PathBuf>) -> AppResult<()> {
    let path = sqlite_path(database)?;
    if !path.exists() {
        return Err(format!("no database at {}", path.display()).into());
    }
    let store = civicgrid_store::sqlite::SqliteStore::open(&path.to_string_lossy()).await?;
    let spinner = indicatif::ProgressBar::new_spinner().with_message(format!("backing up to {}", to.display()));
    spinner.enable_steady_tick(std::time::Duration::from_millis(120));
    store.backup_to(to).await?;
    civicgrid_store::sqlite::SqliteStore::verify_file(to).await?;
    spinner.finish_and_clear();
    let size = std::fs::metadata(to)?.len();
    println!("backed up {} to {} ({:.1} MB, integrity checked)", path.display(), to.display(), size as f64 / 1e6);
    // The attachments on disk after the database: every file the copy names was written before its
    // row, and files never change, so the folder copied afterwards holds all of them.
    if let Some(files) = files.filter(|f| f.is_dir()) {
        let into = files_beside(to);
        let (n, bytes) = copy_attachments(&files, &into)?;
        println!("copied {n} attachment files ({:.1} MB) to {}", bytes as f64 / 1e6, into.display());
    }
    Ok(())
}

/// The attachment folder that goes with a backup file: `<file>.files`.
fn files_beside(file: &std::path::Path) -> PathBuf {
    PathBuf::from(format!("{}.files", file.display()))
}

/// Copies a content-addressed attachment folder (`ab/abcdef…`, files named by their SHA-256) into
/// `into`, with a progress bar: files already there are the same content and are kept; files being
/// written (`*.tmp…`) are left out. How many files and bytes were copied.
fn copy_attachments(from: &std::path::Path, into: &std::path::Path) -> AppResult<(u64, u64)> {
    let mut files = Vec::new();
    for shard in std::fs::read_dir(from)? {
        let shard = shard?;
        if !shard.file_type()?.is_dir() {
            continue;
        }
        for file in std::fs::read_dir(shard.path())? {
            let file = file?;
            let name = file.file_name();
            if file.file_type()?.is_file() && !name.to_string_lossy().contains(".tmp") {
                files.push((shard.file_name(), name));
            }
        }
    }
    let bar = indicatif::ProgressBar::new(files.len() as u64).with_message("attachments");
    let (mut copied, mut bytes) = (0, 0);
    for (shard, name) in files {
        let target = into.join(&shard).join(&name);
        if !target.exists() {
            std::fs::create_dir_all(into.join(&shard))?;
            // Beside the target first, then renamed: a copy cut short never looks complete.
            let partial = into.join(&shard).join(format!("{}.tmp-copy", name.to_string_lossy()));
            bytes += std::fs::copy(from.join(&shard).join(&name), &partial)?;
            std::fs::rename(&partial, &target)?;
            copied += 1;
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok((copied, bytes))
}

async fn restore(from: &std::path::Path, database: &str, force: bool, files: Option<PathBuf>) -> AppResult<()> {
    let target = sqlite_path(database)?;
    civicgrid_store::sqlite::SqliteStore::verify_file(from).await.map_err(|e| format!("{}: {e}", from.display()))?;
    if target.exists() && !force {
        return Err(format!("{} exists; pass --force to replace it (stop the server first)", target.display()).into());
    }
    // The attachments first: once the database is in place, every file it names is there.
    let saved = files_beside(from);
    if let Some(files) = files.filter(|_| saved.is_dir()) {
        let (n, bytes) = copy_attachments(&saved, &files)?;
        println!("restored {n} attachment files ({:.1} MB) to {}", bytes as f64 / 1e6, files.display());
    }
    // Copy beside the target, then rename over it, so a crash never leaves half a database.
    let tmp = target.with_extension("restoring");
    std::fs::copy(from, &tmp)?;
    for suffix in ["-wal", "-shm"] {
        let side = PathBuf::from(format!("{}{suffix}", target.display()));
        if side.exists() {
            std::fs::remove_file(side)?;
        }
    }
    std::fs::rename(&tmp, &target)?;
    let store = civicgrid_store::open(&target.to_string_lossy()).await?;
    println!("restored {} to {} ({} cases)", from.display(), target.display(), store.count_cases().await?);
    Ok(())
}

/// The folder on disk that holds the attachments of `database` under this configuration, if they are
/// kept on disk.
fn attachment_folder(cfg: &config::Config, database: &str) -> Option<PathBuf> {
    let mut cfg = cfg.clone();
    cfg.database = database.to_owned();
    match cfg.blob_storage() {
        civicgrid_service::attachments::BlobStorage::Disk(dir) => Some(dir),
        civicgrid_service::attachments::BlobStorage::Database => None,
    }
}

/// Recounts the KPI counters with a progress bar.
pub(crate) async fn rebuild_kpis(store: Arc<dyn civicgrid_store::Store>) -> AppResult<()> {
    let started = std::time::Instant::now();
    let services = Services::new(store, Arc::new(SystemClock), ServiceConfig::default()).await?;
    let bar = indicatif::ProgressBar::new(0).with_message("统计考核指标 KPIs");
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} {msg} [{bar:40}] {pos}/{len} ({per_sec}, ETA {eta})")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    let cases = services
        .rebuild_kpis(&|done, total| {
            bar.set_length(total);
            bar.set_position(done);
        })
        .await?;
    bar.finish_and_clear();
    println!("KPI counters rebuilt from {cases} cases in {:.1} s.", started.elapsed().as_secs_f64());
    Ok(())
}

#[derive(Debug, Subcommand)]
enum UserCommand {
    /// Create an account; the password comes from CIVICGRID_NEW_PASSWORD or the first line of stdin.
    Add {
        /// SQLite path or postgres:// URL.
        #[arg(long)]
        database: Option<String>,
        /// Login name.
        #[arg(long)]
        username: String,
        /// Name shown in the UI.
        #[arg(long)]
        display_name: String,
        /// Post: admin, intake_operator, shift_leader, dispatcher, dept_handler, grid_worker, …
        #[arg(long)]
        role: String,
        /// Grid code (grid workers; repeat for several).
        #[arg(long = "grid")]
        grids: Vec<String>,
        /// Department code (department handlers).
        #[arg(long)]
        department: Option<String>,
        /// Phone.
        #[arg(long)]
        phone: Option<String>,
    },
}

async fn user_command(cmd: UserCommand, cfg: &Config) -> AppResult<()> {
    let UserCommand::Add { database, username, display_name, role, grids, department, phone } = cmd;
    let password = match std::env::var("CIVICGRID_NEW_PASSWORD") {
        Ok(p) => p,
        Err(_) => {
            let mut line = String::new();
            std::io::stdin().read_line(&mut line)?;
            line.trim_end_matches(['\r', '\n']).to_owned()
        }
    };
    let input = civicgrid_core::access::AccountInput {
        username,
        display_name,
        role: role.parse()?,
        password,
        department: department.map(|d| d.parse()).transpose()?,
        grids: grids.iter().map(|g| g.parse()).collect::<Result<_, _>>()?,
        phone,
    };
    let store = civicgrid_store::open_with(database.as_deref().unwrap_or(&cfg.database), cfg.store_options()).await?;
    seed_reference(store.as_ref()).await?;
    let services = Services::new(store, Arc::new(SystemClock), ServiceConfig::default()).await?;
    let user = services.create_account_unchecked(input).await?;
    println!("created {} ({}, id {})", user.username, user.role.label_zh(), user.id);
    Ok(())
}

/// Anything that ends the program with an error message.
pub type AppResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

fn init_logging(filter: &str, format: config::LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(filter));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_target(false);
    let _ = match format {
        config::LogFormat::Text => builder.try_init(),
        config::LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

/// Loads the code tables and calendar into a store that has none yet.
pub async fn seed_reference(store: &dyn Store) -> AppResult<()> {
    if store.matters().await?.is_empty() {
        let cat = Catalog::national()?;
        store
            .put_catalog(
                &cat.component_classes().cloned().collect::<Vec<_>>(),
                &cat.matters().cloned().collect::<Vec<_>>(),
            )
            .await?;
    }
    if store.calendar().await?.is_empty() {
        store.put_calendar(&parse_calendar_csv(CALENDAR_2026_CSV)?).await?;
    }
    Ok(())
}

/// Serves `store` on `listen` until Ctrl-C or SIGTERM; with `simulate`, the devices' telemetry is fed
/// in-process (the demo without a broker).
pub async fn serve(
    store: Arc<dyn Store>,
    cfg: &Config,
    listen: &str,
    simulate: bool,
    banner: impl FnOnce(&str),
) -> AppResult<()> {
    let http = HttpConfig {
        secure_cookies: cfg.secure_cookies,
        session_hours: cfg.session_hours,
        blobs: cfg.blob_storage(),
        map_tiles: Some(cfg.map_tiles.clone()).filter(|t| !t.is_empty()),
        open311_jurisdiction: Some(cfg.open311_jurisdiction.clone()).filter(|j| !j.is_empty()),
        trusted_proxies: civicgrid_http::auth::trusted_proxies(&cfg.trusted_proxies)?,
    };
    civicgrid_http::metrics::install();
    let state = AppState::new(store.clone(), Arc::new(SystemClock), http).await?;
    state.spawn_refresh(std::time::Duration::from_secs(2));
    state.spawn_jobs();
    if !cfg.mqtt.is_empty() {
        let mqtt = cfg.mqtt_config()?;
        tracing::info!(host = %mqtt.host, port = mqtt.port, client = %mqtt.client_id, "MQTT ingest starting");
        state.watch("mqtt ingest", civicgrid_ingest::spawn(state.services.clone(), mqtt));
    }
    if simulate {
        let every = std::time::Duration::from_secs(30);
        state.watch("simulated telemetry", simulate::feed(state.services.clone(), store, every));
    }
    let listener =
        tokio::net::TcpListener::bind(listen).await.map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    let addr = listener.local_addr()?;
    banner(&format!("http://{addr}"));
    let options = civicgrid_http::ServeOptions { max_connections: cfg.max_connections, ..Default::default() };
    let (fatal_tx, fatal_rx) = tokio::sync::oneshot::channel::<String>();
    let watched = state.clone();
    let stop = async move {
        tokio::select! {
            () = shutdown_signal() => {}
            why = watched.fatal() => {
                tracing::error!(reason = %why, "shutting down: the node cannot go on");
                let _ = fatal_tx.send(why);
            }
        }
    };
    civicgrid_http::serve_with(listener, state.clone(), options, stop).await?;
    state.stop_tasks();
    if let Ok(why) = fatal_rx.await {
        return Err(why.into());
    }
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutting down");
}

async fn run(cli: Cli) -> AppResult<()> {
    let mut cfg = Config::load(cli.config.as_deref())?;
    init_logging(&cfg.log, cfg.log_format);
    match cli.command {
        Command::Serve { database, listen } => {
            if let Some(d) = database {
                cfg.database = d;
            }
            if let Some(l) = listen {
                cfg.listen = l;
            }
            let store = civicgrid_store::open_with(&cfg.database, cfg.store_options()).await?;
            seed_reference(store.as_ref()).await?;
            let listen = cfg.listen.clone();
            serve(store, &cfg, &listen, false, |url| {
                println!("civicgrid serving {} on {url}", civicgrid_store::redact_url(&cfg.database))
            })
            .await
        }
        Command::Migrate { database } => {
            let database = database.unwrap_or(cfg.database.clone());
            let store = civicgrid_store::open_with(&database, cfg.store_options()).await?;
            seed_reference(store.as_ref()).await?;
            println!("migrated {}", civicgrid_store::redact_url(&database));
            Ok(())
        }
        Command::Demo(args) => demo::run(args, cfg).await,
        Command::Bench(args) => bench::run(args).await,
        Command::Simulate(args) => simulate::run(args, cfg).await,
        Command::User(cmd) => user_command(cmd, &cfg).await,
        Command::KpiRebuild { database } => {
            let store =
                civicgrid_store::open_with(database.as_deref().unwrap_or(&cfg.database), cfg.store_options()).await?;
            rebuild_kpis(store).await
        }
        Command::Backup { database, to } => {
            let database = database.unwrap_or_else(|| cfg.database.clone());
            backup(&database, &to, attachment_folder(&cfg, &database)).await
        }
        Command::Restore { from, database, force } => {
            let database = database.unwrap_or_else(|| cfg.database.clone());
            restore(&from, &database, force, attachment_folder(&cfg, &database)).await
        }
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run(Cli::parse()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("civicgrid: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
