//! The span store's self-metrics, registered on the server's `/metrics`.

use lastmile_store::WalMetrics;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Debug, Default)]
pub struct TraceStoreMetrics {
    pub spans_appended: Counter,
    pub head_spans: Gauge,
    pub blocks: Gauge,
    pub block_bytes: Gauge,
    pub head_flushes: Counter,
    /// Spans left out of blocks because tail sampling dropped their trace.
    pub spans_sampled_out: Counter,
    pub wal: WalMetrics,
}

impl TraceStoreMetrics {
    pub fn register(&self, r: &mut Registry) {
        r.register(
            "lastmile_traces_spans_appended",
            "Spans stored",
            self.spans_appended.clone(),
        );
        r.register(
            "lastmile_traces_head_spans",
            "Spans in the in-memory head (not yet in a block)",
            self.head_spans.clone(),
        );
        r.register(
            "lastmile_traces_blocks",
            "Span blocks on disk",
            self.blocks.clone(),
        );
        r.register(
            "lastmile_traces_block_bytes",
            "Bytes of span blocks on disk",
            self.block_bytes.clone(),
        );
        r.register(
            "lastmile_traces_head_flushes",
            "Heads written as blocks",
            self.head_flushes.clone(),
        );
        r.register(
            "lastmile_traces_spans_sampled_out",
            "Spans left out of blocks because tail sampling dropped their trace",
            self.spans_sampled_out.clone(),
        );
        self.wal.register(r, "lastmile_traces");
    }
}
