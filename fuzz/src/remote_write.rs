//! Harnesses for `lastmile_receivers::remote_write`.

use lastmile_model::{
    METRIC_NAME, SeriesInput, WriteBatch, batch::MAX_EXEMPLAR_LABELS_CHARS, hash_labels,
};
use lastmile_receivers::remote_write::{
    ContentEncoding, DecodeError, DecompressError, EncodeExemplar, EncodeMetadata, EncodeSeries,
    decode_write_request, decompress, encode_write_request,
};

use crate::alloc_meter::METER;

/// The body limit `remote_write_body` decompresses with.
pub const BODY_LIMIT: usize = 1 << 20;

/// Bytes of Rust heap `decompress` may hold at once beyond its output limit: the output
/// `Vec` of a stream with no declared size grows by doubling, so up to twice the limit,
/// plus small buffers of the decoders.
const DECOMPRESS_HEAP_SLACK: usize = BODY_LIMIT + (64 << 10);

/// The content encoding the first byte of a `remote_write_body` input picks.
pub fn encoding_for(byte: u8) -> ContentEncoding {
    match byte % 3 {
        0 => ContentEncoding::Snappy,
        1 => ContentEncoding::Zstd,
        _ => ContentEncoding::Identity,
    }
}

/// Byte that selects `enc` in a `remote_write_body` input.
pub fn encoding_byte(enc: ContentEncoding) -> u8 {
    match enc {
        ContentEncoding::Snappy => 0,
        ContentEncoding::Zstd => 1,
        ContentEncoding::Identity => 2,
    }
}

/// `remote_write_decode`: any bytes as an uncompressed `WriteRequest`.
pub fn decode(data: &[u8]) {
    match decode_write_request(data) {
        Ok((batch, _unsupported)) => {
            check_batch(&batch, data);
            check_reencodes(&batch);
        }
        Err(e) => check_error(&e, data.len()),
    }
}

/// `remote_write_body`: first byte picks the encoding, the rest is the HTTP body.
pub fn body(data: &[u8]) {
    let Some((&enc, body)) = data.split_first() else {
        return;
    };
    let enc = encoding_for(enc);
    let (result, peak) = METER.measure(|| decompress(enc, body, BODY_LIMIT));
    if let Some(peak) = peak {
        assert!(
            peak <= BODY_LIMIT + DECOMPRESS_HEAP_SLACK,
            "decompress({enc:?}) of a {}-byte body held {peak} heap bytes at once (limit {BODY_LIMIT})",
            body.len()
        );
    }
    match result {
        Ok(plain) => {
            assert!(
                plain.len() <= BODY_LIMIT,
                "decompress returned {} bytes over the limit {BODY_LIMIT}",
                plain.len()
            );
            if enc == ContentEncoding::Identity {
                assert_eq!(plain, body, "identity must return the body unchanged");
            }
            decode(&plain);
        }
        Err(e) => {
            if let DecompressError::TooLarge { size, limit } = &e {
                assert!(
                    *size > *limit as u64,
                    "TooLarge for {size} bytes within the limit {limit}"
                );
            }
            let _ = e.to_string();
            let _ = e.is_too_large();
            if enc == ContentEncoding::Identity {
                assert!(
                    body.len() > BODY_LIMIT,
                    "identity refused a body within the limit: {e}"
                );
            }
        }
    }
}

/// Errors point into the request.
fn check_error(e: &DecodeError, len: usize) {
    let offset = match e {
        DecodeError::Malformed { offset, .. }
        | DecodeError::WrongWireType { offset, .. }
        | DecodeError::InvalidUtf8 { offset, .. } => Some(*offset),
        DecodeError::Series(_) => None,
    };
    if let Some(offset) = offset {
        assert!(
            offset <= len,
            "error at byte {offset} of a {len}-byte request: {e}"
        );
    }
    let _ = e.to_string();
}

fn within(s: &str, buf: &[u8]) -> bool {
    let (start, end) = (buf.as_ptr() as usize, buf.as_ptr() as usize + buf.len());
    let p = s.as_ptr() as usize;
    s.is_empty() || (p >= start && p + s.len() <= end)
}

/// What a decoded batch promises its consumers (the head indexes `series` ranges
/// without checking them).
pub fn check_batch(batch: &WriteBatch<'_>, buf: &[u8]) {
    let (mut labels_at, mut samples_at, mut exemplars_at, mut exemplar_labels_at) =
        (0usize, 0usize, 0usize, 0usize);
    for (i, s) in batch.series.iter().enumerate() {
        for (what, r, len, at) in [
            ("labels", &s.labels, batch.labels.len(), &mut labels_at),
            ("samples", &s.samples, batch.samples.len(), &mut samples_at),
            (
                "exemplars",
                &s.exemplars,
                batch.exemplars.len(),
                &mut exemplars_at,
            ),
        ] {
            assert!(
                r.start <= r.end && r.end as usize <= len,
                "series {i}: {what} range {r:?} outside the batch's {len}"
            );
            // Series own consecutive, disjoint slices, so the ranges add up to the whole.
            assert_eq!(
                r.start as usize, *at,
                "series {i}: {what} range {r:?} does not follow the previous series"
            );
            *at = r.end as usize;
        }
        let labels = batch.series_labels(s);
        for l in labels {
            assert!(!l.name.is_empty(), "series {i}: empty label name kept");
            assert!(
                !l.value.is_empty(),
                "series {i}: label {:?} kept with an empty value",
                l.name
            );
            assert!(
                within(l.name, buf) && within(l.value, buf),
                "series {i}: label not borrowed from the request"
            );
        }
        for w in labels.windows(2) {
            assert!(
                w[0].name < w[1].name,
                "series {i}: labels {:?} and {:?} not sorted by name or duplicated",
                w[0].name,
                w[1].name
            );
        }
        assert!(
            labels.iter().any(|l| l.name == METRIC_NAME),
            "series {i} has no {METRIC_NAME}"
        );
        assert_eq!(
            s.hash,
            hash_labels(labels.iter().copied()),
            "series {i}: stale hash"
        );
        for e in batch.series_exemplars(s) {
            let r = &e.labels;
            assert!(
                r.start <= r.end && r.end as usize <= batch.exemplar_labels.len(),
                "series {i}: exemplar labels {r:?} outside the batch's {}",
                batch.exemplar_labels.len()
            );
            assert_eq!(
                r.start as usize, exemplar_labels_at,
                "series {i}: exemplar labels {r:?} not consecutive"
            );
            exemplar_labels_at = r.end as usize;
            let chars: usize = batch
                .exemplar_labels(e)
                .iter()
                .map(|l| l.name.chars().count() + l.value.chars().count())
                .sum();
            assert!(
                chars <= MAX_EXEMPLAR_LABELS_CHARS,
                "series {i}: exemplar of {chars} label characters kept"
            );
        }
    }
    assert_eq!(labels_at, batch.labels.len(), "labels outside every series");
    assert_eq!(
        samples_at,
        batch.samples.len(),
        "series' sample counts do not add up to the batch's"
    );
    assert_eq!(batch.num_samples(), batch.samples.len());
    assert_eq!(
        exemplars_at,
        batch.exemplars.len(),
        "series' exemplar counts do not add up to the batch's"
    );
    assert_eq!(
        exemplar_labels_at,
        batch.exemplar_labels.len(),
        "exemplar labels outside every exemplar"
    );
    for m in &batch.metadata {
        assert!(within(m.metric_family_name, buf) && within(m.help, buf) && within(m.unit, buf));
    }
}

/// Encoding a decoded batch and decoding that again gives the same batch: nothing the
/// decoder accepted is lost or changed by the round trip (f64s compared by bits).
fn check_reencodes(batch: &WriteBatch<'_>) {
    let pairs = |ls: &[lastmile_model::LabelRef<'_>]| {
        ls.iter()
            .map(|l| (l.name.to_owned(), l.value.to_owned()))
            .collect::<Vec<_>>()
    };
    let series: Vec<EncodeSeries> = batch
        .series
        .iter()
        .map(|s| EncodeSeries {
            labels: pairs(batch.series_labels(s)),
            samples: batch.series_samples(s).iter().map(|x| (x.t, x.v)).collect(),
            exemplars: batch
                .series_exemplars(s)
                .iter()
                .map(|e| EncodeExemplar {
                    labels: pairs(batch.exemplar_labels(e)),
                    t: e.t,
                    v: e.v,
                })
                .collect(),
        })
        .collect();
    let metadata: Vec<EncodeMetadata> = batch
        .metadata
        .iter()
        .map(|m| EncodeMetadata {
            metric_family_name: m.metric_family_name.to_owned(),
            metric_type: m.metric_type,
            help: m.help.to_owned(),
            unit: m.unit.to_owned(),
        })
        .collect();
    let buf = encode_write_request(&series, &metadata);
    let (again, unsupported) = match decode_write_request(&buf) {
        Ok(x) => x,
        Err(e) => panic!("re-encoding an accepted request gives one the decoder refuses: {e}"),
    };
    assert_eq!(unsupported.native_histograms, 0);
    assert_eq!(
        again.invalid_exemplars, 0,
        "an exemplar kept once is dropped on the second pass"
    );
    assert_eq!(again.series.len(), batch.series.len());
    for (a, b) in batch.series.iter().zip(&again.series) {
        assert_eq!(batch.series_labels(a), again.series_labels(b));
        assert_eq!(a.hash, b.hash);
        assert_eq!(samples_of(batch, a), samples_of(&again, b));
        assert_eq!(exemplars_of(batch, a), exemplars_of(&again, b));
    }
    assert_eq!(batch.metadata, again.metadata);
}

fn samples_of(w: &WriteBatch<'_>, s: &SeriesInput) -> Vec<(i64, u64)> {
    w.series_samples(s)
        .iter()
        .map(|x| (x.t, x.v.to_bits()))
        .collect()
}

/// An exemplar as owned label pairs, time and value bits.
type OwnedExemplar = (Vec<(String, String)>, i64, u64);

fn exemplars_of(w: &WriteBatch<'_>, s: &SeriesInput) -> Vec<OwnedExemplar> {
    w.series_exemplars(s)
        .iter()
        .map(|e| {
            let labels = w
                .exemplar_labels(e)
                .iter()
                .map(|l| (l.name.to_owned(), l.value.to_owned()))
                .collect();
            (labels, e.t, e.v.to_bits())
        })
        .collect()
}
