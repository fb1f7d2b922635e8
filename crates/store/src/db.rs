//! The metrics database: WAL + head + blocks, and the upkeep that moves data between them.
//!
//! Data directory layout:
//! - `wal/` — write-ahead log segments and the latest checkpoint;
//! - `blocks/<ULID>/` — immutable blocks;
//! - `lock` — held while a process has the directory open.
//!
//! Upkeep ([`Db::maintain`]) runs periodically: when the head spans more than 1.5 block
//! ranges, its oldest window becomes a block and the WAL is checkpointed; adjacent blocks
//! are compacted into larger ones (×3 per level, like Prometheus); blocks past retention
//! are deleted.

use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashSet};
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hashbrown::HashMap;
use lastmile_model::{Labels, Matcher, MetricMetadata, WriteBatch};
use parking_lot::{Mutex, RwLock};
use serde::Serialize;

use crate::block::{Block, BlockMeta, BlockWriter};
use crate::error::StoreError;
use crate::head::{AppendOutcome, Cardinality, Exemplar, Head, MAX_FUTURE_MS, window_start};
use crate::metrics::StoreMetrics;
use crate::series::{SelectedSeries, merge_sources};
use crate::wal::{self, Wal, WalSync};

#[derive(Clone, Debug)]
pub struct DbOptions {
    /// Blocks whose newest sample is older than this (relative to the newest data) are
    /// deleted.
    pub retention: Duration,
    /// Time range of a block cut from the head; compaction grows blocks by ×3 levels.
    pub block_range: Duration,
    pub wal_sync: WalSync,
    pub wal_segment_bytes: u64,
    /// Capacity of the in-memory exemplar ring.
    pub max_exemplars: usize,
}

impl Default for DbOptions {
    fn default() -> Self {
        DbOptions {
            retention: Duration::from_secs(15 * 24 * 3600),
            block_range: Duration::from_secs(2 * 3600),
            wal_sync: WalSync::Fsync,
            wal_segment_bytes: 128 << 20,
            max_exemplars: 100_000,
        }
    }
}

pub struct Db {
    dir: PathBuf,
    opts: DbOptions,
    head: Head,
    wal: Wal,
    blocks: RwLock<Vec<Arc<Block>>>,
    /// Serialises flushes, compactions and retention.
    upkeep: Mutex<()>,
    metrics: Arc<StoreMetrics>,
    _lock: File,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HeadStats {
    pub num_series: u64,
    pub num_samples: u64,
    pub chunk_bytes: i64,
    pub min_time: Option<i64>,
    pub max_time: Option<i64>,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BlockInfo {
    #[serde(flatten)]
    pub meta: BlockMeta,
    pub size_bytes: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct TsdbStatus {
    pub head: HeadStats,
    pub blocks: Vec<BlockInfo>,
    pub cardinality: Cardinality,
}

/// What a startup found and did, for the log line.
#[derive(Clone, Debug, Default)]
pub struct OpenReport {
    pub blocks: usize,
    pub wal_frames: u64,
    pub wal_bytes: u64,
    pub wal_truncated_bytes: u64,
    pub replay_errors: u64,
    pub head_series: usize,
    pub elapsed: Duration,
}

impl Db {
    pub fn open(
        dir: &Path,
        opts: DbOptions,
        metrics: Arc<StoreMetrics>,
    ) -> Result<(Db, OpenReport), StoreError> {
        let started = Instant::now();
        fs::create_dir_all(dir).map_err(|e| StoreError::io(dir, e))?;
        let lock_path = dir.join("lock");
        let lock = File::create(&lock_path).map_err(|e| StoreError::io(&lock_path, e))?;
        if lock.try_lock().is_err() {
            return Err(StoreError::Locked(dir.to_path_buf()));
        }
        let blocks_dir = dir.join("blocks");
        fs::create_dir_all(&blocks_dir).map_err(|e| StoreError::io(&blocks_dir, e))?;
        let blocks = open_blocks(&blocks_dir)?;
        let range_ms = opts.block_range.as_millis() as i64;
        let head = Head::new(range_ms, opts.max_exemplars, metrics.clone());
        if let Some(max) = blocks.iter().map(|b| b.meta().max_time).max() {
            head.set_min_valid_t(max.saturating_add(1));
        }
        let wal_dir = dir.join("wal");
        let mut aliases = HashMap::new();
        let mut replay_errors = 0u64;
        let stats = wal::replay(&wal_dir, |frame| {
            if let Err(why) = head.replay_frame(frame, &mut aliases) {
                replay_errors += 1;
                if replay_errors <= 10 {
                    tracing::warn!(reason = why, "skipping an unreadable WAL record");
                }
            }
        })?;
        let wal = Wal::open(
            &wal_dir,
            opts.wal_sync,
            opts.wal_segment_bytes,
            metrics.clone(),
        )?;
        let report = OpenReport {
            blocks: blocks.len(),
            wal_frames: stats.frames,
            wal_bytes: stats.bytes,
            wal_truncated_bytes: stats.truncated_bytes,
            replay_errors,
            head_series: head.num_series(),
            elapsed: started.elapsed(),
        };
        let db = Db {
            dir: dir.to_path_buf(),
            opts,
            head,
            wal,
            blocks: RwLock::new(blocks),
            upkeep: Mutex::new(()),
            metrics,
            _lock: lock,
        };
        db.update_block_metrics();
        Ok((db, report))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn options(&self) -> &DbOptions {
        &self.opts
    }

    /// Appends a batch and returns once it is durable per the WAL sync policy.
    pub async fn write(&self, batch: &WriteBatch<'_>) -> Result<AppendOutcome, StoreError> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(i64::MAX / 2);
        let out = self
            .head
            .append(batch, Some(&self.wal), now.saturating_add(MAX_FUTURE_MS))?;
        if let Some(seq) = out.wal_seq {
            self.wal.wait_durable(seq).await?;
        }
        Ok(out)
    }

    fn blocks_overlapping(&self, mint: i64, maxt: i64) -> Vec<Arc<Block>> {
        self.blocks
            .read()
            .iter()
            .filter(|b| b.overlaps(mint, maxt))
            .cloned()
            .collect()
    }

    fn head_overlaps(&self, mint: i64, maxt: i64) -> bool {
        matches!((self.head.min_t(), self.head.max_t()), (Some(lo), Some(hi)) if lo <= maxt && hi >= mint)
    }

    /// Series matching all `matchers` with samples in `[mint, maxt]`, sorted by labels,
    /// with their chunks when `with_chunks`.
    pub fn select(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
        with_chunks: bool,
    ) -> Result<Vec<SelectedSeries>, StoreError> {
        let blocks = self.blocks_overlapping(mint, maxt);
        let from_head = || {
            self.head_overlaps(mint, maxt)
                .then(|| self.head.select(matchers, mint, maxt, with_chunks))
        };
        let mut sources = Vec::with_capacity(blocks.len() + 1);
        if blocks.len() >= 2 && cores() > 1 {
            // A long range spans several blocks, each selected on its own (postings, labels,
            // chunk refs): on a helper thread for half of them, this one doing the rest and
            // the head. The results are merged by labels, so their order does not matter.
            let (theirs, ours) = blocks.split_at(blocks.len() / 2);
            let select_all = |bs: &[Arc<Block>]| -> Result<Vec<Vec<SelectedSeries>>, StoreError> {
                bs.iter()
                    .map(|b| b.select(matchers, mint, maxt, with_chunks))
                    .collect()
            };
            let (a, b, head) = std::thread::scope(|scope| {
                let helper = scope.spawn(|| select_all(theirs));
                let b = select_all(ours);
                let head = from_head();
                let a = helper
                    .join()
                    .unwrap_or_else(|p| std::panic::resume_unwind(p));
                (a, b, head)
            });
            sources.extend(a?);
            sources.extend(b?);
            sources.extend(head);
        } else {
            for b in &blocks {
                sources.push(b.select(matchers, mint, maxt, with_chunks)?);
            }
            sources.extend(from_head());
        }
        Ok(merge_sources(sources))
    }

    /// Label names of series in range; with matcher sets, only of series they select.
    pub fn label_names(
        &self,
        matcher_sets: &[Vec<Matcher>],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<String>, StoreError> {
        let mut names = BTreeSet::new();
        if matcher_sets.is_empty() {
            for b in self.blocks_overlapping(mint, maxt) {
                names.extend(b.label_names());
            }
            if self.head_overlaps(mint, maxt) {
                names.extend(self.head.label_names());
            }
        } else {
            for set in matcher_sets {
                for s in self.select(set, mint, maxt, false)? {
                    names.extend(s.labels.iter().map(|l| l.name.to_owned()));
                }
            }
        }
        Ok(names.into_iter().collect())
    }

    pub fn label_values(
        &self,
        name: &str,
        matcher_sets: &[Vec<Matcher>],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<String>, StoreError> {
        let mut values = BTreeSet::new();
        if matcher_sets.is_empty() {
            for b in self.blocks_overlapping(mint, maxt) {
                values.extend(b.label_values(name));
            }
            if self.head_overlaps(mint, maxt) {
                values.extend(self.head.label_values(name));
            }
        } else {
            for set in matcher_sets {
                for s in self.select(set, mint, maxt, false)? {
                    values.extend(s.labels.get(name).map(str::to_owned));
                }
            }
        }
        Ok(values.into_iter().collect())
    }

    /// Exemplars of series selected by any of the matcher sets, grouped by series.
    pub fn exemplars(
        &self,
        matcher_sets: &[Vec<Matcher>],
        mint: i64,
        maxt: i64,
    ) -> Vec<(Labels, Vec<Exemplar>)> {
        let mut ids: BTreeMap<u32, Labels> = BTreeMap::new();
        for set in matcher_sets {
            ids.extend(self.head.select_ids(set));
        }
        let sorted: Vec<u32> = ids.keys().copied().collect();
        let mut grouped: BTreeMap<Labels, Vec<Exemplar>> = BTreeMap::new();
        for (id, e) in self.head.exemplars(&sorted, mint, maxt) {
            if let Some(labels) = ids.get(&id) {
                grouped.entry(labels.clone()).or_default().push(e);
            }
        }
        grouped.into_iter().collect()
    }

    pub fn metadata(&self) -> BTreeMap<String, MetricMetadata> {
        self.head.metadata()
    }

    pub fn head(&self) -> &Head {
        &self.head
    }

    pub fn status(&self, limit: usize) -> TsdbStatus {
        let blocks = self.blocks.read();
        TsdbStatus {
            head: HeadStats {
                num_series: self.head.num_series() as u64,
                num_samples: self.head.num_samples(),
                chunk_bytes: self.head.chunk_bytes(),
                min_time: self.head.min_t(),
                max_time: self.head.max_t(),
            },
            blocks: blocks
                .iter()
                .map(|b| BlockInfo {
                    meta: b.meta().clone(),
                    size_bytes: b.size_bytes(),
                })
                .collect(),
            cardinality: self.head.cardinality(limit),
        }
    }

    /// Head series per value of the label `name`, most first.
    pub fn series_count_by_label_value(&self, name: &str, limit: usize) -> Vec<(String, u64)> {
        self.head.series_count_by_label_value(name, limit)
    }

    /// Periodic upkeep: flush the head's old windows, compact, apply retention.
    pub fn maintain(&self) -> Result<(), StoreError> {
        let _g = self.upkeep.lock();
        let range = self.opts.block_range.as_millis() as i64;
        // Prometheus's rule: persist once the head spans 1.5 ranges, oldest window first.
        while let (Some(lo), Some(hi)) = (self.head.min_t(), self.head.max_t()) {
            if hi.saturating_sub(lo) <= range * 3 / 2 {
                break;
            }
            self.persist_head_before(window_start(lo, range).saturating_add(range))?;
            ensure_progress(lo, self.head.min_t())?;
        }
        while let Some(group) = self.plan_compaction() {
            self.compact(group)?;
        }
        self.apply_retention()
    }

    /// Persists everything in the head now (one block per window), e.g. before a backup
    /// or to measure on-disk size. Later samples older than what was flushed are refused.
    pub fn flush_head(&self) -> Result<(), StoreError> {
        let _g = self.upkeep.lock();
        let range = self.opts.block_range.as_millis() as i64;
        while let (Some(lo), Some(hi)) = (self.head.min_t(), self.head.max_t()) {
            let boundary = window_start(lo, range)
                .saturating_add(range)
                .min(hi.saturating_add(1));
            self.persist_head_before(boundary)?;
            ensure_progress(lo, self.head.min_t())?;
        }
        Ok(())
    }

    /// Writes head data before `boundary` as a block, drops it from the head, and
    /// checkpoints the WAL so it no longer replays that data.
    fn persist_head_before(&self, boundary: i64) -> Result<(), StoreError> {
        let started = Instant::now();
        self.head.set_min_valid_t(boundary);
        let snapshot = self.head.snapshot_before(boundary);
        let mut writer = BlockWriter::new(&self.dir.join("blocks"), snapshot.symbols)?;
        for (labels, chunks) in &snapshot.series {
            writer.add_series(labels, chunks)?;
        }
        drop(snapshot.series);
        if let Some(meta) = writer.finish(1, Vec::new())? {
            let block = Arc::new(Block::open(&self.dir.join("blocks").join(&meta.ulid))?);
            self.add_block(block);
            tracing::info!(ulid = %meta.ulid, series = meta.stats.num_series, samples = meta.stats.num_samples, elapsed_ms = started.elapsed().as_millis() as u64, "head persisted into a block");
        }
        let removed = self.head.truncate(boundary);
        let segment = self.head.with_writes_paused(|| self.wal.rotate())?;
        wal::checkpoint(self.wal.dir(), segment, |frame, out| {
            self.head.checkpoint_frame(frame, boundary, out)
        })?;
        self.metrics.head_flushes.inc();
        tracing::debug!(
            boundary,
            removed_series = removed,
            checkpoint = segment,
            "head truncated"
        );
        Ok(())
    }

    fn add_block(&self, block: Arc<Block>) {
        let mut blocks = self.blocks.write();
        blocks.push(block);
        blocks.sort_by_key(|b| b.meta().min_time);
        drop(blocks);
        self.update_block_metrics();
    }

    fn update_block_metrics(&self) {
        let blocks = self.blocks.read();
        self.metrics.blocks.set(blocks.len() as i64);
        self.metrics
            .block_bytes
            .set(blocks.iter().map(|b| b.size_bytes() as i64).sum());
    }

    /// Compaction ranges: the block range, then ×3 per level, up to a tenth of retention
    /// (at most 31 days) so retention can drop data in small enough steps.
    fn compaction_ranges(&self) -> Vec<i64> {
        let base = self.opts.block_range.as_millis() as i64;
        let cap = (self.opts.retention.as_millis() as i64 / 10)
            .min(31 * 24 * 3600 * 1000)
            .max(base);
        let mut out = vec![base];
        while let Some(&last) = out.last() {
            let next = last * 3;
            if next > cap {
                break;
            }
            out.push(next);
        }
        out
    }

    /// The first group of blocks worth merging: two or more blocks inside one window of a
    /// compaction range, once the head has moved past that window.
    fn plan_compaction(&self) -> Option<Vec<Arc<Block>>> {
        let blocks = self.blocks.read();
        let persisted_until = self.head.min_valid_t();
        for range in self.compaction_ranges() {
            let mut groups: BTreeMap<i64, Vec<Arc<Block>>> = BTreeMap::new();
            for b in blocks.iter() {
                let start = window_start(b.meta().min_time, range);
                if b.meta().max_time < start.saturating_add(range) {
                    groups.entry(start).or_default().push(b.clone());
                }
            }
            for (start, group) in groups {
                if group.len() >= 2 && start.saturating_add(range) <= persisted_until {
                    return Some(group);
                }
            }
        }
        None
    }

    fn compact(&self, group: Vec<Arc<Block>>) -> Result<(), StoreError> {
        let started = Instant::now();
        let strings: Vec<&str> = {
            let mut v: Vec<&str> = group.iter().flat_map(|b| b.symbols()).collect();
            v.sort_unstable();
            v.dedup();
            v
        };
        let remap: Vec<Vec<u32>> = group
            .iter()
            .map(|b| {
                b.symbols()
                    .map(|s| strings.binary_search(&s).map(|i| i as u32).unwrap_or(0))
                    .collect()
            })
            .collect();
        let mut writer = BlockWriter::new(
            &self.dir.join("blocks"),
            strings.iter().map(|s| (*s).to_owned()).collect(),
        )?;
        // K-way merge of the blocks' series, which each block stores in label order.
        let mut heap = BinaryHeap::new();
        let mut cursors = vec![0u32; group.len()];
        let series_at = |bi: usize, i: u32| -> Result<Option<Entry>, StoreError> {
            let b = &group[bi];
            if i as usize >= b.num_series() {
                return Ok(None);
            }
            let (labels, metas) = b.series(i)?;
            let labels = labels
                .iter()
                .map(|&(n, v)| (remap[bi][n as usize], remap[bi][v as usize]))
                .collect();
            Ok(Some(Entry {
                labels,
                block: bi,
                metas,
            }))
        };
        for bi in 0..group.len() {
            if let Some(e) = series_at(bi, 0)? {
                heap.push(std::cmp::Reverse(e));
            }
        }
        while let Some(std::cmp::Reverse(first)) = heap.pop() {
            let mut chunks = Vec::new();
            let labels = first.labels.clone();
            let mut take = |e: Entry,
                            heap: &mut BinaryHeap<std::cmp::Reverse<Entry>>|
             -> Result<(), StoreError> {
                for m in &e.metas {
                    chunks.push(group[e.block].chunk(m)?);
                }
                cursors[e.block] += 1;
                if let Some(next) = series_at(e.block, cursors[e.block])? {
                    heap.push(std::cmp::Reverse(next));
                }
                Ok(())
            };
            take(first, &mut heap)?;
            while heap
                .peek()
                .is_some_and(|std::cmp::Reverse(e)| e.labels == labels)
            {
                if let Some(std::cmp::Reverse(e)) = heap.pop() {
                    take(e, &mut heap)?;
                }
            }
            chunks.sort_by_key(|c| c.min_t);
            writer.add_series(&labels, &chunks)?;
        }
        let level = group
            .iter()
            .map(|b| b.meta().compaction.level)
            .max()
            .unwrap_or(1)
            + 1;
        let sources: Vec<String> = group.iter().map(|b| b.meta().ulid.clone()).collect();
        let meta = writer.finish(level, sources)?;
        let mut blocks = self.blocks.write();
        let ids: HashSet<&str> = group.iter().map(|b| b.meta().ulid.as_str()).collect();
        blocks.retain(|b| !ids.contains(b.meta().ulid.as_str()));
        if let Some(meta) = &meta {
            let block = Arc::new(Block::open(&self.dir.join("blocks").join(&meta.ulid))?);
            blocks.push(block);
            blocks.sort_by_key(|b| b.meta().min_time);
        }
        drop(blocks);
        for b in &group {
            fs::remove_dir_all(b.dir()).map_err(|e| StoreError::io(b.dir(), e))?;
        }
        self.update_block_metrics();
        self.metrics.compactions.inc();
        tracing::info!(
            sources = group.len(),
            level,
            ulid = meta.as_ref().map(|m| m.ulid.as_str()).unwrap_or(""),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "blocks compacted"
        );
        Ok(())
    }

    fn apply_retention(&self) -> Result<(), StoreError> {
        let newest = {
            let blocks = self.blocks.read();
            blocks
                .iter()
                .map(|b| b.meta().max_time)
                .chain(self.head.max_t())
                .max()
        };
        let Some(newest) = newest else { return Ok(()) };
        let cutoff = newest.saturating_sub(self.opts.retention.as_millis() as i64);
        let expired: Vec<Arc<Block>> = {
            let mut blocks = self.blocks.write();
            let (old, keep): (Vec<_>, Vec<_>) =
                blocks.drain(..).partition(|b| b.meta().max_time < cutoff);
            *blocks = keep;
            old
        };
        for b in &expired {
            fs::remove_dir_all(b.dir()).map_err(|e| StoreError::io(b.dir(), e))?;
            tracing::info!(ulid = %b.meta().ulid, max_time = b.meta().max_time, "block past retention deleted");
        }
        if !expired.is_empty() {
            self.update_block_metrics();
        }
        Ok(())
    }

    /// Stops the WAL writer after syncing what it holds.
    pub fn close(&self) {
        self.wal.close();
    }
}

/// A flush must move the head's start forward; if it did not, stop rather than loop.
fn ensure_progress(before: i64, after: Option<i64>) -> Result<(), StoreError> {
    match after {
        Some(after) if after <= before => Err(StoreError::Stuck(format!(
            "persisting the head did not advance its start time ({before} ms)"
        ))),
        _ => Ok(()),
    }
}

struct Entry {
    labels: Vec<(u32, u32)>,
    block: usize,
    metas: Vec<crate::block::ChunkMeta>,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        self.labels == other.labels && self.block == other.block
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Entry {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.labels
            .cmp(&other.labels)
            .then(self.block.cmp(&other.block))
    }
}

/// Opens every block, first removing unfinished writes (`*.tmp`) and blocks that a
/// finished compaction replaced but did not get to delete.
fn open_blocks(dir: &Path) -> Result<Vec<Arc<Block>>, StoreError> {
    let mut blocks = Vec::new();
    for e in fs::read_dir(dir).map_err(|e| StoreError::io(dir, e))? {
        let e = e.map_err(|e| StoreError::io(dir, e))?;
        let path = e.path();
        let name = e.file_name().to_string_lossy().into_owned();
        if name.ends_with(".tmp") {
            fs::remove_dir_all(&path).map_err(|e| StoreError::io(&path, e))?;
            continue;
        }
        if path.is_dir() {
            blocks.push(Arc::new(Block::open(&path)?));
        }
    }
    let replaced: HashSet<String> = blocks
        .iter()
        .flat_map(|b| b.meta().compaction.sources.clone())
        .collect();
    let (stale, mut live): (Vec<_>, Vec<_>) = blocks
        .into_iter()
        .partition(|b| replaced.contains(&b.meta().ulid));
    for b in stale {
        tracing::info!(ulid = %b.meta().ulid, "removing a block already merged by compaction");
        fs::remove_dir_all(b.dir()).map_err(|e| StoreError::io(b.dir(), e))?;
    }
    live.sort_by_key(|b| b.meta().min_time);
    Ok(live)
}

/// The cores this process may use, asked once: the answer reads the affinity mask and the
/// cgroup quota, too much work for every select.
fn cores() -> usize {
    static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}
