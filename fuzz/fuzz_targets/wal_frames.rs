#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| lastmile_fuzz::wal::frames(data));

// libFuzzer's own mutations, then (7 times in 8) the frame headers made valid again, so
// mutated records get past the CRC and into replay; the rest test corrupt segments.
libfuzzer_sys::fuzz_mutator!(|data: &mut [u8], size: usize, max_size: usize, seed: u32| {
    let size = libfuzzer_sys::fuzzer_mutate(data, size, max_size);
    if !seed.is_multiple_of(8) {
        lastmile_fuzz::wal::fix_frames(&mut data[..size]);
    }
    size
});
