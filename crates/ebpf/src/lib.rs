//! The Go runtime through eBPF uprobes, without touching the service's code.
//!
//! - [`gobin`] / [`pclntab`]: read a Go executable: version, function table (also when
//!   stripped, cgo or PIE), RET sites.
//! - [`sites`]: where in a function a probe costs least (instructions the kernel emulates).
//! - [`tables`]: what differs between Go 1.19, 1.21, 1.22 and 1.23.
//! - [`probes`]: load the BPF object, attach by file offset, read the in-kernel aggregates.
//! - [`session`]: processes being watched, GC cycles from the event stream, park and
//!   allocation profiles over bounded windows.
//! - [`metrics`]: the results as Prometheus series (for the store or remote write).
//! - [`validate`]: the eBPF numbers against the process's own (gctrace,
//!   `go_gc_duration_seconds`).

pub mod bench;
pub mod calibrate;
pub mod cli;
pub mod gobin;
pub mod metrics;
pub mod pclntab;
pub mod probes;
pub mod session;
pub mod sites;
pub mod tables;
pub mod validate;
pub mod watch;
