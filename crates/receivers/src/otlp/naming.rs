//! OTLP names to Prometheus names, per the OpenTelemetry Prometheus-compatibility rules:
//! invalid characters become `_` (runs of `_` collapse to one), the unit is spelled out and
//! appended (`ms` → `_milliseconds`, `By/s` → `_bytes_per_second`, `{request}` dropped),
//! gauges with unit `1` get `_ratio`, monotonic sums `_total`.

/// The kind of Prometheus metric an OTLP metric becomes; it decides the suffixes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetricKind {
    Counter,
    Gauge,
    Histogram,
    Summary,
}

/// The Prometheus metric (family) name for an OTLP metric name and unit.
pub fn metric_name(name: &str, unit: &str, kind: MetricKind) -> String {
    let mut base = sanitize(
        name,
        |c| c.is_ascii_alphanumeric() || c == '_' || c == ':',
        true,
    );
    if kind == MetricKind::Counter
        && let Some(stripped) = base.strip_suffix("_total")
    {
        base = stripped.to_owned();
    }
    let unit = match prometheus_unit(unit) {
        Some(u) => Some(u),
        None if unit.trim() == "1" && kind == MetricKind::Gauge => Some("ratio".to_owned()),
        None => None,
    };
    if let Some(unit) = unit
        && !contains_tokens(&base, &unit)
    {
        base.push('_');
        base.push_str(&unit);
    }
    if kind == MetricKind::Counter {
        base.push_str("_total");
    }
    collapse_underscores(&base)
}

/// A Prometheus label name for an attribute key: invalid characters become `_`, runs of
/// `_` collapse, a leading digit gets `key_` in front. Empty keys give `None`.
pub fn label_name(key: &str) -> Option<String> {
    if key.is_empty() {
        return None;
    }
    let s = sanitize(key, |c| c.is_ascii_alphanumeric() || c == '_', true);
    Some(if s.starts_with(|c: char| c.is_ascii_digit()) {
        format!("key_{s}")
    } else {
        s
    })
}

/// Loki's label-name rule for OTLP attributes (`service.name` → `service_name`): invalid
/// characters become `_`, a leading digit gets `key_` in front; runs of `_` are kept.
pub fn loki_label_name(key: &str) -> String {
    let s = sanitize(key, |c| c.is_ascii_alphanumeric() || c == '_', false);
    if s.starts_with(|c: char| c.is_ascii_digit()) {
        format!("key_{s}")
    } else {
        s
    }
}

/// The unit as a Prometheus name suffix, or `None` for no suffix (empty, `1`, or only
/// `{annotations}`).
pub fn prometheus_unit(unit: &str) -> Option<String> {
    let mut plain = String::with_capacity(unit.len());
    let mut depth = 0u32;
    for c in unit.chars() {
        match c {
            '{' => depth += 1,
            '}' => depth = depth.saturating_sub(1),
            _ if depth == 0 => plain.push(c),
            _ => {}
        }
    }
    let plain = plain.trim();
    if plain.is_empty() || plain == "1" {
        return None;
    }
    let (main, per) = match plain.split_once('/') {
        Some((m, p)) => (m.trim(), Some(p.trim())),
        None => (plain, None),
    };
    let main = unit_word(main).map_or_else(|| main.to_owned(), str::to_owned);
    let text = match per.filter(|p| !p.is_empty()) {
        Some(p) => {
            let per = per_unit_word(p).map_or_else(|| p.to_owned(), str::to_owned);
            if main.is_empty() || main == "1" {
                format!("per_{per}")
            } else {
                format!("{main}_per_{per}")
            }
        }
        None => main,
    };
    let s = sanitize(&text, |c| c.is_ascii_alphanumeric() || c == '_', true);
    let s = s.trim_matches('_');
    (!s.is_empty()).then(|| s.to_owned())
}

/// UCUM abbreviations OpenTelemetry semantic conventions use, spelled out as Prometheus
/// base-unit suffixes.
fn unit_word(u: &str) -> Option<&'static str> {
    Some(match u {
        "d" => "days",
        "h" => "hours",
        "min" => "minutes",
        "s" => "seconds",
        "ms" => "milliseconds",
        "us" => "microseconds",
        "ns" => "nanoseconds",
        "By" => "bytes",
        "KiBy" => "kibibytes",
        "MiBy" => "mebibytes",
        "GiBy" => "gibibytes",
        "TiBy" => "tibibytes",
        "KBy" => "kilobytes",
        "MBy" => "megabytes",
        "GBy" => "gigabytes",
        "TBy" => "terabytes",
        "m" => "meters",
        "V" => "volts",
        "A" => "amperes",
        "J" => "joules",
        "W" => "watts",
        "g" => "grams",
        "Cel" => "celsius",
        "Hz" => "hertz",
        "%" => "percent",
        _ => return None,
    })
}

fn per_unit_word(u: &str) -> Option<&'static str> {
    Some(match u {
        "s" => "second",
        "m" => "minute",
        "h" => "hour",
        "d" => "day",
        "w" => "week",
        "mo" => "month",
        "y" => "year",
        _ => return None,
    })
}

fn sanitize(s: &str, valid: impl Fn(char) -> bool, collapse: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        let c = if valid(c) { c } else { '_' };
        if collapse && c == '_' && out.ends_with('_') {
            continue;
        }
        out.push(c);
    }
    out
}

fn collapse_underscores(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c == '_' && out.ends_with('_') {
            continue;
        }
        out.push(c);
    }
    if out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    out
}

/// Whether `name` already carries `unit` as whole `_`-separated words.
fn contains_tokens(name: &str, unit: &str) -> bool {
    format!("_{name}_").contains(&format!("_{unit}_"))
}

#[cfg(test)]
mod tests {
    use super::MetricKind::*;
    use super::*;

    #[test]
    fn metric_names_follow_the_compatibility_rules() {
        let cases = [
            (
                "http.server.request.duration",
                "s",
                Histogram,
                "http_server_request_duration_seconds",
            ),
            (
                "http.server.duration",
                "ms",
                Histogram,
                "http_server_duration_milliseconds",
            ),
            (
                "http.server.requests",
                "{request}",
                Counter,
                "http_server_requests_total",
            ),
            ("requests_total", "", Counter, "requests_total"),
            ("sent", "By", Counter, "sent_bytes_total"),
            ("sent_total", "By", Counter, "sent_bytes_total"),
            ("throughput", "By/s", Gauge, "throughput_bytes_per_second"),
            ("cpu.utilization", "1", Gauge, "cpu_utilization_ratio"),
            ("cpu.ratio", "1", Gauge, "cpu_ratio"),
            ("events", "1", Counter, "events_total"),
            (
                "process.memory.usage",
                "By",
                Gauge,
                "process_memory_usage_bytes",
            ),
            ("memory_bytes", "By", Gauge, "memory_bytes"),
            ("weird..name--x", "", Gauge, "weird_name_x"),
            ("2xx.count", "", Gauge, "_2xx_count"),
            ("rpc.latency", "{call}/s", Gauge, "rpc_latency_per_second"),
            ("temp", "Cel", Gauge, "temp_celsius"),
            ("custom", "widgets", Gauge, "custom_widgets"),
            ("a:b", "", Gauge, "a:b"),
            ("lag", "s", Summary, "lag_seconds"),
        ];
        for (name, unit, kind, want) in cases {
            assert_eq!(
                metric_name(name, unit, kind),
                want,
                "{name} [{unit}] {kind:?}"
            );
        }
    }

    #[test]
    fn label_names() {
        assert_eq!(label_name("http.method").as_deref(), Some("http_method"));
        assert_eq!(label_name("a..b").as_deref(), Some("a_b"));
        assert_eq!(label_name("__name__").as_deref(), Some("_name_"));
        assert_eq!(label_name("0day").as_deref(), Some("key_0day"));
        assert_eq!(label_name(""), None);
        assert_eq!(loki_label_name("k8s.pod.name"), "k8s_pod_name");
        assert_eq!(loki_label_name("a..b"), "a__b");
    }
}
