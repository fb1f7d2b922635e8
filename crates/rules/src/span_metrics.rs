//! Span metrics: request rate, errors and duration (RED) per service and operation,
//! derived from every ingested span, so services that only send traces still get
//! dashboards and alerts.
//!
//! Names and labels follow Tempo's metrics generator, which Grafana's dashboards know:
//! - `traces_spanmetrics_calls_total{service, span_name, span_kind, status_code}`
//! - `traces_spanmetrics_latency_bucket{…, le}`, `_sum`, `_count` (seconds)
//!
//! Each latency bucket carries the trace id of a recent span that fell into it as an
//! exemplar, so a slow bucket on a chart opens a slow trace. Counters are cumulative for
//! the life of the process (a restart is a counter reset, which `rate` handles). Span
//! metrics are computed before any sampling, so the numbers count every span.

use std::collections::HashMap;
use std::sync::Mutex;

use lastmile_model::{OwnedSeries, Sample, SpanBatch, SpanKind, StatusCode};

pub const CALLS: &str = "traces_spanmetrics_calls_total";
pub const LATENCY: &str = "traces_spanmetrics_latency";

/// Tempo's default latency buckets, in seconds.
pub const DEFAULT_BUCKETS: [f64; 14] = [
    0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512, 1.024, 2.048, 4.096, 8.192,
    16.384,
];

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Key {
    service: String,
    span_name: String,
    kind: u8,
    status: u8,
}

struct Acc {
    calls: u64,
    sum: f64,
    /// Per bucket (not cumulative), plus one for +Inf.
    buckets: Vec<u64>,
    /// Per bucket: the newest span that fell in it and was not yet written as an exemplar.
    exemplars: Vec<Option<(String, i64, f64)>>,
}

struct State {
    series: HashMap<Key, Acc>,
    /// Spans not counted because the series limit was reached.
    overflow: u64,
}

pub struct SpanMetrics {
    buckets: Vec<f64>,
    max_series: usize,
    state: Mutex<State>,
}

fn kind_label(k: u8) -> &'static str {
    SpanKind::from_i32(k as i32).otlp_name()
}

fn status_label(s: u8) -> &'static str {
    StatusCode::from_i32(s as i32).otlp_name()
}

impl SpanMetrics {
    /// `max_series` bounds the (service, span name, kind, status) combinations kept, so a
    /// service naming spans after ids cannot exhaust memory; spans beyond it are counted
    /// in [`SpanMetrics::overflow`].
    pub fn new(buckets: &[f64], max_series: usize) -> Self {
        SpanMetrics {
            buckets: buckets.to_vec(),
            max_series,
            state: Mutex::new(State {
                series: HashMap::new(),
                overflow: 0,
            }),
        }
    }

    pub fn overflow(&self) -> u64 {
        self.state.lock().map(|s| s.overflow).unwrap_or(0)
    }

    /// Counts every span of the batch.
    pub fn observe(&self, batch: &SpanBatch) {
        let Ok(mut st) = self.state.lock() else {
            return;
        };
        let n_buckets = self.buckets.len() + 1;
        for (resource, _, span) in batch.spans() {
            let key = Key {
                service: resource.service_name().to_owned(),
                span_name: span.name.clone(),
                kind: span.kind as u8,
                status: span.status_code as u8,
            };
            let len = st.series.len();
            let acc = match st.series.get_mut(&key) {
                Some(a) => a,
                None if len >= self.max_series => {
                    st.overflow += 1;
                    continue;
                }
                None => st.series.entry(key).or_insert_with(|| Acc {
                    calls: 0,
                    sum: 0.0,
                    buckets: vec![0; n_buckets],
                    exemplars: vec![None; n_buckets],
                }),
            };
            let secs = span.duration_nanos() as f64 / 1e9;
            acc.calls += 1;
            acc.sum += secs;
            let b = self.buckets.partition_point(|&le| le < secs);
            acc.buckets[b] += 1;
            let end_ms = (span.end_unix_nano / 1_000_000) as i64;
            acc.exemplars[b] = Some((span.trace_id.to_hex(), end_ms, secs));
        }
    }

    /// The current value of every series at `t_ms`, with the exemplars gathered since the
    /// last call.
    pub fn collect(&self, t_ms: i64) -> Vec<OwnedSeries> {
        let Ok(mut st) = self.state.lock() else {
            return Vec::new();
        };
        let mut keys: Vec<Key> = st.series.keys().cloned().collect();
        keys.sort();
        let mut out = Vec::with_capacity(keys.len() * (self.buckets.len() + 4));
        for key in keys {
            let Some(acc) = st.series.get_mut(&key) else {
                continue;
            };
            let base = vec![
                ("service".to_owned(), key.service.clone()),
                ("span_name".to_owned(), key.span_name.clone()),
                ("span_kind".to_owned(), kind_label(key.kind).to_owned()),
                (
                    "status_code".to_owned(),
                    status_label(key.status).to_owned(),
                ),
            ];
            let series = |name: String, extra: Option<(&str, String)>, v: f64| {
                let mut labels = base.clone();
                labels.push(("__name__".to_owned(), name));
                if let Some((n, val)) = extra {
                    labels.push((n.to_owned(), val));
                }
                OwnedSeries {
                    labels,
                    samples: vec![Sample { t: t_ms, v }],
                    exemplars: Vec::new(),
                }
            };
            out.push(series(CALLS.to_owned(), None, acc.calls as f64));
            out.push(series(format!("{LATENCY}_count"), None, acc.calls as f64));
            out.push(series(format!("{LATENCY}_sum"), None, acc.sum));
            let mut cumulative = 0;
            for (i, count) in acc.buckets.iter().enumerate() {
                cumulative += count;
                let le = self
                    .buckets
                    .get(i)
                    .map_or_else(|| "+Inf".to_owned(), |b| b.to_string());
                let mut s = series(
                    format!("{LATENCY}_bucket"),
                    Some(("le", le)),
                    cumulative as f64,
                );
                if let Some((trace, t, v)) = acc.exemplars[i].take() {
                    s.exemplars
                        .push((vec![("trace_id".to_owned(), trace)], t, v));
                }
                out.push(s);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use lastmile_model::{
        KeyValue, Resource, ResourceSpans, Scope, ScopeSpans, Span, SpanId, TraceId,
    };

    fn batch(service: &str, spans: &[(u8, &str, u64, bool)]) -> SpanBatch {
        SpanBatch {
            resources: vec![ResourceSpans {
                resource: Arc::new(Resource {
                    attributes: vec![KeyValue::string("service.name", service)],
                }),
                scopes: vec![ScopeSpans {
                    scope: Scope::default(),
                    spans: spans
                        .iter()
                        .map(|&(id, name, ms, err)| Span {
                            trace_id: TraceId([id; 16]),
                            span_id: SpanId([id; 8]),
                            parent_span_id: None,
                            trace_state: String::new(),
                            name: name.into(),
                            kind: SpanKind::Server,
                            start_unix_nano: 1_000_000_000_000,
                            end_unix_nano: 1_000_000_000_000 + ms * 1_000_000,
                            attributes: vec![],
                            events: vec![],
                            links: vec![],
                            status_code: if err {
                                StatusCode::Error
                            } else {
                                StatusCode::Unset
                            },
                            status_message: String::new(),
                        })
                        .collect(),
                }],
            }],
        }
    }

    fn value(out: &[OwnedSeries], name: &str, extra: &[(&str, &str)]) -> f64 {
        out.iter()
            .find(|s| {
                s.labels.iter().any(|(n, v)| n == "__name__" && v == name)
                    && extra
                        .iter()
                        .all(|(en, ev)| s.labels.iter().any(|(n, v)| n == en && v == ev))
            })
            .map(|s| s.samples[0].v)
            .unwrap_or(f64::NAN)
    }

    #[test]
    fn counts_calls_errors_and_latency_buckets_with_exemplars() {
        let m = SpanMetrics::new(&DEFAULT_BUCKETS, 100);
        m.observe(&batch(
            "checkout",
            &[
                (1, "POST /pay", 3, false),
                (2, "POST /pay", 100, false),
                (3, "POST /pay", 300, true),
            ],
        ));
        let out = m.collect(5_000);
        let ok = [
            ("service", "checkout"),
            ("status_code", "STATUS_CODE_UNSET"),
        ];
        assert_eq!(value(&out, CALLS, &ok), 2.0);
        assert_eq!(
            value(&out, CALLS, &[("status_code", "STATUS_CODE_ERROR")]),
            1.0
        );
        let le = |le: &str| {
            value(
                &out,
                "traces_spanmetrics_latency_bucket",
                &[("status_code", "STATUS_CODE_UNSET"), ("le", le)],
            )
        };
        assert_eq!(le("0.002"), 0.0);
        assert_eq!(le("0.004"), 1.0);
        assert_eq!(le("0.128"), 2.0);
        assert_eq!(le("+Inf"), 2.0);
        assert!((value(&out, "traces_spanmetrics_latency_sum", &ok) - 0.103).abs() < 1e-9);
        // The 100 ms span is the exemplar of the 0.128 bucket, written once.
        let bucket = out
            .iter()
            .find(|s| {
                s.labels.contains(&("le".into(), "0.128".into()))
                    && s.labels
                        .contains(&("status_code".into(), "STATUS_CODE_UNSET".into()))
            })
            .unwrap();
        assert_eq!(bucket.exemplars.len(), 1);
        assert_eq!(bucket.exemplars[0].0[0].1, TraceId([2; 16]).to_hex());
        assert!(m.collect(6_000).iter().all(|s| s.exemplars.is_empty()));
        // Counters are cumulative.
        m.observe(&batch("checkout", &[(4, "POST /pay", 3, false)]));
        assert_eq!(value(&m.collect(7_000), CALLS, &ok), 3.0);
        // Every series is a valid batch.
        let out = m.collect(8_000);
        assert!(lastmile_model::WriteBatch::from_owned(&out).is_ok());
    }

    #[test]
    fn the_series_limit_bounds_memory_and_counts_overflow() {
        let m = SpanMetrics::new(&DEFAULT_BUCKETS, 2);
        let spans: Vec<(u8, String, u64, bool)> = (0..10)
            .map(|i| (i, format!("GET /user/{i}"), 1, false))
            .collect();
        let refs: Vec<(u8, &str, u64, bool)> = spans
            .iter()
            .map(|(a, b, c, d)| (*a, b.as_str(), *c, *d))
            .collect();
        m.observe(&batch("api", &refs));
        assert_eq!(m.overflow(), 8);
        let calls = m
            .collect(1)
            .iter()
            .filter(|s| s.labels.contains(&("__name__".into(), CALLS.into())))
            .count();
        assert_eq!(calls, 2);
    }
}
