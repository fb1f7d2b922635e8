//! Probes on real Go processes (root): GC cycles and stop-the-world pauses against
//! gctrace for Go 1.19/1.21/1.22/1.23, park and allocation profiles against the fixture's
//! known behaviour, clean detach on exit and on request.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{Running, fixture, wait_for};
use lastmile_ebpf::gobin::GoBinary;
use lastmile_ebpf::probes::ProbeSet;
use lastmile_ebpf::session::Watcher;
use lastmile_ebpf::tables::func;
use lastmile_ebpf::validate::{compare_gctrace, parse_gctrace_line};

/// gctrace's clock figures have 2-3 significant digits; lastmile reads Go's clock at both
/// ends of a GC pause, as gctrace does: agreement is "median and maximum each within 10 %
/// or 20 µs". The figures are printed.
const REL_TOLERANCE: f64 = 0.10;
const ABS_TOLERANCE_NS: u64 = 20_000;

/// The byte where a function's entry probe goes, in the running process: 0xcc (int3)
/// while a uprobe is there.
fn entry_byte(pid: u32, bin: &GoBinary, name: &str) -> u8 {
    use std::io::{Read, Seek, SeekFrom};
    let addr = lastmile_ebpf::sites::entry(bin, name).unwrap(); // fixtures are not PIE
    let mut mem = std::fs::File::open(format!("/proc/{pid}/mem")).unwrap();
    mem.seek(SeekFrom::Start(addr)).unwrap();
    let mut b = [0u8; 1];
    mem.read_exact(&mut b).unwrap();
    b[0]
}

#[test]
fn gc_cycles_and_pauses_agree_with_gctrace() {
    if !common::can_probe() {
        return;
    }
    let mut watcher = Watcher::new().expect("load BPF object");
    let mut report = Vec::new();
    for (go, flavour) in [
        ("1.19", "unstripped"),
        ("1.21", "stripped"),
        ("1.22", "unstripped"),
        ("1.23", "stripped"),
    ] {
        let fx = fixture(go, flavour);
        let mut proc = Running::spawn(
            &fx.path,
            &["-wait-stdin", "-iterations", "1500", "-gc-every", "25"],
            &[("GODEBUG", "gctrace=1")],
        );
        proc.wait_stdout("waiting", Duration::from_secs(30));
        let pid = proc.pid();
        let bin = GoBinary::open(&fx.path).unwrap();
        let before = entry_byte(pid, &bin, func::STOP_THE_WORLD);
        assert_ne!(before, 0xcc);
        watcher.watch_pid(pid, &[]).expect("attach");
        assert_eq!(
            entry_byte(pid, &bin, func::STOP_THE_WORLD),
            0xcc,
            "uprobe in place"
        );
        proc.go();
        // The fixture runs to its end; the watcher notices the exit and detaches.
        let mut exited = Vec::new();
        wait_for("the fixture to exit", Duration::from_secs(120), || {
            watcher.wait_events(Duration::from_millis(50));
            exited.extend(watcher.reap());
            !exited.is_empty()
        });
        let status = proc.child.wait().unwrap();
        proc.drain_output();
        assert!(
            status.success(),
            "Go {go}: fixture failed under probes: {status}"
        );
        assert!(
            proc.stdout
                .lock()
                .unwrap()
                .iter()
                .any(|l| l.starts_with("done")),
            "Go {go}: fixture did not finish its work"
        );
        let w = exited.pop().unwrap();
        assert!(watcher.get(pid).is_none(), "reaped process is forgotten");
        let trace: Vec<_> = proc
            .stderr_lines()
            .iter()
            .filter_map(|l| parse_gctrace_line(l))
            .collect();
        let cycles = w.cycles();
        let complete = cycles
            .iter()
            .filter(|c| c.sweep_ns.is_some() && c.mark_ns.is_some())
            .count();
        assert!(
            trace.len() >= 50,
            "Go {go}: only {} gctrace lines",
            trace.len()
        );
        assert_eq!(
            complete,
            trace.len(),
            "Go {go}: eBPF saw {complete} complete GC cycles, gctrace printed {}",
            trace.len()
        );
        let a = compare_gctrace(&cycles, &trace, Some(0));
        assert_eq!(a.offset, 0);
        let line = format!(
            "Go {go} ({flavour}): {} cycles; sweep termination p50 {:.1}/{:.1} µs max {:.1}/{:.1} µs; mark termination p50 {:.1}/{:.1} µs max {:.1}/{:.1} µs (eBPF/gctrace)",
            a.ebpf_cycles,
            a.sweep_termination.ebpf_p50_ns as f64 / 1e3,
            a.sweep_termination.go_p50_ns as f64 / 1e3,
            a.sweep_termination.ebpf_max_ns as f64 / 1e3,
            a.sweep_termination.go_max_ns as f64 / 1e3,
            a.mark_termination.ebpf_p50_ns as f64 / 1e3,
            a.mark_termination.go_p50_ns as f64 / 1e3,
            a.mark_termination.ebpf_max_ns as f64 / 1e3,
            a.mark_termination.go_max_ns as f64 / 1e3,
        );
        eprintln!("{line}");
        report.push((
            line,
            a.sweep_termination.within(REL_TOLERANCE, ABS_TOLERANCE_NS)
                && a.mark_termination.within(REL_TOLERANCE, ABS_TOLERANCE_NS),
        ));
    }
    let bad: Vec<_> = report
        .iter()
        .filter(|(_, ok)| !ok)
        .map(|(l, _)| l)
        .collect();
    assert!(
        bad.is_empty(),
        "pauses outside {REL_TOLERANCE} relative / {ABS_TOLERANCE_NS} ns: {bad:#?}"
    );
}

/// Runs a park profile on a fixture mode and returns the profile.
fn park_profile(watcher: &mut Watcher, go: &str, mode: &str) -> lastmile_ebpf::session::Profile {
    let fx = fixture(go, "stripped");
    let proc = Running::spawn(
        &fx.path,
        &["-mode", mode, "-duration", "60s", "-gc-every", "0"],
        &[],
    );
    let pid = proc.pid();
    wait_for("fixture start", Duration::from_secs(10), || {
        !proc.stderr_lines().is_empty()
    });
    watcher.watch_pid(pid, &[]).expect("attach");
    let mut estimate = None;
    let profile = watcher
        .profile(
            pid,
            ProbeSet::Park,
            Duration::from_millis(1500),
            Duration::from_millis(500),
            &mut |e| estimate = Some(e.clone()),
        )
        .expect("park profile");
    assert!(
        estimate.is_some(),
        "estimate reported before the window ends"
    );
    let bin = GoBinary::open(&fx.path).unwrap();
    assert_ne!(
        entry_byte(pid, &bin, func::GOPARK),
        0xcc,
        "park probes gone after the window"
    );
    watcher.unwatch(pid).unwrap();
    assert_ne!(
        entry_byte(pid, &bin, func::STOP_THE_WORLD),
        0xcc,
        "always-on probes gone"
    );
    // The process keeps running after detach.
    assert!(lastmile_ebpf::session::proc_start_time(pid).is_some());
    profile
}

#[test]
fn park_profile_shows_the_mutex_and_the_channel() {
    if !common::can_probe() {
        return;
    }
    let mut watcher = Watcher::new().expect("load BPF object");
    for go in ["1.19", "1.21", "1.22", "1.23"] {
        let p = park_profile(&mut watcher, go, "mutex");
        let expected = if go == "1.19" {
            "semacquire"
        } else {
            "sync.Mutex.Lock"
        };
        let top = &p.reasons[0];
        eprintln!(
            "Go {go} mutex fixture: top reason {:?} ({} parks, {:.3} s blocked), {:.0} events/s measured, {:.1} % overhead expected; top stack {:?}",
            top.reason,
            top.parks,
            top.blocked_seconds,
            p.measured_events_per_second,
            p.estimate.as_ref().unwrap().expected_overhead * 100.0,
            p.park_sites[0].stack.frames
        );
        assert_eq!(top.reason, expected, "Go {go}: {:?}", p.reasons);
        assert!(
            top.readies > 0 && top.blocked_seconds > 0.0,
            "Go {go}: {top:?}"
        );
        let site = &p.park_sites[0];
        assert_eq!(site.reason, expected);
        assert_eq!(
            site.stack.site, "main.lockedWork",
            "Go {go}: {:?}",
            site.stack.frames
        );
        assert!(
            site.stack
                .frames
                .iter()
                .any(|f| f == "sync.(*Mutex).Lock" || f == "sync.(*Mutex).lockSlow"),
            "Go {go}: {:?}",
            site.stack.frames
        );
    }
    let p = park_profile(&mut watcher, "1.23", "chan");
    let top: Vec<&str> = p
        .reasons
        .iter()
        .take(2)
        .map(|r| r.reason.as_str())
        .collect();
    assert!(
        top.contains(&"chan receive") || top.contains(&"chan send"),
        "channel fixture: {:?}",
        p.reasons
    );
}

#[test]
fn alloc_profile_finds_the_hot_spot() {
    if !common::can_probe() {
        return;
    }
    let mut watcher = Watcher::new().expect("load BPF object");
    // 1.22 passes the size in RBX, 1.23 in RCX.
    for go in ["1.22", "1.23"] {
        let fx = fixture(go, "unstripped");
        let proc = Running::spawn(
            &fx.path,
            &["-mode", "alloc", "-duration", "60s", "-gc-every", "0"],
            &[],
        );
        let pid = proc.pid();
        wait_for("fixture start", Duration::from_secs(10), || {
            !proc.stderr_lines().is_empty()
        });
        watcher.watch_pid(pid, &[]).unwrap();
        let p = watcher
            .profile(
                pid,
                ProbeSet::Alloc,
                Duration::from_millis(1000),
                Duration::from_millis(300),
                &mut |_| {},
            )
            .unwrap();
        watcher.unwatch(pid).unwrap();
        let top = &p.alloc_sites[0];
        eprintln!(
            "Go {go} alloc fixture: top site {} ({} samples, {} bytes), {:.0} samples/s",
            top.stack.site, top.samples, top.sampled_bytes, p.measured_events_per_second
        );
        assert_eq!(
            top.stack.site, "main.allocHotSpot",
            "Go {go}: {:?}",
            top.stack.frames
        );
        // Every sampled allocation of the fixture is a 64 KiB slice: the size register
        // of this Go version was read correctly.
        assert_eq!(top.sampled_bytes, top.samples * 65536, "Go {go}");
    }
}

/// A command killed when dropped.
struct Spinning(std::process::Child);

impl Drop for Spinning {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The sampler behind the park profile's overhead estimate tells kernel-bound from
/// user-bound CPU: `dd bs=1` spends most of its time in read/write syscalls, `sha256sum`
/// in its own hashing. Sampling stops cleanly.
#[test]
fn cpu_sampling_splits_user_and_kernel_time() {
    if !common::can_probe() {
        return;
    }
    let mut probes = lastmile_ebpf::probes::RuntimeProbes::load().expect("load BPF object");
    let spawn = |cmd: &str, args: &[&str]| {
        Spinning(
            std::process::Command::new(cmd)
                .args(args)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .expect(cmd),
        )
    };
    let kernel_bound = spawn("dd", &["if=/dev/zero", "of=/dev/null", "bs=1"]);
    let user_bound = spawn("sha256sum", &["/dev/zero"]);
    let mut splits = Vec::new();
    for proc in [&kernel_bound, &user_bound] {
        let pid = proc.0.id();
        let sampling = probes.start_cpu_sampling(pid).expect("start sampling");
        // Half a second of the process's CPU at 4 kHz.
        wait_for("2000 CPU samples", Duration::from_secs(60), || {
            probes
                .cpu_samples(pid)
                .is_some_and(|s| s.user + s.kernel >= 2000)
        });
        let split = probes.cpu_samples(pid).unwrap();
        probes.stop_cpu_sampling(sampling);
        assert_eq!(probes.cpu_samples(pid), None, "sampling stopped");
        splits.push(split);
    }
    eprintln!("dd bs=1: {:?}; sha256sum: {:?}", splits[0], splits[1]);
    assert!(
        splits[0].kernel > splits[0].user,
        "dd bs=1: {:?}",
        splits[0]
    );
    assert!(
        splits[1].user > 4 * splits[1].kernel,
        "sha256sum: {:?}",
        splits[1]
    );
}

#[test]
fn unsupported_go_version_is_refused_clearly() {
    // Go 1.20 has no table: the error names the version and the supported ones.
    let v = lastmile_ebpf::gobin::GoVersion::parse("go1.20.14").unwrap();
    let e = lastmile_ebpf::tables::table_for(&v).unwrap_err();
    assert!(e.to_string().contains("go1.20.14 is not supported"));
    let _ = Path::new("");
}

/// A plain HTTP/1.0 GET on loopback.
fn http_get(addr: &str, path: &str) -> std::io::Result<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}

/// Debian's node-exporter (stripped, cgo, Go 1.19): GC cycles and pauses against its own
/// gctrace and its own go_gc_duration_seconds.
#[test]
fn node_exporter_agrees_with_its_own_gc_account() {
    if !common::can_probe() {
        return;
    }
    if !Path::new(common::NODE_EXPORTER).exists() {
        common::skip("prometheus-node-exporter is not installed");
        return;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let listen = format!("--web.listen-address={addr}");
    let proc = Running::spawn(
        Path::new(common::NODE_EXPORTER),
        &[
            &listen,
            "--collector.disable-defaults",
            "--collector.cpu",
            "--collector.meminfo",
            "--collector.stat",
        ],
        &[("GODEBUG", "gctrace=1")],
    );
    wait_for("node-exporter to listen", Duration::from_secs(20), || {
        http_get(&addr, "/metrics").is_ok()
    });
    let mut watcher = Watcher::new().unwrap();
    let pid = proc.pid();
    let before_lines = proc
        .stderr_lines()
        .iter()
        .filter_map(|l| parse_gctrace_line(l))
        .count();
    watcher.watch_pid(pid, &[]).unwrap();
    let before = lastmile_ebpf::validate::parse_gc_duration(&http_get(&addr, "/metrics").unwrap())
        .expect("go_gc_duration_seconds");
    // Scrapes allocate; a bounded number of them drives the collector through cycles.
    let mut scrapes = 0;
    while scrapes < 400 {
        http_get(&addr, "/metrics").unwrap();
        scrapes += 1;
        watcher.poll_events();
        let done = watcher.get(pid).unwrap().cycles().len();
        if done >= 30 {
            break;
        }
    }
    let after = lastmile_ebpf::validate::parse_gc_duration(&http_get(&addr, "/metrics").unwrap())
        .expect("go_gc_duration_seconds");
    watcher.wait_events(Duration::from_millis(100));
    let cycles = watcher.get(pid).unwrap().cycles();
    watcher.unwatch(pid).unwrap();
    let trace: Vec<_> = proc
        .stderr_lines()
        .iter()
        .filter_map(|l| parse_gctrace_line(l))
        .collect();
    let a = compare_gctrace(&cycles, &trace, Some(before_lines));
    let d = lastmile_ebpf::validate::compare_gc_duration(before, after, &cycles);
    eprintln!(
        "node-exporter: {scrapes} scrapes, {} eBPF cycles; sweep p50 {:.1}/{:.1} µs max {:.1}/{:.1}; mark p50 {:.1}/{:.1} µs max {:.1}/{:.1} (eBPF/gctrace); mean pause per cycle {:.1} µs eBPF ({} cycles) vs {:.1} µs go_gc_duration_seconds ({} cycles)",
        a.ebpf_cycles,
        a.sweep_termination.ebpf_p50_ns as f64 / 1e3,
        a.sweep_termination.go_p50_ns as f64 / 1e3,
        a.sweep_termination.ebpf_max_ns as f64 / 1e3,
        a.sweep_termination.go_max_ns as f64 / 1e3,
        a.mark_termination.ebpf_p50_ns as f64 / 1e3,
        a.mark_termination.go_p50_ns as f64 / 1e3,
        a.mark_termination.ebpf_max_ns as f64 / 1e3,
        a.mark_termination.go_max_ns as f64 / 1e3,
        d.ebpf_mean_pause_ns as f64 / 1e3,
        d.ebpf_cycles,
        d.go_mean_pause_ns as f64 / 1e3,
        d.go_cycles,
    );
    assert!(a.ebpf_cycles >= 10, "too few GC cycles: {}", a.ebpf_cycles);
    // Every cycle eBPF saw is one gctrace printed, in order.
    assert!(a.offset + a.ebpf_cycles <= trace.len());
    assert!(
        a.sweep_termination.within(REL_TOLERANCE, ABS_TOLERANCE_NS),
        "{:?}",
        a.sweep_termination
    );
    assert!(
        a.mark_termination.within(REL_TOLERANCE, ABS_TOLERANCE_NS),
        "{:?}",
        a.mark_termination
    );
    // go_gc_duration_seconds counts the same cycles (±1 in flight at each scrape).
    assert!(d.go_cycles.abs_diff(d.ebpf_cycles as u64) <= 2, "{d:?}");
}
