//! Label inheritance: what is true of a source (a scrape target, an OpenTelemetry
//! resource) becomes a label of every series, log stream and span it sends.
//!
//! Two forms:
//! - `static`: a source selector and labels, e.g. every series, log stream and span of
//!   `{job="checkout"}` gets `tenant_id="acme"`. A span's source is its resource, seen as
//!   labels: every attribute with `.` as `_` (`service.version` → `service_version`),
//!   `job` (`service.namespace/service.name`, as the OpenTelemetry→Prometheus mapping
//!   names it) and `instance` (`service.instance.id`).
//! - `resource_attributes`: attributes of the source copied onto its data. For metrics the
//!   source's attributes are its `target_info` series (where OTLP and the OpenTelemetry
//!   Collector put resource attributes), joined on `job` and `instance`; for OTLP logs they
//!   are the resource attributes the receiver put in each entry's structured metadata.
//!
//! A label the data already has is never overwritten.

use std::collections::{BTreeMap, HashMap};

use lastmile_model::trace::attr;
use lastmile_model::{AttrValue, KeyValue, Resource};
use parking_lot::RwLock;
use serde::Deserialize;

use crate::selector::{Selector, parse_selector};

/// The `inherit:` section of a rules file.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InheritConfig {
    /// Resource (target) attributes copied onto every series and log stream of the source.
    #[serde(default)]
    pub resource_attributes: Vec<String>,
    /// Fixed labels per source.
    #[serde(default, rename = "static")]
    pub static_labels: Vec<StaticInheritConfig>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticInheritConfig {
    /// Which sources, as a selector over series labels, log stream labels and a span's
    /// resource (see the module docs).
    pub source: String,
    pub labels: BTreeMap<String, String>,
}

/// `service.version` → `service_version`: Prometheus's label name rules.
pub fn normalize_label_name(name: &str) -> String {
    let mut out: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert_str(0, "key_");
    }
    out
}

#[derive(Clone, Debug, Default)]
pub struct Inherit {
    /// Normalised names of the resource attributes to copy.
    pub attributes: Vec<String>,
    pub statics: Vec<(Selector, Vec<(String, String)>)>,
}

impl Inherit {
    pub fn new(c: &InheritConfig) -> Result<Self, String> {
        let mut statics = Vec::new();
        for (i, s) in c.static_labels.iter().enumerate() {
            let sel = parse_selector(&s.source).map_err(|e| format!("static[{i}].source: {e}"))?;
            for name in s.labels.keys() {
                if !crate::relabel::is_valid_label_name(name) {
                    return Err(format!(
                        "static[{i}].labels: {name:?} is not a valid label name"
                    ));
                }
            }
            statics.push((
                sel,
                s.labels
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            ));
        }
        Ok(Inherit {
            attributes: c
                .resource_attributes
                .iter()
                .map(|a| normalize_label_name(a))
                .collect(),
            statics,
        })
    }

    pub fn is_empty(&self) -> bool {
        self.attributes.is_empty() && self.statics.is_empty()
    }

    /// Adds the static labels whose source matches, to sorted `pairs`. Returns whether
    /// anything was added.
    pub fn apply_static(&self, pairs: &mut Vec<(String, String)>) -> bool {
        let mut added = Vec::new();
        for (sel, labels) in &self.statics {
            let get = |n: &str| -> &str {
                pairs
                    .binary_search_by(|(k, _)| k.as_str().cmp(n))
                    .map_or("", |i| pairs[i].1.as_str())
            };
            if sel.matches(get) {
                for (k, v) in labels {
                    if get(k).is_empty() && !added.iter().any(|(a, _): &(String, String)| a == k) {
                        added.push((k.clone(), v.clone()));
                    }
                }
            }
        }
        let any = !added.is_empty();
        for (k, v) in added {
            insert_sorted(pairs, k, v);
        }
        any
    }

    /// Static attributes for a span resource; `None` when none applies.
    pub fn resource(&self, resource: &Resource) -> Option<Resource> {
        let mut extra: Vec<KeyValue> = Vec::new();
        let view = ResourceLabels::new(resource);
        for (sel, labels) in &self.statics {
            if sel.matches(|n| view.get(n)) {
                for (k, v) in labels {
                    if attr(&resource.attributes, k).is_none()
                        && !extra.iter().any(|kv| &kv.key == k)
                    {
                        extra.push(KeyValue::string(k.clone(), v.clone()));
                    }
                }
            }
        }
        if extra.is_empty() {
            return None;
        }
        let mut r = resource.clone();
        r.attributes.extend(extra);
        Some(r)
    }
}

pub fn insert_sorted(pairs: &mut Vec<(String, String)>, k: String, v: String) {
    match pairs.binary_search_by(|(n, _)| n.as_str().cmp(&k)) {
        Ok(_) => {}
        Err(i) => pairs.insert(i, (k, v)),
    }
}

/// A resource seen as labels, for source selectors.
pub struct ResourceLabels {
    pairs: Vec<(String, String)>,
}

impl ResourceLabels {
    pub fn new(r: &Resource) -> Self {
        let mut pairs: Vec<(String, String)> = Vec::with_capacity(r.attributes.len() + 2);
        for kv in &r.attributes {
            let v = match &kv.value {
                AttrValue::String(s) => s.clone(),
                other => other.to_text(),
            };
            pairs.push((kv.key.clone(), v.clone()));
            let n = normalize_label_name(&kv.key);
            if n != kv.key {
                pairs.push((n, v));
            }
        }
        let service = r.service_name().to_owned();
        let job = match attr(&r.attributes, "service.namespace").and_then(AttrValue::as_str) {
            Some(ns) if !ns.is_empty() => format!("{ns}/{service}"),
            _ => service,
        };
        pairs.push(("job".into(), job));
        if let Some(i) = attr(&r.attributes, "service.instance.id").and_then(AttrValue::as_str) {
            pairs.push(("instance".into(), i.to_owned()));
        }
        ResourceLabels { pairs }
    }

    pub fn get(&self, name: &str) -> &str {
        self.pairs
            .iter()
            .find(|(k, _)| k == name)
            .map_or("", |(_, v)| v.as_str())
    }
}

/// A metric source: `job` and `instance`.
type SourceKey = (String, String);

/// Resource attributes of metric sources, learned from their `target_info` series.
/// Bounded: sources beyond the limit are not remembered (their series inherit nothing).
#[derive(Debug, Default)]
pub struct TargetInfo {
    map: RwLock<HashMap<SourceKey, Vec<(String, String)>>>,
}

pub const MAX_TARGETS: usize = 100_000;

impl TargetInfo {
    /// Remembers the wanted attributes of one `target_info` series.
    pub fn learn<'a>(&self, labels: impl Iterator<Item = (&'a str, &'a str)>, wanted: &[String]) {
        let mut job = "";
        let mut instance = "";
        let mut attrs = Vec::new();
        for (n, v) in labels {
            match n {
                "job" => job = v,
                "instance" => instance = v,
                _ if wanted.iter().any(|w| w == n) => attrs.push((n.to_owned(), v.to_owned())),
                _ => {}
            }
        }
        let key = (job.to_owned(), instance.to_owned());
        let mut map = self.map.write();
        if map.len() >= MAX_TARGETS && !map.contains_key(&key) {
            return;
        }
        map.insert(key, attrs);
    }

    pub fn get(&self, job: &str, instance: &str) -> Option<Vec<(String, String)>> {
        self.map
            .read()
            .get(&(job.to_owned(), instance.to_owned()))
            .cloned()
    }

    pub fn len(&self) -> usize {
        self.map.read().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_labels_go_to_matching_sources_without_overwriting() {
        let c: InheritConfig = serde_saphyr::from_str(
            "static:\n  - source: '{job=\"checkout\"}'\n    labels: {tenant_id: acme, team: pay}\n",
        )
        .unwrap();
        let i = Inherit::new(&c).unwrap();
        let mut p = vec![
            ("__name__".to_string(), "up".to_string()),
            ("job".into(), "checkout".into()),
            ("team".into(), "own".into()),
        ];
        assert!(i.apply_static(&mut p));
        assert_eq!(
            p.iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>(),
            ["__name__=up", "job=checkout", "team=own", "tenant_id=acme"]
        );
        let mut other = vec![("job".to_string(), "api".to_string())];
        assert!(!i.apply_static(&mut other));
        // Spans: the resource as labels.
        let r = Resource {
            attributes: vec![KeyValue::string("service.name", "checkout")],
        };
        let r2 = i.resource(&r).unwrap();
        assert_eq!(
            attr(&r2.attributes, "tenant_id").and_then(AttrValue::as_str),
            Some("acme")
        );
        let r = Resource {
            attributes: vec![
                KeyValue::string("service.name", "checkout"),
                KeyValue::string("service.namespace", "shop"),
            ],
        };
        assert!(i.resource(&r).is_none(), "job is shop/checkout");
    }

    #[test]
    fn target_info_is_learned_per_job_and_instance() {
        let t = TargetInfo::default();
        let wanted = vec!["service_version".to_string()];
        t.learn(
            [
                ("__name__", "target_info"),
                ("job", "api"),
                ("instance", "i1"),
                ("service_version", "1.2"),
                ("x", "y"),
            ]
            .into_iter(),
            &wanted,
        );
        assert_eq!(
            t.get("api", "i1"),
            Some(vec![("service_version".into(), "1.2".into())])
        );
        assert_eq!(t.get("api", "i2"), None);
        assert_eq!(normalize_label_name("service.version"), "service_version");
        assert_eq!(normalize_label_name("9lives"), "key_9lives");
    }
}
