#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| lastmile_fuzz::spans::record(data));
