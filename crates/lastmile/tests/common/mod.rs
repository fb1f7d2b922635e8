//! Shared helpers of the integration tests: start `lastmile` (and peers) on free loopback
//! ports with their own temp dirs, kill them when the test ends (even on failure), a small
//! blocking HTTP/1.1 client, a remote-write client, polling with a deadline, and parsers
//! for the JSON the servers answer with.
//!
//! The HTTP client is hand-written on purpose: the tests need to send bodies a server may
//! refuse before reading them (413), to see a connection die under `kill -9`, and to send
//! chunked bodies without a length. It always uses `Connection: close`.

// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lastmile_receivers::remote_write::{EncodeMetadata, EncodeSeries, encode_write_request};

pub type Labels = BTreeMap<String, String>;

/// How long a server may take to start, and a query to settle, before a test fails.
pub const START_TIMEOUT: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------------------
// Polling

/// Calls `probe` until it returns `Some`, at most until `timeout` has passed; then fails
/// the test with `what` and the last state `probe` reported through `last`.
pub fn wait_for<T>(
    what: &str,
    timeout: Duration,
    mut probe: impl FnMut(&mut String) -> Option<T>,
) -> T {
    let deadline = Instant::now() + timeout;
    let mut last = String::new();
    let mut pause = Duration::from_millis(20);
    loop {
        last.clear();
        if let Some(v) = probe(&mut last) {
            return v;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}; last state: {last}");
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(250));
    }
}

// ---------------------------------------------------------------------------------------
// HTTP client

#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "response (status {}) is not JSON ({e}): {}",
                self.status,
                self.text()
            )
        })
    }

    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// How a request body is framed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    ContentLength,
    Chunked,
}

/// One HTTP/1.1 request on a new connection. A body the server stops reading (it answered
/// early, e.g. 413) is not an error as long as a response can still be read.
pub fn http_request(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    framing: Framing,
) -> std::io::Result<Response> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(10))?;
    stream.set_read_timeout(Some(Duration::from_secs(120)))?;
    stream.set_write_timeout(Some(Duration::from_secs(120)))?;
    stream.set_nodelay(true)?;
    let mut head = format!(
        "{method} {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nUser-Agent: lastmile-tests\r\n"
    );
    for (k, v) in headers {
        let _ = write!(head, "{k}: {v}\r\n");
    }
    match framing {
        Framing::ContentLength => {
            if method != "GET" || !body.is_empty() {
                let _ = write!(head, "Content-Length: {}\r\n", body.len());
            }
        }
        Framing::Chunked => head.push_str("Transfer-Encoding: chunked\r\n"),
    }
    head.push_str("\r\n");
    let write_result = (|| -> std::io::Result<()> {
        stream.write_all(head.as_bytes())?;
        match framing {
            Framing::ContentLength => stream.write_all(body)?,
            Framing::Chunked => {
                for chunk in body.chunks(64 << 10) {
                    stream.write_all(format!("{:x}\r\n", chunk.len()).as_bytes())?;
                    stream.write_all(chunk)?;
                    stream.write_all(b"\r\n")?;
                }
                stream.write_all(b"0\r\n\r\n")?;
            }
        }
        stream.flush()
    })();
    let mut raw = Vec::new();
    let read_result = stream.read_to_end(&mut raw);
    match (parse_response(&raw), write_result, read_result) {
        (Ok(r), _, _) => Ok(r),
        (Err(_), Err(e), _) => Err(e),
        (Err(_), Ok(()), Err(e)) => Err(e),
        (Err(why), Ok(()), Ok(_)) => {
            Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, why))
        }
    }
}

fn parse_response(raw: &[u8]) -> Result<Response, String> {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| format!("incomplete response head ({} bytes)", raw.len()))?;
    let head =
        std::str::from_utf8(&raw[..end]).map_err(|_| "response head is not UTF-8".to_string())?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let rest = &raw[end + 4..];
    let get = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    let body = if get("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        decode_chunked(rest)?
    } else if let Some(len) = get("content-length") {
        let len: usize = len
            .parse()
            .map_err(|_| format!("bad Content-Length {len:?}"))?;
        if rest.len() < len {
            return Err(format!("body truncated: {} of {len} bytes", rest.len()));
        }
        rest[..len].to_vec()
    } else {
        rest.to_vec()
    };
    Ok(Response {
        status,
        headers,
        body,
    })
}

fn decode_chunked(mut b: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let line_end = b
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("truncated chunk size")?;
        let size_text = std::str::from_utf8(&b[..line_end]).map_err(|_| "bad chunk size")?;
        let size_text = size_text.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| format!("bad chunk size {size_text:?}"))?;
        b = &b[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        if b.len() < size + 2 {
            return Err("truncated chunk".into());
        }
        out.extend_from_slice(&b[..size]);
        b = &b[size + 2..];
    }
}

/// Percent-encodes a query-string value.
pub fn enc(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 2);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// Milliseconds as the seconds string the Prometheus API takes.
pub fn secs(ms: i64) -> String {
    format!("{}.{:03}", ms.div_euclid(1000), ms.rem_euclid(1000))
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as i64
}

/// A free loopback port, for peers that cannot be told to pick one themselves.
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    l.local_addr().expect("local addr").port()
}

// ---------------------------------------------------------------------------------------
// Child processes

/// Collects a child's stderr lines (and forwards them to the test's output, which the
/// harness shows when the test fails); tells the first line containing `marker`.
fn capture_stderr(
    child: &mut Child,
    name: &str,
    marker: &'static str,
) -> (Arc<Mutex<Vec<String>>>, mpsc::Receiver<String>) {
    let stderr = child.stderr.take().expect("stderr piped");
    let name = format!("{name} pid {}", child.id());
    let lines = Arc::new(Mutex::new(Vec::new()));
    let (tx, rx) = mpsc::channel();
    let sink = lines.clone();
    std::thread::spawn(move || {
        let mut tx = Some(tx);
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if line.contains(marker)
                && let Some(tx) = tx.take()
            {
                let _ = tx.send(line.clone());
            }
            eprintln!("[{name}] {line}");
            sink.lock().unwrap().push(line);
        }
    });
    (lines, rx)
}

/// A temp directory for one server: data in `data/`, config in `config.yml`.
pub struct TestDir {
    pub dir: tempfile::TempDir,
}

impl TestDir {
    pub fn new() -> Self {
        TestDir {
            dir: tempfile::Builder::new()
                .prefix("lastmile-it-")
                .tempdir()
                .expect("create temp dir"),
        }
    }

    pub fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Default for TestDir {
    fn default() -> Self {
        Self::new()
    }
}

pub fn lastmile_bin() -> &'static str {
    env!("CARGO_BIN_EXE_lastmile")
}

/// A running `lastmile serve`. Killed (SIGKILL) and reaped when dropped.
pub struct Lastmile {
    child: Child,
    pub addr: SocketAddr,
    /// The OTLP/HTTP and OTLP/gRPC addresses (`--otlp-http-addr`, `--otlp-grpc-addr`).
    pub otlp_http: SocketAddr,
    pub otlp_grpc: SocketAddr,
    pub data_dir: PathBuf,
    logs: Arc<Mutex<Vec<String>>>,
    exited: bool,
}

#[derive(Default, Clone)]
pub struct ServeOptions {
    /// YAML written to a config file passed with `--config`.
    pub config: Option<String>,
    pub demo: bool,
    pub extra_args: Vec<String>,
}

impl Lastmile {
    /// Starts a server on `dir`'s data directory with default options.
    pub fn start(dir: &TestDir) -> Lastmile {
        Self::start_with(dir, &ServeOptions::default())
    }

    pub fn start_with_config(dir: &TestDir, yaml: &str) -> Lastmile {
        Self::start_with(
            dir,
            &ServeOptions {
                config: Some(yaml.to_string()),
                ..Default::default()
            },
        )
    }

    pub fn start_with(dir: &TestDir, opts: &ServeOptions) -> Lastmile {
        let data_dir = dir.data();
        let mut cmd = Command::new(lastmile_bin());
        cmd.arg("--log-format")
            .arg("text")
            .arg("--log-level")
            .arg("info")
            .arg("serve")
            .arg("--http-addr")
            .arg("127.0.0.1:0")
            .arg("--otlp-http-addr")
            .arg("127.0.0.1:0")
            .arg("--otlp-grpc-addr")
            .arg("127.0.0.1:0")
            .arg("--data-dir")
            .arg(&data_dir);
        if let Some(yaml) = &opts.config {
            let path = dir.path().join("config.yml");
            std::fs::write(&path, yaml).expect("write config");
            cmd.arg("--config").arg(path);
        }
        if opts.demo {
            cmd.arg("--demo");
        }
        cmd.args(&opts.extra_args);
        // The startup line is logged at info; a developer's RUST_LOG must not hide it.
        cmd.env("RUST_LOG", "info")
            .env_remove("LASTMILE_LOG_FORMAT")
            .env_remove("LASTMILE_LOG_LEVEL");
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", lastmile_bin()));
        let (logs, started) = capture_stderr(&mut child, "lastmile", "lastmile started");
        let mut server = Lastmile {
            child,
            addr: "127.0.0.1:1".parse().unwrap(),
            otlp_http: "127.0.0.1:1".parse().unwrap(),
            otlp_grpc: "127.0.0.1:1".parse().unwrap(),
            data_dir,
            logs,
            exited: false,
        };
        let line = match started.recv_timeout(START_TIMEOUT) {
            Ok(line) => line,
            Err(_) => {
                let status = server.child.try_wait().ok().flatten();
                panic!(
                    "lastmile did not log its startup line (exit status: {status:?}); stderr:\n{}",
                    server.logs()
                );
            }
        };
        let addr_of = |key: &str| -> SocketAddr {
            let prefix = format!("{key}=");
            let addr = line
                .split_whitespace()
                .find_map(|w| w.strip_prefix(prefix.as_str()))
                .unwrap_or_else(|| panic!("no {key}= in startup line {line:?}"));
            addr.trim_matches('"')
                .parse()
                .unwrap_or_else(|e| panic!("bad {key} in {line:?}: {e}"))
        };
        server.addr = addr_of("http_addr");
        server.otlp_http = addr_of("otlp_http_addr");
        server.otlp_grpc = addr_of("otlp_grpc_addr");
        wait_for("lastmile /-/ready", START_TIMEOUT, |last| {
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!(
                    "lastmile exited with {status} during startup; stderr:\n{}",
                    server.logs()
                );
            }
            match server.try_get("/-/ready") {
                Ok(r) if r.status == 200 => Some(()),
                Ok(r) => {
                    *last = format!("status {}", r.status);
                    None
                }
                Err(e) => {
                    *last = e.to_string();
                    None
                }
            }
        });
        server
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn logs(&self) -> String {
        self.logs.lock().unwrap().join("\n")
    }

    /// SIGKILL, then reap. No shutdown code of the server runs.
    pub fn kill9(&mut self) {
        if !self.exited {
            let _ = self.child.kill();
            let _ = self.child.wait();
            self.exited = true;
        }
    }

    pub fn is_running(&mut self) -> bool {
        !self.exited && matches!(self.child.try_wait(), Ok(None))
    }

    pub fn try_get(&self, target: &str) -> std::io::Result<Response> {
        http_request(self.addr, "GET", target, &[], &[], Framing::ContentLength)
    }

    pub fn get(&self, target: &str) -> Response {
        self.try_get(target)
            .unwrap_or_else(|e| panic!("GET {target} failed: {e}; server stderr:\n{}", self.logs()))
    }

    pub fn post(&self, target: &str, headers: &[(&str, &str)], body: &[u8]) -> Response {
        http_request(
            self.addr,
            "POST",
            target,
            headers,
            body,
            Framing::ContentLength,
        )
        .unwrap_or_else(|e| panic!("POST {target} failed: {e}; server stderr:\n{}", self.logs()))
    }

    /// POSTs a remote-write body as is, with the given extra headers.
    pub fn post_write(&self, body: &[u8], headers: &[(&str, &str)]) -> Response {
        let mut h = vec![
            ("Content-Type", "application/x-protobuf"),
            ("X-Prometheus-Remote-Write-Version", "0.1.0"),
        ];
        h.extend_from_slice(headers);
        self.post("/api/v1/write", &h, body)
    }

    /// Encodes, snappy-compresses and sends a remote-write request.
    pub fn remote_write(&self, series: &[EncodeSeries], metadata: &[EncodeMetadata]) -> Response {
        self.post_write(
            &snappy_write_request(series, metadata),
            &[("Content-Encoding", "snappy")],
        )
    }

    /// Like [`remote_write`](Self::remote_write) but the write must be acknowledged.
    pub fn remote_write_ok(&self, series: &[EncodeSeries]) {
        let r = self.remote_write(series, &[]);
        assert_eq!(r.status, 204, "remote write not acknowledged: {}", r.text());
    }

    /// Series labels for a selector (`/api/v1/series`), over all time.
    pub fn series(&self, selector: &str) -> Vec<Labels> {
        let r = self.get(&format!("/api/v1/series?match[]={}", enc(selector)));
        assert_eq!(r.status, 200, "series {selector}: {}", r.text());
        labels_list(&r.json()["data"])
    }

    /// Raw samples of every series a selector matches, in `[start, end]` (ms, inclusive).
    pub fn export(
        &self,
        selector: &str,
        start: Option<i64>,
        end: Option<i64>,
    ) -> BTreeMap<Labels, Vec<(i64, f64)>> {
        let mut target = format!("/api/v1/export?match[]={}", enc(selector));
        if let Some(s) = start {
            let _ = write!(target, "&start={}", secs(s));
        }
        if let Some(e) = end {
            let _ = write!(target, "&end={}", secs(e));
        }
        let r = self.get(&target);
        assert_eq!(r.status, 200, "export {selector}: {}", r.text());
        parse_export(&r.text())
    }

    /// The self-metrics page.
    pub fn metrics_text(&self) -> String {
        let r = self.get("/metrics");
        assert_eq!(r.status, 200, "/metrics: {}", r.text());
        r.text()
    }

    /// A sample of `/metrics` by its exact series text, e.g.
    /// `lastmile_remote_write_rejected_requests_total{reason="crc_mismatch"}`; 0 when absent.
    pub fn metric(&self, series: &str) -> f64 {
        metric_value(&self.metrics_text(), series).unwrap_or(0.0)
    }
}

impl Drop for Lastmile {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A sample's value in exposition text, by its exact series text.
pub fn metric_value(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        let rest = l.strip_prefix(series)?;
        let rest = rest.strip_prefix(' ')?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

/// Peak virtual memory of a process (VmPeak in /proc/PID/status), in bytes.
pub fn vm_peak_bytes(pid: u32) -> u64 {
    let status =
        std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc/PID/status");
    let line = status
        .lines()
        .find(|l| l.starts_with("VmPeak:"))
        .expect("VmPeak line");
    let kb: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .expect("VmPeak value");
    kb * 1024
}

// ---------------------------------------------------------------------------------------
// Remote write

pub fn labels(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

pub fn series(pairs: &[(&str, &str)], samples: &[(i64, f64)]) -> EncodeSeries {
    EncodeSeries {
        labels: labels(pairs),
        samples: samples.to_vec(),
        exemplars: vec![],
    }
}

pub fn label_map(pairs: &[(String, String)]) -> Labels {
    pairs.iter().cloned().collect()
}

pub fn snappy_write_request(series: &[EncodeSeries], metadata: &[EncodeMetadata]) -> Vec<u8> {
    let raw = encode_write_request(series, metadata);
    snap::raw::Encoder::new()
        .compress_vec(&raw)
        .expect("snappy compress")
}

pub fn crc32c_hex(body: &[u8]) -> String {
    format!("{:08x}", crc32c::crc32c(body))
}

// ---------------------------------------------------------------------------------------
// Response parsing

pub fn labels_of(v: &serde_json::Value) -> Labels {
    v.as_object()
        .unwrap_or_else(|| panic!("expected a label object, got {v}"))
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                v.as_str()
                    .unwrap_or_else(|| panic!("label {k} is not a string: {v}"))
                    .to_string(),
            )
        })
        .collect()
}

pub fn labels_list(v: &serde_json::Value) -> Vec<Labels> {
    v.as_array()
        .unwrap_or_else(|| panic!("expected an array, got {v}"))
        .iter()
        .map(labels_of)
        .collect()
}

/// Parses a sample value as the Prometheus API prints it (`"1.5"`, `"NaN"`, `"+Inf"`).
pub fn parse_value(s: &str) -> f64 {
    match s {
        "NaN" => f64::NAN,
        "+Inf" | "Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        _ => s
            .parse()
            .unwrap_or_else(|_| panic!("not a sample value: {s:?}")),
    }
}

/// Seconds (JSON number, ms precision) to ms.
pub fn seconds_to_ms(v: &serde_json::Value) -> i64 {
    let s = v
        .as_f64()
        .unwrap_or_else(|| panic!("expected a timestamp, got {v}"));
    (s * 1000.0).round() as i64
}

/// Parses VictoriaMetrics-style export lines. Values are read from the JSON text with
/// Rust's correctly rounded float parser, so every bit of every value is compared.
pub fn parse_export(text: &str) -> BTreeMap<Labels, Vec<(i64, f64)>> {
    let mut out = BTreeMap::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("bad export line ({e}): {line}"));
        let labels = labels_of(&v["metric"]);
        let timestamps: Vec<i64> = v["timestamps"]
            .as_array()
            .unwrap_or_else(|| panic!("no timestamps in {line}"))
            .iter()
            .map(|t| {
                t.as_i64()
                    .unwrap_or_else(|| panic!("bad timestamp {t} in {line}"))
            })
            .collect();
        let start = line
            .find("\"values\":[")
            .unwrap_or_else(|| panic!("no values in {line}"))
            + "\"values\":[".len();
        let len = line[start..]
            .find(']')
            .unwrap_or_else(|| panic!("unterminated values in {line}"));
        let values: Vec<f64> = line[start..start + len]
            .split(',')
            .filter(|t| !t.is_empty())
            .map(|t| parse_value(t.trim().trim_matches('"')))
            .collect();
        assert_eq!(
            timestamps.len(),
            values.len(),
            "export line has {} timestamps and {} values: {line}",
            timestamps.len(),
            values.len()
        );
        assert!(
            out.insert(labels.clone(), timestamps.into_iter().zip(values).collect())
                .is_none(),
            "series {labels:?} exported twice"
        );
    }
    out
}

/// Whether two sample values are the same: same bits, or both NaN (the API prints every
/// NaN alike).
pub fn same_value(a: f64, b: f64) -> bool {
    a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())
}

// ---------------------------------------------------------------------------------------
// Peers (Debian packages)

/// Finds a peer's binary on PATH (or in /usr/bin). When it is missing: inside CI (env `CI`
/// set) the test fails, since a skipped interop test would look like a pass; outside CI it
/// prints why and the test returns.
pub fn require_peer(binary: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/bin"), PathBuf::from("/usr/sbin")])
        .map(|d| d.join(binary))
        .find(|p| p.is_file());
    if found.is_none() {
        if std::env::var_os("CI").is_some_and(|v| !v.is_empty()) {
            panic!(
                "{binary} is not installed but CI is set: run scripts/install-test-deps.sh (CI must not skip this test)"
            );
        }
        eprintln!("skipping: {binary} not installed (run scripts/install-test-deps.sh)");
    }
    found
}

/// A running peer process (Prometheus). Killed and reaped when dropped.
pub struct Peer {
    child: Child,
    pub addr: SocketAddr,
    logs: Arc<Mutex<Vec<String>>>,
    pub dir: tempfile::TempDir,
}

impl Peer {
    /// Starts Prometheus with `config_yaml` on a free port and its own storage dir, and
    /// waits until it is ready. Retries on another port if the chosen one was taken.
    pub fn prometheus(binary: &Path, config_yaml: &str, extra_flags: &[&str]) -> Peer {
        Self::prometheus_seeded(binary, config_yaml, extra_flags, &|_| {})
    }

    /// Like [`prometheus`](Self::prometheus), but `seed` first fills the (empty) storage
    /// directory it is given, e.g. with TSDB blocks made by `promtool`.
    pub fn prometheus_seeded(
        binary: &Path,
        config_yaml: &str,
        extra_flags: &[&str],
        seed: &dyn Fn(&Path),
    ) -> Peer {
        let mut last_logs = String::new();
        for _attempt in 0..3 {
            let dir = tempfile::Builder::new()
                .prefix("lastmile-it-prom-")
                .tempdir()
                .expect("temp dir");
            let data_dir = dir.path().join("data");
            std::fs::create_dir_all(&data_dir).expect("create prometheus data dir");
            seed(&data_dir);
            let config = dir.path().join("prometheus.yml");
            std::fs::write(&config, config_yaml).expect("write prometheus config");
            let port = free_port();
            let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
            let mut cmd = Command::new(binary);
            cmd.arg(format!("--config.file={}", config.display()))
                .arg(format!("--storage.tsdb.path={}", data_dir.display()))
                .arg(format!("--web.listen-address={addr}"))
                .arg("--log.level=info")
                .args(extra_flags)
                .current_dir(dir.path())
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped());
            let mut child = cmd
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
            let (logs, _) = capture_stderr(
                &mut child,
                "prometheus",
                "Server is ready to receive web requests",
            );
            let mut peer = Peer {
                child,
                addr,
                logs,
                dir,
            };
            let ready = {
                let deadline = Instant::now() + START_TIMEOUT;
                loop {
                    if let Ok(Some(_)) = peer.child.try_wait() {
                        break false;
                    }
                    if let Ok(r) =
                        http_request(addr, "GET", "/-/ready", &[], &[], Framing::ContentLength)
                        && r.status == 200
                    {
                        break true;
                    }
                    if Instant::now() >= deadline {
                        panic!(
                            "prometheus not ready after {START_TIMEOUT:?}; stderr:\n{}",
                            peer.logs()
                        );
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
            };
            if ready {
                return peer;
            }
            last_logs = peer.logs();
            if !last_logs.contains("address already in use") {
                break;
            }
        }
        panic!("prometheus exited during startup; stderr:\n{last_logs}");
    }

    pub fn logs(&self) -> String {
        self.logs.lock().unwrap().join("\n")
    }

    pub fn get(&self, target: &str) -> Response {
        http_request(self.addr, "GET", target, &[], &[], Framing::ContentLength).unwrap_or_else(
            |e| {
                panic!(
                    "GET {target} from peer failed: {e}; stderr:\n{}",
                    self.logs()
                )
            },
        )
    }

    /// POSTs a form (`application/x-www-form-urlencoded`; `body` already encoded).
    pub fn post_form(&self, target: &str, body: &str) -> Response {
        http_request(
            self.addr,
            "POST",
            target,
            &[("Content-Type", "application/x-www-form-urlencoded")],
            body.as_bytes(),
            Framing::ContentLength,
        )
        .unwrap_or_else(|e| {
            panic!(
                "POST {target} to peer failed: {e}; stderr:\n{}",
                self.logs()
            )
        })
    }

    /// `data` of a successful Prometheus API answer.
    pub fn api(&self, target: &str) -> serde_json::Value {
        let r = self.get(target);
        assert_eq!(r.status, 200, "peer GET {target}: {}", r.text());
        let mut v = r.json();
        assert_eq!(v["status"], "success", "peer GET {target}: {v}");
        v["data"].take()
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------------------
// Python clients (scripts/install-test-deps.sh builds the venv)

/// The Python of the test venv (`$LASTMILE_VENV`, default ~/.cache/lastmile-venv). Missing:
/// in CI the test fails (a skipped peer test would look like a pass); elsewhere it prints
/// why and the test returns.
pub fn require_venv_python() -> Option<PathBuf> {
    let venv = std::env::var_os("LASTMILE_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into()))
                .join(".cache/lastmile-venv")
        });
    let python = venv.join("bin/python");
    if python.is_file() {
        return Some(python);
    }
    if std::env::var_os("CI").is_some_and(|v| !v.is_empty()) {
        panic!(
            "no Python venv at {} but CI is set: run scripts/install-test-deps.sh (CI must not skip this test)",
            venv.display()
        );
    }
    eprintln!(
        "skipping: no Python venv at {} (run scripts/install-test-deps.sh)",
        venv.display()
    );
    None
}

/// Runs a Python script from `tests/` with the venv's Python; fails the test (with its
/// output) unless it exits 0; returns its stdout.
pub fn run_python(python: &Path, script: &str, args: &[&str]) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join(script);
    let mut cmd = Command::new(python);
    cmd.arg(&path)
        .args(args)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .stdin(Stdio::null());
    // The SDK reads OTEL_* variables; a developer's must not change what is sent.
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("OTEL_") {
            cmd.env_remove(k);
        }
    }
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", python.display()));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{script} {args:?} exited with {}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    if !stderr.trim().is_empty() {
        eprintln!("[{script} {args:?} stderr]\n{stderr}");
    }
    stdout
}

/// Builds the Go program in `src` (a directory with its go.mod) with the `go` binary into
/// the tests' scratch directory as `name`, statically (no cgo), sharing one Go build cache
/// between test binaries. Fails the test if the build fails.
pub fn go_build(go: &Path, src: &Path, name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("go-fixtures");
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join(name);
    let status = Command::new(go)
        .args(["build", "-o"])
        .arg(&out)
        .arg(".")
        .current_dir(src)
        .env("GOCACHE", dir.join("gocache"))
        .env("GOPATH", dir.join("gopath"))
        .env("GOTOOLCHAIN", "local")
        .env("CGO_ENABLED", "0")
        .status()
        .unwrap_or_else(|e| panic!("run {}: {e}", go.display()));
    assert!(status.success(), "go build of {} failed", src.display());
    out
}

/// Log lines a LogQL stream query returns over the last two hours, oldest first, each with
/// its stream's labels (structured metadata included, as Loki 3 shows them).
pub fn log_lines(server: &Lastmile, query: &str) -> Vec<(Labels, String)> {
    let end = (now_ms() + 60_000) * 1_000_000;
    let start = end - 7_200_000_000_000;
    let r = server.get(&format!(
        "/loki/api/v1/query_range?query={}&start={start}&end={end}&limit=5000&direction=forward",
        enc(query)
    ));
    assert_eq!(r.status, 200, "{query}: {}", r.text());
    let v = r.json();
    assert_eq!(v["data"]["resultType"], "streams", "{v}");
    let mut out = Vec::new();
    for s in v["data"]["result"].as_array().unwrap() {
        let labels = labels_of(&s["stream"]);
        for e in s["values"].as_array().unwrap() {
            let ts: i64 = e[0].as_str().unwrap().parse().unwrap();
            out.push((ts, labels.clone(), e[1].as_str().unwrap().to_string()));
        }
    }
    out.sort_by_key(|(ts, _, _)| *ts);
    out.into_iter().map(|(_, l, s)| (l, s)).collect()
}
