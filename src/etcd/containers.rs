//! Container specs for the etcd member and every helper, built from the cluster.
//!
//! Helpers that need logic run the tools image's `rkectl agent …` (see [`crate::agent`]);
//! helpers that need etcd's own tools run the etcd image's binary directly through the
//! entrypoint, never through a shell, because recent etcd images have none.

use super::{CLUSTER_TOKEN, cert_stem, client_url, member_name, names, paths, peer_url};
use crate::config::{Cluster, Node, S3Settings};
use crate::host::{ContainerSpec, RestartPolicy};
use crate::plan::step::{ClusterState, RollingSettings, SnapshotName};

/// Label holding the hash of the spec a service container was made from.
pub const SPEC_HASH_LABEL: &str = "io.rkectl.spec-hash";
/// Label marking every container rkectl creates.
pub const MANAGED_LABEL: &str = "io.rkectl.managed";
/// Where the tools image has the rkectl binary.
pub const AGENT_BIN: &str = "/usr/local/bin/rkectl";

/// Paths of a member's TLS files on the host (and, mounted at the same place, in containers).
pub struct TlsFiles {
    pub ca: String,
    pub cert: String,
    pub key: String,
}

/// The TLS files of `node`.
pub fn tls_files(node: &Node) -> TlsFiles {
    let stem = cert_stem(node);
    TlsFiles {
        ca: format!("{}/kube-ca.pem", paths::CERT_DIR),
        cert: format!("{}/{stem}.pem", paths::CERT_DIR),
        key: format!("{}/{stem}-key.pem", paths::CERT_DIR),
    }
}

fn base(name: &str, image: &str) -> ContainerSpec {
    let mut spec = ContainerSpec::new(name, image);
    spec.labels.insert(MANAGED_LABEL.into(), "true".into());
    spec
}

fn agent(name: &str, cluster: &Cluster, args: Vec<String>) -> ContainerSpec {
    let mut spec = base(name, &cluster.tools_image);
    spec.entrypoint = Some(vec![AGENT_BIN.into(), "agent".into()]);
    spec.cmd = args;
    spec
}

fn tls_args(node: &Node) -> Vec<String> {
    let t = tls_files(node);
    vec!["--cacert".into(), t.ca, "--cert".into(), t.cert, "--key".into(), t.key]
}

fn s3_args(s3: &S3Settings) -> Vec<String> {
    let mut a = vec!["--s3-endpoint".into(), s3.endpoint.clone(), "--bucket".into(), s3.bucket.clone()];
    if let Some(r) = &s3.region {
        a.extend(["--region".into(), r.clone()]);
    }
    if let Some(f) = &s3.folder {
        a.extend(["--folder".into(), f.clone()]);
    }
    a
}

fn s3_env(spec: &mut ContainerSpec, s3: &S3Settings) {
    spec.secret_env.push(("AWS_ACCESS_KEY_ID".into(), s3.access_key.clone()));
    spec.secret_env.push(("AWS_SECRET_ACCESS_KEY".into(), s3.secret_key.clone()));
    if let Some(ca) = &s3.custom_ca {
        // A CA is public; it goes in the environment so no file has to be placed first.
        spec.env.push(format!("RKECTL_S3_CA_PEM={ca}"));
    }
}

/// The etcd flags that define a member, excluding those that only matter at first start.
fn member_flags(cluster: &Cluster, node: &Node) -> Vec<String> {
    let t = tls_files(node);
    let mut args = vec![
        format!("--name={}", member_name(node)),
        format!("--data-dir={}/", paths::DATA_DIR_IN_CONTAINER),
        format!("--listen-client-urls=https://0.0.0.0:{}", super::CLIENT_PORT),
        format!("--advertise-client-urls={}", client_url(node)),
        format!("--listen-peer-urls=https://0.0.0.0:{}", super::PEER_PORT),
        format!("--initial-advertise-peer-urls={}", peer_url(node)),
        "--client-cert-auth=true".into(),
        "--peer-client-cert-auth=true".into(),
        format!("--trusted-ca-file={}", t.ca),
        format!("--peer-trusted-ca-file={}", t.ca),
        format!("--cert-file={}", t.cert),
        format!("--key-file={}", t.key),
        format!("--peer-cert-file={}", t.cert),
        format!("--peer-key-file={}", t.key),
        "--heartbeat-interval=500".into(),
        "--election-timeout=5000".into(),
    ];
    for (k, v) in &cluster.etcd.extra_args {
        let flag = format!("--{}=", k.trim_start_matches('-'));
        args.retain(|a| !a.starts_with(&flag));
        args.push(format!("{flag}{v}"));
    }
    args
}

/// What decides whether a running etcd container must be replaced.
pub fn etcd_spec_hash(cluster: &Cluster, node: &Node) -> String {
    let mut h = blake3::Hasher::new();
    h.update(cluster.etcd.image.as_bytes());
    for part in member_flags(cluster, node).iter().chain(&cluster.etcd.extra_binds).chain(&cluster.etcd.extra_env) {
        h.update(b"\0");
        h.update(part.as_bytes());
    }
    h.finalize().to_hex()[..16].to_string()
}

/// The `etcd` member container.
pub fn etcd(cluster: &Cluster, node: &Node, initial_cluster: &str, state: ClusterState) -> ContainerSpec {
    let mut spec = base(names::ETCD, &cluster.etcd.image);
    spec.entrypoint = Some(vec!["/usr/local/bin/etcd".into()]);
    spec.cmd = member_flags(cluster, node);
    spec.cmd.push(format!("--initial-cluster={initial_cluster}"));
    spec.cmd.push(format!("--initial-cluster-state={state}"));
    spec.cmd.push(format!("--initial-cluster-token={CLUSTER_TOKEN}"));
    spec.env = cluster.etcd.extra_env.clone();
    spec.env.push("ETCDCTL_API=3".into());
    spec.binds = vec![
        format!("{}:{}:z", paths::DATA_DIR, paths::DATA_DIR_IN_CONTAINER),
        "/etc/kubernetes:/etc/kubernetes:z".into(),
    ];
    spec.binds.extend(cluster.etcd.extra_binds.iter().cloned());
    spec.network_host = true;
    spec.restart = RestartPolicy::Always;
    spec.labels.insert(SPEC_HASH_LABEL.into(), etcd_spec_hash(cluster, node));
    spec
}

/// `kube-cleaner`: removes the etcd data (the container itself is removed through Docker).
pub fn cleaner(cluster: &Cluster) -> ContainerSpec {
    let mut spec =
        agent(names::CLEANER, cluster, vec!["clean".into(), "--data-dir".into(), paths::DATA_DIR_IN_CONTAINER.into()]);
    spec.binds = vec![format!("{}:{}:z", paths::DATA_DIR, paths::DATA_DIR_IN_CONTAINER)];
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
    snapshot: &SnapshotName,
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
        format!("{}/{}", paths::SNAPSHOT_DIR, snapshot),
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
    let mut spec = agent(
        names::RESTORE_FINISH,
        cluster,
        vec![
            "restore-finish".into(),
            "--data-dir".into(),
            paths::DATA_DIR_IN_CONTAINER.into(),
            "--staging".into(),
            RESTORE_STAGING.into(),
        ],
    );
    spec.binds = vec![format!("{}:{}:z", paths::DATA_DIR, paths::DATA_DIR_IN_CONTAINER)];
    spec
}

/// `rke-log-linker`: links a container's log into RKE's log folder.
pub fn log_linker(cluster: &Cluster, container: &str, container_id: &str, docker_root: &str) -> ContainerSpec {
    let mut spec = agent(
        names::LOG_LINKER,
        cluster,
        vec![
            "link-logs".into(),
            "--container".into(),
            container.into(),
            "--id".into(),
            container_id.into(),
            "--docker-root".into(),
            docker_root.into(),
            "--log-dir".into(),
            paths::LOG_DIR.into(),
        ],
    );
    spec.binds = vec![format!("{0}:{0}:z", paths::LOG_DIR)];
    spec
}

/// `etcd-checksum-checker`: size, BLAKE3 and etcd's hash check of snapshot files.
pub fn checksum_checker(cluster: &Cluster, snapshots: &[&SnapshotName]) -> ContainerSpec {
    checker(cluster, snapshots, false)
}

/// `etcd-checksum-checker` computing only sizes and BLAKE3 (listings).
pub fn checksum_only(cluster: &Cluster, snapshots: &[&SnapshotName]) -> ContainerSpec {
    checker(cluster, snapshots, true)
}

fn checker(cluster: &Cluster, snapshots: &[&SnapshotName], quick: bool) -> ContainerSpec {
    let mut args = vec!["snapshot-verify".to_string()];
    if quick {
        args.push("--checksum-only".into());
    }
    for s in snapshots {
        args.extend(["--path".into(), format!("{}/{}", paths::SNAPSHOT_DIR, s)]);
    }
    let mut spec = agent(names::CHECKSUM_CHECKER, cluster, args);
    spec.binds = vec![format!("{0}:{0}:ro", paths::SNAPSHOT_DIR)];
    spec
}

/// `etcd-snapshot-once`: takes a snapshot from the node's member, optionally streaming it to S3.
pub fn snapshot_once(
    cluster: &Cluster,
    node: &Node,
    snapshot: &SnapshotName,
    upload: Option<&S3Settings>,
) -> ContainerSpec {
    let mut args = vec![
        "snapshot-save".into(),
        "--endpoint".into(),
        client_url(node),
        "--dir".into(),
        paths::SNAPSHOT_DIR.into(),
        "--name".into(),
        snapshot.to_string(),
    ];
    args.extend(tls_args(node));
    let mut spec = agent(names::SNAPSHOT_ONCE, cluster, Vec::new());
    if let Some(s3) = upload {
        args.extend(s3_args(s3));
        s3_env(&mut spec, s3);
    }
    spec.cmd = args;
    spec.binds = vec![format!("{0}:{0}:z", paths::SNAPSHOT_DIR), format!("{0}:{0}:ro", paths::CERT_DIR)];
    spec.network_host = true;
    spec
}

/// `etcd-download-snapshot`: downloads and verifies a snapshot from S3.
pub fn s3_download(cluster: &Cluster, snapshot: &SnapshotName, s3: &S3Settings) -> ContainerSpec {
    let mut spec = agent(names::S3_DOWNLOAD, cluster, Vec::new());
    let mut args =
        vec!["s3-download".into(), "--name".into(), snapshot.to_string(), "--dir".into(), paths::SNAPSHOT_DIR.into()];
    args.extend(s3_args(s3));
    s3_env(&mut spec, s3);
    spec.cmd = args;
    spec.binds = vec![format!("{0}:{0}:z", paths::SNAPSHOT_DIR)];
    spec.network_host = true;
    spec
}

/// `etcd-health-check`: health and revision of every member.
pub fn health_check(cluster: &Cluster, via: &Node, members: &[&Node]) -> ContainerSpec {
    let endpoints: Vec<String> = members.iter().map(|n| client_url(n)).collect();
    let mut args = vec!["health".into(), "--endpoints".into(), endpoints.join(",")];
    args.extend(tls_args(via));
    let mut spec = agent(names::HEALTH_CHECK, cluster, args);
    spec.binds = vec![format!("{0}:{0}:ro", paths::CERT_DIR)];
    spec.network_host = true;
    spec
}

/// A member change (`member add` / `member remove`) through a running member.
pub fn member_change(cluster: &Cluster, via: &Node, change: MemberChange<'_>) -> ContainerSpec {
    let mut args = match change {
        MemberChange::Add { member, peer_url } => {
            vec!["member-add".into(), "--member".into(), member.into(), "--peer-url".into(), peer_url.into()]
        }
        MemberChange::Remove { member } => vec!["member-remove".into(), "--member".into(), member.into()],
    };
    args.extend(["--endpoint".into(), client_url(via)]);
    args.extend(tls_args(via));
    let mut spec = agent(names::HEALTH_CHECK, cluster, args);
    spec.binds = vec![format!("{0}:{0}:ro", paths::CERT_DIR)];
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
    let mut args = vec!["snapshot-delete".into(), "--dir".into(), paths::SNAPSHOT_DIR.into()];
    for s in snapshots {
        args.extend(["--name".into(), s.to_string()]);
    }
    let mut spec = agent(names::SNAPSHOT_PRUNE, cluster, args);
    spec.binds = vec![format!("{0}:{0}:z", paths::SNAPSHOT_DIR)];
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
        R::BackupConfig { interval_hours, retention, .. } => Some(RollingSettings::BackupConfig {
            interval_hours: *interval_hours,
            retention: *retention,
            s3: cluster.etcd.s3.as_ref().filter(|_| uploader).map(|s| s.target()),
        }),
    }
}

/// `etcd-rolling-snapshots`: the recurring snapshot service (tools image, `rkectl agent`).
pub fn rolling_snapshots(cluster: &Cluster, node: &Node, settings: &RollingSettings) -> ContainerSpec {
    let mut args = vec![
        "rolling-snapshots".into(),
        "--endpoint".into(),
        client_url(node),
        "--dir".into(),
        paths::SNAPSHOT_DIR.into(),
    ];
    args.extend(tls_args(node));
    let mut spec = agent(names::ROLLING_SNAPSHOTS, cluster, Vec::new());
    match settings {
        RollingSettings::Legacy { creation, retention } => {
            args.extend(["--creation".into(), creation.clone(), "--retention".into(), retention.clone()]);
        }
        RollingSettings::BackupConfig { interval_hours, retention, s3: target } => {
            args.extend(["--creation".into(), format!("{interval_hours}h"), "--keep".into(), retention.to_string()]);
            if let (Some(_), Some(s3)) = (target, &cluster.etcd.s3) {
                args.extend(s3_args(s3));
                s3_env(&mut spec, s3);
            }
        }
    }
    spec.cmd = args;
    spec.binds = vec![format!("{0}:{0}:z", paths::SNAPSHOT_DIR), format!("{0}:{0}:ro", paths::CERT_DIR)];
    spec.network_host = true;
    spec.restart = RestartPolicy::Always;
    spec.labels.insert(SPEC_HASH_LABEL.into(), spec_hash(&spec));
    spec
}

/// Hash of what defines a service container (image, command, binds, environment).
pub fn spec_hash(spec: &ContainerSpec) -> String {
    let mut h = blake3::Hasher::new();
    h.update(spec.image.as_bytes());
    for part in spec.entrypoint.iter().flatten().chain(&spec.cmd).chain(&spec.binds).chain(&spec.env) {
        h.update(b"\0");
        h.update(part.as_bytes());
    }
    for (k, v) in &spec.secret_env {
        // Keys are hashed so that a rotated key recreates the service; the hash reveals nothing.
        h.update(k.as_bytes());
        h.update(blake3::hash(v.expose().as_bytes()).as_bytes());
    }
    h.finalize().to_hex()[..16].to_string()
}
