//! The rkectl binary that helpers run on a node, and how it gets there.
//!
//! rkectl needs no image of its own: a node runs helpers in the cluster's etcd image (which
//! a cluster RKE built already has, from the registry cluster.yml names), with rkectl's own
//! binary mounted read-only as the entrypoint (`rkectl agent …`). The workstation uploads
//! that binary over SSH the first time it dials a node, to a folder named after its
//! version and checksum (`/opt/rke/rkectl/<version>-<blake3>/rkectl`), so that different
//! versions never overwrite each other and a file there is known to be the right one;
//! `rkectl cleanup` removes them. The binary must be statically linked: etcd images have
//! no libraries and no shell.

use crate::model::Checksum;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// Where the binaries go on a node.
pub const REMOTE_ROOT: &str = "/opt/rke/rkectl";
/// The environment variable naming another binary to upload (a static build) than the
/// running one.
pub const ENV: &str = "RKECTL_AGENT_BIN";

/// The binary helpers run.
#[derive(Debug, Clone)]
pub struct AgentBinary {
    /// Where it is on this machine.
    pub local: PathBuf,
    pub size: u64,
    pub checksum: Checksum,
    /// Its SHA-256 (lowercase hex), which nodes can compute with their own `sha256sum`.
    pub sha256: String,
    /// It has no program interpreter: it runs in an image without libraries.
    pub is_static: bool,
}

/// Why the binary cannot be used.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum AgentBinaryError {
    #[error("cannot read the rkectl binary {} to install it on the nodes: {source}", path.display())]
    #[diagnostic(code(rkectl::agent_binary::read), help("set {ENV} to a readable static rkectl binary"))]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} is dynamically linked, so it cannot run inside the etcd image on the nodes", path.display())]
    #[diagnostic(
        code(rkectl::agent_binary::dynamic),
        help(
            "helpers run rkectl inside the cluster's etcd image, which has no libraries: use the static build (see README, Install), or set {ENV} to one"
        )
    )]
    Dynamic { path: PathBuf },
}

impl AgentBinary {
    /// Reads a binary: its size, checksum, and whether it is static.
    pub fn read(path: &Path) -> Result<AgentBinary, AgentBinaryError> {
        let bytes =
            std::fs::read(path).map_err(|source| AgentBinaryError::Read { path: path.to_path_buf(), source })?;
        Ok(AgentBinary {
            local: path.to_path_buf(),
            size: bytes.len() as u64,
            checksum: Checksum::of(&bytes),
            sha256: sha256_hex(&bytes),
            is_static: is_static_elf(&bytes),
        })
    }

    /// The binary to upload: `$RKECTL_AGENT_BIN`, else this very program; read once.
    pub fn current() -> Result<&'static AgentBinary, &'static AgentBinaryError> {
        static CURRENT: OnceLock<Result<AgentBinary, AgentBinaryError>> = OnceLock::new();
        CURRENT
            .get_or_init(|| {
                let path = match std::env::var_os(ENV) {
                    Some(p) => PathBuf::from(p),
                    None => std::env::current_exe()
                        .map_err(|source| AgentBinaryError::Read { path: PathBuf::from("rkectl"), source })?,
                };
                AgentBinary::read(&path)
            })
            .as_ref()
    }

    /// The binary to upload, refused when it could not run in an etcd image.
    pub fn usable() -> Result<&'static AgentBinary, AgentBinaryError> {
        let b = Self::current().map_err(|e| AgentBinaryError::Read {
            path: PathBuf::from(ENV),
            source: std::io::Error::other(e.to_string()),
        })?;
        if !b.is_static {
            return Err(AgentBinaryError::Dynamic { path: b.local.clone() });
        }
        Ok(b)
    }

    /// Its folder on a node: `/opt/rke/rkectl/<version>-<first 16 hex of BLAKE3>`.
    pub fn remote_dir(&self) -> String {
        let hex = self.checksum.0.trim_start_matches("blake3:");
        format!("{REMOTE_ROOT}/{}-{}", env!("CARGO_PKG_VERSION"), &hex[..16.min(hex.len())])
    }

    /// Its path on a node.
    pub fn remote_path(&self) -> String {
        format!("{}/rkectl", self.remote_dir())
    }
}

/// SHA-256 of `bytes`, as `sha256sum` prints it.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// The path helpers run the agent from: the current binary's on a node. Engine tests that
/// never upload anything get a path all the same.
pub fn remote_path() -> String {
    match AgentBinary::current() {
        Ok(b) => b.remote_path(),
        Err(_) => format!("{REMOTE_ROOT}/unknown/rkectl"),
    }
}

/// The folder of [`remote_path`].
pub fn remote_dir() -> String {
    match AgentBinary::current() {
        Ok(b) => b.remote_dir(),
        Err(_) => format!("{REMOTE_ROOT}/unknown"),
    }
}

/// Whether an ELF executable has no program interpreter (`PT_INTERP`): it is statically
/// linked (static-pie included) and needs no library where it runs.
pub fn is_static_elf(bytes: &[u8]) -> bool {
    const PT_INTERP: u32 = 3;
    if bytes.len() < 64 || &bytes[..4] != b"\x7fELF" || bytes[4] != 2 || bytes[5] != 1 {
        return false; // not a little-endian 64-bit ELF: not something we can upload
    }
    let u16_at = |o: usize| u16::from_le_bytes([bytes[o], bytes[o + 1]]) as usize;
    let u32_at = |o: usize| u32::from_le_bytes(bytes[o..o + 4].try_into().expect("4 bytes"));
    let u64_at = |o: usize| u64::from_le_bytes(bytes[o..o + 8].try_into().expect("8 bytes")) as usize;
    let (phoff, phentsize, phnum) = (u64_at(32), u16_at(54), u16_at(56));
    (0..phnum).all(|i| {
        let at = phoff + i * phentsize;
        at + 4 > bytes.len() || u32_at(at) != PT_INTERP
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dynamic_executable_is_told_apart_from_a_static_one() {
        // /bin/sh is dynamically linked on every system these tests run on.
        let sh = std::fs::read("/bin/sh").unwrap();
        assert!(!is_static_elf(&sh));
        assert!(!is_static_elf(b"#!/bin/sh\necho not an ELF\n"));
        // A minimal static ELF header: no program headers at all.
        let mut elf = vec![0u8; 64];
        elf[..4].copy_from_slice(b"\x7fELF");
        elf[4] = 2;
        elf[5] = 1;
        assert!(is_static_elf(&elf));
    }

    #[test]
    fn the_remote_folder_carries_version_and_checksum() {
        let b = AgentBinary {
            local: "x".into(),
            size: 1,
            checksum: Checksum::of(b"binary"),
            sha256: sha256_hex(b"binary"),
            is_static: true,
        };
        let dir = b.remote_dir();
        assert!(dir.starts_with(&format!("{REMOTE_ROOT}/{}-", env!("CARGO_PKG_VERSION"))), "{dir}");
        assert_eq!(dir.len(), REMOTE_ROOT.len() + 1 + env!("CARGO_PKG_VERSION").len() + 1 + 16);
        assert_eq!(b.remote_path(), format!("{dir}/rkectl"));
    }
}
