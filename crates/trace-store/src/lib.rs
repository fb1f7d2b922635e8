//! lastmile's span store: every span by trace id in one read, and trace search.
//!
//! Writes go to a write-ahead log (the metrics store's group-commit WAL, under
//! `traces/wal/`) and into the in-memory [`head`], which keeps spans encoded in one arena
//! with an index by trace id. When the head is large or old enough it is frozen and written
//! as one immutable, memory-mapped [`block`] file (`traces/blocks/<ULID>.spans`): spans
//! sorted by trace id in zstd pages, a sorted trace table for lookups by binary search, and
//! a fixed-width summary row per span for search. Blocks past retention are deleted.
//!
//! A write is acknowledged only once its WAL record is durable; a block records which WAL
//! segments it contains, so a crash between writing a block and trimming the WAL does not
//! store spans twice.

pub mod block;
pub mod codec;
pub mod head;
mod metrics;
pub mod search;

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use lastmile_model::{ResourceSpans, ScopeSpans, SpanBatch, TraceId};
use lastmile_store::StoreError;
use lastmile_store::wal::{self, Wal, WalSync};
use parking_lot::{Mutex, RwLock};

use crate::block::Block;
use crate::head::{Group, Head};
pub use crate::metrics::TraceStoreMetrics;
pub use crate::search::{TraceQuery, TraceSummary};

/// Decides which stored traces stay: tail sampling, wired in by the server. The store
/// stays ignorant of policies; it asks at the two moments that matter.
pub trait TraceRetention: Send + Sync {
    /// Whether reads hide this trace's spans that are still in the head (decided as
    /// dropped, not yet left out of a block).
    fn hidden(&self, id: &TraceId) -> bool;
    /// When the head is written as a block: for each trace, whether to write it.
    fn retain_on_flush(&self, ids: &[TraceId]) -> Vec<bool>;
}

/// WAL record type of a span batch.
const REC_SPANS: u8 = 1;

#[derive(Debug, thiserror::Error)]
pub enum TraceStoreError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("span store: {0}")]
    Decode(#[from] codec::DecodeError),
}

#[derive(Clone, Debug)]
pub struct TraceStoreOptions {
    /// Blocks whose last span ended longer ago than this are deleted.
    pub retention: Duration,
    pub wal_sync: WalSync,
    pub wal_segment_bytes: u64,
    /// The head is written as a block when it holds this many spans…
    pub max_head_spans: usize,
    /// …or this many bytes…
    pub max_head_bytes: usize,
    /// …or its first span arrived this long ago.
    pub max_head_age: Duration,
}

impl Default for TraceStoreOptions {
    fn default() -> Self {
        TraceStoreOptions {
            retention: Duration::from_secs(7 * 24 * 3600),
            wal_sync: WalSync::Fsync,
            wal_segment_bytes: 64 << 20,
            max_head_spans: 1_000_000,
            max_head_bytes: 256 << 20,
            max_head_age: Duration::from_secs(15 * 60),
        }
    }
}

struct State {
    head: Head,
    /// A head being written as a block; still read until the block is in `blocks`.
    frozen: Option<Arc<Head>>,
}

pub struct TraceStore {
    dir: PathBuf,
    opts: TraceStoreOptions,
    state: RwLock<State>,
    blocks: RwLock<Vec<Arc<Block>>>,
    wal: Wal,
    /// Serialises flushes (the upkeep thread and explicit calls).
    flushing: Mutex<()>,
    metrics: Arc<TraceStoreMetrics>,
    retention: RwLock<Option<Arc<dyn TraceRetention>>>,
}

/// What opening found.
#[derive(Debug, Default)]
pub struct TraceOpenReport {
    pub blocks: usize,
    pub replayed_spans: usize,
    pub replay_errors: usize,
}

/// Store-wide figures for the status page and `/metrics`.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct TraceStoreStats {
    pub head_spans: usize,
    pub head_traces: usize,
    pub head_bytes: usize,
    pub blocks: usize,
    pub block_spans: u64,
    pub block_bytes: u64,
}

fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

impl TraceStore {
    /// Opens (or creates) the store under `dir`, replaying its WAL into the head.
    pub fn open(
        dir: &Path,
        opts: TraceStoreOptions,
        metrics: Arc<TraceStoreMetrics>,
    ) -> Result<(TraceStore, TraceOpenReport), TraceStoreError> {
        let blocks_dir = dir.join("blocks");
        let wal_dir = dir.join("wal");
        for d in [&blocks_dir, &wal_dir] {
            fs::create_dir_all(d).map_err(|e| StoreError::io(d, e))?;
        }
        let mut report = TraceOpenReport::default();
        let mut blocks = Vec::new();
        let mut names: Vec<PathBuf> = fs::read_dir(&blocks_dir)
            .map_err(|e| StoreError::io(&blocks_dir, e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        names.sort();
        let mut wal_upto = 0;
        for p in names {
            match p.extension().and_then(|e| e.to_str()) {
                Some("spans") => {
                    let b = Block::open(&p)?;
                    wal_upto = wal_upto.max(b.wal_upto());
                    blocks.push(Arc::new(b));
                }
                // A block whose write was interrupted; its spans are still in the WAL.
                Some("tmp") => {
                    let _ = fs::remove_file(&p);
                }
                _ => {}
            }
        }
        report.blocks = blocks.len();
        // WAL segments a block already holds are dropped before replay (when a crash came
        // between writing the block and trimming the log).
        let trimmed_upto = wal::latest_checkpoint(&wal_dir)
            .map_err(|e| StoreError::io(&wal_dir, e))?
            .map_or(0, |c| c.0);
        if wal_upto > trimmed_upto {
            wal::checkpoint(&wal_dir, wal_upto, |_, _| {})?;
        }
        let mut head = Head::default();
        wal::replay(&wal_dir, |frame| {
            if frame.first() != Some(&REC_SPANS) {
                report.replay_errors += 1;
                return;
            }
            match head.replay(&frame[1..]) {
                Ok(n) => report.replayed_spans += n,
                Err(e) => {
                    report.replay_errors += 1;
                    tracing::warn!(error = %e, "skipping a damaged span WAL record");
                }
            }
        })?;
        let wal = Wal::open(
            &wal_dir,
            opts.wal_sync,
            opts.wal_segment_bytes,
            metrics.wal.clone(),
        )?;
        let store = TraceStore {
            dir: dir.to_path_buf(),
            opts,
            state: RwLock::new(State { head, frozen: None }),
            blocks: RwLock::new(blocks),
            wal,
            flushing: Mutex::new(()),
            metrics,
            retention: RwLock::new(None),
        };
        store.update_gauges();
        Ok((store, report))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Installs the policy that decides which traces stay (see [`TraceRetention`]).
    pub fn set_retention(&self, r: Arc<dyn TraceRetention>) {
        *self.retention.write() = Some(r);
    }

    fn hidden(&self, id: &TraceId) -> bool {
        self.retention.read().as_ref().is_some_and(|r| r.hidden(id))
    }

    /// Stores a batch; returns once it is durable (its WAL record is synced).
    pub async fn append(&self, batch: &SpanBatch) -> Result<usize, TraceStoreError> {
        let n = batch.span_count();
        if n == 0 {
            return Ok(0);
        }
        let seq = {
            let mut frame = Vec::with_capacity(64 + n * 256);
            let mut st = self.state.write();
            wal::write_frame(&mut frame, REC_SPANS, |payload| {
                st.head.apply(batch, payload)
            });
            // Submitted under the lock, so the log's order is the head's order and a
            // rotation (taken under the same lock) splits them at the same point.
            self.wal.submit(&frame)?
        };
        self.wal.wait_durable(seq).await?;
        self.metrics.spans_appended.inc_by(n as u64);
        Ok(n)
    }

    /// Every stored span of a trace, grouped by resource and scope, spans by start time.
    /// A span stored twice (a client's retry) is returned once.
    pub fn trace(&self, id: TraceId) -> Result<Option<SpanBatch>, TraceStoreError> {
        let hidden = self.hidden(&id);
        let mut found = if hidden {
            Vec::new()
        } else {
            let st = self.state.read();
            let mut v = st.head.trace(id)?;
            if let Some(f) = &st.frozen {
                v.extend(f.trace(id)?);
            }
            v
        };
        let blocks = self.blocks.read().clone();
        for b in &blocks {
            found.extend(b.trace(id)?);
        }
        if found.is_empty() {
            return Ok(None);
        }
        Ok(Some(group_spans(found)))
    }

    /// Traces matching `q`, most recent first.
    pub fn search(&self, q: &TraceQuery) -> Result<Vec<TraceSummary>, TraceStoreError> {
        let limit = q.limit();
        let retention = self.retention.read().clone();
        let visible = |mut v: Vec<TraceSummary>| {
            if let Some(r) = &retention {
                v.retain(|s| !r.hidden(&s.trace_id));
            }
            v
        };
        let mut all = {
            let st = self.state.read();
            let mut v = top(visible(st.head.search(q)?), limit);
            if let Some(f) = &st.frozen {
                v.extend(top(visible(f.search(q)?), limit));
            }
            v
        };
        let blocks = self.blocks.read().clone();
        for b in &blocks {
            all.extend(top(b.search(q)?, limit));
        }
        Ok(search::merge_results(all, limit))
    }

    /// Services and, for each, its span names (sorted, distinct).
    pub fn operations(&self) -> Vec<(String, Vec<String>)> {
        let mut set =
            std::collections::BTreeMap::<String, std::collections::BTreeSet<String>>::new();
        let mut add = |s: &str, n: &str| {
            set.entry(s.to_owned()).or_default().insert(n.to_owned());
        };
        {
            let st = self.state.read();
            st.head.operations().for_each(|(s, n)| add(s, n));
            if let Some(f) = &st.frozen {
                f.operations().for_each(|(s, n)| add(s, n));
            }
        }
        for b in self.blocks.read().iter() {
            b.operations().for_each(|(s, n)| add(s, n));
        }
        set.into_iter()
            .map(|(s, n)| (s, n.into_iter().collect()))
            .collect()
    }

    pub fn stats(&self) -> TraceStoreStats {
        let st = self.state.read();
        let blocks = self.blocks.read();
        let frozen = st.frozen.as_ref();
        TraceStoreStats {
            head_spans: st.head.span_count() + frozen.map_or(0, |f| f.span_count()),
            head_traces: st.head.trace_count() + frozen.map_or(0, |f| f.trace_count()),
            head_bytes: st.head.bytes() + frozen.map_or(0, |f| f.bytes()),
            blocks: blocks.len(),
            block_spans: blocks.iter().map(|b| b.span_count()).sum(),
            block_bytes: blocks.iter().map(|b| b.size_bytes()).sum(),
        }
    }

    fn update_gauges(&self) {
        let s = self.stats();
        self.metrics.head_spans.set(s.head_spans as i64);
        self.metrics.blocks.set(s.blocks as i64);
        self.metrics.block_bytes.set(s.block_bytes as i64);
    }

    /// Periodic upkeep: flushes the head when it is big or old enough, applies retention.
    pub fn maintain(&self) -> Result<(), TraceStoreError> {
        let due = {
            let st = self.state.read();
            let h = &st.head;
            h.span_count() >= self.opts.max_head_spans
                || h.bytes() >= self.opts.max_head_bytes
                || h.created
                    .is_some_and(|c| c.elapsed() >= self.opts.max_head_age)
        };
        if due {
            self.flush()?;
        }
        self.apply_retention(now_ns())?;
        self.update_gauges();
        Ok(())
    }

    /// Writes the whole head as a block now (no-op when it is empty).
    pub fn flush(&self) -> Result<(), TraceStoreError> {
        let _one_at_a_time = self.flushing.lock();
        let (frozen, upto) = {
            let mut st = self.state.write();
            if st.head.span_count() == 0 {
                return Ok(());
            }
            let upto = self.wal.rotate()?;
            let head = std::mem::take(&mut st.head);
            let frozen = Arc::new(head);
            st.frozen = Some(frozen.clone());
            (frozen, upto)
        };
        // Tail sampling decides now for every trace of the head; dropped ones are left out.
        let retention = self.retention.read().clone();
        let dropped: hashbrown::HashSet<TraceId> = match retention {
            Some(r) => {
                let ids = frozen.trace_ids();
                let keep = r.retain_on_flush(&ids);
                ids.into_iter()
                    .zip(keep)
                    .filter(|(_, k)| !k)
                    .map(|(id, _)| id)
                    .collect()
            }
            None => Default::default(),
        };
        let dropped_spans: usize = dropped.iter().map(|id| frozen.trace_span_count(id)).sum();
        if dropped_spans < frozen.span_count() {
            let blocks_dir = self.dir.join("blocks");
            let name = lastmile_store::block::new_ulid();
            let path = block::write_block(&frozen, &blocks_dir, &name, upto, &|id| {
                !dropped.contains(id)
            })?;
            let b = Arc::new(Block::open(&path)?);
            self.blocks.write().push(b);
        }
        self.state.write().frozen = None;
        self.metrics.spans_sampled_out.inc_by(dropped_spans as u64);
        wal::checkpoint(&self.dir.join("wal"), upto, |_, _| {})?;
        self.metrics.head_flushes.inc();
        self.update_gauges();
        Ok(())
    }

    /// Deletes blocks whose last span ended before `now_ns - retention`.
    pub fn apply_retention(&self, now_ns: u64) -> Result<usize, TraceStoreError> {
        let cutoff = now_ns.saturating_sub(self.opts.retention.as_nanos() as u64);
        let expired: Vec<Arc<Block>> = {
            let mut blocks = self.blocks.write();
            let (old, keep): (Vec<_>, Vec<_>) =
                blocks.drain(..).partition(|b| b.max_end_ns() < cutoff);
            *blocks = keep;
            old
        };
        for b in &expired {
            fs::remove_file(b.path()).map_err(|e| StoreError::io(b.path(), e))?;
            tracing::info!(block = %b.path().display(), "deleted span block past retention");
        }
        Ok(expired.len())
    }

    /// Syncs and stops the WAL; later appends fail.
    pub fn close(&self) {
        self.wal.close();
    }
}

fn top(mut v: Vec<TraceSummary>, limit: usize) -> Vec<TraceSummary> {
    if v.len() > limit {
        v.select_nth_unstable_by(limit, |a, b| b.start_ns.cmp(&a.start_ns));
        v.truncate(limit);
    }
    v
}

/// Regroups spans by (resource, scope), dropping repeated span ids, spans by start time.
fn group_spans(mut found: Vec<(Arc<Group>, lastmile_model::Span)>) -> SpanBatch {
    found.sort_by(|a, b| {
        a.1.start_unix_nano
            .cmp(&b.1.start_unix_nano)
            .then_with(|| a.1.span_id.cmp(&b.1.span_id))
    });
    let mut seen = hashbrown::HashSet::new();
    let mut batch = SpanBatch::default();
    let mut index: Vec<(Vec<u8>, usize)> = Vec::new();
    for (g, span) in found {
        if !seen.insert(span.span_id) {
            continue;
        }
        let at = match index.iter().find(|(enc, _)| *enc == g.encoded) {
            Some(&(_, i)) => i,
            None => {
                batch.resources.push(ResourceSpans {
                    resource: Arc::new(g.resource.clone()),
                    scopes: vec![ScopeSpans {
                        scope: g.scope.clone(),
                        spans: Vec::new(),
                    }],
                });
                index.push((g.encoded.clone(), batch.resources.len() - 1));
                batch.resources.len() - 1
            }
        };
        batch.resources[at].scopes[0].spans.push(span);
    }
    batch
}
