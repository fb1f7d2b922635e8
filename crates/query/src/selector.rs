//! Series selectors: `up{job="api"}` into matcher sets, via the PromQL parser.

use lastmile_model::{METRIC_NAME, MatchOp, Matcher};
use promql_parser::label::{MatchOp as PMatchOp, Matcher as PMatcher};
use promql_parser::parser::{self, Expr, VectorSelector};

use crate::QueryError;

/// Parses one series selector. A selector may hold `or`-ed groups (Prometheus 3), so the
/// result is a list of matcher sets, any of which selects.
pub fn parse_selector(input: &str) -> Result<Vec<Vec<Matcher>>, QueryError> {
    let expr = parser::parse(input)
        .map_err(|e| QueryError::BadData(format!("invalid series selector {input:?}: {e}")))?;
    match expr {
        Expr::VectorSelector(vs) => vector_selector_sets(&vs),
        other => Err(QueryError::BadData(format!(
            "invalid series selector {input:?}: expected a vector selector like up{{job=\"api\"}}, got {}",
            expr_kind(&other)
        ))),
    }
}

/// Parses every `match[]` parameter; their union is selected.
pub fn parse_match_params(params: &[String]) -> Result<Vec<Vec<Matcher>>, QueryError> {
    let mut sets = Vec::new();
    for p in params {
        sets.extend(parse_selector(p)?);
    }
    Ok(sets)
}

/// Every series selector inside a PromQL expression (what exemplar queries look at).
pub fn selectors_in_expr(input: &str) -> Result<Vec<Vec<Matcher>>, QueryError> {
    let expr = parser::parse(input)
        .map_err(|e| QueryError::BadData(format!("invalid query {input:?}: {e}")))?;
    let mut sets = Vec::new();
    walk(&expr, &mut sets)?;
    Ok(sets)
}

fn walk(e: &Expr, sets: &mut Vec<Vec<Matcher>>) -> Result<(), QueryError> {
    match e {
        Expr::VectorSelector(vs) => sets.extend(vector_selector_sets(vs)?),
        Expr::MatrixSelector(ms) => sets.extend(vector_selector_sets(&ms.vs)?),
        Expr::Aggregate(a) => {
            walk(&a.expr, sets)?;
            if let Some(p) = &a.param {
                walk(p, sets)?;
            }
        }
        Expr::Unary(u) => walk(&u.expr, sets)?,
        Expr::Binary(b) => {
            walk(&b.lhs, sets)?;
            walk(&b.rhs, sets)?;
        }
        Expr::Paren(p) => walk(&p.expr, sets)?,
        Expr::Subquery(s) => walk(&s.expr, sets)?,
        Expr::Call(c) => {
            for a in &c.args.args {
                walk(a, sets)?;
            }
        }
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) | Expr::Extension(_) => {}
    }
    Ok(())
}

pub(crate) fn vector_selector_sets(vs: &VectorSelector) -> Result<Vec<Vec<Matcher>>, QueryError> {
    let mut base: Vec<Matcher> = Vec::new();
    if let Some(name) = &vs.name {
        base.push(Matcher::equal(METRIC_NAME, name.clone()));
    }
    for m in &vs.matchers.matchers {
        base.push(convert(m)?);
    }
    if vs.matchers.or_matchers.is_empty() {
        return Ok(vec![base]);
    }
    vs.matchers
        .or_matchers
        .iter()
        .map(|group| {
            let mut set = base.clone();
            for m in group {
                set.push(convert(m)?);
            }
            Ok(set)
        })
        .collect()
}

fn convert(m: &PMatcher) -> Result<Matcher, QueryError> {
    let op = match &m.op {
        PMatchOp::Equal => MatchOp::Equal,
        PMatchOp::NotEqual => MatchOp::NotEqual,
        PMatchOp::Re(_) => MatchOp::Regex,
        PMatchOp::NotRe(_) => MatchOp::NotRegex,
    };
    Matcher::new(op, m.name.clone(), m.value.clone())
        .map_err(|e| QueryError::BadData(e.to_string()))
}

fn expr_kind(e: &Expr) -> &'static str {
    match e {
        Expr::Aggregate(_) => "an aggregation",
        Expr::Unary(_) | Expr::Binary(_) => "an operator expression",
        Expr::Paren(_) => "a parenthesised expression",
        Expr::Subquery(_) => "a subquery",
        Expr::NumberLiteral(_) => "a number",
        Expr::StringLiteral(_) => "a string",
        Expr::VectorSelector(_) => "a vector selector",
        Expr::MatrixSelector(_) => "a range selector",
        Expr::Call(_) => "a function call",
        Expr::Extension(_) => "an extension",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selector_with_name_and_matchers() {
        let sets = parse_selector(r#"http_requests_total{job="api", code=~"5.."}"#).unwrap();
        assert_eq!(sets.len(), 1);
        let s: Vec<String> = sets[0].iter().map(|m| m.to_string()).collect();
        assert_eq!(
            s,
            [
                r#"__name__="http_requests_total""#,
                r#"job="api""#,
                r#"code=~"5..""#
            ]
        );
    }

    #[test]
    fn rejects_non_selectors_and_empty_selectors() {
        for bad in [
            "sum(up)",
            "1 + 1",
            "{}",
            r#"{job=""}"#,
            "up{",
            "rate(up[5m])",
        ] {
            let err = parse_selector(bad).unwrap_err();
            assert_eq!(err.error_type(), "bad_data", "{bad}: {err}");
        }
    }

    #[test]
    fn finds_selectors_inside_expressions() {
        let sets = selectors_in_expr(r#"sum by (le) (rate(http_request_duration_seconds_bucket{job="api"}[5m])) / on() group_left up"#).unwrap();
        assert_eq!(sets.len(), 2);
    }
}
