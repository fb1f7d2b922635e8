//! `lastmile bench logs`: log ingest and search on one lastmile.
//!
//! No peer log store is installable here (Grafana Loki is not packaged), so the figures
//! are absolute, printed beside the targets of the log-store issue. Steps:
//! 1. build every push request up front (snappy protobuf, what winston-loki and promtail
//!    send): `--lines` lines over `--streams` streams and the last hour, half JSON, half
//!    logfmt, each with a trace id (one trace per 8 lines of a stream) and a span id, and
//!    one line with a unique needle;
//! 2. start lastmile alone on a fresh directory and push them over `--connections`
//!    keep-alive connections; measure wall time and the server's CPU seconds;
//! 3. commit the index (`POST /api/v1/admin/logs/flush`), wait until background merges
//!    stop changing the size of `logs/` (two seconds unchanged, at most two minutes), and
//!    measure its bytes against the raw line bytes;
//! 4. time queries through the Loki API (median of `--query-runs`): the needle search,
//!    a trace id searched as text, and `sum(count_over_time(…))` over everything;
//! 5. stop the server and time `LogStore::lines_for_trace` on its directory: the probe
//!    trace (median of `--query-runs`) and 200 traces of random streams and times (p50,
//!    p99; each must come back with its 8 lines).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use clap::Args;
use lastmile_model::{Labels, LogBatch, LogEntry, LogStream, TraceId};
use serde::Serialize;

use crate::load::Rng;
use crate::measure;
use crate::report::{self, human_bytes, si};
use crate::servers::{Server, ServerKind, StartOptions, lastmile_bin_or_self};

/// Flags of `lastmile bench logs`.
#[derive(Args, Debug, Clone)]
#[command(
    after_help = "What it does: builds Loki push requests (snappy protobuf) for \
--lines lines, starts lastmile alone on a fresh temporary directory, pushes them over \
--connections connections, then measures lines/s, lines per server CPU-second, peak RSS, \
bytes on disk per raw byte after an index commit, and query latencies (needle search, a \
trace id searched as text, sum(count_over_time) over all lines, and the trace-id index \
lookup in-process). Progress goes to stderr, the table to stdout, all figures to a JSON \
file (--out). Build with --release first."
)]
pub struct LogsArgs {
    /// Lines to ingest.
    #[arg(long, default_value_t = 10_000_000, value_name = "N")]
    pub lines: u64,
    /// Streams (label sets) the lines are spread over.
    #[arg(long, default_value_t = 100, value_name = "N")]
    pub streams: u64,
    /// Lines per push request.
    #[arg(long, default_value_t = 2000, value_name = "N")]
    pub batch: u64,
    /// Concurrent keep-alive connections.
    #[arg(long, default_value_t = 4, value_name = "N")]
    pub connections: usize,
    /// Runs of each query; the median is reported.
    #[arg(long, default_value_t = 5, value_name = "N")]
    pub query_runs: usize,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Where to write the JSON results. Default: bench-results/logs-<UTC timestamp>.json.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// The lastmile binary to measure. Default: this executable.
    #[arg(long, value_name = "PATH")]
    pub lastmile_bin: Option<PathBuf>,
    /// Configuration file passed to `lastmile serve --config`.
    #[arg(long, value_name = "FILE")]
    pub lastmile_config: Option<PathBuf>,
    /// Seconds the whole load may take.
    #[arg(long, default_value_t = 3600, value_name = "SECONDS")]
    pub load_timeout: u64,
    /// Keep the server's temporary directory.
    #[arg(long)]
    pub keep_data: bool,
}

#[derive(Debug, Default, Serialize)]
pub struct LogsResult {
    pub started_at: String,
    pub lastmile_version: String,
    pub lines: u64,
    pub streams: u64,
    pub raw_line_bytes: u64,
    pub wall_secs: f64,
    pub lines_per_sec: f64,
    pub server_cpu_secs: f64,
    pub lines_per_cpu_sec: f64,
    pub raw_mb_per_cpu_sec: f64,
    pub peak_rss_bytes: u64,
    pub disk_bytes: u64,
    /// Seconds after the commit until the size of `logs/` stopped changing (merges).
    pub disk_settle_secs: f64,
    pub disk_per_raw_byte: f64,
    pub needle_search_ms: f64,
    pub needle_hits: usize,
    pub trace_text_search_ms: f64,
    pub trace_text_hits: usize,
    pub count_over_time_ms: f64,
    pub counted_lines: f64,
    pub trace_lookup_ms: f64,
    pub trace_lookup_lines: usize,
    /// Lookups of [`TRACE_SAMPLE`] traces spread over all streams and the whole hour.
    pub trace_sample_p50_ms: f64,
    pub trace_sample_p99_ms: f64,
    /// Sampled lookups that did not return their trace's lines.
    pub trace_sample_misses: usize,
    pub errors: Vec<String>,
}

const NEEDLE: &str = "needle-7f3a9c2e1b";
const TRACE_LINES: u64 = 8;
/// Traces looked up for the latency distribution.
const TRACE_SAMPLE: u64 = 200;

fn hex(rng: &mut Rng, bytes: usize) -> String {
    let mut s = String::with_capacity(bytes * 2);
    while s.len() < bytes * 2 {
        s.push_str(&format!("{:016x}", rng.next_u64()));
    }
    s.truncate(bytes * 2);
    s
}

fn trace_of(seed: u64, stream: u64, i: u64) -> String {
    let mut r = Rng::for_item(seed ^ 0x7472_6163, stream, i / TRACE_LINES);
    hex(&mut r, 16)
}

/// Line `i` of `stream`.
fn line(seed: u64, stream: u64, i: u64, needle: bool) -> String {
    const PATHS: [&str; 6] = [
        "/api/v1/users",
        "/api/v1/orders",
        "/api/v1/cart",
        "/health",
        "/login",
        "/api/v1/search",
    ];
    const MSGS: [&str; 4] = [
        "request completed",
        "upstream call finished",
        "cache miss",
        "slow query",
    ];
    let mut r = Rng::for_item(seed, stream, i);
    let level = match r.below(100) {
        0..=79 => "info",
        80..=91 => "debug",
        92..=97 => "warn",
        _ => "error",
    };
    let method = if r.below(4) == 0 { "POST" } else { "GET" };
    let path = format!("{}/{}", PATHS[r.below(6) as usize], r.below(100_000));
    let status = match r.below(100) {
        0..=89 => 200,
        90..=94 => 404,
        95..=97 => 500,
        _ => 302,
    };
    let dur = r.below(2000) as f64 / 10.0;
    let bytes = r.below(50_000);
    let user = r.below(10_000);
    let trace = trace_of(seed, stream, i);
    let span = hex(&mut r, 8);
    let msg = if needle {
        NEEDLE
    } else {
        MSGS[r.below(4) as usize]
    };
    if i.is_multiple_of(2) {
        format!(
            r#"{{"level":"{level}","msg":"{msg}","method":"{method}","path":"{path}","status":{status},"duration_ms":{dur},"bytes":{bytes},"user":"u-{user}","trace_id":"{trace}","span_id":"{span}"}}"#
        )
    } else {
        format!(
            r#"level={level} msg="{msg}" method={method} path={path} status={status} duration={dur}ms bytes={bytes} user=u-{user} trace_id={trace} span_id={span}"#
        )
    }
}

struct Work {
    bodies: Vec<Vec<u8>>,
    raw_bytes: u64,
    start_ns: i64,
    end_ns: i64,
    /// A trace whose lines the lookup must find.
    probe_trace: String,
}

fn build(args: &LogsArgs) -> Work {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos() as i64;
    let start_ns = now - 3_600_000_000_000;
    let per_stream = args.lines.div_ceil(args.streams);
    let step = (3_600_000_000_000 / per_stream.max(1) as i64).max(1);
    let needle_at = Rng::new(args.seed).below(args.lines.max(1));
    let labels: Vec<Labels> = (0..args.streams)
        .map(|s| {
            Labels::from_pairs([
                ("job", format!("svc-{}", s % 10)),
                ("instance", format!("host-{s}")),
                ("env", "bench".to_string()),
            ])
        })
        .collect();
    let mut bodies = Vec::new();
    let mut raw_bytes = 0u64;
    let lines_per_stream_per_request = (args.batch / args.streams.min(args.batch)).max(1);
    let streams_per_request = (args.batch / lines_per_stream_per_request).clamp(1, args.streams);
    let mut produced = 0u64;
    let mut i = 0u64;
    let started = Instant::now();
    let mut last_report = Instant::now();
    'outer: while i < per_stream {
        let rows = lines_per_stream_per_request.min(per_stream - i);
        for first in (0..args.streams).step_by(streams_per_request as usize) {
            let mut batch = LogBatch::default();
            for s in first..(first + streams_per_request).min(args.streams) {
                let mut entries = Vec::with_capacity(rows as usize);
                for k in 0..rows {
                    if produced >= args.lines {
                        break;
                    }
                    let n = i + k;
                    let text = line(args.seed, s, n, produced == needle_at);
                    raw_bytes += text.len() as u64;
                    entries.push(LogEntry::new(start_ns + n as i64 * step + s as i64, text));
                    produced += 1;
                }
                if !entries.is_empty() {
                    batch.streams.push(LogStream {
                        labels: labels[s as usize].clone(),
                        entries,
                    });
                }
            }
            if !batch.streams.is_empty() {
                let proto = lastmile_receivers::loki::encode_push_proto(&batch);
                bodies.push(
                    snap::raw::Encoder::new()
                        .compress_vec(&proto)
                        .unwrap_or_default(),
                );
            }
            if produced >= args.lines {
                break 'outer;
            }
        }
        i += rows;
        if last_report.elapsed() >= Duration::from_secs(5) {
            eprintln!(
                "  built {produced} of {} lines ({:.0} s)",
                args.lines,
                started.elapsed().as_secs_f64()
            );
            last_report = Instant::now();
        }
    }
    Work {
        bodies,
        raw_bytes,
        start_ns,
        end_ns: start_ns + per_stream as i64 * step + args.streams as i64 + 1,
        probe_trace: trace_of(args.seed, args.streams / 2, per_stream / 2),
    }
}

pub async fn run(args: LogsArgs) -> anyhow::Result<()> {
    if args.lines == 0
        || args.streams == 0
        || args.batch == 0
        || args.connections == 0
        || args.query_runs == 0
    {
        bail!("--lines, --streams, --batch, --connections and --query-runs must be at least 1");
    }
    let (started_at, out) = report::run_stamp("logs", &args.out);
    let lastmile_bin = lastmile_bin_or_self(&args.lastmile_bin)?;
    eprintln!(
        "building {} lines of push requests ({} streams, {} lines per request)…",
        args.lines, args.streams, args.batch
    );
    let work = Arc::new(build(&args));
    eprintln!(
        "  {} requests, {} of raw lines, {} on the wire",
        work.bodies.len(),
        human_bytes(work.raw_bytes as f64),
        human_bytes(work.bodies.iter().map(|b| b.len() as f64).sum())
    );
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.connections)
        .build()?;
    let opts = StartOptions {
        lastmile_bin: lastmile_bin.clone(),
        lastmile_config: args.lastmile_config.clone(),
        victoria_metrics_bin: PathBuf::new(),
        prometheus_bin: PathBuf::new(),
        startup_timeout: Duration::from_secs(120),
        keep_data: args.keep_data,
        extra_args: Vec::new(),
    };
    let mut result = LogsResult {
        started_at,
        lastmile_version: crate::servers::version(ServerKind::Lastmile, &lastmile_bin),
        lines: args.lines,
        streams: args.streams,
        raw_line_bytes: work.raw_bytes,
        ..Default::default()
    };
    let mut server = Server::start(ServerKind::Lastmile, &opts, &client).await?;
    eprintln!(
        "lastmile started at {} (pid {})",
        server.base_url, server.pid
    );
    let cpu0 = measure::cpu_seconds(server.pid)?;
    let started = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let acked = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let url = format!("{}/loki/api/v1/push", server.base_url);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..args.connections {
        let (client, url, work, next, acked, errors) = (
            client.clone(),
            url.clone(),
            work.clone(),
            next.clone(),
            acked.clone(),
            errors.clone(),
        );
        tasks.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(body) = work.bodies.get(i) else {
                    return;
                };
                let r = client
                    .post(&url)
                    .header("Content-Type", "application/x-protobuf")
                    .body(body.clone())
                    .send()
                    .await;
                match r {
                    Ok(r) if r.status().as_u16() == 204 => {
                        acked.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(r) => {
                        let status = r.status();
                        let text = r.text().await.unwrap_or_default();
                        errors
                            .lock()
                            .map(|mut e| e.push(format!("HTTP {status}: {text}")))
                            .ok();
                        return;
                    }
                    Err(e) => {
                        errors
                            .lock()
                            .map(|mut v| v.push(format!("transport: {e}")))
                            .ok();
                        return;
                    }
                }
            }
        });
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(args.load_timeout);
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    loop {
        tokio::select! {
            j = tasks.join_next() => if j.is_none() { break },
            _ = tick.tick() => {
                let done = acked.load(Ordering::Relaxed);
                eprintln!("  {done} of {} requests acknowledged ({:.0} s)", work.bodies.len(), started.elapsed().as_secs_f64());
            }
            _ = tokio::time::sleep_until(deadline) => {
                tasks.abort_all();
                errors.lock().map(|mut e| e.push("load timeout".into())).ok();
                break;
            }
        }
    }
    result.wall_secs = started.elapsed().as_secs_f64();
    result.server_cpu_secs = measure::cpu_seconds(server.pid)? - cpu0;
    result.errors = errors.lock().map(|e| e.clone()).unwrap_or_default();
    let acked_requests = acked.load(Ordering::Relaxed) as usize;
    if acked_requests != work.bodies.len() {
        result.errors.push(format!(
            "{acked_requests} of {} requests acknowledged",
            work.bodies.len()
        ));
    }
    result.lines_per_sec = args.lines as f64 / result.wall_secs;
    result.lines_per_cpu_sec = args.lines as f64 / result.server_cpu_secs.max(1e-9);
    result.raw_mb_per_cpu_sec = work.raw_bytes as f64 / 1e6 / result.server_cpu_secs.max(1e-9);

    eprintln!("committing the index…");
    let flush = client
        .post(format!("{}/api/v1/admin/logs/flush", server.base_url))
        .send()
        .await?;
    if !flush.status().is_success() {
        bail!(
            "log flush failed: {}",
            flush.text().await.unwrap_or_default()
        );
    }
    result.peak_rss_bytes = measure::memory(server.pid).map(|m| m.peak_rss).unwrap_or(0);
    // Background segment merges go on after the commit, holding old and new segments
    // at once: the size that counts is the one they settle at.
    let logs_dir = server.data_dir.join("logs");
    let settle_started = Instant::now();
    let mut size = measure::dir_size(&logs_dir)?;
    let mut unchanged = 0;
    while unchanged < 4 && settle_started.elapsed() < Duration::from_secs(120) {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = measure::dir_size(&logs_dir)?;
        unchanged = if now == size { unchanged + 1 } else { 0 };
        size = now;
    }
    result.disk_settle_secs = settle_started.elapsed().as_secs_f64();
    result.disk_bytes = size;
    result.disk_per_raw_byte = result.disk_bytes as f64 / work.raw_bytes.max(1) as f64;

    eprintln!("timing queries ({} runs each)…", args.query_runs);
    let (start, end) = (work.start_ns, work.end_ns);
    let range = |q: &str| {
        format!(
            "{}/loki/api/v1/query_range?query={}&start={start}&end={end}&limit=100",
            server.base_url,
            form_urlencoded::byte_serialize(q.as_bytes()).collect::<String>()
        )
    };
    let (ms, v) = timed(
        &client,
        &range(&format!(r#"{{env="bench"}} |= "{NEEDLE}""#)),
        args.query_runs,
    )
    .await?;
    result.needle_search_ms = ms;
    result.needle_hits = count_lines(&v);
    let (ms, v) = timed(
        &client,
        &range(&format!(r#"{{env="bench"}} |= "{}""#, work.probe_trace)),
        args.query_runs,
    )
    .await?;
    result.trace_text_search_ms = ms;
    result.trace_text_hits = count_lines(&v);
    let secs = (end - start) / 1_000_000_000 + 1;
    let instant = format!(
        "{}/loki/api/v1/query?query={}&time={end}",
        server.base_url,
        form_urlencoded::byte_serialize(
            format!(r#"sum(count_over_time({{env="bench"}}[{secs}s]))"#).as_bytes()
        )
        .collect::<String>()
    );
    let (ms, v) = timed(&client, &instant, args.query_runs).await?;
    result.count_over_time_ms = ms;
    result.counted_lines = v
        .pointer("/data/result/0/value/1")
        .and_then(|x| x.as_str())
        .and_then(|x| x.parse().ok())
        .unwrap_or(0.0);

    let data_dir = server.data_dir.clone();
    // Stop the server (its WAL holds nothing uncommitted after the flush) and look the
    // trace up through the store's own index.
    server.kill();
    let trace = TraceId::parse_any(&work.probe_trace).context("probe trace")?;
    let runs = args.query_runs;
    // Whole traces (8 lines each) of random streams, anywhere in the hour.
    let per_stream = args.lines.div_ceil(args.streams);
    let mut pick = Rng::new(args.seed ^ 0x7361_6d70);
    let sample: Vec<TraceId> = (0..TRACE_SAMPLE.min(args.lines / args.streams / TRACE_LINES))
        .filter_map(|_| {
            let stream = pick.below(args.streams);
            let i = pick.below(per_stream / TRACE_LINES) * TRACE_LINES;
            TraceId::parse_any(&trace_of(args.seed, stream, i))
        })
        .collect();
    let lookups = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
        let store = lastmile_log_store::LogStore::open(&data_dir.join("logs"), Default::default())?;
        let mut times = Vec::new();
        let mut n = 0;
        for _ in 0..runs {
            let t = Instant::now();
            n = store
                .lines_for_trace(trace, i64::MIN, i64::MAX, 10_000)?
                .len();
            times.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        let mut sampled = Vec::new();
        let mut misses = 0;
        for t in sample {
            let started = Instant::now();
            let found = store.lines_for_trace(t, i64::MIN, i64::MAX, 10_000)?.len();
            sampled.push(started.elapsed().as_secs_f64() * 1000.0);
            misses += usize::from(found as u64 != TRACE_LINES);
        }
        Ok((median(&mut times), n, sampled, misses))
    })
    .await??;
    let (ms, n, mut sampled, misses) = lookups;
    result.trace_lookup_ms = ms;
    result.trace_lookup_lines = n;
    if !sampled.is_empty() {
        sampled.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
        result.trace_sample_p50_ms = sampled[sampled.len() / 2];
        result.trace_sample_p99_ms = sampled[(sampled.len() * 99 / 100).min(sampled.len() - 1)];
    }
    result.trace_sample_misses = misses;
    drop(server);

    println!("{}", render(&result));
    if let Some(dir) = out.parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&out, serde_json::to_vec_pretty(&result)?)?;
    eprintln!("results written to {}", out.display());
    if !result.errors.is_empty()
        || result.needle_hits != 1
        || result.counted_lines as u64 != args.lines
        || result.trace_lookup_lines as u64 != TRACE_LINES.min(args.lines)
        || result.trace_sample_misses != 0
    {
        bail!(
            "the run is not valid: errors {:?}, needle hits {} (want 1), counted {} (want {}), trace lines {} (want {TRACE_LINES}), sampled traces without their {TRACE_LINES} lines {}",
            result.errors,
            result.needle_hits,
            result.counted_lines,
            args.lines,
            result.trace_lookup_lines,
            result.trace_sample_misses
        );
    }
    Ok(())
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    v[v.len() / 2]
}

async fn timed(
    client: &reqwest::Client,
    url: &str,
    runs: usize,
) -> anyhow::Result<(f64, serde_json::Value)> {
    let mut times = Vec::new();
    let mut last = serde_json::Value::Null;
    for _ in 0..runs {
        let t = Instant::now();
        let r = client
            .get(url)
            .send()
            .await
            .with_context(|| format!("GET {url}"))?;
        let status = r.status();
        let body = r.bytes().await?;
        times.push(t.elapsed().as_secs_f64() * 1000.0);
        if !status.is_success() {
            bail!(
                "GET {url}: HTTP {status}: {}",
                String::from_utf8_lossy(&body)
            );
        }
        last = serde_json::from_slice(&body)?;
    }
    Ok((median(&mut times), last))
}

fn count_lines(v: &serde_json::Value) -> usize {
    v.pointer("/data/result")
        .and_then(|r| r.as_array())
        .map(|streams| {
            streams
                .iter()
                .map(|s| s["values"].as_array().map_or(0, Vec::len))
                .sum()
        })
        .unwrap_or(0)
}

fn render(r: &LogsResult) -> String {
    let mut s = String::new();
    s.push_str(&format!(
        "lastmile bench logs — {} lines over {} streams ({} raw), {}\n\n",
        si(r.lines as f64),
        r.streams,
        human_bytes(r.raw_line_bytes as f64),
        r.lastmile_version
    ));
    s.push_str("| figure | lastmile | target (issue 4) |\n|---|---|---|\n");
    s.push_str(&format!(
        "| ingest lines/s (wall) | {} | |\n",
        si(r.lines_per_sec)
    ));
    s.push_str(&format!(
        "| lines per server CPU-second | {} | ≥ 100k |\n",
        si(r.lines_per_cpu_sec)
    ));
    s.push_str(&format!(
        "| raw MB per server CPU-second | {:.1} | (Quickwit ~27 MB/s per indexer) |\n",
        r.raw_mb_per_cpu_sec
    ));
    s.push_str(&format!(
        "| server CPU seconds | {:.1} | |\n",
        r.server_cpu_secs
    ));
    s.push_str(&format!(
        "| peak RSS | {} | |\n",
        human_bytes(r.peak_rss_bytes as f64)
    ));
    s.push_str(&format!(
        "| disk bytes per raw byte (merges settled after {:.0} s) | {:.3} ({}) | ≤ 0.15 |\n",
        r.disk_settle_secs,
        r.disk_per_raw_byte,
        human_bytes(r.disk_bytes as f64)
    ));
    s.push_str(&format!(
        "| needle search, all lines ({} hit) | {:.1} ms | < 100 ms |\n",
        r.needle_hits, r.needle_search_ms
    ));
    s.push_str(&format!(
        "| trace id searched as text ({} hits) | {:.1} ms | |\n",
        r.trace_text_hits, r.trace_text_search_ms
    ));
    s.push_str(&format!(
        "| sum(count_over_time) over all lines (= {}) | {:.1} ms | |\n",
        r.counted_lines, r.count_over_time_ms
    ));
    s.push_str(&format!(
        "| trace-id index lookup ({} lines) | {:.2} ms | fast |\n",
        r.trace_lookup_lines, r.trace_lookup_ms
    ));
    s.push_str(&format!(
        "| {TRACE_SAMPLE} traces of random streams and times: lookup p50 / p99 | {:.2} / {:.2} ms | < 10 ms p99 with the spans |\n",
        r.trace_sample_p50_ms, r.trace_sample_p99_ms
    ));
    s
}
