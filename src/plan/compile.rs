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

use super::observed::{Observed, SnapshotCopy};
use super::step::{
    Checksum, ClusterState, DeleteFrom, InitialCluster, SnapshotFacts, SnapshotName, SnapshotSource, Step, StepAction,
    StepId, StepKind,
};
use super::template::{Entry, HostSelector, Order, Template};
use super::view::{View, ViewKey};
use super::{ActionSpec, FORMAT, HostChange, Plan, PrunePolicy};
use crate::config::{Cluster, HostAddr, Node, RecurringSnapshots, Role};
use crate::etcd::{self, containers, names};
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
    /// Hash of the certificate files each etcd host should have (from the PKI).
    pub expected_certs: &'a BTreeMap<HostAddr, String>,
    /// Now, in seconds since the Unix epoch (prune by age).
    pub now: i64,
}

/// Why an action cannot be planned; nothing has been changed anywhere.
#[derive(Debug, thiserror::Error, Diagnostic)]
pub enum CompileError {
    #[error(transparent)]
    #[diagnostic(code(rkectl::plan::template))]
    Template(#[from] super::template::TemplateError),
    #[error("snapshot {name} is not on any etcd host (looked in {dir} on {hosts})")]
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
    #[error("snapshot {name} in S3 has no recorded checksum, so its copies cannot be verified")]
    #[diagnostic(
        code(rkectl::plan::s3_no_checksum),
        help("it was not uploaded by rkectl; download it onto one etcd host and restore without --s3")
    )]
    S3NoChecksum { name: SnapshotName },
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
}

#[derive(Debug, Clone)]
struct Reference {
    facts: Option<SnapshotFacts>,
    /// Hosts whose copy matches, in cluster.yml order.
    good: Vec<HostAddr>,
    good_set: HashSet<HostAddr>,
    /// From S3 rather than from hosts.
    from_s3: bool,
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
                            let id = b.push(None, &p.name, after, action);
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
                            let id = b.push(Some(host.clone()), &p.name, after, action);
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
    let changes = b.changes();
    let observed = input.observed.clone();
    Ok(Plan {
        format: FORMAT,
        action: input.action.clone(),
        title: template.title.clone(),
        destructive: template.destructive,
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

    fn push(&mut self, host: Option<HostAddr>, phase: &str, after: Vec<StepId>, action: StepAction) -> StepId {
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
        self.steps.push(Step { id: id.clone(), host, phase: phase.to_string(), after, action });
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
            phase: "barrier".into(),
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
            HostSelector::Cluster => Vec::new(),
        })
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
            ActionSpec::EtcdSnapshotRestore { name, s3 } => {
                self.reference = Some(self.choose_reference(name, s3.is_some())?);
                if let Some(r) = &self.reference {
                    let src = if r.from_s3 { "S3" } else { "the etcd hosts" };
                    match &r.facts {
                        Some(f) => self.notes.push(format!(
                            "Restoring snapshot {name} ({}, {}) from {src}; the current etcd data on every etcd host will be deleted.",
                            f.checksum, super::step::human_bytes(f.size)
                        )),
                        None => self.notes.push(format!(
                            "Restoring snapshot {name}; its copies are not known (offline plan): this plan is for review and cannot be applied."
                        )),
                    }
                }
            }
            ActionSpec::EtcdSnapshotSave { name, generated_name: true, .. } => {
                self.notes.push(format!("Name of the snapshot is not specified using [{name}]"));
            }
            ActionSpec::Up => {
                if let RecurringSnapshots::BackupConfig { interval_hours, retention, overrides_legacy: Some((c, r)) } =
                    &self.cluster().etcd.recurring
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

    fn choose_reference(&self, name: &SnapshotName, from_s3: bool) -> Result<Reference, CompileError> {
        let obs = self.input.observed;
        if obs.offline {
            return Ok(Reference { facts: None, good: Vec::new(), good_set: HashSet::new(), from_s3 });
        }
        let copies: Vec<(HostAddr, &SnapshotCopy)> = self
            .etcd_nodes()
            .iter()
            .filter_map(|n| Some((n.address.clone(), obs.host(&n.address)?.snapshots.get(name)?)))
            .collect();
        if from_s3 {
            let s3 = obs.s3.as_ref();
            let target = s3.map(|s| s.target.to_string()).unwrap_or_default();
            let copy = s3
                .and_then(|s| s.snapshots.get(name))
                .ok_or_else(|| CompileError::S3SnapshotMissing { name: name.clone(), target })?;
            let checksum = copy.checksum.clone().ok_or_else(|| CompileError::S3NoChecksum { name: name.clone() })?;
            let good: Vec<HostAddr> = copies
                .iter()
                .filter(|(_, c)| c.checksum.as_ref() == Some(&checksum) && c.etcd_ok != Some(false))
                .map(|(h, _)| h.clone())
                .collect();
            let good_set = good.iter().cloned().collect();
            return Ok(Reference {
                facts: Some(SnapshotFacts { size: copy.size, checksum }),
                good,
                good_set,
                from_s3: true,
            });
        }
        if copies.is_empty() {
            return Err(CompileError::SnapshotMissing {
                name: name.clone(),
                dir: etcd::paths::SNAPSHOT_DIR,
                hosts: self.etcd_nodes().iter().map(|n| n.address.to_string()).collect::<Vec<_>>().join(", "),
            });
        }
        let mut groups: BTreeMap<&Checksum, (u64, Vec<HostAddr>)> = BTreeMap::new();
        let mut problems = Vec::new();
        for (h, c) in &copies {
            match (&c.checksum, c.etcd_ok) {
                (Some(sum), ok) if ok != Some(false) => {
                    groups.entry(sum).or_insert((c.size, Vec::new())).1.push(h.clone())
                }
                _ => problems.push(format!("{h}: {}", c.problem.as_deref().unwrap_or("fails etcd's hash check"))),
            }
        }
        match groups.len() {
            0 => Err(CompileError::SnapshotCorrupt { name: name.clone(), problems: problems.join("; ") }),
            1 => {
                let (sum, (size, good)) = groups.into_iter().next().expect("one group");
                let good_set = good.iter().cloned().collect();
                Ok(Reference {
                    facts: Some(SnapshotFacts { size, checksum: sum.clone() }),
                    good,
                    good_set,
                    from_s3: false,
                })
            }
            _ => Err(CompileError::SnapshotInconsistent {
                name: name.clone(),
                groups: groups
                    .iter()
                    .map(|(sum, (_, hosts))| {
                        format!(
                            "{} on {}",
                            sum.short(),
                            hosts.iter().map(|h| h.to_string()).collect::<Vec<_>>().join(", ")
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("; "),
            }),
        }
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

    fn facts(&self, host: &HostAddr) -> Option<&super::observed::HostFacts> {
        self.input.observed.host(host)
    }

    fn offline(&self) -> bool {
        self.input.observed.offline
    }

    fn plan_host(&mut self, kind: StepKind, host: &HostAddr) -> Result<Vec<StepAction>, CompileError> {
        let action = self.input.action;
        let cluster = self.cluster();
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
                let ActionSpec::EtcdSnapshotRestore { name, .. } = action else { return none() };
                let r = self.reference.as_ref().expect("restore has a reference");
                if self.offline() {
                    return one(StepAction::VerifySnapshot { snapshot: name.clone(), expect: None });
                }
                if r.good_set.contains(host) {
                    one(StepAction::VerifySnapshot { snapshot: name.clone(), expect: r.facts.clone() })
                } else {
                    none()
                }
            }
            StepKind::FetchSnapshot => match action {
                ActionSpec::EtcdSnapshotRestore { name, s3 } => {
                    let r = self.reference.as_ref().expect("restore has a reference");
                    if self.offline() || r.good_set.contains(host) {
                        return none();
                    }
                    let expect = r.facts.clone();
                    let source = match (r.from_s3, s3) {
                        (true, Some(target)) => SnapshotSource::S3 { target: target.clone() },
                        _ => {
                            // Spread copies over the hosts that have a good one.
                            let source = r.good[self.fetches % r.good.len()].clone();
                            self.fetches += 1;
                            SnapshotSource::Host { host: source }
                        }
                    };
                    one(StepAction::FetchSnapshot { snapshot: name.clone(), expect, source })
                }
                ActionSpec::EtcdSnapshotSave { name, .. } => {
                    let source = self.snapshot_source()?;
                    if &source == host {
                        return none();
                    }
                    one(StepAction::FetchSnapshot {
                        snapshot: name.clone(),
                        expect: None,
                        source: SnapshotSource::Host { host: source },
                    })
                }
                _ => none(),
            },
            StepKind::SaveSnapshot => match action {
                ActionSpec::EtcdSnapshotSave { name, s3, .. } => {
                    one(StepAction::SaveSnapshot { snapshot: name.clone(), upload: s3.clone() })
                }
                _ => none(),
            },
            StepKind::CleanHost => one(StepAction::CleanHost),
            StepKind::Restore => {
                let ActionSpec::EtcdSnapshotRestore { name, .. } = action else { return none() };
                let node = node.expect("restore runs on etcd nodes");
                let r = self.reference.as_ref().expect("restore has a reference");
                one(StepAction::Restore {
                    snapshot: name.clone(),
                    expect: r.facts.clone(),
                    member: etcd::member_name(node),
                    initial_cluster: InitialCluster::AllEtcdNodes,
                })
            }
            StepKind::DeployCerts => {
                let node = node.expect("certificates go to etcd nodes");
                let member = etcd::member_name(node);
                if matches!(action, ActionSpec::EtcdSnapshotRestore { .. }) || self.offline() {
                    return one(StepAction::DeployCerts { member });
                }
                let have = self.facts(host).and_then(|f| f.certs_hash.clone());
                if have.as_ref() != self.input.expected_certs.get(host) {
                    one(StepAction::DeployCerts { member })
                } else {
                    none()
                }
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
                let node = node.expect("etcd runs on etcd nodes");
                let member = etcd::member_name(node);
                let spec_hash = containers::etcd_spec_hash(cluster, node);
                if let ActionSpec::EtcdSnapshotRestore { .. } = action {
                    return one(StepAction::StartEtcd {
                        member,
                        initial_cluster: InitialCluster::AllEtcdNodes,
                        cluster_state: ClusterState::New,
                        spec_hash,
                    });
                }
                let current = self.facts(host).and_then(|f| f.containers.get(names::ETCD));
                let up_to_date =
                    current.is_some_and(|c| c.running && c.spec_hash.as_deref() == Some(spec_hash.as_str()));
                if up_to_date && !self.planned.contains(&(host.clone(), StepKind::DeployCerts)) {
                    return none();
                }
                let others_running = self.running_members().iter().any(|n| &n.address != host);
                let joining = self.planned.contains(&(host.clone(), StepKind::MemberAdd));
                let (cluster_state, initial_cluster) = if joining {
                    // A joining member's initial cluster is the current members plus itself.
                    let mut hosts: Vec<HostAddr> = self.running_members().iter().map(|n| n.address.clone()).collect();
                    hosts.push(node.address.clone());
                    (ClusterState::Existing, InitialCluster::Hosts { hosts })
                } else if others_running || current.is_some() {
                    (ClusterState::Existing, InitialCluster::AllEtcdNodes)
                } else {
                    (ClusterState::New, InitialCluster::AllEtcdNodes)
                };
                one(StepAction::StartEtcd { member, initial_cluster, cluster_state, spec_hash })
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
                let node = node.expect("rolling snapshots run on etcd nodes");
                let Some(settings) = containers::rolling_settings(cluster, node) else { return none() };
                let spec = containers::rolling_snapshots(cluster, node, &settings);
                let spec_hash = spec.labels.get(containers::SPEC_HASH_LABEL).cloned().unwrap_or_default();
                let current = self.facts(host).and_then(|f| f.containers.get(names::ROLLING_SNAPSHOTS));
                if current.is_some_and(|c| c.running && c.spec_hash.as_deref() == Some(spec_hash.as_str())) {
                    return none();
                }
                one(StepAction::StartRollingSnapshots { settings, spec_hash })
            }
            StepKind::RemoveRollingSnapshots => {
                let wanted = node.and_then(|n| containers::rolling_settings(cluster, n)).is_some();
                let present = self.facts(host).is_some_and(|f| f.containers.contains_key(names::ROLLING_SNAPSHOTS));
                if !wanted && present { one(StepAction::RemoveRollingSnapshots) } else { none() }
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

    fn changes(&self) -> Vec<HostChange> {
        let action = self.input.action;
        let shown = |n: &SnapshotName| match action {
            ActionSpec::EtcdSnapshotPrune { .. } => true,
            _ => action.snapshot() == Some(n),
        };
        let acted_on: HashSet<&HostAddr> = self.steps.iter().filter_map(|s| s.host.as_ref()).collect();
        let mut hosts: Vec<(HostAddr, String)> = self
            .cluster()
            .nodes
            .iter()
            .filter(|n| n.has_role(Role::Etcd) || acted_on.contains(&n.address))
            .map(|n| {
                let roles = n.roles.iter().map(|r| r.to_string()).collect::<Vec<_>>().join(",");
                let name = n.hostname_override.as_ref().map(|h| format!(" ({h})")).unwrap_or_default();
                (n.address.clone(), format!("{}{name} [{roles}]", n.address))
            })
            .collect();
        for m in self.input.removed_members {
            hosts.push((m.address.clone(), format!("{} ({}, leaving the cluster)", m.address, m.member)));
        }
        let mut before: BTreeMap<ViewKey, View> = BTreeMap::new();
        for (h, _) in &hosts {
            before.insert(ViewKey::Host(h.clone()), View::from_facts(self.input.observed.host(h), &shown));
        }
        if let Some(v) = View::from_s3(self.input.observed, &shown) {
            before.insert(ViewKey::S3, v);
        }
        let mut after = before.clone();
        for s in &self.steps {
            super::view::apply(s, &mut after, &self.cluster().etcd.image);
        }
        let mut out: Vec<HostChange> = hosts
            .into_iter()
            .map(|(h, label)| {
                let key = ViewKey::Host(h.clone());
                HostChange {
                    host: h.to_string(),
                    label,
                    before: before.get(&key).map(View::lines).unwrap_or_default(),
                    after: after.get(&key).map(View::lines).unwrap_or_default(),
                }
            })
            .collect();
        if let Some(a) = after.get(&ViewKey::S3) {
            let target = action.s3().map(|t| t.to_string()).unwrap_or_else(|| "S3".into());
            out.push(HostChange {
                host: "s3".into(),
                label: target,
                before: before.get(&ViewKey::S3).map(View::lines).unwrap_or_default(),
                after: a.lines(),
            });
        }
        out
    }
}

/// Snapshots a prune deletes: by age, or all but the newest `keep`. Only snapshots made by
/// rkectl's or RKE's automatic naming are candidates; a name a user chose is kept.
pub fn prune_candidates<'a>(
    snapshots: impl Iterator<Item = (&'a SnapshotName, i64)>,
    policy: &PrunePolicy,
    now: i64,
) -> Vec<SnapshotName> {
    let mut auto: Vec<(&SnapshotName, i64)> = snapshots.filter(|(n, _)| is_automatic_name(n)).collect();
    match policy {
        PrunePolicy::Age { seconds, .. } => {
            auto.into_iter().filter(|(_, m)| now.saturating_sub(*m) > *seconds as i64).map(|(n, _)| n.clone()).collect()
        }
        PrunePolicy::Count { keep } => {
            auto.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| b.0.cmp(a.0)));
            auto.into_iter().skip(*keep as usize).map(|(n, _)| n.clone()).collect()
        }
    }
}

/// Whether a snapshot name was made automatically (recurring `…_etcd`, or one-time default).
pub fn is_automatic_name(n: &SnapshotName) -> bool {
    let s = n.as_str();
    s.starts_with("rke_etcd_snapshot_") || s.ends_with("_etcd")
}
