//! The function table of `.gopclntab`, which Go keeps in stripped binaries (the runtime
//! needs it for stack traces). No maintained crate reads it, and only the function table
//! is needed here: names and entry addresses.
//!
//! Layout for Go 1.18 and later (runtime/symtab.go `pcHeader`, 64-bit little endian):
//!
//! ```text
//!  0 magic u32 (0xfffffff0: 1.18-1.19, 0xfffffff1: 1.20+)  4 pad u16  6 minLC u8  7 ptrSize u8
//!  8 nfunc  16 nfiles  24 textStart  32 funcnameOffset  40 cuOffset  48 filetabOffset
//! 56 pctabOffset  64 pclnOffset                                  (all 8-byte words)
//! ```
//!
//! At `pclnOffset`: `nfunc + 1` pairs `(entryOff u32, funcOff u32)`, entry offsets
//! relative to `textStart` (the last pair's entry is the end of the last function). At
//! `pclnOffset + funcOff` a `_func` starts with `entryOff u32, nameOff i32`; the name is a
//! NUL-terminated string at `funcnameOffset + nameOff`.
//!
//! In cgo (externally linked) binaries the Go text does not start at `.text`, so
//! `textStart` from the header is used, never the section address; only if the header says
//! 0 (left for a dynamic relocation in some PIE builds) is `.text` the fallback.

use crate::gobin::Function;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PclntabError {
    #[error(".gopclntab is truncated ({0})")]
    Truncated(&'static str),
    #[error(
        ".gopclntab magic {0:#x} is from a Go release before 1.18, which lastmile does not read"
    )]
    OldMagic(u32),
    #[error(".gopclntab has an unknown magic {0:#x}")]
    UnknownMagic(u32),
    #[error(".gopclntab is for {0}-byte pointers; only 64-bit binaries are supported")]
    PointerSize(u8),
    #[error(".gopclntab declares {0} functions, more than fit in the section")]
    TooManyFunctions(u64),
    #[error(".gopclntab function {0}: entries are not in increasing order")]
    Unordered(usize),
    #[error(".gopclntab text start {0:#x} puts functions past the end of the address space")]
    TextStart(u64),
}

const MAGIC_118: u32 = 0xffff_fff0;
const MAGIC_120: u32 = 0xffff_fff1;

fn u32_at(p: &[u8], off: usize) -> Result<u32, PclntabError> {
    p.get(off..off.wrapping_add(4))
        .and_then(|b| b.try_into().ok())
        .map(u32::from_le_bytes)
        .ok_or(PclntabError::Truncated("u32 field"))
}

fn u64_at(p: &[u8], off: usize) -> Result<u64, PclntabError> {
    p.get(off..off.wrapping_add(8))
        .and_then(|b| b.try_into().ok())
        .map(u64::from_le_bytes)
        .ok_or(PclntabError::Truncated("header word"))
}

fn usize_at(p: &[u8], off: usize) -> Result<usize, PclntabError> {
    usize::try_from(u64_at(p, off)?).map_err(|_| PclntabError::Truncated("offset beyond memory"))
}

/// Every function in the table. `text_section` is the `.text` address, used only when
/// the header's textStart is 0.
pub fn functions(p: &[u8], text_section: Option<u64>) -> Result<Vec<Function>, PclntabError> {
    let magic = u32_at(p, 0)?;
    match magic {
        MAGIC_118 | MAGIC_120 => {}
        0xffff_fffa | 0xffff_fffb => return Err(PclntabError::OldMagic(magic)),
        other => return Err(PclntabError::UnknownMagic(other)),
    }
    let ptr_size = *p.get(7).ok_or(PclntabError::Truncated("header"))?;
    if ptr_size != 8 {
        return Err(PclntabError::PointerSize(ptr_size));
    }
    let nfunc = u64_at(p, 8)?;
    let mut text_start = u64_at(p, 24)?;
    if text_start == 0 {
        text_start = text_section.unwrap_or(0);
    }
    let funcname = usize_at(p, 32)?;
    let pcln = usize_at(p, 64)?;
    let table_len = nfunc
        .checked_add(1)
        .and_then(|n| n.checked_mul(8))
        .ok_or(PclntabError::TooManyFunctions(nfunc))?;
    if (pcln as u64).saturating_add(table_len) > p.len() as u64 {
        return Err(PclntabError::TooManyFunctions(nfunc));
    }
    let nfunc = nfunc as usize;
    let names = p
        .get(funcname..)
        .ok_or(PclntabError::Truncated("function name table"))?;
    let mut out = Vec::with_capacity(nfunc);
    let mut prev_entry = 0u32;
    for i in 0..nfunc {
        let ft = pcln + i * 8;
        let entry = u32_at(p, ft)?;
        let func_off = u32_at(p, ft + 4)? as usize;
        let next_entry = u32_at(p, ft + 8)?;
        if entry < prev_entry || next_entry < entry {
            return Err(PclntabError::Unordered(i));
        }
        prev_entry = entry;
        let name_off = u32_at(p, pcln.saturating_add(func_off).saturating_add(4))? as usize;
        let name_bytes = names
            .get(name_off..)
            .ok_or(PclntabError::Truncated("function name"))?;
        let len = name_bytes
            .iter()
            .position(|&b| b == 0)
            .ok_or(PclntabError::Truncated("unterminated function name"))?;
        let name = String::from_utf8_lossy(&name_bytes[..len]).into_owned();
        let end = text_start
            .checked_add(u64::from(next_entry))
            .ok_or(PclntabError::TextStart(text_start))?;
        out.push(Function {
            name,
            start: text_start + u64::from(entry),
            end,
        });
    }
    Ok(out)
}

/// Looks for a pcHeader inside `data` (a section holding the table among other data)
/// and reads the first one that parses into a table with the Go runtime in it.
pub fn find_and_read(data: &[u8], text_section: Option<u64>) -> Option<Vec<Function>> {
    // magic, two zero pad bytes, minLC 1 (amd64), ptrSize 8; the header is 8-aligned.
    let patterns = [
        [0xf1, 0xff, 0xff, 0xff, 0, 0, 1, 8],
        [0xf0, 0xff, 0xff, 0xff, 0, 0, 1, 8],
    ];
    let mut off = 0;
    while off + 8 <= data.len() {
        let w = &data[off..off + 8];
        if patterns.iter().any(|p| p == w)
            && let Ok(f) = functions(&data[off..], text_section)
            && f.iter().any(|f| f.name == "runtime.gopark")
        {
            return Some(f);
        }
        off += 8;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A table with two functions, built by hand in the documented layout.
    fn sample() -> Vec<u8> {
        let mut p = vec![0u8; 72];
        p[0..4].copy_from_slice(&MAGIC_120.to_le_bytes());
        p[7] = 8;
        p[8..16].copy_from_slice(&2u64.to_le_bytes()); // nfunc
        p[24..32].copy_from_slice(&0x40_1000u64.to_le_bytes()); // textStart
        let funcname = 72u64;
        let names = b"main.a\0main.b\0";
        p[32..40].copy_from_slice(&funcname.to_le_bytes());
        p.extend_from_slice(names);
        let pcln = p.len() as u64;
        p[64..72].copy_from_slice(&pcln.to_le_bytes());
        // functab: (0, f0) (0x20, f1) (0x50, -)
        let functab_len = 3 * 8;
        let f0 = functab_len as u32;
        let f1 = f0 + 8;
        for (entry, off) in [(0u32, f0), (0x20, f1), (0x50, 0)] {
            p.extend_from_slice(&entry.to_le_bytes());
            p.extend_from_slice(&off.to_le_bytes());
        }
        for (entry, name_off) in [(0u32, 0u32), (0x20, 7)] {
            p.extend_from_slice(&entry.to_le_bytes());
            p.extend_from_slice(&name_off.to_le_bytes());
        }
        p
    }

    #[test]
    fn reads_a_hand_built_table() {
        let f = functions(&sample(), None).unwrap();
        assert_eq!(f.len(), 2);
        assert_eq!(f[0].name, "main.a");
        assert_eq!((f[0].start, f[0].end), (0x40_1000, 0x40_1020));
        assert_eq!(f[1].name, "main.b");
        assert_eq!((f[1].start, f[1].end), (0x40_1020, 0x40_1050));
    }

    #[test]
    fn every_truncation_is_an_error_not_a_panic() {
        let p = sample();
        for len in 0..p.len() {
            assert!(functions(&p[..len], None).is_err(), "len {len}");
        }
    }

    #[test]
    fn bad_headers() {
        let mut p = sample();
        p[0..4].copy_from_slice(&0xffff_fffbu32.to_le_bytes());
        assert_eq!(
            functions(&p, None),
            Err(PclntabError::OldMagic(0xffff_fffb))
        );
        let mut p = sample();
        p[7] = 4;
        assert_eq!(functions(&p, None), Err(PclntabError::PointerSize(4)));
        let mut p = sample();
        p[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(matches!(
            functions(&p, None),
            Err(PclntabError::TooManyFunctions(_))
        ));
    }
}
