//! `update`'s flags and --resources JSON -> linux.resources.

use anyhow::{anyhow, Context, Result};
use oci_spec::runtime::{LinuxPids, LinuxResources};

use super::args::UpdateArgs;

/// "512m", "1g", "1024", "-1" (docker's RAMInBytes: binary units).
pub fn parse_size(s: &str) -> Result<i64> {
    let t = s.trim().to_ascii_lowercase();
    if t == "-1" {
        return Ok(-1);
    }
    let t = t.strip_suffix('b').unwrap_or(&t);
    let (num, mult) = match t.chars().last() {
        Some('k') => (&t[..t.len() - 1], 1i64 << 10),
        Some('m') => (&t[..t.len() - 1], 1 << 20),
        Some('g') => (&t[..t.len() - 1], 1 << 30),
        Some('t') => (&t[..t.len() - 1], 1 << 40),
        _ => (t, 1),
    };
    let n: f64 = num.parse().map_err(|_| anyhow!("invalid size {s:?}"))?;
    if n < 0.0 {
        return Err(anyhow!("invalid size {s:?}"));
    }
    Ok((n * mult as f64) as i64)
}

pub fn resources(u: &UpdateArgs) -> Result<LinuxResources> {
    let mut r: LinuxResources = match &u.resources {
        Some(p) => {
            let data = if p.as_os_str() == "-" {
                let mut s = Vec::new();
                std::io::Read::read_to_end(&mut std::io::stdin(), &mut s)?;
                s
            } else {
                std::fs::read(p).with_context(|| format!("read {}", p.display()))?
            };
            serde_json::from_slice(&data)
                .with_context(|| format!("{}: invalid linux.resources JSON", p.display()))?
        }
        None => LinuxResources::default(),
    };
    if u.memory.is_some() || u.memory_reservation.is_some() || u.memory_swap.is_some() {
        let mut m = (*r.memory()).unwrap_or_default();
        if let Some(v) = &u.memory {
            m.set_limit(Some(parse_size(v).context("--memory")?));
        }
        if let Some(v) = &u.memory_reservation {
            m.set_reservation(Some(parse_size(v).context("--memory-reservation")?));
        }
        if let Some(v) = &u.memory_swap {
            m.set_swap(Some(parse_size(v).context("--memory-swap")?));
        }
        r.set_memory(Some(m));
    }
    if u.cpu_period.is_some()
        || u.cpu_quota.is_some()
        || u.cpu_share.is_some()
        || u.cpuset_cpus.is_some()
        || u.cpuset_mems.is_some()
        || u.cpu_rt_period.is_some()
        || u.cpu_rt_runtime.is_some()
    {
        let mut c = r.cpu().clone().unwrap_or_default();
        if let Some(v) = u.cpu_period {
            c.set_period(Some(v));
        }
        if let Some(v) = u.cpu_quota {
            c.set_quota(Some(v));
        }
        if let Some(v) = u.cpu_share {
            c.set_shares(Some(v));
        }
        if let Some(v) = &u.cpuset_cpus {
            c.set_cpus(Some(v.clone()));
        }
        if let Some(v) = &u.cpuset_mems {
            c.set_mems(Some(v.clone()));
        }
        if let Some(v) = u.cpu_rt_period {
            c.set_realtime_period(Some(v));
        }
        if let Some(v) = u.cpu_rt_runtime {
            c.set_realtime_runtime(Some(v));
        }
        r.set_cpu(Some(c));
    }
    if let Some(v) = u.pids_limit {
        let mut p = LinuxPids::default();
        p.set_limit(v);
        r.set_pids(Some(p));
    }
    if let Some(v) = u.blkio_weight {
        let mut b = r.block_io().clone().unwrap_or_default();
        b.set_weight(Some(v));
        r.set_block_io(Some(b));
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1024").unwrap(), 1024);
        assert_eq!(parse_size("512m").unwrap(), 512 << 20);
        assert_eq!(parse_size("1G").unwrap(), 1 << 30);
        assert_eq!(parse_size("2kb").unwrap(), 2048);
        assert_eq!(parse_size("-1").unwrap(), -1);
        assert!(parse_size("lots").is_err());
    }
}
