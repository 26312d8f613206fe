//! Where each value of cluster.yml sits in the file, so that a validation error found
//! after deserialisation can still point at its line and column.
//!
//! The serde reading reports locations for syntax and type errors only; for the checks we
//! make afterwards (duplicate address, unknown role, bad duration) we read the file's events
//! from the same parser ([`super::yaml::Events`], each with its byte offset), and record the
//! span of every scalar, mapping and sequence under its dotted path (`nodes[1].address`).

use super::yaml::{Event, Events, Marked};
use miette::SourceSpan;
use std::collections::HashMap;

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
    /// Events are pulled one at a time, and a document nested deeper than [`MAX_DEPTH`] is
    /// reported instead of indexed: no cluster.yml needs it, and a recursive reader (a
    /// deserialiser, a merge) would overflow its stack on it.
    pub fn build(source: &str) -> Result<Self, TooDeep> {
        let mut builder = Builder { source, stack: Vec::new(), index: SpanIndex::default() };
        for marked in Events::new(source) {
            let offset = builder.on_event(marked);
            if builder.stack.len() > MAX_DEPTH {
                return Err(TooDeep { offset: offset.min(source.len()) });
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
    Map {
        path: String,
        pending_key: Option<(String, SourceSpan)>,
        expecting_key: bool,
        /// A block mapping's own path until its first key is read: it is pointed at that
        /// key's `:` (where the mapping's first `key:` pair is known to be one).
        at_first_colon: Option<String>,
    },
    Seq {
        path: String,
        next: usize,
    },
}

/// Where a node's content starts: after the anchor (`&name`) and tag (`!tag`) that open it,
/// and the blanks and comments after them. Pointing there is what diagnostics always did.
fn content_start(source: &str, m: &Marked) -> usize {
    if !m.props {
        return m.start;
    }
    let bytes = source.as_bytes();
    let mut i = m.start.min(bytes.len());
    loop {
        match bytes.get(i) {
            // libyaml's anchor names are letters, digits, `-` and `_`; a tag runs to a blank.
            Some(b'&') => {
                i += 1;
                while bytes.get(i).is_some_and(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_')) {
                    i += 1;
                }
            }
            Some(b'!') => {
                while bytes.get(i).is_some_and(|b| !b.is_ascii_whitespace()) {
                    i += 1;
                }
            }
            Some(b' ' | b'\t' | b'\r' | b'\n') => i += 1,
            Some(b'#') => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
            }
            _ => return i.min(m.end.max(m.start)),
        }
    }
}

/// The `:` after a mapping key that ends at `end`, if the text has one there.
fn colon_after(source: &str, end: usize) -> Option<usize> {
    let rest = source.get(end..)?;
    let at = end + rest.len() - rest.trim_start_matches([' ', '\t']).len();
    (source.as_bytes().get(at) == Some(&b':')).then_some(at)
}

struct Builder<'a> {
    source: &'a str,
    stack: Vec<Frame>,
    index: SpanIndex,
}

impl Builder<'_> {
    /// The path the next value gets, and whether it is a mapping key.
    fn next_slot(&mut self) -> Option<(String, bool)> {
        match self.stack.last_mut()? {
            Frame::Map { path, pending_key, expecting_key, .. } => {
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

impl Builder<'_> {
    /// Indexes one event; returns the offset it is pointed at.
    fn on_event(&mut self, m: Marked) -> usize {
        let start = content_start(self.source, &m);
        match m.event {
            Event::Scalar(text) => {
                let len = text.len().max(1);
                let span = SourceSpan::new(start.into(), len);
                match self.next_slot() {
                    Some((_, true)) => {
                        let colon = colon_after(self.source, m.end);
                        if let Some(Frame::Map { pending_key, expecting_key, at_first_colon, .. }) =
                            self.stack.last_mut()
                        {
                            *pending_key = Some((text, span));
                            *expecting_key = false;
                            if let (Some(path), Some(colon)) = (at_first_colon.take(), colon) {
                                self.index.values.insert(path, SourceSpan::new(colon.into(), 1));
                            }
                        }
                    }
                    Some((path, false)) => {
                        self.record_value(path, span);
                        self.value_done();
                    }
                    None => {}
                }
            }
            Event::MappingStart { .. } | Event::SequenceStart => {
                let (path, recorded) = match self.next_slot() {
                    Some((p, false)) => {
                        self.record_value(p.clone(), SourceSpan::new(start.into(), 1));
                        (p, true)
                    }
                    // A complex key: not something cluster.yml uses; index under a dummy.
                    Some((p, true)) => {
                        self.first_key_is_not_a_scalar();
                        (format!("{p}.?"), false)
                    }
                    None => (String::new(), false),
                };
                self.stack.push(match m.event {
                    Event::MappingStart { block } => Frame::Map {
                        at_first_colon: (block && recorded).then(|| path.clone()),
                        path,
                        pending_key: None,
                        expecting_key: true,
                    },
                    _ => Frame::Seq { path, next: 0 },
                });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
                self.value_done();
            }
            Event::Alias => match self.next_slot() {
                Some((path, false)) => {
                    self.record_value(path, SourceSpan::new(start.into(), 1));
                    self.value_done();
                }
                Some((_, true)) => self.first_key_is_not_a_scalar(),
                None => {}
            },
            Event::Other => {}
        }
        start
    }

    /// A mapping whose first key is a collection or an alias keeps its own start.
    fn first_key_is_not_a_scalar(&mut self) {
        if let Some(Frame::Map { at_first_colon, .. }) = self.stack.last_mut() {
            *at_first_colon = None;
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
    fn a_block_mapping_is_pointed_at_its_first_colon_an_anchored_value_at_its_content() {
        let src =
            "x: &args {a: '1'}\nnodes:\n  - &node\n    address: a\n  - <<: *node\n  - [b]\ny: &s # c\n  !!str z\n";
        let idx = SpanIndex::build(src).unwrap();
        let at = |p: &str| idx.value(p).unwrap().offset();
        assert_eq!(at("nodes[0]"), src.find(": a").unwrap(), "the `:` after `address`");
        assert_eq!(at("nodes[1]"), src.find(": *node").unwrap());
        assert_eq!(at("x"), src.find('{').unwrap(), "a flow mapping at its brace, after the anchor");
        assert_eq!(at("nodes[2]"), src.find("[b]").unwrap());
        assert_eq!(at("y"), src.find('z').unwrap(), "after the anchor, a comment and the tag");
    }

    #[test]
    fn deep_nesting_is_refused_not_recursed_into() {
        let src = format!("foo:\n  {}x\n", "- ".repeat(5000));
        assert!(SpanIndex::build(&src).is_err());
    }
}
