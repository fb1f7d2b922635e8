//! The trace side of `lastmile serve`, through its HTTP API: Tempo's search and trace by
//! id over the demo fleet's traces, `correlate`, span metrics, and spans surviving a
//! restart after the head was written as a block.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::*;
use serde_json::Value;

fn search(m: &Lastmile, query: &str) -> Vec<Value> {
    let r = m.get(&format!("/api/search?{query}"));
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["traces"].as_array().cloned().unwrap_or_default()
}

/// Spans of a Tempo v1 trace answer: (service, span id, parent span id, name).
fn spans_of(trace: &Value) -> Vec<(String, String, String, String)> {
    let mut out = Vec::new();
    for batch in trace["batches"].as_array().unwrap() {
        let service = batch["resource"]["attributes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["key"] == "service.name")
            .map(|a| a["value"]["stringValue"].as_str().unwrap().to_owned())
            .unwrap();
        for scope in batch["scopeSpans"].as_array().unwrap() {
            for s in scope["spans"].as_array().unwrap() {
                out.push((
                    service.clone(),
                    s["spanId"].as_str().unwrap().to_owned(),
                    s["parentSpanId"].as_str().unwrap_or("").to_owned(),
                    s["name"].as_str().unwrap().to_owned(),
                ));
            }
        }
    }
    out
}

#[test]
fn demo_traces_are_searchable_readable_and_correlated() {
    let dir = TestDir::new();
    let m = Lastmile::start_with(
        &dir,
        &ServeOptions {
            demo: true,
            ..Default::default()
        },
    );

    // Failed checkouts: every hit has an error span and involves payments.
    let failed = search(&m, "status=error&service=payments&limit=50");
    assert!(!failed.is_empty(), "the demo's payments fail some charges");
    for t in &failed {
        assert!(t["errorCount"].as_u64().unwrap() >= 1);
        let services: BTreeSet<&str> = t["services"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["name"].as_str().unwrap())
            .collect();
        assert!(services.contains("payments"), "{t}");
    }

    // Slow checkouts (checkout is slow two minutes in ten: the last hour has some).
    let slow = search(&m, "service=checkout&minDuration=500ms&limit=5");
    assert!(!slow.is_empty(), "no slow checkout in the demo's last hour");
    let t = &slow[0];
    assert!(t["durationMs"].as_u64().unwrap() >= 500);
    let id = t["traceID"].as_str().unwrap();

    // Trace by id: all spans, one root, parents resolve, span count as the search said.
    let r = m.get(&format!("/api/traces/{id}"));
    assert_eq!(r.status, 200, "{}", r.text());
    let spans = spans_of(&r.json());
    assert_eq!(spans.len() as u64, t["spanCount"].as_u64().unwrap());
    let ids: BTreeSet<&str> = spans.iter().map(|s| s.1.as_str()).collect();
    assert_eq!(spans.iter().filter(|s| s.2.is_empty()).count(), 1);
    assert!(
        spans
            .iter()
            .all(|s| s.2.is_empty() || ids.contains(s.2.as_str()))
    );
    // The same trace by a UUID spelling of its id, and through the v2 shape.
    let uuid = format!(
        "{}-{}-{}-{}-{}",
        &id[..8],
        &id[8..12],
        &id[12..16],
        &id[16..20],
        &id[20..]
    );
    let v2 = m.get(&format!("/api/v2/traces/{uuid}"));
    assert_eq!(v2.status, 200);
    assert_eq!(
        v2.json()["trace"]["resourceSpans"]
            .as_array()
            .unwrap()
            .len(),
        r.json()["batches"].as_array().unwrap().len()
    );

    // Correlate: the slow database call is where the time went, and on the critical path.
    let c = m.get(&format!("/api/v1/correlate?trace_id={id}"));
    assert_eq!(c.status, 200, "{}", c.text());
    let d = &c.json()["data"];
    assert_eq!(d["traceId"], id);
    assert_eq!(d["spans"].as_array().unwrap().len(), spans.len());
    let slowest = d["slowestSpanId"].as_str().unwrap();
    let slow_span = d["spans"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["spanId"] == slowest)
        .unwrap();
    assert_eq!(slow_span["name"], "UPDATE orders");
    assert_eq!(slow_span["criticalPath"], true);
    let root = d["spans"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["depth"] == 0)
        .unwrap();
    assert_eq!(root["criticalPath"], true);
    // RED metrics of each service the trace touched, from span metrics.
    let services: BTreeSet<&str> = d["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["service"].as_str().unwrap())
        .collect();
    let touched: BTreeSet<&str> = spans.iter().map(|s| s.0.as_str()).collect();
    assert_eq!(services, touched);
    for s in d["services"].as_array().unwrap() {
        assert!(!s["rate"].as_array().unwrap().is_empty(), "no rate for {s}");
    }
    // The way back from a log line as shown.
    let line = format!(r#"{{"level":"warn","X-Trace-ID":"{uuid}"}}"#);
    let back = m.get(&format!("/api/v1/correlate?text={}", enc(&line)));
    assert_eq!(back.status, 200);
    assert_eq!(back.json()["data"]["traceId"], id);

    // Span metrics answer PromQL, per service.
    let q = m.get(&format!(
        "/api/v1/query?query={}",
        enc("sum by (service) (rate(traces_spanmetrics_calls_total[5m]))")
    ));
    let result = q.json()["data"]["result"].as_array().cloned().unwrap();
    assert_eq!(result.len(), 5, "{result:?}");

    // Tag values for Grafana's search form.
    let v = m.get("/api/search/tag/service.name/values").json();
    assert_eq!(v["tagValues"].as_array().unwrap().len(), 5);
}

#[test]
fn bad_trace_requests_get_precise_errors() {
    let dir = TestDir::new();
    let m = Lastmile::start(&dir);
    let r = m.get("/api/traces/not-a-trace-id");
    assert_eq!(r.status, 400);
    assert!(r.text().contains("invalid trace id"), "{}", r.text());
    let r = m.get("/api/traces/4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(r.status, 404);
    assert!(r.text().contains("trace not found"));
    for (q, want) in [
        ("minDuration=fast", "invalid minDuration"),
        ("limit=-1", "invalid limit"),
        ("status=maybe", "invalid status"),
        ("tags=novalue", "invalid tags"),
        ("start=yesterday", "invalid start"),
        ("q=%7B%20.a%3D1%20%7D", "TraceQL is not supported"),
    ] {
        let r = m.get(&format!("/api/search?{q}"));
        assert_eq!(r.status, 400, "{q}");
        assert!(r.text().contains(want), "{q}: {}", r.text());
    }
    let r = m.get("/api/v1/correlate?trace_id=xyz");
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["errorType"], "bad_data");
    let r = m.get("/api/v1/correlate?trace_id=4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(r.status, 404);
    let r = m.get("/api/v1/correlate?text=no%20ids%20here");
    assert_eq!(r.status, 400);
}

#[test]
fn spans_survive_a_restart_after_the_head_became_a_block() {
    let dir = TestDir::new();
    // A tiny head, so the demo's hour of spans is written as blocks at the first upkeep.
    let config = "traces:\n  max_head_spans: 1000\n";
    let opts = ServeOptions {
        demo: true,
        config: Some(config.into()),
        ..Default::default()
    };
    let (ids, total) = {
        let mut m = Lastmile::start_with(&dir, &opts);
        wait_for("span blocks", START_TIMEOUT, |last| {
            let n = m.metric("lastmile_traces_blocks");
            *last = format!("{n} blocks");
            (n >= 1.0).then_some(())
        });
        let all = search(&m, "limit=10000&end=4102444800");
        let ids: Vec<String> = all
            .iter()
            .take(20)
            .map(|t| t["traceID"].as_str().unwrap().to_owned())
            .collect();
        m.kill9();
        (ids, all.len())
    };
    assert!(total > 1000, "{total} traces");
    // Restart without the demo: what was stored is all there is.
    let m = Lastmile::start_with(
        &dir,
        &ServeOptions {
            config: Some(config.into()),
            ..Default::default()
        },
    );
    for id in &ids {
        let r = m.get(&format!("/api/traces/{id}"));
        assert_eq!(r.status, 200, "trace {id} lost");
    }
    let after = search(&m, "limit=10000&end=4102444800");
    assert!(
        after.len() >= total,
        "{} traces after restart, {total} before",
        after.len()
    );
}

/// OTLP/JSON spans of one service: (trace id hex, span id hex, parent hex, name, error).
fn otlp_spans(spans: &[(&str, &str, &str, &str, bool)]) -> Vec<u8> {
    let t = now_ms() * 1_000_000;
    let spans: Vec<String> = spans
        .iter()
        .enumerate()
        .map(|(i, (trace, span, parent, name, error))| {
            let start = t + i as i64 * 1_000_000;
            format!(
                r#"{{"traceId":"{trace}","spanId":"{span}","parentSpanId":"{parent}","name":"{name}","kind":2,"startTimeUnixNano":"{start}","endTimeUnixNano":"{}","status":{{"code":{}}}}}"#,
                start + 500_000,
                if *error { 2 } else { 0 }
            )
        })
        .collect();
    format!(
        r#"{{"resourceSpans":[{{"resource":{{"attributes":[{{"key":"service.name","value":{{"stringValue":"checkout"}}}}]}},"scopeSpans":[{{"spans":[{}]}}]}}]}}"#,
        spans.join(",")
    )
    .into_bytes()
}

#[test]
fn tail_sampling_keeps_a_trace_whole_when_its_error_comes_in_a_later_batch() {
    let dir = TestDir::new();
    let m = Lastmile::start_with_config(
        &dir,
        "tail_sampling:\n  decision_wait: 1s\n  policies:\n    - name: errors\n      status: error\n    - name: rest\n      keep: 0\n",
    );
    let (late, quiet) = ("a1".repeat(16), "b2".repeat(16));
    let json = [("Content-Type", "application/json")];
    // First batch: the late trace's root and a child, all fine, and a trace that stays fine.
    let first = otlp_spans(&[
        (&late, "0000000000000001", "", "POST /pay", false),
        (&late, "0000000000000002", "0000000000000001", "db", false),
        (&quiet, "0000000000000003", "", "GET /health", false),
    ]);
    let r = m.post("/v1/traces", &json, &first);
    assert!(r.is_success(), "{}", r.text());
    // Second batch: the late trace's error.
    let second = otlp_spans(&[(
        &late,
        "0000000000000004",
        "0000000000000001",
        "charge",
        true,
    )]);
    let r = m.post("/v1/traces", &json, &second);
    assert!(r.is_success(), "{}", r.text());

    // Once the quiet trace is decided (dropped: no policy keeps it), so is the late one.
    wait_for(
        "the quiet trace to be dropped",
        Duration::from_secs(30),
        |last| {
            let r = m.get(&format!("/api/traces/{quiet}"));
            *last = format!("{} {}", r.status, r.text());
            (r.status == 404).then_some(())
        },
    );
    let r = m.get(&format!("/api/traces/{late}"));
    assert_eq!(r.status, 200, "{}", r.text());
    let mut names: Vec<String> = spans_of(&r.json()).into_iter().map(|s| s.3).collect();
    names.sort();
    assert_eq!(names, ["POST /pay", "charge", "db"]);
}
