//! civicgrid-service: the use cases, one function each, given an [`Actor`]. The HTTP API, the CLI,
//! timers and (later) MQTT and Open311 ingest all call these, so a rule lives in one place and every
//! adapter stays thin: parse, call, map the error.
//!
//! - [`world`] — the reference-data snapshot (town, map index, code tables, calendar, SLA rules,
//!   departments), taken once per call.
//! - [`cases`] — report, read, list and change cases.
//! - [`attachments`] — uploaded photos and documents, their EXIF facts and thumbnails.
//! - [`accounts`] — accounts, passwords, log-in with its throttles, sessions.
//! - [`feed`] — the live feed: committed events, in order, to every subscriber that may see them.
//! - [`integrations`] — service accounts and API keys for outside systems.
//! - [`iot`] — smart components' devices, their ingest tokens and telemetry (any transport).
//! - [`alarms`] — rules over telemetry, alarms, the cases they open and close, storms, crowds.
//! - [`reference`] — the calendar and components administrators maintain.
//! - [`jobs`] — durable jobs and timers with leases, retries and dead letters.
//! - [`readers`] — the job runner's readers of the event log (SLA timers, KPI counters), one read shared.
//! - [`routing`] — the routing rules and the route they propose for a case.
//! - [`workflow`] — duplicate suggestions, merges and their closing, the sampling of fixes on the spot.
//! - [`deadlines`] — the SLA policy, and the timers that warn and escalate (yellow, red, 督办 ladder).
//! - [`cockpit`] — what the big screen shows: the open cases now, and the KPI figures with trends.
//! - [`sensing`] — the big screen's smart components: alarms, device health, people flow.
//! - [`kpi`] — live KPI counters from the event log, their rebuild, and KPI tables as JSON and XLSX.
//! - [`open311`] — the matters as Open311 GeoReport v2 services, with typed service definitions.
//! - [`public`] — the public's reports without an account, their tracking and feedback.
//! - [`tickets`] — tickets pushed by the 12345 and 110 systems, the diversion catalogue, replies.
//! - [`notify`] — the duty roster, alerts, inboxes and outbound channels.
//! - [`outbound`] — writing, signing and posting to webhooks, WeCom/DingTalk robots and SMS gateways.
//! - [`error`] — the layer's one error type.

pub mod accounts;
pub mod alarms;
pub mod attachments;
pub mod cases;
pub mod cockpit;
pub mod deadlines;
pub mod error;
pub mod feed;
pub mod idempotency;
pub mod integrations;
pub mod iot;
pub mod jobs;
pub mod kpi;
pub mod notify;
pub mod open311;
pub mod outbound;
pub mod public;
pub mod readers;
pub mod reference;
pub mod routing;
pub mod sensing;
pub mod throttles;
pub mod tickets;
pub mod workflow;
pub mod world;

use std::sync::Arc;

use civicgrid_core::clock::Clock;
use civicgrid_store::{Store, StoreError};

pub use civicgrid_core::access::Actor;
pub use error::{ServiceError, ServiceResult};
pub use world::World;

/// Settings of the use cases.
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    /// Session lifetime in hours (1–720).
    pub session_hours: i64,
    /// Where attachment content is kept.
    pub blobs: attachments::BlobStorage,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        Self { session_hours: 12, blobs: attachments::BlobStorage::Database }
    }
}

/// Everything a use case needs: the store, the clock, the reference data and the log-in throttles.
/// Cheap to clone; every clone shares the same state.
#[derive(Debug, Clone)]
pub struct Services {
    /// Persistence.
    pub store: Arc<dyn Store>,
    /// Time.
    pub clock: Arc<dyn Clock>,
    /// Settings.
    pub config: Arc<ServiceConfig>,
    world: world::WorldCell,
    logins: Arc<accounts::LoginGuard>,
    sessions: Arc<accounts::TtlCache<Actor>>,
    keys: Arc<integrations::KeyCache>,
    devices: Arc<iot::DeviceCache>,
    rule_memory: Arc<std::sync::Mutex<alarms::RuleMemory>>,
    /// This node's rule followers (ingest by any transport, the IoT sweep), one at a time.
    rule_followers: Arc<tokio::sync::Mutex<()>>,
}

impl Services {
    /// Loads the reference data from the store and builds the services.
    pub async fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>, config: ServiceConfig) -> Result<Self, StoreError> {
        let world = world::WorldCell::load(store.as_ref()).await?;
        Ok(Self {
            store,
            clock,
            config: Arc::new(config),
            world,
            logins: Arc::new(accounts::LoginGuard::new()),
            sessions: Arc::new(accounts::session_cache()),
            keys: Arc::new(integrations::KeyCache::default()),
            devices: Arc::new(iot::DeviceCache::default()),
            rule_memory: Arc::default(),
            rule_followers: Arc::default(),
        })
    }

    /// The current reference data: one snapshot, to be used for a whole call.
    pub fn world(&self) -> Arc<World> {
        self.world.get()
    }

    /// Reloads the reference data from the store (after an administrator changed it).
    pub async fn reload_world(&self) -> Result<(), StoreError> {
        self.world.reload(self.store.as_ref()).await
    }

    /// Reloads the reference data if it changed since this node read it (one row read; see
    /// [`civicgrid_store::ReferenceStore::world_version`]); whether it did.
    pub async fn refresh_world(&self) -> Result<bool, StoreError> {
        self.world.refresh(self.store.as_ref()).await
    }

    /// Looks every `every` whether the reference data changed, and reloads it if it did, so that a
    /// change made through another app node on the same database (a holiday, a department, an SLA
    /// policy) reaches this one within that time.
    pub fn spawn_refresh(&self, every: std::time::Duration) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                match me.refresh_world().await {
                    Ok(true) => tracing::debug!("reference data changed; snapshot reloaded"),
                    Ok(false) => {}
                    Err(e) => tracing::warn!(error = %e, "reloading reference data failed; keeping the old copy"),
                }
            }
        })
    }
}
