//! Series, label names, label values and raw samples for matcher sets and a time range.

use lastmile_model::time::{MAX_TIME_MS, MIN_TIME_MS};
use lastmile_model::{Labels, Matcher, Sample, is_stale_nan};
use lastmile_store::Db;

use crate::QueryError;

/// An inclusive time range in milliseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimeRange {
    pub start: i64,
    pub end: i64,
}

impl TimeRange {
    /// Unset bounds mean "all time", as in Prometheus's metadata endpoints.
    pub fn new(start: Option<i64>, end: Option<i64>) -> Result<Self, QueryError> {
        let r = TimeRange {
            start: start.unwrap_or(MIN_TIME_MS),
            end: end.unwrap_or(MAX_TIME_MS),
        };
        if r.end < r.start {
            return Err(QueryError::BadData(
                "end timestamp must not be before start time".into(),
            ));
        }
        Ok(r)
    }
}

/// Label sets of the series any matcher set selects, sorted, each once.
pub fn series(
    db: &Db,
    sets: &[Vec<Matcher>],
    range: TimeRange,
    limit: Option<usize>,
) -> Result<Vec<Labels>, QueryError> {
    if sets.is_empty() {
        return Err(QueryError::BadData("no match[] parameter provided".into()));
    }
    let mut out: Vec<Labels> = Vec::new();
    for set in sets {
        out.extend(
            db.select(set, range.start, range.end, false)?
                .into_iter()
                .map(|s| s.labels),
        );
    }
    out.sort();
    out.dedup();
    if let Some(limit) = limit {
        out.truncate(limit);
    }
    Ok(out)
}

pub fn label_names(
    db: &Db,
    sets: &[Vec<Matcher>],
    range: TimeRange,
    limit: Option<usize>,
) -> Result<Vec<String>, QueryError> {
    let mut names = db.label_names(sets, range.start, range.end)?;
    if let Some(limit) = limit {
        names.truncate(limit);
    }
    Ok(names)
}

pub fn label_values(
    db: &Db,
    name: &str,
    sets: &[Vec<Matcher>],
    range: TimeRange,
    limit: Option<usize>,
) -> Result<Vec<String>, QueryError> {
    let mut values = db.label_values(name, sets, range.start, range.end)?;
    if let Some(limit) = limit {
        values.truncate(limit);
    }
    Ok(values)
}

/// One series with its raw samples, staleness markers left out (they are an ingestion
/// detail, not data).
#[derive(Debug, Clone)]
pub struct ExportedSeries {
    pub labels: Labels,
    pub samples: Vec<Sample>,
}

pub fn export(
    db: &Db,
    sets: &[Vec<Matcher>],
    range: TimeRange,
) -> Result<Vec<ExportedSeries>, QueryError> {
    if sets.is_empty() {
        return Err(QueryError::BadData("no match[] parameter provided".into()));
    }
    let mut selected = Vec::new();
    for set in sets {
        selected.extend(db.select(set, range.start, range.end, true)?);
    }
    let merged = lastmile_store::series::merge_sources(vec![selected]);
    Ok(merged
        .into_iter()
        .map(|s| {
            let mut samples = s.samples(range.start, range.end);
            samples.retain(|x| !is_stale_nan(x.v));
            ExportedSeries {
                labels: s.labels,
                samples,
            }
        })
        .filter(|s| !s.samples.is_empty())
        .collect())
}
