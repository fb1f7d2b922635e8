//! Shared by the eBPF tests: the Go toolchains, fixture binaries built once per test run,
//! and the rules for skipping (outside CI only, always saying why).
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The Go releases under test and where Debian installs them.
pub const GO_VERSIONS: &[(&str, &str)] = &[
    ("1.19", "/usr/lib/go-1.19/bin/go"),
    ("1.21", "/usr/lib/go-1.21/bin/go"),
    ("1.22", "/usr/lib/go-1.22/bin/go"),
    ("1.23", "/usr/lib/go-1.23/bin/go"),
];

pub const NODE_EXPORTER: &str = "/usr/bin/prometheus-node-exporter";

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Skips (returns false) outside CI with a reason; fails under CI.
pub fn skip(reason: &str) -> bool {
    if in_ci() {
        panic!("CI=true: this test must run, but {reason}");
    }
    eprintln!("SKIPPED: {reason} (CI=true makes this a failure)");
    false
}

/// Root, the BPF object and the toolchains: everything a probing test needs.
pub fn can_probe() -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return skip("eBPF probes need root");
    }
    if let Err(e) = lastmile_ebpf::probes::availability() {
        return skip(&e.to_string());
    }
    have_toolchains()
}

pub fn have_toolchains() -> bool {
    for (v, go) in GO_VERSIONS {
        if !Path::new(go).exists() {
            return skip(&format!(
                "Go {v} is not installed at {go} (scripts/install-test-deps.sh installs it)"
            ));
        }
    }
    true
}

/// One built fixture.
#[derive(Clone, Debug)]
pub struct Fixture {
    pub go: &'static str,
    pub flavour: &'static str,
    pub path: PathBuf,
}

pub struct Fixtures {
    pub gowork: Vec<Fixture>,
    /// go version → gosymdump built with it (Go's own pclntab reader).
    pub gosymdump: PathBuf,
}

fn fixture_src(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn work_dir() -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join("go-fixtures");
    std::fs::create_dir_all(&d).expect("fixture dir");
    d
}

fn go_build(go: &str, src: &Path, out: &Path, extra: &[&str]) {
    let work = work_dir();
    let status = Command::new(go)
        .arg("build")
        .args(extra)
        .arg("-o")
        .arg(out)
        .arg(".")
        .current_dir(src)
        .env("GOCACHE", work.join("gocache"))
        .env("GOPATH", work.join("gopath"))
        .env("GOTOOLCHAIN", "local")
        .env("CGO_ENABLED", "0")
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit())
        .status()
        .unwrap_or_else(|e| panic!("cannot run {go}: {e}"));
    assert!(status.success(), "{go} build {} failed", src.display());
}

/// Builds every fixture once per test binary (Go's build cache keeps reruns quick).
pub fn fixtures() -> &'static Fixtures {
    static F: OnceLock<Fixtures> = OnceLock::new();
    F.get_or_init(|| {
        let work = work_dir();
        let t = Instant::now();
        let mut gowork = Vec::new();
        for (v, go) in GO_VERSIONS {
            let flavours: &[(&str, &[&str])] = if *v == "1.22" {
                &[
                    ("unstripped", &[]),
                    ("stripped", &["-ldflags=-s -w"]),
                    ("pie", &["-buildmode=pie"]),
                    ("pie-stripped", &["-buildmode=pie", "-ldflags=-s -w"]),
                ]
            } else {
                &[("unstripped", &[]), ("stripped", &["-ldflags=-s -w"])]
            };
            for (flavour, flags) in flavours {
                let out = work.join(format!("gowork-{v}-{flavour}"));
                go_build(go, &fixture_src("gowork"), &out, flags);
                gowork.push(Fixture {
                    go: v,
                    flavour,
                    path: out,
                });
            }
        }
        let gosymdump = work.join("gosymdump");
        go_build(GO_VERSIONS[3].1, &fixture_src("gosymdump"), &gosymdump, &[]);
        eprintln!(
            "built {} Go fixtures in {:?}",
            gowork.len() + 1,
            t.elapsed()
        );
        Fixtures { gowork, gosymdump }
    })
}

pub fn fixture(go: &str, flavour: &str) -> &'static Fixture {
    fixtures()
        .gowork
        .iter()
        .find(|f| f.go == go && f.flavour == flavour)
        .expect("fixture built")
}

/// A running fixture whose stderr (gctrace) and stdout are collected.
pub struct Running {
    pub child: Child,
    pub stderr: Arc<Mutex<Vec<String>>>,
    pub stdout: Arc<Mutex<Vec<String>>>,
    readers: Vec<std::thread::JoinHandle<()>>,
}

impl Running {
    pub fn spawn(bin: &Path, args: &[&str], env: &[(&str, &str)]) -> Running {
        let mut child = Command::new(bin)
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let (e, o) = (stderr.clone(), stdout.clone());
        let err = child.stderr.take().expect("piped");
        let out = child.stdout.take().expect("piped");
        let readers = vec![
            std::thread::spawn(move || {
                for line in BufReader::new(err).lines().map_while(Result::ok) {
                    e.lock().unwrap().push(line);
                }
            }),
            std::thread::spawn(move || {
                for line in BufReader::new(out).lines().map_while(Result::ok) {
                    o.lock().unwrap().push(line);
                }
            }),
        ];
        Running {
            child,
            stderr,
            stdout,
            readers,
        }
    }

    /// After the process exited: waits until its output has been read to the end.
    pub fn drain_output(&mut self) {
        for r in self.readers.drain(..) {
            r.join().expect("output reader");
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn wait_stdout(&self, prefix: &str, deadline: Duration) -> String {
        let end = Instant::now() + deadline;
        loop {
            if let Some(l) = self
                .stdout
                .lock()
                .unwrap()
                .iter()
                .find(|l| l.starts_with(prefix))
            {
                return l.clone();
            }
            assert!(
                Instant::now() < end,
                "no {prefix:?} line on stdout; stderr: {:?}",
                self.stderr.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn go(&mut self) {
        let stdin = self.child.stdin.as_mut().expect("piped stdin");
        stdin.write_all(b"go\n").expect("write stdin");
        stdin.flush().expect("flush stdin");
    }

    pub fn stderr_lines(&self) -> Vec<String> {
        self.stderr.lock().unwrap().clone()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `cond` until it holds or the deadline passes.
pub fn wait_for(what: &str, deadline: Duration, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + deadline;
    while !cond() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}
