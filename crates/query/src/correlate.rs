//! `correlate`: everything lastmile knows about one trace, in one answer — its spans with
//! the critical path and the slowest span marked, its log lines in time order, the metric
//! exemplars that point at it, and the RED metrics (rate, errors, p50/p99 from span
//! metrics) of every service it touched, around the time it ran.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use lastmile_model::{Labels, LogEntry, MatchOp, Matcher, Span, SpanId, TraceId};
use lastmile_rules::span_metrics;
use lastmile_store::Db;
use lastmile_trace_store::TraceStore;
use serde::Serialize;

use crate::promql::{self, QueryOptions, QueryResult};

/// How far around the trace the RED metrics reach, each side.
const RED_WINDOW_MS: i64 = 30 * 60 * 1000;
const RED_STEP_MS: i64 = 60 * 1000;
/// Exemplars may be written a little after the request they describe.
const EXEMPLAR_SLACK_MS: i64 = 5 * 60 * 1000;

#[derive(Debug, thiserror::Error)]
pub enum CorrelateError {
    #[error("trace store: {0}")]
    Traces(#[from] lastmile_trace_store::TraceStoreError),
    #[error("log store: {0}")]
    Logs(String),
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CorrelatedSpan {
    pub span_id: SpanId,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent_span_id: Option<SpanId>,
    pub service: String,
    pub name: String,
    pub kind: &'static str,
    #[serde(serialize_with = "as_string")]
    pub start_time_unix_nano: u64,
    #[serde(serialize_with = "as_string")]
    pub duration_nanos: u64,
    /// Time in this span not covered by its children.
    #[serde(serialize_with = "as_string")]
    pub self_time_nanos: u64,
    pub status: &'static str,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub status_message: String,
    pub attributes: BTreeMap<String, String>,
    pub events: Vec<CorrelatedEvent>,
    /// On the path of spans that determined the trace's end-to-end duration.
    pub critical_path: bool,
    /// Nesting depth (root = 0), for drawing a waterfall.
    pub depth: u32,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CorrelatedEvent {
    #[serde(serialize_with = "as_string")]
    pub time_unix_nano: u64,
    pub name: String,
    pub attributes: BTreeMap<String, String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CorrelatedLog {
    #[serde(serialize_with = "as_string")]
    pub timestamp_ns: i64,
    pub labels: Labels,
    pub line: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub span_id: Option<SpanId>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CorrelatedExemplar {
    /// The series the exemplar belongs to.
    pub series: Labels,
    pub labels: Labels,
    pub value: f64,
    /// Milliseconds.
    pub timestamp: i64,
}

#[derive(Debug, Serialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct ServiceRed {
    pub service: String,
    /// Requests per second (all spans of the service), `[ms, value]` per step.
    pub rate: Vec<(i64, f64)>,
    /// Failed spans per second.
    pub errors: Vec<(i64, f64)>,
    /// Server-span latency quantiles in seconds.
    pub p50: Vec<(i64, f64)>,
    pub p99: Vec<(i64, f64)>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Correlation {
    pub trace_id: TraceId,
    pub root_service: String,
    pub root_name: String,
    #[serde(serialize_with = "as_string")]
    pub start_time_unix_nano: u64,
    #[serde(serialize_with = "as_string")]
    pub duration_nanos: u64,
    pub spans: Vec<CorrelatedSpan>,
    /// The span with the most self time: where the time went.
    pub slowest_span_id: Option<SpanId>,
    pub error_span_ids: Vec<SpanId>,
    pub logs: Vec<CorrelatedLog>,
    pub exemplars: Vec<CorrelatedExemplar>,
    pub services: Vec<ServiceRed>,
}

fn as_string<S: serde::Serializer, T: ToString>(v: &T, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&v.to_string())
}

fn attrs_map(attrs: &[lastmile_model::KeyValue]) -> BTreeMap<String, String> {
    attrs
        .iter()
        .map(|kv| (kv.key.clone(), kv.value.to_text()))
        .collect()
}

/// Where the log lines of a trace come from (the log store, when there is one).
pub type LogSource<'a> =
    &'a (dyn Fn(TraceId, i64, i64) -> Result<Vec<(Labels, LogEntry)>, String> + Sync);

/// Gathers everything about `trace_id`; `None` when no span of it is stored.
pub fn correlate(
    db: &Db,
    traces: &TraceStore,
    logs: Option<LogSource<'_>>,
    trace_id: TraceId,
    opts: &QueryOptions,
) -> Result<Option<Correlation>, CorrelateError> {
    let Some(batch) = traces.trace(trace_id)? else {
        return Ok(None);
    };
    let spans: Vec<(String, &Span)> = batch
        .spans()
        .map(|(r, _, s)| (r.service_name().to_owned(), s))
        .collect();
    let start = spans
        .iter()
        .map(|(_, s)| s.start_unix_nano)
        .min()
        .unwrap_or(0);
    let end = spans
        .iter()
        .map(|(_, s)| s.end_unix_nano)
        .max()
        .unwrap_or(0);
    let analysis = analyse(&spans);

    let root = spans
        .iter()
        .find(|(_, s)| s.is_root())
        .or_else(|| spans.iter().min_by_key(|(_, s)| s.start_unix_nano));
    let (root_service, root_name) = root
        .map(|(svc, s)| (svc.clone(), s.name.clone()))
        .unwrap_or_default();

    let out_spans: Vec<CorrelatedSpan> = spans
        .iter()
        .map(|(service, s)| {
            let a = &analysis[&s.span_id];
            CorrelatedSpan {
                span_id: s.span_id,
                parent_span_id: s.parent_span_id,
                service: service.clone(),
                name: s.name.clone(),
                kind: s.kind.otlp_name(),
                start_time_unix_nano: s.start_unix_nano,
                duration_nanos: s.duration_nanos(),
                self_time_nanos: a.self_time,
                status: s.status_code.otlp_name(),
                status_message: s.status_message.clone(),
                attributes: attrs_map(&s.attributes),
                events: s
                    .events
                    .iter()
                    .map(|e| CorrelatedEvent {
                        time_unix_nano: e.time_unix_nano,
                        name: e.name.clone(),
                        attributes: attrs_map(&e.attributes),
                    })
                    .collect(),
                critical_path: a.critical,
                depth: a.depth,
            }
        })
        .collect();
    let slowest_span_id = out_spans
        .iter()
        .max_by_key(|s| s.self_time_nanos)
        .map(|s| s.span_id);
    let error_span_ids = spans
        .iter()
        .filter(|(_, s)| s.status_code == lastmile_model::StatusCode::Error)
        .map(|(_, s)| s.span_id)
        .collect();

    let start_ms = (start / 1_000_000) as i64;
    let end_ms = end.div_ceil(1_000_000) as i64;

    let mut log_lines = match logs {
        Some(source) => source(
            trace_id,
            start as i64 - 60_000_000_000,
            end as i64 + 60_000_000_000,
        )
        .map_err(CorrelateError::Logs)?,
        None => Vec::new(),
    };
    log_lines.sort_by_key(|(_, e)| e.timestamp_ns);
    let logs = log_lines
        .into_iter()
        .map(|(labels, e)| CorrelatedLog {
            timestamp_ns: e.timestamp_ns,
            labels,
            line: e.line,
            span_id: e.span_id,
        })
        .collect();

    let exemplars = exemplars_of(db, trace_id, start_ms, end_ms);

    let mut services: Vec<String> = spans.iter().map(|(s, _)| s.clone()).collect();
    services.sort();
    services.dedup();
    let services = services
        .into_iter()
        .map(|svc| red(db, &svc, start_ms, opts))
        .collect();

    Ok(Some(Correlation {
        trace_id,
        root_service,
        root_name,
        start_time_unix_nano: start,
        duration_nanos: end - start,
        spans: out_spans,
        slowest_span_id,
        error_span_ids,
        logs,
        exemplars,
        services,
    }))
}

#[derive(Default)]
struct SpanAnalysis {
    self_time: u64,
    critical: bool,
    depth: u32,
}

/// Self time, depth and critical path of every span.
fn analyse(spans: &[(String, &Span)]) -> HashMap<SpanId, SpanAnalysis> {
    let by_id: HashMap<SpanId, &Span> = spans.iter().map(|(_, s)| (s.span_id, *s)).collect();
    let mut children: HashMap<SpanId, Vec<&Span>> = HashMap::new();
    let mut roots = Vec::new();
    for (_, s) in spans {
        match s.parent_span_id.filter(|p| by_id.contains_key(p)) {
            Some(p) => children.entry(p).or_default().push(s),
            None => roots.push(*s),
        }
    }
    let mut out: HashMap<SpanId, SpanAnalysis> = HashMap::new();
    // Depths and self times, iteratively (traces can be deep).
    let mut stack: Vec<(&Span, u32)> = roots.iter().map(|s| (*s, 0)).collect();
    while let Some((s, depth)) = stack.pop() {
        let kids = children.get(&s.span_id).map(Vec::as_slice).unwrap_or(&[]);
        let covered = union_within(s, kids);
        out.insert(
            s.span_id,
            SpanAnalysis {
                self_time: s.duration_nanos().saturating_sub(covered),
                critical: false,
                depth,
            },
        );
        stack.extend(kids.iter().map(|k| (*k, depth + 1)));
    }
    // The critical path: from the root that ends last, walk back from its end, each time
    // into the child that finished last before the point reached so far.
    if let Some(root) = roots.iter().max_by_key(|s| s.end_unix_nano) {
        let mut work = vec![(*root, root.end_unix_nano)];
        while let Some((s, until)) = work.pop() {
            if let Some(a) = out.get_mut(&s.span_id) {
                a.critical = true;
            }
            let mut kids: Vec<&Span> = children.get(&s.span_id).cloned().unwrap_or_default();
            kids.sort_by_key(|k| std::cmp::Reverse(k.end_unix_nano));
            let mut cursor = until.min(s.end_unix_nano);
            for k in kids {
                if k.start_unix_nano < cursor && k.end_unix_nano > s.start_unix_nano {
                    work.push((k, cursor.min(k.end_unix_nano)));
                    cursor = k.start_unix_nano;
                }
            }
        }
    }
    out
}

/// Nanoseconds of `s` covered by the union of its children (clipped to `s`).
fn union_within(s: &Span, kids: &[&Span]) -> u64 {
    let mut iv: Vec<(u64, u64)> = kids
        .iter()
        .map(|k| {
            (
                k.start_unix_nano.max(s.start_unix_nano),
                k.end_unix_nano.min(s.end_unix_nano),
            )
        })
        .filter(|(a, b)| a < b)
        .collect();
    iv.sort_unstable();
    let mut total = 0;
    let mut cur: Option<(u64, u64)> = None;
    for (a, b) in iv {
        match &mut cur {
            Some((_, ce)) if a <= *ce => *ce = (*ce).max(b),
            _ => {
                if let Some((cs, ce)) = cur {
                    total += ce - cs;
                }
                cur = Some((a, b));
            }
        }
    }
    if let Some((cs, ce)) = cur {
        total += ce - cs;
    }
    total
}

/// Label names exemplars use for trace ids (OpenMetrics has no fixed name).
const TRACE_LABELS: [&str; 4] = ["trace_id", "traceID", "traceId", "trace-id"];

fn exemplars_of(db: &Db, id: TraceId, start_ms: i64, end_ms: i64) -> Vec<CorrelatedExemplar> {
    let any = vec![Matcher::new(MatchOp::Regex, "__name__", ".+").expect("valid regex")];
    let mut out = Vec::new();
    for (series, list) in db.exemplars(
        &[any],
        start_ms - EXEMPLAR_SLACK_MS,
        end_ms + EXEMPLAR_SLACK_MS,
    ) {
        for e in list {
            let hit = TRACE_LABELS.iter().any(|n| {
                e.labels
                    .get(n)
                    .and_then(TraceId::parse_any)
                    .is_some_and(|t| t == id)
            });
            if hit {
                out.push(CorrelatedExemplar {
                    series: series.clone(),
                    labels: e.labels.clone(),
                    value: e.value,
                    timestamp: e.timestamp,
                });
            }
        }
    }
    out
}

/// Escapes a label value for a PromQL string literal.
fn promql_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn red(db: &Db, service: &str, at_ms: i64, opts: &QueryOptions) -> ServiceRed {
    let svc = promql_string(service);
    let calls = span_metrics::CALLS;
    let latency = format!("{}_bucket", span_metrics::LATENCY);
    let start = at_ms - RED_WINDOW_MS;
    let end = at_ms + RED_WINDOW_MS;
    let run = |q: String| -> Vec<(i64, f64)> {
        let opts = QueryOptions {
            timeout: opts.timeout.min(Duration::from_secs(10)),
            ..opts.clone()
        };
        match promql::range_query(db, &q, start, end, RED_STEP_MS, &opts) {
            Ok(QueryResult::Range(m)) => m.into_iter().next().map(|s| s.points).unwrap_or_default(),
            _ => Vec::new(),
        }
    };
    ServiceRed {
        service: service.to_owned(),
        rate: run(format!("sum(rate({calls}{{service={svc}}}[5m]))")),
        errors: run(format!(
            "sum(rate({calls}{{service={svc}, status_code=\"STATUS_CODE_ERROR\"}}[5m]))"
        )),
        p50: run(format!(
            "histogram_quantile(0.5, sum by (le) (rate({latency}{{service={svc}, span_kind=\"SPAN_KIND_SERVER\"}}[5m])))"
        )),
        p99: run(format!(
            "histogram_quantile(0.99, sum by (le) (rate({latency}{{service={svc}, span_kind=\"SPAN_KIND_SERVER\"}}[5m])))"
        )),
    }
}

/// The trace a piece of text (a log line as shown, an exemplar's labels) points at: the
/// first token that is a trace id in any spelling lastmile normalises — 32 hex digits, a
/// UUID, a traceparent, a B3 header. Bare 16-digit ids are ignored here: too many other
/// hex tokens look like them.
pub fn trace_id_in_text(text: &str) -> Option<TraceId> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
        .filter(|t| t.len() >= 32)
        .find_map(TraceId::parse_any)
}

#[cfg(test)]
mod tests {
    use super::*;
    use lastmile_model::{SpanKind, StatusCode};

    fn span(id: u8, parent: Option<u8>, start: u64, end: u64) -> Span {
        Span {
            trace_id: TraceId([1; 16]),
            span_id: SpanId([id; 8]),
            parent_span_id: parent.map(|p| SpanId([p; 8])),
            trace_state: String::new(),
            name: format!("s{id}"),
            kind: SpanKind::Server,
            start_unix_nano: start,
            end_unix_nano: end,
            attributes: vec![],
            events: vec![],
            links: vec![],
            status_code: StatusCode::Unset,
            status_message: String::new(),
        }
    }

    #[test]
    fn critical_path_follows_the_child_that_finished_last() {
        // root 0..100; a 10..40 and b 20..90 overlap; b's child c 30..85; d 5..8 early.
        let spans = [
            span(1, None, 0, 100),
            span(2, Some(1), 10, 40),
            span(3, Some(1), 20, 90),
            span(4, Some(3), 30, 85),
            span(5, Some(1), 5, 8),
        ];
        let named: Vec<(String, &Span)> = spans.iter().map(|s| ("svc".to_owned(), s)).collect();
        let a = analyse(&named);
        let crit = |i: u8| a[&SpanId([i; 8])].critical;
        // Walking back from 100: b (ends 90) until its start at 20; then a, running at
        // 20, until its start at 10; then d, running before 10.
        assert!(crit(1) && crit(3) && crit(4));
        assert!(crit(2) && crit(5));
        // Self times: root 100 minus union [5,8]∪[10,90] = 100 - 83 = 17.
        assert_eq!(a[&SpanId([1; 8])].self_time, 17);
        assert_eq!(a[&SpanId([3; 8])].self_time, 70 - 55);
        assert_eq!(a[&SpanId([4; 8])].depth, 2);
    }

    #[test]
    fn a_sequential_trace_has_every_step_critical_and_a_parallel_loser_not() {
        // root 0..100: first 0..30, then second 30..100; a side task 0..20 runs beside
        // first, which finished later, so the path goes second → first and skips it.
        let spans = [
            span(1, None, 0, 100),
            span(2, Some(1), 0, 30),
            span(3, Some(1), 30, 100),
            span(4, Some(1), 0, 20),
        ];
        let named: Vec<(String, &Span)> = spans.iter().map(|s| ("svc".to_owned(), s)).collect();
        let a = analyse(&named);
        let crit = |i: u8| a[&SpanId([i; 8])].critical;
        assert!(crit(1) && crit(2) && crit(3));
        assert!(!crit(4));
    }

    #[test]
    fn trace_ids_are_found_in_log_lines() {
        let hex = "4bf92f3577b34da6a3ce929d0e0e4736";
        for line in [
            r#"{"msg":"ok","trace_id":"4bf92f3577b34da6a3ce929d0e0e4736"}"#,
            r#"ts=1 traceparent=00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01 msg=x"#,
            r#"{"X-Trace-ID":"4bf92f35-77b3-4da6-a3ce-929d0e0e4736"}"#,
        ] {
            assert_eq!(
                trace_id_in_text(line).map(|t| t.to_hex()).as_deref(),
                Some(hex),
                "{line}"
            );
        }
        assert_eq!(trace_id_in_text("user 00f067aa0ba902b7 logged in"), None);
    }

    #[test]
    fn promql_strings_are_escaped() {
        assert_eq!(promql_string(r#"a"b\c"#), r#""a\"b\\c""#);
    }
}
