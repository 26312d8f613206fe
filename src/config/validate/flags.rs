//! Rules for what the command line gives beside cluster.yml: a refusal says which flag and
//! what to give instead, and never quotes a secret it read.

use crate::config::GoDuration;
use crate::secret::Secret;
use miette::Diagnostic;
use std::path::Path;

/// A flag or argument that is not valid; nothing was dialed or changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Diagnostic)]
#[error("{message}")]
#[diagnostic(code(rkectl::input))]
pub struct BadInput {
    pub message: String,
    #[help]
    pub help: String,
}

impl BadInput {
    /// A refusal of a flag, with what to give instead.
    pub fn new(message: impl Into<String>, help: impl Into<String>) -> BadInput {
        BadInput { message: message.into(), help: help.into() }
    }
}

/// The S3 secret key in the file of `--secret-key-file`: its first line, without the line
/// break an editor adds. Errors name the file, never what is in it.
pub fn read_secret_file(path: &Path) -> Result<Secret, BadInput> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        BadInput::new(
            format!("cannot read --secret-key-file {}: {e}", path.display()),
            "give the path of a file that holds the S3 secret key (and nothing else)",
        )
    })?;
    let key = text.trim_end_matches(['\n', '\r']);
    if key.is_empty() || key.contains('\n') {
        return Err(BadInput::new(
            format!("--secret-key-file {} does not hold one S3 secret key on one line", path.display()),
            "put the secret key alone in the file",
        ));
    }
    Ok(Secret::new(key.to_string()))
}

/// `--retention`: a Go duration longer than zero.
pub fn retention(text: &str) -> Result<GoDuration, BadInput> {
    let d = GoDuration::parse(text)
        .map_err(|e| BadInput::new(format!("invalid --retention `{text}`: {e}"), "use a Go duration such as `24h`"))?;
    if d.0.is_zero() {
        return Err(BadInput::new("--retention must be longer than zero", "use a Go duration such as `24h`"));
    }
    Ok(d)
}
