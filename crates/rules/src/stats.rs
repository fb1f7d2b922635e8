//! What one rule version did, counted so that a canary can be compared with the stable
//! version (`/api/v1/status/rules`) and so self-metrics can show it.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

#[derive(Debug, Default)]
pub struct VersionStats {
    pub series_in: AtomicU64,
    pub series_out: AtomicU64,
    pub samples_in: AtomicU64,
    pub samples_out: AtomicU64,
    /// Series a relabel rule dropped (or left without a metric name).
    pub series_dropped_relabel: AtomicU64,
    /// Series refused by a naming contract in reject mode.
    pub series_rejected_naming: AtomicU64,
    /// Series with at least one naming violation (warn or reject).
    pub series_naming_violations: AtomicU64,
    /// Series not created because a budget was used up, and their samples.
    pub series_overflow: AtomicU64,
    pub samples_overflow: AtomicU64,
    /// Series that had a denied label removed, a label outside an allow list removed, or
    /// a path templated.
    pub series_denied_label: AtomicU64,
    pub series_not_allowed_label: AtomicU64,
    pub series_templated: AtomicU64,
    pub series_inherited: AtomicU64,
    pub log_entries_in: AtomicU64,
    pub log_entries_dropped: AtomicU64,
    pub log_entries_sampled_out: AtomicU64,
    pub traces_kept: AtomicU64,
    pub traces_dropped: AtomicU64,
}

/// A copy of [`VersionStats`] at one moment, with the ratios an operator compares.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct StatsSnapshot {
    pub series_in: u64,
    pub series_out: u64,
    pub samples_in: u64,
    pub samples_out: u64,
    pub series_dropped_relabel: u64,
    pub series_rejected_naming: u64,
    pub series_naming_violations: u64,
    pub series_overflow: u64,
    pub samples_overflow: u64,
    pub series_denied_label: u64,
    pub series_not_allowed_label: u64,
    pub series_templated: u64,
    pub series_inherited: u64,
    pub log_entries_in: u64,
    pub log_entries_dropped: u64,
    pub log_entries_sampled_out: u64,
    pub traces_kept: u64,
    pub traces_dropped: u64,
    /// Share of incoming series not stored (relabel drops, naming rejects, overflow).
    pub series_dropped_ratio: f64,
    /// Share of incoming log entries not stored.
    pub log_dropped_ratio: f64,
    /// Share of decided traces kept.
    pub trace_keep_ratio: f64,
}

fn ratio(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

impl VersionStats {
    pub fn add(c: &AtomicU64, n: u64) {
        if n > 0 {
            c.fetch_add(n, Ordering::Relaxed);
        }
    }

    pub fn snapshot(&self) -> StatsSnapshot {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let mut s = StatsSnapshot {
            series_in: g(&self.series_in),
            series_out: g(&self.series_out),
            samples_in: g(&self.samples_in),
            samples_out: g(&self.samples_out),
            series_dropped_relabel: g(&self.series_dropped_relabel),
            series_rejected_naming: g(&self.series_rejected_naming),
            series_naming_violations: g(&self.series_naming_violations),
            series_overflow: g(&self.series_overflow),
            samples_overflow: g(&self.samples_overflow),
            series_denied_label: g(&self.series_denied_label),
            series_not_allowed_label: g(&self.series_not_allowed_label),
            series_templated: g(&self.series_templated),
            series_inherited: g(&self.series_inherited),
            log_entries_in: g(&self.log_entries_in),
            log_entries_dropped: g(&self.log_entries_dropped),
            log_entries_sampled_out: g(&self.log_entries_sampled_out),
            traces_kept: g(&self.traces_kept),
            traces_dropped: g(&self.traces_dropped),
            ..Default::default()
        };
        s.series_dropped_ratio = ratio(s.series_in - s.series_out.min(s.series_in), s.series_in);
        s.log_dropped_ratio = ratio(
            s.log_entries_dropped + s.log_entries_sampled_out,
            s.log_entries_in,
        );
        s.trace_keep_ratio = ratio(s.traces_kept, s.traces_kept + s.traces_dropped);
        s
    }
}
