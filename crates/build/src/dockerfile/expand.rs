//! Build args, targets and substitution: which stages a build needs and what each instruction becomes
//! with the ARG and ENV values in force (buildkit's dockerfile2llb `dispatch*`), and the history line each
//! one leaves in the image.

use std::collections::BTreeMap;
use std::time::Duration;

use super::lexer::Word;
use super::{
    Add, ArgDecl, Command, Copy, CopyFrom, Dockerfile, Error, Files, Healthcheck, Heredoc,
    Instruction, KeyValue, Located, Run,
};

/// `--build-arg NAME=VALUE`s.
pub type BuildArgs = BTreeMap<String, String>;

/// Build args docker passes without a matching ARG (and leaves out of the history).
const PROXY_ARGS: [&str; 10] = [
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "FTP_PROXY",
    "ftp_proxy",
    "NO_PROXY",
    "no_proxy",
    "ALL_PROXY",
    "all_proxy",
];

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResolveOptions {
    pub build_args: BuildArgs,
    /// `--target`: the stage to build (case-insensitive); the last stage when `None`.
    pub target: Option<String>,
    /// Args defined before the first line, as buildkit defines the platform ones (`TARGETPLATFORM`,
    /// `TARGETOS`, `TARGETARCH`, `BUILDPLATFORM`...): usable in FROM lines, and in a stage after
    /// `ARG NAME`.
    pub builtin_args: BuildArgs,
}

/// What a build of a Dockerfile needs: the stages the target depends on, in an order that builds each
/// after those it uses (file order), the target last.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildPlan {
    pub stages: Vec<PlannedStage>,
    /// Index (in the Dockerfile) of the target stage.
    pub target: usize,
    /// The global ARGs' values (builtin args, then the ARGs before the first FROM).
    pub global_args: Vec<(String, String)>,
    /// Build args no ARG of the built stages declares (docker warns that they "were not consumed").
    pub unused_build_args: Vec<String>,
    escape: char,
    build_args: BuildArgs,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedStage {
    /// Index in the Dockerfile.
    pub index: usize,
    pub name: Option<String>,
    pub base: Base,
    /// `--platform`, substituted; `None` when not given.
    pub platform: Option<String>,
    /// Earlier stages this one needs: its base and its `COPY --from` sources, ascending.
    pub stage_deps: Vec<usize>,
    /// Images `COPY --from` reads.
    pub image_deps: Vec<String>,
    /// Line of the FROM instruction.
    pub line: usize,
    pub instructions: Vec<Located>,
}

/// What a stage starts from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Base {
    Scratch,
    Image(String),
    /// An earlier stage: start from its result, and from its [`StageScope`] (cloned).
    Stage(usize),
}

/// The base image's config as far as substitution and history need it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BaseConfig {
    /// `NAME=value` entries.
    pub env: Vec<String>,
    /// SHELL; empty for `/bin/sh -c`.
    pub shell: Vec<String>,
    /// The working directory; empty for `/`.
    pub workdir: String,
}

pub(super) fn resolve(
    dockerfile: &Dockerfile,
    options: &ResolveOptions,
) -> Result<BuildPlan, Error> {
    let mut global: Vec<(String, String)> = options
        .builtin_args
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    for (line, decl) in &dockerfile.global_args {
        let value = match (options.build_args.get(&decl.name), &decl.value) {
            (Some(value), _) => Some(value.clone()),
            (None, Some(default)) => Some(expand_word(default, &global, *line, "ARG")?),
            (None, None) => None,
        };
        if let Some(value) = value {
            set(&mut global, &decl.name, value);
        }
    }

    let target = dockerfile.target_stage(options.target.as_deref())?;
    let mut planned: BTreeMap<usize, PlannedStage> = BTreeMap::new();
    let mut pending = vec![target];
    while let Some(index) = pending.pop() {
        if planned.contains_key(&index) {
            continue;
        }
        let stage = &dockerfile.stages[index];
        let image = expand_word(&stage.base, &global, stage.line, "FROM")?;
        if image.is_empty() {
            return Err(Error::Invalid {
                line: stage.line,
                message: format!("FROM: base name ({}) should not be blank", stage.base),
            });
        }
        let lower = image.to_ascii_lowercase();
        let base = match dockerfile.stages[..index]
            .iter()
            .position(|s| s.name.as_deref() == Some(lower.as_str()))
        {
            Some(earlier) => Base::Stage(earlier),
            None if image == "scratch" => Base::Scratch,
            None => Base::Image(image),
        };
        let platform = match &stage.platform {
            Some(word) => {
                Some(expand_word(word, &global, stage.line, "FROM")?).filter(|p| !p.is_empty())
            }
            None => None,
        };
        let mut stage_deps = Vec::new();
        let mut image_deps = Vec::new();
        if let Base::Stage(earlier) = base {
            stage_deps.push(earlier);
        }
        for located in &stage.instructions {
            if let Instruction::Copy(Copy {
                from: Some(from), ..
            }) = &located.instruction
            {
                match from {
                    CopyFrom::Stage(earlier) => stage_deps.push(*earlier),
                    CopyFrom::Image(image) if !image_deps.contains(image) => {
                        image_deps.push(image.clone())
                    }
                    CopyFrom::Image(_) => {}
                }
            }
        }
        stage_deps.sort_unstable();
        stage_deps.dedup();
        pending.extend(&stage_deps);
        planned.insert(
            index,
            PlannedStage {
                index,
                name: stage.name.clone(),
                base,
                platform,
                stage_deps,
                image_deps,
                line: stage.line,
                instructions: stage.instructions.clone(),
            },
        );
    }

    let declared = |name: &str| {
        dockerfile.global_args.iter().any(|(_, d)| d.name == name)
            || planned.values().any(|stage| {
                stage.instructions.iter().any(|l| match &l.instruction {
                    Instruction::Arg(decls) => decls.iter().any(|d| d.name == name),
                    _ => false,
                })
            })
    };
    let unused_build_args = options
        .build_args
        .keys()
        .filter(|name| !declared(name) && !PROXY_ARGS.contains(&name.as_str()))
        .cloned()
        .collect();

    Ok(BuildPlan {
        stages: planned.into_values().collect(),
        target,
        global_args: global,
        unused_build_args,
        escape: dockerfile.directives.escape,
        build_args: options.build_args.clone(),
    })
}

fn lookup_in<'a>(vars: &'a [(String, String)], name: &str) -> Option<&'a str> {
    vars.iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn set(vars: &mut Vec<(String, String)>, name: &str, value: String) {
    match vars.iter_mut().find(|(k, _)| k == name) {
        Some(entry) => entry.1 = value,
        None => vars.push((name.to_string(), value)),
    }
}

fn expand_word(
    word: &Word,
    vars: &[(String, String)],
    line: usize,
    instruction: &str,
) -> Result<String, Error> {
    word.expand(|name| lookup_in(vars, name).map(str::to_string))
        .map_err(|source| Error::Expand {
            line,
            instruction: instruction.into(),
            word: word.as_str().into(),
            source,
        })
}

impl BuildPlan {
    /// The scope for a stage that starts from an image (or scratch, with the default config). A stage
    /// based on an earlier stage starts from a clone of that stage's scope after its last instruction.
    pub fn scope(&self, base: &BaseConfig) -> StageScope {
        let env: Vec<(String, String)> = base
            .env
            .iter()
            .map(|e| match e.split_once('=') {
                Some((k, v)) => (k.to_string(), v.to_string()),
                None => (e.clone(), String::new()),
            })
            .collect();
        StageScope {
            escape: self.escape,
            build_args: self.build_args.clone(),
            global: self.global_args.clone(),
            env: env.clone(),
            image_env: env,
            args: Vec::new(),
            shell: if base.shell.is_empty() {
                vec!["/bin/sh".into(), "-c".into()]
            } else {
                base.shell.clone()
            },
            workdir: if base.workdir.is_empty() {
                "/".into()
            } else {
                base.workdir.clone()
            },
        }
    }

    /// The planned stage for a Dockerfile stage index, if the build needs it.
    pub fn stage(&self, index: usize) -> Option<&PlannedStage> {
        self.stages.iter().find(|s| s.index == index)
    }
}

/// A stage's variables while it builds, instruction after instruction: the base image's ENV, then ARG
/// values (build arg, default or global ARG) and ENV values in the order the stage defines them, the
/// later winning. What buildkit calls the state's env: RUN sees it, substitution uses it. Also the SHELL
/// and WORKDIR in force, for the history lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageScope {
    escape: char,
    build_args: BuildArgs,
    global: Vec<(String, String)>,
    env: Vec<(String, String)>,
    image_env: Vec<(String, String)>,
    args: Vec<(String, Option<String>)>,
    shell: Vec<String>,
    workdir: String,
}

impl StageScope {
    /// A variable's value for substitution.
    pub fn lookup(&self, name: &str) -> Option<&str> {
        lookup_in(&self.env, name)
    }

    /// The environment of a RUN: the image's, the ARGs' and the ENVs', `NAME=value`.
    pub fn run_env(&self) -> Vec<String> {
        self.env.iter().map(|(k, v)| format!("{k}={v}")).collect()
    }

    /// The image config's Env: the base image's and the ENVs' (ARGs are not kept in the image).
    pub fn image_env(&self) -> Vec<String> {
        self.image_env
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect()
    }

    pub fn shell(&self) -> &[String] {
        &self.shell
    }

    /// The working directory in force, absolute.
    pub fn workdir(&self) -> &str {
        &self.workdir
    }

    /// The ARGs declared so far in the stage (and the stages it is based on) with their values.
    pub fn args(&self) -> Vec<(String, Option<String>)> {
        self.args.clone()
    }

    fn word(&self, word: &Word, line: usize, instruction: &str) -> Result<String, Error> {
        expand_word(word, &self.env, line, instruction)
    }

    fn words(&self, words: &[Word], line: usize, instruction: &str) -> Result<Vec<String>, Error> {
        words
            .iter()
            .map(|w| self.word(w, line, instruction))
            .collect()
    }

    fn optional(
        &self,
        word: &Option<Word>,
        line: usize,
        instruction: &str,
    ) -> Result<Option<String>, Error> {
        word.as_ref()
            .map(|w| self.word(w, line, instruction))
            .transpose()
    }

    fn files(&self, files: &Files, line: usize, instruction: &str) -> Result<Files<String>, Error> {
        let heredocs = files
            .heredocs
            .iter()
            .map(|heredoc| {
                let body = heredoc.body();
                let content = if heredoc.expand {
                    let word = Word::parse_body(&body).map_err(|source| Error::Expand {
                        line,
                        instruction: instruction.into(),
                        word: format!("<<{}", heredoc.name),
                        source,
                    })?;
                    word.expand(|name| self.lookup(name).map(str::to_string))
                        .map_err(|source| Error::Expand {
                            line,
                            instruction: instruction.into(),
                            word: format!("<<{}", heredoc.name),
                            source,
                        })?
                } else {
                    body
                };
                Ok(Heredoc {
                    content,
                    expand: false,
                    chomp: false,
                    ..heredoc.clone()
                })
            })
            .collect::<Result<_, Error>>()?;
        Ok(Files {
            sources: self.words(&files.sources, line, instruction)?,
            heredocs,
            dest: self.word(&files.dest, line, instruction)?,
        })
    }

    fn chmod(
        &self,
        chmod: &Option<Word>,
        line: usize,
        instruction: &str,
    ) -> Result<Option<String>, Error> {
        let chmod = self.optional(chmod, line, instruction)?;
        if let Some(mode) = chmod.as_deref().filter(|m| !chmod_is_valid(m)) {
            return Err(Error::Invalid {
                line,
                message: format!(
                    "{instruction}: invalid chmod parameter: '{mode}'. it should be octal string and between 0 \
                     and 07777, or symbolic (u+x)"
                ),
            });
        }
        Ok(chmod.filter(|m| !m.is_empty()))
    }

    /// Substitutes one instruction with the variables in force, then applies what it defines (ARG, ENV,
    /// SHELL, WORKDIR) for the instructions after it. ARG values are the build arg, else the default
    /// substituted, else the global ARG of that name.
    pub fn step(&mut self, located: &Located) -> Result<Instruction<String>, Error> {
        let line = located.line;
        let keyword = located.instruction.keyword();
        let invalid = |message: String| Error::Invalid { line, message };
        Ok(match &located.instruction {
            Instruction::Arg(decls) => {
                let mut out = Vec::new();
                for decl in decls {
                    let value = match (self.build_args.get(&decl.name), &decl.value) {
                        (Some(value), _) => Some(value.clone()),
                        (None, Some(default)) => Some(self.word(default, line, keyword)?),
                        (None, None) => lookup_in(&self.global, &decl.name).map(str::to_string),
                    };
                    self.args.push((decl.name.clone(), value.clone()));
                    if let Some(value) = &value {
                        set(&mut self.env, &decl.name, value.clone());
                    }
                    out.push(ArgDecl {
                        name: decl.name.clone(),
                        value,
                    });
                }
                Instruction::Arg(out)
            }
            Instruction::Env(pairs) => {
                let pairs = self.key_values(pairs, line, keyword)?;
                for pair in &pairs {
                    set(&mut self.env, &pair.key, pair.value.clone());
                    set(&mut self.image_env, &pair.key, pair.value.clone());
                }
                Instruction::Env(pairs)
            }
            Instruction::Label(pairs) => Instruction::Label(self.key_values(pairs, line, keyword)?),
            Instruction::Run(run) => Instruction::Run(run.clone()),
            Instruction::Cmd(command) => Instruction::Cmd(command.clone()),
            Instruction::Entrypoint(command) => Instruction::Entrypoint(command.clone()),
            Instruction::Shell(shell) => {
                self.shell = shell.clone();
                Instruction::Shell(shell.clone())
            }
            Instruction::Copy(copy) => Instruction::Copy(Copy {
                files: self.files(&copy.files, line, keyword)?,
                from: copy.from.clone(),
                chown: self
                    .optional(&copy.chown, line, keyword)?
                    .filter(|c| !c.is_empty()),
                chmod: self.chmod(&copy.chmod, line, keyword)?,
                link: copy.link,
                parents: copy.parents,
            }),
            Instruction::Add(add) => Instruction::Add(Add {
                files: self.files(&add.files, line, keyword)?,
                chown: self
                    .optional(&add.chown, line, keyword)?
                    .filter(|c| !c.is_empty()),
                chmod: self.chmod(&add.chmod, line, keyword)?,
                link: add.link,
                checksum: self
                    .optional(&add.checksum, line, keyword)?
                    .filter(|c| !c.is_empty()),
                keep_git_dir: add.keep_git_dir,
                unpack: add.unpack,
            }),
            Instruction::Workdir(word) => {
                let dir = self.word(word, line, keyword)?;
                if dir.is_empty() {
                    return Err(invalid("WORKDIR: cannot normalize nothing".into()));
                }
                self.workdir = normalize_workdir(&self.workdir, &dir);
                Instruction::Workdir(dir)
            }
            Instruction::User(word) => Instruction::User(self.word(word, line, keyword)?),
            Instruction::Expose(words) => {
                let mut ports: Vec<String> = Vec::new();
                for word in words {
                    let fields = word
                        .expand_fields(|name| self.lookup(name).map(str::to_string))
                        .map_err(|source| Error::Expand {
                            line,
                            instruction: keyword.into(),
                            word: word.as_str().into(),
                            source,
                        })?;
                    for field in fields {
                        for port in
                            parse_port(&field).map_err(|e| invalid(format!("EXPOSE: {e}")))?
                        {
                            if !ports.contains(&port) {
                                ports.push(port);
                            }
                        }
                    }
                }
                Instruction::Expose(ports)
            }
            Instruction::Volume(words) => {
                let volumes = self.words(words, line, keyword)?;
                if volumes.iter().any(|v| v.trim().is_empty()) {
                    return Err(invalid(
                        "VOLUME specified can not be an empty string".into(),
                    ));
                }
                Instruction::Volume(volumes)
            }
            Instruction::StopSignal(word) => {
                let signal = self.word(word, line, keyword)?;
                if !signal_is_valid(&signal) {
                    return Err(invalid(format!("STOPSIGNAL: invalid signal: {signal}")));
                }
                Instruction::StopSignal(signal)
            }
            Instruction::Healthcheck(check) => Instruction::Healthcheck(check.clone()),
            Instruction::Onbuild(onbuild) => Instruction::Onbuild(onbuild.clone()),
            Instruction::Maintainer(name) => Instruction::Maintainer(name.clone()),
        })
    }

    /// ENV and LABEL pairs are all substituted with the variables in force before the instruction
    /// (`ENV a=1 b=$a` gives b the a of before).
    fn key_values(
        &self,
        pairs: &[KeyValue],
        line: usize,
        keyword: &str,
    ) -> Result<Vec<KeyValue<String>>, Error> {
        pairs
            .iter()
            .map(|pair| {
                Ok(KeyValue {
                    key: self.word(&pair.key, line, keyword)?,
                    value: self.word(&pair.value, line, keyword)?,
                })
            })
            .collect()
    }

    /// The image history's `created_by` for an instruction [`step`](Self::step) returned, as buildkit
    /// writes it: `RUN |1 A=b /bin/sh -c make # buildkit`, `COPY src /dst # buildkit`, `ENV k=v`,
    /// `CMD ["/bin/sh" "-c" "x"]`, `EXPOSE map[80/tcp:{}]`... `None` for ONBUILD, which buildkit records
    /// in the config only.
    pub fn created_by(&self, instruction: &Instruction<String>) -> Option<String> {
        let pairs = |pairs: &[KeyValue<String>]| {
            pairs
                .iter()
                .map(|p| format!(" {}={}", p.key, p.value))
                .collect::<String>()
        };
        Some(match instruction {
            Instruction::Arg(decls) => {
                let decls: Vec<String> = decls
                    .iter()
                    .map(|d| match &d.value {
                        Some(value) => format!("{}={value}", d.name),
                        None => d.name.clone(),
                    })
                    .collect();
                format!("ARG {}", decls.join(" "))
            }
            Instruction::Env(env) => format!("ENV{}", pairs(env)),
            Instruction::Label(labels) => format!("LABEL{}", pairs(labels)),
            Instruction::Run(run) => {
                let program = run.program(&self.shell);
                format!("RUN {} # buildkit", self.run_command_string(&program.argv))
            }
            Instruction::Cmd(command) => {
                format!("CMD {}", go_quote_list(&command.argv(&self.shell)))
            }
            Instruction::Entrypoint(command) => {
                format!("ENTRYPOINT {}", go_quote_list(&command.argv(&self.shell)))
            }
            Instruction::Shell(shell) => format!("SHELL [{}]", shell.join(" ")),
            Instruction::Copy(copy) => {
                let mut text = String::from("COPY");
                if copy.parents {
                    text.push_str(" --parents");
                }
                files_history(&mut text, &copy.chown, &copy.chmod, &copy.files);
                text
            }
            Instruction::Add(add) => {
                let mut text = String::from("ADD");
                files_history(&mut text, &add.chown, &add.chmod, &add.files);
                text
            }
            Instruction::Workdir(_) => format!("WORKDIR {}", self.workdir),
            Instruction::User(user) => format!("USER {user}"),
            Instruction::Expose(ports) => {
                let mut sorted = ports.clone();
                sorted.sort();
                sorted.dedup();
                let entries: Vec<String> = sorted.iter().map(|p| format!("{p}:{{}}")).collect();
                format!("EXPOSE map[{}]", entries.join(" "))
            }
            Instruction::Volume(volumes) => format!("VOLUME [{}]", volumes.join(" ")),
            Instruction::StopSignal(signal) => format!("STOPSIGNAL {signal}"),
            Instruction::Healthcheck(check) => {
                let config = match check {
                    Healthcheck::Disable => None,
                    Healthcheck::Check(config) => Some(config),
                };
                let duration = |get: fn(&super::HealthConfig) -> Option<Duration>| {
                    go_quote(&go_duration(config.and_then(get).unwrap_or_default()))
                };
                format!(
                    "HEALTHCHECK &{{{} {} {} {} {} {}}}",
                    go_quote_list(&check.test()),
                    duration(|c| c.interval),
                    duration(|c| c.timeout),
                    duration(|c| c.start_period),
                    duration(|c| c.start_interval),
                    go_quote_rune(config.and_then(|c| c.retries).unwrap_or(0)),
                )
            }
            Instruction::Onbuild(_) => return None,
            Instruction::Maintainer(name) => format!("MAINTAINER {name}"),
        })
    }

    /// buildkit's `runCommandString`: `|N NAME=value ...` for the stage's ARGs (their current value in
    /// the env), then the argv.
    fn run_command_string(&self, argv: &[String]) -> String {
        let mut args: Vec<(String, String)> = Vec::new();
        for (name, value) in &self.args {
            let value = self
                .lookup(name)
                .map(str::to_string)
                .or_else(|| value.clone())
                .unwrap_or_default();
            set(&mut args, name, value);
        }
        let mut parts = Vec::new();
        if !args.is_empty() {
            parts.push(format!("|{}", args.len()));
            parts.extend(args.iter().map(|(k, v)| format!("{k}={v}")));
        }
        parts.extend(argv.iter().cloned());
        parts.join(" ")
    }
}

fn files_history(
    text: &mut String,
    chown: &Option<String>,
    chmod: &Option<String>,
    files: &Files<String>,
) {
    if let Some(chown) = chown {
        text.push_str(&format!(" --chown={chown}"));
    }
    if let Some(chmod) = chmod {
        text.push_str(&format!(" --chmod={chmod}"));
    }
    for source in &files.sources {
        text.push(' ');
        text.push_str(source);
    }
    for heredoc in &files.heredocs {
        text.push_str(" <<");
        text.push_str(&heredoc.name);
    }
    text.push(' ');
    text.push_str(&files.dest);
    text.push_str(" # buildkit");
}

/// A RUN as buildkit runs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunProgram {
    pub argv: Vec<String>,
    /// `RUN <<EOF` whose body starts with `#!`: the body is written to this path (mode 0755, a read-only
    /// mount in buildkit) and the shell runs the path.
    pub script: Option<(String, String)>,
}

impl Run {
    /// The argv of this RUN under `shell`, heredocs included: a RUN that is only `<<EOF` runs the body
    /// as the shell's script (or, with a `#!` line, as a file); otherwise the bodies follow the command
    /// for the shell to read, as a shell script with here-documents.
    pub fn program(&self, shell: &[String]) -> RunProgram {
        let Command::Shell(text) = &self.command else {
            return RunProgram {
                argv: self.command.argv(shell),
                script: None,
            };
        };
        let Some(first) = self.heredocs.first() else {
            return RunProgram {
                argv: self.command.argv(shell),
                script: None,
            };
        };
        if super::lexer::heredoc_word(text).is_some() {
            let body = first.body();
            if first.content.starts_with("#!") {
                let path = format!("/dev/pipes/{}", first.name);
                return RunProgram {
                    argv: Command::Shell(path.clone()).argv(shell),
                    script: Some((path, body)),
                };
            }
            return RunProgram {
                argv: Command::Shell(body).argv(shell),
                script: None,
            };
        }
        let mut full = text.clone();
        for heredoc in &self.heredocs {
            full.push('\n');
            full.push_str(&heredoc.content);
            full.push_str(&heredoc.name);
        }
        RunProgram {
            argv: Command::Shell(full).argv(shell),
            script: None,
        }
    }
}

/// Absolute, cleaned: `requested` if absolute, else joined to `current`.
fn normalize_workdir(current: &str, requested: &str) -> String {
    let joined = if requested.starts_with('/') {
        requested.to_string()
    } else {
        format!("{current}/{requested}")
    };
    let mut parts: Vec<&str> = Vec::new();
    for part in joined.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            other => parts.push(other),
        }
    }
    format!("/{}", parts.join("/"))
}

/// `EXPOSE` ports as docker's nat.ParsePortSpec reads them: `port`, `start-end`, optional `/tcp`,
/// `/udp` or `/sctp`; a host part (`ip:host:container`) is ignored. One `port/proto` per port.
pub fn parse_port(spec: &str) -> Result<Vec<String>, String> {
    let (ports, proto) = match spec.rsplit_once('/') {
        Some((ports, proto)) => (ports, proto.to_ascii_lowercase()),
        None => (spec, "tcp".to_string()),
    };
    if !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
        return Err(format!("invalid proto: {proto}"));
    }
    let container = ports.rsplit(':').next().unwrap_or_default();
    let number = |text: &str| {
        text.parse::<u16>()
            .map_err(|_| format!("invalid port: {spec}"))
    };
    let (start, end) = match container.split_once('-') {
        Some((start, end)) => (number(start)?, number(end)?),
        None => {
            let port = number(container)?;
            (port, port)
        }
    };
    if end < start {
        return Err(format!("invalid range specified for port: {spec}"));
    }
    Ok((start..=end)
        .map(|port| format!("{port}/{proto}"))
        .collect())
}

/// A STOPSIGNAL docker accepts: a non-zero number, or a Linux signal name with or without `SIG`
/// (`RTMIN+3` too), any case.
pub fn signal_is_valid(signal: &str) -> bool {
    if let Ok(number) = signal.parse::<i64>() {
        return number != 0;
    }
    let upper = signal.to_ascii_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    const NAMES: [&str; 35] = [
        "ABRT", "ALRM", "BUS", "CHLD", "CLD", "CONT", "FPE", "HUP", "ILL", "INT", "IO", "IOT",
        "KILL", "PIPE", "POLL", "PROF", "PWR", "QUIT", "SEGV", "STKFLT", "STOP", "SYS", "TERM",
        "TRAP", "TSTP", "TTIN", "TTOU", "URG", "USR1", "USR2", "VTALRM", "WINCH", "XCPU", "XFSZ",
        "RTMIN",
    ];
    if NAMES.contains(&name) || name == "RTMAX" {
        return true;
    }
    let offset = |rest: Option<&str>, max: u32| {
        rest.and_then(|n| n.parse::<u32>().ok())
            .is_some_and(|n| (1..=max).contains(&n))
    };
    offset(name.strip_prefix("RTMIN+"), 15) || offset(name.strip_prefix("RTMAX-"), 14)
}

/// A `--chmod` buildkit accepts: octal up to 07777, or symbolic (`u+x`, `go-w,a+r`, `u=rwx`).
pub fn chmod_is_valid(mode: &str) -> bool {
    if !mode.is_empty() && mode.chars().all(|c| c.is_digit(8)) {
        return u32::from_str_radix(mode, 8).is_ok_and(|m| m <= 0o7777);
    }
    !mode.is_empty()
        && mode.split(',').all(|clause| {
            let mut rest = clause
                .trim_start_matches(['u', 'g', 'o', 'a'])
                .chars()
                .peekable();
            if rest.peek().is_none() {
                return false;
            }
            while let Some(op) = rest.next() {
                if !matches!(op, '+' | '-' | '=') {
                    return false;
                }
                if rest.peek().is_some_and(|c| matches!(c, 'u' | 'g' | 'o')) {
                    rest.next();
                    continue;
                }
                while rest
                    .peek()
                    .is_some_and(|c| matches!(c, 'r' | 'w' | 'x' | 'X' | 's' | 't'))
                {
                    rest.next();
                }
            }
            true
        })
}

/// Go's `time.ParseDuration` for the non-negative durations HEALTHCHECK takes (`30s`, `1m30s`, `1.5h`,
/// `250ms`).
pub(crate) fn parse_go_duration(text: &str) -> Option<Duration> {
    let text = text.strip_prefix('+').unwrap_or(text);
    if text == "0" {
        return Some(Duration::ZERO);
    }
    if text.is_empty() || text.starts_with('-') {
        return None;
    }
    let mut rest = text;
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let int_len = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let int = &rest[..int_len];
        rest = &rest[int_len..];
        let mut frac = "";
        if let Some(after) = rest.strip_prefix('.') {
            let len = after
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(after.len());
            frac = &after[..len];
            rest = &after[len..];
        }
        if int.is_empty() && frac.is_empty() {
            return None;
        }
        let unit_len = rest
            .find(|c: char| c == '.' || c.is_ascii_digit())
            .unwrap_or(rest.len());
        let scale: u128 = match &rest[..unit_len] {
            "ns" => 1,
            "us" | "\u{b5}s" | "\u{3bc}s" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => return None,
        };
        rest = &rest[unit_len..];
        let int: u128 = if int.is_empty() { 0 } else { int.parse().ok()? };
        let mut value = int.checked_mul(scale)?;
        if !frac.is_empty() {
            let frac = &frac[..frac.len().min(18)];
            let digits: u128 = frac.parse().ok()?;
            value += digits * scale / 10u128.pow(frac.len() as u32);
        }
        total = total.checked_add(value)?;
    }
    u64::try_from(total).ok().map(Duration::from_nanos)
}

/// Go's `time.Duration.String`: `0s`, `1.5s`, `1m30s`, `1h0m0s`, `250ms`, `10µs`.
pub(crate) fn go_duration(duration: Duration) -> String {
    let ns = duration.as_nanos();
    let fraction = |value: u128, unit: u128, width: usize| {
        let (int, rem) = (value / unit, value % unit);
        if rem == 0 {
            int.to_string()
        } else {
            let digits = format!("{rem:0width$}");
            format!("{int}.{}", digits.trim_end_matches('0'))
        }
    };
    if ns == 0 {
        return "0s".into();
    }
    if ns < 1_000 {
        return format!("{ns}ns");
    }
    if ns < 1_000_000 {
        return format!("{}\u{b5}s", fraction(ns, 1_000, 3));
    }
    if ns < 1_000_000_000 {
        return format!("{}ms", fraction(ns, 1_000_000, 6));
    }
    let secs = ns / 1_000_000_000;
    let (hours, minutes) = (secs / 3600, (secs / 60) % 60);
    let mut out = String::new();
    if hours > 0 {
        out.push_str(&format!("{hours}h"));
    }
    if hours > 0 || minutes > 0 {
        out.push_str(&format!("{minutes}m"));
    }
    out.push_str(&format!(
        "{}s",
        fraction(ns % 60_000_000_000, 1_000_000_000, 9)
    ));
    out
}

/// Go's `%q` of a string (strconv.Quote).
pub(crate) fn go_quote(text: &str) -> String {
    let mut out = String::from("\"");
    for ch in text.chars() {
        go_escape(&mut out, ch, '"');
    }
    out.push('"');
    out
}

fn go_escape(out: &mut String, ch: char, quote: char) {
    match ch {
        '\x07' => out.push_str("\\a"),
        '\x08' => out.push_str("\\b"),
        '\x0c' => out.push_str("\\f"),
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        '\x0b' => out.push_str("\\v"),
        '\\' => out.push_str("\\\\"),
        c if c == quote => {
            out.push('\\');
            out.push(c);
        }
        c if (c as u32) < 0x20 || c == '\x7f' => out.push_str(&format!("\\x{:02x}", c as u32)),
        c if c.is_control() && (c as u32) < 0x10000 => {
            out.push_str(&format!("\\u{:04x}", c as u32))
        }
        c if c.is_control() => out.push_str(&format!("\\U{:08x}", c as u32)),
        c => out.push(c),
    }
}

/// Go's `%q` of a `[]string`: `["a" "b"]`.
pub(crate) fn go_quote_list(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| go_quote(s)).collect();
    format!("[{}]", quoted.join(" "))
}

/// Go's `%q` of an int: a character literal (`'\x03'` for 3).
pub(crate) fn go_quote_rune(value: u32) -> String {
    let ch = char::from_u32(value).unwrap_or('\u{fffd}');
    let mut out = String::from("'");
    go_escape(&mut out, ch, '\'');
    out.push('\'');
    out
}
