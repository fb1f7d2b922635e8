//! A PromQL engine over the store: instant and range queries with Prometheus 2.x
//! semantics. Parsing is `promql-parser`'s; evaluation is ours.

mod aggregate;
mod binary;
mod eval;
mod functions;
mod labels_ops;
pub mod value;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use lastmile_model::Labels;
use lastmile_store::{Db, StoreError};
use promql_parser::parser::value::ValueType;
use promql_parser::parser::{self, Expr};

use eval::Evaluator;
pub use value::{QueryResult, Sample, Series, Value};

#[derive(Clone, Debug)]
pub struct QueryOptions {
    /// How far back an instant selector looks for a sample (Prometheus: 5m).
    pub lookback_ms: i64,
    /// Most samples one query may load before it is refused.
    pub max_samples: usize,
    pub timeout: Duration,
    /// Step of subqueries written without one (Prometheus: the evaluation interval, 1m).
    pub default_subquery_step_ms: i64,
}

impl Default for QueryOptions {
    fn default() -> Self {
        QueryOptions {
            lookback_ms: 5 * 60 * 1000,
            max_samples: 50_000_000,
            timeout: Duration::from_secs(120),
            default_subquery_step_ms: 60_000,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PromqlError {
    /// The query is malformed (Prometheus's `bad_data`).
    #[error("{0}")]
    BadData(String),
    /// The query is well-formed but cannot be evaluated on this data (`execution`).
    #[error("{0}")]
    Execution(String),
    #[error("query timed out in expression evaluation")]
    Timeout,
    #[error(
        "query processing would load too many samples into memory in query execution (limit {0})"
    )]
    TooManySamples(usize),
    #[error("{0}")]
    Storage(StoreError),
}

/// Most points a range query may return per series, as in Prometheus.
pub const MAX_POINTS_PER_SERIES: i64 = 11_000;

pub fn parse(query: &str) -> Result<Expr, PromqlError> {
    parser::parse(query)
        .map_err(|e| PromqlError::BadData(format!("invalid parameter \"query\": {e}")))
}

pub fn instant_query(
    db: &Db,
    query: &str,
    t: i64,
    opts: &QueryOptions,
) -> Result<QueryResult, PromqlError> {
    let expr = parse(query)?;
    let mut ev = Evaluator::new(db, opts, t, t);
    ev.plan(&expr, t, t);
    ev.load(&expr)?;
    let value = ev.eval(&expr, t)?;
    Ok(QueryResult::Instant { t, value })
}

pub fn range_query(
    db: &Db,
    query: &str,
    start: i64,
    end: i64,
    step: i64,
    opts: &QueryOptions,
) -> Result<QueryResult, PromqlError> {
    if step <= 0 {
        return Err(PromqlError::BadData(
            "zero or negative query resolution step widths are not accepted. Try a positive integer".into(),
        ));
    }
    if end < start {
        return Err(PromqlError::BadData(
            "end timestamp must not be before start time".into(),
        ));
    }
    if (end - start) / step > MAX_POINTS_PER_SERIES {
        return Err(PromqlError::BadData(
            "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)".into(),
        ));
    }
    let expr = parse(query)?;
    match expr.value_type() {
        ValueType::Vector | ValueType::Scalar => {}
        other => {
            return Err(PromqlError::BadData(format!(
                "invalid expression type \"{}\" for range query, must be Scalar or instant Vector",
                match other {
                    ValueType::Matrix => "range vector",
                    _ => "string",
                }
            )));
        }
    }
    let mut ev = Evaluator::new(db, opts, start, end);
    ev.plan(&expr, start, end);
    ev.load(&expr)?;
    let mut series: HashMap<Arc<Labels>, Vec<(i64, f64)>> = HashMap::new();
    let mut ts = start;
    while ts <= end {
        ev.check_deadline()?;
        match ev.eval(&expr, ts)? {
            Value::Vector(v) => {
                for s in v {
                    series.entry(s.metric).or_default().push((ts, s.v));
                }
            }
            Value::Scalar(v) => series
                .entry(Arc::new(Labels::default()))
                .or_default()
                .push((ts, v)),
            other => {
                return Err(PromqlError::BadData(format!(
                    "range query returned a {}",
                    other.type_name()
                )));
            }
        }
        ts += step;
    }
    let mut out: Vec<Series> = series
        .into_iter()
        .map(|(metric, points)| Series { metric, points })
        .collect();
    out.sort_by(|a, b| a.metric.cmp(&b.metric));
    Ok(QueryResult::Range(out))
}
