//! A hand-written LogQL parser (lexer + recursive descent). No maintained Rust crate
//! parses LogQL (the crates registry has none that covers pipelines and metric queries),
//! and the grammar of the subset is small.
//!
//! Precedence in label filters follows Loki: `and` (also `,`, or two filters side by
//! side) binds tighter than `or`; parentheses group.

use lastmile_model::{MatchOp, Matcher};
use regex::Regex;

use super::ast::*;
use super::template::Template;
use super::values::{parse_bytes, parse_go_duration};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("parse error at line 1, col {col}: {msg}")]
pub struct ParseError {
    pub col: usize,
    pub msg: String,
}

/// Longest query text accepted; nesting is bounded too (see `MAX_DEPTH`).
pub const MAX_QUERY_LEN: usize = 64 << 10;
const MAX_DEPTH: usize = 64;

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    LBrace,
    RBrace,
    LParen,
    RParen,
    LBracket,
    RBracket,
    Comma,
    Pipe,
    PipeEq,
    PipeTilde,
    NotEq,
    NotTilde,
    Eq,
    EqTilde,
    EqEq,
    Gt,
    Ge,
    Lt,
    Le,
    Ident(String),
    Str(String),
    /// A number, duration or byte size as written (`5`, `1.5`, `5m`, `10KB`).
    Num(String),
    Eof,
}

struct Lexer<'a> {
    src: &'a str,
    pos: usize,
}

impl<'a> Lexer<'a> {
    fn err(&self, col: usize, msg: impl Into<String>) -> ParseError {
        ParseError {
            col: col + 1,
            msg: msg.into(),
        }
    }

    fn tokens(mut self) -> Result<Vec<(Tok, usize)>, ParseError> {
        let mut out = Vec::new();
        loop {
            let b = self.src.as_bytes();
            while self.pos < b.len() && b[self.pos].is_ascii_whitespace() {
                self.pos += 1;
            }
            let start = self.pos;
            if self.pos >= b.len() {
                out.push((Tok::Eof, start));
                return Ok(out);
            }
            let c = b[self.pos];
            let next = b.get(self.pos + 1).copied();
            let two = |t: Tok, s: &mut Self| {
                s.pos += 2;
                t
            };
            let one = |t: Tok, s: &mut Self| {
                s.pos += 1;
                t
            };
            let tok = match (c, next) {
                (b'{', _) => one(Tok::LBrace, &mut self),
                (b'}', _) => one(Tok::RBrace, &mut self),
                (b'(', _) => one(Tok::LParen, &mut self),
                (b')', _) => one(Tok::RParen, &mut self),
                (b'[', _) => one(Tok::LBracket, &mut self),
                (b']', _) => one(Tok::RBracket, &mut self),
                (b',', _) => one(Tok::Comma, &mut self),
                (b'|', Some(b'=')) => two(Tok::PipeEq, &mut self),
                (b'|', Some(b'~')) => two(Tok::PipeTilde, &mut self),
                (b'|', _) => one(Tok::Pipe, &mut self),
                (b'!', Some(b'=')) => two(Tok::NotEq, &mut self),
                (b'!', Some(b'~')) => two(Tok::NotTilde, &mut self),
                (b'=', Some(b'~')) => two(Tok::EqTilde, &mut self),
                (b'=', Some(b'=')) => two(Tok::EqEq, &mut self),
                (b'=', _) => one(Tok::Eq, &mut self),
                (b'>', Some(b'=')) => two(Tok::Ge, &mut self),
                (b'>', _) => one(Tok::Gt, &mut self),
                (b'<', Some(b'=')) => two(Tok::Le, &mut self),
                (b'<', _) => one(Tok::Lt, &mut self),
                (b'"', _) => Tok::Str(self.quoted()?),
                (b'`', _) => {
                    let end = self.src[self.pos + 1..]
                        .find('`')
                        .ok_or_else(|| self.err(start, "unterminated raw string"))?;
                    let s = self.src[self.pos + 1..self.pos + 1 + end].to_string();
                    self.pos += end + 2;
                    Tok::Str(s)
                }
                (b'#', _) => {
                    // A comment runs to the end of the line.
                    while self.pos < b.len() && b[self.pos] != b'\n' {
                        self.pos += 1;
                    }
                    continue;
                }
                (c, _)
                    if c.is_ascii_digit()
                        || (c == b'.' && next.is_some_and(|n| n.is_ascii_digit())) =>
                {
                    while self.pos < b.len()
                        && (b[self.pos].is_ascii_alphanumeric()
                            || b[self.pos] == b'.'
                            || b[self.pos] == 0xc2
                            || b[self.pos] == 0xb5)
                    {
                        self.pos += 1;
                    }
                    Tok::Num(self.src[start..self.pos].to_string())
                }
                (c, _) if c.is_ascii_alphabetic() || c == b'_' => {
                    while self.pos < b.len()
                        && (b[self.pos].is_ascii_alphanumeric() || b[self.pos] == b'_')
                    {
                        self.pos += 1;
                    }
                    Tok::Ident(self.src[start..self.pos].to_string())
                }
                _ => {
                    let ch = self.src[self.pos..].chars().next().unwrap_or('?');
                    return Err(self.err(start, format!("unexpected character {ch:?}")));
                }
            };
            out.push((tok, start));
        }
    }

    fn quoted(&mut self) -> Result<String, ParseError> {
        let start = self.pos;
        let b = self.src.as_bytes();
        let mut i = self.pos + 1;
        let mut escaped = false;
        while i < b.len() {
            if escaped {
                escaped = false;
            } else if b[i] == b'\\' {
                escaped = true;
            } else if b[i] == b'"' {
                let raw = &self.src[self.pos + 1..i];
                self.pos = i + 1;
                return lastmile_model::logfmt::unquote(raw)
                    .ok_or_else(|| self.err(start, format!("invalid escape in string \"{raw}\"")));
            }
            i += 1;
        }
        Err(self.err(start, "unterminated string"))
    }
}

pub fn parse(src: &str) -> Result<Expr, ParseError> {
    if src.len() > MAX_QUERY_LEN {
        return Err(ParseError {
            col: 1,
            msg: format!("query is longer than {MAX_QUERY_LEN} bytes"),
        });
    }
    let toks = Lexer { src, pos: 0 }.tokens()?;
    let mut p = Parser {
        toks,
        i: 0,
        depth: 0,
    };
    if p.peek() == &Tok::Eof {
        return Err(p.err("empty query"));
    }
    let e = p.expr()?;
    if p.peek() != &Tok::Eof {
        return Err(p.err(format!(
            "unexpected {} after the end of the query",
            p.describe()
        )));
    }
    Ok(e)
}

/// A stream selector alone (`{job="api"}`), as `match[]` and `query` of the label APIs
/// take it.
pub fn parse_selector(src: &str) -> Result<Vec<Matcher>, ParseError> {
    match parse(src)? {
        Expr::Log(l) if l.stages.is_empty() => Ok(l.matchers),
        _ => Err(ParseError {
            col: 1,
            msg: "expected a stream selector such as {job=\"api\"}".into(),
        }),
    }
}

struct Parser {
    toks: Vec<(Tok, usize)>,
    i: usize,
    depth: usize,
}

fn is_keyword(s: &str) -> bool {
    matches!(s, "and" | "or" | "by" | "without" | "offset")
}

impl Parser {
    fn peek(&self) -> &Tok {
        &self.toks[self.i.min(self.toks.len() - 1)].0
    }

    fn peek_at(&self, n: usize) -> &Tok {
        &self.toks[(self.i + n).min(self.toks.len() - 1)].0
    }

    fn col(&self) -> usize {
        self.toks[self.i.min(self.toks.len() - 1)].1
    }

    fn next(&mut self) -> Tok {
        let t = self.peek().clone();
        if self.i < self.toks.len() - 1 {
            self.i += 1;
        }
        t
    }

    fn err(&self, msg: impl Into<String>) -> ParseError {
        ParseError {
            col: self.col() + 1,
            msg: msg.into(),
        }
    }

    fn describe(&self) -> String {
        match self.peek() {
            Tok::Eof => "end of query".into(),
            Tok::Ident(s) => format!("{s:?}"),
            Tok::Str(s) => format!("string {s:?}"),
            Tok::Num(s) => format!("number {s:?}"),
            t => format!("{t:?}"),
        }
    }

    fn expect(&mut self, t: Tok, what: &str) -> Result<(), ParseError> {
        if self.peek() == &t {
            self.next();
            Ok(())
        } else {
            Err(self.err(format!("expected {what}, found {}", self.describe())))
        }
    }

    fn ident(&mut self, what: &str) -> Result<String, ParseError> {
        match self.peek().clone() {
            Tok::Ident(s) => {
                self.next();
                Ok(s)
            }
            _ => Err(self.err(format!("expected {what}, found {}", self.describe()))),
        }
    }

    fn string(&mut self, what: &str) -> Result<String, ParseError> {
        match self.peek().clone() {
            Tok::Str(s) => {
                self.next();
                Ok(s)
            }
            _ => Err(self.err(format!("expected {what}, found {}", self.describe()))),
        }
    }

    fn enter(&mut self) -> Result<(), ParseError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.err("expression nested too deeply"));
        }
        Ok(())
    }

    fn expr(&mut self) -> Result<Expr, ParseError> {
        self.enter()?;
        let e = match self.peek() {
            Tok::LBrace => Expr::Log(self.log_expr()?),
            Tok::LParen => {
                self.next();
                let e = self.expr()?;
                self.expect(Tok::RParen, "')'")?;
                e
            }
            Tok::Ident(_) => Expr::Metric(self.metric_expr()?),
            _ => {
                return Err(self.err(format!(
                    "expected a stream selector or a metric query, found {}",
                    self.describe()
                )));
            }
        };
        self.depth -= 1;
        Ok(e)
    }

    fn metric_expr(&mut self) -> Result<MetricExpr, ParseError> {
        self.enter()?;
        let name = self.ident("a function or aggregation")?;
        let e = match name.as_str() {
            "count_over_time" | "rate" | "bytes_over_time" | "bytes_rate" => {
                let func = match name.as_str() {
                    "count_over_time" => RangeFunc::CountOverTime,
                    "rate" => RangeFunc::Rate,
                    "bytes_over_time" => RangeFunc::BytesOverTime,
                    _ => RangeFunc::BytesRate,
                };
                self.expect(Tok::LParen, &format!("'(' after {name}"))?;
                let (log, range_ns) = self.log_range()?;
                let mut offset_ns = 0;
                if matches!(self.peek(), Tok::Ident(s) if s == "offset") {
                    self.next();
                    offset_ns = self.duration_ns("an offset duration")?;
                }
                self.expect(Tok::RParen, "')'")?;
                if matches!(self.peek(), Tok::Ident(s) if s == "by" || s == "without") {
                    return Err(self.err(format!("grouping is not allowed on {name}: group with an aggregation such as sum by (…) ({name}(…))")));
                }
                MetricExpr::Range {
                    func,
                    log,
                    range_ns,
                    offset_ns,
                }
            }
            "sum" | "avg" | "min" | "max" | "count" | "topk" | "bottomk" => {
                let op = match name.as_str() {
                    "sum" => AggOp::Sum,
                    "avg" => AggOp::Avg,
                    "min" => AggOp::Min,
                    "max" => AggOp::Max,
                    "count" => AggOp::Count,
                    "topk" => AggOp::Topk,
                    _ => AggOp::Bottomk,
                };
                let mut grouping = self.grouping()?;
                self.expect(Tok::LParen, &format!("'(' after {name}"))?;
                let mut param = None;
                if matches!(op, AggOp::Topk | AggOp::Bottomk) {
                    let n = match self.next() {
                        Tok::Num(n) => n,
                        _ => {
                            return Err(
                                self.err(format!("{name} takes a number first, e.g. {name}(5, …)"))
                            );
                        }
                    };
                    let k: usize = n.parse().map_err(|_| {
                        self.err(format!(
                            "{name}'s parameter {n:?} is not a positive integer"
                        ))
                    })?;
                    if k == 0 {
                        return Err(self.err(format!("{name}'s parameter must be at least 1")));
                    }
                    param = Some(k);
                    self.expect(Tok::Comma, "','")?;
                }
                let inner = match self.expr()? {
                    Expr::Metric(m) => m,
                    Expr::Log(_) => {
                        return Err(self.err(format!("{name} aggregates a metric query such as count_over_time({{…}}[5m]), not log lines")));
                    }
                };
                self.expect(Tok::RParen, "')'")?;
                if grouping.is_none() {
                    grouping = self.grouping()?;
                } else if matches!(self.peek(), Tok::Ident(s) if s == "by" || s == "without") {
                    return Err(self.err("grouping given twice"));
                }
                MetricExpr::Aggregate {
                    op,
                    param,
                    grouping,
                    inner: Box::new(inner),
                }
            }
            other => {
                return Err(self.err(format!(
                    "unknown function {other:?}: supported are count_over_time, rate, bytes_over_time, bytes_rate, sum, avg, min, max, count, topk, bottomk"
                )));
            }
        };
        self.depth -= 1;
        Ok(e)
    }

    fn grouping(&mut self) -> Result<Option<Grouping>, ParseError> {
        let without = match self.peek() {
            Tok::Ident(s) if s == "by" => false,
            Tok::Ident(s) if s == "without" => true,
            _ => return Ok(None),
        };
        self.next();
        self.expect(Tok::LParen, "'(' after by/without")?;
        let mut names = Vec::new();
        while self.peek() != &Tok::RParen {
            names.push(self.ident("a label name")?);
            if self.peek() == &Tok::Comma {
                self.next();
            } else {
                break;
            }
        }
        self.expect(Tok::RParen, "')'")?;
        Ok(Some(if without {
            Grouping::Without(names)
        } else {
            Grouping::By(names)
        }))
    }

    /// `{…} | … [5m]` or `({…} | …)[5m]`.
    fn log_range(&mut self) -> Result<(LogExpr, i64), ParseError> {
        let log = if self.peek() == &Tok::LParen {
            self.next();
            let l = self.log_expr()?;
            self.expect(Tok::RParen, "')'")?;
            l
        } else {
            self.log_expr()?
        };
        self.expect(Tok::LBracket, "a range such as [5m]")?;
        let range = self.duration_ns("a range duration")?;
        if range <= 0 {
            return Err(self.err("the range must be positive"));
        }
        self.expect(Tok::RBracket, "']'")?;
        Ok((log, range))
    }

    fn duration_ns(&mut self, what: &str) -> Result<i64, ParseError> {
        match self.next() {
            Tok::Num(s) => {
                let d = lastmile_model::duration::parse_duration(&s)
                    .map_err(|e| self.err(e.to_string()))?;
                i64::try_from(d.as_nanos())
                    .map_err(|_| self.err(format!("duration {s} is too long")))
            }
            _ => Err(self.err(format!("expected {what}"))),
        }
    }

    fn log_expr(&mut self) -> Result<LogExpr, ParseError> {
        let matchers = self.selector()?;
        let mut stages = Vec::new();
        loop {
            match self.peek() {
                Tok::PipeEq | Tok::NotEq | Tok::PipeTilde | Tok::NotTilde => {
                    stages.push(Stage::Line(self.line_filter()?));
                }
                Tok::Pipe => {
                    self.next();
                    stages.push(self.pipe_stage()?);
                }
                _ => break,
            }
        }
        Ok(LogExpr { matchers, stages })
    }

    fn selector(&mut self) -> Result<Vec<Matcher>, ParseError> {
        self.expect(Tok::LBrace, "'{'")?;
        let mut out = Vec::new();
        while self.peek() != &Tok::RBrace {
            let name = self.ident("a label name")?;
            let op = match self.next() {
                Tok::Eq => MatchOp::Equal,
                Tok::NotEq => MatchOp::NotEqual,
                Tok::EqTilde => MatchOp::Regex,
                Tok::NotTilde => MatchOp::NotRegex,
                _ => return Err(self.err(format!("expected =, !=, =~ or !~ after {name}"))),
            };
            let value = self.string("a quoted label value")?;
            out.push(Matcher::new(op, name, value).map_err(|e| self.err(e.to_string()))?);
            if self.peek() == &Tok::Comma {
                self.next();
            } else {
                break;
            }
        }
        self.expect(Tok::RBrace, "',' or '}'")?;
        if !out.iter().any(|m| !m.matches_empty()) {
            return Err(self.err("queries require at least one regexp or equality matcher that does not have an empty-compatible value. For instance, app=~\".*\" does not meet this requirement, but app=~\".+\" will"));
        }
        Ok(out)
    }

    fn line_filter(&mut self) -> Result<LineFilter, ParseError> {
        let op = match self.next() {
            Tok::PipeEq => LineOp::Contains,
            Tok::NotEq => LineOp::NotContains,
            Tok::PipeTilde => LineOp::Regex,
            _ => LineOp::NotRegex,
        };
        let mut values = vec![self.string("a quoted string after the line filter")?];
        while matches!(self.peek(), Tok::Ident(s) if s == "or")
            && matches!(self.peek_at(1), Tok::Str(_))
        {
            self.next();
            values.push(self.string("a string")?);
        }
        let regexes = if matches!(op, LineOp::Regex | LineOp::NotRegex) {
            values
                .iter()
                .map(|v| {
                    Regex::new(v)
                        .map_err(|e| self.err(format!("invalid regular expression {v:?}: {e}")))
                })
                .collect::<Result<_, _>>()?
        } else {
            Vec::new()
        };
        Ok(LineFilter {
            op,
            values,
            regexes,
        })
    }

    fn pipe_stage(&mut self) -> Result<Stage, ParseError> {
        match self.peek().clone() {
            Tok::Ident(s) if s == "json" && !self.is_filter_start() => {
                self.next();
                let mut params = Vec::new();
                while let Tok::Ident(name) = self.peek().clone() {
                    if self.peek_at(1) != &Tok::Eq
                        && !matches!(
                            self.peek_at(1),
                            Tok::Comma
                                | Tok::Pipe
                                | Tok::Eof
                                | Tok::RParen
                                | Tok::LBracket
                                | Tok::PipeEq
                                | Tok::NotEq
                                | Tok::PipeTilde
                                | Tok::NotTilde
                        )
                    {
                        break;
                    }
                    self.next();
                    let path = if self.peek() == &Tok::Eq {
                        self.next();
                        let expr = self.string("a JSON path such as \"a.b[0]\"")?;
                        parse_json_path(&expr).map_err(|m| self.err(m))?
                    } else {
                        parse_json_path(&name).map_err(|m| self.err(m))?
                    };
                    params.push((name, path));
                    if self.peek() == &Tok::Comma {
                        self.next();
                    } else {
                        break;
                    }
                }
                Ok(Stage::Json(params))
            }
            Tok::Ident(s) if s == "logfmt" && !self.is_filter_start() => {
                self.next();
                Ok(Stage::Logfmt)
            }
            Tok::Ident(s) if s == "line_format" && !self.is_filter_start() => {
                self.next();
                let t = self.string("a template string after line_format")?;
                Ok(Stage::LineFormat(
                    Template::parse(&t).map_err(|m| self.err(m))?,
                ))
            }
            Tok::Ident(s) if (s == "drop" || s == "keep") && !self.is_filter_start() => {
                self.next();
                let mut names = vec![self.ident("a label name")?];
                while self.peek() == &Tok::Comma {
                    self.next();
                    names.push(self.ident("a label name")?);
                }
                Ok(if s == "drop" {
                    Stage::Drop(names)
                } else {
                    Stage::Keep(names)
                })
            }
            Tok::Ident(s)
                if matches!(
                    s.as_str(),
                    "regexp" | "pattern" | "unpack" | "label_format" | "unwrap" | "decolorize"
                ) && !self.is_filter_start() =>
            {
                Err(self.err(format!("the {s} stage is not supported by lastmile yet")))
            }
            Tok::Ident(_) | Tok::LParen => Ok(Stage::Labels(self.label_filter_or()?)),
            _ => Err(self.err(format!(
                "expected a parser, line_format or a label filter after '|', found {}",
                self.describe()
            ))),
        }
    }

    /// Whether the identifier at the cursor starts a label filter (`json = "x"`) rather
    /// than naming a stage.
    fn is_filter_start(&self) -> bool {
        matches!(
            self.peek_at(1),
            Tok::Eq
                | Tok::NotEq
                | Tok::EqTilde
                | Tok::NotTilde
                | Tok::EqEq
                | Tok::Gt
                | Tok::Ge
                | Tok::Lt
                | Tok::Le
        )
    }

    fn label_filter_or(&mut self) -> Result<LabelFilter, ParseError> {
        self.enter()?;
        let mut left = self.label_filter_and()?;
        while matches!(self.peek(), Tok::Ident(s) if s == "or") {
            self.next();
            let right = self.label_filter_and()?;
            left = LabelFilter::Or(Box::new(left), Box::new(right));
        }
        self.depth -= 1;
        Ok(left)
    }

    fn label_filter_and(&mut self) -> Result<LabelFilter, ParseError> {
        let mut left = self.label_filter_primary()?;
        loop {
            match self.peek() {
                Tok::Ident(s) if s == "and" => {
                    self.next();
                }
                Tok::Comma => {
                    self.next();
                }
                Tok::Ident(s) if !is_keyword(s) => {}
                Tok::LParen => {}
                _ => break,
            }
            let right = self.label_filter_primary()?;
            left = LabelFilter::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn label_filter_primary(&mut self) -> Result<LabelFilter, ParseError> {
        if self.peek() == &Tok::LParen {
            self.next();
            let f = self.label_filter_or()?;
            self.expect(Tok::RParen, "')'")?;
            return Ok(f);
        }
        let name = self.ident("a label name")?;
        let op_tok = self.next();
        match (&op_tok, self.peek().clone()) {
            (Tok::Eq | Tok::NotEq | Tok::EqTilde | Tok::NotTilde, Tok::Str(v)) => {
                self.next();
                let op = match op_tok {
                    Tok::Eq => MatchOp::Equal,
                    Tok::NotEq => MatchOp::NotEqual,
                    Tok::EqTilde => MatchOp::Regex,
                    _ => MatchOp::NotRegex,
                };
                let m = Matcher::new(op, name, v).map_err(|e| self.err(e.to_string()))?;
                Ok(LabelFilter::Str(m))
            }
            (
                Tok::Eq | Tok::EqEq | Tok::NotEq | Tok::Gt | Tok::Ge | Tok::Lt | Tok::Le,
                Tok::Num(n),
            ) => {
                self.next();
                let op = match op_tok {
                    Tok::Eq | Tok::EqEq => CmpOp::Eq,
                    Tok::NotEq => CmpOp::Ne,
                    Tok::Gt => CmpOp::Gt,
                    Tok::Ge => CmpOp::Ge,
                    Tok::Lt => CmpOp::Lt,
                    _ => CmpOp::Le,
                };
                let (kind, value) = literal_value(&n).ok_or_else(|| {
                    self.err(format!(
                        "{n:?} is not a number, a duration (e.g. 1.5s) or a byte size (e.g. 10KB)"
                    ))
                })?;
                Ok(LabelFilter::Cmp {
                    name,
                    op,
                    kind,
                    value,
                })
            }
            (Tok::EqEq | Tok::Gt | Tok::Ge | Tok::Lt | Tok::Le, _) => Err(self.err(format!(
                "expected a number, duration or byte size after the comparison on {name}"
            ))),
            (Tok::Eq | Tok::NotEq | Tok::EqTilde | Tok::NotTilde, _) => {
                Err(self.err(format!("expected a quoted value after {name}")))
            }
            _ => Err(self.err(format!("expected a comparison after label {name}"))),
        }
    }
}

/// A number (`500`, `1.5`, `1e3`), a Go duration (`1.5s`) or a byte size (`10KB`).
fn literal_value(s: &str) -> Option<(ValueKind, f64)> {
    if let Ok(v) = s.parse::<f64>() {
        return v.is_finite().then_some((ValueKind::Number, v));
    }
    if let Some(d) = parse_go_duration(s) {
        return Some((ValueKind::Duration, d));
    }
    parse_bytes(s).map(|b| (ValueKind::Bytes, b))
}

/// `a.b[0]["c d"]` → steps.
pub fn parse_json_path(s: &str) -> Result<JsonPath, String> {
    let mut out = Vec::new();
    let b = s.as_bytes();
    let mut i = 0;
    let mut cur = String::new();
    while i < b.len() {
        match b[i] {
            b'.' => {
                if !cur.is_empty() {
                    out.push(JsonStep::Key(std::mem::take(&mut cur)));
                }
                i += 1;
            }
            b'[' => {
                if !cur.is_empty() {
                    out.push(JsonStep::Key(std::mem::take(&mut cur)));
                }
                let end = s[i..]
                    .find(']')
                    .ok_or_else(|| format!("unclosed '[' in JSON path {s:?}"))?
                    + i;
                let inner = s[i + 1..end].trim();
                if let Some(q) = inner.strip_prefix('"').and_then(|r| r.strip_suffix('"')) {
                    out.push(JsonStep::Key(q.to_string()));
                } else {
                    let n: usize = inner
                        .parse()
                        .map_err(|_| format!("invalid index {inner:?} in JSON path {s:?}"))?;
                    out.push(JsonStep::Index(n));
                }
                i = end + 1;
            }
            _ => {
                let ch = s[i..].chars().next().unwrap_or(' ');
                cur.push(ch);
                i += ch.len_utf8();
            }
        }
    }
    if !cur.is_empty() {
        out.push(JsonStep::Key(cur));
    }
    if out.is_empty() {
        return Err(format!("empty JSON path {s:?}"));
    }
    Ok(out)
}
