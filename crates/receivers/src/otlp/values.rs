//! OTLP `AnyValue`s: into the model's attribute values, and into text the way the
//! OpenTelemetry attribute rules (and Loki and Prometheus, which follow them) print them.

use lastmile_model::trace_id::base64_encode as base64;
use lastmile_model::{AttrValue, KeyValue};

use super::proto::common::{AnyValue, KeyValue as ProtoKeyValue, any_value::Value};

pub fn attr_value(v: Option<AnyValue>) -> AttrValue {
    match v.and_then(|v| v.value) {
        Some(Value::StringValue(s)) => AttrValue::String(s),
        Some(Value::BoolValue(b)) => AttrValue::Bool(b),
        Some(Value::IntValue(i)) => AttrValue::Int(i),
        Some(Value::DoubleValue(d)) => AttrValue::Double(d),
        Some(Value::BytesValue(b)) => AttrValue::Bytes(b),
        Some(Value::ArrayValue(a)) => {
            AttrValue::Array(a.values.into_iter().map(|v| attr_value(Some(v))).collect())
        }
        Some(Value::KvlistValue(kv)) => AttrValue::KvList(key_values(kv.values)),
        // An empty value, or a profiling-only string-table reference.
        Some(Value::StringValueStrindex(_)) | None => AttrValue::String(String::new()),
    }
}

pub fn key_values(kvs: Vec<ProtoKeyValue>) -> Vec<KeyValue> {
    kvs.into_iter()
        .map(|kv| KeyValue {
            key: kv.key,
            value: attr_value(kv.value),
        })
        .collect()
}

/// A value as text: strings as they are, numbers and booleans printed, bytes as base64,
/// arrays and maps as JSON (the OpenTelemetry rule for non-string attribute values).
pub fn any_value_text(v: &AnyValue) -> String {
    match &v.value {
        Some(Value::StringValue(s)) => s.clone(),
        Some(Value::BoolValue(b)) => b.to_string(),
        Some(Value::IntValue(i)) => i.to_string(),
        Some(Value::DoubleValue(d)) => double_text(*d),
        Some(Value::BytesValue(b)) => base64(b),
        Some(Value::ArrayValue(_)) | Some(Value::KvlistValue(_)) => any_value_json(v).to_string(),
        Some(Value::StringValueStrindex(_)) | None => String::new(),
    }
}

/// A value as JSON: maps as objects, arrays as arrays, bytes as base64 strings, non-finite
/// doubles as strings (JSON has no NaN).
pub fn any_value_json(v: &AnyValue) -> serde_json::Value {
    use serde_json::Value as J;
    match &v.value {
        Some(Value::StringValue(s)) => J::String(s.clone()),
        Some(Value::BoolValue(b)) => J::Bool(*b),
        Some(Value::IntValue(i)) => J::from(*i),
        Some(Value::DoubleValue(d)) => {
            serde_json::Number::from_f64(*d).map_or_else(|| J::String(double_text(*d)), J::Number)
        }
        Some(Value::BytesValue(b)) => J::String(base64(b)),
        Some(Value::ArrayValue(a)) => J::Array(a.values.iter().map(any_value_json).collect()),
        Some(Value::KvlistValue(kv)) => J::Object(
            kv.values
                .iter()
                .map(|kv| {
                    (
                        kv.key.clone(),
                        kv.value.as_ref().map_or(J::Null, any_value_json),
                    )
                })
                .collect(),
        ),
        Some(Value::StringValueStrindex(_)) | None => J::Null,
    }
}

/// Shortest text that reads back as the same double; infinities as Prometheus spells them.
pub fn double_text(d: f64) -> String {
    if d.is_nan() {
        "NaN".into()
    } else if d == f64::INFINITY {
        "+Inf".into()
    } else if d == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        d.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::otlp::proto::common::{ArrayValue, KeyValueList};

    fn s(v: &str) -> AnyValue {
        AnyValue {
            value: Some(Value::StringValue(v.into())),
        }
    }

    #[test]
    fn text_forms() {
        assert_eq!(any_value_text(&s("x y")), "x y");
        let int = AnyValue {
            value: Some(Value::IntValue(-42)),
        };
        assert_eq!(any_value_text(&int), "-42");
        let d = |v| AnyValue {
            value: Some(Value::DoubleValue(v)),
        };
        assert_eq!(any_value_text(&d(0.25)), "0.25");
        assert_eq!(any_value_text(&d(1e21)), "1000000000000000000000");
        assert_eq!(any_value_text(&d(f64::INFINITY)), "+Inf");
        let map = AnyValue {
            value: Some(Value::KvlistValue(KeyValueList {
                values: vec![
                    ProtoKeyValue {
                        key: "b".into(),
                        value: Some(int.clone()),
                        ..Default::default()
                    },
                    ProtoKeyValue {
                        key: "a".into(),
                        value: Some(AnyValue {
                            value: Some(Value::ArrayValue(ArrayValue {
                                values: vec![s("x"), d(1.5)],
                            })),
                        }),
                        ..Default::default()
                    },
                ],
            })),
        };
        assert_eq!(any_value_text(&map), r#"{"a":["x",1.5],"b":-42}"#);
    }
}
