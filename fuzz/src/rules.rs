//! Harness for the rules file: any text is either refused with a located reason, or
//! compiles into a rule version whose rules (and the file's own tests, which a load runs)
//! applied to fixed series, log lines and spans keep the batches' invariants.

use std::sync::Arc;

use lastmile_model::{
    KeyValue, Labels, LogBatch, LogEntry, LogStream, Resource, ResourceSpans, Scope, ScopeSpans,
    Span, SpanBatch, SpanId, SpanKind, StatusCode, TraceId, WriteBatch, hash_labels,
};
use lastmile_rules::{Rules, RulesSource, StringArena};

const SERIES: [&[(&str, &str)]; 5] = [
    &[("__name__", "up"), ("instance", "db:9100"), ("job", "api")],
    &[
        ("__name__", "http_requests_total"),
        ("method", "GET"),
        (
            "path",
            "/users/42/orders/550e8400-e29b-41d4-a716-446655440000",
        ),
        ("user_id", "7"),
    ],
    &[
        ("__name__", "target_info"),
        ("instance", "db:9100"),
        ("job", "api"),
        ("service_version", "1.2"),
    ],
    &[
        ("__name__", "latency_ms_bucket"),
        ("job", "api"),
        ("le", "0.5"),
    ],
    &[("__name__", "Bad-Name"), ("job", "checkout")],
];

pub fn file(data: &[u8]) {
    let text = String::from_utf8_lossy(data).into_owned();
    let _ = lastmile_rules::selector::parse_selector(&text);
    let rules = match Rules::from_sources(vec![RulesSource::rules_file("fuzz.yml", text)]) {
        Ok(r) => r,
        Err(e) => {
            assert!(!e.message.is_empty(), "an error without a reason");
            assert_eq!(e.loc.file, "fuzz.yml");
            return;
        }
    };
    let snap = rules.current();

    let mut b = WriteBatch::new();
    for s in SERIES {
        b.begin_series();
        for (n, v) in s {
            b.push_label(n, v);
        }
        b.push_sample(1, 1.0);
        b.finish_series().expect("fixed series are valid");
    }
    let arena = StringArena::new();
    let (out, o) = snap.apply_metrics_at(b, &arena, 0);
    assert_eq!(
        out.series.len() as u64
            + o.series_dropped
            + o.series_without_name
            + o.series_overflow
            + o.series_rejected_naming,
        SERIES.len() as u64,
        "every series is stored or counted: {o:?}"
    );
    for s in &out.series {
        let labels = out.series_labels(s);
        assert!(
            labels.windows(2).all(|w| w[0].name < w[1].name),
            "labels sorted, unique"
        );
        assert!(
            labels
                .iter()
                .all(|l| !l.name.is_empty() && !l.value.is_empty())
        );
        assert!(labels.iter().any(|l| l.name == "__name__"));
        assert_eq!(s.hash, hash_labels(labels.iter().copied()));
        assert_eq!(out.series_samples(s).len(), 1);
    }

    let mut logs = LogBatch {
        streams: vec![LogStream {
            labels: Labels::from_pairs([("app", "nginx"), ("user_id", "7")]),
            entries: (0..4)
                .map(|i| {
                    let mut e = LogEntry::new(i, format!("GET /healthz {i}"));
                    e.metadata.push(("tenant_id".into(), format!("t{}", i % 2)));
                    e
                })
                .collect(),
        }],
    };
    let lo = snap.apply_logs(&mut logs);
    assert_eq!(lo.entries_in, 4);
    assert_eq!(
        logs.entry_count() as u64 + lo.entries_removed(),
        4,
        "every line is kept or counted"
    );

    let span = |trace: u8, status| Span {
        trace_id: TraceId([trace; 16]),
        span_id: SpanId([trace; 8]),
        parent_span_id: None,
        trace_state: String::new(),
        name: "GET /healthz".into(),
        kind: SpanKind::Server,
        start_unix_nano: 1,
        end_unix_nano: 5_000_000_001,
        attributes: vec![KeyValue::string("http.route", "/healthz")],
        events: vec![],
        links: vec![],
        status_code: status,
        status_message: String::new(),
    };
    let mut spans = SpanBatch {
        resources: vec![ResourceSpans {
            resource: Arc::new(Resource {
                attributes: vec![KeyValue::string("service.name", "api")],
            }),
            scopes: vec![ScopeSpans {
                scope: Scope::default(),
                spans: vec![span(1, StatusCode::Unset), span(2, StatusCode::Error)],
            }],
        }],
    };
    snap.prepare_spans(&mut spans);
    assert_eq!(spans.span_count(), 2);
    snap.observe_spans_at(&spans, 0);
    rules.tick(i64::MAX / 4);
    let keep = rules.retain_on_flush(&[TraceId([1; 16]), TraceId([2; 16]), TraceId([3; 16])]);
    assert!(keep[2], "an unknown trace is kept");
    let _ = rules.status(3);
}
