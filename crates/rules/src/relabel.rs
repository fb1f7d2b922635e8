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
    target_label: String,
    regex: Regex,
    modulus: u64,
    replacement: String,
    action: RelabelAction,
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
        let regex =
            Regex::new(&format!("^(?:{})$", self.regex)).map_err(|e| RelabelError::Regex {
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
        Ok(RelabelRule {
            source_labels: self.source_labels.clone(),
            separator: self.separator.clone(),
            target_label: target,
            regex,
            modulus: self.modulus.unwrap_or(0),
            replacement: self.replacement.clone(),
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
        Ok(i) => labels[i].1 = value,
        Err(_) if value.is_empty() => {}
        Err(i) => labels.insert(i, (name.to_owned(), value)),
    }
}

impl RelabelRule {
    /// Applies the step; `false` means the series is dropped.
    pub fn apply(&self, labels: &mut Pairs) -> bool {
        use RelabelAction::*;
        let val = self
            .source_labels
            .iter()
            .map(|n| get(labels, n))
            .collect::<Vec<_>>()
            .join(&self.separator);
        match self.action {
            Drop => return !self.regex.is_match(&val),
            Keep => return self.regex.is_match(&val),
            DropEqual => return get(labels, &self.target_label) != val,
            KeepEqual => return get(labels, &self.target_label) == val,
            Replace => {
                let Some(caps) = self.regex.captures(&val) else {
                    return true;
                };
                let mut target = String::new();
                caps.expand(&self.target_label, &mut target);
                if !is_valid_label_name(&target) {
                    return true;
                }
                let mut value = String::new();
                caps.expand(&self.replacement, &mut value);
                set(labels, &target, value);
            }
            Lowercase => set(labels, &self.target_label, val.to_lowercase()),
            Uppercase => set(labels, &self.target_label, val.to_uppercase()),
            HashMod => {
                let digest = Md5::digest(val.as_bytes());
                // Prometheus folds the digest's last 8 bytes, big-endian, into a u64.
                let mut last = [0u8; 8];
                last.copy_from_slice(&digest[8..16]);
                let m = u64::from_be_bytes(last) % self.modulus;
                set(labels, &self.target_label, m.to_string());
            }
            LabelMap => {
                let mapped: Vec<(String, String)> = labels
                    .iter()
                    .filter(|(n, _)| self.regex.is_match(n))
                    .map(|(n, v)| {
                        (
                            self.regex
                                .replace_all(n, self.replacement.as_str())
                                .into_owned(),
                            v.clone(),
                        )
                    })
                    .collect();
                for (n, v) in mapped {
                    set(labels, &n, v);
                }
            }
            LabelDrop => labels.retain(|(n, _)| !self.regex.is_match(n)),
            LabelKeep => labels.retain(|(n, _)| self.regex.is_match(n)),
        }
        true
    }
}

/// Applies steps in order; `None` when a step drops the series.
pub fn relabel(rules: &[RelabelRule], mut labels: Pairs) -> Option<Pairs> {
    for r in rules {
        if !r.apply(&mut labels) {
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
