//! A Go service built with Debian's golang-go (standard library only; the source is
//! `tests/fixtures/go-service`) continues its callers' traces, logs JSON lines carrying the
//! trace id as an `X-Trace-ID` UUID and as a W3C `traceparent` naming a span, and sends
//! its spans (OTLP/HTTP JSON) and lines (Loki push) to lastmile. `correlate` must join
//! each trace's spans with exactly its lines, whichever spelling a line used, and lead
//! back from a line to its trace.

mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use common::*;

struct Service {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_service(bin: &Path, lastmile: &Lastmile) -> Service {
    let mut child = Command::new(bin)
        .args(["-lastmile", &format!("http://{}", lastmile.addr)])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start the Go service");
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    out.read_line(&mut first)
        .expect("read the Go service's stdout");
    let addr = first
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line from the Go service: {first:?}"))
        .parse()
        .unwrap();
    // Its log lines keep coming on stdout: drain them so it never blocks on a full pipe.
    std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
    Service { child, addr }
}

/// What one `GET /checkout` reports it did.
struct Handled {
    trace_id: String,
    server_span: String,
    db_span: String,
    lines: Vec<String>,
}

fn checkout(svc: &Service, order: u32, headers: &[(&str, &str)]) -> Handled {
    let r = http_request(
        svc.addr,
        "GET",
        &format!("/checkout?order={order}"),
        headers,
        b"",
        Framing::ContentLength,
    )
    .expect("request to the Go service");
    assert_eq!(r.status, 200, "Go service: {}", r.text());
    let v = r.json();
    let s = |k: &str| v[k].as_str().unwrap().to_owned();
    Handled {
        trace_id: s("trace_id"),
        server_span: s("server_span_id"),
        db_span: s("db_span_id"),
        lines: v["lines"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l.as_str().unwrap().to_owned())
            .collect(),
    }
}

fn uuid(t: &str) -> String {
    format!(
        "{}-{}-{}-{}-{}",
        &t[0..8],
        &t[8..12],
        &t[12..16],
        &t[16..20],
        &t[20..32]
    )
}

/// The trace's correlation must hold its two spans and exactly its two lines, in time
/// order, the traceparent line attached to the database span.
fn check_correlation(server: &Lastmile, h: &Handled, parent: Option<&str>) {
    let r = server.get(&format!("/api/v1/correlate?trace_id={}", h.trace_id));
    assert_eq!(r.status, 200, "{}", r.text());
    let c = r.json();
    let d = &c["data"];
    assert_eq!(d["traceId"], h.trace_id.as_str(), "{c}");
    let mut spans: Vec<(String, String, String)> = d["spans"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap().to_owned(),
                s["spanId"].as_str().unwrap().to_owned(),
                s["parentSpanId"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    spans.sort();
    assert_eq!(
        spans,
        [
            (
                "GET /checkout".to_owned(),
                h.server_span.clone(),
                parent.unwrap_or_default().to_owned()
            ),
            (
                "INSERT orders".to_owned(),
                h.db_span.clone(),
                h.server_span.clone()
            ),
        ],
        "{c}"
    );
    let logs: Vec<(String, String)> = d["logs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["line"].as_str().unwrap().to_owned(),
                l["spanId"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        logs,
        [
            (h.lines[0].clone(), String::new()),
            (h.lines[1].clone(), h.db_span.clone()),
        ],
        "the trace's lines in time order, the traceparent one on its span: {c}"
    );
    for l in d["logs"].as_array().unwrap() {
        assert_eq!(l["labels"]["service_name"], "checkout-go", "{l}");
    }
}

#[test]
fn go_service_traces_and_json_logs_are_joined_by_correlate() {
    let Some(go) = require_peer("go") else {
        return;
    };
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/go-service");
    let bin = go_build(&go, &src, "go-service");
    let dir = TestDir::new();
    let server = Lastmile::start(&dir);
    let svc = start_service(&bin, &server);

    // A caller with a W3C trace context, one with an X-Trace-ID UUID, one with nothing.
    let caller_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let caller_span = "00f067aa0ba902b7";
    let traceparent = format!("00-{caller_trace}-{caller_span}-01");
    let w3c = checkout(&svc, 1, &[("traceparent", &traceparent)]);
    assert_eq!(w3c.trace_id, caller_trace);
    let x_trace = "a3f1c2d4e5b6a7980112233445566778";
    let by_uuid = checkout(&svc, 2, &[("X-Trace-ID", &uuid(x_trace))]);
    assert_eq!(by_uuid.trace_id, x_trace);
    let fresh = checkout(&svc, 13, &[]);
    assert_eq!(fresh.lines.len(), 2);
    assert!(
        fresh.lines[0].contains(&uuid(&fresh.trace_id)),
        "{}",
        fresh.lines[0]
    );
    assert!(
        fresh.lines[1].contains(&format!("00-{}-{}-01", fresh.trace_id, fresh.db_span)),
        "{}",
        fresh.lines[1]
    );

    check_correlation(&server, &w3c, Some(caller_span));
    check_correlation(&server, &by_uuid, None);
    check_correlation(&server, &fresh, None);

    // The failed order: the error status is on the span, the error line with it.
    let c = server
        .get(&format!("/api/v1/correlate?trace_id={}", fresh.trace_id))
        .json();
    assert_eq!(
        c["data"]["errorSpanIds"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|v| v.as_str())
            .filter(|s| *s == fresh.db_span)
            .count(),
        1,
        "{c}"
    );

    // The way back: from a log line, as shown, to its trace.
    for h in [&w3c, &by_uuid, &fresh] {
        for line in &h.lines {
            let r = server.get(&format!("/api/v1/correlate?text={}", enc(line)));
            assert_eq!(r.status, 200, "{line}: {}", r.text());
            assert_eq!(r.json()["data"]["traceId"], h.trace_id.as_str(), "{line}");
        }
        // And the Tempo API takes the id as the logs spelled it.
        let r = server.get(&format!("/api/traces/{}", uuid(&h.trace_id)));
        assert_eq!(r.status, 200, "{}", r.text());
        assert!(r.text().contains(&h.db_span), "{}", r.text());
    }

    // LogQL sees the same lines, with the ids lastmile extracted usable in queries.
    let got = log_lines(
        &server,
        r#"{service_name="checkout-go"} |= "deadlock" | json | level="error""#,
    );
    let lines: Vec<&str> = got.iter().map(|(_, l)| l.as_str()).collect();
    assert_eq!(lines, [fresh.lines[1].as_str()], "{got:?}");
}
