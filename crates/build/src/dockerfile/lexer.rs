//! Words and variable substitution as buildkit's shell lexer has them (frontend/dockerfile/shell/lex.go):
//! `$VAR`, `${VAR}`, `${VAR:-default}`, `${VAR-default}`, `${VAR:+alt}`, `${VAR+alt}`, `${VAR?message}`,
//! `${VAR#pattern}`, `${VAR%pattern}` (doubled for the longest match), `${VAR/pattern/replacement}`
//! (`//` for every match); single quotes (literal), double quotes (substitution inside, `\"`, `\$` and
//! `\\` escaped), the escape character outside quotes.
//!
//! A [`Word`] is lexed once (syntax errors surface when the Dockerfile is parsed, with a line number) and
//! substituted as often as needed with a lookup for the variables in force.

use std::fmt;

/// Why a word does not lex or substitute (the messages are buildkit's).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExpandError {
    #[error("unexpected end of statement while looking for matching single-quote")]
    UnterminatedSingleQuote,
    #[error("unexpected end of statement while looking for matching double-quote")]
    UnterminatedDoubleQuote,
    #[error("syntax error: missing '}}'")]
    MissingBrace,
    #[error("syntax error: missing '/' in ${{}}")]
    MissingSlash,
    #[error("syntax error: bad substitution")]
    BadSubstitution,
    #[error("unsupported modifier ({0}) in substitution")]
    UnsupportedModifier(String),
    /// `${VAR?message}` with VAR unset (or empty, with `:?`).
    #[error("{name}: {message}")]
    Required { name: String, message: String },
    #[error("invalid pattern ({pattern}) in substitution: invalid escape '\\{escaped}'")]
    Pattern { pattern: String, escaped: String },
}

/// A lexed word: the text as written and what it substitutes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Word {
    text: String,
    segs: Vec<Seg>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Seg {
    /// Unquoted characters: split at whitespace into fields.
    Plain(String),
    /// Escaped characters and single-quoted text: never split.
    Raw(String),
    /// Double-quoted text: substituted, never split.
    Quoted(Vec<Seg>),
    /// A variable reference: its value is split at whitespace into fields when unquoted.
    Var(Box<Var>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Var {
    name: String,
    op: Op,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Op {
    Get,
    /// `-`: the word when unset (or empty, with `:`).
    Default {
        word: Vec<Seg>,
        colon: bool,
    },
    /// `+`: the word when set (and not empty, with `:`).
    Alternative {
        word: Vec<Seg>,
        colon: bool,
    },
    /// `?`: an error when unset (or empty, with `:`).
    Required {
        word: Vec<Seg>,
        colon: bool,
    },
    /// `#`, `##`: the shortest or longest prefix matching the pattern removed.
    TrimPrefix {
        word: Vec<Seg>,
    },
    /// `%`, `%%`: the same for a suffix.
    TrimSuffix {
        word: Vec<Seg>,
    },
    /// `/`, `//`: the first or every match of the pattern replaced.
    Replace {
        pattern: Vec<Seg>,
        replacement: Vec<Seg>,
        all: bool,
    },
}

type Lookup<'a> = &'a dyn Fn(&str) -> Option<String>;

impl Word {
    /// Lexes `text` with the Dockerfile's escape character.
    pub fn parse(text: &str, escape: char) -> Result<Word, ExpandError> {
        Self::lex(text, escape, true)
    }

    /// Lexes a heredoc body: only `$` and the escape character are special, quotes are text (buildkit's
    /// `SkipProcessQuotes`, with `\` as the escape).
    pub(crate) fn parse_body(text: &str) -> Result<Word, ExpandError> {
        Self::lex(text, '\\', false)
    }

    fn lex(text: &str, escape: char, quotes: bool) -> Result<Word, ExpandError> {
        let mut lexer = Lexer {
            chars: text.chars().collect(),
            pos: 0,
            escape,
            quotes,
        };
        let segs = lexer.until(None, false)?;
        Ok(Word {
            text: text.to_string(),
            segs,
        })
    }

    /// The word as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// True when the word refers to no variable: it substitutes to the same text whatever is defined.
    pub fn is_literal(&self) -> bool {
        fn literal(segs: &[Seg]) -> bool {
            segs.iter().all(|seg| match seg {
                Seg::Plain(_) | Seg::Raw(_) => true,
                Seg::Quoted(inner) => literal(inner),
                Seg::Var(_) => false,
            })
        }
        literal(&self.segs)
    }

    /// The word substituted into one string (quotes and escapes removed, whitespace kept): buildkit's
    /// `ProcessWord`, used for every substituted instruction but EXPOSE.
    pub fn expand(&self, lookup: impl Fn(&str) -> Option<String>) -> Result<String, ExpandError> {
        eval_string(&self.segs, &lookup)
    }

    /// The word substituted and split at unquoted whitespace: buildkit's `ProcessWords` (EXPOSE).
    pub fn expand_fields(
        &self,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Vec<String>, ExpandError> {
        let mut out = String::new();
        let mut fields = Fields::default();
        eval(&self.segs, &lookup, &mut out, &mut fields)?;
        Ok(fields.finish())
    }
}

impl fmt::Display for Word {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Substitutes the variables of `text` (buildkit's `ProcessWord`): `lookup` gives a variable's value, or
/// `None` when it is not set. `escape` is the Dockerfile's escape character.
pub fn expand(
    text: &str,
    escape: char,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<String, ExpandError> {
    Word::parse(text, escape)?.expand(lookup)
}

/// Substitutes and splits `text` into fields (buildkit's `ProcessWords`).
pub fn expand_fields(
    text: &str,
    escape: char,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<Vec<String>, ExpandError> {
    Word::parse(text, escape)?.expand_fields(lookup)
}

struct Lexer {
    chars: Vec<char>,
    pos: usize,
    escape: char,
    quotes: bool,
}

fn push_plain(segs: &mut Vec<Seg>, ch: char) {
    if let Some(Seg::Plain(s)) = segs.last_mut() {
        s.push(ch);
    } else {
        segs.push(Seg::Plain(ch.to_string()));
    }
}

fn push_raw(segs: &mut Vec<Seg>, ch: char) {
    if let Some(Seg::Raw(s)) = segs.last_mut() {
        s.push(ch);
    } else {
        segs.push(Seg::Raw(ch.to_string()));
    }
}

impl Lexer {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn bump(&mut self) -> Option<char> {
        let ch = self.peek();
        if ch.is_some() {
            self.pos += 1;
        }
        ch
    }

    /// buildkit's `processStopOn`: up to `stop` (consumed) or the end. `raw_escapes` keeps the escape
    /// character in the text (patterns, where `\*` means a literal star).
    fn until(&mut self, stop: Option<char>, raw_escapes: bool) -> Result<Vec<Seg>, ExpandError> {
        let mut segs = Vec::new();
        while let Some(ch) = self.peek() {
            if Some(ch) == stop {
                self.pos += 1;
                return Ok(segs);
            }
            match ch {
                '$' => segs.push(self.dollar()?),
                '\'' if self.quotes => segs.push(self.single()?),
                '"' if self.quotes => segs.push(self.double(raw_escapes)?),
                _ => {
                    self.pos += 1;
                    if ch == self.escape {
                        if raw_escapes {
                            push_raw(&mut segs, ch);
                        }
                        // An escape at the very end is dropped.
                        match self.bump() {
                            Some(next) => push_raw(&mut segs, next),
                            None => break,
                        }
                    } else {
                        push_plain(&mut segs, ch);
                    }
                }
            }
        }
        match stop {
            // The callers report what was missing.
            Some(_) => Err(ExpandError::MissingBrace),
            None => Ok(segs),
        }
    }

    fn single(&mut self) -> Result<Seg, ExpandError> {
        self.pos += 1;
        let mut text = String::new();
        loop {
            match self.bump() {
                None => return Err(ExpandError::UnterminatedSingleQuote),
                Some('\'') => return Ok(Seg::Raw(text)),
                Some(ch) => text.push(ch),
            }
        }
    }

    fn double(&mut self, raw_escapes: bool) -> Result<Seg, ExpandError> {
        self.pos += 1;
        let mut segs = Vec::new();
        loop {
            match self.peek() {
                None => return Err(ExpandError::UnterminatedDoubleQuote),
                Some('"') => {
                    self.pos += 1;
                    return Ok(Seg::Quoted(segs));
                }
                Some('$') => segs.push(self.dollar()?),
                Some(mut ch) => {
                    self.pos += 1;
                    if ch == self.escape {
                        if raw_escapes {
                            push_raw(&mut segs, ch);
                        }
                        match self.peek() {
                            None => continue,
                            Some(next) if next == '"' || next == '$' || next == self.escape => {
                                ch = next;
                                self.pos += 1;
                            }
                            // Any other character: the escape stays, as in sh.
                            Some(_) => {}
                        }
                    }
                    push_raw(&mut segs, ch);
                }
            }
        }
    }

    /// buildkit's `processName`: positional (digits), special (`@*#?-$!`) or a name of letters, digits
    /// and `_`.
    fn name(&mut self) -> String {
        let mut name = String::new();
        while let Some(ch) = self.peek() {
            if name.is_empty() && ch.is_ascii_digit() {
                while let Some(d) = self.peek().filter(char::is_ascii_digit) {
                    name.push(d);
                    self.pos += 1;
                }
                return name;
            }
            if name.is_empty() && matches!(ch, '@' | '*' | '#' | '?' | '-' | '$' | '!') {
                self.pos += 1;
                return ch.to_string();
            }
            if !(ch.is_alphanumeric() || ch == '_') {
                break;
            }
            name.push(ch);
            self.pos += 1;
        }
        name
    }

    fn dollar(&mut self) -> Result<Seg, ExpandError> {
        self.pos += 1;
        if self.peek() != Some('{') {
            let name = self.name();
            if name.is_empty() {
                return Ok(Seg::Plain("$".into()));
            }
            return Ok(var(name, Op::Get));
        }
        self.pos += 1;
        match self.peek() {
            None => return Err(ExpandError::MissingBrace),
            Some('{' | '}' | ':') => return Err(ExpandError::BadSubstitution),
            Some(_) => {}
        }
        let name = self.name();
        match self.bump() {
            None => Err(ExpandError::MissingBrace),
            Some('}') => Ok(var(name, Op::Get)),
            Some(':') => match self.bump() {
                Some(m @ ('-' | '+' | '?' | '#' | '%')) => self.modifier(name, m, true),
                None => Err(ExpandError::MissingBrace),
                Some(other) => Err(ExpandError::UnsupportedModifier(format!(
                    ":{}",
                    other.escape_debug()
                ))),
            },
            Some(m @ ('-' | '+' | '?' | '#' | '%')) => self.modifier(name, m, false),
            Some('/') => {
                let all = self.peek() == Some('/');
                if all {
                    self.pos += 1;
                }
                let pattern = self.until(Some('/'), true).map_err(|e| {
                    if self.peek().is_none() {
                        ExpandError::MissingSlash
                    } else {
                        e
                    }
                })?;
                let replacement = self.inside_braces(true)?;
                Ok(var(
                    name,
                    Op::Replace {
                        pattern,
                        replacement,
                        all,
                    },
                ))
            }
            Some(other) => Err(ExpandError::UnsupportedModifier(
                other.escape_debug().to_string(),
            )),
        }
    }

    fn inside_braces(&mut self, raw_escapes: bool) -> Result<Vec<Seg>, ExpandError> {
        self.until(Some('}'), raw_escapes).map_err(|e| {
            if self.peek().is_none() {
                ExpandError::MissingBrace
            } else {
                e
            }
        })
    }

    fn modifier(&mut self, name: String, modifier: char, colon: bool) -> Result<Seg, ExpandError> {
        let word = self.inside_braces(modifier == '#' || modifier == '%')?;
        let op = match modifier {
            '-' => Op::Default { word, colon },
            '+' => Op::Alternative { word, colon },
            '?' => Op::Required { word, colon },
            '#' => Op::TrimPrefix { word },
            _ => Op::TrimSuffix { word },
        };
        Ok(var(name, op))
    }
}

fn var(name: String, op: Op) -> Seg {
    Seg::Var(Box::new(Var { name, op }))
}

/// buildkit's `wordsStruct`: fields for `ProcessWords`.
#[derive(Default)]
struct Fields {
    words: Vec<String>,
    word: String,
    in_word: bool,
}

impl Fields {
    fn add_char(&mut self, ch: char) {
        if ch.is_whitespace() {
            if self.in_word && !self.word.is_empty() {
                self.words.push(std::mem::take(&mut self.word));
                self.in_word = false;
            }
        } else {
            self.word.push(ch);
            self.in_word = true;
        }
    }

    fn add_str(&mut self, text: &str) {
        text.chars().for_each(|ch| self.add_char(ch));
    }

    fn add_raw(&mut self, text: &str) {
        self.word.push_str(text);
        self.in_word = true;
    }

    fn finish(mut self) -> Vec<String> {
        if !self.word.is_empty() {
            self.words.push(self.word);
        }
        self.words
    }
}

fn eval_string(segs: &[Seg], lookup: Lookup) -> Result<String, ExpandError> {
    let mut out = String::new();
    let mut fields = Fields::default();
    eval(segs, lookup, &mut out, &mut fields)?;
    Ok(out)
}

fn eval(
    segs: &[Seg],
    lookup: Lookup,
    out: &mut String,
    fields: &mut Fields,
) -> Result<(), ExpandError> {
    for seg in segs {
        match seg {
            Seg::Plain(text) => {
                out.push_str(text);
                fields.add_str(text);
            }
            Seg::Raw(text) => {
                out.push_str(text);
                fields.add_raw(text);
            }
            Seg::Quoted(inner) => {
                let text = eval_string(inner, lookup)?;
                out.push_str(&text);
                fields.add_raw(&text);
            }
            Seg::Var(var) => {
                let text = var.eval(lookup)?;
                out.push_str(&text);
                fields.add_str(&text);
            }
        }
    }
    Ok(())
}

impl Var {
    fn eval(&self, lookup: Lookup) -> Result<String, ExpandError> {
        let value = lookup(&self.name);
        let unset = |colon: bool| value.as_deref().is_none_or(|v| colon && v.is_empty());
        match &self.op {
            Op::Get => Ok(value.unwrap_or_default()),
            Op::Default { word, colon } => {
                let word = eval_string(word, lookup)?;
                Ok(if unset(*colon) {
                    word
                } else {
                    value.unwrap_or_default()
                })
            }
            Op::Alternative { word, colon } => {
                let word = eval_string(word, lookup)?;
                Ok(if unset(*colon) { String::new() } else { word })
            }
            Op::Required { word, colon } => {
                let word = eval_string(word, lookup)?;
                let fail = |default: &str| ExpandError::Required {
                    name: self.name.clone(),
                    message: if word.is_empty() {
                        default.to_string()
                    } else {
                        word.clone()
                    },
                };
                match value {
                    None => Err(fail("is not allowed to be unset")),
                    Some(v) if *colon && v.is_empty() => Err(fail("is not allowed to be empty")),
                    Some(v) => Ok(v),
                }
            }
            Op::TrimPrefix { word } | Op::TrimSuffix { word } => {
                let prefix = matches!(self.op, Op::TrimPrefix { .. });
                let mut pattern = eval_string(word, lookup)?;
                let marker = if prefix { '#' } else { '%' };
                let longest = pattern.starts_with(marker);
                if longest {
                    pattern.remove(0);
                }
                let pat = compile(&pattern)?;
                let value: Vec<char> = value.unwrap_or_default().chars().collect();
                let n = value.len();
                let kept: String = if prefix {
                    let mut lengths: Box<dyn Iterator<Item = usize>> = if longest {
                        Box::new((0..=n).rev())
                    } else {
                        Box::new(0..=n)
                    };
                    match lengths.find(|&len| matches(&pat, &value[..len])) {
                        Some(len) => value[len..].iter().collect(),
                        None => value.iter().collect(),
                    }
                } else {
                    let mut starts: Box<dyn Iterator<Item = usize>> = if longest {
                        Box::new(0..=n)
                    } else {
                        Box::new((0..=n).rev())
                    };
                    match starts.find(|&start| matches(&pat, &value[start..])) {
                        Some(start) => value[..start].iter().collect(),
                        None => value.iter().collect(),
                    }
                };
                Ok(kept)
            }
            Op::Replace {
                pattern,
                replacement,
                all,
            } => {
                let pattern = eval_string(pattern, lookup)?;
                let replacement = eval_string(replacement, lookup)?;
                let pat = compile(&pattern)?;
                Ok(replace(
                    &pat,
                    &value.unwrap_or_default(),
                    &replacement,
                    *all,
                ))
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pat {
    Any,
    One,
    Lit(char),
}

/// A shell pattern (`*`, `?`, `\` escaping `*`, `?` and `\`; `\}` and `\/` as written inside `${}`), as
/// buildkit's `convertShellPatternToRegex` accepts it.
fn compile(pattern: &str) -> Result<Vec<Pat>, ExpandError> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let ch = chars[i];
        i += 1;
        match ch {
            '*' => out.push(Pat::Any),
            '?' => out.push(Pat::One),
            '\\' => match chars.get(i) {
                Some('}' | '/') => {}
                Some(&next @ ('*' | '?' | '\\')) => {
                    out.push(Pat::Lit(next));
                    i += 1;
                }
                other => {
                    return Err(ExpandError::Pattern {
                        pattern: pattern.to_string(),
                        escaped: other.map(char::to_string).unwrap_or_default(),
                    })
                }
            },
            _ => out.push(Pat::Lit(ch)),
        }
    }
    Ok(out)
}

/// Whether `pat` matches all of `text`.
fn matches(pat: &[Pat], text: &[char]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pat.get(p) {
            Some(Pat::Any) => {
                star = Some((p, t));
                p += 1;
            }
            Some(Pat::One) => {
                p += 1;
                t += 1;
            }
            Some(Pat::Lit(c)) if *c == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    p = sp + 1;
                    t = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    pat[p.min(pat.len())..].iter().all(|x| *x == Pat::Any)
}

fn replace(pat: &[Pat], value: &str, replacement: &str, all: bool) -> String {
    let chars: Vec<char> = value.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    let mut replaced = false;
    while i <= chars.len() {
        let found = if replaced && !all {
            None
        } else {
            (i..=chars.len())
                .rev()
                .find(|&end| matches(pat, &chars[i..end]))
        };
        match found {
            Some(end) => {
                replaced = true;
                out.push_str(replacement);
                if end == i {
                    if let Some(ch) = chars.get(i) {
                        out.push(*ch);
                    }
                    i += 1;
                } else {
                    i = end;
                }
            }
            None => {
                if let Some(ch) = chars.get(i) {
                    out.push(*ch);
                }
                i += 1;
            }
        }
    }
    out
}

/// buildkit's `parseWords` (line_parsers.go): ENV, LABEL and ARG arguments split at whitespace outside
/// quotes, quotes and escapes kept for the substitution to remove.
pub(crate) fn parse_words(rest: &str, escape: char) -> Vec<String> {
    #[derive(PartialEq)]
    enum Phase {
        Spaces,
        Word,
        Quote,
    }
    let chars: Vec<char> = rest.chars().collect();
    let n = chars.len();
    let mut words = Vec::new();
    let mut phase = Phase::Spaces;
    let mut quote = '\0';
    let mut blank_ok = false;
    let mut word = String::new();
    let mut i = 0;
    while i <= n {
        if phase == Phase::Spaces {
            if i == n {
                break;
            }
            if chars[i].is_whitespace() {
                i += 1;
                continue;
            }
            phase = Phase::Word;
        }
        if i == n {
            if blank_ok || !word.is_empty() {
                words.push(std::mem::take(&mut word));
            }
            break;
        }
        let mut ch = chars[i];
        if phase == Phase::Word {
            if ch.is_whitespace() {
                phase = Phase::Spaces;
                if blank_ok || !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
                blank_ok = false;
                i += 1;
                continue;
            }
            if ch == '\'' || ch == '"' {
                quote = ch;
                blank_ok = true;
                phase = Phase::Quote;
            }
            if ch == escape {
                if i + 1 == n {
                    i += 1;
                    continue;
                }
                word.push(ch);
                i += 1;
                ch = chars[i];
            }
            word.push(ch);
            i += 1;
            continue;
        }
        // In quotes.
        if ch == quote {
            phase = Phase::Word;
        }
        if ch == escape && quote != '\'' {
            if i + 1 == n {
                phase = Phase::Word;
                i += 1;
                continue;
            }
            word.push(ch);
            i += 1;
            ch = chars[i];
        }
        word.push(ch);
        i += 1;
    }
    words
}

/// A line split at whitespace outside quotes, quotes and backslashes kept: the words in which buildkit
/// looks for `<<EOF` (its lexer with raw quotes and escapes, nothing substituted).
pub(crate) fn raw_fields(line: &str) -> Vec<String> {
    let mut fields = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = line.chars();
    let mut quote: Option<char> = None;
    while let Some(ch) = chars.next() {
        match quote {
            Some(q) => {
                word.push(ch);
                if ch == q {
                    quote = None;
                } else if ch == '\\' && q == '"' {
                    if let Some(next) = chars.next() {
                        word.push(next);
                    }
                }
            }
            None => {
                if ch.is_whitespace() {
                    if in_word && !word.is_empty() {
                        fields.push(std::mem::take(&mut word));
                    }
                    in_word = false;
                    continue;
                }
                in_word = true;
                word.push(ch);
                if ch == '\\' {
                    if let Some(next) = chars.next() {
                        word.push(next);
                    }
                } else if ch == '\'' || ch == '"' {
                    quote = Some(ch);
                }
            }
        }
    }
    if !word.is_empty() {
        fields.push(word);
    }
    fields
}

/// A heredoc operator word (`<<EOF`, `<<-EOF`, `2<<"EOF"`), as buildkit's `ParseHeredoc` reads it:
/// `(fd, chomp, name, expand)`.
pub(crate) fn heredoc_word(word: &str) -> Option<(u32, bool, String, bool)> {
    let digits = word.len() - word.trim_start_matches(|c: char| c.is_ascii_digit()).len();
    let rest = word[digits..].strip_prefix("<<")?;
    let (chomp, rest) = match rest.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, rest),
    };
    if rest.is_empty() || rest.contains('<') {
        return None;
    }
    let fd = word[..digits].parse().unwrap_or(0);
    // Variables stay as written in a delimiter.
    let fields = Word::parse(rest, '\\')
        .ok()?
        .expand_fields(|name| Some(format!("${name}")))
        .ok()?;
    let [name] = fields.as_slice() else {
        return None;
    };
    let quotes = |s: &str| s.chars().filter(|c| *c == '\'' || *c == '"').count();
    let expand = quotes(name) == quotes(rest);
    Some((fd, chomp, name.clone(), expand))
}
