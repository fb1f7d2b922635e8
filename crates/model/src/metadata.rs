//! Metric metadata (type, help, unit) as remote write and exposition formats carry it.

use serde::Serialize;

/// Numbering follows the remote-write protobuf's `MetricMetadata.MetricType`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum MetricType {
    #[default]
    Unknown,
    Counter,
    Gauge,
    Histogram,
    GaugeHistogram,
    Summary,
    Info,
    StateSet,
}

impl MetricType {
    pub fn from_wire(v: u64) -> Self {
        match v {
            1 => Self::Counter,
            2 => Self::Gauge,
            3 => Self::Histogram,
            4 => Self::GaugeHistogram,
            5 => Self::Summary,
            6 => Self::Info,
            7 => Self::StateSet,
            _ => Self::Unknown,
        }
    }

    pub fn to_wire(self) -> u8 {
        self as u8
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unknown => "unknown",
            Self::Counter => "counter",
            Self::Gauge => "gauge",
            Self::Histogram => "histogram",
            Self::GaugeHistogram => "gaugehistogram",
            Self::Summary => "summary",
            Self::Info => "info",
            Self::StateSet => "stateset",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MetadataRef<'a> {
    pub metric_family_name: &'a str,
    pub metric_type: MetricType,
    pub help: &'a str,
    pub unit: &'a str,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MetricMetadata {
    #[serde(rename = "type")]
    pub metric_type: MetricType,
    pub help: String,
    pub unit: String,
}

impl From<MetadataRef<'_>> for MetricMetadata {
    fn from(m: MetadataRef<'_>) -> Self {
        MetricMetadata {
            metric_type: m.metric_type,
            help: m.help.to_owned(),
            unit: m.unit.to_owned(),
        }
    }
}
