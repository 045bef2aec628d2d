//! The reference data a use case reads — town, point → micro-grid index, code tables, calendar, SLA
//! rules and their clocks, departments, routing rules, the 110 diversion catalogue, the smart components' rules — loaded from the
//! store as one immutable snapshot, replaced whole when it changes.
//! A use case takes the snapshot once and uses it throughout, so it never mixes two versions.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use civicgrid_core::alarm::RuleSet;
use civicgrid_core::calendar::{CALENDAR_2026_CSV, WorkCalendar, default_periods, parse_calendar_csv};
use civicgrid_core::case::GeoPoint;
use civicgrid_core::catalog::{Catalog, ComponentClass, Matter};
use civicgrid_core::grid::{GridIndex, Town};
use civicgrid_core::org::{Department, DeptCode};
use civicgrid_core::routing::RoutingTable;
use civicgrid_core::sla::{Clocks, SlaPolicy};
use civicgrid_core::ticket::DiversionCatalogue;
use civicgrid_store::{Store, StoreError};

/// Reference data loaded from the store.
#[derive(Debug)]
pub struct World {
    /// The town, once one has been set up.
    pub town: Option<Town>,
    /// Point → micro-grid lookup.
    pub index: GridIndex,
    /// Component classes and matters.
    pub catalog: Catalog,
    /// Working calendar (standard working hours).
    pub calendar: WorkCalendar,
    /// Time-limit rules: the administrator's, or the defaults.
    pub sla: SlaPolicy,
    /// The clocks deadlines are counted on (standard, centre, departments with their own hours).
    pub clocks: Clocks,
    /// Departments by code.
    pub departments: BTreeMap<DeptCode, Department>,
    /// Routing rules (none until an administrator sets them).
    pub routing: RoutingTable,
    /// The 110 diversion catalogue: the administrator's, or the example list.
    pub diversions: DiversionCatalogue,
    /// The smart components' rules: the administrator's, or the standard ones.
    pub alarm_rules: RuleSet,
    /// Where day and night are reckoned for the lamps: the middle of the town.
    pub place: GeoPoint,
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
        let sla = store.sla_policy().await?.unwrap_or_default();
        let clocks = sla.clocks(&calendar).map_err(|e| StoreError::Corrupt(format!("stored SLA policy: {e}")))?;
        let routing = store.routing_rules().await?.unwrap_or_default();
        let diversions = store.diversion_catalogue().await?.unwrap_or_default();
        let alarm_rules = store.alarm_rules().await?.unwrap_or_else(RuleSet::standard);
        // Without a town yet, Kunshan's (the demo's county) stands in.
        let place = index.centre().unwrap_or(GeoPoint { lon: 120.98, lat: 31.38 });
        Ok(World {
            town: store.town().await?,
            index,
            catalog,
            calendar,
            sla,
            clocks,
            departments,
            routing,
            diversions,
            alarm_rules,
            place,
        })
    }

    /// Whether a department exists.
    pub fn has_department(&self, code: &DeptCode) -> bool {
        self.departments.contains_key(code)
    }

    /// The micro-grid a registered thing's `location` falls in; a field error when it lies outside the
    /// town's grids.
    pub fn place(&self, location: GeoPoint) -> crate::ServiceResult<civicgrid_core::codes::MicroGridCode> {
        self.index
            .locate(location)
            .ok_or_else(|| crate::ServiceError::invalid("location", "the location is outside the town's grids"))
    }

    /// A department's Chinese name, or its code when it is not (or no longer) known.
    pub fn department_name(&self, code: &DeptCode) -> String {
        self.departments.get(code).map_or_else(|| code.to_string(), |d| d.name_zh.clone())
    }
}

/// The current snapshot, shared by every clone of the services, with the store's
/// [`world_version`](civicgrid_store::ReferenceStore::world_version) it was read at.
#[derive(Debug, Clone)]
pub(crate) struct WorldCell(Arc<RwLock<(i64, Arc<World>)>>);

impl WorldCell {
    pub(crate) async fn load(store: &dyn Store) -> Result<Self, StoreError> {
        Ok(Self(Arc::new(RwLock::new(Self::read(store).await?))))
    }

    /// The version, then the snapshot: a change landing in between moves the version again, so the
    /// next look reloads once more rather than keeping a stale copy under a fresh number.
    async fn read(store: &dyn Store) -> Result<(i64, Arc<World>), StoreError> {
        let version = store.world_version().await?;
        Ok((version, Arc::new(World::load(store).await?)))
    }

    pub(crate) fn get(&self) -> Arc<World> {
        self.0.read().map(|w| w.1.clone()).unwrap_or_else(|poisoned| poisoned.into_inner().1.clone())
    }

    fn version(&self) -> i64 {
        self.0.read().map(|w| w.0).unwrap_or_else(|poisoned| poisoned.into_inner().0)
    }

    pub(crate) async fn reload(&self, store: &dyn Store) -> Result<(), StoreError> {
        let fresh = Self::read(store).await?;
        match self.0.write() {
            Ok(mut w) => *w = fresh,
            Err(poisoned) => *poisoned.into_inner() = fresh,
        }
        Ok(())
    }

    /// Reloads if the store's version moved since the snapshot was read; whether it did.
    pub(crate) async fn refresh(&self, store: &dyn Store) -> Result<bool, StoreError> {
        if store.world_version().await? == self.version() {
            return Ok(false);
        }
        self.reload(store).await?;
        Ok(true)
    }
}
