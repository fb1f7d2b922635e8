//! The shared vocabulary of lastmile.
//!
//! Every other crate speaks in these types: receivers decode wire formats into a
//! [`WriteBatch`], the store persists it, and the query layer answers with [`Labels`] and
//! [`Sample`]s. Nothing here does I/O.

pub mod batch;
pub mod duration;
pub mod labels;
pub mod matcher;
pub mod metadata;
pub mod sample;
pub mod time;

pub use batch::{BatchError, ExemplarInput, SeriesInput, WriteBatch};
pub use labels::{Label, LabelRef, Labels, METRIC_NAME, hash_labels};
pub use matcher::{MatchOp, Matcher, MatcherError};
pub use metadata::{MetadataRef, MetricMetadata, MetricType};
pub use sample::{STALE_NAN, Sample, format_value, is_stale_nan};
