//! The rules stage of each ingest path: a decoded batch in, what the store should keep
//! out. One call per batch, on one [`RulesSnapshot`]:
//!
//! - metrics: [`RulesSnapshot::apply_metrics`] — inheritance, relabeling, the label guard
//!   (deny, allow, path templating), naming contracts, series budgets;
//! - logs: [`RulesSnapshot::apply_logs`] — inheritance, the deny list, log rules;
//! - spans: [`RulesSnapshot::prepare_spans`] before storing (inheritance), then
//!   [`RulesSnapshot::observe_spans`] once stored (tail sampling).
//!
//! With a canary running, each series, log stream and trace goes through the version its
//! hash picks; without one, everything goes through the stable version.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use lastmile_model::{
    LabelRef, LogBatch, METRIC_NAME, MetricType, SpanBatch, WriteBatch, hash_labels,
};

use crate::cardinality::OverflowReason;
use crate::engine::{MAX_KNOWN_TYPES, MAX_VIOLATING_METRICS, RulesSnapshot, Shared, now_ms};
use crate::inherit::{TargetInfo, insert_sorted};
use crate::logs::{LogFate, LogOutcome, fate, rules_for_stream, split_by_metadata};
use crate::naming::{NamingMode, Violation, type_of};
use crate::relabel::Pairs;
use crate::ruleset::RuleSet;
use crate::stats::VersionStats;

/// Owns the strings rules create, for as long as the batch that borrows them.
pub type StringArena = typed_arena::Arena<String>;

/// What the rules did to one metrics batch.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RulesOutcome {
    /// Series a `drop`/`keep`-style relabel rule removed.
    pub series_dropped: u64,
    /// Samples of every series the rules did not pass on (relabel, naming, overflow).
    pub samples_dropped: u64,
    /// Series whose relabeled label set lost its metric name: they cannot be stored.
    pub series_without_name: u64,
    /// Series not created because a budget was used up, and their samples.
    pub series_overflow: u64,
    pub samples_overflow: u64,
    /// Series refused by a naming contract (reject mode), and their samples.
    pub series_rejected_naming: u64,
    pub samples_rejected_naming: u64,
    /// Series with a naming violation (warn or reject mode).
    pub naming_violations: u64,
    /// A few examples, for the push response: metric → why.
    pub overflow_examples: Vec<(String, &'static str)>,
    pub naming_examples: Vec<(String, Vec<Violation>)>,
}

impl RulesOutcome {
    /// Samples the client should hear about (over budget, or refused by a contract);
    /// relabel drops are the operator's intent and are not reported back.
    pub fn samples_refused(&self) -> u64 {
        self.samples_overflow + self.samples_rejected_naming
    }

    /// Warnings for a push response, empty when nothing was refused.
    pub fn warnings(&self) -> Vec<String> {
        let mut w = Vec::new();
        if self.samples_overflow > 0 {
            let names: Vec<String> = self
                .overflow_examples
                .iter()
                .map(|(m, why)| format!("{m} ({why})"))
                .collect();
            w.push(format!(
                "{} samples of {} new series were not stored: series budget used up for {}",
                self.samples_overflow,
                self.series_overflow,
                names.join(", ")
            ));
        }
        if self.samples_rejected_naming > 0 {
            let names: Vec<String> = self
                .naming_examples
                .iter()
                .map(|(m, v)| {
                    let v: Vec<&str> = v.iter().map(|v| v.as_str()).collect();
                    format!("{m} ({})", v.join(", "))
                })
                .collect();
            w.push(format!(
                "{} samples of {} series were refused by naming contracts: {}",
                self.samples_rejected_naming,
                self.series_rejected_naming,
                names.join(", ")
            ));
        }
        w
    }
}

const MAX_EXAMPLES: usize = 5;

enum Fate {
    Keep,
    Rewrite(Pairs),
    Drop,
}

/// Per-batch context: locks taken once, lookups built once.
struct MetricCtx<'b> {
    now: i64,
    guard: Option<parking_lot::MutexGuard<'b, crate::cardinality::SeriesGuard>>,
    naming: Option<parking_lot::MutexGuard<'b, crate::engine::NamingState>>,
    batch_types: HashMap<&'b str, MetricType>,
    effects: BTreeMap<(&'static str, String), u64>,
    violations: Vec<Violation>,
    targets: &'b TargetInfo,
    /// Relabel working memory per rule version (stable, canary).
    scratch: Vec<(u64, crate::relabel::Scratch)>,
}

fn label_get<'p>(pairs: &'p Pairs, name: &str) -> &'p str {
    pairs
        .binary_search_by(|(n, _)| n.as_str().cmp(name))
        .map_or("", |i| pairs[i].1.as_str())
}

impl RulesSnapshot {
    /// Applies the metric rules to a batch. Strings the rules create live in `arena`.
    /// Without any change to make, the batch is returned as it came.
    pub fn apply_metrics<'a>(
        &self,
        batch: WriteBatch<'a>,
        arena: &'a StringArena,
    ) -> (WriteBatch<'a>, RulesOutcome) {
        self.apply_metrics_at(batch, arena, now_ms())
    }

    pub fn apply_metrics_at<'a>(
        &self,
        batch: WriteBatch<'a>,
        arena: &'a StringArena,
        now: i64,
    ) -> (WriteBatch<'a>, RulesOutcome) {
        let mut outcome = RulesOutcome::default();
        if batch.series.is_empty() {
            return (batch, outcome);
        }
        let active = &self.active;
        let versions: Vec<&Arc<RuleSet>> = std::iter::once(&active.stable)
            .chain(active.canary.as_ref().map(|c| &c.rules))
            .collect();
        let shared: &Shared = &self.shared;
        let wanted_attrs: Vec<String> = versions
            .iter()
            .flat_map(|v| v.inherit.attributes.iter().cloned())
            .collect();
        if !wanted_attrs.is_empty() {
            for s in &batch.series {
                let labels = batch.series_labels(s);
                if labels
                    .iter()
                    .any(|l| l.name == METRIC_NAME && l.value == "target_info")
                {
                    shared
                        .targets
                        .learn(labels.iter().map(|l| (l.name, l.value)), &wanted_attrs);
                }
            }
        }
        let mut ctx = MetricCtx {
            now,
            guard: versions
                .iter()
                .any(|v| v.budgets.active())
                .then(|| shared.guard.lock()),
            naming: versions
                .iter()
                .any(|v| v.naming.is_some())
                .then(|| shared.naming.lock()),
            batch_types: HashMap::new(),
            effects: BTreeMap::new(),
            violations: Vec::new(),
            targets: &shared.targets,
            scratch: versions
                .iter()
                .map(|v| (v.version, crate::relabel::Scratch::new(&v.relabel)))
                .collect(),
        };
        if let Some(n) = ctx.naming.as_mut() {
            for m in &batch.metadata {
                if m.metric_type != MetricType::Unknown {
                    ctx.batch_types.insert(m.metric_family_name, m.metric_type);
                    if n.types.len() < MAX_KNOWN_TYPES || n.types.contains_key(m.metric_family_name)
                    {
                        n.types
                            .insert(m.metric_family_name.to_owned(), m.metric_type);
                    }
                }
            }
        }
        let mut fates: Vec<Fate> = Vec::with_capacity(batch.series.len());
        let mut all_kept = true;
        for s in &batch.series {
            let rs = active.for_hash(s.hash);
            let labels = batch.series_labels(s);
            let samples = batch.series_samples(s).len() as u64;
            let f = process_series(rs, labels, s.hash, samples, &mut ctx, &mut outcome);
            let stats = &rs.stats;
            VersionStats::add(&stats.series_in, 1);
            VersionStats::add(&stats.samples_in, samples);
            if !matches!(f, Fate::Drop) {
                VersionStats::add(&stats.series_out, 1);
                VersionStats::add(&stats.samples_out, samples);
            } else {
                outcome.samples_dropped += samples;
            }
            all_kept &= matches!(f, Fate::Keep);
            fates.push(f);
        }
        let effects = std::mem::take(&mut ctx.effects);
        drop(ctx);
        if !effects.is_empty() {
            let mut e = shared.label_effects.lock();
            for (k, n) in effects {
                *e.entry(k).or_default() += n;
            }
        }
        if all_kept {
            return (batch, outcome);
        }
        let mut out = WriteBatch::with_capacity(batch.series.len(), batch.samples.len());
        out.metadata = batch.metadata.clone();
        out.invalid_exemplars = batch.invalid_exemplars;
        let mut ex_labels: Vec<LabelRef<'a>> = Vec::new();
        for (s, f) in batch.series.iter().zip(fates) {
            match f {
                Fate::Drop => continue,
                Fate::Keep => {
                    out.begin_series();
                    for l in batch.series_labels(s) {
                        out.push_label(l.name, l.value);
                    }
                }
                Fate::Rewrite(pairs) => {
                    out.begin_series();
                    for (n, v) in pairs {
                        let n: &'a str = arena.alloc(n);
                        let v: &'a str = arena.alloc(v);
                        out.push_label(n, v);
                    }
                }
            }
            for smp in batch.series_samples(s) {
                out.push_sample(smp.t, smp.v);
            }
            for e in batch.series_exemplars(s) {
                ex_labels.clear();
                ex_labels.extend_from_slice(batch.exemplar_labels(e));
                out.push_exemplar(&ex_labels, e.t, e.v);
            }
            // Relabeled pairs are sorted, unique and carry a metric name.
            if out.finish_series().is_err() {
                outcome.series_without_name += 1;
            }
        }
        (out, outcome)
    }
}

fn process_series<'a>(
    rs: &RuleSet,
    labels: &[LabelRef<'a>],
    hash: u64,
    samples: u64,
    ctx: &mut MetricCtx<'_>,
    outcome: &mut RulesOutcome,
) -> Fate {
    match process_series_inner(rs, labels, hash, samples, ctx, outcome) {
        Ok(f) => f,
        Err(Dropped) => Fate::Drop,
    }
}

/// A series the rules dropped (already counted).
struct Dropped;

fn process_series_inner<'a>(
    rs: &RuleSet,
    labels: &[LabelRef<'a>],
    hash: u64,
    samples: u64,
    ctx: &mut MetricCtx<'_>,
    outcome: &mut RulesOutcome,
) -> Result<Fate, Dropped> {
    let stats = &rs.stats;
    let name = labels
        .iter()
        .find(|l| l.name == METRIC_NAME)
        .map_or("", |l| l.value);
    let inherit_attrs = !rs.inherit.attributes.is_empty() && name != "target_info";
    let mut rewritten: Option<Pairs> = None;
    if rs.rewrites_all_series() || inherit_attrs {
        rewritten = rewrite_owned(rs, labels, inherit_attrs, ctx, outcome)?;
    } else if rs.labels.touches(name, labels.iter().map(|l| l.name)) {
        rewritten = guard_borrowed(rs, name, labels, ctx);
    }
    let (name, final_hash): (&str, u64) = match &rewritten {
        Some(p) => (
            label_get(p, METRIC_NAME),
            hash_labels(p.iter().map(|(n, v)| LabelRef { name: n, value: v })),
        ),
        None => (name, hash),
    };
    if let (Some(naming), Some(state)) = (&rs.naming, ctx.naming.as_mut()) {
        let selected = naming.selector.as_ref().is_none_or(|sel| match &rewritten {
            Some(p) => sel.matches(|n| label_get(p, n)),
            None => sel.matches(|n| labels.iter().find(|l| l.name == n).map_or("", |l| l.value)),
        });
        if selected {
            let t = type_of(name, |n| {
                ctx.batch_types
                    .get(n)
                    .copied()
                    .or_else(|| state.types.get(n).copied())
            });
            let le = match &rewritten {
                Some(p) => Some(label_get(p, "le")).filter(|v| !v.is_empty()),
                None => labels.iter().find(|l| l.name == "le").map(|l| l.value),
            };
            naming.check(name, t, le, &mut ctx.violations);
            if !ctx.violations.is_empty() {
                VersionStats::add(&stats.series_naming_violations, 1);
                outcome.naming_violations += 1;
                for v in &ctx.violations {
                    *state.by_kind.entry(*v).or_default() += 1;
                }
                let known = state.by_metric.contains_key(name);
                if known || state.by_metric.len() < MAX_VIOLATING_METRICS {
                    let e = state
                        .by_metric
                        .entry(name.to_owned())
                        .or_insert_with(|| (ctx.violations.clone(), 0));
                    e.1 += 1;
                    if !known {
                        let v: Vec<&str> = ctx.violations.iter().map(|v| v.as_str()).collect();
                        tracing::warn!(metric = name, violations = ?v, mode = ?naming.mode, "metric breaks a naming contract");
                    }
                }
                if naming.mode == NamingMode::Reject {
                    VersionStats::add(&stats.series_rejected_naming, 1);
                    outcome.series_rejected_naming += 1;
                    outcome.samples_rejected_naming += samples;
                    if outcome.naming_examples.len() < MAX_EXAMPLES
                        && !outcome.naming_examples.iter().any(|(m, _)| m == name)
                    {
                        outcome
                            .naming_examples
                            .push((name.to_owned(), ctx.violations.clone()));
                    }
                    return Err(Dropped);
                }
            }
        }
    }
    if rs.budgets.active()
        && let Some(guard) = ctx.guard.as_mut()
        && let Err(reason) = guard.admit(&rs.budgets, name, final_hash, samples, ctx.now)
    {
        VersionStats::add(&stats.series_overflow, 1);
        VersionStats::add(&stats.samples_overflow, samples);
        outcome.series_overflow += 1;
        outcome.samples_overflow += samples;
        if outcome.overflow_examples.len() < MAX_EXAMPLES
            && !outcome.overflow_examples.iter().any(|(m, _)| m == name)
        {
            let why = match reason {
                OverflowReason::Global => "max_series",
                OverflowReason::Metric => "max_series_per_metric",
            };
            outcome.overflow_examples.push((name.to_owned(), why));
        }
        return Err(Dropped);
    }
    Ok(match rewritten {
        Some(p) => Fate::Rewrite(p),
        None => Fate::Keep,
    })
}

/// The owned path, for versions whose relabel or inheritance rules see every series:
/// inheritance, relabeling, then the label guard. `Ok(None)`: nothing changed.
fn rewrite_owned(
    rs: &RuleSet,
    labels: &[LabelRef<'_>],
    inherit_attrs: bool,
    ctx: &mut MetricCtx<'_>,
    outcome: &mut RulesOutcome,
) -> Result<Option<Pairs>, Dropped> {
    let stats = &rs.stats;
    let mut pairs: Pairs = labels
        .iter()
        .map(|l| (l.name.to_owned(), l.value.to_owned()))
        .collect();
    let mut inherited = rs.inherit.apply_static(&mut pairs);
    if inherit_attrs {
        let job = label_get(&pairs, "job");
        let instance = label_get(&pairs, "instance");
        if let Some(attrs) = ctx.targets.get(job, instance) {
            for (k, v) in attrs {
                if rs.inherit.attributes.contains(&k) && label_get(&pairs, &k).is_empty() {
                    insert_sorted(&mut pairs, k, v);
                    inherited = true;
                }
            }
        }
    }
    if inherited {
        VersionStats::add(&stats.series_inherited, 1);
    }
    if !rs.relabel.is_empty() {
        let scratch = match ctx.scratch.iter_mut().find(|(v, _)| *v == rs.version) {
            Some((_, s)) => s,
            None => {
                ctx.scratch
                    .push((rs.version, crate::relabel::Scratch::new(&rs.relabel)));
                &mut ctx.scratch.last_mut().expect("just pushed").1
            }
        };
        for (i, rule) in rs.relabel.iter().enumerate() {
            if !rule.apply_with(&mut pairs, scratch, i) {
                rs.relabel_drops[i].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                VersionStats::add(&stats.series_dropped_relabel, 1);
                outcome.series_dropped += 1;
                return Err(Dropped);
            }
        }
    }
    if label_get(&pairs, METRIC_NAME).is_empty() {
        VersionStats::add(&stats.series_dropped_relabel, 1);
        outcome.series_without_name += 1;
        return Err(Dropped);
    }
    let metric = label_get(&pairs, METRIC_NAME).to_owned();
    if rs
        .labels
        .touches(&metric, pairs.iter().map(|(n, _)| n.as_str()))
    {
        let denied: Vec<String> = pairs
            .iter()
            .filter(|(n, _)| rs.labels.deny.contains(n))
            .map(|(n, _)| n.clone())
            .collect();
        let before: Vec<(String, String)> = pairs
            .iter()
            .filter(|(n, _)| rs.labels.path_labels.contains(n))
            .cloned()
            .collect();
        let fx = rs.labels.apply(&mut pairs);
        count_effects(rs, ctx, &metric, fx, denied, |n| {
            let was = before.iter().find(|(k, _)| k == n).map(|(_, v)| v.as_str());
            was.is_some_and(|w| w != label_get(&pairs, n))
        });
    }
    let same = pairs.len() == labels.len()
        && pairs
            .iter()
            .zip(labels)
            .all(|((n, v), l)| n == l.name && v == l.value);
    Ok((!same).then_some(pairs))
}

/// Records what the label guard did to a series, for the explorer.
fn count_effects(
    rs: &RuleSet,
    ctx: &mut MetricCtx<'_>,
    metric: &str,
    fx: crate::cardinality::LabelEffects,
    denied: Vec<String>,
    templated: impl Fn(&str) -> bool,
) {
    let stats = &rs.stats;
    if fx.denied > 0 {
        VersionStats::add(&stats.series_denied_label, 1);
        for n in denied {
            *ctx.effects.entry(("deny_labels", n)).or_default() += 1;
        }
    }
    if fx.not_allowed > 0 {
        VersionStats::add(&stats.series_not_allowed_label, 1);
        *ctx.effects
            .entry(("allow_labels", metric.to_owned()))
            .or_default() += 1;
    }
    if fx.templated > 0 {
        VersionStats::add(&stats.series_templated, 1);
        for n in rs.labels.path_labels.names() {
            if templated(n) {
                *ctx.effects.entry(("path_labels", n.clone())).or_default() += 1;
            }
        }
    }
}

/// The borrowed path, for versions without relabel or inheritance rules: the label guard
/// decides on the labels as they came, and a series it does not change allocates nothing.
fn guard_borrowed(
    rs: &RuleSet,
    metric: &str,
    labels: &[LabelRef<'_>],
    ctx: &mut MetricCtx<'_>,
) -> Option<Pairs> {
    let g = &rs.labels;
    let allow = g.allow.get(metric);
    let mut templated: Vec<(usize, String)> = Vec::new();
    let mut fx = crate::cardinality::LabelEffects::default();
    let mut denied = Vec::new();
    for (i, l) in labels.iter().enumerate() {
        if g.deny.contains(l.name) {
            fx.denied += 1;
            denied.push(l.name.to_owned());
        } else if allow.is_some_and(|a| !a.contains(l.name)) {
            fx.not_allowed += 1;
        } else if g.path_labels.contains(l.name)
            && let Some(t) = g.template(l.value)
        {
            fx.templated += 1;
            templated.push((i, t));
        }
    }
    if fx == crate::cardinality::LabelEffects::default() {
        return None;
    }
    let mut pairs: Pairs = Vec::with_capacity(labels.len());
    let mut t = templated.iter().peekable();
    for (i, l) in labels.iter().enumerate() {
        if g.deny.contains(l.name) || allow.is_some_and(|a| !a.contains(l.name)) {
            continue;
        }
        let value = match t.peek() {
            Some((at, v)) if *at == i => {
                t.next();
                v.clone()
            }
            _ => l.value.to_owned(),
        };
        pairs.push((l.name.to_owned(), value));
    }
    let names: Vec<&str> = templated.iter().map(|(i, _)| labels[*i].name).collect();
    count_effects(rs, ctx, metric, fx, denied, |n| names.contains(&n));
    Some(pairs)
}

impl RulesSnapshot {
    /// Applies inheritance, the deny list and the log rules to a batch in place: removed
    /// lines are taken out and streams left empty are removed.
    pub fn apply_logs(&self, batch: &mut LogBatch) -> LogOutcome {
        let mut outcome = LogOutcome::default();
        let active = &self.active;
        let streams = std::mem::take(&mut batch.streams);
        for stream in streams {
            let rs = active.for_hash(stream.labels.hash());
            let stats = &rs.stats;
            let n = stream.entries.len() as u64;
            outcome.entries_in += n;
            VersionStats::add(&stats.log_entries_in, n);
            for mut s in split_by_metadata(stream, &rs.inherit.attributes) {
                let mut pairs: Pairs = s
                    .labels
                    .iter()
                    .map(|l| (l.name.to_owned(), l.value.to_owned()))
                    .collect();
                let before = pairs.len();
                let inherited = rs.inherit.apply_static(&mut pairs);
                pairs.retain(|(k, _)| !rs.labels.deny.contains(k));
                if inherited || pairs.len() != before {
                    s.labels = lastmile_model::Labels::from_pairs(pairs);
                    outcome.streams_relabeled += 1;
                }
                if !rs.log_rules.is_empty() {
                    let rules = rules_for_stream(&rs.log_rules, &s.labels);
                    if !rules.is_empty() {
                        s.entries.retain(|e| {
                            let (f, rule) = fate(&rules, e);
                            if f != LogFate::Kept
                                && let Some(i) = rule
                                && let Some(pos) =
                                    rs.log_rules.iter().position(|r| std::ptr::eq(r, rules[i]))
                            {
                                rs.log_rule_hits[pos]
                                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            }
                            match f {
                                LogFate::Kept => true,
                                LogFate::Dropped => {
                                    outcome.entries_dropped += 1;
                                    VersionStats::add(&stats.log_entries_dropped, 1);
                                    false
                                }
                                LogFate::SampledOut => {
                                    outcome.entries_sampled_out += 1;
                                    VersionStats::add(&stats.log_entries_sampled_out, 1);
                                    false
                                }
                            }
                        });
                    }
                }
                if !s.entries.is_empty() {
                    batch.streams.push(s);
                }
            }
        }
        outcome
    }

    /// Before spans are stored: static inheritance onto their resources. Returns the
    /// number of resources that gained attributes.
    pub fn prepare_spans(&self, batch: &mut SpanBatch) -> usize {
        let mut n = 0;
        for rs in &mut batch.resources {
            // A resource's spans may fall under different versions (by trace id); the
            // resource follows the version of its first span.
            let Some(first) = rs.scopes.iter().flat_map(|s| &s.spans).next() else {
                continue;
            };
            let v = self.active.for_trace(&first.trace_id);
            if v.inherit.statics.is_empty() {
                continue;
            }
            if let Some(r) = v.inherit.resource(&rs.resource) {
                rs.resource = Arc::new(r);
                n += 1;
            }
        }
        n
    }

    /// Once spans are stored: the tail sampler takes note of them.
    pub fn observe_spans(&self, batch: &SpanBatch) {
        self.observe_spans_at(batch, now_ms());
    }

    pub fn observe_spans_at(&self, batch: &SpanBatch, now: i64) {
        if self.active.stable.sampling.is_none()
            && self
                .active
                .canary
                .as_ref()
                .is_none_or(|c| c.rules.sampling.is_none())
        {
            return;
        }
        self.shared
            .sampler
            .observe(batch, now, |id| self.active.for_trace(id).sampling.clone());
    }

    /// The sampler (for tests that drive decisions at explicit times).
    pub fn sampler(&self) -> &crate::sampling::TailSampler {
        &self.shared.sampler
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Rules;
    use crate::file::RulesSource;

    fn rules(yaml: &str) -> Rules {
        Rules::from_sources(vec![RulesSource::rules_file("r.yml", yaml)]).unwrap()
    }

    fn batch<'a>(series: &[&[(&'a str, &'a str)]]) -> WriteBatch<'a> {
        let mut b = WriteBatch::new();
        for s in series {
            b.begin_series();
            for (n, v) in *s {
                b.push_label(n, v);
            }
            b.push_sample(1, 1.0);
            b.push_sample(2, 2.0);
            b.finish_series().unwrap();
        }
        b
    }

    fn labels(b: &WriteBatch<'_>) -> Vec<String> {
        b.series
            .iter()
            .map(|s| {
                b.series_labels(s)
                    .iter()
                    .map(|l| format!("{}={}", l.name, l.value))
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .collect()
    }

    #[test]
    fn untouched_batches_pass_through() {
        let r = Rules::defaults();
        let arena = StringArena::new();
        let b = batch(&[&[("__name__", "up"), ("job", "a")]]);
        let (out, o) = r.current().apply_metrics(b, &arena);
        assert_eq!(labels(&out), ["__name__=up,job=a"]);
        assert_eq!(o, RulesOutcome::default());
        assert_eq!(arena.len(), 0, "nothing allocated");
    }

    #[test]
    fn default_guard_denies_and_templates() {
        let r = Rules::defaults();
        let arena = StringArena::new();
        let b = batch(&[&[
            ("__name__", "http_requests_total"),
            ("path", "/users/123"),
            ("user_id", "42"),
        ]]);
        let (out, _) = r.current().apply_metrics(b, &arena);
        assert_eq!(
            labels(&out),
            ["__name__=http_requests_total,path=/users/{id}"]
        );
        assert_eq!(
            out.series[0].hash,
            lastmile_model::Labels::from_pairs([
                ("__name__", "http_requests_total"),
                ("path", "/users/{id}")
            ])
            .hash()
        );
    }

    #[test]
    fn relabel_then_budget_with_exact_overflow() {
        let r = rules(
            "metric_relabel_configs:\n  - source_labels: [__name__]\n    regex: debug_.*\n    action: drop\ncardinality:\n  deny_labels: []\n  max_series: 100\n  metric_budgets: {attack_total: 3}\n",
        );
        let arena = StringArena::new();
        let ids: Vec<String> = (0..10).map(|i| i.to_string()).collect();
        let mut series: Vec<Vec<(&str, &str)>> = ids
            .iter()
            .map(|i| vec![("__name__", "attack_total"), ("user_id", i.as_str())])
            .collect();
        series.push(vec![("__name__", "debug_x")]);
        series.push(vec![("__name__", "legit_total"), ("job", "a")]);
        let refs: Vec<&[(&str, &str)]> = series.iter().map(|s| s.as_slice()).collect();
        let (out, o) = r.current().apply_metrics(batch(&refs), &arena);
        assert_eq!(out.series.len(), 4, "3 attack series and the legit one");
        assert_eq!((o.series_overflow, o.samples_overflow), (7, 14));
        assert_eq!((o.series_dropped, o.samples_dropped), (1, 16));
        assert!(
            o.warnings()[0].contains("attack_total (max_series_per_metric)"),
            "{:?}",
            o.warnings()
        );
        assert_eq!(r.overflow()[0].1.samples, 14);
        let st = r.status(10);
        assert_eq!(st.stable.outcomes.series_overflow, 7);
        assert_eq!(st.cardinality.top_metrics[0].metric, "attack_total");
    }

    #[test]
    fn naming_contracts_warn_or_reject() {
        let r = rules("naming:\n  mode: reject\n  match: '{job=\"app\"}'\n");
        let arena = StringArena::new();
        let mut b = batch(&[
            &[("__name__", "app_latency_ms"), ("job", "app")],
            &[("__name__", "app_requests_total"), ("job", "app")],
            &[("__name__", "Legacy"), ("job", "other")],
        ]);
        b.metadata.push(lastmile_model::MetadataRef {
            metric_family_name: "app_requests_total",
            metric_type: MetricType::Counter,
            help: "",
            unit: "",
        });
        let (out, o) = r.current().apply_metrics(b, &arena);
        assert_eq!(
            labels(&out),
            [
                "__name__=app_requests_total,job=app",
                "__name__=Legacy,job=other"
            ]
        );
        assert_eq!(
            (o.series_rejected_naming, o.samples_rejected_naming),
            (1, 2)
        );
        assert_eq!(o.naming_examples[0].1, [Violation::BaseUnit]);
        let st = r.status(10);
        assert_eq!(st.naming.violations["base_unit"], 1);
    }

    #[test]
    fn target_info_attributes_are_inherited() {
        let r = rules("inherit:\n  resource_attributes: [service.version]\n");
        let arena = StringArena::new();
        let b = batch(&[
            &[
                ("__name__", "target_info"),
                ("instance", "i"),
                ("job", "api"),
                ("service_version", "1.2"),
            ],
            &[("__name__", "x_total"), ("instance", "i"), ("job", "api")],
        ]);
        let (out, _) = r.current().apply_metrics(b, &arena);
        assert_eq!(
            labels(&out)[1],
            "__name__=x_total,instance=i,job=api,service_version=1.2"
        );
    }

    #[test]
    fn logs_are_denied_inherited_and_filtered() {
        use lastmile_model::{Labels, LogEntry, LogStream};
        let r = rules(
            "inherit:\n  static:\n    - source: '{app=\"api\"}'\n      labels: {tenant_id: acme}\nlog_rules:\n  - match: '{app=\"api\"}'\n    line: healthz\n    action: drop\n",
        );
        let mut b = LogBatch {
            streams: vec![LogStream {
                labels: Labels::from_pairs([("app", "api"), ("user_id", "7")]),
                entries: vec![
                    LogEntry::new(1, "GET /healthz"),
                    LogEntry::new(2, "GET /pay"),
                ],
            }],
        };
        let o = r.current().apply_logs(&mut b);
        assert_eq!((o.entries_in, o.entries_dropped), (2, 1));
        assert_eq!(b.streams.len(), 1);
        assert_eq!(b.streams[0].entries[0].line, "GET /pay");
        assert_eq!(b.streams[0].labels.get("tenant_id"), Some("acme"));
        assert_eq!(b.streams[0].labels.get("user_id"), None);
    }

    #[test]
    fn a_canary_gets_its_fraction_of_series() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.yml");
        std::fs::write(
            &path,
            "metric_relabel_configs:\n  - target_label: v\n    replacement: one\n",
        )
        .unwrap();
        let p = path.clone();
        let r = Rules::load(Box::new(move || {
            Ok(vec![RulesSource::rules_file(
                "r.yml",
                std::fs::read_to_string(&p).unwrap(),
            )])
        }))
        .unwrap();
        std::fs::write(
            &path,
            "metric_relabel_configs:\n  - target_label: v\n    replacement: two\ncanary: {fraction: 0.25}\n",
        )
        .unwrap();
        assert!(matches!(
            r.reload_if_changed().unwrap(),
            crate::engine::Reloaded::Canary { version: 2, .. }
        ));
        let names: Vec<String> = (0..4000).map(|i| format!("m{i}_total")).collect();
        let series: Vec<Vec<(&str, &str)>> = names
            .iter()
            .map(|n| vec![("__name__", n.as_str())])
            .collect();
        let refs: Vec<&[(&str, &str)]> = series.iter().map(|s| s.as_slice()).collect();
        let arena = StringArena::new();
        let snap = r.current();
        assert_eq!(snap.version_label(), "1;canary=2");
        let (out, _) = snap.apply_metrics(batch(&refs), &arena);
        let two = labels(&out).iter().filter(|l| l.ends_with("v=two")).count();
        assert!((800..1200).contains(&two), "{two}");
        let st = r.status(5);
        let c = st.canary.unwrap();
        assert_eq!(c.version.outcomes.series_in as usize, two);
        assert_eq!(r.promote().unwrap(), 2);
        assert_eq!(r.current().version_label(), "2");
        assert!(r.promote().is_err());
    }
}
