//! Loki's protobuf push body (`logproto.PushRequest`, after snappy), read with the same
//! hand-written wire reader as remote write (no generated code, no dependency). Fields:
//! PushRequest{1: streams}; StreamAdapter{1: labels (string), 2: entries, 3: hash};
//! EntryAdapter{1: timestamp, 2: line, 3: structuredMetadata, 4: parsed};
//! google.protobuf.Timestamp{1: seconds, 2: nanos}; LabelPairAdapter{1: name, 2: value}.

use lastmile_model::{LogBatch, LogEntry};

use super::{LokiPushError, build_stream, labels::parse_labels};
use crate::remote_write::DecodeError;
use crate::remote_write::protowire::{Reader, WIRE_LEN, WIRE_VARINT};

pub fn decode(buf: &[u8]) -> Result<LogBatch, LokiPushError> {
    let mut r = Reader::new(buf);
    let mut streams = Vec::new();
    while !r.is_empty() {
        let (field, wire) = r.key()?;
        if field == 1 {
            r.expect_wire(wire, WIRE_LEN, "PushRequest.streams")?;
            let sub = r.sub()?;
            let si = streams.len();
            streams.push(decode_stream(si, sub)?);
        } else {
            r.skip(wire)?;
        }
    }
    Ok(LogBatch { streams })
}

fn decode_stream(si: usize, mut r: Reader<'_>) -> Result<lastmile_model::LogStream, LokiPushError> {
    let mut labels_text: Option<&str> = None;
    let mut entries = Vec::new();
    while !r.is_empty() {
        let (field, wire) = r.key()?;
        match field {
            1 => {
                r.expect_wire(wire, WIRE_LEN, "StreamAdapter.labels")?;
                labels_text = Some(r.str("StreamAdapter.labels")?);
            }
            2 => {
                r.expect_wire(wire, WIRE_LEN, "StreamAdapter.entries")?;
                let sub = r.sub()?;
                let ei = entries.len();
                entries.push(decode_entry(sub).map_err(|e| match e {
                    EntryError::Wire(d) => LokiPushError::Proto(d),
                    EntryError::Invalid(msg) => LokiPushError::Entry {
                        stream: si,
                        entry: ei,
                        msg,
                    },
                })?);
            }
            _ => r.skip(wire)?,
        }
    }
    let text = labels_text.unwrap_or("");
    let labels = parse_labels(text).map_err(|msg| LokiPushError::Stream { stream: si, msg })?;
    build_stream(si, labels, entries)
}

enum EntryError {
    Wire(DecodeError),
    Invalid(String),
}

impl From<DecodeError> for EntryError {
    fn from(e: DecodeError) -> Self {
        EntryError::Wire(e)
    }
}

fn decode_entry(mut r: Reader<'_>) -> Result<LogEntry, EntryError> {
    let mut entry = LogEntry::new(0, String::new());
    let mut have_ts = false;
    while !r.is_empty() {
        let (field, wire) = r.key()?;
        match field {
            1 => {
                r.expect_wire(wire, WIRE_LEN, "EntryAdapter.timestamp")?;
                entry.timestamp_ns = decode_timestamp(r.sub()?)?;
                have_ts = true;
            }
            2 => {
                r.expect_wire(wire, WIRE_LEN, "EntryAdapter.line")?;
                entry.line = r.str("EntryAdapter.line")?.to_owned();
            }
            3 => {
                r.expect_wire(wire, WIRE_LEN, "EntryAdapter.structuredMetadata")?;
                let mut p = r.sub()?;
                let (mut name, mut value) = ("", "");
                while !p.is_empty() {
                    let (f, w) = p.key()?;
                    match f {
                        1 => {
                            p.expect_wire(w, WIRE_LEN, "LabelPairAdapter.name")?;
                            name = p.str("LabelPairAdapter.name")?;
                        }
                        2 => {
                            p.expect_wire(w, WIRE_LEN, "LabelPairAdapter.value")?;
                            value = p.str("LabelPairAdapter.value")?;
                        }
                        _ => p.skip(w)?,
                    }
                }
                if name.is_empty() {
                    return Err(EntryError::Invalid(
                        "structured metadata with an empty name".into(),
                    ));
                }
                entry.metadata.push((name.to_owned(), value.to_owned()));
            }
            _ => r.skip(wire)?,
        }
    }
    if !have_ts {
        return Err(EntryError::Invalid("entry without a timestamp".into()));
    }
    Ok(entry)
}

fn decode_timestamp(mut r: Reader<'_>) -> Result<i64, EntryError> {
    let (mut secs, mut nanos) = (0i64, 0i64);
    while !r.is_empty() {
        let (field, wire) = r.key()?;
        match field {
            1 => {
                r.expect_wire(wire, WIRE_VARINT, "Timestamp.seconds")?;
                secs = r.varint()? as i64;
            }
            2 => {
                r.expect_wire(wire, WIRE_VARINT, "Timestamp.nanos")?;
                nanos = r.varint()? as i64;
            }
            _ => r.skip(wire)?,
        }
    }
    if !(0..1_000_000_000).contains(&nanos) {
        return Err(EntryError::Invalid(format!(
            "timestamp nanos {nanos} out of range [0, 999999999]"
        )));
    }
    i64::try_from(secs as i128 * 1_000_000_000 + nanos as i128).map_err(|_| {
        EntryError::Invalid(format!(
            "timestamp of {secs} seconds is out of the range of nanosecond timestamps"
        ))
    })
}
