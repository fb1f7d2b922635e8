//! OTLP/HTTP bodies: media type, gzip with a hard output limit, and decoding into the
//! generated messages.

use std::borrow::Cow;
use std::io::Read;

use super::OtlpError;

/// How an OTLP/HTTP body (and its answer) is encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Encoding {
    Protobuf,
    Json,
}

impl Encoding {
    /// From a `Content-Type` header. Parameters (`; charset=utf-8`) are ignored; a missing
    /// header is refused, as OTLP/HTTP requires one.
    pub fn from_content_type(value: Option<&str>) -> Result<Self, OtlpError> {
        let Some(value) = value else {
            return Err(OtlpError::UnsupportedContentType(String::new()));
        };
        let media = value.split(';').next().unwrap_or("").trim();
        if media.eq_ignore_ascii_case("application/x-protobuf") {
            Ok(Encoding::Protobuf)
        } else if media.eq_ignore_ascii_case("application/json") {
            Ok(Encoding::Json)
        } else {
            Err(OtlpError::UnsupportedContentType(value.to_owned()))
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Encoding::Protobuf => "application/x-protobuf",
            Encoding::Json => "application/json",
        }
    }

    /// The value OpenTelemetry's `OTEL_EXPORTER_OTLP_PROTOCOL` uses for this transport.
    pub fn protocol(self) -> &'static str {
        match self {
            Encoding::Protobuf => "http/protobuf",
            Encoding::Json => "http/json",
        }
    }
}

/// `Content-Encoding` of an OTLP/HTTP body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
}

impl Compression {
    pub fn from_header(value: Option<&str>) -> Result<Self, OtlpError> {
        match value.map(str::trim) {
            None => Ok(Compression::None),
            Some(v) if v.is_empty() || v.eq_ignore_ascii_case("identity") => Ok(Compression::None),
            Some(v) if v.eq_ignore_ascii_case("gzip") || v.eq_ignore_ascii_case("x-gzip") => {
                Ok(Compression::Gzip)
            }
            Some(v) => Err(OtlpError::UnsupportedEncoding(v.to_owned())),
        }
    }
}

/// Decompresses `body`, never producing more than `limit` bytes. A gzip trailer that
/// already declares more than `limit` is refused before any output is allocated (the
/// trailer holds the size modulo 2^32, so the real size is at least that much).
pub fn decompress(c: Compression, body: &[u8], limit: usize) -> Result<Cow<'_, [u8]>, OtlpError> {
    match c {
        Compression::None => {
            if body.len() > limit {
                return Err(OtlpError::TooLarge {
                    size: body.len() as u64,
                    limit,
                });
            }
            Ok(Cow::Borrowed(body))
        }
        Compression::Gzip => {
            if !body.starts_with(&[0x1f, 0x8b]) {
                return Err(OtlpError::Gzip(
                    "not a gzip stream (it does not start with the bytes 1f 8b)".into(),
                ));
            }
            if body.len() >= 18 {
                let trailer: [u8; 4] = body[body.len() - 4..].try_into().unwrap_or([0; 4]);
                let declared = u32::from_le_bytes(trailer) as u64;
                if declared > limit as u64 {
                    return Err(OtlpError::TooLarge {
                        size: declared,
                        limit,
                    });
                }
            }
            let mut out = Vec::new();
            flate2::read::MultiGzDecoder::new(body)
                .take(limit as u64 + 1)
                .read_to_end(&mut out)
                .map_err(|e| OtlpError::Gzip(e.to_string()))?;
            if out.len() > limit {
                return Err(OtlpError::TooLargeUndeclared { limit });
            }
            Ok(Cow::Owned(out))
        }
    }
}

/// Decodes one OTLP export request (`what` names it in errors, e.g.
/// "ExportTraceServiceRequest").
pub fn decode_request<M>(
    encoding: Encoding,
    body: &[u8],
    what: &'static str,
) -> Result<M, OtlpError>
where
    M: prost::Message + Default + serde::de::DeserializeOwned,
{
    match encoding {
        Encoding::Protobuf => M::decode(body).map_err(|e| OtlpError::Protobuf {
            message: what,
            detail: e.to_string(),
        }),
        Encoding::Json => serde_json::from_slice(body).map_err(|e| OtlpError::Json {
            message: what,
            detail: e.to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn content_types() {
        assert_eq!(
            Encoding::from_content_type(Some("application/x-protobuf")),
            Ok(Encoding::Protobuf)
        );
        assert_eq!(
            Encoding::from_content_type(Some("Application/JSON; charset=utf-8")),
            Ok(Encoding::Json)
        );
        for bad in [Some("text/plain"), Some("application/protobuf"), None] {
            let e = Encoding::from_content_type(bad).unwrap_err();
            assert_eq!(e.http_status(), 415, "{bad:?}");
        }
        assert_eq!(
            Compression::from_header(Some("GZIP")),
            Ok(Compression::Gzip)
        );
        assert_eq!(Compression::from_header(None), Ok(Compression::None));
        assert_eq!(
            Compression::from_header(Some("br"))
                .unwrap_err()
                .http_status(),
            415
        );
    }

    #[test]
    fn gzip_round_trip_and_limits() {
        let data = vec![b'x'; 100_000];
        let z = gzip(&data);
        assert_eq!(
            decompress(Compression::Gzip, &z, 100_000).unwrap().as_ref(),
            &data[..]
        );
        // The trailer declares 100 000 bytes: refused without inflating.
        assert_eq!(
            decompress(Compression::Gzip, &z, 99_999),
            Err(OtlpError::TooLarge {
                size: 100_000,
                limit: 99_999
            })
        );
        // A trailer that lies low is caught while inflating.
        let mut lying = z.clone();
        let n = lying.len();
        lying[n - 4..].copy_from_slice(&10u32.to_le_bytes());
        assert_eq!(
            decompress(Compression::Gzip, &lying, 1_000),
            Err(OtlpError::TooLargeUndeclared { limit: 1_000 })
        );
        assert!(matches!(
            decompress(
                Compression::Gzip,
                b"not gzip at all, but long enough",
                1_000
            ),
            Err(OtlpError::Gzip(_))
        ));
        assert_eq!(
            decompress(Compression::None, b"abc", 2)
                .unwrap_err()
                .http_status(),
            413
        );
    }
}
