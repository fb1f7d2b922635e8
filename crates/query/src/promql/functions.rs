//! PromQL functions, with Prometheus 2.x's formulas (extrapolated rates, linear regression,
//! Holt-Winters, bucket quantiles) and Go's float semantics where they differ from Rust's.

use std::sync::Arc;

use lastmile_model::{Label, Labels, METRIC_NAME, MatchOp};
use promql_parser::parser::{Call, Expr};
use regex::Regex;

use super::PromqlError;
use super::aggregate::is_valid_label_name;
use super::eval::{Evaluator, RangeRow, check_unique, duration_ms};
use super::labels_ops::{filtered, with_label, without_name};
use super::value::{Sample, Value};

/// Go's `math.Max`: +Inf wins, then NaN (Rust's `f64::max` ignores NaN).
fn go_max(a: f64, b: f64) -> f64 {
    if a == f64::INFINITY || b == f64::INFINITY {
        f64::INFINITY
    } else if a.is_nan() || b.is_nan() {
        f64::NAN
    } else {
        a.max(b)
    }
}

/// Go's `math.Min`: -Inf wins, then NaN.
fn go_min(a: f64, b: f64) -> f64 {
    if a == f64::NEG_INFINITY || b == f64::NEG_INFINITY {
        f64::NEG_INFINITY
    } else if a.is_nan() || b.is_nan() {
        f64::NAN
    } else {
        a.min(b)
    }
}

/// Go's `math.Log` on amd64 (what Prometheus runs): its assembly reads the exponent field
/// directly, so a subnormal input is taken as `1.mantissa × 2^-1023`.
fn go_ln(x: f64) -> f64 {
    if x > 0.0 && x < f64::MIN_POSITIVE {
        let mantissa = x.to_bits() & ((1u64 << 52) - 1);
        (1.0 + mantissa as f64 / (1u64 << 52) as f64).ln() - 1023.0 * std::f64::consts::LN_2
    } else {
        x.ln()
    }
}

/// Go's `math.Asinh`, which stays finite for huge inputs where `x*x` overflows.
fn go_asinh(x: f64) -> f64 {
    if x.is_nan() || x.is_infinite() {
        return x;
    }
    let (neg, a) = (x < 0.0, x.abs());
    let t = if a > (1u64 << 28) as f64 {
        go_ln(a) + std::f64::consts::LN_2
    } else if a > 2.0 {
        go_ln(2.0 * a + 1.0 / ((a * a + 1.0).sqrt() + a))
    } else if a < 1.0 / (1u64 << 28) as f64 {
        a
    } else {
        (a + a * a / (1.0 + (1.0 + a * a).sqrt())).ln_1p()
    };
    if neg { -t } else { t }
}

fn scalar_arg(ev: &mut Evaluator<'_>, e: &Expr, ts: i64) -> Result<f64, PromqlError> {
    match ev.eval(e, ts)? {
        Value::Scalar(v) => Ok(v),
        other => Err(PromqlError::BadData(format!(
            "expected scalar argument, got {}",
            other.type_name()
        ))),
    }
}

fn string_arg(ev: &mut Evaluator<'_>, e: &Expr, ts: i64) -> Result<String, PromqlError> {
    match ev.eval(e, ts)? {
        Value::String(s) => Ok(s),
        other => Err(PromqlError::BadData(format!(
            "expected string argument, got {}",
            other.type_name()
        ))),
    }
}

fn vector_arg(ev: &mut Evaluator<'_>, e: &Expr, ts: i64) -> Result<Vec<Sample>, PromqlError> {
    match ev.eval(e, ts)? {
        Value::Vector(v) => Ok(v),
        other => Err(PromqlError::BadData(format!(
            "expected instant vector argument, got {}",
            other.type_name()
        ))),
    }
}

/// Orders values ascending (or descending), with NaN last either way: the order of
/// `sort`, `sort_desc`, `topk` and `bottomk`.
pub(super) fn nan_last(a: f64, b: f64, desc: bool) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    match (a.is_nan(), b.is_nan()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Greater,
        (false, true) => Ordering::Less,
        _ if desc => b.partial_cmp(&a).unwrap_or(Ordering::Equal),
        _ => a.partial_cmp(&b).unwrap_or(Ordering::Equal),
    }
}

/// Applies `f` to every value, dropping the metric name.
fn map_values(v: Vec<Sample>, ts: i64, f: impl Fn(f64) -> f64) -> Vec<Sample> {
    v.into_iter()
        .map(|s| Sample {
            metric: Arc::new(without_name(&s.metric)),
            t: ts,
            v: f(s.v),
        })
        .collect()
}

fn math_fn(name: &str) -> Option<fn(f64) -> f64> {
    Some(match name {
        "abs" => f64::abs,
        "ceil" => f64::ceil,
        "floor" => f64::floor,
        "exp" => f64::exp,
        "sqrt" => f64::sqrt,
        "ln" => go_ln,
        "log2" => f64::log2,
        "log10" => |v: f64| go_ln(v) * (1.0 / std::f64::consts::LN_10),
        "sgn" => |v: f64| {
            if v < 0.0 {
                -1.0
            } else if v > 0.0 {
                1.0
            } else {
                v
            }
        },
        "deg" => |v: f64| v * 180.0 / std::f64::consts::PI,
        "rad" => |v: f64| v * std::f64::consts::PI / 180.0,
        "acos" => f64::acos,
        "acosh" => f64::acosh,
        "asin" => f64::asin,
        "asinh" => go_asinh,
        "atan" => f64::atan,
        "atanh" => f64::atanh,
        "cos" => f64::cos,
        "cosh" => f64::cosh,
        "sin" => f64::sin,
        "sinh" => f64::sinh,
        "tan" => f64::tan,
        "tanh" => f64::tanh,
        _ => return None,
    })
}

pub(super) fn eval_call(ev: &mut Evaluator<'_>, c: &Call, ts: i64) -> Result<Value, PromqlError> {
    let name = c.func.name;
    let args: Vec<&Expr> = c.args.args.iter().map(|b| b.as_ref()).collect();
    let out: Vec<Sample> = if let Some(f) = math_fn(name) {
        map_values(vector_arg(ev, args[0], ts)?, ts, f)
    } else {
        match name {
            "time" => return Ok(Value::Scalar(ts as f64 / 1000.0)),
            "pi" => return Ok(Value::Scalar(std::f64::consts::PI)),
            "scalar" => {
                let v = vector_arg(ev, args[0], ts)?;
                return Ok(Value::Scalar(if v.len() == 1 { v[0].v } else { f64::NAN }));
            }
            "vector" => {
                let v = scalar_arg(ev, args[0], ts)?;
                vec![Sample {
                    metric: Arc::new(Labels::default()),
                    t: ts,
                    v,
                }]
            }
            "round" => {
                let v = vector_arg(ev, args[0], ts)?;
                let to = if args.len() > 1 {
                    scalar_arg(ev, args[1], ts)?
                } else {
                    1.0
                };
                let inv = 1.0 / to;
                map_values(v, ts, |x| (x * inv + 0.5).floor() / inv)
            }
            "clamp" => {
                let v = vector_arg(ev, args[0], ts)?;
                let (lo, hi) = (scalar_arg(ev, args[1], ts)?, scalar_arg(ev, args[2], ts)?);
                if hi < lo {
                    Vec::new()
                } else {
                    map_values(v, ts, |x| go_max(lo, go_min(hi, x)))
                }
            }
            "clamp_min" => {
                let v = vector_arg(ev, args[0], ts)?;
                let lo = scalar_arg(ev, args[1], ts)?;
                map_values(v, ts, |x| go_max(lo, x))
            }
            "clamp_max" => {
                let v = vector_arg(ev, args[0], ts)?;
                let hi = scalar_arg(ev, args[1], ts)?;
                map_values(v, ts, |x| go_min(hi, x))
            }
            "timestamp" => vector_arg(ev, args[0], ts)?
                .into_iter()
                .map(|s| Sample {
                    metric: Arc::new(without_name(&s.metric)),
                    t: ts,
                    v: s.t as f64 / 1000.0,
                })
                .collect(),
            "year" | "month" | "day_of_month" | "day_of_week" | "day_of_year" | "days_in_month"
            | "hour" | "minute" => {
                let v = match args.first() {
                    Some(a) => vector_arg(ev, a, ts)?,
                    None => vec![Sample {
                        metric: Arc::new(Labels::default()),
                        t: ts,
                        v: ts as f64 / 1000.0,
                    }],
                };
                map_values(v, ts, |x| date_part(name, x))
            }
            "sort" | "sort_desc" => {
                let mut v = vector_arg(ev, args[0], ts)?;
                let desc = name == "sort_desc";
                // NaN sorts last either way.
                v.sort_by(|a, b| nan_last(a.v, b.v, desc));
                v.into_iter().map(|s| Sample { t: ts, ..s }).collect()
            }
            "label_replace" => label_replace(ev, &args, ts)?,
            "label_join" => label_join(ev, &args, ts)?,
            "histogram_quantile" => {
                let q = scalar_arg(ev, args[0], ts)?;
                histogram_quantile(q, vector_arg(ev, args[1], ts)?, ts)
            }
            "absent" => {
                if vector_arg(ev, args[0], ts)?.is_empty() {
                    vec![Sample {
                        metric: Arc::new(absent_labels(args[0])),
                        t: ts,
                        v: 1.0,
                    }]
                } else {
                    Vec::new()
                }
            }
            "absent_over_time" => {
                if ev.range_rows(args[0], ts)?.is_empty() {
                    vec![Sample {
                        metric: Arc::new(absent_labels(args[0])),
                        t: ts,
                        v: 1.0,
                    }]
                } else {
                    Vec::new()
                }
            }
            _ => range_function(ev, name, &args, ts)?,
        }
    };
    check_unique(&out)?;
    Ok(Value::Vector(out))
}

/// Functions over a range vector: one output element per input series.
fn range_function(
    ev: &mut Evaluator<'_>,
    name: &str,
    args: &[&Expr],
    ts: i64,
) -> Result<Vec<Sample>, PromqlError> {
    // The range argument's position, and the scalar arguments around it.
    let (range_idx, scalars): (usize, Vec<f64>) = match name {
        "quantile_over_time" => (1, vec![scalar_arg(ev, args[0], ts)?]),
        "predict_linear" => (0, vec![scalar_arg(ev, args[1], ts)?]),
        "holt_winters" | "double_exponential_smoothing" => (
            0,
            vec![scalar_arg(ev, args[1], ts)?, scalar_arg(ev, args[2], ts)?],
        ),
        _ => (0, Vec::new()),
    };
    if name == "holt_winters" || name == "double_exponential_smoothing" {
        let (sf, tf) = (scalars[0], scalars[1]);
        if sf <= 0.0 || sf >= 1.0 {
            return Err(PromqlError::Execution(format!(
                "invalid smoothing factor. Expected: 0 < sf < 1, got: {sf}"
            )));
        }
        if tf <= 0.0 || tf >= 1.0 {
            return Err(PromqlError::Execution(format!(
                "invalid trend factor. Expected: 0 < tf < 1, got: {tf}"
            )));
        }
    }
    let func = RangeFunc::from_name(name)
        .ok_or_else(|| PromqlError::BadData(format!("function {name:?} is not supported")))?;
    let (range_end, range_ms) = range_window(ev, args[range_idx], ts);
    let rows = ev.range_rows(args[range_idx], ts)?;
    let keep_name = func.keeps_name();
    let mut out = Vec::with_capacity(rows.len());
    let mut memo = RateMemo::default();
    for RangeRow {
        metric,
        metric_no_name,
        points,
    } in rows
    {
        if let Some(v) = func.eval(&points, range_end, range_ms, ts, &scalars, &mut memo) {
            out.push(Sample {
                metric: if keep_name {
                    metric
                } else {
                    metric_no_name.into_owned()
                },
                t: ts,
                v,
            });
        }
    }
    Ok(out)
}

/// The functions over a range vector that map each series' window to at most one value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum RangeFunc {
    Rate,
    Increase,
    Delta,
    Irate,
    Idelta,
    Deriv,
    PredictLinear,
    HoltWinters,
    Resets,
    Changes,
    AvgOverTime,
    SumOverTime,
    CountOverTime,
    MinOverTime,
    MaxOverTime,
    StddevOverTime,
    StdvarOverTime,
    QuantileOverTime,
    LastOverTime,
    PresentOverTime,
}

impl RangeFunc {
    pub fn from_name(name: &str) -> Option<RangeFunc> {
        use RangeFunc::*;
        Some(match name {
            "rate" => Rate,
            "increase" => Increase,
            "delta" => Delta,
            "irate" => Irate,
            "idelta" => Idelta,
            "deriv" => Deriv,
            "predict_linear" => PredictLinear,
            "holt_winters" | "double_exponential_smoothing" => HoltWinters,
            "resets" => Resets,
            "changes" => Changes,
            "avg_over_time" => AvgOverTime,
            "sum_over_time" => SumOverTime,
            "count_over_time" => CountOverTime,
            "min_over_time" => MinOverTime,
            "max_over_time" => MaxOverTime,
            "stddev_over_time" => StddevOverTime,
            "stdvar_over_time" => StdvarOverTime,
            "quantile_over_time" => QuantileOverTime,
            "last_over_time" => LastOverTime,
            "present_over_time" => PresentOverTime,
            _ => return None,
        })
    }

    /// Only `last_over_time` keeps the metric name.
    pub fn keeps_name(self) -> bool {
        self == RangeFunc::LastOverTime
    }

    /// The function's value for the points `p` (not empty) of one series' window, which
    /// ends at `range_end` and is `range_ms` long, evaluated at `ts`; `scalars` are the
    /// scalar arguments (quantile; predict_linear's seconds; the two smoothing factors).
    pub fn eval(
        self,
        p: &[(i64, f64)],
        range_end: i64,
        range_ms: i64,
        ts: i64,
        scalars: &[f64],
        memo: &mut RateMemo,
    ) -> Option<f64> {
        use RangeFunc::*;
        match self {
            Rate => extrapolated_rate(p, range_end, range_ms, true, true, memo),
            Increase => extrapolated_rate(p, range_end, range_ms, true, false, memo),
            Delta => extrapolated_rate(p, range_end, range_ms, false, false, memo),
            Irate => instant_value(p, true),
            Idelta => instant_value(p, false),
            Deriv => (p.len() >= 2).then(|| linear_regression(p, p[0].0).0),
            PredictLinear => (p.len() >= 2).then(|| {
                let (slope, intercept) = linear_regression(p, ts);
                slope * scalars[0] + intercept
            }),
            HoltWinters => holt_winters(p, scalars[0], scalars[1]),
            Resets => Some(p.windows(2).filter(|w| w[1].1 < w[0].1).count() as f64),
            Changes => Some(
                p.windows(2)
                    .filter(|w| w[1].1 != w[0].1 && !(w[1].1.is_nan() && w[0].1.is_nan()))
                    .count() as f64,
            ),
            AvgOverTime => Some(kahan_mean(p)),
            SumOverTime => Some(p.iter().map(|x| x.1).sum()),
            CountOverTime => Some(p.len() as f64),
            MinOverTime => Some(
                p.iter()
                    .skip(1)
                    .fold(p[0].1, |m, x| if x.1 < m || m.is_nan() { x.1 } else { m }),
            ),
            MaxOverTime => Some(
                p.iter()
                    .skip(1)
                    .fold(p[0].1, |m, x| if x.1 > m || m.is_nan() { x.1 } else { m }),
            ),
            StddevOverTime => Some(kahan_variance(p).sqrt()),
            StdvarOverTime => Some(kahan_variance(p)),
            QuantileOverTime => Some(quantile(scalars[0], p.iter().map(|x| x.1).collect())),
            LastOverTime => p.last().map(|x| x.1),
            PresentOverTime => Some(1.0),
        }
    }
}

/// End and length of the window a range argument covers at `ts` (for extrapolation).
fn range_window(ev: &Evaluator<'_>, e: &Expr, ts: i64) -> (i64, i64) {
    match e {
        Expr::MatrixSelector(ms) => (
            ev.ref_time(ts, &ms.vs.at, &ms.vs.offset),
            duration_ms(&ms.range),
        ),
        Expr::Subquery(sq) => (ev.ref_time(ts, &sq.at, &sq.offset), duration_ms(&sq.range)),
        Expr::Paren(p) => range_window(ev, &p.expr, ts),
        _ => (ts, 0),
    }
}

/// Prometheus's `rate`/`increase`/`delta`: the change over the samples, corrected for
/// counter resets, extrapolated towards the window's edges (by at most half an average
/// sample interval past the outer samples, and never below zero for counters).
fn extrapolated_rate(
    p: &[(i64, f64)],
    range_end: i64,
    range_ms: i64,
    counter: bool,
    rate: bool,
    memo: &mut RateMemo,
) -> Option<f64> {
    if p.len() < 2 {
        return None;
    }
    let range_start = range_end.saturating_sub(range_ms);
    let (first, last) = (p[0], p[p.len() - 1]);
    let mut result = last.1 - first.1;
    if counter {
        let mut prev = 0.0;
        for &(_, v) in p {
            if v < prev {
                result += prev;
            }
            prev = v;
        }
    }
    // Prometheus's formula, arranged to divide rarely instead of six times: it is the
    // innermost work of every range query (a division costs as much as the rest of this
    // function). Durations stay in milliseconds (only their ratios and comparisons enter
    // the result) and reciprocals replace divisions; the result equals Prometheus's up to
    // rounding.
    let mut to_start = first.0 as f64 - range_start as f64;
    let to_end = (range_end - last.0) as f64;
    let sampled = (last.0 - first.0) as f64;
    let avg_interval = sampled * reciprocal(p.len() - 1);
    // Extrapolating to the start must not go below zero: where the counter would reach
    // zero (sampled * first / result) is computed only when it is nearer than the start.
    if counter && result > 0.0 && first.1 >= 0.0 && sampled * first.1 < to_start * result {
        to_start = sampled * (first.1 / result);
    }
    let threshold = avg_interval * 1.1;
    let mut interval = sampled;
    interval += if to_start < threshold {
        to_start
    } else {
        avg_interval * 0.5
    };
    interval += if to_end < threshold {
        to_end
    } else {
        avg_interval * 0.5
    };
    let per = if rate {
        sampled * (range_ms as f64 * 0.001)
    } else {
        sampled
    };
    Some(result * (interval * memo.reciprocal(per)))
}

/// The last divisor of [`extrapolated_rate`] and its reciprocal: the windows of a
/// regularly scraped series mostly span the same time, so most of their divisions become
/// one multiplication. Each evaluating thread keeps its own.
pub(super) struct RateMemo {
    divisor: f64,
    reciprocal: f64,
}

impl Default for RateMemo {
    fn default() -> Self {
        // NaN equals nothing: the first divisor is always computed.
        RateMemo {
            divisor: f64::NAN,
            reciprocal: f64::NAN,
        }
    }
}

impl RateMemo {
    fn reciprocal(&mut self, divisor: f64) -> f64 {
        if divisor != self.divisor {
            self.divisor = divisor;
            self.reciprocal = 1.0 / divisor;
        }
        self.reciprocal
    }
}

/// `1 / n`, from a table for the sample counts windows usually hold.
fn reciprocal(n: usize) -> f64 {
    const TABLE: [f64; 128] = {
        let mut t = [0.0; 128];
        let mut i = 1;
        while i < 128 {
            t[i] = 1.0 / i as f64;
            i += 1;
        }
        t
    };
    match TABLE.get(n) {
        Some(&r) if n > 0 => r,
        _ => 1.0 / n as f64,
    }
}

/// `irate`/`idelta`: from the last two samples.
fn instant_value(p: &[(i64, f64)], rate: bool) -> Option<f64> {
    if p.len() < 2 {
        return None;
    }
    let (prev, last) = (p[p.len() - 2], p[p.len() - 1]);
    let mut v = last.1 - prev.1;
    if rate && last.1 < prev.1 {
        v = last.1;
    }
    let interval = last.0 - prev.0;
    if interval == 0 {
        return None;
    }
    if rate {
        v /= interval as f64 / 1000.0;
    }
    Some(v)
}

/// `avg_over_time`: the incremental mean with Kahan compensation, infinities kept stable.
fn kahan_mean(p: &[(i64, f64)]) -> f64 {
    let (mut mean, mut c, mut count) = (0.0f64, 0.0f64, 0.0f64);
    for &(_, v) in p {
        count += 1.0;
        if mean.is_infinite()
            && ((v.is_infinite() && (mean > 0.0) == (v > 0.0)) || (!v.is_infinite() && !v.is_nan()))
        {
            continue;
        }
        (mean, c) = kahan_add(v / count - mean / count, mean, c);
    }
    if mean.is_infinite() { mean } else { mean + c }
}

/// `stdvar_over_time`: Welford's method with Kahan-compensated mean and sum of squares.
fn kahan_variance(p: &[(i64, f64)]) -> f64 {
    let (mut count, mut mean, mut c_mean, mut aux, mut c_aux) = (0.0, 0.0, 0.0, 0.0, 0.0);
    for &(_, v) in p {
        count += 1.0;
        let delta = v - (mean + c_mean);
        (mean, c_mean) = kahan_add(delta / count, mean, c_mean);
        (aux, c_aux) = kahan_add(delta * (v - (mean + c_mean)), aux, c_aux);
    }
    (aux + c_aux) / count
}

/// Neumaier's compensated addition, exactly as Prometheus 2.x does it (no special case
/// for infinities, so an overflow ends as NaN there too).
fn kahan_add(v: f64, sum: f64, c: f64) -> (f64, f64) {
    let t = sum + v;
    let c = if sum.abs() >= v.abs() {
        c + ((sum - t) + v)
    } else {
        c + ((v - t) + sum)
    };
    (t, c)
}

/// Least-squares slope and intercept, with x in seconds from `intercept_time`.
fn linear_regression(p: &[(i64, f64)], intercept_time: i64) -> (f64, f64) {
    let init = p[0].1;
    if p.iter().all(|x| x.1 == init) {
        if init.is_infinite() {
            return (f64::NAN, f64::NAN);
        }
        return (0.0, init);
    }
    let (mut n, mut sx, mut cx, mut sy, mut cy, mut sxy, mut cxy, mut sx2, mut cx2) =
        (0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0);
    for &(t, v) in p {
        n += 1.0;
        let x = (t - intercept_time) as f64 / 1e3;
        (sx, cx) = kahan_add(x, sx, cx);
        (sy, cy) = kahan_add(v, sy, cy);
        (sxy, cxy) = kahan_add(x * v, sxy, cxy);
        (sx2, cx2) = kahan_add(x * x, sx2, cx2);
    }
    let (sx, sy, sxy, sx2) = (sx + cx, sy + cy, sxy + cxy, sx2 + cx2);
    let cov = sxy - sx * sy / n;
    let var = sx2 - sx * sx / n;
    let slope = cov / var;
    let intercept = sy / n - slope * sx / n;
    (slope, intercept)
}

fn holt_winters(p: &[(i64, f64)], sf: f64, tf: f64) -> Option<f64> {
    if p.len() < 2 {
        return None;
    }
    let (mut s0, mut s1) = (0.0, p[0].1);
    let mut b = p[1].1 - p[0].1;
    for (i, &(_, v)) in p.iter().enumerate().skip(1) {
        let x = sf * v;
        if i > 1 {
            b = tf * (s1 - s0) + (1.0 - tf) * b;
        }
        let y = (1.0 - sf) * (s1 + b);
        s0 = s1;
        s1 = x + y;
    }
    Some(s1)
}

/// Prometheus's `quantile`: linear interpolation between the two nearest ranks; NaN
/// sorts first.
pub(super) fn quantile(q: f64, mut values: Vec<f64>) -> f64 {
    if values.is_empty() || q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    values.sort_by(|a, b| match (a.is_nan(), b.is_nan()) {
        (true, true) => std::cmp::Ordering::Equal,
        (true, false) => std::cmp::Ordering::Less,
        (false, true) => std::cmp::Ordering::Greater,
        _ => a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal),
    });
    let n = values.len() as f64;
    let rank = q * (n - 1.0);
    let lower = rank.floor().max(0.0);
    let upper = (lower + 1.0).min(n - 1.0);
    let weight = rank - rank.floor();
    values[lower as usize] * (1.0 - weight) + values[upper as usize] * weight
}

fn histogram_quantile(q: f64, v: Vec<Sample>, ts: i64) -> Vec<Sample> {
    let mut groups: Vec<(Labels, Vec<(f64, f64)>)> = Vec::new();
    let mut index: hashbrown::HashMap<Labels, usize> = hashbrown::HashMap::new();
    for s in &v {
        let Some(le) = s.metric.get("le").and_then(parse_le) else {
            continue;
        };
        let key = filtered(&s.metric, |n| n != "le" && n != METRIC_NAME);
        let i = *index.entry(key.clone()).or_insert_with(|| {
            groups.push((key, Vec::new()));
            groups.len() - 1
        });
        groups[i].1.push((le, s.v));
    }
    groups
        .into_iter()
        .map(|(metric, buckets)| Sample {
            metric: Arc::new(metric),
            t: ts,
            v: bucket_quantile(q, buckets),
        })
        .collect()
}

/// Go's ParseFloat accepts `+Inf`, `Inf`, `inf` and the like.
pub(super) fn parse_le(s: &str) -> Option<f64> {
    match s.to_ascii_lowercase().as_str() {
        "+inf" | "inf" => Some(f64::INFINITY),
        "-inf" => Some(f64::NEG_INFINITY),
        "nan" => Some(f64::NAN),
        _ => s.parse().ok(),
    }
}

pub(super) fn bucket_quantile(q: f64, mut buckets: Vec<(f64, f64)>) -> f64 {
    if q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    buckets.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap_or(std::cmp::Ordering::Equal));
    if buckets.last().is_none_or(|b| b.0 != f64::INFINITY) {
        return f64::NAN;
    }
    // Merge equal bounds, then force counts to be monotonic.
    let mut merged: Vec<(f64, f64)> = Vec::with_capacity(buckets.len());
    for b in buckets {
        match merged.last_mut() {
            Some(last) if last.0 == b.0 => last.1 += b.1,
            _ => merged.push(b),
        }
    }
    for i in 1..merged.len() {
        if merged[i].1 < merged[i - 1].1 {
            merged[i].1 = merged[i - 1].1;
        }
    }
    if merged.len() < 2 {
        return f64::NAN;
    }
    let observations = merged[merged.len() - 1].1;
    if observations == 0.0 {
        return f64::NAN;
    }
    let mut rank = q * observations;
    let b = merged[..merged.len() - 1].partition_point(|x| x.1 < rank);
    if b == merged.len() - 1 {
        return merged[merged.len() - 2].0;
    }
    if b == 0 && merged[0].0 <= 0.0 {
        return merged[0].0;
    }
    let (mut start, end, mut count) = (0.0, merged[b].0, merged[b].1);
    if b > 0 {
        start = merged[b - 1].0;
        count -= merged[b - 1].1;
        rank -= merged[b - 1].1;
    }
    start + (end - start) * (rank / count)
}

fn label_replace(
    ev: &mut Evaluator<'_>,
    args: &[&Expr],
    ts: i64,
) -> Result<Vec<Sample>, PromqlError> {
    let v = vector_arg(ev, args[0], ts)?;
    let dst = string_arg(ev, args[1], ts)?;
    let repl = string_arg(ev, args[2], ts)?;
    let src = string_arg(ev, args[3], ts)?;
    let pattern = string_arg(ev, args[4], ts)?;
    let re = Regex::new(&format!("^(?:{pattern})$")).map_err(|_| {
        PromqlError::Execution(format!(
            "invalid regular expression in label_replace(): {pattern}"
        ))
    })?;
    if !is_valid_label_name(&dst) {
        return Err(PromqlError::Execution(format!(
            "invalid destination label name in label_replace(): {dst}"
        )));
    }
    Ok(v.into_iter()
        .map(|s| {
            let value = s.metric.get(&src).unwrap_or("");
            match re.captures(value) {
                Some(caps) => {
                    let mut out = String::new();
                    caps.expand(&repl, &mut out);
                    Sample {
                        metric: Arc::new(with_label(&s.metric, &dst, &out)),
                        t: ts,
                        v: s.v,
                    }
                }
                None => Sample { t: ts, ..s },
            }
        })
        .collect())
}

fn label_join(ev: &mut Evaluator<'_>, args: &[&Expr], ts: i64) -> Result<Vec<Sample>, PromqlError> {
    let v = vector_arg(ev, args[0], ts)?;
    let dst = string_arg(ev, args[1], ts)?;
    let sep = string_arg(ev, args[2], ts)?;
    let mut srcs = Vec::new();
    for a in &args[3..] {
        srcs.push(string_arg(ev, a, ts)?);
    }
    if let Some(bad) = srcs.iter().find(|s| !is_valid_label_name(s)) {
        return Err(PromqlError::Execution(format!(
            "invalid source label name in label_join(): {bad}"
        )));
    }
    if !is_valid_label_name(&dst) {
        return Err(PromqlError::Execution(format!(
            "invalid destination label name in label_join(): {dst}"
        )));
    }
    Ok(v.into_iter()
        .map(|s| {
            let joined = srcs
                .iter()
                .map(|n| s.metric.get(n).unwrap_or(""))
                .collect::<Vec<_>>()
                .join(&sep);
            Sample {
                metric: Arc::new(with_label(&s.metric, &dst, &joined)),
                t: ts,
                v: s.v,
            }
        })
        .collect())
}

/// The labels `absent()` reports: the selector's equality matchers (not on the metric
/// name), minus any name matched twice.
fn absent_labels(e: &Expr) -> Labels {
    let vs = match e {
        Expr::VectorSelector(vs) => vs,
        Expr::MatrixSelector(ms) => &ms.vs,
        _ => return Labels::default(),
    };
    let Ok(sets) = crate::selector::vector_selector_sets(vs) else {
        return Labels::default();
    };
    let Some(set) = sets.first() else {
        return Labels::default();
    };
    let mut pairs: Vec<Label> = Vec::new();
    let mut repeated: Vec<String> = Vec::new();
    for m in set {
        if m.name == METRIC_NAME {
            continue;
        }
        if pairs.iter().any(|p| p.name == m.name) || repeated.contains(&m.name) {
            pairs.retain(|p| p.name != m.name);
            repeated.push(m.name.clone());
            continue;
        }
        if m.op == MatchOp::Equal {
            pairs.push(Label {
                name: m.name.clone(),
                value: m.value.clone(),
            });
        }
    }
    Labels::from_pairs(pairs.into_iter().map(|l| (l.name, l.value)))
}

/// Calendar fields of a Unix time in seconds, in UTC.
fn date_part(part: &str, secs: f64) -> f64 {
    if !secs.is_finite() {
        return f64::NAN;
    }
    let s = secs as i64;
    let days = s.div_euclid(86_400);
    let sod = s.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let month_days = [
        31,
        if leap { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    match part {
        "year" => y as f64,
        "month" => m as f64,
        "day_of_month" => d as f64,
        "day_of_week" => (days + 4).rem_euclid(7) as f64,
        "day_of_year" => (month_days[..(m - 1) as usize].iter().sum::<i64>() + d) as f64,
        "days_in_month" => month_days[(m - 1) as usize] as f64,
        "hour" => (sod / 3600) as f64,
        "minute" => (sod % 3600 / 60) as f64,
        _ => f64::NAN,
    }
}

/// Proleptic Gregorian (year, month, day) of days since 1970-01-01 (Howard Hinnant).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        // 2024-02-29T13:45:00Z, a Thursday.
        let t = 1_709_214_300.0;
        assert_eq!(date_part("year", t), 2024.0);
        assert_eq!(date_part("month", t), 2.0);
        assert_eq!(date_part("day_of_month", t), 29.0);
        assert_eq!(date_part("days_in_month", t), 29.0);
        assert_eq!(date_part("day_of_week", t), 4.0);
        assert_eq!(date_part("day_of_year", t), 60.0);
        assert_eq!((date_part("hour", t), date_part("minute", t)), (13.0, 45.0));
    }

    #[test]
    fn rate_extrapolates_like_prometheus() {
        // A counter rising 1/s, sampled every 15 s from t=15 s to t=285 s, window (0, 300].
        let p: Vec<(i64, f64)> = (1..=19).map(|i| (i * 15_000, (i * 15) as f64)).collect();
        let memo = &mut RateMemo::default();
        let r = extrapolated_rate(&p, 300_000, 300_000, true, true, memo).unwrap();
        assert!((r - 1.0).abs() < 1e-12, "{r}");
        // A reset in the middle is added back.
        let p = [(0, 10.0), (10_000, 20.0), (20_000, 5.0), (30_000, 15.0)];
        let inc = extrapolated_rate(&p, 30_000, 30_000, true, false, memo).unwrap();
        assert!((inc - 25.0).abs() < 1e-9, "{inc}");
        // The memo of the previous divisor does not leak into another window's result.
        let again = extrapolated_rate(&p, 30_000, 30_000, true, false, &mut RateMemo::default());
        assert_eq!(again, Some(inc));
        // Starting near zero, extrapolation stops where the counter would be zero.
        let p = [(10_000, 1.0), (20_000, 11.0), (30_000, 21.0)];
        let inc = extrapolated_rate(&p, 30_000, 30_000, true, false, memo).unwrap();
        assert!((inc - 21.0).abs() < 1e-9, "{inc}");
    }

    #[test]
    fn quantiles() {
        assert_eq!(quantile(0.5, vec![1.0, 3.0, 2.0]), 2.0);
        assert_eq!(quantile(0.25, vec![1.0, 2.0, 3.0, 4.0, 5.0]), 2.0);
        let b = vec![
            (0.1, 10.0),
            (0.5, 50.0),
            (1.0, 90.0),
            (f64::INFINITY, 100.0),
        ];
        assert!((bucket_quantile(0.5, b.clone()) - 0.5).abs() < 1e-12);
        assert_eq!(bucket_quantile(0.99, b), 1.0);
    }
}
