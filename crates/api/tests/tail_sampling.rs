//! Tail sampling on the real span path: `ingest_spans` into a real span store (WAL,
//! head, blocks on disk) with the rule engine's sampler as its retention policy. Spans go
//! in batch by batch; decisions are taken at explicit times (no sleeping); the head is
//! flushed; the store is reopened from disk without any sampler to see what physically
//! remained.

use std::sync::Arc;

use lastmile_api::AppState;
use lastmile_api::spans::{SamplerRetention, ingest_spans};
use lastmile_model::{
    AttrValue, KeyValue, Resource, ResourceSpans, Scope, ScopeSpans, Span, SpanBatch, SpanId,
    SpanKind, StatusCode, TraceId,
};
use lastmile_rules::{Rules, RulesSource};
use lastmile_store::{Db, DbOptions, StoreMetrics};
use lastmile_trace_store::{TraceQuery, TraceStore, TraceStoreMetrics, TraceStoreOptions};

const RULES: &str = r#"
inherit:
  static:
    - source: '{job="checkout"}'
      labels: {tenant_id: acme}
tail_sampling:
  decision_wait: 5s
  policies:
    - name: errors
      status: error
    - name: server-errors
      http_status: 5xx
    - name: slow
      latency_over: 2s
    - name: health
      span_name: 'GET /healthz'
      keep: 0.001
    - name: rest
      keep: 0
"#;

fn tid(n: u8) -> TraceId {
    TraceId([n; 16])
}

fn span(trace: u8, n: u8, name: &str, ms: u64, status: StatusCode, attrs: Vec<KeyValue>) -> Span {
    let start = 1_700_000_000_000_000_000 + n as u64 * 1_000_000;
    Span {
        trace_id: tid(trace),
        span_id: SpanId([trace ^ 0x80, n, 0, 0, 0, 0, 0, 1]),
        parent_span_id: (n > 1).then_some(SpanId([trace ^ 0x80, 1, 0, 0, 0, 0, 0, 1])),
        trace_state: String::new(),
        name: name.into(),
        kind: SpanKind::Server,
        start_unix_nano: start,
        end_unix_nano: start + ms * 1_000_000,
        attributes: attrs,
        events: vec![],
        links: vec![],
        status_code: status,
        status_message: String::new(),
    }
}

fn batch(service: &str, spans: Vec<Span>) -> SpanBatch {
    SpanBatch {
        resources: vec![ResourceSpans {
            resource: Arc::new(Resource {
                attributes: vec![KeyValue::string("service.name", service)],
            }),
            scopes: vec![ScopeSpans {
                scope: Scope::default(),
                spans,
            }],
        }],
    }
}

struct Env {
    _dir: tempfile::TempDir,
    traces_dir: std::path::PathBuf,
    state: AppState,
}

fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let store_metrics = Arc::new(StoreMetrics::default());
    let (db, _) = Db::open(
        &dir.path().join("data"),
        DbOptions::default(),
        store_metrics.clone(),
    )
    .unwrap();
    let traces_dir = dir.path().join("data/traces");
    let (traces, _) = TraceStore::open(
        &traces_dir,
        TraceStoreOptions::default(),
        Arc::new(TraceStoreMetrics::default()),
    )
    .unwrap();
    let rules =
        Arc::new(Rules::from_sources(vec![RulesSource::rules_file("rules.yml", RULES)]).unwrap());
    let traces = Arc::new(traces);
    traces.set_retention(Arc::new(SamplerRetention(rules.clone())));
    let state = AppState {
        db: Arc::new(db),
        traces,
        span_metrics: Arc::new(lastmile_rules::SpanMetrics::new(
            &lastmile_rules::span_metrics::DEFAULT_BUCKETS,
            1000,
        )),
        limits: Default::default(),
        metrics: Arc::new(lastmile_api::SelfMetrics::new(&store_metrics)),
        query: Default::default(),
        rules,
        logs: lastmile_api::loki::LogsState {
            store: Arc::new(
                lastmile_log_store::LogStore::open(
                    &dir.path().join("data/logs"),
                    Default::default(),
                )
                .unwrap(),
            ),
            trace_fields: Default::default(),
            query: Default::default(),
        },
        version: "test",
    };
    Env {
        _dir: dir,
        traces_dir,
        state,
    }
}

fn spans_of(st: &AppState, t: u8) -> Option<usize> {
    st.traces.trace(tid(t)).unwrap().map(|b| b.span_count())
}

/// Decides as if the decision wait had passed for everything ingested so far.
fn decide_now(st: &AppState) {
    st.rules.tick(lastmile_rules::engine::now_ms() + 5_000 + 1);
}

fn calls(st: &AppState) -> f64 {
    st.span_metrics
        .collect(0)
        .iter()
        .filter(|s| {
            s.labels
                .iter()
                .any(|(n, v)| n == "__name__" && v == "traces_spanmetrics_calls_total")
        })
        .map(|s| s.samples[0].v)
        .sum()
}

#[tokio::test]
async fn a_trace_whose_error_arrives_in_a_later_batch_is_kept_whole() {
    let e = env();
    let st = &e.state;
    let ok = StatusCode::Unset;
    // Batch 1: trace 1's root (fine so far) and trace 2 (fine, and stays fine).
    ingest_spans(
        st,
        &batch(
            "checkout",
            vec![
                span(1, 1, "POST /pay", 30, ok, vec![]),
                span(2, 1, "GET /cart", 10, ok, vec![]),
            ],
        ),
    )
    .await
    .unwrap();
    // Batch 2, later: trace 1's child fails.
    ingest_spans(
        st,
        &batch(
            "payments",
            vec![span(1, 2, "charge", 20, StatusCode::Error, vec![])],
        ),
    )
    .await
    .unwrap();
    // Batch 3: trace 3, an HTTP 503 on an attribute only; trace 4, a health check.
    ingest_spans(
        st,
        &batch(
            "checkout",
            vec![
                span(
                    3,
                    1,
                    "GET /stock",
                    5,
                    ok,
                    vec![KeyValue::new(
                        "http.response.status_code",
                        AttrValue::Int(503),
                    )],
                ),
                span(4, 1, "GET /healthz", 1, ok, vec![]),
                span(5, 1, "GET /report", 2500, ok, vec![]),
            ],
        ),
    )
    .await
    .unwrap();
    // Stored and readable before any decision.
    assert_eq!(spans_of(st, 2), Some(1));
    // Span metrics count every span, whatever sampling decides.
    assert_eq!(calls(st), 6.0);

    decide_now(st);
    assert_eq!(spans_of(st, 1), Some(2), "errors: kept whole");
    assert_eq!(spans_of(st, 2), None, "rest: dropped, hidden at once");
    assert_eq!(spans_of(st, 3), Some(1), "5xx: kept");
    assert_eq!(
        spans_of(st, 4),
        None,
        "health check: 0.1% (this id is not among them)"
    );
    assert_eq!(spans_of(st, 5), Some(1), "slow: kept");
    let found = st
        .traces
        .search(&TraceQuery {
            limit: 100,
            ..Default::default()
        })
        .unwrap();
    let ids: Vec<u8> = found.iter().map(|s| s.trace_id.0[0]).collect();
    assert_eq!(ids.len(), 3, "search hides dropped traces: {ids:?}");
    // Inheritance reached the stored resource.
    let t1 = st.traces.trace(tid(1)).unwrap().unwrap();
    let checkout = t1
        .resources
        .iter()
        .find(|r| r.resource.service_name() == "checkout")
        .unwrap();
    assert!(
        checkout
            .resource
            .attributes
            .iter()
            .any(|kv| kv.key == "tenant_id")
    );

    // A dropped trace that turns out to fail, while still in the head, is kept whole.
    ingest_spans(
        st,
        &batch(
            "payments",
            vec![span(2, 2, "reserve", 3, StatusCode::Error, vec![])],
        ),
    )
    .await
    .unwrap();
    assert_eq!(spans_of(st, 2), Some(2));

    // Flush: the drops become physical; the rest is in a block.
    ingest_spans(
        st,
        &batch("checkout", vec![span(6, 1, "GET /late", 1, ok, vec![])]),
    )
    .await
    .unwrap();
    st.traces.flush().unwrap();
    let status = st.rules.status(10).sampling;
    assert_eq!(status.upgraded, 1);
    assert_eq!(status.decided_early, 1, "trace 6 was decided at the flush");
    assert_eq!(status.policies["errors"].kept, 2);
    assert_eq!(
        status.policies["rest"].dropped, 2,
        "traces 2 (later kept) and 6"
    );
    st.traces.close();
    let e_traces_dir = e.traces_dir.clone();
    drop(e.state);
    let (reopened, report) = TraceStore::open(
        &e_traces_dir,
        TraceStoreOptions::default(),
        Arc::new(TraceStoreMetrics::default()),
    )
    .unwrap();
    assert_eq!(report.replayed_spans, 0, "everything was flushed");
    let count = |t: u8| reopened.trace(tid(t)).unwrap().map(|b| b.span_count());
    assert_eq!(count(1), Some(2));
    assert_eq!(count(2), Some(2));
    assert_eq!(count(3), Some(1));
    assert_eq!(count(4), None, "left out of the block");
    assert_eq!(count(5), Some(1));
    assert_eq!(count(6), None, "left out of the block");
}

#[tokio::test]
async fn spans_survive_until_the_flush_even_if_the_sampler_forgets() {
    // The sampler's state is memory only; a restart before the flush replays the WAL and
    // keeps every trace (uncertainty never loses acknowledged spans).
    let e = env();
    let st = &e.state;
    ingest_spans(
        st,
        &batch(
            "api",
            vec![span(7, 1, "GET /x", 1, StatusCode::Unset, vec![])],
        ),
    )
    .await
    .unwrap();
    decide_now(st);
    assert_eq!(spans_of(st, 7), None, "decided dropped");
    st.traces.close();
    let dir = e.traces_dir.clone();
    drop(e.state);
    let (reopened, report) = TraceStore::open(
        &dir,
        TraceStoreOptions::default(),
        Arc::new(TraceStoreMetrics::default()),
    )
    .unwrap();
    assert_eq!(report.replayed_spans, 1);
    assert_eq!(
        reopened.trace(tid(7)).unwrap().map(|b| b.span_count()),
        Some(1)
    );
}
