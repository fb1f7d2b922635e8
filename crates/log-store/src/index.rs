//! The tantivy side of the log store: schema, tokenizer, and turning a selection (streams,
//! time range, required substrings, trace id) into an index query.
//!
//! One document per chunk (see [`crate::chunk`]): the chunk's distinct terms without
//! frequencies or positions (a candidate filter: every match is confirmed on the line
//! itself), its stream, and as fast (columnar) fields its time span, line count, flags,
//! longest hex run and Bloom filter of hex runs and trace ids ([`crate::bloom`]), which
//! [`Gate`]s check after the index query. The chunk itself is a stored field; it is
//! compressed already, so the doc store does not compress again.

use std::ops::Bound;

use tantivy::query::{BooleanQuery, Occur, Query, RangeQuery, RegexQuery, TermQuery, TermSetQuery};
use tantivy::schema::{
    Field, IndexRecordOption, NumericOptions, STORED, Schema, TextFieldIndexing, TextOptions,
};
use tantivy::tokenizer::{TextAnalyzer, WhitespaceTokenizer};
use tantivy::{Index, Term};

use crate::streams::StreamId;

pub use crate::tokens::MAX_TOKEN_LEN;
use crate::tokens::{self, MIN_TAGGED_LEN};

pub const TOKENIZER: &str = "lastmile_chunk_terms";

#[derive(Clone, Copy)]
pub struct Fields {
    /// The chunk's distinct line terms (see [`tokens`]), space-separated.
    pub line: Field,
    pub stream: Field,
    /// Oldest and newest line timestamp of the chunk.
    pub min_ts: Field,
    pub max_ts: Field,
    /// Lines in the chunk.
    pub lines: Field,
    /// Bit 0: some line has structured metadata (which LogQL turns into labels, so
    /// metric queries must read those lines). Bit 1: some run was too long to index.
    pub flags: Field,
    /// Length of the longest tagged hex run.
    pub max_hex: Field,
    /// The Bloom filter of the chunk's tagged hex runs and trace ids, as u64 words.
    pub bloom: Field,
    /// The encoded chunk.
    pub chunk: Field,
}

/// Bumped when the index's schema or its terms change meaning; an index written with
/// another version is refused at open, with a message saying what to do.
pub const FORMAT_VERSION: u32 = 3;

/// Flag bit: some line of the chunk has structured metadata.
pub const FLAG_METADATA: u64 = 1;
/// Flag bit: some run of the chunk was too long to index.
pub const FLAG_LONG_RUNS: u64 = 2;

/// A condition on a chunk's columns, checked on the chunks the index query selects.
#[derive(Clone, Copy, Debug)]
pub enum Gate {
    /// The chunk's filter may hold this tagged hex run of `len` characters; with
    /// `longer_ok`, a chunk with a longer hex run or a run too long to index passes too
    /// (the run may sit inside one).
    Hex {
        key: u64,
        len: usize,
        longer_ok: bool,
    },
    /// The chunk's filter may hold this trace id.
    Trace { key: u64 },
}

pub fn schema() -> (Schema, Fields) {
    let mut b = Schema::builder();
    let line_opts = TextOptions::default().set_indexing_options(
        TextFieldIndexing::default()
            .set_tokenizer(TOKENIZER)
            .set_index_option(IndexRecordOption::Basic)
            .set_fieldnorms(false),
    );
    let line = b.add_text_field("line", line_opts);
    let stream = b.add_u64_field("stream", NumericOptions::default().set_indexed().set_fast());
    let min_ts = b.add_i64_field("min_ts", NumericOptions::default().set_fast());
    let max_ts = b.add_i64_field("max_ts", NumericOptions::default().set_fast());
    let lines = b.add_u64_field("lines", NumericOptions::default().set_fast());
    let flags = b.add_u64_field("flags", NumericOptions::default().set_fast());
    let max_hex = b.add_u64_field("max_hex", NumericOptions::default().set_fast());
    let bloom = b.add_u64_field("bloom", NumericOptions::default().set_fast());
    let chunk = b.add_bytes_field("chunk", STORED);
    (
        b.build(),
        Fields {
            line,
            stream,
            min_ts,
            max_ts,
            lines,
            flags,
            max_hex,
            bloom,
            chunk,
        },
    )
}

pub fn register_tokenizer(index: &Index) {
    index.tokenizers().register(
        TOKENIZER,
        TextAnalyzer::from(WhitespaceTokenizer::default()),
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

/// Chunks with lines in `[start_ns, end_ns)` (by their time span).
fn overlaps(f: &Fields, start_ns: i64, end_ns: i64) -> [(Occur, Box<dyn Query>); 2] {
    [
        (
            Occur::Must,
            Box::new(RangeQuery::new(
                Bound::Unbounded,
                Bound::Excluded(Term::from_field_i64(f.min_ts, end_ns)),
            )),
        ),
        (
            Occur::Must,
            Box::new(RangeQuery::new(
                Bound::Included(Term::from_field_i64(f.max_ts, start_ns)),
                Bound::Unbounded,
            )),
        ),
    ]
}

/// The index query and gates for the chunks a selection over `[start_ns, end_ns)` needs.
pub fn build_query(
    f: &Fields,
    sel: &Selection,
    start_ns: i64,
    end_ns: i64,
) -> (Box<dyn Query>, Vec<Gate>) {
    let mut clauses: Vec<(Occur, Box<dyn Query>)> = overlaps(f, start_ns, end_ns).into();
    if let Some(streams) = &sel.streams {
        clauses.push((
            Occur::Must,
            Box::new(TermSetQuery::new(
                streams.iter().map(|&s| Term::from_field_u64(f.stream, s)),
            )),
        ));
    }
    let mut gates = Vec::new();
    for needle in &sel.required {
        let (queries, g) = needle_queries(f.line, needle);
        clauses.extend(queries.into_iter().map(|q| (Occur::Must, q)));
        gates.extend(g);
    }
    (Box::new(BooleanQuery::new(clauses)), gates)
}

/// Chunks that may hold lines of `trace` in `[start_ns, end_ns)`.
pub fn trace_query(
    f: &Fields,
    trace: &[u8; 16],
    start_ns: i64,
    end_ns: i64,
) -> (Box<dyn Query>, Vec<Gate>) {
    let clauses: Vec<(Occur, Box<dyn Query>)> = overlaps(f, start_ns, end_ns).into();
    (
        Box::new(BooleanQuery::new(clauses)),
        vec![Gate::Trace {
            key: tokens::trace_key(trace),
        }],
    )
}

/// Chunks whose every line is older than `cutoff`.
pub fn older_than(f: &Fields, cutoff: i64) -> RangeQuery {
    RangeQuery::new(
        Bound::Unbounded,
        Bound::Excluded(Term::from_field_i64(f.max_ts, cutoff)),
    )
}

/// Index conditions that every line containing `needle` satisfies.
///
/// The needle is cut into alphanumeric runs as the tokenizer cuts lines. A run with a
/// separator on both sides inside the needle is a whole token of the line; the first run
/// may be the end of a longer token and the last one its start, so they become suffix and
/// prefix conditions (regular expressions over the term dictionary). Runs longer than the
/// indexed limit give no condition (their tokens are not indexed). A hex run may sit in a
/// line token that the index keeps only as a tag (see [`tokens`]): such a run's condition
/// also accepts every tag the token could have, or is dropped when that is any tag. A
/// whole tagged hex run in the needle also gives a [`Gate`] on the chunk's filter.
pub fn needle_queries(field: Field, needle: &str) -> (Vec<Box<dyn Query>>, Vec<Gate>) {
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
    let mut gates = Vec::new();
    for &(s, e) in &runs {
        let tok = &needle[s..e];
        if tok.len() > MAX_TOKEN_LEN {
            continue;
        }
        let (open_left, open_right) = (s == 0, e == needle.len());
        if tokens::is_tagged(tok) {
            gates.push(Gate::Hex {
                key: tokens::hex_key(tok),
                len: tok.len(),
                longer_ok: open_left || open_right,
            });
        }
        if let Some(c) = run_condition(field, tok, open_left, open_right) {
            conditions.push(c);
        }
    }
    if conditions.iter().any(|(rank, _)| *rank == 0) {
        let queries = conditions
            .into_iter()
            .filter(|(rank, _)| *rank == 0)
            .map(|(_, q)| q)
            .collect();
        return (queries, gates);
    }
    // A prefix walks a small part of the dictionary; suffix and infix walk all of it,
    // which still beats reading every line. One is enough to narrow the candidates.
    conditions.sort_by_key(|(rank, _)| *rank);
    let queries = conditions.into_iter().take(1).map(|(_, q)| q).collect();
    (queries, gates)
}

/// Rank of conditions that nearly every chunk meets (any long hex run): taken only when
/// nothing better is there; the gates do the narrowing.
const UNSELECTIVE: u8 = 4;

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
    if tokens::is_short_number(tok) {
        // The line token holding it may be a number too short to index.
        return None;
    }
    if !open_left && !open_right {
        // The line holds the run as a whole token.
        return Some(if tokens::is_tagged(tok) {
            (UNSELECTIVE, term(&tokens::tag(tok)))
        } else {
            (0, term(tok))
        });
    }
    let escaped = regex_escape(tok);
    let (mut rank, words) = match (open_left, open_right) {
        (false, _) => (1, format!("{escaped}.*")),
        (true, false) => (2, format!(".*{escaped}")),
        (true, true) => (3, format!(".*{escaped}.*")),
    };
    // The line token holding the run may be a word, a tagged hex run, or a run too long
    // to index (which the line's long-token mark stands for).
    let mut either = vec![words];
    if tokens::is_hex(tok) {
        let tags = match (open_left, open_right) {
            // It starts with the run: a tag at least as long (or 16).
            (false, _) => tokens::tags_pattern(tok.len()..=MAX_TOKEN_LEN),
            // A long run lies in a maximal hex run at least as long, tagged even inside
            // a word: the tags find every holder (and the gate narrows them), so the
            // costly walk of the dictionary for words holding the run is not needed.
            (true, _) if tok.len() >= MIN_TAGGED_LEN => {
                either.clear();
                tokens::tags_pattern(tok.len()..=MAX_TOKEN_LEN)
            }
            // Any tag could hold it: the index cannot narrow the read.
            _ => return None,
        };
        either.push(tags);
        rank = UNSELECTIVE;
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
            let (queries, gates) = needle_queries(f.line, needle);
            assert_eq!(queries.len(), 1, "{needle}");
            assert_eq!(gates.len(), usize::from(needle.len() > 12), "{needle}");
        }
        for len in [16, 32, 63, 64] {
            let tok = "a".repeat(len);
            for (l, r) in [(false, true), (true, false), (true, true)] {
                assert!(run_condition(f.line, &tok, l, r).is_some(), "{len} {l} {r}");
            }
        }
    }
}
