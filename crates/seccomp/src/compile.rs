//! Profile validation and code generation.
//!
//! Program layout (shown for an x86_64 host with x86_64, x32 and x86 listed):
//!
//! ```text
//!     ld  arch
//!     jeq AUDIT_ARCH_X86_64 -> x86_64      ; one check per ABI family in the profile
//!     jeq AUDIT_ARCH_I386   -> i386
//!     ret <bad arch>                       ; SECCOMP_RET_KILL_PROCESS
//! x86_64:
//!     ld  nr
//!     jge 0x40000000 -> x32 tree | bad arch
//!     <decision tree over x86_64 numbers>
//! x32: <decision tree over x32 numbers>
//! i386: ld nr; <decision tree over i386 numbers>
//! ```
//!
//! A decision tree is a binary search (`jge`) over the syscall-number line cut into maximal intervals of equal
//! outcome, so a lookup costs about log2(intervals) jumps instead of a walk over ~350 `jeq`s, and a run of
//! consecutive allowed syscalls costs one interval. A leaf is either a `ret` (shared between nearby leaves) or the
//! rule block of one syscall whose rules test arguments: its rules are tried in profile order and the first whose
//! conditions all hold decides; when none does, the default action applies.

use std::collections::BTreeMap;

use libc::sock_filter;
use oci_spec::runtime::{LinuxSeccomp, LinuxSeccompAction as Action, LinuxSeccompOperator as Op};

use crate::arch::{self, Abi, X32_SYSCALL_BIT};
use crate::bpf::{self, Asm, Jmp, Label, MAX_INSNS, OFF_ARCH, OFF_NR};
use crate::SeccompError;

/// What a syscall from an unlisted ABI gets. libseccomp's default bad-arch action is SCMP_ACT_KILL, i.e. it kills
/// the thread; killing the whole process is what the kernel documentation recommends (a process with one thread
/// silently gone is left in an undefined state), and a container issuing syscalls through an ABI its profile does
/// not cover is not something to keep running.
pub(crate) const BAD_ARCH_ACTION: u32 = libc::SECCOMP_RET_KILL_PROCESS;

/// `errnoRet` when SCMP_ACT_ERRNO / SCMP_ACT_TRACE give none (runc's default).
const DEFAULT_ERRNO: u32 = libc::EPERM as u32;

/// The output of compilation: what `install` needs.
#[derive(Clone, Debug)]
pub(crate) struct Compiled {
    pub(crate) insns: Vec<sock_filter>,
    /// `SECCOMP_FILTER_FLAG_*` bits for seccomp(2), NEW_LISTENER included when a rule notifies.
    pub(crate) flags: u32,
}

/// One argument condition, values already narrowed to what the ABI compares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Cond {
    index: usize,
    op: Op,
    value: u64,
    value_two: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Rule {
    conds: Vec<Cond>,
    action: u32,
}

/// What happens to one syscall number.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Outcome {
    Default,
    Ret(u32),
    /// Rules with argument conditions, in profile order, falling back to the default action.
    Rules(Vec<Rule>),
}

fn invalid(msg: String) -> SeccompError {
    SeccompError::Invalid(msg)
}

/// The `SECCOMP_RET_*` value of an action. `field` names the errnoRet field for error messages.
fn action_value(action: Action, errno_ret: Option<u32>, field: &str) -> Result<u32, SeccompError> {
    let data = |default: u32| -> Result<u32, SeccompError> {
        let v = errno_ret.unwrap_or(default);
        // SECCOMP_RET_DATA is 16 bits; the kernel further clamps errno values to MAX_ERRNO (4095).
        if v > libc::SECCOMP_RET_DATA {
            return Err(invalid(format!(
                "{field}: {v} does not fit in SECCOMP_RET_DATA (0-65535)"
            )));
        }
        Ok(v)
    };
    Ok(match action {
        Action::ScmpActKill | Action::ScmpActKillThread => libc::SECCOMP_RET_KILL_THREAD,
        Action::ScmpActKillProcess => libc::SECCOMP_RET_KILL_PROCESS,
        Action::ScmpActTrap => libc::SECCOMP_RET_TRAP,
        Action::ScmpActErrno => libc::SECCOMP_RET_ERRNO | data(DEFAULT_ERRNO)?,
        Action::ScmpActTrace => libc::SECCOMP_RET_TRACE | data(DEFAULT_ERRNO)?,
        Action::ScmpActNotify => libc::SECCOMP_RET_USER_NOTIF,
        Action::ScmpActLog => libc::SECCOMP_RET_LOG,
        Action::ScmpActAllow => libc::SECCOMP_RET_ALLOW,
    })
}

/// Kernel flag bits for the profile's `flags`. The OCI types make an unknown flag name a deserialization error
/// (serde names the offending variant), so every value reaching here is known.
fn flag_bits(profile: &LinuxSeccomp, notify: bool) -> u32 {
    use oci_spec::runtime::LinuxSeccompFilterFlag as F;
    let mut bits = 0u32;
    for flag in profile.flags().iter().flatten() {
        bits |= match flag {
            F::SeccompFilterFlagTsync => libc::SECCOMP_FILTER_FLAG_TSYNC,
            F::SeccompFilterFlagLog => libc::SECCOMP_FILTER_FLAG_LOG,
            F::SeccompFilterFlagSpecAllow => libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW,
            F::SeccompFilterFlagWaitKillableRecv => libc::SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV,
        } as u32;
    }
    if notify {
        bits |= libc::SECCOMP_FILTER_FLAG_NEW_LISTENER as u32;
        // The kernel refuses TSYNC together with NEW_LISTENER unless TSYNC failures are reported as ESRCH
        // (TSYNC's usual success value, a thread id, would be ambiguous with the listener fd).
        if bits & libc::SECCOMP_FILTER_FLAG_TSYNC as u32 != 0 {
            bits |= libc::SECCOMP_FILTER_FLAG_TSYNC_ESRCH as u32;
        }
    } else {
        // WAIT_KILLABLE_RECV only means something for a listener, and the kernel rejects it without one.
        bits &= !(libc::SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV as u32);
    }
    bits
}

/// Validates `profile` and compiles it for the ABIs this host can report.
pub(crate) fn compile(profile: &LinuxSeccomp) -> Result<Compiled, SeccompError> {
    if profile.default_action() == Action::ScmpActNotify {
        return Err(invalid(
            "defaultAction: SCMP_ACT_NOTIFY cannot be the default action".into(),
        ));
    }
    let default = action_value(
        profile.default_action(),
        profile.default_errno_ret(),
        "defaultErrnoRet",
    )?;
    let abis = arch::selected(profile.architectures().as_ref());

    // Per ABI: syscall number -> rules in profile order.
    let mut tables: Vec<BTreeMap<u32, Vec<Rule>>> = vec![BTreeMap::new(); abis.len()];
    let mut notify_at = None;
    for (i, sc) in profile.syscalls().iter().flatten().enumerate() {
        let action = action_value(
            sc.action(),
            sc.errno_ret(),
            &format!("syscalls[{i}].errnoRet"),
        )?;
        if sc.action() == Action::ScmpActNotify {
            notify_at.get_or_insert(i);
        }
        let mut conds = Vec::new();
        for (j, a) in sc.args().iter().flatten().enumerate() {
            if a.index() > 5 {
                return Err(invalid(format!(
                    "syscalls[{i}].args[{j}].index: {} is out of range (0-5)",
                    a.index()
                )));
            }
            conds.push(Cond {
                index: a.index(),
                op: a.op(),
                value: a.value(),
                value_two: a.value_two().unwrap_or(0),
            });
        }
        for (j, name) in sc.names().iter().enumerate() {
            if name.is_empty() {
                return Err(invalid(format!(
                    "syscalls[{i}].names[{j}]: empty syscall name"
                )));
            }
            for (abi, table) in abis.iter().zip(tables.iter_mut()) {
                // Names this ABI lacks are skipped, as runc does: profiles are written for many kernels and ABIs.
                if let Some(nr) = abi.lookup(name) {
                    let conds = narrow(&conds, *abi);
                    table.entry(nr).or_default().push(Rule { conds, action });
                }
            }
        }
    }
    if let Some(i) = notify_at {
        if profile.listener_path().is_none() {
            return Err(invalid(format!(
                "listenerPath: required because syscalls[{i}].action is SCMP_ACT_NOTIFY"
            )));
        }
    }

    let insns = generate(&abis, &tables, default)?;
    Ok(Compiled {
        insns,
        flags: flag_bits(profile, notify_at.is_some()),
    })
}

/// On 32-bit ABIs only the low halves are compared (libseccomp semantics), so the rule values are truncated.
fn narrow(conds: &[Cond], abi: Abi) -> Vec<Cond> {
    if !abi.args_are_32bit() {
        return conds.to_vec();
    }
    conds
        .iter()
        .map(|c| Cond {
            value: c.value & 0xffff_ffff,
            value_two: c.value_two & 0xffff_ffff,
            ..*c
        })
        .collect()
}

/// Reduces a syscall's rule list to its outcome.
fn outcome(rules: &[Rule], default: u32) -> Outcome {
    // The first unconditional rule decides; rules after it can never be reached.
    let mut rules: Vec<Rule> = match rules.iter().position(|r| r.conds.is_empty()) {
        Some(p) => rules[..=p].to_vec(),
        None => rules.to_vec(),
    };
    // A trailing rule returning the default action changes nothing: matched or not, the default applies.
    while rules.last().is_some_and(|r| r.action == default) {
        rules.pop();
    }
    match rules.as_slice() {
        [] => Outcome::Default,
        [r] if r.conds.is_empty() => Outcome::Ret(r.action),
        _ => Outcome::Rules(rules),
    }
}

/// Cuts `[lo, hi]` into maximal intervals of equal outcome: `(first number, outcome)`.
fn intervals(
    table: &BTreeMap<u32, Vec<Rule>>,
    lo: u32,
    hi: u32,
    default: u32,
) -> Vec<(u32, Outcome)> {
    let mut out: Vec<(u32, Outcome)> = vec![(lo, Outcome::Default)];
    let push = |start: u32, o: Outcome, out: &mut Vec<(u32, Outcome)>| {
        // Argument-testing blocks are never merged: each is emitted once, at its own leaf.
        if out
            .last()
            .is_some_and(|(_, last)| *last == o && !matches!(o, Outcome::Rules(_)))
        {
            return;
        }
        if out.last().is_some_and(|(s, _)| *s == start) {
            out.pop();
        }
        out.push((start, o));
    };
    for (&nr, rules) in table.range(lo..=hi) {
        push(nr, outcome(rules, default), &mut out);
        if nr < hi {
            push(nr + 1, Outcome::Default, &mut out);
        }
    }
    // Merging may have left two neighbours equal after a pop; fold them.
    out.dedup_by(|b, a| a.1 == b.1 && !matches!(a.1, Outcome::Rules(_)));
    out
}

struct Gen {
    asm: Asm,
    default: u32,
}

impl Gen {
    fn ret_outcome(&mut self, o: &Outcome, abi: Abi) -> Label {
        match o {
            Outcome::Default => self.asm.ret(self.default),
            Outcome::Ret(a) => self.asm.ret(*a),
            Outcome::Rules(rules) => self.rules(rules, abi),
        }
    }

    /// A binary search over interval starts; the accumulator holds the syscall number throughout.
    fn tree(&mut self, ivs: &[(u32, Outcome)], abi: Abi) -> Label {
        if let [(_, o)] = ivs {
            return self.ret_outcome(o, abi);
        }
        let mid = ivs.len() / 2;
        let right = self.tree(&ivs[mid..], abi);
        let left = self.tree(&ivs[..mid], abi);
        self.asm.jump(Jmp::Ge, ivs[mid].0, right, left)
    }

    fn rules(&mut self, rules: &[Rule], abi: Abi) -> Label {
        let mut next = self.asm.ret(self.default);
        for rule in rules.iter().rev() {
            let mut pass = self.asm.ret(rule.action);
            for c in rule.conds.iter().rev() {
                pass = self.cond(c, pass, next, abi);
            }
            next = pass;
        }
        next
    }

    /// Code testing one 32-bit half: `op` on the half at `offset` against `v` (and `v2` for MASKED_EQ).
    fn half(&mut self, op: Op, offset: u32, v: u32, v2: u32, pass: Label, fail: Label) -> Label {
        let a = &mut self.asm;
        let test = match op {
            Op::ScmpCmpEq => a.jump(Jmp::Eq, v, pass, fail),
            Op::ScmpCmpNe => a.jump(Jmp::Eq, v, fail, pass),
            Op::ScmpCmpGt => a.jump(Jmp::Gt, v, pass, fail),
            Op::ScmpCmpGe => a.jump(Jmp::Ge, v, pass, fail),
            Op::ScmpCmpLt => a.jump(Jmp::Ge, v, fail, pass),
            Op::ScmpCmpLe => a.jump(Jmp::Gt, v, fail, pass),
            Op::ScmpCmpMaskedEq => {
                if v == 0 {
                    // (x & 0) == v2 does not depend on x.
                    return if v2 == 0 { pass } else { fail };
                }
                let t = a.jump(Jmp::Eq, v2, pass, fail);
                a.and(v, t)
            }
        };
        if test == pass || test == fail {
            return test;
        }
        a.load(offset, test)
    }

    fn cond(&mut self, c: &Cond, pass: Label, fail: Label, abi: Abi) -> Label {
        let lo_off = bpf::off_arg_low(c.index);
        let (lo, lo2) = (c.value as u32, c.value_two as u32);
        let low = self.half(c.op, lo_off, lo, lo2, pass, fail);
        if abi.args_are_32bit() {
            return low;
        }
        // 64-bit: the high halves decide unless they are equal, in which case the low halves do.
        let (hi, hi2) = ((c.value >> 32) as u32, (c.value_two >> 32) as u32);
        let hi_off = lo_off + 4;
        let a = &mut self.asm;
        let test = match c.op {
            Op::ScmpCmpEq => a.jump(Jmp::Eq, hi, low, fail),
            Op::ScmpCmpNe => a.jump(Jmp::Eq, hi, low, pass),
            Op::ScmpCmpGt | Op::ScmpCmpGe => {
                let eq = a.jump(Jmp::Eq, hi, low, fail);
                a.jump(Jmp::Gt, hi, pass, eq)
            }
            Op::ScmpCmpLt | Op::ScmpCmpLe => {
                let eq = a.jump(Jmp::Eq, hi, low, pass);
                a.jump(Jmp::Gt, hi, fail, eq)
            }
            Op::ScmpCmpMaskedEq => {
                if hi == 0 {
                    return if hi2 == 0 { low } else { fail };
                }
                let t = a.jump(Jmp::Eq, hi2, low, fail);
                a.and(hi, t)
            }
        };
        if test == low || test == pass || test == fail {
            return test;
        }
        a.load(hi_off, test)
    }
}

fn generate(
    abis: &[Abi],
    tables: &[BTreeMap<u32, Vec<Rule>>],
    default: u32,
) -> Result<Vec<sock_filter>, SeccompError> {
    let mut g = Gen {
        asm: Asm::default(),
        default,
    };
    let table = |abi: Abi| abis.iter().position(|a| *a == abi).map(|i| &tables[i]);

    let bad = g.asm.ret(BAD_ARCH_ACTION);
    // One section per arch token, emitted last-first; the native family comes first in the program.
    let mut sections: Vec<(u32, Label)> = Vec::new();
    for &abi in abis.iter().rev() {
        let Some(t) = table(abi) else { continue };
        let entry = match abi {
            // x32 shares x86_64's token; it is reached from the x86_64 section.
            Abi::X32 => continue,
            Abi::X86_64 => {
                let x32 = match table(Abi::X32) {
                    Some(t32) => {
                        let ivs = intervals(t32, X32_SYSCALL_BIT, u32::MAX, default);
                        g.tree(&ivs, Abi::X32)
                    }
                    // libseccomp: x32 syscalls under a filter without x32 get the bad-arch action.
                    None => bad,
                };
                let ivs = intervals(t, 0, X32_SYSCALL_BIT - 1, default);
                let native = g.tree(&ivs, Abi::X86_64);
                let split = g.asm.jump(Jmp::Ge, X32_SYSCALL_BIT, x32, native);
                g.asm.load(OFF_NR, split)
            }
            _ => {
                let ivs = intervals(t, 0, u32::MAX, default);
                let tree = g.tree(&ivs, abi);
                g.asm.load(OFF_NR, tree)
            }
        };
        sections.push((abi.audit_arch(), entry));
    }
    let mut next = bad;
    for (token, entry) in sections {
        next = g.asm.jump(Jmp::Eq, token, entry, next);
    }
    let entry = g.asm.load(OFF_ARCH, next);
    if g.asm.len() > MAX_INSNS {
        return Err(invalid(format!(
            "syscalls: the compiled filter has {} instructions, more than the kernel's limit of {MAX_INSNS}",
            g.asm.len()
        )));
    }
    Ok(g.asm.finish(entry))
}
