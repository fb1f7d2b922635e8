//! Items of an accepted request that were not stored, and why: what OTLP's
//! `partial_success` reports (a count and a message).

/// Why one item (span, log record, metric data point) was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RefuseReason {
    /// A span whose trace or span id is empty or all zeros (or a link with such ids).
    InvalidId,
    /// A delta-temporality sum or histogram (Prometheus series are cumulative).
    DeltaTemporality,
    /// An exponential histogram (the store has no native histograms yet).
    ExponentialHistogram,
    /// A metric with no data, or a number data point with no value.
    NoValue,
    /// A metric with an empty name.
    NoName,
    /// A histogram point whose bucket counts do not match its bounds, or whose bounds are
    /// not increasing.
    InvalidHistogram,
    /// The store refused the sample: older than its series' newest sample.
    OutOfOrder,
    /// The store refused the sample: too old for the head.
    TooOld,
    /// The store refused the sample: same timestamp as a stored one, other value.
    DuplicateTimestamp,
    /// The store refused the sample: too far ahead of the server's clock.
    TooFarInFuture,
}

impl RefuseReason {
    /// Short name for self-metrics labels.
    pub fn as_str(self) -> &'static str {
        match self {
            RefuseReason::InvalidId => "invalid_id",
            RefuseReason::DeltaTemporality => "delta_temporality",
            RefuseReason::ExponentialHistogram => "exponential_histogram",
            RefuseReason::NoValue => "no_value",
            RefuseReason::NoName => "no_name",
            RefuseReason::InvalidHistogram => "invalid_histogram",
            RefuseReason::OutOfOrder => "out_of_order",
            RefuseReason::TooOld => "too_old",
            RefuseReason::DuplicateTimestamp => "duplicate_timestamp",
            RefuseReason::TooFarInFuture => "too_far_in_future",
        }
    }

    fn explain(self) -> &'static str {
        match self {
            RefuseReason::InvalidId => "an empty or all-zero trace or span id",
            RefuseReason::DeltaTemporality => {
                "delta (or unspecified) temporality, which lastmile does not convert to cumulative yet (set the SDK's temporality preference to cumulative, e.g. OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE=cumulative)"
            }
            RefuseReason::ExponentialHistogram => {
                "exponential histograms, which the store cannot keep yet (configure explicit-bucket histograms, e.g. OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION=explicit_bucket_histogram)"
            }
            RefuseReason::NoValue => "no value",
            RefuseReason::NoName => "no metric name (OTLP requires one)",
            RefuseReason::InvalidHistogram => {
                "bucket counts that do not match the explicit bounds (one count per bound, plus one), or bounds that do not increase"
            }
            RefuseReason::OutOfOrder => "a timestamp older than the newest sample of its series",
            RefuseReason::TooOld => {
                "a timestamp too old for the head (persisted already, or over an hour behind its newest sample)"
            }
            RefuseReason::DuplicateTimestamp => {
                "the timestamp of a stored sample with a different value"
            }
            RefuseReason::TooFarInFuture => {
                "a timestamp more than 10 minutes ahead of the server's clock"
            }
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
struct Entry {
    reason: RefuseReason,
    count: u64,
    /// Where the first such item was, e.g. `resourceSpans[0].scopeSpans[0].spans[3]`.
    first: Option<String>,
}

/// Refused items of one request, by reason, with where the first of each was.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Refusals {
    entries: Vec<Entry>,
}

impl Refusals {
    pub fn add(&mut self, reason: RefuseReason, count: u64, first: impl FnOnce() -> String) {
        if count == 0 {
            return;
        }
        match self.entries.iter_mut().find(|e| e.reason == reason) {
            Some(e) => e.count += count,
            None => self.entries.push(Entry {
                reason,
                count,
                first: Some(first()),
            }),
        }
    }

    /// Adds refusals counted elsewhere (the store), with no location.
    pub fn add_counted(&mut self, reason: RefuseReason, count: u64) {
        if count == 0 {
            return;
        }
        match self.entries.iter_mut().find(|e| e.reason == reason) {
            Some(e) => e.count += count,
            None => self.entries.push(Entry {
                reason,
                count,
                first: None,
            }),
        }
    }

    pub fn total(&self) -> u64 {
        self.entries.iter().map(|e| e.count).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn by_reason(&self) -> impl Iterator<Item = (RefuseReason, u64)> + '_ {
        self.entries.iter().map(|e| (e.reason, e.count))
    }

    /// The `partial_success.error_message`, e.g. "2 of 10 spans refused: 2 with an empty
    /// or all-zero trace or span id (first at resourceSpans[0].scopeSpans[0].spans[3])".
    pub fn message(&self, noun: &str, of: u64) -> String {
        let parts: Vec<String> = self
            .entries
            .iter()
            .map(|e| match &e.first {
                Some(at) => format!("{} with {} (first at {at})", e.count, e.reason.explain()),
                None => format!("{} with {}", e.count, e.reason.explain()),
            })
            .collect();
        format!(
            "{} of {of} {noun} refused: {}",
            self.total(),
            parts.join("; ")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_merge_by_reason_and_keep_the_first_location() {
        let mut r = Refusals::default();
        r.add(RefuseReason::InvalidId, 1, || "a[0]".into());
        r.add(RefuseReason::InvalidId, 2, || "a[5]".into());
        r.add_counted(RefuseReason::OutOfOrder, 3);
        assert_eq!(r.total(), 6);
        assert_eq!(
            r.message("spans", 10),
            "6 of 10 spans refused: 3 with an empty or all-zero trace or span id (first at a[0]); 3 with a timestamp older than the newest sample of its series"
        );
    }
}
