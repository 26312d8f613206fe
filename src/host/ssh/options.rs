//! What the caller chooses about reaching nodes: host-key checking, the agent, the connect
//! timeout, the bastion, and how long to wait on a node.

use super::*;

/// How long rkectl waits on a node before giving up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WaitLimits {
    /// A node script (read, list, remove, write and sync a file) runs at most this long.
    pub script: Duration,
    /// An image pull may report no progress for at most this long.
    pub pull_silence: Duration,
}

impl Default for WaitLimits {
    /// Ten minutes for a script: the slowest is the `sync` that makes a copied snapshot
    /// durable, at most etcd's 8 GiB quota written back, about four minutes at 40 MB/s;
    /// anything beyond means a stuck disk or mount. Five minutes of silence for a pull:
    /// Docker reports a pull's bytes as they arrive and as layers are extracted, so only
    /// a registry or a disk that stopped answering is silent that long.
    fn default() -> Self {
        WaitLimits { script: Duration::from_secs(600), pull_silence: Duration::from_secs(300) }
    }
}

/// How to treat the node's SSH host key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KnownHostsPolicy {
    /// The key must already be in the known_hosts file.
    Strict {
        /// The known_hosts file; `None` means the user's `~/.ssh/known_hosts`.
        file: Option<PathBuf>,
    },
    /// Unknown keys are recorded on first use; changed keys are still refused.
    AcceptNew {
        /// The known_hosts file; `None` means the user's `~/.ssh/known_hosts`.
        file: Option<PathBuf>,
    },
}

impl KnownHostsPolicy {
    /// The known_hosts file given, if any.
    pub fn file(&self) -> Option<&Path> {
        match self {
            KnownHostsPolicy::Strict { file } | KnownHostsPolicy::AcceptNew { file } => file.as_deref(),
        }
    }

    /// The known_hosts file for messages: the one given, or `~/.ssh/known_hosts`.
    pub(super) fn display_file(&self) -> String {
        self.file().map(|f| f.display().to_string()).unwrap_or_else(|| "~/.ssh/known_hosts".to_string())
    }
}

/// How rkectl dials nodes.
#[derive(Debug, Clone)]
pub struct SshOptions {
    /// Host key checking.
    pub known_hosts: KnownHostsPolicy,
    /// `--ssh-agent-auth`: use the agent at `SSH_AUTH_SOCK` for every node.
    pub ssh_agent_auth: bool,
    /// `--ignore-docker-version`: drive Docker releases older than 1.13.1 anyway.
    pub ignore_docker_version: bool,
    /// TCP connect and SSH handshake timeout (whole seconds; at least one).
    pub connect_timeout: Duration,
    /// cluster.yml's `bastion_host`: every node is reached through it.
    pub bastion: Option<Bastion>,
}

impl Default for SshOptions {
    /// Strict checking against `~/.ssh/known_hosts`, keys from cluster.yml, 15 s to connect.
    fn default() -> Self {
        SshOptions {
            known_hosts: KnownHostsPolicy::Strict { file: None },
            ssh_agent_auth: false,
            ignore_docker_version: false,
            connect_timeout: Duration::from_secs(15),
            bastion: None,
        }
    }
}
