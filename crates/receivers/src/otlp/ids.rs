//! Trace and span ids as OTLP sends them: bytes that must be empty, 16 (trace) or 8 (span)
//! long. `opentelemetry-proto` does not check lengths (OTLP/JSON "abcd" decodes to 2 bytes).

use lastmile_model::{SpanId, TraceId};

use super::OtlpError;

/// An id field as sent: absent (empty), all zeros (invalid per W3C), or a valid id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Id<T> {
    Empty,
    Zero,
    Valid(T),
}

impl<T> Id<T> {
    pub fn valid(self) -> Option<T> {
        match self {
            Id::Valid(t) => Some(t),
            _ => None,
        }
    }
}

/// Checks a trace id's length; `path` names the message holding it, for the error.
pub fn trace_id(
    bytes: &[u8],
    field: &'static str,
    path: impl FnOnce() -> String,
) -> Result<Id<TraceId>, OtlpError> {
    match bytes.len() {
        0 => Ok(Id::Empty),
        16 => Ok(TraceId::from_bytes(bytes).map_or(Id::Zero, Id::Valid)),
        len => Err(OtlpError::IdLength {
            path: path(),
            field,
            what: "trace",
            len,
            want: 16,
        }),
    }
}

pub fn span_id(
    bytes: &[u8],
    field: &'static str,
    path: impl FnOnce() -> String,
) -> Result<Id<SpanId>, OtlpError> {
    match bytes.len() {
        0 => Ok(Id::Empty),
        8 => Ok(SpanId::from_bytes(bytes).map_or(Id::Zero, Id::Valid)),
        len => Err(OtlpError::IdLength {
            path: path(),
            field,
            what: "span",
            len,
            want: 8,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_are_checked() {
        let p = || "resourceSpans[0].scopeSpans[0].spans[1]".to_string();
        assert_eq!(trace_id(&[], "traceId", p), Ok(Id::Empty));
        assert_eq!(trace_id(&[0; 16], "traceId", p), Ok(Id::Zero));
        assert!(matches!(trace_id(&[1; 16], "traceId", p), Ok(Id::Valid(_))));
        let e = trace_id(&[0xab, 0xcd], "traceId", p).unwrap_err();
        assert_eq!(
            e.to_string(),
            "resourceSpans[0].scopeSpans[0].spans[1].traceId is 2 bytes long; an OTLP trace id is 16 bytes (32 hex digits in OTLP/JSON)"
        );
        // A 64-bit id is not an OTLP trace id (OTLP always sends 16 bytes).
        assert!(trace_id(&[1; 8], "traceId", p).is_err());
        assert_eq!(span_id(&[0; 8], "spanId", p), Ok(Id::Zero));
        assert!(span_id(&[1; 16], "spanId", p).is_err());
    }
}
