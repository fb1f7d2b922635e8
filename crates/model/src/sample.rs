//! Samples and Prometheus's staleness marker.

/// One float sample: milliseconds since the Unix epoch and a value.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sample {
    pub t: i64,
    pub v: f64,
}

/// The bit pattern Prometheus writes when a series disappears from a scrape. It is a NaN
/// that must be told apart from an ordinary NaN value, so compare bits, never values.
pub const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;
pub const STALE_NAN: f64 = f64::from_bits(STALE_NAN_BITS);

pub fn is_stale_nan(v: f64) -> bool {
    v.to_bits() == STALE_NAN_BITS
}

/// Formats a sample value the way the Prometheus API does (Go's `FormatFloat(v, 'f', -1,
/// 64)`): shortest round-trip digits, no exponent; `NaN`, `+Inf`, `-Inf`.
pub fn format_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        format!("{v}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_marker_is_a_distinct_nan() {
        assert!(STALE_NAN.is_nan());
        assert!(is_stale_nan(STALE_NAN));
        assert!(!is_stale_nan(f64::NAN));
    }

    #[test]
    fn values_format_like_prometheus() {
        assert_eq!(format_value(1.0), "1");
        assert_eq!(format_value(0.1), "0.1");
        assert_eq!(format_value(1e21), "1000000000000000000000");
        assert_eq!(format_value(-2.5e-7), "-0.00000025");
        assert_eq!(format_value(f64::NEG_INFINITY), "-Inf");
        assert_eq!(format_value(STALE_NAN), "NaN");
    }
}
