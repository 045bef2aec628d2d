//! The job runner's readers of the global event log: the SLA timer scheduler ([`crate::deadlines`])
//! and the KPI counters ([`crate::kpi`]). Each keeps its own position, moved only in the transaction
//! that records what it did with the entries it read, so every entry is acted on once however many
//! nodes read. They share the reading: one turn reads the log once from the lower of the two
//! positions and hands each reader the entries past its own, so a committed event is fetched and
//! decoded once, not once per reader; what this process's writer has just committed is taken from its
//! memory, not read back at all (`EventLog::case_log_after`).
//!
//! A turn reads at most [`LOG_TURN`] entries: under sustained load the log grows as fast as it is
//! read, and the jobs due (the SLA timers among them) run between turns.

use civicgrid_core::kpi::projection::Projection;
use civicgrid_store::CaseLogEntry;

use crate::jobs::{LOG_BATCH, LOG_TURN};
use crate::kpi::{KPI_CONSUMER, KPI_WINDOW};
use crate::{ServiceResult, Services};

/// Which readers a turn runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Readers {
    /// The SLA timer scheduler.
    pub timers: bool,
    /// The KPI counters.
    pub kpis: bool,
}

impl Readers {
    /// Both readers: the job runner's turn.
    pub const ALL: Readers = Readers { timers: true, kpis: true };
}

/// What a turn of the readers did: how many log entries each took.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LogTurn {
    /// Entries the timer scheduler took.
    pub timers: usize,
    /// Entries the KPI reader counted.
    pub kpis: usize,
    /// Whether the turn stopped at [`LOG_TURN`] with more of the log left to read.
    pub behind: bool,
}

/// The KPI reader within a turn: the counters of up to [`KPI_WINDOW`] entries, written at once.
struct KpiWindow {
    /// The position as stored (what the counters in the store cover).
    position: i64,
    /// The last entry folded into `projection`.
    upto: i64,
    projection: Projection,
    entries: usize,
}

impl KpiWindow {
    /// An empty window with the reader at `position`.
    fn at(position: i64) -> Self {
        Self { position, upto: position, projection: Projection::new(), entries: 0 }
    }
}

impl Services {
    /// One turn of `readers` over the event log (see the module's notes).
    pub async fn read_log(&self, readers: Readers) -> ServiceResult<LogTurn> {
        let mut turn = LogTurn::default();
        let mut timers = if readers.timers { self.timer_reader_position().await? } else { None };
        let mut kpis = match readers.kpis {
            true => self.kpi_reader_position().await?.map(KpiWindow::at),
            false => None,
        };
        let Some(mut at) = timers.into_iter().chain(kpis.as_ref().map(|k| k.upto)).min() else { return Ok(turn) };
        let mut read = 0;
        loop {
            let entries = self.store.case_log_after(at, LOG_BATCH).await?;
            let Some(last) = entries.last().map(|e| e.seq) else { break };
            if let Some(position) = timers.as_mut() {
                let mine = past(&entries, *position);
                if !mine.is_empty() {
                    self.schedule_entries(&mine, last).await?;
                    turn.timers += mine.len();
                    *position = last;
                }
            }
            if let Some(k) = kpis.as_mut() {
                let mine = past(&entries, k.upto);
                if !mine.is_empty() {
                    self.count_entries(&mut k.projection, &mine).await?;
                    k.entries += mine.len();
                    k.upto = last;
                }
            }
            if kpis.as_ref().is_some_and(|k| k.entries >= KPI_WINDOW) {
                kpis = self.write_counters(kpis.take(), &mut turn).await?;
            }
            at = last;
            read += entries.len();
            if entries.len() < LOG_BATCH as usize {
                break;
            }
            if read >= LOG_TURN {
                turn.behind = true;
                break;
            }
        }
        self.write_counters(kpis, &mut turn).await?;
        Ok(turn)
    }

    /// Writes a window's counters and moves the KPI reader, if no other node moved it first; the
    /// reader to carry on with (none when another node counted these entries: the next turn starts
    /// from where that node left it).
    async fn write_counters(&self, kpis: Option<KpiWindow>, turn: &mut LogTurn) -> ServiceResult<Option<KpiWindow>> {
        let Some(k) = kpis else { return Ok(None) };
        if k.entries == 0 {
            return Ok(Some(k));
        }
        let rows = k.projection.into_rows();
        if !self.store.kpi_advance(KPI_CONSUMER, k.position, k.upto, &rows).await? {
            return Ok(None);
        }
        turn.kpis += k.entries;
        Ok(Some(KpiWindow::at(k.upto)))
    }

    /// Reads the event log from where the timer scheduler left off and enqueues the timers of every
    /// deadline set since; how many log entries it took, at most [`LOG_TURN`] a call. On its first
    /// run it starts at the end of the log and schedules the timers of every open case instead.
    pub async fn schedule_timers(&self) -> ServiceResult<usize> {
        Ok(self.read_log(Readers { timers: true, kpis: false }).await?.timers)
    }

    /// Counts what was committed since the KPI reader's last turn; how many log entries it counted,
    /// at most [`LOG_TURN`] a call. On its first run on a database it rebuilds the counters from every
    /// history instead.
    pub async fn project_kpis(&self) -> ServiceResult<usize> {
        Ok(self.read_log(Readers { timers: false, kpis: true }).await?.kpis)
    }
}

/// The entries of a read past a reader's `position`.
fn past(entries: &[CaseLogEntry], position: i64) -> Vec<&CaseLogEntry> {
    entries.iter().filter(|e| e.seq > position).collect()
}
