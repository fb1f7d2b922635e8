//! `lastmile go-runtime attach`: the command-line face of [`crate::watch`].

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;

use crate::metrics::{Series, remote_write_body};
use crate::session::Profile;
use crate::validate::{self, CycleTimes};
use crate::watch::{Selector, WatchEvent, WatchOptions, WatchSpec};

#[derive(Args, Debug, Clone)]
#[command(
    after_help = "What it does: reads the Go version and function table of the \
process's executable (also stripped, cgo and PIE builds of Go 1.19, 1.21, 1.22 and 1.23), \
attaches eBPF uprobes by file offset to the Go runtime's GC and stop-the-world functions \
(a few probe hits per GC cycle: no measurable overhead) and reports, every --interval:\n\
  go_ebpf_gc_cycles_total, go_ebpf_stw_pause_seconds (histogram by reason),\n\
  go_ebpf_stw_pause_max_seconds, go_ebpf_probe_hits_total\n\
with the process's labels (job, instance, pid, go_version, and --label).\n\n\
--park-profile D probes gopark/ready for a window of D: every goroutine block and wake-up \
hits a probe (~1.5–3 µs each here), so a busy process slows down. The process's CPU is read \
for a second without these probes and a second with them (longer, up to 4 s, until it has \
used a second of user CPU), then the expected overhead is printed: for a service making \
read/write calls often (one or two per request), the rise in its CPU per call; otherwise the \
probe hits seen × each hit's cost (the trap as timed on lastmile, the BPF program's run time \
as the kernel counted it in that process). At the end it prints \
the measured event rate, the top wait reasons with blocked time, and the top blocking \
stacks. --alloc-profile D records the allocations Go's own memory profiler samples \
(runtime.MemProfileRate) with their stacks.\n\n\
Results go to stdout (text), to --push (Prometheus remote write; profiles are also posted to \
the lastmile server's /api/v1/go-runtime/profiles), and profiles to --profile-out as JSON. \
Probes are removed on exit (Ctrl-C, SIGTERM, --duration, or the process exiting). Needs root \
(CAP_BPF and CAP_PERFMON)."
)]
pub struct AttachArgs {
    /// Process to watch.
    #[arg(
        long,
        value_name = "PID",
        required_unless_present = "binary",
        conflicts_with = "binary"
    )]
    pub pid: Option<u32>,
    /// Watch every process running this executable (and ones started later).
    #[arg(long, value_name = "PATH")]
    pub binary: Option<PathBuf>,
    /// Prometheus remote-write URL to push the series to, e.g.
    /// http://127.0.0.1:7070/api/v1/write.
    #[arg(long, value_name = "URL")]
    pub push: Option<String>,
    /// How often series are pushed and printed.
    #[arg(long, value_name = "DURATION", default_value = "10s")]
    pub interval: String,
    /// Run a park profile (why goroutines block) for this long after attaching, e.g. 30s.
    #[arg(long, value_name = "DURATION")]
    pub park_profile: Option<String>,
    /// Run an allocation profile for this long after attaching.
    #[arg(long, value_name = "DURATION")]
    pub alloc_profile: Option<String>,
    /// Stop after this long (default: until Ctrl-C or the process exits).
    #[arg(long, value_name = "DURATION")]
    pub duration: Option<String>,
    /// Extra label on every series, NAME=VALUE (repeatable), e.g. --label job=checkout.
    #[arg(long = "label", value_name = "NAME=VALUE")]
    pub labels: Vec<String>,
    /// Write each profile as JSON to this file (a suffix -park / -alloc is added).
    #[arg(long, value_name = "FILE")]
    pub profile_out: Option<PathBuf>,
    /// Validation: a file receiving the process's stderr run with GODEBUG=gctrace=1; at
    /// the end its GC pauses are compared with eBPF's.
    #[arg(long, value_name = "FILE")]
    pub gctrace_log: Option<PathBuf>,
    /// Validation: the process's own /metrics URL; go_gc_duration_seconds over the run is
    /// compared with eBPF's pauses.
    #[arg(long, value_name = "URL")]
    pub metrics_url: Option<String>,
    /// Print the series in Prometheus text format at every interval.
    #[arg(long)]
    pub print_series: bool,
}

fn dur(s: &str, what: &str) -> anyhow::Result<Duration> {
    lastmile_model::duration::parse_duration(s)
        .map_err(|e| anyhow::anyhow!("invalid {what} {s:?}: {e}"))
}

/// Where profiles go on a lastmile server, derived from its remote-write URL.
pub fn profiles_url(push: &str) -> Option<String> {
    push.strip_suffix("/api/v1/write")
        .map(|base| format!("{base}/api/v1/go-runtime/profiles"))
}

pub async fn run_attach(args: AttachArgs) -> anyhow::Result<()> {
    crate::probes::availability()?;
    let interval = dur(&args.interval, "--interval")?;
    if interval < Duration::from_millis(100) {
        bail!("--interval must be at least 100ms");
    }
    let park = args
        .park_profile
        .as_deref()
        .map(|d| dur(d, "--park-profile"))
        .transpose()?;
    let alloc = args
        .alloc_profile
        .as_deref()
        .map(|d| dur(d, "--alloc-profile"))
        .transpose()?;
    let duration = args
        .duration
        .as_deref()
        .map(|d| dur(d, "--duration"))
        .transpose()?;
    let mut labels = Vec::new();
    for l in &args.labels {
        let (k, v) = l
            .split_once('=')
            .with_context(|| format!("--label {l:?}: expected NAME=VALUE"))?;
        if k.is_empty() || !k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            bail!("--label {l:?}: {k:?} is not a valid label name");
        }
        labels.push((k.to_owned(), v.to_owned()));
    }
    let selector = match (&args.pid, &args.binary) {
        (Some(p), _) => Selector::Pid(*p),
        (None, Some(b)) => Selector::Binary(b.clone()),
        (None, None) => bail!("give --pid or --binary"),
    };
    let opts = WatchOptions {
        specs: vec![WatchSpec {
            selector,
            labels,
            park_profile: park,
            alloc_profile: alloc,
        }],
        interval,
        duration,
        calibration: Duration::from_secs(1),
    };
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;
    let gc_before = match &args.metrics_url {
        Some(u) => Some(scrape_gc_duration(&client, u).await?),
        None => None,
    };

    let stop = Arc::new(AtomicBool::new(false));
    let stop_signal = stop.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        eprintln!("stopping: detaching probes");
        stop_signal.store(true, Ordering::Relaxed);
    });
    let handle = tokio::runtime::Handle::current();
    let args2 = args.clone();
    let client2 = client.clone();
    type Outcome = (Vec<(u32, Vec<CycleTimes>)>, Option<usize>);
    let (outcome, gctrace_hint) =
        tokio::task::spawn_blocking(move || -> anyhow::Result<Outcome> {
            let client = client2;
            let mut cycles: Vec<(u32, Vec<CycleTimes>)> = Vec::new();
            let mut gctrace_at_attach = None;
            let mut push_error: Option<String> = None;
            let mut report = |ev: WatchEvent<'_>| match ev {
                WatchEvent::Attached { pid, description } => {
                    eprintln!("attached to pid {pid}: {description}");
                    // Cycles gctrace printed before the probes: where eBPF's first cycle sits.
                    if let Some(path) = &args2.gctrace_log {
                        gctrace_at_attach = std::fs::read_to_string(path)
                            .ok()
                            .map(|t| t.lines().filter_map(validate::parse_gctrace_line).count());
                    }
                }
                WatchEvent::AttachFailed { pid, error } => eprintln!("pid {pid}: {error}"),
                WatchEvent::Exited { pid, cycles: c } => {
                    eprintln!("pid {pid} exited; its probes are detached");
                    cycles.push((pid, c));
                }
                WatchEvent::Estimate {
                    pid,
                    kind,
                    window,
                    estimate,
                } => eprintln!(
                    "{kind} profile of pid {pid} for {window:?}: expected overhead +{:.1}% \
                 ({}: {:.0} probe hits/s × {:.1} µs per hit, process using {:.2} cores)",
                    estimate.expected_overhead * 100.0,
                    estimate.basis,
                    estimate.events_per_second,
                    estimate.probe_cost_us,
                    estimate.process_cpu_cores
                ),
                WatchEvent::Profile(p) => {
                    print_profile(p);
                    if let Err(e) = save_profile(&handle, &client, &args2, p) {
                        eprintln!("could not store the {} profile: {e:#}", p.kind);
                    }
                }
                WatchEvent::Series { t_ms, series } => {
                    print_summary(&series);
                    if args2.print_series {
                        print!("{}", crate::metrics::to_text(&series));
                    }
                    if let Some(url) = &args2.push {
                        match handle.block_on(push(&client, url, &series, t_ms)) {
                            Ok(()) => push_error = None,
                            Err(e) => {
                                let msg = format!("{e:#}");
                                if push_error.as_deref() != Some(msg.as_str()) {
                                    eprintln!("push to {url} failed: {msg}");
                                }
                                push_error = Some(msg);
                            }
                        }
                    }
                }
                WatchEvent::Finished { watcher } => {
                    for w in watcher.watched() {
                        cycles.push((w.pid, w.cycles()));
                    }
                }
            };
            crate::watch::run(&opts, stop, &mut report)?;
            eprintln!("detached");
            Ok((cycles, gctrace_at_attach))
        })
        .await
        .context("the probe loop panicked")??;

    // Reverse validation against the process's own account.
    let all: Vec<CycleTimes> = outcome
        .iter()
        .flat_map(|(_, c)| c.iter().copied())
        .collect();
    let mut ratios = Vec::new();
    if let Some(path) = &args.gctrace_log {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read --gctrace-log {}", path.display()))?;
        let trace: Vec<_> = text
            .lines()
            .filter_map(validate::parse_gctrace_line)
            .collect();
        let a = validate::compare_gctrace(&all, &trace, gctrace_hint);
        println!(
            "validation against gctrace: {} eBPF cycles matched {} of gctrace's (from gc {}):",
            a.sweep_termination.cycles,
            a.gctrace_cycles,
            a.offset + 1
        );
        for (name, p) in [
            ("sweep termination", &a.sweep_termination),
            ("mark termination", &a.mark_termination),
        ] {
            println!(
                "  {name}: p50 {:.1} µs vs {:.1} µs (×{:.2}), max {:.1} µs vs {:.1} µs (×{:.2})",
                p.ebpf_p50_ns as f64 / 1e3,
                p.go_p50_ns as f64 / 1e3,
                p.p50_ratio(),
                p.ebpf_max_ns as f64 / 1e3,
                p.go_max_ns as f64 / 1e3,
                p.max_ratio()
            );
            let phase = name.replace(' ', "_");
            ratios.push((phase.clone(), "p50", "gctrace", p.p50_ratio()));
            ratios.push((phase, "max", "gctrace", p.max_ratio()));
        }
    }
    if let (Some(url), Some(before)) = (&args.metrics_url, gc_before) {
        let after = scrape_gc_duration(&client, url).await?;
        let a = validate::compare_gc_duration(before, after, &all);
        println!(
            "validation against go_gc_duration_seconds: mean pause per cycle {:.1} µs (eBPF, {} cycles) vs {:.1} µs (Go, {} cycles), ×{:.2}",
            a.ebpf_mean_pause_ns as f64 / 1e3,
            a.ebpf_cycles,
            a.go_mean_pause_ns as f64 / 1e3,
            a.go_cycles,
            a.ratio()
        );
        ratios.push((
            "gc_total".into(),
            "mean",
            "go_gc_duration_seconds",
            a.ratio(),
        ));
    }
    if let (Some(push_url), false) = (&args.push, ratios.is_empty()) {
        let base: Vec<(String, String)> = outcome
            .first()
            .map(|(pid, _)| vec![("pid".to_owned(), pid.to_string())])
            .unwrap_or_default();
        let series: Vec<Series> = ratios
            .iter()
            .filter(|r| r.3.is_finite())
            .map(|(phase, stat, source, v)| {
                Series::new(
                    "go_ebpf_validation_ratio",
                    &base,
                    &[("phase", phase), ("stat", stat), ("source", source)],
                    *v,
                )
            })
            .collect();
        push(&client, push_url, &series, crate::session::unix_ms()).await?;
    }
    Ok(())
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

async fn scrape_gc_duration(client: &reqwest::Client, url: &str) -> anyhow::Result<(f64, u64)> {
    let text = client
        .get(url)
        .send()
        .await
        .with_context(|| format!("cannot scrape --metrics-url {url}"))?
        .text()
        .await?;
    validate::parse_gc_duration(&text)
        .with_context(|| format!("{url} has no go_gc_duration_seconds_sum/_count"))
}

pub async fn push(
    client: &reqwest::Client,
    url: &str,
    series: &[Series],
    t_ms: i64,
) -> anyhow::Result<()> {
    let body = remote_write_body(series, t_ms);
    let resp = client
        .post(url)
        .header("Content-Type", "application/x-protobuf")
        .header("Content-Encoding", "snappy")
        .header("X-Prometheus-Remote-Write-Version", "0.1.0")
        .body(body)
        .send()
        .await?;
    if !resp.status().is_success() {
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        bail!("{status}: {}", text.trim());
    }
    Ok(())
}

fn save_profile(
    handle: &tokio::runtime::Handle,
    client: &reqwest::Client,
    args: &AttachArgs,
    p: &Profile,
) -> anyhow::Result<()> {
    let json = serde_json::to_vec_pretty(p)?;
    if let Some(out) = &args.profile_out {
        let mut name = out.as_os_str().to_owned();
        name.push(format!("-{}", p.kind));
        let path = PathBuf::from(name);
        std::fs::write(&path, &json).with_context(|| format!("cannot write {}", path.display()))?;
        eprintln!("{} profile written to {}", p.kind, path.display());
    }
    if let Some(url) = args.push.as_deref().and_then(profiles_url) {
        let resp = handle.block_on(
            client
                .post(&url)
                .header("Content-Type", "application/json")
                .body(json)
                .send(),
        )?;
        if !resp.status().is_success() {
            bail!("{url}: {}", resp.status());
        }
        eprintln!("{} profile stored at {url}", p.kind);
    }
    Ok(())
}

fn print_summary(series: &[Series]) {
    for s in series
        .iter()
        .filter(|s| s.name() == "go_ebpf_gc_cycles_total")
    {
        let pid = s.label("pid").unwrap_or("?");
        let pauses: f64 = series
            .iter()
            .filter(|x| {
                x.name() == "go_ebpf_stw_pause_seconds_count" && x.label("pid") == Some(pid)
            })
            .map(|x| x.value)
            .sum();
        let max = series
            .iter()
            .filter(|x| x.name() == "go_ebpf_stw_pause_max_seconds" && x.label("pid") == Some(pid))
            .map(|x| x.value)
            .fold(0.0, f64::max);
        eprintln!(
            "pid {pid}: {} GC cycles, {} stop-the-world pauses, longest {:.1} µs",
            s.value,
            pauses,
            max * 1e6
        );
    }
}

fn print_profile(p: &Profile) {
    println!(
        "{} profile of pid {} ({}, {}): {:.1} s, {} probe hits ({:.0}/s measured{})",
        p.kind,
        p.pid,
        p.exe,
        p.go_version,
        p.duration_seconds,
        p.probe_hits,
        p.measured_events_per_second,
        p.estimate
            .as_ref()
            .map(|e| format!(
                ", expected overhead was +{:.1}%",
                e.expected_overhead * 100.0
            ))
            .unwrap_or_default()
    );
    for r in p.reasons.iter().take(8) {
        println!(
            "  {:<24} {:>9} parks  {:>10.3} s blocked",
            r.reason, r.parks, r.blocked_seconds
        );
    }
    for s in p.park_sites.iter().take(5) {
        println!("  {} × {} at {}:", s.parks, s.reason, s.stack.site);
        for f in s.stack.frames.iter().take(8) {
            println!("      {f}");
        }
    }
    for s in p.alloc_sites.iter().take(5) {
        println!(
            "  {} sampled bytes ({} samples) at {}:",
            s.sampled_bytes, s.samples, s.stack.site
        );
        for f in s.stack.frames.iter().take(8) {
            println!("      {f}");
        }
    }
    for n in &p.notes {
        println!("  note: {n}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profile_url_from_push_url() {
        assert_eq!(
            profiles_url("http://127.0.0.1:7070/api/v1/write").as_deref(),
            Some("http://127.0.0.1:7070/api/v1/go-runtime/profiles")
        );
        assert_eq!(profiles_url("http://vm:8428/api/v1/import"), None);
    }
}
