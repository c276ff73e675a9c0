use std::time::Duration;

use super::expand::{go_duration, go_quote, go_quote_rune, parse_go_duration};
use super::*;

fn parse(text: &str) -> Dockerfile {
    match Dockerfile::parse(text) {
        Ok(df) => df,
        Err(e) => panic!("parse failed: {e}\n{text}"),
    }
}

fn error(text: &str) -> Error {
    match Dockerfile::parse(text) {
        Ok(df) => panic!("parsed, expected an error: {df:#?}"),
        Err(e) => e,
    }
}

/// The only instruction of the only stage.
fn only(text: &str) -> Instruction {
    let df = parse(text);
    assert_eq!(df.stages.len(), 1);
    assert_eq!(
        df.stages[0].instructions.len(),
        1,
        "{:#?}",
        df.stages[0].instructions
    );
    df.stages[0].instructions[0].instruction.clone()
}

fn lit(word: &Word) -> String {
    word.expand(|_| None).unwrap()
}

fn lits(words: &[Word]) -> Vec<String> {
    words.iter().map(lit).collect()
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn vars<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
    move |name| {
        pairs
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.to_string())
    }
}

// --- words and substitution ---

/// buildkit's shell/envVarTest (moby/moby builder/dockerfile/shell/envVarTest), the lines for all
/// platforms and for Unix, with its environment.
const ENV_VAR_TEST: &str = r#"
A|hello                    |     hello
A|he'll'o                  |     hello
A|he'llo                   |     error
A|he\'llo                  |     he'llo
A|he\\'llo                 |     error
A|abc\tdef                 |     abctdef
A|"abc\tdef"               |     abc\tdef
A|"abc\\tdef"              |     abc\tdef
A|'abc\tdef'               |     abc\tdef
A|hello\                   |     hello
A|hello\\                  |     hello\
A|"hello                   |     error
A|"hello\"                 |     error
A|"hel'lo"                 |     hel'lo
A|'hello                   |     error
A|'hello\'                 |     hello\
A|'hello\there'            |     hello\there
A|'hello\\there'           |     hello\\there
A|"''"                     |     ''
A|$.                       |     $.
A|$1                       |
A|he$1x                    |     hex
A|he$.x                    |     he$.x
U|he$pwd.                  |     he.
A|he$PWD                   |     he/home
A|he\$PWD                  |     he$PWD
A|he\\$PWD                 |     he\/home
A|"he\$PWD"                |     he$PWD
A|"he\\$PWD"               |     he\/home
A|\${}                     |     ${}
A|\${}aaa                  |     ${}aaa
A|he\${}                   |     he${}
A|he\${}xx                 |     he${}xx
A|${}                      |     error
A|${}aaa                   |     error
A|he${}                    |     error
A|he${}xx                  |     error
A|he${hi}                  |     he
A|he${hi}xx                |     hexx
A|he${PWD}                 |     he/home
A|he${.}                   |     error
A|he${XXX:-000}xx          |     he000xx
A|he${PWD:-000}xx          |     he/homexx
A|he${XXX:-$PWD}xx         |     he/homexx
A|he${XXX:-${PWD:-yyy}}xx  |     he/homexx
A|he${XXX:-${YYY:-yyy}}xx  |     heyyyxx
A|he${XXX:YYY}             |     error
A|he${XXX:+${PWD}}xx       |     hexx
A|he${PWD:+${XXX}}xx       |     hexx
A|he${PWD:+${SHELL}}xx     |     hebashxx
A|he${XXX:+000}xx          |     hexx
A|he${PWD:+000}xx          |     he000xx
A|'he${XX}'                |     he${XX}
A|"he${PWD}"               |     he/home
A|"he'$PWD'"               |     he'/home'
A|"$PWD"                   |     /home
A|'$PWD'                   |     $PWD
A|'\$PWD'                  |     \$PWD
A|'"hello"'                |     "hello"
A|he\$PWD                  |     he$PWD
A|"he\$PWD"                |     he$PWD
A|'he\$PWD'                |     he\$PWD
A|he${PWD                  |     error
A|he${PWD:=000}xx          |     error
A|he${PWD:+${PWD}:}xx      |     he/home:xx
A|he${XXX:-\$PWD:}xx       |     he$PWD:xx
A|he${XXX:-\${PWD}z}xx     |     he${PWDz}xx
A|안녕하세요                 |     안녕하세요
A|안'녕'하세요               |     안녕하세요
A|안'녕하세요                |     error
A|안녕\'하세요               |     안녕'하세요
A|안\\'녕하세요              |     error
A|안녕\t하세요               |     안녕t하세요
A|"안녕\t하세요"             |     안녕\t하세요
A|'안녕\t하세요              |     error
A|안녕하세요\                |     안녕하세요
A|안녕하세요\\               |     안녕하세요\
A|"안녕하세요                |     error
A|"안녕하세요\"              |     error
A|"안녕'하세요"              |     안녕'하세요
A|'안녕하세요                |     error
A|'안녕하세요\'              |     안녕하세요\
A|안녕$1x                    |     안녕x
A|안녕$.x                    |     안녕$.x
U|안녕$pwd.                  |     안녕.
A|안녕$PWD                   |     안녕/home
A|안녕\$PWD                  |     안녕$PWD
A|안녕\\$PWD                 |     안녕\/home
A|안녕\${}                   |     안녕${}
A|안녕\${}xx                 |     안녕${}xx
A|안녕${}                    |     error
A|안녕${}xx                  |     error
A|안녕${hi}                  |     안녕
A|안녕${hi}xx                |     안녕xx
A|안녕${PWD}                 |     안녕/home
A|안녕${.}                   |     error
A|안녕${XXX:-000}xx          |     안녕000xx
A|안녕${PWD:-000}xx          |     안녕/homexx
A|안녕${XXX:-$PWD}xx         |     안녕/homexx
A|안녕${XXX:-${PWD:-yyy}}xx  |     안녕/homexx
A|안녕${XXX:-${YYY:-yyy}}xx  |     안녕yyyxx
A|안녕${XXX:YYY}             |     error
A|안녕${XXX:+${PWD}}xx       |     안녕xx
A|안녕${PWD:+${XXX}}xx       |     안녕xx
A|안녕${PWD:+${SHELL}}xx     |     안녕bashxx
A|안녕${XXX:+000}xx          |     안녕xx
A|안녕${PWD:+000}xx          |     안녕000xx
A|'안녕${XX}'                |     안녕${XX}
A|"안녕${PWD}"               |     안녕/home
A|"안녕'$PWD'"               |     안녕'/home'
A|'"안녕"'                   |     "안녕"
A|안녕\$PWD                  |     안녕$PWD
A|"안녕\$PWD"                |     안녕$PWD
A|'안녕\$PWD'                |     안녕\$PWD
A|안녕${PWD                  |     error
A|안녕${PWD:=000}xx          |     error
A|안녕${PWD:+${PWD}:}xx      |     안녕/home:xx
A|안녕${XXX:-\$PWD:}xx       |     안녕$PWD:xx
A|안녕${XXX:-\${PWD}z}xx     |     안녕${PWDz}xx
A|$KOREAN                    |     한국어
A|안녕$KOREAN                |     안녕한국어
A|${{aaa}                   |     error
A|${aaa}}                   |     }
A|${aaa                     |     error
A|${{aaa:-bbb}              |     error
A|${aaa:-bbb}}              |     bbb}
A|${aaa:-bbb                |     error
A|${aaa:-bbb}               |     bbb
A|${aaa:-${bbb:-ccc}}       |     ccc
A|${aaa:-bbb ${foo}         |     error
A|${aaa:-bbb {foo}          |     bbb {foo
A|${:}                      |     error
A|${:-bbb}                  |     error
A|${:+bbb}                  |     error
"#;

#[test]
fn buildkit_env_var_table() {
    let env = [("PWD", "/home"), ("SHELL", "bash"), ("KOREAN", "한국어")];
    let mut cases = 0;
    for line in ENV_VAR_TEST.lines().filter(|l| !l.trim().is_empty()) {
        let parts: Vec<&str> = line.split('|').collect();
        assert_eq!(parts.len(), 3, "{line}");
        let (source, expected) = (parts[1].trim(), parts[2].trim());
        let result = expand(source, '\\', vars(&env));
        if expected == "error" {
            assert!(
                result.is_err(),
                "{source:?} gave {result:?}, expected an error"
            );
        } else {
            assert_eq!(result.as_deref(), Ok(expected), "{source:?}");
        }
        cases += 1;
    }
    assert!(cases > 120, "{cases}");
}

#[test]
fn fields_split_unquoted_expansions() {
    let env = [
        ("hi", "hi"),
        ("space", "abc  def"),
        ("leading", "  ab c"),
        ("trailing", "ab c   "),
    ];
    let cases: &[(&str, &[&str])] = &[
        ("hello", &["hello"]),
        ("hello${hi}bye", &["hellohibye"]),
        ("hello${space}bye", &["helloabc", "defbye"]),
        ("hello\"${space}\"bye", &["helloabc  defbye"]),
        ("hello \"${space}\"bye", &["hello", "abc  defbye"]),
        ("hello${leading}def", &["hello", "ab", "cdef"]),
        ("hello\"${leading}\" def", &["hello  ab c", "def"]),
        ("hello${trailing}", &["helloab", "c"]),
        ("hello${trailing}d", &["helloab", "c", "d"]),
        ("hello\"${trailing}\"d", &["helloab c   d"]),
        ("hello there     ", &["hello", "there"]),
        ("hello\\ there", &["hello there"]),
        ("hello\\\" there", &["hello\"", "there"]),
        ("hello'$there'", &["hello$there"]),
        ("hello'\\there'", &["hello\\there"]),
        ("hello\"\\\\there\"", &["hello\\there"]),
        ("80 443/udp", &["80", "443/udp"]),
        ("''", &[]),
    ];
    for (source, expected) in cases {
        assert_eq!(
            expand_fields(source, '\\', vars(&env)).unwrap(),
            strings(expected),
            "{source:?}"
        );
    }
    assert!(expand_fields("hello\" there", '\\', vars(&env)).is_err());
}

#[test]
fn modifiers_beyond_default_and_alternative() {
    let env = [
        ("P", "/usr/local/bin"),
        ("X", "aaa"),
        ("E", ""),
        ("F", "file.tar.gz"),
    ];
    let cases = [
        ("${X-d}", "aaa"),
        ("${E-d}", ""),
        ("${E:-d}", "d"),
        ("${U-d}", "d"),
        ("${X+alt}", "alt"),
        ("${E+alt}", "alt"),
        ("${E:+alt}", ""),
        ("${U+alt}", ""),
        ("${P#*/}", "usr/local/bin"),
        ("${P##*/}", "bin"),
        ("${P%/*}", "/usr/local"),
        ("${P%%/*}", ""),
        ("${F%.*}", "file.tar"),
        ("${F%%.*}", "file"),
        ("${F#*.}", "tar.gz"),
        ("${F##*.}", "gz"),
        ("${F#nomatch}", "file.tar.gz"),
        ("${P/local/opt}", "/usr/opt/bin"),
        ("${X/a/b}", "baa"),
        ("${X//a/b}", "bbb"),
        ("${F/.*/}", "file"),
        ("${F/./-}", "file-tar.gz"),
        ("${F//./-}", "file-tar-gz"),
        ("${F//[.]/-}", "file.tar.gz"),
        ("${P/\\/usr/}", "/local/bin"),
        ("${X?}", "aaa"),
        ("${E?}", ""),
        ("$$", ""),
    ];
    for (source, expected) in cases {
        assert_eq!(
            expand(source, '\\', vars(&env)).as_deref(),
            Ok(expected),
            "{source:?}"
        );
    }
    assert_eq!(
        expand("${U?}", '\\', vars(&env)).unwrap_err().to_string(),
        "U: is not allowed to be unset"
    );
    assert_eq!(
        expand("${E:?must be set}", '\\', vars(&env))
            .unwrap_err()
            .to_string(),
        "E: must be set"
    );
    assert_eq!(
        expand("${X/a", '\\', vars(&env)).unwrap_err(),
        ExpandError::MissingSlash
    );
    assert_eq!(
        expand("${X", '\\', vars(&env)).unwrap_err(),
        ExpandError::MissingBrace
    );
    assert_eq!(
        expand("${F/\\./-}", '\\', vars(&env))
            .unwrap_err()
            .to_string(),
        "invalid pattern (\\.) in substitution: invalid escape '\\.'"
    );
    assert_eq!(
        expand("${}", '\\', vars(&env)).unwrap_err(),
        ExpandError::BadSubstitution
    );
    assert_eq!(
        expand("${X:=y}", '\\', vars(&env)).unwrap_err().to_string(),
        "unsupported modifier (:=) in substitution"
    );
}

#[test]
fn backtick_escape_leaves_backslashes_alone() {
    let env = [("A", "x")];
    assert_eq!(expand("`$A", '`', vars(&env)).unwrap(), "$A");
    assert_eq!(
        expand("C:\\dir\\$A", '`', vars(&env)).unwrap(),
        "C:\\dir\\x"
    );
    assert_eq!(expand("\"a`\"b\"", '`', vars(&env)).unwrap(), "a\"b");
}

#[test]
fn words_know_whether_they_are_literal() {
    assert!(Word::parse("/app/'x'", '\\').unwrap().is_literal());
    assert!(!Word::parse("/app/\"$X\"", '\\').unwrap().is_literal());
    assert_eq!(Word::parse("a\\ b", '\\').unwrap().to_string(), "a\\ b");
}

// --- lines: directives, comments, continuations ---

#[test]
fn directives_at_the_top() {
    let df = parse("# syntax=docker/dockerfile:1\n# check=skip=all\n#escape=`\nFROM alpine\nRUN echo a `\n  b\n");
    assert_eq!(df.directives.syntax.as_deref(), Some("docker/dockerfile:1"));
    assert_eq!(df.directives.check.as_deref(), Some("skip=all"));
    assert_eq!(df.directives.escape, '`');
    assert_eq!(
        df.stages[0].instructions[0].instruction,
        Instruction::Run(Run {
            command: Command::Shell("echo a   b".into()),
            heredocs: vec![]
        })
    );
}

#[test]
fn directives_end_at_the_first_other_line() {
    // After a comment, or a blank line, `# escape=` is a comment.
    let df = parse("# a comment\n# escape=`\nFROM alpine\nRUN echo \\\n  b\n");
    assert_eq!(df.directives.escape, '\\');
    let df = parse("\n# escape=`\nFROM alpine\n");
    assert_eq!(df.directives.escape, '\\');
    // Key is case-insensitive, spaces allowed around `=`.
    let df = parse("#  ESCAPE = `\nFROM alpine\n");
    assert_eq!(df.directives.escape, '`');
}

#[test]
fn backslash_continuation_joins_lines_as_written() {
    let df = parse("FROM alpine\nRUN apt-get update && \\\n    apt-get install -y curl \\  \n\t&& rm -rf /var/lib/apt\nCMD x\n");
    let stage = &df.stages[0];
    assert_eq!(stage.instructions.len(), 2);
    let run = &stage.instructions[0];
    assert_eq!((run.line, run.end_line), (2, 4));
    assert_eq!(
        run.original,
        "RUN apt-get update &&     apt-get install -y curl \t&& rm -rf /var/lib/apt"
    );
    assert_eq!(stage.instructions[1].line, 5);
}

#[test]
fn comments_inside_a_continued_instruction_are_skipped() {
    let df =
        parse("FROM alpine\nRUN apk add \\\n# the compiler\n    gcc \\\n  # and make\n    make\n");
    let run = &df.stages[0].instructions[0];
    assert_eq!(run.instruction, only_run("apk add     gcc     make"));
    assert_eq!(run.end_line, 6);
}

fn only_run(command: &str) -> Instruction {
    Instruction::Run(Run {
        command: Command::Shell(command.into()),
        heredocs: vec![],
    })
}

#[test]
fn escaped_escape_does_not_continue() {
    let df = parse("FROM alpine\nRUN echo \\\\\nRUN echo next\n");
    assert_eq!(df.stages[0].instructions.len(), 2);
    assert_eq!(
        df.stages[0].instructions[0].instruction,
        only_run("echo \\\\")
    );
}

#[test]
fn empty_continuation_lines_are_accepted_with_a_warning() {
    let df = parse("FROM alpine\nRUN a \\\n\n  b\n");
    assert_eq!(df.stages[0].instructions[0].instruction, only_run("a   b"));
    assert_eq!(df.warnings.len(), 1);
    assert_eq!(df.warnings[0].line, 2);
}

#[test]
fn continuation_at_end_of_file() {
    let df = parse("FROM alpine\nRUN a \\");
    assert_eq!(df.stages[0].instructions[0].instruction, only_run("a"));
}

#[test]
fn keywords_are_case_insensitive_and_lines_may_be_crlf_with_bom() {
    let df = parse("\u{feff}from alpine AS Build\r\n\r\n  rUn echo hi\r\nworkdir /app\r\n");
    assert_eq!(df.stages[0].name.as_deref(), Some("build"));
    assert_eq!(
        df.stages[0].instructions[0].instruction,
        only_run("echo hi")
    );
    assert_eq!(df.stages[0].instructions[1].line, 4);
}

#[test]
fn comments_and_blank_lines() {
    let df =
        parse("# comment\n\nFROM alpine\n   # indented comment\nRUN echo hi # not a comment\n");
    assert_eq!(
        df.stages[0].instructions[0].instruction,
        only_run("echo hi # not a comment")
    );
}

// --- exec and shell forms ---

#[test]
fn json_or_shell_form() {
    assert_eq!(
        only("FROM a\nCMD [\"nginx\", \"-g\", \"daemon off;\"]"),
        Instruction::Cmd(Command::Exec(strings(&["nginx", "-g", "daemon off;"])))
    );
    assert_eq!(
        only("FROM a\nENTRYPOINT [ \"/entry.sh\" ]  "),
        Instruction::Entrypoint(Command::Exec(strings(&["/entry.sh"])))
    );
    // Not valid JSON: shell form, as docker does.
    assert_eq!(
        only("FROM a\nRUN [\"echo\" \"hi\"]"),
        only_run("[\"echo\" \"hi\"]")
    );
    assert_eq!(
        only("FROM a\nCMD ['single', 'quotes']"),
        Instruction::Cmd(Command::Shell("['single', 'quotes']".into()))
    );
    assert_eq!(
        only("FROM a\nRUN [\"sh\", \"-c\", \"echo \\\"$HOME\\\"\"]"),
        Instruction::Run(Run {
            command: Command::Exec(strings(&["sh", "-c", "echo \"$HOME\""])),
            heredocs: vec![]
        })
    );
    assert_eq!(
        only("FROM a\nCMD"),
        Instruction::Cmd(Command::Shell(String::new()))
    );
    assert_eq!(
        only("FROM a\nCMD []"),
        Instruction::Cmd(Command::Exec(vec![]))
    );
}

#[test]
fn shell_instruction() {
    assert_eq!(
        only("FROM a\nSHELL [\"/bin/bash\", \"-o\", \"pipefail\", \"-c\"]"),
        Instruction::Shell(strings(&["/bin/bash", "-o", "pipefail", "-c"]))
    );
}

// --- heredocs ---

#[test]
fn run_heredoc() {
    let df = parse("FROM alpine\nRUN <<EOF\napk add curl\necho done\nEOF\nRUN echo after\n");
    let run = &df.stages[0].instructions[0];
    assert_eq!((run.line, run.end_line), (2, 5));
    let Instruction::Run(r) = &run.instruction else {
        panic!()
    };
    assert_eq!(r.command, Command::Shell("<<EOF".into()));
    assert_eq!(
        r.heredocs,
        vec![Heredoc {
            name: "EOF".into(),
            content: "apk add curl\necho done\n".into(),
            expand: true,
            chomp: false,
            fd: 0
        }]
    );
    assert_eq!(df.stages[0].instructions[1].line, 6);
    assert_eq!(run.full_text(), "RUN <<EOF\napk add curl\necho done\nEOF");
    let shell = strings(&["/bin/sh", "-c"]);
    assert_eq!(
        r.program(&shell),
        RunProgram {
            argv: strings(&["/bin/sh", "-c", "apk add curl\necho done\n"]),
            script: None
        }
    );
}

#[test]
fn heredoc_with_dash_strips_tabs() {
    let df = parse("FROM alpine\nRUN <<-EOT\n\techo a\n\t\techo b\n\tEOT\n");
    let Instruction::Run(r) = &df.stages[0].instructions[0].instruction else {
        panic!()
    };
    let heredoc = &r.heredocs[0];
    assert!(heredoc.chomp);
    assert_eq!(heredoc.content, "\techo a\n\t\techo b\n");
    assert_eq!(heredoc.body(), "echo a\necho b\n");
}

#[test]
fn quoted_heredoc_delimiters_do_not_expand() {
    for (line, name) in [
        ("<<\"EOF\"", "EOF"),
        ("<<'EOF'", "EOF"),
        ("<<E\"O\"F", "EOF"),
    ] {
        let df = parse(&format!("FROM a\nCOPY {line} /x\n$HOME\n{name}\n"));
        let Instruction::Copy(copy) = &df.stages[0].instructions[0].instruction else {
            panic!()
        };
        assert_eq!(copy.files.heredocs[0].name, name);
        assert!(!copy.files.heredocs[0].expand, "{line}");
    }
}

#[test]
fn several_heredocs_on_one_instruction() {
    let df = parse("FROM a\nRUN <<FILE1 cat > file1 && <<FILE2 cat > file2\nI am\nfirst\nFILE1\nI am\nsecond\nFILE2\nRUN true\n");
    let run = &df.stages[0].instructions[0];
    let Instruction::Run(r) = &run.instruction else {
        panic!()
    };
    assert_eq!(r.heredocs.len(), 2);
    assert_eq!(r.heredocs[0].content, "I am\nfirst\n");
    assert_eq!(r.heredocs[1].content, "I am\nsecond\n");
    assert_eq!(run.end_line, 8);
    // Not only a heredoc: the shell reads the bodies after the command.
    assert_eq!(
        r.program(&strings(&["/bin/sh", "-c"])).argv[2],
        "<<FILE1 cat > file1 && <<FILE2 cat > file2\nI am\nfirst\nFILE1\nI am\nsecond\nFILE2"
    );
}

#[test]
fn heredoc_as_stdin_of_a_command() {
    let df = parse("FROM python\nRUN python3 <<EOF\nprint('hi')\nEOF\n");
    let Instruction::Run(r) = &df.stages[0].instructions[0].instruction else {
        panic!()
    };
    assert_eq!(r.command, Command::Shell("python3 <<EOF".into()));
    assert_eq!(
        r.program(&strings(&["/bin/sh", "-c"])).argv,
        strings(&["/bin/sh", "-c", "python3 <<EOF\nprint('hi')\nEOF"])
    );
}

#[test]
fn heredoc_with_shebang_runs_as_a_file() {
    let df = parse("FROM python\nRUN <<EOF\n#!/usr/bin/env python3\nprint('hi')\nEOF\n");
    let Instruction::Run(r) = &df.stages[0].instructions[0].instruction else {
        panic!()
    };
    let program = r.program(&strings(&["/bin/sh", "-c"]));
    assert_eq!(program.argv, strings(&["/bin/sh", "-c", "/dev/pipes/EOF"]));
    assert_eq!(
        program.script,
        Some((
            "/dev/pipes/EOF".to_string(),
            "#!/usr/bin/env python3\nprint('hi')\n".to_string()
        ))
    );
}

#[test]
fn copy_heredoc_is_a_file() {
    let df = parse("FROM a\nCOPY --chmod=0755 <<EOF <<EOT2 /usr/local/bin/\n#!/bin/sh\necho $HOME\nEOF\nsecond\nEOT2\n");
    let Instruction::Copy(copy) = &df.stages[0].instructions[0].instruction else {
        panic!()
    };
    assert!(copy.files.sources.is_empty());
    assert_eq!(lit(&copy.files.dest), "/usr/local/bin/");
    let names: Vec<&str> = copy
        .files
        .heredocs
        .iter()
        .map(|h| h.name.as_str())
        .collect();
    assert_eq!(names, ["EOF", "EOT2"]);
    assert_eq!(copy.files.heredocs[0].content, "#!/bin/sh\necho $HOME\n");
}

#[test]
fn heredoc_file_descriptor_and_json_form() {
    let df = parse("FROM a\nRUN cat 3<<EOF\nx\nEOF\n");
    let Instruction::Run(r) = &df.stages[0].instructions[0].instruction else {
        panic!()
    };
    assert_eq!(r.heredocs[0].fd, 3);
    // Exec form has no heredocs: the next lines are instructions.
    let df = parse("FROM a\nRUN [\"cat\", \"<<EOF\"]\nRUN true\n");
    assert_eq!(df.stages[0].instructions.len(), 2);
    // `<<<` is a here-string, not a heredoc.
    let df = parse("FROM a\nRUN cat <<<word\nRUN true\n");
    assert_eq!(df.stages[0].instructions.len(), 2);
}

#[test]
fn onbuild_heredoc() {
    let df = parse("FROM a\nONBUILD RUN <<EOF\necho hi\nEOF\n");
    let Instruction::Onbuild(onbuild) = &df.stages[0].instructions[0].instruction else {
        panic!()
    };
    assert_eq!(onbuild.expression, "RUN <<EOF\necho hi\nEOF");
    assert_eq!(onbuild.trigger.heredocs()[0].content, "echo hi\n");
}

// --- every instruction and its flags ---

#[test]
fn from_forms() {
    let df = parse(
        "FROM --platform=$BUILDPLATFORM golang:1.22 AS Build\nFROM scratch\nFROM build as final\n",
    );
    let s = &df.stages;
    assert_eq!(s.len(), 3);
    assert_eq!(s[0].name.as_deref(), Some("build"));
    assert_eq!(s[0].base.as_str(), "golang:1.22");
    assert_eq!(
        s[0].platform.as_ref().map(Word::as_str),
        Some("$BUILDPLATFORM")
    );
    assert_eq!(
        s[0].original,
        "FROM --platform=$BUILDPLATFORM golang:1.22 AS Build"
    );
    assert_eq!(
        (s[1].base.as_str(), s[1].name.as_deref(), s[1].index),
        ("scratch", None, 1)
    );
    assert_eq!((s[2].name.as_deref(), s[2].line), (Some("final"), 3));
}

#[test]
fn arg_forms() {
    let df = parse("ARG BASE=alpine:3.20\nARG A B=\"two words\" C=\nFROM $BASE\nARG V=${A:-x}\n");
    let globals: Vec<(usize, &str, Option<String>)> = df
        .global_args
        .iter()
        .map(|(line, d)| (*line, d.name.as_str(), d.value.as_ref().map(lit)))
        .collect();
    assert_eq!(
        globals,
        [
            (1, "BASE", Some("alpine:3.20".to_string())),
            (2, "A", None),
            (2, "B", Some("two words".to_string())),
            (2, "C", Some(String::new())),
        ]
    );
    let Instruction::Arg(decls) = &df.stages[0].instructions[0].instruction else {
        panic!()
    };
    assert_eq!(decls[0].value.as_ref().map(Word::as_str), Some("${A:-x}"));
}

#[test]
fn env_forms() {
    let Instruction::Env(pairs) = only("FROM a\nENV A=1 B=\"two words\" C='$lit' D=a\\ b E=")
    else {
        panic!()
    };
    let got: Vec<(String, String)> = pairs.iter().map(|p| (lit(&p.key), lit(&p.value))).collect();
    let want = [
        ("A", "1"),
        ("B", "two words"),
        ("C", "$lit"),
        ("D", "a b"),
        ("E", ""),
    ];
    assert_eq!(got, want.map(|(k, v)| (k.to_string(), v.to_string())));
    // Legacy `ENV key value`: the rest of the line is the value.
    let Instruction::Env(pairs) = only("FROM a\nENV PATH_EXTRA  /opt/x /opt/y") else {
        panic!()
    };
    assert_eq!(
        (lit(&pairs[0].key), lit(&pairs[0].value)),
        ("PATH_EXTRA".into(), "/opt/x /opt/y".into())
    );
}

#[test]
fn label_forms() {
    let Instruction::Label(pairs) =
        only("FROM a\nLABEL \"com.example.vendor\"=\"ACME Incorporated\" version=1.0 multi.label1=\"a \\\n b\"")
    else {
        panic!()
    };
    let got: Vec<(String, String)> = pairs.iter().map(|p| (lit(&p.key), lit(&p.value))).collect();
    assert_eq!(
        got[0],
        ("com.example.vendor".into(), "ACME Incorporated".into())
    );
    assert_eq!(got[1], ("version".into(), "1.0".into()));
    assert_eq!(got[2], ("multi.label1".into(), "a  b".into()));
}

#[test]
fn run_flags_are_refused_by_name() {
    for flag in [
        "mount=type=cache,target=/root/.cache",
        "network=none",
        "security=insecure",
    ] {
        let e = error(&format!("FROM a\n\nRUN --{flag} make\n"));
        let name = flag.split('=').next().unwrap();
        assert_eq!(
            e.to_string(),
            format!("Dockerfile:3: RUN --{name} is not supported by berth build")
        );
        assert_eq!(e.line(), Some(3));
    }
}

#[test]
fn copy_flags() {
    let df = parse(
        "FROM a AS build\nFROM b\nCOPY --from=build --chown=app:app --chmod=0644 --link --parents a b/ /dst/\n\
         COPY --from=0 --chmod=u+x,go-w --link=false x /y\nCOPY --from=nginx:latest /etc/nginx /etc/nginx\n\
         COPY [\"file with space\", \"$DEST\"]\n",
    );
    let ins = &df.stages[1].instructions;
    let Instruction::Copy(c) = &ins[0].instruction else {
        panic!()
    };
    assert_eq!(c.from, Some(CopyFrom::Stage(0)));
    assert_eq!(c.chown.as_ref().map(lit).as_deref(), Some("app:app"));
    assert_eq!(c.chmod.as_ref().map(lit).as_deref(), Some("0644"));
    assert!(c.link && c.parents);
    assert_eq!(lits(&c.files.sources), ["a", "b/"]);
    assert_eq!(lit(&c.files.dest), "/dst/");
    let Instruction::Copy(c) = &ins[1].instruction else {
        panic!()
    };
    assert_eq!(c.from, Some(CopyFrom::Stage(0)));
    assert_eq!(c.chmod.as_ref().map(Word::as_str), Some("u+x,go-w"));
    assert!(!c.link && !c.parents);
    let Instruction::Copy(c) = &ins[2].instruction else {
        panic!()
    };
    assert_eq!(c.from, Some(CopyFrom::Image("nginx:latest".into())));
    let Instruction::Copy(c) = &ins[3].instruction else {
        panic!()
    };
    assert_eq!(lits(&c.files.sources), ["file with space"]);
    assert_eq!(c.files.dest.as_str(), "$DEST");
}

#[test]
fn add_flags() {
    let Instruction::Add(add) = only(
        "FROM a\nADD --checksum=sha256:24454f830cdb571e2c4ad15481119c43b3cafd48dd869a9b2945d1036d1dc68d \
         --chown=1:1 --chmod=755 --link --unpack=false https://example.com/x.tar.gz /x/",
    ) else {
        panic!()
    };
    assert_eq!(
        add.checksum.as_ref().map(Word::as_str),
        Some("sha256:24454f830cdb571e2c4ad15481119c43b3cafd48dd869a9b2945d1036d1dc68d")
    );
    assert_eq!(lits(&add.files.sources), ["https://example.com/x.tar.gz"]);
    assert_eq!(add.unpack, Some(false));
    assert!(add.link && !add.keep_git_dir);
    let Instruction::Add(add) =
        only("FROM a\nADD --keep-git-dir=true git@github.com:moby/buildkit.git#v0.10.1 /src")
    else {
        panic!()
    };
    assert!(add.keep_git_dir);
    assert_eq!(add.unpack, None);
}

#[test]
fn single_argument_instructions() {
    assert_eq!(
        lit(match &only("FROM a\nWORKDIR /my app") {
            Instruction::Workdir(w) => w,
            _ => panic!(),
        }),
        "/my app"
    );
    assert_eq!(
        lit(match &only("FROM a\nUSER app:app") {
            Instruction::User(w) => w,
            _ => panic!(),
        }),
        "app:app"
    );
    assert_eq!(
        lit(match &only("FROM a\nSTOPSIGNAL SIGQUIT") {
            Instruction::StopSignal(w) => w,
            _ => panic!(),
        }),
        "SIGQUIT"
    );
    assert_eq!(
        only("FROM a\nMAINTAINER Jane <j@x.org>"),
        Instruction::Maintainer("Jane <j@x.org>".into())
    );
    for signal in ["9", "TERM", "sigrtmin+3", "SIGRTMAX-1", "$SIG"] {
        parse(&format!("FROM a\nSTOPSIGNAL {signal}"));
    }
}

#[test]
fn expose_and_volume() {
    let Instruction::Expose(ports) = only("FROM a\nEXPOSE 80 443/tcp 53/UDP 8000-8002 $PORT")
    else {
        panic!()
    };
    assert_eq!(
        ports.iter().map(Word::as_str).collect::<Vec<_>>(),
        ["80", "443/tcp", "53/UDP", "8000-8002", "$PORT"]
    );
    let Instruction::Volume(v) = only("FROM a\nVOLUME [\"/data\", \"/var/log\"]") else {
        panic!()
    };
    assert_eq!(lits(&v), ["/data", "/var/log"]);
    let Instruction::Volume(v) = only("FROM a\nVOLUME /data /var/log") else {
        panic!()
    };
    assert_eq!(lits(&v), ["/data", "/var/log"]);
}

#[test]
fn healthcheck_forms() {
    assert_eq!(
        only("FROM a\nHEALTHCHECK NONE"),
        Instruction::Healthcheck(Healthcheck::Disable)
    );
    let Instruction::Healthcheck(Healthcheck::Check(c)) = only(
        "FROM a\nHEALTHCHECK --interval=5m --timeout=3s --start-period=1m30s --start-interval=500ms --retries=3 \\\n  CMD curl -f http://localhost/ || exit 1",
    ) else {
        panic!()
    };
    assert_eq!(
        c.test,
        Command::Shell("curl -f http://localhost/ || exit 1".into())
    );
    assert_eq!(c.interval, Some(Duration::from_secs(300)));
    assert_eq!(c.timeout, Some(Duration::from_secs(3)));
    assert_eq!(c.start_period, Some(Duration::from_secs(90)));
    assert_eq!(c.start_interval, Some(Duration::from_millis(500)));
    assert_eq!(c.retries, Some(3));
    let check = only("FROM a\nhealthcheck cmd [\"/bin/check\", \"-q\"]");
    let Instruction::Healthcheck(check) = check else {
        panic!()
    };
    assert_eq!(check.test(), strings(&["CMD", "/bin/check", "-q"]));
}

#[test]
fn onbuild_forms() {
    let Instruction::Onbuild(o) = only("FROM a\nONBUILD COPY --from=builder . /app") else {
        panic!()
    };
    assert_eq!(o.expression, "COPY --from=builder . /app");
    // In a trigger the name belongs to the Dockerfile that will use this image.
    let Instruction::Copy(c) = o.trigger.as_ref() else {
        panic!()
    };
    assert_eq!(c.from, Some(CopyFrom::Image("builder".into())));
    let Instruction::Onbuild(o) = only("FROM a\nonbuild run make") else {
        panic!()
    };
    assert_eq!(*o.trigger, only_run("make"));
}

#[test]
fn onbuild_triggers_of_a_base_image_parse_against_the_child() {
    let df = parse("FROM golang AS build\nFROM app-base\nRUN true\n");
    let located = df.parse_trigger(1, "COPY --from=build /out /bin").unwrap();
    let Instruction::Copy(c) = &located.instruction else {
        panic!()
    };
    assert_eq!(c.from, Some(CopyFrom::Stage(0)));
    assert_eq!(located.line, 2);
    let located = df.parse_trigger(1, "RUN <<EOF\necho hi\nEOF").unwrap();
    assert_eq!(located.instruction.heredocs()[0].content, "echo hi\n");
    assert!(df.parse_trigger(1, "FROM x").is_err());
}

// --- errors: one line each, with the line ---

#[test]
fn errors_name_their_line() {
    let cases: &[(&str, &str)] = &[
        (
            "FROM alpine\nRUN a\nRUN b\nRUN c\nRUN d\nRUN e\nFORM x\n",
            "Dockerfile:7: unknown instruction: FORM (did you mean FROM?)",
        ),
        ("FROM a\nFOOBARBAZ x\n", "Dockerfile:2: unknown instruction: FOOBARBAZ"),
        (
            "FROM a\nCOPY onlyone\n",
            "Dockerfile:2: COPY requires at least two arguments, but only one was provided. Destination could not be determined",
        ),
        ("FROM a\nRUN <<EOF\necho\n", "Dockerfile:3: unterminated heredoc EOF started on line 2"),
        ("FROM a\nCOPY --form=x a b\n", "Dockerfile:2: unknown flag for COPY: --form"),
        ("RUN echo\nFROM a\n", "Dockerfile:1: RUN before the first FROM: only ARG can come before FROM"),
        (
            "FROM a AS x\nRUN a\nFROM b AS X\n",
            "Dockerfile:3: duplicate stage name \"x\" (first used on line 1)",
        ),
        ("FROM a AS x\nCOPY --from=x / /\n", "Dockerfile:2: COPY --from=x refers to the stage it is in"),
        (
            "FROM a\nCOPY --from=later / /\nFROM b AS later\n",
            "Dockerfile:2: COPY --from=later refers to a later stage (line 3): only earlier stages can be copied from",
        ),
        ("FROM a\nCOPY --from=1 / /\nFROM b\n", "Dockerfile:2: COPY --from=1 refers to a later stage (line 3): only earlier stages can be copied from"),
        ("FROM a\nCOPY --from=0 / /\n", "Dockerfile:2: COPY --from=0 refers to the stage it is in"),
        ("FROM a\nCOPY --from=5 / /\n", "Dockerfile:2: COPY --from=5: invalid stage index (the file has 1 stages)"),
        ("# escape=x\nFROM a\n", "Dockerfile:1: invalid escape token 'x' does not match ` or \\"),
        ("# escape=`\n# escape=\\\nFROM a\n", "Dockerfile:2: only one escape parser directive can be used"),
        ("FROM a\nSHELL /bin/bash -c\n", "Dockerfile:2: SHELL requires the arguments to be in JSON form"),
        (
            "FROM a\nCMD [\"a\", 1]\n",
            "Dockerfile:2: when using JSON array syntax, arrays must be comprised of strings only",
        ),
        ("FROM a\nHEALTHCHECK NONE x\n", "Dockerfile:2: HEALTHCHECK NONE takes no arguments"),
        ("FROM a\nHEALTHCHECK CMD\n", "Dockerfile:2: Missing command after HEALTHCHECK CMD"),
        ("FROM a\nHEALTHCHECK TEST x\n", "Dockerfile:2: Unknown type \"TEST\" in HEALTHCHECK (try CMD)"),
        (
            "FROM a\nHEALTHCHECK --interval=5 CMD x\n",
            "Dockerfile:2: HEALTHCHECK: invalid duration for --interval: \"5\"",
        ),
        ("FROM a\nHEALTHCHECK --retries=-1 CMD x\n", "Dockerfile:2: HEALTHCHECK: --retries cannot be negative (-1)"),
        ("FROM a\nONBUILD ONBUILD RUN x\n", "Dockerfile:2: Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed"),
        ("FROM a\nONBUILD FROM b\n", "Dockerfile:2: FROM isn't allowed as an ONBUILD trigger"),
        ("FROM a\nONBUILD MAINTAINER me\n", "Dockerfile:2: MAINTAINER isn't allowed as an ONBUILD trigger"),
        ("FROM a\nONBUILD FORM b\n", "Dockerfile:2: unknown instruction: FORM (did you mean FROM?)"),
        (
            "FROM a AS 1st\n",
            "Dockerfile:1: invalid name for build stage: \"1st\", name can't start with a number or contain symbols",
        ),
        ("FROM a b\n", "Dockerfile:1: FROM requires either one or three arguments"),
        ("FROM\n", "Dockerfile:1: FROM requires either one or three arguments"),
        ("# only a comment\n\n", "Dockerfile: file with no instructions"),
        ("ARG A=1\n", "Dockerfile: no build stage: the file has no FROM instruction"),
        ("FROM a\nWORKDIR\n", "Dockerfile:2: WORKDIR requires exactly one argument"),
        ("FROM a\nUSER\n", "Dockerfile:2: USER requires exactly one argument"),
        ("FROM a\nEXPOSE\n", "Dockerfile:2: EXPOSE requires at least one argument"),
        ("FROM a\nVOLUME []\n", "Dockerfile:2: VOLUME requires at least one argument"),
        ("FROM a\nVOLUME [\"\"]\n", "Dockerfile:2: VOLUME specified can not be an empty string"),
        ("FROM a\nENV\n", "Dockerfile:2: ENV requires at least one argument"),
        ("FROM a\nENV A\n", "Dockerfile:2: ENV must have two arguments"),
        (
            "FROM a\nENV A=1 B\n",
            "Dockerfile:2: ENV: syntax error - can't find = in \"B\". Must be of the form: name=value",
        ),
        ("FROM a\nLABEL =x\n", "Dockerfile:2: LABEL names can not be blank"),
        ("FROM a\nARG =x\n", "Dockerfile:2: ARG names can not be blank"),
        ("FROM a\nRUN\n", "Dockerfile:2: RUN requires at least one argument"),
        ("FROM a\nCOPY <<EOF <<EOF2\nx\nEOF\ny\nEOF2\n", "Dockerfile:2: COPY cannot accept a heredoc as a destination"),
        (
            "FROM a\nCOPY https://example.com/x /x\n",
            "Dockerfile:2: COPY: source can't be a URL: https://example.com/x (ADD downloads)",
        ),
        (
            "ARG SRC=build\nFROM a\nCOPY --from=$SRC / /\n",
            "Dockerfile:3: COPY: variable expansion is not supported for --from, define a new stage with FROM using ARG from global scope as a workaround",
        ),
        (
            "FROM a\nCOPY --chmod=999 a b\n",
            "Dockerfile:2: COPY: invalid chmod parameter: '999'. it should be octal string and between 0 and 07777, or symbolic (u+x)",
        ),
        ("FROM a\nCOPY --chmod=u+q a b\n", "Dockerfile:2: COPY: invalid chmod parameter: 'u+q'. it should be octal string and between 0 and 07777, or symbolic (u+x)"),
        ("FROM a\nEXPOSE 80/xtp\n", "Dockerfile:2: EXPOSE: invalid proto: xtp"),
        ("FROM a\nEXPOSE http\n", "Dockerfile:2: EXPOSE: invalid port: http"),
        ("FROM a\nSTOPSIGNAL SIGFOO\n", "Dockerfile:2: STOPSIGNAL: invalid signal: SIGFOO"),
        ("FROM a\nCOPY --link --link a b\n", "Dockerfile:2: COPY: duplicate flag specified: --link"),
        ("FROM a\nCOPY --link=yes a b\n", "Dockerfile:2: COPY: expecting a boolean value for flag --link, not: yes"),
        ("FROM a\nCOPY --from a b\n", "Dockerfile:2: COPY: missing a value on flag --from"),
        ("FROM a\nCMD --help\n", "Dockerfile:2: unknown flag for CMD: --help"),
        (
            "FROM a\nADD --checksum=sha256:abc a b /c\n",
            "Dockerfile:2: ADD: checksum can't be specified for multiple sources",
        ),
        (
            "FROM a\nADD --checksum=sha256:abc local.tar /c\n",
            "Dockerfile:2: ADD: checksum can't be specified for non-HTTP(S) sources",
        ),
        ("FROM a\nENV A=${B\n", "Dockerfile:2: ENV: failed to process \"${B\": syntax error: missing '}'"),
        ("FROM a\nWORKDIR \"/app\n", "Dockerfile:2: WORKDIR: failed to process \"\\\"/app\": unexpected end of statement while looking for matching double-quote"),
        ("FROM ${}\n", "Dockerfile:1: FROM: failed to process \"${}\": syntax error: bad substitution"),
        ("FROM a\nCOPY <<EOF /x\n${\nEOF\n", "Dockerfile:2: COPY: failed to process \"<<EOF\": unsupported modifier (\\n) in substitution"),
    ];
    for (text, expected) in cases {
        let e = error(text);
        assert_eq!(e.to_string(), *expected, "{text:?}");
        assert!(!e.to_string().contains('\n'));
    }
    assert!(cases.len() >= 15);
}

#[test]
fn error_lines_are_typed() {
    assert_eq!(
        error("FROM a\n\nFORM b\n"),
        Error::UnknownInstruction {
            line: 3,
            name: "FORM".into(),
            suggestion: Some("FROM")
        }
    );
    assert_eq!(error("FROM a\nRUN <<EOF\n").line(), Some(2));
    assert_eq!(
        error("FROM a\nRUN <<EOF\n"),
        Error::UnterminatedHeredoc {
            line: 2,
            start: 2,
            name: "EOF".into()
        }
    );
    assert!(matches!(
        error("FROM a\nADD --mount=x a b\n"),
        Error::UnknownFlag { line: 2, ref flag, .. } if flag == "mount"
    ));
}

// --- resolve: build args, global ARGs, targets ---

fn options(build_args: &[(&str, &str)], target: Option<&str>) -> ResolveOptions {
    ResolveOptions {
        build_args: build_args
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        target: target.map(String::from),
        builtin_args: BuildArgs::new(),
    }
}

#[test]
fn global_args_are_for_from_lines() {
    let text = "ARG VERSION=3.19\nARG IMAGE=alpine:${VERSION}\nFROM ${IMAGE} AS base\nRUN true\n";
    let df = parse(text);
    let plan = df.resolve(&options(&[], None)).unwrap();
    assert_eq!(plan.stages[0].base, Base::Image("alpine:3.19".into()));
    assert_eq!(
        plan.global_args,
        [
            ("VERSION".to_string(), "3.19".to_string()),
            ("IMAGE".to_string(), "alpine:3.19".to_string())
        ]
    );
    let plan = df.resolve(&options(&[("VERSION", "3.20")], None)).unwrap();
    assert_eq!(plan.stages[0].base, Base::Image("alpine:3.20".into()));
    let plan = df.resolve(&options(&[("IMAGE", "debian")], None)).unwrap();
    assert_eq!(plan.stages[0].base, Base::Image("debian".into()));
}

#[test]
fn platform_and_builtin_args() {
    let df = parse(
        "FROM --platform=$BUILDPLATFORM golang AS build\nARG TARGETARCH\nRUN echo $TARGETARCH\n",
    );
    let mut opts = options(&[], None);
    opts.builtin_args
        .insert("BUILDPLATFORM".into(), "linux/amd64".into());
    opts.builtin_args
        .insert("TARGETARCH".into(), "arm64".into());
    let plan = df.resolve(&opts).unwrap();
    assert_eq!(plan.stages[0].platform.as_deref(), Some("linux/amd64"));
    let mut scope = plan.scope(&BaseConfig::default());
    let arg = scope.step(&plan.stages[0].instructions[0]).unwrap();
    assert_eq!(
        arg,
        Instruction::Arg(vec![ArgDecl {
            name: "TARGETARCH".into(),
            value: Some("arm64".into())
        }])
    );
    assert_eq!(scope.lookup("TARGETARCH"), Some("arm64"));
}

#[test]
fn a_stage_sees_a_global_arg_only_after_declaring_it() {
    let df =
        parse("ARG V=global\nFROM a\nWORKDIR /$V\nARG V\nWORKDIR /$V\nARG V=local\nWORKDIR /$V\n");
    let plan = df.resolve(&options(&[], None)).unwrap();
    let stage = &plan.stages[0];
    let mut scope = plan.scope(&BaseConfig::default());
    let steps: Vec<Instruction<String>> = stage
        .instructions
        .iter()
        .map(|l| scope.step(l).unwrap())
        .collect();
    assert_eq!(steps[0], Instruction::Workdir("/".into()));
    assert_eq!(steps[2], Instruction::Workdir("/global".into()));
    assert_eq!(steps[4], Instruction::Workdir("/local".into()));
    // A build arg wins over a default, in the stage as globally.
    let plan = df.resolve(&options(&[("V", "cli")], None)).unwrap();
    let mut scope = plan.scope(&BaseConfig::default());
    let steps: Vec<Instruction<String>> = plan.stages[0]
        .instructions
        .iter()
        .map(|l| scope.step(l).unwrap())
        .collect();
    assert_eq!(steps[2], Instruction::Workdir("/cli".into()));
    assert_eq!(steps[4], Instruction::Workdir("/cli".into()));
    assert_eq!(scope.workdir(), "/cli");
}

#[test]
fn env_and_arg_in_order() {
    let df = parse(
        "FROM a\nENV abc=hello\nENV abc=bye def=$abc\nENV ghi=$abc\nARG user\nUSER ${user:-some_user}\n\
         ENV PATH=/opt/bin:$PATH\nARG CONT_IMG_VER\nENV CONT_IMG_VER=${CONT_IMG_VER:-v1.0.0}\nLABEL v=$CONT_IMG_VER\n",
    );
    let plan = df.resolve(&options(&[], None)).unwrap();
    let base = BaseConfig {
        env: strings(&["PATH=/usr/bin:/bin"]),
        ..BaseConfig::default()
    };
    let mut scope = plan.scope(&base);
    let steps: Vec<Instruction<String>> = plan.stages[0]
        .instructions
        .iter()
        .map(|l| scope.step(l).unwrap())
        .collect();
    let Instruction::Env(pairs) = &steps[1] else {
        panic!()
    };
    assert_eq!(
        (pairs[1].key.as_str(), pairs[1].value.as_str()),
        ("def", "hello")
    );
    let Instruction::Env(pairs) = &steps[2] else {
        panic!()
    };
    assert_eq!(pairs[0].value, "bye");
    assert_eq!(steps[4], Instruction::User("some_user".into()));
    let Instruction::Env(pairs) = &steps[5] else {
        panic!()
    };
    assert_eq!(pairs[0].value, "/opt/bin:/usr/bin:/bin");
    let Instruction::Label(pairs) = &steps[8] else {
        panic!()
    };
    assert_eq!(pairs[0].value, "v1.0.0");
    assert_eq!(
        scope.image_env(),
        strings(&[
            "PATH=/opt/bin:/usr/bin:/bin",
            "abc=bye",
            "def=hello",
            "ghi=bye",
            "CONT_IMG_VER=v1.0.0"
        ])
    );
    // ARGs are in RUN's environment, not in the image's.
    let plan = df
        .resolve(&options(&[("user", "app"), ("CONT_IMG_VER", "v2")], None))
        .unwrap();
    let mut scope = plan.scope(&base);
    let steps: Vec<Instruction<String>> = plan.stages[0]
        .instructions
        .iter()
        .map(|l| scope.step(l).unwrap())
        .collect();
    assert_eq!(steps[4], Instruction::User("app".into()));
    assert!(scope.run_env().contains(&"user=app".to_string()));
    assert!(!scope.image_env().iter().any(|e| e.starts_with("user=")));
    assert!(scope.image_env().contains(&"CONT_IMG_VER=v2".to_string()));
}

#[test]
fn a_stage_needs_its_bases_and_copy_sources_only() {
    let text = "FROM golang AS deps\nRUN go mod download\n\
                FROM deps AS build\nRUN go build\n\
                FROM alpine AS unused\nRUN true\n\
                FROM node AS web\nRUN npm ci\n\
                FROM scratch AS final\nCOPY --from=build /out /bin\nCOPY --from=3 /dist /www\nCOPY --from=busybox /bin/sh /bin/sh\n";
    let df = parse(text);
    let plan = df.resolve(&options(&[], None)).unwrap();
    let order: Vec<usize> = plan.stages.iter().map(|s| s.index).collect();
    assert_eq!(order, [0, 1, 3, 4]);
    assert_eq!(plan.target, 4);
    assert_eq!(plan.stages[1].base, Base::Stage(0));
    let final_stage = plan.stage(4).unwrap();
    assert_eq!(final_stage.base, Base::Scratch);
    assert_eq!(final_stage.stage_deps, [1, 3]);
    assert_eq!(final_stage.image_deps, ["busybox"]);

    let plan = df.resolve(&options(&[], Some("BUILD"))).unwrap();
    assert_eq!(
        plan.stages.iter().map(|s| s.index).collect::<Vec<_>>(),
        [0, 1]
    );
    let plan = df.resolve(&options(&[], Some("unused"))).unwrap();
    assert_eq!(plan.stages.iter().map(|s| s.index).collect::<Vec<_>>(), [2]);
    assert_eq!(
        df.resolve(&options(&[], Some("nope")))
            .unwrap_err()
            .to_string(),
        "target stage \"nope\" could not be found"
    );
}

#[test]
fn from_a_later_stage_name_is_an_image() {
    let df = parse("FROM later AS first\nFROM alpine AS later\n");
    let plan = df.resolve(&options(&[], Some("first"))).unwrap();
    assert_eq!(plan.stages[0].base, Base::Image("later".into()));
}

#[test]
fn blank_base_is_refused() {
    let df = parse("ARG IMAGE\nFROM $IMAGE\n");
    assert_eq!(
        df.resolve(&options(&[], None)).unwrap_err().to_string(),
        "Dockerfile:2: FROM: base name ($IMAGE) should not be blank"
    );
}

#[test]
fn unused_build_args() {
    let df = parse("ARG A\nFROM x AS one\nARG B\nFROM y\nARG C\n");
    let plan = df
        .resolve(&options(
            &[
                ("A", "1"),
                ("B", "2"),
                ("C", "3"),
                ("D", "4"),
                ("HTTP_PROXY", "p"),
            ],
            None,
        ))
        .unwrap();
    assert_eq!(plan.unused_build_args, ["B", "D"]);
}

// --- step: substitution of each instruction ---

#[test]
fn step_substitutes_what_docker_substitutes() {
    let df = parse(
        "FROM a\nARG V=1.2\nARG DIR=/opt\nENV NAME=app\n\
         COPY --chown=$NAME:$NAME --chmod=${MODE:-0755} src-$V/ ${DIR}/$NAME/\n\
         ADD --checksum=$SUM https://example.com/$NAME-$V.tgz $DIR/\n\
         WORKDIR $DIR\nWORKDIR ../srv/./$NAME\nUSER $NAME\nVOLUME [\"$DIR/data\"]\nSTOPSIGNAL ${SIG:-SIGTERM}\n\
         RUN echo $NAME\nCMD echo $NAME\nEXPOSE ${PORTS}\nLABEL \"$NAME.version\"=$V\n",
    );
    let plan = df
        .resolve(&options(
            &[("SUM", "sha256:00"), ("PORTS", "80 443/udp 80/tcp")],
            None,
        ))
        .unwrap();
    let mut scope = plan.scope(&BaseConfig::default());
    let ins = &plan.stages[0].instructions;
    let steps: Vec<Instruction<String>> = ins.iter().map(|l| scope.step(l).unwrap()).collect();
    let Instruction::Copy(c) = &steps[3] else {
        panic!()
    };
    assert_eq!(c.chown.as_deref(), Some("app:app"));
    assert_eq!(c.chmod.as_deref(), Some("0755"));
    assert_eq!(c.files.sources, ["src-1.2/"]);
    assert_eq!(c.files.dest, "/opt/app/");
    let Instruction::Add(a) = &steps[4] else {
        panic!()
    };
    assert_eq!(a.files.sources, ["https://example.com/app-1.2.tgz"]);
    assert_eq!(a.checksum, None, "SUM is a build arg no ARG declares");
    assert_eq!(steps[5], Instruction::Workdir("/opt".into()));
    assert_eq!(steps[6], Instruction::Workdir("../srv/./app".into()));
    assert_eq!(scope.workdir(), "/srv/app");
    assert_eq!(steps[7], Instruction::User("app".into()));
    assert_eq!(steps[8], Instruction::Volume(strings(&["/opt/data"])));
    assert_eq!(steps[9], Instruction::StopSignal("SIGTERM".into()));
    assert_eq!(
        steps[10],
        Instruction::Run(Run {
            command: Command::Shell("echo $NAME".into()),
            heredocs: vec![]
        }),
        "the shell substitutes RUN"
    );
    assert_eq!(
        steps[11],
        Instruction::Cmd(Command::Shell("echo $NAME".into()))
    );
    assert_eq!(
        steps[12],
        Instruction::Expose(vec![]),
        "PORTS is not declared"
    );
    let Instruction::Label(l) = &steps[13] else {
        panic!()
    };
    assert_eq!(
        (l[0].key.as_str(), l[0].value.as_str()),
        ("app.version", "1.2")
    );
}

#[test]
fn step_expose_splits_and_normalizes_ports() {
    let df = parse("FROM a\nARG PORTS=\"80 443/UDP 8000-8001\"\nEXPOSE $PORTS 80/tcp\n");
    let plan = df.resolve(&options(&[], None)).unwrap();
    let mut scope = plan.scope(&BaseConfig::default());
    scope.step(&plan.stages[0].instructions[0]).unwrap();
    let expose = scope.step(&plan.stages[0].instructions[1]).unwrap();
    assert_eq!(
        expose,
        Instruction::Expose(strings(&["80/tcp", "443/udp", "8000/tcp", "8001/tcp"]))
    );
    assert_eq!(
        scope.created_by(&expose).unwrap(),
        "EXPOSE map[443/udp:{} 80/tcp:{} 8000/tcp:{} 8001/tcp:{}]"
    );
}

#[test]
fn step_rejects_values_known_only_at_build_time() {
    let df = parse("FROM a\nARG P=http\nARG M=9\nARG S=NOPE\nEXPOSE $P\nCOPY --chmod=$M a b\nSTOPSIGNAL $S\nARG R\nENV X=\"${R:?must be given}\"\n");
    let plan = df.resolve(&options(&[], None)).unwrap();
    let mut scope = plan.scope(&BaseConfig::default());
    let ins = &plan.stages[0].instructions;
    for l in &ins[..3] {
        scope.step(l).unwrap();
    }
    assert_eq!(
        scope.step(&ins[3]).unwrap_err().to_string(),
        "Dockerfile:5: EXPOSE: invalid port: http"
    );
    assert!(scope
        .step(&ins[4])
        .unwrap_err()
        .to_string()
        .starts_with("Dockerfile:6: COPY: invalid chmod parameter: '9'"));
    assert_eq!(
        scope.step(&ins[5]).unwrap_err().to_string(),
        "Dockerfile:7: STOPSIGNAL: invalid signal: NOPE"
    );
    scope.step(&ins[6]).unwrap();
    assert_eq!(
        scope.step(&ins[7]).unwrap_err().to_string(),
        "Dockerfile:9: ENV: failed to process \"\\\"${R:?must be given}\\\"\": R: must be given"
    );
}

#[test]
fn copy_heredoc_bodies_substitute_unless_quoted() {
    let df = parse(
        "FROM a\nARG NAME=world\nCOPY <<EOF /hello\nhello \"$NAME\" \\$HOME\nEOF\nCOPY <<'EOF' /raw\nhello $NAME\nEOF\nCOPY <<-EOF /tabs\n\t$NAME\n\tEOF\n",
    );
    let plan = df.resolve(&options(&[], None)).unwrap();
    let mut scope = plan.scope(&BaseConfig::default());
    let steps: Vec<Instruction<String>> = plan.stages[0]
        .instructions
        .iter()
        .map(|l| scope.step(l).unwrap())
        .collect();
    let content = |i: usize| match &steps[i] {
        Instruction::Copy(c) => c.files.heredocs[0].content.clone(),
        _ => panic!(),
    };
    assert_eq!(content(1), "hello \"world\" $HOME\n");
    assert_eq!(content(2), "hello $NAME\n");
    assert_eq!(content(3), "world\n");
    assert_eq!(
        scope.created_by(&steps[1]).unwrap(),
        "COPY <<EOF /hello # buildkit"
    );
}

// --- history lines ---

#[test]
fn created_by_matches_buildkit() {
    let df = parse(
        "FROM a\nARG VERSION=1.0\nARG EMPTY\nENV A=1 B=\"x y\"\nLABEL maintainer=me\nRUN make\nRUN [\"make\", \"install\"]\n\
         CMD [\"nginx\", \"-g\", \"daemon off;\"]\nENTRYPOINT /entry.sh\nSHELL [\"/bin/bash\", \"-c\"]\nCMD run\n\
         COPY --chown=1:1 --chmod=644 a b /dst/\nADD https://x/y.tgz /y\nWORKDIR /app\nUSER nobody\n\
         VOLUME /data /logs\nSTOPSIGNAL SIGQUIT\nHEALTHCHECK --interval=30s --timeout=3s --retries=3 CMD curl -f http://localhost/\n\
         HEALTHCHECK NONE\nMAINTAINER Jane\nONBUILD RUN x\nCOPY --parents --from=busybox /bin/sh /\n",
    );
    let plan = df.resolve(&options(&[("VERSION", "2.0")], None)).unwrap();
    let mut scope = plan.scope(&BaseConfig::default());
    let history: Vec<Option<String>> = plan.stages[0]
        .instructions
        .iter()
        .map(|l| {
            let step = scope.step(l).unwrap();
            scope.created_by(&step)
        })
        .collect();
    let expected = [
        Some("ARG VERSION=2.0"),
        Some("ARG EMPTY"),
        Some("ENV A=1 B=x y"),
        Some("LABEL maintainer=me"),
        Some("RUN |2 VERSION=2.0 EMPTY= /bin/sh -c make # buildkit"),
        Some("RUN |2 VERSION=2.0 EMPTY= make install # buildkit"),
        Some("CMD [\"nginx\" \"-g\" \"daemon off;\"]"),
        Some("ENTRYPOINT [\"/bin/sh\" \"-c\" \"/entry.sh\"]"),
        Some("SHELL [/bin/bash -c]"),
        Some("CMD [\"/bin/bash\" \"-c\" \"run\"]"),
        Some("COPY --chown=1:1 --chmod=644 a b /dst/ # buildkit"),
        Some("ADD https://x/y.tgz /y # buildkit"),
        Some("WORKDIR /app"),
        Some("USER nobody"),
        Some("VOLUME [/data /logs]"),
        Some("STOPSIGNAL SIGQUIT"),
        Some("HEALTHCHECK &{[\"CMD-SHELL\" \"curl -f http://localhost/\"] \"30s\" \"3s\" \"0s\" \"0s\" '\\x03'}"),
        Some("HEALTHCHECK &{[\"NONE\"] \"0s\" \"0s\" \"0s\" \"0s\" '\\x00'}"),
        Some("MAINTAINER Jane"),
        None,
        Some("COPY --parents /bin/sh / # buildkit"),
    ];
    let expected: Vec<Option<String>> = expected.iter().map(|e| e.map(String::from)).collect();
    assert_eq!(history, expected);
}

#[test]
fn run_history_of_a_stage_built_on_a_stage() {
    let df = parse("FROM a AS base\nARG V=1\nENV V=2\nFROM base\nARG W\nRUN <<EOF\necho $V\nEOF\n");
    let plan = df.resolve(&options(&[("W", "w")], None)).unwrap();
    let mut scope = plan.scope(&BaseConfig::default());
    for l in &plan.stages[0].instructions {
        scope.step(l).unwrap();
    }
    assert_eq!(plan.stages[1].base, Base::Stage(0));
    let mut child = scope.clone();
    let steps: Vec<Instruction<String>> = plan.stages[1]
        .instructions
        .iter()
        .map(|l| child.step(l).unwrap())
        .collect();
    // The ENV overrides the ARG's value in the env, which buildkit reports.
    assert_eq!(
        child.created_by(&steps[1]).unwrap(),
        "RUN |2 V=2 W=w /bin/sh -c echo $V\n # buildkit"
    );
}

#[test]
fn go_formats() {
    assert_eq!(go_duration(Duration::ZERO), "0s");
    assert_eq!(go_duration(Duration::from_secs(30)), "30s");
    assert_eq!(go_duration(Duration::from_secs(90)), "1m30s");
    assert_eq!(go_duration(Duration::from_secs(3600)), "1h0m0s");
    assert_eq!(go_duration(Duration::from_millis(1500)), "1.5s");
    assert_eq!(go_duration(Duration::from_millis(250)), "250ms");
    assert_eq!(go_duration(Duration::from_micros(1500)), "1.5ms");
    assert_eq!(go_duration(Duration::from_nanos(10_500)), "10.5\u{b5}s");
    assert_eq!(go_duration(Duration::from_nanos(7)), "7ns");
    assert_eq!(parse_go_duration("1h30m"), Some(Duration::from_secs(5400)));
    assert_eq!(parse_go_duration("1.5s"), Some(Duration::from_millis(1500)));
    assert_eq!(parse_go_duration(".5m"), Some(Duration::from_secs(30)));
    assert_eq!(
        parse_go_duration("10\u{b5}s"),
        Some(Duration::from_micros(10))
    );
    assert_eq!(parse_go_duration("0"), Some(Duration::ZERO));
    assert_eq!(parse_go_duration("5"), None);
    assert_eq!(parse_go_duration("-1s"), None);
    assert_eq!(parse_go_duration("1d"), None);
    assert_eq!(go_quote("a\"b\\c\n\x01é"), "\"a\\\"b\\\\c\\n\\x01é\"");
    assert_eq!(go_quote_rune(3), "'\\x03'");
    assert_eq!(go_quote_rune(10), "'\\n'");
    assert_eq!(go_quote_rune(65), "'A'");
}

#[test]
fn value_checks() {
    for ok in [
        "0755",
        "755",
        "7777",
        "0",
        "u+x",
        "a=rwx,go-w",
        "u+s",
        "g=u",
        "+x",
        "ug+rw-x",
    ] {
        assert!(chmod_is_valid(ok), "{ok}");
    }
    for bad in ["", "8", "17777", "u+q", "x", "u", "u+x,"] {
        assert!(!chmod_is_valid(bad), "{bad}");
    }
    assert_eq!(parse_port("80").unwrap(), ["80/tcp"]);
    assert_eq!(parse_port("53/UDP").unwrap(), ["53/udp"]);
    assert_eq!(parse_port("0.0.0.0:8080:80/sctp").unwrap(), ["80/sctp"]);
    assert_eq!(parse_port("1-3").unwrap(), ["1/tcp", "2/tcp", "3/tcp"]);
    assert!(parse_port("3-1").is_err());
    assert!(parse_port("70000").is_err());
    assert!(signal_is_valid("SIGKILL") && signal_is_valid("kill") && signal_is_valid("15"));
    assert!(!signal_is_valid("0") && !signal_is_valid("SIGRTMIN+16") && !signal_is_valid(""));
}

#[test]
fn backtick_escape_lines() {
    // With ` as the escape, a trailing backslash is text (Windows paths), a trailing ` continues.
    let df = parse("# escape=`\nFROM a\nRUN dir c:\\\nRUN copy a `\n    b\nWORKDIR c:\\app\n");
    let ins = &df.stages[0].instructions;
    assert_eq!(ins[0].instruction, only_run("dir c:\\"));
    assert_eq!(ins[1].instruction, only_run("copy a     b"));
    let Instruction::Workdir(dir) = &ins[2].instruction else {
        panic!()
    };
    assert_eq!(lit(dir), "c:\\app");
}

#[test]
fn flag_values_lose_their_quotes() {
    let Instruction::Copy(c) =
        only("FROM a\nCOPY --chmod=\"0755\" --chown='app' -- --weird-name /dst")
    else {
        panic!()
    };
    assert_eq!(c.chmod.as_ref().map(Word::as_str), Some("0755"));
    assert_eq!(c.chown.as_ref().map(Word::as_str), Some("app"));
    assert_eq!(lits(&c.files.sources), ["--weird-name"]);
}

#[test]
fn one_arg_instruction_sees_its_earlier_names() {
    let df = parse("FROM a\nARG A=1 B=${A}2\nENV C=$B\n");
    let plan = df.resolve(&options(&[], None)).unwrap();
    let mut scope = plan.scope(&BaseConfig::default());
    let steps: Vec<Instruction<String>> = plan.stages[0]
        .instructions
        .iter()
        .map(|l| scope.step(l).unwrap())
        .collect();
    let Instruction::Env(env) = &steps[1] else {
        panic!()
    };
    assert_eq!(env[0].value, "12");
    assert_eq!(scope.created_by(&steps[0]).unwrap(), "ARG A=1 B=12");
    assert_eq!(
        scope.args(),
        [
            ("A".to_string(), Some("1".to_string())),
            ("B".to_string(), Some("12".to_string()))
        ]
    );
}

#[test]
fn the_whole_file_is_checked_before_anything_runs() {
    // A mistake on the last line refuses the file, whatever the target.
    let e = error("FROM a AS one\nRUN ok\nFROM b AS two\nCOPY --from=one /x /y\nEXPOSE 80/xtp\n");
    assert_eq!(e.line(), Some(5));
}

#[test]
fn odd_input_never_panics() {
    const KEYWORDS: &[&str] = &[
        "FROM",
        "from",
        "RUN",
        "COPY",
        "ADD",
        "ENV",
        "ARG",
        "LABEL",
        "ONBUILD",
        "HEALTHCHECK",
        "CMD",
        "EXPOSE",
        "WORKDIR",
        "USER",
        "VOLUME",
        "SHELL",
        "STOPSIGNAL",
        "MAINTAINER",
        "ENTRYPOINT",
        "#",
        "# escape=`",
        "EOF",
        "",
    ];
    const ARGS: &[&str] = &[
        "a",
        "AS",
        "x",
        "RUN",
        "FROM",
        "\\",
        "`",
        "=",
        "\"",
        "'",
        "$",
        "${",
        "}",
        ":-",
        ":+",
        "?",
        "#",
        "%",
        "/",
        "[",
        "]",
        ",",
        "\"a\"",
        "<<",
        "<<-",
        "EOF",
        "<<EOF",
        "<<'EOF'",
        "--from=",
        "--from=0",
        "--from=x",
        "--chmod=",
        "--chmod=u+x",
        "--link",
        "--",
        "-",
        "0",
        "80/tcp",
        "NONE",
        "CMD",
        "é",
        "한",
        "*",
        "$x",
        "${a}",
        "${x:-y}",
        "${a#*}",
        "${a//b/c}",
        "[\"sh\", \"-c\"]",
        "k=v",
        "k=\"v w\"",
        "--interval=1s",
        "SIGTERM",
    ];
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = |n: usize| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % n as u64) as usize
    };
    let (mut parsed, mut stepped) = (0, 0);
    for _ in 0..4000 {
        let mut text = String::from(["FROM a AS x\n", "ARG a=b\nFROM $a\n", ""][next(3)]);
        for _ in 0..1 + next(8) {
            text.push_str(KEYWORDS[next(KEYWORDS.len())]);
            for _ in 0..next(5) {
                text.push(if next(5) == 0 { '\t' } else { ' ' });
                text.push_str(ARGS[next(ARGS.len())]);
                if next(8) == 0 {
                    text.push_str(ARGS[next(ARGS.len())]);
                }
            }
            text.push_str(["\n", "\r\n", " \\\n", "\n\n"][next(4)]);
        }
        let Ok(df) = Dockerfile::parse(&text) else {
            continue;
        };
        parsed += 1;
        let mut opts = options(&[("x", "1")], None);
        opts.builtin_args.insert("a".into(), "b".into());
        let Ok(plan) = df.resolve(&opts) else {
            continue;
        };
        for stage in &plan.stages {
            let mut scope = plan.scope(&BaseConfig::default());
            for located in &stage.instructions {
                if let Ok(step) = scope.step(located) {
                    scope.created_by(&step);
                    stepped += 1;
                }
                located.full_text();
            }
        }
    }
    assert!(
        parsed > 100 && stepped > 100,
        "{parsed} parsed, {stepped} stepped"
    );
}
