//! A restore drill, run on one etcd host inside the cluster's etcd image: the snapshot is
//! restored with the image's own tool into scratch space inside this container, a
//! throwaway etcd serves it, and what it holds is read and counted. The etcd process and
//! the scratch data end with the container.
//!
//! The throwaway etcd holds every Kubernetes Secret of the snapshot with no TLS and no
//! authentication, so it must be reachable by the drill alone. It listens on no port at
//! all: its client and peer URLs are unix sockets in the scratch folder (mode 0700, inside
//! this container's own filesystem). That holds wherever the drill runs: the one-time drill
//! has a network namespace of its own, but the recurring service runs with the host's
//! network (as RKE runs it), where a loopback port would be open to every local user and
//! every `hostNetwork` pod of the node. etcd takes a unix URL as `unix://<host>:<port>`
//! and binds the socket at that name relative to its working directory (etcd's own
//! integration tests run whole clusters this way, in 3.4 and 3.5 alike), so the server and
//! every `etcdctl` here run in the scratch folder.

use super::report::SnapshotReport;
use super::{AgentError, Tls};
use crate::model::SnapshotFormat;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::io::AsyncBufReadExt;
use tokio::process::Command;

/// Where the drill works, inside its own container (gone with it).
const SCRATCH: &str = "/tmp/rkectl-drill";
/// The throwaway etcd's sockets, as etcd's unix URLs; the names are files in the scratch folder.
const CLIENT_URL: &str = "unix://rkectl-drill-client:0";
const PEER_URL: &str = "unix://rkectl-drill-peer:0";
/// How long the throwaway etcd may take to answer.
const READY_WAIT: Duration = Duration::from_secs(120);

/// The newest write in the restored data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewestWrite {
    pub key: String,
    pub mod_revision: i64,
}

/// Keys counted in one etcd: in all, and per Kubernetes resource (`/registry/<resource>/`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyCounts {
    pub revision: i64,
    pub keys: u64,
    pub by_resource: BTreeMap<String, u64>,
}

/// What a drill found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DrillReport {
    /// The snapshot file as it was drilled: name, format, size, BLAKE3.
    pub snapshot: SnapshotReport,
    /// etcd's hash of its key space at the restored revision (`endpoint hashkv`).
    pub hash: u64,
    pub restored: KeyCounts,
    pub newest: Option<NewestWrite>,
    /// Wall time of etcd's own `snapshot restore`, in milliseconds.
    pub restore_millis: u64,
    /// Wall time of the whole drill, in milliseconds.
    pub total_millis: u64,
    /// The same counts read from the running member (read-only), when asked.
    pub live: Option<KeyCounts>,
}

/// What to drill.
pub struct DrillRequest<'a> {
    pub file: &'a Path,
    /// The running member, to compare with (`--compare-live`).
    pub live_endpoint: Option<&'a str>,
    pub tls: &'a Tls,
}

/// Kills the throwaway etcd however the drill ends.
struct Throwaway(tokio::process::Child);

impl Drop for Throwaway {
    fn drop(&mut self) {
        let _ = self.0.start_kill();
    }
}

fn bin(name: &str) -> PathBuf {
    PathBuf::from("/usr/local/bin").join(name)
}

async fn run(mut c: Command, what: &str) -> Result<String, AgentError> {
    c.stdin(Stdio::null()).env("ETCDCTL_API", "3");
    let out = c.output().await.map_err(|e| AgentError::new(format!("cannot run {what}: {e}")))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let last = err.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("no output");
        return Err(AgentError::new(format!("{what} failed ({}): {}", out.status, last.trim())));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The resource a Kubernetes key belongs to: `/registry/pods/ns/x` → `pods`,
/// `/registry/apps.example.com/widgets/ns/x` (an API group) → `apps.example.com/widgets`;
/// keys outside `/registry/` → `(not kubernetes)`.
pub fn resource_of(key: &str) -> String {
    let Some(rest) = key.strip_prefix("/registry/") else { return "(not kubernetes)".into() };
    let mut parts = rest.split('/');
    let first = parts.next().unwrap_or_default();
    match parts.next() {
        Some(second) if first.contains('.') && !second.is_empty() => format!("{first}/{second}"),
        _ => first.to_string(),
    }
}

/// Counts every key of the etcd behind `etcdctl` (a command with its endpoint and TLS
/// flags), streaming the listing rather than holding it.
async fn count(etcdctl: impl Fn() -> Command) -> Result<KeyCounts, AgentError> {
    let mut c = etcdctl();
    c.args(["get", "", "--prefix", "--keys-only"]).stdin(Stdio::null()).stdout(Stdio::piped()).env("ETCDCTL_API", "3");
    let mut child = c.spawn().map_err(|e| AgentError::new(format!("cannot run etcdctl: {e}")))?;
    let mut lines = tokio::io::BufReader::new(child.stdout.take().expect("piped")).lines();
    let mut counts = KeyCounts::default();
    while let Some(line) = lines.next_line().await? {
        // etcdctl prints each key followed by an empty line (the value it leaves out).
        if line.is_empty() {
            continue;
        }
        counts.keys += 1;
        *counts.by_resource.entry(resource_of(&line)).or_default() += 1;
    }
    let status = child.wait().await?;
    if !status.success() {
        return Err(AgentError::new(format!("etcdctl get --keys-only failed ({status})")));
    }
    let mut s = etcdctl();
    s.args(["endpoint", "status", "-w", "json"]);
    let status: serde_json::Value = serde_json::from_str(&run(s, "etcdctl endpoint status").await?)
        .map_err(|e| AgentError::new(format!("etcdctl endpoint status: {e}")))?;
    counts.revision = status[0]["Status"]["header"]["revision"].as_i64().unwrap_or_default();
    Ok(counts)
}

/// Runs the drill (see the module's documentation); the scratch data is removed on every
/// path, and the container that runs it is removed by the workstation as well.
pub async fn drill(req: DrillRequest<'_>) -> Result<DrillReport, AgentError> {
    let scratch = Path::new(SCRATCH);
    let _ = std::fs::remove_dir_all(scratch);
    make_private_dir(scratch)?;
    let r = drill_in(&req, scratch).await;
    let _ = std::fs::remove_dir_all(scratch);
    r
}

async fn drill_in(req: &DrillRequest<'_>, scratch: &Path) -> Result<DrillReport, AgentError> {
    let started = Instant::now();
    let snapshot = super::verify::checksum(req.file).await?;
    let db = database_of(req.file, snapshot.format, scratch).await?;
    let data = scratch.join("data");
    let restore_millis = restore_snapshot(&db, &data, PEER_URL).await?;

    let _etcd = start_etcd(scratch, &data)?;
    let local = || {
        let mut c = Command::new(bin("etcdctl"));
        c.current_dir(scratch).arg(format!("--endpoints={CLIENT_URL}")).arg("--command-timeout=60s");
        c
    };
    wait_until_ready(local, scratch).await?;
    let restored = count(local).await?;
    let hash = hash_kv(local).await?;
    let newest = newest_write(local).await?;
    let live = match req.live_endpoint {
        Some(endpoint) => Some(count(|| super::etcdctl::command(endpoint, req.tls)).await?),
        None => None,
    };
    Ok(DrillReport {
        snapshot,
        hash,
        restored,
        newest,
        restore_millis,
        total_millis: started.elapsed().as_millis() as u64,
        live,
    })
}

/// The database to restore: the file itself, or the one unpacked from an archive into
/// `scratch` (refused when etcd's check fails).
async fn database_of(file: &Path, format: SnapshotFormat, scratch: &Path) -> Result<PathBuf, AgentError> {
    let db = if format == SnapshotFormat::Zip {
        let out = scratch.join("snapshot.db");
        let r = super::verify::unpack(file, &out).await?;
        if !r.etcd_ok {
            return Err(AgentError::new(format!(
                "the archive's database fails etcd's check: {}",
                r.problem.unwrap_or_default()
            )));
        }
        out
    } else {
        file.to_path_buf()
    };
    Ok(db)
}

/// Restores `db` into `data` as a one-member cluster with the image's own tool; returns
/// how long the restore took, in milliseconds.
async fn restore_snapshot(db: &Path, data: &Path, peer_url: &str) -> Result<u64, AgentError> {
    let tool = if bin("etcdutl").exists() { "etcdutl" } else { "etcdctl" };
    let mut restore = Command::new(bin(tool));
    restore.arg("snapshot").arg("restore").arg(db).arg(format!("--data-dir={}", data.display()));
    restore.args(["--name=drill", &format!("--initial-cluster=drill={peer_url}")]);
    restore.arg(format!("--initial-advertise-peer-urls={peer_url}"));
    let t = Instant::now();
    run(restore, &format!("{tool} snapshot restore")).await?;
    Ok(t.elapsed().as_millis() as u64)
}

/// The scratch folder, readable by this container's root alone (the sockets live in it).
fn make_private_dir(dir: &Path) -> Result<(), AgentError> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    // The mode given at creation is narrowed by the umask only; an older folder is reset.
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    Ok(())
}

/// The arguments that make the throwaway etcd listen on its unix sockets and nowhere else.
fn listen_args() -> [String; 5] {
    [
        format!("--listen-client-urls={CLIENT_URL}"),
        format!("--advertise-client-urls={CLIENT_URL}"),
        format!("--listen-peer-urls={PEER_URL}"),
        format!("--initial-advertise-peer-urls={PEER_URL}"),
        format!("--initial-cluster=drill={PEER_URL}"),
    ]
}

/// Starts the throwaway etcd on the restored `data`, in `scratch` (where its sockets are
/// bound) with its log there.
fn start_etcd(scratch: &Path, data: &Path) -> Result<Throwaway, AgentError> {
    let log = std::fs::File::create(scratch.join("etcd.log"))?;
    let mut etcd = Command::new(bin("etcd"));
    etcd.current_dir(scratch)
        .args(["--name=drill", &format!("--data-dir={}", data.display())])
        .args(listen_args())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log);
    Ok(Throwaway(etcd.spawn().map_err(|e| AgentError::new(format!("cannot start etcd: {e}")))?))
}

/// Waits until the throwaway etcd answers, up to [`READY_WAIT`]; the error quotes the
/// last line of its log.
async fn wait_until_ready(local: impl Fn() -> Command, scratch: &Path) -> Result<(), AgentError> {
    let deadline = Instant::now() + READY_WAIT;
    loop {
        let mut h = local();
        h.args(["endpoint", "health"]);
        if run(h, "etcdctl endpoint health").await.is_ok() {
            break;
        }
        if Instant::now() > deadline {
            let log = std::fs::read_to_string(scratch.join("etcd.log")).unwrap_or_default();
            let last = log.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("no output").to_string();
            return Err(AgentError::new(format!(
                "the restored etcd did not answer within {}s: {last}",
                READY_WAIT.as_secs()
            )));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(())
}

/// etcd's hash of the key space behind `local` (`endpoint hashkv`).
async fn hash_kv(local: impl Fn() -> Command) -> Result<u64, AgentError> {
    let mut h = local();
    h.args(["endpoint", "hashkv", "-w", "json"]);
    let hashkv: serde_json::Value = serde_json::from_str(&run(h, "etcdctl endpoint hashkv").await?)
        .map_err(|e| AgentError::new(format!("etcdctl endpoint hashkv: {e}")))?;
    Ok(hashkv[0]["HashKV"]["hash"].as_u64().unwrap_or_default())
}

/// The most recently modified key behind `local`, if there is any.
async fn newest_write(local: impl Fn() -> Command) -> Result<Option<NewestWrite>, AgentError> {
    let mut n = local();
    n.args(["get", "", "--prefix", "--keys-only", "--sort-by=MODIFY", "--order=DESCEND", "--limit=1", "-w", "json"]);
    let newest: serde_json::Value = serde_json::from_str(&run(n, "etcdctl get (newest)").await?)
        .map_err(|e| AgentError::new(format!("etcdctl get (newest): {e}")))?;
    Ok(newest["kvs"].get(0).and_then(|kv| {
        use base64::Engine;
        let key = base64::engine::general_purpose::STANDARD.decode(kv["key"].as_str()?).ok()?;
        Some(NewestWrite {
            key: String::from_utf8_lossy(&key).into_owned(),
            mod_revision: kv["mod_revision"].as_i64()?,
        })
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_counted_by_kubernetes_resource_and_api_group() {
        assert_eq!(resource_of("/registry/pods/default/web-1"), "pods");
        assert_eq!(resource_of("/registry/namespaces/default"), "namespaces");
        assert_eq!(resource_of("/registry/cert-manager.io/certificates/ns/c"), "cert-manager.io/certificates");
        assert_eq!(resource_of("/registry/ranges/serviceips"), "ranges");
        assert_eq!(resource_of("/app/config"), "(not kubernetes)");
    }

    #[test]
    fn the_throwaway_etcd_listens_on_unix_sockets_only() {
        // Every URL etcd could listen on or advertise is a unix socket: no TCP port at all,
        // neither on the host's network (the recurring service) nor the container's.
        for arg in listen_args() {
            let url = arg.rsplit('=').next().unwrap();
            let host = url.strip_prefix("unix://").unwrap_or_else(|| panic!("not a unix socket: {arg}"));
            assert!(!host.contains('/'), "a name in the scratch folder, not a path: {arg}");
        }
    }

    #[test]
    fn the_scratch_folder_is_private_even_when_it_existed() {
        use std::os::unix::fs::PermissionsExt;
        let t = tempfile::tempdir().unwrap();
        let d = t.path().join("scratch");
        std::fs::create_dir(&d).unwrap();
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
        make_private_dir(&d).unwrap();
        assert_eq!(std::fs::metadata(&d).unwrap().permissions().mode() & 0o777, 0o700);
    }
}
