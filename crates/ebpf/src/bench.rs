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
use crate::session::{CALIBRATION_STRETCH, OverheadEstimate, Watcher};

#[derive(Args, Debug, Clone)]
#[command(
    after_help = "What it does: builds the gowork fixture (crates/ebpf/tests/fixtures) \
with --go and runs two scenarios, each on a pair of identical long-running processes (twins) \
sharing one CPU:\n\
  workload: gowork -mode mixed (channels, mutex, allocation, a forced GC every 25 loops), \
its loop rate read from its progress lines;\n\
  http: gowork -mode http, each twin under its own `wrk -c --connections -d --seconds` on \
127.0.0.1, requests/s; each is held to --http-cores of a core by a cgroup CPU quota, so \
it is busy all the time and requests/s follows its CPU per request.\n\
Each of --repeat rounds measures both twins over the same --seconds in three modes: \
neither probed (the method's own noise), one twin with the always-on probes, and one twin \
in a park-profile window (the profile reads the process's CPU for --calibration seconds \
without and with its probes and states the expected overhead; the rate is measured after \
that). The probed twin alternates and the order of the modes rotates from round to round. \
A round's overhead is the control twin's rate / the probed twin's - 1, and likewise for the \
process CPU time per loop / request (utime+stime); the table shows medians over rounds \
with the smallest and largest. Measuring the twins side by side cancels what the machine \
does meanwhile (on the 2-core development VM a pinned loop's speed drifts by up to 2× \
over tens of seconds, which swamps 1 % when runs are compared one after another). With \
two or more CPUs the twins run on the last one (GOMAXPROCS=1) and this program and wrk on \
the others (--no-pin to turn off). Needs root, Go, and wrk (Debian: wrk)."
)]
pub struct BenchArgs {
    /// Go toolchain to build the fixture with.
    #[arg(long, default_value = "/usr/lib/go-1.23/bin/go")]
    pub go: PathBuf,
    /// Directory of the gowork fixture source.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/gowork"))]
    pub fixture_src: PathBuf,
    /// Rounds; figures are medians over them.
    #[arg(long, default_value_t = 7)]
    pub repeat: usize,
    /// Seconds each mode is measured per round.
    #[arg(long, default_value_t = 4)]
    pub seconds: u64,
    /// Seconds the park profile reads the process's CPU unprobed, and again probed,
    /// before stating its estimate.
    #[arg(long, default_value_t = 2)]
    pub calibration: u64,
    /// wrk connections.
    #[arg(long, default_value_t = 8)]
    pub connections: u32,
    /// CPU (in cores) each HTTP twin gets, through a cgroup's CPU quota, so that it is
    /// busy all the time; 0 for no limit.
    #[arg(long, default_value_t = 0.25)]
    pub http_cores: f64,
    /// Run the target on the same CPUs as everything else.
    #[arg(long)]
    pub no_pin: bool,
    /// JSON results.
    #[arg(long, default_value = "bench-results/go-runtime.json")]
    pub out: PathBuf,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct ModeResult {
    /// Loops/s (workload) or requests/s (http) of the probed twin, one per round.
    pub rates: Vec<f64>,
    /// The same of the unprobed twin over the same interval.
    pub control_rates: Vec<f64>,
    /// Process CPU µs per loop / request, probed twin and control, one per round.
    pub cpu_us_per_op: Vec<f64>,
    pub control_cpu_us_per_op: Vec<f64>,
    /// Per round: control rate / probed rate - 1.
    pub overheads: Vec<f64>,
    /// Per round: probed CPU per op / control's - 1.
    pub cpu_overheads: Vec<f64>,
    pub overhead: Spread,
    pub cpu_overhead: Spread,
    /// Park profile: the expected overhead stated before each window.
    pub expected: Vec<f64>,
    pub median_expected: f64,
    /// Park profile: what hits × lastmile's own cost per hit would have stated.
    pub hits_x_cost_expected: Vec<f64>,
    /// Park profile: per round, measured overhead / expected.
    pub measured_over_expected: Vec<f64>,
    pub median_measured_over_expected: f64,
    /// Park profile: per round, measured CPU-per-op overhead / expected. The estimate is
    /// CPU per unit of the process's own work, so this is the like-for-like comparison; the
    /// rate's is also at the mercy of how the twins split their CPU (see the baseline).
    pub cpu_measured_over_expected: Vec<f64>,
    pub median_cpu_measured_over_expected: f64,
    pub probe_hits_per_second: Vec<f64>,
}

/// Median, smallest and largest of per-round figures.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Spread {
    fn of(v: &[f64]) -> Spread {
        Spread {
            median: median(v),
            min: v.iter().copied().fold(f64::INFINITY, f64::min),
            max: v.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        }
    }
}

#[derive(Debug, Default, Serialize)]
pub struct Scenario {
    pub name: &'static str,
    pub baseline: ModeResult,
    pub always_on: ModeResult,
    pub park_profile: ModeResult,
}

impl Scenario {
    fn mode(&mut self, m: Mode) -> &mut ModeResult {
        match m {
            Mode::Baseline => &mut self.baseline,
            Mode::AlwaysOn => &mut self.always_on,
            Mode::Park => &mut self.park_profile,
        }
    }

    /// Per-round ratios of the probed twin against the control, then their spreads.
    fn summarise(&mut self) {
        for r in [
            &mut self.baseline,
            &mut self.always_on,
            &mut self.park_profile,
        ] {
            r.overheads = r
                .control_rates
                .iter()
                .zip(&r.rates)
                .map(|(c, x)| if *x > 0.0 { c / x - 1.0 } else { f64::NAN })
                .collect();
            r.cpu_overheads = r
                .control_cpu_us_per_op
                .iter()
                .zip(&r.cpu_us_per_op)
                .map(|(c, x)| x / c - 1.0)
                .collect();
            r.overhead = Spread::of(&r.overheads);
            r.cpu_overhead = Spread::of(&r.cpu_overheads);
            r.measured_over_expected = over_expected(&r.overheads, &r.expected);
            r.cpu_measured_over_expected = over_expected(&r.cpu_overheads, &r.expected);
            r.median_expected = median(&r.expected);
            r.median_measured_over_expected = median(&r.measured_over_expected);
            r.median_cpu_measured_over_expected = median(&r.cpu_measured_over_expected);
        }
    }
}

/// Per round: a measured overhead / the one stated before it.
fn over_expected(measured: &[f64], expected: &[f64]) -> Vec<f64> {
    measured.iter().zip(expected).map(|(m, e)| m / e).collect()
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
    fn spawn(bin: &Path, args: &[&str], place: Placement) -> anyhow::Result<Proc> {
        let mut cmd = Command::new(bin);
        cmd.args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        place.command(&mut cmd);
        let mut child = cmd
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
    let mut inside = points.iter().filter(|p| p.1 >= from && p.1 <= to);
    let first = inside.next();
    match (first, inside.next_back().or(first)) {
        (Some(a), Some(b)) if b.1 > a.1 => (b.0 - a.0) / ((b.1 - a.1) as f64 / 1e9),
        _ => 0.0,
    }
}

/// One measured interval: the probed twin's rate and CPU per op, the control's, the
/// stated estimate (park) and probe hits/s.
struct RoundResult {
    rate: f64,
    cpu_us_per_op: f64,
    control_rate: f64,
    control_cpu_us_per_op: f64,
    estimate: Option<OverheadEstimate>,
    hits: f64,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Mode {
    Baseline,
    AlwaysOn,
    Park,
}

const MODES: [Mode; 3] = [Mode::Baseline, Mode::AlwaysOn, Mode::Park];

/// CPUs for the measured twins and for everything else (this program, wrk), when the
/// machine has two or more: the twins then share a core of their own, so what the load
/// generator takes does not land on one of them more than on the other.
#[derive(Clone, Copy)]
struct Placement {
    target_cpu: Option<usize>,
}

fn set_affinity(pid: libc::pid_t, cpus: &[usize]) -> std::io::Result<()> {
    // SAFETY: cpu_set_t is plain data; CPU_ZERO/CPU_SET write inside it; sched_setaffinity
    // reads it for its size.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_ZERO(&mut set);
        for &c in cpus {
            libc::CPU_SET(c, &mut set);
        }
        if libc::sched_setaffinity(pid, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

impl Placement {
    /// Pins this thread (and what it starts later: wrk, reader threads) to the first CPU
    /// and reserves the last for the target.
    fn new(pin: bool) -> Placement {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        if !pin || cpus < 2 {
            return Placement { target_cpu: None };
        }
        let others: Vec<usize> = (0..cpus - 1).collect();
        match set_affinity(0, &others) {
            Ok(()) => Placement {
                target_cpu: Some(cpus - 1),
            },
            Err(e) => {
                eprintln!("cannot pin CPUs ({e}); measuring unpinned");
                Placement { target_cpu: None }
            }
        }
    }

    /// Applies to the target process: its CPU, and GOMAXPROCS=1 to match.
    fn command(&self, cmd: &mut Command) {
        if let Some(cpu) = self.target_cpu {
            cmd.env("GOMAXPROCS", "1");
            // SAFETY: only async-signal-safe calls between fork and exec.
            unsafe {
                use std::os::unix::process::CommandExt;
                cmd.pre_exec(move || set_affinity(0, &[cpu]));
            }
        }
    }
}

/// A long-running target and how to measure its work over an interval.
enum Target {
    /// gowork -mode mixed, loops counted from its progress lines.
    Workload(Proc),
    /// gowork -mode http, requests counted by wrk.
    Http {
        proc: Proc,
        addr: String,
        connections: u32,
    },
}

/// A measurement under way on one target.
enum Measuring {
    Workload {
        from: i64,
        cpu0: f64,
    },
    Http {
        cpu0: f64,
        load: std::thread::JoinHandle<anyhow::Result<(f64, f64)>>,
    },
}

impl Target {
    fn start(bin: &Path, http: bool, connections: u32, place: Placement) -> anyhow::Result<Target> {
        if http {
            let proc = Proc::spawn(bin, &["-mode", "http", "-addr", "127.0.0.1:0"], place)?;
            let line = proc.wait_line("listening ", Duration::from_secs(10))?;
            let addr = line.trim_start_matches("listening ").trim().to_owned();
            if !addr.starts_with("127.0.0.1:") {
                bail!("the service must listen on loopback, got {addr}");
            }
            Ok(Target::Http {
                proc,
                addr,
                connections,
            })
        } else {
            let mut proc = Proc::spawn(
                bin,
                &[
                    "-mode",
                    "mixed",
                    "-duration",
                    "2h",
                    "-gc-every",
                    "25",
                    "-progress",
                    "100ms",
                    "-wait-stdin",
                ],
                place,
            )?;
            proc.wait_line("waiting", Duration::from_secs(10))?;
            proc.go()?;
            Ok(Target::Workload(proc))
        }
    }

    fn pid(&self) -> u32 {
        match self {
            Target::Workload(p) | Target::Http { proc: p, .. } => p.child.id(),
        }
    }

    fn cpu(&self) -> f64 {
        crate::session::proc_cpu_seconds(self.pid()).unwrap_or(0.0)
    }

    /// Load for up to `secs` that is not measured (warm-up, a profile's calibration): wrk
    /// for the service; the workload loads itself. Stop it early by killing the child.
    fn unmeasured_load(&self, secs: u64) -> anyhow::Result<Option<Child>> {
        match self {
            Target::Workload(_) => Ok(None),
            Target::Http {
                addr, connections, ..
            } => wrk_command(addr, *connections, secs)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .map(Some)
                .context("cannot run wrk (Debian: apt-get install wrk)"),
        }
    }

    /// Starts measuring: the service gets a `secs`-second wrk run; the workload is
    /// measured until [`Target::finish`].
    fn begin(&self, secs: u64) -> Measuring {
        let cpu0 = self.cpu();
        match self {
            Target::Workload(_) => Measuring::Workload {
                from: unix_ns(),
                cpu0,
            },
            Target::Http {
                addr, connections, ..
            } => {
                let (a, c) = (addr.clone(), *connections);
                Measuring::Http {
                    cpu0,
                    load: std::thread::spawn(move || wrk_rps(&a, c, secs)),
                }
            }
        }
    }

    /// Operations per second and CPU µs per operation since `begin`.
    fn finish(&self, m: Measuring) -> anyhow::Result<(f64, f64)> {
        match (self, m) {
            (Target::Workload(p), Measuring::Workload { from, cpu0 }) => {
                let (to, cpu) = (unix_ns(), self.cpu() - cpu0);
                let rate = rate_between(&p.progress(), from, to);
                if rate <= 0.0 {
                    bail!("the workload reported no progress");
                }
                // The progress points cover slightly less than [from, to]: scale to it.
                let ops = rate * (to - from) as f64 / 1e9;
                Ok((rate, cpu * 1e6 / ops))
            }
            (Target::Http { .. }, Measuring::Http { cpu0, load }) => {
                let (rps, requests) = load
                    .join()
                    .map_err(|_| anyhow::anyhow!("wrk thread panicked"))??;
                let cpu = self.cpu() - cpu0;
                if requests <= 0.0 {
                    bail!("wrk completed no request");
                }
                Ok((rps, cpu * 1e6 / requests))
            }
            _ => bail!("a measurement finished on the wrong kind of target"),
        }
    }
}

/// Two identical targets on the same CPU, measured over the same interval: one probed,
/// the other the control. Whatever else the machine does in that interval (on this VM a
/// pinned loop's speed drifts by up to 2× over tens of seconds) slows both alike, so
/// their ratio is the probes' cost; with both unprobed it shows the method's own noise.
struct Twins(
    [Target; 2],
    /// Each twin's CPU quota; dropped after the twins (field order), when empty.
    Vec<CpuLimit>,
);

impl Twins {
    fn start(
        bin: &Path,
        http: bool,
        connections: u32,
        place: Placement,
        cores_each: Option<f64>,
    ) -> anyhow::Result<Twins> {
        let mut twins = Twins(
            [
                Target::start(bin, http, connections, place)?,
                Target::start(bin, http, connections, place)?,
            ],
            Vec::new(),
        );
        if let Some(cores) = cores_each {
            for (i, t) in twins.0.iter().enumerate() {
                let limit = CpuLimit::new(&format!("twin{i}"), cores)?;
                limit.add(t.pid())?;
                twins.1.push(limit);
            }
        }
        // Warm both up (heap, connections) before measuring.
        for t in &twins.0 {
            if let Some(mut wrk) = t.unmeasured_load(1)? {
                wrk.wait()?;
            }
        }
        if !http {
            std::thread::sleep(Duration::from_secs(1));
        }
        Ok(twins)
    }
}

/// A CPU-bandwidth cgroup holding an HTTP twin to a fixed share of a core. Unlimited,
/// the services are not the bottleneck (the two wrk clients on the other core are), so
/// their requests/s follow how that core is shared: ±60 % between twins with nothing
/// probed. Held below what wrk can drive, each twin is busy all the time with the same
/// CPU, as a service in a container at its CPU limit is, and requests/s measures its CPU
/// per request. (One quota for both let the probed twin take 8 % more CPU than the
/// control: the scheduler shares by thread, not by process.)
struct CpuLimit {
    dir: PathBuf,
}

impl CpuLimit {
    /// Scheduling period of the quota: short, so that a 4 s measurement spans hundreds.
    const PERIOD_US: u64 = 20_000;

    fn new(tag: &str, cores: f64) -> anyhow::Result<CpuLimit> {
        let name = format!("lastmile-bench-{}-{tag}", std::process::id());
        let quota = ((cores * Self::PERIOD_US as f64) as u64).max(1000);
        let v2 = Path::new("/sys/fs/cgroup");
        let v1 = Path::new("/sys/fs/cgroup/cpu");
        // The hierarchy, and the files that set the quota in it.
        let (root, settings) = if std::fs::read_to_string(v2.join("cgroup.controllers"))
            .is_ok_and(|c| c.split_whitespace().any(|x| x == "cpu"))
        {
            // Lets children of the root have the cpu controller (a no-op when enabled).
            std::fs::write(v2.join("cgroup.subtree_control"), "+cpu")
                .context("cannot enable the cgroup v2 cpu controller")?;
            (
                v2,
                vec![("cpu.max", format!("{quota} {}", Self::PERIOD_US))],
            )
        } else if v1.join("cpu.cfs_quota_us").exists() {
            (
                v1,
                vec![
                    ("cpu.cfs_period_us", Self::PERIOD_US.to_string()),
                    ("cpu.cfs_quota_us", quota.to_string()),
                ],
            )
        } else {
            bail!("no cgroup cpu controller (neither cgroup v2 nor v1's cpu hierarchy)")
        };
        let dir = root.join(&name);
        std::fs::create_dir(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        // From here on, dropping it removes the directory.
        let limit = CpuLimit { dir };
        for (file, value) in settings {
            let path = limit.dir.join(file);
            std::fs::write(&path, value)
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
        Ok(limit)
    }

    /// Moves a process (all its threads) into the cgroup.
    fn add(&self, pid: u32) -> anyhow::Result<()> {
        std::fs::write(self.dir.join("cgroup.procs"), pid.to_string())
            .with_context(|| format!("cannot move {pid} into {}", self.dir.display()))
    }
}

impl Drop for CpuLimit {
    /// Runs after the twins are killed and reaped: an empty cgroup can be removed.
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir(&self.dir) {
            eprintln!("cannot remove {}: {e}", self.dir.display());
        }
    }
}

/// One wrk thread with `connections` connections on `addr` for `secs` seconds.
fn wrk_command(addr: &str, connections: u32, secs: u64) -> Command {
    let mut cmd = Command::new("wrk");
    cmd.args(["-t", "1", "-c", &connections.to_string()])
        .args(["-d", &format!("{secs}s")])
        .arg(format!("http://{addr}/"));
    cmd
}

/// Stops unmeasured wrk runs (killed: their figures are not wanted).
fn stop_loads(loads: &mut Vec<Child>) {
    for mut wrk in loads.drain(..) {
        let _ = wrk.kill();
        let _ = wrk.wait();
    }
}

/// Requests/s and total requests of a wrk run.
fn wrk_rps(addr: &str, connections: u32, secs: u64) -> anyhow::Result<(f64, f64)> {
    let out = wrk_command(addr, connections, secs)
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

/// One round of one mode: the probed twin (`probed`: 0 or 1) against the other. The
/// watcher is attached or detached first, outside the measurement.
fn measure_mode(
    twins: &Twins,
    probed: usize,
    watcher: &mut Watcher,
    mode: Mode,
    secs: u64,
    calibration: Duration,
) -> anyhow::Result<RoundResult> {
    for (i, t) in twins.0.iter().enumerate() {
        let pid = t.pid();
        let want = i == probed && mode != Mode::Baseline;
        match (watcher.get(pid).is_some(), want) {
            (true, false) => watcher.unwatch(pid)?,
            (false, true) => {
                watcher.watch_pid(pid, &[])?;
            }
            _ => {}
        }
    }
    let (target, control) = (&twins.0[probed], &twins.0[1 - probed]);
    let mut estimate = None;
    let mut hits = 0.0;
    let (m_target, m_control) = if mode == Mode::Park {
        // The service is loaded through the calibration too (the estimate reads it busy),
        // until the measured load takes over.
        let mut cal_load = Vec::new();
        for t in &twins.0 {
            cal_load.extend(t.unmeasured_load(2 * calibration.as_secs() + 60)?);
        }
        let mut started = None;
        // The window (from the attach) covers the probed calibration (stretched at most
        // CALIBRATION_STRETCH times), then `secs` measured seconds, and a margin so that
        // the probes outlast wrk's run.
        let window = calibration * CALIBRATION_STRETCH
            + Duration::from_secs(secs)
            + Duration::from_millis(500);
        let prof = watcher.profile(
            target.pid(),
            ProbeSet::Park,
            window,
            calibration,
            &mut |e| {
                estimate = Some(e.clone());
                stop_loads(&mut cal_load);
                started = Some((target.begin(secs), control.begin(secs)));
            },
        );
        // Already stopped unless the profile failed before its estimate.
        stop_loads(&mut cal_load);
        hits = prof?.measured_events_per_second;
        started.context("the profile stated no estimate")?
    } else {
        let m = (target.begin(secs), control.begin(secs));
        if matches!(target, Target::Workload(_)) {
            std::thread::sleep(Duration::from_secs(secs));
        }
        m
    };
    let (rate, cpu_us_per_op) = target.finish(m_target)?;
    let (control_rate, control_cpu_us_per_op) = control.finish(m_control)?;
    Ok(RoundResult {
        rate,
        cpu_us_per_op,
        control_rate,
        control_cpu_us_per_op,
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
    let place = Placement::new(!args.no_pin);
    match place.target_cpu {
        Some(cpu) => {
            eprintln!("target on CPU {cpu} (GOMAXPROCS=1); this program and wrk on the others")
        }
        None => eprintln!("target unpinned"),
    }
    let mut watcher = Watcher::new()?;
    let cost = watcher.measure_probe_cost()?;
    eprintln!(
        "one uprobe hit costs {:.1} µs here (on lastmile itself)",
        cost.as_secs_f64() * 1e6
    );
    let calibration = Duration::from_secs(args.calibration);
    let mut scenarios = Vec::new();
    for (name, http) in [
        ("workload (loops/s)", false),
        ("http under wrk (requests/s)", true),
    ] {
        let mut sc = Scenario {
            name,
            ..Default::default()
        };
        let cores_each = (http && args.http_cores > 0.0).then_some(args.http_cores);
        let twins = match Twins::start(&bin, http, args.connections, place, cores_each) {
            Ok(t) => {
                if let Some(c) = cores_each {
                    eprintln!("http twins held to {c} of a core each (cgroup CPU quota)");
                }
                t
            }
            Err(e) if cores_each.is_some() => {
                eprintln!("http twins unlimited ({e:#}): their requests/s is noisy");
                Twins::start(&bin, http, args.connections, place, None)?
            }
            Err(e) => return Err(e),
        };
        for round in 0..args.repeat {
            // The probed twin and the order of the modes change from round to round.
            let probed = round % 2;
            for k in 0..MODES.len() {
                let mode = MODES[(round + k) % MODES.len()];
                let res = measure_mode(
                    &twins,
                    probed,
                    &mut watcher,
                    mode,
                    args.seconds,
                    calibration,
                )?;
                let r = sc.mode(mode);
                r.rates.push(res.rate);
                r.control_rates.push(res.control_rate);
                r.cpu_us_per_op.push(res.cpu_us_per_op);
                r.control_cpu_us_per_op.push(res.control_cpu_us_per_op);
                if let Some(e) = &res.estimate {
                    eprintln!(
                        "round {} {name}: park profile expected +{:.1}% ({}, {:.0} hits/s, {:.1} µs per hit, {:.2} cores; hits x cost: +{:.1}%, kernel time: +{:.1}%)",
                        round + 1,
                        e.expected_overhead * 100.0,
                        e.basis,
                        e.events_per_second,
                        e.probe_cost_us,
                        e.process_cpu_cores,
                        e.hits_x_cost_overhead * 100.0,
                        e.kernel_time_overhead.unwrap_or(f64::NAN) * 100.0
                    );
                    r.expected.push(e.expected_overhead);
                    r.hits_x_cost_expected.push(e.hits_x_cost_overhead);
                    r.probe_hits_per_second.push(res.hits);
                }
                eprintln!(
                    "round {} {name} {mode:?}: twin {probed} {:.1}/s {:.2} µs CPU per op, control {:.1}/s {:.2} µs",
                    round + 1,
                    res.rate,
                    res.cpu_us_per_op,
                    res.control_rate,
                    res.control_cpu_us_per_op
                );
            }
        }
        for t in &twins.0 {
            if watcher.get(t.pid()).is_some() {
                watcher.unwatch(t.pid())?;
            }
        }
        sc.summarise();
        scenarios.push(sc);
    }
    println!(
        "overhead per round = the control twin's rate / the probed twin's - 1 (baseline: neither probed); median [min, max] of {} rounds",
        args.repeat
    );
    let pct = |s: &Spread| {
        format!(
            "{:+.2}% [{:+.1}, {:+.1}]",
            s.median * 100.0,
            s.min * 100.0,
            s.max * 100.0
        )
    };
    println!(
        "{:<30} {:>10} {:>24} {:>24} {:>24} {:>10} {:>10}",
        "scenario", "rate", "baseline (noise)", "always-on", "park profile", "expected", "meas/exp"
    );
    for sc in &scenarios {
        println!(
            "{:<30} {:>10.1} {:>24} {:>24} {:>24} {:>9.1}% {:>10.2}",
            sc.name,
            median(&sc.baseline.rates),
            pct(&sc.baseline.overhead),
            pct(&sc.always_on.overhead),
            pct(&sc.park_profile.overhead),
            sc.park_profile.median_expected * 100.0,
            sc.park_profile.median_measured_over_expected
        );
        println!(
            "{:<30} {:>10.2} {:>24} {:>24} {:>24} {:>10} {:>10.2}",
            "  CPU µs per op",
            median(&sc.baseline.cpu_us_per_op),
            pct(&sc.baseline.cpu_overhead),
            pct(&sc.always_on.cpu_overhead),
            pct(&sc.park_profile.cpu_overhead),
            "",
            sc.park_profile.median_cpu_measured_over_expected
        );
    }
    if let Some(dir) = args.out.parent() {
        std::fs::create_dir_all(dir).ok();
    }
    let json = serde_json::json!({
        "probe_cost_us": cost.as_secs_f64() * 1e6,
        "seconds": args.seconds,
        "calibration_seconds": args.calibration,
        "target_cpu": place.target_cpu,
        "repeat": args.repeat,
        "scenarios": scenarios,
    });
    std::fs::write(&args.out, serde_json::to_vec_pretty(&json)?)
        .with_context(|| format!("cannot write {}", args.out.display()))?;
    eprintln!("results written to {}", args.out.display());
    let _ = std::fs::remove_dir_all(&work);
    Ok(())
}
