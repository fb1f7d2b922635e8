//! A log push acknowledged with 204 survives `kill -9` (spec C5), whether the lines were
//! still in the WAL only or already in a committed index.
//!
//! Writers push snappy-protobuf batches concurrently; after a random number of
//! acknowledgements, while pushes are in flight, the server gets SIGKILL. It restarts on
//! the same directory; every acknowledged line must be there exactly once, and nothing
//! that was never sent. One cycle commits the index often (`logs.commit_interval: 200ms`)
//! so kills land before, during and after index commits.
//!
//! The seed of the random moments is printed; set `LASTMILE_TEST_SEED` to replay it.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use lastmile_model::{Labels, LogBatch, LogEntry, LogStream};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

const WRITERS: usize = 3;
const LINES_PER_PUSH: usize = 5;
const MAX_PUSHES: usize = 20_000;

#[derive(Default)]
struct Log {
    sent: BTreeSet<String>,
    acked: BTreeSet<String>,
    unexpected: Vec<String>,
}

/// Every line stored, by fetching `{test="durability"}` in pages (timestamps are unique).
fn stored_lines(server: &Lastmile, base_ns: i64) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    let mut start = base_ns - 1;
    let end = base_ns + 10_000_000_000_000;
    loop {
        let r = server.get(&format!(
            "/loki/api/v1/query_range?query={}&start={start}&end={end}&limit=5000&direction=forward",
            enc(r#"{test="durability"}"#)
        ));
        assert_eq!(r.status, 200, "{}", r.text());
        let v = r.json();
        let mut page: Vec<(i64, String)> = Vec::new();
        for s in v["data"]["result"].as_array().unwrap() {
            for e in s["values"].as_array().unwrap() {
                page.push((
                    e[0].as_str().unwrap().parse().unwrap(),
                    e[1].as_str().unwrap().to_string(),
                ));
            }
        }
        if page.is_empty() {
            return out;
        }
        let last = page.iter().map(|p| p.0).max().unwrap();
        for (_, line) in page {
            *out.entry(line).or_default() += 1;
        }
        start = last + 1;
    }
}

fn verify(server: &Lastmile, log: &Log, base_ns: i64, when: &str) {
    let got = stored_lines(server, base_ns);
    let lost: Vec<&String> = log.acked.iter().filter(|l| !got.contains_key(*l)).collect();
    assert!(
        lost.is_empty(),
        "{when}: {} of {} acknowledged lines lost, e.g. {:?}\nserver stderr:\n{}",
        lost.len(),
        log.acked.len(),
        &lost[..lost.len().min(5)],
        server.logs()
    );
    let dup: Vec<(&String, &usize)> = got.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        dup.is_empty(),
        "{when}: lines stored twice: {:?}",
        &dup[..dup.len().min(5)]
    );
    let invented: Vec<&String> = got.keys().filter(|l| !log.sent.contains(*l)).collect();
    assert!(
        invented.is_empty(),
        "{when}: lines never sent: {invented:?}"
    );
    eprintln!(
        "{when}: all {} acknowledged lines present once ({} stored)",
        log.acked.len(),
        got.len()
    );
}

#[test]
fn acknowledged_log_pushes_survive_kill_9() {
    let seed: u64 = match std::env::var("LASTMILE_TEST_SEED") {
        Ok(s) => s.parse().expect("LASTMILE_TEST_SEED must be an integer"),
        Err(_) => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64,
    };
    eprintln!("log durability test seed: {seed} (set LASTMILE_TEST_SEED={seed} to replay)");
    let mut rng = SmallRng::seed_from_u64(seed);
    let dir = TestDir::new();
    let log = Arc::new(Mutex::new(Log::default()));
    let base_ns = now_ms() * 1_000_000 - 3_600_000_000_000;
    let fast_commits = Some("logs:\n  commit_interval: 200ms\n");
    let cycles = [None, fast_commits, fast_commits];
    let next_ts = Arc::new(AtomicUsize::new(0));
    for (cycle, config) in cycles.iter().enumerate() {
        let opts = ServeOptions {
            config: config.map(str::to_string),
            ..Default::default()
        };
        let mut server = Lastmile::start_with(&dir, &opts);
        verify(
            &server,
            &log.lock().unwrap(),
            base_ns,
            &format!("restart before cycle {cycle}"),
        );
        let kill_after = rng.random_range(10..=300usize);
        let acked_before = log.lock().unwrap().acked.len() / LINES_PER_PUSH;
        let in_flight = Arc::new(AtomicUsize::new(0));
        let writers: Vec<_> = (0..WRITERS)
            .map(|w| {
                let (log, in_flight, next_ts, addr) =
                    (log.clone(), in_flight.clone(), next_ts.clone(), server.addr);
                std::thread::spawn(move || {
                    for i in 0..MAX_PUSHES {
                        let entries: Vec<LogEntry> = (0..LINES_PER_PUSH)
                            .map(|k| {
                                let ts =
                                    base_ns + next_ts.fetch_add(1, Ordering::SeqCst) as i64 * 1000;
                                LogEntry::new(
                                    ts,
                                    format!("cycle={cycle} writer={w} push={i} line={k}"),
                                )
                            })
                            .collect();
                        let texts: Vec<String> = entries.iter().map(|e| e.line.clone()).collect();
                        let batch = LogBatch {
                            streams: vec![LogStream {
                                labels: Labels::from_pairs([
                                    ("test", "durability"),
                                    ("writer", &w.to_string()),
                                ]),
                                entries,
                            }],
                        };
                        let body = snap::raw::Encoder::new()
                            .compress_vec(&lastmile_receivers::loki::encode_push_proto(&batch))
                            .unwrap();
                        log.lock().unwrap().sent.extend(texts.iter().cloned());
                        in_flight.fetch_add(1, Ordering::SeqCst);
                        let r = http_request(
                            addr,
                            "POST",
                            "/loki/api/v1/push",
                            &[("Content-Type", "application/x-protobuf")],
                            &body,
                            Framing::ContentLength,
                        );
                        in_flight.fetch_sub(1, Ordering::SeqCst);
                        match r {
                            Ok(r) if r.status == 204 => log.lock().unwrap().acked.extend(texts),
                            Ok(r) => {
                                log.lock().unwrap().unexpected.push(format!(
                                    "writer {w} push {i}: {} {}",
                                    r.status,
                                    r.text()
                                ));
                                return;
                            }
                            Err(_) => return,
                        }
                    }
                })
            })
            .collect();
        wait_for(
            &format!("{kill_after} acknowledged pushes"),
            Duration::from_secs(120),
            |last| {
                let l = log.lock().unwrap();
                assert!(
                    l.unexpected.is_empty(),
                    "unexpected answers: {:?}",
                    l.unexpected
                );
                let n = l.acked.len() / LINES_PER_PUSH - acked_before;
                *last = format!("{n} acknowledged");
                (n >= kill_after).then_some(())
            },
        );
        wait_for("a push in flight", Duration::from_secs(30), |_| {
            (in_flight.load(Ordering::SeqCst) > 0).then_some(())
        });
        server.kill9();
        for w in writers {
            w.join().expect("writer thread panicked");
        }
        let l = log.lock().unwrap();
        assert!(
            l.unexpected.is_empty(),
            "unexpected answers: {:?}",
            l.unexpected
        );
        eprintln!(
            "cycle {cycle}: killed after {} acknowledged pushes in all",
            l.acked.len() / LINES_PER_PUSH
        );
    }
    let server = Lastmile::start(&dir);
    verify(&server, &log.lock().unwrap(), base_ns, "final restart");
}
