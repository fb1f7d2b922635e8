//! The differential PromQL suite (issue 3's main acceptance test): a real Prometheus
//! (Debian's package) and lastmile hold the same three hours of generated data, then every
//! query of `promql/queries.txt` runs against both, and their answers must match (rules in
//! `promql/compare.rs`). All queries run; every mismatch is reported at the end.
//!
//! Loading: the generator (`promql/data.rs`, fixed seed) writes OpenMetrics text that
//! `promtool tsdb create-blocks-from openmetrics` turns into TSDB blocks for Prometheus,
//! and the same samples go to lastmile by remote write, oldest first, in 15-minute rounds
//! across all series. Before any query, both servers' raw samples are compared with the
//! generated ones: a difference there is a harness bug, not an engine bug.
//!
//! The query file: one query per line, `#` starts a comment line.
//! - `instant EXPR`: an instant query at each of [`INSTANT_TIMES`];
//! - `range STEP EXPR`: a range query over [`RANGE_FROM`]..[`RANGE_TO`] with that step;
//! - `instant-error EXPR`, `range-error STEP EXPR`: the same, where Prometheus is expected to
//!   answer with an error (checked, so a typo cannot turn a query into a silent error case).
//!
//! `${start}`, `${end}`, `${start+1h}`, `${end-90s}`… in an expression are replaced by the
//! data's first grid point / end (Unix seconds) plus or minus a duration, for `@`.
//!
//! Environment:
//! - `PROMQL_DIFF_SELF=1`: compare Prometheus with a second Prometheus started on copies
//!   of the same blocks instead of lastmile. Everything must match: this proves the
//!   harness and the query file are sound while lastmile's engine is not there yet.
//! - `PROMQL_DIFF_FILTER=TEXT`: only run the queries containing TEXT.
//! - `PROMQL_DIFF_NOTES=1`: also print the notes (e.g. differently worded errors).
//! - `PROMQL_DIFF_PAUSE=SECONDS`: once loaded, print both servers' addresses and the data's
//!   time range, and wait that long before running the queries (to poke at them by hand).

mod common;
#[path = "promql/compare.rs"]
mod compare;
#[path = "promql/data.rs"]
mod data;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use common::*;
use compare::{Data, Order, Outcome, Verdict, render, show_labels, show_value};
use lastmile_receivers::remote_write::EncodeSeries;

const QUERIES: &str = include_str!("promql/queries.txt");

const MIN: i64 = 60_000;
const HOUR: i64 = 60 * MIN;

/// Where instant queries are evaluated, relative to the data (name, base, offset in ms).
/// - end: the newest data; series that stopped early are gone, `late_gauge` is there;
/// - end-37m: between grid points, everything except the stopped series present;
/// - start+1h: right at the end of `flaky`'s 10 min gap (no sample in the lookback) and
///   before `api-v2` had been up for long;
/// - start+2h10m: during the error burst of `api-v2`, within `flaky`'s 5 min 15 s gap.
const INSTANT_TIMES: [(&str, Base, i64); 4] = [
    ("end", Base::End, 0),
    ("end-37m", Base::End, -37 * MIN),
    ("start+1h", Base::Start, HOUR),
    ("start+2h10m", Base::Start, 2 * HOUR + 10 * MIN),
];
/// The window of range queries: two hours of the three.
const RANGE_FROM: i64 = 40 * MIN;
const RANGE_TO: i64 = 2 * HOUR + 40 * MIN;
/// The data ends this long before the test starts (lastmile refuses samples more than
/// 10 min in the future; Prometheus does not care).
const END_BEFORE_NOW: i64 = 5 * MIN;

#[derive(Clone, Copy, Debug)]
enum Base {
    Start,
    End,
}

// ---------------------------------------------------------------------------------------
// The query file

#[derive(Clone, Debug, PartialEq)]
enum QueryKind {
    Instant,
    Range { step_ms: i64 },
}

#[derive(Clone, Debug)]
struct Query {
    line: usize,
    /// The `#@` section it is in.
    category: String,
    kind: QueryKind,
    expect_error: bool,
    /// As written, with `${…}` placeholders.
    expr: String,
}

/// Parses a Prometheus-style duration (`15s`, `1h30m`, `500ms`) to ms.
fn parse_duration(s: &str) -> Result<i64, String> {
    let mut total = 0i64;
    let mut rest = s;
    if rest.is_empty() {
        return Err("empty duration".into());
    }
    while !rest.is_empty() {
        let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        if digits == 0 {
            return Err(format!("bad duration {s:?}"));
        }
        let n: i64 = rest[..digits]
            .parse()
            .map_err(|_| format!("bad duration {s:?}"))?;
        rest = &rest[digits..];
        let unit_len = rest.len()
            - rest
                .trim_start_matches(|c: char| c.is_ascii_alphabetic())
                .len();
        let unit = match &rest[..unit_len] {
            "ms" => 1,
            "s" => 1000,
            "m" => MIN,
            "h" => HOUR,
            "d" => 24 * HOUR,
            other => return Err(format!("bad unit {other:?} in {s:?}")),
        };
        total += n * unit;
        rest = &rest[unit_len..];
    }
    Ok(total)
}

fn parse_queries(text: &str) -> Result<Vec<Query>, String> {
    let mut out = Vec::new();
    let mut category = "uncategorized".to_string();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if let Some(c) = line.strip_prefix("#@") {
            category = c.trim().to_string();
            continue;
        }
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let err = |m: String| format!("queries.txt line {}: {m}: {raw}", i + 1);
        let (head, rest) = line
            .split_once(char::is_whitespace)
            .ok_or_else(|| err("no expression".into()))?;
        let (kind, expect_error, expr) = match head {
            "instant" | "instant-error" => (QueryKind::Instant, head.ends_with("-error"), rest),
            "range" | "range-error" => {
                let (step, expr) = rest
                    .trim_start()
                    .split_once(char::is_whitespace)
                    .ok_or_else(|| err("no step".into()))?;
                let step_ms = parse_duration(step).map_err(err)?;
                (QueryKind::Range { step_ms }, head.ends_with("-error"), expr)
            }
            other => return Err(err(format!("unknown kind {other:?}"))),
        };
        let expr = expr.trim().to_string();
        if expr.is_empty() {
            return Err(err("empty expression".into()));
        }
        out.push(Query {
            line: i + 1,
            category: category.clone(),
            kind,
            expect_error,
            expr,
        });
    }
    Ok(out)
}

/// Replaces `${start±D}` / `${end±D}` with Unix seconds. Other `${…}` (e.g. `${1}` in a
/// `label_replace` replacement) are left alone.
fn expand(expr: &str, start_ms: i64, end_ms: i64) -> Result<String, String> {
    let mut out = String::with_capacity(expr.len());
    let mut rest = expr;
    while let Some(pos) = rest.find("${") {
        out.push_str(&rest[..pos]);
        let Some(close) = rest[pos..].find('}') else {
            break;
        };
        let inner = &rest[pos + 2..pos + close];
        let (base, op_at) = if let Some(r) = inner.strip_prefix("start") {
            (start_ms, r)
        } else if let Some(r) = inner.strip_prefix("end") {
            (end_ms, r)
        } else {
            out.push_str(&rest[pos..pos + close + 1]);
            rest = &rest[pos + close + 1..];
            continue;
        };
        let t = match op_at.chars().next() {
            None => base,
            Some('+') => base + parse_duration(&op_at[1..])?,
            Some('-') => base - parse_duration(&op_at[1..])?,
            Some(_) => return Err(format!("bad placeholder ${{{inner}}}")),
        };
        out.push_str(&secs(t));
        rest = &rest[pos + close + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

// ---------------------------------------------------------------------------------------
// Servers

struct Server {
    name: String,
    addr: SocketAddr,
}

impl Server {
    fn post_form(&self, target: &str, form: &str) -> Result<Response, String> {
        http_request(
            self.addr,
            "POST",
            target,
            &[("Content-Type", "application/x-www-form-urlencoded")],
            form.as_bytes(),
            Framing::ContentLength,
        )
        .map_err(|e| format!("{}: POST {target}: {e}", self.name))
    }

    fn instant(&self, expr: &str, t: i64) -> Result<Outcome, String> {
        let form = format!("query={}&time={}", enc(expr), secs(t));
        let r = self.post_form("/api/v1/query", &form)?;
        compare::parse_outcome(r.status, &r.body).map_err(|e| format!("{}: {e}", self.name))
    }

    fn range(&self, expr: &str, from: i64, to: i64, step: i64) -> Result<Outcome, String> {
        let form = format!(
            "query={}&start={}&end={}&step={}",
            enc(expr),
            secs(from),
            secs(to),
            secs(step)
        );
        let r = self.post_form("/api/v1/query_range", &form)?;
        compare::parse_outcome(r.status, &r.body).map_err(|e| format!("{}: {e}", self.name))
    }
}

type Raw = BTreeMap<Labels, Vec<(i64, f64)>>;

/// Every raw sample Prometheus holds in the 4 hours before `end`.
fn prometheus_raw(p: &Server, end: i64) -> Raw {
    match p.instant(r#"{__name__=~".+"}[4h]"#, end) {
        Ok(Outcome::Success {
            data: Data::Matrix(m),
            ..
        }) => m.into_iter().collect(),
        other => panic!("raw query on {} failed: {other:?}", p.name),
    }
}

/// Differences between two raw data sets (bit-exact values, NaN alike), for a report.
fn raw_diff(want: &Raw, got: &Raw) -> Vec<String> {
    let mut out = Vec::new();
    for (l, w) in want {
        match got.get(l) {
            None => out.push(format!(
                "missing series {} ({} samples)",
                show_labels(l),
                w.len()
            )),
            Some(g) => {
                if w.len() != g.len() {
                    out.push(format!(
                        "{}: {} samples wanted, {} got",
                        show_labels(l),
                        w.len(),
                        g.len()
                    ));
                }
                if let Some((a, b)) = w
                    .iter()
                    .zip(g)
                    .find(|(a, b)| a.0 != b.0 || !same_value(a.1, b.1))
                {
                    out.push(format!(
                        "{}: first difference: want {}@{}, got {}@{}",
                        show_labels(l),
                        show_value(a.1),
                        a.0,
                        show_value(b.1),
                        b.0
                    ));
                }
            }
        }
    }
    for (l, g) in got {
        if !want.contains_key(l) {
            out.push(format!(
                "unexpected series {} ({} samples)",
                show_labels(l),
                g.len()
            ));
        }
    }
    out
}

fn assert_same_raw(what: &str, want: &Raw, got: &Raw) {
    let diff = raw_diff(want, got);
    assert!(
        diff.is_empty(),
        "HARNESS BUG, not an engine bug: {what} does not hold the generated data \
         ({} differences; {} series wanted, {} held):\n{}",
        diff.len(),
        want.len(),
        got.len(),
        diff.iter().take(30).cloned().collect::<Vec<_>>().join("\n")
    );
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap_or_else(|e| panic!("mkdir {}: {e}", to.display()));
    for entry in std::fs::read_dir(from).unwrap_or_else(|e| panic!("{}: {e}", from.display())) {
        let entry = entry.expect("dir entry");
        let dest = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_dir(&entry.path(), &dest);
        } else {
            std::fs::copy(entry.path(), &dest)
                .unwrap_or_else(|e| panic!("copy {}: {e}", entry.path().display()));
        }
    }
}

const PROMETHEUS_CONFIG: &str = "global:\n  scrape_interval: 15s\nscrape_configs: []\n";

fn start_prometheus(binary: &Path, blocks: &Path) -> Peer {
    Peer::prometheus_seeded(
        binary,
        PROMETHEUS_CONFIG,
        &["--storage.tsdb.retention.time=100y"],
        &|data_dir| copy_dir(blocks, data_dir),
    )
}

/// Sends the data set to lastmile by remote write: rounds of `window` ms, oldest first,
/// each round carrying every series' samples of that window.
fn load_lastmile(lastmile: &Lastmile, ds: &data::Dataset, window: i64) -> usize {
    let mut sent = 0;
    let mut from = ds.start_ms;
    while from < ds.end_ms + window {
        let to = from + window;
        let batch: Vec<EncodeSeries> = ds
            .series()
            .filter_map(|s| {
                let samples: Vec<(i64, f64)> = s
                    .samples
                    .iter()
                    .copied()
                    .filter(|(t, _)| *t >= from && *t < to)
                    .collect();
                (!samples.is_empty()).then(|| EncodeSeries {
                    labels: s.labels.clone(),
                    samples,
                    exemplars: vec![],
                })
            })
            .collect();
        if !batch.is_empty() {
            sent += batch.iter().map(|s| s.samples.len()).sum::<usize>();
            lastmile.remote_write_ok(&batch);
        }
        from = to;
    }
    sent
}

// ---------------------------------------------------------------------------------------
// Running the queries

/// One evaluation of a query: an instant query at a time, or the range query.
#[derive(Clone, Debug)]
enum Eval {
    At(&'static str, i64),
    Range(i64, i64, i64),
}

impl Eval {
    fn describe(&self) -> String {
        match self {
            Eval::At(name, t) => format!("instant @{name} ({})", secs(*t)),
            Eval::Range(from, to, step) => {
                format!("range {}..{} step {}s", secs(*from), secs(*to), step / 1000)
            }
        }
    }

    fn run(&self, server: &Server, expr: &str) -> Result<Outcome, String> {
        match *self {
            Eval::At(_, t) => server.instant(expr, t),
            Eval::Range(from, to, step) => server.range(expr, from, to, step),
        }
    }
}

#[derive(Default)]
struct Tally {
    queries: usize,
    evaluations: usize,
    differing: Vec<String>,
    file_problems: Vec<String>,
    notes: Vec<String>,
    always_empty: Vec<String>,
    by_category: BTreeMap<String, usize>,
}

fn run_query(
    q: &Query,
    evals: &[Eval],
    start_ms: i64,
    end_ms: i64,
    reference: &Server,
    candidate: &Server,
    tally: &mut Tally,
) {
    let expr = match expand(&q.expr, start_ms, end_ms) {
        Ok(e) => e,
        Err(e) => {
            tally.file_problems.push(format!("line {}: {e}", q.line));
            return;
        }
    };
    tally.queries += 1;
    *tally.by_category.entry(q.category.clone()).or_default() += 1;
    let order = if matches!(q.kind, QueryKind::Instant) && compare::is_top_level_sort(&expr) {
        Order::ByValue
    } else {
        Order::Any
    };
    let mut failures = Vec::new();
    let mut all_empty = true;
    for eval in evals {
        tally.evaluations += 1;
        let want = match eval.run(reference, &expr) {
            Ok(w) => w,
            Err(e) => {
                tally.file_problems.push(format!(
                    "line {}: {} — reference answer unusable: {e}",
                    q.line,
                    eval.describe()
                ));
                continue;
            }
        };
        match (&want, q.expect_error) {
            (Outcome::Error { message, .. }, false) => tally.file_problems.push(format!(
                "line {}: {} — expected to succeed, but Prometheus says: {message}\n    {expr}",
                q.line,
                eval.describe()
            )),
            (Outcome::Success { data, .. }, true) => tally.file_problems.push(format!(
                "line {}: {} — expected an error, but Prometheus answers {}\n    {expr}",
                q.line,
                eval.describe(),
                data.type_name()
            )),
            _ => {}
        }
        if let Outcome::Success { data, .. } = &want
            && !data.is_empty()
        {
            all_empty = false;
        }
        let verdict = match eval.run(candidate, &expr) {
            Ok(got) => (compare::compare(&want, &got, order), Some(got)),
            Err(e) => (Verdict::Differ(format!("unusable answer: {e}")), None),
        };
        match verdict {
            (Verdict::Same, _) => {}
            (Verdict::SameWithNote(n), _) => tally.notes.push(format!(
                "line {}: {} {expr}\n    {}",
                q.line,
                eval.describe(),
                n.replace('\n', "\n    ")
            )),
            (Verdict::Differ(d), got) => {
                let mut f = format!(
                    "  {}:\n    {}\n",
                    eval.describe(),
                    d.replace('\n', "\n    ")
                );
                let _ = writeln!(f, "    {}: {}", reference.name, render(&want, 700));
                let got = got.map_or_else(|| "(no answer)".to_string(), |g| render(&g, 700));
                let _ = writeln!(f, "    {}: {got}", candidate.name);
                failures.push(f);
            }
        }
    }
    if all_empty && !q.expect_error {
        tally
            .always_empty
            .push(format!("line {}: {}", q.line, q.expr));
    }
    if !failures.is_empty() {
        let mut s = format!("line {}: {}\n", q.line, q.expr);
        if expr != q.expr {
            let _ = writeln!(s, "  (expanded: {expr})");
        }
        for f in failures {
            s.push_str(&f);
        }
        tally.differing.push(s);
    }
}

// ---------------------------------------------------------------------------------------
// The test

#[test]
fn promql_answers_match_prometheus() {
    let Some(prometheus) = require_peer("prometheus") else {
        return;
    };
    let Some(promtool) = require_peer("promtool") else {
        return;
    };
    let self_check = std::env::var("PROMQL_DIFF_SELF").is_ok_and(|v| !v.is_empty() && v != "0");
    let filter = std::env::var("PROMQL_DIFF_FILTER")
        .ok()
        .filter(|f| !f.is_empty());
    let show_notes = std::env::var("PROMQL_DIFF_NOTES").is_ok_and(|v| !v.is_empty() && v != "0");
    let began = Instant::now();
    let mut phase = Instant::now();
    let mut lap = |what: &str| {
        eprintln!("[promql-diff] {what}: {:.1?}", phase.elapsed());
        phase = Instant::now();
    };

    let queries = parse_queries(QUERIES).unwrap_or_else(|e| panic!("{e}"));
    assert!(queries.len() >= 300, "only {} queries", queries.len());

    // Data.
    let end = (now_ms() - END_BEFORE_NOW).div_euclid(MIN) * MIN;
    let ds = data::generate(end);
    let generated = ds.by_labels();
    let work = TestDir::new();
    let om = work.path().join("data.om");
    std::fs::write(&om, ds.openmetrics()).expect("write OpenMetrics file");
    lap(&format!(
        "generated {} series, {} samples",
        generated.len(),
        ds.sample_count()
    ));

    // Prometheus: blocks from promtool.
    let blocks = work.path().join("blocks");
    let out = Command::new(&promtool)
        .args(["tsdb", "create-blocks-from", "openmetrics", "--quiet"])
        .arg(&om)
        .arg(&blocks)
        .output()
        .expect("run promtool");
    assert!(
        out.status.success(),
        "promtool create-blocks-from openmetrics failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    lap("promtool created blocks");
    let prom = start_prometheus(&prometheus, &blocks);
    let reference = Server {
        name: "prometheus".into(),
        addr: prom.addr,
    };
    assert_same_raw("Prometheus", &generated, &prometheus_raw(&reference, end));
    lap("prometheus started and checked");

    // The candidate.
    let (_peer_b, _lastmile, candidate) = if self_check {
        let b = start_prometheus(&prometheus, &blocks);
        let server = Server {
            name: "prometheus-2".into(),
            addr: b.addr,
        };
        assert_same_raw(
            "the second Prometheus",
            &generated,
            &prometheus_raw(&server, end),
        );
        lap("second prometheus started and checked");
        (Some(b), None, server)
    } else {
        let dir = TestDir::new();
        let lm = Lastmile::start(&dir);
        let sent = load_lastmile(&lm, &ds, 15 * MIN);
        assert_eq!(sent, ds.sample_count());
        lap("lastmile loaded by remote write");
        let held = lm.export(r#"{__name__=~".+"}"#, None, None);
        assert_same_raw("lastmile", &generated, &held);
        lap("lastmile checked");
        let server = Server {
            name: "lastmile".into(),
            addr: lm.addr,
        };
        let probe = server.post_form("/api/v1/query", &format!("query=1&time={}", secs(end)));
        if let Ok(r) = &probe
            && r.status == 404
        {
            panic!(
                "lastmile does not serve /api/v1/query yet (HTTP 404), so none of the {} \
                 queries can match. Run with PROMQL_DIFF_SELF=1 to check the harness and the \
                 queries against a second Prometheus.",
                queries.len()
            );
        }
        (None, Some((lm, dir)), server)
    };

    let start = ds.start_ms;
    if let Some(pause) = std::env::var("PROMQL_DIFF_PAUSE")
        .ok()
        .and_then(|p| p.parse::<u64>().ok())
    {
        eprintln!(
            "[promql-diff] pausing {pause}s: {} at http://{}, {} at http://{}, data from {} to {}",
            reference.name,
            reference.addr,
            candidate.name,
            candidate.addr,
            secs(start),
            secs(end)
        );
        std::thread::sleep(std::time::Duration::from_secs(pause));
    }

    // Queries.
    let instants: Vec<Eval> = INSTANT_TIMES
        .iter()
        .map(|(name, base, off)| {
            let b = match base {
                Base::Start => start,
                Base::End => end,
            };
            Eval::At(name, b + off)
        })
        .collect();
    let mut tally = Tally::default();
    for q in &queries {
        if let Some(f) = &filter
            && !q.expr.contains(f.as_str())
        {
            continue;
        }
        let evals = match q.kind {
            QueryKind::Instant => instants.clone(),
            QueryKind::Range { step_ms } => {
                vec![Eval::Range(start + RANGE_FROM, start + RANGE_TO, step_ms)]
            }
        };
        run_query(q, &evals, start, end, &reference, &candidate, &mut tally);
    }
    lap(&format!(
        "ran {} queries ({} evaluations on each server)",
        tally.queries, tally.evaluations
    ));

    // Report.
    let mut report = String::new();
    let _ = writeln!(
        report,
        "PromQL differential: {} against {} ({} series, {} samples, data {}..{})",
        candidate.name,
        reference.name,
        generated.len(),
        ds.sample_count(),
        secs(start),
        secs(end)
    );
    let _ = writeln!(report, "queries by category: {:?}", tally.by_category);
    if !tally.always_empty.is_empty() {
        let _ = writeln!(
            report,
            "{} queries are empty at every evaluation (intended edge cases?):\n  {}",
            tally.always_empty.len(),
            tally.always_empty.join("\n  ")
        );
    }
    if !tally.notes.is_empty() {
        let _ = writeln!(report, "{} notes (not failures)", tally.notes.len());
        if show_notes {
            let _ = writeln!(report, "  {}", tally.notes.join("\n  "));
        }
    }
    if !tally.file_problems.is_empty() {
        let _ = writeln!(
            report,
            "\n{} problems with the query file (harness, not engine):\n  {}",
            tally.file_problems.len(),
            tally.file_problems.join("\n  ")
        );
    }
    let summary = format!(
        "{}/{} queries differ ({} evaluations); total time {:.1?}",
        tally.differing.len(),
        tally.queries,
        tally.evaluations,
        began.elapsed()
    );
    if !tally.differing.is_empty() {
        let _ = writeln!(report, "\nMISMATCHES:\n");
        for d in &tally.differing {
            let _ = writeln!(report, "{d}");
        }
    }
    let _ = writeln!(report, "{summary}");
    let report_path = Path::new(env!("CARGO_TARGET_TMPDIR")).join("promql-differential-report.txt");
    let _ = std::fs::write(&report_path, &report);
    eprintln!("{report}");
    eprintln!("[promql-diff] report written to {}", report_path.display());
    assert!(
        tally.file_problems.is_empty() && tally.differing.is_empty(),
        "{summary}; {} query-file problems; full report in {}:\n{}",
        tally.file_problems.len(),
        report_path.display(),
        compare::truncate(&report, 200_000)
    );
}

#[test]
fn query_file_parses_and_expands() {
    let queries = parse_queries(QUERIES).unwrap_or_else(|e| panic!("{e}"));
    assert!(queries.len() >= 300, "only {} queries", queries.len());
    for q in &queries {
        expand(&q.expr, 1_000_000, 2_000_000).unwrap_or_else(|e| panic!("line {}: {e}", q.line));
    }
    assert_eq!(
        expand(
            "x @ ${start+1h30m} + y @ ${end-90s} + ${end}",
            1_000,
            10_000_000
        )
        .unwrap(),
        "x @ 5401.000 + y @ 9910.000 + 10000.000"
    );
    assert!(expand("x @ ${end*2}", 0, 0).is_err());
    assert_eq!(
        expand(r#"label_replace(up, "a", "${1}x", "b", "(.*)")"#, 0, 0).unwrap(),
        r#"label_replace(up, "a", "${1}x", "b", "(.*)")"#
    );
    assert_eq!(parse_duration("1h30m").unwrap(), 90 * MIN);
    assert_eq!(parse_duration("500ms").unwrap(), 500);
    assert!(parse_duration("5x").is_err());
    let parsed =
        parse_queries("# c\n\ninstant up\nrange 7m rate(x[5m])\ninstant-error sum(\n").unwrap();
    assert_eq!(parsed.len(), 3);
    assert_eq!(parsed[1].kind, QueryKind::Range { step_ms: 7 * MIN });
    assert!(parsed[2].expect_error && parsed[2].expr == "sum(");
    assert!(parse_queries("ranged 1m up").is_err());
}
