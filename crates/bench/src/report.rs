//! Results: the table on stdout and the JSON file.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context;
use serde::Serialize;

use crate::load::{LoadOutcome, Spec};
use crate::servers::{DiskUsage, ServerKind};

/// Everything one run of `lastmile bench ingest` measured.
#[derive(Debug, Serialize)]
pub struct Report {
    pub benchmark: &'static str,
    pub started_at: String,
    pub machine: Machine,
    pub connections: usize,
    pub seed: u64,
    /// Servers asked for but not run, with the reason.
    pub skipped: Vec<Skipped>,
    pub scenarios: Vec<ScenarioResult>,
}

#[derive(Debug, Serialize)]
pub struct Machine {
    pub cpus: usize,
    pub mem_total_bytes: u64,
    pub kernel: String,
    pub clk_tck: u64,
}

impl Machine {
    pub fn probe() -> Machine {
        let mem_total_bytes = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|m| {
                let line = m.lines().find(|l| l.starts_with("MemTotal:"))?.to_string();
                line.split_whitespace().nth(1)?.parse::<u64>().ok()
            })
            .map_or(0, |kb| kb * 1024);
        Machine {
            cpus: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(0),
            mem_total_bytes,
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .map(|s| s.trim().to_string())
                .unwrap_or_default(),
            clk_tck: crate::measure::clk_tck(),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct Skipped {
    pub server: ServerKind,
    pub reason: String,
}

#[derive(Debug, Serialize)]
pub struct ScenarioResult {
    pub spec: Spec,
    pub description: String,
    pub total_samples: u64,
    pub requests: u64,
    pub raw_bytes: u64,
    pub body_bytes: u64,
    pub first_ts_ms: i64,
    pub last_ts_ms: i64,
    pub build_secs: f64,
    /// One row per server: the median of its repetitions.
    pub runs: Vec<RunResult>,
    /// Every repetition, in the order they ran.
    pub all_runs: Vec<RunResult>,
    /// lastmile divided by each peer.
    pub ratios: Vec<Ratio>,
}

/// One server on one scenario.
#[derive(Clone, Debug, Default, Serialize)]
pub struct RunResult {
    pub server: Option<ServerKind>,
    pub version: String,
    /// Empty when the run is valid; otherwise what went wrong (errors, non-2xx answers,
    /// missing series…).
    pub problems: Vec<String>,
    /// Doubts about the figures that do not make the run invalid (a busy machine).
    pub warnings: Vec<String>,
    /// How many repetitions this row combines (medians of their figures); 1 for a
    /// single run.
    pub repeats: usize,
    pub load: Option<LoadOutcome>,
    pub wall_secs: Option<f64>,
    /// Requests answered with a non-2xx status or not answered at all.
    pub failed_requests: u64,
    pub samples_per_sec: Option<f64>,
    pub server_cpu_secs: Option<f64>,
    /// Server CPU seconds / wall seconds.
    pub cores_used: Option<f64>,
    pub samples_per_cpu_sec: Option<f64>,
    /// CPU seconds of the generator (this process) during the load.
    pub generator_cpu_secs: Option<f64>,
    /// CPU seconds used by everything else on the machine during the load (not the server,
    /// not the generator): noise. Flagged when above 10% of the server's.
    pub other_cpu_secs: Option<f64>,
    /// VmHWM right after the load.
    pub peak_rss_bytes: Option<u64>,
    pub rss_after_load_bytes: Option<u64>,
    pub rss_per_series_bytes: Option<f64>,
    pub series_expected: u64,
    pub series_reported: Option<u64>,
    /// Samples the server reports holding (lastmile's `headStats.numSamples`; the others do
    /// not say).
    pub samples_reported: Option<u64>,
    pub disk: Option<DiskUsage>,
    pub bytes_per_sample: Option<f64>,
}

impl RunResult {
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

pub fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

/// One row for a server from its repetitions: each figure is the median over the runs that
/// have it; problems and warnings are those of all runs (prefixed with the run number when
/// there are several); failed requests are summed.
pub fn combine(runs: &[RunResult]) -> RunResult {
    let Some(first) = runs.first() else {
        return RunResult::default();
    };
    let several = runs.len() > 1;
    let tag = |i: usize, m: &String| {
        if several {
            format!("run {}: {m}", i + 1)
        } else {
            m.clone()
        }
    };
    let f = |get: fn(&RunResult) -> Option<f64>| median(runs.iter().filter_map(get).collect());
    let bytes_per_sample = f(|r| r.bytes_per_sample);
    // The disk details of the run closest to the median bytes per sample.
    let disk = bytes_per_sample.and_then(|m| {
        runs.iter()
            .filter(|r| r.disk.is_some())
            .min_by(|a, b| {
                let d = |r: &RunResult| (r.bytes_per_sample.unwrap_or(f64::MAX) - m).abs();
                d(a).total_cmp(&d(b))
            })
            .and_then(|r| r.disk.clone())
    });
    RunResult {
        server: first.server,
        version: first.version.clone(),
        problems: runs
            .iter()
            .enumerate()
            .flat_map(|(i, r)| r.problems.iter().map(move |m| tag(i, m)))
            .collect(),
        warnings: runs
            .iter()
            .enumerate()
            .flat_map(|(i, r)| r.warnings.iter().map(move |m| tag(i, m)))
            .collect(),
        repeats: runs.len(),
        load: if several { None } else { first.load.clone() },
        wall_secs: f(|r| r.wall_secs),
        failed_requests: runs.iter().map(|r| r.failed_requests).sum(),
        samples_per_sec: f(|r| r.samples_per_sec),
        server_cpu_secs: f(|r| r.server_cpu_secs),
        cores_used: f(|r| r.cores_used),
        samples_per_cpu_sec: f(|r| r.samples_per_cpu_sec),
        generator_cpu_secs: f(|r| r.generator_cpu_secs),
        other_cpu_secs: f(|r| r.other_cpu_secs),
        peak_rss_bytes: f(|r| r.peak_rss_bytes.map(|b| b as f64)).map(|b| b as u64),
        rss_after_load_bytes: f(|r| r.rss_after_load_bytes.map(|b| b as f64)).map(|b| b as u64),
        rss_per_series_bytes: f(|r| r.rss_per_series_bytes),
        series_expected: first.series_expected,
        // A mismatch in any run is a problem already; show the one that differs, if any.
        series_reported: runs
            .iter()
            .filter_map(|r| r.series_reported)
            .find(|&n| n != first.series_expected)
            .or_else(|| runs.iter().find_map(|r| r.series_reported)),
        samples_reported: runs.iter().find_map(|r| r.samples_reported),
        disk,
        bytes_per_sample,
    }
}

/// lastmile's figure divided by the peer's.
#[derive(Debug, Serialize)]
pub struct Ratio {
    pub peer: ServerKind,
    /// Higher is better for lastmile.
    pub samples_per_cpu_sec: Option<f64>,
    /// Higher is better for lastmile.
    pub samples_per_sec: Option<f64>,
    /// Lower is better for lastmile.
    pub rss_per_series: Option<f64>,
    /// Lower is better for lastmile.
    pub bytes_per_sample: Option<f64>,
}

pub fn ratios(runs: &[RunResult]) -> Vec<Ratio> {
    let Some(lm) = runs.iter().find(|r| r.server == Some(ServerKind::Lastmile)) else {
        return Vec::new();
    };
    let div = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    };
    runs.iter()
        .filter_map(|r| {
            let peer = r.server.filter(|&k| k != ServerKind::Lastmile)?;
            Some(Ratio {
                peer,
                samples_per_cpu_sec: div(lm.samples_per_cpu_sec, r.samples_per_cpu_sec),
                samples_per_sec: div(lm.samples_per_sec, r.samples_per_sec),
                rss_per_series: div(lm.rss_per_series_bytes, r.rss_per_series_bytes),
                bytes_per_sample: div(lm.bytes_per_sample, r.bytes_per_sample),
            })
        })
        .collect()
}

/// 1234567 → "1.23M", 53700 → "53.7k".
pub fn si(x: f64) -> String {
    let a = x.abs();
    if a >= 1e9 {
        format!("{:.2}G", x / 1e9)
    } else if a >= 1e6 {
        format!("{:.2}M", x / 1e6)
    } else if a >= 1e4 {
        format!("{:.0}k", x / 1e3)
    } else if a >= 1e3 {
        format!("{:.1}k", x / 1e3)
    } else {
        format!("{x:.0}")
    }
}

/// Bytes in decimal units: "291 MB", "2.6 kB", "512 B".
pub fn human_bytes(x: f64) -> String {
    let a = x.abs();
    if a >= 1e9 {
        format!("{:.2} GB", x / 1e9)
    } else if a >= 1e6 {
        format!("{:.0} MB", x / 1e6)
    } else if a >= 1e3 {
        format!("{:.1} kB", x / 1e3)
    } else if a >= 10.0 {
        format!("{x:.0} B")
    } else {
        format!("{x:.2} B")
    }
}

fn opt(v: Option<f64>, f: impl Fn(f64) -> String) -> String {
    v.map_or_else(|| "-".to_string(), f)
}

/// The human-readable report.
pub fn render(report: &Report) -> String {
    let mut s = String::new();
    let m = &report.machine;
    let _ = writeln!(
        s,
        "\nlastmile bench ingest — {} — {} CPUs, {} RAM, Linux {} — {} connections, seed {}",
        report.started_at,
        m.cpus,
        human_bytes(m.mem_total_bytes as f64),
        m.kernel,
        report.connections,
        report.seed
    );
    for sk in &report.skipped {
        let _ = writeln!(s, "skipped {}: {}", sk.server.name(), sk.reason);
    }
    for sc in &report.scenarios {
        let _ = writeln!(s, "\n## {}: {}", sc.spec.name, sc.description);
        let _ = writeln!(
            s,
            "   {} samples in {} requests; {} protobuf → {} snappy ({:.1} B/sample on the wire); built in {:.1} s",
            si(sc.total_samples as f64),
            sc.requests,
            human_bytes(sc.raw_bytes as f64),
            human_bytes(sc.body_bytes as f64),
            sc.body_bytes as f64 / sc.total_samples.max(1) as f64,
            sc.build_secs
        );
        if let Some(n) = sc.runs.iter().map(|r| r.repeats).max().filter(|&n| n > 1) {
            let _ = writeln!(
                s,
                "   each figure is the median of {n} runs, each on a fresh server"
            );
        }
        let header = [
            "server",
            "wall s",
            "samples/s",
            "CPU s",
            "cores",
            "samples/CPU-s",
            "peak RSS",
            "RSS/series",
            "disk",
            "B/sample",
            "series",
            "failed req",
            "gen CPU",
            "other CPU",
        ];
        let mut rows: Vec<Vec<String>> = vec![header.iter().map(|h| h.to_string()).collect()];
        for r in &sc.runs {
            let name = r.server.map_or("?", |k| k.name());
            rows.push(vec![
                if r.ok() {
                    name.to_string()
                } else {
                    format!("{name} (!)")
                },
                opt(r.wall_secs, |v| format!("{v:.1}")),
                opt(r.samples_per_sec, si),
                opt(r.server_cpu_secs, |v| format!("{v:.1}")),
                opt(r.cores_used, |v| format!("{v:.2}")),
                opt(r.samples_per_cpu_sec, si),
                opt(r.peak_rss_bytes.map(|b| b as f64), human_bytes),
                opt(r.rss_per_series_bytes, human_bytes),
                opt(r.disk.as_ref().map(|d| d.bytes as f64), human_bytes),
                opt(r.bytes_per_sample, |v| format!("{v:.2}")),
                r.series_reported.map_or("-".into(), |n| {
                    if n == r.series_expected {
                        n.to_string()
                    } else {
                        format!("{n}≠{}", r.series_expected)
                    }
                }),
                r.failed_requests.to_string(),
                opt(r.generator_cpu_secs, |v| format!("{v:.1}s")),
                opt(r.other_cpu_secs, |v| format!("{v:.1}s")),
            ]);
        }
        s.push_str(&table(&rows));
        for r in &sc.runs {
            if let Some(d) = &r.disk {
                let _ = writeln!(
                    s,
                    "   {}: disk = {} (flush {:.1} s, size settled after {:.0} s; whole data dir {})",
                    r.server.map_or("?", |k| k.name()),
                    d.what,
                    d.flush_secs,
                    d.settle_secs,
                    human_bytes(d.data_dir_bytes as f64)
                );
            }
        }
        for r in sc.runs.iter().filter(|r| !r.ok()) {
            let _ = writeln!(s, "   (!) {} problems:", r.server.map_or("?", |k| k.name()));
            for p in &r.problems {
                let _ = writeln!(s, "       - {p}");
            }
        }
        for r in &sc.runs {
            for w in &r.warnings {
                let _ = writeln!(
                    s,
                    "   warning ({}): {w}",
                    r.server.map_or("?", |k| k.name())
                );
            }
        }
        for q in &sc.ratios {
            let x = |v: Option<f64>| opt(v, |v| format!("{v:.2}×"));
            let _ = writeln!(
                s,
                "   lastmile vs {}: samples per CPU-second {} (higher is better), samples/s {} (higher is better), \
RSS per series {} (lower is better), bytes per sample {} (lower is better)",
                q.peer.name(),
                x(q.samples_per_cpu_sec),
                x(q.samples_per_sec),
                x(q.rss_per_series),
                x(q.bytes_per_sample)
            );
        }
    }
    let _ = writeln!(
        s,
        "\ncores = server CPU s / wall s; peak RSS = VmHWM after the load; disk = persisted data \
(see the lines under each table); kB/MB are 1000-based; gen CPU = CPU of the load generator; other CPU = CPU used by \
everything else on the machine during the load (should be near 0)."
    );
    s
}

/// Aligned columns: the first column left-aligned, the others right-aligned, a rule under
/// the first row (the header).
pub fn table(rows: &[Vec<String>]) -> String {
    let mut s = String::new();
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .map(|r| r.get(c).map_or(0, |x| x.chars().count()))
                .max()
                .unwrap_or(0)
        })
        .collect();
    for (i, row) in rows.iter().enumerate() {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            let pad = widths[c] - cell.chars().count();
            if c == 0 {
                let _ = write!(line, "{cell}{}", " ".repeat(pad));
            } else {
                let _ = write!(line, "  {}{cell}", " ".repeat(pad));
            }
        }
        let _ = writeln!(s, "{}", line.trim_end());
        if i == 0 {
            let total: usize = widths.iter().sum::<usize>() + 2 * cols.saturating_sub(1);
            let _ = writeln!(s, "{}", "-".repeat(total));
        }
    }
    s
}

pub fn write_json<T: Serialize>(report: &T, path: &Path) -> anyhow::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let json = serde_json::to_vec_pretty(report)?;
    std::fs::write(path, json).with_context(|| format!("cannot write {}", path.display()))
}

/// `20250102T030405Z` for a Unix time in seconds (UTC).
/// A run's UTC stamp (now) and where its JSON results go: `out` when given, else
/// `bench-results/<kind>-<stamp>.json`.
pub fn run_stamp(kind: &str, out: &Option<std::path::PathBuf>) -> (String, std::path::PathBuf) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let stamp = utc_stamp(now.as_secs());
    let out = out
        .clone()
        .unwrap_or_else(|| format!("bench-results/{kind}-{stamp}.json").into());
    (stamp, out)
}

pub fn utc_stamp(unix_secs: u64) -> String {
    let days = (unix_secs / 86_400) as i64;
    let secs = unix_secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z",
        secs / 3600,
        (secs / 60) % 60,
        secs % 60
    )
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian calendar.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_are_utc_calendar_dates() {
        assert_eq!(utc_stamp(0), "19700101T000000Z");
        assert_eq!(utc_stamp(951_782_400), "20000229T000000Z");
        assert_eq!(utc_stamp(1_735_787_045), "20250102T030405Z");
    }

    #[test]
    fn units_read_well() {
        assert_eq!(si(1_234_567.0), "1.23M");
        assert_eq!(si(53_700.0), "54k");
        assert_eq!(si(2_600.0), "2.6k");
        assert_eq!(human_bytes(2_600.0), "2.6 kB");
        assert_eq!(human_bytes(291e6), "291 MB");
        assert_eq!(human_bytes(3.7), "3.70 B");
    }

    #[test]
    fn combine_takes_medians_and_keeps_every_problem() {
        let run = |spc: f64, problem: Option<&str>| RunResult {
            server: Some(ServerKind::Lastmile),
            samples_per_cpu_sec: Some(spc),
            failed_requests: 1,
            problems: problem.map(|p| vec![p.to_string()]).unwrap_or_default(),
            ..Default::default()
        };
        let c = combine(&[run(3.0, None), run(1.0, Some("boom")), run(2.0, None)]);
        assert_eq!(c.samples_per_cpu_sec, Some(2.0));
        assert_eq!(c.failed_requests, 3);
        assert_eq!(c.problems, ["run 2: boom"]);
        assert_eq!(c.repeats, 3);
        assert_eq!(median(vec![4.0, 1.0]), Some(2.5));
    }

    #[test]
    fn ratios_divide_lastmile_by_each_peer() {
        let run = |k, spc| RunResult {
            server: Some(k),
            samples_per_cpu_sec: Some(spc),
            ..Default::default()
        };
        let r = ratios(&[
            run(ServerKind::Lastmile, 300.0),
            run(ServerKind::Prometheus, 200.0),
        ]);
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].peer, ServerKind::Prometheus);
        assert_eq!(r[0].samples_per_cpu_sec, Some(1.5));
        assert_eq!(r[0].bytes_per_sample, None);
    }
}
