//! The loader: one BPF object (bpf/go_runtime.bpf.c) loaded with aya, its uprobes attached
//! by file offset to Go runtime functions, its maps read back.
//!
//! Links are owned by [`RuntimeProbes`]; [`RuntimeProbes::detach`] removes one target's
//! probes and dropping the whole value removes the rest (aya detaches on drop), so no path
//! out of a session leaves probes behind.

use std::num::NonZeroU32;
use std::path::PathBuf;
use std::sync::Arc;

use aya::Ebpf;
use aya::maps::{HashMap as BpfHashMap, MapData, PerCpuArray, RingBuf, StackTraceMap};
use aya::programs::UProbe;
use aya::programs::perf_event::{
    PerfEvent, PerfEventConfig, PerfEventLinkId, PerfEventScope, SamplePolicy, SoftwareEvent,
};
use aya::programs::uprobe::{UProbeAttachLocation, UProbeAttachPoint, UProbeLinkId, UProbeScope};

use crate::gobin::{BinaryError, GoBinary};
use crate::sites;
use crate::tables::{RuntimeTable, func};

/// The compiled object, or an empty slice when the build machine had no clang/libbpf.
static OBJECT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/go_runtime.bpf.o"));
/// What was missing at build time ("" when the object was built).
const MISSING_AT_BUILD: &str = env!("LASTMILE_BPF_MISSING");

/// Cookie bits: per-attachment facts about the Go version (see the C source).
const COOKIE_STW_REASON_IN_RAX: u64 = 0x1;
const COOKIE_ALLOC_SIZE_IN_RCX: u64 = 0x2;
const COOKIE_SWEEP_TERM_SITE: u64 = 0x4;
/// Bits 16–31: RSP offset of the value a clock-read probe takes from the stack.
const COOKIE_STACK_OFFSET_SHIFT: u32 = 16;

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error(
        "this lastmile was built without its eBPF programs ({0} was not installed at build \
         time). Install them (Debian: apt-get install clang libbpf-dev) and rebuild lastmile"
    )]
    NotBuilt(&'static str),
    #[error(
        "cannot load the eBPF programs: {0}. Run as root (or with CAP_BPF and CAP_PERFMON), \
         on a kernel with BPF ring buffers and uprobes (5.15 or later)"
    )]
    Load(String),
    #[error("cannot attach a uprobe to {function} in {path}: {reason}")]
    Attach {
        function: String,
        path: PathBuf,
        reason: String,
    },
    #[error("cannot sample the CPU of process {pid}: {reason}")]
    Sampling { pid: u32, reason: String },
    #[error(transparent)]
    Binary(#[from] BinaryError),
    #[error("cannot read eBPF map {map}: {reason}")]
    Map { map: &'static str, reason: String },
}

fn map_err(map: &'static str) -> impl Fn(aya::maps::MapError) -> ProbeError {
    move |e| ProbeError::Map {
        map,
        reason: e.to_string(),
    }
}

// Mirrors of the C structs (same field order, #[repr(C)]).

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StwKey {
    pub tgid: u32,
    pub kind: u32,
}

pub const HIST_BUCKETS: usize = 15;

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct StwStats {
    pub count: u64,
    pub sum_ns: u64,
    pub max_ns: u64,
    /// Not cumulative: bucket i counts pauses in (bound[i-1], bound[i]].
    pub buckets: [u64; HIST_BUCKETS],
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct GcStats {
    pub cycles: u64,
    pub starts: u64,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct RawEvent {
    pub kind: u32,
    pub tgid: u32,
    pub stw_kind: u32,
    pub _pad: u32,
    pub start_ns: u64,
    pub end_ns: u64,
}

pub const EV_STW: u32 = 1;
pub const EV_GC_DONE: u32 = 2;

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ParkKey {
    pub tgid: u32,
    pub reason: u32,
    pub stack_id: i64,
    pub caller: u64,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct ParkStats {
    pub parks: u64,
    pub readies: u64,
    pub blocked_ns: u64,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct AllocKey {
    pub tgid: u32,
    pub _pad: u32,
    pub stack_id: i64,
    pub caller: u64,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct AllocStats {
    pub samples: u64,
    pub bytes: u64,
}

/// CPU-clock samples of one process, by the mode its thread was in.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuSplit {
    pub user: u64,
    pub kernel: u64,
}

// SAFETY: plain #[repr(C)] structs of integers without padding holes that matter to the
// kernel; every bit pattern is valid.
unsafe impl aya::Pod for CpuSplit {}
unsafe impl aya::Pod for StwKey {}
unsafe impl aya::Pod for StwStats {}
unsafe impl aya::Pod for GcStats {}
unsafe impl aya::Pod for ParkKey {}
unsafe impl aya::Pod for ParkStats {}
unsafe impl aya::Pod for AllocKey {}
unsafe impl aya::Pod for AllocStats {}

/// Per-CPU counters, indexed as `enum counter` in the C source.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counter {
    StwStop = 0,
    StwEnd,
    GcClockRead,
    GcMarkTermination,
    Gopark,
    Ready,
    Alloc,
    EventsDropped,
    StackErrors,
    MapFull,
}

impl Counter {
    pub const ALL: [Counter; 10] = [
        Counter::StwStop,
        Counter::StwEnd,
        Counter::GcClockRead,
        Counter::GcMarkTermination,
        Counter::Gopark,
        Counter::Ready,
        Counter::Alloc,
        Counter::EventsDropped,
        Counter::StackErrors,
        Counter::MapFull,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Counter::StwStop => "stop_the_world",
            Counter::StwEnd => "stop_the_world_end",
            Counter::GcClockRead => "gc_clock_read",
            Counter::GcMarkTermination => "gc_mark_termination",
            Counter::Gopark => "gopark",
            Counter::Ready => "ready",
            Counter::Alloc => "alloc_sample",
            Counter::EventsDropped => "events_dropped",
            Counter::StackErrors => "stack_errors",
            Counter::MapFull => "map_full",
        }
    }
}

/// Which group of probes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ProbeSet {
    /// GC start, mark termination, stop/start the world: a handful of hits per GC cycle.
    AlwaysOn,
    /// gopark and ready: every goroutine block and wake-up. Expensive; bounded windows.
    Park,
    /// mProf_Malloc: the allocations Go's memory profiler samples.
    Alloc,
}

/// A Go process (or every process of a binary) to probe.
#[derive(Clone)]
pub struct Target {
    pub binary: Arc<GoBinary>,
    pub table: &'static RuntimeTable,
    /// The file the kernel resolves the uprobe inode from (e.g. `/proc/PID/exe`).
    pub attach_path: PathBuf,
    /// One process, or None for every process running the binary.
    pub pid: Option<u32>,
}

impl Target {
    fn cookie(&self) -> u64 {
        let mut c = 0;
        if self.table.stw_reason_in_rax {
            c |= COOKIE_STW_REASON_IN_RAX;
        }
        if self.table.alloc_size_in_rcx {
            c |= COOKIE_ALLOC_SIZE_IN_RCX;
        }
        c
    }
}

/// One uprobe of a probe set: the BPF program, the instruction's address, and the cookie
/// bits this site needs (besides the Go version's, see `Target::cookie`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProbePoint {
    pub program: &'static str,
    pub addr: u64,
    pub site_bits: u64,
}

/// Where a probe set's uprobes go in a binary.
pub fn probe_points(b: &GoBinary, set: ProbeSet) -> Result<Vec<ProbePoint>, BinaryError> {
    let point = |program, addr, site_bits| ProbePoint {
        program,
        addr,
        site_bits,
    };
    // A clock-read probe takes Go's own value from the stack a few instructions after the
    // `nanotime1` CALL (ABI0: the result is on the stack), where `sites::stack_result`
    // finds a cheap site. Pauses are so timed with Go's clock, as gctrace and
    // `go_gc_duration_seconds` are: a probe's own clock would also count the time between
    // it and Go's read, in which a busy machine may deschedule the thread.
    let clock = |program, call, extra_bits| -> Result<ProbePoint, BinaryError> {
        let site = sites::stack_result(b, call)?;
        let offset_bits = u64::from(site.rsp_offset) << COOKIE_STACK_OFFSET_SHIFT;
        Ok(point(program, site.at, offset_bits | extra_bits))
    };
    Ok(match set {
        ProbeSet::AlwaysOn => vec![
            clock(
                "go_gc_stop_clock",
                first_clock_read(b, func::GC_START)?,
                COOKIE_SWEEP_TERM_SITE,
            )?,
            clock(
                "go_gc_stop_clock",
                first_clock_read(b, func::GC_MARK_DONE)?,
                0,
            )?,
            point("go_stw_stop", sites::entry(b, func::STOP_THE_WORLD)?, 0),
            clock("go_stw_end", first_clock_read(b, func::START_THE_WORLD)?, 0)?,
            clock("go_gc_mark_term_end", mark_term_end_call(b)?, 0)?,
        ],
        ProbeSet::Park => vec![
            point("go_gopark", sites::entry(b, func::GOPARK)?, 0),
            point("go_ready", sites::entry(b, func::READY)?, 0),
        ],
        ProbeSet::Alloc => vec![point(
            "go_alloc_sample",
            sites::entry(b, func::ALLOC_SAMPLE)?,
            0,
        )],
    })
}

/// In gcMarkTermination, the `nanotime()` call whose result becomes work.tEnd, where Go
/// ends its account of the mark termination pause (1.22+ pass it on to
/// startTheWorldWithSema, which returns it): the one directly followed by the
/// `time_now()` call (`now := nanotime(); sec, nsec, _ := time_now()`). Reached once per
/// completed cycle.
fn mark_term_end_call(b: &GoBinary) -> Result<u64, BinaryError> {
    let calls = b.calls(func::GC_MARK_TERMINATION)?;
    calls
        .windows(2)
        .find(|w| w[0].1.starts_with(func::NANOTIME) && w[1].1 == func::TIME_NOW)
        .map(|w| w[0].0)
        .ok_or_else(|| BinaryError::MissingFunction {
            path: b.path().to_owned(),
            name: format!(
                "{} call followed by {} in {}",
                func::NANOTIME,
                func::TIME_NOW,
                func::GC_MARK_TERMINATION
            ),
        })
}

/// The first `nanotime()` call of a function. gcStart / gcMarkDone: its result becomes
/// work.tSweepTerm / work.tMarkTerm, where Go starts counting the pause that follows.
/// startTheWorldWithSema: the time it returns, where Go ends a pause (1.22+ skip the call
/// when the caller passes its own time, as gcMarkTermination does). Checked for Go
/// 1.19–1.23 with `go tool objdump`: no earlier call in these functions reads the clock.
fn first_clock_read(b: &GoBinary, function: &str) -> Result<u64, BinaryError> {
    b.calls(function)?
        .iter()
        .find(|(_, callee)| callee.starts_with(func::NANOTIME))
        .map(|(site, _)| *site)
        .ok_or_else(|| BinaryError::MissingFunction {
            path: b.path().to_owned(),
            name: format!("{} call in {function}", func::NANOTIME),
        })
}

/// The probes attached for one target and set; give it back to [`RuntimeProbes::detach`].
#[derive(Debug)]
pub struct Links {
    pub set: ProbeSet,
    links: Vec<(&'static str, UProbeLinkId)>,
}

impl Links {
    pub fn len(&self) -> usize {
        self.links.len()
    }

    pub fn is_empty(&self) -> bool {
        self.links.is_empty()
    }
}

pub struct RuntimeProbes {
    ebpf: Ebpf,
    events: RingBuf<MapData>,
}

impl CpuSplit {
    /// The samples counted since `earlier`.
    pub fn since(self, earlier: CpuSplit) -> CpuSplit {
        CpuSplit {
            user: self.user.saturating_sub(earlier.user),
            kernel: self.kernel.saturating_sub(earlier.kernel),
        }
    }
}

/// How often each CPU is sampled while a process calibrates: 4 kHz, 16 times /proc's tick.
pub const CPU_SAMPLE_PERIOD: std::time::Duration = std::time::Duration::from_micros(250);

/// What the kernel counted of one program's runs (while run statistics are on).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RunStats {
    pub ns: u64,
    pub runs: u64,
}

impl RunStats {
    /// Mean run time between `self` (earlier) and `later`, if it ran meanwhile.
    pub fn mean_until(self, later: RunStats) -> Option<std::time::Duration> {
        let runs = later.runs.checked_sub(self.runs).filter(|&r| r > 0)?;
        let ns = later.ns.checked_sub(self.ns)?;
        Some(std::time::Duration::from_nanos(ns / runs))
    }
}

/// Turns on the kernel's per-program run-time statistics for as long as the returned
/// descriptor lives (BPF_ENABLE_STATS; two clock reads per program run).
pub fn enable_run_stats() -> Option<std::os::fd::OwnedFd> {
    aya::sys::enable_stats(aya::sys::Stats::RunTime).ok()
}

/// CPU-clock sampling of one process, from [`RuntimeProbes::start_cpu_sampling`].
pub struct CpuSampling {
    pid: u32,
    links: Vec<PerfEventLinkId>,
}

/// A program of the object, as the kind of program it is.
fn program_of<'a, T>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut T, ProbeError>
where
    &'a mut T: TryFrom<&'a mut aya::programs::Program, Error = aya::programs::ProgramError>,
{
    ebpf.program_mut(name)
        .ok_or_else(|| ProbeError::Load(format!("program {name} missing from object")))?
        .try_into()
        .map_err(|e: aya::programs::ProgramError| ProbeError::Load(e.to_string()))
}

/// Whether this build carries the BPF object, and if not, what was missing.
pub fn availability() -> Result<(), ProbeError> {
    if OBJECT.is_empty() {
        let what: &'static str = if MISSING_AT_BUILD.is_empty() {
            "clang"
        } else {
            MISSING_AT_BUILD
        };
        return Err(ProbeError::NotBuilt(what));
    }
    Ok(())
}

impl RuntimeProbes {
    pub fn load() -> Result<RuntimeProbes, ProbeError> {
        availability()?;
        let mut ebpf = Ebpf::load(OBJECT).map_err(|e| ProbeError::Load(error_chain(&e)))?;
        for name in [
            "go_stw_stop",
            "go_gc_stop_clock",
            "go_stw_end",
            "go_gc_mark_term_end",
            "go_gopark",
            "go_ready",
            "go_alloc_sample",
        ] {
            program_of::<UProbe>(&mut ebpf, name)?
                .load()
                .map_err(|e| ProbeError::Load(error_chain(&e)))?;
        }
        program_of::<PerfEvent>(&mut ebpf, "cpu_sample")?
            .load()
            .map_err(|e| ProbeError::Load(error_chain(&e)))?;
        let events = RingBuf::try_from(
            ebpf.take_map("events")
                .ok_or_else(|| ProbeError::Load("ring buffer missing from object".into()))?,
        )
        .map_err(map_err("events"))?;
        Ok(RuntimeProbes { ebpf, events })
    }

    /// Attaches one probe set to a target. On failure nothing of the set stays attached.
    pub fn attach(&mut self, target: &Target, set: ProbeSet) -> Result<Links, ProbeError> {
        let points = probe_points(&target.binary, set)?;
        let cookie = target.cookie();
        let scope = match target.pid.and_then(NonZeroU32::new) {
            Some(pid) => UProbeScope::OneProcess(pid),
            None => UProbeScope::AllProcesses,
        };
        let mut links = Links {
            set,
            links: Vec::with_capacity(points.len()),
        };
        for ProbePoint {
            program: prog_name,
            addr,
            site_bits,
        } in points
        {
            let offset = target.binary.file_offset(addr)?;
            let result = program_of::<UProbe>(&mut self.ebpf, prog_name).and_then(|prog| {
                prog.attach(
                    UProbeAttachPoint {
                        location: UProbeAttachLocation::AbsoluteOffset(offset),
                        cookie: Some(cookie | site_bits),
                    },
                    &target.attach_path,
                    scope,
                )
                .map_err(|e| ProbeError::Attach {
                    function: target
                        .binary
                        .function_at(addr)
                        .map(|f| f.name.clone())
                        .unwrap_or_else(|| format!("{addr:#x}")),
                    path: target.attach_path.clone(),
                    reason: error_chain(&e),
                })
            });
            match result {
                Ok(id) => links.links.push((prog_name, id)),
                Err(e) => {
                    let _ = self.detach(links);
                    return Err(e);
                }
            }
        }
        Ok(links)
    }

    /// Attaches one program at a file offset of any executable (used to measure what a
    /// probe hit costs, on a function of this program).
    pub fn attach_raw(
        &mut self,
        prog_name: &'static str,
        path: &std::path::Path,
        offset: u64,
        pid: u32,
    ) -> Result<Links, ProbeError> {
        let pid = NonZeroU32::new(pid).ok_or_else(|| ProbeError::Attach {
            function: prog_name.to_owned(),
            path: path.to_owned(),
            reason: "pid 0".into(),
        })?;
        let id = program_of::<UProbe>(&mut self.ebpf, prog_name)?
            .attach(
                UProbeAttachPoint {
                    location: UProbeAttachLocation::AbsoluteOffset(offset),
                    cookie: Some(0),
                },
                path,
                UProbeScope::OneProcess(pid),
            )
            .map_err(|e| ProbeError::Attach {
                function: format!("offset {offset:#x}"),
                path: path.to_owned(),
                reason: error_chain(&e),
            })?;
        Ok(Links {
            set: ProbeSet::Park,
            links: vec![(prog_name, id)],
        })
    }

    /// Removes probes. Errors are collected; every link is tried.
    pub fn detach(&mut self, links: Links) -> Result<(), ProbeError> {
        let mut first_err = None;
        for (prog_name, id) in links.links {
            let r = program_of::<UProbe>(&mut self.ebpf, prog_name).and_then(|p| {
                p.detach(id).map_err(|e| ProbeError::Attach {
                    function: prog_name.to_owned(),
                    path: PathBuf::new(),
                    reason: format!("detach failed: {e}"),
                })
            });
            if let Err(e) = r {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// Starts sampling every CPU's clock every [`CPU_SAMPLE_PERIOD`], counting the
    /// samples that land in `pid` in user mode and in the kernel. Per CPU, not per thread:
    /// a per-thread clock restarts when its thread is switched back in, in the kernel, and
    /// read that process's unprobed kernel share 1.1-1.8 % where /proc's ticks and
    /// per-CPU samples read 0.5-0.9 %; it would also miss threads started meanwhile.
    pub fn start_cpu_sampling(&mut self, pid: u32) -> Result<CpuSampling, ProbeError> {
        let err = |reason: String| ProbeError::Sampling { pid, reason };
        let cpus = aya::util::online_cpus().map_err(|(what, e)| err(format!("{what}: {e}")))?;
        let map = self
            .ebpf
            .map_mut("cpu_samples")
            .ok_or_else(|| err("map cpu_samples missing".into()))?;
        BpfHashMap::<&mut MapData, u32, CpuSplit>::try_from(map)
            .and_then(|mut h| h.insert(pid, CpuSplit::default(), 0))
            .map_err(|e| err(e.to_string()))?;
        let mut sampling = CpuSampling {
            pid,
            links: Vec::with_capacity(cpus.len()),
        };
        for cpu in cpus {
            let attached = program_of::<PerfEvent>(&mut self.ebpf, "cpu_sample").and_then(|p| {
                p.attach(
                    PerfEventConfig::Software(SoftwareEvent::CpuClock),
                    PerfEventScope::AllProcessesOneCpu { cpu },
                    SamplePolicy::Period(CPU_SAMPLE_PERIOD.as_nanos() as u64),
                    false,
                )
                .map_err(|e| err(format!("CPU {cpu}: {}", error_chain(&e))))
            });
            match attached {
                Ok(id) => sampling.links.push(id),
                Err(e) => {
                    self.stop_cpu_sampling(sampling);
                    return Err(e);
                }
            }
        }
        Ok(sampling)
    }

    /// Nanoseconds a program has run in all and how many times, as the kernel counts them
    /// while [`enable_run_stats`] is held. aya 0.14 does not expose these fields of
    /// `bpf_prog_info`, so they are read with BPF_OBJ_GET_INFO_BY_FD here.
    pub fn run_stats(&self, program: &str) -> Option<RunStats> {
        use std::os::fd::{AsFd, AsRawFd};
        let fd = self.ebpf.program(program)?.fd().ok()?.as_fd().as_raw_fd();
        // struct bpf_prog_info is 232 bytes (Linux 6.x uapi); run_time_ns at 192, run_cnt
        // at 200. A kernel with a shorter struct fills what it has and zeroes the rest.
        let mut info = [0u64; 29];
        #[repr(C)]
        struct InfoByFd {
            bpf_fd: u32,
            info_len: u32,
            info: u64,
        }
        let attr = InfoByFd {
            bpf_fd: fd as u32,
            info_len: std::mem::size_of_val(&info) as u32,
            info: info.as_mut_ptr() as u64,
        };
        const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;
        // SAFETY: attr points to a valid, initialised struct for the call; info is a
        // writable buffer of info_len bytes that outlives it.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                BPF_OBJ_GET_INFO_BY_FD,
                &attr as *const InfoByFd,
                std::mem::size_of::<InfoByFd>(),
            )
        };
        (rc == 0).then(|| RunStats {
            ns: info[24],
            runs: info[25],
        })
    }

    /// Samples counted so far for a process being sampled.
    pub fn cpu_samples(&self, pid: u32) -> Option<CpuSplit> {
        let h: BpfHashMap<&MapData, u32, CpuSplit> =
            BpfHashMap::try_from(self.ebpf.map("cpu_samples")?).ok()?;
        h.get(&pid, 0).ok()
    }

    pub fn stop_cpu_sampling(&mut self, sampling: CpuSampling) {
        if let Ok(p) = program_of::<PerfEvent>(&mut self.ebpf, "cpu_sample") {
            for id in sampling.links {
                let _ = p.detach(id);
            }
        }
        if let Some(map) = self.ebpf.map_mut("cpu_samples")
            && let Ok(mut h) = BpfHashMap::<&mut MapData, u32, CpuSplit>::try_from(map)
        {
            let _ = h.remove(&sampling.pid);
        }
    }

    /// Hands every queued ring-buffer event to `f`.
    pub fn drain_events(&mut self, mut f: impl FnMut(RawEvent)) -> usize {
        let mut n = 0;
        while let Some(item) = self.events.next() {
            if item.len() >= std::mem::size_of::<RawEvent>() {
                // SAFETY: the kernel wrote a `struct event` (same layout as RawEvent);
                // read_unaligned copes with the ring buffer's 8-byte alignment.
                let ev = unsafe { std::ptr::read_unaligned(item.as_ptr().cast::<RawEvent>()) };
                f(ev);
                n += 1;
            }
        }
        n
    }

    pub fn stw_stats(&self) -> Result<Vec<(StwKey, StwStats)>, ProbeError> {
        self.hash_entries("stw_hist")
    }

    pub fn gc_stats(&self) -> Result<Vec<(u32, GcStats)>, ProbeError> {
        self.hash_entries("gc_counts")
    }

    pub fn park_stats(&self) -> Result<Vec<(ParkKey, ParkStats)>, ProbeError> {
        self.hash_entries("park_stats")
    }

    pub fn alloc_stats(&self) -> Result<Vec<(AllocKey, AllocStats)>, ProbeError> {
        self.hash_entries("alloc_stats")
    }

    fn hash_entries<K: aya::Pod, V: aya::Pod>(
        &self,
        name: &'static str,
    ) -> Result<Vec<(K, V)>, ProbeError> {
        let map = self
            .ebpf
            .map(name)
            .ok_or_else(|| ProbeError::Load(format!("map {name} missing")))?;
        let h: BpfHashMap<&MapData, K, V> = BpfHashMap::try_from(map).map_err(map_err(name))?;
        // An entry deleted while iterating is skipped, not an error.
        Ok(h.iter().filter_map(Result::ok).collect())
    }

    /// A user stack recorded by a park or allocation probe: runtime addresses, innermost
    /// first.
    pub fn stack(&self, stack_id: i64) -> Option<Vec<u64>> {
        let id = u32::try_from(stack_id).ok()?;
        let map = self.ebpf.map("stacks")?;
        let st: StackTraceMap<&MapData> = StackTraceMap::try_from(map).ok()?;
        let trace = st.get(&id, 0).ok()?;
        Some(trace.frames().iter().map(|f| f.ip).collect())
    }

    /// Sum over CPUs of one counter.
    pub fn counter(&self, c: Counter) -> u64 {
        let Some(map) = self.ebpf.map("counters") else {
            return 0;
        };
        let Ok(arr) = PerCpuArray::<&MapData, u64>::try_from(map) else {
            return 0;
        };
        arr.get(&(c as u32), 0).map(|v| v.iter().sum()).unwrap_or(0)
    }

    /// Forgets the park-profile state of a process (after a window), or of every process.
    pub fn clear_park(&mut self, tgid: Option<u32>) {
        self.remove_where::<ParkKey, ParkStats>("park_stats", |k| tgid.is_none_or(|t| k.tgid == t));
        #[repr(C)]
        #[derive(Clone, Copy)]
        struct ParkedKey {
            tgid: u32,
            _pad: u32,
            g: u64,
        }
        unsafe impl aya::Pod for ParkedKey {}
        #[repr(C)]
        #[derive(Clone, Copy)]
        struct ParkedVal {
            ts: u64,
            key: ParkKey,
        }
        unsafe impl aya::Pod for ParkedVal {}
        self.remove_where::<ParkedKey, ParkedVal>("parked", |k| tgid.is_none_or(|t| k.tgid == t));
    }

    pub fn clear_alloc(&mut self, tgid: Option<u32>) {
        self.remove_where::<AllocKey, AllocStats>("alloc_stats", |k| {
            tgid.is_none_or(|t| k.tgid == t)
        });
    }

    /// Forgets everything kept for a process that exited.
    pub fn forget_process(&mut self, tgid: u32) {
        self.remove_where::<StwKey, StwStats>("stw_hist", |k| k.tgid == tgid);
        for map in ["gc_counts", "gc_phase", "stw_inflight"] {
            if let Some(m) = self.ebpf.map_mut(map) {
                match map {
                    "gc_counts" => {
                        if let Ok(mut h) = BpfHashMap::<&mut MapData, u32, GcStats>::try_from(m) {
                            let _ = h.remove(&tgid);
                        }
                    }
                    "gc_phase" => {
                        if let Ok(mut h) = BpfHashMap::<&mut MapData, u32, u32>::try_from(m) {
                            let _ = h.remove(&tgid);
                        }
                    }
                    _ => {
                        if let Ok(mut h) = BpfHashMap::<&mut MapData, u32, [u64; 3]>::try_from(m) {
                            let _ = h.remove(&tgid);
                        }
                    }
                }
            }
        }
        self.clear_park(Some(tgid));
        self.clear_alloc(Some(tgid));
    }

    fn remove_where<K: aya::Pod, V: aya::Pod>(
        &mut self,
        name: &'static str,
        pred: impl Fn(&K) -> bool,
    ) {
        let Some(map) = self.ebpf.map_mut(name) else {
            return;
        };
        let Ok(mut h) = BpfHashMap::<&mut MapData, K, V>::try_from(map) else {
            return;
        };
        let keys: Vec<K> = h
            .keys()
            .filter_map(Result::ok)
            .filter(|k| pred(k))
            .collect();
        for k in keys {
            let _ = h.remove(&k);
        }
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(cause) = src {
        s.push_str(": ");
        s.push_str(&cause.to_string());
        src = cause.source();
    }
    s
}
