//! Trace and span ids, and the normalisation of their many spellings (SPEC C2).
//!
//! Services propagate the same 128-bit trace id as a W3C `traceparent`, a B3 header
//! (64- or 128-bit), an `X-Trace-ID` UUID, bare hex or base64. lastmile stores one
//! canonical form, 16 bytes, so a log line written by any of them joins its trace.

use std::fmt;

/// A 128-bit trace id. 64-bit ids (B3, Jaeger) are left-padded with zeros, as the
/// OpenTelemetry propagators do.
#[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TraceId(pub [u8; 16]);

/// A 64-bit span id.
#[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SpanId(pub [u8; 8]);

impl TraceId {
    /// From 16 bytes, or 8 bytes of a 64-bit id. All-zero ids are invalid (W3C).
    pub fn from_bytes(b: &[u8]) -> Option<TraceId> {
        let mut id = [0u8; 16];
        match b.len() {
            16 => id.copy_from_slice(b),
            8 => id[8..].copy_from_slice(b),
            _ => return None,
        }
        (id != [0; 16]).then_some(TraceId(id))
    }

    /// Lowercase hex, 32 characters: the form every API prints.
    pub fn to_hex(&self) -> String {
        hex(&self.0)
    }

    /// Any supported spelling of a trace id, or a header carrying one:
    ///
    /// - W3C `traceparent`: `00-<32 hex>-<16 hex>-<2 hex>`
    /// - B3 single header: `<16|32 hex>-<16 hex>[-<sampled>[-<parent>]]`
    /// - UUID: `8-4-4-4-12` hex digits (any case, optional braces)
    /// - bare hex: 32 or 16 digits (16 = a 64-bit id)
    /// - base64 (standard or URL-safe, padded or not) of 16 or 8 bytes
    pub fn parse_any(s: &str) -> Option<TraceId> {
        parse_trace_context(s).map(|(t, _)| t)
    }
}

impl SpanId {
    pub fn from_bytes(b: &[u8]) -> Option<SpanId> {
        let id: [u8; 8] = b.try_into().ok()?;
        (id != [0; 8]).then_some(SpanId(id))
    }

    pub fn to_hex(&self) -> String {
        hex(&self.0)
    }

    /// 16 hex digits or base64 of 8 bytes.
    pub fn parse_any(s: &str) -> Option<SpanId> {
        let s = s.trim();
        if s.len() == 16 {
            return from_hex(s).and_then(|b| SpanId::from_bytes(&b));
        }
        base64_decode(s).and_then(|b| SpanId::from_bytes(&b))
    }
}

/// The trace id and, where the spelling carries one, the span id (traceparent, B3).
pub fn parse_trace_context(s: &str) -> Option<(TraceId, Option<SpanId>)> {
    let s = s.trim();
    let s = s
        .strip_prefix('{')
        .and_then(|r| r.strip_suffix('}'))
        .unwrap_or(s);
    let parts: Vec<&str> = s.split('-').collect();
    match parts.as_slice() {
        // W3C traceparent: version-traceid-parentid-flags. Version ff is forbidden.
        [ver, trace, span, flags]
            if ver.len() == 2 && trace.len() == 32 && span.len() == 16 && flags.len() == 2 =>
        {
            if ver.eq_ignore_ascii_case("ff") || from_hex(ver).is_none() {
                return None;
            }
            from_hex(flags)?;
            let t = TraceId::from_bytes(&from_hex(trace)?)?;
            Some((t, from_hex(span).and_then(|b| SpanId::from_bytes(&b))))
        }
        // UUID: 8-4-4-4-12.
        [a, b, c, d, e] if [a.len(), b.len(), c.len(), d.len(), e.len()] == [8, 4, 4, 4, 12] => {
            let joined: String = parts.concat();
            Some((TraceId::from_bytes(&from_hex(&joined)?)?, None))
        }
        // B3 single header: trace-span[-sampled[-parent]].
        [trace, span, rest @ ..]
            if (trace.len() == 32 || trace.len() == 16) && span.len() == 16 && rest.len() <= 2 =>
        {
            let t = TraceId::from_bytes(&from_hex(trace)?)?;
            Some((t, from_hex(span).and_then(|b| SpanId::from_bytes(&b))))
        }
        [one] => {
            let bytes = if one.len() == 32 || one.len() == 16 {
                from_hex(one).or_else(|| base64_decode(one))
            } else {
                base64_decode(one)
            }?;
            Some((TraceId::from_bytes(&bytes)?, None))
        }
        _ => None,
    }
}

impl fmt::Display for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TraceId({})", self.to_hex())
    }
}

impl fmt::Display for SpanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for SpanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SpanId({})", self.to_hex())
    }
}

impl serde::Serialize for TraceId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl serde::Serialize for SpanId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

pub fn hex(bytes: &[u8]) -> String {
    let mut out = vec![0u8; bytes.len() * 2];
    hex_into(bytes, &mut out);
    out.into_iter().map(char::from).collect()
}

/// Lowercase hex of `bytes` into the first `2 * bytes.len()` bytes of `out` (which must
/// hold them), without allocating.
pub fn hex_into(bytes: &[u8], out: &mut [u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for (b, pair) in bytes.iter().zip(out.chunks_exact_mut(2)) {
        pair[0] = DIGITS[usize::from(b >> 4)];
        pair[1] = DIGITS[usize::from(b & 15)];
    }
}

/// Hex digits (any case, even count) to bytes.
pub fn from_hex(s: &str) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    if !b.len().is_multiple_of(2) {
        return None;
    }
    let nibble = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    b.chunks_exact(2)
        .map(|p| Some(nibble(p[0])? << 4 | nibble(p[1])?))
        .collect()
}

/// Standard base64 with padding (OTLP/JSON's `bytesValue`).
pub fn base64_encode(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let mut acc = [0u8; 3];
        acc[..chunk.len()].copy_from_slice(chunk);
        let v = u32::from_be_bytes([0, acc[0], acc[1], acc[2]]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((v >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Standard or URL-safe base64, with or without padding. Hand-written: ids and OTLP's
/// `bytesValue` are the only base64 lastmile handles, and forty lines beat a dependency.
pub fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let s = s.trim_end_matches('=');
    if s.is_empty() || s.len() % 4 == 1 {
        return None;
    }
    let val = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        } as u32)
    };
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    for chunk in s.as_bytes().chunks(4) {
        let mut acc = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            acc |= val(c)? << (18 - 6 * i);
        }
        let bytes = acc.to_be_bytes();
        out.extend_from_slice(&bytes[1..chunk.len()]);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

    #[test]
    fn every_spelling_of_one_id_normalises_alike() {
        let want = TraceId::parse_any(HEX).unwrap();
        assert_eq!(want.to_hex(), HEX);
        for s in [
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",
            "4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-d-05e3ac9a4f6e3b90",
            "4BF92F35-77B3-4DA6-A3CE-929D0E0E4736",
            "{4bf92f35-77b3-4da6-a3ce-929d0e0e4736}",
            "S/kvNXezTaajzpKdDg5HNg==",
            "S_kvNXezTaajzpKdDg5HNg",
            " 4BF92F3577B34DA6A3CE929D0E0E4736 ",
        ] {
            assert_eq!(TraceId::parse_any(s), Some(want), "{s}");
        }
    }

    #[test]
    fn sixty_four_bit_ids_are_left_padded() {
        let t = TraceId::parse_any("a3ce929d0e0e4736").unwrap();
        assert_eq!(t.to_hex(), "0000000000000000a3ce929d0e0e4736");
        let b3 = TraceId::parse_any("a3ce929d0e0e4736-00f067aa0ba902b7-1").unwrap();
        assert_eq!(b3, t);
        assert_eq!(TraceId::parse_any("o86SnQ4ORzY="), Some(t));
    }

    #[test]
    fn traceparent_and_b3_carry_the_span() {
        let (_, span) =
            parse_trace_context("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
        assert_eq!(span.unwrap().to_hex(), "00f067aa0ba902b7");
        assert_eq!(
            SpanId::parse_any("00f067aa0ba902b7").unwrap().to_hex(),
            "00f067aa0ba902b7"
        );
    }

    #[test]
    fn base64_round_trips() {
        for n in 0..20u8 {
            let bytes: Vec<u8> = (0..n).map(|i| i.wrapping_mul(37)).collect();
            let enc = base64_encode(&bytes);
            assert_eq!(enc.len() % 4, 0);
            let back = base64_decode(&enc).unwrap_or_default();
            assert_eq!(back, bytes, "{enc}");
        }
        assert_eq!(base64_encode(b"foob"), "Zm9vYg==");
    }

    #[test]
    fn junk_and_zero_ids_are_refused() {
        for s in [
            "",
            "xyz",
            "00000000000000000000000000000000",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "4bf92f3577b34da6a3ce929d0e0e473",
            "4bf92f35-77b3-4da6-a3ce-929d0e0e473g",
            "not base64 at all!",
            "QUJD",
        ] {
            assert_eq!(TraceId::parse_any(s), None, "{s:?}");
        }
    }
}
