//! Action templates: the files in `plans/`, embedded in the binary.
//!
//! A template is the reviewable shape of an action: its phases, the hosts each phase runs
//! on (by role), the step kinds in order, whether hosts go in parallel or one at a time,
//! and the barriers between phases. The compiler fills in the parameters; it never adds a
//! kind the template does not name.

use crate::steps::StepKind;
pub use crate::steps::planning::TemplateError;
use serde::Deserialize;

/// Which hosts a phase runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HostSelector {
    /// Every etcd node of cluster.yml.
    Etcd,
    /// Every node of cluster.yml.
    All,
    /// Etcd members that were deployed but are no longer in cluster.yml.
    RemovedEtcd,
    /// The one host a snapshot is taken on.
    SnapshotSource,
    /// The one host a snapshot drill runs on.
    DrillHost,
    /// No host: one cluster-wide step.
    Cluster,
}

/// How the hosts of a phase proceed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Order {
    /// All hosts at once (bounded by `--parallelism`).
    #[default]
    Parallel,
    /// One host after another, in cluster.yml order (to keep quorum).
    OneAtATime,
}

/// A phase: step kinds run on a set of hosts.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Phase {
    pub name: String,
    pub on: HostSelector,
    #[serde(default)]
    pub order: Order,
    pub steps: Vec<StepKind>,
}

/// One entry of `phases:`: a phase or a barrier.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Entry {
    Barrier { barrier: String },
    Phase(Phase),
}

/// A template file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Template {
    pub action: String,
    pub title: String,
    pub phases: Vec<Entry>,
}

/// The embedded templates, by file name.
pub const TEMPLATES: &[(&str, &str)] = &[
    ("up.yml", include_str!("../../plans/up.yml")),
    ("etcd-snapshot-save.yml", include_str!("../../plans/etcd-snapshot-save.yml")),
    ("etcd-snapshot-restore.yml", include_str!("../../plans/etcd-snapshot-restore.yml")),
    ("etcd-snapshot-drill.yml", include_str!("../../plans/etcd-snapshot-drill.yml")),
    ("etcd-snapshot-delete.yml", include_str!("../../plans/etcd-snapshot-delete.yml")),
    ("etcd-snapshot-prune.yml", include_str!("../../plans/etcd-snapshot-prune.yml")),
    ("cleanup.yml", include_str!("../../plans/cleanup.yml")),
];

/// Parses the template of `action` (e.g. `etcd-snapshot-restore`).
pub fn load(action: &str) -> Result<Template, TemplateError> {
    let file = format!("{action}.yml");
    let text = TEMPLATES
        .iter()
        .find(|(f, _)| *f == file)
        .map(|(_, t)| *t)
        .ok_or_else(|| TemplateError { file: file.clone(), reason: "no such template".into() })?;
    parse(&file, text)
}

/// Parses template text.
pub fn parse(file: &str, text: &str) -> Result<Template, TemplateError> {
    let t: Template = crate::config::yaml::from_str(text)
        .map_err(|e| TemplateError { file: file.to_string(), reason: e.to_string() })?;
    if t.action != file.trim_end_matches(".yml") {
        return Err(TemplateError { file: file.to_string(), reason: format!("declares action `{}`", t.action) });
    }
    for e in &t.phases {
        if let Entry::Phase(p) = e
            && p.steps.contains(&StepKind::Barrier)
        {
            return Err(TemplateError {
                file: file.to_string(),
                reason: format!("phase `{}` lists `barrier` as a step; use a `- barrier:` entry", p.name),
            });
        }
    }
    Ok(t)
}
