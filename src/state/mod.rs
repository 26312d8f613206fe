//! What rkectl keeps next to cluster.yml: the apply journal, the apply lock, and the
//! cluster state file (the PKI and what was deployed). Files are mode 0600; the state file
//! is replaced atomically.
//!
//! # What it owns
//! - [`journal`]: one apply's record, append-only and fsynced: the plan it runs (its
//!   header), then every step's start and finish, then the run's end. `rkectl apply` finds
//!   an unfinished one and resumes it; a finished one is moved aside as `.last`.
//! - [`lock`]: one apply per cluster.yml at a time (an OS lock the kernel releases when its
//!   holder dies, with a record of who holds it).
//! - [`cluster_state`]: rkectl's own state file: which members it deployed, and the PKI
//!   when rkectl made it (RKE's `cluster.rkestate` stays RKE's, read by `rke`).
//!
//! # How data flows
//! [`StatePaths`] names the files for one cluster.yml. `resume` and `prepare` read them;
//! `exec` appends to the journal as events happen (`exec::journaled` turns events into
//! records), and `apply` writes the state file when a run has changed what is deployed.

pub mod cluster_state;
pub mod journal;
pub mod lock;

use std::path::{Path, PathBuf};

/// The paths of rkectl's files for one cluster.yml.
#[derive(Debug, Clone)]
pub struct StatePaths {
    pub state: PathBuf,
    pub journal: PathBuf,
    pub lock: PathBuf,
}

impl StatePaths {
    /// Files beside cluster.yml: `<stem>.rkectl-state`, `.rkectl-journal`, `.rkectl-lock`.
    pub fn beside(dir: &Path, stem: &str) -> StatePaths {
        StatePaths {
            state: dir.join(format!("{stem}.rkectl-state")),
            journal: dir.join(format!("{stem}.rkectl-journal")),
            lock: dir.join(format!("{stem}.rkectl-lock")),
        }
    }
}
