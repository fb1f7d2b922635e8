//! The YAML configuration file of `lastmile serve`, in Prometheus's style: durations like
//! `15d`, sizes like `32MiB`, unknown keys refused so typos do not pass silently.
//!
//! ```yaml
//! storage:
//!   retention: 15d          # delete blocks older than this
//!   wal_sync: fsync         # fsync: ack after fdatasync | write: ack after write(2)
//!   wal_sync_interval: 1s   # with wal_sync: write, how often to fdatasync
//!   max_exemplars: 100000   # exemplars kept in memory
//! limits:
//!   max_request_bytes: 32MiB       # compressed request body
//!   max_decompressed_bytes: 32MiB  # after snappy/zstd
//! rule_files: [rules.yml]          # rules files (relative to this file), hot-reloaded
//! metric_relabel_configs:          # rules may also sit here (any rules-file section)
//!   - source_labels: [__name__]
//!     regex: debug_.*
//!     action: drop
//! traces:
//!   retention: 7d           # delete span blocks whose spans ended longer ago
//!   max_head_spans: 1000000 # write the in-memory spans as a block at this many…
//!   max_head_age: 15m       # …or when the oldest is this old
//! go_runtime:                      # eBPF probes on local Go processes (needs root)
//!   interval: 15s                  # how often their series are stored
//!   processes:
//!     - name: checkout             # command name or executable file name
//!       labels: {job: checkout}
//!       park_profile: 10s          # optional: a park-profile window when first seen
//!       alloc_profile: 10s         # optional: an allocation-profile window
//! logs:
//!   retention: 15d                 # delete log lines older than this
//!   commit_interval: 10s           # how often the full-text index is committed
//!   trace_id_fields: [trace_id, traceId, X-Trace-ID, traceparent]  # replaces the defaults
//!   span_id_fields: [span_id, spanId]
//!   max_entries_limit_per_query: 5000
//! ```

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use lastmile_api::Limits;
use lastmile_model::duration::parse_duration;
use lastmile_rules::{LoadError, RulesSource, SourceKind};
use lastmile_store::{DbOptions, WalSync};
use serde::Deserialize;
use serde::de::IgnoredAny;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub storage: StorageConfig,
    #[serde(default)]
    pub limits: LimitsConfig,
    #[serde(default)]
    pub traces: TracesConfig,
    /// Rules files (see `lastmile_rules::file`), relative to this file's directory.
    #[serde(default)]
    pub rule_files: Vec<PathBuf>,
    // Rules sections written in this file itself: accepted here, parsed (with their line
    // numbers) by the rules crate.
    #[serde(default)]
    pub metric_relabel_configs: Option<IgnoredAny>,
    #[serde(default)]
    pub inherit: Option<IgnoredAny>,
    #[serde(default)]
    pub cardinality: Option<IgnoredAny>,
    #[serde(default)]
    pub naming: Option<IgnoredAny>,
    #[serde(default)]
    pub tail_sampling: Option<IgnoredAny>,
    #[serde(default)]
    pub log_rules: Option<IgnoredAny>,
    #[serde(default)]
    pub canary: Option<IgnoredAny>,
    #[serde(default)]
    pub tests: Option<IgnoredAny>,
    /// Go processes to watch through eBPF.
    pub go_runtime: Option<GoRuntimeConfig>,
    /// The log store and the Loki API.
    #[serde(default)]
    pub logs: LogsConfig,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TracesConfig {
    pub retention: Option<String>,
    pub max_head_spans: Option<usize>,
    pub max_head_age: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GoRuntimeConfig {
    pub interval: Option<String>,
    #[serde(default)]
    pub processes: Vec<GoProcessConfig>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GoProcessConfig {
    pub name: String,
    #[serde(default)]
    pub labels: std::collections::BTreeMap<String, String>,
    pub park_profile: Option<String>,
    pub alloc_profile: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogsConfig {
    pub retention: Option<String>,
    pub commit_interval: Option<String>,
    /// Field names (JSON keys, logfmt keys, structured metadata) that carry trace ids,
    /// tried in order; replaces the default list.
    pub trace_id_fields: Option<Vec<String>>,
    pub span_id_fields: Option<Vec<String>>,
    pub max_entries_limit_per_query: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {
    pub retention: Option<String>,
    /// Time range of blocks cut from the head (Prometheus uses 2h; mostly for tests).
    pub block_range: Option<String>,
    pub wal_sync: Option<WalSyncMode>,
    pub wal_sync_interval: Option<String>,
    pub max_exemplars: Option<usize>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WalSyncMode {
    Fsync,
    Write,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    pub max_request_bytes: Option<ByteSize>,
    pub max_decompressed_bytes: Option<ByteSize>,
}

/// A size given as a number of bytes or a string such as `32MiB`, `512KB`, `1GiB`.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(try_from = "SizeRepr")]
pub struct ByteSize(pub u64);

#[derive(Deserialize)]
#[serde(untagged)]
enum SizeRepr {
    Number(u64),
    Text(String),
}

impl TryFrom<SizeRepr> for ByteSize {
    type Error = String;
    fn try_from(r: SizeRepr) -> Result<Self, String> {
        match r {
            SizeRepr::Number(n) => Ok(ByteSize(n)),
            SizeRepr::Text(s) => parse_size(&s).map(ByteSize),
        }
    }
}

pub fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("invalid size {s:?}: expected e.g. 32MiB"))?;
    let mult: u64 = match unit.trim() {
        "" | "B" => 1,
        "KB" => 1000,
        "KiB" => 1 << 10,
        "MB" => 1_000_000,
        "MiB" => 1 << 20,
        "GB" => 1_000_000_000,
        "GiB" => 1 << 30,
        other => {
            return Err(format!(
                "invalid size unit {other:?} in {s:?}: use B, KB, KiB, MB, MiB, GB or GiB"
            ));
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("size {s:?} is too large"))
}

impl Config {
    /// Whether the file holds rules sections of its own (besides naming `rule_files`).
    pub fn holds_rules(&self) -> bool {
        [
            &self.metric_relabel_configs,
            &self.inherit,
            &self.cardinality,
            &self.naming,
            &self.tail_sampling,
            &self.log_rules,
            &self.canary,
            &self.tests,
        ]
        .iter()
        .any(|s| s.is_some())
    }

    pub fn load(path: &Path) -> anyhow::Result<Config> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config file {}", path.display()))?;
        if text.trim().is_empty() {
            return Ok(Config::default());
        }
        serde_saphyr::from_str(&text)
            .map_err(|e| anyhow::anyhow!("invalid config file {}: {e}", path.display()))
    }

    /// Store options from the config, with `retention_flag` taking precedence.
    pub fn db_options(&self, retention_flag: Option<&str>) -> anyhow::Result<DbOptions> {
        let mut o = DbOptions::default();
        let s = &self.storage;
        if let Some(r) = retention_flag.or(s.retention.as_deref()) {
            o.retention = parse_duration(r)?;
            if o.retention < Duration::from_secs(3600) {
                bail!("retention {r} is shorter than the 1h minimum");
            }
        }
        if let Some(b) = &s.block_range {
            o.block_range = parse_duration(b)?;
            if o.block_range < Duration::from_secs(60) {
                bail!("storage.block_range {b} is shorter than the 1m minimum");
            }
        }
        let interval = match &s.wal_sync_interval {
            Some(i) => parse_duration(i)?,
            None => Duration::from_secs(1),
        };
        o.wal_sync = match s.wal_sync.unwrap_or(WalSyncMode::Fsync) {
            WalSyncMode::Fsync => WalSync::Fsync,
            WalSyncMode::Write => WalSync::Write { interval },
        };
        if let Some(n) = s.max_exemplars {
            o.max_exemplars = n;
        }
        Ok(o)
    }

    /// The span store's options; it shares the metrics store's WAL sync policy.
    pub fn trace_store_options(&self) -> anyhow::Result<lastmile_trace_store::TraceStoreOptions> {
        let mut o = lastmile_trace_store::TraceStoreOptions {
            wal_sync: self.db_options(None)?.wal_sync,
            ..Default::default()
        };
        let t = &self.traces;
        if let Some(r) = &t.retention {
            o.retention = parse_duration(r).context("traces.retention")?;
            if o.retention < Duration::from_secs(3600) {
                bail!("traces.retention {r} is shorter than the 1h minimum");
            }
        }
        if let Some(n) = t.max_head_spans {
            if n == 0 {
                bail!("traces.max_head_spans must be at least 1");
            }
            o.max_head_spans = n;
        }
        if let Some(a) = &t.max_head_age {
            o.max_head_age = parse_duration(a).context("traces.max_head_age")?;
        }
        Ok(o)
    }

    /// Log store options; the WAL sync mode is the one of `storage`.
    pub fn log_store_options(&self) -> anyhow::Result<lastmile_log_store::LogStoreOptions> {
        let mut o = lastmile_log_store::LogStoreOptions {
            wal_sync: self.db_options(None)?.wal_sync,
            ..Default::default()
        };
        let l = &self.logs;
        if let Some(r) = &l.retention {
            o.retention = parse_duration(r).context("logs.retention")?;
            if o.retention < Duration::from_secs(3600) {
                bail!("logs.retention {r} is shorter than the 1h minimum");
            }
        }
        if let Some(c) = &l.commit_interval {
            o.commit_interval = parse_duration(c).context("logs.commit_interval")?;
            if o.commit_interval < Duration::from_millis(100) {
                bail!("logs.commit_interval {c} is shorter than the 100ms minimum");
            }
        }
        Ok(o)
    }

    pub fn trace_fields(&self) -> anyhow::Result<lastmile_receivers::logs::TraceFields> {
        let mut f = lastmile_receivers::logs::TraceFields::default();
        if let Some(t) = &self.logs.trace_id_fields {
            if t.is_empty() || t.iter().any(|n| n.is_empty()) {
                bail!("logs.trace_id_fields must list at least one non-empty field name");
            }
            f.trace_id = t.clone();
        }
        if let Some(s) = &self.logs.span_id_fields {
            f.span_id = s.clone();
        }
        Ok(f)
    }

    pub fn logql_options(&self) -> lastmile_query::logql::LogqlOptions {
        let mut o = lastmile_query::logql::LogqlOptions::default();
        if let Some(n) = self.logs.max_entries_limit_per_query {
            o.max_entries = n;
        }
        o
    }

    /// The `go_runtime:` section as watch options; None when absent or empty.
    pub fn go_runtime_watch(&self) -> anyhow::Result<Option<lastmile_ebpf::watch::WatchOptions>> {
        let Some(g) = &self.go_runtime else {
            return Ok(None);
        };
        if g.processes.is_empty() {
            return Ok(None);
        }
        let interval = match &g.interval {
            Some(i) => parse_duration(i)?,
            None => Duration::from_secs(15),
        };
        if interval < Duration::from_secs(1) {
            bail!("go_runtime.interval {interval:?} is shorter than the 1s minimum");
        }
        let mut specs = Vec::new();
        for p in &g.processes {
            if p.name.trim().is_empty() {
                bail!("go_runtime.processes: a process needs a name");
            }
            let window = |d: &Option<String>, what: &str| -> anyhow::Result<Option<Duration>> {
                d.as_deref()
                    .map(|s| {
                        parse_duration(s).map_err(|e| {
                            anyhow::anyhow!("go_runtime {}: {what} {s:?}: {e}", p.name)
                        })
                    })
                    .transpose()
            };
            specs.push(lastmile_ebpf::watch::WatchSpec {
                selector: lastmile_ebpf::watch::Selector::Name(p.name.clone()),
                labels: p
                    .labels
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
                park_profile: window(&p.park_profile, "park_profile")?,
                alloc_profile: window(&p.alloc_profile, "alloc_profile")?,
            });
        }
        Ok(Some(lastmile_ebpf::watch::WatchOptions {
            specs,
            interval,
            duration: None,
            calibration: Duration::from_secs(1),
        }))
    }

    pub fn limits(&self) -> Limits {
        let mut l = Limits::default();
        if let Some(b) = self.limits.max_request_bytes {
            l.max_request_bytes = b.0 as usize;
        }
        if let Some(b) = self.limits.max_decompressed_bytes {
            l.max_decompressed_bytes = b.0 as usize;
        }
        l
    }
}

/// Reads the rules' sources afresh: the config file itself (it may hold rules) and the
/// `rule_files` it names, as they are on disk now. The rule engine calls it at startup and
/// on every reload, so editing `rule_files` in the config takes effect on reload too.
pub fn rules_loader(config: Option<PathBuf>) -> lastmile_rules::Loader {
    Box::new(move || {
        let Some(path) = &config else {
            return Ok(Vec::new());
        };
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|e| LoadError::in_file(&name, format!("cannot read the config file: {e}")))?;
        let parsed: Config = if text.trim().is_empty() {
            Config::default()
        } else {
            serde_saphyr::from_str(&text)
                .map_err(|e| LoadError::in_file(&name, format!("invalid config file: {e}")))?
        };
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let mut sources = Vec::new();
        if parsed.holds_rules() {
            sources.push(RulesSource {
                name,
                text,
                kind: SourceKind::ServeConfig,
            });
        }
        for f in &parsed.rule_files {
            let p = if f.is_absolute() {
                f.clone()
            } else {
                base.join(f)
            };
            let name = p.display().to_string();
            let text = std::fs::read_to_string(&p).map_err(|e| {
                LoadError::in_file(&name, format!("cannot read the rules file: {e}"))
            })?;
            sources.push(RulesSource::rules_file(name, text));
        }
        Ok(sources)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> anyhow::Result<Config> {
        let dir = tempfile::tempdir()?;
        let p = dir.path().join("c.yml");
        std::fs::write(&p, yaml)?;
        Config::load(&p)
    }

    #[test]
    fn full_config_parses() {
        let c = parse("storage:\n  retention: 30d\n  wal_sync: write\n  wal_sync_interval: 2s\nlimits:\n  max_request_bytes: 8MiB\n  max_decompressed_bytes: 1048576\n").unwrap();
        let o = c.db_options(None).unwrap();
        assert_eq!(o.retention, Duration::from_secs(30 * 86400));
        assert_eq!(
            o.wal_sync,
            WalSync::Write {
                interval: Duration::from_secs(2)
            }
        );
        assert_eq!(c.limits().max_request_bytes, 8 << 20);
        assert_eq!(c.limits().max_decompressed_bytes, 1 << 20);
        assert_eq!(
            c.db_options(Some("2d")).unwrap().retention,
            Duration::from_secs(2 * 86400)
        );
    }

    #[test]
    fn typos_and_bad_values_are_errors() {
        let e = parse("storage:\n  retension: 30d\n").unwrap_err();
        assert!(e.to_string().contains("retension"), "{e}");
        assert!(parse("limits:\n  max_request_bytes: 12 parsecs\n").is_err());
        let c = parse("storage:\n  retention: 15x\n").unwrap();
        assert!(c.db_options(None).unwrap_err().to_string().contains("15x"));
    }

    fn rules_of(yaml: &str, files: &[(&str, &str)]) -> Result<lastmile_rules::Rules, LoadError> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.yml");
        std::fs::write(&p, yaml).unwrap();
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        lastmile_rules::Rules::load(rules_loader(Some(p)))
    }

    #[test]
    fn rules_in_the_config_and_in_rule_files_are_checked_at_load() {
        let r = rules_of(
            "metric_relabel_configs:\n  - source_labels: [job]\n    regex: x\n    action: drop\nrule_files: [r.yml]\n",
            &[("r.yml", "log_rules:\n  - action: drop\n")],
        )
        .unwrap();
        let st = r.status(1);
        assert_eq!(st.stable.rules.relabel, 1);
        assert_eq!(st.stable.rules.log_rules.len(), 1);
        let e = rules_of(
            "storage:\n  retention: 2d\nmetric_relabel_configs:\n  - action: hashmod\n    target_label: s\n",
            &[],
        )
        .unwrap_err();
        assert!(e.to_string().contains("modulus"), "{e}");
        assert_eq!(e.loc.line, 4, "{e}");
        let e = rules_of("rule_files: [missing.yml]\n", &[]).unwrap_err();
        assert!(e.to_string().contains("missing.yml"), "{e}");
        let e = rules_of(
            "rule_files: [r.yml]\n",
            &[("r.yml", "log_rules:\n  - action: burn\n")],
        )
        .unwrap_err();
        assert!(e.to_string().contains("r.yml:2"), "{e}");
    }

    #[test]
    fn go_runtime_section() {
        let c = parse("go_runtime:\n  interval: 5s\n  processes:\n    - name: checkout\n      labels: {job: shop}\n      park_profile: 10s\n").unwrap();
        let w = c.go_runtime_watch().unwrap().unwrap();
        assert_eq!(w.interval, Duration::from_secs(5));
        assert_eq!(w.specs[0].park_profile, Some(Duration::from_secs(10)));
        assert_eq!(
            w.specs[0].labels,
            vec![("job".to_owned(), "shop".to_owned())]
        );
        assert!(parse("go_runtime:\n  processes:\n    - nmae: x\n").is_err());
        let c =
            parse("go_runtime:\n  processes:\n    - name: x\n      park_profile: soon\n").unwrap();
        assert!(
            c.go_runtime_watch()
                .unwrap_err()
                .to_string()
                .contains("soon")
        );
        assert!(
            parse("go_runtime: {}\n")
                .unwrap()
                .go_runtime_watch()
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn logs_section() {
        let c = parse("logs:\n  retention: 2d\n  commit_interval: 1s\n  trace_id_fields: [rid]\n  max_entries_limit_per_query: 10\n").unwrap();
        let o = c.log_store_options().unwrap();
        assert_eq!(o.retention, Duration::from_secs(2 * 86400));
        assert_eq!(o.commit_interval, Duration::from_secs(1));
        assert_eq!(c.trace_fields().unwrap().trace_id, vec!["rid".to_string()]);
        assert_eq!(c.logql_options().max_entries, 10);
        assert!(parse("logs:\n  retension: 2d\n").is_err());
        let c = parse("logs:\n  retention: 1m\n").unwrap();
        assert!(
            c.log_store_options()
                .unwrap_err()
                .to_string()
                .contains("1h")
        );
        let c = parse("logs:\n  trace_id_fields: []\n").unwrap();
        assert!(c.trace_fields().is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("32MiB"), Ok(32 << 20));
        assert_eq!(parse_size("10KB"), Ok(10_000));
        assert!(parse_size("MiB").is_err());
    }
}
