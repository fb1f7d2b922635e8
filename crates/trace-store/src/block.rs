//! Immutable span blocks: one file per flushed head, memory-mapped when read.
//!
//! Layout (integers little-endian):
//! ```text
//! "LMSPAN01"
//! pages        zstd frames of span records (uvarint group id + encoded span), spans
//!              sorted by (trace id, start); a trace's spans are contiguous
//! groups       zstd: uvarint count, then each encoded resource + scope
//! strings      zstd: uvarint count, then each string (service and span names)
//! page table   per page: first span u32, offset u64, compressed len u32, raw len u32, crc u32
//! trace table  per trace, sorted by id: id [16], first span u32, span count u32
//! span rows    per span: service u32, name u32, start u64, duration u64, flags u8, pad [7]
//! footer       see `Footer`; ends with a CRC32C of everything from `groups` on, and magic
//! ```
//! Opening a block reads the footer, checks the CRC of the tables, and decodes the groups
//! and strings; pages are decompressed only when a trace or a search needs them.

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use lastmile_model::{Span, StatusCode, TraceId};
use lastmile_store::StoreError;
use lastmile_store::codec::{Decoder, put_str, put_uvarint};
use lastmile_store::wal::sync_dir;
use memmap2::Mmap;

use crate::codec;
use crate::head::{Group, Head, Interner};
use crate::search::{SummaryBuilder, TraceQuery, TraceSummary};

const MAGIC: &[u8; 8] = b"LMSPAN01";

/// A span with the resource and scope it belongs to.
pub type GroupedSpan = (Arc<Group>, Span);
const PAGE_TARGET: usize = 64 << 10;
/// A page larger than this is corruption: the writer never makes one.
const MAX_PAGE_RAW: usize = 64 << 20;
const PAGE_ENTRY: usize = 24;
const TRACE_ENTRY: usize = 24;
const ROW: usize = 32;
const FOOTER_FIELDS: usize = 14;
const FOOTER_LEN: usize = FOOTER_FIELDS * 8 + 4 + 8;
const ZSTD_LEVEL: i32 = 3;

#[derive(Clone, Copy, Debug, Default)]
struct Footer {
    groups_off: u64,
    strings_off: u64,
    pages_table_off: u64,
    traces_off: u64,
    rows_off: u64,
    end: u64,
    n_pages: u64,
    n_traces: u64,
    n_spans: u64,
    min_start_ns: u64,
    max_end_ns: u64,
    /// WAL segments below this number are fully contained in this block.
    wal_upto: u64,
    groups_raw: u64,
    strings_raw: u64,
}

impl Footer {
    fn fields(&self) -> [u64; FOOTER_FIELDS] {
        [
            self.groups_off,
            self.strings_off,
            self.pages_table_off,
            self.traces_off,
            self.rows_off,
            self.end,
            self.n_pages,
            self.n_traces,
            self.n_spans,
            self.min_start_ns,
            self.max_end_ns,
            self.wal_upto,
            self.groups_raw,
            self.strings_raw,
        ]
    }

    fn from_fields(f: [u64; FOOTER_FIELDS]) -> Footer {
        Footer {
            groups_off: f[0],
            strings_off: f[1],
            pages_table_off: f[2],
            traces_off: f[3],
            rows_off: f[4],
            end: f[5],
            n_pages: f[6],
            n_traces: f[7],
            n_spans: f[8],
            min_start_ns: f[9],
            max_end_ns: f[10],
            wal_upto: f[11],
            groups_raw: f[12],
            strings_raw: f[13],
        }
    }
}

/// A writer that counts bytes and keeps a running CRC of the metadata sections.
struct Out {
    w: BufWriter<File>,
    pos: u64,
    crc: Option<u32>,
}

impl Out {
    fn put(&mut self, b: &[u8]) -> std::io::Result<()> {
        self.w.write_all(b)?;
        self.pos += b.len() as u64;
        if let Some(c) = &mut self.crc {
            *c = crc32c::crc32c_append(*c, b);
        }
        Ok(())
    }
}

fn compress(raw: &[u8]) -> std::io::Result<Vec<u8>> {
    zstd::bulk::compress(raw, ZSTD_LEVEL)
}

/// Writes the head's spans as a block file `dir/<name>.spans` (atomically: temporary file,
/// fsync, rename, directory fsync). Returns the final path. Spans of traces `keep` refuses
/// (tail sampling's drops) are left out.
pub fn write_block(
    head: &Head,
    dir: &Path,
    name: &str,
    wal_upto: u64,
    keep: &dyn Fn(&TraceId) -> bool,
) -> Result<PathBuf, StoreError> {
    let final_path = dir.join(format!("{name}.spans"));
    let tmp_path = dir.join(format!("{name}.spans.tmp"));
    let io = |e| StoreError::io(&tmp_path, e);
    let file = File::create(&tmp_path).map_err(io)?;
    let mut out = Out {
        w: BufWriter::with_capacity(1 << 20, file),
        pos: 0,
        crc: None,
    };
    out.put(MAGIC).map_err(io)?;

    // Spans in (trace, start) order.
    let mut order: Vec<u32> = (0..head.rows.len() as u32)
        .filter(|&i| keep(&head.rows[i as usize].trace_id))
        .collect();
    order.sort_unstable_by_key(|&i| {
        let r = &head.rows[i as usize];
        (r.trace_id, r.start_ns, i)
    });

    let mut footer = Footer {
        n_spans: order.len() as u64,
        min_start_ns: u64::MAX,
        wal_upto,
        ..Footer::default()
    };
    let mut page_table = Vec::new();
    let mut traces = Vec::new();
    let mut rows = Vec::with_capacity(order.len() * ROW);
    let mut page = Vec::with_capacity(PAGE_TARGET * 2);
    let mut page_first = 0u32;
    let mut flush_page = |page: &mut Vec<u8>, first: u32, out: &mut Out| -> std::io::Result<()> {
        if page.is_empty() {
            return Ok(());
        }
        let c = compress(page)?;
        page_table.extend_from_slice(&first.to_le_bytes());
        page_table.extend_from_slice(&out.pos.to_le_bytes());
        page_table.extend_from_slice(&(c.len() as u32).to_le_bytes());
        page_table.extend_from_slice(&(page.len() as u32).to_le_bytes());
        page_table.extend_from_slice(&crc32c::crc32c(&c).to_le_bytes());
        out.put(&c)?;
        page.clear();
        Ok(())
    };
    let mut n_pages = 0u64;
    for (pos, &i) in order.iter().enumerate() {
        let r = &head.rows[i as usize];
        let pos = pos as u32;
        if pos == 0 || head.rows[order[pos as usize - 1] as usize].trace_id != r.trace_id {
            traces.extend_from_slice(&r.trace_id.0);
            traces.extend_from_slice(&pos.to_le_bytes());
            traces.extend_from_slice(&0u32.to_le_bytes());
            footer.n_traces += 1;
        }
        let n = traces.len();
        let count = u32::from_le_bytes(traces[n - 4..].try_into().unwrap_or_default()) + 1;
        traces[n - 4..].copy_from_slice(&count.to_le_bytes());

        if page.len() >= PAGE_TARGET {
            flush_page(&mut page, page_first, &mut out).map_err(io)?;
            n_pages += 1;
            page_first = pos;
        }
        put_uvarint(&mut page, r.group as u64);
        page.extend_from_slice(&head.arena[r.offset..r.offset + r.len as usize]);

        let group = &head.groups[r.group as usize];
        rows.extend_from_slice(&group.service.to_le_bytes());
        rows.extend_from_slice(&r.name.to_le_bytes());
        rows.extend_from_slice(&r.start_ns.to_le_bytes());
        rows.extend_from_slice(&r.duration_ns.to_le_bytes());
        rows.push(r.status as u8 | (r.root as u8) << 2);
        rows.extend_from_slice(&[0u8; 7]);
        footer.min_start_ns = footer.min_start_ns.min(r.start_ns);
        footer.max_end_ns = footer
            .max_end_ns
            .max(r.start_ns.saturating_add(r.duration_ns));
    }
    if !page.is_empty() {
        flush_page(&mut page, page_first, &mut out).map_err(io)?;
        n_pages += 1;
    }
    footer.n_pages = n_pages;

    out.crc = Some(0);
    footer.groups_off = out.pos;
    let mut raw = Vec::new();
    put_uvarint(&mut raw, head.groups.len() as u64);
    for g in &head.groups {
        raw.extend_from_slice(&g.encoded);
    }
    footer.groups_raw = raw.len() as u64;
    out.put(&compress(&raw).map_err(io)?).map_err(io)?;

    footer.strings_off = out.pos;
    raw.clear();
    put_uvarint(&mut raw, head.strings.strings.len() as u64);
    for s in &head.strings.strings {
        put_str(&mut raw, s);
    }
    footer.strings_raw = raw.len() as u64;
    out.put(&compress(&raw).map_err(io)?).map_err(io)?;

    footer.pages_table_off = out.pos;
    out.put(&page_table).map_err(io)?;
    footer.traces_off = out.pos;
    out.put(&traces).map_err(io)?;
    footer.rows_off = out.pos;
    out.put(&rows).map_err(io)?;
    footer.end = out.pos;
    if footer.n_spans == 0 {
        footer.min_start_ns = 0;
    }
    let mut tail = Vec::with_capacity(FOOTER_LEN);
    for f in footer.fields() {
        tail.extend_from_slice(&f.to_le_bytes());
    }
    out.put(&tail).map_err(io)?;
    let crc = out.crc.unwrap_or(0);
    out.crc = None;
    out.put(&crc.to_le_bytes()).map_err(io)?;
    out.put(MAGIC).map_err(io)?;
    let file = out.w.into_inner().map_err(|e| io(e.into_error()))?;
    file.sync_all().map_err(io)?;
    drop(file);
    fs::rename(&tmp_path, &final_path).map_err(|e| StoreError::io(&final_path, e))?;
    sync_dir(dir).map_err(|e| StoreError::io(dir, e))?;
    Ok(final_path)
}

pub struct Block {
    path: PathBuf,
    map: Mmap,
    footer: Footer,
    groups: Vec<Arc<Group>>,
    strings: Interner,
    /// Distinct (service, span name) string ids.
    operations: Vec<(u32, u32)>,
}

impl std::fmt::Debug for Block {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Block").field("path", &self.path).finish()
    }
}

fn le_u32(b: &[u8], at: usize) -> u32 {
    b.get(at..at + 4)
        .and_then(|s| s.try_into().ok())
        .map_or(0, u32::from_le_bytes)
}

fn le_u64(b: &[u8], at: usize) -> u64 {
    b.get(at..at + 8)
        .and_then(|s| s.try_into().ok())
        .map_or(0, u64::from_le_bytes)
}

impl Block {
    pub fn open(path: &Path) -> Result<Block, StoreError> {
        let corrupt = |why: &str| StoreError::corrupt(path, why.to_string());
        let file = File::open(path).map_err(|e| StoreError::io(path, e))?;
        // SAFETY: block files are never modified after the rename that publishes them;
        // lastmile only deletes them (retention), which keeps existing mappings valid.
        let map = unsafe { Mmap::map(&file) }.map_err(|e| StoreError::io(path, e))?;
        let len = map.len();
        if len < MAGIC.len() + FOOTER_LEN || &map[..8] != MAGIC || &map[len - 8..] != MAGIC {
            return Err(corrupt("not a span block (bad magic or too short)"));
        }
        let fstart = len - FOOTER_LEN;
        let mut fields = [0u64; FOOTER_FIELDS];
        for (i, f) in fields.iter_mut().enumerate() {
            *f = le_u64(&map, fstart + i * 8);
        }
        let footer = Footer::from_fields(fields);
        let offs = [
            8,
            footer.groups_off,
            footer.strings_off,
            footer.pages_table_off,
            footer.traces_off,
            footer.rows_off,
            footer.end,
            fstart as u64,
        ];
        if offs.windows(2).any(|w| w[0] > w[1]) || footer.end != fstart as u64 {
            return Err(corrupt("section offsets out of order"));
        }
        let sizes_ok = footer.traces_off - footer.pages_table_off
            == footer.n_pages * PAGE_ENTRY as u64
            && footer.rows_off - footer.traces_off == footer.n_traces * TRACE_ENTRY as u64
            && footer.end - footer.rows_off == footer.n_spans * ROW as u64;
        if !sizes_ok {
            return Err(corrupt("table sizes do not match their counts"));
        }
        let want_crc = le_u32(&map, len - 12);
        let meta = &map[footer.groups_off as usize..fstart + FOOTER_FIELDS * 8];
        if crc32c::crc32c(meta) != want_crc {
            return Err(corrupt("checksum mismatch in the block's tables"));
        }
        let unzip = |from: u64, to: u64, raw: u64| -> Result<Vec<u8>, StoreError> {
            if raw > MAX_PAGE_RAW as u64 * 16 {
                return Err(corrupt("section too large"));
            }
            zstd::bulk::decompress(&map[from as usize..to as usize], raw as usize)
                .map_err(|e| corrupt(&format!("section does not decompress: {e}")))
        };
        let raw = unzip(footer.groups_off, footer.strings_off, footer.groups_raw)?;
        let mut d = Decoder::new(&raw);
        let n = d.uvarint().ok_or_else(|| corrupt("group count"))?;
        let mut groups = Vec::new();
        let mut strings = Interner::default();
        let raw_strings = unzip(
            footer.strings_off,
            footer.pages_table_off,
            footer.strings_raw,
        )?;
        let mut sd = Decoder::new(&raw_strings);
        let ns = sd.uvarint().ok_or_else(|| corrupt("string count"))?;
        for _ in 0..ns {
            let s = sd.str().ok_or_else(|| corrupt("string table"))?;
            strings.intern(s);
        }
        for _ in 0..n {
            let start = d.pos;
            let (resource, scope) =
                codec::get_group(&mut d).map_err(|e| corrupt(&e.to_string()))?;
            let service = strings.intern(resource.service_name());
            groups.push(Arc::new(Group {
                encoded: raw[start..d.pos].to_vec(),
                resource,
                scope,
                service,
            }));
        }
        let mut block = Block {
            path: path.to_path_buf(),
            map,
            footer,
            groups,
            strings,
            operations: Vec::new(),
        };
        let mut ops: Vec<(u32, u32)> = (0..footer.n_spans as usize)
            .map(|i| {
                let r = block.row(i);
                (le_u32(r, 0), le_u32(r, 4))
            })
            .collect();
        ops.sort_unstable();
        ops.dedup();
        block.operations = ops;
        Ok(block)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn span_count(&self) -> u64 {
        self.footer.n_spans
    }

    pub fn trace_count(&self) -> u64 {
        self.footer.n_traces
    }

    pub fn size_bytes(&self) -> u64 {
        self.map.len() as u64
    }

    pub fn min_start_ns(&self) -> u64 {
        self.footer.min_start_ns
    }

    pub fn max_end_ns(&self) -> u64 {
        self.footer.max_end_ns
    }

    pub fn wal_upto(&self) -> u64 {
        self.footer.wal_upto
    }

    fn row(&self, i: usize) -> &[u8] {
        let at = self.footer.rows_off as usize + i * ROW;
        &self.map[at..at + ROW]
    }

    fn trace_entry(&self, i: usize) -> (TraceId, u32, u32) {
        let at = self.footer.traces_off as usize + i * TRACE_ENTRY;
        let mut id = [0u8; 16];
        id.copy_from_slice(&self.map[at..at + 16]);
        (
            TraceId(id),
            le_u32(&self.map, at + 16),
            le_u32(&self.map, at + 20),
        )
    }

    fn page_entry(&self, i: usize) -> (u32, u64, u32, u32, u32) {
        let at = self.footer.pages_table_off as usize + i * PAGE_ENTRY;
        let m = &self.map;
        (
            le_u32(m, at),
            le_u64(m, at + 4),
            le_u32(m, at + 12),
            le_u32(m, at + 16),
            le_u32(m, at + 20),
        )
    }

    /// The page holding span number `span`.
    fn page_of(&self, span: u32) -> usize {
        let (mut lo, mut hi) = (0usize, self.footer.n_pages as usize);
        while hi - lo > 1 {
            let mid = (lo + hi) / 2;
            if self.page_entry(mid).0 <= span {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        lo
    }

    fn page(&self, i: usize) -> Result<Vec<u8>, StoreError> {
        let (_, off, clen, raw, crc) = self.page_entry(i);
        let corrupt = |why: String| StoreError::corrupt(&self.path, why);
        let data = usize::try_from(off)
            .ok()
            .and_then(|o| self.map.get(o..o.checked_add(clen as usize)?))
            .ok_or_else(|| corrupt(format!("page {i} out of bounds")))?;
        if crc32c::crc32c(data) != crc || raw as usize > MAX_PAGE_RAW {
            return Err(corrupt(format!("page {i} checksum mismatch")));
        }
        zstd::bulk::decompress(data, raw as usize)
            .map_err(|e| corrupt(format!("page {i} does not decompress: {e}")))
    }

    /// Decodes spans `first..first + count` (they may straddle pages).
    fn spans(&self, first: u32, count: u32) -> Result<Vec<GroupedSpan>, StoreError> {
        let mut out = Vec::with_capacity(count as usize);
        let mut p = self.page_of(first);
        while (out.len() as u32) < count && p < self.footer.n_pages as usize {
            let page_first = self.page_entry(p).0;
            let raw = self.page(p)?;
            let mut d = Decoder::new(&raw);
            let mut n = page_first;
            while d.pos < raw.len() && (out.len() as u32) < count {
                let (g, span) = self.decode_one(&mut d)?;
                if n >= first {
                    out.push((g, span));
                }
                n += 1;
            }
            p += 1;
        }
        Ok(out)
    }

    /// Every span of page `p`.
    fn decode_page(&self, p: usize) -> Result<Vec<GroupedSpan>, StoreError> {
        let raw = self.page(p)?;
        let mut d = Decoder::new(&raw);
        let mut out = Vec::new();
        while d.pos < raw.len() {
            out.push(self.decode_one(&mut d)?);
        }
        Ok(out)
    }

    fn decode_one(&self, d: &mut Decoder<'_>) -> Result<(Arc<Group>, Span), StoreError> {
        let corrupt = |why: String| StoreError::corrupt(&self.path, why);
        let g = d
            .uvarint()
            .and_then(|g| self.groups.get(g as usize))
            .ok_or_else(|| corrupt("bad group id in a page".into()))?;
        let span = codec::get_span(d).map_err(|e| corrupt(e.to_string()))?;
        Ok((g.clone(), span))
    }

    fn find_trace(&self, id: TraceId) -> Option<(u32, u32)> {
        let (mut lo, mut hi) = (0usize, self.footer.n_traces as usize);
        while lo < hi {
            let mid = (lo + hi) / 2;
            let (t, first, count) = self.trace_entry(mid);
            match t.cmp(&id) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return Some((first, count)),
            }
        }
        None
    }

    pub fn trace(&self, id: TraceId) -> Result<Vec<GroupedSpan>, StoreError> {
        match self.find_trace(id) {
            Some((first, count)) => self.spans(first, count),
            None => Ok(Vec::new()),
        }
    }

    pub fn search(&self, q: &TraceQuery) -> Result<Vec<TraceSummary>, StoreError> {
        if !q.time_overlaps(self.footer.min_start_ns, self.footer.max_end_ns) {
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        // Candidates come in span order, so the decoded page is usually the one needed.
        let mut page_cache: Option<(usize, u32, Vec<GroupedSpan>)> = None;
        for t in 0..self.footer.n_traces as usize {
            let (trace_id, first, count) = self.trace_entry(t);
            let mut b = SummaryBuilder::default();
            let mut candidates = Vec::new();
            for i in first..first.saturating_add(count) {
                let r = self.row(i as usize);
                let (service_id, name_id) = (le_u32(r, 0), le_u32(r, 4));
                let start = le_u64(r, 8);
                let flags = r[24];
                let status = StatusCode::from_i32((flags & 3) as i32);
                b.add(
                    service_id,
                    name_id,
                    start,
                    start.saturating_add(le_u64(r, 16)),
                    status,
                    flags & 4 != 0,
                );
                if q.has_span_conditions()
                    && q.row_matches(
                        self.strings.get(service_id),
                        self.strings.get(name_id),
                        status,
                    )
                {
                    candidates.push(i);
                }
            }
            if !q.time_overlaps(b.start(), b.end()) || !q.duration_ok(b.end() - b.start()) {
                continue;
            }
            let hit = if !q.has_span_conditions() {
                true
            } else if q.tags.is_empty() {
                !candidates.is_empty()
            } else {
                let mut hit = false;
                for i in candidates {
                    let p = self.page_of(i);
                    if page_cache.as_ref().is_none_or(|c| c.0 != p) {
                        page_cache = Some((p, self.page_entry(p).0, self.decode_page(p)?));
                    }
                    let Some((_, first, spans)) = &page_cache else {
                        continue;
                    };
                    if let Some((g, span)) = spans.get((i - first) as usize)
                        && q.tags_match(&g.resource, span)
                    {
                        hit = true;
                        break;
                    }
                }
                hit
            };
            if hit {
                out.push(b.finish(trace_id, |id| self.strings.get(id)));
            }
        }
        Ok(out)
    }

    pub fn operations(&self) -> impl Iterator<Item = (&str, &str)> {
        self.operations
            .iter()
            .map(|&(s, n)| (self.strings.get(s), self.strings.get(n)))
    }
}
