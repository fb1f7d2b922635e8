//! A Bloom filter per chunk over its long hex runs and trace ids: random ids made most of
//! a term dictionary (once per segment, rewritten by every merge) for searches that ask
//! "which chunks may hold this exact id". Every false positive costs a chunk decode
//! (milliseconds), and a trace lookup asks thousands of chunks: twenty bits per key and
//! fourteen probes give about one false positive in 15,000 (with ten bits and seven
//! probes, 0.8%, a lookup over 10M lines decoded ~18 chunks and took 122 ms). The filter
//! is a column of the chunk's index document, read without touching the chunk.

/// Bits per key: with [`PROBES`], about 0.007% false positives.
const BITS_PER_KEY: usize = 20;
const PROBES: u64 = 14;

/// The filter of `keys` (64-bit hashes), as words.
pub fn build(keys: impl ExactSizeIterator<Item = u64>) -> Vec<u64> {
    let words = (keys.len() * BITS_PER_KEY).div_ceil(64).max(1);
    let mut filter = vec![0u64; words];
    let bits = (words * 64) as u64;
    for key in keys {
        for bit in probes(key, bits) {
            filter[(bit / 64) as usize] |= 1 << (bit % 64);
        }
    }
    filter
}

/// Whether a filter of `words` words, read by `word`, may hold `key`.
pub fn may_contain(words: usize, word: impl Fn(usize) -> u64, key: u64) -> bool {
    if words == 0 {
        return false;
    }
    let bits = (words * 64) as u64;
    probes(key, bits).all(|bit| word((bit / 64) as usize) & (1 << (bit % 64)) != 0)
}

/// Bit positions of `key` (double hashing).
fn probes(key: u64, bits: u64) -> impl Iterator<Item = u64> {
    let h1 = key & 0xffff_ffff;
    let h2 = (key >> 32) | 1;
    (0..PROBES).map(move |i| h1.wrapping_add(i.wrapping_mul(h2)) % bits)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(i: u64) -> u64 {
        xxhash_rust::xxh3::xxh3_64(&i.to_le_bytes())
    }

    #[test]
    fn holds_what_it_was_given_and_little_else() {
        let f = build((0..5000u32).map(|i| key(u64::from(i))));
        let holds = |k| may_contain(f.len(), |w| f[w], k);
        assert!((0..5000).all(|i| holds(key(i))));
        let false_positives = (5000..105_000).filter(|&i| holds(key(i))).count();
        // About 7 expected; a broken filter answers yes far more often.
        assert!(false_positives < 100, "{false_positives} of 100000");
        assert!(!may_contain(0, |_| u64::MAX, key(1)));
        let empty = build(std::iter::empty());
        assert!(!may_contain(empty.len(), |w| empty[w], key(1)));
    }
}
