//! Harness for the Gorilla chunks: `lastmile_store::chunk::{ChunkIter, ChunkAppender}`.

use lastmile_model::sample::STALE_NAN_BITS;
use lastmile_store::chunk::{ChunkAppender, ChunkIter};

use crate::Cursor;

/// Most samples one round trip appends (a head chunk holds 120; the count is a u16).
pub const MAX_ROUND_TRIP_SAMPLES: usize = 2_000;

/// `chunk_decode`: the first two bytes are a sample count (u16 LE), the rest chunk
/// bytes. Decodes them as a chunk, then reads the same bytes as a recipe for a strictly
/// increasing series, appends it and checks it decodes back exactly.
pub fn decode(data: &[u8]) {
    let Some((count, bytes)) = data.split_first_chunk::<2>() else {
        return;
    };
    let count = u16::from_le_bytes(*count);
    let mut n = 0usize;
    let mut it = ChunkIter::new(bytes, count);
    for _ in it.by_ref() {
        n += 1;
        assert!(
            n <= count as usize,
            "ChunkIter yielded more than its {count} samples"
        );
    }
    assert!(it.next().is_none(), "ChunkIter yields again after ending");
    round_trip(&samples_from(bytes));
}

/// A strictly increasing series derived from fuzz bytes: a start time and value, then per
/// sample a control byte choosing the time step (all delta-of-delta widths, up to the
/// whole i64 range) and how the value changes (repeats, small and large XORs, NaNs).
pub fn samples_from(bytes: &[u8]) -> Vec<(i64, f64)> {
    let mut c = Cursor::new(bytes);
    let (Some(t0), Some(v0)) = (c.u64(), c.u64()) else {
        return Vec::new();
    };
    let (mut t, mut v) = (t0 as i64, v0);
    let mut out = vec![(t, f64::from_bits(v))];
    let mut delta: u64 = 15_000;
    while out.len() < MAX_ROUND_TRIP_SAMPLES {
        let Some(ctl) = c.u8() else { break };
        delta = match ctl & 7 {
            0 => delta,
            1 => 1 + c.u8().unwrap_or(0) as u64,
            2 => {
                // A jitter around the previous step: small delta-of-delta.
                let j = c.u16().unwrap_or(0) as i16 as i64;
                (delta as i64).saturating_add(j).max(1) as u64
            }
            3 => 1 + c.u16().unwrap_or(0) as u64 * 16,
            4 => 1 + c.u32().unwrap_or(0) as u64,
            5 => c.u64().unwrap_or(1).max(1),
            6 => 15_000,
            _ => 1,
        };
        let Some(next) = t.checked_add_unsigned(delta) else {
            break;
        };
        t = next;
        v = match (ctl >> 3) & 7 {
            0 => v,
            1 => (f64::from_bits(v) + 1.0).to_bits(),
            2 => c.u64().unwrap_or(0),
            3 => v ^ c.u8().unwrap_or(1) as u64,
            4 => [
                f64::NAN.to_bits(),
                STALE_NAN_BITS,
                f64::INFINITY.to_bits(),
                (-0.0f64).to_bits(),
                0,
            ][(ctl >> 6) as usize % 4 + (ctl as usize & 1)],
            5 => v ^ (c.u8().unwrap_or(1) as u64).rotate_left(c.u8().unwrap_or(0) as u32),
            6 => (c.u8().unwrap_or(0) as f64).to_bits(),
            _ => (-f64::from_bits(v)).to_bits(),
        };
        out.push((t, f64::from_bits(v)));
    }
    out
}

/// Appends `samples` (strictly increasing in time) to a chunk and decodes it, open and
/// sealed; both must give back exactly the samples, values compared bit for bit.
pub fn round_trip(samples: &[(i64, f64)]) {
    if samples.is_empty() {
        return;
    }
    assert!(
        samples.windows(2).all(|w| w[0].0 < w[1].0),
        "round_trip needs strictly increasing times"
    );
    let mut a = ChunkAppender::new();
    for &(t, v) in samples {
        a.append(t, v);
    }
    let want: Vec<(i64, u64)> = samples.iter().map(|&(t, v)| (t, v.to_bits())).collect();
    assert_eq!(a.count() as usize, samples.len());
    assert_eq!(a.min_t(), samples[0].0);
    assert_eq!(a.max_t(), samples[samples.len() - 1].0);
    assert_eq!(a.last_value().to_bits(), want[want.len() - 1].1);
    let open: Vec<(i64, u64)> = a.iter().map(|s| (s.t, s.v.to_bits())).collect();
    assert_eq!(open, want, "the open chunk decodes to other samples");
    let sealed = a.seal();
    assert_eq!(
        (sealed.min_t, sealed.max_t, sealed.count as usize),
        (samples[0].0, samples[samples.len() - 1].0, samples.len())
    );
    let got: Vec<(i64, u64)> = ChunkIter::new(&sealed.data, sealed.count)
        .map(|s| (s.t, s.v.to_bits()))
        .collect();
    assert_eq!(got, want, "the sealed chunk decodes to other samples");
}
