//! The log store end to end: appends are readable at once, survive a restart with and
//! without an index commit, come back by trace id, by time order and by substring, and
//! retention deletes what is too old.

use std::ops::ControlFlow;
use std::sync::atomic::Ordering;
use std::time::Duration;

use lastmile_log_store::{Direction, LogStore, LogStoreOptions, Selection};
use lastmile_model::{Labels, LogBatch, LogEntry, LogStream, MatchOp, Matcher, TraceId};

const T0: i64 = 1_700_000_000_000_000_000;
const SEC: i64 = 1_000_000_000;

fn opts() -> LogStoreOptions {
    LogStoreOptions {
        // Commits happen when the tests ask for them.
        commit_interval: Duration::from_secs(3600),
        writer_memory_bytes: 15 << 20,
        ..LogStoreOptions::default()
    }
}

fn trace(n: u8) -> TraceId {
    TraceId([n; 16])
}

/// `n` lines per job (`api`, `db`) one second apart from `t0`; every third line of `api`
/// belongs to trace 7.
fn batch(t0: i64, n: i64) -> LogBatch {
    let mut streams = Vec::new();
    for job in ["api", "db"] {
        let mut entries = Vec::new();
        for i in 0..n {
            let mut e = LogEntry::new(
                t0 + i * SEC,
                format!("{job} request {i} status=200 path=/users/{i}"),
            );
            if job == "api" && i % 3 == 0 {
                e.trace_id = Some(trace(7));
                e.metadata = vec![("level".into(), "info".into())];
            }
            entries.push(e);
        }
        streams.push(LogStream {
            labels: Labels::from_pairs([("job", job), ("env", "prod")]),
            entries,
        });
    }
    LogBatch { streams }
}

/// A batch of one stream, `{job="<job>"}`.
fn one_stream(job: &str, entries: Vec<LogEntry>) -> LogBatch {
    LogBatch {
        streams: vec![LogStream {
            labels: Labels::from_pairs([("job", job)]),
            entries,
        }],
    }
}

fn lines_ordered(store: &LogStore, sel: &Selection, dir: Direction, limit: usize) -> Vec<String> {
    let mut out = Vec::new();
    store
        .for_each_line_ordered(sel, dir, |l| {
            out.push(l.entry.unwrap().line.clone());
            if out.len() >= limit {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        })
        .unwrap();
    out
}

fn count(store: &LogStore, sel: &Selection) -> usize {
    let mut n = 0;
    store
        .for_each_line(sel, false, |_| {
            n += 1;
            ControlFlow::Continue(())
        })
        .unwrap();
    n
}

fn check_contents(store: &LogStore, when: &str) {
    let all = Selection::new(T0, T0 + 1000 * SEC);
    assert_eq!(count(store, &all), 60, "{when}: line count");
    let t = store
        .lines_for_trace(trace(7), T0, T0 + 1000 * SEC, 100)
        .unwrap();
    let want: Vec<String> = (0..30)
        .step_by(3)
        .map(|i| format!("api request {i} status=200 path=/users/{i}"))
        .collect();
    assert_eq!(
        t.iter().map(|(_, e)| e.line.clone()).collect::<Vec<_>>(),
        want,
        "{when}: trace lines"
    );
    assert!(
        t.iter()
            .all(|(l, e)| l.get("job") == Some("api") && e.trace_id == Some(trace(7)))
    );
    assert_eq!(
        t[0].1.metadata,
        vec![("level".to_string(), "info".to_string())]
    );
    assert_eq!(
        store
            .lines_for_trace(trace(7), T0, T0 + 1000 * SEC, 2)
            .unwrap()
            .len(),
        2
    );

    let newest = lines_ordered(store, &all, Direction::Backward, 3);
    assert_eq!(newest.len(), 3);
    assert!(
        newest[0].ends_with("request 29 status=200 path=/users/29"),
        "{when}: {newest:?}"
    );
    assert!(newest[2].contains("request 28 "), "{when}: {newest:?}");
    let oldest = lines_ordered(store, &all, Direction::Forward, 1000);
    assert_eq!(oldest.len(), 60);
    assert!(oldest[0].contains("request 0 ") && oldest[59].contains("request 29 "));

    let api = store.streams(&[Matcher::equal("job", "api")], T0, T0 + 1000 * SEC);
    assert_eq!(api.len(), 1);
    let mut sel = Selection::new(T0, T0 + 1000 * SEC);
    sel.streams = Some(vec![api[0].id]);
    sel.required = vec!["/users/17".into()];
    let mut hits = Vec::new();
    store
        .for_each_line(&sel, true, |l| {
            let line = &l.entry.unwrap().line;
            if line.contains("/users/17") {
                hits.push(line.clone());
            }
            ControlFlow::Continue(())
        })
        .unwrap();
    assert_eq!(
        hits,
        vec!["api request 17 status=200 path=/users/17"],
        "{when}"
    );
    assert_eq!(store.label_names(T0, T0 + 1000 * SEC), vec!["env", "job"]);
    assert_eq!(
        store.label_values("job", T0, T0 + 1000 * SEC),
        vec!["api", "db"]
    );
    assert!(
        store
            .label_values("job", T0 + 2000 * SEC, T0 + 3000 * SEC)
            .is_empty()
    );
    let not_api = Matcher::new(MatchOp::NotRegex, "job", "a.*").unwrap();
    assert_eq!(store.streams(&[not_api], T0, T0 + 1000 * SEC).len(), 1);
}

#[test]
fn appends_are_read_back_before_and_after_commit_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let store = LogStore::open(dir.path(), opts()).unwrap();
    let stats = store.append(&batch(T0, 30)).unwrap();
    assert_eq!(
        (stats.entries, stats.new_streams, stats.streams),
        (60, 2, 2)
    );
    check_contents(&store, "in memory");
    store.commit().unwrap();
    check_contents(&store, "committed");
    drop(store);
    let store = LogStore::open(dir.path(), opts()).unwrap();
    check_contents(&store, "reopened");
}

#[test]
fn uncommitted_appends_are_replayed_from_the_wal() {
    let dir = tempfile::tempdir().unwrap();
    let store = LogStore::open(dir.path(), opts()).unwrap();
    store.append(&batch(T0, 10)).unwrap();
    store.commit().unwrap();
    let mut rest = batch(T0 + 10 * SEC, 20);
    // The second half continues the same streams (and their trace lines every third).
    for s in &mut rest.streams {
        for (i, e) in s.entries.iter_mut().enumerate() {
            let i = i + 10;
            let job = s.labels.get("job").unwrap();
            e.line = format!("{job} request {i} status=200 path=/users/{i}");
            e.trace_id = (job == "api" && i % 3 == 0).then_some(trace(7));
            e.metadata = if e.trace_id.is_some() {
                vec![("level".into(), "info".into())]
            } else {
                vec![]
            };
        }
    }
    store.append(&rest).unwrap();
    store.abandon();
    let (store, report) =
        LogStore::open_with_report(dir.path(), opts(), Default::default()).unwrap();
    assert_eq!(report.wal_lines, 40, "{report:?}");
    assert_eq!(report.indexed_lines, 20, "{report:?}");
    check_contents(&store, "replayed");
    // A second crash right after the replay must not duplicate anything.
    store.abandon();
    let store = LogStore::open(dir.path(), opts()).unwrap();
    check_contents(&store, "replayed twice");
}

#[test]
fn retention_deletes_old_lines_and_forgets_empty_streams() {
    let dir = tempfile::tempdir().unwrap();
    let o = LogStoreOptions {
        retention: Duration::from_secs(3600),
        ..opts()
    };
    let store = LogStore::open(dir.path(), o.clone()).unwrap();
    let old = one_stream("old", vec![LogEntry::new(T0, "ancient")]);
    store.append(&old).unwrap();
    store.commit().unwrap();
    store.append(&batch(T0 + 7200 * SEC, 5)).unwrap();
    assert_eq!(store.maintain().unwrap(), 1);
    let all = Selection::new(0, i64::MAX);
    assert_eq!(count(&store, &all), 10);
    assert_eq!(store.label_values("job", 0, i64::MAX), vec!["api", "db"]);
    drop(store);
    let store = LogStore::open(dir.path(), o).unwrap();
    assert_eq!(count(&store, &all), 10);
    assert_eq!(store.label_values("job", 0, i64::MAX), vec!["api", "db"]);
}

#[test]
fn a_second_process_cannot_open_the_same_directory() {
    let dir = tempfile::tempdir().unwrap();
    let _a = LogStore::open(dir.path(), opts()).unwrap();
    let err = LogStore::open(dir.path(), opts())
        .err()
        .expect("second open must fail");
    assert!(err.to_string().contains("in use"), "{err}");
}

#[test]
fn ordered_reads_page_through_a_long_sparse_range() {
    let dir = tempfile::tempdir().unwrap();
    let store = LogStore::open(dir.path(), opts()).unwrap();
    // Lines clustered at both ends of a year, nothing in between.
    let mut entries = Vec::new();
    for i in 0..50 {
        entries.push(LogEntry::new(T0 + i * SEC, format!("early {i}")));
        entries.push(LogEntry::new(
            T0 + 365 * 86400 * SEC + i * SEC,
            format!("late {i}"),
        ));
    }
    store.append(&one_stream("x", entries)).unwrap();
    store.commit().unwrap();
    let sel = Selection::new(0, i64::MAX);
    let fwd = lines_ordered(&store, &sel, Direction::Forward, 1000);
    assert_eq!(fwd.len(), 100);
    assert_eq!(fwd[0], "early 0");
    assert_eq!(fwd[50], "late 0");
    let back = lines_ordered(&store, &sel, Direction::Backward, 51);
    assert_eq!(back[0], "late 49");
    assert_eq!(back[50], "early 49");
}

/// Lines whose tokens are words, short hex, ids the index keeps only as tags (16–64 hex
/// characters) and hex runs too long to index.
fn id_lines() -> Vec<String> {
    let ids = [
        "4bf92f3577b34da6a3ce929d0e0e4736",
        "4bf92f3577b34da6a3ce929d0e0e4737",
        "00f067aa0ba902b7",
        "00f067aa0ba902b7ffffffff",
        "ABCDEF0123456789ABCDEF0123456789",
        "cafe12",
        "deadbeefdeadbeefdeadbeefdeadbeefdeadbeefdeadbeefdeadbeefdeadbeefdeadbeef00",
    ];
    let mut lines = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        lines.push(format!("trace_id={id} n={i}"));
        lines.push(format!(r#"{{"span":"x{id}","n":{i}}}"#));
        lines.push(format!("traceparent: 00-{id}-00f067aa0ba902b7-01 #{i}"));
    }
    // Numbers: short ones are not indexed, longer ones are.
    lines.push("status=200 took 17ms order 48213 port:8080".into());
    lines.push("status=503 order 482130 user 1482139".into());
    lines
}

#[test]
fn substring_search_finds_every_line_that_holds_the_needle() {
    let dir = tempfile::tempdir().unwrap();
    // One line per chunk: what the index narrows shows in the chunks read.
    let o = LogStoreOptions {
        chunk_max_lines: 1,
        ..opts()
    };
    let store = LogStore::open(dir.path(), o).unwrap();
    let lines = id_lines();
    let entries = lines
        .iter()
        .enumerate()
        .map(|(i, l)| LogEntry::new(T0 + i as i64, l.clone()))
        .collect();
    store.append(&one_stream("ids", entries)).unwrap();
    store.commit().unwrap();
    let needles = [
        "4bf92f3577b34da6a3ce929d0e0e4736",
        "=4bf92f3577b34da6a3ce929d0e0e4736 ",
        "4bf92f35",
        "-4bf92f35",
        "0e0e4737",
        "e929d0e0e4736",
        "00f067aa0ba902b7",
        "00f067aa0ba902b7-",
        "=00f067aa0ba902b7 ",
        "a0ba902b7fff",
        "ABCDEF0123456789",
        "abcdef0123456789",
        "cafe12",
        "afe1",
        "x4bf92f3577b34da6a3ce929d0e0e4736",
        "deadbeefdeadbeefdeadbeef",
        "beef00",
        "no such thing",
        "traceparent",
        "200",
        "=200 ",
        "17ms",
        "48213",
        "order 48213",
        "48213 ",
        "82130",
        "8080",
        "503 order",
    ];
    for needle in needles {
        let mut sel = Selection::new(T0, T0 + SEC);
        sel.required = vec![needle.to_string()];
        let mut found = Vec::new();
        let chunks_before = store.stats().chunks_read.load(Ordering::Relaxed);
        store
            .for_each_line(&sel, true, |l| {
                let line = &l.entry.unwrap().line;
                if line.contains(needle) {
                    found.push(line.clone());
                }
                ControlFlow::Continue(())
            })
            .unwrap();
        found.sort();
        let mut want: Vec<String> = lines
            .iter()
            .filter(|l| l.contains(needle))
            .cloned()
            .collect();
        want.sort();
        assert_eq!(found, want, "needle {needle:?}");
        // Words, ids with separators on both sides, and ids no longer hex run can hold
        // narrow the read through the index.
        let narrow = [
            "4bf92f3577b34da6a3ce929d0e0e4736",
            "=4bf92f3577b34da6a3ce929d0e0e4736 ",
            "=00f067aa0ba902b7 ",
            "traceparent",
            "no such thing",
            "order 48213",
        ];
        let read = store.stats().chunks_read.load(Ordering::Relaxed) - chunks_before;
        if narrow.contains(&needle) {
            assert!(
                read < lines.len() as u64 / 2,
                "needle {needle:?} read {read} one-line chunks for {} hits",
                want.len()
            );
        }
    }
}

#[test]
fn an_index_of_another_format_is_refused_with_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let store = LogStore::open(dir.path(), opts()).unwrap();
    store.append(&batch(T0, 3)).unwrap();
    store.commit().unwrap();
    drop(store);
    std::fs::write(dir.path().join("index/lastmile-format"), "1").unwrap();
    let err = LogStore::open(dir.path(), opts())
        .err()
        .expect("an old index must be refused");
    let msg = err.to_string();
    assert!(
        msg.contains("has format 1") && msg.contains("move that directory away"),
        "{msg}"
    );
}
