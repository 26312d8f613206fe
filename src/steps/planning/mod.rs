//! What a step kind's planning reads and adds to: the compiler's input (cluster, action,
//! what was observed), the steps planned so far, and what the action decided before any
//! step (which copy of a snapshot a restore reads, which snapshot a prune keeps).
//!
//! `plan::compile` drives it: for each template line it asks each kind to plan, and wires
//! what the kinds add into the graph. Nothing here does I/O.

use super::{Step, StepKind};
use crate::config::{Cluster, Node, RecurringSnapshots};
use crate::etcd::names;
use crate::model::action::{ActionSpec, PrunePolicy, RemovedMember, RestoreSearch};
use crate::model::observed::{HostFacts, Observed, SnapshotCopy};
use crate::model::step::Pin;
use crate::model::{HostAddr, S3Target, SnapshotFacts, SnapshotFormat, SnapshotName};
use miette::Diagnostic;
use std::collections::{HashMap, HashSet};

mod named_snapshot;
mod prune;
mod reference;

pub use prune::{newest_recurring, prune_candidates};

/// Everything the compiler needs; all of it already in memory.
pub struct CompileInput<'a> {
    pub cluster: &'a Cluster,
    pub cluster_hash: &'a str,
    pub action: &'a ActionSpec,
    pub observed: &'a Observed,
    pub removed_members: &'a [RemovedMember],
    /// The fingerprint of the cluster's CA, when there is a PKI.
    pub pki_ca: Option<&'a crate::rke::pki::Fingerprint>,
    /// Now, in seconds since the Unix epoch (prune by age).
    pub now: i64,
}

/// Why an action cannot be planned; nothing has been changed anywhere.
#[derive(Debug, thiserror::Error, Diagnostic)]
pub enum CompileError {
    #[error(transparent)]
    #[diagnostic(code(rkectl::plan::template))]
    Template(#[from] TemplateError),
    #[error("snapshot {name} is not on any etcd host (looked for {name} and {name}.zip in {dir} on {hosts})")]
    #[diagnostic(code(rkectl::plan::snapshot_missing))]
    SnapshotMissing {
        name: SnapshotName,
        dir: &'static str,
        hosts: String,
        /// The nearest names there are, and where else to look.
        #[help]
        nearest: String,
    },
    #[error("snapshot {name} is not in {target}")]
    #[diagnostic(code(rkectl::plan::s3_snapshot_missing))]
    S3SnapshotMissing {
        name: SnapshotName,
        target: String,
        /// The nearest names in the bucket, and what else to check.
        #[help]
        nearest: String,
    },
    #[error("there is no snapshot {name} to delete (looked in {looked})")]
    #[diagnostic(code(rkectl::plan::unknown_snapshot))]
    UnknownSnapshot {
        name: SnapshotName,
        looked: String,
        #[help]
        nearest: String,
    },
    #[error("the copies of snapshot {name} differ and no good copy can be chosen: {groups}")]
    #[diagnostic(
        code(rkectl::plan::snapshot_inconsistent),
        help(
            "every copy passes etcd's hash check, so rkectl cannot tell which is right: remove the wrong copies from /opt/rke/etcd-snapshots, or restore from S3 with --s3"
        )
    )]
    SnapshotInconsistent { name: SnapshotName, groups: String },
    #[error("every copy of snapshot {name} fails etcd's hash check: {problems}")]
    #[diagnostic(code(rkectl::plan::snapshot_corrupt), help("restore another snapshot, or this one from S3 with --s3"))]
    SnapshotCorrupt { name: SnapshotName, problems: String },
    #[error("no etcd member is running, so there is nothing to take a snapshot of")]
    #[diagnostic(code(rkectl::plan::no_member), help("start the etcd plane with `rkectl up`, or restore a snapshot"))]
    NoRunningMember,
    #[error("{host} is not an etcd host of cluster.yml, so a drill cannot run there")]
    #[diagnostic(
        code(rkectl::plan::drill_host),
        help("name one of the etcd hosts' addresses with --host, or leave it out")
    )]
    DrillHostUnknown { host: HostAddr },
}

/// Why a template could not be used (a bug in `plans/`, caught by tests).
#[derive(Debug, thiserror::Error)]
#[error("template plans/{file} is invalid: {reason}")]
pub struct TemplateError {
    pub file: String,
    pub reason: String,
}

/// A plan being built: what each step kind's planning reads and adds to.
pub(crate) struct Builder<'a> {
    pub(crate) input: &'a CompileInput<'a>,
    pub(crate) steps: Vec<Step>,
    /// Kinds planned on each host (later kinds look at earlier ones).
    pub(crate) planned: HashSet<(HostAddr, StepKind)>,
    /// Which copy of the snapshot is the reference, for restore.
    pub(crate) reference: Option<Reference>,
    /// Copies planned so far (they are spread over the hosts that have a good copy).
    pub(crate) fetches: usize,
    /// Nodes by address (plans of a thousand hosts look nodes up per step).
    nodes: HashMap<&'a HostAddr, &'a Node>,
    pub(crate) notes: Vec<String>,
    /// Hosts where RKE's own recurring snapshot service stays.
    pub(crate) kept_rke_rolling: Vec<String>,
    /// The snapshot a prune keeps whatever its policy says: the newest recurring one.
    pub(crate) prune_keeps: Option<SnapshotName>,
}

impl<'a> Builder<'a> {
    /// Starts a plan for `input`.
    pub(crate) fn new(input: &'a CompileInput<'a>) -> Self {
        Builder {
            input,
            steps: Vec::new(),
            planned: HashSet::new(),
            reference: None,
            fetches: 0,
            nodes: input.cluster.nodes.iter().map(|n| (&n.address, n)).collect(),
            notes: Vec::new(),
            kept_rke_rolling: Vec::new(),
            prune_keeps: None,
        }
    }

    pub(crate) fn cluster(&self) -> &Cluster {
        self.input.cluster
    }

    pub(crate) fn etcd_nodes(&self) -> Vec<&Node> {
        self.cluster().etcd_nodes().collect()
    }

    pub(crate) fn node(&self, addr: &HostAddr) -> Option<&'a Node> {
        self.nodes.get(addr).copied()
    }

    /// The host a drill runs on: the one named, else the first etcd host that holds the
    /// snapshot (no copy to move), else the first etcd host.
    pub(crate) fn drill_host(&self) -> Result<HostAddr, CompileError> {
        let ActionSpec::EtcdSnapshotDrill { host, .. } = self.input.action else {
            unreachable!("only a drill's template names the drill host")
        };
        let etcd = self.etcd_nodes();
        if let Some(h) = host {
            return etcd
                .iter()
                .find(|n| &n.address == h)
                .map(|n| n.address.clone())
                .ok_or_else(|| CompileError::DrillHostUnknown { host: h.clone() });
        }
        let holder = match &self.reference {
            Some(Reference::Chosen(r)) => r.good.first().cloned(),
            _ => None,
        };
        Ok(holder.unwrap_or_else(|| etcd[0].address.clone()))
    }

    /// The snapshot a restore or a drill reads.
    pub(crate) fn restored_snapshot(&self) -> Option<&'a SnapshotName> {
        match self.input.action {
            ActionSpec::EtcdSnapshotRestore { name, .. } | ActionSpec::EtcdSnapshotDrill { name, .. } => Some(name),
            _ => None,
        }
    }

    /// The host a snapshot is taken on: the first etcd host whose etcd runs.
    pub(crate) fn snapshot_source(&self) -> Result<HostAddr, CompileError> {
        let nodes = self.etcd_nodes();
        if let Observed::Offline = self.input.observed {
            return Ok(nodes[0].address.clone());
        }
        nodes
            .iter()
            .find(|n| {
                self.input
                    .observed
                    .host(&n.address)
                    .and_then(|f| f.containers.get(names::ETCD))
                    .is_some_and(|c| c.running)
            })
            .map(|n| n.address.clone())
            .ok_or(CompileError::NoRunningMember)
    }

    pub(crate) fn running_members(&self) -> Vec<&Node> {
        self.etcd_nodes()
            .into_iter()
            .filter(|n| {
                self.input
                    .observed
                    .host(&n.address)
                    .and_then(|f| f.containers.get(names::ETCD))
                    .is_some_and(|c| c.running)
            })
            .collect()
    }

    /// Member names the running cluster reports.
    pub(crate) fn current_members(&self) -> Option<Vec<String>> {
        self.etcd_nodes().iter().filter_map(|n| self.input.observed.host(&n.address)?.members.clone()).next()
    }

    /// What the action needs decided before any step is planned (the reference copy, the
    /// snapshot a prune keeps), and the plan's notes on it.
    pub(crate) fn prepare(&mut self) -> Result<(), CompileError> {
        match self.input.action {
            ActionSpec::EtcdSnapshotDrill { name, from, .. } => {
                self.reference = Some(self.choose_reference(name, from)?);
                self.notes.push(
                    "A drill changes nothing of the cluster: the snapshot is restored inside a helper container, served there on unix sockets only (no port is open), and removed with it.".into(),
                );
            }
            ActionSpec::EtcdSnapshotRestore { name, from } => {
                let r = self.choose_reference(name, from)?;
                match &r {
                    Reference::Chosen(r) => {
                        let hosts = self.etcd_nodes().len();
                        let src = match &r.from_s3 {
                            // The bucket's copy is the reference; bytes move only to hosts without it.
                            Some(t) if r.good.len() == hosts => {
                                format!("as it is in {t}, from the copies every etcd host already holds (nothing is downloaded)")
                            }
                            Some(t) => format!("from {t}"),
                            None => "from the etcd hosts".into(),
                        };
                        self.notes.push(format!(
                            "Restoring snapshot {} ({}) {src}; the current etcd data on every etcd host will be deleted.",
                            r.format.file_name(name),
                            r.pin
                        ));
                        self.notes.extend(r.why.iter().cloned());
                    }
                    Reference::Unknown => self.notes.push(format!(
                        "Restoring snapshot {name}; its copies are not known (offline plan): this plan is for review and cannot be applied."
                    )),
                }
                self.reference = Some(r);
            }
            ActionSpec::EtcdSnapshotSave { name, generated_name, s3, include_state, seal_state } => {
                if *generated_name {
                    self.notes.push(format!("Name of the snapshot is not specified using [{name}]"));
                }
                if s3.is_some() && !include_state && !seal_state {
                    self.notes.push(
                        "The S3 copy will not carry the cluster state (its CA and keys): restoring it where there is no cluster.rkestate will need that file. To store it, sealed, beside the snapshot: --state-passphrase-file FILE (or RKECTL_STATE_PASSPHRASE); inside the archive in clear, as RKE does: --include-state.".into(),
                    );
                }
            }
            ActionSpec::EtcdSnapshotPrune { policy, s3 } => {
                self.keep_newest_snapshot(policy, s3.is_some());
                self.note_one_time_snapshots(s3.is_some());
            }
            ActionSpec::EtcdSnapshotDelete { name, s3 } => {
                self.check_named_snapshot(name, s3.is_some())?;
                if let (None, Some(configured)) = (s3, self.cluster().configured_s3()) {
                    // As RKE's delete does: S3 only with --s3, though saves upload there.
                    self.notes.push(format!(
                        "Only the etcd hosts' copies are deleted; a copy in {} stays. Add --s3 to delete it too.",
                        configured.target()
                    ));
                }
            }
            ActionSpec::Up => {
                if let RecurringSnapshots::BackupConfig {
                    interval_hours,
                    retention,
                    overrides_legacy: Some((c, r)),
                    ..
                } = &self.cluster().etcd.recurring
                {
                    self.notes.push(format!(
                        "services.etcd.backup_config overrides the legacy creation={c}/retention={r}: snapshots every {interval_hours}h, keeping {retention}."
                    ));
                }
            }
            _ => {}
        }
        if let Observed::Offline = self.input.observed {
            self.notes.push("Planned offline: hosts were not contacted and their state is not shown.".into());
        }
        Ok(())
    }

    /// The name the member on `node` has now, when cluster.yml gives it another.
    pub(crate) fn renamed_member(&self, node: &Node) -> Option<String> {
        let etcd = self.input.observed.host(&node.address)?.containers.get(names::ETCD)?;
        crate::etcd::renamed_member(node, etcd).map(str::to_string)
    }

    /// The copy chosen for a restore or a drill; `None` offline (or for other actions).
    pub(crate) fn chosen(&self) -> Option<&Chosen> {
        match &self.reference {
            Some(Reference::Chosen(r)) => Some(r),
            _ => None,
        }
    }

    pub(crate) fn facts(&self, host: &HostAddr) -> Option<&HostFacts> {
        self.input.observed.host(host)
    }
}

/// The copy of the snapshot that every member is restored from (or a drill reads).
// One per plan: the size difference costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub(crate) enum Reference {
    /// Planned offline: no copy was looked at, so none is chosen.
    Unknown,
    /// The copy chosen.
    Chosen(Chosen),
}

/// The copy chosen, and where it is.
#[derive(Debug, Clone)]
pub(crate) struct Chosen {
    /// What it is.
    pub(crate) pin: Pin,
    pub(crate) format: SnapshotFormat,
    /// The database inside an archive, when it was checked.
    pub(crate) db: Option<SnapshotFacts>,
    /// Copies come from S3 rather than from hosts.
    pub(crate) from_s3: Option<S3Target>,
    /// Hosts whose own copy is the reference, in cluster.yml order.
    pub(crate) good: Vec<HostAddr>,
    pub(crate) good_set: HashSet<HostAddr>,
    /// Why this copy, when it needs saying.
    pub(crate) why: Vec<String>,
}
