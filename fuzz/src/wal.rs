//! Harnesses for WAL replay: `lastmile_store::wal::FrameIter` and `Head::replay_frame`,
//! driven as `Db::open` drives them.

use std::sync::Arc;

use hashbrown::HashMap;
use lastmile_store::StoreMetrics;
use lastmile_store::codec::{put_str, put_uvarint};
use lastmile_store::head::Head;
use lastmile_store::postings::SeriesId;
use lastmile_store::wal::{FrameIter, REC_SERIES, write_frame};

/// A head as `Db::open` makes one: the default 2 h block range, and a small exemplar ring
/// (1000; the default is 100 000) so the ring's eviction is reached too.
pub fn new_head() -> Head {
    Head::new(7_200_000, 1000, Arc::new(StoreMetrics::default()))
}

/// A head being replayed into, as `Db::open` does it.
pub struct Replay {
    pub head: Head,
    aliases: HashMap<SeriesId, SeriesId>,
}

impl Replay {
    pub fn new() -> Self {
        Replay {
            head: new_head(),
            aliases: HashMap::new(),
        }
    }

    /// Applies one record. Errors are counted and skipped by `Db::open`; only a panic is
    /// a failure.
    pub fn apply(&mut self, record: &[u8]) -> Result<(), &'static str> {
        self.head.replay_frame(record, &mut self.aliases)
    }

    pub fn check(&self) {
        check_head(&self.head);
    }
}

impl Default for Replay {
    fn default() -> Self {
        Self::new()
    }
}

/// `wal_frames`: any bytes as one WAL segment.
pub fn frames(data: &[u8]) {
    let mut replay = Replay::new();
    let mut it = FrameIter::new(data);
    let mut frames: Vec<&[u8]> = Vec::new();
    let mut framed = 0usize;
    for frame in it.by_ref() {
        assert!(!frame.is_empty(), "FrameIter yielded an empty frame");
        framed += 8 + frame.len();
        let _ = replay.apply(frame);
        frames.push(frame);
    }
    assert_eq!(
        framed,
        it.valid_len(),
        "valid_len disagrees with the frames yielded"
    );
    assert!(it.valid_len() <= data.len());
    match it.corrupt {
        None => assert_eq!(
            it.valid_len(),
            data.len(),
            "stopped early without saying why"
        ),
        Some(_) => assert!(
            it.valid_len() < data.len(),
            "corrupt with nothing left over"
        ),
    }
    replay.check();
    check_checkpoint(&replay.head, &frames);
}

/// `wal_record`: any bytes as one record (a frame's payload, no header or CRC), applied
/// to a head that already has a few series, then applied again.
pub fn record(data: &[u8]) {
    let mut replay = Replay::new();
    replay
        .apply(&prelude_record())
        .expect("the prelude is a valid series record");
    let _ = replay.apply(data);
    let _ = replay.apply(data);
    replay.check();
    check_checkpoint(&replay.head, &[data]);
}

/// A series record creating ids 1001..=1003, so sample and exemplar records find series
/// (ids clear of the ones the seed segments create, which replay refuses to reuse).
pub fn prelude_record() -> Vec<u8> {
    let series: [(u64, &[(&str, &str)]); 3] = [
        (1001, &[("__name__", "up"), ("job", "api")]),
        (1002, &[("__name__", "up"), ("job", "db")]),
        (
            1003,
            &[
                ("__name__", "http_requests_total"),
                ("code", "200"),
                ("job", "api"),
            ],
        ),
    ];
    let mut out = vec![REC_SERIES];
    put_uvarint(&mut out, series.len() as u64);
    for (id, labels) in series {
        put_uvarint(&mut out, id);
        put_uvarint(&mut out, labels.len() as u64);
        for (n, v) in labels {
            put_str(&mut out, n);
            put_str(&mut out, v);
        }
    }
    out
}

/// What replay built reads back consistently: every chunk decodes to exactly its count
/// of samples, in strictly increasing time within its bounds; they add up to the head's
/// sample count and lie within the head's time range.
///
fn check_head(head: &Head) {
    let mut total = 0u64;
    let (mut lo, mut hi) = (i64::MAX, i64::MIN);
    for s in head.select(&[], i64::MIN, i64::MAX, true) {
        let mut last: Option<i64> = None;
        for c in &s.chunks {
            let mut n = 0u16;
            for smp in c.iter() {
                assert!(
                    last.is_none_or(|l| smp.t > l),
                    "{}: sample at {} after {last:?}",
                    s.labels,
                    smp.t
                );
                assert!(
                    c.min_t <= smp.t && smp.t <= c.max_t,
                    "{}: sample at {} outside its chunk [{}, {}]",
                    s.labels,
                    smp.t,
                    c.min_t,
                    c.max_t
                );
                last = Some(smp.t);
                lo = lo.min(smp.t);
                hi = hi.max(smp.t);
                n += 1;
            }
            assert_eq!(
                n, c.count,
                "{}: chunk of {} samples decodes to {n}",
                s.labels, c.count
            );
            total += n as u64;
        }
    }
    assert_eq!(
        total,
        head.num_samples(),
        "the head counts {} samples, its chunks hold {total}",
        head.num_samples()
    );
    if total > 0 {
        let (min_t, max_t) = (head.min_t(), head.max_t());
        assert!(
            min_t.is_some_and(|m| m <= lo),
            "head min_t {min_t:?} but a sample at {lo}"
        );
        assert!(
            max_t.is_some_and(|m| m >= hi),
            "head max_t {max_t:?} but a sample at {hi}"
        );
    }
}

/// Rewriting the replayed frames for a checkpoint (another reader of the same records)
/// must not panic and must give well-formed frames, which replay into a fresh head.
fn check_checkpoint(head: &Head, frames: &[&[u8]]) {
    let mut out = Vec::new();
    for f in frames {
        let before = out.len();
        head.checkpoint_frame(f, i64::MIN, &mut out);
        let mut it = FrameIter::new(&out[before..]);
        let n = it.by_ref().count();
        assert!(
            it.corrupt.is_none(),
            "checkpoint_frame wrote a broken frame ({:?})",
            it.corrupt
        );
        assert!(n <= 1, "checkpoint_frame wrote {n} frames for one");
    }
    let mut fresh = Replay::new();
    for f in FrameIter::new(&out) {
        let _ = fresh.apply(f);
    }
    fresh.check();
}

/// Wraps a record payload in a frame, as the WAL writes it.
pub fn frame(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    write_frame(&mut out, payload[0], |b| b.extend_from_slice(&payload[1..]));
    out
}

/// Makes the frames of a mutated segment well-formed again: each header gets its
/// payload's CRC, and a length that runs past the end is cut to what is left. Without
/// this, almost no mutation of a frame passes the CRC and replay is never reached.
pub fn fix_frames(data: &mut [u8]) {
    let mut pos = 0usize;
    while data.len() - pos > 8 {
        let rest = data.len() - pos - 8;
        let mut len = u32::from_le_bytes(data[pos..pos + 4].try_into().expect("4 bytes")) as usize;
        if len == 0 || len > rest {
            len = rest;
            data[pos..pos + 4].copy_from_slice(&(len as u32).to_le_bytes());
        }
        let crc = crc32c::crc32c(&data[pos + 8..pos + 8 + len]);
        data[pos + 4..pos + 8].copy_from_slice(&crc.to_le_bytes());
        pos += 8 + len;
    }
}
