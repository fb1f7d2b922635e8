//! Immutable on-disk blocks: every sample of a time range, compressed, with its own label
//! index, memory-mapped when read.
//!
//! A block is a directory named by a ULID holding three files:
//! - `chunks`: compressed chunks back to back, each followed by its CRC32C;
//! - `index`: a sorted symbol table, the series (labels as symbol ids and chunk metadata)
//!   in label order, postings lists, a fixed-width postings table sorted by
//!   (name, value) symbol, and a footer with section offsets and a CRC32C of the file;
//! - `meta.json`: time range, counts and compaction lineage.
//!
//! Symbols are sorted, so comparing symbol ids compares strings, and every lookup is a
//! binary search in the mapped file: opening a block costs no memory per series.

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use hashbrown::HashMap;
use lastmile_model::Labels;
use memmap2::Mmap;
use serde::{Deserialize, Serialize};

use crate::codec::{Decoder, put_str, put_uvarint, put_varint};
use crate::error::StoreError;
use crate::postings::{LabelIndex, SeriesId};
use crate::series::{ChunkBytes, ChunkRef, SelectedSeries};
use crate::wal::sync_dir;

const INDEX_MAGIC: &[u8; 8] = b"LMIDX002";
const FOOTER_LEN: usize = 8 * 8 + 4 + 8;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct BlockStats {
    pub num_series: u64,
    pub num_samples: u64,
    pub num_chunks: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Compaction {
    pub level: u32,
    pub sources: Vec<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct BlockMeta {
    pub ulid: String,
    /// First and last sample timestamps (inclusive), in milliseconds.
    pub min_time: i64,
    pub max_time: i64,
    pub stats: BlockStats,
    pub compaction: Compaction,
    pub version: u32,
}

/// A new ULID: 48 bits of milliseconds and 80 random bits in Crockford base32, so block
/// directories sort by creation time.
pub fn new_ulid() -> String {
    const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    let value: u128 = (ms << 80) | (rand::random::<u128>() & ((1u128 << 80) - 1));
    (0..26)
        .rev()
        .map(|i| ALPHABET[((value >> (i * 5)) & 31) as usize] as char)
        .collect()
}

/// Writes a block. Series must be added in label order, with labels as ids into the
/// sorted symbol table given to [`BlockWriter::new`].
pub struct BlockWriter {
    tmp_dir: PathBuf,
    final_dir: PathBuf,
    ulid: String,
    symbols: Vec<String>,
    chunks: BufWriter<File>,
    chunks_len: u64,
    series_buf: Vec<u8>,
    series_offsets: Vec<u64>,
    postings: HashMap<(u32, u32), Vec<u32>>,
    stats: BlockStats,
    min_time: i64,
    max_time: i64,
    last_labels: Vec<(u32, u32)>,
}

impl BlockWriter {
    pub fn new(blocks_dir: &Path, symbols: Vec<String>) -> Result<Self, StoreError> {
        debug_assert!(
            symbols.windows(2).all(|w| w[0] < w[1]),
            "symbols must be sorted and unique"
        );
        let ulid = new_ulid();
        let tmp_dir = blocks_dir.join(format!("{ulid}.tmp"));
        let final_dir = blocks_dir.join(&ulid);
        fs::create_dir_all(&tmp_dir).map_err(|e| StoreError::io(&tmp_dir, e))?;
        let path = tmp_dir.join("chunks");
        let chunks = BufWriter::with_capacity(
            1 << 20,
            File::create(&path).map_err(|e| StoreError::io(&path, e))?,
        );
        Ok(BlockWriter {
            tmp_dir,
            final_dir,
            ulid,
            symbols,
            chunks,
            chunks_len: 0,
            series_buf: Vec::new(),
            series_offsets: Vec::new(),
            postings: HashMap::new(),
            stats: BlockStats {
                num_series: 0,
                num_samples: 0,
                num_chunks: 0,
            },
            min_time: i64::MAX,
            max_time: i64::MIN,
            last_labels: Vec::new(),
        })
    }

    pub fn add_series(
        &mut self,
        labels: &[(u32, u32)],
        chunks: &[ChunkRef],
    ) -> Result<(), StoreError> {
        if chunks.is_empty() {
            return Ok(());
        }
        debug_assert!(
            self.series_offsets.is_empty() || self.last_labels.as_slice() < labels,
            "series out of order"
        );
        self.last_labels.clear();
        self.last_labels.extend_from_slice(labels);
        let idx = self.series_offsets.len() as u32;
        self.series_offsets.push(self.series_buf.len() as u64);
        let b = &mut self.series_buf;
        put_uvarint(b, labels.len() as u64);
        for &(n, v) in labels {
            put_uvarint(b, n as u64);
            put_uvarint(b, v as u64);
            self.postings.entry((n, v)).or_default().push(idx);
        }
        put_uvarint(b, chunks.len() as u64);
        put_uvarint(b, self.chunks_len);
        let mut prev_max = 0i64;
        for (i, c) in chunks.iter().enumerate() {
            let data = c.bytes.as_slice();
            // Wrapping both ways: hostile timestamps may span more than i64.
            put_varint(
                b,
                if i == 0 {
                    c.min_t
                } else {
                    c.min_t.wrapping_sub(prev_max)
                },
            );
            put_uvarint(b, c.max_t.wrapping_sub(c.min_t) as u64);
            put_uvarint(b, c.count as u64);
            put_uvarint(b, data.len() as u64);
            prev_max = c.max_t;
            let path = self.tmp_dir.join("chunks");
            self.chunks
                .write_all(data)
                .map_err(|e| StoreError::io(&path, e))?;
            self.chunks
                .write_all(&crc32c::crc32c(data).to_le_bytes())
                .map_err(|e| StoreError::io(&path, e))?;
            self.chunks_len += data.len() as u64 + 4;
            self.stats.num_chunks += 1;
            self.stats.num_samples += c.count as u64;
            self.min_time = self.min_time.min(c.min_t);
            self.max_time = self.max_time.max(c.max_t);
        }
        self.stats.num_series += 1;
        Ok(())
    }

    pub fn num_series(&self) -> u64 {
        self.stats.num_series
    }

    /// Writes the index and meta, syncs, and moves the block into place. Returns `None`
    /// (and leaves nothing behind) when no series had data.
    pub fn finish(
        mut self,
        level: u32,
        sources: Vec<String>,
    ) -> Result<Option<BlockMeta>, StoreError> {
        let chunks_path = self.tmp_dir.join("chunks");
        self.chunks
            .flush()
            .map_err(|e| StoreError::io(&chunks_path, e))?;
        if self.stats.num_series == 0 {
            fs::remove_dir_all(&self.tmp_dir).map_err(|e| StoreError::io(&self.tmp_dir, e))?;
            return Ok(None);
        }
        self.chunks
            .get_ref()
            .sync_all()
            .map_err(|e| StoreError::io(&chunks_path, e))?;
        let index = self.encode_index();
        let index_path = self.tmp_dir.join("index");
        write_synced(&index_path, &index)?;
        let meta = BlockMeta {
            ulid: self.ulid.clone(),
            min_time: self.min_time,
            max_time: self.max_time,
            stats: self.stats.clone(),
            compaction: Compaction { level, sources },
            version: 1,
        };
        let meta_path = self.tmp_dir.join("meta.json");
        let json =
            serde_json::to_vec_pretty(&meta).map_err(|e| StoreError::io(&meta_path, e.into()))?;
        write_synced(&meta_path, &json)?;
        sync_dir(&self.tmp_dir).map_err(|e| StoreError::io(&self.tmp_dir, e))?;
        fs::rename(&self.tmp_dir, &self.final_dir)
            .map_err(|e| StoreError::io(&self.final_dir, e))?;
        if let Some(parent) = self.final_dir.parent() {
            sync_dir(parent).map_err(|e| StoreError::io(parent, e))?;
        }
        Ok(Some(meta))
    }

    fn encode_index(&mut self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.series_buf.len() * 2);
        out.extend_from_slice(INDEX_MAGIC);
        // Symbols, then their offsets (fixed width, for binary search). Every offset
        // table points only backwards, so its width is chosen when it is written: 4 bytes
        // while the index is under 4 GiB, 8 after.
        let mut sym_offsets = Vec::with_capacity(self.symbols.len());
        for s in &self.symbols {
            sym_offsets.push(out.len() as u64);
            put_str(&mut out, s);
        }
        let symtab = out.len() as u64;
        let sym_width = offset_width(&out);
        for o in sym_offsets {
            put_offset(&mut out, o, sym_width);
        }
        // Series entries, then their offsets.
        let series_base = out.len() as u64;
        out.extend_from_slice(&self.series_buf);
        let series_table = out.len() as u64;
        let series_width = offset_width(&out);
        for o in &self.series_offsets {
            put_offset(&mut out, series_base + o, series_width);
        }
        // Postings lists in (name, value) order, then the table pointing at them.
        let mut keys: Vec<(u32, u32)> = self.postings.keys().copied().collect();
        keys.sort_unstable();
        let mut list_offsets = Vec::with_capacity(keys.len());
        for k in &keys {
            let list = &self.postings[k];
            list_offsets.push(out.len() as u64);
            put_uvarint(&mut out, list.len() as u64);
            let mut prev = 0u32;
            for &id in list {
                put_uvarint(&mut out, (id - prev) as u64);
                prev = id;
            }
        }
        let ptable = out.len() as u64;
        let postings_width = offset_width(&out);
        for (k, off) in keys.iter().zip(list_offsets) {
            out.extend_from_slice(&k.0.to_le_bytes());
            out.extend_from_slice(&k.1.to_le_bytes());
            put_offset(&mut out, off, postings_width);
        }
        let widths = sym_width as u64 | (series_width as u64) << 8 | (postings_width as u64) << 16;
        for v in [
            symtab,
            self.symbols.len() as u64,
            series_table,
            self.series_offsets.len() as u64,
            ptable,
            keys.len() as u64,
            widths,
            0,
        ] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        let crc = crc32c::crc32c(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out.extend_from_slice(INDEX_MAGIC);
        out
    }
}

/// Width of offsets into `out` so far: 4 bytes while they fit.
fn offset_width(out: &[u8]) -> usize {
    if out.len() <= u32::MAX as usize { 4 } else { 8 }
}

fn put_offset(out: &mut Vec<u8>, v: u64, width: usize) {
    out.extend_from_slice(&v.to_le_bytes()[..width]);
}

/// Reads a little-endian offset of 4 or 8 bytes.
fn read_offset(b: &[u8]) -> usize {
    let mut buf = [0u8; 8];
    buf[..b.len()].copy_from_slice(b);
    u64::from_le_bytes(buf) as usize
}

fn write_synced(path: &Path, data: &[u8]) -> Result<(), StoreError> {
    let mut f = File::create(path).map_err(|e| StoreError::io(path, e))?;
    f.write_all(data).map_err(|e| StoreError::io(path, e))?;
    f.sync_all().map_err(|e| StoreError::io(path, e))
}

/// A series' labels as (name, value) ids into a block's sorted symbol table.
pub type LabelPairs = Vec<(u32, u32)>;

/// A series ready for [`BlockWriter::add_series`]: labels and chunks.
pub type SeriesChunks = (LabelPairs, Vec<ChunkRef>);

/// Chunk metadata as stored in a block's series entry.
#[derive(Clone, Copy, Debug)]
pub struct ChunkMeta {
    pub min_t: i64,
    pub max_t: i64,
    pub count: u16,
    pub offset: u64,
    pub len: u32,
}

/// An opened, memory-mapped block.
pub struct Block {
    dir: PathBuf,
    meta: BlockMeta,
    index: Mmap,
    chunks: Arc<Mmap>,
    symtab: usize,
    num_symbols: usize,
    series_table: usize,
    num_series: usize,
    ptable: usize,
    num_postings: usize,
    /// Bytes per offset in the symbol, series and postings tables (4 or 8).
    sym_width: usize,
    series_width: usize,
    postings_width: usize,
    size_bytes: u64,
}

impl std::fmt::Debug for Block {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Block")
            .field("dir", &self.dir)
            .field("meta", &self.meta)
            .finish()
    }
}

impl Block {
    pub fn open(dir: &Path) -> Result<Block, StoreError> {
        let meta_path = dir.join("meta.json");
        let meta_bytes = fs::read(&meta_path).map_err(|e| StoreError::io(&meta_path, e))?;
        let meta: BlockMeta = serde_json::from_slice(&meta_bytes)
            .map_err(|e| StoreError::corrupt(&meta_path, e.to_string()))?;
        let index_path = dir.join("index");
        let index = map_file(&index_path)?;
        let chunks_path = dir.join("chunks");
        let chunks = map_file(&chunks_path)?;
        let bad = |why: &str| StoreError::corrupt(&index_path, why.to_owned());
        if index.len() < INDEX_MAGIC.len() + FOOTER_LEN
            || &index[..8] != INDEX_MAGIC
            || &index[index.len() - 8..] != INDEX_MAGIC
        {
            return Err(bad("missing magic or footer"));
        }
        let footer = index.len() - FOOTER_LEN;
        let crc = u32::from_le_bytes(
            index[footer + 64..footer + 68]
                .try_into()
                .map_err(|_| bad("footer"))?,
        );
        if crc32c::crc32c(&index[..footer + 64]) != crc {
            return Err(bad("index checksum mismatch"));
        }
        let mut d = Decoder::at(&index, footer);
        let mut field = || d.u64_le().map(|v| v as usize).ok_or_else(|| bad("footer"));
        let (symtab, num_symbols, series_table, num_series, ptable, num_postings, widths) = (
            field()?,
            field()?,
            field()?,
            field()?,
            field()?,
            field()?,
            field()?,
        );
        let width = |shift: u32| match (widths >> shift) & 0xff {
            w @ (4 | 8) => Ok(w),
            _ => Err(bad("invalid offset width")),
        };
        let (sym_width, series_width, postings_width) = (width(0)?, width(8)?, width(16)?);
        let fits = |off: usize, n: usize, w: usize| {
            n.checked_mul(w)
                .and_then(|l| off.checked_add(l))
                .is_some_and(|end| end <= footer)
        };
        if !fits(symtab, num_symbols, sym_width)
            || !fits(series_table, num_series, series_width)
            || !fits(ptable, num_postings, 8 + postings_width)
        {
            return Err(bad("section offsets out of range"));
        }
        let size_bytes = (index.len() + chunks.len()) as u64 + meta_bytes.len() as u64;
        Ok(Block {
            dir: dir.to_path_buf(),
            meta,
            index,
            chunks: Arc::new(chunks),
            symtab,
            num_symbols,
            series_table,
            num_series,
            ptable,
            num_postings,
            sym_width,
            series_width,
            postings_width,
            size_bytes,
        })
    }

    pub fn meta(&self) -> &BlockMeta {
        &self.meta
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn size_bytes(&self) -> u64 {
        self.size_bytes
    }

    pub fn overlaps(&self, mint: i64, maxt: i64) -> bool {
        self.meta.min_time <= maxt && self.meta.max_time >= mint
    }

    pub fn num_series(&self) -> usize {
        self.num_series
    }

    pub fn num_symbols(&self) -> usize {
        self.num_symbols
    }

    fn offset_at(&self, pos: usize, width: usize) -> usize {
        read_offset(&self.index[pos..pos + width])
    }

    pub fn symbol(&self, id: u32) -> &str {
        if id as usize >= self.num_symbols {
            return "";
        }
        let off = self.offset_at(self.symtab + id as usize * self.sym_width, self.sym_width);
        Decoder::at(&self.index, off).str().unwrap_or("")
    }

    pub fn find_symbol(&self, s: &str) -> Option<u32> {
        let (mut lo, mut hi) = (0usize, self.num_symbols);
        while lo < hi {
            let mid = (lo + hi) / 2;
            match self.symbol(mid as u32).cmp(s) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return Some(mid as u32),
            }
        }
        None
    }

    /// All symbols in order (for merging symbol tables in compaction).
    pub fn symbols(&self) -> impl Iterator<Item = &str> {
        (0..self.num_symbols as u32).map(|i| self.symbol(i))
    }

    fn ptable_entry(&self, i: usize) -> (u32, u32, usize) {
        let entry = 8 + self.postings_width;
        let p = self.ptable + i * entry;
        let b = &self.index[p..p + entry];
        let n = u32::from_le_bytes(b[0..4].try_into().expect("4 bytes"));
        let v = u32::from_le_bytes(b[4..8].try_into().expect("4 bytes"));
        (n, v, read_offset(&b[8..]))
    }

    /// First table entry not less than (n, v).
    fn ptable_lower_bound(&self, n: u32, v: u32) -> usize {
        let (mut lo, mut hi) = (0, self.num_postings);
        while lo < hi {
            let mid = (lo + hi) / 2;
            let (en, ev, _) = self.ptable_entry(mid);
            if (en, ev) < (n, v) {
                lo = mid + 1
            } else {
                hi = mid
            }
        }
        lo
    }

    fn read_postings(&self, off: usize) -> Vec<SeriesId> {
        let mut d = Decoder::at(&self.index, off);
        let n = d.uvarint().unwrap_or(0) as usize;
        let mut out = Vec::with_capacity(n.min(self.num_series));
        let mut id = 0u32;
        for _ in 0..n {
            let Some(delta) = d.uvarint() else { break };
            id = id.wrapping_add(delta as u32);
            out.push(id);
        }
        out
    }

    /// Label pairs (symbol ids) and chunk metadata of series `i`.
    pub fn series(&self, i: SeriesId) -> Result<(LabelPairs, Vec<ChunkMeta>), StoreError> {
        let bad = || {
            StoreError::corrupt(
                &self.dir.join("index"),
                format!("series entry {i} is malformed"),
            )
        };
        if i as usize >= self.num_series {
            return Err(bad());
        }
        let off = self.offset_at(
            self.series_table + i as usize * self.series_width,
            self.series_width,
        );
        let mut d = Decoder::at(&self.index, off);
        let n = d.uvarint().ok_or_else(bad)? as usize;
        let mut labels = Vec::with_capacity(n.min(256));
        for _ in 0..n {
            let name = d.uvarint().ok_or_else(bad)? as u32;
            let value = d.uvarint().ok_or_else(bad)? as u32;
            labels.push((name, value));
        }
        let nchunks = d.uvarint().ok_or_else(bad)? as usize;
        let mut offset = d.uvarint().ok_or_else(bad)?;
        let mut chunks = Vec::with_capacity(nchunks.min(1 << 16));
        let mut prev_max = 0i64;
        for k in 0..nchunks {
            let delta = d.varint().ok_or_else(bad)?;
            let min_t = if k == 0 {
                delta
            } else {
                prev_max.wrapping_add(delta)
            };
            let max_t = min_t.wrapping_add(d.uvarint().ok_or_else(bad)? as i64);
            let count = d.uvarint().ok_or_else(bad)? as u16;
            let len = d.uvarint().ok_or_else(bad)? as u32;
            chunks.push(ChunkMeta {
                min_t,
                max_t,
                count,
                offset,
                len,
            });
            offset += len as u64 + 4;
            prev_max = max_t;
        }
        Ok((labels, chunks))
    }

    pub fn labels_of(&self, pairs: &[(u32, u32)]) -> Labels {
        Labels::from_sorted_refs(pairs.iter().map(|&(n, v)| (self.symbol(n), self.symbol(v))))
    }

    /// A chunk's bytes, checked against its CRC.
    pub fn chunk(&self, m: &ChunkMeta) -> Result<ChunkRef, StoreError> {
        let start = m.offset as usize;
        let end = start + m.len as usize;
        let bad = || {
            StoreError::corrupt(
                &self.dir.join("chunks"),
                format!("chunk at offset {start} is damaged"),
            )
        };
        let crc_bytes = self.chunks.get(end..end + 4).ok_or_else(bad)?;
        let data = &self.chunks[start..end];
        if crc32c::crc32c(data).to_le_bytes() != crc_bytes {
            return Err(bad());
        }
        Ok(ChunkRef {
            min_t: m.min_t,
            max_t: m.max_t,
            count: m.count,
            bytes: ChunkBytes::Mapped {
                map: self.chunks.clone(),
                start,
                len: m.len as usize,
            },
            last_value: None,
        })
    }

    pub fn select(
        &self,
        matchers: &[lastmile_model::Matcher],
        mint: i64,
        maxt: i64,
        with_chunks: bool,
    ) -> Result<Vec<SelectedSeries>, StoreError> {
        let ids = crate::postings::select_postings(self, matchers);
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            let (labels, metas) = self.series(id)?;
            if !metas.iter().any(|m| m.min_t <= maxt && m.max_t >= mint) {
                continue;
            }
            let chunks = if with_chunks {
                metas
                    .iter()
                    .filter(|m| m.min_t <= maxt && m.max_t >= mint)
                    .map(|m| self.chunk(m))
                    .collect::<Result<Vec<_>, _>>()?
            } else {
                Vec::new()
            };
            out.push(SelectedSeries {
                labels: self.labels_of(&labels),
                chunks,
            });
        }
        // Series ids follow label order already.
        Ok(out)
    }

    pub fn label_names(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        let mut i = 0;
        while i < self.num_postings {
            let (n, _, _) = self.ptable_entry(i);
            out.push(self.symbol(n).to_owned());
            i = self.ptable_lower_bound(n.saturating_add(1), 0).max(i + 1);
        }
        out
    }

    pub fn label_values(&self, name: &str) -> Vec<String> {
        let Some(n) = self.find_symbol(name) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        let mut i = self.ptable_lower_bound(n, 0);
        while i < self.num_postings {
            let (en, ev, _) = self.ptable_entry(i);
            if en != n {
                break;
            }
            out.push(self.symbol(ev).to_owned());
            i += 1;
        }
        out
    }
}

impl LabelIndex for Block {
    fn postings(&self, name: &str, value: &str) -> Vec<SeriesId> {
        let (Some(n), Some(v)) = (self.find_symbol(name), self.find_symbol(value)) else {
            return Vec::new();
        };
        let i = self.ptable_lower_bound(n, v);
        if i < self.num_postings {
            let (en, ev, off) = self.ptable_entry(i);
            if (en, ev) == (n, v) {
                return self.read_postings(off);
            }
        }
        Vec::new()
    }

    fn postings_where(&self, name: &str, f: &mut dyn FnMut(&str) -> bool) -> Vec<SeriesId> {
        let Some(n) = self.find_symbol(name) else {
            return Vec::new();
        };
        let mut lists = Vec::new();
        let mut i = self.ptable_lower_bound(n, 0);
        while i < self.num_postings {
            let (en, ev, off) = self.ptable_entry(i);
            if en != n {
                break;
            }
            if f(self.symbol(ev)) {
                lists.push(self.read_postings(off));
            }
            i += 1;
        }
        crate::postings::union(lists)
    }

    fn all_postings(&self) -> Vec<SeriesId> {
        (0..self.num_series as u32).collect()
    }
}

fn map_file(path: &Path) -> Result<Mmap, StoreError> {
    let f = File::open(path).map_err(|e| StoreError::io(path, e))?;
    let len = f.metadata().map_err(|e| StoreError::io(path, e))?.len();
    if len == 0 {
        return Err(StoreError::corrupt(path, "empty file"));
    }
    // SAFETY: block files are immutable once renamed into place and are only deleted, never
    // rewritten, while mapped (unlinking keeps the mapping valid).
    unsafe { Mmap::map(&f) }.map_err(|e| StoreError::io(path, e))
}

/// Builds a sorted symbol table from strings and the id lookup for it.
pub fn sorted_symbols<'a>(
    strings: impl IntoIterator<Item = &'a str>,
) -> (Vec<String>, HashMap<&'a str, u32>) {
    let mut v: Vec<&str> = strings.into_iter().collect();
    v.sort_unstable();
    v.dedup();
    let ids = v.iter().enumerate().map(|(i, s)| (*s, i as u32)).collect();
    (v.into_iter().map(str::to_owned).collect(), ids)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunk::ChunkAppender;
    use lastmile_model::{MatchOp, Matcher};

    fn chunk(samples: &[(i64, f64)]) -> ChunkRef {
        let mut a = ChunkAppender::new();
        for &(t, v) in samples {
            a.append(t, v);
        }
        ChunkRef::from(&a.seal())
    }

    #[test]
    fn write_then_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let series = [
            vec![("__name__", "up"), ("job", "api")],
            vec![("__name__", "up"), ("job", "db")],
            vec![("__name__", "x"), ("job", "api"), ("zone", "a")],
        ];
        let (symbols, ids) = sorted_symbols(series.iter().flatten().flat_map(|(n, v)| [*n, *v]));
        let mut w = BlockWriter::new(dir.path(), symbols).unwrap();
        for (i, s) in series.iter().enumerate() {
            let labels: Vec<(u32, u32)> = s.iter().map(|(n, v)| (ids[n], ids[v])).collect();
            w.add_series(&labels, &[chunk(&[(1000, i as f64), (2000, 2.0)])])
                .unwrap();
        }
        let meta = w.finish(1, vec![]).unwrap().unwrap();
        assert_eq!(
            (meta.min_time, meta.max_time, meta.stats.num_samples),
            (1000, 2000, 6)
        );
        let b = Block::open(&dir.path().join(&meta.ulid)).unwrap();
        let m = |op, n: &str, v: &str| Matcher::new(op, n, v).unwrap();
        let got = b
            .select(&[m(MatchOp::Equal, "job", "api")], 0, 5000, true)
            .unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[1].labels.get("zone"), Some("a"));
        assert_eq!(
            got[1]
                .samples(0, 5000)
                .iter()
                .map(|s| s.v)
                .collect::<Vec<_>>(),
            vec![2.0, 2.0]
        );
        // `zone` absent counts as empty: `zone!="a"` keeps the two `up` series.
        let got = b
            .select(&[m(MatchOp::NotEqual, "zone", "a")], 0, 5000, false)
            .unwrap();
        assert_eq!(got.len(), 2);
        let got = b
            .select(&[m(MatchOp::Regex, "job", "a.*|d.")], 0, 5000, false)
            .unwrap();
        assert_eq!(got.len(), 3);
        assert!(
            b.select(&[m(MatchOp::Equal, "job", "api")], 3000, 5000, false)
                .unwrap()
                .is_empty()
        );
        assert_eq!(b.label_names(), vec!["__name__", "job", "zone"]);
        assert_eq!(b.label_values("job"), vec!["api", "db"]);
    }

    #[test]
    fn offsets_round_trip_in_both_widths() {
        let mut out = Vec::new();
        put_offset(&mut out, 0xdead_beef, 4);
        put_offset(&mut out, 0x1_0000_0007, 8);
        assert_eq!(read_offset(&out[..4]), 0xdead_beef);
        assert_eq!(read_offset(&out[4..]), 0x1_0000_0007);
        assert_eq!(offset_width(&out), 4);
    }

    #[test]
    fn damaged_index_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (symbols, ids) = sorted_symbols(["__name__", "up"]);
        let mut w = BlockWriter::new(dir.path(), symbols).unwrap();
        w.add_series(&[(ids["__name__"], ids["up"])], &[chunk(&[(1, 1.0)])])
            .unwrap();
        let meta = w.finish(1, vec![]).unwrap().unwrap();
        let path = dir.path().join(&meta.ulid).join("index");
        let mut bytes = fs::read(&path).unwrap();
        bytes[10] ^= 0xff;
        fs::write(&path, bytes).unwrap();
        let err = Block::open(&dir.path().join(&meta.ulid)).unwrap_err();
        assert!(err.to_string().contains("checksum"), "{err}");
    }
}
