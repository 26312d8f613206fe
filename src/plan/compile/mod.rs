//! The action compiler: template × cluster × observed state → [`Plan`].
//!
//! The template fixes which step kinds run where and in what order; for each (kind, host)
//! the compiler decides whether the step is needed and fills in its parameters from the
//! cluster and what was observed (which copy of a snapshot is the good one, whether a
//! member already runs with the wanted spec). Dependencies follow three rules:
//! - on one host, a step waits for the previous step planned on that host;
//! - in a one-at-a-time phase, a host's first step waits for the previous host's last one;
//! - a barrier waits for every step since the previous barrier, and everything after it
//!   waits for the barrier (one node instead of hosts² edges).

use super::step::{
    Checksum, Pin, SnapshotFacts, SnapshotFormat, SnapshotLocation, SnapshotName, Step, StepAction, StepId, StepKind,
};
use super::template::{Entry, HostSelector, Order, Phase, Template};
use super::{ActionSpec, FORMAT, HostChange, Plan, PrunePolicy, RestoreSearch};
use crate::config::{Cluster, HostAddr, Node, RecurringSnapshots, Role, S3Target};
use crate::etcd::names;
use crate::plan::observed::{Observed, SnapshotCopy};
use crate::plan::view::{View, ViewKey};
use miette::Diagnostic;
use std::collections::{BTreeMap, HashMap, HashSet};

/// A member that was deployed (per the cluster state file) but is no longer in cluster.yml.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemovedMember {
    pub address: HostAddr,
    pub member: String,
}

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
    Template(#[from] super::template::TemplateError),
    #[error("snapshot {name} is not on any etcd host (looked for {name} and {name}.zip in {dir} on {hosts})")]
    #[diagnostic(
        code(rkectl::plan::snapshot_missing),
        help("run `rkectl etcd snapshot-list` to see the snapshots there are, or restore from S3 with --s3")
    )]
    SnapshotMissing { name: SnapshotName, dir: &'static str, hosts: String },
    #[error("snapshot {name} is not in {target}")]
    #[diagnostic(
        code(rkectl::plan::s3_snapshot_missing),
        help("check --bucket-name, --folder and the name; `rkectl etcd snapshot-list --s3` lists the bucket")
    )]
    S3SnapshotMissing { name: SnapshotName, target: String },
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

/// A plan being built: what each step kind's planning reads and adds to.
pub(crate) struct Builder<'a> {
    pub(crate) input: &'a CompileInput<'a>,
    pub(crate) steps: Vec<Step>,
    ids: HashSet<StepId>,
    /// Last step on each host since the last barrier.
    tail: HashMap<HostAddr, StepId>,
    /// Cluster-wide steps since the last barrier.
    cluster_tail: Option<StepId>,
    barrier: Option<StepId>,
    barriers: usize,
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

/// Compiles `input.action` into a plan.
pub fn compile(input: &CompileInput<'_>) -> Result<Plan, CompileError> {
    let template = super::template::load(input.action.template_name())?;
    compile_with(&template, input)
}

/// Compiles with a given template (tests compile every template in `plans/`).
pub fn compile_with(template: &Template, input: &CompileInput<'_>) -> Result<Plan, CompileError> {
    let mut b = Builder {
        input,
        steps: Vec::new(),
        ids: HashSet::new(),
        tail: HashMap::new(),
        cluster_tail: None,
        barrier: None,
        barriers: 0,
        planned: HashSet::new(),
        reference: None,
        fetches: 0,
        nodes: input.cluster.nodes.iter().map(|n| (&n.address, n)).collect(),
        notes: Vec::new(),
        kept_rke_rolling: Vec::new(),
        prune_keeps: None,
    };
    b.prepare()?;
    for entry in &template.phases {
        match entry {
            Entry::Barrier { barrier } => b.barrier(barrier),
            Entry::Phase(p) if p.on == HostSelector::Cluster => b.plan_cluster_phase(p)?,
            Entry::Phase(p) => b.plan_host_phase(p)?,
        }
    }
    // A trailing barrier with nothing after it says nothing.
    if let Some(last) = b.steps.last()
        && last.kind() == StepKind::Barrier
    {
        b.steps.pop();
    }
    if !b.kept_rke_rolling.is_empty() {
        b.notes.push(format!(
            "RKE's etcd-rolling-snapshots already takes snapshots as cluster.yml asks on {}; rkectl leaves it running.",
            b.kept_rke_rolling.join(", ")
        ));
    }
    let changes = b.changes();
    let observed = input.observed.clone();
    Ok(Plan {
        format: FORMAT,
        action: input.action.clone(),
        title: template.title.clone(),
        cluster_name: input.cluster.name.clone(),
        cluster_hash: input.cluster_hash.to_string(),
        made_at: input.now,
        observed_fingerprint: observed.fingerprint(),
        observed,
        notes: b.notes,
        steps: b.steps,
        changes,
    })
}

impl<'a> Builder<'a> {
    /// A phase of cluster-wide steps: each waits for everything since the last barrier.
    fn plan_cluster_phase(&mut self, p: &Phase) -> Result<(), CompileError> {
        for kind in &p.steps {
            for action in kind.plan_cluster(self)? {
                let after = self.cluster_deps();
                let id = self.push(None, after, action);
                self.cluster_tail = Some(id);
            }
        }
        Ok(())
    }

    /// A phase on hosts: on each host a chain; one host after the other when the phase
    /// says so.
    fn plan_host_phase(&mut self, p: &Phase) -> Result<(), CompileError> {
        let mut previous_host_last: Option<StepId> = None;
        for host in self.select(p.on)? {
            let mut first_in_phase = true;
            for kind in &p.steps {
                for action in kind.plan_host(self, &host)? {
                    let mut after: Vec<StepId> = match self.tail.get(&host) {
                        Some(t) => vec![t.clone()],
                        None => self.barrier.iter().cloned().collect(),
                    };
                    if first_in_phase
                        && p.order == Order::OneAtATime
                        && let Some(prev) = &previous_host_last
                    {
                        after.push(prev.clone());
                    }
                    first_in_phase = false;
                    let id = self.push(Some(host.clone()), after, action);
                    self.planned.insert((host.clone(), *kind));
                    self.tail.insert(host.clone(), id);
                }
            }
            if !first_in_phase {
                previous_host_last = self.tail.get(&host).cloned();
            }
        }
        Ok(())
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

    fn push(&mut self, host: Option<HostAddr>, after: Vec<StepId>, action: StepAction) -> StepId {
        let kind = action.kind();
        let base = match &host {
            Some(h) => format!("{kind}@{h}"),
            None => kind.to_string(),
        };
        let mut id = StepId(base.clone());
        let mut n = 2;
        while self.ids.contains(&id) || (host.is_none() && id.0 == base && self.ids.contains(&StepId(base.clone()))) {
            id = StepId(format!("{base}#{n}"));
            n += 1;
        }
        self.ids.insert(id.clone());
        self.steps.push(Step { id: id.clone(), host, after, action });
        id
    }

    fn cluster_deps(&self) -> Vec<StepId> {
        let mut deps: Vec<StepId> = self.tail.values().cloned().collect();
        deps.sort();
        deps.extend(self.cluster_tail.iter().cloned());
        if deps.is_empty() {
            deps.extend(self.barrier.iter().cloned());
        }
        deps
    }

    fn barrier(&mut self, reason: &str) {
        if self.tail.is_empty() && self.cluster_tail.is_none() {
            return;
        }
        let after = self.cluster_deps();
        self.barriers += 1;
        let id = StepId(format!("barrier#{}", self.barriers));
        self.ids.insert(id.clone());
        self.steps.push(Step {
            id: id.clone(),
            host: None,
            after,
            action: StepAction::Barrier(crate::steps::Barrier { reason: reason.to_string() }),
        });
        self.barrier = Some(id);
        self.tail.clear();
        self.cluster_tail = None;
    }

    fn select(&self, on: HostSelector) -> Result<Vec<HostAddr>, CompileError> {
        Ok(match on {
            HostSelector::Etcd => self.etcd_nodes().iter().map(|n| n.address.clone()).collect(),
            HostSelector::All => self.cluster().nodes.iter().map(|n| n.address.clone()).collect(),
            HostSelector::RemovedEtcd => self.input.removed_members.iter().map(|m| m.address.clone()).collect(),
            HostSelector::SnapshotSource => vec![self.snapshot_source()?],
            HostSelector::DrillHost => vec![self.drill_host()?],
            HostSelector::Cluster => Vec::new(),
        })
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

    fn prepare(&mut self) -> Result<(), CompileError> {
        match self.input.action {
            ActionSpec::EtcdSnapshotDrill { name, from, .. } => {
                self.reference = Some(self.choose_reference(name, from)?);
                self.notes.push(
                    "A drill changes nothing of the cluster: the snapshot is restored inside a helper container, served on that container's loopback, and removed with it.".into(),
                );
            }
            ActionSpec::EtcdSnapshotRestore { name, from } => {
                let r = self.choose_reference(name, from)?;
                match &r {
                    Reference::Chosen(r) => {
                        let src = match &r.from_s3 {
                            Some(t) => t.to_string(),
                            None => "the etcd hosts".into(),
                        };
                        self.notes.push(format!(
                            "Restoring snapshot {} ({}) from {src}; the current etcd data on every etcd host will be deleted.",
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
            ActionSpec::EtcdSnapshotPrune { policy, s3 } => self.keep_newest_snapshot(policy, s3.is_some()),
            ActionSpec::EtcdSnapshotDelete { name, s3 } => self.check_named_snapshot(name, s3.is_some())?,
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

    /// The copy chosen for a restore or a drill; `None` offline (or for other actions).
    pub(crate) fn chosen(&self) -> Option<&Chosen> {
        match &self.reference {
            Some(Reference::Chosen(r)) => Some(r),
            _ => None,
        }
    }

    pub(crate) fn facts(&self, host: &HostAddr) -> Option<&crate::plan::observed::HostFacts> {
        self.input.observed.host(host)
    }
}

pub use crate::model::{is_recurring_name, name_time};
pub use prune::prune_candidates;

mod changes;
mod named_snapshot;
mod prune;
mod reference;
#[cfg(test)]
mod tests;
