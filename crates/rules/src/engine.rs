//! The rule engine: the active rule version (and a canary), hot reload with an atomic
//! swap, and the state that outlives versions (series budgets, the tail sampler).
//!
//! Every ingest path takes one [`RulesSnapshot`] per batch with [`Rules::current`]: an
//! `Arc` of the versions active at that moment. A reload builds the new version entirely
//! off to the side — parse, validate, run the file's tests — and then replaces the `Arc`
//! under a lock held for a pointer swap, so a request in flight finishes on the version it
//! started with and no request waits for a reload.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use lastmile_model::{MetricType, TraceId};
use parking_lot::{Mutex, RwLock};
use serde::Serialize;

use crate::cardinality::{
    DEFAULT_WINDOW_MS, GuardTotals, MetricCardinality, Overflow, SeriesGuard,
};
use crate::file::{LoadError, RulesSource, fingerprint, merge};
use crate::inherit::TargetInfo;
use crate::naming::Violation;
use crate::ruleset::{RuleCounts, RuleSet};
use crate::sampling::{SamplerStatus, TailSampler};
use crate::stats::StatsSnapshot;
use crate::testing::{TestReport, run_tests};

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The versions in force.
#[derive(Debug)]
pub struct Active {
    pub stable: Arc<RuleSet>,
    pub canary: Option<Canary>,
}

#[derive(Debug, Clone)]
pub struct Canary {
    pub rules: Arc<RuleSet>,
    pub fraction: f64,
}

/// A stream's draw in [0, 1) for the canary split (independent of other uses of the
/// hash).
pub fn canary_draw(hash: u64) -> f64 {
    let h = xxhash_rust::xxh3::xxh3_64_with_seed(&hash.to_le_bytes(), 0x6361_6e61_7279);
    (h >> 11) as f64 / (1u64 << 53) as f64
}

impl Active {
    /// The version a stream (by its hash) falls under.
    #[inline]
    pub fn for_hash(&self, hash: u64) -> &Arc<RuleSet> {
        match &self.canary {
            Some(c) if canary_draw(hash) < c.fraction => &c.rules,
            _ => &self.stable,
        }
    }

    pub fn for_trace(&self, id: &TraceId) -> &Arc<RuleSet> {
        match &self.canary {
            Some(c) if crate::sampling::trace_draw(id) < c.fraction => &c.rules,
            _ => &self.stable,
        }
    }

    /// The header value naming the versions: `7`, or `7;canary=8`.
    pub fn version_label(&self) -> String {
        match &self.canary {
            Some(c) => format!("{};canary={}", self.stable.version, c.rules.version),
            None => self.stable.version.to_string(),
        }
    }
}

/// Naming-contract state shared by versions: metric types learned from metadata and the
/// violations seen.
#[derive(Debug, Default)]
pub(crate) struct NamingState {
    pub types: HashMap<String, MetricType>,
    pub by_kind: BTreeMap<Violation, u64>,
    /// Per metric (bounded): its violations and how many series broke them.
    pub by_metric: HashMap<String, (Vec<Violation>, u64)>,
}

pub(crate) const MAX_KNOWN_TYPES: usize = 100_000;
pub(crate) const MAX_VIOLATING_METRICS: usize = 1_000;

/// State that outlives rule versions.
#[derive(Debug)]
pub struct Shared {
    pub(crate) guard: Mutex<SeriesGuard>,
    pub(crate) targets: TargetInfo,
    pub(crate) naming: Mutex<NamingState>,
    pub sampler: TailSampler,
    /// Label rules at work, by label name: series whose label was denied, removed by an
    /// allow list, or templated (bounded by the configured names).
    pub(crate) label_effects: Mutex<BTreeMap<(&'static str, String), u64>>,
}

impl Shared {
    pub fn new(now_ms: i64) -> Self {
        Shared {
            guard: Mutex::new(SeriesGuard::new(DEFAULT_WINDOW_MS, now_ms)),
            targets: TargetInfo::default(),
            naming: Mutex::new(NamingState::default()),
            sampler: TailSampler::default(),
            label_effects: Mutex::new(BTreeMap::new()),
        }
    }
}

/// The rules in force for one batch (see the module docs).
#[derive(Clone, Debug)]
pub struct RulesSnapshot {
    pub active: Arc<Active>,
    pub(crate) shared: Arc<Shared>,
}

impl RulesSnapshot {
    pub fn version_label(&self) -> String {
        self.active.version_label()
    }
}

/// Reads the rules' sources (files, the config) afresh; supplied by the binary.
pub type Loader = Box<dyn Fn() -> Result<Vec<RulesSource>, LoadError> + Send + Sync>;

/// The result of the last reload attempt.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReloadRecord {
    pub time_ms: i64,
    pub success: bool,
    /// The version it activated (or started as canary).
    pub version: Option<u64>,
    pub error: Option<LoadError>,
    /// Parse, validation, tests and swap.
    pub duration_seconds: f64,
    pub tests_passed: usize,
}

#[derive(Debug, Default)]
struct ReloadState {
    last_attempt: Option<u64>,
    last: Option<ReloadRecord>,
}

/// What a reload did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reloaded {
    /// The sources did not change: the stable version and the canary, if one runs
    /// (version, fraction in parts per million), stay as they are.
    Unchanged {
        version: u64,
        canary: Option<(u64, u64)>,
    },
    /// A new stable version is active.
    Activated { version: u64 },
    /// The new version runs as a canary next to the stable one.
    Canary { version: u64, fraction_ppm: u64 },
}

impl Reloaded {
    fn unchanged(active: &Active) -> Reloaded {
        Reloaded::Unchanged {
            version: active.stable.version,
            canary: active
                .canary
                .as_ref()
                .map(|c| (c.rules.version, (c.fraction * 1e6) as u64)),
        }
    }
}

#[derive(Default, Debug)]
pub struct ReloadCounters {
    pub successes: AtomicU64,
    pub failures: AtomicU64,
    pub last_success: AtomicU64,
    pub last_success_time_ms: AtomicU64,
}

/// The engine handle every ingest path holds.
pub struct Rules {
    active: RwLock<Arc<Active>>,
    shared: Arc<Shared>,
    reload: Mutex<ReloadState>,
    loader: Option<Loader>,
    next_version: AtomicU64,
    pub counters: ReloadCounters,
}

impl std::fmt::Debug for Rules {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rules")
            .field("active", &self.active.read().version_label())
            .finish_non_exhaustive()
    }
}

/// Builds and checks a version from sources: parse, merge, compile, run the tests.
pub fn build(
    sources: &[RulesSource],
    version: u64,
    now: i64,
) -> Result<(RuleSet, TestReport), LoadError> {
    let hash = fingerprint(sources);
    let merged = merge(sources)?;
    let rs = RuleSet::compile(merged, version, hash, now)?;
    let report = run_tests(&rs);
    if let Some(f) = report.results.iter().find(|r| !r.passed) {
        return Err(LoadError::new(
            f.loc.clone(),
            format!(
                "rule test {:?} failed: {} ({} of {} tests failed)",
                f.name,
                f.message,
                report.failed(),
                report.results.len()
            ),
        ));
    }
    Ok((rs, report))
}

impl Rules {
    /// Rules with nothing configured (defaults only) and no sources to reload.
    pub fn defaults() -> Rules {
        Self::with(Arc::new(RuleSet::defaults()), None)
    }

    fn with(stable: Arc<RuleSet>, loader: Option<Loader>) -> Rules {
        let version = stable.version;
        Rules {
            active: RwLock::new(Arc::new(Active {
                stable,
                canary: None,
            })),
            shared: Arc::new(Shared::new(now_ms())),
            reload: Mutex::new(ReloadState::default()),
            loader,
            next_version: AtomicU64::new(version + 1),
            counters: ReloadCounters::default(),
        }
    }

    /// Loads the first version from `loader` (which is kept for reloads). A bad file stops
    /// here: a server must not start on rules it cannot read.
    pub fn load(loader: Loader) -> Result<Rules, LoadError> {
        let sources = loader()?;
        let (rs, report) = build(&sources, 1, now_ms())?;
        let hash = rs.source_hash;
        let rules = Self::with(Arc::new(rs), Some(loader));
        {
            let mut r = rules.reload.lock();
            r.last_attempt = Some(hash);
            r.last = Some(ReloadRecord {
                time_ms: now_ms(),
                success: true,
                version: Some(1),
                error: None,
                duration_seconds: 0.0,
                tests_passed: report.results.len(),
            });
        }
        rules.counters.last_success.store(1, Ordering::Relaxed);
        rules
            .counters
            .last_success_time_ms
            .store(now_ms() as u64, Ordering::Relaxed);
        Ok(rules)
    }

    /// From fixed sources (tests, `rules check`).
    pub fn from_sources(sources: Vec<RulesSource>) -> Result<Rules, LoadError> {
        let fixed = sources.clone();
        Self::load(Box::new(move || Ok(fixed.clone())))
    }

    /// The versions in force, for one batch.
    #[inline]
    pub fn current(&self) -> RulesSnapshot {
        RulesSnapshot {
            active: self.active.read().clone(),
            shared: self.shared.clone(),
        }
    }

    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Reloads when the sources changed since the last attempt (the file watcher's call).
    pub fn reload_if_changed(&self) -> Result<Reloaded, LoadError> {
        self.reload_inner(false)
    }

    /// Reloads now (`POST /-/reload`); unchanged sources are still a no-op.
    pub fn reload(&self) -> Result<Reloaded, LoadError> {
        self.reload_inner(true)
    }

    fn reload_inner(&self, forced: bool) -> Result<Reloaded, LoadError> {
        let Some(loader) = &self.loader else {
            return Ok(Reloaded::unchanged(&self.active.read()));
        };
        // One reload at a time; requests never take this lock.
        let mut st = self.reload.lock();
        let _ahead = AheadOfPushes::raise();
        let started = Instant::now();
        let fail = |st: &mut ReloadState, e: LoadError| {
            self.counters.failures.fetch_add(1, Ordering::Relaxed);
            self.counters.last_success.store(0, Ordering::Relaxed);
            tracing::error!(error = %e, "rules reload failed; the previous rules stay active");
            st.last = Some(ReloadRecord {
                time_ms: now_ms(),
                success: false,
                version: None,
                error: Some(e.clone()),
                duration_seconds: started.elapsed().as_secs_f64(),
                tests_passed: 0,
            });
            e
        };
        let sources = match loader() {
            Ok(s) => s,
            Err(e) => {
                // An unreadable file is reported once per change, like a bad one.
                let h = xxhash_rust::xxh3::xxh3_64(e.to_string().as_bytes());
                if !forced && st.last_attempt == Some(h) {
                    return Err(e);
                }
                st.last_attempt = Some(h);
                return Err(fail(&mut st, e));
            }
        };
        let hash = fingerprint(&sources);
        let current = self.active.read().clone();
        if !forced && st.last_attempt == Some(hash) {
            return Ok(Reloaded::unchanged(&current));
        }
        st.last_attempt = Some(hash);
        let unchanged = current.stable.source_hash == hash && current.canary.is_none()
            || current
                .canary
                .as_ref()
                .is_some_and(|c| c.rules.source_hash == hash);
        if unchanged {
            return Ok(Reloaded::unchanged(&current));
        }
        if current.stable.source_hash == hash {
            // The files went back to the stable version: the canary ends.
            *self.active.write() = Arc::new(Active {
                stable: current.stable.clone(),
                canary: None,
            });
            tracing::info!(
                version = current.stable.version,
                "rules reverted to the stable version; canary ended"
            );
            return Ok(Reloaded::Activated {
                version: current.stable.version,
            });
        }
        let version = self.next_version.load(Ordering::Relaxed);
        let (rs, report) = match build(&sources, version, now_ms()) {
            Ok(x) => x,
            Err(e) => return Err(fail(&mut st, e)),
        };
        self.next_version.fetch_add(1, Ordering::Relaxed);
        let rs = Arc::new(rs);
        let outcome = match rs.canary_fraction {
            Some(fraction) => {
                *self.active.write() = Arc::new(Active {
                    stable: current.stable.clone(),
                    canary: Some(Canary {
                        rules: rs.clone(),
                        fraction,
                    }),
                });
                Reloaded::Canary {
                    version,
                    fraction_ppm: (fraction * 1e6) as u64,
                }
            }
            None => {
                *self.active.write() = Arc::new(Active {
                    stable: rs.clone(),
                    canary: None,
                });
                Reloaded::Activated { version }
            }
        };
        self.counters.successes.fetch_add(1, Ordering::Relaxed);
        self.counters.last_success.store(1, Ordering::Relaxed);
        self.counters
            .last_success_time_ms
            .store(now_ms() as u64, Ordering::Relaxed);
        let took = started.elapsed().as_secs_f64();
        tracing::info!(version, outcome = ?outcome, tests = report.results.len(), seconds = took, "rules reloaded");
        st.last = Some(ReloadRecord {
            time_ms: now_ms(),
            success: true,
            version: Some(version),
            error: None,
            duration_seconds: took,
            tests_passed: report.results.len(),
        });
        Ok(outcome)
    }

    /// Makes the canary the stable version.
    pub fn promote(&self) -> Result<u64, String> {
        let mut a = self.active.write();
        let Some(c) = a.canary.clone() else {
            return Err("no canary version is running".into());
        };
        *a = Arc::new(Active {
            stable: c.rules.clone(),
            canary: None,
        });
        tracing::info!(version = c.rules.version, "canary rules promoted to stable");
        Ok(c.rules.version)
    }

    /// Ends the canary; the stable version applies to everything again. The files keep
    /// their content, so the watcher does not start it again until they change.
    pub fn rollback(&self) -> Result<u64, String> {
        let mut a = self.active.write();
        let Some(c) = a.canary.clone() else {
            return Err("no canary version is running".into());
        };
        *a = Arc::new(Active {
            stable: a.stable.clone(),
            canary: None,
        });
        tracing::info!(version = c.rules.version, "canary rules rolled back");
        Ok(c.rules.version)
    }

    /// Decides traces whose decision wait has passed (called every second or so).
    pub fn tick(&self, now_ms: i64) {
        self.shared.sampler.tick(now_ms);
    }

    /// Whether a stored trace is decided as dropped (hidden from reads).
    pub fn trace_hidden(&self, id: &TraceId) -> bool {
        self.shared.sampler.hidden(id)
    }

    /// For the span head being written as a block: which traces to keep.
    pub fn retain_on_flush(&self, ids: &[TraceId]) -> Vec<bool> {
        self.shared.sampler.retain_on_flush(ids, now_ms())
    }

    pub fn last_reload(&self) -> Option<ReloadRecord> {
        self.reload.lock().last.clone()
    }

    pub fn guard_totals(&self) -> GuardTotals {
        self.shared.guard.lock().totals
    }

    /// Overflow per metric, largest first.
    pub fn overflow(&self) -> Vec<(String, Overflow)> {
        self.shared.guard.lock().overflow()
    }

    pub fn status(&self, limit: usize) -> RulesStatus {
        let a = self.active.read().clone();
        let now = now_ms();
        let version = |r: &RuleSet| VersionStatus {
            version: r.version,
            source_hash: format!("{:016x}", r.source_hash),
            loaded_at_ms: r.loaded_at_ms,
            sources: r.sources.clone(),
            rules: r.counts.clone(),
            outcomes: r.stats.snapshot(),
        };
        let stable = version(&a.stable);
        let canary = a.canary.as_ref().map(|c| CanaryStatus {
            fraction: c.fraction,
            version: version(&c.rules),
        });
        let comparison = canary
            .as_ref()
            .map(|c| compare(&stable.outcomes, &c.version.outcomes));
        let (cardinality, limits) = self.cardinality(&a, limit);
        let naming = {
            let n = self.shared.naming.lock();
            let mut metrics: Vec<NamingMetric> = n
                .by_metric
                .iter()
                .map(|(m, (v, c))| NamingMetric {
                    metric: m.clone(),
                    violations: v.iter().map(|v| v.as_str()).collect(),
                    series: *c,
                })
                .collect();
            metrics.sort_by(|a, b| b.series.cmp(&a.series).then(a.metric.cmp(&b.metric)));
            metrics.truncate(limit);
            NamingStatus {
                mode: a.stable.naming.as_ref().map(|n| n.mode),
                violations: n.by_kind.iter().map(|(k, v)| (k.as_str(), *v)).collect(),
                metrics,
            }
        };
        RulesStatus {
            stable,
            canary,
            comparison,
            last_reload: self.last_reload(),
            reloads: ReloadCountsStatus {
                successes: self.counters.successes.load(Ordering::Relaxed),
                failures: self.counters.failures.load(Ordering::Relaxed),
            },
            cardinality,
            limits,
            naming,
            sampling: self
                .shared
                .sampler
                .status(a.stable.sampling.as_deref(), now),
        }
    }

    fn cardinality(&self, a: &Active, limit: usize) -> (CardinalityStatus, Vec<LimitingRule>) {
        let budgets = &a.stable.budgets;
        let g = self.shared.guard.lock();
        let overflow = g.overflow();
        let mut limits: Vec<LimitingRule> = overflow
            .iter()
            .take(limit)
            .map(|(m, o)| LimitingRule {
                rule: format!("cardinality.{}", o.limit),
                what: m.clone(),
                detail: format!(
                    "budget {}: {} samples of {} refused series",
                    o.budget, o.samples, o.series_refused
                ),
                count: o.samples,
            })
            .collect();
        let status = CardinalityStatus {
            max_series: budgets.max_series,
            max_series_per_metric: budgets.per_metric,
            tracked_series: g.series(),
            totals: g.totals,
            top_metrics: g.top_metrics(budgets, limit),
            growth_last_hour: g.top_growth(budgets, limit),
            overflow: overflow
                .into_iter()
                .take(limit)
                .map(|(metric, o)| OverflowStatus {
                    metric,
                    overflow: o,
                })
                .collect(),
            targets_known: self.shared.targets.len(),
        };
        drop(g);
        for ((kind, name), n) in self.shared.label_effects.lock().iter() {
            limits.push(LimitingRule {
                rule: format!("cardinality.{kind}"),
                what: name.clone(),
                detail: match *kind {
                    "deny_labels" => format!("label {name} removed"),
                    "allow_labels" => format!("labels outside the allow list of {name} removed"),
                    _ => format!("ids in label {name} templated"),
                },
                count: *n,
            });
        }
        for v in std::iter::once(&a.stable).chain(a.canary.as_ref().map(|c| &c.rules)) {
            for (i, n) in v.relabel_drops.iter().enumerate() {
                let n = n.load(Ordering::Relaxed);
                if n > 0 {
                    limits.push(LimitingRule {
                        rule: format!("metric_relabel_configs[{i}] (version {})", v.version),
                        what: v.relabel_locs[i].to_string(),
                        detail: "series dropped".into(),
                        count: n,
                    });
                }
            }
            for (i, n) in v.log_rule_hits.iter().enumerate() {
                let n = n.load(Ordering::Relaxed);
                if n > 0 {
                    limits.push(LimitingRule {
                        rule: format!("log_rules[{i}] (version {})", v.version),
                        what: v.log_rules[i].name.clone(),
                        detail: "log lines dropped or sampled out".into(),
                        count: n,
                    });
                }
            }
        }
        for (kind, n) in &self.shared.naming.lock().by_kind {
            limits.push(LimitingRule {
                rule: format!("naming.{}", kind.as_str()),
                what: kind.explain().into(),
                detail: "series breaking the contract".into(),
                count: *n,
            });
        }
        limits.sort_by_key(|l| std::cmp::Reverse(l.count));
        (status, limits)
    }

    /// The cardinality explorer's additions to `/api/v1/status/tsdb`.
    pub fn explorer(&self, limit: usize) -> CardinalityExplorer {
        let a = self.active.read().clone();
        let (c, limits) = self.cardinality(&a, limit);
        CardinalityExplorer {
            growth_last_hour: c.growth_last_hour,
            series_by_metric_last_hour: c.top_metrics,
            limits,
            overflow: c.overflow,
            max_series: c.max_series,
            tracked_series: c.tracked_series,
        }
    }
}

fn compare(stable: &StatsSnapshot, canary: &StatsSnapshot) -> Comparison {
    Comparison {
        series_dropped_ratio: (stable.series_dropped_ratio, canary.series_dropped_ratio),
        log_dropped_ratio: (stable.log_dropped_ratio, canary.log_dropped_ratio),
        trace_keep_ratio: (stable.trace_keep_ratio, canary.trace_keep_ratio),
        overflow_per_series: (
            per(stable.series_overflow, stable.series_in),
            per(canary.series_overflow, canary.series_in),
        ),
    }
}

fn per(a: u64, b: u64) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VersionStatus {
    pub version: u64,
    pub source_hash: String,
    pub loaded_at_ms: i64,
    pub sources: Vec<String>,
    pub rules: RuleCounts,
    pub outcomes: StatsSnapshot,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CanaryStatus {
    pub fraction: f64,
    #[serde(flatten)]
    pub version: VersionStatus,
}

/// Stable vs canary, as (stable, canary) pairs.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Comparison {
    pub series_dropped_ratio: (f64, f64),
    pub log_dropped_ratio: (f64, f64),
    pub trace_keep_ratio: (f64, f64),
    pub overflow_per_series: (f64, f64),
}

#[derive(Clone, Debug, Serialize)]
pub struct ReloadCountsStatus {
    pub successes: u64,
    pub failures: u64,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OverflowStatus {
    pub metric: String,
    #[serde(flatten)]
    pub overflow: Overflow,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CardinalityStatus {
    pub max_series: usize,
    pub max_series_per_metric: usize,
    pub tracked_series: usize,
    pub totals: GuardTotals,
    pub top_metrics: Vec<MetricCardinality>,
    pub growth_last_hour: Vec<MetricCardinality>,
    pub overflow: Vec<OverflowStatus>,
    pub targets_known: usize,
}

/// One rule at work: which rule, on what, how often.
#[derive(Clone, Debug, Serialize)]
pub struct LimitingRule {
    pub rule: String,
    pub what: String,
    pub detail: String,
    pub count: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct NamingMetric {
    pub metric: String,
    pub violations: Vec<&'static str>,
    pub series: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct NamingStatus {
    pub mode: Option<crate::naming::NamingMode>,
    pub violations: BTreeMap<&'static str, u64>,
    pub metrics: Vec<NamingMetric>,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RulesStatus {
    pub stable: VersionStatus,
    pub canary: Option<CanaryStatus>,
    pub comparison: Option<Comparison>,
    pub last_reload: Option<ReloadRecord>,
    pub reloads: ReloadCountsStatus,
    pub cardinality: CardinalityStatus,
    pub limits: Vec<LimitingRule>,
    pub naming: NamingStatus,
    pub sampling: SamplerStatus,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CardinalityExplorer {
    pub series_by_metric_last_hour: Vec<MetricCardinality>,
    pub growth_last_hour: Vec<MetricCardinality>,
    pub limits: Vec<LimitingRule>,
    pub overflow: Vec<OverflowStatus>,
    pub max_series: usize,
    pub tracked_series: usize,
}

/// Runs this thread ahead of the push handlers while a reload is under way: a reload is a
/// few tens of ms of CPU that otherwise queue behind every busy push worker (on two
/// loaded cores a 22 ms reload took 42–55 ms). Lowers the thread's nice value by 5 and
/// puts it back when dropped; without the privilege to do so (CAP_SYS_NICE) it changes
/// nothing.
struct AheadOfPushes {
    tid: libc::id_t,
    previous: libc::c_int,
}

impl AheadOfPushes {
    fn raise() -> Option<AheadOfPushes> {
        // SAFETY: gettid has no preconditions; get/setpriority take plain integers.
        unsafe {
            let tid = libc::gettid() as libc::id_t;
            *libc::__errno_location() = 0;
            let previous = libc::getpriority(libc::PRIO_PROCESS, tid);
            if previous == -1 && *libc::__errno_location() != 0 {
                return None;
            }
            (libc::setpriority(libc::PRIO_PROCESS, tid, previous - 5) == 0)
                .then_some(AheadOfPushes { tid, previous })
        }
    }
}

impl Drop for AheadOfPushes {
    fn drop(&mut self) {
        // SAFETY: as above; the thread is this one, still running.
        unsafe {
            libc::setpriority(libc::PRIO_PROCESS, self.tid, self.previous);
        }
    }
}
