//! A classic-BPF interpreter for the subset the compiler emits, run on synthetic `seccomp_data`. It checks what
//! the kernel's verifier would reject (out-of-range jumps, falling off the end, unknown opcodes) by panicking.

use libc::sock_filter;

use crate::bpf::*;

#[derive(Clone, Copy, Debug)]
pub(crate) struct Data {
    pub(crate) nr: u32,
    pub(crate) arch: u32,
    pub(crate) args: [u64; 6],
}

impl Data {
    fn bytes(&self) -> [u8; 64] {
        let mut b = [0u8; 64];
        b[0..4].copy_from_slice(&self.nr.to_le_bytes());
        b[4..8].copy_from_slice(&self.arch.to_le_bytes());
        b[8..16].copy_from_slice(&0x7f00_dead_beefu64.to_le_bytes());
        for (i, a) in self.args.iter().enumerate() {
            b[16 + 8 * i..24 + 8 * i].copy_from_slice(&a.to_le_bytes());
        }
        b
    }
}

/// Runs `prog`; returns the `SECCOMP_RET_*` value and the number of instructions executed.
pub(crate) fn run_counted(prog: &[sock_filter], d: &Data) -> (u32, usize) {
    assert!(
        !prog.is_empty() && prog.len() <= MAX_INSNS,
        "program length {}",
        prog.len()
    );
    let mem = d.bytes();
    let mut a: u32 = 0;
    let mut pc = 0usize;
    let mut steps = 0;
    loop {
        let i = prog
            .get(pc)
            .unwrap_or_else(|| panic!("pc {pc} ran off the end ({} insns)", prog.len()));
        steps += 1;
        let k = i.k;
        match i.code {
            c if c == BPF_LD | BPF_W | BPF_ABS => {
                let k = k as usize;
                assert!(
                    k.is_multiple_of(4) && k + 4 <= mem.len(),
                    "bad load offset {k}"
                );
                a = u32::from_le_bytes([mem[k], mem[k + 1], mem[k + 2], mem[k + 3]]);
                pc += 1;
            }
            c if c == BPF_ALU | BPF_AND | BPF_K => {
                a &= k;
                pc += 1;
            }
            c if c == BPF_RET | BPF_K => return (k, steps),
            c if c == BPF_JMP | BPF_JA => {
                pc += 1 + k as usize;
            }
            c if c & 0x07 == BPF_JMP => {
                let taken = match c & 0xf0 {
                    x if x == BPF_JEQ => a == k,
                    x if x == BPF_JGT => a > k,
                    x if x == BPF_JGE => a >= k,
                    0x40 => a & k != 0,
                    _ => panic!("unknown jump {c:#x} at {pc}"),
                };
                pc += 1 + usize::from(if taken { i.jt } else { i.jf });
            }
            c => panic!("unknown opcode {c:#x} at {pc}"),
        }
        assert!(pc < prog.len(), "jump past the end at step {steps}");
    }
}

pub(crate) fn run(prog: &[sock_filter], d: &Data) -> u32 {
    run_counted(prog, d).0
}
