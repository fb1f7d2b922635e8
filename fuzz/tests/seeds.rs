//! Seeds and regressions, without libFuzzer:
//!
//! - `cargo test --manifest-path fuzz/Cargo.toml` checks that freshly made seeds are valid
//!   and runs every committed seed and regression input through its harness.
//! - `LASTMILE_FUZZ_WRITE_SEEDS=1 cargo test --manifest-path fuzz/Cargo.toml` also
//!   rewrites `fuzz/seeds/<target>/` from lastmile's current encoders.

use std::fs;
use std::path::{Path, PathBuf};

use lastmile_fuzz::{TARGETS, run, seeds};

fn fuzz_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = entries
        .map(|e| e.expect("read dir").path())
        .filter(|p| p.is_file())
        .collect();
    out.sort();
    out
}

#[test]
fn fresh_seeds_are_valid() {
    let scratch = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("seed-wal");
    let all = seeds::all(&scratch);
    for target in TARGETS {
        assert!(all.iter().any(|s| s.0 == target), "no seed for {target}");
    }
    for (target, name, data) in &all {
        match *target {
            "remote_write_decode" => {
                let (batch, _) = lastmile_receivers::remote_write::decode_write_request(data)
                    .unwrap_or_else(|e| panic!("{name}: {e}"));
                assert!(!batch.series.is_empty(), "{name}: no series");
            }
            "wal_frames" => {
                let mut it = lastmile_store::wal::FrameIter::new(data);
                assert!(it.by_ref().count() >= 4, "{name}: too few frames");
            }
            "wal_record" => {
                let head = lastmile_fuzz::wal::new_head();
                let mut aliases = hashbrown::HashMap::new();
                head.replay_frame(&lastmile_fuzz::wal::prelude_record(), &mut aliases)
                    .unwrap();
                head.replay_frame(data, &mut aliases)
                    .unwrap_or_else(|e| panic!("{name}: {e}"));
            }
            "otlp_protobuf" | "otlp_json" => {
                let n = lastmile_fuzz::otlp::seed_items(*target == "otlp_json", data)
                    .unwrap_or_else(|e| panic!("{target}/{name}: {e}"));
                assert!(n >= 1, "{target}/{name}: no items");
            }
            "span_record" => {
                let batch = lastmile_trace_store::codec::get_batch(
                    &mut lastmile_store::codec::Decoder::new(data),
                )
                .unwrap_or_else(|e| panic!("{name}: {e}"));
                assert!(batch.span_count() > 0, "{name}: no spans");
            }
            "go_binary" => {
                let table = lastmile_ebpf::pclntab::functions(data, None).map(|f| f.len());
                let info = lastmile_ebpf::gobin::build_info_version(data);
                assert!(
                    table == Ok(2) || info.is_ok(),
                    "{name}: neither a table nor build info"
                );
            }
            "rules_file" => {
                let text = std::str::from_utf8(data).unwrap().to_string();
                lastmile_rules::Rules::from_sources(vec![lastmile_rules::RulesSource::rules_file(
                    name.as_str(),
                    text,
                )])
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            }
            "promql_query" => {
                let q = std::str::from_utf8(data).unwrap();
                lastmile_query::promql::parse(q).unwrap_or_else(|e| panic!("{name}: {e}"));
            }
            _ => {}
        }
        run(target, data);
    }
    if std::env::var_os("LASTMILE_FUZZ_WRITE_SEEDS").is_some() {
        for target in TARGETS {
            let dir = fuzz_dir().join("seeds").join(target);
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(&dir).unwrap();
        }
        for (target, name, data) in &all {
            fs::write(fuzz_dir().join("seeds").join(target).join(name), data).unwrap();
        }
    }
}

#[test]
fn committed_seeds_pass() {
    for target in TARGETS {
        let seeds = files(&fuzz_dir().join("seeds").join(target));
        assert!(
            !seeds.is_empty(),
            "fuzz/seeds/{target} is empty: run with LASTMILE_FUZZ_WRITE_SEEDS=1"
        );
        for f in seeds {
            run(target, &fs::read(&f).unwrap());
        }
    }
}

/// Inputs that once crashed a target; each must pass once its bug is fixed.
#[test]
fn regressions_pass() {
    let mut failed = Vec::new();
    for target in TARGETS {
        for f in files(&fuzz_dir().join("regressions").join(target)) {
            if f.extension().is_some_and(|e| e == "md") {
                continue;
            }
            let data = fs::read(&f).unwrap();
            if std::panic::catch_unwind(|| run(target, &data)).is_err() {
                failed.push(f.display().to_string());
            }
        }
    }
    assert!(failed.is_empty(), "still crashing: {failed:#?}");
}
