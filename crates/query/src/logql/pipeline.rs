//! Runs a log pipeline on one line, with Loki's rules:
//!
//! - The labels a line starts with are its stream's, plus its structured metadata.
//! - `| json` flattens nested objects with `_` (`{"a":{"b":1}}` → `a_b="1"`), skips
//!   arrays, keeps numbers as written and booleans as `true`/`false`, and drops nulls.
//!   `| logfmt` takes every pair. Keys are sanitised to label names (other characters
//!   become `_`; a leading digit gets a `_` prefix). A key that is already a stream label
//!   is renamed `<key>_extracted`; within one line, a later pair overwrites an earlier one.
//! - A line a parser cannot read gets `__error__` (`JSONParserErr`, `LogfmtParserErr`) and
//!   `__error_details__`; later parsers skip a line that carries an error.
//! - Numeric, duration and byte comparisons drop a line without the label, let a line
//!   that already carries an error pass, and give a value that does not convert
//!   `__error__="LabelFilterErr"` (the line passes). String matchers always apply, and
//!   treat an absent label as empty.
//! - `line_format` that fails sets `__error__="TemplateFormatErr"` and keeps the line.

use std::borrow::Cow;

use lastmile_model::{Labels, LogEntry};

use super::ast::*;
use super::values::{parse_bytes, parse_go_duration};

pub const ERROR_LABEL: &str = "__error__";
pub const ERROR_DETAILS_LABEL: &str = "__error_details__";

/// The working label set of one line: name, value, and whether it came from the stream.
#[derive(Clone, Debug, Default)]
pub struct LineLabels {
    items: Vec<(String, String, bool)>,
}

impl LineLabels {
    pub fn new(stream: &Labels, metadata: &[(String, String)]) -> Self {
        let mut items: Vec<(String, String, bool)> = stream
            .iter()
            .map(|l| (l.name.to_string(), l.value.to_string(), true))
            .collect();
        for (k, v) in metadata {
            let k = sanitize_key(k);
            if k.is_empty() || items.iter().any(|(n, _, base)| *base && *n == k) {
                continue;
            }
            set(&mut items, k, v.clone(), false);
        }
        LineLabels { items }
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.items
            .iter()
            .find(|(n, _, _)| n == name)
            .map(|(_, v, _)| v.as_str())
    }

    fn has_error(&self) -> bool {
        self.get(ERROR_LABEL).is_some()
    }

    fn is_base(&self, name: &str) -> bool {
        self.items.iter().any(|(n, _, base)| *base && n == name)
    }

    /// Adds a parsed label, renamed `_extracted` when it collides with a stream label.
    fn set_parsed(&mut self, key: String, value: String) {
        let key = if self.is_base(&key) {
            format!("{key}_extracted")
        } else {
            key
        };
        set(&mut self.items, key, value, false);
    }

    fn set_error(&mut self, err: &str, details: String) {
        set(&mut self.items, ERROR_LABEL.into(), err.into(), false);
        set(&mut self.items, ERROR_DETAILS_LABEL.into(), details, false);
    }

    /// The final label set (empty values dropped, as Prometheus-style labels do).
    pub fn to_labels(&self) -> Labels {
        Labels::from_pairs(self.items.iter().map(|(n, v, _)| (n.clone(), v.clone())))
    }
}

fn set(items: &mut Vec<(String, String, bool)>, name: String, value: String, base: bool) {
    if let Some(slot) = items.iter_mut().find(|(n, _, _)| *n == name) {
        slot.1 = value;
        slot.2 = base;
    } else {
        items.push((name, value, base));
    }
}

/// Loki's label-name sanitising of parsed keys.
pub fn sanitize_key(key: &str) -> String {
    sanitize(key, true)
}

/// `is_prefix`: the key starts a label name (a leading digit then gets a `_`); nested
/// JSON keys after the first are not prefixes.
fn sanitize(key: &str, is_prefix: bool) -> String {
    let key = key.trim();
    let mut out = String::with_capacity(key.len() + 1);
    if is_prefix && key.starts_with(|c: char| c.is_ascii_digit()) {
        out.push('_');
    }
    for c in key.chars() {
        out.push(if c.is_ascii_alphanumeric() || c == '_' {
            c
        } else {
            '_'
        });
    }
    out
}

/// The line filters at the head of a pipeline that need only the raw line, and the
/// substrings every selected line must contain (a hint for the index).
pub fn required_substrings(stages: &[Stage]) -> Vec<String> {
    let mut out = Vec::new();
    for s in stages {
        match s {
            Stage::Line(f)
                if f.op == LineOp::Contains && f.values.len() == 1 && !f.values[0].is_empty() =>
            {
                out.push(f.values[0].clone());
            }
            Stage::Line(_) => {}
            // After a line_format the line is another one: stop.
            Stage::LineFormat(_) => break,
            _ => {}
        }
    }
    out
}

/// Whether the pipeline reads only the stream labels (no line content needed).
pub fn needs_line(stages: &[Stage]) -> bool {
    !stages.is_empty()
}

/// Runs `stages` on one line; `None` when a filter drops it.
pub fn run<'e>(
    stages: &[Stage],
    stream: &Labels,
    entry: &'e LogEntry,
) -> Option<(Cow<'e, str>, LineLabels)> {
    let mut labels = LineLabels::new(stream, &entry.metadata);
    let mut line: Cow<'e, str> = Cow::Borrowed(entry.line.as_str());
    for s in stages {
        match s {
            Stage::Line(f) => {
                if !f.matches(&line) {
                    return None;
                }
            }
            Stage::Json(params) => {
                if !labels.has_error() {
                    json_stage(params, &line, &mut labels);
                }
            }
            Stage::Logfmt => {
                if !labels.has_error() {
                    logfmt_stage(&line, &mut labels);
                }
            }
            Stage::Labels(f) => {
                if !label_filter(f, &mut labels) {
                    return None;
                }
            }
            Stage::LineFormat(t) => {
                let rendered = {
                    let lookup = |n: &str| labels.get(n);
                    t.render(&lookup, &line)
                };
                match rendered {
                    Ok(l) => line = Cow::Owned(l),
                    Err(e) => labels.set_error("TemplateFormatErr", e),
                }
            }
            Stage::Drop(names) => labels.items.retain(|(n, _, _)| !names.contains(n)),
            Stage::Keep(names) => labels.items.retain(|(n, _, _)| names.contains(n)),
        }
    }
    Some((line, labels))
}

fn label_filter(f: &LabelFilter, labels: &mut LineLabels) -> bool {
    match f {
        LabelFilter::And(a, b) => label_filter(a, labels) && label_filter(b, labels),
        LabelFilter::Or(a, b) => label_filter(a, labels) || label_filter(b, labels),
        LabelFilter::Str(m) => m.matches(labels.get(&m.name).unwrap_or("")),
        LabelFilter::Cmp {
            name,
            op,
            kind,
            value,
        } => {
            if labels.has_error() {
                return true;
            }
            let Some(v) = labels.get(name) else {
                return false;
            };
            let parsed = match kind {
                ValueKind::Number => v.trim().parse::<f64>().ok(),
                ValueKind::Duration => parse_go_duration(v.trim()),
                ValueKind::Bytes => parse_bytes(v),
            };
            match parsed {
                Some(x) => op.apply(x, *value),
                None => {
                    let details = format!("cannot convert {v:?} of label {name} for comparison");
                    labels.set_error("LabelFilterErr", details);
                    true
                }
            }
        }
    }
}

fn json_stage(params: &[(String, JsonPath)], line: &str, labels: &mut LineLabels) {
    let doc: serde_json::Value = match serde_json::from_str(line) {
        Ok(v @ serde_json::Value::Object(_)) => v,
        Ok(_) => {
            labels.set_error("JSONParserErr", "the line is not a JSON object".into());
            return;
        }
        Err(e) => {
            labels.set_error("JSONParserErr", e.to_string());
            return;
        }
    };
    if params.is_empty() {
        let mut out = Vec::new();
        flatten("", &doc, &mut out);
        for (k, v) in out {
            labels.set_parsed(k, v);
        }
        return;
    }
    for (name, path) in params {
        let mut cur = Some(&doc);
        for step in path {
            cur = match (cur, step) {
                (Some(serde_json::Value::Object(m)), JsonStep::Key(k)) => m.get(k),
                (Some(serde_json::Value::Array(a)), JsonStep::Index(i)) => a.get(*i),
                _ => None,
            };
        }
        let value = match cur {
            None | Some(serde_json::Value::Null) => String::new(),
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(v) => v.to_string(),
        };
        labels.set_parsed(sanitize_key(name), value);
    }
}

fn flatten(prefix: &str, v: &serde_json::Value, out: &mut Vec<(String, String)>) {
    let serde_json::Value::Object(m) = v else {
        return;
    };
    for (k, v) in m {
        let key = if prefix.is_empty() {
            sanitize_key(k)
        } else {
            format!("{prefix}_{}", sanitize(k, false))
        };
        match v {
            serde_json::Value::Object(_) => flatten(&key, v, out),
            serde_json::Value::Array(_) | serde_json::Value::Null => {}
            serde_json::Value::String(s) => out.push((key, s.clone())),
            serde_json::Value::Number(n) => out.push((key, n.to_string())),
            serde_json::Value::Bool(b) => out.push((key, b.to_string())),
        }
    }
}

fn logfmt_stage(line: &str, labels: &mut LineLabels) {
    let (pairs, err) = lastmile_model::logfmt::parse(line);
    for (k, v) in pairs {
        let k = sanitize_key(k);
        if k.is_empty() {
            continue;
        }
        labels.set_parsed(k, v.into_owned());
    }
    if let Some(e) = err {
        labels.set_error("LogfmtParserErr", e.to_string());
    }
}
