//! The cardinality guard: what stops one bad label from creating millions of series.
//!
//! Per series, before it reaches the store:
//! - **deny list**: labels such as `user_id` are removed (the series merge);
//! - **allow lists**: for a named metric, only the listed labels (plus `__name__`, `job`,
//!   `instance`, `le`, `quantile`) are kept;
//! - **path templating**: in route-like labels (`path`, `route`…), segments that are ids —
//!   numbers, UUIDs, long hex strings, long tokens — become `{id}`, after the user's own
//!   regex templates;
//! - **budgets** ([`SeriesGuard`]): a global and per-metric limit on the series seen in
//!   the last hour (VictoriaMetrics's `-maxHourlySeries` notion). A new series over budget
//!   is not created; its samples are counted per metric as overflow.

use std::collections::{BTreeMap, HashMap};

use regex::Regex;
use serde::Deserialize;

/// Labels removed from every series and log stream unless the rules file says otherwise.
pub const DEFAULT_DENY_LABELS: [&str; 3] = ["user_id", "session_token", "ip_address"];

/// Route-like labels templated unless the rules file lists its own.
pub const DEFAULT_PATH_LABELS: [&str; 7] = [
    "path",
    "route",
    "http_route",
    "http_path",
    "http_target",
    "url_path",
    "endpoint",
];

/// Labels an allow list always keeps: identity and the structure of histograms/summaries.
const ALWAYS_ALLOWED: [&str; 5] = ["__name__", "job", "instance", "le", "quantile"];

/// What an over-budget metric's name is counted under once this many metrics overflowed.
pub const OTHER_METRICS: &str = "__other__";
const MAX_OVERFLOW_METRICS: usize = 10_000;
/// Per-metric budgets need a global bound too (a stream of unique metric names would
/// otherwise get a fresh budget each); this one applies when none is configured.
pub const DEFAULT_MAX_SERIES_WITH_METRIC_BUDGETS: usize = 2_000_000;

/// The `cardinality:` section of a rules file.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CardinalityConfig {
    /// Most series (seen in the last hour) over all metrics; 0 or absent = no limit.
    pub max_series: Option<usize>,
    /// Most series per metric name, for metrics without their own budget.
    pub max_series_per_metric: Option<usize>,
    /// Budgets of named metrics.
    #[serde(default)]
    pub metric_budgets: BTreeMap<String, usize>,
    /// Labels removed everywhere; absent = the defaults (user_id, session_token,
    /// ip_address); `[]` = none.
    pub deny_labels: Option<Vec<String>>,
    /// Per metric name: the only labels kept.
    #[serde(default)]
    pub allow_labels: BTreeMap<String, Vec<String>>,
    /// Labels whose values are paths to template; absent = the defaults.
    pub path_labels: Option<Vec<String>>,
    /// User templates, applied (in order) before the built-in id rules.
    #[serde(default)]
    pub path_templates: Vec<PathTemplateConfig>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PathTemplateConfig {
    /// Unanchored regex; every match in the value is replaced.
    pub regex: String,
    /// Replacement, with `$1`-style references to the regex's groups.
    pub replacement: String,
}

/// A set of short names with a cheap "certainly not in it" test: most labels of most
/// series are not denied, templated or allow-listed, and this keeps that common case to
/// a bit test per label.
#[derive(Clone, Debug, Default)]
pub struct NameSet {
    bloom: [u64; 4],
    names: Vec<String>,
}

fn bloom_slot(name: &str) -> usize {
    let first = name.as_bytes().first().copied().unwrap_or(0) as usize;
    (name.len().wrapping_mul(31) ^ first) & 255
}

impl NameSet {
    pub fn new<S: AsRef<str>>(names: impl IntoIterator<Item = S>) -> Self {
        let mut s = NameSet::default();
        for n in names {
            s.insert(n.as_ref());
        }
        s
    }

    pub fn insert(&mut self, name: &str) {
        if self.contains(name) {
            return;
        }
        let slot = bloom_slot(name);
        self.bloom[slot / 64] |= 1 << (slot % 64);
        self.names.push(name.to_owned());
    }

    #[inline]
    pub fn contains(&self, name: &str) -> bool {
        let slot = bloom_slot(name);
        self.bloom[slot / 64] & (1 << (slot % 64)) != 0 && self.names.iter().any(|n| n == name)
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    pub fn names(&self) -> &[String] {
        &self.names
    }
}

/// The label rules of the guard, compiled.
#[derive(Clone, Debug)]
pub struct LabelGuard {
    pub deny: NameSet,
    pub path_labels: NameSet,
    pub allow: HashMap<String, NameSet>,
    allow_metrics: NameSet,
    templates: Vec<(Regex, String)>,
}

impl Default for LabelGuard {
    fn default() -> Self {
        LabelGuard {
            deny: NameSet::new(DEFAULT_DENY_LABELS),
            path_labels: NameSet::new(DEFAULT_PATH_LABELS),
            allow: HashMap::new(),
            allow_metrics: NameSet::default(),
            templates: Vec::new(),
        }
    }
}

impl LabelGuard {
    pub fn new(c: &CardinalityConfig) -> Result<Self, String> {
        let mut g = LabelGuard::default();
        if let Some(d) = &c.deny_labels {
            g.deny = NameSet::new(d);
        }
        if let Some(p) = &c.path_labels {
            g.path_labels = NameSet::new(p);
        }
        for (metric, labels) in &c.allow_labels {
            g.allow_metrics.insert(metric);
            g.allow.insert(
                metric.clone(),
                NameSet::new(labels.iter().map(String::as_str).chain(ALWAYS_ALLOWED)),
            );
        }
        for (i, t) in c.path_templates.iter().enumerate() {
            let re = Regex::new(&t.regex)
                .map_err(|e| format!("path_templates[{i}]: invalid regex {:?}: {e}", t.regex))?;
            g.templates.push((re, t.replacement.clone()));
        }
        Ok(g)
    }

    /// Whether a series with these label names and metric name needs any label rule.
    #[inline]
    pub fn touches<'n>(&self, metric: &str, mut names: impl Iterator<Item = &'n str>) -> bool {
        (!self.allow_metrics.is_empty() && self.allow_metrics.contains(metric))
            || names.any(|n| self.deny.contains(n) || self.path_labels.contains(n))
    }

    /// Applies deny, allow and templating to owned pairs (sorted by name). Returns what
    /// it changed, for the explorer's "which rule limits what".
    pub fn apply(&self, pairs: &mut Vec<(String, String)>) -> LabelEffects {
        let mut fx = LabelEffects::default();
        let before = pairs.len();
        pairs.retain(|(n, _)| !self.deny.contains(n));
        fx.denied = (before - pairs.len()) as u32;
        let metric = pairs
            .iter()
            .find(|(n, _)| n == "__name__")
            .map(|(_, v)| v.clone());
        if let Some(allow) = metric.as_deref().and_then(|m| self.allow.get(m)) {
            let before = pairs.len();
            pairs.retain(|(n, _)| allow.contains(n));
            fx.not_allowed = (before - pairs.len()) as u32;
        }
        for (n, v) in pairs.iter_mut() {
            if self.path_labels.contains(n)
                && let Some(t) = self.template(v)
            {
                *v = t;
                fx.templated += 1;
            }
        }
        fx
    }

    /// The templated form of a path, or `None` when nothing in it changes.
    pub fn template(&self, value: &str) -> Option<String> {
        let mut cur: Option<String> = None;
        for (re, rep) in &self.templates {
            let src = cur.as_deref().unwrap_or(value);
            if re.is_match(src) {
                cur = Some(re.replace_all(src, rep.as_str()).into_owned());
            }
        }
        let src = cur.as_deref().unwrap_or(value);
        match template_ids(src) {
            Some(t) => Some(t),
            None => cur,
        }
    }
}

/// What the label rules did to one series.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LabelEffects {
    pub denied: u32,
    pub not_allowed: u32,
    pub templated: u32,
}

/// Built-in path templating: every `/`-separated segment (before a `?` or `#`) that is an
/// id becomes `{id}`. `None` when no segment is an id.
pub fn template_ids(path: &str) -> Option<String> {
    let cut = path.find(['?', '#']).unwrap_or(path.len());
    let (p, tail) = path.split_at(cut);
    if !p.split('/').any(is_id_segment) {
        return None;
    }
    let mut out = String::with_capacity(path.len());
    for (i, seg) in p.split('/').enumerate() {
        if i > 0 {
            out.push('/');
        }
        out.push_str(if is_id_segment(seg) { "{id}" } else { seg });
    }
    out.push_str(tail);
    Some(out)
}

/// Numbers, UUIDs, hex strings (16+ characters, or 8+ with a digit) and long tokens
/// (20+ characters mixing letters and digits, or 64+ of anything) are ids; words,
/// version segments (`v1`) and existing templates (`{id}`, `:id`) are not.
pub fn is_id_segment(seg: &str) -> bool {
    let b = seg.as_bytes();
    if b.is_empty() {
        return false;
    }
    if b.iter().all(u8::is_ascii_digit) {
        return true;
    }
    if is_uuid(b) {
        return true;
    }
    let has_digit = b.iter().any(u8::is_ascii_digit);
    if b.iter().all(u8::is_ascii_hexdigit) && (b.len() >= 16 || (b.len() >= 8 && has_digit)) {
        return true;
    }
    let tokenish = b
        .iter()
        .all(|c| c.is_ascii_alphanumeric() || b"-_.=~+%".contains(c));
    let has_alpha = b.iter().any(u8::is_ascii_alphabetic);
    tokenish && ((b.len() >= 20 && has_digit && has_alpha) || b.len() >= 64)
}

fn is_uuid(b: &[u8]) -> bool {
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

// ---------------------------------------------------------------------------------------
// Budgets

/// Budgets as configured.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Budgets {
    pub max_series: usize,
    pub per_metric: usize,
    pub metric: HashMap<String, usize>,
}

impl Budgets {
    pub fn new(c: &CardinalityConfig) -> Self {
        let per_metric = c.max_series_per_metric.unwrap_or(0);
        let metric: HashMap<String, usize> = c
            .metric_budgets
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect();
        let mut max_series = c.max_series.unwrap_or(0);
        if max_series == 0 && (per_metric > 0 || !metric.is_empty()) {
            max_series = DEFAULT_MAX_SERIES_WITH_METRIC_BUDGETS;
        }
        Budgets {
            max_series,
            per_metric,
            metric,
        }
    }

    /// Whether any budget is set (otherwise series are not tracked at all).
    pub fn active(&self) -> bool {
        self.max_series > 0
    }

    pub fn for_metric(&self, name: &str) -> usize {
        self.metric.get(name).copied().unwrap_or(self.per_metric)
    }
}

/// Why a series was not created.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OverflowReason {
    /// The global `max_series` budget is used up.
    Global,
    /// The metric's own budget (`metric_budgets` or `max_series_per_metric`) is used up.
    Metric,
}

impl OverflowReason {
    pub fn as_str(self) -> &'static str {
        match self {
            OverflowReason::Global => "max_series",
            OverflowReason::Metric => "max_series_per_metric",
        }
    }
}

/// Series seen per metric, for one metric.
#[derive(Clone, Debug, Default)]
struct MetricEntry {
    name: String,
    /// Series of this metric in the current and the previous window.
    series: u32,
    /// Series created per growth slot (12 × 5 minutes).
    created: [u32; GROWTH_SLOTS],
}

const GROWTH_SLOTS: usize = 12;

/// Overflow of one metric (or of [`OTHER_METRICS`]).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Overflow {
    pub samples: u64,
    /// Times a series was refused (a series refused in ten requests counts ten).
    pub series_refused: u64,
    /// The budget that refused it last.
    pub limit: &'static str,
    pub budget: usize,
}

/// The series budgets' state: which series were seen in the current and the previous
/// window (an hour each), per metric counts, growth, and overflow. Lives across rule
/// reloads. Memory: about 40 bytes per tracked series, and only admitted series are
/// tracked, so the budget bounds it.
#[derive(Debug)]
pub struct SeriesGuard {
    window_ms: i64,
    window_start: i64,
    cur: hashbrown::HashMap<u64, u32>,
    prev: hashbrown::HashMap<u64, u32>,
    metrics: Vec<MetricEntry>,
    metric_ids: HashMap<String, u32>,
    free_ids: Vec<u32>,
    growth_slot_ms: i64,
    growth_epoch: i64,
    overflow: HashMap<String, Overflow>,
    pub totals: GuardTotals,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GuardTotals {
    pub series_created: u64,
    pub samples_overflow: u64,
    pub series_refused: u64,
}

/// The explorer's view of one metric.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MetricCardinality {
    pub metric: String,
    /// Series seen in the last one to two hours (the guard's windows).
    pub series: u64,
    /// Series created in the last hour.
    pub created_last_hour: u64,
    pub budget: usize,
}

pub const DEFAULT_WINDOW_MS: i64 = 3_600_000;

impl SeriesGuard {
    pub fn new(window_ms: i64, now_ms: i64) -> Self {
        let window_ms = window_ms.max(1);
        let growth_slot_ms = (DEFAULT_WINDOW_MS / GROWTH_SLOTS as i64).max(1);
        SeriesGuard {
            window_ms,
            window_start: now_ms,
            cur: Default::default(),
            prev: Default::default(),
            metrics: Vec::new(),
            metric_ids: HashMap::new(),
            free_ids: Vec::new(),
            growth_slot_ms,
            growth_epoch: now_ms.div_euclid(growth_slot_ms),
            overflow: HashMap::new(),
            totals: GuardTotals::default(),
        }
    }

    /// Series tracked (seen in the current or the previous window).
    pub fn series(&self) -> usize {
        self.cur.len() + self.prev.len()
    }

    fn roll(&mut self, now_ms: i64) {
        let epoch = now_ms.div_euclid(self.growth_slot_ms);
        if epoch > self.growth_epoch {
            let steps = (epoch - self.growth_epoch).min(GROWTH_SLOTS as i64);
            for s in 1..=steps {
                let slot = ((self.growth_epoch + s).rem_euclid(GROWTH_SLOTS as i64)) as usize;
                for m in &mut self.metrics {
                    m.created[slot] = 0;
                }
            }
            self.growth_epoch = epoch;
        }
        if now_ms - self.window_start < self.window_ms {
            return;
        }
        // Two windows or more passed: the previous window is empty too.
        let skipped = now_ms - self.window_start >= 2 * self.window_ms;
        let old = std::mem::take(&mut self.prev);
        for (_, id) in old {
            self.metrics[id as usize].series -= 1;
        }
        if skipped {
            for (_, id) in std::mem::take(&mut self.cur) {
                self.metrics[id as usize].series -= 1;
            }
        } else {
            self.prev = std::mem::take(&mut self.cur);
        }
        self.window_start = now_ms - (now_ms - self.window_start) % self.window_ms;
        // Forget metrics without series and without recent growth.
        for (id, m) in self.metrics.iter_mut().enumerate() {
            if m.series == 0 && !m.name.is_empty() && m.created.iter().all(|&c| c == 0) {
                self.metric_ids.remove(&m.name);
                m.name.clear();
                self.free_ids.push(id as u32);
            }
        }
    }

    fn metric_id(&mut self, name: &str) -> u32 {
        if let Some(&id) = self.metric_ids.get(name) {
            return id;
        }
        let entry = MetricEntry {
            name: name.to_owned(),
            ..Default::default()
        };
        let id = match self.free_ids.pop() {
            Some(id) => {
                self.metrics[id as usize] = entry;
                id
            }
            None => {
                self.metrics.push(entry);
                (self.metrics.len() - 1) as u32
            }
        };
        self.metric_ids.insert(name.to_owned(), id);
        id
    }

    /// Admits a series (by the hash of its final labels) or refuses it as overflow.
    /// `samples` is what a refusal costs, counted per metric.
    pub fn admit(
        &mut self,
        budgets: &Budgets,
        metric: &str,
        hash: u64,
        samples: u64,
        now_ms: i64,
    ) -> Result<(), OverflowReason> {
        self.roll(now_ms);
        if self.cur.contains_key(&hash) {
            return Ok(());
        }
        if let Some(id) = self.prev.remove(&hash) {
            self.cur.insert(hash, id);
            return Ok(());
        }
        let per = budgets.for_metric(metric);
        let refused = if self.series() >= budgets.max_series {
            Some((OverflowReason::Global, budgets.max_series))
        } else if per > 0
            && self
                .metric_ids
                .get(metric)
                .is_some_and(|&id| self.metrics[id as usize].series as usize >= per)
        {
            Some((OverflowReason::Metric, per))
        } else {
            None
        };
        if let Some((reason, budget)) = refused {
            self.totals.samples_overflow += samples;
            self.totals.series_refused += 1;
            let key = if self.overflow.contains_key(metric)
                || self.overflow.len() < MAX_OVERFLOW_METRICS
            {
                metric
            } else {
                OTHER_METRICS
            };
            let o = self.overflow.entry(key.to_owned()).or_default();
            o.samples += samples;
            o.series_refused += 1;
            o.limit = reason.as_str();
            o.budget = budget;
            return Err(reason);
        }
        let id = self.metric_id(metric);
        self.cur.insert(hash, id);
        let slot = self.growth_epoch.rem_euclid(GROWTH_SLOTS as i64) as usize;
        let m = &mut self.metrics[id as usize];
        m.series += 1;
        m.created[slot] += 1;
        self.totals.series_created += 1;
        Ok(())
    }

    /// Overflow per metric, largest first.
    pub fn overflow(&self) -> Vec<(String, Overflow)> {
        let mut v: Vec<_> = self
            .overflow
            .iter()
            .map(|(k, o)| (k.clone(), o.clone()))
            .collect();
        v.sort_by(|a, b| b.1.samples.cmp(&a.1.samples).then(a.0.cmp(&b.0)));
        v
    }

    pub fn overflow_of(&self, metric: &str) -> Option<&Overflow> {
        self.overflow.get(metric)
    }

    /// Metrics by series seen, largest first, at most `limit`.
    pub fn top_metrics(&self, budgets: &Budgets, limit: usize) -> Vec<MetricCardinality> {
        let mut v: Vec<MetricCardinality> = self
            .metrics
            .iter()
            .filter(|m| !m.name.is_empty())
            .map(|m| MetricCardinality {
                metric: m.name.clone(),
                series: m.series as u64,
                created_last_hour: m.created.iter().map(|&c| c as u64).sum(),
                budget: budgets.for_metric(&m.name),
            })
            .collect();
        v.sort_by(|a, b| b.series.cmp(&a.series).then(a.metric.cmp(&b.metric)));
        v.truncate(limit);
        v
    }

    /// Metrics by series created in the last hour, largest first.
    pub fn top_growth(&self, budgets: &Budgets, limit: usize) -> Vec<MetricCardinality> {
        let mut v = self.top_metrics(budgets, usize::MAX);
        v.retain(|m| m.created_last_hour > 0);
        v.sort_by(|a, b| {
            b.created_last_hour
                .cmp(&a.created_last_hour)
                .then(a.metric.cmp(&b.metric))
        });
        v.truncate(limit);
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_segments() {
        for id in [
            "123",
            "0",
            "550e8400-e29b-41d4-a716-446655440000",
            "5f2b6c1e9a3d4e7f",
            "deadbeef12",
            "eyJhbGciOiJIUzI1NiJ9abc123",
            "AbCdEfGhIjKlMnOpQrSt1234",
        ] {
            assert!(is_id_segment(id), "{id} is an id");
        }
        for word in [
            "",
            "api",
            "v1",
            "users",
            "{id}",
            ":id",
            "deadbeef",
            "checkout-service",
            "abc123",
        ] {
            assert!(!is_id_segment(word), "{word} is not an id");
        }
        assert_eq!(
            template_ids("/api/v1/users/123/orders/550e8400-e29b-41d4-a716-446655440000?x=7"),
            Some("/api/v1/users/{id}/orders/{id}?x=7".into())
        );
        assert_eq!(template_ids("/api/v1/users"), None);
    }

    #[test]
    fn label_rules_deny_allow_and_template() {
        let c: CardinalityConfig = serde_saphyr::from_str(
            "allow_labels:\n  http_requests_total: [method, route]\npath_templates:\n  - regex: '/orders/[A-Z]{3}-\\d+'\n    replacement: '/orders/{order}'\n",
        )
        .unwrap();
        let g = LabelGuard::new(&c).unwrap();
        let mut pairs: Vec<(String, String)> = [
            ("__name__", "http_requests_total"),
            ("job", "api"),
            ("method", "GET"),
            ("pod", "p-1"),
            ("route", "/orders/ABC-17/items/42"),
            ("user_id", "u1"),
        ]
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
        assert!(g.touches("http_requests_total", pairs.iter().map(|(n, _)| n.as_str())));
        let fx = g.apply(&mut pairs);
        assert_eq!(
            fx,
            LabelEffects {
                denied: 1,
                not_allowed: 1,
                templated: 1
            }
        );
        let names: Vec<&str> = pairs.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["__name__", "job", "method", "route"]);
        assert_eq!(pairs[3].1, "/orders/{order}/items/{id}");
        assert!(!g.touches("up", ["__name__", "job", "instance"].into_iter()));
        // An explicit empty deny list denies nothing.
        let g = LabelGuard::new(&serde_saphyr::from_str("deny_labels: []\n").unwrap()).unwrap();
        assert!(!g.touches("x", ["user_id"].into_iter()));
    }

    #[test]
    fn budgets_refuse_new_series_and_count_overflow_exactly() {
        let b = Budgets::new(&CardinalityConfig {
            max_series: Some(5),
            max_series_per_metric: Some(3),
            ..Default::default()
        });
        let mut g = SeriesGuard::new(DEFAULT_WINDOW_MS, 0);
        for h in 0..3 {
            assert!(g.admit(&b, "a", h, 1, 10).is_ok());
        }
        assert_eq!(g.admit(&b, "a", 99, 2, 10), Err(OverflowReason::Metric));
        // Known series still pass.
        assert!(g.admit(&b, "a", 1, 1, 10).is_ok());
        assert!(g.admit(&b, "b", 100, 1, 10).is_ok());
        assert!(g.admit(&b, "b", 101, 1, 10).is_ok());
        assert_eq!(g.admit(&b, "c", 200, 4, 10), Err(OverflowReason::Global));
        assert_eq!(g.overflow_of("a").unwrap().samples, 2);
        assert_eq!(g.overflow_of("c").unwrap().samples, 4);
        assert_eq!(g.totals.samples_overflow, 6);
        assert_eq!(g.series(), 5);
        let top = g.top_metrics(&b, 10);
        assert_eq!((top[0].metric.as_str(), top[0].series), ("a", 3));
        assert_eq!(top[0].created_last_hour, 3);
    }

    #[test]
    fn windows_forget_series_not_seen_for_an_hour() {
        let b = Budgets::new(&CardinalityConfig {
            max_series: Some(2),
            ..Default::default()
        });
        let hour = DEFAULT_WINDOW_MS;
        let mut g = SeriesGuard::new(hour, 0);
        assert!(g.admit(&b, "a", 1, 1, 0).is_ok());
        assert!(g.admit(&b, "a", 2, 1, 0).is_ok());
        assert!(g.admit(&b, "a", 3, 1, 0).is_err());
        // Next window: series 1 is seen again (moves over), 2 is not.
        assert!(g.admit(&b, "a", 1, 1, hour + 1).is_ok());
        assert!(g.admit(&b, "a", 3, 1, hour + 2).is_err(), "2 still counts");
        // One more window: 2 is forgotten.
        assert!(g.admit(&b, "a", 3, 1, 2 * hour + 1).is_ok());
        assert_eq!(g.series(), 2);
        // Long silence forgets everything.
        assert!(g.admit(&b, "b", 9, 1, 10 * hour).is_ok());
        assert_eq!(g.series(), 1);
        assert_eq!(g.top_metrics(&b, 10).len(), 1, "metric a was forgotten");
    }

    #[test]
    fn overflow_names_are_bounded() {
        let b = Budgets::new(&CardinalityConfig {
            max_series: Some(1),
            ..Default::default()
        });
        let mut g = SeriesGuard::new(DEFAULT_WINDOW_MS, 0);
        assert!(g.admit(&b, "keep", 0, 1, 0).is_ok());
        for i in 0..(MAX_OVERFLOW_METRICS as u64 + 50) {
            let _ = g.admit(&b, &format!("m{i}"), i + 1, 1, 0);
        }
        assert_eq!(g.overflow().len(), MAX_OVERFLOW_METRICS + 1);
        assert_eq!(g.overflow_of(OTHER_METRICS).unwrap().samples, 50);
    }
}
