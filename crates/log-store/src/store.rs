//! [`LogStore`]: appends go to the WAL (acknowledged when durable) and to tantivy's
//! writer; what tantivy has not committed yet is kept in memory (the "head") so reads see
//! it at once. A background thread commits every `commit_interval` (tantivy commits are
//! expensive), storing the WAL segment the commit covers in the commit payload; then the
//! WAL before that segment is dropped. After a crash, the WAL from that segment on is
//! replayed into the index.
//!
//! Directory layout: `lock`, `wal/` (group-commit WAL of `lastmile_store`), `index/`
//! (tantivy), `streams.dat` (stream id → labels).

use std::fs::{self, File};
use std::future::Future;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::task::{Context, Poll, Wake};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use lastmile_model::{Labels, LogBatch, LogEntry, Matcher, TraceId};
use lastmile_store::StoreMetrics;
use lastmile_store::wal::{self, Wal, WalSync};
use parking_lot::{Condvar, Mutex, RwLock};
use tantivy::query::{EnableScoring, Query};
use tantivy::store::{Compressor, ZstdCompressor};
use tantivy::{
    DocId, Index, IndexReader, IndexSettings, IndexWriter, ReloadPolicy, Searcher, SegmentReader,
    TantivyDocument,
};

use crate::LogStoreError;
use crate::codec::{REC_LOG_BATCH, decode_batch, encode_batch};
use crate::doc::{self, entry_from_doc};
use crate::index::{self, Fields, Selection};
use crate::streams::{StreamId, StreamInfo, Streams};

#[derive(Clone, Debug)]
pub struct LogStoreOptions {
    /// Lines older than this, relative to the newest line stored, are deleted.
    pub retention: Duration,
    pub wal_sync: WalSync,
    pub wal_segment_bytes: u64,
    /// How often the index is committed (lines become part of the on-disk index and the
    /// WAL before them is dropped).
    pub commit_interval: Duration,
    /// Commit early when this many line bytes wait in memory.
    pub max_uncommitted_bytes: usize,
    /// tantivy's indexing memory budget (one indexing thread).
    pub writer_memory_bytes: usize,
    /// zstd level of the doc store that keeps the lines.
    pub docstore_zstd_level: i32,
    /// Uncompressed size of a doc store block: larger blocks compress better, and a read
    /// of one line decompresses its whole block.
    pub docstore_block_bytes: usize,
}

impl Default for LogStoreOptions {
    fn default() -> Self {
        LogStoreOptions {
            retention: Duration::from_secs(15 * 24 * 3600),
            wal_sync: WalSync::Fsync,
            wal_segment_bytes: 64 << 20,
            commit_interval: Duration::from_secs(10),
            max_uncommitted_bytes: 64 << 20,
            writer_memory_bytes: 64 << 20,
            docstore_zstd_level: 3,
            docstore_block_bytes: 64 << 10,
        }
    }
}

/// What one append stored.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LogAppendStats {
    pub streams: usize,
    pub new_streams: usize,
    pub entries: usize,
    /// Bytes of log lines.
    pub bytes: usize,
}

/// What a startup found and did.
#[derive(Clone, Debug, Default)]
pub struct LogOpenReport {
    pub streams: usize,
    pub indexed_lines: u64,
    pub wal_frames: u64,
    pub wal_lines: u64,
    pub wal_truncated_bytes: u64,
    pub replay_errors: u64,
    pub elapsed: Duration,
}

/// Order of lines in a time-ordered read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Oldest first.
    Forward,
    /// Newest first (Loki's default).
    Backward,
}

/// A line handed to a reader's visitor. `entry` is `None` when the read asked for
/// timestamps and sizes only.
pub struct LineRef<'a> {
    pub stream: &'a Arc<StreamInfo>,
    pub timestamp_ns: i64,
    pub line_len: usize,
    pub entry: Option<&'a LogEntry>,
}

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub struct LogStoreStats {
    pub lines_appended: AtomicU64,
    pub bytes_appended: AtomicU64,
    pub commits: AtomicU64,
    pub lines_deleted_by_retention: AtomicU64,
}

struct HeadBatch {
    lines: Vec<(StreamId, LogEntry)>,
    bytes: usize,
}

/// What reads see: the committed index and the lines not committed yet.
struct View {
    searcher: Searcher,
    /// Lines of a commit in progress (in the index once the reader reloads).
    frozen: Vec<Arc<HeadBatch>>,
    active: Vec<Arc<HeadBatch>>,
    active_bytes: usize,
}

struct WriterState {
    writer: IndexWriter<TantivyDocument>,
    dirty: bool,
    closed: bool,
}

struct Inner {
    dir: PathBuf,
    opts: LogStoreOptions,
    fields: Fields,
    reader: IndexReader,
    writer: Mutex<WriterState>,
    commit_lock: Mutex<()>,
    wal: Wal,
    streams: RwLock<Streams>,
    view: RwLock<View>,
    /// Newest line timestamp stored (ns); retention counts back from it.
    max_ts: AtomicI64,
    /// Lines older than this are not returned (deleted by retention, maybe not yet merged
    /// away).
    retention_cutoff: AtomicI64,
    stats: LogStoreStats,
    wake: Condvar,
    wake_lock: Mutex<bool>,
}

pub struct LogStore {
    inner: Arc<Inner>,
    committer: Mutex<Option<JoinHandle<()>>>,
    _lock: File,
}

impl LogStore {
    pub fn open(dir: &Path, opts: LogStoreOptions) -> Result<LogStore, LogStoreError> {
        Self::open_with_report(dir, opts, Arc::new(StoreMetrics::default())).map(|(s, _)| s)
    }

    /// Opens (or creates) the store in `dir`, replaying what the WAL holds beyond the last
    /// index commit. `metrics` receives the WAL's fsync latency and bytes.
    pub fn open_with_report(
        dir: &Path,
        opts: LogStoreOptions,
        metrics: Arc<StoreMetrics>,
    ) -> Result<(LogStore, LogOpenReport), LogStoreError> {
        let started = Instant::now();
        fs::create_dir_all(dir).map_err(|e| LogStoreError::io(dir, e))?;
        let lock_path = dir.join("lock");
        let lock = File::create(&lock_path).map_err(|e| LogStoreError::io(&lock_path, e))?;
        if lock.try_lock().is_err() {
            return Err(LogStoreError::Locked(dir.to_path_buf()));
        }
        let (schema, fields) = index::schema();
        let index_dir = dir.join("index");
        fs::create_dir_all(&index_dir).map_err(|e| LogStoreError::io(&index_dir, e))?;
        let format_path = index_dir.join(FORMAT_FILE);
        let index = if Index::exists(&tantivy::directory::MmapDirectory::open(&index_dir)?)? {
            check_format(&format_path)?;
            Index::open_in_dir(&index_dir)?
        } else {
            fs::write(&format_path, index::FORMAT_VERSION.to_string())
                .map_err(|e| LogStoreError::io(&format_path, e))?;
            let settings = IndexSettings {
                docstore_compression: Compressor::Zstd(ZstdCompressor {
                    compression_level: Some(opts.docstore_zstd_level),
                }),
                docstore_blocksize: opts.docstore_block_bytes,
                ..IndexSettings::default()
            };
            Index::builder()
                .schema(schema)
                .settings(settings)
                .create_in_dir(&index_dir)?
        };
        index::register_tokenizer(&index);
        let committed_segment = index
            .load_metas()?
            .payload
            .as_deref()
            .and_then(parse_payload)
            .unwrap_or(0);
        let writer: IndexWriter<TantivyDocument> =
            index.writer_with_num_threads(1, opts.writer_memory_bytes.max(15 << 20))?;
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()?;
        let mut streams = Streams::open(dir)?;

        // WAL segments before the committed one are in the index already; a crash may
        // have left them behind.
        let wal_dir = dir.join("wal");
        drop_wal_before(&wal_dir, committed_segment)?;

        let searcher = reader.searcher();
        let indexed_lines = searcher.num_docs();
        let mut max_ts = i64::MIN;
        scan_spans(&searcher, &fields, &mut streams, &mut max_ts)?;

        let mut report = LogOpenReport {
            indexed_lines,
            ..Default::default()
        };
        let mut head = Vec::new();
        let mut head_bytes = 0;
        let mut replay_error: Option<LogStoreError> = None;
        let stats = wal::replay(&wal_dir, |frame| {
            if replay_error.is_some() {
                return;
            }
            let Some(batch) = decode_batch(frame) else {
                report.replay_errors += 1;
                tracing::warn!("skipping an unreadable log WAL record");
                return;
            };
            match index_batch(&writer, &fields, &mut streams, &batch, &mut max_ts) {
                Ok(h) => {
                    report.wal_lines += h.lines.len() as u64;
                    head_bytes += h.bytes;
                    head.push(Arc::new(h));
                }
                Err(e) => replay_error = Some(e),
            }
        })?;
        if let Some(e) = replay_error {
            return Err(e);
        }
        report.wal_frames = stats.frames;
        report.wal_truncated_bytes = stats.truncated_bytes;
        let wal = Wal::open(&wal_dir, opts.wal_sync, opts.wal_segment_bytes, metrics)?;
        report.streams = streams.len();
        report.elapsed = started.elapsed();
        let dirty = !head.is_empty();
        let inner = Arc::new(Inner {
            dir: dir.to_path_buf(),
            fields,
            reader,
            writer: Mutex::new(WriterState {
                writer,
                dirty,
                closed: false,
            }),
            commit_lock: Mutex::new(()),
            wal,
            streams: RwLock::new(streams),
            view: RwLock::new(View {
                searcher,
                frozen: Vec::new(),
                active: head,
                active_bytes: head_bytes,
            }),
            max_ts: AtomicI64::new(max_ts),
            retention_cutoff: AtomicI64::new(i64::MIN),
            stats: LogStoreStats::default(),
            wake: Condvar::new(),
            wake_lock: Mutex::new(false),
            opts,
        });
        let thread_inner = inner.clone();
        let committer = std::thread::Builder::new()
            .name("log-committer".into())
            .spawn(move || committer_loop(thread_inner))
            .map_err(|e| LogStoreError::io(dir, e))?;
        Ok((
            LogStore {
                inner,
                committer: Mutex::new(Some(committer)),
                _lock: lock,
            },
            report,
        ))
    }

    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    pub fn stats(&self) -> &LogStoreStats {
        &self.inner.stats
    }

    /// Stores a batch; returns once it is durable (per the WAL sync policy). Blocking:
    /// call it from a blocking thread in async code. A batch is stored whole or not at
    /// all.
    pub fn append(&self, batch: &LogBatch) -> Result<LogAppendStats, LogStoreError> {
        let inner = &self.inner;
        let mut frame = Vec::with_capacity(batch.line_bytes() + 64 * batch.entry_count() + 64);
        wal::write_frame(&mut frame, REC_LOG_BATCH, |b| encode_batch(b, batch));
        let mut out = LogAppendStats {
            streams: batch.streams.len(),
            entries: batch.entry_count(),
            bytes: batch.line_bytes(),
            new_streams: 0,
        };
        if out.entries == 0 {
            return Ok(out);
        }
        let seq;
        let wake_committer;
        {
            let mut w = inner.writer.lock();
            if w.closed {
                return Err(LogStoreError::Closed);
            }
            seq = inner.wal.submit(&frame)?;
            let before = inner.streams.read().len();
            let mut max_ts = inner.max_ts.load(Ordering::Relaxed);
            let head = {
                let mut streams = inner.streams.write();
                index_batch(&w.writer, &inner.fields, &mut streams, batch, &mut max_ts)?
            };
            out.new_streams = inner.streams.read().len() - before;
            inner.max_ts.fetch_max(max_ts, Ordering::Relaxed);
            w.dirty = true;
            let mut v = inner.view.write();
            v.active_bytes += head.bytes;
            v.active.push(Arc::new(head));
            wake_committer = v.active_bytes >= inner.opts.max_uncommitted_bytes;
        }
        if wake_committer {
            inner.wake.notify_one();
        }
        block_on(inner.wal.wait_durable(seq))?;
        inner
            .stats
            .lines_appended
            .fetch_add(out.entries as u64, Ordering::Relaxed);
        inner
            .stats
            .bytes_appended
            .fetch_add(out.bytes as u64, Ordering::Relaxed);
        Ok(out)
    }

    /// Commits what is in memory to the index now (normally done every commit interval).
    pub fn commit(&self) -> Result<(), LogStoreError> {
        self.inner.commit()
    }

    /// Applies retention: deletes lines older than the newest line minus the retention,
    /// forgets streams left without lines. Returns the number of lines deleted.
    pub fn maintain(&self) -> Result<u64, LogStoreError> {
        self.inner.apply_retention()
    }

    /// Commits and stops the background thread; later appends fail.
    pub fn close(&self) -> Result<(), LogStoreError> {
        *self.inner.wake_lock.lock() = true;
        self.inner.wake.notify_all();
        if let Some(t) = self.committer.lock().take() {
            let _ = t.join();
        }
        let result = self.inner.commit();
        self.inner.writer.lock().closed = true;
        self.inner.wal.close();
        result
    }

    /// Stops without committing the index, as a crash would leave it (the WAL is
    /// intact). For tests of the recovery path.
    #[doc(hidden)]
    pub fn abandon(self) {
        *self.inner.wake_lock.lock() = true;
        self.inner.wake.notify_all();
        if let Some(t) = self.committer.lock().take() {
            let _ = t.join();
        }
        {
            let mut w = self.inner.writer.lock();
            w.closed = true;
            let _ = w.writer.rollback();
        }
        self.inner.wal.close();
    }

    /// Streams with lines in `[start_ns, end_ns]` matching every matcher, sorted by labels.
    pub fn streams(
        &self,
        matchers: &[Matcher],
        start_ns: i64,
        end_ns: i64,
    ) -> Vec<Arc<StreamInfo>> {
        let start_ns = start_ns.max(self.inner.retention_cutoff.load(Ordering::Relaxed));
        self.inner.streams.read().select(matchers, start_ns, end_ns)
    }

    /// Number of streams the store knows.
    pub fn stream_count(&self) -> usize {
        self.inner.streams.read().len()
    }

    /// Whether any line of these streams carries structured metadata.
    pub fn any_metadata(&self, ids: &[StreamId]) -> bool {
        let streams = self.inner.streams.read();
        ids.iter()
            .any(|&id| streams.span(id).is_some_and(|s| s.has_metadata))
    }

    pub fn label_names(&self, start_ns: i64, end_ns: i64) -> Vec<String> {
        let start_ns = start_ns.max(self.inner.retention_cutoff.load(Ordering::Relaxed));
        self.inner.streams.read().label_names(start_ns, end_ns)
    }

    pub fn label_values(&self, name: &str, start_ns: i64, end_ns: i64) -> Vec<String> {
        let start_ns = start_ns.max(self.inner.retention_cutoff.load(Ordering::Relaxed));
        self.inner
            .streams
            .read()
            .label_values(name, start_ns, end_ns)
    }

    /// Every line of a trace in `[start_ns, end_ns)`, oldest first, at most `limit`.
    pub fn lines_for_trace(
        &self,
        trace: TraceId,
        start_ns: i64,
        end_ns: i64,
        limit: usize,
    ) -> Result<Vec<(Labels, LogEntry)>, LogStoreError> {
        let inner = &self.inner;
        let start_ns = start_ns.max(inner.retention_cutoff.load(Ordering::Relaxed));
        if start_ns >= end_ns || limit == 0 {
            return Ok(Vec::new());
        }
        let snap = inner.snapshot();
        let query = index::trace_query(&inner.fields, &trace.0, start_ns, end_ns);
        let mut cands = Vec::new();
        collect_index(&snap.searcher, &inner.fields, &*query, &mut cands)?;
        for (bi, b) in snap.head.iter().enumerate() {
            for (li, (stream, e)) in b.lines.iter().enumerate() {
                if e.trace_id == Some(trace)
                    && e.timestamp_ns >= start_ns
                    && e.timestamp_ns < end_ns
                {
                    cands.push(Cand {
                        ts: e.timestamp_ns,
                        stream: *stream,
                        src: Src::Head(bi as u32, li as u32),
                    });
                }
            }
        }
        cands.sort_unstable_by_key(|c| (c.ts, c.stream, c.src));
        cands.truncate(limit);
        let streams = inner.streams.read();
        let mut fetch = Fetcher::new(&snap, &inner.fields);
        let mut out = Vec::with_capacity(cands.len());
        for c in cands {
            let Some(info) = streams.get(c.stream) else {
                continue;
            };
            let entry = fetch.entry(&c)?;
            out.push((info.labels.clone(), entry.into_owned()));
        }
        Ok(out)
    }

    /// Calls `visit` for every selected line, in no particular order, until it breaks.
    /// With `need_line` false, entries are not read (timestamps and sizes only).
    pub fn for_each_line(
        &self,
        sel: &Selection,
        need_line: bool,
        mut visit: impl FnMut(LineRef<'_>) -> ControlFlow<()>,
    ) -> Result<(), LogStoreError> {
        let inner = &self.inner;
        let start = sel
            .start_ns
            .max(inner.retention_cutoff.load(Ordering::Relaxed));
        if start >= sel.end_ns {
            return Ok(());
        }
        let snap = inner.snapshot();
        let (streams, _) = inner.stream_map(sel);
        let query = index::build_query(&inner.fields, sel, start, sel.end_ns);
        let weight = query.weight(EnableScoring::disabled_from_searcher(&snap.searcher))?;
        let f = &inner.fields;
        let mut stop = false;
        for seg in snap.searcher.segment_readers() {
            if stop {
                break;
            }
            let cols = Columns::open(seg)?;
            let store = if need_line {
                Some(
                    seg.get_store_reader(16)
                        .map_err(tantivy::TantivyError::from)?,
                )
            } else {
                None
            };
            let alive = seg.alive_bitset();
            let mut err = None;
            weight.for_each_no_score(seg, &mut |docs: &[DocId]| {
                for &d in docs {
                    if stop {
                        return;
                    }
                    if alive.is_some_and(|a| !a.is_alive(d)) {
                        continue;
                    }
                    let (ts, sid, len) = cols.get(d);
                    let Some(info) = streams.get(&sid) else {
                        continue;
                    };
                    let entry = match &store {
                        Some(s) => match s.get::<TantivyDocument>(d) {
                            Ok(doc) => Some(entry_from_doc(f, &doc, ts)),
                            Err(e) => {
                                err = Some(e);
                                stop = true;
                                return;
                            }
                        },
                        None => None,
                    };
                    let line = LineRef {
                        stream: info,
                        timestamp_ns: ts,
                        line_len: len,
                        entry: entry.as_ref(),
                    };
                    if visit(line).is_break() {
                        stop = true;
                    }
                }
            })?;
            if let Some(e) = err {
                return Err(e.into());
            }
        }
        for b in &snap.head {
            for (sid, e) in &b.lines {
                if stop {
                    return Ok(());
                }
                if e.timestamp_ns < start || e.timestamp_ns >= sel.end_ns || !sel.wants_stream(*sid)
                {
                    continue;
                }
                let Some(info) = streams.get(sid) else {
                    continue;
                };
                let line = LineRef {
                    stream: info,
                    timestamp_ns: e.timestamp_ns,
                    line_len: e.line.len(),
                    entry: need_line.then_some(e),
                };
                if visit(line).is_break() {
                    stop = true;
                }
            }
        }
        Ok(())
    }

    /// Calls `visit` for the selected lines in time order (`direction`), until it breaks.
    /// Lines with equal timestamps come in stream-id order. Reads the range in windows,
    /// so a visitor that stops early (a `limit`) reads little of a long range.
    pub fn for_each_line_ordered(
        &self,
        sel: &Selection,
        direction: Direction,
        mut visit: impl FnMut(LineRef<'_>) -> ControlFlow<()>,
    ) -> Result<(), LogStoreError> {
        let inner = &self.inner;
        let start = sel
            .start_ns
            .max(inner.retention_cutoff.load(Ordering::Relaxed));
        let end = sel.end_ns;
        if start >= end {
            return Ok(());
        }
        let snap = inner.snapshot();
        // Clamp the range to the data, so the first window is not spent on emptiness.
        let (streams, (lo_data, hi_data)) = inner.stream_map(sel);
        let start = start.max(lo_data);
        let end = end.min(hi_data.saturating_add(1));
        if start >= end {
            return Ok(());
        }
        let span = (end - start) as u128;
        let mut width = ((span / 64) as i64).max(1);
        let mut cursor = match direction {
            Direction::Forward => start,
            Direction::Backward => end,
        };
        let mut fetch = Fetcher::new(&snap, &inner.fields);
        let mut cands = Vec::new();
        loop {
            let (lo, hi) = match direction {
                Direction::Forward => (cursor, cursor.saturating_add(width).min(end)),
                Direction::Backward => (cursor.saturating_sub(width).max(start), cursor),
            };
            if lo >= hi {
                return Ok(());
            }
            cands.clear();
            let query = index::build_query(&inner.fields, sel, lo, hi);
            collect_index(&snap.searcher, &inner.fields, &*query, &mut cands)?;
            for (bi, b) in snap.head.iter().enumerate() {
                for (li, (sid, e)) in b.lines.iter().enumerate() {
                    if e.timestamp_ns >= lo && e.timestamp_ns < hi && sel.wants_stream(*sid) {
                        cands.push(Cand {
                            ts: e.timestamp_ns,
                            stream: *sid,
                            src: Src::Head(bi as u32, li as u32),
                        });
                    }
                }
            }
            match direction {
                Direction::Forward => cands.sort_unstable_by_key(|c| (c.ts, c.stream, c.src)),
                Direction::Backward => cands
                    .sort_unstable_by(|a, b| (b.ts, a.stream, a.src).cmp(&(a.ts, b.stream, b.src))),
            }
            for c in &cands {
                let Some(info) = streams.get(&c.stream) else {
                    continue;
                };
                let entry = fetch.entry(c)?;
                let line = LineRef {
                    stream: info,
                    timestamp_ns: c.ts,
                    line_len: entry.line.len(),
                    entry: Some(&entry),
                };
                if visit(line).is_break() {
                    return Ok(());
                }
            }
            cursor = match direction {
                Direction::Forward => hi,
                Direction::Backward => lo,
            };
            if cands.len() < 1024 {
                width = width.saturating_mul(4);
            } else if cands.len() > 65_536 {
                width = (width / 2).max(1);
            }
        }
    }
}

impl Drop for LogStore {
    fn drop(&mut self) {
        if self.committer.lock().is_some()
            && let Err(e) = self.close()
        {
            tracing::error!(error = %e, "closing the log store failed");
        }
    }
}

type StreamMap = hashbrown::HashMap<StreamId, Arc<StreamInfo>>;

struct Snapshot {
    searcher: Searcher,
    head: Vec<Arc<HeadBatch>>,
}

impl Inner {
    fn snapshot(&self) -> Snapshot {
        let v = self.view.read();
        Snapshot {
            searcher: v.searcher.clone(),
            head: v.frozen.iter().chain(v.active.iter()).cloned().collect(),
        }
    }

    /// The selected streams (all when the selection names none) and the time span of
    /// their lines; taken up front so reads do not hold the stream lock while they run.
    fn stream_map(&self, sel: &Selection) -> (StreamMap, (i64, i64)) {
        let streams = self.streams.read();
        let mut map = StreamMap::new();
        let (mut lo, mut hi) = (i64::MAX, i64::MIN);
        let mut add = |id: StreamId| {
            if let Some(info) = streams.get(id) {
                map.insert(id, info.clone());
            }
            if let Some(sp) = streams.span(id) {
                lo = lo.min(sp.min_ts);
                hi = hi.max(sp.max_ts);
            }
        };
        match &sel.streams {
            Some(ids) => ids.iter().for_each(|&id| add(id)),
            None => streams.all_ids().for_each(add),
        }
        (map, (lo, hi))
    }

    fn commit(&self) -> Result<(), LogStoreError> {
        let _serial = self.commit_lock.lock();
        let segment;
        {
            let mut w = self.writer.lock();
            if !w.dirty || w.closed {
                return Ok(());
            }
            segment = self.wal.rotate()?;
            {
                let mut v = self.view.write();
                let active = std::mem::take(&mut v.active);
                v.frozen.extend(active);
                v.active_bytes = 0;
            }
            // The WAL records before `segment` are dropped after this commit: the streams
            // they named must be on disk first.
            self.streams.write().sync()?;
            let mut prepared = w.writer.prepare_commit()?;
            prepared.set_payload(&format!("wal_segment={segment}"));
            prepared.commit()?;
            w.dirty = false;
        }
        self.reader.reload()?;
        let searcher = self.reader.searcher();
        {
            let mut v = self.view.write();
            v.searcher = searcher;
            v.frozen.clear();
        }
        drop_wal_before(&self.dir.join("wal"), segment)?;
        self.stats.commits.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn apply_retention(&self) -> Result<u64, LogStoreError> {
        let max_ts = self.max_ts.load(Ordering::Relaxed);
        if max_ts == i64::MIN {
            return Ok(0);
        }
        let keep = i64::try_from(self.opts.retention.as_nanos()).unwrap_or(i64::MAX);
        let cutoff = max_ts.saturating_sub(keep);
        let oldest = {
            let streams = self.streams.read();
            streams
                .all_ids()
                .filter_map(|id| streams.span(id))
                .map(|s| s.min_ts)
                .min()
        };
        if oldest.is_none_or(|o| o >= cutoff) {
            return Ok(0);
        }
        let deleted = {
            let snap = self.snapshot();
            let old = tantivy::query::RangeQuery::new(
                std::ops::Bound::Unbounded,
                std::ops::Bound::Excluded(tantivy::Term::from_field_i64(self.fields.ts, cutoff)),
            );
            let in_index = snap.searcher.search(&old, &tantivy::collector::Count)? as u64;
            let in_head = snap
                .head
                .iter()
                .flat_map(|b| &b.lines)
                .filter(|(_, e)| e.timestamp_ns < cutoff)
                .count() as u64;
            in_index + in_head
        };
        self.retention_cutoff.fetch_max(cutoff, Ordering::Relaxed);
        {
            let mut w = self.writer.lock();
            if w.closed {
                return Err(LogStoreError::Closed);
            }
            let q = tantivy::query::RangeQuery::new(
                std::ops::Bound::Unbounded,
                std::ops::Bound::Excluded(tantivy::Term::from_field_i64(self.fields.ts, cutoff)),
            );
            w.writer.delete_query(Box::new(q))?;
            w.dirty = true;
        }
        self.commit()?;
        let snap = self.snapshot();
        let mut streams = self.streams.write();
        streams.reset_spans();
        let mut ignored = i64::MIN;
        scan_spans(&snap.searcher, &self.fields, &mut streams, &mut ignored)?;
        for b in &snap.head {
            for (sid, e) in &b.lines {
                if e.timestamp_ns >= cutoff {
                    streams.observe(*sid, e.timestamp_ns, !e.metadata.is_empty());
                }
            }
        }
        let forgotten = streams.compact()?;
        self.stats
            .lines_deleted_by_retention
            .fetch_add(deleted, Ordering::Relaxed);
        tracing::info!(
            deleted_lines = deleted,
            forgotten_streams = forgotten,
            cutoff_ns = cutoff,
            "log retention applied"
        );
        Ok(deleted)
    }
}

fn committer_loop(inner: Arc<Inner>) {
    loop {
        {
            let mut stop = inner.wake_lock.lock();
            if *stop {
                return;
            }
            inner.wake.wait_for(&mut stop, inner.opts.commit_interval);
            if *stop {
                return;
            }
        }
        if let Err(e) = inner.commit() {
            tracing::error!(error = %e, "log index commit failed; will retry");
        }
    }
}

/// Adds a batch to the index writer and returns it as a head batch. Stream ids are
/// resolved (and created) here.
fn index_batch(
    writer: &IndexWriter<TantivyDocument>,
    f: &Fields,
    streams: &mut Streams,
    batch: &LogBatch,
    max_ts: &mut i64,
) -> Result<HeadBatch, LogStoreError> {
    let mut head = HeadBatch {
        lines: Vec::with_capacity(batch.entry_count()),
        bytes: 0,
    };
    let mut meta = Vec::new();
    for s in &batch.streams {
        if s.entries.is_empty() {
            continue;
        }
        let (id, _) = streams.id_for(&s.labels);
        for e in &s.entries {
            streams.observe(id, e.timestamp_ns, !e.metadata.is_empty());
            *max_ts = (*max_ts).max(e.timestamp_ns);
            let doc = doc::to_doc(f, id, e, &mut meta);
            writer.add_document(doc)?;
            head.bytes += e.line.len();
            head.lines.push((id, e.clone()));
        }
    }
    Ok(head)
}

/// Names the index format version inside the index directory.
const FORMAT_FILE: &str = "lastmile-format";

/// Refuses an index written with another format: its terms would be read with the wrong
/// meaning (searches would silently miss lines).
fn check_format(path: &Path) -> Result<(), LogStoreError> {
    let found = match fs::read_to_string(path) {
        Ok(s) => s.trim().parse::<u32>().ok(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Some(1),
        Err(e) => return Err(LogStoreError::io(path, e)),
    };
    if found == Some(index::FORMAT_VERSION) {
        return Ok(());
    }
    let dir = path.parent().unwrap_or(path).to_path_buf();
    Err(LogStoreError::Format {
        dir,
        found: found.map_or_else(|| "unreadable".to_string(), |v| v.to_string()),
        want: index::FORMAT_VERSION,
    })
}

fn parse_payload(p: &str) -> Option<u64> {
    p.strip_prefix("wal_segment=")?.parse().ok()
}

/// Removes WAL segments below `segment` (their records are in the committed index).
fn drop_wal_before(wal_dir: &Path, segment: u64) -> Result<(), LogStoreError> {
    if segment == 0 || !wal_dir.exists() {
        return Ok(());
    }
    let io = |e| LogStoreError::io(wal_dir, e);
    let stale: Vec<u64> = wal::list_segments(wal_dir)
        .map_err(io)?
        .into_iter()
        .filter(|&n| n < segment)
        .collect();
    let checkpoint = wal::latest_checkpoint(wal_dir).map_err(io)?;
    if stale.is_empty() && checkpoint.as_ref().is_some_and(|c| c.0 >= segment) {
        return Ok(());
    }
    if checkpoint.as_ref().is_some_and(|c| c.0 >= segment) {
        // A crash between the checkpoint's rename and the removal of the segments.
        for n in stale {
            let p = wal::segment_path(wal_dir, n);
            fs::remove_file(&p).map_err(|e| LogStoreError::io(&p, e))?;
        }
        return Ok(());
    }
    // An empty checkpoint: nothing before `segment` is needed any more.
    wal::checkpoint(wal_dir, segment, |_, _| {})?;
    Ok(())
}

/// Rebuilds every stream's time span from the index's columns.
fn scan_spans(
    searcher: &Searcher,
    _f: &Fields,
    streams: &mut Streams,
    max_ts: &mut i64,
) -> Result<(), LogStoreError> {
    for seg in searcher.segment_readers() {
        let cols = Columns::open(seg)?;
        let alive = seg.alive_bitset();
        for d in 0..seg.max_doc() {
            if alive.is_some_and(|a| !a.is_alive(d)) {
                continue;
            }
            let (ts, sid, _) = cols.get(d);
            let has_metadata = cols.flags.first(d).unwrap_or(0) & 1 != 0;
            streams.observe(sid, ts, has_metadata);
            *max_ts = (*max_ts).max(ts);
        }
    }
    Ok(())
}

struct Columns {
    flags: tantivy::columnar::Column<u64>,
    ts: tantivy::columnar::Column<i64>,
    stream: tantivy::columnar::Column<u64>,
    len: tantivy::columnar::Column<u64>,
}

impl Columns {
    fn open(seg: &SegmentReader) -> Result<Columns, LogStoreError> {
        let ff = seg.fast_fields();
        Ok(Columns {
            flags: ff.u64("flags")?,
            ts: ff.i64("ts")?,
            stream: ff.u64("stream")?,
            len: ff.u64("len")?,
        })
    }

    #[inline]
    fn get(&self, d: DocId) -> (i64, StreamId, usize) {
        (
            self.ts.first(d).unwrap_or(0),
            self.stream.first(d).unwrap_or(0),
            self.len.first(d).unwrap_or(0) as usize,
        )
    }
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Src {
    Index(u32, DocId),
    Head(u32, u32),
}

struct Cand {
    ts: i64,
    stream: StreamId,
    src: Src,
}

fn collect_index(
    searcher: &Searcher,
    _f: &Fields,
    query: &dyn Query,
    out: &mut Vec<Cand>,
) -> Result<(), LogStoreError> {
    let weight = query.weight(EnableScoring::disabled_from_searcher(searcher))?;
    for (ord, seg) in searcher.segment_readers().iter().enumerate() {
        let cols = Columns::open(seg)?;
        let alive = seg.alive_bitset();
        weight.for_each_no_score(seg, &mut |docs: &[DocId]| {
            for &d in docs {
                if alive.is_some_and(|a| !a.is_alive(d)) {
                    continue;
                }
                let (ts, stream, _) = cols.get(d);
                out.push(Cand {
                    ts,
                    stream,
                    src: Src::Index(ord as u32, d),
                });
            }
        })?;
    }
    Ok(())
}

/// Reads candidates' entries, keeping one doc store reader (with its block cache) per
/// segment.
struct Fetcher<'a> {
    snap: &'a Snapshot,
    f: &'a Fields,
    stores: Vec<Option<tantivy::store::StoreReader>>,
}

enum Fetched<'a> {
    Owned(LogEntry),
    Head(&'a LogEntry),
}

impl std::ops::Deref for Fetched<'_> {
    type Target = LogEntry;
    fn deref(&self) -> &LogEntry {
        match self {
            Fetched::Owned(e) => e,
            Fetched::Head(e) => e,
        }
    }
}

impl Fetched<'_> {
    fn into_owned(self) -> LogEntry {
        match self {
            Fetched::Owned(e) => e,
            Fetched::Head(e) => e.clone(),
        }
    }
}

impl<'a> Fetcher<'a> {
    fn new(snap: &'a Snapshot, f: &'a Fields) -> Self {
        Fetcher {
            snap,
            f,
            stores: (0..snap.searcher.segment_readers().len())
                .map(|_| None)
                .collect(),
        }
    }

    fn entry(&mut self, c: &Cand) -> Result<Fetched<'a>, LogStoreError> {
        match c.src {
            Src::Head(b, l) => Ok(Fetched::Head(
                &self.snap.head[b as usize].lines[l as usize].1,
            )),
            Src::Index(seg, doc) => {
                let slot = &mut self.stores[seg as usize];
                if slot.is_none() {
                    let reader = self.snap.searcher.segment_reader(seg);
                    *slot = Some(
                        reader
                            .get_store_reader(16)
                            .map_err(tantivy::TantivyError::from)?,
                    );
                }
                let store = slot.as_ref().expect("set above");
                let d: TantivyDocument = store.get(doc)?;
                Ok(Fetched::Owned(entry_from_doc(self.f, &d, c.ts)))
            }
        }
    }
}

/// Runs a future to completion on this thread (the WAL's durability wait is a future;
/// `append` is blocking by contract, and may run outside any async runtime).
fn block_on<F: Future>(f: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Arc::new(Unpark(std::thread::current())).into();
    let mut cx = Context::from_waker(&waker);
    let mut f = std::pin::pin!(f);
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::park();
    }
}
