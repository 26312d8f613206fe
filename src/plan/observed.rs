//! What refresh saw on the hosts and in S3: the "before" of a plan.
//!
//! Pure data, gathered read-only by [`crate::refresh`] and serialised into the plan, so a
//! saved plan can tell whether the world changed since it was made (its fingerprint).

use super::step::{Checksum, SnapshotName};
use crate::config::{HostAddr, S3Target};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Everything observed for one plan.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Observed {
    /// Planned without contacting anything: every host is unknown.
    pub offline: bool,
    pub hosts: BTreeMap<HostAddr, HostFacts>,
    /// The S3 side, when the action uses S3.
    pub s3: Option<S3Facts>,
}

impl Observed {
    /// A stable hash of what was observed; a saved plan is pinned to it.
    pub fn fingerprint(&self) -> String {
        let json = serde_json::to_vec(self).expect("observed state serialises");
        blake3::hash(&json).to_hex()[..32].to_string()
    }

    /// The facts of `host`, if it was observed.
    pub fn host(&self, host: &HostAddr) -> Option<&HostFacts> {
        self.hosts.get(host)
    }
}

/// One host as refresh saw it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostFacts {
    pub docker_version: String,
    /// Containers we care about, by name.
    pub containers: BTreeMap<String, ContainerFacts>,
    /// Images the action needs that are not on the host (pullable, or refresh would have failed).
    pub missing_images: Vec<String>,
    /// Snapshot files in `/opt/rke/etcd-snapshots`, when the action looks at them.
    pub snapshots: BTreeMap<SnapshotName, SnapshotCopy>,
    /// Whether `/var/lib/etcd` holds data.
    pub has_etcd_data: Option<bool>,
    /// Hash of the CA and member certificate files found on the host.
    pub certs_hash: Option<String>,
    /// The cluster's members as this host's etcd reports them (names), when it runs.
    pub members: Option<Vec<String>>,
}

/// A container as refresh saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerFacts {
    pub image: String,
    pub running: bool,
    /// The `io.rkectl.spec-hash` label: which spec created it.
    pub spec_hash: Option<String>,
}

/// One copy of a snapshot on a host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotCopy {
    pub size: u64,
    /// Seconds since the Unix epoch.
    pub modified: i64,
    /// Computed by the checksum checker when the action needs it.
    pub checksum: Option<Checksum>,
    /// etcd's own hash check of the file; `Some(false)` means corrupt.
    pub etcd_ok: Option<bool>,
    /// Why the check failed, if it did.
    pub problem: Option<String>,
}

/// The S3 side.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct S3Facts {
    pub target: S3Target,
    /// Snapshots in the bucket (folder), with their recorded checksum.
    pub snapshots: BTreeMap<SnapshotName, S3Copy>,
}

/// A snapshot stored in S3.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct S3Copy {
    pub size: u64,
    pub modified: i64,
    /// From the manifest stored with the object; `None` for objects rkectl did not write.
    pub checksum: Option<Checksum>,
    /// Whether the cluster's PKI was stored with it.
    pub has_pki: bool,
}
