//! How a line becomes index terms.
//!
//! A line is cut into alphanumeric runs (LogQL's `|=` is case-sensitive, so runs keep
//! their case). Runs longer than [`MAX_TOKEN_LEN`] are not indexed: the line gets a mark
//! instead, which searches for part of such a run read. Long hex runs — trace
//! and span ids, hashes — are nearly all unique: indexed whole, they filled most of the
//! term dictionary, and merging segments rewrote them again and again. Such a run is
//! indexed as a *tag* instead, its length alone, and the chunk's Bloom filter (see
//! [`crate::bloom`]) holds the run itself: a search for an id reads the chunks whose
//! filter may hold it and confirms each line.

use std::fmt::Write as _;

/// Tokens longer than this are not indexed (long base64 payloads and the like): they would
/// bloat the term dictionary for searches nobody types.
pub const MAX_TOKEN_LEN: usize = 64;
/// Hex runs at least this long are indexed by tag (a 64-bit span id is 16 characters).
pub const MIN_TAGGED_LEN: usize = 16;
/// Starts every tag; the tokenizer never yields it, so tags and words cannot collide.
const TAG_MARK: char = '\u{1}';
/// The term a line gets for each run too long to index, so that a search for part of such
/// a run knows which lines to read.
pub const LONG_TOKEN_MARK: &str = "\u{2}";

/// Digit-only runs shorter than this are not indexed: a chunk holds thousands of lines, so
/// nearly every chunk has any given number of up to four digits (status codes, ports,
/// durations) and the index would narrow nothing, at the cost of a posting per chunk
/// and number.
pub const MIN_INDEXED_DIGITS: usize = 5;

/// Whether `run` is a number too short to index.
pub fn is_short_number(run: &str) -> bool {
    run.len() < MIN_INDEXED_DIGITS && run.bytes().all(|b| b.is_ascii_digit())
}

pub fn is_hex(s: &str) -> bool {
    s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Whether the index stores `run` (a whole alphanumeric run of a line) as a tag.
pub fn is_tagged(run: &str) -> bool {
    (MIN_TAGGED_LEN..=MAX_TOKEN_LEN).contains(&run.len()) && is_hex(run)
}

/// The tag of a tagged hex run.
pub fn tag(run: &str) -> String {
    let mut out = String::new();
    if let Some(t) = term_of(run) {
        write_term(&mut out, t);
    }
    out
}

/// A regular expression over the term dictionary matching the tags of hex runs whose
/// length is in `lengths`.
pub fn tags_pattern(lengths: std::ops::RangeInclusive<usize>) -> String {
    let lengths: Vec<String> = (*lengths.start().max(&MIN_TAGGED_LEN)..=*lengths.end())
        .map(|len| format!("{len:02}"))
        .collect();
    format!("\\x{:02x}(?:{})", u32::from(TAG_MARK), lengths.join("|"))
}

/// The Bloom filter key of a hex run (case kept, as searches are case-sensitive).
pub fn hex_key(run: &str) -> u64 {
    xxhash_rust::xxh3::xxh3_64_with_seed(run.as_bytes(), 0x0068_6578)
}

/// The Bloom filter key of a line's trace id.
pub fn trace_key(trace: &[u8; 16]) -> u64 {
    xxhash_rust::xxh3::xxh3_64_with_seed(trace, 0x7472_6163)
}

/// The alphanumeric runs of `text` (maximal runs of chars for which
/// `char::is_alphanumeric` holds), as byte ranges. ASCII is decided byte by byte; other
/// characters are decoded.
pub fn runs(text: &str) -> impl Iterator<Item = (usize, usize)> + '_ {
    let bytes = text.as_bytes();
    let mut pos = 0;
    // (is the char at `at` alphanumeric, its byte length)
    let class = move |at: usize| -> (bool, usize) {
        let b = bytes[at];
        if b < 0x80 {
            (b.is_ascii_alphanumeric(), 1)
        } else {
            let c = text[at..].chars().next().unwrap_or(' ');
            (c.is_alphanumeric(), c.len_utf8())
        }
    };
    std::iter::from_fn(move || {
        while pos < bytes.len() {
            let (alnum, n) = class(pos);
            if alnum {
                break;
            }
            pos += n;
        }
        if pos >= bytes.len() {
            return None;
        }
        let start = pos;
        while pos < bytes.len() {
            let (alnum, n) = class(pos);
            if !alnum {
                break;
            }
            pos += n;
        }
        Some((start, pos))
    })
}

/// The maximal hex runs of at least [`MIN_TAGGED_LEN`] characters inside `word`.
fn hex_runs(word: &str) -> impl Iterator<Item = (usize, usize)> + '_ {
    let b = word.as_bytes();
    let mut pos = 0;
    std::iter::from_fn(move || {
        while pos < b.len() {
            let start = pos;
            while pos < b.len() && b[pos].is_ascii_hexdigit() {
                pos += 1;
            }
            if pos - start >= MIN_TAGGED_LEN {
                return Some((start, pos));
            }
            pos += 1;
        }
        None
    })
}

/// One index term of a line.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum Term<'a> {
    Word(&'a str),
    /// A tagged hex run: its length.
    Tag(u8),
    LongRun,
}

/// The term of a run; `None` for runs not indexed.
fn term_of(run: &str) -> Option<Term<'_>> {
    Some(if run.len() > MAX_TOKEN_LEN {
        Term::LongRun
    } else if is_tagged(run) {
        Term::Tag(run.len() as u8)
    } else if is_short_number(run) {
        return None;
    } else {
        Term::Word(run)
    })
}

fn write_term(out: &mut String, t: Term<'_>) {
    match t {
        Term::Word(w) => out.push_str(w),
        Term::Tag(len) => {
            let _ = write!(out, "{TAG_MARK}{len:02}");
        }
        Term::LongRun => out.push_str(LONG_TOKEN_MARK),
    }
}

/// The index terms of one line, in order.
#[cfg(test)]
fn line_terms(line: &str) -> Vec<String> {
    runs(line)
        .filter_map(|(a, b)| term_of(&line[a..b]))
        .map(|t| {
            let mut s = String::new();
            write_term(&mut s, t);
            s
        })
        .collect()
}

/// Collects the distinct terms of many lines (a chunk): the index keeps one document per
/// chunk, so a term repeated on every line is indexed once.
#[derive(Default)]
pub struct ChunkTerms<'a> {
    seen: hashbrown::HashSet<Term<'a>>,
    /// Distinct tagged hex runs, whole or inside words (for the Bloom filter).
    pub hex_runs: hashbrown::HashSet<&'a str>,
    /// Length of the longest of them.
    pub max_hex_len: usize,
    /// Whether some run was too long to index.
    pub long_runs: bool,
}

impl<'a> ChunkTerms<'a> {
    pub fn add_line(&mut self, line: &'a str) {
        for (a, b) in runs(line) {
            let run = &line[a..b];
            match term_of(run) {
                Some(Term::Word(w)) => {
                    self.seen.insert(Term::Word(w));
                    // A word holding a long hex run ("x" + an id) also gets the run's
                    // tag and filter key: then a search for a long hex needle needs no
                    // walk of the whole term dictionary for words that hold it.
                    if w.len() > MIN_TAGGED_LEN {
                        for (s, e) in hex_runs(w) {
                            if let Some(t) = term_of(&w[s..e]) {
                                self.seen.insert(t);
                                self.add_hex(&w[s..e]);
                            }
                        }
                    }
                }
                Some(t @ Term::Tag(_)) => {
                    self.seen.insert(t);
                    self.add_hex(run);
                }
                Some(t) => {
                    self.long_runs |= t == Term::LongRun;
                    self.seen.insert(t);
                }
                None => {}
            }
        }
    }

    fn add_hex(&mut self, run: &'a str) {
        self.max_hex_len = self.max_hex_len.max(run.len());
        self.hex_runs.insert(run);
    }

    /// The terms, separated by spaces (the term field's tokenizer splits on ASCII
    /// whitespace, which no term contains).
    pub fn joined(&self) -> String {
        let mut out = String::with_capacity(self.seen.len() * 8);
        for &t in &self.seen {
            write_term(&mut out, t);
            out.push(' ');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn terms(line: &str) -> Vec<String> {
        line_terms(line)
    }

    #[test]
    fn words_stay_whole_and_long_hex_runs_become_tags() {
        let long = "x".repeat(MAX_TOKEN_LEN + 1);
        let line = format!(
            "GET /api/v1 trace_id=4bf92f3577b34da6a3ce929d0e0e4736 span=00f067aa0ba902b7 \
             short=cafe12 {long} Größe"
        );
        assert_eq!(
            terms(&line),
            vec![
                "GET".to_string(),
                "api".into(),
                "v1".into(),
                "trace".into(),
                "id".into(),
                tag("4bf92f3577b34da6a3ce929d0e0e4736"),
                "span".into(),
                tag("00f067aa0ba902b7"),
                "short".into(),
                "cafe12".into(),
                LONG_TOKEN_MARK.into(),
                "Größe".into(),
            ]
        );
    }

    #[test]
    fn tag_patterns_cover_the_lengths_asked_for() {
        assert_eq!(tags_pattern(60..=MAX_TOKEN_LEN), "\\x01(?:60|61|62|63|64)");
        assert!(tags_pattern(1..=MAX_TOKEN_LEN).starts_with("\\x01(?:16|17|"));
    }
}
