//! Self-metrics on `/metrics`: HTTP traffic, remote write, the store, the process.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::AppState;
use crate::remote_write::RejectReason;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HandlerLabels {
    handler: String,
    code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HandlerOnly {
    handler: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FormatLabels {
    format: &'static str,
}

pub struct SelfMetrics {
    registry: Registry,
    http_requests: Family<HandlerLabels, Counter>,
    http_duration: Family<HandlerOnly, Histogram>,
    rw_samples: Counter,
    rw_bytes: Counter,
    rw_rejected: Family<ReasonLabels, Counter>,
    rules_series_dropped: Family<ReasonLabels, Counter>,
    rules_samples_dropped: Counter,
    log_rules_removed: Family<ReasonLabels, Counter>,
    /// OTLP receivers (HTTP and gRPC).
    pub otlp: crate::OtlpMetrics,
    loki_requests: Family<FormatLabels, Counter>,
    loki_lines: Counter,
    loki_line_bytes: Counter,
    loki_bytes: Counter,
    loki_rejected: Family<ReasonLabels, Counter>,
}

impl SelfMetrics {
    /// Lets another component (the span store, the log store…) add its metrics.
    pub fn register(&mut self, f: impl FnOnce(&mut Registry)) {
        f(&mut self.registry);
    }

    /// Creates the registry; the store registers its own metrics into it first.
    pub fn new(store: &lastmile_store::StoreMetrics) -> Self {
        let mut registry = Registry::default();
        store.register(&mut registry);
        let http_requests = Family::<HandlerLabels, Counter>::default();
        let http_duration = Family::<HandlerOnly, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0001, 4.0, 10))
        });
        let m = SelfMetrics {
            http_requests: http_requests.clone(),
            http_duration: http_duration.clone(),
            rw_samples: Counter::default(),
            rw_bytes: Counter::default(),
            rw_rejected: Family::default(),
            rules_series_dropped: Family::default(),
            rules_samples_dropped: Counter::default(),
            log_rules_removed: Family::default(),
            otlp: Default::default(),
            loki_requests: Family::default(),
            loki_lines: Counter::default(),
            loki_line_bytes: Counter::default(),
            loki_bytes: Counter::default(),
            loki_rejected: Family::default(),
            registry,
        };
        let mut m = m;
        let start_time_seconds = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        m.registry
            .register_collector(Box::new(crate::process::ProcessCollector {
                start_time_seconds,
            }));
        let r = &mut m.registry;
        r.register(
            "lastmile_http_requests",
            "HTTP requests by handler and status code",
            http_requests,
        );
        r.register(
            "lastmile_http_request_duration_seconds",
            "HTTP request latency by handler",
            http_duration,
        );
        r.register(
            "lastmile_remote_write_samples_received",
            "Samples in accepted remote-write requests",
            m.rw_samples.clone(),
        );
        r.register(
            "lastmile_remote_write_received_bytes",
            "Remote-write request bytes as sent (compressed)",
            m.rw_bytes.clone(),
        );
        r.register(
            "lastmile_remote_write_rejected_requests",
            "Remote-write requests refused whole, by reason",
            m.rw_rejected.clone(),
        );
        r.register(
            "lastmile_rules_series_dropped",
            "Ingested series not stored because of rules, by reason (relabel: a drop/keep rule; no_metric_name: relabeling removed __name__; series_budget: a cardinality budget was used up; naming_contract: refused by a naming contract in reject mode)",
            m.rules_series_dropped.clone(),
        );
        r.register(
            "lastmile_rules_samples_dropped",
            "Samples of series dropped by rules",
            m.rules_samples_dropped.clone(),
        );
        r.register(
            "lastmile_log_rules_entries_removed",
            "Log lines removed by log rules, by reason (dropped, sampled_out)",
            m.log_rules_removed.clone(),
        );
        r.register(
            "lastmile_loki_push_requests",
            "Accepted Loki push requests, by body format (json, protobuf)",
            m.loki_requests.clone(),
        );
        r.register(
            "lastmile_loki_push_lines_received",
            "Log lines in accepted Loki push requests",
            m.loki_lines.clone(),
        );
        r.register(
            "lastmile_loki_push_line_bytes_received",
            "Bytes of log lines in accepted Loki push requests",
            m.loki_line_bytes.clone(),
        );
        r.register(
            "lastmile_loki_push_received_bytes",
            "Loki push request bytes as sent (compressed)",
            m.loki_bytes.clone(),
        );
        r.register(
            "lastmile_loki_push_rejected_requests",
            "Loki push requests refused whole, by reason",
            m.loki_rejected.clone(),
        );
        m.otlp.register(&mut m.registry);
        m
    }

    pub fn loki_push_received(
        &self,
        format: &'static str,
        bytes: u64,
        lines: u64,
        line_bytes: u64,
    ) {
        self.loki_requests
            .get_or_create(&FormatLabels { format })
            .inc();
        self.loki_bytes.inc_by(bytes);
        self.loki_lines.inc_by(lines);
        self.loki_line_bytes.inc_by(line_bytes);
    }

    pub fn loki_push_rejected(&self, reason: &'static str) {
        self.loki_rejected
            .get_or_create(&ReasonLabels { reason })
            .inc();
    }

    pub fn rules_applied(&self, o: &lastmile_rules::RulesOutcome) {
        for (reason, n) in [
            ("relabel", o.series_dropped),
            ("no_metric_name", o.series_without_name),
            ("series_budget", o.series_overflow),
            ("naming_contract", o.series_rejected_naming),
        ] {
            if n > 0 {
                self.rules_series_dropped
                    .get_or_create(&ReasonLabels { reason })
                    .inc_by(n);
            }
        }
        self.rules_samples_dropped.inc_by(o.samples_dropped);
    }

    /// Counts what log rules removed (the log ingest paths call it per batch).
    pub fn log_rules_applied(&self, o: &lastmile_rules::LogOutcome) {
        for (reason, n) in [
            ("dropped", o.entries_dropped),
            ("sampled_out", o.entries_sampled_out),
        ] {
            if n > 0 {
                self.log_rules_removed
                    .get_or_create(&ReasonLabels { reason })
                    .inc_by(n);
            }
        }
    }

    pub fn remote_write_received(&self, bytes: u64, samples: u64) {
        self.rw_bytes.inc_by(bytes);
        self.rw_samples.inc_by(samples);
    }

    pub fn remote_write_rejected(&self, reason: RejectReason) {
        self.rw_rejected
            .get_or_create(&ReasonLabels {
                reason: reason.as_str(),
            })
            .inc();
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Encoding into a String cannot fail except on a formatter bug.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

pub async fn render(State(st): State<AppState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        st.metrics.encode(),
    )
        .into_response()
}

/// Middleware: counts requests and times them per route pattern (not per raw path, so a
/// scanner cannot create unbounded label values).
pub async fn track(State(st): State<AppState>, req: Request, next: Next) -> Response {
    let handler = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "other".into());
    let start = Instant::now();
    let resp = next.run(req).await;
    st.metrics
        .http_duration
        .get_or_create(&HandlerOnly {
            handler: handler.clone(),
        })
        .observe(start.elapsed().as_secs_f64());
    st.metrics
        .http_requests
        .get_or_create(&HandlerLabels {
            handler,
            code: resp.status().as_u16().to_string(),
        })
        .inc();
    resp
}

/// The rule engine's state, read at each scrape: versions, reloads, the cardinality
/// guard, naming violations, tail sampling.
#[derive(Debug)]
pub struct RulesCollector(pub std::sync::Arc<lastmile_rules::Rules>);

/// Per-metric overflow series shown on `/metrics` (the status page has them all).
const OVERFLOW_METRICS_SHOWN: usize = 50;

type Enc<'a> = prometheus_client::encoding::DescriptorEncoder<'a>;

fn const_gauge(enc: &mut Enc<'_>, name: &str, help: &str, v: f64) -> Result<(), std::fmt::Error> {
    use prometheus_client::encoding::EncodeMetric;
    let g = prometheus_client::metrics::gauge::ConstGauge::new(v);
    g.encode(enc.encode_descriptor(name, help, None, g.metric_type())?)
}

fn const_counter(enc: &mut Enc<'_>, name: &str, help: &str, v: u64) -> Result<(), std::fmt::Error> {
    use prometheus_client::encoding::EncodeMetric;
    let c = prometheus_client::metrics::counter::ConstCounter::new(v);
    c.encode(enc.encode_descriptor(name, help, None, c.metric_type())?)
}

/// A counter family with string labels.
fn const_counters<'l>(
    enc: &mut Enc<'_>,
    name: &str,
    help: &str,
    rows: impl Iterator<Item = (Vec<(&'l str, &'l str)>, u64)>,
) -> Result<(), std::fmt::Error> {
    use prometheus_client::encoding::EncodeMetric;
    let mut m = enc.encode_descriptor(
        name,
        help,
        None,
        prometheus_client::metrics::MetricType::Counter,
    )?;
    for (labels, v) in rows {
        prometheus_client::metrics::counter::ConstCounter::new(v)
            .encode(m.encode_family(&labels)?)?;
    }
    Ok(())
}

impl prometheus_client::collector::Collector for RulesCollector {
    fn encode(&self, mut enc: Enc<'_>) -> Result<(), std::fmt::Error> {
        use std::sync::atomic::Ordering;
        let rules = &self.0;
        let st = rules.status(OVERFLOW_METRICS_SHOWN);
        let c = &rules.counters;
        let e = &mut enc;
        const_gauge(
            e,
            "lastmile_rules_version",
            "Version of the stable rules in force",
            st.stable.version as f64,
        )?;
        const_gauge(
            e,
            "lastmile_rules_canary_version",
            "Version of the rules running as a canary (0: none)",
            st.canary.as_ref().map_or(0.0, |c| c.version.version as f64),
        )?;
        const_gauge(
            e,
            "lastmile_rules_last_reload_successful",
            "Whether the last rules reload succeeded (1) or was refused (0)",
            c.last_success.load(Ordering::Relaxed) as f64,
        )?;
        const_gauge(
            e,
            "lastmile_rules_last_reload_success_timestamp_seconds",
            "Time of the last successful rules reload",
            c.last_success_time_ms.load(Ordering::Relaxed) as f64 / 1000.0,
        )?;
        const_counters(
            e,
            "lastmile_rules_reloads",
            "Rules reloads by result",
            [
                (
                    vec![("result", "success")],
                    c.successes.load(Ordering::Relaxed),
                ),
                (
                    vec![("result", "failure")],
                    c.failures.load(Ordering::Relaxed),
                ),
            ]
            .into_iter(),
        )?;
        let card = &st.cardinality;
        const_gauge(
            e,
            "lastmile_cardinality_tracked_series",
            "Series seen in the last one to two hours, as the series budgets count them (0 when no budget is set)",
            card.tracked_series as f64,
        )?;
        const_gauge(
            e,
            "lastmile_cardinality_max_series",
            "The global series budget (0: none)",
            card.max_series as f64,
        )?;
        const_counter(
            e,
            "lastmile_cardinality_series_created",
            "Series the budgets admitted as new",
            card.totals.series_created,
        )?;
        const_counter(
            e,
            "lastmile_cardinality_overflow_samples",
            "Samples of series refused because a series budget was used up",
            card.totals.samples_overflow,
        )?;
        const_counters(
            e,
            "lastmile_cardinality_overflow_samples_by_metric",
            "Samples refused by series budgets, per metric (the 50 largest; __other__ past 10,000 metrics)",
            card.overflow.iter().map(|o| {
                (
                    vec![("metric", o.metric.as_str()), ("limit", o.overflow.limit)],
                    o.overflow.samples,
                )
            }),
        )?;
        const_counters(
            e,
            "lastmile_naming_violations",
            "Series breaking a naming contract, by contract",
            st.naming
                .violations
                .iter()
                .map(|(v, n)| (vec![("violation", *v)], *n)),
        )?;
        let s = &st.sampling;
        const_gauge(
            e,
            "lastmile_tail_sampling_pending_traces",
            "Traces waiting for a sampling decision",
            s.pending_traces as f64,
        )?;
        const_counters(
            e,
            "lastmile_tail_sampling_decisions",
            "Tail sampling decisions by policy and decision (a dropped trace a late span kept counts once each)",
            s.policies.iter().flat_map(|(policy, p)| {
                [
                    (
                        vec![("policy", policy.as_str()), ("decision", "keep")],
                        p.kept,
                    ),
                    (
                        vec![("policy", policy.as_str()), ("decision", "drop")],
                        p.dropped,
                    ),
                ]
            }),
        )?;
        const_counter(
            e,
            "lastmile_tail_sampling_upgraded_traces",
            "Dropped traces kept after all because a later span matched a keeping policy",
            s.upgraded,
        )?;
        Ok(())
    }
}

/// The log store's counters on `/metrics`, read when scraped.
pub struct LogStoreCollector(pub std::sync::Arc<lastmile_log_store::LogStore>);

impl std::fmt::Debug for LogStoreCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LogStoreCollector")
    }
}

impl prometheus_client::collector::Collector for LogStoreCollector {
    fn encode(&self, mut enc: Enc<'_>) -> Result<(), std::fmt::Error> {
        use std::sync::atomic::Ordering::Relaxed;
        let s = self.0.stats();
        let e = &mut enc;
        const_counter(
            e,
            "lastmile_log_store_lines_appended",
            "Log lines stored (acknowledged)",
            s.lines_appended.load(Relaxed),
        )?;
        const_counter(
            e,
            "lastmile_log_store_line_bytes_appended",
            "Bytes of log lines stored",
            s.bytes_appended.load(Relaxed),
        )?;
        const_counter(
            e,
            "lastmile_log_store_commits",
            "Commits of the log index (lines become part of the on-disk index)",
            s.commits.load(Relaxed),
        )?;
        const_counter(
            e,
            "lastmile_log_store_lines_deleted_by_retention",
            "Log lines deleted by retention",
            s.lines_deleted_by_retention.load(Relaxed),
        )?;
        const_counter(
            e,
            "lastmile_log_store_chunks_read",
            "Log chunks (compressed runs of one stream's lines) read by queries",
            s.chunks_read.load(Relaxed),
        )
    }
}
