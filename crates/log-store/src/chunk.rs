//! A chunk: consecutive lines of one stream in time order, stored as one index document.
//!
//! Lines of a stream look alike, so compressing many of them together pays far more than
//! compressing each (or a doc-store block of mixed streams); indexing a chunk's distinct
//! terms once, instead of every line's, shrinks the postings and the indexing work.
//!
//! ```text
//! [u8 version][uvarint lines] then five sections, each
//! [uvarint bytes][uvarint zstd bytes][zstd frame]:
//! head:  per line [varint ts − previous ts][uvarint line length][u8 flags]
//! ids:   per line, as its flags say: trace id (uvarint: which of the text's hex runs
//!        spells it, else 16 bytes), span id (likewise, 8 bytes), metadata
//! text:  the lines' templates, numbers and hex runs (three sections, see
//!        [`crate::template`])
//! ```
//!
//! The head is separate so that reads needing only timestamps and sizes (metric queries)
//! do not decompress the text. Random ids do not compress; most lines spell theirs, so a
//! reference to that spelling stands for them.

use std::ops::Range;

use lastmile_model::trace_id::{from_hex, hex_into};
use lastmile_model::{LogEntry, SpanId, TraceId};
use lastmile_store::codec::{Decoder, put_uvarint, put_varint};

use crate::codec::{decode_metadata_from, encode_metadata};
use crate::template;

const VERSION: u8 = 1;

/// Far above any chunk the store writes (it cuts them at a few MiB): a larger stated size
/// is damage, and must not size an allocation.
const MAX_SECTION_BYTES: usize = 1 << 30;

const HAS_TRACE: u8 = 1;
const TRACE_IN_TEXT: u8 = 2;
const HAS_SPAN: u8 = 4;
const SPAN_IN_TEXT: u8 = 8;
const HAS_METADATA: u8 = 16;

/// Encodes `lines` (one stream's, oldest first) into `out`.
pub fn encode(lines: &[&LogEntry], zstd_level: i32, out: &mut Vec<u8>) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(lines.len() * 4);
    let mut body = Vec::with_capacity(lines.len() * 4);
    let text = template::encode(lines.iter().map(|e| e.line.as_str()));
    let mut prev = 0i64;
    for (i, e) in lines.iter().enumerate() {
        put_varint(&mut head, e.timestamp_ns.wrapping_sub(prev));
        prev = e.timestamp_ns;
        put_uvarint(&mut head, e.line.len() as u64);
        let mut flags = 0;
        if let Some(t) = e.trace_id {
            flags |= HAS_TRACE | put_id(&mut body, &text, i, &t.0, TRACE_IN_TEXT);
        }
        if let Some(s) = e.span_id {
            flags |= HAS_SPAN | put_id(&mut body, &text, i, &s.0, SPAN_IN_TEXT);
        }
        if !e.metadata.is_empty() {
            flags |= HAS_METADATA;
            encode_metadata(&mut body, &e.metadata);
        }
        head.push(flags);
    }
    out.push(VERSION);
    put_uvarint(out, lines.len() as u64);
    for part in [&head, &body, &text.templates, &text.numbers, &text.hex] {
        let z = zstd::bulk::compress(part, zstd_level)?;
        put_uvarint(out, part.len() as u64);
        put_uvarint(out, z.len() as u64);
        out.extend_from_slice(&z);
    }
    Ok(())
}

/// Writes which of `line`'s hex runs spells `id` (returning `in_text`), or the id's
/// bytes. The run's ordinal, unlike its byte offset, is the same on every line of a
/// log statement, so it compresses to almost nothing.
fn put_id(body: &mut Vec<u8>, text: &template::Parts, line: usize, id: &[u8], in_text: u8) -> u8 {
    match text.hex_run_of(line, id) {
        Some(k) => {
            put_uvarint(body, k as u64);
            in_text
        }
        None => {
            body.extend_from_slice(id);
            0
        }
    }
}

/// A chunk's timestamps, line lengths and flags.
pub struct Head {
    pub ts: Vec<i64>,
    pub lens: Vec<u32>,
    flags: Vec<u8>,
}

impl Head {
    pub fn len(&self) -> usize {
        self.ts.len()
    }
}

/// Where one line's parts sit in the decompressed body. Ids are resolved when asked for
/// (most reads never look at them).
#[derive(Clone)]
struct LineAt {
    text: Range<usize>,
    trace: Option<StoredId<16>>,
    span: Option<StoredId<8>>,
    metadata: Option<Range<usize>>,
}

/// A decoded chunk: entries are built on demand.
pub struct Chunk {
    pub head: Head,
    body: Vec<u8>,
    lines: Vec<LineAt>,
}

/// Why a stored chunk could not be read.
pub type Corrupt = &'static str;

/// Decodes the head only; the body stays compressed.
pub fn decode_head(blob: &[u8]) -> Result<Head, Corrupt> {
    let mut d = Decoder::new(blob);
    decode_head_from(&mut d)
}

fn decode_head_from(d: &mut Decoder<'_>) -> Result<Head, Corrupt> {
    if d.u8() != Some(VERSION) {
        return Err("unknown chunk version");
    }
    let n = d.uvarint().ok_or("truncated chunk")? as usize;
    let raw = section(d)?;
    let mut h = Decoder::new(&raw);
    let mut head = Head {
        ts: Vec::with_capacity(n.min(raw.len())),
        lens: Vec::with_capacity(n.min(raw.len())),
        flags: Vec::with_capacity(n.min(raw.len())),
    };
    let mut prev = 0i64;
    for _ in 0..n {
        prev = prev.wrapping_add(h.varint().ok_or("truncated chunk head")?);
        head.ts.push(prev);
        let len = h.uvarint().ok_or("truncated chunk head")?;
        head.lens
            .push(u32::try_from(len).map_err(|_| "line length out of range")?);
        head.flags.push(h.u8().ok_or("truncated chunk head")?);
    }
    Ok(head)
}

/// One zstd section: `[uvarint raw][uvarint compressed][bytes]`.
fn section(d: &mut Decoder<'_>) -> Result<Vec<u8>, Corrupt> {
    let raw = d.uvarint().ok_or("truncated chunk")? as usize;
    if raw > MAX_SECTION_BYTES {
        return Err("chunk section too large");
    }
    let z = d.uvarint().ok_or("truncated chunk")? as usize;
    let bytes = d.bytes(z).ok_or("truncated chunk")?;
    // The stated size bounds the allocation; a frame claiming more than it holds fails.
    let out = zstd::bulk::decompress(bytes, raw).map_err(|_| "chunk does not decompress")?;
    if out.len() != raw {
        return Err("chunk section has the wrong size");
    }
    Ok(out)
}

/// Decodes the whole chunk.
pub fn decode(blob: &[u8]) -> Result<Chunk, Corrupt> {
    let mut d = Decoder::new(blob);
    let head = decode_head_from(&mut d)?;
    let mut body = section(&mut d)?;
    let mut b = Decoder::new(&body);
    let mut lines = Vec::with_capacity(head.len());
    let mut ids = Vec::with_capacity(head.len());
    for &flags in &head.flags {
        let trace = read_id::<16>(&mut b, flags, HAS_TRACE, TRACE_IN_TEXT)?;
        let span = read_id::<8>(&mut b, flags, HAS_SPAN, SPAN_IN_TEXT)?;
        let metadata = if flags & HAS_METADATA != 0 {
            let start = b.pos;
            decode_metadata_from(&mut b).ok_or("bad metadata in chunk")?;
            Some(start..b.pos)
        } else {
            None
        };
        ids.push((trace, span, metadata));
    }
    if b.pos != body.len() {
        return Err("chunk ids have trailing bytes");
    }
    let mut at = body.len();
    let templates = section(&mut d)?;
    let numbers = section(&mut d)?;
    let hex = section(&mut d)?;
    template::decode(&templates, &numbers, &hex, head.len(), &mut body)
        .ok_or("chunk text does not decode")?;
    // One check of the whole text, then each line must start on a character boundary.
    let whole = std::str::from_utf8(&body[at..]).map_err(|_| "chunk text is not UTF-8")?;
    let text_start = at;
    for (&len, (trace, span, metadata)) in head.lens.iter().zip(ids) {
        let text = at..at + len as usize;
        if text.end > body.len() || !whole.is_char_boundary(text.end - text_start) {
            return Err("chunk text is short or splits a character");
        }
        lines.push(LineAt {
            trace,
            span,
            text,
            metadata,
        });
        at += len as usize;
    }
    if at != body.len() || d.pos != d.buf.len() {
        return Err("chunk text has the wrong size");
    }
    Ok(Chunk { head, body, lines })
}

/// An id as stored: its bytes, or where the line spells it.
#[derive(Clone, Copy)]
enum StoredId<const N: usize> {
    Bytes([u8; N]),
    /// The k-th hex run of the line's text.
    Run(usize),
}

impl<const N: usize> StoredId<N> {
    /// The id; `None` when the reference does not point at one (damage).
    fn resolve(self, line: &[u8]) -> Option<[u8; N]> {
        match self {
            StoredId::Bytes(b) => Some(b),
            StoredId::Run(k) => template::hex_runs(line)
                .nth(k)
                .filter(|run| run.len() == 2 * N)
                .and_then(|t| std::str::from_utf8(t).ok())
                .and_then(from_hex)
                .and_then(|v| v.try_into().ok()),
        }
    }
}

fn read_id<const N: usize>(
    b: &mut Decoder<'_>,
    flags: u8,
    has: u8,
    in_text: u8,
) -> Result<Option<StoredId<N>>, Corrupt> {
    if flags & has == 0 {
        return Ok(None);
    }
    if flags & in_text != 0 {
        let at = b.uvarint().ok_or("truncated id")? as usize;
        return Ok(Some(StoredId::Run(at)));
    }
    let bytes = b.bytes(N).ok_or("truncated id")?;
    let mut id = [0u8; N];
    id.copy_from_slice(bytes);
    Ok(Some(StoredId::Bytes(id)))
}

impl Chunk {
    #[cfg(test)]
    fn len(&self) -> usize {
        self.lines.len()
    }

    pub fn trace_id(&self, i: usize) -> Option<TraceId> {
        let l = &self.lines[i];
        l.trace?.resolve(&self.body[l.text.clone()]).map(TraceId)
    }

    fn span_id(&self, i: usize) -> Option<SpanId> {
        let l = &self.lines[i];
        l.span?.resolve(&self.body[l.text.clone()]).map(SpanId)
    }

    /// The lines in `range` whose trace id is `trace`. Lines that spell it are found by
    /// one search of the whole text, not by resolving every line's id.
    pub fn lines_of_trace(&self, trace: TraceId, range: Range<usize>) -> Vec<usize> {
        let mut spelled_hex = [0u8; 32];
        hex_into(&trace.0, &mut spelled_hex);
        let text_start = self.lines.first().map_or(self.body.len(), |l| l.text.start);
        let mut spelled: Vec<usize> =
            memchr::memmem::find_iter(&self.body[text_start..], &spelled_hex)
                .map(|at| {
                    let at = text_start + at;
                    self.lines.partition_point(|l| l.text.end <= at)
                })
                .collect();
        spelled.dedup();
        range
            .filter(|&i| match self.lines[i].trace {
                Some(StoredId::Bytes(b)) => b == trace.0,
                Some(StoredId::Run(_)) => {
                    spelled.binary_search(&i).is_ok() && self.trace_id(i) == Some(trace)
                }
                None => false,
            })
            .collect()
    }

    /// The text of line `i`.
    pub fn text(&self, i: usize) -> &str {
        // Checked to be UTF-8 in `decode`.
        std::str::from_utf8(&self.body[self.lines[i].text.clone()]).unwrap_or("")
    }

    /// Line `i` as an entry, reusing `out`'s allocations.
    pub fn entry_into(&self, i: usize, out: &mut LogEntry) {
        let l = &self.lines[i];
        out.timestamp_ns = self.head.ts[i];
        out.line.clear();
        out.line.push_str(self.text(i));
        out.trace_id = self.trace_id(i);
        out.span_id = self.span_id(i);
        out.metadata.clear();
        if let Some(m) = &l.metadata {
            let mut d = Decoder::new(&self.body[m.clone()]);
            if let Some(m) = decode_metadata_from(&mut d) {
                out.metadata = m;
            }
        }
    }

    #[cfg(test)]
    fn entry(&self, i: usize) -> LogEntry {
        let mut e = LogEntry::new(0, String::new());
        self.entry_into(i, &mut e);
        e
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(ts: i64, line: String, trace: Option<TraceId>, span: Option<SpanId>) -> LogEntry {
        let mut e = LogEntry::new(ts, line);
        e.trace_id = trace;
        e.span_id = span;
        e
    }

    #[test]
    fn lines_ids_and_metadata_come_back() {
        let trace = TraceId([0xab; 16]);
        let span = SpanId([1, 2, 3, 4, 5, 6, 7, 8]);
        let mut with_meta = LogEntry::new(5, "with metadata, ünïcode");
        with_meta.metadata = vec![("k".into(), "v".into()), ("a".into(), String::new())];
        let lines = [
            // Ids spelled in the text.
            entry(
                3,
                format!("trace_id={} span_id={}", trace.to_hex(), span.to_hex()),
                Some(trace),
                Some(span),
            ),
            // Not spelled (a UUID form): stored.
            entry(
                3,
                "X-Trace-ID=abababab-abab-abab-abab-abababababab".into(),
                Some(trace),
                Some(span),
            ),
            entry(
                4,
                format!("only the span {}", span.to_hex()),
                Some(trace),
                Some(span),
            ),
            with_meta,
            entry(-7, String::new(), None, None),
        ];
        let refs: Vec<&LogEntry> = lines.iter().collect();
        let mut blob = Vec::new();
        encode(&refs, 3, &mut blob).unwrap();
        let c = decode(&blob).unwrap();
        assert_eq!(c.len(), lines.len());
        for (i, e) in lines.iter().enumerate() {
            assert_eq!(&c.entry(i), e);
        }
        let h = decode_head(&blob).unwrap();
        assert_eq!(h.ts, vec![3, 3, 4, 5, -7]);
        assert_eq!(h.lens[0] as usize, lines[0].line.len());
    }

    #[test]
    fn the_lines_of_a_trace_are_found_spelled_or_stored() {
        let a = TraceId([0xab; 16]);
        let b = TraceId([0xcd; 16]);
        let lines = [
            entry(1, format!("trace_id={}", a.to_hex()), Some(a), None),
            // Spells a, belongs to b.
            entry(2, format!("caused by {} ", a.to_hex()), Some(b), None),
            entry(3, "no spelling".into(), Some(a), None),
            entry(
                4,
                format!("{} and {}", b.to_hex(), a.to_hex()),
                Some(a),
                None,
            ),
            entry(5, format!("trace_id={}", a.to_hex()), None, None),
        ];
        let refs: Vec<&LogEntry> = lines.iter().collect();
        let mut blob = Vec::new();
        encode(&refs, 3, &mut blob).unwrap();
        let c = decode(&blob).unwrap();
        assert_eq!(c.lines_of_trace(a, 0..5), vec![0, 2, 3]);
        assert_eq!(c.lines_of_trace(a, 1..3), vec![2]);
        assert_eq!(c.lines_of_trace(b, 0..5), vec![1]);
    }

    #[test]
    fn damaged_chunks_are_errors_not_panics() {
        let e = entry(1, "a line".into(), None, None);
        let mut blob = Vec::new();
        encode(&[&e], 3, &mut blob).unwrap();
        for cut in 0..blob.len() {
            assert!(decode(&blob[..cut]).is_err(), "cut at {cut}");
        }
        let mut flipped = blob.clone();
        flipped[0] = 9;
        assert!(decode(&flipped).is_err());
    }
}

/// Bytes per raw byte of a corpus (one line per line of the file named by
/// `LASTMILE_CORPUS`) in chunks of 4,096 lines: for tuning the codec, not a test.
#[cfg(test)]
#[test]
#[ignore]
fn corpus_ratio() {
    let Ok(path) = std::env::var("LASTMILE_CORPUS") else {
        return;
    };
    let text = std::fs::read_to_string(path).unwrap();
    let entries: Vec<LogEntry> = text
        .lines()
        .enumerate()
        .map(|(i, l)| LogEntry::new(i as i64 * 1_000_000, l))
        .collect();
    let (mut raw, mut stored) = (0, 0);
    for part in entries.chunks(4096) {
        let refs: Vec<&LogEntry> = part.iter().collect();
        let mut blob = Vec::new();
        encode(&refs, 3, &mut blob).unwrap();
        raw += part.iter().map(|e| e.line.len()).sum::<usize>();
        stored += blob.len();
        let t = template::encode(part.iter().map(|e| e.line.as_str()));
        for (name, p) in [
            ("templates", &t.templates),
            ("numbers", &t.numbers),
            ("hex", &t.hex),
        ] {
            let z = zstd::bulk::compress(p, 3).unwrap().len();
            eprintln!("  {name}: {} raw, {z} zstd", p.len());
        }
    }
    eprintln!("{stored} / {raw} = {:.4}", stored as f64 / raw as f64);
}
