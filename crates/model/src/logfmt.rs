//! logfmt (`level=info msg="hello world" dur=1.5s`), read the way Go's go-logfmt decoder
//! reads it (which Loki's `| logfmt` and most Go services use):
//!
//! - a key runs up to `=`, whitespace or the end; a key without `=` has an empty value;
//! - a bare value runs up to whitespace; `=` or `"` inside it is a syntax error;
//! - a quoted value takes Go escapes (`\"`, `\\`, `\n`, `\t`, `\uXXXX`, …); an
//!   unterminated quote is a syntax error;
//! - a `"` inside a key is a syntax error.
//!
//! On an error the pairs read before it are kept, as Loki keeps them.

use std::borrow::Cow;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogfmtError {
    pub offset: usize,
    pub what: &'static str,
}

impl std::fmt::Display for LogfmtError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "logfmt syntax error at position {}: {}",
            self.offset + 1,
            self.what
        )
    }
}

/// Every `key=value` pair of a line, in order, and the syntax error that ended the scan.
pub fn parse(line: &str) -> (Vec<(&str, Cow<'_, str>)>, Option<LogfmtError>) {
    let mut out = Vec::new();
    let b = line.as_bytes();
    let mut pos = 0;
    let err = |offset, what| Some(LogfmtError { offset, what });
    loop {
        while pos < b.len() && b[pos] <= b' ' {
            pos += 1;
        }
        if pos >= b.len() {
            return (out, None);
        }
        let start = pos;
        // Key.
        while pos < b.len() && b[pos] > b' ' && b[pos] != b'=' && b[pos] != b'"' {
            pos += 1;
        }
        if pos < b.len() && b[pos] == b'"' {
            return (out, err(pos, "unexpected '\"' in a key"));
        }
        if pos < b.len() && b[pos] == b'=' && pos == start {
            return (out, err(pos, "unexpected '=' (a key is missing)"));
        }
        let key = &line[start..pos];
        if pos >= b.len() || b[pos] <= b' ' {
            out.push((key, Cow::Borrowed("")));
            continue;
        }
        // b[pos] == '='
        pos += 1;
        if pos >= b.len() || b[pos] <= b' ' {
            out.push((key, Cow::Borrowed("")));
            continue;
        }
        if b[pos] == b'"' {
            let qstart = pos;
            pos += 1;
            let mut has_escape = false;
            let mut escaped = false;
            let mut closed = None;
            while pos < b.len() {
                let c = b[pos];
                if escaped {
                    escaped = false;
                } else if c == b'\\' {
                    has_escape = true;
                    escaped = true;
                } else if c == b'"' {
                    closed = Some(pos);
                    break;
                }
                pos += 1;
            }
            let Some(end) = closed else {
                return (out, err(qstart, "unterminated quoted value"));
            };
            pos = end + 1;
            let inner = &line[qstart + 1..end];
            if has_escape {
                match unquote(inner) {
                    Some(v) => out.push((key, Cow::Owned(v))),
                    None => return (out, err(qstart, "invalid quoted value")),
                }
            } else {
                out.push((key, Cow::Borrowed(inner)));
            }
            continue;
        }
        let vstart = pos;
        while pos < b.len() && b[pos] > b' ' {
            if b[pos] == b'=' || b[pos] == b'"' {
                return (out, err(pos, "unexpected character in a value"));
            }
            pos += 1;
        }
        out.push((key, Cow::Borrowed(&line[vstart..pos])));
    }
}

/// The escapes of a Go double-quoted string literal.
pub fn unquote(s: &str) -> Option<String> {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        let e = chars.next()?;
        match e {
            'n' => out.push('\n'),
            't' => out.push('\t'),
            'r' => out.push('\r'),
            'a' => out.push('\x07'),
            'b' => out.push('\x08'),
            'f' => out.push('\x0c'),
            'v' => out.push('\x0b'),
            '\\' => out.push('\\'),
            '"' => out.push('"'),
            '\'' => out.push('\''),
            'x' => {
                let h: String = chars.by_ref().take(2).collect();
                let v = u8::from_str_radix(&h, 16).ok()?;
                if h.len() != 2 || v >= 0x80 {
                    return None;
                }
                out.push(v as char);
            }
            'u' | 'U' => {
                let n = if e == 'u' { 4 } else { 8 };
                let h: String = chars.by_ref().take(n).collect();
                if h.len() != n {
                    return None;
                }
                out.push(char::from_u32(u32::from_str_radix(&h, 16).ok()?)?);
            }
            '0'..='7' => {
                let rest: String = chars.by_ref().take(2).collect();
                let v = u32::from_str_radix(&format!("{e}{rest}"), 8).ok()?;
                if rest.len() != 2 || v > 255 {
                    return None;
                }
                out.push(char::from_u32(v)?);
            }
            _ => return None,
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(line: &str) -> (Vec<(String, String)>, Option<&'static str>) {
        let (p, e) = parse(line);
        (
            p.into_iter()
                .map(|(k, v)| (k.to_string(), v.into_owned()))
                .collect(),
            e.map(|e| e.what),
        )
    }

    fn kv(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn reads_bare_quoted_and_empty_values() {
        let (p, e) = pairs(r#"level=info msg="hello \"world\"" dur=1.5s flag empty= trace_id=abc"#);
        assert_eq!(e, None);
        assert_eq!(
            p,
            kv(&[
                ("level", "info"),
                ("msg", "hello \"world\""),
                ("dur", "1.5s"),
                ("flag", ""),
                ("empty", ""),
                ("trace_id", "abc")
            ])
        );
    }

    #[test]
    fn errors_keep_what_came_before() {
        assert_eq!(
            pairs("a=1 b=x=y c=2"),
            (kv(&[("a", "1")]), Some("unexpected character in a value"))
        );
        assert_eq!(
            pairs("a=1 b=\"open"),
            (kv(&[("a", "1")]), Some("unterminated quoted value"))
        );
        assert_eq!(pairs("a\"b=1").1, Some("unexpected '\"' in a key"));
        assert_eq!(pairs("=1").1, Some("unexpected '=' (a key is missing)"));
        assert_eq!(pairs(r#"a="\q""#).1, Some("invalid quoted value"));
    }

    #[test]
    fn go_escapes() {
        assert_eq!(unquote(r"a\tb\u00e9\x41\101"), Some("a\tbéAA".to_string()));
        assert_eq!(unquote(r"\"), None);
    }
}
