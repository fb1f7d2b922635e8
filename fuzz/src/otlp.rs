//! Harnesses for `lastmile_receivers::otlp`: any bytes as an OTLP export request of one of
//! the three signals, as protobuf (optionally gzip) or OTLP/JSON, decoded and converted.
//!
//! Input layout: the first byte's low two bits pick the signal (`% 3`: traces, metrics,
//! logs); for
//! `otlp_protobuf` its bit 2 also says the rest is gzip (decompressed with a 1 MiB limit
//! under the heap meter). The rest is the body.
//!
//! Checked on every accepted request: conversion never panics; every item of the request
//! is either converted or counted as refused (spans, log records, metric data points);
//! converted spans have valid ids; log streams are labelled (at least `service_name`) and
//! carry their ids in metadata too; converted metrics always form a valid `WriteBatch`
//! (every series named, labels sorted and unique, no empty names or values).

use lastmile_model::{METRIC_NAME, WriteBatch};
use lastmile_receivers::otlp::proto::{
    ExportLogsServiceRequest, ExportMetricsServiceRequest, ExportTraceServiceRequest,
};
use lastmile_receivers::otlp::{
    Compression, Encoding, OtlpError, data_points_of, decode_request, decompress,
    logs_from_request, metrics_from_request, spans_from_request,
};

use crate::alloc_meter::METER;

/// The limit gzip bodies are decompressed with.
pub const BODY_LIMIT: usize = 1 << 20;

/// Heap `decompress` may hold beyond its output: the output `Vec` doubles while growing,
/// plus the inflater's buffers.
const DECOMPRESS_HEAP_SLACK: usize = BODY_LIMIT + (256 << 10);

const NOW_MS: i64 = 1_700_000_000_000;

/// `otlp_protobuf`.
pub fn protobuf(data: &[u8]) {
    let Some((&sel, body)) = data.split_first() else {
        return;
    };
    if sel & 4 != 0 {
        let (result, peak) = METER.measure(|| decompress(Compression::Gzip, body, BODY_LIMIT));
        if let Some(peak) = peak {
            assert!(
                peak <= BODY_LIMIT + DECOMPRESS_HEAP_SLACK,
                "gzip decompress of a {}-byte body held {peak} heap bytes at once",
                body.len()
            );
        }
        match result {
            Ok(plain) => {
                assert!(plain.len() <= BODY_LIMIT);
                convert(sel, Encoding::Protobuf, &plain);
            }
            Err(e) => check_error(&e),
        }
    } else {
        convert(sel, Encoding::Protobuf, body);
    }
}

/// `otlp_json`.
pub fn json(data: &[u8]) {
    let Some((&sel, body)) = data.split_first() else {
        return;
    };
    convert(sel, Encoding::Json, body);
}

fn check_error(e: &OtlpError) {
    // Every refusal has a status a client can act on and a message.
    assert!(matches!(e.http_status(), 400 | 413 | 415), "{e:?}");
    assert!(!e.to_string().is_empty());
    if let OtlpError::TooLarge { size, limit } = e {
        assert!(*size > *limit as u64, "TooLarge for {size} within {limit}");
    }
    if let OtlpError::IdLength { len, want, .. } = e {
        assert!(*len != 0 && len != want, "{e}");
    }
}

fn convert(sel: u8, encoding: Encoding, body: &[u8]) {
    match (sel & 3) % 3 {
        0 => match decode_request::<ExportTraceServiceRequest>(encoding, body, "traces") {
            Ok(req) => traces(req),
            Err(e) => check_error(&e),
        },
        1 => match decode_request::<ExportMetricsServiceRequest>(encoding, body, "metrics") {
            Ok(req) => metrics(req),
            Err(e) => check_error(&e),
        },
        _ => match decode_request::<ExportLogsServiceRequest>(encoding, body, "logs") {
            Ok(req) => logs(req),
            Err(e) => check_error(&e),
        },
    }
}

fn traces(req: ExportTraceServiceRequest) {
    let sent: usize = req
        .resource_spans
        .iter()
        .flat_map(|r| &r.scope_spans)
        .map(|s| s.spans.len())
        .sum();
    match spans_from_request(req) {
        Ok((batch, refused)) => {
            assert_eq!(
                batch.span_count() + refused.total() as usize,
                sent,
                "every span is stored or refused"
            );
            for (_, _, s) in batch.spans() {
                assert_ne!(s.trace_id.0, [0; 16]);
                assert_ne!(s.span_id.0, [0; 8]);
                if let Some(p) = s.parent_span_id {
                    assert_ne!(p.0, [0; 8]);
                }
            }
            for r in &batch.resources {
                assert!(r.scopes.iter().all(|s| !s.spans.is_empty()));
            }
            if !refused.is_empty() {
                assert!(!refused.message("spans", sent as u64).is_empty());
            }
        }
        Err(e) => check_error(&e),
    }
}

fn logs(req: ExportLogsServiceRequest) {
    let sent: usize = req
        .resource_logs
        .iter()
        .flat_map(|r| &r.scope_logs)
        .map(|s| s.log_records.len())
        .sum();
    match logs_from_request(req, NOW_MS * 1_000_000) {
        Ok((batch, refused)) => {
            assert_eq!(batch.entry_count() + refused.total() as usize, sent);
            for st in &batch.streams {
                assert!(!st.entries.is_empty());
                assert!(st.labels.get("service_name").is_some(), "{:?}", st.labels);
                for e in &st.entries {
                    if let Some(t) = e.trace_id {
                        let hex = t.to_hex();
                        assert!(e.metadata.iter().any(|(k, v)| k == "trace_id" && *v == hex));
                    }
                }
            }
        }
        Err(e) => check_error(&e),
    }
}

fn metrics(req: ExportMetricsServiceRequest) {
    let sent: u64 = req
        .resource_metrics
        .iter()
        .flat_map(|r| &r.scope_metrics)
        .flat_map(|s| &s.metrics)
        .map(data_points_of)
        .sum();
    match metrics_from_request(req, NOW_MS) {
        Ok((batch, refused)) => {
            assert_eq!(
                batch.data_points() + refused.total(),
                sent,
                "every data point is converted or refused"
            );
            let wb: WriteBatch<'_> = batch
                .write_batch()
                .unwrap_or_else(|e| panic!("converted series are not a valid batch: {e}"));
            for s in &wb.series {
                let labels = wb.series_labels(s);
                assert!(labels.iter().any(|l| l.name == METRIC_NAME));
                assert!(labels.windows(2).all(|w| w[0].name < w[1].name));
                assert!(
                    labels
                        .iter()
                        .all(|l| !l.name.is_empty() && !l.value.is_empty())
                );
                let samples = wb.series_samples(s);
                assert!(!samples.is_empty());
                assert!(samples.windows(2).all(|w| w[0].t <= w[1].t));
            }
        }
        Err(e) => check_error(&e),
    }
}

/// Seeds: valid requests of each signal made with the generated types (protobuf, gzip
/// protobuf, and the generated OTLP/JSON), plus hand-written OTLP/JSON.
pub fn seeds() -> Vec<crate::seeds::Seed> {
    use prost::Message;
    let mut out: Vec<crate::seeds::Seed> = Vec::new();
    let requests: [(u8, &str, Vec<u8>, String); 3] = [
        (
            0,
            "traces",
            example::traces().encode_to_vec(),
            serde_json::to_string(&example::traces()).expect("traces as JSON"),
        ),
        (
            1,
            "metrics",
            example::metrics().encode_to_vec(),
            serde_json::to_string(&example::metrics()).expect("metrics as JSON"),
        ),
        (
            2,
            "logs",
            example::logs().encode_to_vec(),
            serde_json::to_string(&example::logs()).expect("logs as JSON"),
        ),
    ];
    for (sel, name, pb, json) in requests {
        out.push(("otlp_protobuf", name.into(), prefixed(sel, &pb)));
        out.push((
            "otlp_protobuf",
            format!("{name}_gzip"),
            prefixed(sel | 4, &gzip(&pb)),
        ));
        out.push(("otlp_json", name.into(), prefixed(sel, json.as_bytes())));
    }
    out.push((
        "otlp_json",
        "traces_handwritten".into(),
        prefixed(0, example::TRACES_JSON.as_bytes()),
    ));
    out
}

fn prefixed(sel: u8, body: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(body.len() + 1);
    v.push(sel);
    v.extend_from_slice(body);
    v
}

fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).expect("gzip");
    e.finish().expect("gzip")
}

/// Example requests that exercise most of each converter.
pub mod example {
    use lastmile_receivers::otlp::proto::common::{
        AnyValue, ArrayValue, InstrumentationScope, KeyValue, KeyValueList, any_value::Value,
    };
    use lastmile_receivers::otlp::proto::logs::{LogRecord, ResourceLogs, ScopeLogs};
    use lastmile_receivers::otlp::proto::metrics::{
        Exemplar, ExponentialHistogram, ExponentialHistogramDataPoint, Gauge, Histogram,
        HistogramDataPoint, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum, Summary,
        SummaryDataPoint, exemplar, metric::Data, number_data_point,
        summary_data_point::ValueAtQuantile,
    };
    use lastmile_receivers::otlp::proto::resource::Resource;
    use lastmile_receivers::otlp::proto::trace::{
        ResourceSpans, ScopeSpans, Span, Status, span::Event, span::Link,
    };
    use lastmile_receivers::otlp::proto::{
        ExportLogsServiceRequest, ExportMetricsServiceRequest, ExportTraceServiceRequest,
    };

    const T: u64 = 1_700_000_000_000_000_000;

    pub const TRACES_JSON: &str = r#"{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"api"}}]},"scopeSpans":[{"scope":{"name":"t","version":"1"},"spans":[{"traceId":"5B8EFFF798038103D269B633813FC60C","spanId":"EEE19B7EC3C1B174","parentSpanId":"EEE19B7EC3C1B173","name":"GET /","kind":2,"startTimeUnixNano":"1544712660000000000","endTimeUnixNano":1544712661000000000,"attributes":[{"key":"n","value":{"intValue":"7"}},{"key":"f","value":{"doubleValue":1.5}},{"key":"b","value":{"boolValue":true}}],"status":{"code":2,"message":"x"}}]}]}]}"#;

    fn kv(k: &str, v: Value) -> KeyValue {
        KeyValue {
            key: k.into(),
            value: Some(AnyValue { value: Some(v) }),
            ..Default::default()
        }
    }

    fn s(v: &str) -> Value {
        Value::StringValue(v.into())
    }

    fn resource() -> Option<Resource> {
        Some(Resource {
            attributes: vec![
                kv("service.name", s("checkout")),
                kv("service.namespace", s("shop")),
                kv("service.instance.id", s("pod-1")),
                kv("k8s.pod.name", s("checkout-7f9")),
                kv("host.name", s("node-1")),
            ],
            ..Default::default()
        })
    }

    fn scope() -> Option<InstrumentationScope> {
        Some(InstrumentationScope {
            name: "shop.checkout".into(),
            version: "1.0".into(),
            attributes: vec![kv("lib", s("x"))],
            ..Default::default()
        })
    }

    pub fn traces() -> ExportTraceServiceRequest {
        let span = |trace: u8, span: u8, parent: Option<u8>, name: &str| Span {
            trace_id: vec![trace; 16],
            span_id: vec![span; 8],
            parent_span_id: parent.map(|p| vec![p; 8]).unwrap_or_default(),
            name: name.into(),
            kind: 2,
            start_time_unix_nano: T,
            end_time_unix_nano: T + 5_000_000,
            attributes: vec![
                kv("http.route", s("/cart")),
                kv("http.status_code", Value::IntValue(200)),
                kv(
                    "tags",
                    Value::ArrayValue(ArrayValue {
                        values: vec![AnyValue {
                            value: Some(s("a")),
                        }],
                    }),
                ),
            ],
            events: vec![Event {
                time_unix_nano: T + 1,
                name: "retry".into(),
                attributes: vec![kv("n", Value::IntValue(1))],
                ..Default::default()
            }],
            links: vec![Link {
                trace_id: vec![9; 16],
                span_id: vec![9; 8],
                ..Default::default()
            }],
            status: Some(Status {
                code: 2,
                message: "boom".into(),
            }),
            ..Default::default()
        };
        ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: resource(),
                scope_spans: vec![ScopeSpans {
                    scope: scope(),
                    spans: vec![
                        span(1, 1, None, "GET /cart"),
                        span(1, 2, Some(1), "SELECT"),
                        span(0, 3, None, "zero trace id"),
                    ],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
    }

    pub fn metrics() -> ExportMetricsServiceRequest {
        let number = |v: f64| NumberDataPoint {
            attributes: vec![kv("route", s("/cart"))],
            time_unix_nano: T,
            value: Some(number_data_point::Value::AsDouble(v)),
            exemplars: vec![Exemplar {
                trace_id: vec![1; 16],
                span_id: vec![1; 8],
                time_unix_nano: T,
                value: Some(exemplar::Value::AsDouble(v)),
                filtered_attributes: vec![kv("user", s("u"))],
            }],
            ..Default::default()
        };
        let metric = |name: &str, unit: &str, data: Data| Metric {
            name: name.into(),
            unit: unit.into(),
            description: "d".into(),
            data: Some(data),
            ..Default::default()
        };
        ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                resource: resource(),
                scope_metrics: vec![ScopeMetrics {
                    scope: scope(),
                    metrics: vec![
                        metric(
                            "http.server.requests",
                            "{request}",
                            Data::Sum(Sum {
                                data_points: vec![number(3.0)],
                                aggregation_temporality: 2,
                                is_monotonic: true,
                            }),
                        ),
                        metric(
                            "queue.depth",
                            "1",
                            Data::Gauge(Gauge {
                                data_points: vec![number(0.5)],
                            }),
                        ),
                        metric(
                            "http.server.duration",
                            "ms",
                            Data::Histogram(Histogram {
                                data_points: vec![HistogramDataPoint {
                                    time_unix_nano: T,
                                    count: 3,
                                    sum: Some(30.0),
                                    bucket_counts: vec![1, 1, 1],
                                    explicit_bounds: vec![5.0, 10.0],
                                    exemplars: number(7.0).exemplars,
                                    ..Default::default()
                                }],
                                aggregation_temporality: 2,
                            }),
                        ),
                        metric(
                            "gc.pause",
                            "s",
                            Data::Summary(Summary {
                                data_points: vec![SummaryDataPoint {
                                    time_unix_nano: T,
                                    count: 2,
                                    sum: 0.3,
                                    quantile_values: vec![ValueAtQuantile {
                                        quantile: 0.99,
                                        value: 0.2,
                                    }],
                                    ..Default::default()
                                }],
                            }),
                        ),
                        metric(
                            "delta",
                            "",
                            Data::Sum(Sum {
                                data_points: vec![number(1.0)],
                                aggregation_temporality: 1,
                                is_monotonic: true,
                            }),
                        ),
                        metric(
                            "exp",
                            "",
                            Data::ExponentialHistogram(ExponentialHistogram {
                                data_points: vec![ExponentialHistogramDataPoint {
                                    time_unix_nano: T,
                                    count: 1,
                                    ..Default::default()
                                }],
                                aggregation_temporality: 2,
                            }),
                        ),
                    ],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
    }

    pub fn logs() -> ExportLogsServiceRequest {
        ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                resource: resource(),
                scope_logs: vec![ScopeLogs {
                    scope: scope(),
                    log_records: vec![
                        LogRecord {
                            time_unix_nano: T,
                            observed_time_unix_nano: T + 1,
                            severity_number: 17,
                            severity_text: "ERROR".into(),
                            body: Some(AnyValue {
                                value: Some(s("payment failed")),
                            }),
                            attributes: vec![kv(
                                "ctx",
                                Value::KvlistValue(KeyValueList {
                                    values: vec![kv("user", s("u1"))],
                                }),
                            )],
                            trace_id: vec![1; 16],
                            span_id: vec![2; 8],
                            ..Default::default()
                        },
                        LogRecord {
                            body: Some(AnyValue {
                                value: Some(Value::KvlistValue(KeyValueList {
                                    values: vec![kv("msg", s("hi")), kv("n", Value::IntValue(3))],
                                })),
                            }),
                            ..Default::default()
                        },
                    ],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
    }
}

/// For `tests/seeds.rs`: decodes and converts a seed, failing on any refusal; returns the
/// items (spans, data points or log records) converted.
pub fn seed_items(json: bool, data: &[u8]) -> Result<u64, String> {
    let (&sel, body) = data.split_first().ok_or("empty seed")?;
    let plain;
    let (encoding, body) = if json {
        (Encoding::Json, body)
    } else if sel & 4 != 0 {
        plain = decompress(Compression::Gzip, body, BODY_LIMIT).map_err(|e| e.to_string())?;
        (Encoding::Protobuf, &plain[..])
    } else {
        (Encoding::Protobuf, body)
    };
    let err = |e: OtlpError| e.to_string();
    Ok(match (sel & 3) % 3 {
        0 => {
            let req = decode_request(encoding, body, "traces").map_err(err)?;
            spans_from_request(req).map_err(err)?.0.span_count() as u64
        }
        1 => {
            let req = decode_request(encoding, body, "metrics").map_err(err)?;
            metrics_from_request(req, NOW_MS)
                .map_err(err)?
                .0
                .data_points()
        }
        _ => {
            let req = decode_request(encoding, body, "logs").map_err(err)?;
            logs_from_request(req, 0).map_err(err)?.0.entry_count() as u64
        }
    })
}
