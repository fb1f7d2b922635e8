//! What differs between Go releases: wait-reason numbering, stop-the-world signatures and
//! the allocation-sampler's arguments. Taken from each release's runtime sources
//! (runtime2.go `waitReasonStrings`, proc.go `stwReasonStrings` and signatures, mprof.go);
//! `tests/tables_match_go_sources` checks them against the installed toolchains.

use crate::gobin::GoVersion;

/// The runtime functions probed, by role.
pub mod func {
    pub const STOP_THE_WORLD: &str = "runtime.stopTheWorldWithSema";
    pub const START_THE_WORLD: &str = "runtime.startTheWorldWithSema";
    pub const GC_START: &str = "runtime.gcStart";
    pub const GC_MARK_TERMINATION: &str = "runtime.gcMarkTermination";
    /// Decides that marking is over and stops the world for mark termination.
    pub const GC_MARK_DONE: &str = "runtime.gcMarkDone";
    pub const GOPARK: &str = "runtime.gopark";
    /// `goready` is inlined into callers from Go 1.21; `ready` is what it calls.
    pub const READY: &str = "runtime.ready";
    pub const ALLOC_SAMPLE: &str = "runtime.mProf_Malloc";
    /// Go's monotonic clock (assembly, ABI0) and wall clock, to find `now := nanotime();
    /// time_now()` in gcMarkTermination and the clock reads that start a GC pause.
    pub const NANOTIME: &str = "runtime.nanotime1";
    pub const TIME_NOW: &str = "time.now";
}

/// Facts about one Go release line.
#[derive(Debug)]
pub struct RuntimeTable {
    pub minor: u32,
    /// `waitReason` values (gopark's third argument) → Go's own strings.
    pub wait_reasons: &'static [&'static str],
    /// `stwReason` values → Go's strings. Go 1.19 has no reasons; lastmile classifies its
    /// pauses into the first three itself.
    pub stw_reasons: &'static [&'static str],
    /// Go 1.21+: `stopTheWorldWithSema(reason stwReason)`, reason in RAX.
    pub stw_reason_in_rax: bool,
    /// Go 1.23+: `mProf_Malloc(mp *m, p unsafe.Pointer, size uintptr)` (size in RCX);
    /// before: `mProf_Malloc(p, size)` (size in RBX).
    pub alloc_size_in_rcx: bool,
}

impl RuntimeTable {
    pub fn wait_reason(&self, code: u32) -> String {
        match self.wait_reasons.get(code as usize) {
            Some(s) if !s.is_empty() => (*s).to_owned(),
            Some(_) => "unspecified".to_owned(),
            None => format!("wait reason {code}"),
        }
    }

    pub fn stw_reason(&self, code: u32) -> String {
        self.stw_reasons
            .get(code as usize)
            .map(|s| (*s).to_owned())
            .unwrap_or_else(|| format!("stw reason {code}"))
    }
}

const WAIT_119: &[&str] = &[
    "",
    "GC assist marking",
    "IO wait",
    "chan receive (nil chan)",
    "chan send (nil chan)",
    "dumping heap",
    "garbage collection",
    "garbage collection scan",
    "panicwait",
    "select",
    "select (no cases)",
    "GC assist wait",
    "GC sweep wait",
    "GC scavenge wait",
    "chan receive",
    "chan send",
    "finalizer wait",
    "force gc (idle)",
    "semacquire",
    "sleep",
    "sync.Cond.Wait",
    "timer goroutine (idle)",
    "trace reader (blocked)",
    "wait for GC cycle",
    "GC worker (idle)",
    "preempted",
    "debug call",
];

/// Go 1.21 to 1.23 share a prefix; later releases append.
const WAIT_123: &[&str] = &[
    "",
    "GC assist marking",
    "IO wait",
    "chan receive (nil chan)",
    "chan send (nil chan)",
    "dumping heap",
    "garbage collection",
    "garbage collection scan",
    "panicwait",
    "select",
    "select (no cases)",
    "GC assist wait",
    "GC sweep wait",
    "GC scavenge wait",
    "chan receive",
    "chan send",
    "finalizer wait",
    "force gc (idle)",
    "semacquire",
    "sleep",
    "sync.Cond.Wait",
    "sync.Mutex.Lock",
    "sync.RWMutex.RLock",
    "sync.RWMutex.Lock",
    "trace reader (blocked)",
    "wait for GC cycle",
    "GC worker (idle)",
    "GC worker (active)",
    "preempted",
    "debug call",
    "GC mark termination",
    "stopping the world",
    "flushing proc caches",
    "trace goroutine status",
    "trace proc status",
    "page trace flush",
    "coroutine",
    "GC weak to strong wait",
];

const STW_119: &[&str] = &["unknown", "GC mark termination", "GC sweep termination"];

const STW_121: &[&str] = &[
    "unknown",
    "GC mark termination",
    "GC sweep termination",
    "write heap dump",
    "goroutine profile",
    "goroutine profile cleanup",
    "all goroutines stack trace",
    "read mem stats",
    "AllThreadsSyscall",
    "GOMAXPROCS",
    "start trace",
    "stop trace",
    "CountPagesInUse (test)",
    "ReadMetricsSlow (test)",
    "ReadMemStatsSlow (test)",
    "PageCachePagesLeaked (test)",
    "ResetDebugLog (test)",
];

static TABLES: &[RuntimeTable] = &[
    RuntimeTable {
        minor: 19,
        wait_reasons: WAIT_119,
        stw_reasons: STW_119,
        stw_reason_in_rax: false,
        alloc_size_in_rcx: false,
    },
    RuntimeTable {
        minor: 21,
        wait_reasons: WAIT_123.split_at(32).0,
        stw_reasons: STW_121,
        stw_reason_in_rax: true,
        alloc_size_in_rcx: false,
    },
    RuntimeTable {
        minor: 22,
        wait_reasons: WAIT_123.split_at(37).0,
        stw_reasons: STW_121,
        stw_reason_in_rax: true,
        alloc_size_in_rcx: false,
    },
    RuntimeTable {
        minor: 23,
        wait_reasons: WAIT_123,
        stw_reasons: STW_121,
        stw_reason_in_rax: true,
        alloc_size_in_rcx: true,
    },
];

/// The Go releases lastmile has tables for, for messages.
pub const SUPPORTED: &str = "1.19, 1.21, 1.22 and 1.23";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "{version} is not supported: lastmile knows the runtime internals of Go {SUPPORTED} \
     (wait reasons and stop-the-world signatures change between releases)"
)]
pub struct UnsupportedVersion {
    pub version: String,
}

pub fn table_for(v: &GoVersion) -> Result<&'static RuntimeTable, UnsupportedVersion> {
    if v.major != 1 {
        return Err(UnsupportedVersion {
            version: v.raw.clone(),
        });
    }
    TABLES
        .iter()
        .find(|t| t.minor == v.minor)
        .ok_or_else(|| UnsupportedVersion {
            version: v.raw.clone(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> GoVersion {
        GoVersion::parse(s).unwrap()
    }

    #[test]
    fn supported_and_unsupported() {
        assert!(!table_for(&v("go1.19.8")).unwrap().stw_reason_in_rax);
        assert!(table_for(&v("go1.23.5")).unwrap().alloc_size_in_rcx);
        let e = table_for(&v("go1.20.3")).unwrap_err();
        assert!(e.to_string().contains("go1.20.3 is not supported"), "{e}");
        assert!(e.to_string().contains("1.19, 1.21"), "{e}");
        assert!(table_for(&v("go1.24.0")).is_err());
        assert!(table_for(&v("go2.0")).is_err());
    }

    #[test]
    fn reasons_by_version() {
        let t19 = table_for(&v("go1.19")).unwrap();
        let t21 = table_for(&v("go1.21.0")).unwrap();
        assert_eq!(t19.wait_reason(18), "semacquire");
        assert_eq!(t21.wait_reason(21), "sync.Mutex.Lock");
        assert_eq!(t21.wait_reasons.len(), 32);
        assert_eq!(table_for(&v("go1.22.1")).unwrap().wait_reasons.len(), 37);
        assert_eq!(t21.wait_reason(200), "wait reason 200");
        assert_eq!(t19.stw_reason(2), "GC sweep termination");
    }
}
