//! The query benchmark's data: a fleet of Go HTTP services, each instance exposing the
//! classic latency histogram that `promhttp` middleware produces —
//! `http_request_duration_seconds_bucket{le, method, route, status, job, instance}` with
//! client_golang's default buckets, plus `_sum` and `_count` — scraped at a fixed interval
//! over hours of history.
//!
//! Traffic follows a daily curve, each endpoint has its own rate and latency (a log-normal
//! distribution, slower for errors), and about half of the instances restart once (their
//! counters go back to zero), so `rate` meets counter resets as it does in production.
//!
//! History is produced in time slices ([`Fleet::next_slice`]): every series' samples of a
//! few consecutive scrape rounds. Sending slice after slice, each one complete before the
//! next starts, keeps the whole load in global time order, which Prometheus's head needs
//! (it refuses samples more than an hour behind its newest one). The same seed gives the
//! same samples, so every server receives identical data.

use bytes::Bytes;
use lastmile_receivers::remote_write::{EncodeSeries, encode_write_request};
use serde::Serialize;

use crate::load::{Queues, Request, Rng};

pub const BUCKET_METRIC: &str = "http_request_duration_seconds_bucket";
pub const SUM_METRIC: &str = "http_request_duration_seconds_sum";
pub const COUNT_METRIC: &str = "http_request_duration_seconds_count";

/// client_golang's `DefBuckets`, spelled as its exposition writes them (`+Inf` follows).
const BOUNDS: [(&str, f64); 11] = [
    ("0.005", 0.005),
    ("0.01", 0.01),
    ("0.025", 0.025),
    ("0.05", 0.05),
    ("0.1", 0.1),
    ("0.25", 0.25),
    ("0.5", 0.5),
    ("1", 1.0),
    ("2.5", 2.5),
    ("5", 5.0),
    ("10", 10.0),
];

/// (method, route, requests per second of one instance, median latency in seconds)
const ENDPOINTS: [(&str, &str, f64, f64); 12] = [
    ("GET", "/api/v1/orders", 12.0, 0.045),
    ("POST", "/api/v1/orders", 3.0, 0.120),
    ("GET", "/api/v1/orders/{id}", 20.0, 0.015),
    ("GET", "/api/v1/users", 4.0, 0.060),
    ("GET", "/api/v1/users/{id}", 25.0, 0.008),
    ("PUT", "/api/v1/users/{id}", 1.5, 0.035),
    ("GET", "/api/v1/cart", 8.0, 0.020),
    ("POST", "/api/v1/cart", 5.0, 0.030),
    ("POST", "/api/v1/checkout", 1.0, 0.350),
    ("GET", "/api/v1/search", 9.0, 0.180),
    ("GET", "/api/v1/items/{id}", 30.0, 0.010),
    ("GET", "/healthz", 0.2, 0.001),
];

/// (status, share of the endpoint's requests, latency factor)
const STATUSES: [(&str, f64, f64); 3] =
    [("200", 0.93, 1.0), ("404", 0.05, 0.4), ("500", 0.02, 3.0)];

/// Service names for the jobs; past the list, names repeat with a number.
const JOBS: [&str; 20] = [
    "api-gateway",
    "orders",
    "users",
    "cart",
    "checkout",
    "search",
    "catalog",
    "payments",
    "inventory",
    "shipping",
    "pricing",
    "reviews",
    "recommendations",
    "notifications",
    "auth",
    "billing",
    "media",
    "accounts",
    "sessions",
    "tracking",
];

/// Series of one (method, route, status): the buckets, `+Inf`, `_sum` and `_count`.
pub const SERIES_PER_COMBO: u64 = BOUNDS.len() as u64 + 3;
pub const COMBOS_PER_INSTANCE: u64 = (ENDPOINTS.len() * STATUSES.len()) as u64;
pub const SERIES_PER_INSTANCE: u64 = SERIES_PER_COMBO * COMBOS_PER_INSTANCE;
pub const INSTANCES_PER_JOB: u64 = 10;
/// Spread of the log-normal latency distribution.
const SIGMA: f64 = 0.7;
const DAY_MS: i64 = 24 * 3600 * 1000;

const STREAM_COMBO: u64 = 11;
const STREAM_OFFSET: u64 = 12;
const STREAM_RESTART: u64 = 13;
const STREAM_INSTANCE: u64 = 14;

/// The job label of job number `j`.
pub fn job_name(j: u64) -> String {
    let base = JOBS[(j % JOBS.len() as u64) as usize];
    match j / JOBS.len() as u64 {
        0 => base.to_string(),
        n => format!("{base}-{n}"),
    }
}

/// What to generate.
#[derive(Clone, Debug, Serialize)]
pub struct FleetSpec {
    pub instances: u64,
    /// Scrape rounds (samples per series).
    pub rounds: u64,
    pub interval_ms: i64,
    /// Time of the last round. Each instance scrapes a whole number of seconds (its
    /// offset, below the interval) before the round's time, so samples sit on whole
    /// seconds.
    pub end_ms: i64,
    /// Scrape rounds per slice: the load's unit of time order.
    pub rounds_per_slice: u64,
    /// Series per request.
    pub batch: u64,
    pub connections: usize,
    pub seed: u64,
}

impl FleetSpec {
    pub fn series(&self) -> u64 {
        self.instances * SERIES_PER_INSTANCE
    }

    pub fn jobs(&self) -> u64 {
        self.instances.div_ceil(INSTANCES_PER_JOB)
    }

    pub fn total_samples(&self) -> u64 {
        self.series() * self.rounds
    }

    pub fn slices(&self) -> u64 {
        self.rounds.div_ceil(self.rounds_per_slice.max(1))
    }

    /// Nominal time of round `r` (0 = oldest).
    pub fn round_ms(&self, r: u64) -> i64 {
        self.end_ms - (self.rounds - 1 - r) as i64 * self.interval_ms
    }

    /// Scrape offset of an instance: whole seconds below the interval.
    pub fn offset_ms(&self, instance: u64) -> i64 {
        let secs = (self.interval_ms / 1000).max(1) as u64;
        Rng::for_item(self.seed, STREAM_OFFSET, instance).below(secs) as i64 * 1000
    }

    /// The labels of series `i`, sorted by name as remote write requires.
    pub fn series_labels(&self, i: u64) -> Vec<(String, String)> {
        let instance = i / SERIES_PER_INSTANCE;
        let combo = (i % SERIES_PER_INSTANCE) / SERIES_PER_COMBO;
        let k = (i % SERIES_PER_COMBO) as usize;
        let (method, route, _, _) = ENDPOINTS[(combo / STATUSES.len() as u64) as usize];
        let (status, _, _) = STATUSES[(combo % STATUSES.len() as u64) as usize];
        let ip = instance + 1;
        let mut labels = vec![
            (
                "__name__".to_string(),
                match k {
                    _ if k <= BOUNDS.len() => BUCKET_METRIC,
                    _ if k == BOUNDS.len() + 1 => SUM_METRIC,
                    _ => COUNT_METRIC,
                }
                .to_string(),
            ),
            (
                "instance".into(),
                format!(
                    "10.{}.{}.{}:8080",
                    (ip >> 16) & 255,
                    (ip >> 8) & 255,
                    ip & 255
                ),
            ),
            ("job".into(), job_name(instance / INSTANCES_PER_JOB)),
        ];
        if k <= BOUNDS.len() {
            let le = BOUNDS.get(k).map_or("+Inf", |b| b.0);
            labels.push(("le".into(), le.into()));
        }
        labels.push(("method".into(), method.into()));
        labels.push(("route".into(), route.into()));
        labels.push(("status".into(), status.into()));
        labels
    }
}

/// Standard normal CDF (Abramowitz–Stegun 7.1.26 for erf: error under 1.5e-7, plenty for
/// synthetic latencies).
fn normal_cdf(z: f64) -> f64 {
    let x = z.abs() / std::f64::consts::SQRT_2;
    let t = 1.0 / (1.0 + 0.327_591_1 * x);
    let poly = t
        * (0.254_829_592
            + t * (-0.284_496_736
                + t * (1.421_413_741 + t * (-1.453_152_027 + t * 1.061_405_429))));
    let erf = 1.0 - poly * (-x * x).exp();
    if z >= 0.0 {
        0.5 * (1.0 + erf)
    } else {
        0.5 * (1.0 - erf)
    }
}

/// One (instance, method, route, status): its counters and how they grow.
#[derive(Clone, Debug)]
struct Combo {
    rng: Rng,
    /// Requests per second at the daily mean.
    rate: f64,
    /// Share of requests at or below each bound.
    cdf: [f64; BOUNDS.len()],
    mean_latency: f64,
    /// Cumulative bucket counters, `+Inf` last (which is also `_count`).
    buckets: [f64; BOUNDS.len() + 1],
    sum: f64,
    /// The round in which the instance restarts (`u64::MAX`: never).
    restart_round: u64,
}

impl Combo {
    fn new(spec: &FleetSpec, instance: u64, combo: u64) -> Combo {
        let (_, _, endpoint_rate, median) = ENDPOINTS[(combo / STATUSES.len() as u64) as usize];
        let (_, share, slowdown) = STATUSES[(combo % STATUSES.len() as u64) as usize];
        // Instances of a job differ a little in load (uneven balancing).
        let mut irng = Rng::for_item(spec.seed, STREAM_INSTANCE, instance);
        let instance_factor = 0.6 + 0.8 * (irng.below(1000) as f64 / 1000.0);
        let median = median * slowdown;
        let mut cdf = [0.0; BOUNDS.len()];
        for (c, (_, le)) in cdf.iter_mut().zip(BOUNDS) {
            *c = normal_cdf((le.ln() - median.ln()) / SIGMA);
        }
        // About half of the instances restart once within the history.
        let restart = Rng::for_item(spec.seed, STREAM_RESTART, instance).below(spec.rounds * 2);
        let mut rng = Rng::for_item(
            spec.seed,
            STREAM_COMBO,
            instance * COMBOS_PER_INSTANCE + combo,
        );
        // Counters start where a process that has run for a while would be.
        let start = rng.below(100_000) as f64;
        let mut buckets = [0.0; BOUNDS.len() + 1];
        for (b, c) in buckets.iter_mut().zip(cdf.iter().chain([&1.0])) {
            *b = (start * c).floor();
        }
        Combo {
            rng,
            rate: endpoint_rate * share * instance_factor,
            cdf,
            mean_latency: median * (SIGMA * SIGMA / 2.0).exp(),
            buckets,
            sum: start * median,
            restart_round: if restart >= 1 && restart < spec.rounds {
                restart
            } else {
                u64::MAX
            },
        }
    }

    /// One scrape interval of traffic ending at `t_ms`.
    fn advance(&mut self, round: u64, t_ms: i64, interval_s: f64) {
        if round == self.restart_round {
            self.buckets = [0.0; BOUNDS.len() + 1];
            self.sum = 0.0;
        }
        let day = t_ms.rem_euclid(DAY_MS) as f64 / DAY_MS as f64;
        let diurnal = 1.0 + 0.4 * (std::f64::consts::TAU * day).sin();
        let jitter = 0.75 + 0.5 * self.unit();
        let n = (self.rate * interval_s * diurnal * jitter).round();
        let u = self.unit();
        for (b, c) in self.buckets.iter_mut().zip(self.cdf) {
            // floor(n·cdf + u) grows with the bound, so the buckets stay cumulative.
            *b += (n * c + u).floor().min(n);
        }
        self.buckets[BOUNDS.len()] += n;
        self.sum += n * self.mean_latency * (0.85 + 0.3 * self.unit());
    }

    fn unit(&mut self) -> f64 {
        self.rng.below(1 << 24) as f64 / (1u64 << 24) as f64
    }
}

/// One slice of history, encoded and split by connection.
#[derive(Debug)]
pub struct Slice {
    pub queues: Vec<Vec<Request>>,
    /// Rounds `first_round .. first_round + rounds`.
    pub first_round: u64,
    pub rounds: u64,
    pub requests: u64,
    pub samples: u64,
    pub raw_bytes: u64,
    pub body_bytes: u64,
    /// Per round of the slice: the sum of all bucket and `_count` values (integers, so
    /// their sum is exact in any order): what the servers' `sum_over_time` must add up to.
    pub counter_sums: Vec<f64>,
}

impl Queues for Slice {
    fn queues(&self) -> &[Vec<Request>] {
        &self.queues
    }
}

/// The generator: the fleet's state between slices.
pub struct Fleet {
    spec: FleetSpec,
    series: Vec<EncodeSeries>,
    combos: Vec<Combo>,
    offsets: Vec<i64>,
    next_round: u64,
    encoder: snap::raw::Encoder,
}

impl Fleet {
    pub fn new(spec: &FleetSpec) -> Fleet {
        let series = (0..spec.series())
            .map(|i| EncodeSeries {
                labels: spec.series_labels(i),
                samples: Vec::with_capacity(spec.rounds_per_slice as usize),
                exemplars: Vec::new(),
            })
            .collect();
        let combos = (0..spec.instances)
            .flat_map(|inst| (0..COMBOS_PER_INSTANCE).map(move |c| (inst, c)))
            .map(|(inst, c)| Combo::new(spec, inst, c))
            .collect();
        Fleet {
            offsets: (0..spec.instances).map(|i| spec.offset_ms(i)).collect(),
            spec: spec.clone(),
            series,
            combos,
            next_round: 0,
            encoder: snap::raw::Encoder::new(),
        }
    }

    /// The next slice in time order, or None when the history is complete.
    pub fn next_slice(&mut self) -> Option<Slice> {
        let spec = &self.spec;
        let first = self.next_round;
        if first >= spec.rounds {
            return None;
        }
        let last = (first + spec.rounds_per_slice.max(1)).min(spec.rounds);
        self.next_round = last;
        for s in &mut self.series {
            s.samples.clear();
        }
        let interval_s = spec.interval_ms as f64 / 1000.0;
        let mut counter_sums = vec![0.0; (last - first) as usize];
        let per_combo = SERIES_PER_COMBO as usize;
        for (c, combo) in self.combos.iter_mut().enumerate() {
            let instance = c as u64 / COMBOS_PER_INSTANCE;
            let series = &mut self.series[c * per_combo..(c + 1) * per_combo];
            for (r, sum) in (first..last).zip(counter_sums.iter_mut()) {
                let t = spec.round_ms(r) - self.offsets[instance as usize];
                combo.advance(r, t, interval_s);
                for (s, v) in series.iter_mut().zip(combo.buckets) {
                    s.samples.push((t, v));
                    *sum += v;
                }
                let count = combo.buckets[BOUNDS.len()];
                series[per_combo - 2].samples.push((t, combo.sum));
                series[per_combo - 1].samples.push((t, count));
                *sum += count;
            }
        }
        let connections = spec.connections.max(1);
        let mut queues: Vec<Vec<Request>> = (0..connections).map(|_| Vec::new()).collect();
        let (mut raw_bytes, mut body_bytes, mut requests) = (0, 0, 0);
        for (b, batch) in self.series.chunks(spec.batch.max(1) as usize).enumerate() {
            let raw = encode_write_request(batch, &[]);
            raw_bytes += raw.len() as u64;
            let body = self
                .encoder
                .compress_vec(&raw)
                .expect("snappy compression of a buffer cannot fail");
            body_bytes += body.len() as u64;
            requests += 1;
            queues[b % connections].push(Request {
                body: Bytes::from(body),
                samples: (batch.len() as u64 * (last - first)) as u32,
            });
        }
        Some(Slice {
            queues,
            first_round: first,
            rounds: last - first,
            requests,
            samples: spec.series() * (last - first),
            raw_bytes,
            body_bytes,
            counter_sums,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lastmile_receivers::remote_write::decode_write_request;
    use std::collections::HashMap;

    type LabelPairs = Vec<(String, String)>;
    type Points = Vec<(i64, f64)>;

    fn spec() -> FleetSpec {
        FleetSpec {
            instances: 3,
            rounds: 7,
            interval_ms: 60_000,
            end_ms: 1_700_000_040_000,
            rounds_per_slice: 3,
            batch: 100,
            connections: 2,
            seed: 5,
        }
    }

    #[test]
    fn labels_are_sorted_unique_and_describe_a_histogram() {
        let s = spec();
        let all: Vec<_> = (0..s.series()).map(|i| s.series_labels(i)).collect();
        for l in &all {
            assert!(l.windows(2).all(|w| w[0].0 < w[1].0), "{l:?}");
        }
        let unique: std::collections::HashSet<_> = all.iter().collect();
        assert_eq!(unique.len() as u64, s.series());
        let name = |l: &Vec<(String, String)>| l[0].1.clone();
        let buckets = all.iter().filter(|l| name(l) == BUCKET_METRIC).count() as u64;
        assert_eq!(buckets, s.instances * COMBOS_PER_INSTANCE * 12);
        assert!(
            all.iter()
                .any(|l| l.iter().any(|(n, v)| n == "le" && v == "+Inf"))
        );
        assert_eq!(job_name(0), "api-gateway");
        assert_eq!(job_name(21), "orders-1");
    }

    #[test]
    fn slices_are_in_time_order_complete_and_histograms_are_consistent() {
        let s = spec();
        let mut fleet = Fleet::new(&s);
        let mut by_series: HashMap<LabelPairs, Points> = HashMap::new();
        let mut prev_slice_max = i64::MIN;
        let (mut slices, mut counter_total) = (0, 0.0);
        while let Some(slice) = fleet.next_slice() {
            slices += 1;
            counter_total += slice.counter_sums.iter().sum::<f64>();
            let mut slice_min = i64::MAX;
            let mut samples = 0;
            for q in &slice.queues {
                for r in q {
                    let raw = snap::raw::Decoder::new().decompress_vec(&r.body).unwrap();
                    let (batch, _) = decode_write_request(&raw).unwrap();
                    assert_eq!(batch.num_samples(), r.samples as usize);
                    samples += batch.num_samples() as u64;
                    for series in &batch.series {
                        let labels: Vec<(String, String)> = batch
                            .series_labels(series)
                            .iter()
                            .map(|l| (l.name.to_string(), l.value.to_string()))
                            .collect();
                        let points = by_series.entry(labels).or_default();
                        for smp in batch.series_samples(series) {
                            slice_min = slice_min.min(smp.t);
                            assert_eq!(smp.t % 1000, 0);
                            points.push((smp.t, smp.v));
                        }
                    }
                }
            }
            assert_eq!(samples, slice.samples);
            assert!(slice_min > prev_slice_max, "slices overlap in time");
            prev_slice_max = by_series
                .values()
                .map(|p| p.last().unwrap().0)
                .max()
                .unwrap();
        }
        assert_eq!(slices, 3);
        assert_eq!(by_series.len() as u64, s.series());
        let mut expected_total = 0.0;
        for (labels, points) in &by_series {
            assert_eq!(points.len() as u64, s.rounds);
            assert!(points.windows(2).all(|w| w[0].0 < w[1].0));
            assert!(points.last().unwrap().0 <= s.end_ms);
            if labels[0].1 != SUM_METRIC {
                expected_total += points.iter().map(|p| p.1).sum::<f64>();
            }
        }
        assert_eq!(counter_total, expected_total);
        // At every scrape, the buckets of a combination are cumulative and end at _count.
        let key = |l: &[(String, String)]| {
            l.iter()
                .filter(|(n, _)| n != "__name__" && n != "le")
                .cloned()
                .collect::<Vec<_>>()
        };
        let mut combos: HashMap<LabelPairs, Vec<(String, String, &Points)>> = HashMap::new();
        for (labels, points) in &by_series {
            let le = labels
                .iter()
                .find(|(n, _)| n == "le")
                .map_or(String::new(), |l| l.1.clone());
            combos
                .entry(key(labels))
                .or_default()
                .push((labels[0].1.clone(), le, points));
        }
        for series in combos.values() {
            let count = series.iter().find(|s| s.0 == COUNT_METRIC).unwrap().2;
            let mut buckets: Vec<(f64, &Vec<(i64, f64)>)> = series
                .iter()
                .filter(|s| s.0 == BUCKET_METRIC)
                .map(|s| {
                    (
                        if s.1 == "+Inf" {
                            f64::INFINITY
                        } else {
                            s.1.parse().unwrap()
                        },
                        s.2,
                    )
                })
                .collect();
            buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
            assert_eq!(buckets.len(), 12);
            for (r, total) in count.iter().enumerate() {
                for w in buckets.windows(2) {
                    assert!(w[0].1[r].1 <= w[1].1[r].1);
                }
                assert_eq!(buckets[11].1[r].1, total.1);
            }
        }
    }

    #[test]
    fn same_seed_same_data() {
        let s = spec();
        let (mut a, mut b) = (Fleet::new(&s), Fleet::new(&s));
        while let (Some(x), Some(y)) = (a.next_slice(), b.next_slice()) {
            let bodies = |s: &Slice| {
                s.queues
                    .iter()
                    .flatten()
                    .map(|r| r.body.clone())
                    .collect::<Vec<_>>()
            };
            assert_eq!(bodies(&x), bodies(&y));
        }
    }

    #[test]
    fn normal_cdf_is_close() {
        assert!((normal_cdf(0.0) - 0.5).abs() < 1e-7);
        assert!((normal_cdf(1.0) - 0.841_344_746).abs() < 1e-6);
        assert!((normal_cdf(-2.0) - 0.022_750_132).abs() < 1e-6);
    }
}
