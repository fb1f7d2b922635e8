//! Trace search: what a query asks, what a trace looks like in a result list, and the
//! per-span test both the head and the blocks apply.

use lastmile_model::{AttrValue, KeyValue, Resource, Span, StatusCode, TraceId};
use serde::Serialize;

/// A search over stored traces. A trace matches when it overlaps the time range, its
/// duration (first span start to last span end) is within bounds, and — if any span-level
/// condition is given — one of its spans meets all of them at once.
#[derive(Clone, Debug, Default)]
pub struct TraceQuery {
    /// Unix nanoseconds; the trace must end at or after `start_ns` and start at or before
    /// `end_ns`.
    pub start_ns: Option<u64>,
    pub end_ns: Option<u64>,
    pub min_duration_ns: Option<u64>,
    pub max_duration_ns: Option<u64>,
    /// Span-level: the span's `service.name`.
    pub service: Option<String>,
    /// Span-level: the span's name (operation).
    pub operation: Option<String>,
    /// Span-level: the span's status code.
    pub status: Option<StatusCode>,
    /// Span-level: attribute equality, on the span's or its resource's attributes (values
    /// compared as text, so `http.status_code=500` matches the integer 500).
    pub tags: Vec<(String, String)>,
    /// Most traces returned (most recent first). 0 means the default, 20.
    pub limit: usize,
}

impl TraceQuery {
    pub fn limit(&self) -> usize {
        if self.limit == 0 { 20 } else { self.limit }
    }

    pub(crate) fn has_span_conditions(&self) -> bool {
        self.service.is_some()
            || self.operation.is_some()
            || self.status.is_some()
            || !self.tags.is_empty()
    }

    /// The conditions a span's summary row can decide without decoding the span.
    pub(crate) fn row_matches(&self, service: &str, name: &str, status: StatusCode) -> bool {
        self.service.as_deref().is_none_or(|s| s == service)
            && self.operation.as_deref().is_none_or(|o| o == name)
            && self.status.is_none_or(|s| s == status)
    }

    /// The attribute conditions, on the decoded span.
    pub(crate) fn tags_match(&self, resource: &Resource, span: &Span) -> bool {
        self.tags.iter().all(|(k, v)| {
            let found = |attrs: &[KeyValue]| {
                attrs
                    .iter()
                    .any(|kv| kv.key == *k && value_matches(&kv.value, v))
            };
            found(&span.attributes) || found(&resource.attributes)
        })
    }

    pub(crate) fn time_overlaps(&self, start_ns: u64, end_ns: u64) -> bool {
        self.start_ns.is_none_or(|s| end_ns >= s) && self.end_ns.is_none_or(|e| start_ns <= e)
    }

    pub(crate) fn duration_ok(&self, duration_ns: u64) -> bool {
        self.min_duration_ns.is_none_or(|m| duration_ns >= m)
            && self.max_duration_ns.is_none_or(|m| duration_ns <= m)
    }
}

fn value_matches(v: &AttrValue, want: &str) -> bool {
    match v {
        AttrValue::String(s) => s == want,
        other => other.to_text() == want,
    }
}

/// One trace in a search result.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TraceSummary {
    pub trace_id: TraceId,
    /// Service and name of the root span (the span without a parent; the earliest span
    /// when the root has not arrived).
    pub root_service: String,
    pub root_name: String,
    pub start_ns: u64,
    pub duration_ns: u64,
    pub span_count: u32,
    pub error_count: u32,
    /// Services with their span counts, most spans first.
    pub services: Vec<(String, u32)>,
}

/// Builds a summary from a trace's span rows, in any order. Service and span names are
/// ids into the caller's string table, resolved only for traces that make the result.
#[derive(Default)]
pub(crate) struct SummaryBuilder {
    start: u64,
    end: u64,
    /// (is root, start, service id, name id) of the best root candidate.
    root: Option<(bool, u64, u32, u32)>,
    spans: u32,
    errors: u32,
    services: Vec<(u32, u32)>,
}

impl SummaryBuilder {
    pub fn add(
        &mut self,
        service: u32,
        name: u32,
        start: u64,
        end: u64,
        status: StatusCode,
        root: bool,
    ) {
        if self.spans == 0 {
            self.start = start;
            self.end = end;
        } else {
            self.start = self.start.min(start);
            self.end = self.end.max(end);
        }
        self.spans += 1;
        if status == StatusCode::Error {
            self.errors += 1;
        }
        // A root beats any non-root; among equals the earliest start wins.
        let better = match self.root {
            None => true,
            Some((r, s, _, _)) => (root && !r) || (root == r && start < s),
        };
        if better {
            self.root = Some((root, start, service, name));
        }
        match self.services.iter_mut().find(|(s, _)| *s == service) {
            Some((_, n)) => *n += 1,
            None => self.services.push((service, 1)),
        }
    }

    pub fn start(&self) -> u64 {
        self.start
    }

    pub fn end(&self) -> u64 {
        self.end
    }

    pub fn finish<'s>(self, trace_id: TraceId, name: impl Fn(u32) -> &'s str) -> TraceSummary {
        let mut services: Vec<(String, u32)> = self
            .services
            .iter()
            .map(|&(s, n)| (name(s).to_owned(), n))
            .collect();
        services.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        let (root_service, root_name) = self
            .root
            .map(|(_, _, s, n)| (name(s).to_owned(), name(n).to_owned()))
            .unwrap_or_default();
        TraceSummary {
            trace_id,
            root_service,
            root_name,
            start_ns: self.start,
            duration_ns: self.end - self.start,
            span_count: self.spans,
            error_count: self.errors,
            services,
        }
    }
}

/// Merges summaries of one trace found in several places (a trace whose spans arrived
/// before and after a head flush), then keeps the `limit` most recent.
pub(crate) fn merge_results(mut all: Vec<TraceSummary>, limit: usize) -> Vec<TraceSummary> {
    all.sort_by_key(|s| s.trace_id);
    let mut merged: Vec<TraceSummary> = Vec::with_capacity(all.len());
    for s in all {
        match merged.last_mut() {
            Some(m) if m.trace_id == s.trace_id => {
                let end = (m.start_ns + m.duration_ns).max(s.start_ns + s.duration_ns);
                if s.start_ns < m.start_ns && !s.root_name.is_empty() {
                    m.root_service = s.root_service;
                    m.root_name = s.root_name;
                }
                m.start_ns = m.start_ns.min(s.start_ns);
                m.duration_ns = end - m.start_ns;
                m.span_count += s.span_count;
                m.error_count += s.error_count;
                for (svc, n) in s.services {
                    match m.services.iter_mut().find(|(x, _)| *x == svc) {
                        Some((_, c)) => *c += n,
                        None => m.services.push((svc, n)),
                    }
                }
            }
            _ => merged.push(s),
        }
    }
    merged.sort_by(|a, b| {
        b.start_ns
            .cmp(&a.start_ns)
            .then_with(|| a.trace_id.cmp(&b.trace_id))
    });
    merged.truncate(limit);
    merged
}
