//! Real Loki push clients against lastmile: winston-loki (npm; snappy protobuf, its
//! default) and python-logging-loki (PyPI; JSON). Each pushes lines to a lastmile the test
//! starts; the lines must come back through the Loki query API, with the trace ids their
//! bodies carry indexed. scripts/install-test-deps.sh installs both clients; in CI a
//! missing client fails the test, elsewhere the test says why it skips.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;
use lastmile_log_store::{LogStore, LogStoreOptions};
use lastmile_model::TraceId;

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/loki-clients")
}

fn in_ci() -> bool {
    std::env::var_os("CI").is_some_and(|v| !v.is_empty())
}

/// `path` if it exists; otherwise fails in CI and returns None (with a reason) elsewhere.
fn require(path: PathBuf, what: &str) -> Option<PathBuf> {
    if path.exists() {
        return Some(path);
    }
    if in_ci() {
        panic!(
            "{what} is not installed ({} missing) but CI is set: run scripts/install-test-deps.sh",
            path.display()
        );
    }
    eprintln!(
        "skipping: {what} not installed ({} missing; run scripts/install-test-deps.sh)",
        path.display()
    );
    None
}

fn venv_python() -> PathBuf {
    let venv = std::env::var_os("LASTMILE_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into()))
                .join(".cache/lastmile-venv")
        });
    venv.join("bin/python")
}

fn run(cmd: &mut Command, what: &str) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Waits until `query` returns `want` lines; returns them oldest first.
fn wait_lines(server: &Lastmile, query: &str, want: usize) -> Vec<(common::Labels, String)> {
    wait_for(
        &format!("{want} lines for {query}"),
        Duration::from_secs(60),
        |last| {
            let now = now_ms() * 1_000_000;
            let r = server.get(&format!(
                "/loki/api/v1/query_range?query={}&start={}&end={}&limit=1000&direction=forward",
                enc(query),
                now - 3_600_000_000_000,
                now + 60_000_000_000
            ));
            if r.status != 200 {
                *last = r.text();
                return None;
            }
            let v = r.json();
            let mut out = Vec::new();
            for s in v["data"]["result"].as_array()? {
                for e in s["values"].as_array()? {
                    out.push((
                        e[0].as_str()?.to_string(),
                        labels_of(&s["stream"]),
                        e[1].as_str()?.to_string(),
                    ));
                }
            }
            out.sort();
            *last = format!("{} lines", out.len());
            (out.len() == want).then(|| out.into_iter().map(|(_, l, s)| (l, s)).collect())
        },
    )
}

fn traced_lines(dir: &TestDir) -> Vec<String> {
    let store = LogStore::open(&dir.data().join("logs"), LogStoreOptions::default()).unwrap();
    let t = TraceId::parse_any(TRACE).unwrap();
    store
        .lines_for_trace(t, 0, i64::MAX, 1000)
        .unwrap()
        .into_iter()
        .map(|(_, e)| e.line)
        .collect()
}

#[test]
fn winston_loki_pushes_protobuf() {
    let Some(node_modules) = require(
        fixture_dir().join("node_modules/winston-loki"),
        "winston-loki (npm)",
    ) else {
        return;
    };
    assert!(node_modules.is_dir());
    let dir = TestDir::new();
    let mut server = Lastmile::start(&dir);
    run(
        Command::new("node")
            .arg(fixture_dir().join("winston_push.js"))
            .arg(format!("http://{}", server.addr))
            .arg("w1")
            .arg("25")
            .current_dir(fixture_dir()),
        "node winston_push.js",
    );
    let got = wait_lines(&server, r#"{app="winston-fixture", run="w1"}"#, 25);
    // winston stamps lines in milliseconds, so several share a timestamp: compare as a set.
    let mut seqs = Vec::new();
    for (labels, line) in &got {
        assert_eq!(
            labels.get("app").map(String::as_str),
            Some("winston-fixture")
        );
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("winston line {line:?}: {e}"));
        let seq = v["seq"]
            .as_u64()
            .unwrap_or_else(|| panic!("no seq in {line}"));
        assert_eq!(v["message"], format!("winston line {seq}"), "{line}");
        assert_eq!(v["trace_id"], TRACE);
        seqs.push(seq);
    }
    seqs.sort_unstable();
    assert_eq!(seqs, (0..25).collect::<Vec<u64>>());
    // The client used its default body: snappy protobuf.
    assert!(
        server.metric(r#"lastmile_loki_push_requests_total{format="protobuf"}"#) >= 1.0,
        "{}",
        server.metrics_text()
    );
    assert_eq!(
        server.metric(r#"lastmile_loki_push_requests_total{format="json"}"#),
        0.0
    );
    server.kill9();
    assert_eq!(
        traced_lines(&dir).len(),
        25,
        "every winston line carries the trace id in its JSON body"
    );
}

#[test]
fn python_logging_loki_pushes_json() {
    let Some(python) = require(venv_python(), "the Python venv") else {
        return;
    };
    let probe = Command::new(&python)
        .args(["-c", "import logging_loki"])
        .output()
        .expect("run python");
    if !probe.status.success() {
        if in_ci() {
            panic!(
                "python-logging-loki is not installed in the venv but CI is set: run scripts/install-test-deps.sh"
            );
        }
        eprintln!("skipping: python-logging-loki not installed (run scripts/install-test-deps.sh)");
        return;
    }
    let dir = TestDir::new();
    let mut server = Lastmile::start(&dir);
    run(
        Command::new(&python)
            .arg(fixture_dir().join("python_push.py"))
            .arg(format!("http://{}", server.addr))
            .arg("p1")
            .arg("12"),
        "python python_push.py",
    );
    let got = wait_lines(
        &server,
        r#"{app="python-fixture", run="p1"} |= "python line""#,
        12,
    );
    let mut seqs = Vec::new();
    for (labels, line) in &got {
        // python-logging-loki's own label conventions: tags, plus severity and logger.
        assert_eq!(
            labels.get("component").map(String::as_str),
            Some("worker"),
            "{labels:?}"
        );
        assert_eq!(
            labels.get("severity").map(String::as_str),
            Some("warning"),
            "{labels:?}"
        );
        let seq: u64 = line
            .strip_prefix("python line ")
            .and_then(|r| r.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("unexpected line {line:?}"));
        seqs.push(seq);
    }
    seqs.sort_unstable();
    assert_eq!(seqs, (0..12).collect::<Vec<u64>>());
    assert!(server.metric(r#"lastmile_loki_push_requests_total{format="json"}"#) >= 1.0);
    server.kill9();
    assert_eq!(
        traced_lines(&dir).len(),
        12,
        "the traceparent in every body is indexed"
    );
}
