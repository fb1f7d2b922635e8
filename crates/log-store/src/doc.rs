//! A log line as an index document, and back.

use lastmile_model::trace_id::{from_hex, hex_into};
use lastmile_model::{LogEntry, SpanId, TraceId};
use tantivy::TantivyDocument;
use tantivy::schema::{Field, Value};

use crate::codec::{decode_metadata, encode_metadata};
use crate::index::Fields;
use crate::streams::StreamId;

/// `ids_at` value for "this id is not in the line's text".
const NOT_IN_TEXT: u16 = u16::MAX;

/// The document for line `e` of stream `stream`. `scratch` is reused between lines.
pub fn to_doc(
    f: &Fields,
    stream: StreamId,
    e: &LogEntry,
    scratch: &mut Vec<u8>,
) -> TantivyDocument {
    let mut doc = TantivyDocument::new();
    doc.add_text(f.line, &e.line);
    doc.add_u64(f.stream, stream);
    doc.add_i64(f.ts, e.timestamp_ns);
    doc.add_u64(f.len, e.line.len() as u64);
    doc.add_u64(f.flags, u64::from(!e.metadata.is_empty()));
    if let Some(t) = e.trace_id {
        doc.add_bytes(f.trace, &t.0);
    }
    let trace_at = e
        .trace_id
        .map(|t| keep_id(&mut doc, &e.line, &t.0, f.trace_bytes));
    let span_at = e
        .span_id
        .map(|s| keep_id(&mut doc, &e.line, &s.0, f.span_bytes));
    if trace_at.is_some_and(|a| a != NOT_IN_TEXT) || span_at.is_some_and(|a| a != NOT_IN_TEXT) {
        let mut at = [0u8; 4];
        at[..2].copy_from_slice(&trace_at.unwrap_or(NOT_IN_TEXT).to_le_bytes());
        at[2..].copy_from_slice(&span_at.unwrap_or(NOT_IN_TEXT).to_le_bytes());
        doc.add_bytes(f.ids_at, &at);
    }
    if !e.metadata.is_empty() {
        scratch.clear();
        encode_metadata(scratch, &e.metadata);
        doc.add_bytes(f.meta, scratch.as_slice());
    }
    doc
}

/// Where `line` spells `id` in lowercase hex; when it does not (or too far in), the id's
/// bytes go to `bytes_field` instead.
fn keep_id(doc: &mut TantivyDocument, line: &str, id: &[u8], bytes_field: Field) -> u16 {
    let at = offset_in(line, id);
    if at == NOT_IN_TEXT {
        doc.add_bytes(bytes_field, id);
    }
    at
}

/// Where `line` spells `id` (at most 16 bytes) in lowercase hex, if at an offset that fits.
fn offset_in(line: &str, id: &[u8]) -> u16 {
    // On the stack: this runs for every line that has an id.
    let mut spelled = [0u8; 32];
    let n = id.len().min(16);
    hex_into(&id[..n], &mut spelled);
    memchr::memmem::find(line.as_bytes(), &spelled[..2 * n])
        .and_then(|at| u16::try_from(at).ok())
        .filter(|&at| at != NOT_IN_TEXT)
        .unwrap_or(NOT_IN_TEXT)
}

/// An id of `N` bytes: stored in `bytes`, or spelled in `line` at `at`.
fn id_of<const N: usize>(bytes: Option<&[u8]>, line: &str, at: u16) -> Option<[u8; N]> {
    if let Some(id) = bytes.and_then(|b| <[u8; N]>::try_from(b).ok()) {
        return Some(id);
    }
    if at == NOT_IN_TEXT {
        return None;
    }
    let at = usize::from(at);
    let text = line.get(at..at + 2 * N)?;
    from_hex(text)?.try_into().ok()
}

pub fn entry_from_doc(f: &Fields, doc: &TantivyDocument, ts: i64) -> LogEntry {
    let line = doc
        .get_first(f.line)
        .and_then(|v| v.as_str())
        .unwrap_or("")
        .to_owned();
    let metadata = doc
        .get_first(f.meta)
        .and_then(|v| v.as_bytes())
        .and_then(decode_metadata)
        .unwrap_or_default();
    let stored = |field| doc.get_first(field).and_then(|v| v.as_bytes());
    let (trace_at, span_at) =
        stored(f.ids_at)
            .filter(|b| b.len() == 4)
            .map_or((NOT_IN_TEXT, NOT_IN_TEXT), |b| {
                (
                    u16::from_le_bytes([b[0], b[1]]),
                    u16::from_le_bytes([b[2], b[3]]),
                )
            });
    let trace_id = id_of(stored(f.trace_bytes), &line, trace_at).map(TraceId);
    let span_id = id_of(stored(f.span_bytes), &line, span_at).map(SpanId);
    LogEntry {
        timestamp_ns: ts,
        line,
        metadata,
        trace_id,
        span_id,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(e: &LogEntry) -> (LogEntry, TantivyDocument) {
        let (_, f) = crate::index::schema();
        let doc = to_doc(&f, 3, e, &mut Vec::new());
        (entry_from_doc(&f, &doc, e.timestamp_ns), doc)
    }

    #[test]
    fn ids_in_the_text_are_not_stored_twice_and_come_back() {
        let (_, f) = crate::index::schema();
        let trace = TraceId([0xab; 16]);
        let span = SpanId([0x01, 2, 3, 4, 5, 6, 7, 8]);
        let mut e = LogEntry::new(
            7,
            format!(
                "msg=hi trace_id={} span_id={}",
                trace.to_hex(),
                span.to_hex()
            ),
        );
        e.trace_id = Some(trace);
        e.span_id = Some(span);
        let (back, doc) = round_trip(&e);
        assert_eq!(back, e);
        assert!(doc.get_first(f.trace_bytes).is_none());
        assert!(doc.get_first(f.span_bytes).is_none());

        // Not spelled in the text (a UUID form, or no id at all): stored.
        let mut e = LogEntry::new(8, "X-Trace-ID=abababab-abab-abab-abab-abababababab");
        e.trace_id = Some(trace);
        e.span_id = Some(span);
        let (back, doc) = round_trip(&e);
        assert_eq!(back, e);
        assert!(doc.get_first(f.trace_bytes).is_some());
        assert!(doc.get_first(f.ids_at).is_none());

        let mut e = LogEntry::new(9, format!("only the span {}", span.to_hex()));
        e.trace_id = Some(trace);
        e.span_id = Some(span);
        assert_eq!(round_trip(&e).0, e);
    }
}
