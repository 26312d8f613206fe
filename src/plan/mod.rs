//! Plans: an action compiled against a cluster and what was observed, as a DAG of steps.
//!
//! [`compile`] reads an action's template from `plans/`, asks each step kind whether and
//! how it applies to each host given the observed state, wires the steps into a graph
//! (per-host chains, one-at-a-time chains, barriers), and derives each host's "after" view
//! from the steps' effects. The result is a [`Plan`]: a value that can be rendered
//! ([`render`]), saved to a file pinned to cluster.yml and the observation (and applied
//! from it only as the compiler makes it again: [`saved`]), and handed to the executor.
//! Nothing in this module does I/O.

pub mod compile;
pub mod file;
pub mod render;
pub mod saved;
pub mod summary;
pub mod template;

pub use compile::compile;

use crate::model::action::ActionSpec;
use crate::model::observed::Observed;
use crate::model::step::{Replacement, StepId};
use crate::steps::Step;
use petgraph::graph::{DiGraph, NodeIndex};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// Version of the plan file and journal format this build writes and reads. 2: what a plan
/// is based on is `offline` or `{"online": …}` (1 had an `offline` flag beside the facts). 3:
/// a container's environment is kept as how each value compares, no longer a hash of it.
pub const FORMAT: u32 = 3;

/// One host's (or S3's) state before and after, as lines.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostChange {
    /// The host's address, or `s3`.
    pub host: String,
    /// `10.0.0.1 (node1) [etcd]`.
    pub label: String,
    pub before: Vec<String>,
    pub after: Vec<String>,
    /// Lines of `before` and `after` listed even when they do not change (the snapshots
    /// the action is about).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub always_shown: Vec<String>,
}

/// A compiled plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    pub format: u32,
    pub action: ActionSpec,
    pub title: String,
    pub cluster_name: String,
    /// BLAKE3 of cluster.yml's text when the plan was made.
    pub cluster_hash: String,
    /// The clock the plan was compiled with (seconds since the Unix epoch): a saved plan is
    /// compiled again with it, so that what depends on time (prune by age) comes out the same.
    #[serde(default)]
    pub made_at: i64,
    pub observed: Observed,
    pub observed_fingerprint: String,
    /// Things the user should know (a generated name, a setting that overrides another).
    pub notes: Vec<String>,
    /// In an order that respects `after` (phase, then host, then template order).
    pub steps: Vec<Step>,
    pub changes: Vec<HostChange>,
}

/// Why a plan's graph is unusable (a compiler bug, or a tampered plan file).
#[derive(Debug, thiserror::Error)]
pub enum GraphError {
    #[error("step id {0} appears twice")]
    DuplicateId(StepId),
    #[error("step {step} waits for {missing}, which is not in the plan")]
    MissingDependency { step: StepId, missing: StepId },
    #[error("the steps wait for each other in a cycle (at {0})")]
    Cycle(StepId),
}

impl Plan {
    /// The plan as a petgraph DAG (edges from a step to the steps that wait for it);
    /// checks that ids are unique, dependencies exist and there is no cycle.
    pub fn graph(&self) -> Result<(DiGraph<usize, ()>, Vec<NodeIndex>), GraphError> {
        let mut g = DiGraph::with_capacity(self.steps.len(), self.steps.len() * 2);
        let mut index: HashMap<&StepId, NodeIndex> = HashMap::with_capacity(self.steps.len());
        let mut nodes = Vec::with_capacity(self.steps.len());
        for (i, s) in self.steps.iter().enumerate() {
            let n = g.add_node(i);
            if index.insert(&s.id, n).is_some() {
                return Err(GraphError::DuplicateId(s.id.clone()));
            }
            nodes.push(n);
        }
        for (i, s) in self.steps.iter().enumerate() {
            for dep in &s.after {
                let d = index
                    .get(dep)
                    .ok_or_else(|| GraphError::MissingDependency { step: s.id.clone(), missing: dep.clone() })?;
                g.add_edge(*d, nodes[i], ());
            }
        }
        petgraph::algo::toposort(&g, None).map_err(|c| GraphError::Cycle(self.steps[g[c.node_id()]].id.clone()))?;
        Ok((g, nodes))
    }

    /// The steps a person counts, in the plan and in the apply's log (barriers only order).
    pub fn step_count(&self) -> usize {
        self.steps.iter().filter(|s| !s.kind().is_order_only()).count()
    }

    /// Whether applying would change anything (steps other than dial, checks and barriers).
    pub fn has_changes(&self) -> bool {
        self.steps.iter().any(|s| !s.kind().only_looks())
    }

    /// Whether any step deletes data.
    pub fn is_destructive(&self) -> bool {
        self.steps.iter().any(|s| s.kind().is_destructive())
    }

    /// What the plan replaces that rkectl did not make (RKE's containers, certificate files
    /// that differ from the cluster's PKI), with the step that does it.
    pub fn replacements(&self) -> Vec<(&Step, &Replacement)> {
        self.steps.iter().filter_map(|s| Some((s, s.action.replaces()?))).collect()
    }

    /// Whether applying needs the user's confirmation: it deletes data, or replaces
    /// something rkectl did not make.
    pub fn needs_confirmation(&self) -> bool {
        self.is_destructive() || !self.replacements().is_empty()
    }
}
