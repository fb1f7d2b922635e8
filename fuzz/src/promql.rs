//! Harness for the query path: any text as a PromQL query, parsed and evaluated (instant
//! and range) over a small fixed data set. Must never panic; a successful vector answer
//! must not repeat a label set, and a range answer must come sorted by labels.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use lastmile_model::WriteBatch;
use lastmile_query::promql::{self, QueryOptions, QueryResult, Value};
use lastmile_store::{Db, DbOptions, StoreMetrics};

const T0: i64 = 1_700_000_000_000;

/// A store with a few series over 30 minutes, built once per fuzzing process.
fn db() -> &'static Db {
    static DB: OnceLock<Db> = OnceLock::new();
    DB.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("lastmile-fuzz-promql-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let (db, _) = Db::open(
            &dir,
            DbOptions::default(),
            Arc::new(StoreMetrics::default()),
        )
        .expect("open fuzz store");
        let jobs = ["api", "db"];
        let specials = [0.0, -1.5, f64::NAN, f64::INFINITY, 1e300, 5e-324];
        for step in 0..120i64 {
            let t = T0 + step * 15_000;
            let mut b = WriteBatch::new();
            let les = ["0.1", "1", "+Inf"];
            let values: Vec<String> = (0..3).map(|i| format!("{i}")).collect();
            for (j, job) in jobs.iter().enumerate() {
                for (i, le) in les.iter().enumerate() {
                    b.begin_series();
                    b.push_label("__name__", "req_bucket");
                    b.push_label("job", job);
                    b.push_label("le", le);
                    b.push_sample(t, (step * (i as i64 + 1) + j as i64) as f64);
                    let _ = b.finish_series();
                }
                b.begin_series();
                b.push_label("__name__", "up");
                b.push_label("job", job);
                b.push_label("instance", &values[j]);
                b.push_sample(t, (step % 2) as f64);
                let _ = b.finish_series();
            }
            b.begin_series();
            b.push_label("__name__", "special");
            b.push_sample(t, specials[(step as usize) % specials.len()]);
            let _ = b.finish_series();
            db.head().append(&b, None, i64::MAX).expect("append");
        }
        db
    })
}

fn options() -> QueryOptions {
    QueryOptions {
        timeout: Duration::from_millis(500),
        max_samples: 200_000,
        ..QueryOptions::default()
    }
}

pub fn query(data: &[u8]) {
    let Ok(q) = std::str::from_utf8(data) else {
        return;
    };
    if q.len() > 512 {
        return;
    }
    let db = db();
    let opts = options();
    if let Ok(r) = promql::instant_query(db, q, T0 + 20 * 60_000, &opts) {
        check(&r);
    }
    if let Ok(r) = promql::range_query(db, q, T0, T0 + 30 * 60_000, 60_000, &opts) {
        check(&r);
    }
}

fn check(r: &QueryResult) {
    match r {
        QueryResult::Instant {
            value: Value::Vector(v),
            ..
        } => {
            let mut seen: Vec<_> = v.iter().map(|s| &*s.metric).collect();
            let n = seen.len();
            seen.sort();
            seen.dedup();
            assert_eq!(seen.len(), n, "an instant vector repeats a label set");
        }
        QueryResult::Range(m) => {
            assert!(
                m.windows(2).all(|w| w[0].metric < w[1].metric),
                "range result not sorted by labels"
            );
            for s in m {
                assert!(
                    s.points.windows(2).all(|w| w[0].0 < w[1].0),
                    "points out of order"
                );
            }
        }
        _ => {}
    }
}
