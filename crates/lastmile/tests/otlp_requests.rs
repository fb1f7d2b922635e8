//! OTLP requests built by hand (the generated types, or OTLP/JSON text): partial success,
//! relabeling, and bad input — each refused whole with a precise status and message,
//! nothing of it stored, the server still up.

mod common;

use std::io::Write as _;
use std::sync::Arc;

use common::*;
use lastmile_model::TraceId;
use lastmile_receivers::otlp::proto::common::{
    AnyValue, InstrumentationScope, KeyValue, any_value,
};
use lastmile_receivers::otlp::proto::metrics::{
    self as pm, ExponentialHistogram, ExponentialHistogramDataPoint, Gauge, Metric,
    NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum, metric::Data, number_data_point,
};
use lastmile_receivers::otlp::proto::resource::Resource;
use lastmile_receivers::otlp::proto::trace as pt;
use lastmile_receivers::otlp::proto::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse, ExportTraceServiceRequest,
    ExportTraceServiceResponse,
};
use lastmile_trace_store::{TraceStore, TraceStoreMetrics, TraceStoreOptions};
use prost::Message;

const PB: &str = "application/x-protobuf";
const JSON: &str = "application/json";

fn kv(k: &str, v: &str) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(v.into())),
        }),
        ..Default::default()
    }
}

fn now_ns() -> u64 {
    now_ms() as u64 * 1_000_000
}

fn span(trace: &[u8], span_id: &[u8], name: &str) -> pt::Span {
    let t = now_ns();
    pt::Span {
        trace_id: trace.to_vec(),
        span_id: span_id.to_vec(),
        name: name.into(),
        kind: 2,
        start_time_unix_nano: t - 5_000_000,
        end_time_unix_nano: t,
        ..Default::default()
    }
}

fn traces(service: &str, spans: Vec<pt::Span>) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![pt::ResourceSpans {
            resource: Some(Resource {
                attributes: vec![kv("service.name", service)],
                ..Default::default()
            }),
            scope_spans: vec![pt::ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: "hand".into(),
                    ..Default::default()
                }),
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn gauge(name: &str, v: f64, t_ns: u64) -> Metric {
    Metric {
        name: name.into(),
        data: Some(Data::Gauge(Gauge {
            data_points: vec![NumberDataPoint {
                time_unix_nano: t_ns,
                value: Some(number_data_point::Value::AsDouble(v)),
                ..Default::default()
            }],
        })),
        ..Default::default()
    }
}

fn counter(name: &str, v: f64, t_ns: u64, exemplars: Vec<pm::Exemplar>) -> Metric {
    Metric {
        name: name.into(),
        data: Some(Data::Sum(Sum {
            data_points: vec![NumberDataPoint {
                time_unix_nano: t_ns,
                value: Some(number_data_point::Value::AsDouble(v)),
                exemplars,
                ..Default::default()
            }],
            aggregation_temporality: pm::AggregationTemporality::Cumulative as i32,
            is_monotonic: true,
        })),
        ..Default::default()
    }
}

fn metrics(service: &str, metrics: Vec<Metric>) -> ExportMetricsServiceRequest {
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(Resource {
                attributes: vec![kv("service.name", service)],
                ..Default::default()
            }),
            scope_metrics: vec![ScopeMetrics {
                scope: Some(InstrumentationScope {
                    name: "hand".into(),
                    version: "0.1".into(),
                    ..Default::default()
                }),
                metrics,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn post(
    server: &Lastmile,
    addr: std::net::SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    framing: Framing,
) -> Response {
    http_request(addr, "POST", path, headers, body, framing)
        .unwrap_or_else(|e| panic!("POST {path} failed: {e}; server stderr:\n{}", server.logs()))
}

fn open_span_store(server: &Lastmile) -> TraceStore {
    TraceStore::open(
        &server.data_dir.join("traces"),
        TraceStoreOptions::default(),
        Arc::new(TraceStoreMetrics::default()),
    )
    .expect("open the span store")
    .0
}

fn id(byte: u8) -> [u8; 16] {
    [byte; 16]
}

const LIMITS: &str = "limits:\n  max_request_bytes: 1MiB\n  max_decompressed_bytes: 4MiB\n";

#[test]
fn bad_input_is_refused_whole_with_a_precise_message() {
    let dir = TestDir::new();
    let mut server = Lastmile::start_with_config(&dir, LIMITS);
    let otlp = server.otlp_http;

    // A request whose second span has a 2-byte trace id: the first (valid) span must not
    // be stored either.
    let bad_id_json = format!(
        r#"{{"resourceSpans":[{{"resource":{{"attributes":[{{"key":"service.name","value":{{"stringValue":"bad"}}}}]}},
        "scopeSpans":[{{"spans":[
          {{"traceId":"{}","spanId":"0101010101010101","name":"fine","startTimeUnixNano":"1","endTimeUnixNano":"2"}},
          {{"traceId":"abcd","spanId":"0101010101010102","name":"short id"}}]}}]}}]}}"#,
        "a1".repeat(16)
    );
    let mut log_req = lastmile_receivers::otlp::proto::ExportLogsServiceRequest::default();
    log_req
        .resource_logs
        .push(lastmile_receivers::otlp::proto::logs::ResourceLogs {
            scope_logs: vec![lastmile_receivers::otlp::proto::logs::ScopeLogs {
                log_records: vec![lastmile_receivers::otlp::proto::logs::LogRecord {
                    span_id: vec![1, 2, 3],
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        });
    let t = now_ns();
    let bad_exemplar = metrics(
        "bad-exemplar",
        vec![
            gauge("fine_gauge", 1.0, t),
            counter(
                "with_exemplar",
                1.0,
                t,
                vec![pm::Exemplar {
                    trace_id: vec![7; 15],
                    value: Some(pm::exemplar::Value::AsDouble(1.0)),
                    ..Default::default()
                }],
            ),
        ],
    );
    let bomb = gzip(&vec![0u8; 8 << 20]);
    let mut lying_bomb = bomb.clone();
    let n = lying_bomb.len();
    lying_bomb[n - 4..].copy_from_slice(&100u32.to_le_bytes());
    let huge = vec![b'x'; 2 << 20];

    struct Case<'a> {
        what: &'a str,
        addr: std::net::SocketAddr,
        path: &'a str,
        headers: Vec<(&'a str, &'a str)>,
        body: Vec<u8>,
        framing: Framing,
        status: u16,
        message: String,
    }
    let case = |what,
                path,
                headers: &[(&'static str, &'static str)],
                body: Vec<u8>,
                status,
                message: &str| Case {
        what,
        addr: otlp,
        path,
        headers: headers.to_vec(),
        body,
        framing: Framing::ContentLength,
        status,
        message: message.to_owned(),
    };
    let mut cases = vec![
        case(
            "truncated protobuf",
            "/v1/traces",
            &[("Content-Type", PB)],
            vec![0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f],
            400,
            "malformed protobuf ExportTraceServiceRequest",
        ),
        case(
            "truncated JSON",
            "/v1/metrics",
            &[("Content-Type", JSON)],
            br#"{"resourceMetrics": ["#.to_vec(),
            400,
            "invalid OTLP/JSON ExportMetricsServiceRequest",
        ),
        case(
            "enum by name (OTLP/JSON sends integers)",
            "/v1/traces",
            &[("Content-Type", JSON)],
            br#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"kind":"SPAN_KIND_SERVER"}]}]}]}"#
                .to_vec(),
            400,
            "invalid OTLP/JSON ExportTraceServiceRequest",
        ),
        case(
            "2-byte trace id in OTLP/JSON",
            "/v1/traces",
            &[("Content-Type", JSON)],
            bad_id_json.into_bytes(),
            400,
            "resourceSpans[0].scopeSpans[0].spans[1].traceId is 2 bytes long; an OTLP trace id is 16 bytes (32 hex digits in OTLP/JSON)",
        ),
        case(
            "3-byte span id in a log record",
            "/v1/logs",
            &[("Content-Type", PB)],
            log_req.encode_to_vec(),
            400,
            "resourceLogs[0].scopeLogs[0].logRecords[0].spanId is 3 bytes long; an OTLP span id is 8 bytes",
        ),
        case(
            "15-byte exemplar trace id",
            "/v1/metrics",
            &[("Content-Type", PB)],
            bad_exemplar.encode_to_vec(),
            400,
            "exemplars[0].traceId is 15 bytes long",
        ),
        case(
            "gzip bomb (declared size)",
            "/v1/traces",
            &[("Content-Type", PB), ("Content-Encoding", "gzip")],
            bomb,
            413,
            "decompressed body of 8388608 bytes exceeds the limit of 4194304 bytes",
        ),
        case(
            "gzip bomb (trailer lies)",
            "/v1/metrics",
            &[("Content-Type", PB), ("Content-Encoding", "gzip")],
            lying_bomb,
            413,
            "decompressed body exceeds the limit of 4194304 bytes",
        ),
        case(
            "not gzip",
            "/v1/traces",
            &[("Content-Type", PB), ("Content-Encoding", "gzip")],
            b"plain bytes".to_vec(),
            400,
            "invalid gzip body",
        ),
        case(
            "over the request size limit",
            "/v1/traces",
            &[("Content-Type", PB)],
            huge.clone(),
            413,
            "request body of 2097152 bytes exceeds the limit of 1048576 bytes",
        ),
        case(
            "unknown media type",
            "/v1/traces",
            &[("Content-Type", "text/plain")],
            b"hello".to_vec(),
            415,
            "unsupported Content-Type \"text/plain\": OTLP/HTTP bodies are application/x-protobuf or application/json",
        ),
        case(
            "no media type",
            "/v1/logs",
            &[],
            b"hello".to_vec(),
            415,
            "unsupported Content-Type",
        ),
        case(
            "unknown content encoding",
            "/v1/metrics",
            &[("Content-Type", PB), ("Content-Encoding", "br")],
            b"x".to_vec(),
            415,
            "unsupported Content-Encoding \"br\"",
        ),
    ];
    cases.push(Case {
        what: "over the limit, chunked (no Content-Length)",
        framing: Framing::Chunked,
        message: "request body exceeds the limit of 1048576 bytes".into(),
        ..case("", "/v1/traces", &[("Content-Type", PB)], huge, 413, "")
    });
    // The main HTTP address answers the same way.
    cases.push(Case {
        what: "2-byte trace id on the main address",
        addr: server.addr,
        ..case(
            "",
            "/v1/traces",
            &[("Content-Type", PB)],
            traces(
                "bad-main",
                vec![
                    span(&id(0xb2), &[1; 8], "fine"),
                    span(&[1, 2], &[1; 8], "x"),
                ],
            )
            .encode_to_vec(),
            400,
            "resourceSpans[0].scopeSpans[0].spans[1].traceId is 2 bytes long",
        )
    });

    for c in &cases {
        let r = post(&server, c.addr, c.path, &c.headers, &c.body, c.framing);
        let text = r.text();
        assert_eq!(r.status, c.status, "{}: {text}", c.what);
        assert!(
            text.contains(&c.message),
            "{}: {text:?} lacks {:?}",
            c.what,
            c.message
        );
        // Errors come in the request's encoding (google.rpc.Status), plain text otherwise.
        let ct = r.header("content-type").unwrap_or("");
        match c
            .headers
            .iter()
            .find(|(k, _)| *k == "Content-Type")
            .map(|(_, v)| *v)
        {
            Some(JSON) => {
                assert_eq!(ct, JSON, "{}", c.what);
                let v = r.json();
                let message = v["message"].as_str().unwrap_or("");
                assert!(message.contains(&c.message), "{}: {v}", c.what);
                // google.rpc.Code: INVALID_ARGUMENT for 400, RESOURCE_EXHAUSTED for 413.
                let code = if c.status == 413 { 8 } else { 3 };
                assert_eq!(v["code"], code, "{}: {v}", c.what);
            }
            Some(PB) => assert_eq!(ct, PB, "{}", c.what),
            _ => assert!(ct.starts_with("text/plain"), "{}: {ct}", c.what),
        }
        assert!(server.is_running(), "server died on {}", c.what);
    }
    assert_eq!(server.get("/-/ready").status, 200);

    // Nothing of a refused request was stored.
    assert!(server.series("{job=\"bad-exemplar\"}").is_empty());
    let m = server.metrics_text();
    for (signal, protocol, reason) in [
        ("spans", "http/protobuf", "bad_protobuf"),
        ("spans", "http/json", "invalid_id"),
        ("spans", "http/protobuf", "too_large"),
        ("metric_points", "http/json", "bad_json"),
        ("log_records", "http", "unsupported_media_type"),
        ("spans", "http/protobuf", "bad_compression"),
    ] {
        let series = format!(
            "lastmile_otlp_rejected_requests_total{{signal=\"{signal}\",protocol=\"{protocol}\",reason=\"{reason}\"}}"
        );
        assert!(
            metric_value(&m, &series).unwrap_or(0.0) >= 1.0,
            "{series} missing:\n{m}"
        );
    }
    server.kill9();
    let store = open_span_store(&server);
    for byte in [0xa1, 0xb2] {
        assert!(
            store.trace(TraceId(id(byte))).unwrap().is_none(),
            "a span of a refused request was stored"
        );
    }
}

#[test]
fn partial_success_reports_refused_items_and_stores_the_rest() {
    let dir = TestDir::new();
    let mut server = Lastmile::start(&dir);
    let otlp = server.otlp_http;

    // Spans: one good, one with an all-zero trace id, one without a span id.
    let req = traces(
        "partial",
        vec![
            span(&id(0xc1), &[1; 8], "good"),
            span(&[0; 16], &[2; 8], "zero trace id"),
            span(&id(0xc2), &[], "no span id"),
        ],
    );
    let r = post(
        &server,
        otlp,
        "/v1/traces",
        &[("Content-Type", PB)],
        &req.encode_to_vec(),
        Framing::ContentLength,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-type"), Some(PB));
    let resp = ExportTraceServiceResponse::decode(&r.body[..]).unwrap();
    let ps = resp.partial_success.expect("partial_success");
    assert_eq!(ps.rejected_spans, 2);
    assert_eq!(
        ps.error_message,
        "2 of 3 spans refused: 2 with an empty or all-zero trace or span id (first at resourceSpans[0].scopeSpans[0].spans[1])"
    );

    // The same in OTLP/JSON; a full success answers {} (no partial_success).
    let json = format!(
        r#"{{"resourceSpans":[{{"scopeSpans":[{{"spans":[
          {{"traceId":"{}","spanId":"0303030303030303","name":"good json"}},
          {{"traceId":"{}","spanId":"0000000000000000","name":"zero span id"}}]}}]}}]}}"#,
        "c3".repeat(16),
        "c4".repeat(16)
    );
    let r = post(
        &server,
        otlp,
        "/v1/traces",
        &[("Content-Type", JSON)],
        json.as_bytes(),
        Framing::ContentLength,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["partialSuccess"]["rejectedSpans"], "1", "{v}");
    let full = traces("full", vec![span(&id(0xc5), &[5; 8], "all good")]);
    let r = post(
        &server,
        otlp,
        "/v1/traces",
        &[("Content-Type", PB), ("Content-Encoding", "gzip")],
        &gzip(&full.encode_to_vec()),
        Framing::ContentLength,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        ExportTraceServiceResponse::decode(&r.body[..])
            .unwrap()
            .partial_success,
        None
    );
    let r = post(
        &server,
        otlp,
        "/v1/traces",
        &[("Content-Type", JSON)],
        b"{}",
        Framing::ContentLength,
    );
    assert_eq!((r.status, r.text().as_str()), (200, "{}"));

    // Metrics: a gauge is kept; a delta sum and an exponential histogram are refused;
    // a sample older than its series' newest is refused by the store.
    let t = now_ns();
    let delta = Metric {
        name: "delta_requests".into(),
        data: Some(Data::Sum(Sum {
            data_points: vec![NumberDataPoint {
                time_unix_nano: t,
                value: Some(number_data_point::Value::AsInt(4)),
                ..Default::default()
            }],
            aggregation_temporality: pm::AggregationTemporality::Delta as i32,
            is_monotonic: true,
        })),
        ..Default::default()
    };
    let exp = Metric {
        name: "latency".into(),
        data: Some(Data::ExponentialHistogram(ExponentialHistogram {
            data_points: vec![ExponentialHistogramDataPoint {
                time_unix_nano: t,
                count: 1,
                ..Default::default()
            }],
            aggregation_temporality: pm::AggregationTemporality::Cumulative as i32,
        })),
        ..Default::default()
    };
    let req = metrics(
        "partial-metrics",
        vec![gauge("kept_gauge", 42.0, t), delta, exp],
    );
    let r = post(
        &server,
        otlp,
        "/v1/metrics",
        &[("Content-Type", PB)],
        &req.encode_to_vec(),
        Framing::ContentLength,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let ps = ExportMetricsServiceResponse::decode(&r.body[..])
        .unwrap()
        .partial_success
        .expect("partial_success");
    assert_eq!(ps.rejected_data_points, 2);
    assert!(
        ps.error_message
            .starts_with("2 of 3 data points refused: 1 with delta (or unspecified) temporality"),
        "{}",
        ps.error_message
    );
    assert!(
        ps.error_message.contains("1 with exponential histograms"),
        "{}",
        ps.error_message
    );
    let kept = server.series("{job=\"partial-metrics\"}");
    let names: Vec<&str> = kept.iter().map(|l| l["__name__"].as_str()).collect();
    assert_eq!(names, ["kept_gauge"]);

    let older = metrics(
        "partial-metrics",
        vec![gauge("kept_gauge", 41.0, t - 60_000_000_000)],
    );
    let r = post(
        &server,
        otlp,
        "/v1/metrics",
        &[("Content-Type", JSON)],
        older_json(&older).as_bytes(),
        Framing::ContentLength,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["partialSuccess"]["rejectedDataPoints"], "1", "{v}");
    assert_eq!(
        v["partialSuccess"]["errorMessage"],
        "1 of 1 samples refused: 1 with a timestamp older than the newest sample of its series"
    );
    let m = server.metrics_text();
    for (reason, n) in [
        ("delta_temporality", 1.0),
        ("exponential_histogram", 1.0),
        ("out_of_order", 1.0),
    ] {
        let s = format!(
            "lastmile_otlp_refused_items_total{{signal=\"metric_points\",protocol=\"http/{}\",reason=\"{reason}\"}}",
            if reason == "out_of_order" {
                "json"
            } else {
                "protobuf"
            }
        );
        assert_eq!(metric_value(&m, &s), Some(n), "{s}\n{m}");
    }

    server.kill9();
    let store = open_span_store(&server);
    for (byte, stored) in [
        (0xc1, true),
        (0xc2, false),
        (0xc3, true),
        (0xc4, false),
        (0xc5, true),
    ] {
        assert_eq!(
            store.trace(TraceId(id(byte))).unwrap().is_some(),
            stored,
            "trace {byte:02x}"
        );
    }
}

/// The request as OTLP/JSON, written by the generated serde code (hex ids, camelCase).
fn older_json(req: &ExportMetricsServiceRequest) -> String {
    serde_json::to_string(req).unwrap()
}

#[test]
fn grpc_refuses_bad_ids_and_reports_partial_success() {
    use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
    let dir = TestDir::new();
    let mut server = Lastmile::start_with_config(&dir, LIMITS);
    let endpoint = format!("http://{}", server.otlp_grpc);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut client = TraceServiceClient::connect(endpoint).await.expect("connect over gRPC");
        let bad = traces("grpc", vec![span(&id(0xd1), &[1; 8], "fine"), span(&id(0xd2), &[1; 9], "long span id")]);
        let status = client.export(bad).await.expect_err("a 9-byte span id must be refused");
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert_eq!(
            status.message(),
            "resourceSpans[0].scopeSpans[0].spans[1].spanId is 9 bytes long; an OTLP span id is 8 bytes (16 hex digits in OTLP/JSON)"
        );
        let mut client = client.send_compressed(tonic::codec::CompressionEncoding::Gzip);
        let partial = traces("grpc", vec![span(&id(0xd3), &[3; 8], "fine"), span(&[0; 16], &[1; 8], "zero")]);
        let resp = client.export(partial).await.expect("accepted").into_inner();
        let ps = resp.partial_success.expect("partial_success");
        assert_eq!(ps.rejected_spans, 1);
        assert!(ps.error_message.contains("spans[1]"), "{}", ps.error_message);

        // A gzip bomb: 8 MiB of one attribute, a few kB on the wire, over the 4 MiB
        // decompressed limit.
        let mut big = span(&id(0xd4), &[4; 8], "bomb");
        big.attributes.push(kv("payload", &"a".repeat(8 << 20)));
        let status = client
            .export(traces("grpc", vec![big]))
            .await
            .expect_err("a message over the limit must be refused");
        assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
    });
    let m = server.metrics_text();
    assert_eq!(
        metric_value(
            &m,
            "lastmile_otlp_rejected_requests_total{signal=\"spans\",protocol=\"grpc\",reason=\"invalid_id\"}"
        ),
        Some(1.0),
        "{m}"
    );
    server.kill9();
    let store = open_span_store(&server);
    assert!(store.trace(TraceId(id(0xd1))).unwrap().is_none());
    assert!(store.trace(TraceId(id(0xd3))).unwrap().is_some());
    assert!(store.trace(TraceId(id(0xd4))).unwrap().is_none());
}

#[test]
fn relabel_rules_apply_to_otlp_metrics() {
    let dir = TestDir::new();
    let server = Lastmile::start_with_config(
        &dir,
        "metric_relabel_configs:\n  - source_labels: [__name__]\n    regex: 'otlp_debug_.*'\n    action: drop\n  - regex: otel_scope_version\n    action: labeldrop\n",
    );
    let t = now_ns();
    let req = metrics(
        "relabeled",
        vec![
            gauge("otlp.debug.noise", 1.0, t),
            gauge("otlp.kept", 2.0, t),
        ],
    );
    let r = post(
        &server,
        server.otlp_http,
        "/v1/metrics",
        &[("Content-Type", PB)],
        &req.encode_to_vec(),
        Framing::ContentLength,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let series = server.series("{job=\"relabeled\"}");
    assert_eq!(series.len(), 1, "{series:?}");
    assert_eq!(series[0]["__name__"], "otlp_kept");
    assert_eq!(series[0]["otel_scope_name"], "hand");
    assert!(!series[0].contains_key("otel_scope_version"), "{series:?}");
}

/// `inherit.resource_attributes` puts a source's resource attributes on its data: on OTLP
/// metric series (through the target_info sent with them) and on OTLP log streams.
#[test]
fn inherited_resource_attributes_reach_otlp_metrics_and_logs() {
    use lastmile_receivers::otlp::proto::ExportLogsServiceRequest;
    use lastmile_receivers::otlp::proto::logs::{LogRecord, ResourceLogs, ScopeLogs};
    let dir = TestDir::new();
    let server =
        Lastmile::start_with_config(&dir, "inherit:\n  resource_attributes: [service.version]\n");
    let resource = Resource {
        attributes: vec![
            kv("service.name", "inheriting"),
            kv("service.instance.id", "pod-1"),
            kv("service.version", "1.4.2"),
        ],
        ..Default::default()
    };
    let t = now_ns();
    let mut req = metrics("inheriting", vec![gauge("queue.depth", 3.0, t)]);
    req.resource_metrics[0].resource = Some(resource.clone());
    let r = post(
        &server,
        server.otlp_http,
        "/v1/metrics",
        &[("Content-Type", PB)],
        &req.encode_to_vec(),
        Framing::ContentLength,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let series = server.series("{__name__=\"queue_depth\"}");
    assert_eq!(series.len(), 1, "{series:?}");
    assert_eq!(series[0]["service_version"], "1.4.2", "{series:?}");

    let logs = ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(resource),
            scope_logs: vec![ScopeLogs {
                log_records: vec![LogRecord {
                    time_unix_nano: t,
                    body: Some(AnyValue {
                        value: Some(any_value::Value::StringValue("queue drained".into())),
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let r = post(
        &server,
        server.otlp_http,
        "/v1/logs",
        &[("Content-Type", PB)],
        &logs.encode_to_vec(),
        Framing::ContentLength,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let got = log_lines(
        &server,
        r#"{service_name="inheriting", service_version="1.4.2"}"#,
    );
    let lines: Vec<&str> = got.iter().map(|(_, l)| l.as_str()).collect();
    assert_eq!(lines, ["queue drained"], "{got:?}");
}
