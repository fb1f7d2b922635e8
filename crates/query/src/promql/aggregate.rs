//! Aggregation operators with `by`/`without`, following Prometheus 2.x's arithmetic
//! (incremental mean, Welford variance, NaN handling in min/max/topk).

use hashbrown::HashMap;
use std::sync::Arc;

use lastmile_model::{Labels, format_value};
use promql_parser::parser::token::{
    T_AVG, T_BOTTOMK, T_COUNT, T_COUNT_VALUES, T_GROUP, T_MAX, T_MIN, T_QUANTILE, T_STDDEV,
    T_STDVAR, T_SUM, T_TOPK,
};
use promql_parser::parser::{AggregateExpr, LabelModifier};

use super::PromqlError;
use super::eval::{Evaluator, check_unique};
use super::functions::{nan_last, quantile};
use super::labels_ops::{grouping_labels, signature_sorted_into, sorted_names, with_label};
use super::value::{Sample, Value};

struct Group {
    metric: Labels,
    count: f64,
    value: f64,
    mean: f64,
    values: Vec<f64>,
    /// topk/bottomk keep whole samples.
    samples: Vec<Sample>,
}

pub(super) fn eval_aggregate(
    ev: &mut Evaluator<'_>,
    a: &AggregateExpr,
    ts: i64,
) -> Result<Value, PromqlError> {
    let op = a.op.id();
    if !matches!(
        op,
        T_SUM
            | T_AVG
            | T_COUNT
            | T_GROUP
            | T_MIN
            | T_MAX
            | T_STDDEV
            | T_STDVAR
            | T_QUANTILE
            | T_TOPK
            | T_BOTTOMK
            | T_COUNT_VALUES
    ) {
        return Err(PromqlError::BadData(format!(
            "aggregation {} is not supported",
            a.op
        )));
    }
    let param = match &a.param {
        Some(p) => Some(ev.eval(p, ts)?),
        None => None,
    };
    let input = match ev.eval(&a.expr, ts)? {
        Value::Vector(v) => v,
        other => {
            return Err(PromqlError::BadData(format!(
                "expected instant vector in aggregation, got {}",
                other.type_name()
            )));
        }
    };
    let (names, by): (&[String], bool) = match &a.modifier {
        Some(LabelModifier::Include(l)) => (&l.labels, true),
        Some(LabelModifier::Exclude(l)) => (&l.labels, false),
        None => (&[], true),
    };
    let scalar_param = || match &param {
        Some(Value::Scalar(v)) => Ok(*v),
        _ => Err(PromqlError::BadData("expected a scalar parameter".into())),
    };
    let out = match op {
        T_COUNT_VALUES => {
            let label = match &param {
                Some(Value::String(s)) => s.clone(),
                _ => {
                    return Err(PromqlError::BadData(
                        "count_values needs a string parameter".into(),
                    ));
                }
            };
            if !is_valid_label_name(&label) {
                return Err(PromqlError::Execution(format!(
                    "invalid label name {label:?}"
                )));
            }
            let mut counts: Vec<(Labels, f64)> = Vec::new();
            let mut index: HashMap<Labels, usize> = HashMap::new();
            for s in &input {
                let key = with_label(
                    &grouping_labels(&s.metric, names, by),
                    &label,
                    &format_value(s.v),
                );
                match index.get(&key) {
                    Some(&i) => counts[i].1 += 1.0,
                    None => {
                        index.insert(key.clone(), counts.len());
                        counts.push((key, 1.0));
                    }
                }
            }
            counts
                .into_iter()
                .map(|(m, c)| Sample {
                    metric: Arc::new(m),
                    t: ts,
                    v: c,
                })
                .collect()
        }
        T_TOPK | T_BOTTOMK => {
            let k = scalar_param()?;
            if k.is_nan() || k.abs() >= 9.223_372_036_854_776e18 {
                return Err(PromqlError::Execution(format!(
                    "Scalar value {} overflows int64",
                    lastmile_model::format_value(k)
                )));
            }
            if k < 1.0 {
                Vec::new()
            } else {
                let k = if k > input.len() as f64 {
                    input.len()
                } else {
                    k as usize
                };
                let mut groups = group(&input, names, by, Keep::Samples);
                let mut out = Vec::new();
                for g in groups.iter_mut() {
                    let top = op == T_TOPK;
                    // NaN ranks lowest for topk and highest for bottomk.
                    g.samples.sort_by(|x, y| nan_last(x.v, y.v, top));
                    out.extend(g.samples.iter().take(k).map(|s| Sample {
                        metric: s.metric.clone(),
                        t: ts,
                        v: s.v,
                    }));
                }
                out
            }
        }
        _ => {
            let q = if op == T_QUANTILE {
                Some(scalar_param()?)
            } else {
                None
            };
            let keep = if matches!(op, T_MIN | T_MAX | T_STDDEV | T_STDVAR | T_QUANTILE) {
                Keep::Values
            } else {
                Keep::Sums
            };
            let groups = group(&input, names, by, keep);
            groups
                .into_iter()
                .map(|g| {
                    let v = match op {
                        T_SUM => g.value,
                        T_AVG => g.mean,
                        T_COUNT => g.count,
                        T_GROUP => 1.0,
                        T_MIN => g
                            .values
                            .iter()
                            .copied()
                            .fold(f64::NAN, |m, v| if m > v || m.is_nan() { v } else { m }),
                        T_MAX => g
                            .values
                            .iter()
                            .copied()
                            .fold(f64::NAN, |m, v| if m < v || m.is_nan() { v } else { m }),
                        T_STDVAR => variance(&g.values),
                        T_STDDEV => variance(&g.values).sqrt(),
                        T_QUANTILE => quantile(q.unwrap_or(f64::NAN), g.values.clone()),
                        _ => f64::NAN,
                    };
                    Sample {
                        metric: Arc::new(g.metric),
                        t: ts,
                        v,
                    }
                })
                .collect()
        }
    };
    check_unique(&out)?;
    Ok(Value::Vector(out))
}

/// Groups samples by their grouping labels, in first-seen order, accumulating sum and
/// Prometheus's incremental mean.
fn group(input: &[Sample], names: &[String], by: bool, keep: Keep) -> Vec<Group> {
    let mut groups: Vec<Group> = Vec::new();
    let mut index: HashMap<Vec<u8>, usize> = HashMap::new();
    let mut key = Vec::with_capacity(128);
    let sig_names = if by {
        sorted_names(names)
    } else {
        names.to_vec()
    };
    for s in input {
        // Look the group up by a signature written into a reused buffer; the group's
        // label set is built only when the group is new.
        signature_sorted_into(&s.metric, &sig_names, by, &mut key);
        let i = match index.get(key.as_slice()) {
            Some(&i) => i,
            None => {
                index.insert(key.clone(), groups.len());
                groups.push(Group {
                    metric: grouping_labels(&s.metric, names, by),
                    count: 0.0,
                    value: 0.0,
                    mean: 0.0,
                    values: Vec::new(),
                    samples: Vec::new(),
                });
                groups.len() - 1
            }
        };
        let g = &mut groups[i];
        g.count += 1.0;
        g.value += s.v;
        if g.count == 1.0 {
            g.mean = s.v;
        } else {
            g.mean = incremental_mean(g.mean, s.v, g.count);
        }
        match keep {
            Keep::Sums => {}
            Keep::Values => g.values.push(s.v),
            Keep::Samples => g.samples.push(s.clone()),
        }
    }
    groups
}

/// What a grouping must keep beyond counts, sums and means.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Keep {
    Sums,
    Values,
    Samples,
}

/// Prometheus's running mean, which keeps an infinite mean stable.
pub(super) fn incremental_mean(mean: f64, v: f64, count: f64) -> f64 {
    if mean.is_infinite() {
        if v.is_infinite() && (mean > 0.0) == (v > 0.0) {
            return mean;
        }
        if !v.is_infinite() && !v.is_nan() {
            return mean;
        }
    }
    mean + (v / count - mean / count)
}

/// Population variance by Welford's method.
pub(super) fn variance(values: &[f64]) -> f64 {
    let (mut count, mut mean, mut m2) = (0.0, 0.0, 0.0);
    for &v in values {
        count += 1.0;
        let delta = v - mean;
        mean += delta / count;
        m2 += delta * (v - mean);
    }
    m2 / count
}

pub(super) fn is_valid_label_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}
