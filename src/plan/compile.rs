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

use super::observed::{ContainerFacts, MadeBy, Observed, SnapshotCopy};
use super::step::{
    Checksum, ClusterState, DeleteFrom, InitialCluster, Pin, Replacement, RestoreFile, SnapshotFacts, SnapshotFormat,
    SnapshotLocation, SnapshotName, SnapshotSource, Step, StepAction, StepId, StepKind,
};
use super::template::{Entry, HostSelector, Order, Template};
use super::view::{View, ViewKey};
use super::{ActionSpec, FORMAT, HostChange, Plan, PrunePolicy, RestoreSearch};
use crate::config::{Cluster, HostAddr, Node, RecurringSnapshots, Role, S3Target};
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

    /// The copy every member is restored from, and which hosts already hold it.
    fn choose_reference(&self, name: &SnapshotName, search: &RestoreSearch) -> Result<Reference, CompileError> {
        let obs = self.input.observed;
        if obs.offline {
            return Ok(Reference {
                pin: None,
                format: SnapshotFormat::Raw,
                db: None,
                from_s3: search.s3().cloned(),
                good: Vec::new(),
                good_set: HashSet::new(),
                why: Vec::new(),
            });
        }
        let copies: Vec<(HostAddr, &SnapshotCopy)> = self
            .etcd_nodes()
            .iter()
            .filter_map(|n| Some((n.address.clone(), obs.host(&n.address)?.snapshots.get(name)?)))
            .collect();
        let in_s3 = obs.s3.as_ref().and_then(|s| s.snapshots.get(name));
        match (search, in_s3) {
            (RestoreSearch::S3 { target } | RestoreSearch::S3ThenHosts { target }, Some(copy)) => {
                let pin = match &copy.checksum {
                    Some(checksum) => {
                        Pin::Checksum { facts: SnapshotFacts { size: copy.size, checksum: checksum.clone() } }
                    }
                    None => Pin::S3Object { size: copy.size, etag: copy.etag.clone() },
                };
                let good: Vec<HostAddr> = copies
                    .iter()
                    .filter(|(_, c)| {
                        c.format == copy.format
                            && c.checksum.is_some()
                            && c.checksum.as_ref() == pin.checksum()
                            && c.etcd_ok != Some(false)
                    })
                    .map(|(h, _)| h.clone())
                    .collect();
                let db = copies.iter().find(|(h, _)| good.contains(h)).and_then(|(_, c)| c.db.clone());
                Ok(Reference {
                    pin: Some(pin),
                    format: copy.format,
                    db,
                    from_s3: Some(target.clone()),
                    good_set: good.iter().cloned().collect(),
                    good,
                    why: Vec::new(),
                })
            }
            (RestoreSearch::S3 { target }, None) => {
                Err(CompileError::S3SnapshotMissing { name: name.clone(), target: target.to_string() })
            }
            (RestoreSearch::S3ThenHosts { target }, None) => {
                let mut r = self.reference_on_hosts(name, &copies)?;
                r.why.insert(
                    0,
                    format!("Snapshot {name} is not in {target} (cluster.yml's s3backupconfig); restoring from the etcd hosts' copies, as RKE falls back to them."),
                );
                Ok(r)
            }
            (RestoreSearch::Hosts, _) => self.reference_on_hosts(name, &copies),
        }
    }

    /// The reference among the hosts' copies: the one copy they agree on, or, for copies
    /// that are each host's own snapshot (RKE's, recurring ones), the first etcd host's
    /// valid copy, as RKE's restore serves the first host's copy to the others.
    fn reference_on_hosts(
        &self,
        name: &SnapshotName,
        copies: &[(HostAddr, &SnapshotCopy)],
    ) -> Result<Reference, CompileError> {
        if copies.is_empty() {
            return Err(CompileError::SnapshotMissing {
                name: name.clone(),
                dir: crate::layout::SNAPSHOT_DIR,
                hosts: self.etcd_nodes().iter().map(|n| n.address.to_string()).collect::<Vec<_>>().join(", "),
            });
        }
        let mut groups: Vec<((SnapshotFormat, Checksum), Vec<HostAddr>)> = Vec::new();
        let mut problems = Vec::new();
        for (h, c) in copies {
            match (&c.checksum, c.etcd_ok) {
                (Some(sum), ok) if ok != Some(false) => {
                    let key = (c.format, sum.clone());
                    match groups.iter_mut().find(|(k, _)| *k == key) {
                        Some((_, hosts)) => hosts.push(h.clone()),
                        None => groups.push((key, vec![h.clone()])),
                    }
                }
                _ => problems.push(format!("{h}: {}", c.problem.as_deref().unwrap_or("fails etcd's hash check"))),
            }
        }
        let copy_of = |h: &HostAddr| copies.iter().find(|(c, _)| c == h).map(|(_, c)| *c).expect("a copy of each host");
        let mut why = Vec::new();
        let (key, good) = match groups.len() {
            0 => return Err(CompileError::SnapshotCorrupt { name: name.clone(), problems: problems.join("; ") }),
            1 => groups.remove(0),
            _ => {
                let one_time: Vec<&HostAddr> =
                    groups.iter().flat_map(|(_, hs)| hs).filter(|h| copy_of(h).identical_everywhere).collect();
                if !one_time.is_empty() {
                    return Err(CompileError::SnapshotInconsistent {
                        name: name.clone(),
                        groups: groups
                            .iter()
                            .map(|((_, sum), hosts)| {
                                format!(
                                    "{} on {}",
                                    sum.short(),
                                    hosts.iter().map(|h| h.to_string()).collect::<Vec<_>>().join(", ")
                                )
                            })
                            .collect::<Vec<_>>()
                            .join("; "),
                    });
                }
                let (key, good) = groups.remove(0);
                why.push(format!(
                    "The copies of snapshot {name} differ from host to host, as RKE's do (each host snapshots its own member): every member is restored from {}'s copy ({}), the first etcd host with a valid one, as RKE's restore does. The other hosts keep their own copy; the chosen one is staged beside it and removed after the restore.",
                    good[0],
                    key.1.short()
                ));
                (key, good)
            }
        };
        let size = copy_of(&good[0]).size;
        let db = copy_of(&good[0]).db.clone();
        Ok(Reference {
            pin: Some(Pin::Checksum { facts: SnapshotFacts { size, checksum: key.1 } }),
            format: key.0,
            db,
            from_s3: None,
            good_set: good.iter().cloned().collect(),
            good,
            why,
        })
    }

    /// Where a host's copy of the reference goes: the snapshot folder if the host has no
    /// file of that name, else beside it (never over it).
    fn fetch_location(&self, host: &HostAddr, name: &SnapshotName) -> SnapshotLocation {
        match self.facts(host).and_then(|f| f.snapshots.get(name)) {
            Some(_) => SnapshotLocation::Staged,
            None => SnapshotLocation::Listed,
        }
    }

    /// Where the restore on `host` finds the reference copy, once distributed.
    fn reference_location(&self, host: &HostAddr, name: &SnapshotName) -> SnapshotLocation {
        let r = self.reference.as_ref().expect("restore has a reference");
        if r.good_set.contains(host) { SnapshotLocation::Listed } else { self.fetch_location(host, name) }
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
                ActionSpec::EtcdSnapshotRestore { name, .. } => {
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
                    let into = self.fetch_location(host, name);
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
            StepKind::DiscardStaged => {
                let ActionSpec::EtcdSnapshotRestore { name, .. } = action else { return none() };
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

    /// Certificates go to a member's host when its CA file is missing or is not the
    /// cluster's CA, its own certificate or key is missing, or its certificate does not
    /// carry the names the member is reached by now (its address, internal address or
    /// hostname_override changed: etcd would advertise an address its certificate does not
    /// name). Other files that are there and chained to the cluster's CA are left alone:
    /// they are RKE's, and RKE's cert-deployer does not rewrite them either.
    fn plan_deploy_certs(&self, node: &Node) -> Option<StepAction> {
        let member = etcd::member_name(node);
        if self.offline() {
            return Some(StepAction::DeployCerts { member, replaces: None });
        }
        let files = self.facts(&node.address).and_then(|f| f.certs.clone()).unwrap_or_default();
        let ca_ok = files.ca.is_some() && files.ca.as_ref() == self.input.pki_ca;
        if ca_ok && files.cert && files.key {
            let path = crate::etcd::member::tls_files(node).cert;
            let why = match &files.cert_sans {
                None => "it holds no certificate rkectl can read".to_string(),
                Some(sans) => {
                    let names = crate::rke::pki::member_names(node);
                    let missing = sans.missing(&names);
                    if missing.is_empty() {
                        return None;
                    }
                    format!(
                        "it does not name {} (cluster.yml's address, internal_address or hostname_override of this node)",
                        missing.join(", ")
                    )
                }
            };
            return Some(StepAction::DeployCerts {
                member,
                replaces: Some(Replacement { what: format!("the certificate {path}"), why }),
            });
        }
        let replaces = match (&files.ca, self.input.pki_ca) {
            (Some(have), Some(want)) if have != want => Some(Replacement {
                what: format!("the certificates in {}", crate::rke::pki::CERT_DIR),
                why: format!(
                    "its kube-ca.pem is another CA ({}) than the cluster's PKI ({})",
                    have.short(),
                    want.short()
                ),
            }),
            _ => None,
        };
        Some(StepAction::DeployCerts { member, replaces })
    }

    fn plan_start_etcd(&self, node: &'a Node) -> Option<StepAction> {
        let host = &node.address;
        let member = etcd::member_name(node);
        if let ActionSpec::EtcdSnapshotRestore { .. } = self.input.action {
            return Some(StepAction::StartEtcd {
                member,
                initial_cluster: InitialCluster::AllEtcdNodes,
                cluster_state: ClusterState::New,
                replaces: None,
                restart: false,
            });
        }
        let facts = self.facts(host);
        let arch = facts.map(|f| f.arch.as_str()).filter(|a| !a.is_empty()).unwrap_or("x86_64");
        let current = facts.and_then(|f| f.containers.get(names::ETCD));
        let differences =
            current.map(|c| crate::etcd::member::differences(self.cluster(), node, arch, c)).unwrap_or_default();
        let up_to_date = current.is_some_and(|c| c.running) && differences.is_empty();
        let new_certs = self.planned.contains(&(host.clone(), StepKind::DeployCerts));
        if up_to_date && !new_certs {
            return None;
        }
        // etcd reads its trusted CA only when it starts, and keeps the connections it made
        // with its old certificate: a member whose container stays restarts to take the
        // certificates just placed.
        let restart = up_to_date && new_certs;
        let replaces = match current {
            Some(c) if c.made_by != MadeBy::Rkectl && !differences.is_empty() => Some(Replacement {
                what: format!("the etcd container {}", made_by(c.made_by)),
                why: format!("cluster.yml asks for a different one: {}", differences.join(", ")),
            }),
            _ => None,
        };
        let others_running = self.running_members().iter().any(|n| &n.address != host);
        let joining = self.planned.contains(&(host.clone(), StepKind::MemberAdd));
        let (cluster_state, initial_cluster) = if joining {
            // A joining member's initial cluster is the current members plus itself.
            let mut hosts: Vec<HostAddr> = self.running_members().iter().map(|n| n.address.clone()).collect();
            if !hosts.contains(&node.address) {
                hosts.push(node.address.clone());
            }
            (ClusterState::Existing, InitialCluster::Hosts { hosts })
        } else if others_running || current.is_some() {
            (ClusterState::Existing, InitialCluster::AllEtcdNodes)
        } else {
            (ClusterState::New, InitialCluster::AllEtcdNodes)
        };
        Some(StepAction::StartEtcd { member, initial_cluster, cluster_state, replaces, restart })
    }

    fn plan_start_rolling(&mut self, node: &Node) -> Option<StepAction> {
        let cluster = self.cluster();
        let settings = containers::rolling_settings(cluster, node)?;
        let current = self.facts(&node.address).and_then(|f| f.containers.get(names::ROLLING_SNAPSHOTS));
        let what = |c: &ContainerFacts| format!("etcd-rolling-snapshots {}", made_by(c.made_by));
        let replaces = match current {
            Some(c) if c.made_by == MadeBy::Rkectl => {
                let spec = containers::rolling_snapshots(cluster, node, &settings);
                if c.running && c.spec_hash.as_ref() == spec.labels.get(containers::SPEC_HASH_LABEL) {
                    return None;
                }
                None
            }
            Some(c) => match containers::rke_rolling_mismatch(cluster, c) {
                // RKE's own service already does what cluster.yml asks: it stays.
                None if c.running => {
                    self.kept_rke_rolling.push(node.address.to_string());
                    return None;
                }
                None => Some(Replacement { what: what(c), why: "it is not running".into() }),
                Some(why) => Some(Replacement { what: what(c), why }),
            },
            None => None,
        };
        Some(StepAction::StartRollingSnapshots { settings, replaces })
    }

    fn plan_remove_rolling(&self, host: &HostAddr) -> Option<StepAction> {
        let wanted = self.node(host).and_then(|n| containers::rolling_settings(self.cluster(), n)).is_some();
        let current = self.facts(host).and_then(|f| f.containers.get(names::ROLLING_SNAPSHOTS))?;
        if wanted {
            return None;
        }
        let replaces = (current.made_by != MadeBy::Rkectl).then(|| Replacement {
            what: format!("etcd-rolling-snapshots {}", made_by(current.made_by)),
            why: "cluster.yml enables no recurring snapshots (services.etcd.snapshot is off unless set, as in the reference; RKE itself turns it on by default): set `snapshot: true` or a backup_config to keep them".into(),
        });
        Some(StepAction::RemoveRollingSnapshots { replaces })
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

fn made_by(m: MadeBy) -> &'static str {
    match m {
        MadeBy::Rke => "that RKE made",
        MadeBy::Rkectl => "that rkectl made",
        MadeBy::Unknown => "that neither RKE nor rkectl made",
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::observed::{CertFiles, HostFacts, hashed_env};
    use crate::rke::pki::{Pki, SanSet};

    fn cluster(node2: &str) -> Cluster {
        let mut yaml = String::from("nodes:\n");
        for (i, name) in [(1, "node1"), (2, node2), (3, "node3")] {
            yaml.push_str(&format!(
                "  - address: 10.0.0.{i}\n    hostname_override: {name}\n    user: u\n    role: [etcd]\n"
            ));
        }
        crate::config::parse(std::path::Path::new("cluster.yml"), yaml).unwrap().cluster
    }

    /// Every member running as `cluster` asks, with the certificates of `pki` on its host.
    fn observed(cluster: &Cluster, pki: &Pki) -> Observed {
        let mut o = Observed::default();
        for n in cluster.etcd_nodes() {
            let spec = crate::etcd::member::spec(cluster, n, "", super::ClusterState::Existing, "x86_64");
            let etcd = ContainerFacts {
                image: spec.image.clone(),
                running: true,
                spec_hash: None,
                made_by: MadeBy::Rkectl,
                args: spec.cmd.clone(),
                env: hashed_env(&spec.env),
                binds: spec.binds.clone(),
            };
            let cert = &pki.member(n).unwrap().cert;
            let certs = CertFiles {
                ca: Some(pki.ca_fingerprint()),
                cert: true,
                key: true,
                cert_sans: SanSet::of_pem(cert.as_bytes()),
            };
            let members = cluster.etcd_nodes().map(etcd::member_name).collect();
            let facts = HostFacts {
                containers: [(names::ETCD.to_string(), etcd)].into(),
                certs: Some(certs),
                members: Some(members),
                ..Default::default()
            };
            o.hosts.insert(n.address.clone(), facts);
        }
        o
    }

    fn up(cluster: &Cluster, observed: &Observed, ca: &crate::rke::pki::Fingerprint) -> Plan {
        compile(&CompileInput {
            cluster,
            cluster_hash: "h",
            action: &ActionSpec::Up,
            observed,
            removed_members: &[],
            pki_ca: Some(ca),
            now: 0,
        })
        .unwrap()
    }

    fn on(plan: &Plan, kind: StepKind) -> Vec<&Step> {
        plan.steps.iter().filter(|s| s.kind() == kind).collect()
    }

    #[test]
    fn a_member_whose_certificate_lacks_its_new_name_gets_the_reissued_one_and_restarts() {
        let before = cluster("node2");
        let pki = Pki::generate(&before).unwrap();
        let ca = pki.ca_fingerprint();
        assert!(!up(&before, &observed(&before, &pki), &ca).has_changes(), "as deployed: nothing to do");

        // node2's hostname_override changed: its certificate does not name it.
        let renamed = cluster("node2b");
        let plan = up(&renamed, &observed(&before, &pki), &ca);
        let deploys = on(&plan, StepKind::DeployCerts);
        assert_eq!(deploys.len(), 1, "only the host whose certificate lacks its own name: {deploys:?}");
        assert_eq!(deploys[0].host.as_ref().map(HostAddr::as_str), Some("10.0.0.2"));
        let r = deploys[0].action.replaces().expect("a replacement the user confirms");
        assert_eq!(r.what, "the certificate /etc/kubernetes/ssl/kube-etcd-10-0-0-2.pem");
        assert!(r.why.contains("does not name node2b"), "{}", r.why);
        assert!(plan.needs_confirmation());
        let starts = on(&plan, StepKind::StartEtcd);
        assert_eq!(starts.len(), 1);
        assert_eq!(starts[0].host, deploys[0].host);
        assert!(
            matches!(starts[0].action, StepAction::StartEtcd { restart: false, .. }),
            "its container changes (--name): it is recreated, not restarted"
        );

        // The same names, but the file on node2 is an old certificate without its address:
        // its container stays as it is, so it restarts to load the new one.
        let mut stale = observed(&before, &pki);
        let certs = stale.hosts.get_mut(&HostAddr("10.0.0.2".into())).unwrap().certs.as_mut().unwrap();
        certs.cert_sans.as_mut().unwrap().ips.retain(|ip| ip != "10.0.0.2");
        let plan = up(&before, &stale, &ca);
        let starts = on(&plan, StepKind::StartEtcd);
        assert_eq!(starts.len(), 1);
        assert!(
            matches!(starts[0].action, StepAction::StartEtcd { restart: true, .. }),
            "{}",
            starts[0].action.describe()
        );
        assert!(on(&plan, StepKind::DeployCerts)[0].action.replaces().unwrap().why.contains("10.0.0.2"));
    }

    #[test]
    fn automatic_names_carry_their_time_as_rke_tools_reads_it() {
        let n = |s: &str| SnapshotName::new(s).unwrap();
        assert_eq!(name_time(&n("1970-01-01T00:01:00Z_etcd")), Some(60));
        assert_eq!(name_time(&n("rke_etcd_snapshot_1970-01-01T01:00:00+01:00")), Some(0));
        assert_eq!(name_time(&n("before-upgrade")), None);
        assert!(is_recurring_name(&n("2024-10-04T22:40:30Z_etcd")));
        assert!(!is_recurring_name(&n("before-upgrade.db")));
        let policy = PrunePolicy::Age { seconds: 30, text: "30s".into() };
        let old = n("1970-01-01T00:00:10Z_etcd");
        let new = n("1970-01-01T00:01:00Z_etcd");
        // The file times (100) say both are new; the names say the first is old.
        let got = prune_candidates([(&old, 100), (&new, 100)].into_iter(), &policy, 80);
        assert_eq!(got, std::slice::from_ref(&old));
        // A retention too long for the clock keeps everything instead of wrapping negative.
        let forever = PrunePolicy::Age { seconds: u64::MAX, text: "forever".into() };
        assert!(prune_candidates([(&old, 0), (&new, 0)].into_iter(), &forever, 1_800_000_000).is_empty());
        // RKE's one-time default name is never pruned, however old.
        let one_time = n("rke_etcd_snapshot_1970-01-01T00:00:00Z");
        let everything = PrunePolicy::Count { keep: 0 };
        assert_eq!(
            prune_candidates([(&one_time, 0), (&old, 0)].into_iter(), &everything, 80),
            std::slice::from_ref(&old)
        );
    }
}
