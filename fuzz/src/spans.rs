//! Harness for the span store's record decoder (WAL records; the same encoding is in
//! block pages): any bytes either fail to decode or decode into spans that the head
//! stores and reads back unchanged (bit for bit), and whose re-encoding decodes to the
//! same number of spans.

use lastmile_model::Span;
use lastmile_store::codec::Decoder;
use lastmile_trace_store::codec::{get_batch, put_span};
use lastmile_trace_store::head::Head;

/// Spans are compared as encodings: a NaN attribute is unequal to itself but keeps its
/// bits.
fn bytes(s: &Span) -> Vec<u8> {
    let mut out = Vec::new();
    put_span(&mut out, s);
    out
}

pub fn record(data: &[u8]) {
    let Ok(batch) = get_batch(&mut Decoder::new(data)) else {
        return;
    };
    let mut head = Head::default();
    let mut payload = Vec::new();
    head.apply(&batch, &mut payload);
    let again = get_batch(&mut Decoder::new(&payload)).expect("re-encoded record decodes");
    assert_eq!(again.span_count(), batch.span_count(), "span count changed");
    for (_, _, span) in batch.spans() {
        let stored = head
            .trace(span.trace_id)
            .expect("head decodes its own spans");
        let want = bytes(span);
        assert!(
            stored.iter().any(|(_, s)| bytes(s) == want),
            "a decoded span did not read back unchanged"
        );
    }
}
