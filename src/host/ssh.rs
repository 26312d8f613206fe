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

/// What a node script did.
struct Finished {
    code: i32,
    stdout: Vec<u8>,
    stderr: String,
}

/// A node script that may call `missing PATH` when `[ -e PATH ]` fails: it exits 3 when
/// PATH does not exist, and 4, naming the folder, when a folder on the way cannot be
/// searched (`[ -e ]` is false then too, and a folder rkectl may not read is not an absent
/// one). The scripts use only what POSIX `sh` and busybox both have: no `find -printf`.
macro_rules! node_script {
    ($body:literal) => {
        concat!(
            r#"missing() {
  p=$1
  while :; do
    case $p in
      */*) p=${p%/*}; [ -n "$p" ] || p=/ ;;
      *) p=. ;;
    esac
    if [ -e "$p" ]; then
      if [ -d "$p" ] && [ ! -x "$p" ]; then echo "$p: Permission denied" >&2; exit 4; fi
      exit 3
    fi
    case $p in /|.) exit 3 ;; esac
  done
}
"#,
            $body
        )
    };
}

/// Reads a file; exit 3 when it does not exist.
const READ_SCRIPT: &str = node_script!(
    r#"[ -e "$1" ] || missing "$1"
exec cat -- "$1""#
);

/// Prints `$3` bytes of `$1` from byte `$2`; exit 3 when it does not exist. (`tail -c +N`
/// seeks on a regular file, in GNU and busybox alike.)
const RANGE_SCRIPT: &str = node_script!(
    r#"[ -e "$1" ] || missing "$1"
tail -c "+$(($2 + 1))" -- "$1" | head -c "$3""#
);

/// Removes a file; exit 3 when there was none.
const REMOVE_SCRIPT: &str = node_script!(
    r#"[ -e "$1" ] || [ -L "$1" ] || missing "$1"
exec rm -f -- "$1""#
);

/// Lists regular files (not symlinks) as NUL-terminated `name\tsize\tmtime` records; exit
/// 3 when absent, 4 when the folder cannot be read. `stat -c` is GNU's and busybox's; a
/// file that goes while it is listed is left out.
const LIST_SCRIPT: &str = node_script!(
    r#"[ -e "$1" ] || missing "$1"
cd -- "$1" || exit 4
[ -r . ] || { echo "$1: Permission denied" >&2; exit 4; }
for f in * .[!.]* ..?*; do
  [ -f "$f" ] && [ ! -L "$f" ] || continue
  if ! s=$(stat -c '%s %Y' -- "$f"); then
    [ -e "$f" ] || continue
    exit 4
  fi
  printf '%s\t%s\t%s\0' "$f" "${s% *}" "${s#* }"
done
exit 0"#
);

/// Lists the folders in a folder as NUL-terminated names; exit 3 when absent, 4 when it
/// cannot be read.
const DIRS_SCRIPT: &str = node_script!(
    r#"[ -e "$1" ] || missing "$1"
cd -- "$1" || exit 4
[ -r . ] || { echo "$1: Permission denied" >&2; exit 4; }
for d in */; do [ -d "$d" ] && printf '%s\0' "${d%/}"; done
exit 0"#
);

/// Removes a folder and what is in it; exit 3 when there was none.
const TREE_SCRIPT: &str = node_script!(
    r#"[ -e "$1" ] || missing "$1"
exec rm -rf -- "$1""#
);

/// Opens a file, then prints one `K` so the caller knows it opened before any data flows.
const OPEN_SCRIPT: &str = node_script!(
    r#"[ -e "$1" ] || missing "$1"
if [ -d "$1" ]; then echo "$1: is a directory" >&2; exit 4; fi
exec < "$1" || exit 4
printf K
exec cat"#
);

#[cfg(test)]
#[path = "ssh_scripts_tests.rs"]
mod scripts_tests;

/// Creates the parent folder and receives stdin into the temporary file `$2`.
const RECEIVE_SCRIPT: &str = r#"mkdir -p -- "$(dirname -- "$1")" || exit 4
umask 077
exec cat > "$2""#;

/// Checks the temporary file `$2` holds `$4` bytes, sets mode `$3`, syncs it and renames it
/// over `$1`; the temporary file never survives a failure.
const FINISH_SCRIPT: &str = r#"n=$(wc -c < "$2") || { rm -f -- "$2"; exit 4; }
if [ "$n" -ne "$4" ]; then rm -f -- "$2"; echo "received $n of $4 bytes" >&2; exit 4; fi
chmod -- "$3" "$2" || { rm -f -- "$2"; exit 4; }
sync -- "$2" 2>/dev/null
mv -f -- "$2" "$1" || { rm -f -- "$2"; exit 4; }
sync -- "$(dirname -- "$1")" 2>/dev/null
exit 0"#;

/// Diagnoses why the forwarded Docker socket does not answer.
const SOCKET_SCRIPT: &str = r#"if [ ! -e "$1" ]; then echo missing
elif [ ! -S "$1" ]; then echo notsocket
elif [ ! -r "$1" ] || [ ! -w "$1" ]; then echo denied
else echo ok; fi"#;

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

/// [`RECEIVE_SCRIPT`] without the final `exec`, so that [`FINISH_SCRIPT`] can follow it.
const RECEIVE_SCRIPT_NOEXEC: &str = r#"mkdir -p -- "$(dirname -- "$1")" || exit 4
umask 077
cat > "$2" || { rm -f -- "$2"; exit 4; }"#;

/// A remote `cat` as a byte stream; its exit status is checked when the data ends, so a
/// failure half-way is an error, never a silently short file.
struct RemoteReader {
    stdout: ChildStdout,
    /// `PATH on HOST`, for error messages.
    what: String,
    finish: Finish,
}

type Check = Pin<Box<dyn Future<Output = io::Result<()>> + Send>>;

enum Finish {
    /// Data still flowing; the `cat` and the task collecting its stderr.
    Pending(Box<(Child<ConnRef>, JoinHandle<Vec<u8>>)>),
    Checking(Check),
    Done,
}

impl AsyncRead for RemoteReader {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        loop {
            match &mut this.finish {
                Finish::Done => return Poll::Ready(Ok(())),
                Finish::Checking(check) => {
                    let r = ready!(check.as_mut().poll(cx));
                    this.finish = Finish::Done;
                    return Poll::Ready(r);
                }
                Finish::Pending(_) => {
                    let what = &this.what;
                    let before = buf.filled().len();
                    if let Err(e) = ready!(Pin::new(&mut this.stdout).poll_read(cx, buf)) {
                        return Poll::Ready(Err(io::Error::new(e.kind(), format!("reading {what}: {e}"))));
                    }
                    if buf.filled().len() > before {
                        return Poll::Ready(Ok(()));
                    }
                    let Finish::Pending(running) = std::mem::replace(&mut this.finish, Finish::Done) else {
                        unreachable!("matched Pending above")
                    };
                    let (child, stderr) = *running;
                    let what = this.what.clone();
                    this.finish = Finish::Checking(Box::pin(async move {
                        let status = child.wait().await;
                        let said = stderr.await.unwrap_or_default();
                        let said = String::from_utf8_lossy(&said);
                        match status {
                            Ok(s) if s.success() => Ok(()),
                            Ok(s) => Err(io::Error::other(format!("reading {what} failed ({s}): {}", one_line(&said)))),
                            Err(e) => Err(io::Error::new(
                                io::ErrorKind::ConnectionAborted,
                                format!("reading {what} failed: {}", chain(&e)),
                            )),
                        }
                    }));
                }
            }
        }
    }
}

/// Sets the key file and agent on `builder`; says which identity will be offered.
fn configure_auth(
    node: &Node,
    options: &SshOptions,
    dir: &PrivateDir,
    builder: &mut SessionBuilder,
) -> HostResult<Identity> {
    let auth_err = |reason: String| HostError::Auth { host: node.address.clone(), reason };
    let agent = node.ssh.agent || options.ssh_agent_auth;
    let agent_sock = if agent { Some(agent_socket().map_err(auth_err)?) } else { None };
    if let Some(sock) = &agent_sock {
        builder.ssh_auth_sock(sock);
    }
    let (key, identity) = choose_key(&node.ssh, agent_sock.as_deref(), dir, "id").map_err(|e| match e {
        KeyError::Missing(reason) => auth_err(reason),
        KeyError::Write(e) => HostError::Io {
            host: node.address.clone(),
            op: "write the inline ssh_key to a private file".into(),
            reason: e.to_string(),
            transient: false,
        },
    })?;
    if let Some(key) = key {
        builder.keyfile(key);
    }
    Ok(identity)
}

/// `SSH_AUTH_SOCK`, or why the agent that cluster.yml or `--ssh-agent-auth` asks for is missing.
fn agent_socket() -> Result<PathBuf, String> {
    std::env::var_os("SSH_AUTH_SOCK").filter(|s| !s.is_empty()).map(PathBuf::from).ok_or_else(|| {
        "SSH agent authentication was asked for (ssh_agent_auth or --ssh-agent-auth) \
         but SSH_AUTH_SOCK is not set; start an agent and add the key \
         (eval \"$(ssh-agent)\"; ssh-add KEY)"
            .to_string()
    })
}

/// Why no key file could be chosen.
enum KeyError {
    /// The key cluster.yml names does not exist and no agent is asked for.
    Missing(String),
    /// The inline key could not be written.
    Write(io::Error),
}

/// The key file to offer alone (`None`: ssh chooses, as for a hand-typed `ssh`), and what
/// to call it in errors.
fn choose_key(
    auth: &SshAuth,
    agent_sock: Option<&Path>,
    dir: &PrivateDir,
    file_name: &str,
) -> Result<(Option<PathBuf>, Identity), KeyError> {
    // The inline key is node-specific, so it wins over a (possibly defaulted) key path, as in RKE.
    if let Some(key) = auth.key.as_ref().filter(|k| !k.is_empty()) {
        let path = dir.write_private(file_name, key.expose()).map_err(KeyError::Write)?;
        return Ok((Some(path), Identity("the inline ssh_key from cluster.yml".into())));
    }
    if !auth.key_path_explicit {
        // cluster.yml names no key: ssh chooses, as it does for a hand-typed `ssh` (the
        // agent, IdentityFile of ~/.ssh/config for this host, ~/.ssh/id_ed25519, id_rsa…),
        // rather than one file offered alone.
        return Ok((
            None,
            Identity(match agent_sock {
                Some(s) => format!("the keys of the SSH agent at {} and those ssh finds itself", s.display()),
                None => "the keys ssh finds itself (SSH agent, ~/.ssh/config, ~/.ssh/id_*)".into(),
            }),
        ));
    }
    let path = &auth.key_path;
    if path.exists() {
        // The key cluster.yml names is the one offered (IdentitiesOnly), as RKE offers it.
        return Ok((Some(path.clone()), Identity(format!("the key {}", path.display()))));
    }
    if let Some(sock) = agent_sock {
        return Ok((None, Identity(format!("the keys of the SSH agent at {}", sock.display()))));
    }
    Err(KeyError::Missing(format!(
        "the SSH key {} does not exist; set ssh_key_path or ssh_key for this node, \
         or use --ssh-agent-auth",
        path.display()
    )))
}

/// How a certificate is named in errors (never its text).
fn cert_name(cert: &SshCert) -> String {
    match &cert.source {
        CertSource::Inline(_) => format!("the inline certificate {}", cert.at),
        CertSource::File(p) => format!("the certificate {}", p.display()),
    }
}

/// The certificate as a file ssh can read: an inline one is written into the private folder.
fn cert_file(cert: &SshCert, dir: &PrivateDir, file_name: &str) -> io::Result<PathBuf> {
    match &cert.source {
        CertSource::Inline(text) => dir.write_private(file_name, text),
        CertSource::File(p) => std::path::absolute(p),
    }
}

/// Writes the session's ssh_config when the node has a certificate or a bastion is in the
/// way (otherwise ssh reads the user's configuration as usual); the bastion's, if any, is
/// returned to explain a failed dial.
fn configure_access(
    node: &Node,
    options: &SshOptions,
    dir: &PrivateDir,
    builder: &mut SessionBuilder,
) -> HostResult<Option<BastionDial>> {
    let local = |op: &str, reason: String| HostError::Io {
        host: node.address.clone(),
        op: op.to_string(),
        reason,
        transient: false,
    };
    let unwritable = |e: Unwritable| local("write the SSH configuration", e.to_string());
    let cert = match &node.ssh.cert {
        Some(c) => {
            Some(cert_file(c, dir, "id-cert.pub").map_err(|e| local("write the SSH certificate", e.to_string()))?)
        }
        None => None,
    };
    let bastion = match &options.bastion {
        Some(b) => Some(bastion_files(node, b, options, dir)?),
        None => None,
    };
    if cert.is_none() && bastion.is_none() {
        return Ok(None);
    }
    let proxy = bastion.as_ref().map(|b| Proxy { config: &b.config, log: &b.log, address: &b.bastion.address });
    let text = ssh_config::node_config(cert.as_deref(), proxy.as_ref()).map_err(unwritable)?;
    let path = dir.write_private("ssh.conf", &text).map_err(|e| local("write the SSH configuration", e.to_string()))?;
    builder.config_file(path);
    Ok(bastion)
}

/// Writes the bastion's config (and its inline key and certificate) into the private folder.
fn bastion_files(node: &Node, b: &Bastion, options: &SshOptions, dir: &PrivateDir) -> HostResult<BastionDial> {
    let at_bastion = |reason: String| HostError::Auth {
        host: node.address.clone(),
        reason: format!("at the bastion host {}: {reason}", b.address),
    };
    let local = |op: &str, e: String| HostError::Io {
        host: node.address.clone(),
        op: format!("{op} of the bastion host"),
        reason: e,
        transient: false,
    };
    let agent = b.ssh.agent || options.ssh_agent_auth;
    let agent_sock = if agent { Some(agent_socket().map_err(at_bastion)?) } else { None };
    let (key, mut identity) = choose_key(&b.ssh, agent_sock.as_deref(), dir, "bastion-id").map_err(|e| match e {
        KeyError::Missing(_) => at_bastion(format!(
            "the SSH key {} does not exist; set bastion_host.ssh_key_path or ssh_key, or use --ssh-agent-auth",
            b.ssh.key_path.display()
        )),
        KeyError::Write(e) => local("write the inline ssh_key", e.to_string()),
    })?;
    let cert = match &b.ssh.cert {
        Some(c) => {
            identity.0.push_str(&format!(" with {}", cert_name(c)));
            Some(cert_file(c, dir, "bastion-id-cert.pub").map_err(|e| local("write the certificate", e.to_string()))?)
        }
        None => None,
    };
    let settings = BastionSettings {
        port: b.port,
        user: &b.user,
        strict_host_key_checking: match options.known_hosts {
            KnownHostsPolicy::Strict { .. } => "yes",
            KnownHostsPolicy::AcceptNew { .. } => "accept-new",
        },
        known_hosts: options.known_hosts.file(),
        connect_timeout: options.connect_timeout,
        server_alive_interval: SERVER_ALIVE_INTERVAL,
        key: key.as_deref(),
        cert: cert.as_deref(),
    };
    let text =
        ssh_config::bastion_config(&settings).map_err(|e| local("write the SSH configuration", e.to_string()))?;
    let config =
        dir.write_private("bastion.conf", &text).map_err(|e| local("write the SSH configuration", e.to_string()))?;
    Ok(BastionDial {
        bastion: b.clone(),
        config,
        log: dir.path().join("bastion.log"),
        identity,
        known_hosts: options.known_hosts.clone(),
    })
}

/// A dial through the bastion: its files, and what explains its failures.
struct BastionDial {
    bastion: Bastion,
    config: PathBuf,
    /// What the bastion's ssh said (`-E`); the node's ssh never sees it.
    log: PathBuf,
    identity: Identity,
    known_hosts: KnownHostsPolicy,
}

impl BastionDial {
    /// The bastion's part in a failed dial of `node`, if it said anything.
    fn failure(&self, node: &Node) -> Option<HostError> {
        let said = std::fs::read_to_string(&self.log).ok()?;
        let text = clean_ssh_text(&said);
        if text.is_empty() {
            return None;
        }
        let b = &self.bastion;
        if text.contains("open failed") || text.contains("stdio forwarding failed") {
            // The bastion is in; the node does not answer it.
            return Some(HostError::Unreachable {
                host: node.address.clone(),
                reason: format!(
                    "the bastion host {} cannot reach it on port {}: {}",
                    b.address,
                    node.port,
                    one_line(&text)
                ),
                transient: !text.contains("Connection refused"),
            });
        }
        let addr = HostAddr(b.address.clone());
        let ctx = DialContext {
            host: &addr,
            user: &b.user,
            port: b.port,
            known_hosts: &self.known_hosts,
            identity: &self.identity,
        };
        let at = |reason: String| format!("at the bastion host {}: {reason}", b.address);
        let host = node.address.clone();
        Some(match classify_ssh_failure(&ctx, &text) {
            HostError::HostKey { reason, .. } => HostError::HostKey { host, reason: at(reason) },
            HostError::Auth { reason, .. } => HostError::Auth { host, reason: at(reason) },
            HostError::Unreachable { reason, transient, .. } => {
                HostError::Unreachable { host, reason: at(reason), transient }
            }
            other => other,
        })
    }
}

/// What a failed dial needs to explain itself.
struct DialContext<'a> {
    host: &'a HostAddr,
    user: &'a str,
    port: u16,
    known_hosts: &'a KnownHostsPolicy,
    identity: &'a Identity,
}

/// Turns a failed master launch into a precise error.
fn connect_error(ctx: &DialContext<'_>, e: openssh::Error) -> HostError {
    if let openssh::Error::Connect(io) | openssh::Error::Master(io) = &e
        && io.raw_os_error().is_some()
    {
        // An OS error here is local: no `ssh` binary, or no room for the control socket.
        return HostError::Unreachable {
            host: ctx.host.clone(),
            reason: format!("cannot start the local ssh client: {io}"),
            transient: false,
        };
    }
    let text = match &e {
        openssh::Error::Connect(io) | openssh::Error::Master(io) => io.to_string(),
        other => chain(other),
    };
    classify_ssh_failure(ctx, &text)
}

/// Classifies what `ssh` printed when it could not open a session.
fn classify_ssh_failure(ctx: &DialContext<'_>, stderr: &str) -> HostError {
    let host = ctx.host.clone();
    let kh = ctx.known_hosts.display_file();
    let text = clean_ssh_text(stderr);
    let has = |s: &str| text.contains(s);

    if has("REMOTE HOST IDENTIFICATION HAS CHANGED") || has("has changed and you have requested") {
        let fingerprint = text
            .split_whitespace()
            .find(|w| w.starts_with("SHA256:"))
            .map(|f| format!(" (it now presents {})", f.trim_end_matches('.')))
            .unwrap_or_default();
        return HostError::HostKey {
            host: host.clone(),
            reason: format!(
                "its host key has CHANGED since it was recorded in {kh}{fingerprint}: the node \
                 was reinstalled, or someone is intercepting the connection. Check the new key \
                 out of band, then remove the old one with `ssh-keygen -f {kh} -R {host}`"
            ),
        };
    }
    if has("Host key verification failed") || has("host key is known for") {
        let hint = match ctx.known_hosts {
            KnownHostsPolicy::Strict { .. } => format!(
                "; check its fingerprint and add it to {kh} (ssh-keyscan -p {} {host}), or pass \
                 --accept-new-host-keys to trust unknown keys on first use",
                ctx.port
            ),
            KnownHostsPolicy::AcceptNew { .. } => String::new(),
        };
        return HostError::HostKey {
            host,
            reason: format!("no trusted host key for it in {kh} ({}){hint}", one_line(&text)),
        };
    }
    let connect_failure = has("connect to host");
    if !connect_failure
        && (has("Permission denied")
            || has("Load key")
            || has("UNPROTECTED PRIVATE KEY FILE")
            || has("Too many authentication failures"))
    {
        let load = text
            .lines()
            .find(|l| l.contains("Load key") || l.contains("bad permissions"))
            .map(|l| format!(" (the key could not be loaded: {})", l.trim()))
            .unwrap_or_default();
        let denied = text
            .lines()
            .find(|l| l.contains("Permission denied") || l.contains("Too many authentication"))
            .map(|l| l.trim().to_string())
            .unwrap_or_else(|| one_line(&text));
        return HostError::Auth {
            host,
            reason: format!("user {} was refused with {}{load}: {denied}", ctx.user, ctx.identity.0),
        };
    }
    let (reason, transient) = if has("Connection refused") {
        (format!("connection refused on port {} (is sshd running there?)", ctx.port), false)
    } else if has("timed out") || has("Timeout") {
        (format!("no answer on port {}: {}", ctx.port, one_line(&text)), true)
    } else if has("Connection reset")
        || has("Connection closed")
        || has("closed by remote host")
        || has("kex_exchange_identification")
        || has("Broken pipe")
    {
        (one_line(&text), true)
    } else if text.is_empty() {
        ("ssh failed without saying why".to_string(), false)
    } else {
        (one_line(&text), false)
    };
    HostError::Unreachable { host, reason, transient }
}

/// Drops ssh's noise (banners, "Permanently added") and the `ssh: ` prefix.
fn clean_ssh_text(stderr: &str) -> String {
    stderr
        .lines()
        .map(|l| l.trim().trim_start_matches("ssh: ").trim())
        .filter(|l| !l.is_empty() && !l.starts_with("Warning: Permanently added") && !l.chars().all(|c| c == '@'))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Several lines as one, for an error message.
fn one_line(text: &str) -> String {
    text.lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join("; ")
}

/// Refuses Docker releases older than 1.13.1 (API 1.24), whichever of the two can be read.
fn check_docker_version(host: &HostAddr, version: &str, api: Option<&str>) -> HostResult<()> {
    let release = parse_version(version);
    let api_version = api.and_then(parse_version);
    let too_old_release = release.is_some_and(|v| v < MIN_DOCKER_VERSION);
    let too_old_api = api_version.is_some_and(|(a, b, _)| (a, b) < MIN_DOCKER_API);
    if too_old_release || too_old_api {
        let (a, b, c) = MIN_DOCKER_VERSION;
        let (x, y) = MIN_DOCKER_API;
        return Err(HostError::DockerDown {
            host: host.clone(),
            reason: format!(
                "Docker {version} (API {}) on {host} is older than the oldest supported, \
                 {a}.{b}.{c} (API {x}.{y}); upgrade Docker, or pass --ignore-docker-version \
                 to use it anyway",
                api.unwrap_or("unknown")
            ),
        });
    }
    Ok(())
}

/// `20.10.24+dfsg1` → (20, 10, 24); `17.03.2-ce` → (17, 3, 2); missing parts are 0.
fn parse_version(s: &str) -> Option<(u64, u64, u64)> {
    let core = s.trim().trim_start_matches('v');
    let core = core.split(['-', '+', '~', ' ']).next()?;
    let mut parts = core.split('.').map(|p| p.parse::<u64>());
    let major = parts.next()?.ok()?;
    let minor = parts.next().unwrap_or(Ok(0)).ok()?;
    let patch = parts.next().unwrap_or(Ok(0)).ok()?;
    Some((major, minor, patch))
}

/// Says why the node's Docker socket may not answer, as a suffix for the error.
async fn diagnose_docker_socket(conn: &ConnRef, socket: &str) -> String {
    let out = Session::to_raw_command(conn.clone(), remote_command(SOCKET_SCRIPT, &[socket])).output().await;
    let verdict = match out {
        Ok(o) => String::from_utf8_lossy(&o.stdout).trim().to_string(),
        Err(_) => return String::new(),
    };
    match verdict.as_str() {
        "missing" => {
            format!(" ({socket} does not exist on the node: is Docker installed and running?)")
        }
        "notsocket" => format!(" ({socket} on the node is not a socket)"),
        "denied" => format!(" (the SSH user may not use {socket}: add it to the `docker` group)"),
        "ok" => " (the socket exists: is dockerd answering?)".to_string(),
        _ => String::new(),
    }
}

/// Docker's HTTP status for an error, if it came from the daemon.
fn status_of(e: &DockerError) -> Option<u16> {
    match e {
        DockerError::DockerResponseServerError { status_code, .. } => Some(*status_code),
        _ => None,
    }
}

/// Pulling a bare name would pull every tag of it.
fn with_default_tag(image: &str) -> String {
    let last = image.rsplit('/').next().unwrap_or(image);
    if last.contains(':') || last.contains('@') { image.to_string() } else { format!("{image}:latest") }
}

/// Scrubs secrets from an error's reason.
fn redact_error(e: HostError, secrets: &[&Secret]) -> HostError {
    match e {
        HostError::Docker { host, op, reason, transient } => {
            HostError::Docker { host, op, reason: redact(&reason, secrets), transient }
        }
        HostError::ProgramMissing { host, op, reason } => {
            HostError::ProgramMissing { host, op, reason: redact(&reason, secrets) }
        }
        HostError::Unreachable { host, reason, transient } => {
            HostError::Unreachable { host, reason: redact(&reason, secrets), transient }
        }
        other => other,
    }
}

/// Parses [`LIST_SCRIPT`]'s output: NUL-terminated `name\tsize\tmtime` records.
fn parse_listing(raw: &[u8]) -> Vec<DirEntry> {
    let mut entries = Vec::new();
    for record in raw.split(|b| *b == 0).filter(|r| !r.is_empty()) {
        let Ok(record) = std::str::from_utf8(record) else {
            tracing::warn!("skipping a file whose name is not UTF-8");
            continue;
        };
        // The name may hold tabs; size and mtime never do.
        let mut fields = record.rsplitn(3, '\t');
        let (Some(mtime), Some(size), Some(name)) = (fields.next(), fields.next(), fields.next()) else {
            continue;
        };
        let Ok(size) = size.parse::<u64>() else {
            continue;
        };
        let seconds = mtime.split('.').next().unwrap_or(mtime);
        let Ok(modified) = seconds.parse::<i64>() else {
            continue;
        };
        entries.push(DirEntry { name: name.to_string(), size, modified });
    }
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    entries
}

/// Quotes a word for a POSIX shell.
fn shell_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        if c == '\'' {
            out.push_str("'\\''");
        } else {
            out.push(c);
        }
    }
    out.push('\'');
    out
}

/// `sh -c 'SCRIPT' rkectl 'ARG1' …`: the arguments become `$1 …` in the script.
fn remote_command(script: &str, args: &[&str]) -> String {
    let mut cmd = format!("sh -c {} rkectl", shell_quote(script));
    for a in args {
        cmd.push(' ');
        cmd.push_str(&shell_quote(a));
    }
    cmd
}

/// A temporary name next to `path`, so the final rename stays on one filesystem.
fn temp_name(path: &str) -> String {
    format!("{path}.rkectl-tmp.{:016x}", random_u64())
}

/// Unpredictable enough for temporary names (std's hasher keys are seeded randomly).
fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    if let Ok(t) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        h.write_u128(t.as_nanos());
    }
    h.finish()
}

fn transient_io(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::TimedOut
            | io::ErrorKind::UnexpectedEof
    )
}

fn is_transient_text(s: &str) -> bool {
    ["Connection reset", "Broken pipe", "timed out", "Timeout", "closed by remote host", "master"]
        .iter()
        .any(|p| s.contains(p))
}

/// An error and its sources, each said once.
/// Whether Docker refused to start a container because its program is not in the image
/// (runc: `exec: "/usr/local/bin/etcdutl": stat …: no such file or directory`, or
/// `executable file not found in $PATH`).
fn program_missing(message: &str) -> bool {
    message.contains("executable file not found")
        || (message.contains("exec: \"") && message.contains("no such file or directory"))
}

fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !text.is_empty() && !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

/// A 0700 folder for one session's sockets and key, removed on drop.
struct PrivateDir {
    path: PathBuf,
}

impl PrivateDir {
    fn create() -> io::Result<PrivateDir> {
        let mut base = std::env::temp_dir();
        // Unix socket paths are limited to 108 bytes and ssh adds its own suffixes.
        if base.as_os_str().len() > 40 {
            base = PathBuf::from("/tmp");
        }
        let mut last = None;
        for _ in 0..16 {
            let path = base.join(format!("rkectl-{:012x}", random_u64() & 0xffff_ffff_ffff));
            match std::fs::DirBuilder::new().mode(0o700).create(&path) {
                Ok(()) => return Ok(PrivateDir { path }),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| io::Error::other("no free temporary folder name")))
    }

    fn path(&self) -> &Path {
        &self.path
    }

    /// Removes the inline keys (the node's and the bastion's), if any were written.
    fn forget_key(&self) {
        for name in ["id", "bastion-id"] {
            let _ = std::fs::remove_file(self.path.join(name));
        }
    }

    /// Writes `name` where only this user can read it (ssh refuses a key file anything
    /// looser can read).
    fn write_private(&self, name: &str, text: &str) -> io::Result<PathBuf> {
        use std::io::Write;
        let path = self.path.join(name);
        let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path)?;
        f.write_all(text.as_bytes())?;
        // OpenSSH rejects a key file whose last line has no newline.
        if !text.ends_with('\n') {
            f.write_all(b"\n")?;
        }
        Ok(path)
    }
}

impl Drop for PrivateDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
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
