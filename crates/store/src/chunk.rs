//! Gorilla-style compressed chunks of (timestamp, value) samples.
//!
//! Timestamps are stored as delta-of-delta, values as XOR with the previous value, both at
//! bit granularity, following the Facebook Gorilla paper's scheme with bucket widths chosen
//! for millisecond timestamps. Regular scrapes cost about one bit per timestamp; slowly
//! changing values a few bits each.
//!
//! Layout: the first sample is a zigzag varint timestamp and 64 raw value bits; the second
//! stores its timestamp delta as a varint; later ones use the bucketed delta-of-delta.

use lastmile_model::Sample;

/// Samples per chunk before a new one is cut: large enough to amortise headers, small
/// enough that a query touching a few minutes decodes little.
pub const SAMPLES_PER_CHUNK: u16 = 120;

/// Appends bits MSB-first to a byte vector.
#[derive(Clone, Debug, Default)]
struct BitWriter {
    bytes: Vec<u8>,
    /// Bits still free in the last byte (0..=7; 0 means a new byte is needed).
    free: u8,
}

impl BitWriter {
    #[inline]
    fn bit(&mut self, bit: bool) {
        if self.free == 0 {
            self.bytes.push(0);
            self.free = 8;
        }
        self.free -= 1;
        if bit {
            *self.bytes.last_mut().expect("pushed above") |= 1 << self.free;
        }
    }

    /// Writes the low `n` bits of `v`, most significant first.
    #[inline]
    fn bits(&mut self, v: u64, mut n: u8) {
        while n > 0 {
            if self.free == 0 {
                self.bytes.push(0);
                self.free = 8;
            }
            let take = n.min(self.free);
            let shift = n - take;
            let chunk = ((v >> shift) & ((1u64 << take) - 1)) as u8;
            self.free -= take;
            *self.bytes.last_mut().expect("pushed above") |= chunk << self.free;
            n -= take;
        }
    }

    fn byte_aligned_varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.bits((v & 0x7f) | 0x80, 8);
            v >>= 7;
        }
        self.bits(v, 8);
    }
}

struct BitReader<'a> {
    bytes: &'a [u8],
    pos: usize, // bit position
}

impl<'a> BitReader<'a> {
    #[inline]
    fn bit(&mut self) -> Option<bool> {
        let byte = *self.bytes.get(self.pos >> 3)?;
        let bit = (byte >> (7 - (self.pos & 7))) & 1 == 1;
        self.pos += 1;
        Some(bit)
    }

    /// The next `n` (≤ 64) bits, most significant first; None past the end.
    #[inline]
    fn bits(&mut self, n: u8) -> Option<u64> {
        // One unaligned 8-byte load and shifts, instead of a loop per byte: decoding is
        // what every query spends most on.
        let end = self.pos + n as usize;
        if end > self.bytes.len() * 8 {
            return None;
        }
        if n == 0 {
            return Some(0);
        }
        let byte = self.pos >> 3;
        let off = (self.pos & 7) as u32;
        let mut word = match self.bytes.get(byte..byte + 8) {
            Some(b) => u64::from_be_bytes(b.try_into().unwrap_or_default()),
            None => {
                let mut buf = [0u8; 8];
                let rest = &self.bytes[byte..];
                buf[..rest.len()].copy_from_slice(rest);
                u64::from_be_bytes(buf)
            }
        } << off;
        if off + n as u32 > 64 {
            // The last few bits are in a ninth byte.
            word |= u64::from(self.bytes.get(byte + 8).copied().unwrap_or(0)) >> (8 - off);
        }
        self.pos = end;
        Some(word >> (64 - n as u32))
    }

    fn varint(&mut self) -> Option<u64> {
        let mut v = 0u64;
        for i in 0..10 {
            let b = self.bits(8)?;
            v |= (b & 0x7f) << (7 * i);
            if b < 0x80 {
                return Some(v);
            }
        }
        None
    }
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

/// An open chunk being appended to. Keeps only what the next append needs.
#[derive(Clone, Debug)]
pub struct ChunkAppender {
    w: BitWriter,
    count: u16,
    min_t: i64,
    t: i64,
    t_delta: i64,
    v_bits: u64,
    leading: u8,
    trailing: u8,
}

impl ChunkAppender {
    pub fn new() -> Self {
        ChunkAppender {
            w: BitWriter::default(),
            count: 0,
            min_t: 0,
            t: 0,
            t_delta: 0,
            v_bits: 0,
            // No window yet: the first XOR always writes its own.
            leading: 0xff,
            trailing: 0,
        }
    }

    pub fn count(&self) -> u16 {
        self.count
    }

    pub fn min_t(&self) -> i64 {
        self.min_t
    }

    pub fn max_t(&self) -> i64 {
        self.t
    }

    pub fn last_value(&self) -> f64 {
        f64::from_bits(self.v_bits)
    }

    pub fn bytes(&self) -> &[u8] {
        &self.w.bytes
    }

    /// Heap bytes held, for the store's memory accounting.
    pub fn heap_bytes(&self) -> usize {
        self.w.bytes.capacity()
    }

    /// Appends a sample; the caller guarantees `t` is greater than the last timestamp.
    pub fn append(&mut self, t: i64, v: f64) {
        let v_bits = v.to_bits();
        match self.count {
            0 => {
                self.w.byte_aligned_varint(zigzag(t));
                self.w.bits(v_bits, 64);
                self.min_t = t;
            }
            1 => {
                // Wrapping arithmetic: timestamps span all of i64 in hostile input, and the
                // decoder wraps the same way, so the round trip stays exact.
                let delta = t.wrapping_sub(self.t);
                self.w.byte_aligned_varint(zigzag(delta));
                self.write_value(v_bits);
                self.t_delta = delta;
            }
            _ => {
                let delta = t.wrapping_sub(self.t);
                let dod = delta.wrapping_sub(self.t_delta);
                match dod {
                    0 => self.w.bit(false),
                    -8192..=8191 => {
                        self.w.bits(0b10, 2);
                        self.w.bits(dod as u64, 14);
                    }
                    -65536..=65535 => {
                        self.w.bits(0b110, 3);
                        self.w.bits(dod as u64, 17);
                    }
                    -524288..=524287 => {
                        self.w.bits(0b1110, 4);
                        self.w.bits(dod as u64, 20);
                    }
                    _ => {
                        self.w.bits(0b1111, 4);
                        self.w.bits(dod as u64, 64);
                    }
                }
                self.write_value(v_bits);
                self.t_delta = delta;
            }
        }
        self.t = t;
        self.v_bits = v_bits;
        self.count += 1;
    }

    fn write_value(&mut self, v_bits: u64) {
        let xor = v_bits ^ self.v_bits;
        if xor == 0 {
            self.w.bit(false);
            return;
        }
        self.w.bit(true);
        let leading = (xor.leading_zeros() as u8).min(31);
        let trailing = xor.trailing_zeros() as u8;
        if self.leading != 0xff && leading >= self.leading && trailing >= self.trailing {
            // Fits in the previous window: reuse it.
            self.w.bit(false);
            let sig = 64 - self.leading - self.trailing;
            self.w.bits(xor >> self.trailing, sig);
        } else {
            self.w.bit(true);
            let sig = 64 - leading - trailing;
            self.w.bits(leading as u64, 5);
            // 64 significant bits are stored as 0; they cannot otherwise occur here.
            self.w.bits((sig & 63) as u64, 6);
            self.w.bits(xor >> trailing, sig);
            self.leading = leading;
            self.trailing = trailing;
        }
    }

    /// Finishes the chunk; the bytes plus `count` decode with [`ChunkIter`].
    pub fn seal(self) -> SealedChunk {
        SealedChunk {
            min_t: self.min_t,
            max_t: self.t,
            count: self.count,
            data: self.w.bytes.into_boxed_slice().into(),
        }
    }

    pub fn iter(&self) -> ChunkIter<'_> {
        ChunkIter::new(&self.w.bytes, self.count)
    }
}

impl Default for ChunkAppender {
    fn default() -> Self {
        Self::new()
    }
}

/// An immutable chunk; shared between the head and readers without copying.
#[derive(Clone, Debug)]
pub struct SealedChunk {
    pub min_t: i64,
    pub max_t: i64,
    pub count: u16,
    pub data: std::sync::Arc<[u8]>,
}

impl SealedChunk {
    pub fn iter(&self) -> ChunkIter<'_> {
        ChunkIter::new(&self.data, self.count)
    }
}

/// Decodes a chunk's samples in order. Stops early (yielding fewer than `count`) only on
/// corrupt input; callers that care compare the count.
pub struct ChunkIter<'a> {
    r: BitReader<'a>,
    remaining: u16,
    read: u16,
    t: i64,
    t_delta: i64,
    v_bits: u64,
    leading: u8,
    trailing: u8,
}

impl<'a> ChunkIter<'a> {
    pub fn new(bytes: &'a [u8], count: u16) -> Self {
        ChunkIter {
            r: BitReader { bytes, pos: 0 },
            remaining: count,
            read: 0,
            t: 0,
            t_delta: 0,
            v_bits: 0,
            leading: 0,
            trailing: 0,
        }
    }

    // Inlined into the iterator's `next`, and that into the caller's loop: call overhead
    // was a fifth of decoding's instructions.
    #[inline(always)]
    fn next_sample(&mut self) -> Option<Sample> {
        match self.read {
            0 => {
                self.t = unzigzag(self.r.varint()?);
                self.v_bits = self.r.bits(64)?;
            }
            1 => {
                self.t_delta = unzigzag(self.r.varint()?);
                self.t = self.t.wrapping_add(self.t_delta);
                self.read_value()?;
            }
            _ => {
                let dod = if !self.r.bit()? {
                    0
                } else if !self.r.bit()? {
                    sign_extend(self.r.bits(14)?, 14)
                } else if !self.r.bit()? {
                    sign_extend(self.r.bits(17)?, 17)
                } else if !self.r.bit()? {
                    sign_extend(self.r.bits(20)?, 20)
                } else {
                    self.r.bits(64)? as i64
                };
                // Wrapping: corrupt input must not panic; valid input never wraps.
                self.t_delta = self.t_delta.wrapping_add(dod);
                self.t = self.t.wrapping_add(self.t_delta);
                self.read_value()?;
            }
        }
        self.read += 1;
        Some(Sample {
            t: self.t,
            v: f64::from_bits(self.v_bits),
        })
    }

    #[inline(always)]
    fn read_value(&mut self) -> Option<()> {
        if !self.r.bit()? {
            return Some(());
        }
        if self.r.bit()? {
            self.leading = self.r.bits(5)? as u8;
            let mut sig = self.r.bits(6)? as u8;
            if sig == 0 {
                sig = 64;
            }
            self.trailing = 64u8.checked_sub(self.leading + sig)?;
        }
        let sig = 64 - self.leading - self.trailing;
        let bits = self.r.bits(sig)?;
        self.v_bits ^= bits << self.trailing;
        Some(())
    }
}

fn sign_extend(v: u64, bits: u32) -> i64 {
    let shift = 64 - bits;
    ((v << shift) as i64) >> shift
}

impl Iterator for ChunkIter<'_> {
    type Item = Sample;

    #[inline]
    fn next(&mut self) -> Option<Sample> {
        if self.remaining == 0 {
            return None;
        }
        self.remaining -= 1;
        let s = self.next_sample();
        if s.is_none() {
            self.remaining = 0;
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The chunk format decoded one bit at a time, the plainest possible way: what the
    /// fast decoder must agree with on any input, corrupt or not.
    fn reference_decode(bytes: &[u8], count: u16) -> Vec<(i64, u64)> {
        let mut pos = 0usize;
        let mut bits = |n: u32| -> Option<u64> {
            let mut v = 0u64;
            for _ in 0..n {
                let b = *bytes.get(pos >> 3)?;
                v = (v << 1) | u64::from((b >> (7 - (pos & 7))) & 1);
                pos += 1;
            }
            Some(v)
        };
        let mut out = Vec::new();
        let (mut t, mut delta, mut v, mut leading, mut trailing) = (0i64, 0i64, 0u64, 0u32, 0u32);
        let varint = |bits: &mut dyn FnMut(u32) -> Option<u64>| -> Option<u64> {
            let mut x = 0u64;
            for i in 0..10 {
                let b = bits(8)?;
                x |= (b & 0x7f) << (7 * i);
                if b < 0x80 {
                    return Some(x);
                }
            }
            None
        };
        let value = |bits: &mut dyn FnMut(u32) -> Option<u64>,
                     v: &mut u64,
                     leading: &mut u32,
                     trailing: &mut u32|
         -> Option<()> {
            if bits(1)? == 0 {
                return Some(());
            }
            if bits(1)? == 1 {
                *leading = bits(5)? as u32;
                let sig = match bits(6)? as u32 {
                    0 => 64,
                    s => s,
                };
                *trailing = 64u32.checked_sub(*leading + sig)?;
            }
            let sig = 64 - *leading - *trailing;
            *v ^= bits(sig)?.checked_shl(*trailing).unwrap_or(0);
            Some(())
        };
        for i in 0..count {
            let ok = (|| -> Option<()> {
                match i {
                    0 => {
                        t = unzigzag(varint(&mut bits)?);
                        v = bits(64)?;
                    }
                    1 => {
                        delta = unzigzag(varint(&mut bits)?);
                        t = t.wrapping_add(delta);
                        value(&mut bits, &mut v, &mut leading, &mut trailing)?;
                    }
                    _ => {
                        let dod = if bits(1)? == 0 {
                            0
                        } else if bits(1)? == 0 {
                            sign_extend(bits(14)?, 14)
                        } else if bits(1)? == 0 {
                            sign_extend(bits(17)?, 17)
                        } else if bits(1)? == 0 {
                            sign_extend(bits(20)?, 20)
                        } else {
                            bits(64)? as i64
                        };
                        delta = delta.wrapping_add(dod);
                        t = t.wrapping_add(delta);
                        value(&mut bits, &mut v, &mut leading, &mut trailing)?;
                    }
                }
                Some(())
            })();
            if ok.is_none() {
                break;
            }
            out.push((t, v));
        }
        out
    }

    fn round_trip(samples: &[(i64, f64)]) -> Vec<(i64, u64)> {
        let mut a = ChunkAppender::new();
        for &(t, v) in samples {
            a.append(t, v);
        }
        let sealed = a.clone().seal();
        let from_open: Vec<_> = a.iter().map(|s| (s.t, s.v.to_bits())).collect();
        let from_sealed: Vec<_> = sealed.iter().map(|s| (s.t, s.v.to_bits())).collect();
        assert_eq!(from_open, from_sealed);
        from_sealed
    }

    #[test]
    fn regular_scrape_compresses_well() {
        let samples: Vec<_> = (0..120)
            .map(|i| (1_700_000_000_000 + i * 15_000, (i / 10) as f64))
            .collect();
        let mut a = ChunkAppender::new();
        for &(t, v) in &samples {
            a.append(t, v);
        }
        assert!(
            a.bytes().len() < 100,
            "{} bytes for 120 regular samples",
            a.bytes().len()
        );
        assert_eq!(round_trip(&samples).len(), 120);
    }

    #[test]
    fn special_values_survive() {
        let vals = [
            0.0,
            -0.0,
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::MIN_POSITIVE,
            f64::MAX,
            lastmile_model::STALE_NAN,
            1.0,
        ];
        let samples: Vec<_> = vals
            .iter()
            .enumerate()
            .map(|(i, v)| (i as i64 * 1000, *v))
            .collect();
        let got = round_trip(&samples);
        let want: Vec<_> = samples.iter().map(|(t, v)| (*t, v.to_bits())).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn gaps_wider_than_i64_round_trip() {
        let samples = [(i64::MIN, 1.0), (i64::MAX - 1, 2.0), (i64::MAX, 3.0)];
        let got = round_trip(&samples);
        assert_eq!(
            got,
            samples
                .iter()
                .map(|(t, v)| (*t, v.to_bits()))
                .collect::<Vec<_>>()
        );
        let samples = [(-5, 1.0), (0, 2.0), (i64::MAX, 3.0)];
        assert_eq!(round_trip(&samples).len(), 3);
    }

    proptest! {
        #[test]
        fn any_increasing_series_round_trips(
            start in -1_000_000_000_000i64..4_000_000_000_000,
            steps in proptest::collection::vec((1i64..10_000_000_000, any::<f64>()), 1..200),
        ) {
            let mut t = start;
            let samples: Vec<_> = steps.iter().map(|(d, v)| { t += d; (t, *v) }).collect();
            let got = round_trip(&samples);
            let want: Vec<_> = samples.iter().map(|(t, v)| (*t, v.to_bits())).collect();
            prop_assert_eq!(got, want);
        }

        #[test]
        fn bit_reader_matches_reading_bit_by_bit(
            bytes in proptest::collection::vec(any::<u8>(), 0..24),
            widths in proptest::collection::vec(0u8..=64, 0..40),
        ) {
            let mut r = BitReader { bytes: &bytes, pos: 0 };
            let mut pos = 0usize;
            for n in widths {
                let want = (pos + n as usize <= bytes.len() * 8).then(|| {
                    (pos..pos + n as usize).fold(0u64, |v, p| {
                        (v << 1) | u64::from((bytes[p >> 3] >> (7 - (p & 7))) & 1)
                    })
                });
                prop_assert_eq!(r.bits(n), want);
                if want.is_none() {
                    break;
                }
                pos += n as usize;
            }
        }

        #[test]
        fn decoder_matches_a_bit_by_bit_reference_on_any_bytes(
            bytes in proptest::collection::vec(any::<u8>(), 0..96),
            count in 0u16..120,
        ) {
            let got: Vec<_> = ChunkIter::new(&bytes, count).map(|s| (s.t, s.v.to_bits())).collect();
            prop_assert_eq!(got, reference_decode(&bytes, count));
        }

        #[test]
        fn decoder_matches_the_reference_on_real_chunks(
            steps in proptest::collection::vec((1i64..100_000, any::<f64>(), 0u8..4), 1..150),
        ) {
            let mut a = ChunkAppender::new();
            let (mut t, mut v) = (1_700_000_000_000i64, 0.0f64);
            for (d, x, kind) in steps {
                t += d;
                // Repeats, small changes and arbitrary values: every XOR case.
                v = match kind { 0 => v, 1 => v + 1.0, 2 => x, _ => (x * 1000.0).round() };
                a.append(t, v);
            }
            let got: Vec<_> = a.iter().map(|s| (s.t, s.v.to_bits())).collect();
            prop_assert_eq!(got, reference_decode(a.bytes(), a.count()));
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64), count in 0u16..200) {
            let _ = ChunkIter::new(&bytes, count).count();
        }
    }
}
