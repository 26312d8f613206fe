//! The narrow interface every step uses to act on a host: containers, files, byte streams.
//!
//! Three things implement it: the real host (`ssh`: an OpenSSH session per node with the
//! node's Docker socket forwarded and driven by bollard), the in-memory `fake::FakeHost`
//! for engine tests (built only with the `testing` feature, which the tests turn on), and
//! wrappers where they pay (`retry`). Nothing above this module knows which one it talks to.
//! A [`Connector`] turns a cluster.yml node into a host; the [`HostPool`] dials each host
//! once and shares the connection between steps.

#[cfg(any(test, feature = "testing"))]
pub mod fake;
pub mod owner;
pub mod records;
pub mod registry_pull;
pub mod run;
pub mod ssh;
pub mod ssh_config;

use crate::config::registries::PrivateRegistry;
pub use owner::{OWNER_LABEL, Owner, OwnerId};
pub use run::{RunOutput, Silence, run_once, run_watched};

use crate::config::{HostAddr, Node};
use crate::secret::Secret;
use async_trait::async_trait;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use tokio::io::AsyncRead;
use tokio::sync::{Mutex, OnceCell};

/// A readable stream of bytes from a host.
pub type ByteStream = Box<dyn AsyncRead + Send + Unpin>;

/// A container's output as it comes, in pieces as Docker hands them over (not whole lines).
pub type LogStream = futures::stream::BoxStream<'static, HostResult<bytes::Bytes>>;

/// How Docker restarts a container.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum RestartPolicy {
    /// Never (temporary containers).
    No,
    /// Always, unless stopped by hand (services like `etcd`).
    Always,
}

/// A container to create.
#[derive(Debug, Clone)]
pub struct ContainerSpec {
    pub name: String,
    pub image: String,
    /// Replaces the image's entrypoint (used to run a binary directly, never through a shell).
    pub entrypoint: Option<Vec<String>>,
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    /// Files that hold secrets: written on the host (mode 0600) just before the container
    /// is created and bound into it read-only, never in its environment (which `docker
    /// inspect` shows to anyone with the socket, for the container's whole life).
    pub secret_files: Vec<SecretFile>,
    /// `host:container[:opts]` bind mounts.
    pub binds: Vec<String>,
    pub network_host: bool,
    pub pid_host: bool,
    pub restart: RestartPolicy,
    pub labels: BTreeMap<String, String>,
}

impl ContainerSpec {
    /// A container with no mounts, no restart, on the default network.
    pub fn new(name: impl Into<String>, image: impl Into<String>) -> Self {
        ContainerSpec {
            name: name.into(),
            image: image.into(),
            entrypoint: None,
            cmd: Vec::new(),
            env: Vec::new(),
            secret_files: Vec::new(),
            binds: Vec::new(),
            network_host: false,
            pid_host: false,
            restart: RestartPolicy::No,
            labels: BTreeMap::new(),
        }
    }
}

/// A secret handed to a container as a read-only file.
#[derive(Debug, Clone)]
pub struct SecretFile {
    pub host_path: String,
    pub container_path: String,
    pub content: Secret,
}

/// Creates the container of `spec`, its secret files first.
pub async fn create_container(host: &dyn Host, spec: &ContainerSpec) -> HostResult<String> {
    if spec.secret_files.is_empty() {
        return host.create_container(spec).await;
    }
    let mut with_files = spec.clone();
    for f in &spec.secret_files {
        host.write_file(&f.host_path, f.content.expose().as_bytes(), 0o600).await?;
        with_files.binds.push(format!("{}:{}:ro", f.host_path, f.container_path));
    }
    with_files.secret_files.clear();
    host.create_container(&with_files).await
}

/// Removes the secret files of `spec` (its container is gone, or going).
pub async fn remove_secret_files(host: &dyn Host, spec: &ContainerSpec) -> HostResult<()> {
    for f in &spec.secret_files {
        host.remove_file(&f.host_path).await?;
    }
    Ok(())
}

/// What Docker says about a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerInfo {
    pub id: String,
    pub name: String,
    pub image: String,
    pub running: bool,
    /// Restarting in a loop (crashing).
    pub restarting: bool,
    pub exit_code: Option<i64>,
    pub labels: BTreeMap<String, String>,
    /// The entrypoint, then the command: what the container runs.
    pub args: Vec<String>,
    /// Its environment (`NAME=value`, secrets included: never print it).
    pub env: Vec<String>,
    /// Its bind mounts, as Docker reports them.
    pub binds: Vec<String>,
}

/// A container as Docker lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedContainer {
    pub name: String,
    pub running: bool,
    pub labels: BTreeMap<String, String>,
}

/// What Docker says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DockerInfo {
    pub server_version: String,
    /// Docker's data root (for the log linker).
    pub root_dir: String,
    /// The machine's architecture as Docker names it (`x86_64`, `aarch64`).
    pub architecture: String,
}

/// A file in a directory listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    pub name: String,
    pub size: u64,
    /// Seconds since the Unix epoch.
    pub modified: i64,
}

/// Why an operation on a host failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum HostError {
    #[error("cannot reach {host}: {reason}")]
    Unreachable { host: HostAddr, reason: String, transient: bool },
    #[error("SSH authentication to {host} failed: {reason}")]
    Auth { host: HostAddr, reason: String },
    #[error("host key of {host} is not trusted: {reason}")]
    HostKey { host: HostAddr, reason: String },
    #[error("Docker on {host} is not usable: {reason}")]
    DockerDown { host: HostAddr, reason: String },
    #[error("image {image} is not on {host} and cannot be pulled: {reason}")]
    ImageUnavailable { host: HostAddr, image: String, reason: String },
    #[error("Docker {op} on {host} failed: {reason}")]
    Docker { host: HostAddr, op: String, reason: String, transient: bool },
    #[error("{op} on {host} failed: {reason}")]
    Io { host: HostAddr, op: String, reason: String, transient: bool },
    /// The container's program is not in its image (an etcd 3.4 image has no `etcdutl`).
    #[error("{op} on {host} failed: the program is not in the image: {reason}")]
    ProgramMissing { host: HostAddr, op: String, reason: String },
    #[error("{host} is being changed by another rkectl apply ({holder})")]
    Locked { host: HostAddr, holder: String },
    #[error(
        "container {container} on {host} printed nothing for {} s, so it was taken for hung; it was stopped and removed",
        silent.as_secs()
    )]
    HelperSilent { host: HostAddr, container: String, silent: std::time::Duration },
    #[error("pulling image {image} on {host} made no progress for {} s; the pull was abandoned", silent.as_secs())]
    PullStalled { host: HostAddr, image: String, silent: std::time::Duration },
}

impl HostError {
    /// Whether trying again may succeed (a dropped link, a daemon restarting).
    pub fn is_transient(&self) -> bool {
        match self {
            HostError::Unreachable { transient, .. }
            | HostError::Docker { transient, .. }
            | HostError::Io { transient, .. } => *transient,
            // The helper is gone and every step may run again; what silenced it (a member
            // between leaders, a link or a registry that stopped answering) often passes.
            HostError::HelperSilent { .. } | HostError::PullStalled { .. } => true,
            HostError::Auth { .. }
            | HostError::HostKey { .. }
            | HostError::DockerDown { .. }
            | HostError::ImageUnavailable { .. }
            | HostError::ProgramMissing { .. }
            | HostError::Locked { .. } => false,
        }
    }
}

/// Result of a host operation.
pub type HostResult<T> = Result<T, HostError>;

/// One host: its Docker daemon and its files.
#[async_trait]
pub trait Host: Send + Sync {
    /// The address from cluster.yml.
    fn addr(&self) -> &HostAddr;
    /// Docker's version and data root; fails if Docker is not answering.
    async fn docker_info(&self) -> HostResult<DockerInfo>;
    /// Whether `image` is present.
    async fn image_present(&self, image: &str) -> HostResult<bool>;
    /// Pulls `image`, with the credentials of `registry` when one serves it.
    async fn pull_image(&self, image: &str, registry: Option<&PrivateRegistry>) -> HostResult<()>;
    /// The container called `name`, if any.
    async fn inspect_container(&self, name: &str) -> HostResult<Option<ContainerInfo>>;
    /// Creates a container (fails if the name is taken); returns its id.
    async fn create_container(&self, spec: &ContainerSpec) -> HostResult<String>;
    /// Starts a created container.
    async fn start_container(&self, name: &str) -> HostResult<()>;
    /// Waits for a container to exit; returns its exit code. Unbounded: callers wait once
    /// its output has ended, and under a deadline of their own ([`run_watched`]).
    async fn wait_container(&self, name: &str) -> HostResult<i64>;
    /// The container's stdout and stderr from its start, followed: the stream ends when
    /// the container stops.
    async fn follow_logs(&self, name: &str) -> HostResult<LogStream>;
    /// Takes `owner`'s claim on the node with its helper binary `agent`, and the node lock
    /// when `owner` is an apply, held as long as this connection lives (and talks: see
    /// [`crate::agent::node_lock`]); fails with [`HostError::Locked`] when another apply
    /// holds the node lock.
    async fn claim(&self, agent: &str, owner: &Owner) -> HostResult<()>;
    /// The invocations whose claim on the node is held, asked with the helper binary `agent`.
    async fn live_owners(&self, agent: &str) -> HostResult<crate::agent::node_lock::LiveOwners>;
    /// Every container (running or not) that carries the label `label`.
    async fn list_containers(&self, label: &str) -> HostResult<Vec<ListedContainer>>;
    /// The SHA-256 of a file (lowercase hex), or `None` if it does not exist.
    async fn sha256_file(&self, path: &str) -> HostResult<Option<String>>;
    /// Stops a running container (used before replacing a service).
    async fn stop_container(&self, name: &str) -> HostResult<()>;
    /// Removes a container, running or not; `Ok(false)` if there was none.
    async fn remove_container(&self, name: &str) -> HostResult<bool>;
    /// The file's contents, or `None` if it does not exist.
    async fn read_file(&self, path: &str) -> HostResult<Option<Vec<u8>>>;
    /// Writes a file atomically (temporary file, then rename), creating parent folders.
    async fn write_file(&self, path: &str, data: &[u8], mode: u32) -> HostResult<()>;
    /// Removes a file; `Ok(false)` if there was none.
    async fn remove_file(&self, path: &str) -> HostResult<bool>;
    /// The files of a folder (an empty list if the folder does not exist).
    async fn list_dir(&self, path: &str) -> HostResult<Vec<DirEntry>>;
    /// The names of the folders in a folder (an empty list if it does not exist).
    async fn list_dirs(&self, path: &str) -> HostResult<Vec<String>>;
    /// Removes a folder and everything in it; `Ok(false)` if there was none.
    async fn remove_tree(&self, path: &str) -> HostResult<bool>;
    /// Streams a file's contents.
    async fn open_read(&self, path: &str) -> HostResult<ByteStream>;
    /// `len` bytes of a file from `offset` (fewer at its end): reading part of a large file,
    /// such as an archive's directory, without moving the rest.
    async fn read_range(&self, path: &str, offset: u64, len: u64) -> HostResult<Vec<u8>>;
    /// Writes a stream to a file atomically; returns the byte count.
    async fn write_stream(&self, path: &str, data: ByteStream, mode: u32) -> HostResult<u64>;
}

/// Turns a node of cluster.yml into a connected host.
#[async_trait]
pub trait Connector: Send + Sync {
    /// Dials the node (SSH, then Docker) and checks that Docker answers.
    async fn connect(&self, node: &Node) -> HostResult<Arc<dyn Host>>;
}

/// A connection made at most once, shared by everyone who asks for it.
type SharedConnection = Arc<OnceCell<Arc<dyn Host>>>;

/// Dials each host once and shares the connection; a host is handed out only once the
/// binary its helpers run is on it.
pub struct HostPool {
    connector: Arc<dyn Connector>,
    nodes: HashMap<HostAddr, Node>,
    cells: Mutex<HashMap<HostAddr, SharedConnection>>,
    agent: Option<&'static crate::agent_binary::AgentBinary>,
    /// The invocation this pool is: its claim is held on every host it dials (with the
    /// binary), and its node lock when it is an apply's.
    owner: Owner,
}

impl HostPool {
    /// A pool over the given nodes.
    pub fn new(connector: Arc<dyn Connector>, nodes: impl IntoIterator<Item = Node>) -> Self {
        HostPool {
            connector,
            nodes: nodes.into_iter().map(|n| (n.address.clone(), n)).collect(),
            cells: Mutex::new(HashMap::new()),
            agent: None,
            owner: Owner::read_only(),
        }
    }

    /// Locks every host when it is first dialed (needs [`HostPool::with_agent`]), for
    /// `holder`, until the pool is dropped.
    pub fn with_lock(mut self, holder: String) -> Self {
        self.owner.node_lock = Some(holder);
        self
    }

    /// The invocation this pool dials for.
    pub fn owner(&self) -> &Owner {
        &self.owner
    }

    /// The helper binary it installs, if it does.
    pub fn agent(&self) -> Option<&'static crate::agent_binary::AgentBinary> {
        self.agent
    }

    /// Installs `agent` on every host when it is first dialed.
    pub fn with_agent(mut self, agent: &'static crate::agent_binary::AgentBinary) -> Self {
        self.agent = Some(agent);
        self
    }

    /// The connection to `addr`, dialing it if this is the first use.
    pub async fn get(&self, addr: &HostAddr) -> HostResult<Arc<dyn Host>> {
        let node = self.nodes.get(addr).ok_or_else(|| HostError::Unreachable {
            host: addr.clone(),
            reason: "not a node of cluster.yml".into(),
            transient: false,
        })?;
        let cell = self.cells.lock().await.entry(addr.clone()).or_default().clone();
        cell.get_or_try_init(|| async {
            let host = self.connector.connect(node).await?;
            if let Some(agent) = self.agent {
                ensure_agent(host.as_ref(), agent).await?;
                host.claim(&agent.remote_path(), &self.owner).await?;
            }
            Ok(host)
        })
        .await
        .cloned()
    }

    /// Forgets a connection, so the next use dials again (after a dropped link).
    pub async fn forget(&self, addr: &HostAddr) {
        self.cells.lock().await.remove(addr);
    }
}

/// Makes sure rkectl's helper binary is on the host; whether it had to be uploaded. The
/// file in the folder named after its checksum is that binary only when its SHA-256 (the
/// node's own `sha256sum`, not the binary's word) is the one of the binary here: a file of
/// the right size with other bytes (a disk error, a hand edit) is replaced.
pub async fn ensure_agent(host: &dyn Host, agent: &crate::agent_binary::AgentBinary) -> HostResult<bool> {
    let dir = agent.remote_dir();
    if host.list_dir(&dir).await?.iter().any(|e| e.name == "rkectl" && e.size == agent.size)
        && host.sha256_file(&agent.remote_path()).await?.as_deref() == Some(agent.sha256.as_str())
    {
        return Ok(false);
    }
    let file = tokio::fs::File::open(&agent.local).await.map_err(|e| HostError::Io {
        host: host.addr().clone(),
        op: "upload rkectl".into(),
        reason: format!("{}: {e}", agent.local.display()),
        transient: false,
    })?;
    host.write_stream(&agent.remote_path(), Box::new(file), 0o755).await?;
    Ok(true)
}

/// Makes sure `image` is on the host, pulling it (with `registry`'s credentials) if needed.
pub async fn ensure_image(host: &dyn Host, image: &str, registry: Option<&PrivateRegistry>) -> HostResult<bool> {
    if host.image_present(image).await? {
        return Ok(false);
    }
    host.pull_image(image, registry).await?;
    Ok(true)
}
