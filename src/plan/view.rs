//! Per-host views of state, before and after a plan: what the diff shows.
//!
//! The "before" comes from observation; the "after" is derived by folding each planned
//! step's effect over it, so the diff can never disagree with the steps.

use super::observed::{HostFacts, Observed};
use super::step::{
    DeleteFrom, SnapshotFormat, SnapshotLocation, SnapshotName, Step, StepAction, describe_rolling, human_bytes,
};
use crate::config::HostAddr;
use crate::etcd::names;
use std::collections::BTreeMap;
use std::fmt;

/// Something on a host (or in S3) that a plan may change.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Resource {
    Container(String),
    EtcdData,
    Certificates,
    Snapshot(SnapshotName),
    /// A copy staged for a restore (beside the host's own).
    Staged(SnapshotName),
    /// rkectl's helper binaries (`/opt/rke/rkectl/`).
    AgentBinaries,
}

impl fmt::Display for Resource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Resource::Container(n) => write!(f, "container {n}"),
            Resource::EtcdData => write!(f, "etcd data {}", crate::etcd::paths::DATA_DIR),
            Resource::Certificates => write!(f, "certificates {}", crate::etcd::paths::CERT_DIR),
            Resource::Snapshot(n) => write!(f, "snapshot {n}"),
            Resource::Staged(n) => write!(f, "staged copy of {n}"),
            Resource::AgentBinaries => write!(f, "rkectl binaries {}", crate::agent_binary::REMOTE_ROOT),
        }
    }
}

/// Where a view belongs: a host or the S3 bucket.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum ViewKey {
    Host(HostAddr),
    S3,
}

/// The state of one host (or of S3), as lines of `resource: state`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct View {
    /// Not observed (offline plan, or a host that could not be reached).
    pub unknown: bool,
    pub resources: BTreeMap<Resource, String>,
}

impl View {
    /// The view refresh gives of a host, limited to what the plan's snapshots concern.
    pub fn from_facts(facts: Option<&HostFacts>, snapshots_shown: &dyn Fn(&SnapshotName) -> bool) -> View {
        let Some(f) = facts else {
            return View { unknown: true, resources: BTreeMap::new() };
        };
        let mut r = BTreeMap::new();
        for name in [names::ETCD, names::ROLLING_SNAPSHOTS] {
            if let Some(c) = f.containers.get(name) {
                let state = if c.running { "running" } else { "stopped" };
                r.insert(Resource::Container(name.to_string()), format!("{state} {}", c.image));
            }
        }
        for name in names::TEMPORARY {
            if f.containers.contains_key(*name) {
                r.insert(Resource::Container(name.to_string()), "left over by an earlier run".into());
            }
        }
        if !f.agents.is_empty() {
            r.insert(Resource::AgentBinaries, f.agents.join(", "));
        }
        if let Some(true) = f.has_etcd_data {
            r.insert(Resource::EtcdData, "present".into());
        }
        if let Some(c) = f.certs.as_ref().filter(|c| c.any()) {
            let ca = match &c.ca {
                Some(fp) => format!("CA {}", fp.short()),
                None => "no CA".into(),
            };
            let member =
                if c.cert && c.key { "member certificate and key" } else { "member certificate or key MISSING" };
            r.insert(Resource::Certificates, format!("{ca}, {member}"));
        }
        for (name, copy) in &f.snapshots {
            if !snapshots_shown(name) {
                continue;
            }
            let mut s = describe_copy(name, copy.format, copy.size, copy.has_state);
            if let Some(c) = &copy.checksum {
                s.push_str(&format!(", {}", c.short()));
            }
            match (copy.etcd_ok, &copy.problem) {
                (Some(false), Some(p)) => s.push_str(&format!(", CORRUPT: {p}")),
                (Some(false), None) => s.push_str(", CORRUPT"),
                _ => {}
            }
            r.insert(Resource::Snapshot(name.clone()), s);
        }
        View { unknown: false, resources: r }
    }

    /// The view of S3 for the snapshots shown.
    pub fn from_s3(observed: &Observed, snapshots_shown: &dyn Fn(&SnapshotName) -> bool) -> Option<View> {
        let s3 = observed.s3.as_ref()?;
        let mut r = BTreeMap::new();
        for (name, copy) in &s3.snapshots {
            if snapshots_shown(name) {
                let mut s = describe_copy(name, copy.format, copy.size, copy.has_state);
                if let Some(c) = &copy.checksum {
                    s.push_str(&format!(", {}", c.short()));
                }
                r.insert(Resource::Snapshot(name.clone()), s);
            }
        }
        Some(View { unknown: false, resources: r })
    }

    /// Lines for the diff.
    pub fn lines(&self) -> Vec<String> {
        if self.unknown && self.resources.is_empty() {
            return vec!["(not observed)".to_string()];
        }
        self.resources.iter().map(|(k, v)| format!("{k}: {v}")).collect()
    }
}

/// `14 B`, or `snap.zip (with the cluster state), 14 B` for an archive.
fn describe_copy(name: &SnapshotName, format: SnapshotFormat, size: u64, has_state: bool) -> String {
    match format {
        SnapshotFormat::Raw => human_bytes(size),
        SnapshotFormat::Zip => {
            let state = if has_state { " (with the cluster state)" } else { "" };
            format!("{}{state}, {}", format.file_name(name), human_bytes(size))
        }
    }
}

/// Applies a step's effect to the view of the place it acts on.
pub fn apply(step: &Step, views: &mut BTreeMap<ViewKey, View>, etcd_image: &str) {
    let key = match (&step.host, &step.action) {
        (_, StepAction::DeleteSnapshot { from: DeleteFrom::S3 { .. }, .. }) => ViewKey::S3,
        (Some(h), _) => ViewKey::Host(h.clone()),
        (None, _) => return,
    };
    let view = views.entry(key).or_default();
    let r = &mut view.resources;
    match &step.action {
        StepAction::CleanHost => {
            r.remove(&Resource::Container(names::ETCD.into()));
            r.remove(&Resource::EtcdData);
        }
        StepAction::Restore { snapshot, expect, member, .. } => {
            let sum = expect.as_ref().map(|e| format!(", {}", e.checksum.short())).unwrap_or_default();
            r.insert(Resource::EtcdData, format!("restored from {snapshot}{sum} as {member}"));
        }
        StepAction::DeployCerts { member, .. } => {
            r.insert(Resource::Certificates, format!("the cluster's CA, {member}'s certificate and key"));
        }
        StepAction::StartEtcd { member, .. } => {
            r.insert(Resource::Container(names::ETCD.into()), format!("running {etcd_image}, member {member}"));
            r.entry(Resource::EtcdData).or_insert_with(|| "present".into());
        }
        StepAction::RemoveEtcd => {
            r.remove(&Resource::Container(names::ETCD.into()));
        }
        StepAction::FetchSnapshot { snapshot, format, expect, source, into } => {
            let what = match expect {
                Some(e) => e.to_string(),
                None => "copy".to_string(),
            };
            let what = match format {
                SnapshotFormat::Raw => what,
                SnapshotFormat::Zip => format!("{}, {what}", format.file_name(snapshot)),
            };
            match into {
                SnapshotLocation::Listed => {
                    r.insert(Resource::Snapshot(snapshot.clone()), format!("{what} (from {source})"));
                }
                SnapshotLocation::Staged => {
                    r.insert(Resource::Staged(snapshot.clone()), format!("{what} (from {source}), for the restore"));
                }
            }
        }
        StepAction::RemoveAgent { versions } => {
            let left: Vec<String> = r
                .get(&Resource::AgentBinaries)
                .map(|v| v.split(", ").filter(|x| !versions.iter().any(|r| r == x)).map(str::to_string).collect())
                .unwrap_or_default();
            if left.is_empty() {
                r.remove(&Resource::AgentBinaries);
            } else {
                r.insert(Resource::AgentBinaries, left.join(", "));
            }
        }
        StepAction::DiscardStaged { snapshot } => {
            r.remove(&Resource::Staged(snapshot.clone()));
        }
        // The drill's container, its scratch data and its etcd are gone when it ends.
        StepAction::DrillSnapshot { .. } => {}
        StepAction::SaveSnapshot { snapshot, upload, .. } => {
            r.insert(Resource::Snapshot(snapshot.clone()), "new snapshot".into());
            if upload.is_some() {
                views
                    .entry(ViewKey::S3)
                    .or_default()
                    .resources
                    .insert(Resource::Snapshot(snapshot.clone()), "new snapshot".into());
            }
        }
        StepAction::StartRollingSnapshots { settings, .. } => {
            r.insert(
                Resource::Container(names::ROLLING_SNAPSHOTS.into()),
                format!("running ({})", describe_rolling(settings)),
            );
        }
        StepAction::RemoveRollingSnapshots { .. } => {
            r.remove(&Resource::Container(names::ROLLING_SNAPSHOTS.into()));
        }
        StepAction::DeleteSnapshot { snapshot, .. } => {
            r.remove(&Resource::Snapshot(snapshot.clone()));
        }
        StepAction::Dial => {
            // Dialing removes temporary containers an earlier, killed run left behind.
            for name in names::TEMPORARY {
                r.remove(&Resource::Container(name.to_string()));
            }
        }
        StepAction::Barrier { .. }
        | StepAction::PullImages { .. }
        | StepAction::VerifySnapshot { .. }
        | StepAction::UnpackSnapshot { .. }
        | StepAction::MemberAdd { .. }
        | StepAction::MemberRemove { .. }
        | StepAction::LogLinker { .. }
        | StepAction::RemoveLogLinker
        | StepAction::HealthCheck { .. } => {}
    }
}
