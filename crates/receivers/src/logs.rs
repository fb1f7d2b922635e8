//! Trace context in log lines (SPEC C2): finds trace and span ids in a line's JSON or
//! logfmt body, or in its structured metadata, and normalises every spelling (W3C
//! traceparent, B3, UUID, hex, base64) into the canonical ids of
//! [`lastmile_model::LogEntry`].
//!
//! Every log receiver calls [`enrich_batch`] before the batch is stored: Loki push here,
//! OTLP logs for records whose own trace id is empty.

use lastmile_model::{LogBatch, LogEntry, SpanId, TraceId, parse_trace_context};

/// Field names that carry ids, looked up in this order (first valid one wins).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceFields {
    pub trace_id: Vec<String>,
    pub span_id: Vec<String>,
}

pub const DEFAULT_TRACE_ID_FIELDS: &[&str] = &[
    "trace_id",
    "traceId",
    "traceID",
    "trace-id",
    "X-Trace-ID",
    "x-trace-id",
    "traceparent",
    "b3",
    "X-B3-TraceId",
];

pub const DEFAULT_SPAN_ID_FIELDS: &[&str] = &[
    "span_id",
    "spanId",
    "spanID",
    "span-id",
    "X-Span-ID",
    "x-span-id",
    "X-B3-SpanId",
];

impl Default for TraceFields {
    fn default() -> Self {
        TraceFields {
            trace_id: DEFAULT_TRACE_ID_FIELDS
                .iter()
                .map(|s| s.to_string())
                .collect(),
            span_id: DEFAULT_SPAN_ID_FIELDS
                .iter()
                .map(|s| s.to_string())
                .collect(),
        }
    }
}

impl TraceFields {
    fn any_name_in(&self, line: &str) -> bool {
        self.trace_id.iter().any(|n| line.contains(n.as_str()))
    }
}

/// Fills `trace_id`/`span_id` of every entry that has none yet.
pub fn enrich_batch(batch: &mut LogBatch, fields: &TraceFields) {
    for s in &mut batch.streams {
        for e in &mut s.entries {
            enrich_entry(e, fields);
        }
    }
}

/// Fills an entry's ids from its structured metadata, else from its body. Ids the entry
/// already has (OTLP records carry their own) are kept.
pub fn enrich_entry(e: &mut LogEntry, fields: &TraceFields) {
    if e.trace_id.is_some() {
        return;
    }
    let (mut trace, mut span) = (None, None);
    if !e.metadata.is_empty() {
        (trace, span) = find_ids(fields, |name| {
            e.metadata
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        });
    }
    if trace.is_none() && fields.any_name_in(&e.line) {
        (trace, span) = trace_context_in_body(&e.line, fields);
    }
    if let Some(t) = trace {
        e.trace_id = Some(t);
        if e.span_id.is_none() {
            e.span_id = span;
        }
    }
}

/// The ids in a JSON object or logfmt line (top-level fields only).
pub fn trace_context_in_body(
    line: &str,
    fields: &TraceFields,
) -> (Option<TraceId>, Option<SpanId>) {
    let body = line.trim_start();
    if body.starts_with('{') {
        let mut de = serde_json::Deserializer::from_str(body);
        let Ok(found) = serde::de::DeserializeSeed::deserialize(IdFieldsSeed(fields), &mut de)
        else {
            return (None, None);
        };
        if de.end().is_err() {
            return (None, None);
        }
        // The last of duplicate keys wins, as in a parsed object.
        return find_ids(fields, |name| {
            found
                .iter()
                .rev()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        });
    }
    let (pairs, _) = lastmile_model::logfmt::parse(body);
    find_ids(fields, |name| {
        pairs
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.to_string())
    })
}

/// Reads a JSON object keeping only the top-level id fields (string or number values):
/// every line of a JSON log goes through here, and building the whole object cost more
/// than storing the line.
struct IdFieldsSeed<'f>(&'f TraceFields);

impl<'de> serde::de::DeserializeSeed<'de> for IdFieldsSeed<'_> {
    type Value = Vec<(String, String)>;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> serde::de::Visitor<'de> for IdFieldsSeed<'_> {
    type Value = Vec<(String, String)>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::new();
        while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
            let wanted = self
                .0
                .trace_id
                .iter()
                .chain(&self.0.span_id)
                .any(|n| *n == key);
            if !wanted {
                map.next_value::<serde::de::IgnoredAny>()?;
                continue;
            }
            match map.next_value::<serde_json::Value>()? {
                serde_json::Value::String(v) => out.push((key.into_owned(), v)),
                serde_json::Value::Number(n) => out.push((key.into_owned(), n.to_string())),
                _ => {}
            }
        }
        Ok(out)
    }
}

/// An object key, borrowed from the line unless it has escapes.
struct Key<'de>(std::borrow::Cow<'de, str>);

impl<'de> serde::Deserialize<'de> for Key<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(std::borrow::Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(std::borrow::Cow::Owned(v.to_owned())))
            }
        }
        d.deserialize_str(V)
    }
}

fn find_ids(
    fields: &TraceFields,
    get: impl Fn(&str) -> Option<String>,
) -> (Option<TraceId>, Option<SpanId>) {
    let Some((trace, carried_span)) = fields
        .trace_id
        .iter()
        .find_map(|n| get(n).and_then(|v| parse_trace_context(&v)))
    else {
        return (None, None);
    };
    let span = fields
        .span_id
        .iter()
        .find_map(|n| get(n).and_then(|v| SpanId::parse_any(&v)))
        .or(carried_span);
    (Some(trace), span)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

    fn ids(line: &str) -> (Option<String>, Option<String>) {
        let mut e = LogEntry::new(0, line);
        enrich_entry(&mut e, &TraceFields::default());
        (
            e.trace_id.map(|t| t.to_hex()),
            e.span_id.map(|s| s.to_hex()),
        )
    }

    #[test]
    fn json_bodies_are_read_as_objects() {
        let want = Some(HEX.to_string());
        // The last of duplicate keys wins; escaped keys count; only top-level fields.
        assert_eq!(
            ids(&format!(r#"{{"trace_id":"bad","trace_id":"{HEX}"}}"#)).0,
            want
        );
        assert_eq!(ids(&format!(r#"{{"tr\u0061ce_id":"{HEX}"}}"#)).0, want);
        assert_eq!(ids(&format!(r#"{{"ctx":{{"trace_id":"{HEX}"}}}}"#)).0, None);
        // Not one JSON object: no ids.
        assert_eq!(ids(&format!(r#"{{"trace_id":"{HEX}"}} trailing"#)).0, None);
        assert_eq!(ids(&format!(r#"{{"trace_id":"{HEX}""#)).0, None);
    }

    #[test]
    fn json_and_logfmt_bodies_in_every_spelling() {
        let want = Some(HEX.to_string());
        assert_eq!(
            ids(&format!(
                r#"{{"msg":"x","trace_id":"{HEX}","span_id":"00f067aa0ba902b7"}}"#
            )),
            (want.clone(), Some("00f067aa0ba902b7".into()))
        );
        assert_eq!(
            ids(r#"{"X-Trace-ID":"4BF92F35-77B3-4DA6-A3CE-929D0E0E4736"}"#).0,
            want
        );
        assert_eq!(
            ids(
                "level=info traceparent=00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01 msg=\"ok\""
            ),
            (want.clone(), Some("00f067aa0ba902b7".into()))
        );
        assert_eq!(ids("traceId=\"S/kvNXezTaajzpKdDg5HNg==\" msg=hi").0, want);
        assert_eq!(
            ids("b3=a3ce929d0e0e4736-00f067aa0ba902b7-1").0,
            Some("0000000000000000a3ce929d0e0e4736".into())
        );
        // The explicit span field wins over the span a traceparent carries.
        assert_eq!(
            ids("traceparent=00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01 span_id=1111111111111111").1,
            Some("1111111111111111".into())
        );
    }

    #[test]
    fn junk_ids_and_plain_lines_give_nothing() {
        assert_eq!(ids("trace_id=nope msg=x"), (None, None));
        assert_eq!(ids("GET /trace_id/ 200"), (None, None));
        assert_eq!(ids(r#"{"trace_id": 5"#), (None, None));
        assert_eq!(ids("just a line"), (None, None));
    }

    #[test]
    fn metadata_first_and_existing_ids_kept() {
        let mut e = LogEntry::new(0, "trace_id=11111111111111111111111111111111");
        e.metadata = vec![("trace_id".into(), HEX.into())];
        enrich_entry(&mut e, &TraceFields::default());
        assert_eq!(e.trace_id.unwrap().to_hex(), HEX);
        let mut e = LogEntry::new(0, format!("trace_id={HEX}"));
        e.trace_id = Some(TraceId([9; 16]));
        enrich_entry(&mut e, &TraceFields::default());
        assert_eq!(e.trace_id, Some(TraceId([9; 16])));
    }

    #[test]
    fn configured_names_replace_the_defaults() {
        let f = TraceFields {
            trace_id: vec!["rid".into()],
            span_id: vec![],
        };
        let mut e = LogEntry::new(
            0,
            format!("rid={HEX} trace_id=11111111111111111111111111111111"),
        );
        enrich_entry(&mut e, &f);
        assert_eq!(e.trace_id.unwrap().to_hex(), HEX);
    }
}
