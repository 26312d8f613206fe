//! What refresh saw on the hosts and in S3: the "before" of a plan.
//!
//! Pure data, gathered read-only by `refresh` and serialised into the plan, so a
//! saved plan can tell whether the world changed since it was made (its fingerprint).

use super::address::{HostAddr, S3Target};
use super::pki::{Fingerprint, SanSet};
use super::snapshot::{Checksum, SnapshotFacts, SnapshotFormat, SnapshotName};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// What a plan is based on: nothing (planned offline), or what refresh saw. Offline is
/// this value, decided once where the plan is prepared; everything downstream asks it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Observed {
    /// Planned without contacting anything: every host is unknown, and the plan is for
    /// review only.
    Offline,
    /// What refresh saw.
    Online(Seen),
}

impl Observed {
    /// A stable hash of what was observed; a saved plan is pinned to it.
    pub fn fingerprint(&self) -> String {
        let json = serde_json::to_vec(self).expect("observed state serialises");
        blake3::hash(&json).to_hex()[..32].to_string()
    }

    /// What refresh saw; `None` offline.
    pub fn seen(&self) -> Option<&Seen> {
        match self {
            Observed::Offline => None,
            Observed::Online(seen) => Some(seen),
        }
    }

    /// The facts of `host`, if it was observed.
    pub fn host(&self, host: &HostAddr) -> Option<&HostFacts> {
        self.seen()?.hosts.get(host)
    }

    /// The S3 side, if it was observed.
    pub fn s3(&self) -> Option<&S3Facts> {
        self.seen()?.s3.as_ref()
    }
}

/// What refresh saw on the hosts and in S3.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Seen {
    pub hosts: BTreeMap<HostAddr, HostFacts>,
    /// The S3 side, when the action uses S3.
    pub s3: Option<S3Facts>,
}

/// One host as refresh saw it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostFacts {
    pub docker_version: String,
    /// Docker's name for the machine's architecture (etcd's `ETCD_UNSUPPORTED_ARCH`).
    #[serde(default)]
    pub arch: String,
    /// Containers we care about, by name.
    pub containers: BTreeMap<String, ContainerFacts>,
    /// Images the action needs that are not on the host (pullable, or refresh would have failed).
    pub missing_images: Vec<String>,
    /// Snapshot files in `/opt/rke/etcd-snapshots`, when the action looks at them.
    pub snapshots: BTreeMap<SnapshotName, SnapshotCopy>,
    /// The names of the other snapshots there, when the action looks at one only: for a
    /// refusal's "did you mean". Not part of the plan (nor of its fingerprint, so a new
    /// recurring snapshot does not make a saved plan stale).
    #[serde(skip)]
    pub other_snapshots: Vec<SnapshotName>,
    /// Whether `/var/lib/etcd` holds data.
    pub has_etcd_data: Option<bool>,
    /// The CA and member certificate files found on the host, when the action looks.
    pub certs: Option<CertFiles>,
    /// rkectl's helper binaries on the host (folder names under `/opt/rke/rkectl`), when
    /// the action looks.
    #[serde(default)]
    pub agents: Vec<String>,
    /// The cluster's members as this host's etcd reports them (names), when it runs.
    pub members: Option<Vec<String>>,
}

/// A member's certificate files on its host (`/etc/kubernetes/ssl`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertFiles {
    /// The fingerprint of `kube-ca.pem`, when the host has one.
    pub ca: Option<Fingerprint>,
    /// The member's `kube-etcd-<address>.pem` is there.
    pub cert: bool,
    /// The member's `kube-etcd-<address>-key.pem` is there.
    pub key: bool,
    /// The subject alternative names of the member's certificate; `None` when it is not
    /// there or holds no certificate.
    #[serde(default)]
    pub cert_sans: Option<SanSet>,
}

impl CertFiles {
    /// Whether any of the three files is there.
    pub fn any(&self) -> bool {
        self.ca.is_some() || self.cert || self.key
    }
}

/// A container as refresh saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerFacts {
    pub image: String,
    pub running: bool,
    /// The `io.rkectl.spec-hash` label: which spec created it.
    pub spec_hash: Option<String>,
    /// Who made it, as its labels and command tell.
    pub made_by: MadeBy,
    /// Entrypoint then command.
    #[serde(default)]
    pub args: Vec<String>,
    /// Its environment: each name, with how its value compares with what rkectl checks it
    /// against (see [`EnvValue`]).
    #[serde(default)]
    pub env: BTreeMap<String, EnvValue>,
    /// Its bind mounts.
    #[serde(default)]
    pub binds: Vec<String>,
}

/// Who made a container.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MadeBy {
    Rkectl,
    Rke,
    /// Neither label nor command says.
    Unknown,
}

impl MadeBy {
    /// `that RKE made`, for the plan's words on what a step replaces.
    pub fn phrase(self) -> &'static str {
        match self {
            MadeBy::Rke => "that RKE made",
            MadeBy::Rkectl => "that rkectl made",
            MadeBy::Unknown => "that neither RKE nor rkectl made",
        }
    }
}

/// One environment variable of a container, as a plan keeps it: never its value nor a hash
/// of it (RKE hands its recurring service the S3 keys this way, and a plan, the journal and
/// `--json` travel further than cluster.yml: a short unsalted hash would let anyone who sees
/// one confirm a guessed key offline), only how it compares with the value rkectl checks it
/// against, for the cluster.yml refresh read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EnvValue {
    /// The value rkectl would set (or, for RKE's service, the one cluster.yml's keys give).
    Matches,
    /// Another value than that one.
    Differs,
    /// rkectl checks no value for this name (the image's own `PATH`…).
    NotCompared,
}

/// An environment (`NAME=value` entries) as name → how its value compares with `expected`
/// (entries of the same form).
pub fn compare_env<'a>(env: impl IntoIterator<Item = &'a String>, expected: &[String]) -> BTreeMap<String, EnvValue> {
    fn split(e: &str) -> (&str, &str) {
        e.split_once('=').unwrap_or((e, ""))
    }
    let expected: BTreeMap<&str, &str> = expected.iter().map(|e| split(e)).collect();
    env.into_iter()
        .map(|e| {
            let (k, v) = split(e);
            let seen = match expected.get(k) {
                Some(want) if *want == v => EnvValue::Matches,
                Some(_) => EnvValue::Differs,
                None => EnvValue::NotCompared,
            };
            (k.to_string(), seen)
        })
        .collect()
}

/// One copy of a snapshot on a host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotCopy {
    /// A plain database, or rke-tools' archive (preferred when a host has both).
    pub format: SnapshotFormat,
    pub size: u64,
    /// Seconds since the Unix epoch.
    pub modified: i64,
    /// Computed by the checksum checker when the action needs it.
    pub checksum: Option<Checksum>,
    /// etcd's own hash check of the file; `Some(false)` means corrupt.
    pub etcd_ok: Option<bool>,
    /// Why the check failed, if it did.
    pub problem: Option<String>,
    /// For an archive: the database inside, when it was checked.
    #[serde(default)]
    pub db: Option<SnapshotFacts>,
    /// The archive carries the cluster state (RKE's state file).
    #[serde(default)]
    pub has_state: bool,
    /// rkectl's record says every etcd host got this same copy (a one-time save by
    /// rkectl); copies without it (RKE's, recurring ones) are each host's own.
    #[serde(default)]
    pub identical_everywhere: bool,
}

/// The S3 side.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct S3Facts {
    pub target: S3Target,
    /// Snapshots in the bucket (folder), with their recorded checksum.
    pub snapshots: BTreeMap<SnapshotName, S3Copy>,
    /// The names of the other snapshots there, when the action looks at one only (as for
    /// a host's, not part of the plan).
    #[serde(skip)]
    pub other_snapshots: Vec<SnapshotName>,
}

/// A snapshot stored in S3.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct S3Copy {
    /// A plain database, or rke-tools' archive (`<name>.zip`).
    pub format: SnapshotFormat,
    pub size: u64,
    /// The object's ETag (it changes when the object is replaced).
    #[serde(default)]
    pub etag: String,
    pub modified: i64,
    /// From the manifest stored with the object; `None` for objects rkectl did not write.
    pub checksum: Option<Checksum>,
    /// Whether RKE's state was stored with it, sealed with a passphrase, in rkectl's manifest.
    #[serde(default)]
    pub has_sealed_state: bool,
    /// Whether the archive carries the cluster state (known when it was looked at).
    #[serde(default)]
    pub has_state: bool,
}
