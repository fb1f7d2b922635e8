//! Starting, probing and stopping the servers under test.
//!
//! Each server runs as a child process with its own temporary directory (data + log) and
//! a free loopback port. [`Server`] kills the process when dropped, so an error anywhere
//! in the benchmark never leaves a server behind.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::Serialize;
use tempfile::TempDir;

use crate::measure;
use crate::report::Skipped;

/// A server the benchmark knows how to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ServerKind {
    /// This lastmile build (`lastmile serve`).
    Lastmile,
    /// VictoriaMetrics single-node (`victoria-metrics`).
    #[value(alias = "vm", alias = "victoria-metrics")]
    Victoriametrics,
    /// Prometheus with the remote-write receiver enabled.
    #[value(alias = "prom")]
    Prometheus,
}

impl ServerKind {
    pub fn name(self) -> &'static str {
        match self {
            ServerKind::Lastmile => "lastmile",
            ServerKind::Victoriametrics => "victoriametrics",
            ServerKind::Prometheus => "prometheus",
        }
    }

    /// Path of the remote-write endpoint (the same for all three).
    pub fn write_path(self) -> &'static str {
        "/api/v1/write"
    }

    fn health_path(self) -> &'static str {
        match self {
            ServerKind::Lastmile | ServerKind::Prometheus => "/-/ready",
            ServerKind::Victoriametrics => "/health",
        }
    }
}

/// Where the binaries are and how long starting may take.
#[derive(Clone, Debug)]
pub struct StartOptions {
    pub lastmile_bin: PathBuf,
    pub lastmile_config: Option<PathBuf>,
    pub victoria_metrics_bin: PathBuf,
    pub prometheus_bin: PathBuf,
    pub startup_timeout: Duration,
    pub keep_data: bool,
    /// More command-line flags for every server started (e.g. VictoriaMetrics's
    /// `-maxHourlySeries`).
    pub extra_args: Vec<String>,
}

/// The lastmile binary a benchmark measures: `--lastmile-bin`, else this executable.
pub fn lastmile_bin_or_self(given: &Option<PathBuf>) -> anyhow::Result<PathBuf> {
    match given {
        Some(p) => Ok(p.clone()),
        None => std::env::current_exe().context("cannot find the lastmile executable"),
    }
}

impl StartOptions {
    pub fn binary(&self, kind: ServerKind) -> &Path {
        match kind {
            ServerKind::Lastmile => &self.lastmile_bin,
            ServerKind::Victoriametrics => &self.victoria_metrics_bin,
            ServerKind::Prometheus => &self.prometheus_bin,
        }
    }
}

/// Finds an executable: a path with a `/` is taken as is, a bare name is looked up on PATH.
pub fn which(bin: &Path) -> Option<PathBuf> {
    let is_exe = |p: &Path| {
        use std::os::unix::fs::PermissionsExt;
        p.metadata()
            .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            .unwrap_or(false)
    };
    if bin.components().count() > 1 {
        return is_exe(bin).then(|| bin.to_path_buf());
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(bin))
        .find(|p| is_exe(p))
}

/// The first line the binary prints for its version flag; if it prints nothing (Debian's
/// VictoriaMetrics build), the version of the Debian package that owns the file.
pub fn version(kind: ServerKind, bin: &Path) -> String {
    let flag = match kind {
        ServerKind::Lastmile => "--version",
        ServerKind::Victoriametrics => "-version",
        ServerKind::Prometheus => "--version",
    };
    let first_line = |cmd: &mut Command| -> Option<String> {
        let out = cmd.stdin(Stdio::null()).output().ok()?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        text.lines()
            .map(str::trim)
            .find(|l| !l.is_empty())
            .map(str::to_string)
    };
    if let Some(v) = first_line(Command::new(bin).arg(flag)) {
        return v;
    }
    let package = first_line(Command::new("dpkg-query").arg("-S").arg(bin))
        .and_then(|l| l.split(':').next().map(str::to_string));
    if let Some(pkg) = package
        && let Some(v) = first_line(
            Command::new("dpkg-query")
                .args(["-W", "-f=${Version}\n"])
                .arg(&pkg),
        )
    {
        return format!("Debian package {pkg} {v}");
    }
    "unknown".into()
}

/// Resolves each server's binary (in the given order); a missing peer is reported and
/// left out with the reason, so the benchmark runs with the others.
pub fn resolve_servers(
    kinds: &[ServerKind],
    opts: &mut StartOptions,
) -> (Vec<(ServerKind, String)>, Vec<Skipped>) {
    let mut skipped = Vec::new();
    let mut servers: Vec<(ServerKind, String)> = Vec::new();
    for &kind in kinds {
        if servers.iter().any(|(k, _)| *k == kind) {
            continue;
        }
        let bin = opts.binary(kind).to_path_buf();
        match which(&bin) {
            Some(path) => {
                let version = match kind {
                    ServerKind::Lastmile => format!("lastmile {}", env!("CARGO_PKG_VERSION")),
                    _ => version(kind, &path),
                };
                eprintln!("{:<16} {} ({version})", kind.name(), path.display());
                match kind {
                    ServerKind::Lastmile => opts.lastmile_bin = path,
                    ServerKind::Victoriametrics => opts.victoria_metrics_bin = path,
                    ServerKind::Prometheus => opts.prometheus_bin = path,
                }
                servers.push((kind, version));
            }
            None => {
                let hint = match kind {
                    ServerKind::Lastmile => "pass --lastmile-bin",
                    ServerKind::Victoriametrics => {
                        "install the Debian package victoria-metrics or pass --victoria-metrics-bin"
                    }
                    ServerKind::Prometheus => {
                        "install the Debian package prometheus or pass --prometheus-bin"
                    }
                };
                let reason = format!("binary `{}` not found ({hint})", bin.display());
                eprintln!("SKIPPING {}: {reason}", kind.name());
                skipped.push(Skipped {
                    server: kind,
                    reason,
                });
            }
        }
    }
    (servers, skipped)
}

/// The HTTP client of the benchmarks: loopback only, no proxy, keep-alive connections.
pub fn http_client(connections: usize, timeout: Duration) -> anyhow::Result<reqwest::Client> {
    reqwest::Client::builder()
        .no_proxy()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(connections)
        .timeout(timeout)
        .connect_timeout(Duration::from_secs(10))
        .user_agent(concat!("lastmile-bench/", env!("CARGO_PKG_VERSION")))
        .build()
        .context("cannot build the HTTP client")
}

/// A free loopback port: bind port 0, note what the kernel chose, release it.
pub fn free_port() -> anyhow::Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("cannot bind a loopback port")?;
    Ok(l.local_addr()?.port())
}

const SETTLE_STEP: Duration = Duration::from_secs(1);
const SETTLE_MAX: Duration = Duration::from_secs(60);

/// A running server. Dropping it kills the process (and deletes its directory unless
/// `keep_data` was set).
pub struct Server {
    pub kind: ServerKind,
    pub pid: u32,
    /// `http://127.0.0.1:PORT`
    pub base_url: String,
    pub data_dir: PathBuf,
    pub log_path: PathBuf,
    root: PathBuf,
    child: Child,
    tmp: Option<TempDir>,
    keep_data: bool,
}

impl Drop for Server {
    fn drop(&mut self) {
        // SIGKILL: the data is thrown away anyway, and it cannot hang.
        let _ = self.child.kill();
        let _ = self.child.wait();
        // Without keep_data, TempDir's drop removes the directory.
        if let Some(tmp) = self.tmp.take()
            && self.keep_data
        {
            let path = tmp.keep();
            eprintln!(
                "  kept {} data and log in {}",
                self.kind.name(),
                path.display()
            );
        }
    }
}

impl Server {
    /// Starts a server of `kind` and waits (bounded by `startup_timeout`) until it is ready.
    pub async fn start(
        kind: ServerKind,
        opts: &StartOptions,
        client: &reqwest::Client,
    ) -> anyhow::Result<Server> {
        let tmp = tempfile::Builder::new()
            .prefix(&format!("lastmile-bench-{}-", kind.name()))
            .tempdir()
            .context("cannot create a temporary directory")?;
        let root = tmp.path().to_path_buf();
        let data_dir = root.join("data");
        std::fs::create_dir_all(&data_dir)?;
        let log_path = root.join("server.log");
        let bin = opts.binary(kind);
        let deadline = Instant::now() + opts.startup_timeout;

        let mut cmd = Command::new(bin);
        cmd.stdin(Stdio::null());
        let port = match kind {
            ServerKind::Lastmile => None,
            _ => Some(free_port()?),
        };
        match kind {
            ServerKind::Lastmile => {
                cmd.args(["--log-format", "text", "--log-level", "info", "serve"])
                    .args(["--http-addr", "127.0.0.1:0"])
                    .args([
                        "--otlp-grpc-addr",
                        "127.0.0.1:0",
                        "--otlp-http-addr",
                        "127.0.0.1:0",
                    ])
                    .arg("--data-dir")
                    .arg(&data_dir)
                    .env_remove("RUST_LOG")
                    .env_remove("LASTMILE_LOG_FORMAT")
                    .env_remove("LASTMILE_LOG_LEVEL");
                if let Some(cfg) = &opts.lastmile_config {
                    cmd.arg("--config").arg(cfg);
                }
            }
            ServerKind::Victoriametrics => {
                cmd.arg(format!(
                    "-httpListenAddr=127.0.0.1:{}",
                    port.unwrap_or_default()
                ))
                .arg(format!("-storageDataPath={}", data_dir.display()))
                .arg("-retentionPeriod=100y")
                // The query benchmark measures evaluation, not VictoriaMetrics's cache of
                // range-query results (the other servers have none).
                .arg("-search.disableCache");
            }
            ServerKind::Prometheus => {
                let config = root.join("prometheus.yml");
                std::fs::write(
                    &config,
                    "global:\n  scrape_interval: 15s\nscrape_configs: []\n",
                )?;
                cmd.arg(format!("--config.file={}", config.display()))
                    .arg(format!("--storage.tsdb.path={}", data_dir.display()))
                    .arg(format!(
                        "--web.listen-address=127.0.0.1:{}",
                        port.unwrap_or_default()
                    ))
                    .arg("--web.enable-remote-write-receiver")
                    .arg("--web.enable-admin-api");
            }
        }
        cmd.args(&opts.extra_args);
        let log = File::create(&log_path)?;
        // lastmile's stderr is read (for the address line) and copied to the log; the
        // peers write straight into the log.
        match kind {
            ServerKind::Lastmile => cmd.stdout(log.try_clone()?).stderr(Stdio::piped()),
            _ => cmd.stdout(log.try_clone()?).stderr(log.try_clone()?),
        };
        let child = cmd
            .spawn()
            .with_context(|| format!("cannot start {}", bin.display()))?;
        let mut server = Server {
            kind,
            pid: child.id(),
            base_url: String::new(),
            data_dir,
            log_path,
            root,
            child,
            tmp: Some(tmp),
            keep_data: opts.keep_data,
        };

        let addr = match port {
            Some(p) => SocketAddr::from(([127, 0, 0, 1], p)),
            None => server.wait_for_lastmile_addr(log, deadline).await?,
        };
        server.base_url = format!("http://{addr}");
        server.wait_ready(client, deadline).await?;
        Ok(server)
    }

    /// Copies lastmile's stderr into the log on a thread and waits for the startup line
    /// that names the HTTP address.
    async fn wait_for_lastmile_addr(
        &mut self,
        mut log: File,
        deadline: Instant,
    ) -> anyhow::Result<SocketAddr> {
        let stderr = self
            .child
            .stderr
            .take()
            .context("lastmile's stderr is not piped")?;
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        std::thread::spawn(move || {
            let mut sent = false;
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let _ = writeln!(log, "{line}");
                if !sent && let Some(addr) = parse_http_addr(&line) {
                    sent = tx.send(addr).is_ok();
                }
            }
        });
        loop {
            self.check_alive()?;
            if Instant::now() >= deadline {
                bail!(
                    "lastmile did not print its http_addr before the startup deadline; {}",
                    self.log_tail()
                );
            }
            match tokio::time::timeout(Duration::from_millis(100), rx.recv()).await {
                Ok(Some(addr)) => return Ok(addr),
                Ok(None) => {
                    // stderr closed: the process is exiting; the next check_alive says why.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(_) => {}
            }
        }
    }

    /// Polls the health endpoint until it answers 200 or the deadline passes.
    async fn wait_ready(
        &mut self,
        client: &reqwest::Client,
        deadline: Instant,
    ) -> anyhow::Result<()> {
        let url = format!("{}{}", self.base_url, self.kind.health_path());
        loop {
            self.check_alive()?;
            let last = match client
                .get(&url)
                .timeout(Duration::from_secs(2))
                .send()
                .await
            {
                Ok(r) if r.status().is_success() => return Ok(()),
                Ok(r) => format!("HTTP {}", r.status()),
                Err(e) => format!("{e}"),
            };
            if Instant::now() >= deadline {
                bail!(
                    "{} was not ready at {url} before the startup deadline (last: {last}); {}",
                    self.kind.name(),
                    self.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn check_alive(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!(
                "{} exited early ({status}); {}",
                self.kind.name(),
                self.log_tail()
            );
        }
        Ok(())
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The last lines of the server's log, for error messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log_path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let mut out = format!("last lines of the server log {}:", self.log_path.display());
        for l in &lines[lines.len().saturating_sub(15)..] {
            out.push_str("\n         | ");
            out.push_str(l);
        }
        out
    }

    /// The number of series the server says it holds, and of samples where it says so.
    ///
    /// lastmile and Prometheus: `headStats.numSeries` of `/api/v1/status/tsdb` (read it
    /// before a flush: lastmile's flush empties the head); lastmile also reports
    /// `headStats.numSamples`. VictoriaMetrics: after a forced flush (which makes new index
    /// entries searchable), `/api/v1/series/count`.
    pub async fn head_counts(&self, client: &reqwest::Client) -> anyhow::Result<HeadCounts> {
        match self.kind {
            ServerKind::Lastmile | ServerKind::Prometheus => {
                let v = get_json(
                    client,
                    &format!("{}/api/v1/status/tsdb?limit=1", self.base_url),
                )
                .await?;
                let series = v
                    .pointer("/data/headStats/numSeries")
                    .and_then(|n| n.as_u64())
                    .with_context(|| {
                        format!(
                            "no data.headStats.numSeries in /api/v1/status/tsdb: {}",
                            truncate(&v.to_string(), 300)
                        )
                    })?;
                let samples = v
                    .pointer("/data/headStats/numSamples")
                    .and_then(|n| n.as_u64());
                Ok(HeadCounts { series, samples })
            }
            ServerKind::Victoriametrics => {
                self.vm_force_flush(client).await?;
                let v = get_json(client, &format!("{}/api/v1/series/count", self.base_url)).await?;
                let series = v
                    .pointer("/data/0")
                    .and_then(|n| n.as_u64())
                    .with_context(|| {
                        format!(
                            "no data[0] in /api/v1/series/count: {}",
                            truncate(&v.to_string(), 300)
                        )
                    })?;
                Ok(HeadCounts {
                    series,
                    samples: None,
                })
            }
        }
    }

    /// Time span of the in-memory head (`headStats.maxTime - minTime` of
    /// `/api/v1/status/tsdb`), for lastmile and Prometheus; None while the head is empty.
    pub async fn head_span_ms(&self, client: &reqwest::Client) -> anyhow::Result<Option<i64>> {
        let v = get_json(
            client,
            &format!("{}/api/v1/status/tsdb?limit=1", self.base_url),
        )
        .await?;
        let at = |k: &str| {
            v.pointer(&format!("/data/headStats/{k}"))
                .and_then(|n| n.as_i64())
        };
        Ok(match (at("minTime"), at("maxTime")) {
            (Some(lo), Some(hi)) if hi >= lo => Some(hi - lo),
            _ => None,
        })
    }

    /// Makes VictoriaMetrics's recently ingested rows searchable now.
    pub async fn vm_force_flush(&self, client: &reqwest::Client) -> anyhow::Result<()> {
        let url = format!("{}/internal/force_flush", self.base_url);
        let r = client
            .get(&url)
            .send()
            .await
            .with_context(|| format!("GET {url}"))?;
        check_status(r, &url).await.map(drop)
    }

    /// Makes the server persist what it holds, then measures the bytes that represent the
    /// data on disk:
    /// - lastmile: `POST /api/v1/admin/tsdb/flush` (head → blocks), size of `blocks/`;
    /// - VictoriaMetrics: `GET /internal/force_flush`, size of the whole data directory;
    /// - Prometheus: `POST /api/v1/admin/tsdb/snapshot?skip_head=false`, size of the
    ///   snapshot directory (the head written as a block).
    pub async fn flush_and_measure_disk(
        &self,
        client: &reqwest::Client,
    ) -> anyhow::Result<DiskUsage> {
        let started = Instant::now();
        let (path, what) = match self.kind {
            ServerKind::Lastmile => {
                let url = format!("{}/api/v1/admin/tsdb/flush", self.base_url);
                let r = client
                    .post(&url)
                    .send()
                    .await
                    .with_context(|| format!("POST {url}"))?;
                check_status(r, &url).await?;
                (
                    self.data_dir.join("blocks"),
                    "blocks/ after POST /api/v1/admin/tsdb/flush",
                )
            }
            ServerKind::Victoriametrics => {
                self.vm_force_flush(client).await?;
                (
                    self.data_dir.clone(),
                    "data dir after /internal/force_flush",
                )
            }
            ServerKind::Prometheus => {
                let url = format!(
                    "{}/api/v1/admin/tsdb/snapshot?skip_head=false",
                    self.base_url
                );
                let r = client
                    .post(&url)
                    .send()
                    .await
                    .with_context(|| format!("POST {url}"))?;
                let body = check_status(r, &url).await?;
                let v: serde_json::Value = serde_json::from_slice(&body)
                    .with_context(|| format!("{url} did not answer JSON"))?;
                let name = v
                    .pointer("/data/name")
                    .and_then(|n| n.as_str())
                    .with_context(|| {
                        format!(
                            "no data.name in the snapshot answer: {}",
                            truncate(&v.to_string(), 300)
                        )
                    })?;
                (
                    self.data_dir.join("snapshots").join(name),
                    "snapshot dir (skip_head=false)",
                )
            }
        };
        let flush_secs = started.elapsed().as_secs_f64();
        // A server may still merge or delete files after the flush (VictoriaMetrics merges
        // parts in the background): measure until two readings a second apart agree.
        let size = || {
            measure::dir_size(&path).with_context(|| format!("cannot measure {}", path.display()))
        };
        let settle_started = Instant::now();
        let mut bytes = size()?;
        loop {
            tokio::time::sleep(SETTLE_STEP).await;
            let again = size()?;
            let stable = again == bytes;
            bytes = again;
            if stable || settle_started.elapsed() >= SETTLE_MAX {
                break;
            }
        }
        let data_dir_bytes = measure::dir_size(&self.data_dir).unwrap_or(0);
        Ok(DiskUsage {
            bytes,
            what,
            flush_secs,
            settle_secs: settle_started.elapsed().as_secs_f64(),
            data_dir_bytes,
        })
    }

    /// Kills the process now (SIGKILL) but keeps its directory until the guard drops, so
    /// its data can be read afterwards.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The server's temporary directory (data and log).
    pub fn root(&self) -> &Path {
        &self.root
    }
}

/// What the server says it holds after the load.
#[derive(Clone, Copy, Debug)]
pub struct HeadCounts {
    pub series: u64,
    /// Only lastmile reports it (`headStats.numSamples`).
    pub samples: Option<u64>,
}

/// On-disk size of the persisted data.
#[derive(Clone, Debug, Serialize)]
pub struct DiskUsage {
    /// Bytes of the persisted data (see `what`).
    pub bytes: u64,
    pub what: &'static str,
    /// How long the flush or snapshot request took.
    pub flush_secs: f64,
    /// How long the size took to stop changing after the flush (readings 1 s apart, at
    /// most 60 s).
    pub settle_secs: f64,
    /// The whole data directory after the flush (includes WAL and, for Prometheus, the
    /// snapshot too).
    pub data_dir_bytes: u64,
}

/// `http_addr=127.0.0.1:PORT` in a log line (key=value text logs), not `otlp_http_addr=`.
pub fn parse_http_addr(line: &str) -> Option<SocketAddr> {
    line.split_whitespace().find_map(|tok| {
        let v = tok.strip_prefix("http_addr=")?;
        v.trim_matches('"').parse().ok()
    })
}

pub async fn get_json(client: &reqwest::Client, url: &str) -> anyhow::Result<serde_json::Value> {
    let r = client
        .get(url)
        .send()
        .await
        .with_context(|| format!("GET {url}"))?;
    let body = check_status(r, url).await?;
    serde_json::from_slice(&body).with_context(|| {
        format!(
            "{url} did not answer JSON: {}",
            truncate(&String::from_utf8_lossy(&body), 300)
        )
    })
}

pub async fn check_status(r: reqwest::Response, url: &str) -> anyhow::Result<bytes::Bytes> {
    let status = r.status();
    let body = r
        .bytes()
        .await
        .with_context(|| format!("reading the answer of {url}"))?;
    if !status.is_success() {
        bail!(
            "{url} answered HTTP {status}: {}",
            truncate(&String::from_utf8_lossy(&body), 500)
        );
    }
    Ok(body)
}

pub fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_http_addr_and_not_the_otlp_one() {
        let line = "2025-01-01T00:00:00.000Z  INFO lastmile::serve: lastmile started http_addr=127.0.0.1:43121 data_dir=/tmp/x demo=false ui=http://127.0.0.1:43121/";
        assert_eq!(
            parse_http_addr(line),
            Some("127.0.0.1:43121".parse().unwrap())
        );
        let otlp = "INFO lastmile::serve: OTLP receivers otlp_grpc_addr=127.0.0.1:4317 otlp_http_addr=127.0.0.1:4318";
        assert_eq!(parse_http_addr(otlp), None);
        assert_eq!(
            parse_http_addr("http_addr=\"[::1]:80\""),
            Some("[::1]:80".parse().unwrap())
        );
    }

    #[test]
    fn which_finds_sh_and_not_nonsense() {
        assert!(which(Path::new("sh")).is_some());
        assert!(which(Path::new("surely-not-a-binary-here")).is_none());
        assert!(which(Path::new("/nonexistent/prometheus")).is_none());
    }

    #[test]
    fn truncate_respects_char_boundaries() {
        assert_eq!(truncate("héllo", 2), "h…");
        assert_eq!(truncate("abc", 5), "abc");
    }
}
