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
