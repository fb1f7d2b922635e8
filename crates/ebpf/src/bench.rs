//! `lastmile bench go-runtime`: what the probes cost the probed program, measured side by
//! side in one run — without probes, with the always-on probes, and inside a park-profile
//! window (whose expected overhead is stated before it runs) — on the gowork fixture and on
//! a Go HTTP service under a bounded wrk load on loopback.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use serde::Serialize;

use crate::probes::ProbeSet;
use crate::session::{OverheadEstimate, Watcher};

#[derive(Args, Debug, Clone)]
#[command(
    after_help = "What it does: builds the gowork fixture (crates/ebpf/tests/fixtures) \
with --go, then for each of --repeat rounds runs, one after the other:\n\
  workload: gowork -mode mixed (channels, mutex, allocation, a forced GC every 25 loops) for \
--seconds, its loop rate measured from its progress lines: without probes, with the \
always-on probes, and with a park profile over the middle of the run;\n\
  http: gowork -mode http under `wrk -c --connections -d --seconds` on 127.0.0.1: requests/s \
without probes, with the always-on probes, and inside a park-profile window.\n\
Overhead = baseline rate / probed rate - 1 (medians over rounds); the same for the \
process's CPU time per loop / request (utime+stime), which other load on the machine does not \
move the way it moves rates. For the park profile the \
expected overhead printed before each window (measured event rate × measured probe cost) \
is compared with the measured one. Needs root, Go, and wrk (Debian: wrk)."
)]
pub struct BenchArgs {
    /// Go toolchain to build the fixture with.
    #[arg(long, default_value = "/usr/lib/go-1.23/bin/go")]
    pub go: PathBuf,
    /// Directory of the gowork fixture source.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/gowork"))]
    pub fixture_src: PathBuf,
    /// Rounds; figures are medians.
    #[arg(long, default_value_t = 3)]
    pub repeat: usize,
    /// Length of each measured run in seconds.
    #[arg(long, default_value_t = 6)]
    pub seconds: u64,
    /// wrk connections.
    #[arg(long, default_value_t = 8)]
    pub connections: u32,
    /// JSON results.
    #[arg(long, default_value = "bench-results/go-runtime.json")]
    pub out: PathBuf,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct ModeResult {
    /// Loops/s (workload) or requests/s (http), one per round.
    pub rates: Vec<f64>,
    pub median_rate: f64,
    /// baseline median / this median - 1.
    pub overhead: f64,
    /// Park profile: expected overheads stated before the windows, and their median.
    pub expected: Vec<f64>,
    pub median_expected: f64,
    pub probe_hits_per_second: Vec<f64>,
    /// Process CPU seconds per loop / request, one per round: unlike the rate, it does not
    /// move when other work on the machine takes CPU away.
    pub cpu_us_per_op: Vec<f64>,
    pub median_cpu_us_per_op: f64,
    /// This median CPU per op / baseline's - 1.
    pub cpu_overhead: f64,
}

#[derive(Debug, Default, Serialize)]
pub struct Scenario {
    pub name: &'static str,
    pub baseline: ModeResult,
    pub always_on: ModeResult,
    pub park_profile: ModeResult,
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

struct Proc {
    child: Child,
    stdout: Arc<Mutex<Vec<String>>>,
}

impl Proc {
    fn spawn(bin: &Path, args: &[&str]) -> anyhow::Result<Proc> {
        let mut child = Command::new(bin)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("cannot start {}", bin.display()))?;
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let o = stdout.clone();
        let out = child.stdout.take().context("stdout")?;
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines().map_while(Result::ok) {
                if let Ok(mut v) = o.lock() {
                    v.push(l);
                }
            }
        });
        Ok(Proc { child, stdout })
    }

    fn wait_line(&self, prefix: &str, timeout: Duration) -> anyhow::Result<String> {
        let end = Instant::now() + timeout;
        loop {
            if let Some(l) = self
                .stdout
                .lock()
                .ok()
                .and_then(|v| v.iter().find(|l| l.starts_with(prefix)).cloned())
            {
                return Ok(l);
            }
            if Instant::now() > end {
                bail!("no {prefix:?} line from the fixture");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn go(&mut self) -> anyhow::Result<()> {
        use std::io::Write;
        let stdin = self.child.stdin.as_mut().context("stdin")?;
        stdin.write_all(b"go\n")?;
        Ok(())
    }

    /// (loops, unix ns) progress points.
    fn progress(&self) -> Vec<(f64, i64)> {
        self.stdout
            .lock()
            .map(|v| {
                v.iter()
                    .filter_map(|l| {
                        let mut it = l.strip_prefix("progress ")?.split(' ');
                        Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn unix_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

/// Loop rate between two wall-clock instants, from the progress lines.
fn rate_between(points: &[(f64, i64)], from: i64, to: i64) -> f64 {
    let inside: Vec<&(f64, i64)> = points.iter().filter(|p| p.1 >= from && p.1 <= to).collect();
    match (inside.first(), inside.last()) {
        (Some(a), Some(b)) if b.1 > a.1 => (b.0 - a.0) / ((b.1 - a.1) as f64 / 1e9),
        _ => 0.0,
    }
}

fn loops_between(points: &[(f64, i64)], from: i64, to: i64) -> f64 {
    let inside: Vec<&(f64, i64)> = points.iter().filter(|p| p.1 >= from && p.1 <= to).collect();
    match (inside.first(), inside.last()) {
        (Some(a), Some(b)) => b.0 - a.0,
        _ => 0.0,
    }
}

/// One measured run: rate, CPU per op, the stated estimate (park) and probe hits/s.
struct RoundResult {
    rate: f64,
    cpu_us_per_op: f64,
    estimate: Option<OverheadEstimate>,
    hits: f64,
}

enum Mode {
    Baseline,
    AlwaysOn,
    Park,
}

fn workload_round(
    bin: &Path,
    watcher: &mut Watcher,
    mode: &Mode,
    secs: u64,
) -> anyhow::Result<RoundResult> {
    let total = format!("{}s", secs + 2);
    let mut p = Proc::spawn(
        bin,
        &[
            "-mode",
            "mixed",
            "-duration",
            &total,
            "-gc-every",
            "25",
            "-progress",
            "100ms",
            "-wait-stdin",
        ],
    )?;
    p.wait_line("waiting", Duration::from_secs(10))?;
    let pid = p.child.id();
    if !matches!(mode, Mode::Baseline) {
        watcher.watch_pid(pid, &[])?;
    }
    p.go()?;
    std::thread::sleep(Duration::from_secs(1)); // warm-up, outside the measurement
    let cpu0 = crate::session::proc_cpu_seconds(pid).unwrap_or(0.0);
    let from = unix_ns();
    let mut estimate = None;
    let mut hits = 0.0;
    if let Mode::Park = mode {
        let prof = watcher.profile(
            pid,
            ProbeSet::Park,
            Duration::from_secs(secs),
            Duration::from_secs(1),
            &mut |e| estimate = Some(e.clone()),
        )?;
        hits = prof.measured_events_per_second;
    } else {
        std::thread::sleep(Duration::from_secs(secs));
    }
    let to = unix_ns();
    let cpu = crate::session::proc_cpu_seconds(pid).unwrap_or(0.0) - cpu0;
    if !matches!(mode, Mode::Baseline) {
        watcher.unwatch(pid)?;
    }
    let points = p.progress();
    let rate = rate_between(&points, from, to);
    let loops = loops_between(&points, from, to);
    if rate <= 0.0 || loops <= 0.0 {
        bail!("the workload reported no progress");
    }
    // The progress points cover slightly less than [from, to]: scale the loops to it.
    let ops = rate * (to - from) as f64 / 1e9;
    Ok(RoundResult {
        rate,
        cpu_us_per_op: cpu * 1e6 / ops,
        estimate,
        hits,
    })
}

/// Requests/s and total requests of a wrk run.
fn wrk_rps(addr: &str, connections: u32, secs: u64) -> anyhow::Result<(f64, f64)> {
    let out = Command::new("wrk")
        .args([
            "-t",
            "1",
            "-c",
            &connections.to_string(),
            "-d",
            &format!("{secs}s"),
        ])
        .arg(format!("http://{addr}/"))
        .output()
        .context("cannot run wrk (Debian: apt-get install wrk)")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let rps = text
        .lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .with_context(|| format!("no Requests/sec in wrk's output: {text}"))?;
    let total = text
        .lines()
        .find_map(|l| l.trim().split_once(" requests in "))
        .and_then(|(n, _)| n.trim().parse().ok())
        .with_context(|| format!("no request count in wrk's output: {text}"))?;
    Ok((rps, total))
}

fn http_round(
    bin: &Path,
    watcher: &mut Watcher,
    mode: &Mode,
    secs: u64,
    connections: u32,
) -> anyhow::Result<RoundResult> {
    let p = Proc::spawn(bin, &["-mode", "http", "-addr", "127.0.0.1:0"])?;
    let line = p.wait_line("listening ", Duration::from_secs(10))?;
    let addr = line.trim_start_matches("listening ").trim().to_owned();
    if !addr.starts_with("127.0.0.1:") {
        bail!("the service must listen on loopback, got {addr}");
    }
    let pid = p.child.id();
    // Warm the service up (connections, heap) before measuring.
    wrk_rps(&addr, connections, 1)?;
    if !matches!(mode, Mode::Baseline) {
        watcher.watch_pid(pid, &[])?;
    }
    let mut estimate = None;
    let mut hits = 0.0;
    let cpu0 = crate::session::proc_cpu_seconds(pid).unwrap_or(0.0);
    let (rps, requests) = if let Mode::Park = mode {
        let a = addr.clone();
        let load = std::thread::spawn(move || wrk_rps(&a, connections, secs));
        let prof = watcher.profile(
            pid,
            ProbeSet::Park,
            Duration::from_secs(secs),
            Duration::from_secs(1),
            &mut |e| estimate = Some(e.clone()),
        )?;
        hits = prof.measured_events_per_second;
        load.join()
            .map_err(|_| anyhow::anyhow!("wrk thread panicked"))??
    } else {
        wrk_rps(&addr, connections, secs)?
    };
    let cpu = crate::session::proc_cpu_seconds(pid).unwrap_or(0.0) - cpu0;
    if !matches!(mode, Mode::Baseline) {
        watcher.unwatch(pid)?;
    }
    if requests <= 0.0 {
        bail!("wrk completed no request");
    }
    Ok(RoundResult {
        rate: rps,
        cpu_us_per_op: cpu * 1e6 / requests,
        estimate,
        hits,
    })
}

pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    tokio::task::spawn_blocking(move || run_blocking(&args))
        .await
        .context("benchmark panicked")?
}

fn run_blocking(args: &BenchArgs) -> anyhow::Result<()> {
    crate::probes::availability()?;
    let work = std::env::temp_dir().join(format!("lastmile-bench-go-{}", std::process::id()));
    std::fs::create_dir_all(&work)?;
    let bin = work.join("gowork");
    eprintln!("building the fixture with {}", args.go.display());
    let status = Command::new(&args.go)
        .args(["build", "-o"])
        .arg(&bin)
        .arg(".")
        .current_dir(&args.fixture_src)
        .env("GOTOOLCHAIN", "local")
        .env("CGO_ENABLED", "0")
        .status()
        .with_context(|| format!("cannot run {}", args.go.display()))?;
    if !status.success() {
        bail!("building the fixture failed");
    }
    let mut watcher = Watcher::new()?;
    let cost = watcher.measure_probe_cost()?;
    eprintln!(
        "one uprobe hit costs {:.1} µs here",
        cost.as_secs_f64() * 1e6
    );
    let mut scenarios = vec![
        Scenario {
            name: "workload (loops/s)",
            ..Default::default()
        },
        Scenario {
            name: "http under wrk (requests/s)",
            ..Default::default()
        },
    ];
    for round in 1..=args.repeat {
        for (i, sc) in scenarios.iter_mut().enumerate() {
            for mode in [Mode::Baseline, Mode::AlwaysOn, Mode::Park] {
                let res = if i == 0 {
                    workload_round(&bin, &mut watcher, &mode, args.seconds)?
                } else {
                    http_round(&bin, &mut watcher, &mode, args.seconds, args.connections)?
                };
                let (label, r) = match mode {
                    Mode::Baseline => ("baseline", &mut sc.baseline),
                    Mode::AlwaysOn => ("always-on", &mut sc.always_on),
                    Mode::Park => ("park profile", &mut sc.park_profile),
                };
                let (rate, hits) = (res.rate, res.hits);
                r.rates.push(rate);
                r.cpu_us_per_op.push(res.cpu_us_per_op);
                if let Some(e) = res.estimate {
                    eprintln!(
                        "round {round} {}: park profile expected overhead +{:.1}% ({:.0} hits/s)",
                        sc.name,
                        e.expected_overhead * 100.0,
                        e.events_per_second
                    );
                    r.expected.push(e.expected_overhead);
                    r.probe_hits_per_second.push(hits);
                }
                eprintln!(
                    "round {round} {} {label}: {rate:.1}/s, {:.1} µs CPU per op",
                    sc.name, res.cpu_us_per_op
                );
            }
        }
    }
    for sc in &mut scenarios {
        let base = median(&sc.baseline.rates);
        let base_cpu = median(&sc.baseline.cpu_us_per_op);
        for r in [&mut sc.baseline, &mut sc.always_on, &mut sc.park_profile] {
            r.median_cpu_us_per_op = median(&r.cpu_us_per_op);
            r.cpu_overhead = r.median_cpu_us_per_op / base_cpu - 1.0;
            r.median_rate = median(&r.rates);
            r.overhead = if r.median_rate > 0.0 {
                base / r.median_rate - 1.0
            } else {
                f64::NAN
            };
            r.median_expected = median(&r.expected);
        }
    }
    println!(
        "{:<30} {:>12} {:>12} {:>10} {:>12} {:>10} {:>10}",
        "scenario", "baseline", "always-on", "overhead", "park", "overhead", "expected"
    );
    for sc in &scenarios {
        println!(
            "{:<30} {:>12.1} {:>12.1} {:>9.2}% {:>12.1} {:>9.1}% {:>9.1}%",
            sc.name,
            sc.baseline.median_rate,
            sc.always_on.median_rate,
            sc.always_on.overhead * 100.0,
            sc.park_profile.median_rate,
            sc.park_profile.overhead * 100.0,
            sc.park_profile.median_expected * 100.0
        );
        println!(
            "{:<30} {:>12.1} {:>12.1} {:>9.2}% {:>12.1} {:>9.1}% {:>9.1}%",
            "  CPU µs per op",
            sc.baseline.median_cpu_us_per_op,
            sc.always_on.median_cpu_us_per_op,
            sc.always_on.cpu_overhead * 100.0,
            sc.park_profile.median_cpu_us_per_op,
            sc.park_profile.cpu_overhead * 100.0,
            sc.park_profile.median_expected * 100.0
        );
    }
    if let Some(dir) = args.out.parent() {
        std::fs::create_dir_all(dir).ok();
    }
    let json = serde_json::json!({
        "probe_cost_us": cost.as_secs_f64() * 1e6,
        "seconds": args.seconds,
        "repeat": args.repeat,
        "scenarios": scenarios,
    });
    std::fs::write(&args.out, serde_json::to_vec_pretty(&json)?)
        .with_context(|| format!("cannot write {}", args.out.display()))?;
    eprintln!("results written to {}", args.out.display());
    let _ = std::fs::remove_dir_all(&work);
    Ok(())
}
