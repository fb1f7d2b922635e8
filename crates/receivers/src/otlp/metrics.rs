//! OTLP metrics → Prometheus series, per the OpenTelemetry Prometheus-compatibility rules:
//!
//! - `job` = `service.namespace/service.name` (or `service.name`), `instance` =
//!   `service.instance.id`; the other resource attributes go to one `target_info` series
//!   per resource (value 1, at the newest point's time);
//! - `otel_scope_name` and `otel_scope_version` label every series of a scope;
//! - data point attributes become labels (names sanitised; values of keys that sanitise
//!   alike are joined with `;` in key order);
//! - names get unit suffixes and `_total` ([`super::naming`]);
//! - gauges and non-monotonic cumulative sums → gauges; monotonic cumulative sums →
//!   counters; cumulative histograms → `_bucket{le}` (cumulative counts, `+Inf` last),
//!   `_sum`, `_count`; summaries → `{quantile}`, `_sum`, `_count`;
//! - exemplars of histograms (on the bucket their value falls in) and of monotonic sums
//!   keep `trace_id`/`span_id` and, within OpenMetrics' 128-character limit, their
//!   filtered attributes;
//! - a point flagged "no recorded value" becomes a staleness marker.
//!
//! Refused (reported in `partial_success`, nothing else of the request lost): delta (or
//! unspecified) temporality sums and histograms, exponential histograms (no native
//! histograms in the store yet), points without a value, histograms whose bucket counts
//! do not match their bounds.

use std::collections::{BTreeMap, HashMap};

use lastmile_model::batch::{MAX_EXEMPLAR_LABELS_CHARS, OwnedExemplar, OwnedSeries};
use lastmile_model::{
    BatchError, METRIC_NAME, MetadataRef, MetricType, STALE_NAN, Sample, WriteBatch,
};

use super::OtlpError;
use super::ids;
use super::naming::{MetricKind, label_name, metric_name};
use super::proto::ExportMetricsServiceRequest;
use super::proto::common::KeyValue;
use super::proto::metrics::{
    AggregationTemporality, Exemplar, HistogramDataPoint, Metric, NumberDataPoint,
    SummaryDataPoint, exemplar, metric::Data, number_data_point,
};
use super::refusals::{Refusals, RefuseReason};
use super::values::{any_value_text, double_text};

/// `DataPointFlags.FLAG_NO_RECORDED_VALUE`.
const NO_RECORDED_VALUE: u32 = 1;

type Pairs = Vec<(String, String)>;

#[derive(Debug)]
struct OwnedMetadata {
    name: String,
    metric_type: MetricType,
    help: String,
    unit: String,
}

/// The Prometheus series of one OTLP request, owning their strings; [`Self::write_batch`]
/// lends them out as the borrowed [`WriteBatch`] the store ingests.
#[derive(Debug, Default)]
pub struct MetricsBatch {
    /// Labels sorted by name, names unique, no empty values.
    series: Vec<OwnedSeries>,
    index: HashMap<Pairs, usize>,
    metadata: Vec<OwnedMetadata>,
    metadata_names: HashMap<String, usize>,
    data_points: u64,
}

impl MetricsBatch {
    /// OTLP data points converted (a histogram point counts once, whatever its series).
    pub fn data_points(&self) -> u64 {
        self.data_points
    }

    pub fn num_series(&self) -> usize {
        self.series.len()
    }

    pub fn num_samples(&self) -> usize {
        self.series.iter().map(|s| s.samples.len()).sum()
    }

    /// The series as a [`WriteBatch`] borrowing from `self`.
    pub fn write_batch(&self) -> Result<WriteBatch<'_>, BatchError> {
        let mut b = WriteBatch::from_owned(&self.series)?;
        b.metadata = self
            .metadata
            .iter()
            .map(|m| MetadataRef {
                metric_family_name: &m.name,
                metric_type: m.metric_type,
                help: &m.help,
                unit: &m.unit,
            })
            .collect();
        Ok(b)
    }

    /// Adds a sample to the series with these labels (created on first use); returns its
    /// index for exemplars.
    fn add(&mut self, labels: Pairs, t: i64, v: f64) -> usize {
        let i = match self.index.get(&labels) {
            Some(&i) => i,
            None => {
                self.series.push(OwnedSeries {
                    labels: labels.clone(),
                    ..Default::default()
                });
                self.index.insert(labels, self.series.len() - 1);
                self.series.len() - 1
            }
        };
        self.series[i].samples.push(Sample { t, v });
        i
    }

    fn metadata(&mut self, name: &str, metric_type: MetricType, help: &str, unit: &str) {
        if self.metadata_names.contains_key(name) {
            return;
        }
        self.metadata_names
            .insert(name.to_owned(), self.metadata.len());
        self.metadata.push(OwnedMetadata {
            name: name.to_owned(),
            metric_type,
            help: help.to_owned(),
            unit: unit.to_owned(),
        });
    }

    fn finish(&mut self) {
        // One request may carry several points of a series; the store wants them in time
        // order.
        for s in &mut self.series {
            if !s.samples.is_sorted_by_key(|x| x.t) {
                s.samples.sort_by_key(|x| x.t);
            }
        }
    }
}

/// Labels shared by every point of a resource or scope, and the label set a point gets.
struct Context {
    /// job, instance, otel_scope_name, otel_scope_version: these win over point attributes.
    fixed: Pairs,
}

impl Context {
    /// The sorted label set of one series: point attributes, then the fixed labels, then
    /// `extra` (`le`, `quantile`), then the name; later ones win; empty values dropped.
    fn labels(&self, attrs: &Pairs, name: &str, extra: Option<(&str, String)>) -> Pairs {
        let mut m: BTreeMap<&str, &str> = BTreeMap::new();
        for (k, v) in attrs.iter().chain(&self.fixed) {
            m.insert(k, v);
        }
        let extra_value;
        if let Some((k, v)) = extra {
            extra_value = v;
            m.insert(k, &extra_value);
        }
        m.insert(METRIC_NAME, name);
        m.into_iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    }
}

/// Attributes as label pairs: names sanitised; values of keys that sanitise to the same
/// name joined with `;`, in the order of the original keys.
fn attribute_labels(attrs: &[KeyValue]) -> Pairs {
    let mut sorted: Vec<&KeyValue> = attrs.iter().collect();
    sorted.sort_by(|a, b| a.key.cmp(&b.key));
    let mut out: BTreeMap<String, String> = BTreeMap::new();
    for kv in sorted {
        let Some(name) = label_name(&kv.key) else {
            continue;
        };
        let value = kv.value.as_ref().map(any_value_text).unwrap_or_default();
        out.entry(name)
            .and_modify(|v| {
                v.push(';');
                v.push_str(&value);
            })
            .or_insert(value);
    }
    out.into_iter().collect()
}

fn ms(nanos: u64, now_ms: i64) -> i64 {
    if nanos == 0 {
        now_ms
    } else {
        (nanos / 1_000_000) as i64
    }
}

fn attr_text(attrs: &[KeyValue], key: &str) -> Option<String> {
    attrs
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .map(any_value_text)
        .filter(|s| !s.is_empty())
}

/// How many data points a metric carries, as the converter counts them: each is either
/// converted or refused (a metric without data counts as one refused point).
pub fn data_points_of(m: &Metric) -> u64 {
    (match &m.data {
        None => 1,
        Some(Data::Gauge(g)) => g.data_points.len(),
        Some(Data::Sum(s)) => s.data_points.len(),
        Some(Data::Histogram(h)) => h.data_points.len(),
        Some(Data::ExponentialHistogram(h)) => h.data_points.len(),
        Some(Data::Summary(s)) => s.data_points.len(),
    }) as u64
}

/// Converts a decoded request; `now_ms` stamps points without a time.
pub fn metrics_from_request(
    req: ExportMetricsServiceRequest,
    now_ms: i64,
) -> Result<(MetricsBatch, Refusals), OtlpError> {
    let mut out = MetricsBatch::default();
    let mut refused = Refusals::default();
    for (ri, rm) in req.resource_metrics.into_iter().enumerate() {
        let attrs = rm.resource.map(|r| r.attributes).unwrap_or_default();
        let service = attr_text(&attrs, "service.name");
        let namespace = attr_text(&attrs, "service.namespace");
        let job = match (&namespace, &service) {
            (Some(ns), Some(s)) => format!("{ns}/{s}"),
            (None, Some(s)) => s.clone(),
            _ => String::new(),
        };
        let instance = attr_text(&attrs, "service.instance.id").unwrap_or_default();
        let mut newest: Option<i64> = None;
        for (si, sm) in rm.scope_metrics.into_iter().enumerate() {
            let scope = sm.scope.unwrap_or_default();
            let ctx = Context {
                fixed: vec![
                    ("job".into(), job.clone()),
                    ("instance".into(), instance.clone()),
                    ("otel_scope_name".into(), scope.name),
                    ("otel_scope_version".into(), scope.version),
                ],
            };
            for (mi, m) in sm.metrics.into_iter().enumerate() {
                let path = || format!("resourceMetrics[{ri}].scopeMetrics[{si}].metrics[{mi}]");
                let at = |kind: &str, di: usize| {
                    format!("{}.{kind}.dataPoints[{di}] (metric {:?})", path(), m.name)
                };
                let before = out.data_points;
                if m.name.is_empty() {
                    // OTLP requires a name; without one there is no series to write.
                    refused.add(RefuseReason::NoName, data_points_of(&m), path);
                    continue;
                }
                match &m.data {
                    None => refused.add(RefuseReason::NoValue, 1, || {
                        format!("{} (metric {:?})", path(), m.name)
                    }),
                    Some(Data::Gauge(g)) => {
                        let name = metric_name(&m.name, &m.unit, MetricKind::Gauge);
                        out.metadata(
                            &name,
                            MetricType::Gauge,
                            &m.description,
                            &unit_of(&m.unit, MetricKind::Gauge),
                        );
                        for (di, p) in g.data_points.iter().enumerate() {
                            number_point(
                                &mut out,
                                &mut refused,
                                &ctx,
                                &name,
                                p,
                                false,
                                now_ms,
                                || at("gauge", di),
                            )?;
                        }
                    }
                    Some(Data::Sum(s)) => {
                        if s.aggregation_temporality != AggregationTemporality::Cumulative as i32 {
                            refused.add(
                                RefuseReason::DeltaTemporality,
                                s.data_points.len() as u64,
                                || at("sum", 0),
                            );
                        } else {
                            let kind = if s.is_monotonic {
                                MetricKind::Counter
                            } else {
                                MetricKind::Gauge
                            };
                            let name = metric_name(&m.name, &m.unit, kind);
                            let ty = if s.is_monotonic {
                                MetricType::Counter
                            } else {
                                MetricType::Gauge
                            };
                            out.metadata(&name, ty, &m.description, &unit_of(&m.unit, kind));
                            for (di, p) in s.data_points.iter().enumerate() {
                                number_point(
                                    &mut out,
                                    &mut refused,
                                    &ctx,
                                    &name,
                                    p,
                                    s.is_monotonic,
                                    now_ms,
                                    || at("sum", di),
                                )?;
                            }
                        }
                    }
                    Some(Data::Histogram(h)) => {
                        if h.aggregation_temporality != AggregationTemporality::Cumulative as i32 {
                            refused.add(
                                RefuseReason::DeltaTemporality,
                                h.data_points.len() as u64,
                                || at("histogram", 0),
                            );
                        } else {
                            let name = metric_name(&m.name, &m.unit, MetricKind::Histogram);
                            out.metadata(
                                &name,
                                MetricType::Histogram,
                                &m.description,
                                &unit_of(&m.unit, MetricKind::Histogram),
                            );
                            for (di, p) in h.data_points.iter().enumerate() {
                                histogram_point(
                                    &mut out,
                                    &mut refused,
                                    &ctx,
                                    &name,
                                    p,
                                    now_ms,
                                    || at("histogram", di),
                                )?;
                            }
                        }
                    }
                    Some(Data::ExponentialHistogram(h)) => refused.add(
                        RefuseReason::ExponentialHistogram,
                        h.data_points.len() as u64,
                        || at("exponentialHistogram", 0),
                    ),
                    Some(Data::Summary(s)) => {
                        let name = metric_name(&m.name, &m.unit, MetricKind::Summary);
                        out.metadata(
                            &name,
                            MetricType::Summary,
                            &m.description,
                            &unit_of(&m.unit, MetricKind::Summary),
                        );
                        for p in &s.data_points {
                            summary_point(&mut out, &ctx, &name, p, now_ms);
                        }
                    }
                }
                if out.data_points > before {
                    let t = newest_time(&m.data, now_ms);
                    newest = Some(newest.map_or(t, |n: i64| n.max(t)));
                }
            }
        }
        // Resource attributes other than the ones job and instance come from.
        let rest: Vec<KeyValue> = attrs
            .into_iter()
            .filter(|kv| {
                !matches!(
                    kv.key.as_str(),
                    "service.name" | "service.namespace" | "service.instance.id"
                )
            })
            .collect();
        if let Some(t) = newest
            && !rest.is_empty()
        {
            let ctx = Context {
                fixed: vec![("job".into(), job), ("instance".into(), instance)],
            };
            let labels = ctx.labels(&attribute_labels(&rest), "target_info", None);
            out.add(labels, t, 1.0);
            out.metadata("target_info", MetricType::Gauge, "Target metadata", "");
        }
    }
    out.finish();
    Ok((out, refused))
}

/// The unit as Prometheus metadata spells it (the suffix the name got).
fn unit_of(unit: &str, kind: MetricKind) -> String {
    match super::naming::prometheus_unit(unit) {
        Some(u) => u,
        None if unit.trim() == "1" && kind == MetricKind::Gauge => "ratio".into(),
        None => String::new(),
    }
}

fn newest_time(data: &Option<Data>, now_ms: i64) -> i64 {
    let times: Vec<u64> = match data {
        Some(Data::Gauge(g)) => g.data_points.iter().map(|p| p.time_unix_nano).collect(),
        Some(Data::Sum(s)) => s.data_points.iter().map(|p| p.time_unix_nano).collect(),
        Some(Data::Histogram(h)) => h.data_points.iter().map(|p| p.time_unix_nano).collect(),
        Some(Data::Summary(s)) => s.data_points.iter().map(|p| p.time_unix_nano).collect(),
        _ => Vec::new(),
    };
    times
        .into_iter()
        .map(|t| ms(t, now_ms))
        .max()
        .unwrap_or(now_ms)
}

#[allow(clippy::too_many_arguments)]
fn number_point(
    out: &mut MetricsBatch,
    refused: &mut Refusals,
    ctx: &Context,
    name: &str,
    p: &NumberDataPoint,
    keep_exemplars: bool,
    now_ms: i64,
    at: impl Fn() -> String,
) -> Result<(), OtlpError> {
    let v = match p.value {
        Some(number_data_point::Value::AsDouble(d)) => d,
        Some(number_data_point::Value::AsInt(i)) => i as f64,
        None if p.flags & NO_RECORDED_VALUE != 0 => STALE_NAN,
        None => {
            refused.add(RefuseReason::NoValue, 1, at);
            return Ok(());
        }
    };
    let v = if p.flags & NO_RECORDED_VALUE != 0 {
        STALE_NAN
    } else {
        v
    };
    let t = ms(p.time_unix_nano, now_ms);
    let labels = ctx.labels(&attribute_labels(&p.attributes), name, None);
    let exemplars = if keep_exemplars {
        convert_exemplars(&p.exemplars, t, &at)?
    } else {
        Vec::new()
    };
    let i = out.add(labels, t, v);
    out.series[i]
        .exemplars
        .extend(exemplars.into_iter().map(|(_, e)| e));
    out.data_points += 1;
    Ok(())
}

fn histogram_point(
    out: &mut MetricsBatch,
    refused: &mut Refusals,
    ctx: &Context,
    name: &str,
    p: &HistogramDataPoint,
    now_ms: i64,
    at: impl Fn() -> String,
) -> Result<(), OtlpError> {
    let bounds = &p.explicit_bounds;
    let counts_ok = p.bucket_counts.is_empty() || p.bucket_counts.len() == bounds.len() + 1;
    let bounds_ok = bounds.windows(2).all(|w| w[0] < w[1]) && !bounds.iter().any(|b| b.is_nan());
    if !counts_ok || !bounds_ok {
        refused.add(RefuseReason::InvalidHistogram, 1, at);
        return Ok(());
    }
    let t = ms(p.time_unix_nano, now_ms);
    let stale = p.flags & NO_RECORDED_VALUE != 0;
    let value = |v: f64| if stale { STALE_NAN } else { v };
    let attrs = attribute_labels(&p.attributes);
    let exemplars = convert_exemplars(&p.exemplars, t, &at)?;
    let bucket = format!("{name}_bucket");
    let mut cumulative = 0u64;
    let mut bucket_series = Vec::with_capacity(bounds.len() + 1);
    if !p.bucket_counts.is_empty() {
        for (bound, count) in bounds.iter().zip(&p.bucket_counts) {
            cumulative = cumulative.saturating_add(*count);
            let labels = ctx.labels(&attrs, &bucket, Some(("le", double_text(*bound))));
            bucket_series.push(out.add(labels, t, value(cumulative as f64)));
        }
    }
    let labels = ctx.labels(&attrs, &bucket, Some(("le", "+Inf".to_owned())));
    bucket_series.push(out.add(labels, t, value(p.count as f64)));
    for (v, e) in exemplars {
        // The first bucket whose bound the value does not exceed; +Inf otherwise.
        let b = bounds.iter().position(|b| v <= *b).unwrap_or(bounds.len());
        let series = bucket_series.get(b).or(bucket_series.last()).copied();
        if let Some(i) = series {
            out.series[i].exemplars.push(e);
        }
    }
    if let Some(sum) = p.sum {
        let labels = ctx.labels(&attrs, &format!("{name}_sum"), None);
        out.add(labels, t, value(sum));
    }
    let labels = ctx.labels(&attrs, &format!("{name}_count"), None);
    out.add(labels, t, value(p.count as f64));
    out.data_points += 1;
    Ok(())
}

fn summary_point(
    out: &mut MetricsBatch,
    ctx: &Context,
    name: &str,
    p: &SummaryDataPoint,
    now_ms: i64,
) {
    let t = ms(p.time_unix_nano, now_ms);
    let stale = p.flags & NO_RECORDED_VALUE != 0;
    let value = |v: f64| if stale { STALE_NAN } else { v };
    let attrs = attribute_labels(&p.attributes);
    for q in &p.quantile_values {
        let labels = ctx.labels(&attrs, name, Some(("quantile", double_text(q.quantile))));
        out.add(labels, t, value(q.value));
    }
    let labels = ctx.labels(&attrs, &format!("{name}_sum"), None);
    out.add(labels, t, value(p.sum));
    let labels = ctx.labels(&attrs, &format!("{name}_count"), None);
    out.add(labels, t, value(p.count as f64));
    out.data_points += 1;
}

/// Exemplars with their values (to pick a histogram bucket). An id of the wrong length
/// refuses the request; one without a value is skipped.
fn convert_exemplars(
    exemplars: &[Exemplar],
    point_t: i64,
    at: &dyn Fn() -> String,
) -> Result<Vec<(f64, OwnedExemplar)>, OtlpError> {
    let mut out = Vec::with_capacity(exemplars.len());
    for (ei, e) in exemplars.iter().enumerate() {
        let path = || format!("{}.exemplars[{ei}]", at());
        let trace = ids::trace_id(&e.trace_id, "traceId", path)?.valid();
        let span = ids::span_id(&e.span_id, "spanId", path)?.valid();
        let v = match e.value {
            Some(exemplar::Value::AsDouble(d)) => d,
            Some(exemplar::Value::AsInt(i)) => i as f64,
            None => continue,
        };
        let mut labels: Pairs = Vec::new();
        if let Some(t) = trace {
            labels.push(("trace_id".into(), t.to_hex()));
        }
        if let Some(s) = span {
            labels.push(("span_id".into(), s.to_hex()));
        }
        let chars = |l: &Pairs| -> usize {
            l.iter()
                .map(|(n, v)| n.chars().count() + v.chars().count())
                .sum()
        };
        let mut with_attrs = labels.clone();
        for (n, v) in attribute_labels(&e.filtered_attributes) {
            if n != "trace_id" && n != "span_id" && !v.is_empty() {
                with_attrs.push((n, v));
            }
        }
        // Filtered attributes only while the whole set fits OpenMetrics' limit.
        if chars(&with_attrs) <= MAX_EXEMPLAR_LABELS_CHARS {
            labels = with_attrs;
        }
        let t = if e.time_unix_nano == 0 {
            point_t
        } else {
            (e.time_unix_nano / 1_000_000) as i64
        };
        out.push((v, (labels, t, v)));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::otlp::proto::common::{AnyValue, InstrumentationScope, any_value::Value};
    use crate::otlp::proto::metrics::{
        ExponentialHistogram, ExponentialHistogramDataPoint, Gauge, Histogram, Metric,
        ResourceMetrics, ScopeMetrics, Sum, Summary, summary_data_point::ValueAtQuantile,
    };
    use crate::otlp::proto::resource::Resource;

    const T_NS: u64 = 1_700_000_000_123_456_789;
    const T_MS: i64 = 1_700_000_000_123;

    fn kv(k: &str, v: &str) -> KeyValue {
        KeyValue {
            key: k.into(),
            value: Some(AnyValue {
                value: Some(Value::StringValue(v.into())),
            }),
            ..Default::default()
        }
    }

    fn metric(name: &str, unit: &str, data: Data) -> Metric {
        Metric {
            name: name.into(),
            unit: unit.into(),
            description: format!("about {name}"),
            data: Some(data),
            ..Default::default()
        }
    }

    fn number(v: f64, attrs: Vec<KeyValue>) -> NumberDataPoint {
        NumberDataPoint {
            attributes: attrs,
            time_unix_nano: T_NS,
            value: Some(number_data_point::Value::AsDouble(v)),
            ..Default::default()
        }
    }

    fn exemplar(v: f64, trace: &[u8]) -> Exemplar {
        Exemplar {
            trace_id: trace.to_vec(),
            span_id: vec![2; 8],
            time_unix_nano: T_NS - 1_000_000,
            value: Some(exemplar::Value::AsDouble(v)),
            filtered_attributes: vec![kv("user", "u1")],
        }
    }

    fn request(metrics: Vec<Metric>) -> ExportMetricsServiceRequest {
        ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                resource: Some(Resource {
                    attributes: vec![
                        kv("service.name", "checkout"),
                        kv("service.namespace", "shop"),
                        kv("service.instance.id", "i-1"),
                        kv("host.name", "h1"),
                    ],
                    ..Default::default()
                }),
                scope_metrics: vec![ScopeMetrics {
                    scope: Some(InstrumentationScope {
                        name: "meter".into(),
                        version: "1.2".into(),
                        ..Default::default()
                    }),
                    metrics,
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
    }

    type Dump = (
        BTreeMap<String, Vec<(i64, f64)>>,
        BTreeMap<String, Vec<String>>,
    );

    /// Every series as `name{labels} = samples`, and exemplars by series name.
    fn dump(b: &MetricsBatch) -> Dump {
        let wb = b.write_batch().unwrap();
        let mut series = BTreeMap::new();
        let mut exemplars = BTreeMap::new();
        for s in &wb.series {
            let labels = lastmile_model::Labels::from_pairs(
                wb.series_labels(s).iter().map(|l| (l.name, l.value)),
            );
            let key = labels.to_string();
            series.insert(
                key.clone(),
                wb.series_samples(s).iter().map(|x| (x.t, x.v)).collect(),
            );
            for e in wb.series_exemplars(s) {
                let l = lastmile_model::Labels::from_pairs(
                    wb.exemplar_labels(e).iter().map(|l| (l.name, l.value)),
                );
                exemplars
                    .entry(key.clone())
                    .or_insert_with(Vec::new)
                    .push(format!("{l} {} @{}", e.v, e.t));
            }
        }
        (series, exemplars)
    }

    const FIXED: &str =
        r#"instance="i-1", job="shop/checkout", otel_scope_name="meter", otel_scope_version="1.2""#;
    const JOB: &str = r#"instance="i-1", job="shop/checkout""#;
    const SCOPE: &str = r#"otel_scope_name="meter", otel_scope_version="1.2""#;

    #[test]
    fn sums_gauges_histograms_summaries_and_target_info() {
        let mut counter = number(7.0, vec![kv("http.method", "GET")]);
        counter.exemplars = vec![exemplar(1.0, &[1; 16])];
        let req = request(vec![
            metric(
                "http.server.requests",
                "{request}",
                Data::Sum(Sum {
                    data_points: vec![counter],
                    aggregation_temporality: 2,
                    is_monotonic: true,
                }),
            ),
            metric(
                "process.memory.usage",
                "By",
                Data::Gauge(Gauge {
                    data_points: vec![number(1024.0, vec![])],
                }),
            ),
            metric(
                "queue.depth",
                "",
                Data::Sum(Sum {
                    data_points: vec![number(-3.0, vec![])],
                    aggregation_temporality: 2,
                    is_monotonic: false,
                }),
            ),
            metric(
                "http.server.duration",
                "ms",
                Data::Histogram(Histogram {
                    data_points: vec![HistogramDataPoint {
                        time_unix_nano: T_NS,
                        count: 6,
                        sum: Some(100.0),
                        bucket_counts: vec![1, 2, 3],
                        explicit_bounds: vec![5.0, 10.0],
                        exemplars: vec![exemplar(7.0, &[3; 16]), exemplar(50.0, &[4; 16])],
                        ..Default::default()
                    }],
                    aggregation_temporality: 2,
                }),
            ),
            metric(
                "gc.pause",
                "s",
                Data::Summary(Summary {
                    data_points: vec![SummaryDataPoint {
                        time_unix_nano: T_NS,
                        count: 4,
                        sum: 0.5,
                        quantile_values: vec![
                            ValueAtQuantile {
                                quantile: 0.5,
                                value: 0.1,
                            },
                            ValueAtQuantile {
                                quantile: 0.99,
                                value: 0.3,
                            },
                        ],
                        ..Default::default()
                    }],
                }),
            ),
        ]);
        let (b, refused) = metrics_from_request(req, 0).unwrap();
        assert!(refused.is_empty(), "{}", refused.message("points", 5));
        assert_eq!(b.data_points(), 5);
        let (series, exemplars) = dump(&b);
        let want: BTreeMap<String, f64> = [
            (
                format!("gc_pause_seconds{{{FIXED}, quantile=\"0.5\"}}"),
                0.1,
            ),
            (
                format!("gc_pause_seconds{{{FIXED}, quantile=\"0.99\"}}"),
                0.3,
            ),
            (format!("gc_pause_seconds_count{{{FIXED}}}"), 4.0),
            (format!("gc_pause_seconds_sum{{{FIXED}}}"), 0.5),
            (
                format!("http_server_duration_milliseconds_bucket{{{JOB}, le=\"+Inf\", {SCOPE}}}"),
                6.0,
            ),
            (
                format!("http_server_duration_milliseconds_bucket{{{JOB}, le=\"10\", {SCOPE}}}"),
                3.0,
            ),
            (
                format!("http_server_duration_milliseconds_bucket{{{JOB}, le=\"5\", {SCOPE}}}"),
                1.0,
            ),
            (
                format!("http_server_duration_milliseconds_count{{{FIXED}}}"),
                6.0,
            ),
            (
                format!("http_server_duration_milliseconds_sum{{{FIXED}}}"),
                100.0,
            ),
            (
                format!("http_server_requests_total{{http_method=\"GET\", {FIXED}}}"),
                7.0,
            ),
            (format!("process_memory_usage_bytes{{{FIXED}}}"), 1024.0),
            (format!("queue_depth{{{FIXED}}}"), -3.0),
            (
                "target_info{host_name=\"h1\", instance=\"i-1\", job=\"shop/checkout\"}"
                    .to_string(),
                1.0,
            ),
        ]
        .into_iter()
        .collect();
        let got: BTreeMap<String, f64> = series
            .iter()
            .map(|(k, v)| {
                assert_eq!(v.len(), 1, "{k}");
                assert_eq!(v[0].0, T_MS, "{k}");
                (k.clone(), v[0].1)
            })
            .collect();
        assert_eq!(got, want);
        let ex = |trace: u8, v: f64| {
            format!(
                "{{span_id=\"0202020202020202\", trace_id=\"{}\", user=\"u1\"}} {v} @{}",
                format!("{trace:02x}").repeat(16),
                T_MS - 1
            )
        };
        assert_eq!(
            exemplars[&format!("http_server_requests_total{{http_method=\"GET\", {FIXED}}}")],
            vec![ex(1, 1.0)]
        );
        assert_eq!(
            exemplars
                [&format!("http_server_duration_milliseconds_bucket{{{JOB}, le=\"10\", {SCOPE}}}")],
            vec![ex(3, 7.0)]
        );
        assert_eq!(
            exemplars[&format!(
                "http_server_duration_milliseconds_bucket{{{JOB}, le=\"+Inf\", {SCOPE}}}"
            )],
            vec![ex(4, 50.0)]
        );
        let wb = b.write_batch().unwrap();
        let meta: Vec<_> = wb
            .metadata
            .iter()
            .map(|m| (m.metric_family_name, m.metric_type, m.unit))
            .collect();
        assert!(meta.contains(&("http_server_requests_total", MetricType::Counter, "")));
        assert!(meta.contains(&(
            "http_server_duration_milliseconds",
            MetricType::Histogram,
            "milliseconds"
        )));
        assert!(meta.contains(&("process_memory_usage_bytes", MetricType::Gauge, "bytes")));
    }

    #[test]
    fn a_metric_without_a_name_is_refused_and_the_rest_kept() {
        let gauge = |name: &str, points: usize| {
            metric(
                name,
                "",
                Data::Gauge(Gauge {
                    data_points: vec![number(1.0, vec![]); points],
                }),
            )
        };
        let (b, refused) =
            metrics_from_request(request(vec![gauge("", 2), gauge("ok", 1)]), 0).unwrap();
        assert_eq!(b.data_points(), 1);
        assert_eq!(
            refused.by_reason().collect::<Vec<_>>(),
            [(RefuseReason::NoName, 2)]
        );
        let batch = b.write_batch().expect("a valid batch");
        assert!(!batch.series.is_empty());
        let msg = refused.message("data points", 3);
        assert!(msg.contains("metrics[0]"), "{msg}");
    }

    #[test]
    fn delta_exponential_and_malformed_points_are_refused_alone() {
        let req = request(vec![
            metric(
                "ok",
                "",
                Data::Gauge(Gauge {
                    data_points: vec![number(1.0, vec![])],
                }),
            ),
            metric(
                "delta",
                "",
                Data::Sum(Sum {
                    data_points: vec![number(1.0, vec![]), number(2.0, vec![])],
                    aggregation_temporality: 1,
                    is_monotonic: true,
                }),
            ),
            metric(
                "exp",
                "",
                Data::ExponentialHistogram(ExponentialHistogram {
                    data_points: vec![ExponentialHistogramDataPoint::default()],
                    aggregation_temporality: 2,
                }),
            ),
            metric(
                "bad",
                "",
                Data::Histogram(Histogram {
                    data_points: vec![HistogramDataPoint {
                        bucket_counts: vec![1, 2],
                        explicit_bounds: vec![1.0, 2.0],
                        ..Default::default()
                    }],
                    aggregation_temporality: 2,
                }),
            ),
        ]);
        let (b, refused) = metrics_from_request(req, 0).unwrap();
        assert_eq!(b.data_points(), 1);
        let reasons: Vec<_> = refused.by_reason().collect();
        assert_eq!(
            reasons,
            [
                (RefuseReason::DeltaTemporality, 2),
                (RefuseReason::ExponentialHistogram, 1),
                (RefuseReason::InvalidHistogram, 1),
            ]
        );
        let msg = refused.message("data points", 5);
        assert!(
            msg.starts_with("4 of 5 data points refused: 2 with delta"),
            "{msg}"
        );
        assert!(
            msg.contains("metrics[1].sum.dataPoints[0] (metric \"delta\")"),
            "{msg}"
        );
    }

    #[test]
    fn stale_points_colliding_attributes_and_bad_exemplar_ids() {
        let mut stale = number(5.0, vec![kv("a.b", "x"), kv("a_b", "y")]);
        stale.flags = NO_RECORDED_VALUE;
        let req = request(vec![metric(
            "g",
            "",
            Data::Gauge(Gauge {
                data_points: vec![stale],
            }),
        )]);
        let (b, _) = metrics_from_request(req, 0).unwrap();
        let (series, _) = dump(&b);
        let v = series[&format!("g{{a_b=\"x;y\", {FIXED}}}")][0].1;
        assert!(lastmile_model::is_stale_nan(v));

        let mut p = number(1.0, vec![]);
        p.exemplars = vec![exemplar(1.0, &[1; 15])];
        let req = request(vec![metric(
            "c",
            "",
            Data::Sum(Sum {
                data_points: vec![p],
                aggregation_temporality: 2,
                is_monotonic: true,
            }),
        )]);
        let e = metrics_from_request(req, 0).unwrap_err();
        assert!(
            e.to_string().starts_with(
                "resourceMetrics[0].scopeMetrics[0].metrics[0].sum.dataPoints[0] (metric \"c\").exemplars[0].traceId is 15 bytes long"
            ),
            "{e}"
        );
    }
}
