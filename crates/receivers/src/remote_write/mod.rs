//! Prometheus remote write 1.0: `POST /api/v1/write` with a snappy- or zstd-compressed
//! protobuf `WriteRequest`.

mod compression;
mod decode;
mod encode;
pub(crate) mod protowire;

pub use compression::{ContentEncoding, DecompressError, decompress};
pub use decode::{DecodeError, decode_write_request};
pub use encode::{EncodeExemplar, EncodeMetadata, EncodeSeries, encode_write_request};

/// Checks the optional `X-Content-CRC32C` header: CRC32C (Castagnoli) of the body as sent.
pub fn verify_crc32c(header: &str, body: &[u8]) -> Result<(), CrcError> {
    let header = header.trim();
    if header.len() != 8 || !header.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(CrcError::Malformed(header.to_owned()));
    }
    let expected =
        u32::from_str_radix(header, 16).map_err(|_| CrcError::Malformed(header.to_owned()))?;
    let actual = crc32c::crc32c(body);
    if expected != actual {
        return Err(CrcError::Mismatch { expected, actual });
    }
    Ok(())
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CrcError {
    #[error("X-Content-CRC32C must be 8 hex digits, got {0:?}")]
    Malformed(String),
    #[error("X-Content-CRC32C mismatch: header says {expected:08x}, body has {actual:08x}")]
    Mismatch { expected: u32, actual: u32 },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc_accepts_matching_and_rejects_others() {
        let body = b"hello";
        let good = format!("{:08x}", crc32c::crc32c(body));
        assert_eq!(verify_crc32c(&good, body), Ok(()));
        assert_eq!(verify_crc32c(&good.to_uppercase(), body), Ok(()));
        assert!(matches!(
            verify_crc32c("deadbeef", body),
            Err(CrcError::Mismatch { .. })
        ));
        assert!(matches!(
            verify_crc32c("xyz", body),
            Err(CrcError::Malformed(_))
        ));
    }
}
