//! Command-line interface.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Parser, Debug)]
#[command(
    name = "lastmile",
    version,
    about = "Metrics, traces and logs for Go services: one binary with an embedded store.",
    long_about = "lastmile collects metrics (Prometheus remote write), keeps them in an embedded \
time-series store and answers Prometheus-compatible HTTP queries.\n\n\
Start with `lastmile serve --demo` and open http://127.0.0.1:7070/."
)]
pub struct Cli {
    #[command(flatten)]
    pub log: LogArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Args, Debug, Clone)]
pub struct LogArgs {
    /// Log format: `text` (key=value, for people) or `json` (one object per line).
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "text",
        env = "LASTMILE_LOG_FORMAT"
    )]
    pub log_format: LogFormat,
    /// Log level or filter (error, warn, info, debug, trace, or e.g. `info,lastmile_store=debug`).
    /// RUST_LOG overrides it.
    #[arg(
        long,
        global = true,
        default_value = "info",
        env = "LASTMILE_LOG_LEVEL"
    )]
    pub log_level: String,
}

#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the server: ingest, store and query on one HTTP address.
    Serve(ServeArgs),
    /// Run a PromQL query against a lastmile (or Prometheus) server and print a table.
    Query(QueryArgs),
    /// Measure lastmile against VictoriaMetrics and Prometheus on the same load.
    Bench(BenchArgs),
    /// Watch a Go program's runtime through eBPF: GC and stop-the-world pauses, goroutine
    /// blocking (park profile), sampled allocations. Needs root.
    GoRuntime(GoRuntimeArgs),
    /// Work with rules files: `lastmile rules check FILE` validates and tests them.
    Rules(RulesArgs),
}

#[derive(Args, Debug, Clone)]
pub struct GoRuntimeArgs {
    #[command(subcommand)]
    pub command: GoRuntimeCommand,
}

#[derive(Subcommand, Debug, Clone)]
pub enum GoRuntimeCommand {
    /// Attach eBPF uprobes to a Go process (or every process of an executable) and report
    /// GC cycles and stop-the-world pauses; optionally profile why goroutines block.
    Attach(lastmile_ebpf::cli::AttachArgs),
}

#[derive(Args, Debug, Clone)]
pub struct RulesArgs {
    #[command(subcommand)]
    pub command: RulesCommand,
}

#[derive(Subcommand, Debug, Clone)]
pub enum RulesCommand {
    /// Parse and validate rules files and run the tests they contain, as a reload would;
    /// print a report. Exit status 0 when everything passes, 1 otherwise.
    #[command(
        after_help = "Several FILEs are merged in order, as `rule_files:` in the serve config would be. With --config, the rules of a `lastmile serve` config file are checked: the sections it holds itself and the files its `rule_files:` names."
    )]
    Check {
        /// Rules files (YAML).
        #[arg(value_name = "FILE", required_unless_present = "config")]
        files: Vec<std::path::PathBuf>,
        /// A `lastmile serve` config file whose rules to check.
        #[arg(long, value_name = "FILE")]
        config: Option<std::path::PathBuf>,
    },
}

#[derive(Args, Debug, Clone)]
pub struct QueryArgs {
    /// The PromQL expression, e.g. 'sum by (job) (rate(http_requests_total[5m]))'.
    pub expr: String,
    /// Evaluation time of an instant query: Unix seconds or RFC 3339 (default: now).
    #[arg(long, value_name = "TIME", conflicts_with = "range")]
    pub time: Option<String>,
    /// Run a range query: START END STEP, e.g. `--range now-1h now 1m` or
    /// `--range 2024-05-01T00:00:00Z 2024-05-01T06:00:00Z 5m`. `now` and `now-DURATION`
    /// are accepted for START and END.
    #[arg(long, num_args = 3, value_names = ["START", "END", "STEP"])]
    pub range: Option<Vec<String>>,
    /// Server to ask (anything that speaks the Prometheus query API).
    #[arg(
        long,
        value_name = "URL",
        default_value = "http://127.0.0.1:7070",
        env = "LASTMILE_URL"
    )]
    pub server: String,
    /// Print the server's JSON answer instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug, Clone)]
pub struct ServeArgs {
    /// YAML configuration file (storage, limits). Command-line flags override it.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Where the WAL and blocks live. Created if missing; one process per directory.
    #[arg(long, value_name = "DIR", default_value = "./lastmile-data")]
    pub data_dir: PathBuf,
    /// HTTP address for the UI, remote write and the query APIs. Port 0 picks a free port;
    /// the chosen address is printed at startup.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:7070")]
    pub http_addr: SocketAddr,
    /// OTLP/gRPC address: the collector's trace, metrics and logs services (what SDK
    /// exporters with protocol `grpc` send to). Port 0 picks a free port; the chosen address
    /// is printed at startup.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:4317")]
    pub otlp_grpc_addr: SocketAddr,
    /// OTLP/HTTP address: POST /v1/traces, /v1/metrics, /v1/logs, protobuf or JSON, gzip
    /// (what SDK exporters with protocol `http/protobuf` or `http/json` send to; the same
    /// routes are also on --http-addr). Port 0 picks a free port; the chosen address is
    /// printed at startup.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:4318")]
    pub otlp_http_addr: SocketAddr,
    /// Generate a simulated fleet of Go services (HTTP latency histograms, GC, goroutines,
    /// process metrics), with the last hour backfilled, so there is data to look at at once.
    #[arg(long)]
    pub demo: bool,
    /// How long to keep data, e.g. 15d, 12h, 4w (overrides storage.retention in the config).
    #[arg(long, value_name = "DURATION")]
    pub retention: Option<String>,
}

#[derive(Args, Debug, Clone)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub kind: BenchKind,
}

#[derive(Subcommand, Debug, Clone)]
pub enum BenchKind {
    /// Remote-write ingest: samples/s, CPU, RSS per series and disk bytes per sample for
    /// lastmile, VictoriaMetrics and Prometheus under the same load.
    Ingest(lastmile_bench::IngestArgs),
    /// Overhead of the eBPF Go-runtime probes (always-on and park profile) on a Go
    /// workload and on a Go HTTP service under wrk, with and without probes, same run.
    /// Needs root.
    GoRuntime(lastmile_ebpf::bench::BenchArgs),
    /// Log ingest (Loki push) and search: lines per CPU-second, disk bytes per raw byte,
    /// needle search, trace-id lookup and count_over_time latency.
    Logs(lastmile_bench::LogsArgs),
    /// Span ingest over OTLP/HTTP protobuf: spans/s, spans per CPU-second, RSS, span store
    /// bytes per span, trace-by-id latency (lastmile alone: no peer trace backend here).
    Spans(lastmile_bench::SpansArgs),
    /// The rule engine's cost: ns per sample with 100 relabel rules (in process, and the
    /// server CPU it adds next to VictoriaMetrics's -relabelConfig), reload time of a
    /// 1,000-rule file and request latency during reloads, memory under a cardinality
    /// attack next to VictoriaMetrics's -storage.maxHourlySeries.
    Rules(lastmile_bench::rules::RulesBenchArgs),
    /// PromQL dashboard queries: median and p99 latency of lastmile, VictoriaMetrics and
    /// Prometheus holding the same history of HTTP latency histograms.
    Query(lastmile_bench::query::QueryArgs),
}

impl BenchKind {
    /// The benchmark for `lastmile_bench`, or the eBPF one (which lives in its own crate).
    pub fn into_command(
        self,
    ) -> Result<lastmile_bench::BenchCommand, lastmile_ebpf::bench::BenchArgs> {
        use lastmile_bench::BenchCommand as C;
        Ok(match self {
            BenchKind::Ingest(a) => C::Ingest(a),
            BenchKind::Query(a) => C::Query(a),
            BenchKind::Rules(a) => C::Rules(a),
            BenchKind::Spans(a) => C::Spans(a),
            BenchKind::Logs(a) => C::Logs(a),
            BenchKind::GoRuntime(a) => return Err(a),
        })
    }
}
