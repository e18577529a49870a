//! Cron expressions as Cloudflare's Cron Triggers read them (here because the CLI, the control
//! plane at deploy and the nodes' scheduler must read them alike): five fields (minute, hour, day
//! of month, month, day of week), UTC, with `L`, `W` and `#`, month and day names, and days
//! of the week numbered 1-7 = SUN-SAT (Cloudflare's numbering, Quartz's; `0` is not a day).
//! No seconds, no years, no `@nicknames`.
//!
//! A schedule's ticks are minutes. Tests may make a minute shorter (`queues.cron_minute_ms`):
//! [`schedule_time`] then runs the schedule's clock faster than real time from a fixed origin
//! (the same on every node), and [`real_time`] says when a tick falls. A tick's
//! `scheduled_ms` stays in the schedule's own time, so the handler sees the sequence of
//! `scheduledTime`s it would see in production, only sooner.

use chrono::{DateTime, TimeZone, Utc};
use croner::parser::{CronParser, Seconds, Year};
use croner::Cron;

/// The five fields, in order, as an error names them.
const FIELDS: [&str; 5] = ["minute", "hour", "day of month", "month", "day of week"];

/// Why an expression was refused, naming the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cron {expression:?}: {reason}")]
pub struct CronError {
    pub expression: String,
    pub reason: String,
}

/// A parsed cron expression.
#[derive(Debug, Clone)]
pub struct Schedule {
    expression: String,
    cron: Cron,
}

fn parser() -> CronParser {
    CronParser::builder().seconds(Seconds::Disallowed).year(Year::Disallowed).alternative_weekdays(true).build()
}

impl Schedule {
    /// Parses `expression`; an error names the field at fault.
    pub fn parse(expression: &str) -> Result<Schedule, CronError> {
        let refuse = |reason: String| CronError { expression: expression.to_owned(), reason };
        if expression.contains('@') {
            return Err(refuse("nicknames such as @daily are not cron triggers; write the five fields".into()));
        }
        let fields: Vec<&str> = expression.split_whitespace().collect();
        if fields.len() != 5 {
            return Err(refuse(format!(
                "a cron trigger has 5 fields (minute hour day-of-month month day-of-week); this has {}",
                fields.len()
            )));
        }
        if fields[4].split([',', '-', '/', '#']).any(|part| part.trim_end_matches('L') == "0") {
            return Err(refuse("day of week: days are 1-7 (SUN-SAT); 0 is not a day".into()));
        }
        let parser = parser();
        match parser.parse(expression) {
            Ok(cron) => Ok(Schedule { expression: expression.to_owned(), cron }),
            Err(whole) => {
                // Name the first field that fails on its own among wildcards.
                for (at, field) in fields.iter().enumerate() {
                    let mut alone = ["*"; 5];
                    alone[at] = field;
                    if let Err(e) = parser.parse(&alone.join(" ")) {
                        return Err(refuse(format!("{} field {field:?}: {e}", FIELDS[at])));
                    }
                }
                Err(refuse(whole.to_string()))
            }
        }
    }

    pub fn expression(&self) -> &str {
        &self.expression
    }

    /// The first tick strictly after `after_ms` (milliseconds since the epoch, UTC).
    pub fn next_after(&self, after_ms: u64) -> Option<u64> {
        let start: DateTime<Utc> = Utc.timestamp_millis_opt(i64::try_from(after_ms).ok()?).single()?;
        let next = self.cron.find_next_occurrence(&start, false).ok()?;
        u64::try_from(next.timestamp_millis()).ok()
    }

    /// The ticks in `(after_ms, until_ms]`, oldest first, at most `max`; with a minute of
    /// `minute_ms` real milliseconds (60,000 in production), both bounds and the ticks are in
    /// schedule time (see the module's header).
    pub fn ticks(&self, after_ms: u64, until_ms: u64, max: usize) -> Vec<u64> {
        let mut ticks = Vec::new();
        let mut at = after_ms;
        while ticks.len() < max {
            match self.next_after(at) {
                Some(next) if next <= until_ms => {
                    ticks.push(next);
                    at = next;
                }
                _ => break,
            }
        }
        ticks
    }
}

/// Where schedule time and real time meet when a minute is shortened (2026-01-01 00:00 UTC):
/// counted from here, a shortened schedule's years stay within croner's range.
const SCALE_ORIGIN_MS: u64 = 1_767_225_600_000;

/// Schedule time for real time `real_ms`, when a minute lasts `minute_ms` (60,000: the same).
pub fn schedule_time(real_ms: u64, minute_ms: u64) -> u64 {
    if minute_ms == 60_000 || minute_ms == 0 || real_ms < SCALE_ORIGIN_MS {
        return real_ms;
    }
    let scaled = u128::from(real_ms - SCALE_ORIGIN_MS) * 60_000 / u128::from(minute_ms);
    SCALE_ORIGIN_MS.saturating_add(u64::try_from(scaled).unwrap_or(u64::MAX))
}

/// Real time at which schedule time `schedule_ms` falls (the inverse of [`schedule_time`]).
pub fn real_time(schedule_ms: u64, minute_ms: u64) -> u64 {
    if minute_ms == 60_000 || minute_ms == 0 || schedule_ms < SCALE_ORIGIN_MS {
        return schedule_ms;
    }
    let scaled = u128::from(schedule_ms - SCALE_ORIGIN_MS) * u128::from(minute_ms) / 60_000;
    SCALE_ORIGIN_MS.saturating_add(u64::try_from(scaled).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;

    fn at(y: i32, m: u32, d: u32, h: u32, min: u32) -> u64 {
        let time = NaiveDate::from_ymd_opt(y, m, d).and_then(|d| d.and_hms_opt(h, min, 0)).expect("a date");
        time.and_utc().timestamp_millis() as u64
    }

    fn next(expression: &str, after: u64) -> u64 {
        Schedule::parse(expression).expect("parses").next_after(after).expect("a next tick")
    }

    /// The examples of Cloudflare's Cron Triggers documentation, as test vectors.
    #[test]
    fn cloudflare_examples() {
        let start = at(2026, 12, 5, 12, 34); // a Saturday
                                             // "*/30 * * * *": every 30 minutes.
        assert_eq!(next("*/30 * * * *", start), at(2026, 12, 5, 13, 0));
        // "45 * * * *": at minute 45 of every hour.
        assert_eq!(next("45 * * * *", start), at(2026, 12, 5, 12, 45));
        // "0 17 * * sun" / "0 17 * * 1": 17:00 UTC on Sundays (1 = SUN).
        assert_eq!(next("0 17 * * sun", start), at(2026, 12, 6, 17, 0));
        assert_eq!(next("0 17 * * 1", start), at(2026, 12, 6, 17, 0));
        // "10 7 * * mon-fri" / "10 7 * * 2-6": 07:10 UTC on weekdays.
        assert_eq!(next("10 7 * * mon-fri", start), at(2026, 12, 7, 7, 10));
        assert_eq!(next("10 7 * * 2-6", start), at(2026, 12, 7, 7, 10));
        // "0 15 1 * *": 15:00 UTC on the first of the month.
        assert_eq!(next("0 15 1 * *", start), at(2027, 1, 1, 15, 0));
        // "0 18 * * 6L" / "0 18 * * FRIL": 18:00 UTC on the last Friday of the month.
        assert_eq!(next("0 18 * * 6L", start), at(2026, 12, 25, 18, 0));
        assert_eq!(next("0 18 * * FRIL", start), at(2026, 12, 25, 18, 0));
        // "59 23 LW * *": 23:59 UTC on the last weekday of the month.
        assert_eq!(next("59 23 LW * *", start), at(2026, 12, 31, 23, 59));
        // "0 12 * * 6#2": noon on the second Friday of the month.
        assert_eq!(next("0 12 * * 6#2", start), at(2026, 12, 11, 12, 0));
        // Month names.
        assert_eq!(next("0 0 1 jan *", start), at(2027, 1, 1, 0, 0));
    }

    #[test]
    fn bad_expressions_name_their_field() {
        for (expression, field) in [
            ("61 * * * *", "minute"),
            ("* 24 * * *", "hour"),
            ("* * 32 * *", "day of month"),
            ("* * * 13 *", "month"),
            ("* * * * 9", "day of week"),
            ("* * * * 0", "day of week"),
            ("* * * * fooday", "day of week"),
        ] {
            let error = Schedule::parse(expression).expect_err(expression);
            assert!(error.to_string().contains(field), "{expression}: {error}");
        }
        assert!(Schedule::parse("* * * *").expect_err("4 fields").reason.contains("5 fields"));
        assert!(Schedule::parse("0 * * * * *").expect_err("6 fields").reason.contains("5 fields"));
        assert!(Schedule::parse("@daily").is_err());
    }

    #[test]
    fn ticks_between_two_times_and_a_shorter_minute() {
        let schedule = Schedule::parse("*/5 * * * *").expect("parses");
        let start = at(2026, 12, 5, 12, 0);
        assert_eq!(
            schedule.ticks(start, start + 15 * 60_000, 10),
            vec![start + 5 * 60_000, start + 10 * 60_000, start + 15 * 60_000]
        );
        assert_eq!(schedule.ticks(start, start + 15 * 60_000, 2).len(), 2);
        // With 1-second minutes, a 5-minute schedule ticks every 5 real seconds.
        let real = 1_796_000_000_000;
        let schedule_now = schedule_time(real, 1_000);
        let tick = schedule.next_after(schedule_now).expect("a tick");
        let following = schedule.next_after(tick).expect("a tick");
        assert_eq!(real_time(following, 1_000) - real_time(tick, 1_000), 5_000);
        assert_eq!(schedule_time(real_time(tick, 1_000), 1_000), tick);
    }
}
