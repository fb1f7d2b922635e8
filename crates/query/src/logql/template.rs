//! The Go-template subset of `| line_format`: text with `{{ … }}` actions, each a pipeline
//! of commands. A command is a label reference (`.name`), a literal (`"s"`, `5`), or a
//! function with arguments; `a | f x` passes `a` as `f`'s last argument, as Go does.
//! `{{-` and `-}}` trim the whitespace beside them. A label that is absent renders
//! empty (Loki's line_format sees labels as a map of strings).
//!
//! Functions: `lower`/`ToLower`, `upper`/`ToUpper`, `title`, `trim`/`trimSpace`,
//! `trimPrefix p s`, `trimSuffix p s`, `trimAll cut s`, `replace old new s`,
//! `default d s`, `trunc n s`, `substr start end s`, `repeat n s`,
//! `regexReplaceAll re repl s`, `printf fmt args…` (`%s %d %v %q %%`), `contains sub s`
//! (renders true/false), `len s`, and `__line__` (the line before formatting).

use regex::Regex;

#[derive(Clone, Debug)]
pub struct Template {
    parts: Vec<Part>,
}

#[derive(Clone, Debug)]
enum Part {
    Text(String),
    Action(Vec<Cmd>),
}

#[derive(Clone, Debug)]
enum Arg {
    Field(String),
    Str(String),
    Num(String),
    Line,
    Func(String),
    Sub(Vec<Cmd>),
}

#[derive(Clone, Debug)]
struct Cmd {
    args: Vec<Arg>,
    /// Compiled pattern when the command is regexReplaceAll with a literal pattern.
    regex: Option<Regex>,
}

const FUNCS: &[&str] = &[
    "lower",
    "ToLower",
    "upper",
    "ToUpper",
    "title",
    "trim",
    "trimSpace",
    "trimPrefix",
    "trimSuffix",
    "trimAll",
    "replace",
    "default",
    "trunc",
    "substr",
    "repeat",
    "regexReplaceAll",
    "printf",
    "contains",
    "len",
];

impl Template {
    pub fn parse(src: &str) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut rest = src;
        let mut trim_next_text = false;
        while let Some(open) = rest.find("{{") {
            let mut text = &rest[..open];
            if trim_next_text {
                text = text.trim_start();
            }
            let after = &rest[open + 2..];
            let (after, trim_left) = match after.strip_prefix('-') {
                Some(a) if a.starts_with(|c: char| c.is_whitespace()) => (a, true),
                _ => (after, false),
            };
            if trim_left {
                text = text.trim_end();
            }
            if !text.is_empty() {
                parts.push(Part::Text(text.to_string()));
            }
            let close =
                find_close(after).ok_or_else(|| format!("unclosed action in template {src:?}"))?;
            let mut body = &after[..close];
            trim_next_text = false;
            if let Some(b) = body.strip_suffix('-')
                && b.ends_with(|c: char| c.is_whitespace())
            {
                body = b;
                trim_next_text = true;
            }
            let body = body.trim();
            if body.starts_with("/*") {
                // A comment.
            } else {
                let cmds = parse_pipeline(body).map_err(|e| format!("template {src:?}: {e}"))?;
                parts.push(Part::Action(cmds));
            }
            rest = &after[close + 2..];
        }
        let text = if trim_next_text {
            rest.trim_start()
        } else {
            rest
        };
        if !text.is_empty() {
            parts.push(Part::Text(text.to_string()));
        }
        Ok(Template { parts })
    }

    /// Renders with `label` looking up label values; `line` is the current line.
    pub fn render<'a>(
        &self,
        label: &dyn Fn(&str) -> Option<&'a str>,
        line: &str,
    ) -> Result<String, String> {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Text(t) => out.push_str(t),
                Part::Action(cmds) => out.push_str(&run_pipeline(cmds, label, line)?),
            }
        }
        Ok(out)
    }
}

/// The `}}` that ends an action, skipping quoted strings.
fn find_close(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    let mut i = 0;
    while i + 1 < b.len() {
        match b[i] {
            b'"' => {
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    if b[i] == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
            }
            b'`' => {
                i += 1;
                while i < b.len() && b[i] != b'`' {
                    i += 1;
                }
            }
            b'}' if b[i + 1] == b'}' => return Some(i),
            _ => {}
        }
        i += 1;
    }
    None
}

fn parse_pipeline(s: &str) -> Result<Vec<Cmd>, String> {
    let toks = tokenize(s)?;
    let mut pos = 0;
    let cmds = pipeline_from(&toks, &mut pos, 0)?;
    if pos != toks.len() {
        return Err(format!("unexpected {:?}", toks[pos]));
    }
    Ok(cmds)
}

#[derive(Clone, Debug, PartialEq)]
enum T {
    Word(String),
    Str(String),
    Pipe,
    Open,
    Close,
}

fn tokenize(s: &str) -> Result<Vec<T>, String> {
    let mut out = Vec::new();
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            c if c.is_ascii_whitespace() => i += 1,
            b'|' => {
                out.push(T::Pipe);
                i += 1;
            }
            b'(' => {
                out.push(T::Open);
                i += 1;
            }
            b')' => {
                out.push(T::Close);
                i += 1;
            }
            b'"' => {
                let start = i;
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    if b[i] == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
                if i >= b.len() {
                    return Err("unterminated string".into());
                }
                let raw = &s[start + 1..i];
                out.push(T::Str(
                    lastmile_model::logfmt::unquote(raw)
                        .ok_or_else(|| format!("invalid escape in {raw:?}"))?,
                ));
                i += 1;
            }
            b'`' => {
                let end = s[i + 1..].find('`').ok_or("unterminated raw string")? + i + 1;
                out.push(T::Str(s[i + 1..end].to_string()));
                i = end + 1;
            }
            _ => {
                let start = i;
                while i < b.len() && !b[i].is_ascii_whitespace() && !b"|()\"`".contains(&b[i]) {
                    i += 1;
                }
                out.push(T::Word(s[start..i].to_string()));
            }
        }
    }
    Ok(out)
}

fn pipeline_from(toks: &[T], pos: &mut usize, depth: usize) -> Result<Vec<Cmd>, String> {
    if depth > 16 {
        return Err("template nested too deeply".into());
    }
    let mut cmds = Vec::new();
    loop {
        let mut args = Vec::new();
        while let Some(t) = toks.get(*pos) {
            match t {
                T::Pipe | T::Close => break,
                T::Open => {
                    *pos += 1;
                    let sub = pipeline_from(toks, pos, depth + 1)?;
                    if toks.get(*pos) != Some(&T::Close) {
                        return Err("missing ')'".into());
                    }
                    *pos += 1;
                    args.push(Arg::Sub(sub));
                }
                T::Str(s) => {
                    args.push(Arg::Str(s.clone()));
                    *pos += 1;
                }
                T::Word(w) => {
                    *pos += 1;
                    args.push(if let Some(name) = w.strip_prefix('.') {
                        if name.is_empty() || name.contains('.') {
                            return Err(format!(
                                "unsupported field reference {w:?}: use .label_name"
                            ));
                        }
                        Arg::Field(name.to_string())
                    } else if w == "__line__" {
                        Arg::Line
                    } else if w.parse::<f64>().is_ok() {
                        Arg::Num(w.clone())
                    } else if FUNCS.contains(&w.as_str()) {
                        Arg::Func(w.clone())
                    } else {
                        return Err(format!("function {w:?} is not defined"));
                    });
                }
            }
        }
        if args.is_empty() {
            return Err("empty command".into());
        }
        if args.len() > 1 && !matches!(args[0], Arg::Func(_)) {
            return Err(format!(
                "{:?} is not a function and takes no arguments",
                args[0]
            ));
        }
        let regex = match (&args[0], args.get(1)) {
            (Arg::Func(f), Some(Arg::Str(p))) if f == "regexReplaceAll" => {
                Some(Regex::new(p).map_err(|e| format!("invalid regular expression {p:?}: {e}"))?)
            }
            _ => None,
        };
        cmds.push(Cmd { args, regex });
        match toks.get(*pos) {
            Some(T::Pipe) => *pos += 1,
            _ => return Ok(cmds),
        }
    }
}

fn run_pipeline<'a>(
    cmds: &[Cmd],
    label: &dyn Fn(&str) -> Option<&'a str>,
    line: &str,
) -> Result<String, String> {
    let mut prev: Option<String> = None;
    for c in cmds {
        prev = Some(run_cmd(c, prev.take(), label, line)?);
    }
    Ok(prev.unwrap_or_default())
}

fn run_cmd<'a>(
    c: &Cmd,
    piped: Option<String>,
    label: &dyn Fn(&str) -> Option<&'a str>,
    line: &str,
) -> Result<String, String> {
    let eval = |a: &Arg| -> Result<String, String> {
        Ok(match a {
            Arg::Field(n) => label(n).unwrap_or("").to_string(),
            Arg::Str(s) | Arg::Num(s) => s.clone(),
            Arg::Line => line.to_string(),
            Arg::Sub(p) => run_pipeline(p, label, line)?,
            Arg::Func(f) => call(f, &[], None)?,
        })
    };
    let Arg::Func(f) = &c.args[0] else {
        if piped.is_some() {
            return Err(format!("{:?} cannot take a piped value", c.args[0]));
        }
        return eval(&c.args[0]);
    };
    let mut args = c.args[1..]
        .iter()
        .map(eval)
        .collect::<Result<Vec<_>, _>>()?;
    if let Some(p) = piped {
        args.push(p);
    }
    call(f, &args, c.regex.as_ref())
}

fn int(s: &str, f: &str) -> Result<i64, String> {
    s.trim()
        .parse::<i64>()
        .map_err(|_| format!("{f}: {s:?} is not an integer"))
}

fn call(f: &str, a: &[String], re: Option<&Regex>) -> Result<String, String> {
    let want = |n: usize| -> Result<(), String> {
        if a.len() == n {
            Ok(())
        } else {
            Err(format!(
                "wrong number of args for {f}: want {n} got {}",
                a.len()
            ))
        }
    };
    Ok(match f {
        "lower" | "ToLower" => {
            want(1)?;
            a[0].to_lowercase()
        }
        "upper" | "ToUpper" => {
            want(1)?;
            a[0].to_uppercase()
        }
        "title" => {
            want(1)?;
            let mut out = String::with_capacity(a[0].len());
            let mut at_start = true;
            for ch in a[0].chars() {
                if at_start && ch.is_alphabetic() {
                    out.extend(ch.to_uppercase());
                } else {
                    out.push(ch);
                }
                at_start = !ch.is_alphanumeric();
            }
            out
        }
        "trim" | "trimSpace" => {
            want(1)?;
            a[0].trim().to_string()
        }
        "trimPrefix" => {
            want(2)?;
            a[1].strip_prefix(a[0].as_str())
                .unwrap_or(&a[1])
                .to_string()
        }
        "trimSuffix" => {
            want(2)?;
            a[1].strip_suffix(a[0].as_str())
                .unwrap_or(&a[1])
                .to_string()
        }
        "trimAll" => {
            want(2)?;
            a[1].trim_matches(|c| a[0].contains(c)).to_string()
        }
        "replace" => {
            want(3)?;
            a[2].replace(a[0].as_str(), &a[1])
        }
        "default" => {
            want(2)?;
            if a[1].is_empty() {
                a[0].clone()
            } else {
                a[1].clone()
            }
        }
        "trunc" => {
            want(2)?;
            let n = int(&a[0], f)?;
            let chars: Vec<char> = a[1].chars().collect();
            let len = chars.len() as i64;
            if n >= 0 {
                chars[..n.min(len) as usize].iter().collect()
            } else {
                chars[(len + n).max(0) as usize..].iter().collect()
            }
        }
        "substr" => {
            want(3)?;
            let (start, end) = (int(&a[0], f)?, int(&a[1], f)?);
            let chars: Vec<char> = a[2].chars().collect();
            let len = chars.len() as i64;
            // Sprig: a negative start means 0, a negative or too large end the end.
            let s = start.clamp(0, len) as usize;
            let e = if end < 0 || end > len {
                len as usize
            } else {
                end as usize
            };
            if s >= e {
                String::new()
            } else {
                chars[s..e].iter().collect()
            }
        }
        "repeat" => {
            want(2)?;
            let n = int(&a[0], f)?;
            if !(0..=1000).contains(&n) {
                return Err(format!("repeat: count {n} out of range [0, 1000]"));
            }
            a[1].repeat(n as usize)
        }
        "regexReplaceAll" => {
            want(3)?;
            let compiled;
            let re = match re {
                Some(r) => r,
                None => {
                    compiled = Regex::new(&a[0])
                        .map_err(|e| format!("invalid regular expression: {e}"))?;
                    &compiled
                }
            };
            re.replace_all(&a[2], a[1].as_str()).into_owned()
        }
        "contains" => {
            want(2)?;
            a[1].contains(a[0].as_str()).to_string()
        }
        "len" => {
            want(1)?;
            a[0].chars().count().to_string()
        }
        "printf" => {
            if a.is_empty() {
                return Err("wrong number of args for printf: want at least 1".into());
            }
            printf(&a[0], &a[1..])
        }
        other => return Err(format!("function {other:?} is not defined")),
    })
}

fn printf(fmt: &str, args: &[String]) -> String {
    let mut out = String::new();
    let mut it = fmt.chars().peekable();
    let mut next = args.iter();
    while let Some(c) = it.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match it.next() {
            Some('%') => out.push('%'),
            Some('s' | 'v' | 'd') => match next.next() {
                Some(a) => out.push_str(a),
                None => out.push_str("%!v(MISSING)"),
            },
            Some('q') => match next.next() {
                Some(a) => out.push_str(&format!("{a:?}")),
                None => out.push_str("%!q(MISSING)"),
            },
            Some(o) => {
                out.push('%');
                out.push(o);
            }
            None => out.push_str("%!(NOVERB)"),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(t: &str, labels: &[(&str, &str)], line: &str) -> Result<String, String> {
        let t = Template::parse(t)?;
        let lookup = |n: &str| labels.iter().find(|(k, _)| *k == n).map(|(_, v)| *v);
        t.render(&lookup, line)
    }

    #[test]
    fn fields_functions_and_pipes() {
        let l = [("level", "warn"), ("path", "/api/users"), ("n", "")];
        assert_eq!(
            render("{{.level}}: {{ .path }}", &l, "x").unwrap(),
            "warn: /api/users"
        );
        assert_eq!(
            render("{{ .level | upper }} {{ ToLower \"ABC\" }}", &l, "x").unwrap(),
            "WARN abc"
        );
        assert_eq!(
            render("{{ default \"none\" .n }}|{{ .missing }}|", &l, "x").unwrap(),
            "none||"
        );
        assert_eq!(
            render(
                "{{ trunc 4 .path }} {{ .path | replace \"/\" \"_\" }}",
                &l,
                "x"
            )
            .unwrap(),
            "/api _api_users"
        );
        assert_eq!(render("{{ __line__ | len }}", &l, "hello").unwrap(), "5");
        assert_eq!(
            render("{{ printf \"%s=%d%%\" .level 5 }}", &l, "").unwrap(),
            "warn=5%"
        );
        assert_eq!(render("a  {{- .level -}}  b", &l, "").unwrap(), "awarnb");
        assert_eq!(
            render("{{ regexReplaceAll \"/(\\\\w+)\" \"<$1>\" .path }}", &l, "").unwrap(),
            "<api><users>"
        );
        assert_eq!(
            render("{{ title (lower \"HELLO world\") }}", &l, "").unwrap(),
            "Hello World"
        );
    }

    #[test]
    fn errors() {
        assert!(
            Template::parse("{{ nope .x }}")
                .unwrap_err()
                .contains("not defined")
        );
        assert!(Template::parse("{{ .x").is_err());
        assert!(Template::parse("{{ .a.b }}").is_err());
        assert!(
            render("{{ trunc \"x\" .a }}", &[], "")
                .unwrap_err()
                .contains("not an integer")
        );
    }
}
