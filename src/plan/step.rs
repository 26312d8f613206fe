//! Steps: the typed units of work a plan is made of.
//!
//! A [`Step`] is data: an id, the host it runs on (none for barriers and cluster-wide
//! checks), the ids it waits for, and a [`StepAction`] with the parameters that make it
//! idempotent (which snapshot, which checksum, which initial cluster). It serialises to the
//! plan file and the journal, so it holds no secret: S3 keys and private keys are looked up
//! at run time.

use crate::config::{HostAddr, S3Target};
use serde::{Deserialize, Serialize};
use std::fmt;

pub use crate::model::{
    Checksum, ClusterState, InitialCluster, RollingSettings, SnapshotFacts, SnapshotFormat, SnapshotLocation,
    SnapshotName, SnapshotNameError,
};

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

/// What a step does, with its parameters. Serialised with a kebab-case `kind` tag.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum StepAction {
    /// Waits for every step before it; does nothing itself.
    Barrier { reason: String },
    /// Opens the SSH session and the Docker tunnel; checks Docker.
    Dial,
    /// Pulls images the host lacks.
    PullImages { images: Vec<String> },
    /// Checks that the host's own copy of a snapshot is still the one the plan pinned.
    /// `expect` is `None` only in offline plans, which cannot be applied.
    VerifySnapshot { snapshot: SnapshotName, format: SnapshotFormat, expect: Option<SnapshotFacts> },
    /// Gives the host a verified copy of a snapshot, `into` the snapshot folder when the
    /// host has no file of that name, else staged beside it (a host's copy is never
    /// overwritten). `expect` is `None` when the snapshot is made by this plan: the source's
    /// record is used.
    FetchSnapshot {
        snapshot: SnapshotName,
        format: SnapshotFormat,
        expect: Option<Pin>,
        source: SnapshotSource,
        into: SnapshotLocation,
    },
    /// Unpacks the database from the snapshot's archive for the restore, verified.
    UnpackSnapshot { snapshot: SnapshotName, from: SnapshotLocation, expect: Option<SnapshotFacts> },
    /// Removes the etcd container and the etcd data (`kube-cleaner`).
    CleanHost,
    /// Restores the snapshot into a fresh data folder (`etcd-restore`).
    Restore {
        snapshot: SnapshotName,
        from: RestoreFile,
        expect: Option<SnapshotFacts>,
        member: String,
        initial_cluster: InitialCluster,
    },
    /// Removes what the restore staged (copies and unpacked databases).
    DiscardStaged { snapshot: SnapshotName },
    /// Restores the snapshot into scratch space inside a helper container, serves it from
    /// a throwaway etcd on that container's loopback, and reports what it holds
    /// (`etcd-snapshot-drill`); the member, its data and its certificates are untouched.
    DrillSnapshot {
        snapshot: SnapshotName,
        format: SnapshotFormat,
        from: SnapshotLocation,
        /// Where the drilled copy came from, for the report (`host H's own copy`, `a copy from s3://…`).
        #[serde(default)]
        origin: String,
        compare_live: bool,
    },
    /// Places the member's certificates and the CA on the host.
    DeployCerts { member: String, replaces: Option<Replacement> },
    /// Creates and starts the `etcd` container (replacing one that differs), or restarts
    /// one that stays as it is when `restart` (its certificates were just replaced).
    StartEtcd {
        member: String,
        initial_cluster: InitialCluster,
        cluster_state: ClusterState,
        replaces: Option<Replacement>,
        #[serde(default)]
        restart: bool,
    },
    /// Adds a member to the running cluster before it starts (`etcdctl member add`).
    MemberAdd { member: String, peer_url: String },
    /// Removes a member from the running cluster (`etcdctl member remove`).
    MemberRemove { member: String },
    /// Stops and removes the `etcd` container of a member that leaves.
    RemoveEtcd,
    /// Runs `rke-log-linker` for a container.
    LogLinker { container: String },
    /// Removes `rke-log-linker`.
    RemoveLogLinker,
    /// Checks that every member is healthy and, after a restore, holds the same data.
    HealthCheck { members: Vec<HostAddr>, same_revision: bool },
    /// Takes a snapshot on this host (`etcd-snapshot-once`) as rke-tools' archive,
    /// optionally with the cluster state inside, optionally streaming it to S3.
    SaveSnapshot {
        snapshot: SnapshotName,
        upload: Option<S3Target>,
        include_state: bool,
        /// RKE's state goes beside the S3 copy, sealed with the user's passphrase.
        #[serde(default)]
        seal_state: bool,
    },
    /// Starts or replaces `etcd-rolling-snapshots`.
    StartRollingSnapshots { settings: RollingSettings, replaces: Option<Replacement> },
    /// Removes `etcd-rolling-snapshots`.
    RemoveRollingSnapshots { replaces: Option<Replacement> },
    /// Deletes a snapshot from the host or from S3.
    DeleteSnapshot { snapshot: SnapshotName, from: DeleteFrom },
    /// Removes rkectl's helper binaries (their folders under `/opt/rke/rkectl`).
    RemoveAgent { versions: Vec<String> },
}

/// The closed set of step kinds, as templates in `plans/` name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StepKind {
    Barrier,
    Dial,
    PullImages,
    VerifySnapshot,
    FetchSnapshot,
    UnpackSnapshot,
    CleanHost,
    Restore,
    DiscardStaged,
    DrillSnapshot,
    DeployCerts,
    StartEtcd,
    MemberAdd,
    MemberRemove,
    RemoveEtcd,
    LogLinker,
    RemoveLogLinker,
    HealthCheck,
    SaveSnapshot,
    StartRollingSnapshots,
    RemoveRollingSnapshots,
    DeleteSnapshot,
    RemoveAgent,
}

impl StepKind {
    /// The kebab-case name (`clean-host`).
    pub fn name(self) -> &'static str {
        match self {
            StepKind::Barrier => "barrier",
            StepKind::Dial => "dial",
            StepKind::PullImages => "pull-images",
            StepKind::VerifySnapshot => "verify-snapshot",
            StepKind::FetchSnapshot => "fetch-snapshot",
            StepKind::UnpackSnapshot => "unpack-snapshot",
            StepKind::CleanHost => "clean-host",
            StepKind::Restore => "restore",
            StepKind::DiscardStaged => "discard-staged",
            StepKind::DrillSnapshot => "drill-snapshot",
            StepKind::DeployCerts => "deploy-certs",
            StepKind::StartEtcd => "start-etcd",
            StepKind::MemberAdd => "member-add",
            StepKind::MemberRemove => "member-remove",
            StepKind::RemoveEtcd => "remove-etcd",
            StepKind::LogLinker => "log-linker",
            StepKind::RemoveLogLinker => "remove-log-linker",
            StepKind::HealthCheck => "health-check",
            StepKind::SaveSnapshot => "save-snapshot",
            StepKind::StartRollingSnapshots => "start-rolling-snapshots",
            StepKind::RemoveRollingSnapshots => "remove-rolling-snapshots",
            StepKind::DeleteSnapshot => "delete-snapshot",
            StepKind::RemoveAgent => "remove-agent",
        }
    }

    /// Whether the step changes something that cannot be taken back (data is deleted).
    pub fn is_destructive(self) -> bool {
        matches!(
            self,
            StepKind::CleanHost
                | StepKind::Restore
                | StepKind::RemoveEtcd
                | StepKind::MemberRemove
                | StepKind::DeleteSnapshot
        )
    }

    /// Whether the step changes the cluster (anything but looking, dialing, pulling images
    /// and placing verified snapshot copies). A run that fails before any such step began
    /// changed nothing and is reported as refused.
    pub fn changes_cluster(self) -> bool {
        !matches!(
            self,
            StepKind::Barrier
                | StepKind::Dial
                | StepKind::PullImages
                | StepKind::VerifySnapshot
                | StepKind::FetchSnapshot
                | StepKind::UnpackSnapshot
                | StepKind::DrillSnapshot
                | StepKind::HealthCheck
        )
    }

    /// Whether re-running after a finished record may be skipped on resume. Dialing
    /// builds process-local state (the SSH session), so it is never skipped.
    pub fn skippable_on_resume(self) -> bool {
        !matches!(self, StepKind::Dial)
    }
}

impl fmt::Display for StepKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl StepAction {
    /// The step's kind.
    pub fn kind(&self) -> StepKind {
        match self {
            StepAction::Barrier { .. } => StepKind::Barrier,
            StepAction::Dial => StepKind::Dial,
            StepAction::PullImages { .. } => StepKind::PullImages,
            StepAction::VerifySnapshot { .. } => StepKind::VerifySnapshot,
            StepAction::FetchSnapshot { .. } => StepKind::FetchSnapshot,
            StepAction::UnpackSnapshot { .. } => StepKind::UnpackSnapshot,
            StepAction::CleanHost => StepKind::CleanHost,
            StepAction::Restore { .. } => StepKind::Restore,
            StepAction::DiscardStaged { .. } => StepKind::DiscardStaged,
            StepAction::DrillSnapshot { .. } => StepKind::DrillSnapshot,
            StepAction::DeployCerts { .. } => StepKind::DeployCerts,
            StepAction::StartEtcd { .. } => StepKind::StartEtcd,
            StepAction::MemberAdd { .. } => StepKind::MemberAdd,
            StepAction::MemberRemove { .. } => StepKind::MemberRemove,
            StepAction::RemoveEtcd => StepKind::RemoveEtcd,
            StepAction::LogLinker { .. } => StepKind::LogLinker,
            StepAction::RemoveLogLinker => StepKind::RemoveLogLinker,
            StepAction::HealthCheck { .. } => StepKind::HealthCheck,
            StepAction::SaveSnapshot { .. } => StepKind::SaveSnapshot,
            StepAction::StartRollingSnapshots { .. } => StepKind::StartRollingSnapshots,
            StepAction::RemoveRollingSnapshots { .. } => StepKind::RemoveRollingSnapshots,
            StepAction::DeleteSnapshot { .. } => StepKind::DeleteSnapshot,
            StepAction::RemoveAgent { .. } => StepKind::RemoveAgent,
        }
    }

    /// What the step replaces that rkectl did not make, if anything.
    pub fn replaces(&self) -> Option<&Replacement> {
        match self {
            StepAction::DeployCerts { replaces, .. }
            | StepAction::StartEtcd { replaces, .. }
            | StepAction::StartRollingSnapshots { replaces, .. }
            | StepAction::RemoveRollingSnapshots { replaces } => replaces.as_ref(),
            _ => None,
        }
    }

    /// One line saying what the step does, for plans and logs.
    pub fn describe(&self) -> String {
        let what = self.describe_action();
        match self.replaces() {
            Some(r) => format!("{what} ({r})"),
            None => what,
        }
    }

    fn describe_action(&self) -> String {
        match self {
            StepAction::Barrier { reason } => format!("wait: {reason}"),
            StepAction::Dial => "open SSH session and Docker tunnel, check Docker".into(),
            StepAction::PullImages { images } => format!("pull {}", images.join(", ")),
            StepAction::VerifySnapshot { snapshot, format, expect: Some(e) } => {
                format!(
                    "verify snapshot {} ({}, {})",
                    format.file_name(snapshot),
                    e.checksum.short(),
                    human_bytes(e.size)
                )
            }
            StepAction::VerifySnapshot { snapshot, format, expect: None } => {
                format!("verify snapshot {} (checksum not known offline)", format.file_name(snapshot))
            }
            StepAction::FetchSnapshot { snapshot, format, source, into, .. } => {
                let file = format.file_name(snapshot);
                let way = match source {
                    SnapshotSource::Host { .. } => {
                        " directly over the cluster network (through this workstation only if the hosts cannot reach each other)"
                    }
                    SnapshotSource::S3 { .. } => "",
                };
                match into {
                    SnapshotLocation::Listed => format!("copy snapshot {file} from {source}{way}"),
                    SnapshotLocation::Staged => {
                        format!("copy snapshot {file} from {source}{way}, staged apart from the host's snapshot folder")
                    }
                }
            }
            StepAction::UnpackSnapshot { snapshot, .. } => {
                format!("unpack the database of {snapshot}.zip for the restore")
            }
            StepAction::CleanHost => "remove etcd container and data (kube-cleaner)".into(),
            StepAction::DiscardStaged { snapshot } => format!("remove what was staged for {snapshot}"),
            StepAction::Restore { snapshot, member, .. } => {
                format!("restore {snapshot} as member {member} (etcd-restore)")
            }
            StepAction::DeployCerts { member, .. } => format!("place CA and certificates of {member}"),
            StepAction::DrillSnapshot { snapshot, format, origin, compare_live, .. } => {
                let staged = if origin.is_empty() { String::new() } else { format!(" ({origin})") };
                let live = if *compare_live { "; count the running cluster's keys too (read-only)" } else { "" };
                format!(
                    "drill {}{staged}: restore it inside a helper container, serve it on that container's loopback, count what it holds (etcd-snapshot-drill){live}",
                    format.file_name(snapshot)
                )
            }
            StepAction::StartEtcd { member, restart: true, .. } => {
                format!("restart etcd container, member {member}, to load its new certificates")
            }
            StepAction::StartEtcd { member, cluster_state, .. } => {
                format!("start etcd container, member {member}, initial cluster state {cluster_state}")
            }
            StepAction::MemberAdd { member, peer_url } => format!("add member {member} ({peer_url})"),
            StepAction::MemberRemove { member } => format!("remove member {member}"),
            StepAction::RemoveEtcd => "stop and remove etcd container".into(),
            StepAction::LogLinker { container } => format!("link {container} logs (rke-log-linker)"),
            StepAction::RemoveLogLinker => "remove rke-log-linker".into(),
            StepAction::HealthCheck { members, same_revision } => {
                let what = if *same_revision { "healthy, same revision" } else { "healthy" };
                format!("check {} member(s) {what}", members.len())
            }
            StepAction::SaveSnapshot { snapshot, upload, include_state, seal_state } => {
                let state = if *include_state { " with the cluster state inside" } else { "" };
                let sealed = if *seal_state { ", the cluster state sealed beside it" } else { "" };
                match upload {
                    Some(t) => {
                        format!("save snapshot {snapshot}.zip{state} (etcd-snapshot-once), stream to {t}{sealed}")
                    }
                    None => format!("save snapshot {snapshot}.zip{state} (etcd-snapshot-once)"),
                }
            }
            StepAction::StartRollingSnapshots { settings, .. } => {
                format!("run etcd-rolling-snapshots ({})", describe_rolling(settings))
            }
            StepAction::RemoveRollingSnapshots { .. } => "remove etcd-rolling-snapshots".into(),
            StepAction::RemoveAgent { versions } => {
                format!("remove rkectl's helper binaries {}", versions.join(", "))
            }
            StepAction::DeleteSnapshot { snapshot, from } => match from {
                DeleteFrom::Host => format!("delete snapshot {snapshot}"),
                DeleteFrom::S3 { target } => format!("delete snapshot {snapshot} from {target}"),
            },
        }
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

/// One step of a plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    pub id: StepId,
    /// The host it acts on; `None` for barriers and cluster-wide steps.
    pub host: Option<HostAddr>,
    /// Steps that must finish first.
    pub after: Vec<StepId>,
    #[serde(flatten)]
    pub action: StepAction,
}

impl Step {
    /// The step's kind.
    pub fn kind(&self) -> StepKind {
        self.action.kind()
    }
}

#[cfg(test)]
mod tests {
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

    #[test]
    fn steps_serialise_with_kebab_case_kinds() {
        let s = Step {
            id: StepId("clean-host@10.0.0.1".into()),
            host: Some(HostAddr("10.0.0.1".into())),
            after: vec![StepId("barrier#1".into())],
            action: StepAction::CleanHost,
        };
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(v["kind"], "clean-host");
        assert_eq!(v["after"][0], "barrier#1");
        let back: Step = serde_json::from_value(v).unwrap();
        assert_eq!(back, s);
    }
}
