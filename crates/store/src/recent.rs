//! The case events this process's group-commit writer committed last, kept in memory in log order so
//! that the log readers of the same process (SLA timers, KPI counters) take what was just written
//! without reading it back and decoding it ([`crate::EventLog::case_log_after`]).
//!
//! Only an unbroken run of log numbers is ever served from here: a read "after N" is answered from
//! memory when entry N + 1 is held and then as far as the numbers follow on without a hole. A hole is
//! a number this writer did not hand out to a case event (an alarm's entry, an import, entries pushed
//! out by newer ones): the read then goes to the database, so the answer is always exactly what the
//! log holds, whatever is or is not in memory. The store reads on from the database after a run that
//! stops at a hole before the newest commit, so a short answer still means "nothing more yet". On
//! PostgreSQL the memory is off ([`RecentLog::off`]).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use civicgrid_core::case::{CaseEvent, CaseId};

use crate::CaseLogEntry;

/// Entries held at most: a little more than the readers take in a turn of the job runner.
const CAPACITY: usize = 16_384;

/// The newest committed case events of this process, in log order.
#[derive(Debug)]
pub(crate) struct RecentLog {
    entries: Mutex<VecDeque<CaseLogEntry>>,
    /// Entries held at most; 0 holds none.
    capacity: usize,
}

impl Default for RecentLog {
    fn default() -> Self {
        Self { entries: Mutex::default(), capacity: CAPACITY }
    }
}

impl RecentLog {
    /// A memory that holds nothing, so every read goes to the database: PostgreSQL's. There several
    /// nodes write the log, and a reader served its own node's run would stop short of the other
    /// nodes' commits it has not yet heard of, where the database shows them at once.
    pub(crate) fn off() -> Self {
        Self { entries: Mutex::default(), capacity: 0 }
    }

    /// Whether it holds anything at all.
    pub(crate) fn is_on(&self) -> bool {
        self.capacity > 0
    }

    /// Records a committed batch: its case events in log order, numbered up to `last`.
    pub(crate) fn record(&self, last: i64, events: Vec<(CaseId, Arc<CaseEvent>)>) {
        if !self.is_on() {
            return;
        }
        let Ok(mut held) = self.entries.lock() else { return };
        let first = last - events.len() as i64 + 1;
        // Numbers only grow in one process; a batch numbered below what is held would mean a bug in
        // the caller, and is then left out rather than served in the wrong order.
        if held.back().is_some_and(|e| e.seq >= first) {
            return;
        }
        for (i, (case_id, event)) in events.into_iter().enumerate() {
            held.push_back(CaseLogEntry { seq: first + i as i64, case_id, event });
        }
        while held.len() > self.capacity {
            held.pop_front();
        }
    }

    /// Up to `limit` entries numbered from `after + 1` on without a hole, when entry `after + 1` is held.
    pub(crate) fn after(&self, after: i64, limit: usize) -> Option<Vec<CaseLogEntry>> {
        let held = self.entries.lock().ok()?;
        let start = held.binary_search_by_key(&(after + 1), |e| e.seq).ok()?;
        let run: Vec<CaseLogEntry> = held
            .range(start..)
            .zip(after + 1..)
            .take_while(|(e, want)| e.seq == *want)
            .take(limit)
            .map(|(e, _)| e.clone())
            .collect();
        Some(run)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A case's event number `seq` (what it is does not matter here).
    fn event(seq: i64) -> Arc<CaseEvent> {
        let e = serde_json::json!({"seq": seq, "at": "2026-12-07T08:00:00Z", "actor": {"user_id": 1,
            "role": "intake_operator"}, "action": {"action": "report"}, "from": null, "to": "reported"});
        Arc::new(serde_json::from_value(e).expect("an event"))
    }

    #[test]
    fn only_an_unbroken_run_from_the_next_number_is_served() {
        let log = RecentLog::default();
        assert!(log.after(0, 10).is_none(), "nothing held");
        log.record(3, vec![(1, event(1)), (2, event(1)), (3, event(1))]);
        // Numbers 4 and 5 went elsewhere (an alarm, an import); 6 and 7 are this writer's again.
        log.record(7, vec![(1, event(2)), (2, event(2))]);
        let seqs = |v: Option<Vec<CaseLogEntry>>| v.map(|v| v.iter().map(|e| e.seq).collect::<Vec<_>>());
        assert_eq!(seqs(log.after(0, 10)), Some(vec![1, 2, 3]), "up to the hole");
        assert_eq!(seqs(log.after(1, 1)), Some(vec![2]), "at most the limit");
        assert_eq!(seqs(log.after(3, 10)), None, "4 is not held: the database answers");
        assert_eq!(seqs(log.after(5, 10)), Some(vec![6, 7]));
        assert_eq!(seqs(log.after(7, 10)), None, "nothing newer");
        let e = log.after(5, 1).and_then(|v| v.into_iter().next()).expect("entry 6");
        assert_eq!((e.case_id, e.event.seq), (1, 2));
        // A batch numbered below what is held is refused, not served out of order.
        log.record(2, vec![(9, event(1))]);
        assert_eq!(seqs(log.after(1, 10)), Some(vec![2, 3]));
    }

    #[test]
    fn a_memory_that_is_off_holds_nothing() {
        let log = RecentLog::off();
        log.record(1, vec![(1, event(1))]);
        assert!(log.after(0, 10).is_none());
    }

    #[test]
    fn the_oldest_entries_make_way() {
        let log = RecentLog::default();
        let n = CAPACITY as i64 + 10;
        log.record(n, (1..=n).map(|i| (i, event(1))).collect());
        assert!(log.after(0, 1).is_none(), "entry 1 was pushed out");
        assert_eq!(log.after(n - 1, 5).map(|v| v.len()), Some(1));
        assert_eq!(log.after(10, 1).map(|v| v[0].seq), Some(11), "the oldest held");
    }
}
