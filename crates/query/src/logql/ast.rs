//! The LogQL subset lastmile evaluates, as a syntax tree.

use lastmile_model::Matcher;
use regex::Regex;

use super::template::Template;

#[derive(Clone, Debug)]
pub enum Expr {
    Log(LogExpr),
    Metric(MetricExpr),
}

/// `{stream selector} | stage | stage …`
#[derive(Clone, Debug)]
pub struct LogExpr {
    pub matchers: Vec<Matcher>,
    pub stages: Vec<Stage>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LineOp {
    /// `|=`
    Contains,
    /// `!=`
    NotContains,
    /// `|~`
    Regex,
    /// `!~`
    NotRegex,
}

/// One line filter; `or` alternatives (`|= "a" or "b"`) share its operator.
#[derive(Clone, Debug)]
pub struct LineFilter {
    pub op: LineOp,
    pub values: Vec<String>,
    /// Compiled patterns of `|~`/`!~` (unanchored, as in Loki).
    pub regexes: Vec<Regex>,
}

impl LineFilter {
    pub fn matches(&self, line: &str) -> bool {
        match self.op {
            LineOp::Contains => self.values.iter().any(|v| line.contains(v.as_str())),
            LineOp::NotContains => !self.values.iter().any(|v| line.contains(v.as_str())),
            LineOp::Regex => self.regexes.iter().any(|r| r.is_match(line)),
            LineOp::NotRegex => !self.regexes.iter().any(|r| r.is_match(line)),
        }
    }
}

#[derive(Clone, Debug)]
pub enum Stage {
    Line(LineFilter),
    /// `| json` (all fields) or `| json a="x.y", b` (chosen fields).
    Json(Vec<(String, JsonPath)>),
    Logfmt,
    Labels(LabelFilter),
    LineFormat(Template),
    /// `| drop a, b` / `| keep a, b`: remove labels (or all but these).
    Drop(Vec<String>),
    Keep(Vec<String>),
}

/// A path into a JSON document: `a.b[0].c` → [Key(a), Key(b), Index(0), Key(c)].
pub type JsonPath = Vec<JsonStep>;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JsonStep {
    Key(String),
    Index(usize),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CmpOp {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
}

impl CmpOp {
    pub fn apply(self, a: f64, b: f64) -> bool {
        match self {
            CmpOp::Eq => a == b,
            CmpOp::Ne => a != b,
            CmpOp::Gt => a > b,
            CmpOp::Ge => a >= b,
            CmpOp::Lt => a < b,
            CmpOp::Le => a <= b,
        }
    }
}

/// How a label's value is read for a comparison.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ValueKind {
    Number,
    /// Go duration (`1.5s`, `250ms`), compared in seconds.
    Duration,
    /// Humanized bytes (`10KB`, `1.5MiB`), compared in bytes.
    Bytes,
}

#[derive(Clone, Debug)]
pub enum LabelFilter {
    And(Box<LabelFilter>, Box<LabelFilter>),
    Or(Box<LabelFilter>, Box<LabelFilter>),
    /// `name = "v"`, `!=`, `=~`, `!~` (regex anchored, as label matchers are).
    Str(Matcher),
    Cmp {
        name: String,
        op: CmpOp,
        kind: ValueKind,
        value: f64,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RangeFunc {
    CountOverTime,
    Rate,
    BytesOverTime,
    BytesRate,
}

impl RangeFunc {
    pub fn name(self) -> &'static str {
        match self {
            RangeFunc::CountOverTime => "count_over_time",
            RangeFunc::Rate => "rate",
            RangeFunc::BytesOverTime => "bytes_over_time",
            RangeFunc::BytesRate => "bytes_rate",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AggOp {
    Sum,
    Avg,
    Min,
    Max,
    Count,
    Topk,
    Bottomk,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Grouping {
    By(Vec<String>),
    Without(Vec<String>),
}

#[derive(Clone, Debug)]
pub enum MetricExpr {
    Range {
        func: RangeFunc,
        log: LogExpr,
        range_ns: i64,
        offset_ns: i64,
    },
    Aggregate {
        op: AggOp,
        /// For topk/bottomk.
        param: Option<usize>,
        grouping: Option<Grouping>,
        inner: Box<MetricExpr>,
    },
}

impl MetricExpr {
    /// The log selection at the bottom of the expression.
    pub fn log(&self) -> (&LogExpr, RangeFunc, i64, i64) {
        match self {
            MetricExpr::Range {
                func,
                log,
                range_ns,
                offset_ns,
            } => (log, *func, *range_ns, *offset_ns),
            MetricExpr::Aggregate { inner, .. } => inner.log(),
        }
    }
}
