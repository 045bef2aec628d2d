//! Intake rules: turning a report as submitted into the facts of a new case, or a clear refusal.
//! The HTTP layer gathers what these rules need (the component, if one is named) and calls [`check_report`].

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::access::{Actor, Role, is_phone_number};
use crate::case::{Attachment, CaseFacts, GeoPoint, Reporter, Source, Urgency};
use crate::catalog::Catalog;
use crate::codes::{ComponentId, MatterCode};
use crate::component::Component;
use crate::coords::CoordSystem;
use crate::error::DomainError;
use crate::grid::GridIndex;

/// Longest description accepted, in characters.
pub const MAX_DESCRIPTION: usize = 2000;
/// Longest address accepted, in characters.
pub const MAX_ADDRESS: usize = 200;
/// Longest reporter name accepted, in characters.
pub const MAX_NAME: usize = 50;

/// A report as submitted.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReportInput {
    /// Matter code (5 digits).
    pub matter: MatterCode,
    /// Component concerned (17 digits), for component faults.
    #[serde(default)]
    pub component_id: Option<ComponentId>,
    /// Channel; defaults to the reporter's usual one (patrol for grid workers, H5 for citizens, hotline
    /// for intake).
    #[serde(default)]
    pub source: Option<Source>,
    /// Urgency (default normal).
    #[serde(default)]
    pub urgency: Urgency,
    /// What is wrong.
    pub description: String,
    /// Where, in `coord_system`.
    pub location: GeoPoint,
    /// The coordinate system of `location` (default WGS84); GCJ-02 and BD-09 are converted to WGS84.
    #[serde(default)]
    pub coord_system: CoordSystem,
    /// Address text.
    #[serde(default)]
    pub address: String,
    /// Outside reporter's name and phone (hotline, H5).
    #[serde(default)]
    pub reporter_name: Option<String>,
    /// Outside reporter's phone.
    #[serde(default)]
    pub reporter_phone: Option<String>,
    /// Attachment metadata.
    #[serde(default)]
    pub attachments: Vec<Attachment>,
    /// The upstream ticket it came from; set only by the ticket intake, never from a request body.
    #[serde(skip)]
    pub upstream: Option<crate::ticket::Upstream>,
    /// SHA-256 of the query code given to a public reporter; set only by the public page.
    #[serde(skip)]
    pub tracking: Option<String>,
}

fn default_source(role: Role) -> Source {
    match role {
        Role::GridWorker => Source::GridPatrol,
        Role::Citizen => Source::CitizenH5,
        Role::Leader | Role::Commander => Source::Leader,
        _ => Source::Hotline12345,
    }
}

/// Checks a report and returns the facts of the case to create.
///
/// `component` is the stored component named by `input.component_id`, if any was found.
pub fn check_report(
    input: ReportInput,
    actor: &Actor,
    catalog: &Catalog,
    index: &GridIndex,
    component: Option<&Component>,
    now: Timestamp,
) -> Result<CaseFacts, DomainError> {
    if !actor.role.may_report() {
        return Err(DomainError::Forbidden(format!("{} may not report cases", actor.role.label_zh())));
    }
    let matter = catalog
        .matter(input.matter)
        .ok_or_else(|| DomainError::invalid("matter", format!("matter {} is not in the code table", input.matter)))?;
    if let Some(id) = input.component_id {
        let c =
            component.ok_or_else(|| DomainError::invalid("component_id", format!("component {id} does not exist")))?;
        if matter.component_code.is_some_and(|class| class != c.id.class()) {
            return Err(DomainError::invalid(
                "component_id",
                format!(
                    "matter {} is about component class {:?}, not {}",
                    matter.code,
                    matter.component_code,
                    c.id.class()
                ),
            ));
        }
    }
    let description = crate::text::long("description", &input.description, 1, MAX_DESCRIPTION)?;
    let address = crate::text::line("address", &input.address, 0, MAX_ADDRESS)?;
    let reporter_name =
        input.reporter_name.as_deref().map(|n| crate::text::line("reporter_name", n, 0, MAX_NAME)).transpose()?;
    let attachments = crate::case::check_attachments("attachments", &input.attachments)?;
    if !input.location.is_wgs84() {
        return Err(DomainError::invalid("location", "longitude/latitude out of range"));
    }
    let location = input.coord_system.to_wgs84(input.location);
    let GeoPoint { lon, lat } = location;
    let micro_grid = index
        .locate(location)
        .ok_or_else(|| DomainError::invalid("location", format!("({lon}, {lat}) is outside the town's grids")))?;
    let grid = micro_grid.grid();
    if !actor.can_report_in(grid) {
        return Err(DomainError::Forbidden(format!("you may not report cases in grid {grid}")));
    }
    let masked_upstream = |p: &str| input.upstream.is_some() && crate::ticket::is_masked_phone(p);
    if input.reporter_phone.as_deref().is_some_and(|p| !is_phone_number(p) && !masked_upstream(p)) {
        return Err(DomainError::invalid("reporter_phone", "a phone number is 5–20 digits"));
    }
    let source = match actor.channel {
        Some(channel) => {
            if input.source.is_some_and(|s| s != channel.source()) {
                return Err(DomainError::invalid("source", "a service account reports on its own channel"));
            }
            channel.source()
        }
        None => input.source.unwrap_or_else(|| default_source(actor.role)),
    };
    if actor.role == Role::Citizen && source != Source::CitizenH5 {
        return Err(DomainError::invalid("source", "citizens report through the H5 channel"));
    }
    Ok(CaseFacts {
        matter: matter.code,
        component_id: input.component_id,
        source,
        urgency: input.urgency,
        description,
        location,
        address,
        grid,
        micro_grid,
        reporter: Reporter {
            user_id: actor.reporter_id(),
            name: reporter_name.filter(|n| !n.is_empty()),
            phone: input.reporter_phone,
            tracking: input.tracking,
        },
        attachments,
        reported_at: now,
        upstream: input.upstream,
    })
}
