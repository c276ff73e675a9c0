//! Classic BPF encoding and a back-to-front assembler.
//!
//! Classic BPF only jumps forward, and conditional jumps carry 8-bit offsets (`jt`/`jf` <= 255). The assembler
//! therefore builds the program from its last instruction to its first: every jump target is already placed when
//! a jump is emitted, so its exact distance is known, and a target more than 255 instructions away is reached
//! through an unconditional `ja` trampoline (32-bit offset) placed right after the conditional jump. No
//! after-the-fact relocation pass exists that could get offsets wrong.

use std::collections::HashMap;

use libc::sock_filter;

pub(crate) const BPF_LD: u16 = 0x00;
pub(crate) const BPF_ALU: u16 = 0x04;
pub(crate) const BPF_JMP: u16 = 0x05;
pub(crate) const BPF_RET: u16 = 0x06;
pub(crate) const BPF_W: u16 = 0x00;
pub(crate) const BPF_ABS: u16 = 0x20;
pub(crate) const BPF_K: u16 = 0x00;
pub(crate) const BPF_AND: u16 = 0x50;
pub(crate) const BPF_JA: u16 = 0x00;
pub(crate) const BPF_JEQ: u16 = 0x10;
pub(crate) const BPF_JGT: u16 = 0x20;
pub(crate) const BPF_JGE: u16 = 0x30;

/// The kernel's per-filter limit (BPF_MAXINSNS).
pub(crate) const MAX_INSNS: usize = 4096;

/// Offsets in `struct seccomp_data`.
pub(crate) const OFF_NR: u32 = 0;
pub(crate) const OFF_ARCH: u32 = 4;
pub(crate) fn off_arg_low(index: usize) -> u32 {
    // Little-endian hosts only (x86_64, aarch64): the low half of args[i] comes first.
    16 + 8 * index as u32
}

/// Conditional jump ops.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Jmp {
    Eq,
    Gt,
    Ge,
}

impl Jmp {
    fn code(self) -> u16 {
        BPF_JMP
            | BPF_K
            | match self {
                Jmp::Eq => BPF_JEQ,
                Jmp::Gt => BPF_JGT,
                Jmp::Ge => BPF_JGE,
            }
    }
}

/// A position in the program, counted from its end (so it stays valid while instructions are prepended).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Label(usize);

/// Keeps room for the two trampolines a single conditional jump may need.
const MAX_SHORT: usize = 253;
/// A cached `ret` farther than this is re-emitted rather than reached through a trampoline.
const RET_REUSE: usize = 200;

#[derive(Default)]
pub(crate) struct Asm {
    /// The program in reverse: `rev[0]` is the last instruction.
    rev: Vec<sock_filter>,
    /// The most recent `ret <action>` for each action, shared by every jump close enough to reach it.
    rets: HashMap<u32, Label>,
}

impl Asm {
    pub(crate) fn len(&self) -> usize {
        self.rev.len()
    }

    /// Jump distance from an instruction prepended now to `target`.
    fn dist(&self, target: Label) -> usize {
        self.rev.len() - target.0 - 1
    }

    fn head(&self) -> Option<Label> {
        self.rev.len().checked_sub(1).map(Label)
    }

    fn push(&mut self, code: u16, jt: u8, jf: u8, k: u32) -> Label {
        self.rev.push(sock_filter { code, jt, jf, k });
        Label(self.rev.len() - 1)
    }

    /// An unconditional jump to `target`.
    fn ja(&mut self, target: Label) -> Label {
        let k = self.dist(target) as u32;
        self.push(BPF_JMP | BPF_JA, 0, 0, k)
    }

    /// `ret action`, shared with an earlier identical one when that is close enough.
    pub(crate) fn ret(&mut self, action: u32) -> Label {
        if let Some(&l) = self.rets.get(&action) {
            if self.dist(l) <= RET_REUSE {
                return l;
            }
        }
        let l = self.push(BPF_RET | BPF_K, 0, 0, action);
        self.rets.insert(action, l);
        l
    }

    /// A non-jump instruction that continues at `next` (through a `ja` when `next` is not adjacent).
    pub(crate) fn stmt(&mut self, code: u16, k: u32, next: Label) -> Label {
        if self.head() != Some(next) {
            self.ja(next);
        }
        self.push(code, 0, 0, k)
    }

    pub(crate) fn load(&mut self, offset: u32, next: Label) -> Label {
        self.stmt(BPF_LD | BPF_W | BPF_ABS, offset, next)
    }

    pub(crate) fn and(&mut self, mask: u32, next: Label) -> Label {
        self.stmt(BPF_ALU | BPF_AND | BPF_K, mask, next)
    }

    /// `if A <op> k goto jt else goto jf`.
    pub(crate) fn jump(&mut self, op: Jmp, k: u32, jt: Label, jf: Label) -> Label {
        if jt == jf {
            // The comparison cannot change the outcome.
            return jt;
        }
        let jf = if self.dist(jf) > MAX_SHORT {
            self.ja(jf)
        } else {
            jf
        };
        let jt = if self.dist(jt) > MAX_SHORT {
            self.ja(jt)
        } else {
            jt
        };
        let (t, f) = (self.dist(jt), self.dist(jf));
        debug_assert!(t <= 255 && f <= 255);
        self.push(op.code(), t as u8, f as u8, k)
    }

    /// The finished program, first instruction first. `entry` must be the last label emitted.
    pub(crate) fn finish(mut self, entry: Label) -> Vec<sock_filter> {
        if self.head() != Some(entry) {
            self.ja(entry);
        }
        self.rev.reverse();
        self.rev
    }
}

/// Cheap structural check of a program read back from the cache (the kernel verifies it again on install):
/// every jump lands inside the program and the last instruction returns.
pub(crate) fn well_formed(prog: &[sock_filter]) -> bool {
    let n = prog.len();
    if n == 0 || n > MAX_INSNS || prog[n - 1].code != BPF_RET | BPF_K {
        return false;
    }
    prog.iter().enumerate().all(|(pc, i)| {
        if i.code & 0x07 != BPF_JMP {
            return true;
        }
        if i.code == BPF_JMP | BPF_JA {
            (pc as u64) + u64::from(i.k) + 1 < n as u64
        } else {
            pc + usize::from(i.jt.max(i.jf)) + 1 < n
        }
    })
}
