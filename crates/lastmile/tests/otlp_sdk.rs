//! The OpenTelemetry Python SDK (PyPI, in the venv scripts/install-test-deps.sh builds)
//! sends traces, metrics and logs to lastmile over OTLP/HTTP protobuf, OTLP/HTTP JSON and
//! OTLP/gRPC; what it sent must come back intact: metrics (with the OpenTelemetry
//! Prometheus-compatibility names and labels, target_info, exemplars carrying the trace
//! id) through the Prometheus API, spans from the span store, log records through the Loki
//! API and in the trace's correlation, next to the span that logged them.

mod common;

use std::collections::BTreeMap;

use common::*;
use lastmile_model::{AttrValue, SpanKind, StatusCode, TraceId};
use lastmile_trace_store::{TraceStore, TraceStoreMetrics, TraceStoreOptions};

/// What `tests/otlp/send.py` reports it sent.
struct Sent {
    run: String,
    trace_id: String,
    /// (span name, span id)
    spans: Vec<(String, String)>,
}

fn send(python: &std::path::Path, protocol: &str, endpoint: &str, run: &str) -> Sent {
    let out = run_python(python, "otlp/send.py", &[protocol, endpoint, run]);
    let v: serde_json::Value = serde_json::from_str(out.trim())
        .unwrap_or_else(|e| panic!("send.py printed no JSON ({e}): {out}"));
    Sent {
        run: run.to_owned(),
        trace_id: v["trace_id"].as_str().expect("trace_id").to_owned(),
        spans: v["spans"]
            .as_array()
            .expect("spans")
            .iter()
            .map(|s| {
                (
                    s["name"].as_str().unwrap().to_owned(),
                    s["span_id"].as_str().unwrap().to_owned(),
                )
            })
            .collect(),
    }
}

/// An instant query's vector, by label set.
fn query(server: &Lastmile, q: &str) -> BTreeMap<Labels, f64> {
    let r = server.get(&format!("/api/v1/query?query={}", enc(q)));
    assert_eq!(r.status, 200, "query {q}: {}", r.text());
    let v = r.json();
    assert_eq!(v["data"]["resultType"], "vector", "{q}: {v}");
    v["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                labels_of(&s["metric"]),
                parse_value(s["value"][1].as_str().unwrap()),
            )
        })
        .collect()
}

fn one(server: &Lastmile, q: &str) -> (Labels, f64) {
    let v = query(server, q);
    assert_eq!(v.len(), 1, "{q} should give one series, got {v:?}");
    v.into_iter().next().unwrap()
}

fn check_metrics(server: &Lastmile, sent: &Sent) {
    let job = format!("shop/checkout-{}", sent.run);
    let sel = |name: &str| format!("{name}{{job=\"{job}\"}}");
    let want_base = |extra: &[(&str, &str)]| -> Labels {
        let mut l: Labels = [
            ("job", job.as_str()),
            ("instance", &format!("pod-{}", sent.run)),
            ("otel_scope_name", "shop.checkout"),
            ("otel_scope_version", "1.4.2"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        for (k, v) in extra {
            l.insert(k.to_string(), v.to_string());
        }
        l
    };

    // A monotonic sum: a counter with `_total`; `{request}` adds no unit suffix.
    let (mut labels, v) = one(server, &sel("http_server_requests_total"));
    assert_eq!(v, 3.0);
    labels.remove("__name__");
    assert_eq!(
        labels,
        want_base(&[
            ("http_route", "/cart"),
            ("http_response_status_code", "200")
        ])
    );

    // An up-down counter: a gauge, no `_total`.
    assert_eq!(one(server, &sel("http_server_active_requests")).1, 2.0);
    // A gauge in bytes.
    assert_eq!(
        one(server, &sel("process_memory_usage_bytes")).1,
        123456789.0
    );

    // The histogram: cumulative buckets with le, +Inf last, _sum and _count.
    let buckets = query(server, &sel("http_server_duration_milliseconds_bucket"));
    let by_le: BTreeMap<String, f64> = buckets.iter().map(|(l, v)| (l["le"].clone(), *v)).collect();
    let want: BTreeMap<String, f64> = [
        ("5", 0.0),
        ("10", 1.0),
        ("25", 1.0),
        ("50", 2.0),
        ("100", 2.0),
        ("+Inf", 2.0),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), *v))
    .collect();
    assert_eq!(by_le, want);
    assert_eq!(
        one(server, &sel("http_server_duration_milliseconds_sum")).1,
        49.5
    );
    assert_eq!(
        one(server, &sel("http_server_duration_milliseconds_count")).1,
        2.0
    );
    // PromQL over them works as for any Prometheus histogram.
    let (_, p50) = one(
        server,
        &format!(
            "histogram_quantile(0.5, sum by (le) ({}))",
            sel("http_server_duration_milliseconds_bucket")
        ),
    );
    assert!((5.0..=10.0).contains(&p50), "p50 {p50}");

    // target_info: the other resource attributes, with job and instance.
    let (mut target, v) = one(server, &sel("target_info"));
    assert_eq!(v, 1.0);
    target.remove("__name__");
    assert_eq!(target["deployment_environment"], "test");
    assert_eq!(target["host_name"], "sdk-host");
    assert_eq!(target["telemetry_sdk_language"], "python");
    assert_eq!(target["instance"], format!("pod-{}", sent.run));
    assert!(!target.contains_key("service_name"), "{target:?}");
    assert!(!target.contains_key("otel_scope_name"), "{target:?}");

    // Metadata: type, help and unit from the instrument.
    let r = server.get("/api/v1/metadata?metric=http_server_duration_milliseconds");
    let md = &r.json()["data"]["http_server_duration_milliseconds"][0];
    assert_eq!(md["type"], "histogram", "{md}");
    assert_eq!(md["help"], "Request latency", "{md}");
    assert_eq!(md["unit"], "milliseconds", "{md}");

    // Exemplars: recorded inside the sampled root span, so they carry its trace id; each on
    // the bucket its value falls in.
    let r = server.get(&format!(
        "/api/v1/query_exemplars?query={}&start=0&end={}",
        enc(&format!(
            "{{job=\"{job}\", __name__=~\"http_server_duration_milliseconds_bucket|http_server_requests_total\"}}"
        )),
        secs(now_ms() + 60_000)
    ));
    assert_eq!(r.status, 200, "{}", r.text());
    let mut found: Vec<(String, String, String)> = Vec::new();
    for s in r.json()["data"].as_array().unwrap() {
        let series = labels_of(&s["seriesLabels"]);
        for e in s["exemplars"].as_array().unwrap() {
            let l = labels_of(&e["labels"]);
            assert_eq!(l["trace_id"], sent.trace_id, "{e}");
            assert_eq!(l["span_id"].len(), 16, "{e}");
            found.push((
                series["__name__"].clone(),
                series.get("le").cloned().unwrap_or_default(),
                e["value"].as_str().unwrap().to_owned(),
            ));
        }
    }
    found.sort();
    assert_eq!(
        found,
        [
            (
                "http_server_duration_milliseconds_bucket".into(),
                "10".into(),
                "7.5".into()
            ),
            (
                "http_server_duration_milliseconds_bucket".into(),
                "50".into(),
                "42".into()
            ),
            (
                "http_server_requests_total".into(),
                String::new(),
                "3".into()
            ),
        ]
    );
}

/// The trace through the Tempo-compatible API, while the server runs.
fn check_tempo(server: &Lastmile, sent: &Sent) {
    let r = server.get(&format!("/api/traces/{}", sent.trace_id));
    assert_eq!(r.status, 200, "trace {}: {}", sent.trace_id, r.text());
    let text = r.text();
    for (name, span_id) in &sent.spans {
        assert!(
            text.contains(&format!("\"spanId\":\"{span_id}\"")),
            "{name} {span_id} not in {text}"
        );
        assert!(
            text.contains(&format!("\"name\":\"{name}\"")),
            "{name} not in {text}"
        );
    }
}

/// The log records: in the log store with Loki's OTLP mapping (resource attributes as
/// stream labels, the rest structured metadata), tied to the span that was current when
/// they were logged, and in the trace's correlation.
fn check_logs(server: &Lastmile, sent: &Sent) {
    let span_id = |name: &str| {
        sent.spans
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, id)| id.clone())
            .unwrap()
    };
    let q = format!("{{service_name=\"checkout-{}\"}}", sent.run);
    let mut lines: Vec<(String, Labels)> = log_lines(server, &q)
        .into_iter()
        .map(|(labels, line)| (line, labels))
        .collect();
    lines.sort_by(|a, b| a.0.cmp(&b.0));
    let texts: Vec<&str> = lines.iter().map(|(l, _)| l.as_str()).collect();
    assert_eq!(
        texts,
        ["query failed: deadlock detected", "served cart 42"],
        "{lines:?}"
    );
    let (_, failed) = &lines[0];
    assert_eq!(failed["service_namespace"], "shop", "{failed:?}");
    assert_eq!(failed["deployment_environment"], "test", "{failed:?}");
    assert_eq!(failed["severity_text"], "ERROR", "{failed:?}");
    assert_eq!(failed["trace_id"], sent.trace_id, "{failed:?}");
    assert_eq!(failed["span_id"], span_id("SELECT carts"), "{failed:?}");
    assert_eq!(
        lines[1].1["span_id"],
        span_id("GET /cart"),
        "{:?}",
        lines[1]
    );

    // `correlate` puts them with the trace, each with the span that logged it.
    let r = server.get(&format!("/api/v1/correlate?trace_id={}", sent.trace_id));
    assert_eq!(r.status, 200, "{}", r.text());
    let c = r.json();
    let mut logs: Vec<(String, String)> = c["data"]["logs"]
        .as_array()
        .expect("logs")
        .iter()
        .map(|l| {
            (
                l["line"].as_str().unwrap().to_owned(),
                l["spanId"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    logs.sort();
    assert_eq!(
        logs,
        [
            (
                "query failed: deadlock detected".to_owned(),
                span_id("SELECT carts")
            ),
            ("served cart 42".to_owned(), span_id("GET /cart")),
        ],
        "{c}"
    );
}

fn check_spans(store: &TraceStore, sent: &Sent) {
    let id = TraceId::parse_any(&sent.trace_id).unwrap();
    let batch = store
        .trace(id)
        .unwrap()
        .unwrap_or_else(|| panic!("trace {} of run {} not stored", sent.trace_id, sent.run));
    assert_eq!(batch.span_count(), 2, "{batch:?}");
    let mut got: Vec<(String, String)> = batch
        .spans()
        .map(|(res, scope, s)| {
            assert_eq!(res.service_name(), format!("checkout-{}", sent.run));
            assert_eq!(scope.name, "shop.checkout");
            assert_eq!(scope.version, "1.4.2");
            assert_eq!(s.trace_id, id);
            (s.name.clone(), s.span_id.to_hex())
        })
        .collect();
    got.sort();
    let mut want = sent.spans.clone();
    want.sort();
    assert_eq!(got, want);
    let (_, _, root) = batch
        .spans()
        .find(|(_, _, s)| s.name == "GET /cart")
        .unwrap();
    let (_, _, child) = batch
        .spans()
        .find(|(_, _, s)| s.name == "SELECT carts")
        .unwrap();
    assert!(root.is_root());
    assert_eq!(root.kind, SpanKind::Server);
    assert_eq!(
        root.attr("http.response.status_code"),
        Some(&AttrValue::Int(200))
    );
    assert_eq!(root.events.len(), 1);
    assert_eq!(root.events[0].name, "cache miss");
    assert!(root.duration_nanos() >= child.duration_nanos());
    assert_eq!(child.parent_span_id, Some(root.span_id));
    assert_eq!(child.kind, SpanKind::Client);
    assert_eq!(child.status_code, StatusCode::Error);
    assert_eq!(child.status_message, "deadlock detected");
    assert_eq!(
        child.attr("db.system").and_then(AttrValue::as_str),
        Some("postgresql")
    );
}

#[test]
fn python_sdk_over_http_protobuf_http_json_and_grpc() {
    let Some(python) = require_venv_python() else {
        return;
    };
    let dir = TestDir::new();
    let mut server = Lastmile::start(&dir);
    let runs = [
        (
            "http/protobuf",
            format!("http://{}", server.otlp_http),
            "hp",
        ),
        // The OTLP routes are on the main HTTP address too.
        ("http/json", format!("http://{}", server.addr), "hj"),
        ("grpc", format!("http://{}", server.otlp_grpc), "gr"),
    ];
    let mut sent = Vec::new();
    for (protocol, endpoint, run) in &runs {
        let s = send(&python, protocol, endpoint, run);
        check_metrics(&server, &s);
        check_tempo(&server, &s);
        check_logs(&server, &s);
        sent.push((*protocol, s));
    }
    let m = server.metrics_text();
    for protocol in ["http/protobuf", "http/json", "grpc"] {
        for (signal, n) in [("spans", 2.0), ("metric_points", 4.0), ("log_records", 2.0)] {
            let series = format!(
                "lastmile_otlp_received_items_total{{signal=\"{signal}\",protocol=\"{protocol}\"}}"
            );
            assert_eq!(metric_value(&m, &series), Some(n), "{series}\n{m}");
        }
    }

    // Acknowledged spans are durable: read them from the span store after kill -9.
    server.kill9();
    let (store, _) = TraceStore::open(
        &server.data_dir.join("traces"),
        TraceStoreOptions::default(),
        std::sync::Arc::new(TraceStoreMetrics::default()),
    )
    .expect("open the span store");
    for (protocol, s) in &sent {
        eprintln!("checking the spans sent over {protocol}");
        check_spans(&store, s);
    }
}
