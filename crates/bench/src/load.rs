//! The load: realistic remote-write requests, built (encoded and snappy-compressed) before
//! a server starts, then sent over a few keep-alive connections.
//!
//! The series look like a fleet of HTTP services scraped by Prometheus:
//! `bench_http_requests_total{instance, job, method, namespace, pod, region, route, status}`
//! with 200 series per instance and 10 instances per job. Values are counters that grow by
//! small random amounts (a quarter of the series stay idle), so they compress like real
//! counters. Every target has its own fixed scrape offset within the interval.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use lastmile_receivers::remote_write::{EncodeSeries, encode_write_request};
use serde::Serialize;

pub const METRIC_NAME: &str = "bench_http_requests_total";
/// Series of one instance: methods × routes × statuses.
pub const SERIES_PER_INSTANCE: u64 = (METHODS.len() * ROUTES.len() * STATUSES.len()) as u64;
pub const INSTANCES_PER_JOB: u64 = 10;

const METHODS: [&str; 4] = ["GET", "POST", "PUT", "DELETE"];
const ROUTES: [&str; 10] = [
    "/api/v1/orders",
    "/api/v1/orders/{id}",
    "/api/v1/users",
    "/api/v1/users/{id}",
    "/api/v1/cart",
    "/api/v1/checkout",
    "/api/v1/search",
    "/api/v1/items/{id}",
    "/healthz",
    "/metrics",
];
const STATUSES: [&str; 5] = ["200", "201", "404", "500", "503"];
const REGIONS: [&str; 3] = ["eu-west-1", "us-east-1", "ap-southeast-2"];
/// The characters Kubernetes uses in generated pod-name suffixes.
const POD_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// SplitMix64: small, fast, and the same sequence for the same seed everywhere.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        let mut r = Rng(seed);
        r.next_u64();
        r
    }

    /// A generator for item `i` of stream `stream`, independent of the others.
    pub fn for_item(seed: u64, stream: u64, i: u64) -> Rng {
        Rng::new(
            seed ^ stream.wrapping_mul(0xA076_1D64_78BD_642F)
                ^ i.wrapping_mul(0xE703_7ED1_A0B4_28DB),
        )
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

const STREAM_POD: u64 = 1;
const STREAM_COUNTER: u64 = 2;
const STREAM_OFFSET: u64 = 3;

/// The labels of series `i`, sorted by name as remote write requires.
pub fn series_labels(seed: u64, i: u64) -> Vec<(String, String)> {
    let instance = i / SERIES_PER_INSTANCE;
    let within = i % SERIES_PER_INSTANCE;
    let job = instance / INSTANCES_PER_JOB;
    let method = METHODS[(within % 4) as usize];
    let route = ROUTES[((within / 4) % 10) as usize];
    let status = STATUSES[(within / 40) as usize];
    let mut rng = Rng::for_item(seed, STREAM_POD, instance);
    let mut pod = format!("svc-{job}-");
    for _ in 0..10 {
        pod.push(POD_ALPHABET[rng.below(POD_ALPHABET.len() as u64) as usize] as char);
    }
    pod.push('-');
    for _ in 0..5 {
        pod.push(POD_ALPHABET[rng.below(POD_ALPHABET.len() as u64) as usize] as char);
    }
    let ip = instance + 1;
    vec![
        ("__name__".into(), METRIC_NAME.into()),
        (
            "instance".into(),
            format!(
                "10.{}.{}.{}:8080",
                (ip >> 16) & 255,
                (ip >> 8) & 255,
                ip & 255
            ),
        ),
        ("job".into(), format!("svc-{job}")),
        ("method".into(), method.into()),
        ("namespace".into(), format!("team-{}", job % 20)),
        ("pod".into(), pod),
        ("region".into(), REGIONS[(job % 3) as usize].into()),
        ("route".into(), route.into()),
        ("status".into(), status.into()),
    ]
}

/// A counter that grows by small random steps; a quarter of them never move.
#[derive(Clone, Debug)]
pub struct Counter {
    rng: Rng,
    value: f64,
    max_step: u64,
}

impl Counter {
    pub fn new(seed: u64, i: u64) -> Counter {
        let mut rng = Rng::for_item(seed, STREAM_COUNTER, i);
        let value = rng.below(50_000) as f64;
        let max_step = match rng.below(8) {
            0 | 1 => 0,
            2..=4 => 3,
            5 | 6 => 30,
            _ => 400,
        };
        Counter {
            rng,
            value,
            max_step,
        }
    }

    /// The value of the next scrape.
    pub fn advance(&mut self) -> f64 {
        if self.max_step > 0 {
            self.value += self.rng.below(self.max_step + 1) as f64;
        }
        self.value
    }
}

/// Scrape offset of an instance within the interval, in milliseconds.
fn scrape_offset_ms(seed: u64, instance: u64, interval_ms: i64) -> i64 {
    Rng::for_item(seed, STREAM_OFFSET, instance).below(interval_ms.max(1) as u64) as i64
}

/// What to build.
#[derive(Clone, Debug, Serialize)]
pub struct Spec {
    /// `steady` or `churn`.
    pub name: &'static str,
    /// Number of distinct series.
    pub series: u64,
    /// Samples per series (scrape rounds).
    pub rounds: u64,
    /// Consecutive samples of each series in one request: 1 = real-time remote write (one
    /// scrape round per request); more = a sender catching up on a backlog.
    pub samples_per_request: u64,
    /// Milliseconds between the rounds.
    pub interval_ms: i64,
    /// Series per request.
    pub batch: u64,
    pub connections: usize,
    pub seed: u64,
    /// Timestamp (ms) of the last round; each instance's samples are a little earlier
    /// (its scrape offset).
    pub end_ms: i64,
}

impl Spec {
    pub fn total_samples(&self) -> u64 {
        self.series * self.rounds
    }

    /// Requests per batch of series.
    pub fn requests_per_batch(&self) -> u64 {
        self.rounds.div_ceil(self.samples_per_request.max(1))
    }

    pub fn batches(&self) -> u64 {
        self.series.div_ceil(self.batch.max(1))
    }
}

/// One pre-built request.
#[derive(Clone, Debug)]
pub struct Request {
    /// Snappy (block format) compressed `WriteRequest`.
    pub body: Bytes,
    pub samples: u32,
}

/// Requests split by connection, in the order each connection sends them: what [`send`]
/// sends.
pub trait Queues: Send + Sync + 'static {
    fn queues(&self) -> &[Vec<Request>];
}

impl Queues for Vec<Vec<Request>> {
    fn queues(&self) -> &[Vec<Request>] {
        self
    }
}

/// All requests of a scenario, split by connection in the order each connection sends them.
#[derive(Debug)]
pub struct Workload {
    pub spec: Spec,
    pub queues: Vec<Vec<Request>>,
    pub requests: u64,
    /// Uncompressed protobuf bytes.
    pub raw_bytes: u64,
    /// Compressed bytes as sent.
    pub body_bytes: u64,
    pub first_ts_ms: i64,
    pub last_ts_ms: i64,
    pub build_secs: f64,
}

impl Queues for Workload {
    fn queues(&self) -> &[Vec<Request>] {
        &self.queues
    }
}

/// Builds every request of `spec` (on all cores: nothing else runs while it does).
///
/// Requests go round by round in time order. Batch `b` (a fixed range of series) always
/// goes over connection `b % connections`, like a Prometheus remote-write shard, so the
/// samples of a series arrive in time order.
pub fn build(spec: &Spec) -> Workload {
    let started = Instant::now();
    let batches = spec.batches();
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(8);
    let next = AtomicUsize::new(0);
    let mut built: Vec<Option<BuiltBatch>> = (0..batches).map(|_| None).collect();
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut out = Vec::new();
                    loop {
                        let b = next.fetch_add(1, Ordering::Relaxed) as u64;
                        if b >= batches {
                            break;
                        }
                        out.push((b, build_batch(spec, b)));
                    }
                    out
                })
            })
            .collect();
        for h in handles {
            for (b, r) in h.join().expect("request builder panicked") {
                built[b as usize] = Some(r);
            }
        }
    });
    let connections = spec.connections.max(1);
    let mut queues: Vec<Vec<Request>> = (0..connections).map(|_| Vec::new()).collect();
    let (mut raw_bytes, mut body_bytes, mut requests) = (0, 0, 0);
    let (mut first_ts_ms, mut last_ts_ms) = (i64::MAX, i64::MIN);
    let mut per_batch: Vec<std::vec::IntoIter<Request>> = Vec::with_capacity(batches as usize);
    for slot in built {
        let b = slot.expect("every batch is built");
        raw_bytes += b.raw_bytes;
        first_ts_ms = first_ts_ms.min(b.first_ts_ms);
        last_ts_ms = last_ts_ms.max(b.last_ts_ms);
        per_batch.push(b.requests.into_iter());
    }
    for _ in 0..spec.requests_per_batch() {
        for (b, it) in per_batch.iter_mut().enumerate() {
            let r = it
                .next()
                .expect("every batch has the same number of requests");
            body_bytes += r.body.len() as u64;
            requests += 1;
            queues[b % connections].push(r);
        }
    }
    Workload {
        spec: spec.clone(),
        queues,
        requests,
        raw_bytes,
        body_bytes,
        first_ts_ms,
        last_ts_ms,
        build_secs: started.elapsed().as_secs_f64(),
    }
}

/// The requests of one batch of series, in time order.
struct BuiltBatch {
    requests: Vec<Request>,
    raw_bytes: u64,
    first_ts_ms: i64,
    last_ts_ms: i64,
}

fn build_batch(spec: &Spec, b: u64) -> BuiltBatch {
    let lo = b * spec.batch;
    let hi = ((b + 1) * spec.batch).min(spec.series);
    let mut series: Vec<EncodeSeries> = (lo..hi)
        .map(|i| EncodeSeries {
            labels: series_labels(spec.seed, i),
            samples: Vec::with_capacity(spec.samples_per_request as usize),
            exemplars: Vec::new(),
        })
        .collect();
    let mut counters: Vec<Counter> = (lo..hi).map(|i| Counter::new(spec.seed, i)).collect();
    let offsets: Vec<i64> = (lo..hi)
        .map(|i| scrape_offset_ms(spec.seed, i / SERIES_PER_INSTANCE, spec.interval_ms))
        .collect();
    let mut encoder = snap::raw::Encoder::new();
    let per_request = spec.samples_per_request.max(1);
    let mut out = Vec::with_capacity(spec.requests_per_batch() as usize);
    let (mut raw_bytes, mut first, mut last) = (0, i64::MAX, i64::MIN);
    for start in (0..spec.rounds).step_by(per_request as usize) {
        let end = (start + per_request).min(spec.rounds);
        for s in &mut series {
            s.samples.clear();
        }
        for round in start..end {
            let round_ts = spec.end_ms - (spec.rounds - 1 - round) as i64 * spec.interval_ms;
            for ((s, c), off) in series.iter_mut().zip(&mut counters).zip(&offsets) {
                let t = round_ts - off;
                first = first.min(t);
                last = last.max(t);
                s.samples.push((t, c.advance()));
            }
        }
        let raw = encode_write_request(&series, &[]);
        raw_bytes += raw.len() as u64;
        let body = encoder
            .compress_vec(&raw)
            .expect("snappy compression of a buffer cannot fail");
        out.push(Request {
            body: Bytes::from(body),
            samples: (series.len() as u64 * (end - start)) as u32,
        });
    }
    BuiltBatch {
        requests: out,
        raw_bytes,
        first_ts_ms: first,
        last_ts_ms: last,
    }
}

/// Counters shared by the connections while the load runs.
#[derive(Debug, Default)]
pub struct Counters {
    pub requests_done: AtomicU64,
    pub samples_acked: AtomicU64,
    pub non_2xx: AtomicU64,
    pub transport_errors: AtomicU64,
    /// Samples in 2xx answers that the server says it did not store (lastmile's
    /// `X-Prometheus-Remote-Write-Samples-Written` header).
    pub samples_not_written: AtomicU64,
}

/// What happened during the load.
#[derive(Clone, Debug, Default, Serialize)]
pub struct LoadOutcome {
    pub wall_secs: f64,
    pub requests_sent: u64,
    pub requests_2xx: u64,
    pub samples_acked: u64,
    pub non_2xx: u64,
    pub transport_errors: u64,
    pub samples_not_written: u64,
    /// The first few errors, verbatim.
    pub errors: Vec<String>,
    /// The load did not finish before its deadline, or stopped because the server was
    /// unreachable.
    pub incomplete: bool,
}

const MAX_ERRORS_KEPT: usize = 8;
/// A connection gives up after this many transport errors in a row (the server is gone).
const MAX_CONSECUTIVE_TRANSPORT_ERRORS: u32 = 10;

/// Sends the workload to `url`, one task per connection, until done or `deadline`.
/// `on_tick` is called every `tick` with the counters and the elapsed time. Returns when
/// every connection has sent its queue (a barrier: nothing of a later call can overtake).
pub async fn send<W: Queues>(
    client: &reqwest::Client,
    url: &str,
    work: Arc<W>,
    deadline: Duration,
    tick: Duration,
    mut on_tick: impl FnMut(&Counters, Duration),
) -> LoadOutcome {
    let counters = Arc::new(Counters::default());
    let errors = Arc::new(Mutex::new(Vec::<String>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    let total_requests: u64 = work.queues().iter().map(|q| q.len() as u64).sum();
    for c in 0..work.queues().len() {
        let (client, url, work) = (client.clone(), url.to_string(), work.clone());
        let (counters, errors, stop) = (counters.clone(), errors.clone(), stop.clone());
        tasks.spawn(async move {
            let mut consecutive = 0;
            for req in &work.queues()[c] {
                if stop.load(Ordering::Relaxed) {
                    return false;
                }
                match send_one(&client, &url, req).await {
                    Ok(Answer::Stored(n)) => {
                        consecutive = 0;
                        counters.samples_acked.fetch_add(n, Ordering::Relaxed);
                    }
                    Ok(Answer::Partial { stored, detail }) => {
                        consecutive = 0;
                        counters.samples_acked.fetch_add(stored, Ordering::Relaxed);
                        counters
                            .samples_not_written
                            .fetch_add(u64::from(req.samples).saturating_sub(stored), Ordering::Relaxed);
                        keep_error(&errors, detail);
                    }
                    Ok(Answer::Refused(detail)) => {
                        consecutive = 0;
                        counters.non_2xx.fetch_add(1, Ordering::Relaxed);
                        keep_error(&errors, detail);
                    }
                    Err(e) => {
                        consecutive += 1;
                        counters.transport_errors.fetch_add(1, Ordering::Relaxed);
                        keep_error(&errors, format!("transport error: {e:#}"));
                        if consecutive >= MAX_CONSECUTIVE_TRANSPORT_ERRORS {
                            keep_error(&errors, format!("connection {c} gave up after {consecutive} transport errors in a row"));
                            stop.store(true, Ordering::Relaxed);
                            return false;
                        }
                    }
                }
                counters.requests_done.fetch_add(1, Ordering::Relaxed);
            }
            true
        });
    }
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + tick, tick);
    let end = tokio::time::Instant::now() + deadline;
    let mut complete = true;
    loop {
        tokio::select! {
            joined = tasks.join_next() => match joined {
                None => break,
                Some(Ok(finished)) => complete &= finished,
                Some(Err(e)) => {
                    complete = false;
                    keep_error(&errors, format!("a connection task failed: {e}"));
                }
            },
            _ = ticker.tick() => on_tick(&counters, started.elapsed()),
            _ = tokio::time::sleep_until(end) => {
                stop.store(true, Ordering::Relaxed);
                tasks.abort_all();
                complete = false;
                keep_error(&errors, format!("the load did not finish within {} s", deadline.as_secs()));
                while tasks.join_next().await.is_some() {}
                break;
            }
        }
    }
    let wall_secs = started.elapsed().as_secs_f64();
    let requests_sent = counters.requests_done.load(Ordering::Relaxed);
    let non_2xx = counters.non_2xx.load(Ordering::Relaxed);
    let transport_errors = counters.transport_errors.load(Ordering::Relaxed);
    let errors = errors.lock().map(|e| e.clone()).unwrap_or_default();
    LoadOutcome {
        wall_secs,
        requests_sent,
        requests_2xx: requests_sent - non_2xx - transport_errors,
        samples_acked: counters.samples_acked.load(Ordering::Relaxed),
        non_2xx,
        transport_errors,
        samples_not_written: counters.samples_not_written.load(Ordering::Relaxed),
        errors,
        incomplete: !complete || requests_sent < total_requests,
    }
}

fn keep_error(errors: &Mutex<Vec<String>>, e: String) {
    if let Ok(mut v) = errors.lock()
        && v.len() < MAX_ERRORS_KEPT
    {
        v.push(e);
    }
}

enum Answer {
    /// 2xx, all samples stored (as far as the server says).
    Stored(u64),
    /// 2xx, but the server says it stored fewer samples than sent.
    Partial { stored: u64, detail: String },
    /// Not 2xx.
    Refused(String),
}

async fn send_one(client: &reqwest::Client, url: &str, req: &Request) -> anyhow::Result<Answer> {
    let resp = client
        .post(url)
        .header("Content-Encoding", "snappy")
        .header("Content-Type", "application/x-protobuf")
        .header("X-Prometheus-Remote-Write-Version", "0.1.0")
        .body(req.body.clone())
        .send()
        .await?;
    let status = resp.status();
    let written = resp
        .headers()
        .get("X-Prometheus-Remote-Write-Samples-Written")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    // Read the whole answer so the connection can be reused.
    let body = resp.bytes().await?;
    let sent = u64::from(req.samples);
    if !status.is_success() {
        return Ok(Answer::Refused(format!(
            "HTTP {status}: {}",
            crate::servers::truncate(String::from_utf8_lossy(&body).trim(), 500)
        )));
    }
    match written {
        Some(n) if n < sent => Ok(Answer::Partial {
            stored: n,
            detail: format!(
                "HTTP {status}, {n} of {sent} samples written: {}",
                crate::servers::truncate(String::from_utf8_lossy(&body).trim(), 500)
            ),
        }),
        _ => Ok(Answer::Stored(sent)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lastmile_receivers::remote_write::decode_write_request;

    fn spec(series: u64, rounds: u64) -> Spec {
        Spec {
            name: "test",
            series,
            rounds,
            samples_per_request: 1,
            interval_ms: 15_000,
            batch: 7,
            connections: 3,
            seed: 42,
            end_ms: 1_700_000_000_000,
        }
    }

    #[test]
    fn labels_are_sorted_unique_and_deterministic() {
        let a = series_labels(1, 12_345);
        assert_eq!(a, series_labels(1, 12_345));
        assert_eq!(a.len(), 9);
        assert!(a.windows(2).all(|w| w[0].0 < w[1].0), "{a:?}");
        let all: std::collections::HashSet<_> = (0..2000).map(|i| series_labels(1, i)).collect();
        assert_eq!(all.len(), 2000);
    }

    #[test]
    fn counters_never_decrease() {
        for i in 0..100 {
            let mut c = Counter::new(3, i);
            let mut prev = c.advance();
            for _ in 0..50 {
                let v = c.advance();
                assert!(v >= prev);
                prev = v;
            }
        }
    }

    #[test]
    fn workload_decodes_and_keeps_each_series_in_time_order() {
        let s = spec(50, 4);
        let w = build(&s);
        assert_eq!(w.requests, 8 * 4);
        assert_eq!(w.queues.len(), 3);
        assert!(w.last_ts_ms <= s.end_ms && w.first_ts_ms >= s.end_ms - 4 * 15_000);
        let mut samples = 0;
        let mut last_seen = std::collections::HashMap::<Vec<(String, String)>, (i64, f64)>::new();
        for q in &w.queues {
            for r in q {
                let raw = snap::raw::Decoder::new().decompress_vec(&r.body).unwrap();
                let (batch, _) = decode_write_request(&raw).unwrap();
                assert_eq!(batch.num_samples(), r.samples as usize);
                samples += batch.num_samples();
                for series in &batch.series {
                    let labels: Vec<(String, String)> = batch
                        .series_labels(series)
                        .iter()
                        .map(|l| (l.name.to_string(), l.value.to_string()))
                        .collect();
                    for smp in batch.series_samples(series) {
                        if let Some((t, v)) = last_seen.get(&labels) {
                            assert!(smp.t > *t && smp.v >= *v);
                        }
                        last_seen.insert(labels.clone(), (smp.t, smp.v));
                    }
                }
            }
        }
        assert_eq!(samples as u64, s.total_samples());
        assert_eq!(last_seen.len(), 50);
    }

    #[test]
    fn several_samples_per_request_keep_the_totals() {
        let mut s = spec(30, 5);
        s.samples_per_request = 2;
        let w = build(&s);
        // 5 batches of ≤7 series × 3 requests (2 + 2 + 1 rounds).
        assert_eq!(w.requests, 5 * 3);
        let total: u64 = w
            .queues
            .iter()
            .flatten()
            .map(|r| u64::from(r.samples))
            .sum();
        assert_eq!(total, 150);
        let first = &w.queues[0][0];
        let raw = snap::raw::Decoder::new()
            .decompress_vec(&first.body)
            .unwrap();
        let (batch, _) = decode_write_request(&raw).unwrap();
        assert_eq!(batch.num_samples(), 14);
    }
}
