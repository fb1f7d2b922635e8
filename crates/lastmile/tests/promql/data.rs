//! The data set of the differential PromQL suite: three hours of realistic series on a
//! 15 s scrape grid, generated from a fixed seed, so that every run loads the same values
//! (only the wall-clock anchor moves: the data always ends a few minutes before "now").
//!
//! What is in it, and why:
//! - HTTP services `api`, `api-v2` and `xapi` (job names that only anchored regexes tell
//!   apart), two instances each: `up`, `http_requests_total` by method/route/status,
//!   a classic histogram `http_request_duration_seconds` by route, `build_info`,
//!   `process_start_time_seconds`, `go_goroutines`. Life cycles: `api` on 10.0.0.2 is down
//!   for two scrapes and restarts (counter resets, `up` 0); `api-v2` is deployed 20 min in
//!   (series start late); `xapi` on 10.0.0.1 restarts between two scrapes (reset without a
//!   gap); `xapi` on 10.0.0.2 is removed 30 min before the end (series stop early);
//!   `api` on 10.0.0.1 changes `build_info` version 15 min before the end.
//! - `node_*`: float counters by cpu/mode, big gauges (bytes), a draining filesystem.
//! - `queue_depth`: small integer gauges (ties, count_values).
//! - `rpc_duration_seconds`: a summary whose quantiles are NaN while idle.
//! - `special_value`: NaN, ±Inf, ±1e300, 1e-300, f64::MAX, 5e-324, zero, negatives.
//! - Staleness: `flaky_*` with gaps of 10 min, 5 min 15 s and 4 min 45 s; a batch job that
//!   starts late and stops early; a series that only exists in the last 5 min; series
//!   scraped every 2 min and every 6 min (beyond the 5 min lookback).
//! - `regex_probe{val=…}`: values needing anchoring and escaping care (`a.b`, `a|b`, `ä`).
//! - `collide_*`: series that collide once `__name__` or `src` is rewritten.
//! - `weird_hist_bucket`: classic histograms without +Inf, non-monotonic, duplicate and
//!   malformed `le`, negative bounds, all zero.

use std::collections::BTreeMap;
use std::fmt::Write as _;

/// Scrape interval of the grid.
pub const STEP_MS: i64 = 15_000;
/// Grid points per series: 3 h.
pub const POINTS: usize = 720;
/// How long the data covers.
pub const SPAN_MS: i64 = STEP_MS * POINTS as i64;
/// The NaN Prometheus stores for a parsed "NaN" (Go's `math.NaN()`), so both servers hold
/// the very same bits. Not the staleness marker (0x7ff0000000000002).
pub const NORMAL_NAN_BITS: u64 = 0x7ff8_0000_0000_0001;

pub type Labels = BTreeMap<String, String>;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
    Summary,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
            Kind::Summary => "summary",
        }
    }
}

#[derive(Clone, Debug)]
pub struct Series {
    /// All labels including `__name__`, sorted by name.
    pub labels: Vec<(String, String)>,
    /// Strictly increasing timestamps (ms).
    pub samples: Vec<(i64, f64)>,
}

impl Series {
    pub fn label_map(&self) -> Labels {
        self.labels.iter().cloned().collect()
    }
}

#[derive(Clone, Debug)]
pub struct Family {
    pub name: String,
    pub kind: Kind,
    pub help: String,
    pub series: Vec<Series>,
}

#[derive(Clone, Debug)]
pub struct Dataset {
    /// The grid's first point; samples lie in `[start_ms, end_ms)`.
    pub start_ms: i64,
    pub end_ms: i64,
    pub families: Vec<Family>,
}

// ---------------------------------------------------------------------------------------
// Deterministic randomness

/// splitmix64: tiny, fast and the same on every platform.
#[derive(Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x5851_f42d_4c95_7f2d)
    }

    /// A generator seeded from a name, so adding a series does not shift the others.
    pub fn named(name: &str) -> Rng {
        // FNV-1a.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in name.bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        Rng::new(h)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    pub fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.unit()
    }

    pub fn int(&mut self, lo: i64, hi_inclusive: i64) -> i64 {
        lo + (self.next_u64() % (hi_inclusive - lo + 1) as u64) as i64
    }

    /// Standard normal (Box-Muller).
    pub fn normal(&mut self) -> f64 {
        let u1 = self.unit().max(1e-12);
        let u2 = self.unit();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }

    /// Poisson-distributed count (Knuth for small means, normal approximation above).
    pub fn poisson(&mut self, mean: f64) -> f64 {
        if mean <= 0.0 {
            return 0.0;
        }
        if mean < 30.0 {
            let limit = (-mean).exp();
            let mut k = 0.0;
            let mut p = 1.0;
            loop {
                p *= self.unit();
                if p <= limit {
                    return k;
                }
                k += 1.0;
            }
        }
        (mean + mean.sqrt() * self.normal()).round().max(0.0)
    }
}

// ---------------------------------------------------------------------------------------
// Building blocks

/// Per grid point: the value, or None when there is no sample.
type Track = Vec<Option<f64>>;

/// A value as a function of the grid point.
type ValueAt = Box<dyn Fn(usize) -> f64>;

/// One scrape target: when its scrapes happened.
struct Target {
    job: String,
    instance: String,
    times: Vec<i64>,
}

impl Target {
    /// Scrapes at `start + i*15s + offset + jitter`; offset and jitter derive from the name.
    fn new(start: i64, job: &str, instance: &str) -> Target {
        let mut rng = Rng::named(&format!("times/{job}/{instance}"));
        let offset = rng.int(150, 2_900);
        let times = (0..POINTS as i64)
            .map(|i| start + i * STEP_MS + offset + rng.int(-120, 120))
            .collect();
        Target {
            job: job.to_string(),
            instance: instance.to_string(),
            times,
        }
    }

    fn rng(&self, what: &str) -> Rng {
        Rng::named(&format!("{}/{}/{what}", self.job, self.instance))
    }
}

/// A counter: accumulates `inc(i)` over the points where `alive(i)`; starts at `initial`
/// (a process that has been running) and restarts from 0 at each index in `resets`.
fn counter(
    alive: &[bool],
    resets: &[usize],
    initial: f64,
    mut inc: impl FnMut(usize) -> f64,
) -> Track {
    let mut v = initial;
    (0..POINTS)
        .map(|i| {
            if resets.contains(&i) {
                v = 0.0;
            }
            if !alive[i] {
                return None;
            }
            v += inc(i);
            Some(v)
        })
        .collect()
}

fn gauge(alive: &[bool], mut f: impl FnMut(usize) -> f64) -> Track {
    (0..POINTS)
        .map(|i| {
            let v = f(i);
            alive[i].then_some(v)
        })
        .collect()
}

fn alive_between(from: usize, to: usize) -> Vec<bool> {
    (0..POINTS).map(|i| i >= from && i < to).collect()
}

/// 1 ± 30 % over the three hours: traffic is not flat.
fn diurnal(i: usize) -> f64 {
    1.0 + 0.3 * (2.0 * std::f64::consts::PI * i as f64 / POINTS as f64).sin()
}

struct Builder {
    start: i64,
    families: Vec<Family>,
}

impl Builder {
    fn family(&mut self, name: &str, kind: Kind, help: &str) -> usize {
        if let Some(i) = self.families.iter().position(|f| f.name == name) {
            assert_eq!(self.families[i].kind, kind, "family {name} kind");
            return i;
        }
        self.families.push(Family {
            name: name.to_string(),
            kind,
            help: help.to_string(),
            series: Vec::new(),
        });
        self.families.len() - 1
    }

    /// Adds a series of family `fam` named `name` with `labels`, sampled at `times`.
    fn add(&mut self, fam: usize, name: &str, labels: &[(&str, &str)], times: &[i64], t: Track) {
        let mut l: Vec<(String, String)> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        l.push(("__name__".to_string(), name.to_string()));
        l.sort();
        let samples: Vec<(i64, f64)> = times
            .iter()
            .zip(t)
            .filter_map(|(&ts, v)| v.map(|v| (ts, v)))
            .collect();
        assert!(!samples.is_empty(), "series {l:?} has no samples");
        assert!(
            samples.windows(2).all(|w| w[0].0 < w[1].0),
            "series {l:?} is not in time order"
        );
        self.families[fam]
            .series
            .push(Series { labels: l, samples });
    }

    /// A grid with a fixed offset, for series not tied to an HTTP target.
    fn plain_times(&self, name: &str) -> Vec<i64> {
        Target::new(self.start, name, "").times
    }
}

const BUCKETS: [&str; 12] = [
    "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "+Inf",
];

fn bucket_bound(le: &str) -> f64 {
    if le == "+Inf" {
        f64::INFINITY
    } else {
        le.parse().expect("bucket bound")
    }
}

// ---------------------------------------------------------------------------------------
// The data set

/// Generates the data set whose grid ends at `end_ms` (exclusive).
pub fn generate(end_ms: i64) -> Dataset {
    let start = end_ms - SPAN_MS;
    let mut b = Builder {
        start,
        families: Vec::new(),
    };
    http_services(&mut b);
    node(&mut b);
    worker(&mut b);
    rpc_summary(&mut b);
    special_values(&mut b);
    staleness(&mut b);
    regex_probes(&mut b);
    collisions(&mut b);
    weird_histograms(&mut b);
    for f in &mut b.families {
        f.series.sort_by(|a, b| a.labels.cmp(&b.labels));
    }
    Dataset {
        start_ms: start,
        end_ms,
        families: b.families,
    }
}

fn http_services(b: &mut Builder) {
    let up = b.family("up", Kind::Gauge, "Whether the last scrape succeeded.");
    let req = b.family("http_requests", Kind::Counter, "HTTP requests handled.");
    let hist = b.family(
        "http_request_duration_seconds",
        Kind::Histogram,
        "HTTP request latency.",
    );
    let build = b.family("build_info", Kind::Gauge, "Build version, value 1.");
    let pst = b.family(
        "process_start_time_seconds",
        Kind::Gauge,
        "Start time of the process since the epoch.",
    );
    let gor = b.family("go_goroutines", Kind::Gauge, "Number of goroutines.");
    let start_s = b.start as f64 / 1000.0;
    for (j, job) in ["api", "api-v2", "xapi"].into_iter().enumerate() {
        for (k, instance) in ["10.0.0.1:8080", "10.0.0.2:8080"].into_iter().enumerate() {
            let target = Target::new(b.start, job, instance);
            let times = target.times.clone();
            // Life cycle.
            let (alive, resets, up_zero): (Vec<bool>, Vec<usize>, Vec<usize>) = match (j, k) {
                (0, 1) => (
                    (0..POINTS).map(|i| !(300..302).contains(&i)).collect(),
                    vec![302],
                    vec![300, 301],
                ),
                (1, _) => (alive_between(80, POINTS), vec![], vec![]),
                (2, 0) => (vec![true; POINTS], vec![500], vec![]),
                (2, 1) => (alive_between(0, 600), vec![], vec![]),
                _ => (vec![true; POINTS], vec![], vec![]),
            };
            let born_late = !alive[0];
            let ls = [("instance", instance), ("job", job)];
            let up_track: Track = (0..POINTS)
                .map(|i| {
                    if up_zero.contains(&i) {
                        Some(0.0)
                    } else {
                        alive[i].then_some(1.0)
                    }
                })
                .collect();
            b.add(up, "up", &ls, &times, up_track);

            // Requests by method, route and status.
            let combos: [(&str, &str, &str, f64); 7] = [
                ("GET", "/users", "200", 9.0),
                ("GET", "/users", "404", 0.8),
                ("GET", "/users/{id}", "200", 4.0),
                ("GET", "/users/{id}", "500", 0.15),
                ("POST", "/orders", "200", 2.5),
                ("POST", "/orders", "500", 0.05),
                ("GET", "/health", "200", 0.2),
            ];
            for (method, route, status, base) in combos {
                let mut rng = target.rng(&format!("req/{method}/{route}/{status}"));
                let scale = [1.0, 0.6, 0.35][j] * if k == 0 { 1.0 } else { 1.3 };
                let initial = if born_late {
                    0.0
                } else {
                    rng.int(1_000, 90_000) as f64
                };
                let burst = job == "api-v2" && status == "500";
                let t = counter(&alive, &resets, initial, |i| {
                    let mut mean = base * scale * diurnal(i) * 15.0;
                    if burst && (400..440).contains(&i) {
                        mean *= 40.0;
                    }
                    rng.poisson(mean)
                });
                let l = [
                    ("instance", instance),
                    ("job", job),
                    ("method", method),
                    ("route", route),
                    ("status", status),
                ];
                b.add(req, "http_requests_total", &l, &times, t);
            }

            // Latency histograms by route.
            for (route, median) in [("/users", 0.04), ("/orders", 0.18)] {
                let mut rng = target.rng(&format!("hist/{route}"));
                let mut buckets = [0.0f64; BUCKETS.len()];
                let mut sum = 0.0f64;
                let mut count = 0.0f64;
                let mut tracks: Vec<Track> = vec![Vec::with_capacity(POINTS); BUCKETS.len()];
                let mut sum_t = Vec::with_capacity(POINTS);
                let mut count_t = Vec::with_capacity(POINTS);
                if !born_late {
                    // A process that has been running a while.
                    let n = rng.int(5_000, 50_000) as f64;
                    for (bi, le) in BUCKETS.iter().enumerate() {
                        let frac = 1.0 - (-bucket_bound(le) / (median * 1.5)).exp();
                        buckets[bi] = (n * frac.min(1.0)).floor();
                    }
                    buckets[BUCKETS.len() - 1] = n;
                    count = n;
                    sum = n * median * 1.2;
                }
                for (i, &up) in alive.iter().enumerate() {
                    if resets.contains(&i) {
                        buckets = [0.0; BUCKETS.len()];
                        sum = 0.0;
                        count = 0.0;
                    }
                    if up {
                        let slow = if job == "api-v2" && (400..440).contains(&i) {
                            5.0
                        } else {
                            1.0
                        };
                        let n = rng.poisson(6.0 * diurnal(i) * 15.0 * [1.0, 0.5, 0.3][j]);
                        for _ in 0..n as usize {
                            let lat = median * slow * (0.9 * rng.normal()).exp();
                            sum += lat;
                            count += 1.0;
                            for (bi, le) in BUCKETS.iter().enumerate() {
                                if lat <= bucket_bound(le) {
                                    buckets[bi] += 1.0;
                                }
                            }
                        }
                    }
                    for (bi, t) in tracks.iter_mut().enumerate() {
                        t.push(up.then_some(buckets[bi]));
                    }
                    sum_t.push(up.then_some(sum));
                    count_t.push(up.then_some(count));
                }
                for (bi, t) in tracks.into_iter().enumerate() {
                    let l = [
                        ("instance", instance),
                        ("job", job),
                        ("le", BUCKETS[bi]),
                        ("route", route),
                    ];
                    b.add(hist, "http_request_duration_seconds_bucket", &l, &times, t);
                }
                let l = [("instance", instance), ("job", job), ("route", route)];
                b.add(hist, "http_request_duration_seconds_sum", &l, &times, sum_t);
                b.add(
                    hist,
                    "http_request_duration_seconds_count",
                    &l,
                    &times,
                    count_t,
                );
            }

            // Build info: api on 10.0.0.1 is upgraded at point 660.
            let version = ["1.4.2", "2.0.0-rc.1", "0.9.8"][j];
            let upgrade = (j, k) == (0, 0);
            let old: Track = (0..POINTS)
                .map(|i| (alive[i] && !(upgrade && i >= 660)).then_some(1.0))
                .collect();
            let bl = [
                ("goversion", "go1.21.5"),
                ("instance", instance),
                ("job", job),
                ("version", version),
            ];
            b.add(build, "build_info", &bl, &times, old);
            if upgrade {
                let new = gauge(&alive_between(660, POINTS), |_| 1.0);
                let bl = [
                    ("goversion", "go1.22.1"),
                    ("instance", instance),
                    ("job", job),
                    ("version", "1.5.0"),
                ];
                b.add(build, "build_info", &bl, &times, new);
            }

            // Process start time: changes on restarts.
            let mut started = if born_late {
                times[80] as f64 / 1000.0 - 3.25
            } else {
                start_s - 86_400.0 * (1.0 + j as f64) - 1234.5 * k as f64
            };
            let t = gauge(&alive, |i| {
                if resets.contains(&i) {
                    started = times[i] as f64 / 1000.0 - 2.5;
                }
                started
            });
            b.add(pst, "process_start_time_seconds", &ls, &times, t);

            let mut rng = target.rng("goroutines");
            let mut g = rng.int(40, 120) as f64;
            let t = gauge(&alive, |_| {
                g = (g + rng.int(-6, 6) as f64).clamp(12.0, 400.0);
                g
            });
            b.add(gor, "go_goroutines", &ls, &times, t);
        }
    }
}

fn node(b: &mut Builder) {
    let cpu = b.family("node_cpu_seconds", Kind::Counter, "CPU time by mode.");
    let mem = b.family(
        "node_memory_available_bytes",
        Kind::Gauge,
        "Memory available.",
    );
    let fs = b.family(
        "node_filesystem_avail_bytes",
        Kind::Gauge,
        "Filesystem space available.",
    );
    let temp = b.family(
        "node_temperature_celsius",
        Kind::Gauge,
        "Hardware temperatures.",
    );
    for (n, instance) in ["node-1:9100", "node-2:9100"].into_iter().enumerate() {
        let target = Target::new(b.start, "node", instance);
        let times = target.times.clone();
        let all = vec![true; POINTS];
        for c in ["0", "1"] {
            let mut rng = target.rng(&format!("cpu{c}"));
            let mut shares: [f64; 3] = [0.0; 3];
            let mut per_step = Vec::with_capacity(POINTS);
            for i in 0..POINTS {
                let busy = (0.25 + 0.15 * diurnal(i) * rng.range(0.5, 1.5)).min(0.95);
                shares[1] = busy * 0.7;
                shares[2] = busy * 0.3;
                shares[0] = 1.0 - busy;
                per_step.push(shares);
            }
            for (m, mode) in ["idle", "user", "system"].into_iter().enumerate() {
                let initial = 1e5 * (1.0 + n as f64) * [8.0, 1.5, 0.5][m] + rng.range(0.0, 1e3);
                let t = counter(&all, &[], initial, |i| 15.0 * per_step[i][m]);
                let l = [
                    ("cpu", c),
                    ("instance", instance),
                    ("job", "node"),
                    ("mode", mode),
                ];
                b.add(cpu, "node_cpu_seconds_total", &l, &times, t);
            }
        }
        let ls = [("instance", instance), ("job", "node")];
        let mut rng = target.rng("mem");
        let mut v = [8.2e9, 3.9e9][n];
        let t = gauge(&all, |_| {
            v = (v + rng.normal() * 4e7).clamp(1e9, 1.6e10);
            v.round()
        });
        b.add(mem, "node_memory_available_bytes", &ls, &times, t);

        let mut rng = target.rng("fs");
        let mut v = [5.2e10, 9.1e10][n];
        let drain = [1.3e6, 2.2e5][n];
        let t = gauge(&all, |_| {
            v -= drain * rng.range(0.5, 1.5);
            v.round()
        });
        let l = [
            ("device", "sda1"),
            ("instance", instance),
            ("job", "node"),
            ("mountpoint", "/"),
        ];
        b.add(fs, "node_filesystem_avail_bytes", &l, &times, t);

        for (s, sensor) in ["cpu", "board"].into_iter().enumerate() {
            let mut rng = target.rng(&format!("temp/{sensor}"));
            let t = gauge(&all, |i| {
                let base = [52.0, 38.0][s] + 3.0 * n as f64;
                base + 6.0 * (i as f64 / 57.0).sin() + rng.normal() * 0.4
            });
            let l = [("instance", instance), ("job", "node"), ("sensor", sensor)];
            b.add(temp, "node_temperature_celsius", &l, &times, t);
        }
    }
}

fn worker(b: &mut Builder) {
    let depth = b.family("queue_depth", Kind::Gauge, "Items waiting, by queue.");
    let done = b.family("jobs_processed", Kind::Counter, "Jobs processed, by queue.");
    let target = Target::new(b.start, "worker", "w1:9000");
    let times = target.times.clone();
    let all = vec![true; POINTS];
    for (q, queue) in ["email", "sms", "push"].into_iter().enumerate() {
        let mut rng = target.rng(&format!("depth/{queue}"));
        let mut d = [7.0, 3.0, 12.0][q];
        let t = gauge(&all, |_| {
            d = (d + rng.int(-2, 2) as f64).clamp(0.0, 25.0);
            d
        });
        let l = [("instance", "w1:9000"), ("job", "worker"), ("queue", queue)];
        b.add(depth, "queue_depth", &l, &times, t);
        let mut rng = target.rng(&format!("done/{queue}"));
        let t = counter(&all, &[], 500.0 * (q as f64 + 1.0), |i| {
            rng.poisson([3.0, 1.0, 6.0][q] * diurnal(i))
        });
        b.add(done, "jobs_processed_total", &l, &times, t);
    }
}

fn rpc_summary(b: &mut Builder) {
    let fam = b.family(
        "rpc_duration_seconds",
        Kind::Summary,
        "RPC latency (summary).",
    );
    let all = vec![true; POINTS];
    for (s, service) in ["auth", "billing"].into_iter().enumerate() {
        let target = Target::new(b.start, "rpc", service);
        let times = target.times.clone();
        let idle = |i: usize| s == 1 && (200..260).contains(&i);
        let mut rng = target.rng("q");
        let medians: Vec<f64> = (0..POINTS)
            .map(|_| [0.012, 0.08][s] * (0.2 * rng.normal()).exp())
            .collect();
        let l = |q: &'static str| [("job", "rpc"), ("quantile", q), ("service", service)];
        for (q, factor) in [("0.5", 1.0), ("0.9", 2.3), ("0.99", 5.1)] {
            let t = gauge(&all, |i| {
                if idle(i) {
                    f64::from_bits(NORMAL_NAN_BITS)
                } else {
                    medians[i] * factor
                }
            });
            b.add(fam, "rpc_duration_seconds", &l(q), &times, t);
        }
        let mut rng = target.rng("count");
        let counts: Vec<f64> = (0..POINTS)
            .map(|i| {
                if idle(i) {
                    0.0
                } else {
                    rng.poisson(20.0 * diurnal(i))
                }
            })
            .collect();
        let ls = [("job", "rpc"), ("service", service)];
        let t = counter(&all, &[], 0.0, |i| counts[i] * medians[i] * 1.3);
        b.add(fam, "rpc_duration_seconds_sum", &ls, &times, t);
        let t = counter(&all, &[], 0.0, |i| counts[i]);
        b.add(fam, "rpc_duration_seconds_count", &ls, &times, t);
    }
}

fn special_values(b: &mut Builder) {
    let fam = b.family(
        "special_value",
        Kind::Gauge,
        "Special floating-point values.",
    );
    let cnt = b.family(
        "special_counter",
        Kind::Counter,
        "Counters with special values.",
    );
    let times = b.plain_times("special");
    let all = vec![true; POINTS];
    let nan = f64::from_bits(NORMAL_NAN_BITS);
    let cycle = [
        1.5,
        nan,
        f64::INFINITY,
        f64::NEG_INFINITY,
        1e300,
        -1e300,
        1e-300,
        0.0,
        -2.5,
        5e-324,
    ];
    let wave = |i: usize| 1.0 + 0.5 * (i as f64 / 10.0).sin();
    let kinds: Vec<(&str, ValueAt)> = vec![
        ("nan", Box::new(move |_| nan)),
        ("pos_inf", Box::new(|_| f64::INFINITY)),
        ("neg_inf", Box::new(|_| f64::NEG_INFINITY)),
        ("huge", Box::new(move |i| 1e300 * wave(i))),
        ("neg_huge", Box::new(move |i| -1e300 * wave(i))),
        ("tiny", Box::new(move |i| 1e-300 * wave(i))),
        ("max", Box::new(|_| f64::MAX)),
        ("cycle", Box::new(move |i| cycle[i % cycle.len()])),
        ("zero", Box::new(|_| 0.0)),
        ("neg", Box::new(move |i| -3.7 * wave(i))),
        ("frac", Box::new(|i| (i as f64 / 23.0).sin() * 0.999)),
        (
            "big_int",
            Box::new(|i| 9_007_199_254_740_993.0 + i as f64 * 2.0),
        ),
    ];
    for (kind, f) in &kinds {
        let t = gauge(&all, f);
        let l = [("instance", "s1"), ("job", "special"), ("kind", *kind)];
        b.add(fam, "special_value", &l, &times, t);
    }
    // Counters: one with a NaN sample, one that jumps to +Inf and back.
    let t = counter(&all, &[], 10.0, |_| 3.0);
    let t: Track = t
        .into_iter()
        .enumerate()
        .map(|(i, v)| if i == 360 { Some(nan) } else { v })
        .collect();
    let l = [
        ("instance", "s1"),
        ("job", "special"),
        ("kind", "nan_spike"),
    ];
    b.add(cnt, "special_counter_total", &l, &times, t);
    let t = counter(&all, &[], 10.0, |_| 2.0);
    let t: Track = t
        .into_iter()
        .enumerate()
        .map(|(i, v)| if i == 400 { Some(f64::INFINITY) } else { v })
        .collect();
    let l = [
        ("instance", "s1"),
        ("job", "special"),
        ("kind", "inf_spike"),
    ];
    b.add(cnt, "special_counter_total", &l, &times, t);
}

fn staleness(b: &mut Builder) {
    let fup = b.family("flaky_up", Kind::Gauge, "A target with scrape gaps.");
    let freq = b.family(
        "flaky_requests",
        Kind::Counter,
        "Requests of a target with scrape gaps.",
    );
    let target = Target::new(b.start, "flaky", "f1:80");
    let times = target.times.clone();
    // Gaps: 10 min, 5 min 15 s (beyond the lookback), 4 min 45 s (within it).
    let alive: Vec<bool> = (0..POINTS)
        .map(|i| !((200..240).contains(&i) || (500..521).contains(&i) || (600..619).contains(&i)))
        .collect();
    let ls = [("instance", "f1:80"), ("job", "flaky")];
    let mut rng = target.rng("up");
    let t = gauge(&alive, |_| if rng.unit() < 0.1 { 0.0 } else { 1.0 });
    b.add(fup, "flaky_up", &ls, &times, t);
    let mut rng = target.rng("req");
    let t = counter(&alive, &[240], 250.0, |_| rng.poisson(12.0));
    b.add(freq, "flaky_requests_total", &ls, &times, t);

    let batch = b.family(
        "batch_last_success_timestamp_seconds",
        Kind::Gauge,
        "When the batch job last succeeded.",
    );
    let target = Target::new(b.start, "batch", "cron-1");
    let start_s = (b.start / 1000) as f64;
    let t = gauge(&alive_between(120, 480), |i| {
        start_s + (i / 40) as f64 * 600.0 + 17.0
    });
    let ls = [("instance", "cron-1"), ("job", "batch")];
    b.add(
        batch,
        "batch_last_success_timestamp_seconds",
        &ls,
        &target.times,
        t,
    );

    let late = b.family(
        "late_gauge",
        Kind::Gauge,
        "Exists only in the last 5 minutes.",
    );
    let target = Target::new(b.start, "late", "l1");
    let t = gauge(&alive_between(700, POINTS), |i| i as f64 * 0.5);
    let ls = [("instance", "l1"), ("job", "late")];
    b.add(late, "late_gauge", &ls, &target.times, t);

    let sparse = b.family("sparse_gauge", Kind::Gauge, "Scraped rarely.");
    let target = Target::new(b.start, "sparse", "sp1");
    for (every, n) in [("2m", 8usize), ("6m", 24usize)] {
        let alive: Vec<bool> = (0..POINTS).map(|i| i % n == 0).collect();
        let t = gauge(&alive, |i| (i / n) as f64 * 1.25 - 4.0);
        let l = [("every", every), ("instance", "sp1"), ("job", "sparse")];
        b.add(sparse, "sparse_gauge", &l, &target.times, t);
    }
}

fn regex_probes(b: &mut Builder) {
    let fam = b.family(
        "regex_probe",
        Kind::Gauge,
        "Label values for matcher tests.",
    );
    let times = b.plain_times("regex");
    let all = vec![true; POINTS];
    let vals = [
        "api", "API", "api-v2", "xapi", "a.b", "axb", "a|b", "ä", "a\\b", "a b", "10", "010",
    ];
    for (n, val) in vals.into_iter().enumerate() {
        let t = gauge(&all, |i| (n + 1) as f64 + (i % 4) as f64 * 0.25);
        let l = [("job", "regex"), ("val", val)];
        b.add(fam, "regex_probe", &l, &times, t);
    }
}

fn collisions(b: &mut Builder) {
    let ct = b.family(
        "collide",
        Kind::Counter,
        "Series that collide when relabeled.",
    );
    let cg = b.family(
        "collide_gauge",
        Kind::Gauge,
        "Shares labels with collide_total.",
    );
    let times = b.plain_times("collide");
    let all = vec![true; POINTS];
    for (n, src) in ["x-1", "x-2"].into_iter().enumerate() {
        let t = counter(&all, &[], 0.0, |_| 1.0 + n as f64);
        let l = [("dst", "a"), ("job", "collide"), ("src", src)];
        b.add(ct, "collide_total", &l, &times, t);
    }
    let t = gauge(&all, |i| (i % 7) as f64);
    let l = [("dst", "a"), ("job", "collide"), ("src", "x-1")];
    b.add(cg, "collide_gauge", &l, &times, t);
}

fn weird_histograms(b: &mut Builder) {
    let fam = b.family(
        "weird_hist",
        Kind::Histogram,
        "Classic histograms with broken buckets.",
    );
    let times = b.plain_times("weird");
    let all = vec![true; POINTS];
    // (case, [(le, share of the total count)])
    let cases: [(&str, &[(&str, f64)]); 7] = [
        ("no_inf", &[("0.1", 0.4), ("1", 0.9)]),
        (
            "non_monotonic",
            &[("0.1", 0.5), ("0.5", 0.45), ("1", 0.8), ("+Inf", 1.0)],
        ),
        ("only_inf", &[("+Inf", 1.0)]),
        ("zero", &[("0.1", 0.0), ("1", 0.0), ("+Inf", 0.0)]),
        (
            "dup_le",
            &[("0.5", 0.3), ("1", 0.6), ("1.0", 0.7), ("+Inf", 1.0)],
        ),
        ("bad_le", &[("abc", 0.2), ("0.5", 0.5), ("+Inf", 1.0)]),
        (
            "neg_le",
            &[("-1", 0.1), ("0", 0.3), ("1", 0.9), ("+Inf", 1.0)],
        ),
    ];
    for (case, buckets) in cases {
        let mut rng = Rng::named(&format!("weird/{case}"));
        let totals = counter(&all, &[], 100.0, |_| rng.poisson(10.0));
        for (le, share) in buckets {
            let t: Track = totals
                .iter()
                .map(|v| v.map(|v| (v * share).floor()))
                .collect();
            let l = [("case", case), ("job", "weird"), ("le", *le)];
            b.add(fam, "weird_hist_bucket", &l, &times, t);
        }
    }
}

// ---------------------------------------------------------------------------------------
// Output

/// A float as OpenMetrics text that parses back to the same bits.
pub fn om_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else if v == 0.0 || (1e-6..1e15).contains(&v.abs()) {
        // Rust prints the shortest text that round-trips.
        format!("{v}")
    } else {
        format!("{v:e}")
    }
}

fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

impl Dataset {
    pub fn series(&self) -> impl Iterator<Item = &Series> {
        self.families.iter().flat_map(|f| f.series.iter())
    }

    pub fn sample_count(&self) -> usize {
        self.series().map(|s| s.samples.len()).sum()
    }

    /// Every series by its label set.
    pub fn by_labels(&self) -> BTreeMap<Labels, Vec<(i64, f64)>> {
        let mut out = BTreeMap::new();
        for s in self.series() {
            let prev = out.insert(s.label_map(), s.samples.clone());
            assert!(prev.is_none(), "duplicate series {:?}", s.labels);
        }
        out
    }

    /// The data as OpenMetrics text for `promtool tsdb create-blocks-from openmetrics`:
    /// one block of lines per family (TYPE and HELP first), each series' samples in time
    /// order, timestamps in seconds with millisecond decimals, `# EOF` at the end.
    ///
    /// What promtool 2.42 does with its input (tried by hand): without `# EOF` it refuses
    /// the file; a sample without a timestamp is refused; timestamps are read as seconds
    /// (milliseconds land silently in the year 58000); a sample older than its series'
    /// previous one is dropped without a word (so the suite compares raw data first);
    /// families may interleave; `NaN`, `+Inf`, `-Inf` parse.
    pub fn openmetrics(&self) -> String {
        let mut out = String::with_capacity(self.sample_count() * 100);
        for f in &self.families {
            let _ = writeln!(out, "# TYPE {} {}", f.name, f.kind.as_str());
            let _ = writeln!(out, "# HELP {} {}", f.name, f.help);
            for s in &f.series {
                let mut head = String::new();
                let name = &s
                    .labels
                    .iter()
                    .find(|(k, _)| k == "__name__")
                    .expect("a name")
                    .1;
                head.push_str(name);
                head.push('{');
                let mut first = true;
                for (k, v) in s.labels.iter().filter(|(k, _)| k != "__name__") {
                    if !first {
                        head.push(',');
                    }
                    first = false;
                    let _ = write!(head, "{k}=\"{}\"", escape_label(v));
                }
                head.push('}');
                for &(t, v) in &s.samples {
                    let _ = writeln!(
                        out,
                        "{head} {} {}.{:03}",
                        om_value(v),
                        t.div_euclid(1000),
                        t.rem_euclid(1000)
                    );
                }
            }
        }
        out.push_str("# EOF\n");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generation_is_deterministic_and_well_formed() {
        let end = 1_800_000_000_000;
        let a = generate(end);
        let b = generate(end);
        assert_eq!(a.sample_count(), b.sample_count());
        for (x, y) in a.series().zip(b.series()) {
            assert_eq!(x.labels, y.labels);
            assert_eq!(x.samples.len(), y.samples.len());
            assert!(
                x.samples
                    .iter()
                    .zip(&y.samples)
                    .all(|(p, q)| p.0 == q.0 && p.1.to_bits() == q.1.to_bits())
            );
        }
        let all = a.by_labels();
        for (labels, samples) in &all {
            assert!(
                samples
                    .iter()
                    .all(|(t, _)| *t >= a.start_ms && *t < a.end_ms),
                "{labels:?} out of range"
            );
        }
        // The edge cases the queries rely on are there.
        let has = |name: &str, k: &str, v: &str| {
            all.keys()
                .any(|l| l["__name__"] == name && l.get(k).map(String::as_str) == Some(v))
        };
        assert!(has("http_requests_total", "job", "api-v2"));
        assert!(has("regex_probe", "val", "a|b"));
        assert!(has("weird_hist_bucket", "le", "abc"));
        assert!(has("build_info", "version", "1.5.0"));
    }

    #[test]
    fn openmetrics_values_round_trip() {
        for v in [
            0.0,
            1.5,
            -2.5,
            1e300,
            -1e300,
            1e-300,
            5e-324,
            f64::MAX,
            0.1 + 0.2,
            9_007_199_254_740_993.0,
            123_456_789.125,
        ] {
            let text = om_value(v);
            let back: f64 = text.parse().unwrap();
            assert_eq!(back.to_bits(), v.to_bits(), "{v} as {text}");
        }
        assert_eq!(om_value(f64::from_bits(NORMAL_NAN_BITS)), "NaN");
        assert_eq!(om_value(f64::NEG_INFINITY), "-Inf");
    }
}
