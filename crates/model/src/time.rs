//! Timestamps as the Prometheus HTTP API reads and writes them.

/// Earliest and latest times the Prometheus API accepts as "unbounded".
pub const MIN_TIME_MS: i64 = i64::MIN / 2;
pub const MAX_TIME_MS: i64 = i64::MAX / 2;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("cannot parse {0:?} to a valid timestamp")]
pub struct TimeError(pub String);

/// Parses `1700000000`, `1700000000.123` or RFC 3339 (`2023-11-14T22:13:20Z`) into
/// milliseconds since the epoch.
pub fn parse_api_time(s: &str) -> Result<i64, TimeError> {
    let err = || TimeError(s.to_owned());
    if let Ok(secs) = s.parse::<f64>() {
        if !secs.is_finite() {
            return Err(err());
        }
        let ms = (secs * 1000.0).round();
        if ms < MIN_TIME_MS as f64 || ms > MAX_TIME_MS as f64 {
            return Err(err());
        }
        return Ok(ms as i64);
    }
    parse_rfc3339(s).ok_or_else(err)
}

/// Seconds with millisecond precision, the way Prometheus prints sample timestamps.
pub fn ms_to_seconds(ms: i64) -> f64 {
    ms as f64 / 1000.0
}

fn parse_rfc3339(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !(b[10] == b'T' || b[10] == b't') {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = s.get(r)?;
        if !part.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        part.parse().ok()
    };
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (hour, min, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || min > 59 || sec > 60 {
        return None;
    }
    let mut i = 19;
    let mut frac_ms = 0i64;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == start {
            return None;
        }
        let digits = &s[start..i.min(start + 3)];
        frac_ms = digits.parse::<i64>().ok()? * 10i64.pow(3 - digits.len() as u32);
    }
    let offset_s = match b.get(i)? {
        b'Z' | b'z' if i + 1 == b.len() => 0,
        sign @ (b'+' | b'-') if i + 6 == b.len() && b[i + 3] == b':' => {
            let h = num(i + 1..i + 3)?;
            let m = num(i + 4..i + 6)?;
            let off = h * 3600 + m * 60;
            if *sign == b'+' { off } else { -off }
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    Some((days * 86400 + hour * 3600 + min * 60 + sec - offset_s) * 1000 + frac_ms)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_unix_seconds() {
        assert_eq!(parse_api_time("1700000000").unwrap(), 1_700_000_000_000);
        assert_eq!(parse_api_time("1700000000.123").unwrap(), 1_700_000_000_123);
    }

    #[test]
    fn parses_rfc3339() {
        assert_eq!(
            parse_api_time("2023-11-14T22:13:20Z").unwrap(),
            1_700_000_000_000
        );
        assert_eq!(
            parse_api_time("2023-11-14T22:13:20.5Z").unwrap(),
            1_700_000_000_500
        );
        assert_eq!(
            parse_api_time("2023-11-15T00:13:20+02:00").unwrap(),
            1_700_000_000_000
        );
        assert_eq!(parse_api_time("1970-01-01T00:00:00Z").unwrap(), 0);
    }

    #[test]
    fn rejects_garbage() {
        for bad in [
            "",
            "abc",
            "NaN",
            "2023-13-01T00:00:00Z",
            "2023-11-14 22:13:20",
        ] {
            assert!(parse_api_time(bad).is_err(), "{bad}");
        }
    }
}
