//! The words a plan's steps are written in: ids, which copy a step pins, what it replaces.
//! The steps themselves (their kinds and parameters) are `steps`'.

use super::address::{HostAddr, S3Target};
use super::snapshot::{Checksum, RollingSettings, SnapshotFacts, SnapshotLocation};
use serde::{Deserialize, Serialize};
use std::fmt;

/// A step's id, unique in its plan: `<kind>@<host>` or `<kind>#<n>` for cluster-wide steps.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct StepId(pub String);

impl fmt::Display for StepId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The file a member is restored from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "from")]
pub enum RestoreFile {
    /// A plain copy of the snapshot.
    Copy { location: SnapshotLocation },
    /// The database unpacked from the snapshot's archive.
    Unpacked,
}

/// What a copy must be to be the right one: pinned when the plan is made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "by")]
pub enum Pin {
    /// Its size and checksum.
    Checksum { facts: SnapshotFacts },
    /// An S3 object rkectl did not write (no checksum recorded): its size and ETag, which
    /// change if the object is replaced.
    S3Object { size: u64, etag: String },
}

impl Pin {
    /// The size pinned.
    pub fn size(&self) -> u64 {
        match self {
            Pin::Checksum { facts } => facts.size,
            Pin::S3Object { size, .. } => *size,
        }
    }

    /// The checksum pinned, if one is.
    pub fn checksum(&self) -> Option<&Checksum> {
        match self {
            Pin::Checksum { facts } => Some(&facts.checksum),
            Pin::S3Object { .. } => None,
        }
    }
}

impl fmt::Display for Pin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Pin::Checksum { facts } => write!(f, "{}, {}", human_bytes(facts.size), facts.checksum.short()),
            Pin::S3Object { size, etag } => write!(f, "{}, S3 ETag {etag}", human_bytes(*size)),
        }
    }
}

/// Where a host's copy of a snapshot comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "from")]
pub enum SnapshotSource {
    /// Copied from another etcd host, straight over the cluster network (through the
    /// workstation only when the two cannot reach each other).
    Host { host: HostAddr },
    /// Downloaded from S3.
    S3 { target: S3Target },
}

impl fmt::Display for SnapshotSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SnapshotSource::Host { host } => write!(f, "host {host}"),
            SnapshotSource::S3 { target } => write!(f, "{target}"),
        }
    }
}

/// Where a snapshot is deleted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DeleteFrom {
    Host,
    S3 { target: S3Target },
}

/// Something on a host that a step replaces although rkectl did not make it, or that
/// differs from what the cluster's files say it should be: the plan says what and why,
/// and applying it needs confirmation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Replacement {
    /// What is replaced (`RKE's etcd container`).
    pub what: String,
    /// Why.
    pub why: String,
}

impl fmt::Display for Replacement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "replaces {}: {}", self.what, self.why)
    }
}

/// The recurring snapshot settings in words.
pub fn describe_rolling(s: &RollingSettings) -> String {
    match s {
        RollingSettings::Legacy { creation, retention } => {
            format!("every {creation}, keep for {retention}")
        }
        RollingSettings::BackupConfig { interval_hours, retention, s3, drill } => {
            let mut d = format!("every {interval_hours}h, keep {retention}");
            if let Some(t) = s3 {
                d.push_str(&format!(", upload to {t}"));
            }
            if *drill {
                d.push_str(", drill each one");
            }
            d
        }
    }
}

/// A wall time as a person reads it: milliseconds under a second (`0.0s` reads as nothing).
pub fn human_millis(millis: u64) -> String {
    if millis < 1000 { format!("{millis} ms") } else { format!("{:.1}s", millis as f64 / 1000.0) }
}

/// `12.3 MiB`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 { format!("{n} B") } else { format!("{v:.1} {}", UNITS[u]) }
}
