//! Valid inputs for every target, made with lastmile's own encoders and writers.
//! `tests/seeds.rs` writes them to `fuzz/seeds/<target>/` (see fuzz/README.md).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use lastmile_model::MetricType;
use lastmile_receivers::remote_write::{
    ContentEncoding, EncodeExemplar, EncodeMetadata, EncodeSeries, decode_write_request,
    encode_write_request,
};
use lastmile_store::StoreMetrics;
use lastmile_store::chunk::ChunkAppender;
use lastmile_store::wal::{FrameIter, Wal, WalSync, list_segments, segment_path};

use crate::remote_write::encoding_byte;
use crate::wal::new_head;
use lastmile_store::codec::put_uvarint;

/// One seed file: target, file name, contents.
pub type Seed = (&'static str, String, Vec<u8>);

fn labels(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect()
}

fn series(pairs: &[(&str, &str)], samples: &[(i64, f64)]) -> EncodeSeries {
    EncodeSeries {
        labels: labels(pairs),
        samples: samples.to_vec(),
        exemplars: Vec::new(),
    }
}

/// A small request: one series, two samples.
pub fn basic_request() -> Vec<u8> {
    encode_write_request(
        &[series(
            &[("__name__", "up"), ("job", "api")],
            &[(1_700_000_000_000, 1.0), (1_700_000_015_000, 1.0)],
        )],
        &[],
    )
}

/// Several series with unsorted and empty-valued labels, special values, exemplars and
/// metadata: most of what the decoder handles.
pub fn full_request() -> Vec<u8> {
    let t0 = 1_700_000_000_000i64;
    let mut requests = series(
        &[
            ("job", "api"),
            ("__name__", "http_requests_total"),
            ("code", "200"),
            ("zone", ""),
        ],
        &(0..8)
            .map(|i| (t0 + i * 15_000, (i * 3) as f64))
            .collect::<Vec<_>>(),
    );
    requests.exemplars.push(EncodeExemplar {
        labels: labels(&[("trace_id", "4bf92f3577b34da6a3ce929d0e0e4736")]),
        t: t0 + 7_000,
        v: 3.0,
    });
    requests.exemplars.push(EncodeExemplar {
        labels: labels(&[
            ("trace_id", "00f067aa0ba902b7"),
            ("span_id", "b7ad6b7169203331"),
        ]),
        t: t0 + 22_000,
        v: 6.0,
    });
    let specials = series(
        &[("__name__", "temperature_celsius"), ("sensor", "ä-1")],
        &[
            (-1, -0.0),
            (0, f64::NAN),
            (1, f64::from_bits(lastmile_model::sample::STALE_NAN_BITS)),
            (2, f64::INFINITY),
            (3, f64::MIN_POSITIVE),
            (1_700_000_100_000, f64::MAX),
        ],
    );
    let empty = series(&[("__name__", "no_samples")], &[]);
    let metadata = [
        EncodeMetadata {
            metric_family_name: "http_requests_total".into(),
            metric_type: MetricType::Counter,
            help: "Requests served.".into(),
            unit: "".into(),
        },
        EncodeMetadata {
            metric_family_name: "temperature_celsius".into(),
            metric_type: MetricType::Gauge,
            help: "".into(),
            unit: "celsius".into(),
        },
    ];
    encode_write_request(&[requests, specials, empty], &metadata)
}

/// A request with fields the decoder skips or only counts: a native histogram, unknown
/// fields of every wire type, a fixed32 and a varint in a label.
pub fn unusual_fields_request() -> Vec<u8> {
    fn key(out: &mut Vec<u8>, field: u64, wire: u64) {
        put_uvarint(out, (field << 3) | wire);
    }
    fn bytes(out: &mut Vec<u8>, field: u64, b: &[u8]) {
        key(out, field, 2);
        put_uvarint(out, b.len() as u64);
        out.extend_from_slice(b);
    }
    let mut label = Vec::new();
    bytes(&mut label, 1, b"__name__");
    key(&mut label, 7, 0);
    put_uvarint(&mut label, 300);
    bytes(&mut label, 2, b"native");
    let mut sample = Vec::new();
    key(&mut sample, 1, 1);
    sample.extend_from_slice(&2.5f64.to_bits().to_le_bytes());
    key(&mut sample, 2, 0);
    put_uvarint(&mut sample, 1_700_000_000_000);
    key(&mut sample, 9, 5);
    sample.extend_from_slice(&[1, 2, 3, 4]);
    let mut ts = Vec::new();
    bytes(&mut ts, 1, &label);
    bytes(&mut ts, 2, &sample);
    bytes(&mut ts, 4, b"\x08\x01\x10\x02"); // a histogram: counted, not stored
    key(&mut ts, 15, 1);
    ts.extend_from_slice(&[0; 8]);
    let mut req = Vec::new();
    bytes(&mut req, 1, &ts);
    key(&mut req, 2, 0); // unknown WriteRequest field
    put_uvarint(&mut req, 1);
    req
}

fn zstd_streamed(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut enc = zstd::stream::write::Encoder::new(&mut out, 3).expect("zstd encoder");
    std::io::Write::write_all(&mut enc, data).expect("in memory");
    enc.finish().expect("in memory");
    out
}

fn body(enc: ContentEncoding, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![encoding_byte(enc)];
    out.extend_from_slice(payload);
    out
}

/// The WAL that a head writes for two realistic requests, read back from disk: series,
/// samples, exemplars and metadata records. `dir` is a scratch directory.
pub fn wal_segment(dir: &Path) -> Vec<u8> {
    let _ = std::fs::remove_dir_all(dir);
    let metrics = Arc::new(StoreMetrics::default());
    let wal = Wal::open(
        dir,
        WalSync::Write {
            interval: Duration::from_secs(60),
        },
        1 << 20,
        metrics,
    )
    .expect("open a scratch WAL");
    let head = new_head();
    let first = full_request();
    let (batch, _) = decode_write_request(&first).expect("valid request");
    head.append(&batch, Some(&wal), i64::MAX).expect("append");
    let t0 = 1_700_000_120_000i64;
    let second = encode_write_request(
        &[
            series(
                &[
                    ("__name__", "http_requests_total"),
                    ("code", "200"),
                    ("job", "api"),
                ],
                &[(t0, 30.0), (t0 + 15_000, 33.0)],
            ),
            series(&[("__name__", "up"), ("job", "db")], &[(t0, 1.0)]),
        ],
        &[],
    );
    let (batch, _) = decode_write_request(&second).expect("valid request");
    head.append(&batch, Some(&wal), i64::MAX).expect("append");
    wal.close();
    let mut data = Vec::new();
    for n in list_segments(dir).expect("list segments") {
        data.extend(std::fs::read(segment_path(dir, n)).expect("read segment"));
    }
    let _ = std::fs::remove_dir_all(dir);
    data
}

fn chunk_seed(samples: &[(i64, f64)]) -> Vec<u8> {
    let mut a = ChunkAppender::new();
    for &(t, v) in samples {
        a.append(t, v);
    }
    let mut out = a.count().to_le_bytes().to_vec();
    out.extend_from_slice(a.bytes());
    out
}

/// A `chunk_decode` input whose bytes, read as a recipe, use every time step and value
/// change the round trip knows.
fn chunk_recipe() -> Vec<u8> {
    let mut out = vec![0, 0];
    out.extend_from_slice(&1_700_000_000_000i64.to_le_bytes());
    out.extend_from_slice(&42.0f64.to_bits().to_le_bytes());
    for ctl in 0u8..=255 {
        out.push(ctl);
        out.extend_from_slice(&[ctl.wrapping_mul(37), 1, 0, 0, 0, 0, 0, 0]);
    }
    out
}

/// Every seed, valid for its target.
pub fn all(scratch: &Path) -> Vec<Seed> {
    let mut seeds: Vec<Seed> = Vec::new();
    seeds.extend(crate::otlp::seeds());
    seeds.push((
        "go_binary",
        "pclntab".into(),
        crate::go_binary::seed_table(),
    ));
    seeds.push((
        "go_binary",
        "buildinfo".into(),
        crate::go_binary::seed_build_info(),
    ));
    let (basic, full, unusual) = (basic_request(), full_request(), unusual_fields_request());
    for (name, req) in [
        ("basic", &basic),
        ("full", &full),
        ("unusual_fields", &unusual),
    ] {
        seeds.push(("remote_write_decode", name.into(), req.clone()));
    }
    let snappy = snap::raw::Encoder::new()
        .compress_vec(&full)
        .expect("snappy");
    seeds.push((
        "remote_write_body",
        "snappy_full".into(),
        body(ContentEncoding::Snappy, &snappy),
    ));
    let zstd_sized = zstd::bulk::compress(&full, 3).expect("zstd");
    seeds.push((
        "remote_write_body",
        "zstd_full".into(),
        body(ContentEncoding::Zstd, &zstd_sized),
    ));
    seeds.push((
        "remote_write_body",
        "zstd_streamed_unusual".into(),
        body(ContentEncoding::Zstd, &zstd_streamed(&unusual)),
    ));
    seeds.push((
        "remote_write_body",
        "identity_basic".into(),
        body(ContentEncoding::Identity, &basic),
    ));

    let segment = wal_segment(scratch);
    seeds.push(("wal_frames", "segment".into(), segment.clone()));
    seeds.push((
        "wal_frames",
        "torn_tail".into(),
        segment[..segment.len() - 3].to_vec(),
    ));
    for (i, frame) in FrameIter::new(&segment).enumerate() {
        let kind = match frame[0] {
            lastmile_store::wal::REC_SERIES => "series",
            lastmile_store::wal::REC_SAMPLES => "samples",
            lastmile_store::wal::REC_EXEMPLARS => "exemplars",
            lastmile_store::wal::REC_METADATA => "metadata",
            _ => "unknown",
        };
        seeds.push(("wal_record", format!("{i:02}_{kind}"), frame.to_vec()));
    }

    let t0 = 1_700_000_000_000i64;
    let regular: Vec<_> = (0..120)
        .map(|i| (t0 + i * 15_000, (i / 10) as f64))
        .collect();
    seeds.push((
        "chunk_decode",
        "regular_scrape".into(),
        chunk_seed(&regular),
    ));
    let jittery: Vec<_> = (0..60i64)
        .map(|i| {
            (
                t0 + i * 15_000 + (i * i * 7919) % 3_000 - 1_500,
                f64::from_bits((i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)),
            )
        })
        .collect();
    seeds.push(("chunk_decode", "jittery".into(), chunk_seed(&jittery)));
    seeds.push(("chunk_decode", "recipe".into(), chunk_recipe()));
    for (name, q) in [
        ("rate", "sum by (job) (rate(req_bucket[5m]))"),
        (
            "histogram",
            "histogram_quantile(0.9, sum by (le) (rate(req_bucket[5m])))",
        ),
        ("matching", "up * on(job) group_left(le) req_bucket"),
        (
            "subquery",
            "max_over_time(deriv(up[5m])[10m:30s] offset 1m)",
        ),
        (
            "functions",
            "label_replace(topk(2, special), \"x\", \"$1\", \"job\", \"(.*)\") or vector(time())",
        ),
    ] {
        seeds.push(("promql_query", name.into(), q.as_bytes().to_vec()));
    }
    // Span records: a few seconds of the demo fleet's traces (nested spans, errors,
    // several resources), encoded as the span store's WAL writes them.
    let (spans, _) = lastmile_receivers::demo_traces::DemoTraces::new(3)
        .generate(1_700_000_000_000, 1_700_000_003_000);
    let mut record = Vec::new();
    lastmile_trace_store::codec::put_batch(&mut record, &spans);
    seeds.push(("span_record", "demo_three_seconds".into(), record));
    // Rules files: every section, and the tests that go with them.
    seeds.push((
        "rules_file",
        "every_section.yml".into(),
        RULES_SEED.as_bytes().to_vec(),
    ));
    seeds.extend(loki_seeds());
    seeds
}

/// A rules file using every section (the README's example, in short).
const RULES_SEED: &str = r#"metric_relabel_configs:
  - source_labels: [__name__]
    regex: debug_.*
    action: drop
  - source_labels: [instance]
    regex: '([^:]+):\d+'
    target_label: host
  - source_labels: [instance]
    target_label: shard
    modulus: 4
    action: hashmod
inherit:
  resource_attributes: [service.version]
  static:
    - source: '{job="api"}'
      labels: {tenant_id: acme}
cardinality:
  max_series: 3
  max_series_per_metric: 2
  metric_budgets: {up: 1}
  deny_labels: [user_id]
  allow_labels: {http_requests_total: [method, path]}
  path_templates:
    - regex: '/orders/[A-Z]+-\d+'
      replacement: '/orders/{order}'
naming:
  mode: reject
  match: '{job="api"}'
  namespaces: [http, up, latency]
  histogram_buckets: {latency_ms: [0.1, 0.5, 1]}
tail_sampling:
  decision_wait: 2s
  max_traces: 10
  policies:
    - name: errors
      status: error
    - name: server-errors
      http_status: 5xx
    - name: slow
      latency_over: 2s
    - name: health
      attributes: {http.route: /healthz}
      keep: 0.001
    - name: rest
      adaptive: {spans_per_second: 10}
log_rules:
  - match: '{app="nginx"}'
    line: healthz
    action: sample
    keep: 0.5
  - action: drop
    line: DEBUG
canary: {fraction: 0.5}
tests:
  - name: host
    series: 'up{instance="db:9100", job="x"}'
    expect: 'up{host="db", instance="db:9100", job="x", shard="0"}'
  - name: errors
    spans: [{name: "GET /", status: error, duration: 5ms, attributes: {code: 500}}]
    expect: keep
    policy: errors
  - name: logs
    log: {stream: '{app="api"}', line: "DEBUG x"}
    expect: drop
"#;

/// Loki push bodies (made with lastmile's encoders) and LogQL queries.
pub fn loki_seeds() -> Vec<Seed> {
    use lastmile_model::{Labels, LogBatch, LogEntry, LogStream};
    use lastmile_receivers::loki::{encode_push_json, encode_push_proto};
    let mut e = LogEntry::new(
        1_700_000_000_123_456_789,
        "level=info msg=\"hi\" trace_id=4bf92f3577b34da6a3ce929d0e0e4736",
    );
    e.metadata = vec![("user".into(), "u1".into())];
    let batch = LogBatch {
        streams: vec![
            LogStream {
                labels: Labels::from_pairs([("job", "api"), ("path", "a\"b")]),
                entries: vec![e, LogEntry::new(-5, "")],
            },
            LogStream {
                labels: Labels::from_pairs([("job", "db")]),
                entries: vec![LogEntry::new(0, "{\"k\":1}")],
            },
        ],
    };
    let json = encode_push_json(&batch);
    let proto = encode_push_proto(&batch);
    let with = |sel: u8, body: &[u8]| {
        let mut v = vec![sel];
        v.extend_from_slice(body);
        v
    };
    let gzip = |b: &[u8]| {
        // A stored (uncompressed) gzip member: header, deflate stored block, CRC, size.
        let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff, 1];
        out.extend_from_slice(&(b.len() as u16).to_le_bytes());
        out.extend_from_slice(&(!(b.len() as u16)).to_le_bytes());
        out.extend_from_slice(b);
        out.extend_from_slice(&crc32(b).to_le_bytes());
        out.extend_from_slice(&(b.len() as u32).to_le_bytes());
        out
    };
    let snappy = snap::raw::Encoder::new()
        .compress_vec(&proto)
        .expect("snappy");
    let mut seeds: Vec<Seed> = vec![
        ("loki_push_decode", "json".into(), with(0, &json)),
        ("loki_push_decode", "proto".into(), with(1, &proto)),
        ("loki_push_body", "json".into(), with(0, &json)),
        ("loki_push_body", "snappy_proto".into(), with(1, &snappy)),
        ("loki_push_body", "gzip_json".into(), with(2, &gzip(&json))),
        (
            "loki_push_body",
            "gzip_snappy_proto".into(),
            with(3, &gzip(&snappy)),
        ),
    ];
    for (name, q) in [
        ("selector", r#"{app="api"} |= "error" != "x" |~ "e.r""#),
        (
            "json",
            r#"{app=~"a.*|web"} | json | status >= 500 or level="info" | keep level"#,
        ),
        (
            "logfmt",
            r#"{env="prod"} | logfmt | dur > 1s and size < 2KB | line_format "{{.level | upper}} {{ default \"-\" .msg }}""#,
        ),
        (
            "metric",
            r#"sum by (app) (rate({env=~".+"} | logfmt | __error__="" [1m] offset 10s))"#,
        ),
        (
            "topk",
            r#"topk(2, bytes_over_time({app="api"} | json user_id="user.id" [5m]))"#,
        ),
    ] {
        seeds.push(("logql_query", name.into(), q.as_bytes().to_vec()));
    }
    seeds
}

/// CRC-32 (IEEE) for the gzip trailer of a seed.
fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}
