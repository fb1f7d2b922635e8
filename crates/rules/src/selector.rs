//! Series selectors and series notation as PromQL writes them: `name{a="b", c=~"d.*"}`.
//!
//! Rules name the data they apply to with a selector (`{job="checkout"}`), and rule tests
//! write their input series in the same notation (`http_requests_total{path="/x"}`). Label
//! names may be quoted (`{"service.name"="api"}`, as Prometheus 3 allows), so selectors
//! can address OpenTelemetry resource attributes directly.

use lastmile_model::{METRIC_NAME, MatchOp, Matcher};

/// A conjunction of label matchers; a metric name before the braces is a `__name__`
/// matcher. The empty selector matches everything.
#[derive(Clone, Debug, Default)]
pub struct Selector {
    pub matchers: Vec<Matcher>,
    text: String,
}

impl Selector {
    /// Whether a label set satisfies every matcher; `get` returns a label's value, `""`
    /// when absent (an absent label behaves as an empty one, as in PromQL).
    pub fn matches<'a>(&self, get: impl Fn(&str) -> &'a str) -> bool {
        self.matchers.iter().all(|m| m.matches(get(&m.name)))
    }

    pub fn is_empty(&self) -> bool {
        self.matchers.is_empty()
    }

    /// The selector as written.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The metric name it requires with `=`, if any.
    pub fn metric_name(&self) -> Option<&str> {
        self.matchers
            .iter()
            .find(|m| m.name == METRIC_NAME && m.op == MatchOp::Equal)
            .map(|m| m.value.as_str())
    }
}

impl std::fmt::Display for Selector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

struct Parser<'s> {
    s: &'s str,
    pos: usize,
}

impl<'s> Parser<'s> {
    fn rest(&self) -> &'s str {
        &self.s[self.pos..]
    }

    fn skip_ws(&mut self) {
        let rest = self.rest();
        self.pos += rest.len() - rest.trim_start().len();
    }

    fn eat(&mut self, tok: &str) -> bool {
        self.skip_ws();
        if self.rest().starts_with(tok) {
            self.pos += tok.len();
            true
        } else {
            false
        }
    }

    fn err(&self, what: &str) -> String {
        format!(
            "{what} at character {} of {:?}",
            self.pos + 1,
            self.s.trim()
        )
    }

    /// A metric or label name: `[a-zA-Z_:][a-zA-Z0-9_:]*` (colons only in metric names,
    /// which PromQL's lexer also accepts here).
    fn ident(&mut self) -> Option<&'s str> {
        self.skip_ws();
        let rest = self.rest();
        let mut end = 0;
        for (i, c) in rest.char_indices() {
            let ok =
                c.is_ascii_alphabetic() || c == '_' || c == ':' || (i > 0 && c.is_ascii_digit());
            if !ok {
                break;
            }
            end = i + c.len_utf8();
        }
        if end == 0 {
            return None;
        }
        self.pos += end;
        Some(&rest[..end])
    }

    /// A quoted string: "…" or '…' with Go-style escapes, or `…` taken literally.
    fn string(&mut self) -> Result<String, String> {
        self.skip_ws();
        let rest = self.rest();
        let Some(quote) = rest
            .chars()
            .next()
            .filter(|c| matches!(c, '"' | '\'' | '`'))
        else {
            return Err(self.err("expected a quoted string"));
        };
        let mut out = String::new();
        let mut chars = rest[1..].char_indices();
        while let Some((i, c)) = chars.next() {
            if c == quote {
                self.pos += 1 + i + 1;
                return Ok(out);
            }
            if c == '\\' && quote != '`' {
                let Some((_, e)) = chars.next() else { break };
                match e {
                    'n' => out.push('\n'),
                    't' => out.push('\t'),
                    'r' => out.push('\r'),
                    '\\' | '"' | '\'' => out.push(e),
                    // Kept for regexes written with single escapes, e.g. "\d+".
                    other => {
                        out.push('\\');
                        out.push(other);
                    }
                }
            } else {
                out.push(c);
            }
        }
        Err(self.err("unterminated string"))
    }

    fn label_name(&mut self) -> Result<String, String> {
        self.skip_ws();
        if self.rest().starts_with(['"', '\'', '`']) {
            return self.string();
        }
        self.ident()
            .map(str::to_owned)
            .ok_or_else(|| self.err("expected a label name"))
    }

    fn op(&mut self) -> Result<MatchOp, String> {
        for (tok, op) in [
            ("=~", MatchOp::Regex),
            ("!~", MatchOp::NotRegex),
            ("!=", MatchOp::NotEqual),
            ("=", MatchOp::Equal),
        ] {
            if self.eat(tok) {
                return Ok(op);
            }
        }
        Err(self.err("expected one of = != =~ !~"))
    }
}

/// Parses `name{matchers}`, `name` or `{matchers}` into matchers.
pub fn parse_selector(text: &str) -> Result<Selector, String> {
    let mut p = Parser { s: text, pos: 0 };
    let mut matchers = Vec::new();
    if let Some(name) = p.ident() {
        matchers.push(Matcher::equal(METRIC_NAME, name));
    }
    if p.eat("{") {
        loop {
            if p.eat("}") {
                break;
            }
            let name = p.label_name()?;
            let op = p.op()?;
            let value = p.string()?;
            let m = Matcher::new(op, name, value).map_err(|e| e.to_string())?;
            matchers.push(m);
            if p.eat(",") {
                continue;
            }
            if p.eat("}") {
                break;
            }
            return Err(p.err("expected , or }"));
        }
    }
    p.skip_ws();
    if !p.rest().is_empty() {
        return Err(p.err("unexpected text"));
    }
    if matchers.is_empty() && !text.trim().starts_with('{') {
        return Err(format!(
            "empty selector {text:?}: write {{}} to match everything"
        ));
    }
    Ok(Selector {
        matchers,
        text: text.trim().to_owned(),
    })
}

/// Parses a series in PromQL notation, `name{a="b"}`, into label pairs (only `=`).
pub fn parse_series(text: &str) -> Result<Vec<(String, String)>, String> {
    let sel = parse_selector(text)?;
    sel.matchers
        .into_iter()
        .map(|m| match m.op {
            MatchOp::Equal => Ok((m.name, m.value)),
            op => Err(format!(
                "a series is written with = only, not {} (in {text:?})",
                op.as_str()
            )),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> &'a str {
        move |n| pairs.iter().find(|(k, _)| *k == n).map_or("", |(_, v)| v)
    }

    #[test]
    fn parses_names_matchers_and_quoting() {
        let s =
            parse_selector(r#"http_requests_total{job="api", code=~"5..", "service.name"!='x'}"#)
                .unwrap();
        assert_eq!(s.matchers.len(), 4);
        assert_eq!(s.metric_name(), Some("http_requests_total"));
        let labels = [
            ("__name__", "http_requests_total"),
            ("job", "api"),
            ("code", "503"),
        ];
        assert!(s.matches(get(&labels)));
        let labels = [
            ("__name__", "http_requests_total"),
            ("job", "api"),
            ("code", "200"),
        ];
        assert!(!s.matches(get(&labels)));
        assert!(parse_selector("{}").unwrap().is_empty());
        let s = parse_selector(r#"{path=~"/a/\d+"}"#).unwrap();
        assert!(s.matches(get(&[("path", "/a/12")])));
    }

    #[test]
    fn errors_say_where() {
        assert!(parse_selector("{job=api}").unwrap_err().contains("quoted"));
        assert!(
            parse_selector("{job=\"a\"")
                .unwrap_err()
                .contains("character")
        );
        assert!(
            parse_selector("{job~\"a\"}")
                .unwrap_err()
                .contains("expected")
        );
        assert!(
            parse_selector("x{a=~\"(\"}")
                .unwrap_err()
                .contains("regular expression")
        );
        assert!(parse_selector("").is_err());
        assert!(parse_series("x{a=~\"b\"}").unwrap_err().contains("= only"));
        assert_eq!(
            parse_series("up{job=\"a\"}").unwrap(),
            vec![("__name__".into(), "up".into()), ("job".into(), "a".into())]
        );
    }
}
