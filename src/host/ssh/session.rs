//! The SSH connection to a node: dialing the master, keeping it open, the node lock held for
//! its life, and telling a broken connection from other failures.

use super::*;
use openssh::{ControlPersist, KnownHosts};
use std::num::NonZeroUsize;
use std::ops::Deref;

/// How long an orphaned master (rkectl killed) outlives its last channel.
const CONTROL_PERSIST_IDLE_SECS: usize = 30;

/// The session and the folder it lives in; shared with open streams so that a stream
/// outliving its host keeps the master (and its socket folder) alive.
pub(super) struct Conn {
    session: Session,
    _dir: PrivateDir,
}

/// A cloneable handle to the session that openssh can own (`Deref<Target = Session>`).
#[derive(Clone)]
pub(super) struct ConnRef(Arc<Conn>);

impl Deref for ConnRef {
    type Target = Session;
    fn deref(&self) -> &Session {
        &self.0.session
    }
}

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
        let (conn, socket) = open_master(node, options).await?;
        let keepalive = keep_alive(&conn, &addr).await?;
        let (docker, server_version) = docker::connect(&conn, node, options, &socket).await?;

        Ok(SshHost {
            addr,
            docker_socket: node.docker_socket.clone(),
            docker_version: server_version,
            docker,
            docker_local: socket,
            waits: WaitLimits::default(),
            _keepalive: Mutex::new(keepalive),
            claim: Mutex::new(None),
            conn,
        })
    }

    /// A failed operation on this host, as [`HostError::Io`].
    pub(super) fn io_err(&self, op: &str, reason: impl Into<String>, transient: bool) -> HostError {
        HostError::Io { host: self.addr.clone(), op: op.to_string(), reason: reason.into(), transient }
    }

    /// `Some(Unreachable)` when the master is gone: the one case where redialing helps.
    pub(super) async fn lost(&self, op: &str) -> Option<HostError> {
        match self.conn.check().await {
            Ok(()) => None,
            Err(e) => Some(HostError::Unreachable {
                host: self.addr.clone(),
                reason: format!("the SSH connection broke during {op}: {}", chain(&e)),
                transient: true,
            }),
        }
    }

    /// What an SSH failure during `op` means: [`Self::lost`]'s error when the master is gone.
    pub(super) async fn ssh_err(&self, op: &str, e: openssh::Error) -> HostError {
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
}

/// Starts the master in a new private folder; returns it and the local path, in that folder,
/// for the forwarded Docker socket.
async fn open_master(node: &Node, options: &SshOptions) -> HostResult<(ConnRef, PathBuf)> {
    let addr = node.address.clone();
    let dir = PrivateDir::create().map_err(|e| HostError::Io {
        host: addr.clone(),
        op: "create a private folder for the SSH session".into(),
        reason: e.to_string(),
        transient: false,
    })?;

    let timeout = options.connect_timeout.max(Duration::from_secs(1));
    let mut builder = session_builder(node, options, &dir, timeout);
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
    Ok((ConnRef(Arc::new(Conn { session, _dir: dir })), socket))
}

/// The master's settings before authentication: user, port, timeouts, folder, host keys.
fn session_builder(node: &Node, options: &SshOptions, dir: &PrivateDir, timeout: Duration) -> SessionBuilder {
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
    builder
}

/// Starts the never-ending `cat` of [`SshHost`]'s `_keepalive`.
async fn keep_alive(conn: &ConnRef, addr: &HostAddr) -> HostResult<Child<ConnRef>> {
    Session::to_raw_command(conn.clone(), "cat >/dev/null")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .await
        .map_err(|e| HostError::Unreachable {
            host: addr.clone(),
            reason: format!("the SSH session opened but cannot run commands: {}", chain(&e)),
            transient: true,
        })
}

/// `rkectl agent hold-lock` on the node, and the task that beats on its input.
pub(super) struct HeldClaim {
    _child: Child<ConnRef>,
    beat: JoinHandle<()>,
}

impl Drop for HeldClaim {
    fn drop(&mut self) {
        // Its input closes with the task: the claims end now, not at the lease.
        self.beat.abort();
    }
}

/// Takes `owner`'s claim (and an apply's node lock) and holds it while the connection lives
/// ([`Host::claim`]).
pub(super) async fn claim(host: &SshHost, agent: &str, owner: &Owner) -> HostResult<()> {
    use crate::model::node_lock::{BEAT, HELD, LEASE_SECS, LOCKED};
    use tokio::io::AsyncBufReadExt;
    let op = if owner.holds_node_lock() { "lock the node" } else { "claim the node for this invocation" };
    let hold = crate::agent::AgentCommand::HoldLock {
        owner: owner.id.to_string(),
        holder: owner.node_lock.clone(),
        lease_secs: LEASE_SECS,
    };
    let rendered = hold.to_args();
    let args: Vec<&str> = [agent, "agent"].into_iter().chain(rendered.iter().map(String::as_str)).collect();
    let mut cmd = host.script(r#"exec "$@""#, &args);
    cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = match cmd.spawn().await {
        Ok(c) => c,
        Err(e) => return Err(host.ssh_err(op, e).await),
    };
    let stdout = child.stdout().take().expect("piped stdout");
    let mut first = String::new();
    let mut reader = tokio::io::BufReader::new(stdout);
    let read = reader.read_line(&mut first);
    // The same invocation coming back after a cut waits there for its old lease to end.
    let answer = Duration::from_secs(DOCKER_TIMEOUT_SECS + LEASE_SECS);
    match tokio::time::timeout(answer, read).await {
        Ok(Ok(_)) if first.trim_end() == LOCKED => {
            let mut stdin = child.stdin().take().expect("piped stdin");
            let beat = tokio::spawn(async move {
                loop {
                    tokio::time::sleep(BEAT).await;
                    if stdin.write_all(b"\n").await.is_err() || stdin.flush().await.is_err() {
                        return;
                    }
                }
            });
            *host.claim.lock().expect("claim") = Some(HeldClaim { _child: child, beat });
            Ok(())
        }
        Ok(Ok(_)) if first.starts_with(HELD) => {
            Err(HostError::Locked { host: host.addr.clone(), holder: describe_holder(first[HELD.len()..].trim()) })
        }
        Ok(Ok(_)) => {
            let mut err = String::new();
            if let Some(mut e) = child.stderr().take() {
                let _ = tokio::time::timeout(Duration::from_secs(5), e.read_to_string(&mut err)).await;
            }
            Err(host.io_err(op, format!("rkectl agent hold-lock: {}", crate::secret::printable(err.trim())), false))
        }
        Ok(Err(e)) => Err(host.io_err(op, e.to_string(), transient_io(&e))),
        Err(_) => Err(host.io_err(op, "no answer from rkectl agent hold-lock", true)),
    }
}

/// Who holds a node's lock, from its record, and how that lock ends.
fn describe_holder(record: &str) -> String {
    use crate::model::node_lock::{Holder, LEASE_SECS, NodeLockRecord};
    let (holder, node_pid) = match serde_json::from_str::<NodeLockRecord>(record) {
        Ok(r) => (serde_json::from_str::<Holder>(&r.holder).ok(), Some(r.pid)),
        // An older rkectl's record is the holder alone.
        Err(_) => (serde_json::from_str::<Holder>(record).ok(), None),
    };
    let who = match holder {
        Some(h) => format!("pid {} on {}, since {}: {}", h.pid, h.host, h.since, h.command),
        None => "its record is unreadable".to_string(),
    };
    match node_pid {
        Some(pid) => format!(
            "{who}; held on the node by `rkectl agent hold-lock`, process {pid}, which lets go {LEASE_SECS} s after that workstation falls silent"
        ),
        None => who,
    }
}

/// The invocations whose claim on the node is held ([`Host::live_owners`]).
pub(super) async fn live_owners(host: &SshHost, agent: &str) -> HostResult<crate::agent::node_lock::LiveOwners> {
    let op = "read the invocations' claims";
    let args = [agent, "agent", "owners"];
    let f = host.run(op, r#"exec "$@""#, &args, None).await?;
    let out = String::from_utf8_lossy(&f.stdout);
    if f.code != 0 {
        return Err(host.io_err(
            op,
            format!("rkectl agent owners: {}", crate::secret::printable(f.stderr.trim())),
            false,
        ));
    }
    crate::agent::report::parse(&out).map_err(|e| host.io_err(op, format!("rkectl agent owners: {e}"), false))
}
