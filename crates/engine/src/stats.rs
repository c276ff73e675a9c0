//! `docker stats`: one sample of a container's usage from the runtime's `events --stats` (runc's stats JSON)
//! and the host, and docker's arithmetic over two samples (CPU %) and one (memory without the page cache,
//! block and network I/O).

use serde_json::Value;

use crate::container::{settings_of, Engine, EngineError};
use crate::records::{Container, Status};
use crate::spec::NetworkMode;

/// What docker's CLI shows of one container at one moment. All zero for a container that is not running.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Sample {
    /// The container's CPU time, nanoseconds.
    pub cpu_total: u64,
    /// The host's CPU time (all CPUs, idle included), nanoseconds, as docker's getSystemCPUUsage.
    pub system_cpu: u64,
    pub online_cpus: u32,
    /// Memory in use without the inactive page cache (docker's calculateMemUsageUnixNoCache).
    pub mem_usage: u64,
    /// The cgroup's limit, or the host's memory when that is lower (no limit).
    pub mem_limit: u64,
    pub pids: u64,
    pub blk_read: u64,
    pub blk_write: u64,
    pub net_rx: u64,
    pub net_tx: u64,
}

impl Sample {
    /// docker's calculateCPUPercentUnix: the container's share of the host's CPU time between two samples,
    /// times the number of CPUs (100% is one CPU busy).
    pub fn cpu_percent(&self, prev: &Sample) -> f64 {
        let cpu = self.cpu_total.saturating_sub(prev.cpu_total) as f64;
        let system = self.system_cpu.saturating_sub(prev.system_cpu) as f64;
        if cpu > 0.0 && system > 0.0 {
            cpu / system * f64::from(self.online_cpus.max(1)) * 100.0
        } else {
            0.0
        }
    }

    pub fn mem_percent(&self) -> f64 {
        if self.mem_limit == 0 {
            0.0
        } else {
            self.mem_usage as f64 / self.mem_limit as f64 * 100.0
        }
    }
}

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or(0)
}

/// Fills a sample from runc's stats "data" object (cgroup v1 or v2 numbers).
pub fn from_runtime(data: &Value, host_memory: u64) -> Sample {
    let mem = &data["memory"];
    let usage = u(&mem["usage"]["usage"]);
    // v1 reports the hierarchy's total_inactive_file, v2 inactive_file; the page cache is not "used".
    let inactive = mem["raw"]
        .get("total_inactive_file")
        .or_else(|| mem["raw"].get("inactive_file"))
        .map(u)
        .unwrap_or(0);
    let mem_usage = if inactive < usage {
        usage - inactive
    } else {
        usage
    };
    let mut mem_limit = u(&mem["usage"]["limit"]);
    if mem_limit == 0 || (host_memory > 0 && mem_limit > host_memory) {
        mem_limit = host_memory;
    }
    let (mut blk_read, mut blk_write) = (0, 0);
    for e in data["blkio"]["ioServiceBytesRecursive"]
        .as_array()
        .into_iter()
        .flatten()
    {
        match e["op"].as_str().map(str::to_ascii_lowercase).as_deref() {
            Some("read") => blk_read += u(&e["value"]),
            Some("write") => blk_write += u(&e["value"]),
            _ => {}
        }
    }
    Sample {
        cpu_total: u(&data["cpu"]["usage"]["total"]),
        system_cpu: 0,
        online_cpus: 0,
        mem_usage,
        mem_limit,
        pids: u(&data["pids"]["current"]),
        blk_read,
        blk_write,
        net_rx: 0,
        net_tx: 0,
    }
}

/// The host's CPU time from /proc/stat's first line (user to softirq), in nanoseconds.
pub fn system_cpu_usage() -> u64 {
    let text = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    parse_proc_stat(&text)
}

fn clk_tck() -> u64 {
    // SAFETY: sysconf has no memory-safety preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as u64
    } else {
        100
    }
}

fn parse_proc_stat(text: &str) -> u64 {
    let Some(line) = text.lines().find(|l| l.starts_with("cpu ")) else {
        return 0;
    };
    let ticks: u64 = line
        .split_whitespace()
        .skip(1)
        .take(7)
        .filter_map(|v| v.parse::<u64>().ok())
        .sum();
    ticks.saturating_mul(1_000_000_000) / clk_tck()
}

pub fn online_cpus() -> u32 {
    // SAFETY: sysconf has no memory-safety preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    u32::try_from(n).unwrap_or(1).max(1)
}

/// MemTotal from /proc/meminfo, bytes.
pub fn host_memory() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            let kb = l.strip_prefix("MemTotal:")?.trim().strip_suffix("kB")?;
            kb.trim().parse::<u64>().ok()
        })
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

/// Bytes received and sent on every interface but `lo` of a /proc/<pid>/net/dev.
fn parse_net_dev(text: &str) -> (u64, u64) {
    let (mut rx, mut tx) = (0, 0);
    for line in text.lines().skip(2) {
        let Some((name, rest)) = line.split_once(':') else {
            continue;
        };
        if name.trim() == "lo" {
            continue;
        }
        let f: Vec<u64> = rest
            .split_whitespace()
            .filter_map(|v| v.parse().ok())
            .collect();
        if f.len() >= 9 {
            rx += f[0];
            tx += f[8];
        }
    }
    (rx, tx)
}

/// One sample of `c`: zeros when it is not running (as dockerd reports a stopped container).
pub fn sample(engine: &Engine, c: &Container, host_memory: u64) -> Result<Sample, EngineError> {
    if !matches!(c.status, Status::Running | Status::Paused) {
        return Ok(Sample::default());
    }
    let data = engine.oci(c)?.stats(&c.id)?;
    let mut s = from_runtime(&data["data"], host_memory);
    s.system_cpu = system_cpu_usage();
    s.online_cpus = online_cpus();
    // docker counts the container's own interfaces; with the host's network it has none of its own.
    if settings_of(c).run.network != NetworkMode::Host {
        if let Some(pid) = c.pid {
            let text = std::fs::read_to_string(format!("/proc/{pid}/net/dev")).unwrap_or_default();
            (s.net_rx, s.net_tx) = parse_net_dev(&text);
        }
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn runc_stats_become_dockers_numbers() {
        let data = json!({
            "cpu": {"usage": {"total": 5_000_000u64}},
            "memory": {"usage": {"usage": 10_000u64, "limit": 67_108_864u64},
                       "raw": {"total_inactive_file": 4_000u64, "inactive_file": 1u64}},
            "pids": {"current": 3},
            "blkio": {"ioServiceBytesRecursive": [
                {"major": 8, "minor": 0, "op": "Read", "value": 100},
                {"major": 8, "minor": 0, "op": "Write", "value": 7},
                {"major": 8, "minor": 0, "op": "Total", "value": 107},
                {"major": 8, "minor": 16, "op": "read", "value": 1}]}
        });
        let s = from_runtime(&data, 1 << 40);
        assert_eq!(s.mem_usage, 6_000);
        assert_eq!(s.mem_limit, 64 << 20);
        assert_eq!((s.pids, s.blk_read, s.blk_write), (3, 101, 7));
        // No limit (v1's huge number): the host's memory.
        let data =
            json!({"memory": {"usage": {"usage": 5u64, "limit": 9_223_372_036_854_771_712u64}}});
        assert_eq!(from_runtime(&data, 1 << 30).mem_limit, 1 << 30);
        assert_eq!(from_runtime(&json!({}), 1 << 30).mem_usage, 0);
    }

    #[test]
    fn cpu_percent_is_share_of_host_time_times_cpus() {
        let a = Sample {
            cpu_total: 1_000,
            system_cpu: 10_000,
            online_cpus: 2,
            ..Default::default()
        };
        let b = Sample {
            cpu_total: 1_500,
            system_cpu: 12_000,
            online_cpus: 2,
            ..Default::default()
        };
        assert!((b.cpu_percent(&a) - 50.0).abs() < 1e-9);
        assert_eq!(a.cpu_percent(&a), 0.0);
        let m = Sample {
            mem_usage: 16 << 20,
            mem_limit: 64 << 20,
            ..Default::default()
        };
        assert!((m.mem_percent() - 25.0).abs() < 1e-9);
        assert_eq!(Sample::default().mem_percent(), 0.0);
    }

    #[test]
    fn proc_files_parse() {
        let stat = "cpu  100 0 50 850 0 0 0 7 0 0\ncpu0 1 2 3\n";
        assert_eq!(parse_proc_stat(stat), 1000 * 1_000_000_000 / clk_tck());
        let dev = "Inter-|   Receive ...\n face |bytes ...\n    lo: 500 5 0 0 0 0 0 0 500 5 0 0 0 0 0 0\n  eth0: 1200 10 0 0 0 0 0 0 3400 20 0 0 0 0 0 0\n";
        assert_eq!(parse_net_dev(dev), (1200, 3400));
        assert!(host_memory() > 0);
        assert!(online_cpus() >= 1);
    }
}
