//! How two answers of the Prometheus query API are compared (issue 3's rules):
//! - the same result type;
//! - the same label sets: order-insensitive, except for an instant query whose top-level
//!   expression is `sort(…)` or `sort_desc(…)`, where the order of values must match
//!   (series with equal values may come in any order among themselves);
//! - values equal within 1e-9 relative or 1e-12 absolute (near zero), or both NaN; ±Inf
//!   only equal themselves;
//! - the same timestamps, to the millisecond;
//! - errors: both fail, with the same HTTP status and `errorType` (issue 3's error parity:
//!   400 `bad_data` for malformed queries); a different wording is only a note — lastmile
//!   parses with another parser, so positions and phrasing of parse errors differ.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::Value;

pub type Labels = BTreeMap<String, String>;

pub const REL_TOLERANCE: f64 = 1e-9;
pub const ABS_TOLERANCE: f64 = 1e-12;

#[derive(Clone, Debug, PartialEq)]
pub enum Data {
    Vector(Vec<(Labels, i64, f64)>),
    Matrix(Vec<(Labels, Vec<(i64, f64)>)>),
    Scalar(i64, f64),
    String(i64, String),
}

impl Data {
    pub fn type_name(&self) -> &'static str {
        match self {
            Data::Vector(_) => "vector",
            Data::Matrix(_) => "matrix",
            Data::Scalar(..) => "scalar",
            Data::String(..) => "string",
        }
    }

    /// Whether there is nothing in it (an empty vector or matrix).
    pub fn is_empty(&self) -> bool {
        match self {
            Data::Vector(v) => v.is_empty(),
            Data::Matrix(m) => m.is_empty(),
            _ => false,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    Success {
        data: Data,
        warnings: Vec<String>,
    },
    Error {
        status: u16,
        error_type: String,
        message: String,
    },
}

/// The result of comparing an answer (`got`) with the reference (`want`).
#[derive(Clone, Debug, PartialEq)]
pub enum Verdict {
    Same,
    /// Equivalent, with something worth reporting (e.g. an error message's wording).
    SameWithNote(String),
    Differ(String),
}

impl Verdict {
    pub fn is_same(&self) -> bool {
        !matches!(self, Verdict::Differ(_))
    }
}

/// Whether the order of an instant vector's samples is part of the answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Order {
    Any,
    ByValue,
}

// ---------------------------------------------------------------------------------------
// Values

/// The tolerance rule for two sample values.
pub fn values_equal(a: f64, b: f64) -> bool {
    if a.is_nan() || b.is_nan() {
        return a.is_nan() && b.is_nan();
    }
    if a == b {
        return true;
    }
    if a.is_infinite() || b.is_infinite() {
        return false;
    }
    let diff = (a - b).abs();
    // `diff` itself overflows for values near ±f64::MAX of opposite signs; then it is
    // infinite and the comparisons below are false, as they should be.
    diff <= ABS_TOLERANCE || diff <= REL_TOLERANCE * a.abs().max(b.abs())
}

/// Parses a value as the API prints it.
pub fn parse_value(s: &str) -> Result<f64, String> {
    match s {
        "NaN" => Ok(f64::NAN),
        "+Inf" | "Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        _ => s.parse().map_err(|_| format!("not a sample value: {s:?}")),
    }
}

/// Prints a value as Prometheus does (close enough for reports).
pub fn show_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else if v == 0.0 || (1e-6..1e21).contains(&v.abs()) {
        format!("{v}")
    } else {
        // Exact, but without hundreds of digits.
        format!("{v:e}")
    }
}

pub fn show_labels(l: &Labels) -> String {
    let mut s = String::new();
    if let Some(name) = l.get("__name__") {
        s.push_str(name);
    }
    s.push('{');
    let mut first = true;
    for (k, v) in l.iter().filter(|(k, _)| *k != "__name__") {
        if !first {
            s.push_str(", ");
        }
        first = false;
        let _ = write!(s, "{k}={v:?}");
    }
    s.push('}');
    s
}

fn show_ts(ms: i64) -> String {
    format!("{}.{:03}", ms.div_euclid(1000), ms.rem_euclid(1000))
}

// ---------------------------------------------------------------------------------------
// Parsing

fn ts_ms(v: &Value) -> Result<i64, String> {
    let s = match v {
        Value::Number(n) => n.as_f64().ok_or("bad number")?,
        Value::String(s) => s
            .parse::<f64>()
            .map_err(|_| format!("bad timestamp {s:?}"))?,
        other => return Err(format!("bad timestamp {other}")),
    };
    Ok((s * 1000.0).round() as i64)
}

fn point(v: &Value) -> Result<(i64, f64), String> {
    let a = v
        .as_array()
        .filter(|a| a.len() == 2)
        .ok_or_else(|| format!("a point must be [time, \"value\"], got {v}"))?;
    let value = a[1]
        .as_str()
        .ok_or_else(|| format!("a value must be a string, got {}", a[1]))?;
    Ok((ts_ms(&a[0])?, parse_value(value)?))
}

fn labels(v: &Value) -> Result<Labels, String> {
    let o = v
        .as_object()
        .ok_or_else(|| format!("metric must be an object, got {v}"))?;
    o.iter()
        .map(|(k, v)| {
            v.as_str()
                .map(|s| (k.clone(), s.to_string()))
                .ok_or_else(|| format!("label {k} must be a string, got {v}"))
        })
        .collect()
}

/// Parses an answer of `/api/v1/query` or `/api/v1/query_range`.
pub fn parse_outcome(status: u16, body: &[u8]) -> Result<Outcome, String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| {
        format!(
            "status {status}, body is not JSON ({e}): {}",
            truncate(&String::from_utf8_lossy(body), 300)
        )
    })?;
    let warnings = v["warnings"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|w| w.as_str().unwrap_or_default().to_string())
                .collect()
        })
        .unwrap_or_default();
    match v["status"].as_str() {
        Some("success") => {
            if status != 200 {
                return Err(format!("status \"success\" with HTTP status {status}"));
            }
            let data = &v["data"];
            let result = &data["result"];
            let data = match data["resultType"].as_str() {
                Some("vector") => Data::Vector(
                    result
                        .as_array()
                        .ok_or("vector result must be an array")?
                        .iter()
                        .map(|s| {
                            let (t, v) = point(&s["value"])?;
                            Ok((labels(&s["metric"])?, t, v))
                        })
                        .collect::<Result<_, String>>()?,
                ),
                Some("matrix") => Data::Matrix(
                    result
                        .as_array()
                        .ok_or("matrix result must be an array")?
                        .iter()
                        .map(|s| {
                            let points = s["values"]
                                .as_array()
                                .ok_or_else(|| format!("series without values: {s}"))?
                                .iter()
                                .map(point)
                                .collect::<Result<_, String>>()?;
                            Ok((labels(&s["metric"])?, points))
                        })
                        .collect::<Result<_, String>>()?,
                ),
                Some("scalar") => {
                    let (t, v) = point(result)?;
                    Data::Scalar(t, v)
                }
                Some("string") => {
                    let a = result
                        .as_array()
                        .filter(|a| a.len() == 2)
                        .ok_or_else(|| format!("string result must be [time, text]: {result}"))?;
                    Data::String(
                        ts_ms(&a[0])?,
                        a[1].as_str().ok_or("string value")?.to_string(),
                    )
                }
                other => return Err(format!("unknown resultType {other:?}")),
            };
            Ok(Outcome::Success { data, warnings })
        }
        Some("error") => Ok(Outcome::Error {
            status,
            error_type: v["errorType"].as_str().unwrap_or_default().to_string(),
            message: v["error"].as_str().unwrap_or_default().to_string(),
        }),
        _ => Err(format!(
            "status {status}, no \"status\" field: {}",
            truncate(&v.to_string(), 300)
        )),
    }
}

// ---------------------------------------------------------------------------------------
// Which queries are ordered

/// Whether the whole expression is a call of `sort` or `sort_desc` (maybe in
/// parentheses): the only case where Prometheus promises an order.
pub fn is_top_level_sort(expr: &str) -> bool {
    let mut e = expr.trim();
    loop {
        if e.starts_with('(') && closing_paren(e, 0) == Some(e.len() - 1) {
            e = e[1..e.len() - 1].trim();
            continue;
        }
        break;
    }
    for f in ["sort_desc", "sort"] {
        if let Some(rest) = e.strip_prefix(f) {
            let args = rest.trim_start();
            let open = e.len() - args.len();
            return args.starts_with('(') && closing_paren(e, open) == Some(e.len() - 1);
        }
    }
    false
}

/// The index of the parenthesis closing the one at `open`, skipping string literals.
fn closing_paren(s: &str, open: usize) -> Option<usize> {
    let b = s.as_bytes();
    let mut depth = 0usize;
    let mut i = open;
    while i < b.len() {
        match b[i] {
            b'"' | b'\'' | b'`' => {
                let q = b[i];
                i += 1;
                while i < b.len() && b[i] != q {
                    if b[i] == b'\\' && q != b'`' {
                        i += 1;
                    }
                    i += 1;
                }
            }
            b'(' => depth += 1,
            b')' => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
        i += 1;
    }
    None
}

// ---------------------------------------------------------------------------------------
// Comparison

/// Compares `got` with the reference answer `want`.
pub fn compare(want: &Outcome, got: &Outcome, order: Order) -> Verdict {
    match (want, got) {
        (
            Outcome::Error {
                status: ws,
                error_type: wt,
                message: wm,
            },
            Outcome::Error {
                status: gs,
                error_type: gt,
                message: gm,
            },
        ) => {
            if ws != gs || wt != gt {
                return Verdict::Differ(format!(
                    "error kinds differ: want HTTP {ws} errorType {wt:?} ({wm}), got HTTP {gs} errorType {gt:?} ({gm})"
                ));
            }
            if wm == gm {
                Verdict::Same
            } else {
                Verdict::SameWithNote(format!(
                    "error messages differ ({wt}):\n  want: {wm}\n  got:  {gm}"
                ))
            }
        }
        (Outcome::Error { .. }, Outcome::Success { .. })
        | (Outcome::Success { .. }, Outcome::Error { .. }) => Verdict::Differ(format!(
            "want {}, got {}",
            render(want, 150),
            render(got, 150)
        )),
        (Outcome::Success { data: w, .. }, Outcome::Success { data: g, .. }) => {
            let diff = compare_data(w, g, order);
            if diff.is_empty() {
                Verdict::Same
            } else {
                Verdict::Differ(diff)
            }
        }
    }
}

const MAX_DIFF_LINES: usize = 12;

/// Lines describing how `got` differs from `want`; empty when they match.
pub fn compare_data(want: &Data, got: &Data, order: Order) -> String {
    let mut out = Vec::new();
    match (want, got) {
        (Data::Scalar(wt, wv), Data::Scalar(gt, gv)) => {
            if wt != gt {
                out.push(format!(
                    "scalar time: want {}, got {}",
                    show_ts(*wt),
                    show_ts(*gt)
                ));
            }
            if !values_equal(*wv, *gv) {
                out.push(format!(
                    "scalar value: want {}, got {}",
                    show_value(*wv),
                    show_value(*gv)
                ));
            }
        }
        (Data::String(wt, ws), Data::String(gt, gs)) => {
            if wt != gt {
                out.push(format!(
                    "string time: want {}, got {}",
                    show_ts(*wt),
                    show_ts(*gt)
                ));
            }
            if ws != gs {
                out.push(format!("string: want {ws:?}, got {gs:?}"));
            }
        }
        (Data::Vector(w), Data::Vector(g)) => match order {
            Order::Any => compare_vectors(w, g, &mut out),
            Order::ByValue => compare_sorted_vectors(w, g, &mut out),
        },
        (Data::Matrix(w), Data::Matrix(g)) => compare_matrices(w, g, &mut out),
        _ => out.push(format!(
            "resultType: want {}, got {}",
            want.type_name(),
            got.type_name()
        )),
    }
    if out.len() > MAX_DIFF_LINES {
        let more = out.len() - MAX_DIFF_LINES;
        out.truncate(MAX_DIFF_LINES);
        out.push(format!("… and {more} more differences"));
    }
    out.join("\n")
}

/// Reports label sets that occur more than once (never valid in an answer).
fn duplicates<'a>(side: &str, labels: impl Iterator<Item = &'a Labels>, out: &mut Vec<String>) {
    let mut seen = BTreeMap::new();
    for l in labels {
        *seen.entry(l).or_insert(0usize) += 1;
    }
    for (l, n) in seen.into_iter().filter(|(_, n)| *n > 1) {
        out.push(format!("{side} has {n} series {}", show_labels(l)));
    }
}

fn compare_vectors(w: &[(Labels, i64, f64)], g: &[(Labels, i64, f64)], out: &mut Vec<String>) {
    duplicates("want", w.iter().map(|s| &s.0), out);
    duplicates("got", g.iter().map(|s| &s.0), out);
    let wm: BTreeMap<&Labels, (i64, f64)> = w.iter().map(|(l, t, v)| (l, (*t, *v))).collect();
    let gm: BTreeMap<&Labels, (i64, f64)> = g.iter().map(|(l, t, v)| (l, (*t, *v))).collect();
    if w.len() != g.len() {
        out.push(format!("{} series wanted, {} got", w.len(), g.len()));
    }
    for (l, (wt, wv)) in &wm {
        match gm.get(l) {
            None => out.push(format!(
                "missing {} = {} @{}",
                show_labels(l),
                show_value(*wv),
                show_ts(*wt)
            )),
            Some((gt, gv)) => {
                if wt != gt || !values_equal(*wv, *gv) {
                    out.push(format!(
                        "{}: want {} @{}, got {} @{}",
                        show_labels(l),
                        show_value(*wv),
                        show_ts(*wt),
                        show_value(*gv),
                        show_ts(*gt)
                    ));
                }
            }
        }
    }
    for (l, (gt, gv)) in &gm {
        if !wm.contains_key(l) {
            out.push(format!(
                "unexpected {} = {} @{}",
                show_labels(l),
                show_value(*gv),
                show_ts(*gt)
            ));
        }
    }
}

/// Sorted answers: the values must come in the same order; within a run of equal values
/// (all NaN count as equal) the label sets must be the same set.
fn compare_sorted_vectors(
    w: &[(Labels, i64, f64)],
    g: &[(Labels, i64, f64)],
    out: &mut Vec<String>,
) {
    // Same content first: if that differs, the order is moot.
    compare_vectors(w, g, out);
    if !out.is_empty() {
        return;
    }
    let same = |a: f64, b: f64| (a.is_nan() && b.is_nan()) || values_equal(a, b);
    let mut i = 0;
    while i < w.len() {
        let mut j = i + 1;
        while j < w.len() && same(w[j].2, w[i].2) {
            j += 1;
        }
        let want_run: BTreeMap<&Labels, ()> = w[i..j].iter().map(|s| (&s.0, ())).collect();
        let got_run: BTreeMap<&Labels, ()> = g[i..j].iter().map(|s| (&s.0, ())).collect();
        if want_run != got_run {
            let show = |s: &[(Labels, i64, f64)]| {
                s.iter()
                    .map(|(l, _, v)| format!("{} {}", show_labels(l), show_value(*v)))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            out.push(format!(
                "order differs at positions {i}..{j}: want [{}], got [{}]",
                truncate(&show(&w[i..j]), 400),
                truncate(&show(&g[i..j]), 400)
            ));
            return;
        }
        i = j;
    }
}

fn compare_matrices(
    w: &[(Labels, Vec<(i64, f64)>)],
    g: &[(Labels, Vec<(i64, f64)>)],
    out: &mut Vec<String>,
) {
    duplicates("want", w.iter().map(|s| &s.0), out);
    duplicates("got", g.iter().map(|s| &s.0), out);
    let wm: BTreeMap<&Labels, &Vec<(i64, f64)>> = w.iter().map(|(l, p)| (l, p)).collect();
    let gm: BTreeMap<&Labels, &Vec<(i64, f64)>> = g.iter().map(|(l, p)| (l, p)).collect();
    if w.len() != g.len() {
        out.push(format!("{} series wanted, {} got", w.len(), g.len()));
    }
    for (l, wp) in &wm {
        let Some(gp) = gm.get(l) else {
            out.push(format!("missing {} ({} points)", show_labels(l), wp.len()));
            continue;
        };
        if let Some(d) = compare_points(wp, gp) {
            out.push(format!("{}: {d}", show_labels(l)));
        }
    }
    for (l, gp) in &gm {
        if !wm.contains_key(l) {
            out.push(format!(
                "unexpected {} ({} points)",
                show_labels(l),
                gp.len()
            ));
        }
    }
}

/// The first difference between two series' points, if any.
pub fn compare_points(w: &[(i64, f64)], g: &[(i64, f64)]) -> Option<String> {
    let wt: BTreeMap<i64, f64> = w.iter().copied().collect();
    let gt: BTreeMap<i64, f64> = g.iter().copied().collect();
    let mut diffs = Vec::new();
    for (t, wv) in &wt {
        match gt.get(t) {
            None => diffs.push(format!(
                "no point @{} (want {})",
                show_ts(*t),
                show_value(*wv)
            )),
            Some(gv) if !values_equal(*wv, *gv) => diffs.push(format!(
                "@{} want {}, got {}",
                show_ts(*t),
                show_value(*wv),
                show_value(*gv)
            )),
            Some(_) => {}
        }
    }
    for (t, gv) in &gt {
        if !wt.contains_key(t) {
            diffs.push(format!(
                "extra point @{} = {}",
                show_ts(*t),
                show_value(*gv)
            ));
        }
    }
    if w.len() != wt.len() || g.len() != gt.len() {
        diffs.push("repeated timestamps".to_string());
    }
    if diffs.is_empty() {
        return None;
    }
    let n = diffs.len();
    diffs.truncate(3);
    let mut s = diffs.join("; ");
    if n > 3 {
        let _ = write!(s, "; … {} points differ in all", n);
    }
    Some(s)
}

// ---------------------------------------------------------------------------------------
// Rendering

pub fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes)", &s[..end], s.len())
}

/// A compact text form of an answer, at most about `max` bytes.
pub fn render(o: &Outcome, max: usize) -> String {
    let s = match o {
        Outcome::Error {
            status,
            error_type,
            message,
        } => format!("error HTTP {status} {error_type}: {message}"),
        Outcome::Success { data, .. } => match data {
            Data::Scalar(t, v) => format!("scalar {} @{}", show_value(*v), show_ts(*t)),
            Data::String(t, s) => format!("string {s:?} @{}", show_ts(*t)),
            Data::Vector(v) => {
                let mut s = format!("vector ({} series) [", v.len());
                for (i, (l, t, val)) in v.iter().enumerate() {
                    if i > 0 {
                        s.push_str(", ");
                    }
                    let _ = write!(
                        s,
                        "{} {} @{}",
                        show_labels(l),
                        show_value(*val),
                        show_ts(*t)
                    );
                    if s.len() > max {
                        break;
                    }
                }
                s.push(']');
                s
            }
            Data::Matrix(m) => {
                let mut s = format!("matrix ({} series) [", m.len());
                for (i, (l, p)) in m.iter().enumerate() {
                    if i > 0 {
                        s.push_str(", ");
                    }
                    let _ = write!(s, "{} {} points", show_labels(l), p.len());
                    if let (Some(a), Some(b)) = (p.first(), p.last()) {
                        let _ = write!(
                            s,
                            " ({}@{} … {}@{})",
                            show_value(a.1),
                            show_ts(a.0),
                            show_value(b.1),
                            show_ts(b.0)
                        );
                    }
                    if s.len() > max {
                        break;
                    }
                }
                s.push(']');
                s
            }
        },
    };
    truncate(&s, max)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn ok(data: Data) -> Outcome {
        Outcome::Success {
            data,
            warnings: vec![],
        }
    }

    fn err(status: u16, t: &str, m: &str) -> Outcome {
        Outcome::Error {
            status,
            error_type: t.into(),
            message: m.into(),
        }
    }

    #[test]
    fn tolerance() {
        assert!(values_equal(1.0, 1.0));
        assert!(values_equal(1.0, 1.0 + 1e-10));
        assert!(!values_equal(1.0, 1.0 + 1e-8));
        assert!(values_equal(1e300, 1e300 * (1.0 + 1e-10)));
        assert!(!values_equal(1e300, 1.0001e300));
        // Near zero the absolute tolerance applies.
        assert!(values_equal(0.0, 1e-13));
        assert!(values_equal(-1e-13, 1e-13));
        assert!(!values_equal(0.0, 1e-11));
        assert!(values_equal(1e-300, 2e-300));
        assert!(values_equal(0.0, -0.0));
        // Specials.
        assert!(values_equal(f64::NAN, f64::NAN));
        assert!(values_equal(
            f64::NAN,
            f64::from_bits(0x7ff8_0000_0000_0001)
        ));
        assert!(!values_equal(f64::NAN, 0.0));
        assert!(!values_equal(1.0, f64::NAN));
        assert!(values_equal(f64::INFINITY, f64::INFINITY));
        assert!(!values_equal(f64::INFINITY, f64::NEG_INFINITY));
        assert!(!values_equal(f64::INFINITY, f64::MAX));
        assert!(!values_equal(f64::MAX, -f64::MAX));
        assert!(values_equal(f64::MAX, f64::MAX));
    }

    #[test]
    fn parses_every_result_type() {
        let body = br#"{"status":"success","data":{"resultType":"vector","result":[
            {"metric":{"__name__":"up","job":"a"},"value":[1700000000.123,"1"]},
            {"metric":{},"value":[1700000000.123,"NaN"]}]}}"#;
        let Outcome::Success {
            data: Data::Vector(v),
            ..
        } = parse_outcome(200, body).unwrap()
        else {
            panic!("not a vector")
        };
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].0, l(&[("__name__", "up"), ("job", "a")]));
        assert_eq!(v[0].1, 1_700_000_000_123);
        assert!(v[1].2.is_nan());

        let body = br#"{"status":"success","data":{"resultType":"matrix","result":[
            {"metric":{"a":"1"},"values":[[10,"+Inf"],[25.5,"-Inf"]]}]}}"#;
        assert_eq!(
            parse_outcome(200, body).unwrap(),
            ok(Data::Matrix(vec![(
                l(&[("a", "1")]),
                vec![(10_000, f64::INFINITY), (25_500, f64::NEG_INFINITY)]
            )]))
        );
        let body = br#"{"status":"success","data":{"resultType":"scalar","result":[5,"2.5"]}}"#;
        assert_eq!(
            parse_outcome(200, body).unwrap(),
            ok(Data::Scalar(5000, 2.5))
        );
        let body = br#"{"status":"success","data":{"resultType":"string","result":[5,"hi"]}}"#;
        assert_eq!(
            parse_outcome(200, body).unwrap(),
            ok(Data::String(5000, "hi".into()))
        );
        let body = br#"{"status":"error","errorType":"bad_data","error":"1:5: parse error: x"}"#;
        assert_eq!(
            parse_outcome(400, body).unwrap(),
            err(400, "bad_data", "1:5: parse error: x")
        );
        assert!(parse_outcome(404, b"404 page not found").is_err());
        assert!(parse_outcome(200, br#"{"status":"success","data":{"resultType":"x"}}"#).is_err());
    }

    #[test]
    fn vectors_match_regardless_of_order() {
        let a = l(&[("job", "api")]);
        let b = l(&[("job", "api-v2")]);
        let want = ok(Data::Vector(vec![
            (a.clone(), 1000, 1.0),
            (b.clone(), 1000, f64::NAN),
        ]));
        let got = ok(Data::Vector(vec![
            (b.clone(), 1000, f64::NAN),
            (a.clone(), 1000, 1.0),
        ]));
        assert_eq!(compare(&want, &got, Order::Any), Verdict::Same);

        // A missing series, an extra one, a value and a timestamp difference are all told.
        let c = l(&[("job", "xapi")]);
        let got = ok(Data::Vector(vec![
            (a.clone(), 1000, 1.5),
            (c.clone(), 1000, 0.0),
        ]));
        let Verdict::Differ(d) = compare(&want, &got, Order::Any) else {
            panic!("should differ")
        };
        assert!(d.contains("missing {job=\"api-v2\"}"), "{d}");
        assert!(d.contains("unexpected {job=\"xapi\"}"), "{d}");
        assert!(
            d.contains("{job=\"api\"}: want 1 @1.000, got 1.5 @1.000"),
            "{d}"
        );
        assert_eq!(show_value(1e300), "1e300");
        assert_eq!(show_value(-2.5e-300), "-2.5e-300");
        assert_eq!(show_value(1795609140.5), "1795609140.5");
        let got = ok(Data::Vector(vec![
            (a.clone(), 2000, 1.0),
            (b.clone(), 1000, f64::NAN),
        ]));
        assert!(!compare(&want, &got, Order::Any).is_same());

        // Label sets must be equal, not just overlap.
        let got = ok(Data::Vector(vec![
            (l(&[("job", "api"), ("x", "1")]), 1000, 1.0),
            (b.clone(), 1000, f64::NAN),
        ]));
        assert!(!compare(&want, &got, Order::Any).is_same());
        // Duplicates are an error even if the set is the same.
        let got = ok(Data::Vector(vec![
            (a.clone(), 1000, 1.0),
            (b.clone(), 1000, f64::NAN),
            (b.clone(), 1000, f64::NAN),
        ]));
        assert!(!compare(&want, &got, Order::Any).is_same());
        // NaN is not a number.
        let got = ok(Data::Vector(vec![(a.clone(), 1000, 1.0), (b, 1000, 0.0)]));
        assert!(!compare(&want, &got, Order::Any).is_same());
    }

    #[test]
    fn sorted_vectors_compare_order_but_not_among_ties() {
        let s = |n: &str, v: f64| (l(&[("n", n)]), 1000, v);
        let want = ok(Data::Vector(vec![
            s("a", 1.0),
            s("b", 2.0),
            s("c", 2.0),
            s("d", 3.0),
            s("e", f64::NAN),
            s("f", f64::NAN),
        ]));
        let ties_swapped = ok(Data::Vector(vec![
            s("a", 1.0),
            s("c", 2.0),
            s("b", 2.0),
            s("d", 3.0),
            s("f", f64::NAN),
            s("e", f64::NAN),
        ]));
        assert_eq!(compare(&want, &ties_swapped, Order::ByValue), Verdict::Same);
        let reordered = ok(Data::Vector(vec![
            s("b", 2.0),
            s("a", 1.0),
            s("c", 2.0),
            s("d", 3.0),
            s("e", f64::NAN),
            s("f", f64::NAN),
        ]));
        assert_eq!(compare(&want, &reordered, Order::Any), Verdict::Same);
        let Verdict::Differ(d) = compare(&want, &reordered, Order::ByValue) else {
            panic!("order should matter")
        };
        assert!(d.contains("order differs at positions 0..1"), "{d}");
        let nan_first = ok(Data::Vector(vec![
            s("e", f64::NAN),
            s("f", f64::NAN),
            s("a", 1.0),
            s("b", 2.0),
            s("c", 2.0),
            s("d", 3.0),
        ]));
        assert!(!compare(&want, &nan_first, Order::ByValue).is_same());
    }

    #[test]
    fn matrices_compare_points() {
        let a = l(&[("a", "1")]);
        let b = l(&[("a", "2")]);
        let want = ok(Data::Matrix(vec![
            (a.clone(), vec![(1000, 1.0), (2000, f64::NAN)]),
            (b.clone(), vec![(1000, 5.0)]),
        ]));
        let got = ok(Data::Matrix(vec![
            (b.clone(), vec![(1000, 5.0 + 1e-12)]),
            (a.clone(), vec![(1000, 1.0), (2000, f64::NAN)]),
        ]));
        assert_eq!(compare(&want, &got, Order::Any), Verdict::Same);
        let got = ok(Data::Matrix(vec![
            (b.clone(), vec![(1000, 5.0)]),
            (a.clone(), vec![(1000, 1.0), (3000, f64::NAN)]),
        ]));
        let Verdict::Differ(d) = compare(&want, &got, Order::Any) else {
            panic!("should differ")
        };
        assert!(d.contains("no point @2.000"), "{d}");
        assert!(d.contains("extra point @3.000"), "{d}");
        let got = ok(Data::Matrix(vec![(a, vec![(1000, 1.0), (2000, f64::NAN)])]));
        assert!(
            matches!(compare(&want, &got, Order::Any), Verdict::Differ(d) if d.contains("missing {a=\"2\"}"))
        );
    }

    #[test]
    fn result_types_and_scalars() {
        assert!(
            !compare(
                &ok(Data::Scalar(1000, 1.0)),
                &ok(Data::Vector(vec![])),
                Order::Any
            )
            .is_same()
        );
        assert!(
            compare(
                &ok(Data::Scalar(1000, f64::NAN)),
                &ok(Data::Scalar(1000, f64::NAN)),
                Order::Any
            )
            .is_same()
        );
        assert!(
            !compare(
                &ok(Data::Scalar(1000, 1.0)),
                &ok(Data::Scalar(2000, 1.0)),
                Order::Any
            )
            .is_same()
        );
        assert!(
            !compare(
                &ok(Data::Vector(vec![])),
                &ok(Data::Matrix(vec![])),
                Order::Any
            )
            .is_same()
        );
        assert!(
            compare(
                &ok(Data::Vector(vec![])),
                &ok(Data::Vector(vec![])),
                Order::Any
            )
            .is_same()
        );
        assert!(
            !compare(
                &ok(Data::String(1000, "a".into())),
                &ok(Data::String(1000, "b".into())),
                Order::Any
            )
            .is_same()
        );
    }

    #[test]
    fn errors_compare_kind_and_status() {
        let parse = err(400, "bad_data", "1:4: parse error: unexpected <EOF>");
        assert_eq!(compare(&parse, &parse.clone(), Order::Any), Verdict::Same);
        // Parse errors must agree in kind and status; wording is a note.
        let other = err(
            400,
            "bad_data",
            "parse error at char 4: unexpected end of input",
        );
        assert!(matches!(
            compare(&parse, &other, Order::Any),
            Verdict::SameWithNote(_)
        ));
        // Other errors only need the same kind and status; wording is a note.
        let exec = err(422, "execution", "many-to-many matching not allowed: …");
        let exec2 = err(422, "execution", "many-to-many matching is not allowed");
        assert!(matches!(
            compare(&exec, &exec2, Order::Any),
            Verdict::SameWithNote(_)
        ));
        let wrong_kind = err(400, "bad_data", "many-to-many matching not allowed: …");
        assert!(!compare(&exec, &wrong_kind, Order::Any).is_same());
        let wrong_status = err(500, "execution", "many-to-many matching not allowed: …");
        assert!(!compare(&exec, &wrong_status, Order::Any).is_same());
        // An error against a result, either way round.
        assert!(!compare(&exec, &ok(Data::Vector(vec![])), Order::Any).is_same());
        assert!(!compare(&ok(Data::Vector(vec![])), &exec, Order::Any).is_same());
    }

    #[test]
    fn sort_detection() {
        assert!(is_top_level_sort("sort(up)"));
        assert!(is_top_level_sort(" sort_desc (rate(x[5m])) "));
        assert!(is_top_level_sort("(sort(up))"));
        assert!(is_top_level_sort(
            r#"sort(label_replace(up, "a", ")", "b", "(.*)"))"#
        ));
        assert!(!is_top_level_sort("sort(up) + 1"));
        assert!(!is_top_level_sort("sum(sort(up))"));
        assert!(!is_top_level_sort("sort_by_label(up)"));
        assert!(!is_top_level_sort("(sort(up)) * (sort(up))"));
        assert!(!is_top_level_sort("topk(3, up)"));
        assert!(!is_top_level_sort("sorted_metric"));
    }

    #[test]
    fn rendering_is_truncated() {
        let v: Vec<_> = (0..1000)
            .map(|i| (l(&[("i", &i.to_string())]), 1000, i as f64))
            .collect();
        let s = render(&ok(Data::Vector(v)), 300);
        assert!(s.len() < 400, "{s}");
        assert!(s.starts_with("vector (1000 series)"));
    }
}
