//! Encoding of remote-write requests, for clients: the benchmark generator, tests and
//! the agent's forwarder.

use lastmile_model::MetricType;

use super::protowire::{WIRE_VARINT, Writer};

/// A series to encode: labels (sent in the given order), samples and exemplars.
#[derive(Clone, Debug, Default)]
pub struct EncodeSeries {
    pub labels: Vec<(String, String)>,
    pub samples: Vec<(i64, f64)>,
    pub exemplars: Vec<EncodeExemplar>,
}

#[derive(Clone, Debug, Default)]
pub struct EncodeExemplar {
    pub labels: Vec<(String, String)>,
    pub t: i64,
    pub v: f64,
}

#[derive(Clone, Debug)]
pub struct EncodeMetadata {
    pub metric_family_name: String,
    pub metric_type: MetricType,
    pub help: String,
    pub unit: String,
}

/// Encodes an uncompressed `WriteRequest` protobuf.
pub fn encode_write_request(series: &[EncodeSeries], metadata: &[EncodeMetadata]) -> Vec<u8> {
    let mut out = Vec::with_capacity(series.len() * 96);
    let mut w = Writer(&mut out);
    let (mut ts_buf, mut item_buf, mut label_buf) = (Vec::new(), Vec::new(), Vec::new());
    for s in series {
        ts_buf.clear();
        let mut ts = Writer(&mut ts_buf);
        for (n, v) in &s.labels {
            ts.message(1, &mut item_buf, |l| {
                l.bytes(1, n.as_bytes());
                l.bytes(2, v.as_bytes());
            });
        }
        for &(t, v) in &s.samples {
            ts.message(2, &mut item_buf, |m| {
                m.double(1, v);
                m.int64(2, t);
            });
        }
        for e in &s.exemplars {
            ts.message(3, &mut item_buf, |m| {
                for (n, v) in &e.labels {
                    m.message(1, &mut label_buf, |l| {
                        l.bytes(1, n.as_bytes());
                        l.bytes(2, v.as_bytes());
                    });
                }
                m.double(2, e.v);
                m.int64(3, e.t);
            });
        }
        w.bytes(1, &ts_buf);
    }
    for md in metadata {
        w.message(3, &mut item_buf, |m| {
            m.key(1, WIRE_VARINT);
            m.varint(md.metric_type.to_wire() as u64);
            m.bytes(2, md.metric_family_name.as_bytes());
            m.bytes(4, md.help.as_bytes());
            m.bytes(5, md.unit.as_bytes());
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::decode::{DecodeError, decode_write_request};
    use super::*;
    use proptest::prelude::*;

    fn series(labels: &[(&str, &str)], samples: &[(i64, f64)]) -> EncodeSeries {
        EncodeSeries {
            labels: labels
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect(),
            samples: samples.to_vec(),
            exemplars: vec![],
        }
    }

    #[test]
    fn round_trip_with_exemplars_and_metadata() {
        let mut s = series(
            &[("job", "api"), ("__name__", "http_requests_total")],
            &[(1000, 1.5), (2000, -0.0)],
        );
        s.exemplars.push(EncodeExemplar {
            labels: vec![("trace_id".into(), "4bf92f3577b34da6a3ce929d0e0e4736".into())],
            t: 1500,
            v: 0.25,
        });
        let md = EncodeMetadata {
            metric_family_name: "http_requests_total".into(),
            metric_type: MetricType::Counter,
            help: "Requests.".into(),
            unit: "".into(),
        };
        let buf = encode_write_request(&[s], &[md]);
        let (batch, unsupported) = decode_write_request(&buf).unwrap();
        assert_eq!(unsupported.native_histograms, 0);
        let s = &batch.series[0];
        let labels: Vec<_> = batch
            .series_labels(s)
            .iter()
            .map(|l| (l.name, l.value))
            .collect();
        assert_eq!(
            labels,
            [("__name__", "http_requests_total"), ("job", "api")]
        );
        let samples: Vec<_> = batch.series_samples(s).iter().map(|s| (s.t, s.v)).collect();
        assert_eq!(samples, [(1000, 1.5), (2000, -0.0)]);
        let e = &batch.series_exemplars(s)[0];
        assert_eq!((e.t, e.v), (1500, 0.25));
        assert_eq!(
            batch.exemplar_labels(e)[0].value,
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(batch.metadata[0].metric_type, MetricType::Counter);
        assert_eq!(batch.metadata[0].help, "Requests.");
    }

    #[test]
    fn truncation_is_an_error_not_a_panic() {
        let buf = encode_write_request(&[series(&[("__name__", "x")], &[(1, 2.0)])], &[]);
        for cut in 1..buf.len() {
            assert!(
                decode_write_request(&buf[..cut]).is_err(),
                "cut at {cut} decoded"
            );
        }
    }

    #[test]
    fn invalid_utf8_is_reported() {
        let mut buf = encode_write_request(&[series(&[("__name__", "xy")], &[])], &[]);
        let pos = buf.windows(2).position(|w| w == b"xy").unwrap();
        buf[pos] = 0xff;
        assert!(matches!(
            decode_write_request(&buf),
            Err(DecodeError::InvalidUtf8 { .. })
        ));
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode_write_request(&bytes);
        }

        #[test]
        fn round_trip_preserves_samples(
            values in proptest::collection::vec((any::<i64>(), any::<f64>()), 0..20),
            name in "[a-z_]{1,12}",
            value in "\\PC{0,12}",
        ) {
            let s = series(&[("__name__", &name), ("l", &value)], &values);
            let buf = encode_write_request(&[s], &[]);
            let (batch, _) = decode_write_request(&buf).unwrap();
            let got: Vec<_> = batch.samples.iter().map(|s| (s.t, s.v.to_bits())).collect();
            let want: Vec<_> = values.iter().map(|(t, v)| (*t, v.to_bits())).collect();
            prop_assert_eq!(got, want);
        }
    }
}
