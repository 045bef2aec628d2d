//! civicgrid-store: everything civicgrid keeps, as one trait per aggregate — [`ReferenceStore`],
//! [`AccountStore`], [`CaseStore`], [`EventLog`] — gathered in [`Store`], and its two implementations,
//! [`sqlite::SqliteStore`] (embedded, the default) and [`postgres::PgStore`] (for a county, with several
//! stateless app nodes on one database).
//!
//! Both implementations share their SQL text and row mapping (see [`shared`]); what differs is the DDL
//! (`migrations/<backend>/`), connection setup and tuning. Case writes go through a group-commit writer
//! ([`writer`]): concurrent requests are batched into one transaction, so a 2xx reply means the case is
//! on disk, and SQLite never reports "database is locked".
//!
//! Every committed event also gets a number in the global [`EventLog`], in commit order; readers ask
//! for "everything after N" and wake on [`EventLog::committed`] (on PostgreSQL, other nodes' commits
//! arrive through `LISTEN/NOTIFY`).

use std::fmt;
use std::sync::Arc;

use civicgrid_core::access::{CaseScope, Role};
use civicgrid_core::calendar::CalendarEntry;
use civicgrid_core::case::{Case, CaseEvent, CaseFacts, CaseId, CaseState, CaseStatus, Source};
use civicgrid_core::catalog::{ComponentClass, Matter};
use civicgrid_core::codes::{ComponentClassCode, ComponentId, GridCode, MatterCode, TownCode};
use civicgrid_core::component::{Component, ComponentStatus};
use civicgrid_core::duty::{DutyEntry, Severity};
use civicgrid_core::grid::{Grid, MicroGrid, Town, Workstation};
use civicgrid_core::org::{Department, DeptCode};
use civicgrid_core::sla::SlaPolicy;
use jiff::Timestamp;
use jiff::civil::Date;
use serde::{Deserialize, Serialize};

mod batch;
mod gate;
pub mod postgres;
mod recent;
mod rows;
mod shared;
pub mod sqlite;
mod writer;

/// What the store layer can fail with.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The thing asked for does not exist.
    #[error("not found")]
    NotFound,
    /// An idempotency key was sent again with a different request.
    #[error("this idempotency key was used for a different request")]
    IdempotencyMismatch,
    /// Someone else changed the case first (optimistic concurrency).
    #[error("the case changed meanwhile (expected version {expected})")]
    Conflict {
        /// The version the caller based its change on.
        expected: i64,
    },
    /// A unique value is already taken.
    #[error("{field} is already taken")]
    Duplicate {
        /// Which value.
        field: &'static str,
    },
    /// A reference points at nothing (e.g. an unknown department).
    #[error("a referenced record does not exist")]
    BadReference,
    /// An event does not follow from the stored state (its sequence number or starting state is off).
    #[error("the event does not apply: {0}")]
    BadEvent(String),
    /// Stored data could not be decoded (a bug or a hand-edited database).
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// The URL names no supported backend.
    #[error("unsupported database URL (use a SQLite path or sqlite:// URL, or postgres://): {0}")]
    BadUrl(String),
    /// The database failed.
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    /// SQLite failed under the group-commit writer (which talks to SQLite through rusqlite).
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
    /// Migrations failed.
    #[error(transparent)]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The writer task has stopped (the server is shutting down).
    #[error("the store is shutting down")]
    Closed,
}

/// Store result.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Which backend a store runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Backend {
    /// Embedded SQLite.
    Sqlite,
    /// PostgreSQL.
    Postgres,
}

/// A user account.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct User {
    /// Id.
    pub id: i64,
    /// Login name.
    pub username: String,
    /// Name shown in the UI.
    pub display_name: String,
    /// Post.
    pub role: Role,
    /// Department (department handlers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub department: Option<DeptCode>,
    /// Phone (personal data).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    /// Grids (grid workers).
    #[serde(default)]
    pub grids: Vec<GridCode>,
    /// Argon2 PHC string; never serialised.
    #[serde(skip)]
    pub password_hash: String,
    /// When the account was disabled; it cannot log in while it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub disabled_at: Option<Timestamp>,
}

impl fmt::Debug for User {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("User")
            .field("id", &self.id)
            .field("username", &self.username)
            .field("role", &self.role)
            .field("password_hash", &"<redacted>")
            .finish_non_exhaustive()
    }
}

/// A user to create.
#[derive(Clone, PartialEq, Eq)]
pub struct NewUser {
    /// Login name.
    pub username: String,
    /// Name shown in the UI.
    pub display_name: String,
    /// Post.
    pub role: Role,
    /// Argon2 PHC string.
    pub password_hash: String,
    /// Department.
    pub department: Option<DeptCode>,
    /// Phone.
    pub phone: Option<String>,
    /// Grids.
    pub grids: Vec<GridCode>,
}

impl fmt::Debug for NewUser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewUser").field("username", &self.username).field("role", &self.role).finish_non_exhaustive()
    }
}

/// A case to create: its facts and the report event (see `CaseStatus::report`); the store derives the
/// initial status from the event itself.
#[derive(Debug, Clone)]
pub struct NewCase {
    /// The town whose code prefixes the case number.
    pub town: TownCode,
    /// Facts.
    pub facts: CaseFacts,
    /// The report event.
    pub event: CaseEvent,
    /// The client's idempotency key: a second request with the same key gets the first case back.
    pub idempotency: Option<IdempotencyKey>,
}

/// A creating request's idempotency key, kept with what it created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey {
    /// Whose key (`user:7`, `svc:3`): keys of different callers never meet.
    pub scope: String,
    /// The key the client sent (`Idempotency-Key`, an upstream ticket number).
    pub key: String,
    /// A digest of the request, to refuse the same key reused for a different request.
    pub fingerprint: String,
}

/// What a creating request made, and whether an earlier request with the same idempotency key made
/// it (then it is returned again rather than made twice).
#[derive(Debug, Clone, PartialEq)]
pub struct Created<T = Case> {
    /// The case (or other record) created.
    pub value: T,
    /// True when this is the first request's result, returned again.
    pub replayed: bool,
}

/// Which aggregate an entry of the global event log belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Stream {
    /// A case (案卷).
    Case,
    /// An alarm of the smart components (告警).
    Alarm,
}

impl Stream {
    /// The name stored in `event_log.stream`.
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Case => "case",
            Stream::Alarm => "alarm",
        }
    }
}

/// A case event as the log's readers within the service take it: its number in the log, its case, and
/// the event (shared: the same event may be held by the store's memory of recent commits).
#[derive(Debug, Clone, PartialEq)]
pub struct CaseLogEntry {
    /// Global sequence number, increasing in commit order.
    pub seq: i64,
    /// The case.
    pub case_id: CaseId,
    /// The event.
    pub event: std::sync::Arc<CaseEvent>,
}

/// One entry of the global event log, with what a reader needs to decide who may see it.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct LogEntry {
    /// Global sequence number, increasing in commit order.
    pub seq: i64,
    /// The aggregate.
    pub stream: Stream,
    /// The case.
    #[schema(value_type = i64)]
    pub case_id: CaseId,
    /// The case number.
    pub number: String,
    /// The case's grid.
    pub grid: GridCode,
    /// The case's lead department now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lead_dept: Option<DeptCode>,
    /// The case's co-departments now.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub co_depts: Vec<DeptCode>,
    /// The reporting user.
    #[serde(skip)]
    pub reporter_user_id: Option<i64>,
    /// The event.
    pub event: CaseEvent,
}

impl LogEntry {
    /// The parts that decide who may see this entry.
    pub fn scope_key(&self) -> civicgrid_core::access::CaseScopeKey<'_> {
        civicgrid_core::access::CaseScopeKey {
            grid: self.grid,
            lead: self.lead_dept.as_ref(),
            co: &self.co_depts,
            reporter: self.reporter_user_id,
        }
    }
}

/// One change of an alarm in the global event log.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct AlarmLogEntry {
    /// Global sequence number, increasing in commit order.
    pub seq: i64,
    /// The aggregate (always `alarm`).
    pub stream: Stream,
    /// What happened: `raised`, `repeated`, `cleared`, `acknowledged`, `case`, `ended`, ….
    pub note: String,
    /// The alarm as the change left it.
    pub alarm: civicgrid_core::alarm::Alarm,
}

/// An entry of the live feed: a case's event or an alarm's change, in global order.
#[derive(Debug, Clone, PartialEq)]
#[allow(clippy::large_enum_variant)] // read a page at a time and shared behind an Arc, never kept in bulk
pub enum FeedEntry {
    /// A case event.
    Case(LogEntry),
    /// An alarm change.
    Alarm(AlarmLogEntry),
}

impl FeedEntry {
    /// Its global sequence number.
    pub fn seq(&self) -> i64 {
        match self {
            FeedEntry::Case(e) => e.seq,
            FeedEntry::Alarm(e) => e.seq,
        }
    }
}

/// A whole historical case for bulk import (demo data, migrations from older systems).
#[derive(Debug, Clone)]
pub struct ImportCase {
    /// Facts.
    pub facts: CaseFacts,
    /// Every event, report first.
    pub events: Vec<CaseEvent>,
    /// The status the events replay to.
    pub status: CaseStatus,
}

/// A box of longitudes and latitudes (WGS84 degrees), for "cases near here".
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Area {
    /// Smallest longitude.
    pub west: f64,
    /// Largest longitude.
    pub east: f64,
    /// Smallest latitude.
    pub south: f64,
    /// Largest latitude.
    pub north: f64,
}

impl Area {
    /// The box that holds every point within `metres` of `centre` (a little more near its corners:
    /// callers measure the real distance of what it finds).
    pub fn around(centre: civicgrid_core::case::GeoPoint, metres: f64) -> Area {
        const METRES_PER_DEGREE: f64 = 111_320.0;
        let dlat = metres / METRES_PER_DEGREE;
        let dlon = metres / (METRES_PER_DEGREE * centre.lat.to_radians().cos().max(0.01));
        Area { west: centre.lon - dlon, east: centre.lon + dlon, south: centre.lat - dlat, north: centre.lat + dlat }
    }
}

/// Filters for listing cases. Empty vectors and `None` mean "any".
#[derive(Debug, Clone, Default)]
pub struct CaseFilter {
    /// In any of these grids.
    pub grids: Vec<GridCode>,
    /// Of this matter.
    pub matter: Option<MatterCode>,
    /// In any of these states.
    pub states: Vec<CaseState>,
    /// Assigned (lead or co) to this department.
    pub department: Option<DeptCode>,
    /// From this source.
    pub source: Option<Source>,
    /// Reported at or after.
    pub reported_from: Option<Timestamp>,
    /// Reported before.
    pub reported_to: Option<Timestamp>,
    /// Only cases whose current step is overdue at this instant.
    pub overdue_at: Option<Timestamp>,
    /// Closed at or after.
    pub closed_from: Option<Timestamp>,
    /// Closed before.
    pub closed_to: Option<Timestamp>,
    /// Only cases escalated (督办) at least once.
    pub escalated: bool,
    /// About this component.
    pub component: Option<ComponentId>,
    /// Located inside this box.
    pub within: Option<Area>,
    /// Merged into this primary case.
    pub merged_into: Option<civicgrid_core::case::CaseId>,
    /// Reported by this user (a grid worker's own reports).
    pub reporter: Option<i64>,
    /// What the asking actor may see.
    pub scope: Option<CaseScope>,
}

/// A keyset page request: items with id below `before`, newest first.
#[derive(Debug, Clone, Copy)]
pub struct PageRequest {
    /// Exclusive upper bound on the id (the `next` of the previous page).
    pub before: Option<i64>,
    /// Page size (1–500).
    pub limit: u32,
}

/// One page of results.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Page<T> {
    /// The items.
    pub items: Vec<T>,
    /// Pass as `before` to get the next page; absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<i64>,
}

/// Filters for listing components.
#[derive(Debug, Clone, Default)]
pub struct ComponentFilter {
    /// In this grid.
    pub grid: Option<GridCode>,
    /// Of this class.
    pub class: Option<ComponentClassCode>,
    /// With this status.
    pub status: Option<ComponentStatus>,
    /// Components with id greater than this (ascending keyset).
    pub after: Option<ComponentId>,
    /// Page size.
    pub limit: u32,
}

/// Reference data: code tables, calendar, the town's map, departments and components.
#[async_trait::async_trait]
pub trait ReferenceStore: Send + Sync {
    /// The reference data's version: it moves with every change to the town, its micro-grids, the
    /// departments, the catalogue, the calendar or a settings document, whoever made it (a trigger
    /// counts), so a node can tell cheaply whether its snapshot is stale.
    async fn world_version(&self) -> Result<i64>;
    /// Replaces the component-class and matter tables.
    async fn put_catalog(&self, classes: &[ComponentClass], matters: &[Matter]) -> Result<()>;
    /// All component classes in code order.
    async fn component_classes(&self) -> Result<Vec<ComponentClass>>;
    /// All matters in code order.
    async fn matters(&self) -> Result<Vec<Matter>>;
    /// Adds or replaces working-calendar rows.
    async fn put_calendar(&self, entries: &[CalendarEntry]) -> Result<()>;
    /// All working-calendar rows in date order.
    async fn calendar(&self) -> Result<Vec<CalendarEntry>>;
    /// The SLA policy an administrator set, if any.
    async fn sla_policy(&self) -> Result<Option<SlaPolicy>>;
    /// Replaces the SLA policy; `by` is the administrator.
    async fn put_sla_policy(&self, policy: &SlaPolicy, by: i64, now: Timestamp) -> Result<()>;
    /// The 110 diversion catalogue an administrator set, if any.
    async fn diversion_catalogue(&self) -> Result<Option<civicgrid_core::ticket::DiversionCatalogue>>;
    /// Replaces the 110 diversion catalogue; `by` is the administrator.
    async fn put_diversion_catalogue(
        &self,
        catalogue: &civicgrid_core::ticket::DiversionCatalogue,
        by: i64,
        now: Timestamp,
    ) -> Result<()>;
    /// Where each upstream service account wants its replies (account id → hook).
    async fn reply_hooks(&self) -> Result<std::collections::BTreeMap<i64, ReplyHook>>;
    /// Replaces the reply hooks; `by` is the administrator.
    async fn put_reply_hooks(
        &self,
        hooks: &std::collections::BTreeMap<i64, ReplyHook>,
        by: i64,
        now: Timestamp,
    ) -> Result<()>;
    /// The smart components' rules an administrator set, if any.
    async fn alarm_rules(&self) -> Result<Option<civicgrid_core::alarm::RuleSet>>;
    /// Replaces the smart components' rules; `by` is the administrator.
    async fn put_alarm_rules(&self, rules: &civicgrid_core::alarm::RuleSet, by: i64, now: Timestamp) -> Result<()>;
    /// The routing rules an administrator set, if any.
    async fn routing_rules(&self) -> Result<Option<civicgrid_core::routing::RoutingTable>>;
    /// Replaces the routing rules; `by` is the administrator.
    async fn put_routing_rules(
        &self,
        table: &civicgrid_core::routing::RoutingTable,
        by: i64,
        now: Timestamp,
    ) -> Result<()>;

    /// Sets the town.
    async fn put_town(&self, town: &Town) -> Result<()>;
    /// The town, once set.
    async fn town(&self) -> Result<Option<Town>>;
    /// Adds or replaces workstations.
    async fn put_workstations(&self, items: &[Workstation]) -> Result<()>;
    /// All workstations in code order.
    async fn workstations(&self) -> Result<Vec<Workstation>>;
    /// Adds or replaces grids.
    async fn put_grids(&self, items: &[Grid]) -> Result<()>;
    /// All grids in code order.
    async fn grids(&self) -> Result<Vec<Grid>>;
    /// Adds or replaces micro-grids.
    async fn put_micro_grids(&self, items: &[MicroGrid]) -> Result<()>;
    /// All micro-grids in code order.
    async fn micro_grids(&self) -> Result<Vec<MicroGrid>>;
    /// Adds or replaces departments.
    async fn put_departments(&self, items: &[Department]) -> Result<()>;
    /// All departments in code order.
    async fn departments(&self) -> Result<Vec<Department>>;

    /// Adds or replaces components.
    async fn put_components(&self, items: &[Component]) -> Result<()>;
    /// One component.
    async fn component(&self, id: ComponentId) -> Result<Option<Component>>;
    /// The components of `ids` that exist, in id order, read in one query per 500 ids.
    async fn components_by_ids(&self, ids: &[ComponentId]) -> Result<Vec<Component>>;
    /// Components in ascending id order.
    async fn list_components(&self, filter: &ComponentFilter) -> Result<Vec<Component>>;
}

/// Accounts and their sessions.
#[async_trait::async_trait]
pub trait AccountStore: Send + Sync {
    /// Creates a user; `Duplicate` if the username is taken. With an idempotency key, a repeat of the
    /// same request returns the first user instead (`replayed`). `now` is its creation time.
    async fn create_user(&self, user: &NewUser, key: Option<&IdempotencyKey>, now: Timestamp) -> Result<Created<User>>;
    /// A user by login name.
    async fn user_by_username(&self, username: &str) -> Result<Option<User>>;
    /// A user by id.
    async fn user(&self, id: i64) -> Result<Option<User>>;
    /// All users in id order.
    async fn users(&self) -> Result<Vec<User>>;
    /// Stores a session token's hash.
    async fn create_session(&self, token_hash: &str, user_id: i64, now: Timestamp, expires_at: Timestamp)
    -> Result<()>;
    /// The user of a live session.
    async fn session_user(&self, token_hash: &str, now: Timestamp) -> Result<Option<User>>;
    /// Ends a session.
    async fn delete_session(&self, token_hash: &str) -> Result<()>;
    /// Deletes sessions that ended before `now`; how many.
    async fn purge_sessions(&self, now: Timestamp) -> Result<u64>;
    /// Ends every session of a user; how many.
    async fn delete_user_sessions(&self, user_id: i64) -> Result<u64>;
    /// Disables (`Some`) or re-enables (`None`) an account; disabling ends its sessions. Whether it exists.
    async fn set_user_disabled(&self, user_id: i64, at: Option<Timestamp>) -> Result<bool>;
    /// Replaces a password hash and ends the user's sessions but `keep_session` (a token hash).
    async fn set_password_hash(&self, user_id: i64, hash: &str, keep_session: Option<&str>) -> Result<bool>;
}

/// What [`ThrottleStore::take_slot`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    /// The use was recorded.
    Taken,
    /// The window was full and nothing was recorded; `earliest` is the oldest use in it, so the window
    /// frees a slot at `earliest` + its length.
    Full {
        /// The oldest use in the window.
        earliest: Timestamp,
    },
}

/// Sliding-window throttles that every node on the database shares (log-in attempts per address,
/// wrong passwords per username, the public pages' uses per address): a use is a row, so a limit holds
/// for the cluster, not once per node.
#[async_trait::async_trait]
pub trait ThrottleStore: Send + Sync {
    /// Records a use of `key` in `scope` at `now` if fewer than `limit` uses were recorded after
    /// `since`. Two nodes taking the last slot at once: one gets it.
    async fn take_slot(&self, scope: &str, key: &str, limit: u32, since: Timestamp, now: Timestamp) -> Result<Slot>;
    /// How many uses of `key` in `scope` were recorded after `since`, and the oldest of them.
    async fn uses(&self, scope: &str, key: &str, since: Timestamp) -> Result<(u32, Option<Timestamp>)>;
    /// Records a use with no limit (a wrong password: it is counted whatever the count).
    async fn record_use(&self, scope: &str, key: &str, at: Timestamp) -> Result<()>;
    /// Forgets every use of `key` in `scope`; whether there was any.
    async fn forget_uses(&self, scope: &str, key: &str) -> Result<bool>;
    /// Deletes the uses recorded before `before`; how many.
    async fn purge_uses(&self, before: Timestamp) -> Result<u64>;
}

/// Cases: their current rows and their event histories.
#[async_trait::async_trait]
pub trait CaseStore: Send + Sync {
    /// Creates a case; its number and id are assigned, and its status derived from the report event,
    /// here. Durable when this returns.
    async fn create_case(&self, new: NewCase) -> Result<Case>;
    /// Like [`CaseStore::create_case`], but says whether the case came back for a repeated
    /// idempotency key (created by an earlier request) rather than being created now.
    async fn create_case_once(&self, new: NewCase) -> Result<Created>;
    /// The case an earlier report with this idempotency key created, if any; `IdempotencyMismatch` if
    /// the key was used for a different report. (A retry is answered before its attachments, which
    /// the first report linked to its case, are checked again.)
    async fn case_made_by(&self, key: &IdempotencyKey) -> Result<Option<Case>>;
    /// Deletes idempotency keys recorded before `before`; how many.
    async fn purge_idempotency(&self, before: Timestamp) -> Result<u64>;
    /// Appends `event` to case `id` if the case is still at `expected_version`, folds it into the
    /// stored status and returns the new status; `Conflict` if the case moved on meanwhile.
    async fn append(&self, id: CaseId, expected_version: i64, event: CaseEvent) -> Result<CaseStatus>;
    /// One case.
    async fn case(&self, id: CaseId) -> Result<Option<Case>>;
    /// One case by its number.
    async fn case_by_number(&self, number: &str) -> Result<Option<Case>>;
    /// A case's events in order.
    async fn case_events(&self, id: CaseId) -> Result<Vec<CaseEvent>>;
    /// Cases matching a filter, newest first.
    async fn list_cases(&self, filter: &CaseFilter, page: PageRequest) -> Result<Page<Case>>;
    /// Number of cases.
    async fn count_cases(&self) -> Result<i64>;
    /// Number of cases matching a filter, counted up to `cap` (a queue's badge shows "999+" rather
    /// than scan a year of closed cases).
    async fn count_matching(&self, filter: &CaseFilter, cap: u32) -> Result<i64>;
    /// The open cases ([`CaseState::ACTIVE`]: neither closed, void nor merged), newest first, at most `limit`: the light
    /// columns a cockpit map and its tallies need, read from the state index without the JSON.
    async fn open_cases(&self, limit: u32) -> Result<Vec<OpenCase>>;
    /// Bulk-imports historical cases in one transaction; numbers are assigned per reported day. The
    /// new cases' ids, in the order given.
    async fn import_cases(&self, town: TownCode, cases: Vec<ImportCase>) -> Result<Vec<CaseId>>;
}

/// An open case as a big screen draws it: where it is, what and how late, nothing personal.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct OpenCase {
    /// The case.
    #[schema(value_type = i64)]
    pub id: CaseId,
    /// Its number.
    pub number: String,
    /// Its grid.
    pub grid: GridCode,
    /// Its matter.
    pub matter: MatterCode,
    /// Where it came from.
    pub source: Source,
    /// Where it stands.
    pub state: CaseState,
    /// The lead department, once dispatched.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lead_dept: Option<DeptCode>,
    /// Longitude, if it was placed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lon: Option<f64>,
    /// Latitude, if it was placed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lat: Option<f64>,
    /// When it was reported.
    #[schema(value_type = String)]
    pub reported_at: Timestamp,
    /// The current step's deadline.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub due_at: Option<Timestamp>,
    /// 督办 rungs reached.
    pub escalation_level: i64,
    /// Whether it is about a component (部件).
    pub component: bool,
}

/// A service account: an outside system bound to one channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ServiceAccount {
    /// Id.
    pub id: i64,
    /// Name, e.g. `hotline-suzhou`.
    pub name: String,
    /// The channel it reports on.
    pub channel: civicgrid_core::access::Channel,
    /// When it was created.
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    /// When it was disabled; its keys then stop working.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub disabled_at: Option<Timestamp>,
}

/// Where an upstream system (12345, 110) takes replies to its tickets: a URL, and the secret the
/// replies are signed with (HMAC-SHA256, as the outbound webhooks).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplyHook {
    /// Where replies are posted.
    pub url: String,
    /// Signing secret; never answered back.
    pub secret: String,
}

impl fmt::Debug for ReplyHook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReplyHook").field("url", &self.url).field("secret", &"<redacted>").finish()
    }
}

/// An API key as shown after it was issued: never the key itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ApiKeyInfo {
    /// Id.
    pub id: i64,
    /// The service account.
    pub account_id: i64,
    /// The key's public prefix, to tell keys apart (`cgk_1a2b3c4d`).
    pub prefix: String,
    /// When it was issued.
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    /// When it was last used (to the minute).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_used_at: Option<Timestamp>,
    /// When it was revoked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub revoked_at: Option<Timestamp>,
}

/// Service accounts and their API keys.
#[async_trait::async_trait]
pub trait IntegrationStore: Send + Sync {
    /// Creates a service account; `Duplicate` if the name is taken. With an idempotency key, a repeat
    /// of the same request returns the first account instead (`replayed`).
    async fn create_service_account(
        &self,
        name: &str,
        channel: civicgrid_core::access::Channel,
        now: Timestamp,
        key: Option<&IdempotencyKey>,
    ) -> Result<Created<ServiceAccount>>;
    /// Every service account in id order.
    async fn service_accounts(&self) -> Result<Vec<ServiceAccount>>;
    /// Disables or re-enables a service account; whether it exists.
    async fn set_service_account_disabled(&self, id: i64, disabled_at: Option<Timestamp>) -> Result<bool>;
    /// Stores a new key's hash for an account; `BadReference` if there is no such account. With an
    /// idempotency key, a repeat of the same request returns the first key's record instead
    /// (`replayed`; the secret itself was shown once and is not kept).
    async fn add_api_key(
        &self,
        account_id: i64,
        prefix: &str,
        key_hash: &str,
        now: Timestamp,
        key: Option<&IdempotencyKey>,
    ) -> Result<Created<ApiKeyInfo>>;
    /// The keys of an account, newest first.
    async fn api_keys(&self, account_id: i64) -> Result<Vec<ApiKeyInfo>>;
    /// Revokes a key; whether a live key was revoked.
    async fn revoke_api_key(&self, key_id: i64, now: Timestamp) -> Result<bool>;
    /// The enabled account and live key a key hash belongs to.
    async fn api_key_account(&self, key_hash: &str) -> Result<Option<(ServiceAccount, ApiKeyInfo)>>;
    /// Records that a key was used.
    async fn touch_api_key(&self, key_id: i64, now: Timestamp) -> Result<()>;
}

/// An uploaded file's metadata, as stored.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct StoredAttachment {
    /// Id (0 before it is stored).
    pub id: i64,
    /// Hex SHA-256 of the content.
    pub sha256: String,
    /// File name as uploaded.
    pub name: String,
    /// Content type, from the content itself (not the client's word).
    pub mime: String,
    /// Size in bytes.
    pub size: u64,
    /// Who uploaded it (`user:7`, `svc:3`).
    #[serde(skip)]
    pub uploaded_by: String,
    /// When it was uploaded.
    #[schema(value_type = String, format = DateTime)]
    pub uploaded_at: Timestamp,
    /// When the photo was taken (EXIF).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub taken_at: Option<Timestamp>,
    /// Where the photo was taken (EXIF GPS, WGS84).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<civicgrid_core::case::GeoPoint>,
    /// Image width in pixels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub width: Option<u32>,
    /// Image height in pixels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub height: Option<u32>,
    /// SHA-256 of the thumbnail, for images.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thumb_sha256: Option<String>,
    /// The case it belongs to, once a report or transition named it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub case_id: Option<CaseId>,
}

impl StoredAttachment {
    /// The attachment as a report or a step names it (evidence): id, name, type, size, hash and photo time.
    pub fn as_evidence(self) -> civicgrid_core::case::Attachment {
        civicgrid_core::case::Attachment {
            id: Some(self.id),
            name: self.name,
            mime: self.mime,
            size: self.size,
            sha256: Some(self.sha256),
            taken_at: self.taken_at,
        }
    }
}

/// Uploaded files: their metadata and, when the database keeps the content, the bytes.
#[async_trait::async_trait]
pub trait AttachmentStore: Send + Sync {
    /// Stores an attachment's metadata (its `id` is assigned here).
    async fn insert_attachment(&self, a: &StoredAttachment) -> Result<StoredAttachment>;
    /// Like [`AttachmentStore::insert_attachment`], once per idempotency key: a repeated key returns the
    /// first upload (`replayed`), a key used for something else is `IdempotencyMismatch`.
    async fn insert_attachment_once(
        &self,
        a: &StoredAttachment,
        key: &IdempotencyKey,
    ) -> Result<Created<StoredAttachment>>;
    /// One attachment.
    async fn attachment(&self, id: i64) -> Result<Option<StoredAttachment>>;
    /// The attachments of a case, in upload order.
    async fn case_attachments(&self, case_id: CaseId) -> Result<Vec<StoredAttachment>>;
    /// Keeps content in the database (several app nodes share it); a no-op if it is there already.
    async fn put_blob(&self, sha256: &str, content: &[u8]) -> Result<()>;
    /// Content kept in the database.
    async fn blob(&self, sha256: &str) -> Result<Option<Vec<u8>>>;
}

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Waiting for its time.
    Pending,
    /// Claimed by a runner whose lease has not run out.
    Running,
    /// Done.
    Done,
    /// Failed too often; kept for an operator to look at (dead letter).
    Dead,
}

impl JobState {
    /// The name stored in `jobs.state`.
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Pending => "pending",
            JobState::Running => "running",
            JobState::Done => "done",
            JobState::Dead => "dead",
        }
    }
}

impl std::str::FromStr for JobState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        [JobState::Pending, JobState::Running, JobState::Done, JobState::Dead]
            .into_iter()
            .find(|j| j.as_str() == s)
            .ok_or_else(|| format!("unknown job state {s:?}"))
    }
}

/// A job to enqueue.
#[derive(Debug, Clone, PartialEq)]
pub struct NewJob {
    /// What to do (the runner's handler name), e.g. `purge_sessions`, `case.escalate`.
    pub kind: String,
    /// The effect's key: one job per key, ever (e.g. `case.escalate:42:v7`).
    pub effect_key: String,
    /// The handler's input.
    pub payload: serde_json::Value,
    /// Not before.
    pub run_at: Timestamp,
    /// Attempts before the job is dead.
    pub max_attempts: u32,
}

/// A stored job.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Job {
    /// Id.
    pub id: i64,
    /// Handler name.
    pub kind: String,
    /// The effect's key.
    pub effect_key: String,
    /// The handler's input.
    #[schema(value_type = Object)]
    pub payload: serde_json::Value,
    /// State.
    pub state: JobState,
    /// Not before (the next retry, for a failed one).
    #[schema(value_type = String, format = DateTime)]
    pub run_at: Timestamp,
    /// Attempts so far (including a running one).
    pub attempts: u32,
    /// Attempts allowed.
    pub max_attempts: u32,
    /// The last failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// Jobs per state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct JobCounts {
    /// Waiting.
    pub pending: i64,
    /// Claimed.
    pub running: i64,
    /// Dead letters.
    pub dead: i64,
}

/// Durable jobs with leases: claimed by one runner at a time, retried with backoff, dead after too
/// many failures.
#[async_trait::async_trait]
pub trait JobStore: Send + Sync {
    /// Enqueues a job (at `now`) unless one with the same effect key exists; whether it was new.
    async fn enqueue(&self, job: &NewJob, now: Timestamp) -> Result<bool>;
    /// Enqueues `jobs` (each unless a job with its effect key exists) in one transaction, and with
    /// `reader = Some((name, position))` records in it that the log reader `name` has handled the log
    /// up to `position` (never moving it back): a reader that turns log entries into jobs commits once
    /// per read, not once per job. How many jobs were new.
    async fn enqueue_many(&self, jobs: &[NewJob], reader: Option<(&str, i64)>, now: Timestamp) -> Result<u64>;
    /// Claims up to `limit` jobs due at `now` (pending, or running with a lapsed lease) for `owner`
    /// until `now + lease`; each claim counts an attempt.
    async fn claim_jobs(
        &self,
        owner: &str,
        now: Timestamp,
        lease: jiff::SignedDuration,
        limit: u32,
    ) -> Result<Vec<Job>>;
    /// Marks a claimed job done, if `owner` still holds it; whether it did.
    async fn complete_job(&self, id: i64, owner: &str, now: Timestamp) -> Result<bool>;
    /// Records a failure of a claimed job: pending again at `retry_at`, or dead when `None`.
    async fn fail_job(
        &self,
        id: i64,
        owner: &str,
        now: Timestamp,
        error: &str,
        retry_at: Option<Timestamp>,
    ) -> Result<bool>;
    /// A job by effect key.
    async fn job(&self, effect_key: &str) -> Result<Option<Job>>;
    /// Jobs per state.
    async fn job_counts(&self) -> Result<JobCounts>;
}

/// The global event log: every committed event, numbered in commit order.
#[async_trait::async_trait]
pub trait EventLog: Send + Sync {
    /// Up to `limit` (1–1000) entries with a sequence number above `after`, in order. Reading "after
    /// the last one seen" again and again never misses an entry, whatever node committed it.
    async fn events_after(&self, after: i64, limit: u32) -> Result<Vec<LogEntry>>;
    /// Up to `limit` (1–1000) case events with a sequence number above `after`, in order, without the
    /// case's current fields: exactly what [`EventLog::events_after`] would list, read from this
    /// process's memory of its own recent commits while they run on unbroken from `after`, and from
    /// the database otherwise. What the log readers of the job runner take.
    async fn case_log_after(&self, after: i64, limit: u32) -> Result<Vec<CaseLogEntry>>;
    /// Up to `limit` (1–1000) entries of every stream the live feed carries (case events and alarm
    /// changes) with a sequence number above `after`, in order, read in one statement: like
    /// [`EventLog::events_after`], reading "after the last one seen" again and again misses nothing.
    async fn feed_after(&self, after: i64, limit: u32) -> Result<Vec<FeedEntry>>;
    /// The highest sequence number committed so far.
    async fn last_seq(&self) -> Result<i64>;
    /// The highest sequence number of a case event (what [`EventLog::events_after`] reads up to), 0 if
    /// none: how far a reader of case events can get, though alarms' entries may follow it.
    async fn last_case_seq(&self) -> Result<i64>;
    /// The first entry's sequence number at or after `at` (by the time of its event), if any: where a
    /// reader of "everything since a time" starts.
    async fn first_seq_since(&self, at: Timestamp) -> Result<Option<i64>>;
    /// How far the reader `name` has handled the log; `None` before its first run.
    async fn consumer_position(&self, name: &str) -> Result<Option<i64>>;
    /// Records that `name` has handled the log up to `position` (a position never moves back).
    async fn advance_consumer(&self, name: &str, position: i64) -> Result<()>;
    /// Changes whenever this node commits events, or (PostgreSQL) another node announces a commit;
    /// holds a sequence number at or below the newest one. A hint to read again, never the data.
    fn committed(&self) -> tokio::sync::watch::Receiver<i64>;
}

/// A notification in someone's inbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Notification {
    /// Id.
    pub id: i64,
    /// The recipient.
    pub user_id: i64,
    /// What happened (`sla_warning`, `sla_breach`, `escalation`, `unacknowledged`, …).
    pub kind: String,
    /// How much it matters.
    pub severity: Severity,
    /// The case concerned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub case_id: Option<CaseId>,
    /// One line.
    pub title: String,
    /// Details.
    pub body: String,
    /// When it was made.
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    /// When the recipient opened it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub read_at: Option<Timestamp>,
    /// When the recipient acknowledged it (critical notifications escalate until someone does).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub acked_at: Option<Timestamp>,
}

/// A notification to put in one or more inboxes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewNotification {
    /// Makes it once per recipient, however often it is sent (e.g. `sla:42:1700000000:warn`).
    pub dedup_key: String,
    /// What happened.
    pub kind: String,
    /// How much it matters.
    pub severity: Severity,
    /// The case concerned.
    pub case_id: Option<CaseId>,
    /// One line.
    pub title: String,
    /// Details.
    pub body: String,
    /// When.
    pub created_at: Timestamp,
}

/// The kind of an outbound channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ChannelKind {
    /// A generic webhook: JSON, signed with HMAC-SHA256 in `X-Civicgrid-Signature`.
    Webhook,
    /// A WeCom (企业微信) group robot.
    Wecom,
    /// A DingTalk (钉钉) group robot, signed as DingTalk specifies.
    Dingtalk,
    /// An SMS gateway taking JSON (recipients' phones and the text).
    Sms,
}

impl ChannelKind {
    /// Every kind.
    pub const ALL: [ChannelKind; 4] =
        [ChannelKind::Webhook, ChannelKind::Wecom, ChannelKind::Dingtalk, ChannelKind::Sms];

    /// The snake_case name used in JSON and SQL.
    pub fn as_str(self) -> &'static str {
        match self {
            ChannelKind::Webhook => "webhook",
            ChannelKind::Wecom => "wecom",
            ChannelKind::Dingtalk => "dingtalk",
            ChannelKind::Sms => "sms",
        }
    }
}

impl std::str::FromStr for ChannelKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        ChannelKind::ALL.into_iter().find(|k| k.as_str() == s).ok_or_else(|| format!("unknown channel kind {s:?}"))
    }
}

/// An outbound notification channel. The secret is never serialised.
#[derive(Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct NotifyChannel {
    /// Id.
    pub id: i64,
    /// Name, unique.
    pub name: String,
    /// Kind.
    pub kind: ChannelKind,
    /// Where messages are posted.
    pub url: String,
    /// Signing secret; never answered back.
    #[serde(skip)]
    pub secret: String,
    /// Messages below this severity are not sent.
    pub min_severity: Severity,
    /// When it was made.
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    /// When it was switched off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub disabled_at: Option<Timestamp>,
}

impl fmt::Debug for NotifyChannel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NotifyChannel")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("url", &self.url)
            .field("secret", &"<redacted>")
            .finish_non_exhaustive()
    }
}

/// The duty roster, the in-app inbox and the outbound channels.
#[async_trait::async_trait]
pub trait NotifyStore: Send + Sync {
    /// Replaces the roster of the dates `from..=to` with `entries` (all within those dates).
    async fn replace_roster(&self, from: Date, to: Date, entries: &[DutyEntry]) -> Result<()>;
    /// The roster of the dates `from..=to`.
    async fn roster(&self, from: Date, to: Date) -> Result<Vec<DutyEntry>>;
    /// Puts a notification in each recipient's inbox, once per recipient and dedup key; the ones made
    /// now (recipients who already had it are left out).
    async fn notify(&self, n: &NewNotification, user_ids: &[i64]) -> Result<Vec<Notification>>;
    /// A user's notifications, newest first, below id `before`.
    async fn notifications(&self, user_id: i64, unread_only: bool, page: PageRequest) -> Result<Page<Notification>>;
    /// A notification by id.
    async fn notification(&self, id: i64) -> Result<Option<Notification>>;
    /// How many of a user's notifications are unread, and how many critical ones unacknowledged.
    async fn unread_count(&self, user_id: i64) -> Result<(i64, i64)>;
    /// Marks a user's notification read (and acknowledged, with `ack`); whether it was theirs.
    async fn mark_notification(&self, id: i64, user_id: i64, now: Timestamp, ack: bool) -> Result<bool>;
    /// Creates an outbound channel.
    async fn create_channel(&self, c: &NotifyChannel) -> Result<NotifyChannel>;
    /// Every channel, oldest first.
    async fn channels(&self) -> Result<Vec<NotifyChannel>>;
    /// Switches a channel off (or on again); whether it exists.
    async fn set_channel_disabled(&self, id: i64, at: Option<Timestamp>) -> Result<bool>;
}

/// The live KPI counters (`core::kpi::projection`) and what their rebuild reads.
#[async_trait::async_trait]
pub trait KpiStore: Send + Sync {
    /// Adds `rows` to the counters and moves log reader `consumer` from `from` to `to`, in one
    /// transaction, if the reader is still at `from`; whether it was (another node may have moved it).
    async fn kpi_advance(
        &self,
        consumer: &str,
        from: i64,
        to: i64,
        rows: &[(civicgrid_core::kpi::projection::RowKey, civicgrid_core::kpi::projection::Counters)],
    ) -> Result<bool>;
    /// Replaces every counter with `rows` and sets reader `consumer` at `position`, in one transaction.
    async fn kpi_replace(
        &self,
        consumer: &str,
        position: i64,
        rows: &[(civicgrid_core::kpi::projection::RowKey, civicgrid_core::kpi::projection::Counters)],
    ) -> Result<()>;
    /// The counters of each unit of `dim`, summed over the `bucket` periods `from..=to`.
    async fn kpi_totals(
        &self,
        dim: civicgrid_core::kpi::projection::Dim,
        bucket: civicgrid_core::kpi::projection::Bucket,
        from: &str,
        to: &str,
    ) -> Result<Vec<(String, civicgrid_core::kpi::projection::Counters)>>;
    /// The counters of unit `key` of `dim`, one row per `bucket` period in `from..=to` that has any,
    /// in period order (trend lines).
    async fn kpi_series(
        &self,
        dim: civicgrid_core::kpi::projection::Dim,
        bucket: civicgrid_core::kpi::projection::Bucket,
        key: &str,
        from: &str,
        to: &str,
    ) -> Result<Vec<(String, civicgrid_core::kpi::projection::Counters)>>;
    /// Every counter row, in key order (for checks and exports).
    async fn kpi_dump(
        &self,
    ) -> Result<Vec<(civicgrid_core::kpi::projection::RowKey, civicgrid_core::kpi::projection::Counters)>>;
    /// Each case's last version numbered in the event log at or before `upto`.
    async fn logged_versions(&self, upto: i64) -> Result<Vec<(CaseId, i64)>>;
    /// Up to `limit` cases with ids above `after`, oldest first, with their facts and whole histories.
    async fn case_histories(&self, after: CaseId, limit: u32) -> Result<Vec<(CaseId, CaseFacts, Vec<CaseEvent>)>>;
    /// The facts and whole histories of the cases `ids` (repeats read once, unknown ids left out), in
    /// id order: what a reader of the event log needs for a batch of entries, in two queries per 500
    /// cases instead of two per case.
    async fn histories_of(&self, ids: &[CaseId]) -> Result<Vec<(CaseId, CaseFacts, Vec<CaseEvent>)>>;
    /// What the KPI counters read of the cases `ids` (repeats read once, unknown ids left out), in id
    /// order, from the cases' own columns: for cases whose every event a log reader holds already
    /// (reported within its batch).
    async fn facts_of(&self, ids: &[CaseId]) -> Result<Vec<(CaseId, civicgrid_core::kpi::projection::KpiFacts)>>;
}

/// How many of a device's newest reports its latest values are read from.
pub const LATEST_REPORTS: u32 = 200;

/// One device's readings in a batch to store.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceReadings {
    /// The device.
    pub device: civicgrid_core::iot::DeviceId,
    /// What it reported.
    pub readings: Vec<civicgrid_core::iot::Reading>,
}

/// Where a pass of [`DeviceStore::summarise_telemetry`] has got to: the (hour, device) pair it did
/// last, the hour in microseconds since the epoch.
pub type SummaryPass = (i64, String);

/// What one ingest transaction stores.
#[derive(Debug, Clone, PartialEq)]
pub struct TelemetryBatch {
    /// Each device's readings.
    pub readings: Vec<DeviceReadings>,
    /// Devices whose last-heard time moves to `heard_at`.
    pub heard: Vec<civicgrid_core::iot::DeviceId>,
    /// When they were heard from.
    pub heard_at: Timestamp,
    /// What the rules now remember of devices (device, rule, memory).
    pub rule_states: Vec<(civicgrid_core::iot::DeviceId, String, civicgrid_core::alarm::RuleState)>,
}

/// Smart components' devices and their telemetry.
#[async_trait::async_trait]
pub trait DeviceStore: Send + Sync {
    /// Registers a device, or replaces what is registered of it (its token and telemetry stay).
    async fn put_device(&self, d: &civicgrid_core::iot::Device) -> Result<()>;
    /// A device by id.
    async fn device(&self, id: &civicgrid_core::iot::DeviceId) -> Result<Option<civicgrid_core::iot::Device>>;
    /// Every device, by id.
    async fn devices(&self) -> Result<Vec<civicgrid_core::iot::Device>>;
    /// Sets the SHA-256 of a device's ingest token (replacing any earlier one); whether it exists.
    async fn set_device_token(&self, id: &civicgrid_core::iot::DeviceId, token_hash: &str) -> Result<bool>;
    /// The device whose ingest token has this SHA-256.
    async fn device_by_token(&self, token_hash: &str) -> Result<Option<civicgrid_core::iot::Device>>;
    /// Stores a batch in one transaction: one report row per device and moment (values taken at the
    /// same moment merge, so a message delivered twice stores nothing twice), each (device, hour)
    /// touched marked for summarising, the devices' last-heard time (never moved back), and what the
    /// rules now remember of them.
    async fn record_telemetry(&self, batch: &TelemetryBatch) -> Result<()>;
    /// Stores one device's readings ([`DeviceStore::record_telemetry`] with a batch of one).
    async fn record_readings(
        &self,
        id: &civicgrid_core::iot::DeviceId,
        readings: &[civicgrid_core::iot::Reading],
        heard_at: Timestamp,
    ) -> Result<()> {
        self.record_telemetry(&TelemetryBatch {
            readings: vec![DeviceReadings { device: id.clone(), readings: readings.to_vec() }],
            heard: vec![id.clone()],
            heard_at,
            rule_states: Vec::new(),
        })
        .await
    }
    /// Makes, from the reports, the 5-minute and hourly summaries of up to `limit` (device, hour) pairs
    /// marked since they were last made, of hours that had ended by `ended_by`, in the order of hour
    /// and device after `after` (the last pair of the call before, in one pass); how many pairs were
    /// done, and the last of them. A pair a report marks again while it is summarised stays marked.
    async fn summarise_telemetry(
        &self,
        ended_by: Timestamp,
        after: Option<&SummaryPass>,
        limit: u32,
    ) -> Result<(u32, Option<SummaryPass>)>;
    /// The latest value of each metric among a device's newest reports (the last [`LATEST_REPORTS`]).
    async fn latest_readings(&self, id: &civicgrid_core::iot::DeviceId) -> Result<Vec<civicgrid_core::iot::Reading>>;
    /// A metric's summaries over `span` starting in `from..to`, oldest first, at most `limit`; spans
    /// still waiting to be summarised are summarised for the answer, so it is never behind the reports.
    async fn rollups(
        &self,
        id: &civicgrid_core::iot::DeviceId,
        metric: civicgrid_core::iot::Metric,
        span: civicgrid_core::iot::RollupSpan,
        from: Timestamp,
        to: Timestamp,
        limit: u32,
    ) -> Result<Vec<civicgrid_core::iot::Rollup>>;
    /// Forgets raw readings taken before `raw_before` and 5-minute summaries of spans that start before
    /// `five_minutes_before` (hourly summaries are kept); how many rows went.
    async fn purge_telemetry(&self, raw_before: Timestamp, five_minutes_before: Timestamp) -> Result<u64>;
    /// A metric's readings in `from..to`, oldest first, at most `limit`.
    async fn readings(
        &self,
        id: &civicgrid_core::iot::DeviceId,
        metric: civicgrid_core::iot::Metric,
        from: Timestamp,
        to: Timestamp,
        limit: u32,
    ) -> Result<Vec<civicgrid_core::iot::Reading>>;
}

/// Which alarms to list.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AlarmFilter {
    /// Only those not yet ended.
    pub open_only: bool,
    /// Only those whose fault is present now.
    pub active_only: bool,
    /// Only those of one subject.
    pub subject: Option<civicgrid_core::alarm::Subject>,
    /// Only those linked to one case.
    pub case_id: Option<CaseId>,
    /// Only those a cabinet alarm holds back.
    pub suppressed_by: Option<i64>,
    /// At most this many, newest raising first (capped at 1,000).
    pub limit: u32,
}

/// Alarms, their history, and the rules' memory of each device.
#[async_trait::async_trait]
pub trait AlarmStore: Send + Sync {
    /// Stores a new alarm at version 1 (its first event, `note`), returning it with its id;
    /// `Duplicate` when its subject already has an open alarm of that fault.
    async fn insert_alarm(&self, a: &civicgrid_core::alarm::Alarm, note: &str) -> Result<civicgrid_core::alarm::Alarm>;
    /// Stores a changed alarm as its next version (one more event, `note`); `Conflict` when it is no
    /// longer at `a.version`. On success `a.version` is the new version.
    async fn update_alarm(&self, a: &mut civicgrid_core::alarm::Alarm, note: &str) -> Result<()>;
    /// An alarm by id.
    async fn alarm(&self, id: i64) -> Result<Option<civicgrid_core::alarm::Alarm>>;
    /// The open alarm of a subject and fault.
    async fn open_alarm(
        &self,
        subject: &civicgrid_core::alarm::Subject,
        fault: civicgrid_core::alarm::Fault,
    ) -> Result<Option<civicgrid_core::alarm::Alarm>>;
    /// The subject's most recently ended alarm of that fault.
    async fn last_ended_alarm(
        &self,
        subject: &civicgrid_core::alarm::Subject,
        fault: civicgrid_core::alarm::Fault,
    ) -> Result<Option<civicgrid_core::alarm::Alarm>>;
    /// Alarms matching `filter`, newest raising first.
    async fn alarms(&self, filter: &AlarmFilter) -> Result<Vec<civicgrid_core::alarm::Alarm>>;
    /// What each rule remembers of each of these devices (read in one go).
    async fn rule_states(
        &self,
        devices: &[civicgrid_core::iot::DeviceId],
    ) -> Result<Vec<(civicgrid_core::iot::DeviceId, String, civicgrid_core::alarm::RuleState)>>;
    /// Keeps what rules remember of devices (written in one go).
    async fn put_rule_states(
        &self,
        states: &[(civicgrid_core::iot::DeviceId, String, civicgrid_core::alarm::RuleState)],
    ) -> Result<()>;
    /// Waits for this caller's turn to follow the alarm rules across every node on the database: from
    /// reading what the rules remember, through following readings, to storing what they now
    /// remember, no other holder's turn overlaps, so neither one's memory overwrites the other's. On
    /// PostgreSQL a transaction-scoped advisory lock held on a connection of its own, ended when the
    /// turn is dropped; on SQLite (one node) free, the node orders its own followers.
    async fn rules_turn(&self) -> Result<RulesTurn>;
}

/// A turn to follow the alarm rules ([`AlarmStore::rules_turn`]); the next in line goes when it is
/// dropped.
#[must_use = "the turn ends when it is dropped"]
pub struct RulesTurn(Option<Box<dyn std::any::Any + Send>>);

impl RulesTurn {
    /// A turn that holds nothing: the backend has one node, which orders its rule followers itself.
    pub fn free() -> Self {
        Self(None)
    }

    /// A turn that holds `held` (whose drop ends it).
    pub(crate) fn holding(held: impl std::any::Any + Send) -> Self {
        Self(Some(Box::new(held)))
    }
}

impl fmt::Debug for RulesTurn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() { "RulesTurn(held)" } else { "RulesTurn(free)" })
    }
}

/// Everything civicgrid keeps.
#[async_trait::async_trait]
pub trait Store:
    ReferenceStore
    + AccountStore
    + ThrottleStore
    + IntegrationStore
    + CaseStore
    + AttachmentStore
    + EventLog
    + JobStore
    + NotifyStore
    + KpiStore
    + DeviceStore
    + AlarmStore
    + fmt::Debug
{
    /// Which backend this is.
    fn backend(&self) -> Backend;
    /// Checks the database answers.
    async fn ping(&self) -> Result<()>;
}

/// The store traits, for `use civicgrid_store::prelude::*`.
pub mod prelude {
    pub use crate::{
        AccountStore, AlarmStore, AttachmentStore, CaseStore, DeviceStore, EventLog, IntegrationStore, JobStore,
        KpiStore, NotifyStore, ReferenceStore, Store, ThrottleStore,
    };
}

/// When SQLite considers a commit done.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SqliteSync {
    /// fsync at every commit: a committed case survives a power cut (the default).
    #[default]
    Full,
    /// fsync at checkpoints only: a committed case survives a killed process, not a power cut.
    Normal,
}

/// How to open a store.
#[derive(Debug, Clone, Copy, Default)]
pub struct StoreOptions {
    /// SQLite's commit durability (ignored by PostgreSQL).
    pub sqlite_synchronous: SqliteSync,
}

/// Opens the store a URL names with default options; see [`open_with`].
pub async fn open(url: &str) -> Result<Arc<dyn Store>> {
    open_with(url, StoreOptions::default()).await
}

/// Opens the store a URL names and brings its schema up to date.
///
/// `postgres://…` or `postgresql://…` opens PostgreSQL; `sqlite://…`, `sqlite:…` or a plain file path
/// opens (creating if needed) an SQLite file.
pub async fn open_with(url: &str, options: StoreOptions) -> Result<Arc<dyn Store>> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(postgres::PgStore::open(url).await?))
    } else if url.contains("://") && !url.starts_with("sqlite://") {
        Err(StoreError::BadUrl(redact_url(url)))
    } else {
        let path = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:")).unwrap_or(url);
        Ok(Arc::new(sqlite::SqliteStore::open_with(path, options.sqlite_synchronous).await?))
    }
}

/// A database URL fit for a log or an error message: any password is replaced by `***`.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_owned() };
    let (authority, tail) = rest.split_once('/').map_or((rest, None), |(a, t)| (a, Some(t)));
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{user}:***@{host}"),
            None => format!("{userinfo}@{host}"),
        },
        None => authority.to_owned(),
    };
    let mut out = format!("{scheme}://{authority}");
    if let Some(t) = tail {
        out.push('/');
        // Query parameters may carry a password too.
        match t.split_once('?') {
            Some((path, query)) => {
                out.push_str(path);
                out.push('?');
                let params: Vec<String> = query
                    .split('&')
                    .map(|kv| match kv.split_once('=') {
                        Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
                        _ => kv.to_owned(),
                    })
                    .collect();
                out.push_str(&params.join("&"));
            }
            None => out.push_str(t),
        }
    }
    out
}

/// Microseconds since the epoch, the stored form of an instant.
pub(crate) fn micros(t: Timestamp) -> i64 {
    t.as_microsecond()
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn database_urls_lose_their_passwords() {
        assert_eq!(redact_url("postgres://cg:s3cret@db.lan:5432/town"), "postgres://cg:***@db.lan:5432/town");
        assert_eq!(
            redact_url("postgres://cg@db/town?password=x&sslmode=require"),
            "postgres://cg@db/town?password=***&sslmode=require"
        );
        assert_eq!(redact_url("postgres://db/town"), "postgres://db/town");
        assert_eq!(redact_url("/var/lib/civicgrid.db"), "/var/lib/civicgrid.db");
    }
}
