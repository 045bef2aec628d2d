//! The working-time clock: which days are working days, the working periods of a day, and deadline
//! arithmetic in working time. This is the only place that knows how an SLA limit becomes a deadline.
//!
//! China keeps one offset (UTC+8, no daylight saving), so local time is computed with a fixed offset and
//! no time-zone database is needed. A day is a working day when it is Monday–Friday and not a public
//! holiday, or when it is a make-up working day (调休上班). The default working periods are 08:00–12:00 and
//! 14:00–18:00 (480 minutes); a "working day" of limit is that many working minutes.

use std::collections::BTreeMap;

use jiff::civil::{Date, DateTime, Time, Weekday};
use jiff::tz::Offset;
use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};

/// The embedded 2026 holiday and make-up-day table (State Council notice of 2025-11-04).
pub const CALENDAR_2026_CSV: &str = include_str!("../seed/workcalendar-cn-2026.csv");

/// China Standard Time, UTC+8.
pub const CHINA_OFFSET: Offset = jiff::tz::offset(8);

/// From this day of the year (month, day) on, next year's holidays are expected in the calendar: the
/// State Council publishes them in October or November, and a long deadline set in December already
/// ends in January.
pub const NEXT_YEAR_DUE: (i8, i8) = (11, 15);

/// What an override row says about a date.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DayKind {
    /// A day off (public holiday, including weekend days inside a holiday block).
    Holiday,
    /// A working day that falls on a weekend (调休上班).
    Workday,
}

/// One row of the working calendar.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CalendarEntry {
    /// The local date.
    #[schema(value_type = String, format = Date)]
    pub date: Date,
    /// Holiday or make-up working day.
    pub kind: DayKind,
    /// Chinese name, e.g. 春节.
    pub name_zh: String,
    /// English name.
    pub name_en: String,
}

/// A time limit as written in a rule: an amount and whether it counts working or calendar time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "unit", content = "amount", rename_all = "snake_case")]
pub enum TimeLimit {
    /// Minutes inside working periods.
    WorkingMinutes(u32),
    /// Hours inside working periods.
    WorkingHours(u32),
    /// Whole working days (each the calendar's minutes per day).
    WorkingDays(u32),
    /// Wall-clock minutes (the command centre runs 24 h).
    CalendarMinutes(u32),
    /// Wall-clock hours.
    CalendarHours(u32),
    /// Wall-clock days.
    CalendarDays(u32),
}

/// Why a calendar could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CalendarError {
    /// The working periods are empty, unordered or overlapping.
    #[error("working periods must be non-empty, ordered and non-overlapping")]
    BadPeriods,
    /// A CSV row was malformed.
    #[error("calendar row {row}: {message}")]
    Row {
        /// 1-based data row.
        row: usize,
        /// What was wrong.
        message: String,
    },
}

/// The working calendar: weekday rule, dated overrides and the daily working periods.
#[derive(Debug, Clone)]
pub struct WorkCalendar {
    overrides: BTreeMap<Date, DayKind>,
    /// Working periods as seconds since local midnight, ordered and disjoint.
    periods: Vec<(i64, i64)>,
    /// Every day is a working day (the command centre's own 24-hour clock).
    every_day: bool,
}

impl WorkCalendar {
    /// The 2026 national calendar with the default 08:00–12:00, 14:00–18:00 periods.
    pub fn china_2026() -> Self {
        let entries = parse_calendar_csv(CALENDAR_2026_CSV).unwrap_or_default();
        Self::new(&entries, &default_periods()).unwrap_or_else(|_| Self {
            overrides: BTreeMap::new(),
            periods: vec![(8 * 3600, 12 * 3600), (14 * 3600, 18 * 3600)],
            every_day: false,
        })
    }

    /// The command centre's clock: every day, all day. A "working day" of limit is then 24 hours.
    pub fn around_the_clock() -> Self {
        Self { overrides: BTreeMap::new(), periods: vec![(0, 86_400)], every_day: true }
    }

    /// The same days (holidays, make-up days) with other working periods: a department's own hours.
    pub fn with_periods(&self, periods: &[(Time, Time)]) -> Result<Self, CalendarError> {
        let mut c = Self::new(&[], periods)?;
        c.overrides = self.overrides.clone();
        c.every_day = self.every_day;
        Ok(c)
    }

    /// Builds a calendar from override rows and working periods given as local times.
    pub fn new(entries: &[CalendarEntry], periods: &[(Time, Time)]) -> Result<Self, CalendarError> {
        let secs = |t: Time| i64::from(t.hour()) * 3600 + i64::from(t.minute()) * 60 + i64::from(t.second());
        let periods: Vec<(i64, i64)> = periods.iter().map(|&(a, b)| (secs(a), secs(b))).collect();
        let ordered = periods.iter().all(|&(a, b)| a < b) && periods.windows(2).all(|w| w[0].1 <= w[1].0);
        if periods.is_empty() || !ordered {
            return Err(CalendarError::BadPeriods);
        }
        Ok(Self { overrides: entries.iter().map(|e| (e.date, e.kind)).collect(), periods, every_day: false })
    }

    /// The year whose holidays the calendar lacks and that deadlines already reach, if any: this
    /// year when it has no row at all, or, from [`NEXT_YEAR_DUE`] on, next year when it has none.
    /// (Every year has public holidays, so a year without a single row has not been entered.) Without
    /// its rows a year counts plain Monday–Friday weeks: a deadline across 元旦 or 春节 comes days early.
    pub fn missing_year(&self, today: Date) -> Option<i16> {
        let has = |year: i16| {
            let (Ok(first), Ok(last)) = (Date::new(year, 1, 1), Date::new(year, 12, 31)) else { return true };
            self.overrides.range(first..=last).next().is_some()
        };
        let (year, next) = (today.year(), today.year().saturating_add(1));
        if self.every_day {
            None
        } else if !has(year) {
            Some(year)
        } else if (today.month(), today.day()) >= NEXT_YEAR_DUE && !has(next) {
            Some(next)
        } else {
            None
        }
    }

    /// Working seconds in one working day (28,800 with the default periods).
    pub fn seconds_per_day(&self) -> i64 {
        self.periods.iter().map(|&(a, b)| b - a).sum()
    }

    /// Whether `date` is a working day.
    pub fn is_working_day(&self, date: Date) -> bool {
        if self.every_day {
            return true;
        }
        match self.overrides.get(&date) {
            Some(DayKind::Holiday) => false,
            Some(DayKind::Workday) => true,
            None => !matches!(date.weekday(), Weekday::Saturday | Weekday::Sunday),
        }
    }

    /// Whether the instant falls inside a working period of a working day.
    pub fn is_working_time(&self, at: Timestamp) -> bool {
        let local = local(at);
        let s = seconds_of_day(local.time());
        self.is_working_day(local.date()) && self.periods.iter().any(|&(a, b)| a <= s && s < b)
    }

    /// Working seconds inside `[from, to)`; zero when `to` is not after `from`.
    pub fn working_seconds_between(&self, from: Timestamp, to: Timestamp) -> i64 {
        if to <= from {
            return 0;
        }
        let (start, end) = (local(from), local(to));
        let mut total = 0;
        let mut day = start.date();
        while day <= end.date() {
            if self.is_working_day(day) {
                let lo = if day == start.date() { seconds_of_day(start.time()) } else { 0 };
                let hi = if day == end.date() { seconds_of_day(end.time()) } else { 86_400 };
                total += self.periods.iter().map(|&(a, b)| (b.min(hi) - a.max(lo)).max(0)).sum::<i64>();
            }
            let Ok(next) = day.tomorrow() else { break };
            day = next;
        }
        total
    }

    /// The earliest instant at which `seconds` of working time have passed since `from`.
    ///
    /// A limit that runs out exactly at the end of a period ends there (12:00, not 14:00).
    pub fn add_working_seconds(&self, from: Timestamp, seconds: i64) -> Timestamp {
        if seconds <= 0 {
            return from;
        }
        let start = local(from);
        let mut left = seconds;
        let mut day = start.date();
        loop {
            if self.is_working_day(day) {
                let lo = if day == start.date() { seconds_of_day(start.time()) } else { 0 };
                for &(a, b) in &self.periods {
                    let begin = a.max(lo);
                    let available = b - begin;
                    if available <= 0 {
                        continue;
                    }
                    if left <= available {
                        return at_local(day, begin + left);
                    }
                    left -= available;
                }
            }
            match day.tomorrow() {
                Ok(next) => day = next,
                Err(_) => return Timestamp::MAX,
            }
        }
    }

    /// The deadline of a limit started at `from`.
    pub fn deadline(&self, from: Timestamp, limit: TimeLimit) -> Timestamp {
        let wall = |secs: i64| from.checked_add(SignedDuration::from_secs(secs)).unwrap_or(Timestamp::MAX);
        match limit {
            TimeLimit::WorkingMinutes(m) => self.add_working_seconds(from, i64::from(m) * 60),
            TimeLimit::WorkingHours(h) => self.add_working_seconds(from, i64::from(h) * 3600),
            TimeLimit::WorkingDays(d) => self.add_working_seconds(from, i64::from(d) * self.seconds_per_day()),
            TimeLimit::CalendarMinutes(m) => wall(i64::from(m) * 60),
            TimeLimit::CalendarHours(h) => wall(i64::from(h) * 3600),
            TimeLimit::CalendarDays(d) => wall(i64::from(d) * 86_400),
        }
    }
}

/// The default working periods, 08:00–12:00 and 14:00–18:00.
pub fn default_periods() -> Vec<(Time, Time)> {
    vec![
        (Time::constant(8, 0, 0, 0), Time::constant(12, 0, 0, 0)),
        (Time::constant(14, 0, 0, 0), Time::constant(18, 0, 0, 0)),
    ]
}

/// Parses the calendar CSV (`date,kind,name_zh,name_en`).
pub fn parse_calendar_csv(text: &str) -> Result<Vec<CalendarEntry>, CalendarError> {
    let mut out = Vec::new();
    for (i, rec) in csv::Reader::from_reader(text.as_bytes()).into_records().enumerate() {
        let row = i + 1;
        let err = |message: String| CalendarError::Row { row, message };
        let rec = rec.map_err(|e| err(e.to_string()))?;
        let date: Date = rec.get(0).unwrap_or_default().parse().map_err(|e: jiff::Error| err(e.to_string()))?;
        let kind = match rec.get(1) {
            Some("holiday") => DayKind::Holiday,
            Some("workday") => DayKind::Workday,
            other => {
                return Err(err(format!("kind must be holiday or workday, got {other:?}")));
            }
        };
        out.push(CalendarEntry {
            date,
            kind,
            name_zh: rec.get(2).unwrap_or_default().to_owned(),
            name_en: rec.get(3).unwrap_or_default().to_owned(),
        });
    }
    Ok(out)
}

/// Local (UTC+8) date and time of an instant.
pub fn local(at: Timestamp) -> DateTime {
    CHINA_OFFSET.to_datetime(at)
}

/// The instant of a local (UTC+8) date and time.
pub fn from_local(dt: DateTime) -> Timestamp {
    CHINA_OFFSET.to_timestamp(dt).unwrap_or(Timestamp::MAX)
}

fn seconds_of_day(t: Time) -> i64 {
    i64::from(t.hour()) * 3600 + i64::from(t.minute()) * 60 + i64::from(t.second())
}

fn at_local(day: Date, seconds: i64) -> Timestamp {
    let midnight = from_local(day.to_datetime(Time::midnight()));
    midnight.checked_add(SignedDuration::from_secs(seconds)).unwrap_or(Timestamp::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::date;
    use proptest::prelude::*;

    fn cal() -> WorkCalendar {
        WorkCalendar::china_2026()
    }

    #[test]
    fn a_year_without_rows_is_missing_once_deadlines_reach_it() {
        let cal = cal();
        assert_eq!(cal.missing_year(date(2026, 3, 1)), None, "2026 is entered; 2027 is not due yet");
        assert_eq!(cal.missing_year(date(2026, 11, 14)), None);
        assert_eq!(cal.missing_year(date(2026, 11, 15)), Some(2027), "from mid-November next year is due");
        assert_eq!(cal.missing_year(date(2026, 12, 31)), Some(2027));
        assert_eq!(cal.missing_year(date(2027, 1, 4)), Some(2027), "the new year itself, still without rows");
        let mut entries = parse_calendar_csv(CALENDAR_2026_CSV).expect("embedded table");
        entries.push(CalendarEntry {
            date: date(2027, 1, 1),
            kind: DayKind::Holiday,
            name_zh: "元旦".into(),
            name_en: "New Year's Day".into(),
        });
        let with_2027 = WorkCalendar::new(&entries, &default_periods()).expect("calendar");
        assert_eq!(with_2027.missing_year(date(2026, 12, 7)), None);
        assert_eq!(with_2027.missing_year(date(2027, 11, 20)), Some(2028));
        assert_eq!(WorkCalendar::around_the_clock().missing_year(date(2026, 12, 7)), None, "no holidays to miss");
    }

    fn at(y: i16, m: i8, d: i8, h: i8, min: i8) -> Timestamp {
        from_local(date(y, m, d).at(h, min, 0, 0))
    }

    #[test]
    fn reference_calendar_has_33_holidays_and_6_make_up_days() {
        let rows = parse_calendar_csv(CALENDAR_2026_CSV).expect("parses");
        assert_eq!(rows.iter().filter(|r| r.kind == DayKind::Holiday).count(), 33);
        assert_eq!(rows.iter().filter(|r| r.kind == DayKind::Workday).count(), 6);
    }

    #[test]
    fn weekends_holidays_and_make_up_days() {
        let c = cal();
        assert!(c.is_working_day(date(2026, 11, 23)), "a Monday");
        assert!(!c.is_working_day(date(2026, 11, 22)), "a Sunday");
        assert!(!c.is_working_day(date(2026, 10, 1)), "National Day");
        assert!(c.is_working_day(date(2026, 10, 10)), "Saturday make-up day");
    }

    #[test]
    fn limit_ending_at_noon_stays_at_noon() {
        let d = cal().deadline(at(2026, 11, 23, 10, 0), TimeLimit::WorkingHours(2));
        assert_eq!(d, at(2026, 11, 23, 12, 0));
    }

    #[test]
    fn lunch_break_is_skipped() {
        let d = cal().deadline(at(2026, 11, 23, 11, 30), TimeLimit::WorkingMinutes(60));
        assert_eq!(d, at(2026, 11, 23, 14, 30));
    }

    #[test]
    fn report_at_night_starts_counting_next_morning() {
        let d = cal().deadline(at(2026, 11, 23, 22, 0), TimeLimit::WorkingHours(4));
        assert_eq!(d, at(2026, 11, 24, 12, 0));
    }

    #[test]
    fn friday_evening_deadline_skips_weekend() {
        let d = cal().deadline(at(2026, 11, 27, 17, 0), TimeLimit::WorkingHours(2));
        assert_eq!(d, at(2026, 11, 30, 9, 0));
    }

    #[test]
    fn deadline_skips_national_day_and_uses_make_up_saturday() {
        // Wednesday 30 September 17:00 + 1 working day: Oct 1–7 are off, Thu 8 is the next working day.
        let d = cal().deadline(at(2026, 9, 30, 17, 0), TimeLimit::WorkingDays(1));
        assert_eq!(d, at(2026, 10, 8, 17, 0));
        // Friday 9 October 17:00 + 2 working hours ends on make-up Saturday 10 October.
        let d = cal().deadline(at(2026, 10, 9, 17, 0), TimeLimit::WorkingHours(2));
        assert_eq!(d, at(2026, 10, 10, 9, 0));
    }

    #[test]
    fn calendar_limits_ignore_working_periods() {
        let d = cal().deadline(at(2026, 10, 1, 23, 0), TimeLimit::CalendarHours(2));
        assert_eq!(d, at(2026, 10, 2, 1, 0));
    }

    #[test]
    fn working_seconds_between_counts_only_periods() {
        let c = cal();
        assert_eq!(c.working_seconds_between(at(2026, 11, 23, 0, 0), at(2026, 11, 24, 0, 0)), 8 * 3600);
        assert_eq!(c.working_seconds_between(at(2026, 11, 28, 0, 0), at(2026, 11, 30, 0, 0)), 0, "weekend");
        assert_eq!(c.working_seconds_between(at(2026, 11, 24, 0, 0), at(2026, 11, 23, 0, 0)), 0, "reversed");
    }

    #[test]
    fn around_the_clock_counts_nights_weekends_and_holidays() {
        let c = WorkCalendar::around_the_clock();
        assert_eq!(c.deadline(at(2026, 10, 1, 23, 0), TimeLimit::WorkingHours(2)), at(2026, 10, 2, 1, 0));
        assert_eq!(c.deadline(at(2026, 11, 28, 9, 0), TimeLimit::WorkingDays(1)), at(2026, 11, 29, 9, 0));
        assert!(c.is_working_time(at(2026, 11, 29, 3, 0)));
    }

    #[test]
    fn a_department_keeps_the_holidays_with_its_own_hours() {
        let t = |h| Time::constant(h, 0, 0, 0);
        let c = cal().with_periods(&[(t(9), t(17))]).expect("valid periods");
        assert_eq!(c.seconds_per_day(), 8 * 3600);
        assert!(!c.is_working_day(date(2026, 10, 1)), "National Day is still off");
        assert_eq!(c.deadline(at(2026, 11, 23, 16, 0), TimeLimit::WorkingHours(2)), at(2026, 11, 24, 10, 0));
    }

    #[test]
    fn bad_periods_are_refused() {
        let t = |h| Time::constant(h, 0, 0, 0);
        assert!(WorkCalendar::new(&[], &[]).is_err());
        assert!(WorkCalendar::new(&[], &[(t(9), t(8))]).is_err());
        assert!(WorkCalendar::new(&[], &[(t(8), t(12)), (t(11), t(13))]).is_err());
    }

    proptest! {
        #[test]
        fn added_working_time_is_exactly_the_working_time_between(
            start in 1_767_225_600i64..1_798_761_600i64, // 2026 in seconds
            secs in 1i64..(20 * 28_800),
        ) {
            let c = cal();
            let from = Timestamp::from_second(start).expect("in range");
            let due = c.add_working_seconds(from, secs);
            prop_assert!(due > from);
            prop_assert_eq!(c.working_seconds_between(from, due), secs);
            // Minimal: one second earlier, less than the limit has elapsed.
            let before = due.checked_sub(SignedDuration::from_secs(1)).expect("in range");
            prop_assert!(c.working_seconds_between(from, before) < secs);
            prop_assert!(c.is_working_time(before));
        }

        #[test]
        fn deadlines_are_monotonic_in_the_limit(start in 1_767_225_600i64..1_798_761_600i64, a in 0u32..5000, b in 0u32..5000) {
            let c = cal();
            let from = Timestamp::from_second(start).expect("in range");
            let (lo, hi) = (a.min(b), a.max(b));
            prop_assert!(c.deadline(from, TimeLimit::WorkingMinutes(lo)) <= c.deadline(from, TimeLimit::WorkingMinutes(hi)));
        }
    }
}
