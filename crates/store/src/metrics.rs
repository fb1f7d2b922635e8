//! The store's self-metrics, registered on the server's `/metrics`.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: &'static str,
}

/// What a write-ahead log reports; each store that keeps a WAL (metrics, spans, logs)
/// registers its own under its own names.
#[derive(Debug, Clone)]
pub struct WalMetrics {
    pub fsync_seconds: Histogram,
    pub bytes_written: Counter,
}

impl Default for WalMetrics {
    fn default() -> Self {
        WalMetrics {
            // 50 µs .. ~1.6 s
            fsync_seconds: Histogram::new(exponential_buckets(0.00005, 2.0, 16)),
            bytes_written: Counter::default(),
        }
    }
}

impl WalMetrics {
    /// Registers `<prefix>_wal_fsync_duration_seconds` and `<prefix>_wal_written_bytes`.
    pub fn register(&self, r: &mut Registry, prefix: &str) {
        r.register(
            format!("{prefix}_wal_fsync_duration_seconds"),
            "Duration of WAL fdatasync calls (one per group commit)",
            self.fsync_seconds.clone(),
        );
        r.register(
            format!("{prefix}_wal_written_bytes"),
            "Bytes written to the WAL",
            self.bytes_written.clone(),
        );
    }
}

impl From<std::sync::Arc<StoreMetrics>> for WalMetrics {
    fn from(m: std::sync::Arc<StoreMetrics>) -> Self {
        m.wal.clone()
    }
}

#[derive(Debug, Default)]
pub struct StoreMetrics {
    pub samples_appended: Counter,
    pub samples_rejected: Family<ReasonLabel, Counter>,
    pub exemplars_appended: Counter,
    pub series_created: Counter,
    pub series_removed: Counter,
    pub wal: WalMetrics,
    pub head_series: Gauge,
    pub head_chunk_bytes: Gauge,
    pub block_bytes: Gauge,
    pub blocks: Gauge,
    pub compactions: Counter,
    pub head_flushes: Counter,
}

impl StoreMetrics {
    pub fn register(&self, r: &mut Registry) {
        r.register(
            "lastmile_tsdb_samples_appended",
            "Samples stored",
            self.samples_appended.clone(),
        );
        r.register(
            "lastmile_tsdb_samples_rejected",
            "Samples refused by the store, by reason (out_of_order, too_old, duplicate_timestamp, too_far_in_future)",
            self.samples_rejected.clone(),
        );
        r.register(
            "lastmile_tsdb_exemplars_appended",
            "Exemplars stored",
            self.exemplars_appended.clone(),
        );
        r.register(
            "lastmile_tsdb_series_created",
            "Series created in the head",
            self.series_created.clone(),
        );
        r.register(
            "lastmile_tsdb_series_removed",
            "Series removed from the head after their data moved to blocks",
            self.series_removed.clone(),
        );
        self.wal.register(r, "lastmile_tsdb");
        r.register(
            "lastmile_tsdb_head_series",
            "Active series in the in-memory head",
            self.head_series.clone(),
        );
        r.register(
            "lastmile_tsdb_head_chunk_bytes",
            "Bytes of compressed samples held in the head",
            self.head_chunk_bytes.clone(),
        );
        r.register(
            "lastmile_tsdb_block_bytes",
            "Bytes of persisted blocks on disk",
            self.block_bytes.clone(),
        );
        r.register(
            "lastmile_tsdb_blocks",
            "Persisted blocks on disk",
            self.blocks.clone(),
        );
        r.register(
            "lastmile_tsdb_compactions",
            "Block compactions completed",
            self.compactions.clone(),
        );
        r.register(
            "lastmile_tsdb_head_flushes",
            "Head flushes into blocks completed",
            self.head_flushes.clone(),
        );
    }
}
