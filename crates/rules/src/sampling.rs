//! Trace tail sampling: keep every error, every slow request and a fraction of the rest,
//! deciding per trace once its spans have had time to arrive.
//!
//! How it fits the durability rule (an acknowledged span survives `kill -9`): spans are
//! stored as they arrive, like any other span, and this sampler only *decides*. Each trace
//! is decided `decision_wait` after its first span (or earlier when more than `max_traces`
//! wait); a decided-dropped trace is hidden from reads at once and left out when the span
//! head is written as a block ([`TailSampler::retain_on_flush`]). Until that flush a
//! "drop" can still become "keep" — a late error span upgrades the trace, and because
//! nothing was deleted yet the trace is kept whole. After a restart the sampler knows
//! nothing about the replayed head, so those traces are kept (never lost by uncertainty).
//!
//! Policies are evaluated in order and the first one any span of the trace matches
//! decides, with its probability; the decision is a deterministic function of the trace
//! id, so every instance and every retry agrees. A trace no policy matches is kept.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use lastmile_model::duration::parse_duration;
use lastmile_model::{AttrValue, Resource, Span, SpanBatch, StatusCode, TraceId};
use parking_lot::Mutex;
use regex::Regex;
use serde::Deserialize;

use crate::stats::VersionStats;

pub const DEFAULT_DECISION_WAIT: Duration = Duration::from_secs(10);
pub const DEFAULT_MAX_TRACES: usize = 100_000;
pub const MAX_DECISION_WAIT: Duration = Duration::from_secs(3600);
/// Decisions are remembered this long after their trace was written to a block, so late
/// spans follow them.
pub const LATE_SPAN_TTL_MS: i64 = 5 * 60 * 1000;
/// Window over which an adaptive policy measures its span rate.
const RATE_WINDOW_SECS: usize = 30;

/// The `tail_sampling:` section of a rules file.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TailSamplingConfig {
    /// How long after a trace's first span it is decided (default 10s).
    pub decision_wait: Option<String>,
    /// Most traces waiting for a decision; beyond it the oldest are decided early.
    pub max_traces: Option<usize>,
    #[serde(default)]
    pub policies: Vec<PolicyConfig>,
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum StatusMatch {
    Error,
    Ok,
    Unset,
}

/// One policy. Every condition given must hold on one span; a policy without conditions
/// matches every trace (a default).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    pub name: String,
    pub status: Option<StatusMatch>,
    /// `5xx`, `4xx`, a code (`503`) or a range (`500-599`), on `http.response.status_code`
    /// or `http.status_code`.
    pub http_status: Option<String>,
    /// Spans at least this long (e.g. `2s`, `250ms`).
    pub latency_over: Option<String>,
    /// Regex on the span name (anchored).
    pub span_name: Option<String>,
    /// Regex (anchored) per attribute, looked up on the span, then on its resource.
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
    /// Fraction of matching traces kept (default 1: all).
    pub keep: Option<f64>,
    /// Keep as many matching traces as fit `spans_per_second`: the kept fraction falls as
    /// the rate of matching spans rises.
    pub adaptive: Option<AdaptiveConfig>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdaptiveConfig {
    pub spans_per_second: f64,
}

#[derive(Clone, Debug)]
enum Keep {
    Fraction(f64),
    Adaptive { spans_per_second: f64 },
}

#[derive(Clone, Debug)]
pub struct Policy {
    pub name: String,
    status: Option<StatusCode>,
    http_status: Option<(i64, i64)>,
    latency_over_ns: Option<u64>,
    span_name: Option<Regex>,
    attributes: Vec<(String, Regex)>,
    keep: Keep,
}

fn anchored(re: &str) -> Result<Regex, String> {
    Regex::new(&format!("^(?:{re})$")).map_err(|e| format!("invalid regex {re:?}: {e}"))
}

fn parse_http_status(s: &str) -> Result<(i64, i64), String> {
    let s = s.trim();
    let bad = || format!("http_status {s:?}: write 5xx, 503 or 500-599");
    if let Some(d) = s.strip_suffix("xx").or_else(|| s.strip_suffix("XX")) {
        let d: i64 = d.parse().map_err(|_| bad())?;
        if !(1..=5).contains(&d) {
            return Err(bad());
        }
        return Ok((d * 100, d * 100 + 99));
    }
    if let Some((a, b)) = s.split_once('-') {
        let a: i64 = a.trim().parse().map_err(|_| bad())?;
        let b: i64 = b.trim().parse().map_err(|_| bad())?;
        return if a <= b { Ok((a, b)) } else { Err(bad()) };
    }
    let c: i64 = s.parse().map_err(|_| bad())?;
    Ok((c, c))
}

impl PolicyConfig {
    pub fn compile(&self) -> Result<Policy, String> {
        let keep = match (self.keep, &self.adaptive) {
            (Some(_), Some(_)) => return Err("give keep or adaptive, not both".into()),
            (Some(k), None) if !(0.0..=1.0).contains(&k) => {
                return Err(format!("keep {k} is not a fraction between 0 and 1"));
            }
            (Some(k), None) => Keep::Fraction(k),
            (None, Some(a)) if a.spans_per_second.is_nan() || a.spans_per_second <= 0.0 => {
                return Err("adaptive.spans_per_second must be above 0".into());
            }
            (None, Some(a)) => Keep::Adaptive {
                spans_per_second: a.spans_per_second,
            },
            (None, None) => Keep::Fraction(1.0),
        };
        let latency_over_ns = self
            .latency_over
            .as_deref()
            .map(|d| parse_duration(d).map(|d| d.as_nanos() as u64))
            .transpose()
            .map_err(|e| format!("latency_over: {e}"))?;
        Ok(Policy {
            name: self.name.clone(),
            status: self.status.map(|s| match s {
                StatusMatch::Error => StatusCode::Error,
                StatusMatch::Ok => StatusCode::Ok,
                StatusMatch::Unset => StatusCode::Unset,
            }),
            http_status: self
                .http_status
                .as_deref()
                .map(parse_http_status)
                .transpose()?,
            latency_over_ns,
            span_name: self.span_name.as_deref().map(anchored).transpose()?,
            attributes: self
                .attributes
                .iter()
                .map(|(k, v)| anchored(v).map(|r| (k.clone(), r)))
                .collect::<Result<_, _>>()?,
            keep,
        })
    }
}

fn attr<'a>(resource: &'a Resource, span: &'a Span, key: &str) -> Option<&'a AttrValue> {
    span.attr(key)
        .or_else(|| lastmile_model::trace::attr(&resource.attributes, key))
}

impl Policy {
    pub fn matches(&self, resource: &Resource, span: &Span) -> bool {
        if self.status.is_some_and(|s| s != span.status_code) {
            return false;
        }
        if let Some((lo, hi)) = self.http_status {
            let code = attr(resource, span, "http.response.status_code")
                .or_else(|| attr(resource, span, "http.status_code"))
                .and_then(AttrValue::as_i64);
            if !code.is_some_and(|c| (lo..=hi).contains(&c)) {
                return false;
            }
        }
        if self
            .latency_over_ns
            .is_some_and(|t| span.duration_nanos() < t)
        {
            return false;
        }
        if self
            .span_name
            .as_ref()
            .is_some_and(|r| !r.is_match(&span.name))
        {
            return false;
        }
        self.attributes.iter().all(|(k, re)| {
            attr(resource, span, k).is_some_and(|v| match v {
                AttrValue::String(s) => re.is_match(s),
                other => re.is_match(&other.to_text()),
            })
        })
    }

    pub fn describe_keep(&self) -> String {
        match self.keep {
            Keep::Fraction(f) => format!("{f}"),
            Keep::Adaptive { spans_per_second } => format!("adaptive({spans_per_second} spans/s)"),
        }
    }
}

/// One version's sampling rules.
#[derive(Debug)]
pub struct SamplingRules {
    pub version: u64,
    pub decision_wait_ms: i64,
    pub max_traces: usize,
    pub policies: Vec<Policy>,
    pub(crate) stats: Arc<VersionStats>,
}

/// No policy matched: the trace is kept.
pub const NO_POLICY: u16 = u16::MAX;

impl SamplingRules {
    pub fn new(
        c: &TailSamplingConfig,
        version: u64,
        stats: Arc<VersionStats>,
    ) -> Result<Self, String> {
        let wait = c
            .decision_wait
            .as_deref()
            .map(parse_duration)
            .transpose()
            .map_err(|e| format!("decision_wait: {e}"))?
            .unwrap_or(DEFAULT_DECISION_WAIT);
        if wait > MAX_DECISION_WAIT {
            return Err(format!(
                "decision_wait {} is over the 1h maximum (spans of undecided traces are held in the head)",
                lastmile_model::duration::format_duration(wait)
            ));
        }
        let mut names = std::collections::HashSet::new();
        let policies = c
            .policies
            .iter()
            .enumerate()
            .map(|(i, p)| {
                if !names.insert(p.name.clone()) {
                    return Err(format!("policies[{i}]: duplicate policy name {:?}", p.name));
                }
                p.compile()
                    .map_err(|e| format!("policies[{i}] ({}): {e}", p.name))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if policies.len() >= NO_POLICY as usize {
            return Err("too many policies".into());
        }
        Ok(SamplingRules {
            version,
            decision_wait_ms: wait.as_millis() as i64,
            max_traces: c.max_traces.unwrap_or(DEFAULT_MAX_TRACES).max(1),
            policies,
            stats,
        })
    }

    /// The first policy this span matches.
    pub fn policy_of(&self, resource: &Resource, span: &Span) -> u16 {
        self.policies
            .iter()
            .position(|p| p.matches(resource, span))
            .map_or(NO_POLICY, |i| i as u16)
    }

    pub fn policy_name(&self, idx: u16) -> &str {
        self.policies
            .get(idx as usize)
            .map_or("(none)", |p| p.name.as_str())
    }
}

/// A trace id as a uniform number in [0, 1): the same trace always gets the same draw.
pub fn trace_draw(id: &TraceId) -> f64 {
    let h = xxhash_rust::xxh3::xxh3_64_with_seed(&id.0, 0x7361_6d70_6c65);
    (h >> 11) as f64 / (1u64 << 53) as f64
}

#[derive(Debug)]
struct Pending {
    rules: Arc<SamplingRules>,
    policy: u16,
    spans: u32,
    deadline: i64,
}

#[derive(Debug)]
struct Decided {
    rules: Arc<SamplingRules>,
    keep: bool,
    policy: u16,
    at: i64,
    flushed: bool,
}

/// Spans per second over a sliding window of one-second slots.
#[derive(Clone, Copy, Debug, Default)]
struct RateWindow {
    slots: [u64; RATE_WINDOW_SECS],
    second: i64,
    first_second: Option<i64>,
}

impl RateWindow {
    fn add(&mut self, now_ms: i64, spans: u64) {
        let sec = now_ms.div_euclid(1000);
        self.first_second.get_or_insert(sec);
        if sec > self.second {
            let steps = (sec - self.second).min(RATE_WINDOW_SECS as i64);
            for s in 1..=steps {
                self.slots[((self.second + s).rem_euclid(RATE_WINDOW_SECS as i64)) as usize] = 0;
            }
            self.second = sec;
        }
        if sec > self.second - RATE_WINDOW_SECS as i64 {
            self.slots[sec.rem_euclid(RATE_WINDOW_SECS as i64) as usize] += spans;
        }
    }

    fn per_second(&self) -> f64 {
        let covered = self.first_second.map_or(1, |f| {
            (self.second - f + 1).clamp(1, RATE_WINDOW_SECS as i64)
        });
        self.slots.iter().sum::<u64>() as f64 / covered as f64
    }
}

/// Counts shown on the status page.
#[derive(Clone, Debug, Default, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SamplerStatus {
    pub pending_traces: usize,
    pub decided_traces: usize,
    /// Decisions to keep and to drop (a drop a late span reversed counts in both, and in
    /// `upgraded`).
    pub traces_kept: u64,
    pub traces_dropped: u64,
    /// Decisions taken before the decision wait ended (too many pending traces, or the
    /// span head was written as a block).
    pub decided_early: u64,
    /// Dropped traces turned into kept ones by a later span.
    pub upgraded: u64,
    /// Of those, upgraded after earlier spans had already been left out of a block.
    pub upgraded_after_flush: u64,
    pub spans_dropped_at_flush: u64,
    /// Per policy name: traces kept and dropped, and the current keep fraction of
    /// adaptive policies.
    pub policies: BTreeMap<String, PolicyStatus>,
}

#[derive(Clone, Debug, Default, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyStatus {
    pub kept: u64,
    pub dropped: u64,
    pub keep: String,
}

#[derive(Debug, Default)]
struct State {
    pending: HashMap<TraceId, Pending>,
    queue: VecDeque<(i64, TraceId)>,
    decided: HashMap<TraceId, Decided>,
    decided_order: VecDeque<(i64, TraceId)>,
    rates: HashMap<(u64, u16), RateWindow>,
    status: SamplerStatus,
}

/// The sampler's state, shared by all rule versions (a reload keeps pending traces).
#[derive(Debug)]
pub struct TailSampler {
    state: Mutex<State>,
    /// Most decisions remembered (for hiding and for late spans).
    max_decided: usize,
}

impl Default for TailSampler {
    fn default() -> Self {
        Self::new(2_000_000)
    }
}

impl State {
    fn decide(&mut self, id: TraceId, p: Pending, now_ms: i64) {
        let keep = self.draw(&p.rules, p.policy, &id, p.spans as u64, now_ms);
        self.record(&p.rules, p.policy, keep);
        self.decided.insert(
            id,
            Decided {
                rules: p.rules,
                keep,
                policy: p.policy,
                at: now_ms,
                flushed: false,
            },
        );
        self.decided_order.push_back((now_ms, id));
    }

    fn draw(
        &mut self,
        rules: &SamplingRules,
        policy: u16,
        id: &TraceId,
        spans: u64,
        now_ms: i64,
    ) -> bool {
        let Some(p) = rules.policies.get(policy as usize) else {
            return true;
        };
        let fraction = match p.keep {
            Keep::Fraction(f) => f,
            Keep::Adaptive { spans_per_second } => {
                let w = self.rates.entry((rules.version, policy)).or_default();
                w.add(now_ms, spans);
                (spans_per_second / w.per_second().max(f64::MIN_POSITIVE)).min(1.0)
            }
        };
        trace_draw(id) < fraction
    }

    fn record(&mut self, rules: &SamplingRules, policy: u16, keep: bool) {
        let st = &mut self.status;
        let entry = st
            .policies
            .entry(rules.policy_name(policy).to_owned())
            .or_default();
        if keep {
            st.traces_kept += 1;
            entry.kept += 1;
            rules.stats.traces_kept.fetch_add(1, Ordering::Relaxed);
        } else {
            st.traces_dropped += 1;
            entry.dropped += 1;
            rules.stats.traces_dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Takes back, in the version's outcome counts, a drop that a late span turned into a
    /// keep. (The sampler's own counters count decisions and stay monotonic; `upgraded`
    /// says how many drops were later reversed.)
    fn unrecord_drop(&mut self, rules: &SamplingRules) {
        let _ =
            rules
                .stats
                .traces_dropped
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| v.checked_sub(1));
    }
}

impl TailSampler {
    pub fn new(max_decided: usize) -> Self {
        TailSampler {
            state: Mutex::new(State::default()),
            max_decided: max_decided.max(1),
        }
    }

    /// Takes note of stored spans. `rules_for` gives the sampling rules a new trace falls
    /// under (the stable or the canary version, by trace id), `None` when its version does
    /// not sample.
    pub fn observe(
        &self,
        batch: &SpanBatch,
        now_ms: i64,
        rules_for: impl Fn(&TraceId) -> Option<Arc<SamplingRules>>,
    ) {
        let mut st = self.state.lock();
        for (resource, _, span) in batch.spans() {
            let id = span.trace_id;
            if let Some(d) = st.decided.get(&id) {
                if d.keep {
                    continue;
                }
                let idx = d.rules.policy_of(resource, span);
                if idx >= d.policy {
                    continue;
                }
                let rules = d.rules.clone();
                let flushed = d.flushed;
                if st.draw(&rules, idx, &id, 1, now_ms) {
                    // A late span decides for keeping: nothing was deleted yet unless the
                    // head was flushed in between.
                    st.unrecord_drop(&rules);
                    st.record(&rules, idx, true);
                    st.status.upgraded += 1;
                    if flushed {
                        st.status.upgraded_after_flush += 1;
                    }
                    if let Some(d) = st.decided.get_mut(&id) {
                        d.keep = true;
                        d.policy = idx;
                    }
                } else if let Some(d) = st.decided.get_mut(&id) {
                    d.policy = idx;
                }
                continue;
            }
            if let Some(p) = st.pending.get_mut(&id) {
                let idx = p.rules.policy_of(resource, span);
                p.policy = p.policy.min(idx);
                p.spans += 1;
                continue;
            }
            let Some(rules) = rules_for(&id) else {
                continue;
            };
            let deadline = now_ms + rules.decision_wait_ms;
            let idx = rules.policy_of(resource, span);
            let max = rules.max_traces;
            st.pending.insert(
                id,
                Pending {
                    rules,
                    policy: idx,
                    spans: 1,
                    deadline,
                },
            );
            st.queue.push_back((deadline, id));
            while st.pending.len() > max {
                let Some((_, old)) = st.queue.pop_front() else {
                    break;
                };
                if let Some(p) = st.pending.remove(&old) {
                    st.status.decided_early += 1;
                    st.decide(old, p, now_ms);
                }
            }
        }
        self.bound_decided(&mut st, now_ms);
    }

    /// Decides every trace whose decision wait has passed; forgets old decisions.
    pub fn tick(&self, now_ms: i64) {
        let mut st = self.state.lock();
        while let Some(&(deadline, id)) = st.queue.front() {
            if deadline > now_ms {
                break;
            }
            st.queue.pop_front();
            // A queue entry can outlive its trace's wait (decided early, forgotten, then
            // seen again): only a trace whose own deadline passed is decided.
            if st.pending.get(&id).is_some_and(|p| p.deadline <= now_ms)
                && let Some(p) = st.pending.remove(&id)
            {
                st.decide(id, p, now_ms);
            }
        }
        self.bound_decided(&mut st, now_ms);
    }

    fn bound_decided(&self, st: &mut State, now_ms: i64) {
        while let Some(&(at, id)) = st.decided_order.front() {
            let over = st.decided.len() > self.max_decided;
            let expired = st
                .decided
                .get(&id)
                .is_none_or(|d| d.at != at || (d.flushed && at + LATE_SPAN_TTL_MS < now_ms));
            if !over && !expired {
                break;
            }
            st.decided_order.pop_front();
            if st.decided.get(&id).is_some_and(|d| d.at == at) {
                st.decided.remove(&id);
            }
        }
    }

    /// Whether a trace is decided as dropped (its stored spans are hidden from reads).
    pub fn hidden(&self, id: &TraceId) -> bool {
        self.state.lock().decided.get(id).is_some_and(|d| !d.keep)
    }

    /// For the span head being written as a block: which of these traces to write.
    /// Traces still waiting are decided now; unknown ones are kept.
    pub fn retain_on_flush(&self, ids: &[TraceId], now_ms: i64) -> Vec<bool> {
        let mut st = self.state.lock();
        ids.iter()
            .map(|id| {
                if let Some(p) = st.pending.remove(id) {
                    st.status.decided_early += 1;
                    st.decide(*id, p, now_ms);
                }
                match st.decided.get_mut(id) {
                    Some(d) => {
                        d.flushed = true;
                        d.keep
                    }
                    None => true,
                }
            })
            .collect()
    }

    pub fn count_dropped_at_flush(&self, spans: u64) {
        self.state.lock().status.spans_dropped_at_flush += spans;
    }

    pub fn status(&self, current: Option<&SamplingRules>, now_ms: i64) -> SamplerStatus {
        let st = self.state.lock();
        let mut s = st.status.clone();
        s.pending_traces = st.pending.len();
        s.decided_traces = st.decided.len();
        if let Some(rules) = current {
            for (i, p) in rules.policies.iter().enumerate() {
                let keep = match p.keep {
                    Keep::Fraction(f) => format!("{f}"),
                    Keep::Adaptive { spans_per_second } => {
                        let rate = st.rates.get(&(rules.version, i as u16)).map_or(0.0, |w| {
                            let mut w2 = *w;
                            w2.add(now_ms, 0);
                            w2.per_second()
                        });
                        let f = if rate > 0.0 {
                            (spans_per_second / rate).min(1.0)
                        } else {
                            1.0
                        };
                        format!(
                            "{f:.4} (adaptive: {rate:.1} spans/s seen, budget {spans_per_second})"
                        )
                    }
                };
                s.policies.entry(p.name.clone()).or_default().keep = keep;
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lastmile_model::{KeyValue, ResourceSpans, Scope, ScopeSpans, SpanId, SpanKind};

    pub(crate) fn span(
        trace: u8,
        n: u8,
        name: &str,
        ms: u64,
        status: StatusCode,
        attrs: Vec<KeyValue>,
    ) -> Span {
        Span {
            trace_id: TraceId([trace; 16]),
            span_id: SpanId([n; 8]),
            parent_span_id: None,
            trace_state: String::new(),
            name: name.into(),
            kind: SpanKind::Server,
            start_unix_nano: 1_000_000_000,
            end_unix_nano: 1_000_000_000 + ms * 1_000_000,
            attributes: attrs,
            events: vec![],
            links: vec![],
            status_code: status,
            status_message: String::new(),
        }
    }

    pub(crate) fn batch(spans: Vec<Span>) -> SpanBatch {
        SpanBatch {
            resources: vec![ResourceSpans {
                resource: Arc::new(Resource {
                    attributes: vec![KeyValue::string("service.name", "api")],
                }),
                scopes: vec![ScopeSpans {
                    scope: Scope::default(),
                    spans,
                }],
            }],
        }
    }

    fn rules(yaml: &str) -> Arc<SamplingRules> {
        let c: TailSamplingConfig = serde_saphyr::from_str(yaml).unwrap();
        Arc::new(SamplingRules::new(&c, 1, Arc::default()).unwrap())
    }

    const POLICIES: &str = "decision_wait: 10s\npolicies:\n  - name: errors\n    status: error\n  - name: server-errors\n    http_status: 5xx\n  - name: slow\n    latency_over: 2s\n  - name: health\n    attributes: {http.route: /healthz}\n    keep: 0\n  - name: rest\n    keep: 0\n";

    #[test]
    fn policies_match_spans_in_order() {
        let r = rules(POLICIES);
        let res = Resource::default();
        let ok = StatusCode::Unset;
        let s = span(1, 1, "GET /", 5, StatusCode::Error, vec![]);
        assert_eq!(r.policy_name(r.policy_of(&res, &s)), "errors");
        let s = span(
            1,
            1,
            "GET /",
            5,
            ok,
            vec![KeyValue::new(
                "http.response.status_code",
                AttrValue::Int(503),
            )],
        );
        assert_eq!(r.policy_name(r.policy_of(&res, &s)), "server-errors");
        let s = span(1, 1, "GET /", 2500, ok, vec![]);
        assert_eq!(r.policy_name(r.policy_of(&res, &s)), "slow");
        let s = span(
            1,
            1,
            "GET /healthz",
            1,
            ok,
            vec![KeyValue::string("http.route", "/healthz")],
        );
        assert_eq!(r.policy_name(r.policy_of(&res, &s)), "health");
        let s = span(1, 1, "GET /", 1, ok, vec![]);
        assert_eq!(r.policy_name(r.policy_of(&res, &s)), "rest");
    }

    #[test]
    fn an_error_in_a_later_batch_keeps_the_trace_and_drops_are_hidden() {
        let r = rules(POLICIES);
        let s = TailSampler::default();
        let ok = StatusCode::Unset;
        let f = |_: &TraceId| Some(r.clone());
        s.observe(
            &batch(vec![
                span(1, 1, "GET /a", 5, ok, vec![]),
                span(2, 1, "GET /b", 5, ok, vec![]),
            ]),
            0,
            f,
        );
        s.observe(
            &batch(vec![span(1, 2, "db", 5, StatusCode::Error, vec![])]),
            5_000,
            f,
        );
        s.tick(9_999);
        assert!(!s.hidden(&TraceId([2; 16])), "not decided before the wait");
        s.tick(10_000);
        assert!(!s.hidden(&TraceId([1; 16])));
        assert!(s.hidden(&TraceId([2; 16])));
        // A late error span upgrades a dropped trace while it is still in the head.
        s.observe(
            &batch(vec![span(2, 2, "db", 5, StatusCode::Error, vec![])]),
            11_000,
            f,
        );
        assert!(!s.hidden(&TraceId([2; 16])));
        let st = s.status(Some(&r), 11_000);
        assert_eq!((st.traces_kept, st.traces_dropped, st.upgraded), (2, 1, 1));
        assert_eq!(st.policies["errors"].kept, 2);
        // Flush: unknown traces are kept, pending ones decided now.
        s.observe(&batch(vec![span(3, 1, "GET /c", 5, ok, vec![])]), 12_000, f);
        let keep = s.retain_on_flush(
            &[TraceId([1; 16]), TraceId([3; 16]), TraceId([9; 16])],
            12_001,
        );
        assert_eq!(keep, [true, false, true]);
        assert_eq!(s.status(None, 12_001).decided_early, 1);
    }

    #[test]
    fn pending_traces_are_bounded() {
        let r = rules("max_traces: 2\npolicies:\n  - name: none\n    keep: 0\n");
        let s = TailSampler::default();
        let f = |_: &TraceId| Some(r.clone());
        for t in 1..=5u8 {
            s.observe(
                &batch(vec![span(t, 1, "x", 1, StatusCode::Unset, vec![])]),
                0,
                f,
            );
        }
        let st = s.status(None, 0);
        assert_eq!(
            (st.pending_traces, st.decided_early, st.traces_dropped),
            (2, 3, 3)
        );
    }

    #[test]
    fn adaptive_policies_lower_the_keep_fraction_as_the_rate_rises() {
        let r = rules("policies:\n  - name: default\n    adaptive: {spans_per_second: 100}\n");
        let s = TailSampler::default();
        let f = |_: &TraceId| Some(r.clone());
        // 30 s of 10,000 single-span traces per second: ~1% kept.
        let mut n = 0u64;
        for sec in 0..30i64 {
            let spans: Vec<Span> = (0..10_000u32)
                .map(|i| {
                    n += 1;
                    let mut sp = span(0, 1, "x", 1, StatusCode::Unset, vec![]);
                    sp.trace_id.0[..8].copy_from_slice(&n.to_le_bytes());
                    sp.trace_id.0[8..12].copy_from_slice(&i.to_le_bytes());
                    sp
                })
                .collect();
            s.observe(&batch(spans), sec * 1000, f);
            s.tick(sec * 1000 + 10_000);
        }
        let st = s.status(Some(&r), 40_000);
        let kept = st.traces_kept as f64 / (st.traces_kept + st.traces_dropped) as f64;
        assert!(kept > 0.005 && kept < 0.03, "kept fraction {kept}");
    }

    #[test]
    fn draws_are_uniform_enough_and_stable() {
        let kept = (0..100_000u32)
            .filter(|i| {
                let mut id = [0u8; 16];
                id[..4].copy_from_slice(&i.to_le_bytes());
                trace_draw(&TraceId(id)) < 0.1
            })
            .count();
        assert!((9_000..11_000).contains(&kept), "{kept}");
        assert_eq!(trace_draw(&TraceId([7; 16])), trace_draw(&TraceId([7; 16])));
    }
}
