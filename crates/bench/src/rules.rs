//! `lastmile bench rules`: what the rule engine costs, measured three ways.
//!
//! 1. **relabel**: nanoseconds per sample of the metric rules with N relabel rules, in
//!    process (one thread, the batch already decoded), next to the defaults alone; then end
//!    to end, the server CPU per sample that the same rules add to lastmile and to
//!    VictoriaMetrics (`-relabelConfig`) on the same remote-write load.
//! 2. **reload**: parse + validation + the file's tests + swap for a file of 1,000 rules, in
//!    process; then on a running lastmile, request latency while the file is reloaded over
//!    and over, next to the same load without reloads (a stalled request would show).
//! 3. **attack**: a cardinality attack (unique `user_id` values) against lastmile with
//!    `cardinality.max_series` and VictoriaMetrics with `-storage.maxHourlySeries` at the same
//!    budget: peak RSS, CPU, series kept.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use bytes::Bytes;
use clap::{Args, ValueEnum};
use lastmile_model::{OwnedSeries, Sample, WriteBatch};
use lastmile_receivers::remote_write::{EncodeSeries, encode_write_request};
use lastmile_rules::{Rules, RulesSource, StringArena};
use serde::Serialize;

use crate::load::{self, Request, Spec, Workload};
use crate::measure;
use crate::measure::wait_for_idle;
use crate::report::{self, Machine, human_bytes, si};
use crate::servers::http_client;
use crate::servers::{Server, ServerKind, StartOptions, lastmile_bin_or_self, which};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Part {
    Relabel,
    Reload,
    Attack,
}

/// Flags of `lastmile bench rules`.
#[derive(Args, Debug, Clone)]
#[command(
    after_help = "Parts: `relabel` = ns per sample of the metric rules with \
--relabel-rules relabel rules (in process, one thread, --series series per batch), and the \
server CPU per sample the same rules add end to end to lastmile and VictoriaMetrics \
(-relabelConfig) on --e2e-series × 5 rounds of remote write; `reload` = parse + validation + \
tests + swap of a --reload-rules file (in process, --reloads times), then request latency on a \
running lastmile with and without a reload every 500 ms; `attack` = --attack-series unique \
user_id values pushed to lastmile (cardinality.max_series = --budget) and VictoriaMetrics \
(-storage.maxHourlySeries = --budget): peak RSS (VmHWM), CPU seconds, series kept.\n\nThe rules are \
synthetic but ordinary: drops that do not match, captures from instance, hashmod shards, \
label maps and drops, using only actions both servers support. Progress goes to stderr, the \
table to stdout, all figures to a JSON file (--out). Build with --release first."
)]
pub struct RulesBenchArgs {
    /// Parts to run, comma-separated.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "relabel,reload,attack"
    )]
    pub parts: Vec<Part>,
    /// Servers for the end-to-end parts, comma-separated (Prometheus applies no rules to
    /// what it receives, so it has no place here).
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "lastmile,victoriametrics"
    )]
    pub servers: Vec<ServerKind>,
    /// Relabel rules in the relabel part.
    #[arg(long, default_value_t = 100, value_name = "N")]
    pub relabel_rules: usize,
    /// Series per batch in the in-process relabel measurement.
    #[arg(long, default_value_t = 100_000, value_name = "N")]
    pub series: u64,
    /// Series of the end-to-end relabel load (5 samples each).
    #[arg(long, default_value_t = 100_000, value_name = "N")]
    pub e2e_series: u64,
    /// Relabel rules in the file the reload part reloads.
    #[arg(long, default_value_t = 1000, value_name = "N")]
    pub reload_rules: usize,
    /// In-process reloads measured.
    #[arg(long, default_value_t = 20, value_name = "N")]
    pub reloads: usize,
    /// Seconds of load in each half (without, then with reloads) of the latency check.
    #[arg(long, default_value_t = 10, value_name = "SECONDS")]
    pub reload_load_secs: u64,
    /// Unique series of the attack.
    #[arg(long, default_value_t = 1_000_000, value_name = "N")]
    pub attack_series: u64,
    /// The series budget both servers get in the attack.
    #[arg(long, default_value_t = 20_000, value_name = "N")]
    pub budget: u64,
    /// Runs of each end-to-end measurement (fresh server each); the table shows medians.
    #[arg(long, default_value_t = 3, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=20))]
    pub repeat: u64,
    /// Where to write the JSON results. Default: bench-results/rules-<UTC timestamp>.json.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// The lastmile binary to measure. Default: this executable.
    #[arg(long, value_name = "PATH")]
    pub lastmile_bin: Option<PathBuf>,
    /// The VictoriaMetrics single-node binary.
    #[arg(long, default_value = "victoria-metrics", value_name = "PATH")]
    pub victoria_metrics_bin: PathBuf,
    /// Seconds a server may take to start.
    #[arg(long, default_value_t = 120, value_name = "SECONDS")]
    pub startup_timeout: u64,
    /// Before each end-to-end run, wait up to this many seconds for the machine to be idle
    /// (runs on a busy machine carry a warning). 0 disables the wait.
    #[arg(long, default_value_t = 120, value_name = "SECONDS")]
    pub idle_wait: u64,
    /// Keep each server's temporary directory.
    #[arg(long)]
    pub keep_data: bool,
}

/// Synthetic relabel rules, cycling through ten ordinary kinds. Only actions
/// VictoriaMetrics 1.79 shares with Prometheus, so both servers run the same file.
pub fn relabel_rules(n: usize) -> String {
    let mut s = String::new();
    for k in 0..n {
        let rule = match k % 10 {
            0 => format!("- source_labels: [__name__]\n  regex: 'debug_{k}_.*'\n  action: drop\n"),
            1 => "- source_labels: [instance]\n  regex: '([^:]+):(\\d+)'\n  target_label: host\n  replacement: '$1'\n".to_string(),
            2 => "- source_labels: [route]\n  regex: '/api/(v\\d+)/.*'\n  target_label: api_version\n".to_string(),
            3 => "- source_labels: [__name__]\n  regex: '.+'\n  action: keep\n".to_string(),
            4 => format!("- regex: 'tmp_{k}|scratch_{k}'\n  action: labeldrop\n"),
            5 => "- source_labels: [instance]\n  target_label: shard\n  modulus: 16\n  action: hashmod\n".to_string(),
            6 => "- source_labels: [namespace, job]\n  separator: '/'\n  regex: '(.+)/(.+)'\n  target_label: workload\n  replacement: '$1/$2'\n".to_string(),
            7 => format!("- source_labels: [status]\n  regex: '{}99'\n  action: drop\n", 6 + k % 3),
            8 => "- regex: 'meta_(.+)'\n  action: labelmap\n".to_string(),
            _ => "- source_labels: [method]\n  regex: 'GET|HEAD'\n  target_label: readonly\n  replacement: 'true'\n".to_string(),
        };
        s.push_str(&rule);
    }
    s
}

fn indent(list: &str) -> String {
    list.lines().map(|l| format!("  {l}\n")).collect::<String>()
}

/// A rules file with `n` relabel rules and ten tests of them (as an operator's file has).
/// The tests' expectations are what the rules make of their series; `variant` changes
/// the text so that a reload has something to do.
pub fn rules_file(n: usize, variant: u64) -> anyhow::Result<String> {
    let rules = indent(&relabel_rules(n));
    let engine = Rules::from_sources(vec![RulesSource::rules_file(
        "bench.yml",
        format!("metric_relabel_configs:\n{rules}"),
    )])
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut s = format!("# variant {variant}\nmetric_relabel_configs:\n{rules}tests:\n");
    for i in 0..10 {
        let input = format!("m_total{{instance=\"10.0.0.{i}:8080\", job=\"svc\", status=\"200\"}}");
        let labels = lastmile_rules::selector::parse_series(&input).map_err(anyhow::Error::msg)?;
        let owned = [OwnedSeries {
            labels,
            samples: vec![Sample { t: 0, v: 1.0 }],
            exemplars: Vec::new(),
        }];
        let arena = StringArena::new();
        let (out, _) = engine
            .current()
            .apply_metrics(WriteBatch::from_owned(&owned)?, &arena);
        let got = lastmile_model::Labels::from_pairs(
            out.series_labels(&out.series[0])
                .iter()
                .map(|l| (l.name, l.value)),
        );
        s.push_str(&format!(
            "  - name: series {i}\n    series: '{input}'\n    expect: '{got}'\n"
        ));
    }
    Ok(s)
}

fn median(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i.min(v.len() - 1)]
}

// ---------------------------------------------------------------------------------------
// Results

#[derive(Debug, Default, Serialize)]
pub struct RulesReport {
    pub started_at: String,
    pub machine: Option<Machine>,
    pub relabel: Vec<RelabelInProcess>,
    pub relabel_e2e: Vec<RelabelEndToEnd>,
    pub reload: Option<ReloadInProcess>,
    pub reload_latency: Option<ReloadLatency>,
    pub attack: Vec<AttackResult>,
    pub warnings: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct RelabelInProcess {
    pub rules: usize,
    pub series: u64,
    pub samples_per_series: u64,
    /// Median of 5 runs.
    pub ns_per_sample: f64,
    pub ns_per_series: f64,
    pub series_out: usize,
}

#[derive(Debug, Serialize)]
pub struct RelabelEndToEnd {
    pub server: ServerKind,
    pub rules: usize,
    pub samples: u64,
    /// Server CPU per sample, median of the runs.
    pub cpu_ns_per_sample: f64,
    pub runs: Vec<f64>,
    pub series_reported: u64,
}

#[derive(Debug, Serialize)]
pub struct ReloadInProcess {
    pub rules: usize,
    pub tests: usize,
    pub reloads: usize,
    pub median_ms: f64,
    pub p90_ms: f64,
    pub max_ms: f64,
}

#[derive(Debug, Serialize)]
pub struct LatencyPhase {
    pub requests: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub non_2xx: usize,
}

#[derive(Debug, Serialize)]
pub struct ReloadLatency {
    pub rules: usize,
    pub without_reloads: LatencyPhase,
    pub with_reloads: LatencyPhase,
    pub reloads: usize,
    pub reloads_failed: usize,
    /// Server-side reload duration (parse + validation + tests + swap).
    pub reload_median_ms: f64,
    pub reload_max_ms: f64,
}

#[derive(Debug, Serialize)]
pub struct AttackResult {
    pub server: ServerKind,
    pub budget: u64,
    pub attack_series: u64,
    pub runs: usize,
    pub idle_rss_bytes: f64,
    pub peak_rss_bytes: f64,
    pub cpu_seconds: f64,
    pub wall_seconds: f64,
    pub series_kept: u64,
    pub samples_acked: u64,
    pub warnings: Vec<String>,
}

pub async fn run(args: RulesBenchArgs) -> anyhow::Result<()> {
    let (started_at, out) = report::run_stamp("rules", &args.out);
    let mut report = RulesReport {
        started_at,
        machine: Some(Machine::probe()),
        ..Default::default()
    };
    let lastmile_bin = lastmile_bin_or_self(&args.lastmile_bin)?;
    let mut kinds = Vec::new();
    for k in &args.servers {
        if *k == ServerKind::Prometheus {
            eprintln!("skipping prometheus: it applies no rules to what it receives");
            continue;
        }
        let bin = match k {
            ServerKind::Lastmile => lastmile_bin.clone(),
            _ => args.victoria_metrics_bin.clone(),
        };
        match which(&bin) {
            Some(_) => {
                if !kinds.contains(k) {
                    kinds.push(*k)
                }
            }
            None => {
                let w = format!("skipping {}: {} not found", k.name(), bin.display());
                eprintln!("{w}");
                report.warnings.push(w);
            }
        }
    }
    let base = StartOptions {
        lastmile_bin,
        lastmile_config: None,
        victoria_metrics_bin: which(&args.victoria_metrics_bin)
            .unwrap_or_else(|| args.victoria_metrics_bin.clone()),
        prometheus_bin: PathBuf::from("prometheus"),
        startup_timeout: Duration::from_secs(args.startup_timeout),
        keep_data: args.keep_data,
        extra_args: Vec::new(),
    };
    let scratch = tempfile::Builder::new()
        .prefix("lastmile-bench-rules-")
        .tempdir()?;

    if args.parts.contains(&Part::Relabel) {
        eprintln!("== relabel: in process");
        for (rules, sps) in [
            (0usize, 1u64),
            (args.relabel_rules, 1),
            (args.relabel_rules, 10),
        ] {
            let r = relabel_in_process(rules, args.series, sps)?;
            eprintln!(
                "   {rules} rules, {sps} samples/series: {:.1} ns/sample",
                r.ns_per_sample
            );
            report.relabel.push(r);
        }
        eprintln!("== relabel: end to end");
        for &kind in &kinds {
            for rules in [0, args.relabel_rules] {
                let r = relabel_end_to_end(
                    kind,
                    rules,
                    &args,
                    &base,
                    scratch.path(),
                    &mut report.warnings,
                )
                .await?;
                eprintln!(
                    "   {} with {rules} rules: {:.0} CPU ns/sample",
                    kind.name(),
                    r.cpu_ns_per_sample
                );
                report.relabel_e2e.push(r);
            }
        }
    }
    if args.parts.contains(&Part::Reload) {
        eprintln!("== reload: in process");
        let r = reload_in_process(args.reload_rules, args.reloads, scratch.path())?;
        eprintln!(
            "   {} rules: median {:.1} ms, max {:.1} ms",
            r.rules, r.median_ms, r.max_ms
        );
        report.reload = Some(r);
        if kinds.contains(&ServerKind::Lastmile) {
            eprintln!("== reload: request latency on a running lastmile");
            report.reload_latency =
                Some(reload_latency(&args, &base, scratch.path(), &mut report.warnings).await?);
        }
    }
    if args.parts.contains(&Part::Attack) {
        eprintln!(
            "== attack: {} unique series, budget {}",
            args.attack_series, args.budget
        );
        let work = Arc::new(attack_workload(args.attack_series));
        for &kind in &kinds {
            let r = attack(kind, &args, &base, scratch.path(), work.clone()).await?;
            eprintln!(
                "   {}: peak RSS {}, {} series kept",
                kind.name(),
                human_bytes(r.peak_rss_bytes),
                r.series_kept
            );
            report.attack.push(r);
        }
    }
    println!("{}", render(&report));
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&out, serde_json::to_vec_pretty(&report)?)
        .with_context(|| format!("cannot write {}", out.display()))?;
    eprintln!("results written to {}", out.display());
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Relabel

fn relabel_in_process(rules: usize, series: u64, sps: u64) -> anyhow::Result<RelabelInProcess> {
    let engine = if rules == 0 {
        Rules::defaults()
    } else {
        Rules::from_sources(vec![RulesSource::rules_file(
            "bench.yml",
            format!("metric_relabel_configs:\n{}", indent(&relabel_rules(rules))),
        )])
        .map_err(|e| anyhow::anyhow!("{e}"))?
    };
    let owned: Vec<OwnedSeries> = (0..series)
        .map(|i| OwnedSeries {
            labels: load::series_labels(1, i),
            samples: (0..sps as i64)
                .map(|j| Sample {
                    t: 1_700_000_000_000 + j * 15_000,
                    v: j as f64,
                })
                .collect(),
            exemplars: Vec::new(),
        })
        .collect();
    let mut times = Vec::new();
    let mut series_out = 0;
    for _ in 0..5 {
        let batch = WriteBatch::from_owned(&owned)?;
        let arena = StringArena::new();
        let snap = engine.current();
        let started = Instant::now();
        let (out, _) = snap.apply_metrics(batch, &arena);
        let took = started.elapsed().as_secs_f64();
        series_out = std::hint::black_box(out.series.len());
        times.push(took);
    }
    let t = median(&mut times);
    Ok(RelabelInProcess {
        rules,
        series,
        samples_per_series: sps,
        ns_per_sample: t * 1e9 / (series * sps) as f64,
        ns_per_series: t * 1e9 / series as f64,
        series_out,
    })
}

async fn maybe_wait_idle(args: &RulesBenchArgs, what: &str, warnings: &mut Vec<String>) {
    if args.idle_wait > 0
        && let Err(busy) = wait_for_idle(Duration::from_secs(args.idle_wait)).await
    {
        let w = format!("{what}: started on a busy machine (others used {busy:.2} cores)");
        eprintln!("   warning: {w}");
        warnings.push(w);
    }
}

async fn relabel_end_to_end(
    kind: ServerKind,
    rules: usize,
    args: &RulesBenchArgs,
    base: &StartOptions,
    scratch: &Path,
    warnings: &mut Vec<String>,
) -> anyhow::Result<RelabelEndToEnd> {
    let now_ms = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis() as i64;
    let spec = Spec {
        name: "steady",
        series: args.e2e_series,
        rounds: 5,
        samples_per_request: 1,
        interval_ms: 15_000,
        batch: 2000,
        connections: 2,
        seed: 1,
        end_ms: now_ms,
    };
    let work = Arc::new(load::build(&spec));
    let list = relabel_rules(rules);
    let mut opts = base.clone();
    match kind {
        ServerKind::Lastmile => {
            let cfg = scratch.join(format!("lastmile-relabel-{rules}.yml"));
            std::fs::write(&cfg, format!("metric_relabel_configs:\n{}", indent(&list)))?;
            opts.lastmile_config = Some(cfg);
        }
        _ if rules > 0 => {
            let cfg = scratch.join(format!("vm-relabel-{rules}.yml"));
            std::fs::write(&cfg, &list)?;
            opts.extra_args = vec![format!("-relabelConfig={}", cfg.display())];
        }
        _ => {}
    }
    let client = http_client(2, Duration::from_secs(120))?;
    let mut runs = Vec::new();
    let mut series_reported = 0;
    for run in 0..args.repeat {
        maybe_wait_idle(
            args,
            &format!("{} relabel run {run}", kind.name()),
            warnings,
        )
        .await;
        let server = Server::start(kind, &opts, &client).await?;
        let url = format!("{}{}", server.base_url, kind.write_path());
        let cpu0 = measure::cpu_seconds(server.pid)?;
        let outcome = load::send(
            &client,
            &url,
            work.clone(),
            Duration::from_secs(1800),
            Duration::from_secs(10),
            |_, _| {},
        )
        .await;
        let cpu = measure::cpu_seconds(server.pid)? - cpu0;
        if outcome.incomplete || outcome.non_2xx > 0 || outcome.transport_errors > 0 {
            bail!(
                "{} did not take the load: {:?}",
                kind.name(),
                outcome.errors
            );
        }
        series_reported = server.head_counts(&client).await?.series;
        runs.push(cpu * 1e9 / work.spec.total_samples() as f64);
    }
    let mut r = runs.clone();
    Ok(RelabelEndToEnd {
        server: kind,
        rules,
        samples: work.spec.total_samples(),
        cpu_ns_per_sample: median(&mut r),
        runs,
        series_reported,
    })
}

// ---------------------------------------------------------------------------------------
// Reload

fn reload_in_process(n: usize, reloads: usize, scratch: &Path) -> anyhow::Result<ReloadInProcess> {
    let path = scratch.join("reload-rules.yml");
    let variants = [rules_file(n, 0)?, rules_file(n, 1)?];
    std::fs::write(&path, &variants[0])?;
    let p = path.clone();
    let engine = Rules::load(Box::new(move || {
        let text = std::fs::read_to_string(&p)
            .map_err(|e| lastmile_rules::LoadError::in_file("reload-rules.yml", e.to_string()))?;
        Ok(vec![RulesSource::rules_file("reload-rules.yml", text)])
    }))
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut times = Vec::new();
    for i in 0..reloads {
        std::fs::write(&path, &variants[(i + 1) % 2])?;
        let started = Instant::now();
        engine.reload().map_err(|e| anyhow::anyhow!("{e}"))?;
        times.push(started.elapsed().as_secs_f64() * 1e3);
    }
    let max = times.iter().cloned().fold(0.0, f64::max);
    Ok(ReloadInProcess {
        rules: n,
        tests: 10,
        reloads,
        median_ms: median(&mut times.clone()),
        p90_ms: percentile(&mut times, 0.9),
        max_ms: max,
    })
}

async fn reload_latency(
    args: &RulesBenchArgs,
    base: &StartOptions,
    scratch: &Path,
    warnings: &mut Vec<String>,
) -> anyhow::Result<ReloadLatency> {
    let dir = scratch.join("reload-server");
    std::fs::create_dir_all(&dir)?;
    let rules_path = dir.join("rules.yml");
    let variants = [
        rules_file(args.reload_rules, 0)?,
        rules_file(args.reload_rules, 1)?,
    ];
    std::fs::write(&rules_path, &variants[0])?;
    let cfg = dir.join("config.yml");
    std::fs::write(&cfg, "rule_files: [rules.yml]\n")?;
    let mut opts = base.clone();
    opts.lastmile_config = Some(cfg);
    maybe_wait_idle(args, "reload latency", warnings).await;
    let client = http_client(4, Duration::from_secs(60))?;
    let server = Server::start(ServerKind::Lastmile, &opts, &client).await?;
    let url = format!("{}/api/v1/write", server.base_url);
    let phase = Duration::from_secs(args.reload_load_secs);

    let push = |client: reqwest::Client, url: String, until: Instant, conn: u64| async move {
        let mut lat = Vec::new();
        let mut non_2xx = 0;
        let mut round = 0i64;
        while Instant::now() < until {
            let t = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_millis() as i64;
            let series: Vec<EncodeSeries> = (0..200u64)
                .map(|i| EncodeSeries {
                    labels: load::series_labels(conn + 1, i),
                    samples: vec![(t + round, round as f64)],
                    exemplars: vec![],
                })
                .collect();
            round += 1;
            let body = snap::raw::Encoder::new()
                .compress_vec(&encode_write_request(&series, &[]))
                .unwrap_or_default();
            let started = Instant::now();
            let r = client
                .post(&url)
                .header("Content-Encoding", "snappy")
                .header("Content-Type", "application/x-protobuf")
                .body(body)
                .send()
                .await;
            match r {
                Ok(r) => {
                    let ok = r.status().is_success();
                    let _ = r.bytes().await;
                    if !ok {
                        non_2xx += 1;
                    }
                }
                Err(_) => non_2xx += 1,
            }
            lat.push(started.elapsed().as_secs_f64() * 1e3);
        }
        (lat, non_2xx)
    };
    let measure_phase = |reloading: bool| {
        let client = client.clone();
        let url = url.clone();
        let base_url = server.base_url.clone();
        let rules_path = rules_path.clone();
        let variants = variants.clone();
        async move {
            let until = Instant::now() + phase;
            let a = tokio::spawn(push(client.clone(), url.clone(), until, 0));
            let b = tokio::spawn(push(client.clone(), url.clone(), until, 1));
            let mut reload_ms = Vec::new();
            let mut failed = 0;
            if reloading {
                let mut i = 0usize;
                while Instant::now() < until {
                    i += 1;
                    std::fs::write(&rules_path, &variants[i % 2]).ok();
                    let r = client.post(format!("{base_url}/-/reload")).send().await;
                    match r {
                        Ok(r) if r.status().is_success() => {
                            let _ = r.bytes().await;
                            let body = client
                                .get(format!("{base_url}/api/v1/status/rules"))
                                .send()
                                .await?
                                .bytes()
                                .await?;
                            let st: serde_json::Value = serde_json::from_slice(&body)?;
                            if let Some(s) = st
                                .pointer("/data/lastReload/durationSeconds")
                                .and_then(|v| v.as_f64())
                            {
                                reload_ms.push(s * 1e3);
                            }
                        }
                        _ => failed += 1,
                    }
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
            let (mut la, na) = a.await?;
            let (lb, nb) = b.await?;
            la.extend(lb);
            anyhow::Ok((la, na + nb, reload_ms, failed))
        }
    };
    let (mut quiet, quiet_errors, _, _) = measure_phase(false).await?;
    let (mut busy, busy_errors, mut reload_ms, failed) = measure_phase(true).await?;
    let phase_of = |v: &mut Vec<f64>, errors: usize| LatencyPhase {
        requests: v.len(),
        p50_ms: percentile(v, 0.5),
        p99_ms: percentile(v, 0.99),
        max_ms: v.iter().cloned().fold(0.0, f64::max),
        non_2xx: errors,
    };
    let reloads = reload_ms.len();
    let reload_max = reload_ms.iter().cloned().fold(0.0, f64::max);
    drop(server);
    Ok(ReloadLatency {
        rules: args.reload_rules,
        without_reloads: phase_of(&mut quiet, quiet_errors),
        with_reloads: phase_of(&mut busy, busy_errors),
        reloads,
        reloads_failed: failed,
        reload_median_ms: median(&mut reload_ms),
        reload_max_ms: reload_max,
    })
}

// ---------------------------------------------------------------------------------------
// Attack

const ATTACK_PER_REQUEST: u64 = 10_000;

fn attack_workload(series: u64) -> Workload {
    let started = Instant::now();
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    let mut queues: Vec<Vec<Request>> = vec![Vec::new(), Vec::new()];
    let (mut raw_bytes, mut body_bytes) = (0u64, 0u64);
    let mut r = 0usize;
    let mut first = 0;
    while first < series {
        let n = ATTACK_PER_REQUEST.min(series - first);
        let batch: Vec<EncodeSeries> = (first..first + n)
            .map(|i| EncodeSeries {
                labels: vec![
                    ("__name__".into(), "attack_requests_total".into()),
                    ("instance".into(), "10.0.0.1:8080".into()),
                    ("job".into(), "bot".into()),
                    ("user_id".into(), format!("u{i:09}")),
                ],
                samples: vec![(now_ms, 1.0)],
                exemplars: vec![],
            })
            .collect();
        let raw = encode_write_request(&batch, &[]);
        let body = snap::raw::Encoder::new()
            .compress_vec(&raw)
            .unwrap_or_default();
        raw_bytes += raw.len() as u64;
        body_bytes += body.len() as u64;
        queues[r % 2].push(Request {
            body: Bytes::from(body),
            samples: n as u32,
        });
        r += 1;
        first += n;
    }
    Workload {
        spec: Spec {
            name: "attack",
            series,
            rounds: 1,
            samples_per_request: 1,
            interval_ms: 15_000,
            batch: ATTACK_PER_REQUEST,
            connections: 2,
            seed: 1,
            end_ms: now_ms,
        },
        queues,
        requests: r as u64,
        raw_bytes,
        body_bytes,
        first_ts_ms: now_ms,
        last_ts_ms: now_ms,
        build_secs: started.elapsed().as_secs_f64(),
    }
}

async fn attack(
    kind: ServerKind,
    args: &RulesBenchArgs,
    base: &StartOptions,
    scratch: &Path,
    work: Arc<Workload>,
) -> anyhow::Result<AttackResult> {
    let mut opts = base.clone();
    match kind {
        ServerKind::Lastmile => {
            let cfg = scratch.join("lastmile-attack.yml");
            std::fs::write(
                &cfg,
                format!(
                    "cardinality:\n  # the attack label is allowed so the budget does the work\n  deny_labels: []\n  max_series: {}\n",
                    args.budget
                ),
            )?;
            opts.lastmile_config = Some(cfg);
        }
        _ => opts.extra_args = vec![format!("-storage.maxHourlySeries={}", args.budget)],
    }
    let client = http_client(2, Duration::from_secs(120))?;
    let mut warnings = Vec::new();
    let (mut idle, mut peak, mut cpu, mut wall) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut kept = 0;
    let mut acked = 0;
    for run in 0..args.repeat {
        maybe_wait_idle(
            args,
            &format!("{} attack run {run}", kind.name()),
            &mut warnings,
        )
        .await;
        let server = Server::start(kind, &opts, &client).await?;
        idle.push(measure::memory(server.pid)?.rss as f64);
        let url = format!("{}{}", server.base_url, kind.write_path());
        let cpu0 = measure::cpu_seconds(server.pid)?;
        let outcome = load::send(
            &client,
            &url,
            work.clone(),
            Duration::from_secs(1800),
            Duration::from_secs(10),
            |c, t| {
                eprintln!(
                    "     {:>5.0}s {} requests",
                    t.as_secs_f64(),
                    c.requests_done.load(std::sync::atomic::Ordering::Relaxed)
                );
            },
        )
        .await;
        cpu.push(measure::cpu_seconds(server.pid)? - cpu0);
        wall.push(outcome.wall_secs);
        peak.push(measure::memory(server.pid)?.peak_rss as f64);
        if outcome.non_2xx > 0 || outcome.transport_errors > 0 || outcome.incomplete {
            bail!(
                "{} failed under the attack: {:?}",
                kind.name(),
                outcome.errors
            );
        }
        acked = outcome.samples_acked;
        kept = server.head_counts(&client).await?.series;
    }
    Ok(AttackResult {
        server: kind,
        budget: args.budget,
        attack_series: work.spec.series,
        runs: args.repeat as usize,
        idle_rss_bytes: median(&mut idle),
        peak_rss_bytes: median(&mut peak),
        cpu_seconds: median(&mut cpu),
        wall_seconds: median(&mut wall),
        series_kept: kept,
        samples_acked: acked,
        warnings,
    })
}

// ---------------------------------------------------------------------------------------
// Table

fn render(r: &RulesReport) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    if !r.relabel.is_empty() {
        let _ = writeln!(s, "\nrelabel, in process (one thread, median of 5)");
        let _ = writeln!(
            s,
            "{:>7} {:>10} {:>14} {:>14}",
            "rules", "samples/s.", "ns/sample", "ns/series"
        );
        for x in &r.relabel {
            let _ = writeln!(
                s,
                "{:>7} {:>10} {:>14.1} {:>14.1}",
                x.rules, x.samples_per_series, x.ns_per_sample, x.ns_per_series
            );
        }
    }
    if !r.relabel_e2e.is_empty() {
        let _ = writeln!(s, "\nrelabel, end to end: server CPU per sample (median)");
        for x in &r.relabel_e2e {
            let _ = writeln!(
                s,
                "{:>16} {:>4} rules  {:>8.0} ns/sample  ({} series reported)",
                x.server.name(),
                x.rules,
                x.cpu_ns_per_sample,
                x.series_reported
            );
        }
        for kind in [ServerKind::Lastmile, ServerKind::Victoriametrics] {
            let of = |rules: usize| {
                r.relabel_e2e
                    .iter()
                    .find(|x| x.server == kind && (x.rules == 0) == (rules == 0))
            };
            if let (Some(a), Some(b)) = (of(0), of(1)) {
                let _ = writeln!(
                    s,
                    "{:>16} the rules add {:.0} ns of server CPU per sample",
                    kind.name(),
                    b.cpu_ns_per_sample - a.cpu_ns_per_sample
                );
            }
        }
    }
    if let Some(x) = &r.reload {
        let _ = writeln!(
            s,
            "\nreload, in process: {} rules + {} tests, {} reloads: median {:.1} ms, p90 {:.1} ms, max {:.1} ms (parse + validation + tests + swap)",
            x.rules, x.tests, x.reloads, x.median_ms, x.p90_ms, x.max_ms
        );
    }
    if let Some(x) = &r.reload_latency {
        let _ = writeln!(
            s,
            "reload on a running lastmile ({} rules): {} reloads ({} failed), server-side median {:.1} ms, max {:.1} ms",
            x.rules, x.reloads, x.reloads_failed, x.reload_median_ms, x.reload_max_ms
        );
        for (name, p) in [
            ("without reloads", &x.without_reloads),
            ("with reloads", &x.with_reloads),
        ] {
            let _ = writeln!(
                s,
                "  push latency {name:>16}: {} requests, p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms, {} not 2xx",
                p.requests, p.p50_ms, p.p99_ms, p.max_ms, p.non_2xx
            );
        }
    }
    if !r.attack.is_empty() {
        let _ = writeln!(s, "\ncardinality attack (medians of runs)");
        let _ = writeln!(
            s,
            "{:>16} {:>9} {:>10} {:>11} {:>11} {:>9} {:>9} {:>12}",
            "server", "budget", "attack", "idle RSS", "peak RSS", "CPU s", "wall s", "series kept"
        );
        for x in &r.attack {
            let _ = writeln!(
                s,
                "{:>16} {:>9} {:>10} {:>11} {:>11} {:>9.1} {:>9.1} {:>12}",
                x.server.name(),
                x.budget,
                si(x.attack_series as f64),
                human_bytes(x.idle_rss_bytes),
                human_bytes(x.peak_rss_bytes),
                x.cpu_seconds,
                x.wall_seconds,
                x.series_kept
            );
        }
    }
    for w in &r.warnings {
        let _ = writeln!(s, "warning: {w}");
    }
    s
}
