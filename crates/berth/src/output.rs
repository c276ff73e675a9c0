//! Output as docker prints it: tab-aligned tables, human sizes (decimal, 3 significant digits) and
//! durations ("2 weeks ago").

/// Columns padded to the widest cell plus three spaces, as docker's tabwriter does.
pub fn table(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let mut widths = vec![0; cols];
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let mut out = String::new();
    for r in rows {
        let mut line = String::new();
        for (i, c) in r.iter().enumerate() {
            line.push_str(c);
            if i + 1 < r.len() {
                line.push_str(&" ".repeat(widths[i] - c.chars().count() + 3));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// go-units' HumanSizeWithPrecision(size, 3): "4.26MB", "871kB", "12B".
pub fn human_size(size: u64) -> String {
    const UNITS: [&str; 9] = ["B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"];
    let mut s = size as f64;
    let mut i = 0;
    while s >= 1000.0 && i < UNITS.len() - 1 {
        s /= 1000.0;
        i += 1;
    }
    format!("{}{}", significant(s, 3), UNITS[i])
}

/// go-units' HumanDuration.
pub fn human_duration(secs: i64) -> String {
    let s = secs.max(0);
    let minutes = s / 60;
    let hours = s / 3600;
    if s < 1 {
        "Less than a second".into()
    } else if s == 1 {
        "1 second".into()
    } else if s < 60 {
        format!("{s} seconds")
    } else if minutes == 1 {
        "About a minute".into()
    } else if minutes < 60 {
        format!("{minutes} minutes")
    } else if hours == 1 {
        "About an hour".into()
    } else if hours < 48 {
        format!("{hours} hours")
    } else if hours < 24 * 7 * 2 {
        format!("{} days", hours / 24)
    } else if hours < 24 * 30 * 2 {
        format!("{} weeks", hours / 24 / 7)
    } else if hours < 24 * 365 * 2 {
        format!("{} months", hours / 24 / 30)
    } else {
        format!("{} years", hours / 24 / 365)
    }
}

/// Seconds since the epoch of an RFC 3339 time as image configs carry it ("2024-01-02T03:04:05.123Z",
/// "+01:00" offsets too).
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || (b[10] != b'T' && b[10] != b' ') {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, se) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let mut rest = &s[19..];
    if let Some(r) = rest.strip_prefix('.') {
        let n = r.bytes().take_while(u8::is_ascii_digit).count();
        rest = &r[n..];
    }
    let offset = match rest {
        "Z" | "z" => 0,
        r if r.len() == 6 && (r.starts_with('+') || r.starts_with('-')) => {
            let oh = r.get(1..3)?.parse::<i64>().ok()?;
            let om = r.get(4..6)?.parse::<i64>().ok()?;
            let sign = if r.starts_with('-') { -1 } else { 1 };
            sign * (oh * 3600 + om * 60)
        }
        _ => return None,
    };
    // Days from the civil date (Howard Hinnant's algorithm).
    let y2 = if mo <= 2 { y - 1 } else { y };
    let era = if y2 >= 0 { y2 } else { y2 - 399 } / 400;
    let yoe = y2 - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146097 + doe - 719468;
    Some(days * 86400 + h * 3600 + mi * 60 + se - offset)
}

/// docker's "2024-01-02 03:04:05 +0000 UTC".
pub fn format_utc(secs: i64) -> String {
    let t = image::commit::rfc3339(secs);
    format!(
        "{} +0000 UTC",
        t.trim_end_matches('Z').replacen('T', " ", 1)
    )
}

/// Go's `%.<p>g` for the magnitudes go-units prints (below 1024, so never in exponent form), trailing zeros
/// dropped.
pub fn significant(v: f64, p: i32) -> String {
    if v == 0.0 {
        return "0".into();
    }
    let digits = v.abs().log10().floor() as i32 + 1;
    let decimals = (p - digits).max(0) as usize;
    let s = format!("{v:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// go-units' HumanSize (decimal units, 4 significant digits): "2B", "1.235MB".
pub fn human_size4(size: u64) -> String {
    scaled(
        size,
        1000.0,
        &["B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"],
    )
}

/// go-units' BytesSize (binary units, 4 significant digits): "7.755GiB".
pub fn bytes_size(size: u64) -> String {
    scaled(
        size,
        1024.0,
        &["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB"],
    )
}

fn scaled(size: u64, base: f64, units: &[&str]) -> String {
    let mut s = size as f64;
    let mut i = 0;
    while s >= base && i < units.len() - 1 {
        s /= base;
        i += 1;
    }
    format!("{}{}", significant(s, 4), units[i])
}

/// Go's text/tabwriter with space padding: a cell ended by a tab is padded to the widest cell of its column
/// in the run of adjacent lines that have that column, plus `padding`, and at least `minwidth`. A line's
/// last cell is written as it is.
pub fn tabwrite(text: &str, minwidth: usize, padding: usize) -> String {
    let lines: Vec<Vec<&str>> = text.split('\n').map(|l| l.split('\t').collect()).collect();
    // widths[i][j]: the padded width of line i's cell j (every cell but a line's last one).
    let mut widths: Vec<Vec<usize>> = lines
        .iter()
        .map(|l| vec![0; l.len().saturating_sub(1)])
        .collect();
    let columns = lines.iter().map(Vec::len).max().unwrap_or(0);
    for j in 0..columns.saturating_sub(1) {
        let has = |l: &Vec<&str>| l.len() > j + 1;
        let mut i = 0;
        while i < lines.len() {
            if !has(&lines[i]) {
                i += 1;
                continue;
            }
            let start = i;
            while i < lines.len() && has(&lines[i]) {
                i += 1;
            }
            let width = lines[start..i]
                .iter()
                .map(|l| l[j].chars().count() + padding)
                .max()
                .unwrap_or(0)
                .max(minwidth);
            for w in &mut widths[start..i] {
                w[j] = width;
            }
        }
    }
    let mut out = String::new();
    for (i, cells) in lines.iter().enumerate() {
        for (j, cell) in cells.iter().enumerate() {
            out.push_str(cell);
            if let Some(w) = widths[i].get(j) {
                out.push_str(&" ".repeat(w - cell.chars().count()));
            }
        }
        if i + 1 < lines.len() {
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_like_docker() {
        assert_eq!(human_size(0), "0B");
        assert_eq!(human_size(999), "999B");
        assert_eq!(human_size(4_261_000), "4.26MB");
        assert_eq!(human_size(871_000), "871kB");
        assert_eq!(human_size(1_500), "1.5kB");
        assert_eq!(human_size(12_000_000_000), "12GB");
    }

    #[test]
    fn durations_like_docker() {
        assert_eq!(human_duration(0), "Less than a second");
        assert_eq!(human_duration(90), "About a minute");
        assert_eq!(human_duration(3 * 86400), "3 days");
        assert_eq!(human_duration(20 * 86400), "2 weeks");
        assert_eq!(human_duration(800 * 86400), "2 years");
    }

    #[test]
    fn times() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_rfc3339("2024-01-02T03:04:05.123456789Z"),
            Some(1704164645)
        );
        assert_eq!(parse_rfc3339("2024-01-02T04:04:05+01:00"), Some(1704164645));
        assert_eq!(format_utc(1704164645), "2024-01-02 03:04:05 +0000 UTC");
        assert_eq!(parse_rfc3339("yesterday"), None);
    }

    #[test]
    fn table_pads() {
        let t = table(&[
            vec!["A".into(), "BB".into()],
            vec!["CCC".into(), "D".into()],
        ]);
        assert_eq!(t, "A     BB\nCCC   D\n");
    }
}
