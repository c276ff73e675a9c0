//! `berth stats --no-stream` against real containers: docker's columns, formats and the memory limit.

mod common;

use common::*;
use serde_json::Value;

const HEADER: [&str; 8] = [
    "CONTAINER ID",
    "NAME",
    "CPU %",
    "MEM USAGE / LIMIT",
    "MEM %",
    "NET I/O",
    "BLOCK I/O",
    "PIDS",
];

/// Table cells: docker's tabwriter separates them with at least three spaces.
fn cells(line: &str) -> Vec<String> {
    line.split("   ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(str::to_string)
        .collect()
}

#[test]
fn stats_shows_dockers_columns_and_the_memory_limit() {
    let env = Env::new();
    env.load_busybox();
    let id = env.ok(&[
        "run",
        "-d",
        "--name",
        "st1",
        "--network",
        "none",
        "--memory",
        "64m",
        "busybox",
        "sleep",
        "300",
    ]);
    let id = id.trim();
    let out = env.ok(&["stats", "--no-stream", "st1"]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert_eq!(cells(lines[0]), HEADER, "{out}");
    let row = cells(lines[1]);
    assert_eq!(row.len(), 8, "{out}");
    assert_eq!(row[0], &id[..12]);
    assert_eq!(row[1], "st1");
    assert!(row[2].ends_with('%'), "{out}");
    assert!(row[3].ends_with(" / 64MiB"), "{out}");
    assert!(row[4].ends_with('%'), "{out}");
    assert_eq!(row[5], "0B / 0B", "--network none has no traffic: {out}");
    let pids: u64 = row[7].parse().expect("PIDS is a number");
    assert!(pids >= 1, "{out}");

    // json, a template, --no-trunc; `container stats` is the same command.
    let out = env.ok(&[
        "container",
        "stats",
        "--no-stream",
        "--format",
        "json",
        "--no-trunc",
        id,
    ]);
    let v: Value = serde_json::from_str(out.trim()).expect("one JSON object");
    assert_eq!(v["ID"], id);
    assert_eq!(v["Name"], "st1");
    assert_eq!(v["Container"], id);
    assert!(v["MemUsage"].as_str().unwrap().ends_with("/ 64MiB"), "{v}");
    assert!(v["PIDs"].as_str().unwrap().parse::<u64>().unwrap() >= 1);
    for k in ["CPUPerc", "MemPerc", "NetIO", "BlockIO"] {
        assert!(v[k].is_string(), "{k}: {v}");
    }
    let out = env.ok(&[
        "stats",
        "--no-stream",
        "--format",
        "{{.Name}}={{.PIDs}}",
        "st1",
    ]);
    assert!(out.starts_with("st1="), "{out}");
    let out = env.ok(&[
        "stats",
        "--no-stream",
        "--format",
        "table {{.Name}}\t{{.MemUsage}}",
        "st1",
    ]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(cells(lines[0]), ["NAME", "MEM USAGE / LIMIT"], "{out}");
}

#[test]
fn stats_without_names_lists_running_or_all() {
    let env = Env::new();
    env.load_busybox();
    env.ok(&["run", "-d", "--name", "up", "busybox", "sleep", "300"]);
    env.ok(&["create", "--name", "down", "busybox", "true"]);
    let out = env.ok(&["stats", "--no-stream"]);
    let names: Vec<String> = out.lines().skip(1).map(|l| cells(l)[1].clone()).collect();
    assert_eq!(names, ["up"], "{out}");
    let out = env.ok(&[
        "stats",
        "--no-stream",
        "-a",
        "--format",
        "{{.Name}} {{.CPUPerc}} {{.MemUsage}} {{.PIDs}}",
    ]);
    let mut lines: Vec<&str> = out.lines().collect();
    lines.sort();
    assert_eq!(lines.len(), 2, "{out}");
    // A container that does not run shows docker's zeros.
    assert_eq!(lines[0], "down 0.00% 0B / 0B 0", "{out}");
    assert!(lines[1].starts_with("up "), "{out}");
}

#[test]
fn stats_bad_input() {
    let env = Env::new();
    env.load_busybox();
    let e = env.fails(&["stats", "--no-stream", "nope"]);
    assert_eq!(e, "Error response from daemon: No such container: nope\n");
    let e = env.fails(&["stats", "--no-stream", "--format", "{{.Name"]);
    assert_eq!(e.lines().count(), 1, "{e}");
    let o = env.run(&["stats", "--bogus"]);
    assert_eq!(o.status.code(), Some(125), "{}", stderr(&o));
}
