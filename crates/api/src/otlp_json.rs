//! Spans as OTLP/JSON (the OTLP specification's JSON mapping: lowerCamelCase fields, ids
//! as hex, 64-bit integers as strings, enums as numbers), the shape Tempo's trace API and
//! OpenTelemetry tooling read.

use lastmile_model::trace_id::base64_encode;
use lastmile_model::{AttrValue, KeyValue, Span, SpanBatch};
use serde_json::{Value, json};

pub fn any_value(v: &AttrValue) -> Value {
    match v {
        AttrValue::String(s) => json!({"stringValue": s}),
        AttrValue::Bool(b) => json!({"boolValue": b}),
        AttrValue::Int(i) => json!({"intValue": i.to_string()}),
        // JSON has no NaN or infinities; OTLP/JSON spells them as strings.
        AttrValue::Double(d) if d.is_finite() => json!({"doubleValue": d}),
        AttrValue::Double(d) => {
            json!({"doubleValue": if d.is_nan() { "NaN" } else if *d > 0.0 { "Infinity" } else { "-Infinity" }})
        }
        AttrValue::Bytes(b) => json!({"bytesValue": base64_encode(b)}),
        AttrValue::Array(a) => {
            json!({"arrayValue": {"values": a.iter().map(any_value).collect::<Vec<_>>()}})
        }
        AttrValue::KvList(kv) => json!({"kvlistValue": {"values": attributes(kv)}}),
    }
}

pub fn attributes(attrs: &[KeyValue]) -> Vec<Value> {
    attrs
        .iter()
        .map(|kv| json!({"key": kv.key, "value": any_value(&kv.value)}))
        .collect()
}

pub fn span(s: &Span) -> Value {
    let mut v = json!({
        "traceId": s.trace_id.to_hex(),
        "spanId": s.span_id.to_hex(),
        "name": s.name,
        "kind": s.kind as u8,
        "startTimeUnixNano": s.start_unix_nano.to_string(),
        "endTimeUnixNano": s.end_unix_nano.to_string(),
        "attributes": attributes(&s.attributes),
        "status": {"code": s.status_code as u8},
    });
    if let Some(p) = s.parent_span_id {
        v["parentSpanId"] = json!(p.to_hex());
    }
    if !s.trace_state.is_empty() {
        v["traceState"] = json!(s.trace_state);
    }
    if !s.status_message.is_empty() {
        v["status"]["message"] = json!(s.status_message);
    }
    if !s.events.is_empty() {
        v["events"] = s
            .events
            .iter()
            .map(|e| {
                json!({
                    "timeUnixNano": e.time_unix_nano.to_string(),
                    "name": e.name,
                    "attributes": attributes(&e.attributes),
                })
            })
            .collect();
    }
    if !s.links.is_empty() {
        v["links"] = s
            .links
            .iter()
            .map(|l| {
                let mut lv = json!({
                    "traceId": l.trace_id.to_hex(),
                    "spanId": l.span_id.to_hex(),
                    "attributes": attributes(&l.attributes),
                });
                if !l.trace_state.is_empty() {
                    lv["traceState"] = json!(l.trace_state);
                }
                lv
            })
            .collect();
    }
    v
}

/// The `resourceSpans` array of a batch.
pub fn resource_spans(batch: &SpanBatch) -> Vec<Value> {
    batch
        .resources
        .iter()
        .map(|r| {
            json!({
                "resource": {"attributes": attributes(&r.resource.attributes)},
                "scopeSpans": r.scopes.iter().map(|s| {
                    let mut scope = json!({"name": s.scope.name});
                    if !s.scope.version.is_empty() {
                        scope["version"] = json!(s.scope.version);
                    }
                    if !s.scope.attributes.is_empty() {
                        scope["attributes"] = json!(attributes(&s.scope.attributes));
                    }
                    json!({"scope": scope, "spans": s.spans.iter().map(span).collect::<Vec<_>>()})
                }).collect::<Vec<_>>(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use lastmile_model::{SpanId, SpanKind, StatusCode, TraceId};

    #[test]
    fn spans_follow_the_otlp_json_mapping() {
        let s = Span {
            trace_id: TraceId([0xab; 16]),
            span_id: SpanId([0x01; 8]),
            parent_span_id: Some(SpanId([0x02; 8])),
            trace_state: String::new(),
            name: "GET /".into(),
            kind: SpanKind::Server,
            start_unix_nano: 1_700_000_000_000_000_001,
            end_unix_nano: 1_700_000_000_000_000_002,
            attributes: vec![
                KeyValue::new("i", AttrValue::Int(i64::MAX)),
                KeyValue::new("d", AttrValue::Double(f64::NAN)),
                KeyValue::new("b", AttrValue::Bytes(vec![1, 2, 3])),
            ],
            events: vec![],
            links: vec![],
            status_code: StatusCode::Error,
            status_message: "boom".into(),
        };
        let v = span(&s);
        assert_eq!(v["traceId"], "abababababababababababababababab");
        assert_eq!(v["parentSpanId"], "0202020202020202");
        assert_eq!(v["kind"], 2);
        assert_eq!(v["startTimeUnixNano"], "1700000000000000001");
        assert_eq!(
            v["attributes"][0]["value"]["intValue"],
            "9223372036854775807"
        );
        assert_eq!(v["attributes"][1]["value"]["doubleValue"], "NaN");
        assert_eq!(v["attributes"][2]["value"]["bytesValue"], "AQID");
        assert_eq!(v["status"], json!({"code": 2, "message": "boom"}));
        assert!(v.get("events").is_none());
    }
}
