//! One fake host's Docker and files: containers, images, logs, pulls, and a map of files.

use super::{FakeContainer, FakeHostState, FakeWorld};
use crate::config::HostAddr;
use crate::config::registries::{PrivateRegistry, RegistryAuth, registry_key};
use crate::host::{
    ByteStream, ContainerInfo, ContainerSpec, DirEntry, DockerInfo, Host, HostError, HostResult, ListedContainer,
    LogStream, Owner, RestartPolicy,
};
use async_trait::async_trait;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::io::AsyncReadExt;

/// One fake host.
pub struct FakeHost {
    addr: HostAddr,
    world: Arc<FakeWorld>,
    /// The invocation whose claim this connection holds: it ends with the connection.
    claimed: std::sync::Mutex<Option<String>>,
}

impl FakeHost {
    /// The host at `addr` of `world`.
    pub(super) fn new(addr: HostAddr, world: Arc<FakeWorld>) -> Self {
        FakeHost { addr, world, claimed: std::sync::Mutex::new(None) }
    }

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

/// Ends a helper: an injected failure, or its work as the world's behaviour plays it;
/// returns what it printed at the end.
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
    let (code, logs) = if forced {
        (1, "injected failure (fake)".to_string())
    } else {
        world.behaviour().run(world, addr, hosts, name, &cmd)
    };
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
                    service: spec.restart == RestartPolicy::Always,
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

    async fn claim(&self, agent: &str, owner: &Owner) -> HostResult<()> {
        let id = owner.id.to_string();
        self.with("claim", |s| {
            if owner.holds_node_lock() {
                match &s.node_lock {
                    // The same invocation dialing again (after a dropped link) is itself.
                    Some(other) if *other != id => {
                        return Err(HostError::Locked {
                            host: self.addr.clone(),
                            holder: format!("invocation {other} (fake)"),
                        });
                    }
                    _ => s.node_lock = Some(id.clone()),
                }
            }
            s.claims.entry(id.clone()).or_insert_with(|| (agent.to_string(), 0)).1 += 1;
            Ok(())
        })
        .await?;
        *self.claimed.lock().expect("claim lock") = Some(id);
        Ok(())
    }

    async fn live_owners(&self, _agent: &str) -> HostResult<crate::agent::node_lock::LiveOwners> {
        use crate::agent::node_lock::{LiveOwners, OwnerRecord};
        self.with("owners", |s| {
            let owners = s
                .claims
                .iter()
                .map(|(id, (agent, _))| (id.clone(), OwnerRecord { agent: agent.clone(), pid: 0 }))
                .collect();
            Ok(LiveOwners { owners })
        })
        .await
    }

    async fn list_containers(&self, label: &str) -> HostResult<Vec<ListedContainer>> {
        self.with("list containers", |s| {
            self.docker(s)?;
            Ok(s.containers
                .iter()
                .filter(|(_, c)| c.labels.contains_key(label))
                .map(|(name, c)| ListedContainer { name: name.clone(), running: c.running, labels: c.labels.clone() })
                .collect())
        })
        .await
    }

    async fn sha256_file(&self, path: &str) -> HostResult<Option<String>> {
        self.with("hash file", |s| Ok(s.files.get(path).map(|d| crate::agent_binary::sha256_hex(d)))).await
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
        self.with("remove file", |s| {
            s.modified.remove(path);
            Ok(s.files.remove(path).is_some())
        })
        .await
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
                        modified: s.modified.get(k).copied().unwrap_or(0),
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

impl Drop for FakeHost {
    fn drop(&mut self) {
        // A connection that goes takes its claim (and node lock) with it, as a session does.
        let Some(id) = self.claimed.lock().map(|mut c| c.take()).unwrap_or(None) else { return };
        if let Ok(mut hosts) = self.world.hosts.lock()
            && let Some(s) = hosts.get_mut(&self.addr)
        {
            // Another connection of the same invocation may still hold it.
            let last = match s.claims.get_mut(&id) {
                Some((_, n)) if *n > 1 => {
                    *n -= 1;
                    false
                }
                _ => true,
            };
            if last {
                s.claims.remove(&id);
                if s.node_lock.as_deref() == Some(id.as_str()) {
                    s.node_lock = None;
                }
            }
        }
    }
}
