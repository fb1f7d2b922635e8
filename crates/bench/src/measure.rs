//! Process and disk figures read from `/proc` and the file system.

use std::path::Path;
use std::sync::OnceLock;

use anyhow::{Context, bail};

/// Clock ticks per second for `/proc/PID/stat` times (`getconf CLK_TCK`; 100 on Linux
/// if that cannot be run).
pub fn clk_tck() -> u64 {
    static TCK: OnceLock<u64> = OnceLock::new();
    *TCK.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .filter(|&t| t > 0)
            .unwrap_or(100)
    })
}

/// User + system CPU seconds the process (all its threads) has used so far.
pub fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let path = format!("/proc/{pid}/stat");
    let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
    let ticks = parse_stat_cpu_ticks(&text).with_context(|| format!("cannot parse {path}"))?;
    Ok(ticks as f64 / clk_tck() as f64)
}

/// CPU seconds of this process (the load generator).
pub fn own_cpu_seconds() -> anyhow::Result<f64> {
    cpu_seconds(std::process::id())
}

/// utime + stime (fields 14 and 15) of a `/proc/PID/stat` line. The command name (field
/// 2) is in parentheses and may contain spaces or parentheses, so fields are counted from
/// the last `)`.
pub fn parse_stat_cpu_ticks(stat: &str) -> anyhow::Result<u64> {
    let close = stat.rfind(')').context("no ')' after the command name")?;
    // Fields after ")": state is field 3, so field n is at index n - 3.
    let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
    if fields.len() < 13 {
        bail!("only {} fields after the command name", fields.len());
    }
    let utime: u64 = fields[14 - 3].parse().context("utime")?;
    let stime: u64 = fields[15 - 3].parse().context("stime")?;
    Ok(utime + stime)
}

/// CPU seconds all processes on the machine have used so far (the busy fields of the
/// `cpu` line of `/proc/stat`: user, nice, system, irq, softirq, steal).
pub fn machine_busy_seconds() -> anyhow::Result<f64> {
    let text = std::fs::read_to_string("/proc/stat").context("cannot read /proc/stat")?;
    let ticks = parse_proc_stat_busy(&text).context("cannot parse the cpu line of /proc/stat")?;
    Ok(ticks as f64 / clk_tck() as f64)
}

pub fn parse_proc_stat_busy(stat: &str) -> Option<u64> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let f: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|v| v.parse().ok())
        .collect::<Option<_>>()?;
    // user nice system idle iowait irq softirq steal [guest guest_nice: already in user/nice]
    let at = |i: usize| f.get(i).copied().unwrap_or(0);
    Some(at(0) + at(1) + at(2) + at(5) + at(6) + at(7))
}

/// Waits until other processes use (nearly) no CPU for a 2-second window, at most `max`.
/// Err(cores used by others) if the machine stayed busy.
pub async fn wait_for_idle(max: std::time::Duration) -> Result<(), f64> {
    const WINDOW: std::time::Duration = std::time::Duration::from_secs(2);
    const IDLE_CORES: f64 = 0.15;
    let started = std::time::Instant::now();
    let others = || -> f64 {
        let busy = machine_busy_seconds().unwrap_or(0.0);
        busy - own_cpu_seconds().unwrap_or(0.0)
    };
    let mut said = false;
    loop {
        let before = others();
        tokio::time::sleep(WINDOW).await;
        let cores = (others() - before) / WINDOW.as_secs_f64();
        if cores < IDLE_CORES {
            return Ok(());
        }
        if started.elapsed() >= max {
            return Err(cores);
        }
        if !said {
            eprintln!(
                "   waiting for the machine to be idle: other processes use {cores:.2} cores …"
            );
            said = true;
        }
    }
}

/// Memory figures from `/proc/PID/status`, in bytes.
#[derive(Clone, Copy, Debug, Default)]
pub struct Memory {
    /// Peak resident set size (VmHWM).
    pub peak_rss: u64,
    /// Current resident set size (VmRSS).
    pub rss: u64,
}

pub fn memory(pid: u32) -> anyhow::Result<Memory> {
    let path = format!("/proc/{pid}/status");
    let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
    parse_status_memory(&text).with_context(|| format!("no VmHWM/VmRSS in {path}"))
}

pub fn parse_status_memory(status: &str) -> Option<Memory> {
    let kb = |key: &str| -> Option<u64> {
        let line = status.lines().find(|l| l.starts_with(key))?;
        let rest = line[key.len()..].trim().trim_end_matches("kB").trim();
        rest.parse::<u64>().ok().map(|v| v * 1024)
    };
    Some(Memory {
        peak_rss: kb("VmHWM:")?,
        rss: kb("VmRSS:")?,
    })
}

/// Sum of the apparent sizes of the regular files under `path` (symlinks are not
/// followed). A missing directory counts as 0 bytes.
pub fn dir_size(path: &Path) -> anyhow::Result<u64> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e).with_context(|| format!("cannot stat {}", path.display())),
    };
    if meta.is_file() {
        return Ok(meta.len());
    }
    if !meta.is_dir() {
        return Ok(0);
    }
    let mut total = 0;
    let mut stack = vec![path.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            // A server may remove a directory (a merged part) while it is being walked.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e).with_context(|| format!("cannot list {}", dir.display())),
        };
        for entry in entries {
            let Ok(entry) = entry else { continue };
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_dir() {
                stack.push(entry.path());
            } else if meta.is_file() {
                total += meta.len();
            }
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_from_the_last_paren() {
        let line = "1234 (we(ird) name) S 1 1234 1234 0 -1 4194560 500 0 0 0 250 75 0 0 20 0 9 0 100 1000 200";
        assert_eq!(parse_stat_cpu_ticks(line).unwrap(), 325);
        assert!(parse_stat_cpu_ticks("1 (x) S 1").is_err());
    }

    #[test]
    fn own_process_has_cpu_and_memory() {
        assert!(own_cpu_seconds().unwrap() >= 0.0);
        let m = memory(std::process::id()).unwrap();
        assert!(m.peak_rss >= m.rss && m.rss > 0);
        assert!(clk_tck() > 0);
    }

    #[test]
    fn proc_stat_busy_skips_idle_and_iowait() {
        let s = "cpu  100 5 50 9000 30 1 2 3 0 0\ncpu0 50 2 25 4500 15 0 1 1 0 0\n";
        assert_eq!(parse_proc_stat_busy(s), Some(161));
        assert!(machine_busy_seconds().unwrap() > 0.0);
    }

    #[test]
    fn status_memory_parses_kb() {
        let s = "Name:\tx\nVmHWM:\t  2048 kB\nVmRSS:\t  1024 kB\n";
        let m = parse_status_memory(s).unwrap();
        assert_eq!((m.peak_rss, m.rss), (2 << 20, 1 << 20));
    }

    #[test]
    fn dir_size_sums_files_recursively() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("a"), [0u8; 10]).unwrap();
        std::fs::create_dir(d.path().join("sub")).unwrap();
        std::fs::write(d.path().join("sub/b"), [0u8; 5]).unwrap();
        assert_eq!(dir_size(d.path()).unwrap(), 15);
        assert_eq!(dir_size(&d.path().join("missing")).unwrap(), 0);
    }
}
