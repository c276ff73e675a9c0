//! Lines into instructions: directives, comments, continuations and heredocs as buildkit's
//! `parser.Parse` reads them, then each instruction's flags and arguments as `instructions.Parse` checks
//! them.

use std::collections::HashMap;
use std::time::Duration;

use super::expand::{chmod_is_valid, parse_go_duration, parse_port, signal_is_valid};
use super::lexer::{heredoc_word, parse_words, raw_fields, Word};
use super::{
    chomp_tabs, Add, ArgDecl, Command, Copy, CopyFrom, Directives, Dockerfile, Error, Files,
    HealthConfig, Healthcheck, Heredoc, Instruction, KeyValue, Located, Onbuild, Run, Stage,
    Warning,
};

const KEYWORDS: [&str; 18] = [
    "ADD",
    "ARG",
    "CMD",
    "COPY",
    "ENTRYPOINT",
    "ENV",
    "EXPOSE",
    "FROM",
    "HEALTHCHECK",
    "LABEL",
    "MAINTAINER",
    "ONBUILD",
    "RUN",
    "SHELL",
    "STOPSIGNAL",
    "USER",
    "VOLUME",
    "WORKDIR",
];

/// Whitespace between a keyword and its arguments, and between FROM/EXPOSE/COPY words (buildkit's
/// `[\t\v\f\r ]+`).
fn is_blank(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\u{b}' | '\u{c}' | '\r')
}

fn split_blank(text: &str) -> Vec<String> {
    text.split(is_blank)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

#[derive(Default)]
struct DirectiveState {
    done: bool,
    seen: Vec<String>,
    directives: Directives,
}

impl DirectiveState {
    /// buildkit's `possibleParserDirective`: `# key=value` lines at the very top, until any other line.
    fn line(&mut self, text: &str, line: usize) -> Result<(), Error> {
        if self.done {
            return Ok(());
        }
        let Some((key, value)) = directive(text) else {
            self.done = true;
            return Ok(());
        };
        let key = key.to_ascii_lowercase();
        if !matches!(key.as_str(), "escape" | "syntax" | "check") {
            self.done = true;
            return Ok(());
        }
        if self.seen.contains(&key) {
            return Err(Error::DuplicateDirective { line, name: key });
        }
        self.seen.push(key.clone());
        match key.as_str() {
            "escape" => {
                self.directives.escape = match value.as_str() {
                    "\\" => '\\',
                    "`" => '`',
                    _ => return Err(Error::InvalidEscape { line, token: value }),
                }
            }
            "syntax" => self.directives.syntax = Some(value),
            _ => self.directives.check = Some(value),
        }
        Ok(())
    }
}

/// `^#\s*([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$`
fn directive(text: &str) -> Option<(String, String)> {
    let rest = text.strip_prefix('#')?.trim_start();
    let key_len = rest
        .char_indices()
        .find(|(_, c)| !c.is_ascii_alphanumeric())
        .map_or(rest.len(), |(i, _)| i);
    let key = &rest[..key_len];
    if !key.chars().next()?.is_ascii_alphabetic() {
        return None;
    }
    let value = rest[key_len..].trim_start().strip_prefix('=')?.trim();
    (!value.is_empty()).then(|| (key.to_string(), value.to_string()))
}

/// The line without its escape character at the end (spaces and tabs after it allowed), and whether the
/// instruction ends here. An escaped escape character (`\\`) does not continue the line.
fn trim_continuation(text: &str, escape: char) -> (String, bool) {
    let trimmed = text.trim_end_matches([' ', '\t']);
    if let Some(before) = trimmed.strip_suffix(escape) {
        if before.is_empty() || !before.ends_with(escape) {
            return (before.to_string(), false);
        }
    }
    (text.to_string(), true)
}

fn trim_newline(text: &str) -> &str {
    text.trim_end_matches(['\r', '\n'])
}

fn is_comment(text: &str) -> bool {
    text.trim_start().starts_with('#')
}

/// buildkit's `splitCommand`: keyword (lowercase), flags (`--name=value` words first), arguments.
fn split_command(line: &str) -> (String, Vec<String>, String) {
    let line = line.trim();
    let (keyword, rest) = match line.find(is_blank) {
        Some(i) => (&line[..i], line[i..].trim_start_matches(is_blank)),
        None => (line, ""),
    };
    let (args, flags) = if rest.is_empty() {
        (String::new(), Vec::new())
    } else {
        extract_flags(rest)
    };
    (keyword.to_ascii_lowercase(), flags, args.trim().to_string())
}

/// buildkit's `extractBuilderFlags`: leading words that start with `--`, quotes and backslashes in them
/// processed; a lone `--` ends them.
fn extract_flags(line: &str) -> (String, Vec<String>) {
    #[derive(PartialEq)]
    enum Phase {
        Spaces,
        Word,
        Quote,
    }
    let chars: Vec<(usize, char)> = line.char_indices().collect();
    let n = chars.len();
    let mut words = Vec::new();
    let mut phase = Phase::Spaces;
    let mut word = String::new();
    let mut quote = '\0';
    let mut blank_ok = false;
    let mut k = 0;
    while k <= n {
        if phase == Phase::Spaces {
            if k == n {
                break;
            }
            let ch = chars[k].1;
            if ch.is_whitespace() {
                k += 1;
                continue;
            }
            if !(ch == '-' && chars.get(k + 1).is_some_and(|c| c.1 == '-')) {
                return (line[chars[k].0..].to_string(), words);
            }
            phase = Phase::Word;
        }
        if k == n {
            if word != "--" && (blank_ok || !word.is_empty()) {
                words.push(word);
            }
            break;
        }
        let mut ch = chars[k].1;
        if phase == Phase::Word {
            if ch.is_whitespace() {
                phase = Phase::Spaces;
                if word == "--" {
                    return (line[chars[k].0..].to_string(), words);
                }
                if blank_ok || !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
                word.clear();
                blank_ok = false;
                k += 1;
                continue;
            }
            if ch == '\'' || ch == '"' {
                quote = ch;
                blank_ok = true;
                phase = Phase::Quote;
                k += 1;
                continue;
            }
            if ch == '\\' {
                if k + 1 == n {
                    k += 1;
                    continue;
                }
                k += 1;
                ch = chars[k].1;
            }
            word.push(ch);
            k += 1;
            continue;
        }
        // In quotes.
        if ch == quote {
            phase = Phase::Word;
            k += 1;
            continue;
        }
        if ch == '\\' {
            if k + 1 == n {
                phase = Phase::Word;
                k += 1;
                continue;
            }
            k += 1;
            ch = chars[k].1;
        }
        word.push(ch);
        k += 1;
    }
    (String::new(), words)
}

/// A JSON array of strings (exec form). `None`: not a JSON array, so shell form. An array with anything
/// but strings is an error, as in docker.
fn json_array(args: &str, line: usize) -> Option<Result<Vec<String>, Error>> {
    let args = args.trim_start();
    if !args.starts_with('[') {
        return None;
    }
    let Ok(items) = serde_json::from_str::<Vec<serde_json::Value>>(args) else {
        return None;
    };
    Some(
        items
            .into_iter()
            .map(|item| match item {
                serde_json::Value::String(s) => Ok(s),
                _ => Err(Error::Invalid {
                    line,
                    message:
                        "when using JSON array syntax, arrays must be comprised of strings only"
                            .into(),
                }),
            })
            .collect(),
    )
}

/// `<<EOF` words of an instruction line that can have heredocs (RUN, COPY, ADD in shell form, also as an
/// ONBUILD trigger).
fn heredoc_specs(keyword: &str, args: &str, line: &str) -> Vec<(u32, bool, String, bool)> {
    let can = match keyword {
        "run" | "copy" | "add" => json_array(args, 0).is_none(),
        "onbuild" => {
            let (inner, _, inner_args) = split_command(args);
            matches!(inner.as_str(), "run" | "copy" | "add") && json_array(&inner_args, 0).is_none()
        }
        _ => false,
    };
    if !can {
        return Vec::new();
    }
    raw_fields(line)
        .iter()
        .filter_map(|w| heredoc_word(w))
        .collect()
}

/// An instruction line (continuations joined), before its arguments are checked.
struct Raw {
    line: usize,
    end_line: usize,
    text: String,
    keyword: String,
    flags: Vec<String>,
    args: String,
    heredocs: Vec<Heredoc>,
}

pub(super) fn parse(text: &str) -> Result<Dockerfile, Error> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let mut directives = DirectiveState::default();
    let mut warnings = Vec::new();
    let mut raws = Vec::new();

    let mut i = 0;
    while i < lines.len() {
        let start = i + 1;
        let token = trim_newline(lines[i]).trim_start();
        directives.line(token, start)?;
        let escape = directives.directives.escape;
        i += 1;
        let processed = if token.starts_with('#') { "" } else { token };
        let (mut text, mut end) = trim_continuation(processed, escape);
        if end && text.is_empty() {
            continue;
        }
        let mut empty_continuation = false;
        while !end && i < lines.len() {
            let physical = trim_newline(lines[i]);
            i += 1;
            // Comment lines inside a continued instruction are skipped, as buildkit does.
            if is_comment(physical) {
                continue;
            }
            if physical.trim_start().is_empty() {
                empty_continuation = true;
                continue;
            }
            let (more, more_end) = trim_continuation(physical, escape);
            text.push_str(&more);
            end = more_end;
        }
        if empty_continuation {
            warnings.push(Warning {
                line: start,
                message: "empty continuation line".into(),
            });
        }

        let (keyword, flags, args) = split_command(&text);
        let mut heredocs = Vec::new();
        for (fd, chomp, name, expand) in heredoc_specs(&keyword, &args, &text) {
            let mut content = String::new();
            let mut terminated = false;
            while i < lines.len() {
                let body_line = lines[i];
                i += 1;
                let mut candidate = trim_newline(body_line);
                if chomp {
                    candidate = candidate.trim_start_matches('\t');
                }
                if candidate == name {
                    terminated = true;
                    break;
                }
                content.push_str(body_line);
            }
            if !terminated {
                return Err(Error::UnterminatedHeredoc {
                    line: lines.len(),
                    start,
                    name,
                });
            }
            heredocs.push(Heredoc {
                name,
                content,
                expand,
                chomp,
                fd,
            });
        }
        raws.push(Raw {
            line: start,
            end_line: i,
            text: text.trim().to_string(),
            keyword,
            flags,
            args,
            heredocs,
        });
    }

    let directives = directives.directives;
    let escape = directives.escape;
    if raws.is_empty() {
        return Err(Error::Empty);
    }

    let mut global_args = Vec::new();
    let mut stages: Vec<Stage> = Vec::new();
    let mut copy_froms = Vec::new();
    for raw in raws {
        let ctx = Ctx {
            line: raw.line,
            keyword: keyword_name(&raw.keyword, raw.line)?,
            flags: &raw.flags,
            args: &raw.args,
            original: &raw.text,
            heredocs: raw.heredocs,
            escape,
        };
        if ctx.keyword == "FROM" {
            let stage = parse_from(&ctx, stages.len())?;
            if let Some(name) = &stage.name {
                if let Some(first) = stages.iter().find(|s| s.name.as_ref() == Some(name)) {
                    return Err(Error::DuplicateStage {
                        line: raw.line,
                        name: name.clone(),
                        first: first.line,
                    });
                }
            }
            stages.push(stage);
            continue;
        }
        let (instruction, copy_from) = parse_instruction(&ctx)?;
        let Some(stage) = stages.last_mut() else {
            match instruction {
                Instruction::Arg(decls) => {
                    global_args.extend(decls.into_iter().map(|decl| (raw.line, decl)));
                    continue;
                }
                other => {
                    return Err(Error::BeforeFrom {
                        line: raw.line,
                        instruction: other.keyword().into(),
                    })
                }
            }
        };
        if let Some(from) = copy_from {
            copy_froms.push((stage.index, stage.instructions.len(), raw.line, from));
        }
        stage.instructions.push(Located {
            line: raw.line,
            end_line: raw.end_line,
            original: raw.text,
            instruction,
        });
    }
    if stages.is_empty() {
        return Err(Error::NoStages);
    }

    // `COPY --from` names or numbers an earlier stage, or is an image.
    for (stage, position, line, from) in copy_froms {
        let resolved = resolve_copy_from(&from, stage, line, &stages, stages.len())?;
        if let Instruction::Copy(copy) = &mut stages[stage].instructions[position].instruction {
            copy.from = Some(resolved);
        }
    }

    Ok(Dockerfile {
        directives,
        global_args,
        stages,
        warnings,
    })
}

/// An ONBUILD trigger of a base image, parsed as a one-instruction Dockerfile.
pub(super) fn parse_trigger(
    trigger: &str,
    line: usize,
    escape: char,
    earlier: &[Stage],
) -> Result<Located, Error> {
    let lines: Vec<&str> = trigger.split_inclusive('\n').collect();
    let first = lines.first().map_or("", |l| trim_newline(l));
    let (keyword, flags, args) = split_command(first);
    let mut rest = lines.iter().skip(1);
    let mut heredocs = Vec::new();
    for (fd, chomp, name, expand) in heredoc_specs(&keyword, &args, first) {
        let mut content = String::new();
        let mut terminated = false;
        for body_line in rest.by_ref() {
            let mut candidate = trim_newline(body_line);
            if chomp {
                candidate = candidate.trim_start_matches('\t');
            }
            if candidate == name {
                terminated = true;
                break;
            }
            content.push_str(body_line);
        }
        if !terminated {
            return Err(Error::UnterminatedHeredoc {
                line,
                start: line,
                name,
            });
        }
        heredocs.push(Heredoc {
            name,
            content,
            expand,
            chomp,
            fd,
        });
    }
    let ctx = Ctx {
        line,
        keyword: keyword_name(&keyword, line)?,
        flags: &flags,
        args: &args,
        original: first.trim(),
        heredocs,
        escape,
    };
    if matches!(ctx.keyword, "FROM" | "MAINTAINER" | "ONBUILD") {
        return Err(Error::Invalid {
            line,
            message: format!("{} isn't allowed as an ONBUILD trigger", ctx.keyword),
        });
    }
    let (mut instruction, copy_from) = parse_instruction(&ctx)?;
    if let (Instruction::Copy(copy), Some(from)) = (&mut instruction, copy_from) {
        copy.from = Some(resolve_copy_from(
            &from,
            earlier.len(),
            line,
            earlier,
            earlier.len(),
        )?);
    }
    Ok(Located {
        line,
        end_line: line,
        original: first.trim().to_string(),
        instruction,
    })
}

fn resolve_copy_from(
    from: &str,
    stage: usize,
    line: usize,
    stages: &[Stage],
    count: usize,
) -> Result<CopyFrom, Error> {
    let target = if let Ok(index) = from.parse::<usize>() {
        if index >= count {
            return Err(Error::StageIndex {
                line,
                from: from.into(),
                count,
            });
        }
        index
    } else {
        let lower = from.to_ascii_lowercase();
        match stages
            .iter()
            .position(|s| s.name.as_deref() == Some(lower.as_str()))
        {
            Some(index) => index,
            None => return Ok(CopyFrom::Image(from.into())),
        }
    };
    if target == stage {
        return Err(Error::CopyFromSelf {
            line,
            from: from.into(),
        });
    }
    if target > stage {
        return Err(Error::CopyFromLater {
            line,
            from: from.into(),
            defined: stages[target].line,
        });
    }
    Ok(CopyFrom::Stage(target))
}

fn keyword_name(keyword: &str, line: usize) -> Result<&'static str, Error> {
    let upper = keyword.to_ascii_uppercase();
    if let Some(known) = KEYWORDS.iter().find(|k| **k == upper) {
        return Ok(known);
    }
    let suggestion = KEYWORDS
        .iter()
        .map(|k| (levenshtein(&upper, k), *k))
        .filter(|(d, _)| *d <= 2)
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k);
    Err(Error::UnknownInstruction {
        line,
        name: upper,
        suggestion,
    })
}

fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let next = (row[j + 1] + 1)
                .min(row[j] + 1)
                .min(prev + usize::from(ca != *cb));
            prev = row[j + 1];
            row[j + 1] = next;
        }
    }
    row[b.len()]
}

struct Ctx<'a> {
    line: usize,
    keyword: &'static str,
    flags: &'a [String],
    args: &'a str,
    original: &'a str,
    heredocs: Vec<Heredoc>,
    escape: char,
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Bool,
    Str,
    /// Parsed but refused: berth's builder has no such feature.
    Refused,
}

enum Value {
    Bool(bool),
    Str(String),
}

struct Flags(HashMap<&'static str, Value>);

impl Flags {
    fn string(&mut self, name: &str) -> Option<String> {
        match self.0.remove(name) {
            Some(Value::Str(s)) => Some(s),
            _ => None,
        }
    }

    fn bool(&mut self, name: &str) -> Option<bool> {
        match self.0.remove(name) {
            Some(Value::Bool(b)) => Some(b),
            _ => None,
        }
    }
}

impl Ctx<'_> {
    fn invalid(&self, message: impl Into<String>) -> Error {
        Error::Invalid {
            line: self.line,
            message: message.into(),
        }
    }

    fn arguments(&self, expected: &'static str) -> Error {
        Error::Arguments {
            line: self.line,
            instruction: self.keyword.into(),
            expected,
        }
    }

    fn word(&self, text: &str) -> Result<Word, Error> {
        Word::parse(text, self.escape).map_err(|source| Error::Expand {
            line: self.line,
            instruction: self.keyword.into(),
            word: text.into(),
            source,
        })
    }

    /// buildkit's `BFlags.Parse`: `--name`, `--name=value`; unknown and repeated flags refused.
    fn flags(&self, spec: &[(&'static str, Kind)]) -> Result<Flags, Error> {
        let mut parsed = HashMap::new();
        for flag in self.flags {
            let Some(body) = flag.strip_prefix("--") else {
                return Err(self.invalid(format!(
                    "{} flag should start with --: {flag}",
                    self.keyword
                )));
            };
            if body.is_empty() {
                break;
            }
            let (name, value) = match body.split_once('=') {
                Some((name, value)) => (name, Some(value)),
                None => (body, None),
            };
            let Some(&(name, kind)) = spec.iter().find(|(n, _)| *n == name) else {
                return Err(Error::UnknownFlag {
                    line: self.line,
                    instruction: self.keyword.into(),
                    flag: name.into(),
                });
            };
            if parsed.contains_key(name) {
                return Err(self.invalid(format!(
                    "{}: duplicate flag specified: --{name}",
                    self.keyword
                )));
            }
            let value = match kind {
                Kind::Refused => {
                    return Err(Error::UnsupportedFlag {
                        line: self.line,
                        instruction: self.keyword.into(),
                        flag: name.into(),
                    })
                }
                Kind::Bool => match value.map(str::to_ascii_lowercase).as_deref() {
                    None | Some("true") => Value::Bool(true),
                    Some("false") => Value::Bool(false),
                    Some("") => {
                        return Err(self.invalid(format!(
                            "{}: missing a value on flag --{name}",
                            self.keyword
                        )))
                    }
                    Some(_) => {
                        return Err(self.invalid(format!(
                            "{}: expecting a boolean value for flag --{name}, not: {}",
                            self.keyword,
                            value.unwrap_or_default()
                        )))
                    }
                },
                Kind::Str => match value {
                    Some(v) => Value::Str(v.to_string()),
                    None => {
                        return Err(self.invalid(format!(
                            "{}: missing a value on flag --{name}",
                            self.keyword
                        )))
                    }
                },
            };
            parsed.insert(name, value);
        }
        Ok(Flags(parsed))
    }

    fn no_flags(&self) -> Result<(), Error> {
        self.flags(&[]).map(drop)
    }

    /// RUN, CMD, ENTRYPOINT, SHELL: JSON array or shell text.
    fn command(&self, args: &str) -> Result<Command, Error> {
        match json_array(args, self.line) {
            Some(exec) => exec.map(Command::Exec),
            None => Ok(Command::Shell(args.to_string())),
        }
    }

    /// ADD, COPY, VOLUME: JSON array or whitespace-separated words.
    fn list(&self) -> Result<Vec<String>, Error> {
        match json_array(self.args, self.line) {
            Some(list) => list,
            None => Ok(split_blank(self.args)),
        }
    }

    /// WORKDIR, USER, STOPSIGNAL, MAINTAINER: the rest of the line.
    fn one(&self) -> Result<&str, Error> {
        if self.args.is_empty() {
            return Err(self.arguments("exactly one argument"));
        }
        Ok(self.args)
    }
}

fn parse_from(ctx: &Ctx, index: usize) -> Result<Stage, Error> {
    let mut flags = ctx.flags(&[("platform", Kind::Str)])?;
    let args = split_blank(ctx.args);
    let name = match args.as_slice() {
        [_] => None,
        [_, as_, name] if as_.eq_ignore_ascii_case("as") => {
            let lower = name.to_ascii_lowercase();
            let valid = lower.chars().next().is_some_and(|c| c.is_ascii_lowercase())
                && lower.chars().all(|c| {
                    c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.')
                });
            if !valid {
                return Err(Error::InvalidStageName {
                    line: ctx.line,
                    name: name.clone(),
                });
            }
            Some(lower)
        }
        _ => return Err(ctx.arguments("either one or three arguments")),
    };
    let platform = match flags.string("platform") {
        Some(p) if !p.is_empty() => Some(ctx.word(&p)?),
        _ => None,
    };
    Ok(Stage {
        index,
        name,
        base: ctx.word(&args[0])?,
        platform,
        line: ctx.line,
        original: ctx.original.to_string(),
        instructions: Vec::new(),
    })
}

/// Parses one instruction (not FROM); the second value is the text of `COPY --from`, resolved by the
/// caller once all stages are known.
fn parse_instruction(ctx: &Ctx) -> Result<(Instruction, Option<String>), Error> {
    let instruction = match ctx.keyword {
        "ARG" => Instruction::Arg(parse_arg(ctx)?),
        "ENV" => Instruction::Env(parse_key_values(ctx)?),
        "LABEL" => Instruction::Label(parse_key_values(ctx)?),
        "RUN" => {
            ctx.flags(&[
                ("mount", Kind::Refused),
                ("network", Kind::Refused),
                ("security", Kind::Refused),
                ("device", Kind::Refused),
            ])?;
            let command = ctx.command(ctx.args)?;
            let empty = match &command {
                Command::Exec(args) => args.is_empty(),
                Command::Shell(text) => text.is_empty(),
            };
            if empty {
                return Err(ctx.arguments("at least one argument"));
            }
            Instruction::Run(Run {
                command,
                heredocs: ctx.heredocs.clone(),
            })
        }
        "CMD" => {
            ctx.no_flags()?;
            Instruction::Cmd(ctx.command(ctx.args)?)
        }
        "ENTRYPOINT" => {
            ctx.no_flags()?;
            Instruction::Entrypoint(ctx.command(ctx.args)?)
        }
        "SHELL" => {
            ctx.no_flags()?;
            match json_array(ctx.args, ctx.line) {
                Some(shell) => {
                    let shell = shell?;
                    if shell.is_empty() {
                        return Err(ctx.arguments("at least one argument"));
                    }
                    Instruction::Shell(shell)
                }
                None if ctx.args.is_empty() => return Err(ctx.arguments("at least one argument")),
                None => return Err(ctx.invalid("SHELL requires the arguments to be in JSON form")),
            }
        }
        "COPY" => return parse_copy(ctx),
        "ADD" => Instruction::Add(parse_add(ctx)?),
        "WORKDIR" => {
            ctx.no_flags()?;
            Instruction::Workdir(ctx.word(ctx.one()?)?)
        }
        "USER" => {
            ctx.no_flags()?;
            Instruction::User(ctx.word(ctx.one()?)?)
        }
        "STOPSIGNAL" => {
            ctx.no_flags()?;
            let word = ctx.word(ctx.one()?)?;
            if word.is_literal() {
                let signal = word.expand(|_| None).unwrap_or_default();
                if !signal_is_valid(&signal) {
                    return Err(ctx.invalid(format!("STOPSIGNAL: invalid signal: {signal}")));
                }
            }
            Instruction::StopSignal(word)
        }
        "MAINTAINER" => {
            ctx.no_flags()?;
            Instruction::Maintainer(ctx.one()?.to_string())
        }
        "EXPOSE" => {
            ctx.no_flags()?;
            let words = split_blank(ctx.args);
            if words.is_empty() {
                return Err(ctx.arguments("at least one argument"));
            }
            let words = words
                .iter()
                .map(|w| ctx.word(w))
                .collect::<Result<Vec<_>, _>>()?;
            for word in words.iter().filter(|w| w.is_literal()) {
                for port in word.expand_fields(|_| None).unwrap_or_default() {
                    parse_port(&port).map_err(|e| ctx.invalid(format!("EXPOSE: {e}")))?;
                }
            }
            Instruction::Expose(words)
        }
        "VOLUME" => {
            ctx.no_flags()?;
            let list = ctx.list()?;
            if list.is_empty() {
                return Err(ctx.arguments("at least one argument"));
            }
            let mut volumes = Vec::new();
            for volume in &list {
                let volume = volume.trim();
                if volume.is_empty() {
                    return Err(ctx.invalid("VOLUME specified can not be an empty string"));
                }
                volumes.push(ctx.word(volume)?);
            }
            Instruction::Volume(volumes)
        }
        "HEALTHCHECK" => Instruction::Healthcheck(parse_healthcheck(ctx)?),
        "ONBUILD" => Instruction::Onbuild(parse_onbuild(ctx)?),
        // FROM is a stage, not an instruction; KEYWORDS has nothing else.
        other => {
            return Err(Error::UnknownInstruction {
                line: ctx.line,
                name: other.into(),
                suggestion: None,
            })
        }
    };
    Ok((instruction, None))
}

fn parse_arg(ctx: &Ctx) -> Result<Vec<ArgDecl>, Error> {
    ctx.no_flags()?;
    let words = parse_words(ctx.args, ctx.escape);
    if words.is_empty() {
        return Err(ctx.arguments("at least one argument"));
    }
    words
        .iter()
        .map(|word| match word.split_once('=') {
            Some(("", _)) => Err(ctx.invalid("ARG names can not be blank")),
            Some((name, value)) => Ok(ArgDecl {
                name: name.to_string(),
                value: Some(ctx.word(value)?),
            }),
            None => Ok(ArgDecl {
                name: word.clone(),
                value: None,
            }),
        })
        .collect()
}

/// ENV and LABEL: `k=v ...` (quotes kept for the substitution to remove) or the legacy `k v`, whose
/// value is the rest of the line.
fn parse_key_values(ctx: &Ctx) -> Result<Vec<KeyValue>, Error> {
    ctx.no_flags()?;
    let words = parse_words(ctx.args, ctx.escape);
    let Some(first) = words.first() else {
        return Err(ctx.arguments("at least one argument"));
    };
    let pairs: Vec<(String, String)> = if !first.contains('=') {
        let mut parts = ctx.args.splitn(2, is_blank);
        let key = parts.next().unwrap_or_default();
        match parts.next().map(|v| v.trim_start_matches(is_blank)) {
            Some(value) if !value.is_empty() => vec![(key.to_string(), value.to_string())],
            _ => return Err(ctx.invalid(format!("{} must have two arguments", ctx.keyword))),
        }
    } else {
        words
            .iter()
            .map(|word| match word.split_once('=') {
                Some((key, value)) => Ok((key.to_string(), value.to_string())),
                None => Err(ctx.invalid(format!(
                    "{}: syntax error - can't find = in {word:?}. Must be of the form: name=value",
                    ctx.keyword
                ))),
            })
            .collect::<Result<_, _>>()?
    };
    pairs
        .into_iter()
        .map(|(key, value)| {
            if key.is_empty() {
                return Err(ctx.invalid(format!("{} names can not be blank", ctx.keyword)));
            }
            Ok(KeyValue {
                key: ctx.word(&key)?,
                value: ctx.word(&value)?,
            })
        })
        .collect()
}

fn is_url(source: &str) -> bool {
    source.starts_with("http://") || source.starts_with("https://")
}

fn is_git(source: &str) -> bool {
    source.starts_with("git@") || source.starts_with("git://") || source.ends_with(".git")
}

/// Sources and destination of COPY and ADD; heredoc sources become inline files.
fn parse_files(ctx: &Ctx) -> Result<Files, Error> {
    let list = ctx.list()?;
    if list.len() < 2 {
        return Err(ctx.arguments(
            "at least two arguments, but only one was provided. Destination could not be determined",
        ));
    }
    let (dest, sources) = list.split_last().expect("two or more");
    if heredoc_word(dest).is_some() {
        return Err(ctx.invalid(format!(
            "{} cannot accept a heredoc as a destination",
            ctx.keyword
        )));
    }
    let mut files = Files {
        sources: Vec::new(),
        heredocs: Vec::new(),
        dest: ctx.word(dest)?,
    };
    for source in sources {
        match heredoc_word(source) {
            Some((fd, chomp, name, expand)) => {
                let mut heredoc = ctx
                    .heredocs
                    .iter()
                    .find(|h| h.name == name)
                    .cloned()
                    .unwrap_or(Heredoc {
                        name,
                        content: String::new(),
                        expand,
                        chomp,
                        fd,
                    });
                if heredoc.expand {
                    let body = if heredoc.chomp {
                        chomp_tabs(&heredoc.content)
                    } else {
                        heredoc.content.clone()
                    };
                    Word::parse_body(&body).map_err(|source| Error::Expand {
                        line: ctx.line,
                        instruction: ctx.keyword.into(),
                        word: format!("<<{}", heredoc.name),
                        source,
                    })?;
                }
                heredoc.fd = fd;
                files.heredocs.push(heredoc);
            }
            None => files.sources.push(ctx.word(source)?),
        }
    }
    Ok(files)
}

fn check_chmod(ctx: &Ctx, chmod: &Word) -> Result<(), Error> {
    if chmod.is_literal() {
        let mode = chmod.expand(|_| None).unwrap_or_default();
        if !chmod_is_valid(&mode) {
            return Err(ctx.invalid(format!(
                "{}: invalid chmod parameter: '{mode}'. it should be octal string and between 0 and 07777, \
                 or symbolic (u+x)",
                ctx.keyword
            )));
        }
    }
    Ok(())
}

fn optional_word(ctx: &Ctx, value: Option<String>) -> Result<Option<Word>, Error> {
    match value {
        Some(v) if !v.is_empty() => Ok(Some(ctx.word(&v)?)),
        _ => Ok(None),
    }
}

fn parse_copy(ctx: &Ctx) -> Result<(Instruction, Option<String>), Error> {
    let mut flags = ctx.flags(&[
        ("from", Kind::Str),
        ("chown", Kind::Str),
        ("chmod", Kind::Str),
        ("link", Kind::Bool),
        ("parents", Kind::Bool),
    ])?;
    let files = parse_files(ctx)?;
    for source in files.sources.iter().filter(|s| s.is_literal()) {
        if is_url(source.as_str()) {
            return Err(ctx.invalid(format!(
                "COPY: source can't be a URL: {source} (ADD downloads)"
            )));
        }
    }
    let from = flags.string("from").filter(|f| !f.is_empty());
    if from.as_deref().is_some_and(|f| f.contains('$')) {
        return Err(ctx.invalid(
            "COPY: variable expansion is not supported for --from, define a new stage with FROM using \
             ARG from global scope as a workaround",
        ));
    }
    let chmod = optional_word(ctx, flags.string("chmod"))?;
    if let Some(chmod) = &chmod {
        check_chmod(ctx, chmod)?;
    }
    let copy = Copy {
        files,
        from: from.clone().map(CopyFrom::Image),
        chown: optional_word(ctx, flags.string("chown"))?,
        chmod,
        link: flags.bool("link").unwrap_or(false),
        parents: flags.bool("parents").unwrap_or(false),
    };
    Ok((Instruction::Copy(copy), from))
}

fn parse_add(ctx: &Ctx) -> Result<Add, Error> {
    let mut flags = ctx.flags(&[
        ("chown", Kind::Str),
        ("chmod", Kind::Str),
        ("link", Kind::Bool),
        ("keep-git-dir", Kind::Bool),
        ("checksum", Kind::Str),
        ("unpack", Kind::Bool),
    ])?;
    let files = parse_files(ctx)?;
    let checksum = optional_word(ctx, flags.string("checksum"))?;
    if checksum.is_some() {
        if files.sources.len() + files.heredocs.len() != 1 {
            return Err(ctx.invalid("ADD: checksum can't be specified for multiple sources"));
        }
        if let Some(source) = files.sources.first().filter(|s| s.is_literal()) {
            if !is_url(source.as_str()) && !is_git(source.as_str()) {
                return Err(ctx.invalid("ADD: checksum can't be specified for non-HTTP(S) sources"));
            }
        }
        if !files.heredocs.is_empty() {
            return Err(ctx.invalid("ADD: checksum can't be specified for non-HTTP(S) sources"));
        }
    }
    let chmod = optional_word(ctx, flags.string("chmod"))?;
    if let Some(chmod) = &chmod {
        check_chmod(ctx, chmod)?;
    }
    Ok(Add {
        files,
        chown: optional_word(ctx, flags.string("chown"))?,
        chmod,
        link: flags.bool("link").unwrap_or(false),
        checksum,
        keep_git_dir: flags.bool("keep-git-dir").unwrap_or(false),
        unpack: flags.bool("unpack"),
    })
}

fn parse_healthcheck(ctx: &Ctx) -> Result<Healthcheck, Error> {
    let (kind, rest) = match ctx.args.find(char::is_whitespace) {
        Some(i) => (&ctx.args[..i], ctx.args[i..].trim_start()),
        None => (ctx.args, ""),
    };
    if kind.is_empty() {
        return Err(ctx.arguments("at least one argument"));
    }
    let kind = kind.to_ascii_uppercase();
    if kind == "NONE" {
        if !rest.is_empty() {
            return Err(ctx.invalid("HEALTHCHECK NONE takes no arguments"));
        }
        return Ok(Healthcheck::Disable);
    }
    let mut flags = ctx.flags(&[
        ("interval", Kind::Str),
        ("timeout", Kind::Str),
        ("start-period", Kind::Str),
        ("start-interval", Kind::Str),
        ("retries", Kind::Str),
    ])?;
    if kind != "CMD" {
        return Err(ctx.invalid(format!("Unknown type {kind:?} in HEALTHCHECK (try CMD)")));
    }
    let test = ctx.command(rest)?;
    let missing = match &test {
        Command::Exec(args) => args.is_empty(),
        Command::Shell(text) => text.is_empty(),
    };
    if missing {
        return Err(ctx.invalid("Missing command after HEALTHCHECK CMD"));
    }
    let mut duration = |name: &str| -> Result<Option<Duration>, Error> {
        let Some(text) = flags.string(name).filter(|t| !t.is_empty()) else {
            return Ok(None);
        };
        let Some(duration) = parse_go_duration(&text) else {
            return Err(ctx.invalid(format!(
                "HEALTHCHECK: invalid duration for --{name}: {text:?}"
            )));
        };
        if duration.is_zero() {
            return Ok(None);
        }
        if duration < Duration::from_millis(1) {
            return Err(ctx.invalid(format!(
                "HEALTHCHECK: interval {name:?} cannot be less than 1ms"
            )));
        }
        Ok(Some(duration))
    };
    let interval = duration("interval")?;
    let timeout = duration("timeout")?;
    let start_period = duration("start-period")?;
    let start_interval = duration("start-interval")?;
    let retries = match flags.string("retries").filter(|r| !r.is_empty()) {
        None => None,
        Some(text) => match text.parse::<i64>() {
            Ok(n) if n < 0 => {
                return Err(ctx.invalid(format!("HEALTHCHECK: --retries cannot be negative ({n})")))
            }
            Ok(n) => u32::try_from(n).ok().filter(|n| *n > 0),
            Err(_) => return Err(ctx.invalid(format!("HEALTHCHECK: invalid --retries: {text:?}"))),
        },
    };
    Ok(Healthcheck::Check(HealthConfig {
        test,
        interval,
        timeout,
        start_period,
        start_interval,
        retries,
    }))
}

fn parse_onbuild(ctx: &Ctx) -> Result<Onbuild, Error> {
    if ctx.args.is_empty() {
        return Err(ctx.arguments("at least one argument"));
    }
    ctx.no_flags()?;
    let (inner, flags, args) = split_command(ctx.args);
    let keyword = keyword_name(&inner, ctx.line)?;
    match keyword {
        "ONBUILD" => {
            return Err(ctx.invalid("Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed"))
        }
        "FROM" | "MAINTAINER" => {
            return Err(ctx.invalid(format!("{keyword} isn't allowed as an ONBUILD trigger")))
        }
        _ => {}
    }
    let inner_ctx = Ctx {
        line: ctx.line,
        keyword,
        flags: &flags,
        args: &args,
        original: ctx.args,
        heredocs: ctx.heredocs.clone(),
        escape: ctx.escape,
    };
    let (trigger, _) = parse_instruction(&inner_ctx)?;
    // The original without its ONBUILD keyword, heredoc bodies appended (buildkit's expression).
    let mut expression = ctx.original.trim_start()
        [ctx.original.trim_start().find(is_blank).unwrap_or(0)..]
        .trim_start()
        .to_string();
    for heredoc in &ctx.heredocs {
        expression.push('\n');
        expression.push_str(&heredoc.content);
        expression.push_str(&heredoc.name);
    }
    Ok(Onbuild {
        expression,
        trigger: Box::new(trigger),
    })
}
