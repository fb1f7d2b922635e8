//! [`LogStore`]: appends go to the WAL (acknowledged when durable) and to the in-memory
//! "head", which reads see at once. A background thread commits every `commit_interval`:
//! it cuts the head into chunks (per stream, in time order, see [`crate::chunk`]), adds
//! them to the tantivy index and commits it, storing the WAL segment the commit covers in
//! the commit payload; then the WAL before that segment is dropped. After a crash, the
//! WAL from that segment on is replayed into the head.
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
use tantivy::store::{Compressor, StoreReader};
use tantivy::{
    DocId, Index, IndexReader, IndexSettings, IndexWriter, ReloadPolicy, Searcher, SegmentReader,
    TantivyDocument,
};

use crate::LogStoreError;
use crate::bloom;
use crate::chunk::{self, Chunk};
use crate::codec::{REC_LOG_BATCH, decode_batch, encode_batch};
use crate::index::{self, Fields, Gate, Selection};
use crate::streams::{StreamId, StreamInfo, Streams};
use crate::tokens::{self, ChunkTerms};

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
    /// zstd level of the chunks that keep the lines.
    pub chunk_zstd_level: i32,
    /// A chunk is cut when its lines reach this many bytes: larger chunks compress better,
    /// and a read of one line decompresses its whole chunk.
    pub chunk_max_bytes: usize,
    /// ... or this many lines.
    pub chunk_max_lines: usize,
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
            chunk_zstd_level: 3,
            chunk_max_bytes: 1 << 20,
            chunk_max_lines: 16_384,
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
    /// Chunks read from the index by queries (how well the index narrows them).
    pub chunks_read: AtomicU64,
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
                // Chunks are compressed already.
                docstore_compression: Compressor::None,
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
        // Every segment has its own term dictionary, and the tags of random ids fill each
        // one alike: merging earlier than tantivy's eight segments keeps fewer copies, at
        // the cost of more merging (measured: four segments took ingest from ~60 to ~136
        // CPU-seconds for 10M lines).
        let mut merges = tantivy::merge_policy::LogMergePolicy::default();
        merges.set_min_num_segments(MERGE_AT_SEGMENTS);
        writer.set_merge_policy(Box::new(merges));
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
        let mut max_ts = i64::MIN;
        let indexed_lines = scan_spans(&searcher, &mut streams, &mut max_ts)?;

        let mut report = LogOpenReport {
            indexed_lines,
            ..Default::default()
        };
        let mut head = Vec::new();
        let mut head_bytes = 0;
        let stats = wal::replay(&wal_dir, |frame| {
            let Some(batch) = decode_batch(frame) else {
                report.replay_errors += 1;
                tracing::warn!("skipping an unreadable log WAL record");
                return;
            };
            let h = head_batch(&mut streams, batch, &mut max_ts);
            report.wal_lines += h.lines.len() as u64;
            head_bytes += h.bytes;
            head.push(Arc::new(h));
        })?;
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
        self.append_owned(batch.clone())
    }

    /// [`LogStore::append`] of a batch the caller gives away (its lines move into the
    /// head instead of being copied).
    pub fn append_owned(&self, batch: LogBatch) -> Result<LogAppendStats, LogStoreError> {
        let inner = &self.inner;
        let mut frame = Vec::with_capacity(batch.line_bytes() + 64 * batch.entry_count() + 64);
        wal::write_frame(&mut frame, REC_LOG_BATCH, |b| encode_batch(b, &batch));
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
        let head_full;
        {
            let mut w = inner.writer.lock();
            if w.closed {
                return Err(LogStoreError::Closed);
            }
            seq = inner.wal.submit(&frame)?;
            let before = inner.streams.read().len();
            let mut max_ts = inner.max_ts.load(Ordering::Relaxed);
            let head = head_batch(&mut inner.streams.write(), batch, &mut max_ts);
            out.new_streams = inner.streams.read().len() - before;
            inner.max_ts.fetch_max(max_ts, Ordering::Relaxed);
            w.dirty = true;
            let mut v = inner.view.write();
            v.active_bytes += head.bytes;
            v.active.push(Arc::new(head));
            wake_committer = v.active_bytes >= inner.opts.max_uncommitted_bytes;
            head_full = v.active_bytes >= 4 * inner.opts.max_uncommitted_bytes;
        }
        if wake_committer {
            inner.wake.notify_one();
        }
        if head_full {
            // Lines arrive faster than the committer cuts chunks: the appender commits
            // too (after the commit in progress), so the head stays bounded. Its lines are
            // in the WAL and the head already: a failed commit does not fail the append.
            if let Err(e) = inner.commit_if_over(4 * inner.opts.max_uncommitted_bytes) {
                tracing::error!(error = %e, "log index commit failed; will retry");
            }
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
        let (query, gates) = index::trace_query(&inner.fields, &trace.0, start_ns, end_ns);
        let mut chunks = ChunkReader::new(&snap, inner);
        let mut cands = Vec::new();
        for (seg, doc, stream) in chunk_docs(&snap.searcher, &*query, &gates)? {
            let c = chunks.chunk(seg, doc)?;
            for i in c.lines_of_trace(trace, line_range(&c.head.ts, start_ns, end_ns)) {
                cands.push(Cand {
                    ts: c.head.ts[i],
                    stream,
                    src: Src::Index(seg, doc, i as u32),
                });
            }
        }
        snap.head_cands_into(&mut cands, |_, e| {
            e.trace_id == Some(trace) && e.timestamp_ns >= start_ns && e.timestamp_ns < end_ns
        });
        cands.sort_unstable_by_key(|c| (c.ts, c.stream, c.src));
        cands.truncate(limit);
        let streams = inner.streams.read();
        let mut out = Vec::with_capacity(cands.len());
        for c in cands {
            let Some(info) = streams.get(c.stream) else {
                continue;
            };
            let mut entry = LogEntry::new(0, String::new());
            chunks.entry_into(&c, &mut entry)?;
            out.push((info.labels.clone(), entry));
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
        let (query, gates) = index::build_query(&inner.fields, sel, start, sel.end_ns);
        let required = Required::new(sel);
        let mut chunks = ChunkReader::new(&snap, inner);
        let mut entry = LogEntry::new(0, String::new());
        for (seg, doc, sid) in chunk_docs(&snap.searcher, &*query, &gates)? {
            let Some(info) = streams.get(&sid) else {
                continue;
            };
            if need_line {
                let c = chunks.load(seg, doc)?;
                for i in line_range(&c.head.ts, start, sel.end_ns) {
                    if !required.matches(c.text(i)) {
                        continue;
                    }
                    c.entry_into(i, &mut entry);
                    let line = LineRef {
                        stream: info,
                        timestamp_ns: entry.timestamp_ns,
                        line_len: entry.line.len(),
                        entry: Some(&entry),
                    };
                    if visit(line).is_break() {
                        return Ok(());
                    }
                }
            } else {
                let head = chunks.head(seg, doc)?;
                for i in line_range(&head.ts, start, sel.end_ns) {
                    let line = LineRef {
                        stream: info,
                        timestamp_ns: head.ts[i],
                        line_len: head.lens[i] as usize,
                        entry: None,
                    };
                    if visit(line).is_break() {
                        return Ok(());
                    }
                }
            }
        }
        for b in &snap.head {
            for (sid, e) in &b.lines {
                if e.timestamp_ns < start || e.timestamp_ns >= sel.end_ns || !sel.wants_stream(*sid)
                {
                    continue;
                }
                let Some(info) = streams.get(sid) else {
                    continue;
                };
                if need_line && !required.matches(&e.line) {
                    continue;
                }
                let line = LineRef {
                    stream: info,
                    timestamp_ns: e.timestamp_ns,
                    line_len: e.line.len(),
                    entry: need_line.then_some(e),
                };
                if visit(line).is_break() {
                    return Ok(());
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
        let required = Required::new(sel);
        let span = (end - start) as u128;
        let mut width = ((span / 64) as i64).max(1);
        let mut cursor = match direction {
            Direction::Forward => start,
            Direction::Backward => end,
        };
        let mut chunks = ChunkReader::new(&snap, inner);
        let mut cands = Vec::new();
        let mut entry = LogEntry::new(0, String::new());
        loop {
            let (lo, hi) = match direction {
                Direction::Forward => (cursor, cursor.saturating_add(width).min(end)),
                Direction::Backward => (cursor.saturating_sub(width).max(start), cursor),
            };
            if lo >= hi {
                return Ok(());
            }
            cands.clear();
            // Chunks that overlap the previous window are kept decoded for this one.
            chunks.next_window();
            let (query, gates) = index::build_query(&inner.fields, sel, lo, hi);
            for (seg, doc, stream) in chunk_docs(&snap.searcher, &*query, &gates)? {
                if !streams.contains_key(&stream) {
                    continue;
                }
                let c = chunks.chunk(seg, doc)?;
                for i in line_range(&c.head.ts, lo, hi) {
                    if required.matches(c.text(i)) {
                        cands.push(Cand {
                            ts: c.head.ts[i],
                            stream,
                            src: Src::Index(seg, doc, i as u32),
                        });
                    }
                }
            }
            snap.head_cands_into(&mut cands, |sid, e| {
                e.timestamp_ns >= lo
                    && e.timestamp_ns < hi
                    && sel.wants_stream(sid)
                    && required.matches(&e.line)
            });
            match direction {
                Direction::Forward => cands.sort_unstable_by_key(|c| (c.ts, c.stream, c.src)),
                Direction::Backward => cands
                    .sort_unstable_by(|a, b| (b.ts, a.stream, a.src).cmp(&(a.ts, b.stream, b.src))),
            }
            for c in &cands {
                let Some(info) = streams.get(&c.stream) else {
                    continue;
                };
                chunks.entry_into(c, &mut entry)?;
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

impl Snapshot {
    /// Adds the head's lines that `keep` accepts to `out`, as read candidates.
    fn head_cands_into(&self, out: &mut Vec<Cand>, keep: impl Fn(StreamId, &LogEntry) -> bool) {
        for (bi, b) in self.head.iter().enumerate() {
            for (li, (sid, e)) in b.lines.iter().enumerate() {
                if keep(*sid, e) {
                    out.push(Cand {
                        ts: e.timestamp_ns,
                        stream: *sid,
                        src: Src::Head(bi as u32, li as u32),
                    });
                }
            }
        }
    }
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
        self.commit_serialized()
    }

    /// Commits if the head still holds `limit` bytes once earlier commits are done
    /// (appenders that waited behind one commit do not each commit a sliver after it).
    fn commit_if_over(&self, limit: usize) -> Result<(), LogStoreError> {
        let _serial = self.commit_lock.lock();
        if self.view.read().active_bytes < limit {
            return Ok(());
        }
        self.commit_serialized()
    }

    /// A commit; the caller holds `commit_lock`.
    fn commit_serialized(&self) -> Result<(), LogStoreError> {
        let (segment, frozen) = {
            let mut w = self.writer.lock();
            if !w.dirty || w.closed {
                return Ok(());
            }
            let segment = self.wal.rotate()?;
            let frozen = {
                let mut v = self.view.write();
                let active = std::mem::take(&mut v.active);
                v.frozen.extend(active);
                v.active_bytes = 0;
                v.frozen.clone()
            };
            // The WAL records before `segment` are dropped after this commit: the streams
            // they named must be on disk first.
            self.streams.write().sync()?;
            w.dirty = false;
            (segment, frozen)
        };
        // Cutting and compressing chunks is the expensive part: appends go on meanwhile
        // (into the next head and WAL segment).
        let result = chunk_documents(&self.fields, &self.opts, &frozen).and_then(|docs| {
            let mut w = self.writer.lock();
            for d in docs {
                w.writer.add_document(d)?;
            }
            let mut prepared = w.writer.prepare_commit()?;
            prepared.set_payload(&format!("wal_segment={segment}"));
            prepared.commit()?;
            Ok(())
        });
        if let Err(e) = result {
            // The frozen lines stay readable and in the WAL; the next commit retries.
            self.writer.lock().dirty = true;
            let mut v = self.view.write();
            let mut back = std::mem::take(&mut v.frozen);
            back.append(&mut v.active);
            v.active = back;
            return Err(e);
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
        // Lines older than the cutoff are hidden at once; chunks holding only such lines
        // are deleted (a chunk straddling the cutoff stays until all of it is old).
        self.retention_cutoff.fetch_max(cutoff, Ordering::Relaxed);
        let old = index::older_than(&self.fields, cutoff);
        let deleted: u64 = {
            let snap = self.snapshot();
            let weight = old.weight(EnableScoring::disabled_from_searcher(&snap.searcher))?;
            let mut n = 0;
            for seg in snap.searcher.segment_readers() {
                let cols = Columns::open(seg)?;
                let alive = seg.alive_bitset();
                weight.for_each_no_score(seg, &mut |docs: &[DocId]| {
                    for &d in docs {
                        if alive.is_none_or(|a| a.is_alive(d)) {
                            n += cols.lines.first(d).unwrap_or(0);
                        }
                    }
                })?;
            }
            n
        };
        if deleted > 0 {
            let mut w = self.writer.lock();
            if w.closed {
                return Err(LogStoreError::Closed);
            }
            w.writer.delete_query(Box::new(old))?;
            w.dirty = true;
        }
        self.commit()?;
        let snap = self.snapshot();
        let mut streams = self.streams.write();
        streams.reset_spans();
        let mut ignored = i64::MIN;
        scan_spans(&snap.searcher, &mut streams, &mut ignored)?;
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

/// A batch as a head batch. Stream ids are resolved (and created) here.
fn head_batch(streams: &mut Streams, batch: LogBatch, max_ts: &mut i64) -> HeadBatch {
    let mut head = HeadBatch {
        lines: Vec::with_capacity(batch.entry_count()),
        bytes: 0,
    };
    for s in batch.streams {
        if s.entries.is_empty() {
            continue;
        }
        let (id, _) = streams.id_for(&s.labels);
        for e in s.entries {
            streams.observe(id, e.timestamp_ns, !e.metadata.is_empty());
            *max_ts = (*max_ts).max(e.timestamp_ns);
            head.bytes += e.line.len();
            head.lines.push((id, e));
        }
    }
    head
}

/// Cuts head batches into chunks — per stream, in time order (arrival order among equal
/// timestamps), at most `chunk_max_lines` lines or about `chunk_max_bytes` — and returns
/// their index documents.
fn chunk_documents(
    f: &Fields,
    opts: &LogStoreOptions,
    batches: &[Arc<HeadBatch>],
) -> Result<Vec<TantivyDocument>, LogStoreError> {
    let mut by_stream: hashbrown::HashMap<StreamId, Vec<&LogEntry>> = hashbrown::HashMap::new();
    for b in batches {
        for (sid, e) in &b.lines {
            by_stream.entry(*sid).or_default().push(e);
        }
    }
    let max_lines = opts.chunk_max_lines.max(1);
    let mut docs = Vec::new();
    let mut blob = Vec::new();
    for (sid, mut lines) in by_stream {
        lines.sort_by_key(|e| e.timestamp_ns);
        let mut rest = &lines[..];
        while !rest.is_empty() {
            let mut n = 0;
            let mut bytes = 0;
            while n < rest.len() && n < max_lines && bytes < opts.chunk_max_bytes {
                bytes += rest[n].line.len();
                n += 1;
            }
            let (part, tail) = rest.split_at(n);
            rest = tail;
            blob.clear();
            chunk::encode(part, opts.chunk_zstd_level, &mut blob)
                .map_err(|e| LogStoreError::io(Path::new("log chunk"), e))?;
            docs.push(chunk_document(f, sid, part, &blob));
        }
    }
    Ok(docs)
}

fn chunk_document(
    f: &Fields,
    stream: StreamId,
    lines: &[&LogEntry],
    blob: &[u8],
) -> TantivyDocument {
    let mut terms = ChunkTerms::default();
    let mut traces = hashbrown::HashSet::new();
    let mut meta = false;
    for e in lines {
        terms.add_line(&e.line);
        if let Some(t) = e.trace_id {
            traces.insert(t.0);
        }
        meta |= !e.metadata.is_empty();
    }
    let keys: Vec<u64> = terms
        .hex_runs
        .iter()
        .map(|r| tokens::hex_key(r))
        .chain(traces.iter().map(tokens::trace_key))
        .collect();
    let flags = if meta { index::FLAG_METADATA } else { 0 }
        | if terms.long_runs {
            index::FLAG_LONG_RUNS
        } else {
            0
        };
    let mut doc = TantivyDocument::new();
    doc.add_text(f.line, terms.joined());
    doc.add_u64(f.stream, stream);
    doc.add_i64(f.min_ts, lines.first().map_or(0, |e| e.timestamp_ns));
    doc.add_i64(f.max_ts, lines.last().map_or(0, |e| e.timestamp_ns));
    doc.add_u64(f.lines, lines.len() as u64);
    doc.add_u64(f.flags, flags);
    doc.add_u64(f.max_hex, terms.max_hex_len as u64);
    for word in bloom::build(keys.into_iter()) {
        doc.add_u64(f.bloom, word);
    }
    doc.add_bytes(f.chunk, blob);
    doc
}

/// Segments of a size level that trigger a merge.
const MERGE_AT_SEGMENTS: usize = 6;

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

/// Rebuilds every stream's time span from the index's columns; returns the lines indexed.
fn scan_spans(
    searcher: &Searcher,
    streams: &mut Streams,
    max_ts: &mut i64,
) -> Result<u64, LogStoreError> {
    let mut lines = 0;
    for seg in searcher.segment_readers() {
        let cols = Columns::open(seg)?;
        let alive = seg.alive_bitset();
        for d in 0..seg.max_doc() {
            if alive.is_some_and(|a| !a.is_alive(d)) {
                continue;
            }
            let sid = cols.stream.first(d).unwrap_or(0);
            let has_metadata = cols.flags.first(d).unwrap_or(0) & index::FLAG_METADATA != 0;
            for ts in [cols.min_ts.first(d), cols.max_ts.first(d)]
                .into_iter()
                .flatten()
            {
                streams.observe(sid, ts, has_metadata);
                *max_ts = (*max_ts).max(ts);
            }
            lines += cols.lines.first(d).unwrap_or(0);
        }
    }
    Ok(lines)
}

struct Columns {
    flags: tantivy::columnar::Column<u64>,
    max_hex: tantivy::columnar::Column<u64>,
    bloom: tantivy::columnar::Column<u64>,
    min_ts: tantivy::columnar::Column<i64>,
    max_ts: tantivy::columnar::Column<i64>,
    stream: tantivy::columnar::Column<u64>,
    lines: tantivy::columnar::Column<u64>,
}

impl Columns {
    fn open(seg: &SegmentReader) -> Result<Columns, LogStoreError> {
        let ff = seg.fast_fields();
        Ok(Columns {
            flags: ff.u64("flags")?,
            max_hex: ff.u64("max_hex")?,
            bloom: ff.u64("bloom")?,
            min_ts: ff.i64("min_ts")?,
            max_ts: ff.i64("max_ts")?,
            stream: ff.u64("stream")?,
            lines: ff.u64("lines")?,
        })
    }

    fn bloom_may_contain(&self, d: DocId, key: u64) -> bool {
        let rows = self.bloom.index.value_row_ids(d);
        let words = (rows.end - rows.start) as usize;
        bloom::may_contain(
            words,
            |w| self.bloom.values.get_val(rows.start + w as u32),
            key,
        )
    }

    /// Whether chunk `d` meets `gate`.
    fn passes(&self, d: DocId, gate: &Gate) -> bool {
        match *gate {
            Gate::Trace { key } => self.bloom_may_contain(d, key),
            Gate::Hex {
                key,
                len,
                longer_ok,
            } => {
                (longer_ok
                    && (self.max_hex.first(d).unwrap_or(0) > len as u64
                        || self.flags.first(d).unwrap_or(0) & index::FLAG_LONG_RUNS != 0))
                    || self.bloom_may_contain(d, key)
            }
        }
    }
}

/// The chunks a query selects, as (segment ordinal, document, stream).
fn chunk_docs(
    searcher: &Searcher,
    query: &dyn Query,
    gates: &[Gate],
) -> Result<Vec<(u32, DocId, StreamId)>, LogStoreError> {
    let weight = query.weight(EnableScoring::disabled_from_searcher(searcher))?;
    let mut out = Vec::new();
    for (ord, seg) in searcher.segment_readers().iter().enumerate() {
        let cols = Columns::open(seg)?;
        let alive = seg.alive_bitset();
        weight.for_each_no_score(seg, &mut |docs: &[DocId]| {
            for &d in docs {
                if alive.is_none_or(|a| a.is_alive(d)) && gates.iter().all(|g| cols.passes(d, g)) {
                    out.push((ord as u32, d, cols.stream.first(d).unwrap_or(0)));
                }
            }
        })?;
    }
    Ok(out)
}

/// The lines of a chunk (timestamps ascending) in `[start, end)`.
fn line_range(ts: &[i64], start: i64, end: i64) -> std::ops::Range<usize> {
    ts.partition_point(|&t| t < start)..ts.partition_point(|&t| t < end)
}

/// The substrings every selected line must contain; lines without them are skipped
/// before they become entries.
struct Required<'a> {
    finders: Vec<memchr::memmem::Finder<'a>>,
}

impl<'a> Required<'a> {
    fn new(sel: &'a Selection) -> Self {
        Required {
            finders: sel
                .required
                .iter()
                .map(|r| memchr::memmem::Finder::new(r.as_bytes()))
                .collect(),
        }
    }

    fn matches(&self, line: &str) -> bool {
        self.finders
            .iter()
            .all(|f| f.find(line.as_bytes()).is_some())
    }
}

/// The chunk in a stored document as tantivy serializes it: `[vint values]`, then per
/// value `[u32 field][u8 type][vint len][bytes]` (a chunk document stores one value).
/// Read here because tantivy's own reader copies a bytes value one byte at a time: it
/// took most of the time of a query over all lines. The store tests read every chunk
/// through this, so a change of tantivy's layout fails them.
fn stored_chunk(doc: &[u8], field: tantivy::schema::Field) -> Result<&[u8], chunk::Corrupt> {
    /// Bytes value type code of tantivy's document serialization.
    const BYTES_CODE: u8 = 4;
    // tantivy's VInt: 7 bits per byte, least significant first, high bit on the last.
    fn vint(b: &[u8], at: &mut usize) -> Option<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = *b.get(*at)?;
            *at += 1;
            v |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 != 0 {
                return Some(v);
            }
        }
        None
    }
    let bad = "a chunk document without its chunk";
    let mut at = 0;
    if vint(doc, &mut at) != Some(1) {
        return Err(bad);
    }
    let id = doc.get(at..at + 4).ok_or(bad)?;
    if u32::from_le_bytes([id[0], id[1], id[2], id[3]]) != field.field_id()
        || doc.get(at + 4) != Some(&BYTES_CODE)
    {
        return Err(bad);
    }
    at += 5;
    let len = vint(doc, &mut at).ok_or(bad)? as usize;
    doc.get(at..at.checked_add(len).ok_or(bad)?).ok_or(bad)
}

/// Where a candidate line is: line `.2` of chunk (segment `.0`, document `.1`), or line
/// `.1` of head batch `.0`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Src {
    Index(u32, DocId, u32),
    Head(u32, u32),
}

struct Cand {
    ts: i64,
    stream: StreamId,
    src: Src,
}

/// Reads chunks of a snapshot, keeping one doc-store reader per segment and the chunks
/// decoded for the current and the previous read window.
struct ChunkReader<'a> {
    snap: &'a Snapshot,
    f: &'a Fields,
    stats: &'a LogStoreStats,
    stores: Vec<Option<StoreReader>>,
    current: hashbrown::HashMap<(u32, DocId), Arc<Chunk>>,
    previous: hashbrown::HashMap<(u32, DocId), Arc<Chunk>>,
}

impl<'a> ChunkReader<'a> {
    fn new(snap: &'a Snapshot, inner: &'a Inner) -> Self {
        ChunkReader {
            snap,
            f: &inner.fields,
            stats: &inner.stats,
            stores: (0..snap.searcher.segment_readers().len())
                .map(|_| None)
                .collect(),
            current: hashbrown::HashMap::new(),
            previous: hashbrown::HashMap::new(),
        }
    }

    /// Calls `f` with the stored bytes of a chunk.
    fn with_blob<R>(
        &mut self,
        seg: u32,
        doc: DocId,
        f: impl FnOnce(&[u8]) -> Result<R, chunk::Corrupt>,
    ) -> Result<R, LogStoreError> {
        let slot = &mut self.stores[seg as usize];
        let store = match slot {
            Some(s) => s,
            None => {
                let reader = self.snap.searcher.segment_reader(seg);
                slot.insert(
                    reader
                        .get_store_reader(4)
                        .map_err(tantivy::TantivyError::from)?,
                )
            }
        };
        let serialized = store.get_document_bytes(doc)?;
        self.stats.chunks_read.fetch_add(1, Ordering::Relaxed);
        stored_chunk(&serialized, self.f.chunk)
            .and_then(f)
            .map_err(|e| self.corrupt(seg, e))
    }

    fn corrupt(&self, seg: u32, reason: &str) -> LogStoreError {
        let id = self.snap.searcher.segment_reader(seg).segment_id();
        LogStoreError::corrupt(
            Path::new(&format!("log index segment {}", id.uuid_string())),
            reason,
        )
    }

    /// A chunk's timestamps and sizes (its text stays compressed).
    fn head(&mut self, seg: u32, doc: DocId) -> Result<chunk::Head, LogStoreError> {
        self.with_blob(seg, doc, chunk::decode_head)
    }

    /// A whole chunk, decoded now (not kept).
    fn load(&mut self, seg: u32, doc: DocId) -> Result<Chunk, LogStoreError> {
        self.with_blob(seg, doc, chunk::decode)
    }

    /// A whole chunk, decoded once per window.
    fn chunk(&mut self, seg: u32, doc: DocId) -> Result<Arc<Chunk>, LogStoreError> {
        if let Some(c) = self.current.get(&(seg, doc)) {
            return Ok(c.clone());
        }
        let c = match self.previous.remove(&(seg, doc)) {
            Some(c) => c,
            None => Arc::new(self.load(seg, doc)?),
        };
        self.current.insert((seg, doc), c.clone());
        Ok(c)
    }

    /// Starts a read window: chunks not used since the previous one are let go.
    fn next_window(&mut self) {
        self.previous = std::mem::take(&mut self.current);
    }

    /// The entry a candidate points at.
    fn entry_into(&mut self, c: &Cand, out: &mut LogEntry) -> Result<(), LogStoreError> {
        match c.src {
            Src::Head(b, l) => out.clone_from(&self.snap.head[b as usize].lines[l as usize].1),
            Src::Index(seg, doc, line) => self.chunk(seg, doc)?.entry_into(line as usize, out),
        }
        Ok(())
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
