//! Components (部件): physical assets with a 17-digit ID, a class from the national table, a status and
//! a responsible department.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::case::GeoPoint;
use crate::catalog::Catalog;
use crate::codes::{ComponentId, DivisionCode, GridCode, MicroGridCode};
use crate::error::DomainError;
use crate::org::DeptCode;

/// The standard component status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ComponentStatus {
    /// 完好.
    #[default]
    Intact,
    /// 破损.
    Damaged,
    /// 丢失.
    Missing,
    /// 废弃.
    Abandoned,
    /// 移除.
    Removed,
}

impl ComponentStatus {
    /// The snake_case name used in JSON and SQL.
    pub fn as_str(self) -> &'static str {
        match self {
            ComponentStatus::Intact => "intact",
            ComponentStatus::Damaged => "damaged",
            ComponentStatus::Missing => "missing",
            ComponentStatus::Abandoned => "abandoned",
            ComponentStatus::Removed => "removed",
        }
    }
}

impl std::str::FromStr for ComponentStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        use ComponentStatus::*;
        [Intact, Damaged, Missing, Abandoned, Removed]
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| format!("unknown component status {s:?}"))
    }
}

/// A component.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Component {
    /// 17-digit ID.
    pub id: ComponentId,
    /// Name, e.g. 路灯 0012.
    pub name: String,
    /// Status.
    pub status: ComponentStatus,
    /// Where it stands.
    pub location: GeoPoint,
    /// Unit grid.
    pub grid: GridCode,
    /// Micro-grid.
    pub micro_grid: MicroGridCode,
    /// Responsible (supervising) department.
    pub department: DeptCode,
}

impl Component {
    /// Checks an ID against the town's division and the national class table.
    pub fn check_id(id: ComponentId, division: DivisionCode, catalog: &Catalog) -> Result<(), DomainError> {
        if id.division() != division {
            return Err(DomainError::invalid(
                "id",
                format!("component ID {id} belongs to division {}, not {division}", id.division()),
            ));
        }
        if catalog.component_class(id.class()).is_none() {
            return Err(DomainError::invalid(
                "id",
                format!("component class {} is not in the national table", id.class()),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_must_match_division_and_known_class() {
        let cat = Catalog::national().expect("catalog");
        let div: DivisionCode = "320585".parse().expect("div");
        assert!(Component::check_id("32058501037000001".parse().expect("id"), div, &cat).is_ok());
        assert!(Component::check_id("11010101037000001".parse().expect("id"), div, &cat).is_err(), "other county");
        assert!(Component::check_id("32058501016000001".parse().expect("id"), div, &cat).is_err(), "gap class");
    }
}
