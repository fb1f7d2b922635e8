//! The tantivy side of the log store: schema, tokenizer, and turning a selection (streams,
//! time range, required substrings, trace id) into an index query.
//!
//! One document per log line. Only what searches need is indexed, and with the least
//! detail that answers them: the line's tokens without frequencies or positions (a
//! candidate filter: every match is confirmed on the line itself), the stream id, the
//! trace id, and the timestamp and line length as fast (columnar) fields. The line,
//! metadata and ids are kept in the zstd-compressed doc store.

use std::ops::Bound;

use tantivy::query::{
    AllQuery, BooleanQuery, Occur, Query, RangeQuery, RegexQuery, TermQuery, TermSetQuery,
};
use tantivy::schema::{
    BytesOptions, Field, IndexRecordOption, NumericOptions, STORED, Schema, TextFieldIndexing,
    TextOptions,
};
use tantivy::tokenizer::{RemoveLongFilter, SimpleTokenizer, TextAnalyzer};
use tantivy::{Index, Term};

use crate::streams::StreamId;

/// Tokens longer than this are not indexed (long hex blobs, base64 payloads): they would
/// bloat the term dictionary for searches nobody types.
pub const MAX_TOKEN_LEN: usize = 64;
pub const TOKENIZER: &str = "lastmile_log";

#[derive(Clone, Copy)]
pub struct Fields {
    pub line: Field,
    pub stream: Field,
    pub ts: Field,
    pub len: Field,
    /// Bit 0: the line has structured metadata (which LogQL turns into labels, so
    /// metric queries must read those lines).
    pub flags: Field,
    pub trace: Field,
    pub span: Field,
    pub meta: Field,
}

pub fn schema() -> (Schema, Fields) {
    let mut b = Schema::builder();
    let line_opts = TextOptions::default().set_stored().set_indexing_options(
        TextFieldIndexing::default()
            .set_tokenizer(TOKENIZER)
            .set_index_option(IndexRecordOption::Basic)
            .set_fieldnorms(false),
    );
    let line = b.add_text_field("line", line_opts);
    let stream = b.add_u64_field("stream", NumericOptions::default().set_indexed().set_fast());
    let ts = b.add_i64_field("ts", NumericOptions::default().set_indexed().set_fast());
    let len = b.add_u64_field("len", NumericOptions::default().set_fast());
    let flags = b.add_u64_field("flags", NumericOptions::default().set_fast());
    let trace = b.add_bytes_field("trace", BytesOptions::default().set_indexed().set_stored());
    let span = b.add_bytes_field("span", STORED);
    let meta = b.add_bytes_field("meta", STORED);
    (
        b.build(),
        Fields {
            line,
            stream,
            ts,
            len,
            flags,
            trace,
            span,
            meta,
        },
    )
}

/// Case-sensitive alphanumeric runs (LogQL's `|=` is case-sensitive), long ones dropped.
pub fn register_tokenizer(index: &Index) {
    let analyzer = TextAnalyzer::builder(SimpleTokenizer::default())
        .filter(RemoveLongFilter::limit(MAX_TOKEN_LEN + 1))
        .build();
    index.tokenizers().register(TOKENIZER, analyzer);
}

/// What a read selects. Lines outside it are never returned; lines inside it are
/// returned (a superset when `required` is set: the caller applies its own filters).
#[derive(Clone, Debug, Default)]
pub struct Selection {
    /// Streams to read, sorted; `None` = every stream.
    pub streams: Option<Vec<StreamId>>,
    /// Nanoseconds, inclusive.
    pub start_ns: i64,
    /// Nanoseconds, exclusive.
    pub end_ns: i64,
    /// Substrings every returned line should contain (case-sensitive): a hint that lets
    /// the index skip lines, from `|= "…"` filters.
    pub required: Vec<String>,
}

impl Selection {
    pub fn new(start_ns: i64, end_ns: i64) -> Self {
        Selection {
            streams: None,
            start_ns,
            end_ns,
            required: Vec::new(),
        }
    }

    pub fn wants_stream(&self, id: StreamId) -> bool {
        self.streams
            .as_ref()
            .is_none_or(|s| s.binary_search(&id).is_ok())
    }
}

/// The index query for a selection over `[start_ns, end_ns)`.
pub fn build_query(f: &Fields, sel: &Selection, start_ns: i64, end_ns: i64) -> Box<dyn Query> {
    let mut clauses: Vec<(Occur, Box<dyn Query>)> = vec![(
        Occur::Must,
        Box::new(RangeQuery::new(
            Bound::Included(Term::from_field_i64(f.ts, start_ns)),
            Bound::Excluded(Term::from_field_i64(f.ts, end_ns)),
        )),
    )];
    if let Some(streams) = &sel.streams {
        clauses.push((
            Occur::Must,
            Box::new(TermSetQuery::new(
                streams.iter().map(|&s| Term::from_field_u64(f.stream, s)),
            )),
        ));
    }
    for needle in &sel.required {
        for q in needle_queries(f.line, needle) {
            clauses.push((Occur::Must, q));
        }
    }
    if clauses.is_empty() {
        return Box::new(AllQuery);
    }
    Box::new(BooleanQuery::new(clauses))
}

pub fn trace_query(f: &Fields, trace: &[u8; 16], start_ns: i64, end_ns: i64) -> Box<dyn Query> {
    Box::new(BooleanQuery::new(vec![
        (
            Occur::Must,
            Box::new(TermQuery::new(
                Term::from_field_bytes(f.trace, trace),
                IndexRecordOption::Basic,
            )) as Box<dyn Query>,
        ),
        (
            Occur::Must,
            Box::new(RangeQuery::new(
                Bound::Included(Term::from_field_i64(f.ts, start_ns)),
                Bound::Excluded(Term::from_field_i64(f.ts, end_ns)),
            )),
        ),
    ]))
}

/// Index conditions that every line containing `needle` satisfies.
///
/// The needle is cut into alphanumeric runs as the tokenizer cuts lines. A run with a
/// separator on both sides inside the needle is a whole token of the line; the first run
/// may be the end of a longer token and the last one its start, so they become suffix and
/// prefix conditions (regular expressions over the term dictionary). Runs longer than the
/// indexed limit give no condition (their tokens are not indexed).
pub fn needle_queries(field: Field, needle: &str) -> Vec<Box<dyn Query>> {
    let mut runs: Vec<(usize, usize)> = Vec::new();
    let mut start = None;
    for (i, c) in needle.char_indices() {
        match (c.is_alphanumeric(), start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                runs.push((s, i));
                start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = start {
        runs.push((s, needle.len()));
    }
    let mut exact = Vec::new();
    let mut partial = Vec::new();
    for &(s, e) in &runs {
        let tok = &needle[s..e];
        if tok.len() > MAX_TOKEN_LEN {
            continue;
        }
        let open_left = s == 0;
        let open_right = e == needle.len();
        match (open_left, open_right) {
            (false, false) => exact.push(Box::new(TermQuery::new(
                Term::from_field_text(field, tok),
                IndexRecordOption::Basic,
            )) as Box<dyn Query>),
            (false, true) => partial.push((1, format!("{}.*", regex_escape(tok)))),
            (true, false) => partial.push((2, format!(".*{}", regex_escape(tok)))),
            (true, true) => partial.push((3, format!(".*{}.*", regex_escape(tok)))),
        }
    }
    if !exact.is_empty() {
        // Exact terms are cheap and selective; the partial ones would only cost a scan of
        // the term dictionary.
        return exact;
    }
    // A prefix walks a small part of the dictionary; suffix and infix walk all of it,
    // which still beats reading every line.
    partial.sort();
    partial
        .into_iter()
        .take(1)
        .filter_map(|(_, re)| RegexQuery::from_pattern(&re, field).ok())
        .map(|q| Box::new(q) as Box<dyn Query>)
        .collect()
}

fn regex_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if !c.is_alphanumeric() {
            out.push('\\');
        }
        out.push(c);
    }
    out
}
