//! Reference data administrators maintain: the working calendar (next year's holidays and make-up
//! days) and the town's components. A change reloads this node's snapshot at once; other nodes pick it
//! up on their next refresh.

use civicgrid_core::access::{Actor, Role};
use civicgrid_core::calendar::CalendarEntry;
use civicgrid_core::case::GeoPoint;
use civicgrid_core::codes::ComponentId;
use civicgrid_core::component::{Component, ComponentStatus};
use civicgrid_core::org::DeptCode;

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

impl Services {
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
        let micro_grid = world
            .index
            .locate(input.location)
            .ok_or_else(|| ServiceError::invalid("location", "the location is outside the town's grids"))?;
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
}
