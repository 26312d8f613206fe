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
    Checksum, ClusterState, DeleteFrom, InitialCluster, Pin, Replacement, RestoreFile, SnapshotFacts, SnapshotFormat,
    SnapshotLocation, SnapshotName, SnapshotSource, Step, StepAction, StepId, StepKind,
};
use super::template::{Entry, HostSelector, Order, Template};
use super::{ActionSpec, FORMAT, HostChange, Plan, PrunePolicy, RestoreSearch};
use crate::config::{Cluster, HostAddr, Node, RecurringSnapshots, Role, S3Target};
use crate::etcd::{self, containers, names};
use crate::plan::observed::{ContainerFacts, MadeBy, Observed, SnapshotCopy};
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

struct Builder<'a> {
    input: &'a CompileInput<'a>,
    steps: Vec<Step>,
    ids: HashSet<StepId>,
    /// Last step on each host since the last barrier.
    tail: HashMap<HostAddr, StepId>,
    /// Cluster-wide steps since the last barrier.
    cluster_tail: Option<StepId>,
    barrier: Option<StepId>,
    barriers: usize,
    /// Kinds planned on each host (later kinds look at earlier ones).
    planned: HashSet<(HostAddr, StepKind)>,
    /// Which copy of the snapshot is the reference, for restore.
    reference: Option<Reference>,
    /// Copies planned so far (they are spread over the hosts that have a good copy).
    fetches: usize,
    /// Nodes by address (plans of a thousand hosts look nodes up per step).
    nodes: HashMap<&'a HostAddr, &'a Node>,
    notes: Vec<String>,
    /// Hosts where RKE's own recurring snapshot service stays.
    kept_rke_rolling: Vec<String>,
}

/// The copy of the snapshot that every member is restored from.
#[derive(Debug, Clone)]
struct Reference {
    /// What it is; `None` in offline plans.
    pin: Option<Pin>,
    format: SnapshotFormat,
    /// The database inside an archive, when it was checked.
    db: Option<SnapshotFacts>,
    /// Copies come from S3 rather than from hosts.
    from_s3: Option<S3Target>,
    /// Hosts whose own copy is the reference, in cluster.yml order.
    good: Vec<HostAddr>,
    good_set: HashSet<HostAddr>,
    /// Why this copy, when it needs saying.
    why: Vec<String>,
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
    };
    b.prepare()?;
    for entry in &template.phases {
        match entry {
            Entry::Barrier { barrier } => b.barrier(barrier),
            Entry::Phase(p) => {
                let hosts = b.select(p.on)?;
                if p.on == HostSelector::Cluster {
                    for kind in &p.steps {
                        for action in b.plan_cluster(*kind)? {
                            let after = b.cluster_deps();
                            let id = b.push(None, after, action);
                            b.cluster_tail = Some(id);
                        }
                    }
                    continue;
                }
                let mut previous_host_last: Option<StepId> = None;
                for host in hosts {
                    let mut first_in_phase = true;
                    for kind in &p.steps {
                        for action in b.plan_host(*kind, &host)? {
                            let mut after: Vec<StepId> = match b.tail.get(&host) {
                                Some(t) => vec![t.clone()],
                                None => b.barrier.iter().cloned().collect(),
                            };
                            if first_in_phase
                                && p.order == Order::OneAtATime
                                && let Some(prev) = &previous_host_last
                            {
                                after.push(prev.clone());
                            }
                            first_in_phase = false;
                            let id = b.push(Some(host.clone()), after, action);
                            b.planned.insert((host.clone(), *kind));
                            b.tail.insert(host.clone(), id);
                        }
                    }
                    if !first_in_phase {
                        previous_host_last = b.tail.get(&host).cloned();
                    }
                }
            }
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
        observed_fingerprint: observed.fingerprint(),
        observed,
        notes: b.notes,
        steps: b.steps,
        changes,
    })
}

impl<'a> Builder<'a> {
    fn cluster(&self) -> &Cluster {
        self.input.cluster
    }

    fn etcd_nodes(&self) -> Vec<&Node> {
        self.cluster().etcd_nodes().collect()
    }

    fn node(&self, addr: &HostAddr) -> Option<&'a Node> {
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
            action: StepAction::Barrier { reason: reason.to_string() },
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
    fn drill_host(&self) -> Result<HostAddr, CompileError> {
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
        let holder = self.reference.as_ref().and_then(|r| r.good.first().cloned());
        Ok(holder.unwrap_or_else(|| etcd[0].address.clone()))
    }

    /// The snapshot a restore or a drill reads.
    fn restored_snapshot(&self) -> Option<&'a SnapshotName> {
        match self.input.action {
            ActionSpec::EtcdSnapshotRestore { name, .. } | ActionSpec::EtcdSnapshotDrill { name, .. } => Some(name),
            _ => None,
        }
    }

    /// The host a snapshot is taken on: the first etcd host whose etcd runs.
    fn snapshot_source(&self) -> Result<HostAddr, CompileError> {
        let nodes = self.etcd_nodes();
        if self.input.observed.offline {
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

    fn running_members(&self) -> Vec<&Node> {
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
    fn current_members(&self) -> Option<Vec<String>> {
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
                match &r.pin {
                    Some(pin) => {
                        let src = match &r.from_s3 {
                            Some(t) => t.to_string(),
                            None => "the etcd hosts".into(),
                        };
                        self.notes.push(format!(
                            "Restoring snapshot {} ({pin}) from {src}; the current etcd data on every etcd host will be deleted.",
                            r.format.file_name(name)
                        ))
                    }
                    None => self.notes.push(format!(
                        "Restoring snapshot {name}; its copies are not known (offline plan): this plan is for review and cannot be applied."
                    )),
                }
                self.notes.extend(r.why.iter().cloned());
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
        if self.input.observed.offline {
            self.notes.push("Planned offline: hosts were not contacted and their state is not shown.".into());
        }
        Ok(())
    }

    fn plan_cluster(&mut self, kind: StepKind) -> Result<Vec<StepAction>, CompileError> {
        let action = self.input.action;
        Ok(match kind {
            StepKind::HealthCheck => {
                let restore = matches!(action, ActionSpec::EtcdSnapshotRestore { .. });
                let changed = self.steps.iter().any(|s| {
                    matches!(
                        s.kind(),
                        StepKind::StartEtcd | StepKind::MemberAdd | StepKind::MemberRemove | StepKind::RemoveEtcd
                    )
                });
                if restore || changed {
                    vec![StepAction::HealthCheck {
                        members: self.etcd_nodes().iter().map(|n| n.address.clone()).collect(),
                        same_revision: restore,
                    }]
                } else {
                    Vec::new()
                }
            }
            StepKind::DeleteSnapshot => {
                let Some(s3) = action.s3() else { return Ok(Vec::new()) };
                let Some(facts) = &self.input.observed.s3 else { return Ok(Vec::new()) };
                let names: Vec<SnapshotName> = match action {
                    ActionSpec::EtcdSnapshotDelete { name, .. } => {
                        facts.snapshots.contains_key(name).then(|| name.clone()).into_iter().collect()
                    }
                    ActionSpec::EtcdSnapshotPrune { policy, .. } => {
                        prune_candidates(facts.snapshots.iter().map(|(n, c)| (n, c.modified)), policy, self.input.now)
                    }
                    _ => Vec::new(),
                };
                names
                    .into_iter()
                    .map(|snapshot| StepAction::DeleteSnapshot {
                        snapshot,
                        from: DeleteFrom::S3 { target: s3.clone() },
                    })
                    .collect()
            }
            _ => Vec::new(),
        })
    }

    fn facts(&self, host: &HostAddr) -> Option<&crate::plan::observed::HostFacts> {
        self.input.observed.host(host)
    }

    fn offline(&self) -> bool {
        self.input.observed.offline
    }

    fn plan_host(&mut self, kind: StepKind, host: &HostAddr) -> Result<Vec<StepAction>, CompileError> {
        let action = self.input.action;
        let node = self.node(host);
        let one = |a: StepAction| Ok(vec![a]);
        let none = || Ok(Vec::new());
        match kind {
            StepKind::Dial => one(StepAction::Dial),
            StepKind::PullImages => match self.facts(host) {
                Some(f) if !f.missing_images.is_empty() => {
                    one(StepAction::PullImages { images: f.missing_images.clone() })
                }
                _ => none(),
            },
            StepKind::VerifySnapshot => {
                let Some(name) = self.restored_snapshot() else { return none() };
                let r = self.reference.as_ref().expect("restore has a reference");
                if self.offline() {
                    return one(StepAction::VerifySnapshot { snapshot: name.clone(), format: r.format, expect: None });
                }
                match (&r.pin, r.good_set.contains(host)) {
                    (Some(Pin::Checksum { facts }), true) => one(StepAction::VerifySnapshot {
                        snapshot: name.clone(),
                        format: r.format,
                        expect: Some(facts.clone()),
                    }),
                    _ => none(),
                }
            }
            StepKind::FetchSnapshot => match action {
                ActionSpec::EtcdSnapshotRestore { name, .. } | ActionSpec::EtcdSnapshotDrill { name, .. } => {
                    let r = self.reference.as_ref().expect("restore has a reference");
                    if self.offline() || r.good_set.contains(host) {
                        return none();
                    }
                    let source = match &r.from_s3 {
                        Some(target) => SnapshotSource::S3 { target: target.clone() },
                        None => {
                            // Spread copies over the hosts that have the reference.
                            let source = r.good[self.fetches % r.good.len()].clone();
                            self.fetches += 1;
                            SnapshotSource::Host { host: source }
                        }
                    };
                    let (format, expect) = (r.format, r.pin.clone());
                    // A drill adds nothing to the host's snapshot folder: its copy is staged.
                    let into = match action {
                        ActionSpec::EtcdSnapshotDrill { .. } => SnapshotLocation::Staged,
                        _ => self.fetch_location(host, name),
                    };
                    one(StepAction::FetchSnapshot { snapshot: name.clone(), format, expect, source, into })
                }
                ActionSpec::EtcdSnapshotSave { name, .. } => {
                    let source = self.snapshot_source()?;
                    if &source == host {
                        return none();
                    }
                    one(StepAction::FetchSnapshot {
                        snapshot: name.clone(),
                        format: SnapshotFormat::Zip,
                        expect: None,
                        source: SnapshotSource::Host { host: source },
                        into: SnapshotLocation::Listed,
                    })
                }
                _ => none(),
            },
            StepKind::UnpackSnapshot => {
                let ActionSpec::EtcdSnapshotRestore { name, .. } = action else { return none() };
                let r = self.reference.as_ref().expect("restore has a reference");
                if r.format != SnapshotFormat::Zip || self.offline() {
                    return none();
                }
                let from = self.reference_location(host, name);
                let expect = self.reference.as_ref().and_then(|r| r.db.clone());
                one(StepAction::UnpackSnapshot { snapshot: name.clone(), from, expect })
            }
            StepKind::DrillSnapshot => {
                let ActionSpec::EtcdSnapshotDrill { name, compare_live, .. } = action else { return none() };
                let r = self.reference.as_ref().expect("a drill has a reference");
                let from = if r.good_set.contains(host) || self.offline() {
                    SnapshotLocation::Listed
                } else {
                    SnapshotLocation::Staged
                };
                let fetched_from = self.steps.iter().find_map(|s| match &s.action {
                    StepAction::FetchSnapshot { source, .. } if s.host.as_ref() == Some(host) => {
                        Some(source.to_string())
                    }
                    _ => None,
                });
                let origin = match fetched_from {
                    Some(source) => format!("a copy from {source}"),
                    None => format!("host {host}'s own copy"),
                };
                one(StepAction::DrillSnapshot {
                    snapshot: name.clone(),
                    format: r.format,
                    from,
                    origin,
                    compare_live: *compare_live,
                })
            }
            StepKind::DiscardStaged => {
                let Some(name) = self.restored_snapshot() else { return none() };
                let staged = self.planned.contains(&(host.clone(), StepKind::UnpackSnapshot))
                    || self.steps.iter().any(|s| {
                        s.host.as_ref() == Some(host)
                            && matches!(s.action, StepAction::FetchSnapshot { into: SnapshotLocation::Staged, .. })
                    });
                if staged { one(StepAction::DiscardStaged { snapshot: name.clone() }) } else { none() }
            }
            StepKind::SaveSnapshot => match action {
                ActionSpec::EtcdSnapshotSave { name, s3, include_state, seal_state, .. } => {
                    one(StepAction::SaveSnapshot {
                        snapshot: name.clone(),
                        upload: s3.clone(),
                        include_state: *include_state,
                        seal_state: *seal_state && s3.is_some(),
                    })
                }
                _ => none(),
            },
            StepKind::CleanHost => one(StepAction::CleanHost),
            StepKind::Restore => {
                let ActionSpec::EtcdSnapshotRestore { name, .. } = action else { return none() };
                let node = node.expect("restore runs on etcd nodes");
                let r = self.reference.as_ref().expect("restore has a reference");
                let (from, expect) = match r.format {
                    SnapshotFormat::Zip => (RestoreFile::Unpacked, r.db.clone()),
                    SnapshotFormat::Raw => (
                        RestoreFile::Copy { location: self.reference_location(host, name) },
                        match &r.pin {
                            Some(Pin::Checksum { facts }) => Some(facts.clone()),
                            _ => None,
                        },
                    ),
                };
                one(StepAction::Restore {
                    snapshot: name.clone(),
                    from,
                    expect,
                    member: etcd::member_name(node),
                    initial_cluster: InitialCluster::AllEtcdNodes,
                })
            }
            StepKind::DeployCerts => {
                Ok(self.plan_deploy_certs(node.expect("certificates go to etcd nodes")).into_iter().collect())
            }
            StepKind::MemberAdd => {
                let node = node.expect("members are etcd nodes");
                let member = etcd::member_name(node);
                let running = self.running_members();
                let Some(current) = self.current_members() else { return none() };
                if running.is_empty() || current.contains(&member) {
                    return none();
                }
                one(StepAction::MemberAdd { member, peer_url: etcd::peer_url(node) })
            }
            StepKind::StartEtcd => {
                Ok(self.plan_start_etcd(node.expect("etcd runs on etcd nodes")).into_iter().collect())
            }
            StepKind::LogLinker => {
                if self.planned.contains(&(host.clone(), StepKind::StartEtcd)) {
                    one(StepAction::LogLinker { container: names::ETCD.into() })
                } else {
                    none()
                }
            }
            StepKind::RemoveLogLinker => {
                if self.planned.contains(&(host.clone(), StepKind::LogLinker)) {
                    one(StepAction::RemoveLogLinker)
                } else {
                    none()
                }
            }
            StepKind::MemberRemove => {
                let Some(m) = self.input.removed_members.iter().find(|m| &m.address == host) else { return none() };
                let listed = self.current_members().is_none_or(|c| c.contains(&m.member));
                if listed && !self.running_members().is_empty() {
                    one(StepAction::MemberRemove { member: m.member.clone() })
                } else {
                    none()
                }
            }
            StepKind::RemoveEtcd => {
                let has = self.facts(host).is_some_and(|f| f.containers.contains_key(names::ETCD));
                if has { one(StepAction::RemoveEtcd) } else { none() }
            }
            StepKind::StartRollingSnapshots => {
                Ok(self.plan_start_rolling(node.expect("rolling snapshots run on etcd nodes")).into_iter().collect())
            }
            StepKind::RemoveRollingSnapshots => Ok(self.plan_remove_rolling(host).into_iter().collect()),
            StepKind::RemoveAgent => {
                let Some(f) = self.facts(host) else { return none() };
                // The binary rkectl's running snapshot service runs from stays.
                let in_use: Option<String> = f
                    .containers
                    .get(names::ROLLING_SNAPSHOTS)
                    .filter(|c| c.made_by == MadeBy::Rkectl && c.running)
                    .and_then(|c| c.args.first())
                    .and_then(|p| p.strip_prefix(&format!("{}/", crate::agent_binary::REMOTE_ROOT)))
                    .and_then(|rest| rest.split('/').next())
                    .map(str::to_string);
                let versions: Vec<String> = f.agents.iter().filter(|v| Some(*v) != in_use.as_ref()).cloned().collect();
                if versions.is_empty() { none() } else { one(StepAction::RemoveAgent { versions }) }
            }
            StepKind::DeleteSnapshot => {
                let Some(f) = self.facts(host) else { return none() };
                let names: Vec<SnapshotName> = match action {
                    ActionSpec::EtcdSnapshotDelete { name, .. } => {
                        f.snapshots.contains_key(name).then(|| name.clone()).into_iter().collect()
                    }
                    ActionSpec::EtcdSnapshotPrune { policy, .. } => {
                        prune_candidates(f.snapshots.iter().map(|(n, c)| (n, c.modified)), policy, self.input.now)
                    }
                    _ => Vec::new(),
                };
                Ok(names
                    .into_iter()
                    .map(|snapshot| StepAction::DeleteSnapshot { snapshot, from: DeleteFrom::Host })
                    .collect())
            }
            StepKind::HealthCheck | StepKind::Barrier => none(),
        }
    }
}

/// Snapshots a prune deletes: by age, or all but the newest `keep`. Only recurring snapshots
/// (`<time>_etcd`) are candidates, as in rke-tools' retention: a one-time snapshot, even
/// with RKE's default name, was taken on purpose (before an upgrade, say) and is kept.
/// Their age is read from the name, as rke-tools reads it, else taken from the file.
pub fn prune_candidates<'a>(
    snapshots: impl Iterator<Item = (&'a SnapshotName, i64)>,
    policy: &PrunePolicy,
    now: i64,
) -> Vec<SnapshotName> {
    let mut auto: Vec<(&SnapshotName, i64)> =
        snapshots.filter(|(n, _)| is_recurring_name(n)).map(|(n, m)| (n, name_time(n).unwrap_or(m))).collect();
    match policy {
        PrunePolicy::Age { seconds, .. } => {
            // A retention longer than i64 seconds keeps everything (it must never wrap negative).
            let keep_for = i64::try_from(*seconds).unwrap_or(i64::MAX);
            auto.into_iter().filter(|(_, m)| now.saturating_sub(*m) > keep_for).map(|(n, _)| n.clone()).collect()
        }
        PrunePolicy::Count { keep } => {
            auto.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| b.0.cmp(a.0)));
            auto.into_iter().skip(*keep as usize).map(|(n, _)| n.clone()).collect()
        }
    }
}

pub use crate::model::{is_recurring_name, name_time};

mod members;
mod reference;
#[cfg(test)]
mod tests;
