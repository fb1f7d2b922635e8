//! Watching Go processes: always-on GC/STW probes per process, the event stream turned
//! into GC cycles, bounded park and allocation profiles, and the results as series.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::gobin::{GoBinary, SymbolSource};
use crate::metrics::{STW_BUCKETS_SECONDS, Series};
use crate::probes::{
    Counter, CpuSplit, EV_GC_DONE, EV_STW, Links, ProbeError, ProbeSet, RawEvent, RuntimeProbes,
    Target,
};
use crate::tables::{RuntimeTable, table_for};
use crate::validate::CycleTimes;

/// STW kinds shared by every Go version (Go's stwReason numbering).
pub const STW_GC_MARK_TERM: u32 = 1;
pub const STW_GC_SWEEP_TERM: u32 = 2;

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error(transparent)]
    Probe(#[from] ProbeError),
    #[error("process {pid}: {reason}")]
    Process { pid: u32, reason: String },
    #[error(transparent)]
    Unsupported(#[from] crate::tables::UnsupportedVersion),
    #[error("process {0} is not watched")]
    NotWatched(u32),
}

/// A process being watched.
pub struct Watched {
    pub pid: u32,
    pub binary: Arc<GoBinary>,
    pub table: &'static RuntimeTable,
    /// Resource labels on every series of this process.
    pub labels: Vec<(String, String)>,
    links: Vec<Links>,
    /// /proc/PID/stat start time: tells a reused pid from the process we attached to.
    start_time: u64,
    cycles: Vec<CycleTimes>,
    open_cycle: Option<CycleTimes>,
    pub attached_at: Instant,
}

impl Watched {
    /// GC cycles seen so far, in order; the last may still be incomplete.
    pub fn cycles(&self) -> Vec<CycleTimes> {
        let mut c = self.cycles.clone();
        c.extend(self.open_cycle);
        c
    }

    fn on_event(&mut self, ev: &RawEvent) {
        if ev.kind != EV_STW {
            return;
        }
        // Both ends are Go's own clock reads (see the C source).
        let d = ev.end_ns.saturating_sub(ev.start_ns);
        match ev.stw_kind {
            STW_GC_SWEEP_TERM => {
                if let Some(prev) = self.open_cycle.take() {
                    self.cycles.push(prev);
                }
                self.open_cycle = Some(CycleTimes {
                    sweep_ns: Some(d),
                    mark_ns: None,
                    total_ns: d,
                });
            }
            STW_GC_MARK_TERM => {
                let c = self.open_cycle.get_or_insert_with(CycleTimes::default);
                // A restarted mark termination: gctrace reports the last one.
                c.mark_ns = Some(d);
                c.total_ns += d;
            }
            _ => {}
        }
    }
}

/// Everything about a finished or running profile window that a person wants to see.
#[derive(Clone, Debug, Serialize)]
pub struct OverheadEstimate {
    /// Probe hits per second in the calibration interval.
    pub events_per_second: f64,
    /// CPU per probe hit: seen in the process itself (`basis` "observed ..."), or one hit's
    /// cost measured on lastmile just before ("hits x cost").
    pub probe_cost_us: f64,
    /// CPU cores the process used in the calibration interval.
    pub process_cpu_cores: f64,
    /// Expected slowdown of the process while probed (0.25 = 25 % longer wall time).
    pub expected_overhead: f64,
    /// How the estimate was made (see [`estimate_from_cpu`]).
    pub basis: &'static str,
    /// The estimate from probe hits × one hit's cost, whichever basis was chosen (for
    /// comparison).
    pub hits_x_cost_overhead: f64,
    /// The estimate from the process's kernel time per user-CPU second, when it used
    /// enough CPU to read (for comparison).
    pub kernel_time_overhead: Option<f64>,
}

/// A process's CPU over an interval, as /proc/PID/stat accounts it, and the read/write
/// system calls it made (/proc/PID/io).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct CpuUse {
    pub user_secs: f64,
    pub system_secs: f64,
    pub wall_secs: f64,
    pub io_calls: u64,
    /// Where the user/system split comes from: /proc's ticks, or CPU-clock samples.
    pub split_sampled: bool,
}

/// A process's /proc counters at one instant.
#[derive(Clone, Copy, Debug)]
struct ProcCounters {
    user_secs: f64,
    system_secs: f64,
    io_calls: u64,
}

impl ProcCounters {
    fn read(pid: u32) -> Option<ProcCounters> {
        let (user_secs, system_secs) = proc_cpu_split(pid)?;
        Some(ProcCounters {
            user_secs,
            system_secs,
            io_calls: proc_io_calls(pid).unwrap_or(0),
        })
    }
}

impl CpuUse {
    /// What `pid` used between `before` and now.
    fn since(pid: u32, before: Option<ProcCounters>, started: Instant) -> Option<CpuUse> {
        let b = before?;
        let now = ProcCounters::read(pid)?;
        Some(CpuUse {
            user_secs: (now.user_secs - b.user_secs).max(0.0),
            system_secs: (now.system_secs - b.system_secs).max(0.0),
            wall_secs: started.elapsed().as_secs_f64().max(1e-3),
            io_calls: now.io_calls.saturating_sub(b.io_calls),
            split_sampled: false,
        })
    }

    fn total(&self) -> f64 {
        self.user_secs + self.system_secs
    }

    /// The same CPU time, split between user and system as `samples` were.
    fn split_as(self, samples: CpuSplit) -> CpuUse {
        let n = (samples.user + samples.kernel).max(1) as f64;
        let total = self.total();
        CpuUse {
            user_secs: total * samples.user as f64 / n,
            system_secs: total * samples.kernel as f64 / n,
            split_sampled: true,
            ..self
        }
    }

    /// Whether its read/write calls count its work: enough of them, and frequent for the
    /// CPU it used (a service reads and writes per request; a batch job's few calls, on a
    /// timer, say nothing of its work).
    fn io_counts_work(&self) -> bool {
        self.io_calls >= IO_WORK_MIN_CALLS
            && self.io_calls as f64 >= IO_WORK_MIN_PER_CPU_SECOND * self.total()
    }
}

/// Read/write calls an interval needs, in all and per CPU-second (one per millisecond
/// of CPU; the HTTP fixture makes one per ~10 µs, the mixed workload one per ~45 ms), for
/// the estimate to count work in them.
const IO_WORK_MIN_CALLS: u64 = 1000;
const IO_WORK_MIN_PER_CPU_SECOND: f64 = 1000.0;

/// Least user-mode CPU samples a calibration interval needs for its sampled split to be
/// used (a tenth of a second at 4 kHz); fewer fall back to /proc's split.
const MIN_SAMPLED_USER: u64 = 400;

/// Least user CPU (seconds) an interval needs for its user/system split to mean
/// something: /proc samples the split at the clock tick (100 Hz).
const MIN_OBSERVED_USER_SECS: f64 = 0.2;

/// User CPU (seconds) a calibration interval waits for, up to [`CALIBRATION_STRETCH`]
/// times its length: 100 ticks put the split within ~10 %. A service spending most of its
/// CPU in the kernel (network I/O) gathers user ticks slowly; at a fixed 2 s its estimate
/// swung from 3 % to 34 % between windows of the same load.
const CALIBRATION_USER_SECS: f64 = 1.0;
pub const CALIBRATION_STRETCH: u32 = 4;

#[derive(Clone, Debug, Serialize)]
pub struct ReasonTotal {
    pub reason: String,
    pub parks: u64,
    pub readies: u64,
    pub blocked_seconds: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct StackEntry {
    /// Innermost first; the first frame outside runtime/sync is the `site`.
    pub frames: Vec<String>,
    pub site: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct ParkSite {
    pub reason: String,
    pub parks: u64,
    pub readies: u64,
    pub blocked_seconds: f64,
    #[serde(flatten)]
    pub stack: StackEntry,
}

#[derive(Clone, Debug, Serialize)]
pub struct AllocSite {
    pub samples: u64,
    pub sampled_bytes: u64,
    #[serde(flatten)]
    pub stack: StackEntry,
}

/// A stored profile (park or allocation).
#[derive(Clone, Debug, Serialize)]
pub struct Profile {
    /// "park" or "alloc".
    pub kind: &'static str,
    pub pid: u32,
    pub exe: String,
    pub go_version: String,
    pub labels: BTreeMap<String, String>,
    pub start_unix_ms: i64,
    pub duration_seconds: f64,
    pub estimate: Option<OverheadEstimate>,
    /// Probe hits per second measured over the whole window.
    pub measured_events_per_second: f64,
    pub probe_hits: u64,
    pub reasons: Vec<ReasonTotal>,
    pub park_sites: Vec<ParkSite>,
    pub alloc_sites: Vec<AllocSite>,
    /// Why a profile may be empty or partial.
    pub notes: Vec<String>,
}

/// How many stacks a profile keeps.
pub const TOP_STACKS: usize = 50;
/// How many sites become series.
pub const TOP_SITES_AS_SERIES: usize = 10;

/// The watcher: one loaded BPF object, any number of processes.
pub struct Watcher {
    probes: RuntimeProbes,
    procs: BTreeMap<u32, Watched>,
    binaries: HashMap<(PathBuf, u64, i64), Arc<GoBinary>>,
    hostname: String,
    /// Park/alloc aggregates of finished windows, per pid, kept for the series.
    park_totals: HashMap<u32, HashMap<String, (u64, f64)>>,
    park_site_totals: HashMap<u32, HashMap<(String, String), u64>>,
    alloc_site_totals: HashMap<u32, HashMap<String, u64>>,
    /// Measured cost of one hit, per BPF program.
    probe_costs: HashMap<&'static str, crate::calibrate::HitCost>,
}

impl Watcher {
    pub fn new() -> Result<Watcher, SessionError> {
        Ok(Watcher {
            probes: RuntimeProbes::load()?,
            procs: BTreeMap::new(),
            binaries: HashMap::new(),
            hostname: hostname(),
            park_totals: HashMap::new(),
            park_site_totals: HashMap::new(),
            alloc_site_totals: HashMap::new(),
            probe_costs: HashMap::new(),
        })
    }

    pub fn watched(&self) -> impl Iterator<Item = &Watched> {
        self.procs.values()
    }

    pub fn get(&self, pid: u32) -> Option<&Watched> {
        self.procs.get(&pid)
    }

    pub fn probes(&self) -> &RuntimeProbes {
        &self.probes
    }

    fn binary_for(&mut self, pid: u32) -> Result<Arc<GoBinary>, SessionError> {
        let exe = PathBuf::from(format!("/proc/{pid}/exe"));
        let real = std::fs::read_link(&exe).map_err(|e| SessionError::Process {
            pid,
            reason: format!(
                "cannot read {}: {e} (does it exist, and are you root?)",
                exe.display()
            ),
        })?;
        let meta = std::fs::metadata(&exe).map_err(|e| SessionError::Process {
            pid,
            reason: format!("cannot stat its executable: {e}"),
        })?;
        use std::os::unix::fs::MetadataExt;
        let key = (real.clone(), meta.ino(), meta.mtime());
        if let Some(b) = self.binaries.get(&key) {
            return Ok(b.clone());
        }
        // Read through /proc/PID/exe: works even if the file was replaced on disk.
        let data = std::fs::read(&exe).map_err(|e| SessionError::Process {
            pid,
            reason: format!("cannot read its executable: {e}"),
        })?;
        let b = Arc::new(GoBinary::parse(&real, data).map_err(ProbeError::from)?);
        self.binaries.insert(key, b.clone());
        Ok(b)
    }

    /// Attaches the always-on probes to a process. `labels` are added to its series
    /// (defaults: job = executable name, instance = host name).
    pub fn watch_pid(
        &mut self,
        pid: u32,
        labels: &[(String, String)],
    ) -> Result<&Watched, SessionError> {
        if self.procs.contains_key(&pid) {
            return Ok(&self.procs[&pid]);
        }
        let binary = self.binary_for(pid)?;
        let table = table_for(binary.version())?;
        let start_time = proc_start_time(pid).ok_or_else(|| SessionError::Process {
            pid,
            reason: "exited before the probes were attached".into(),
        })?;
        let target = Target {
            binary: binary.clone(),
            table,
            attach_path: PathBuf::from(format!("/proc/{pid}/exe")),
            pid: Some(pid),
        };
        let links = self.probes.attach(&target, ProbeSet::AlwaysOn)?;
        let mut l: BTreeMap<String, String> = BTreeMap::new();
        l.insert(
            "job".into(),
            binary
                .path()
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "go".into()),
        );
        l.insert("instance".into(), self.hostname.clone());
        for (k, v) in labels {
            l.insert(k.clone(), v.clone());
        }
        l.insert("pid".into(), pid.to_string());
        l.insert("go_version".into(), binary.version().raw.clone());
        tracing::info!(
            pid,
            exe = %binary.path().display(),
            go_version = %binary.version(),
            symbols = binary.symbol_source().as_str(),
            probes = links.len(),
            "attached always-on Go runtime probes"
        );
        self.procs.insert(
            pid,
            Watched {
                pid,
                binary,
                table,
                labels: l.into_iter().collect(),
                links: vec![links],
                start_time,
                cycles: Vec::new(),
                open_cycle: None,
                attached_at: Instant::now(),
            },
        );
        Ok(&self.procs[&pid])
    }

    /// Detaches a process's probes and forgets it.
    pub fn unwatch(&mut self, pid: u32) -> Result<(), SessionError> {
        let w = self
            .procs
            .remove(&pid)
            .ok_or(SessionError::NotWatched(pid))?;
        let mut first = None;
        for links in w.links {
            if let Err(e) = self.probes.detach(links) {
                first.get_or_insert(e);
            }
        }
        self.probes.forget_process(pid);
        self.park_totals.remove(&pid);
        self.park_site_totals.remove(&pid);
        self.alloc_site_totals.remove(&pid);
        tracing::info!(pid, "detached Go runtime probes");
        first.map_or(Ok(()), |e| Err(e.into()))
    }

    /// Detaches every process.
    pub fn unwatch_all(&mut self) -> Result<(), SessionError> {
        let pids: Vec<u32> = self.procs.keys().copied().collect();
        let mut first = None;
        for pid in pids {
            if let Err(e) = self.unwatch(pid) {
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }

    /// Processes that exited (or whose pid now names another process): detached and
    /// returned, with what was last seen of them.
    pub fn reap(&mut self) -> Vec<Watched> {
        self.poll_events();
        let gone: Vec<u32> = self
            .procs
            .values()
            .filter(|w| proc_start_time(w.pid) != Some(w.start_time))
            .map(|w| w.pid)
            .collect();
        let mut out = Vec::new();
        for pid in gone {
            if let Some(mut w) = self.procs.remove(&pid) {
                for links in std::mem::take(&mut w.links) {
                    let _ = self.probes.detach(links);
                }
                self.probes.forget_process(pid);
                tracing::info!(pid, "process exited; its probes are detached");
                out.push(w);
            }
        }
        out
    }

    /// Moves ring-buffer events into the processes' cycle logs.
    pub fn poll_events(&mut self) -> usize {
        let procs = &mut self.procs;
        self.probes.drain_events(|ev| {
            if let Some(w) = procs.get_mut(&ev.tgid) {
                w.on_event(&ev);
            }
            let _ = EV_GC_DONE;
        })
    }

    /// Sleeps for `timeout`, then drains the events. The BPF programs never wake a reader
    /// (each wakeup cost the probed thread 12-20 µs inside its pause), so the ring buffer
    /// is read on this timer instead of poll(2).
    pub fn wait_events(&mut self, timeout: Duration) -> usize {
        std::thread::sleep(timeout);
        self.poll_events()
    }

    /// Current series of every watched process.
    pub fn series(&mut self) -> Result<Vec<Series>, SessionError> {
        self.poll_events();
        let mut out = Vec::new();
        let gc = self.probes.gc_stats()?;
        for (tgid, g) in gc {
            let Some(w) = self.procs.get(&tgid) else {
                continue;
            };
            out.push(Series::new(
                "go_ebpf_gc_cycles_total",
                &w.labels,
                &[],
                g.cycles as f64,
            ));
            out.push(Series::new(
                "go_ebpf_gc_cycles_started_total",
                &w.labels,
                &[],
                g.starts as f64,
            ));
        }
        let mut stw = self.probes.stw_stats()?;
        stw.sort_by_key(|(k, _)| *k);
        for (key, st) in stw {
            let Some(w) = self.procs.get(&key.tgid) else {
                continue;
            };
            let reason = stw_label(w.table, key.kind);
            let extra = [("reason", reason.as_str())];
            let mut cumulative = 0u64;
            for (i, bound) in STW_BUCKETS_SECONDS.iter().enumerate() {
                cumulative += st.buckets[i];
                let le = lastmile_model::format_value(*bound);
                out.push(Series::new(
                    "go_ebpf_stw_pause_seconds_bucket",
                    &w.labels,
                    &[("reason", reason.as_str()), ("le", le.as_str())],
                    cumulative as f64,
                ));
            }
            cumulative += st.buckets[STW_BUCKETS_SECONDS.len()];
            out.push(Series::new(
                "go_ebpf_stw_pause_seconds_bucket",
                &w.labels,
                &[("reason", reason.as_str()), ("le", "+Inf")],
                cumulative as f64,
            ));
            out.push(Series::new(
                "go_ebpf_stw_pause_seconds_count",
                &w.labels,
                &extra,
                st.count as f64,
            ));
            out.push(Series::new(
                "go_ebpf_stw_pause_seconds_sum",
                &w.labels,
                &extra,
                st.sum_ns as f64 / 1e9,
            ));
            out.push(Series::new(
                "go_ebpf_stw_pause_max_seconds",
                &w.labels,
                &extra,
                st.max_ns as f64 / 1e9,
            ));
        }
        for (pid, reasons) in &self.park_totals {
            let Some(w) = self.procs.get(pid) else {
                continue;
            };
            for (reason, (parks, blocked)) in reasons {
                let extra = [("wait_reason", reason.as_str())];
                out.push(Series::new(
                    "go_ebpf_goroutine_parks_total",
                    &w.labels,
                    &extra,
                    *parks as f64,
                ));
                out.push(Series::new(
                    "go_ebpf_goroutine_blocked_seconds_total",
                    &w.labels,
                    &extra,
                    *blocked,
                ));
            }
        }
        for (pid, sites) in &self.park_site_totals {
            let Some(w) = self.procs.get(pid) else {
                continue;
            };
            for ((reason, site), parks) in sites {
                out.push(Series::new(
                    "go_ebpf_goroutine_park_site_parks_total",
                    &w.labels,
                    &[("wait_reason", reason.as_str()), ("site", site.as_str())],
                    *parks as f64,
                ));
            }
        }
        for (pid, sites) in &self.alloc_site_totals {
            let Some(w) = self.procs.get(pid) else {
                continue;
            };
            for (site, bytes) in sites {
                out.push(Series::new(
                    "go_ebpf_alloc_sampled_bytes_total",
                    &w.labels,
                    &[("site", site.as_str())],
                    *bytes as f64,
                ));
            }
        }
        let base = vec![("instance".to_owned(), self.hostname.clone())];
        for c in Counter::ALL {
            out.push(Series::new(
                "go_ebpf_probe_hits_total",
                &base,
                &[("probe", c.name())],
                self.probes.counter(c) as f64,
            ));
        }
        Ok(out)
    }

    /// Measures what one hit of a BPF program costs here: a probe on a function of this
    /// very program, called in a loop with and without it. Cached per program.
    pub fn measure_probe_cost_of(
        &mut self,
        program: &'static str,
    ) -> Result<crate::calibrate::HitCost, SessionError> {
        if let Some(c) = self.probe_costs.get(program) {
            return Ok(*c);
        }
        let cost = crate::calibrate::probe_cost(&mut self.probes, program)?;
        tracing::info!(
            program,
            cost_us = cost.total.as_secs_f64() * 1e6,
            program_us = cost.program.map(|p| p.as_secs_f64() * 1e6),
            "measured uprobe hit cost"
        );
        self.probe_costs.insert(program, cost);
        Ok(cost)
    }

    /// Cost of one park-probe hit (gopark, the costlier of the two park programs).
    pub fn measure_probe_cost(&mut self) -> Result<Duration, SessionError> {
        Ok(self.measure_probe_cost_of("go_gopark")?.total)
    }

    /// Runs one park or allocation profile window on a watched process. The process's CPU
    /// is read for `calibration` (longer, up to 4×, until it has used a second of user CPU)
    /// before the probes go in and as long at the start of the window; the overhead
    /// estimate is then reported through `on_estimate` (before the rest of the window
    /// runs).
    pub fn profile(
        &mut self,
        pid: u32,
        set: ProbeSet,
        window: Duration,
        calibration: Duration,
        on_estimate: &mut dyn FnMut(&OverheadEstimate),
    ) -> Result<Profile, SessionError> {
        // Per-program costs: the estimate weights each program's hits by its own cost.
        let programs: &[(Counter, &'static str)] = match set {
            ProbeSet::Park => &[(Counter::Gopark, "go_gopark"), (Counter::Ready, "go_ready")],
            _ => &[(Counter::Alloc, "go_alloc_sample")],
        };
        let mut costs = Vec::new();
        for (c, prog) in programs {
            costs.push((*c, self.measure_probe_cost_of(prog)?));
        }
        let w = self.procs.get(&pid).ok_or(SessionError::NotWatched(pid))?;
        let target = Target {
            binary: w.binary.clone(),
            table: w.table,
            attach_path: PathBuf::from(format!("/proc/{pid}/exe")),
            pid: Some(pid),
        };
        let (counters, kind): (&[Counter], &'static str) = match set {
            ProbeSet::Park => (&[Counter::Gopark, Counter::Ready], "park"),
            ProbeSet::Alloc => (&[Counter::Alloc], "alloc"),
            ProbeSet::AlwaysOn => {
                return Err(SessionError::Process {
                    pid,
                    reason: "the always-on probes are not a profile".into(),
                });
            }
        };
        match set {
            ProbeSet::Park => self.probes.clear_park(Some(pid)),
            _ => self.probes.clear_alloc(Some(pid)),
        }
        let hits = |p: &RuntimeProbes| counters.iter().map(|c| p.counter(*c)).sum::<u64>();
        let calibration = calibration.min(window);
        // The process's user/system split through both calibrations, sampled at 4 kHz;
        // without it, /proc's tick-sampled split.
        let sampling = match self.probes.start_cpu_sampling(pid) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(error = %e, "the overhead estimate falls back to /proc's user/system split");
                None
            }
        };
        let samples0 = self.probes.cpu_samples(pid);
        // The process unprobed, for as long as the calibration lasts: what it spends per
        // unit of work without these probes.
        let (unprobed_from, unprobed_counters) = (Instant::now(), ProcCounters::read(pid));
        self.calibrate(
            pid,
            calibration,
            unprobed_counters,
            calibration * CALIBRATION_STRETCH,
        );
        let unprobed = CpuUse::since(pid, unprobed_counters, unprobed_from);
        let samples1 = self.probes.cpu_samples(pid);
        let start_unix_ms = unix_ms();
        let hits0 = hits(&self.probes);
        let per_counter0: Vec<u64> = costs.iter().map(|(c, _)| self.probes.counter(*c)).collect();
        let links = self.probes.attach(&target, set)?;
        // Read after the attach, which takes a while: the process ran unprobed meanwhile.
        let (t0, cpu0, samples2) = (
            Instant::now(),
            ProcCounters::read(pid),
            self.probes.cpu_samples(pid),
        );
        let longest = (calibration * CALIBRATION_STRETCH).min(window);
        // The programs' run time in this process, for the hits × cost estimate.
        let stats_on = crate::probes::enable_run_stats();
        let runs0: Vec<_> = programs
            .iter()
            .map(|(_, p)| self.probes.run_stats(p))
            .collect();
        self.calibrate(pid, calibration, cpu0, longest);
        let runs1: Vec<_> = programs
            .iter()
            .map(|(_, p)| self.probes.run_stats(p))
            .collect();
        drop(stats_on);
        let samples3 = self.probes.cpu_samples(pid);
        if let Some(s) = sampling {
            self.probes.stop_cpu_sampling(s);
        }
        let hits_cal = hits(&self.probes) - hits0;
        let cal_secs = t0.elapsed().as_secs_f64().max(1e-3);
        // Probe CPU in the calibration interval, each program at its own cost: the trap as
        // timed on lastmile, the program as it ran in this process.
        let mut in_process = true;
        let probe_secs: f64 = costs
            .iter()
            .zip(&per_counter0)
            .zip(runs0.iter().zip(&runs1))
            .map(|(((c, cost), before), (r0, r1))| {
                let hits = self.probes.counter(*c) - before;
                let there = r0.zip(*r1).and_then(|(a, b)| a.mean_until(b));
                in_process &= (there.is_some() && cost.program.is_some()) || hits == 0;
                hits as f64 * cost.with_program_time(there).as_secs_f64()
            })
            .sum();
        let cost = if hits_cal > 0 {
            Duration::from_secs_f64(probe_secs / hits_cal as f64)
        } else {
            costs[0].1.total
        };
        let probed = CpuUse::since(pid, cpu0, t0);
        let rate = hits_cal as f64 / cal_secs;
        let mut hits_x_cost =
            estimate_overhead(rate, cost, probed.map_or(0.0, |p| p.total() / p.wall_secs));
        if in_process && hits_cal > 0 {
            hits_x_cost.basis = HITS_X_COST_IN_PROCESS;
        }
        let sampled = |from: Option<CpuSplit>, to: Option<CpuSplit>| Some(to?.since(from?));
        let estimate = match (unprobed, probed) {
            (Some(before), Some(probed)) => {
                match (sampled(samples0, samples1), sampled(samples2, samples3)) {
                    (Some(sb), Some(sp))
                        if sb.user >= MIN_SAMPLED_USER && sp.user >= MIN_SAMPLED_USER =>
                    {
                        estimate_from_cpu(
                            before.split_as(sb),
                            probed.split_as(sp),
                            rate,
                            hits_x_cost,
                        )
                    }
                    _ => estimate_from_cpu(before, probed, rate, hits_x_cost),
                }
            }
            _ => hits_x_cost,
        };
        on_estimate(&estimate);
        self.sleep_draining(window.saturating_sub(t0.elapsed()), pid);
        let elapsed = t0.elapsed().as_secs_f64();
        let detach_result = self.probes.detach(links);
        let total_hits = hits(&self.probes) - hits0;

        let w = self.procs.get(&pid);
        let mut notes = Vec::new();
        let mut profile = Profile {
            kind,
            pid,
            exe: target.binary.path().display().to_string(),
            go_version: target.binary.version().raw.clone(),
            labels: w
                .map(|w| w.labels.iter().cloned().collect())
                .unwrap_or_default(),
            start_unix_ms,
            duration_seconds: elapsed,
            estimate: Some(estimate),
            measured_events_per_second: total_hits as f64 / elapsed.max(1e-3),
            probe_hits: total_hits,
            reasons: Vec::new(),
            park_sites: Vec::new(),
            alloc_sites: Vec::new(),
            notes: Vec::new(),
        };
        let symbols = Symbolizer::new(pid, &target.binary);
        if w.is_none() {
            notes.push("the process exited during the window".to_owned());
        }
        match set {
            ProbeSet::Park => {
                let mut by_reason: BTreeMap<String, (u64, u64, u64)> = BTreeMap::new();
                let mut sites = Vec::new();
                for (k, v) in self.probes.park_stats()? {
                    if k.tgid != pid {
                        continue;
                    }
                    let reason = target.table.wait_reason(k.reason);
                    let e = by_reason.entry(reason.clone()).or_default();
                    e.0 += v.parks;
                    e.1 += v.readies;
                    e.2 += v.blocked_ns;
                    sites.push((reason, k, v));
                }
                sites.sort_by_key(|s| std::cmp::Reverse(s.2.parks));
                for (reason, k, v) in sites.into_iter().take(TOP_STACKS) {
                    let stack = symbols.stack(self.probes.stack(k.stack_id), k.caller);
                    profile.park_sites.push(ParkSite {
                        reason,
                        parks: v.parks,
                        readies: v.readies,
                        blocked_seconds: v.blocked_ns as f64 / 1e9,
                        stack,
                    });
                }
                let mut reasons: Vec<ReasonTotal> = by_reason
                    .into_iter()
                    .map(|(reason, (parks, readies, blocked))| ReasonTotal {
                        reason,
                        parks,
                        readies,
                        blocked_seconds: blocked as f64 / 1e9,
                    })
                    .collect();
                reasons.sort_by_key(|r| std::cmp::Reverse(r.parks));
                profile.reasons = reasons;
                self.probes.clear_park(Some(pid));
                let totals = self.park_totals.entry(pid).or_default();
                for r in &profile.reasons {
                    let e = totals.entry(r.reason.clone()).or_default();
                    e.0 += r.parks;
                    e.1 += r.blocked_seconds;
                }
                let sites = self.park_site_totals.entry(pid).or_default();
                for s in profile.park_sites.iter().take(TOP_SITES_AS_SERIES) {
                    *sites
                        .entry((s.reason.clone(), s.stack.site.clone()))
                        .or_default() += s.parks;
                }
            }
            _ => {
                let mut sites: Vec<_> = self
                    .probes
                    .alloc_stats()?
                    .into_iter()
                    .filter(|(k, _)| k.tgid == pid)
                    .collect();
                sites.sort_by_key(|s| std::cmp::Reverse(s.1.bytes));
                for (k, v) in sites.into_iter().take(TOP_STACKS) {
                    let stack = symbols.stack(self.probes.stack(k.stack_id), k.caller);
                    profile.alloc_sites.push(AllocSite {
                        samples: v.samples,
                        sampled_bytes: v.bytes,
                        stack,
                    });
                }
                if total_hits == 0 {
                    notes.push(
                        "no allocation was sampled: the process allocated little, or its \
                         memory profiler is off (runtime.MemProfileRate = 0; Go 1.20+ turn it \
                         off in programs that never refer to runtime.MemProfile)"
                            .to_owned(),
                    );
                }
                self.probes.clear_alloc(Some(pid));
                let totals = self.alloc_site_totals.entry(pid).or_default();
                for s in profile.alloc_sites.iter().take(TOP_SITES_AS_SERIES) {
                    *totals.entry(s.stack.site.clone()).or_default() += s.sampled_bytes;
                }
            }
        }
        profile.notes = notes;
        detach_result?;
        Ok(profile)
    }

    /// Waits at least `shortest`, then until the process has used
    /// [`CALIBRATION_USER_SECS`] of user CPU since `from` (its /proc split then), or
    /// `longest` has passed.
    fn calibrate(
        &mut self,
        pid: u32,
        shortest: Duration,
        from: Option<ProcCounters>,
        longest: Duration,
    ) {
        let started = Instant::now();
        self.sleep_draining(shortest, pid);
        while started.elapsed() < longest {
            let user = match (from, proc_cpu_split(pid)) {
                (Some(from), Some((u1, _))) => u1 - from.user_secs,
                _ => return,
            };
            if user >= CALIBRATION_USER_SECS {
                return;
            }
            let step = Duration::from_millis(250).min(longest - started.elapsed());
            self.sleep_draining(step, pid);
        }
    }

    fn sleep_draining(&mut self, d: Duration, pid: u32) {
        let end = Instant::now() + d;
        loop {
            let now = Instant::now();
            if now >= end || proc_start_time(pid).is_none() {
                return;
            }
            self.wait_events((end - now).min(Duration::from_millis(100)));
        }
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        // Dropping the BPF object would detach too; this logs what is detached.
        let _ = self.unwatch_all();
    }
}

fn stw_label(table: &RuntimeTable, kind: u32) -> String {
    match kind {
        STW_GC_SWEEP_TERM => "gc_sweep_termination".to_owned(),
        STW_GC_MARK_TERM => "gc_mark_termination".to_owned(),
        0 if !table.stw_reason_in_rax => "other".to_owned(),
        k => table
            .stw_reason(k)
            .to_ascii_lowercase()
            .replace(|c: char| !c.is_ascii_alphanumeric(), "_")
            .trim_matches('_')
            .to_owned(),
    }
}

/// Expected slowdown: probe time per second over the CPU the process uses; a process
/// that spends fraction f of its CPU in probes runs 1/(1-f) times longer.
pub fn estimate_overhead(
    events_per_second: f64,
    cost: Duration,
    cpu_cores: f64,
) -> OverheadEstimate {
    let probe_cores = events_per_second * cost.as_secs_f64();
    let f = if cpu_cores > 0.0 {
        (probe_cores / cpu_cores).min(0.99)
    } else {
        0.0
    };
    OverheadEstimate {
        events_per_second,
        probe_cost_us: cost.as_secs_f64() * 1e6,
        process_cpu_cores: cpu_cores,
        expected_overhead: f / (1.0 - f),
        basis: HITS_X_COST,
        hits_x_cost_overhead: f / (1.0 - f),
        kernel_time_overhead: None,
    }
}

/// Bases of an estimate (`OverheadEstimate::basis`).
pub const HITS_X_COST: &str = "hits x cost";
pub const HITS_X_COST_IN_PROCESS: &str =
    "hits x cost (trap timed on lastmile, program in the process)";
pub const PER_IO_CALL: &str = "observed: CPU per read/write call";

/// The expected slowdown, from what the probed calibration showed of the process. A
/// service's work is counted in its read/write calls (one or two per request), and the
/// rise in its CPU per call is the estimate: it sees everything the probes cost, the
/// traps' effect on the service's own code included (on the HTTP fixture its user CPU per
/// request rose 23 % under the park probes). Otherwise `hits_x_cost`: the hits seen, each
/// at the trap's cost timed on lastmile plus the program's run time in this process (the
/// kernel's BPF run statistics; its stack depth and maps are this process's). The rise in
/// kernel time per user-CPU second is reported beside it, and used only when the
/// program's run time could not be read: it counts every extra kernel cycle but misses
/// the process's own code changing speed (the mixed workload's user CPU per loop fell
/// ~2 % while probed, so it read 13-16 % for a measured 10-11 %).
pub fn estimate_from_cpu(
    before: CpuUse,
    probed: CpuUse,
    events_per_second: f64,
    hits_x_cost: OverheadEstimate,
) -> OverheadEstimate {
    // (overhead, probe cores) with work counted as `work_before`/`work_probed`.
    let reading = |work_before: f64, work_probed: f64| {
        let per_work_before = before.total() / work_before;
        let per_work_probed = probed.total() / work_probed;
        let probe_cores =
            (probed.total() - work_probed * per_work_before).max(0.0) / probed.wall_secs;
        (
            (per_work_probed / per_work_before - 1.0).max(0.0),
            probe_cores,
        )
    };
    let kernel_time = (before.user_secs >= MIN_OBSERVED_USER_SECS
        && probed.user_secs >= MIN_OBSERVED_USER_SECS)
        .then(|| reading(before.user_secs, probed.user_secs));
    let (chosen, basis) = if before.io_counts_work() && probed.io_counts_work() {
        (
            reading(before.io_calls as f64, probed.io_calls as f64),
            PER_IO_CALL,
        )
    } else if hits_x_cost.basis == HITS_X_COST_IN_PROCESS {
        return OverheadEstimate {
            kernel_time_overhead: kernel_time.map(|k| k.0),
            ..hits_x_cost
        };
    } else if let Some(k) = kernel_time {
        let basis = if before.split_sampled && probed.split_sampled {
            "observed: CPU per user-CPU second (4 kHz samples)"
        } else {
            "observed: CPU per user-CPU second (/proc ticks)"
        };
        (k, basis)
    } else {
        return hits_x_cost;
    };
    let (expected_overhead, probe_cores) = chosen;
    OverheadEstimate {
        events_per_second,
        probe_cost_us: if events_per_second > 0.0 {
            probe_cores / events_per_second * 1e6
        } else {
            0.0
        },
        process_cpu_cores: probed.total() / probed.wall_secs,
        expected_overhead,
        basis,
        hits_x_cost_overhead: hits_x_cost.expected_overhead,
        kernel_time_overhead: kernel_time.map(|k| k.0),
    }
}

/// Turns runtime addresses of one process into function names.
pub struct Symbolizer<'a> {
    binary: &'a GoBinary,
    bias: u64,
}

impl<'a> Symbolizer<'a> {
    pub fn new(pid: u32, binary: &'a GoBinary) -> Symbolizer<'a> {
        let bias = if binary.is_pie() {
            load_bias(pid, binary).unwrap_or(0)
        } else {
            0
        };
        Symbolizer { binary, bias }
    }

    pub fn function(&self, runtime_addr: u64) -> String {
        let addr = runtime_addr.wrapping_sub(self.bias);
        match self.binary.function_at(addr) {
            Some(f) => f.name.clone(),
            None => format!("{runtime_addr:#x}"),
        }
    }

    /// `frames` from the stack map (frame 0 is the probed function itself, the rest are
    /// return addresses), `caller` the return address read at entry.
    pub fn stack(&self, frames: Option<Vec<u64>>, caller: u64) -> StackEntry {
        let mut names = Vec::new();
        if caller != 0 {
            names.push(self.function(caller.wrapping_sub(1)));
        }
        if let Some(frames) = frames {
            for ip in frames.into_iter().skip(1) {
                names.push(self.function(ip.wrapping_sub(1)));
            }
        }
        let site = names
            .iter()
            .find(|n| !is_runtime_frame(n))
            .cloned()
            .unwrap_or_else(|| names.first().cloned().unwrap_or_else(|| "unknown".into()));
        StackEntry {
            frames: names,
            site,
        }
    }
}

fn is_runtime_frame(name: &str) -> bool {
    name.starts_with("runtime.")
        || name.starts_with("sync.")
        || name.starts_with("internal/")
        || name.starts_with("0x")
}

/// Runtime address minus link address for a PIE, from the executable's mapping.
fn load_bias(pid: u32, binary: &GoBinary) -> Option<u64> {
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).ok()?;
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).ok()?;
    for line in maps.lines() {
        let mut f = line.split_whitespace();
        let (range, _perms, offset) = (f.next()?, f.next()?, f.next()?);
        let path = f.nth(2);
        if path.map(Path::new) != Some(exe.as_path()) {
            continue;
        }
        let start = u64::from_str_radix(range.split('-').next()?, 16).ok()?;
        let offset = u64::from_str_radix(offset, 16).ok()?;
        let vaddr = binary.vaddr_of_file_offset(offset)?;
        return Some(start.wrapping_sub(vaddr & !0xfff));
    }
    None
}

/// Field 22 of /proc/PID/stat (start time in clock ticks), or None if gone.
pub fn proc_start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces and parentheses: fields start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    if fields.first() == Some(&"Z") || fields.first() == Some(&"X") {
        return None;
    }
    fields.get(19)?.parse().ok()
}

/// utime + stime of a process in seconds.
pub fn proc_cpu_seconds(pid: u32) -> Option<f64> {
    proc_cpu_split(pid).map(|(user, system)| user + system)
}

/// User and system CPU seconds of a process (utime, stime of /proc/PID/stat).
pub fn proc_cpu_split(pid: u32) -> Option<(f64, f64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let hz = if hz > 0 { hz as f64 } else { 100.0 };
    Some((utime / hz, stime / hz))
}

/// Read and write system calls a process has made (syscr + syscw of /proc/PID/io).
pub fn proc_io_calls(pid: u32) -> Option<u64> {
    let io = std::fs::read_to_string(format!("/proc/{pid}/io")).ok()?;
    let field = |name: &str| {
        io.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse::<u64>().ok())
    };
    Some(field("syscr:")? + field("syscw:")?)
}

/// Processes whose command name or executable file name equals `name`.
pub fn pids_by_name(name: &str) -> Vec<u32> {
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == std::process::id() {
            continue;
        }
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        let exe_name = std::fs::read_link(format!("/proc/{pid}/exe"))
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()));
        if comm.trim_end() == name || exe_name.as_deref() == Some(name) {
            out.push(pid);
        }
    }
    out.sort_unstable();
    out
}

pub fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}

/// Re-exported for callers that print where symbols came from.
pub fn symbol_source_name(s: SymbolSource) -> &'static str {
    s.as_str()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overhead_observed_in_the_process() {
        let cpu = |user_secs, system_secs| CpuUse {
            user_secs,
            system_secs,
            wall_secs: 2.0,
            ..CpuUse::default()
        };
        let fallback = estimate_overhead(1000.0, Duration::from_micros(10), 1.0);
        // One core busy; probed, half of what was user time goes to traps: each unit of
        // work now costs 1.0/0.45 CPU-seconds instead of 1.0/0.9 → +100 %.
        let e = estimate_from_cpu(cpu(1.8, 0.2), cpu(0.9, 1.1), 50_000.0, fallback.clone());
        assert_eq!(e.basis, "observed: CPU per user-CPU second (/proc ticks)");
        assert!((e.expected_overhead - 1.0).abs() < 1e-9, "{e:?}");
        // Probe CPU: 2.0 - 0.9 × (2.0/1.8) = 1.0 s over 2 s → 0.5 cores / 50k hits/s = 10 µs.
        assert!((e.probe_cost_us - 10.0).abs() < 1e-9, "{e:?}");
        // An idle process has no split worth reading: hits × cost.
        let idle = estimate_from_cpu(cpu(0.01, 0.0), cpu(0.01, 0.01), 10.0, fallback.clone());
        assert_eq!(idle.basis, HITS_X_COST);
        assert_eq!(idle.expected_overhead, fallback.expected_overhead);
    }

    #[test]
    fn overhead_of_a_service_is_counted_per_read_write_call() {
        let fallback = estimate_overhead(1000.0, Duration::from_micros(10), 1.0);
        let use_ = |user_secs, system_secs, io_calls| CpuUse {
            user_secs,
            system_secs,
            wall_secs: 2.0,
            io_calls,
            split_sampled: true,
        };
        // A service at its CPU limit: 0.5 s of CPU per 50k calls unprobed, per 30k probed:
        // +66.7 %, where CPU per user-second (its user code slowed too) says +38.9 %.
        let before = use_(0.25, 0.25, 50_000);
        let probed = use_(0.18, 0.32, 30_000);
        let e = estimate_from_cpu(before, probed, 20_000.0, fallback.clone());
        assert_eq!(e.basis, "observed: CPU per read/write call");
        assert!((e.expected_overhead - 2.0 / 3.0).abs() < 1e-9, "{e:?}");
        // Probe CPU: 0.5 - 30k × 10 µs = 0.2 s over 2 s → 0.1 cores / 20k hits/s = 5 µs.
        assert!((e.probe_cost_us - 5.0).abs() < 1e-9, "{e:?}");
        // A batch job's few calls (one per 100 ms) do not count its work: user CPU does.
        let batch = |user_secs, system_secs| use_(user_secs, system_secs, 20);
        let e = estimate_from_cpu(batch(0.9, 0.1), batch(0.8, 0.2), 20_000.0, fallback.clone());
        assert_eq!(e.basis, "observed: CPU per user-CPU second (4 kHz samples)");
        assert!((e.expected_overhead - 0.125).abs() < 1e-9, "{e:?}");
        // With the programs' run time read in the process, hits × cost is stated for the
        // batch job, the kernel-time reading beside it.
        let in_process = OverheadEstimate {
            basis: HITS_X_COST_IN_PROCESS,
            ..fallback
        };
        let e = estimate_from_cpu(
            batch(0.9, 0.1),
            batch(0.8, 0.2),
            20_000.0,
            in_process.clone(),
        );
        assert_eq!(e.basis, HITS_X_COST_IN_PROCESS);
        assert_eq!(e.expected_overhead, in_process.expected_overhead);
        assert!(
            (e.kernel_time_overhead.unwrap() - 0.125).abs() < 1e-9,
            "{e:?}"
        );
        // A service's calls still win over it.
        let e = estimate_from_cpu(before, probed, 20_000.0, in_process);
        assert_eq!(e.basis, PER_IO_CALL);
    }

    #[test]
    fn overhead_estimate() {
        // 10k hits/s at 10 µs on a process using one core: 10 % of its CPU → +11 %.
        let e = estimate_overhead(10_000.0, Duration::from_micros(10), 1.0);
        assert!((e.expected_overhead - 0.1 / 0.9).abs() < 1e-9);
        let idle = estimate_overhead(10.0, Duration::from_micros(10), 0.0);
        assert_eq!(idle.expected_overhead, 0.0);
    }

    #[test]
    fn own_process_stat() {
        assert!(proc_start_time(std::process::id()).is_some());
        assert!(proc_cpu_seconds(std::process::id()).is_some());
        assert!(proc_start_time(u32::MAX).is_none());
    }

    #[test]
    fn runtime_frames() {
        assert!(is_runtime_frame("runtime.chanrecv1"));
        assert!(is_runtime_frame("sync.(*Mutex).Lock"));
        assert!(!is_runtime_frame("main.lockedWork"));
    }
}
