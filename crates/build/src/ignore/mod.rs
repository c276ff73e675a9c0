//! `.dockerignore` and the build context it selects (issue 6).
//!
//! - [`Ignore`]: the rules, read and matched as docker reads and matches them (the CLI's `ignorefile.ReadAll`,
//!   then moby/patternmatcher). A line is trimmed, `#` in the first column makes a comment, a leading `!` an
//!   exception; each pattern goes through `filepath.Clean` and loses a leading `/`; the glob is Go's
//!   `filepath.Match` plus `**` for any number of directories. A pattern also matches everything below a path it
//!   matches, and the last matching line decides. [`Ignore::load`] prefers `<Dockerfile>.dockerignore` next to
//!   the Dockerfile to the context's `.dockerignore`, as BuildKit does.
//! - [`walk`] / [`Context::scan`]: the files, directories and symlinks of the context that are sent, without
//!   following a symlink and without reading an excluded directory unless an exception could re-include
//!   something below it.
//! - [`Context::select`]: what a COPY source list picks from the context, in the order COPY copies it, and a
//!   digest of exactly that for the build cache.

mod context;
mod pattern;
mod sources;

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

pub use context::{walk, Context, ContextError, Entry, EntryKind};
pub use pattern::{clean, has_wildcards, Glob, PatternError};
pub use sources::{HashOptions, Selected, Selection, SourceError};

use pattern::Matcher;

/// The ignore file at the root of a context.
pub const DOCKERIGNORE: &str = ".dockerignore";

#[derive(Debug, thiserror::Error)]
pub enum IgnoreError {
    #[error("reading {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{file}, line {line}: bad pattern {pattern:?}: {source}")]
    Pattern {
        /// The ignore file, or "patterns" for [`Ignore::from_patterns`].
        file: String,
        line: usize,
        pattern: String,
        #[source]
        source: PatternError,
    },
}

#[derive(Debug, Clone)]
struct Rule {
    line: usize,
    exception: bool,
    /// The cleaned pattern without its `!`.
    text: String,
    matcher: Matcher,
}

/// The rules of an ignore file. Empty (nothing excluded) by default.
#[derive(Debug, Clone, Default)]
pub struct Ignore {
    rules: Vec<Rule>,
    source: Option<PathBuf>,
}

impl Ignore {
    /// Parses the text of a `.dockerignore` file.
    pub fn parse(text: &str) -> Result<Self, IgnoreError> {
        Self::parse_named(text, DOCKERIGNORE)
    }

    fn parse_named(text: &str, file: &str) -> Result<Self, IgnoreError> {
        let mut ignore = Ignore::default();
        for (i, line) in text.split('\n').enumerate() {
            // Go's bufio.ScanLines drops a '\r' before the '\n'; ReadAll drops a UTF-8 BOM.
            let mut line = line.strip_suffix('\r').unwrap_or(line);
            if i == 0 {
                line = line.strip_prefix('\u{feff}').unwrap_or(line);
            }
            // A comment only in the first column: "  # x" is a pattern.
            if line.starts_with('#') {
                continue;
            }
            let mut p = line.trim();
            if p.is_empty() {
                continue;
            }
            let exception = p.starts_with('!');
            if exception {
                p = p[1..].trim();
            }
            let mut pattern = String::new();
            if !p.is_empty() {
                pattern = clean(p);
                if pattern.len() > 1 && pattern.starts_with('/') {
                    pattern.remove(0);
                }
            }
            if exception {
                pattern.insert(0, '!');
            }
            ignore.push(i + 1, &pattern, line.trim(), file)?;
        }
        Ok(ignore)
    }

    /// Rules from patterns as given to patternmatcher directly (no comments; each still trimmed and cleaned).
    pub fn from_patterns<I, S>(patterns: I) -> Result<Self, IgnoreError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut ignore = Ignore::default();
        for (i, p) in patterns.into_iter().enumerate() {
            let p = p.as_ref();
            ignore.push(i + 1, p, p.trim(), "patterns")?;
        }
        Ok(ignore)
    }

    /// patternmatcher's `New` for one pattern.
    fn push(
        &mut self,
        line: usize,
        pattern: &str,
        written: &str,
        file: &str,
    ) -> Result<(), IgnoreError> {
        let bad = |source| IgnoreError::Pattern {
            file: file.to_owned(),
            line,
            pattern: written.to_owned(),
            source,
        };
        let p = pattern.trim();
        if p.is_empty() {
            return Ok(());
        }
        let p = clean(p);
        let (exception, text) = match p.strip_prefix('!') {
            Some("") => return Err(bad(PatternError::LoneBang)),
            Some(rest) => (true, rest),
            None => (false, p.as_str()),
        };
        let matcher = Matcher::compile(text).map_err(bad)?;
        self.rules.push(Rule {
            line,
            exception,
            text: text.to_owned(),
            matcher,
        });
        Ok(())
    }

    /// Reads the ignore file for a build: `<dockerfile>.dockerignore` if it exists (BuildKit's per-Dockerfile
    /// ignore file, e.g. `app/Dockerfile.dockerignore` for `app/Dockerfile`), else `<context_dir>/.dockerignore`,
    /// else no rules. `dockerfile` is the Dockerfile's path on disk; `None` when it comes from stdin.
    pub fn load(context_dir: &Path, dockerfile: Option<&Path>) -> Result<Self, IgnoreError> {
        let mut candidates = Vec::with_capacity(2);
        if let Some(df) = dockerfile {
            let mut name = df.as_os_str().to_owned();
            name.push(".dockerignore");
            candidates.push(PathBuf::from(name));
        }
        candidates.push(context_dir.join(DOCKERIGNORE));
        for path in candidates {
            match fs::read(&path) {
                Ok(bytes) => {
                    let mut ignore = Self::parse_named(
                        &String::from_utf8_lossy(&bytes),
                        &path.display().to_string(),
                    )?;
                    ignore.source = Some(path);
                    return Ok(ignore);
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(source) => return Err(IgnoreError::Read { path, source }),
            }
        }
        Ok(Ignore::default())
    }

    /// The file the rules were read from, if [`Ignore::load`] found one.
    pub fn source(&self) -> Option<&Path> {
        self.source.as_deref()
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Whether any rule is an exception (`!pattern`).
    pub fn has_exceptions(&self) -> bool {
        self.rules.iter().any(|r| r.exception)
    }

    /// The rules in order: (line, is an exception, cleaned pattern without the `!`).
    pub fn rules(&self) -> impl Iterator<Item = (usize, bool, &str)> {
        self.rules
            .iter()
            .map(|r| (r.line, r.exception, r.text.as_str()))
    }

    /// Whether `path` (relative to the context, `/`-separated, clean) is excluded: the last rule that matches
    /// it or one of its parent directories decides (patternmatcher's `MatchesOrParentMatches`).
    pub fn matches(&self, path: &str) -> bool {
        let parents = parent_prefixes(path);
        let mut matched = false;
        for r in &self.rules {
            if r.exception == matched
                && (r.matcher.matches(path) || parents.iter().any(|p| r.matcher.matches(p)))
            {
                matched = !r.exception;
            }
        }
        matched
    }

    /// Like [`Ignore::matches`] without the parent directories (patternmatcher's `MatchesExact`).
    pub fn matches_exact(&self, path: &str) -> bool {
        let mut matched = false;
        for r in &self.rules {
            if r.exception == matched && r.matcher.matches(path) {
                matched = !r.exception;
            }
        }
        matched
    }

    /// patternmatcher's `MatchesUsingParentResults`, what docker's context walkers (the CLI's tar, BuildKit's
    /// fsutil) call: `parent` holds which rules matched the parent directory (`None` for an entry at the
    /// root); returns whether `path` is excluded and the same record for it.
    ///
    /// It differs from [`Ignore::matches`] in one corner, and the walkers' answer is what docker sends: a rule
    /// skipped for the parent (an exception while nothing matched yet) is not credited with matching it, so
    /// with `*/x` then `!d`, `d/x` stays excluded here while `matches` says included.
    pub(crate) fn matches_in_walk(&self, path: &str, parent: Option<&[bool]>) -> (bool, Vec<bool>) {
        let parents = if parent.is_none() {
            parent_prefixes(path)
        } else {
            Vec::new()
        };
        let mut info = vec![false; self.rules.len()];
        let mut matched = false;
        for (i, r) in self.rules.iter().enumerate() {
            let mut m = parent.is_some_and(|p| p[i]);
            if !m {
                if r.exception != matched {
                    continue;
                }
                m = r.matcher.matches(path) || parents.iter().any(|p| r.matcher.matches(p));
            }
            info[i] = m;
            if m {
                matched = !r.exception;
            }
        }
        (matched, info)
    }

    /// Whether an exception could re-include something strictly below the excluded directory `dir`.
    pub(crate) fn may_include_below(&self, dir: &str) -> bool {
        self.rules
            .iter()
            .any(|r| r.exception && r.matcher.could_match_below(dir))
    }

    /// Makes sure `path` is not excluded, by appending a literal exception when it is (what the docker CLI does
    /// for the Dockerfile and `.dockerignore`, which the builder needs even when the rules exclude them).
    pub fn keep(&mut self, path: &str) {
        if !self.matches(path) {
            return;
        }
        let mut literal = String::with_capacity(path.len() + 4);
        for c in path.chars() {
            if matches!(c, '*' | '?' | '[' | ']' | '\\' | '^') {
                literal.push('\\');
            }
            literal.push(c);
        }
        let matcher = Matcher::compile(&literal).expect("an escaped literal is a valid pattern");
        self.rules.push(Rule {
            line: 0,
            exception: true,
            text: literal,
            matcher,
        });
    }
}

/// The parent directories of `path` that patternmatcher also tries: `a`, `a/b` for `a/b/c` (Go's
/// `filepath.Dir`, split and re-joined).
fn parent_prefixes(path: &str) -> Vec<String> {
    let Some(slash) = path.rfind('/') else {
        return Vec::new();
    };
    let parent = clean(&path[..=slash]);
    if parent == "." {
        return Vec::new();
    }
    let dirs: Vec<&str> = parent.split('/').collect();
    (1..=dirs.len()).map(|i| dirs[..i].join("/")).collect()
}

#[cfg(test)]
mod tests;
