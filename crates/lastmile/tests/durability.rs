//! A write acknowledged with 2xx survives `kill -9` (spec C5).
//!
//! Writers push remote-write requests concurrently; after a random number of
//! acknowledgements, while requests are in flight, the server gets SIGKILL. It is
//! restarted on the same data directory and every acknowledged sample must be there, with
//! its exact value; nothing that was never sent may appear. Several cycles accumulate in
//! one directory, one of them with `storage.wal_sync: write`.
//!
//! The seed of the random moments is printed; set `LASTMILE_TEST_SEED` to replay it.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use lastmile_receivers::remote_write::EncodeSeries;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

const WRITERS: usize = 3;
/// Series every writer appends to in each of its requests.
const SERIES_PER_WRITER: usize = 5;
/// Upper bound of requests per writer per cycle, so the loop ends whatever happens.
const MAX_REQUESTS: usize = 20_000;

/// One request's samples: (labels, timestamp, value).
type Samples = Vec<(Labels, i64, f64)>;

/// Request `i` of `writer` in `cycle`: one sample for each of the writer's series, plus
/// `new_series` series created by this request (so series records are covered too).
fn build_request(
    cycle: usize,
    writer: usize,
    i: usize,
    base_ms: i64,
    new_series: usize,
) -> (Vec<EncodeSeries>, Samples) {
    let cycle_s = cycle.to_string();
    let writer_s = writer.to_string();
    let i_s = i.to_string();
    let t = base_ms + i as i64;
    let value = |k: usize| ((cycle << 44) | (writer << 36) | (i << 8) | k) as f64 + 0.25;
    let mut enc = Vec::new();
    for k in 0..SERIES_PER_WRITER {
        let k_s = k.to_string();
        enc.push(series(
            &[
                ("__name__", "durability_samples"),
                ("cycle", &cycle_s),
                ("writer", &writer_s),
                ("series", &k_s),
            ],
            &[(t, value(k))],
        ));
    }
    for k in 0..new_series {
        let k_s = k.to_string();
        enc.push(series(
            &[
                ("__name__", "durability_new_series"),
                ("cycle", &cycle_s),
                ("writer", &writer_s),
                ("req", &i_s),
                ("k", &k_s),
            ],
            &[(t, value(128 + k))],
        ));
    }
    let samples = enc
        .iter()
        .map(|s| (label_map(&s.labels), s.samples[0].0, s.samples[0].1))
        .collect();
    (enc, samples)
}

#[derive(Default)]
struct Log {
    sent: Vec<Samples>,
    acked: Vec<Samples>,
    unexpected: Vec<String>,
}

/// Every acknowledged sample is present with its value; every present sample was sent.
fn verify(server: &Lastmile, log: &Log, when: &str) {
    let got = server.export(r#"{__name__=~"durability_.+"}"#, None, None);
    let got: HashMap<(&Labels, i64), f64> = got
        .iter()
        .flat_map(|(l, s)| s.iter().map(move |&(t, v)| ((l, t), v)))
        .collect();
    let mut lost = Vec::new();
    let mut acked_samples = 0usize;
    for (l, t, v) in log.acked.iter().flatten() {
        acked_samples += 1;
        match got.get(&(l, *t)) {
            Some(g) if same_value(*g, *v) => {}
            other => lost.push(format!("{l:?} @{t}: want {v}, have {other:?}")),
        }
    }
    assert!(
        lost.is_empty(),
        "{when}: {} of {acked_samples} acknowledged samples lost or changed, e.g.:\n{}\nserver stderr:\n{}",
        lost.len(),
        lost.iter().take(10).cloned().collect::<Vec<_>>().join("\n"),
        server.logs()
    );
    let sent: HashMap<(&Labels, i64), f64> = log
        .sent
        .iter()
        .flatten()
        .map(|(l, t, v)| ((l, *t), *v))
        .collect();
    let invented: Vec<String> = got
        .iter()
        .filter(|(k, v)| !sent.get(k).is_some_and(|s| same_value(*s, **v)))
        .map(|((l, t), v)| format!("{l:?} @{t} = {v}"))
        .take(10)
        .collect();
    assert!(
        invented.is_empty(),
        "{when}: samples that were never sent appeared:\n{}",
        invented.join("\n")
    );
    eprintln!(
        "{when}: all {acked_samples} acknowledged samples present ({} samples stored)",
        got.len()
    );
}

#[test]
fn acknowledged_writes_survive_kill_9() {
    let seed: u64 = match std::env::var("LASTMILE_TEST_SEED") {
        Ok(s) => s.parse().expect("LASTMILE_TEST_SEED must be an integer"),
        Err(_) => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64,
    };
    eprintln!("durability test seed: {seed} (set LASTMILE_TEST_SEED={seed} to replay)");
    let mut rng = SmallRng::seed_from_u64(seed);
    let dir = TestDir::new();
    let log = Arc::new(Mutex::new(Log::default()));
    let write_mode = Some("storage:\n  wal_sync: write\n  wal_sync_interval: 1s\n");
    let cycles = [
        ("fsync", None),
        ("write", write_mode),
        ("fsync", None),
        ("fsync", None),
    ];

    for (cycle, (mode, config)) in cycles.iter().enumerate() {
        let opts = ServeOptions {
            config: config.map(str::to_string),
            ..Default::default()
        };
        let mut server = Lastmile::start_with(&dir, &opts);
        verify(
            &server,
            &log.lock().unwrap(),
            &format!("restart before cycle {cycle}"),
        );

        let kill_after = rng.random_range(10..=1000usize);
        let writer_seeds: Vec<u64> = (0..WRITERS).map(|_| rng.random()).collect();
        let base_ms = now_ms();
        let in_flight = Arc::new(AtomicUsize::new(0));
        let writers: Vec<_> = (0..WRITERS)
            .map(|w| {
                let (log, in_flight, addr) = (log.clone(), in_flight.clone(), server.addr);
                let mut wrng = SmallRng::seed_from_u64(writer_seeds[w]);
                std::thread::spawn(move || {
                    for i in 0..MAX_REQUESTS {
                        let new_series = wrng.random_range(1..=40usize);
                        let (enc, samples) = build_request(cycle, w, i, base_ms, new_series);
                        let body = snappy_write_request(&enc, &[]);
                        log.lock().unwrap().sent.push(samples.clone());
                        in_flight.fetch_add(1, Ordering::SeqCst);
                        let r = http_request(
                            addr,
                            "POST",
                            "/api/v1/write",
                            &[
                                ("Content-Type", "application/x-protobuf"),
                                ("Content-Encoding", "snappy"),
                            ],
                            &body,
                            Framing::ContentLength,
                        );
                        in_flight.fetch_sub(1, Ordering::SeqCst);
                        match r {
                            Ok(r) if r.status == 204 => log.lock().unwrap().acked.push(samples),
                            Ok(r) => {
                                log.lock().unwrap().unexpected.push(format!(
                                    "writer {w} request {i}: {} {}",
                                    r.status,
                                    r.text()
                                ));
                                return;
                            }
                            // The server is gone: this request is not acknowledged.
                            Err(_) => return,
                        }
                    }
                })
            })
            .collect();

        let acked_before = log.lock().unwrap().acked.len();
        wait_for(
            &format!("{kill_after} acknowledged requests"),
            Duration::from_secs(120),
            |last| {
                let l = log.lock().unwrap();
                *last = format!(
                    "{} acknowledged, unexpected answers: {:?}",
                    l.acked.len() - acked_before,
                    l.unexpected
                );
                assert!(
                    l.unexpected.is_empty(),
                    "unexpected answers: {:?}",
                    l.unexpected
                );
                (l.acked.len() - acked_before >= kill_after).then_some(())
            },
        );
        wait_for("a request in flight", Duration::from_secs(30), |_| {
            (in_flight.load(Ordering::SeqCst) > 0).then_some(())
        });
        server.kill9();
        for w in writers {
            w.join().expect("writer thread panicked");
        }
        {
            let l = log.lock().unwrap();
            assert!(
                l.unexpected.is_empty(),
                "unexpected answers: {:?}",
                l.unexpected
            );
            eprintln!(
                "cycle {cycle} (wal_sync {mode}): killed after {} acknowledged requests this cycle ({} sent in all)",
                l.acked.len() - acked_before,
                l.sent.len()
            );
        }
        drop(server);
    }
    let server = Lastmile::start(&dir);
    verify(&server, &log.lock().unwrap(), "final restart");
}
