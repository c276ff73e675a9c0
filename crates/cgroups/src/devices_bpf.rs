//! cgroup v2 device control: a BPF_PROG_TYPE_CGROUP_DEVICE program generated from the
//! evaluated rules (same shape as runc's devicefilter) and attached to the container's cgroup.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

use crate::devices::{DevType, DeviceRules, ACC_ALL};
use crate::CgroupError;

/// One struct bpf_insn.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    pub code: u8,
    /// dst_reg in the low nibble, src_reg in the high nibble.
    pub regs: u8,
    pub off: i16,
    pub imm: i32,
}

const R0: u8 = 0;
const R1: u8 = 1;
const R2: u8 = 2;
const R3: u8 = 3;
const R4: u8 = 4;
const R5: u8 = 5;

const LDX_MEM_W: u8 = 0x61; // BPF_LDX | BPF_MEM | BPF_W
const ALU32_AND_K: u8 = 0x54;
const ALU32_RSH_K: u8 = 0x74;
const ALU32_MOV_K: u8 = 0xb4;
const ALU32_MOV_X: u8 = 0xbc;
const JNE_K: u8 = 0x55;
const JNE_X: u8 = 0x5d;
const EXIT: u8 = 0x95;

const BPF_DEVCG_DEV_BLOCK: i32 = 1;
const BPF_DEVCG_DEV_CHAR: i32 = 2;

fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        regs: (src << 4) | dst,
        off,
        imm,
    }
}

/// Builds the program. The context (struct bpf_cgroup_dev_ctx) is
/// `{u32 access_type /* access << 16 | type */; u32 major; u32 minor}`; the program returns 1
/// to allow and 0 to deny. All exceptions share one action (the opposite of the default), so
/// their order does not matter; the first one that matches decides.
pub fn generate(rules: &DeviceRules) -> Vec<Insn> {
    let mut p = vec![
        insn(LDX_MEM_W, R2, R1, 0, 0),
        insn(ALU32_AND_K, R2, 0, 0, 0xffff), // R2 = device type
        insn(LDX_MEM_W, R3, R1, 0, 0),
        insn(ALU32_RSH_K, R3, 0, 0, 16), // R3 = requested access
        insn(LDX_MEM_W, R4, R1, 4, 0),   // R4 = major
        insn(LDX_MEM_W, R5, R1, 8, 0),   // R5 = minor
    ];
    let action = i32::from(!rules.default_allow);
    for r in &rules.exceptions {
        // Each check jumps to the end of this rule's block when it does not match; the offsets
        // are fixed up once the block's length is known.
        let mut block: Vec<Insn> = Vec::with_capacity(8);
        let ty = match r.meta.0 {
            DevType::Block => BPF_DEVCG_DEV_BLOCK,
            DevType::Char => BPF_DEVCG_DEV_CHAR,
        };
        block.push(insn(JNE_K, R2, 0, 0, ty));
        if r.access != ACC_ALL {
            // The request must be a subset of the rule's access: (R3 & access) == R3.
            block.push(insn(ALU32_MOV_X, R1, R3, 0, 0));
            block.push(insn(ALU32_AND_K, R1, 0, 0, i32::from(r.access)));
            block.push(insn(JNE_X, R1, R3, 0, 0));
        }
        if let Some(major) = r.meta.1 {
            block.push(insn(JNE_K, R4, 0, 0, major as i32));
        }
        if let Some(minor) = r.meta.2 {
            block.push(insn(JNE_K, R5, 0, 0, minor as i32));
        }
        block.push(insn(ALU32_MOV_K, R0, 0, 0, action));
        block.push(insn(EXIT, 0, 0, 0, 0));
        let len = block.len();
        for (i, ins) in block.iter_mut().enumerate() {
            if ins.code == JNE_K || ins.code == JNE_X {
                ins.off = (len - i - 1) as i16;
            }
        }
        p.extend(block);
    }
    p.push(insn(ALU32_MOV_K, R0, 0, 0, i32::from(rules.default_allow)));
    p.push(insn(EXIT, 0, 0, 0, 0));
    p
}

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_ATTACH: libc::c_long = 8;
const BPF_PROG_DETACH: libc::c_long = 9;
const BPF_PROG_GET_FD_BY_ID: libc::c_long = 13;
const BPF_PROG_QUERY: libc::c_long = 16;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;
const BPF_F_ALLOW_MULTI: u32 = 2;

#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

#[repr(C)]
#[derive(Default)]
struct AttachAttr {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
    replace_bpf_fd: u32,
}

#[repr(C)]
#[derive(Default)]
struct QueryAttr {
    target_fd: u32,
    attach_type: u32,
    query_flags: u32,
    attach_flags: u32,
    prog_ids: u64,
    prog_cnt: u32,
    _pad: u32,
}

#[repr(C)]
#[derive(Default)]
struct GetFdAttr {
    prog_id: u32,
    next_id: u32,
    open_flags: u32,
}

/// bpf(2) with a typed attribute struct; the kernel zero-extends attributes shorter than its own.
fn bpf<T>(cmd: libc::c_long, attr: &mut T) -> std::io::Result<libc::c_long> {
    // SAFETY: attr points to a live, properly sized #[repr(C)] bpf_attr prefix for `cmd`, and the
    // size passed is exactly its size; pointers inside it (if any) are valid for the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut T as *mut libc::c_void,
            std::mem::size_of::<T>() as libc::c_uint,
        )
    };
    if r < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn fd_from(r: libc::c_long) -> std::io::Result<OwnedFd> {
    let raw = i32::try_from(r).map_err(|_| std::io::Error::from_raw_os_error(libc::EBADF))?;
    // SAFETY: bpf() returned a new file descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

fn load(prog: &[Insn]) -> Result<OwnedFd, CgroupError> {
    let license = b"Apache\0";
    let mut log = vec![0u8; 64 * 1024];
    let mut attr = ProgLoadAttr {
        prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
        insn_cnt: prog.len() as u32,
        insns: prog.as_ptr() as u64,
        license: license.as_ptr() as u64,
        ..Default::default()
    };
    attr.prog_name[..10].copy_from_slice(b"berth_devs");
    match bpf(BPF_PROG_LOAD, &mut attr) {
        Ok(fd) => fd_from(fd).map_err(|e| bpf_err("load device program", e)),
        Err(first) => {
            // Load again with the verifier log so the error says why.
            attr.log_level = 1;
            attr.log_size = log.len() as u32;
            attr.log_buf = log.as_mut_ptr() as u64;
            let _ = bpf(BPF_PROG_LOAD, &mut attr);
            let end = log.iter().position(|b| *b == 0).unwrap_or(log.len());
            Err(CgroupError::Bpf(format!(
                "load device program: {first}: {}",
                String::from_utf8_lossy(&log[..end]).trim()
            )))
        }
    }
}

fn bpf_err(what: &str, e: std::io::Error) -> CgroupError {
    CgroupError::Bpf(format!("{what}: {e}"))
}

fn open_dir(dir: &Path) -> Result<OwnedFd, CgroupError> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
        .open(dir)
        .map(OwnedFd::from)
        .map_err(|source| CgroupError::Io {
            op: "open",
            path: dir.to_path_buf(),
            source,
        })
}

/// Ids of the device programs attached to the cgroup itself.
fn query(cg: &OwnedFd) -> Result<Vec<u32>, CgroupError> {
    let mut ids = vec![0u32; 64];
    let mut attr = QueryAttr {
        target_fd: cg.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        prog_ids: ids.as_mut_ptr() as u64,
        prog_cnt: ids.len() as u32,
        ..Default::default()
    };
    bpf(BPF_PROG_QUERY, &mut attr).map_err(|e| bpf_err("query device programs", e))?;
    ids.truncate(attr.prog_cnt as usize);
    Ok(ids)
}

/// Attaches a program for `rules` to the cgroup at `dir`, then detaches the programs that were
/// there before (attach first, so the cgroup is never left without a filter).
pub fn apply(dir: &Path, rules: &DeviceRules) -> Result<(), CgroupError> {
    let prog = generate(rules);
    let cg = open_dir(dir)?;
    let old = query(&cg)?;
    let fd = load(&prog)?;
    let mut attr = AttachAttr {
        target_fd: cg.as_raw_fd() as u32,
        attach_bpf_fd: fd.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        attach_flags: BPF_F_ALLOW_MULTI,
        ..Default::default()
    };
    bpf(BPF_PROG_ATTACH, &mut attr)
        .map_err(|e| bpf_err(&format!("attach device program to {}", dir.display()), e))?;
    for id in old {
        let mut get = GetFdAttr {
            prog_id: id,
            ..Default::default()
        };
        let old_fd = match bpf(BPF_PROG_GET_FD_BY_ID, &mut get) {
            Ok(r) => fd_from(r).map_err(|e| bpf_err("get old device program", e))?,
            // Already gone (raced with another detach): nothing to do.
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => continue,
            Err(e) => return Err(bpf_err("get old device program", e)),
        };
        let mut det = AttachAttr {
            target_fd: cg.as_raw_fd() as u32,
            attach_bpf_fd: old_fd.as_raw_fd() as u32,
            attach_type: BPF_CGROUP_DEVICE,
            ..Default::default()
        };
        bpf(BPF_PROG_DETACH, &mut det).map_err(|e| {
            bpf_err(
                &format!("detach old device program from {}", dir.display()),
                e,
            )
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devices::{DevRule, ACC_READ, ACC_WRITE};

    #[test]
    fn deny_all_program() {
        let p = generate(&DeviceRules::default());
        assert_eq!(p.len(), 8);
        assert_eq!(p[6], insn(ALU32_MOV_K, R0, 0, 0, 0));
        assert_eq!(p[7].code, EXIT);
    }

    #[test]
    fn rule_blocks_jump_past_themselves() {
        let rules = DeviceRules {
            default_allow: false,
            exceptions: vec![
                DevRule {
                    meta: (DevType::Char, Some(1), Some(3)),
                    access: ACC_ALL,
                },
                DevRule {
                    meta: (DevType::Block, Some(8), None),
                    access: ACC_READ | ACC_WRITE,
                },
            ],
        };
        let p = generate(&rules);
        // c 1:3 rwm: type, major, minor, mov, exit
        assert_eq!(p[6], insn(JNE_K, R2, 0, 4, BPF_DEVCG_DEV_CHAR));
        assert_eq!(p[7], insn(JNE_K, R4, 0, 3, 1));
        assert_eq!(p[8], insn(JNE_K, R5, 0, 2, 3));
        assert_eq!(p[9], insn(ALU32_MOV_K, R0, 0, 0, 1));
        assert_eq!(p[10].code, EXIT);
        // b 8:* rw: type, mov/and/jne access, major, mov, exit
        assert_eq!(p[11], insn(JNE_K, R2, 0, 6, BPF_DEVCG_DEV_BLOCK));
        assert_eq!(p[12], insn(ALU32_MOV_X, R1, R3, 0, 0));
        assert_eq!(p[13], insn(ALU32_AND_K, R1, 0, 0, 6));
        assert_eq!(p[14], insn(JNE_X, R1, R3, 3, 0));
        assert_eq!(p[15], insn(JNE_K, R4, 0, 2, 8));
        assert_eq!(p[16], insn(ALU32_MOV_K, R0, 0, 0, 1));
        assert_eq!(p[18], insn(ALU32_MOV_K, R0, 0, 0, 0));
        assert_eq!(p.len(), 20);
    }
}
