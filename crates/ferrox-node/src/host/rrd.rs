//! A compact round-robin store for metrics: per series, one archive per timeframe
//! (hour, day, week, month, year, decade), each 60 buckets wide, keeping the sum, count
//! and maximum of every field per bucket. Old buckets are overwritten in place, so the
//! size of a series never grows.

use ferrox_api_types::nodes::RrdRow;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub const ROWS: u64 = 60;

/// Timeframes and their bucket width (seconds): each covers `ROWS` buckets.
pub const TIMEFRAMES: &[(&str, u64)] = &[
    ("hour", 60),
    ("day", 24 * 60),
    ("week", 7 * 24 * 60),
    ("month", 12 * 3600),
    ("year", 6 * 24 * 3600 + 2 * 3600),
    ("decade", 61 * 24 * 3600),
];

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
struct Bucket {
    /// Bucket start time; a slot whose time is not the expected one is stale.
    time: u64,
    sum: Vec<f64>,
    max: Vec<f64>,
    count: Vec<u32>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Series {
    fields: Vec<String>,
    /// One ring of `ROWS` slots per timeframe.
    archives: Vec<Vec<Bucket>>,
}

impl Series {
    fn new(fields: &[&str]) -> Series {
        Series {
            fields: fields.iter().map(|s| s.to_string()).collect(),
            archives: vec![vec![Bucket::default(); ROWS as usize]; TIMEFRAMES.len()],
        }
    }

    fn field_index(&mut self, name: &str) -> usize {
        if let Some(i) = self.fields.iter().position(|f| f == name) {
            return i;
        }
        self.fields.push(name.to_string());
        self.fields.len() - 1
    }

    /// Adds one sample taken at `time`.
    pub fn update(&mut self, time: u64, values: &[(&str, f64)]) {
        let indexed: Vec<(usize, f64)> = values
            .iter()
            .filter(|(_, v)| v.is_finite())
            .map(|(k, v)| (self.field_index(k), *v))
            .collect();
        let width = self.fields.len();
        for (archive, (_, step)) in self.archives.iter_mut().zip(TIMEFRAMES) {
            let start = time - time % step;
            let slot = &mut archive[((time / step) % ROWS) as usize];
            if slot.time != start {
                *slot = Bucket {
                    time: start,
                    sum: vec![0.0; width],
                    max: vec![f64::MIN; width],
                    count: vec![0; width],
                };
            }
            slot.sum.resize(width, 0.0);
            slot.max.resize(width, f64::MIN);
            slot.count.resize(width, 0);
            for (i, v) in &indexed {
                slot.sum[*i] += v;
                slot.max[*i] = slot.max[*i].max(*v);
                slot.count[*i] += 1;
            }
        }
    }

    /// Rows of `timeframe` ending at `now`, oldest first: always `ROWS` rows (fields
    /// without data in a bucket are omitted from its row, as Proxmox VE does).
    pub fn rows(&self, timeframe: &str, max: bool, now: u64) -> Option<Vec<RrdRow>> {
        let index = TIMEFRAMES.iter().position(|(n, _)| *n == timeframe)?;
        let step = TIMEFRAMES[index].1;
        let archive = &self.archives[index];
        let newest = now / step;
        let rows = ((newest + 1).saturating_sub(ROWS)..=newest)
            .map(|b| {
                let start = b * step;
                let mut row = RrdRow {
                    time: start,
                    values: BTreeMap::new(),
                };
                let slot = &archive[(b % ROWS) as usize];
                if slot.time == start {
                    for (i, name) in self.fields.iter().enumerate() {
                        let n = slot.count.get(i).copied().unwrap_or(0);
                        if n > 0 {
                            let v = if max {
                                slot.max[i]
                            } else {
                                slot.sum[i] / f64::from(n)
                            };
                            row.values.insert(name.clone(), v);
                        }
                    }
                }
                row
            })
            .collect();
        Some(rows)
    }
}

/// All series of a node (`node`, `qemu/100`, ...).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Rrd {
    series: BTreeMap<String, Series>,
}

impl Rrd {
    pub fn update(&mut self, key: &str, time: u64, values: &[(&str, f64)]) {
        let names: Vec<&str> = values.iter().map(|(k, _)| *k).collect();
        self.series
            .entry(key.to_string())
            .or_insert_with(|| Series::new(&names))
            .update(time, values);
    }

    pub fn remove(&mut self, key: &str) {
        self.series.remove(key);
    }

    /// Rows for `key`; a series never sampled still yields `ROWS` rows with only `time`.
    pub fn rows(&self, key: &str, timeframe: &str, max: bool, now: u64) -> Option<Vec<RrdRow>> {
        match self.series.get(key) {
            Some(s) => s.rows(timeframe, max, now),
            None => Series::new(&[]).rows(timeframe, max, now),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn averages_and_maxima_per_bucket() {
        let mut rrd = Rrd::default();
        let t0 = 1_700_000_040;
        rrd.update("node", t0, &[("cpu", 0.2), ("mem", 100.0)]);
        rrd.update("node", t0 + 10, &[("cpu", 0.4), ("mem", 300.0)]);
        let rows = rrd.rows("node", "hour", false, t0 + 10).unwrap();
        assert_eq!(rows.len(), 60);
        let last = rows.last().unwrap();
        assert_eq!(last.time, t0 - t0 % 60);
        assert!((last.values["cpu"] - 0.3).abs() < 1e-9);
        let max = rrd.rows("node", "hour", true, t0 + 10).unwrap();
        assert_eq!(max.last().unwrap().values["mem"], 300.0);
        // older buckets have no data: only their time
        assert_eq!(rows[0].values.len(), 0);
    }

    #[test]
    fn every_timeframe_is_never_empty_and_stale_slots_are_dropped() {
        let mut rrd = Rrd::default();
        let t = 1_700_000_000;
        rrd.update("qemu/100", t, &[("cpu", 1.0)]);
        for (tf, _) in TIMEFRAMES {
            assert_eq!(rrd.rows("qemu/100", tf, false, t).unwrap().len(), 60);
            assert_eq!(rrd.rows("qemu/999", tf, false, t).unwrap().len(), 60);
        }
        // an hour later the slot is reused for a new bucket: the old value is gone
        let later = t + 3600;
        let rows = rrd.rows("qemu/100", "hour", false, later).unwrap();
        assert!(rows.iter().all(|r| !r.values.contains_key("cpu")));
        assert!(rrd.rows("node", "fortnight", false, later).is_none());
    }
}
