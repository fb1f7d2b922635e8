//! Loki's stream label string, `{job="api", env="prod"}` (protobuf pushes carry labels
//! this way): Prometheus selector syntax with `=` only, Go string escapes.

use lastmile_model::Labels;

pub fn valid_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Parses `{name="value", …}` into pairs in their order (duplicates left to the caller).
pub fn parse_labels(s: &str) -> Result<Vec<(String, String)>, String> {
    let b = s.as_bytes();
    let mut pos = 0;
    let skip_ws = |pos: &mut usize| {
        while *pos < b.len() && b[*pos].is_ascii_whitespace() {
            *pos += 1;
        }
    };
    skip_ws(&mut pos);
    if b.get(pos) != Some(&b'{') {
        return Err(format!("labels {s:?} must start with '{{'"));
    }
    pos += 1;
    let mut out = Vec::new();
    loop {
        skip_ws(&mut pos);
        if b.get(pos) == Some(&b'}') {
            pos += 1;
            break;
        }
        let start = pos;
        while pos < b.len() && (b[pos].is_ascii_alphanumeric() || b[pos] == b'_') {
            pos += 1;
        }
        let name = &s[start..pos];
        if name.is_empty() {
            return Err(format!(
                "expected a label name at position {} of {s:?}",
                pos + 1
            ));
        }
        skip_ws(&mut pos);
        if b.get(pos) != Some(&b'=') {
            return Err(format!(
                "expected '=' after label name {name:?} in {s:?} (stream labels only use '=')"
            ));
        }
        pos += 1;
        skip_ws(&mut pos);
        if b.get(pos) != Some(&b'"') {
            return Err(format!(
                "expected a quoted value for label {name:?} in {s:?}"
            ));
        }
        let vstart = pos + 1;
        pos += 1;
        let mut escaped = false;
        while pos < b.len() {
            if escaped {
                escaped = false;
            } else if b[pos] == b'\\' {
                escaped = true;
            } else if b[pos] == b'"' {
                break;
            }
            pos += 1;
        }
        if pos >= b.len() {
            return Err(format!("unterminated value of label {name:?} in {s:?}"));
        }
        let raw = &s[vstart..pos];
        pos += 1;
        let value = lastmile_model::logfmt::unquote(raw)
            .ok_or_else(|| format!("invalid escape in the value of label {name:?} in {s:?}"))?;
        out.push((name.to_string(), value));
        skip_ws(&mut pos);
        match b.get(pos) {
            Some(b',') => pos += 1,
            Some(b'}') => {}
            _ => {
                return Err(format!(
                    "expected ',' or '}}' after label {name:?} in {s:?}"
                ));
            }
        }
    }
    skip_ws(&mut pos);
    if pos != b.len() {
        return Err(format!("unexpected text after '}}' in {s:?}"));
    }
    Ok(out)
}

/// Formats labels as Loki does: `{a="b", c="d"}`, values with Go escapes.
pub fn format_labels(labels: &Labels) -> String {
    let mut s = String::from("{");
    for (i, l) in labels.iter().enumerate() {
        if i > 0 {
            s.push_str(", ");
        }
        s.push_str(l.name);
        s.push_str("=\"");
        for c in l.value.chars() {
            match c {
                '"' => s.push_str("\\\""),
                '\\' => s.push_str("\\\\"),
                '\n' => s.push_str("\\n"),
                '\t' => s.push_str("\\t"),
                '\r' => s.push_str("\\r"),
                c => s.push(c),
            }
        }
        s.push('"');
    }
    s.push('}');
    s
}
