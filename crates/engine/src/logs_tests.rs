use super::*;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

fn at(secs: u64, nanos: u32) -> SystemTime {
    UNIX_EPOCH + Duration::new(secs, nanos)
}

fn lines(entries: &[LogEntry]) -> Vec<String> {
    entries
        .iter()
        .map(|e| String::from_utf8(e.line.clone()).unwrap())
        .collect()
}

/// Writes raw json-file lines with chosen times.
fn write_raw(path: &Path, entries: &[(&str, &str, SystemTime)]) {
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    for (stream, log, time) in entries {
        let t = format_rfc3339_nano(*time);
        let raw = RawOut {
            log,
            stream,
            time: &t,
        };
        let mut j = serde_json::to_vec(&raw).unwrap();
        j.push(b'\n');
        f.write_all(&j).unwrap();
    }
}

#[test]
fn round_trip_stdout_stderr() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c-json.log");
    let mut w = LogWriter::open(&path, None, 1).unwrap();
    w.write(Stream::Stdout, b"hello\n").unwrap();
    w.write(Stream::Stderr, b"oops \"quoted\" \xff\n").unwrap();
    w.write(Stream::Stdout, b"a\nb\n").unwrap();
    drop(w);

    let raw = fs::read_to_string(&path).unwrap();
    let first = raw.lines().next().unwrap();
    assert!(
        first.starts_with(r#"{"log":"hello\n","stream":"stdout","time":""#),
        "{first}"
    );
    let v: serde_json::Value = serde_json::from_str(first).unwrap();
    let t = v["time"].as_str().unwrap();
    assert_eq!(t.len(), "2024-01-02T03:04:05.123456789Z".len(), "{t}");

    let got = read(&path, &ReadOptions::default()).unwrap();
    assert_eq!(
        got.iter().map(|e| e.stream).collect::<Vec<_>>(),
        [
            Stream::Stdout,
            Stream::Stderr,
            Stream::Stdout,
            Stream::Stdout
        ]
    );
    assert_eq!(
        lines(&got),
        ["hello\n", "oops \"quoted\" \u{fffd}\n", "a\n", "b\n"]
    );
    assert!(got.windows(2).all(|w| w[0].time <= w[1].time));

    // Reopening appends.
    let mut w = LogWriter::open(&path, None, 1).unwrap();
    w.write(Stream::Stdout, b"more\n").unwrap();
    assert_eq!(read(&path, &ReadOptions::default()).unwrap().len(), 5);
}

#[test]
fn partial_lines_held_per_stream_and_flushed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log");
    let mut w = LogWriter::open(&path, None, 1).unwrap();
    w.write(Stream::Stdout, b"hel").unwrap();
    w.write(Stream::Stderr, b"err").unwrap();
    assert!(read(&path, &ReadOptions::default()).unwrap().is_empty());
    w.write(Stream::Stdout, b"lo\nwor").unwrap();
    w.write(Stream::Stderr, b"or\n").unwrap();
    let got = read(&path, &ReadOptions::default()).unwrap();
    assert_eq!(lines(&got), ["hello\n", "error\n"]);
    w.flush_partial().unwrap();
    w.flush_partial().unwrap(); // nothing held any more
    let got = read(&path, &ReadOptions::default()).unwrap();
    assert_eq!(lines(&got), ["hello\n", "error\n", "wor"]);
    assert_eq!(got[2].stream, Stream::Stdout);
}

#[test]
fn long_line_split_into_16k_entries() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log");
    let mut w = LogWriter::open(&path, None, 1).unwrap();
    let mut line: Vec<u8> = (0..40 * 1024).map(|i| b'a' + (i % 26) as u8).collect();
    line.push(b'\n');
    // In pieces, as a pipe delivers it.
    for chunk in line.chunks(4000) {
        w.write(Stream::Stdout, chunk).unwrap();
    }
    w.write(Stream::Stdout, b"short\n").unwrap();
    let got = read(&path, &ReadOptions::default()).unwrap();
    let sizes: Vec<usize> = got.iter().map(|e| e.line.len()).collect();
    assert_eq!(sizes, [16384, 16384, 40 * 1024 - 2 * 16384 + 1, 6]);
    assert!(!got[0].line.ends_with(b"\n") && !got[1].line.ends_with(b"\n"));
    let joined: Vec<u8> = got[..3].iter().flat_map(|e| e.line.clone()).collect();
    assert_eq!(joined, line);
    let rendered: Vec<u8> = got.iter().flat_map(|e| e.render(false)).collect();
    assert_eq!(&rendered[..line.len()], &line[..]);

    // A line of exactly 16 KiB with its newline is one entry; one byte more is split.
    let path2 = dir.path().join("log2");
    let mut w = LogWriter::open(&path2, None, 1).unwrap();
    let mut exact = vec![b'x'; MAX_ENTRY - 1];
    exact.push(b'\n');
    w.write(Stream::Stdout, &exact).unwrap();
    let mut over = vec![b'y'; MAX_ENTRY];
    over.push(b'\n');
    w.write(Stream::Stdout, &over).unwrap();
    let got = read(&path2, &ReadOptions::default()).unwrap();
    let sizes: Vec<usize> = got.iter().map(|e| e.line.len()).collect();
    assert_eq!(sizes, [MAX_ENTRY, MAX_ENTRY, 1]);
}

#[test]
fn rotation_max_file_3() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log");
    let mut w = LogWriter::open(&path, Some(1000), 3).unwrap();
    for i in 0..100 {
        w.write(Stream::Stdout, format!("line {i:03}\n").as_bytes())
            .unwrap();
    }
    assert!(rotated(&path, 1).exists());
    assert!(rotated(&path, 2).exists());
    assert!(!rotated(&path, 3).exists());
    for p in [path.clone(), rotated(&path, 1), rotated(&path, 2)] {
        let len = fs::metadata(&p).unwrap().len();
        assert!(len > 0 && len <= 1000, "{}: {len}", p.display());
    }
    let got = lines(&read(&path, &ReadOptions::default()).unwrap());
    assert!(got.len() > 20 && got.len() < 100, "{}", got.len());
    let first: usize = got[0][5..8].parse().unwrap();
    let want: Vec<String> = (first..100).map(|i| format!("line {i:03}\n")).collect();
    assert_eq!(got, want);
    // The oldest file holds the oldest retained lines.
    let oldest = fs::read_to_string(rotated(&path, 2)).unwrap();
    assert!(oldest.contains(&format!("line {first:03}")));
}

#[test]
fn rotation_max_file_1_starts_over() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log");
    let mut w = LogWriter::open(&path, Some(500), 1).unwrap();
    for i in 0..50 {
        w.write(Stream::Stderr, format!("line {i:03}\n").as_bytes())
            .unwrap();
    }
    assert!(!rotated(&path, 1).exists());
    assert!(fs::metadata(&path).unwrap().len() <= 500);
    let got = lines(&read(&path, &ReadOptions::default()).unwrap());
    assert!(!got.is_empty() && got.len() < 50);
    assert_eq!(got.last().unwrap(), "line 049\n");
}

#[test]
fn tail_streams_since_until() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log");
    write_raw(
        &path,
        &[
            ("stdout", "o1\n", at(100, 0)),
            ("stderr", "e1\n", at(101, 0)),
            ("stdout", "o2\n", at(102, 500)),
            ("stderr", "e2\n", at(103, 0)),
            ("stdout", "o3\n", at(104, 0)),
        ],
    );
    let all = ReadOptions::default();
    let get = |o: &ReadOptions| lines(&read(&path, o).unwrap());
    assert_eq!(get(&all).len(), 5);
    assert_eq!(
        get(&ReadOptions {
            tail: Some(2),
            ..all.clone()
        }),
        ["e2\n", "o3\n"]
    );
    assert_eq!(
        get(&ReadOptions {
            tail: Some(0),
            ..all.clone()
        }),
        Vec::<String>::new()
    );
    assert_eq!(
        get(&ReadOptions {
            tail: Some(99),
            ..all.clone()
        })
        .len(),
        5
    );
    let out_only = ReadOptions {
        stderr: false,
        ..all.clone()
    };
    assert_eq!(get(&out_only), ["o1\n", "o2\n", "o3\n"]);
    let err_only = ReadOptions {
        stdout: false,
        ..all.clone()
    };
    assert_eq!(get(&err_only), ["e1\n", "e2\n"]);
    // tail applies after filtering.
    assert_eq!(
        get(&ReadOptions {
            tail: Some(1),
            ..err_only.clone()
        }),
        ["e2\n"]
    );
    // since and until are inclusive.
    let since = ReadOptions {
        since: Some(at(102, 500)),
        ..all.clone()
    };
    assert_eq!(get(&since), ["o2\n", "e2\n", "o3\n"]);
    let until = ReadOptions {
        until: Some(at(102, 499)),
        ..all.clone()
    };
    assert_eq!(get(&until), ["o1\n", "e1\n"]);
    let window = ReadOptions {
        since: Some(at(101, 0)),
        until: Some(at(103, 0)),
        tail: Some(2),
        ..all.clone()
    };
    assert_eq!(get(&window), ["o2\n", "e2\n"]);
    // Times survive the round trip to the nanosecond.
    assert_eq!(read(&path, &all).unwrap()[2].time, at(102, 500));
    // A missing log reads as empty.
    assert!(read(&dir.path().join("none"), &all).unwrap().is_empty());
}

#[test]
fn corrupt_lines_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log");
    write_raw(&path, &[("stdout", "a\n", at(1, 0))]);
    let mut f = OpenOptions::new().append(true).open(&path).unwrap();
    f.write_all(
        b"not json\n{\"log\":\"x\",\"stream\":\"stdin\",\"time\":\"2024-01-01T00:00:00Z\"}\n",
    )
    .unwrap();
    f.write_all(b"{\"log\":\"x\",\"stream\":\"stdout\",\"time\":\"yesterday\"}\n\n")
        .unwrap();
    drop(f);
    write_raw(&path, &[("stderr", "b\n", at(2, 0))]);
    let mut f = OpenOptions::new().append(true).open(&path).unwrap();
    f.write_all(b"{\"log\":\"half-wri").unwrap();
    drop(f);
    let got = read(&path, &ReadOptions::default()).unwrap();
    assert_eq!(lines(&got), ["a\n", "b\n"]);
}

#[test]
fn timestamps_rfc3339_nano() {
    assert_eq!(
        format_rfc3339_nano(UNIX_EPOCH),
        "1970-01-01T00:00:00.000000000Z"
    );
    assert_eq!(
        format_rfc3339_nano(at(1_704_164_645, 123_456_789)),
        "2024-01-02T03:04:05.123456789Z"
    );
    assert_eq!(
        format_rfc3339_nano(at(951_782_400, 5)),
        "2000-02-29T00:00:00.000000005Z"
    );
    assert_eq!(
        format_rfc3339_nano(at(4_102_444_799, 0)),
        "2099-12-31T23:59:59.000000000Z"
    );
    assert_eq!(
        format_rfc3339_nano(UNIX_EPOCH - Duration::from_nanos(1)),
        "1969-12-31T23:59:59.999999999Z"
    );
    // Formatting and parsing agree over many days.
    for day in (-700_000i64..2_900_000).step_by(997) {
        let t = from_nanos(i128::from(day) * 86_400_000_000_000 + 12_345).unwrap();
        assert_eq!(parse_rfc3339(&format_rfc3339_nano(t)), Some(t));
    }
    let e = LogEntry {
        stream: Stream::Stdout,
        time: at(1_704_164_645, 120_000_000),
        line: b"hi\n".to_vec(),
    };
    assert_eq!(e.render(true), b"2024-01-02T03:04:05.120000000Z hi\n");
    assert_eq!(e.render(false), b"hi\n");
}

#[test]
fn parse_since_forms() {
    let now = at(1_700_000_000, 0);
    let p = |s: &str| parse_since(s, now).unwrap();
    assert_eq!(p("2024-01-02T03:04:05Z"), at(1_704_164_645, 0));
    assert_eq!(p("2024-01-02T03:04:05.5Z"), at(1_704_164_645, 500_000_000));
    assert_eq!(
        p("2024-01-02T03:04:05.123456789123Z"),
        at(1_704_164_645, 123_456_789)
    );
    assert_eq!(p("2024-01-02T05:04:05+02:00"), at(1_704_164_645, 0));
    assert_eq!(
        p("2024-01-01T22:04:05.25-05:00"),
        at(1_704_164_645, 250_000_000)
    );
    assert_eq!(p("2024-01-02T03:04:05"), at(1_704_164_645, 0));
    assert_eq!(p("2024-01-02"), at(1_704_153_600, 0));
    assert_eq!(p("1700000000"), at(1_700_000_000, 0));
    assert_eq!(p("1700000000.5"), at(1_700_000_000, 500_000_000));
    assert_eq!(p("1700000000.000000001"), at(1_700_000_000, 1));
    assert_eq!(p("10m"), at(1_700_000_000 - 600, 0));
    assert_eq!(p("1h30m"), at(1_700_000_000 - 5400, 0));
    assert_eq!(p("42s"), at(1_700_000_000 - 42, 0));
    assert_eq!(p("1.5h"), at(1_700_000_000 - 5400, 0));
    assert_eq!(p("1500ms"), at(1_699_999_998, 500_000_000));
    assert_eq!(p(" 0s "), now);
    for bad in [
        "",
        "abc",
        "10",
        "10x",
        "m",
        "1h30",
        "-5m",
        "1.2.3",
        "1700000000.",
        "2024-13-01T00:00:00Z",
        "2024-02-30",
        "2024-01-02T25:00:00Z",
        "2024-01-02T03:04:05+0200",
        "2024-01-02T03:04:05Zjunk",
        "2024-01-02T03:04",
        "2024-1-2",
    ] {
        if bad == "10" {
            continue; // "10" is unix seconds, like docker
        }
        let err = parse_since(bad, now).unwrap_err();
        assert!(matches!(err, LogError::Invalid(_)), "{bad}: {err}");
        assert!(err.to_string().contains(&format!("{:?}", bad)), "{err}");
    }
}

#[test]
fn io_errors_name_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("no-such-dir").join("log");
    let err = LogWriter::open(&path, None, 1).err().unwrap();
    assert!(err.to_string().contains("no-such-dir/log"), "{err}");
}

fn follow_case(max_size: Option<u64>, max_file: u32, count: usize, pause_every: usize) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log");
    let mut w = LogWriter::open(&path, max_size, max_file).unwrap();
    for i in 0..5 {
        w.write(Stream::Stdout, format!("old {i}\n").as_bytes())
            .unwrap();
    }
    let done = Arc::new(AtomicBool::new(false));
    let writer = {
        let done = done.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(30));
            for i in 0..count {
                let stream = if i % 3 == 0 {
                    Stream::Stderr
                } else {
                    Stream::Stdout
                };
                // Split across writes to exercise partial lines.
                let line = format!("line {i:05} {}\n", "x".repeat(i % 40));
                let (a, b) = line.as_bytes().split_at(line.len() / 2);
                w.write(stream, a).unwrap();
                w.write(stream, b).unwrap();
                if i % pause_every == 0 {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
            w.write(Stream::Stdout, b"tail-partial").unwrap();
            w.flush_partial().unwrap();
            done.store(true, Ordering::SeqCst);
        })
    };
    let mut got = Vec::new();
    let opts = ReadOptions {
        tail: Some(2),
        ..ReadOptions::default()
    };
    follow(
        &path,
        &opts,
        &mut |e| {
            got.push(String::from_utf8(e.line.clone()).unwrap());
            true
        },
        &|| done.load(Ordering::SeqCst),
    )
    .unwrap();
    writer.join().unwrap();
    let mut want = vec!["old 3\n".to_string(), "old 4\n".to_string()];
    want.extend((0..count).map(|i| format!("line {i:05} {}\n", "x".repeat(i % 40))));
    want.push("tail-partial".to_string());
    assert_eq!(got.len(), want.len());
    assert_eq!(got, want);
    if max_file > 1 && max_size.is_some() {
        assert!(rotated(&path, 1).exists());
    }
}

#[test]
fn follow_delivers_everything_once_across_rotation() {
    follow_case(Some(3000), 3, 2000, 5);
}

#[test]
fn follow_without_rotation() {
    follow_case(None, 1, 500, 10);
}

#[test]
fn follow_across_replacement_max_file_1() {
    follow_case(Some(20_000), 1, 1000, 2);
}

#[test]
fn follow_waits_for_file_and_stops_on_out_false() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log");
    let p2 = path.clone();
    let writer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        let mut w = LogWriter::open(&p2, None, 1).unwrap();
        for i in 0..10 {
            w.write(Stream::Stdout, format!("{i}\n").as_bytes())
                .unwrap();
        }
    });
    let mut got = Vec::new();
    follow(
        &path,
        &ReadOptions::default(),
        &mut |e| {
            got.push(e.line.clone());
            got.len() < 3
        },
        &|| false,
    )
    .unwrap();
    writer.join().unwrap();
    assert_eq!(got, [b"0\n".to_vec(), b"1\n".to_vec(), b"2\n".to_vec()]);

    // until in the past: existing entries up to it, then return without waiting for stop.
    let mut n = 0;
    let opts = ReadOptions {
        until: Some(SystemTime::now()),
        ..ReadOptions::default()
    };
    follow(
        &path,
        &opts,
        &mut |_| {
            n += 1;
            true
        },
        &|| false,
    )
    .unwrap();
    assert_eq!(n, 10);
}
