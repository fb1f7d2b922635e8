use super::*;
use lastmile_model::{Labels, LogBatch, LogEntry, LogStream};

fn sample() -> LogBatch {
    let mut e = LogEntry::new(1_700_000_000_123_456_789, "level=info msg=\"hi\"");
    e.metadata = vec![("trace_id".into(), "4bf92f3577b34da6a3ce929d0e0e4736".into())];
    LogBatch {
        streams: vec![
            LogStream {
                labels: Labels::from_pairs([("job", "api"), ("path", "a\"b\\c\nd é")]),
                entries: vec![e, LogEntry::new(-1_500_000_000, "before 1970")],
            },
            LogStream {
                labels: Labels::from_pairs([("job", "db")]),
                entries: vec![LogEntry::new(0, "")],
            },
        ],
    }
}

fn snappy(b: &[u8]) -> Vec<u8> {
    snap::raw::Encoder::new().compress_vec(b).unwrap()
}

#[test]
fn protobuf_and_json_round_trip() {
    let proto = snappy(&encode_push_proto(&sample()));
    assert_eq!(
        decode_push(PushFormat::Protobuf, &proto, 1 << 20).unwrap(),
        sample()
    );
    let json = encode_push_json(&sample());
    assert_eq!(
        decode_push(PushFormat::Json, &json, 1 << 20).unwrap(),
        sample()
    );
}

#[test]
fn json_as_loki_documents_it() {
    let body = br#"{"streams":[{"stream":{"job":"api","empty":""},"values":[["1700000000000000000","a line"],["1700000000000000001","with metadata",{"trace_id":"abc","user":"u1"}]]}]}"#;
    let b = decode_push(PushFormat::Json, body, 1 << 20).unwrap();
    assert_eq!(b.streams.len(), 1);
    assert_eq!(b.streams[0].labels, Labels::from_pairs([("job", "api")]));
    let e = &b.streams[0].entries;
    assert_eq!(
        (e[0].timestamp_ns, e[0].line.as_str()),
        (1_700_000_000_000_000_000, "a line")
    );
    assert_eq!(
        e[1].metadata,
        vec![
            ("trace_id".to_string(), "abc".to_string()),
            ("user".to_string(), "u1".to_string())
        ]
    );
}

#[test]
fn bad_json_is_refused_with_its_place() {
    let cases: &[(&[u8], &str)] = &[
        (b"{", "invalid JSON"),
        (
            br#"{"streams":[{"stream":{},"values":[]}]}"#,
            "stream 0: a stream needs at least one label",
        ),
        (
            br#"{"streams":[{"stream":{"a":"b"},"values":[["x","l"]]}]}"#,
            "stream 0, entry 0: timestamp \"x\"",
        ),
        (
            br#"{"streams":[{"stream":{"a":"b"},"values":[["1"]]}]}"#,
            "got 1 elements",
        ),
        (
            br#"{"streams":[{"stream":{"a":"b"},"values":[["1","l",{"k":1}]]}]}"#,
            "structured metadata \"k\" must be a string",
        ),
        (
            br#"{"streams":[{"stream":{"a":1},"values":[]}]}"#,
            "label \"a\" must be a string",
        ),
        (
            br#"{"streams":[{"stream":{"a-b":"c"},"values":[]}]}"#,
            "invalid label name \"a-b\"",
        ),
        (
            br#"{"streams":[{"stream":{"a":"b"},"values":[["1",2]]}]}"#,
            "the log line must be a string",
        ),
    ];
    for (body, want) in cases {
        let e = decode_push(PushFormat::Json, body, 1 << 20)
            .unwrap_err()
            .to_string();
        assert!(e.contains(want), "{}: {e}", String::from_utf8_lossy(body));
    }
}

#[test]
fn bad_protobuf_is_refused() {
    let good = encode_push_proto(&sample());
    for cut in [1, good.len() / 2, good.len() - 1] {
        let e = decode_push(PushFormat::Protobuf, &snappy(&good[..cut]), 1 << 20);
        assert!(e.is_err(), "cut at {cut}");
    }
    assert!(matches!(
        decode_push(PushFormat::Protobuf, b"\x05garbage", 100),
        Err(LokiPushError::Decompress(_))
    ));
    let bomb = [0xff, 0xff, 0xff, 0xff, 0x0f];
    assert!(
        decode_push(PushFormat::Protobuf, &bomb, 1 << 20)
            .unwrap_err()
            .is_too_large()
    );
    // Labels that are not a selector.
    let mut bad = sample();
    bad.streams.truncate(1);
    let mut raw = encode_push_proto(&bad);
    let needle = b"{job=";
    let at = raw.windows(needle.len()).position(|w| w == needle).unwrap();
    raw[at + 4] = b'~';
    let e = decode_push(PushFormat::Protobuf, &snappy(&raw), 1 << 20)
        .unwrap_err()
        .to_string();
    assert!(e.contains("stream 0") && e.contains("'='"), "{e}");
}

#[test]
fn label_strings() {
    assert_eq!(
        parse_labels(r#" { a = "1", b_2="x\"y" } "#).unwrap(),
        vec![
            ("a".to_string(), "1".to_string()),
            ("b_2".to_string(), "x\"y".to_string())
        ]
    );
    assert_eq!(parse_labels("{}").unwrap(), vec![]);
    for bad in [
        "",
        "a=\"b\"",
        "{a=\"b\"",
        "{a=b}",
        "{a!=\"b\"}",
        "{a=\"b\"} x",
        "{a=\"\\q\"}",
    ] {
        assert!(parse_labels(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn content_encoding_and_type() {
    use std::io::Write;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&[b'x'; 5000]).unwrap();
    let gz = gz.finish().unwrap();
    assert_eq!(
        decode_content_encoding(Some("gzip"), &gz, 5000)
            .unwrap()
            .len(),
        5000
    );
    assert!(
        decode_content_encoding(Some("gzip"), &gz, 4999)
            .unwrap_err()
            .is_too_large()
    );
    assert!(matches!(
        decode_content_encoding(Some("gzip"), b"nope", 100),
        Err(LokiPushError::Gzip(_))
    ));
    assert!(
        decode_content_encoding(Some("br"), b"", 100)
            .unwrap_err()
            .is_unsupported_media()
    );
    assert_eq!(
        PushFormat::from_content_type(Some("application/json; charset=utf-8")).unwrap(),
        PushFormat::Json
    );
    assert_eq!(
        PushFormat::from_content_type(None).unwrap(),
        PushFormat::Protobuf
    );
    assert!(
        PushFormat::from_content_type(Some("text/plain"))
            .unwrap_err()
            .is_unsupported_media()
    );
}
