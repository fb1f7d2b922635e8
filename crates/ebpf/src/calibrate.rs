//! What one uprobe hit costs on this machine, measured on this very program: a function
//! of lastmile is called in a loop without and then with the park probe on it.
//!
//! The park-profile overhead estimate multiplies this by the probed process's event rate,
//! so it has to be measured where the estimate is made, not assumed.

use std::path::Path;
use std::time::Duration;

use object::{Object, ObjectSegment, ObjectSymbol};

use crate::probes::{ProbeError, RuntimeProbes};

const CALLS: u32 = 20_000;

/// The probed function. Naked, so that its first instruction is `push rbp`: the kind of
/// instruction the Go entry probes sit on (see `sites::entry`), which the kernel
/// emulates; a probe on most other instructions costs several times more per hit.
#[unsafe(naked)]
#[unsafe(no_mangle)]
pub extern "C" fn lastmile_ebpf_probe_cost_target(x: u64) -> u64 {
    core::arch::naked_asm!(
        "push rbp",
        "mov rbp, rsp",
        "lea rax, [rdi + 7]",
        "pop rbp",
        "ret"
    )
}

fn own_offset() -> Result<(std::path::PathBuf, u64), String> {
    let exe = std::fs::read_link("/proc/self/exe").map_err(|e| e.to_string())?;
    let data = std::fs::read(&exe).map_err(|e| e.to_string())?;
    let file = object::File::parse(&*data).map_err(|e| e.to_string())?;
    let addr = file
        .symbols()
        .find(|s| s.name() == Ok("lastmile_ebpf_probe_cost_target"))
        .map(|s| s.address())
        .ok_or("lastmile's own symbol table is stripped")?;
    for seg in file.segments() {
        let (off, size) = seg.file_range();
        if addr >= seg.address() && addr - seg.address() < size {
            return Ok((exe, addr - seg.address() + off));
        }
    }
    Err("symbol outside the loadable segments".into())
}

/// CPU time of this thread (the trap and the BPF program are charged to it), so a busy
/// machine that preempts the loop does not inflate the figure.
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid timespec out-pointer; the clock id is a constant.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn time_calls() -> Duration {
    let t = thread_cpu();
    let mut acc = 0u64;
    for i in 0..CALLS {
        acc = acc.wrapping_add(lastmile_ebpf_probe_cost_target(u64::from(i)));
    }
    std::hint::black_box(acc);
    thread_cpu().saturating_sub(t)
}

/// What one hit of a BPF program costs here: in all (trap plus program) and the program's
/// own run time, which the kernel counts. `go_gopark` walks the stack, `go_ready` only
/// looks up a map. Falls back to 1.5 µs in all, measured on the development VMs, when this
/// binary has no symbols.
pub fn probe_cost(
    probes: &mut RuntimeProbes,
    program: &'static str,
) -> Result<HitCost, ProbeError> {
    let (exe, offset) = match own_offset() {
        Ok(x) => x,
        Err(reason) => {
            tracing::warn!(%reason, "cannot measure the uprobe cost; assuming 1.5 µs per hit");
            return Ok(HitCost {
                total: Duration::from_nanos(1500),
                program: None,
            });
        }
    };
    let base = time_calls().min(time_calls());
    let links = probes.attach_raw(program, Path::new(&exe), offset, std::process::id())?;
    let stats_on = crate::probes::enable_run_stats();
    let runs0 = probes.run_stats(program);
    let probed = time_calls().min(time_calls());
    let runs1 = probes.run_stats(program);
    drop(stats_on);
    probes.detach(links)?;
    probes.clear_park(Some(std::process::id()));
    probes.clear_alloc(Some(std::process::id()));
    Ok(HitCost {
        total: probed.saturating_sub(base) / CALLS,
        program: runs0.zip(runs1).and_then(|(a, b)| a.mean_until(b)),
    })
}

/// One probe hit's cost measured on lastmile.
#[derive(Clone, Copy, Debug)]
pub struct HitCost {
    /// Trap and program together.
    pub total: Duration,
    /// The program's own run time, when the kernel's run statistics could be read.
    pub program: Option<Duration>,
}

impl HitCost {
    /// The hit's cost in another process whose runs of the program took `program_there`:
    /// the trap as measured here plus the program as it ran there (its stack depth and
    /// its maps are that process's).
    pub fn with_program_time(self, program_there: Option<Duration>) -> Duration {
        match (self.program, program_there) {
            (Some(here), Some(there)) => self.total.saturating_sub(here) + there,
            _ => self.total,
        }
    }
}
