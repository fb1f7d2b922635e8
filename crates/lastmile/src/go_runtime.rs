//! Serve's `go_runtime:` watcher: the eBPF loop runs on its own thread; its series go into
//! the store through the same write path remote write uses, its profiles into the data
//! directory (served at /api/v1/go-runtime/profiles).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use lastmile_ebpf::metrics::{Series, write_batch};
use lastmile_ebpf::watch::{WatchEvent, WatchOptions};
use lastmile_store::Db;

pub struct GoRuntimeWatcher {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    writer: tokio::task::JoinHandle<()>,
}

enum Out {
    Series(i64, Vec<Series>),
    Profile(Vec<u8>),
}

pub fn spawn(opts: WatchOptions, db: Arc<Db>, data_dir: PathBuf) -> GoRuntimeWatcher {
    let stop = Arc::new(AtomicBool::new(false));
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Out>(16);
    let stop2 = stop.clone();
    let thread = std::thread::Builder::new()
        .name("go-runtime-ebpf".into())
        .spawn(move || {
            let mut report = |ev: WatchEvent<'_>| match ev {
                WatchEvent::Attached { pid, description } => {
                    tracing::info!(pid, %description, "watching a Go process")
                }
                WatchEvent::AttachFailed { pid, error } => {
                    tracing::warn!(pid, %error, "cannot probe a Go process")
                }
                WatchEvent::Exited { pid, .. } => tracing::info!(pid, "watched Go process exited"),
                WatchEvent::Estimate { pid, kind, estimate, .. } => tracing::info!(
                    pid,
                    kind,
                    expected_overhead_pct = estimate.expected_overhead * 100.0,
                    events_per_second = estimate.events_per_second,
                    "profile window running"
                ),
                WatchEvent::Profile(p) => match serde_json::to_vec(p) {
                    Ok(json) => {
                        let _ = tx.blocking_send(Out::Profile(json));
                    }
                    Err(e) => tracing::error!(error = %e, "cannot encode a profile"),
                },
                WatchEvent::Series { t_ms, series } => {
                    let _ = tx.blocking_send(Out::Series(t_ms, series));
                }
                WatchEvent::Finished { .. } => {}
            };
            if let Err(e) = lastmile_ebpf::watch::run(&opts, stop2, &mut report) {
                tracing::error!(error = %e, "the go_runtime watcher stopped; serving continues without it");
            }
        })
        .ok();
    let writer = tokio::spawn(async move {
        while let Some(out) = rx.recv().await {
            match out {
                Out::Series(t_ms, series) => {
                    let (batch, _) = write_batch(&series, t_ms);
                    if let Err(e) = db.write(&batch).await {
                        tracing::error!(error = %e, "cannot store Go runtime series");
                    }
                }
                Out::Profile(json) => {
                    let dir = data_dir.clone();
                    let r = tokio::task::spawn_blocking(move || {
                        lastmile_api::go_runtime_profiles::store(&dir, &json)
                    })
                    .await;
                    if let Ok(Err(e)) = r {
                        tracing::error!(error = ?e, "cannot store a Go runtime profile");
                    }
                }
            }
        }
    });
    GoRuntimeWatcher {
        stop,
        thread,
        writer,
    }
}

impl GoRuntimeWatcher {
    /// Detaches every probe (waits for the loop to finish its current step).
    pub async fn shutdown(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = tokio::task::spawn_blocking(move || t.join()).await;
        }
        let _ = self.writer.await;
    }
}
