//! KPI formulas as deployed systems compute them (see `shared/reference/README.md`): rates, the
//! department score, post scores and the A–E grade. Pure arithmetic over counts.
//!
//! The counts themselves come from [`projection`]: what each committed event adds to which unit's
//! counters on which day, the one rule both the live projection and its rebuild follow.

pub mod projection;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A ratio in percent (0–100); an empty denominator counts as 100 % (nothing was due, nothing was late).
pub fn rate(numerator: u64, denominator: u64) -> f64 {
    if denominator == 0 { 100.0 } else { 100.0 * numerator as f64 / denominator as f64 }
}

/// Overrun ratio = (used − limit) / limit; negative when finished early.
pub fn overrun_ratio(used_secs: i64, limit_secs: i64) -> f64 {
    if limit_secs <= 0 { 0.0 } else { (used_secs - limit_secs) as f64 / limit_secs as f64 }
}

/// Counts from which a unit's case KPIs are computed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CaseCounts {
    /// Cases dispatched to the unit (or in its area).
    pub cases: u64,
    /// Cases due for closure in the period.
    pub due_for_closure: u64,
    /// Of those, closed.
    pub closed: u64,
    /// Of those, closed on time.
    pub closed_on_time: u64,
    /// Replies made within the handling deadline.
    pub handled_on_time: u64,
    /// Replies due.
    pub due_for_handling: u64,
    /// Failed verifications (返工).
    pub rework: u64,
}

/// The grade of a score.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
pub enum Grade {
    /// ≥ 90.
    A,
    /// 75–90.
    B,
    /// 60–75.
    C,
    /// 40–60.
    D,
    /// < 40.
    E,
}

/// Grades a 0–100 score: A ≥ 90, B ≥ 75, C ≥ 60, D ≥ 40, else E.
pub fn grade(score: f64) -> Grade {
    match score {
        s if s >= 90.0 => Grade::A,
        s if s >= 75.0 => Grade::B,
        s if s >= 60.0 => Grade::C,
        s if s >= 40.0 => Grade::D,
        _ => Grade::E,
    }
}

/// Case-count score: fewer problems in your area score better.
pub fn case_count_score(cases: u64) -> f64 {
    match cases {
        0..=50 => 10.0,
        51..=100 => 9.0,
        101..=200 => 7.5,
        201..=500 => 6.0,
        501..=1000 => 4.0,
        _ => 0.0,
    }
}

impl CaseCounts {
    /// 按期结案率: closed on time ÷ due for closure.
    pub fn on_time_closure_rate(&self) -> f64 {
        rate(self.closed_on_time, self.due_for_closure)
    }

    /// Closure rate: closed ÷ due for closure.
    pub fn closure_rate(&self) -> f64 {
        rate(self.closed, self.due_for_closure)
    }

    /// On-time handling rate: handled on time ÷ due for handling.
    pub fn on_time_handling_rate(&self) -> f64 {
        rate(self.handled_on_time, self.due_for_handling)
    }

    /// 返工率: rework count ÷ due for closure.
    pub fn rework_rate(&self) -> f64 {
        rate(self.rework, self.due_for_closure)
    }

    /// Department score = count score + closure × 30 % + on-time handling × 30 % + (100 − rework) × 30 %.
    pub fn department_score(&self) -> f64 {
        case_count_score(self.cases)
            + 0.3 * self.closure_rate()
            + 0.3 * self.on_time_handling_rate()
            + 0.3 * (100.0 - self.rework_rate()).max(0.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grade_boundaries() {
        assert_eq!(grade(90.0), Grade::A);
        assert_eq!(grade(89.99), Grade::B);
        assert_eq!(grade(75.0), Grade::B);
        assert_eq!(grade(60.0), Grade::C);
        assert_eq!(grade(40.0), Grade::D);
        assert_eq!(grade(39.9), Grade::E);
    }

    #[test]
    fn department_score_of_a_perfect_small_department_is_100() {
        let c = CaseCounts {
            cases: 40,
            due_for_closure: 40,
            closed: 40,
            closed_on_time: 40,
            handled_on_time: 40,
            due_for_handling: 40,
            rework: 0,
        };
        assert!((c.department_score() - 100.0).abs() < 1e-9);
        assert_eq!(grade(c.department_score()), Grade::A);
    }

    #[test]
    fn department_score_follows_the_formula() {
        let c = CaseCounts {
            cases: 300,
            due_for_closure: 200,
            closed: 180,
            closed_on_time: 150,
            handled_on_time: 160,
            due_for_handling: 200,
            rework: 20,
        };
        // 6 + 0.3·90 + 0.3·80 + 0.3·(100 − 10) = 6 + 27 + 24 + 27 = 84
        assert!((c.department_score() - 84.0).abs() < 1e-9);
        assert!((c.on_time_closure_rate() - 75.0).abs() < 1e-9);
    }

    #[test]
    fn overrun_ratio_is_relative_to_the_limit() {
        assert!((overrun_ratio(150, 100) - 0.5).abs() < 1e-9);
        assert!((overrun_ratio(50, 100) + 0.5).abs() < 1e-9);
    }
}
