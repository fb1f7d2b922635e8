//! `lastmile bench spans`: span ingest over OTLP/HTTP protobuf.
//!
//! Builds OTLP `ExportTraceServiceRequest`s once (traces of several spans from a fleet of
//! services, attributes as HTTP and database instrumentation sets them), starts lastmile
//! alone on a fresh data directory, posts them to `/v1/traces` over keep-alive
//! connections, and measures spans/s, server CPU seconds and spans per CPU-second, peak
//! RSS, and the span store's WAL bytes per span. Then it checks that every span was
//! stored (the store's own counter and a sample of traces read back by id, whose lookup
//! latency it reports). No peer trace backend is installable here, so the figures are
//! absolute.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use clap::Args;
use lastmile_receivers::otlp::proto::ExportTraceServiceRequest;
use lastmile_receivers::otlp::proto::common::{
    AnyValue, InstrumentationScope, KeyValue, any_value::Value,
};
use lastmile_receivers::otlp::proto::resource::Resource;
use lastmile_receivers::otlp::proto::trace::{ResourceSpans, ScopeSpans, Span, Status, span};
use prost::Message;
use serde::Serialize;

use crate::load::Rng;
use crate::measure;
use crate::report::{self, Machine, human_bytes, si, write_json};
use crate::servers::{Server, ServerKind, StartOptions, lastmile_bin_or_self, which};

/// Flags of `lastmile bench spans`.
#[derive(Args, Debug, Clone)]
#[command(
    after_help = "What it does: builds the OTLP requests once, then for each repetition starts \
lastmile alone (fresh temporary data directory, free loopback port), posts every request to \
POST /v1/traces (application/x-protobuf) over --connections keep-alive connections, and measures \
wall time and spans/s, server CPU seconds (utime+stime from /proc/PID/stat) and spans per \
CPU-second, peak RSS (VmHWM), and the bytes of the span store's directory per span. It then \
checks the store's counter (lastmile_traces_spans_appended_total) equals the spans sent, reads \
--lookups traces back by id (GET /api/traces/{id}, each must have all its spans) and reports \
their latency. The exit status is non-zero if any request was refused or any span is missing. \
Build with --release first."
)]
pub struct SpansArgs {
    /// Total spans to send.
    #[arg(long, default_value_t = 1_000_000, value_name = "N")]
    pub spans: u64,
    /// Spans per trace (one server span and its children).
    #[arg(long, default_value_t = 8, value_name = "N")]
    pub spans_per_trace: u64,
    /// Spans per request (an SDK's batch span processor sends up to 512 by default).
    #[arg(long, default_value_t = 512, value_name = "N")]
    pub spans_per_request: u64,
    /// Distinct services (resources) the traces come from.
    #[arg(long, default_value_t = 20, value_name = "N")]
    pub services: u64,
    /// Concurrent keep-alive HTTP connections.
    #[arg(long, default_value_t = 4, value_name = "N")]
    pub connections: usize,
    /// gzip the request bodies (Content-Encoding: gzip), as the collector's exporters do.
    #[arg(long)]
    pub gzip: bool,
    /// Traces read back by id after the load.
    #[arg(long, default_value_t = 200, value_name = "N")]
    pub lookups: u64,
    /// Runs, each on a fresh server; the table shows medians.
    #[arg(long, default_value_t = 1, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=20))]
    pub repeat: u64,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Where to write the JSON results. Default: bench-results/spans-<UTC timestamp>.json.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// The lastmile binary to measure. Default: this executable.
    #[arg(long, value_name = "PATH")]
    pub lastmile_bin: Option<PathBuf>,
    /// Configuration file passed to `lastmile serve --config`.
    #[arg(long, value_name = "FILE")]
    pub lastmile_config: Option<PathBuf>,
    /// Seconds the server may take to start.
    #[arg(long, default_value_t = 120, value_name = "SECONDS")]
    pub startup_timeout: u64,
    /// Seconds the whole load may take.
    #[arg(long, default_value_t = 1800, value_name = "SECONDS")]
    pub load_timeout: u64,
    /// Seconds one request may take.
    #[arg(long, default_value_t = 120, value_name = "SECONDS")]
    pub request_timeout: u64,
    /// Before each run, wait up to this many seconds for the machine to be idle (see
    /// `lastmile bench ingest --help`); 0 disables the wait.
    #[arg(long, default_value_t = 600, value_name = "SECONDS")]
    pub idle_wait: u64,
    /// Keep each server's temporary directory.
    #[arg(long)]
    pub keep_data: bool,
}

/// The pre-encoded load.
struct Workload {
    /// Request bodies, per connection.
    queues: Vec<Vec<(Vec<u8>, u64)>>,
    requests: u64,
    spans: u64,
    raw_bytes: u64,
    body_bytes: u64,
    /// Trace ids (hex) to read back, with their span counts.
    probes: Vec<(String, u64)>,
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct SpansRun {
    pub problems: Vec<String>,
    pub warnings: Vec<String>,
    pub wall_secs: f64,
    pub spans_per_sec: f64,
    pub server_cpu_secs: f64,
    pub cores_used: f64,
    pub spans_per_cpu_sec: f64,
    pub generator_cpu_secs: f64,
    pub other_cpu_secs: f64,
    pub peak_rss_bytes: u64,
    pub rss_after_load_bytes: u64,
    pub store_bytes: u64,
    pub store_bytes_per_span: f64,
    pub spans_stored: u64,
    pub lookup_p50_ms: f64,
    pub lookup_p99_ms: f64,
}

#[derive(Debug, Serialize)]
pub struct SpansReport {
    pub benchmark: &'static str,
    pub started_at: String,
    pub machine: Machine,
    pub version: String,
    pub spans: u64,
    pub spans_per_trace: u64,
    pub spans_per_request: u64,
    pub services: u64,
    pub connections: usize,
    pub gzip: bool,
    pub requests: u64,
    pub raw_bytes: u64,
    pub body_bytes: u64,
    pub runs: Vec<SpansRun>,
    /// Medians over the runs.
    pub median: SpansRun,
}

fn kv(k: &str, v: Value) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue { value: Some(v) }),
        ..Default::default()
    }
}

fn s(v: impl Into<String>) -> Value {
    Value::StringValue(v.into())
}

const ROUTES: [&str; 6] = [
    "/api/v1/cart",
    "/api/v1/checkout",
    "/api/v1/users/{id}",
    "/api/v1/orders",
    "/healthz",
    "/api/v1/search",
];

/// One trace: a server span and `n - 1` children (database, cache, downstream calls).
fn trace(rng: &mut Rng, n: u64, end_ns: u64) -> Vec<Span> {
    let mut trace_id = [0u8; 16];
    trace_id[..8].copy_from_slice(&rng.next_u64().to_be_bytes());
    trace_id[8..].copy_from_slice(&rng.next_u64().to_be_bytes());
    let root_id = rng.next_u64().max(1).to_be_bytes();
    let duration = 1_000_000 + rng.below(200_000_000);
    let start = end_ns - duration - rng.below(60_000_000_000);
    let route = ROUTES[rng.below(ROUTES.len() as u64) as usize];
    let status = if rng.below(50) == 0 { 500 } else { 200 };
    let mut spans = Vec::with_capacity(n as usize);
    spans.push(Span {
        trace_id: trace_id.to_vec(),
        span_id: root_id.to_vec(),
        name: format!("GET {route}"),
        kind: span::SpanKind::Server as i32,
        start_time_unix_nano: start,
        end_time_unix_nano: start + duration,
        attributes: vec![
            kv("http.request.method", s("GET")),
            kv("http.route", s(route)),
            kv(
                "url.path",
                s(route.replace("{id}", &rng.below(100_000).to_string())),
            ),
            kv("http.response.status_code", Value::IntValue(status)),
            kv("server.address", s("api.internal")),
            kv("network.protocol.version", s("1.1")),
        ],
        status: Some(Status {
            code: if status == 500 { 2 } else { 0 },
            message: String::new(),
        }),
        ..Default::default()
    });
    for i in 1..n {
        let child_start = start + rng.below(duration / 2);
        let child_duration = rng.below(duration / 2).max(1000);
        let (name, kind, attrs) = match i % 3 {
            1 => (
                "SELECT orders".to_string(),
                span::SpanKind::Client,
                vec![
                    kv("db.system", s("postgresql")),
                    kv("db.namespace", s("shop")),
                    kv(
                        "db.query.text",
                        s("SELECT id, total FROM orders WHERE user_id = $1"),
                    ),
                    kv("server.address", s("db-1")),
                ],
            ),
            2 => (
                "GET".to_string(),
                span::SpanKind::Client,
                vec![
                    kv("db.system", s("redis")),
                    kv("db.operation.name", s("GET")),
                    kv("server.address", s("cache-1")),
                ],
            ),
            _ => (
                format!("render {i}"),
                span::SpanKind::Internal,
                vec![kv("template", s("cart.html"))],
            ),
        };
        spans.push(Span {
            trace_id: trace_id.to_vec(),
            span_id: rng.next_u64().max(1).to_be_bytes().to_vec(),
            parent_span_id: root_id.to_vec(),
            name,
            kind: kind as i32,
            start_time_unix_nano: child_start,
            end_time_unix_nano: child_start + child_duration,
            attributes: attrs,
            ..Default::default()
        });
    }
    spans
}

fn build(a: &SpansArgs) -> Workload {
    let end_ns = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let mut rng = Rng::new(a.seed);
    let traces_total = a.spans.div_ceil(a.spans_per_trace);
    let traces_per_request = (a.spans_per_request / a.spans_per_trace).max(1);
    let mut w = Workload {
        queues: vec![Vec::new(); a.connections],
        requests: 0,
        spans: 0,
        raw_bytes: 0,
        body_bytes: 0,
        probes: Vec::new(),
    };
    let probe_every = (traces_total / a.lookups.max(1)).max(1);
    let mut t = 0u64;
    while t < traces_total {
        let n = traces_per_request.min(traces_total - t);
        // A request mixes a few services, as a collector's batches do.
        let mut by_service: Vec<Vec<Span>> = vec![Vec::new(); a.services as usize];
        let mut spans_in_request = 0;
        for _ in 0..n {
            let svc = rng.below(a.services) as usize;
            let spans = trace(&mut rng, a.spans_per_trace, end_ns);
            if t.is_multiple_of(probe_every) && (w.probes.len() as u64) < a.lookups {
                let id: String = spans[0]
                    .trace_id
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect();
                w.probes.push((id, spans.len() as u64));
            }
            spans_in_request += spans.len() as u64;
            by_service[svc].extend(spans);
            t += 1;
        }
        let req = ExportTraceServiceRequest {
            resource_spans: by_service
                .into_iter()
                .enumerate()
                .filter(|(_, spans)| !spans.is_empty())
                .map(|(i, spans)| ResourceSpans {
                    resource: Some(Resource {
                        attributes: vec![
                            kv("service.name", s(format!("svc-{i}"))),
                            kv("service.instance.id", s(format!("svc-{i}-pod-1"))),
                            kv("host.name", s(format!("node-{}", i % 5))),
                            kv("telemetry.sdk.language", s("go")),
                            kv("telemetry.sdk.name", s("opentelemetry")),
                        ],
                        ..Default::default()
                    }),
                    scope_spans: vec![ScopeSpans {
                        scope: Some(InstrumentationScope {
                            name: "go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
                                .into(),
                            version: "0.60.0".into(),
                            ..Default::default()
                        }),
                        spans,
                        ..Default::default()
                    }],
                    ..Default::default()
                })
                .collect(),
        };
        let raw = req.encode_to_vec();
        let body = if a.gzip { gzip(&raw) } else { raw.clone() };
        w.raw_bytes += raw.len() as u64;
        w.body_bytes += body.len() as u64;
        let c = (w.requests % a.connections as u64) as usize;
        w.queues[c].push((body, spans_in_request));
        w.requests += 1;
        w.spans += spans_in_request;
    }
    w
}

fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    // Writing into a Vec cannot fail.
    let _ = e.write_all(data);
    e.finish().unwrap_or_default()
}

pub async fn run(args: SpansArgs) -> anyhow::Result<()> {
    if args.connections == 0 || args.spans_per_trace == 0 || args.services == 0 || args.spans == 0 {
        bail!("--spans, --spans-per-trace, --services and --connections must be at least 1");
    }
    let (started_at, out) = report::run_stamp("spans", &args.out);
    let bin = lastmile_bin_or_self(&args.lastmile_bin)?;
    let bin = which(&bin).with_context(|| format!("{} is not an executable", bin.display()))?;
    let opts = StartOptions {
        lastmile_bin: bin,
        lastmile_config: args.lastmile_config.clone(),
        victoria_metrics_bin: PathBuf::new(),
        prometheus_bin: PathBuf::new(),
        startup_timeout: Duration::from_secs(args.startup_timeout),
        keep_data: args.keep_data,
        extra_args: Vec::new(),
    };
    eprintln!("building {} spans …", si(args.spans as f64));
    let a = args.clone();
    let t0 = Instant::now();
    let work = Arc::new(
        tokio::task::spawn_blocking(move || build(&a))
            .await
            .context("building the requests panicked")?,
    );
    eprintln!(
        "built {} requests in {:.1} s: {} protobuf{}",
        work.requests,
        t0.elapsed().as_secs_f64(),
        human_bytes(work.raw_bytes as f64),
        if args.gzip {
            format!(", {} gzip", human_bytes(work.body_bytes as f64))
        } else {
            String::new()
        }
    );
    let mut runs = Vec::new();
    for rep in 0..args.repeat {
        eprintln!("-- run {} of {}", rep + 1, args.repeat);
        let mut r = SpansRun::default();
        if args.idle_wait > 0
            && let Err(busy) =
                crate::measure::wait_for_idle(Duration::from_secs(args.idle_wait)).await
        {
            r.warnings.push(format!(
                "the machine was still busy when the run started ({busy:.2} cores used by others)"
            ));
        }
        if let Err(e) = run_one(&args, &opts, work.clone(), &mut r).await {
            r.problems.push(format!("{e:#}"));
        }
        for p in &r.problems {
            eprintln!("   PROBLEM: {p}");
        }
        for w in &r.warnings {
            eprintln!("   WARNING: {w}");
        }
        runs.push(r);
    }
    let median = median_run(&runs);
    let report = SpansReport {
        benchmark: "spans",
        started_at,
        machine: Machine::probe(),
        version: format!("lastmile {}", env!("CARGO_PKG_VERSION")),
        spans: work.spans,
        spans_per_trace: args.spans_per_trace,
        spans_per_request: args.spans_per_request,
        services: args.services,
        connections: args.connections,
        gzip: args.gzip,
        requests: work.requests,
        raw_bytes: work.raw_bytes,
        body_bytes: work.body_bytes,
        runs,
        median,
    };
    print!("{}", render(&report));
    write_json(&report, &out)?;
    println!("results written to {}", out.display());
    if report.runs.iter().any(|r| !r.problems.is_empty()) {
        bail!("some runs had problems (see above)");
    }
    Ok(())
}

async fn run_one(
    args: &SpansArgs,
    opts: &StartOptions,
    work: Arc<Workload>,
    r: &mut SpansRun,
) -> anyhow::Result<()> {
    let client = reqwest::Client::builder()
        .no_proxy()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(args.connections)
        .timeout(Duration::from_secs(args.request_timeout))
        .build()
        .context("cannot build the HTTP client")?;
    let mut server = Server::start(ServerKind::Lastmile, opts, &client).await?;
    let pid = server.pid;
    eprintln!("   started pid {pid} at {}", server.base_url);
    let url = format!("{}/v1/traces", server.base_url);
    let cpu0 = measure::cpu_seconds(pid)?;
    let own0 = measure::own_cpu_seconds()?;
    let busy0 = measure::machine_busy_seconds()?;
    let acked = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..work.queues.len() {
        let (client, url, work) = (client.clone(), url.clone(), work.clone());
        let (acked, failed, errors) = (acked.clone(), failed.clone(), errors.clone());
        let gzip = args.gzip;
        tasks.spawn(async move {
            for (body, spans) in &work.queues[c] {
                let mut req = client
                    .post(&url)
                    .header("Content-Type", "application/x-protobuf")
                    .body(body.clone());
                if gzip {
                    req = req.header("Content-Encoding", "gzip");
                }
                let outcome = match req.send().await {
                    Ok(resp) => {
                        let status = resp.status();
                        match resp.bytes().await {
                            Ok(b) if status.is_success() && b.is_empty() => Ok(()),
                            // A 200 with a body carries partial_success: some were refused.
                            Ok(b) if status.is_success() => {
                                Err(format!("partial success: {}", String::from_utf8_lossy(&b)))
                            }
                            Ok(b) => Err(format!("HTTP {status}: {}", String::from_utf8_lossy(&b))),
                            Err(e) => Err(e.to_string()),
                        }
                    }
                    Err(e) => Err(e.to_string()),
                };
                match outcome {
                    Ok(()) => {
                        acked.fetch_add(*spans, Ordering::Relaxed);
                    }
                    Err(e) => {
                        failed.fetch_add(1, Ordering::Relaxed);
                        if let Ok(mut v) = errors.lock()
                            && v.len() < 5
                        {
                            v.push(e);
                        }
                    }
                }
            }
        });
    }
    let deadline = Duration::from_secs(args.load_timeout);
    let all_done = async { while tasks.join_next().await.is_some() {} };
    let mut ticker = tokio::time::interval(Duration::from_secs(5));
    ticker.tick().await;
    tokio::pin!(all_done);
    let timed_out = loop {
        tokio::select! {
            _ = &mut all_done => break false,
            _ = ticker.tick() => {
                let n = acked.load(Ordering::Relaxed);
                eprintln!("   {:>5.0} s  {}/{} spans  RSS {}", started.elapsed().as_secs_f64(), si(n as f64), si(work.spans as f64),
                    human_bytes(measure::memory(pid).map(|m| m.rss).unwrap_or(0) as f64));
                if started.elapsed() >= deadline { break true; }
            }
        }
    };
    let wall = started.elapsed().as_secs_f64();
    let cpu = measure::cpu_seconds(pid)? - cpu0;
    let own = measure::own_cpu_seconds()? - own0;
    let busy = measure::machine_busy_seconds()? - busy0;
    let mem = measure::memory(pid)?;
    if timed_out {
        r.problems.push(format!(
            "the load did not finish within {} s",
            deadline.as_secs()
        ));
    }
    let failed = failed.load(Ordering::Relaxed);
    if failed > 0 {
        r.problems.push(format!(
            "{failed} requests failed: {:?}",
            errors.lock().map(|e| e.clone()).unwrap_or_default()
        ));
    }
    let spans = acked.load(Ordering::Relaxed) as f64;
    r.wall_secs = wall;
    r.spans_per_sec = spans / wall.max(1e-9);
    r.server_cpu_secs = cpu;
    r.cores_used = cpu / wall.max(1e-9);
    r.spans_per_cpu_sec = if cpu > 0.0 { spans / cpu } else { 0.0 };
    r.generator_cpu_secs = own;
    r.other_cpu_secs = (busy - cpu - own).max(0.0);
    if r.other_cpu_secs > 0.1 * cpu && r.other_cpu_secs > 0.5 {
        r.warnings.push(format!(
            "the machine was busy: other processes used {:.1} CPU-s during the load (the server {cpu:.1})",
            r.other_cpu_secs
        ));
    }
    r.peak_rss_bytes = mem.peak_rss;
    r.rss_after_load_bytes = mem.rss;
    eprintln!(
        "   done: {} spans/s, {} spans per CPU-s, peak RSS {}",
        si(r.spans_per_sec),
        si(r.spans_per_cpu_sec),
        human_bytes(mem.peak_rss as f64)
    );

    // Every span stored: the store's counter, and traces read back by id.
    let metrics = client
        .get(format!("{}/metrics", server.base_url))
        .send()
        .await?
        .text()
        .await?;
    r.spans_stored = metrics
        .lines()
        .find_map(|l| l.strip_prefix("lastmile_traces_spans_appended_total "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .unwrap_or(0.0) as u64;
    if r.spans_stored != work.spans {
        r.problems.push(format!(
            "the span store counted {} spans, {} were sent",
            r.spans_stored, work.spans
        ));
    }
    let mut latencies = Vec::with_capacity(work.probes.len());
    for (id, n) in &work.probes {
        let t = Instant::now();
        let resp = client
            .get(format!("{}/api/traces/{id}", server.base_url))
            .send()
            .await?;
        let status = resp.status();
        let body = resp.text().await?;
        latencies.push(t.elapsed().as_secs_f64() * 1000.0);
        let found = body.matches("\"spanId\"").count() as u64;
        if !status.is_success() || found != *n {
            r.problems
                .push(format!("trace {id}: HTTP {status}, {found} of {n} spans"));
            break;
        }
    }
    latencies.sort_by(f64::total_cmp);
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 - 1.0) * p).round() as usize)
            .copied()
            .unwrap_or(0.0)
    };
    r.lookup_p50_ms = pct(0.5);
    r.lookup_p99_ms = pct(0.99);
    r.store_bytes = measure::dir_size(&server.data_dir.join("traces")).unwrap_or(0);
    r.store_bytes_per_span = r.store_bytes as f64 / work.spans.max(1) as f64;
    if !server.is_running() {
        bail!("lastmile is no longer running; {}", server.log_tail());
    }
    if !r.problems.is_empty() {
        r.problems.push(server.log_tail());
    }
    Ok(())
}

fn median_run(runs: &[SpansRun]) -> SpansRun {
    let med = |f: &dyn Fn(&SpansRun) -> f64| -> f64 {
        let mut v: Vec<f64> = runs
            .iter()
            .filter(|r| r.problems.is_empty())
            .map(f)
            .collect();
        if v.is_empty() {
            return 0.0;
        }
        v.sort_by(f64::total_cmp);
        let n = v.len();
        if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        }
    };
    SpansRun {
        problems: runs.iter().flat_map(|r| r.problems.clone()).collect(),
        warnings: runs.iter().flat_map(|r| r.warnings.clone()).collect(),
        wall_secs: med(&|r| r.wall_secs),
        spans_per_sec: med(&|r| r.spans_per_sec),
        server_cpu_secs: med(&|r| r.server_cpu_secs),
        cores_used: med(&|r| r.cores_used),
        spans_per_cpu_sec: med(&|r| r.spans_per_cpu_sec),
        generator_cpu_secs: med(&|r| r.generator_cpu_secs),
        other_cpu_secs: med(&|r| r.other_cpu_secs),
        peak_rss_bytes: med(&|r| r.peak_rss_bytes as f64) as u64,
        rss_after_load_bytes: med(&|r| r.rss_after_load_bytes as f64) as u64,
        store_bytes: med(&|r| r.store_bytes as f64) as u64,
        store_bytes_per_span: med(&|r| r.store_bytes_per_span),
        spans_stored: med(&|r| r.spans_stored as f64) as u64,
        lookup_p50_ms: med(&|r| r.lookup_p50_ms),
        lookup_p99_ms: med(&|r| r.lookup_p99_ms),
    }
}

fn render(rep: &SpansReport) -> String {
    use std::fmt::Write as _;
    let m = &rep.median;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "\nlastmile bench spans — {} — {} CPUs, {} — {}",
        rep.started_at,
        rep.machine.cpus,
        human_bytes(rep.machine.mem_total_bytes as f64),
        rep.version
    );
    let _ = writeln!(
        s,
        "{} spans ({} per trace, {} services) in {} OTLP/HTTP protobuf requests of ~{} spans{}, {} connections; {:.0} B/span on the wire; median of {} run(s)\n",
        si(rep.spans as f64),
        rep.spans_per_trace,
        rep.services,
        rep.requests,
        rep.spans_per_request,
        if rep.gzip { ", gzip" } else { "" },
        rep.connections,
        rep.body_bytes as f64 / rep.spans.max(1) as f64,
        rep.runs.len()
    );
    let rows = [
        ("spans/s", si(m.spans_per_sec)),
        ("server CPU s", format!("{:.1}", m.server_cpu_secs)),
        ("cores used", format!("{:.2}", m.cores_used)),
        ("spans per CPU-second", si(m.spans_per_cpu_sec)),
        ("peak RSS", human_bytes(m.peak_rss_bytes as f64)),
        (
            "RSS after the load",
            human_bytes(m.rss_after_load_bytes as f64),
        ),
        (
            "span store bytes per span (WAL + blocks)",
            format!("{:.0}", m.store_bytes_per_span),
        ),
        (
            "trace by id, p50 / p99 (head)",
            format!("{:.2} / {:.2} ms", m.lookup_p50_ms, m.lookup_p99_ms),
        ),
        (
            "generator CPU s / other CPU s",
            format!("{:.1} / {:.1}", m.generator_cpu_secs, m.other_cpu_secs),
        ),
    ];
    for (k, v) in rows {
        let _ = writeln!(s, "  {k:<44} {v}");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use lastmile_receivers::otlp::{Encoding, decode_request, spans_from_request};

    #[test]
    fn workload_is_valid_otlp_and_counts_add_up() {
        let args = SpansArgs {
            spans: 1000,
            spans_per_trace: 8,
            spans_per_request: 100,
            services: 3,
            connections: 2,
            gzip: false,
            lookups: 5,
            repeat: 1,
            seed: 7,
            out: None,
            lastmile_bin: None,
            lastmile_config: None,
            startup_timeout: 1,
            load_timeout: 1,
            request_timeout: 1,
            idle_wait: 0,
            keep_data: false,
        };
        let w = build(&args);
        assert_eq!(w.spans, 1000);
        assert_eq!(w.probes.len(), 5);
        let mut total = 0;
        for (body, n) in w.queues.iter().flatten() {
            let req = decode_request(Encoding::Protobuf, body, "traces").unwrap();
            let (batch, refused) = spans_from_request(req).unwrap();
            assert!(refused.is_empty());
            assert_eq!(batch.span_count() as u64, *n);
            total += n;
        }
        assert_eq!(total, 1000);
        assert_eq!(w.requests, 125_u64.div_ceil(12));
    }
}
