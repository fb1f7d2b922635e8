//! OTLP traces → [`SpanBatch`], keeping OTLP's resource → scope → span grouping.

use std::sync::Arc;

use lastmile_model::{
    Resource, ResourceSpans, Scope, ScopeSpans, Span, SpanBatch, SpanEvent, SpanKind, SpanLink,
    StatusCode,
};

use super::OtlpError;
use super::ids::{self, Id};
use super::proto::ExportTraceServiceRequest;
use super::proto::common::InstrumentationScope;
use super::proto::trace as pt;
use super::refusals::{Refusals, RefuseReason};
use super::values::key_values;

/// Converts a decoded request. A span whose own trace or span id is empty or all zeros,
/// or that links to such ids, is refused (counted in the [`Refusals`]); an id of the wrong
/// length anywhere refuses the whole request.
pub fn spans_from_request(
    req: ExportTraceServiceRequest,
) -> Result<(SpanBatch, Refusals), OtlpError> {
    let mut batch = SpanBatch {
        resources: Vec::with_capacity(req.resource_spans.len()),
    };
    let mut refused = Refusals::default();
    for (ri, rs) in req.resource_spans.into_iter().enumerate() {
        let resource = Arc::new(Resource {
            attributes: key_values(rs.resource.map(|r| r.attributes).unwrap_or_default()),
        });
        let mut scopes = Vec::with_capacity(rs.scope_spans.len());
        for (si, ss) in rs.scope_spans.into_iter().enumerate() {
            let mut spans = Vec::with_capacity(ss.spans.len());
            for (pi, span) in ss.spans.into_iter().enumerate() {
                let path = || format!("resourceSpans[{ri}].scopeSpans[{si}].spans[{pi}]");
                match span_from_proto(span, &path)? {
                    Some(s) => spans.push(s),
                    None => refused.add(RefuseReason::InvalidId, 1, path),
                }
            }
            if !spans.is_empty() {
                scopes.push(ScopeSpans {
                    scope: scope_from_proto(ss.scope),
                    spans,
                });
            }
        }
        if !scopes.is_empty() {
            batch.resources.push(ResourceSpans { resource, scopes });
        }
    }
    Ok((batch, refused))
}

pub(super) fn scope_from_proto(s: Option<InstrumentationScope>) -> Scope {
    let s = s.unwrap_or_default();
    Scope {
        name: s.name,
        version: s.version,
        attributes: key_values(s.attributes),
    }
}

/// `Ok(None)`: a span with an empty or all-zero id, to be refused on its own.
fn span_from_proto(s: pt::Span, path: &dyn Fn() -> String) -> Result<Option<Span>, OtlpError> {
    let trace_id = ids::trace_id(&s.trace_id, "traceId", path)?;
    let span_id = ids::span_id(&s.span_id, "spanId", path)?;
    // An empty or all-zero parent means "root span".
    let parent = ids::span_id(&s.parent_span_id, "parentSpanId", path)?.valid();
    let mut links = Vec::with_capacity(s.links.len());
    let mut bad_link = false;
    for (li, l) in s.links.into_iter().enumerate() {
        let lpath = || format!("{}.links[{li}]", path());
        let t = ids::trace_id(&l.trace_id, "traceId", lpath)?;
        let sp = ids::span_id(&l.span_id, "spanId", lpath)?;
        match (t, sp) {
            (Id::Valid(trace_id), Id::Valid(span_id)) => links.push(SpanLink {
                trace_id,
                span_id,
                trace_state: l.trace_state,
                attributes: key_values(l.attributes),
            }),
            _ => bad_link = true,
        }
    }
    let (Id::Valid(trace_id), Id::Valid(span_id)) = (trace_id, span_id) else {
        return Ok(None);
    };
    if bad_link {
        return Ok(None);
    }
    let (status_code, status_message) = match s.status {
        Some(st) => (StatusCode::from_i32(st.code), st.message),
        None => (StatusCode::Unset, String::new()),
    };
    Ok(Some(Span {
        trace_id,
        span_id,
        parent_span_id: parent,
        trace_state: s.trace_state,
        name: s.name,
        kind: SpanKind::from_i32(s.kind),
        start_unix_nano: s.start_time_unix_nano,
        end_unix_nano: s.end_time_unix_nano,
        attributes: key_values(s.attributes),
        events: s
            .events
            .into_iter()
            .map(|e| SpanEvent {
                time_unix_nano: e.time_unix_nano,
                name: e.name,
                attributes: key_values(e.attributes),
            })
            .collect(),
        links,
        status_code,
        status_message,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::otlp::proto::common::{AnyValue, KeyValue, any_value::Value};
    use crate::otlp::proto::resource::Resource as ProtoResource;
    use crate::otlp::{Encoding, decode_request};

    fn kv(k: &str, v: &str) -> KeyValue {
        KeyValue {
            key: k.into(),
            value: Some(AnyValue {
                value: Some(Value::StringValue(v.into())),
            }),
            ..Default::default()
        }
    }

    fn span(trace: &[u8], span: &[u8], name: &str) -> pt::Span {
        pt::Span {
            trace_id: trace.to_vec(),
            span_id: span.to_vec(),
            name: name.into(),
            kind: 2,
            start_time_unix_nano: 1_000,
            end_time_unix_nano: 5_000,
            status: Some(pt::Status {
                code: 2,
                message: "boom".into(),
            }),
            ..Default::default()
        }
    }

    fn request(spans: Vec<pt::Span>) -> ExportTraceServiceRequest {
        ExportTraceServiceRequest {
            resource_spans: vec![pt::ResourceSpans {
                resource: Some(ProtoResource {
                    attributes: vec![kv("service.name", "checkout")],
                    ..Default::default()
                }),
                scope_spans: vec![pt::ScopeSpans {
                    scope: Some(InstrumentationScope {
                        name: "tracer".into(),
                        version: "1.0".into(),
                        ..Default::default()
                    }),
                    spans,
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
    }

    #[test]
    fn spans_keep_their_grouping_and_fields() {
        let (b, refused) =
            spans_from_request(request(vec![span(&[1; 16], &[2; 8], "GET /")])).unwrap();
        assert!(refused.is_empty());
        let (res, scope, s) = b.spans().next().unwrap();
        assert_eq!(res.service_name(), "checkout");
        assert_eq!(
            (scope.name.as_str(), scope.version.as_str()),
            ("tracer", "1.0")
        );
        assert_eq!(s.name, "GET /");
        assert_eq!(s.kind, SpanKind::Server);
        assert_eq!(s.status_code, StatusCode::Error);
        assert_eq!(s.status_message, "boom");
        assert_eq!(s.duration_nanos(), 4_000);
        assert!(s.is_root());
    }

    #[test]
    fn zero_ids_are_refused_alone_and_wrong_lengths_refuse_all() {
        let req = request(vec![
            span(&[1; 16], &[2; 8], "ok"),
            span(&[0; 16], &[2; 8], "zero trace"),
            span(&[1; 16], &[], "no span id"),
        ]);
        let (b, refused) = spans_from_request(req).unwrap();
        assert_eq!(b.span_count(), 1);
        assert_eq!(refused.total(), 2);
        assert!(
            refused
                .message("spans", 3)
                .contains("first at resourceSpans[0].scopeSpans[0].spans[1]"),
            "{}",
            refused.message("spans", 3)
        );

        let req = request(vec![
            span(&[1; 16], &[2; 8], "ok"),
            span(&[1; 2], &[2; 8], "x"),
        ]);
        let e = spans_from_request(req).unwrap_err();
        assert_eq!(
            e.to_string(),
            "resourceSpans[0].scopeSpans[0].spans[1].traceId is 2 bytes long; an OTLP trace id is 16 bytes (32 hex digits in OTLP/JSON)"
        );
    }

    #[test]
    fn otlp_json_with_hex_ids_and_string_integers() {
        let json = r#"{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"api"}}]},
            "scopeSpans":[{"scope":{"name":"t"},"spans":[{"traceId":"5B8EFFF798038103D269B633813FC60C",
            "spanId":"EEE19B7EC3C1B174","parentSpanId":"EEE19B7EC3C1B173","name":"q","kind":3,
            "startTimeUnixNano":"1544712660000000000","endTimeUnixNano":1544712661000000000,
            "attributes":[{"key":"n","value":{"intValue":"7"}}],"unknownField":true}]}]}]}"#;
        let req: ExportTraceServiceRequest =
            decode_request(Encoding::Json, json.as_bytes(), "ExportTraceServiceRequest").unwrap();
        let (b, refused) = spans_from_request(req).unwrap();
        assert!(refused.is_empty());
        let (_, _, s) = b.spans().next().unwrap();
        assert_eq!(s.trace_id.to_hex(), "5b8efff798038103d269b633813fc60c");
        assert_eq!(s.parent_span_id.unwrap().to_hex(), "eee19b7ec3c1b173");
        assert_eq!(s.kind, SpanKind::Client);
        assert_eq!(s.duration_nanos(), 1_000_000_000);
        assert_eq!(s.attr("n").and_then(|v| v.as_i64()), Some(7));

        let short = json.replace("EEE19B7EC3C1B174", "abcd");
        let req: ExportTraceServiceRequest = decode_request(
            Encoding::Json,
            short.as_bytes(),
            "ExportTraceServiceRequest",
        )
        .unwrap();
        assert!(matches!(
            spans_from_request(req),
            Err(OtlpError::IdLength {
                len: 2,
                want: 8,
                ..
            })
        ));
    }
}
