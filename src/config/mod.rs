//! cluster.yml: reading RKE's file unchanged, applying the reference's defaults, and
//! refusing what cannot work with a diagnostic that points at the line.
//!
//! Flow: libyaml ([`yaml`], the one YAML parser) parses the text into a document, whose
//! merge keys (`<<: *anchor`) are applied as RKE's YAML decoder applies them ([`merge`]);
//! the document is then deserialised into [`raw::RawConfig`] (RKE's field names, everything
//! optional). The parser's own errors carry a location. Keys that neither RKE nor rkectl
//! reads are named, with the key probably meant ([`known_keys`]): warnings, or problems with
//! [`Options::strict`]. The raw config is then validated into a typed [`Cluster`]; each
//! problem found is located through a [`spans::SpanIndex`] built from the same parser's
//! events. All problems are reported at once, so a user fixes the file in one pass. Nothing
//! here touches the network.
//!
//! Reading the text is `read`'s job; checking it and building the [`Cluster`], `validate`'s;
//! pointing a problem at its place in the text, `locate`'s.

pub mod duration;
pub mod known_keys;
pub mod lenient;
mod locate;
pub mod merge;
pub mod model;
pub mod raw;
mod read;
pub mod redact;
pub mod registries;
mod s3;
pub mod spans;
mod ssh_access;
mod validate;
pub mod yaml;

pub use duration::GoDuration;
pub use model::*;
pub use s3::{KeyFrom, S3Environment, S3Flags, S3Use};
pub use ssh_access::is_openssh_cert;
pub use validate::flags::{BadInput, read_secret_file, retention};
pub use validate::ssh_keys::check_ssh_keys;

use locate::{Locator, char_span};
use miette::{Diagnostic, NamedSource, SourceSpan};
use read::{read_raw, unknown_key};
use spans::SpanIndex;
use std::path::{Path, PathBuf};
use validate::Validator;

/// One thing wrong with cluster.yml, located in the file.
#[derive(Debug, Clone, thiserror::Error, Diagnostic)]
#[error("{message}")]
pub struct ConfigProblem {
    /// What is wrong.
    pub message: String,
    #[label("{label}")]
    pub span: Option<SourceSpan>,
    /// Text under the pointer.
    pub label: String,
    #[help]
    pub help: Option<String>,
    /// 1-based line of the problem, when it has a place in the file.
    pub line: Option<usize>,
    /// 1-based column of the problem.
    pub column: Option<usize>,
}

/// cluster.yml could not be used.
#[derive(Debug, thiserror::Error, Diagnostic)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read cluster configuration {}: {source}", path.display())]
    #[diagnostic(
        code(rkectl::config::read),
        help("pass the file with --config or set RKE_CONFIG; the default is ./cluster.yml")
    )]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file was read but is not a valid cluster configuration.
    #[error("{file} is not a valid cluster configuration ({} problem{})", problems.len(), if problems.len() == 1 { "" } else { "s" })]
    #[diagnostic(code(rkectl::config::invalid))]
    Invalid {
        file: String,
        #[source_code]
        src: NamedSource<String>,
        #[related]
        problems: Vec<ConfigProblem>,
    },
}

impl ConfigError {
    /// The problems found, for tests and `--json`.
    pub fn problems(&self) -> &[ConfigProblem] {
        match self {
            ConfigError::Invalid { problems, .. } => problems,
            ConfigError::Read { .. } => &[],
        }
    }
}

/// A valid cluster.yml with what is needed to point at it later.
#[derive(Debug)]
pub struct LoadedConfig {
    /// The cluster, defaults applied.
    pub cluster: Cluster,
    /// Path of cluster.yml.
    pub path: PathBuf,
    /// The text, for diagnostics about it raised later (e.g. an unreadable `ssh_key_path`).
    pub source: String,
    /// BLAKE3 of the text: a saved plan is pinned to it.
    pub hash: String,
    /// Things that are valid but probably not what the user meant, located in the file.
    pub warnings: Vec<ConfigProblem>,
    /// The keys RKE and rkectl ignored (each also a warning): a later failure may follow
    /// from one (an SSH key path under a misspelt key was never used).
    pub ignored_keys: Vec<IgnoredKey>,
    spans: SpanIndex,
}

/// A valid but doubtful setting in cluster.yml, shown as a warning with its line.
#[derive(Debug, thiserror::Error, Diagnostic)]
#[error("{message}")]
#[diagnostic(severity(Warning), code(rkectl::config::warning))]
pub struct ConfigWarning {
    message: String,
    #[source_code]
    src: NamedSource<String>,
    #[label("{label}")]
    span: Option<SourceSpan>,
    label: String,
    #[help]
    help: Option<String>,
}

/// A key of cluster.yml that was ignored, as a later error names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IgnoredKey {
    /// Where it is: `nodes[1].ssh_key_pth`.
    pub path: String,
    /// The known key it probably meant.
    pub suggestion: Option<&'static str>,
    /// 1-based line.
    pub line: Option<usize>,
}

impl IgnoredKey {
    /// `nodes[0].ssh_key_pth (line 4, did you mean ssh_key_path?)`.
    pub fn describe(&self) -> String {
        let mut about = Vec::new();
        if let Some(l) = self.line {
            about.push(format!("line {l}"));
        }
        if let Some(s) = self.suggestion {
            about.push(format!("did you mean {s}?"));
        }
        if about.is_empty() { self.path.clone() } else { format!("{} ({})", self.path, about.join(", ")) }
    }
}

impl LoadedConfig {
    /// A diagnostic about the value at `path` (e.g. `nodes[2].ssh_key_path`), raised after
    /// loading, for checks that need I/O.
    pub fn problem_at(&self, path: &str, message: String, label: &str, help: Option<String>) -> ConfigError {
        let located = Locator { source: &self.source, spans: &self.spans };
        ConfigError::Invalid {
            file: file_name(&self.path),
            src: NamedSource::new(file_name(&self.path), redact::for_display(&self.source)),
            problems: vec![located.at(path, message, label, help)],
        }
    }

    /// Each warning about cluster.yml as a diagnostic that points at its line.
    pub fn warning_reports(&self) -> Vec<ConfigWarning> {
        let src = || NamedSource::new(file_name(&self.path), redact::for_display(&self.source));
        let warning = |w: &ConfigProblem| ConfigWarning {
            message: w.message.clone(),
            src: src(),
            span: w.span,
            label: w.label.clone(),
            help: w.help.clone(),
        };
        self.warnings.iter().map(warning).collect()
    }

    /// Whether the value at `path` (e.g. `nodes[0].ssh_key_path`) is written in cluster.yml
    /// itself, not only defaulted: from the index built when it was read, without parsing
    /// the text again. (A path that is not written falls back to its parent's span.)
    pub fn is_written(&self, path: &str) -> bool {
        let parent = path.rfind(['.', '[']).map(|cut| &path[..cut]);
        let own = self.spans.value(path);
        own.is_some() && own != parent.and_then(|p| self.spans.value(p))
    }

    /// The directory cluster.yml is in: state, journal and lock files live next to it.
    pub fn dir(&self) -> PathBuf {
        match self.path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        }
    }

    /// cluster.yml's file name without extension (`cluster` for `cluster.yml`).
    pub fn stem(&self) -> String {
        self.path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "cluster".to_string())
    }
}

/// A lone CR (old Mac line ends) breaks a line for YAML and miette but not for our span
/// index; as LF it is the same break for all three, at the same byte offsets.
fn lone_cr_as_lf(text: String) -> String {
    if !text.contains('\r') {
        return text;
    }
    let mut bytes = text.into_bytes();
    for i in 0..bytes.len() {
        if bytes[i] == b'\r' && bytes.get(i + 1) != Some(&b'\n') {
            bytes[i] = b'\n';
        }
    }
    String::from_utf8(bytes).expect("CR and LF are ASCII: the text stays UTF-8")
}

fn file_name(p: &Path) -> String {
    p.display().to_string()
}

/// How cluster.yml is read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Options {
    /// Refuse keys that neither RKE nor rkectl reads (by default they are warnings).
    pub strict: bool,
}

/// Reads and validates cluster.yml at `path`.
pub fn load(path: &Path) -> Result<LoadedConfig, ConfigError> {
    load_with(path, Options::default())
}

/// Reads and validates cluster.yml at `path`, as `options` say.
pub fn load_with(path: &Path, options: Options) -> Result<LoadedConfig, ConfigError> {
    let text =
        std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_path_buf(), source })?;
    parse_with(path, text, options)
}

/// Validates cluster.yml given as text; `path` names it in diagnostics and places state.
pub fn parse(path: &Path, text: String) -> Result<LoadedConfig, ConfigError> {
    parse_with(path, text, Options::default())
}

/// Validates cluster.yml given as text, as `options` say.
pub fn parse_with(path: &Path, text: String, options: Options) -> Result<LoadedConfig, ConfigError> {
    let name = file_name(path);
    let text = lone_cr_as_lf(text);
    let invalid = |problems: Vec<ConfigProblem>, text: &str| ConfigError::Invalid {
        file: name.clone(),
        src: NamedSource::new(name.clone(), redact::for_display(text)),
        problems,
    };
    let spans = match SpanIndex::build(&text) {
        Ok(s) => s,
        Err(deep) => {
            let empty = SpanIndex::default();
            let locator = Locator { source: &text, spans: &empty };
            let p = locator.make(
                Some(char_span(&text, deep.offset)),
                format!("cluster.yml nests deeper than {} levels", spans::MAX_DEPTH),
                "too deep",
                Some("a cluster.yml has a handful of levels; this file is not one".into()),
            );
            return Err(invalid(vec![p], &text));
        }
    };
    let locator = Locator { source: &text, spans: &spans };
    let (raw, unknown) = match read_raw(&text, &locator) {
        Ok(read) => read,
        Err(p) => return Err(invalid(vec![*p], &text)),
    };
    let problems_of_unknown: Vec<ConfigProblem> = unknown.iter().map(|u| unknown_key(&locator, u)).collect();
    let ignored_keys = unknown
        .iter()
        .zip(&problems_of_unknown)
        .map(|(u, p)| IgnoredKey { path: u.path.clone(), suggestion: u.suggestion, line: p.line })
        .collect();
    let unknown = problems_of_unknown;
    let mut v = Validator { loc: &locator, problems: Vec::new(), warnings: Vec::new() };
    let cluster = v.cluster(raw);
    let Validator { problems, mut warnings, .. } = v;
    if options.strict && !unknown.is_empty() {
        // An unknown key is often why something else is missing: it comes first.
        return Err(invalid(unknown.into_iter().chain(problems).collect(), &text));
    }
    if !problems.is_empty() {
        return Err(invalid(problems, &text));
    }
    warnings.extend(unknown);
    let hash = blake3::hash(text.as_bytes()).to_hex().to_string();
    Ok(LoadedConfig {
        cluster: cluster.expect("no problems means a cluster"),
        path: path.to_path_buf(),
        source: text,
        hash,
        warnings,
        ignored_keys,
        spans,
    })
}

/// Expands a leading `~/` the way RKE does for `ssh_key_path`.
pub fn expand_home(p: &str) -> PathBuf {
    match p.strip_prefix("~/") {
        Some(rest) => match std::env::var_os("HOME") {
            Some(home) => Path::new(&home).join(rest),
            None => PathBuf::from(p),
        },
        None => PathBuf::from(p),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One etcd node: the smallest cluster.yml, for the config's tests to add to.
    pub(super) const NODE: &str = "nodes:\n  - address: 10.0.0.1\n    user: root\n    role: [etcd]\n";

    /// Parses `text` as cluster.yml, `--strict` or not.
    pub(super) fn parse_text(text: &str, strict: bool) -> Result<LoadedConfig, ConfigError> {
        parse_with(Path::new("cluster.yml"), text.to_string(), Options { strict })
    }

    #[test]
    fn strict_refuses_unknown_keys_first_and_still_reports_the_rest() {
        let text = "nodes:\n  - adress: 10.0.0.1\n    user: root\n    role: [etcd]\n";
        let lenient = parse_text(text, false).unwrap_err();
        assert_eq!(lenient.problems().len(), 1, "without --strict only the missing address");
        let err = parse_text(text, true).unwrap_err();
        let p = err.problems();
        assert_eq!(p.len(), 2, "{p:?}");
        assert_eq!(p[0].message, "unknown key `adress` in nodes[0]: rkectl and RKE ignore it");
        assert_eq!(p[0].help.as_deref(), Some("did you mean `address`?"));
        assert_eq!((p[0].line, p[0].column), (Some(2), Some(5)));
        assert_eq!(p[1].message, "node 1 has no address");
        // A file without unknown keys is the same with or without --strict.
        assert!(parse_text(NODE, true).unwrap().warnings.is_empty());
    }
}
