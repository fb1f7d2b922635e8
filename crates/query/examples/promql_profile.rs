//! Runs one PromQL query against a data directory, in process, for profilers.
//!
//! ```text
//! cargo build --release -p lastmile-query --example promql_profile
//! promql_profile DATA_DIR 'EXPR' TIME_MS [START_MS STEP_MS] [--repeat N] [--threads N]
//! ```
//! With START_MS and STEP_MS it is a range query from START_MS to TIME_MS. Open a copy of
//! a server's data directory (a running server holds its lock). Only [`run_queries`] does
//! query work, so an instruction count can be limited to it:
//! `valgrind --tool=callgrind --collect-atstart=no --toggle-collect='*run_queries*' …`
//! (with `--threads 1`: work on other threads is not counted).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use lastmile_query::promql::{self, QueryOptions, QueryResult};
use lastmile_store::{Db, DbOptions, StoreMetrics};

#[inline(never)]
fn run_queries(
    db: &Db,
    expr: &str,
    time: i64,
    range: Option<(i64, i64)>,
    repeat: usize,
    threads: Option<usize>,
) -> Result<QueryResult, promql::PromqlError> {
    let mut opts = QueryOptions::default();
    if let Some(t) = threads {
        opts.parallelism = t;
    }
    let mut last = None;
    for _ in 0..repeat {
        let started = Instant::now();
        let r = match range {
            None => promql::instant_query(db, expr, time, &opts)?,
            Some((start, step)) => promql::range_query(db, expr, start, time, step, &opts)?,
        };
        eprintln!("{:.2} ms", started.elapsed().as_secs_f64() * 1000.0);
        last = Some(r);
    }
    last.ok_or_else(|| promql::PromqlError::BadData("--repeat 0".into()))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let mut flag = |name: &str| -> Result<Option<usize>, Box<dyn std::error::Error>> {
        let Some(i) = args.iter().position(|a| a == name) else {
            return Ok(None);
        };
        let v = args
            .get(i + 1)
            .ok_or(format!("{name} needs a number"))?
            .parse()?;
        args.drain(i..i + 2);
        Ok(Some(v))
    };
    let repeat = flag("--repeat")?.unwrap_or(1);
    let threads = flag("--threads")?;
    let usage =
        "usage: promql_profile DATA_DIR EXPR TIME_MS [START_MS STEP_MS] [--repeat N] [--threads N]";
    let (dir, expr, time) = match &args[..] {
        [d, e, t, ..] => (PathBuf::from(d), e.clone(), t.parse::<i64>()?),
        _ => return Err(usage.into()),
    };
    let range = match &args[3..] {
        [] => None,
        [s, st] => Some((s.parse::<i64>()?, st.parse::<i64>()?)),
        _ => return Err(usage.into()),
    };
    let started = Instant::now();
    let (db, _) = Db::open(
        &dir,
        DbOptions::default(),
        Arc::new(StoreMetrics::default()),
    )?;
    eprintln!("opened in {:.1} s", started.elapsed().as_secs_f64());
    let r = run_queries(&db, &expr, time, range, repeat, threads)?;
    let series = match &r {
        QueryResult::Range(m) => m.len(),
        QueryResult::Instant { value, .. } => match value {
            promql::Value::Vector(v) => v.len(),
            promql::Value::Matrix(m) => m.len(),
            _ => 1,
        },
    };
    eprintln!("{series} series");
    Ok(())
}
