//! Prometheus relabeling (`relabel_configs` / `metric_relabel_configs`), with Prometheus's
//! semantics: defaults, anchored regexes, `$1`-style expansion, and every action
//! (replace, keep, drop, keepequal, dropequal, hashmod, labelmap, labeldrop, labelkeep,
//! lowercase, uppercase).

use md5::{Digest, Md5};
use regex::Regex;
use serde::Deserialize;

#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum RelabelAction {
    #[default]
    Replace,
    Keep,
    Drop,
    KeepEqual,
    DropEqual,
    HashMod,
    LabelMap,
    LabelDrop,
    LabelKeep,
    Lowercase,
    Uppercase,
}

/// One relabel step as written in YAML.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelabelConfig {
    #[serde(default)]
    pub source_labels: Vec<String>,
    #[serde(default = "default_separator")]
    pub separator: String,
    pub target_label: Option<String>,
    #[serde(default = "default_regex")]
    pub regex: String,
    pub modulus: Option<u64>,
    #[serde(default = "default_replacement")]
    pub replacement: String,
    #[serde(default)]
    pub action: RelabelAction,
}

fn default_separator() -> String {
    ";".into()
}
fn default_regex() -> String {
    "(.*)".into()
}
fn default_replacement() -> String {
    "$1".into()
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RelabelError {
    #[error("relabel rule {index}: invalid regex {regex:?}: {reason}")]
    Regex {
        index: usize,
        regex: String,
        reason: String,
    },
    #[error("relabel rule {index}: action {action} requires target_label")]
    MissingTarget { index: usize, action: &'static str },
    #[error("relabel rule {index}: action hashmod requires a modulus above 0")]
    MissingModulus { index: usize },
    #[error("relabel rule {index}: {0}", .reason)]
    Invalid { index: usize, reason: String },
}

/// A validated, compiled relabel step.
#[derive(Clone, Debug)]
pub struct RelabelRule {
    source_labels: Vec<String>,
    separator: String,
    regex: Pattern,
    modulus: u64,
    /// `target_label` and `replacement` as Go's `Regexp.Expand` reads them.
    target: Template,
    replacement: Template,
    /// The replacement is exactly `$1` and the regex `(.*)`: the value passes unchanged.
    copies_value: bool,
    action: RelabelAction,
}

/// A relabel regex, anchored as Prometheus anchors it, with shortcuts for the shapes most
/// configs use (`.*`, `.+`, literals, alternations of literals, `prefix.*`): they decide
/// a match without running the regex engine. `.` does not match a newline in Go's RE2 nor
/// in Rust's regex, so the shortcuts refuse values holding one, as the regex would.
#[derive(Clone, Debug)]
struct Pattern {
    regex: Regex,
    fast: Fast,
}

#[derive(Clone, Debug)]
enum Fast {
    Any,
    NonEmpty,
    Literal(String),
    OneOf(Vec<String>),
    Prefix(String),
    Regex,
}

fn is_plain(s: &str) -> bool {
    !s.chars().any(|c| "\\.+*?()[]{}^$|".contains(c))
}

/// Compiled relabel regexes by source, shared by every rules version of the process.
/// Compiling is most of a reload's cost and a reload usually changes few rules, so an
/// unchanged rule reuses its regex (a `Regex` clone shares the compiled program).
static COMPILED: std::sync::LazyLock<parking_lot::Mutex<std::collections::HashMap<String, Regex>>> =
    std::sync::LazyLock::new(Default::default);

/// Past this many distinct regexes the cache starts over, so a process reloading ever-new
/// rules keeps bounded memory.
const COMPILED_MAX: usize = 20_000;

fn compile_anchored(src: &str) -> Result<Regex, regex::Error> {
    if let Some(re) = COMPILED.lock().get(src) {
        return Ok(re.clone());
    }
    // Compiled outside the lock: another reload's compile does not wait for this one.
    let re = Regex::new(&format!("^(?:{src})$"))?;
    let mut cache = COMPILED.lock();
    if cache.len() >= COMPILED_MAX {
        cache.clear();
    }
    cache.insert(src.to_owned(), re.clone());
    Ok(re)
}

impl Pattern {
    fn new(src: &str) -> Result<Pattern, regex::Error> {
        let regex = compile_anchored(src)?;
        let fast = match src {
            ".*" | "(.*)" => Fast::Any,
            ".+" | "(.+)" => Fast::NonEmpty,
            s if is_plain(s) => Fast::Literal(s.to_owned()),
            s if s.split('|').all(is_plain) => {
                Fast::OneOf(s.split('|').map(str::to_owned).collect())
            }
            s if s.ends_with(".*") && is_plain(&s[..s.len() - 2]) => {
                Fast::Prefix(s[..s.len() - 2].to_owned())
            }
            _ => Fast::Regex,
        };
        Ok(Pattern { regex, fast })
    }

    #[inline]
    fn is_match(&self, s: &str) -> bool {
        match &self.fast {
            Fast::Any => !s.contains('\n'),
            Fast::NonEmpty => !s.is_empty() && !s.contains('\n'),
            Fast::Literal(l) => s == l,
            Fast::OneOf(v) => v.iter().any(|l| l == s),
            Fast::Prefix(p) => s.starts_with(p.as_str()) && !s[p.len()..].contains('\n'),
            Fast::Regex => self.regex.is_match(s),
        }
    }
}

/// A replacement (or target label) template, parsed once the way Go's
/// `regexp.Regexp.Expand` reads it: `$name` / `${name}` with the longest name of letters,
/// digits and `_`; a number without a leading zero is a group index, anything else a group
/// name; `$$` is a `$`; a `$` that starts no reference is kept as text; a reference to a
/// group that did not take part, or does not exist, expands to nothing.
#[derive(Clone, Debug, PartialEq)]
struct Template {
    parts: Vec<Part>,
}

#[derive(Clone, Debug, PartialEq)]
enum Part {
    Text(String),
    /// A group index (`None`: a name the regex does not have).
    Group(Option<usize>),
}

impl Template {
    fn parse(t: &str, re: &Regex) -> Template {
        let mut parts = Vec::new();
        let mut text = String::new();
        let mut rest = t;
        while let Some(at) = rest.find('$') {
            text.push_str(&rest[..at]);
            rest = &rest[at + 1..];
            if let Some(r) = rest.strip_prefix('$') {
                text.push('$');
                rest = r;
                continue;
            }
            match extract(rest) {
                Some((name, num, after)) => {
                    if !text.is_empty() {
                        parts.push(Part::Text(std::mem::take(&mut text)));
                    }
                    let group = match num {
                        Some(n) => Some(n),
                        None => re.capture_names().position(|n| n == Some(name)),
                    };
                    parts.push(Part::Group(group));
                    rest = after;
                }
                None => text.push('$'),
            }
        }
        text.push_str(rest);
        if !text.is_empty() {
            parts.push(Part::Text(text));
        }
        Template { parts }
    }

    /// The text, when the template holds no reference.
    fn constant(&self) -> Option<&str> {
        match self.parts.as_slice() {
            [] => Some(""),
            [Part::Text(t)] => Some(t),
            _ => None,
        }
    }

    fn expand(&self, hay: &str, locs: &regex::CaptureLocations, out: &mut String) {
        for p in &self.parts {
            match p {
                Part::Text(t) => out.push_str(t),
                Part::Group(Some(i)) => {
                    if let Some((a, b)) = locs.get(*i) {
                        out.push_str(&hay[a..b]);
                    }
                }
                Part::Group(None) => {}
            }
        }
    }
}

/// Go's `extract`: the reference after a `$` — its name, its index if numeric, and the
/// rest of the template.
fn extract(s: &str) -> Option<(&str, Option<usize>, &str)> {
    let (brace, body) = match s.strip_prefix('{') {
        Some(b) => (true, b),
        None => (false, s),
    };
    let end = body
        .char_indices()
        .find(|(_, c)| !(c.is_alphabetic() || c.is_numeric() || *c == '_'))
        .map_or(body.len(), |(i, _)| i);
    if end == 0 {
        return None;
    }
    let name = &body[..end];
    let mut rest = &body[end..];
    if brace {
        rest = rest.strip_prefix('}')?;
    }
    let num = if name.bytes().all(|b| b.is_ascii_digit())
        && !(name.len() > 1 && name.starts_with('0'))
        && name.len() <= 8
    {
        name.parse().ok()
    } else {
        None
    };
    Some((name, num, rest))
}

/// Per-batch working memory of a list of rules: capture slots per rule, a buffer for
/// joined source values, and the last hashmod input and result per rule (a batch's series
/// arrive grouped by target, so most hashmods repeat).
pub struct Scratch {
    val: String,
    per_rule: Vec<RuleScratch>,
}

struct RuleScratch {
    locs: regex::CaptureLocations,
    last_hash: Option<(String, String)>,
}

impl Scratch {
    pub fn new(rules: &[RelabelRule]) -> Scratch {
        Scratch {
            val: String::new(),
            per_rule: rules
                .iter()
                .map(|r| RuleScratch {
                    locs: r.regex.regex.capture_locations(),
                    last_hash: None,
                })
                .collect(),
        }
    }
}

fn action_name(a: RelabelAction) -> &'static str {
    match a {
        RelabelAction::Replace => "replace",
        RelabelAction::Keep => "keep",
        RelabelAction::Drop => "drop",
        RelabelAction::KeepEqual => "keepequal",
        RelabelAction::DropEqual => "dropequal",
        RelabelAction::HashMod => "hashmod",
        RelabelAction::LabelMap => "labelmap",
        RelabelAction::LabelDrop => "labeldrop",
        RelabelAction::LabelKeep => "labelkeep",
        RelabelAction::Lowercase => "lowercase",
        RelabelAction::Uppercase => "uppercase",
    }
}

/// Prometheus's legacy label-name rule, which relabeling enforces on targets it writes.
pub fn is_valid_label_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

impl RelabelConfig {
    /// Checks the step as Prometheus does when it loads a config, and compiles it.
    /// `index` numbers the step in messages.
    pub fn compile(&self, index: usize) -> Result<RelabelRule, RelabelError> {
        use RelabelAction::*;
        let regex = Pattern::new(&self.regex).map_err(|e| RelabelError::Regex {
            index,
            regex: self.regex.clone(),
            reason: e.to_string(),
        })?;
        let action = self.action;
        let target = self.target_label.clone().unwrap_or_default();
        let needs_target = matches!(
            action,
            Replace | HashMod | Lowercase | Uppercase | KeepEqual | DropEqual
        );
        if needs_target && target.is_empty() {
            return Err(RelabelError::MissingTarget {
                index,
                action: action_name(action),
            });
        }
        // Only `replace` may build its target from capture groups.
        if needs_target && action != Replace && !is_valid_label_name(&target) {
            return Err(RelabelError::Invalid {
                index,
                reason: format!(
                    "{target:?} is not a valid label name for action {}",
                    action_name(action)
                ),
            });
        }
        if action == HashMod && self.modulus.unwrap_or(0) == 0 {
            return Err(RelabelError::MissingModulus { index });
        }
        if matches!(action, LabelDrop | LabelKeep)
            && (!self.source_labels.is_empty()
                || self.target_label.is_some()
                || self.modulus.is_some()
                || self.separator != default_separator()
                || self.replacement != default_replacement())
        {
            return Err(RelabelError::Invalid {
                index,
                reason: format!(
                    "action {} takes only regex (source_labels, target_label, modulus, separator and replacement must be unset)",
                    action_name(action)
                ),
            });
        }
        if matches!(action, KeepEqual | DropEqual)
            && (self.regex != default_regex() || self.replacement != default_replacement())
        {
            return Err(RelabelError::Invalid {
                index,
                reason: format!(
                    "action {} takes no regex or replacement",
                    action_name(action)
                ),
            });
        }
        let target_t = Template::parse(&target, &regex.regex);
        let replacement = Template::parse(&self.replacement, &regex.regex);
        let copies_value =
            matches!(self.regex.as_str(), "(.*)") && replacement.parts == [Part::Group(Some(1))];
        Ok(RelabelRule {
            source_labels: self.source_labels.clone(),
            separator: self.separator.clone(),
            regex,
            modulus: self.modulus.unwrap_or(0),
            target: target_t,
            replacement,
            copies_value,
            action,
        })
    }
}

/// A label set being relabeled: (name, value) pairs, kept sorted by name.
pub type Pairs = Vec<(String, String)>;

fn get<'p>(labels: &'p Pairs, name: &str) -> &'p str {
    labels
        .binary_search_by(|(n, _)| n.as_str().cmp(name))
        .map(|i| labels[i].1.as_str())
        .unwrap_or("")
}

fn set(labels: &mut Pairs, name: &str, value: String) {
    match labels.binary_search_by(|(n, _)| n.as_str().cmp(name)) {
        Ok(i) if value.is_empty() => {
            labels.remove(i);
        }
        Ok(i) if labels[i].1 == value => {}
        Ok(i) => labels[i].1 = value,
        Err(_) if value.is_empty() => {}
        Err(i) => labels.insert(i, (name.to_owned(), value)),
    }
}

fn target_name(t: &Template) -> &str {
    t.constant().unwrap_or("")
}

impl RelabelRule {
    /// Applies the step; `false` means the series is dropped.
    pub fn apply(&self, labels: &mut Pairs) -> bool {
        let mut scratch = Scratch::new(std::slice::from_ref(self));
        self.apply_with(labels, &mut scratch, 0)
    }

    /// Applies the step with the working memory of rule number `i` of `scratch`.
    pub fn apply_with(&self, labels: &mut Pairs, scratch: &mut Scratch, i: usize) -> bool {
        use RelabelAction::*;
        // The joined source values: borrowed for one source label, built in the scratch
        // buffer for several.
        let mut buf = std::mem::take(&mut scratch.val);
        let keep = {
            let val: &str = match self.source_labels.as_slice() {
                [] => "",
                [one] => get(labels, one),
                many => {
                    buf.clear();
                    for (k, n) in many.iter().enumerate() {
                        if k > 0 {
                            buf.push_str(&self.separator);
                        }
                        buf.push_str(get(labels, n));
                    }
                    &buf
                }
            };
            match self.action {
                Drop => !self.regex.is_match(val),
                Keep => self.regex.is_match(val),
                DropEqual => get(labels, target_name(&self.target)) != val,
                KeepEqual => get(labels, target_name(&self.target)) == val,
                Replace => {
                    if let Some((target, value)) = self.replace(val, &mut scratch.per_rule[i]) {
                        set(labels, &target, value);
                    }
                    true
                }
                Lowercase => {
                    let v = val.to_lowercase();
                    set(labels, target_name(&self.target), v);
                    true
                }
                Uppercase => {
                    let v = val.to_uppercase();
                    set(labels, target_name(&self.target), v);
                    true
                }
                HashMod => {
                    let rs = &mut scratch.per_rule[i];
                    let shard = match &rs.last_hash {
                        Some((input, out)) if input == val => out.clone(),
                        _ => {
                            let digest = Md5::digest(val.as_bytes());
                            // Prometheus folds the digest's last 8 bytes, big-endian, into
                            // a u64.
                            let mut last = [0u8; 8];
                            last.copy_from_slice(&digest[8..16]);
                            let out = (u64::from_be_bytes(last) % self.modulus).to_string();
                            rs.last_hash = Some((val.to_owned(), out.clone()));
                            out
                        }
                    };
                    set(labels, target_name(&self.target), shard);
                    true
                }
                LabelMap => {
                    let rs = &mut scratch.per_rule[i];
                    let mut mapped: Vec<(String, String)> = Vec::new();
                    for (n, v) in labels.iter() {
                        if !self.regex.is_match(n) {
                            continue;
                        }
                        let name = match self.replacement.constant() {
                            Some(c) => c.to_owned(),
                            None => {
                                let mut out = String::new();
                                if self.regex.regex.captures_read(&mut rs.locs, n).is_some() {
                                    self.replacement.expand(n, &rs.locs, &mut out);
                                }
                                out
                            }
                        };
                        mapped.push((name, v.clone()));
                    }
                    for (n, v) in mapped {
                        set(labels, &n, v);
                    }
                    true
                }
                LabelDrop => {
                    labels.retain(|(n, _)| !self.regex.is_match(n));
                    true
                }
                LabelKeep => {
                    labels.retain(|(n, _)| self.regex.is_match(n));
                    true
                }
            }
        };
        scratch.val = buf;
        keep
    }

    /// The target label and value a `replace` step writes, if its regex matches.
    fn replace(&self, val: &str, rs: &mut RuleScratch) -> Option<(String, String)> {
        let constant_target = self.target.constant();
        if self.copies_value {
            // `(.*)` → `$1`: the value itself, when the regex matches (no newline).
            if val.contains('\n') {
                return None;
            }
            let target = constant_target?;
            return is_valid_label_name(target).then(|| (target.to_owned(), val.to_owned()));
        }
        let constant_value = self.replacement.constant();
        if let (Some(t), Some(v)) = (constant_target, constant_value) {
            if !self.regex.is_match(val) || !is_valid_label_name(t) {
                return None;
            }
            return Some((t.to_owned(), v.to_owned()));
        }
        self.regex.regex.captures_read(&mut rs.locs, val)?;
        let target = match constant_target {
            Some(t) => t.to_owned(),
            None => {
                let mut t = String::new();
                self.target.expand(val, &rs.locs, &mut t);
                t
            }
        };
        if !is_valid_label_name(&target) {
            return None;
        }
        let mut value = String::new();
        self.replacement.expand(val, &rs.locs, &mut value);
        Some((target, value))
    }
}

/// Applies steps in order; `None` when a step drops the series.
pub fn relabel(rules: &[RelabelRule], mut labels: Pairs) -> Option<Pairs> {
    let mut scratch = Scratch::new(rules);
    for (i, r) in rules.iter().enumerate() {
        if !r.apply_with(&mut labels, &mut scratch, i) {
            return None;
        }
    }
    Some(labels)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(yaml: &str) -> Vec<RelabelRule> {
        let cfgs: Vec<RelabelConfig> = serde_saphyr::from_str(yaml).unwrap();
        cfgs.iter()
            .enumerate()
            .map(|(i, c)| c.compile(i).unwrap())
            .collect()
    }

    fn pairs(p: &[(&str, &str)]) -> Pairs {
        let mut v: Pairs = p
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        v.sort();
        v
    }

    #[test]
    fn replace_with_captures_and_defaults() {
        let r =
            rules("- source_labels: [instance]\n  regex: '([^:]+):\\d+'\n  target_label: host\n");
        let out = relabel(&r, pairs(&[("__name__", "up"), ("instance", "db1:9100")])).unwrap();
        assert_eq!(get(&out, "host"), "db1");
        // No match: unchanged.
        let out = relabel(&r, pairs(&[("__name__", "up"), ("instance", "db1")])).unwrap();
        assert_eq!(get(&out, "host"), "");
        // Target built from a capture; an empty replacement deletes the target.
        let r = rules(
            "- source_labels: [k, v]\n  regex: '(.+);(.*)'\n  target_label: '${1}'\n  replacement: '$2'\n",
        );
        let out = relabel(&r, pairs(&[("k", "zone"), ("v", "eu"), ("zone", "us")])).unwrap();
        assert_eq!(get(&out, "zone"), "eu");
        let out = relabel(&r, pairs(&[("k", "zone"), ("zone", "us")])).unwrap();
        assert_eq!(get(&out, "zone"), "");
    }

    #[test]
    fn keep_drop_and_equal_variants() {
        let r = rules("- source_labels: [__name__]\n  regex: 'go_.*'\n  action: drop\n");
        assert!(relabel(&r, pairs(&[("__name__", "go_goroutines")])).is_none());
        assert!(relabel(&r, pairs(&[("__name__", "up")])).is_some());
        let r = rules("- source_labels: [job]\n  regex: 'api|db'\n  action: keep\n");
        assert!(relabel(&r, pairs(&[("job", "api")])).is_some());
        assert!(
            relabel(&r, pairs(&[("job", "apis")])).is_none(),
            "regex is anchored"
        );
        let r = rules("- source_labels: [a]\n  target_label: b\n  action: keepequal\n");
        assert!(relabel(&r, pairs(&[("a", "1"), ("b", "1")])).is_some());
        assert!(relabel(&r, pairs(&[("a", "1"), ("b", "2")])).is_none());
        let r = rules("- source_labels: [a]\n  target_label: b\n  action: dropequal\n");
        assert!(relabel(&r, pairs(&[("a", "1"), ("b", "1")])).is_none());
    }

    #[test]
    fn label_actions() {
        let r = rules(
            "- regex: 'meta_(.+)'\n  action: labelmap\n  replacement: '$1'\n- regex: 'meta_.*'\n  action: labeldrop\n",
        );
        let out = relabel(&r, pairs(&[("__name__", "x"), ("meta_zone", "eu")])).unwrap();
        assert_eq!(out, pairs(&[("__name__", "x"), ("zone", "eu")]));
        let r = rules("- regex: '__name__|job'\n  action: labelkeep\n");
        let out = relabel(&r, pairs(&[("__name__", "x"), ("job", "a"), ("pod", "p")])).unwrap();
        assert_eq!(out, pairs(&[("__name__", "x"), ("job", "a")]));
        let r = rules("- source_labels: [job]\n  target_label: job\n  action: uppercase\n");
        assert_eq!(
            get(&relabel(&r, pairs(&[("job", "Api")])).unwrap(), "job"),
            "API"
        );
    }

    #[test]
    fn hashmod_matches_prometheus() {
        // md5("foo") = acbd18db4cc2f85c edfa 4a6f 5ef3 8a5e? Its last 8 bytes, big-endian,
        // modulo 1000, as Prometheus computes `sum64(md5.Sum(...)) % modulus`.
        let r = rules(
            "- source_labels: [instance]\n  target_label: shard\n  modulus: 1000\n  action: hashmod\n",
        );
        let out = relabel(&r, pairs(&[("instance", "foo")])).unwrap();
        let digest = Md5::digest(b"foo");
        let want = u64::from_be_bytes(digest[8..16].try_into().unwrap()) % 1000;
        assert_eq!(get(&out, "shard"), want.to_string());
    }

    #[test]
    fn shortcuts_agree_with_the_regex() {
        let inputs = [
            "", "abc", "a", "b", "debug_", "debug_x", "debug_\n", "a\nb", "x.y", "xzy", "\n",
        ];
        for pat in [
            ".*", "(.*)", ".+", "(.+)", "abc", "a|b|", "debug_.*", "x.y", "", "a|b",
        ] {
            let p = Pattern::new(pat).unwrap();
            for i in inputs {
                assert_eq!(p.is_match(i), p.regex.is_match(i), "{pat:?} on {i:?}");
            }
        }
        assert!(matches!(
            Pattern::new("debug_.*").unwrap().fast,
            Fast::Prefix(_)
        ));
        assert!(matches!(Pattern::new("x.y").unwrap().fast, Fast::Regex));
    }

    #[test]
    fn templates_expand_like_go() {
        let re = Regex::new("^(?:(a)(b)?(?P<word>c))$").unwrap();
        let mut locs = re.capture_locations();
        re.captures_read(&mut locs, "ac").unwrap();
        let expand = |t: &str| {
            let mut out = String::new();
            Template::parse(t, &re).expand("ac", &locs, &mut out);
            out
        };
        assert_eq!(expand("$1"), "a");
        assert_eq!(expand("${1}_x"), "a_x");
        assert_eq!(
            expand("$1_x"),
            "",
            "the name is 1_x, which the regex does not have"
        );
        assert_eq!(expand("[$2]"), "[]", "a group that took no part");
        assert_eq!(expand("$word/${word}"), "c/c");
        assert_eq!(expand("$$1"), "$1");
        assert_eq!(expand("cost $"), "cost $");
        assert_eq!(expand("$-1"), "$-1");
        assert_eq!(expand("${1"), "${1");
        assert_eq!(expand("$01"), "", "leading zeros make a name");
        assert_eq!(expand("$9"), "");
        assert_eq!(Template::parse("plain", &re).constant(), Some("plain"));
    }

    #[test]
    fn hashmod_cache_does_not_leak_between_values() {
        let r = rules(
            "- source_labels: [instance]\n  target_label: shard\n  modulus: 1000\n  action: hashmod\n",
        );
        let mut scratch = Scratch::new(&r);
        let mut shard = |inst: &str| {
            let mut p = pairs(&[("instance", inst)]);
            r[0].apply_with(&mut p, &mut scratch, 0);
            get(&p, "shard").to_owned()
        };
        let (a, b) = (shard("foo"), shard("bar"));
        assert_ne!(a, b);
        assert_eq!(shard("foo"), a);
        let digest = Md5::digest(b"bar");
        let want = u64::from_be_bytes(digest[8..16].try_into().unwrap()) % 1000;
        assert_eq!(b, want.to_string());
    }

    #[test]
    fn invalid_configs_are_refused_with_their_index() {
        let bad = |y: &str| {
            let c: Vec<RelabelConfig> = serde_saphyr::from_str(y).unwrap();
            c[0].compile(3).unwrap_err().to_string()
        };
        assert!(bad("- action: replace\n").contains("rule 3"));
        assert!(bad("- target_label: x\n  action: hashmod\n").contains("modulus"));
        assert!(bad("- regex: '('\n").contains("invalid regex"));
        assert!(
            bad("- regex: x\n  target_label: y\n  action: labeldrop\n")
                .contains("takes only regex")
        );
        assert!(
            bad("- target_label: '1x'\n  action: lowercase\n").contains("not a valid label name")
        );
    }
}
