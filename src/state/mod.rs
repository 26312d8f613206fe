//! What rkectl keeps next to cluster.yml: the apply journal, the apply lock, and the
//! cluster state file (the PKI and what was deployed). Files are mode 0600; the state file
//! is replaced atomically.

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
