//! The real host: one OpenSSH session per node, the node's Docker socket forwarded over it.
//!
//! The system `ssh` client runs as a ControlMaster (crate `openssh`, process mux), so the
//! user's `~/.ssh/config`, agent and known_hosts behave exactly as with a hand-typed `ssh`.
//! Docker is driven by bollard through a local unix socket that the master forwards to the
//! node's `docker_socket`; files are handled by small POSIX `sh` scripts on the node (the
//! node has a shell even when the etcd image has none). Every path travels as a quoted
//! positional parameter, never spliced into script text.
//!
//! Everything local to a session (control socket, forwarded Docker socket, an inline key or
//! certificate, the ssh_config of a certificate or bastion: [`super::ssh_config`]) lives in
//! one private 0700 folder that is removed when the last user of the session goes.
//!
//! Here: the connector, the host and its [`Host`] implementation, which hands each call to
//! the module for its job: `session` (dialing, the master kept open, the node lock), `docker`
//! (the Docker API over the forwarded socket) and `files` (file operations by node script).
//! Beside them: `options` (what the caller chooses), `auth` (key, agent, certificates,
//! bastion, the private folder), `errors` (SSH's and Docker's failures classified) and
//! `scripts` (the node scripts and the readers of their output).

use super::ssh_config::{self, BastionSettings, Proxy, Unwritable};
use super::{
    ByteStream, Connector, ContainerInfo, ContainerSpec, DirEntry, DockerInfo, Host, HostError, HostResult,
    ListedContainer, LogStream, Owner, RestartPolicy,
};
use crate::config::registries::PrivateRegistry;
use crate::config::{Bastion, CertSource, HostAddr, Node, SshAuth, SshCert};
use crate::secret::{Secret, redact};
use async_trait::async_trait;
use bollard::Docker;
use bollard::errors::Error as DockerError;
use openssh::{Child, ChildStdout, Session, SessionBuilder, Stdio};
use std::fmt;
use std::future::Future;
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, ReadBuf};
use tokio::task::JoinHandle;

mod auth;
mod docker;
mod errors;
mod files;
mod options;
mod scripts;
#[cfg(test)]
mod scripts_tests;
mod session;

use auth::*;
use errors::*;
pub use options::{KnownHostsPolicy, SshOptions, WaitLimits};
use scripts::*;
use session::ConnRef;

/// How often the master pings an idle server; three unanswered pings end the session, so a
/// dead link fails every operation within about half a minute instead of hanging.
const SERVER_ALIVE_INTERVAL: Duration = Duration::from_secs(10);
/// Per-request Docker timeout (until response headers arrive). Streamed bodies (a pull's
/// progress, a followed log) are bounded by the waits of [`WaitLimits`] instead.
const DOCKER_TIMEOUT_SECS: u64 = 120;
/// Oldest Docker release that rkectl drives (RKE's floor).
const MIN_DOCKER_VERSION: (u64, u64, u64) = (1, 13, 1);
/// Oldest Docker API that rkectl drives.
const MIN_DOCKER_API: (u64, u64) = (1, 24);
/// Exit code our node scripts use for "the path does not exist"; they use 4 for any other
/// failure of their own (never 127 or 255: openssh turns those into errors of its own).
const EXIT_ABSENT: i32 = 3;

/// Dials nodes over SSH and forwards their Docker socket.
#[derive(Debug, Clone)]
pub struct SshConnector {
    options: SshOptions,
}

impl SshConnector {
    /// A connector with these options.
    pub fn new(options: SshOptions) -> Self {
        SshConnector { options }
    }

    /// The options it dials with.
    pub fn options(&self) -> &SshOptions {
        &self.options
    }
}

#[async_trait]
impl Connector for SshConnector {
    async fn connect(&self, node: &Node) -> HostResult<Arc<dyn Host>> {
        Ok(Arc::new(SshHost::dial(node, &self.options).await?))
    }
}

/// A node reached over SSH, with its Docker daemon behind a forwarded socket.
pub struct SshHost {
    addr: HostAddr,
    docker_socket: String,
    docker_version: String,
    docker: Docker,
    /// The local end of the forwarded Docker socket (credentialed pulls use it directly).
    docker_local: PathBuf,
    waits: WaitLimits,
    /// A `cat` that never ends: it keeps the master busy, so the master's idle timeout only
    /// fires once this process is gone (and an orphaned master then exits by itself).
    _keepalive: Mutex<Child<ConnRef>>,
    /// `rkectl agent hold-lock` while this invocation holds its claim (and an apply the
    /// node lock), and the task that keeps telling it the workstation is there: its input
    /// is this connection, so the claims go when the connection does, or falls silent.
    claim: Mutex<Option<session::HeldClaim>>,
    /// Dropped last: closing the master needs its control socket, inside the private folder.
    conn: ConnRef,
}

impl fmt::Debug for SshHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SshHost")
            .field("addr", &self.addr)
            .field("docker_socket", &self.docker_socket)
            .field("docker_version", &self.docker_version)
            .finish_non_exhaustive()
    }
}

impl SshHost {
    /// The same host with other wait limits (tests shorten them).
    pub fn with_wait_limits(mut self, waits: WaitLimits) -> SshHost {
        self.waits = waits;
        self
    }

    /// The Docker server version seen when dialing.
    pub fn docker_version(&self) -> &str {
        &self.docker_version
    }

    /// The ControlMaster socket (for `ssh -S PATH -O check none` when diagnosing).
    pub fn control_socket(&self) -> &Path {
        self.conn.control_socket()
    }

    /// Whether the SSH master is still alive.
    pub async fn is_alive(&self) -> bool {
        self.conn.check().await.is_ok()
    }
}

#[async_trait]
impl Host for SshHost {
    fn addr(&self) -> &HostAddr {
        &self.addr
    }

    async fn docker_info(&self) -> HostResult<DockerInfo> {
        docker::docker_info(self).await
    }

    async fn image_present(&self, image: &str) -> HostResult<bool> {
        docker::image_present(self, image).await
    }

    async fn pull_image(&self, image: &str, registry: Option<&PrivateRegistry>) -> HostResult<()> {
        docker::pull_image(self, image, registry).await
    }

    async fn inspect_container(&self, name: &str) -> HostResult<Option<ContainerInfo>> {
        docker::inspect_container(self, name).await
    }

    async fn create_container(&self, spec: &ContainerSpec) -> HostResult<String> {
        docker::create_container(self, spec).await
    }

    async fn start_container(&self, name: &str) -> HostResult<()> {
        docker::start_container(self, name).await
    }

    async fn wait_container(&self, name: &str) -> HostResult<i64> {
        docker::wait_container(self, name).await
    }

    async fn follow_logs(&self, name: &str) -> HostResult<LogStream> {
        docker::follow_logs(self, name).await
    }

    async fn claim(&self, agent: &str, owner: &Owner) -> HostResult<()> {
        session::claim(self, agent, owner).await
    }

    async fn live_owners(&self, agent: &str) -> HostResult<crate::agent::node_lock::LiveOwners> {
        session::live_owners(self, agent).await
    }

    async fn list_containers(&self, label: &str) -> HostResult<Vec<ListedContainer>> {
        docker::list_containers(self, label).await
    }

    async fn sha256_file(&self, path: &str) -> HostResult<Option<String>> {
        files::sha256_file(self, path).await
    }

    async fn stop_container(&self, name: &str) -> HostResult<()> {
        docker::stop_container(self, name).await
    }

    async fn remove_container(&self, name: &str) -> HostResult<bool> {
        docker::remove_container(self, name).await
    }

    async fn read_file(&self, path: &str) -> HostResult<Option<Vec<u8>>> {
        files::read_file(self, path).await
    }

    async fn write_file(&self, path: &str, data: &[u8], mode: u32) -> HostResult<()> {
        files::write_file(self, path, data, mode).await
    }

    async fn read_range(&self, path: &str, offset: u64, len: u64) -> HostResult<Vec<u8>> {
        files::read_range(self, path, offset, len).await
    }

    async fn remove_file(&self, path: &str) -> HostResult<bool> {
        files::remove_file(self, path).await
    }

    async fn list_dirs(&self, path: &str) -> HostResult<Vec<String>> {
        files::list_dirs(self, path).await
    }

    async fn remove_tree(&self, path: &str) -> HostResult<bool> {
        files::remove_tree(self, path).await
    }

    async fn list_dir(&self, path: &str) -> HostResult<Vec<DirEntry>> {
        files::list_dir(self, path).await
    }

    async fn open_read(&self, path: &str) -> HostResult<ByteStream> {
        files::open_read(self, path).await
    }

    async fn write_stream(&self, path: &str, data: ByteStream, mode: u32) -> HostResult<u64> {
        files::write_stream(self, path, data, mode).await
    }
}
