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

use super::template::{Entry, HostSelector, Order, Phase, Template};
use super::{FORMAT, HostChange, Plan};
use crate::config::{HostAddr, Role};
use crate::model::SnapshotName;
use crate::model::action::ActionSpec;
use crate::model::step::StepId;
use crate::steps::effect::{View, ViewKey};
use crate::steps::planning::{Builder, CompileError, CompileInput};
use crate::steps::{Step, StepAction, StepKind};
use std::collections::{BTreeMap, HashMap, HashSet};

/// The compiler at work: the plan being built, and the bookkeeping that wires its steps
/// into the graph.
struct Compiler<'a> {
    b: Builder<'a>,
    ids: HashSet<StepId>,
    /// Last step on each host since the last barrier.
    tail: HashMap<HostAddr, StepId>,
    /// Cluster-wide steps since the last barrier.
    cluster_tail: Option<StepId>,
    barrier: Option<StepId>,
    barriers: usize,
}

/// Compiles `input.action` into a plan.
pub fn compile(input: &CompileInput<'_>) -> Result<Plan, CompileError> {
    let template = super::template::load(input.action.template_name())?;
    compile_with(&template, input)
}

/// Compiles with a given template (tests compile every template in `plans/`).
pub fn compile_with(template: &Template, input: &CompileInput<'_>) -> Result<Plan, CompileError> {
    let mut c = Compiler {
        b: Builder::new(input),
        ids: HashSet::new(),
        tail: HashMap::new(),
        cluster_tail: None,
        barrier: None,
        barriers: 0,
    };
    c.b.prepare()?;
    for entry in &template.phases {
        match entry {
            Entry::Barrier { barrier } => c.barrier(barrier),
            Entry::Phase(p) if p.on == HostSelector::Cluster => c.plan_cluster_phase(p)?,
            Entry::Phase(p) => c.plan_host_phase(p)?,
        }
    }
    // A trailing barrier with nothing after it says nothing.
    if let Some(last) = c.b.steps.last()
        && last.kind() == StepKind::Barrier
    {
        c.b.steps.pop();
    }
    let mut b = c.b;
    if !b.kept_rke_rolling.is_empty() {
        b.notes.push(format!(
            "RKE's etcd-rolling-snapshots already takes snapshots as cluster.yml asks on {}; rkectl leaves it running.",
            b.kept_rke_rolling.join(", ")
        ));
    }
    let changes = changes::of(&b);
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

impl Compiler<'_> {
    /// A phase of cluster-wide steps: each waits for everything since the last barrier.
    fn plan_cluster_phase(&mut self, p: &Phase) -> Result<(), CompileError> {
        for kind in &p.steps {
            for action in kind.plan_cluster(&mut self.b)? {
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
                for action in kind.plan_host(&mut self.b, &host)? {
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
                    self.b.planned.insert((host.clone(), *kind));
                    self.tail.insert(host.clone(), id);
                }
            }
            if !first_in_phase {
                previous_host_last = self.tail.get(&host).cloned();
            }
        }
        Ok(())
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
        self.b.steps.push(Step { id: id.clone(), host, after, action });
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
        self.b.steps.push(Step {
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
            HostSelector::Etcd => self.b.etcd_nodes().iter().map(|n| n.address.clone()).collect(),
            HostSelector::All => self.b.cluster().nodes.iter().map(|n| n.address.clone()).collect(),
            HostSelector::RemovedEtcd => self.b.input.removed_members.iter().map(|m| m.address.clone()).collect(),
            HostSelector::SnapshotSource => vec![self.b.snapshot_source()?],
            HostSelector::DrillHost => vec![self.b.drill_host()?],
            HostSelector::Cluster => Vec::new(),
        })
    }
}

mod changes;
#[cfg(test)]
mod prune_tests;
#[cfg(test)]
mod tests;
