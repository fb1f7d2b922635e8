//! Harnesses for the Loki push decoders.
//!
//! `loki_push_decode`: first byte even = JSON, odd = protobuf (uncompressed); the rest is
//! the body. On success every stream has a valid, sorted, non-empty label set, and the
//! batch re-encodes (both formats) to bytes that decode to the same batch.
//!
//! `loki_push_body`: first byte picks JSON/protobuf (bit 0) and identity/gzip (bit 1);
//! the rest is the HTTP body, decoded as the API does with a 1 MiB limit. Never panics,
//! never returns more than the limit.

use lastmile_model::LogBatch;
use lastmile_receivers::loki::{
    PushFormat, decode_content_encoding, decode_push, encode_push_json, encode_push_proto,
};

const LIMIT: usize = 1 << 20;

pub fn decode(data: &[u8]) {
    let Some((&sel, body)) = data.split_first() else {
        return;
    };
    let result = if sel % 2 == 0 {
        decode_push(PushFormat::Json, body, LIMIT)
    } else {
        // The protobuf path always goes through snappy: compress what the fuzzer made.
        let Ok(c) = snap::raw::Encoder::new().compress_vec(body) else {
            return;
        };
        decode_push(PushFormat::Protobuf, &c, LIMIT)
    };
    if let Ok(batch) = result {
        check(&batch);
    }
}

pub fn body(data: &[u8]) {
    let Some((&sel, body)) = data.split_first() else {
        return;
    };
    let format = if sel & 1 == 0 {
        PushFormat::Json
    } else {
        PushFormat::Protobuf
    };
    let encoding = if sel & 2 == 0 { None } else { Some("gzip") };
    let Ok(raw) = decode_content_encoding(encoding, body, LIMIT) else {
        return;
    };
    assert!(
        raw.len() <= LIMIT,
        "content decoding returned {} bytes",
        raw.len()
    );
    if let Ok(batch) = decode_push(format, &raw, LIMIT) {
        check(&batch);
    }
}

fn check(batch: &LogBatch) {
    for s in &batch.streams {
        assert!(!s.labels.is_empty(), "a stream without labels was accepted");
        let names: Vec<&str> = s.labels.iter().map(|l| l.name).collect();
        assert!(
            names.windows(2).all(|w| w[0] < w[1]),
            "labels not sorted/unique: {names:?}"
        );
        for l in s.labels.iter() {
            assert!(!l.value.is_empty(), "empty label value kept");
            let mut c = l.name.chars();
            assert!(
                c.next()
                    .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                    && c.all(|c| c.is_ascii_alphanumeric() || c == '_'),
                "invalid label name {:?} accepted",
                l.name
            );
        }
    }
    let proto = snap::raw::Encoder::new()
        .compress_vec(&encode_push_proto(batch))
        .expect("snappy");
    let again = decode_push(PushFormat::Protobuf, &proto, usize::MAX)
        .expect("re-encoded protobuf must decode");
    assert_eq!(&again, batch, "protobuf round trip changed the batch");
    let json = encode_push_json(batch);
    let again =
        decode_push(PushFormat::Json, &json, usize::MAX).expect("re-encoded JSON must decode");
    assert_eq!(&again, batch, "JSON round trip changed the batch");
}
