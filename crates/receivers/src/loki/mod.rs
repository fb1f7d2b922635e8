//! Loki push API (`POST /loki/api/v1/push`): JSON (optionally gzip-compressed) and
//! snappy-compressed protobuf `logproto.PushRequest`, the two bodies Loki accepts, into a
//! [`LogBatch`].
//!
//! A request decodes whole or not at all: any error refuses it, with a message that says
//! where (stream and entry index) and what is wrong.

mod encode;
mod json;
mod labels;
mod proto;

use std::io::Read;

use lastmile_model::{LogBatch, LogEntry, LogStream};

use crate::remote_write::{DecodeError, DecompressError};

pub use encode::{encode_push_json, encode_push_proto};
pub use labels::{format_labels, parse_labels};

/// The body's format, from `Content-Type` (Loki: `application/json`, anything else —
/// including no header — is protobuf).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PushFormat {
    Json,
    Protobuf,
}

impl PushFormat {
    pub fn from_content_type(value: Option<&str>) -> Result<Self, LokiPushError> {
        let Some(v) = value else {
            return Ok(PushFormat::Protobuf);
        };
        let media = v
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        match media.as_str() {
            "application/json" => Ok(PushFormat::Json),
            "" | "application/x-protobuf" | "application/protobuf" | "application/octet-stream" => {
                Ok(PushFormat::Protobuf)
            }
            _ => Err(LokiPushError::UnsupportedContentType(v.to_string())),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LokiPushError {
    #[error(
        "unsupported Content-Type {0:?}: Loki push takes application/json or application/x-protobuf (snappy)"
    )]
    UnsupportedContentType(String),
    #[error("unsupported Content-Encoding {0:?}: use gzip, or none")]
    UnsupportedContentEncoding(String),
    #[error("{0}")]
    Decompress(#[from] DecompressError),
    #[error("invalid gzip body: {0}")]
    Gzip(String),
    #[error("invalid JSON push request: {0}")]
    Json(String),
    #[error("invalid protobuf push request: {0}")]
    Proto(#[from] DecodeError),
    #[error("stream {stream}: {msg}")]
    Stream { stream: usize, msg: String },
    #[error("stream {stream}, entry {entry}: {msg}")]
    Entry {
        stream: usize,
        entry: usize,
        msg: String,
    },
}

impl LokiPushError {
    /// Whether the client sent too much (413) rather than something invalid.
    pub fn is_too_large(&self) -> bool {
        matches!(self, LokiPushError::Decompress(d) if d.is_too_large())
    }

    /// Whether the refusal is about the media type or encoding (415).
    pub fn is_unsupported_media(&self) -> bool {
        matches!(
            self,
            LokiPushError::UnsupportedContentType(_) | LokiPushError::UnsupportedContentEncoding(_)
        )
    }
}

/// Removes a `Content-Encoding` (none or gzip), never producing more than `limit` bytes.
pub fn decode_content_encoding(
    encoding: Option<&str>,
    body: &[u8],
    limit: usize,
) -> Result<Vec<u8>, LokiPushError> {
    let enc = encoding.map(|e| e.trim().to_ascii_lowercase());
    match enc.as_deref() {
        None | Some("") | Some("identity") => {
            if body.len() > limit {
                return Err(DecompressError::TooLarge {
                    size: body.len() as u64,
                    limit,
                }
                .into());
            }
            Ok(body.to_vec())
        }
        Some("gzip") | Some("x-gzip") => {
            let mut out = Vec::new();
            flate2::read::MultiGzDecoder::new(body)
                .take(limit as u64 + 1)
                .read_to_end(&mut out)
                .map_err(|e| LokiPushError::Gzip(e.to_string()))?;
            if out.len() > limit {
                return Err(DecompressError::TooLargeUndeclared { limit }.into());
            }
            Ok(out)
        }
        Some(other) => Err(LokiPushError::UnsupportedContentEncoding(other.to_string())),
    }
}

/// Decodes a push body (after `Content-Encoding` is removed). Protobuf bodies are snappy
/// block-compressed, as Loki's clients send them; `limit` caps the decompressed size.
pub fn decode_push(
    format: PushFormat,
    body: &[u8],
    limit: usize,
) -> Result<LogBatch, LokiPushError> {
    match format {
        PushFormat::Json => json::decode(body),
        PushFormat::Protobuf => {
            let raw = crate::remote_write::decompress(
                crate::remote_write::ContentEncoding::Snappy,
                body,
                limit,
            )?;
            proto::decode(&raw)
        }
    }
}

/// Checks one stream's entries and builds it; shared by both formats.
fn build_stream(
    index: usize,
    labels: Vec<(String, String)>,
    entries: Vec<LogEntry>,
) -> Result<LogStream, LokiPushError> {
    let stream_err = |msg: String| LokiPushError::Stream { stream: index, msg };
    let mut names: Vec<&str> = Vec::with_capacity(labels.len());
    for (name, _) in &labels {
        if !labels::valid_label_name(name) {
            return Err(stream_err(format!("invalid label name {name:?}")));
        }
        if names.contains(&name.as_str()) {
            return Err(stream_err(format!("duplicate label name {name:?}")));
        }
        names.push(name);
    }
    let labels = lastmile_model::Labels::from_pairs(labels);
    if labels.is_empty() {
        return Err(stream_err(
            "a stream needs at least one label with a non-empty value".into(),
        ));
    }
    Ok(LogStream { labels, entries })
}

#[cfg(test)]
mod tests;
