//! `lastmile bench`: runs lastmile and its peers on the same load in the same run.
//!
//! `lastmile bench ingest` starts lastmile, VictoriaMetrics and Prometheus one after the
//! other (each alone on the machine, with a fresh data directory), sends each the same
//! pre-encoded remote-write requests and reports throughput, CPU, memory and disk use.
//!
//! Modules: [`servers`] starts, probes and stops the servers; [`load`] builds the requests
//! and sends them; [`measure`] reads `/proc`; [`report`] prints the table and writes JSON;
//! [`ingest`] ties them together.

use std::path::PathBuf;

use clap::Args;

pub mod fleet;
pub mod ingest;
pub mod load;
pub mod logs;
pub mod measure;
pub mod query;
pub mod report;
pub mod rules;
pub mod servers;
pub mod spans;

pub use logs::LogsArgs;
pub use servers::ServerKind;
pub use spans::SpansArgs;

/// Flags of `lastmile bench ingest`.
#[derive(Args, Debug, Clone)]
// The subcommand's one-line description comes from the doc comment of `BenchKind::Ingest`
// in the binary crate; this text is shown after the flags of `-h` and `--help`.
#[command(
    after_help = "What it does: starts each chosen server alone (one at a time, fresh \
temporary data directory, free loopback port), sends it the same pre-encoded Prometheus \
remote-write requests and measures wall time and samples/s, server CPU seconds (utime+stime \
from /proc/PID/stat) and samples per CPU-second, peak RSS (VmHWM) and RSS per series, on-disk \
bytes per sample after a flush (lastmile: blocks/ after POST /api/v1/admin/tsdb/flush; \
VictoriaMetrics: data dir after /internal/force_flush; Prometheus: a skip_head=false \
snapshot), and the number of series the server reports (it must equal the number sent).\n\n\
Scenarios: `steady` = --series × --samples samples, --interval apart, sent in scrape rounds in \
time order ending now; `churn` = --new-series series with one sample each (the \
series-creation path). Set a scenario's size to 0 to skip it.\n\n\
Progress goes to stderr, the table to stdout, all figures to a JSON file (--out). Servers are \
killed at the end, also on errors. The exit status is non-zero if any server refused a \
request, lost samples or reported a wrong series count. Build with --release first."
)]
pub struct IngestArgs {
    /// Servers to measure, comma-separated, in this order. A peer whose binary is missing
    /// is reported and skipped.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "lastmile,victoriametrics,prometheus"
    )]
    pub servers: Vec<ServerKind>,

    /// Steady scenario: number of series (each gets one sample per scrape round).
    /// 0 skips the scenario.
    #[arg(long, default_value_t = 100_000, value_name = "N")]
    pub series: u64,

    /// Steady scenario: samples per series, i.e. the number of scrape rounds. 0 skips the
    /// scenario.
    #[arg(long, default_value_t = 20, value_name = "N")]
    pub samples: u64,

    /// Steady scenario: seconds between two samples of a series (the scrape interval).
    /// The last round is stamped with the time the requests were built.
    #[arg(long, default_value_t = 15, value_name = "SECONDS")]
    pub interval: u64,

    /// Steady scenario: consecutive samples of each series packed into one request. 1 (the
    /// default) is real-time remote write: each request carries one scrape round of its
    /// series, so every sample pays for its labels. Larger values model a sender catching
    /// up on a backlog (fewer, larger requests; labels amortised over the samples).
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub samples_per_request: u64,

    /// Churn scenario: number of new series, one sample each. 0 skips the scenario.
    #[arg(long, default_value_t = 1_000_000, value_name = "N")]
    pub new_series: u64,

    /// Series per request (Prometheus's `max_samples_per_send` batching: one sample per
    /// series per request).
    #[arg(long, default_value_t = 2000, value_name = "N")]
    pub batch: u64,

    /// Concurrent keep-alive HTTP connections. Each connection owns a fixed share of the
    /// series (like Prometheus's remote-write shards), so every series is sent in time order.
    #[arg(long, default_value_t = 4, value_name = "N")]
    pub connections: usize,

    /// Seed of the random generator for label values and counter increments; the same seed
    /// gives the same requests (apart from the timestamps).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,

    /// Where to write the JSON results. Default: bench-results/ingest-<UTC timestamp>.json
    /// (relative to the current directory; the directory is created).
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,

    /// The lastmile binary to measure. Default: this executable.
    #[arg(long, value_name = "PATH")]
    pub lastmile_bin: Option<PathBuf>,

    /// Configuration file passed to `lastmile serve --config` (for example to compare WAL
    /// sync modes). Default: none, i.e. lastmile's defaults.
    #[arg(long, value_name = "FILE")]
    pub lastmile_config: Option<PathBuf>,

    /// The VictoriaMetrics single-node binary (a name is looked up on PATH).
    #[arg(long, default_value = "victoria-metrics", value_name = "PATH")]
    pub victoria_metrics_bin: PathBuf,

    /// The Prometheus binary (a name is looked up on PATH). Needs Prometheus ≥ 2.33 for
    /// --web.enable-remote-write-receiver.
    #[arg(long, default_value = "prometheus", value_name = "PATH")]
    pub prometheus_bin: PathBuf,

    /// Seconds a server may take to start and answer its readiness endpoint.
    #[arg(long, default_value_t = 120, value_name = "SECONDS")]
    pub startup_timeout: u64,

    /// Seconds one server may take for the whole load of one scenario; the load is
    /// abandoned (and reported as failed) after that.
    #[arg(long, default_value_t = 1800, value_name = "SECONDS")]
    pub load_timeout: u64,

    /// Seconds one request may take before it counts as a transport error.
    #[arg(long, default_value_t = 120, value_name = "SECONDS")]
    pub request_timeout: u64,

    /// Seconds allowed for the post-load steps of a server (series count, flush or
    /// snapshot, measuring the directory).
    #[arg(long, default_value_t = 900, value_name = "SECONDS")]
    pub flush_timeout: u64,

    /// Runs per server and scenario, each on a fresh server; the table shows the median of
    /// each figure (the JSON file also has every run). Runs go round the servers.
    #[arg(long, default_value_t = 1, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=20))]
    pub repeat: u64,

    /// Before each run, wait up to this many seconds for other processes to stop using the
    /// CPU (a 2-second window with under 0.15 cores busy); a run that starts on a busy
    /// machine, or during which others used over 10% as much CPU as the server, carries a
    /// warning. 0 disables the wait (the warning stays).
    #[arg(long, default_value_t = 600, value_name = "SECONDS")]
    pub idle_wait: u64,

    /// Keep each server's temporary directory (data and log) instead of deleting it; the
    /// paths are printed.
    #[arg(long)]
    pub keep_data: bool,
}

pub enum BenchCommand {
    Ingest(IngestArgs),
    Query(query::QueryArgs),
    Rules(rules::RulesBenchArgs),
    Spans(SpansArgs),
    Logs(LogsArgs),
}

pub async fn run(cmd: BenchCommand) -> anyhow::Result<()> {
    match cmd {
        BenchCommand::Ingest(args) => ingest::run(args).await,
        BenchCommand::Query(args) => query::run(args).await,
        BenchCommand::Rules(args) => rules::run(args).await,
        BenchCommand::Spans(args) => spans::run(args).await,
        BenchCommand::Logs(args) => logs::run(args).await,
    }
}

/// Resolves on Ctrl-C or SIGTERM, naming the signal. A benchmark selects on it so that
/// its servers (whose guards live in the benchmark's future) are stopped on the way out.
pub(crate) async fn interrupted() -> &'static str {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => "Ctrl-C",
        _ = term => "SIGTERM",
    }
}
