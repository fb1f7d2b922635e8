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
use tantivy::tokenizer::TextAnalyzer;
use tantivy::{Index, Term};

use crate::streams::StreamId;

pub use crate::tokens::MAX_TOKEN_LEN;
use crate::tokens::{self, MIN_TAGGED_LEN, TAG_PREFIX};

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
    /// The trace id, indexed (not stored: see `ids_at`).
    pub trace: Field,
    /// The trace id's bytes, stored when the line's text does not spell it.
    pub trace_bytes: Field,
    /// The span id's bytes, stored when the line's text does not spell it.
    pub span_bytes: Field,
    /// Where the line's text spells its trace and span ids in lowercase hex: two u16
    /// (little endian) byte offsets, `u16::MAX` for "not in the text". Random ids do not
    /// compress; most lines carry them in their text already, so they are not kept twice.
    pub ids_at: Field,
    pub meta: Field,
}

/// Bumped when the index's schema or its terms change meaning; an index written with
/// another version is refused at open, with a message saying what to do.
pub const FORMAT_VERSION: u32 = 2;

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
    // Time ranges are answered from the column; indexed, every distinct timestamp would be
    // a term.
    let ts = b.add_i64_field("ts", NumericOptions::default().set_fast());
    let len = b.add_u64_field("len", NumericOptions::default().set_fast());
    let flags = b.add_u64_field("flags", NumericOptions::default().set_fast());
    let trace = b.add_bytes_field("trace", BytesOptions::default().set_indexed());
    let trace_bytes = b.add_bytes_field("trace_bytes", STORED);
    let span_bytes = b.add_bytes_field("span_bytes", STORED);
    let ids_at = b.add_bytes_field("ids_at", STORED);
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
            trace_bytes,
            span_bytes,
            ids_at,
            meta,
        },
    )
}

pub fn register_tokenizer(index: &Index) {
    index.tokenizers().register(
        TOKENIZER,
        TextAnalyzer::from(tokens::LineTokenizer::default()),
    );
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
/// indexed limit give no condition (their tokens are not indexed). A hex run may sit in a
/// line token that the index keeps only as a tag (see [`tokens`]): such a run's condition
/// also accepts every tag the token could have, or is dropped when that is any tag.
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
    // (cost rank, condition): rank 0 are single terms, cheap and selective; higher ranks
    // walk more of the term dictionary.
    let mut conditions: Vec<(u8, Box<dyn Query>)> = Vec::new();
    for &(s, e) in &runs {
        let tok = &needle[s..e];
        if tok.len() > MAX_TOKEN_LEN {
            continue;
        }
        if let Some(c) = run_condition(field, tok, s == 0, e == needle.len()) {
            conditions.push(c);
        }
    }
    if conditions.iter().any(|(rank, _)| *rank == 0) {
        return conditions
            .into_iter()
            .filter(|(rank, _)| *rank == 0)
            .map(|(_, q)| q)
            .collect();
    }
    // A prefix walks a small part of the dictionary; suffix and infix walk all of it,
    // which still beats reading every line. One is enough to narrow the candidates.
    conditions.sort_by_key(|(rank, _)| *rank);
    conditions.into_iter().take(1).map(|(_, q)| q).collect()
}

/// The condition for one run of a needle; `open_left`/`open_right` say whether the line's
/// token may extend beyond the run on that side.
fn run_condition(
    field: Field,
    tok: &str,
    open_left: bool,
    open_right: bool,
) -> Option<(u8, Box<dyn Query>)> {
    let term = |t: &str| -> Box<dyn Query> {
        Box::new(TermQuery::new(
            Term::from_field_text(field, t),
            IndexRecordOption::Basic,
        ))
    };
    if !open_left && !open_right {
        // The line holds the run as a whole token.
        return Some((
            0,
            if tokens::is_tagged(tok) {
                term(&tokens::tag(tok))
            } else {
                term(tok)
            },
        ));
    }
    let escaped = regex_escape(tok);
    let (rank, words) = match (open_left, open_right) {
        (false, _) => (1, format!("{escaped}.*")),
        (true, false) => (2, format!(".*{escaped}")),
        (true, true) => (3, format!(".*{escaped}.*")),
    };
    // The line token holding the run may be a word, a tagged hex run, or a run too long
    // to index (which the line's long-token mark stands for).
    let mut either = vec![words];
    if tokens::is_hex(tok) {
        let tags = match (open_left, open_right) {
            // It starts with the run: its tag's prefix is known once the run has one.
            (false, _) if tok.len() >= TAG_PREFIX => {
                tokens::tags_pattern(tok.len()..=MAX_TOKEN_LEN, Some(&tok[..TAG_PREFIX]))
            }
            // It is the run itself, or longer with any prefix.
            (true, true) if tok.len() >= MIN_TAGGED_LEN => {
                let same = tokens::tags_pattern(tok.len()..=tok.len(), Some(&tok[..TAG_PREFIX]));
                format!(
                    "{same}|{}",
                    tokens::tags_pattern(tok.len() + 1..=MAX_TOKEN_LEN, None)
                )
            }
            // It ends with the run: any prefix, at least as long.
            (true, false) if tok.len() >= MIN_TAGGED_LEN => {
                tokens::tags_pattern(tok.len()..=MAX_TOKEN_LEN, None)
            }
            // Any tag could hold it: the index cannot narrow the read.
            _ => return None,
        };
        either.push(tags);
    }
    let mut clauses: Vec<(Occur, Box<dyn Query>)> = either
        .iter()
        .map(|p| RegexQuery::from_pattern(p, field).map(|q| (Occur::Should, Box::new(q) as _)))
        .collect::<Result<_, _>>()
        .ok()?;
    clauses.push((Occur::Should, term(tokens::LONG_TOKEN_MARK)));
    Some((rank, Box::new(BooleanQuery::new(clauses))))
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A pattern the term-dictionary automaton refuses would silently drop its condition
    /// (a full read instead of an index lookup).
    #[test]
    fn every_needle_gives_conditions_that_compile() {
        let (_, f) = schema();
        for needle in [
            "4bf92f3577b34da6a3ce929d0e0e4736",
            "=4bf92f3577b34da6a3ce929d0e0e4736",
            "4bf92f3577b34da6a3ce929d0e0e4736 ",
            "00f067aa0ba902b7",
            "-cafe",
            "word",
            "x.y",
        ] {
            let queries = needle_queries(f.line, needle);
            assert_eq!(queries.len(), 1, "{needle}");
        }
        for len in [16, 32, 63, 64] {
            let tok = "a".repeat(len);
            for (l, r) in [(false, true), (true, false), (true, true)] {
                assert!(run_condition(f.line, &tok, l, r).is_some(), "{len} {l} {r}");
            }
        }
    }
}
