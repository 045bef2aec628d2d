//! Shared state of the HTTP layer: the store, the injected clock, and the "world" — town, spatial
//! index, code tables, calendar, SLA rules and departments — loaded once from the store at start-up.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use civicgrid_core::calendar::{CALENDAR_2026_CSV, WorkCalendar, default_periods, parse_calendar_csv};
use civicgrid_core::catalog::{Catalog, ComponentClass, Matter};
use civicgrid_core::clock::Clock;
use civicgrid_core::grid::{GridIndex, Town};
use civicgrid_core::org::{Department, DeptCode};
use civicgrid_core::sla::SlaPolicy;
use civicgrid_store::{Store, StoreError};

use crate::auth::{LoginGuard, SessionCache};

/// Settings of the HTTP layer.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// Mark the session cookie `Secure` (serve behind HTTPS).
    pub secure_cookies: bool,
    /// Session lifetime in hours.
    pub session_hours: i64,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self { secure_cookies: false, session_hours: 12 }
    }
}

/// Reference data loaded from the store.
#[derive(Debug)]
pub struct World {
    /// The town, once one has been set up.
    pub town: Option<Town>,
    /// Point → micro-grid lookup.
    pub index: GridIndex,
    /// Component classes and matters.
    pub catalog: Catalog,
    /// Working calendar.
    pub calendar: WorkCalendar,
    /// Time-limit rules.
    pub sla: SlaPolicy,
    /// Departments by code.
    pub departments: BTreeMap<DeptCode, Department>,
}

impl World {
    /// Loads everything from the store; empty tables fall back to the embedded national data.
    pub async fn load(store: &dyn Store) -> Result<World, StoreError> {
        let (classes, matters): (Vec<ComponentClass>, Vec<Matter>) =
            (store.component_classes().await?, store.matters().await?);
        let catalog = if matters.is_empty() {
            Catalog::national().map_err(|e| StoreError::Corrupt(e.to_string()))?
        } else {
            Catalog::new(classes, matters)
        };
        let mut entries = store.calendar().await?;
        if entries.is_empty() {
            entries = parse_calendar_csv(CALENDAR_2026_CSV).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        }
        let calendar =
            WorkCalendar::new(&entries, &default_periods()).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let index = GridIndex::new(store.micro_grids().await?.into_iter().map(|m| (m.code, m.polygon)));
        let departments = store.departments().await?.into_iter().map(|d| (d.code.clone(), d)).collect();
        Ok(World { town: store.town().await?, index, catalog, calendar, sla: SlaPolicy::default(), departments })
    }
}

/// Everything a handler needs.
#[derive(Debug, Clone)]
pub struct AppState {
    /// Persistence.
    pub store: Arc<dyn Store>,
    /// Time.
    pub clock: Arc<dyn Clock>,
    /// Reference data; replaced whole when an administrator changes it.
    world: Arc<RwLock<Arc<World>>>,
    /// Recently checked sessions.
    pub sessions: Arc<SessionCache>,
    /// Failed-login counts.
    pub logins: Arc<LoginGuard>,
    /// Settings.
    pub config: Arc<HttpConfig>,
}

impl AppState {
    /// Loads the world from the store and builds the state.
    pub async fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>, config: HttpConfig) -> Result<Self, StoreError> {
        let world = World::load(store.as_ref()).await?;
        Ok(Self {
            store,
            clock,
            world: Arc::new(RwLock::new(Arc::new(world))),
            sessions: Arc::new(SessionCache::default()),
            logins: Arc::new(LoginGuard::default()),
            config: Arc::new(config),
        })
    }

    /// The current reference data.
    pub fn world(&self) -> Arc<World> {
        self.world.read().map(|w| w.clone()).unwrap_or_else(|poisoned| poisoned.into_inner().clone())
    }

    /// Reloads the reference data every `every`, so that a change made through another app node on
    /// the same database (a holiday, a department) reaches this one too.
    pub fn spawn_refresh(&self, every: std::time::Duration) -> tokio::task::JoinHandle<()> {
        let state = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.tick().await;
            loop {
                tick.tick().await;
                if let Err(e) = state.reload_world().await {
                    tracing::warn!(error = %e, "reloading reference data failed; keeping the old copy");
                }
            }
        })
    }

    /// Reloads the reference data from the store (after an administrator changed it).
    pub async fn reload_world(&self) -> Result<(), StoreError> {
        let fresh = Arc::new(World::load(self.store.as_ref()).await?);
        match self.world.write() {
            Ok(mut w) => *w = fresh,
            Err(poisoned) => *poisoned.into_inner() = fresh,
        }
        Ok(())
    }
}
