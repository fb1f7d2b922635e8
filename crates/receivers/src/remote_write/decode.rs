//! Zero-copy decoding of a remote-write `WriteRequest` into a [`WriteBatch`].
//!
//! Field numbers follow `prometheus/prompb` (remote.proto, types.proto):
//! WriteRequest{1: timeseries, 3: metadata}; TimeSeries{1: labels, 2: samples,
//! 3: exemplars, 4: histograms}; Label{1: name, 2: value}; Sample{1: value, 2: timestamp};
//! Exemplar{1: labels, 2: value, 3: timestamp};
//! MetricMetadata{1: type, 2: metric_family_name, 4: help, 5: unit}.

use lastmile_model::{BatchError, LabelRef, MetadataRef, MetricType, WriteBatch};

use super::protowire::{Reader, WIRE_FIXED64, WIRE_LEN, WIRE_VARINT};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("malformed protobuf at byte {offset}: {what}")]
    Malformed { offset: usize, what: &'static str },
    #[error("malformed protobuf at byte {offset}: {what} has wire type {got}, expected {want}")]
    WrongWireType {
        offset: usize,
        what: &'static str,
        got: u8,
        want: u8,
    },
    #[error("invalid UTF-8 in {what} at byte {offset}")]
    InvalidUtf8 { offset: usize, what: &'static str },
    #[error("invalid series: {0}")]
    Series(#[from] BatchError),
}

/// What the decoder saw but does not store; reported back to the client.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Unsupported {
    /// Native histogram samples (TimeSeries field 4): not stored yet.
    pub native_histograms: u32,
}

/// Decodes a whole request. On any error nothing of the request may be stored, so the
/// caller drops the partial batch.
pub fn decode_write_request<'a>(
    buf: &'a [u8],
) -> Result<(WriteBatch<'a>, Unsupported), DecodeError> {
    // A label or a sample costs at least 4 bytes on the wire; size the flat vectors once.
    let mut batch = WriteBatch::with_capacity(buf.len() / 128, buf.len() / 24);
    let mut unsupported = Unsupported::default();
    let mut r = Reader::new(buf);
    let mut exemplar_scratch: Vec<LabelRef<'a>> = Vec::new();
    while !r.is_empty() {
        let (field, wire) = r.key()?;
        match field {
            1 => {
                r.expect_wire(wire, WIRE_LEN, "WriteRequest.timeseries")?;
                let ts = r.sub()?;
                decode_series(ts, &mut batch, &mut unsupported, &mut exemplar_scratch)?;
            }
            3 => {
                r.expect_wire(wire, WIRE_LEN, "WriteRequest.metadata")?;
                let md = r.sub()?;
                batch.metadata.push(decode_metadata(md)?);
            }
            _ => r.skip(wire)?,
        }
    }
    Ok((batch, unsupported))
}

fn decode_series<'a>(
    mut r: Reader<'a>,
    batch: &mut WriteBatch<'a>,
    unsupported: &mut Unsupported,
    exemplar_labels: &mut Vec<LabelRef<'a>>,
) -> Result<(), DecodeError> {
    batch.begin_series();
    while !r.is_empty() {
        let (field, wire) = r.key()?;
        match field {
            1 => {
                r.expect_wire(wire, WIRE_LEN, "TimeSeries.labels")?;
                let l = decode_label(r.sub()?)?;
                batch.push_label(l.name, l.value);
            }
            2 => {
                r.expect_wire(wire, WIRE_LEN, "TimeSeries.samples")?;
                let (t, v) = decode_sample(r.sub()?)?;
                batch.push_sample(t, v);
            }
            3 => {
                r.expect_wire(wire, WIRE_LEN, "TimeSeries.exemplars")?;
                let mut e = r.sub()?;
                exemplar_labels.clear();
                let (mut t, mut v) = (0i64, 0f64);
                while !e.is_empty() {
                    let (f, w) = e.key()?;
                    match f {
                        1 => {
                            e.expect_wire(w, WIRE_LEN, "Exemplar.labels")?;
                            exemplar_labels.push(decode_label(e.sub()?)?);
                        }
                        2 => {
                            e.expect_wire(w, WIRE_FIXED64, "Exemplar.value")?;
                            v = f64::from_bits(e.fixed64()?);
                        }
                        3 => {
                            e.expect_wire(w, WIRE_VARINT, "Exemplar.timestamp")?;
                            t = e.varint()? as i64;
                        }
                        _ => e.skip(w)?,
                    }
                }
                batch.push_exemplar(exemplar_labels, t, v);
            }
            4 => {
                r.expect_wire(wire, WIRE_LEN, "TimeSeries.histograms")?;
                r.sub()?;
                unsupported.native_histograms += 1;
            }
            _ => r.skip(wire)?,
        }
    }
    batch.finish_series()?;
    Ok(())
}

#[inline]
fn decode_label<'a>(mut r: Reader<'a>) -> Result<LabelRef<'a>, DecodeError> {
    let (mut name, mut value) = ("", "");
    while !r.is_empty() {
        let (field, wire) = r.key()?;
        match field {
            1 => {
                r.expect_wire(wire, WIRE_LEN, "Label.name")?;
                name = r.str("label name")?;
            }
            2 => {
                r.expect_wire(wire, WIRE_LEN, "Label.value")?;
                value = r.str("label value")?;
            }
            _ => r.skip(wire)?,
        }
    }
    Ok(LabelRef { name, value })
}

#[inline]
fn decode_sample(mut r: Reader<'_>) -> Result<(i64, f64), DecodeError> {
    let (mut t, mut v) = (0i64, 0f64);
    while !r.is_empty() {
        let (field, wire) = r.key()?;
        match field {
            1 => {
                r.expect_wire(wire, WIRE_FIXED64, "Sample.value")?;
                v = f64::from_bits(r.fixed64()?);
            }
            2 => {
                r.expect_wire(wire, WIRE_VARINT, "Sample.timestamp")?;
                t = r.varint()? as i64;
            }
            _ => r.skip(wire)?,
        }
    }
    Ok((t, v))
}

fn decode_metadata<'a>(mut r: Reader<'a>) -> Result<MetadataRef<'a>, DecodeError> {
    let mut md = MetadataRef {
        metric_family_name: "",
        metric_type: MetricType::Unknown,
        help: "",
        unit: "",
    };
    while !r.is_empty() {
        let (field, wire) = r.key()?;
        match field {
            1 => {
                r.expect_wire(wire, WIRE_VARINT, "MetricMetadata.type")?;
                md.metric_type = MetricType::from_wire(r.varint()?);
            }
            2 => {
                r.expect_wire(wire, WIRE_LEN, "MetricMetadata.metric_family_name")?;
                md.metric_family_name = r.str("metric family name")?;
            }
            4 => {
                r.expect_wire(wire, WIRE_LEN, "MetricMetadata.help")?;
                md.help = r.str("metadata help")?;
            }
            5 => {
                r.expect_wire(wire, WIRE_LEN, "MetricMetadata.unit")?;
                md.unit = r.str("metadata unit")?;
            }
            _ => r.skip(wire)?,
        }
    }
    Ok(md)
}
