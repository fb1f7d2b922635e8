//! Log rules: drop or sample log lines by stream selector and line match, before the log
//! store. The first rule whose selector matches the stream and whose `line` regex (if
//! any) finds a match in the line decides; lines no rule matches are kept. Sampling is a
//! deterministic function of the line and its timestamp, so a retried push samples alike.

use lastmile_model::{Labels, LogBatch, LogEntry, LogStream};
use regex::Regex;
use serde::Deserialize;

use crate::selector::{Selector, parse_selector};

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogAction {
    Drop,
    Sample,
    /// Keep the matching lines (and stop looking at later rules).
    Keep,
}

/// One entry of `log_rules:`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogRuleConfig {
    pub name: Option<String>,
    /// Stream selector, e.g. `{app="nginx", level=~"debug|trace"}`; absent = every stream.
    #[serde(rename = "match")]
    pub selector: Option<String>,
    /// Regex searched in the line (unanchored, like LogQL's `|~`).
    pub line: Option<String>,
    pub action: LogAction,
    /// For `sample`: the fraction of matching lines kept.
    pub keep: Option<f64>,
}

#[derive(Clone, Debug)]
pub struct LogRule {
    pub name: String,
    selector: Selector,
    line: Option<Regex>,
    action: LogAction,
    keep: f64,
}

impl LogRuleConfig {
    pub fn compile(&self, index: usize) -> Result<LogRule, String> {
        let selector = parse_selector(self.selector.as_deref().unwrap_or("{}"))
            .map_err(|e| format!("match: {e}"))?;
        let line = self
            .line
            .as_deref()
            .map(|l| Regex::new(l).map_err(|e| format!("line: invalid regex {l:?}: {e}")))
            .transpose()?;
        let keep = match (self.action, self.keep) {
            (LogAction::Sample, None) => return Err("action sample needs keep: <fraction>".into()),
            (LogAction::Sample, Some(k)) if !(0.0..=1.0).contains(&k) => {
                return Err(format!("keep {k} is not a fraction between 0 and 1"));
            }
            (LogAction::Sample, Some(k)) => k,
            (_, Some(_)) => return Err("keep is only for action sample".into()),
            (LogAction::Drop, None) => 0.0,
            (LogAction::Keep, None) => 1.0,
        };
        Ok(LogRule {
            name: self
                .name
                .clone()
                .unwrap_or_else(|| format!("log_rules[{index}]")),
            selector,
            line,
            action: self.action,
            keep,
        })
    }
}

/// What happened to one line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFate {
    Kept,
    Dropped,
    SampledOut,
}

/// A line's draw in [0, 1).
fn line_draw(e: &LogEntry) -> f64 {
    let h = xxhash_rust::xxh3::xxh3_64_with_seed(e.line.as_bytes(), e.timestamp_ns as u64);
    (h >> 11) as f64 / (1u64 << 53) as f64
}

/// The rules that apply to one stream (selectors are evaluated once per stream).
pub fn rules_for_stream<'r>(rules: &'r [LogRule], labels: &Labels) -> Vec<&'r LogRule> {
    rules
        .iter()
        .filter(|r| r.selector.matches(|n| labels.get(n).unwrap_or("")))
        .collect()
}

pub fn fate(rules: &[&LogRule], e: &LogEntry) -> (LogFate, Option<usize>) {
    for (i, r) in rules.iter().enumerate() {
        if r.line.as_ref().is_some_and(|re| !re.is_match(&e.line)) {
            continue;
        }
        return match r.action {
            LogAction::Keep => (LogFate::Kept, Some(i)),
            LogAction::Drop => (LogFate::Dropped, Some(i)),
            LogAction::Sample if line_draw(e) < r.keep => (LogFate::Kept, Some(i)),
            LogAction::Sample => (LogFate::SampledOut, Some(i)),
        };
    }
    (LogFate::Kept, None)
}

/// Splits a stream's entries by the values they carry for `promoted` metadata keys, so
/// each group can become its own stream with those labels.
pub fn split_by_metadata(stream: LogStream, promoted: &[String]) -> Vec<LogStream> {
    if promoted.is_empty()
        || !stream
            .entries
            .iter()
            .any(|e| e.metadata.iter().any(|(k, _)| promoted.contains(k)))
    {
        return vec![stream];
    }
    type Group = (Vec<(String, String)>, Vec<LogEntry>);
    let mut groups: Vec<Group> = Vec::new();
    for e in stream.entries {
        let mut key: Vec<(String, String)> = e
            .metadata
            .iter()
            .filter(|(k, _)| promoted.contains(k) && stream.labels.get(k).is_none())
            .cloned()
            .collect();
        key.sort();
        key.dedup_by(|a, b| a.0 == b.0);
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, v)) => v.push(e),
            None => groups.push((key, vec![e])),
        }
    }
    groups
        .into_iter()
        .map(|(key, entries)| {
            let labels = if key.is_empty() {
                stream.labels.clone()
            } else {
                Labels::from_pairs(
                    stream
                        .labels
                        .iter()
                        .map(|l| (l.name.to_owned(), l.value.to_owned()))
                        .chain(key),
                )
            };
            LogStream { labels, entries }
        })
        .collect()
}

/// Counts of one [`crate::RulesSnapshot::apply_logs`] call.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LogOutcome {
    pub entries_in: u64,
    pub entries_dropped: u64,
    pub entries_sampled_out: u64,
    /// Streams whose labels the rules changed (inherited, denied or promoted labels).
    pub streams_relabeled: u64,
}

impl LogOutcome {
    pub fn entries_removed(&self) -> u64 {
        self.entries_dropped + self.entries_sampled_out
    }
}

/// Convenience for callers that hold the whole batch: drops removed entries and empty
/// streams.
pub fn retain_entries(batch: &mut LogBatch) {
    batch.streams.retain(|s| !s.entries.is_empty());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(yaml: &str) -> Vec<LogRule> {
        let c: Vec<LogRuleConfig> = serde_saphyr::from_str(yaml).unwrap();
        c.iter()
            .enumerate()
            .map(|(i, r)| r.compile(i).unwrap())
            .collect()
    }

    #[test]
    fn first_matching_rule_decides() {
        let r = rules(
            "- match: '{app=\"nginx\"}'\n  line: 'GET /healthz'\n  action: drop\n- match: '{level=\"debug\"}'\n  action: sample\n  keep: 0.5\n- name: errors\n  line: ERROR\n  action: keep\n",
        );
        let nginx = Labels::from_pairs([("app", "nginx")]);
        let debug = Labels::from_pairs([("app", "api"), ("level", "debug")]);
        let rs = rules_for_stream(&r, &nginx);
        assert_eq!(rs.len(), 2, "nginx rule and the catch-all");
        assert_eq!(
            fate(&rs, &LogEntry::new(1, "GET /healthz 200")).0,
            LogFate::Dropped
        );
        assert_eq!(
            fate(&rs, &LogEntry::new(1, "GET /api 200")).0,
            LogFate::Kept
        );
        let rs = rules_for_stream(&r, &debug);
        let kept = (0..10_000)
            .filter(|i| fate(&rs, &LogEntry::new(*i, format!("line {i}"))).0 == LogFate::Kept)
            .count();
        assert!((4_500..5_500).contains(&kept), "{kept}");
    }

    #[test]
    fn sample_needs_a_fraction() {
        let c: Vec<LogRuleConfig> = serde_saphyr::from_str("- action: sample\n").unwrap();
        assert!(c[0].compile(0).unwrap_err().contains("keep"));
        let c: Vec<LogRuleConfig> =
            serde_saphyr::from_str("- action: drop\n  keep: 0.5\n").unwrap();
        assert!(c[0].compile(0).is_err());
    }

    #[test]
    fn promoted_metadata_splits_streams() {
        let mut a = LogEntry::new(1, "a");
        a.metadata.push(("tenant_id".into(), "t1".into()));
        let mut b = LogEntry::new(2, "b");
        b.metadata.push(("tenant_id".into(), "t2".into()));
        let c = LogEntry::new(3, "c");
        let s = LogStream {
            labels: Labels::from_pairs([("app", "x")]),
            entries: vec![a, b, c],
        };
        let out = split_by_metadata(s, &["tenant_id".to_string()]);
        assert_eq!(out.len(), 3);
        assert_eq!(out[0].labels.get("tenant_id"), Some("t1"));
        assert_eq!(out[2].labels.get("tenant_id"), None);
    }
}
