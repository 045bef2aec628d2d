//! `civicgrid demo`: generate the demo town once (with a progress bar), print the logins, serve it.

use std::path::Path;
use std::time::Instant;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use civicgrid_core::case::Attachment;
use civicgrid_core::clock::SystemClock;
use civicgrid_demo::{DemoOptions, PhotoStore, Progress};
use civicgrid_service::{ServiceConfig, Services};
use civicgrid_store::postgres::PgStore;
use civicgrid_store::{Store, User};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};

use crate::config::Config;
use crate::{AppResult, seed_reference};

/// Password of the demo accounts unless `CIVICGRID_DEMO_PASSWORD` is set.
pub const DEFAULT_DEMO_PASSWORD: &str = "civicgrid-demo";

/// `civicgrid demo` options.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// SQLite path or postgres:// URL.
    #[arg(long, default_value = "./civicgrid-demo.db")]
    database: String,
    /// Throw away an existing demo database and generate again.
    #[arg(long)]
    fresh: bool,
    /// Town size: 1.0 is the brief's town (28 workstations, 137 grids, 635 micro-grids, ~550,000 cases).
    #[arg(long, default_value_t = 1.0)]
    scale: f64,
    /// Case volume if different from --scale (1.0 = a year of ~550,000 cases; 0 = none).
    #[arg(long)]
    case_scale: Option<f64>,
    /// Random seed; the same seed makes the same town.
    #[arg(long, default_value_t = 2026)]
    seed: u64,
    /// Address to serve on.
    #[arg(long)]
    listen: Option<String>,
    /// Generate and exit without serving.
    #[arg(long)]
    no_serve: bool,
    /// Take device telemetry from this MQTT broker (publish it with `civicgrid simulate`); without it the
    /// demo feeds its devices' telemetry in-process.
    #[arg(long)]
    mqtt: Option<String>,
}

fn is_postgres(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

async fn wipe(database: &str) -> AppResult<()> {
    if is_postgres(database) {
        PgStore::wipe(database).await?;
    } else {
        let path = database.strip_prefix("sqlite://").unwrap_or(database);
        for suffix in ["", "-wal", "-shm"] {
            let p = format!("{path}{suffix}");
            if Path::new(&p).exists() {
                std::fs::remove_file(&p)?;
            }
        }
        let files = format!("{path}.files");
        if Path::new(&files).is_dir() {
            std::fs::remove_dir_all(&files)?;
        }
    }
    Ok(())
}

/// Runs the demo command.
pub async fn run(args: DemoArgs, mut cfg: Config) -> AppResult<()> {
    // The demo's database is the one everything below (attachments included) works with.
    cfg.database = args.database.clone();
    if !(args.scale > 0.0 && args.scale <= 20.0) {
        return Err("--scale must be above 0 and at most 20".into());
    }
    if args.fresh {
        wipe(&args.database).await?;
    }
    let store = civicgrid_store::open_with(&args.database, cfg.store_options()).await?;
    let demo_password = std::env::var("CIVICGRID_DEMO_PASSWORD").unwrap_or_else(|_| DEFAULT_DEMO_PASSWORD.into());
    // A town with its accounts is a demo already made, with or without cases (`--case-scale 0`).
    let existing = store.town().await?.is_some() && !store.users().await?.is_empty();
    let admin_password = if existing {
        println!(
            "Using the demo town already in {} (pass --fresh to generate it again).",
            civicgrid_store::redact_url(&args.database)
        );
        None
    } else {
        let admin = match std::env::var("CIVICGRID_ADMIN_PASSWORD") {
            Ok(p) if !p.is_empty() => p,
            _ => civicgrid_http::auth::random_password().map_err(|e| format!("{e:?}"))?,
        };
        generate(store.clone(), &cfg, &args, &demo_password, &admin).await?;
        crate::rebuild_kpis(store.clone()).await?;
        Some(admin)
    };
    seed_reference(store.as_ref()).await?;
    if store.devices().await?.is_empty() {
        // A demo database made before the town had devices gets them now.
        let opts = DemoOptions {
            scale: args.scale,
            case_scale: 0.0,
            seed: args.seed,
            now: jiff::Timestamp::now(),
            demo_password_hash: String::new(),
            admin_password_hash: String::new(),
        };
        let town = civicgrid_demo::town(&opts)?;
        for device in civicgrid_demo::devices::devices(&town, opts.now) {
            store.put_device(&device).await?;
        }
    }
    print_logins(&demo_password, admin_password.as_deref());
    if args.no_serve {
        return Ok(());
    }
    if let Some(mqtt) = &args.mqtt {
        cfg.mqtt = mqtt.clone();
        cfg.mqtt_config()?;
    }
    let simulate = cfg.mqtt.is_empty();
    let listen = args.listen.clone().unwrap_or(cfg.listen.clone());
    crate::serve(store, &cfg, &listen, simulate, |url| {
        println!("\n  civicgrid demo is running: {url}\n  API docs: {url}/docs   (Ctrl-C to stop)\n");
    })
    .await
}

async fn generate(
    store: Arc<dyn Store>,
    cfg: &Config,
    args: &DemoArgs,
    demo_password: &str,
    admin: &str,
) -> AppResult<()> {
    let started = Instant::now();
    let (demo_hash, admin_hash) = (
        civicgrid_http::auth::hash_password(demo_password).map_err(|e| format!("{e:?}"))?,
        civicgrid_http::auth::hash_password(admin).map_err(|e| format!("{e:?}"))?,
    );
    let opts = DemoOptions {
        scale: args.scale,
        case_scale: args.case_scale.unwrap_or(args.scale),
        seed: args.seed,
        now: jiff::Timestamp::now(),
        demo_password_hash: demo_hash,
        admin_password_hash: admin_hash,
    };
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("{spinner} {msg} [{bar:40}] {pos}/{len} ({per_sec}, ETA {eta})")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_message("生成网格、部门、部件 town");
    let (data, users) = civicgrid_demo::populate_town(store.as_ref(), &opts).await?;
    bar.set_message("生成案卷 cases");
    // Recent photos go through the upload path, so they are stored, read and thumbnailed as a phone's.
    let config = ServiceConfig { session_hours: cfg.session_hours, blobs: cfg.blob_storage() };
    let services = Services::new(store.clone(), Arc::new(SystemClock), config).await?;
    let uploader = Uploader { services, users: users.clone() };
    let summary = civicgrid_demo::populate_cases(store.as_ref(), &data, &users, &opts, Some(&uploader), &|p| {
        if let Progress::Cases { done, total } = p {
            bar.set_length(total);
            bar.set_position(done);
        }
    })
    .await?;
    bar.finish_and_clear();
    println!(
        "Generated the demo town in {:.1} s: {} workstations, {} grids, {} micro-grids, {} components, {} users, {} cases.",
        started.elapsed().as_secs_f64(),
        summary.workstations,
        summary.grids,
        summary.micro_grids,
        summary.components,
        summary.users,
        summary.cases
    );
    Ok(())
}

/// The demo's photos, uploaded through the service as the people who took them.
struct Uploader {
    services: Services,
    users: Vec<User>,
}

impl PhotoStore for Uploader {
    fn store<'a>(
        &'a self,
        uploader: i64,
        name: &'a str,
        jpeg: Vec<u8>,
    ) -> Pin<Box<dyn Future<Output = Result<Attachment, String>> + Send + 'a>> {
        Box::pin(async move {
            let u = self.users.iter().find(|u| u.id == uploader).ok_or("a photo by an unknown user")?;
            let actor = civicgrid_service::accounts::actor_of(u);
            let stored = self.services.upload_attachment(&actor, name, jpeg).await.map_err(|e| e.to_string())?;
            Ok(stored.as_evidence())
        })
    }
}

fn print_logins(demo_password: &str, admin_password: Option<&str>) {
    println!("\n  Demo logins 演示账号 (POST /api/v1/auth/login):");
    match admin_password {
        Some(p) => println!("    {:<14} {:<10} password: {p}", "admin", "系统管理员"),
        None => println!("    {:<14} {:<10} password: as printed when the town was generated", "admin", "系统管理员"),
    }
    let posts = [
        ("intake", "受理员"),
        ("shift", "值班长"),
        ("dispatch", "派遣员"),
        ("dept_huanwei", "部门处置"),
        ("gw001", "网格员"),
        ("commander", "指挥长"),
        ("coordinator", "协调员"),
        ("analyst", "情报员"),
        ("supervisor", "督查员"),
        ("leader", "镇领导"),
        ("hall", "窗口人员"),
        ("commissioner", "企业专员"),
        ("citizen", "群众"),
    ];
    for (user, post) in posts {
        println!("    {user:<14} {post:<10} password: {demo_password}");
    }
    println!("    (every department has dept_<code>, e.g. dept_chengguan; every grid has a worker gw001, gw002, …;");
    println!("     the night team, by the roster: intake2, shift2, dispatch2 — the teams swap shifts weekly)");
}
