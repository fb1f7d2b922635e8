//! Body decompression with a hard output limit, checked before any output is allocated.

use std::io::Read;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ContentEncoding {
    /// Snappy block format ("raw", not framed), what Prometheus sends.
    Snappy,
    Zstd,
    Identity,
}

impl ContentEncoding {
    /// Remote write 1.0 says the body is snappy, so a missing header means snappy.
    pub fn from_header(value: Option<&str>) -> Result<Self, DecompressError> {
        match value.map(|v| v.trim().to_ascii_lowercase()) {
            None => Ok(Self::Snappy),
            Some(v) if v.is_empty() || v == "snappy" => Ok(Self::Snappy),
            Some(v) if v == "zstd" => Ok(Self::Zstd),
            Some(v) if v == "identity" => Ok(Self::Identity),
            Some(v) => Err(DecompressError::Unsupported(v)),
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecompressError {
    #[error("unsupported Content-Encoding {0:?}: use snappy (block format) or zstd")]
    Unsupported(String),
    #[error("decompressed body of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge { size: u64, limit: usize },
    #[error("decompressed body exceeds the limit of {limit} bytes")]
    TooLargeUndeclared { limit: usize },
    #[error("invalid snappy block: {0}")]
    Snappy(String),
    #[error("invalid zstd frame: {0}")]
    Zstd(String),
}

impl DecompressError {
    /// Whether this is the client sending too much (413) rather than garbage (400/415).
    pub fn is_too_large(&self) -> bool {
        matches!(
            self,
            Self::TooLarge { .. } | Self::TooLargeUndeclared { .. }
        )
    }
}

/// Largest zstd window accepted: 16 MiB.
const ZSTD_MAX_WINDOW_LOG: u32 = 24;

/// Decompresses `body`, refusing before allocation when the size declared in the stream
/// header is over `limit`, and stopping at `limit` when no size is declared.
pub fn decompress(
    encoding: ContentEncoding,
    body: &[u8],
    limit: usize,
) -> Result<Vec<u8>, DecompressError> {
    match encoding {
        ContentEncoding::Identity => {
            if body.len() > limit {
                return Err(DecompressError::TooLarge {
                    size: body.len() as u64,
                    limit,
                });
            }
            Ok(body.to_vec())
        }
        ContentEncoding::Snappy => {
            let size = snap::raw::decompress_len(body)
                .map_err(|e| DecompressError::Snappy(e.to_string()))?;
            if size > limit {
                return Err(DecompressError::TooLarge {
                    size: size as u64,
                    limit,
                });
            }
            let mut out = vec![0u8; size];
            let n = snap::raw::Decoder::new()
                .decompress(body, &mut out)
                .map_err(|e| DecompressError::Snappy(e.to_string()))?;
            out.truncate(n);
            Ok(out)
        }
        ContentEncoding::Zstd => {
            match zstd::zstd_safe::get_frame_content_size(body) {
                Ok(Some(size)) if size > limit as u64 => {
                    return Err(DecompressError::TooLarge { size, limit });
                }
                Ok(_) => {}
                Err(_) => return Err(DecompressError::Zstd("not a zstd frame".into())),
            }
            let mut decoder = zstd::stream::read::Decoder::with_buffer(body)
                .map_err(|e| DecompressError::Zstd(e.to_string()))?;
            // The frame header chooses the decoder's window; without a cap an 86-byte body
            // can make libzstd reserve 128 MiB. 2^24 covers every standard level.
            decoder
                .window_log_max(ZSTD_MAX_WINDOW_LOG)
                .map_err(|e| DecompressError::Zstd(e.to_string()))?;
            let mut out = Vec::new();
            decoder
                .take(limit as u64 + 1)
                .read_to_end(&mut out)
                .map_err(|e| DecompressError::Zstd(e.to_string()))?;
            if out.len() > limit {
                return Err(DecompressError::TooLargeUndeclared { limit });
            }
            Ok(out)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snappy_round_trip_and_bomb() {
        let data = vec![7u8; 10_000];
        let c = snap::raw::Encoder::new().compress_vec(&data).unwrap();
        assert_eq!(
            decompress(ContentEncoding::Snappy, &c, 10_000).unwrap(),
            data
        );
        assert!(
            decompress(ContentEncoding::Snappy, &c, 9_999)
                .unwrap_err()
                .is_too_large()
        );
        // A header that declares 4 GiB in a 5-byte body is refused without allocating.
        let bomb = [0xff, 0xff, 0xff, 0xff, 0x0f];
        assert!(
            decompress(ContentEncoding::Snappy, &bomb, 1 << 20)
                .unwrap_err()
                .is_too_large()
        );
        assert!(matches!(
            decompress(ContentEncoding::Snappy, b"\x05garbage", 100),
            Err(DecompressError::Snappy(_))
        ));
    }

    #[test]
    fn zstd_limits_declared_and_undeclared_sizes() {
        let data = vec![1u8; 50_000];
        let c = zstd::bulk::compress(&data, 3).unwrap();
        assert_eq!(decompress(ContentEncoding::Zstd, &c, 50_000).unwrap(), data);
        assert!(
            decompress(ContentEncoding::Zstd, &c, 1_000)
                .unwrap_err()
                .is_too_large()
        );
        // Streamed frames carry no size: the limit still holds.
        let mut streamed = Vec::new();
        {
            let mut enc = zstd::stream::write::Encoder::new(&mut streamed, 3).unwrap();
            std::io::Write::write_all(&mut enc, &data).unwrap();
            enc.finish().unwrap();
        }
        assert_eq!(
            decompress(ContentEncoding::Zstd, &streamed, 1_000),
            Err(DecompressError::TooLargeUndeclared { limit: 1_000 })
        );
        assert!(matches!(
            decompress(ContentEncoding::Zstd, b"nope", 100),
            Err(DecompressError::Zstd(_))
        ));
    }

    #[test]
    fn content_encoding_header() {
        assert_eq!(
            ContentEncoding::from_header(None),
            Ok(ContentEncoding::Snappy)
        );
        assert_eq!(
            ContentEncoding::from_header(Some("ZSTD")),
            Ok(ContentEncoding::Zstd)
        );
        assert!(ContentEncoding::from_header(Some("gzip")).is_err());
    }
}
