//! An unfinished apply made ready to finish, as [`crate::prepare`] makes a new one ready:
//! its journal read and held against cluster.yml, then the state files and the PKI it
//! places. Nothing is refreshed: the journal's plan is what finishes.

use crate::cluster_pki::{ClusterPki, PkiSource};
use crate::config::{LoadedConfig, S3Settings};
use crate::model::action::ActionSpec;
use crate::prepare::{PrepareError, Prepared, local_state};
use crate::rke::state::{RkeState, RkeStateError};
use crate::secret::Secret;
use crate::state::StatePaths;
use crate::state::journal::{self, JournalError, JournalState};
use miette::Diagnostic;
use std::path::PathBuf;

/// Why an unfinished apply cannot be finished now; nothing has been changed.
#[derive(Debug, thiserror::Error, Diagnostic)]
pub enum ResumeError {
    #[error(transparent)]
    #[diagnostic(transparent)]
    Journal(#[from] JournalError),
    #[error(transparent)]
    #[diagnostic(transparent)]
    Prepare(#[from] PrepareError),
    #[error(transparent)]
    #[diagnostic(transparent)]
    RkeState(#[from] RkeStateError),
    #[error("{} changed since the unfinished {title} started; resuming it could act on the wrong hosts", path.display())]
    #[diagnostic(
        code(rkectl::refused),
        help("put cluster.yml back as it was to finish it, or set it aside with `rkectl apply --abandon`")
    )]
    ConfigChanged { path: PathBuf, title: String },
    #[error("{} has no certificates", path.display())]
    #[diagnostic(code(rkectl::refused), help("put RKE's cluster.rkestate back"))]
    NoCertificates { path: PathBuf },
    #[error("the unfinished {title} needs the cluster's PKI, and {} is gone", path.display())]
    #[diagnostic(
        code(rkectl::refused),
        help("put RKE's cluster.rkestate back beside cluster.yml, then run `rkectl apply` again")
    )]
    PkiGone { title: String, path: PathBuf },
}

/// Reads the unfinished apply's journal beside cluster.yml, refusing it when cluster.yml
/// changed since it started.
pub fn read_unfinished(cfg: &LoadedConfig) -> Result<JournalState, ResumeError> {
    let paths = StatePaths::beside(&cfg.dir(), &cfg.stem());
    let j = journal::read(&paths.journal)?;
    if j.plan.cluster_hash != cfg.hash {
        return Err(ResumeError::ConfigChanged { path: cfg.path.clone(), title: j.plan.title.clone() });
    }
    Ok(j)
}

/// The journal's plan made ready to finish: the state files, and the PKI from RKE's state
/// beside cluster.yml for the actions that place certificates (up, restore).
pub fn prepare_resume(
    cfg: LoadedConfig,
    j: &JournalState,
    s3: Option<S3Settings>,
    state_passphrase: Option<Secret>,
) -> Result<Prepared, ResumeError> {
    let (paths, state, rke_state) = local_state(&cfg)?;
    if matches!(j.plan.action, ActionSpec::EtcdSnapshotSave { seal_state: true, .. }) && state_passphrase.is_none() {
        return Err(PrepareError::SealNeedsPassphrase.into());
    }
    let pki = pki_for_resume(j, &cfg, rke_state.as_ref())?;
    let plan = j.plan.clone();
    Ok(Prepared { plan, cfg, paths, state, pki, rke_state, s3, state_passphrase, pool: None })
}

/// The PKI a resumed apply places: RKE's state file beside cluster.yml, for the actions
/// that need one; refused when that file is gone.
fn pki_for_resume(
    j: &JournalState,
    cfg: &LoadedConfig,
    rke_state: Option<&RkeState>,
) -> Result<Option<ClusterPki>, ResumeError> {
    let places = matches!(j.plan.action, ActionSpec::Up | ActionSpec::EtcdSnapshotRestore { .. });
    match (rke_state, places) {
        (Some(st), true) => {
            let pki = st.pki()?.ok_or_else(|| ResumeError::NoCertificates { path: st.path().to_path_buf() })?;
            Ok(Some(ClusterPki {
                pki,
                state: st.clone(),
                source: PkiSource::LocalState(st.path().to_path_buf()),
                write: false,
                issued: Vec::new(),
                reissued: Vec::new(),
            }))
        }
        (None, true) => {
            Err(ResumeError::PkiGone { title: j.plan.title.clone(), path: crate::rke::state::path_for(&cfg.path) })
        }
        _ => Ok(None),
    }
}

/// An apply refused because an unfinished one is recorded beside cluster.yml.
#[derive(Debug, thiserror::Error, Diagnostic)]
#[error("{detail}")]
#[diagnostic(
    code(rkectl::refused),
    help("run `rkectl apply` to finish it, or `rkectl apply --abandon` to set it aside")
)]
pub struct Unfinished {
    /// What is recorded, and where.
    pub detail: String,
}

/// The refusal to start an apply while an unfinished one is recorded beside cluster.yml.
pub fn unfinished(paths: &StatePaths) -> Unfinished {
    let detail = match journal::read(&paths.journal) {
        Ok(j) => format!(
            "an unfinished {} (started {}) is recorded in {}: {} of {} steps done",
            j.plan.title,
            j.started_at,
            paths.journal.display(),
            j.finished.len(),
            j.plan.step_count()
        ),
        Err(e) => format!("an unfinished apply is recorded in {} ({e})", paths.journal.display()),
    };
    Unfinished { detail }
}

/// `rkectl apply --abandon`: renames the unfinished apply's journal out of the way, and
/// says where it now is.
pub fn set_aside(paths: &StatePaths) -> std::io::Result<PathBuf> {
    let mut aside = paths.journal.as_os_str().to_owned();
    aside.push(format!(".abandoned-{}", time::OffsetDateTime::now_utc().unix_timestamp()));
    std::fs::rename(&paths.journal, &aside)?;
    Ok(PathBuf::from(aside))
}

/// What the unfinished apply has done, the steps left, and where it last stopped, a line each.
pub fn steps_left(j: &JournalState) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let left: Vec<&crate::steps::Step> =
        j.plan.steps.iter().filter(|s| !s.kind().is_order_only() && !j.finished.contains(&s.id)).collect();
    let _ = writeln!(
        out,
        "Resuming {} started {}: {} of {} steps done; {} left:",
        j.plan.title,
        j.started_at,
        j.finished.len(),
        j.finished.len() + left.len(),
        left.len()
    );
    for s in &left {
        let host = s.host.as_ref().map(|h| h.to_string()).unwrap_or_else(|| "(cluster)".into());
        let again = if j.interrupted.contains(&s.id) { " (interrupted, runs again)" } else { "" };
        let _ = writeln!(out, "  {:<20} {host:<15} {}{again}", s.kind().name(), s.action.describe());
    }
    if let Some((step, err)) = &j.last_failure {
        let _ = writeln!(out, "The last run stopped at {step}: {err}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unfinished_apply_refuses_a_new_one_until_it_is_set_aside() {
        let dir = tempfile::tempdir().unwrap();
        let paths = StatePaths::beside(dir.path(), "cluster");
        std::fs::write(&paths.journal, "not a journal").unwrap();
        let refused = unfinished(&paths);
        assert!(refused.detail.starts_with("an unfinished apply is recorded in "), "{}", refused.detail);
        assert!(refused.help().is_some_and(|h| h.to_string().contains("rkectl apply --abandon")));
        let aside = set_aside(&paths).unwrap();
        assert!(!paths.journal.exists() && aside.exists(), "{}", aside.display());
        assert!(aside.display().to_string().contains(".abandoned-"));
    }
}
