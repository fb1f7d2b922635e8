//! `lastmile serve --demo` produces a fleet's worth of data at once, and the command-line
//! help documents every flag of the fixed interface (spec §4).

mod common;

use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

use common::*;

fn help(args: &[&str]) -> String {
    let out = Command::new(lastmile_bin())
        .args(args)
        .output()
        .expect("run lastmile");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "lastmile {args:?} exited with {}; stdout:\n{stdout}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn help_mentions_every_flag() {
    let top = help(&["--help"]);
    for word in [
        "serve",
        "bench",
        "--log-format",
        "--log-level",
        "--help",
        "--version",
    ] {
        assert!(
            top.contains(word),
            "`lastmile --help` does not mention {word}:\n{top}"
        );
    }
    let serve = help(&["serve", "--help"]);
    for flag in [
        "--config",
        "--data-dir",
        "--http-addr",
        "--otlp-grpc-addr",
        "--otlp-http-addr",
        "--demo",
        "--retention",
        "--log-format",
        "--log-level",
    ] {
        assert!(
            serve.contains(flag),
            "`lastmile serve --help` does not mention {flag}:\n{serve}"
        );
    }
    // The documented defaults.
    for default in [
        "127.0.0.1:7070",
        "127.0.0.1:4317",
        "127.0.0.1:4318",
        "./lastmile-data",
    ] {
        assert!(
            serve.contains(default),
            "`lastmile serve --help` does not show the default {default}:\n{serve}"
        );
    }
    let version = help(&["--version"]);
    assert!(version.starts_with("lastmile "), "{version}");
}

#[test]
fn unknown_flag_is_an_error() {
    let out = Command::new(lastmile_bin())
        .args(["serve", "--no-such-flag"])
        .output()
        .expect("run lastmile");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--no-such-flag"));
}

fn jobs_of(server: &Lastmile, metric: &str) -> BTreeSet<String> {
    server
        .series(metric)
        .into_iter()
        .filter_map(|l| l.get("job").cloned())
        .collect()
}

#[test]
fn demo_fleet_has_data_for_several_jobs() {
    let dir = TestDir::new();
    let server = Lastmile::start_with(
        &dir,
        &ServeOptions {
            demo: true,
            ..Default::default()
        },
    );
    let jobs = wait_for(
        "demo series of several jobs",
        Duration::from_secs(60),
        |last| {
            let hist = jobs_of(&server, "http_request_duration_seconds_bucket");
            let gor = jobs_of(&server, "go_goroutines");
            *last = format!("histogram jobs {hist:?}, goroutine jobs {gor:?}");
            (hist.len() >= 3 && gor.len() >= 3).then_some(gor)
        },
    );
    // Buckets of a histogram: several `le` values per job, ending in +Inf.
    let buckets = server.series("http_request_duration_seconds_bucket");
    let les: BTreeSet<&str> = buckets
        .iter()
        .filter_map(|l| l.get("le").map(String::as_str))
        .collect();
    assert!(les.len() >= 3 && les.contains("+Inf"), "le values: {les:?}");
    // The last hour is backfilled: samples go back at least 50 minutes, for every job.
    let now = now_ms();
    let goroutines = server.export("go_goroutines", Some(now - 2 * 3600 * 1000), None);
    for job in &jobs {
        let oldest = goroutines
            .iter()
            .filter(|(l, _)| l.get("job") == Some(job))
            .filter_map(|(_, s)| s.first().map(|&(t, _)| t))
            .min()
            .unwrap_or_else(|| panic!("no go_goroutines samples for job {job}"));
        assert!(
            oldest <= now - 50 * 60 * 1000,
            "job {job}: oldest sample only {} s old",
            (now - oldest) / 1000
        );
    }
    // Metadata of the demo metrics.
    let md = server.get("/api/v1/metadata").json();
    assert_eq!(md["data"]["go_goroutines"][0]["type"], "gauge", "{md}");
    assert_eq!(
        md["data"]["http_request_duration_seconds"][0]["type"], "histogram",
        "{md}"
    );
}
