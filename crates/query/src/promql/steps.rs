//! Step-vectorised evaluation of the shapes dashboards ask for most: instant selectors and
//! range functions over selectors (`rate(x[5m])`), aggregations of those (`sum by (job)`,
//! `avg`, `count`, `min`, `max`, `group`, `stddev`, `stdvar`, nested), and
//! `histogram_quantile` over them.
//!
//! The per-step evaluator walks the whole expression once per step and rebuilds label
//! sets, groups and vectors every time. Here each input series is processed once for all
//! steps: a selector's or range function's cursor slides forward through the series'
//! decoded points (no binary searches, no re-reading), group membership is worked out once
//! per series instead of once per series and step, and the aggregation adds straight into
//! per-step accumulators without materialising the inner vector. Filling series values is
//! spread over threads in blocks; accumulation stays sequential in series order, so every
//! aggregation adds the same numbers in the same order as the per-step evaluator and
//! results are bit-identical to it — except a range `sum`, which each thread computes for
//! its own share of the series (no waiting between blocks) and which then differs from the
//! per-step evaluator's by rounding only.
//!
//! Anything else (other functions, binary operators, `@`, `topk`…) is not planned here and
//! the caller falls back to the per-step evaluator.

use std::sync::Arc;

use lastmile_model::{Labels, METRIC_NAME};
use promql_parser::parser::token::{
    T_AVG, T_COUNT, T_GROUP, T_MAX, T_MIN, T_STDDEV, T_STDVAR, T_SUM,
};
use promql_parser::parser::{Expr, LabelModifier, MatrixSelector, VectorSelector};

use super::PromqlError;
use super::aggregate::incremental_mean;
use super::eval::{
    DecodeScratch, DeferredSet, Evaluator, LoadedSeries, PointsAndStale, duration_ms, offset_ms,
};
use super::functions::{RangeFunc, RateMemo, bucket_quantile, parse_le};
use super::labels_ops::{filtered, grouping_labels, signature_sorted_into, sorted_names};

/// Most values (series × steps) a materialised intermediate may hold; past it the query
/// goes to the per-step evaluator, which holds one step at a time.
const MAX_VALUES: usize = 20_000_000;
/// Values filled per block before they are accumulated (bounds the buffers).
const BLOCK_VALUES: usize = 1 << 18;
/// Below this many values a block is filled on the calling thread.
const PARALLEL_MIN_VALUES: usize = 4096;
/// Most accumulator cells (groups × steps × threads) a parallel `sum` may hold.
const PARALLEL_SUM_MAX_CELLS: usize = 4_000_000;

/// The evaluation times: `start`, `start + step`, … (`n` of them).
#[derive(Clone, Copy, Debug)]
pub(super) struct Grid {
    pub start: i64,
    pub step: i64,
    pub n: usize,
}

impl Grid {
    fn ts(&self, i: usize) -> i64 {
        self.start + i as i64 * self.step
    }
}

/// One output series: a value per step where `present`.
pub(super) struct StepRow {
    pub metric: Arc<Labels>,
    pub vals: Vec<f64>,
    pub present: Vec<bool>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum AggOp {
    Sum,
    Avg,
    Count,
    Group,
    Min,
    Max,
    Stddev,
    Stdvar,
}

enum Node<'e> {
    Selector(&'e VectorSelector),
    RangeFn {
        func: RangeFunc,
        ms: &'e MatrixSelector,
        scalars: Vec<f64>,
    },
    Aggregate {
        op: AggOp,
        names: &'e [String],
        by: bool,
        inner: Box<Node<'e>>,
    },
    HistogramQuantile {
        q: f64,
        inner: Box<Node<'e>>,
    },
}

fn number(e: &Expr) -> Option<f64> {
    match e {
        Expr::NumberLiteral(n) => Some(n.val),
        Expr::Paren(p) => number(&p.expr),
        _ => None,
    }
}

fn plan(e: &Expr) -> Option<Node<'_>> {
    match e {
        Expr::Paren(p) => plan(&p.expr),
        Expr::VectorSelector(vs) if vs.at.is_none() => Some(Node::Selector(vs)),
        Expr::Aggregate(a) if a.param.is_none() => {
            let op = match a.op.id() {
                T_SUM => AggOp::Sum,
                T_AVG => AggOp::Avg,
                T_COUNT => AggOp::Count,
                T_GROUP => AggOp::Group,
                T_MIN => AggOp::Min,
                T_MAX => AggOp::Max,
                T_STDDEV => AggOp::Stddev,
                T_STDVAR => AggOp::Stdvar,
                _ => return None,
            };
            let (names, by): (&[String], bool) = match &a.modifier {
                Some(LabelModifier::Include(l)) => (&l.labels, true),
                Some(LabelModifier::Exclude(l)) => (&l.labels, false),
                None => (&[], true),
            };
            Some(Node::Aggregate {
                op,
                names,
                by,
                inner: Box::new(plan(&a.expr)?),
            })
        }
        Expr::Call(c) => {
            let args: Vec<&Expr> = c.args.args.iter().map(|b| b.as_ref()).collect();
            if c.func.name == "histogram_quantile" {
                return Some(Node::HistogramQuantile {
                    q: number(args.first()?)?,
                    inner: Box::new(plan(args.get(1)?)?),
                });
            }
            let func = RangeFunc::from_name(c.func.name)?;
            // Holt-Winters validates its factors with errors of its own: left to the
            // per-step evaluator.
            let (range_idx, scalar_idx): (usize, &[usize]) = match func {
                RangeFunc::HoltWinters => return None,
                RangeFunc::QuantileOverTime => (1, &[0]),
                RangeFunc::PredictLinear => (0, &[1]),
                _ => (0, &[]),
            };
            let ms = match args.get(range_idx)? {
                Expr::MatrixSelector(ms) if ms.vs.at.is_none() => ms,
                _ => return None,
            };
            let scalars = scalar_idx
                .iter()
                .map(|&i| args.get(i).and_then(|a| number(a)))
                .collect::<Option<Vec<f64>>>()?;
            Some(Node::RangeFn { func, ms, scalars })
        }
        _ => None,
    }
}

/// Whether `e` has a shape this module evaluates (its selectors may then be selected
/// without decoding: see [`Evaluator::select_deferred`]).
pub(super) fn plans(e: &Expr) -> bool {
    plan(e).is_some()
}

/// Evaluates `e` over the grid if its shape is one this module handles; None means "use
/// the per-step evaluator". Rows with no value at any step are left out. With one step
/// the rows come in the order the per-step evaluator produces; with more, in no
/// particular order (range results are sorted by the caller).
pub(super) fn try_eval(
    ev: &Evaluator<'_>,
    e: &Expr,
    grid: Grid,
) -> Option<Result<Vec<StepRow>, PromqlError>> {
    let node = plan(e)?;
    let ctx = Ctx { ev, grid };
    if !ctx.supported(&node) {
        return None;
    }
    match ctx.rows(&node) {
        Ok(Some(rows)) => Some(Ok(rows)),
        Ok(None) => None,
        Err(e) => Some(Err(e)),
    }
}

struct Ctx<'a, 'b> {
    ev: &'a Evaluator<'b>,
    grid: Grid,
}

/// A selector's series: decoded up front (instant queries), or decoded by the thread that
/// fills each one (range queries, see [`DeferredSet`]).
#[derive(Clone, Copy)]
enum Rows<'a> {
    Loaded(&'a [LoadedSeries]),
    Deferred(&'a DeferredSet),
}

impl<'a> Rows<'a> {
    fn len(&self) -> usize {
        match self {
            Rows::Loaded(rows) => rows.len(),
            Rows::Deferred(set) => set.series.len(),
        }
    }

    fn metric(&self, r: usize) -> &'a Arc<Labels> {
        match self {
            Rows::Loaded(rows) => &rows[r].metric,
            Rows::Deferred(set) => &set.series[r].metric,
        }
    }

    fn metric_no_name(&self, r: usize) -> &'a Arc<Labels> {
        match self {
            Rows::Loaded(rows) => rows[r].metric_no_name(),
            Rows::Deferred(set) => set.series[r].metric_no_name(),
        }
    }

    /// Series `r`'s points and staleness-marker times.
    fn points<'s>(
        &self,
        r: usize,
        scratch: &'s mut DecodeScratch,
        ev: &Evaluator<'_>,
    ) -> Result<PointsAndStale<'s>, PromqlError>
    where
        'a: 's,
    {
        match self {
            Rows::Loaded(rows) => Ok((&rows[r].points, &rows[r].stale)),
            Rows::Deferred(set) => set.decode(r, scratch, ev),
        }
    }
}

/// A selector or range function over the series of one selector: values are computed
/// per series on demand.
struct Source<'a> {
    rows: Rows<'a>,
    func: Option<(RangeFunc, i64, &'a [f64])>,
    offset: i64,
    lookback: i64,
}

impl Source<'_> {
    fn drops_name(&self) -> bool {
        matches!(self.func, Some((f, _, _)) if !f.keeps_name())
    }

    /// The series' labels as this node outputs them.
    fn output_metric(&self, r: usize) -> &Arc<Labels> {
        if self.drops_name() {
            self.rows.metric_no_name(r)
        } else {
            self.rows.metric(r)
        }
    }

    /// The series' value at each step of `grid`, cursors sliding forward.
    fn fill(
        &self,
        r: usize,
        grid: Grid,
        vals: &mut [f64],
        present: &mut [bool],
        scratch: &mut DecodeScratch,
        ev: &Evaluator<'_>,
    ) -> Result<(), PromqlError> {
        let (pts, stale) = self.rows.points(r, scratch, ev)?;
        match self.func {
            None => {
                let (mut j, mut k) = (0, 0);
                for i in 0..grid.n {
                    let reft = grid.ts(i) - self.offset;
                    while j < pts.len() && pts[j].0 <= reft {
                        j += 1;
                    }
                    while k < stale.len() && stale[k] <= reft {
                        k += 1;
                    }
                    present[i] = false;
                    if j == 0 {
                        continue;
                    }
                    let (t, v) = pts[j - 1];
                    if t < reft - self.lookback || (k > 0 && stale[k - 1] > t) {
                        continue;
                    }
                    vals[i] = v;
                    present[i] = true;
                }
            }
            Some((func, range, scalars)) => {
                let mut memo = RateMemo::default();
                let (mut a, mut b) = (0, 0);
                for i in 0..grid.n {
                    let ts = grid.ts(i);
                    let reft = ts - self.offset;
                    let lo = reft - range;
                    while a < pts.len() && pts[a].0 < lo {
                        a += 1;
                    }
                    while b < pts.len() && pts[b].0 <= reft {
                        b += 1;
                    }
                    present[i] = false;
                    if a < b
                        && let Some(v) = func.eval(&pts[a..b], reft, range, ts, scalars, &mut memo)
                    {
                        vals[i] = v;
                        present[i] = true;
                    }
                }
            }
        }
        Ok(())
    }
}

/// The input of an aggregation or `histogram_quantile`.
enum Input<'a> {
    Source(Source<'a>),
    Rows(Vec<StepRow>),
}

impl Input<'_> {
    fn len(&self) -> usize {
        match self {
            Input::Source(s) => s.rows.len(),
            Input::Rows(r) => r.len(),
        }
    }

    /// The labels of input row `r` as its node outputs them.
    fn output_metric(&self, r: usize) -> &Arc<Labels> {
        match self {
            Input::Source(s) => s.output_metric(r),
            Input::Rows(rows) => &rows[r].metric,
        }
    }

    /// Labels of row `r` that group exactly as its output labels would under
    /// `by`/`without (names)`, built only when they must be: grouping ignores the metric
    /// name unless `by` lists it.
    fn group_metric(&self, r: usize, names: &[String], by: bool) -> &Arc<Labels> {
        match self {
            Input::Source(s) if !(by && names.iter().any(|n| n == METRIC_NAME)) => s.rows.metric(r),
            _ => self.output_metric(r),
        }
    }
}

impl Ctx<'_, '_> {
    /// Whether every selector below `node` was loaded and a range function's output keeps
    /// label sets unique (otherwise the per-step evaluator reports the duplicate error at
    /// the steps where it happens).
    fn supported(&self, node: &Node<'_>) -> bool {
        match node {
            Node::Selector(vs) => self.series(vs).is_some(),
            Node::RangeFn { func, ms, .. } => match self.series(&ms.vs) {
                None => false,
                Some(rows) => {
                    // Series of one metric stay distinct without the name; only a
                    // selector over several names can produce duplicates.
                    let n = rows.len();
                    let one_name = n == 0 || {
                        let first = rows.metric(0).metric_name();
                        (0..n).all(|r| rows.metric(r).metric_name() == first)
                    };
                    func.keeps_name() || one_name || {
                        let mut seen = std::collections::HashSet::with_capacity(n);
                        (0..n).all(|r| seen.insert(rows.metric_no_name(r).clone()))
                    }
                }
            },
            Node::Aggregate { inner, .. } | Node::HistogramQuantile { inner, .. } => {
                self.supported(inner)
            }
        }
    }

    /// A selector's series, however the evaluator holds them.
    fn series(&self, vs: &VectorSelector) -> Option<Rows<'_>> {
        match self.ev.deferred(vs) {
            Some(set) => Some(Rows::Deferred(set)),
            None => self.ev.rows(vs).map(Rows::Loaded),
        }
    }

    fn input<'s>(&'s self, node: &'s Node<'_>) -> Result<Option<Input<'s>>, PromqlError> {
        let lookback = self.ev.opts.lookback_ms;
        let no_rows = Rows::Loaded(&[]);
        Ok(Some(match node {
            Node::Selector(vs) => Input::Source(Source {
                rows: self.series(vs).unwrap_or(no_rows),
                func: None,
                offset: offset_ms(&vs.offset),
                lookback,
            }),
            Node::RangeFn { func, ms, scalars } => Input::Source(Source {
                rows: self.series(&ms.vs).unwrap_or(no_rows),
                func: Some((*func, duration_ms(&ms.range), scalars)),
                offset: offset_ms(&ms.vs.offset),
                lookback,
            }),
            _ => match self.rows(node)? {
                Some(rows) => Input::Rows(rows),
                None => return Ok(None),
            },
        }))
    }

    fn rows(&self, node: &Node<'_>) -> Result<Option<Vec<StepRow>>, PromqlError> {
        match node {
            Node::Selector(_) | Node::RangeFn { .. } => {
                let Some(input) = self.input(node)? else {
                    return Ok(None);
                };
                if input.len().saturating_mul(self.grid.n) > MAX_VALUES {
                    return Ok(None);
                }
                let mut out = Vec::new();
                self.for_each(&input, |r, vals, present| {
                    if present.iter().any(|&p| p) {
                        out.push(StepRow {
                            metric: input.output_metric(r).clone(),
                            vals: vals.to_vec(),
                            present: present.to_vec(),
                        });
                    }
                })?;
                Ok(Some(out))
            }
            Node::Aggregate {
                op,
                names,
                by,
                inner,
            } => {
                let Some(input) = self.input(inner)? else {
                    return Ok(None);
                };
                self.aggregate(*op, names, *by, &input)
            }
            Node::HistogramQuantile { q, inner } => {
                let Some(input) = self.input(inner)? else {
                    return Ok(None);
                };
                let rows = match input {
                    Input::Rows(rows) => rows,
                    source => {
                        if source.len().saturating_mul(self.grid.n) > MAX_VALUES {
                            return Ok(None);
                        }
                        let mut rows = Vec::with_capacity(source.len());
                        // histogram_quantile drops the name itself: the loaded labels do.
                        self.for_each(&source, |r, vals, present| {
                            rows.push(StepRow {
                                metric: match &source {
                                    Input::Source(s) => s.rows.metric(r).clone(),
                                    Input::Rows(rows) => rows[r].metric.clone(),
                                },
                                vals: vals.to_vec(),
                                present: present.to_vec(),
                            });
                        })?;
                        rows
                    }
                };
                Ok(Some(self.histogram_quantile(*q, &rows)))
            }
        }
    }

    /// Calls `f(row, values, present)` for every input row in order. Source rows are
    /// filled in blocks, the rows of a block split over the threads.
    fn for_each(
        &self,
        input: &Input<'_>,
        mut f: impl FnMut(usize, &[f64], &[bool]),
    ) -> Result<(), PromqlError> {
        let n = self.grid.n;
        let source = match input {
            Input::Rows(rows) => {
                for (r, row) in rows.iter().enumerate() {
                    f(r, &row.vals, &row.present);
                }
                return Ok(());
            }
            Input::Source(s) => s,
        };
        let total = source.rows.len();
        let block = (BLOCK_VALUES / n.max(1)).clamp(1, total.max(1));
        let mut vals = vec![0.0; block * n];
        let mut present = vec![false; block * n];
        let threads = self.ev.opts.parallelism.max(1);
        // One set of decode buffers per thread, kept across blocks.
        let mut scratches: Vec<DecodeScratch> = (0..threads).map(|_| Default::default()).collect();
        let ev = self.ev;
        let mut first = 0;
        while first < total {
            self.ev.check_deadline()?;
            let count = block.min(total - first);
            let (vals, present) = (&mut vals[..count * n], &mut present[..count * n]);
            let grid = self.grid;
            let fill_rows = |from: usize,
                             vals: &mut [f64],
                             present: &mut [bool],
                             scratch: &mut DecodeScratch|
             -> Result<(), PromqlError> {
                for (k, (v, p)) in vals.chunks_mut(n).zip(present.chunks_mut(n)).enumerate() {
                    source.fill(from + k, grid, v, p, scratch, ev)?;
                }
                Ok(())
            };
            if threads > 1 && count * n >= PARALLEL_MIN_VALUES && count >= threads {
                let per = count.div_ceil(threads);
                std::thread::scope(|scope| -> Result<(), PromqlError> {
                    let mut rest_v: &mut [f64] = vals;
                    let mut rest_p: &mut [bool] = present;
                    let mut rest_s: &mut [DecodeScratch] = &mut scratches;
                    let mut from = first;
                    let mut handles = Vec::new();
                    let mut own = Ok(());
                    while !rest_v.is_empty() {
                        let take = (per * n).min(rest_v.len());
                        let (v, rv) = std::mem::take(&mut rest_v).split_at_mut(take);
                        let (p, rp) = std::mem::take(&mut rest_p).split_at_mut(take);
                        let (sc, rs) = std::mem::take(&mut rest_s).split_at_mut(1);
                        (rest_v, rest_p, rest_s) = (rv, rp, rs);
                        let scratch = &mut sc[0];
                        let start = from;
                        from += take / n;
                        if rest_v.is_empty() {
                            // The last share runs on this thread.
                            own = fill_rows(start, v, p, scratch);
                        } else {
                            handles.push(scope.spawn(move || fill_rows(start, v, p, scratch)));
                        }
                    }
                    for h in handles {
                        // A panic in a filler is a bug; propagate it as one.
                        h.join().unwrap_or_else(|p| std::panic::resume_unwind(p))?;
                    }
                    own
                })?;
            } else {
                fill_rows(first, vals, present, &mut scratches[0])?;
            }
            for k in 0..count {
                f(
                    first + k,
                    &vals[k * n..(k + 1) * n],
                    &present[k * n..(k + 1) * n],
                );
            }
            first += count;
        }
        Ok(())
    }

    fn aggregate(
        &self,
        op: AggOp,
        names: &[String],
        by: bool,
        input: &Input<'_>,
    ) -> Result<Option<Vec<StepRow>>, PromqlError> {
        let n = self.grid.n;
        // Group membership, once per series.
        let sig_names = if by {
            sorted_names(names)
        } else {
            names.to_vec()
        };
        let mut index: hashbrown::HashMap<Vec<u8>, usize> = hashbrown::HashMap::new();
        let mut metrics: Vec<Labels> = Vec::new();
        let mut member: Vec<usize> = Vec::with_capacity(input.len());
        let mut key = Vec::with_capacity(128);
        for r in 0..input.len() {
            let m = input.group_metric(r, names, by);
            signature_sorted_into(m, &sig_names, by, &mut key);
            let g = match index.get(key.as_slice()) {
                Some(&g) => g,
                None => {
                    index.insert(key.clone(), metrics.len());
                    metrics.push(grouping_labels(m, names, by));
                    metrics.len() - 1
                }
            };
            member.push(g);
        }
        let groups = metrics.len();
        if groups.saturating_mul(n) > MAX_VALUES {
            return Ok(None);
        }
        let cells = groups * n;
        let mut count = vec![0.0f64; cells];
        // Sum: the sum; Avg: the running mean; Min/Max: the extreme so far; Stddev/Stdvar:
        // Welford's mean (with `m2` its sum of squared deviations).
        let mut acc = vec![
            match op {
                AggOp::Min | AggOp::Max => f64::NAN,
                _ => 0.0,
            };
            if op == AggOp::Count || op == AggOp::Group {
                0
            } else {
                cells
            }
        ];
        let mut m2 = vec![
            0.0f64;
            if matches!(op, AggOp::Stddev | AggOp::Stdvar) {
                cells
            } else {
                0
            }
        ];
        // The first input row of each group at each step: the per-step evaluator's group
        // order, needed when there is one step.
        let mut first = vec![u32::MAX; if n == 1 { groups } else { 0 }];
        if op == AggOp::Sum
            && n > 1
            && let Some((c, a)) = self.sum_in_parallel(input, &member, groups)?
        {
            (count, acc) = (c, a);
        } else {
            self.for_each(input, |r, vals, present| {
                let base = member[r] * n;
                for i in 0..n {
                    if !present[i] {
                        continue;
                    }
                    let (c, v) = (base + i, vals[i]);
                    count[c] += 1.0;
                    match op {
                        AggOp::Sum => acc[c] += v,
                        AggOp::Avg => {
                            acc[c] = if count[c] == 1.0 {
                                v
                            } else {
                                incremental_mean(acc[c], v, count[c])
                            }
                        }
                        AggOp::Count | AggOp::Group => {}
                        AggOp::Min => {
                            if acc[c] > v || acc[c].is_nan() {
                                acc[c] = v;
                            }
                        }
                        AggOp::Max => {
                            if acc[c] < v || acc[c].is_nan() {
                                acc[c] = v;
                            }
                        }
                        AggOp::Stddev | AggOp::Stdvar => {
                            let delta = v - acc[c];
                            acc[c] += delta / count[c];
                            m2[c] += delta * (v - acc[c]);
                        }
                    }
                }
                if n == 1 && present[0] && first[member[r]] == u32::MAX {
                    first[member[r]] = r as u32;
                }
            })?;
        }
        let mut out = Vec::with_capacity(groups);
        for (g, metric) in metrics.into_iter().enumerate() {
            let cells = g * n..(g + 1) * n;
            let present: Vec<bool> = count[cells.clone()].iter().map(|&c| c > 0.0).collect();
            if !present.iter().any(|&p| p) {
                continue;
            }
            let vals: Vec<f64> = cells
                .map(|c| match op {
                    AggOp::Sum | AggOp::Avg | AggOp::Min | AggOp::Max => acc[c],
                    AggOp::Count => count[c],
                    AggOp::Group => 1.0,
                    AggOp::Stdvar => m2[c] / count[c],
                    AggOp::Stddev => (m2[c] / count[c]).sqrt(),
                })
                .collect();
            out.push((
                first.get(g).copied().unwrap_or(0),
                StepRow {
                    metric: Arc::new(metric),
                    vals,
                    present,
                },
            ));
        }
        if n == 1 {
            out.sort_by_key(|(f, _)| *f);
        }
        Ok(Some(out.into_iter().map(|(_, r)| r).collect()))
    }

    /// `sum` over a source with each thread filling and summing its own contiguous share of
    /// the series, the shares' sums then added in order: no thread waits for another
    /// between blocks, as the shared accumulation makes them. The sums differ from the
    /// per-step evaluator's only by rounding (the same numbers, added in another grouping).
    /// Returns the count and sum per group and step, or None where it does not pay.
    #[allow(clippy::type_complexity)]
    fn sum_in_parallel(
        &self,
        input: &Input<'_>,
        member: &[usize],
        groups: usize,
    ) -> Result<Option<(Vec<f64>, Vec<f64>)>, PromqlError> {
        let Input::Source(source) = input else {
            return Ok(None);
        };
        let n = self.grid.n;
        let total = source.rows.len();
        let threads = self.ev.opts.parallelism.max(1);
        let cells = groups * n;
        if threads < 2
            || total < 2 * threads
            || total.saturating_mul(n) < PARALLEL_MIN_VALUES
            || cells.saturating_mul(threads) > PARALLEL_SUM_MAX_CELLS
        {
            return Ok(None);
        }
        let per = total.div_ceil(threads);
        let (ev, grid) = (self.ev, self.grid);
        let share = |rows: std::ops::Range<usize>| -> Result<(Vec<f64>, Vec<f64>), PromqlError> {
            let mut count = vec![0.0f64; cells];
            let mut acc = vec![0.0f64; cells];
            let (mut vals, mut present) = (vec![0.0f64; n], vec![false; n]);
            let mut scratch = DecodeScratch::default();
            for r in rows {
                if r % 256 == 0 {
                    ev.check_deadline()?;
                }
                source.fill(r, grid, &mut vals, &mut present, &mut scratch, ev)?;
                let base = member[r] * n;
                for i in 0..n {
                    if present[i] {
                        count[base + i] += 1.0;
                        acc[base + i] += vals[i];
                    }
                }
            }
            Ok((count, acc))
        };
        let parts: Vec<Result<(Vec<f64>, Vec<f64>), PromqlError>> = std::thread::scope(|scope| {
            let handles: Vec<_> = (1..threads)
                .map(|t| {
                    let rows = (t * per).min(total)..((t + 1) * per).min(total);
                    scope.spawn(move || share(rows))
                })
                .collect();
            let mut parts = vec![share(0..per.min(total))];
            parts.extend(
                handles
                    .into_iter()
                    .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p))),
            );
            parts
        });
        let mut parts = parts.into_iter();
        let Some(first) = parts.next() else {
            return Ok(None);
        };
        let (mut count, mut acc) = first?;
        for part in parts {
            let (c, a) = part?;
            for (x, y) in count.iter_mut().zip(c) {
                *x += y;
            }
            for (x, y) in acc.iter_mut().zip(a) {
                *x += y;
            }
        }
        Ok(Some((count, acc)))
    }

    fn histogram_quantile(&self, q: f64, rows: &[StepRow]) -> Vec<StepRow> {
        let n = self.grid.n;
        // Groups: the series' labels without `le` and the name, in input order; members
        // with their parsed bounds (series whose `le` does not parse are ignored).
        let mut index: hashbrown::HashMap<Labels, usize> = hashbrown::HashMap::new();
        let mut groups: Vec<(Labels, Vec<(usize, f64)>)> = Vec::new();
        for (r, row) in rows.iter().enumerate() {
            let Some(le) = row.metric.get("le").and_then(parse_le) else {
                continue;
            };
            let key = filtered(&row.metric, |l| l != "le" && l != METRIC_NAME);
            let g = *index.entry(key.clone()).or_insert_with(|| {
                groups.push((key, Vec::new()));
                groups.len() - 1
            });
            groups[g].1.push((r, le));
        }
        let mut out = Vec::with_capacity(groups.len());
        let mut buckets = Vec::new();
        for (metric, members) in groups {
            let mut vals = vec![0.0; n];
            let mut present = vec![false; n];
            let mut first = usize::MAX;
            for i in 0..n {
                buckets.clear();
                for &(r, le) in &members {
                    if rows[r].present[i] {
                        buckets.push((le, rows[r].vals[i]));
                        first = first.min(r);
                    }
                }
                if !buckets.is_empty() {
                    vals[i] = bucket_quantile(q, buckets.clone());
                    present[i] = true;
                }
            }
            if first != usize::MAX {
                out.push((
                    first,
                    StepRow {
                        metric: Arc::new(metric),
                        vals,
                        present,
                    },
                ));
            }
        }
        if n == 1 {
            out.sort_by_key(|(f, _)| *f);
        }
        out.into_iter().map(|(_, r)| r).collect()
    }
}

#[cfg(test)]
mod tests {
    //! The vectorised path must give exactly what the per-step evaluator gives: same
    //! series, same order for instant queries, bit-identical values, the same errors.

    use std::sync::Arc;

    use lastmile_model::{STALE_NAN, WriteBatch};
    use lastmile_store::{Db, DbOptions, StoreMetrics};

    use super::super::{
        PromqlError, QueryOptions, QueryResult, Value, instant_query_with, parse, range_query_with,
    };

    type TestSeries = (Vec<(&'static str, String)>, Vec<(i64, f64)>);

    const T0: i64 = 1_700_000_000_000;
    const STEP: i64 = 15_000;
    const POINTS: i64 = 480;

    /// Series of every kind the planner handles, with resets, gaps, staleness markers,
    /// NaN and infinities, duplicate label sets after dropping the name, and histogram
    /// buckets with a repeated bound spelled twice and a group without `+Inf`.
    fn series() -> Vec<TestSeries> {
        let mut out = Vec::new();
        let t = |i: i64| T0 + i * STEP;
        for job in ["api", "db"] {
            for inst in 0..3 {
                for code in ["200", "500"] {
                    let mut v = 0.0;
                    let points: Vec<(i64, f64)> = (0..POINTS)
                        // instance 2 of db starts late and stops early
                        .filter(|&i| !(job == "db" && inst == 2 && !(100..300).contains(&i)))
                        .map(|i| {
                            v += ((i * 7 + inst) % 5) as f64;
                            if i == 200 && inst == 1 {
                                v = 3.0; // a counter reset
                            }
                            (t(i), v)
                        })
                        .collect();
                    out.push((
                        vec![
                            ("__name__", "req_total".to_string()),
                            ("code", code.to_string()),
                            ("instance", format!("i{inst}")),
                            ("job", job.to_string()),
                        ],
                        points,
                    ));
                }
            }
            let gauge: Vec<(i64, f64)> = (0..POINTS)
                .filter(|i| !(150..170).contains(i)) // a 5-minute gap
                .map(|i| {
                    let v = match (job, i) {
                        (_, 90) => f64::NAN,
                        ("db", 95) => f64::INFINITY,
                        (_, 260) => STALE_NAN,
                        _ => ((i * 13) % 17) as f64 - 4.5,
                    };
                    (t(i), v)
                })
                .collect();
            out.push((
                vec![("__name__", "gauge".to_string()), ("job", job.to_string())],
                gauge,
            ));
            for (le, share) in [
                ("0.1", 0.2),
                ("0.5", 0.6),
                ("1", 0.9),
                ("1.0", 0.05),
                ("+Inf", 1.0),
            ] {
                if job == "db" && le == "+Inf" {
                    continue;
                }
                out.push((
                    vec![
                        ("__name__", "lat_bucket".to_string()),
                        ("job", job.to_string()),
                        ("le", le.to_string()),
                    ],
                    (0..POINTS)
                        .map(|i| (t(i), (i as f64 * 10.0 * share).floor()))
                        .collect(),
                ));
            }
        }
        for name in ["dup_a", "dup_b"] {
            out.push((
                vec![("__name__", name.to_string()), ("x", "1".to_string())],
                (0..POINTS)
                    .filter(|i| name == "dup_a" || *i > 240)
                    .map(|i| (t(i), i as f64))
                    .collect(),
            ));
        }
        out
    }

    async fn db(dir: &std::path::Path, flush_half: bool) -> Db {
        let (db, _) =
            Db::open(dir, DbOptions::default(), Arc::new(StoreMetrics::default())).expect("open");
        let data = series();
        // Written in time order, 40 samples per series per batch; optionally the first
        // half is persisted as blocks so queries read blocks and head together.
        for chunk in 0..(POINTS / 40) {
            let lo = T0 + chunk * 40 * STEP;
            let hi = lo + 40 * STEP;
            let mut b = WriteBatch::new();
            for (labels, points) in &data {
                let pts: Vec<_> = points.iter().filter(|p| p.0 >= lo && p.0 < hi).collect();
                if pts.is_empty() {
                    continue;
                }
                b.begin_series();
                for (n, v) in labels {
                    b.push_label(n, v);
                }
                for p in pts {
                    b.push_sample(p.0, p.1);
                }
                b.finish_series().expect("valid series");
            }
            let out = db.write(&b).await.expect("write");
            assert_eq!(out.rejected(), 0);
            if flush_half && chunk == POINTS / 80 {
                db.flush_head().expect("flush");
            }
        }
        db
    }

    const EXPRS: &[&str] = &[
        "req_total",
        "gauge",
        "gauge offset 5m",
        "rate(req_total[5m])",
        "irate(req_total[1m])",
        "increase(req_total[10m] offset 3m)",
        "delta(gauge[5m])",
        "deriv(gauge[10m])",
        "predict_linear(gauge[10m], 600)",
        "changes(gauge[10m])",
        "resets(req_total[30m])",
        "avg_over_time(gauge[5m])",
        "min_over_time(gauge[5m])",
        "max_over_time(gauge[5m])",
        "stddev_over_time(gauge[10m])",
        "quantile_over_time(0.9, gauge[10m])",
        "last_over_time(gauge[5m])",
        "present_over_time(gauge[2m])",
        "count_over_time(req_total[3m])",
        "sum(rate(req_total[5m]))",
        "sum by (job) (rate(req_total[5m]))",
        "sum without (instance) (rate(req_total[5m]))",
        "avg by (code) (irate(req_total[1m]))",
        "count by (job) (req_total)",
        "group by (job, code) (req_total)",
        "min(gauge)",
        "max by (job) (gauge)",
        "min(max_over_time(gauge[5m]))",
        "stddev(gauge)",
        "stdvar by (job) (rate(req_total[5m]))",
        "sum(sum by (job, code) (increase(req_total[10m])))",
        "avg(sum by (job) (req_total))",
        "histogram_quantile(0.9, sum by (le, job) (rate(lat_bucket[5m])))",
        "histogram_quantile(0.5, rate(lat_bucket[5m]))",
        "histogram_quantile(0.99, sum by (le) (rate(lat_bucket[5m])))",
        "histogram_quantile(-1, sum by (le, job) (rate(lat_bucket[5m])))",
        "sum by (x) (rate({__name__=~\"dup_.*\"}[5m]))",
        "rate({__name__=~\"dup_.*\"}[5m])",
        "{__name__=~\"dup_.*\"}",
        "sum(nonexistent)",
        "rate(nonexistent[5m])",
    ];

    /// Equal bits, both NaN, or (a parallel `sum` adds in another grouping) equal to
    /// rounding.
    fn same_value(a: f64, b: f64) -> bool {
        a.to_bits() == b.to_bits()
            || (a.is_nan() && b.is_nan())
            || (a - b).abs() <= 1e-12 * a.abs().max(b.abs())
    }

    fn check(
        expr: &str,
        what: &str,
        a: Result<QueryResult, String>,
        b: Result<QueryResult, String>,
    ) {
        match (a, b) {
            (Err(x), Err(y)) => assert_eq!(x, y, "{expr} {what}: different errors"),
            (Ok(QueryResult::Range(x)), Ok(QueryResult::Range(y))) => {
                assert_eq!(x.len(), y.len(), "{expr} {what}: series count");
                for (s, t) in x.iter().zip(&y) {
                    assert_eq!(s.metric, t.metric, "{expr} {what}");
                    assert_eq!(
                        s.points.len(),
                        t.points.len(),
                        "{expr} {what} {:?}",
                        s.metric
                    );
                    for (p, q) in s.points.iter().zip(&t.points) {
                        assert!(
                            p.0 == q.0 && same_value(p.1, q.1),
                            "{expr} {what} {:?}: {p:?} vs {q:?}",
                            s.metric
                        );
                    }
                }
            }
            (
                Ok(QueryResult::Instant {
                    value: Value::Vector(x),
                    ..
                }),
                Ok(QueryResult::Instant {
                    value: Value::Vector(y),
                    ..
                }),
            ) => {
                let show = |v: &[super::super::Sample]| {
                    v.iter()
                        .map(|s| format!("{:?}={}", s.metric, s.v))
                        .collect::<Vec<_>>()
                };
                assert_eq!(
                    x.len(),
                    y.len(),
                    "{expr} {what}: {:?} vs {:?}",
                    show(&x),
                    show(&y)
                );
                for (s, t) in x.iter().zip(&y) {
                    assert_eq!(s.metric, t.metric, "{expr} {what}: order or labels");
                    assert!(
                        same_value(s.v, t.v),
                        "{expr} {what} {:?}: {} vs {}",
                        s.metric,
                        s.v,
                        t.v
                    );
                }
            }
            (x, y) => panic!("{expr} {what}: {x:?} vs {y:?}"),
        }
    }

    async fn compare_paths(flush_half: bool) {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = db(dir.path(), flush_half).await;
        let mut opts = QueryOptions::default();
        let mut planned = 0;
        for &expr in EXPRS {
            if super::plan(&parse(expr).expect("parses")).is_some() {
                planned += 1;
            }
            for threads in [1, 3] {
                opts.parallelism = threads;
                let end = T0 + POINTS * STEP;
                for t in [
                    T0 - 60_000,
                    T0 + 37 * STEP + 1,
                    T0 + 160 * STEP,
                    T0 + 265 * STEP,
                    end - 1,
                    end + 400_000,
                ] {
                    let a =
                        instant_query_with(&db, expr, t, &opts, true).map_err(|e| e.to_string());
                    let b =
                        instant_query_with(&db, expr, t, &opts, false).map_err(|e| e.to_string());
                    if let Ok(QueryResult::Instant {
                        value: Value::Vector(v),
                        ..
                    }) = &a
                    {
                        // An instant query loads only what one time needs (the newest
                        // sample of instant selectors); a range query ending there loads
                        // whole windows. Their values at that time must agree.
                        let r = range_query_with(&db, expr, t - 1, t, 1, &opts, true)
                            .map_err(|e| e.to_string());
                        let Ok(QueryResult::Range(m)) = r else {
                            panic!("{expr} range to {t}: {r:?}");
                        };
                        let mut from_range: Vec<_> = m
                            .iter()
                            .filter_map(|s| {
                                let p = s.points.iter().find(|p| p.0 == t)?;
                                Some((s.metric.clone(), p.1.to_bits()))
                            })
                            .collect();
                        let mut from_instant: Vec<_> = v
                            .iter()
                            .map(|s| (s.metric.clone(), s.v.to_bits()))
                            .collect();
                        from_range.sort();
                        from_instant.sort();
                        assert_eq!(from_instant, from_range, "{expr} at {t}: instant vs range");
                    }
                    check(expr, &format!("at {t}"), a, b);
                }
                for (start, stop, step) in [
                    (T0 - 600_000, end + 600_000, 60_000),
                    (T0 + 1_000, end, 15_000),
                    (T0 + 3 * STEP, T0 + 300 * STEP, 7_000),
                    (end - 1, end - 1, 1_000),
                ] {
                    let what = format!("range {start}..{stop} step {step}");
                    let a = range_query_with(&db, expr, start, stop, step, &opts, true)
                        .map_err(|e| e.to_string());
                    let b = range_query_with(&db, expr, start, stop, step, &opts, false)
                        .map_err(|e| e.to_string());
                    check(expr, &what, a, b);
                }
            }
        }
        // Most of the list takes the vectorised path (the rest checks the fallback).
        assert!(planned >= EXPRS.len() - 2, "only {planned} planned");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn vectorised_equals_per_step_in_the_head() {
        compare_paths(false).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn vectorised_equals_per_step_across_blocks_and_head() {
        compare_paths(true).await;
    }

    /// The per-query sample limit ends a query with its error, whichever evaluator runs it
    /// and whether series are decoded up front or by the evaluating threads.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_sample_limit_ends_a_query_with_its_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = db(dir.path(), true).await;
        let end = T0 + POINTS * STEP;
        let limit = QueryOptions {
            max_samples: 100,
            ..QueryOptions::default()
        };
        for expr in [
            "sum(rate(req_total[5m]))",
            "rate(req_total[5m])",
            "req_total",
        ] {
            for vectorised in [true, false] {
                let r = range_query_with(&db, expr, T0, end, 60_000, &limit, vectorised);
                assert!(
                    matches!(r, Err(PromqlError::TooManySamples(100))),
                    "{expr} vectorised={vectorised}: {r:?}"
                );
                let r = range_query_with(
                    &db,
                    expr,
                    T0,
                    end,
                    60_000,
                    &QueryOptions::default(),
                    vectorised,
                );
                assert!(
                    r.is_ok(),
                    "{expr} vectorised={vectorised} within the limit: {r:?}"
                );
            }
        }
    }
}
