//! Loki's JSON push body:
//! `{"streams":[{"stream":{"job":"api"},"values":[["<ns>","line",{"k":"v"}]]}]}`.
//! The optional third element of a value is the line's structured metadata.

use lastmile_model::LogEntry;
use serde::Deserialize;
use serde_json::Value;

use super::{LokiPushError, build_stream};
use lastmile_model::LogBatch;

#[derive(Deserialize)]
struct Push {
    streams: Vec<Stream>,
}

#[derive(Deserialize)]
struct Stream {
    stream: serde_json::Map<String, Value>,
    values: Vec<Vec<Value>>,
}

pub fn decode(body: &[u8]) -> Result<LogBatch, LokiPushError> {
    let push: Push =
        serde_json::from_slice(body).map_err(|e| LokiPushError::Json(e.to_string()))?;
    let mut streams = Vec::with_capacity(push.streams.len());
    for (si, s) in push.streams.into_iter().enumerate() {
        let mut labels = Vec::with_capacity(s.stream.len());
        for (k, v) in s.stream {
            match v {
                Value::String(v) => labels.push((k, v)),
                other => {
                    return Err(LokiPushError::Stream {
                        stream: si,
                        msg: format!("label {k:?} must be a string, got {other}"),
                    });
                }
            }
        }
        let mut entries = Vec::with_capacity(s.values.len());
        for (ei, v) in s.values.into_iter().enumerate() {
            let err = |msg: String| LokiPushError::Entry {
                stream: si,
                entry: ei,
                msg,
            };
            let n = v.len();
            let mut it = v.into_iter();
            let (Some(ts), Some(line), meta, None) = (it.next(), it.next(), it.next(), it.next())
            else {
                return Err(err(format!(
                    "a value is [\"<unix ns>\", \"<line>\"] with optional structured metadata, got {n} elements"
                )));
            };
            let ts = match ts {
                Value::String(s) => s.parse::<i64>().map_err(|_| {
                    err(format!("timestamp {s:?} is not an integer of nanoseconds"))
                })?,
                Value::Number(n) => n.as_i64().ok_or_else(|| {
                    err(format!("timestamp {n} is not an integer of nanoseconds"))
                })?,
                other => {
                    return Err(err(format!(
                        "timestamp must be a string of nanoseconds, got {other}"
                    )));
                }
            };
            let line = match line {
                Value::String(s) => s,
                other => return Err(err(format!("the log line must be a string, got {other}"))),
            };
            let mut entry = LogEntry::new(ts, line);
            match meta {
                None => {}
                Some(Value::Object(m)) => {
                    for (k, v) in m {
                        if k.is_empty() {
                            return Err(err("structured metadata with an empty name".into()));
                        }
                        match v {
                            Value::String(v) => entry.metadata.push((k, v)),
                            other => {
                                return Err(err(format!(
                                    "structured metadata {k:?} must be a string, got {other}"
                                )));
                            }
                        }
                    }
                }
                Some(other) => {
                    return Err(err(format!(
                        "structured metadata must be an object of strings, got {other}"
                    )));
                }
            }
            entries.push(entry);
        }
        streams.push(build_stream(si, labels, entries)?);
    }
    Ok(LogBatch { streams })
}
