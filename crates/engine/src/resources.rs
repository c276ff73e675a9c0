//! --memory, --memory-swap, --cpus, --cpu-shares, --pids-limit, --ulimit: parsing and the OCI
//! `linux.resources` / `process.rlimits` they become (moby's daemon_unix.go checks and defaults).

use serde_json::{json, Map, Value};

use crate::spec::{RunOptions, SpecError, Ulimit};

const CPU_PERIOD: i64 = 100_000;
/// docker's minimum memory limit (linuxMinMemory).
const MIN_MEMORY: i64 = 6 * 1024 * 1024;

/// docker's RAMInBytes: a number with an optional unit b, k, m, g, t, p (case-insensitive, an optional
/// trailing "b" as in "512mb"); binary multiples. "512m", "1g", "1024".
pub fn parse_memory(s: &str) -> Result<i64, SpecError> {
    let bad = |why: &str| SpecError::Invalid(format!("invalid memory size {s:?}: {why}"));
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    if num.is_empty() {
        return Err(bad("expected a number with an optional unit (b, k, m, g)"));
    }
    let n: f64 = num.parse().map_err(|_| bad("not a number"))?;
    let mult: f64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" | "kib" => 1024.0,
        "m" | "mb" | "mib" => 1024.0 * 1024.0,
        "g" | "gb" | "gib" => 1024.0 * 1024.0 * 1024.0,
        "t" | "tb" | "tib" => 1024.0f64.powi(4),
        "p" | "pb" | "pib" => 1024.0f64.powi(5),
        _ => return Err(bad(&format!("unknown unit {unit:?} (use b, k, m, g)"))),
    };
    let v = n * mult;
    if !v.is_finite() || v >= i64::MAX as f64 {
        return Err(bad("too large"));
    }
    Ok(v as i64)
}

/// The names docker's go-units ulimit parser knows.
const ULIMITS: &[&str] = &[
    "core",
    "cpu",
    "data",
    "fsize",
    "locks",
    "memlock",
    "msgqueue",
    "nice",
    "nofile",
    "nproc",
    "rss",
    "rtprio",
    "rttime",
    "sigpending",
    "stack",
];

/// "nofile=1024:2048", "nproc=512" (soft = hard), "-1" for unlimited.
pub fn parse_ulimit(s: &str) -> Result<Ulimit, SpecError> {
    let bad = |why: String| SpecError::Invalid(format!("invalid --ulimit {s:?}: {why}"));
    let (name, vals) = s
        .split_once('=')
        .ok_or_else(|| bad("expected name=soft[:hard]".into()))?;
    let name = name.trim().to_ascii_lowercase();
    if !ULIMITS.contains(&name.as_str()) {
        return Err(bad(format!("unknown ulimit type {name:?}")));
    }
    let num = |v: &str| -> Result<i64, SpecError> {
        let n: i64 = v
            .trim()
            .parse()
            .map_err(|_| bad(format!("{v:?} is not a number")))?;
        if n < -1 {
            return Err(bad(format!("{n} is negative")));
        }
        Ok(n)
    };
    let (soft, hard) = match vals.split_once(':') {
        Some((a, b)) => (num(a)?, num(b)?),
        None => {
            let n = num(vals)?;
            (n, n)
        }
    };
    // -1 is unlimited: the largest value.
    let as_u = |n: i64| if n < 0 { u64::MAX } else { n as u64 };
    if as_u(soft) > as_u(hard) {
        return Err(bad(format!(
            "soft limit {soft} is greater than hard limit {hard}"
        )));
    }
    Ok(Ulimit { name, soft, hard })
}

pub fn rlimits(ulimits: &[Ulimit]) -> Vec<Value> {
    let as_u = |n: i64| if n < 0 { u64::MAX } else { n as u64 };
    let mut out: Vec<Value> = Vec::new();
    // A later --ulimit for the same name wins, as in docker (it keys them by name).
    for u in ulimits {
        let typ = format!("RLIMIT_{}", u.name.to_ascii_uppercase());
        out.retain(|r| r["type"] != typ.as_str());
        out.push(json!({"type": typ, "soft": as_u(u.soft), "hard": as_u(u.hard)}));
    }
    out
}

fn host_cpus() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// `linux.resources` without the device rules.
pub fn resources(opts: &RunOptions) -> Result<Map<String, Value>, SpecError> {
    let mut r = Map::new();
    let mut memory = Map::new();
    if let Some(m) = opts.memory {
        if m < MIN_MEMORY {
            return Err(SpecError::Invalid(format!(
                "--memory {m}: minimum memory limit allowed is 6MB"
            )));
        }
        memory.insert("limit".into(), json!(m));
    }
    match (opts.memory, opts.memory_swap) {
        (_, Some(0)) | (_, None) => {
            // docker: swap defaults to twice the memory limit.
            if let Some(m) = opts.memory {
                memory.insert("swap".into(), json!(m.saturating_mul(2)));
            }
        }
        (None, Some(_)) => {
            return Err(SpecError::Invalid(
                "--memory-swap: you should always set --memory when using --memory-swap".into(),
            ))
        }
        (Some(_), Some(-1)) => {
            memory.insert("swap".into(), json!(-1));
        }
        (Some(m), Some(s)) => {
            if s < m {
                return Err(SpecError::Invalid(format!(
                    "--memory-swap {s}: must be larger than or equal to --memory {m} (or -1 for unlimited)"
                )));
            }
            memory.insert("swap".into(), json!(s));
        }
    }
    if !memory.is_empty() {
        r.insert("memory".into(), Value::Object(memory));
    }

    let mut cpu = Map::new();
    if let Some(c) = opts.cpus {
        if c.is_nan() || c <= 0.0 {
            return Err(SpecError::Invalid(format!(
                "--cpus {c}: must be more than 0"
            )));
        }
        let n = host_cpus();
        if c > n as f64 {
            return Err(SpecError::Invalid(format!(
                "--cpus {c}: range of CPUs is from 0.01 to {n}.00, as there are only {n} CPUs available"
            )));
        }
        let quota = (c * CPU_PERIOD as f64).round() as i64;
        if quota < 1000 {
            return Err(SpecError::Invalid(format!(
                "--cpus {c}: range of CPUs is from 0.01 to {n}.00"
            )));
        }
        cpu.insert("quota".into(), json!(quota));
        cpu.insert("period".into(), json!(CPU_PERIOD));
    }
    if let Some(s) = opts.cpu_shares {
        // 0 means "the default" in docker.
        if s > 0 {
            // The kernel's range (docker clamps to it too).
            cpu.insert("shares".into(), json!(s.clamp(2, 262_144)));
        }
    }
    if !cpu.is_empty() {
        r.insert("cpu".into(), Value::Object(cpu));
    }
    if let Some(p) = opts.pids_limit {
        // docker: 0 or -1 (any value <= 0) is unlimited: no limit set.
        if p > 0 {
            r.insert("pids".into(), json!({"limit": p}));
        }
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_units() {
        assert_eq!(parse_memory("512m").unwrap(), 512 << 20);
        assert_eq!(parse_memory("1g").unwrap(), 1 << 30);
        assert_eq!(parse_memory("1G").unwrap(), 1 << 30);
        assert_eq!(parse_memory("64K").unwrap(), 64 << 10);
        assert_eq!(parse_memory("100b").unwrap(), 100);
        assert_eq!(parse_memory("4096").unwrap(), 4096);
        assert_eq!(parse_memory("1.5g").unwrap(), 3 << 29);
        assert_eq!(parse_memory("10mb").unwrap(), 10 << 20);
        for bad in ["12q", "", "m", "-1m", "1.2.3m", "99999999999p"] {
            assert!(parse_memory(bad).is_err(), "{bad}");
        }
        let e = parse_memory("12q").unwrap_err().to_string();
        assert!(e.contains("\"12q\""), "{e}");
    }

    #[test]
    fn ulimits() {
        let u = parse_ulimit("nofile=1024:2048").unwrap();
        assert_eq!((u.name.as_str(), u.soft, u.hard), ("nofile", 1024, 2048));
        let u = parse_ulimit("nproc=512").unwrap();
        assert_eq!((u.soft, u.hard), (512, 512));
        let u = parse_ulimit("core=-1").unwrap();
        assert_eq!((u.soft, u.hard), (-1, -1));
        for bad in [
            "nofile",
            "bogus=1",
            "nofile=2048:1024",
            "nofile=x",
            "nofile=-5",
            "nofile=1:-1x",
        ] {
            let e = parse_ulimit(bad).unwrap_err().to_string();
            assert!(e.contains("--ulimit"), "{e}");
        }
        assert!(parse_ulimit("nofile=10:-1").is_ok());
        let r = rlimits(&[
            parse_ulimit("nofile=1:2").unwrap(),
            parse_ulimit("core=-1").unwrap(),
            parse_ulimit("nofile=3:4").unwrap(),
        ]);
        assert_eq!(
            Value::Array(r),
            json!([
                {"type": "RLIMIT_CORE", "soft": u64::MAX, "hard": u64::MAX},
                {"type": "RLIMIT_NOFILE", "soft": 3, "hard": 4},
            ])
        );
    }

    #[test]
    fn memory_and_swap() {
        let mut o = RunOptions {
            memory: Some(64 << 20),
            ..Default::default()
        };
        let r = resources(&o).unwrap();
        assert_eq!(r["memory"], json!({"limit": 64 << 20, "swap": 128 << 20}));
        o.memory_swap = Some(-1);
        assert_eq!(resources(&o).unwrap()["memory"]["swap"], json!(-1));
        o.memory_swap = Some(100 << 20);
        assert_eq!(resources(&o).unwrap()["memory"]["swap"], json!(100 << 20));
        o.memory_swap = Some(1 << 20);
        assert!(resources(&o)
            .unwrap_err()
            .to_string()
            .contains("--memory-swap"));
        o.memory = None;
        assert!(resources(&o).is_err());
        o.memory_swap = None;
        o.memory = Some(1 << 20);
        assert!(resources(&o).unwrap_err().to_string().contains("6MB"));
        assert!(resources(&RunOptions::default()).unwrap().is_empty());
    }

    #[test]
    fn cpus_shares_pids() {
        let o = RunOptions {
            cpus: Some(0.5),
            cpu_shares: Some(512),
            pids_limit: Some(100),
            ..Default::default()
        };
        let r = resources(&o).unwrap();
        assert_eq!(
            r["cpu"],
            json!({"quota": 50000, "period": 100000, "shares": 512})
        );
        assert_eq!(r["pids"], json!({"limit": 100}));
        let e = resources(&RunOptions {
            cpus: Some(0.0),
            ..Default::default()
        })
        .unwrap_err()
        .to_string();
        assert_eq!(e, "--cpus 0: must be more than 0");
        assert!(resources(&RunOptions {
            cpus: Some(100000.0),
            ..Default::default()
        })
        .is_err());
        let r = resources(&RunOptions {
            pids_limit: Some(-1),
            cpu_shares: Some(0),
            ..Default::default()
        })
        .unwrap();
        assert!(r.is_empty());
    }
}
