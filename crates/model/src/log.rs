//! Log lines, grouped into streams the way Loki groups them: a stream is a label set,
//! and each entry a timestamped line.
//!
//! Loki push (JSON or protobuf) and OTLP logs both decode into a [`LogBatch`]. The trace
//! and span ids a line carries (an OTLP record's ids, or ids found in a JSON or logfmt
//! body) are normalised at ingest (see [`crate::trace_id`]) so the log store can index
//! them and `correlate` can join them with spans.

use crate::labels::Labels;
use crate::trace_id::{SpanId, TraceId};

#[derive(Clone, Debug, PartialEq)]
pub struct LogEntry {
    /// Nanoseconds since the Unix epoch.
    pub timestamp_ns: i64,
    pub line: String,
    /// Loki's structured metadata: per-line key/value pairs that are not stream labels
    /// (OTLP attributes, severity, ids as sent).
    pub metadata: Vec<(String, String)>,
    pub trace_id: Option<TraceId>,
    pub span_id: Option<SpanId>,
}

impl LogEntry {
    pub fn new(timestamp_ns: i64, line: impl Into<String>) -> Self {
        LogEntry {
            timestamp_ns,
            line: line.into(),
            metadata: Vec::new(),
            trace_id: None,
            span_id: None,
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct LogStream {
    /// The stream's identity (no `__name__`; Loki label rules).
    pub labels: Labels,
    pub entries: Vec<LogEntry>,
}

/// Log lines of one request.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LogBatch {
    pub streams: Vec<LogStream>,
}

impl LogBatch {
    pub fn entry_count(&self) -> usize {
        self.streams.iter().map(|s| s.entries.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.entry_count() == 0
    }

    /// Bytes of log lines (what Loki counts as ingested volume).
    pub fn line_bytes(&self) -> usize {
        self.streams
            .iter()
            .flat_map(|s| &s.entries)
            .map(|e| e.line.len())
            .sum()
    }
}
