//! The part of Go's text/template that `--format` users type: `{{.A.B}}`, `{{json .X}}`, `{{index .M "k"}}`,
//! `{{range .List}}...{{end}}`, `{{if .X}}...{{else}}...{{end}}`, `{{upper .X}}`, `{{lower .X}}`,
//! `{{join .List ","}}`, over a JSON value. `\t` and `\n` in the format are tabs and newlines, as docker's.

use anyhow::{anyhow, bail, Result};
use serde_json::Value;

#[derive(Debug)]
enum Node {
    Text(String),
    Action(Vec<String>),
    Range(Vec<String>, Vec<Node>),
    If(Vec<String>, Vec<Node>, Vec<Node>),
}

pub struct Template {
    nodes: Vec<Node>,
}

fn words(action: &str) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = action.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if !quoted => {
                quoted = true;
                cur.push('"');
            }
            '"' if quoted => {
                quoted = false;
                cur.push('"');
            }
            '\\' if quoted => {
                if let Some(n) = chars.next() {
                    cur.push(match n {
                        'n' => '\n',
                        't' => '\t',
                        o => o,
                    });
                }
            }
            c if c.is_whitespace() && !quoted => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
            }
            c => cur.push(c),
        }
    }
    if quoted {
        bail!("unterminated string in {{{{{action}}}}}");
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    Ok(out)
}

impl Template {
    pub fn parse(src: &str) -> Result<Template> {
        let src = src.replace("\\t", "\t").replace("\\n", "\n");
        let mut tokens = Vec::new();
        let mut rest = src.as_str();
        while let Some(start) = rest.find("{{") {
            if start > 0 {
                tokens.push((false, rest[..start].to_string()));
            }
            let after = &rest[start + 2..];
            let end = after
                .find("}}")
                .ok_or_else(|| anyhow!("template: unclosed action in {src:?}"))?;
            let inner = after[..end].trim_start_matches('-').trim_end_matches('-');
            tokens.push((true, inner.trim().to_string()));
            rest = &after[end + 2..];
        }
        if !rest.is_empty() {
            tokens.push((false, rest.to_string()));
        }
        let mut pos = 0;
        let (nodes, stop) = parse_block(&tokens, &mut pos)?;
        if let Some(s) = stop {
            bail!("template: unexpected {{{{{s}}}}}");
        }
        Ok(Template { nodes })
    }

    pub fn render(&self, v: &Value) -> Result<String> {
        let mut out = String::new();
        render(&self.nodes, v, &mut out)?;
        Ok(out)
    }
}

type Tokens = [(bool, String)];

/// Parses until `{{end}}` / `{{else}}` (returned as the stop word) or the end.
fn parse_block(tokens: &Tokens, pos: &mut usize) -> Result<(Vec<Node>, Option<String>)> {
    let mut nodes = Vec::new();
    while *pos < tokens.len() {
        let (is_action, text) = &tokens[*pos];
        *pos += 1;
        if !is_action {
            nodes.push(Node::Text(text.clone()));
            continue;
        }
        let w = words(text)?;
        match w.first().map(String::as_str) {
            Some("end") | Some("else") => return Ok((nodes, Some(w[0].clone()))),
            Some("range") => {
                let (body, stop) = parse_block(tokens, pos)?;
                if stop.as_deref() != Some("end") {
                    bail!("template: {{{{range}}}} without {{{{end}}}}");
                }
                nodes.push(Node::Range(w[1..].to_vec(), body));
            }
            Some("if") => {
                let (then, stop) = parse_block(tokens, pos)?;
                let otherwise = match stop.as_deref() {
                    Some("end") => Vec::new(),
                    Some("else") => {
                        let (o, s) = parse_block(tokens, pos)?;
                        if s.as_deref() != Some("end") {
                            bail!("template: {{{{if}}}} without {{{{end}}}}");
                        }
                        o
                    }
                    _ => bail!("template: {{{{if}}}} without {{{{end}}}}"),
                };
                nodes.push(Node::If(w[1..].to_vec(), then, otherwise));
            }
            Some(_) => nodes.push(Node::Action(w)),
            None => bail!("template: empty action"),
        }
    }
    Ok((nodes, None))
}

fn lookup(dot: &Value, path: &str) -> Result<Value> {
    if path == "." {
        return Ok(dot.clone());
    }
    let Some(p) = path.strip_prefix('.') else {
        if let Some(s) = path.strip_prefix('"').and_then(|s| s.strip_suffix('"')) {
            return Ok(Value::String(s.to_string()));
        }
        if let Ok(n) = path.parse::<i64>() {
            return Ok(Value::from(n));
        }
        bail!("template: function {path:?} not defined");
    };
    let mut v = dot;
    for field in p.split('.') {
        v = match v {
            Value::Object(m) => match m.get(field) {
                Some(x) => x,
                None => bail!("template: can't evaluate field {field}"),
            },
            Value::Null => return Ok(Value::Null),
            _ => bail!("template: can't evaluate field {field} in a non-object"),
        };
    }
    Ok(v.clone())
}

fn eval(w: &[String], dot: &Value) -> Result<Value> {
    match w.first().map(String::as_str) {
        None => bail!("template: empty action"),
        Some("json") => {
            let v = eval(&w[1..], dot)?;
            Ok(Value::String(serde_json::to_string(&v)?))
        }
        Some("upper") => Ok(Value::String(text(&eval(&w[1..], dot)?).to_uppercase())),
        Some("lower") => Ok(Value::String(text(&eval(&w[1..], dot)?).to_lowercase())),
        Some("len") => {
            let v = eval(&w[1..], dot)?;
            Ok(Value::from(match &v {
                Value::Array(a) => a.len(),
                Value::Object(m) => m.len(),
                Value::String(s) => s.len(),
                _ => 0,
            }))
        }
        Some("index") => {
            if w.len() < 3 {
                bail!("template: index needs a value and a key");
            }
            let v = lookup(dot, &w[1])?;
            let k = lookup(dot, &w[2])?;
            Ok(match (&v, &k) {
                (Value::Object(m), Value::String(s)) => m.get(s).cloned().unwrap_or(Value::Null),
                (Value::Array(a), Value::Number(n)) => n
                    .as_u64()
                    .and_then(|i| a.get(i as usize).cloned())
                    .unwrap_or(Value::Null),
                _ => Value::Null,
            })
        }
        Some("join") => {
            if w.len() < 3 {
                bail!("template: join needs a list and a separator");
            }
            let v = lookup(dot, &w[1])?;
            let sep = text(&lookup(dot, &w[2])?);
            Ok(Value::String(match v {
                Value::Array(a) => a.iter().map(text).collect::<Vec<_>>().join(&sep),
                other => text(&other),
            }))
        }
        Some(p) if w.len() == 1 => lookup(dot, p),
        Some(f) => bail!("template: function {f:?} not defined"),
    }
}

/// How Go prints a value with `{{.X}}`.
pub fn text(v: &Value) -> String {
    match v {
        Value::Null => "<no value>".into(),
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::Array(a) => format!("[{}]", a.iter().map(text).collect::<Vec<_>>().join(" ")),
        Value::Object(m) => format!(
            "map[{}]",
            m.iter()
                .map(|(k, v)| format!("{k}:{}", text(v)))
                .collect::<Vec<_>>()
                .join(" ")
        ),
    }
}

fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64() != Some(0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(m) => !m.is_empty(),
    }
}

fn render(nodes: &[Node], dot: &Value, out: &mut String) -> Result<()> {
    for n in nodes {
        match n {
            Node::Text(t) => out.push_str(t),
            Node::Action(w) => out.push_str(&text(&eval(w, dot)?)),
            Node::Range(w, body) => match eval(w, dot)? {
                Value::Array(items) => {
                    for i in &items {
                        render(body, i, out)?;
                    }
                }
                Value::Object(m) => {
                    for v in m.values() {
                        render(body, v, out)?;
                    }
                }
                _ => {}
            },
            Node::If(w, then, otherwise) => {
                if truthy(&eval(w, dot)?) {
                    render(then, dot, out)?;
                } else {
                    render(otherwise, dot, out)?;
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn r(t: &str, v: &Value) -> String {
        Template::parse(t).unwrap().render(v).unwrap()
    }

    #[test]
    fn fields_functions_blocks() {
        let v = json!({"State": {"Status": "running", "ExitCode": 0, "Running": true},
                       "Names": ["a", "b"], "Labels": {"k": "v"}, "Name": "/x"});
        assert_eq!(r("{{.State.Status}}", &v), "running");
        assert_eq!(r("{{ .State.ExitCode }}\\t{{.Name}}", &v), "0\t/x");
        assert_eq!(r("{{json .Labels}}", &v), "{\"k\":\"v\"}");
        assert_eq!(r("{{index .Labels \"k\"}}", &v), "v");
        assert_eq!(r("{{range .Names}}<{{.}}>{{end}}", &v), "<a><b>");
        assert_eq!(r("{{if .State.Running}}up{{else}}down{{end}}", &v), "up");
        assert_eq!(r("{{join .Names \",\"}}", &v), "a,b");
        assert_eq!(r("{{upper .State.Status}}", &v), "RUNNING");
        assert!(Template::parse("{{.A").is_err());
        assert!(Template::parse("{{range .A}}").is_err());
        assert!(Template::parse("{{nosuch .A}}")
            .unwrap()
            .render(&v)
            .is_err());
        assert!(Template::parse("{{.Nope}}").unwrap().render(&v).is_err());
    }
}
