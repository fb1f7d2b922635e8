//! The evaluator: walks the parsed expression at each evaluation time.
//!
//! Before evaluating, one pass over the tree works out for every selector the whole time
//! window any step will read (offsets, `@`, ranges and subqueries included), and loads each
//! selector's series once, decoded. Steps then only binary-search those points, so a range
//! query never re-reads chunks.

use hashbrown::HashMap;
use std::borrow::Cow;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use lastmile_model::{Labels, Matcher, is_stale_nan};
use lastmile_store::Db;
use promql_parser::parser::{AtModifier, Expr, Offset, VectorSelector};

use super::labels_ops::without_name;
use super::value::{Sample, Series, Value};
use super::{PromqlError, QueryOptions};
use crate::selector::vector_selector_sets;

/// A selector's series as loaded: points without staleness markers, and the markers'
/// times apart (they only end a series' visibility).
pub(super) struct LoadedSeries {
    pub metric: Arc<Labels>,
    /// Built on first use: most queries never need it.
    metric_no_name: OnceLock<Arc<Labels>>,
    pub points: Vec<(i64, f64)>,
    pub stale: Vec<i64>,
}

impl LoadedSeries {
    /// The labels without the metric name (what most functions output).
    pub fn metric_no_name(&self) -> &Arc<Labels> {
        no_name_once(&self.metric_no_name, &self.metric)
    }
}

/// `metric` without its name, built on first use into `cell`.
fn no_name_once<'a>(cell: &'a OnceLock<Arc<Labels>>, metric: &Arc<Labels>) -> &'a Arc<Labels> {
    cell.get_or_init(|| Arc::new(without_name(metric)))
}

/// A selector's series selected but not decoded. The step evaluator decodes each on the
/// thread that evaluates it, into a reused buffer, right before using its points: a range
/// query then never holds all its samples at once (decoding everything first cost a large
/// allocation, its page faults, and a second pass over memory).
pub(super) struct DeferredSet {
    pub series: Vec<DeferredSeries>,
    mint: i64,
    maxt: i64,
}

pub(super) struct DeferredSeries {
    pub metric: Arc<Labels>,
    metric_no_name: OnceLock<Arc<Labels>>,
    chunks: lastmile_store::SelectedSeries,
}

impl DeferredSeries {
    pub fn metric_no_name(&self) -> &Arc<Labels> {
        no_name_once(&self.metric_no_name, &self.metric)
    }
}

/// The samples a query may decode, shared by the threads that decode them: an oversized
/// query stops early with a clear error instead of running out of memory.
pub(super) struct SampleBudget {
    used: AtomicUsize,
    limit: usize,
}

impl SampleBudget {
    pub fn charge(&self, n: usize) -> Result<(), PromqlError> {
        if self.used.fetch_add(n, Ordering::Relaxed) + n > self.limit {
            return Err(PromqlError::TooManySamples(self.limit));
        }
        Ok(())
    }
}

/// A series' points and the times of its staleness markers.
pub(super) type PointsAndStale<'s> = (&'s [(i64, f64)], &'s [i64]);

/// A selector to load: its key, matcher sets and the window the plan gave it.
type Planned = (usize, Vec<Vec<Matcher>>, i64, i64);

/// Buffers one thread reuses to decode deferred series.
#[derive(Default)]
pub(super) struct DecodeScratch {
    samples: Vec<lastmile_model::Sample>,
    points: Vec<(i64, f64)>,
    stale: Vec<i64>,
}

impl DeferredSet {
    /// Series `r`'s points and staleness markers, decoded into `scratch`; charged to the
    /// query's sample budget.
    pub fn decode<'s>(
        &self,
        r: usize,
        scratch: &'s mut DecodeScratch,
        ev: &Evaluator<'_>,
    ) -> Result<PointsAndStale<'s>, PromqlError> {
        self.series[r]
            .chunks
            .samples_into(self.mint, self.maxt, &mut scratch.samples);
        scratch.points.clear();
        scratch.stale.clear();
        split_stale(&scratch.samples, &mut scratch.points, &mut scratch.stale);
        ev.budget.charge(scratch.points.len())?;
        Ok((&scratch.points, &scratch.stale))
    }
}

/// Splits decoded samples into points and the times of staleness markers.
fn split_stale(
    samples: &[lastmile_model::Sample],
    points: &mut Vec<(i64, f64)>,
    stale: &mut Vec<i64>,
) {
    for smp in samples {
        if is_stale_nan(smp.v) {
            stale.push(smp.t);
        } else {
            points.push((smp.t, smp.v));
        }
    }
}

/// The input of a range-vector function: each series with its points in the range.
pub(super) struct RangeRow<'a> {
    pub metric: Arc<Labels>,
    pub metric_no_name: Cow<'a, Arc<Labels>>,
    pub points: Cow<'a, [(i64, f64)]>,
}

pub(super) struct Evaluator<'a> {
    db: &'a Db,
    pub opts: &'a QueryOptions,
    /// The query's own start and end, for `@ start()` and `@ end()`.
    pub start: i64,
    pub end: i64,
    data: HashMap<usize, Vec<LoadedSeries>>,
    deferred: HashMap<usize, DeferredSet>,
    windows: HashMap<usize, (i64, i64)>,
    /// Selectors used as instant selectors (not inside a range selector).
    instant: hashbrown::HashSet<usize>,
    deadline: Instant,
    pub(super) budget: SampleBudget,
}

fn key(vs: &VectorSelector) -> usize {
    vs as *const VectorSelector as usize
}

pub(super) fn duration_ms(d: &Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

pub(super) fn offset_ms(o: &Option<Offset>) -> i64 {
    match o {
        None => 0,
        Some(Offset::Pos(d)) => duration_ms(d),
        Some(Offset::Neg(d)) => -duration_ms(d),
    }
}

fn system_time_ms(t: &SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => duration_ms(&d),
        Err(e) => -duration_ms(&e.duration()),
    }
}

impl<'a> Evaluator<'a> {
    pub fn new(db: &'a Db, opts: &'a QueryOptions, start: i64, end: i64) -> Self {
        Evaluator {
            db,
            opts,
            start,
            end,
            data: HashMap::new(),
            deferred: HashMap::new(),
            windows: HashMap::new(),
            instant: hashbrown::HashSet::new(),
            deadline: Instant::now() + opts.timeout,
            budget: SampleBudget {
                used: AtomicUsize::new(0),
                limit: opts.max_samples,
            },
        }
    }

    fn at_ms(&self, at: &Option<AtModifier>) -> Option<i64> {
        at.as_ref().map(|a| match a {
            AtModifier::Start => self.start,
            AtModifier::End => self.end,
            AtModifier::At(t) => system_time_ms(t),
        })
    }

    /// The time a selector or subquery reads at, for an evaluation at `ts`.
    pub(super) fn ref_time(
        &self,
        ts: i64,
        at: &Option<AtModifier>,
        offset: &Option<Offset>,
    ) -> i64 {
        self.at_ms(at)
            .unwrap_or(ts)
            .saturating_sub(offset_ms(offset))
    }

    fn widen(&mut self, vs: &VectorSelector, lo: i64, hi: i64) {
        let w = self.windows.entry(key(vs)).or_insert((lo, hi));
        w.0 = w.0.min(lo);
        w.1 = w.1.max(hi);
    }

    /// Records, for every selector below `e`, the window it will read when `e` is evaluated
    /// at times in `[lo, hi]`.
    pub fn plan(&mut self, e: &Expr, lo: i64, hi: i64) {
        match e {
            Expr::VectorSelector(vs) => {
                let (a, b) = self.ref_window(lo, hi, &vs.at, &vs.offset);
                self.widen(vs, a.saturating_sub(self.opts.lookback_ms), b);
                self.instant.insert(key(vs));
            }
            Expr::MatrixSelector(ms) => {
                let (a, b) = self.ref_window(lo, hi, &ms.vs.at, &ms.vs.offset);
                self.widen(&ms.vs, a.saturating_sub(duration_ms(&ms.range)), b);
            }
            Expr::Subquery(sq) => {
                let (a, b) = self.ref_window(lo, hi, &sq.at, &sq.offset);
                self.plan(&sq.expr, a.saturating_sub(duration_ms(&sq.range)), b);
            }
            Expr::Aggregate(a) => {
                self.plan(&a.expr, lo, hi);
                if let Some(p) = &a.param {
                    self.plan(p, lo, hi);
                }
            }
            Expr::Unary(u) => self.plan(&u.expr, lo, hi),
            Expr::Binary(b) => {
                self.plan(&b.lhs, lo, hi);
                self.plan(&b.rhs, lo, hi);
            }
            Expr::Paren(p) => self.plan(&p.expr, lo, hi),
            Expr::Call(c) => {
                for a in &c.args.args {
                    self.plan(a, lo, hi);
                }
            }
            Expr::NumberLiteral(_) | Expr::StringLiteral(_) | Expr::Extension(_) => {}
        }
    }

    fn ref_window(
        &self,
        lo: i64,
        hi: i64,
        at: &Option<AtModifier>,
        offset: &Option<Offset>,
    ) -> (i64, i64) {
        match self.at_ms(at) {
            Some(t) => {
                let t = t.saturating_sub(offset_ms(offset));
                (t, t)
            }
            None => (
                lo.saturating_sub(offset_ms(offset)),
                hi.saturating_sub(offset_ms(offset)),
            ),
        }
    }

    /// Loads every planned selector's series.
    pub fn load(&mut self, e: &Expr) -> Result<(), PromqlError> {
        for (k, sets, mint, maxt) in self.planned(e, |ev, k| ev.data.contains_key(&k))? {
            // An instant selector read at one time only needs each series' newest sample
            // in the window (a staleness marker there hides the series).
            let latest_only = self.instant.contains(&k) && maxt - mint == self.opts.lookback_ms;
            if let Some(set) = self.deferred.remove(&k) {
                // Selected already for the step evaluator, which declined: decode that
                // selection rather than selecting again.
                let selected = set
                    .series
                    .into_iter()
                    .map(|d| {
                        let mut s = d.chunks;
                        s.labels = Arc::unwrap_or_clone(d.metric);
                        s
                    })
                    .collect();
                let rows = self.decode_selected(selected, mint, maxt, latest_only)?;
                self.data.insert(k, rows);
                continue;
            }
            let mut rows: Vec<LoadedSeries> = Vec::new();
            for set in &sets {
                self.load_set(set, mint, maxt, latest_only, &mut rows)?;
            }
            if sets.len() > 1 {
                rows.sort_by(|a, b| a.metric.cmp(&b.metric));
                rows.dedup_by(|a, b| a.metric == b.metric);
            }
            self.data.insert(k, rows);
        }
        Ok(())
    }

    /// Selects every planned selector's series without decoding them (see
    /// [`DeferredSet`]); only the step evaluator reads these.
    pub fn select_deferred(&mut self, e: &Expr) -> Result<(), PromqlError> {
        for (k, sets, mint, maxt) in self.planned(e, |ev, k| ev.deferred.contains_key(&k))? {
            let mut series = Vec::new();
            for set in &sets {
                let selected = self
                    .db
                    .select(set, mint, maxt, true)
                    .map_err(PromqlError::Storage)?;
                series.extend(selected.into_iter().map(|mut s| DeferredSeries {
                    metric: Arc::new(std::mem::take(&mut s.labels)),
                    metric_no_name: OnceLock::new(),
                    chunks: s,
                }));
            }
            if sets.len() > 1 {
                series.sort_by(|a, b| a.metric.cmp(&b.metric));
                series.dedup_by(|a, b| a.metric == b.metric);
            }
            self.deferred.insert(k, DeferredSet { series, mint, maxt });
        }
        Ok(())
    }

    /// The selectors below `e` not done yet (`done`), each with its matcher sets and the
    /// window the plan gave it.
    fn planned(
        &self,
        e: &Expr,
        done: impl Fn(&Self, usize) -> bool,
    ) -> Result<Vec<Planned>, PromqlError> {
        let mut selectors: Vec<&VectorSelector> = Vec::new();
        collect_selectors(e, &mut selectors);
        let mut out: Vec<Planned> = Vec::new();
        for vs in selectors {
            let k = key(vs);
            if done(self, k) || out.iter().any(|o| o.0 == k) {
                continue;
            }
            let Some(&(mint, maxt)) = self.windows.get(&k) else {
                continue;
            };
            let sets = vector_selector_sets(vs).map_err(|e| PromqlError::BadData(e.to_string()))?;
            out.push((k, sets, mint, maxt));
        }
        Ok(out)
    }

    fn load_set(
        &mut self,
        set: &[Matcher],
        mint: i64,
        maxt: i64,
        latest_only: bool,
        rows: &mut Vec<LoadedSeries>,
    ) -> Result<(), PromqlError> {
        let selected = self
            .db
            .select(set, mint, maxt, true)
            .map_err(PromqlError::Storage)?;
        rows.extend(self.decode_selected(selected, mint, maxt, latest_only)?);
        Ok(())
    }

    /// Decodes selected series, split over the threads, keeping their order (decoding is
    /// most of a query's work).
    fn decode_selected(
        &self,
        mut selected: Vec<lastmile_store::SelectedSeries>,
        mint: i64,
        maxt: i64,
        latest_only: bool,
    ) -> Result<Vec<LoadedSeries>, PromqlError> {
        let threads = self
            .opts
            .parallelism
            .clamp(1, selected.len().div_ceil(256).max(1));
        let per = selected.len().div_ceil(threads).max(1);
        let budget = &self.budget;
        if threads == 1 {
            return decode_series(&mut selected, mint, maxt, latest_only, budget);
        }
        let parts: Vec<Result<Vec<LoadedSeries>, PromqlError>> = std::thread::scope(|scope| {
            let handles: Vec<_> = selected
                .chunks_mut(per)
                .map(|part| {
                    scope.spawn(move || decode_series(part, mint, maxt, latest_only, budget))
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
                .collect()
        });
        let mut rows = Vec::with_capacity(selected.len());
        for part in parts {
            rows.extend(part?);
        }
        Ok(rows)
    }

    /// A selector's loaded series (sorted by labels); None if it was not loaded.
    pub(super) fn rows(&self, vs: &VectorSelector) -> Option<&[LoadedSeries]> {
        self.data.get(&key(vs)).map(Vec::as_slice)
    }

    /// A selector's selected, undecoded series; None if it was not selected that way.
    pub(super) fn deferred(&self, vs: &VectorSelector) -> Option<&DeferredSet> {
        self.deferred.get(&key(vs))
    }

    pub fn check_deadline(&self) -> Result<(), PromqlError> {
        if Instant::now() > self.deadline {
            return Err(PromqlError::Timeout);
        }
        Ok(())
    }

    pub fn eval(&mut self, e: &Expr, ts: i64) -> Result<Value, PromqlError> {
        match e {
            Expr::NumberLiteral(n) => Ok(Value::Scalar(n.val)),
            Expr::StringLiteral(s) => Ok(Value::String(s.val.clone())),
            Expr::Paren(p) => self.eval(&p.expr, ts),
            Expr::Unary(u) => match self.eval(&u.expr, ts)? {
                Value::Scalar(v) => Ok(Value::Scalar(-v)),
                Value::Vector(vec) => Ok(Value::Vector(
                    vec.into_iter()
                        .map(|s| Sample {
                            metric: Arc::new(without_name(&s.metric)),
                            t: ts,
                            v: -s.v,
                        })
                        .collect(),
                )),
                other => Err(PromqlError::BadData(format!(
                    "unary minus on {}",
                    other.type_name()
                ))),
            },
            Expr::VectorSelector(vs) => Ok(Value::Vector(self.instant_selector(vs, ts))),
            Expr::MatrixSelector(_) | Expr::Subquery(_) => {
                let rows = self.range_rows(e, ts)?;
                Ok(Value::Matrix(
                    rows.into_iter()
                        .map(|r| Series {
                            metric: r.metric,
                            points: r.points.into_owned(),
                        })
                        .collect(),
                ))
            }
            Expr::Binary(b) => super::binary::eval_binary(self, b, ts),
            Expr::Aggregate(a) => super::aggregate::eval_aggregate(self, a, ts),
            Expr::Call(c) => super::functions::eval_call(self, c, ts),
            Expr::Extension(_) => Err(PromqlError::BadData("unsupported expression".into())),
        }
    }

    /// The newest sample of each series at most `lookback` before the reference time,
    /// unless a staleness marker came after it.
    pub fn instant_selector(&self, vs: &VectorSelector, ts: i64) -> Vec<Sample> {
        let reft = self.ref_time(ts, &vs.at, &vs.offset);
        let Some(rows) = self.data.get(&key(vs)) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for r in rows {
            let i = r.points.partition_point(|p| p.0 <= reft);
            if i == 0 {
                continue;
            }
            let (t, v) = r.points[i - 1];
            if t < reft.saturating_sub(self.opts.lookback_ms) {
                continue;
            }
            let j = r.stale.partition_point(|&s| s <= reft);
            if j > 0 && r.stale[j - 1] > t {
                continue;
            }
            out.push(Sample {
                metric: r.metric.clone(),
                t,
                v,
            });
        }
        out
    }

    /// The rows a range-vector argument (a matrix selector or a subquery) holds at `ts`.
    pub fn range_rows(&mut self, e: &Expr, ts: i64) -> Result<Vec<RangeRow<'_>>, PromqlError> {
        match e {
            Expr::MatrixSelector(ms) => {
                let reft = self.ref_time(ts, &ms.vs.at, &ms.vs.offset);
                let lo = reft.saturating_sub(duration_ms(&ms.range));
                let Some(rows) = self.data.get(&key(&ms.vs)) else {
                    return Ok(Vec::new());
                };
                Ok(rows
                    .iter()
                    .filter_map(|r| {
                        let a = r.points.partition_point(|p| p.0 < lo);
                        let b = r.points.partition_point(|p| p.0 <= reft);
                        (a < b).then(|| RangeRow {
                            metric: r.metric.clone(),
                            metric_no_name: Cow::Borrowed(r.metric_no_name()),
                            points: Cow::Borrowed(&r.points[a..b]),
                        })
                    })
                    .collect())
            }
            Expr::Subquery(sq) => {
                let reft = self.ref_time(ts, &sq.at, &sq.offset);
                let range = duration_ms(&sq.range);
                let step = sq
                    .step
                    .as_ref()
                    .map(duration_ms)
                    .unwrap_or(self.opts.default_subquery_step_ms)
                    .max(1);
                // Steps aligned to multiples of the step, within [reft - range, reft].
                let lo = reft.saturating_sub(range);
                let mut t = lo.div_euclid(step).saturating_mul(step);
                if t < lo {
                    t = t.saturating_add(step);
                }
                let mut series: HashMap<Arc<Labels>, Vec<(i64, f64)>> = HashMap::new();
                let mut order: Vec<Arc<Labels>> = Vec::new();
                while t <= reft {
                    self.check_deadline()?;
                    match self.eval(&sq.expr, t)? {
                        Value::Vector(v) => {
                            for s in v {
                                let entry = series.entry(s.metric.clone()).or_insert_with(|| {
                                    order.push(s.metric.clone());
                                    Vec::new()
                                });
                                entry.push((t, s.v));
                            }
                        }
                        Value::Scalar(v) => {
                            let m = Arc::new(Labels::default());
                            let entry = series.entry(m.clone()).or_insert_with(|| {
                                order.push(m.clone());
                                Vec::new()
                            });
                            entry.push((t, v));
                        }
                        other => {
                            return Err(PromqlError::BadData(format!(
                                "subquery is only allowed on instant vector, got {}",
                                other.type_name()
                            )));
                        }
                    }
                    match t.checked_add(step) {
                        Some(next) => t = next,
                        None => break,
                    }
                }
                order.sort();
                Ok(order
                    .into_iter()
                    .map(|m| {
                        let points = series.remove(&m).unwrap_or_default();
                        RangeRow {
                            metric_no_name: Cow::Owned(Arc::new(without_name(&m))),
                            metric: m,
                            points: Cow::Owned(points),
                        }
                    })
                    .collect())
            }
            Expr::Paren(p) => self.range_rows(&p.expr, ts),
            other => Err(PromqlError::BadData(format!(
                "expected a range vector, got {}",
                expr_type_name(other)
            ))),
        }
    }
}

/// Decodes series into points (staleness markers apart), taking their labels; only the
/// newest sample of each with `latest_only`. Counts the points into `loaded`; None once
/// that passes `limit`.
fn decode_series(
    series: &mut [lastmile_store::SelectedSeries],
    mint: i64,
    maxt: i64,
    latest_only: bool,
    budget: &SampleBudget,
) -> Result<Vec<LoadedSeries>, PromqlError> {
    let mut buf = Vec::new();
    let mut rows = Vec::with_capacity(series.len());
    for s in series {
        if latest_only {
            buf.clear();
            buf.extend(s.latest(mint, maxt));
        } else {
            s.samples_into(mint, maxt, &mut buf);
        }
        let mut points = Vec::with_capacity(buf.len());
        let mut stale = Vec::new();
        split_stale(&buf, &mut points, &mut stale);
        budget.charge(points.len())?;
        rows.push(LoadedSeries {
            metric: Arc::new(std::mem::take(&mut s.labels)),
            metric_no_name: OnceLock::new(),
            points,
            stale,
        });
    }
    Ok(rows)
}

pub(super) fn expr_type_name(e: &Expr) -> &'static str {
    use promql_parser::parser::value::ValueType;
    match e.value_type() {
        ValueType::Vector => "instant vector",
        ValueType::Scalar => "scalar",
        ValueType::Matrix => "range vector",
        ValueType::String => "string",
    }
}

fn collect_selectors<'e>(e: &'e Expr, out: &mut Vec<&'e VectorSelector>) {
    match e {
        Expr::VectorSelector(vs) => out.push(vs),
        Expr::MatrixSelector(ms) => out.push(&ms.vs),
        Expr::Subquery(s) => collect_selectors(&s.expr, out),
        Expr::Aggregate(a) => {
            collect_selectors(&a.expr, out);
            if let Some(p) = &a.param {
                collect_selectors(p, out);
            }
        }
        Expr::Unary(u) => collect_selectors(&u.expr, out),
        Expr::Binary(b) => {
            collect_selectors(&b.lhs, out);
            collect_selectors(&b.rhs, out);
        }
        Expr::Paren(p) => collect_selectors(&p.expr, out),
        Expr::Call(c) => {
            for a in &c.args.args {
                collect_selectors(a, out);
            }
        }
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) | Expr::Extension(_) => {}
    }
}

/// Fails when two elements of a vector share a label set, as Prometheus does after each
/// function, operator and aggregation.
pub(super) fn check_unique(v: &[Sample]) -> Result<(), PromqlError> {
    if v.len() < 2 {
        return Ok(());
    }
    let mut seen: hashbrown::HashSet<&Labels> = hashbrown::HashSet::with_capacity(v.len());
    for s in v {
        if !seen.insert(&s.metric) {
            return Err(PromqlError::Execution(
                "vector cannot contain metrics with the same labelset".into(),
            ));
        }
    }
    Ok(())
}
