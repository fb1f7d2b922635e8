//! The in-memory head: recent samples of every active series, appendable and queryable.
//!
//! Appends are serialised by one writer lock (decoding, the expensive part, happens before
//! it, in parallel). Inside it, a series is found by the hash of its labels in a table of
//! series pointers, compared label by label without building anything, and its samples go
//! into its open compressed chunk. The WAL frames for the request are encoded in the same
//! pass, so the log's order is the head's order and replay reproduces the head exactly.
//!
//! Readers never take the writer lock: they go through the label index (a read-write
//! lock), then lock each series briefly to take its chunks.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use hashbrown::{HashMap, HashTable};
use lastmile_model::{LabelRef, Labels, Matcher, MetricMetadata, WriteBatch};
use parking_lot::{Mutex, RwLock};
use serde::Serialize;

use crate::block::SeriesChunks;
use crate::chunk::{ChunkAppender, SAMPLES_PER_CHUNK, SealedChunk};
use crate::codec::{Decoder, put_str, put_uvarint, put_varint};
use crate::error::StoreError;
use crate::metrics::{ReasonLabel, StoreMetrics};
use crate::postings::{LabelIndex, SeriesId, select_postings};
use crate::series::{ChunkBytes, ChunkRef, SelectedSeries};
use crate::symbols::{SymbolId, Symbols};
use crate::wal::{REC_EXEMPLARS, REC_METADATA, REC_SAMPLES, REC_SERIES, Wal, write_frame};

/// What happened to the samples of one write.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct AppendOutcome {
    /// Samples stored.
    pub samples: u64,
    /// Older than the newest sample of their series.
    pub out_of_order: u64,
    /// Older than the head accepts (already persisted to blocks, or more than half a
    /// block range behind the newest sample).
    pub too_old: u64,
    /// Same timestamp as the newest sample of their series but another value. (An
    /// identical repeat, as a client retry sends, is accepted and stored once.)
    pub duplicate_timestamp: u64,
    /// Further ahead of the server's clock than [`MAX_FUTURE_MS`]: one client with a
    /// broken clock must not push the head's time so far ahead that everyone else's
    /// samples become too old.
    pub too_far_in_future: u64,
    pub exemplars: u64,
    pub exemplars_rejected: u64,
    pub series_created: u64,
    #[serde(skip)]
    pub wal_seq: Option<u64>,
}

impl AppendOutcome {
    pub fn rejected(&self) -> u64 {
        self.out_of_order + self.too_old + self.duplicate_timestamp + self.too_far_in_future
    }
}

pub(crate) struct MemSeries {
    id: SeriesId,
    hash: u64,
    /// Symbol ids: name, value, name, value … sorted by name.
    labels: Box<[SymbolId]>,
    data: Mutex<SeriesData>,
}

struct SeriesData {
    sealed: Vec<SealedChunk>,
    open: Option<ChunkAppender>,
    /// Newest sample; `i64::MIN` before the first.
    last_t: i64,
    last_v: u64,
    last_exemplar_t: i64,
}

impl SeriesData {
    fn min_t(&self) -> Option<i64> {
        self.sealed
            .first()
            .map(|c| c.min_t)
            .or(self.open.as_ref().map(|o| o.min_t()))
    }

    /// Whether the open chunk or the newest sealed one holds exactly `(t, v)`.
    fn holds_recent(&self, t: i64, v_bits: u64) -> bool {
        let same = |s: lastmile_model::Sample| s.t == t && s.v.to_bits() == v_bits;
        if let Some(o) = &self.open
            && o.count() > 0
            && t >= o.min_t()
        {
            return o.iter().any(same);
        }
        self.sealed
            .last()
            .is_some_and(|c| t >= c.min_t && t <= c.max_t && c.iter().any(same))
    }

    fn is_empty(&self) -> bool {
        self.sealed.is_empty() && self.open.is_none()
    }

    fn chunk_refs(&self, mint: i64, maxt: i64) -> Vec<ChunkRef> {
        let mut out: Vec<ChunkRef> = self
            .sealed
            .iter()
            .filter(|c| c.min_t <= maxt && c.max_t >= mint)
            .map(ChunkRef::from)
            .collect();
        if let Some(o) = &self.open
            && o.count() > 0
            && o.min_t() <= maxt
            && o.max_t() >= mint
        {
            out.push(ChunkRef {
                min_t: o.min_t(),
                max_t: o.max_t(),
                count: o.count(),
                bytes: ChunkBytes::Owned(o.bytes().into()),
                last_value: Some(o.last_value()),
            });
        }
        out
    }
}

/// Symbols and postings: the head's inverted index.
#[derive(Default)]
pub(crate) struct MemIndex {
    symbols: Symbols,
    postings: HashMap<SymbolId, HashMap<SymbolId, Vec<SeriesId>>>,
    all: Vec<SeriesId>,
}

impl MemIndex {
    fn labels_of(&self, syms: &[SymbolId]) -> Labels {
        Labels::from_sorted_refs(
            syms.chunks_exact(2)
                .map(|p| (self.symbols.get(p[0]), self.symbols.get(p[1]))),
        )
    }

    fn same_labels(&self, syms: &[SymbolId], labels: &[LabelRef<'_>]) -> bool {
        syms.len() == labels.len() * 2
            && syms
                .chunks_exact(2)
                .zip(labels)
                .all(|(p, l)| self.symbols.get(p[0]) == l.name && self.symbols.get(p[1]) == l.value)
    }
}

impl LabelIndex for MemIndex {
    fn postings(&self, name: &str, value: &str) -> Vec<SeriesId> {
        let (Some(n), Some(v)) = (self.symbols.lookup(name), self.symbols.lookup(value)) else {
            return Vec::new();
        };
        self.postings
            .get(&n)
            .and_then(|vals| vals.get(&v))
            .cloned()
            .unwrap_or_default()
    }

    fn postings_where(&self, name: &str, f: &mut dyn FnMut(&str) -> bool) -> Vec<SeriesId> {
        let Some(vals) = self
            .symbols
            .lookup(name)
            .and_then(|n| self.postings.get(&n))
        else {
            return Vec::new();
        };
        let lists: Vec<Vec<SeriesId>> = vals
            .iter()
            .filter(|(v, _)| f(self.symbols.get(**v)))
            .map(|(_, p)| p.clone())
            .collect();
        crate::postings::union(lists)
    }

    fn all_postings(&self) -> Vec<SeriesId> {
        self.all.clone()
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Exemplar {
    pub labels: Labels,
    pub value: f64,
    pub timestamp: i64,
}

struct StoredExemplar {
    series: SeriesId,
    exemplar: Exemplar,
}

struct WriterState {
    by_hash: HashTable<Arc<MemSeries>>,
    next_id: SeriesId,
    /// WAL frames of the request being appended; reused across requests.
    frames: Vec<u8>,
    new_series: Vec<usize>,
    resolved: Vec<Option<Arc<MemSeries>>>,
}

pub struct Head {
    writer: Mutex<WriterState>,
    index: RwLock<MemIndex>,
    series: RwLock<HashMap<SeriesId, Arc<MemSeries>>>,
    exemplars: Mutex<VecDeque<StoredExemplar>>,
    max_exemplars: usize,
    metadata: RwLock<BTreeMap<String, MetricMetadata>>,
    /// Samples older than this are persisted already and refused.
    min_valid_t: AtomicI64,
    min_t: AtomicI64,
    max_t: AtomicI64,
    block_range: i64,
    num_samples: AtomicU64,
    chunk_bytes: AtomicI64,
    metrics: Arc<StoreMetrics>,
}

/// Timestamps are kept within Prometheus's API range (`i64::MIN/2 ..= i64::MAX/2`), so the
/// extremes stay free as "no data" markers and time arithmetic has room.
use lastmile_model::time::{MAX_TIME_MS, MIN_TIME_MS};

/// How far ahead of the server's clock a sample may be.
pub const MAX_FUTURE_MS: i64 = 10 * 60 * 1000;

/// Start of the block window `t` falls in.
pub fn window_start(t: i64, range: i64) -> i64 {
    // Saturating: a hostile timestamp near i64::MIN must not overflow.
    t.saturating_sub(t.rem_euclid(range))
}

impl Head {
    pub fn new(block_range_ms: i64, max_exemplars: usize, metrics: Arc<StoreMetrics>) -> Self {
        Head {
            writer: Mutex::new(WriterState {
                by_hash: HashTable::new(),
                next_id: 1,
                frames: Vec::new(),
                new_series: Vec::new(),
                resolved: Vec::new(),
            }),
            index: RwLock::new(MemIndex::default()),
            series: RwLock::new(HashMap::new()),
            exemplars: Mutex::new(VecDeque::new()),
            max_exemplars,
            metadata: RwLock::new(BTreeMap::new()),
            min_valid_t: AtomicI64::new(i64::MIN),
            min_t: AtomicI64::new(i64::MAX),
            max_t: AtomicI64::new(i64::MIN),
            block_range: block_range_ms,
            num_samples: AtomicU64::new(0),
            chunk_bytes: AtomicI64::new(0),
            metrics,
        }
    }

    pub fn min_t(&self) -> Option<i64> {
        let v = self.min_t.load(Ordering::Acquire);
        (v != i64::MAX).then_some(v)
    }

    pub fn max_t(&self) -> Option<i64> {
        let v = self.max_t.load(Ordering::Acquire);
        (v != i64::MIN).then_some(v)
    }

    pub fn num_series(&self) -> usize {
        self.series.read().len()
    }

    pub fn num_samples(&self) -> u64 {
        self.num_samples.load(Ordering::Relaxed)
    }

    pub fn chunk_bytes(&self) -> i64 {
        self.chunk_bytes.load(Ordering::Relaxed)
    }

    pub fn min_valid_t(&self) -> i64 {
        self.min_valid_t.load(Ordering::Acquire)
    }

    /// Refuses samples older than `t` from now on (data before it is in blocks).
    pub fn set_min_valid_t(&self, t: i64) {
        let _w = self.writer.lock();
        self.min_valid_t.fetch_max(t, Ordering::AcqRel);
    }

    /// Appends a decoded batch. With a WAL, the frames are submitted before returning and
    /// the outcome carries the sequence number the caller must await before acknowledging.
    /// Samples after `max_valid_t` are refused (the caller passes its clock plus
    /// [`MAX_FUTURE_MS`]).
    pub fn append(
        &self,
        batch: &WriteBatch<'_>,
        wal: Option<&Wal>,
        max_valid_t: i64,
    ) -> Result<AppendOutcome, StoreError> {
        let mut w = self.writer.lock();
        let w = &mut *w;
        let mut out = AppendOutcome::default();
        w.frames.clear();
        self.resolve_series(w, batch, wal.is_some(), &mut out)?;

        // The oldest time still appendable: behind the newest sample by at most half a
        // block range (as Prometheus), and never into persisted blocks.
        let head_max = self.max_t.load(Ordering::Acquire);
        let half_range_back = if head_max == i64::MIN {
            i64::MIN
        } else {
            head_max.saturating_sub(self.block_range / 2)
        };
        let min_valid = self
            .min_valid_t
            .load(Ordering::Acquire)
            .max(half_range_back)
            .max(MIN_TIME_MS);
        let max_valid = max_valid_t.min(MAX_TIME_MS);
        self.append_samples(w, batch, min_valid..=max_valid, wal.is_some(), &mut out);
        self.append_exemplars(w, batch, wal.is_some(), &mut out);
        self.append_metadata(w, batch, wal.is_some());

        if let Some(wal) = wal
            && !w.frames.is_empty()
        {
            out.wal_seq = Some(wal.submit(&w.frames)?);
        }
        self.record_outcome(&out);
        Ok(out)
    }

    fn record_outcome(&self, out: &AppendOutcome) {
        let m = &self.metrics;
        m.samples_appended.inc_by(out.samples);
        m.exemplars_appended.inc_by(out.exemplars);
        for (reason, n) in [
            ("out_of_order", out.out_of_order),
            ("too_old", out.too_old),
            ("duplicate_timestamp", out.duplicate_timestamp),
            ("too_far_in_future", out.too_far_in_future),
        ] {
            if n > 0 {
                m.samples_rejected
                    .get_or_create(&ReasonLabel { reason })
                    .inc_by(n);
            }
        }
        m.head_chunk_bytes
            .set(self.chunk_bytes.load(Ordering::Relaxed));
    }

    /// Finds or creates the series of every batch entry, leaving them in `w.resolved`.
    fn resolve_series(
        &self,
        w: &mut WriterState,
        batch: &WriteBatch<'_>,
        log: bool,
        out: &mut AppendOutcome,
    ) -> Result<(), StoreError> {
        w.resolved.clear();
        w.new_series.clear();
        {
            let index = self.index.read();
            for (i, s) in batch.series.iter().enumerate() {
                let labels = batch.series_labels(s);
                let found = w
                    .by_hash
                    .find(s.hash, |m| {
                        m.hash == s.hash && index.same_labels(&m.labels, labels)
                    })
                    .cloned();
                if found.is_none() {
                    w.new_series.push(i);
                }
                w.resolved.push(found);
            }
        }
        if w.new_series.is_empty() {
            return Ok(());
        }
        // Check id room first so a request never creates some of its series and fails.
        if (w.next_id as u64) + (w.new_series.len() as u64) >= SeriesId::MAX as u64 {
            return Err(StoreError::SeriesIdsExhausted(self.num_series() as u32));
        }
        let mut index = self.index.write();
        let mut table = self.series.write();
        let mut created = 0u64;
        let mut record = Vec::new();
        for k in 0..w.new_series.len() {
            let i = w.new_series[k];
            let s = &batch.series[i];
            let labels = batch.series_labels(s);
            // The same series may appear twice in one request.
            if let Some(m) = w.by_hash.find(s.hash, |m| {
                m.hash == s.hash && index.same_labels(&m.labels, labels)
            }) {
                w.resolved[i] = Some(m.clone());
                continue;
            }
            let id = w.next_id;
            w.next_id += 1;
            let m = create_series(&mut index, id, s.hash, labels.iter().copied());
            if log {
                put_uvarint(&mut record, id as u64);
                put_uvarint(&mut record, labels.len() as u64);
                for l in labels {
                    put_str(&mut record, l.name);
                    put_str(&mut record, l.value);
                }
            }
            table.insert(id, m.clone());
            w.by_hash.insert_unique(s.hash, m.clone(), |m| m.hash);
            w.resolved[i] = Some(m);
            created += 1;
        }
        if log && created > 0 {
            write_frame(&mut w.frames, REC_SERIES, |b| {
                put_uvarint(b, created);
                b.extend_from_slice(&record);
            });
        }
        out.series_created = created;
        self.metrics.series_created.inc_by(created);
        self.metrics.head_series.set(table.len() as i64);
        Ok(())
    }

    fn append_samples(
        &self,
        w: &mut WriterState,
        batch: &WriteBatch<'_>,
        valid: std::ops::RangeInclusive<i64>,
        log: bool,
        out: &mut AppendOutcome,
    ) {
        let (min_valid, max_valid) = (*valid.start(), *valid.end());
        let frames = &mut w.frames;
        let resolved = &w.resolved;
        let mut batch_min = i64::MAX;
        let mut batch_max = i64::MIN;
        let mut bytes_delta = 0i64;
        let mut body = |b: &mut Vec<u8>| {
            let count_pos = b.len();
            // Room for the count, fixed width so it can be filled in afterwards.
            b.extend_from_slice(&[0u8; 5]);
            let (mut prev_id, mut prev_t, mut n) = (0i64, 0i64, 0u64);
            for (s, m) in batch.series.iter().zip(resolved) {
                let Some(m) = m else { continue };
                let samples = batch.series_samples(s);
                if samples.is_empty() {
                    continue;
                }
                let mut d = m.data.lock();
                for smp in samples {
                    if smp.t < min_valid {
                        out.too_old += 1;
                        continue;
                    }
                    if smp.t > max_valid {
                        out.too_far_in_future += 1;
                        continue;
                    }
                    if smp.t < d.last_t {
                        // A client retry resends samples stored already: accept those
                        // silently. Only the recent chunks are searched (retries are recent).
                        if !d.holds_recent(smp.t, smp.v.to_bits()) {
                            out.out_of_order += 1;
                        }
                        continue;
                    }
                    if smp.t == d.last_t {
                        if smp.v.to_bits() != d.last_v {
                            out.duplicate_timestamp += 1;
                        }
                        continue;
                    }
                    bytes_delta += append_to_series(&mut d, smp.t, smp.v, self.block_range);
                    out.samples += 1;
                    batch_min = batch_min.min(smp.t);
                    batch_max = batch_max.max(smp.t);
                    if log {
                        put_varint(b, m.id as i64 - prev_id);
                        put_varint(b, smp.t.wrapping_sub(prev_t));
                        b.extend_from_slice(&smp.v.to_bits().to_le_bytes());
                        prev_id = m.id as i64;
                        prev_t = smp.t;
                        n += 1;
                    }
                }
            }
            write_fixed_uvarint5(&mut b[count_pos..count_pos + 5], n);
        };
        if log {
            let start = frames.len();
            write_frame(frames, REC_SAMPLES, &mut body);
            if out.samples == 0 {
                frames.truncate(start);
            }
        } else {
            let mut scratch = Vec::new();
            body(&mut scratch);
        }
        if out.samples > 0 {
            self.min_t.fetch_min(batch_min, Ordering::AcqRel);
            self.max_t.fetch_max(batch_max, Ordering::AcqRel);
            self.num_samples.fetch_add(out.samples, Ordering::Relaxed);
            self.chunk_bytes.fetch_add(bytes_delta, Ordering::Relaxed);
        }
    }

    fn append_exemplars(
        &self,
        w: &mut WriterState,
        batch: &WriteBatch<'_>,
        log: bool,
        out: &mut AppendOutcome,
    ) {
        out.exemplars_rejected += batch.invalid_exemplars as u64;
        if batch.exemplars.is_empty() {
            return;
        }
        let mut record = Vec::new();
        let mut kept = 0u64;
        let mut ring = self.exemplars.lock();
        for (s, m) in batch.series.iter().zip(&w.resolved) {
            let Some(m) = m else { continue };
            for e in batch.series_exemplars(s) {
                let mut d = m.data.lock();
                // Prometheus keeps exemplars per series in time order and drops repeats.
                if e.t <= d.last_exemplar_t {
                    if e.t < d.last_exemplar_t {
                        out.exemplars_rejected += 1;
                    }
                    continue;
                }
                d.last_exemplar_t = e.t;
                drop(d);
                let labels = batch.exemplar_labels(e);
                if log {
                    put_uvarint(&mut record, m.id as u64);
                    put_varint(&mut record, e.t);
                    record.extend_from_slice(&e.v.to_bits().to_le_bytes());
                    put_uvarint(&mut record, labels.len() as u64);
                    for l in labels {
                        put_str(&mut record, l.name);
                        put_str(&mut record, l.value);
                    }
                }
                push_exemplar(
                    &mut ring,
                    self.max_exemplars,
                    m.id,
                    Labels::from_pairs(labels.iter().map(|l| (l.name, l.value))),
                    e.t,
                    e.v,
                );
                kept += 1;
            }
        }
        out.exemplars = kept;
        if log && kept > 0 {
            write_frame(&mut w.frames, REC_EXEMPLARS, |b| {
                put_uvarint(b, kept);
                b.extend_from_slice(&record);
            });
        }
    }

    fn append_metadata(&self, w: &mut WriterState, batch: &WriteBatch<'_>, log: bool) {
        if batch.metadata.is_empty() {
            return;
        }
        // Prometheus resends metadata every minute: log only what changed.
        let changed: Vec<_> = {
            let md = self.metadata.read();
            batch
                .metadata
                .iter()
                .filter(|m| !m.metric_family_name.is_empty())
                .filter(|m| {
                    md.get(m.metric_family_name)
                        .is_none_or(|old| *old != MetricMetadata::from(**m))
                })
                .collect()
        };
        if changed.is_empty() {
            return;
        }
        let mut md = self.metadata.write();
        for m in &changed {
            md.insert(m.metric_family_name.to_owned(), MetricMetadata::from(**m));
        }
        if log {
            write_frame(&mut w.frames, REC_METADATA, |b| {
                put_uvarint(b, changed.len() as u64);
                for m in &changed {
                    put_str(b, m.metric_family_name);
                    b.push(m.metric_type.to_wire());
                    put_str(b, m.help);
                    put_str(b, m.unit);
                }
            });
        }
    }

    /// Applies one WAL frame during startup. `aliases` maps series ids of records written
    /// for a series that was re-created to the id it has now.
    pub fn replay_frame(
        &self,
        frame: &[u8],
        aliases: &mut HashMap<SeriesId, SeriesId>,
    ) -> Result<(), &'static str> {
        let mut d = Decoder::new(frame);
        let rec_type = d.u8().ok_or("empty record")?;
        let count = d.uvarint().ok_or("truncated record count")?;
        let mut w = self.writer.lock();
        match rec_type {
            REC_SERIES => {
                let mut index = self.index.write();
                let mut table = self.series.write();
                let mut labels: Vec<LabelRef<'_>> = Vec::new();
                for _ in 0..count {
                    let id = read_series_id(&mut d).ok_or("bad series id")?;
                    let n = d.uvarint().ok_or("truncated label count")?;
                    labels.clear();
                    for _ in 0..n {
                        let name = d.str().ok_or("bad label name")?;
                        let value = d.str().ok_or("bad label value")?;
                        labels.push(LabelRef { name, value });
                    }
                    // The writer logs labels sorted, unique and non-empty; anything else is
                    // damage, and must not become a series the index cannot look up.
                    if labels.is_empty()
                        || labels
                            .iter()
                            .any(|l| l.name.is_empty() || l.value.is_empty())
                        || !labels.is_sorted_by(|a, b| a.name < b.name)
                    {
                        return Err("series labels not sorted, unique and non-empty");
                    }
                    let hash = lastmile_model::hash_labels(labels.iter().copied());
                    if let Some(existing) = w.by_hash.find(hash, |m| {
                        m.hash == hash && index.same_labels(&m.labels, &labels)
                    }) {
                        if existing.id != id {
                            aliases.insert(id, existing.id);
                        }
                        continue;
                    }
                    if table.contains_key(&id) {
                        return Err("series id reused for other labels");
                    }
                    let m = create_series(&mut index, id, hash, labels.iter().copied());
                    table.insert(id, m.clone());
                    w.by_hash.insert_unique(hash, m, |m| m.hash);
                    w.next_id = w.next_id.max(id.saturating_add(1));
                }
                self.metrics.head_series.set(table.len() as i64);
            }
            REC_SAMPLES => {
                let table = self.series.read();
                let min_valid = self.min_valid_t.load(Ordering::Acquire).max(MIN_TIME_MS);
                let (mut id, mut t) = (0i64, 0i64);
                let mut stats = ReplayedSamples::default();
                // Whatever part of a damaged record was applied is still accounted for.
                let result = (|| -> Result<(), &'static str> {
                    for _ in 0..count {
                        id = id.wrapping_add(d.varint().ok_or("truncated sample id")?);
                        t = t.wrapping_add(d.varint().ok_or("truncated sample time")?);
                        let v = f64::from_bits(d.u64_le().ok_or("truncated sample value")?);
                        let Ok(raw) = SeriesId::try_from(id) else {
                            continue;
                        };
                        let sid = aliases.get(&raw).copied().unwrap_or(raw);
                        let Some(m) = table.get(&sid) else { continue };
                        let mut data = m.data.lock();
                        if t < min_valid || t <= data.last_t || t > MAX_TIME_MS {
                            continue;
                        }
                        stats.bytes += append_to_series(&mut data, t, v, self.block_range);
                        stats.add(t);
                    }
                    Ok(())
                })();
                if stats.samples > 0 {
                    self.min_t.fetch_min(stats.min_t, Ordering::AcqRel);
                    self.max_t.fetch_max(stats.max_t, Ordering::AcqRel);
                    self.num_samples.fetch_add(stats.samples, Ordering::Relaxed);
                    self.chunk_bytes.fetch_add(stats.bytes, Ordering::Relaxed);
                }
                result?;
            }
            REC_EXEMPLARS => {
                let table = self.series.read();
                let mut ring = self.exemplars.lock();
                for _ in 0..count {
                    let id = read_series_id(&mut d).ok_or("bad exemplar series id")?;
                    let t = d.varint().ok_or("truncated exemplar time")?;
                    let v = f64::from_bits(d.u64_le().ok_or("truncated exemplar value")?);
                    let n = d.uvarint().ok_or("truncated exemplar labels")?;
                    let mut pairs = Vec::new();
                    for _ in 0..n {
                        pairs.push((
                            d.str().ok_or("bad exemplar label")?,
                            d.str().ok_or("bad exemplar label")?,
                        ));
                    }
                    let sid = aliases.get(&id).copied().unwrap_or(id);
                    if let Some(m) = table.get(&sid) {
                        let mut data = m.data.lock();
                        if t > data.last_exemplar_t {
                            data.last_exemplar_t = t;
                            push_exemplar(
                                &mut ring,
                                self.max_exemplars,
                                sid,
                                Labels::from_pairs(pairs),
                                t,
                                v,
                            );
                        }
                    }
                }
            }
            REC_METADATA => {
                let mut md = self.metadata.write();
                for _ in 0..count {
                    let name = d.str().ok_or("bad metadata name")?;
                    let metric_type = lastmile_model::MetricType::from_wire(
                        d.u8().ok_or("bad metadata type")? as u64,
                    );
                    let help = d.str().ok_or("bad metadata help")?.to_owned();
                    let unit = d.str().ok_or("bad metadata unit")?.to_owned();
                    md.insert(
                        name.to_owned(),
                        MetricMetadata {
                            metric_type,
                            help,
                            unit,
                        },
                    );
                }
            }
            _ => return Err("unknown record type"),
        }
        Ok(())
    }

    /// Rewrites a WAL frame for a checkpoint: keeps series still in the head and samples
    /// and exemplars at or after `min_t`.
    pub fn checkpoint_frame(&self, frame: &[u8], min_t: i64, out: &mut Vec<u8>) {
        let mut d = Decoder::new(frame);
        let (Some(rec_type), Some(count)) = (d.u8(), d.uvarint()) else {
            return;
        };
        let table = self.series.read();
        let mut kept = 0u64;
        let mut body = Vec::new();
        match rec_type {
            REC_SERIES => {
                for _ in 0..count {
                    let start = d.pos;
                    let Some(id) = read_series_id(&mut d) else {
                        return;
                    };
                    let Some(n) = d.uvarint() else { return };
                    if skip_labels(&mut d, n).is_none() {
                        return;
                    }
                    if table.contains_key(&id) {
                        body.extend_from_slice(&frame[start..d.pos]);
                        kept += 1;
                    }
                }
            }
            REC_SAMPLES => {
                let (mut id, mut t) = (0i64, 0i64);
                let (mut prev_id, mut prev_t) = (0i64, 0i64);
                for _ in 0..count {
                    let (Some(di), Some(dt), Some(v)) = (d.varint(), d.varint(), d.u64_le()) else {
                        return;
                    };
                    id = id.wrapping_add(di);
                    t = t.wrapping_add(dt);
                    let alive = SeriesId::try_from(id).is_ok_and(|id| table.contains_key(&id));
                    if t >= min_t && alive {
                        put_varint(&mut body, id.wrapping_sub(prev_id));
                        put_varint(&mut body, t.wrapping_sub(prev_t));
                        body.extend_from_slice(&v.to_le_bytes());
                        prev_id = id;
                        prev_t = t;
                        kept += 1;
                    }
                }
            }
            REC_EXEMPLARS => {
                for _ in 0..count {
                    let start = d.pos;
                    let (Some(id), Some(t), Some(_v), Some(n)) =
                        (read_series_id(&mut d), d.varint(), d.u64_le(), d.uvarint())
                    else {
                        return;
                    };
                    if skip_labels(&mut d, n).is_none() {
                        return;
                    }
                    if t >= min_t && table.contains_key(&id) {
                        body.extend_from_slice(&frame[start..d.pos]);
                        kept += 1;
                    }
                }
            }
            REC_METADATA => {
                write_frame(out, REC_METADATA, |b| b.extend_from_slice(&frame[1..]));
                return;
            }
            _ => return,
        }
        if kept > 0 {
            write_frame(out, rec_type, |b| {
                put_uvarint(b, kept);
                b.extend_from_slice(&body);
            });
        }
    }

    /// Series matching all `matchers` with data overlapping `[mint, maxt]`, sorted by
    /// labels. Without `with_chunks` only labels are filled in.
    pub fn select(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
        with_chunks: bool,
    ) -> Vec<SelectedSeries> {
        let index = self.index.read();
        let ids = select_postings(&*index, matchers);
        let table = self.series.read();
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            let Some(m) = table.get(&id) else { continue };
            let d = m.data.lock();
            let Some(first) = d.min_t() else { continue };
            if first > maxt || d.last_t < mint {
                continue;
            }
            let chunks = if with_chunks {
                d.chunk_refs(mint, maxt)
            } else {
                Vec::new()
            };
            drop(d);
            out.push(SelectedSeries {
                labels: index.labels_of(&m.labels),
                chunks,
            });
        }
        out.sort_by(|a, b| a.labels.cmp(&b.labels));
        out
    }

    /// All label names, or values of one name, straight from the index.
    pub fn label_names(&self) -> Vec<String> {
        let index = self.index.read();
        index
            .postings
            .keys()
            .map(|&n| index.symbols.get(n).to_owned())
            .collect()
    }

    pub fn label_values(&self, name: &str) -> Vec<String> {
        let index = self.index.read();
        let Some(vals) = index
            .symbols
            .lookup(name)
            .and_then(|n| index.postings.get(&n))
        else {
            return Vec::new();
        };
        vals.keys()
            .map(|&v| index.symbols.get(v).to_owned())
            .collect()
    }

    /// Series per value of one label, most first (the explorer's `focusLabel`).
    pub fn series_count_by_label_value(&self, name: &str, limit: usize) -> Vec<(String, u64)> {
        let index = self.index.read();
        let Some(vals) = index
            .symbols
            .lookup(name)
            .and_then(|n| index.postings.get(&n))
        else {
            return Vec::new();
        };
        let mut v: Vec<(String, u64)> = vals
            .iter()
            .map(|(&v, p)| (index.symbols.get(v).to_owned(), p.len() as u64))
            .collect();
        v.sort_unstable_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        v.truncate(limit);
        v
    }

    /// The cardinality view: (series per metric name, distinct values per label name,
    /// series per label pair, bytes of values per label name), each sorted descending.
    pub fn cardinality(&self, limit: usize) -> Cardinality {
        let index = self.index.read();
        let mut c = Cardinality {
            num_series: index.all.len() as u64,
            num_label_pairs: 0,
            ..Default::default()
        };
        let metric_name = index.symbols.lookup(lastmile_model::METRIC_NAME);
        let mut pairs = Vec::new();
        for (&n, vals) in &index.postings {
            let name = index.symbols.get(n);
            c.num_label_pairs += vals.len() as u64;
            c.label_value_count_by_label_name
                .push((name.to_owned(), vals.len() as u64));
            let bytes: usize = vals.keys().map(|&v| index.symbols.get(v).len()).sum();
            c.memory_in_bytes_by_label_name
                .push((name.to_owned(), bytes as u64));
            for (&v, p) in vals {
                if Some(n) == metric_name {
                    c.series_count_by_metric_name
                        .push((index.symbols.get(v).to_owned(), p.len() as u64));
                }
                pairs.push((n, v, p.len() as u64));
            }
        }
        pairs.sort_unstable_by_key(|p| std::cmp::Reverse(p.2));
        pairs.truncate(limit);
        c.series_count_by_label_value_pair = pairs
            .into_iter()
            .map(|(n, v, k)| {
                (
                    format!("{}={}", index.symbols.get(n), index.symbols.get(v)),
                    k,
                )
            })
            .collect();
        for list in [
            &mut c.series_count_by_metric_name,
            &mut c.label_value_count_by_label_name,
            &mut c.memory_in_bytes_by_label_name,
        ] {
            list.sort_unstable_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
            list.truncate(limit);
        }
        c.symbols = index.symbols.len() as u64;
        c.index_memory_bytes = index.symbols.memory_bytes() as u64
            + index
                .postings
                .values()
                .flat_map(|v| v.values())
                .map(|p| p.capacity() as u64 * 4 + 32)
                .sum::<u64>();
        c
    }

    pub fn exemplars(
        &self,
        series: &[SeriesId],
        mint: i64,
        maxt: i64,
    ) -> Vec<(SeriesId, Exemplar)> {
        let ring = self.exemplars.lock();
        ring.iter()
            .filter(|e| {
                e.exemplar.timestamp >= mint
                    && e.exemplar.timestamp <= maxt
                    && series.binary_search(&e.series).is_ok()
            })
            .map(|e| (e.series, e.exemplar.clone()))
            .collect()
    }

    /// Series ids and labels matching `matchers` (for exemplar queries).
    pub fn select_ids(&self, matchers: &[Matcher]) -> Vec<(SeriesId, Labels)> {
        let index = self.index.read();
        let ids = select_postings(&*index, matchers);
        let table = self.series.read();
        ids.into_iter()
            .filter_map(|id| table.get(&id).map(|m| (id, index.labels_of(&m.labels))))
            .collect()
    }

    pub fn metadata(&self) -> BTreeMap<String, MetricMetadata> {
        self.metadata.read().clone()
    }

    /// Seals open chunks that end before `boundary` and takes every chunk that does, with
    /// labels rewritten to a sorted symbol table: exactly what a block writer needs.
    pub fn snapshot_before(&self, boundary: i64) -> HeadSnapshot {
        let mut series: Vec<SeriesChunks> = Vec::new();
        let symbols: Vec<String>;
        {
            let index = self.index.read();
            let table = self.series.read();
            let mut used: HashMap<SymbolId, u32> = HashMap::new();
            for m in table.values() {
                let mut d = m.data.lock();
                if d.open.as_ref().is_some_and(|o| o.max_t() < boundary) {
                    let sealed = d.open.take().map(ChunkAppender::seal);
                    d.sealed.extend(sealed);
                }
                let chunks: Vec<ChunkRef> = d
                    .sealed
                    .iter()
                    .filter(|c| c.max_t < boundary)
                    .map(ChunkRef::from)
                    .collect();
                drop(d);
                if chunks.is_empty() {
                    continue;
                }
                for &s in m.labels.iter() {
                    used.entry(s).or_insert(0);
                }
                series.push((
                    m.labels.chunks_exact(2).map(|p| (p[0], p[1])).collect(),
                    chunks,
                ));
            }
            // Sorted symbols make id order equal string order.
            let mut strings: Vec<(SymbolId, &str)> =
                used.keys().map(|&id| (id, index.symbols.get(id))).collect();
            strings.sort_unstable_by(|a, b| a.1.cmp(b.1));
            for (new_id, (old, _)) in strings.iter().enumerate() {
                used.insert(*old, new_id as u32);
            }
            symbols = strings.iter().map(|(_, s)| (*s).to_owned()).collect();
            for (labels, _) in &mut series {
                for p in labels.iter_mut() {
                    *p = (used[&p.0], used[&p.1]);
                }
            }
        }
        series.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        HeadSnapshot { symbols, series }
    }

    /// Drops chunks that end before `boundary` (they are in a block now) and series left
    /// with nothing. Returns how many series were removed.
    pub fn truncate(&self, boundary: i64) -> usize {
        let mut w = self.writer.lock();
        let mut index = self.index.write();
        let mut table = self.series.write();
        let mut removed: Vec<SeriesId> = Vec::new();
        let mut min_t = i64::MAX;
        let mut freed_bytes = 0i64;
        let mut freed_samples = 0u64;
        for m in table.values() {
            let mut d = m.data.lock();
            d.sealed.retain(|c| {
                let keep = c.max_t >= boundary;
                if !keep {
                    freed_bytes += c.data.len() as i64;
                    freed_samples += c.count as u64;
                }
                keep
            });
            if d.is_empty() && d.last_t < boundary {
                removed.push(m.id);
            } else if let Some(t) = d.min_t() {
                min_t = min_t.min(t);
            }
        }
        removed.sort_unstable();
        // Each postings list is filtered once against the sorted removed ids: removing ids
        // one by one would shift big lists (`__name__`, `job`) once per removed series.
        let mut touched: hashbrown::HashSet<(SymbolId, SymbolId)> = hashbrown::HashSet::new();
        let mut released: Vec<SymbolId> = Vec::new();
        for id in &removed {
            if let Some(m) = table.remove(id) {
                if let Ok(e) = w.by_hash.find_entry(m.hash, |x| x.id == m.id) {
                    e.remove();
                }
                for p in m.labels.chunks_exact(2) {
                    touched.insert((p[0], p[1]));
                }
                released.extend_from_slice(&m.labels);
            }
        }
        for (n, v) in touched {
            let Some(vals) = index.postings.get_mut(&n) else {
                continue;
            };
            if let Some(list) = vals.get_mut(&v) {
                list.retain(|id| removed.binary_search(id).is_err());
                if list.is_empty() {
                    vals.remove(&v);
                }
            }
            if vals.is_empty() {
                index.postings.remove(&n);
            }
        }
        for sym in released {
            index.symbols.release(sym);
        }
        let removed_set = &removed;
        index
            .all
            .retain(|id| removed_set.binary_search(id).is_err());
        // Still under the writer lock, so no append's min/max update is lost.
        self.min_t.store(min_t, Ordering::Release);
        if min_t == i64::MAX {
            self.max_t.store(i64::MIN, Ordering::Release);
        }
        drop(w);
        self.chunk_bytes.fetch_sub(freed_bytes, Ordering::Relaxed);
        self.num_samples.fetch_sub(
            freed_samples.min(self.num_samples.load(Ordering::Relaxed)),
            Ordering::Relaxed,
        );
        self.metrics.series_removed.inc_by(removed.len() as u64);
        self.metrics.head_series.set(table.len() as i64);
        self.metrics
            .head_chunk_bytes
            .set(self.chunk_bytes.load(Ordering::Relaxed));
        removed.len()
    }

    /// Holds the writer lock while `f` runs, so no append interleaves (used to rotate the
    /// WAL at an exact point).
    pub fn with_writes_paused<T>(&self, f: impl FnOnce() -> T) -> T {
        let _w = self.writer.lock();
        f()
    }
}

fn create_series<'a>(
    index: &mut MemIndex,
    id: SeriesId,
    hash: u64,
    labels: impl Iterator<Item = LabelRef<'a>>,
) -> Arc<MemSeries> {
    let mut syms = Vec::with_capacity(16);
    for l in labels {
        let n = index.symbols.intern(l.name);
        let v = index.symbols.intern(l.value);
        syms.push(n);
        syms.push(v);
        index
            .postings
            .entry(n)
            .or_default()
            .entry(v)
            .or_default()
            .push(id);
    }
    index.all.push(id);
    Arc::new(MemSeries {
        id,
        hash,
        labels: syms.into_boxed_slice(),
        data: Mutex::new(SeriesData {
            sealed: Vec::new(),
            open: None,
            last_t: i64::MIN,
            last_v: 0,
            last_exemplar_t: i64::MIN,
        }),
    })
}

/// Appends to the series' open chunk, cutting a new one when full or when `t` enters a
/// new block window (so no chunk straddles a block boundary). Returns the growth in
/// chunk bytes.
fn append_to_series(d: &mut SeriesData, t: i64, v: f64, block_range: i64) -> i64 {
    let mut delta = 0i64;
    let cut = d.open.as_ref().is_some_and(|o| {
        o.count() >= SAMPLES_PER_CHUNK
            || window_start(t, block_range) != window_start(o.min_t(), block_range)
    });
    if cut && let Some(o) = d.open.take() {
        let before = o.heap_bytes() as i64;
        let sealed = o.seal();
        delta += sealed.data.len() as i64 - before;
        d.sealed.push(sealed);
    }
    let open = d.open.get_or_insert_with(ChunkAppender::new);
    let before = open.heap_bytes() as i64;
    open.append(t, v);
    delta += open.heap_bytes() as i64 - before;
    d.last_t = t;
    d.last_v = v.to_bits();
    delta
}

fn push_exemplar(
    ring: &mut VecDeque<StoredExemplar>,
    max: usize,
    series: SeriesId,
    labels: Labels,
    t: i64,
    v: f64,
) {
    if max == 0 {
        return;
    }
    if ring.len() >= max {
        ring.pop_front();
    }
    ring.push_back(StoredExemplar {
        series,
        exemplar: Exemplar {
            labels,
            value: v,
            timestamp: t,
        },
    });
}

fn read_series_id(d: &mut Decoder<'_>) -> Option<SeriesId> {
    SeriesId::try_from(d.uvarint()?).ok()
}

/// Skips `n` (name, value) string pairs.
fn skip_labels(d: &mut Decoder<'_>, n: u64) -> Option<()> {
    for _ in 0..n {
        d.str()?;
        d.str()?;
    }
    Some(())
}

/// Samples applied from one WAL record, for the head's counters.
struct ReplayedSamples {
    samples: u64,
    bytes: i64,
    min_t: i64,
    max_t: i64,
}

impl Default for ReplayedSamples {
    fn default() -> Self {
        ReplayedSamples {
            samples: 0,
            bytes: 0,
            min_t: i64::MAX,
            max_t: i64::MIN,
        }
    }
}

impl ReplayedSamples {
    fn add(&mut self, t: i64) {
        self.samples += 1;
        self.min_t = self.min_t.min(t);
        self.max_t = self.max_t.max(t);
    }
}

/// A count that is written after the entries it counts: a 5-byte varint (enough for u32)
/// with continuation bits set so any value fits the reserved room.
fn write_fixed_uvarint5(dst: &mut [u8], v: u64) {
    let mut v = v.min(u32::MAX as u64);
    for (i, b) in dst.iter_mut().enumerate() {
        let last = i == 4;
        *b = (v as u8 & 0x7f) | if last { 0 } else { 0x80 };
        v >>= 7;
    }
}

/// Head data before a boundary, ready to be written as a block.
pub struct HeadSnapshot {
    pub symbols: Vec<String>,
    /// (labels as ids into `symbols`, chunks), sorted by labels.
    pub series: Vec<SeriesChunks>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Cardinality {
    pub num_series: u64,
    pub num_label_pairs: u64,
    pub symbols: u64,
    pub index_memory_bytes: u64,
    pub series_count_by_metric_name: Vec<(String, u64)>,
    pub label_value_count_by_label_name: Vec<(String, u64)>,
    pub memory_in_bytes_by_label_name: Vec<(String, u64)>,
    pub series_count_by_label_value_pair: Vec<(String, u64)>,
}
