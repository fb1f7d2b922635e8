//! Write-ahead log with group commit.
//!
//! Appenders encode whole frames and hand them to [`Wal::submit`], which copies them into
//! a staging buffer and returns a sequence number. One writer thread drains the buffer:
//! it writes everything staged so far in one `write`, then (with [`WalSync::Fsync`])
//! calls `fdatasync` once for the whole group, and publishes the highest durable sequence
//! number. A request is acknowledged only after its sequence number is durable.
//!
//! On disk: `wal/NNNNNNNN` segments of frames `[u32 len][u32 crc32c][payload]`, payload
//! starting with a record type byte; `wal/checkpoint.NNNNNNNN/` holds what segments before
//! NNNNNNNN contributed that the head still needs.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use tokio::sync::watch;

use crate::error::StoreError;
use crate::metrics::WalMetrics;

pub const REC_SERIES: u8 = 1;
pub const REC_SAMPLES: u8 = 2;
pub const REC_EXEMPLARS: u8 = 3;
pub const REC_METADATA: u8 = 4;

const FRAME_HEADER: usize = 8;
/// A frame larger than this is corruption, not data: no request can produce it.
const MAX_FRAME: usize = 1 << 30;

/// When a write counts as durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WalSync {
    /// After `fdatasync` (group-committed): survives power loss.
    Fsync,
    /// After `write` into the OS page cache, with `fdatasync` every `interval`: survives a
    /// crash or `kill -9` of lastmile, not a crash of the machine.
    Write { interval: Duration },
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Durable {
    seq: u64,
    failed: Option<Arc<str>>,
}

struct Staging {
    buf: Vec<u8>,
    seq: u64,
    rotate: bool,
    shutdown: bool,
}

struct Shared {
    staging: Mutex<Staging>,
    wake: Condvar,
    /// Signalled when a requested rotation is done.
    rotated: Condvar,
    current_segment: AtomicU64,
    durable: watch::Sender<Durable>,
    metrics: WalMetrics,
}

pub struct Wal {
    dir: PathBuf,
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

pub fn segment_path(dir: &Path, n: u64) -> PathBuf {
    dir.join(format!("{n:08}"))
}

fn checkpoint_name(n: u64) -> String {
    format!("checkpoint.{n:08}")
}

/// Segment numbers present in `dir`, ascending.
pub fn list_segments(dir: &Path) -> io::Result<Vec<u64>> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir)? {
        let name = e?.file_name();
        if let Some(n) = name.to_str().and_then(|s| s.parse::<u64>().ok()) {
            out.push(n);
        }
    }
    out.sort_unstable();
    Ok(out)
}

/// The newest complete checkpoint: (number, directory).
pub fn latest_checkpoint(dir: &Path) -> io::Result<Option<(u64, PathBuf)>> {
    let mut best = None;
    for e in fs::read_dir(dir)? {
        let e = e?;
        let name = e.file_name();
        let Some(s) = name.to_str() else { continue };
        if let Some(n) = s
            .strip_prefix("checkpoint.")
            .and_then(|n| n.parse::<u64>().ok())
            && best.as_ref().is_none_or(|(b, _)| n > *b)
        {
            best = Some((n, e.path()));
        }
    }
    Ok(best)
}

pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

impl Wal {
    /// Opens the log for appending in a new segment after every existing one (replay has
    /// read and repaired those already).
    pub fn open(
        dir: &Path,
        sync: WalSync,
        segment_size: u64,
        metrics: impl Into<WalMetrics>,
    ) -> Result<Wal, StoreError> {
        let metrics = metrics.into();
        fs::create_dir_all(dir).map_err(|e| StoreError::io(dir, e))?;
        let last = list_segments(dir)
            .map_err(|e| StoreError::io(dir, e))?
            .last()
            .copied();
        let checkpoint = latest_checkpoint(dir)
            .map_err(|e| StoreError::io(dir, e))?
            .map(|c| c.0);
        let first = last.map(|n| n + 1).or(checkpoint).unwrap_or(0);
        let file = create_segment(dir, first)?;
        let (durable, _) = watch::channel(Durable {
            seq: 0,
            failed: None,
        });
        let shared = Arc::new(Shared {
            staging: Mutex::new(Staging {
                buf: Vec::with_capacity(1 << 20),
                seq: 0,
                rotate: false,
                shutdown: false,
            }),
            wake: Condvar::new(),
            rotated: Condvar::new(),
            current_segment: AtomicU64::new(first),
            durable,
            metrics,
        });
        let thread_shared = shared.clone();
        let thread_dir = dir.to_path_buf();
        let thread = std::thread::Builder::new()
            .name("wal-writer".into())
            .spawn(move || writer_loop(thread_shared, thread_dir, file, first, sync, segment_size))
            .map_err(|e| StoreError::io(dir, e))?;
        Ok(Wal {
            dir: dir.to_path_buf(),
            shared,
            thread: Mutex::new(Some(thread)),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Stages complete frames; returns the sequence number to wait for.
    pub fn submit(&self, frames: &[u8]) -> Result<u64, StoreError> {
        if let Some(msg) = &self.shared.durable.borrow().failed {
            return Err(StoreError::WalFailed(msg.to_string()));
        }
        let mut st = self.shared.staging.lock();
        if st.shutdown {
            return Err(StoreError::WalFailed("the store is shutting down".into()));
        }
        st.buf.extend_from_slice(frames);
        st.seq += 1;
        let seq = st.seq;
        drop(st);
        self.shared.wake.notify_one();
        Ok(seq)
    }

    /// Waits until everything up to `seq` is durable.
    pub async fn wait_durable(&self, seq: u64) -> Result<(), StoreError> {
        let mut rx = self.shared.durable.subscribe();
        let state = rx
            .wait_for(|d| d.seq >= seq || d.failed.is_some())
            .await
            .map_err(|_| StoreError::WalFailed("WAL writer stopped".into()))?;
        match &state.failed {
            Some(msg) if state.seq < seq => Err(StoreError::WalFailed(msg.to_string())),
            _ => Ok(()),
        }
    }

    /// Ends the current segment: frames staged before this call are in segments below
    /// the returned number, later ones at or above it. The caller must stop submissions
    /// while this runs (the head holds its writer lock).
    pub fn rotate(&self) -> Result<u64, StoreError> {
        let mut st = self.shared.staging.lock();
        st.rotate = true;
        self.shared.wake.notify_one();
        while st.rotate {
            if let Some(msg) = &self.shared.durable.borrow().failed {
                return Err(StoreError::WalFailed(msg.to_string()));
            }
            self.shared
                .rotated
                .wait_for(&mut st, Duration::from_millis(100));
        }
        Ok(self.shared.current_segment.load(Ordering::Acquire))
    }

    /// Flushes and syncs everything staged, then stops the writer thread.
    pub fn close(&self) {
        {
            let mut st = self.shared.staging.lock();
            st.shutdown = true;
        }
        self.shared.wake.notify_one();
        if let Some(t) = self.thread.lock().take() {
            let _ = t.join();
        }
    }
}

impl Drop for Wal {
    fn drop(&mut self) {
        self.close();
    }
}

fn create_segment(dir: &Path, n: u64) -> Result<File, StoreError> {
    let path = segment_path(dir, n);
    let f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(|e| StoreError::io(&path, e))?;
    sync_dir(dir).map_err(|e| StoreError::io(dir, e))?;
    Ok(f)
}

fn writer_loop(
    shared: Arc<Shared>,
    dir: PathBuf,
    mut file: File,
    mut segment: u64,
    sync: WalSync,
    segment_size: u64,
) {
    let mut spare: Vec<u8> = Vec::with_capacity(1 << 20);
    let mut written: u64 = file.metadata().map(|m| m.len()).unwrap_or(0);
    let mut last_sync = Instant::now();
    let mut unsynced = false;
    loop {
        let (seq, rotate, shutdown);
        {
            let mut st = shared.staging.lock();
            while st.buf.is_empty() && !st.rotate && !st.shutdown {
                match sync {
                    WalSync::Write { interval } if unsynced => {
                        if shared.wake.wait_for(&mut st, interval).timed_out() {
                            break;
                        }
                    }
                    _ => shared.wake.wait(&mut st),
                }
            }
            std::mem::swap(&mut st.buf, &mut spare);
            seq = st.seq;
            rotate = st.rotate;
            shutdown = st.shutdown;
        }
        let result = (|| -> io::Result<()> {
            if !spare.is_empty() {
                file.write_all(&spare)?;
                written += spare.len() as u64;
                unsynced = true;
            }
            let due = match sync {
                WalSync::Fsync => unsynced,
                WalSync::Write { interval } => {
                    unsynced && (last_sync.elapsed() >= interval || rotate || shutdown)
                }
            };
            if due || (unsynced && (rotate || shutdown || written >= segment_size)) {
                let start = Instant::now();
                file.sync_data()?;
                shared
                    .metrics
                    .fsync_seconds
                    .observe(start.elapsed().as_secs_f64());
                last_sync = Instant::now();
                unsynced = false;
            }
            if rotate || written >= segment_size {
                segment += 1;
                file =
                    create_segment(&dir, segment).map_err(|e| io::Error::other(e.to_string()))?;
                written = 0;
                shared.current_segment.store(segment, Ordering::Release);
            }
            Ok(())
        })();
        shared.metrics.bytes_written.inc_by(spare.len() as u64);
        spare.clear();
        match result {
            Ok(()) => {
                shared.durable.send_modify(|d| d.seq = seq);
            }
            Err(e) => {
                tracing::error!(error = %e, dir = %dir.display(), "WAL write failed; refusing further writes");
                shared
                    .durable
                    .send_modify(|d| d.failed = Some(format!("WAL write failed: {e}").into()));
                shared.staging.lock().rotate = false;
                shared.rotated.notify_all();
                return;
            }
        }
        if rotate {
            shared.staging.lock().rotate = false;
            shared.rotated.notify_all();
        }
        if shutdown {
            let st = shared.staging.lock();
            if st.buf.is_empty() {
                return;
            }
        }
    }
}

/// Appends one frame (header + payload written by `fill`) to `out`.
pub fn write_frame(out: &mut Vec<u8>, rec_type: u8, fill: impl FnOnce(&mut Vec<u8>)) {
    let start = out.len();
    out.extend_from_slice(&[0u8; FRAME_HEADER]);
    out.push(rec_type);
    fill(out);
    let payload = &out[start + FRAME_HEADER..];
    let len = payload.len() as u32;
    let crc = crc32c::crc32c(payload);
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// Iterates the frames of a segment's bytes; stops at the first torn or corrupt frame and
/// reports where the valid prefix ends.
pub struct FrameIter<'a> {
    data: &'a [u8],
    pos: usize,
    pub corrupt: Option<&'static str>,
}

impl<'a> FrameIter<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        FrameIter {
            data,
            pos: 0,
            corrupt: None,
        }
    }

    /// Bytes of valid frames read so far.
    pub fn valid_len(&self) -> usize {
        self.pos
    }
}

impl<'a> Iterator for FrameIter<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        let rest = &self.data[self.pos..];
        if rest.is_empty() {
            return None;
        }
        if rest.len() < FRAME_HEADER {
            self.corrupt = Some("torn frame header");
            return None;
        }
        let len = u32::from_le_bytes(rest[0..4].try_into().expect("4 bytes")) as usize;
        let crc = u32::from_le_bytes(rest[4..8].try_into().expect("4 bytes"));
        if len == 0 || len > MAX_FRAME || rest.len() < FRAME_HEADER + len {
            self.corrupt = Some("torn or oversized frame");
            return None;
        }
        let payload = &rest[FRAME_HEADER..FRAME_HEADER + len];
        if crc32c::crc32c(payload) != crc {
            self.corrupt = Some("checksum mismatch");
            return None;
        }
        self.pos += FRAME_HEADER + len;
        Some(payload)
    }
}

/// Reads every frame the log holds, oldest first: the latest checkpoint, then the
/// segments after it. A torn tail (a crash mid-write) is cut off; corruption elsewhere
/// ends the log there, and later segments are removed, so the log is consistent again.
pub fn replay(dir: &Path, mut apply: impl FnMut(&[u8])) -> Result<ReplayStats, StoreError> {
    let mut stats = ReplayStats::default();
    if !dir.exists() {
        return Ok(stats);
    }
    let io = |e| StoreError::io(dir, e);
    let checkpoint = latest_checkpoint(dir).map_err(io)?;
    let mut first_segment = 0;
    if let Some((n, cdir)) = &checkpoint {
        first_segment = *n;
        for seg in list_segments(cdir).map_err(|e| StoreError::io(cdir, e))? {
            let path = segment_path(cdir, seg);
            let data = fs::read(&path).map_err(|e| StoreError::io(&path, e))?;
            let mut it = FrameIter::new(&data);
            for frame in it.by_ref() {
                apply(frame);
                stats.frames += 1;
            }
            if let Some(why) = it.corrupt {
                return Err(StoreError::Corrupt {
                    path,
                    reason: format!("checkpoint {why} at byte {}", it.valid_len()),
                });
            }
        }
    }
    let segments: Vec<u64> = list_segments(dir)
        .map_err(io)?
        .into_iter()
        .filter(|&n| n >= first_segment)
        .collect();
    for (i, &seg) in segments.iter().enumerate() {
        let path = segment_path(dir, seg);
        let data = fs::read(&path).map_err(|e| StoreError::io(&path, e))?;
        let mut it = FrameIter::new(&data);
        for frame in it.by_ref() {
            apply(frame);
            stats.frames += 1;
        }
        stats.bytes += it.valid_len() as u64;
        if let Some(why) = it.corrupt {
            let valid = it.valid_len();
            let is_last = i + 1 == segments.len();
            if is_last {
                tracing::warn!(segment = %path.display(), offset = valid, reason = why, "WAL ends in a torn write; truncating it (only unacknowledged data is lost)");
            } else {
                tracing::error!(segment = %path.display(), offset = valid, reason = why, "WAL corrupt before its end; truncating here and removing later segments");
                for &later in &segments[i + 1..] {
                    let p = segment_path(dir, later);
                    fs::remove_file(&p).map_err(|e| StoreError::io(&p, e))?;
                }
            }
            let f = OpenOptions::new()
                .write(true)
                .open(&path)
                .map_err(|e| StoreError::io(&path, e))?;
            f.set_len(valid as u64)
                .map_err(|e| StoreError::io(&path, e))?;
            f.sync_all().map_err(|e| StoreError::io(&path, e))?;
            stats.truncated_bytes += (data.len() - valid) as u64;
            break;
        }
    }
    Ok(stats)
}

#[derive(Debug, Default, Clone, Copy)]
pub struct ReplayStats {
    pub frames: u64,
    pub bytes: u64,
    pub truncated_bytes: u64,
}

/// Rewrites what segments below `upto` hold into `checkpoint.<upto>`, keeping only frames
/// that `filter` rewrites into `out` (it may drop or shrink them), then deletes those
/// segments and older checkpoints. Atomic: the checkpoint appears by rename.
pub fn checkpoint(
    dir: &Path,
    upto: u64,
    mut filter: impl FnMut(&[u8], &mut Vec<u8>),
) -> Result<(), StoreError> {
    let io = |e| StoreError::io(dir, e);
    let old = latest_checkpoint(dir).map_err(io)?;
    let tmp = dir.join(format!("{}.tmp", checkpoint_name(upto)));
    if tmp.exists() {
        fs::remove_dir_all(&tmp).map_err(|e| StoreError::io(&tmp, e))?;
    }
    fs::create_dir_all(&tmp).map_err(|e| StoreError::io(&tmp, e))?;
    let out_path = segment_path(&tmp, 0);
    let mut out =
        io::BufWriter::new(File::create(&out_path).map_err(|e| StoreError::io(&out_path, e))?);
    let mut buf = Vec::new();
    let mut inputs: Vec<PathBuf> = Vec::new();
    if let Some((_, cdir)) = &old {
        for seg in list_segments(cdir).map_err(|e| StoreError::io(cdir, e))? {
            inputs.push(segment_path(cdir, seg));
        }
    }
    let first = old.as_ref().map(|c| c.0).unwrap_or(0);
    let segments: Vec<u64> = list_segments(dir)
        .map_err(io)?
        .into_iter()
        .filter(|&n| n >= first && n < upto)
        .collect();
    inputs.extend(segments.iter().map(|&n| segment_path(dir, n)));
    for path in &inputs {
        let data = fs::read(path).map_err(|e| StoreError::io(path, e))?;
        for frame in FrameIter::new(&data) {
            buf.clear();
            filter(frame, &mut buf);
            out.write_all(&buf)
                .map_err(|e| StoreError::io(&out_path, e))?;
        }
    }
    let f = out
        .into_inner()
        .map_err(|e| StoreError::io(&out_path, e.into_error()))?;
    f.sync_all().map_err(|e| StoreError::io(&out_path, e))?;
    sync_dir(&tmp).map_err(|e| StoreError::io(&tmp, e))?;
    let final_dir = dir.join(checkpoint_name(upto));
    fs::rename(&tmp, &final_dir).map_err(|e| StoreError::io(&final_dir, e))?;
    sync_dir(dir).map_err(io)?;
    for n in list_segments(dir).map_err(io)? {
        if n < upto {
            let p = segment_path(dir, n);
            fs::remove_file(&p).map_err(|e| StoreError::io(&p, e))?;
        }
    }
    if let Some((n, cdir)) = old
        && n < upto
    {
        fs::remove_dir_all(&cdir).map_err(|e| StoreError::io(&cdir, e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_torn_tail_is_cut() {
        let mut buf = Vec::new();
        write_frame(&mut buf, REC_SAMPLES, |b| b.extend_from_slice(b"hello"));
        write_frame(&mut buf, REC_SERIES, |b| b.extend_from_slice(b"world"));
        let whole: Vec<_> = FrameIter::new(&buf).collect();
        assert_eq!(whole, vec![&b"\x02hello"[..], &b"\x01world"[..]]);
        let cut = &buf[..buf.len() - 2];
        let mut it = FrameIter::new(cut);
        assert_eq!(it.by_ref().count(), 1);
        assert!(it.corrupt.is_some());
        let mut flipped = buf.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        let mut it = FrameIter::new(&flipped);
        assert_eq!(it.by_ref().count(), 1);
        assert_eq!(it.corrupt, Some("checksum mismatch"));
    }

    #[tokio::test]
    async fn submitted_frames_are_durable_and_replayed() {
        let dir = tempfile::tempdir().unwrap();
        let metrics = WalMetrics::default();
        let wal = Wal::open(dir.path(), WalSync::Fsync, 1 << 20, metrics.clone()).unwrap();
        let mut frames = Vec::new();
        for i in 0..100u32 {
            frames.clear();
            write_frame(&mut frames, REC_SAMPLES, |b| {
                b.extend_from_slice(&i.to_le_bytes())
            });
            let seq = wal.submit(&frames).unwrap();
            wal.wait_durable(seq).await.unwrap();
        }
        let seg = wal.rotate().unwrap();
        assert_eq!(seg, 1);
        wal.close();
        let mut seen = Vec::new();
        replay(dir.path(), |f| {
            seen.push(u32::from_le_bytes(f[1..5].try_into().unwrap()))
        })
        .unwrap();
        assert_eq!(seen, (0..100).collect::<Vec<_>>());
        // A checkpoint keeping the even ones replaces segment 0.
        checkpoint(dir.path(), seg, |f, out| {
            if f[1] % 2 == 0 {
                write_frame(out, f[0], |b| b.extend_from_slice(&f[1..]));
            }
        })
        .unwrap();
        let mut seen = Vec::new();
        replay(dir.path(), |f| {
            seen.push(u32::from_le_bytes(f[1..5].try_into().unwrap()))
        })
        .unwrap();
        assert_eq!(seen, (0..100).filter(|i| i % 2 == 0).collect::<Vec<_>>());
        assert!(!segment_path(dir.path(), 0).exists());
    }
}
