//! Label sets: the identity of a series.

use serde::ser::{Serialize, SerializeMap, Serializer};
use xxhash_rust::xxh3::xxh3_64_with_seed;

/// The label that carries the metric name.
pub const METRIC_NAME: &str = "__name__";

/// A label borrowed from a decode buffer; the ingest hot path never owns strings.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LabelRef<'a> {
    pub name: &'a str,
    pub value: &'a str,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Label {
    pub name: String,
    pub value: String,
}

/// An owned label set, sorted by name, names unique, no empty values.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Labels(Vec<Label>);

impl Labels {
    /// Builds a label set from pairs in any order. Empty values are dropped (in Prometheus
    /// an empty value means "label absent"); for duplicate names the last pair wins.
    pub fn from_pairs<N: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (N, V)>,
    ) -> Self {
        let mut v: Vec<Label> = pairs
            .into_iter()
            .map(|(n, v)| Label {
                name: n.into(),
                value: v.into(),
            })
            .filter(|l| !l.value.is_empty())
            .collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        // Keep the last of equal names, as a map insert would.
        v.reverse();
        v.dedup_by(|later, earlier| later.name == earlier.name);
        v.reverse();
        Labels(v)
    }

    /// Trusts that `labels` is already sorted, unique and without empty values.
    pub fn from_sorted(labels: Vec<Label>) -> Self {
        debug_assert!(labels.windows(2).all(|w| w[0].name < w[1].name));
        Labels(labels)
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .binary_search_by(|l| l.name.as_str().cmp(name))
            .ok()
            .map(|i| self.0[i].value.as_str())
    }

    pub fn metric_name(&self) -> Option<&str> {
        self.get(METRIC_NAME)
    }

    pub fn iter(&self) -> impl Iterator<Item = LabelRef<'_>> {
        self.0.iter().map(|l| LabelRef {
            name: &l.name,
            value: &l.value,
        })
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn hash(&self) -> u64 {
        hash_labels(self.iter())
    }
}

impl std::fmt::Display for Labels {
    /// Prometheus's notation: `name{a="b", c="d"}`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = self.metric_name().unwrap_or("");
        f.write_str(name)?;
        f.write_str("{")?;
        let mut first = true;
        for l in self.0.iter().filter(|l| l.name != METRIC_NAME) {
            if !first {
                f.write_str(", ")?;
            }
            first = false;
            write!(f, "{}={:?}", l.name, l.value)?;
        }
        f.write_str("}")
    }
}

/// Serialised as a JSON object, the shape every Prometheus API uses for a series.
impl Serialize for Labels {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for l in &self.0 {
            m.serialize_entry(&l.name, &l.value)?;
        }
        m.end()
    }
}

/// Hash of a sorted label set. Each name and value is hashed one-shot, seeded with the
/// hash so far (xxh3 mixes in each input's length, so `{a="bc"}` and `{ab="c"}` differ);
/// one-shot calls on short strings cost a fraction of a streaming hasher's updates.
pub fn hash_labels<'a>(labels: impl IntoIterator<Item = LabelRef<'a>>) -> u64 {
    let mut h: u64 = 0x6c61_7374_6d69_6c65; // "lastmile"
    for l in labels {
        h = xxh3_64_with_seed(l.name.as_bytes(), h);
        h = xxh3_64_with_seed(l.value.as_bytes(), h ^ VALUE_SEED);
    }
    h
}

/// Keeps a name and a value with the same bytes from hashing alike.
const VALUE_SEED: u64 = 0x9e37_79b9_7f4a_7c15;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_pairs_sorts_drops_empty_and_keeps_last_duplicate() {
        let l = Labels::from_pairs([("b", "1"), ("a", "x"), ("c", ""), ("a", "y")]);
        let pairs: Vec<_> = l.iter().map(|l| (l.name, l.value)).collect();
        assert_eq!(pairs, vec![("a", "y"), ("b", "1")]);
    }

    #[test]
    fn hash_separates_names_from_values() {
        let a = Labels::from_pairs([("a", "bc")]);
        let b = Labels::from_pairs([("ab", "c")]);
        assert_ne!(a.hash(), b.hash());
    }

    #[test]
    fn hash_depends_on_order_and_pairing() {
        let h = |p: &[(&str, &str)]| Labels::from_pairs(p.iter().copied()).hash();
        assert_ne!(h(&[("a", "b"), ("c", "d")]), h(&[("a", "d"), ("c", "b")]));
        assert_ne!(h(&[("x", "x")]), h(&[("y", "y")]));
        assert_eq!(h(&[("c", "d"), ("a", "b")]), h(&[("a", "b"), ("c", "d")]));
    }

    #[test]
    fn display_uses_prometheus_notation() {
        let l = Labels::from_pairs([("__name__", "up"), ("job", "api")]);
        assert_eq!(l.to_string(), "up{job=\"api\"}");
    }
}
