//! The demo fleet: a deterministic simulation of Go services exposing what the Prometheus
//! Go client and a typical HTTP middleware expose, so a first `lastmile serve --demo`
//! shows realistic data at once. `checkout` turns slow for two minutes in every ten and
//! `payments` fails a share of its requests, so there is something to investigate.

use lastmile_model::{MetadataRef, MetricType, WriteBatch};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

/// Scrape interval the demo simulates.
pub const DEMO_INTERVAL_MS: i64 = 15_000;

const BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
const GC_QUANTILES: [&str; 5] = ["0", "0.25", "0.5", "0.75", "1"];

struct Service {
    name: &'static str,
    instances: usize,
    routes: &'static [(&'static str, &'static str)],
    /// Median latency in seconds and requests per second per instance.
    median_s: f64,
    rps: f64,
    error_ratio: f64,
}

const SERVICES: [Service; 5] = [
    Service {
        name: "frontend",
        instances: 3,
        routes: &[("GET", "/"), ("GET", "/product/{id}"), ("POST", "/cart")],
        median_s: 0.04,
        rps: 40.0,
        error_ratio: 0.002,
    },
    Service {
        name: "checkout",
        instances: 2,
        routes: &[("POST", "/api/v1/checkout"), ("GET", "/api/v1/orders/{id}")],
        median_s: 0.12,
        rps: 8.0,
        error_ratio: 0.005,
    },
    Service {
        name: "payments",
        instances: 2,
        routes: &[("POST", "/api/v1/charge"), ("GET", "/healthz")],
        median_s: 0.08,
        rps: 6.0,
        error_ratio: 0.06,
    },
    Service {
        name: "catalog",
        instances: 2,
        routes: &[
            ("GET", "/api/v1/products"),
            ("GET", "/api/v1/products/{id}"),
        ],
        median_s: 0.015,
        rps: 30.0,
        error_ratio: 0.001,
    },
    Service {
        name: "users",
        instances: 2,
        routes: &[("GET", "/api/v1/users/{id}"), ("POST", "/api/v1/login")],
        median_s: 0.025,
        rps: 12.0,
        error_ratio: 0.003,
    },
];

/// Whether `checkout` is in its slow phase at time `t_ms` (two minutes in every ten).
pub fn checkout_is_slow(t_ms: i64) -> bool {
    t_ms.rem_euclid(600_000) < 120_000
}

/// Per-route state: cumulative counters as an instrumented service keeps them.
struct RouteState {
    method: &'static str,
    route: &'static str,
    /// Cumulative bucket counts (le order), sum and count, per status class.
    ok: HistogramState,
    err: HistogramState,
}

#[derive(Default, Clone)]
struct HistogramState {
    buckets: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

struct InstanceState {
    service: &'static Service,
    instance: String,
    routes: Vec<RouteState>,
    gc_count: u64,
    gc_sum: f64,
    alloc_total: f64,
    cpu_seconds: f64,
    start_time_s: f64,
}

/// The simulated fleet. Call [`DemoFleet::scrape`] once per interval with increasing times.
pub struct DemoFleet {
    rng: SmallRng,
    instances: Vec<InstanceState>,
    /// Owned label values the batches borrow (formatted numbers).
    scratch: Vec<String>,
}

impl DemoFleet {
    pub fn new(seed: u64, start_ms: i64) -> Self {
        let mut instances = Vec::new();
        for (si, service) in SERVICES.iter().enumerate() {
            for i in 0..service.instances {
                instances.push(InstanceState {
                    service,
                    instance: format!("10.0.{}.{}:8080", si + 1, i + 10),
                    routes: service
                        .routes
                        .iter()
                        .map(|&(method, route)| RouteState {
                            method,
                            route,
                            ok: HistogramState::default(),
                            err: HistogramState::default(),
                        })
                        .collect(),
                    gc_count: 0,
                    gc_sum: 0.0,
                    alloc_total: 0.0,
                    cpu_seconds: 0.0,
                    start_time_s: (start_ms / 1000 - 3600 * (i as i64 + 1)) as f64,
                });
            }
        }
        DemoFleet {
            rng: SmallRng::seed_from_u64(seed),
            instances,
            scratch: Vec::new(),
        }
    }

    /// Advances the simulation by one interval ending at `t_ms` and returns what a scrape
    /// of every instance at that moment would yield.
    pub fn scrape(&mut self, t_ms: i64) -> WriteBatch<'_> {
        self.advance(t_ms);
        self.render(t_ms)
    }

    fn advance(&mut self, t_ms: i64) {
        let secs = DEMO_INTERVAL_MS as f64 / 1000.0;
        let slow = checkout_is_slow(t_ms);
        for inst in &mut self.instances {
            let svc = inst.service;
            let mut requests = 0u64;
            for route in &mut inst.routes {
                let expected = svc.rps * secs / svc.routes.len() as f64;
                let n = (expected * self.rng.random_range(0.7..1.3)).round() as u64;
                requests += n;
                for _ in 0..n {
                    let mut median = svc.median_s;
                    if svc.name == "checkout" && slow {
                        median *= 6.0;
                    }
                    // Log-normal latency: exp(N(ln median, 0.6)), via Box-Muller.
                    let (u1, u2): (f64, f64) =
                        (self.rng.random_range(1e-12..1.0), self.rng.random());
                    let z = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
                    let latency = (median.ln() + 0.6 * z).exp();
                    let failed = self.rng.random_bool(svc.error_ratio);
                    let h = if failed {
                        &mut route.err
                    } else {
                        &mut route.ok
                    };
                    h.count += 1;
                    h.sum += latency;
                    for (b, le) in h.buckets.iter_mut().zip(BUCKETS) {
                        if latency <= le {
                            *b += 1;
                        }
                    }
                }
            }
            let gcs = 1 + requests / 200;
            inst.gc_count += gcs;
            inst.gc_sum += gcs as f64 * self.rng.random_range(0.0002..0.0009);
            inst.alloc_total += requests as f64 * self.rng.random_range(20_000.0..60_000.0);
            inst.cpu_seconds += secs * self.rng.random_range(0.05..0.3);
        }
    }

    fn render(&mut self, t: i64) -> WriteBatch<'_> {
        // Numbers that become label values are formatted into `scratch` first so the
        // batch can borrow them.
        self.scratch.clear();
        self.scratch.extend(BUCKETS.iter().map(|b| b.to_string()));
        self.scratch.push("+Inf".into());
        let mut out = Rendered {
            batch: WriteBatch::new(),
            t,
        };
        let le = &self.scratch;
        for inst in &self.instances {
            let job = inst.service.name;
            let instance = inst.instance.as_str();
            let base = [("job", job), ("instance", instance)];
            for route in &inst.routes {
                for (status, h) in [("200", &route.ok), ("500", &route.err)] {
                    let extra = [
                        ("method", route.method),
                        ("route", route.route),
                        ("status", status),
                    ];
                    for (i, le) in le.iter().enumerate() {
                        let count = h.buckets.get(i).copied().unwrap_or(h.count);
                        out.series(
                            "http_request_duration_seconds_bucket",
                            &base,
                            &extra,
                            Some(("le", le)),
                            count as f64,
                        );
                    }
                    out.series(
                        "http_request_duration_seconds_sum",
                        &base,
                        &extra,
                        None,
                        h.sum,
                    );
                    out.series(
                        "http_request_duration_seconds_count",
                        &base,
                        &extra,
                        None,
                        h.count as f64,
                    );
                    out.series("http_requests_total", &base, &extra, None, h.count as f64);
                }
            }
            let requests: u64 = inst.routes.iter().map(|r| r.ok.count + r.err.count).sum();
            let wave = ((t / 1000) as f64 / 300.0).sin();
            let goroutines = 40.0 + 15.0 * wave + (requests % 7) as f64;
            out.series("go_goroutines", &base, &[], None, goroutines.round());
            out.series("go_threads", &base, &[], None, 12.0);
            for q in GC_QUANTILES {
                let v = 0.0001 + q.parse::<f64>().unwrap_or(0.0) * 0.0008;
                out.series(
                    "go_gc_duration_seconds",
                    &base,
                    &[],
                    Some(("quantile", q)),
                    v,
                );
            }
            out.series("go_gc_duration_seconds_sum", &base, &[], None, inst.gc_sum);
            out.series(
                "go_gc_duration_seconds_count",
                &base,
                &[],
                None,
                inst.gc_count as f64,
            );
            out.series(
                "go_memstats_alloc_bytes_total",
                &base,
                &[],
                None,
                inst.alloc_total,
            );
            let heap = 24e6 + 8e6 * wave;
            out.series(
                "go_memstats_heap_inuse_bytes",
                &base,
                &[],
                None,
                heap.round(),
            );
            out.series(
                "process_cpu_seconds_total",
                &base,
                &[],
                None,
                inst.cpu_seconds,
            );
            out.series(
                "process_resident_memory_bytes",
                &base,
                &[],
                None,
                (heap * 1.6).round(),
            );
            out.series(
                "process_open_fds",
                &base,
                &[],
                None,
                18.0 + (requests % 5) as f64,
            );
            out.series(
                "process_start_time_seconds",
                &base,
                &[],
                None,
                inst.start_time_s,
            );
            out.series("up", &base, &[], None, 1.0);
        }
        for (name, metric_type, help, unit) in METADATA {
            out.batch.metadata.push(MetadataRef {
                metric_family_name: name,
                metric_type,
                help,
                unit,
            });
        }
        out.batch
    }
}

const METADATA: [(&str, MetricType, &str, &str); 12] = [
    (
        "http_request_duration_seconds",
        MetricType::Histogram,
        "Duration of HTTP requests.",
        "seconds",
    ),
    (
        "http_requests_total",
        MetricType::Counter,
        "Total HTTP requests.",
        "",
    ),
    (
        "go_goroutines",
        MetricType::Gauge,
        "Number of goroutines that currently exist.",
        "",
    ),
    (
        "go_threads",
        MetricType::Gauge,
        "Number of OS threads created.",
        "",
    ),
    (
        "go_gc_duration_seconds",
        MetricType::Summary,
        "A summary of the pause duration of garbage collection cycles.",
        "seconds",
    ),
    (
        "go_memstats_alloc_bytes_total",
        MetricType::Counter,
        "Total number of bytes allocated, even if freed.",
        "bytes",
    ),
    (
        "go_memstats_heap_inuse_bytes",
        MetricType::Gauge,
        "Number of heap bytes that are in use.",
        "bytes",
    ),
    (
        "process_cpu_seconds_total",
        MetricType::Counter,
        "Total user and system CPU time spent in seconds.",
        "seconds",
    ),
    (
        "process_resident_memory_bytes",
        MetricType::Gauge,
        "Resident memory size in bytes.",
        "bytes",
    ),
    (
        "process_open_fds",
        MetricType::Gauge,
        "Number of open file descriptors.",
        "",
    ),
    (
        "process_start_time_seconds",
        MetricType::Gauge,
        "Start time of the process since unix epoch in seconds.",
        "seconds",
    ),
    (
        "up",
        MetricType::Gauge,
        "Whether the target was reachable.",
        "",
    ),
];

struct Rendered<'a> {
    batch: WriteBatch<'a>,
    t: i64,
}

impl<'a> Rendered<'a> {
    fn series(
        &mut self,
        name: &'a str,
        base: &[(&'a str, &'a str)],
        extra: &[(&'a str, &'a str)],
        last: Option<(&'a str, &'a str)>,
        v: f64,
    ) {
        let b = &mut self.batch;
        b.begin_series();
        b.push_label("__name__", name);
        for &(n, v) in base.iter().chain(extra).chain(last.iter()) {
            b.push_label(n, v);
        }
        b.push_sample(self.t, v);
        // Every label set above carries __name__ and unique names.
        b.finish_series().expect("demo series are well-formed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fleet_produces_stable_series_and_monotonic_counters() {
        let mut fleet = DemoFleet::new(7, 0);
        let first: Vec<(u64, f64)> = {
            let b = fleet.scrape(DEMO_INTERVAL_MS);
            b.series
                .iter()
                .map(|s| (s.hash, b.series_samples(s)[0].v))
                .collect()
        };
        let b = fleet.scrape(2 * DEMO_INTERVAL_MS);
        assert_eq!(b.series.len(), first.len());
        assert!(
            b.series.len() > 500,
            "a realistic fleet has hundreds of series"
        );
        for (s, (hash, v0)) in b.series.iter().zip(&first) {
            assert_eq!(s.hash, *hash, "series set changed between scrapes");
            let labels = b.series_labels(s);
            let name = labels.iter().find(|l| l.name == "__name__").unwrap().value;
            if name.ends_with("_total") || name.ends_with("_count") || name.ends_with("_bucket") {
                assert!(b.series_samples(s)[0].v >= *v0, "{name} decreased");
            }
        }
    }

    #[test]
    fn checkout_is_slow_two_minutes_in_ten() {
        assert!(checkout_is_slow(0) && !checkout_is_slow(300_000));
    }
}
