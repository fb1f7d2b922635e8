//! Rule tests written in the rules file itself: an input (a series, the spans of a trace,
//! a log line) and what the rules must make of it. `lastmile rules check FILE` runs them,
//! and every reload runs them before the new version may become active.
//!
//! ```yaml
//! tests:
//!   - name: ids in paths are templated, user ids removed
//!     series: 'http_requests_total{path="/users/42", user_id="7"}'
//!     expect: 'http_requests_total{path="/users/{id}"}'
//!   - name: debug metrics are dropped
//!     series: 'debug_cache_hits_total{job="api"}'
//!     expect: drop
//!   - name: counters need _total
//!     series: 'app_requests{job="api"}'
//!     type: counter
//!     violations: [counter_total]
//!   - name: errors are kept
//!     spans:
//!       - {name: "GET /pay", status: error}
//!     expect: keep
//!     policy: errors
//!   - name: health check logs are dropped
//!     log: {stream: '{app="nginx"}', line: 'GET /healthz 200'}
//!     expect: drop
//! ```
//!
//! Each test runs on its own, with empty budgets and an empty sampler, so tests do not
//! depend on each other or on live traffic.

use std::collections::BTreeMap;
use std::sync::Arc;

use lastmile_model::{
    AttrValue, KeyValue, Labels, LogBatch, LogEntry, LogStream, MetadataRef, MetricType, Resource,
    ResourceSpans, Scope, ScopeSpans, Span, SpanBatch, SpanId, SpanKind, StatusCode, TraceId,
    WriteBatch,
};
use serde::Deserialize;

use crate::engine::{Active, RulesSnapshot, Shared};
use crate::file::Loc;
use crate::naming::Violation;
use crate::pipeline::StringArena;
use crate::ruleset::RuleSet;
use crate::sampling::StatusMatch;
use crate::selector::parse_series;

/// One entry of `tests:`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleTestConfig {
    pub name: String,
    /// A series in PromQL notation.
    pub series: Option<String>,
    /// The series' metric type, as metadata would say (counter, gauge, histogram, summary).
    #[serde(rename = "type")]
    pub metric_type: Option<String>,
    /// The spans of one trace.
    pub spans: Option<Vec<TestSpan>>,
    /// A log line and its stream.
    pub log: Option<TestLog>,
    /// Series: `drop` or the expected series. Spans: `keep` or `drop`. Log: `keep`,
    /// `drop`, or the expected stream labels (`{app="x"}`).
    pub expect: Option<String>,
    /// Spans: the policy that must decide.
    pub policy: Option<String>,
    /// Series: the naming violations expected (empty list: none).
    pub violations: Option<Vec<String>>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestSpan {
    pub name: String,
    /// `service.name` of the span's resource (default `test`).
    pub service: Option<String>,
    pub status: Option<StatusMatch>,
    /// e.g. `250ms`; default 1ms.
    pub duration: Option<String>,
    #[serde(default)]
    pub attributes: BTreeMap<String, TestValue>,
    /// More resource attributes.
    #[serde(default)]
    pub resource: BTreeMap<String, TestValue>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub enum TestValue {
    Bool(bool),
    Int(i64),
    Float(f64),
    Text(String),
}

impl TestValue {
    fn attr(&self) -> AttrValue {
        match self {
            TestValue::Bool(b) => AttrValue::Bool(*b),
            TestValue::Int(i) => AttrValue::Int(*i),
            TestValue::Float(f) => AttrValue::Double(*f),
            TestValue::Text(s) => AttrValue::String(s.clone()),
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestLog {
    /// Stream labels, `{app="nginx"}`.
    pub stream: String,
    pub line: String,
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
}

fn parse_type(t: &str) -> Result<MetricType, String> {
    Ok(match t {
        "counter" => MetricType::Counter,
        "gauge" => MetricType::Gauge,
        "histogram" => MetricType::Histogram,
        "summary" => MetricType::Summary,
        "info" => MetricType::Info,
        "stateset" => MetricType::StateSet,
        "gaugehistogram" => MetricType::GaugeHistogram,
        "unknown" => MetricType::Unknown,
        other => return Err(format!("unknown metric type {other:?}")),
    })
}

impl RuleTestConfig {
    /// Checks the test is well formed (one input, a meaningful expectation).
    pub fn validate(&self) -> Result<(), String> {
        let inputs = [
            self.series.is_some(),
            self.spans.is_some(),
            self.log.is_some(),
        ]
        .iter()
        .filter(|x| **x)
        .count();
        if inputs != 1 {
            return Err("a test has exactly one of series, spans or log".into());
        }
        if let Some(s) = &self.series {
            parse_series(s).map_err(|e| format!("series: {e}"))?;
            if let Some(e) = self.expect.as_deref().filter(|e| *e != "drop") {
                parse_series(e).map_err(|e| format!("expect: {e}"))?;
            }
            if let Some(t) = &self.metric_type {
                parse_type(t)?;
            }
            for v in self.violations.iter().flatten() {
                if Violation::parse(v).is_none() {
                    let all: Vec<&str> = Violation::ALL.iter().map(|v| v.as_str()).collect();
                    return Err(format!(
                        "unknown violation {v:?} (one of {})",
                        all.join(", ")
                    ));
                }
            }
            if self.expect.is_none() && self.violations.is_none() {
                return Err("a series test needs expect or violations".into());
            }
        }
        if let Some(spans) = &self.spans {
            if spans.is_empty() {
                return Err("spans: give at least one span".into());
            }
            for s in spans {
                if let Some(d) = &s.duration {
                    lastmile_model::duration::parse_duration(d)
                        .map_err(|e| format!("span {:?} duration: {e}", s.name))?;
                }
            }
            match self.expect.as_deref() {
                Some("keep" | "drop") | None => {}
                Some(other) => return Err(format!("expect {other:?}: spans expect keep or drop")),
            }
            if self.expect.is_none() && self.policy.is_none() {
                return Err("a spans test needs expect or policy".into());
            }
        }
        if let Some(l) = &self.log {
            parse_series(&l.stream).map_err(|e| format!("log.stream: {e}"))?;
            match self.expect.as_deref() {
                Some("keep" | "drop") => {}
                Some(e) => {
                    parse_series(e).map_err(|e| format!("expect: {e}"))?;
                }
                None => return Err("a log test needs expect".into()),
            }
        }
        if self.metric_type.is_some() && self.series.is_none() {
            return Err("type is for series tests".into());
        }
        Ok(())
    }
}

/// The result of one test.
#[derive(Clone, Debug, serde::Serialize)]
pub struct TestResult {
    pub name: String,
    pub loc: Loc,
    pub passed: bool,
    /// What went wrong (empty when it passed).
    pub message: String,
}

#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct TestReport {
    pub results: Vec<TestResult>,
}

impl TestReport {
    pub fn failed(&self) -> usize {
        self.results.iter().filter(|r| !r.passed).count()
    }
}

/// Runs every test of a version, each in isolation.
pub fn run_tests(rs: &RuleSet) -> TestReport {
    let mut report = TestReport::default();
    if rs.tests.is_empty() {
        return report;
    }
    // The tests' own copy of the version: its counters stay out of the live ones.
    let isolated = Arc::new(RuleSet::compile_for_tests(rs));
    for (loc, t) in &rs.tests {
        let snap = RulesSnapshot {
            active: Arc::new(Active {
                stable: isolated.clone(),
                canary: None,
            }),
            shared: Arc::new(Shared::new(0)),
        };
        let result = run_one(&snap, t);
        report.results.push(TestResult {
            name: t.name.clone(),
            loc: loc.clone(),
            passed: result.is_ok(),
            message: result.err().unwrap_or_default(),
        });
    }
    report
}

fn show(pairs: &[(String, String)]) -> String {
    let labels = Labels::from_pairs(pairs.iter().cloned());
    labels.to_string()
}

fn run_one(snap: &RulesSnapshot, t: &RuleTestConfig) -> Result<(), String> {
    if let Some(series) = &t.series {
        return run_series(snap, t, series);
    }
    if let Some(spans) = &t.spans {
        return run_spans(snap, t, spans);
    }
    if let Some(log) = &t.log {
        return run_log(snap, t, log);
    }
    Err("no input".into())
}

fn run_series(snap: &RulesSnapshot, t: &RuleTestConfig, series: &str) -> Result<(), String> {
    let input = parse_series(series)?;
    let mut b = WriteBatch::new();
    b.begin_series();
    for (n, v) in &input {
        b.push_label(n, v);
    }
    b.push_sample(0, 1.0);
    b.finish_series()
        .map_err(|e| format!("series {series}: {e}"))?;
    let name = input
        .iter()
        .find(|(n, _)| n == "__name__")
        .map(|(_, v)| v.as_str())
        .unwrap_or("");
    if let Some(mt) = &t.metric_type {
        b.metadata.push(MetadataRef {
            metric_family_name: name,
            metric_type: parse_type(mt)?,
            help: "",
            unit: "",
        });
    }
    let arena = StringArena::new();
    let (out, outcome) = snap.apply_metrics_at(b, &arena, 0);
    let got: Option<Vec<(String, String)>> = out.series.first().map(|s| {
        out.series_labels(s)
            .iter()
            .map(|l| (l.name.to_owned(), l.value.to_owned()))
            .collect()
    });
    if let Some(want_v) = &t.violations {
        let mut want: Vec<Violation> = want_v.iter().filter_map(|v| Violation::parse(v)).collect();
        want.sort();
        let mut got_v: Vec<Violation> = Vec::new();
        if let Some(naming) = &snap.active.stable.naming {
            let labels = got.clone().unwrap_or_else(|| input.clone());
            let le = labels
                .iter()
                .find(|(n, _)| n == "le")
                .map(|(_, v)| v.as_str());
            let mt = t
                .metric_type
                .as_deref()
                .map(parse_type)
                .transpose()?
                .unwrap_or(MetricType::Unknown);
            let name = labels
                .iter()
                .find(|(n, _)| n == "__name__")
                .map_or(name, |(_, v)| v.as_str());
            naming.check(name, mt, le, &mut got_v);
        }
        got_v.sort();
        if got_v != want {
            let s = |v: &[Violation]| v.iter().map(|v| v.as_str()).collect::<Vec<_>>().join(", ");
            return Err(format!(
                "naming violations: got [{}], want [{}]",
                s(&got_v),
                s(&want)
            ));
        }
    }
    match t.expect.as_deref() {
        None => Ok(()),
        Some("drop") => match got {
            None => Ok(()),
            Some(g) => Err(format!(
                "expected the series to be dropped, got {}",
                show(&g)
            )),
        },
        Some(want) => {
            let mut w = parse_series(want)?;
            w.sort();
            match got {
                Some(g) if g == w => Ok(()),
                Some(g) => Err(format!("got {}, want {}", show(&g), show(&w))),
                None => {
                    let why = if outcome.series_overflow > 0 {
                        "over budget"
                    } else if outcome.series_rejected_naming > 0 {
                        "refused by a naming contract"
                    } else {
                        "dropped by relabeling"
                    };
                    Err(format!("the series was {why}, want {}", show(&w)))
                }
            }
        }
    }
}

fn run_spans(snap: &RulesSnapshot, t: &RuleTestConfig, spans: &[TestSpan]) -> Result<(), String> {
    let trace = TraceId(*b"rule-test-trace!");
    let mut batch = SpanBatch::default();
    for (i, s) in spans.iter().enumerate() {
        let mut attrs = vec![KeyValue::string(
            "service.name",
            s.service.clone().unwrap_or_else(|| "test".into()),
        )];
        attrs.extend(
            s.resource
                .iter()
                .map(|(k, v)| KeyValue::new(k.clone(), v.attr())),
        );
        let dur = s
            .duration
            .as_deref()
            .map(lastmile_model::duration::parse_duration)
            .transpose()
            .map_err(|e| e.to_string())?
            .map_or(1_000_000, |d| d.as_nanos() as u64);
        let span = Span {
            trace_id: trace,
            span_id: SpanId([(i as u8).wrapping_add(1); 8]),
            parent_span_id: (i > 0).then_some(SpanId([1; 8])),
            trace_state: String::new(),
            name: s.name.clone(),
            kind: SpanKind::Server,
            start_unix_nano: 1_000_000_000,
            end_unix_nano: 1_000_000_000u64.saturating_add(dur),
            attributes: s
                .attributes
                .iter()
                .map(|(k, v)| KeyValue::new(k.clone(), v.attr()))
                .collect(),
            events: vec![],
            links: vec![],
            status_code: match s.status {
                Some(StatusMatch::Error) => StatusCode::Error,
                Some(StatusMatch::Ok) => StatusCode::Ok,
                Some(StatusMatch::Unset) | None => StatusCode::Unset,
            },
            status_message: String::new(),
        };
        batch.resources.push(ResourceSpans {
            resource: Arc::new(Resource { attributes: attrs }),
            scopes: vec![ScopeSpans {
                scope: Scope::default(),
                spans: vec![span],
            }],
        });
    }
    snap.prepare_spans(&mut batch);
    let rules = snap.active.stable.sampling.clone();
    let (keep, policy) = match &rules {
        None => (true, "(none)".to_owned()),
        Some(r) => {
            snap.observe_spans_at(&batch, 0);
            snap.sampler().tick(r.decision_wait_ms);
            let idx = batch
                .spans()
                .map(|(res, _, sp)| r.policy_of(res, sp))
                .min()
                .unwrap_or(crate::sampling::NO_POLICY);
            (
                !snap.sampler().hidden(&trace),
                r.policy_name(idx).to_owned(),
            )
        }
    };
    if let Some(p) = &t.policy
        && *p != policy
    {
        return Err(format!("decided by policy {policy:?}, want {p:?}"));
    }
    match t.expect.as_deref() {
        Some("keep") if !keep => Err(format!("the trace was dropped (policy {policy:?})")),
        Some("drop") if keep => Err(format!("the trace was kept (policy {policy:?})")),
        _ => Ok(()),
    }
}

fn run_log(snap: &RulesSnapshot, t: &RuleTestConfig, log: &TestLog) -> Result<(), String> {
    let labels = Labels::from_pairs(parse_series(&log.stream)?);
    let mut entry = LogEntry::new(0, log.line.clone());
    entry.metadata = log
        .metadata
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let mut batch = LogBatch {
        streams: vec![LogStream {
            labels,
            entries: vec![entry],
        }],
    };
    snap.apply_logs(&mut batch);
    let got = batch.streams.first().map(|s| s.labels.clone());
    match (t.expect.as_deref(), got) {
        (Some("drop"), None) | (Some("keep"), Some(_)) => Ok(()),
        (Some("drop"), Some(l)) => Err(format!("the line was kept in stream {l}")),
        (_, None) => Err("the line was dropped".into()),
        (Some(want), Some(l)) => {
            let w = Labels::from_pairs(parse_series(want)?);
            if w == l {
                Ok(())
            } else {
                Err(format!("kept in stream {l}, want {w}"))
            }
        }
        (None, Some(_)) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use crate::engine::build;
    use crate::file::RulesSource;

    const RULES: &str = r#"
metric_relabel_configs:
  - source_labels: [__name__]
    regex: debug_.*
    action: drop
naming:
  mode: warn
tail_sampling:
  policies:
    - name: errors
      status: error
    - name: rest
      keep: 0
log_rules:
  - match: '{app="nginx"}'
    line: healthz
    action: drop
tests:
  - name: templated
    series: 'http_requests_total{path="/users/42", user_id="7"}'
    expect: 'http_requests_total{path="/users/{id}"}'
  - name: dropped
    series: 'debug_hits_total{job="api"}'
    expect: drop
  - name: counter
    series: 'app_requests{job="api"}'
    type: counter
    violations: [counter_total]
  - name: errors kept
    spans:
      - {name: "GET /", status: unset}
      - {name: "db", status: error, duration: 5ms, attributes: {db.system: postgres, rows: 3}}
    expect: keep
    policy: errors
  - name: the rest dropped
    spans:
      - {name: "GET /"}
    expect: drop
  - name: health logs
    log: {stream: '{app="nginx"}', line: 'GET /healthz 200'}
    expect: drop
  - name: other logs
    log: {stream: '{app="nginx", user_id="1"}', line: 'GET /pay 200'}
    expect: '{app="nginx"}'
"#;

    #[test]
    fn tests_in_the_file_pass() {
        let (_, report) = build(&[RulesSource::rules_file("r.yml", RULES)], 1, 0).unwrap();
        assert_eq!(report.results.len(), 7);
        assert_eq!(report.failed(), 0, "{:?}", report.results);
    }

    #[test]
    fn a_failing_test_refuses_the_version_with_its_line() {
        let bad = RULES.replace(
            "expect: 'http_requests_total{path=\"/users/{id}\"}'",
            "expect: 'http_requests_total{path=\"/users/42\"}'",
        );
        let e = build(&[RulesSource::rules_file("r.yml", bad)], 1, 0).unwrap_err();
        assert!(e.message.contains("\"templated\" failed"), "{e}");
        assert!(e.message.contains("/users/{id}"), "{e}");
        assert_eq!(e.loc.line, 19, "{e}");
    }

    #[test]
    fn malformed_tests_are_refused() {
        let e = build(
            &[RulesSource::rules_file(
                "r.yml",
                "tests:\n  - name: x\n    series: 'up'\n",
            )],
            1,
            0,
        )
        .unwrap_err();
        assert!(e.message.contains("expect or violations"), "{e}");
        let e = build(
            &[RulesSource::rules_file("r.yml", "tests:\n  - name: x\n    series: 'up'\n    log: {stream: '{}', line: x}\n    expect: drop\n")],
            1,
            0,
        )
        .unwrap_err();
        assert!(e.message.contains("exactly one"), "{e}");
    }
}
