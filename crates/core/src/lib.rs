//! civicgrid-core: the domain of a town's integrated command centre, free of I/O.
//!
//! - [`codes`] — parsed code newtypes (grid, component, matter, …).
//! - [`catalog`] — the national component and matter tables.
//! - [`grid`] — the administrative hierarchy and point → micro-grid lookup.
//! - [`org`] — departments.
//! - [`component`] — physical assets (部件).
//! - [`case`] — cases and their state machine (the only one).
//! - [`cotask`] — the co-departments' tasks within that state machine.
//! - [`intake`] — the rules a report must meet to become a case.
//! - [`ticket`] — tickets pushed by the 12345 and 110 systems, and the 110 diversion catalogue.
//! - [`coords`] — coordinate systems (WGS84/CGCS2000, GCJ-02, BD-09) and their conversion.
//! - [`iot`] — smart components' devices, their measurements and telemetry payloads.
//! - [`alarm`] — the rules that find faults in telemetry, and alarms.
//! - [`calendar`] — the working-time clock (the only one).
//! - [`routing`] — which departments a case is proposed to go to.
//! - [`sla`] — which time limit applies to which step, on whose clock, and the step's timers.
//! - [`duty`] — the duty roster and who is told about a deadline.
//! - [`clock`] — the injected clock.
//! - [`access`] — roles, actors and scope checks.
//! - [`kpi`] — the performance formulas.
//! - [`text`] — text input hygiene (lengths, control characters, file names).
//! - [`error`] — the domain error type.

pub mod access;
pub mod alarm;
pub mod calendar;
pub mod case;
pub mod catalog;
pub mod clock;
pub mod codes;
pub mod component;
pub mod coords;
pub mod cotask;
pub mod duty;
pub mod error;
pub mod grid;
pub mod intake;
pub mod iot;
pub mod kpi;
pub mod org;
pub mod routing;
pub mod sla;
pub mod text;
pub mod ticket;

pub use error::DomainError;
