//! The store end to end: writes, reads, restart, flush to blocks, compaction, retention.

use std::sync::Arc;
use std::time::Duration;

use lastmile_model::{MatchOp, Matcher, WriteBatch};
use lastmile_store::{Db, DbOptions, StoreMetrics, WalSync};

const HOUR: i64 = 3600 * 1000;

fn opts() -> DbOptions {
    DbOptions {
        wal_sync: WalSync::Write {
            interval: Duration::from_secs(1),
        },
        ..DbOptions::default()
    }
}

fn open(dir: &std::path::Path) -> Db {
    Db::open(dir, opts(), Arc::new(StoreMetrics::default()))
        .unwrap()
        .0
}

/// `n` series `test_metric{idx="i", job="j"}`, each with the given samples.
fn batch<'a>(names: &'a [String], samples: &[(i64, f64)]) -> WriteBatch<'a> {
    let mut b = WriteBatch::new();
    for (i, idx) in names.iter().enumerate() {
        b.begin_series();
        b.push_label("__name__", "test_metric");
        b.push_label("idx", idx);
        b.push_label("job", if i % 2 == 0 { "even" } else { "odd" });
        for &(t, v) in samples {
            b.push_sample(t, v + i as f64);
        }
        b.finish_series().unwrap();
    }
    b
}

fn names(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{i:04}")).collect()
}

fn eq(name: &str, value: &str) -> Matcher {
    Matcher::equal(name, value)
}

fn all_samples(db: &Db, matchers: &[Matcher]) -> Vec<(String, Vec<(i64, f64)>)> {
    db.select(matchers, i64::MIN / 2, i64::MAX / 2, true)
        .unwrap()
        .into_iter()
        .map(|s| {
            let samples = s
                .samples(i64::MIN / 2, i64::MAX / 2)
                .into_iter()
                .map(|x| (x.t, x.v))
                .collect();
            (s.labels.get("idx").unwrap_or("").to_owned(), samples)
        })
        .collect()
}

#[tokio::test]
async fn write_select_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let n = names(50);
    {
        let db = open(dir.path());
        for k in 0..10 {
            let out = db
                .write(&batch(&n, &[(k * 15_000, k as f64)]))
                .await
                .unwrap();
            assert_eq!(out.samples, 50);
        }
        let even = all_samples(&db, &[eq("job", "even")]);
        assert_eq!(even.len(), 25);
        assert_eq!(even[0].1.len(), 10);
        db.close();
    }
    let db = open(dir.path());
    let all = all_samples(&db, &[eq("__name__", "test_metric")]);
    assert_eq!(all.len(), 50);
    for (idx, samples) in &all {
        let i: f64 = idx.parse().unwrap();
        let want: Vec<(i64, f64)> = (0..10).map(|k| (k * 15_000, k as f64 + i)).collect();
        assert_eq!(samples, &want, "series {idx} after replay");
    }
    // New series after restart get fresh ids and coexist with replayed ones.
    let more = names(60);
    db.write(&batch(&more, &[(200_000, 1.0)])).await.unwrap();
    assert_eq!(all_samples(&db, &[eq("__name__", "test_metric")]).len(), 60);
}

#[tokio::test]
async fn out_of_order_too_old_and_duplicates_are_counted_rest_kept() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    let n = names(1);
    db.write(&batch(&n, &[(10 * HOUR, 1.0)])).await.unwrap();
    // Out of order, identical duplicate (ignored), conflicting duplicate, too old, then new.
    let out = db
        .write(&batch(
            &n,
            &[
                (10 * HOUR - 1, 0.0),
                (10 * HOUR, 1.0),
                (10 * HOUR, 2.0),
                (8 * HOUR, 0.0),
                (10 * HOUR + 1, 3.0),
            ],
        ))
        .await
        .unwrap();
    assert_eq!(
        (
            out.samples,
            out.out_of_order,
            out.duplicate_timestamp,
            out.too_old
        ),
        (1, 1, 1, 1)
    );
    let got = all_samples(&db, &[eq("idx", "0000")]);
    assert_eq!(got[0].1, vec![(10 * HOUR, 1.0), (10 * HOUR + 1, 3.0)]);
    // A retry of the whole last request: already stored, so nothing is refused, and a
    // genuinely different old value still counts as out of order.
    let retry = db
        .write(&batch(&n, &[(10 * HOUR, 1.0), (10 * HOUR + 1, 3.0)]))
        .await
        .unwrap();
    assert_eq!((retry.samples, retry.rejected()), (0, 0));
    let changed = db.write(&batch(&n, &[(10 * HOUR, 7.0)])).await.unwrap();
    assert_eq!(changed.out_of_order, 1);
}

#[tokio::test]
async fn matchers_follow_prometheus_semantics() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    let n = names(10);
    db.write(&batch(&n, &[(1000, 1.0)])).await.unwrap();
    let m = |op, name: &str, v: &str| Matcher::new(op, name, v).unwrap();
    let count = |ms: &[Matcher]| db.select(ms, 0, 2000, false).unwrap().len();
    assert_eq!(count(&[m(MatchOp::Regex, "idx", "000[0-4]")]), 5);
    assert_eq!(
        count(&[
            eq("__name__", "test_metric"),
            m(MatchOp::NotRegex, "idx", "000[0-4]")
        ]),
        5
    );
    assert_eq!(
        count(&[
            eq("__name__", "test_metric"),
            m(MatchOp::NotEqual, "job", "even")
        ]),
        5
    );
    // A label nobody has: `=""` keeps all, `!=""` none.
    assert_eq!(count(&[eq("__name__", "test_metric"), eq("zone", "")]), 10);
    assert_eq!(
        count(&[
            eq("__name__", "test_metric"),
            m(MatchOp::NotEqual, "zone", "")
        ]),
        0
    );
    assert_eq!(
        count(&[
            m(MatchOp::Regex, "job", "even|odd"),
            m(MatchOp::Regex, "idx", ".*1")
        ]),
        1
    );
    assert_eq!(
        db.label_values("job", &[], 0, 2000).unwrap(),
        vec!["even", "odd"]
    );
    assert_eq!(
        db.label_names(&[vec![eq("job", "odd")]], 0, 2000).unwrap(),
        vec!["__name__", "idx", "job"]
    );
}

#[tokio::test]
async fn head_flushes_into_blocks_which_compact_and_expire() {
    let dir = tempfile::tempdir().unwrap();
    let n = names(20);
    let mut expected: Vec<(i64, f64)> = Vec::new();
    {
        let db = open(dir.path());
        // 12 hours at one sample per minute: the head flushes several 2h windows.
        for k in 0..(12 * 60) {
            let t = k * 60_000;
            expected.push((t, k as f64));
            db.write(&batch(&n, &[(t, k as f64)])).await.unwrap();
            if k % 30 == 0 {
                db.maintain().unwrap();
            }
        }
        db.maintain().unwrap();
        let status = db.status(10);
        assert!(!status.blocks.is_empty(), "some windows were persisted");
        assert!(
            status.head.min_time.unwrap() >= 6 * HOUR,
            "head holds only recent windows"
        );
        assert!(
            status.blocks.iter().any(|b| b.meta.compaction.level > 1),
            "2h blocks were compacted: {:?}",
            status.blocks
        );
        let got = all_samples(&db, &[eq("idx", "0003")]);
        let want: Vec<(i64, f64)> = expected.iter().map(|(t, v)| (*t, v + 3.0)).collect();
        assert_eq!(got[0].1, want, "blocks + head return every sample once");
        db.close();
    }
    // After restart the checkpointed WAL and the blocks give back the same data.
    let db = open(dir.path());
    let got = all_samples(&db, &[eq("idx", "0003")]);
    assert_eq!(got[0].1.len(), expected.len());
    // Force the rest of the head out, then check the on-disk data alone.
    db.flush_head().unwrap();
    assert_eq!(db.status(10).head.num_series, 0);
    let got = all_samples(&db, &[eq("idx", "0003")]);
    assert_eq!(got[0].1.len(), expected.len());
    db.close();
    drop(db);
    // Retention of 3h keeps only blocks with data newer than 12h - 3h.
    let short = DbOptions {
        retention: Duration::from_secs(3 * 3600),
        ..opts()
    };
    let db = Db::open(dir.path(), short, Arc::new(StoreMetrics::default()))
        .unwrap()
        .0;
    db.maintain().unwrap();
    let got = all_samples(&db, &[eq("idx", "0003")]);
    assert!(
        got[0].1.first().unwrap().0 >= 12 * HOUR - 3 * HOUR - 2 * HOUR,
        "old blocks deleted"
    );
    assert_eq!(got[0].1.last().unwrap().0, expected.last().unwrap().0);
}

#[tokio::test]
async fn exemplars_and_metadata_survive_restart() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = open(dir.path());
        let mut b = WriteBatch::new();
        b.begin_series();
        b.push_label("__name__", "http_requests_total");
        b.push_label("job", "api");
        b.push_sample(1000, 5.0);
        b.push_exemplar(
            &[lastmile_model::LabelRef {
                name: "trace_id",
                value: "abc123",
            }],
            1000,
            1.0,
        );
        b.finish_series().unwrap();
        b.metadata.push(lastmile_model::MetadataRef {
            metric_family_name: "http_requests_total",
            metric_type: lastmile_model::MetricType::Counter,
            help: "Requests.",
            unit: "",
        });
        let out = db.write(&b).await.unwrap();
        assert_eq!(out.exemplars, 1);
        db.close();
    }
    let db = open(dir.path());
    let ex = db.exemplars(&[vec![eq("job", "api")]], 0, 2000);
    assert_eq!(ex.len(), 1);
    assert_eq!(ex[0].1[0].labels.get("trace_id"), Some("abc123"));
    assert_eq!(db.metadata()["http_requests_total"].help, "Requests.");
}

#[test]
fn a_second_process_cannot_open_the_same_directory() {
    let dir = tempfile::tempdir().unwrap();
    let _db = open(dir.path());
    let err = Db::open(dir.path(), opts(), Arc::new(StoreMetrics::default()))
        .err()
        .unwrap();
    assert!(err.to_string().contains("in use"), "{err}");
}

#[tokio::test]
async fn hostile_timestamps_do_not_block_ingest() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    let n = names(1);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    // A client with a clock a day ahead is refused, so it cannot make "now" too old.
    let out = db
        .write(&batch(&n, &[(now + 24 * HOUR, 1.0)]))
        .await
        .unwrap();
    assert_eq!((out.samples, out.too_far_in_future), (0, 1));
    // The extreme past is stored, and does not stop later samples; beyond the API's time
    // range it is refused.
    let out = db.write(&batch(&n, &[(i64::MIN + 1, 1.0)])).await.unwrap();
    assert_eq!((out.samples, out.too_old), (0, 1));
    let out = db.write(&batch(&n, &[(i64::MIN / 2, 1.0)])).await.unwrap();
    assert_eq!(out.samples, 1);
    let out = db.write(&batch(&n, &[(now, 2.0)])).await.unwrap();
    assert_eq!((out.samples, out.rejected()), (1, 0));
    db.maintain().unwrap();
    let got = all_samples(&db, &[eq("idx", "0000")]);
    assert_eq!(got[0].1.last(), Some(&(now, 2.0)));
}

#[tokio::test]
async fn idle_series_leave_the_index_when_their_data_moves_to_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    let all = names(10);
    let busy = &all[..4];
    db.write(&batch(&all, &[(0, 1.0)])).await.unwrap();
    // Only the first four series keep receiving samples, for 5 hours.
    for k in 1..=300 {
        db.write(&batch(busy, &[(k * 60_000, 1.0)])).await.unwrap();
    }
    db.maintain().unwrap();
    let status = db.status(10);
    assert_eq!(status.head.num_series, 4, "idle series left the head");
    // Their label values are gone from the head's index but their data is in blocks.
    assert_eq!(db.head().label_values("idx").len(), 4);
    let even = db.select(&[eq("job", "even")], 0, 0, false).unwrap();
    assert_eq!(
        even.len(),
        5,
        "all five even series still answer from the block"
    );
    let recent = db
        .select(&[eq("job", "even")], 4 * HOUR, 6 * HOUR, false)
        .unwrap();
    assert_eq!(
        recent.len(),
        2,
        "only the busy even series have recent data"
    );
}
