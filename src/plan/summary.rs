//! What a plan says to a person around its apply: the line it starts and ends with, and
//! what a confirmation asks about.

use super::{ActionSpec, Plan};
use crate::model::step::StepId;
use crate::steps::StepKind;
use std::collections::HashSet;

impl ActionSpec {
    /// The log line an apply of this action starts with (RKE's words where RKE has the command).
    pub fn start_line(&self) -> &'static str {
        match self {
            ActionSpec::Up => "Building up etcd plane..",
            ActionSpec::EtcdSnapshotSave { .. } => "Starting saving snapshot on etcd hosts",
            ActionSpec::EtcdSnapshotRestore { .. } => "Starting restore on etcd hosts",
            ActionSpec::EtcdSnapshotDrill { .. } => "Starting snapshot drill on an etcd host",
            ActionSpec::EtcdSnapshotDelete { .. } => "Starting deleting snapshot on etcd hosts",
            ActionSpec::EtcdSnapshotPrune { .. } => "Starting pruning snapshots on etcd hosts",
            ActionSpec::Cleanup => "Removing rkectl's helper binaries from the etcd hosts",
        }
    }

    /// The log line a finished apply of this action ends with.
    pub fn done_line(&self) -> String {
        match self {
            ActionSpec::Up => "Finished building up the etcd plane".into(),
            ActionSpec::EtcdSnapshotSave { name, .. } => format!("Finished saving snapshot [{name}] on all etcd hosts"),
            ActionSpec::EtcdSnapshotRestore { .. } => "Finished restoring on all etcd hosts".into(),
            ActionSpec::EtcdSnapshotDrill { name, .. } => format!("Finished drilling snapshot [{name}]: it restores"),
            ActionSpec::EtcdSnapshotDelete { name, .. } => format!("Finished deleting snapshot [{name}]"),
            ActionSpec::EtcdSnapshotPrune { .. } => "Finished pruning snapshots".into(),
            ActionSpec::Cleanup => "Finished removing rkectl's helper binaries".into(),
        }
    }
}

impl Plan {
    /// The plan without the steps in `done`: what a resume still has to do, and so what
    /// its confirmation asks about (data a stopped restore already deleted is not asked for
    /// again; a host it has not cleaned yet is).
    pub fn left(&self, done: &HashSet<StepId>) -> Plan {
        let mut left = self.clone();
        left.steps.retain(|s| !done.contains(&s.id));
        left
    }

    /// What a confirmation asks about: the data the plan deletes, and what it replaces that
    /// rkectl did not make.
    pub fn destruction_summary(&self) -> String {
        let plan = self;
        let hosts: HashSet<_> =
            plan.steps.iter().filter(|s| s.kind().is_destructive()).filter_map(|s| s.host.as_ref()).collect();
        let mut parts = Vec::new();
        // The data goes with the steps that remove the member and clean its host; a resume
        // past them only restores onto hosts whose data is gone already.
        let removing: HashSet<_> = plan
            .steps
            .iter()
            .filter(|s| matches!(s.kind(), StepKind::CleanHost | StepKind::RemoveEtcd))
            .filter_map(|s| s.host.as_ref())
            .collect();
        match &plan.action {
            ActionSpec::EtcdSnapshotRestore { name, .. } if removing.is_empty() && !hosts.is_empty() => {
                parts.push(format!(
                    "restore snapshot {name} onto {}, whose etcd data was already removed",
                    crate::model::counted(hosts.len(), "host")
                ))
            }
            ActionSpec::EtcdSnapshotRestore { name, .. } => parts.push(format!(
                "Restore snapshot {name}: the current etcd data on {} will be deleted",
                crate::model::counted(removing.len(), "host")
            )),
            _ if plan.is_destructive() => parts.push(format!(
                "{}: data on {} will be deleted",
                plan.title,
                crate::model::counted(hosts.len().max(1), "host")
            )),
            _ => {}
        }
        let replaced = plan.replacements();
        if !replaced.is_empty() {
            let on: HashSet<_> = replaced.iter().filter_map(|(s, _)| s.host.as_ref()).collect();
            parts.push(format!(
                "{} rkectl did not make will be replaced on {} (see `replaces` above)",
                crate::model::counted(replaced.len(), "thing"),
                crate::model::counted(on.len(), "host")
            ));
        }
        parts.join("; ")
    }
}
