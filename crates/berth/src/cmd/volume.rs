//! `berth volume create|ls|inspect|rm|prune`: docker's flags, output and exit codes over the engine's volume
//! records. Errors the daemon would give are printed as docker prints them ("Error response from daemon: ...",
//! exit 1); malformed flag values exit 125, as docker's flag parser does.

use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead, Write};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use engine::container::ANONYMOUS_LABEL;
use engine::records::{RecordsError, Volume};
use serde_json::{json, Value};

use super::run::engine;
use super::Ctx;
use crate::template::Template;

#[derive(Subcommand)]
pub enum VolumeCommand {
    /// Create a volume
    Create(CreateArgs),
    /// List volumes
    #[command(alias = "list")]
    Ls(LsArgs),
    /// Display detailed information on one or more volumes
    Inspect(InspectArgs),
    /// Remove one or more volumes
    #[command(alias = "remove")]
    Rm(RmArgs),
    /// Remove unused local volumes
    Prune(PruneArgs),
}

#[derive(Args)]
pub struct CreateArgs {
    /// Specify volume driver name
    #[arg(short = 'd', long, default_value = "local")]
    driver: String,
    /// Set metadata for a volume
    #[arg(long = "label", value_name = "KEY=VALUE")]
    label: Vec<String>,
    /// Set driver specific options
    #[arg(short = 'o', long = "opt", value_name = "KEY=VALUE")]
    opt: Vec<String>,
    /// Specify volume name
    #[arg(long = "name", hide = true)]
    name_flag: Option<String>,
    /// The volume's name (none: an anonymous volume with a random name)
    name: Option<String>,
}

#[derive(Args)]
pub struct LsArgs {
    /// Only display volume names
    #[arg(short = 'q', long)]
    quiet: bool,
    /// Provide filter values (dangling=true|false, name=..., label=KEY[=VALUE], driver=local)
    #[arg(short = 'f', long = "filter")]
    filter: Vec<String>,
    /// Format output: table, json, or a Go template
    #[arg(long)]
    format: Option<String>,
}

#[derive(Args)]
pub struct InspectArgs {
    /// Format output using a custom template ("json": the default JSON array)
    #[arg(short = 'f', long)]
    format: Option<String>,
    #[arg(required = true, value_name = "VOLUME")]
    volumes: Vec<String>,
}

#[derive(Args)]
pub struct RmArgs {
    /// Force the removal of one or more volumes (a missing volume is not an error)
    #[arg(short = 'f', long)]
    force: bool,
    #[arg(required = true, value_name = "VOLUME")]
    volumes: Vec<String>,
}

#[derive(Args)]
pub struct PruneArgs {
    /// Remove all unused volumes, not just anonymous ones
    #[arg(short = 'a', long)]
    all: bool,
    /// Do not prompt for confirmation
    #[arg(short = 'f', long)]
    force: bool,
    /// Provide filter values (label=KEY[=VALUE], label!=KEY[=VALUE], all=true)
    #[arg(long)]
    filter: Vec<String>,
}

pub fn run(ctx: &Ctx, c: VolumeCommand) -> Result<i32> {
    match c {
        VolumeCommand::Create(a) => create(ctx, a),
        VolumeCommand::Ls(a) => list(ctx, a),
        VolumeCommand::Inspect(a) => inspect(ctx, a),
        VolumeCommand::Rm(a) => rm(ctx, a),
        VolumeCommand::Prune(a) => prune(ctx, a),
    }
}

/// An error the daemon would have answered with: docker prints it this way and exits 1.
fn daemon_error(msg: impl std::fmt::Display) -> i32 {
    eprintln!("Error response from daemon: {msg}");
    1
}

/// A malformed flag value: docker's flag parser rejects it before anything runs, with exit 125.
fn flag_error(value: &str, flag: &str, why: impl std::fmt::Display) -> i32 {
    eprintln!("invalid argument {value:?} for \"{flag}\" flag: {why}");
    125
}

/// `--label`/`-o` values: KEY[=VALUE] with a non-empty, space-free key (docker's ValidateLabel); `what` names
/// the value in the message ("label", "option").
fn key_values(
    values: &[String],
    flag: &str,
    what: &str,
) -> std::result::Result<BTreeMap<String, String>, i32> {
    let mut out = BTreeMap::new();
    for l in values {
        let (k, v) = l.split_once('=').unwrap_or((l.as_str(), ""));
        if k.trim().is_empty() {
            return Err(flag_error(
                l,
                flag,
                format!("invalid {what} '{l}': empty name"),
            ));
        }
        if k.chars().any(char::is_whitespace) {
            return Err(flag_error(
                l,
                flag,
                format!("{what} '{k}' contains whitespaces"),
            ));
        }
        out.insert(k.to_string(), v.to_string());
    }
    Ok(out)
}

pub fn create(ctx: &Ctx, a: CreateArgs) -> Result<i32> {
    let name = match (a.name, a.name_flag) {
        (Some(_), Some(_)) => bail!(
            "conflicting options: cannot specify a volume-name through both --name and as a positional arg"
        ),
        // docker takes an empty name as no name.
        (n, f) => n.or(f).filter(|n| !n.is_empty()),
    };
    let labels = match key_values(&a.label, "--label", "label") {
        Ok(l) => l,
        Err(code) => return Ok(code),
    };
    let opts = match key_values(&a.opt, "-o, --opt", "option") {
        Ok(o) => o,
        Err(code) => return Ok(code),
    };
    let op = match &name {
        Some(n) => format!("create {n}"),
        None => "create".to_string(),
    };
    if a.driver != "local" {
        return Ok(daemon_error(format!(
            "{op}: error looking up volume plugin {d}: plugin {d:?} not found",
            d = a.driver
        )));
    }
    // The local driver's keys; berth keeps volumes as plain directories and does not mount `type`/`device`
    // on use yet, so it refuses them rather than ignoring what the user asked for.
    if let Some(k) = opts
        .keys()
        .find(|k| !matches!(k.as_str(), "type" | "device" | "o" | "size"))
    {
        return Ok(daemon_error(format!("{op}: invalid option key: {k:?}")));
    }
    if !opts.is_empty() {
        let keys: Vec<&str> = opts.keys().map(String::as_str).collect();
        return Ok(daemon_error(format!(
            "{op}: the local driver's options ({}) are not supported by berth: volumes are plain directories",
            keys.join(", ")
        )));
    }
    let mut labels = labels;
    if name.is_none() {
        // As dockerd does for a volume created without a name: it is anonymous, so `volume prune` may take it.
        labels.insert(ANONYMOUS_LABEL.to_string(), String::new());
    }
    let mut e = engine(ctx)?;
    match e
        .records()
        .create_volume(name.as_deref(), &a.driver, &labels)
    {
        Ok(v) => {
            println!("{}", v.name);
            Ok(0)
        }
        Err(err @ RecordsError::InvalidVolumeName(_)) => Ok(daemon_error(format!("{op}: {err}"))),
        Err(err) => Err(err.into()),
    }
}

/// `--filter KEY=VALUE` values by key, as docker's filters.Args holds them.
struct Filters(BTreeMap<String, Vec<String>>);

impl Filters {
    /// Err: the exit code after a flag error was printed.
    fn parse(values: &[String], flag: &str) -> std::result::Result<Filters, i32> {
        let mut map: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for f in values {
            match f.split_once('=') {
                // docker's filters.ParseFlag: the key lower-cased, both sides trimmed.
                Some((k, v)) if !k.trim().is_empty() => map
                    .entry(k.trim().to_ascii_lowercase())
                    .or_default()
                    .push(v.trim().to_string()),
                _ => {
                    return Err(flag_error(
                        f,
                        flag,
                        "bad format of filter (expected name=value)",
                    ))
                }
            }
        }
        Ok(Filters(map))
    }

    /// Err: docker's message for a key this command does not know.
    fn validate(&self, accepted: &[&str]) -> std::result::Result<(), String> {
        match self.0.keys().find(|k| !accepted.contains(&k.as_str())) {
            Some(k) => Err(format!("invalid filter '{k}'")),
            None => Ok(()),
        }
    }

    fn get(&self, key: &str) -> &[String] {
        self.0.get(key).map(Vec::as_slice).unwrap_or(&[])
    }

    /// A true/false (1/0) filter; Err: docker's message for any other value.
    fn boolean(&self, key: &str) -> std::result::Result<Option<bool>, String> {
        let vals = self.get(key);
        if vals.is_empty() {
            return Ok(None);
        }
        let t = vals.iter().any(|v| v == "true" || v == "1");
        let f = vals.iter().any(|v| v == "false" || v == "0");
        if t == f
            || vals
                .iter()
                .any(|v| !matches!(v.as_str(), "true" | "1" | "false" | "0"))
        {
            return Err(format!("invalid filter '{key}=[{}]'", vals.join(" ")));
        }
        Ok(Some(t))
    }

    /// docker's MatchKVList: every `KEY` / `KEY=VALUE` of `key` matches the labels (true when none is given).
    fn labels_match(&self, key: &str, labels: &BTreeMap<String, String>) -> bool {
        self.get(key).iter().all(|f| match f.split_once('=') {
            Some((k, v)) => labels.get(k).map(String::as_str) == Some(v),
            None => labels.contains_key(f),
        })
    }
}

/// docker matches `name=` as an unanchored regular expression; berth takes it as literal text with optional
/// `^`/`$` anchors, which covers how it is used.
fn name_matches(pattern: &str, name: &str) -> bool {
    let (start, p) = match pattern.strip_prefix('^') {
        Some(p) => (true, p),
        None => (false, pattern),
    };
    let (end, p) = match p.strip_suffix('$') {
        Some(p) => (true, p),
        None => (false, p),
    };
    match (start, end) {
        (true, true) => name == p,
        (true, false) => name.starts_with(p),
        (false, true) => name.ends_with(p),
        (false, false) => name.contains(p),
    }
}

/// Labels as `volume ls` prints them: KEY=VALUE joined by commas.
fn labels_text(labels: &BTreeMap<String, String>) -> String {
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// The fields `volume ls --format` offers (docker's volumeContext). Usage is not computed, so Links and Size are
/// "N/A" as in docker's own listing.
fn list_object(v: &Volume) -> Value {
    json!({
        "Availability": "N/A",
        "Driver": v.driver,
        "Group": "N/A",
        "Labels": labels_text(&v.labels),
        "Links": "N/A",
        "Mountpoint": v.mountpoint,
        "Name": v.name,
        "Scope": "local",
        "Size": "N/A",
        "Status": "N/A",
    })
}

fn list_headers() -> Value {
    json!({
        "Availability": "AVAILABILITY", "Driver": "DRIVER", "Group": "GROUP", "Labels": "LABELS",
        "Links": "LINKS", "Mountpoint": "MOUNTPOINT", "Name": "VOLUME NAME", "Scope": "SCOPE",
        "Size": "SIZE", "Status": "STATUS", "ID": "ID",
    })
}

/// docker's listings go through a tabwriter with minimum width 10 and padding 3.
fn table(lines: &[String]) -> String {
    let mut t = crate::output::tabwrite(&lines.join("\n"), 10, 3);
    t.push('\n');
    t
}

pub fn list(ctx: &Ctx, a: LsArgs) -> Result<i32> {
    let filters = match Filters::parse(&a.filter, "-f, --filter") {
        Ok(f) => f,
        Err(code) => return Ok(code),
    };
    if let Err(m) = filters.validate(&["dangling", "name", "label", "driver"]) {
        return Ok(daemon_error(m));
    }
    let dangling = match filters.boolean("dangling") {
        Ok(d) => d,
        Err(m) => return Ok(daemon_error(m)),
    };
    // Parse the template before any work, so a typo costs nothing.
    let format = a.format.as_deref().filter(|f| !f.is_empty());
    let template = match format {
        None | Some("table") | Some("json") => None,
        Some(t) => Some(match t.strip_prefix("table") {
            Some(rest) => (
                true,
                Template::parse(rest.trim_start()).context("template parsing error")?,
            ),
            None => (false, Template::parse(t).context("template parsing error")?),
        }),
    };
    let mut e = engine(ctx)?;
    let records = e.records();
    let mut keep = Vec::new();
    for v in records.volumes()? {
        let names = filters.get("name");
        if !names.is_empty() && !names.iter().any(|p| name_matches(p, &v.name)) {
            continue;
        }
        let drivers = filters.get("driver");
        if !drivers.is_empty() && !drivers.iter().any(|d| name_matches(d, &v.driver)) {
            continue;
        }
        if !filters.labels_match("label", &v.labels) {
            continue;
        }
        if let Some(want) = dangling {
            let users = match records.volume_users(&v.name) {
                Ok(u) => u,
                // Removed by another command since the listing: not there any more.
                Err(RecordsError::NoSuchVolume(_)) => continue,
                Err(err) => return Err(err.into()),
            };
            if users.is_empty() != want {
                continue;
            }
        }
        keep.push(v);
    }
    let mut out = std::io::stdout().lock();
    match (format, template) {
        (None | Some("table"), _) if a.quiet => {
            for v in &keep {
                writeln!(out, "{}", v.name)?;
            }
        }
        (Some("json"), _) => {
            for v in &keep {
                writeln!(out, "{}", list_object(v))?;
            }
        }
        (_, Some((true, t))) => {
            let mut lines = vec![t.render(&list_headers())?];
            for v in &keep {
                lines.push(t.render(&list_object(v))?);
            }
            write!(out, "{}", table(&lines))?;
        }
        (_, Some((false, t))) => {
            for v in &keep {
                writeln!(out, "{}", t.render(&list_object(v))?)?;
            }
        }
        _ => {
            let mut lines = vec!["DRIVER\tVOLUME NAME".to_string()];
            for v in &keep {
                lines.push(format!("{}\t{}", v.driver, v.name));
            }
            write!(out, "{}", table(&lines))?;
        }
    }
    Ok(0)
}

/// docker's RFC 3339 time, in seconds and UTC ("2024-01-02T03:04:05Z").
fn rfc3339(nanos: i64) -> String {
    // format_utc gives "2024-01-02 03:04:05 +0000 UTC": the same fields in docker's other spelling.
    let t = crate::output::format_utc(nanos.div_euclid(1_000_000_000));
    format!("{}T{}Z", &t[..10], &t[11..19])
}

/// `volume inspect`'s object (docker's volume.Volume for the local driver).
fn inspect_object(v: &Volume) -> Value {
    json!({
        "CreatedAt": rfc3339(v.created_at),
        "Driver": v.driver,
        "Labels": v.labels,
        "Mountpoint": v.mountpoint,
        "Name": v.name,
        // berth's local driver takes no options (see `create`).
        "Options": {},
        "Scope": "local",
    })
}

pub fn inspect(ctx: &Ctx, a: InspectArgs) -> Result<i32> {
    let template = match a.format.as_deref() {
        None | Some("") | Some("json") => None,
        Some(f) => match Template::parse(f) {
            Ok(t) => Some(t),
            Err(err) => {
                eprintln!("Template parsing error: {err}");
                return Ok(64);
            }
        },
    };
    let mut e = engine(ctx)?;
    let mut values = Vec::new();
    let mut errors = Vec::new();
    for n in &a.volumes {
        match e.records().volume(n) {
            Ok(v) => values.push(inspect_object(&v)),
            Err(err @ RecordsError::NoSuchVolume(_)) => errors.push(err.to_string()),
            Err(err) => return Err(err.into()),
        }
    }
    let mut out = std::io::stdout().lock();
    match &template {
        None => writeln!(out, "{}", super::system::docker_json(&values)?)?,
        Some(t) => {
            for v in &values {
                writeln!(out, "{}", t.render(v)?)?;
            }
        }
    }
    for m in &errors {
        eprintln!("Error: {m}");
    }
    Ok(if errors.is_empty() { 0 } else { 1 })
}

pub fn rm(ctx: &Ctx, a: RmArgs) -> Result<i32> {
    let mut e = engine(ctx)?;
    let mut failed = false;
    for n in &a.volumes {
        match e.records().remove_volume(n) {
            Ok(()) => println!("{n}"),
            // docker's --force: a volume that is not there counts as removed.
            Err(RecordsError::NoSuchVolume(_)) if a.force => println!("{n}"),
            Err(RecordsError::NoSuchVolume(_)) => {
                failed = true;
                daemon_error(format!("get {n}: no such volume"));
            }
            Err(err) => {
                failed = true;
                daemon_error(err);
            }
        }
    }
    Ok(i32::from(failed))
}

/// Asks on the terminal as docker does; anything but "y" (or no answer at all) declines.
/// docker's prune question on stdout; only "y" (any case) on stdin goes ahead, EOF does not.
pub(super) fn confirm(warning: &str) -> Result<bool> {
    let mut out = std::io::stdout().lock();
    write!(out, "{warning} [y/N] ")?;
    out.flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(answer.trim().eq_ignore_ascii_case("y"))
}

/// Bytes held by the regular files under `dir`, each hard-linked file once (docker's directory.Size). Symlinks
/// are not followed.
pub(super) fn dir_size(dir: &Path, seen: &mut HashSet<(u64, u64)>) -> u64 {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut total = 0;
    for entry in rd.flatten() {
        let Ok(m) = entry.metadata() else { continue };
        if m.is_dir() {
            total += dir_size(&entry.path(), seen);
        } else if m.is_file() && (m.nlink() < 2 || seen.insert((m.dev(), m.ino()))) {
            total += m.len();
        }
    }
    total
}

pub fn prune(ctx: &Ctx, a: PruneArgs) -> Result<i32> {
    let filters = match Filters::parse(&a.filter, "--filter") {
        Ok(f) => f,
        Err(code) => return Ok(code),
    };
    if a.all && !filters.get("all").is_empty() {
        bail!("conflicting options: cannot specify both --all and --filter all=1");
    }
    if let Err(m) = filters.validate(&["label", "label!", "all"]) {
        return Ok(daemon_error(m));
    }
    let all = match filters.boolean("all") {
        Ok(v) => a.all || v.unwrap_or(false),
        Err(m) => return Ok(daemon_error(m)),
    };
    if !a.force {
        let warning = if all {
            "WARNING! This will remove all local volumes not used by at least one container.\nAre you sure you want to continue?"
        } else {
            "WARNING! This will remove anonymous local volumes not used by at least one container.\nAre you sure you want to continue?"
        };
        if !confirm(warning)? {
            return Ok(0);
        }
    }
    let mut e = engine(ctx)?;
    let records = e.records();
    let mut deleted = Vec::new();
    let mut reclaimed = 0u64;
    let mut errors = Vec::new();
    for v in records.volumes()? {
        // Since docker 23 (API 1.42) a named volume goes only with --all.
        if !all && !v.labels.contains_key(ANONYMOUS_LABEL) {
            continue;
        }
        if !filters.labels_match("label", &v.labels) {
            continue;
        }
        if !filters.get("label!").is_empty() && filters.labels_match("label!", &v.labels) {
            continue;
        }
        let size = dir_size(&v.mountpoint, &mut HashSet::new());
        // remove_volume checks the users in the same transaction that deletes: a volume a container started
        // using a moment ago is refused there, not lost.
        match records.remove_volume(&v.name) {
            Ok(()) => {
                deleted.push(v.name);
                reclaimed += size;
            }
            Err(RecordsError::VolumeInUse { .. } | RecordsError::NoSuchVolume(_)) => {}
            Err(err) => errors.push(err.to_string()),
        }
    }
    let mut out = std::io::stdout().lock();
    if !deleted.is_empty() {
        writeln!(out, "Deleted Volumes:")?;
        for n in &deleted {
            writeln!(out, "{n}")?;
        }
        writeln!(out)?;
    }
    writeln!(
        out,
        "Total reclaimed space: {}",
        crate::output::human_size4(reclaimed)
    )?;
    for m in &errors {
        daemon_error(m);
    }
    Ok(i32::from(!errors.is_empty()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filters(v: &[&str]) -> Filters {
        let owned: Vec<String> = v.iter().map(|s| s.to_string()).collect();
        Filters::parse(&owned, "--filter").unwrap_or_else(|_| panic!("{v:?}"))
    }

    #[test]
    fn filter_values() {
        let f = filters(&["dangling=true", "label=a", "label=b=2", "name=^web"]);
        assert_eq!(f.boolean("dangling"), Ok(Some(true)));
        assert_eq!(f.boolean("all"), Ok(None));
        assert!(f.validate(&["dangling", "label", "name"]).is_ok());
        assert_eq!(
            f.validate(&["dangling", "label"]),
            Err("invalid filter 'name'".to_string())
        );
        let labels = BTreeMap::from([
            ("a".to_string(), String::new()),
            ("b".to_string(), "2".to_string()),
        ]);
        assert!(f.labels_match("label", &labels));
        let other = BTreeMap::from([("a".to_string(), String::new())]);
        assert!(!f.labels_match("label", &other));
        assert!(f.labels_match("label!", &other), "no label! filter given");
        assert_eq!(
            filters(&["dangling=maybe"]).boolean("dangling"),
            Err("invalid filter 'dangling=[maybe]'".to_string())
        );
        assert!(filters(&["all=1", "all=0"]).boolean("all").is_err());
        assert_eq!(filters(&["all=0"]).boolean("all"), Ok(Some(false)));
    }

    #[test]
    fn names() {
        assert!(name_matches("web", "my-web-data"));
        assert!(name_matches("^web", "web-data"));
        assert!(!name_matches("^web", "my-web"));
        assert!(name_matches("data$", "web-data"));
        assert!(name_matches("^web$", "web"));
        assert!(!name_matches("^web$", "web1"));
    }

    #[test]
    fn table_has_docker_widths() {
        let t = table(&["DRIVER\tVOLUME NAME".into(), "local\tdata".into()]);
        assert_eq!(t, "DRIVER    VOLUME NAME\nlocal     data\n");
    }

    #[test]
    fn times_in_rfc3339() {
        assert_eq!(rfc3339(1_704_164_645_123_456_789), "2024-01-02T03:04:05Z");
    }
}
