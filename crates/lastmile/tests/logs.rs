//! The log path through the real binary: Loki push (JSON, gzip, snappy protobuf) in,
//! the Loki query API out; bad pushes are refused whole with a precise status and leave
//! nothing behind; trace ids found at ingest are indexed.

mod common;

use std::io::Write;

use common::*;
use lastmile_log_store::{LogStore, LogStoreOptions};
use lastmile_model::{Labels, LogBatch, LogEntry, LogStream, TraceId};
use lastmile_receivers::loki::{encode_push_json, encode_push_proto};

const HEX: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

pub fn now_ns() -> i64 {
    now_ms() * 1_000_000
}

fn batch(job: &str, t0: i64, lines: &[&str]) -> LogBatch {
    LogBatch {
        streams: vec![LogStream {
            labels: Labels::from_pairs([("job", job), ("env", "test")]),
            entries: lines
                .iter()
                .enumerate()
                .map(|(i, l)| LogEntry::new(t0 + i as i64 * 1_000_000, *l))
                .collect(),
        }],
    }
}

fn snappy(b: &[u8]) -> Vec<u8> {
    snap::raw::Encoder::new().compress_vec(b).unwrap()
}

fn push(server: &Lastmile, content_type: &str, extra: &[(&str, &str)], body: &[u8]) -> Response {
    let mut h = vec![("Content-Type", content_type)];
    h.extend_from_slice(extra);
    server.post("/loki/api/v1/push", &h, body)
}

#[test]
fn pushed_lines_come_back_through_the_query_api() {
    let dir = TestDir::new();
    let server = Lastmile::start(&dir);
    let t0 = now_ns() - 10_000_000_000;

    // JSON with structured metadata carrying a trace id.
    let mut json_batch = batch("json", t0, &["first json line", "second json line"]);
    json_batch.streams[0].entries[0].metadata = vec![("trace_id".into(), HEX.into())];
    let r = push(
        &server,
        "application/json",
        &[],
        &encode_push_json(&json_batch),
    );
    assert_eq!(r.status, 204, "{}", r.text());

    // gzip-compressed JSON; a trace id in a logfmt body.
    let gz_batch = batch(
        "gzip",
        t0,
        &[&format!(
            "level=info traceparent=00-{HEX}-00f067aa0ba902b7-01 msg=gz"
        )],
    );
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&encode_push_json(&gz_batch)).unwrap();
    let r = push(
        &server,
        "application/json",
        &[("Content-Encoding", "gzip")],
        &gz.finish().unwrap(),
    );
    assert_eq!(r.status, 204, "{}", r.text());

    // Snappy protobuf (what winston-loki and promtail send); a trace id in a JSON body.
    let proto_batch = batch(
        "proto",
        t0,
        &[&format!(r#"{{"msg":"proto","traceId":"{HEX}"}}"#), "plain"],
    );
    let r = push(
        &server,
        "application/x-protobuf",
        &[],
        &snappy(&encode_push_proto(&proto_batch)),
    );
    assert_eq!(r.status, 204, "{}", r.text());

    let got = log_lines(&server, r#"{env="test"}"#);
    let texts: Vec<&str> = got.iter().map(|(_, s)| s.as_str()).collect();
    assert_eq!(texts.len(), 5, "{got:?}");
    for want in ["first json line", "second json line", "plain"] {
        assert!(texts.contains(&want), "{want} missing from {texts:?}");
    }
    // Structured metadata shows among the labels of its line.
    let first = got.iter().find(|(_, s)| s == "first json line").unwrap();
    assert_eq!(first.0.get("trace_id").map(String::as_str), Some(HEX));

    let r = server.get(&format!(
        "/loki/api/v1/query_range?query={}&start={}&end={}",
        enc(r#"{job="proto"} | json | msg="proto""#),
        t0 - 1,
        now_ns() + 1
    ));
    assert_eq!(
        r.json()["data"]["result"].as_array().unwrap().len(),
        1,
        "{}",
        r.text()
    );

    let r = server.get("/loki/api/v1/labels");
    assert_eq!(
        r.json()["data"],
        serde_json::json!(["env", "job"]),
        "{}",
        r.text()
    );
    let r = server.get("/loki/api/v1/label/job/values");
    assert_eq!(
        r.json()["data"],
        serde_json::json!(["gzip", "json", "proto"]),
        "{}",
        r.text()
    );
    let r = server.get(&format!(
        "/loki/api/v1/series?match[]={}",
        enc(r#"{job=~"g.*|p.*"}"#)
    ));
    assert_eq!(
        r.json()["data"].as_array().unwrap().len(),
        2,
        "{}",
        r.text()
    );

    let r = server.get(&format!(
        "/loki/api/v1/query?query={}",
        enc(r#"sum by (job) (count_over_time({env="test"}[1h]))"#)
    ));
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["data"]["resultType"], "vector");
    let mut counts: Vec<(String, String)> = v["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["metric"]["job"].as_str().unwrap().to_string(),
                s["value"][1].as_str().unwrap().to_string(),
            )
        })
        .collect();
    counts.sort();
    assert_eq!(
        counts,
        vec![
            ("gzip".into(), "1".into()),
            ("json".into(), "2".into()),
            ("proto".into(), "2".into())
        ]
    );

    // A range query answers a matrix in Loki's shape.
    let r = server.get(&format!(
        "/loki/api/v1/query_range?query={}&start={}&end={}&step=60",
        enc(r#"count_over_time({job="json"}[10m])"#),
        t0 / 1_000_000_000,
        now_ns() / 1_000_000_000 + 60
    ));
    assert_eq!(r.json()["data"]["resultType"], "matrix", "{}", r.text());
    assert_eq!(
        server.metric(r#"lastmile_loki_push_requests_total{format="protobuf"}"#),
        1.0
    );
    assert_eq!(
        server.metric(r#"lastmile_loki_push_requests_total{format="json"}"#),
        2.0
    );
    assert_eq!(
        server.metric("lastmile_loki_push_lines_received_total"),
        5.0
    );
    assert_eq!(
        server.metric("lastmile_log_store_lines_appended_total"),
        5.0,
        "the log store counts what it stored"
    );

    // Trace ids from metadata, logfmt and JSON bodies are indexed: stop the server and
    // read its store directly.
    let mut server = server;
    server.kill9();
    let store = LogStore::open(&dir.data().join("logs"), LogStoreOptions::default()).unwrap();
    let trace = TraceId::parse_any(HEX).unwrap();
    let traced = store.lines_for_trace(trace, 0, i64::MAX, 100).unwrap();
    let mut texts: Vec<&str> = traced.iter().map(|(_, e)| e.line.as_str()).collect();
    texts.sort();
    assert_eq!(texts.len(), 3, "{texts:?}");
    assert!(texts.contains(&"first json line"), "{texts:?}");
    assert!(
        texts.iter().any(|t| t.starts_with(r#"{"msg":"proto""#)),
        "{texts:?}"
    );
    assert!(
        texts
            .iter()
            .any(|t| t.starts_with("level=info traceparent")),
        "{texts:?}"
    );
    let gz = traced
        .iter()
        .find(|(_, e)| e.line.contains("msg=gz"))
        .unwrap();
    assert_eq!(
        gz.1.span_id.map(|s| s.to_hex()).as_deref(),
        Some("00f067aa0ba902b7")
    );
}

#[test]
fn bad_pushes_are_refused_whole_and_store_nothing() {
    let dir = TestDir::new();
    let server = Lastmile::start_with_config(
        &dir,
        "limits:\n  max_request_bytes: 64KiB\n  max_decompressed_bytes: 256KiB\n",
    );
    let t0 = now_ns() - 5_000_000_000;
    let good = encode_push_json(&batch("bad", t0, &["kept"]));
    assert_eq!(push(&server, "application/json", &[], &good).status, 204);

    let big_line = "x".repeat(300 << 10);
    // (content type, extra headers, body, status, text the answer must contain)
    type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, Vec<u8>, u16, &'a str);
    let cases: Vec<Case> = vec![
        ("application/json", vec![], b"{not json".to_vec(), 400, "invalid JSON"),
        ("application/json", vec![], br#"{"streams":[{"stream":{},"values":[["1","x"]]}]}"#.to_vec(), 400, "at least one label"),
        ("application/json", vec![], format!(r#"{{"streams":[{{"stream":{{"job":"bad"}},"values":[["{t0}","lost"],["yesterday","x"]]}}]}}"#).into_bytes(), 400, "stream 0, entry 1"),
        ("application/x-protobuf", vec![], snappy(b"\x0a\x05\x0a\x03abc"), 400, "stream 0"),
        ("application/x-protobuf", vec![], b"not snappy at all".to_vec(), 400, "snappy"),
        // A snappy header declaring 4 GiB: refused before allocating.
        ("application/x-protobuf", vec![], vec![0xff, 0xff, 0xff, 0xff, 0x0f], 413, "exceeds the limit"),
        ("text/plain", vec![], good.clone(), 415, "Content-Type"),
        ("application/json", vec![("Content-Encoding", "br")], good.clone(), 415, "Content-Encoding"),
        ("application/json", vec![("Content-Encoding", "gzip")], b"not gzip".to_vec(), 400, "gzip"),
        ("application/json", vec![], vec![b' '; 100 << 10], 413, "exceeds the limit"),
        ("application/json", vec![("Content-Encoding", "gzip")], {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
            e.write_all(&encode_push_json(&batch("bad", t0, &[&big_line]))).unwrap();
            e.finish().unwrap()
        }, 413, "exceeds the limit"),
    ];
    for (ct, headers, body, status, msg) in &cases {
        let r = push(&server, ct, headers, body);
        assert_eq!(r.status, *status, "{ct} {headers:?}: {}", r.text());
        assert!(
            r.text().contains(msg),
            "{ct} {headers:?}: want {msg:?} in {:?}",
            r.text()
        );
        assert!(
            r.header("content-type")
                .unwrap_or("")
                .starts_with("text/plain"),
            "{:?}",
            r.headers
        );
    }
    // Chunked bodies over the limit are cut off while reading.
    let r = http_request(
        server.addr,
        "POST",
        "/loki/api/v1/push",
        &[("Content-Type", "application/json")],
        &vec![b' '; 200 << 10],
        Framing::Chunked,
    )
    .unwrap();
    assert_eq!(r.status, 413, "{}", r.text());

    let got = log_lines(&server, r#"{job="bad"}"#);
    assert_eq!(
        got.iter().map(|(_, s)| s.as_str()).collect::<Vec<_>>(),
        vec!["kept"],
        "nothing of a refused push may be stored"
    );
    assert_eq!(
        server.metric(r#"lastmile_loki_push_rejected_requests_total{reason="invalid"}"#),
        6.0
    );
    assert_eq!(
        server.metric(r#"lastmile_loki_push_rejected_requests_total{reason="too_large"}"#),
        4.0
    );
    assert_eq!(
        server.metric(
            r#"lastmile_loki_push_rejected_requests_total{reason="unsupported_media_type"}"#
        ),
        2.0
    );

    // Bad queries get Loki's plain 400s.
    for (q, msg) in [
        ("{job=\"bad\"", "parse error"),
        (
            "{job=~\".*\"}",
            "queries require at least one regexp or equality matcher",
        ),
        ("sum(rate({job=\"bad\"}[1m]))", ""),
    ] {
        let r = server.get(&format!("/loki/api/v1/query?query={}", enc(q)));
        if msg.is_empty() {
            assert_eq!(r.status, 200, "{q}: {}", r.text());
        } else {
            assert_eq!(r.status, 400, "{q}: {}", r.text());
            assert!(r.text().contains(msg), "{q}: {}", r.text());
        }
    }
    for target in [
        "/loki/api/v1/query_range?query=%7Bjob%3D%22bad%22%7D&start=yesterday",
        "/loki/api/v1/query_range?query=%7Bjob%3D%22bad%22%7D&limit=6000",
        "/loki/api/v1/query_range?query=%7Bjob%3D%22bad%22%7D&direction=sideways",
        "/loki/api/v1/query_range?query=count_over_time(%7Bjob%3D%22bad%22%7D%5B1m%5D)&start=0&end=100000&step=1",
        "/loki/api/v1/query_range",
        "/loki/api/v1/series",
    ] {
        let r = server.get(target);
        assert_eq!(r.status, 400, "{target}: {}", r.text());
    }
    let mut server = server;
    assert!(server.is_running(), "the server must survive bad input");
}
