//! top: the container's processes as the host's `ps` shows them, as dockerd's ContainerTop does: the pids
//! from the runtime, `ps` with the user's options (`-ef` by default), then the header and the rows whose PID
//! column is one of them.

use std::process::Command;

use anyhow::Result;
use clap::Args;
use engine::records::Status;

use super::run::engine;
use super::Ctx;

#[derive(Args)]
pub struct TopArgs {
    container: String,
    /// Options for ps (default -ef)
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    ps_options: Vec<String>,
}

/// Rows through Go's text/tabwriter as docker's commands set it up (see [`crate::output::tabwrite`]), each
/// line ended by a newline.
pub fn tabwrite(rows: &[Vec<String>], minwidth: usize, padding: usize) -> String {
    let text: Vec<String> = rows.iter().map(|r| r.join("\t")).collect();
    let mut out = crate::output::tabwrite(&text.join("\n"), minwidth, padding);
    if !rows.is_empty() {
        out.push('\n');
    }
    out
}

/// dockerd refuses `-o x=PID...` style renames of the PID column it needs (validatePSArgs).
fn validate(ps_args: &str) -> Result<(), String> {
    let words: Vec<&str> = ps_args.split_whitespace().collect();
    for w in &words {
        for part in w.split(',') {
            if let Some((k, v)) = part.split_once('=') {
                if v.starts_with("PID") && k != "pid" {
                    return Err(format!("specifying \"{k}={v}\" is not allowed"));
                }
            }
        }
    }
    Ok(())
}

/// docker's parsePSOutput: the PID column found in the header, rows kept by pid; a row whose PID is "-" (a
/// thread line of `ps m`) follows the process before it. Fields past the header's count join the last column.
fn parse_ps(output: &str, pids: &[i64]) -> Result<(Vec<String>, Vec<Vec<String>>), String> {
    let mut lines = output.lines();
    let titles: Vec<String> = lines
        .next()
        .unwrap_or("")
        .split_whitespace()
        .map(str::to_string)
        .collect();
    let pid_col = titles
        .iter()
        .position(|t| t == "PID")
        .ok_or_else(|| "Couldn't find PID field in ps output".to_string())?;
    let mut rows = Vec::new();
    let mut previous_kept = false;
    for line in lines {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.is_empty() {
            continue;
        }
        let Some(p) = fields.get(pid_col) else {
            continue;
        };
        let keep = if *p == "-" {
            previous_kept
        } else {
            let pid: i64 = p
                .parse()
                .map_err(|_| format!("Unexpected pid '{p}': not a number"))?;
            previous_kept = pids.contains(&pid);
            previous_kept
        };
        if keep {
            let n = titles.len().max(1);
            let mut row: Vec<String> = fields.iter().take(n - 1).map(|s| s.to_string()).collect();
            row.push(fields.get(n - 1..).map(|r| r.join(" ")).unwrap_or_default());
            rows.push(row);
        }
    }
    Ok((titles, rows))
}

fn ps(args: &[String]) -> Result<String, String> {
    let out = Command::new("ps")
        .args(args)
        .output()
        .map_err(|e| format!("ps: {e}"))?;
    if out.status.success() {
        return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
    }
    let err = String::from_utf8_lossy(&out.stderr);
    Err(format!(
        "ps: {}",
        err.lines().next().unwrap_or("failed").trim()
    ))
}

fn top_rows(ctx: &Ctx, a: &TopArgs) -> Result<(Vec<String>, Vec<Vec<String>>), String> {
    let ps_args = if a.ps_options.is_empty() {
        "-ef".to_string()
    } else {
        a.ps_options.join(" ")
    };
    validate(&ps_args)?;
    let e = engine(ctx).map_err(|e| super::error_line(&e))?;
    let c = e.get(&a.container).map_err(|e| e.to_string())?;
    match c.status {
        Status::Running | Status::Paused => {}
        Status::Restarting => {
            return Err(format!(
                "Container {} is restarting, wait until the container is running",
                c.id
            ))
        }
        _ => return Err(format!("container {} is not running", c.id)),
    }
    let pids = e
        .oci(&c)
        .and_then(|o| Ok(o.pids(&c.id)?))
        .map_err(|e| e.to_string())?;
    let args: Vec<String> = ps_args.split(' ').map(str::to_string).collect();
    // `-q PIDS` lets ps look at only these; some options (f) do not combine with it, so without on failure.
    let pid_list = pids
        .iter()
        .map(i64::to_string)
        .collect::<Vec<_>>()
        .join(",");
    let mut with_q = args.clone();
    with_q.push(format!("-q{pid_list}"));
    let output = match ps(&with_q) {
        Ok(o) => o,
        Err(_) => ps(&args)?,
    };
    parse_ps(&output, &pids)
}

pub fn top(ctx: &Ctx, a: TopArgs) -> Result<i32> {
    match top_rows(ctx, &a) {
        Ok((titles, rows)) => {
            let mut all = vec![titles];
            all.extend(rows);
            print!("{}", tabwrite(&all, 20, 3));
            Ok(0)
        }
        Err(msg) => {
            eprintln!("Error response from daemon: {msg}");
            Ok(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tabwrite_pads_all_but_the_last_cell() {
        let rows = vec![
            vec!["UID".to_string(), "PID".into(), "CMD".into()],
            vec!["root".to_string(), "12345".into(), "sleep 300".into()],
        ];
        assert_eq!(
            tabwrite(&rows, 20, 3),
            format!(
                "UID{}PID{}CMD\nroot{}12345{}sleep 300\n",
                " ".repeat(17),
                " ".repeat(17),
                " ".repeat(16),
                " ".repeat(15)
            )
        );
        assert_eq!(
            tabwrite(&rows, 0, 1),
            "UID  PID   CMD\nroot 12345 sleep 300\n"
        );
    }

    #[test]
    fn ps_rows_are_filtered_by_pid_and_merge_extra_fields() {
        let out =
            "UID PID PPID CMD\nroot 1 0 /sbin/init\nroot 42 1 sleep 300\nroot 43 42 sh -c x y\n";
        let (t, rows) = parse_ps(out, &[42, 43]).unwrap();
        assert_eq!(t, vec!["UID", "PID", "PPID", "CMD"]);
        assert_eq!(
            rows,
            vec![
                vec!["root", "42", "1", "sleep 300"],
                vec!["root", "43", "42", "sh -c x y"]
            ]
        );
        // Thread lines ("-" as PID) follow their process.
        let out = "PID TID CMD\n42 - sleep\n- 42 -\n7 - other\n- 7 -\n";
        let (_, rows) = parse_ps(out, &[42]).unwrap();
        assert_eq!(rows.len(), 2);
        assert!(parse_ps("UID CMD\nroot x\n", &[1])
            .unwrap_err()
            .contains("PID"));
        assert!(parse_ps("PID CMD\nabc x\n", &[1])
            .unwrap_err()
            .contains("abc"));
    }

    #[test]
    fn renaming_the_pid_column_is_refused() {
        assert!(validate("-o pid,comm").is_ok());
        assert!(validate("-o pid=PID,comm").is_ok());
        assert!(validate("-o comm=PID").unwrap_err().contains("comm=PID"));
    }
}
