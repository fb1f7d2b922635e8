//! Evaluates LogQL over the log store.
//!
//! Log queries return the first `limit` lines in `direction` order within
//! `[start, end)`, grouped into streams by their final label set.
//!
//! Metric queries are evaluated at `start, start+step, …` up to and including `end` (no
//! alignment of `start` to the step: the points are where the client asked for them). A
//! range function at time `t` covers the lines with timestamps in `(t - range, t]`
//! (shifted back by `offset`), and a series has no point where its window holds no line.
//! Each line is visited once: it adds to a difference array over the steps whose window
//! contains it, so the cost does not grow with range/step.

use std::collections::{BTreeMap, HashMap};
use std::ops::ControlFlow;

use lastmile_log_store::{Direction, LogStore, LogStoreError, Selection, StreamId};
use lastmile_model::{Labels, Matcher};

use super::ast::*;
use super::parser::{ParseError, parse};
use super::pipeline::{self, ERROR_LABEL};

#[derive(Debug, thiserror::Error)]
pub enum LogqlError {
    #[error("{0}")]
    Parse(#[from] ParseError),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Storage(#[from] LogStoreError),
}

impl LogqlError {
    /// Whether the client is at fault (400) rather than the server (500).
    pub fn is_client_error(&self) -> bool {
        !matches!(self, LogqlError::Storage(_))
    }
}

#[derive(Clone, Debug)]
pub struct LogqlOptions {
    /// Most lines a log query may ask for (Loki's `max_entries_limit_per_query`).
    pub max_entries: usize,
    /// Most points per series of a range query (Loki: 11,000).
    pub max_points: usize,
    /// Most series a metric query may produce.
    pub max_series: usize,
}

impl Default for LogqlOptions {
    fn default() -> Self {
        LogqlOptions {
            max_entries: 5000,
            max_points: 11_000,
            max_series: 20_000,
        }
    }
}

/// A stream of a log query's answer.
#[derive(Clone, Debug, PartialEq)]
pub struct StreamResult {
    pub labels: Labels,
    /// (timestamp ns, line), in the query's direction.
    pub entries: Vec<(i64, String)>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct SeriesResult {
    pub labels: Labels,
    /// (timestamp ns, value), oldest first.
    pub points: Vec<(i64, f64)>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum LogqlResult {
    Streams(Vec<StreamResult>),
    Matrix(Vec<SeriesResult>),
    Vector(Vec<(Labels, i64, f64)>),
}

/// `/loki/api/v1/query_range`.
#[allow(clippy::too_many_arguments)]
pub fn range_query(
    store: &LogStore,
    query: &str,
    start_ns: i64,
    end_ns: i64,
    step_ns: i64,
    limit: usize,
    direction: Direction,
    opts: &LogqlOptions,
) -> Result<LogqlResult, LogqlError> {
    if end_ns < start_ns {
        return Err(LogqlError::BadRequest(
            "the end timestamp must not be before the start time".into(),
        ));
    }
    match parse(query)? {
        Expr::Log(l) => {
            check_limit(limit, opts)?;
            log_query(store, &l, start_ns, end_ns, limit, direction).map(LogqlResult::Streams)
        }
        Expr::Metric(m) => {
            if step_ns <= 0 {
                return Err(LogqlError::BadRequest(
                    "zero or negative query resolution step widths are not accepted. Try a positive integer".into(),
                ));
            }
            let points = (end_ns - start_ns) / step_ns + 1;
            if points as usize > opts.max_points {
                return Err(LogqlError::BadRequest(format!(
                    "exceeded maximum resolution of {} points per timeseries. Try decreasing the query resolution (?step=XX)",
                    opts.max_points
                )));
            }
            let series = metric_query(store, &m, start_ns, end_ns, step_ns, opts)?;
            Ok(LogqlResult::Matrix(series))
        }
    }
}

/// `/loki/api/v1/query`: metric queries at one instant. Log queries are refused, as Loki
/// 3 refuses them.
pub fn instant_query(
    store: &LogStore,
    query: &str,
    time_ns: i64,
    opts: &LogqlOptions,
) -> Result<LogqlResult, LogqlError> {
    match parse(query)? {
        Expr::Log(_) => Err(LogqlError::BadRequest(
            "log queries are not supported as an instant query type, please change your query to a range query type".into(),
        )),
        Expr::Metric(m) => {
            let series = metric_query(store, &m, time_ns, time_ns, 1, opts)?;
            Ok(LogqlResult::Vector(
                series
                    .into_iter()
                    .filter_map(|s| s.points.first().map(|&(t, v)| (s.labels, t, v)))
                    .collect(),
            ))
        }
    }
}

fn check_limit(limit: usize, opts: &LogqlOptions) -> Result<(), LogqlError> {
    if limit > opts.max_entries {
        return Err(LogqlError::BadRequest(format!(
            "max entries limit per query exceeded, limit > max_entries_limit_per_query ({limit} > {})",
            opts.max_entries
        )));
    }
    Ok(())
}

fn selection(
    store: &LogStore,
    matchers: &[Matcher],
    stages: &[Stage],
    start_ns: i64,
    end_ns: i64,
) -> Option<(Selection, Vec<StreamId>)> {
    let streams = store.streams(matchers, start_ns, end_ns.saturating_sub(1));
    if streams.is_empty() {
        return None;
    }
    let mut ids: Vec<StreamId> = streams.iter().map(|s| s.id).collect();
    ids.sort_unstable();
    let mut sel = Selection::new(start_ns, end_ns);
    // Naming every stream would only make the index intersect with all of them.
    if ids.len() < store.stream_count() {
        sel.streams = Some(ids.clone());
    }
    sel.required = pipeline::required_substrings(stages);
    Some((sel, ids))
}

fn log_query(
    store: &LogStore,
    l: &LogExpr,
    start_ns: i64,
    end_ns: i64,
    limit: usize,
    direction: Direction,
) -> Result<Vec<StreamResult>, LogqlError> {
    let Some((sel, _)) = selection(store, &l.matchers, &l.stages, start_ns, end_ns) else {
        return Ok(Vec::new());
    };
    let mut out: BTreeMap<Labels, Vec<(i64, String)>> = BTreeMap::new();
    let mut n = 0usize;
    if limit == 0 {
        return Ok(Vec::new());
    }
    store.for_each_line_ordered(&sel, direction, |line| {
        let Some(entry) = line.entry else {
            return ControlFlow::Continue(());
        };
        if let Some((text, labels)) = pipeline::run(&l.stages, &line.stream.labels, entry) {
            out.entry(labels.to_labels())
                .or_default()
                .push((line.timestamp_ns, text.into_owned()));
            n += 1;
            if n >= limit {
                return ControlFlow::Break(());
            }
        }
        ControlFlow::Continue(())
    })?;
    Ok(out
        .into_iter()
        .map(|(labels, entries)| StreamResult { labels, entries })
        .collect())
}

/// Per-series accumulators over the steps, as difference arrays.
struct Acc {
    labels: Labels,
    count: Vec<i64>,
    bytes: Vec<i64>,
}

fn metric_query(
    store: &LogStore,
    m: &MetricExpr,
    start_ns: i64,
    end_ns: i64,
    step_ns: i64,
    opts: &LogqlOptions,
) -> Result<Vec<SeriesResult>, LogqlError> {
    let (log, func, range_ns, offset_ns) = m.log();
    let steps = ((end_ns - start_ns) / step_ns + 1) as usize;
    // Lines with ts in (t - offset - range, t - offset] for some step t.
    let data_start = start_ns
        .saturating_sub(offset_ns)
        .saturating_sub(range_ns)
        .saturating_add(1);
    let data_end = end_ns.saturating_sub(offset_ns).saturating_add(1);
    let mut series = match selection(store, &log.matchers, &log.stages, data_start, data_end) {
        None => Vec::new(),
        Some((sel, ids)) => {
            let need_line = pipeline::needs_line(&log.stages) || store.any_metadata(&ids);
            let mut accs: Vec<Acc> = Vec::new();
            let mut by_labels: HashMap<Labels, usize> = HashMap::new();
            let mut by_stream: HashMap<StreamId, usize> = HashMap::new();
            let mut too_many = false;
            let window = |ts: i64| -> Option<(usize, usize)> {
                // Steps t_k = start + k*step with ts + offset <= t_k < ts + offset + range.
                let lo = ts.saturating_add(offset_ns).saturating_sub(start_ns);
                let hi = lo.saturating_add(range_ns);
                let k0 = ceil_div(lo, step_ns).max(0);
                let k1 = (ceil_div(hi, step_ns) - 1).min(steps as i64 - 1);
                (k0 <= k1).then_some((k0 as usize, k1 as usize))
            };
            let add = |accs: &mut Vec<Acc>, i: usize, ts: i64, len: usize| {
                if let Some((k0, k1)) = window(ts) {
                    let a = &mut accs[i];
                    a.count[k0] += 1;
                    a.count[k1 + 1] -= 1;
                    a.bytes[k0] += len as i64;
                    a.bytes[k1 + 1] -= len as i64;
                }
            };
            let new_acc = |labels: Labels| Acc {
                labels,
                count: vec![0; steps + 1],
                bytes: vec![0; steps + 1],
            };
            // Lines come a chunk (one stream) at a time: most lookups are the last one.
            let mut last_stream: Option<(StreamId, usize)> = None;
            store.for_each_line(&sel, need_line, |line| {
                if !need_line {
                    let i = match last_stream {
                        Some((id, i)) if id == line.stream.id => i,
                        _ => {
                            let i = *by_stream.entry(line.stream.id).or_insert_with(|| {
                                accs.push(new_acc(line.stream.labels.clone()));
                                accs.len() - 1
                            });
                            last_stream = Some((line.stream.id, i));
                            i
                        }
                    };
                    add(&mut accs, i, line.timestamp_ns, line.line_len);
                    return ControlFlow::Continue(());
                }
                let Some(entry) = line.entry else {
                    return ControlFlow::Continue(());
                };
                let Some((text, labels)) = pipeline::run(&log.stages, &line.stream.labels, entry)
                else {
                    return ControlFlow::Continue(());
                };
                let labels = labels.to_labels();
                let i = match by_labels.get(&labels) {
                    Some(&i) => i,
                    None => {
                        if accs.len() >= opts.max_series {
                            too_many = true;
                            return ControlFlow::Break(());
                        }
                        accs.push(new_acc(labels.clone()));
                        by_labels.insert(labels, accs.len() - 1);
                        accs.len() - 1
                    }
                };
                // Bytes of the line as the pipeline leaves it (after line_format).
                add(&mut accs, i, line.timestamp_ns, text.len());
                ControlFlow::Continue(())
            })?;
            if too_many {
                return Err(LogqlError::BadRequest(format!(
                    "maximum number of series ({}) reached for a single query",
                    opts.max_series
                )));
            }
            let range_secs = range_ns as f64 / 1e9;
            accs.into_iter()
                .filter_map(|a| {
                    if let Some(err) = a.labels.get(ERROR_LABEL) {
                        return Some(Err(LogqlError::BadRequest(format!(
                            "pipeline error: '{err}' for series: '{}'. Use a label filter to intentionally skip this error. (e.g | __error__!=\"{err}\"). To skip all potential errors you can match empty errors.(e.g __error__=\"\") The label filter can also be specific to an operation or label.",
                            loki_labels(&a.labels)
                        ))));
                    }
                    let (mut c, mut b) = (0i64, 0i64);
                    let mut points = Vec::new();
                    for k in 0..steps {
                        c += a.count[k];
                        b += a.bytes[k];
                        if c > 0 {
                            let t = start_ns + k as i64 * step_ns;
                            let v = match func {
                                RangeFunc::CountOverTime => c as f64,
                                RangeFunc::Rate => c as f64 / range_secs,
                                RangeFunc::BytesOverTime => b as f64,
                                RangeFunc::BytesRate => b as f64 / range_secs,
                            };
                            points.push((t, v));
                        }
                    }
                    (!points.is_empty()).then_some(Ok(SeriesResult {
                        labels: a.labels,
                        points,
                    }))
                })
                .collect::<Result<Vec<_>, _>>()?
        }
    };
    series = apply_aggregations(m, series, start_ns, step_ns, steps);
    series.sort_by(|a, b| a.labels.cmp(&b.labels));
    Ok(series)
}

fn ceil_div(a: i64, b: i64) -> i64 {
    let q = a.div_euclid(b);
    if a.rem_euclid(b) != 0 { q + 1 } else { q }
}

/// Labels the way Loki prints them in messages: `{a="b", c="d"}`.
pub fn loki_labels(l: &Labels) -> String {
    let mut s = String::from("{");
    for (i, p) in l.iter().enumerate() {
        if i > 0 {
            s.push_str(", ");
        }
        s.push_str(&format!("{}={:?}", p.name, p.value));
    }
    s.push('}');
    s
}

fn apply_aggregations(
    m: &MetricExpr,
    series: Vec<SeriesResult>,
    start_ns: i64,
    step_ns: i64,
    steps: usize,
) -> Vec<SeriesResult> {
    match m {
        MetricExpr::Range { .. } => series,
        MetricExpr::Aggregate {
            op,
            param,
            grouping,
            inner,
        } => {
            let inner = apply_aggregations(inner, series, start_ns, step_ns, steps);
            aggregate(
                *op,
                *param,
                grouping.as_ref(),
                inner,
                start_ns,
                step_ns,
                steps,
            )
        }
    }
}

fn group_labels(l: &Labels, g: Option<&Grouping>) -> Labels {
    match g {
        None => Labels::default(),
        Some(Grouping::By(names)) => Labels::from_pairs(
            l.iter()
                .filter(|p| names.iter().any(|n| n == p.name))
                .map(|p| (p.name.to_string(), p.value.to_string())),
        ),
        Some(Grouping::Without(names)) => Labels::from_pairs(
            l.iter()
                .filter(|p| !names.iter().any(|n| n == p.name))
                .map(|p| (p.name.to_string(), p.value.to_string())),
        ),
    }
}

fn aggregate(
    op: AggOp,
    param: Option<usize>,
    grouping: Option<&Grouping>,
    series: Vec<SeriesResult>,
    start_ns: i64,
    step_ns: i64,
    steps: usize,
) -> Vec<SeriesResult> {
    let step_of = |t: i64| ((t - start_ns) / step_ns) as usize;
    let groups: Vec<Labels> = series
        .iter()
        .map(|s| group_labels(&s.labels, grouping))
        .collect();
    if matches!(op, AggOp::Topk | AggOp::Bottomk) {
        let k = param.unwrap_or(1);
        // Per step and group, the k best series; each keeps its own labels.
        let mut keep: Vec<Vec<bool>> = series.iter().map(|s| vec![false; s.points.len()]).collect();
        // Per step: group → (value, series index, point index).
        type Candidates<'a> = HashMap<&'a Labels, Vec<(f64, usize, usize)>>;
        let mut by_step: Vec<Candidates> = (0..steps).map(|_| HashMap::new()).collect();
        for (si, s) in series.iter().enumerate() {
            for (pi, &(t, v)) in s.points.iter().enumerate() {
                by_step[step_of(t)]
                    .entry(&groups[si])
                    .or_default()
                    .push((v, si, pi));
            }
        }
        for step in by_step {
            for (_, mut cands) in step {
                cands.sort_by(|a, b| {
                    let ord = a.0.partial_cmp(&b.0).unwrap_or(std::cmp::Ordering::Equal);
                    if op == AggOp::Topk {
                        ord.reverse()
                    } else {
                        ord
                    }
                    .then_with(|| series[a.1].labels.cmp(&series[b.1].labels))
                });
                for &(_, si, pi) in cands.iter().take(k) {
                    keep[si][pi] = true;
                }
            }
        }
        return series
            .into_iter()
            .zip(keep)
            .filter_map(|(s, keep)| {
                let points: Vec<(i64, f64)> = s
                    .points
                    .into_iter()
                    .zip(keep)
                    .filter_map(|(p, k)| k.then_some(p))
                    .collect();
                (!points.is_empty()).then_some(SeriesResult {
                    labels: s.labels,
                    points,
                })
            })
            .collect();
    }
    // (sum, count, min, max) per group and step.
    type Slot = Option<(f64, f64, f64, f64)>;
    let mut acc: BTreeMap<Labels, Vec<Slot>> = BTreeMap::new();
    for (s, g) in series.iter().zip(groups) {
        let slots = acc.entry(g).or_insert_with(|| vec![None; steps]);
        for &(t, v) in &s.points {
            let slot = &mut slots[step_of(t)];
            *slot = Some(match *slot {
                None => (v, 1.0, v, v),
                Some((sum, n, lo, hi)) => (sum + v, n + 1.0, lo.min(v), hi.max(v)),
            });
        }
    }
    acc.into_iter()
        .map(|(labels, slots)| SeriesResult {
            labels,
            points: slots
                .into_iter()
                .enumerate()
                .filter_map(|(k, s)| {
                    let (sum, n, lo, hi) = s?;
                    let v = match op {
                        AggOp::Sum => sum,
                        AggOp::Avg => sum / n,
                        AggOp::Min => lo,
                        AggOp::Max => hi,
                        AggOp::Count => n,
                        AggOp::Topk | AggOp::Bottomk => unreachable!("handled above"),
                    };
                    Some((start_ns + k as i64 * step_ns, v))
                })
                .collect(),
        })
        .collect()
}

/// `/loki/api/v1/series`: the label sets of streams matching any of the selectors.
pub fn series(
    store: &LogStore,
    selectors: &[Vec<Matcher>],
    start_ns: i64,
    end_ns: i64,
) -> Vec<Labels> {
    let mut out: Vec<Labels> = Vec::new();
    for m in selectors {
        out.extend(
            store
                .streams(m, start_ns, end_ns)
                .into_iter()
                .map(|s| s.labels.clone()),
        );
    }
    out.sort();
    out.dedup();
    out
}
