//! runc's `events --stats` "data" object, read from whichever driver holds each controller.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{json, Map, Value};

use crate::fsutil::{kv_get, read_kv, read_u64};

/// Where a controller lives: its directory and whether that is v2.
pub type Lookup<'a> = dyn Fn(&str) -> Option<(&'a Path, bool)> + 'a;

fn clk_tck() -> u64 {
    // SAFETY: sysconf has no memory-safety preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as u64
    } else {
        100
    }
}

fn cpu(find: &Lookup) -> Value {
    let mut usage = json!({"total": 0, "kernel": 0, "user": 0});
    let mut thr = json!({"periods": 0, "throttledPeriods": 0, "throttledTime": 0});
    if let Some((dir, true)) = find("cpu") {
        let s = read_kv(dir, "cpu.stat");
        let g = |k| kv_get(&s, k).unwrap_or(0);
        usage = json!({"total": g("usage_usec") * 1000, "kernel": g("system_usec") * 1000, "user": g("user_usec") * 1000});
        thr = json!({"periods": g("nr_periods"), "throttledPeriods": g("nr_throttled"), "throttledTime": g("throttled_usec") * 1000});
        return json!({"usage": usage, "throttling": thr});
    }
    if let Some((dir, false)) = find("cpuacct") {
        let st = read_kv(dir, "cpuacct.stat");
        let ns = |k| kv_get(&st, k).unwrap_or(0) * 1_000_000_000 / clk_tck();
        let percpu: Vec<u64> = std::fs::read_to_string(dir.join("cpuacct.usage_percpu"))
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|v| v.parse().ok())
            .collect();
        usage = json!({
            "total": read_u64(dir, "cpuacct.usage").unwrap_or(0),
            "percpu": percpu,
            "kernel": ns("system"),
            "user": ns("user"),
        });
    }
    if let Some((dir, false)) = find("cpu") {
        let s = read_kv(dir, "cpu.stat");
        let g = |k| kv_get(&s, k).unwrap_or(0);
        thr = json!({"periods": g("nr_periods"), "throttledPeriods": g("nr_throttled"), "throttledTime": g("throttled_time")});
    }
    json!({"usage": usage, "throttling": thr})
}

fn entry(limit: Option<u64>, usage: Option<u64>, max: Option<u64>, failcnt: Option<u64>) -> Value {
    json!({"limit": limit.unwrap_or(0), "usage": usage.unwrap_or(0), "max": max.unwrap_or(0), "failcnt": failcnt.unwrap_or(0)})
}

fn memory(find: &Lookup) -> Value {
    let Some((dir, v2)) = find("memory") else {
        return json!({});
    };
    let raw = read_kv(dir, "memory.stat");
    let raw_map: Map<String, Value> = raw.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
    if v2 {
        let usage = read_u64(dir, "memory.current");
        let limit = read_u64(dir, "memory.max");
        let events = read_kv(dir, "memory.events");
        let swap_cur = read_u64(dir, "memory.swap.current");
        let swap_max = read_u64(dir, "memory.swap.max");
        // runc reports v2 swap as memory+swap so it means the same as on v1.
        let swap_usage = swap_cur.map(|s| s + usage.unwrap_or(0));
        let swap_limit = match (swap_max, limit) {
            (Some(u64::MAX), _) | (_, Some(u64::MAX)) => Some(u64::MAX),
            (Some(s), Some(l)) => Some(s.saturating_add(l)),
            _ => None,
        };
        return json!({
            "cache": kv_get(&raw, "file").unwrap_or(0),
            "usage": entry(limit, usage, read_u64(dir, "memory.peak"), kv_get(&events, "max")),
            "swap": entry(swap_limit, swap_usage, read_u64(dir, "memory.swap.peak"), kv_get(&read_kv(dir, "memory.swap.events"), "max")),
            "kernel": entry(None, kv_get(&raw, "kernel"), None, None),
            "raw": raw_map,
        });
    }
    let e = |p: &str| {
        entry(
            read_u64(dir, &format!("{p}.limit_in_bytes")),
            read_u64(dir, &format!("{p}.usage_in_bytes")),
            read_u64(dir, &format!("{p}.max_usage_in_bytes")),
            read_u64(dir, &format!("{p}.failcnt")),
        )
    };
    json!({
        "cache": kv_get(&raw, "cache").unwrap_or(0),
        "usage": e("memory"),
        "swap": e("memory.memsw"),
        "kernel": e("memory.kmem"),
        "kernelTCP": e("memory.kmem.tcp"),
        "raw": raw_map,
    })
}

fn pids(find: &Lookup) -> Value {
    let Some((dir, _)) = find("pids") else {
        return json!({});
    };
    // runc reports an unlimited pids.max as 0.
    let limit = read_u64(dir, "pids.max")
        .filter(|v| *v != u64::MAX)
        .unwrap_or(0);
    json!({"current": read_u64(dir, "pids.current").unwrap_or(0), "limit": limit})
}

/// v1 blkio "MAJ:MIN Op value" lines (the "Total" line has no device and is skipped).
pub fn parse_blkio_v1(text: &str) -> Vec<Value> {
    text.lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            let dev = it.next()?;
            let op = it.next()?;
            let value: u64 = it.next()?.parse().ok()?;
            let (ma, mi) = dev.split_once(':')?;
            Some(json!({"major": ma.parse::<u64>().ok()?, "minor": mi.parse::<u64>().ok()?, "op": op, "value": value}))
        })
        .collect()
}

/// v2 io.stat "MAJ:MIN rbytes=.. wbytes=.. rios=.. wios=.." → (bytes, ios) entries.
pub fn parse_io_stat(text: &str) -> (Vec<Value>, Vec<Value>) {
    let (mut bytes, mut ios) = (Vec::new(), Vec::new());
    for l in text.lines() {
        let mut it = l.split_whitespace();
        let Some((ma, mi)) = it.next().and_then(|d| d.split_once(':')) else {
            continue;
        };
        let (Ok(ma), Ok(mi)) = (ma.parse::<u64>(), mi.parse::<u64>()) else {
            continue;
        };
        for kv in it {
            let Some((k, v)) = kv.split_once('=') else {
                continue;
            };
            let Ok(v) = v.parse::<u64>() else { continue };
            let (list, op) = match k {
                "rbytes" => (&mut bytes, "Read"),
                "wbytes" => (&mut bytes, "Write"),
                "rios" => (&mut ios, "Read"),
                "wios" => (&mut ios, "Write"),
                _ => continue,
            };
            list.push(json!({"major": ma, "minor": mi, "op": op, "value": v}));
        }
    }
    (bytes, ios)
}

fn blkio(find: &Lookup) -> Value {
    if let Some((dir, false)) = find("blkio") {
        let read =
            |f: &str| parse_blkio_v1(&std::fs::read_to_string(dir.join(f)).unwrap_or_default());
        // Prefer the scheduler's (BFQ) counters when it has any, like runc prefers CFQ's.
        let mut bytes = read("blkio.bfq.io_service_bytes_recursive");
        let mut ios = read("blkio.bfq.io_serviced_recursive");
        if bytes.is_empty() {
            bytes = read("blkio.throttle.io_service_bytes_recursive");
            ios = read("blkio.throttle.io_serviced_recursive");
        }
        return json!({"ioServiceBytesRecursive": bytes, "ioServicedRecursive": ios});
    }
    if let Some((dir, true)) = find("io") {
        let (bytes, ios) =
            parse_io_stat(&std::fs::read_to_string(dir.join("io.stat")).unwrap_or_default());
        return json!({"ioServiceBytesRecursive": bytes, "ioServicedRecursive": ios});
    }
    json!({})
}

fn hugetlb(find: &Lookup) -> Value {
    let Some((dir, v2)) = find("hugetlb") else {
        return json!({});
    };
    let suffix = if v2 { ".max" } else { ".limit_in_bytes" };
    let mut sizes: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let n = e.file_name().into_string().ok()?;
            let size = n.strip_prefix("hugetlb.")?.strip_suffix(suffix)?;
            (!size.contains('.')).then(|| size.to_string())
        })
        .collect();
    sizes.sort();
    let mut out = BTreeMap::new();
    for s in sizes {
        let v = if v2 {
            let ev = read_kv(dir, &format!("hugetlb.{s}.events"));
            json!({"usage": read_u64(dir, &format!("hugetlb.{s}.current")).unwrap_or(0),
                   "max": read_u64(dir, &format!("hugetlb.{s}.max")).unwrap_or(0),
                   "failcnt": kv_get(&ev, "max").unwrap_or(0)})
        } else {
            json!({"usage": read_u64(dir, &format!("hugetlb.{s}.usage_in_bytes")).unwrap_or(0),
                   "max": read_u64(dir, &format!("hugetlb.{s}.max_usage_in_bytes")).unwrap_or(0),
                   "failcnt": read_u64(dir, &format!("hugetlb.{s}.failcnt")).unwrap_or(0)})
        };
        out.insert(s, v);
    }
    json!(out)
}

pub fn collect(find: &Lookup) -> Value {
    json!({
        "cpu": cpu(find),
        "memory": memory(find),
        "pids": pids(find),
        "blkio": blkio(find),
        "hugetlb": hugetlb(find),
    })
}

/// Number of OOM kills from memory.oom_control (v1) or memory.events (v2).
pub fn oom_kills(dir: &Path, v2: bool) -> u64 {
    let file = if v2 {
        "memory.events"
    } else {
        "memory.oom_control"
    };
    kv_get(&read_kv(dir, file), "oom_kill").unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blkio_lines() {
        let v = parse_blkio_v1("8:0 Read 4096\n8:0 Write 0\nTotal 4096\n");
        assert_eq!(v.len(), 2);
        assert_eq!(
            v[0],
            json!({"major": 8, "minor": 0, "op": "Read", "value": 4096})
        );
    }

    #[test]
    fn io_stat_lines() {
        let (b, i) = parse_io_stat("8:16 rbytes=1 wbytes=2 rios=3 wios=4 dbytes=0 dios=0\n");
        assert_eq!(
            b,
            vec![
                json!({"major": 8, "minor": 16, "op": "Read", "value": 1}),
                json!({"major": 8, "minor": 16, "op": "Write", "value": 2})
            ]
        );
        assert_eq!(i.len(), 2);
    }
}
