//! OTLP logs → Loki-style streams ([`LogBatch`]), mapped the way Loki's native OTLP
//! ingestion maps them by default:
//!
//! - a fixed list of resource attributes ([`INDEXED_RESOURCE_ATTRIBUTES`]) become stream
//!   labels, with `.` and other invalid characters as `_` (`service.name` → `service_name`);
//!   a resource without `service.name` gets `service_name="unknown_service"`;
//! - every other resource attribute, the scope's name, version and attributes, the record's
//!   attributes, severity, flags and ids become structured metadata (`LogEntry.metadata`;
//!   map values are flattened into `key_subkey` entries);
//! - the body becomes the line: a string as it is, other values as text (maps and arrays
//!   as JSON);
//! - the timestamp is the record's time, else its observed time, else the time received.
//!
//! A record's trace and span ids also go to `LogEntry.trace_id`/`span_id`, so the log store
//! can index them.

use std::collections::HashMap;

use lastmile_model::{Labels, LogBatch, LogEntry, LogStream, SpanId, TraceId};

use super::OtlpError;
use super::ids;
use super::naming::loki_label_name;
use super::proto::ExportLogsServiceRequest;
use super::proto::common::{AnyValue, KeyValue, any_value::Value};
use super::refusals::Refusals;
use super::values::any_value_text;

/// Resource attributes that become stream labels (Loki's default list).
pub const INDEXED_RESOURCE_ATTRIBUTES: &[&str] = &[
    "service.name",
    "service.namespace",
    "service.instance.id",
    "deployment.environment",
    "cloud.region",
    "cloud.availability_zone",
    "k8s.cluster.name",
    "k8s.namespace.name",
    "k8s.pod.name",
    "k8s.container.name",
    "container.name",
    "k8s.replicaset.name",
    "k8s.deployment.name",
    "k8s.statefulset.name",
    "k8s.daemonset.name",
    "k8s.cronjob.name",
    "k8s.job.name",
];

/// Converts a decoded request; `now_ns` stamps records that carry no time at all. An id of
/// the wrong length refuses the whole request; an all-zero id counts as no id.
pub fn logs_from_request(
    req: ExportLogsServiceRequest,
    now_ns: i64,
) -> Result<(LogBatch, Refusals), OtlpError> {
    let mut batch = LogBatch::default();
    let mut stream_index: HashMap<Labels, usize> = HashMap::new();
    for (ri, rl) in req.resource_logs.into_iter().enumerate() {
        let mut labels: Vec<(String, String)> = Vec::new();
        let mut resource_meta: Vec<(String, String)> = Vec::new();
        let mut has_service_name = false;
        for kv in rl.resource.map(|r| r.attributes).unwrap_or_default() {
            if INDEXED_RESOURCE_ATTRIBUTES.contains(&kv.key.as_str()) {
                let value = kv.value.as_ref().map(any_value_text).unwrap_or_default();
                if kv.key == "service.name" && !value.is_empty() {
                    has_service_name = true;
                }
                labels.push((loki_label_name(&kv.key), value));
            } else {
                flatten(&kv, "", &mut resource_meta);
            }
        }
        if !has_service_name {
            labels.push(("service_name".into(), "unknown_service".into()));
        }
        let labels = Labels::from_pairs(labels);
        let stream = *stream_index.entry(labels.clone()).or_insert_with(|| {
            batch.streams.push(LogStream {
                labels,
                entries: Vec::new(),
            });
            batch.streams.len() - 1
        });
        for (si, sl) in rl.scope_logs.into_iter().enumerate() {
            let mut scope_meta: Vec<(String, String)> = Vec::new();
            if let Some(scope) = sl.scope {
                for kv in &scope.attributes {
                    flatten(kv, "", &mut scope_meta);
                }
                if !scope.name.is_empty() {
                    scope_meta.push(("scope_name".into(), scope.name));
                }
                if !scope.version.is_empty() {
                    scope_meta.push(("scope_version".into(), scope.version));
                }
                if scope.dropped_attributes_count != 0 {
                    scope_meta.push((
                        "scope_dropped_attributes_count".into(),
                        scope.dropped_attributes_count.to_string(),
                    ));
                }
            }
            let entries = &mut batch.streams[stream].entries;
            entries.reserve(sl.log_records.len());
            for (li, r) in sl.log_records.into_iter().enumerate() {
                let path = || format!("resourceLogs[{ri}].scopeLogs[{si}].logRecords[{li}]");
                let trace_id: Option<TraceId> =
                    ids::trace_id(&r.trace_id, "traceId", path)?.valid();
                let span_id: Option<SpanId> = ids::span_id(&r.span_id, "spanId", path)?.valid();
                let mut meta = Vec::with_capacity(
                    r.attributes.len() + 6 + resource_meta.len() + scope_meta.len(),
                );
                for kv in &r.attributes {
                    flatten(kv, "", &mut meta);
                }
                if r.time_unix_nano != 0 && r.observed_time_unix_nano != 0 {
                    meta.push((
                        "observed_timestamp".into(),
                        r.observed_time_unix_nano.to_string(),
                    ));
                }
                if r.severity_number != 0 {
                    meta.push(("severity_number".into(), r.severity_number.to_string()));
                }
                if !r.severity_text.is_empty() {
                    meta.push(("severity_text".into(), r.severity_text));
                }
                if r.dropped_attributes_count != 0 {
                    meta.push((
                        "dropped_attributes_count".into(),
                        r.dropped_attributes_count.to_string(),
                    ));
                }
                if r.flags != 0 {
                    meta.push(("flags".into(), r.flags.to_string()));
                }
                if let Some(t) = trace_id {
                    meta.push(("trace_id".into(), t.to_hex()));
                }
                if let Some(s) = span_id {
                    meta.push(("span_id".into(), s.to_hex()));
                }
                meta.extend(resource_meta.iter().cloned());
                meta.extend(scope_meta.iter().cloned());
                let ts = match (r.time_unix_nano, r.observed_time_unix_nano) {
                    (0, 0) => now_ns,
                    (0, observed) => clamp_ns(observed),
                    (t, _) => clamp_ns(t),
                };
                let line = match r.body {
                    Some(AnyValue {
                        value: Some(Value::StringValue(s)),
                    }) => s,
                    Some(v) => any_value_text(&v),
                    None => String::new(),
                };
                entries.push(LogEntry {
                    timestamp_ns: ts,
                    line,
                    metadata: meta,
                    trace_id,
                    span_id,
                });
            }
        }
    }
    batch.streams.retain(|s| !s.entries.is_empty());
    Ok((batch, Refusals::default()))
}

fn clamp_ns(t: u64) -> i64 {
    i64::try_from(t).unwrap_or(i64::MAX)
}

/// One attribute as structured metadata; maps become one entry per leaf, their keys joined
/// with `_` (Loki's rule).
fn flatten(kv: &KeyValue, prefix: &str, out: &mut Vec<(String, String)>) {
    let key = if prefix.is_empty() {
        loki_label_name(&kv.key)
    } else {
        loki_label_name(&format!("{prefix}_{}", kv.key))
    };
    match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
        Some(Value::KvlistValue(list)) => {
            for inner in &list.values {
                flatten(inner, &key, out);
            }
        }
        _ => out.push((
            key,
            kv.value.as_ref().map(any_value_text).unwrap_or_default(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::otlp::proto::common::{InstrumentationScope, KeyValueList};
    use crate::otlp::proto::logs::{LogRecord, ResourceLogs, ScopeLogs};
    use crate::otlp::proto::resource::Resource;

    fn kv(k: &str, v: Value) -> KeyValue {
        KeyValue {
            key: k.into(),
            value: Some(AnyValue { value: Some(v) }),
            ..Default::default()
        }
    }

    fn s(v: &str) -> Value {
        Value::StringValue(v.into())
    }

    fn request(resource: Vec<KeyValue>, records: Vec<LogRecord>) -> ExportLogsServiceRequest {
        ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                resource: Some(Resource {
                    attributes: resource,
                    ..Default::default()
                }),
                scope_logs: vec![ScopeLogs {
                    scope: Some(InstrumentationScope {
                        name: "app.logger".into(),
                        version: "2".into(),
                        ..Default::default()
                    }),
                    log_records: records,
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
    }

    #[test]
    fn resource_attributes_split_into_labels_and_metadata() {
        let rec = LogRecord {
            time_unix_nano: 1_700_000_000_000_000_001,
            observed_time_unix_nano: 1_700_000_000_000_000_002,
            severity_number: 17,
            severity_text: "ERROR".into(),
            body: Some(AnyValue {
                value: Some(s("payment failed")),
            }),
            attributes: vec![
                kv("http.status_code", Value::IntValue(502)),
                kv(
                    "ctx",
                    Value::KvlistValue(KeyValueList {
                        values: vec![kv("user", s("u1"))],
                    }),
                ),
            ],
            trace_id: vec![0xab; 16],
            span_id: vec![0xcd; 8],
            ..Default::default()
        };
        let req = request(
            vec![
                kv("service.name", s("payments")),
                kv("k8s.pod.name", s("payments-7f9")),
                kv("host.name", s("node-1")),
            ],
            vec![rec],
        );
        let (b, _) = logs_from_request(req, 5).unwrap();
        assert_eq!(b.streams.len(), 1);
        let st = &b.streams[0];
        let labels: Vec<_> = st.labels.iter().map(|l| (l.name, l.value)).collect();
        assert_eq!(
            labels,
            [
                ("k8s_pod_name", "payments-7f9"),
                ("service_name", "payments")
            ]
        );
        let e = &st.entries[0];
        assert_eq!(e.line, "payment failed");
        assert_eq!(e.timestamp_ns, 1_700_000_000_000_000_001);
        assert_eq!(e.trace_id.unwrap().to_hex(), "ab".repeat(16));
        assert_eq!(e.span_id.unwrap().to_hex(), "cd".repeat(8));
        let meta: HashMap<&str, &str> = e
            .metadata
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(meta["http_status_code"], "502");
        assert_eq!(meta["ctx_user"], "u1");
        assert_eq!(meta["severity_text"], "ERROR");
        assert_eq!(meta["severity_number"], "17");
        assert_eq!(meta["observed_timestamp"], "1700000000000000002");
        assert_eq!(meta["trace_id"], "ab".repeat(16));
        assert_eq!(meta["host_name"], "node-1");
        assert_eq!(meta["scope_name"], "app.logger");
        assert_eq!(meta["scope_version"], "2");
    }

    #[test]
    fn bodies_times_and_missing_service() {
        let map_body = LogRecord {
            observed_time_unix_nano: 77,
            body: Some(AnyValue {
                value: Some(Value::KvlistValue(KeyValueList {
                    values: vec![kv("msg", s("hi")), kv("n", Value::IntValue(3))],
                })),
            }),
            ..Default::default()
        };
        let no_time = LogRecord {
            body: Some(AnyValue {
                value: Some(Value::IntValue(42)),
            }),
            trace_id: vec![0; 16],
            ..Default::default()
        };
        let (b, _) = logs_from_request(request(vec![], vec![map_body, no_time]), 99).unwrap();
        let st = &b.streams[0];
        assert_eq!(st.labels.get("service_name"), Some("unknown_service"));
        assert_eq!(st.entries[0].line, r#"{"msg":"hi","n":3}"#);
        assert_eq!(st.entries[0].timestamp_ns, 77);
        assert_eq!(st.entries[1].line, "42");
        assert_eq!(st.entries[1].timestamp_ns, 99);
        assert_eq!(st.entries[1].trace_id, None, "an all-zero id is no id");
    }

    #[test]
    fn wrong_id_length_refuses_the_request() {
        let rec = LogRecord {
            span_id: vec![1; 3],
            ..Default::default()
        };
        let e = logs_from_request(request(vec![], vec![rec]), 0).unwrap_err();
        assert_eq!(
            e.to_string(),
            "resourceLogs[0].scopeLogs[0].logRecords[0].spanId is 3 bytes long; an OTLP span id is 8 bytes (16 hex digits in OTLP/JSON)"
        );
    }
}
