//! Time-limit rules (SLA policy): which limit applies to which step of which case. The calendar turns a
//! limit into a deadline; this module only chooses the limit. Defaults follow city practice recorded in
//! `shared/reference/README.md`; an administrator can override per matter.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::calendar::TimeLimit;
use crate::case::{CaseFacts, Source, Urgency};
use crate::codes::MatterCode;

/// The limits of each step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlaPolicy {
    /// Accept + file + dispatch, normal cases (the centre runs 24 h, so wall-clock).
    pub dispatch_normal: TimeLimit,
    /// Accept + file + dispatch, urgent cases.
    pub dispatch_urgent: TimeLimit,
    /// For the lead department to sign for a dispatched case.
    pub sign: TimeLimit,
    /// Handling, when no matter- or source-specific rule applies.
    pub handle_default: TimeLimit,
    /// Handling of urgent cases without a matter rule.
    pub handle_urgent: TimeLimit,
    /// Handling of 110 non-police diversions.
    pub handle_police_110: TimeLimit,
    /// On-site verification after a reply.
    pub verify: TimeLimit,
    /// Closing after verification.
    pub close: TimeLimit,
    /// Handling limits per matter.
    pub per_matter: BTreeMap<MatterCode, TimeLimit>,
}

impl Default for SlaPolicy {
    fn default() -> Self {
        let code = |s: &str| s.parse::<MatterCode>().ok();
        let rules = [
            ("01037", TimeLimit::WorkingDays(1)),   // street lamp out: fix in 1 working day
            ("01060", TimeLimit::WorkingDays(1)),   // lighting cabinet
            ("01002", TimeLimit::CalendarHours(2)), // sewage manhole cover missing: 2 h
            ("01001", TimeLimit::CalendarHours(2)), // water supply manhole cover
            ("01003", TimeLimit::CalendarHours(2)), // storm drain manhole cover
            ("01013", TimeLimit::WorkingDays(1)),   // hydrant fault
            ("06010", TimeLimit::WorkingHours(4)),  // exposed rubbish
            ("06011", TimeLimit::WorkingHours(4)),  // accumulated rubbish
            ("06012", TimeLimit::WorkingHours(4)),  // dirty road
            ("06029", TimeLimit::CalendarHours(2)), // open-air barbecue
            ("06001", TimeLimit::WorkingDays(20)),  // unauthorised structure: removal
        ];
        SlaPolicy {
            dispatch_normal: TimeLimit::CalendarMinutes(30),
            dispatch_urgent: TimeLimit::CalendarMinutes(10),
            sign: TimeLimit::WorkingHours(2),
            handle_default: TimeLimit::WorkingDays(3),
            handle_urgent: TimeLimit::WorkingHours(4),
            handle_police_110: TimeLimit::WorkingDays(1),
            verify: TimeLimit::WorkingHours(2),
            close: TimeLimit::WorkingHours(4),
            per_matter: rules.iter().filter_map(|(c, l)| code(c).map(|c| (c, *l))).collect(),
        }
    }
}

impl SlaPolicy {
    /// Limit for getting a new case dispatched.
    pub fn dispatch_limit(&self, urgency: Urgency) -> TimeLimit {
        match urgency {
            Urgency::Normal => self.dispatch_normal,
            Urgency::Urgent => self.dispatch_urgent,
        }
    }

    /// Limit for the department's handling of this case.
    pub fn handle_limit(&self, facts: &CaseFacts) -> TimeLimit {
        if let Some(limit) = self.per_matter.get(&facts.matter) {
            return *limit;
        }
        match (facts.source, facts.urgency) {
            (Source::Police110, _) => self.handle_police_110,
            (_, Urgency::Urgent) => self.handle_urgent,
            _ => self.handle_default,
        }
    }
}
