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
///
/// Stored compactly, because queries build and drop label sets by the hundred thousand:
/// all names and values in one string, each followed by a NUL (`name\0value\0…`), plus
/// their end offsets — two allocations per set instead of two per label. When no name or
/// value contains a NUL byte (always, in practice), comparing two texts byte by byte
/// orders the sets exactly as comparing them label by label does, so sorting series by
/// labels is one `memcmp` per comparison.
#[derive(Clone, Default)]
pub struct Labels {
    text: Box<str>,
    /// End of each name and value in `text` (its NUL terminator's position): name 0,
    /// value 0, name 1, …
    ends: Box<[usize]>,
    /// Some name or value contains a NUL byte: `text` order is not label order then.
    has_nul: bool,
}

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
        Labels::from_sorted(v)
    }

    /// Trusts that `labels` is already sorted, unique and without empty values.
    pub fn from_sorted(labels: Vec<Label>) -> Self {
        Labels::from_sorted_refs(labels.iter().map(|l| (l.name.as_str(), l.value.as_str())))
    }

    /// Like [`Labels::from_sorted`], from borrowed names and values (no intermediate
    /// strings).
    pub fn from_sorted_refs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        let pairs = pairs.into_iter();
        let mut text = String::with_capacity(pairs.size_hint().0 * 24);
        let mut ends = Vec::with_capacity(pairs.size_hint().0 * 2);
        let mut prev: Option<&str> = None;
        for (name, value) in pairs {
            debug_assert!(prev.is_none_or(|p| p < name), "labels not sorted or unique");
            prev = Some(name);
            text.push_str(name);
            ends.push(text.len());
            text.push('\0');
            text.push_str(value);
            ends.push(text.len());
            text.push('\0');
        }
        // One pass over the text: more NULs than terminators means one is inside.
        let has_nul = text.bytes().filter(|&b| b == 0).count() != ends.len();
        Labels {
            text: text.into_boxed_str(),
            ends: ends.into_boxed_slice(),
            has_nul,
        }
    }

    /// The labels whose names `keep` accepts (one pass, one allocation of each part).
    pub fn filter(&self, mut keep: impl FnMut(&str) -> bool) -> Labels {
        let mut text = String::with_capacity(self.text.len());
        let mut ends = Vec::with_capacity(self.ends.len());
        let mut has_nul = false;
        for l in self.iter().filter(|l| keep(l.name)) {
            has_nul |= self.has_nul && (l.name.contains('\0') || l.value.contains('\0'));
            text.push_str(l.name);
            ends.push(text.len());
            text.push('\0');
            text.push_str(l.value);
            ends.push(text.len());
            text.push('\0');
        }
        Labels {
            text: text.into_boxed_str(),
            ends: ends.into_boxed_slice(),
            has_nul,
        }
    }

    /// The name or value number `i` (names even, values odd).
    fn part(&self, i: usize) -> &str {
        let start = if i == 0 { 0 } else { self.ends[i - 1] + 1 };
        &self.text[start..self.ends[i]]
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        let (mut lo, mut hi) = (0, self.len());
        while lo < hi {
            let mid = (lo + hi) / 2;
            match self.part(2 * mid).cmp(name) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return Some(self.part(2 * mid + 1)),
            }
        }
        None
    }

    pub fn metric_name(&self) -> Option<&str> {
        self.get(METRIC_NAME)
    }

    pub fn iter(&self) -> impl Iterator<Item = LabelRef<'_>> {
        (0..self.len()).map(|i| LabelRef {
            name: self.part(2 * i),
            value: self.part(2 * i + 1),
        })
    }

    pub fn len(&self) -> usize {
        self.ends.len() / 2
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    pub fn hash(&self) -> u64 {
        hash_labels(self.iter())
    }
}

impl PartialEq for Labels {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text && self.ends == other.ends
    }
}

impl Eq for Labels {}

impl std::hash::Hash for Labels {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.text.hash(state);
        self.ends.hash(state);
    }
}

impl Ord for Labels {
    /// Label by label: name, then value; a set that is a prefix of another sorts first.
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        if self.has_nul || other.has_nul {
            self.iter().cmp(other.iter())
        } else {
            self.text.as_bytes().cmp(other.text.as_bytes())
        }
    }
}

impl PartialOrd for Labels {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl std::fmt::Debug for Labels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map()
            .entries(self.iter().map(|l| (l.name, l.value)))
            .finish()
    }
}

impl std::fmt::Display for Labels {
    /// Prometheus's notation: `name{a="b", c="d"}`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = self.metric_name().unwrap_or("");
        f.write_str(name)?;
        f.write_str("{")?;
        let mut first = true;
        for l in self.iter().filter(|l| l.name != METRIC_NAME) {
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
        let mut m = s.serialize_map(Some(self.len()))?;
        for l in self.iter() {
            m.serialize_entry(l.name, l.value)?;
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
    fn order_is_label_by_label_also_with_nul_bytes() {
        let sets = [
            vec![("a", "b")],
            vec![("a", "b"), ("c", "d")],
            vec![("a", "bc")],
            vec![("ab", "c")],
            vec![("a", "b\0"), ("c", "d")],
            vec![("a", "b\0x")],
            vec![("a", "b"), ("c", "\0")],
            vec![("a", "\u{e9}")],
            vec![],
        ];
        let owned = |p: &Vec<(&str, &str)>| -> Vec<(String, String)> {
            p.iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect()
        };
        for x in &sets {
            for y in &sets {
                let (lx, ly) = (
                    Labels::from_sorted_refs(x.iter().copied()),
                    Labels::from_sorted_refs(y.iter().copied()),
                );
                assert_eq!(lx.cmp(&ly), owned(x).cmp(&owned(y)), "{x:?} vs {y:?}");
                assert_eq!(lx == ly, x == y);
            }
        }
    }

    #[test]
    fn get_and_iter_see_every_label() {
        let l = Labels::from_pairs([("job", "api"), ("__name__", "up"), ("zone", "a\0b")]);
        assert_eq!(l.get("job"), Some("api"));
        assert_eq!(l.get("zone"), Some("a\0b"));
        assert_eq!(l.get("__name__"), Some("up"));
        assert_eq!(l.get("missing"), None);
        assert_eq!(l.len(), 3);
        assert!(Labels::default().is_empty());
        assert_eq!(Labels::default().get("x"), None);
        let names: Vec<_> = l.iter().map(|x| x.name).collect();
        assert_eq!(names, ["__name__", "job", "zone"]);
        assert_eq!(
            format!("{:?}", Labels::from_pairs([("a", "b")])),
            r#"{"a": "b"}"#
        );
    }

    #[test]
    fn display_uses_prometheus_notation() {
        let l = Labels::from_pairs([("__name__", "up"), ("job", "api")]);
        assert_eq!(l.to_string(), "up{job=\"api\"}");
    }
}
