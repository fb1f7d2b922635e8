//! What reads return: series with their chunks, from the head or from blocks.

use std::sync::Arc;

use lastmile_model::{Labels, Sample};
use memmap2::Mmap;

use crate::chunk::{ChunkIter, SealedChunk};

/// Chunk bytes either owned by the head or inside a block's mapped chunk file.
#[derive(Clone, Debug)]
pub enum ChunkBytes {
    Owned(Arc<[u8]>),
    Mapped {
        map: Arc<Mmap>,
        start: usize,
        len: usize,
    },
}

impl ChunkBytes {
    pub fn as_slice(&self) -> &[u8] {
        match self {
            ChunkBytes::Owned(b) => b,
            ChunkBytes::Mapped { map, start, len } => &map[*start..*start + *len],
        }
    }
}

#[derive(Clone, Debug)]
pub struct ChunkRef {
    pub min_t: i64,
    pub max_t: i64,
    pub count: u16,
    pub bytes: ChunkBytes,
}

impl ChunkRef {
    pub fn iter(&self) -> ChunkIter<'_> {
        ChunkIter::new(self.bytes.as_slice(), self.count)
    }

    pub fn overlaps(&self, mint: i64, maxt: i64) -> bool {
        self.min_t <= maxt && self.max_t >= mint
    }
}

impl From<&SealedChunk> for ChunkRef {
    fn from(c: &SealedChunk) -> Self {
        ChunkRef {
            min_t: c.min_t,
            max_t: c.max_t,
            count: c.count,
            bytes: ChunkBytes::Owned(c.data.clone()),
        }
    }
}

/// One series and its chunks overlapping the queried range, oldest first.
#[derive(Clone, Debug)]
pub struct SelectedSeries {
    pub labels: Labels,
    pub chunks: Vec<ChunkRef>,
}

impl SelectedSeries {
    /// Decoded samples within `[mint, maxt]`, in time order, each timestamp once even if
    /// sources overlap.
    pub fn samples(&self, mint: i64, maxt: i64) -> Vec<Sample> {
        let mut out = Vec::new();
        self.samples_into(mint, maxt, &mut out);
        out
    }

    /// [`SelectedSeries::samples`] into a buffer (cleared first), so a caller decoding
    /// many series reuses one allocation.
    pub fn samples_into(&self, mint: i64, maxt: i64, out: &mut Vec<Sample>) {
        out.clear();
        let mut sorted = true;
        for c in &self.chunks {
            if !c.overlaps(mint, maxt) {
                continue;
            }
            for s in c.iter() {
                if s.t > maxt {
                    // Samples of a chunk are in time order.
                    break;
                }
                if s.t < mint {
                    continue;
                }
                if out.last().is_some_and(|last: &Sample| s.t <= last.t) {
                    sorted = false;
                }
                out.push(s);
            }
        }
        if !sorted {
            out.sort_by_key(|s| s.t);
            out.dedup_by_key(|s| s.t);
        }
    }
}

/// Merges per-source results (each sorted by labels) into one list sorted by labels,
/// joining the chunks of equal series.
pub fn merge_sources(sources: Vec<Vec<SelectedSeries>>) -> Vec<SelectedSeries> {
    let mut all: Vec<SelectedSeries> = sources.into_iter().flatten().collect();
    all.sort_by(|a, b| a.labels.cmp(&b.labels));
    let mut out: Vec<SelectedSeries> = Vec::with_capacity(all.len());
    for s in all {
        match out.last_mut() {
            Some(last) if last.labels == s.labels => last.chunks.extend(s.chunks),
            _ => out.push(s),
        }
    }
    for s in &mut out {
        s.chunks.sort_by_key(|c| c.min_t);
    }
    out
}
