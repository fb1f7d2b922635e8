//! Spans, grouped the way OTLP groups them: resource → instrumentation scope → spans.
//!
//! Receivers decode OTLP (protobuf or JSON) into a [`SpanBatch`]; rules derive span
//! metrics and sample it; the trace store keeps it and answers by trace id. The grouping
//! is kept because resource attributes (service.name, host, version…) are shared by every
//! span of a batch and are stored once per group.

use std::sync::Arc;

use crate::trace_id::{SpanId, TraceId};

/// An attribute value, as OTLP's `AnyValue`.
#[derive(Clone, Debug, PartialEq)]
pub enum AttrValue {
    String(String),
    Bool(bool),
    Int(i64),
    Double(f64),
    Bytes(Vec<u8>),
    Array(Vec<AttrValue>),
    KvList(Vec<KeyValue>),
}

impl AttrValue {
    /// The value as text: strings as they are, numbers and booleans printed, composite
    /// values as JSON-like text. Used for labels, search and display.
    pub fn to_text(&self) -> String {
        match self {
            AttrValue::String(s) => s.clone(),
            AttrValue::Bool(b) => b.to_string(),
            AttrValue::Int(i) => i.to_string(),
            AttrValue::Double(d) => d.to_string(),
            AttrValue::Bytes(b) => crate::trace_id::hex(b),
            AttrValue::Array(a) => {
                let items: Vec<String> = a.iter().map(AttrValue::to_text).collect();
                format!("[{}]", items.join(","))
            }
            AttrValue::KvList(kv) => {
                let items: Vec<String> = kv
                    .iter()
                    .map(|k| format!("{}={}", k.key, k.value.to_text()))
                    .collect();
                format!("{{{}}}", items.join(","))
            }
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            AttrValue::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_i64(&self) -> Option<i64> {
        match self {
            AttrValue::Int(i) => Some(*i),
            AttrValue::String(s) => s.parse().ok(),
            AttrValue::Double(d) if d.fract() == 0.0 => Some(*d as i64),
            _ => None,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct KeyValue {
    pub key: String,
    pub value: AttrValue,
}

impl KeyValue {
    pub fn new(key: impl Into<String>, value: AttrValue) -> Self {
        KeyValue {
            key: key.into(),
            value,
        }
    }

    pub fn string(key: impl Into<String>, value: impl Into<String>) -> Self {
        KeyValue::new(key, AttrValue::String(value.into()))
    }
}

/// Looks up an attribute by key (first match, as OTLP leaves duplicates undefined).
pub fn attr<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a AttrValue> {
    attrs.iter().find(|kv| kv.key == key).map(|kv| &kv.value)
}

/// The resource attribute that names the service (OpenTelemetry semantic conventions).
pub const SERVICE_NAME: &str = "service.name";

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Resource {
    pub attributes: Vec<KeyValue>,
}

impl Resource {
    /// `service.name`, or OpenTelemetry's default for an unnamed service.
    pub fn service_name(&self) -> &str {
        attr(&self.attributes, SERVICE_NAME)
            .and_then(AttrValue::as_str)
            .unwrap_or("unknown_service")
    }
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Scope {
    pub name: String,
    pub version: String,
    pub attributes: Vec<KeyValue>,
}

/// OTLP's `SpanKind`, same numbering.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum SpanKind {
    #[default]
    Unspecified = 0,
    Internal = 1,
    Server = 2,
    Client = 3,
    Producer = 4,
    Consumer = 5,
}

impl SpanKind {
    pub fn from_i32(v: i32) -> SpanKind {
        match v {
            1 => SpanKind::Internal,
            2 => SpanKind::Server,
            3 => SpanKind::Client,
            4 => SpanKind::Producer,
            5 => SpanKind::Consumer,
            _ => SpanKind::Unspecified,
        }
    }

    /// The OTLP/JSON enum name, e.g. `SPAN_KIND_SERVER`.
    pub fn otlp_name(self) -> &'static str {
        match self {
            SpanKind::Unspecified => "SPAN_KIND_UNSPECIFIED",
            SpanKind::Internal => "SPAN_KIND_INTERNAL",
            SpanKind::Server => "SPAN_KIND_SERVER",
            SpanKind::Client => "SPAN_KIND_CLIENT",
            SpanKind::Producer => "SPAN_KIND_PRODUCER",
            SpanKind::Consumer => "SPAN_KIND_CONSUMER",
        }
    }
}

/// OTLP's `Status.code`, same numbering.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum StatusCode {
    #[default]
    Unset = 0,
    Ok = 1,
    Error = 2,
}

impl StatusCode {
    pub fn from_i32(v: i32) -> StatusCode {
        match v {
            1 => StatusCode::Ok,
            2 => StatusCode::Error,
            _ => StatusCode::Unset,
        }
    }

    pub fn otlp_name(self) -> &'static str {
        match self {
            StatusCode::Unset => "STATUS_CODE_UNSET",
            StatusCode::Ok => "STATUS_CODE_OK",
            StatusCode::Error => "STATUS_CODE_ERROR",
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct SpanEvent {
    pub time_unix_nano: u64,
    pub name: String,
    pub attributes: Vec<KeyValue>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct SpanLink {
    pub trace_id: TraceId,
    pub span_id: SpanId,
    pub trace_state: String,
    pub attributes: Vec<KeyValue>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Span {
    pub trace_id: TraceId,
    pub span_id: SpanId,
    pub parent_span_id: Option<SpanId>,
    pub trace_state: String,
    pub name: String,
    pub kind: SpanKind,
    pub start_unix_nano: u64,
    pub end_unix_nano: u64,
    pub attributes: Vec<KeyValue>,
    pub events: Vec<SpanEvent>,
    pub links: Vec<SpanLink>,
    pub status_code: StatusCode,
    pub status_message: String,
}

impl Span {
    pub fn duration_nanos(&self) -> u64 {
        self.end_unix_nano.saturating_sub(self.start_unix_nano)
    }

    pub fn is_root(&self) -> bool {
        self.parent_span_id.is_none()
    }

    pub fn attr(&self, key: &str) -> Option<&AttrValue> {
        attr(&self.attributes, key)
    }
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct ScopeSpans {
    pub scope: Scope,
    pub spans: Vec<Span>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct ResourceSpans {
    pub resource: Arc<Resource>,
    pub scopes: Vec<ScopeSpans>,
}

/// Spans of one request (or one trace, when read back).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SpanBatch {
    pub resources: Vec<ResourceSpans>,
}

impl SpanBatch {
    pub fn span_count(&self) -> usize {
        self.resources
            .iter()
            .flat_map(|r| &r.scopes)
            .map(|s| s.spans.len())
            .sum()
    }

    /// Every span with its resource and scope.
    pub fn spans(&self) -> impl Iterator<Item = (&Resource, &Scope, &Span)> {
        self.resources.iter().flat_map(|r| {
            r.scopes
                .iter()
                .flat_map(move |s| s.spans.iter().map(move |sp| (&*r.resource, &s.scope, sp)))
        })
    }

    pub fn is_empty(&self) -> bool {
        self.span_count() == 0
    }
}
