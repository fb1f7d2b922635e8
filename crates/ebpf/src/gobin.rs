//! What a Go executable says about itself: its Go version (build info), its function table
//! (`.symtab`, or `.gopclntab` when stripped) and where its functions return.
//!
//! Everything a uprobe needs is a *file offset*, so virtual addresses are translated through
//! the PT_LOAD segments; that works the same for fixed-address and PIE executables.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use object::{Object, ObjectSection, ObjectSegment, ObjectSymbol, SymbolKind};

use crate::pclntab;

#[derive(Debug, thiserror::Error)]
pub enum BinaryError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not an ELF executable: {reason}")]
    NotElf { path: PathBuf, reason: String },
    #[error("{path} is not an x86-64 executable (lastmile reads the amd64 Go register ABI)")]
    NotAmd64 { path: PathBuf },
    #[error("{path} has no Go build info (.go.buildinfo): is it a Go program?")]
    NoBuildInfo { path: PathBuf },
    #[error("{path}: unreadable Go build info: {reason}")]
    BadBuildInfo { path: PathBuf, reason: String },
    #[error("{path} has neither Go symbols in .symtab nor a .gopclntab section")]
    NoFunctionTable { path: PathBuf },
    #[error("{path}: {source}")]
    Pclntab {
        path: PathBuf,
        source: pclntab::PclntabError,
    },
    #[error("{path}: function {name} not found (inlined or renamed in this Go version?)")]
    MissingFunction { path: PathBuf, name: String },
    #[error("{path}: address {addr:#x} is not in any loadable segment")]
    AddressNotMapped { path: PathBuf, addr: u64 },
    #[error("{path}: function {name} has no RET instruction to probe")]
    NoReturn { path: PathBuf, name: String },
}

/// A Go release as recorded in build info, e.g. `go1.22.6` → 1.22.6.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GoVersion {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
    /// As written in the binary, e.g. `go1.22.6` or `go1.21rc2`.
    pub raw: String,
}

impl GoVersion {
    pub fn parse(raw: &str) -> Option<GoVersion> {
        let v = raw.strip_prefix("go")?;
        // Cut experiment and prerelease suffixes: "1.21rc2", "1.22.1 X:boringcrypto".
        let v = v.split([' ', '-', '+']).next()?;
        let mut parts = v.split('.');
        let major = parts.next()?.parse().ok()?;
        let minor_text = parts.next()?;
        let digits = minor_text
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(minor_text.len());
        let minor = minor_text[..digits].parse().ok()?;
        let patch = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
        Some(GoVersion {
            major,
            minor,
            patch,
            raw: raw.to_owned(),
        })
    }
}

impl std::fmt::Display for GoVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.raw)
    }
}

/// Where the function table came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SymbolSource {
    Symtab,
    Gopclntab,
}

impl SymbolSource {
    pub fn as_str(self) -> &'static str {
        match self {
            SymbolSource::Symtab => "symtab",
            SymbolSource::Gopclntab => "gopclntab",
        }
    }
}

/// One function: `[start, end)` in link-time virtual addresses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Function {
    pub name: String,
    pub start: u64,
    pub end: u64,
}

#[derive(Clone, Copy, Debug)]
struct Segment {
    vaddr: u64,
    file_offset: u64,
    file_size: u64,
}

/// A parsed Go executable.
pub struct GoBinary {
    path: PathBuf,
    data: Vec<u8>,
    version: GoVersion,
    source: SymbolSource,
    /// Sorted by start address.
    functions: Vec<Function>,
    by_name: HashMap<String, usize>,
    segments: Vec<Segment>,
    pie: bool,
}

impl std::fmt::Debug for GoBinary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GoBinary")
            .field("path", &self.path)
            .field("version", &self.version.raw)
            .field("source", &self.source)
            .field("functions", &self.functions.len())
            .field("pie", &self.pie)
            .finish()
    }
}

impl GoBinary {
    pub fn open(path: &Path) -> Result<GoBinary, BinaryError> {
        let data = std::fs::read(path).map_err(|source| BinaryError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(path, data)
    }

    /// Parses an executable already in memory (`path` is only used in messages).
    pub fn parse(path: &Path, data: Vec<u8>) -> Result<GoBinary, BinaryError> {
        let p = || path.to_owned();
        let file = object::File::parse(&*data).map_err(|e| BinaryError::NotElf {
            path: p(),
            reason: e.to_string(),
        })?;
        if file.format() != object::BinaryFormat::Elf {
            return Err(BinaryError::NotElf {
                path: p(),
                reason: format!("{:?} format", file.format()),
            });
        }
        if file.architecture() != object::Architecture::X86_64 {
            return Err(BinaryError::NotAmd64 { path: p() });
        }
        let pie = file.kind() == object::ObjectKind::Dynamic;
        let buildinfo = file
            .section_by_name(".go.buildinfo")
            .and_then(|s| s.data().ok())
            .ok_or_else(|| BinaryError::NoBuildInfo { path: p() })?;
        let raw_version =
            build_info_version(buildinfo).map_err(|reason| BinaryError::BadBuildInfo {
                path: p(),
                reason: reason.to_owned(),
            })?;
        let version = GoVersion::parse(&raw_version).ok_or_else(|| BinaryError::BadBuildInfo {
            path: p(),
            reason: format!("unrecognised Go version {raw_version:?}"),
        })?;

        let segments: Vec<Segment> = file
            .segments()
            .map(|s| {
                let (file_offset, file_size) = s.file_range();
                Segment {
                    vaddr: s.address(),
                    file_offset,
                    file_size,
                }
            })
            .collect();

        let (source, mut functions) = match symtab_functions(&file) {
            Some(f) => (SymbolSource::Symtab, f),
            None => {
                let text = file.section_by_name(".text").map(|s| s.address());
                let f = match file
                    .section_by_name(".gopclntab")
                    .and_then(|s| s.data().ok())
                {
                    Some(sec) => pclntab::functions(sec, text)
                        .map_err(|source| BinaryError::Pclntab { path: p(), source })?,
                    // PIE builds keep the table inside .data.rel.ro, without a section
                    // of its own: find its header there.
                    None => file
                        .sections()
                        .filter_map(|s| s.data().ok())
                        .find_map(|d| pclntab::find_and_read(d, text))
                        .ok_or_else(|| BinaryError::NoFunctionTable { path: p() })?,
                };
                (SymbolSource::Gopclntab, f)
            }
        };
        functions.sort_by_key(|f| f.start);
        let by_name = functions
            .iter()
            .enumerate()
            .map(|(i, f)| (f.name.clone(), i))
            .collect();
        drop(file);
        Ok(GoBinary {
            path: path.to_owned(),
            data,
            version,
            source,
            functions,
            by_name,
            segments,
            pie,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn version(&self) -> &GoVersion {
        &self.version
    }

    pub fn symbol_source(&self) -> SymbolSource {
        self.source
    }

    /// Position-independent executable (ET_DYN): runtime addresses = link addresses + a
    /// load bias.
    pub fn is_pie(&self) -> bool {
        self.pie
    }

    pub fn functions(&self) -> &[Function] {
        &self.functions
    }

    pub fn function(&self, name: &str) -> Result<&Function, BinaryError> {
        self.by_name
            .get(name)
            .map(|&i| &self.functions[i])
            .ok_or_else(|| BinaryError::MissingFunction {
                path: self.path.clone(),
                name: name.to_owned(),
            })
    }

    /// The function containing a link-time address.
    pub fn function_at(&self, addr: u64) -> Option<&Function> {
        let i = self.functions.partition_point(|f| f.start <= addr);
        let f = self.functions.get(i.checked_sub(1)?)?;
        (addr < f.end).then_some(f)
    }

    /// Link-time virtual address → offset in the file (what uprobes attach to).
    pub fn file_offset(&self, addr: u64) -> Result<u64, BinaryError> {
        self.segments
            .iter()
            .find(|s| addr >= s.vaddr && addr - s.vaddr < s.file_size)
            .map(|s| addr - s.vaddr + s.file_offset)
            .ok_or(BinaryError::AddressNotMapped {
                path: self.path.clone(),
                addr,
            })
    }

    /// File offset → link-time virtual address (to symbolize a runtime address from its
    /// mapping in /proc/PID/maps).
    pub fn vaddr_of_file_offset(&self, offset: u64) -> Option<u64> {
        self.segments
            .iter()
            .find(|s| offset >= s.file_offset && offset - s.file_offset < s.file_size)
            .map(|s| offset - s.file_offset + s.vaddr)
    }

    /// The machine code of a function.
    pub fn code(&self, f: &Function) -> Result<&[u8], BinaryError> {
        let off = self.file_offset(f.start)? as usize;
        let len = (f.end - f.start) as usize;
        self.data
            .get(off..off.saturating_add(len))
            .ok_or(BinaryError::AddressNotMapped {
                path: self.path.clone(),
                addr: f.end,
            })
    }

    /// Direct calls in a function: (address of the CALL, name of the callee).
    pub fn calls(&self, name: &str) -> Result<Vec<(u64, String)>, BinaryError> {
        use iced_x86::{Decoder, DecoderOptions, Mnemonic};
        let f = self.function(name)?;
        let code = self.code(f)?;
        let mut decoder = Decoder::with_ip(64, code, f.start, DecoderOptions::NONE);
        let mut out = Vec::new();
        for ins in &mut decoder {
            if ins.is_invalid() || ins.mnemonic() != Mnemonic::Call {
                continue;
            }
            let target = ins.near_branch_target();
            if target == 0 {
                continue;
            }
            let callee = self
                .function_at(target)
                .map(|c| c.name.clone())
                .unwrap_or_default();
            out.push((ins.ip(), callee));
        }
        Ok(out)
    }

    /// Addresses of every RET instruction in a function: where an entry probe stands in
    /// for a return probe (lastmile's own probes time pauses at Go's clock reads instead,
    /// which the kernel can probe without single-stepping).
    pub fn ret_sites(&self, name: &str) -> Result<Vec<u64>, BinaryError> {
        use iced_x86::{Decoder, DecoderOptions, Mnemonic};
        let f = self.function(name)?;
        let code = self.code(f)?;
        let mut decoder = Decoder::with_ip(64, code, f.start, DecoderOptions::NONE);
        let mut rets = Vec::new();
        for ins in &mut decoder {
            if ins.is_invalid() {
                continue;
            }
            if ins.mnemonic() == Mnemonic::Ret {
                rets.push(ins.ip());
            }
        }
        if rets.is_empty() {
            return Err(BinaryError::NoReturn {
                path: self.path.clone(),
                name: name.to_owned(),
            });
        }
        Ok(rets)
    }
}

/// Go functions from `.symtab`, or None when the table lacks the Go runtime (stripped, or
/// only a few dynamic symbols left).
fn symtab_functions(file: &object::File<'_>) -> Option<Vec<Function>> {
    let mut out = Vec::new();
    let mut has_runtime = false;
    for sym in file.symbols() {
        if sym.kind() != SymbolKind::Text || sym.size() == 0 {
            continue;
        }
        let Ok(name) = sym.name() else { continue };
        if name == "runtime.gopark" {
            has_runtime = true;
        }
        out.push(Function {
            name: name.to_owned(),
            start: sym.address(),
            end: sym.address() + sym.size(),
        });
    }
    has_runtime.then_some(out)
}

/// The Go version string from `.go.buildinfo` (Go 1.18+ layout: 16-byte header with the
/// "inline strings" flag, then varint-prefixed version and module info at offset 32).
pub fn build_info_version(sec: &[u8]) -> Result<String, &'static str> {
    const MAGIC: &[u8] = b"\xff Go buildinf:";
    if sec.len() < 32 || &sec[..MAGIC.len()] != MAGIC {
        return Err("missing the build info magic");
    }
    let flags = sec[15];
    if flags & 0x2 == 0 {
        return Err("build info from before Go 1.18 (pointer format) is not supported");
    }
    let (len, n) = uvarint(&sec[32..]).ok_or("truncated version length")?;
    let start = 32 + n;
    let end = start
        .checked_add(usize::try_from(len).map_err(|_| "version length overflows")?)
        .ok_or("version length overflows")?;
    let bytes = sec.get(start..end).ok_or("truncated version string")?;
    std::str::from_utf8(bytes)
        .map(str::to_owned)
        .map_err(|_| "version string is not UTF-8")
}

fn uvarint(b: &[u8]) -> Option<(u64, usize)> {
    let mut x = 0u64;
    for (i, &byte) in b.iter().enumerate().take(10) {
        x |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((x, i + 1));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse() {
        let v = GoVersion::parse("go1.22.6").unwrap();
        assert_eq!((v.major, v.minor, v.patch), (1, 22, 6));
        let v = GoVersion::parse("go1.21rc2").unwrap();
        assert_eq!((v.major, v.minor, v.patch), (1, 21, 0));
        let v = GoVersion::parse("go1.23.1 X:boringcrypto").unwrap();
        assert_eq!(v.minor, 23);
        assert!(GoVersion::parse("devel +abc").is_none());
        assert!(GoVersion::parse("go").is_none());
    }

    #[test]
    fn build_info_is_checked() {
        let mut sec = b"\xff Go buildinf:\x08\x02".to_vec();
        sec.resize(32, 0);
        sec.push(8);
        sec.extend_from_slice(b"go1.19.8");
        assert_eq!(build_info_version(&sec).unwrap(), "go1.19.8");
        // Truncated string, missing flag, wrong magic.
        assert!(build_info_version(&sec[..36]).is_err());
        let mut old = sec.clone();
        old[15] = 0;
        assert!(build_info_version(&old).is_err());
        assert!(build_info_version(b"nothing here at all, not a header").is_err());
        let mut huge = sec[..32].to_vec();
        huge.extend_from_slice(&[0xff; 10]);
        assert!(build_info_version(&huge).is_err());
    }

    #[test]
    fn not_elf_is_an_error() {
        let e = GoBinary::parse(Path::new("x"), b"#!/bin/sh\n".to_vec()).unwrap_err();
        assert!(matches!(e, BinaryError::NotElf { .. }), "{e}");
    }
}
