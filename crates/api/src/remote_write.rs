//! `POST /api/v1/write`: Prometheus remote write 1.0.
//!
//! Checks run in order, each before any work the next needs: size (declared, then as
//! read), content type, CRC32C of the body as sent, decompression against the limit,
//! protobuf decoding and series validation. Only a request that passes them all reaches
//! the store; it is acknowledged after its WAL write is durable.

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use lastmile_receivers::remote_write::{
    ContentEncoding, decode_write_request, decompress, verify_crc32c,
};
use serde_json::json;

use crate::{ApiError, AppState};

/// Names the rule version that handled a request (`7`, or `7;canary=8`).
pub const RULES_VERSION_HEADER: &str = "X-Lastmile-Rules-Version";

/// Why a request was refused, as counted in `lastmile_remote_write_rejected_requests_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RejectReason {
    TooLarge,
    UnsupportedMediaType,
    CrcMismatch,
    BadCompression,
    BadProtobuf,
    InvalidSeries,
    Unavailable,
}

impl RejectReason {
    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::TooLarge => "too_large",
            RejectReason::UnsupportedMediaType => "unsupported_media_type",
            RejectReason::CrcMismatch => "crc_mismatch",
            RejectReason::BadCompression => "bad_compression",
            RejectReason::BadProtobuf => "bad_protobuf",
            RejectReason::InvalidSeries => "invalid_series",
            RejectReason::Unavailable => "unavailable",
        }
    }
}

pub async fn handle(State(st): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    match write(&st, &headers, body).await {
        Ok(resp) => resp,
        Err((reason, err)) => {
            st.metrics.remote_write_rejected(reason);
            tracing::debug!(reason = reason.as_str(), error = ?err, "remote write refused");
            err.into_response()
        }
    }
}

type Refusal = (RejectReason, ApiError);

async fn write(st: &AppState, headers: &HeaderMap, body: Body) -> Result<Response, Refusal> {
    let limit = st.limits.max_request_bytes;
    let too_large = |what: String| (RejectReason::TooLarge, ApiError::TooLarge(what));
    if let Some(len) = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        && len > limit as u64
    {
        return Err(too_large(format!(
            "request body of {len} bytes exceeds the limit of {limit} bytes"
        )));
    }
    check_content_type(headers)?;
    let encoding = ContentEncoding::from_header(
        headers
            .get(header::CONTENT_ENCODING)
            .and_then(|v| v.to_str().ok()),
    )
    .map_err(|e| {
        (
            RejectReason::UnsupportedMediaType,
            ApiError::UnsupportedMediaType(e.to_string()),
        )
    })?;
    let body = http_body_util::Limited::new(body, limit)
        .collect()
        .await
        .map_err(|e| {
            if e.is::<http_body_util::LengthLimitError>() {
                too_large(format!("request body exceeds the limit of {limit} bytes"))
            } else {
                (
                    RejectReason::BadProtobuf,
                    ApiError::BadData(format!("could not read request body: {e}")),
                )
            }
        })?
        .to_bytes();
    if let Some(crc) = headers.get("x-content-crc32c") {
        let crc = crc.to_str().unwrap_or("");
        verify_crc32c(crc, &body)
            .map_err(|e| (RejectReason::CrcMismatch, ApiError::BadData(e.to_string())))?;
    }
    let raw = decompress(encoding, &body, st.limits.max_decompressed_bytes).map_err(|e| {
        if e.is_too_large() {
            too_large(e.to_string())
        } else {
            (
                RejectReason::BadCompression,
                ApiError::BadData(e.to_string()),
            )
        }
    })?;
    let (batch, unsupported) = decode_write_request(&raw).map_err(|e| {
        let reason = match e {
            lastmile_receivers::remote_write::DecodeError::Series(_) => RejectReason::InvalidSeries,
            _ => RejectReason::BadProtobuf,
        };
        (reason, ApiError::BadData(e.to_string()))
    })?;
    st.metrics
        .remote_write_received(body.len() as u64, batch.num_samples() as u64);
    // One version of the rules for the whole request, even if a reload lands meanwhile.
    let rules = st.rules.current();
    let arena = lastmile_rules::StringArena::new();
    let (batch, ruled) = rules.apply_metrics(batch, &arena);
    st.metrics.rules_applied(&ruled);
    let outcome = st
        .db
        .write(&batch)
        .await
        .map_err(|e| (RejectReason::Unavailable, ApiError::from(e)))?;
    let written = outcome.samples.to_string();
    let version = rules.version_label();
    let rejected = outcome.rejected()
        + outcome.exemplars_rejected
        + unsupported.native_histograms as u64
        + ruled.samples_refused();
    if rejected == 0 {
        return Ok((
            StatusCode::NO_CONTENT,
            [
                ("X-Prometheus-Remote-Write-Samples-Written", written),
                (RULES_VERSION_HEADER, version),
            ],
        )
            .into_response());
    }
    // Part of the request could not be stored: the rest is, and the answer says what.
    let body = json!({
        "status": "success",
        "data": {
            "samplesWritten": outcome.samples,
            "rejected": {
                "outOfOrder": outcome.out_of_order,
                "tooOld": outcome.too_old,
                "duplicateTimestamp": outcome.duplicate_timestamp,
                "tooFarInFuture": outcome.too_far_in_future,
                "exemplars": outcome.exemplars_rejected,
                "nativeHistograms": unsupported.native_histograms,
                "seriesBudget": ruled.samples_overflow,
                "namingContract": ruled.samples_rejected_naming,
            }
        },
        "warnings": rejection_warnings(&outcome, unsupported.native_histograms)
            .into_iter()
            .chain(ruled.warnings())
            .collect::<Vec<_>>(),
    });
    Ok((
        StatusCode::OK,
        [
            ("X-Prometheus-Remote-Write-Samples-Written", written),
            (RULES_VERSION_HEADER, version),
        ],
        axum::Json(body),
    )
        .into_response())
}

fn rejection_warnings(o: &lastmile_store::AppendOutcome, histograms: u32) -> Vec<String> {
    let mut w = Vec::new();
    if o.out_of_order > 0 {
        w.push(format!(
            "{} samples were older than the newest sample of their series and were not stored",
            o.out_of_order
        ));
    }
    if o.too_old > 0 {
        w.push(format!("{} samples were too old for the head (persisted already, or over an hour behind its newest sample) and were not stored", o.too_old));
    }
    if o.duplicate_timestamp > 0 {
        w.push(format!(
            "{} samples repeated a timestamp with a different value and were not stored",
            o.duplicate_timestamp
        ));
    }
    if o.too_far_in_future > 0 {
        w.push(format!(
            "{} samples were more than 10 minutes ahead of the server's clock and were not stored",
            o.too_far_in_future
        ));
    }
    if o.exemplars_rejected > 0 {
        w.push(format!(
            "{} exemplars were out of order or over the 128-character label limit",
            o.exemplars_rejected
        ));
    }
    if histograms > 0 {
        w.push(format!(
            "{histograms} native histogram series are not supported yet and were not stored"
        ));
    }
    w
}

fn check_content_type(headers: &HeaderMap) -> Result<(), Refusal> {
    let Some(ct) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return Ok(());
    };
    let lower = ct.to_ascii_lowercase();
    let media = lower.split(';').next().unwrap_or("").trim();
    let unsupported = |msg: String| {
        (
            RejectReason::UnsupportedMediaType,
            ApiError::UnsupportedMediaType(msg),
        )
    };
    if media != "application/x-protobuf" {
        return Err(unsupported(format!(
            "unsupported Content-Type {ct:?}: remote write sends application/x-protobuf"
        )));
    }
    if lower.contains("proto=io.prometheus.write.v2.request") {
        return Err(unsupported(
            "remote write 2.0 is not supported yet: configure the sender with protobuf_message: prometheus.WriteRequest".into(),
        ));
    }
    Ok(())
}
