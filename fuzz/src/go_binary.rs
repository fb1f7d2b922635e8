//! Harness for lastmile-ebpf's Go binary readers: `.gopclntab` (function table), the
//! pcHeader search used for PIE builds, `.go.buildinfo`, whole ELF files, and the code
//! analysis that places probes (calls, RET sites, `sites`).

use std::path::Path;

/// `go_binary`: the input as a function table, as a section to search for one, as build
/// info and as an executable. Nothing may panic; a table that parses must be consistent.
pub fn parse(data: &[u8]) {
    if let Ok(funcs) = lastmile_ebpf::pclntab::functions(data, None) {
        check(&funcs);
    }
    if let Some(funcs) = lastmile_ebpf::pclntab::find_and_read(data, Some(0x40_1000)) {
        check(&funcs);
    }
    let _ = lastmile_ebpf::gobin::build_info_version(data);
    if let Ok(b) = lastmile_ebpf::gobin::GoBinary::parse(Path::new("fuzz"), data.to_vec()) {
        for f in b.functions().iter().take(64) {
            let _ = b.file_offset(f.start);
            let _ = b.ret_sites(&f.name);
            let _ = lastmile_ebpf::sites::entry(&b, &f.name);
            for (call, _) in b.calls(&f.name).unwrap_or_default() {
                let _ = lastmile_ebpf::sites::stack_result(&b, call);
            }
        }
    }
}

fn check(funcs: &[lastmile_ebpf::gobin::Function]) {
    let mut prev = 0;
    for f in funcs {
        assert!(f.start <= f.end, "{} ends before it starts", f.name);
        assert!(f.start >= prev, "entries out of order at {}", f.name);
        prev = f.start;
    }
}

/// A function table with two functions, in the documented Go 1.20+ layout.
pub fn seed_table() -> Vec<u8> {
    let mut p = vec![0u8; 72];
    p[0..4].copy_from_slice(&0xffff_fff1u32.to_le_bytes());
    p[6] = 1;
    p[7] = 8;
    p[8..16].copy_from_slice(&2u64.to_le_bytes());
    p[24..32].copy_from_slice(&0x40_1000u64.to_le_bytes());
    p[32..40].copy_from_slice(&72u64.to_le_bytes());
    p.extend_from_slice(b"runtime.gopark\0main.main\0");
    let pcln = p.len() as u64;
    p[64..72].copy_from_slice(&pcln.to_le_bytes());
    let f0 = 24u32;
    for (entry, off) in [(0u32, f0), (0x20, f0 + 8), (0x50, 0)] {
        p.extend_from_slice(&entry.to_le_bytes());
        p.extend_from_slice(&off.to_le_bytes());
    }
    for (entry, name_off) in [(0u32, 0u32), (0x20, 15)] {
        p.extend_from_slice(&entry.to_le_bytes());
        p.extend_from_slice(&name_off.to_le_bytes());
    }
    p
}

/// `.go.buildinfo` of a Go 1.22 binary.
pub fn seed_build_info() -> Vec<u8> {
    let mut sec = b"\xff Go buildinf:\x08\x02".to_vec();
    sec.resize(32, 0);
    sec.push(9);
    sec.extend_from_slice(b"go1.22.12");
    sec
}
