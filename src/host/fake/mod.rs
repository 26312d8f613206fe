//! An in-memory host for engine tests: containers, files and images in a `BTreeMap`.
//!
//! A fake host is Docker and files only (`host.rs`). What a helper container does when it
//! ends is the world's [`ContainerBehaviour`], which a test may replace: by default
//! [`AgentSim`] plays the helpers rkectl runs (cleaner, restore, checksum checker, snapshot,
//! health check…) by their container names, on the host's files, just enough for a test to
//! tell "restored from snapshot X" from "still the old data". The world can also be told to
//! fail an operation, be unreachable, or "crash" at the N-th operation of a whole world: the
//! operation then never completes, as if the rkectl process had been killed mid-step.

mod agent_sim;
mod behaviour;
mod host;

pub use agent_sim::{AgentSim, archive};
pub use behaviour::ContainerBehaviour;
pub use host::FakeHost;

use super::{Connector, Host, HostError, HostResult};
use crate::config::{HostAddr, Node};
use crate::etcd::paths;
use async_trait::async_trait;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;

/// A container on a fake host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeContainer {
    /// The image it was created from.
    pub spec_image: String,
    /// Its command, without the entrypoint: what the behaviour reads.
    pub cmd: Vec<String>,
    /// Entrypoint then command, as Docker reports a container's.
    pub args: Vec<String>,
    /// Its environment, `NAME=value`.
    pub env: Vec<String>,
    /// Its bind mounts, `host:container[:options]`.
    pub binds: Vec<String>,
    /// A service (restarted always): it runs until removed instead of exiting.
    pub service: bool,
    /// Its Docker labels.
    pub labels: BTreeMap<String, String>,
    /// Started and not yet ended or stopped.
    pub running: bool,
    /// How it ended; none while it has not.
    pub exit_code: Option<i64>,
    /// Everything it printed so far.
    pub logs: String,
    /// Its Docker id, new for each container created.
    pub id: String,
}

/// The state of one fake host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FakeHostState {
    /// It answers connections; when not, every operation on it fails as unreachable.
    pub reachable: bool,
    /// Its Docker daemon answers.
    pub docker_up: bool,
    /// Images pulled on it.
    pub images: BTreeSet<String>,
    /// Its containers by name.
    pub containers: BTreeMap<String, FakeContainer>,
    /// Its files: absolute path → bytes (folders are implied by the paths).
    pub files: BTreeMap<String, Vec<u8>>,
    /// When a file was last written (seconds since the epoch); a file not named here is
    /// as old as the epoch.
    pub modified: BTreeMap<String, i64>,
    /// The invocations whose claim is held on it, by id: the binary each runs, and by how
    /// many of its connections.
    pub claims: BTreeMap<String, (String, usize)>,
    /// The invocation holding its node lock.
    pub node_lock: Option<String>,
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
            // Each run is another invocation.
            c.labels.remove(crate::host::OWNER_LABEL);
        }
        s.modified.clear();
        s.claims.clear();
        s.node_lock = None;
        s
    }
}

/// Every fake host, shared by the connector and the test.
pub struct FakeWorld {
    /// Each host's state by address.
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
    /// What a helper does when it ends.
    behaviour: Mutex<Arc<dyn ContainerBehaviour>>,
}

impl Default for FakeWorld {
    fn default() -> Self {
        FakeWorld {
            hosts: Mutex::default(),
            s3: Mutex::default(),
            ops: AtomicUsize::default(),
            crash_at: Mutex::default(),
            crashed: Notify::default(),
            fail_container: Mutex::default(),
            op_delay: Mutex::default(),
            registry_logins: Mutex::default(),
            pulls: Mutex::default(),
            paces: Mutex::default(),
            log_bytes_read: AtomicU64::default(),
            next_id: AtomicUsize::default(),
            behaviour: Mutex::new(Arc::new(AgentSim)),
        }
    }
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

    /// Makes every helper that ends from now on do what `behaviour` says, instead of what
    /// the world did so far (the agent simulator unless replaced before).
    pub fn set_behaviour(&self, behaviour: Arc<dyn ContainerBehaviour>) {
        *self.behaviour.lock().expect("behaviour lock") = behaviour;
    }

    /// What a helper does when it ends, now: to wrap in a behaviour that changes a part.
    pub fn behaviour(&self) -> Arc<dyn ContainerBehaviour> {
        self.behaviour.lock().expect("behaviour lock").clone()
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
        // Not a copy of the host's state: it holds rkectl's helper binary (the test program,
        // tens of MB), and every connect would copy it.
        let reachable = self.0.hosts.lock().expect("world lock").get(&node.address).is_some_and(|s| s.reachable);
        if !reachable {
            return Err(HostError::Unreachable {
                host: node.address.clone(),
                reason: "connection refused (fake)".into(),
                transient: false,
            });
        }
        Ok(Arc::new(FakeHost::new(node.address.clone(), self.0.clone())))
    }
}
