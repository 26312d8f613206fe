//! Where each value of cluster.yml sits in the file, so that a validation error found
//! after deserialisation can still point at its line and column.
//!
//! serde_yaml reports locations for syntax and type errors only; for the checks we make
//! afterwards (duplicate address, unknown role, bad duration) we re-read the file with
//! yaml-rust2's event parser, which carries a marker on every event, and record the span
//! of every scalar, mapping and sequence under its dotted path (`nodes[1].address`).

use miette::SourceSpan;
use std::collections::HashMap;
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

/// How deeply cluster.yml may nest (its real structure is a handful of levels).
pub const MAX_DEPTH: usize = 64;

/// The document nests deeper than [`MAX_DEPTH`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooDeep {
    /// Byte offset where the limit was crossed.
    pub offset: usize,
}

/// Spans of values by path, e.g. `services.etcd.creation` or `nodes[0].role[1]`.
#[derive(Debug, Default)]
pub struct SpanIndex {
    values: HashMap<String, SourceSpan>,
    keys: HashMap<String, SourceSpan>,
}

impl SpanIndex {
    /// Indexes `source`; a file that does not parse yields an empty index.
    ///
    /// Events are pulled one at a time (yaml-rust2's `load` recurses per nesting level), and
    /// a document nested deeper than [`MAX_DEPTH`] is reported instead of indexed: no
    /// cluster.yml needs it, and a recursive reader would overflow its stack on it.
    pub fn build(source: &str) -> Result<Self, TooDeep> {
        let mut builder =
            Builder { line_starts: line_starts(source), source, stack: Vec::new(), index: SpanIndex::default() };
        let mut parser = Parser::new_from_str(source);
        loop {
            match parser.next_token() {
                Ok((Event::StreamEnd, _)) | Err(_) => break,
                Ok((ev, mark)) => {
                    builder.on_event(ev, mark);
                    if builder.stack.len() > MAX_DEPTH {
                        return Err(TooDeep { offset: builder.offset(&mark).min(source.len()) });
                    }
                }
            }
        }
        Ok(builder.index)
    }

    /// The span of the value at `path`, or of the closest parent that exists.
    pub fn value(&self, path: &str) -> Option<SourceSpan> {
        let mut p = path;
        loop {
            if let Some(s) = self.values.get(p) {
                return Some(*s);
            }
            p = parent(p)?;
        }
    }

    /// The span of the key that introduces `path` (falls back to the value's span).
    pub fn key(&self, path: &str) -> Option<SourceSpan> {
        self.keys.get(path).copied().or_else(|| self.value(path))
    }
}

fn parent(path: &str) -> Option<&str> {
    let cut = path.rfind(['.', '['])?;
    Some(&path[..cut])
}

enum Frame {
    Map { path: String, pending_key: Option<(String, SourceSpan)>, expecting_key: bool },
    Seq { path: String, next: usize },
}

struct Builder<'a> {
    source: &'a str,
    line_starts: Vec<usize>,
    stack: Vec<Frame>,
    index: SpanIndex,
}

fn line_starts(s: &str) -> Vec<usize> {
    std::iter::once(0).chain(s.match_indices('\n').map(|(i, _)| i + 1)).collect()
}

impl Builder<'_> {
    /// Byte offset of a marker; yaml-rust2 counts characters, miette wants bytes.
    fn offset(&self, m: &Marker) -> usize {
        let line = m.line().saturating_sub(1);
        let start = *self.line_starts.get(line).unwrap_or(&self.source.len());
        let rest = &self.source[start..];
        let col = rest.char_indices().nth(m.col()).map(|(i, _)| i).unwrap_or(rest.len());
        start + col
    }

    /// The path the next value gets, and whether it is a mapping key.
    fn next_slot(&mut self) -> Option<(String, bool)> {
        match self.stack.last_mut()? {
            Frame::Map { path, pending_key, expecting_key } => {
                if *expecting_key {
                    Some((path.clone(), true))
                } else {
                    let (k, _) = pending_key.as_ref()?;
                    Some((join_key(path, k), false))
                }
            }
            Frame::Seq { path, next } => {
                let p = format!("{path}[{next}]");
                *next += 1;
                Some((p, false))
            }
        }
    }

    fn value_done(&mut self) {
        if let Some(Frame::Map { pending_key, expecting_key, .. }) = self.stack.last_mut() {
            *pending_key = None;
            *expecting_key = true;
        }
    }

    fn record_value(&mut self, path: String, span: SourceSpan) {
        if let Some(Frame::Map { pending_key: Some((_, kspan)), .. }) = self.stack.last() {
            self.index.keys.insert(path.clone(), *kspan);
        }
        self.index.values.insert(path, span);
    }
}

fn join_key(path: &str, key: &str) -> String {
    if path.is_empty() { key.to_string() } else { format!("{path}.{key}") }
}

impl MarkedEventReceiver for Builder<'_> {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        let start = self.offset(&mark);
        match ev {
            Event::Scalar(text, ..) => {
                let len = text.len().max(1);
                let span = SourceSpan::new(start.into(), len);
                match self.next_slot() {
                    Some((_, true)) => {
                        if let Some(Frame::Map { pending_key, expecting_key, .. }) = self.stack.last_mut() {
                            *pending_key = Some((text, span));
                            *expecting_key = false;
                        }
                    }
                    Some((path, false)) => {
                        self.record_value(path, span);
                        self.value_done();
                    }
                    None => {}
                }
            }
            Event::MappingStart(..) | Event::SequenceStart(..) => {
                let is_map = matches!(ev, Event::MappingStart(..));
                let path = match self.next_slot() {
                    Some((p, false)) => {
                        self.record_value(p.clone(), SourceSpan::new(start.into(), 1));
                        p
                    }
                    // A complex key: not something cluster.yml uses; index under a dummy.
                    Some((p, true)) => format!("{p}.?"),
                    None => String::new(),
                };
                self.stack.push(if is_map {
                    Frame::Map { path, pending_key: None, expecting_key: true }
                } else {
                    Frame::Seq { path, next: 0 }
                });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
                self.value_done();
            }
            Event::Alias(_) => {
                if let Some((path, false)) = self.next_slot() {
                    self.record_value(path, SourceSpan::new(start.into(), 1));
                    self.value_done();
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_nested_values_by_path() {
        let src = "nodes:\n  - address: 10.0.0.1\n    role: [etcd, master]\nservices:\n  etcd:\n    creation: 5x\n";
        let idx = SpanIndex::build(src).unwrap();
        let at = |p: &str| {
            let s = idx.value(p).unwrap();
            &src[s.offset()..s.offset() + s.len()]
        };
        assert_eq!(at("nodes[0].address"), "10.0.0.1");
        assert_eq!(at("nodes[0].role[1]"), "master");
        assert_eq!(at("services.etcd.creation"), "5x");
        let k = idx.key("services.etcd.creation").unwrap();
        assert_eq!(&src[k.offset()..k.offset() + k.len()], "creation");
        // A missing leaf falls back to its parent.
        assert_eq!(idx.value("services.etcd.retention"), idx.value("services.etcd"));
    }

    #[test]
    fn deep_nesting_is_refused_not_recursed_into() {
        let src = format!("foo:\n  {}x\n", "- ".repeat(5000));
        assert!(SpanIndex::build(&src).is_err());
    }
}
