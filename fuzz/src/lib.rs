//! The bodies of lastmile's fuzz targets, kept in a library so the targets under
//! `fuzz_targets/` stay one line each and `tests/` can replay seeds and regressions
//! through exactly the same code without libFuzzer.
//!
//! Every harness must never panic on any input; each also asserts properties that a
//! correct decoder keeps, so a wrong answer is a crash too.

pub mod alloc_meter;
pub mod chunk;
pub mod go_binary;
pub mod logql;
pub mod loki;
pub mod otlp;
pub mod promql;
pub mod remote_write;
pub mod rules;
pub mod seeds;
pub mod spans;
pub mod wal;

/// Names of the fuzz targets, as in `Cargo.toml` and the `seeds/` and `regressions/` folders.
pub const TARGETS: [&str; 14] = [
    "remote_write_decode",
    "remote_write_body",
    "wal_frames",
    "wal_record",
    "chunk_decode",
    "promql_query",
    "otlp_protobuf",
    "otlp_json",
    "span_record",
    "go_binary",
    "loki_push_decode",
    "loki_push_body",
    "logql_query",
    "rules_file",
];

/// Runs the harness of `target` on one input.
pub fn run(target: &str, data: &[u8]) {
    match target {
        "remote_write_decode" => remote_write::decode(data),
        "remote_write_body" => remote_write::body(data),
        "wal_frames" => wal::frames(data),
        "wal_record" => wal::record(data),
        "chunk_decode" => chunk::decode(data),
        "promql_query" => promql::query(data),
        "otlp_protobuf" => otlp::protobuf(data),
        "otlp_json" => otlp::json(data),
        "span_record" => spans::record(data),
        "go_binary" => go_binary::parse(data),
        "loki_push_decode" => loki::decode(data),
        "loki_push_body" => loki::body(data),
        "logql_query" => logql::query(data),
        "rules_file" => rules::file(data),
        _ => panic!("unknown fuzz target {target:?}"),
    }
}

/// Reads fuzz input front to back; every read past the end gives `None`.
pub struct Cursor<'a> {
    data: &'a [u8],
}

impl<'a> Cursor<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Cursor { data }
    }

    pub fn u8(&mut self) -> Option<u8> {
        let (&b, rest) = self.data.split_first()?;
        self.data = rest;
        Some(b)
    }

    pub fn bytes<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (head, rest) = self.data.split_first_chunk::<N>()?;
        self.data = rest;
        Some(*head)
    }

    pub fn u16(&mut self) -> Option<u16> {
        self.bytes().map(u16::from_le_bytes)
    }

    pub fn u32(&mut self) -> Option<u32> {
        self.bytes().map(u32::from_le_bytes)
    }

    pub fn u64(&mut self) -> Option<u64> {
        self.bytes().map(u64::from_le_bytes)
    }
}
