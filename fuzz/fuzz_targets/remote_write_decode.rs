#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| lastmile_fuzz::remote_write::decode(data));
