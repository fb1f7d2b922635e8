//! A PromQL engine over the store: instant and range queries with Prometheus 2.x
//! semantics. Parsing is `promql-parser`'s; evaluation is ours.

mod aggregate;
mod binary;
mod eval;
mod functions;
mod labels_ops;
mod steps;
pub mod value;

use hashbrown::HashMap;
use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use lastmile_model::Labels;
use lastmile_store::{Db, StoreError};
use promql_parser::parser::value::ValueType;
use promql_parser::parser::{self, Expr};

use eval::Evaluator;
pub use value::{QueryResult, Sample, Series, Value};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_strings_become_quoted() {
        assert_eq!(
            rewrite_raw_strings(r#"label_replace(up, "a", `$1\d`, "b", `(.*)`)"#),
            r#"label_replace(up, "a", "$1\\d", "b", "(.*)")"#
        );
        assert_eq!(rewrite_raw_strings(r#"up{a="`"}"#), r#"up{a="`"}"#);
        assert!(parse("`raw\\string`").is_ok());
    }

    #[test]
    fn subqueries_need_instant_vectors() {
        assert!(matches!(
            parse("avg_over_time(time()[5m:1m])"),
            Err(PromqlError::BadData(_))
        ));
        assert!(parse("avg_over_time(up[5m:1m])").is_ok());
        assert!(parse("holt_winters(up[5m], 0.5, 0.5)").is_ok());
    }

    #[test]
    fn durations_past_go_range_are_refused_not_panicked_on() {
        for q in [
            "up[104e150]",
            "up offset NaN",
            "up offset -Inf",
            "up offset -1e300",
            "rate(up[5m:1e300])",
            "up[300y]",
        ] {
            match parse(q) {
                Err(PromqlError::BadData(m)) => assert!(m.contains("out of range"), "{q}: {m}"),
                other => panic!("{q}: {other:?}"),
            }
        }
        // The lexer itself refuses these; what matters is a 400, not a panic.
        for q in ["up[NaN]", "up[Inf]", "up[1e300s]"] {
            assert!(matches!(parse(q), Err(PromqlError::BadData(_))), "{q}");
        }
        for q in ["up[300]", "up offset 60", "rate(up[5m:30])", "up[290y]"] {
            assert!(parse(q).is_ok(), "{q}");
        }
    }
}

#[derive(Clone, Debug)]
pub struct QueryOptions {
    /// How far back an instant selector looks for a sample (Prometheus: 5m).
    pub lookback_ms: i64,
    /// Most samples one query may load before it is refused.
    pub max_samples: usize,
    pub timeout: Duration,
    /// Step of subqueries written without one (Prometheus: the evaluation interval, 1m).
    pub default_subquery_step_ms: i64,
    /// Threads one query may use (1 = only the calling thread).
    pub parallelism: usize,
}

impl Default for QueryOptions {
    fn default() -> Self {
        QueryOptions {
            lookback_ms: 5 * 60 * 1000,
            max_samples: 50_000_000,
            timeout: Duration::from_secs(120),
            default_subquery_step_ms: 60_000,
            parallelism: std::thread::available_parallelism().map_or(1, |n| n.get()),
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
    static EXTRA: std::sync::Once = std::sync::Once::new();
    EXTRA.call_once(|| {
        // Prometheus 2.x's name for what 3.x calls double_exponential_smoothing.
        let hw = parser::Function::new(
            "holt_winters",
            vec![ValueType::Matrix, ValueType::Scalar, ValueType::Scalar],
            0,
            ValueType::Vector,
            false,
        );
        let _ = parser::register_extra_functions(vec![hw]);
    });
    let bad = |e: String| PromqlError::BadData(format!("invalid parameter \"query\": {e}"));
    let query = rewrite_raw_strings(query);
    check_durations(&query).map_err(bad)?;
    let expr = parser::parse(&query).map_err(bad)?;
    check_types(&expr).map_err(bad)?;
    Ok(expr)
}

/// Refuses durations Prometheus refuses: past what Go's `time.Duration` holds (int64
/// nanoseconds, about 292 years). This also keeps the parser from panicking: PromQL 3 lets a
/// plain number stand for seconds (`x[300]`, `offset 60`, `[5m:30]`), which the parser
/// converts with `Duration::from_secs_f64`, a panic on NaN, Inf or huge values.
fn check_durations(q: &str) -> Result<(), String> {
    use lrpar::{Lexeme, Lexer, NonStreamingLexer};
    use parser::token::{
        T_ADD, T_AT, T_COLON, T_DURATION, T_LEFT_BRACKET, T_NUMBER, T_OFFSET, T_SUB,
    };
    const MAX_SECONDS: f64 = i64::MAX as f64 / 1e9;
    // A query the lexer refuses is reported by the parser with its own message.
    let Ok(lexer) = parser::lexer(q) else {
        return Ok(());
    };
    let (mut prev, mut before_prev) = (None, None);
    for lexeme in lexer.iter().flatten() {
        let tok = lexeme.tok_id();
        let text = lexer.span_str(lexeme.span());
        let after_at = prev == Some(T_AT)
            || (matches!(prev, Some(T_SUB | T_ADD)) && before_prev == Some(T_AT));
        if tok == T_NUMBER && after_at {
            // Evaluation works in i64 milliseconds, as Prometheus does; it refuses the rest.
            let secs = promql_parser::util::parse_str_radix(text).unwrap_or(f64::NAN);
            if !(secs * 1000.0).abs().lt(&(i64::MAX as f64)) {
                return Err(format!("timestamp out of bounds for @ modifier: {text}"));
            }
        }
        let secs = if tok == T_DURATION {
            // A bare float here would make parse_duration itself panic; its value is seconds.
            text.parse::<f64>().unwrap_or_else(|_| {
                promql_parser::util::parse_duration(text).map_or(0.0, |d| d.as_secs_f64())
            })
        } else if tok == T_NUMBER
            && (matches!(prev, Some(T_LEFT_BRACKET | T_COLON | T_OFFSET))
                || (prev == Some(T_SUB) && before_prev == Some(T_OFFSET)))
        {
            promql_parser::util::parse_str_radix(text).unwrap_or(f64::NAN)
        } else {
            0.0
        };
        if !(0.0..=MAX_SECONDS).contains(&secs) {
            return Err(format!("duration out of range: {text}"));
        }
        (before_prev, prev) = (prev, Some(tok));
    }
    Ok(())
}

/// PromQL's backtick strings take backslashes literally; the parser only knows quoted
/// strings, so each raw string becomes the equivalent double-quoted one.
fn rewrite_raw_strings(q: &str) -> Cow<'_, str> {
    if !q.contains('`') {
        return Cow::Borrowed(q);
    }
    let mut out = String::with_capacity(q.len() + 8);
    let mut chars = q.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' | '\'' => {
                out.push(c);
                while let Some(d) = chars.next() {
                    out.push(d);
                    if d == '\\' {
                        if let Some(e) = chars.next() {
                            out.push(e);
                        }
                    } else if d == c {
                        break;
                    }
                }
            }
            '#' => {
                out.push(c);
                for d in chars.by_ref() {
                    out.push(d);
                    if d == '\n' {
                        break;
                    }
                }
            }
            '`' => {
                let raw: String = chars.by_ref().take_while(|&d| d != '`').collect();
                out.push('"');
                for d in raw.chars() {
                    if d == '"' || d == '\\' {
                        out.push('\\');
                    }
                    out.push(d);
                }
                out.push('"');
            }
            _ => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// Type rules Prometheus checks at parse time that the parser leaves to us.
fn check_types(e: &Expr) -> Result<(), String> {
    match e {
        Expr::Subquery(sq) => {
            if sq.expr.value_type() != ValueType::Vector {
                return Err(format!(
                    "subquery is only allowed on instant vector, got {} instead",
                    sq.expr.value_type()
                ));
            }
            check_types(&sq.expr)
        }
        Expr::Aggregate(a) => {
            check_types(&a.expr)?;
            a.param.as_deref().map_or(Ok(()), check_types)
        }
        Expr::Unary(u) => check_types(&u.expr),
        Expr::Binary(b) => {
            check_types(&b.lhs)?;
            check_types(&b.rhs)
        }
        Expr::Paren(p) => check_types(&p.expr),
        Expr::Call(c) => c.args.args.iter().try_for_each(|a| check_types(a)),
        _ => Ok(()),
    }
}

pub fn instant_query(
    db: &Db,
    query: &str,
    t: i64,
    opts: &QueryOptions,
) -> Result<QueryResult, PromqlError> {
    instant_query_with(db, query, t, opts, true)
}

/// `vectorised: false` forces the per-step evaluator (tests compare the two).
fn instant_query_with(
    db: &Db,
    query: &str,
    t: i64,
    opts: &QueryOptions,
    vectorised: bool,
) -> Result<QueryResult, PromqlError> {
    let expr = parse(query)?;
    let mut ev = Evaluator::new(db, opts, t, t);
    ev.plan(&expr, t, t);
    ev.load(&expr)?;
    let grid = steps::Grid {
        start: t,
        step: 1,
        n: 1,
    };
    if vectorised && let Some(rows) = steps::try_eval(&ev, &expr, grid) {
        let value = Value::Vector(
            rows?
                .into_iter()
                .map(|r| Sample {
                    metric: r.metric,
                    t,
                    v: r.vals[0],
                })
                .collect(),
        );
        return Ok(QueryResult::Instant { t, value });
    }
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
    range_query_with(db, query, start, end, step, opts, true)
}

fn range_query_with(
    db: &Db,
    query: &str,
    start: i64,
    end: i64,
    step: i64,
    opts: &QueryOptions,
    vectorised: bool,
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
    let started = std::time::Instant::now();
    let mut ev = Evaluator::new(db, opts, start, end);
    ev.plan(&expr, start, end);
    let deferred = vectorised && steps::plans(&expr);
    if deferred {
        ev.select_deferred(&expr)?;
    } else {
        ev.load(&expr)?;
    }
    let loaded = started.elapsed();
    let grid = steps::Grid {
        start,
        step,
        n: ((end - start) / step) as usize + 1,
    };
    if vectorised && let Some(rows) = steps::try_eval(&ev, &expr, grid) {
        tracing::debug!(
            select_ms = loaded.as_secs_f64() * 1e3,
            eval_ms = (started.elapsed() - loaded).as_secs_f64() * 1e3,
            steps = grid.n,
            "range query evaluated by steps"
        );
        let mut out: Vec<Series> = rows?
            .into_iter()
            .map(|r| Series {
                points: r
                    .vals
                    .iter()
                    .zip(&r.present)
                    .enumerate()
                    .filter(|(_, (_, p))| **p)
                    .map(|(i, (v, _))| (start + i as i64 * step, *v))
                    .collect(),
                metric: r.metric,
            })
            .collect();
        out.sort_by(|a, b| a.metric.cmp(&b.metric));
        return Ok(QueryResult::Range(out));
    }
    if deferred {
        // The step evaluator declined after all: the per-step one reads decoded series
        // (`load` decodes what was selected).
        ev.load(&expr)?;
    }
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
