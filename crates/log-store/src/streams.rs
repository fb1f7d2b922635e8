//! The stream index: each distinct label set gets a 64-bit stream id (the hash of its
//! labels), which is what the full-text index stores with every line. The id → labels
//! map lives in memory and in `streams.dat`, an append-only file of framed records that
//! is synced before every index commit (the WAL records that named a stream are deleted
//! after a commit, so the file must hold it by then).

use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use hashbrown::HashMap;
use lastmile_model::{Label, Labels, Matcher};
use lastmile_store::codec::{Decoder, put_str, put_uvarint};
use lastmile_store::wal::{FrameIter, write_frame};

use crate::LogStoreError;

pub type StreamId = u64;

const REC_STREAM: u8 = 1;

/// A stream and the time span of the lines it holds (nanoseconds, inclusive).
#[derive(Clone, Debug, PartialEq)]
pub struct StreamInfo {
    pub id: StreamId,
    pub labels: Labels,
}

#[derive(Clone, Copy, Debug)]
pub(crate) struct Span {
    pub min_ts: i64,
    pub max_ts: i64,
    pub has_metadata: bool,
}

pub(crate) struct Streams {
    path: PathBuf,
    by_id: HashMap<StreamId, Arc<StreamInfo>>,
    by_hash: HashMap<u64, Vec<StreamId>>,
    spans: HashMap<StreamId, Span>,
    /// Streams created since the last sync of `streams.dat`.
    unsynced: Vec<StreamId>,
}

impl Streams {
    /// Loads `streams.dat`; a torn tail (crash mid-append) is cut off.
    pub fn open(dir: &Path) -> Result<Streams, LogStoreError> {
        let path = dir.join("streams.dat");
        let mut s = Streams {
            path: path.clone(),
            by_id: HashMap::new(),
            by_hash: HashMap::new(),
            spans: HashMap::new(),
            unsynced: Vec::new(),
        };
        let data = match fs::read(&path) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(LogStoreError::io(&path, e)),
        };
        let mut it = FrameIter::new(&data);
        for frame in it.by_ref() {
            let (id, labels) = decode_stream(frame)
                .ok_or_else(|| LogStoreError::corrupt(&path, "unreadable stream record"))?;
            s.insert(id, labels);
        }
        if it.corrupt.is_some() {
            let valid = it.valid_len();
            tracing::warn!(path = %path.display(), offset = valid, "streams.dat ends in a torn write; truncating it");
            let f = OpenOptions::new()
                .write(true)
                .open(&path)
                .map_err(|e| LogStoreError::io(&path, e))?;
            f.set_len(valid as u64)
                .map_err(|e| LogStoreError::io(&path, e))?;
            f.sync_all().map_err(|e| LogStoreError::io(&path, e))?;
        }
        s.unsynced.clear();
        Ok(s)
    }

    fn insert(&mut self, id: StreamId, labels: Labels) {
        let hash = labels.hash();
        self.by_id.insert(id, Arc::new(StreamInfo { id, labels }));
        let ids = self.by_hash.entry(hash).or_default();
        if !ids.contains(&id) {
            ids.push(id);
        }
    }

    /// The id of a label set, creating the stream if it is new. Ids are the labels' hash;
    /// on the (improbable) collision with another label set the next free id is taken.
    pub fn id_for(&mut self, labels: &Labels) -> (StreamId, bool) {
        let hash = labels.hash();
        if let Some(ids) = self.by_hash.get(&hash) {
            for id in ids {
                if self.by_id.get(id).is_some_and(|s| &s.labels == labels) {
                    return (*id, false);
                }
            }
        }
        let mut id = hash;
        while self.by_id.contains_key(&id) {
            id = id.wrapping_add(1);
        }
        self.insert(id, labels.clone());
        self.unsynced.push(id);
        (id, true)
    }

    pub fn get(&self, id: StreamId) -> Option<&Arc<StreamInfo>> {
        self.by_id.get(&id)
    }

    pub fn all_ids(&self) -> impl Iterator<Item = StreamId> + '_ {
        self.by_id.keys().copied()
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn observe(&mut self, id: StreamId, ts: i64, has_metadata: bool) {
        self.spans
            .entry(id)
            .and_modify(|s| {
                s.min_ts = s.min_ts.min(ts);
                s.max_ts = s.max_ts.max(ts);
                s.has_metadata |= has_metadata;
            })
            .or_insert(Span {
                min_ts: ts,
                max_ts: ts,
                has_metadata,
            });
    }

    pub fn span(&self, id: StreamId) -> Option<Span> {
        self.spans.get(&id).copied()
    }

    pub fn reset_spans(&mut self) {
        self.spans.clear();
    }

    /// Streams with lines in `[start, end]` whose labels satisfy every matcher, sorted by
    /// labels.
    pub fn select(&self, matchers: &[Matcher], start: i64, end: i64) -> Vec<Arc<StreamInfo>> {
        let mut out: Vec<Arc<StreamInfo>> = self
            .by_id
            .values()
            .filter(|s| {
                self.spans
                    .get(&s.id)
                    .is_some_and(|sp| sp.min_ts <= end && sp.max_ts >= start)
            })
            .filter(|s| {
                matchers
                    .iter()
                    .all(|m| m.matches(s.labels.get(&m.name).unwrap_or("")))
            })
            .cloned()
            .collect();
        out.sort_by(|a, b| a.labels.cmp(&b.labels));
        out
    }

    pub fn label_names(&self, start: i64, end: i64) -> Vec<String> {
        let mut names = BTreeSet::new();
        for s in self.select(&[], start, end) {
            for l in s.labels.iter() {
                if !names.contains(l.name) {
                    names.insert(l.name.to_owned());
                }
            }
        }
        names.into_iter().collect()
    }

    pub fn label_values(&self, name: &str, start: i64, end: i64) -> Vec<String> {
        let mut values = BTreeSet::new();
        for s in self.select(&[], start, end) {
            if let Some(v) = s.labels.get(name)
                && !values.contains(v)
            {
                values.insert(v.to_owned());
            }
        }
        values.into_iter().collect()
    }

    /// Appends the streams created since the last call to `streams.dat` and syncs it.
    pub fn sync(&mut self) -> Result<(), LogStoreError> {
        if self.unsynced.is_empty() {
            return Ok(());
        }
        let mut buf = Vec::new();
        for id in &self.unsynced {
            if let Some(s) = self.by_id.get(id) {
                write_frame(&mut buf, REC_STREAM, |b| encode_stream(b, *id, &s.labels));
            }
        }
        let existed = self.path.exists();
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(|e| LogStoreError::io(&self.path, e))?;
        f.write_all(&buf)
            .and_then(|()| f.sync_data())
            .map_err(|e| LogStoreError::io(&self.path, e))?;
        if !existed && let Some(dir) = self.path.parent() {
            sync_dir(dir)?;
        }
        self.unsynced.clear();
        Ok(())
    }

    /// Forgets streams without lines (after retention) and rewrites `streams.dat` with the
    /// rest, atomically (write, sync, rename).
    pub fn compact(&mut self) -> Result<usize, LogStoreError> {
        let dead: Vec<StreamId> = self
            .by_id
            .keys()
            .filter(|id| !self.spans.contains_key(*id))
            .copied()
            .collect();
        if dead.is_empty() {
            return Ok(0);
        }
        for id in &dead {
            if let Some(s) = self.by_id.remove(id) {
                let h = s.labels.hash();
                if let Some(ids) = self.by_hash.get_mut(&h) {
                    ids.retain(|x| x != id);
                    if ids.is_empty() {
                        self.by_hash.remove(&h);
                    }
                }
            }
        }
        self.unsynced.retain(|id| self.by_id.contains_key(id));
        let mut buf = Vec::new();
        for (id, s) in &self.by_id {
            write_frame(&mut buf, REC_STREAM, |b| encode_stream(b, *id, &s.labels));
        }
        let tmp = self.path.with_extension("dat.tmp");
        let mut f = File::create(&tmp).map_err(|e| LogStoreError::io(&tmp, e))?;
        f.write_all(&buf)
            .and_then(|()| f.sync_all())
            .map_err(|e| LogStoreError::io(&tmp, e))?;
        fs::rename(&tmp, &self.path).map_err(|e| LogStoreError::io(&self.path, e))?;
        if let Some(dir) = self.path.parent() {
            sync_dir(dir)?;
        }
        self.unsynced.clear();
        Ok(dead.len())
    }
}

fn sync_dir(dir: &Path) -> Result<(), LogStoreError> {
    lastmile_store::wal::sync_dir(dir).map_err(|e| LogStoreError::io(dir, e))
}

fn encode_stream(out: &mut Vec<u8>, id: StreamId, labels: &Labels) {
    out.extend_from_slice(&id.to_le_bytes());
    put_uvarint(out, labels.len() as u64);
    for l in labels.iter() {
        put_str(out, l.name);
        put_str(out, l.value);
    }
}

fn decode_stream(frame: &[u8]) -> Option<(StreamId, Labels)> {
    let mut d = Decoder::new(frame);
    if d.u8()? != REC_STREAM {
        return None;
    }
    let id = u64::from_le_bytes(d.buf.get(d.pos..d.pos + 8)?.try_into().ok()?);
    d.pos += 8;
    let n = d.uvarint()? as usize;
    let mut labels = Vec::with_capacity(n.min(d.buf.len()));
    for _ in 0..n {
        let name = str_of(&mut d)?;
        let value = str_of(&mut d)?;
        labels.push(Label {
            name: name.to_owned(),
            value: value.to_owned(),
        });
    }
    if !labels.windows(2).all(|w| w[0].name < w[1].name) {
        return None;
    }
    Some((id, Labels::from_sorted(labels)))
}

fn str_of<'a>(d: &mut Decoder<'a>) -> Option<&'a str> {
    let len = usize::try_from(d.uvarint()?).ok()?;
    let bytes = d.buf.get(d.pos..d.pos.checked_add(len)?)?;
    d.pos += len;
    std::str::from_utf8(bytes).ok()
}
