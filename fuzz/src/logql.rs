//! Harness for LogQL: any text parsed and evaluated as a range query (log or metric) and
//! an instant query over a small fixed log store. Must never panic; a log answer holds
//! at most `limit` lines in the asked order, a matrix comes sorted by labels with points
//! in time order, and no answer repeats a label set.

use std::sync::OnceLock;
use std::time::Duration;

use lastmile_log_store::{Direction, LogStore, LogStoreOptions};
use lastmile_model::{Labels, LogBatch, LogEntry, LogStream};
use lastmile_query::logql::{self, LogqlOptions, LogqlResult};

const T0: i64 = 1_700_000_000_000_000_000;
const SEC: i64 = 1_000_000_000;
const LIMIT: usize = 7;

fn store() -> &'static LogStore {
    static STORE: OnceLock<LogStore> = OnceLock::new();
    STORE.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("lastmile-fuzz-logql-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = LogStore::open(
            &dir,
            LogStoreOptions {
                commit_interval: Duration::from_secs(3600),
                writer_memory_bytes: 15 << 20,
                ..Default::default()
            },
        )
        .expect("open fuzz log store");
        let lines = [
            r#"{"level":"info","status":200,"dur":"15ms","size":"1KB","user":{"id":"u1"}}"#,
            r#"{"level":"error","status":500,"dur":"2s","app":"x","arr":[1,2]}"#,
            "level=warn status=404 dur=1.5s msg=\"not found\"",
            "level=info status=abc dur=oops",
            "plain text line with error inside",
            "msg=\"unterminated",
        ];
        let mut batch = LogBatch::default();
        for (j, (app, env)) in [("api", "prod"), ("web", "prod"), ("api", "dev")]
            .iter()
            .enumerate()
        {
            let entries = (0..30)
                .map(|i| {
                    let mut e = LogEntry::new(
                        T0 + (i * 10 + j as i64) * SEC,
                        lines[(i as usize + j) % lines.len()],
                    );
                    if i % 7 == 0 {
                        e.metadata = vec![("trace_id".into(), format!("{i:032x}"))];
                    }
                    e
                })
                .collect();
            batch.streams.push(LogStream {
                labels: Labels::from_pairs([("app", *app), ("env", *env)]),
                entries,
            });
        }
        store.append(&batch).expect("append");
        // Half the data committed to the index, the rest in memory.
        store.commit().expect("commit");
        store
    })
}

pub fn query(data: &[u8]) {
    let Ok(q) = std::str::from_utf8(data) else {
        return;
    };
    if q.len() > 512 {
        return;
    }
    let store = store();
    let opts = LogqlOptions {
        max_series: 200,
        ..Default::default()
    };
    for dir in [Direction::Forward, Direction::Backward] {
        if let Ok(r) = logql::range_query(store, q, T0, T0 + 300 * SEC, 30 * SEC, LIMIT, dir, &opts)
        {
            check(&r, dir);
        }
    }
    if let Ok(r) = logql::instant_query(store, q, T0 + 200 * SEC, &opts) {
        check(&r, Direction::Forward);
    }
}

fn check(r: &LogqlResult, dir: Direction) {
    match r {
        LogqlResult::Streams(streams) => {
            let n: usize = streams.iter().map(|s| s.entries.len()).sum();
            assert!(n <= LIMIT, "{n} lines for a limit of {LIMIT}");
            unique(streams.iter().map(|s| &s.labels));
            for s in streams {
                let ordered = s.entries.windows(2).all(|w| match dir {
                    Direction::Forward => w[0].0 <= w[1].0,
                    Direction::Backward => w[0].0 >= w[1].0,
                });
                assert!(ordered, "lines out of {dir:?} order");
            }
        }
        LogqlResult::Matrix(m) => {
            assert!(
                m.windows(2).all(|w| w[0].labels < w[1].labels),
                "matrix not sorted by labels"
            );
            for s in m {
                assert!(!s.points.is_empty(), "a series without points");
                assert!(
                    s.points.windows(2).all(|w| w[0].0 < w[1].0),
                    "points out of order"
                );
            }
        }
        LogqlResult::Vector(v) => unique(v.iter().map(|s| &s.0)),
    }
}

fn unique<'a>(labels: impl Iterator<Item = &'a Labels>) {
    let mut seen: Vec<&Labels> = labels.collect();
    let n = seen.len();
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), n, "an answer repeats a label set");
}
