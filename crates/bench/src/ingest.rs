//! `lastmile bench ingest`: for each scenario, build the requests once, then run every
//! chosen server alone on them and measure.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};

use crate::IngestArgs;
use crate::load::{self, Spec, Workload};
use crate::measure;
use crate::report::{self, Machine, Report, RunResult, ScenarioResult, human_bytes, si};
use crate::servers::{
    Server, ServerKind, StartOptions, http_client, lastmile_bin_or_self, resolve_servers,
};

const PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// Runs the benchmark; Ctrl-C or SIGTERM stops it, and the running server with it (its
/// guard is dropped with the benchmark's future).
pub async fn run(args: IngestArgs) -> anyhow::Result<()> {
    tokio::select! {
        r = run_all(args) => r,
        signal = crate::interrupted() => bail!("interrupted by {signal}; the server under test was stopped"),
    }
}

async fn run_all(args: IngestArgs) -> anyhow::Result<()> {
    if args.connections == 0
        || args.batch == 0
        || args.interval == 0
        || args.samples_per_request == 0
    {
        bail!("--connections, --batch, --interval and --samples-per-request must be at least 1");
    }
    let mut kinds: Vec<ServerKind> = Vec::new();
    for k in &args.servers {
        if !kinds.contains(k) {
            kinds.push(*k);
        }
    }
    let (started_at, out) = report::run_stamp("ingest", &args.out);
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

    // Resolve the binaries; a missing peer is skipped with a clear message.
    let (servers, skipped) = resolve_servers(&kinds, &mut opts);
    if servers.is_empty() {
        bail!("none of the chosen servers can be run");
    }

    let end_ms = now.as_millis() as i64;
    let mut specs = Vec::new();
    if args.series > 0 && args.samples > 0 {
        specs.push((
            Spec {
                name: "steady",
                series: args.series,
                rounds: args.samples,
                samples_per_request: args.samples_per_request,
                interval_ms: args.interval as i64 * 1000,
                batch: args.batch,
                connections: args.connections,
                seed: args.seed,
                end_ms,
            },
            if args.samples_per_request > 1 {
                format!(
                    "{} series × {} samples, {} s apart ({} series × {} consecutive samples per request, in time order)",
                    args.series, args.samples, args.interval, args.batch, args.samples_per_request
                )
            } else {
                format!(
                    "{} series × {} samples, {} s apart (scrape rounds in time order, {} series per request)",
                    args.series, args.samples, args.interval, args.batch
                )
            },
        ));
    }
    if args.new_series > 0 {
        specs.push((
            Spec {
                name: "churn",
                series: args.new_series,
                rounds: 1,
                samples_per_request: 1,
                interval_ms: args.interval as i64 * 1000,
                batch: args.batch,
                connections: args.connections,
                seed: args.seed.wrapping_add(1),
                end_ms,
            },
            format!(
                "{} new series × 1 sample (series creation, {} series per request)",
                args.new_series, args.batch
            ),
        ));
    }
    if specs.is_empty() {
        bail!("both scenarios are disabled (--series/--samples and --new-series are 0)");
    }

    let mut report = Report {
        benchmark: "ingest",
        started_at,
        machine: Machine::probe(),
        connections: args.connections,
        seed: args.seed,
        skipped,
        scenarios: Vec::new(),
    };

    for (mut spec, description) in specs {
        // Stamp the last round "now" (as Prometheus would) at the time of building.
        spec.end_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(end_ms, |d| d.as_millis() as i64);
        eprintln!(
            "\n== {}: {description}\nbuilding {} requests …",
            spec.name,
            spec.batches() * spec.requests_per_batch()
        );
        let build_spec = spec.clone();
        let work = Arc::new(
            tokio::task::spawn_blocking(move || load::build(&build_spec))
                .await
                .context("building the requests panicked")?,
        );
        eprintln!(
            "built {} requests in {:.1} s: {} protobuf, {} snappy",
            work.requests,
            work.build_secs,
            human_bytes(work.raw_bytes as f64),
            human_bytes(work.body_bytes as f64)
        );
        // Repetitions go round the servers, so slow drifts of the machine hit all alike.
        let mut per_server: Vec<Vec<RunResult>> = servers.iter().map(|_| Vec::new()).collect();
        let mut all_runs = Vec::new();
        for rep in 0..args.repeat {
            for (i, (kind, version)) in servers.iter().enumerate() {
                let tag = if args.repeat > 1 {
                    format!("{}/{} #{}", kind.name(), spec.name, rep + 1)
                } else {
                    format!("{}/{}", kind.name(), spec.name)
                };
                eprintln!("-- {tag}");
                let mut r = RunResult {
                    server: Some(*kind),
                    version: version.clone(),
                    series_expected: spec.series,
                    repeats: 1,
                    ..Default::default()
                };
                if args.idle_wait > 0
                    && let Err(busy) =
                        measure::wait_for_idle(Duration::from_secs(args.idle_wait)).await
                {
                    r.warnings.push(format!(
                        "the machine was still busy when the run started ({busy:.2} cores used by other processes after waiting {} s)",
                        args.idle_wait
                    ));
                }
                if let Err(e) = run_one(&tag, *kind, &opts, &args, work.clone(), &mut r).await {
                    r.problems.push(format!("{e:#}"));
                }
                if r.ok() {
                    eprintln!(
                        "   done: {} samples/s, {} samples per CPU-s, {} per series, {} B/sample",
                        r.samples_per_sec.map_or("-".into(), si),
                        r.samples_per_cpu_sec.map_or("-".into(), si),
                        r.rss_per_series_bytes.map_or("-".into(), human_bytes),
                        r.bytes_per_sample.map_or("-".into(), |b| format!("{b:.2}"))
                    );
                } else {
                    for p in &r.problems {
                        eprintln!("   PROBLEM: {p}");
                    }
                }
                for w in &r.warnings {
                    eprintln!("   WARNING: {w}");
                }
                per_server[i].push(r.clone());
                all_runs.push(r);
            }
        }
        let runs: Vec<RunResult> = per_server.iter().map(|rs| report::combine(rs)).collect();
        let ratios = report::ratios(&runs);
        report.scenarios.push(ScenarioResult {
            total_samples: spec.total_samples(),
            description,
            spec,
            requests: work.requests,
            raw_bytes: work.raw_bytes,
            body_bytes: work.body_bytes,
            first_ts_ms: work.first_ts_ms,
            last_ts_ms: work.last_ts_ms,
            build_secs: work.build_secs,
            runs,
            all_runs,
            ratios,
        });
    }

    print!("{}", report::render(&report));
    report::write_json(&report, &out)?;
    println!("results written to {}", out.display());

    let failed: Vec<String> = report
        .scenarios
        .iter()
        .flat_map(|sc| {
            sc.runs
                .iter()
                .filter(|r| !r.ok())
                .map(move |r| format!("{}/{}", r.server.map_or("?", |k| k.name()), sc.spec.name))
        })
        .collect();
    if !failed.is_empty() {
        bail!("some runs had problems (see above): {}", failed.join(", "));
    }
    Ok(())
}

/// One server on one workload: start, load, measure, flush, stop (the stop happens when
/// `server` is dropped, also on errors).
async fn run_one(
    tag: &str,
    kind: ServerKind,
    opts: &StartOptions,
    args: &IngestArgs,
    work: Arc<Workload>,
    r: &mut RunResult,
) -> anyhow::Result<()> {
    let client = http_client(args.connections, Duration::from_secs(args.request_timeout))?;
    // Series counts, flushes and snapshots of a million series can take minutes.
    let admin = http_client(1, Duration::from_secs(args.flush_timeout))?;
    let mut server = Server::start(kind, opts, &client).await?;
    let pid = server.pid;
    eprintln!(
        "   started pid {pid} at {} (dir {})",
        server.base_url,
        server.root().display()
    );
    let url = format!("{}{}", server.base_url, kind.write_path());
    let label = tag;
    let total = work.spec.total_samples();

    let cpu0 = measure::cpu_seconds(pid)?;
    let own0 = measure::own_cpu_seconds()?;
    let busy0 = measure::machine_busy_seconds()?;
    let (mut prev_t, mut prev_samples, mut prev_cpu) = (Duration::ZERO, 0u64, cpu0);
    let outcome = load::send(
        &client,
        &url,
        work.clone(),
        Duration::from_secs(args.load_timeout),
        PROGRESS_EVERY,
        |c, elapsed| {
            let samples = c.samples_acked.load(Ordering::Relaxed);
            let cpu = measure::cpu_seconds(pid).unwrap_or(prev_cpu);
            let dt = (elapsed - prev_t).as_secs_f64().max(1e-3);
            let rss = measure::memory(pid).map(|m| m.rss).unwrap_or(0);
            let bad = c.non_2xx.load(Ordering::Relaxed) + c.transport_errors.load(Ordering::Relaxed);
            eprintln!(
                "   [{label}] {:>5.0} s  {}/{} samples ({:.0}%)  {}/s now  server {:.2} cores  RSS {}{}",
                elapsed.as_secs_f64(),
                si(samples as f64),
                si(total as f64),
                100.0 * samples as f64 / total.max(1) as f64,
                si((samples - prev_samples) as f64 / dt),
                (cpu - prev_cpu) / dt,
                human_bytes(rss as f64),
                if bad > 0 { format!("  {bad} FAILED requests") } else { String::new() }
            );
            (prev_t, prev_samples, prev_cpu) = (elapsed, samples, cpu);
        },
    )
    .await;
    let cpu1 = measure::cpu_seconds(pid);
    let own1 = measure::own_cpu_seconds()?;
    let busy1 = measure::machine_busy_seconds()?;
    let mem = measure::memory(pid);

    let wall = outcome.wall_secs;
    r.wall_secs = Some(wall);
    r.failed_requests = outcome.non_2xx + outcome.transport_errors;
    if outcome.non_2xx > 0 {
        r.problems.push(format!(
            "{} of {} requests were answered with a non-2xx status",
            outcome.non_2xx, work.requests
        ));
    }
    if outcome.transport_errors > 0 {
        r.problems.push(format!(
            "{} requests failed without an answer",
            outcome.transport_errors
        ));
    }
    if outcome.samples_not_written > 0 {
        r.problems.push(format!(
            "the server said {} samples were not written",
            outcome.samples_not_written
        ));
    }
    if outcome.incomplete {
        r.problems.push(format!(
            "the load did not complete ({} of {} requests sent)",
            outcome.requests_sent, work.requests
        ));
    }
    for e in &outcome.errors {
        r.problems.push(format!("error: {e}"));
    }
    let samples = outcome.samples_acked as f64;
    r.samples_per_sec = Some(samples / wall.max(1e-9));
    r.generator_cpu_secs = Some(own1 - own0);
    r.load = Some(outcome);
    if !server.is_running() {
        bail!(
            "{} is no longer running after the load; {}",
            kind.name(),
            server.log_tail()
        );
    }
    let cpu = cpu1? - cpu0;
    let mem = mem?;
    r.server_cpu_secs = Some(cpu);
    let other = (busy1 - busy0 - cpu - (own1 - own0)).max(0.0);
    r.other_cpu_secs = Some(other);
    if other > 0.1 * cpu && other > 0.5 {
        r.warnings.push(format!(
            "the machine was busy: other processes used {other:.1} CPU-s during the load (the server {cpu:.1}); the figures are not reliable"
        ));
    }
    r.cores_used = Some(cpu / wall.max(1e-9));
    r.samples_per_cpu_sec = (cpu > 0.0).then(|| samples / cpu);
    r.peak_rss_bytes = Some(mem.peak_rss);
    r.rss_after_load_bytes = Some(mem.rss);
    r.rss_per_series_bytes = Some(mem.peak_rss as f64 / work.spec.series.max(1) as f64);

    let post_deadline = Duration::from_secs(args.flush_timeout);
    match tokio::time::timeout(post_deadline, server.head_counts(&admin)).await {
        Ok(Ok(c)) => {
            r.series_reported = Some(c.series);
            r.samples_reported = c.samples;
            if c.series != work.spec.series {
                r.problems.push(format!(
                    "the server reports {} series, {} were sent",
                    c.series, work.spec.series
                ));
            }
            if let Some(n) = c.samples
                && n != total
            {
                r.problems.push(format!(
                    "the server reports {n} samples in its head, {total} were sent"
                ));
            }
        }
        Ok(Err(e)) => r.problems.push(format!("counting series: {e:#}")),
        Err(_) => r.problems.push(format!(
            "counting series took over {} s",
            post_deadline.as_secs()
        )),
    }
    eprintln!("   flushing …");
    match tokio::time::timeout(post_deadline, server.flush_and_measure_disk(&admin)).await {
        Ok(Ok(d)) => {
            r.bytes_per_sample = Some(d.bytes as f64 / work.spec.total_samples().max(1) as f64);
            r.disk = Some(d);
        }
        Ok(Err(e)) => r.problems.push(format!("flush and disk size: {e:#}")),
        Err(_) => r
            .problems
            .push(format!("the flush took over {} s", post_deadline.as_secs())),
    }
    if kind == ServerKind::Lastmile && !r.ok() {
        r.problems.push(server.log_tail());
    }
    drop(server);
    Ok(())
}
