//! The two glob dialects of a build: moby/patternmatcher's, for `.dockerignore` lines, and Go's
//! `filepath.Match`, for COPY sources.
//!
//! Both are compiled to the same small token list and run by one NFA simulation (no backtracking: linear in
//! pattern × path). patternmatcher translates a pattern to a Go regexp, except for three shapes it matches with
//! string operations (an exact path, `prefix**`, `**suffix`); [`Matcher`] keeps that split because the string
//! forms behave differently at the edges (`**file` matches `xfile`, the regexp form would not).
//!
//! Where patternmatcher's regexp translation does something that cannot have been meant, berth follows
//! `filepath.Match`, whose grammar docker validates every pattern against:
//! - inside `[...]`, `*` and `?` are class members (the translation turns them into `[^/]*` inside the class);
//! - `\` before a letter or digit is that letter (the translation hands `\d` to the regexp, a digit class).

use std::fmt;

/// Why a pattern is malformed. Go says "syntax error in pattern" for all of these.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    #[error("'[' has no closing ']'")]
    UnclosedClass,
    #[error("{0:?} cannot start a member of a character class (escape it with '\\')")]
    ClassMember(char),
    #[error("character class range {lo:?}-{hi:?} runs backwards")]
    ReversedRange { lo: char, hi: char },
    #[error("trailing '\\' escapes nothing")]
    TrailingBackslash,
    #[error("\"!\" alone is not a pattern (illegal exclusion pattern)")]
    LoneBang,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Token {
    Char(char),
    /// `?`: one character other than `/`.
    Any,
    /// `*`: any run of characters other than `/`.
    Star,
    /// `**` followed by more pattern: `(.*/)?`, nothing or anything ending in `/`.
    DirPrefix,
    /// `**` at the end after something that is not a plain prefix: `.*`.
    Rest,
    /// A `^` outside a class: patternmatcher passes it to the regexp as is, where it anchors at the start.
    Anchor,
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
}

impl Token {
    fn class_matches(negated: bool, ranges: &[(char, char)], c: char) -> bool {
        ranges.iter().any(|&(lo, hi)| lo <= c && c <= hi) != negated
    }
}

/// Reads one member character of a `[...]` class at `chars[*i]`, as Go's `getEsc` does.
fn class_char(chars: &[char], i: &mut usize) -> Result<char, PatternError> {
    let mut c = *chars.get(*i).ok_or(PatternError::UnclosedClass)?;
    if c == '-' || c == ']' {
        return Err(PatternError::ClassMember(c));
    }
    if c == '\\' {
        *i += 1;
        c = *chars.get(*i).ok_or(PatternError::UnclosedClass)?;
    }
    *i += 1;
    if *i >= chars.len() {
        return Err(PatternError::UnclosedClass);
    }
    Ok(c)
}

/// Parses a class whose `[` is just before `chars[*i]`, leaving `*i` after its `]`.
fn class(chars: &[char], i: &mut usize) -> Result<Token, PatternError> {
    let negated = chars.get(*i) == Some(&'^');
    if negated {
        *i += 1;
    }
    let mut ranges = Vec::new();
    loop {
        if chars.get(*i) == Some(&']') && !ranges.is_empty() {
            *i += 1;
            return Ok(Token::Class { negated, ranges });
        }
        let lo = class_char(chars, i)?;
        let mut hi = lo;
        if chars.get(*i) == Some(&'-') {
            *i += 1;
            hi = class_char(chars, i)?;
        }
        // filepath.Match accepts a backwards range (it never matches); patternmatcher's regexp does not compile,
        // so docker fails on every path it checks. Say so once, up front.
        if hi < lo {
            return Err(PatternError::ReversedRange { lo, hi });
        }
        ranges.push((lo, hi));
    }
}

/// Go's `filepath.Match` grammar, tokenised.
fn go_tokens(pattern: &str) -> Result<Vec<Token>, PatternError> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        i += 1;
        tokens.push(match c {
            '*' => Token::Star,
            '?' => Token::Any,
            '[' => class(&chars, &mut i)?,
            '\\' => {
                let next = *chars.get(i).ok_or(PatternError::TrailingBackslash)?;
                i += 1;
                Token::Char(next)
            }
            c => Token::Char(c),
        });
    }
    Ok(tokens)
}

/// A set of NFA states: token index, and for `(.*/)?` whether we are inside it (consumed some of `.*`, still
/// owing the `/`).
struct States {
    at: Vec<bool>,
    inside: Vec<bool>,
}

impl States {
    fn new(n: usize) -> Self {
        States {
            at: vec![false; n + 1],
            inside: vec![false; n + 1],
        }
    }

    fn clear(&mut self) {
        self.at.fill(false);
        self.inside.fill(false);
    }

    fn is_empty(&self) -> bool {
        !self.at.iter().chain(&self.inside).any(|&b| b)
    }

    /// Adds state `i` and everything reachable from it without consuming a character.
    fn add(&mut self, tokens: &[Token], mut i: usize, at_start: bool) {
        while !self.at[i] {
            self.at[i] = true;
            match tokens.get(i) {
                Some(Token::Star | Token::Rest | Token::DirPrefix) => i += 1,
                Some(Token::Anchor) if at_start => i += 1,
                _ => return,
            }
        }
    }
}

/// Whether `tokens` match all of `text`, or with `prefix_only`, whether some continuation of `text` could still
/// match.
fn run(tokens: &[Token], text: &str, prefix_only: bool) -> bool {
    let n = tokens.len();
    let mut cur = States::new(n);
    let mut next = States::new(n);
    cur.add(tokens, 0, true);
    for c in text.chars() {
        next.clear();
        for i in 0..=n {
            if cur.inside[i] {
                // Go's regexp `.` stops at a newline.
                if c != '\n' {
                    next.inside[i] = true;
                }
                if c == '/' {
                    next.add(tokens, i + 1, false);
                }
            }
            if !cur.at[i] {
                continue;
            }
            match tokens.get(i) {
                Some(Token::Char(x)) if *x == c => next.add(tokens, i + 1, false),
                Some(Token::Any) if c != '/' => next.add(tokens, i + 1, false),
                Some(Token::Class { negated, ranges })
                    if Token::class_matches(*negated, ranges, c) =>
                {
                    next.add(tokens, i + 1, false)
                }
                Some(Token::Star) if c != '/' => next.add(tokens, i, false),
                Some(Token::Rest) if c != '\n' => next.add(tokens, i, false),
                Some(Token::DirPrefix) => {
                    if c != '\n' {
                        next.inside[i] = true;
                    }
                    if c == '/' {
                        next.add(tokens, i + 1, false);
                    }
                }
                _ => {}
            }
        }
        if next.is_empty() {
            return false;
        }
        std::mem::swap(&mut cur, &mut next);
    }
    prefix_only || cur.at[n]
}

/// A `.dockerignore` pattern compiled as patternmatcher compiles it (after `filepath.Clean` and the `!`).
#[derive(Clone, PartialEq, Eq)]
pub(crate) enum Matcher {
    /// No glob characters: the path must equal it.
    Exact(String),
    /// `literal**`: the path must start with the literal.
    Prefix(String),
    /// `**` then no glob characters: the path must end with the rest (or be it without its leading `/`).
    Suffix(String),
    Glob(Vec<Token>),
}

impl fmt::Debug for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Matcher::Exact(s) => write!(f, "Exact({s:?})"),
            Matcher::Prefix(s) => write!(f, "Prefix({s:?})"),
            Matcher::Suffix(s) => write!(f, "Suffix({s:?})"),
            Matcher::Glob(t) => write!(f, "Glob({t:?})"),
        }
    }
}

impl Matcher {
    /// Compiles a cleaned pattern (without its `!`), validating it against `filepath.Match`'s grammar first as
    /// patternmatcher does.
    pub(crate) fn compile(pattern: &str) -> Result<Self, PatternError> {
        go_tokens(pattern)?;
        #[derive(PartialEq)]
        enum Kind {
            Exact,
            Prefix,
            Suffix,
            Glob,
        }
        let chars: Vec<char> = pattern.chars().collect();
        let mut kind = Kind::Exact;
        let mut tokens = Vec::new();
        let mut i = 0;
        let mut first = true;
        while i < chars.len() {
            let c = chars[i];
            i += 1;
            match c {
                '*' if chars.get(i) == Some(&'*') => {
                    i += 1;
                    // `**/` is `**`: the slash is eaten.
                    if chars.get(i) == Some(&'/') {
                        i += 1;
                    }
                    if i == chars.len() {
                        if kind == Kind::Exact {
                            kind = Kind::Prefix;
                        } else {
                            tokens.push(Token::Rest);
                            kind = Kind::Glob;
                        }
                    } else {
                        tokens.push(Token::DirPrefix);
                        kind = Kind::Glob;
                    }
                    if first {
                        kind = Kind::Suffix;
                    }
                }
                '*' => {
                    tokens.push(Token::Star);
                    kind = Kind::Glob;
                }
                '?' => {
                    tokens.push(Token::Any);
                    kind = Kind::Glob;
                }
                '\\' => match chars.get(i) {
                    Some(&next) => {
                        i += 1;
                        tokens.push(Token::Char(next));
                        kind = Kind::Glob;
                    }
                    None => tokens.push(Token::Char('\\')),
                },
                '[' => {
                    tokens.push(class(&chars, &mut i)?);
                    kind = Kind::Glob;
                }
                ']' => {
                    tokens.push(Token::Char(']'));
                    kind = Kind::Glob;
                }
                '^' => tokens.push(Token::Anchor),
                c => tokens.push(Token::Char(c)),
            }
            first = false;
        }
        Ok(match kind {
            // A `^` is only an anchor once the pattern is a regexp; in the string forms it is a character.
            Kind::Exact => Matcher::Exact(pattern.to_owned()),
            Kind::Prefix => Matcher::Prefix(pattern[..pattern.len() - 2].to_owned()),
            Kind::Suffix => Matcher::Suffix(pattern[2..].to_owned()),
            Kind::Glob => Matcher::Glob(tokens),
        })
    }

    pub(crate) fn matches(&self, path: &str) -> bool {
        match self {
            Matcher::Exact(s) => path == s,
            Matcher::Prefix(s) => path.starts_with(s.as_str()),
            Matcher::Suffix(s) => path.ends_with(s.as_str()) || s.strip_prefix('/') == Some(path),
            Matcher::Glob(tokens) => run(tokens, path, false),
        }
    }

    /// Whether some path strictly below directory `dir` could match. Errs towards yes: the walker uses it to
    /// decide whether an excluded directory may be skipped.
    pub(crate) fn could_match_below(&self, dir: &str) -> bool {
        let below = format!("{dir}/");
        match self {
            Matcher::Exact(s) => s.starts_with(&below),
            Matcher::Prefix(s) => s.starts_with(&below) || below.starts_with(s.as_str()),
            Matcher::Suffix(_) => true,
            Matcher::Glob(tokens) => run(tokens, &below, true),
        }
    }
}

/// A COPY source pattern: Go's `filepath.Match` (`*` and `?` stop at `/`, `[...]` with `^` negation, `\`
/// escapes; `**` is just two stars).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob {
    tokens: Vec<Token>,
}

impl Glob {
    pub fn new(pattern: &str) -> Result<Self, PatternError> {
        Ok(Glob {
            tokens: go_tokens(pattern)?,
        })
    }

    /// Whether the whole of `name` matches.
    pub fn matches(&self, name: &str) -> bool {
        run(&self.tokens, name, false)
    }
}

/// Whether a path component holds an unescaped `*`, `?` or `[` (buildkit's `containsWildcards`).
pub fn has_wildcards(s: &str) -> bool {
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                chars.next();
            }
            '*' | '?' | '[' => return true,
            _ => {}
        }
    }
    false
}

/// Go's `filepath.Clean` on a `/`-separated path: one slash between elements, no `.` elements, `..` folded
/// into the element before it (or dropped at the root), no trailing slash; `.` for nothing.
pub fn clean(path: &str) -> String {
    let rooted = path.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|p| *p != "..") {
                    parts.pop();
                } else if !rooted {
                    parts.push("..");
                }
            }
            p => parts.push(p),
        }
    }
    let joined = parts.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_owned(),
        (false, false) => joined,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_as_go_does() {
        for (input, want) in [
            ("", "."),
            (".", "."),
            ("./", "."),
            ("a/", "a"),
            ("a//b", "a/b"),
            ("./a/./b/.", "a/b"),
            ("a/../b", "b"),
            ("a/../..", ".."),
            ("../a", "../a"),
            ("/", "/"),
            ("//a", "/a"),
            ("/../a", "/a"),
            ("/a/..", "/"),
            ("a\\b", "a\\b"),
            ("**/", "**"),
        ] {
            assert_eq!(clean(input), want, "clean({input:?})");
        }
    }

    #[test]
    fn compiled_kinds_as_patternmatcher() {
        // moby/patternmatcher's compileTests: which of its four match types each pattern gets.
        let kind = |p: &str| match Matcher::compile(p).unwrap() {
            Matcher::Exact(_) => "exact",
            Matcher::Prefix(_) => "prefix",
            Matcher::Suffix(_) => "suffix",
            Matcher::Glob(_) => "regexp",
        };
        for (p, want) in [
            ("*", "regexp"),
            ("file*", "regexp"),
            ("*file", "regexp"),
            ("a*/b", "regexp"),
            ("**", "suffix"),
            ("**/**", "regexp"),
            ("dir/**", "prefix"),
            ("**/dir", "suffix"),
            ("**/dir2/*", "regexp"),
            ("**/dir2/**", "regexp"),
            ("**file", "suffix"),
            ("**/file*txt", "regexp"),
            ("**/**/*.txt", "regexp"),
            ("a[b-d]e", "regexp"),
            (".*", "regexp"),
            ("abc.def", "exact"),
            ("abc?def", "regexp"),
            ("**/foo/bar", "suffix"),
            ("a(b)c/def", "exact"),
            ("a.|)$(}+{bc", "exact"),
            (
                "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
                "exact",
            ),
        ] {
            assert_eq!(kind(p), want, "{p:?}");
        }
    }

    #[test]
    fn string_forms_keep_their_quirks() {
        // `**file` is a suffix test, so it matches names that merely end in "file".
        assert!(Matcher::compile("**file").unwrap().matches("dir/xfile"));
        // ...while the regexp form of a `**` inside a pattern needs a directory boundary.
        assert!(!Matcher::compile("a**b").unwrap().matches("axb"));
        assert!(Matcher::compile("a**b").unwrap().matches("ab"));
        assert!(Matcher::compile("a**b").unwrap().matches("ax/b"));
        // A `^` outside a class anchors in the regexp form and is a character in the exact form.
        assert!(Matcher::compile("^a").unwrap().matches("^a"));
        assert!(Matcher::compile("^a*").unwrap().matches("abc"));
        assert!(!Matcher::compile("x^a*").unwrap().matches("x^abc"));
        // Go's regexp `.` (what `**` becomes) does not cross a newline; `[^/]` does.
        assert!(!Matcher::compile("a/**/b*").unwrap().matches("a/x\ny/bc"));
        assert!(Matcher::compile("a/*").unwrap().matches("a/x\ny"));
    }

    #[test]
    fn bad_patterns() {
        for (p, err) in [
            ("[", PatternError::UnclosedClass),
            ("[^", PatternError::UnclosedClass),
            ("[^bc", PatternError::UnclosedClass),
            ("a[", PatternError::UnclosedClass),
            ("[a-", PatternError::UnclosedClass),
            ("[\\", PatternError::UnclosedClass),
            ("[]a]", PatternError::ClassMember(']')),
            ("[-]", PatternError::ClassMember('-')),
            ("[x-]", PatternError::ClassMember(']')),
            ("[-x]", PatternError::ClassMember('-')),
            ("[a-b-c]", PatternError::ClassMember('-')),
            ("\\", PatternError::TrailingBackslash),
            ("a*\\", PatternError::TrailingBackslash),
            ("[z-a]", PatternError::ReversedRange { lo: 'z', hi: 'a' }),
        ] {
            assert_eq!(Matcher::compile(p).unwrap_err(), err, "{p:?}");
            assert!(Glob::new(p).is_err(), "{p:?}");
        }
    }

    #[test]
    fn go_filepath_match() {
        // Go's own TestMatch table (path/filepath), for the COPY dialect: `*` never crosses `/`.
        for (p, s, want) in [
            ("abc", "abc", true),
            ("*", "abc", true),
            ("*c", "abc", true),
            ("a*", "a", true),
            ("a*", "abc", true),
            ("a*", "ab/c", false),
            ("a*/b", "abc/b", true),
            ("a*/b", "a/c/b", false),
            ("a*b*c*d*e*/f", "axbxcxdxe/f", true),
            ("a*b*c*d*e*/f", "axbxcxdxexxx/f", true),
            ("a*b*c*d*e*/f", "axbxcxdxe/xxx/f", false),
            ("a*b*c*d*e*/f", "axbxcxdxexxx/fff", false),
            ("a*b?c*x", "abxbbxdbxebxczzx", true),
            ("a*b?c*x", "abxbbxdbxebxczzy", false),
            ("ab[c]", "abc", true),
            ("ab[b-d]", "abc", true),
            ("ab[e-g]", "abc", false),
            ("ab[^c]", "abc", false),
            ("ab[^b-d]", "abc", false),
            ("ab[^e-g]", "abc", true),
            ("a\\*b", "a*b", true),
            ("a\\*b", "ab", false),
            ("a?b", "a☺b", true),
            ("a[^a]b", "a☺b", true),
            ("a???b", "a☺b", false),
            ("a[^a][^a][^a]b", "a☺b", false),
            ("[a-ζ]*", "α", true),
            ("*[a-ζ]", "A", false),
            ("a?b", "a/b", false),
            ("a*b", "a/b", false),
            ("[\\]a]", "]", true),
            ("[\\-]", "-", true),
            ("[x\\-]", "x", true),
            ("[x\\-]", "-", true),
            ("[x\\-]", "z", false),
            ("[\\-x]", "x", true),
            ("[\\-x]", "-", true),
            ("[\\-x]", "a", false),
            ("*x", "xxx", true),
            ("[!a]", "!", true),
            ("[!a]", "b", false),
            ("**", "a/b", false),
            ("*/*", "a/b", true),
        ] {
            assert_eq!(
                Glob::new(p).unwrap().matches(s),
                want,
                "Match({p:?}, {s:?})"
            );
        }
    }

    #[test]
    fn could_match_below() {
        let below = |p: &str, d: &str| Matcher::compile(p).unwrap().could_match_below(d);
        assert!(below("a/b", "a"));
        assert!(!below("a/b", "b"));
        assert!(!below("a", "a"));
        assert!(!below("ab/c", "a"));
        assert!(below("a/**", "a"));
        assert!(below("a**", "a"));
        assert!(below("a/b/**", "a"));
        assert!(!below("b/**", "a"));
        assert!(below("**/keep", "x/y"));
        assert!(below("*/keep", "x"));
        assert!(!below("*/keep", "x/y"));
        assert!(below("*/*/keep", "x/y"));
        assert!(below("x/[a-c]/k", "x/b"));
        assert!(!below("x/[a-c]/k", "x/d"));
        assert!(below("x/**/k", "x/d/e/f"));
        assert!(!below("y/**/k", "x/d"));
    }

    #[test]
    fn wildcards() {
        assert!(has_wildcards("*.txt"));
        assert!(has_wildcards("a?"));
        assert!(has_wildcards("[ab]"));
        assert!(!has_wildcards("plain.txt"));
        assert!(!has_wildcards("a\\*b"));
    }
}
