//! Binary operators: arithmetic, comparison (filtering or `bool`), and set operators, with
//! Prometheus's vector matching (`on`, `ignoring`, `group_left`, `group_right`).

use hashbrown::{HashMap, HashSet};
use std::sync::Arc;

use lastmile_model::Labels;
use promql_parser::parser::token::{
    T_ADD, T_ATAN2, T_DIV, T_EQLC, T_GTE, T_GTR, T_LAND, T_LOR, T_LSS, T_LTE, T_LUNLESS, T_MOD,
    T_MUL, T_NEQ, T_POW, T_SUB, TokenId,
};
use promql_parser::parser::{BinaryExpr, LabelModifier, VectorMatchCardinality};

use super::PromqlError;
use super::eval::{Evaluator, check_unique};
use super::labels_ops::{filtered, signature, without_name};
use super::value::{Sample, Value};
use lastmile_model::METRIC_NAME;

fn is_comparison(op: TokenId) -> bool {
    matches!(op, T_EQLC | T_NEQ | T_GTR | T_LSS | T_GTE | T_LTE)
}

/// Applies an arithmetic or comparison operator. For comparisons the second value says
/// whether the pair passes; the first is then the left operand.
pub fn scalar_op(op: TokenId, l: f64, r: f64) -> Result<(f64, bool), PromqlError> {
    Ok(match op {
        T_ADD => (l + r, true),
        T_SUB => (l - r, true),
        T_MUL => (l * r, true),
        T_DIV => (l / r, true),
        T_POW => (l.powf(r), true),
        // Go's math.Mod: the result has the sign of the dividend.
        T_MOD => (l % r, true),
        T_ATAN2 => (l.atan2(r), true),
        T_EQLC => (l, l == r),
        T_NEQ => (l, l != r),
        T_GTR => (l, l > r),
        T_LSS => (l, l < r),
        T_GTE => (l, l >= r),
        T_LTE => (l, l <= r),
        other => {
            return Err(PromqlError::BadData(format!(
                "operator {other} not allowed between numbers"
            )));
        }
    })
}

/// Arithmetic drops the metric name, and so does a `bool` comparison; `atan2` and
/// filtering comparisons keep it (as Prometheus 2.x does).
fn drops_name(op: TokenId, return_bool: bool) -> bool {
    return_bool || !(is_comparison(op) || op == T_ATAN2)
}

fn bool_value(pass: bool) -> f64 {
    if pass { 1.0 } else { 0.0 }
}

pub(super) fn eval_binary(
    ev: &mut Evaluator<'_>,
    b: &BinaryExpr,
    ts: i64,
) -> Result<Value, PromqlError> {
    let op = b.op.id();
    let return_bool = b.modifier.as_ref().is_some_and(|m| m.return_bool);
    let lhs = ev.eval(&b.lhs, ts)?;
    let rhs = ev.eval(&b.rhs, ts)?;
    match (lhs, rhs) {
        (Value::Scalar(l), Value::Scalar(r)) => {
            let (v, pass) = scalar_op(op, l, r)?;
            Ok(Value::Scalar(if is_comparison(op) {
                bool_value(pass)
            } else {
                v
            }))
        }
        (Value::Vector(v), Value::Scalar(s)) => vector_scalar(op, v, s, false, return_bool, ts),
        (Value::Scalar(s), Value::Vector(v)) => vector_scalar(op, v, s, true, return_bool, ts),
        (Value::Vector(l), Value::Vector(r)) => {
            let out = match op {
                T_LAND | T_LOR | T_LUNLESS => set_op(
                    op,
                    l,
                    r,
                    b.modifier.as_ref().and_then(|m| m.matching.as_ref()),
                ),
                _ => vector_vector(op, l, r, b, return_bool, ts)?,
            };
            check_unique(&out)?;
            Ok(Value::Vector(out))
        }
        (l, r) => Err(PromqlError::BadData(format!(
            "binary operator between {} and {} is not allowed",
            l.type_name(),
            r.type_name()
        ))),
    }
}

fn vector_scalar(
    op: TokenId,
    v: Vec<Sample>,
    s: f64,
    scalar_left: bool,
    return_bool: bool,
    ts: i64,
) -> Result<Value, PromqlError> {
    let comparison = is_comparison(op);
    let mut out = Vec::with_capacity(v.len());
    for smp in v {
        let (l, r) = if scalar_left { (s, smp.v) } else { (smp.v, s) };
        let (mut value, pass) = scalar_op(op, l, r)?;
        if return_bool {
            value = bool_value(pass);
        } else if !pass {
            continue;
        } else if comparison && scalar_left {
            // The vector element keeps its value whichever side it is on.
            value = smp.v;
        }
        let metric = if drops_name(op, return_bool) {
            Arc::new(without_name(&smp.metric))
        } else {
            smp.metric
        };
        out.push(Sample {
            metric,
            t: ts,
            v: value,
        });
    }
    check_unique(&out)?;
    Ok(Value::Vector(out))
}

/// How two vectors' elements are matched: by a signature over `on` labels or over all
/// labels except `ignoring` ones (and the metric name).
struct Matching<'m> {
    on: bool,
    labels: &'m [String],
}

impl<'m> Matching<'m> {
    fn of(m: Option<&'m LabelModifier>) -> Self {
        match m {
            Some(LabelModifier::Include(l)) => Matching {
                on: true,
                labels: &l.labels,
            },
            Some(LabelModifier::Exclude(l)) => Matching {
                on: false,
                labels: &l.labels,
            },
            None => Matching {
                on: false,
                labels: &[],
            },
        }
    }

    fn sig(&self, l: &Labels) -> Vec<u8> {
        signature(l, self.labels, self.on)
    }
}

fn set_op(
    op: TokenId,
    l: Vec<Sample>,
    r: Vec<Sample>,
    matching: Option<&LabelModifier>,
) -> Vec<Sample> {
    let m = Matching::of(matching);
    match op {
        T_LAND => {
            let right: HashSet<Vec<u8>> = r.iter().map(|s| m.sig(&s.metric)).collect();
            l.into_iter()
                .filter(|s| right.contains(&m.sig(&s.metric)))
                .collect()
        }
        T_LUNLESS => {
            let right: HashSet<Vec<u8>> = r.iter().map(|s| m.sig(&s.metric)).collect();
            l.into_iter()
                .filter(|s| !right.contains(&m.sig(&s.metric)))
                .collect()
        }
        _ => {
            let left: HashSet<Vec<u8>> = l.iter().map(|s| m.sig(&s.metric)).collect();
            let mut out = l;
            out.extend(r.into_iter().filter(|s| !left.contains(&m.sig(&s.metric))));
            out
        }
    }
}

fn vector_vector(
    op: TokenId,
    lhs: Vec<Sample>,
    rhs: Vec<Sample>,
    b: &BinaryExpr,
    return_bool: bool,
    ts: i64,
) -> Result<Vec<Sample>, PromqlError> {
    let modifier = b.modifier.as_ref();
    let m = Matching::of(modifier.and_then(|m| m.matching.as_ref()));
    let card = modifier
        .map(|m| &m.card)
        .unwrap_or(&VectorMatchCardinality::OneToOne);
    let (include, one_to_many): (&[String], bool) = match card {
        VectorMatchCardinality::ManyToOne(l) => (&l.labels, false),
        VectorMatchCardinality::OneToMany(l) => (&l.labels, true),
        _ => (&[], false),
    };
    let one_to_one = matches!(card, VectorMatchCardinality::OneToOne);
    // The "many" side drives the loop; for group_right that is the right-hand side.
    let (many, one) = if one_to_many { (rhs, lhs) } else { (lhs, rhs) };
    let mut one_by_sig: HashMap<Vec<u8>, Sample> = HashMap::with_capacity(one.len());
    for s in one {
        let sig = m.sig(&s.metric);
        if let Some(dup) = one_by_sig.get(&sig) {
            return Err(PromqlError::Execution(format!(
                "found duplicate series for the match group on the {} hand-side of the operation: [{}, {}];many-to-many matching not allowed: matching labels must be unique on one side",
                if one_to_many { "left" } else { "right" },
                s.metric,
                dup.metric
            )));
        }
        one_by_sig.insert(sig, s);
    }
    let comparison = is_comparison(op);
    let mut matched: HashMap<Vec<u8>, HashSet<Labels>> = HashMap::new();
    let mut out = Vec::new();
    for s in many {
        let sig = m.sig(&s.metric);
        let Some(o) = one_by_sig.get(&sig) else {
            continue;
        };
        let (l, r) = if one_to_many { (o.v, s.v) } else { (s.v, o.v) };
        let (mut value, pass) = scalar_op(op, l, r)?;
        if return_bool {
            value = bool_value(pass);
        } else if !pass {
            continue;
        }
        let metric = result_metric(
            &s.metric,
            &o.metric,
            &m,
            include,
            one_to_one,
            !comparison || return_bool,
        );
        let seen = matched.entry(sig).or_default();
        if one_to_one {
            if !seen.is_empty() {
                return Err(PromqlError::Execution(
                    "multiple matches for labels: many-to-one matching must be explicit (group_left/group_right)".into(),
                ));
            }
        } else if seen.contains(&metric) {
            return Err(PromqlError::Execution(
                "multiple matches for labels: grouping labels must ensure unique matches".into(),
            ));
        }
        seen.insert(metric.clone());
        out.push(Sample {
            metric: Arc::new(metric),
            t: ts,
            v: value,
        });
    }
    Ok(out)
}

fn result_metric(
    many: &Labels,
    one: &Labels,
    m: &Matching<'_>,
    include: &[String],
    one_to_one: bool,
    drop_name: bool,
) -> Labels {
    let mut l = if drop_name {
        without_name(many)
    } else {
        many.clone()
    };
    if one_to_one {
        l = if m.on {
            filtered(&l, |n| m.labels.iter().any(|x| x == n))
        } else {
            filtered(&l, |n| !m.labels.iter().any(|x| x == n))
        };
    }
    if !include.is_empty() {
        let mut pairs: Vec<(String, String)> = l
            .iter()
            .filter(|x| !include.iter().any(|i| i == x.name))
            .map(|x| (x.name.to_owned(), x.value.to_owned()))
            .collect();
        for name in include {
            if let Some(v) = one.get(name) {
                pairs.push((name.clone(), v.to_owned()));
            }
        }
        l = Labels::from_pairs(pairs);
    }
    if drop_name && l.get(METRIC_NAME).is_some() {
        l = without_name(&l);
    }
    l
}
