//! Binary encodings of the log store: WAL records (a whole pushed batch) and the
//! per-line structured metadata kept in chunks.
//!
//! A WAL record is `[REC_LOG_BATCH][uvarint streams]` then per stream
//! `[uvarint labels][name value]*[uvarint entries]` and per entry
//! `[varint ts][str line][uvarint metadata pairs][name value]*[u8 flags][16 trace?][8 span?]`.
//! Strings are `[uvarint len][bytes]`. Every read is bounds-checked: a torn or corrupt
//! record decodes to `None`, never a panic.

use lastmile_model::{Label, LogBatch, LogEntry, LogStream, SpanId, TraceId};
use lastmile_store::codec::{Decoder, put_str, put_uvarint, put_varint};

/// WAL record type of a pushed batch (the log store's WAL has no other kind).
pub const REC_LOG_BATCH: u8 = 16;

const HAS_TRACE: u8 = 1;
const HAS_SPAN: u8 = 2;

/// Encodes a batch as the body of a WAL record (after the type byte, which
/// `wal::write_frame` writes).
pub fn encode_batch(out: &mut Vec<u8>, batch: &LogBatch) {
    put_uvarint(out, batch.streams.len() as u64);
    for s in &batch.streams {
        put_uvarint(out, s.labels.len() as u64);
        for l in s.labels.iter() {
            put_str(out, l.name);
            put_str(out, l.value);
        }
        put_uvarint(out, s.entries.len() as u64);
        for e in &s.entries {
            put_varint(out, e.timestamp_ns);
            put_str(out, &e.line);
            encode_metadata(out, &e.metadata);
            let flags = if e.trace_id.is_some() { HAS_TRACE } else { 0 }
                | if e.span_id.is_some() { HAS_SPAN } else { 0 };
            out.push(flags);
            if let Some(t) = e.trace_id {
                out.extend_from_slice(&t.0);
            }
            if let Some(s) = e.span_id {
                out.extend_from_slice(&s.0);
            }
        }
    }
}

/// Decodes a WAL record payload: the type byte, then what [`encode_batch`] wrote.
pub fn decode_batch(payload: &[u8]) -> Option<LogBatch> {
    let mut d = Decoder::new(payload);
    if d.u8()? != REC_LOG_BATCH {
        return None;
    }
    let n_streams = d.uvarint()? as usize;
    // Every stream and entry costs at least one byte: a count larger than what is left
    // is corruption, and must not size an allocation.
    let mut streams = Vec::with_capacity(n_streams.min(d.buf.len() - d.pos));
    for _ in 0..n_streams {
        let n_labels = d.uvarint()? as usize;
        let mut labels = Vec::with_capacity(n_labels.min(d.buf.len() - d.pos));
        for _ in 0..n_labels {
            let name = str_of(&mut d)?;
            let value = str_of(&mut d)?;
            labels.push(Label {
                name: name.to_owned(),
                value: value.to_owned(),
            });
        }
        if !labels.windows(2).all(|w| w[0].name < w[1].name)
            || labels.iter().any(|l| l.value.is_empty())
        {
            return None;
        }
        let n_entries = d.uvarint()? as usize;
        let mut entries = Vec::with_capacity(n_entries.min(d.buf.len() - d.pos));
        for _ in 0..n_entries {
            let ts = d.varint()?;
            let line = str_of(&mut d)?.to_owned();
            let metadata = decode_metadata_from(&mut d)?;
            let flags = d.u8()?;
            if flags & !(HAS_TRACE | HAS_SPAN) != 0 {
                return None;
            }
            let trace_id = if flags & HAS_TRACE != 0 {
                Some(TraceId(take::<16>(&mut d)?))
            } else {
                None
            };
            let span_id = if flags & HAS_SPAN != 0 {
                Some(SpanId(take::<8>(&mut d)?))
            } else {
                None
            };
            entries.push(LogEntry {
                timestamp_ns: ts,
                line,
                metadata,
                trace_id,
                span_id,
            });
        }
        streams.push(LogStream {
            labels: lastmile_model::Labels::from_sorted(labels),
            entries,
        });
    }
    if d.pos != d.buf.len() {
        return None;
    }
    Some(LogBatch { streams })
}

/// Structured metadata as stored with each line: `[uvarint n][name value]*`.
pub fn encode_metadata(out: &mut Vec<u8>, metadata: &[(String, String)]) {
    put_uvarint(out, metadata.len() as u64);
    for (k, v) in metadata {
        put_str(out, k);
        put_str(out, v);
    }
}

pub(crate) fn decode_metadata_from(d: &mut Decoder<'_>) -> Option<Vec<(String, String)>> {
    let n = d.uvarint()? as usize;
    let mut out = Vec::with_capacity(n.min(d.buf.len() - d.pos));
    for _ in 0..n {
        let k = str_of(d)?.to_owned();
        let v = str_of(d)?.to_owned();
        out.push((k, v));
    }
    Some(out)
}

fn str_of<'a>(d: &mut Decoder<'a>) -> Option<&'a str> {
    let len = d.uvarint()?;
    let start = d.pos;
    let end = start.checked_add(usize::try_from(len).ok()?)?;
    let bytes = d.buf.get(start..end)?;
    d.pos = end;
    std::str::from_utf8(bytes).ok()
}

fn take<const N: usize>(d: &mut Decoder<'_>) -> Option<[u8; N]> {
    let bytes = d.buf.get(d.pos..d.pos.checked_add(N)?)?;
    d.pos += N;
    bytes.try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use lastmile_model::Labels;

    fn sample() -> LogBatch {
        let mut e = LogEntry::new(-5, "héllo wörld");
        e.metadata = vec![("level".into(), "info".into()), ("k".into(), "".into())];
        e.trace_id = TraceId::parse_any("4bf92f3577b34da6a3ce929d0e0e4736");
        e.span_id = SpanId::parse_any("00f067aa0ba902b7");
        LogBatch {
            streams: vec![
                LogStream {
                    labels: Labels::from_pairs([("job", "api"), ("env", "prod")]),
                    entries: vec![e, LogEntry::new(1_700_000_000_000_000_000, "")],
                },
                LogStream {
                    labels: Labels::from_pairs([("job", "db")]),
                    entries: vec![],
                },
            ],
        }
    }

    #[test]
    fn batch_round_trips() {
        let mut buf = vec![REC_LOG_BATCH];
        encode_batch(&mut buf, &sample());
        assert_eq!(decode_batch(&buf), Some(sample()));
    }

    #[test]
    fn every_truncation_is_refused() {
        let mut buf = vec![REC_LOG_BATCH];
        encode_batch(&mut buf, &sample());
        for n in 0..buf.len() {
            assert_eq!(decode_batch(&buf[..n]), None, "prefix of {n} bytes");
        }
        let mut longer = buf.clone();
        longer.push(0);
        assert_eq!(decode_batch(&longer), None);
    }
}
