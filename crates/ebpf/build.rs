//! Compiles the BPF programs in bpf/ with `clang -O2 -g -target bpf` when clang and the
//! libbpf headers are installed. Without them the crate still builds (so `lastmile serve`
//! builds on a machine with gcc only): the object is left empty and
//! `lastmile go-runtime attach` says what to install.

use std::path::{Path, PathBuf};
use std::process::Command;

const PROGRAMS: &[&str] = &["go_runtime"];
const HELPERS_HEADER: &str = "/usr/include/bpf/bpf_helpers.h";

fn main() {
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    println!("cargo:rerun-if-changed=bpf");
    println!("cargo:rerun-if-env-changed=CLANG");
    let clang = std::env::var("CLANG").unwrap_or_else(|_| "clang".to_owned());
    let clang_path = find_in_path(&clang);
    // A missing path makes cargo rerun this script on every build, so installing clang
    // later is noticed; an existing one is tracked by its timestamp.
    println!(
        "cargo:rerun-if-changed={}",
        clang_path
            .as_deref()
            .unwrap_or(Path::new("/usr/bin/clang"))
            .display()
    );
    println!("cargo:rerun-if-changed={HELPERS_HEADER}");

    let missing = match (&clang_path, Path::new(HELPERS_HEADER).exists()) {
        (None, false) => Some("clang and libbpf-dev"),
        (None, true) => Some("clang"),
        (Some(_), false) => Some("libbpf-dev"),
        (Some(_), true) => None,
    };
    let mut built = Vec::new();
    for prog in PROGRAMS {
        let src = format!("bpf/{prog}.bpf.c");
        let obj = out.join(format!("{prog}.bpf.o"));
        let _ = std::fs::remove_file(&obj);
        if missing.is_none() {
            let status = Command::new(clang_path.as_deref().unwrap_or(Path::new(&clang)))
                .args(["-O2", "-g", "-target", "bpf", "-Wall", "-Werror"])
                .arg(format!("-I/usr/include/{}-linux-gnu", arch()))
                .args(["-c", &src, "-o"])
                .arg(&obj)
                .status();
            match status {
                Ok(s) if s.success() => {
                    built.push(prog);
                    continue;
                }
                // A syntax error in our own C must fail the build, not hide behind a warning.
                Ok(s) => panic!("clang failed on {src} ({s})"),
                Err(e) => panic!("cannot run clang for {src}: {e}"),
            }
        }
        // Empty object: the loader reports what to install.
        std::fs::write(&obj, b"").expect("write placeholder BPF object");
    }
    if let Some(what) = missing {
        println!(
            "cargo:warning=BPF programs not built: {what} not installed; \
             `lastmile go-runtime` will refuse to attach until you install it \
             (Debian: apt-get install clang libbpf-dev) and rebuild"
        );
        println!("cargo:rustc-env=LASTMILE_BPF_MISSING={what}");
    } else {
        println!("cargo:rustc-env=LASTMILE_BPF_MISSING=");
    }
}

fn arch() -> String {
    match std::env::var("CARGO_CFG_TARGET_ARCH").as_deref() {
        Ok("x86_64") | Err(_) => "x86_64".to_owned(),
        Ok(other) => other.to_owned(),
    }
}

fn find_in_path(program: &str) -> Option<PathBuf> {
    if program.contains('/') {
        let p = PathBuf::from(program);
        return p.is_file().then_some(p);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}
