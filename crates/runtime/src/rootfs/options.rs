//! Mount options as config.json writes them -> mount(2) flags, propagation, recursive attributes and data.

use nix::mount::MsFlags;

use crate::syscall::*;

#[derive(Debug, Clone)]
pub struct Options {
    pub flags: MsFlags,
    /// Flags the options explicitly clear (`rw`, `suid`, ...), so a remount does not re-add them.
    pub clear: MsFlags,
    pub propagation: Vec<MsFlags>,
    pub rec_set: u64,
    pub rec_clr: u64,
    pub data: Vec<String>,
    pub tmpcopyup: bool,
    pub idmap: Option<bool>, // Some(recursive)
}

impl Default for Options {
    fn default() -> Self {
        Options {
            flags: MsFlags::empty(),
            clear: MsFlags::empty(),
            propagation: Vec::new(),
            rec_set: 0,
            rec_clr: 0,
            data: Vec::new(),
            tmpcopyup: false,
            idmap: None,
        }
    }
}

impl Options {
    pub fn bind(&self) -> bool {
        self.flags.contains(MsFlags::MS_BIND)
    }
    pub fn recursive_bind(&self) -> bool {
        self.flags.contains(MsFlags::MS_BIND | MsFlags::MS_REC)
    }
    pub fn data_string(&self) -> Option<String> {
        if self.data.is_empty() {
            None
        } else {
            Some(self.data.join(","))
        }
    }
}

/// Every option name berth understands, for `features`.
pub const KNOWN: &[&str] = &[
    "async",
    "atime",
    "bind",
    "defaults",
    "dev",
    "diratime",
    "dirsync",
    "exec",
    "iversion",
    "lazytime",
    "loud",
    "mand",
    "noatime",
    "nodev",
    "nodiratime",
    "noexec",
    "noiversion",
    "nolazytime",
    "nomand",
    "norelatime",
    "nostrictatime",
    "nosuid",
    "nosymfollow",
    "rbind",
    "relatime",
    "remount",
    "ro",
    "rw",
    "silent",
    "strictatime",
    "suid",
    "sync",
    "symfollow",
    "private",
    "shared",
    "slave",
    "unbindable",
    "rprivate",
    "rshared",
    "rslave",
    "runbindable",
    "rro",
    "rrw",
    "rnosuid",
    "rsuid",
    "rnodev",
    "rdev",
    "rnoexec",
    "rexec",
    "rnodiratime",
    "rdiratime",
    "rrelatime",
    "rnorelatime",
    "rnoatime",
    "ratime",
    "rstrictatime",
    "rnostrictatime",
    "rnosymfollow",
    "rsymfollow",
    "tmpcopyup",
    "idmap",
    "ridmap",
];

pub fn parse(opts: &[String]) -> Options {
    let mut o = Options::default();
    for opt in opts {
        let set = |o: &mut Options, f: MsFlags| {
            o.flags.insert(f);
            o.clear.remove(f);
        };
        let clr = |o: &mut Options, f: MsFlags| {
            o.flags.remove(f);
            o.clear.insert(f);
        };
        match opt.as_str() {
            "async" => clr(&mut o, MsFlags::MS_SYNCHRONOUS),
            "atime" => clr(&mut o, MsFlags::MS_NOATIME),
            "bind" => set(&mut o, MsFlags::MS_BIND),
            "defaults" => {}
            "dev" => clr(&mut o, MsFlags::MS_NODEV),
            "diratime" => clr(&mut o, MsFlags::MS_NODIRATIME),
            "dirsync" => set(&mut o, MsFlags::MS_DIRSYNC),
            "exec" => clr(&mut o, MsFlags::MS_NOEXEC),
            "iversion" => set(&mut o, MsFlags::MS_I_VERSION),
            "lazytime" => set(&mut o, MsFlags::MS_LAZYTIME),
            "loud" => clr(&mut o, MsFlags::MS_SILENT),
            "mand" => set(&mut o, MsFlags::MS_MANDLOCK),
            "noatime" => set(&mut o, MsFlags::MS_NOATIME),
            "nodev" => set(&mut o, MsFlags::MS_NODEV),
            "nodiratime" => set(&mut o, MsFlags::MS_NODIRATIME),
            "noexec" => set(&mut o, MsFlags::MS_NOEXEC),
            "noiversion" => clr(&mut o, MsFlags::MS_I_VERSION),
            "nolazytime" => clr(&mut o, MsFlags::MS_LAZYTIME),
            "nomand" => clr(&mut o, MsFlags::MS_MANDLOCK),
            "norelatime" => clr(&mut o, MsFlags::MS_RELATIME),
            "nostrictatime" => clr(&mut o, MsFlags::MS_STRICTATIME),
            "nosuid" => set(&mut o, MsFlags::MS_NOSUID),
            "nosymfollow" => set(&mut o, MsFlags::from_bits_retain(libc::MS_NOSYMFOLLOW)),
            "symfollow" => clr(&mut o, MsFlags::from_bits_retain(libc::MS_NOSYMFOLLOW)),
            "rbind" => set(&mut o, MsFlags::MS_BIND | MsFlags::MS_REC),
            "relatime" => set(&mut o, MsFlags::MS_RELATIME),
            "remount" => set(&mut o, MsFlags::MS_REMOUNT),
            "ro" => set(&mut o, MsFlags::MS_RDONLY),
            "rw" => clr(&mut o, MsFlags::MS_RDONLY),
            "silent" => set(&mut o, MsFlags::MS_SILENT),
            "strictatime" => set(&mut o, MsFlags::MS_STRICTATIME),
            "suid" => clr(&mut o, MsFlags::MS_NOSUID),
            "sync" => set(&mut o, MsFlags::MS_SYNCHRONOUS),
            "private" => o.propagation.push(MsFlags::MS_PRIVATE),
            "shared" => o.propagation.push(MsFlags::MS_SHARED),
            "slave" => o.propagation.push(MsFlags::MS_SLAVE),
            "unbindable" => o.propagation.push(MsFlags::MS_UNBINDABLE),
            "rprivate" => o.propagation.push(MsFlags::MS_PRIVATE | MsFlags::MS_REC),
            "rshared" => o.propagation.push(MsFlags::MS_SHARED | MsFlags::MS_REC),
            "rslave" => o.propagation.push(MsFlags::MS_SLAVE | MsFlags::MS_REC),
            "runbindable" => o.propagation.push(MsFlags::MS_UNBINDABLE | MsFlags::MS_REC),
            "rro" => o.rec_set |= MOUNT_ATTR_RDONLY,
            "rrw" => o.rec_clr |= MOUNT_ATTR_RDONLY,
            "rnosuid" => o.rec_set |= MOUNT_ATTR_NOSUID,
            "rsuid" => o.rec_clr |= MOUNT_ATTR_NOSUID,
            "rnodev" => o.rec_set |= MOUNT_ATTR_NODEV,
            "rdev" => o.rec_clr |= MOUNT_ATTR_NODEV,
            "rnoexec" => o.rec_set |= MOUNT_ATTR_NOEXEC,
            "rexec" => o.rec_clr |= MOUNT_ATTR_NOEXEC,
            "rnodiratime" => o.rec_set |= MOUNT_ATTR_NODIRATIME,
            "rdiratime" => o.rec_clr |= MOUNT_ATTR_NODIRATIME,
            "rrelatime" => {
                o.rec_clr |= MOUNT_ATTR__ATIME;
                o.rec_set |= MOUNT_ATTR_RELATIME
            }
            "rnorelatime" => o.rec_clr |= MOUNT_ATTR__ATIME,
            "rnoatime" => {
                o.rec_clr |= MOUNT_ATTR__ATIME;
                o.rec_set |= MOUNT_ATTR_NOATIME
            }
            "ratime" => o.rec_clr |= MOUNT_ATTR__ATIME,
            "rstrictatime" => {
                o.rec_clr |= MOUNT_ATTR__ATIME;
                o.rec_set |= MOUNT_ATTR_STRICTATIME
            }
            "rnostrictatime" => o.rec_clr |= MOUNT_ATTR__ATIME,
            "rnosymfollow" => o.rec_set |= MOUNT_ATTR_NOSYMFOLLOW,
            "rsymfollow" => o.rec_clr |= MOUNT_ATTR_NOSYMFOLLOW,
            "tmpcopyup" => o.tmpcopyup = true,
            "idmap" => o.idmap = Some(false),
            "ridmap" => o.idmap = Some(true),
            other => o.data.push(other.to_string()),
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(v: &[&str]) -> Options {
        parse(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn flags_data_propagation() {
        let o = p(&[
            "nosuid",
            "noexec",
            "mode=755",
            "size=65536k",
            "ro",
            "rslave",
        ]);
        assert!(o
            .flags
            .contains(MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC | MsFlags::MS_RDONLY));
        assert_eq!(o.data_string().as_deref(), Some("mode=755,size=65536k"));
        assert_eq!(o.propagation, vec![MsFlags::MS_SLAVE | MsFlags::MS_REC]);
        let o = p(&["rbind", "ro", "rw"]);
        assert!(o.recursive_bind());
        assert!(!o.flags.contains(MsFlags::MS_RDONLY));
        let o = p(&["bind", "rro", "ridmap"]);
        assert_eq!(o.rec_set, MOUNT_ATTR_RDONLY);
        assert_eq!(o.idmap, Some(true));
    }
}
