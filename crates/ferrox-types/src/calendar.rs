//! Proxmox VE's calendar events (the `schedule` of backup jobs), a systemd-like syntax:
//! `[WEEKDAY] [[YYYY-]MM-DD] [HH:MM]`, each field `*`, a value, a list (`a,b`), a range
//! (`a..b`) or a repetition (`start/step`, `*/step`); a time without `:` is a minute
//! (`*/15`: every 15 minutes); a missing time is `00:00`; and the words `minutely`,
//! `hourly`, `daily`, `weekly`, `monthly`, `yearly`, `quarterly`, `semiannually`.
//! Resolution is one minute (seconds are refused). Times are the node's local time.
//!
//! Written here: the crate Proxmox VE uses for it is AGPL.

use chrono::{Datelike, Duration, Local, NaiveDateTime, TimeZone, Timelike};

/// One field: the values it allows, as a sorted list (small: at most 60 values).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Field(Vec<u32>);

impl Field {
    fn all(min: u32, max: u32) -> Field {
        Field((min..=max).collect())
    }
    fn has(&self, v: u32) -> bool {
        self.0.binary_search(&v).is_ok()
    }
    /// `*`, `v`, `a..b`, `s/step`, `*/step`, and comma lists of those.
    fn parse(text: &str, min: u32, max: u32, names: &[&str]) -> Result<Field, String> {
        let value = |t: &str| -> Result<u32, String> {
            if let Some(i) = names.iter().position(|n| n.eq_ignore_ascii_case(t)) {
                return Ok(i as u32 + min);
            }
            let v: u32 = t.parse().map_err(|_| format!("'{t}' is not a value"))?;
            if v < min || v > max {
                return Err(format!("{v} is not within {min}..{max}"));
            }
            Ok(v)
        };
        let mut out = Vec::new();
        for part in text.split(',') {
            if part.is_empty() {
                return Err(format!("empty item in '{text}'"));
            }
            let (range, step) = match part.split_once('/') {
                Some((r, s)) => {
                    let s: u32 = s.parse().map_err(|_| format!("'{s}' is not a step"))?;
                    if s == 0 {
                        return Err("a step of 0".into());
                    }
                    (r, s)
                }
                None => (part, 0),
            };
            let (from, to) = if range == "*" {
                (min, max)
            } else if let Some((a, b)) = range.split_once("..") {
                let (a, b) = (value(a)?, value(b)?);
                if a > b {
                    return Err(format!("range {a}..{b} runs backwards"));
                }
                (a, b)
            } else {
                let v = value(range)?;
                // `30/10`: from 30 on, every 10.
                (v, if step > 0 { max } else { v })
            };
            let step = step.max(1);
            out.extend((from..=to).step_by(step as usize));
        }
        out.sort_unstable();
        out.dedup();
        Ok(Field(out))
    }
}

const WEEKDAYS: &[&str] = &["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

/// A parsed calendar event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CalendarEvent {
    /// 1 = Monday .. 7 = Sunday.
    weekdays: Field,
    /// `None`: any year.
    years: Option<Field>,
    months: Field,
    days: Field,
    hours: Field,
    minutes: Field,
}

impl CalendarEvent {
    pub fn parse(text: &str) -> Result<CalendarEvent, String> {
        let text = text.trim();
        let expanded = match text {
            "minutely" => "*:*",
            "hourly" => "*:00",
            "daily" => "00:00",
            "weekly" => "mon 00:00",
            "monthly" => "*-01 00:00",
            "yearly" | "annually" => "01-01 00:00",
            "quarterly" => "01,04,07,10-01 00:00",
            "semiannually" => "01,07-01 00:00",
            other => other,
        };
        if expanded.is_empty() {
            return Err("an empty schedule".into());
        }
        let mut event = CalendarEvent {
            weekdays: Field::all(1, 7),
            years: None,
            months: Field::all(1, 12),
            days: Field::all(1, 31),
            hours: Field(vec![0]),
            minutes: Field(vec![0]),
        };
        let mut words: Vec<&str> = expanded.split_whitespace().collect();
        // A weekday field starts with a letter (or is `*` before something else).
        if let Some(first) = words.first() {
            if first.starts_with(|c: char| c.is_ascii_alphabetic())
                || (*first == "*" && words.len() > 1)
            {
                event.weekdays = Field::parse(first, 1, 7, WEEKDAYS)?;
                words.remove(0);
            }
        }
        for word in words {
            if word.contains(':') {
                let parts: Vec<&str> = word.split(':').collect();
                match parts.as_slice() {
                    [h, m] => {
                        event.hours = Field::parse(h, 0, 23, &[])?;
                        event.minutes = Field::parse(m, 0, 59, &[])?;
                    }
                    [h, m, s] if *s == "0" || *s == "00" => {
                        event.hours = Field::parse(h, 0, 23, &[])?;
                        event.minutes = Field::parse(m, 0, 59, &[])?;
                    }
                    _ => {
                        return Err(format!(
                            "'{word}': times are HH:MM (seconds are not supported)"
                        ))
                    }
                }
            } else if word.contains('-') {
                let parts: Vec<&str> = word.split('-').collect();
                match parts.as_slice() {
                    [m, d] => {
                        event.months = Field::parse(m, 1, 12, &[])?;
                        event.days = Field::parse(d, 1, 31, &[])?;
                    }
                    [y, m, d] => {
                        event.years = if *y == "*" {
                            None
                        } else {
                            Some(Field::parse(y, 1970, 2199, &[])?)
                        };
                        event.months = Field::parse(m, 1, 12, &[])?;
                        event.days = Field::parse(d, 1, 31, &[])?;
                    }
                    _ => return Err(format!("'{word}' is not a date ([YYYY-]MM-DD)")),
                }
            } else {
                // A lone field is the minute (`*/15`, `30/10`): every hour.
                event.hours = Field::all(0, 23);
                event.minutes = Field::parse(word, 0, 59, &[])?;
            }
        }
        Ok(event)
    }

    fn matches(&self, t: &NaiveDateTime) -> bool {
        self.minutes.has(t.minute())
            && self.hours.has(t.hour())
            && self.days.has(t.day())
            && self.months.has(t.month())
            && self.weekdays.has(t.weekday().number_from_monday())
            && self.years.as_ref().is_none_or(|y| y.has(t.year() as u32))
    }

    /// The first event strictly after `after` (Unix seconds), within `horizon_days`.
    pub fn next_after(&self, after: i64, horizon_days: i64) -> Option<i64> {
        let start = local(after)?;
        let mut t = start.with_second(0)?.with_nanosecond(0)? + Duration::minutes(1);
        let end = start + Duration::days(horizon_days);
        while t <= end {
            // Skip whole days and hours that cannot match.
            if !self.days.has(t.day())
                || !self.months.has(t.month())
                || !self.weekdays.has(t.weekday().number_from_monday())
                || self.years.as_ref().is_some_and(|y| !y.has(t.year() as u32))
            {
                t = (t + Duration::days(1)).with_hour(0)?.with_minute(0)?;
                continue;
            }
            if !self.hours.has(t.hour()) {
                t = (t + Duration::hours(1)).with_minute(0)?;
                continue;
            }
            if self.matches(&t) {
                return Local
                    .from_local_datetime(&t)
                    .earliest()
                    .map(|d| d.timestamp());
            }
            t += Duration::minutes(1);
        }
        None
    }

    /// The last event at or before `at` (Unix seconds), within `horizon_days`.
    pub fn last_at_or_before(&self, at: i64, horizon_days: i64) -> Option<i64> {
        let start = local(at)?;
        let mut t = start.with_second(0)?.with_nanosecond(0)?;
        let end = start - Duration::days(horizon_days);
        while t >= end {
            // Skip whole days and hours that cannot match, backwards.
            if !self.days.has(t.day())
                || !self.months.has(t.month())
                || !self.weekdays.has(t.weekday().number_from_monday())
                || self.years.as_ref().is_some_and(|y| !y.has(t.year() as u32))
            {
                t = t.with_hour(0)?.with_minute(0)? - Duration::minutes(1);
                continue;
            }
            if !self.hours.has(t.hour()) {
                t = t.with_minute(0)? - Duration::minutes(1);
                continue;
            }
            if self.matches(&t) {
                return Local
                    .from_local_datetime(&t)
                    .earliest()
                    .map(|d| d.timestamp());
            }
            t -= Duration::minutes(1);
        }
        None
    }
}

fn local(t: i64) -> Option<NaiveDateTime> {
    chrono::DateTime::from_timestamp(t, 0).map(|d| d.with_timezone(&Local).naive_local())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> i64 {
        let t = NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M").unwrap();
        Local
            .from_local_datetime(&t)
            .earliest()
            .unwrap()
            .timestamp()
    }
    fn next(spec: &str, after: &str) -> String {
        let t = CalendarEvent::parse(spec)
            .unwrap()
            .next_after(at(after), 400)
            .unwrap();
        local(t).unwrap().format("%Y-%m-%d %H:%M %a").to_string()
    }

    #[test]
    fn proxmox_ve_examples() {
        // 2026-12-04 is a Friday.
        assert_eq!(
            next("mon,tue,wed,thu,fri", "2026-12-04 10:00"),
            "2026-12-07 00:00 Mon"
        );
        assert_eq!(next("sat,sun", "2026-12-04 10:00"), "2026-12-05 00:00 Sat");
        assert_eq!(next("mon..fri", "2026-12-05 10:00"), "2026-12-07 00:00 Mon");
        assert_eq!(next("12:05", "2026-12-04 12:05"), "2026-12-05 12:05 Sat");
        assert_eq!(next("*/5", "2026-12-04 10:02"), "2026-12-04 10:05 Fri");
        assert_eq!(
            next("mon..wed 30/10", "2026-12-07 10:31"),
            "2026-12-07 10:40 Mon"
        );
        assert_eq!(
            next("mon..wed 30/10", "2026-12-07 10:55"),
            "2026-12-07 11:30 Mon"
        );
        assert_eq!(
            next("mon..fri 8..17,22:0/15", "2026-12-04 17:50"),
            "2026-12-04 22:00 Fri"
        );
        assert_eq!(
            next("12,14,16,18,20,22:5", "2026-12-04 12:06"),
            "2026-12-04 14:05 Fri"
        );
        assert_eq!(next("* *:*", "2026-12-04 10:00"), "2026-12-04 10:01 Fri");
        assert_eq!(
            next("sat *-1..7 15:00", "2026-12-04 10:00"),
            "2026-12-05 15:00 Sat"
        );
        assert_eq!(
            next("sat *-1..7 15:00", "2026-12-05 16:00"),
            "2027-01-02 15:00 Sat"
        );
        assert_eq!(
            next("2027-10-21", "2026-12-04 10:00"),
            "2027-10-21 00:00 Thu"
        );
        assert_eq!(next("daily", "2026-12-04 10:00"), "2026-12-05 00:00 Sat");
        assert_eq!(next("hourly", "2026-12-04 10:00"), "2026-12-04 11:00 Fri");
        assert_eq!(next("weekly", "2026-12-04 10:00"), "2026-12-07 00:00 Mon");
        assert_eq!(next("monthly", "2026-12-04 10:00"), "2027-01-01 00:00 Fri");
        assert_eq!(next("21:00", "2026-12-04 10:00"), "2026-12-04 21:00 Fri");
    }

    #[test]
    fn the_last_event_and_bad_schedules() {
        let e = CalendarEvent::parse("21:00").unwrap();
        assert_eq!(
            e.last_at_or_before(at("2026-12-04 22:00"), 2),
            Some(at("2026-12-04 21:00"))
        );
        assert_eq!(
            e.last_at_or_before(at("2026-12-04 21:00"), 2),
            Some(at("2026-12-04 21:00"))
        );
        assert_eq!(
            e.last_at_or_before(at("2026-12-04 20:59"), 2),
            Some(at("2026-12-03 21:00"))
        );
        for bad in [
            "",
            "25:00",
            "12:61",
            "mon..xyz",
            "sometimes",
            "12:00:30",
            "*/0",
            "fri..mon",
            "13-01",
        ] {
            assert!(CalendarEvent::parse(bad).is_err(), "{bad}");
        }
    }
}
