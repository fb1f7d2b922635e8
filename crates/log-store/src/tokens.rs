//! How a line becomes index terms.
//!
//! A line is cut into alphanumeric runs (LogQL's `|=` is case-sensitive, so runs keep
//! their case). Runs longer than [`MAX_TOKEN_LEN`] are not indexed: the line gets a mark
//! instead, which searches for part of such a run read. Long hex runs — trace
//! and span ids, hashes — are nearly all unique: indexed whole, they filled most of the
//! term dictionary and most of the indexing time for searches that are rare. Such a run
//! is indexed as a *tag* instead: its length and first four characters. A search for an
//! id reads the few lines that share its tag and confirms each on the line itself.

use std::fmt::Write as _;

use tantivy::tokenizer::{Token, TokenStream, Tokenizer};

/// Tokens longer than this are not indexed (long base64 payloads and the like): they would
/// bloat the term dictionary for searches nobody types.
pub const MAX_TOKEN_LEN: usize = 64;
/// Hex runs at least this long are indexed by tag (a 64-bit span id is 16 characters).
pub const MIN_TAGGED_LEN: usize = 16;
/// Characters of a hex run kept in its tag: 16 bits, so a tag is shared by about one run
/// in 65,536 of the same length.
pub const TAG_PREFIX: usize = 4;
/// Starts every tag; the tokenizer never yields it, so tags and words cannot collide.
const TAG_MARK: char = '\u{1}';
/// The term a line gets for each run too long to index, so that a search for part of such
/// a run knows which lines to read.
pub const LONG_TOKEN_MARK: &str = "\u{2}";

pub fn is_hex(s: &str) -> bool {
    s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Whether the index stores `run` (a whole alphanumeric run of a line) as a tag.
pub fn is_tagged(run: &str) -> bool {
    (MIN_TAGGED_LEN..=MAX_TOKEN_LEN).contains(&run.len()) && is_hex(run)
}

/// The tag of a tagged hex run, which starts with `run[..TAG_PREFIX]`.
pub fn tag(run: &str) -> String {
    let mut out = String::new();
    write_tag(&mut out, run);
    out
}

fn write_tag(out: &mut String, run: &str) {
    // Writing into a String cannot fail.
    let _ = write!(out, "{TAG_MARK}{:02}{}", run.len(), &run[..TAG_PREFIX]);
}

/// A regular expression over the term dictionary matching the tags of hex runs whose
/// length is in `lengths`, with `prefix` when given.
pub fn tags_pattern(lengths: std::ops::RangeInclusive<usize>, prefix: Option<&str>) -> String {
    // Hex classes, not `.`: the term-dictionary automaton has a state limit that any
    // Unicode character blows.
    let body = prefix.map_or_else(|| format!("[0-9A-Fa-f]{{{TAG_PREFIX}}}"), str::to_string);
    let lengths: Vec<String> = (*lengths.start().max(&MIN_TAGGED_LEN)..=*lengths.end())
        .map(|len| format!("{len:02}"))
        .collect();
    format!(
        "\\x{:02x}(?:{}){body}",
        u32::from(TAG_MARK),
        lengths.join("|")
    )
}

/// The tokenizer registered for the line field.
#[derive(Clone, Default)]
pub struct LineTokenizer {
    token: Token,
}

pub struct LineTokens<'a> {
    text: &'a str,
    pos: usize,
    token: &'a mut Token,
}

impl Tokenizer for LineTokenizer {
    type TokenStream<'a> = LineTokens<'a>;
    fn token_stream<'a>(&'a mut self, text: &'a str) -> LineTokens<'a> {
        self.token.reset();
        LineTokens {
            text,
            pos: 0,
            token: &mut self.token,
        }
    }
}

impl LineTokens<'_> {
    /// The next alphanumeric run at or after `self.pos`, as byte offsets.
    fn next_run(&mut self) -> Option<(usize, usize)> {
        let rest = &self.text[self.pos..];
        let mut chars = rest.char_indices();
        let start = loop {
            let (i, c) = chars.next()?;
            if c.is_alphanumeric() {
                break i;
            }
        };
        let end = chars
            .find(|(_, c)| !c.is_alphanumeric())
            .map_or(rest.len(), |(i, _)| i);
        self.pos += end;
        Some((self.pos - end + start, self.pos))
    }
}

impl TokenStream for LineTokens<'_> {
    fn advance(&mut self) -> bool {
        let Some((from, to)) = self.next_run() else {
            return false;
        };
        let run = &self.text[from..to];
        self.token.text.clear();
        if run.len() > MAX_TOKEN_LEN {
            self.token.text.push_str(LONG_TOKEN_MARK);
        } else if is_tagged(run) {
            write_tag(&mut self.token.text, run);
        } else {
            self.token.text.push_str(run);
        }
        self.token.offset_from = from;
        self.token.offset_to = to;
        self.token.position = self.token.position.wrapping_add(1);
        true
    }

    fn token(&self) -> &Token {
        self.token
    }

    fn token_mut(&mut self) -> &mut Token {
        self.token
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn terms(line: &str) -> Vec<String> {
        let mut t = LineTokenizer::default();
        let mut s = t.token_stream(line);
        let mut out = Vec::new();
        while s.advance() {
            out.push(s.token().text.clone());
        }
        out
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
        assert_eq!(
            tags_pattern(60..=MAX_TOKEN_LEN, Some("abcd")),
            "\\x01(?:60|61|62|63|64)abcd"
        );
        assert!(tags_pattern(1..=MAX_TOKEN_LEN, None).starts_with("\\x01(?:16|17|"));
        assert!(tags_pattern(1..=MAX_TOKEN_LEN, None).ends_with("|64)[0-9A-Fa-f]{4}"));
    }
}
