//! The span store end to end: append, read by id, search, flush to blocks, restart,
//! retention.

use std::sync::Arc;
use std::time::Duration;

use lastmile_model::{
    AttrValue, KeyValue, Resource, ResourceSpans, Scope, ScopeSpans, Span, SpanBatch, SpanId,
    SpanKind, StatusCode, TraceId,
};
use lastmile_trace_store::{TraceQuery, TraceStore, TraceStoreMetrics, TraceStoreOptions};

const T0: u64 = 1_700_000_000_000_000_000;
const MS: u64 = 1_000_000;

fn open(dir: &std::path::Path) -> TraceStore {
    open_with(dir, TraceStoreOptions::default())
}

fn open_with(dir: &std::path::Path, opts: TraceStoreOptions) -> TraceStore {
    TraceStore::open(dir, opts, Arc::new(TraceStoreMetrics::default()))
        .expect("open")
        .0
}

fn tid(n: u32) -> TraceId {
    let mut b = [0u8; 16];
    b[12..].copy_from_slice(&n.to_be_bytes());
    b[0] = 0xab;
    TraceId(b)
}

fn sid(n: u32) -> SpanId {
    let mut b = [0u8; 8];
    b[4..].copy_from_slice(&n.to_be_bytes());
    b[0] = 1;
    SpanId(b)
}

struct SpanSpec {
    trace: u32,
    span: u32,
    parent: Option<u32>,
    name: &'static str,
    start_ms: u64,
    dur_ms: u64,
    error: bool,
    status_code: i64,
}

fn span(s: &SpanSpec) -> Span {
    Span {
        trace_id: tid(s.trace),
        span_id: sid(s.span),
        parent_span_id: s.parent.map(sid),
        trace_state: String::new(),
        name: s.name.into(),
        kind: SpanKind::Server,
        start_unix_nano: T0 + s.start_ms * MS,
        end_unix_nano: T0 + (s.start_ms + s.dur_ms) * MS,
        attributes: vec![
            KeyValue::new("http.status_code", AttrValue::Int(s.status_code)),
            KeyValue::string("http.route", format!("/r/{}", s.trace % 3)),
        ],
        events: vec![],
        links: vec![],
        status_code: if s.error {
            StatusCode::Error
        } else {
            StatusCode::Unset
        },
        status_message: String::new(),
    }
}

fn batch(service: &str, spans: Vec<Span>) -> SpanBatch {
    SpanBatch {
        resources: vec![ResourceSpans {
            resource: Arc::new(Resource {
                attributes: vec![
                    KeyValue::string("service.name", service),
                    KeyValue::string("deployment.environment", "test"),
                ],
            }),
            scopes: vec![ScopeSpans {
                scope: Scope {
                    name: "test".into(),
                    ..Scope::default()
                },
                spans,
            }],
        }],
    }
}

/// Trace n: a `frontend` root of (n % 7 + 1) * 10 ms, and a `backend` child that fails
/// with a 500 when n % 5 == 0. Trace n starts at n seconds.
fn fleet(traces: std::ops::Range<u32>) -> Vec<SpanBatch> {
    let mut front = Vec::new();
    let mut back = Vec::new();
    for n in traces {
        let start = n as u64 * 1000;
        let dur = (n as u64 % 7 + 1) * 10;
        front.push(span(&SpanSpec {
            trace: n,
            span: n * 2,
            parent: None,
            name: "GET /checkout",
            start_ms: start,
            dur_ms: dur,
            error: false,
            status_code: 200,
        }));
        let fail = n % 5 == 0;
        back.push(span(&SpanSpec {
            trace: n,
            span: n * 2 + 1,
            parent: Some(n * 2),
            name: "charge",
            start_ms: start + 1,
            dur_ms: dur - 2,
            error: fail,
            status_code: if fail { 500 } else { 200 },
        }));
    }
    vec![batch("frontend", front), batch("backend", back)]
}

async fn write_all(store: &TraceStore, batches: &[SpanBatch]) {
    for b in batches {
        store.append(b).await.expect("append");
    }
}

fn names_of(b: &SpanBatch) -> Vec<(String, String)> {
    b.spans()
        .map(|(r, _, s)| (r.service_name().to_owned(), s.name.clone()))
        .collect()
}

fn check_trace_17(store: &TraceStore) {
    let t = store.trace(tid(17)).unwrap().expect("trace 17");
    assert_eq!(t.span_count(), 2);
    let mut names = names_of(&t);
    names.sort();
    assert_eq!(
        names,
        vec![
            ("backend".to_owned(), "charge".to_owned()),
            ("frontend".to_owned(), "GET /checkout".to_owned())
        ]
    );
    let root = t.spans().find(|(_, _, s)| s.is_root()).unwrap().2;
    assert_eq!(root.span_id, sid(34));
    assert_eq!(root.duration_nanos(), (17 % 7 + 1) * 10 * MS);
    assert!(store.trace(tid(10_000)).unwrap().is_none());
}

fn search_checks(store: &TraceStore, total: u32) {
    let all = store
        .search(&TraceQuery {
            limit: 10_000,
            ..TraceQuery::default()
        })
        .unwrap();
    assert_eq!(all.len(), total as usize);
    // Most recent first.
    assert!(all.windows(2).all(|w| w[0].start_ns >= w[1].start_ns));
    let s = &all[0];
    assert_eq!(s.trace_id, tid(total - 1));
    assert_eq!(
        (s.root_service.as_str(), s.root_name.as_str()),
        ("frontend", "GET /checkout")
    );
    assert_eq!(s.span_count, 2);

    let errors = store
        .search(&TraceQuery {
            status: Some(StatusCode::Error),
            limit: 10_000,
            ..TraceQuery::default()
        })
        .unwrap();
    assert_eq!(errors.len(), (0..total).filter(|n| n % 5 == 0).count());
    assert!(errors.iter().all(|e| e.error_count == 1));

    let by_tag = store
        .search(&TraceQuery {
            service: Some("backend".into()),
            tags: vec![("http.status_code".into(), "500".into())],
            limit: 10_000,
            ..TraceQuery::default()
        })
        .unwrap();
    assert_eq!(by_tag.len(), errors.len());
    // The tag and the service must hold on the same span: the frontend has no 500s.
    let none = store
        .search(&TraceQuery {
            service: Some("frontend".into()),
            tags: vec![("http.status_code".into(), "500".into())],
            ..TraceQuery::default()
        })
        .unwrap();
    assert!(none.is_empty());
    // Resource attributes count as tags.
    let env = store
        .search(&TraceQuery {
            tags: vec![("deployment.environment".into(), "test".into())],
            limit: 10_000,
            ..TraceQuery::default()
        })
        .unwrap();
    assert_eq!(env.len(), total as usize);

    let slow = store
        .search(&TraceQuery {
            min_duration_ns: Some(60 * MS),
            limit: 10_000,
            ..TraceQuery::default()
        })
        .unwrap();
    assert_eq!(slow.len(), (0..total).filter(|n| n % 7 + 1 >= 6).count());
    assert!(slow.iter().all(|s| s.duration_ns >= 60 * MS));

    // Traces 10..=19 overlap [10 s, 19.5 s].
    let window = store
        .search(&TraceQuery {
            start_ns: Some(T0 + 10_000 * MS),
            end_ns: Some(T0 + 19_500 * MS),
            limit: 100,
            ..TraceQuery::default()
        })
        .unwrap();
    let mut ids: Vec<_> = window.iter().map(|s| s.trace_id).collect();
    ids.sort();
    assert_eq!(ids, (10..20).map(tid).collect::<Vec<_>>());

    let limited = store.search(&TraceQuery::default()).unwrap();
    assert_eq!(limited.len(), 20.min(total as usize));
}

#[tokio::test]
async fn head_answers_by_id_and_search() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    write_all(&store, &fleet(0..50)).await;
    check_trace_17(&store);
    search_checks(&store, 50);
    let ops = store.operations();
    assert_eq!(
        ops,
        vec![
            ("backend".to_owned(), vec!["charge".to_owned()]),
            ("frontend".to_owned(), vec!["GET /checkout".to_owned()])
        ]
    );
}

#[tokio::test]
async fn blocks_answer_like_the_head_and_survive_restart() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(dir.path());
        write_all(&store, &fleet(0..30)).await;
        store.flush().unwrap();
        // The rest stays in the head (and the WAL).
        write_all(&store, &fleet(30..50)).await;
        assert_eq!(store.stats().blocks, 1);
        assert_eq!(store.stats().head_spans, 40);
        check_trace_17(&store);
        search_checks(&store, 50);
        store.close();
    }
    let (store, report) = TraceStore::open(
        dir.path(),
        TraceStoreOptions::default(),
        Arc::new(TraceStoreMetrics::default()),
    )
    .unwrap();
    assert_eq!(report.blocks, 1);
    assert_eq!(
        report.replayed_spans, 40,
        "only the unflushed spans are replayed"
    );
    check_trace_17(&store);
    search_checks(&store, 50);
}

#[tokio::test]
async fn a_trace_split_across_head_and_block_reads_whole() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let batches = fleet(0..10);
    store.append(&batches[0]).await.unwrap();
    store.flush().unwrap();
    store.append(&batches[1]).await.unwrap();
    let t = store.trace(tid(3)).unwrap().unwrap();
    assert_eq!(t.span_count(), 2);
    let all = store
        .search(&TraceQuery {
            limit: 100,
            ..TraceQuery::default()
        })
        .unwrap();
    assert_eq!(all.len(), 10);
    assert!(
        all.iter()
            .all(|s| s.span_count == 2 && s.root_service == "frontend")
    );
    // A retried batch is not returned twice.
    store.append(&batches[1]).await.unwrap();
    assert_eq!(store.trace(tid(3)).unwrap().unwrap().span_count(), 2);
}

#[tokio::test]
async fn the_head_flushes_by_size_and_retention_deletes_old_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_with(
        dir.path(),
        TraceStoreOptions {
            max_head_spans: 20,
            // The test's spans are from 2023; retention is checked against a given "now".
            retention: Duration::from_secs(100 * 365 * 24 * 3600),
            ..TraceStoreOptions::default()
        },
    );
    write_all(&store, &fleet(0..10)).await;
    store.maintain().unwrap();
    assert_eq!(store.stats().blocks, 1);
    assert_eq!(store.stats().head_spans, 0);
    let year_ns = 365 * 24 * 3600 * 1_000_000_000;
    assert_eq!(store.apply_retention(T0 + 99 * year_ns).unwrap(), 0);
    assert_eq!(store.apply_retention(T0 + 101 * year_ns).unwrap(), 1);
    assert_eq!(store.stats().blocks, 0);
    assert!(store.trace(tid(3)).unwrap().is_none());
    let files = std::fs::read_dir(dir.path().join("blocks"))
        .unwrap()
        .count();
    assert_eq!(files, 0);
}

#[tokio::test]
async fn a_damaged_block_is_refused_with_its_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = {
        let store = open(dir.path());
        write_all(&store, &fleet(0..10)).await;
        store.flush().unwrap();
        store.close();
        std::fs::read_dir(dir.path().join("blocks"))
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path()
    };
    let mut bytes = std::fs::read(&path).unwrap();
    let n = bytes.len();
    bytes[n - 40] ^= 0xff;
    std::fs::write(&path, &bytes).unwrap();
    let err = TraceStore::open(
        dir.path(),
        TraceStoreOptions::default(),
        Arc::new(TraceStoreMetrics::default()),
    )
    .err()
    .expect("damaged block refused");
    let msg = err.to_string();
    assert!(msg.contains(".spans") && msg.contains("corrupt"), "{msg}");
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

#[tokio::test]
async fn a_crash_between_block_and_wal_trim_does_not_store_spans_twice() {
    let dir = tempfile::tempdir().unwrap();
    let saved = tempfile::tempdir().unwrap();
    {
        let store = open(dir.path());
        write_all(&store, &fleet(0..10)).await;
        // The WAL as it was before the flush trimmed it.
        copy_dir(&dir.path().join("wal"), saved.path());
        store.flush().unwrap();
        store.close();
    }
    std::fs::remove_dir_all(dir.path().join("wal")).unwrap();
    copy_dir(saved.path(), &dir.path().join("wal"));
    let (store, report) = TraceStore::open(
        dir.path(),
        TraceStoreOptions::default(),
        Arc::new(TraceStoreMetrics::default()),
    )
    .unwrap();
    assert_eq!(report.replayed_spans, 0);
    let all = store
        .search(&TraceQuery {
            limit: 100,
            ..TraceQuery::default()
        })
        .unwrap();
    assert_eq!(all.len(), 10);
    assert!(all.iter().all(|s| s.span_count == 2));
}

/// A retention policy that hides and drops traces whose number is odd: what tail
/// sampling plugs in.
struct DropOdd {
    asked_at_flush: std::sync::Mutex<usize>,
}

impl lastmile_trace_store::TraceRetention for DropOdd {
    fn hidden(&self, id: &TraceId) -> bool {
        id.0[15] % 2 == 1
    }
    fn retain_on_flush(&self, ids: &[TraceId]) -> Vec<bool> {
        *self.asked_at_flush.lock().unwrap() += ids.len();
        ids.iter().map(|id| !self.hidden(id)).collect()
    }
}

#[tokio::test]
async fn retention_hides_dropped_traces_and_leaves_them_out_of_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let policy = Arc::new(DropOdd {
        asked_at_flush: Default::default(),
    });
    {
        let store = open(dir.path());
        store.set_retention(policy.clone());
        write_all(&store, &fleet(0..10)).await;
        // Hidden at once, though still stored.
        assert!(store.trace(tid(3)).unwrap().is_none());
        assert_eq!(store.trace(tid(4)).unwrap().unwrap().span_count(), 2);
        let found = store
            .search(&TraceQuery {
                limit: 100,
                ..Default::default()
            })
            .unwrap();
        assert_eq!(found.len(), 5);
        assert!(found.iter().all(|s| s.trace_id.0[15] % 2 == 0));
        store.flush().unwrap();
        assert_eq!(*policy.asked_at_flush.lock().unwrap(), 10);
        assert_eq!(store.stats().block_spans, 10, "5 traces of 2 spans");
        store.close();
    }
    // Without the policy (a restart before the sampler knows anything), the block holds
    // only the kept traces: the drop was physical.
    let store = open(dir.path());
    assert!(store.trace(tid(3)).unwrap().is_none());
    assert_eq!(store.trace(tid(4)).unwrap().unwrap().span_count(), 2);
    assert_eq!(store.stats().head_spans, 0, "the WAL was trimmed");
}

#[tokio::test]
async fn a_head_of_only_dropped_traces_writes_no_block() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store.set_retention(Arc::new(DropOdd {
        asked_at_flush: Default::default(),
    }));
    write_all(&store, &fleet(1..2)).await;
    store.flush().unwrap();
    assert_eq!(store.stats().blocks, 0);
    assert_eq!(store.stats().head_spans, 0);
    store.close();
    drop(store);
    let (_, report) = TraceStore::open(
        dir.path(),
        TraceStoreOptions::default(),
        Arc::new(TraceStoreMetrics::default()),
    )
    .unwrap();
    assert_eq!(report.replayed_spans, 0);
}
