//! Container specs for the etcd member and every helper, built from the cluster.
//!
//! Helpers that need logic run the tools image's `rkectl agent …` (see [`crate::agent`]);
//! helpers that need etcd's own tools run the etcd image's binary directly through the
//! entrypoint, never through a shell, because recent etcd images have none.

use super::member::tls_files;
use super::{CLUSTER_TOKEN, client_url, member_name, names, paths, peer_url};
use crate::agent::{AgentCommand, S3Args, Tls};
use crate::config::{Cluster, Node, S3Settings};
use crate::host::{ContainerSpec, RestartPolicy};
use crate::model::observed::{ContainerFacts, EnvValue, MadeBy};
use crate::model::{RollingSettings, SnapshotName};
use std::collections::BTreeMap;

/// Label holding the hash of the spec a service container was made from.
pub const SPEC_HASH_LABEL: &str = "io.rkectl.spec-hash";
/// Label marking every container rkectl creates.
pub const MANAGED_LABEL: &str = "io.rkectl.managed";

fn base(name: &str, image: &str) -> ContainerSpec {
    let mut spec = ContainerSpec::new(name, image);
    spec.labels.insert(MANAGED_LABEL.into(), "true".into());
    spec
}

/// A helper that runs rkectl's agent: the cluster's etcd image (its `etcdctl` included),
/// with rkectl's binary mounted read-only as the entrypoint, running `cmd` (rendered from
/// the type the agent parses). Callers add their binds.
fn agent(name: &str, cluster: &Cluster, cmd: AgentCommand) -> ContainerSpec {
    let mut spec = base(name, &cluster.etcd.image);
    spec.entrypoint = Some(vec![crate::agent_binary::remote_path(), "agent".into()]);
    spec.cmd = cmd.to_args();
    spec.binds = vec![agent_bind()];
    spec
}

/// The bind of rkectl's binary folder, read-only.
fn agent_bind() -> String {
    let dir = crate::agent_binary::remote_dir();
    format!("{dir}:{dir}:ro")
}

/// The member's own certificate files, for the agent.
fn tls(node: &Node) -> Tls {
    let t = tls_files(node);
    Tls { cacert: t.ca.into(), cert: t.cert.into(), key: t.key.into() }
}

/// Where an S3 helper goes (its keys go in a file, see [`s3_env`]).
fn s3_args(s3: &S3Settings) -> S3Args {
    S3Args {
        s3_endpoint: Some(s3.endpoint.clone()),
        bucket: Some(s3.bucket.clone()),
        region: s3.region.clone(),
        folder: s3.folder.clone(),
    }
}

/// No S3.
fn no_s3() -> S3Args {
    S3Args { s3_endpoint: None, bucket: None, region: None, folder: None }
}

/// The S3 keys a helper uses, as a file only root on the host can read; no keys (the node's
/// own IAM role, as rke-tools uses then) means no file.
fn s3_env(spec: &mut ContainerSpec, s3: &S3Settings) {
    if let Some(content) = crate::s3::credentials_file(s3) {
        spec.secret_files.push(crate::host::SecretFile {
            host_path: paths::s3_credentials(&spec.name),
            container_path: crate::s3::CREDENTIALS_FILE_IN_CONTAINER.into(),
            content,
        });
        spec.env.push(format!("{}={}", crate::s3::CREDENTIALS_FILE_ENV, crate::s3::CREDENTIALS_FILE_IN_CONTAINER));
    }
    if let Some(ca) = &s3.custom_ca {
        // A CA is public; it goes in the environment so no file has to be placed first.
        spec.env.push(format!("RKECTL_S3_CA_PEM={ca}"));
    }
}

/// The helper on `source` that serves its copy of a snapshot (`file`) once to `peer`, over
/// mutual TLS with the member certificates, on the cluster network.
pub fn serve_snapshot(cluster: &Cluster, source: &Node, peer: &Node, file: &str) -> ContainerSpec {
    let ip = |n: &Node| n.internal_address().parse().unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED));
    let cmd = AgentCommand::ServeSnapshot {
        file: file.into(),
        listen: ip(source),
        peer: ip(peer),
        wait_secs: crate::agent::SERVE_WAIT_SECS,
        tls: tls(source),
    };
    let mut spec = agent(&names::serve_snapshot(&peer.address), cluster, cmd);
    spec.binds.extend([format!("{0}:{0}:ro", parent(file)), format!("{0}:{0}:ro", paths::CERT_DIR)]);
    spec.network_host = true;
    spec
}

/// The helper on `dest` that fetches what [`serve_snapshot`] on `source` serves on `port`
/// into `out`, expecting the bytes of `expect` (the plan's pin).
pub fn fetch_snapshot(
    cluster: &Cluster,
    dest: &Node,
    source: &Node,
    port: u16,
    out: &str,
    expect: &crate::model::SnapshotFacts,
) -> ContainerSpec {
    let ip = source.internal_address().parse().unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED));
    let cmd = AgentCommand::FetchSnapshot {
        from: std::net::SocketAddr::new(ip, port),
        out: out.into(),
        size: expect.size,
        checksum: expect.checksum.0.clone(),
        tls: tls(dest),
    };
    let mut spec = agent(names::FETCH_SNAPSHOT, cluster, cmd);
    spec.binds.extend([format!("{0}:{0}:z", parent(out)), format!("{0}:{0}:ro", paths::CERT_DIR)]);
    spec.network_host = true;
    spec
}

fn parent(path: &str) -> &str {
    path.rsplit_once('/').map(|(d, _)| d).filter(|d| !d.is_empty()).unwrap_or("/")
}

/// `etcd-snapshot-drill`: restores `file` in scratch space inside the container and reads
/// it from a throwaway etcd that listens on unix sockets in that space only (no port of the
/// member's is touched, nothing else on the host reaches it); with `compare_live`, also
/// counts the keys of the member on this host (read-only, with its certificate).
pub fn snapshot_drill(cluster: &Cluster, node: &Node, file: &str, compare_live: bool) -> ContainerSpec {
    let cmd = AgentCommand::SnapshotDrill {
        file: file.into(),
        live_endpoint: compare_live.then(|| client_url(node)),
        tls: tls(node),
    };
    let mut spec = agent(names::SNAPSHOT_DRILL, cluster, cmd);
    spec.binds.extend([format!("{0}:{0}:ro", paths::SNAPSHOT_DIR), format!("{0}:{0}:ro", paths::CERT_DIR)]);
    spec
}

/// `kube-cleaner`: removes the etcd data (the container itself is removed through Docker).
pub fn cleaner(cluster: &Cluster) -> ContainerSpec {
    let mut spec =
        agent(names::CLEANER, cluster, AgentCommand::Clean { data_dir: paths::DATA_DIR_IN_CONTAINER.into() });
    spec.binds.extend([format!("{}:{}:z", paths::DATA_DIR, paths::DATA_DIR_IN_CONTAINER)]);
    spec
}

/// Which etcd binary restores snapshots: `etcdutl` (3.5+) or `etcdctl` (3.4 and older).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestoreTool {
    Etcdutl,
    Etcdctl,
}

/// The staging folder (inside the data folder) a restore writes to before it is moved in.
pub const RESTORE_STAGING: &str = "restore-staging";

/// `etcd-restore`: the etcd image's own restore, run directly, into a staging folder.
pub fn restore(
    cluster: &Cluster,
    node: &Node,
    snapshot_file: &str,
    initial_cluster: &str,
    tool: RestoreTool,
) -> ContainerSpec {
    let mut spec = base(names::RESTORE, &cluster.etcd.image);
    let bin = match tool {
        RestoreTool::Etcdutl => "/usr/local/bin/etcdutl",
        RestoreTool::Etcdctl => "/usr/local/bin/etcdctl",
    };
    spec.entrypoint = Some(vec![bin.into()]);
    spec.cmd = vec![
        "snapshot".into(),
        "restore".into(),
        snapshot_file.to_string(),
        format!("--data-dir={}/{RESTORE_STAGING}", paths::DATA_DIR_IN_CONTAINER),
        format!("--name={}", member_name(node)),
        format!("--initial-cluster={initial_cluster}"),
        format!("--initial-cluster-token={CLUSTER_TOKEN}"),
        format!("--initial-advertise-peer-urls={}", peer_url(node)),
    ];
    spec.env = vec!["ETCDCTL_API=3".into()];
    spec.binds = vec![
        format!("{0}:{0}:ro", paths::SNAPSHOT_DIR),
        format!("{}:{}:z", paths::DATA_DIR, paths::DATA_DIR_IN_CONTAINER),
    ];
    spec
}

/// `etcd-restore-finish`: moves the staged data into place and clears the staging folder.
pub fn restore_finish(cluster: &Cluster) -> ContainerSpec {
    let cmd =
        AgentCommand::RestoreFinish { data_dir: paths::DATA_DIR_IN_CONTAINER.into(), staging: RESTORE_STAGING.into() };
    let mut spec = agent(names::RESTORE_FINISH, cluster, cmd);
    spec.binds.extend([format!("{}:{}:z", paths::DATA_DIR, paths::DATA_DIR_IN_CONTAINER)]);
    spec
}

/// `rke-log-linker`: links a container's log into RKE's log folder.
pub fn log_linker(cluster: &Cluster, container: &str, container_id: &str, docker_root: &str) -> ContainerSpec {
    let cmd = AgentCommand::LinkLogs {
        container: container.into(),
        id: container_id.into(),
        docker_root: docker_root.into(),
        log_dir: paths::LOG_DIR.into(),
    };
    let mut spec = agent(names::LOG_LINKER, cluster, cmd);
    spec.binds.extend([format!("{0}:{0}:z", paths::LOG_DIR)]);
    spec
}

/// `etcd-checksum-checker`: size, BLAKE3 and etcd's checks of snapshot files (file names
/// in the snapshot folder, or paths in it).
pub fn checksum_checker(cluster: &Cluster, files: &[String]) -> ContainerSpec {
    checker(cluster, files, false)
}

/// `etcd-checksum-checker` computing only sizes and BLAKE3 (listings, pinned copies).
pub fn checksum_only(cluster: &Cluster, files: &[String]) -> ContainerSpec {
    checker(cluster, files, true)
}

fn checker(cluster: &Cluster, files: &[String], quick: bool) -> ContainerSpec {
    let paths = files
        .iter()
        .map(|f| if f.starts_with('/') { f.into() } else { format!("{}/{f}", paths::SNAPSHOT_DIR).into() })
        .collect();
    let mut spec =
        agent(names::CHECKSUM_CHECKER, cluster, AgentCommand::SnapshotVerify { paths, checksum_only: quick });
    spec.binds.extend([format!("{0}:{0}:ro", paths::SNAPSHOT_DIR)]);
    spec
}

/// `etcd-snapshot-once`: takes a snapshot from the node's member, optionally streaming it to S3.
pub fn snapshot_once(
    cluster: &Cluster,
    node: &Node,
    snapshot: &SnapshotName,
    upload: Option<&S3Settings>,
    state_file: Option<&str>,
) -> ContainerSpec {
    let cmd = AgentCommand::SnapshotSave {
        endpoint: client_url(node),
        dir: paths::SNAPSHOT_DIR.into(),
        name: snapshot.to_string(),
        state_file: state_file.map(Into::into),
        copied_to_every_host: true,
        stall_limit: crate::agent::stall::StallLimit::DEFAULT,
        tls: tls(node),
        s3: upload.map(s3_args).unwrap_or_else(no_s3),
    };
    let mut spec = agent(names::SNAPSHOT_ONCE, cluster, cmd);
    if let Some(s3) = upload {
        s3_env(&mut spec, s3);
    }
    spec.binds.extend([format!("{0}:{0}:z", paths::SNAPSHOT_DIR), format!("{0}:{0}:ro", paths::CERT_DIR)]);
    spec.network_host = true;
    spec
}

/// `etcd-download-snapshot`: downloads and verifies a snapshot from S3 into a folder (the
/// snapshot folder, or the restore's staging folder), pinned to `etag` when rkectl did not
/// write the object, and to `checksum` when the plan has one.
pub fn s3_download(
    cluster: &Cluster,
    snapshot: &SnapshotName,
    format: crate::model::SnapshotFormat,
    into: &str,
    etag: Option<&str>,
    checksum: Option<&crate::model::Checksum>,
    s3: &S3Settings,
) -> ContainerSpec {
    let cmd = AgentCommand::S3Download {
        name: snapshot.to_string(),
        format: format.into(),
        into: into.into(),
        etag: etag.map(str::to_string),
        checksum: checksum.map(|c| c.0.clone()),
        s3: s3_args(s3),
    };
    let mut spec = agent(names::S3_DOWNLOAD, cluster, cmd);
    s3_env(&mut spec, s3);
    spec.binds.extend([format!("{0}:{0}:z", paths::SNAPSHOT_DIR)]);
    spec.network_host = true;
    spec
}

/// `etcd-unpack-snapshot`: unpacks an archive's database for a restore, verified.
pub fn unpack(cluster: &Cluster, archive: &str, out: &str) -> ContainerSpec {
    let mut spec =
        agent(names::UNPACK, cluster, AgentCommand::SnapshotUnpack { archive: archive.into(), out: out.into() });
    spec.binds.extend([format!("{0}:{0}:z", paths::SNAPSHOT_DIR)]);
    spec
}

/// `etcd-health-check`: health and revision of every member.
pub fn health_check(cluster: &Cluster, via: &Node, members: &[&Node]) -> ContainerSpec {
    let endpoints: Vec<String> = members.iter().map(|n| client_url(n)).collect();
    let cmd = AgentCommand::Health { endpoints: endpoints.join(","), tls: tls(via) };
    let mut spec = agent(names::HEALTH_CHECK, cluster, cmd);
    spec.binds.extend([format!("{0}:{0}:ro", paths::CERT_DIR)]);
    spec.network_host = true;
    spec
}

/// `etcd-member-change`: a member change (`member add` / `member remove`) through a
/// running member; its own name, so that it never meets a health check through that member.
pub fn member_change(cluster: &Cluster, via: &Node, change: MemberChange<'_>) -> ContainerSpec {
    let cmd = match change {
        MemberChange::Add { member, peer_url } => AgentCommand::MemberAdd {
            member: member.into(),
            peer_url: peer_url.into(),
            endpoint: client_url(via),
            tls: tls(via),
        },
        MemberChange::Remove { member } => {
            AgentCommand::MemberRemove { member: member.into(), endpoint: client_url(via), tls: tls(via) }
        }
    };
    let mut spec = agent(names::MEMBER_CHANGE, cluster, cmd);
    spec.binds.extend([format!("{0}:{0}:ro", paths::CERT_DIR)]);
    spec.network_host = true;
    spec
}

/// A change of membership.
#[derive(Debug, Clone, Copy)]
pub enum MemberChange<'a> {
    Add { member: &'a str, peer_url: &'a str },
    Remove { member: &'a str },
}

/// `etcd-snapshot-prune`: deletes snapshot files (and their records) on a node.
pub fn snapshot_delete(cluster: &Cluster, snapshots: &[SnapshotName]) -> ContainerSpec {
    let names = snapshots.iter().map(|s| s.to_string()).collect();
    let cmd = AgentCommand::SnapshotDelete { dir: paths::SNAPSHOT_DIR.into(), names };
    let mut spec = agent(names::SNAPSHOT_PRUNE, cluster, cmd);
    spec.binds.extend([format!("{0}:{0}:z", paths::SNAPSHOT_DIR)]);
    spec
}

/// The rolling snapshot settings a cluster asks for on `node`, if any.
///
/// Every etcd host keeps its own recurring snapshots, but only the first one uploads to S3:
/// the names are the reference's `<time>_etcd`, which several hosts would write at once.
pub fn rolling_settings(cluster: &Cluster, node: &Node) -> Option<RollingSettings> {
    let uploader = cluster.etcd_nodes().next().map(|n| &n.address) == Some(&node.address);
    use crate::config::RecurringSnapshots as R;
    match &cluster.etcd.recurring {
        R::Disabled => None,
        R::Legacy { creation, retention } => {
            Some(RollingSettings::Legacy { creation: creation.to_string(), retention: retention.to_string() })
        }
        R::BackupConfig { interval_hours, retention, drill, .. } => Some(RollingSettings::BackupConfig {
            drill: *drill,
            interval_hours: *interval_hours,
            retention: *retention,
            s3: cluster.etcd.s3.as_ref().filter(|_| uploader).map(|s| s.target()),
        }),
    }
}

/// `etcd-rolling-snapshots`: the recurring snapshot service (tools image, `rkectl agent`).
pub fn rolling_snapshots(cluster: &Cluster, node: &Node, settings: &RollingSettings) -> ContainerSpec {
    let uploads = match settings {
        RollingSettings::BackupConfig { s3: Some(_), .. } => cluster.etcd.s3.as_ref(),
        _ => None,
    };
    let (creation, retention, keep, drill) = match settings {
        RollingSettings::Legacy { creation, retention } => (creation.clone(), Some(retention.clone()), None, false),
        RollingSettings::BackupConfig { interval_hours, retention, drill, .. } => {
            (format!("{interval_hours}h"), None, Some(*retention), *drill)
        }
    };
    let cmd = AgentCommand::RollingSnapshots {
        endpoint: client_url(node),
        dir: paths::SNAPSHOT_DIR.into(),
        tls: tls(node),
        creation,
        retention,
        keep,
        stall_limit: crate::agent::stall::StallLimit::DEFAULT,
        s3: uploads.map(s3_args).unwrap_or_else(no_s3),
        drill,
    };
    let mut spec = agent(names::ROLLING_SNAPSHOTS, cluster, cmd);
    if let Some(s3) = uploads {
        s3_env(&mut spec, s3);
    }
    spec.binds.extend([format!("{0}:{0}:z", paths::SNAPSHOT_DIR), format!("{0}:{0}:ro", paths::CERT_DIR)]);
    spec.network_host = true;
    spec.restart = RestartPolicy::Always;
    spec.labels.insert(SPEC_HASH_LABEL.into(), spec_hash(&spec));
    spec
}

/// Why RKE's running `etcd-rolling-snapshots` does not do what cluster.yml asks, if it
/// does not. rke-tools reads its settings from its command (`--creation`, `--retention`,
/// `--s3-*`) and its S3 keys from base64 environment values.
pub fn rke_rolling_mismatch(cluster: &Cluster, running: &ContainerFacts) -> Option<String> {
    use crate::config::{GoDuration, RecurringSnapshots as R};
    let flag = |name: &str| -> Option<&str> {
        let prefix = format!("--{name}=");
        running.args.iter().find_map(|a| a.strip_prefix(prefix.as_str()))
    };
    let duration = |name: &str| flag(name).and_then(|v| GoDuration::parse(v).ok());
    let hours = |h: u64| GoDuration(std::time::Duration::from_secs(h * 3600));
    let (creation, retention) = match &cluster.etcd.recurring {
        R::Disabled => return Some("cluster.yml asks for no recurring snapshots".into()),
        R::Legacy { creation, retention } => (*creation, *retention),
        R::BackupConfig { interval_hours, retention, .. } => {
            (hours(u64::from(*interval_hours)), hours(u64::from(*interval_hours) * u64::from(*retention)))
        }
    };
    let mut why = Vec::new();
    if matches!(cluster.etcd.recurring, R::BackupConfig { drill: true, .. }) {
        why.push(
            "cluster.yml asks for a drill of each snapshot (rkectl_drill), which RKE's service does not do".into(),
        );
    }
    match duration("creation") {
        Some(c) if c == creation => {}
        c => why.push(format!("it snapshots every {}, cluster.yml says {creation}", show(c))),
    }
    match duration("retention") {
        Some(r) if r == retention => {}
        r => why.push(format!("it keeps snapshots for {}, cluster.yml says {retention}", show(r))),
    }
    let wants_s3 = matches!(cluster.etcd.recurring, R::BackupConfig { .. }) && cluster.etcd.s3.is_some();
    let uploads = flag("s3-backup").is_some_and(|v| v == "true");
    match (wants_s3, uploads, &cluster.etcd.s3) {
        (true, true, Some(s3)) => {
            let bare = |e: &str| {
                e.trim_start_matches("https://").trim_start_matches("http://").trim_end_matches('/').to_string()
            };
            if flag("s3-endpoint").map(bare) != Some(bare(&s3.endpoint)) {
                why.push(format!(
                    "it uploads to endpoint {}, cluster.yml says {}",
                    flag("s3-endpoint").unwrap_or("-"),
                    s3.endpoint
                ));
            }
            if flag("s3-bucketName") != Some(s3.bucket.as_str()) {
                why.push(format!(
                    "it uploads to bucket {}, cluster.yml says {}",
                    flag("s3-bucketName").unwrap_or("-"),
                    s3.bucket
                ));
            }
            if flag("s3-folder").unwrap_or("") != s3.folder.as_deref().unwrap_or("") {
                why.push(format!(
                    "it uploads to folder {}, cluster.yml says {}",
                    flag("s3-folder").unwrap_or("-"),
                    s3.folder.as_deref().unwrap_or("-")
                ));
            }
            for (env, key) in rke_rolling_keys(s3) {
                // Refresh compared the value with rke_rolling_env's; without a key there, the
                // service must have none either (it then uses the node's IAM role).
                let same = match running.env.get(env) {
                    Some(seen) => *seen == EnvValue::Matches,
                    None => key.is_empty(),
                };
                if !same {
                    why.push(format!("its {env} is not the key in cluster.yml"));
                }
            }
        }
        (true, false, _) => why.push("it does not upload to S3, cluster.yml asks it to".into()),
        (false, true, _) => why.push("it uploads to S3, cluster.yml does not ask it to".into()),
        _ => {}
    }
    (!why.is_empty()).then(|| why.join("; "))
}

/// The environment RKE gives its `etcd-rolling-snapshots` for cluster.yml's S3 keys
/// (rke-tools reads them base64-encoded), which refresh compares the running one's with.
pub fn rke_rolling_env(cluster: &Cluster) -> Vec<String> {
    use base64::Engine;
    let Some(s3) = &cluster.etcd.s3 else { return Vec::new() };
    rke_rolling_keys(s3)
        .filter(|(_, key)| !key.is_empty())
        .map(|(env, key)| format!("{env}={}", base64::engine::general_purpose::STANDARD.encode(key.expose())))
        .collect()
}

fn rke_rolling_keys(s3: &S3Settings) -> impl Iterator<Item = (&'static str, &crate::secret::Secret)> {
    [("S3_ACCESS_KEY", &s3.access_key), ("S3_SECRET_KEY", &s3.secret_key)].into_iter()
}

fn show(d: Option<crate::config::GoDuration>) -> String {
    d.map(|d| d.to_string()).unwrap_or_else(|| "(not set)".into())
}

/// Hash of what defines a service container (image, command, binds, environment).
pub fn spec_hash(spec: &ContainerSpec) -> String {
    let mut h = blake3::Hasher::new();
    h.update(spec.image.as_bytes());
    for part in spec.entrypoint.iter().flatten().chain(&spec.cmd).chain(&spec.binds).chain(&spec.env) {
        h.update(b"\0");
        h.update(part.as_bytes());
    }
    for f in &spec.secret_files {
        // Secrets are hashed so that a rotated key recreates the service.
        h.update(f.host_path.as_bytes());
        h.update(blake3::hash(f.content.expose().as_bytes()).as_bytes());
    }
    h.finalize().to_hex()[..16].to_string()
}

// Who made a container is read from labels this module and `member` define.
impl MadeBy {
    /// Who made a container, from its labels and command.
    pub fn of(labels: &BTreeMap<String, String>, args: &[String]) -> MadeBy {
        if labels.contains_key(MANAGED_LABEL) {
            MadeBy::Rkectl
        } else if labels.contains_key(super::member::RKE_NAME_LABEL)
            // RKE labels no snapshot container; they run rke-tools (after the image's own
            // entrypoint script).
            || args.iter().take(2).any(|a| a.starts_with("/opt/rke-tools/"))
        {
            MadeBy::Rke
        } else {
            MadeBy::Unknown
        }
    }
}
