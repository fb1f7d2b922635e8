//! Label matchers with Prometheus semantics.

use regex::Regex;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MatchOp {
    Equal,
    NotEqual,
    Regex,
    NotRegex,
}

impl MatchOp {
    pub fn as_str(self) -> &'static str {
        match self {
            MatchOp::Equal => "=",
            MatchOp::NotEqual => "!=",
            MatchOp::Regex => "=~",
            MatchOp::NotRegex => "!~",
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("invalid regular expression {pattern:?} in matcher for label {name:?}: {source}")]
pub struct MatcherError {
    pub name: String,
    pub pattern: String,
    #[source]
    pub source: regex::Error,
}

/// One `name op "value"` condition. A series without the label behaves as if it had the
/// label with an empty value, so `foo=""` selects series that lack `foo` and `foo!="x"`
/// selects them too — exactly as in Prometheus.
#[derive(Clone, Debug)]
pub struct Matcher {
    pub name: String,
    pub op: MatchOp,
    pub value: String,
    regex: Option<Regex>,
}

impl Matcher {
    pub fn new(
        op: MatchOp,
        name: impl Into<String>,
        value: impl Into<String>,
    ) -> Result<Self, MatcherError> {
        let name = name.into();
        let value = value.into();
        let regex = match op {
            MatchOp::Regex | MatchOp::NotRegex => {
                // Prometheus 2.x anchors the whole expression; `.` does not match newline.
                let anchored = format!("^(?:{value})$");
                Some(Regex::new(&anchored).map_err(|source| MatcherError {
                    name: name.clone(),
                    pattern: value.clone(),
                    source,
                })?)
            }
            _ => None,
        };
        Ok(Matcher {
            name,
            op,
            value,
            regex,
        })
    }

    pub fn equal(name: impl Into<String>, value: impl Into<String>) -> Self {
        Matcher {
            name: name.into(),
            op: MatchOp::Equal,
            value: value.into(),
            regex: None,
        }
    }

    /// Whether a label value (`""` for an absent label) satisfies the matcher.
    pub fn matches(&self, value: &str) -> bool {
        match self.op {
            MatchOp::Equal => value == self.value,
            MatchOp::NotEqual => value != self.value,
            MatchOp::Regex => self.regex.as_ref().is_some_and(|r| r.is_match(value)),
            MatchOp::NotRegex => !self.regex.as_ref().is_some_and(|r| r.is_match(value)),
        }
    }

    /// Whether series lacking the label are selected; decides if an index lookup must
    /// start from "all series" and subtract.
    pub fn matches_empty(&self) -> bool {
        self.matches("")
    }

    /// For `=~` matchers that are a plain alternation of literals (`a|b|c`), the
    /// literals, so the index can look them up directly instead of scanning values.
    pub fn set_matches(&self) -> Option<Vec<String>> {
        if self.op != MatchOp::Regex {
            return None;
        }
        let special = |c: char| "\\.+*?()[]{}^$".contains(c);
        if self.value.chars().any(special) {
            return None;
        }
        Some(self.value.split('|').map(str::to_owned).collect())
    }
}

impl std::fmt::Display for Matcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}{}{:?}", self.name, self.op.as_str(), self.value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regex_is_anchored() {
        let m = Matcher::new(MatchOp::Regex, "job", "api").unwrap();
        assert!(m.matches("api"));
        assert!(!m.matches("api-server"));
        let m = Matcher::new(MatchOp::Regex, "job", "a|b").unwrap();
        assert!(m.matches("b") && !m.matches("ab"));
    }

    #[test]
    fn absent_label_matches_empty() {
        assert!(Matcher::equal("x", "").matches_empty());
        assert!(
            Matcher::new(MatchOp::NotEqual, "x", "y")
                .unwrap()
                .matches_empty()
        );
        assert!(
            !Matcher::new(MatchOp::Regex, "x", ".+")
                .unwrap()
                .matches_empty()
        );
        assert!(
            Matcher::new(MatchOp::NotRegex, "x", ".+")
                .unwrap()
                .matches_empty()
        );
    }

    #[test]
    fn bad_regex_names_the_label() {
        let err = Matcher::new(MatchOp::Regex, "route", "(").unwrap_err();
        assert!(err.to_string().contains("route"));
    }

    #[test]
    fn set_matches_only_for_literal_alternations() {
        let m = Matcher::new(MatchOp::Regex, "a", "x|y").unwrap();
        assert_eq!(m.set_matches(), Some(vec!["x".into(), "y".into()]));
        assert_eq!(
            Matcher::new(MatchOp::Regex, "a", "x.*")
                .unwrap()
                .set_matches(),
            None
        );
    }
}
