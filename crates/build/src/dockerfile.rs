//! The Dockerfile grammar (docs.docker.com/reference/dockerfile), read as buildkit's frontend reads it
//! (moby/buildkit frontend/dockerfile: `parser` for lines, directives, continuations and heredocs,
//! `instructions` for the typed instructions and their flags, `shell/lex.go` for words and `$VAR`
//! substitution). Nothing runs here: a Dockerfile is parsed and checked as a whole, and an error names its
//! line (`Dockerfile:7: unknown instruction: FORM`) before anything is built.
//!
//! Three steps, each usable on its own:
//! - [`Dockerfile::parse`]: the text into stages of typed [`Instruction`]s. Every argument that docker
//!   substitutes variables in (ADD COPY ENV EXPOSE FROM LABEL STOPSIGNAL USER VOLUME WORKDIR, ARG defaults,
//!   the `--chown`/`--chmod`/`--checksum`/`--platform` flags) is a [`Word`]: lexed and checked here,
//!   substituted later. RUN, CMD, ENTRYPOINT, SHELL and HEALTHCHECK keep their text: the shell substitutes.
//! - [`Dockerfile::resolve`]: build args and `--target` into a [`BuildPlan`]: the global ARGs' values, each
//!   needed stage's base (image, earlier stage or scratch, FROM lines substituted with the global ARGs),
//!   only the stages the target needs, in build order.
//! - [`StageScope::step`]: one instruction of a stage substituted with the ARG and ENV values in force at
//!   that point (which include the base image's ENV, known only when the build runs), ARG and ENV applied
//!   for the instructions after it; [`StageScope::created_by`] is the image history line buildkit writes.
//!
//! Stricter than buildkit, on purpose: an ONBUILD trigger is parsed now (a broken one is refused here, not
//! in the build it triggers; it is substituted in that build, see [`Dockerfile::parse_trigger`]);
//! `COPY --from` names only earlier stages; RUN `--mount`, `--network`, `--security` and `--device` are
//! refused; labs-only flags (`--exclude`) are unknown flags.

mod expand;
mod lexer;
mod parse;

#[cfg(test)]
mod tests;

use std::time::Duration;

pub use expand::{
    chmod_is_valid, parse_port, signal_is_valid, Base, BaseConfig, BuildArgs, BuildPlan,
    PlannedStage, ResolveOptions, RunProgram, StageScope,
};
pub use lexer::{expand, expand_fields, ExpandError, Word};

/// A parsed Dockerfile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dockerfile {
    /// The parser directives at the top of the file.
    pub directives: Directives,
    /// ARG instructions before the first FROM, with their lines: usable only in FROM lines (a stage
    /// re-declares one, `ARG NAME`, to see its value).
    pub global_args: Vec<(usize, ArgDecl)>,
    /// The stages, in file order; a stage's index is its position here.
    pub stages: Vec<Stage>,
    /// What docker warns about but accepts (empty continuation lines).
    pub warnings: Vec<Warning>,
}

/// `# syntax=`, `# escape=`, `# check=` at the top of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Directives {
    /// The frontend image asked for; berth has one grammar and records it only.
    pub syntax: Option<String>,
    /// `\` (default) or `` ` ``: escapes characters in words and continues lines.
    pub escape: char,
    /// Lint configuration; berth does not lint and records it only.
    pub check: Option<String>,
}

impl Default for Directives {
    fn default() -> Self {
        Directives {
            syntax: None,
            escape: '\\',
            check: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    pub line: usize,
    pub message: String,
}

/// `FROM [--platform=P] IMAGE [AS name]` and the instructions up to the next FROM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stage {
    pub index: usize,
    /// `AS name`, lowercased (stage names are case-insensitive).
    pub name: Option<String>,
    /// The image, an earlier stage's name or `scratch`; substituted with the global ARGs only.
    pub base: Word,
    pub platform: Option<Word>,
    /// Line of the FROM instruction.
    pub line: usize,
    /// The FROM instruction as written (continuations joined).
    pub original: String,
    pub instructions: Vec<Located>,
}

/// One instruction with where it was and its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located {
    /// First line of the instruction (1-based).
    pub line: usize,
    /// Last line, after continuations and heredoc bodies.
    pub end_line: usize,
    /// The instruction as written, continuation lines joined, without heredoc bodies.
    pub original: String,
    pub instruction: Instruction,
}

impl Located {
    /// The instruction's text with its heredoc bodies, as buildkit stores an ONBUILD trigger (a line, then
    /// each body followed by its delimiter): what identifies the instruction for a build cache.
    pub fn full_text(&self) -> String {
        let mut text = self.original.clone();
        for heredoc in self.instruction.heredocs() {
            text.push('\n');
            text.push_str(&heredoc.content);
            text.push_str(&heredoc.name);
        }
        text
    }
}

/// A Dockerfile instruction other than FROM. `W` is [`Word`] as parsed (substitution still to be done)
/// and `String` once [`StageScope::step`] substituted it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Instruction<W = Word> {
    /// `ARG name[=default] ...`. Once stepped, `value` is the value in force (build arg, default,
    /// global ARG) or `None` when the ARG has none.
    Arg(Vec<ArgDecl<W>>),
    /// `ENV k=v ...` or the legacy `ENV k v`.
    Env(Vec<KeyValue<W>>),
    Label(Vec<KeyValue<W>>),
    Run(Run),
    Cmd(Command),
    Entrypoint(Command),
    /// `SHELL ["executable", "parameters"]`: exec form only.
    Shell(Vec<String>),
    Copy(Copy<W>),
    Add(Add<W>),
    Workdir(W),
    User(W),
    /// `EXPOSE port[/proto] ...`. Once stepped: one `port/proto` per port (ranges expanded), proto
    /// lowercase.
    Expose(Vec<W>),
    Volume(Vec<W>),
    StopSignal(W),
    Healthcheck(Healthcheck),
    Onbuild(Onbuild),
    /// Deprecated, accepted: the image's author.
    Maintainer(String),
}

impl<W> Instruction<W> {
    /// The keyword, uppercase.
    pub fn keyword(&self) -> &'static str {
        match self {
            Instruction::Arg(_) => "ARG",
            Instruction::Env(_) => "ENV",
            Instruction::Label(_) => "LABEL",
            Instruction::Run(_) => "RUN",
            Instruction::Cmd(_) => "CMD",
            Instruction::Entrypoint(_) => "ENTRYPOINT",
            Instruction::Shell(_) => "SHELL",
            Instruction::Copy(_) => "COPY",
            Instruction::Add(_) => "ADD",
            Instruction::Workdir(_) => "WORKDIR",
            Instruction::User(_) => "USER",
            Instruction::Expose(_) => "EXPOSE",
            Instruction::Volume(_) => "VOLUME",
            Instruction::StopSignal(_) => "STOPSIGNAL",
            Instruction::Healthcheck(_) => "HEALTHCHECK",
            Instruction::Onbuild(_) => "ONBUILD",
            Instruction::Maintainer(_) => "MAINTAINER",
        }
    }

    /// The heredocs read after the instruction's line (RUN, COPY, ADD, and those in an ONBUILD trigger).
    pub fn heredocs(&self) -> &[Heredoc] {
        match self {
            Instruction::Run(run) => &run.heredocs,
            Instruction::Copy(copy) => &copy.files.heredocs,
            Instruction::Add(add) => &add.files.heredocs,
            Instruction::Onbuild(onbuild) => onbuild.trigger.heredocs(),
            _ => &[],
        }
    }
}

/// One name of an ARG instruction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArgDecl<W = Word> {
    pub name: String,
    pub value: Option<W>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue<W = Word> {
    pub key: W,
    pub value: W,
}

/// RUN, CMD, ENTRYPOINT: a JSON array of strings (exec form) or text for the shell. A JSON array that
/// does not parse is shell form, as docker has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Exec(Vec<String>),
    Shell(String),
}

impl Command {
    /// The argv: exec form as is, shell form after `shell` (`/bin/sh -c` unless SHELL changed it).
    pub fn argv(&self, shell: &[String]) -> Vec<String> {
        match self {
            Command::Exec(args) => args.clone(),
            Command::Shell(text) => {
                let mut argv = shell.to_vec();
                argv.push(text.clone());
                argv
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    pub command: Command,
    /// `<<EOF` bodies, in the order their delimiters appear (shell form only).
    pub heredocs: Vec<Heredoc>,
}

/// A here-document: the lines after the instruction up to the delimiter line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heredoc {
    /// The delimiter, quotes removed (`EOF` for `<<"EOF"`); for COPY and ADD also the file's name.
    pub name: String,
    /// The lines as read, with their line endings; leading tabs are still there for `<<-`.
    pub content: String,
    /// False when the delimiter was quoted: the body is not substituted.
    pub expand: bool,
    /// `<<-`: leading tabs are stripped from the body's lines and the delimiter's.
    pub chomp: bool,
    /// `2<<EOF`: the file descriptor the shell gives the body to (0 when not written).
    pub fd: u32,
}

impl Heredoc {
    /// The body with leading tabs stripped for `<<-`.
    pub fn body(&self) -> String {
        if self.chomp {
            chomp_tabs(&self.content)
        } else {
            self.content.clone()
        }
    }
}

pub(crate) fn chomp_tabs(text: &str) -> String {
    text.split_inclusive('\n')
        .map(|line| line.trim_start_matches('\t'))
        .collect()
}

/// Sources and destination of COPY and ADD.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Files<W = Word> {
    /// Paths in the context (or the `--from` stage or image); for ADD also URLs and git references.
    pub sources: Vec<W>,
    /// `<<EOF` sources: a file named `name` whose content is the body (substituted unless the delimiter
    /// was quoted). Once stepped, `content` is the file's final content.
    pub heredocs: Vec<Heredoc>,
    pub dest: W,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Copy<W = Word> {
    pub files: Files<W>,
    pub from: Option<CopyFrom>,
    pub chown: Option<W>,
    /// Octal (`0755`) or symbolic (`u+x`); see [`chmod_is_valid`].
    pub chmod: Option<W>,
    pub link: bool,
    pub parents: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Add<W = Word> {
    pub files: Files<W>,
    pub chown: Option<W>,
    pub chmod: Option<W>,
    pub link: bool,
    pub checksum: Option<W>,
    pub keep_git_dir: bool,
    /// `--unpack[=bool]`: `None` when not given (local archives are unpacked, remote ones are not).
    pub unpack: Option<bool>,
}

/// `COPY --from=`: an earlier stage (by name or index) or an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CopyFrom {
    Stage(usize),
    /// Not a stage of this Dockerfile: an image reference. In an ONBUILD trigger, the text as written (it
    /// names a stage of the Dockerfile that will build on this image).
    Image(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Healthcheck {
    /// `HEALTHCHECK NONE`: disables a check inherited from the base image.
    Disable,
    Check(HealthConfig),
}

impl Healthcheck {
    /// The `Test` of the image config: `["NONE"]`, `["CMD", args...]` or `["CMD-SHELL", command]`.
    pub fn test(&self) -> Vec<String> {
        match self {
            Healthcheck::Disable => vec!["NONE".into()],
            Healthcheck::Check(config) => match &config.test {
                Command::Exec(args) => std::iter::once("CMD".to_string())
                    .chain(args.iter().cloned())
                    .collect(),
                Command::Shell(text) => vec!["CMD-SHELL".into(), text.clone()],
            },
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthConfig {
    pub test: Command,
    /// `None` when not given or zero: the runtime's default.
    pub interval: Option<Duration>,
    pub timeout: Option<Duration>,
    pub start_period: Option<Duration>,
    pub start_interval: Option<Duration>,
    pub retries: Option<u32>,
}

/// `ONBUILD INSTRUCTION`: stored in the image, run by builds that use it as a base.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Onbuild {
    /// The trigger as the image config stores it (`RUN make`, heredoc bodies appended).
    pub expression: String,
    /// The trigger, parsed here to refuse a broken one now rather than in a later build.
    pub trigger: Box<Instruction>,
}

/// Why a Dockerfile is refused. Each message is one line and names the Dockerfile line it is about.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("Dockerfile: file with no instructions")]
    Empty,
    #[error("Dockerfile: no build stage: the file has no FROM instruction")]
    NoStages,
    #[error("Dockerfile:{line}: invalid escape token '{token}' does not match ` or \\")]
    InvalidEscape { line: usize, token: String },
    #[error("Dockerfile:{line}: only one {name} parser directive can be used")]
    DuplicateDirective { line: usize, name: String },
    #[error(
        "Dockerfile:{line}: unknown instruction: {name}{}",
        .suggestion.map(|s| format!(" (did you mean {s}?)")).unwrap_or_default()
    )]
    UnknownInstruction {
        line: usize,
        name: String,
        suggestion: Option<&'static str>,
    },
    #[error(
        "Dockerfile:{line}: {instruction} before the first FROM: only ARG can come before FROM"
    )]
    BeforeFrom { line: usize, instruction: String },
    #[error("Dockerfile:{line}: unknown flag for {instruction}: --{flag}")]
    UnknownFlag {
        line: usize,
        instruction: String,
        flag: String,
    },
    #[error("Dockerfile:{line}: {instruction} --{flag} is not supported by berth build")]
    UnsupportedFlag {
        line: usize,
        instruction: String,
        flag: String,
    },
    #[error("Dockerfile:{line}: {instruction} requires {expected}")]
    Arguments {
        line: usize,
        instruction: String,
        expected: &'static str,
    },
    #[error("Dockerfile:{line}: unterminated heredoc {name} started on line {start}")]
    UnterminatedHeredoc {
        line: usize,
        start: usize,
        name: String,
    },
    #[error(
        "Dockerfile:{line}: invalid name for build stage: \"{name}\", name can't start with a number or \
         contain symbols"
    )]
    InvalidStageName { line: usize, name: String },
    #[error("Dockerfile:{line}: duplicate stage name \"{name}\" (first used on line {first})")]
    DuplicateStage {
        line: usize,
        name: String,
        first: usize,
    },
    #[error("Dockerfile:{line}: COPY --from={from} refers to the stage it is in")]
    CopyFromSelf { line: usize, from: String },
    #[error(
        "Dockerfile:{line}: COPY --from={from} refers to a later stage (line {defined}): only earlier \
         stages can be copied from"
    )]
    CopyFromLater {
        line: usize,
        from: String,
        defined: usize,
    },
    #[error(
        "Dockerfile:{line}: COPY --from={from}: invalid stage index (the file has {count} stages)"
    )]
    StageIndex {
        line: usize,
        from: String,
        count: usize,
    },
    #[error("Dockerfile:{line}: {instruction}: failed to process {word:?}: {source}")]
    Expand {
        line: usize,
        instruction: String,
        word: String,
        #[source]
        source: ExpandError,
    },
    #[error("Dockerfile:{line}: {message}")]
    Invalid { line: usize, message: String },
    #[error("target stage \"{0}\" could not be found")]
    UnknownTarget(String),
}

impl Error {
    /// The Dockerfile line the error is about, when it is about one.
    pub fn line(&self) -> Option<usize> {
        match self {
            Error::Empty | Error::NoStages | Error::UnknownTarget(_) => None,
            Error::InvalidEscape { line, .. }
            | Error::DuplicateDirective { line, .. }
            | Error::UnknownInstruction { line, .. }
            | Error::BeforeFrom { line, .. }
            | Error::UnknownFlag { line, .. }
            | Error::UnsupportedFlag { line, .. }
            | Error::Arguments { line, .. }
            | Error::UnterminatedHeredoc { line, .. }
            | Error::InvalidStageName { line, .. }
            | Error::DuplicateStage { line, .. }
            | Error::CopyFromSelf { line, .. }
            | Error::CopyFromLater { line, .. }
            | Error::StageIndex { line, .. }
            | Error::Expand { line, .. }
            | Error::Invalid { line, .. } => Some(*line),
        }
    }
}

impl Dockerfile {
    /// Parses and checks a whole Dockerfile.
    pub fn parse(text: &str) -> Result<Dockerfile, Error> {
        parse::parse(text)
    }

    /// Parses an ONBUILD trigger found in a base image's config, for a build whose Dockerfile is `self`
    /// and whose stage `stage` uses that image: `COPY --from` in it names this Dockerfile's stages
    /// before `stage`. The line of errors is the stage's FROM line, as buildkit reports it.
    pub fn parse_trigger(&self, stage: usize, trigger: &str) -> Result<Located, Error> {
        let line = self.stages.get(stage).map_or(0, |s| s.line);
        parse::parse_trigger(
            trigger,
            line,
            self.directives.escape,
            &self.stages[..stage.min(self.stages.len())],
        )
    }

    /// The stage `--target` names (case-insensitive), or the last stage.
    pub fn target_stage(&self, target: Option<&str>) -> Result<usize, Error> {
        if self.stages.is_empty() {
            return Err(Error::NoStages);
        }
        match target {
            None => Ok(self.stages.len() - 1),
            Some(name) => {
                let lower = name.to_ascii_lowercase();
                self.stages
                    .iter()
                    .position(|s| s.name.as_deref() == Some(lower.as_str()))
                    .ok_or_else(|| Error::UnknownTarget(name.to_string()))
            }
        }
    }

    /// Build args and target into the stages to build; see [`BuildPlan`].
    pub fn resolve(&self, options: &ResolveOptions) -> Result<BuildPlan, Error> {
        expand::resolve(self, options)
    }
}
