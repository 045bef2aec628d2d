//! Routing: the rules an administrator keeps (matter × area × component owner → lead and
//! co-departments, `core::routing`), and the route they propose for a case. Filing records the
//! proposal on the case (the dispatcher's console pre-fills the dispatch from it); the dispatcher
//! confirms it by dispatching to it, or dispatches elsewhere.

use std::collections::BTreeSet;

use civicgrid_core::access::{Actor, Role};
use civicgrid_core::case::Case;
use civicgrid_core::routing::{Route, RoutingTable};

use crate::accounts::require;
use crate::world::World;
use crate::{ServiceResult, Services};

/// Posts that read the routing rules: the administrator and the centre's posts that dispatch.
const RULE_READERS: [Role; 5] = [Role::Admin, Role::ShiftLeader, Role::Dispatcher, Role::Commander, Role::Supervisor];

impl Services {
    /// The routing rules in force.
    pub fn routing_rules(&self, actor: &Actor) -> ServiceResult<RoutingTable> {
        require(actor, &RULE_READERS)?;
        Ok(self.world().routing.clone())
    }

    /// Replaces the routing rules (administrators). Cases filed from now on get proposals by them;
    /// proposals already recorded stay.
    pub async fn set_routing_rules(&self, actor: &Actor, table: RoutingTable) -> ServiceResult<RoutingTable> {
        require(actor, &[Role::Admin])?;
        let world = self.world();
        let communities: BTreeSet<_> = self.store.workstations().await?.into_iter().map(|w| w.code).collect();
        let grids: BTreeSet<_> = self.store.grids().await?.into_iter().map(|g| g.code).collect();
        table.check(
            |m| world.catalog.matter(m).is_some(),
            |c| world.catalog.matters().any(|m| m.major_code == c),
            |c| communities.contains(&c),
            |g| grids.contains(&g),
            |d| world.has_department(d),
        )?;
        self.store.put_routing_rules(&table, actor.user_id, self.clock.now()).await?;
        self.reload_world().await?;
        tracing::info!(admin = actor.user_id, rules = table.rules.len(), "routing rules replaced");
        Ok(table)
    }

    /// The route the current rules propose for a case the actor may see (the centre's posts).
    pub async fn propose_route(&self, actor: &Actor, id: i64) -> ServiceResult<Option<Route>> {
        require(actor, &RULE_READERS)?;
        let case = self.case(actor, id).await?;
        self.route_for(&self.world(), &case).await
    }

    /// The route for a case under `world`'s rules (the caller's snapshot), with its component's
    /// responsible department.
    pub(crate) async fn route_for(&self, world: &World, case: &Case) -> ServiceResult<Option<Route>> {
        let owner = match case.facts.component_id {
            Some(c) => self.store.component(c).await?.map(|c| c.department),
            None => None,
        };
        Ok(world.routing.propose(&case.facts, owner.as_ref()))
    }
}
