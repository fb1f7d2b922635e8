//! Results as Prometheus series: for the embedded store (a [`WriteBatch`], the same path
//! remote write takes) or for a remote-write push to any Prometheus-compatible server.

use lastmile_model::{MetricType, WriteBatch};
use lastmile_receivers::remote_write::{EncodeMetadata, EncodeSeries, encode_write_request};

/// Upper bounds of `go_ebpf_stw_pause_seconds`; the C program's `bucket_of` uses the same.
pub const STW_BUCKETS_SECONDS: [f64; 14] = [
    5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 5e-2, 1e-1,
];

/// One sample of one series; `labels` includes `__name__`.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

impl Series {
    pub fn new(name: &str, resource: &[(String, String)], extra: &[(&str, &str)], v: f64) -> Self {
        let mut labels = Vec::with_capacity(resource.len() + extra.len() + 1);
        labels.push(("__name__".to_owned(), name.to_owned()));
        labels.extend(resource.iter().cloned());
        labels.extend(
            extra
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        );
        labels.sort();
        labels.dedup_by(|a, b| a.0 == b.0);
        Series { labels, value: v }
    }

    pub fn name(&self) -> &str {
        self.labels
            .iter()
            .find(|(k, _)| k == "__name__")
            .map(|(_, v)| v.as_str())
            .unwrap_or("")
    }

    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// The metric families lastmile-ebpf exports, with their type and help.
pub const FAMILIES: &[(&str, MetricType, &str)] = &[
    (
        "go_ebpf_gc_cycles_total",
        MetricType::Counter,
        "Completed GC cycles (runtime.gcMarkTermination entries) seen by eBPF.",
    ),
    (
        "go_ebpf_gc_cycles_started_total",
        MetricType::Counter,
        "GC cycles started (runtime.gcStart reading the clock to stop the world), as eBPF saw them.",
    ),
    (
        "go_ebpf_stw_pause_seconds",
        MetricType::Histogram,
        "Stop-the-world pauses as Go counts them, by reason: from the nanotime a GC reads before stopping (stopTheWorldWithSema entry for other reasons) to Go's own end of the pause.",
    ),
    (
        "go_ebpf_stw_pause_max_seconds",
        MetricType::Gauge,
        "Longest stop-the-world pause since the probes were attached, by reason.",
    ),
    (
        "go_ebpf_goroutine_parks_total",
        MetricType::Counter,
        "Goroutine parks (runtime.gopark) during park-profile windows, by wait reason.",
    ),
    (
        "go_ebpf_goroutine_blocked_seconds_total",
        MetricType::Counter,
        "Time goroutines parked during park-profile windows spent blocked until runtime.ready, by wait reason.",
    ),
    (
        "go_ebpf_goroutine_park_site_parks_total",
        MetricType::Counter,
        "Parks of the top blocking sites (first frame outside the runtime and sync packages).",
    ),
    (
        "go_ebpf_alloc_sampled_bytes_total",
        MetricType::Counter,
        "Bytes of the allocations Go's memory profiler sampled during allocation-profile windows, by site.",
    ),
    (
        "go_ebpf_probe_hits_total",
        MetricType::Counter,
        "Uprobe hits by probe (all watched processes).",
    ),
    (
        "go_ebpf_validation_ratio",
        MetricType::Gauge,
        "eBPF-measured GC pause statistic divided by the process's own account of it (1 = agreement).",
    ),
];

/// Encodes series as a snappy-compressed remote-write request body, with metadata.
pub fn remote_write_body(series: &[Series], t_ms: i64) -> Vec<u8> {
    let enc: Vec<EncodeSeries> = series
        .iter()
        .map(|s| EncodeSeries {
            labels: s.labels.clone(),
            samples: vec![(t_ms, s.value)],
            exemplars: Vec::new(),
        })
        .collect();
    let meta: Vec<EncodeMetadata> = FAMILIES
        .iter()
        .map(|(name, t, help)| EncodeMetadata {
            metric_family_name: (*name).to_owned(),
            metric_type: *t,
            help: (*help).to_owned(),
            unit: String::new(),
        })
        .collect();
    let raw = encode_write_request(&enc, &meta);
    snap::raw::Encoder::new()
        .compress_vec(&raw)
        .unwrap_or_default()
}

/// A [`WriteBatch`] borrowing from `series`, for the embedded store. Series that the batch
/// refuses (impossible for what this crate builds) are skipped and counted.
pub fn write_batch(series: &[Series], t_ms: i64) -> (WriteBatch<'_>, usize) {
    let mut b = WriteBatch::with_capacity(series.len(), series.len());
    let mut refused = 0;
    for s in series {
        b.begin_series();
        for (k, v) in &s.labels {
            b.push_label(k, v);
        }
        b.push_sample(t_ms, s.value);
        if b.finish_series().is_err() {
            refused += 1;
            // finish_series left the labels in place: drop them with the series.
            let keep = b.series.last().map(|s| s.labels.end as usize).unwrap_or(0);
            b.labels.truncate(keep);
            let keep = b.series.last().map(|s| s.samples.end as usize).unwrap_or(0);
            b.samples.truncate(keep);
        }
    }
    (b, refused)
}

/// Prometheus text exposition of series (for `--print` and for people).
pub fn to_text(series: &[Series]) -> String {
    let mut out = String::new();
    for s in series {
        out.push_str(s.name());
        let rest: Vec<String> = s
            .labels
            .iter()
            .filter(|(k, _)| k != "__name__")
            .map(|(k, v)| format!("{k}={v:?}"))
            .collect();
        if !rest.is_empty() {
            out.push('{');
            out.push_str(&rest.join(","));
            out.push('}');
        }
        out.push(' ');
        out.push_str(&lastmile_model::format_value(s.value));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_are_sorted_and_encode_both_ways() {
        let res = vec![("job".to_owned(), "x".to_owned())];
        let s = vec![
            Series::new("go_ebpf_gc_cycles_total", &res, &[("pid", "1")], 3.0),
            Series::new(
                "go_ebpf_stw_pause_seconds_bucket",
                &res,
                &[("le", "+Inf")],
                2.0,
            ),
        ];
        assert_eq!(s[0].labels[0].0, "__name__");
        assert_eq!(s[0].label("pid"), Some("1"));
        let (b, refused) = write_batch(&s, 1000);
        assert_eq!((b.series.len(), refused), (2, 0));
        let body = remote_write_body(&s, 1000);
        let raw = snap::raw::Decoder::new().decompress_vec(&body).unwrap();
        let (decoded, _) = lastmile_receivers::remote_write::decode_write_request(&raw).unwrap();
        assert_eq!(decoded.series.len(), 2);
        assert_eq!(decoded.num_samples(), 2);
        assert!(to_text(&s).contains("go_ebpf_gc_cycles_total{job=\"x\",pid=\"1\"} 3"));
    }
}
