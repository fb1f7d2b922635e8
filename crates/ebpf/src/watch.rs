//! The loop behind `lastmile go-runtime attach` and serve's `go_runtime:` section: keep
//! processes probed (by pid, by executable or by name), hand their series out at an
//! interval, run the requested profile windows, detach on exit.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::metrics::Series;
use crate::probes::ProbeSet;
use crate::session::{OverheadEstimate, Profile, SessionError, Watcher, pids_by_name, unix_ms};

/// Which processes to watch.
#[derive(Clone, Debug)]
pub enum Selector {
    Pid(u32),
    /// Every process running this executable (compared with /proc/PID/exe).
    Binary(PathBuf),
    /// Every process whose command name or executable file name is this.
    Name(String),
}

#[derive(Clone, Debug)]
pub struct WatchSpec {
    pub selector: Selector,
    /// Added to every series of the matched processes (e.g. job).
    pub labels: Vec<(String, String)>,
    /// A park-profile window when a process is first seen.
    pub park_profile: Option<Duration>,
    /// An allocation-profile window when a process is first seen.
    pub alloc_profile: Option<Duration>,
}

#[derive(Clone, Debug)]
pub struct WatchOptions {
    pub specs: Vec<WatchSpec>,
    /// How often series are handed out and processes rescanned.
    pub interval: Duration,
    /// Stop after this long (None: until `stop` is set or, for pids only, they all exit).
    pub duration: Option<Duration>,
    /// How long the process's CPU is read unprobed before a profile window, and probed at
    /// its start, for the overhead estimate (see `session::estimate_from_cpu`).
    pub calibration: Duration,
}

/// What the loop reports to its owner.
pub enum WatchEvent<'a> {
    Attached {
        pid: u32,
        description: String,
    },
    AttachFailed {
        pid: u32,
        error: String,
    },
    /// The process exited; its probes are detached. `cycles`: the GC cycles it had.
    Exited {
        pid: u32,
        cycles: Vec<crate::validate::CycleTimes>,
    },
    Estimate {
        pid: u32,
        kind: &'static str,
        window: Duration,
        estimate: &'a OverheadEstimate,
    },
    Profile(&'a Profile),
    Series {
        t_ms: i64,
        series: Vec<Series>,
    },
    /// Called once after the last series, before detaching: the caller may compare the
    /// cycles with the process's own account (see [`crate::validate`]).
    Finished {
        watcher: &'a Watcher,
    },
}

fn matching_pids(sel: &Selector) -> Vec<u32> {
    match sel {
        Selector::Pid(p) => {
            if crate::session::proc_start_time(*p).is_some() {
                vec![*p]
            } else {
                Vec::new()
            }
        }
        Selector::Name(n) => pids_by_name(n),
        Selector::Binary(path) => {
            let want = std::fs::canonicalize(path).unwrap_or_else(|_| path.clone());
            let mut out = Vec::new();
            if let Ok(dir) = std::fs::read_dir("/proc") {
                for e in dir.flatten() {
                    let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok())
                    else {
                        continue;
                    };
                    if std::fs::read_link(format!("/proc/{pid}/exe")).ok().as_ref() == Some(&want) {
                        out.push(pid);
                    }
                }
            }
            out.sort_unstable();
            out
        }
    }
}

/// Runs until `stop` is set, the duration passes, or every pid-selected process exited.
/// Returns an error only when nothing could be watched at all.
pub fn run(
    opts: &WatchOptions,
    stop: Arc<AtomicBool>,
    report: &mut dyn FnMut(WatchEvent<'_>),
) -> Result<(), SessionError> {
    let mut watcher = Watcher::new()?;
    let start = Instant::now();
    let mut failed: std::collections::HashSet<u32> = Default::default();
    let only_pids = opts
        .specs
        .iter()
        .all(|s| matches!(s.selector, Selector::Pid(_)));
    let mut next_tick = Instant::now();
    let mut first_scan = true;
    loop {
        let now = Instant::now();
        if now >= next_tick {
            next_tick = now + opts.interval;
            // New processes.
            for spec in &opts.specs {
                let pids = matching_pids(&spec.selector);
                if let (Selector::Pid(pid), true, true) =
                    (&spec.selector, pids.is_empty(), first_scan)
                {
                    return Err(SessionError::Process {
                        pid: *pid,
                        reason: "no such process".into(),
                    });
                }
                for pid in pids {
                    if watcher.get(pid).is_some() || failed.contains(&pid) {
                        continue;
                    }
                    match watcher.watch_pid(pid, &spec.labels) {
                        Ok(w) => {
                            let description = format!(
                                "{} ({}, symbols from {}{})",
                                w.binary.path().display(),
                                w.binary.version(),
                                w.binary.symbol_source().as_str(),
                                if w.binary.is_pie() { ", PIE" } else { "" }
                            );
                            report(WatchEvent::Attached { pid, description });
                        }
                        Err(e) => {
                            // A pid named explicitly that cannot be probed is fatal.
                            if matches!(spec.selector, Selector::Pid(_)) && first_scan {
                                return Err(e);
                            }
                            failed.insert(pid);
                            report(WatchEvent::AttachFailed {
                                pid,
                                error: e.to_string(),
                            });
                            continue;
                        }
                    }
                    for (set, window) in [
                        (ProbeSet::Park, spec.park_profile),
                        (ProbeSet::Alloc, spec.alloc_profile),
                    ] {
                        let Some(window) = window else { continue };
                        let kind = if set == ProbeSet::Park {
                            "park"
                        } else {
                            "alloc"
                        };
                        let mut on_estimate = |e: &OverheadEstimate| {
                            report(WatchEvent::Estimate {
                                pid,
                                kind,
                                window,
                                estimate: e,
                            })
                        };
                        match watcher.profile(pid, set, window, opts.calibration, &mut on_estimate)
                        {
                            Ok(p) => report(WatchEvent::Profile(&p)),
                            Err(e) => report(WatchEvent::AttachFailed {
                                pid,
                                error: format!("{kind} profile failed: {e}"),
                            }),
                        }
                    }
                }
            }
            first_scan = false;
            for w in watcher.reap() {
                report(WatchEvent::Exited {
                    pid: w.pid,
                    cycles: w.cycles(),
                });
            }
            let series = watcher.series()?;
            report(WatchEvent::Series {
                t_ms: unix_ms(),
                series,
            });
            if only_pids && watcher.watched().next().is_none() {
                break;
            }
        }
        if stop.load(Ordering::Relaxed) || opts.duration.is_some_and(|d| start.elapsed() >= d) {
            let series = watcher.series()?;
            report(WatchEvent::Series {
                t_ms: unix_ms(),
                series,
            });
            break;
        }
        watcher.wait_events(
            next_tick
                .saturating_duration_since(Instant::now())
                .min(Duration::from_millis(200)),
        );
    }
    report(WatchEvent::Finished { watcher: &watcher });
    watcher.unwatch_all()?;
    Ok(())
}
