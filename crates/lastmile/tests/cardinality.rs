//! The cardinality guard under attack, through the real binary: two million unique
//! `user_id` values pushed as fast as one connection goes, then thirty thousand unique
//! metric names. The budgets hold exactly, legitimate series keep ingesting, every refused
//! sample is counted (in the push responses, on /metrics and on the status page) and the
//! server's peak RSS stays under a stated bound.

mod common;

use common::*;
use serde_json::Value;

/// Unique `user_id` values of the attack.
const ATTACK_SERIES: usize = 2_000_000;
const ATTACK_PER_REQUEST: usize = 20_000;
/// Unique metric names of the second wave.
const NEW_NAMES: usize = 30_000;
const NAMES_PER_REQUEST: usize = 10_000;
const LEGIT_SERIES: usize = 200;
const MAX_SERIES: usize = 20_000;
const ATTACK_BUDGET: usize = 5_000;
/// Peak RSS allowed for the whole run. Storing every attack series would take well over
/// 1 GB (about 450 bytes per series in the head alone, plus the index); the guard keeps
/// 20,000 series (measured: about 41 MiB peak for the whole run in a debug build).
const RSS_BOUND_BYTES: u64 = 128 << 20;

const CONFIG: &str = r#"
cardinality:
  # user_id is denied by default; here it is allowed so the budgets do the work.
  deny_labels: [session_token, ip_address]
  max_series: 20000
  metric_budgets:
    attack_requests_total: 5000
"#;

fn peak_rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: u64 = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .expect("VmHWM in /proc/PID/status");
    kb * 1024
}

fn legit(t: i64, v: f64) -> Vec<lastmile_receivers::remote_write::EncodeSeries> {
    (0..LEGIT_SERIES)
        .map(|j| {
            let route = format!("/r{j}");
            series(
                &[
                    ("__name__", "legit_requests_total"),
                    ("job", "api"),
                    ("route", &route),
                ],
                &[(t, v)],
            )
        })
        .collect()
}

/// Sends a request and returns the samples it says the series budget refused.
fn push(server: &Lastmile, body: Vec<lastmile_receivers::remote_write::EncodeSeries>) -> u64 {
    let r = server.remote_write(&body, &[]);
    match r.status {
        204 => 0,
        200 => {
            let v: Value = r.json();
            let refused = &v["data"]["rejected"];
            // Nothing else may be refused: every other sample was stored.
            for (k, n) in refused.as_object().unwrap() {
                if k != "seriesBudget" {
                    assert_eq!(n, 0, "{k} refused: {v}");
                }
            }
            let w = v["warnings"].to_string();
            assert!(w.contains("series budget"), "{w}");
            refused["seriesBudget"].as_u64().unwrap()
        }
        s => panic!("push failed with {s}: {}", r.text()),
    }
}

#[test]
fn an_attack_of_unique_label_values_stays_within_budget_and_memory() {
    let dir = TestDir::new();
    let server = Lastmile::start_with_config(&dir, CONFIG);
    let t0 = now_ms() - 600_000;
    let mut refused_reported = 0u64;
    let mut rounds = 0i64;

    // Wave 1: unique user_id values on one metric.
    for r in 0..ATTACK_SERIES / ATTACK_PER_REQUEST {
        let t = t0 + rounds * 1000;
        let mut body: Vec<_> = (0..ATTACK_PER_REQUEST)
            .map(|i| {
                let user = format!("u{}", r * ATTACK_PER_REQUEST + i);
                series(
                    &[
                        ("__name__", "attack_requests_total"),
                        ("job", "bot"),
                        ("user_id", &user),
                    ],
                    &[(t, 1.0)],
                )
            })
            .collect();
        body.extend(legit(t, rounds as f64));
        refused_reported += push(&server, body);
        rounds += 1;
    }
    let wave1 = (ATTACK_SERIES - ATTACK_BUDGET) as u64;
    assert_eq!(refused_reported, wave1);

    // Wave 2: unique metric names, until the global budget is used up.
    for r in 0..NEW_NAMES / NAMES_PER_REQUEST {
        let t = t0 + rounds * 1000;
        let mut body: Vec<_> = (0..NAMES_PER_REQUEST)
            .map(|i| {
                let name = format!("probe_{}_total", r * NAMES_PER_REQUEST + i);
                series(&[("__name__", &name), ("job", "scanner")], &[(t, 1.0)])
            })
            .collect();
        body.extend(legit(t, rounds as f64));
        refused_reported += push(&server, body);
        rounds += 1;
    }
    let admitted_names = MAX_SERIES - ATTACK_BUDGET - LEGIT_SERIES;
    let wave2 = (NEW_NAMES - admitted_names) as u64;
    assert_eq!(
        refused_reported,
        wave1 + wave2,
        "push responses count every refused sample"
    );

    // Memory stayed bounded.
    let peak = peak_rss_bytes(server.pid());
    eprintln!(
        "peak RSS after {} attack series: {:.1} MiB (bound {} MiB)",
        ATTACK_SERIES + NEW_NAMES,
        peak as f64 / (1 << 20) as f64,
        RSS_BOUND_BYTES >> 20
    );
    assert!(
        peak < RSS_BOUND_BYTES,
        "peak RSS {peak} bytes over the bound of {RSS_BOUND_BYTES}"
    );

    // The store holds exactly the budget.
    let tsdb = server.get("/api/v1/status/tsdb?limit=5&focusLabel=route");
    assert_eq!(tsdb.status, 200, "{}", tsdb.text());
    let tsdb = tsdb.json()["data"].clone();
    assert_eq!(tsdb["headStats"]["numSeries"], MAX_SERIES as u64);
    // Legitimate series got every sample, through both waves.
    let legit = server.export("legit_requests_total", None, None);
    assert_eq!(legit.len(), LEGIT_SERIES);
    assert!(legit.values().all(|s| s.len() == rounds as usize));
    assert_eq!(server.series("attack_requests_total").len(), ATTACK_BUDGET);

    // Exact counts everywhere.
    assert_eq!(
        server.metric("lastmile_cardinality_overflow_samples_total") as u64,
        wave1 + wave2
    );
    assert_eq!(
        server.metric(
            "lastmile_cardinality_overflow_samples_by_metric_total{metric=\"attack_requests_total\",limit=\"max_series_per_metric\"}"
        ) as u64,
        wave1
    );
    assert_eq!(
        server.metric("lastmile_rules_series_dropped_total{reason=\"series_budget\"}") as u64,
        wave1 + wave2
    );
    assert_eq!(
        server.metric("lastmile_cardinality_tracked_series") as usize,
        MAX_SERIES
    );

    // The explorer: series per value of a label, growth, and which rule limits what.
    let focus = tsdb["seriesCountByFocusLabelValue"].as_array().unwrap();
    assert_eq!(focus.len(), 5);
    assert_eq!(focus[0]["value"], 1);
    let guard = &tsdb["cardinalityGuard"];
    assert_eq!(guard["limits"][0]["what"], "attack_requests_total");
    assert_eq!(
        guard["limits"][0]["rule"],
        "cardinality.max_series_per_metric"
    );
    assert_eq!(guard["limits"][0]["count"], wave1);
    assert_eq!(
        guard["growthLastHour"][0]["metric"],
        "attack_requests_total"
    );
    assert_eq!(
        guard["growthLastHour"][0]["createdLastHour"],
        ATTACK_BUDGET as u64
    );
    let st = server.get("/api/v1/status/rules").json()["data"].clone();
    assert_eq!(
        st["cardinality"]["totals"]["samplesOverflow"],
        wave1 + wave2
    );
    assert_eq!(st["stable"]["outcomes"]["seriesOverflow"], wave1 + wave2);
    let limited: Vec<&Value> = st["limits"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["rule"] == "cardinality.max_series")
        .collect();
    assert!(
        !limited.is_empty(),
        "the global budget shows as limiting: {}",
        st["limits"]
    );
}

#[test]
fn denied_labels_and_ids_in_paths_never_become_series() {
    let dir = TestDir::new();
    // No rules file: the defaults apply.
    let server = Lastmile::start(&dir);
    let t = now_ms();
    let body: Vec<_> = (0..1000)
        .map(|i| {
            let user = format!("{i}");
            let path = format!("/api/v1/orders/{}/items", 100_000 + i);
            series(
                &[
                    ("__name__", "http_requests_total"),
                    ("path", &path),
                    ("user_id", &user),
                    ("session_token", &user),
                ],
                &[(t + i as i64, 1.0)],
            )
        })
        .collect();
    let r = server.remote_write(&body, &[]);
    assert!(r.is_success(), "{}", r.text());
    let got = server.series("http_requests_total");
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0]["path"], "/api/v1/orders/{id}/items");
    assert!(!got[0].contains_key("user_id"));
    let tsdb = server.get("/api/v1/status/tsdb").json()["data"].clone();
    let limits = tsdb["cardinalityGuard"]["limits"].to_string();
    assert!(
        limits.contains("cardinality.deny_labels") && limits.contains("user_id"),
        "{limits}"
    );
    assert!(limits.contains("cardinality.path_labels"), "{limits}");
}
