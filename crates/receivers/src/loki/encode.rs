//! Push bodies as Loki's clients write them, for tests, benchmarks and forwarding.

use lastmile_model::LogBatch;

use super::labels::format_labels;
use crate::remote_write::protowire::{WIRE_LEN, WIRE_VARINT, Writer};

/// A `logproto.PushRequest` (not compressed; Loki expects it snappy block-compressed).
pub fn encode_push_proto(batch: &LogBatch) -> Vec<u8> {
    let mut out = Vec::new();
    let mut stream_buf = Vec::new();
    let mut entry_buf = Vec::new();
    let mut scratch = Vec::new();
    for s in &batch.streams {
        stream_buf.clear();
        let mut sw = Writer(&mut stream_buf);
        sw.bytes(1, format_labels(&s.labels).as_bytes());
        for e in &s.entries {
            entry_buf.clear();
            let mut ew = Writer(&mut entry_buf);
            scratch.clear();
            {
                let mut tw = Writer(&mut scratch);
                let secs = e.timestamp_ns.div_euclid(1_000_000_000);
                let nanos = e.timestamp_ns.rem_euclid(1_000_000_000);
                if secs != 0 {
                    tw.key(1, WIRE_VARINT);
                    tw.varint(secs as u64);
                }
                if nanos != 0 {
                    tw.key(2, WIRE_VARINT);
                    tw.varint(nanos as u64);
                }
            }
            ew.bytes(1, &scratch);
            ew.bytes(2, e.line.as_bytes());
            for (k, v) in &e.metadata {
                scratch.clear();
                {
                    let mut pw = Writer(&mut scratch);
                    pw.bytes(1, k.as_bytes());
                    pw.bytes(2, v.as_bytes());
                }
                ew.bytes(3, &scratch);
            }
            sw.key(2, WIRE_LEN);
            sw.varint(entry_buf.len() as u64);
            sw.0.extend_from_slice(&entry_buf);
        }
        Writer(&mut out).bytes(1, &stream_buf);
    }
    out
}

/// Loki's JSON push body; metadata, when present, as the third element of a value.
pub fn encode_push_json(batch: &LogBatch) -> Vec<u8> {
    let streams: Vec<serde_json::Value> = batch
        .streams
        .iter()
        .map(|s| {
            let labels: serde_json::Map<String, serde_json::Value> = s
                .labels
                .iter()
                .map(|l| (l.name.to_string(), l.value.into()))
                .collect();
            let values: Vec<serde_json::Value> = s
                .entries
                .iter()
                .map(|e| {
                    let mut v = vec![
                        serde_json::Value::from(e.timestamp_ns.to_string()),
                        serde_json::Value::from(e.line.clone()),
                    ];
                    if !e.metadata.is_empty() {
                        v.push(serde_json::Value::Object(
                            e.metadata
                                .iter()
                                .map(|(k, v)| (k.clone(), v.clone().into()))
                                .collect(),
                        ));
                    }
                    serde_json::Value::Array(v)
                })
                .collect();
            serde_json::json!({"stream": labels, "values": values})
        })
        .collect();
    serde_json::to_vec(&serde_json::json!({ "streams": streams })).unwrap_or_default()
}
