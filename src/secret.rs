//! Secrets (S3 keys, SSH keys, PKI private keys) as a type that cannot leak by accident.
//!
//! `Secret` has no `Serialize`, and its `Debug`/`Display` print `***`, so a secret cannot
//! reach a plan file, the journal, `--json` output or an error message unless code asks
//! for it by name with [`Secret::expose`].

use std::fmt;

/// A value that must never be printed or serialised.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself, for the one place that must hand it to a library.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether the secret is empty (not configured).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// A refusal said in plain words: a message and what to do, for a condition found by the
/// caller itself, or for another refusal whose text was redacted ([`Redacted::of`]).
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
#[error("{message}")]
#[diagnostic(code(rkectl::refused))]
pub struct Redacted {
    pub message: String,
    #[help]
    pub help: Option<String>,
}

impl Redacted {
    /// `e`, whose text may quote one of `secrets` back (a server's error message), with
    /// them taken out; `hint` is added to its help.
    pub fn of(e: &dyn miette::Diagnostic, secrets: &[Secret], hint: Option<String>) -> Redacted {
        let message = redact(&e.to_string(), &secrets.iter().collect::<Vec<_>>());
        let help = match (e.help().map(|h| h.to_string()), hint) {
            (Some(help), Some(hint)) => Some(format!("{help}; {hint}")),
            (help, hint) => help.or(hint),
        };
        Redacted { message, help }
    }
}

/// Replaces every occurrence of each known secret in `text` with `***`.
///
/// The last line of defence for text that came from elsewhere (a remote error message, a
/// container's log) and may quote a secret back at us.
pub fn redact(text: &str, secrets: &[&Secret]) -> String {
    let mut out = text.to_string();
    for s in secrets {
        // Very short values would redact ordinary words; real keys are long.
        if s.0.len() >= 4 {
            out = out.replace(&s.0, "***");
        }
    }
    out
}

/// Fills `buf` from the system's random source (nonces, certificate serial numbers).
pub fn random_bytes(buf: &mut [u8]) {
    use std::io::Read;
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(buf))
        .expect("the system's random source is readable");
}

/// Text from a node (a container's output) made safe for a terminal: control characters
/// (escape sequences that could rewrite the screen or the title) shown as `\u{..}`; line
/// breaks and tabs kept.
pub fn printable(text: &str) -> String {
    text.chars()
        .flat_map(|c| match c {
            '\n' | '\t' => vec![c],
            c if c.is_control() => format!("\\u{{{:x}}}", c as u32).chars().collect(),
            c => vec![c],
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print() {
        let s = Secret::new("AKIAVERYSECRET");
        assert_eq!(format!("{s} {s:?}"), "*** ***");
        assert_eq!(redact("key=AKIAVERYSECRET!", &[&s]), "key=***!");
    }
}
