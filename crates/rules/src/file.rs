//! The rules file: one YAML document in Prometheus's style holding every kind of rule and
//! the tests that check them. The same sections may also sit in `lastmile serve`'s config
//! file itself; several files are merged in order (lists are concatenated; `cardinality`,
//! `naming`, `tail_sampling`, `inherit.resource_attributes` and `canary` may be set in
//! only one of them).
//!
//! ```yaml
//! metric_relabel_configs: [...]   # Prometheus relabeling
//! inherit: {resource_attributes: [...], static: [...]}
//! cardinality: {max_series: ..., deny_labels: [...], ...}
//! naming: {mode: warn, ...}
//! tail_sampling: {decision_wait: 10s, policies: [...]}
//! log_rules: [...]
//! canary: {fraction: 0.05}
//! tests: [...]
//! ```

use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::cardinality::CardinalityConfig;
use crate::inherit::InheritConfig;
use crate::logs::LogRuleConfig;
use crate::naming::NamingConfig;
use crate::relabel::RelabelConfig;
use crate::sampling::TailSamplingConfig;
use crate::testing::RuleTestConfig;

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CanaryConfig {
    /// Fraction of streams (series, log streams, traces; chosen by hash) the new version
    /// applies to until it is promoted.
    pub fraction: f64,
}

/// Declares the document's sections once, for both kinds of document: [`RulesDoc`], which
/// ignores other keys (the serve config's own keys sit beside them), and the strict form a
/// rules file is read with, so that one parse both reads it and refuses unknown keys.
macro_rules! rules_doc {
    ($($(#[$attr:meta])* $field:ident: $ty:ty,)*) => {
        /// One document's rule sections, each with where it was written.
        #[derive(Debug, Default, Deserialize)]
        pub struct RulesDoc {
            $($(#[$attr])* pub $field: $ty,)*
        }

        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct StrictRulesDoc {
            $($(#[$attr])* $field: $ty,)*
        }

        impl From<StrictRulesDoc> for RulesDoc {
            fn from(d: StrictRulesDoc) -> RulesDoc {
                RulesDoc { $($field: d.$field,)* }
            }
        }

        /// Top-level keys of a rules file.
        pub const RULE_KEYS: &[&str] = &[$(stringify!($field),)*];
    };
}

rules_doc! {
    #[serde(default)]
    metric_relabel_configs: Vec<Spanned<RelabelConfig>>,
    inherit: Option<Spanned<InheritConfig>>,
    cardinality: Option<Spanned<CardinalityConfig>>,
    naming: Option<Spanned<NamingConfig>>,
    tail_sampling: Option<Spanned<TailSamplingConfig>>,
    #[serde(default)]
    log_rules: Vec<Spanned<LogRuleConfig>>,
    canary: Option<Spanned<CanaryConfig>>,
    #[serde(default)]
    tests: Vec<Spanned<RuleTestConfig>>,
}

/// What a document is: a rules file (only rule keys allowed) or the serve config (its
/// other keys belong to the config and are checked there).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SourceKind {
    RulesFile,
    ServeConfig,
}

/// The text of one rules source and where it came from.
#[derive(Clone, Debug)]
pub struct RulesSource {
    pub name: String,
    pub text: String,
    pub kind: SourceKind,
}

impl RulesSource {
    pub fn rules_file(name: impl Into<String>, text: impl Into<String>) -> Self {
        RulesSource {
            name: name.into(),
            text: text.into(),
            kind: SourceKind::RulesFile,
        }
    }
}

/// Where something was written: file, line and column (1-based; 0 = unknown).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Loc {
    pub file: String,
    pub line: u64,
    pub column: u64,
}

impl Loc {
    pub fn of<T>(file: &str, s: &Spanned<T>) -> Loc {
        Loc {
            file: file.to_owned(),
            line: s.referenced.line(),
            column: s.referenced.column(),
        }
    }
}

impl std::fmt::Display for Loc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.line, self.column) {
            (0, _) => write!(f, "{}", self.file),
            (l, 0) => write!(f, "{}:{l}", self.file),
            (l, c) => write!(f, "{}:{l}:{c}", self.file),
        }
    }
}

/// Why a rules file was refused: where and why.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, thiserror::Error)]
#[error("{loc}: {message}")]
pub struct LoadError {
    pub loc: Loc,
    pub message: String,
}

impl LoadError {
    pub fn new(loc: Loc, message: impl Into<String>) -> Self {
        LoadError {
            loc,
            message: message.into(),
        }
    }

    pub fn in_file(file: &str, message: impl Into<String>) -> Self {
        Self::new(
            Loc {
                file: file.to_owned(),
                ..Default::default()
            },
            message,
        )
    }
}

fn has_content(text: &str) -> bool {
    text.lines().any(|l| {
        let t = l.trim();
        !t.is_empty() && !t.starts_with('#') && t != "---"
    })
}

/// The 1-based line of a top-level key, for messages about keys.
fn key_line(text: &str, key: &str) -> u64 {
    text.lines()
        .position(|l| l.starts_with(key) && l[key.len()..].trim_start().starts_with(':'))
        .map_or(0, |i| i as u64 + 1)
}

/// Parses one source. YAML errors carry the parser's line and column.
pub fn parse_doc(src: &RulesSource) -> Result<RulesDoc, LoadError> {
    if !has_content(&src.text) {
        return Ok(RulesDoc::default());
    }
    let yaml_err = |e: serde_saphyr::Error| {
        let (line, column) = e.location().map_or((0, 0), |l| (l.line(), l.column()));
        // The rendered error repeats the location and a snippet; the first line is the
        // reason.
        let text = e.to_string();
        let mut reason = text.lines().next().unwrap_or("invalid YAML").trim();
        reason = reason.strip_prefix("error:").unwrap_or(reason).trim_start();
        // "line 4 column 19: expected …": the location is already in front.
        if let Some((head, rest)) = reason.split_once(": ")
            && head.starts_with("line ")
            && head.contains(" column ")
        {
            reason = rest;
        }
        let reason = reason.to_owned();
        LoadError::new(
            Loc {
                file: src.name.clone(),
                line,
                column,
            },
            reason,
        )
    };
    if src.kind == SourceKind::RulesFile {
        return serde_saphyr::from_str::<StrictRulesDoc>(&src.text)
            .map(RulesDoc::from)
            .map_err(|e| unknown_key(src, &e).unwrap_or_else(|| yaml_err(e)));
    }
    serde_saphyr::from_str(&src.text).map_err(yaml_err)
}

/// A rules file's unknown top-level key, said in the file's terms, at the key's line.
fn unknown_key(src: &RulesSource, e: &serde_saphyr::Error) -> Option<LoadError> {
    let text = e.to_string();
    let key = text.split("unknown field `").nth(1)?.split('`').next()?;
    let line = key_line(&src.text, key);
    // A nested section's unknown field is that section's error, reported as YAML gives it.
    if line == 0 {
        return None;
    }
    Some(LoadError::new(
        Loc {
            file: src.name.clone(),
            line,
            column: 1,
        },
        format!(
            "unknown key {key:?} (a rules file holds {})",
            RULE_KEYS.join(", ")
        ),
    ))
}

/// Every source's sections merged, each item with its location.
#[derive(Debug, Default)]
pub struct Merged {
    pub relabel: Vec<(Loc, RelabelConfig)>,
    pub inherit_attributes: Option<(Loc, Vec<String>)>,
    pub inherit_static: Vec<(Loc, crate::inherit::StaticInheritConfig)>,
    pub cardinality: Option<(Loc, CardinalityConfig)>,
    pub naming: Option<(Loc, NamingConfig)>,
    pub tail_sampling: Option<(Loc, TailSamplingConfig)>,
    pub log_rules: Vec<(Loc, LogRuleConfig)>,
    pub canary: Option<(Loc, CanaryConfig)>,
    pub tests: Vec<(Loc, RuleTestConfig)>,
    pub sources: Vec<String>,
}

fn once<T>(slot: &mut Option<(Loc, T)>, key: &str, loc: Loc, value: T) -> Result<(), LoadError> {
    if let Some((first, _)) = slot {
        return Err(LoadError::new(
            loc,
            format!("{key} is already set at {first}; set it in one file only"),
        ));
    }
    *slot = Some((loc, value));
    Ok(())
}

/// Parses and merges the sources, in order.
pub fn merge(sources: &[RulesSource]) -> Result<Merged, LoadError> {
    let mut m = Merged::default();
    for src in sources {
        let doc = parse_doc(src)?;
        let f = src.name.as_str();
        m.sources.push(src.name.clone());
        for r in doc.metric_relabel_configs {
            m.relabel.push((Loc::of(f, &r), r.value));
        }
        if let Some(i) = doc.inherit {
            let loc = Loc::of(f, &i);
            if !i.value.resource_attributes.is_empty() {
                once(
                    &mut m.inherit_attributes,
                    "inherit.resource_attributes",
                    loc.clone(),
                    i.value.resource_attributes,
                )?;
            }
            for s in i.value.static_labels {
                m.inherit_static.push((loc.clone(), s));
            }
        }
        if let Some(c) = doc.cardinality {
            once(&mut m.cardinality, "cardinality", Loc::of(f, &c), c.value)?;
        }
        if let Some(c) = doc.naming {
            once(&mut m.naming, "naming", Loc::of(f, &c), c.value)?;
        }
        if let Some(c) = doc.tail_sampling {
            once(
                &mut m.tail_sampling,
                "tail_sampling",
                Loc::of(f, &c),
                c.value,
            )?;
        }
        for r in doc.log_rules {
            m.log_rules.push((Loc::of(f, &r), r.value));
        }
        if let Some(c) = doc.canary {
            once(&mut m.canary, "canary", Loc::of(f, &c), c.value)?;
        }
        for t in doc.tests {
            m.tests.push((Loc::of(f, &t), t.value));
        }
    }
    Ok(m)
}

/// A fingerprint of the sources' names and texts: a reload of unchanged files is a no-op.
pub fn fingerprint(sources: &[RulesSource]) -> u64 {
    let mut h = 0x0072_756c_6573_u64;
    for s in sources {
        h = xxhash_rust::xxh3::xxh3_64_with_seed(s.name.as_bytes(), h);
        h = xxhash_rust::xxh3::xxh3_64_with_seed(s.text.as_bytes(), h);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_errors_and_unknown_keys_have_lines() {
        let e = parse_doc(&RulesSource::rules_file(
            "r.yml",
            "metric_relabel_configs:\n  - action: drop\n    regex: x\ncardinalty:\n  max_series: 1\n",
        ))
        .unwrap_err();
        assert_eq!(e.loc.line, 4, "{e}");
        assert!(
            e.to_string()
                .contains("unknown key \"cardinalty\" (a rules file holds metric_relabel_configs,"),
            "{e}"
        );
        let e = parse_doc(&RulesSource::rules_file(
            "r.yml",
            "metric_relabel_configs:\n  - action: drop\n    regexp: x\n",
        ))
        .unwrap_err();
        assert_eq!(e.loc.line, 3, "{e}");
        assert!(e.to_string().starts_with("r.yml:3:"), "{e}");
        let e = parse_doc(&RulesSource::rules_file("r.yml", "tests: [1, 2\n")).unwrap_err();
        assert!(e.loc.line >= 1, "{e}");
    }

    #[test]
    fn empty_files_and_config_files() {
        assert!(parse_doc(&RulesSource::rules_file("r.yml", "# nothing\n\n")).is_ok());
        let src = RulesSource {
            name: "c.yml".into(),
            text: "storage:\n  retention: 1d\nmetric_relabel_configs:\n  - action: drop\n    source_labels: [x]\n".into(),
            kind: SourceKind::ServeConfig,
        };
        let d = parse_doc(&src).unwrap();
        assert_eq!(d.metric_relabel_configs.len(), 1);
        assert_eq!(d.metric_relabel_configs[0].referenced.line(), 4);
    }

    #[test]
    fn merging_concatenates_lists_and_refuses_two_budgets() {
        let a = RulesSource::rules_file(
            "a.yml",
            "metric_relabel_configs:\n  - action: drop\n    source_labels: [x]\ncardinality:\n  max_series: 10\n",
        );
        let b = RulesSource::rules_file(
            "b.yml",
            "metric_relabel_configs:\n  - action: drop\n    source_labels: [y]\n",
        );
        let m = merge(&[a.clone(), b]).unwrap();
        assert_eq!(m.relabel.len(), 2);
        assert_eq!(m.relabel[1].0.file, "b.yml");
        let c = RulesSource::rules_file("c.yml", "\ncardinality:\n  max_series: 5\n");
        let e = merge(&[a, c]).unwrap_err();
        assert_eq!((e.loc.file.as_str(), e.loc.line), ("c.yml", 3));
        assert!(e.message.contains("a.yml:5"), "{e}");
    }
}
