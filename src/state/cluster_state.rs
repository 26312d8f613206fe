//! The cluster state file: what rkectl knows that RKE's state does not hold.
//!
//! Today that is the members rkectl deployed, which tells `up` which members to remove
//! when they leave cluster.yml. The PKI lives in RKE's `cluster.rkestate` (see
//! [`crate::rke::state`]); keeping a second copy here would let the two disagree. JSON,
//! mode 0600, replaced atomically (write a temporary file, fsync, rename, fsync the folder).

use crate::config::HostAddr;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Version of the state file this build writes.
pub const STATE_FORMAT: u32 = 2;

/// A member rkectl deployed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeployedMember {
    pub address: HostAddr,
    pub member: String,
}

/// What the state file holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RkectlState {
    pub cluster_name: String,
    pub members: Vec<DeployedMember>,
}

#[derive(Serialize, Deserialize)]
struct OnDisk {
    format: u32,
    cluster_name: String,
    #[serde(default)]
    members: Vec<DeployedMember>,
    /// Format 1 kept a PKI of rkectl's own here.
    #[serde(default, skip_serializing)]
    pki: Option<serde_json::Value>,
}

/// Why the state file cannot be used.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum StateError {
    #[error("cannot read the cluster state {}: {source}", path.display())]
    #[diagnostic(code(rkectl::state::io))]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the cluster state {} is not valid: {reason}", path.display())]
    #[diagnostic(code(rkectl::state::invalid), help("it lists the etcd members rkectl deployed; fix or remove it"))]
    Invalid { path: PathBuf, reason: String },
    #[error("the cluster state {} holds a PKI of rkectl 0.1's own", path.display())]
    #[diagnostic(
        code(rkectl::state::legacy_pki),
        help(
            "this rkectl keeps the PKI where RKE does, in cluster.rkestate; the certificates of that PKI are still on the etcd hosts: rebuild the plane with `rkectl up --new-pki` (it replaces them), or keep using the version that made it"
        )
    )]
    LegacyPki { path: PathBuf },
}

impl RkectlState {
    /// Reads the state file; a missing file is an empty state.
    pub fn load(path: &Path) -> Result<RkectlState, StateError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(RkectlState::default()),
            Err(source) => return Err(StateError::Io { path: path.to_path_buf(), source }),
        };
        let d: OnDisk = serde_json::from_str(&text)
            .map_err(|e| StateError::Invalid { path: path.to_path_buf(), reason: e.to_string() })?;
        if d.format > STATE_FORMAT {
            return Err(StateError::Invalid {
                path: path.to_path_buf(),
                reason: format!("written by a newer rkectl (format {})", d.format),
            });
        }
        if d.pki.as_ref().is_some_and(|p| !p.is_null()) {
            return Err(StateError::LegacyPki { path: path.to_path_buf() });
        }
        Ok(RkectlState { cluster_name: d.cluster_name, members: d.members })
    }

    /// Writes the state file atomically with mode 0600.
    pub fn save(&self, path: &Path) -> Result<(), StateError> {
        let io = |source| StateError::Io { path: path.to_path_buf(), source };
        let d = OnDisk {
            format: STATE_FORMAT,
            cluster_name: self.cluster_name.clone(),
            members: self.members.clone(),
            pki: None,
        };
        let json = serde_json::to_vec_pretty(&d).expect("state serialises");
        crate::local::write_private_atomic(path, &json).map_err(io)
    }
}
