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
/// caller itself, or for another refusal whose text was redacted ([`Redacted::of`]), which
/// keeps that refusal's code (scripts and `--json` readers match on it).
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Redacted {
    pub message: String,
    pub help: Option<String>,
    /// The code of the refusal it stands for; `rkectl::refused` when none.
    pub code: Option<String>,
}

impl Redacted {
    /// A refusal of the caller's own.
    pub fn new(message: impl Into<String>, help: impl Into<String>) -> Redacted {
        Redacted { message: message.into(), help: Some(help.into()), code: None }
    }

    /// `e`, whose text may quote one of `secrets` back (a server's error message), with
    /// them taken out; `hint` is added to its help.
    pub fn of(e: &dyn miette::Diagnostic, secrets: &[Secret], hint: Option<String>) -> Redacted {
        let secrets: Vec<&Secret> = secrets.iter().collect();
        let message = redact(&e.to_string(), &secrets);
        let help = match (e.help().map(|h| h.to_string()), hint) {
            (Some(help), Some(hint)) => Some(format!("{help}; {hint}")),
            (help, hint) => help.or(hint),
        };
        Redacted { message, help: help.map(|h| redact(&h, &secrets)), code: e.code().map(|c| c.to_string()) }
    }
}

impl miette::Diagnostic for Redacted {
    fn code<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        Some(Box::new(self.code.as_deref().unwrap_or("rkectl::refused")))
    }

    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.help.as_ref().map(|h| Box::new(h) as Box<dyn fmt::Display>)
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

    /// A refusal from S3 that quotes the key back.
    #[derive(Debug, thiserror::Error, miette::Diagnostic)]
    #[error("the server said: bad key AKIAQUOTEDBACK")]
    #[diagnostic(code(rkectl::plan::snapshot_missing), help("look at AKIAQUOTEDBACK"))]
    struct Quoting;

    #[test]
    fn a_redacted_refusal_keeps_its_code_and_loses_the_secret_everywhere() {
        let r = Redacted::of(&Quoting, &[Secret::new("AKIAQUOTEDBACK")], Some("the key came from --access-key".into()));
        let code = miette::Diagnostic::code(&r).map(|c| c.to_string());
        assert_eq!(code.as_deref(), Some("rkectl::plan::snapshot_missing"));
        let help = miette::Diagnostic::help(&r).map(|h| h.to_string()).unwrap();
        assert_eq!(help, "look at ***; the key came from --access-key");
        assert_eq!(r.to_string(), "the server said: bad key ***");
        let own = Redacted::new("no terminal", "use --yes");
        assert_eq!(miette::Diagnostic::code(&own).map(|c| c.to_string()).as_deref(), Some("rkectl::refused"));
    }

    #[test]
    fn secrets_never_print() {
        let s = Secret::new("AKIAVERYSECRET");
        assert_eq!(format!("{s} {s:?}"), "*** ***");
        assert_eq!(redact("key=AKIAVERYSECRET!", &[&s]), "key=***!");
    }
}
