//! Remote write and the read API under bad input: each case is refused with the right
//! status and a Prometheus-style JSON error, counted on `/metrics` under the right reason,
//! stores nothing of the refused request, and leaves the server answering with the data
//! it had acknowledged before.

mod common;

use common::*;
use lastmile_receivers::remote_write::{EncodeSeries, encode_write_request};

const SMALL_LIMITS: &str = "limits:\n  max_request_bytes: 1MiB\n  max_decompressed_bytes: 1MiB\n";

/// A server with one acknowledged series, to check after each bad request.
struct Case {
    server: Lastmile,
    _dir: TestDir,
    baseline: (Labels, Vec<(i64, f64)>),
    t0: i64,
}

impl Case {
    fn new() -> Case {
        Self::start(None)
    }

    fn with_config(yaml: &str) -> Case {
        Self::start(Some(yaml))
    }

    fn start(config: Option<&str>) -> Case {
        let dir = TestDir::new();
        let server = match config {
            Some(yaml) => Lastmile::start_with_config(&dir, yaml),
            None => Lastmile::start(&dir),
        };
        let t0 = now_ms() - 60_000;
        let samples = vec![(t0, 1.0), (t0 + 1000, 2.5), (t0 + 2000, -7.0)];
        let s = series(
            &[("__name__", "baseline_total"), ("case", "bad_input")],
            &samples,
        );
        // The baseline goes in with a correct CRC32C header: the header's happy path.
        let body = snappy_write_request(std::slice::from_ref(&s), &[]);
        let crc = crc32c_hex(&body);
        let r = server.post_write(
            &body,
            &[("Content-Encoding", "snappy"), ("X-Content-CRC32C", &crc)],
        );
        assert_eq!(r.status, 204, "baseline write: {}", r.text());
        let case = Case {
            server,
            _dir: dir,
            baseline: (label_map(&s.labels), samples),
            t0,
        };
        case.assert_baseline_intact();
        case
    }

    fn assert_baseline_intact(&self) {
        let got = self.server.export("baseline_total", None, None);
        let (labels, samples) = &self.baseline;
        assert_eq!(
            got.get(labels),
            Some(samples),
            "acknowledged baseline data changed; export: {got:?}"
        );
    }

    /// The server still runs, answers, keeps what it acknowledged and takes new writes.
    fn assert_still_serving(&mut self) {
        assert!(
            self.server.is_running(),
            "lastmile exited; stderr:\n{}",
            self.server.logs()
        );
        let r = self.server.get("/-/healthy");
        assert_eq!(r.status, 200, "/-/healthy: {}", r.text());
        self.assert_baseline_intact();
        let t = now_ms();
        let probe = series(
            &[("__name__", "after_bad_input"), ("case", "probe")],
            &[(t, 42.0)],
        );
        self.server.remote_write_ok(std::slice::from_ref(&probe));
        let got = self.server.export("after_bad_input", None, None);
        assert_eq!(got.get(&label_map(&probe.labels)), Some(&vec![(t, 42.0)]));
    }

    fn rejected(&self, reason: &str) -> f64 {
        self.server.metric(&format!(
            "lastmile_remote_write_rejected_requests_total{{reason=\"{reason}\"}}"
        ))
    }

    /// Sends `body`, expects a refusal with `status`, a JSON error mentioning `hint`, and
    /// the counter of `reason` one higher.
    fn expect_refused(
        &self,
        body: &[u8],
        headers: &[(&str, &str)],
        status: u16,
        reason: &str,
        hint: &str,
    ) -> Response {
        let before = self.rejected(reason);
        let r = self.server.post_write(body, headers);
        assert_refusal(&r, status, hint);
        let after = self.rejected(reason);
        assert_eq!(
            after,
            before + 1.0,
            "rejected_requests_total{{reason=\"{reason}\"}} went from {before} to {after}"
        );
        r
    }

    fn assert_absent(&self, selector: &str) {
        let got = self.server.export(selector, None, None);
        assert!(
            got.is_empty(),
            "data of a refused request was stored: {got:?}"
        );
        let series = self.server.series(selector);
        assert!(
            series.is_empty(),
            "series of a refused request exist: {series:?}"
        );
    }
}

fn assert_refusal(r: &Response, status: u16, hint: &str) {
    assert_eq!(
        r.status,
        status,
        "expected {status}, got {}: {}",
        r.status,
        r.text()
    );
    let v = r.json();
    assert_eq!(v["status"], "error", "{v}");
    assert_eq!(v["errorType"], "bad_data", "{v}");
    let msg = v["error"]
        .as_str()
        .unwrap_or_else(|| panic!("no error message: {v}"));
    assert!(
        msg.to_ascii_lowercase()
            .contains(&hint.to_ascii_lowercase()),
        "error message {msg:?} does not mention {hint:?}"
    );
}

fn one_series(name: &str, t: i64) -> Vec<EncodeSeries> {
    vec![series(
        &[("__name__", name), ("job", "bad_input")],
        &[(t, 1.0), (t + 1, 2.0)],
    )]
}

const SNAPPY: (&str, &str) = ("Content-Encoding", "snappy");
const ZSTD: (&str, &str) = ("Content-Encoding", "zstd");

#[test]
fn malformed_protobuf_is_400_and_stores_nothing() {
    let mut c = Case::new();
    // A valid series followed by a timeseries field whose length runs past the end.
    let mut raw = encode_write_request(&one_series("malformed_pb_series", c.t0), &[]);
    raw.extend_from_slice(&[0x0a, 0x7f, 0x0a, 0x03, b'a']);
    let body = snap::raw::Encoder::new().compress_vec(&raw).unwrap();
    c.expect_refused(&body, &[SNAPPY], 400, "bad_protobuf", "protobuf");
    // A wire type that protobuf does not have (7) as the first key.
    let body = snap::raw::Encoder::new()
        .compress_vec(&[0x0f, 0x01, 0x02])
        .unwrap();
    c.expect_refused(&body, &[SNAPPY], 400, "bad_protobuf", "protobuf");
    c.assert_absent("malformed_pb_series");
    c.assert_still_serving();
}

#[test]
fn truncated_snappy_is_400() {
    let mut c = Case::new();
    let body = snappy_write_request(&one_series("truncated_snappy_series", c.t0), &[]);
    assert!(body.len() > 20);
    c.expect_refused(
        &body[..body.len() / 2],
        &[SNAPPY],
        400,
        "bad_compression",
        "snappy",
    );
    // Snappy is what a missing Content-Encoding means; the same applies.
    c.expect_refused(
        &body[..body.len() - 3],
        &[],
        400,
        "bad_compression",
        "snappy",
    );
    c.assert_absent("truncated_snappy_series");
    c.assert_still_serving();
}

#[test]
fn invalid_zstd_is_400_and_valid_zstd_is_accepted() {
    let mut c = Case::new();
    let raw = encode_write_request(&one_series("zstd_series", c.t0), &[]);
    c.expect_refused(
        b"this is not a zstd frame at all",
        &[ZSTD],
        400,
        "bad_compression",
        "zstd",
    );
    let good = zstd::bulk::compress(&raw, 3).unwrap();
    // A real frame, cut short.
    c.expect_refused(
        &good[..good.len() - 4],
        &[ZSTD],
        400,
        "bad_compression",
        "zstd",
    );
    c.assert_absent("zstd_series");
    // The positive control: the same request, intact, is stored.
    let r = c.server.post_write(&good, &[ZSTD]);
    assert_eq!(r.status, 204, "valid zstd request: {}", r.text());
    let got = c.server.export("zstd_series", None, None);
    assert_eq!(
        got.values().next(),
        Some(&vec![(c.t0, 1.0), (c.t0 + 1, 2.0)]),
        "{got:?}"
    );
    c.assert_still_serving();
}

#[test]
fn snappy_bomb_is_413_without_allocating_the_declared_size() {
    // Default limits (32 MiB): the header declares 4 GiB - 1 in a 13-byte body.
    let mut c = Case::new();
    let mut bomb = vec![0xff, 0xff, 0xff, 0xff, 0x0f];
    bomb.extend_from_slice(&[0x1c, b'a', b'b', b'c', b'd', b'e', b'f', b'g', b'h']);
    let peak_before = vm_peak_bytes(c.server.pid());
    c.expect_refused(&bomb, &[SNAPPY], 413, "too_large", "limit");
    let peak_after = vm_peak_bytes(c.server.pid());
    // Allocating the declared size would map 4 GiB; threads and allocator arenas that
    // appear meanwhile are far below 2 GiB.
    assert!(
        peak_after < peak_before + (2 << 30),
        "peak virtual memory grew from {peak_before} to {peak_after} bytes on a snappy bomb"
    );
    c.assert_still_serving();
}

#[test]
fn body_over_max_request_bytes_is_413() {
    let mut c = Case::with_config(SMALL_LIMITS);
    // Content does not matter: the size is checked first. Pseudo-random so no layer can
    // shrink it.
    let mut x = 0x9e3779b97f4a7c15u64;
    let body: Vec<u8> = (0..(1 << 20) + 4096)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    // With Content-Length.
    c.expect_refused(&body, &[SNAPPY], 413, "too_large", "limit");
    // Chunked, so the size is only known while reading.
    let before = c.rejected("too_large");
    let r = http_request(
        c.server.addr,
        "POST",
        "/api/v1/write",
        &[("Content-Type", "application/x-protobuf"), SNAPPY],
        &body,
        Framing::Chunked,
    )
    .expect("chunked request");
    assert_refusal(&r, 413, "limit");
    assert_eq!(c.rejected("too_large"), before + 1.0);
    c.assert_still_serving();
}

/// A request of ~1.5 MiB of protobuf that compresses far below 1 MiB.
fn big_request(name: &str, t: i64, series_count: usize) -> Vec<u8> {
    let pad = "x".repeat(200);
    let series: Vec<EncodeSeries> = (0..series_count)
        .map(|i| {
            let i = i.to_string();
            series(&[("__name__", name), ("i", &i), ("pad", &pad)], &[(t, 1.0)])
        })
        .collect();
    encode_write_request(&series, &[])
}

#[test]
fn decompressed_size_over_max_decompressed_bytes_is_413() {
    let mut c = Case::with_config(SMALL_LIMITS);
    let raw = big_request("decompression_limit_series", c.t0, 6000);
    assert!(
        raw.len() > (1 << 20) + (256 << 10),
        "test request is only {} bytes",
        raw.len()
    );
    // Snappy declares the size in its header.
    let body = snap::raw::Encoder::new().compress_vec(&raw).unwrap();
    assert!(
        body.len() < (1 << 20) / 4,
        "compressed test request is {} bytes",
        body.len()
    );
    c.expect_refused(&body, &[SNAPPY], 413, "too_large", "limit");
    // zstd, with the size in the frame header.
    let body = zstd::bulk::compress(&raw, 3).unwrap();
    c.expect_refused(&body, &[ZSTD], 413, "too_large", "limit");
    // zstd streamed, with no size declared: the limit holds while decompressing.
    let mut body = Vec::new();
    {
        let mut enc = zstd::stream::write::Encoder::new(&mut body, 3).unwrap();
        std::io::Write::write_all(&mut enc, &raw).unwrap();
        enc.finish().unwrap();
    }
    c.expect_refused(&body, &[ZSTD], 413, "too_large", "limit");
    c.assert_absent("decompression_limit_series");
    // The positive control: a request under the limit goes through.
    let raw = big_request("under_limit_series", c.t0, 3000);
    assert!(raw.len() < 1 << 20);
    let r = c.server.post_write(
        &snap::raw::Encoder::new().compress_vec(&raw).unwrap(),
        &[SNAPPY],
    );
    assert_eq!(r.status, 204, "request under the limit: {}", r.text());
    assert_eq!(c.server.series("under_limit_series").len(), 3000);
    c.assert_still_serving();
}

#[test]
fn crc_mismatch_is_400_and_stores_nothing() {
    let mut c = Case::new();
    let body = snappy_write_request(&one_series("crc_series", c.t0), &[]);
    let wrong = format!("{:08x}", crc32c::crc32c(&body) ^ 1);
    c.expect_refused(
        &body,
        &[SNAPPY, ("X-Content-CRC32C", &wrong)],
        400,
        "crc_mismatch",
        "crc32c",
    );
    c.assert_absent("crc_series");
    // A body damaged in transit, with the CRC of the original.
    let good = crc32c_hex(&body);
    let mut damaged = body.clone();
    let last = damaged.len() - 1;
    damaged[last] ^= 0x01;
    c.expect_refused(
        &damaged,
        &[SNAPPY, ("X-Content-CRC32C", &good)],
        400,
        "crc_mismatch",
        "crc32c",
    );
    c.assert_absent("crc_series");
    // The positive control: the intact body with its CRC, upper-case hex.
    let r = c
        .server
        .post_write(&body, &[SNAPPY, ("X-Content-CRC32C", &good.to_uppercase())]);
    assert_eq!(r.status, 204, "{}", r.text());
    assert_eq!(c.server.series("crc_series").len(), 1);
    c.assert_still_serving();
}

#[test]
fn malformed_crc_header_is_400() {
    let mut c = Case::new();
    let body = snappy_write_request(&one_series("crc_header_series", c.t0), &[]);
    let crc = crc32c_hex(&body);
    let nine = format!("{crc}0");
    let seven = crc[..7].to_string();
    let with_prefix = format!("0x{}", &crc[..6]);
    for bad in [
        "",
        "not-hex!",
        nine.as_str(),
        seven.as_str(),
        with_prefix.as_str(),
        "zzzzzzzz",
    ] {
        let r = c.expect_refused(
            &body,
            &[SNAPPY, ("X-Content-CRC32C", bad)],
            400,
            "crc_mismatch",
            "X-Content-CRC32C",
        );
        assert!(
            r.text().contains("8 hex digits"),
            "header {bad:?}: {}",
            r.text()
        );
    }
    c.assert_absent("crc_header_series");
    c.assert_still_serving();
}

#[test]
fn unsupported_content_encoding_or_type_is_415() {
    let mut c = Case::new();
    let body = snappy_write_request(&one_series("encoding_series", c.t0), &[]);
    c.expect_refused(
        &body,
        &[("Content-Encoding", "gzip")],
        415,
        "unsupported_media_type",
        "gzip",
    );
    c.expect_refused(
        &body,
        &[("Content-Encoding", "br")],
        415,
        "unsupported_media_type",
        "br",
    );
    // Remote write 2.0 is not supported: 415 as the 2.0 spec asks, so senders fall back.
    let before = c.rejected("unsupported_media_type");
    let r = c.server.post(
        "/api/v1/write",
        &[
            (
                "Content-Type",
                "application/x-protobuf;proto=io.prometheus.write.v2.Request",
            ),
            ("X-Prometheus-Remote-Write-Version", "2.0.0"),
            SNAPPY,
        ],
        &body,
    );
    assert_refusal(&r, 415, "2.0");
    let r = c
        .server
        .post("/api/v1/write", &[("Content-Type", "text/plain")], &body);
    assert_refusal(&r, 415, "content-type");
    assert_eq!(c.rejected("unsupported_media_type"), before + 2.0);
    c.assert_absent("encoding_series");
    c.assert_still_serving();
}

#[test]
fn invalid_series_is_400_and_nothing_of_the_request_is_stored() {
    let mut c = Case::new();
    let t = c.t0;
    let valid = series(
        &[("__name__", "valid_neighbour"), ("job", "bad_input")],
        &[(t, 1.0)],
    );
    let cases = [
        (
            series(&[("job", "bad_input"), ("instance", "a")], &[(t, 1.0)]),
            "__name__",
        ),
        (
            series(
                &[("__name__", "dup_label"), ("job", "a"), ("job", "b")],
                &[(t, 1.0)],
            ),
            "duplicate",
        ),
        (
            series(&[("__name__", "empty_label_name"), ("", "x")], &[(t, 1.0)]),
            "label name",
        ),
    ];
    for (bad, hint) in cases {
        // The valid series comes first, so a decoder that stored as it went would keep it.
        let body = snappy_write_request(&[valid.clone(), bad], &[]);
        c.expect_refused(&body, &[SNAPPY], 400, "invalid_series", hint);
        c.assert_absent("valid_neighbour");
        c.assert_absent(r#"{job="bad_input"}"#);
    }
    c.assert_still_serving();
}

#[test]
fn out_of_order_and_duplicate_samples_keep_the_rest() {
    let mut c = Case::new();
    let t = c.t0;
    let a = [("__name__", "ooo_series"), ("job", "bad_input")];
    let first = [series(&a, &[(t + 10, 1.0), (t + 20, 2.0)])];
    c.server.remote_write_ok(&first);
    // Resending an acknowledged request (what a sender does after a timeout) is accepted as
    // already stored: 204, nothing counted as refused, nothing changed.
    let r = c.server.remote_write(&first, &[]);
    assert_eq!(r.status, 204, "resent request: {}", r.text());
    let got = c.server.export("ooo_series", None, None);
    assert_eq!(
        got.values().collect::<Vec<_>>(),
        [&vec![(t + 10, 1.0), (t + 20, 2.0)]],
        "{got:?}"
    );

    let rejected = |reason: &str| {
        c.server.metric(&format!(
            "lastmile_tsdb_samples_rejected_total{{reason=\"{reason}\"}}"
        ))
    };
    let before = (
        rejected("out_of_order"),
        rejected("duplicate_timestamp"),
        rejected("too_old"),
    );
    let appended_before = c.server.metric("lastmile_tsdb_samples_appended_total");
    let b = [("__name__", "ooo_neighbour"), ("job", "bad_input")];
    let old = [("__name__", "too_old_series"), ("job", "bad_input")];
    let mixed = [
        series(
            &a,
            &[(t + 5, 5.0), (t + 20, 99.0), (t + 20, 2.0), (t + 30, 3.0)],
        ),
        series(&b, &[(t + 1, 1.0), (t + 2, 2.0)]),
        // Two hours behind the head's newest sample: older than half a block range.
        series(&old, &[(t - 2 * 3600 * 1000, 1.0)]),
    ];
    let r = c.server.remote_write(&mixed, &[]);
    assert_eq!(r.status, 200, "partly refused write: {}", r.text());
    let v = r.json();
    assert_eq!(v["status"], "success", "{v}");
    let d = &v["data"];
    assert_eq!(d["samplesWritten"], 3, "{v}");
    assert_eq!(d["rejected"]["outOfOrder"], 1, "{v}");
    assert_eq!(d["rejected"]["duplicateTimestamp"], 1, "{v}");
    assert_eq!(d["rejected"]["tooOld"], 1, "{v}");

    let got = c.server.export(r#"{job="bad_input"}"#, None, None);
    let want_a = vec![(t + 10, 1.0), (t + 20, 2.0), (t + 30, 3.0)];
    assert_eq!(got.get(&label_map(&labels(&a))), Some(&want_a), "{got:?}");
    assert_eq!(
        got.get(&label_map(&labels(&b))),
        Some(&vec![(t + 1, 1.0), (t + 2, 2.0)]),
        "{got:?}"
    );
    assert_eq!(got.get(&label_map(&labels(&old))), None, "{got:?}");

    assert_eq!(rejected("out_of_order"), before.0 + 1.0);
    assert_eq!(rejected("duplicate_timestamp"), before.1 + 1.0);
    assert_eq!(rejected("too_old"), before.2 + 1.0);
    assert_eq!(
        c.server.metric("lastmile_tsdb_samples_appended_total"),
        appended_before + 3.0
    );
    c.assert_still_serving();
}

#[test]
fn bad_match_on_series_and_export_is_400() {
    let mut c = Case::new();
    for endpoint in ["/api/v1/series", "/api/v1/export"] {
        for bad in ["up{", "sum(up)", "{}", r#"{job=""}"#, r#"{job=~"("}"#] {
            let r = c.server.get(&format!("{endpoint}?match[]={}", enc(bad)));
            assert_refusal(&r, 400, "");
            assert!(!r.json()["error"].as_str().unwrap_or("").is_empty());
        }
        // No match[] at all.
        let r = c.server.get(endpoint);
        assert_refusal(&r, 400, "match[]");
        // A bad time bound.
        let r = c
            .server
            .get(&format!("{endpoint}?match[]=up&start=yesterday"));
        assert_refusal(&r, 400, "start");
    }
    c.assert_still_serving();
}
