//! Interop with a real Prometheus (Debian's package): Prometheus scrapes a fixture target
//! that serves OpenMetrics (counters with exemplars, a histogram, gauges, special float
//! values) and remote-writes everything to lastmile. Once lastmile has caught up to a
//! cut-off time T taken from Prometheus, both must hold the same series, the same raw
//! samples up to T bit for bit, the same exemplars and the same metadata.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use common::*;
use lastmile_model::format_value;
use serde_json::Value;

/// The scrape target: a thread answering every request with the next scrape's exposition.
struct Fixture {
    addr: SocketAddr,
    scrapes: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// A trace id that differs on every scrape, so every scrape brings new exemplars.
fn trace_id(n: u64, salt: u64) -> String {
    format!(
        "{:016x}{:016x}",
        n.wrapping_mul(0x9e37_79b9_7f4a_7c15),
        n ^ salt
    )
}

/// The exposition for scrape number `n` (1, 2, ...): every value changes between scrapes.
fn exposition(n: u64) -> String {
    let nf = n as f64;
    let mut s = String::new();
    let _ = writeln!(s, "# TYPE fixture_http_requests counter");
    let _ = writeln!(
        s,
        "# HELP fixture_http_requests Requests handled by the fixture."
    );
    let _ = writeln!(
        s,
        "fixture_http_requests_total{{code=\"200\",method=\"GET\"}} {} # {{trace_id=\"{}\"}} 0.25",
        10 * n,
        trace_id(n, 1)
    );
    let _ = writeln!(
        s,
        "fixture_http_requests_total{{code=\"500\",method=\"POST\"}} {}",
        n / 3
    );
    let _ = writeln!(s, "# TYPE fixture_request_duration_seconds histogram");
    let _ = writeln!(
        s,
        "# HELP fixture_request_duration_seconds Latency of fixture requests."
    );
    let _ = writeln!(s, "# UNIT fixture_request_duration_seconds seconds");
    let (a, b, c) = (n, 2 * n + n % 3, 3 * n + n % 2);
    let _ = writeln!(
        s,
        "fixture_request_duration_seconds_bucket{{le=\"0.05\"}} {a} # {{trace_id=\"{}\",span_id=\"{:016x}\"}} 0.042",
        trace_id(n, 2),
        n
    );
    let _ = writeln!(
        s,
        "fixture_request_duration_seconds_bucket{{le=\"0.25\"}} {b}"
    );
    let _ = writeln!(
        s,
        "fixture_request_duration_seconds_bucket{{le=\"1.0\"}} {c}"
    );
    let _ = writeln!(
        s,
        "fixture_request_duration_seconds_bucket{{le=\"+Inf\"}} {}",
        c + 1
    );
    let _ = writeln!(
        s,
        "fixture_request_duration_seconds_sum {}",
        format_value(0.1 * nf + 1.0 / 3.0)
    );
    let _ = writeln!(s, "fixture_request_duration_seconds_count {}", c + 1);
    let _ = writeln!(s, "# TYPE fixture_queue_depth gauge");
    let _ = writeln!(s, "# HELP fixture_queue_depth Items waiting, by queue.");
    let _ = writeln!(
        s,
        "fixture_queue_depth{{queue=\"email\"}} {}",
        format_value((n % 7) as f64 * 1.5)
    );
    let _ = writeln!(
        s,
        "fixture_queue_depth{{queue=\"sms\"}} {}",
        format_value((nf * 0.7).sin() * 1e-3)
    );
    let _ = writeln!(s, "# TYPE fixture_temperature_celsius gauge");
    let _ = writeln!(s, "# UNIT fixture_temperature_celsius celsius");
    let _ = writeln!(
        s,
        "# HELP fixture_temperature_celsius Cycles through special float values."
    );
    // No -0.0: Prometheus's protobuf code omits a double field equal to 0 (and -0.0 == 0),
    // so its remote write turns -0.0 into 0.0 before lastmile sees it.
    let special = [
        21.5 + nf,
        f64::NAN,
        f64::INFINITY,
        f64::NEG_INFINITY,
        1e-300,
        1.7976931348623157e308,
        5e-324,
    ];
    let _ = writeln!(
        s,
        "fixture_temperature_celsius {}",
        format_value(special[(n % special.len() as u64) as usize])
    );
    s.push_str("# EOF\n");
    s
}

impl Fixture {
    fn start() -> Fixture {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind fixture");
        let addr = listener.local_addr().unwrap();
        let scrapes = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (s2, stop2) = (scrapes.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(conn) = conn else { continue };
                let _ = serve_one(conn, &s2);
            }
        });
        Fixture {
            addr,
            scrapes,
            stop,
            thread: Some(thread),
        }
    }
}

fn serve_one(mut conn: TcpStream, scrapes: &AtomicU64) -> std::io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" || line == "\n" {
            break;
        }
    }
    let (status, content_type, body) = if request_line.starts_with("GET /metrics ") {
        let n = scrapes.fetch_add(1, Ordering::SeqCst) + 1;
        (
            "200 OK",
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            exposition(n),
        )
    } else {
        ("404 Not Found", "text/plain", "not found\n".to_string())
    };
    write!(
        conn,
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    conn.flush()
}

impl Drop for Fixture {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

type SeriesSamples = BTreeMap<Labels, Vec<(i64, f64)>>;

/// A Prometheus matrix result as series → raw samples.
fn matrix(data: &Value) -> SeriesSamples {
    assert_eq!(data["resultType"], "matrix", "{data}");
    let mut out = BTreeMap::new();
    for r in data["result"].as_array().expect("result array") {
        let samples = r["values"]
            .as_array()
            .expect("values")
            .iter()
            .map(|p| {
                (
                    seconds_to_ms(&p[0]),
                    parse_value(p[1].as_str().expect("value string")),
                )
            })
            .collect();
        out.insert(labels_of(&r["metric"]), samples);
    }
    out
}

/// Exemplars as comparable tuples: (series, exemplar labels, timestamp ms, value bits).
type ExemplarSet = BTreeSet<(Labels, Labels, i64, u64)>;

fn exemplars(data: &Value) -> ExemplarSet {
    let mut out = BTreeSet::new();
    for s in data
        .as_array()
        .unwrap_or_else(|| panic!("exemplar data is not an array: {data}"))
    {
        let series = labels_of(&s["seriesLabels"]);
        for e in s["exemplars"].as_array().expect("exemplars array") {
            let v = parse_value(
                e["value"]
                    .as_str()
                    .unwrap_or_else(|| panic!("exemplar value not a string: {e}")),
            );
            out.insert((
                series.clone(),
                labels_of(&e["labels"]),
                seconds_to_ms(&e["timestamp"]),
                v.to_bits(),
            ));
        }
    }
    out
}

fn describe_diff(want: &SeriesSamples, got: &SeriesSamples) -> String {
    let mut out = String::new();
    for (l, w) in want {
        match got.get(l) {
            None => {
                let _ = writeln!(out, "missing in lastmile: {l:?}");
            }
            Some(g) => {
                let same = w.len() == g.len()
                    && w.iter()
                        .zip(g)
                        .all(|(a, b)| a.0 == b.0 && same_value(a.1, b.1));
                if !same {
                    let _ = writeln!(
                        out,
                        "samples differ for {l:?}:\n  prometheus: {w:?}\n  lastmile:   {g:?}"
                    );
                }
            }
        }
    }
    for l in got.keys().filter(|l| !want.contains_key(*l)) {
        let _ = writeln!(out, "only in lastmile: {l:?}");
    }
    out
}

#[test]
fn prometheus_remote_write_matches_prometheus() {
    let Some(prometheus) = require_peer("prometheus") else {
        return;
    };
    let dir = TestDir::new();
    let lastmile = Lastmile::start(&dir);
    let fixture = Fixture::start();
    let config = format!(
        r#"global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: fixture
    static_configs:
      - targets: ["{target}"]
remote_write:
  - url: "http://{lastmile}/api/v1/write"
    remote_timeout: 10s
    send_exemplars: true
    queue_config:
      batch_send_deadline: 500ms
      min_backoff: 50ms
      max_backoff: 1s
    metadata_config:
      send: true
      send_interval: 1s
"#,
        target = fixture.addr,
        lastmile = lastmile.addr
    );
    let prom = Peer::prometheus(&prometheus, &config, &["--enable-feature=exemplar-storage"]);
    let fixture_sel = r#"{job="fixture"}"#;

    // At least 10 successful scrapes in Prometheus; the cut-off T is the newest scrape.
    // (A scrape that timed out on a loaded machine is fine: both sides see its up == 0
    // and its staleness markers alike.)
    let t_cut = wait_for(
        "10 successful scrapes in Prometheus",
        Duration::from_secs(120),
        |last| {
            let data = prom.api(&format!(
                "/api/v1/query?query={}",
                enc(r#"up{job="fixture"}[10m]"#)
            ));
            let up = matrix(&data);
            let samples = up.values().next().cloned().unwrap_or_default();
            let ok = samples.iter().filter(|&&(_, v)| v == 1.0).count();
            *last = format!(
                "{ok} successful scrapes ({} served): up = {samples:?}",
                fixture.scrapes.load(Ordering::SeqCst)
            );
            (ok >= 10).then(|| samples.last().unwrap().0)
        },
    );
    let window_start = t_cut - 10 * 60 * 1000 + 1;
    let want = matrix(&prom.api(&format!(
        "/api/v1/query?query={}&time={}",
        enc(&format!("{fixture_sel}[10m]")),
        secs(t_cut)
    )));
    let names: BTreeSet<&str> = want
        .keys()
        .filter_map(|l| l.get("__name__").map(String::as_str))
        .collect();
    for name in [
        "up",
        "scrape_duration_seconds",
        "fixture_http_requests_total",
        "fixture_request_duration_seconds_bucket",
        "fixture_request_duration_seconds_sum",
        "fixture_request_duration_seconds_count",
        "fixture_queue_depth",
        "fixture_temperature_celsius",
    ] {
        assert!(
            names.contains(name),
            "Prometheus has no {name}; it has {names:?}"
        );
    }
    for samples in want.values() {
        assert!(
            samples
                .iter()
                .all(|&(t, _)| t >= window_start && t <= t_cut),
            "sample outside the 10m window"
        );
    }

    // lastmile catches up: for every series, the newest sample up to T is there.
    let got = wait_for(
        "lastmile to catch up with Prometheus",
        Duration::from_secs(90),
        |last| {
            let got = lastmile.export(fixture_sel, Some(window_start), Some(t_cut));
            let behind: Vec<String> = want
                .iter()
                .filter(|(l, w)| {
                    got.get(*l).and_then(|g| g.last()).map(|s| s.0) < w.last().map(|s| s.0)
                })
                .map(|(l, _)| format!("{l:?}"))
                .collect();
            *last = format!(
                "{} of {} series behind, e.g. {:?}",
                behind.len(),
                want.len(),
                behind.first()
            );
            behind.is_empty().then_some(got)
        },
    );

    // Same series.
    let prom_series: BTreeSet<Labels> =
        labels_list(&prom.api(&format!("/api/v1/series?match[]={}", enc(fixture_sel))))
            .into_iter()
            .collect();
    let lm_series: BTreeSet<Labels> = lastmile.series(fixture_sel).into_iter().collect();
    assert_eq!(
        prom_series,
        lm_series,
        "series differ; only in Prometheus: {:?}; only in lastmile: {:?}",
        prom_series.difference(&lm_series).collect::<Vec<_>>(),
        lm_series.difference(&prom_series).collect::<Vec<_>>()
    );
    assert_eq!(
        prom_series,
        want.keys().cloned().collect(),
        "Prometheus's series endpoint and raw query disagree"
    );

    // Same raw samples up to T, bit for bit (NaN as NaN).
    let diff = describe_diff(&want, &got);
    assert!(
        diff.is_empty(),
        "raw samples up to T={t_cut} differ:\n{diff}"
    );
    let temperature = want
        .iter()
        .find(|(l, _)| l.get("__name__").map(String::as_str) == Some("fixture_temperature_celsius"))
        .map(|(_, s)| s)
        .unwrap();
    assert!(
        temperature.iter().any(|s| s.1.is_nan())
            && temperature.iter().any(|s| s.1 == f64::INFINITY),
        "the special values were not compared: {temperature:?}"
    );

    // Same exemplars up to T.
    let ex_query = format!(
        "/api/v1/query_exemplars?query={}&start={}&end={}",
        enc(fixture_sel),
        secs(window_start),
        secs(t_cut)
    );
    let prom_ex = exemplars(&prom.api(&ex_query));
    assert!(
        prom_ex.len() >= 10,
        "Prometheus stored only {} exemplars: {prom_ex:?}",
        prom_ex.len()
    );
    let lm_ex = wait_for(
        "lastmile to have Prometheus's exemplars",
        Duration::from_secs(60),
        |last| {
            let r = lastmile.get(&ex_query);
            assert_eq!(r.status, 200, "{}", r.text());
            let lm_ex = exemplars(&r.json()["data"]);
            *last = format!(
                "{} of {} exemplars; missing e.g. {:?}; extra e.g. {:?}",
                lm_ex.len(),
                prom_ex.len(),
                prom_ex.difference(&lm_ex).next(),
                lm_ex.difference(&prom_ex).next()
            );
            (lm_ex == prom_ex).then_some(lm_ex)
        },
    );
    assert!(
        lm_ex.iter().any(
            |(s, e, _, _)| s["__name__"] == "fixture_request_duration_seconds_bucket"
                && e.contains_key("span_id")
        ),
        "no histogram exemplar: {lm_ex:?}"
    );

    // Same metadata for every metric family Prometheus knows from the fixture.
    let prom_md = prom.api("/api/v1/metadata");
    let prom_md = prom_md.as_object().expect("metadata object");
    for family in [
        "fixture_http_requests",
        "fixture_request_duration_seconds",
        "fixture_queue_depth",
        "fixture_temperature_celsius",
    ] {
        assert!(
            prom_md.contains_key(family),
            "Prometheus has no metadata for {family}: {prom_md:?}"
        );
    }
    wait_for(
        "lastmile to have Prometheus's metadata",
        Duration::from_secs(60),
        |last| {
            let r = lastmile.get("/api/v1/metadata");
            assert_eq!(r.status, 200, "{}", r.text());
            let lm_md = r.json()["data"].clone();
            let mut missing = Vec::new();
            for (family, entries) in prom_md {
                let want = &entries[0];
                let have = lm_md[family].as_array().cloned().unwrap_or_default();
                let found = have.iter().any(|h| {
                    h["type"] == want["type"]
                        && h["help"] == want["help"]
                        && h["unit"] == want["unit"]
                });
                if !found {
                    missing.push(format!("{family}: want {want}, have {have:?}"));
                }
            }
            *last = missing.join("; ");
            missing.is_empty().then_some(())
        },
    );

    eprintln!(
        "compared with Prometheus up to T={t_cut}: {} series, {} samples, {} exemplars, {} metadata families",
        want.len(),
        want.values().map(Vec::len).sum::<usize>(),
        lm_ex.len(),
        prom_md.len()
    );
    drop(prom);
    drop(fixture);
    assert!(
        lastmile
            .try_get("/-/healthy")
            .is_ok_and(|r| r.status == 200)
    );
}
