//! The LogQL golden suite: every case of `tests/logql/golden.txt` runs over a fixed
//! corpus and must give exactly the answer written there (see the file's header).

use std::collections::BTreeMap;
use std::time::Duration;

use lastmile_log_store::{Direction, LogStore, LogStoreOptions};
use lastmile_model::{Labels, LogBatch, LogEntry, LogStream};
use lastmile_query::logql::{self, LogqlOptions, LogqlResult};

const T0: i64 = 1_700_000_000;
const NS: i64 = 1_000_000_000;

/// (id, offset seconds, line, metadata) per stream.
type Line = (
    &'static str,
    i64,
    &'static str,
    &'static [(&'static str, &'static str)],
);

fn corpus() -> Vec<(Labels, Vec<Line>)> {
    const NO: &[(&str, &str)] = &[];
    vec![
        (
            Labels::from_pairs([("app", "api"), ("env", "prod")]),
            vec![
                (
                    "A1",
                    0,
                    r#"{"level":"info","msg":"request done","status":200,"duration":"120ms","path":"/users","size":"1.5KB"}"#,
                    NO,
                ),
                (
                    "A2",
                    10,
                    r#"{"level":"error","msg":"db timeout","status":500,"duration":"2.5s","path":"/orders","size":"200B"}"#,
                    NO,
                ),
                (
                    "A3",
                    20,
                    r#"{"level":"info","msg":"request done","status":201,"duration":"45ms","path":"/orders","size":"3KiB"}"#,
                    NO,
                ),
                (
                    "A4",
                    30,
                    r#"{"level":"warn","msg":"slow request","status":200,"duration":"1.2s","path":"/users","user":{"id":"u7","geo":{"region":"eu"}},"tags":["a","b"]}"#,
                    NO,
                ),
                ("A5", 40, "panic: runtime error: index out of range", NO),
                (
                    "A6",
                    50,
                    r#"{"level":"error","msg":"upstream failed","status":503,"duration":"800ms","path":"/pay","app":"billing","ok":false,"retry":null}"#,
                    NO,
                ),
            ],
        ),
        (
            Labels::from_pairs([("app", "web"), ("env", "prod")]),
            vec![
                (
                    "B1",
                    5,
                    "level=info method=GET path=/ status=200 duration=15ms",
                    NO,
                ),
                (
                    "B2",
                    15,
                    "level=info method=POST path=/login status=302 duration=80ms",
                    NO,
                ),
                (
                    "B3",
                    25,
                    r#"level=error method=GET path=/cart status=500 duration=1.5s msg="cart service down""#,
                    NO,
                ),
                (
                    "B4",
                    35,
                    "level=debug method=GET path=/health status=200 duration=1ms",
                    NO,
                ),
                (
                    "B5",
                    45,
                    "level=info method=GET path=/ status=abc duration=20ms",
                    NO,
                ),
                ("B6", 55, r#"level=warn msg="unterminated"#, NO),
            ],
        ),
        (
            Labels::from_pairs([("app", "api"), ("env", "dev")]),
            vec![
                ("C1", 2, "GET /users 200 12ms", NO),
                ("C2", 12, "GET /orders 500 340ms error", NO),
                ("C3", 22, "POST /orders 201 88ms", NO),
                ("C4", 32, "GET /users 200 9ms", NO),
            ],
        ),
        (
            Labels::from_pairs([("app", "worker"), ("env", "prod")]),
            vec![
                (
                    "D1",
                    8,
                    "job started",
                    &[
                        ("queue", "emails"),
                        ("trace_id", "4bf92f3577b34da6a3ce929d0e0e4736"),
                    ],
                ),
                ("D2", 18, "job failed: smtp 421", &[("queue", "emails")]),
                ("D3", 28, "job started", &[("queue", "sms")]),
            ],
        ),
    ]
}

#[derive(Debug, Default)]
struct Case {
    name: String,
    query: String,
    range: Option<(i64, i64, i64)>,
    instant: Option<i64>,
    direction: Option<Direction>,
    limit: Option<usize>,
    expect: Vec<String>,
    line: usize,
}

fn parse_cases(text: &str) -> Vec<Case> {
    let mut out = Vec::new();
    let mut cur: Option<Case> = None;
    let mut in_expect = false;
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim_end();
        if let Some(name) = line.strip_prefix("## ") {
            if let Some(c) = cur.take() {
                out.push(c);
            }
            cur = Some(Case {
                name: name.to_string(),
                line: i + 1,
                ..Default::default()
            });
            in_expect = false;
            continue;
        }
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let c = cur
            .as_mut()
            .unwrap_or_else(|| panic!("line {}: text before the first case", i + 1));
        if in_expect {
            c.expect.push(line.trim().to_string());
            continue;
        }
        let (key, value) = line
            .split_once(':')
            .unwrap_or_else(|| panic!("line {}: expected key: value", i + 1));
        let value = value.trim();
        let nums =
            |v: &str| -> Vec<i64> { v.split_whitespace().map(|n| n.parse().unwrap()).collect() };
        match key {
            "query" => c.query = value.to_string(),
            "range" => {
                let n = nums(value);
                c.range = Some((n[0], n[1], n[2]));
            }
            "instant" => c.instant = Some(value.parse().unwrap()),
            "direction" => {
                c.direction = Some(match value {
                    "forward" => Direction::Forward,
                    "backward" => Direction::Backward,
                    other => panic!("line {}: direction {other}", i + 1),
                })
            }
            "limit" => c.limit = Some(value.parse().unwrap()),
            "expect" => in_expect = true,
            other => panic!("line {}: unknown key {other}", i + 1),
        }
    }
    if let Some(c) = cur {
        out.push(c);
    }
    out
}

fn labels_of(text: &str) -> Labels {
    Labels::from_pairs(
        lastmile_receivers::loki::parse_labels(text).unwrap_or_else(|e| panic!("{e}")),
    )
}

/// Splits `{labels}: rest` (labels may contain ':' inside quotes).
fn split_labels(s: &str) -> (Labels, &str) {
    let close = s.find("}:").unwrap_or_else(|| panic!("no '}}:' in {s:?}"));
    (labels_of(&s[..=close]), s[close + 2..].trim())
}

/// Tokens of an expected line list: ids (A1) and "quoted literals".
fn line_tokens(s: &str, lines: &BTreeMap<&str, &str>) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = s.trim();
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('"') {
            let end = r.find('"').expect("closing quote");
            out.push(r[..end].to_string());
            rest = r[end + 1..].trim_start();
        } else {
            let end = rest.find(' ').unwrap_or(rest.len());
            let id = &rest[..end];
            out.push(
                lines
                    .get(id)
                    .unwrap_or_else(|| panic!("unknown line id {id}"))
                    .to_string(),
            );
            rest = rest[end..].trim_start();
        }
    }
    out
}

fn render(r: &LogqlResult) -> Vec<String> {
    let mut out: Vec<String> = match r {
        LogqlResult::Streams(s) => s
            .iter()
            .map(|s| {
                format!(
                    "stream {:?}: {:?}",
                    s.labels,
                    s.entries.iter().map(|e| &e.1).collect::<Vec<_>>()
                )
            })
            .collect(),
        LogqlResult::Matrix(m) => m
            .iter()
            .map(|s| {
                format!(
                    "series {:?}: {:?}",
                    s.labels,
                    s.points
                        .iter()
                        .map(|(t, v)| ((t / NS) - T0, *v))
                        .collect::<Vec<_>>()
                )
            })
            .collect(),
        LogqlResult::Vector(v) => v
            .iter()
            .map(|(l, _, v)| format!("vector {l:?}: {v}"))
            .collect(),
    };
    out.sort();
    out
}

#[test]
fn logql_golden_cases() {
    let dir = tempfile::tempdir().unwrap();
    let store = LogStore::open(
        dir.path(),
        LogStoreOptions {
            commit_interval: Duration::from_secs(3600),
            writer_memory_bytes: 15 << 20,
            ..Default::default()
        },
    )
    .unwrap();
    let mut by_id = BTreeMap::new();
    let mut batch = LogBatch::default();
    for (labels, lines) in corpus() {
        let mut entries = Vec::new();
        for (id, off, text, md) in lines {
            by_id.insert(id, text);
            let mut e = LogEntry::new((T0 + off) * NS, text);
            e.metadata = md
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            entries.push(e);
        }
        batch.streams.push(LogStream { labels, entries });
    }
    store.append(&batch).unwrap();
    // Half the cases read the committed index, half the in-memory head: both must agree.
    let cases = parse_cases(include_str!("logql/golden.txt"));
    assert!(cases.len() >= 60, "only {} cases", cases.len());
    let opts = LogqlOptions::default();
    let mut failures = Vec::new();
    for (i, c) in cases.iter().enumerate() {
        if i == cases.len() / 2 {
            store.commit().unwrap();
        }
        let got = match (c.range, c.instant) {
            (Some((s, e, step)), None) => logql::range_query(
                &store,
                &c.query,
                (T0 + s) * NS,
                (T0 + e) * NS,
                step * NS,
                c.limit.unwrap_or(100),
                c.direction.unwrap_or(Direction::Backward),
                &opts,
            ),
            (None, Some(t)) => logql::instant_query(&store, &c.query, (T0 + t) * NS, &opts),
            _ => panic!("case at line {}: give range or instant", c.line),
        };
        let fail = |why: String| {
            format!(
                "line {} ({})\n  query: {}\n  {why}",
                c.line, c.name, c.query
            )
        };
        if let Some(err) = c.expect.iter().find_map(|e| e.strip_prefix("error: ")) {
            match got {
                Err(e) if e.to_string().contains(err) => {}
                Err(e) => failures.push(fail(format!(
                    "want error containing {err:?}, got error {e}"
                ))),
                Ok(r) => failures.push(fail(format!(
                    "want error containing {err:?}, got {:?}",
                    render(&r)
                ))),
            }
            continue;
        }
        let got = match got {
            Ok(r) => r,
            Err(e) => {
                failures.push(fail(format!("unexpected error: {e}")));
                continue;
            }
        };
        let mut want: Vec<String> = Vec::new();
        for e in &c.expect {
            if e == "empty" {
                continue;
            }
            let (kind, rest) = e.split_once(' ').unwrap();
            let (labels, body) = split_labels(rest);
            want.push(match kind {
                "stream" => format!(
                    "stream {labels:?}: {:?}",
                    line_tokens(body, &by_id).iter().collect::<Vec<_>>()
                ),
                "series" => {
                    let pts: Vec<(i64, f64)> = body
                        .split_whitespace()
                        .map(|p| {
                            let (t, v) = p.split_once('=').unwrap();
                            (t.parse().unwrap(), v.parse().unwrap())
                        })
                        .collect();
                    format!("series {labels:?}: {pts:?}")
                }
                "vector" => format!("vector {labels:?}: {}", body.parse::<f64>().unwrap()),
                other => panic!("line {}: unknown expectation {other}", c.line),
            });
        }
        want.sort();
        let have = render(&got);
        if have != want {
            failures.push(fail(format!(
                "want:\n    {}\n  got:\n    {}",
                want.join("\n    "),
                have.join("\n    ")
            )));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    eprintln!("{} LogQL golden cases passed", cases.len());
}
