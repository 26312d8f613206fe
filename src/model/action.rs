//! The action the user asked for (what `plan` and `apply` take), with no secret in it.

use super::address::{HostAddr, S3Target};
use super::snapshot::SnapshotName;
use serde::{Deserialize, Serialize};

/// What the user asked for, with no secret in it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "kebab-case")]
pub enum ActionSpec {
    /// `rkectl up`.
    Up,
    /// `rkectl etcd snapshot-save`.
    EtcdSnapshotSave {
        name: SnapshotName,
        /// The name was not given and was made from the time (the reference warns).
        generated_name: bool,
        s3: Option<S3Target>,
        /// The archive carries RKE's state file (every private key, in clear), as RKE's do.
        include_state: bool,
        /// RKE's state is stored beside the S3 copy, sealed with the user's passphrase.
        #[serde(default)]
        seal_state: bool,
    },
    /// `rkectl etcd snapshot-restore`.
    EtcdSnapshotRestore { name: SnapshotName, from: RestoreSearch },
    /// `rkectl etcd snapshot-drill`: restore the snapshot into scratch space on one etcd
    /// host (`host`, else one that holds it) and report what is in it; nothing of the
    /// cluster is touched.
    EtcdSnapshotDrill {
        name: SnapshotName,
        from: RestoreSearch,
        host: Option<HostAddr>,
        /// Count the same keys in the running cluster too (read-only).
        compare_live: bool,
    },
    /// `rkectl etcd snapshot-delete`.
    EtcdSnapshotDelete { name: SnapshotName, s3: Option<S3Target> },
    /// `rkectl etcd snapshot-prune`.
    EtcdSnapshotPrune { policy: PrunePolicy, s3: Option<S3Target> },
    /// `rkectl cleanup`.
    Cleanup,
}

/// Where a restore looks for its snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "in")]
pub enum RestoreSearch {
    /// The etcd hosts' snapshot folders.
    Hosts,
    /// S3 (`--s3`): the snapshot must be there.
    S3 { target: S3Target },
    /// S3 from cluster.yml's `s3backupconfig`, as RKE does, falling back to the hosts.
    S3ThenHosts { target: S3Target },
}

impl RestoreSearch {
    /// The S3 target searched, if any.
    pub fn s3(&self) -> Option<&S3Target> {
        match self {
            RestoreSearch::Hosts => None,
            RestoreSearch::S3 { target } | RestoreSearch::S3ThenHosts { target } => Some(target),
        }
    }
}

/// Which snapshots a prune keeps.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "by")]
pub enum PrunePolicy {
    /// Delete what is older than this many seconds (legacy `retention`).
    Age { seconds: u64, text: String },
    /// Keep the newest `keep` (backup_config `retention`).
    Count { keep: u32 },
}

impl ActionSpec {
    /// The template's name: `etcd-snapshot-restore`.
    pub fn template_name(&self) -> &'static str {
        match self {
            ActionSpec::Up => "up",
            ActionSpec::EtcdSnapshotSave { .. } => "etcd-snapshot-save",
            ActionSpec::EtcdSnapshotRestore { .. } => "etcd-snapshot-restore",
            ActionSpec::EtcdSnapshotDrill { .. } => "etcd-snapshot-drill",
            ActionSpec::EtcdSnapshotDelete { .. } => "etcd-snapshot-delete",
            ActionSpec::EtcdSnapshotPrune { .. } => "etcd-snapshot-prune",
            ActionSpec::Cleanup => "cleanup",
        }
    }

    /// The S3 target the action uses, if any.
    pub fn s3(&self) -> Option<&S3Target> {
        match self {
            ActionSpec::Up | ActionSpec::Cleanup => None,
            ActionSpec::EtcdSnapshotRestore { from, .. } | ActionSpec::EtcdSnapshotDrill { from, .. } => from.s3(),
            ActionSpec::EtcdSnapshotSave { s3, .. }
            | ActionSpec::EtcdSnapshotDelete { s3, .. }
            | ActionSpec::EtcdSnapshotPrune { s3, .. } => s3.as_ref(),
        }
    }

    /// The snapshot the action is about, if one.
    pub fn snapshot(&self) -> Option<&SnapshotName> {
        match self {
            ActionSpec::EtcdSnapshotSave { name, .. }
            | ActionSpec::EtcdSnapshotRestore { name, .. }
            | ActionSpec::EtcdSnapshotDrill { name, .. }
            | ActionSpec::EtcdSnapshotDelete { name, .. } => Some(name),
            ActionSpec::Up | ActionSpec::EtcdSnapshotPrune { .. } | ActionSpec::Cleanup => None,
        }
    }
}

/// A member that was deployed (per the cluster state file) but is no longer in cluster.yml.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemovedMember {
    pub address: HostAddr,
    pub member: String,
}
