//! Traces and logs of the demo fleet (see [`crate::demo`]): the same five services, the
//! same slow phase of `checkout` and the same failing `payments`, as spans and as the log
//! lines those services write while serving them.
//!
//! The log lines carry their trace ids the way real services do, each in its own style,
//! so the demo exercises trace-id normalisation: `frontend` and `catalog` write JSON with
//! `trace_id`/`span_id` in hex, `checkout` writes JSON with an `X-Trace-ID` UUID, `payments`
//! writes logfmt with a W3C `traceparent`, and `users` writes JSON with `traceId`.

use std::sync::Arc;

use lastmile_model::{
    AttrValue, KeyValue, Labels, LogBatch, LogEntry, LogStream, Resource, ResourceSpans, Scope,
    ScopeSpans, Span, SpanBatch, SpanId, SpanKind, StatusCode, TraceId,
};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::demo::checkout_is_slow;

/// Traces started per second across the fleet.
pub const DEMO_TRACES_PER_SECOND: f64 = 2.0;

const SERVICES: [&str; 5] = ["frontend", "checkout", "payments", "catalog", "users"];

/// One span while a trace is being built.
struct Pending {
    service: usize,
    span: Span,
    log: Option<(String, &'static str)>,
}

pub struct DemoTraces {
    rng: SmallRng,
    resources: Vec<Arc<Resource>>,
}

impl DemoTraces {
    pub fn new(seed: u64) -> Self {
        let resources = SERVICES
            .iter()
            .enumerate()
            .map(|(i, name)| {
                Arc::new(Resource {
                    attributes: vec![
                        KeyValue::string("service.name", *name),
                        KeyValue::string("service.namespace", "shop"),
                        KeyValue::string("service.instance.id", format!("10.0.{}.10:8080", i + 1)),
                        KeyValue::string("service.version", "1.4.2"),
                        KeyValue::string("deployment.environment", "demo"),
                        KeyValue::string("telemetry.sdk.language", "go"),
                    ],
                })
            })
            .collect();
        DemoTraces {
            rng: SmallRng::seed_from_u64(seed),
            resources,
        }
    }

    /// Traces that started in `[from_ms, to_ms)`, and their services' log lines.
    pub fn generate(&mut self, from_ms: i64, to_ms: i64) -> (SpanBatch, LogBatch) {
        let mut spans: Vec<Pending> = Vec::new();
        let expected = (to_ms - from_ms).max(0) as f64 / 1000.0 * DEMO_TRACES_PER_SECOND;
        let n = (expected * self.rng.random_range(0.8..1.2)).round() as usize;
        for _ in 0..n {
            let start_ms = self.rng.random_range(from_ms..to_ms.max(from_ms + 1));
            let start_ns = start_ms as u64 * 1_000_000 + self.rng.random_range(0..1_000_000);
            self.trace(start_ns, &mut spans);
        }
        self.assemble(spans)
    }

    fn ids(&mut self) -> (TraceId, SpanId) {
        let mut t = [0u8; 16];
        let mut s = [0u8; 8];
        self.rng.fill(&mut t);
        self.rng.fill(&mut s);
        t[0] |= 1;
        s[0] |= 1;
        (TraceId(t), SpanId(s))
    }

    /// A log-normal latency around `median_ms`.
    fn latency_ns(&mut self, median_ms: f64) -> u64 {
        let (u1, u2): (f64, f64) = (self.rng.random_range(1e-12..1.0), self.rng.random());
        let z = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
        ((median_ms.ln() + 0.5 * z).exp() * 1e6) as u64
    }

    #[allow(clippy::too_many_arguments)]
    fn span(
        &mut self,
        trace: TraceId,
        parent: Option<SpanId>,
        name: &str,
        kind: SpanKind,
        start_ns: u64,
        dur_ns: u64,
        attributes: Vec<KeyValue>,
        error: Option<&str>,
    ) -> Span {
        let (_, span_id) = self.ids();
        Span {
            trace_id: trace,
            span_id,
            parent_span_id: parent,
            trace_state: String::new(),
            name: name.to_owned(),
            kind,
            start_unix_nano: start_ns,
            end_unix_nano: start_ns + dur_ns.max(1000),
            attributes,
            events: Vec::new(),
            links: Vec::new(),
            status_code: if error.is_some() {
                StatusCode::Error
            } else {
                StatusCode::Unset
            },
            status_message: error.unwrap_or_default().to_owned(),
        }
    }

    fn http(method: &str, route: &str, status: i64) -> Vec<KeyValue> {
        vec![
            KeyValue::string("http.request.method", method),
            KeyValue::string("http.route", route),
            KeyValue::new("http.response.status_code", AttrValue::Int(status)),
        ]
    }

    fn trace(&mut self, start_ns: u64, out: &mut Vec<Pending>) {
        let (trace, _) = self.ids();
        let kind = self.rng.random_range(0..10);
        let start_ms = (start_ns / 1_000_000) as i64;
        match kind {
            // Checkout: frontend → checkout → users, payments; slow phase in checkout.
            0..=2 => {
                let slow = checkout_is_slow(start_ms);
                let fail = self.rng.random_bool(0.06);
                let users_ns = self.latency_ns(25.0);
                let lock_ns = if slow {
                    self.latency_ns(650.0)
                } else {
                    self.latency_ns(4.0)
                };
                let pay_ns = self.latency_ns(80.0);
                let checkout_ns = users_ns + lock_ns + pay_ns + self.latency_ns(10.0);
                let front_ns = checkout_ns + self.latency_ns(6.0);
                let status = if fail { 502 } else { 200 };
                let root = self.span(
                    trace,
                    None,
                    "POST /cart",
                    SpanKind::Server,
                    start_ns,
                    front_ns,
                    Self::http("POST", "/cart", status),
                    fail.then_some("checkout failed"),
                );
                let c_start = start_ns + 2_000_000;
                let checkout = self.span(
                    trace,
                    Some(root.span_id),
                    "POST /api/v1/checkout",
                    SpanKind::Server,
                    c_start,
                    checkout_ns,
                    Self::http("POST", "/api/v1/checkout", if fail { 500 } else { 200 }),
                    fail.then_some("payment failed"),
                );
                let users = self.span(
                    trace,
                    Some(checkout.span_id),
                    "GET /api/v1/users/{id}",
                    SpanKind::Server,
                    c_start + 500_000,
                    users_ns,
                    Self::http("GET", "/api/v1/users/{id}", 200),
                    None,
                );
                let mut db_attrs = vec![
                    KeyValue::string("db.system", "postgresql"),
                    KeyValue::string("db.statement", "UPDATE orders SET state = $1 WHERE id = $2"),
                ];
                if slow {
                    db_attrs.push(KeyValue::new(
                        "db.lock_wait_ms",
                        AttrValue::Int((lock_ns / 1_000_000) as i64),
                    ));
                }
                let lock = self.span(
                    trace,
                    Some(checkout.span_id),
                    "UPDATE orders",
                    SpanKind::Client,
                    c_start + 1_000_000 + users_ns,
                    lock_ns,
                    db_attrs,
                    None,
                );
                let pay = self.span(
                    trace,
                    Some(checkout.span_id),
                    "POST /api/v1/charge",
                    SpanKind::Server,
                    c_start + 1_500_000 + users_ns + lock_ns,
                    pay_ns,
                    Self::http("POST", "/api/v1/charge", if fail { 502 } else { 200 }),
                    fail.then_some("card processor timeout"),
                );
                let order = self.rng.random_range(10_000..99_999);
                let lines = [
                    (
                        0,
                        format!("cart submitted items={}", self.rng.random_range(1..6)),
                        "info",
                    ),
                    (
                        1,
                        if fail {
                            format!("checkout failed order={order}: payment declined")
                        } else {
                            format!("order placed order={order}")
                        },
                        if fail { "error" } else { "info" },
                    ),
                    (4, "user profile loaded".to_owned(), "info"),
                    (
                        1,
                        if slow {
                            format!("slow query on orders: lock wait {} ms", lock_ns / 1_000_000)
                        } else {
                            "order row updated".to_owned()
                        },
                        if slow { "warn" } else { "debug" },
                    ),
                    (
                        2,
                        if fail {
                            "charge failed: card processor timeout after 3 retries".to_owned()
                        } else {
                            format!(
                                "charge ok amount={}.{:02}",
                                self.rng.random_range(5..300),
                                self.rng.random_range(0..100)
                            )
                        },
                        if fail { "error" } else { "info" },
                    ),
                ];
                let spans = [root, checkout, users, lock, pay];
                let services = [0, 1, 4, 1, 2];
                for ((svc, span), (_, msg, level)) in services.into_iter().zip(spans).zip(lines) {
                    out.push(Pending {
                        service: svc,
                        span,
                        log: Some((msg, level)),
                    });
                }
            }
            // Browsing: frontend → catalog → database.
            3..=7 => {
                let db_ns = self.latency_ns(5.0);
                let cat_ns = db_ns + self.latency_ns(8.0);
                let front_ns = cat_ns + self.latency_ns(20.0);
                let id = self.rng.random_range(1..500);
                let root = self.span(
                    trace,
                    None,
                    "GET /product/{id}",
                    SpanKind::Server,
                    start_ns,
                    front_ns,
                    Self::http("GET", "/product/{id}", 200),
                    None,
                );
                let cat = self.span(
                    trace,
                    Some(root.span_id),
                    "GET /api/v1/products/{id}",
                    SpanKind::Server,
                    start_ns + 1_000_000,
                    cat_ns,
                    Self::http("GET", "/api/v1/products/{id}", 200),
                    None,
                );
                let db = self.span(
                    trace,
                    Some(cat.span_id),
                    "SELECT products",
                    SpanKind::Client,
                    start_ns + 1_500_000,
                    db_ns,
                    vec![
                        KeyValue::string("db.system", "postgresql"),
                        KeyValue::string("db.statement", "SELECT * FROM products WHERE id = $1"),
                    ],
                    None,
                );
                out.push(Pending {
                    service: 0,
                    span: root,
                    log: Some((format!("product page rendered product={id}"), "info")),
                });
                out.push(Pending {
                    service: 3,
                    span: cat,
                    log: Some((format!("product loaded product={id} cache=miss"), "info")),
                });
                out.push(Pending {
                    service: 3,
                    span: db,
                    log: None,
                });
            }
            // Login: frontend → users.
            _ => {
                let bad_password = self.rng.random_bool(0.1);
                let users_ns = self.latency_ns(30.0);
                let front_ns = users_ns + self.latency_ns(5.0);
                let root = self.span(
                    trace,
                    None,
                    "POST /login",
                    SpanKind::Server,
                    start_ns,
                    front_ns,
                    Self::http("POST", "/login", if bad_password { 401 } else { 200 }),
                    None,
                );
                let users = self.span(
                    trace,
                    Some(root.span_id),
                    "POST /api/v1/login",
                    SpanKind::Server,
                    start_ns + 1_000_000,
                    users_ns,
                    Self::http(
                        "POST",
                        "/api/v1/login",
                        if bad_password { 401 } else { 200 },
                    ),
                    None,
                );
                out.push(Pending {
                    service: 0,
                    span: root,
                    log: Some(("login form submitted".to_owned(), "info")),
                });
                out.push(Pending {
                    service: 4,
                    span: users,
                    log: Some((
                        if bad_password {
                            "login rejected: bad password".to_owned()
                        } else {
                            "login ok".to_owned()
                        },
                        if bad_password { "warn" } else { "info" },
                    )),
                });
            }
        }
    }

    fn assemble(&self, pending: Vec<Pending>) -> (SpanBatch, LogBatch) {
        let mut by_service: Vec<Vec<Span>> = vec![Vec::new(); SERVICES.len()];
        let mut lines: Vec<Vec<LogEntry>> = vec![Vec::new(); SERVICES.len()];
        for p in pending {
            if let Some((msg, level)) = &p.log {
                let ts = p.span.end_unix_nano as i64;
                lines[p.service].push(LogEntry::new(ts, log_line(p.service, &p.span, msg, level)));
            }
            by_service[p.service].push(p.span);
        }
        let spans = SpanBatch {
            resources: by_service
                .into_iter()
                .enumerate()
                .filter(|(_, s)| !s.is_empty())
                .map(|(i, spans)| ResourceSpans {
                    resource: self.resources[i].clone(),
                    scopes: vec![ScopeSpans {
                        scope: Scope {
                            name: "go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
                                .into(),
                            version: "0.49.0".into(),
                            attributes: Vec::new(),
                        },
                        spans,
                    }],
                })
                .collect(),
        };
        let logs = LogBatch {
            streams: lines
                .into_iter()
                .enumerate()
                .filter(|(_, l)| !l.is_empty())
                .map(|(i, mut entries)| {
                    entries.sort_by_key(|e| e.timestamp_ns);
                    LogStream {
                        labels: Labels::from_pairs([
                            ("service_name", SERVICES[i]),
                            ("job", SERVICES[i]),
                            ("namespace", "shop"),
                            ("env", "demo"),
                        ]),
                        entries,
                    }
                })
                .collect(),
        };
        (spans, logs)
    }
}

/// The log line a service writes, each service in its own style of carrying the ids.
fn log_line(service: usize, span: &Span, msg: &str, level: &str) -> String {
    let ts_ms = span.end_unix_nano / 1_000_000;
    let dur_ms = span.duration_nanos() as f64 / 1e6;
    let trace = span.trace_id.to_hex();
    let esc = |s: &str| s.replace('\\', "\\\\").replace('"', "\\\"");
    match SERVICES[service] {
        "checkout" => {
            let uuid = format!(
                "{}-{}-{}-{}-{}",
                &trace[..8],
                &trace[8..12],
                &trace[12..16],
                &trace[16..20],
                &trace[20..]
            );
            format!(
                r#"{{"time":{ts_ms},"level":"{level}","msg":"{}","X-Trace-ID":"{uuid}","op":"{}","duration_ms":{dur_ms:.1}}}"#,
                esc(msg),
                esc(&span.name)
            )
        }
        "payments" => format!(
            r#"ts={ts_ms} level={level} msg="{}" traceparent=00-{trace}-{}-01 duration={dur_ms:.1}ms"#,
            esc(msg),
            span.span_id.to_hex()
        ),
        "users" => format!(
            r#"{{"ts":{ts_ms},"severity":"{level}","message":"{}","traceId":"{trace}","spanId":"{}"}}"#,
            esc(msg),
            span.span_id.to_hex()
        ),
        _ => format!(
            r#"{{"ts":{ts_ms},"level":"{level}","msg":"{}","trace_id":"{trace}","span_id":"{}","route":"{}","duration_ms":{dur_ms:.1}}}"#,
            esc(msg),
            span.span_id.to_hex(),
            esc(&span.name)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traces_are_consistent_and_logs_carry_their_trace() {
        let mut d = DemoTraces::new(7);
        // Two minutes of checkout's slow phase.
        let (spans, logs) = d.generate(600_000 * 3000, 600_000 * 3000 + 120_000);
        let n = spans.span_count();
        assert!(n > 300, "{n} spans");
        let mut traces = std::collections::HashMap::<TraceId, Vec<&Span>>::new();
        for (_, _, s) in spans.spans() {
            traces.entry(s.trace_id).or_default().push(s);
        }
        for (id, t) in &traces {
            assert_eq!(t.iter().filter(|s| s.is_root()).count(), 1, "{id}");
            let ids: Vec<_> = t.iter().map(|s| s.span_id).collect();
            for s in t {
                if let Some(p) = s.parent_span_id {
                    assert!(ids.contains(&p), "orphan in {id}");
                    let parent = t.iter().find(|x| x.span_id == p).unwrap();
                    assert!(s.start_unix_nano >= parent.start_unix_nano);
                }
            }
        }
        assert!(
            spans
                .spans()
                .any(|(_, _, s)| s.status_code == StatusCode::Error)
        );
        // Every log line names a trace that exists, in its service's spelling.
        let mut found = 0;
        for stream in &logs.streams {
            for e in &stream.entries {
                let id = traces
                    .keys()
                    .find(|t| {
                        let hex = t.to_hex();
                        e.line.contains(&hex) || e.line.contains(&hex[..8])
                    })
                    .is_some();
                assert!(id, "{}", e.line);
                found += 1;
            }
        }
        assert!(found > 200);
        assert!(
            logs.streams
                .iter()
                .any(|s| s.entries.iter().any(|e| e.line.contains("lock wait")))
        );
    }
}
