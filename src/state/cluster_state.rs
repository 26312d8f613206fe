//! The cluster state file: the PKI and the members rkectl deployed.
//!
//! This is what lets a restore work without any pki bundle, and what tells `up` which
//! members to remove when they leave cluster.yml. JSON, mode 0600, replaced atomically
//! (write a temporary file, fsync, rename, fsync the folder).

use crate::config::HostAddr;
use crate::etcd::pki::{CertPair, Pki};
use crate::secret::Secret;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Version of the state file this build writes.
pub const STATE_FORMAT: u32 = 1;

/// A member rkectl deployed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeployedMember {
    pub address: HostAddr,
    pub member: String,
}

/// What the state file holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterState {
    pub cluster_name: String,
    pub pki: Option<Pki>,
    pub members: Vec<DeployedMember>,
}

#[derive(Serialize, Deserialize)]
struct PairOnDisk {
    cert: String,
    key: String,
}

#[derive(Serialize, Deserialize)]
struct PkiOnDisk {
    ca_cert: String,
    ca_key: String,
    client_cert: String,
    client_key: String,
    members: BTreeMap<HostAddr, PairOnDisk>,
}

impl PkiOnDisk {
    fn from_pki(p: &Pki) -> PkiOnDisk {
        let pair = |p: &CertPair| PairOnDisk { cert: p.cert.clone(), key: p.key.expose().to_string() };
        PkiOnDisk {
            ca_cert: p.ca.cert.clone(),
            ca_key: p.ca.key.expose().to_string(),
            client_cert: p.client.cert.clone(),
            client_key: p.client.key.expose().to_string(),
            members: p.members.iter().map(|(k, v)| (k.clone(), pair(v))).collect(),
        }
    }

    fn into_pki(self) -> Pki {
        let pair = |p: PairOnDisk| CertPair { cert: p.cert, key: Secret::new(p.key) };
        Pki {
            ca: CertPair { cert: self.ca_cert, key: Secret::new(self.ca_key) },
            client: CertPair { cert: self.client_cert, key: Secret::new(self.client_key) },
            members: self.members.into_iter().map(|(k, v)| (k, pair(v))).collect(),
        }
    }
}

#[derive(Serialize, Deserialize)]
struct OnDisk {
    format: u32,
    cluster_name: String,
    pki: Option<PkiOnDisk>,
    #[serde(default)]
    members: Vec<DeployedMember>,
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
    #[diagnostic(
        code(rkectl::state::invalid),
        help("it holds the cluster's PKI; restore it from a backup rather than deleting it")
    )]
    Invalid { path: PathBuf, reason: String },
}

impl ClusterState {
    /// Reads the state file; a missing file is an empty state.
    pub fn load(path: &Path) -> Result<ClusterState, StateError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(ClusterState::default()),
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
        Ok(ClusterState { cluster_name: d.cluster_name, pki: d.pki.map(PkiOnDisk::into_pki), members: d.members })
    }

    /// Writes the state file atomically with mode 0600.
    pub fn save(&self, path: &Path) -> Result<(), StateError> {
        let io = |source| StateError::Io { path: path.to_path_buf(), source };
        let d = OnDisk {
            format: STATE_FORMAT,
            cluster_name: self.cluster_name.clone(),
            pki: self.pki.as_ref().map(PkiOnDisk::from_pki),
            members: self.members.clone(),
        };
        let json = serde_json::to_vec_pretty(&d).expect("state serialises");
        write_private_atomic(path, &json).map_err(io)
    }
}

/// The PKI as a JSON document (sealed before it is stored with S3 snapshots).
pub fn pki_to_json(p: &Pki) -> Secret {
    Secret::new(serde_json::to_string(&PkiOnDisk::from_pki(p)).expect("pki serialises"))
}

/// Reads a PKI from [`pki_to_json`]'s output.
pub fn pki_from_json(json: &str) -> Option<Pki> {
    serde_json::from_str::<PkiOnDisk>(json).ok().map(PkiOnDisk::into_pki)
}

/// Writes `data` to `path` via a temporary file, fsync and rename; mode 0600.
pub fn write_private_atomic(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let tmp = dir.join(format!(
        ".{}.tmp{}",
        path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
        std::process::id()
    ));
    let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
    f.write_all(data)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path)?;
    if let Ok(d) = std::fs::File::open(&dir) {
        let _ = d.sync_all();
    }
    Ok(())
}
