//! An in-memory host for engine tests: containers, files and images in a `BTreeMap`.
//!
//! The fake plays the helpers rkectl runs (cleaner, restore, checksum checker, snapshot,
//! health check…) by their container names, on its own files, just enough for a test to
//! tell "restored from snapshot X" from "still the old data". It can also be told to fail
//! an operation, be unreachable, or "crash" at the N-th operation of a whole world: the
//! operation then never completes, as if the rkectl process had been killed mid-step.

use super::{
    ByteStream, Connector, ContainerInfo, ContainerSpec, DirEntry, DockerInfo, Host, HostError, HostResult, LogStream,
};
use crate::agent::AgentCommand;
use crate::agent::report::{self, Done, HealthReport, MemberHealth, SnapshotReport};
use crate::config::registries::{PrivateRegistry, RegistryAuth, registry_key};
use crate::config::{HostAddr, Node};
use crate::etcd::{names, paths};
use crate::model::{Checksum, SnapshotName};
use async_trait::async_trait;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::sync::Notify;

/// A container on a fake host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeContainer {
    pub spec_image: String,
    pub cmd: Vec<String>,
    /// Entrypoint then command, as Docker reports a container's.
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub binds: Vec<String>,
    /// A service (restarted always): it runs until removed instead of exiting.
    pub service: bool,
    pub labels: BTreeMap<String, String>,
    pub running: bool,
    pub exit_code: Option<i64>,
    pub logs: String,
    pub id: String,
}

/// The state of one fake host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FakeHostState {
    pub reachable: bool,
    pub docker_up: bool,
    pub images: BTreeSet<String>,
    pub containers: BTreeMap<String, FakeContainer>,
    pub files: BTreeMap<String, Vec<u8>>,
}

impl FakeHostState {
    /// A healthy host with the given images.
    pub fn up(images: &[&str]) -> Self {
        FakeHostState {
            reachable: true,
            docker_up: true,
            images: images.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    /// The etcd data as the fake keeps it (`/var/lib/etcd/member/db`).
    pub fn etcd_data(&self) -> Option<&[u8]> {
        self.files.get(&format!("{}/member/db", paths::DATA_DIR)).map(Vec::as_slice)
    }

    /// The state without run-specific details (container ids), for comparing runs.
    pub fn comparable(&self) -> Self {
        let mut s = self.clone();
        for c in s.containers.values_mut() {
            c.id.clear();
            c.logs.clear();
        }
        s
    }
}

/// Every fake host, shared by the connector and the test.
#[derive(Default)]
pub struct FakeWorld {
    pub hosts: Mutex<BTreeMap<HostAddr, FakeHostState>>,
    /// Objects of a fake S3 bucket: name → bytes.
    pub s3: Mutex<BTreeMap<String, Vec<u8>>>,
    ops: AtomicUsize,
    crash_at: Mutex<Option<usize>>,
    /// Notified when the crash point is reached.
    pub crashed: Notify,
    /// Failures to inject: (host, container name) → remaining count of failing runs.
    pub fail_container: Mutex<BTreeMap<(HostAddr, String), usize>>,
    /// Delay added to each operation.
    pub op_delay: Mutex<Duration>,
    /// Registries that refuse anonymous pulls: registry (as cluster.yml's `url`) → the one
    /// user and password they accept.
    pub registry_logins: Mutex<BTreeMap<String, (String, String)>>,
    /// Every pull: host, image, and the registry user it presented (never the password).
    pub pulls: Mutex<Vec<(HostAddr, String, Option<String>)>>,
    /// Helpers that print slowly or hang: (host, container name) → how.
    pub paces: Mutex<BTreeMap<(HostAddr, String), Pace>>,
    /// Bytes of container output handed out so far (to tell reading it once from re-reading).
    log_bytes_read: AtomicU64,
    next_id: AtomicUsize,
}

/// How a helper prints, for tests of waiting on it: pieces of output after pauses, then its
/// usual output and exit, or nothing more, ever. Its work happens when it exits.
#[derive(Debug, Clone, Default)]
pub struct Pace {
    /// (pause before it, text), printed in order.
    pub chunks: Vec<(Duration, String)>,
    /// After the chunks, hang (print nothing, never exit) instead of finishing.
    pub then_hang: bool,
}

impl FakeWorld {
    /// A world of hosts, each up with the given images.
    pub fn new(hosts: impl IntoIterator<Item = HostAddr>, images: &[&str]) -> Arc<FakeWorld> {
        let w = FakeWorld::default();
        {
            let mut h = w.hosts.lock().expect("world lock");
            for a in hosts {
                h.insert(a, FakeHostState::up(images));
            }
        }
        Arc::new(w)
    }

    /// Makes the `n`-th operation from now (1-based) never complete.
    pub fn crash_after(&self, n: usize) {
        *self.crash_at.lock().expect("crash lock") = Some(self.ops.load(Ordering::SeqCst) + n);
    }

    /// Clears a crash point.
    pub fn no_crash(&self) {
        *self.crash_at.lock().expect("crash lock") = None;
    }

    /// Operations done so far.
    pub fn op_count(&self) -> usize {
        self.ops.load(Ordering::SeqCst)
    }

    /// A copy of one host's state.
    pub fn host(&self, addr: &HostAddr) -> FakeHostState {
        self.hosts.lock().expect("world lock").get(addr).cloned().unwrap_or_default()
    }

    /// Changes one host's state.
    pub fn with_host<R>(&self, addr: &HostAddr, f: impl FnOnce(&mut FakeHostState) -> R) -> R {
        let mut hosts = self.hosts.lock().expect("world lock");
        f(hosts.entry(addr.clone()).or_default())
    }

    /// Makes every later run of `container` on `host` print and end as `pace` says.
    pub fn pace(&self, host: &HostAddr, container: &str, pace: Pace) {
        self.paces.lock().expect("pace lock").insert((host.clone(), container.to_string()), pace);
    }

    /// Bytes of container output handed out so far.
    pub fn log_bytes_read(&self) -> u64 {
        self.log_bytes_read.load(Ordering::SeqCst)
    }

    /// Makes the next `times` runs of `container` on `host` exit non-zero.
    pub fn fail_container(&self, host: &HostAddr, container: &str, times: usize) {
        self.fail_container.lock().expect("fail lock").insert((host.clone(), container.to_string()), times);
    }

    /// Counts an operation; at the crash point the caller must never complete.
    async fn tick(&self) {
        let delay = *self.op_delay.lock().expect("delay lock");
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let n = self.ops.fetch_add(1, Ordering::SeqCst) + 1;
        let crash = *self.crash_at.lock().expect("crash lock");
        if crash == Some(n) {
            self.crashed.notify_waiters();
            self.crashed.notify_one();
            std::future::pending::<()>().await;
        }
    }
}

/// Connects to fake hosts.
pub struct FakeConnector(pub Arc<FakeWorld>);

#[async_trait]
impl Connector for FakeConnector {
    async fn connect(&self, node: &Node) -> HostResult<Arc<dyn Host>> {
        self.0.tick().await;
        let state = self.0.host(&node.address);
        if !state.reachable {
            return Err(HostError::Unreachable {
                host: node.address.clone(),
                reason: "connection refused (fake)".into(),
                transient: false,
            });
        }
        Ok(Arc::new(FakeHost { addr: node.address.clone(), world: self.0.clone() }))
    }
}

/// One fake host.
pub struct FakeHost {
    addr: HostAddr,
    world: Arc<FakeWorld>,
}

impl FakeHost {
    async fn with<R>(&self, op: &str, f: impl FnOnce(&mut FakeHostState) -> HostResult<R>) -> HostResult<R> {
        self.world.tick().await;
        let mut hosts = self.world.hosts.lock().expect("world lock");
        let s = hosts.entry(self.addr.clone()).or_default();
        if !s.reachable {
            return Err(HostError::Unreachable {
                host: self.addr.clone(),
                reason: format!("{op}: connection lost (fake)"),
                transient: true,
            });
        }
        f(s)
    }

    fn docker(&self, s: &FakeHostState) -> HostResult<()> {
        if s.docker_up {
            Ok(())
        } else {
            Err(HostError::DockerDown {
                host: self.addr.clone(),
                reason: "Cannot connect to the Docker daemon (fake)".into(),
            })
        }
    }
}

fn arg<'a>(cmd: &'a [String], flag: &str) -> Option<&'a str> {
    cmd.iter().position(|a| a == flag).and_then(|i| cmd.get(i + 1)).map(String::as_str).or_else(|| {
        let prefix = format!("{flag}=");
        cmd.iter().find_map(|a| a.strip_prefix(&prefix))
    })
}

fn snapshot_report(file: &str, data: &[u8]) -> SnapshotReport {
    let corrupt = data.starts_with(b"CORRUPT");
    let (name, format) = crate::model::SnapshotFormat::parse_file_name(file)
        .map(|(n, f)| (n.to_string(), f))
        .unwrap_or((file.to_string(), crate::model::SnapshotFormat::Raw));
    SnapshotReport {
        name,
        format,
        size: data.len() as u64,
        checksum: Checksum::of(data),
        etcd_ok: !corrupt,
        problem: corrupt.then(|| "sha256 trailer mismatch (fake)".to_string()),
        etcd: None,
        uploaded: false,
        db: None,
        has_state: false,
        identical_everywhere: false,
    }
}

/// rke-tools' archive of a fake database, made by the real archive writer.
pub fn archive(name: &str, db: &[u8], state: Option<&[u8]>) -> Vec<u8> {
    let mut w = crate::rke::archive::ArchiveWriter::start(Vec::new(), name).expect("in memory");
    w.write_db(db).expect("in memory");
    w.finish(state).expect("in memory")
}

/// The checker's report of a file: for an archive, of its database too (by the real reader).
fn checked(file: &str, data: &[u8]) -> SnapshotReport {
    let mut r = snapshot_report(file, data);
    if r.format == crate::model::SnapshotFormat::Zip {
        let name = r.name.clone();
        let mut db = Vec::new();
        match crate::rke::archive::contents(std::io::Cursor::new(data), &name) {
            Ok((mut z, c)) if c.db => {
                let _ = crate::rke::archive::read_db(&mut z, &name, |b| {
                    db.extend_from_slice(b);
                    Ok(())
                });
                r.has_state = c.state;
                r.db = Some(crate::model::SnapshotFacts { size: db.len() as u64, checksum: Checksum::of(&db) });
                r.etcd_ok = !db.starts_with(b"CORRUPT");
                r.problem = (!r.etcd_ok).then(|| "sha256 trailer mismatch (fake)".to_string());
            }
            _ => {
                r.etcd_ok = false;
                r.problem = Some("not a readable zip archive (fake)".into());
            }
        }
    }
    r
}

/// Plays a helper container on the host's files; returns (exit code, logs).
fn simulate(
    world: &FakeWorld,
    addr: &HostAddr,
    hosts: &mut BTreeMap<HostAddr, FakeHostState>,
    name: &str,
    cmd: &[String],
) -> (i64, String) {
    let data_db = format!("{}/member/db", paths::DATA_DIR);
    let staging_db = format!("{}/restore-staging/member/db", paths::DATA_DIR);
    let running_members: Vec<(HostAddr, Vec<u8>)> = hosts
        .iter()
        .filter(|(_, s)| s.reachable && s.containers.get(names::ETCD).is_some_and(|c| c.running))
        .map(|(a, s)| (a.clone(), s.etcd_data().unwrap_or_default().to_vec()))
        .collect();
    let s = hosts.get_mut(addr).expect("host exists");
    if name == names::RESTORE {
        return restore(s, cmd, &staging_db);
    }
    if name == names::ETCD || name == names::ROLLING_SNAPSHOTS {
        return (0, String::new());
    }
    // Every other container is rkectl's agent: its argv is read as the agent reads it, so
    // an argv the agent would refuse fails here too.
    let command = match crate::agent::argv::parse(cmd) {
        Ok(c) => c,
        Err(e) => return (2, format!("rkectl agent: {e}")),
    };
    match command {
        AgentCommand::Clean { .. } => {
            let prefix = format!("{}/", paths::DATA_DIR);
            s.files.retain(|k, _| !k.starts_with(&prefix));
            (0, report::line(&Done { changed: true, detail: "cleaned".into() }))
        }
        AgentCommand::RestoreFinish { .. } => match s.files.remove(&staging_db) {
            Some(db) => {
                s.files.insert(data_db, db);
                (0, report::line(&Done { changed: true, detail: "moved".into() }))
            }
            None if s.files.contains_key(&data_db) => {
                (0, report::line(&Done { changed: false, detail: "already".into() }))
            }
            None => (1, "no staged data".into()),
        },
        AgentCommand::SnapshotVerify { paths, .. } => {
            let mut out = Vec::new();
            let mut code = 0;
            for path in paths {
                let path = path.to_string_lossy();
                match s.files.get(path.as_ref()) {
                    Some(d) => out.push(report::line(&checked(path.rsplit('/').next().unwrap_or(&path), d))),
                    None => {
                        code = 1;
                        out.push(format!("{path}: no such file"));
                    }
                }
            }
            (code, out.join("\n"))
        }
        AgentCommand::SnapshotSave { name, state_file, copied_to_every_host, s3, .. } => {
            let Some(data) = s.etcd_data().map(<[u8]>::to_vec) else {
                return (1, "etcd is not running (fake)".into());
            };
            let state = state_file.and_then(|p| s.files.remove(p.to_string_lossy().as_ref()));
            let mut db = b"snapshot:".to_vec();
            db.extend(data);
            let zip = archive(&name, &db, state.as_deref());
            let file = format!("{name}.zip");
            let mut r = checked(&file, &zip);
            r.identical_everywhere = copied_to_every_host;
            s.files.insert(format!("{}/{file}", paths::SNAPSHOT_DIR), zip.clone());
            if s3.bucket.is_some() {
                world.s3.lock().expect("s3 lock").insert(file, zip);
                r.uploaded = true;
            }
            s.files.insert(
                crate::layout::record(&SnapshotName::new(name).expect("name")),
                serde_json::to_vec(&r).expect("report"),
            );
            (0, report::line(&r))
        }
        AgentCommand::S3Download { name, format, into, .. } => {
            let file = crate::model::SnapshotFormat::from(format).file_name(&SnapshotName::new(&name).expect("name"));
            let into = into.to_string_lossy().into_owned();
            match world.s3.lock().expect("s3 lock").get(&file).cloned() {
                Some(d) => {
                    let r = checked(&file, &d);
                    s.files.insert(format!("{into}/{file}"), d);
                    if into == paths::SNAPSHOT_DIR {
                        s.files.insert(
                            crate::layout::record(&SnapshotName::new(name).expect("name")),
                            serde_json::to_vec(&r).expect("report"),
                        );
                    }
                    (0, report::line(&r))
                }
                None => (1, format!("{file}: NoSuchKey")),
            }
        }
        AgentCommand::SnapshotUnpack { archive: from, out } => {
            let (from, out) = (from.to_string_lossy().into_owned(), out.to_string_lossy().into_owned());
            let Some(zip) = s.files.get(&from).cloned() else { return (1, format!("{from}: no such file")) };
            let name = from.rsplit('/').next().unwrap_or(&from).trim_end_matches(".zip").to_string();
            let mut db = Vec::new();
            let unpacked = crate::rke::archive::contents(std::io::Cursor::new(zip), &name).and_then(|(mut z, _)| {
                crate::rke::archive::read_db(&mut z, &name, |c| {
                    db.extend_from_slice(c);
                    Ok(())
                })
            });
            if let Err(e) = unpacked {
                return (1, format!("{from}: {e}"));
            }
            if db.starts_with(b"CORRUPT") {
                return (1, "the database is damaged (fake)".into());
            }
            let r = snapshot_report(&format!("{name}.db"), &db);
            s.files.insert(out, db);
            (0, report::line(&r))
        }
        AgentCommand::SnapshotDelete { names, .. } => {
            for n in names {
                s.files.remove(&format!("{}/{n}", paths::SNAPSHOT_DIR));
                s.files.remove(&format!("{}/{n}.zip", paths::SNAPSHOT_DIR));
                s.files.remove(&format!("{}/{n}.json", paths::SNAPSHOT_META_DIR));
            }
            (0, report::line(&Done { changed: true, detail: "deleted".into() }))
        }
        AgentCommand::Health { endpoints, .. } => {
            let members = endpoints
                .split(',')
                .map(|e| {
                    let host = e.trim_start_matches("https://").split(':').next().unwrap_or_default();
                    let found = running_members.iter().find(|(a, _)| a.as_str() == host);
                    MemberHealth {
                        endpoint: e.to_string(),
                        healthy: found.is_some(),
                        // Members restored from one snapshot agree; the member suffix is not data.
                        revision: found.map(|(_, d)| {
                            let data = d.split(|b| *b == b'|').next().unwrap_or_default();
                            data.iter().map(|b| i64::from(*b)).sum::<i64>() % 1000
                        }),
                        error: found.is_none().then(|| "connection refused (fake)".to_string()),
                    }
                })
                .collect();
            (0, report::line(&HealthReport { members, member_names: Vec::new() }))
        }
        AgentCommand::MemberAdd { .. } | AgentCommand::MemberRemove { .. } => {
            (0, report::line(&Done { changed: true, detail: "member change".into() }))
        }
        AgentCommand::SnapshotDrill { file, .. } => {
            let file = file.to_string_lossy().into_owned();
            let Some(data) = s.files.get(&file).cloned() else { return (1, format!("{file}: no such file")) };
            if data.windows(7).any(|w| w == b"CORRUPT") {
                return (1, "etcdctl snapshot restore failed: snapshot file integrity check failed (fake)".into());
            }
            // The fake's databases are opaque bytes: one key, as if the data were one value.
            let restored = crate::agent::drill::KeyCounts {
                revision: 1,
                keys: 1,
                by_resource: [("(not kubernetes)".to_string(), 1)].into(),
            };
            let r = crate::agent::drill::DrillReport {
                snapshot: checked(file.rsplit('/').next().unwrap_or(&file), &data),
                hash: data.iter().map(|b| u64::from(*b)).sum(),
                restored,
                newest: None,
                restore_millis: 0,
                total_millis: 0,
                live: None,
            };
            (0, report::line(&r))
        }
        // Fake hosts share no network: a direct copy between them is refused before it
        // starts, so the copy goes through the workstation as it would past a firewall.
        AgentCommand::ServeSnapshot { .. } => (1, "fake hosts cannot reach each other\n".into()),
        AgentCommand::FetchSnapshot { .. }
        | AgentCommand::LinkLogs { .. }
        | AgentCommand::HoldLock { .. }
        | AgentCommand::RollingSnapshots { .. } => (0, String::new()),
    }
}

/// etcd's own `snapshot restore` (the etcd image's tool, not rkectl's agent): the file named
/// by its first argument, into the staging folder, marked with the member's name.
fn restore(s: &mut FakeHostState, cmd: &[String], staging_db: &str) -> (i64, String) {
    let snap = cmd.get(2).cloned().unwrap_or_default();
    let member = arg(cmd, "--name").unwrap_or("?").to_string();
    if s.files.keys().any(|k| k.starts_with(&format!("{}/restore-staging", paths::DATA_DIR))) {
        return (1, "Error: data-dir exists".into());
    }
    match s.files.get(&snap).cloned() {
        Some(content) => {
            let mut db = content;
            db.extend_from_slice(format!("|member={member}").as_bytes());
            s.files.insert(staging_db.to_string(), db);
            (0, "restored".into())
        }
        None => (1, format!("Error: open {snap}: no such file or directory")),
    }
}

/// Ends a helper: an injected failure, or its work played on the host's files; returns
/// what it printed at the end.
fn finish(world: &FakeWorld, addr: &HostAddr, hosts: &mut BTreeMap<HostAddr, FakeHostState>, name: &str) -> String {
    let Some(cmd) = hosts.get(addr).and_then(|s| s.containers.get(name)).map(|c| c.cmd.clone()) else {
        return String::new();
    };
    let forced = {
        let mut f = world.fail_container.lock().expect("fail lock");
        match f.get_mut(&(addr.clone(), name.to_string())) {
            Some(n) if *n > 0 => {
                *n -= 1;
                true
            }
            _ => false,
        }
    };
    let (code, logs) =
        if forced { (1, "injected failure (fake)".to_string()) } else { simulate(world, addr, hosts, name, &cmd) };
    let st = hosts.get_mut(addr).expect("host");
    if let Some(c) = st.containers.get_mut(name) {
        c.exit_code = Some(code);
        c.running = false;
        c.logs.push_str(&logs);
    }
    logs
}

/// The exit code of a container that has ended (a missing one counts as ended with 0).
fn ended(s: &FakeHostState, name: &str) -> Option<i64> {
    match s.containers.get(name) {
        Some(c) if c.running => None,
        Some(c) => Some(c.exit_code.unwrap_or(0)),
        None => Some(0),
    }
}

fn ended_now(world: &FakeWorld, addr: &HostAddr, name: &str) -> Option<i64> {
    world.hosts.lock().expect("world lock").get(addr).and_then(|s| ended(s, name))
}

fn running_now(world: &FakeWorld, addr: &HostAddr, name: &str) -> bool {
    ended_now(world, addr, name).is_none()
}

#[async_trait]
impl Host for FakeHost {
    fn addr(&self) -> &HostAddr {
        &self.addr
    }

    async fn docker_info(&self) -> HostResult<DockerInfo> {
        self.with("docker info", |s| {
            self.docker(s)?;
            Ok(DockerInfo {
                server_version: "24.0.7".into(),
                root_dir: "/var/lib/docker".into(),
                architecture: "x86_64".into(),
            })
        })
        .await
    }

    async fn image_present(&self, image: &str) -> HostResult<bool> {
        self.with("inspect image", |s| {
            self.docker(s)?;
            Ok(s.images.contains(image))
        })
        .await
    }

    async fn pull_image(&self, image: &str, registry: Option<&PrivateRegistry>) -> HostResult<()> {
        let login = match registry.map(|r| &r.auth) {
            Some(RegistryAuth::Basic { user, password }) => Some((user.clone(), password.expose().to_string())),
            _ => None,
        };
        let wanted =
            registry_key(image).and_then(|k| self.world.registry_logins.lock().expect("logins").get(&k).cloned());
        self.world.pulls.lock().expect("pulls").push((
            self.addr.clone(),
            image.to_string(),
            login.as_ref().map(|(u, _)| u.clone()),
        ));
        self.with("pull", |s| {
            self.docker(s)?;
            if wanted.is_some() && wanted != login {
                return Err(HostError::ImageUnavailable {
                    host: self.addr.clone(),
                    image: image.into(),
                    reason: "unauthorized: authentication required (fake)".into(),
                });
            }
            if image.contains("missing") {
                return Err(HostError::ImageUnavailable {
                    host: self.addr.clone(),
                    image: image.into(),
                    reason: "not found (fake)".into(),
                });
            }
            s.images.insert(image.to_string());
            Ok(())
        })
        .await
    }

    async fn inspect_container(&self, name: &str) -> HostResult<Option<ContainerInfo>> {
        self.with("inspect container", |s| {
            self.docker(s)?;
            Ok(s.containers.get(name).map(|c| ContainerInfo {
                id: c.id.clone(),
                name: name.to_string(),
                image: c.spec_image.clone(),
                running: c.running,
                restarting: false,
                exit_code: c.exit_code,
                labels: c.labels.clone(),
                args: c.args.clone(),
                env: c.env.clone(),
                binds: c.binds.clone(),
            }))
        })
        .await
    }

    async fn create_container(&self, spec: &ContainerSpec) -> HostResult<String> {
        let id = format!("fake{:08}", self.world.next_id.fetch_add(1, Ordering::SeqCst));
        self.with("create container", |s| {
            self.docker(s)?;
            if !s.images.contains(&spec.image) {
                return Err(HostError::Docker {
                    host: self.addr.clone(),
                    op: "create".into(),
                    reason: format!("No such image: {}", spec.image),
                    transient: false,
                });
            }
            if spec.entrypoint.as_ref().and_then(|e| e.first()).is_some_and(|b| b.ends_with("etcdutl"))
                && spec.image.contains("v3.4")
            {
                return Err(HostError::ProgramMissing {
                    host: self.addr.clone(),
                    op: "create".into(),
                    reason: "exec: \"/usr/local/bin/etcdutl\": stat /usr/local/bin/etcdutl: no such file or directory"
                        .into(),
                });
            }
            if s.containers.contains_key(&spec.name) {
                return Err(HostError::Docker {
                    host: self.addr.clone(),
                    op: "create".into(),
                    reason: format!("Conflict. The container name \"/{}\" is already in use", spec.name),
                    transient: false,
                });
            }
            s.containers.insert(
                spec.name.clone(),
                FakeContainer {
                    spec_image: spec.image.clone(),
                    cmd: spec.cmd.clone(),
                    args: spec.entrypoint.iter().flatten().chain(&spec.cmd).cloned().collect(),
                    env: spec.env.clone(),
                    binds: spec.binds.clone(),
                    service: spec.restart == super::RestartPolicy::Always,
                    labels: spec.labels.clone(),
                    running: false,
                    exit_code: None,
                    logs: String::new(),
                    id: id.clone(),
                },
            );
            Ok(id.clone())
        })
        .await
    }

    async fn start_container(&self, name: &str) -> HostResult<()> {
        self.world.tick().await;
        let mut hosts = self.world.hosts.lock().expect("world lock");
        let s = hosts.get(&self.addr).cloned().unwrap_or_default();
        if !s.reachable {
            return Err(HostError::Unreachable {
                host: self.addr.clone(),
                reason: "connection lost (fake)".into(),
                transient: true,
            });
        }
        self.docker(&s)?;
        let Some(c) = s.containers.get(name).cloned() else {
            return Err(HostError::Docker {
                host: self.addr.clone(),
                op: "start".into(),
                reason: format!("No such container: {name}"),
                transient: false,
            });
        };
        let paced = self.world.paces.lock().expect("pace lock").contains_key(&(self.addr.clone(), name.to_string()));
        if c.service || paced {
            // A service runs until removed; a paced helper until its output is over.
            let st = hosts.get_mut(&self.addr).expect("host");
            st.containers.get_mut(name).expect("container").running = true;
            return Ok(());
        }
        finish(&self.world, &self.addr, &mut hosts, name);
        Ok(())
    }

    async fn wait_container(&self, name: &str) -> HostResult<i64> {
        let mut ended = self.with("wait", |s| Ok(ended(s, name))).await?;
        loop {
            match ended {
                Some(code) => return Ok(code),
                // Checking again is not another operation of the world's.
                None => tokio::time::sleep(Duration::from_millis(10)).await,
            }
            ended = ended_now(&self.world, &self.addr, name);
        }
    }

    async fn follow_logs(&self, name: &str) -> HostResult<LogStream> {
        let (logs, running) = self
            .with("logs", |s| {
                let c = s.containers.get(name).ok_or_else(|| HostError::Docker {
                    host: self.addr.clone(),
                    op: "logs".into(),
                    reason: format!("No such container: {name}"),
                    transient: false,
                })?;
                Ok((c.logs.clone(), c.running && !c.service))
            })
            .await?;
        let key = (self.addr.clone(), name.to_string());
        let pace = self.world.paces.lock().expect("pace lock").get(&key).cloned().filter(|_| running);
        let (tx, rx) = tokio::sync::mpsc::channel::<HostResult<bytes::Bytes>>(1);
        let world = self.world.clone();
        tokio::spawn(async move {
            let send = |text: String| {
                world.log_bytes_read.fetch_add(text.len() as u64, Ordering::SeqCst);
                tx.send(Ok(bytes::Bytes::from(text)))
            };
            let Some(pace) = pace else {
                if !logs.is_empty() {
                    let _ = send(logs).await;
                }
                return;
            };
            let (addr, name) = key;
            for (pause, text) in pace.chunks {
                tokio::time::sleep(pause).await;
                if !running_now(&world, &addr, &name) {
                    return;
                }
                world.with_host(&addr, |s| {
                    if let Some(c) = s.containers.get_mut(&name) {
                        c.logs.push_str(&text);
                    }
                });
                if send(text).await.is_err() {
                    return;
                }
            }
            if pace.then_hang {
                // Silent until stopped or removed, when its output ends as Docker's does.
                while running_now(&world, &addr, &name) {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                return;
            }
            let out = {
                let mut hosts = world.hosts.lock().expect("world lock");
                finish(&world, &addr, &mut hosts, &name)
            };
            if !out.is_empty() {
                let _ = send(out).await;
            }
        });
        Ok(Box::pin(futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) })))
    }

    async fn lock_node(&self, _agent: &str, _holder: &str) -> HostResult<()> {
        // The fake world has a single workstation: there is nobody to exclude.
        Ok(())
    }

    async fn stop_container(&self, name: &str) -> HostResult<()> {
        self.with("stop", |s| {
            if let Some(c) = s.containers.get_mut(name) {
                c.running = false;
            }
            Ok(())
        })
        .await
    }

    async fn remove_container(&self, name: &str) -> HostResult<bool> {
        self.with("remove container", |s| {
            self.docker(s)?;
            Ok(s.containers.remove(name).is_some())
        })
        .await
    }

    async fn read_file(&self, path: &str) -> HostResult<Option<Vec<u8>>> {
        self.with("read", |s| Ok(s.files.get(path).cloned())).await
    }

    async fn write_file(&self, path: &str, data: &[u8], _mode: u32) -> HostResult<()> {
        self.with("write", |s| {
            s.files.insert(path.to_string(), data.to_vec());
            Ok(())
        })
        .await
    }

    async fn remove_file(&self, path: &str) -> HostResult<bool> {
        self.with("remove file", |s| Ok(s.files.remove(path).is_some())).await
    }

    async fn list_dir(&self, path: &str) -> HostResult<Vec<DirEntry>> {
        let prefix = format!("{}/", path.trim_end_matches('/'));
        self.with("list", |s| {
            Ok(s.files
                .iter()
                .filter_map(|(k, v)| {
                    let rest = k.strip_prefix(&prefix)?;
                    (!rest.contains('/')).then(|| DirEntry {
                        name: rest.to_string(),
                        size: v.len() as u64,
                        modified: 0,
                    })
                })
                .collect())
        })
        .await
    }

    async fn list_dirs(&self, path: &str) -> HostResult<Vec<String>> {
        let prefix = format!("{}/", path.trim_end_matches('/'));
        self.with("list", |s| {
            let mut dirs: Vec<String> = s
                .files
                .keys()
                .filter_map(|k| {
                    let rest = k.strip_prefix(&prefix)?;
                    rest.split_once('/').map(|(d, _)| d.to_string())
                })
                .collect();
            dirs.dedup();
            Ok(dirs)
        })
        .await
    }

    async fn remove_tree(&self, path: &str) -> HostResult<bool> {
        let prefix = format!("{}/", path.trim_end_matches('/'));
        self.with("remove folder", |s| {
            let before = s.files.len();
            s.files.retain(|k, _| !k.starts_with(&prefix));
            Ok(s.files.len() != before)
        })
        .await
    }

    async fn open_read(&self, path: &str) -> HostResult<ByteStream> {
        let data = self
            .with("open", |s| {
                s.files.get(path).cloned().ok_or_else(|| HostError::Io {
                    host: self.addr.clone(),
                    op: "read".into(),
                    reason: format!("{path}: no such file"),
                    transient: false,
                })
            })
            .await?;
        Ok(Box::new(std::io::Cursor::new(data)))
    }

    async fn read_range(&self, path: &str, offset: u64, len: u64) -> HostResult<Vec<u8>> {
        self.with("read range", |s| {
            let data = s.files.get(path).ok_or_else(|| HostError::Io {
                host: self.addr.clone(),
                op: "read".into(),
                reason: format!("{path}: no such file"),
                transient: false,
            })?;
            let start = (offset as usize).min(data.len());
            let end = start.saturating_add(len as usize).min(data.len());
            Ok(data[start..end].to_vec())
        })
        .await
    }

    async fn write_stream(&self, path: &str, mut data: ByteStream, _mode: u32) -> HostResult<u64> {
        let mut buf = Vec::new();
        data.read_to_end(&mut buf).await.map_err(|e| HostError::Io {
            host: self.addr.clone(),
            op: "write".into(),
            reason: e.to_string(),
            transient: true,
        })?;
        let n = buf.len() as u64;
        self.with("write", |s| {
            s.files.insert(path.to_string(), buf);
            Ok(n)
        })
        .await
    }
}
