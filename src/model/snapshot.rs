//! Snapshots as every layer names them: the name, the file format, where a file sits on a
//! node, its checksum, and which names are recurring ones.

use super::address::S3Target;
use serde::{Deserialize, Serialize};
use std::fmt;

/// The suffix of rke-tools' snapshot archives (`<name>.zip`).
pub const ARCHIVE_SUFFIX: &str = ".zip";

/// A snapshot's file name in `/opt/rke/etcd-snapshots`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SnapshotName(String);

/// Why a snapshot name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotNameError {
    #[error("a snapshot name cannot be empty")]
    Empty,
    #[error("a snapshot name cannot contain `/` (it names a file in /opt/rke/etcd-snapshots)")]
    Slash,
    #[error("a snapshot name cannot be `.` or `..` or start with `.`")]
    Dots,
    #[error("a snapshot name cannot start with `-` (a program would read it as an option)")]
    Dash,
    #[error("a snapshot name cannot contain control characters (NUL, newline, …)")]
    Control,
    #[error("a snapshot name can be at most 200 bytes long (this one has {0})")]
    TooLong(usize),
}

impl SnapshotName {
    /// Validates a name given by a user or found in a folder.
    pub fn new(name: impl Into<String>) -> Result<Self, SnapshotNameError> {
        let name = name.into();
        if name.is_empty() {
            return Err(SnapshotNameError::Empty);
        }
        if name.contains('/') || name.contains('\\') {
            return Err(SnapshotNameError::Slash);
        }
        if name.starts_with('.') {
            return Err(SnapshotNameError::Dots);
        }
        if name.starts_with('-') {
            return Err(SnapshotNameError::Dash);
        }
        if name.chars().any(char::is_control) {
            return Err(SnapshotNameError::Control);
        }
        // Room for our `.part` and `.json` suffixes within the 255-byte file-name limit.
        if name.len() > 200 {
            return Err(SnapshotNameError::TooLong(name.len()));
        }
        Ok(SnapshotName(name))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The default name: `rke_etcd_snapshot_<RFC 3339 time>`, as in the reference.
    pub fn timestamped(now: time::OffsetDateTime) -> Self {
        let t = now
            .replace_nanosecond(0)
            .unwrap_or(now)
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_else(|_| now.unix_timestamp().to_string());
        SnapshotName(format!("rke_etcd_snapshot_{t}"))
    }
}

impl TryFrom<String> for SnapshotName {
    type Error = SnapshotNameError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        SnapshotName::new(s)
    }
}

impl From<SnapshotName> for String {
    fn from(s: SnapshotName) -> String {
        s.0
    }
}

impl fmt::Display for SnapshotName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// How a snapshot is stored: the plain database (`<name>`, as `etcdctl snapshot save`
/// writes it and older RKE kept it) or rke-tools' archive (`<name>.zip`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SnapshotFormat {
    Raw,
    Zip,
}

impl SnapshotFormat {
    /// The file (or object) name of snapshot `name` in this format.
    pub fn file_name(self, name: &SnapshotName) -> String {
        match self {
            SnapshotFormat::Raw => name.as_str().to_string(),
            SnapshotFormat::Zip => format!("{name}{}", ARCHIVE_SUFFIX),
        }
    }

    /// The snapshot a file name stands for: `x.zip` is snapshot `x` as an archive. A file
    /// being written ([`is_partial_file`]) stands for none.
    pub fn parse_file_name(file: &str) -> Option<(SnapshotName, SnapshotFormat)> {
        if is_partial_file(file) {
            return None;
        }
        match file.strip_suffix(ARCHIVE_SUFFIX) {
            Some(stem) => SnapshotName::new(stem).ok().map(|n| (n, SnapshotFormat::Zip)),
            None => SnapshotName::new(file).ok().map(|n| (n, SnapshotFormat::Raw)),
        }
    }
}

/// What rkectl (or etcdctl) writes beside a file before renaming it into place.
pub const PARTIAL_SUFFIX: &str = ".part";
/// The mark in the temporary name of a file written over SSH (`<file>.rkectl-tmp.<hex>`).
pub const TEMP_MARK: &str = ".rkectl-tmp.";

/// Whether a file name is one of a file still being written, or left by a writer that died:
/// `<file>.part`, `<file>.rkectl-tmp.<hex>`, or a hidden `.<file>.<hex>.tmp`.
pub fn is_partial_file(file: &str) -> bool {
    file.ends_with(PARTIAL_SUFFIX) || file.contains(TEMP_MARK) || (file.starts_with('.') && file.ends_with(".tmp"))
}

impl fmt::Display for SnapshotFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SnapshotFormat::Raw => "plain",
            SnapshotFormat::Zip => "zip",
        })
    }
}

/// Where a snapshot file is on a node (see [`crate::layout`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SnapshotLocation {
    /// In the snapshot folder, where RKE and rkectl list it.
    Listed,
    /// Staged for a restore beside a differing copy of the host's own, and removed after.
    Staged,
}

/// A content checksum, `blake3:<hex>`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Checksum(pub String);

impl Checksum {
    /// The checksum of `data`.
    pub fn of(data: &[u8]) -> Self {
        Checksum(format!("blake3:{}", blake3::hash(data).to_hex()))
    }

    /// From a finished BLAKE3 hasher.
    pub fn from_hasher(h: &blake3::Hasher) -> Self {
        Checksum(format!("blake3:{}", h.finalize().to_hex()))
    }

    /// A short form for plans: `blake3:1a2b3c4d5e6f`.
    pub fn short(&self) -> &str {
        let end = self.0.len().min("blake3:".len() + 12);
        &self.0[..end]
    }
}

impl fmt::Display for Checksum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a snapshot must be: pinned when the plan is made, checked before it is used.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotFacts {
    pub size: u64,
    pub checksum: Checksum,
}

/// Whether a snapshot name is a recurring one (`<RFC 3339 time>_etcd`, RKE's and rkectl's).
pub fn is_recurring_name(n: &SnapshotName) -> bool {
    n.as_str().ends_with("_etcd")
}

/// The prefix of a one-time snapshot's default name.
const ONE_TIME_PREFIX: &str = "rke_etcd_snapshot_";

/// When an automatically named snapshot was taken, from its name (unix seconds).
pub fn name_time(n: &SnapshotName) -> Option<i64> {
    let s = n.as_str();
    let t = match s.strip_prefix(ONE_TIME_PREFIX) {
        Some(rest) => rest,
        None => s.split('_').next()?,
    };
    time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok().map(|t| t.unix_timestamp())
}

/// The settings of the recurring snapshot agent, as the plan shows them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "mode")]
pub enum RollingSettings {
    /// Legacy `creation`/`retention`: prune by age.
    Legacy { creation: String, retention: String },
    /// `backup_config`: prune by count, optionally in S3 too.
    BackupConfig {
        interval_hours: u32,
        retention: u32,
        s3: Option<S3Target>,
        /// Each snapshot is drilled after it is taken (`rkectl_drill`).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        drill: bool,
    },
}

#[cfg(test)]
mod partial_tests {
    use super::*;

    #[test]
    fn a_file_being_written_is_no_snapshot() {
        for partial in ["snap.zip.rkectl-tmp.00aa11bb22cc33dd", "snap.rkectl-tmp.0123", "snap.zip.part", "snap.part"] {
            assert_eq!(SnapshotFormat::parse_file_name(partial), None, "{partial}");
        }
        assert!(is_partial_file(".snap.json.0011.tmp"));
        let (name, format) = SnapshotFormat::parse_file_name("snap.zip").unwrap();
        assert_eq!((name.as_str(), format), ("snap", SnapshotFormat::Zip));
        assert!(SnapshotFormat::parse_file_name("snap.tmp").is_some(), "a name is a name");
    }
}

#[cfg(test)]
mod name_tests {
    use super::*;

    #[test]
    fn snapshot_names_refuse_paths_and_control_characters() {
        assert!(SnapshotName::new("snapshot.db").is_ok());
        assert!(SnapshotName::new("rke_etcd_snapshot_2018-05-17T23:32:08+02:00").is_ok());
        assert_eq!(SnapshotName::new("a/b"), Err(SnapshotNameError::Slash));
        assert_eq!(SnapshotName::new(".."), Err(SnapshotNameError::Dots));
        assert_eq!(SnapshotName::new("../x"), Err(SnapshotNameError::Slash));
        assert_eq!(SnapshotName::new("a\0b"), Err(SnapshotNameError::Control));
        assert_eq!(SnapshotName::new("x".repeat(300)), Err(SnapshotNameError::TooLong(300)));
        assert_eq!(SnapshotName::new(""), Err(SnapshotNameError::Empty));
        assert_eq!(SnapshotName::new("--data-dir"), Err(SnapshotNameError::Dash));
    }

    #[test]
    fn default_name_is_rfc3339_like_the_reference() {
        let t = time::macros::datetime!(2018-05-17 21:32:08.5 UTC);
        assert_eq!(SnapshotName::timestamped(t).as_str(), "rke_etcd_snapshot_2018-05-17T21:32:08Z");
    }
}
