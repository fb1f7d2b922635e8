//! Prometheus duration strings: `15d`, `1h30m`, `500ms`.

use std::time::Duration;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid duration {input:?}: {reason} (expected e.g. 15d, 2h, 1h30m, 500ms)")]
pub struct DurationError {
    pub input: String,
    pub reason: &'static str,
}

const UNITS: [(&str, u64); 7] = [
    ("y", 365 * 24 * 3600 * 1000),
    ("w", 7 * 24 * 3600 * 1000),
    ("d", 24 * 3600 * 1000),
    ("h", 3600 * 1000),
    ("m", 60 * 1000),
    ("s", 1000),
    ("ms", 1),
];

/// Parses a duration in Prometheus's format: units from years down to milliseconds, each
/// at most once, largest first. `"0"` is accepted.
pub fn parse_duration(input: &str) -> Result<Duration, DurationError> {
    let err = |reason| DurationError {
        input: input.to_owned(),
        reason,
    };
    if input == "0" {
        return Ok(Duration::ZERO);
    }
    if input.is_empty() {
        return Err(err("empty"));
    }
    let mut rest = input;
    let mut total: u64 = 0;
    let mut last_unit = None::<usize>;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(err("a number must precede each unit"));
        }
        let n: u64 = rest[..digits]
            .parse()
            .map_err(|_| err("number too large"))?;
        rest = &rest[digits..];
        // "ms" must be tried before "m".
        let (idx, unit) = UNITS
            .iter()
            .enumerate()
            .filter(|(_, (u, _))| rest.starts_with(u))
            .max_by_key(|(_, (u, _))| u.len())
            .ok_or_else(|| err("unknown unit"))?;
        if last_unit.is_some_and(|l| l >= idx) {
            return Err(err("units must appear once, largest first"));
        }
        last_unit = Some(idx);
        rest = &rest[unit.0.len()..];
        total = n
            .checked_mul(unit.1)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(|| err("duration too large"))?;
    }
    Ok(Duration::from_millis(total))
}

/// Parses a duration in Go's `time.ParseDuration` format, which Tempo's and Loki's APIs
/// use: decimal numbers with units `ns`, `us`/`µs`, `ms`, `s`, `m`, `h`, in any order
/// (`1.5s`, `100ms`, `1h30m`, `2h45m30.5s`). `"0"` is accepted; negatives are not.
pub fn parse_go_duration(input: &str) -> Result<Duration, DurationError> {
    let err = |reason| DurationError {
        input: input.to_owned(),
        reason,
    };
    let s = input.strip_prefix('+').unwrap_or(input);
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.is_empty() {
        return Err(err("empty"));
    }
    if s.starts_with('-') {
        return Err(err("negative"));
    }
    const GO_UNITS: [(&str, f64); 7] = [
        ("ns", 1.0),
        ("us", 1e3),
        ("µs", 1e3),
        ("ms", 1e6),
        ("s", 1e9),
        ("m", 60e9),
        ("h", 3600e9),
    ];
    let mut rest = s;
    let mut nanos = 0f64;
    while !rest.is_empty() {
        let len = rest
            .bytes()
            .take_while(|b| b.is_ascii_digit() || *b == b'.')
            .count();
        let n: f64 = rest[..len]
            .parse()
            .map_err(|_| err("a number must precede each unit"))?;
        rest = &rest[len..];
        let (unit, scale) = GO_UNITS
            .iter()
            .filter(|(u, _)| rest.starts_with(u))
            .max_by_key(|(u, _)| u.len())
            .ok_or_else(|| err("unknown unit (ns, us, ms, s, m, h)"))?;
        rest = &rest[unit.len()..];
        nanos += n * scale;
    }
    if !nanos.is_finite() || nanos > u64::MAX as f64 {
        return Err(err("duration too large"));
    }
    Ok(Duration::from_nanos(nanos.round() as u64))
}

/// Formats a duration the way Prometheus prints it (`1h30m`, `15d`, `0s`).
pub fn format_duration(d: Duration) -> String {
    let mut ms = d.as_millis() as u64;
    if ms == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    for (unit, size) in UNITS {
        if ms >= size {
            out.push_str(&format!("{}{}", ms / size, unit));
            ms %= size;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_prometheus_durations() {
        assert_eq!(
            parse_duration("15d").unwrap(),
            Duration::from_secs(15 * 86400)
        );
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(
            parse_duration("1m1ms").unwrap(),
            Duration::from_millis(60_001)
        );
        assert_eq!(parse_duration("0").unwrap(), Duration::ZERO);
    }

    #[test]
    fn rejects_malformed_durations() {
        for bad in ["", "h", "10", "1x", "1m1h", "1h1h", "-1s", "1.5h"] {
            assert!(parse_duration(bad).is_err(), "{bad} should fail");
        }
    }

    #[test]
    fn format_round_trips() {
        for s in ["1h30m", "500ms", "2w3d"] {
            assert_eq!(format_duration(parse_duration(s).unwrap()), s);
        }
        // Prometheus prints whole weeks as weeks.
        assert_eq!(format_duration(parse_duration("15d").unwrap()), "2w1d");
    }

    #[test]
    fn parses_go_durations() {
        let ms = |v: u64| Duration::from_millis(v);
        assert_eq!(parse_go_duration("1.5s").unwrap(), ms(1500));
        assert_eq!(parse_go_duration("100ms").unwrap(), ms(100));
        assert_eq!(parse_go_duration("1h30m").unwrap(), ms(5_400_000));
        assert_eq!(
            parse_go_duration("250us").unwrap(),
            Duration::from_micros(250)
        );
        assert_eq!(parse_go_duration("7ns").unwrap(), Duration::from_nanos(7));
        assert_eq!(parse_go_duration("0").unwrap(), Duration::ZERO);
        for bad in ["", "1", "1x", "-1s", "s", "1e400s", ".s"] {
            assert!(parse_go_duration(bad).is_err(), "{bad} should fail");
        }
    }
}
