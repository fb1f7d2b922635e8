//! The rules stage of the ingest path: a decoded batch in, the batch the store should
//! keep out.

use lastmile_model::{LabelRef, METRIC_NAME, WriteBatch};

use crate::relabel::{Pairs, RelabelConfig, RelabelError, RelabelRule, relabel};

/// Owns the strings rules create, for as long as the batch that borrows them.
pub type StringArena = typed_arena::Arena<String>;

/// What the rules did to one batch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RulesOutcome {
    /// Series a `drop`/`keep`-style rule removed, with their samples.
    pub series_dropped: u64,
    pub samples_dropped: u64,
    /// Series whose relabeled label set lost its metric name: they cannot be stored.
    pub series_without_name: u64,
}

/// Rules for ingested metrics. Empty rules leave batches untouched at no cost.
#[derive(Clone, Debug, Default)]
pub struct MetricRules {
    relabel: Vec<RelabelRule>,
}

impl MetricRules {
    pub fn new(configs: &[RelabelConfig]) -> Result<Self, RelabelError> {
        let relabel = configs
            .iter()
            .enumerate()
            .map(|(i, c)| c.compile(i))
            .collect::<Result<_, _>>()?;
        Ok(MetricRules { relabel })
    }

    pub fn is_empty(&self) -> bool {
        self.relabel.is_empty()
    }

    /// Relabels every series of `batch`. Strings the rules create live in `arena`.
    pub fn apply<'a>(
        &self,
        batch: WriteBatch<'a>,
        arena: &'a StringArena,
    ) -> (WriteBatch<'a>, RulesOutcome) {
        let mut outcome = RulesOutcome::default();
        if self.relabel.is_empty() {
            return (batch, outcome);
        }
        let mut out = WriteBatch::with_capacity(batch.series.len(), batch.samples.len());
        out.metadata = batch.metadata.clone();
        out.invalid_exemplars = batch.invalid_exemplars;
        for s in &batch.series {
            let pairs: Pairs = batch
                .series_labels(s)
                .iter()
                .map(|l| (l.name.to_owned(), l.value.to_owned()))
                .collect();
            let samples = batch.series_samples(s);
            let Some(pairs) = relabel(&self.relabel, pairs) else {
                outcome.series_dropped += 1;
                outcome.samples_dropped += samples.len() as u64;
                continue;
            };
            if !pairs.iter().any(|(n, _)| n == METRIC_NAME) {
                outcome.series_without_name += 1;
                outcome.samples_dropped += samples.len() as u64;
                continue;
            }
            out.begin_series();
            for (n, v) in pairs {
                let n: &'a str = arena.alloc(n);
                let v: &'a str = arena.alloc(v);
                out.push_label(n, v);
            }
            for smp in samples {
                out.push_sample(smp.t, smp.v);
            }
            for e in batch.series_exemplars(s) {
                let labels: Vec<LabelRef<'a>> = batch.exemplar_labels(e).to_vec();
                out.push_exemplar(&labels, e.t, e.v);
            }
            // Relabeled pairs are sorted and unique and carry a metric name.
            if out.finish_series().is_err() {
                outcome.series_without_name += 1;
            }
        }
        (out, outcome)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_is_relabeled_and_dropped_series_counted() {
        let cfgs: Vec<RelabelConfig> = serde_saphyr::from_str(
            "- source_labels: [__name__]\n  regex: 'debug_.*'\n  action: drop\n- source_labels: [instance]\n  regex: '(.*):.*'\n  target_label: host\n- regex: instance\n  action: labeldrop\n",
        )
        .unwrap();
        let rules = MetricRules::new(&cfgs).unwrap();
        let mut b = WriteBatch::new();
        for name in ["up", "debug_x"] {
            b.begin_series();
            b.push_label("__name__", name);
            b.push_label("instance", "db1:9100");
            b.push_sample(1, 1.0);
            b.push_sample(2, 2.0);
            b.finish_series().unwrap();
        }
        let arena = StringArena::new();
        let (out, o) = rules.apply(b, &arena);
        assert_eq!((o.series_dropped, o.samples_dropped), (1, 2));
        assert_eq!(out.series.len(), 1);
        let labels: Vec<_> = out
            .series_labels(&out.series[0])
            .iter()
            .map(|l| (l.name, l.value))
            .collect();
        assert_eq!(labels, [("__name__", "up"), ("host", "db1")]);
        assert_eq!(
            out.series[0].hash,
            lastmile_model::Labels::from_pairs(labels).hash()
        );
        assert_eq!(out.num_samples(), 2);
    }
}
