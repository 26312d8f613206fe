//! Pointing a problem at its place in cluster.yml: span, line and column from a key path or
//! a byte offset, always inside the text and on character boundaries.

use super::ConfigProblem;
use super::spans::SpanIndex;
use miette::SourceSpan;

/// A span covering the one character at (or just before) `offset`, inside `text`.
pub(super) fn char_span(text: &str, offset: usize) -> SourceSpan {
    let mut o = offset.min(text.len());
    while !text.is_char_boundary(o) {
        o -= 1;
    }
    let width = text[o..].chars().next().map_or(0, char::len_utf8);
    SourceSpan::new(o.into(), width)
}

/// `span` cut to lie inside `text` and on character boundaries (decoded scalars can be
/// shorter than their quoted source, or longer).
fn clamp_span(text: &str, span: SourceSpan) -> SourceSpan {
    let start = char_span(text, span.offset()).offset();
    let mut end = (span.offset() + span.len()).min(text.len()).max(start);
    while !text.is_char_boundary(end) {
        end += 1;
    }
    SourceSpan::new(start.into(), end - start)
}

/// 1-based line and column (in characters) of a byte offset.
pub(super) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

/// Places problems in one cluster.yml: its text, and where each key path is in it.
pub(super) struct Locator<'a> {
    pub(super) source: &'a str,
    pub(super) spans: &'a SpanIndex,
}

impl Locator<'_> {
    /// A problem pointing at the value at `path`.
    pub(super) fn at(&self, path: &str, message: String, label: &str, help: Option<String>) -> ConfigProblem {
        self.make(self.spans.value(path), message, label, help)
    }

    /// A problem pointing at the key of `path`: for a key that should not be there, or a
    /// mapping that lacks one.
    pub(super) fn at_key(&self, path: &str, message: String, label: &str, help: Option<String>) -> ConfigProblem {
        self.make(self.spans.key(path), message, label, help)
    }

    /// A problem pointing at `span`, or at nothing.
    pub(super) fn make(
        &self,
        span: Option<SourceSpan>,
        message: String,
        label: &str,
        help: Option<String>,
    ) -> ConfigProblem {
        let span = span.map(|s| clamp_span(self.source, s));
        let (line, column) = match span {
            Some(s) => {
                let (l, c) = line_col(self.source, s.offset());
                (Some(l), Some(c))
            }
            None => (None, None),
        };
        ConfigProblem { message, span, label: label.to_string(), help, line, column }
    }
}
