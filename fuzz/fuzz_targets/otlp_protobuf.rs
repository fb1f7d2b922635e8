#![no_main]

// Counts Rust heap use, so the harness can check gzip decompression stays within its limit.
#[global_allocator]
static ALLOC: lastmile_fuzz::alloc_meter::Counting = lastmile_fuzz::alloc_meter::Counting;

libfuzzer_sys::fuzz_target!(|data: &[u8]| lastmile_fuzz::otlp::protobuf(data));
