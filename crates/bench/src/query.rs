//! `lastmile bench query`: the same history of HTTP latency histograms in lastmile,
//! VictoriaMetrics and Prometheus, checked to be identical, then a fixed set of dashboard
//! queries timed on each.
//!
//! Steps: start each server and load it (one at a time, each alone on the machine) with
//! the [`fleet`](crate::fleet) history, slice by slice in global time order; wait until
//! every server has settled (persisted its head, finished background work); ask each
//! server questions whose answers the generator knows exactly (series count, samples and
//! counter sums per time window) — a server whose data differs is reported and not timed;
//! then time every query on every server, round-robin, after warm-up runs.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use clap::Args;
use serde::Serialize;
use serde_json::Value as Json;

use crate::fleet::{
    BUCKET_METRIC, COMBOS_PER_INSTANCE, COUNT_METRIC, Fleet, FleetSpec, SERIES_PER_INSTANCE,
    SUM_METRIC, Slice, job_name,
};
use crate::load;
use crate::measure;
use crate::report::{self, Machine, Skipped, human_bytes, median, si, table};
use crate::servers::{
    Server, ServerKind, StartOptions, check_status, http_client, lastmile_bin_or_self,
    resolve_servers, truncate,
};

/// Flags of `lastmile bench query`.
#[derive(Args, Debug, Clone)]
#[command(
    after_help = "What it does: starts each chosen server (fresh temporary data directory, free \
loopback port) and loads it, one at a time, with the same history: a fleet of Go HTTP services \
exposing the classic latency histogram http_request_duration_seconds_bucket{le, method, route, \
status, job, instance} (client_golang's 11 default buckets and +Inf) with _sum and _count: 504 \
series per instance (12 endpoints × 3 statuses × 14), 10 instances per job, one sample per \
series per --interval over --history, with a daily traffic curve and counter resets. History \
goes by remote write in slices of --slice, each slice complete on every connection before the \
next starts, so the load stays in global time order (Prometheus refuses samples over an hour \
behind its newest one).\n\n\
All servers stay up. Once each has settled (lastmile and Prometheus: head persisted down to \
at most 3 h; VictoriaMetrics: flushed) and the machine is idle, every server must give the \
generator's exact answers to: the number of series, and per time window the number of \
samples (count_over_time) and the sum of all bucket and _count values (sum_over_time). A \
server that differs is reported and not timed.\n\n\
Queries, evaluated at the end of the data (range queries: over the whole --history at a 60 s \
step):\n\
  rps_by_job          sum by (job) (rate(http_request_duration_seconds_count[5m]))\n\
  p99_by_route        histogram_quantile(0.99, sum by (le, route) (rate(…_bucket[5m])))\n\
  topk_errors         topk(10, sum by (job, instance) (rate(…_count{status=\"500\"}[5m])))\n\
  regex_count         count by (job) ({__name__=~\"…_(bucket|count)\", route=~\"/api/v1/.+\", status=~\"2..|5..\"})\n\
  rps_by_job_range    rps_by_job as a range query\n\
  p99_one_job_range   histogram_quantile(0.99, sum by (le) (rate(…_bucket{job=\"api-gateway\"}[5m]))), range\n\n\
Each query first runs --warmup times per server (not timed: caches warm up as on a dashboard \
that refreshes), then --runs times per server, round-robin. Latency is the client's wall \
time from sending the request to the last byte of the answer. The table shows the median \
and p99 (nearest rank: with fewer than 100 runs, the slowest run) and lastmile's median \
divided by each peer's (below 1 = lastmile faster). A second table shows each server's CPU \
time per query (from /proc), which unlike wall time is not inflated by a busy machine. \
lastmile's answers are also compared with Prometheus's (values within 1e-9). VictoriaMetrics runs with -search.disableCache, \
so it computes every answer.\n\n\
Progress goes to stderr, the table to stdout, all figures (every run) to a JSON file (--out). \
The exit status is non-zero if a server's data differed or a query failed. Build with \
--release first; the defaults (100k series × 24 h at 60 s = 145M samples) load in minutes \
per server on two cores."
)]
pub struct QueryArgs {
    /// Servers to compare, comma-separated. A peer whose binary is missing is reported
    /// and skipped.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "lastmile,victoriametrics,prometheus"
    )]
    pub servers: Vec<ServerKind>,

    /// Number of series, rounded up to whole instances (504 series each).
    #[arg(long, default_value_t = 100_000, value_name = "N")]
    pub series: u64,

    /// How much history to load (and the window of the range queries), e.g. 24h, 6h.
    #[arg(long, default_value = "24h", value_parser = parse_duration_arg, value_name = "DURATION")]
    pub history: Duration,

    /// Scrape interval: one sample per series per interval (whole seconds, 1s to 2m).
    #[arg(long, default_value = "60s", value_parser = parse_duration_arg, value_name = "DURATION")]
    pub interval: Duration,

    /// History sent per slice (each slice is complete before the next starts); at most
    /// 30m, so the load stays well within Prometheus's one-hour append window.
    #[arg(long, default_value = "10m", value_parser = parse_duration_arg, value_name = "DURATION")]
    pub slice: Duration,

    /// Series per remote-write request (each carries the slice's samples of its series).
    #[arg(long, default_value_t = 1000, value_name = "N")]
    pub batch: u64,

    /// Concurrent connections while loading.
    #[arg(long, default_value_t = 4, value_name = "N")]
    pub connections: usize,

    /// Timed runs per query and server.
    #[arg(long, default_value_t = 20, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub runs: u64,

    /// Untimed runs per query and server before the timed ones.
    #[arg(long, default_value_t = 2, value_name = "N")]
    pub warmup: u64,

    /// Only these queries (names as listed below), comma-separated. Default: all.
    #[arg(long, value_delimiter = ',', value_name = "NAMES")]
    pub queries: Vec<String>,

    /// Seed of the data generator; the same seed gives the same samples.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,

    /// Where to write the JSON results. Default: bench-results/query-<UTC timestamp>.json.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,

    /// The lastmile binary to measure. Default: this executable.
    #[arg(long, value_name = "PATH")]
    pub lastmile_bin: Option<PathBuf>,

    /// Configuration file passed to `lastmile serve --config`.
    #[arg(long, value_name = "FILE")]
    pub lastmile_config: Option<PathBuf>,

    /// The VictoriaMetrics single-node binary (a name is looked up on PATH).
    #[arg(long, default_value = "victoria-metrics", value_name = "PATH")]
    pub victoria_metrics_bin: PathBuf,

    /// The Prometheus binary (a name is looked up on PATH); ≥ 2.33 for the remote-write
    /// receiver.
    #[arg(long, default_value = "prometheus", value_name = "PATH")]
    pub prometheus_bin: PathBuf,

    /// Seconds a server may take to start and answer its readiness endpoint.
    #[arg(long, default_value_t = 120, value_name = "SECONDS")]
    pub startup_timeout: u64,

    /// Seconds one server may take to load the whole history.
    #[arg(long, default_value_t = 3600, value_name = "SECONDS")]
    pub load_timeout: u64,

    /// Seconds one request (a write or a query) may take.
    #[arg(long, default_value_t = 300, value_name = "SECONDS")]
    pub request_timeout: u64,

    /// Seconds a server may take to settle after its load (persist its head).
    #[arg(long, default_value_t = 900, value_name = "SECONDS")]
    pub settle_timeout: u64,

    /// Before each load and each query, wait up to this many seconds for the machine to be
    /// idle (a 2-second window with under 0.15 cores busy, the servers' background work
    /// included); measurements on a busy machine carry a warning. 0 disables the wait.
    #[arg(long, default_value_t = 600, value_name = "SECONDS")]
    pub idle_wait: u64,

    /// Keep each server's temporary directory instead of deleting it.
    #[arg(long)]
    pub keep_data: bool,
}

fn parse_duration_arg(s: &str) -> Result<Duration, String> {
    lastmile_model::duration::parse_duration(s).map_err(|e| e.to_string())
}

const STEP_MS: i64 = 60_000;
const HOUR_MS: i64 = 3_600_000;
/// Most samples one check query may touch (Prometheus refuses queries over 50M).
const CHECK_SAMPLES: u64 = 20_000_000;
const PROGRESS_EVERY: Duration = Duration::from_secs(5);
const ALL_METRICS: &str = "http_request_duration_seconds_(bucket|sum|count)";
const COUNTER_METRICS: &str = "http_request_duration_seconds_(bucket|count)";

/// One benchmark query.
#[derive(Clone, Debug, Serialize)]
pub struct QueryDef {
    pub name: &'static str,
    pub expr: String,
    /// Instant: evaluation time; range: end.
    pub time_ms: i64,
    /// Range queries: start and step.
    pub range: Option<(i64, i64)>,
}

/// The fixed dashboard queries for this data.
pub fn dashboard_queries(spec: &FleetSpec, history_ms: i64) -> Vec<QueryDef> {
    let t = spec.end_ms;
    let instant = |name, expr: String| QueryDef {
        name,
        expr,
        time_ms: t,
        range: None,
    };
    let range = |name, expr: String| QueryDef {
        name,
        expr,
        time_ms: t,
        range: Some((t - history_ms, STEP_MS)),
    };
    let rps = format!("sum by (job) (rate({COUNT_METRIC}[5m]))");
    vec![
        instant("rps_by_job", rps.clone()),
        instant(
            "p99_by_route",
            format!("histogram_quantile(0.99, sum by (le, route) (rate({BUCKET_METRIC}[5m])))"),
        ),
        instant(
            "topk_errors",
            format!(
                "topk(10, sum by (job, instance) (rate({COUNT_METRIC}{{status=\"500\"}}[5m])))"
            ),
        ),
        instant(
            "regex_count",
            format!(
                "count by (job) ({{__name__=~\"{COUNTER_METRICS}\", route=~\"/api/v1/.+\", status=~\"2..|5..\"}})"
            ),
        ),
        range("rps_by_job_range", rps),
        range(
            "p99_one_job_range",
            format!(
                "histogram_quantile(0.99, sum by (le) (rate({BUCKET_METRIC}{{job=\"{}\"}}[5m])))",
                job_name(0)
            ),
        ),
    ]
}

/// A question about the loaded data whose answer the generator knows.
#[derive(Clone, Debug, Serialize)]
pub struct Check {
    pub what: String,
    pub expr: String,
    pub time_ms: i64,
    pub expected: f64,
}

/// Series count, then per time window (each at most [`CHECK_SAMPLES`] samples) the
/// number of samples and the sum of the counters. `round_sums[r]` is the sum of all bucket
/// and `_count` values of round `r`. Windows end half a second past a whole second, so no
/// sample sits on a boundary (where servers differ on inclusion).
pub fn data_checks(spec: &FleetSpec, round_sums: &[f64]) -> Vec<Check> {
    let mut out = vec![Check {
        what: "series".into(),
        expr: format!("count({{__name__=~\"{ALL_METRICS}\"}})"),
        time_ms: spec.end_ms,
        expected: spec.series() as f64,
    }];
    let per_window = (CHECK_SAMPLES / spec.series().max(1)).clamp(1, spec.rounds.max(1));
    let window_s = per_window as i64 * spec.interval_ms / 1000;
    let mut newest = spec.rounds;
    let mut j = 0;
    while newest > 0 {
        let oldest = newest.saturating_sub(per_window);
        let t = spec.end_ms + 500 - j * per_window as i64 * spec.interval_ms;
        let rounds = newest - oldest;
        // One term per metric: `_over_time` drops the name, and `_sum` and `_count`
        // series would then share label sets.
        let terms = |f: &str, metrics: &[&str]| {
            metrics
                .iter()
                .map(|m| format!("sum({f}({m}[{window_s}s]))"))
                .collect::<Vec<_>>()
                .join(" + ")
        };
        out.push(Check {
            what: format!("samples in window {}", j + 1),
            expr: terms(
                "count_over_time",
                &[BUCKET_METRIC, SUM_METRIC, COUNT_METRIC],
            ),
            time_ms: t,
            expected: (spec.series() * rounds) as f64,
        });
        out.push(Check {
            what: format!("counter sum in window {}", j + 1),
            expr: terms("sum_over_time", &[BUCKET_METRIC, COUNT_METRIC]),
            time_ms: t,
            expected: round_sums[oldest as usize..newest as usize].iter().sum(),
        });
        newest = oldest;
        j += 1;
    }
    out
}

/// How a server's load went.
#[derive(Clone, Debug, Default, Serialize)]
pub struct LoadSummary {
    pub wall_secs: f64,
    pub samples_acked: u64,
    pub requests: u64,
    pub failed_requests: u64,
    pub samples_not_written: u64,
    pub errors: Vec<String>,
    pub server_cpu_secs: f64,
    pub generator_cpu_secs: f64,
    pub peak_rss_bytes: u64,
    pub body_bytes: u64,
    pub complete: bool,
}

#[derive(Clone, Debug, Serialize)]
pub struct CheckResult {
    pub what: String,
    pub expected: f64,
    pub got: Option<f64>,
    pub error: Option<String>,
}

/// One server through the benchmark.
#[derive(Debug, Serialize)]
pub struct ServerRun {
    pub server: ServerKind,
    pub version: String,
    pub load: Option<LoadSummary>,
    /// Seconds from the end of the load until settled.
    pub settle_secs: Option<f64>,
    pub checks: Vec<CheckResult>,
    /// Loaded and answered every check correctly: timed.
    pub data_ok: bool,
    pub problems: Vec<String>,
    pub warnings: Vec<String>,
    /// RSS after settling.
    pub rss_bytes: Option<u64>,
}

/// One server on one query.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Timing {
    pub server: Option<ServerKind>,
    pub median_secs: Option<f64>,
    pub p99_secs: Option<f64>,
    pub min_secs: Option<f64>,
    /// The first (cold) warm-up run.
    pub first_secs: Option<f64>,
    /// Server CPU seconds per timed run (mean; /proc ticks are 10 ms).
    pub cpu_secs_per_run: Option<f64>,
    /// Series in the answer.
    pub result_series: Option<usize>,
    pub response_bytes: Option<usize>,
    /// Every timed run, in order.
    pub runs_secs: Vec<f64>,
    pub problems: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct Ratio {
    pub peer: ServerKind,
    /// lastmile's median latency / the peer's (below 1: lastmile is faster).
    pub median: Option<f64>,
    pub p99: Option<f64>,
}

#[derive(Debug, Serialize)]
pub struct QueryOutcome {
    pub query: QueryDef,
    pub timings: Vec<Timing>,
    pub ratios: Vec<Ratio>,
    /// lastmile's answer compared with Prometheus's: None if either is missing.
    pub lastmile_matches_prometheus: Option<bool>,
    pub mismatch: Option<String>,
    pub warnings: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct QueryReport {
    pub benchmark: &'static str,
    pub started_at: String,
    pub machine: Machine,
    pub data: FleetSpec,
    pub description: String,
    pub series: u64,
    pub samples: u64,
    pub runs: u64,
    pub warmup: u64,
    pub skipped: Vec<Skipped>,
    pub servers: Vec<ServerRun>,
    pub checks: Vec<Check>,
    pub queries: Vec<QueryOutcome>,
}

/// Runs the benchmark; Ctrl-C or SIGTERM stops it and the servers with it.
pub async fn run(args: QueryArgs) -> anyhow::Result<()> {
    tokio::select! {
        r = run_all(args) => r,
        signal = crate::interrupted() => bail!("interrupted by {signal}; the servers were stopped"),
    }
}

fn validate(args: &QueryArgs) -> anyhow::Result<()> {
    let ms = |d: Duration| d.as_millis() as i64;
    if args.series == 0 || args.batch == 0 || args.connections == 0 {
        bail!("--series, --batch and --connections must be at least 1");
    }
    if ms(args.interval) % 1000 != 0 || args.interval < Duration::from_secs(1) {
        bail!("--interval must be a whole number of seconds");
    }
    if args.interval > Duration::from_secs(120) {
        bail!("--interval must be at most 2m (rate(…[5m]) needs two samples in five minutes)");
    }
    if args.history < args.interval * 2 || args.history > Duration::from_secs(14 * 24 * 3600) {
        bail!(
            "--history must be between two intervals and 14d (the servers' default retention is 15d)"
        );
    }
    if args.slice < args.interval || args.slice > Duration::from_secs(1800) {
        bail!("--slice must be between one --interval and 30m");
    }
    Ok(())
}

async fn run_all(args: QueryArgs) -> anyhow::Result<()> {
    validate(&args)?;
    let known: Vec<&str> = dashboard_queries(&example_spec(), HOUR_MS)
        .iter()
        .map(|q| q.name)
        .collect();
    for name in &args.queries {
        if !known.contains(&name.as_str()) {
            bail!(
                "unknown query {name:?}; the queries are {}",
                known.join(", ")
            );
        }
    }
    let (started_at, out) = report::run_stamp("query", &args.out);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let lastmile_bin = lastmile_bin_or_self(&args.lastmile_bin)?;
    let mut opts = StartOptions {
        lastmile_bin,
        lastmile_config: args.lastmile_config.clone(),
        victoria_metrics_bin: args.victoria_metrics_bin.clone(),
        prometheus_bin: args.prometheus_bin.clone(),
        startup_timeout: Duration::from_secs(args.startup_timeout),
        keep_data: args.keep_data,
        extra_args: Vec::new(),
    };
    let (kinds, skipped) = resolve_servers(&args.servers, &mut opts);
    if kinds.is_empty() {
        bail!("none of the chosen servers can be run");
    }

    let interval_ms = args.interval.as_millis() as i64;
    let history_ms = args.history.as_millis() as i64;
    // The data ends on a whole minute (the range queries' step) before now.
    let end_ms = (now.as_millis() as i64 / STEP_MS) * STEP_MS;
    let instances = args.series.div_ceil(SERIES_PER_INSTANCE);
    let spec = FleetSpec {
        instances,
        rounds: (history_ms / interval_ms) as u64,
        interval_ms,
        end_ms,
        rounds_per_slice: (args.slice.as_millis() as i64 / interval_ms).max(1) as u64,
        batch: args.batch,
        connections: args.connections,
        seed: args.seed,
    };
    let description = format!(
        "{} series ({} instances in {} jobs, {} histogram combinations × 14 series), {} samples each ({} at {} s), {} samples",
        spec.series(),
        spec.instances,
        spec.jobs(),
        spec.instances * COMBOS_PER_INSTANCE,
        spec.rounds,
        lastmile_model::duration::format_duration(args.history),
        interval_ms / 1000,
        si(spec.total_samples() as f64)
    );
    eprintln!("\n== data: {description}");
    let queries: Vec<QueryDef> = dashboard_queries(&spec, history_ms)
        .into_iter()
        .filter(|q| args.queries.is_empty() || args.queries.iter().any(|n| n == q.name))
        .collect();

    let client = http_client(args.connections, Duration::from_secs(args.request_timeout))?;
    let mut servers: Vec<(Server, ServerRun)> = Vec::new();
    // Servers that could not start: reported, with no process.
    let mut not_started: Vec<ServerRun> = Vec::new();
    let mut round_sums: Option<Vec<f64>> = None;

    // 1. Load each server alone.
    for (kind, version) in &kinds {
        let mut run = ServerRun {
            server: *kind,
            version: version.clone(),
            load: None,
            settle_secs: None,
            checks: Vec::new(),
            data_ok: false,
            problems: Vec::new(),
            warnings: Vec::new(),
            rss_bytes: None,
        };
        eprintln!("\n-- loading {}", kind.name());
        if args.idle_wait > 0
            && let Err(busy) = measure::wait_for_idle(Duration::from_secs(args.idle_wait)).await
        {
            run.warnings.push(format!(
                "the machine was busy when the load started ({busy:.2} cores used by others)"
            ));
        }
        let server = match Server::start(*kind, &opts, &client).await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("   PROBLEM: {e:#}");
                run.problems.push(format!("{e:#}"));
                not_started.push(run);
                continue;
            }
        };
        eprintln!(
            "   started pid {} at {} (dir {})",
            server.pid,
            server.base_url,
            server.root().display()
        );
        match load_history(&server, &spec, &client, &args).await {
            Ok((summary, sums)) => {
                if !summary.complete
                    || summary.failed_requests > 0
                    || summary.samples_not_written > 0
                {
                    run.problems.push(format!(
                        "the load failed: {} failed requests, {} samples not written, complete: {}; {}",
                        summary.failed_requests,
                        summary.samples_not_written,
                        summary.complete,
                        summary.errors.join("; ")
                    ));
                } else {
                    match &round_sums {
                        None => round_sums = Some(sums),
                        Some(prev) if *prev != sums => run
                            .problems
                            .push("the generator produced different data for this server".into()),
                        Some(_) => {}
                    }
                }
                eprintln!(
                    "   loaded {} samples in {:.0} s ({}/s, server {:.0} CPU-s, peak RSS {})",
                    si(summary.samples_acked as f64),
                    summary.wall_secs,
                    si(summary.samples_acked as f64 / summary.wall_secs.max(1e-9)),
                    summary.server_cpu_secs,
                    human_bytes(summary.peak_rss_bytes as f64)
                );
                run.load = Some(summary);
            }
            Err(e) => run.problems.push(format!("loading: {e:#}")),
        }
        for p in &run.problems {
            eprintln!("   PROBLEM: {p}");
        }
        servers.push((server, run));
    }

    // 2. Settle, 3. check the data.
    let checks = data_checks(&spec, round_sums.as_deref().unwrap_or(&[]));
    let admin = http_client(1, Duration::from_secs(args.request_timeout))?;
    for (server, run) in servers.iter_mut().filter(|(_, r)| r.problems.is_empty()) {
        let started = Instant::now();
        match settle(
            server,
            &admin,
            &spec,
            Duration::from_secs(args.settle_timeout),
        )
        .await
        {
            Ok(()) => run.settle_secs = Some(started.elapsed().as_secs_f64()),
            Err(e) => run.problems.push(format!("settling: {e:#}")),
        }
    }
    if args.idle_wait > 0 {
        eprintln!("\n-- waiting for the servers' background work to finish");
        if let Err(busy) = measure::wait_for_idle(Duration::from_secs(args.idle_wait)).await {
            eprintln!("   WARNING: still busy ({busy:.2} cores)");
        }
    }
    eprintln!(
        "\n-- checking that every server holds the same data ({} checks)",
        checks.len()
    );
    for (server, run) in servers.iter_mut().filter(|(_, r)| r.problems.is_empty()) {
        for c in &checks {
            let got = instant_value(&admin, server, &c.expr, c.time_ms).await;
            let (value, error) = match got {
                Ok(v) => (Some(v), None),
                Err(e) => (None, Some(format!("{e:#}"))),
            };
            let ok = value.is_some_and(|v| (v - c.expected).abs() <= 1e-12 * c.expected.abs());
            if !ok {
                run.problems.push(format!(
                    "data differs: {} ({}) = {}, expected {}",
                    c.what,
                    c.expr,
                    value.map_or_else(|| error.clone().unwrap_or_default(), |v| v.to_string()),
                    c.expected
                ));
            }
            run.checks.push(CheckResult {
                what: c.what.clone(),
                expected: c.expected,
                got: value,
                error,
            });
        }
        run.data_ok = run.problems.is_empty();
        run.rss_bytes = measure::memory(server.pid).ok().map(|m| m.rss);
        eprintln!(
            "   {:<16} {}",
            run.server.name(),
            if run.data_ok {
                format!(
                    "identical ({} series, {} samples); RSS {}",
                    spec.series(),
                    si(spec.total_samples() as f64),
                    run.rss_bytes.map_or("-".into(), |b| human_bytes(b as f64))
                )
            } else {
                format!("NOT TIMED: {}", run.problems.join("; "))
            }
        );
    }

    // 4. Time the queries.
    let timed: Vec<usize> = (0..servers.len())
        .filter(|&i| servers[i].1.data_ok)
        .collect();
    let mut outcomes = Vec::new();
    for q in &queries {
        eprintln!("\n-- {}: {}", q.name, q.expr);
        let outcome = time_query(q, &servers, &timed, &client, &args).await;
        for t in &outcome.timings {
            eprintln!(
                "   {:<16} median {}  p99 {}  first {}  CPU/run {}  {} series{}",
                t.server.map_or("?", |k| k.name()),
                opt_ms(t.median_secs),
                opt_ms(t.p99_secs),
                opt_ms(t.first_secs),
                opt_ms(t.cpu_secs_per_run),
                t.result_series.map_or("-".into(), |n| n.to_string()),
                if t.problems.is_empty() {
                    String::new()
                } else {
                    format!("  PROBLEM: {}", t.problems.join("; "))
                }
            );
        }
        for w in &outcome.warnings {
            eprintln!("   WARNING: {w}");
        }
        outcomes.push(outcome);
    }

    let total_samples = spec.total_samples();
    let series = spec.series();
    let report = QueryReport {
        benchmark: "query",
        started_at,
        machine: Machine::probe(),
        data: spec,
        description,
        series,
        samples: total_samples,
        runs: args.runs,
        warmup: args.warmup,
        skipped,
        servers: servers
            .into_iter()
            .map(|(_, r)| r)
            .chain(not_started)
            .collect(),
        checks,
        queries: outcomes,
    };
    print!("{}", render(&report));
    report::write_json(&report, &out)?;
    println!("results written to {}", out.display());

    let mut failed: Vec<String> = report
        .servers
        .iter()
        .filter(|r| !r.data_ok)
        .map(|r| format!("{} (data)", r.server.name()))
        .collect();
    for q in &report.queries {
        for t in q.timings.iter().filter(|t| !t.problems.is_empty()) {
            failed.push(format!(
                "{} on {}",
                q.query.name,
                t.server.map_or("?", |k| k.name())
            ));
        }
    }
    if !failed.is_empty() {
        bail!("some steps had problems (see above): {}", failed.join(", "));
    }
    Ok(())
}

/// A spec only used to list the query names.
fn example_spec() -> FleetSpec {
    FleetSpec {
        instances: 1,
        rounds: 2,
        interval_ms: 60_000,
        end_ms: 0,
        rounds_per_slice: 1,
        batch: 1,
        connections: 1,
        seed: 0,
    }
}

/// Loads the whole history into `server`, slice after slice. Returns the summary and the
/// per-round counter sums (for the checks).
async fn load_history(
    server: &Server,
    spec: &FleetSpec,
    client: &reqwest::Client,
    args: &QueryArgs,
) -> anyhow::Result<(LoadSummary, Vec<f64>)> {
    let url = format!("{}{}", server.base_url, server.kind.write_path());
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Slice>(2);
    let gen_spec = spec.clone();
    // The generator runs ahead by up to two slices on its own thread.
    let producer = tokio::task::spawn_blocking(move || {
        let mut fleet = Fleet::new(&gen_spec);
        while let Some(slice) = fleet.next_slice() {
            if tx.blocking_send(slice).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(args.load_timeout);
    let pid = server.pid;
    let cpu0 = measure::cpu_seconds(pid)?;
    let own0 = measure::own_cpu_seconds()?;
    let started = Instant::now();
    let mut summary = LoadSummary::default();
    let mut sums = vec![0.0; spec.rounds as usize];
    let total = spec.total_samples();
    let (mut last_print, mut prev_samples, mut prev_cpu, mut prev_t) =
        (Instant::now(), 0u64, cpu0, Duration::ZERO);
    let mut complete = true;
    while let Some(mut slice) = rx.recv().await {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            summary.errors.push(format!(
                "the load did not finish within {} s",
                args.load_timeout
            ));
            complete = false;
            break;
        }
        for (i, s) in slice.counter_sums.drain(..).enumerate() {
            sums[slice.first_round as usize + i] = s;
        }
        summary.requests += slice.requests;
        summary.body_bytes += slice.body_bytes;
        let outcome = load::send(
            client,
            &url,
            Arc::new(slice),
            left,
            Duration::from_secs(3600),
            |_, _| {},
        )
        .await;
        summary.samples_acked += outcome.samples_acked;
        summary.failed_requests += outcome.non_2xx + outcome.transport_errors;
        summary.samples_not_written += outcome.samples_not_written;
        for e in outcome.errors {
            if summary.errors.len() < 8 {
                summary.errors.push(e);
            }
        }
        if outcome.incomplete || outcome.non_2xx + outcome.transport_errors > 0 {
            // Later slices would only pile errors on a server that already lost data.
            complete = false;
            break;
        }
        if last_print.elapsed() >= PROGRESS_EVERY {
            let elapsed = started.elapsed();
            let cpu = measure::cpu_seconds(pid).unwrap_or(prev_cpu);
            let dt = (elapsed - prev_t).as_secs_f64().max(1e-3);
            let samples = summary.samples_acked;
            eprintln!(
                "   [{}] {:>5.0} s  {}/{} samples ({:.0}%)  {}/s now  server {:.2} cores  RSS {}",
                server.kind.name(),
                elapsed.as_secs_f64(),
                si(samples as f64),
                si(total as f64),
                100.0 * samples as f64 / total.max(1) as f64,
                si((samples - prev_samples) as f64 / dt),
                (cpu - prev_cpu) / dt,
                human_bytes(measure::memory(pid).map(|m| m.rss).unwrap_or(0) as f64),
            );
            (last_print, prev_samples, prev_cpu, prev_t) = (Instant::now(), samples, cpu, elapsed);
        }
    }
    drop(rx);
    let _ = producer.await;
    summary.wall_secs = started.elapsed().as_secs_f64();
    summary.server_cpu_secs = measure::cpu_seconds(pid)? - cpu0;
    summary.generator_cpu_secs = measure::own_cpu_seconds()? - own0;
    summary.peak_rss_bytes = measure::memory(pid).map(|m| m.peak_rss).unwrap_or(0);
    summary.complete = complete && summary.samples_acked == total;
    Ok((summary, sums))
}

/// Waits until the server holds the data the way it would in steady operation:
/// lastmile and Prometheus have cut their head down to at most 1.5 block ranges (3 h; both
/// persist older windows as blocks once a minute); VictoriaMetrics has flushed.
async fn settle(
    server: &Server,
    client: &reqwest::Client,
    spec: &FleetSpec,
    timeout: Duration,
) -> anyhow::Result<()> {
    if server.kind == ServerKind::Victoriametrics {
        return server.vm_force_flush(client).await;
    }
    let limit = 3 * HOUR_MS + spec.interval_ms;
    let started = Instant::now();
    let mut said = false;
    loop {
        let span = server.head_span_ms(client).await?;
        if span.is_none_or(|s| s <= limit) {
            return Ok(());
        }
        if started.elapsed() >= timeout {
            bail!(
                "the head still spans {:.1} h after {} s",
                span.unwrap_or(0) as f64 / HOUR_MS as f64,
                timeout.as_secs()
            );
        }
        if !said {
            eprintln!(
                "   waiting for {} to persist its head (it spans {:.1} h) …",
                server.kind.name(),
                span.unwrap_or(0) as f64 / HOUR_MS as f64
            );
            said = true;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

fn secs_param(ms: i64) -> String {
    format!("{}.{:03}", ms.div_euclid(1000), ms.rem_euclid(1000))
}

fn query_url(server: &Server, q: &QueryDef) -> anyhow::Result<reqwest::Url> {
    let expr = q.expr.as_str();
    let url = match q.range {
        None => reqwest::Url::parse_with_params(
            &format!("{}/api/v1/query", server.base_url),
            &[("query", expr), ("time", &secs_param(q.time_ms))],
        ),
        Some((start, step)) => reqwest::Url::parse_with_params(
            &format!("{}/api/v1/query_range", server.base_url),
            &[
                ("query", expr),
                ("start", &secs_param(start)),
                ("end", &secs_param(q.time_ms)),
                ("step", &secs_param(step)),
            ],
        ),
    };
    url.context("cannot build the query URL")
}

/// Sends one query; returns the wall time to the last byte and the parsed answer.
async fn send_query(
    client: &reqwest::Client,
    server: &Server,
    q: &QueryDef,
) -> anyhow::Result<(Duration, usize, Json)> {
    let url = query_url(server, q)?;
    let started = Instant::now();
    let r = client
        .get(url.clone())
        .send()
        .await
        .with_context(|| format!("GET {}", q.name))?;
    let body = check_status(r, url.as_str()).await?;
    let elapsed = started.elapsed();
    let v: Json = serde_json::from_slice(&body).with_context(|| {
        format!(
            "{} did not answer JSON: {}",
            server.kind.name(),
            truncate(&String::from_utf8_lossy(&body), 300)
        )
    })?;
    if v.get("status").and_then(Json::as_str) != Some("success") {
        bail!("answer is not a success: {}", truncate(&v.to_string(), 300));
    }
    Ok((elapsed, body.len(), v))
}

async fn instant_value(
    client: &reqwest::Client,
    server: &Server,
    expr: &str,
    time_ms: i64,
) -> anyhow::Result<f64> {
    let q = QueryDef {
        name: "check",
        expr: expr.to_string(),
        time_ms,
        range: None,
    };
    let (_, _, v) = send_query(client, server, &q).await?;
    let result = v
        .pointer("/data/result")
        .and_then(Json::as_array)
        .context("no data.result")?;
    match result.as_slice() {
        [one] => one
            .pointer("/value/1")
            .and_then(Json::as_str)
            .and_then(|s| s.parse::<f64>().ok())
            .with_context(|| format!("no value in {}", truncate(&one.to_string(), 200))),
        [] => bail!("empty result"),
        more => bail!("{} series where one was expected", more.len()),
    }
}

/// Label set → points (time in ms, value).
type Answer = BTreeMap<Vec<(String, String)>, Vec<(i64, f64)>>;

/// An answer as label set → points, for comparing two servers.
fn answer(v: &Json) -> Option<Answer> {
    let mut out = Answer::new();
    for item in v.pointer("/data/result")?.as_array()? {
        let labels: Vec<(String, String)> = item
            .get("metric")?
            .as_object()?
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
            .collect();
        let point = |p: &Json| -> Option<(i64, f64)> {
            let p = p.as_array()?;
            let v = p.get(1)?.as_str()?;
            let v = match v {
                "+Inf" => f64::INFINITY,
                "-Inf" => f64::NEG_INFINITY,
                "NaN" => f64::NAN,
                other => other.parse().ok()?,
            };
            // `1700000000` and `1700000000.0` are the same time.
            let t = (p.first()?.as_f64()? * 1000.0).round() as i64;
            Some((t, v))
        };
        let points = match (item.get("value"), item.get("values")) {
            (Some(p), _) => vec![point(p)?],
            (_, Some(ps)) => ps.as_array()?.iter().map(point).collect::<Option<_>>()?,
            _ => return None,
        };
        out.insert(labels, points);
    }
    Some(out)
}

/// Why two answers differ (label sets, or a value off by more than 1e-9 relative).
fn compare_answers(a: &Answer, b: &Answer) -> Option<String> {
    if a.len() != b.len() || a.keys().ne(b.keys()) {
        let only_a = a.keys().find(|k| !b.contains_key(*k));
        let only_b = b.keys().find(|k| !a.contains_key(*k));
        return Some(format!(
            "{} vs {} series; only in lastmile: {only_a:?}; only in Prometheus: {only_b:?}",
            a.len(),
            b.len()
        ));
    }
    for (labels, pa) in a {
        let pb = &b[labels];
        if pa.len() != pb.len() {
            return Some(format!("{labels:?}: {} vs {} points", pa.len(), pb.len()));
        }
        for ((ta, va), (tb, vb)) in pa.iter().zip(pb) {
            let same = (va.is_nan() && vb.is_nan())
                || va == vb
                || (va - vb).abs() <= 1e-9 * va.abs().max(vb.abs());
            if ta != tb || !same {
                return Some(format!("{labels:?}: ({ta}, {va}) vs ({tb}, {vb})"));
            }
        }
    }
    None
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    Some(sorted[rank - 1])
}

async fn time_query(
    q: &QueryDef,
    servers: &[(Server, ServerRun)],
    timed: &[usize],
    client: &reqwest::Client,
    args: &QueryArgs,
) -> QueryOutcome {
    let mut warnings = Vec::new();
    if args.idle_wait > 0
        && let Err(busy) = measure::wait_for_idle(Duration::from_secs(args.idle_wait)).await
    {
        warnings.push(format!(
            "the machine was busy before this query ({busy:.2} cores used by others)"
        ));
    }
    let mut timings: Vec<Timing> = timed
        .iter()
        .map(|&i| Timing {
            server: Some(servers[i].0.kind),
            ..Default::default()
        })
        .collect();
    let mut answers: Vec<Option<Answer>> = vec![None; timed.len()];
    let busy0 = measure::machine_busy_seconds().unwrap_or(0.0);
    let own0 = measure::own_cpu_seconds().unwrap_or(0.0);
    let cpu_start: Vec<f64> = timed
        .iter()
        .map(|&i| measure::cpu_seconds(servers[i].0.pid).unwrap_or(0.0))
        .collect();
    // Warm-up, which also fetches the answers to compare.
    for (slot, &i) in timed.iter().enumerate() {
        let server = &servers[i].0;
        for w in 0..args.warmup.max(1) {
            match send_query(client, server, q).await {
                Ok((d, bytes, v)) => {
                    if w == 0 {
                        let t = &mut timings[slot];
                        t.first_secs = Some(d.as_secs_f64());
                        t.response_bytes = Some(bytes);
                        answers[slot] = answer(&v);
                        t.result_series = answers[slot].as_ref().map(BTreeMap::len);
                    }
                }
                Err(e) => {
                    timings[slot].problems.push(format!("{e:#}"));
                    break;
                }
            }
            if args.warmup == 0 {
                break;
            }
        }
    }
    let mut cpu_timed = vec![0.0; timed.len()];
    for run in 0..args.runs as usize {
        // Rotate who goes first, so no server always follows the same one.
        for k in 0..timed.len() {
            let slot = (run + k) % timed.len();
            if !timings[slot].problems.is_empty() {
                continue;
            }
            let server = &servers[timed[slot]].0;
            let c0 = measure::cpu_seconds(server.pid).unwrap_or(0.0);
            match send_query(client, server, q).await {
                Ok((d, _, _)) => timings[slot].runs_secs.push(d.as_secs_f64()),
                Err(e) => timings[slot].problems.push(format!("{e:#}")),
            }
            cpu_timed[slot] += measure::cpu_seconds(server.pid).unwrap_or(c0) - c0;
        }
    }
    let mut servers_cpu = 0.0;
    for (slot, &i) in timed.iter().enumerate() {
        servers_cpu += measure::cpu_seconds(servers[i].0.pid).unwrap_or(0.0) - cpu_start[slot];
    }
    let others = measure::machine_busy_seconds().unwrap_or(0.0)
        - busy0
        - servers_cpu
        - (measure::own_cpu_seconds().unwrap_or(0.0) - own0);
    if others > 0.1 * servers_cpu && others > 0.5 {
        warnings.push(format!(
            "the machine was busy: other processes used {others:.1} CPU-s while this query ran (the servers {servers_cpu:.1}); the figures are not reliable"
        ));
    }
    for (slot, t) in timings.iter_mut().enumerate() {
        let mut sorted = t.runs_secs.clone();
        sorted.sort_by(f64::total_cmp);
        t.median_secs = median(sorted.clone());
        t.p99_secs = percentile(&sorted, 0.99);
        t.min_secs = sorted.first().copied();
        if !t.runs_secs.is_empty() {
            t.cpu_secs_per_run = Some(cpu_timed[slot] / t.runs_secs.len() as f64);
        }
    }
    let find = |k: ServerKind| timings.iter().position(|t| t.server == Some(k));
    let (lm, prom) = (find(ServerKind::Lastmile), find(ServerKind::Prometheus));
    let (mut matches, mut mismatch) = (None, None);
    if let (Some(a), Some(b)) = (lm, prom)
        && let (Some(x), Some(y)) = (&answers[a], &answers[b])
    {
        mismatch = compare_answers(x, y);
        matches = Some(mismatch.is_none());
        if let Some(m) = &mismatch {
            warnings.push(format!("lastmile's answer differs from Prometheus's: {m}"));
        }
    }
    if let Some(a) = lm {
        for (slot, t) in timings.iter().enumerate() {
            if slot != a
                && let (Some(x), Some(y)) = (timings[a].result_series, t.result_series)
                && x != y
            {
                warnings.push(format!(
                    "lastmile answered with {x} series, {} with {y}",
                    t.server.map_or("?", |k| k.name())
                ));
            }
        }
    }
    let ratios = match lm {
        None => Vec::new(),
        Some(a) => timings
            .iter()
            .filter(|t| t.server != Some(ServerKind::Lastmile))
            .filter_map(|t| {
                let div = |x: Option<f64>, y: Option<f64>| match (x, y) {
                    (Some(x), Some(y)) if y > 0.0 => Some(x / y),
                    _ => None,
                };
                Some(Ratio {
                    peer: t.server?,
                    median: div(timings[a].median_secs, t.median_secs),
                    p99: div(timings[a].p99_secs, t.p99_secs),
                })
            })
            .collect(),
    };
    QueryOutcome {
        query: q.clone(),
        timings,
        ratios,
        lastmile_matches_prometheus: matches,
        mismatch,
        warnings,
    }
}

/// "3.21 ms", "45.6 ms", "123 ms", "1.23 s".
pub fn fmt_latency(secs: f64) -> String {
    let ms = secs * 1000.0;
    if ms < 10.0 {
        format!("{ms:.2} ms")
    } else if ms < 100.0 {
        format!("{ms:.1} ms")
    } else if ms < 1000.0 {
        format!("{ms:.0} ms")
    } else {
        format!("{secs:.2} s")
    }
}

fn opt_ms(v: Option<f64>) -> String {
    v.map_or_else(|| "-".into(), fmt_latency)
}

/// The human-readable report.
pub fn render(r: &QueryReport) -> String {
    let mut s = String::new();
    let m = &r.machine;
    let _ = writeln!(
        s,
        "\nlastmile bench query — {} — {} CPUs, {} RAM, Linux {}\ndata: {}",
        r.started_at,
        m.cpus,
        human_bytes(m.mem_total_bytes as f64),
        m.kernel,
        r.description
    );
    for sk in &r.skipped {
        let _ = writeln!(s, "skipped {}: {}", sk.server.name(), sk.reason);
    }
    for sr in &r.servers {
        let load = sr.load.as_ref().map_or(String::new(), |l| {
            format!(
                "loaded in {:.0} s ({:.0} server CPU-s, peak RSS {})",
                l.wall_secs,
                l.server_cpu_secs,
                human_bytes(l.peak_rss_bytes as f64)
            )
        });
        let _ = writeln!(
            s,
            "{:<16} {} — {load}{}",
            sr.server.name(),
            sr.version,
            if sr.data_ok {
                "; data identical"
            } else {
                "; NOT TIMED"
            }
        );
        for p in &sr.problems {
            let _ = writeln!(s, "   (!) {}", truncate(p, 600));
        }
        for w in &sr.warnings {
            let _ = writeln!(s, "   warning: {w}");
        }
    }
    let kinds: Vec<ServerKind> = r
        .queries
        .first()
        .map(|q| q.timings.iter().filter_map(|t| t.server).collect())
        .unwrap_or_default();
    let _ = writeln!(
        s,
        "\nlatency per query: median / p99 of {} runs per server after {} warm-up runs",
        r.runs, r.warmup
    );
    let mut header = vec!["query".to_string()];
    for k in &kinds {
        header.push(format!("{} median", k.name()));
        header.push("p99".into());
    }
    let peers: Vec<ServerKind> = kinds
        .iter()
        .copied()
        .filter(|&k| k != ServerKind::Lastmile)
        .collect();
    if kinds.contains(&ServerKind::Lastmile) {
        for p in &peers {
            header.push(format!("lastmile ÷ {}", short(*p)));
        }
    }
    let mut rows = vec![header];
    for q in &r.queries {
        let mut row = vec![q.query.name.to_string()];
        for k in &kinds {
            let t = q.timings.iter().find(|t| t.server == Some(*k));
            let failed = t.is_some_and(|t| !t.problems.is_empty());
            row.push(if failed {
                "failed".into()
            } else {
                opt_ms(t.and_then(|t| t.median_secs))
            });
            row.push(opt_ms(t.and_then(|t| t.p99_secs)));
        }
        if kinds.contains(&ServerKind::Lastmile) {
            for p in &peers {
                let ratio = q.ratios.iter().find(|x| x.peer == *p);
                row.push(
                    ratio
                        .and_then(|x| x.median)
                        .map_or("-".into(), |v| format!("{v:.2}×")),
                );
            }
        }
        rows.push(row);
    }
    s.push_str(&table(&rows));
    // CPU per query does not count time spent waiting for a core, so it stays meaningful
    // on a busy machine, where wall times are not.
    let _ = writeln!(
        s,
        "\nserver CPU per query: mean over the timed runs (utime+stime from /proc, 10 ms ticks)"
    );
    let mut header = vec!["query".to_string()];
    header.extend(kinds.iter().map(|k| k.name().to_string()));
    if kinds.contains(&ServerKind::Lastmile) {
        header.extend(peers.iter().map(|p| format!("lastmile ÷ {}", short(*p))));
    }
    let mut rows = vec![header];
    for q in &r.queries {
        let cpu = |k: ServerKind| {
            q.timings
                .iter()
                .find(|t| t.server == Some(k))
                .and_then(|t| t.cpu_secs_per_run)
        };
        let mut row = vec![q.query.name.to_string()];
        row.extend(kinds.iter().map(|&k| opt_ms(cpu(k))));
        if kinds.contains(&ServerKind::Lastmile) {
            for &p in &peers {
                row.push(match (cpu(ServerKind::Lastmile), cpu(p)) {
                    (Some(a), Some(b)) if b > 0.0 => format!("{:.2}×", a / b),
                    _ => "-".into(),
                });
            }
        }
        rows.push(row);
    }
    s.push_str(&table(&rows));
    let _ = writeln!(s);
    for q in &r.queries {
        let what = match q.query.range {
            None => "instant".to_string(),
            Some((start, step)) => format!(
                "range {} at {} s step",
                lastmile_model::duration::format_duration(Duration::from_millis(
                    (q.query.time_ms - start) as u64
                )),
                step / 1000
            ),
        };
        let series = q
            .timings
            .iter()
            .filter_map(|t| {
                t.result_series
                    .map(|n| format!("{}: {n}", short(t.server.unwrap_or(ServerKind::Lastmile))))
            })
            .collect::<Vec<_>>()
            .join(", ");
        let _ = writeln!(
            s,
            "{:<18} {what}: {}\n{:<18} answer series {series}{}",
            q.query.name,
            q.query.expr,
            "",
            match q.lastmile_matches_prometheus {
                Some(true) => "; lastmile's answer = Prometheus's",
                Some(false) => "; lastmile's answer DIFFERS from Prometheus's",
                None => "",
            }
        );
        for w in &q.warnings {
            let _ = writeln!(s, "{:<18} warning: {w}", "");
        }
        for t in &q.timings {
            for p in &t.problems {
                let _ = writeln!(
                    s,
                    "{:<18} (!) {}: {}",
                    "",
                    t.server.map_or("?", |k| k.name()),
                    truncate(p, 400)
                );
            }
        }
    }
    s
}

fn short(k: ServerKind) -> &'static str {
    match k {
        ServerKind::Lastmile => "lastmile",
        ServerKind::Victoriametrics => "VM",
        ServerKind::Prometheus => "Prom",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> FleetSpec {
        FleetSpec {
            instances: 200,
            rounds: 1440,
            interval_ms: 60_000,
            end_ms: 1_700_000_040_000,
            rounds_per_slice: 10,
            batch: 1000,
            connections: 4,
            seed: 1,
        }
    }

    #[test]
    fn checks_cover_every_round_once_within_the_sample_limit() {
        let s = spec();
        let sums: Vec<f64> = (0..s.rounds).map(|r| r as f64).collect();
        let checks = data_checks(&s, &sums);
        assert_eq!(checks[0].expected, s.series() as f64);
        let samples: f64 = checks
            .iter()
            .filter(|c| c.what.starts_with("samples"))
            .map(|c| c.expected)
            .sum();
        assert_eq!(samples, s.total_samples() as f64);
        let counters: f64 = checks
            .iter()
            .filter(|c| c.what.starts_with("counter"))
            .map(|c| c.expected)
            .sum();
        assert_eq!(counters, sums.iter().sum::<f64>());
        for c in checks.iter().skip(1) {
            if c.what.starts_with("samples") {
                assert!(c.expected <= CHECK_SAMPLES as f64);
            }
            // Window ends sit half a second past whole seconds: never on a sample.
            assert_eq!(c.time_ms.rem_euclid(1000), 500);
        }
    }

    #[test]
    fn queries_have_fixed_names_and_range_queries_span_the_history() {
        let s = spec();
        let q = dashboard_queries(&s, 24 * HOUR_MS);
        let names: Vec<&str> = q.iter().map(|q| q.name).collect();
        assert_eq!(
            names,
            [
                "rps_by_job",
                "p99_by_route",
                "topk_errors",
                "regex_count",
                "rps_by_job_range",
                "p99_one_job_range"
            ]
        );
        assert_eq!(q[4].range, Some((s.end_ms - 24 * HOUR_MS, 60_000)));
        assert!(q[5].expr.contains("job=\"api-gateway\""));
    }

    #[test]
    fn percentiles_and_answers() {
        let v: Vec<f64> = (1..=20).map(f64::from).collect();
        assert_eq!(percentile(&v, 0.99), Some(20.0));
        assert_eq!(percentile(&v, 0.5), Some(10.0));
        assert_eq!(percentile(&[], 0.5), None);
        let a: Json = serde_json::from_str(
            r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{"job":"a"},"value":[1.5,"2"]},{"metric":{"job":"b"},"value":[1.5,"NaN"]}]}}"#,
        )
        .unwrap();
        let b: Json = serde_json::from_str(
            r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{"job":"b"},"value":[1.5,"NaN"]},{"metric":{"job":"a"},"value":[1.500,"2.0000000000001"]}]}}"#,
        )
        .unwrap();
        let c: Json = serde_json::from_str(
            r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{"job":"a"},"value":[1.5,"3"]}]}}"#,
        )
        .unwrap();
        let (a, b, c) = (
            answer(&a).unwrap(),
            answer(&b).unwrap(),
            answer(&c).unwrap(),
        );
        assert_eq!(compare_answers(&a, &b), None);
        assert!(compare_answers(&a, &c).is_some());
        assert_eq!(secs_param(1_700_000_000_500), "1700000000.500");
        assert_eq!(fmt_latency(0.001234), "1.23 ms");
        assert_eq!(fmt_latency(1.5), "1.50 s");
    }
}
