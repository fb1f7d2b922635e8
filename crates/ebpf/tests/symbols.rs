//! Go binary analysis against Go's own tools: every fixture (Go 1.19/1.21/1.22/1.23,
//! stripped and not, one PIE) and Debian's prometheus-node-exporter (stripped, cgo).
//! No root needed.

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;

use iced_x86::{Decoder, DecoderOptions};
use lastmile_ebpf::gobin::{GoBinary, SymbolSource};
use lastmile_ebpf::probes::{ProbeSet, probe_points};
use lastmile_ebpf::sites;
use lastmile_ebpf::tables::{func, table_for};

const PROBED: &[&str] = &[
    func::STOP_THE_WORLD,
    func::START_THE_WORLD,
    func::GC_START,
    func::GC_MARK_TERMINATION,
    func::GC_MARK_DONE,
    func::GOPARK,
    func::READY,
    func::ALLOC_SAMPLE,
];

/// `go tool nm -size` of a binary: name → (address, size) of its text symbols (some names
/// occur more than once).
fn go_nm(go: &str, bin: &Path) -> HashMap<String, Vec<(u64, u64)>> {
    let out = Command::new(go)
        .args(["tool", "nm", "-size"])
        .arg(bin)
        .output()
        .expect("go tool nm");
    assert!(out.status.success(), "go tool nm failed");
    let mut m = HashMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() == 4 && (f[2] == "T" || f[2] == "t") {
            let addr = u64::from_str_radix(f[0], 16).unwrap();
            let size: u64 = f[1].parse().unwrap();
            m.entry(f[3].to_owned())
                .or_insert_with(Vec::new)
                .push((addr, size));
        }
    }
    m
}

/// Go's own debug/gosym reading of .gopclntab: (entry, end, name), sorted.
fn go_pclntab(bin: &Path) -> Vec<(u64, u64, String)> {
    let out = Command::new(&common::fixtures().gosymdump)
        .arg(bin)
        .output()
        .expect("gosymdump");
    assert!(out.status.success(), "gosymdump failed: {:?}", out);
    let mut v = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let mut f = line.splitn(3, ' ');
        let start = u64::from_str_radix(f.next().unwrap(), 16).unwrap();
        let end = u64::from_str_radix(f.next().unwrap(), 16).unwrap();
        v.push((start, end, f.next().unwrap().to_owned()));
    }
    v.sort();
    v
}

fn ours_sorted(b: &GoBinary) -> Vec<(u64, u64, String)> {
    let mut v: Vec<_> = b
        .functions()
        .iter()
        .map(|f| (f.start, f.end, f.name.clone()))
        .collect();
    v.sort();
    v
}

/// Equal tables, or a failure naming the first difference (not the whole table).
fn same_table(ours: &[(u64, u64, String)], go: &[(u64, u64, String)], bin: &Path) {
    if let Some((i, (a, b))) = ours.iter().zip(go).enumerate().find(|(_, (a, b))| a != b) {
        panic!(
            "{}: function {i} differs: ours {a:x?}, Go's {b:x?}",
            bin.display()
        );
    }
    assert_eq!(ours.len(), go.len(), "{}: function count", bin.display());
}

fn check_probed_functions(b: &GoBinary) {
    table_for(b.version()).expect("supported version");
    for name in PROBED {
        let f = b.function(name).unwrap_or_else(|e| panic!("{e}"));
        assert!(f.end > f.start, "{name} has no extent");
        b.file_offset(f.start).expect("maps to the file");
    }
    // Go's amd64 prologue: the stack-bound check `cmp rsp,[r14+0x10]` (49 3b ...) or
    // `lea r12,[rsp-N]` (4c 8d ...) first; a wrong text base would land elsewhere.
    let data = std::fs::read(b.path()).unwrap();
    for name in PROBED {
        let off = b.file_offset(b.function(name).unwrap().start).unwrap() as usize;
        assert!(
            matches!(&data[off..off + 2], [0x49, 0x3b] | [0x4c, 0x8d]),
            "{name} in {} does not start with a Go prologue: {:02x?}",
            b.path().display(),
            &data[off..off + 4]
        );
    }
    let rets = b.ret_sites(func::START_THE_WORLD).unwrap();
    let stw = b.function(func::START_THE_WORLD).unwrap();
    assert!(rets.iter().all(|r| *r >= stw.start && *r < stw.end));
    // Every probe sits on an instruction the kernel emulates: a single-stepped one costs
    // several times more per hit (see lastmile_ebpf::sites).
    for set in [ProbeSet::AlwaysOn, ProbeSet::Park, ProbeSet::Alloc] {
        for p in probe_points(b, set).unwrap() {
            let off = b.file_offset(p.addr).unwrap() as usize;
            let ins =
                Decoder::with_ip(64, &data[off..off + 16], p.addr, DecoderOptions::NONE).decode();
            assert!(
                sites::kernel_emulates(&ins),
                "{} in {}: probe at {:#x} on a {:?}, which the kernel single-steps",
                p.program,
                b.path().display(),
                p.addr,
                ins.mnemonic()
            );
        }
    }
}

#[test]
fn fixtures_resolve_and_match_go_tools() {
    if !common::have_toolchains() {
        return;
    }
    let fx = common::fixtures();
    for f in &fx.gowork {
        let b = GoBinary::open(&f.path).unwrap();
        assert_eq!(
            (b.version().major, b.version().minor),
            (1, f.go.split('.').nth(1).unwrap().parse().unwrap()),
            "{}",
            f.path.display()
        );
        let expect_source = if matches!(f.flavour, "stripped" | "pie-stripped") {
            SymbolSource::Gopclntab
        } else {
            SymbolSource::Symtab
        };
        assert_eq!(b.symbol_source(), expect_source, "{}", f.path.display());
        assert_eq!(b.is_pie(), f.flavour.starts_with("pie"));
        check_probed_functions(&b);

        if f.flavour == "stripped" {
            // Against Go's own pclntab reader: every function, same entry and end.
            same_table(&ours_sorted(&b), &go_pclntab(&f.path), &f.path);
        } else {
            // Against `go tool nm`: address and size of every text symbol (a stripped
            // PIE against its unstripped twin: -s -w leaves the code where it was).
            let go = common::GO_VERSIONS
                .iter()
                .find(|(v, _)| *v == f.go)
                .unwrap()
                .1;
            let nm_of = if f.flavour == "pie-stripped" {
                common::fixture(f.go, "pie").path.clone()
            } else {
                f.path.clone()
            };
            let nm = go_nm(go, &nm_of);
            let mut compared = 0;
            let mut ours_count: HashMap<&str, usize> = HashMap::new();
            for func in b.functions() {
                *ours_count.entry(func.name.as_str()).or_default() += 1;
            }
            // Names the Go toolchain emits twice (e.g. ABI variants) are listed once by
            // nm; they are left out, everything else is compared.
            for func in b
                .functions()
                .iter()
                .filter(|f| ours_count[f.name.as_str()] == 1)
            {
                if let Some(candidates) = nm.get(&func.name) {
                    // nm's size stops at the last instruction; the ELF symbol may include
                    // alignment padding.
                    let Some(&(_, size)) = candidates.iter().find(|c| c.0 == func.start) else {
                        panic!(
                            "{} at {:#x}: go tool nm has {candidates:x?}",
                            func.name, func.start
                        );
                    };
                    let ours = func.end - func.start;
                    assert!(
                        ours >= size && ours - size < 64,
                        "{}: {ours} vs {size}",
                        func.name
                    );
                    compared += 1;
                }
            }
            assert!(
                compared > 1000,
                "only {compared} functions compared with go tool nm"
            );
        }
        eprintln!(
            "{}: {} {} functions from {}",
            f.path.display(),
            b.version(),
            b.functions().len(),
            b.symbol_source().as_str()
        );
    }
}

#[test]
fn node_exporter_stripped_cgo_binary() {
    if !Path::new(common::NODE_EXPORTER).exists() {
        common::skip("prometheus-node-exporter is not installed (scripts/install-test-deps.sh)");
        return;
    }
    if !common::have_toolchains() {
        return;
    }
    let b = GoBinary::open(Path::new(common::NODE_EXPORTER)).unwrap();
    assert_eq!(b.symbol_source(), SymbolSource::Gopclntab);
    check_probed_functions(&b);
    // cgo: the Go text starts after C code, so pclntab's textStart is not .text's address.
    let path = Path::new(common::NODE_EXPORTER);
    same_table(&ours_sorted(&b), &go_pclntab(path), path);
    eprintln!(
        "node-exporter: {} {} functions",
        b.version(),
        b.functions().len()
    );
}

#[test]
fn unsupported_and_non_go_binaries_say_why() {
    let e = GoBinary::open(Path::new("/bin/sh")).unwrap_err();
    assert!(e.to_string().contains("no Go build info"), "{e}");
    let e = GoBinary::open(Path::new("/nonexistent/x")).unwrap_err();
    assert!(e.to_string().contains("cannot read"), "{e}");
}

/// The version tables against the runtime sources of the installed toolchains.
#[test]
fn tables_match_go_sources() {
    if !common::have_toolchains() {
        return;
    }
    for (v, go) in common::GO_VERSIONS {
        let root = Path::new(go).parent().unwrap().parent().unwrap();
        let rt2 = std::fs::read_to_string(root.join("src/runtime/runtime2.go")).unwrap();
        let proc = std::fs::read_to_string(root.join("src/runtime/proc.go")).unwrap();
        let mprof = std::fs::read_to_string(root.join("src/runtime/mprof.go")).unwrap();
        let version = lastmile_ebpf::gobin::GoVersion::parse(&format!("go{v}")).unwrap();
        let t = table_for(&version).unwrap();
        assert_eq!(
            array_strings(&rt2, "var waitReasonStrings"),
            t.wait_reasons,
            "Go {v}"
        );
        if t.stw_reason_in_rax {
            assert_eq!(
                array_strings(&proc, "var stwReasonStrings"),
                t.stw_reasons,
                "Go {v}"
            );
            assert!(
                proc.contains("func stopTheWorldWithSema(reason stwReason)"),
                "Go {v}"
            );
        } else {
            assert!(proc.contains("func stopTheWorldWithSema() {"), "Go {v}");
        }
        assert!(proc.contains("func gopark(unlockf func(*g, unsafe.Pointer) bool, lock unsafe.Pointer, reason waitReason,"), "Go {v}");
        assert!(proc.contains("func ready(gp *g,"), "Go {v}");
        let alloc_sig = if t.alloc_size_in_rcx {
            "func mProf_Malloc(mp *m, p unsafe.Pointer, size uintptr)"
        } else {
            "func mProf_Malloc(p unsafe.Pointer, size uintptr)"
        };
        assert!(mprof.contains(alloc_sig), "Go {v}: {alloc_sig}");
        assert!(
            proc.contains("int64 {") && proc.contains("func startTheWorldWithSema("),
            "Go {v}"
        );
    }
}

/// The quoted strings of a Go array literal, in order.
fn array_strings(src: &str, start: &str) -> Vec<String> {
    let from = src.find(start).expect("array in source");
    let body = &src[from..];
    let end = body.find("\n}").unwrap();
    body[..end]
        .lines()
        .skip(1)
        .filter_map(|l| {
            let a = l.find('"')?;
            let b = l[a + 1..].find('"')?;
            Some(l[a + 1..a + 1 + b].to_owned())
        })
        .collect()
}
