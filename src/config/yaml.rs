//! The one YAML parser of rkectl: libyaml (the YAML organization's Rust port, `libyaml-rs`),
//! read through its serde layer (`yaml_serde`, the maintained serde_yaml) for values, and
//! through its event stream for where each value sits in the text ([`Events`], for
//! [`super::spans`]). Both readings are the same parser's, so the places always agree with
//! the values and with the errors' locations.
//!
//! Nothing outside `config/` names a YAML crate: the plan templates and the CLI's questions
//! about cluster.yml come through here.

use std::marker::PhantomData;
use std::mem::MaybeUninit;

use libyaml_rs as sys;
pub use yaml_serde::value::TaggedValue;
pub use yaml_serde::{Error, Mapping, Value, from_str, from_value, to_string};

/// What the parser met, as the span index needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A scalar, with its decoded text (a key or a value).
    Scalar(String),
    /// A mapping begins: in block style (`key: value` lines) or flow style (`{…}`).
    MappingStart {
        /// Block style.
        block: bool,
    },
    /// A sequence begins.
    SequenceStart,
    /// The innermost mapping ends.
    MappingEnd,
    /// The innermost sequence ends.
    SequenceEnd,
    /// `*anchor`: a value written elsewhere.
    Alias,
    /// Stream and document boundaries.
    Other,
}

/// An event and the bytes of the text it was read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Marked {
    /// The event.
    pub event: Event,
    /// Byte offset where it starts.
    pub start: usize,
    /// Byte offset just after it.
    pub end: usize,
    /// Whether a node's anchor (`&name`) or tag (`!tag`) opens it (and so is at `start`).
    pub props: bool,
}

/// libyaml's events over a text, with where each is; they end at the end of the stream or
/// at the first syntax error (which the serde reading reports).
pub struct Events<'a> {
    // Boxed: libyaml's parser must not move once initialised.
    parser: Box<MaybeUninit<sys::yaml_parser_t>>,
    done: bool,
    // libyaml reads `text` in place, by pointer.
    _text: PhantomData<&'a str>,
}

impl<'a> Events<'a> {
    /// A parser over `text`.
    pub fn new(text: &'a str) -> Self {
        let mut parser = Box::new(MaybeUninit::<sys::yaml_parser_t>::uninit());
        let p = parser.as_mut_ptr();
        // SAFETY: `p` points to memory for a parser, which yaml_parser_initialize fills
        // (it fails only when it cannot allocate); the input pointer and length are
        // `text`'s, which outlives the parser (`_text`).
        unsafe {
            assert!(sys::yaml_parser_initialize(p).ok, "libyaml could not allocate its parser");
            sys::yaml_parser_set_encoding(p, sys::YAML_UTF8_ENCODING);
            sys::yaml_parser_set_input_string(p, text.as_ptr(), text.len() as u64);
        }
        Events { parser, done: false, _text: PhantomData }
    }
}

impl Iterator for Events<'_> {
    type Item = Marked;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let p = self.parser.as_mut_ptr();
        let mut event = MaybeUninit::<sys::yaml_event_t>::uninit();
        let e = event.as_mut_ptr();
        // SAFETY: the parser was initialised in `new`. yaml_parser_parse fills `event` when it
        // succeeds; its scalar data is read as the event type says, copied out, and the
        // event freed before returning.
        let marked = unsafe {
            // Stopped at the first error: libyaml would answer every later call with no event.
            if !sys::yaml_parser_parse(p, e).ok {
                self.done = true;
                return None;
            }
            let mut props = false;
            let kind = match (*e).type_ {
                sys::YAML_SCALAR_EVENT => {
                    let s = (*e).data.scalar;
                    props = !s.anchor.is_null() || !s.tag.is_null();
                    let bytes = std::slice::from_raw_parts(s.value, s.length as usize);
                    Event::Scalar(String::from_utf8_lossy(bytes).into_owned())
                }
                sys::YAML_MAPPING_START_EVENT => {
                    let m = (*e).data.mapping_start;
                    props = !m.anchor.is_null() || !m.tag.is_null();
                    Event::MappingStart { block: m.style == sys::YAML_BLOCK_MAPPING_STYLE }
                }
                sys::YAML_SEQUENCE_START_EVENT => {
                    let q = (*e).data.sequence_start;
                    props = !q.anchor.is_null() || !q.tag.is_null();
                    Event::SequenceStart
                }
                sys::YAML_MAPPING_END_EVENT => Event::MappingEnd,
                sys::YAML_SEQUENCE_END_EVENT => Event::SequenceEnd,
                sys::YAML_ALIAS_EVENT => Event::Alias,
                sys::YAML_STREAM_END_EVENT | sys::YAML_NO_EVENT => {
                    self.done = true;
                    Event::Other
                }
                _ => Event::Other,
            };
            let (start, end) = ((*e).start_mark.index as usize, (*e).end_mark.index as usize);
            sys::yaml_event_delete(e);
            Marked { event: kind, start, end, props }
        };
        if self.done { None } else { Some(marked) }
    }
}

impl Drop for Events<'_> {
    fn drop(&mut self) {
        // SAFETY: initialised in `new`, deleted once, here.
        unsafe { sys::yaml_parser_delete(self.parser.as_mut_ptr()) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_carry_byte_offsets_and_stop_at_a_syntax_error() {
        let text = "é: [a, 'b']\nc: {d: *x}\n";
        let got: Vec<_> = Events::new(text).collect();
        let at = |e: Event| got.iter().find(|m| m.event == e).map(|m| (m.start, m.end));
        // `é` is two bytes: `[` is at byte 4, `'b'` at bytes 8 to 11 (quotes included).
        assert_eq!(at(Event::Scalar("é".into())), Some((0, 2)));
        assert_eq!(at(Event::Scalar("a".into())), Some((5, 6)));
        assert_eq!(at(Event::Scalar("b".into())), Some((8, 11)));
        assert_eq!(at(Event::SequenceStart).map(|s| s.0), Some(4));
        assert_eq!(at(Event::MappingStart { block: true }).map(|s| s.0), Some(0));
        assert_eq!(at(Event::MappingStart { block: false }).map(|s| s.0), Some(16));
        let anchored: Vec<_> = Events::new("a: &x !!str b\n").collect();
        assert!(anchored.iter().any(|m| m.event == Event::Scalar("b".into()) && m.props && m.start == 3));
        // An undefined alias is the serde reading's error, not the event stream's.
        assert!(at(Event::Alias).is_some());
        let broken: Vec<_> = Events::new("a: [b\n").collect();
        assert!(!broken.iter().any(|m| m.event == Event::SequenceEnd), "{broken:?}");
    }
}
