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
//! Here: the connection and the [`Host`] implementation. Beside it, by job: `auth` (key,
//! agent, certificates, bastion, the private folder), `errors` (SSH's and Docker's failures
//! classified) and `scripts` (the node scripts and the readers of their output).

use super::registry_pull::{self, PullAuth, PullError};
use super::ssh_config::{self, BastionSettings, Proxy, Unwritable};
use super::{
    ByteStream, Connector, ContainerInfo, ContainerSpec, DirEntry, DockerInfo, Host, HostError, HostResult, LogStream,
    RestartPolicy,
};
use crate::config::registries::{PrivateRegistry, RegistryAuth};
use crate::config::{Bastion, CertSource, HostAddr, Node, SshAuth, SshCert};
use crate::secret::{Secret, redact};
use async_trait::async_trait;
use bollard::Docker;
use bollard::errors::Error as DockerError;
use bollard::models::{ContainerCreateBody, HostConfig, RestartPolicy as DockerRestart, RestartPolicyNameEnum};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, CreateImageOptionsBuilder, InspectContainerOptions, LogsOptionsBuilder,
    RemoveContainerOptionsBuilder, StartContainerOptions, StopContainerOptions, WaitContainerOptionsBuilder,
};
use futures::StreamExt;
use openssh::{Child, ChildStdout, ControlPersist, ForwardType, KnownHosts, Session, SessionBuilder, Stdio};
use std::fmt;
use std::future::Future;
use std::io;
use std::num::NonZeroUsize;
use std::ops::Deref;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, ReadBuf};
use tokio::task::JoinHandle;

mod auth;
mod errors;
mod scripts;

use auth::*;
use errors::*;
use scripts::*;

/// How often the master pings an idle server; three unanswered pings end the session, so a
/// dead link fails every operation within about half a minute instead of hanging.
const SERVER_ALIVE_INTERVAL: Duration = Duration::from_secs(10);
/// How long an orphaned master (rkectl killed) outlives its last channel.
const CONTROL_PERSIST_IDLE_SECS: usize = 30;
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
/// Chunk size when streaming to a node.
const STREAM_CHUNK: usize = 256 * 1024;

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

    fn display_file(&self) -> String {
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
    /// `rkectl agent hold-lock` while this apply holds the node: its input is this
    /// connection, so the lock goes when the connection does.
    node_lock: Mutex<Option<Child<ConnRef>>>,
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

/// The session and the folder it lives in; shared with open streams so that a stream
/// outliving its host keeps the master (and its socket folder) alive.
struct Conn {
    session: Session,
    _dir: PrivateDir,
}

/// A cloneable handle to the session that openssh can own (`Deref<Target = Session>`).
#[derive(Clone)]
struct ConnRef(Arc<Conn>);

impl Deref for ConnRef {
    type Target = Session;
    fn deref(&self) -> &Session {
        &self.0.session
    }
}

/// What to say about the identity used, in authentication errors (never key material).
struct Identity(String);

impl SshHost {
    /// Opens the SSH master, forwards the Docker socket and checks Docker's version.
    pub async fn dial(node: &Node, options: &SshOptions) -> HostResult<SshHost> {
        let addr = node.address.clone();
        if addr.0.is_empty() || addr.0.starts_with('-') {
            // ssh would read a leading dash as an option.
            return Err(HostError::Unreachable {
                host: addr.clone(),
                reason: format!("`{addr}` is not a host address"),
                transient: false,
            });
        }
        let dir = PrivateDir::create().map_err(|e| HostError::Io {
            host: addr.clone(),
            op: "create a private folder for the SSH session".into(),
            reason: e.to_string(),
            transient: false,
        })?;

        let timeout = options.connect_timeout.max(Duration::from_secs(1));
        let mut builder = SessionBuilder::default();
        builder
            .user(node.user.clone())
            .port(node.port)
            .connect_timeout(timeout)
            .server_alive_interval(SERVER_ALIVE_INTERVAL)
            .control_directory(dir.path())
            .control_persist(ControlPersist::IdleFor(NonZeroUsize::new(CONTROL_PERSIST_IDLE_SECS).expect("non-zero")))
            .known_hosts_check(match options.known_hosts {
                KnownHostsPolicy::Strict { .. } => KnownHosts::Strict,
                KnownHostsPolicy::AcceptNew { .. } => KnownHosts::Add,
            });
        if let Some(file) = options.known_hosts.file() {
            builder.user_known_hosts_file(file);
        }
        let mut identity = configure_auth(node, options, &dir, &mut builder)?;
        let bastion = configure_access(node, options, &dir, &mut builder)?;
        if let Some(cert) = &node.ssh.cert {
            identity.0.push_str(&format!(" with {}", cert_name(cert)));
        }

        // ConnectTimeout bounds the TCP connect and banner; this bounds a server that stalls
        // later in the handshake.
        let limit = timeout * 2 + Duration::from_secs(5);
        let connected = tokio::time::timeout(limit, builder.connect(addr.as_str())).await;
        // Through a bastion, the first ssh only sees the proxy's pipe close: the bastion's
        // own log says what went wrong.
        if !matches!(connected, Ok(Ok(_)))
            && let Some(e) = bastion.as_ref().and_then(|b| b.failure(node))
        {
            return Err(e);
        }
        let session = match connected {
            Err(_) => {
                return Err(HostError::Unreachable {
                    host: addr.clone(),
                    reason: format!("no SSH session on port {} within {}s", node.port, limit.as_secs()),
                    transient: true,
                });
            }
            Ok(Err(e)) => {
                let ctx = DialContext {
                    host: &addr,
                    user: &node.user,
                    port: node.port,
                    known_hosts: &options.known_hosts,
                    identity: &identity,
                };
                return Err(connect_error(&ctx, e));
            }
            // The master is authenticated and needs the key file no more: an inline key must
            // not stay on disk for the life of the apply (or after a kill -9).
            Ok(Ok(s)) => {
                dir.forget_key();
                s
            }
        };
        let socket = dir.path().join("docker.sock");
        let conn = ConnRef(Arc::new(Conn { session, _dir: dir }));

        let keepalive = Session::to_raw_command(conn.clone(), "cat >/dev/null")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .await
            .map_err(|e| HostError::Unreachable {
                host: addr.clone(),
                reason: format!("the SSH session opened but cannot run commands: {}", chain(&e)),
                transient: true,
            })?;

        let docker_down = |reason: String| HostError::DockerDown { host: addr.clone(), reason };
        conn.request_port_forward(ForwardType::Local, socket.clone(), Path::new(&node.docker_socket))
            .await
            .map_err(|e| docker_down(format!("cannot forward {} over SSH: {}", node.docker_socket, chain(&e))))?;
        let socket_str = socket
            .to_str()
            .ok_or_else(|| docker_down(format!("local socket path {} is not UTF-8", socket.display())))?;
        let docker = Docker::connect_with_unix(socket_str, DOCKER_TIMEOUT_SECS, bollard::API_DEFAULT_VERSION)
            .map_err(|e| docker_down(chain(&e)))?;

        let version = match docker.version().await {
            Ok(v) => v,
            Err(e) => {
                let why = diagnose_docker_socket(&conn, &node.docker_socket).await;
                return Err(docker_down(format!(
                    "Cannot connect to the Docker daemon at unix://{} on {addr}: {}{why}",
                    node.docker_socket,
                    chain(&e)
                )));
            }
        };
        let server_version = version.version.clone().unwrap_or_default();
        if !options.ignore_docker_version {
            check_docker_version(&addr, &server_version, version.api_version.as_deref())?;
        }
        // Talk the daemon's own API version: bollard defaults to a newer one than old daemons know.
        let docker = docker
            .negotiate_version()
            .await
            .map_err(|e| docker_down(format!("cannot agree on a Docker API version: {}", chain(&e))))?;

        Ok(SshHost {
            addr,
            docker_socket: node.docker_socket.clone(),
            docker_version: server_version,
            docker,
            docker_local: socket,
            waits: WaitLimits::default(),
            _keepalive: Mutex::new(keepalive),
            node_lock: Mutex::new(None),
            conn,
        })
    }

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

    fn io_err(&self, op: &str, reason: impl Into<String>, transient: bool) -> HostError {
        HostError::Io { host: self.addr.clone(), op: op.to_string(), reason: reason.into(), transient }
    }

    /// Pulls `image` with `registry`'s credentials (see [`registry_pull`] for why not bollard).
    async fn pull_with_credentials(&self, image: &str, registry: &PrivateRegistry) -> HostResult<()> {
        let unavailable = |reason: String| HostError::ImageUnavailable {
            host: self.addr.clone(),
            image: image.to_string(),
            reason: format!("{reason} (pulled as private_registries[{}], {})", registry.index, registry.url),
        };
        let RegistryAuth::Basic { user, password } = &registry.auth else {
            // Config refuses the plugin for the images rkectl pulls; this is the last guard.
            return Err(unavailable("its registry's ecr_credential_plugin is not supported by rkectl".into()));
        };
        let v = self.docker.client_version();
        let api = format!("{}.{}", v.major_version, v.minor_version);
        let auth = PullAuth { user, password, server: &registry.url };
        let silence = self.waits.pull_silence;
        match registry_pull::pull(&self.docker_local, &api, &with_default_tag(image), &auth, silence).await {
            Ok(()) => Ok(()),
            Err(PullError::Refused(reason)) => Err(unavailable(reason)),
            Err(PullError::Stalled(silent)) => {
                Err(HostError::PullStalled { host: self.addr.clone(), image: image.to_string(), silent })
            }
            Err(PullError::Io(e)) => match self.lost("pull image").await {
                Some(lost) => Err(lost),
                None => Err(unavailable(format!("the Docker socket failed: {e}"))),
            },
        }
    }

    /// `Some(Unreachable)` when the master is gone: the one case where redialing helps.
    async fn lost(&self, op: &str) -> Option<HostError> {
        match self.conn.check().await {
            Ok(()) => None,
            Err(e) => Some(HostError::Unreachable {
                host: self.addr.clone(),
                reason: format!("the SSH connection broke during {op}: {}", chain(&e)),
                transient: true,
            }),
        }
    }

    async fn ssh_err(&self, op: &str, e: openssh::Error) -> HostError {
        let reason = chain(&e);
        let maybe_link = match &e {
            openssh::Error::Disconnected | openssh::Error::RemoteProcessTerminated | openssh::Error::Master(_) => true,
            openssh::Error::ChildIo(io) | openssh::Error::Remote(io) => transient_io(io),
            _ => false,
        };
        if maybe_link && let Some(lost) = self.lost(op).await {
            return lost;
        }
        let transient = maybe_link || is_transient_text(&reason);
        self.io_err(op, reason, transient)
    }

    async fn docker_err(&self, op: &str, e: DockerError) -> HostError {
        let reason = chain(&e);
        let (reason, transient) = match &e {
            DockerError::DockerResponseServerError { message, .. } if program_missing(message) => {
                return HostError::ProgramMissing {
                    host: self.addr.clone(),
                    op: op.to_string(),
                    reason: message.clone(),
                };
            }
            DockerError::DockerResponseServerError { status_code, message } => {
                (format!("{message} (HTTP {status_code})"), *status_code == 503)
            }
            DockerError::RequestTimeoutError => (format!("no answer within {DOCKER_TIMEOUT_SECS}s"), true),
            DockerError::HyperLegacyError { .. }
            | DockerError::IOError { .. }
            | DockerError::SocketNotFoundError(_) => {
                if let Some(lost) = self.lost(op).await {
                    return lost;
                }
                (
                    format!(
                        "Cannot connect to the Docker daemon at unix://{} on {}: {reason}",
                        self.docker_socket, self.addr
                    ),
                    true,
                )
            }
            _ => (reason, false),
        };
        HostError::Docker { host: self.addr.clone(), op: op.to_string(), reason, transient }
    }

    /// Spawns `sh -c SCRIPT rkectl ARGS...` on the node.
    fn script(&self, script: &str, args: &[&str]) -> openssh::OwningCommand<ConnRef> {
        Session::to_raw_command(self.conn.clone(), remote_command(script, args))
    }

    /// Runs a node script to completion, feeding `input`; a non-zero exit is not an error here.
    /// One that does not finish within [`WaitLimits::script`] is an error: its local end is
    /// killed, which closes its channel.
    async fn run(&self, op: &str, script: &str, args: &[&str], input: Option<&[u8]>) -> HostResult<Finished> {
        let limit = self.waits.script;
        match tokio::time::timeout(limit, self.run_unbounded(op, script, args, input)).await {
            Ok(finished) => finished,
            Err(_) => Err(self.io_err(
                op,
                format!(
                    "{}: the node script did not finish within {} s; the node's disk or a mount \
                     may not be answering (the script may still be running there)",
                    args.first().copied().unwrap_or_default(),
                    limit.as_secs_f64()
                ),
                false,
            )),
        }
    }

    async fn run_unbounded(&self, op: &str, script: &str, args: &[&str], input: Option<&[u8]>) -> HostResult<Finished> {
        for a in args {
            if a.contains('\0') {
                return Err(self.io_err(op, "a path contains a NUL byte", false));
            }
        }
        let mut cmd = self.script(script, args);
        cmd.stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = match cmd.spawn().await {
            Ok(c) => c,
            Err(e) => return Err(self.ssh_err(op, e).await),
        };
        let stdin = child.stdin().take();
        let mut stdout = child.stdout().take().expect("piped stdout");
        let mut stderr = child.stderr().take().expect("piped stderr");
        let feed = async move {
            if let (Some(mut w), Some(data)) = (stdin, input) {
                w.write_all(data).await?;
                w.shutdown().await?;
            }
            Ok::<(), io::Error>(())
        };
        let mut out = Vec::new();
        let mut err = Vec::new();
        let (fed, o, e) = tokio::join!(feed, stdout.read_to_end(&mut out), stderr.read_to_end(&mut err));
        let status = child.wait().await;
        let stderr_text = String::from_utf8_lossy(&err).trim().to_string();
        let code = match status {
            Ok(s) => s.code(),
            Err(e) => return Err(self.ssh_err(op, e).await),
        };
        if let Err(e) = fed.and(o.map(drop)).and(e.map(drop)) {
            // The remote side's own complaint says more than our broken pipe.
            if code.is_some_and(|c| c != 0) && !stderr_text.is_empty() {
                return Ok(Finished { code: code.unwrap_or(-1), stdout: out, stderr: stderr_text });
            }
            if let Some(lost) = self.lost(op).await {
                return Err(lost);
            }
            return Err(self.io_err(op, e.to_string(), transient_io(&e)));
        }
        Ok(Finished { code: code.unwrap_or(-1), stdout: out, stderr: stderr_text })
    }

    /// An error for a script that exited non-zero, quoting what it said.
    fn script_failed(&self, op: &str, path: &str, f: &Finished) -> HostError {
        let said = if f.stderr.is_empty() { format!("exit code {}", f.code) } else { one_line(&f.stderr) };
        let reason = format!("{path}: {said}");
        let transient = is_transient_text(&reason);
        self.io_err(op, reason, transient)
    }

    /// Best-effort removal of a temporary file after a failed write.
    async fn discard(&self, tmp: &str) {
        let _ = self.run("remove temporary file", r#"rm -f -- "$1""#, &[tmp], None).await;
    }
}

#[cfg(test)]
mod scripts_tests;

#[async_trait]
impl Host for SshHost {
    fn addr(&self) -> &HostAddr {
        &self.addr
    }

    async fn docker_info(&self) -> HostResult<DockerInfo> {
        match self.docker.info().await {
            Ok(info) => Ok(DockerInfo {
                server_version: info.server_version.unwrap_or_else(|| self.docker_version.clone()),
                root_dir: info.docker_root_dir.unwrap_or_default(),
                architecture: info.architecture.unwrap_or_default(),
            }),
            Err(e) => Err(self.docker_err("info", e).await),
        }
    }

    async fn image_present(&self, image: &str) -> HostResult<bool> {
        match self.docker.inspect_image(image).await {
            Ok(_) => Ok(true),
            Err(e) if status_of(&e) == Some(404) => Ok(false),
            Err(e) => Err(self.docker_err("inspect image", e).await),
        }
    }

    async fn pull_image(&self, image: &str, registry: Option<&PrivateRegistry>) -> HostResult<()> {
        if let Some(r) = registry {
            return self.pull_with_credentials(image, r).await;
        }
        let options = CreateImageOptionsBuilder::new().from_image(&with_default_tag(image)).build();
        let mut progress = self.docker.create_image(Some(options), None, None);
        let silence = self.waits.pull_silence;
        loop {
            // Dropping the stream closes the request, which makes Docker cancel the pull.
            let item = match tokio::time::timeout(silence, progress.next()).await {
                Ok(Some(item)) => item,
                Ok(None) => break,
                Err(_) => {
                    return Err(HostError::PullStalled {
                        host: self.addr.clone(),
                        image: image.to_string(),
                        silent: silence,
                    });
                }
            };
            if let Err(e) = item {
                let reason = match &e {
                    DockerError::DockerResponseServerError { message, .. } => message.clone(),
                    DockerError::DockerStreamError { error } => error.clone(),
                    _ => {
                        if let Some(lost) = self.lost("pull image").await {
                            return Err(lost);
                        }
                        chain(&e)
                    }
                };
                return Err(HostError::ImageUnavailable { host: self.addr.clone(), image: image.to_string(), reason });
            }
        }
        Ok(())
    }

    async fn inspect_container(&self, name: &str) -> HostResult<Option<ContainerInfo>> {
        let r = match self.docker.inspect_container(name, None::<InspectContainerOptions>).await {
            Ok(r) => r,
            Err(e) if status_of(&e) == Some(404) => return Ok(None),
            Err(e) => return Err(self.docker_err("inspect container", e).await),
        };
        let state = r.state.unwrap_or_default();
        let running = state.running.unwrap_or(false);
        let config = r.config.unwrap_or_default();
        let binds = r.host_config.and_then(|h| h.binds).unwrap_or_default();
        let mut args = config.entrypoint.clone().unwrap_or_default();
        args.extend(config.cmd.clone().unwrap_or_default());
        Ok(Some(ContainerInfo {
            id: r.id.unwrap_or_default(),
            name: r.name.map(|n| n.trim_start_matches('/').to_string()).unwrap_or_else(|| name.to_string()),
            // The name it was created from, not the sha256 id.
            image: config.image.or(r.image).unwrap_or_default(),
            running,
            restarting: state.restarting.unwrap_or(false),
            exit_code: if running { None } else { state.exit_code },
            labels: config.labels.unwrap_or_default().into_iter().collect(),
            args,
            env: config.env.unwrap_or_default(),
            binds,
        }))
    }

    async fn create_container(&self, spec: &ContainerSpec) -> HostResult<String> {
        let env = spec.env.clone();
        let body = ContainerCreateBody {
            image: Some(spec.image.clone()),
            entrypoint: spec.entrypoint.clone(),
            cmd: (!spec.cmd.is_empty()).then(|| spec.cmd.clone()),
            env: (!env.is_empty()).then_some(env),
            labels: (!spec.labels.is_empty()).then(|| spec.labels.clone().into_iter().collect()),
            host_config: Some(HostConfig {
                binds: (!spec.binds.is_empty()).then(|| spec.binds.clone()),
                network_mode: spec.network_host.then(|| "host".to_string()),
                pid_mode: spec.pid_host.then(|| "host".to_string()),
                restart_policy: Some(DockerRestart {
                    name: Some(match spec.restart {
                        RestartPolicy::No => RestartPolicyNameEnum::NO,
                        RestartPolicy::Always => RestartPolicyNameEnum::ALWAYS,
                    }),
                    maximum_retry_count: None,
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let options = CreateContainerOptionsBuilder::new().name(&spec.name).build();
        match self.docker.create_container(Some(options), body).await {
            Ok(r) => Ok(r.id),
            Err(e) => {
                let secrets: Vec<&Secret> = spec.secret_files.iter().map(|f| &f.content).collect();
                if status_of(&e) == Some(404) {
                    return Err(HostError::ImageUnavailable {
                        host: self.addr.clone(),
                        image: spec.image.clone(),
                        reason: redact(&chain(&e), &secrets),
                    });
                }
                let err = self.docker_err("create container", e).await;
                Err(redact_error(err, &secrets))
            }
        }
    }

    async fn start_container(&self, name: &str) -> HostResult<()> {
        match self.docker.start_container(name, None::<StartContainerOptions>).await {
            Ok(()) => Ok(()),
            Err(e) => Err(self.docker_err("start container", e).await),
        }
    }

    async fn wait_container(&self, name: &str) -> HostResult<i64> {
        // Docker API < 1.30 answers only once the container has exited: callers wait when its
        // output has ended, so the usual request timeout is ample.
        let options = WaitContainerOptionsBuilder::new().condition("not-running").build();
        let mut stream = self.docker.wait_container(name, Some(options));
        match stream.next().await {
            Some(Ok(r)) => Ok(r.status_code),
            // bollard reports a non-zero exit as an error; for us it is an answer.
            Some(Err(DockerError::DockerContainerWaitError { code, .. })) => Ok(code),
            Some(Err(e)) => Err(self.docker_err("wait for container", e).await),
            None => Err(HostError::Docker {
                host: self.addr.clone(),
                op: "wait for container".into(),
                reason: format!("Docker ended the wait for {name} without an exit code"),
                transient: true,
            }),
        }
    }

    async fn follow_logs(&self, name: &str) -> HostResult<LogStream> {
        let options = LogsOptionsBuilder::new().follow(true).stdout(true).stderr(true).tail("all").build();
        let host = self.addr.clone();
        let container = name.to_string();
        let stream = self.docker.logs(name, Some(options)).map(move |item| match item {
            Ok(chunk) => Ok(chunk.into_bytes()),
            Err(e) => Err(HostError::Docker {
                host: host.clone(),
                op: format!("follow the output of {container}"),
                // A missing container will not appear by trying again; a broken stream may.
                transient: status_of(&e) != Some(404),
                reason: chain(&e),
            }),
        });
        Ok(Box::pin(stream))
    }

    async fn lock_node(&self, agent: &str, holder: &str) -> HostResult<()> {
        use crate::agent::node_lock::{HELD, LOCKED};
        use tokio::io::AsyncBufReadExt;
        let op = "lock the node";
        let mut cmd = self.script(r#"exec "$1" agent hold-lock --holder "$2""#, &[agent, holder]);
        cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = match cmd.spawn().await {
            Ok(c) => c,
            Err(e) => return Err(self.ssh_err(op, e).await),
        };
        let stdout = child.stdout().take().expect("piped stdout");
        let mut first = String::new();
        let mut reader = tokio::io::BufReader::new(stdout);
        let read = reader.read_line(&mut first);
        match tokio::time::timeout(Duration::from_secs(DOCKER_TIMEOUT_SECS), read).await {
            Ok(Ok(_)) if first.trim_end() == LOCKED => {
                *self.node_lock.lock().expect("node lock") = Some(child);
                Ok(())
            }
            Ok(Ok(_)) if first.starts_with(HELD) => {
                let record = first[HELD.len()..].trim();
                let holder = match serde_json::from_str::<crate::state::lock::Holder>(record) {
                    Ok(h) => format!("pid {} on {}, since {}: {}", h.pid, h.host, h.since, h.command),
                    Err(_) => "its record is unreadable".to_string(),
                };
                Err(HostError::Locked { host: self.addr.clone(), holder })
            }
            Ok(Ok(_)) => {
                let mut err = String::new();
                if let Some(mut e) = child.stderr().take() {
                    let _ = tokio::time::timeout(Duration::from_secs(5), e.read_to_string(&mut err)).await;
                }
                Err(self.io_err(op, format!("rkectl agent hold-lock: {}", crate::secret::printable(err.trim())), false))
            }
            Ok(Err(e)) => Err(self.io_err(op, e.to_string(), transient_io(&e))),
            Err(_) => Err(self.io_err(op, "no answer from rkectl agent hold-lock", true)),
        }
    }

    async fn stop_container(&self, name: &str) -> HostResult<()> {
        match self.docker.stop_container(name, None::<StopContainerOptions>).await {
            Ok(()) => Ok(()),
            Err(e) => Err(self.docker_err("stop container", e).await),
        }
    }

    async fn remove_container(&self, name: &str) -> HostResult<bool> {
        let options = RemoveContainerOptionsBuilder::new().force(true).v(false).build();
        match self.docker.remove_container(name, Some(options)).await {
            Ok(()) => Ok(true),
            Err(e) if status_of(&e) == Some(404) => Ok(false),
            Err(e) => Err(self.docker_err("remove container", e).await),
        }
    }

    async fn read_file(&self, path: &str) -> HostResult<Option<Vec<u8>>> {
        let f = self.run("read file", READ_SCRIPT, &[path], None).await?;
        match f.code {
            0 => Ok(Some(f.stdout)),
            EXIT_ABSENT => Ok(None),
            _ if f.stderr.contains("No such file or directory") => Ok(None),
            _ => Err(self.script_failed("read file", path, &f)),
        }
    }

    async fn write_file(&self, path: &str, data: &[u8], mode: u32) -> HostResult<()> {
        let tmp = temp_name(path);
        let mode = format!("{:o}", mode & 0o7777);
        let size = data.len().to_string();
        let script = format!("{RECEIVE_SCRIPT_NOEXEC}\n{FINISH_SCRIPT}");
        let f = self.run("write file", &script, &[path, &tmp, &mode, &size], Some(data)).await;
        match f {
            Ok(f) if f.code == 0 => Ok(()),
            Ok(f) => {
                self.discard(&tmp).await;
                Err(self.script_failed("write file", path, &f))
            }
            Err(e) => {
                self.discard(&tmp).await;
                Err(e)
            }
        }
    }

    async fn read_range(&self, path: &str, offset: u64, len: u64) -> HostResult<Vec<u8>> {
        let f = self.run("read file", RANGE_SCRIPT, &[path, &offset.to_string(), &len.to_string()], None).await?;
        match f.code {
            0 => Ok(f.stdout),
            EXIT_ABSENT => Err(self.io_err("read file", format!("{path}: no such file"), false)),
            _ => Err(self.script_failed("read file", path, &f)),
        }
    }

    async fn remove_file(&self, path: &str) -> HostResult<bool> {
        let f = self.run("remove file", REMOVE_SCRIPT, &[path], None).await?;
        match f.code {
            0 => Ok(true),
            EXIT_ABSENT => Ok(false),
            _ => Err(self.script_failed("remove file", path, &f)),
        }
    }

    async fn list_dirs(&self, path: &str) -> HostResult<Vec<String>> {
        let f = self.run("list folder", DIRS_SCRIPT, &[path], None).await?;
        match f.code {
            0 => Ok(f
                .stdout
                .split(|b| *b == 0)
                .filter(|n| !n.is_empty())
                .map(|n| String::from_utf8_lossy(n).into_owned())
                .collect()),
            EXIT_ABSENT => Ok(Vec::new()),
            _ => Err(self.script_failed("list folder", path, &f)),
        }
    }

    async fn remove_tree(&self, path: &str) -> HostResult<bool> {
        let f = self.run("remove folder", TREE_SCRIPT, &[path], None).await?;
        match f.code {
            0 => Ok(true),
            EXIT_ABSENT => Ok(false),
            _ => Err(self.script_failed("remove folder", path, &f)),
        }
    }

    async fn list_dir(&self, path: &str) -> HostResult<Vec<DirEntry>> {
        let f = self.run("list folder", LIST_SCRIPT, &[path], None).await?;
        match f.code {
            0 => Ok(parse_listing(&f.stdout)),
            EXIT_ABSENT => Ok(Vec::new()),
            _ => Err(self.script_failed("list folder", path, &f)),
        }
    }

    async fn open_read(&self, path: &str) -> HostResult<ByteStream> {
        const OP: &str = "open file";
        if path.contains('\0') {
            return Err(self.io_err(OP, "a path contains a NUL byte", false));
        }
        let mut cmd = self.script(OPEN_SCRIPT, &[path]);
        cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = match cmd.spawn().await {
            Ok(c) => c,
            Err(e) => return Err(self.ssh_err(OP, e).await),
        };
        let mut stdout = child.stdout().take().expect("piped stdout");
        let mut stderr = child.stderr().take().expect("piped stderr");
        let stderr_task = tokio::spawn(async move {
            let mut v = Vec::new();
            let _ = stderr.read_to_end(&mut v).await;
            v
        });
        let mut marker = [0u8; 1];
        let opened = stdout.read(&mut marker).await;
        if matches!(opened, Ok(1)) && marker[0] == b'K' {
            return Ok(Box::new(RemoteReader {
                stdout,
                what: format!("{path} on {}", self.addr),
                finish: Finish::Pending(Box::new((child, stderr_task))),
            }));
        }
        drop(stdout);
        let status = child.wait().await;
        let said = String::from_utf8_lossy(&stderr_task.await.unwrap_or_default()).trim().to_string();
        let code = match status {
            Ok(s) => s.code().unwrap_or(-1),
            Err(e) => return Err(self.ssh_err(OP, e).await),
        };
        if code == EXIT_ABSENT {
            return Err(self.io_err(OP, format!("{path}: no such file"), false));
        }
        if opened.is_err()
            && let Some(lost) = self.lost(OP).await
        {
            return Err(lost);
        }
        Err(self.script_failed(OP, path, &Finished { code, stdout: Vec::new(), stderr: said }))
    }

    async fn write_stream(&self, path: &str, mut data: ByteStream, mode: u32) -> HostResult<u64> {
        const OP: &str = "write file";
        if path.contains('\0') {
            return Err(self.io_err(OP, "a path contains a NUL byte", false));
        }
        let tmp = temp_name(path);
        let mut cmd = self.script(RECEIVE_SCRIPT, &[path, &tmp]);
        cmd.stdin(Stdio::piped()).stdout(Stdio::null()).stderr(Stdio::piped());
        let mut child = match cmd.spawn().await {
            Ok(c) => c,
            Err(e) => return Err(self.ssh_err(OP, e).await),
        };
        let mut stdin = child.stdin().take().expect("piped stdin");
        let mut stderr = child.stderr().take().expect("piped stderr");
        let stderr_task = tokio::spawn(async move {
            let mut v = Vec::new();
            let _ = stderr.read_to_end(&mut v).await;
            v
        });

        enum Broke {
            Source(io::Error),
            Sink(io::Error),
        }
        let copied = async {
            let mut buf = vec![0u8; STREAM_CHUNK];
            let mut total = 0u64;
            loop {
                let n = data.read(&mut buf).await.map_err(Broke::Source)?;
                if n == 0 {
                    break;
                }
                stdin.write_all(&buf[..n]).await.map_err(Broke::Sink)?;
                total += n as u64;
            }
            stdin.shutdown().await.map_err(Broke::Sink)?;
            Ok::<u64, Broke>(total)
        }
        .await;
        drop(stdin);
        let status = child.wait().await;
        let said = String::from_utf8_lossy(&stderr_task.await.unwrap_or_default()).trim().to_string();

        let outcome = match (copied, status) {
            (_, Err(e)) => Err(self.ssh_err(OP, e).await),
            // The node's own complaint (a full disk…) explains a broken pipe best.
            (_, Ok(s)) if !s.success() => Err(self.script_failed(
                OP,
                path,
                &Finished { code: s.code().unwrap_or(-1), stdout: Vec::new(), stderr: said },
            )),
            (Err(Broke::Source(e)), Ok(_)) => {
                Err(self.io_err(OP, format!("{path}: the data to write failed: {e}"), transient_io(&e)))
            }
            (Err(Broke::Sink(e)), Ok(_)) => Err(match self.lost(OP).await {
                Some(lost) => lost,
                None => self.io_err(OP, format!("{path}: {e}"), transient_io(&e)),
            }),
            (Ok(n), Ok(_)) => Ok(n),
        };
        let total = match outcome {
            Ok(n) => n,
            Err(e) => {
                // Only a complete, checked file is renamed into place; the rest goes.
                self.discard(&tmp).await;
                return Err(e);
            }
        };

        let mode = format!("{:o}", mode & 0o7777);
        let size = total.to_string();
        let f = self.run(OP, FINISH_SCRIPT, &[path, &tmp, &mode, &size], None).await;
        match f {
            Ok(f) if f.code == 0 => Ok(total),
            Ok(f) => {
                self.discard(&tmp).await;
                Err(self.script_failed(OP, path, &f))
            }
            Err(e) => {
                self.discard(&tmp).await;
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod program_missing_tests {
    use super::program_missing;

    #[test]
    fn runcs_words_for_a_program_not_in_the_image() {
        let etcd34 = "failed to create task for container: failed to create shim task: OCI runtime create failed: runc create failed: unable to start container process: exec: \"/usr/local/bin/etcdutl\": stat /usr/local/bin/etcdutl: no such file or directory: unknown";
        assert!(program_missing(etcd34));
        assert!(program_missing("exec: \"etcdutl\": executable file not found in $PATH: unknown"));
        assert!(!program_missing("error while creating mount source path '/opt/rke': no such file or directory"));
        assert!(!program_missing("No such image: rancher/mirrored-coreos-etcd:v3.5.16"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr() -> HostAddr {
        HostAddr("10.0.0.1".into())
    }

    fn ctx<'a>(host: &'a HostAddr, policy: &'a KnownHostsPolicy, identity: &'a Identity) -> DialContext<'a> {
        DialContext { host, user: "root", port: 22, known_hosts: policy, identity }
    }

    #[test]
    fn quoting_survives_quotes_and_spaces() {
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(remote_command("echo \"$1\"", &["x'y"]), "sh -c 'echo \"$1\"' rkectl 'x'\\''y'");
    }

    #[test]
    fn listing_parses_names_with_tabs_and_spaces() {
        let raw = b"b file\t10\t1700000000.5\0a\tb\t0\t1700000001.0000000000\0junk\0";
        let l = parse_listing(raw);
        assert_eq!(
            l,
            vec![
                DirEntry { name: "a\tb".into(), size: 0, modified: 1_700_000_001 },
                DirEntry { name: "b file".into(), size: 10, modified: 1_700_000_000 },
            ]
        );
    }

    #[test]
    fn versions() {
        assert_eq!(parse_version("20.10.24+dfsg1"), Some((20, 10, 24)));
        assert_eq!(parse_version("17.03.2-ce"), Some((17, 3, 2)));
        assert_eq!(parse_version("1.41"), Some((1, 41, 0)));
        assert_eq!(parse_version("garbage"), None);
        let h = addr();
        assert!(check_docker_version(&h, "20.10.24+dfsg1", Some("1.41")).is_ok());
        assert!(check_docker_version(&h, "1.13.1", Some("1.26")).is_ok());
        let e = check_docker_version(&h, "1.12.6", Some("1.24")).unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, HostError::DockerDown { .. }));
        assert!(msg.contains("1.12.6") && msg.contains("10.0.0.1"), "{msg}");
        assert!(msg.contains("--ignore-docker-version"), "{msg}");
        assert!(check_docker_version(&h, "weird", Some("1.23")).is_err());
        assert!(check_docker_version(&h, "weird", None).is_ok());
    }

    #[test]
    fn default_tag() {
        assert_eq!(with_default_tag("busybox"), "busybox:latest");
        assert_eq!(with_default_tag("10.77.0.1:5999/missing"), "10.77.0.1:5999/missing:latest");
        assert_eq!(with_default_tag("10.77.0.1:5999/missing:1"), "10.77.0.1:5999/missing:1");
        assert_eq!(with_default_tag("a/b@sha256:00"), "a/b@sha256:00");
    }

    #[test]
    fn ssh_failures_are_classified() {
        let h = addr();
        let strict = KnownHostsPolicy::Strict { file: Some("/kh".into()) };
        let accept = KnownHostsPolicy::AcceptNew { file: None };
        let id = Identity("the key /k".into());

        let unknown = "No ED25519 host key is known for 10.0.0.1 and you have requested strict checking.\nHost key verification failed.\n";
        let e = classify_ssh_failure(&ctx(&h, &strict, &id), unknown);
        let msg = e.to_string();
        assert!(matches!(e, HostError::HostKey { .. }), "{e:?}");
        assert!(msg.contains("/kh") && msg.contains("--accept-new-host-keys"), "{msg}");

        let changed = "@@@@@@@@@@@\n@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @\n@@@@@@@@\nThe fingerprint for the ED25519 key sent by the remote host is\nSHA256:3fJ7Nm.\nHost key for 10.0.0.1 has changed and you have requested strict checking.\nHost key verification failed.\n";
        for policy in [&strict, &accept] {
            let e = classify_ssh_failure(&ctx(&h, policy, &id), changed);
            let msg = e.to_string();
            assert!(matches!(e, HostError::HostKey { .. }), "{e:?}");
            assert!(msg.contains("CHANGED") && msg.contains("SHA256:3fJ7Nm"), "{msg}");
            assert!(!msg.contains("accept-new"), "{msg}");
        }

        let denied = "root@10.0.0.1: Permission denied (publickey,password).\n";
        let e = classify_ssh_failure(&ctx(&h, &strict, &id), denied);
        assert!(matches!(e, HostError::Auth { .. }), "{e:?}");
        assert!(e.to_string().contains("the key /k"));

        let bad = "Load key \"/k\": error in libcrypto\nroot@10.0.0.1: Permission denied (publickey).";
        let e = classify_ssh_failure(&ctx(&h, &strict, &id), bad);
        assert!(e.to_string().contains("could not be loaded"), "{e}");

        let cases = [
            ("ssh: connect to host 10.0.0.1 port 22: Connection refused", false),
            ("ssh: connect to host 10.0.0.1 port 22: No route to host", false),
            ("ssh: connect to host 10.0.0.1 port 22: Connection timed out", true),
            ("ssh: connect to host 10.0.0.1 port 22: Permission denied", false),
            ("kex_exchange_identification: read: Connection reset by peer", true),
            ("ssh: Could not resolve hostname x: Name or service not known", false),
        ];
        for (text, want) in cases {
            match classify_ssh_failure(&ctx(&h, &strict, &id), text) {
                HostError::Unreachable { transient, host, .. } => {
                    assert_eq!(transient, want, "{text}");
                    assert_eq!(host, h);
                }
                other => panic!("{text}: {other:?}"),
            }
        }
    }

    #[test]
    fn secrets_are_scrubbed_from_docker_errors() {
        let s = Secret::new("supersecretvalue");
        let e = HostError::Docker {
            host: addr(),
            op: "create container".into(),
            reason: "bad env X=supersecretvalue".into(),
            transient: false,
        };
        assert!(!redact_error(e, &[&s]).to_string().contains("supersecretvalue"));
    }

    #[test]
    fn private_dir_is_private_and_removed() {
        use std::os::unix::fs::PermissionsExt;
        let d = PrivateDir::create().unwrap();
        let p = d.path().to_path_buf();
        assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o700);
        let key = d.write_private("id", "KEY").unwrap();
        assert_eq!(std::fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(std::fs::read_to_string(&key).unwrap(), "KEY\n");
        drop(d);
        assert!(!p.exists());
    }
}
