//! civicgrid-demo: generates the demo town of `shared/README.md` — 28 workstations, 137 grids, 635
//! micro-grids, departments, thousands of components, an account for every post and a year of cases
//! — and writes it through the [`Store`] trait. Everything is deterministic in the seed.
//!
//! - [`layout`] — the map (polygons that tile the town).
//! - [`cases`] — a year of cases, each driven through the real state machine.
//! - [`names`] — made-up names.
//! - [`devices`] — the smart components' devices and the telemetry they would send.
//! - [`photos`] — generated JPEGs with the EXIF time and GPS position of a phone camera.

pub mod cases;
pub mod devices;
pub mod layout;
pub mod names;
pub mod photos;

use civicgrid_core::access::Role;
use civicgrid_core::calendar::{CALENDAR_2026_CSV, parse_calendar_csv};
use civicgrid_core::case::{Attachment, CaseId, GeoPoint};
use civicgrid_core::catalog::Catalog;
use civicgrid_core::codes::{ComponentClassCode, ComponentId, DivisionCode, TownCode};
use civicgrid_core::component::{Component, ComponentStatus};
use civicgrid_core::grid::Town;
use civicgrid_core::org::{Department, DeptCode};
use civicgrid_store::{ImportCase, NewUser, Store, StoreError, User};
use jiff::Timestamp;

pub use layout::{Counts, Layout};

/// County division of the demo town (Kunshan, Jiangsu).
pub const DIVISION: &str = "320583";
/// Town code of the demo town.
pub const TOWN_CODE: &str = "320583116";

/// What the demo generates.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Town size: 1.0 is the brief's town; 0.02 a tiny one for tests.
    pub scale: f64,
    /// Case volume: 1.0 is a year of ~550,000 cases; 0.0 none.
    pub case_scale: f64,
    /// Random seed; the same seed gives the same town.
    pub seed: u64,
    /// The end of the year of cases.
    pub now: Timestamp,
    /// Argon2 hash of the password shared by the demo accounts.
    pub demo_password_hash: String,
    /// Argon2 hash of the admin password.
    pub admin_password_hash: String,
}

/// Why the demo could not be written.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Embedded reference data failed to parse (a build defect).
    #[error("embedded reference data: {0}")]
    Reference(String),
}

/// The town's static data: map, departments, components.
#[derive(Debug, Clone)]
pub struct TownData {
    /// The town.
    pub town: Town,
    /// Map.
    pub layout: Layout,
    /// Departments.
    pub departments: Vec<Department>,
    /// Components.
    pub components: Vec<Component>,
    /// Code tables.
    pub catalog: Catalog,
}

fn code<T: std::str::FromStr>(s: &str) -> T
where
    T::Err: std::fmt::Debug,
{
    s.parse().unwrap_or_else(|e| panic!("demo constant {s:?} does not parse: {e:?}"))
}

/// Component classes the demo places, with their count at scale 1 and responsible department.
const COMPONENT_MIX: [(&str, usize, &str); 8] = [
    ("01037", 6000, "shizheng-lamp"), // street lamps
    ("01013", 1200, "fire"),          // hydrants
    ("01002", 3000, "shuiwu"),        // sewage manhole covers
    ("01001", 2000, "shuiwu"),        // water supply manhole covers
    ("01003", 2500, "shuiwu"),        // storm drain covers
    ("01005", 800, "gongdian"),       // power manhole covers
    ("03005", 2500, "huanwei"),       // litter bins
    ("03004", 300, "huanwei"),        // refuse rooms
];

/// Generates the town's static data.
pub fn town(opts: &DemoOptions) -> Result<TownData, DemoError> {
    let mut rng = fastrand::Rng::with_seed(opts.seed);
    let town_code: TownCode = code(TOWN_CODE);
    let division: DivisionCode = code(DIVISION);
    let layout = layout::generate(town_code, Counts::scaled(opts.scale), &mut rng);
    let departments = names::DEPARTMENTS
        .iter()
        .map(|(c, zh, en, parent)| Department {
            code: code(c),
            name_zh: (*zh).into(),
            name_en: (*en).into(),
            parent: parent.map(code),
        })
        .collect();
    let mut components = Vec::new();
    for (class, count, dept) in COMPONENT_MIX {
        let class: ComponentClassCode = code(class);
        let dept: DeptCode = code(dept);
        let n = ((count as f64 * opts.scale).round() as usize).max(1);
        for serial in 1..=n {
            let m = &layout.micro_grids[rng.usize(0..layout.micro_grids.len())];
            let p = layout::point_in(&m.polygon, 0.05 + rng.f64() * 0.9, 0.05 + rng.f64() * 0.9);
            let status = match rng.u32(0..100) {
                0..=2 => ComponentStatus::Damaged,
                3 => ComponentStatus::Missing,
                _ => ComponentStatus::Intact,
            };
            components.push(Component {
                id: ComponentId::new(division, class, serial as u32)
                    .map_err(|e| DemoError::Reference(e.to_string()))?,
                name: format!("{}{serial:05}", class_name(class)),
                status,
                location: GeoPoint { lon: p.x, lat: p.y },
                grid: m.grid(),
                micro_grid: m.code,
                department: dept.clone(),
            });
        }
    }
    Ok(TownData {
        town: Town { code: town_code, name_zh: "清源镇（演示）".into(), name_en: "Qingyuan Town (demo)".into() },
        layout,
        departments,
        components,
        catalog: Catalog::national().map_err(|e| DemoError::Reference(e.to_string()))?,
    })
}

fn class_name(c: ComponentClassCode) -> &'static str {
    match c.as_str() {
        "01037" => "路灯",
        "01013" => "消火栓",
        "01002" => "污水井盖",
        "01001" => "供水井盖",
        "01003" => "雨水井盖",
        "01005" => "电力井盖",
        "03005" => "垃圾箱",
        "03004" => "垃圾房",
        _ => "部件",
    }
}

/// The demo accounts (grid workers: one per grid, `gw001`, `gw002`, …).
pub fn accounts(data: &TownData, opts: &DemoOptions) -> Vec<NewUser> {
    let posts: [(&str, Role); 15] = [
        ("admin", Role::Admin),
        ("intake", Role::IntakeOperator),
        ("shift", Role::ShiftLeader),
        ("dispatch", Role::Dispatcher),
        ("commander", Role::Commander),
        ("coordinator", Role::Coordinator),
        ("analyst", Role::Analyst),
        ("supervisor", Role::Supervisor),
        ("hall", Role::HallClerk),
        ("commissioner", Role::EnterpriseCommissioner),
        ("citizen", Role::Citizen),
        ("leader", Role::Leader),
        ("intake2", Role::IntakeOperator),
        ("shift2", Role::ShiftLeader),
        ("dispatch2", Role::Dispatcher),
    ];
    let mut users: Vec<NewUser> = posts
        .iter()
        .enumerate()
        .map(|(i, (name, role))| NewUser {
            username: (*name).into(),
            display_name: format!("{}（{}）", names::person(i), role.label_zh()),
            role: *role,
            password_hash: if *role == Role::Admin {
                opts.admin_password_hash.clone()
            } else {
                opts.demo_password_hash.clone()
            },
            department: None,
            phone: Some(format!("1391234{:04}", i)),
            grids: Vec::new(),
        })
        .collect();
    for (i, d) in data.departments.iter().enumerate() {
        users.push(NewUser {
            username: format!("dept_{}", d.code),
            display_name: format!("{}（{}）", names::person(100 + i), d.name_zh),
            role: Role::DeptHandler,
            password_hash: opts.demo_password_hash.clone(),
            department: Some(d.code.clone()),
            phone: Some(format!("1381234{:04}", i)),
            grids: Vec::new(),
        });
    }
    for (i, g) in data.layout.grids.iter().enumerate() {
        users.push(NewUser {
            username: format!("gw{:03}", i + 1),
            display_name: format!("{}（网格员·{}）", names::person(200 + i), g.name_zh),
            role: Role::GridWorker,
            password_hash: opts.demo_password_hash.clone(),
            department: None,
            phone: Some(format!("1371234{:04}", i)),
            grids: vec![g.code],
        });
    }
    users
}

/// What a progress display is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// Static data written (map, departments, components, users).
    TownWritten,
    /// `done` of `total` cases written.
    Cases {
        /// Written so far.
        done: u64,
        /// To write.
        total: u64,
    },
}

/// Counts of what was written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    /// Workstations.
    pub workstations: usize,
    /// Grids.
    pub grids: usize,
    /// Micro-grids.
    pub micro_grids: usize,
    /// Components.
    pub components: usize,
    /// Users.
    pub users: usize,
    /// Cases.
    pub cases: u64,
}

/// Writes the whole demo town into an empty store, without uploaded photos.
pub async fn populate(
    store: &dyn Store,
    opts: &DemoOptions,
    progress: &(dyn Fn(Progress) + Sync),
) -> Result<Summary, DemoError> {
    let (data, users) = populate_town(store, opts).await?;
    progress(Progress::TownWritten);
    populate_cases(store, &data, &users, opts, None, progress).await
}

/// Stores an on-site photo the way an upload would (content checked, EXIF read, thumbnail made) as
/// the user `uploader`, and answers it as evidence.
pub trait PhotoStore: Send + Sync {
    /// Stores `jpeg` named `name`.
    fn store<'a>(
        &'a self,
        uploader: i64,
        name: &'a str,
        jpeg: Vec<u8>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Attachment, String>> + Send + 'a>>;
}

/// How many days before "now" the demo's photos are real uploaded files (older ones are described only:
/// a year of photos would be gigabytes).
pub const PHOTO_DAYS: i64 = 7;

/// Writes the town without its cases: reference data, map, departments, components, accounts,
/// routing rules and the duty roster; the town and the stored accounts.
pub async fn populate_town(store: &dyn Store, opts: &DemoOptions) -> Result<(TownData, Vec<User>), DemoError> {
    let mut data = town(opts)?;
    let classes: Vec<_> = data.catalog.component_classes().cloned().collect();
    let matters: Vec<_> = data.catalog.matters().cloned().collect();
    store.put_catalog(&classes, &matters).await?;
    let calendar = parse_calendar_csv(CALENDAR_2026_CSV).map_err(|e| DemoError::Reference(e.to_string()))?;
    store.put_calendar(&calendar).await?;
    store.put_town(&data.town).await?;
    let workstations: Vec<_> = data.layout.workstations.iter().map(|(w, _)| w.clone()).collect();
    store.put_workstations(&workstations).await?;
    store.put_departments(&data.departments).await?;
    let mut users = Vec::new();
    for u in accounts(&data, opts) {
        users.push(store.create_user(&u, None, opts.now).await?.value);
    }
    for g in &mut data.layout.grids {
        g.worker_user_id = users.iter().find(|u| u.grids == [g.code]).map(|u| u.id);
    }
    for m in &mut data.layout.micro_grids {
        m.worker_user_id = data.layout.grids.iter().find(|g| g.code == m.grid()).and_then(|g| g.worker_user_id);
    }
    store.put_grids(&data.layout.grids).await?;
    store.put_micro_grids(&data.layout.micro_grids).await?;
    store.put_components(&data.components).await?;
    for device in devices::devices(&data, opts.now) {
        store.put_device(&device).await?;
    }
    let rules = cases::routing_rules(data.layout.workstations.first().map(|(w, _)| w.code));
    let admin = users.iter().find(|u| u.role == civicgrid_core::access::Role::Admin).map_or(0, |u| u.id);
    store.put_routing_rules(&rules, admin, opts.now).await?;
    // The duty roster: four weeks back (the year's last weeks were worked by it) and five ahead.
    let today = civicgrid_core::calendar::local(opts.now).date();
    let (from, to) = (today - jiff::Span::new().days(27), today + jiff::Span::new().days(34));
    store.replace_roster(from, to, &cases::roster(&users, from, to)).await?;
    Ok((data, users))
}

/// Generates the year of cases into a store that holds the town; with `photos`, the on-site photos of
/// the last [`PHOTO_DAYS`] days are generated JPEGs (EXIF time and GPS at the case) stored through it.
pub async fn populate_cases(
    store: &dyn Store,
    data: &TownData,
    users: &[User],
    opts: &DemoOptions,
    photos: Option<&dyn PhotoStore>,
    progress: &(dyn Fn(Progress) + Sync),
) -> Result<Summary, DemoError> {
    let plan = cases::Plan::new(data, users, opts);
    let total = plan.total();
    let (tx, mut rx) = tokio::sync::mpsc::channel(2);
    let producer = tokio::task::spawn_blocking(move || plan.generate(|chunk| tx.blocking_send(chunk).is_ok()));
    let mut done = 0u64;
    // Each generated case's id, by its place in the generated order: a duplicate names its primary's.
    let mut ids: Vec<CaseId> = Vec::with_capacity(total as usize);
    let photos_from = opts.now - jiff::SignedDuration::from_hours(24 * PHOTO_DAYS);
    while let Some(mut chunk) = rx.recv().await {
        if let Some(photos) = photos {
            for g in chunk.iter_mut().filter(|g| g.case.facts.reported_at >= photos_from) {
                photos::upload_case_photos(&mut g.case, photos).await.map_err(DemoError::Reference)?;
            }
        }
        let first = ids.len();
        ids.resize(first + chunk.len(), 0);
        // Cases whose primary is stored go first; duplicates of a case in this chunk after it.
        let (ready, later): (Vec<_>, Vec<_>) =
            chunk.into_iter().enumerate().partition(|(_, g)| g.primary.is_none_or(|p| p < first));
        for part in [ready, later] {
            let (places, cases): (Vec<usize>, Vec<ImportCase>) = part
                .into_iter()
                .map(|(i, mut g)| {
                    if let Some(p) = g.primary {
                        g.resolve(ids[p]);
                    }
                    (first + i, g.case)
                })
                .unzip();
            if cases.is_empty() {
                continue;
            }
            let stored = store.import_cases(data.town.code, cases).await?;
            for (place, id) in places.into_iter().zip(stored) {
                ids[place] = id;
            }
        }
        done = ids.len() as u64;
        progress(Progress::Cases { done, total });
    }
    producer.await.map_err(|e| DemoError::Reference(format!("case generator failed: {e}")))?;
    Ok(Summary {
        workstations: data.layout.workstations.len(),
        grids: data.layout.grids.len(),
        micro_grids: data.layout.micro_grids.len(),
        components: data.components.len(),
        users: users.len(),
        cases: done,
    })
}

#[cfg(test)]
mod tests;
