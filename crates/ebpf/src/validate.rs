//! Reverse validation: the GC pauses eBPF measured against the process's own account.
//!
//! - `GODEBUG=gctrace=1` prints one line per completed cycle:
//!   `gc 12 @0.512s 2%: 0.016+1.2+0.024 ms clock, …` — the first and third clock figures are
//!   the sweep-termination and mark-termination stop-the-world phases.
//! - `go_gc_duration_seconds` (client_golang, from the process's /metrics) is a summary of
//!   the total pause per cycle; its `_sum` and `_count` over a window give the mean.

use serde::Serialize;

/// One GC cycle as eBPF saw it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct CycleTimes {
    /// Sweep-termination STW pause.
    pub sweep_ns: Option<u64>,
    /// The last mark-termination STW pause of the cycle (the one gctrace reports).
    pub mark_ns: Option<u64>,
    /// Every GC pause of the cycle (mark termination can restart), as Go's pauseNS sums.
    pub total_ns: u64,
}

/// One gctrace line.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct GctraceCycle {
    pub n: u64,
    pub sweep_ns: u64,
    pub mark_ns: u64,
}

/// Parses a gctrace line; None for anything else (the program's other output).
pub fn parse_gctrace_line(line: &str) -> Option<GctraceCycle> {
    let rest = line.trim_start().strip_prefix("gc ")?;
    let (n, rest) = rest.split_once(' ')?;
    let n = n.parse().ok()?;
    let (_, rest) = rest.split_once(": ")?;
    let clock = rest.split_once(" ms clock")?.0;
    let mut parts = clock.split('+');
    let sweep: f64 = parts.next()?.trim().parse().ok()?;
    let _concurrent: f64 = parts.next()?.trim().parse().ok()?;
    let mark: f64 = parts.next()?.trim().parse().ok()?;
    if parts.next().is_some() || !sweep.is_finite() || !mark.is_finite() {
        return None;
    }
    Some(GctraceCycle {
        n,
        sweep_ns: (sweep * 1e6).round() as u64,
        mark_ns: (mark * 1e6).round() as u64,
    })
}

/// Median and maximum of one pause kind, eBPF vs Go.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct PauseAgreement {
    pub cycles: usize,
    pub ebpf_p50_ns: u64,
    pub go_p50_ns: u64,
    pub ebpf_max_ns: u64,
    pub go_max_ns: u64,
}

impl PauseAgreement {
    pub fn p50_ratio(&self) -> f64 {
        ratio(self.ebpf_p50_ns, self.go_p50_ns)
    }

    pub fn max_ratio(&self) -> f64 {
        ratio(self.ebpf_max_ns, self.go_max_ns)
    }

    /// Both statistics within `rel` relative or `abs_ns` absolute difference.
    pub fn within(&self, rel: f64, abs_ns: u64) -> bool {
        let close = |a: u64, b: u64| {
            let d = a.abs_diff(b);
            d <= abs_ns || (d as f64) <= rel * b as f64
        };
        close(self.ebpf_p50_ns, self.go_p50_ns) && close(self.ebpf_max_ns, self.go_max_ns)
    }
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        if a == 0 { 1.0 } else { f64::INFINITY }
    } else {
        a as f64 / b as f64
    }
}

/// eBPF cycles against gctrace's, aligned by sequence.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct GctraceAgreement {
    pub ebpf_cycles: usize,
    pub gctrace_cycles: usize,
    /// gctrace cycles before the first one eBPF saw (probes attached later).
    pub offset: usize,
    pub sweep_termination: PauseAgreement,
    pub mark_termination: PauseAgreement,
}

/// Aligns the complete eBPF cycles with gctrace's (eBPF's are a contiguous run of them:
/// the offset with the smallest total difference wins) and compares the pauses.
/// `hint`: gctrace lines already printed when the probes were attached; the offset is
/// then searched only within two cycles of it.
pub fn compare_gctrace(
    ebpf: &[CycleTimes],
    trace: &[GctraceCycle],
    hint: Option<usize>,
) -> GctraceAgreement {
    let complete: Vec<(u64, u64)> = ebpf
        .iter()
        .filter_map(|c| Some((c.sweep_ns?, c.mark_ns?)))
        .collect();
    let mut best = (u128::MAX, 0usize);
    if trace.len() >= complete.len() {
        let last = trace.len() - complete.len();
        let range = match hint {
            Some(h) => h.saturating_sub(2).min(last)..=(h + 2).min(last),
            None => 0..=last,
        };
        for off in range {
            let err: u128 = complete
                .iter()
                .zip(&trace[off..])
                .map(|(e, t)| (e.0.abs_diff(t.sweep_ns) + e.1.abs_diff(t.mark_ns)) as u128)
                .sum();
            if err < best.0 {
                best = (err, off);
            }
        }
    }
    let off = best.1;
    let pairs: Vec<(&(u64, u64), &GctraceCycle)> =
        complete.iter().zip(trace.iter().skip(off)).collect();
    let agree = |pick_e: fn(&(u64, u64)) -> u64, pick_t: fn(&GctraceCycle) -> u64| {
        let mut e: Vec<u64> = pairs.iter().map(|(e, _)| pick_e(e)).collect();
        let mut t: Vec<u64> = pairs.iter().map(|(_, t)| pick_t(t)).collect();
        PauseAgreement {
            cycles: pairs.len(),
            ebpf_p50_ns: median(&mut e),
            go_p50_ns: median(&mut t),
            ebpf_max_ns: e.iter().copied().max().unwrap_or(0),
            go_max_ns: t.iter().copied().max().unwrap_or(0),
        }
    };
    GctraceAgreement {
        ebpf_cycles: complete.len(),
        gctrace_cycles: trace.len(),
        offset: off,
        sweep_termination: agree(|e| e.0, |t| t.sweep_ns),
        mark_termination: agree(|e| e.1, |t| t.mark_ns),
    }
}

pub fn median(v: &mut [u64]) -> u64 {
    if v.is_empty() {
        return 0;
    }
    v.sort_unstable();
    v[v.len() / 2]
}

/// `go_gc_duration_seconds_sum` and `_count` from a Prometheus text exposition (the
/// series without extra labels, as client_golang exports it).
pub fn parse_gc_duration(text: &str) -> Option<(f64, u64)> {
    let mut sum = None;
    let mut count = None;
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') {
            continue;
        }
        let mut it = line.split_whitespace();
        let (Some(name), Some(value)) = (it.next(), it.next()) else {
            continue;
        };
        match name {
            "go_gc_duration_seconds_sum" => sum = value.parse::<f64>().ok(),
            "go_gc_duration_seconds_count" => count = value.parse::<f64>().ok().map(|c| c as u64),
            _ => {}
        }
    }
    Some((sum?, count?))
}

/// Mean GC pause per cycle over a window: eBPF against `go_gc_duration_seconds`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct GcDurationAgreement {
    pub go_cycles: u64,
    pub go_mean_pause_ns: u64,
    pub ebpf_cycles: usize,
    pub ebpf_mean_pause_ns: u64,
}

impl GcDurationAgreement {
    pub fn ratio(&self) -> f64 {
        ratio(self.ebpf_mean_pause_ns, self.go_mean_pause_ns)
    }
}

/// `before`/`after`: (sum seconds, count) scraped around the window; `ebpf`: cycles that
/// completed in it.
pub fn compare_gc_duration(
    before: (f64, u64),
    after: (f64, u64),
    ebpf: &[CycleTimes],
) -> GcDurationAgreement {
    let go_cycles = after.1.saturating_sub(before.1);
    let go_sum_ns = ((after.0 - before.0).max(0.0) * 1e9).round() as u64;
    let complete: Vec<u64> = ebpf
        .iter()
        .filter(|c| c.sweep_ns.is_some() && c.mark_ns.is_some())
        .map(|c| c.total_ns)
        .collect();
    GcDurationAgreement {
        go_cycles,
        go_mean_pause_ns: go_sum_ns.checked_div(go_cycles).unwrap_or(0),
        ebpf_cycles: complete.len(),
        ebpf_mean_pause_ns: (complete.iter().sum::<u64>())
            .checked_div(complete.len() as u64)
            .unwrap_or(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gctrace_lines() {
        let l = "gc 12 @0.512s 2%: 0.016+1.2+0.024 ms clock, 0.03+0/0.1/0+0.04 ms cpu, 4->4->0 MB, 4 MB goal, 0 MB stacks, 0 MB globals, 2 P (forced)";
        let c = parse_gctrace_line(l).unwrap();
        assert_eq!((c.n, c.sweep_ns, c.mark_ns), (12, 16_000, 24_000));
        assert!(parse_gctrace_line("gowork pid 12").is_none());
        assert!(parse_gctrace_line("gc 1 @0.1s 1%: 0.1+x+0.2 ms clock").is_none());
        assert!(parse_gctrace_line("scvg: 0 MB released").is_none());
    }

    #[test]
    fn alignment_finds_the_offset() {
        let trace: Vec<GctraceCycle> = [(10, 20), (30, 40), (50, 60), (70, 80)]
            .iter()
            .enumerate()
            .map(|(i, &(s, m))| GctraceCycle {
                n: i as u64 + 1,
                sweep_ns: s * 1000,
                mark_ns: m * 1000,
            })
            .collect();
        let ebpf: Vec<CycleTimes> = [(31, 41), (49, 61)]
            .iter()
            .map(|&(s, m)| CycleTimes {
                sweep_ns: Some(s * 1000),
                mark_ns: Some(m * 1000),
                total_ns: (s + m) * 1000,
            })
            .collect();
        let a = compare_gctrace(&ebpf, &trace, None);
        assert_eq!(compare_gctrace(&ebpf, &trace, Some(2)).offset, 1);
        assert_eq!(a.offset, 1);
        assert_eq!(a.sweep_termination.cycles, 2);
        assert_eq!(a.sweep_termination.go_max_ns, 50_000);
        assert_eq!(a.sweep_termination.ebpf_max_ns, 49_000);
        assert!(a.sweep_termination.within(0.05, 0));
        assert!(!a.mark_termination.within(0.0, 0));
    }

    #[test]
    fn gc_duration() {
        let text = "# TYPE go_gc_duration_seconds summary\ngo_gc_duration_seconds{quantile=\"0.5\"} 1e-05\ngo_gc_duration_seconds_sum 0.5\ngo_gc_duration_seconds_count 10\n";
        assert_eq!(parse_gc_duration(text), Some((0.5, 10)));
        assert_eq!(parse_gc_duration("nothing 1\n"), None);
        let e = [CycleTimes {
            sweep_ns: Some(1),
            mark_ns: Some(1),
            total_ns: 100_000,
        }];
        let a = compare_gc_duration((0.5, 10), (0.7, 12), &e);
        assert_eq!(a.go_mean_pause_ns, 100_000_000);
        assert_eq!(a.ebpf_mean_pause_ns, 100_000);
    }
}
