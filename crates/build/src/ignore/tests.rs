use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;
use std::time::{Duration, SystemTime};

use super::*;

fn rules(patterns: &[&str]) -> Ignore {
    Ignore::from_patterns(patterns).unwrap()
}

/// patternmatcher's `MatchesUsingParentResults` as its tests drive it: the parents first, root down.
fn walk_matches(ignore: &Ignore, path: &str) -> bool {
    let mut info: Option<Vec<bool>> = None;
    if let Some(slash) = path.rfind('/') {
        let parent = clean(&path[..=slash]);
        if parent != "." {
            let dirs: Vec<&str> = parent.split('/').collect();
            for i in 1..=dirs.len() {
                info = Some(
                    ignore
                        .matches_in_walk(&dirs[..i].join("/"), info.as_deref())
                        .1,
                );
            }
        }
    }
    ignore.matches_in_walk(path, info.as_deref()).0
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum Want {
    Fail,
    Exact,
    /// Only through a parent directory.
    Inexact,
}
use Want::{Exact, Fail, Inexact};

#[test]
fn patternmatcher_cases() {
    // moby/patternmatcher TestMatches: `Exact` matches the path itself, `Inexact` only a parent of it.
    let cases: &[(&str, &str, Want)] = &[
        ("**", "file", Exact),
        ("**", "file/", Exact),
        ("**/", "file", Exact),
        ("**/", "file/", Exact),
        ("**", "/", Exact),
        ("**/", "/", Exact),
        ("**", "dir/file", Exact),
        ("**/", "dir/file", Exact),
        ("**", "dir/file/", Exact),
        ("**/", "dir/file/", Exact),
        ("**/**", "dir/file", Exact),
        ("**/**", "dir/file/", Exact),
        ("dir/**", "dir/file", Exact),
        ("dir/**", "dir/file/", Exact),
        ("dir/**", "dir/dir2/file", Exact),
        ("dir/**", "dir/dir2/file/", Exact),
        ("**/dir", "dir", Exact),
        ("**/dir", "dir/file", Inexact),
        ("**/dir2/*", "dir/dir2/file", Exact),
        ("**/dir2/*", "dir/dir2/file/", Inexact),
        ("**/dir2/**", "dir/dir2/dir3/file", Exact),
        ("**/dir2/**", "dir/dir2/dir3/file/", Exact),
        ("**file", "file", Exact),
        ("**file", "dir/file", Exact),
        ("**/file", "dir/file", Exact),
        ("**file", "dir/dir/file", Exact),
        ("**/file", "dir/dir/file", Exact),
        ("**/file*", "dir/dir/file", Exact),
        ("**/file*", "dir/dir/file.txt", Exact),
        ("**/file*txt", "dir/dir/file.txt", Exact),
        ("**/file*.txt", "dir/dir/file.txt", Exact),
        ("**/file*.txt*", "dir/dir/file.txt", Exact),
        ("**/**/*.txt", "dir/dir/file.txt", Exact),
        ("**/**/*.txt2", "dir/dir/file.txt", Fail),
        ("**/*.txt", "file.txt", Exact),
        ("**/**/*.txt", "file.txt", Exact),
        ("a**/*.txt", "a/file.txt", Exact),
        ("a**/*.txt", "a/dir/file.txt", Exact),
        ("a**/*.txt", "a/dir/dir/file.txt", Exact),
        ("a/*.txt", "a/dir/file.txt", Fail),
        ("a/*.txt", "a/file.txt", Exact),
        ("a/*.txt**", "a/file.txt", Exact),
        ("a[b-d]e", "ae", Fail),
        ("a[b-d]e", "ace", Exact),
        ("a[b-d]e", "aae", Fail),
        ("a[^b-d]e", "aze", Exact),
        (".*", ".foo", Exact),
        (".*", "foo", Fail),
        ("abc.def", "abcdef", Fail),
        ("abc.def", "abc.def", Exact),
        ("abc.def", "abcZdef", Fail),
        ("abc?def", "abcZdef", Exact),
        ("abc?def", "abcdef", Fail),
        ("**/foo/bar", "foo/bar", Exact),
        ("**/foo/bar", "dir/foo/bar", Exact),
        ("**/foo/bar", "dir/dir2/foo/bar", Exact),
        ("abc/**", "abc", Fail),
        ("abc/**", "abc/def", Exact),
        ("abc/**", "abc/def/ghi", Exact),
        ("**/.foo", ".foo", Exact),
        ("**/.foo", "bar.foo", Fail),
        ("a(b)c/def", "a(b)c/def", Exact),
        ("a(b)c/def", "a(b)c/xyz", Fail),
        ("a.|)$(}+{bc", "a.|)$(}+{bc", Exact),
        (
            "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
            "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
            Exact,
        ),
        (
            "dist/*.whl",
            "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
            Exact,
        ),
        ("a\\\\", "a\\", Exact),
        ("a\\*b", "a*b", Exact),
    ];
    assert!(cases.len() >= 60);
    for &(pattern, text, want) in cases {
        let ig = rules(&[pattern]);
        assert_eq!(
            ig.matches_exact(text),
            want == Exact,
            "MatchesExact({pattern:?}, {text:?})"
        );
        assert_eq!(
            ig.matches(text),
            want != Fail,
            "MatchesOrParentMatches({pattern:?}, {text:?})"
        );
        assert_eq!(
            walk_matches(&ig, text),
            want != Fail,
            "MatchesUsingParentResults({pattern:?}, {text:?})"
        );
    }

    let multi: &[(&[&str], &str, bool)] = &[
        (&["**", "!util/docker/web"], "util/docker/web/foo", false),
        (
            &["**", "!util/docker/web", "util/docker/web/foo"],
            "util/docker/web/foo",
            true,
        ),
        (
            &[
                "**",
                "!dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
            ],
            "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
            false,
        ),
        (
            &["**", "!dist/*.whl"],
            "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
            false,
        ),
        // The simple tests at the top of patternmatcher_test.go.
        (&["*"], "fileutils.go", true),
        (&["*.go"], "fileutils.go", true),
        (&["!fileutils.go", "*.go"], "fileutils.go", true),
        (&["docs", "!docs/README.md"], "docs/README.md", false),
        (&["docs/", "!docs/README.md"], "docs/README.md", false),
        (&["docs/*", "!docs/README.md"], "docs/README.md", false),
        (&["*.go", "!fileutils.go"], "fileutils.go", false),
        (&[], "/any/path/there", false),
    ];
    for &(patterns, text, want) in multi {
        let ig = rules(patterns);
        assert_eq!(ig.matches(text), want, "{patterns:?} {text:?}");
        assert_eq!(
            walk_matches(&ig, text),
            want,
            "{patterns:?} {text:?} (walk)"
        );
    }
}

#[test]
fn go_match_table_through_patternmatcher() {
    // patternmatcher's TestMatch: Go's filepath.Match table run through `Matches`, where a pattern may also
    // match a parent ("a*" matches "ab/c" through "ab"). `None`: the pattern is an error.
    let cases: &[(&str, &str, Option<bool>)] = &[
        ("abc", "abc", Some(true)),
        ("*", "abc", Some(true)),
        ("*c", "abc", Some(true)),
        ("a*", "a", Some(true)),
        ("a*", "abc", Some(true)),
        ("a*", "ab/c", Some(true)),
        ("a*/b", "abc/b", Some(true)),
        ("a*/b", "a/c/b", Some(false)),
        ("a*b*c*d*e*/f", "axbxcxdxe/f", Some(true)),
        ("a*b*c*d*e*/f", "axbxcxdxexxx/f", Some(true)),
        ("a*b*c*d*e*/f", "axbxcxdxe/xxx/f", Some(false)),
        ("a*b*c*d*e*/f", "axbxcxdxexxx/fff", Some(false)),
        ("a*b?c*x", "abxbbxdbxebxczzx", Some(true)),
        ("a*b?c*x", "abxbbxdbxebxczzy", Some(false)),
        ("ab[c]", "abc", Some(true)),
        ("ab[b-d]", "abc", Some(true)),
        ("ab[e-g]", "abc", Some(false)),
        ("ab[^c]", "abc", Some(false)),
        ("ab[^b-d]", "abc", Some(false)),
        ("ab[^e-g]", "abc", Some(true)),
        ("a\\*b", "a*b", Some(true)),
        ("a\\*b", "ab", Some(false)),
        ("a?b", "a☺b", Some(true)),
        ("a[^a]b", "a☺b", Some(true)),
        ("a???b", "a☺b", Some(false)),
        ("a[^a][^a][^a]b", "a☺b", Some(false)),
        ("[a-ζ]*", "α", Some(true)),
        ("*[a-ζ]", "A", Some(false)),
        ("a?b", "a/b", Some(false)),
        ("a*b", "a/b", Some(false)),
        ("[\\]a]", "]", Some(true)),
        ("[\\-]", "-", Some(true)),
        ("[x\\-]", "x", Some(true)),
        ("[x\\-]", "-", Some(true)),
        ("[x\\-]", "z", Some(false)),
        ("[\\-x]", "x", Some(true)),
        ("[\\-x]", "-", Some(true)),
        ("[\\-x]", "a", Some(false)),
        ("[]a]", "]", None),
        ("[-]", "-", None),
        ("[x-]", "x", None),
        ("[x-]", "-", None),
        ("[x-]", "z", None),
        ("[-x]", "x", None),
        ("[-x]", "-", None),
        ("[-x]", "a", None),
        ("\\", "a", None),
        ("[a-b-c]", "a", None),
        ("[", "a", None),
        ("[^", "a", None),
        ("[^bc", "a", None),
        ("a[", "a", None),
        ("a[", "ab", None),
        ("*x", "xxx", Some(true)),
        ("!", "fileutils.go", None),
    ];
    for &(pattern, text, want) in cases {
        match (Ignore::from_patterns([pattern]), want) {
            (Ok(ig), Some(want)) => {
                assert_eq!(ig.matches(text), want, "Matches({text:?}, {pattern:?})")
            }
            (Err(_), None) => {}
            (got, want) => panic!("{pattern:?}: got {got:?}, want {want:?}"),
        }
    }
}

#[test]
fn dockerignore_file_syntax() {
    let text = "\u{feff}# comment\r\n\
                \n\
                \t  *.md  \r\n\
                !README*.md\n\
                README-secret.md\n\
                /abs/path/\n\
                ./dot/../cleaned\n\
                !  spaced\n\
                \x20# not a comment\n\
                !/rooted\n\
                node_modules";
    let ig = Ignore::parse(text).unwrap();
    let got: Vec<_> = ig.rules().collect();
    assert_eq!(
        got,
        [
            (3, false, "*.md"),
            (4, true, "README*.md"),
            (5, false, "README-secret.md"),
            (6, false, "abs/path"),
            (7, false, "cleaned"),
            (8, true, "spaced"),
            (9, false, "# not a comment"),
            (10, true, "rooted"),
            (11, false, "node_modules"),
        ]
    );
    assert!(ig.has_exceptions());
    // The last matching line decides (the docs' README examples).
    assert!(ig.matches("CHANGES.md"));
    assert!(!ig.matches("README.md"));
    assert!(ig.matches("README-secret.md"));
    let ig = Ignore::parse("*.md\nREADME-secret.md\n!README*.md\n").unwrap();
    assert!(!ig.matches("README-secret.md"));
    assert!(ig.matches("docs.md"));
    // A matched directory takes everything below it.
    assert!(Ignore::parse("node_modules")
        .unwrap()
        .matches("node_modules/a/b.js"));
    assert!(!Ignore::parse("node_modules")
        .unwrap()
        .matches("src/node_modules/a.js"));
    // "/" alone is kept as "/" and matches no relative path.
    assert!(!Ignore::parse("/").unwrap().matches("a"));
    assert!(Ignore::parse("").unwrap().is_empty());
}

#[test]
fn dockerignore_docs_examples() {
    // docs.docker.com/build/concepts/context/#dockerignore-files
    let ig = Ignore::parse("# comment\n*/temp*\n*/*/temp*\ntemp?\n").unwrap();
    assert!(ig.matches("somedir/temporary.txt"));
    assert!(ig.matches("somedir/temp"));
    assert!(ig.matches("somedir/subdir/temporary.txt"));
    assert!(ig.matches("tempa"));
    assert!(ig.matches("tempb"));
    assert!(!ig.matches("temporary.txt"));
    assert!(!ig.matches("a/b/c/temp"));
    let ig = Ignore::parse("**/*.go").unwrap();
    assert!(ig.matches("main.go"));
    assert!(ig.matches("a/b/c.go"));
    assert!(!ig.matches("a/b/c.gox"));
    let ig = Ignore::parse("/foo/bar").unwrap();
    assert!(ig.matches("foo/bar"));
    assert!(!ig.matches("bar"));
    assert!(!ig.matches("x/foo/bar"));
}

#[test]
fn bad_pattern_names_the_line() {
    let err = Ignore::parse("ok\n# fine\nsrc/[abc\n").unwrap_err();
    assert_eq!(
        err.to_string(),
        ".dockerignore, line 3: bad pattern \"src/[abc\": '[' has no closing ']'"
    );
    let err = Ignore::parse("a\n!\n").unwrap_err();
    assert!(
        matches!(
            err,
            IgnoreError::Pattern {
                line: 2,
                source: PatternError::LoneBang,
                ..
            }
        ),
        "{err}"
    );
    let err = Ignore::parse("a\n  ! \n").unwrap_err();
    assert!(matches!(err, IgnoreError::Pattern { line: 2, .. }), "{err}");
    let err = Ignore::from_patterns(["x", "[z-a]"]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "patterns, line 2: bad pattern \"[z-a]\": character class range 'z'-'a' runs backwards"
    );
}

#[test]
fn walk_and_matches_differ_where_docker_does() {
    // `!d` was skipped for `d` (nothing excluded it yet), so the walkers do not credit it for `d/x`.
    let ig = rules(&["*/x", "!d"]);
    assert!(!ig.matches("d/x"));
    assert!(walk_matches(&ig, "d/x"));
}

// ---- the context on disk ----

/// Builds a tree: "dir/" makes a directory, "a -> b" a symlink, anything else a file with that content.
fn tree(entries: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for &(path, content) in entries {
        let full = dir.path().join(path.trim_end_matches('/'));
        fs::create_dir_all(full.parent().unwrap()).unwrap();
        if path.ends_with('/') {
            fs::create_dir_all(&full).unwrap();
        } else if let Some(target) = content.strip_prefix("-> ") {
            symlink(target, &full).unwrap();
        } else {
            fs::write(&full, content).unwrap();
        }
    }
    dir
}

fn paths(entries: &[Entry]) -> Vec<String> {
    entries.iter().map(|e| e.path_str().into_owned()).collect()
}

fn scan(dir: &Path, ignore: &str) -> Context {
    Context::scan(dir, &Ignore::parse(ignore).unwrap()).unwrap()
}

#[test]
fn walk_lists_in_order_with_kinds() {
    let t = tree(&[
        ("a.txt", "1"),
        ("a/b", "2"),
        ("a/c/", ""),
        ("b", "3"),
        ("A", "4"),
        ("a-b", "5"),
    ]);
    let ctx = scan(t.path(), "");
    // Each directory sorted by name (bytes), a directory right before what it holds.
    assert_eq!(
        paths(ctx.entries()),
        ["A", "a", "a/b", "a/c", "a-b", "a.txt", "b"]
    );
    let a = ctx.get(Path::new("a")).unwrap();
    assert_eq!(a.kind, EntryKind::Dir);
    let f = ctx.get(Path::new("a/b")).unwrap();
    assert_eq!((f.kind.clone(), f.size), (EntryKind::File, 1));
    assert_eq!(ctx.get(Path::new("")).unwrap().kind, EntryKind::Dir);
    assert_eq!(paths(ctx.below(Path::new("a"))), ["a/b", "a/c"]);
}

#[test]
fn excluded_directories_are_not_read_unless_an_exception_reaches_in() {
    let t = tree(&[
        ("Dockerfile", "FROM scratch"),
        ("docs/README.md", "r"),
        ("docs/other.md", "o"),
        ("docs/sub/x", "x"),
        ("node_modules/pkg/index.js", "js"),
        ("node_modules/pkg/deep/more.js", "js"),
        ("app.log", "log"),
        ("src/main.rs", "fn main() {}"),
        ("src/debug.log", "log"),
    ]);
    let ctx = scan(t.path(), "docs\n!docs/README.md\nnode_modules\n**/*.log\n");
    assert_eq!(
        paths(ctx.entries()),
        ["Dockerfile", "docs", "docs/README.md", "src", "src/main.rs"]
    );
    // The root, docs (an exception reaches into it) and src; not node_modules, not docs/sub.
    assert_eq!(ctx.dirs_read(), 3);
}

#[test]
fn exceptions_re_include_below_excluded_directories() {
    let t = tree(&[
        ("a/keep", "k"),
        ("a/other", "o"),
        ("b/c/keep", "k"),
        ("b/c/x", "x"),
        ("keep", "k"),
        ("top", "t"),
    ]);
    // A glob exception: every excluded directory it could reach into is walked.
    let ctx = scan(t.path(), "*\n!*/keep\n");
    assert_eq!(paths(ctx.entries()), ["a", "a/keep"]);
    // Excluded parents are listed before what is re-included below them, and only then.
    let ctx = scan(t.path(), "*\n!**/keep\n");
    assert_eq!(
        paths(ctx.entries()),
        ["a", "a/keep", "b", "b/c", "b/c/keep", "keep"]
    );
    let ctx = scan(t.path(), "b\n!b/c/keep\n");
    assert_eq!(
        paths(ctx.entries()),
        ["a", "a/keep", "a/other", "b", "b/c", "b/c/keep", "keep", "top"]
    );
    // The exception cannot reach into a: it is not read.
    let ctx = scan(t.path(), "a\nb\n!b/c\n");
    assert_eq!(
        paths(ctx.entries()),
        ["b", "b/c", "b/c/keep", "b/c/x", "keep", "top"]
    );
    assert_eq!(ctx.dirs_read(), 3);
}

#[test]
fn double_star() {
    let t = tree(&[
        ("x.tmp", ""),
        ("a/x.tmp", ""),
        ("a/b/x.tmp", ""),
        ("a/b/y.txt", ""),
        ("build/out/bin", ""),
        ("build/keep.txt", ""),
        ("cache/z", ""),
    ]);
    let ctx = scan(t.path(), "**/*.tmp\nbuild/**\n!build/**/*.txt\ncache**\n");
    // `build/**` takes what is below build, not build itself; `cache**` is a prefix and takes cache too.
    assert_eq!(
        paths(ctx.entries()),
        ["a", "a/b", "a/b/y.txt", "build", "build/keep.txt"]
    );
    let ctx = scan(t.path(), "**\n!a/**/y.txt\n");
    assert_eq!(paths(ctx.entries()), ["a", "a/b", "a/b/y.txt"]);
}

#[test]
fn dockerfile_and_dockerignore_are_always_sent() {
    let t = tree(&[
        ("Dockerfile", "FROM scratch"),
        (".dockerignore", "Dockerfile\n.dockerignore\nsub\n*.md\n"),
        ("sub/Dockerfile.dev", "FROM scratch"),
        ("sub/other", "o"),
        ("x.md", "m"),
        ("y", "y"),
    ]);
    let ig = Ignore::load(t.path(), Some(&t.path().join("Dockerfile"))).unwrap();
    assert_eq!(ig.source(), Some(t.path().join(".dockerignore").as_path()));
    let sent = walk(t.path(), &ig, Some(&t.path().join("Dockerfile"))).unwrap();
    assert_eq!(paths(&sent), [".dockerignore", "Dockerfile", "y"]);
    // With -f sub/Dockerfile.dev: that file (and its directory, to hold it) is sent; the rest of sub is not.
    let df = t.path().join("sub/Dockerfile.dev");
    let ig = Ignore::load(t.path(), Some(&df)).unwrap();
    let sent = walk(t.path(), &ig, Some(&df)).unwrap();
    assert_eq!(
        paths(&sent),
        [".dockerignore", "sub", "sub/Dockerfile.dev", "y"]
    );
    // COPY does not see them: docker takes excluded build files out again.
    assert_eq!(paths(scan_with(t.path(), &ig).entries()), ["y"]);
    // A Dockerfile outside the context changes nothing.
    let outside = tempfile::tempdir().unwrap();
    let sent = walk(t.path(), &ig, Some(&outside.path().join("Dockerfile"))).unwrap();
    assert_eq!(paths(&sent), [".dockerignore", "y"]);
}

fn scan_with(dir: &Path, ig: &Ignore) -> Context {
    Context::scan(dir, ig).unwrap()
}

#[test]
fn per_dockerfile_ignore_file_wins() {
    let t = tree(&[
        (".dockerignore", "a\n"),
        ("build/app.Dockerfile", "FROM scratch"),
        ("build/app.Dockerfile.dockerignore", "b\nbuild\n"),
        ("a", ""),
        ("b", ""),
    ]);
    let df = t.path().join("build/app.Dockerfile");
    let ig = Ignore::load(t.path(), Some(&df)).unwrap();
    assert_eq!(
        ig.source(),
        Some(t.path().join("build/app.Dockerfile.dockerignore").as_path())
    );
    assert!(ig.matches("b") && !ig.matches("a"));
    let sent = walk(t.path(), &ig, Some(&df)).unwrap();
    assert_eq!(
        paths(&sent),
        [
            ".dockerignore",
            "a",
            "build",
            "build/app.Dockerfile",
            "build/app.Dockerfile.dockerignore"
        ]
    );
    // Without one, the context's .dockerignore; without that, nothing.
    let ig = Ignore::load(t.path(), Some(&t.path().join("Dockerfile"))).unwrap();
    assert!(ig.matches("a") && !ig.matches("b"));
    let ig = Ignore::load(&t.path().join("build"), None).unwrap();
    assert!(ig.is_empty() && ig.source().is_none());
    // A bad line is reported against the file it is in.
    fs::write(
        t.path().join("build/app.Dockerfile.dockerignore"),
        "ok\n[\n",
    )
    .unwrap();
    let err = Ignore::load(t.path(), Some(&df)).unwrap_err().to_string();
    assert!(err.contains("app.Dockerfile.dockerignore, line 2"), "{err}");
}

#[test]
fn symlinks_are_listed_never_followed() {
    let outside = tree(&[("secret", "s"), ("d/inner", "i")]);
    let t = tree(&[("dir/f", "f")]);
    symlink("dir", t.path().join("in_dir")).unwrap();
    symlink(outside.path(), t.path().join("out_dir")).unwrap();
    symlink(outside.path().join("secret"), t.path().join("out_file")).unwrap();
    symlink("../../..", t.path().join("dir/up")).unwrap();
    symlink("loop", t.path().join("loop")).unwrap();
    symlink("missing", t.path().join("dangling")).unwrap();
    let ctx = scan(t.path(), "");
    assert_eq!(
        paths(ctx.entries()),
        ["dangling", "dir", "dir/f", "dir/up", "in_dir", "loop", "out_dir", "out_file"]
    );
    assert_eq!(
        ctx.get(Path::new("in_dir")).unwrap().kind,
        EntryKind::Symlink("dir".into())
    );
    assert_eq!(
        ctx.get(Path::new("out_dir")).unwrap().kind,
        EntryKind::Symlink(outside.path().to_owned())
    );
    assert_eq!(ctx.dirs_read(), 2);
    // The context path itself may be a symlink: it is resolved.
    let via = tempfile::tempdir().unwrap();
    symlink(t.path(), via.path().join("ctx")).unwrap();
    let ctx = scan(&via.path().join("ctx"), "");
    assert_eq!(ctx.root(), fs::canonicalize(t.path()).unwrap());
    assert_eq!(ctx.entries().len(), 8);
    // Not a directory.
    assert!(matches!(
        Context::scan(&t.path().join("dir/f"), &Ignore::default()),
        Err(ContextError::NotADirectory { .. })
    ));
}

// ---- COPY sources ----

fn pick(ctx: &Context, sources: &[&str]) -> Vec<(usize, String, String, String)> {
    ctx.pick(sources)
        .unwrap()
        .into_iter()
        .map(|s| {
            (
                s.source,
                s.matched.to_string_lossy().into_owned(),
                s.rel.to_string_lossy().into_owned(),
                s.entry.path_str().into_owned(),
            )
        })
        .collect()
}

fn picked(ctx: &Context, sources: &[&str]) -> Vec<String> {
    pick(ctx, sources)
        .into_iter()
        .map(|(_, m, r, _)| if r.is_empty() { m } else { format!("{m}/{r}") })
        .collect()
}

fn source_tree() -> tempfile::TempDir {
    tree(&[
        ("Dockerfile", "FROM scratch"),
        ("b.txt", "b"),
        ("a.txt", "a"),
        ("c.md", "c"),
        ("src/main.rs", "main"),
        ("src/lib/mod.rs", "mod"),
        ("src/lib/x.txt", "x"),
        ("src/empty/", ""),
        ("docs/a/x", "1"),
        ("docs/b/x", "2"),
        ("docs/b/y", "3"),
        ("secret.key", "k"),
    ])
}

#[test]
fn copy_sources_in_copy_order() {
    let t = source_tree();
    let ctx = scan(t.path(), "secret.key\n");
    assert_eq!(picked(&ctx, &["a.txt"]), ["a.txt"]);
    // A directory: itself, then everything below in walk order.
    assert_eq!(
        picked(&ctx, &["src"]),
        [
            "src",
            "src/empty",
            "src/lib",
            "src/lib/mod.rs",
            "src/lib/x.txt",
            "src/main.rs"
        ]
    );
    assert_eq!(
        pick(&ctx, &["src/"])[3],
        (
            0,
            "src".into(),
            "lib/mod.rs".into(),
            "src/lib/mod.rs".into()
        )
    );
    // Globs match in sorted order, whatever order the files were made in.
    assert_eq!(picked(&ctx, &["*.txt"]), ["a.txt", "b.txt"]);
    assert_eq!(
        picked(&ctx, &["[ab].txt", "?.md"]),
        ["a.txt", "b.txt", "c.md"]
    );
    assert_eq!(picked(&ctx, &["docs/*/x"]), ["docs/a/x", "docs/b/x"]);
    assert_eq!(
        picked(&ctx, &["src/*"]),
        [
            "src/empty",
            "src/lib",
            "src/lib/mod.rs",
            "src/lib/x.txt",
            "src/main.rs"
        ]
    );
    // `*` stops at `/`; `**` is two stars.
    assert_eq!(picked(&ctx, &["**.txt"]), ["a.txt", "b.txt"]);
    // Sources keep their order, and the same file twice is copied twice.
    let got = pick(&ctx, &["c.md", "a.txt", "c.md"]);
    assert_eq!(
        got.iter().map(|g| (g.0, g.1.as_str())).collect::<Vec<_>>(),
        [(0, "c.md"), (1, "a.txt"), (2, "c.md")]
    );
    // Leading `/` and `./`, `..` that stays inside.
    assert_eq!(
        picked(&ctx, &["/a.txt", "./b.txt", "src/../c.md"]),
        ["a.txt", "b.txt", "c.md"]
    );
    // The whole context, without what .dockerignore excludes.
    let all = picked(&ctx, &["."]);
    assert_eq!(all.len(), ctx.entries().len() + 1);
    assert!(!all.iter().any(|p| p.contains("secret")));
}

#[test]
fn copy_source_errors() {
    let t = source_tree();
    let ctx = scan(t.path(), "secret.key\n");
    let err = |s: &str| ctx.pick(&[s]).unwrap_err().to_string();
    assert_eq!(
        err("x"),
        "file not found in build context or excluded by .dockerignore: stat x: file does not exist"
    );
    assert_eq!(
        err("secret.key"),
        "file not found in build context or excluded by .dockerignore: stat secret.key: file does not exist"
    );
    assert_eq!(err("*.nothing"), "file not found in build context or excluded by .dockerignore: stat *.nothing: file does not exist");
    assert_eq!(err("a.txt/x"), "file not found in build context or excluded by .dockerignore: stat a.txt/x: file does not exist");
    assert_eq!(
        err("../x"),
        "forbidden path outside the build context: ../x"
    );
    assert_eq!(
        err("src/../../x"),
        "forbidden path outside the build context: src/../../x"
    );
    assert_eq!(
        err("/../x"),
        "forbidden path outside the build context: /../x"
    );
    assert_eq!(err(".."), "forbidden path outside the build context: ..");
    assert!(matches!(
        ctx.pick(&["src/[a"]),
        Err(SourceError::Pattern { .. })
    ));
    // The first failing source is reported even after good ones.
    assert!(matches!(ctx.pick(&["a.txt", "nope"]), Err(SourceError::NotFound(s)) if s == "nope"));
}

#[test]
fn copy_sources_follow_symlinks_inside_the_context_only() {
    let outside = tree(&[("secret", "s")]);
    let t = tree(&[
        ("real/f", "f"),
        ("real/g", "g"),
        ("file", "content"),
        ("etc/passwd", "in-context"),
    ]);
    symlink("real", t.path().join("linkdir")).unwrap();
    symlink("real/f", t.path().join("linkfile")).unwrap();
    symlink("/real/g", t.path().join("abslink")).unwrap();
    symlink("/etc/passwd", t.path().join("passwd")).unwrap();
    symlink(outside.path().join("secret"), t.path().join("escape")).unwrap();
    symlink("../../../../../../file", t.path().join("real/up")).unwrap();
    symlink("l2", t.path().join("l1")).unwrap();
    symlink("l1", t.path().join("l2")).unwrap();
    let ctx = scan(t.path(), "");
    // The source itself is followed: its target's content, under the link's name.
    let got = pick(&ctx, &["linkfile"]);
    assert_eq!(got, [(0, "linkfile".into(), "".into(), "real/f".into())]);
    assert_eq!(pick(&ctx, &["abslink"])[0].3, "real/g");
    // An absolute target starts at the context root, `..` stops there.
    assert_eq!(pick(&ctx, &["passwd"])[0].3, "etc/passwd");
    assert_eq!(pick(&ctx, &["real/up"])[0].3, "file");
    assert!(matches!(
        ctx.pick(&["escape"]),
        Err(SourceError::NotFound(_))
    ));
    // A symlinked directory: its contents; symlinks below a copied directory stay links.
    assert_eq!(
        picked(&ctx, &["linkdir"]),
        ["linkdir", "linkdir/f", "linkdir/g", "linkdir/up"]
    );
    let sel = ctx.pick(&["real"]).unwrap();
    assert_eq!(
        sel[3].entry.kind,
        EntryKind::Symlink("../../../../../../file".into())
    );
    // Through a symlinked directory, and a glob match that is a symlink.
    assert_eq!(pick(&ctx, &["linkdir/*"])[0].3, "real/f");
    assert_eq!(
        pick(&ctx, &["linkf*"])[0],
        (0, "linkfile".into(), "".into(), "real/f".into())
    );
    assert!(matches!(ctx.pick(&["l1"]), Err(SourceError::Loop(_))));
}

fn digest(dir: &Path, ignore: &str, sources: &[&str]) -> String {
    scan(dir, ignore)
        .select(sources, HashOptions::default())
        .unwrap()
        .digest
}

#[test]
fn digest_is_stable() {
    let t = source_tree();
    let d = digest(t.path(), "", &["src", "*.txt"]);
    assert!(d.starts_with("sha256:") && d.len() == 71, "{d}");
    assert_eq!(digest(t.path(), "", &["src", "*.txt"]), d);
    // mtimes and atimes do not count.
    let later = SystemTime::now() + Duration::from_secs(3600);
    for f in ["src/main.rs", "a.txt", "src/lib"] {
        fs::File::open(t.path().join(f))
            .unwrap()
            .set_modified(later)
            .unwrap();
    }
    assert_eq!(digest(t.path(), "", &["src", "*.txt"]), d);
    // The same content in a fresh tree hashes the same.
    let u = source_tree();
    assert_eq!(digest(u.path(), "", &["src", "*.txt"]), d);
    // The order of the sources counts (it is the order COPY copies in).
    assert_ne!(digest(t.path(), "", &["*.txt", "src"]), d);
}

#[test]
fn digest_follows_what_is_copied_and_nothing_else() {
    let t = source_tree();
    let sources = ["src", "*.txt"];
    let mut last = digest(t.path(), "", &sources);
    let mut check = |what: &str, changes: bool| {
        let now = digest(t.path(), "", &sources);
        assert_eq!(now != last, changes, "{what}");
        last = now;
    };
    fs::write(t.path().join("src/main.rs"), "main2").unwrap();
    check("content of a copied file", true);
    fs::write(t.path().join("src/main.rs"), "main3").unwrap();
    check("same size, other content", true);
    fs::set_permissions(t.path().join("a.txt"), fs::Permissions::from_mode(0o755)).unwrap();
    check("mode of a copied file", true);
    fs::set_permissions(
        t.path().join("src/empty"),
        fs::Permissions::from_mode(0o700),
    )
    .unwrap();
    check("mode of a copied directory", true);
    fs::rename(t.path().join("b.txt"), t.path().join("d.txt")).unwrap();
    check("name of a globbed file", true);
    fs::write(t.path().join("src/lib/new"), "").unwrap();
    check("a new file in a copied directory", true);
    fs::create_dir(t.path().join("src/empty/sub")).unwrap();
    check("a new empty directory in a copied directory", true);
    symlink("x", t.path().join("src/link")).unwrap();
    check("a new symlink", true);
    fs::remove_file(t.path().join("src/link")).unwrap();
    symlink("y", t.path().join("src/link")).unwrap();
    check("a symlink's target", true);
    fs::write(t.path().join("c.md"), "changed").unwrap();
    check("an unpicked file", false);
    fs::write(t.path().join("docs/b/y"), "changed").unwrap();
    check("a file in an unpicked directory", false);
    fs::write(t.path().join("new.md"), "").unwrap();
    check("a new file the glob does not match", false);
    fs::write(t.path().join("Dockerfile"), "FROM busybox").unwrap();
    check("the Dockerfile", false);
    fs::write(t.path().join("e.txt"), "").unwrap();
    check("a new file the glob matches", true);

    // Excluded files do not count even under a copied directory.
    let before = digest(t.path(), "src/lib/*.txt\n", &["src"]);
    fs::write(t.path().join("src/lib/x.txt"), "changed").unwrap();
    assert_eq!(digest(t.path(), "src/lib/*.txt\n", &["src"]), before);
    assert_ne!(digest(t.path(), "", &["src"]), before);

    // Owners count only when asked.
    let ctx = scan(t.path(), "");
    let with = ctx.select(&["src"], HashOptions { owners: true }).unwrap();
    let without = ctx.select(&["src"], HashOptions::default()).unwrap();
    assert_ne!(with.digest, without.digest);
    assert_eq!(with.entries, without.entries);
}

#[test]
fn digest_separates_fields() {
    // Moving bytes between a name and the content, or between two files, changes the digest.
    let a = tree(&[("d/ab", "c"), ("d/x", "")]);
    let b = tree(&[("d/a", "bc"), ("d/x", "")]);
    assert_ne!(digest(a.path(), "", &["d"]), digest(b.path(), "", &["d"]));
    let a = tree(&[("d/a", "xy"), ("d/b", "z")]);
    let b = tree(&[("d/a", "x"), ("d/b", "yz")]);
    assert_ne!(digest(a.path(), "", &["d"]), digest(b.path(), "", &["d"]));
    // A file and a symlink with the same bytes as target.
    let a = tree(&[("d/f", "t")]);
    let b = tree(&[("d/f", "-> t")]);
    assert_ne!(digest(a.path(), "", &["d"]), digest(b.path(), "", &["d"]));
}

#[test]
fn read_all_case_from_moby() {
    // patternmatcher/ignorefile TestReadAll; the bare "!" lines it keeps are refused by `New`, so here.
    let content =
        "test1\n/test2\n/a/file/here\n\nlastfile\n# this is a comment\n! /inverted/abs/path\n";
    let ig = Ignore::parse(content).unwrap();
    let got: Vec<_> = ig
        .rules()
        .map(|(_, ex, p)| if ex { format!("!{p}") } else { p.to_owned() })
        .collect();
    assert_eq!(
        got,
        [
            "test1",
            "test2",
            "a/file/here",
            "lastfile",
            "!inverted/abs/path"
        ]
    );
    let err = Ignore::parse(&format!("{content}!\n! ")).unwrap_err();
    assert!(
        matches!(
            err,
            IgnoreError::Pattern {
                line: 8,
                source: PatternError::LoneBang,
                ..
            }
        ),
        "{err}"
    );
}
