//! One version of the rules, compiled and validated: what a reload builds before it
//! swaps.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use serde::Serialize;

use crate::cardinality::{Budgets, LabelGuard};
use crate::file::{LoadError, Loc, Merged};
use crate::inherit::{Inherit, InheritConfig};
use crate::logs::LogRule;
use crate::naming::NamingRules;
use crate::relabel::RelabelRule;
use crate::sampling::SamplingRules;
use crate::stats::VersionStats;
use crate::testing::RuleTestConfig;

/// How many rules of each kind a version has, for the status page.
#[derive(Clone, Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RuleCounts {
    pub relabel: usize,
    pub inherit_static: usize,
    pub inherit_attributes: usize,
    pub deny_labels: Vec<String>,
    pub path_labels: Vec<String>,
    pub allow_lists: usize,
    pub max_series: usize,
    pub max_series_per_metric: usize,
    pub metric_budgets: usize,
    pub naming: Option<crate::naming::NamingMode>,
    pub sampling_policies: Vec<String>,
    pub log_rules: Vec<String>,
    pub tests: usize,
}

pub struct RuleSet {
    /// Increases with every version loaded (1 = the first).
    pub version: u64,
    /// Fingerprint of the sources it was built from.
    pub source_hash: u64,
    pub loaded_at_ms: i64,
    pub sources: Vec<String>,
    /// Shared with the copy the file's tests run on (cloning a compiled regex gives it a
    /// fresh, cold cache; sharing lets the tests warm the live rules' caches too).
    pub(crate) relabel: Arc<[RelabelRule]>,
    /// Where each relabel rule was written, and how many series it dropped.
    pub(crate) relabel_locs: Vec<Loc>,
    pub(crate) relabel_drops: Vec<AtomicU64>,
    pub(crate) inherit: Inherit,
    pub(crate) labels: LabelGuard,
    pub(crate) budgets: Budgets,
    pub(crate) naming: Option<NamingRules>,
    pub(crate) sampling: Option<Arc<SamplingRules>>,
    pub(crate) log_rules: Vec<LogRule>,
    pub(crate) log_rule_hits: Vec<AtomicU64>,
    /// Set when this version rolls out as a canary first.
    pub canary_fraction: Option<f64>,
    pub(crate) tests: Vec<(Loc, RuleTestConfig)>,
    pub stats: Arc<VersionStats>,
    pub counts: RuleCounts,
}

impl std::fmt::Debug for RuleSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuleSet")
            .field("version", &self.version)
            .field("sources", &self.sources)
            .finish_non_exhaustive()
    }
}

fn at(loc: &Loc, what: &str, e: impl std::fmt::Display) -> LoadError {
    LoadError::new(loc.clone(), format!("{what}: {e}"))
}

impl RuleSet {
    /// The rules with nothing configured: the default deny list and path templating.
    pub fn defaults() -> RuleSet {
        Self::compile(Merged::default(), 0, 0, 0).expect("empty rules compile")
    }

    pub fn compile(
        m: Merged,
        version: u64,
        source_hash: u64,
        loaded_at_ms: i64,
    ) -> Result<RuleSet, LoadError> {
        let mut relabel = Vec::with_capacity(m.relabel.len());
        let mut relabel_locs = Vec::with_capacity(m.relabel.len());
        for (i, (loc, c)) in m.relabel.iter().enumerate() {
            relabel.push(c.compile(i).map_err(|e| {
                LoadError::new(loc.clone(), format!("metric_relabel_configs: {e}"))
            })?);
            relabel_locs.push(loc.clone());
        }
        let inherit_cfg = InheritConfig {
            resource_attributes: m
                .inherit_attributes
                .as_ref()
                .map(|(_, a)| a.clone())
                .unwrap_or_default(),
            static_labels: m.inherit_static.iter().map(|(_, s)| s.clone()).collect(),
        };
        let inherit = Inherit::new(&inherit_cfg).map_err(|e| {
            let loc = m
                .inherit_static
                .first()
                .map(|(l, _)| l.clone())
                .or_else(|| m.inherit_attributes.as_ref().map(|(l, _)| l.clone()))
                .unwrap_or_default();
            at(&loc, "inherit", e)
        })?;
        let (labels, budgets) = match &m.cardinality {
            Some((loc, c)) => (
                LabelGuard::new(c).map_err(|e| at(loc, "cardinality", e))?,
                Budgets::new(c),
            ),
            None => (LabelGuard::default(), Budgets::default()),
        };
        let naming = m
            .naming
            .as_ref()
            .map(|(loc, c)| NamingRules::new(c).map_err(|e| at(loc, "naming", e)))
            .transpose()?;
        let stats = Arc::new(VersionStats::default());
        let sampling = m
            .tail_sampling
            .as_ref()
            .map(|(loc, c)| {
                SamplingRules::new(c, version, stats.clone())
                    .map(Arc::new)
                    .map_err(|e| at(loc, "tail_sampling", e))
            })
            .transpose()?;
        let mut log_rules = Vec::with_capacity(m.log_rules.len());
        for (i, (loc, c)) in m.log_rules.iter().enumerate() {
            log_rules.push(
                c.compile(i)
                    .map_err(|e| at(loc, &format!("log_rules[{i}]"), e))?,
            );
        }
        let canary_fraction = match &m.canary {
            Some((loc, c)) if !(c.fraction > 0.0 && c.fraction < 1.0) => {
                return Err(at(
                    loc,
                    "canary",
                    format!(
                        "fraction {} must be between 0 and 1 (exclusive)",
                        c.fraction
                    ),
                ));
            }
            Some((_, c)) => Some(c.fraction),
            None => None,
        };
        for (loc, t) in &m.tests {
            t.validate()
                .map_err(|e| at(loc, &format!("tests ({:?})", t.name), e))?;
        }
        let counts = RuleCounts {
            relabel: relabel.len(),
            inherit_static: inherit.statics.len(),
            inherit_attributes: inherit.attributes.len(),
            deny_labels: labels.deny.names().to_vec(),
            path_labels: labels.path_labels.names().to_vec(),
            allow_lists: labels.allow.len(),
            max_series: budgets.max_series,
            max_series_per_metric: budgets.per_metric,
            metric_budgets: budgets.metric.len(),
            naming: naming.as_ref().map(|n| n.mode),
            sampling_policies: sampling
                .as_ref()
                .map(|s| s.policies.iter().map(|p| p.name.clone()).collect())
                .unwrap_or_default(),
            log_rules: log_rules.iter().map(|r| r.name.clone()).collect(),
            tests: m.tests.len(),
        };
        Ok(RuleSet {
            version,
            source_hash,
            loaded_at_ms,
            sources: m.sources,
            relabel_drops: relabel.iter().map(|_| AtomicU64::new(0)).collect(),
            relabel: relabel.into(),
            relabel_locs,
            inherit,
            labels,
            budgets,
            naming,
            sampling,
            log_rule_hits: log_rules.iter().map(|_| AtomicU64::new(0)).collect(),
            log_rules,
            canary_fraction,
            tests: m.tests,
            stats,
            counts,
        })
    }

    /// A copy with its own counters, for running the file's tests without counting them
    /// as live traffic.
    pub(crate) fn compile_for_tests(rs: &RuleSet) -> RuleSet {
        let stats = Arc::new(VersionStats::default());
        RuleSet {
            version: rs.version,
            source_hash: rs.source_hash,
            loaded_at_ms: rs.loaded_at_ms,
            sources: rs.sources.clone(),
            relabel: rs.relabel.clone(),
            relabel_locs: rs.relabel_locs.clone(),
            relabel_drops: rs.relabel.iter().map(|_| AtomicU64::new(0)).collect(),
            inherit: rs.inherit.clone(),
            labels: rs.labels.clone(),
            budgets: rs.budgets.clone(),
            naming: rs.naming.clone(),
            sampling: rs.sampling.as_ref().map(|s| {
                Arc::new(SamplingRules {
                    version: s.version,
                    decision_wait_ms: s.decision_wait_ms,
                    max_traces: s.max_traces,
                    policies: s.policies.clone(),
                    stats: stats.clone(),
                })
            }),
            log_rules: rs.log_rules.clone(),
            log_rule_hits: rs.log_rules.iter().map(|_| AtomicU64::new(0)).collect(),
            canary_fraction: None,
            tests: Vec::new(),
            stats,
            counts: rs.counts.clone(),
        }
    }

    /// Whether a metric series can pass without any label work (checked per series).
    pub(crate) fn rewrites_all_series(&self) -> bool {
        !self.relabel.is_empty() || !self.inherit.statics.is_empty()
    }

    pub fn sampling(&self) -> Option<&Arc<SamplingRules>> {
        self.sampling.as_ref()
    }

    pub fn test_count(&self) -> usize {
        self.tests.len()
    }
}
