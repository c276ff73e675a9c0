mod interp;
mod kernel;

use std::path::Path;
use std::time::Instant;

use oci_spec::runtime::LinuxSeccomp;
use serde_json::json;

use self::interp::{run, run_counted, Data};
use crate::arch::{Abi, AUDIT_ARCH_AARCH64, AUDIT_ARCH_I386, AUDIT_ARCH_X86_64, X32_SYSCALL_BIT};
use crate::{CacheStatus, Filter, SeccompError};

const ALLOW: u32 = libc::SECCOMP_RET_ALLOW;
const KILL_PROCESS: u32 = libc::SECCOMP_RET_KILL_PROCESS;
const fn errno(e: i32) -> u32 {
    libc::SECCOMP_RET_ERRNO | e as u32
}

pub(crate) fn profile(v: serde_json::Value) -> LinuxSeccomp {
    serde_json::from_value(v).expect("test profile parses")
}

pub(crate) fn compile(v: serde_json::Value) -> Filter {
    Filter::prepare(&profile(v), None).expect("compiles")
}

fn nr(abi: Abi, name: &str) -> u32 {
    abi.lookup(name)
        .unwrap_or_else(|| panic!("{name} on {abi:?}"))
}

/// Runs the filter for a syscall of `abi` with `args`.
fn eval(f: &Filter, abi: Abi, name: &str, args: [u64; 6]) -> u32 {
    run(
        f.instructions(),
        &Data {
            nr: nr(abi, name),
            arch: abi.audit_arch(),
            args,
        },
    )
}

fn x64(f: &Filter, name: &str, args: [u64; 6]) -> u32 {
    eval(f, Abi::X86_64, name, args)
}

fn err_of(e: SeccompError) -> String {
    e.to_string()
}

fn docker() -> LinuxSeccomp {
    let text = include_str!("../../profiles/docker-default.json");
    serde_json::from_str(text).expect("docker profile parses")
}

#[test]
fn default_action_and_allow_list() {
    let f = compile(json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "syscalls": [{"names": ["read", "write", "no_such_syscall"], "action": "SCMP_ACT_ALLOW"}]
    }));
    assert_eq!(x64(&f, "read", [0; 6]), ALLOW);
    assert_eq!(x64(&f, "write", [0; 6]), ALLOW);
    // No defaultErrnoRet: EPERM.
    assert_eq!(x64(&f, "open", [0; 6]), errno(libc::EPERM));
    assert_eq!(
        run(
            f.instructions(),
            &Data {
                nr: 100_000,
                arch: AUDIT_ARCH_X86_64,
                args: [0; 6]
            }
        ),
        errno(1)
    );
    assert!(!f.uses_notify());
    assert_eq!(f.cache_status(), CacheStatus::Disabled);
}

#[test]
fn arch_handling() {
    let only_native = compile(json!({"defaultAction": "SCMP_ACT_ALLOW"}));
    let prog = only_native.instructions();
    let d = |arch, nr| Data {
        nr,
        arch,
        args: [0; 6],
    };
    assert_eq!(run(prog, &d(AUDIT_ARCH_X86_64, 0)), ALLOW);
    // Unlisted ABIs: i386, x32, and anything else.
    assert_eq!(run(prog, &d(AUDIT_ARCH_I386, 3)), KILL_PROCESS);
    assert_eq!(
        run(prog, &d(AUDIT_ARCH_X86_64, X32_SYSCALL_BIT)),
        KILL_PROCESS
    );
    assert_eq!(run(prog, &d(AUDIT_ARCH_AARCH64, 63)), KILL_PROCESS);

    // Listed non-host architectures are ignored; x86 and x32 get their own numbering.
    let f = compile(json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": 38,
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32", "SCMP_ARCH_S390X", "SCMP_ARCH_AARCH64"],
        "syscalls": [
            {"names": ["read", "execve", "_llseek"], "action": "SCMP_ACT_ALLOW"},
            {"names": ["write"], "action": "SCMP_ACT_ERRNO", "errnoRet": 5}
        ]
    }));
    for abi in [Abi::X86_64, Abi::X32, Abi::I386] {
        assert_eq!(eval(&f, abi, "read", [0; 6]), ALLOW, "{abi:?}");
        assert_eq!(eval(&f, abi, "execve", [0; 6]), ALLOW, "{abi:?}");
        assert_eq!(eval(&f, abi, "write", [0; 6]), errno(5), "{abi:?}");
        assert_eq!(eval(&f, abi, "open", [0; 6]), errno(38), "{abi:?}");
    }
    assert_eq!(eval(&f, Abi::I386, "_llseek", [0; 6]), ALLOW);
    let prog = f.instructions();
    // x32's execve is 520, not x86_64's 59.
    assert_eq!(
        run(prog, &d(AUDIT_ARCH_X86_64, 59 | X32_SYSCALL_BIT)),
        errno(38)
    );
    // i386 read is 3: on x86_64 3 is close.
    assert_eq!(run(prog, &d(AUDIT_ARCH_X86_64, 3)), errno(38));
    // An arm64 syscall on this x86_64 kernel cannot happen, but if it did it would be killed.
    assert_eq!(run(prog, &d(AUDIT_ARCH_AARCH64, 63)), KILL_PROCESS);
    assert_eq!(run(prog, &d(AUDIT_ARCH_X86_64, u32::MAX)), errno(38));
}

#[test]
fn actions() {
    let f = compile(json!({
        "defaultAction": "SCMP_ACT_KILL_PROCESS",
        "listenerPath": "/run/agent.sock",
        "syscalls": [
            {"names": ["read"], "action": "SCMP_ACT_KILL"},
            {"names": ["write"], "action": "SCMP_ACT_KILL_THREAD"},
            {"names": ["open"], "action": "SCMP_ACT_TRAP"},
            {"names": ["close"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1234},
            {"names": ["stat"], "action": "SCMP_ACT_TRACE", "errnoRet": 42},
            {"names": ["fstat"], "action": "SCMP_ACT_TRACE"},
            {"names": ["lstat"], "action": "SCMP_ACT_LOG"},
            {"names": ["poll"], "action": "SCMP_ACT_NOTIFY"},
            {"names": ["lseek"], "action": "SCMP_ACT_ALLOW"}
        ]
    }));
    let cases = [
        ("read", libc::SECCOMP_RET_KILL_THREAD),
        ("write", libc::SECCOMP_RET_KILL_THREAD),
        ("open", libc::SECCOMP_RET_TRAP),
        ("close", errno(1234)),
        ("stat", libc::SECCOMP_RET_TRACE | 42),
        ("fstat", libc::SECCOMP_RET_TRACE | 1),
        ("lstat", libc::SECCOMP_RET_LOG),
        ("poll", libc::SECCOMP_RET_USER_NOTIF),
        ("lseek", ALLOW),
        ("mmap", KILL_PROCESS),
    ];
    for (name, want) in cases {
        assert_eq!(x64(&f, name, [0; 6]), want, "{name}");
    }
    assert!(f.uses_notify());
    assert_eq!(f.listener_path(), Some(Path::new("/run/agent.sock")));
}

#[test]
fn flags() {
    let flags = |flags: serde_json::Value, notify: bool| {
        let mut p =
            json!({"defaultAction": "SCMP_ACT_ALLOW", "flags": flags, "listenerPath": "/x"});
        if notify {
            p["syscalls"] = json!([{"names": ["getppid"], "action": "SCMP_ACT_NOTIFY"}]);
        }
        compile(p).flags() as libc::c_ulong
    };
    use libc::{
        SECCOMP_FILTER_FLAG_LOG as LOG, SECCOMP_FILTER_FLAG_NEW_LISTENER as NL,
        SECCOMP_FILTER_FLAG_SPEC_ALLOW as SPEC, SECCOMP_FILTER_FLAG_TSYNC as TSYNC,
        SECCOMP_FILTER_FLAG_TSYNC_ESRCH as ESRCH, SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV as WKR,
    };
    assert_eq!(flags(json!([]), false), 0);
    assert_eq!(
        flags(
            json!([
                "SECCOMP_FILTER_FLAG_TSYNC",
                "SECCOMP_FILTER_FLAG_LOG",
                "SECCOMP_FILTER_FLAG_SPEC_ALLOW"
            ]),
            false
        ),
        TSYNC | LOG | SPEC
    );
    assert_eq!(
        flags(json!(["SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"]), false),
        0
    );
    assert_eq!(
        flags(json!(["SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"]), true),
        WKR | NL
    );
    assert_eq!(
        flags(json!(["SECCOMP_FILTER_FLAG_TSYNC"]), true),
        TSYNC | NL | ESRCH
    );

    // An unknown flag never reaches the compiler: parsing the spec names it.
    let bad = serde_json::from_value::<LinuxSeccomp>(
        json!({"defaultAction": "SCMP_ACT_ALLOW", "flags": ["SECCOMP_FILTER_FLAG_BOGUS"]}),
    );
    let msg = bad.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(msg.contains("SECCOMP_FILTER_FLAG_BOGUS"), "{msg}");
}

#[test]
fn invalid_profiles_name_the_field() {
    let cases = [
        (
            json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
                {"names": ["read"], "action": "SCMP_ACT_ALLOW"},
                {"names": ["read"], "action": "SCMP_ACT_ALLOW"},
                {"names": ["read"], "action": "SCMP_ACT_ALLOW"},
                {"names": ["read"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 7, "value": 1, "op": "SCMP_CMP_EQ"}]}
            ]}),
            "seccomp: syscalls[3].args[0].index: 7 is out of range (0-5)",
        ),
        (
            json!({"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 70000}),
            "seccomp: defaultErrnoRet: 70000 does not fit in SECCOMP_RET_DATA (0-65535)",
        ),
        (
            json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
                {"names": ["read"], "action": "SCMP_ACT_TRACE", "errnoRet": 65536}]}),
            "seccomp: syscalls[0].errnoRet: 65536 does not fit in SECCOMP_RET_DATA (0-65535)",
        ),
        (
            json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
                {"names": ["read"], "action": "SCMP_ACT_LOG"},
                {"names": ["read"], "action": "SCMP_ACT_NOTIFY"}]}),
            "seccomp: listenerPath: required because syscalls[1].action is SCMP_ACT_NOTIFY",
        ),
        (
            json!({"defaultAction": "SCMP_ACT_NOTIFY", "listenerPath": "/x"}),
            "seccomp: defaultAction: SCMP_ACT_NOTIFY cannot be the default action",
        ),
        (
            json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read", ""], "action": "SCMP_ACT_LOG"}]}),
            "seccomp: syscalls[0].names[1]: empty syscall name",
        ),
    ];
    for (p, want) in cases {
        match Filter::prepare(&profile(p), None) {
            Ok(_) => panic!("accepted; wanted {want}"),
            Err(e) => assert_eq!(err_of(e), want),
        }
    }
    // Bad actions and operators are rejected by the spec parser, naming the value.
    for p in [
        json!({"defaultAction": "SCMP_ACT_MAYBE"}),
        json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
            {"names": ["read"], "action": "SCMP_ACT_LOG", "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_LIKE"}]}]}),
    ] {
        assert!(serde_json::from_value::<LinuxSeccomp>(p).is_err());
    }
}

/// Reference semantics of one condition.
fn holds(op: &str, arg: u64, v: u64, v2: u64) -> bool {
    match op {
        "SCMP_CMP_EQ" => arg == v,
        "SCMP_CMP_NE" => arg != v,
        "SCMP_CMP_LT" => arg < v,
        "SCMP_CMP_LE" => arg <= v,
        "SCMP_CMP_GT" => arg > v,
        "SCMP_CMP_GE" => arg >= v,
        "SCMP_CMP_MASKED_EQ" => arg & v == v2,
        _ => unreachable!(),
    }
}

const OPS: [&str; 7] = [
    "SCMP_CMP_EQ",
    "SCMP_CMP_NE",
    "SCMP_CMP_LT",
    "SCMP_CMP_LE",
    "SCMP_CMP_GT",
    "SCMP_CMP_GE",
    "SCMP_CMP_MASKED_EQ",
];

/// Values around the interesting boundaries of both 32-bit halves.
fn probe_values(v: u64) -> Vec<u64> {
    let mut out = vec![
        0,
        1,
        0xffff_ffff,
        0x1_0000_0000,
        0x1_0000_0001,
        u64::MAX,
        u64::MAX - 1,
        1 << 63,
    ];
    for d in [0u64, 1, 1 << 32] {
        out.extend([v.wrapping_add(d), v.wrapping_sub(d)]);
    }
    out.extend([
        v ^ 0xffff_ffff,
        v ^ (0xffff_ffff << 32),
        v & 0xffff_ffff,
        v | 0xffff_ffff,
    ]);
    out
}

#[test]
fn argument_comparisons_64bit_and_32bit() {
    let values: [(u64, u64); 8] = [
        (0, 0),
        (5, 5),
        (0xffff_ffff, 0xffff_0000),
        (0x1_0000_0005, 0x1_0000_0004),
        (0x8000_0000_0000_0000, 0x8000_0000_0000_0000),
        (u64::MAX, 0xf0f0_f0f0_f0f0_f0f0),
        (0x0000_0007_0000_0000, 0x0000_0003_0000_0000),
        (0x1234_5678_9abc_def0, 0x1234_0000_9abc_0000),
    ];
    for op in OPS {
        for (v, v2) in values {
            for index in [0usize, 3, 5] {
                let f = compile(json!({
                    "defaultAction": "SCMP_ACT_ERRNO",
                    "architectures": ["SCMP_ARCH_X86", "SCMP_ARCH_X32"],
                    "syscalls": [{"names": ["lseek"], "action": "SCMP_ACT_ALLOW",
                                  "args": [{"index": index, "value": v, "valueTwo": v2, "op": op}]}]
                }));
                for arg in probe_values(v) {
                    let mut args = [0x5a5a_5a5a_5a5a_5a5a; 6];
                    args[index] = arg;
                    let got = x64(&f, "lseek", args) == ALLOW;
                    assert_eq!(
                        got,
                        holds(op, arg, v, v2),
                        "x86_64 {op} arg{index}={arg:#x} v={v:#x} v2={v2:#x}"
                    );
                    // 32-bit ABIs compare low halves (args are zero-extended by the kernel, rule values truncated).
                    let low = arg & 0xffff_ffff;
                    args[index] = low;
                    let want = holds(op, low, v & 0xffff_ffff, v2 & 0xffff_ffff);
                    for abi in [Abi::I386, Abi::X32] {
                        let got = eval(&f, abi, "lseek", args) == ALLOW;
                        assert_eq!(
                            got, want,
                            "{abi:?} {op} arg{index}={low:#x} v={v:#x} v2={v2:#x}"
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn conditions_and_rules_order() {
    let f = compile(json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": 1,
        "syscalls": [
            // Two conditions on different args, ANDed.
            {"names": ["mmap"], "action": "SCMP_ACT_ERRNO", "errnoRet": 11,
             "args": [{"index": 2, "value": 7, "op": "SCMP_CMP_EQ"}, {"index": 3, "value": 0x20, "valueTwo": 0x20, "op": "SCMP_CMP_MASKED_EQ"}]},
            // Two conditions on the same arg, ANDed: 10 <= a0 < 20.
            {"names": ["mmap"], "action": "SCMP_ACT_ERRNO", "errnoRet": 12,
             "args": [{"index": 0, "value": 10, "op": "SCMP_CMP_GE"}, {"index": 0, "value": 20, "op": "SCMP_CMP_LT"}]},
            // Overlaps the previous rule: first match wins.
            {"names": ["mmap"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13,
             "args": [{"index": 0, "value": 15, "op": "SCMP_CMP_GE"}]},
            {"names": ["mmap"], "action": "SCMP_ACT_ALLOW"},
            // Unreachable after the unconditional rule.
            {"names": ["mmap"], "action": "SCMP_ACT_ERRNO", "errnoRet": 14},
            // A rule equal to the default changes nothing but must not break the ones before it.
            {"names": ["munmap"], "action": "SCMP_ACT_LOG", "args": [{"index": 1, "value": 4096, "op": "SCMP_CMP_EQ"}]},
            {"names": ["munmap"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}
        ]
    }));
    let mm = |a0: u64, a2: u64, a3: u64| x64(&f, "mmap", [a0, 0, a2, a3, 0, 0]);
    assert_eq!(mm(0, 7, 0x22), errno(11));
    assert_eq!(mm(12, 7, 0x22), errno(11));
    assert_eq!(mm(12, 7, 0x02), errno(12));
    assert_eq!(mm(17, 6, 0x22), errno(12));
    assert_eq!(mm(20, 6, 0), errno(13));
    assert_eq!(mm(1 << 40, 6, 0), errno(13));
    assert_eq!(mm(9, 7 | (1 << 32), 0x20), ALLOW);
    assert_eq!(
        x64(&f, "munmap", [0, 4096, 0, 0, 0, 0]),
        libc::SECCOMP_RET_LOG
    );
    assert_eq!(x64(&f, "munmap", [0, 4097, 0, 0, 0, 0]), errno(1));
}

#[test]
fn long_jumps_with_hundreds_of_rules() {
    // Every x86_64 syscall gets two conditional rules with distinct errno values, so no `ret` can be shared and
    // the decision tree's jumps span far more than 255 instructions.
    let names: Vec<&str> = (0..460)
        .filter_map(|n| syscalls::x86_64::Sysno::new(n).map(|s| s.name()))
        .collect();
    assert!(names.len() > 350);
    let mut rules = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let i = i as u64;
        rules.push(
            json!({"names": [name], "action": "SCMP_ACT_ERRNO", "errnoRet": 100 + i,
                          "args": [{"index": 1, "value": i << 32 | i, "op": "SCMP_CMP_EQ"}]}),
        );
        rules.push(json!({"names": [name], "action": "SCMP_ACT_TRACE", "errnoRet": 1000 + i,
                          "args": [{"index": 2, "value": 0xffff, "valueTwo": i + 1, "op": "SCMP_CMP_MASKED_EQ"}]}));
    }
    let f = compile(json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": rules}));
    let prog = f.instructions();
    assert!(prog.len() > 2000, "{}", prog.len());
    let trampolines = prog
        .iter()
        .filter(|i| i.code == crate::bpf::BPF_JMP | crate::bpf::BPF_JA && i.k > 255)
        .count();
    assert!(trampolines > 0, "expected long jumps");
    for (i, name) in names.iter().enumerate() {
        let i = i as u64;
        assert_eq!(
            x64(&f, name, [0, i << 32 | i, 0, 0, 0, 0]),
            errno(100 + i as i32),
            "{name}"
        );
        // Same low half as the first rule's value, different high half.
        let a1 = i | 1 << 50;
        assert_eq!(
            x64(&f, name, [0, a1, i + 1, 0, 0, 0]),
            libc::SECCOMP_RET_TRACE | (1000 + i as u32),
            "{name}"
        );
        assert_eq!(x64(&f, name, [0, a1, 0, 0, 0, 0]), ALLOW, "{name}");
    }

    // Distinct unconditional actions for 400+ numbers: one leaf each.
    let rules: Vec<_> = names
        .iter()
        .enumerate()
        .map(|(i, n)| json!({"names": [n], "action": "SCMP_ACT_ERRNO", "errnoRet": i + 1}))
        .collect();
    let f = compile(json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": rules}));
    for (i, name) in names.iter().enumerate() {
        assert_eq!(x64(&f, name, [0; 6]), errno(i as i32 + 1), "{name}");
    }

    // Far too many rules: the 4096 limit is reported, not handed to the kernel.
    let mut rules = Vec::new();
    for v in 0..3000u64 {
        rules.push(
            json!({"names": ["read"], "action": "SCMP_ACT_ERRNO", "errnoRet": 2,
                          "args": [{"index": 0, "value": v << 32 | v, "op": "SCMP_CMP_EQ"}]}),
        );
    }
    let e = Filter::prepare(
        &profile(json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": rules})),
        None,
    );
    let msg = e.err().map(err_of).unwrap_or_default();
    assert!(
        msg.contains("more than the kernel's limit of 4096"),
        "{msg}"
    );
}

#[test]
fn docker_default_profile() {
    let f = Filter::prepare(&docker(), None).expect("docker profile compiles");
    let n = f.instructions().len();
    println!("docker default profile: {n} instructions");
    assert!(n < 4096);
    let eperm = errno(libc::EPERM);
    for name in [
        "read",
        "write",
        "execve",
        "openat",
        "mmap",
        "exit_group",
        "ptrace",
        "chroot",
        "arch_prctl",
    ] {
        assert_eq!(x64(&f, name, [0; 6]), ALLOW, "{name}");
    }
    for name in [
        "kexec_load",
        "mount",
        "umount2",
        "unshare",
        "setns",
        "reboot",
        "init_module",
        "bpf",
        "keyctl",
    ] {
        assert_eq!(x64(&f, name, [0; 6]), eperm, "{name}");
    }
    // clone: plain thread/fork flags allowed, namespace flags denied; clone3 gets ENOSYS so libc falls back.
    let thread_flags = (libc::CLONE_VM
        | libc::CLONE_FS
        | libc::CLONE_FILES
        | libc::CLONE_SIGHAND
        | libc::CLONE_THREAD) as u64;
    assert_eq!(x64(&f, "clone", [thread_flags, 0, 0, 0, 0, 0]), ALLOW);
    assert_eq!(
        x64(&f, "clone", [libc::SIGCHLD as u64, 0, 0, 0, 0, 0]),
        ALLOW
    );
    for ns in [
        libc::CLONE_NEWNS,
        libc::CLONE_NEWUSER,
        libc::CLONE_NEWNET,
        libc::CLONE_NEWPID,
        libc::CLONE_NEWCGROUP,
    ] {
        assert_eq!(
            x64(
                &f,
                "clone",
                [ns as u64 | libc::SIGCHLD as u64, 0, 0, 0, 0, 0]
            ),
            eperm
        );
    }
    assert_eq!(x64(&f, "clone3", [0; 6]), errno(libc::ENOSYS));
    // socket: everything but AF_VSOCK.
    assert_eq!(
        x64(&f, "socket", [libc::AF_INET as u64, 1, 0, 0, 0, 0]),
        ALLOW
    );
    assert_eq!(
        x64(&f, "socket", [libc::AF_VSOCK as u64, 1, 0, 0, 0, 0]),
        eperm
    );
    // personality: only the listed personas.
    for p in [0u64, 8, 0x20000, 0x20008, 0xffff_ffff] {
        assert_eq!(x64(&f, "personality", [p, 0, 0, 0, 0, 0]), ALLOW, "{p:#x}");
    }
    assert_eq!(x64(&f, "personality", [1, 0, 0, 0, 0, 0]), eperm);
    // The compat ABIs are covered too.
    assert_eq!(eval(&f, Abi::I386, "read", [0; 6]), ALLOW);
    assert_eq!(eval(&f, Abi::I386, "socketcall", [0; 6]), ALLOW);
    assert_eq!(eval(&f, Abi::I386, "mount", [0; 6]), eperm);
    assert_eq!(eval(&f, Abi::X32, "execve", [0; 6]), ALLOW);
    assert_eq!(eval(&f, Abi::X32, "kexec_load", [0; 6]), eperm);

    // The decision tree keeps lookups short.
    let worst = (0..460)
        .map(|nr| {
            run_counted(
                f.instructions(),
                &Data {
                    nr,
                    arch: AUDIT_ARCH_X86_64,
                    args: [0; 6],
                },
            )
            .1
        })
        .max()
        .unwrap_or(0);
    println!("docker default profile: at most {worst} instructions executed for an x86_64 syscall");
    assert!(worst < 40, "{worst}");
}

#[test]
fn cache_roundtrip_and_corruption() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("not/yet/there");
    let p = docker();
    let first = Filter::prepare(&p, Some(&dir)).expect("compile");
    assert_eq!(first.cache_status(), CacheStatus::Stored);
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&dir)
        .expect("cache dir")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o700);
    let entries: Vec<_> = std::fs::read_dir(&dir)
        .expect("read dir")
        .flatten()
        .map(|e| e.path())
        .collect();
    assert_eq!(entries.len(), 1, "{entries:?}");
    let file = &entries[0];
    assert_eq!(file.extension().and_then(|e| e.to_str()), Some("bpf"));

    let second = Filter::prepare(&p, Some(&dir)).expect("load");
    assert_eq!(second.cache_status(), CacheStatus::Hit);
    assert_eq!(bytes(first.instructions()), bytes(second.instructions()));
    assert_eq!(first.flags(), second.flags());

    // Truncated, then garbage: recompiled and rewritten each time.
    let good = std::fs::read(file).expect("read entry");
    std::fs::write(file, &good[..good.len() / 2]).expect("truncate");
    let third = Filter::prepare(&p, Some(&dir)).expect("recompile");
    assert_eq!(third.cache_status(), CacheStatus::Stored);
    assert_eq!(std::fs::read(file).expect("reread"), good);
    let mut bad = good.clone();
    bad[40] ^= 1;
    std::fs::write(file, &bad).expect("corrupt");
    assert_eq!(
        Filter::prepare(&p, Some(&dir))
            .expect("recompile")
            .cache_status(),
        CacheStatus::Stored
    );
    assert_eq!(
        Filter::prepare(&p, Some(&dir))
            .expect("load")
            .cache_status(),
        CacheStatus::Hit
    );

    // A different profile is a different entry.
    let other = profile(json!({"defaultAction": "SCMP_ACT_ALLOW"}));
    assert_eq!(
        Filter::prepare(&other, Some(&dir))
            .expect("compile")
            .cache_status(),
        CacheStatus::Stored
    );
    assert_eq!(std::fs::read_dir(&dir).expect("read dir").count(), 2);

    // An unwritable cache location still yields a filter.
    let blocked = tmp.path().join("file");
    std::fs::write(&blocked, b"").expect("file");
    let f = Filter::prepare(&other, Some(&blocked.join("sub"))).expect("compile without cache");
    assert_eq!(f.cache_status(), CacheStatus::StoreFailed);
}

fn bytes(p: &[libc::sock_filter]) -> Vec<(u16, u8, u8, u32)> {
    p.iter().map(|i| (i.code, i.jt, i.jf, i.k)).collect()
}

#[test]
fn compile_vs_cache_timing() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let p = docker();
    let rounds = 50;
    let t = Instant::now();
    for _ in 0..rounds {
        Filter::prepare(&p, None).expect("compile");
    }
    let compile = t.elapsed() / rounds;
    Filter::prepare(&p, Some(tmp.path())).expect("store");
    let t = Instant::now();
    for _ in 0..rounds {
        let f = Filter::prepare(&p, Some(tmp.path())).expect("load");
        assert_eq!(f.cache_status(), CacheStatus::Hit);
    }
    let cached = t.elapsed() / rounds;
    println!("docker default profile: compile {compile:?}, cache hit (hash + read) {cached:?} per prepare");
}

#[test]
fn features_document() {
    let f = crate::features();
    assert_eq!(f["enabled"], json!(true));
    assert_eq!(f["actions"].as_array().map(Vec::len), Some(9));
    assert_eq!(f["operators"].as_array().map(Vec::len), Some(7));
    assert!(f["archs"]
        .as_array()
        .is_some_and(|a| a.contains(&json!("SCMP_ARCH_X86_64"))));
    assert_eq!(f["knownFlags"].as_array().map(Vec::len), Some(4));
    // Linux 6.18 supports all four.
    let supported = f["supportedFlags"].as_array().cloned().unwrap_or_default();
    assert!(
        supported.contains(&json!("SECCOMP_FILTER_FLAG_TSYNC")),
        "{supported:?}"
    );
    assert!(
        supported.contains(&json!("SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV")),
        "{supported:?}"
    );
}
