//! Sorted lists of series ids and the set operations matchers need.

use lastmile_model::Matcher;

pub type SeriesId = u32;

/// Intersection of two sorted lists.
pub fn intersect(a: &[SeriesId], b: &[SeriesId]) -> Vec<SeriesId> {
    let (small, large) = if a.len() <= b.len() { (a, b) } else { (b, a) };
    let mut out = Vec::with_capacity(small.len());
    // Gallop through the larger list when sizes differ a lot.
    if large.len() > small.len() * 16 {
        let mut rest = large;
        for &x in small {
            match rest.binary_search(&x) {
                Ok(i) => {
                    out.push(x);
                    rest = &rest[i + 1..];
                }
                Err(i) => rest = &rest[i..],
            }
        }
        return out;
    }
    let (mut i, mut j) = (0, 0);
    while i < small.len() && j < large.len() {
        match small[i].cmp(&large[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                out.push(small[i]);
                i += 1;
                j += 1;
            }
        }
    }
    out
}

/// Elements of `a` not in `b`; both sorted.
pub fn subtract(a: &[SeriesId], b: &[SeriesId]) -> Vec<SeriesId> {
    let mut out = Vec::with_capacity(a.len());
    let mut j = 0;
    for &x in a {
        while j < b.len() && b[j] < x {
            j += 1;
        }
        if j < b.len() && b[j] == x {
            continue;
        }
        out.push(x);
    }
    out
}

/// Union of many sorted lists.
pub fn union(mut lists: Vec<Vec<SeriesId>>) -> Vec<SeriesId> {
    match lists.len() {
        0 => Vec::new(),
        1 => lists.pop().unwrap_or_default(),
        _ => {
            let mut all: Vec<SeriesId> = lists.concat();
            all.sort_unstable();
            all.dedup();
            all
        }
    }
}

/// An index that can list the values of a label name and the postings of a pair. Both the
/// in-memory head and on-disk blocks implement it, so matcher evaluation is written once.
pub trait LabelIndex {
    /// Postings of `name="value"`, sorted; empty when absent.
    fn postings(&self, name: &str, value: &str) -> Vec<SeriesId>;
    /// Calls `f` with each value of `name` and returns the union of postings of the
    /// values for which it returned true.
    fn postings_where(&self, name: &str, f: &mut dyn FnMut(&str) -> bool) -> Vec<SeriesId>;
    /// Every series, sorted.
    fn all_postings(&self) -> Vec<SeriesId>;
}

/// Series selected by all `matchers`, with Prometheus semantics for absent labels: a
/// matcher that accepts the empty string also accepts series without the label.
pub fn select_postings(index: &dyn LabelIndex, matchers: &[Matcher]) -> Vec<SeriesId> {
    let mut positive: Vec<Vec<SeriesId>> = Vec::new();
    let mut negative: Vec<Vec<SeriesId>> = Vec::new();
    for m in matchers {
        if m.matches_empty() {
            // Keep everything except series whose value fails the matcher.
            negative.push(index.postings_where(&m.name, &mut |v| !m.matches(v)));
        } else if m.op == lastmile_model::MatchOp::Equal {
            positive.push(index.postings(&m.name, &m.value));
        } else if let Some(set) = m.set_matches() {
            positive.push(union(
                set.iter().map(|v| index.postings(&m.name, v)).collect(),
            ));
        } else {
            positive.push(index.postings_where(&m.name, &mut |v| m.matches(v)));
        }
    }
    // Most selective first keeps intermediate lists small.
    positive.sort_by_key(Vec::len);
    let mut result = match positive.split_first() {
        Some((first, rest)) => {
            let mut acc = first.clone();
            for p in rest {
                if acc.is_empty() {
                    break;
                }
                acc = intersect(&acc, p);
            }
            acc
        }
        None => index.all_postings(),
    };
    for n in &negative {
        if result.is_empty() {
            break;
        }
        result = subtract(&result, n);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_operations() {
        assert_eq!(intersect(&[1, 3, 5, 7], &[3, 4, 5]), vec![3, 5]);
        let big: Vec<u32> = (0..1000).collect();
        assert_eq!(intersect(&[5, 999, 2000], &big), vec![5, 999]);
        assert_eq!(subtract(&[1, 2, 3, 4], &[2, 4, 6]), vec![1, 3]);
        assert_eq!(union(vec![vec![1, 4], vec![2, 4], vec![]]), vec![1, 2, 4]);
    }
}
