//! Label-set edits PromQL needs: drop the metric name, keep or drop some names, set one.

use lastmile_model::{Labels, METRIC_NAME};

pub fn without_name(l: &Labels) -> Labels {
    filtered(l, |n| n != METRIC_NAME)
}

pub fn filtered(l: &Labels, keep: impl Fn(&str) -> bool) -> Labels {
    Labels::from_sorted_refs(l.iter().filter(|x| keep(x.name)).map(|x| (x.name, x.value)))
}

/// Sets `name` to `value`; an empty value removes the label, as in Prometheus.
pub fn with_label(l: &Labels, name: &str, value: &str) -> Labels {
    let mut pairs: Vec<(&str, &str)> = l
        .iter()
        .filter(|x| x.name != name)
        .map(|x| (x.name, x.value))
        .collect();
    if !value.is_empty() {
        pairs.push((name, value));
    }
    Labels::from_pairs(pairs)
}

/// A key identifying the values of `names` (or of all labels except `names` when
/// `!include`), used to group or match series. Absent labels count as empty.
pub fn signature(l: &Labels, names: &[String], include: bool) -> Vec<u8> {
    let mut key = Vec::with_capacity(64);
    signature_into(l, names, include, &mut key);
    key
}

/// [`signature`] into a reused buffer (cleared first), so hot loops do not allocate.
pub fn signature_into(l: &Labels, names: &[String], include: bool, key: &mut Vec<u8>) {
    if include {
        signature_sorted_into(l, &sorted_names(names), include, key)
    } else {
        signature_sorted_into(l, names, include, key)
    }
}

/// `names` sorted and without repeats: what [`signature_sorted_into`] takes for `by`.
pub fn sorted_names(names: &[String]) -> Vec<String> {
    let mut sorted = names.to_vec();
    sorted.sort();
    sorted.dedup();
    sorted
}

/// [`signature_into`] with `names` already passed through [`sorted_names`] when
/// `include` (a loop over many series sorts them once).
pub fn signature_sorted_into(l: &Labels, names: &[String], include: bool, key: &mut Vec<u8>) {
    key.clear();
    if include {
        for n in names {
            key.extend_from_slice(n.as_bytes());
            key.push(0xfe);
            key.extend_from_slice(l.get(n).unwrap_or("").as_bytes());
            key.push(0xff);
        }
    } else {
        for x in l.iter() {
            if x.name == METRIC_NAME || names.iter().any(|n| n == x.name) {
                continue;
            }
            key.extend_from_slice(x.name.as_bytes());
            key.push(0xfe);
            key.extend_from_slice(x.value.as_bytes());
            key.push(0xff);
        }
    }
}

/// The labels a grouping keeps: `by (names)` keeps those, `without (names)` drops them and
/// the metric name.
pub fn grouping_labels(l: &Labels, names: &[String], by: bool) -> Labels {
    if by {
        filtered(l, |n| names.iter().any(|x| x == n))
    } else {
        filtered(l, |n| n != METRIC_NAME && !names.iter().any(|x| x == n))
    }
}
