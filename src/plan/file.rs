//! The plan file: what `rkectl plan … --out FILE` writes and `rkectl apply FILE` reads back.
//!
//! A plan read back passes three checks, in this order, before anything runs: the file is
//! this rkectl's format and a plan graph ([`read`]); it was made for this cluster.yml and
//! online ([`check_fits`], before the hosts are dialed again); and once its inputs are
//! compiled again, nothing it was based on changed and its steps are exactly the compiled
//! ones ([`check_unchanged`], with [`super::saved::check_as_compiled`]). The caller then
//! runs the compiled plan, never the file's.

use super::Plan;
use super::saved::{Difference, NotAsCompiled, OfflinePlan};
use crate::cluster_pki::{ClusterPki, PkiSource};
use crate::config::LoadedConfig;
use miette::Diagnostic;
use std::path::{Path, PathBuf};

/// What a plan file holds.
#[derive(serde::Serialize, serde::Deserialize)]
struct PlanFile {
    /// The cluster.yml the plan was made from, as it was given.
    config: String,
    plan: Plan,
}

/// The help of every refusal to read a file as a plan.
const GIVE_A_PLAN_FILE: &str = "give the file written by `rkectl plan … --out FILE`";

/// Why a plan file was not written, or a plan read back is not applied; nothing was changed.
#[derive(Debug, thiserror::Error, Diagnostic)]
pub enum PlanFileError {
    /// The plan makes a new PKI, whose private keys a file must not carry.
    #[error("a plan that makes a new PKI cannot be saved: its private keys cannot go into a plan file")]
    #[diagnostic(
        code(rkectl::input),
        help("run the action itself (`rkectl up --new-pki`), which shows the plan and asks before applying")
    )]
    NewPki,
    /// The file could not be written.
    #[error("cannot write {}: {error}", path.display())]
    #[diagnostic(code(rkectl::input), help("choose a writable path"))]
    Write { path: PathBuf, error: std::io::Error },
    /// The file could not be read.
    #[error("cannot read plan file {}: {error}", path.display())]
    #[diagnostic(code(rkectl::input), help("{}", GIVE_A_PLAN_FILE))]
    Read { path: PathBuf, error: std::io::Error },
    /// The file is not JSON of a plan file.
    #[error("{} is not a plan file: {error}", path.display())]
    #[diagnostic(code(rkectl::input), help("{}", GIVE_A_PLAN_FILE))]
    NotAPlan { path: PathBuf, error: serde_json::Error },
    /// Another rkectl's plan format.
    #[error("{} was written by another rkectl (plan format {found}, this one reads {})", path.display(), super::FORMAT)]
    #[diagnostic(
        code(rkectl::input),
        help("plan again with this rkectl, or apply the file with the version that wrote it")
    )]
    OtherFormat { path: PathBuf, found: u64 },
    /// The steps do not make a graph.
    #[error("{} is not a valid plan: {error}", path.display())]
    #[diagnostic(code(rkectl::input), help("plan again"))]
    NotAGraph { path: PathBuf, error: super::GraphError },
    /// Made for another cluster.yml, or this one changed since.
    #[error("the plan in {} was made for another cluster.yml (or {} changed since)", path.display(), config.display())]
    #[diagnostic(code(rkectl::refused), help("plan again with the current cluster.yml"))]
    OtherCluster { path: PathBuf, config: PathBuf },
    /// Made offline.
    #[error(transparent)]
    #[diagnostic(transparent)]
    Offline(#[from] OfflinePlan),
    /// What the plan was based on changed (named: hosts, S3).
    #[error("the plan in {} is stale: what it was based on changed on {changed}", path.display())]
    #[diagnostic(
        code(rkectl::refused),
        help("plan again; rkectl applies a saved plan only to the state it was made for")
    )]
    Stale { path: PathBuf, changed: String },
    /// Its steps are not the compiled ones.
    #[error(transparent)]
    #[diagnostic(transparent)]
    NotAsCompiled(#[from] NotAsCompiled),
}

/// Writes `plan`, made from the cluster.yml at `config`, to `path` (readable by its owner
/// only); refuses a plan that makes a new PKI.
pub fn write(path: &Path, config: &Path, plan: &Plan, pki: Option<&ClusterPki>) -> Result<(), PlanFileError> {
    if pki.is_some_and(|p| p.source == PkiSource::New) {
        return Err(PlanFileError::NewPki);
    }
    let file = PlanFile { config: config.display().to_string(), plan: plan.clone() };
    let json = serde_json::to_vec_pretty(&file).expect("plan serialises");
    crate::local::write_private_atomic(path, &json)
        .map_err(|error| PlanFileError::Write { path: path.to_path_buf(), error })
}

/// Reads a plan file, refusing another format or a graph that is not one.
pub fn read(path: &Path) -> Result<Plan, PlanFileError> {
    let text =
        std::fs::read_to_string(path).map_err(|error| PlanFileError::Read { path: path.to_path_buf(), error })?;
    let not_a_plan = |error| PlanFileError::NotAPlan { path: path.to_path_buf(), error };
    let value: serde_json::Value = serde_json::from_str(&text).map_err(not_a_plan)?;
    // Read before the rest: another version's plan would not parse, and should say why.
    let found = value.pointer("/plan/format").and_then(|f| f.as_u64()).unwrap_or(0);
    if found != u64::from(super::FORMAT) {
        return Err(PlanFileError::OtherFormat { path: path.to_path_buf(), found });
    }
    let plan = serde_json::from_value::<PlanFile>(value).map_err(not_a_plan)?.plan;
    plan.graph().map_err(|error| PlanFileError::NotAGraph { path: path.to_path_buf(), error })?;
    Ok(plan)
}

/// Refuses a plan read from `path` that was made for another cluster.yml, or offline.
pub fn check_fits(plan: &Plan, cfg: &LoadedConfig, path: &Path) -> Result<(), PlanFileError> {
    if plan.cluster_hash != cfg.hash {
        return Err(PlanFileError::OtherCluster { path: path.to_path_buf(), config: cfg.path.clone() });
    }
    super::saved::check_online(plan)?;
    Ok(())
}

/// Refuses a plan read from `path` when what it was based on changed (naming where), or
/// when its steps are not those of `fresh`, its inputs compiled again.
pub fn check_unchanged(saved: &Plan, fresh: &Plan, path: &Path) -> Result<(), PlanFileError> {
    if fresh.observed_fingerprint != saved.observed_fingerprint {
        let empty = crate::model::observed::Seen::default();
        let now = fresh.observed.seen().unwrap_or(&empty);
        let then = saved.observed.seen().unwrap_or(&empty);
        let changed: Vec<String> = now
            .hosts
            .iter()
            .filter(|(h, f)| then.hosts.get(*h) != Some(*f))
            .map(|(h, _)| h.to_string())
            .chain(then.hosts.keys().filter(|h| !now.hosts.contains_key(*h)).map(|h| h.to_string()))
            .chain((now.s3 != then.s3).then(|| "S3".to_string()))
            .collect();
        return Err(PlanFileError::Stale { path: path.to_path_buf(), changed: changed.join(", ") });
    }
    super::saved::check_as_compiled(saved, fresh).map_err(|difference: Difference| {
        PlanFileError::NotAsCompiled(NotAsCompiled { file: path.to_path_buf(), difference })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plan_file_reads_back_and_is_refused_for_another_cluster_yml_or_for_being_offline() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = crate::config::parse(
            Path::new("cluster.yml"),
            "nodes:\n  - address: 10.0.0.1\n    user: u\n    role: [etcd]\n".into(),
        )
        .unwrap();
        let mut plan = super::super::saved::tests::restore();
        let path = dir.path().join("plan.json");
        write(&path, &cfg.path, &plan, None).unwrap();
        let read_back = read(&path).unwrap();
        assert_eq!(serde_json::to_value(&read_back).unwrap(), serde_json::to_value(&plan).unwrap());
        let e = check_fits(&read_back, &cfg, &path).unwrap_err();
        assert!(matches!(e, PlanFileError::OtherCluster { .. }), "{e}");
        plan.cluster_hash = cfg.hash.clone();
        let e = check_fits(&plan, &cfg, &path).unwrap_err();
        assert_eq!(e.to_string(), "an offline plan cannot be applied: it did not look at the hosts");
        std::fs::write(&path, r#"{"config": "cluster.yml", "plan": {"format": 2}}"#).unwrap();
        let e = read(&path).unwrap_err().to_string();
        let expected = format!("was written by another rkectl (plan format 2, this one reads {})", crate::plan::FORMAT);
        assert!(e.ends_with(&expected), "{e}");
    }
}
