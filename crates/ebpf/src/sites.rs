//! Where a uprobe goes inside a Go function, decided by decoding its machine code.
//!
//! An x86 uprobe on most instructions traps twice: the breakpoint, then a single-step of
//! the displaced instruction, and inside a VM the single-step exits to the hypervisor —
//! ~10 µs a hit on these machines. The kernel emulates a few instructions instead (a
//! direct CALL, JMP or Jcc, a NOP, a PUSH of a register) for ~1.3 µs a hit. Every probe
//! lastmile attaches sits on one of those when the code allows it; otherwise on the exact
//! instruction, at the higher price.

use iced_x86::{
    Decoder, DecoderOptions, FlowControl, Instruction, InstructionInfoFactory, Mnemonic, OpAccess,
    OpKind, Register,
};

use crate::gobin::{BinaryError, GoBinary};

/// How many instructions past a call the search for a cheap site may look.
const SEARCH_WINDOW: usize = 32;

/// Whether the kernel emulates a uprobe on this instruction rather than single-stepping
/// it (arch/x86/kernel/uprobes.c: relative CALL/JMP/Jcc, NOPs, PUSH of a register).
pub fn kernel_emulates(ins: &Instruction) -> bool {
    let direct = ins.op0_kind() == OpKind::NearBranch64;
    match ins.mnemonic() {
        Mnemonic::Call | Mnemonic::Jmp => direct,
        Mnemonic::Nop => true,
        Mnemonic::Push => ins.op0_kind() == OpKind::Register,
        _ => ins.is_jcc_short_or_near() && direct,
    }
}

/// Where to put a function's entry probe: the first prologue instruction the kernel
/// emulates, with the entry's arguments, stack pointer and return address untouched.
///
/// Go 1.21+ prologues are `CMPQ SP, 16(R14); JBE morestack; PUSHQ BP`: the push is
/// reached exactly once per call. Go 1.19 has no push there, so the stack check's JBE is
/// used; a call that grows its stack passes it twice. Only `CMP` and `LEA` into R12 (the
/// large-frame check) may come first; any other prologue gets the function's first byte.
pub fn entry(b: &GoBinary, name: &str) -> Result<u64, BinaryError> {
    let f = b.function(name)?;
    let code = b.code(f)?;
    let mut decoder = Decoder::with_ip(64, code, f.start, DecoderOptions::NONE);
    let mut jbe = None;
    for ins in decoder.iter().take(4) {
        match ins.mnemonic() {
            Mnemonic::Push if ins.op0_register() == Register::RBP => return Ok(ins.ip()),
            Mnemonic::Cmp if jbe.is_none() => {}
            Mnemonic::Lea if jbe.is_none() && ins.op0_register() == Register::R12 => {}
            Mnemonic::Jbe if jbe.is_none() => jbe = Some(ins.ip()),
            _ => break,
        }
    }
    Ok(jbe.unwrap_or(f.start))
}

/// A probe site where a value sits in the probed thread's stack: at RSP + `rsp_offset`
/// (below 64 KiB: it travels in 16 bits of a BPF cookie) when the probe fires.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StackValue {
    pub at: u64,
    pub rsp_offset: u32,
}

/// After a call to an ABI0 function that leaves its result at 0(SP) (`runtime.nanotime1`
/// does), the first instruction the kernel emulates at which that result is still in a
/// known stack slot.
///
/// The result is followed through register and stack copies; what an instruction writes
/// removes its copies (iced's instruction info gives the writes, including implicit
/// ones). The search ends at the first branch, at a write to RSP, and at a store through
/// a register that points into the frame (a LEA or MOV of RSP); stores through other
/// registers are taken to hit the heap, as Go's runtime code does between these calls.
/// Without a cheap site: the instruction right after the call, result at 0(SP).
pub fn stack_result(b: &GoBinary, call_at: u64) -> Result<StackValue, BinaryError> {
    let f = b
        .function_at(call_at)
        .ok_or_else(|| BinaryError::AddressNotMapped {
            path: b.path().to_owned(),
            addr: call_at,
        })?;
    let code = b.code(f)?;
    let skip = (call_at - f.start) as usize;
    let mut decoder = Decoder::with_ip(64, &code[skip..], call_at, DecoderOptions::NONE);
    let call = decoder.decode();
    let fallback = StackValue {
        at: call.next_ip(),
        rsp_offset: 0,
    };
    let mut copies = Copies {
        slots: vec![0],
        regs: Vec::new(),
        frame_pointers: Vec::new(),
    };
    let mut info = InstructionInfoFactory::new();
    for ins in decoder.iter().take(SEARCH_WINDOW) {
        let readable = copies
            .slots
            .iter()
            .filter(|d| (0..=0xffff).contains(*d))
            .min();
        if kernel_emulates(&ins)
            && let Some(&off) = readable
        {
            return Ok(StackValue {
                at: ins.ip(),
                rsp_offset: off as u32,
            });
        }
        if ins.flow_control() != FlowControl::Next || !copies.apply(&ins, &mut info) {
            break;
        }
        if copies.slots.is_empty() && copies.regs.is_empty() {
            break;
        }
    }
    Ok(fallback)
}

/// Where copies of one 8-byte value are, between two instructions.
struct Copies {
    /// RSP offsets of stack slots holding it.
    slots: Vec<i64>,
    /// 64-bit registers holding it.
    regs: Vec<Register>,
    /// Registers holding an address inside the frame.
    frame_pointers: Vec<Register>,
}

fn writes(access: OpAccess) -> bool {
    matches!(
        access,
        OpAccess::Write | OpAccess::CondWrite | OpAccess::ReadWrite | OpAccess::ReadCondWrite
    )
}

impl Copies {
    /// Updates the copies past `ins`; false when it cannot be followed.
    fn apply(&mut self, ins: &Instruction, info: &mut InstructionInfoFactory) -> bool {
        let copied = ins.mnemonic() == Mnemonic::Mov
            && match ins.op1_kind() {
                OpKind::Register => self.regs.contains(&ins.op1_register()),
                OpKind::Memory => rsp_slot(ins).is_some_and(|d| self.slots.contains(&d)),
                _ => false,
            };
        let points_into_frame = matches!(ins.mnemonic(), Mnemonic::Lea | Mnemonic::Mov)
            && ins.op0_kind() == OpKind::Register
            && (ins.memory_base() == Register::RSP && ins.mnemonic() == Mnemonic::Lea
                || ins.op1_kind() == OpKind::Register && ins.op1_register() == Register::RSP);
        let used = info.info(ins);
        for r in used.used_registers() {
            if !writes(r.access()) {
                continue;
            }
            let full = r.register().full_register();
            if full == Register::RSP {
                return false;
            }
            self.regs.retain(|&x| x != full);
            self.frame_pointers.retain(|&x| x != full);
        }
        for m in used.used_memory() {
            if !writes(m.access()) {
                continue;
            }
            if m.base() == Register::RSP && m.index() == Register::None {
                let at = m.displacement() as i64;
                let len = match m.memory_size().size() {
                    0 => 64,
                    n => n as i64,
                };
                self.slots.retain(|&d| d + 8 <= at || d >= at + len);
            } else if self.frame_pointers.contains(&m.base().full_register())
                || self.frame_pointers.contains(&m.index().full_register())
            {
                return false;
            }
        }
        // A whole 8-byte copy: register to register, or a 64-bit load or store.
        let whole = ins.op1_kind() == OpKind::Register || ins.memory_size().size() == 8;
        if copied && whole {
            match ins.op0_kind() {
                OpKind::Register => self.regs.push(ins.op0_register().full_register()),
                OpKind::Memory => {
                    if let Some(d) = rsp_slot(ins) {
                        self.slots.push(d);
                    }
                }
                _ => {}
            }
        }
        if points_into_frame {
            self.frame_pointers.push(ins.op0_register().full_register());
        }
        true
    }
}

/// `disp(SP)` of an instruction's memory operand.
fn rsp_slot(ins: &Instruction) -> Option<i64> {
    (ins.memory_base() == Register::RSP && ins.memory_index() == Register::None)
        .then(|| ins.memory_displacement64() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(bytes: &[u8]) -> Instruction {
        Decoder::with_ip(64, bytes, 0x1000, DecoderOptions::NONE).decode()
    }

    #[test]
    fn emulated_instructions() {
        assert!(kernel_emulates(&decode(&[0x55]))); // push rbp
        assert!(kernel_emulates(&decode(&[0x0f, 0x86, 0, 1, 0, 0]))); // jbe rel32
        assert!(kernel_emulates(&decode(&[0x74, 0x05]))); // je rel8
        assert!(kernel_emulates(&decode(&[0xe8, 0, 0, 0, 0]))); // call rel32
        assert!(kernel_emulates(&decode(&[0x0f, 0x1f, 0x44, 0, 0]))); // nopl
        assert!(!kernel_emulates(&decode(&[0xff, 0xd0]))); // call rax
        assert!(!kernel_emulates(&decode(&[0xc3]))); // ret
        assert!(!kernel_emulates(&decode(&[0x48, 0x8b, 0x04, 0x24]))); // mov rax, [rsp]
        assert!(!kernel_emulates(&decode(&[0x5d]))); // pop rbp
    }
}
