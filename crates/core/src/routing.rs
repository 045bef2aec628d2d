//! Routing rules (派遣规则): which department leads a case and which co-departments help, by matter,
//! by area and by the owner of the component concerned. An administrator edits the rules as one
//! table ([`RoutingTable::check`]); filing a case records the route they propose
//! ([`RoutingTable::propose`]), and the dispatcher confirms it or dispatches otherwise.
//!
//! A rule matches when every criterion it sets matches the case. Of the matching rules the most
//! specific wins: first the one with more criteria, then an exact matter over a major class, then a
//! grid over a workstation, then the earlier rule. For a component fault the component's responsible
//! department always leads: the rule then only adds its co-departments.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::DomainError;
use crate::case::CaseFacts;
use crate::codes::{CommunityCode, GridCode, MatterCode};
use crate::org::DeptCode;

/// Most rules in a table.
pub const MAX_RULES: usize = 2000;
/// Most co-departments a rule adds.
pub const MAX_CO: usize = 5;

/// One routing rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RoutingRule {
    /// An exact matter code, e.g. `06010`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub matter: Option<MatterCode>,
    /// A matter major class (two digits, e.g. `06` 市容环境), when no exact matter is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub matter_class: Option<String>,
    /// A workstation (12-digit community code).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub community: Option<CommunityCode>,
    /// A unit grid, when no workstation is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub grid: Option<GridCode>,
    /// The responsible department of the component concerned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub component_owner: Option<DeptCode>,
    /// The lead department (主办).
    #[schema(value_type = String)]
    pub lead: DeptCode,
    /// Co-departments (协办).
    #[serde(default)]
    #[schema(value_type = Vec<String>)]
    pub co: Vec<DeptCode>,
}

impl RoutingRule {
    fn matches(&self, facts: &CaseFacts, owner: Option<&DeptCode>) -> bool {
        self.matter.is_none_or(|m| m == facts.matter)
            && self.matter_class.as_deref().is_none_or(|c| c == facts.matter.major())
            && self.community.is_none_or(|c| c == facts.grid.community())
            && self.grid.is_none_or(|g| g == facts.grid)
            && self.component_owner.as_ref().is_none_or(|o| Some(o) == owner)
    }

    /// How specific the rule is: (criteria set, matter rank, area rank). Larger wins.
    fn specificity(&self) -> (u8, u8, u8) {
        let matter = if self.matter.is_some() { 2 } else { u8::from(self.matter_class.is_some()) };
        let area = if self.grid.is_some() { 2 } else { u8::from(self.community.is_some()) };
        let owner = u8::from(self.component_owner.is_some());
        (u8::from(matter > 0) + u8::from(area > 0) + owner, matter, area)
    }
}

/// Why a route was proposed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RouteBasis {
    /// A routing rule (its 0-based position in the table).
    Rule,
    /// The component's responsible department leads; a rule may add co-departments.
    ComponentOwner,
}

/// The route the rules propose for a case.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Route {
    /// Lead department.
    #[schema(value_type = String)]
    pub lead: DeptCode,
    /// Co-departments.
    #[serde(default)]
    #[schema(value_type = Vec<String>)]
    pub co: Vec<DeptCode>,
    /// Why.
    pub basis: RouteBasis,
    /// The rule used, as its 0-based position in the table, when one matched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<usize>,
}

/// The town's routing rules, edited as one table.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RoutingTable {
    /// The rules, in the order an administrator keeps them (the order breaks ties).
    pub rules: Vec<RoutingRule>,
}

impl RoutingTable {
    /// The route for a case: the most specific matching rule, with the component's responsible
    /// department (`owner`, for component faults) in the lead. `None` when nothing applies.
    pub fn propose(&self, facts: &CaseFacts, owner: Option<&DeptCode>) -> Option<Route> {
        let best = self
            .rules
            .iter()
            .enumerate()
            .filter(|(_, r)| r.matches(facts, owner))
            .max_by(|(i, a), (j, b)| a.specificity().cmp(&b.specificity()).then(j.cmp(i)));
        match (best, owner) {
            (Some((i, r)), Some(o)) => {
                let mut co: Vec<DeptCode> = Vec::new();
                for d in std::iter::once(&r.lead).chain(&r.co) {
                    if d != o && !co.contains(d) {
                        co.push(d.clone());
                    }
                }
                co.truncate(MAX_CO);
                Some(Route { lead: o.clone(), co, basis: RouteBasis::ComponentOwner, rule: Some(i) })
            }
            (Some((i, r)), None) => {
                Some(Route { lead: r.lead.clone(), co: r.co.clone(), basis: RouteBasis::Rule, rule: Some(i) })
            }
            (None, Some(o)) => {
                Some(Route { lead: o.clone(), co: vec![], basis: RouteBasis::ComponentOwner, rule: None })
            }
            (None, None) => None,
        }
    }

    /// Checks the table: at most [`MAX_RULES`] rules; each names known matters, areas and
    /// departments, sets an exact matter or a class (not both), a workstation or a grid (not both),
    /// at most [`MAX_CO`] co-departments, none of them the lead or repeated; no two rules have the
    /// same criteria.
    pub fn check(
        &self,
        matter_exists: impl Fn(MatterCode) -> bool,
        class_exists: impl Fn(&str) -> bool,
        community_exists: impl Fn(CommunityCode) -> bool,
        grid_exists: impl Fn(GridCode) -> bool,
        dept_exists: impl Fn(&DeptCode) -> bool,
    ) -> Result<(), DomainError> {
        if self.rules.len() > MAX_RULES {
            return Err(DomainError::invalid("rules", format!("at most {MAX_RULES} rules")));
        }
        let mut seen = std::collections::BTreeSet::new();
        for (i, r) in self.rules.iter().enumerate() {
            let bad = |what: &str| Err(DomainError::invalid(&format!("rules[{i}]"), what.to_owned()));
            if r.matter.is_some() && r.matter_class.is_some() {
                return bad("set an exact matter or a matter class, not both");
            }
            if r.community.is_some() && r.grid.is_some() {
                return bad("set a workstation or a grid, not both");
            }
            if let Some(m) = r.matter.filter(|m| !matter_exists(*m)) {
                return bad(&format!("matter {m} is not in the catalogue"));
            }
            if let Some(c) = r.matter_class.as_deref().filter(|c| !class_exists(c)) {
                return bad(&format!("matter class {c:?} is not in the catalogue"));
            }
            if let Some(c) = r.community.filter(|c| !community_exists(*c)) {
                return bad(&format!("workstation {c} does not exist"));
            }
            if let Some(g) = r.grid.filter(|g| !grid_exists(*g)) {
                return bad(&format!("grid {g} does not exist"));
            }
            let depts = std::iter::once(&r.lead).chain(&r.co).chain(&r.component_owner);
            if let Some(d) = depts.clone().find(|d| !dept_exists(d)) {
                return bad(&format!("department {d} does not exist"));
            }
            if r.co.len() > MAX_CO {
                return bad(&format!("at most {MAX_CO} co-departments"));
            }
            let mut co = std::collections::BTreeSet::new();
            if r.co.iter().any(|d| d == &r.lead || !co.insert(d)) {
                return bad("co-departments must differ from the lead and from each other");
            }
            let key = (r.matter, r.matter_class.clone(), r.community, r.grid, r.component_owner.clone());
            if !seen.insert(key) {
                return bad("another rule has the same criteria");
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::case::{GeoPoint, Reporter, Source, Urgency};

    fn facts(matter: &str, grid: &str) -> CaseFacts {
        let grid: GridCode = grid.parse().expect("grid");
        CaseFacts {
            matter: matter.parse().expect("matter"),
            component_id: None,
            source: Source::GridPatrol,
            urgency: Urgency::Normal,
            description: String::new(),
            location: GeoPoint { lon: 120.9, lat: 31.3 },
            address: String::new(),
            grid,
            micro_grid: crate::codes::MicroGridCode::new(grid, 1).expect("micro"),
            reporter: Reporter::default(),
            attachments: vec![],
            reported_at: jiff::Timestamp::UNIX_EPOCH,
            upstream: None,
        }
    }

    fn d(s: &str) -> DeptCode {
        s.parse().expect("dept")
    }

    fn rule(lead: &str) -> RoutingRule {
        RoutingRule {
            matter: None,
            matter_class: None,
            community: None,
            grid: None,
            component_owner: None,
            lead: d(lead),
            co: vec![],
        }
    }

    fn table() -> RoutingTable {
        RoutingTable {
            rules: vec![
                RoutingRule { matter_class: Some("06".into()), ..rule("chengguan") },
                RoutingRule { matter: Some("06010".parse().expect("m")), ..rule("huanwei") },
                RoutingRule {
                    matter: Some("06010".parse().expect("m")),
                    community: Some("320583116001".parse().expect("c")),
                    co: vec![d("chengguan")],
                    ..rule("huanwei-east")
                },
                RoutingRule { matter_class: Some("01".into()), co: vec![d("gongdian")], ..rule("shizheng") },
            ],
        }
    }

    #[test]
    fn the_most_specific_matching_rule_wins() {
        let t = table();
        let route = |m: &str, g: &str| t.propose(&facts(m, g), None).map(|r| (r.lead.to_string(), r.rule));
        assert_eq!(route("06011", "320583116002001"), Some(("chengguan".into(), Some(0))), "class only");
        assert_eq!(route("06010", "320583116002001"), Some(("huanwei".into(), Some(1))), "exact matter");
        assert_eq!(route("06010", "320583116001007"), Some(("huanwei-east".into(), Some(2))), "matter × area");
        assert_eq!(route("09009", "320583116001007"), None, "no rule, no component: nothing proposed");
    }

    #[test]
    fn the_components_owner_leads_and_the_rule_adds_its_departments() {
        let t = table();
        let r = t.propose(&facts("01037", "320583116002001"), Some(&d("shizheng-lamp"))).expect("route");
        assert_eq!(r.basis, RouteBasis::ComponentOwner);
        assert_eq!(r.lead, d("shizheng-lamp"));
        assert_eq!(r.co, vec![d("shizheng"), d("gongdian")]);
        let r = t.propose(&facts("01037", "320583116002001"), Some(&d("shizheng"))).expect("route");
        assert_eq!((r.lead, r.co), (d("shizheng"), vec![d("gongdian")]), "the owner is not its own co-department");
        // A rule keyed on the owner beats one without it.
        let mut t = table();
        t.rules.push(RoutingRule {
            matter_class: Some("01".into()),
            component_owner: Some(d("shizheng-lamp")),
            co: vec![d("jiaotong")],
            ..rule("shizheng-lamp")
        });
        let r = t.propose(&facts("01037", "320583116002001"), Some(&d("shizheng-lamp"))).expect("route");
        assert_eq!((r.co, r.rule), (vec![d("jiaotong")], Some(4)));
    }

    #[test]
    fn the_table_is_checked_rule_by_rule() {
        let yes = |_: &str| true;
        let check = |t: &RoutingTable| {
            t.check(|_| true, yes, |_| true, |_| true, |d: &DeptCode| d.as_str() != "nobody")
                .err()
                .map(|e| format!("{}: {e}", e.field().unwrap_or_default()))
        };
        assert_eq!(check(&table()), None);
        let mut t = table();
        t.rules[1].matter_class = Some("06".into());
        assert!(check(&t).is_some_and(|e| e.contains("rules[1]") && e.contains("not both")));
        let mut t = table();
        t.rules[0].co = vec![d("chengguan")];
        assert!(check(&t).is_some_and(|e| e.contains("differ from the lead")));
        let mut t = table();
        t.rules[3].lead = d("nobody");
        assert!(check(&t).is_some_and(|e| e.contains("nobody")));
        let mut t = table();
        t.rules.push(t.rules[1].clone());
        assert!(check(&t).is_some_and(|e| e.contains("same criteria")));
    }
}
