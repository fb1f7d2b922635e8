//! Hot reload of the rules file under load, canary rollout and promotion, and
//! `lastmile rules check`, through the real binary.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use common::*;
use serde_json::Value;

/// Rules version `k`: every series gets `rv="v<k>"`, and the file's own test checks it.
fn valid_rules(k: usize) -> String {
    format!(
        r#"# version {k}
metric_relabel_configs:
  - target_label: rv
    replacement: v{k}
cardinality:
  deny_labels: []
tests:
  - name: version label
    series: 'reload_probe{{seq="1"}}'
    expect: 'reload_probe{{rv="v{k}", seq="1"}}'
"#
    )
}

/// A broken version `k` (four kinds of breakage in turn), and the line its error must
/// name. Each would label series `rv="bad<k>"` if it were ever active.
fn invalid_rules(k: usize) -> (String, u64, &'static str) {
    match (k / 2) % 4 {
        0 => (
            format!(
                "metric_relabel_configs:\n  - target_label: rv\n    replacement: bad{k}\n  - source_labels: [seq]\n    regex: '(unclosed'\n    action: drop\n"
            ),
            4,
            "invalid regex",
        ),
        1 => (
            format!(
                "metric_relabel_configs:\n  - target_label: rv\n    replacement: bad{k}\ntests:\n  - name: wrong expectation\n    series: 'reload_probe{{seq=\"1\"}}'\n    expect: 'reload_probe{{rv=\"v{k}\", seq=\"1\"}}'\n"
            ),
            5,
            "failed",
        ),
        2 => (
            format!(
                "metric_relabel_configs:\n  - target_label: rv\n    replacement: bad{k}\n  - target_label: [not, a, name]\n"
            ),
            4,
            "",
        ),
        _ => (
            format!(
                "metric_relabel_configs:\n  - target_label: rv\n    replacement: bad{k}\nmetric_relabel_config: []\n"
            ),
            4,
            "unknown key",
        ),
    }
}

/// Replaces the file the way editors and ConfigMaps do: a new file renamed over it, so
/// the watcher never reads half a file.
fn write_atomically(path: &std::path::Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn status(server: &Lastmile) -> Value {
    let r = server.get("/api/v1/status/rules");
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["data"].clone()
}

#[derive(Debug)]
struct Sent {
    seq: u64,
    status: u16,
    version: String,
    body: String,
}

#[test]
fn fifty_rewrites_under_load_every_sample_follows_the_version_that_accepted_it() {
    let dir = TestDir::new();
    let rules_path = dir.path().join("rules.yml");
    write_atomically(&rules_path, &valid_rules(0));
    let server = Lastmile::start_with_config(&dir, "rule_files: [rules.yml]\n");
    let addr = server.addr;

    // Engine version → the label value its file sets.
    let mut versions: HashMap<String, String> = HashMap::new();
    assert_eq!(status(&server)["stable"]["version"], 1);
    versions.insert("1".into(), "v0".into());

    let stop = Arc::new(AtomicBool::new(false));
    let t0 = now_ms();
    let pusher = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut sent = Vec::new();
            // Bounded: stops when the rewrites are done, or after 200,000 requests.
            for seq in 0..200_000u64 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let s = seq.to_string();
                let body = snappy_write_request(
                    &[series(
                        &[("__name__", "reload_probe"), ("seq", &s)],
                        &[(t0 + seq as i64, seq as f64)],
                    )],
                    &[],
                );
                let r = http_request(
                    addr,
                    "POST",
                    "/api/v1/write",
                    &[
                        ("Content-Type", "application/x-protobuf"),
                        ("Content-Encoding", "snappy"),
                    ],
                    &body,
                    Framing::ContentLength,
                );
                match r {
                    Ok(r) => sent.push(Sent {
                        seq,
                        status: r.status,
                        version: r
                            .header("X-Lastmile-Rules-Version")
                            .unwrap_or("")
                            .to_string(),
                        body: r.text(),
                    }),
                    Err(e) => sent.push(Sent {
                        seq,
                        status: 0,
                        version: String::new(),
                        body: e.to_string(),
                    }),
                }
            }
            sent
        })
    };

    let mut failures_seen = 0u64;
    for k in 1..=50usize {
        let before = status(&server);
        if k % 2 == 0 {
            // Valid: picked up by the file watcher alone.
            write_atomically(&rules_path, &valid_rules(k));
            let prev = before["stable"]["version"].as_u64().unwrap();
            let st = wait_for(
                &format!("version {k} to become active"),
                START_TIMEOUT,
                |last| {
                    let st = status(&server);
                    *last = st["lastReload"].to_string();
                    (st["stable"]["version"].as_u64() == Some(prev + 1)).then_some(st)
                },
            );
            let v = st["stable"]["version"].as_u64().unwrap().to_string();
            versions.insert(v, format!("v{k}"));
            assert_eq!(st["lastReload"]["success"], true);
            assert_eq!(st["lastReload"]["testsPassed"], 1);
        } else {
            // Invalid: refused with its line and reason; the previous rules stay.
            let (text, line, reason) = invalid_rules(k);
            write_atomically(&rules_path, &text);
            let r = server.post("/-/reload", &[], b"");
            assert_eq!(r.status, 400, "reload of broken version {k}: {}", r.text());
            let msg = r.text();
            assert!(
                msg.contains(&format!("rules.yml:{line}")) && msg.contains(reason),
                "version {k}: {msg}"
            );
            let st = status(&server);
            assert_eq!(st["lastReload"]["success"], false);
            assert_eq!(st["lastReload"]["error"]["loc"]["line"], line);
            assert_eq!(st["stable"]["version"], before["stable"]["version"]);
            failures_seen += 1;
            assert!(st["reloads"]["failures"].as_u64().unwrap() >= failures_seen);
        }
    }
    stop.store(true, Ordering::Relaxed);
    let sent = pusher.join().unwrap();
    assert!(
        sent.len() > 50,
        "the push loop ran ({} requests)",
        sent.len()
    );
    let failed: Vec<&Sent> = sent.iter().filter(|s| s.status != 204).collect();
    assert!(
        failed.is_empty(),
        "requests failed: {:?}",
        &failed[..failed.len().min(5)]
    );
    assert_eq!(versions.len(), 26, "the initial and 25 valid versions");
    assert_eq!(
        server.metric("lastmile_rules_reloads_total{result=\"failure\"}") as u64,
        status(&server)["reloads"]["failures"].as_u64().unwrap()
    );

    // Every stored sample carries the label of the version named in its response.
    let stored = server.export("{__name__=\"reload_probe\"}", None, None);
    let by_seq: BTreeMap<u64, &Labels> = stored
        .keys()
        .map(|l| (l["seq"].parse().unwrap(), l))
        .collect();
    assert_eq!(by_seq.len(), sent.len(), "one series per request");
    let mut used = std::collections::BTreeSet::new();
    for s in &sent {
        let want = versions.get(&s.version).unwrap_or_else(|| {
            panic!(
                "request {} answered by unknown version {:?}",
                s.seq, s.version
            )
        });
        let got = &by_seq[&s.seq]["rv"];
        assert_eq!(
            got, want,
            "request {} accepted by version {}",
            s.seq, s.version
        );
        used.insert(want.clone());
        assert!(s.body.is_empty(), "{}", s.body);
    }
    assert!(!stored.keys().any(|l| l["rv"].starts_with("bad")));
    eprintln!(
        "{} requests, answered by {} rule versions",
        sent.len(),
        used.len()
    );
    assert!(
        used.len() >= 2,
        "requests straddled reloads: versions used {used:?}"
    );
}

#[test]
fn a_canary_takes_its_fraction_until_promoted() {
    let dir = TestDir::new();
    let rules_path = dir.path().join("rules.yml");
    write_atomically(&rules_path, &valid_rules(1));
    let server = Lastmile::start_with_config(&dir, "rule_files: [rules.yml]\n");
    write_atomically(
        &rules_path,
        &format!("{}canary: {{fraction: 0.3}}\n", valid_rules(2)),
    );
    let r = server.post("/-/reload", &[], b"");
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().contains("canary"), "{}", r.text());
    let st = status(&server);
    assert_eq!(st["stable"]["version"], 1);
    assert_eq!(st["canary"]["version"], 2);
    assert_eq!(st["canary"]["fraction"], 0.3);

    let t = now_ms();
    let batch: Vec<_> = (0..1000)
        .map(|i| {
            let s = i.to_string();
            series(&[("__name__", "canary_probe"), ("seq", &s)], &[(t, 1.0)])
        })
        .collect();
    let r = server.remote_write(&batch, &[]);
    assert_eq!(r.status, 204, "{}", r.text());
    assert_eq!(r.header("X-Lastmile-Rules-Version"), Some("1;canary=2"));
    let got = server.series("canary_probe");
    let canary = got.iter().filter(|l| l["rv"] == "v2").count();
    assert_eq!(got.len(), 1000);
    assert!(
        (200..400).contains(&canary),
        "{canary} of 1000 series on the canary"
    );
    // The status compares the two versions on what each saw.
    let st = status(&server);
    assert_eq!(st["canary"]["outcomes"]["seriesIn"], canary as u64);
    assert_eq!(st["stable"]["outcomes"]["seriesIn"], 1000 - canary as u64);
    assert!(st["comparison"]["seriesDroppedRatio"].is_array());
    assert_eq!(server.metric("lastmile_rules_canary_version"), 2.0);

    let r = server.post("/api/v1/rules/promote", &[], b"");
    assert_eq!(r.status, 200, "{}", r.text());
    let r = server.remote_write(&[series(&[("__name__", "canary_after")], &[(t, 1.0)])], &[]);
    assert_eq!(r.header("X-Lastmile-Rules-Version"), Some("2"));
    assert_eq!(server.series("canary_after")[0]["rv"], "v2");
    assert_eq!(server.post("/api/v1/rules/promote", &[], b"").status, 409);
    // The same file does not start the canary again.
    assert!(
        server
            .post("/-/reload", &[], b"")
            .text()
            .contains("unchanged")
    );
}

#[test]
fn rules_check_reports_tests_and_errors() {
    let dir = TestDir::new();
    let good = dir.path().join("good.yml");
    std::fs::write(
        &good,
        r#"metric_relabel_configs:
  - source_labels: [__name__]
    regex: debug_.*
    action: drop
tail_sampling:
  policies:
    - name: errors
      status: error
    - name: rest
      keep: 0.01
tests:
  - name: debug dropped
    series: 'debug_x{job="a"}'
    expect: drop
  - name: errors kept
    spans: [{name: "GET /", status: error}]
    policy: errors
    expect: keep
"#,
    )
    .unwrap();
    let out = Command::new(lastmile_bin())
        .args(["rules", "check"])
        .arg(&good)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("ok    debug dropped"), "{stdout}");
    assert!(stdout.contains("2 tests, 2 passed, 0 failed"), "{stdout}");
    assert!(stdout.contains("policies errors, rest"), "{stdout}");

    let failing = dir.path().join("failing.yml");
    std::fs::write(
        &failing,
        std::fs::read_to_string(&good)
            .unwrap()
            .replace("expect: drop", "expect: 'debug_x{job=\"a\"}'"),
    )
    .unwrap();
    let out = Command::new(lastmile_bin())
        .args(["rules", "check"])
        .arg(&failing)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("FAIL  debug dropped"), "{stdout}");
    assert!(stdout.contains("dropped by relabeling"), "{stdout}");
    assert!(stdout.contains("1 failed"), "{stdout}");

    let broken = dir.path().join("broken.yml");
    std::fs::write(
        &broken,
        "log_rules:\n  - match: '{app=nginx}'\n    action: drop\n",
    )
    .unwrap();
    let out = Command::new(lastmile_bin())
        .args(["rules", "check"])
        .arg(&broken)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr.contains("broken.yml:2") && stderr.contains("quoted"),
        "{stderr}"
    );
}

#[test]
fn a_broken_rules_file_at_startup_stops_the_server_with_its_line() {
    let dir = TestDir::new();
    std::fs::write(dir.path().join("rules.yml"), invalid_rules(0).0).unwrap();
    std::fs::write(dir.path().join("config.yml"), "rule_files: [rules.yml]\n").unwrap();
    let out = Command::new(lastmile_bin())
        .args(["serve", "--http-addr", "127.0.0.1:0", "--data-dir"])
        .arg(dir.data())
        .arg("--config")
        .arg(dir.path().join("config.yml"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("rules.yml:4") && stderr.contains("invalid regex"),
        "{stderr}"
    );
}

/// The example in the README is a working rules file whose tests pass.
#[test]
fn the_readme_example_rules_file_passes_its_own_tests() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md"))
        .expect("README.md");
    let section = readme
        .split("### The rules file")
        .nth(1)
        .expect("a 'The rules file' section in README.md");
    let yaml = section
        .split("```yaml\n")
        .nth(1)
        .and_then(|b| b.split("\n```").next())
        .expect("a yaml block in the section");
    let dir = TestDir::new();
    let path = dir.path().join("readme-rules.yml");
    std::fs::write(&path, yaml).unwrap();
    let out = Command::new(lastmile_bin())
        .args(["rules", "check"])
        .arg(&path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("5 tests, 5 passed, 0 failed"), "{stdout}");
}
