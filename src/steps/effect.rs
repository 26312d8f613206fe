//! Per-host views of state, before and after a plan: what the diff shows.
//!
//! The "before" comes from observation; the "after" is derived by folding each planned
//! step's effect over it, so the diff can never disagree with the steps.

use super::Step;
use crate::etcd::names;
use crate::model::observed::{HostFacts, Observed};
use crate::model::step::human_bytes;
use crate::model::{HostAddr, SnapshotFormat, SnapshotName};
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
        let s3 = observed.s3()?;
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

    /// The lines listed even when they do not change: the snapshots a plan shows are the
    /// ones its action is about (a copy that stays CORRUPT, the copy every member is
    /// restored from).
    pub fn always_shown(&self) -> Vec<String> {
        self.resources
            .iter()
            .filter(|(k, _)| matches!(k, Resource::Snapshot(_) | Resource::Staged(_)))
            .map(|(k, v)| format!("{k}: {v}"))
            .collect()
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

/// The views a step's effect changes: those of the host it acts on and of S3.
pub struct Effect<'a> {
    views: &'a mut BTreeMap<ViewKey, View>,
    host: Option<HostAddr>,
    /// The etcd image cluster.yml names: what a member that starts runs.
    pub etcd_image: &'a str,
}

impl Effect<'_> {
    /// What is on the host the step acts on; `None` for cluster-wide steps.
    pub fn host(&mut self) -> Option<&mut BTreeMap<Resource, String>> {
        let key = ViewKey::Host(self.host.clone()?);
        Some(&mut self.views.entry(key).or_default().resources)
    }

    /// What is in S3.
    pub fn s3(&mut self) -> &mut BTreeMap<Resource, String> {
        &mut self.views.entry(ViewKey::S3).or_default().resources
    }
}

/// Applies a step's effect to the views of the places it acts on.
pub fn apply(step: &Step, views: &mut BTreeMap<ViewKey, View>, etcd_image: &str) {
    if let Some(h) = &step.host {
        views.entry(ViewKey::Host(h.clone())).or_default();
    }
    step.action.effect(&mut Effect { views, host: step.host.clone(), etcd_image });
}
