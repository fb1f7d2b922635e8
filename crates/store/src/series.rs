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
    /// The value of the sample at `max_t`, when the source knows it without decoding
    /// (the head's open chunk): a query that only needs the newest sample skips the chunk.
    pub last_value: Option<f64>,
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
            last_value: None,
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

    /// The newest sample within `[mint, maxt]` (what an instant selector reads), decoding
    /// only chunks whose newest value is not known. Among samples of equal time in
    /// overlapping chunks, the one [`SelectedSeries::samples`] keeps.
    pub fn latest(&self, mint: i64, maxt: i64) -> Option<Sample> {
        let mut best: Option<Sample> = None;
        for c in &self.chunks {
            if !c.overlaps(mint, maxt) || best.is_some_and(|b| c.max_t <= b.t) {
                continue;
            }
            let candidate = match c.last_value {
                Some(v) if c.max_t <= maxt => Some(Sample { t: c.max_t, v }),
                _ => c
                    .iter()
                    .take_while(|s| s.t <= maxt)
                    .filter(|s| s.t >= mint)
                    .last(),
            };
            if let Some(s) = candidate
                && best.is_none_or(|b| s.t > b.t)
            {
                best = Some(s);
            }
        }
        best
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
            let before = out.len();
            out.reserve(usize::from(c.count));
            // A chunk's samples are in time order: bounds are checked only where the
            // chunk crosses them, and order only where one chunk meets the next (per
            // sample, those checks were a third of decoding).
            // Plain loops: `extend` kept the decoder from being inlined into them.
            if c.min_t >= mint && c.max_t <= maxt {
                for s in c.iter() {
                    out.push(s);
                }
            } else {
                for s in c.iter() {
                    if s.t > maxt {
                        break;
                    }
                    if s.t >= mint {
                        out.push(s);
                    }
                }
            }
            if before > 0 && out.len() > before && out[before].t <= out[before - 1].t {
                sorted = false;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunk::ChunkAppender;

    fn chunk(samples: &[(i64, f64)], open: bool) -> ChunkRef {
        let mut a = ChunkAppender::new();
        for &(t, v) in samples {
            a.append(t, v);
        }
        let mut c = ChunkRef::from(&a.clone().seal());
        if open {
            c.last_value = Some(a.last_value());
        }
        c
    }

    #[test]
    fn latest_is_the_last_of_samples_for_any_window() {
        // Overlapping chunks (a block and the head holding the same times with other
        // values) and a head chunk whose newest value is known without decoding.
        let series = SelectedSeries {
            labels: Labels::default(),
            chunks: vec![
                chunk(&[(10, 1.0), (20, 2.0), (30, 3.0)], false),
                chunk(&[(30, 30.0), (40, 40.0)], false),
                chunk(&[(50, 5.0), (60, 6.0), (70, 7.0)], true),
            ],
        };
        for mint in [0, 10, 25, 30, 45, 70, 80] {
            for maxt in [0, 10, 29, 30, 35, 40, 55, 60, 70, 100] {
                let want = series.samples(mint, maxt).last().map(|s| (s.t, s.v));
                let got = series.latest(mint, maxt).map(|s| (s.t, s.v));
                assert_eq!(got, want, "[{mint}, {maxt}]");
            }
        }
    }
}
