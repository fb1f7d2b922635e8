//! The shared vocabulary of lastmile.
//!
//! Every other crate speaks in these types: receivers decode wire formats into a
//! [`WriteBatch`] (metrics), a [`SpanBatch`] (traces) or a [`LogBatch`] (logs), the stores
//! persist them, and the query layer answers with [`Labels`], [`Sample`]s, spans and log
//! entries. Trace ids in every spelling become one [`TraceId`]. Nothing here does I/O.

pub mod batch;
pub mod duration;
pub mod labels;
pub mod log;
pub mod logfmt;
pub mod matcher;
pub mod metadata;
pub mod sample;
pub mod time;
pub mod trace;
pub mod trace_id;

pub use batch::{BatchError, ExemplarInput, OwnedSeries, SeriesInput, WriteBatch};
pub use labels::{Label, LabelRef, Labels, METRIC_NAME, hash_labels};
pub use log::{LogBatch, LogEntry, LogStream};
pub use matcher::{MatchOp, Matcher, MatcherError};
pub use metadata::{MetadataRef, MetricMetadata, MetricType};
pub use sample::{STALE_NAN, Sample, format_value, is_stale_nan};
pub use trace::{
    AttrValue, KeyValue, Resource, ResourceSpans, Scope, ScopeSpans, Span, SpanBatch, SpanEvent,
    SpanKind, SpanLink, StatusCode,
};
pub use trace_id::{SpanId, TraceId, parse_trace_context};
