//! Naming contracts: metric names and types checked as they arrive.
//!
//! The checks follow Prometheus's naming guide: `namespace_subsystem_name_unit` in lower
//! snake case, counters end in `_total` (and nothing else does), units are base units
//! (seconds, bytes, ratios — not milliseconds, kilobytes or percent), and a histogram's
//! buckets are the ones its contract fixes. In `warn` mode violations are counted and
//! logged; in `reject` mode the series is not stored.

use std::collections::BTreeMap;

use lastmile_model::MetricType;
use serde::Deserialize;

use crate::selector::{Selector, parse_selector};

#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NamingMode {
    #[default]
    Warn,
    Reject,
}

/// The `naming:` section of a rules file.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NamingConfig {
    #[serde(default)]
    pub mode: NamingMode,
    /// Which series are checked (a selector); absent = all.
    #[serde(rename = "match")]
    pub selector: Option<String>,
    /// Allowed first components of metric names; absent = any.
    #[serde(default)]
    pub namespaces: Vec<String>,
    /// Per histogram (base name, without `_bucket`): its fixed bucket bounds.
    #[serde(default)]
    pub histogram_buckets: BTreeMap<String, Vec<f64>>,
}

/// One broken contract.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Violation {
    /// Not `namespace_subsystem_name_unit` in lower snake case.
    NameFormat,
    /// The first component is not one of the allowed namespaces.
    Namespace,
    /// A counter whose name does not end in `_total`.
    CounterTotal,
    /// `_total` on something that is not a counter.
    TotalNotCounter,
    /// A non-base unit (milliseconds, kilobytes, percent…).
    BaseUnit,
    /// A histogram bucket outside its fixed layout.
    HistogramBuckets,
}

impl Violation {
    pub const ALL: [Violation; 6] = [
        Violation::NameFormat,
        Violation::Namespace,
        Violation::CounterTotal,
        Violation::TotalNotCounter,
        Violation::BaseUnit,
        Violation::HistogramBuckets,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Violation::NameFormat => "name_format",
            Violation::Namespace => "namespace",
            Violation::CounterTotal => "counter_total",
            Violation::TotalNotCounter => "total_not_counter",
            Violation::BaseUnit => "base_unit",
            Violation::HistogramBuckets => "histogram_buckets",
        }
    }

    pub fn parse(s: &str) -> Option<Violation> {
        Violation::ALL.into_iter().find(|v| v.as_str() == s)
    }

    pub fn explain(self) -> &'static str {
        match self {
            Violation::NameFormat => {
                "metric names are namespace_subsystem_name_unit: lower snake case, at least two components"
            }
            Violation::Namespace => "the first component is not an allowed namespace",
            Violation::CounterTotal => "counter names end in _total",
            Violation::TotalNotCounter => "only counters end in _total",
            Violation::BaseUnit => {
                "use base units: seconds (not ms, minutes, hours), bytes (not kb, mb), ratios (not percent)"
            }
            Violation::HistogramBuckets => "bucket bound outside the histogram's fixed layout",
        }
    }
}

/// Non-base unit components and the base unit to use instead.
const NON_BASE_UNITS: [(&str, &str); 20] = [
    ("milliseconds", "seconds"),
    ("millisecond", "seconds"),
    ("ms", "seconds"),
    ("microseconds", "seconds"),
    ("us", "seconds"),
    ("nanoseconds", "seconds"),
    ("ns", "seconds"),
    ("minutes", "seconds"),
    ("hours", "seconds"),
    ("days", "seconds"),
    ("kilobytes", "bytes"),
    ("kb", "bytes"),
    ("kib", "bytes"),
    ("megabytes", "bytes"),
    ("mb", "bytes"),
    ("mib", "bytes"),
    ("gigabytes", "bytes"),
    ("gb", "bytes"),
    ("gib", "bytes"),
    ("percent", "ratio"),
];

/// Naming rules, compiled.
#[derive(Clone, Debug)]
pub struct NamingRules {
    pub mode: NamingMode,
    pub selector: Option<Selector>,
    namespaces: Vec<String>,
    buckets: BTreeMap<String, Vec<f64>>,
}

impl NamingRules {
    pub fn new(c: &NamingConfig) -> Result<Self, String> {
        let selector = c
            .selector
            .as_deref()
            .map(parse_selector)
            .transpose()
            .map_err(|e| format!("match: {e}"))?;
        for (m, b) in &c.histogram_buckets {
            if b.is_empty() || b.windows(2).any(|w| w[0] >= w[1]) || b.iter().any(|x| x.is_nan()) {
                return Err(format!(
                    "histogram_buckets.{m}: bounds must be given in increasing order"
                ));
            }
        }
        Ok(NamingRules {
            mode: c.mode,
            selector,
            namespaces: c.namespaces.clone(),
            buckets: c.histogram_buckets.clone(),
        })
    }

    /// The contracts a series breaks. `metric_type` is what metadata says about its
    /// family (Unknown when nothing does); `le` is its `le` label, if any.
    pub fn check(
        &self,
        name: &str,
        metric_type: MetricType,
        le: Option<&str>,
        out: &mut Vec<Violation>,
    ) {
        out.clear();
        let well_formed = is_snake_case(name) && name.contains('_');
        if !well_formed {
            out.push(Violation::NameFormat);
        }
        let first = name.split('_').next().unwrap_or("");
        if !self.namespaces.is_empty() && !self.namespaces.iter().any(|n| n == first) {
            out.push(Violation::Namespace);
        }
        let ends_total = name.ends_with("_total");
        match metric_type {
            MetricType::Counter if !ends_total && !name.ends_with("_created") => {
                out.push(Violation::CounterTotal)
            }
            MetricType::Gauge
            | MetricType::Histogram
            | MetricType::Summary
            | MetricType::GaugeHistogram
            | MetricType::Info
            | MetricType::StateSet
                if ends_total =>
            {
                out.push(Violation::TotalNotCounter)
            }
            _ => {}
        }
        if name
            .split('_')
            .any(|c| NON_BASE_UNITS.iter().any(|(u, _)| *u == c))
        {
            out.push(Violation::BaseUnit);
        }
        if let (Some(base), Some(le)) = (name.strip_suffix("_bucket"), le)
            && let Some(bounds) = self.buckets.get(base)
        {
            let ok = match le {
                "+Inf" | "Inf" | "inf" => true,
                v => v.parse::<f64>().is_ok_and(|x| {
                    bounds
                        .iter()
                        .any(|b| (b - x).abs() <= 1e-9 * b.abs().max(1.0))
                }),
            };
            if !ok {
                out.push(Violation::HistogramBuckets);
            }
        }
    }
}

fn is_snake_case(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b[0].is_ascii_lowercase()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'_')
        && !name.contains("__")
        && !name.ends_with('_')
}

/// The base unit a non-base unit component should be, for messages.
pub fn suggest_unit(name: &str) -> Option<(&'static str, &'static str)> {
    name.split('_')
        .find_map(|c| NON_BASE_UNITS.iter().find(|(u, _)| *u == c).copied())
}

/// The metric type of a series name given what metadata says about families: exact name
/// first, then the family a suffix belongs to (`x_total` → `x`, `x_bucket` → `x`).
pub fn type_of(name: &str, lookup: impl Fn(&str) -> Option<MetricType>) -> MetricType {
    if let Some(t) = lookup(name) {
        return t;
    }
    for suffix in ["_total", "_bucket", "_count", "_sum", "_created"] {
        if let Some(base) = name.strip_suffix(suffix)
            && let Some(t) = lookup(base)
        {
            return t;
        }
    }
    MetricType::Unknown
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(rules: &NamingRules, name: &str, t: MetricType, le: Option<&str>) -> Vec<Violation> {
        let mut v = Vec::new();
        rules.check(name, t, le, &mut v);
        v
    }

    #[test]
    fn the_naming_guide() {
        let r = NamingRules::new(
            &serde_saphyr::from_str(
                "namespaces: [http, app]\nhistogram_buckets:\n  http_request_duration_seconds: [0.1, 0.5, 1]\n",
            )
            .unwrap(),
        )
        .unwrap();
        use MetricType::*;
        use Violation::*;
        assert!(check(&r, "http_requests_total", Counter, None).is_empty());
        assert_eq!(check(&r, "http_requests", Counter, None), [CounterTotal]);
        assert_eq!(check(&r, "app_queue_total", Gauge, None), [TotalNotCounter]);
        assert_eq!(
            check(&r, "HttpRequests", Unknown, None),
            [NameFormat, Namespace]
        );
        assert_eq!(
            check(&r, "requests", Unknown, None),
            [NameFormat, Namespace]
        );
        assert_eq!(check(&r, "db_calls_total", Counter, None), [Namespace]);
        assert_eq!(
            check(&r, "http_latency_ms", Gauge, None),
            [BaseUnit],
            "ms is not a base unit"
        );
        assert!(
            check(
                &r,
                "http_request_duration_seconds_bucket",
                Histogram,
                Some("0.5")
            )
            .is_empty()
        );
        assert!(
            check(
                &r,
                "http_request_duration_seconds_bucket",
                Histogram,
                Some("+Inf")
            )
            .is_empty()
        );
        assert_eq!(
            check(
                &r,
                "http_request_duration_seconds_bucket",
                Histogram,
                Some("0.25")
            ),
            [HistogramBuckets]
        );
        assert_eq!(suggest_unit("x_latency_ms"), Some(("ms", "seconds")));
    }

    #[test]
    fn type_lookup_follows_family_suffixes() {
        let lookup = |n: &str| (n == "http_requests").then_some(MetricType::Counter);
        assert_eq!(type_of("http_requests_total", lookup), MetricType::Counter);
        assert_eq!(type_of("other", lookup), MetricType::Unknown);
    }

    #[test]
    fn bucket_layouts_must_increase() {
        let c: NamingConfig =
            serde_saphyr::from_str("histogram_buckets:\n  x: [1, 0.5]\n").unwrap();
        assert!(NamingRules::new(&c).unwrap_err().contains("increasing"));
    }
}
