//! Reference data: reading the town's map, calendar and components (any authenticated caller may; the
//! adapter checks the caller is logged in), and maintaining the working calendar (next year's holidays
//! and make-up days) and the components (administrators). A change reloads this node's snapshot at
//! once; other nodes pick it up on their next refresh.

use civicgrid_core::access::{Actor, Role};
use civicgrid_core::calendar::CalendarEntry;
use civicgrid_core::case::GeoPoint;
use civicgrid_core::codes::{ComponentId, MicroGridCode};
use civicgrid_core::component::{Component, ComponentStatus};
use civicgrid_core::grid::{Grid, MicroGrid, Workstation};
use civicgrid_core::org::Department;
use civicgrid_core::org::DeptCode;
use civicgrid_store::ComponentFilter;

use crate::accounts::require;
use crate::{ServiceError, ServiceResult, Services};

/// Most calendar rows accepted at once.
pub const MAX_CALENDAR_ROWS: usize = 400;

/// A component as an administrator describes it.
#[derive(Debug, Clone, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ComponentInput {
    /// Name, e.g. 路灯 0012.
    pub name: String,
    /// Status (default intact).
    #[serde(default)]
    pub status: ComponentStatus,
    /// Where it stands (WGS84); the grid and micro-grid follow from it.
    pub location: GeoPoint,
    /// Responsible department.
    pub department: DeptCode,
}

/// Largest page of a component list.
pub const MAX_COMPONENT_PAGE: u32 = 1000;

impl Services {
    /// Village and community workstations.
    pub async fn workstations(&self) -> ServiceResult<Vec<Workstation>> {
        Ok(self.store.workstations().await?)
    }

    /// Unit grids with their polygons.
    pub async fn grids(&self) -> ServiceResult<Vec<Grid>> {
        Ok(self.store.grids().await?)
    }

    /// Micro-grids with their polygons.
    pub async fn micro_grids(&self) -> ServiceResult<Vec<MicroGrid>> {
        Ok(self.store.micro_grids().await?)
    }

    /// The working calendar's holidays and make-up days.
    pub async fn calendar(&self) -> ServiceResult<Vec<CalendarEntry>> {
        Ok(self.store.calendar().await?)
    }

    /// The year whose holidays deadlines already reach but nobody has entered, today by the service's
    /// clock ([`civicgrid_core::calendar::WorkCalendar::missing_year`]).
    pub fn missing_calendar_year(&self) -> Option<i16> {
        self.world().calendar.missing_year(civicgrid_core::calendar::local(self.clock.now()).date())
    }

    /// The micro-grid a WGS84 point falls in.
    pub fn locate(&self, point: GeoPoint) -> ServiceResult<MicroGridCode> {
        if !(point.lon.is_finite() && point.lon.abs() <= 180.0) {
            return Err(ServiceError::invalid("lon", "longitude is a number from -180 to 180"));
        }
        if !(point.lat.is_finite() && point.lat.abs() <= 90.0) {
            return Err(ServiceError::invalid("lat", "latitude is a number from -90 to 90"));
        }
        self.world().index.locate(point).ok_or(ServiceError::NotFound("grid at that point"))
    }

    /// Components in ascending id order (pages of 1–1000).
    pub async fn components(&self, filter: &ComponentFilter) -> ServiceResult<Vec<Component>> {
        if !(1..=MAX_COMPONENT_PAGE).contains(&filter.limit) {
            return Err(ServiceError::invalid("limit", format!("limit must be between 1 and {MAX_COMPONENT_PAGE}")));
        }
        Ok(self.store.list_components(filter).await?)
    }

    /// One component.
    pub async fn component(&self, id: ComponentId) -> ServiceResult<Component> {
        self.store.component(id).await?.ok_or(ServiceError::NotFound("component"))
    }

    /// Adds or replaces working-calendar rows (administrators); the whole calendar after the change.
    pub async fn put_calendar(&self, actor: &Actor, entries: &[CalendarEntry]) -> ServiceResult<Vec<CalendarEntry>> {
        require(actor, &[Role::Admin])?;
        if entries.is_empty() || entries.len() > MAX_CALENDAR_ROWS {
            return Err(ServiceError::invalid("entries", format!("send 1–{MAX_CALENDAR_ROWS} rows")));
        }
        for e in entries {
            civicgrid_core::text::line("name_zh", &e.name_zh, 1, 50)?;
            civicgrid_core::text::line("name_en", &e.name_en, 0, 80)?;
        }
        let mut days: Vec<_> = entries.iter().map(|e| e.date).collect();
        days.sort();
        days.dedup();
        if days.len() != entries.len() {
            return Err(ServiceError::invalid("date", "each date at most once"));
        }
        self.store.put_calendar(entries).await?;
        self.reload_world().await?;
        tracing::info!(rows = entries.len(), by = actor.username, "working calendar changed");
        Ok(self.store.calendar().await?)
    }

    /// Adds or replaces a component (administrators). The ID must belong to the town's county and name a
    /// class of the national table; the location must fall inside the town; the department must exist.
    pub async fn put_component(
        &self,
        actor: &Actor,
        id: ComponentId,
        input: ComponentInput,
    ) -> ServiceResult<Component> {
        require(actor, &[Role::Admin])?;
        let world = self.world();
        let town = world.town.as_ref().ok_or(ServiceError::NotFound("town"))?;
        Component::check_id(id, town.code.division(), &world.catalog)?;
        let name = civicgrid_core::text::line("name", &input.name, 1, 100)?;
        if !world.has_department(&input.department) {
            return Err(ServiceError::invalid("department", format!("department {} does not exist", input.department)));
        }
        let micro_grid = world.place(input.location)?;
        let component = Component {
            id,
            name,
            status: input.status,
            location: input.location,
            grid: micro_grid.grid(),
            micro_grid,
            department: input.department,
        };
        self.store.put_components(std::slice::from_ref(&component)).await?;
        tracing::info!(component = %id, by = actor.username, "component registered");
        Ok(component)
    }

    /// Adds a department or renames one (administrators): names of 1–40 (Chinese) and up to 80
    /// (English) characters, a parent that exists and is not the department itself. Codes are never
    /// removed: cases and accounts keep naming them.
    pub async fn put_department(&self, actor: &Actor, department: Department) -> ServiceResult<Department> {
        require(actor, &[Role::Admin])?;
        let world = self.world();
        let name_zh = civicgrid_core::text::line("name_zh", &department.name_zh, 1, 40)?;
        let name_en = civicgrid_core::text::line("name_en", &department.name_en, 0, 80)?;
        if let Some(parent) = &department.parent
            && (parent == &department.code || !world.has_department(parent))
        {
            return Err(ServiceError::invalid("parent", format!("department {parent} cannot be the parent")));
        }
        let department = Department { name_zh, name_en, ..department };
        self.store.put_departments(std::slice::from_ref(&department)).await?;
        self.reload_world().await?;
        tracing::info!(department = %department.code, by = actor.username, "department saved");
        Ok(department)
    }
}
