//! A counting global allocator: lets a harness assert how much Rust heap one call needed
//! at its peak. Only `remote_write_body` installs it (as its `#[global_allocator]`);
//! elsewhere [`Meter::measure`] reports `None`.
//!
//! It sees Rust allocations only. Memory that C code (libzstd) takes with `malloc` is
//! not counted; libFuzzer's `-rss_limit_mb` is the backstop for that.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

pub struct Meter {
    live: AtomicUsize,
    peak: AtomicUsize,
    used: AtomicBool,
}

impl Meter {
    pub const fn new() -> Self {
        Meter {
            live: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
            used: AtomicBool::new(false),
        }
    }

    fn grew(&self, by: usize) {
        let now = self.live.fetch_add(by, Ordering::Relaxed) + by;
        self.peak.fetch_max(now, Ordering::Relaxed);
        if !self.used.load(Ordering::Relaxed) {
            self.used.store(true, Ordering::Relaxed);
        }
    }

    fn shrank(&self, by: usize) {
        self.live.fetch_sub(by, Ordering::Relaxed);
    }

    /// Runs `f` and returns its result with the most heap bytes it held at once beyond
    /// what was live when it started; `None` when this meter is not the global allocator.
    /// (libFuzzer runs one input at a time on one thread, so nothing else interferes.)
    pub fn measure<T>(&self, f: impl FnOnce() -> T) -> (T, Option<usize>) {
        let base = self.live.load(Ordering::Relaxed);
        self.peak.store(base, Ordering::Relaxed);
        let out = f();
        let peak = self.peak.load(Ordering::Relaxed).saturating_sub(base);
        (out, self.used.load(Ordering::Relaxed).then_some(peak))
    }
}

impl Default for Meter {
    fn default() -> Self {
        Self::new()
    }
}

/// The meter the harnesses read; a target installs it with
/// `#[global_allocator] static A: lastmile_fuzz::alloc_meter::Counting = lastmile_fuzz::alloc_meter::Counting;`.
pub static METER: Meter = Meter::new();

pub struct Counting;

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded unchanged to the system allocator.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            METER.grew(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded unchanged to the system allocator.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            METER.grew(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.dealloc(ptr, layout) };
        METER.shrank(layout.size());
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded unchanged to the system allocator.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            // Counted as the net change: what the caller holds afterwards.
            let old = layout.size();
            if new_size >= old {
                METER.grew(new_size - old);
            } else {
                METER.shrank(old - new_size);
            }
        }
        p
    }
}
