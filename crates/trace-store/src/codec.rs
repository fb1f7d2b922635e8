//! Binary form of spans, shared by the WAL records and the block pages.
//!
//! A span is stored apart from its resource and scope (a "group"), which many spans share:
//! the WAL record of a request holds each group once, followed by its spans; a block holds
//! every group once and each span refers to its group by number.
//!
//! Decoding never trusts its input (a damaged WAL or block, or a fuzzer): every length is
//! bounds-checked and nesting of attribute values is limited.

use std::sync::Arc;

use lastmile_model::{
    AttrValue, KeyValue, Resource, ResourceSpans, Scope, ScopeSpans, Span, SpanBatch, SpanEvent,
    SpanId, SpanKind, SpanLink, StatusCode, TraceId,
};
use lastmile_store::codec::{Decoder, put_str, put_uvarint, put_varint};

/// Deepest nesting of array / key-value list attribute values accepted when decoding.
const MAX_DEPTH: u32 = 16;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("malformed span record: {0}")]
pub struct DecodeError(pub &'static str);

type Result<T> = std::result::Result<T, DecodeError>;

fn need<T>(v: Option<T>, what: &'static str) -> Result<T> {
    v.ok_or(DecodeError(what))
}

pub fn put_attrs(out: &mut Vec<u8>, attrs: &[KeyValue]) {
    put_uvarint(out, attrs.len() as u64);
    for kv in attrs {
        put_str(out, &kv.key);
        put_value(out, &kv.value);
    }
}

fn put_value(out: &mut Vec<u8>, v: &AttrValue) {
    match v {
        AttrValue::String(s) => {
            out.push(0);
            put_str(out, s);
        }
        AttrValue::Bool(b) => {
            out.push(1);
            out.push(*b as u8);
        }
        AttrValue::Int(i) => {
            out.push(2);
            put_varint(out, *i);
        }
        AttrValue::Double(d) => {
            out.push(3);
            out.extend_from_slice(&d.to_bits().to_le_bytes());
        }
        AttrValue::Bytes(b) => {
            out.push(4);
            put_uvarint(out, b.len() as u64);
            out.extend_from_slice(b);
        }
        AttrValue::Array(a) => {
            out.push(5);
            put_uvarint(out, a.len() as u64);
            for v in a {
                put_value(out, v);
            }
        }
        AttrValue::KvList(kv) => {
            out.push(6);
            put_attrs(out, kv);
        }
    }
}

/// A count read from input, capped by the bytes left (each item takes at least one byte),
/// so a forged count cannot reserve memory the input could never fill.
fn count(d: &mut Decoder<'_>, what: &'static str) -> Result<usize> {
    let n = need(d.uvarint(), what)?;
    let left = (d.buf.len() - d.pos) as u64;
    if n > left {
        return Err(DecodeError(what));
    }
    Ok(n as usize)
}

pub fn get_attrs(d: &mut Decoder<'_>) -> Result<Vec<KeyValue>> {
    get_attrs_at(d, 0)
}

fn get_attrs_at(d: &mut Decoder<'_>, depth: u32) -> Result<Vec<KeyValue>> {
    let n = count(d, "attribute count")?;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let key = need(d.str(), "attribute key")?.to_owned();
        let value = get_value(d, depth)?;
        out.push(KeyValue { key, value });
    }
    Ok(out)
}

fn get_value(d: &mut Decoder<'_>, depth: u32) -> Result<AttrValue> {
    if depth > MAX_DEPTH {
        return Err(DecodeError("attribute values nested too deep"));
    }
    Ok(match need(d.u8(), "attribute type")? {
        0 => AttrValue::String(need(d.str(), "string value")?.to_owned()),
        1 => AttrValue::Bool(need(d.u8(), "bool value")? != 0),
        2 => AttrValue::Int(need(d.varint(), "int value")?),
        3 => AttrValue::Double(f64::from_bits(need(d.u64_le(), "double value")?)),
        4 => {
            let n = count(d, "bytes length")?;
            AttrValue::Bytes(need(d.bytes(n), "bytes value")?.to_vec())
        }
        5 => {
            let n = count(d, "array length")?;
            let mut a = Vec::with_capacity(n);
            for _ in 0..n {
                a.push(get_value(d, depth + 1)?);
            }
            AttrValue::Array(a)
        }
        6 => AttrValue::KvList(get_attrs_at(d, depth + 1)?),
        _ => return Err(DecodeError("unknown attribute type")),
    })
}

/// Resource and scope of a group of spans.
pub fn put_group(out: &mut Vec<u8>, resource: &Resource, scope: &Scope) {
    put_attrs(out, &resource.attributes);
    put_str(out, &scope.name);
    put_str(out, &scope.version);
    put_attrs(out, &scope.attributes);
}

pub fn get_group(d: &mut Decoder<'_>) -> Result<(Resource, Scope)> {
    let resource = Resource {
        attributes: get_attrs(d)?,
    };
    let scope = Scope {
        name: need(d.str(), "scope name")?.to_owned(),
        version: need(d.str(), "scope version")?.to_owned(),
        attributes: get_attrs(d)?,
    };
    Ok((resource, scope))
}

fn get_trace_id(d: &mut Decoder<'_>) -> Result<TraceId> {
    let b = need(d.bytes(16), "trace id")?;
    TraceId::from_bytes(b).ok_or(DecodeError("zero trace id"))
}

fn get_span_id(d: &mut Decoder<'_>) -> Result<SpanId> {
    let b = need(d.bytes(8), "span id")?;
    SpanId::from_bytes(b).ok_or(DecodeError("zero span id"))
}

pub fn put_span(out: &mut Vec<u8>, s: &Span) {
    out.extend_from_slice(&s.trace_id.0);
    out.extend_from_slice(&s.span_id.0);
    match s.parent_span_id {
        Some(p) => {
            out.push(1);
            out.extend_from_slice(&p.0);
        }
        None => out.push(0),
    }
    put_str(out, &s.trace_state);
    put_str(out, &s.name);
    out.push(s.kind as u8);
    put_uvarint(out, s.start_unix_nano);
    put_uvarint(out, s.duration_nanos());
    put_attrs(out, &s.attributes);
    put_uvarint(out, s.events.len() as u64);
    for e in &s.events {
        // Relative to the span start (usually small); events before it wrap, exactly.
        put_uvarint(out, e.time_unix_nano.wrapping_sub(s.start_unix_nano));
        put_str(out, &e.name);
        put_attrs(out, &e.attributes);
    }
    put_uvarint(out, s.links.len() as u64);
    for l in &s.links {
        out.extend_from_slice(&l.trace_id.0);
        out.extend_from_slice(&l.span_id.0);
        put_str(out, &l.trace_state);
        put_attrs(out, &l.attributes);
    }
    out.push(s.status_code as u8);
    put_str(out, &s.status_message);
}

pub fn get_span(d: &mut Decoder<'_>) -> Result<Span> {
    let trace_id = get_trace_id(d)?;
    let span_id = get_span_id(d)?;
    let parent_span_id = match need(d.u8(), "parent flag")? {
        0 => None,
        1 => Some(get_span_id(d)?),
        _ => return Err(DecodeError("parent flag")),
    };
    let trace_state = need(d.str(), "trace state")?.to_owned();
    let name = need(d.str(), "span name")?.to_owned();
    let kind = SpanKind::from_i32(need(d.u8(), "span kind")? as i32);
    let start_unix_nano = need(d.uvarint(), "start time")?;
    let duration = need(d.uvarint(), "duration")?;
    let end_unix_nano = start_unix_nano
        .checked_add(duration)
        .ok_or(DecodeError("end time"))?;
    let attributes = get_attrs(d)?;
    let n = count(d, "event count")?;
    let mut events = Vec::with_capacity(n);
    for _ in 0..n {
        let rel = need(d.uvarint(), "event time")?;
        events.push(SpanEvent {
            time_unix_nano: start_unix_nano.wrapping_add(rel),
            name: need(d.str(), "event name")?.to_owned(),
            attributes: get_attrs(d)?,
        });
    }
    let n = count(d, "link count")?;
    let mut links = Vec::with_capacity(n);
    for _ in 0..n {
        links.push(SpanLink {
            trace_id: get_trace_id(d)?,
            span_id: get_span_id(d)?,
            trace_state: need(d.str(), "link trace state")?.to_owned(),
            attributes: get_attrs(d)?,
        });
    }
    let status_code = StatusCode::from_i32(need(d.u8(), "status code")? as i32);
    let status_message = need(d.str(), "status message")?.to_owned();
    Ok(Span {
        trace_id,
        span_id,
        parent_span_id,
        trace_state,
        name,
        kind,
        start_unix_nano,
        end_unix_nano,
        attributes,
        events,
        links,
        status_code,
        status_message,
    })
}

/// A whole batch: groups with their spans (the WAL record's payload).
pub fn put_batch(out: &mut Vec<u8>, batch: &SpanBatch) {
    let groups: Vec<(&Resource, &ScopeSpans)> = batch
        .resources
        .iter()
        .flat_map(|r| r.scopes.iter().map(move |s| (&*r.resource, s)))
        .filter(|(_, s)| !s.spans.is_empty())
        .collect();
    put_uvarint(out, groups.len() as u64);
    for (resource, ss) in groups {
        put_group(out, resource, &ss.scope);
        put_uvarint(out, ss.spans.len() as u64);
        for s in &ss.spans {
            put_span(out, s);
        }
    }
}

pub fn get_batch(d: &mut Decoder<'_>) -> Result<SpanBatch> {
    let n = count(d, "group count")?;
    let mut batch = SpanBatch::default();
    for _ in 0..n {
        let (resource, scope) = get_group(d)?;
        let m = count(d, "span count")?;
        let mut spans = Vec::with_capacity(m);
        for _ in 0..m {
            spans.push(get_span(d)?);
        }
        batch.resources.push(ResourceSpans {
            resource: Arc::new(resource),
            scopes: vec![ScopeSpans { scope, spans }],
        });
    }
    Ok(batch)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn sample_span(trace: u8, span: u8, parent: Option<u8>, start: u64) -> Span {
        Span {
            trace_id: TraceId([trace; 16]),
            span_id: SpanId([span; 8]),
            parent_span_id: parent.map(|p| SpanId([p; 8])),
            trace_state: String::new(),
            name: format!("op-{span}"),
            kind: SpanKind::Server,
            start_unix_nano: start,
            end_unix_nano: start + 1_000_000,
            attributes: vec![
                KeyValue::string("http.route", "/api/{id}"),
                KeyValue::new("http.status_code", AttrValue::Int(200)),
                KeyValue::new(
                    "nested",
                    AttrValue::KvList(vec![KeyValue::new(
                        "a",
                        AttrValue::Array(vec![AttrValue::Double(1.5), AttrValue::Bool(true)]),
                    )]),
                ),
            ],
            events: vec![SpanEvent {
                time_unix_nano: start + 10,
                name: "retry".into(),
                attributes: vec![],
            }],
            links: vec![SpanLink {
                trace_id: TraceId([9; 16]),
                span_id: SpanId([9; 8]),
                trace_state: "k=v".into(),
                attributes: vec![],
            }],
            status_code: StatusCode::Error,
            status_message: "boom".into(),
        }
    }

    #[test]
    fn batches_round_trip() {
        let batch = SpanBatch {
            resources: vec![ResourceSpans {
                resource: Arc::new(Resource {
                    attributes: vec![KeyValue::string("service.name", "checkout")],
                }),
                scopes: vec![ScopeSpans {
                    scope: Scope {
                        name: "otel".into(),
                        version: "1".into(),
                        attributes: vec![],
                    },
                    spans: vec![
                        sample_span(1, 1, None, 1_000),
                        sample_span(1, 2, Some(1), 2_000),
                    ],
                }],
            }],
        };
        let mut out = Vec::new();
        put_batch(&mut out, &batch);
        let back = get_batch(&mut Decoder::new(&out)).unwrap();
        assert_eq!(back, batch);
    }

    #[test]
    fn truncated_and_forged_input_is_an_error() {
        let batch = SpanBatch {
            resources: vec![ResourceSpans {
                resource: Arc::new(Resource::default()),
                scopes: vec![ScopeSpans {
                    scope: Scope::default(),
                    spans: vec![sample_span(1, 1, None, 5)],
                }],
            }],
        };
        let mut out = Vec::new();
        put_batch(&mut out, &batch);
        for cut in 0..out.len() {
            assert!(
                get_batch(&mut Decoder::new(&out[..cut])).is_err(),
                "cut {cut}"
            );
        }
        // A count of 2^60 groups in a 10-byte record is refused, not allocated.
        let mut forged = Vec::new();
        put_uvarint(&mut forged, 1 << 60);
        assert!(get_batch(&mut Decoder::new(&forged)).is_err());
        // Deep nesting.
        let mut deep = vec![1u8];
        put_str(&mut deep, "k");
        deep.extend(std::iter::repeat_n([5u8, 1], 100).flatten());
        assert!(get_attrs(&mut Decoder::new(&deep)).is_err());
    }
}
