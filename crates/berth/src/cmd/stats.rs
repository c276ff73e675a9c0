//! stats: docker's live table of CPU, memory, I/O and pids per container. CPU % needs two samples: `--no-stream`
//! takes them half a second apart and prints once; otherwise the table is redrawn every second.

use std::io::Write;
use std::time::Duration;

use anyhow::Result;
use clap::Args;
use engine::records::Container;
use engine::stats::Sample;
use serde_json::{json, Value};

use super::run::engine;
use super::top::tabwrite;
use super::Ctx;
use crate::output::{bytes_size, human_size};
use crate::template::Template;

#[derive(Args)]
pub struct StatsArgs {
    /// Show all containers (default shows just running)
    #[arg(short = 'a', long)]
    all: bool,
    /// Disable streaming stats and only pull the first result
    #[arg(long = "no-stream")]
    no_stream: bool,
    /// Do not truncate output
    #[arg(long = "no-trunc")]
    no_trunc: bool,
    /// Format output: table, json, or a Go template
    #[arg(long)]
    format: Option<String>,
    containers: Vec<String>,
}

const DEFAULT_TABLE: &str =
    "table {{.ID}}\t{{.Name}}\t{{.CPUPerc}}\t{{.MemUsage}}\t{{.MemPerc}}\t{{.NetIO}}\t{{.BlockIO}}\t{{.PIDs}}";

/// One row as docker's stats formatter exposes it to templates.
fn row(c: &Container, asked: &str, s: &Sample, cpu: f64, trunc: bool) -> Value {
    let id = if trunc {
        c.id.chars().take(12).collect()
    } else {
        c.id.clone()
    };
    json!({
        "Container": asked,
        "Name": c.name,
        "ID": id,
        "CPUPerc": format!("{cpu:.2}%"),
        "MemUsage": format!("{} / {}", bytes_size(s.mem_usage), bytes_size(s.mem_limit)),
        "MemPerc": format!("{:.2}%", s.mem_percent()),
        "NetIO": format!("{} / {}", human_size(s.net_rx), human_size(s.net_tx)),
        "BlockIO": format!("{} / {}", human_size(s.blk_read), human_size(s.blk_write)),
        "PIDs": s.pids.to_string(),
    })
}

fn header() -> Value {
    json!({
        "Container": "CONTAINER", "Name": "NAME", "ID": "CONTAINER ID", "CPUPerc": "CPU %",
        "MemUsage": "MEM USAGE / LIMIT", "MemPerc": "MEM %", "NetIO": "NET I/O", "BlockIO": "BLOCK I/O",
        "PIDs": "PIDS",
    })
}

/// The output for a set of rows in the chosen format.
fn render(format: &str, rows: &[Value]) -> Result<String> {
    let mut out = String::new();
    if format == "json" {
        for r in rows {
            out.push_str(&r.to_string());
            out.push('\n');
        }
        return Ok(out);
    }
    let format = if format == "table" {
        DEFAULT_TABLE
    } else {
        format
    };
    match format.strip_prefix("table") {
        Some(body) => {
            let tpl = Template::parse(body.trim_start())?;
            let mut cells = vec![split_cells(&tpl.render(&header())?)];
            for r in rows {
                cells.push(split_cells(&tpl.render(r)?));
            }
            out.push_str(&tabwrite(&cells, 10, 3));
        }
        None => {
            let tpl = Template::parse(format)?;
            for r in rows {
                out.push_str(&tpl.render(r)?);
                out.push('\n');
            }
        }
    }
    Ok(out)
}

fn split_cells(line: &str) -> Vec<String> {
    line.split('\t').map(str::to_string).collect()
}

/// The containers to show, each with the name the user gave (or its id), re-read on every round.
fn targets(e: &mut engine::container::Engine, a: &StatsArgs) -> Result<Vec<(String, Container)>> {
    if a.containers.is_empty() {
        return Ok(e
            .records()
            .list(a.all)?
            .into_iter()
            .map(|c| (c.id.clone(), c))
            .collect());
    }
    let mut out = Vec::new();
    for n in &a.containers {
        out.push((n.clone(), e.get(n)?));
    }
    Ok(out)
}

fn sample_all(
    e: &engine::container::Engine,
    list: &[(String, Container)],
    host_memory: u64,
) -> Vec<Sample> {
    list.iter()
        .map(|(_, c)| {
            // A container that stopped between listing and sampling shows zeros, as docker's does.
            engine::stats::sample(e, c, host_memory).unwrap_or_default()
        })
        .collect()
}

pub fn stats(ctx: &Ctx, a: StatsArgs) -> Result<i32> {
    let format = a.format.clone().unwrap_or_else(|| "table".into());
    // A bad template fails before any sampling.
    render(&format, &[])?;
    let mut e = engine(ctx)?;
    let host_memory = engine::stats::host_memory();
    let trunc = !a.no_trunc;
    let mut list = match targets(&mut e, &a) {
        Ok(l) => l,
        Err(err) => {
            eprintln!("Error response from daemon: {}", super::error_line(&err));
            return Ok(1);
        }
    };
    let mut prev = sample_all(&e, &list, host_memory);
    let mut out = std::io::stdout();
    loop {
        std::thread::sleep(if a.no_stream {
            Duration::from_millis(500)
        } else {
            Duration::from_secs(1)
        });
        let now = sample_all(&e, &list, host_memory);
        let rows: Vec<Value> = list
            .iter()
            .zip(now.iter().zip(&prev))
            .map(|((asked, c), (s, p))| row(c, asked, s, s.cpu_percent(p), trunc))
            .collect();
        let text = render(&format, &rows)?;
        if a.no_stream {
            out.write_all(text.as_bytes())?;
            return Ok(0);
        }
        // Clear the screen and redraw, as docker does.
        if out
            .write_all(format!("\x1b[2J\x1b[H{text}").as_bytes())
            .and_then(|_| out.flush())
            .is_err()
        {
            return Ok(0);
        }
        // Follow containers that start or stop (without names), keeping samples by id.
        let old: Vec<(String, Sample)> = list.iter().map(|(_, c)| c.id.clone()).zip(now).collect();
        list = match targets(&mut e, &a) {
            Ok(l) => l,
            Err(err) => {
                eprintln!("Error response from daemon: {}", super::error_line(&err));
                return Ok(1);
            }
        };
        prev = list
            .iter()
            .map(|(_, c)| {
                old.iter()
                    .find(|(id, _)| *id == c.id)
                    .map(|(_, s)| s.clone())
                    .unwrap_or_else(|| {
                        engine::stats::sample(&e, c, host_memory).unwrap_or_default()
                    })
            })
            .collect();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_as_go_units_prints_them() {
        assert_eq!(bytes_size(0), "0B");
        assert_eq!(bytes_size(64 << 20), "64MiB");
        assert_eq!(bytes_size(1536 * 1024), "1.5MiB");
        assert_eq!(bytes_size(5_902_336), "5.629MiB");
        assert_eq!(bytes_size(1000), "1000B");
        assert_eq!(bytes_size(2 << 30), "2GiB");
    }

    #[test]
    fn table_json_and_templates() {
        let r = json!({"Container": "c", "Name": "n", "ID": "0123456789ab", "CPUPerc": "0.00%",
            "MemUsage": "1MiB / 64MiB", "MemPerc": "1.56%", "NetIO": "0B / 0B", "BlockIO": "0B / 0B", "PIDs": "1"});
        let t = render("table", std::slice::from_ref(&r)).unwrap();
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(
            lines[0],
            "CONTAINER ID   NAME      CPU %     MEM USAGE / LIMIT   MEM %     NET I/O   BLOCK I/O   PIDS"
        );
        assert_eq!(
            lines[1],
            "0123456789ab   n         0.00%     1MiB / 64MiB        1.56%     0B / 0B   0B / 0B     1"
        );
        let j = render("json", std::slice::from_ref(&r)).unwrap();
        assert_eq!(serde_json::from_str::<Value>(j.trim()).unwrap(), r);
        assert_eq!(
            render("{{.Name}}: {{.PIDs}}", std::slice::from_ref(&r)).unwrap(),
            "n: 1\n"
        );
        assert_eq!(
            render("table {{.Name}}\t{{.PIDs}}", &[r]).unwrap(),
            "NAME      PIDS\nn         1\n"
        );
        assert!(render("{{.Name", &[]).is_err());
    }
}
