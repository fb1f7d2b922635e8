//! `metric_relabel_configs` in the serve config: the rules stage between remote write and
//! the store, end to end through the binary.

mod common;

use std::process::Command;

use common::*;

const RULES: &str = r#"
metric_relabel_configs:
  - source_labels: [__name__]
    regex: debug_.*
    action: drop
  - source_labels: [instance]
    regex: '([^:]+):\d+'
    target_label: host
  - regex: instance
    action: labeldrop
"#;

#[test]
fn ingested_series_are_relabeled_and_dropped_per_config() {
    let dir = TestDir::new();
    let server = Lastmile::start_with_config(&dir, RULES);
    let t = now_ms();
    let kept = series(
        &[
            ("__name__", "rl_up"),
            ("instance", "db1:9100"),
            ("job", "node"),
        ],
        &[(t, 1.0)],
    );
    let dropped = series(
        &[("__name__", "debug_noise"), ("instance", "db1:9100")],
        &[(t, 2.0), (t + 1, 3.0)],
    );
    let r = server.remote_write(&[kept, dropped], &[]);
    assert_eq!(r.status, 204, "{}", r.text());

    let got = server.series(r#"{__name__=~"rl_up|debug_noise"}"#);
    let want: Labels = [("__name__", "rl_up"), ("host", "db1"), ("job", "node")]
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    assert_eq!(got, vec![want]);
    assert_eq!(
        server.metric("lastmile_rules_series_dropped_total{reason=\"relabel\"}"),
        1.0
    );
    assert_eq!(server.metric("lastmile_rules_samples_dropped_total"), 2.0);
}

#[test]
fn a_broken_rule_stops_startup_with_its_reason() {
    let dir = TestDir::new();
    let config = dir.path().join("bad.yml");
    std::fs::write(
        &config,
        "metric_relabel_configs:\n  - action: hashmod\n    target_label: shard\n",
    )
    .unwrap();
    let out = Command::new(lastmile_bin())
        .args(["serve", "--http-addr", "127.0.0.1:0", "--data-dir"])
        .arg(dir.data())
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("metric_relabel_configs") && stderr.contains("modulus"),
        "{stderr}"
    );
}
