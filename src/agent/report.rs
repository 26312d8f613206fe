//! What the node-side agent reports back: one line `RKECTL-REPORT <json>` on stdout.
//!
//! The workstation reads a helper container's logs and takes the last such line; anything
//! else the container printed (etcdctl's own chatter) is kept only for error messages.

use crate::model::{Checksum, SnapshotFacts, SnapshotFormat};
use serde::{Deserialize, Serialize};

/// The prefix of the report line.
pub const PREFIX: &str = "RKECTL-REPORT ";

/// etcd's view of a snapshot file (`etcdctl snapshot status`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EtcdStatus {
    pub hash: u64,
    pub revision: i64,
    pub total_keys: u64,
}

/// A snapshot file on a node, checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotReport {
    /// The snapshot's name (without `.zip`).
    pub name: String,
    /// A plain database, or rke-tools' archive.
    pub format: SnapshotFormat,
    /// Size and checksum of the file itself.
    pub size: u64,
    pub checksum: Checksum,
    /// etcd's integrity check passed (the SHA-256 trailer etcd appends, and the db opens).
    pub etcd_ok: bool,
    /// Why it did not, if it did not.
    pub problem: Option<String>,
    pub etcd: Option<EtcdStatus>,
    /// Set when the snapshot was also uploaded to S3. Said only when true: a drill's or a
    /// listing's check of a copy uploads nothing, and `false` there would read as a failure.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub uploaded: bool,
    /// For an archive: size and checksum of the database inside (when it was read).
    #[serde(default)]
    pub db: Option<SnapshotFacts>,
    /// The archive carries the cluster state.
    #[serde(default)]
    pub has_state: bool,
    /// Every etcd host gets this same copy (rkectl's one-time save), so copies that
    /// differ are an inconsistency, not each host's own snapshot. Said only when true, as
    /// `uploaded`: a check of one copy cannot know it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub identical_everywhere: bool,
}

/// One member's health.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberHealth {
    pub endpoint: String,
    pub healthy: bool,
    pub revision: Option<i64>,
    pub error: Option<String>,
}

/// The health of a set of members.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthReport {
    pub members: Vec<MemberHealth>,
    /// Member names the cluster lists.
    pub member_names: Vec<String>,
}

/// A simple outcome for agent commands that only act.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Done {
    pub changed: bool,
    pub detail: String,
}

/// Formats a report line.
pub fn line<T: Serialize>(report: &T) -> String {
    format!("{PREFIX}{}", serde_json::to_string(report).expect("reports serialise"))
}

/// Why a container's output holds no usable report.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReportError {
    #[error("it printed no report line")]
    Missing,
    /// A report line of another shape: a helper of another rkectl version, or a cut line.
    #[error("its report line does not read as expected ({0})")]
    Malformed(String),
}

/// Finds and parses the last report line in a container's output.
pub fn parse<T: for<'de> Deserialize<'de>>(logs: &str) -> Result<T, ReportError> {
    let line = logs.lines().rev().find_map(|l| l.trim_start().strip_prefix(PREFIX)).ok_or(ReportError::Missing)?;
    serde_json::from_str(line).map_err(|e| ReportError::Malformed(e.to_string()))
}

/// Parses every report line in a container's output.
pub fn parse_all<T: for<'de> Deserialize<'de>>(logs: &str) -> Vec<T> {
    logs.lines()
        .filter_map(|l| l.trim_start().strip_prefix(PREFIX))
        .filter_map(|j| serde_json::from_str(j).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_and_a_malformed_report_are_told_apart() {
        assert_eq!(parse::<Done>("etcdctl chatter\n"), Err(ReportError::Missing));
        let cut = format!("{PREFIX}{{\"changed\": tr\n");
        assert!(matches!(parse::<Done>(&cut), Err(ReportError::Malformed(_))));
        let ok = format!("noise\n{}\n", line(&Done { changed: true, detail: "x".into() }));
        assert_eq!(parse::<Done>(&ok), Ok(Done { changed: true, detail: "x".into() }));
    }
}
