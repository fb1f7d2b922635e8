//! A decoded write request, borrowing every string from the request buffer.
//!
//! Receivers fill a [`WriteBatch`] series by series; the store consumes it. All series of
//! a request live in a handful of flat vectors, so decoding allocates per request, not per
//! sample or per label.

use std::ops::Range;

use crate::labels::{LabelRef, METRIC_NAME, hash_labels};
use crate::metadata::MetadataRef;
use crate::sample::Sample;

/// One series of a batch: ranges into the batch's flat vectors.
#[derive(Clone, Debug)]
pub struct SeriesInput {
    pub labels: Range<u32>,
    pub samples: Range<u32>,
    pub exemplars: Range<u32>,
    /// Hash of the sorted label set, computed once while decoding.
    pub hash: u64,
}

#[derive(Clone, Debug)]
pub struct ExemplarInput {
    /// Range into [`WriteBatch::exemplar_labels`].
    pub labels: Range<u32>,
    pub t: i64,
    pub v: f64,
}

/// Why a request's series cannot be accepted. The request is rejected as a whole.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum BatchError {
    #[error("series {series}: no {METRIC_NAME} label")]
    MissingMetricName { series: usize },
    #[error("series {series}: empty label name")]
    EmptyLabelName { series: usize },
    #[error("series {series}: duplicate label name {name:?}")]
    DuplicateLabel { series: usize, name: String },
}

/// A series with owned strings, for data lastmile derives itself (span metrics, OTLP
/// conversions, runtime probes); [`WriteBatch::from_owned`] borrows a batch from it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct OwnedSeries {
    pub labels: Vec<(String, String)>,
    pub samples: Vec<Sample>,
    pub exemplars: Vec<OwnedExemplar>,
}

/// An exemplar's labels (e.g. `trace_id`), time and value.
pub type OwnedExemplar = (Vec<(String, String)>, i64, f64);

/// OpenMetrics caps an exemplar's label set at 128 UTF-8 characters.
pub const MAX_EXEMPLAR_LABELS_CHARS: usize = 128;

#[derive(Debug, Default)]
pub struct WriteBatch<'a> {
    pub labels: Vec<LabelRef<'a>>,
    pub samples: Vec<Sample>,
    pub exemplar_labels: Vec<LabelRef<'a>>,
    pub exemplars: Vec<ExemplarInput>,
    pub series: Vec<SeriesInput>,
    pub metadata: Vec<MetadataRef<'a>>,
    /// Exemplars dropped while building because they broke the OpenMetrics limits.
    pub invalid_exemplars: u32,
    open: Option<OpenSeries>,
}

#[derive(Debug)]
struct OpenSeries {
    labels_start: u32,
    samples_start: u32,
    exemplars_start: u32,
}

impl<'a> WriteBatch<'a> {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with_capacity(series: usize, samples: usize) -> Self {
        WriteBatch {
            labels: Vec::with_capacity(series * 8),
            samples: Vec::with_capacity(samples),
            series: Vec::with_capacity(series),
            ..Default::default()
        }
    }

    /// Starts a new series; labels, samples and exemplars pushed until
    /// [`finish_series`](Self::finish_series) belong to it.
    pub fn begin_series(&mut self) {
        debug_assert!(self.open.is_none(), "begin_series twice");
        self.open = Some(OpenSeries {
            labels_start: self.labels.len() as u32,
            samples_start: self.samples.len() as u32,
            exemplars_start: self.exemplars.len() as u32,
        });
    }

    pub fn push_label(&mut self, name: &'a str, value: &'a str) {
        self.labels.push(LabelRef { name, value });
    }

    pub fn push_sample(&mut self, t: i64, v: f64) {
        self.samples.push(Sample { t, v });
    }

    /// Adds an exemplar to the open series; one over the OpenMetrics size limit is
    /// counted in `invalid_exemplars` and dropped, as Prometheus does.
    pub fn push_exemplar(&mut self, labels: &[LabelRef<'a>], t: i64, v: f64) {
        let chars: usize = labels
            .iter()
            .map(|l| l.name.chars().count() + l.value.chars().count())
            .sum();
        if chars > MAX_EXEMPLAR_LABELS_CHARS {
            self.invalid_exemplars += 1;
            return;
        }
        let start = self.exemplar_labels.len() as u32;
        self.exemplar_labels.extend_from_slice(labels);
        self.exemplars.push(ExemplarInput {
            labels: start..self.exemplar_labels.len() as u32,
            t,
            v,
        });
    }

    /// Closes the open series: sorts its labels, drops empty values (absent in
    /// Prometheus), rejects duplicates and a missing metric name, and hashes it.
    pub fn finish_series(&mut self) -> Result<(), BatchError> {
        let open = self
            .open
            .take()
            .expect("finish_series without begin_series");
        let series = self.series.len();
        let start = open.labels_start as usize;
        let labels = &mut self.labels[start..];
        if !labels.is_sorted_by(|a, b| a.name <= b.name) {
            labels.sort_unstable_by(|a, b| a.name.cmp(b.name));
        }
        // Compact away empty values in place.
        let mut keep = start;
        for i in start..self.labels.len() {
            let l = self.labels[i];
            if l.name.is_empty() {
                return Err(BatchError::EmptyLabelName { series });
            }
            if l.value.is_empty() {
                continue;
            }
            if keep > start && self.labels[keep - 1].name == l.name {
                return Err(BatchError::DuplicateLabel {
                    series,
                    name: l.name.to_owned(),
                });
            }
            self.labels[keep] = l;
            keep += 1;
        }
        self.labels.truncate(keep);
        let labels = &self.labels[start..keep];
        if !labels.iter().any(|l| l.name == METRIC_NAME) {
            return Err(BatchError::MissingMetricName { series });
        }
        let hash = hash_labels(labels.iter().copied());
        self.series.push(SeriesInput {
            labels: open.labels_start..keep as u32,
            samples: open.samples_start..self.samples.len() as u32,
            exemplars: open.exemplars_start..self.exemplars.len() as u32,
            hash,
        });
        Ok(())
    }

    /// A batch borrowing from owned series; a series the batch rules refuse (no name,
    /// duplicate label) is an error naming it.
    pub fn from_owned(series: &'a [OwnedSeries]) -> Result<Self, BatchError> {
        let samples = series.iter().map(|s| s.samples.len()).sum();
        let mut b = WriteBatch::with_capacity(series.len(), samples);
        let mut ex_labels = Vec::new();
        for s in series {
            b.begin_series();
            for (n, v) in &s.labels {
                b.push_label(n, v);
            }
            for smp in &s.samples {
                b.push_sample(smp.t, smp.v);
            }
            for (labels, t, v) in &s.exemplars {
                ex_labels.clear();
                ex_labels.extend(labels.iter().map(|(name, value)| LabelRef { name, value }));
                b.push_exemplar(&ex_labels, *t, *v);
            }
            b.finish_series()?;
        }
        Ok(b)
    }

    pub fn series_labels(&self, s: &SeriesInput) -> &[LabelRef<'a>] {
        &self.labels[s.labels.start as usize..s.labels.end as usize]
    }

    pub fn series_samples(&self, s: &SeriesInput) -> &[Sample] {
        &self.samples[s.samples.start as usize..s.samples.end as usize]
    }

    pub fn series_exemplars(&self, s: &SeriesInput) -> &[ExemplarInput] {
        &self.exemplars[s.exemplars.start as usize..s.exemplars.end as usize]
    }

    pub fn exemplar_labels(&self, e: &ExemplarInput) -> &[LabelRef<'a>] {
        &self.exemplar_labels[e.labels.start as usize..e.labels.end as usize]
    }

    pub fn num_samples(&self) -> usize {
        self.samples.len()
    }

    pub fn is_empty(&self) -> bool {
        self.series.is_empty() && self.metadata.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one_series<'a>(
        b: &mut WriteBatch<'a>,
        labels: &[(&'a str, &'a str)],
    ) -> Result<(), BatchError> {
        b.begin_series();
        for (n, v) in labels {
            b.push_label(n, v);
        }
        b.push_sample(1, 1.0);
        b.finish_series()
    }

    #[test]
    fn sorts_and_drops_empty_values() {
        let mut b = WriteBatch::new();
        one_series(&mut b, &[("job", "a"), ("__name__", "up"), ("zone", "")]).unwrap();
        let s = &b.series[0];
        let names: Vec<_> = b.series_labels(s).iter().map(|l| l.name).collect();
        assert_eq!(names, ["__name__", "job"]);
        assert_eq!(
            s.hash,
            crate::Labels::from_pairs([("__name__", "up"), ("job", "a")]).hash()
        );
    }

    #[test]
    fn rejects_duplicates_and_missing_name() {
        let mut b = WriteBatch::new();
        assert_eq!(
            one_series(&mut b, &[("__name__", "up"), ("a", "1"), ("a", "2")]),
            Err(BatchError::DuplicateLabel {
                series: 0,
                name: "a".into()
            })
        );
        let mut b = WriteBatch::new();
        assert_eq!(
            one_series(&mut b, &[("job", "x")]),
            Err(BatchError::MissingMetricName { series: 0 })
        );
    }

    #[test]
    fn oversized_exemplar_is_counted_not_kept() {
        let mut b = WriteBatch::new();
        b.begin_series();
        b.push_label("__name__", "x");
        let long = "a".repeat(200);
        b.push_exemplar(
            &[LabelRef {
                name: "trace_id",
                value: &long,
            }],
            1,
            1.0,
        );
        b.push_exemplar(
            &[LabelRef {
                name: "trace_id",
                value: "abc",
            }],
            1,
            1.0,
        );
        b.finish_series().unwrap();
        assert_eq!(b.invalid_exemplars, 1);
        assert_eq!(b.exemplars.len(), 1);
    }
}
