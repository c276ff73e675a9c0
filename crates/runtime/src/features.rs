//! `berth-runtime features`: the runtime-spec features document, from what this kernel and host offer.

pub fn document() -> serde_json::Value {
    let mut namespaces = crate::namespaces::all_names();
    if !std::path::Path::new("/proc/self/ns/time").exists() {
        namespaces.retain(|n| *n != "time");
    }
    serde_json::json!({
        "ociVersionMin": "1.0.0",
        "ociVersionMax": crate::spec::OCI_VERSION,
        "hooks": ["prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"],
        "mountOptions": crate::rootfs::options::KNOWN,
        "linux": {
            "namespaces": namespaces,
            "capabilities": crate::capabilities::all_names(),
            "cgroup": cgroups::features(),
            "seccomp": seccomp::features(),
            "apparmor": {"enabled": false},
            "selinux": {"enabled": false},
            "intelRdt": {"enabled": false},
            "mountExtensions": {"idmap": {"enabled": true}},
            "netDevices": {"enabled": true},
            "memoryPolicy": {"enabled": false}
        },
        "annotations": {
            "io.github.berth.runtime.version": env!("CARGO_PKG_VERSION")
        }
    })
}
