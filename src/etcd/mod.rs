//! What is specific to etcd and RKE's layout on a node: container names, folders, member
//! names, the initial-cluster string, and the container specs of every helper.
//!
//! # What it owns
//! - here: the names RKE gives containers and folders ([`names`], [`paths`]), a member's
//!   name and URLs, the `--initial-cluster` string, and the environment refresh compares a
//!   running container with ([`expected_env`]);
//! - [`member`]: the `etcd` container exactly as RKE runs it (flags, binds, labels), and
//!   whether a running one matches what cluster.yml asks;
//! - [`containers`]: the spec of every helper (`etcd-restore`, `kube-cleaner`, the agent's
//!   one-shot containers, `etcd-rolling-snapshots`), and who made a container
//!   ([`MadeBy`](crate::model::observed::MadeBy)`::of`, from the labels defined here).
//!
//! # How data flows
//! A [`Cluster`] and a node come in from `config`; [`ContainerSpec`](crate::host::ContainerSpec)s
//! and strings go out. The step kinds hand the specs to a host to run; refresh compares
//! what it saw ([`ContainerFacts`](crate::model::observed::ContainerFacts)) with them. Nothing
//! here does I/O.

pub mod containers;
pub mod member;

use crate::config::{Cluster, Node};
use crate::model::observed::ContainerFacts;

/// What refresh compares the environment of the running container `name` on `node` with:
/// the member's own for `etcd`, the S3 keys cluster.yml gives RKE's recurring service for
/// `etcd-rolling-snapshots` (rkectl's own is told by its spec hash); nothing for the others.
/// `arch` is the host's, as Docker names it.
pub fn expected_env(cluster: &Cluster, node: &Node, name: &str, arch: &str) -> Vec<String> {
    match name {
        names::ETCD => member::env(cluster, node, arch),
        names::ROLLING_SNAPSHOTS => containers::rke_rolling_env(cluster),
        _ => Vec::new(),
    }
}

/// Container names, as the reference document spells them.
pub mod names {
    /// The etcd member.
    pub const ETCD: &str = "etcd";
    /// Takes a one-time snapshot.
    pub const SNAPSHOT_ONCE: &str = "etcd-snapshot-once";
    /// The recurring snapshot service.
    pub const ROLLING_SNAPSHOTS: &str = "etcd-rolling-snapshots";
    /// Restores a snapshot into a fresh data folder.
    pub const RESTORE: &str = "etcd-restore";
    /// Moves the restored data into place (tools image, because the etcd image may have no shell).
    pub const RESTORE_FINISH: &str = "etcd-restore-finish";
    /// Removes the old etcd data.
    pub const CLEANER: &str = "kube-cleaner";
    /// Links container logs into RKE's log folder.
    pub const LOG_LINKER: &str = "rke-log-linker";
    /// Hashes and checks a snapshot file.
    pub const CHECKSUM_CHECKER: &str = "etcd-checksum-checker";
    /// Downloads a snapshot from S3 onto a node.
    pub const S3_DOWNLOAD: &str = "etcd-download-snapshot";
    /// Unpacks an archive's database for a restore.
    pub const UNPACK: &str = "etcd-unpack-snapshot";
    /// Deletes snapshots on a node (prune).
    pub const SNAPSHOT_PRUNE: &str = "etcd-snapshot-prune";
    /// Queries the members' health (tools image's etcdctl).
    pub const HEALTH_CHECK: &str = "etcd-health-check";
    /// Adds or removes a member through a running one.
    pub const MEMBER_CHANGE: &str = "etcd-member-change";
    /// Fetches a snapshot another etcd host serves (the destination of a host-to-host copy).
    pub const FETCH_SNAPSHOT: &str = "etcd-fetch-snapshot";
    /// Serves a snapshot to one other etcd host; one per destination, named by
    /// [`serve_snapshot`], so that one source serves several destinations at once.
    pub const SERVE_SNAPSHOT: &str = "etcd-serve-snapshot";

    /// The name of the helper that serves a snapshot to host `peer`.
    pub fn serve_snapshot(peer: &crate::config::HostAddr) -> String {
        let peer: String =
            peer.0.chars().map(|c| if c.is_ascii_alphanumeric() || c == '.' || c == '-' { c } else { '_' }).collect();
        format!("{SERVE_SNAPSHOT}-{peer}")
    }

    /// Drills a snapshot: restores it in scratch space and reads it (its own container).
    pub const SNAPSHOT_DRILL: &str = "etcd-snapshot-drill";

    /// Every temporary container rkectl may leave behind if killed; none is a service.
    /// (The serving helpers, one per peer, are named by [`serve_snapshot`].)
    pub const TEMPORARY: &[&str] = &[
        SNAPSHOT_DRILL,
        FETCH_SNAPSHOT,
        SNAPSHOT_ONCE,
        RESTORE,
        RESTORE_FINISH,
        CLEANER,
        LOG_LINKER,
        CHECKSUM_CHECKER,
        S3_DOWNLOAD,
        UNPACK,
        SNAPSHOT_PRUNE,
        HEALTH_CHECK,
        MEMBER_CHANGE,
    ];
}

/// Every temporary container rkectl may have left on a host of `cluster`: the fixed names
/// and a serving helper for each etcd host it may serve.
pub fn temporary_containers(cluster: &Cluster) -> Vec<String> {
    let fixed = names::TEMPORARY.iter().map(|n| n.to_string());
    fixed.chain(cluster.etcd_nodes().map(|n| names::serve_snapshot(&n.address))).collect()
}

/// Folders on a node.
pub mod paths {
    /// Snapshots (the reference's folder).
    pub const SNAPSHOT_DIR: &str = crate::config::SNAPSHOT_DIR;
    /// Our records of snapshots (size, checksum), beside them but out of RKE's way.
    pub const SNAPSHOT_META_DIR: &str = "/opt/rke/etcd-snapshots/.rkectl";
    /// The etcd data folder on the host.
    pub const DATA_DIR: &str = "/var/lib/etcd";
    /// Where the data folder appears inside the etcd container (RKE's layout).
    pub const DATA_DIR_IN_CONTAINER: &str = "/var/lib/rancher/etcd";
    /// Certificates (RKE's layout).
    pub const CERT_DIR: &str = crate::rke::pki::CERT_DIR;
    /// RKE's log links.
    pub const LOG_DIR: &str = "/var/lib/rancher/rke/log";
    /// Secrets handed to rkectl's helpers as files (mode 0600), beside the cluster's keys.
    pub const SECRETS_DIR: &str = "/etc/kubernetes/rkectl";

    /// The S3 credentials file of helper container `container`.
    pub fn s3_credentials(container: &str) -> String {
        format!("{SECRETS_DIR}/{container}-s3.json")
    }
}

/// RKE's initial cluster token.
pub const CLUSTER_TOKEN: &str = "etcd-cluster-1";
/// Client port.
pub const CLIENT_PORT: u16 = 2379;
/// Peer port.
pub const PEER_PORT: u16 = 2380;

/// The member name RKE gives a node: `etcd-<hostname>` (the lower-cased override or address).
pub fn member_name(node: &Node) -> String {
    format!("etcd-{}", node.hostname())
}

/// The name the member in `etcd` (the node's container) has now, when cluster.yml gives it
/// another (a changed or lost `hostname_override`): the member stays, and etcd takes the new
/// name when its container starts with it, as after RKE's `rke up`.
pub fn renamed_member<'a>(node: &Node, etcd: &'a ContainerFacts) -> Option<&'a str> {
    let now = etcd.args.iter().find_map(|a| a.strip_prefix("--name="))?;
    (now != member_name(node)).then_some(now)
}

/// The address etcd binds to: RKE's `0.0.0.0`, or the internal address when the node has
/// one of its own (a DNATed public address cannot be bound).
pub fn listen_address(node: &Node) -> &str {
    if node.has_own_internal_address() { node.internal_address() } else { "0.0.0.0" }
}

/// `https://<internal address>:2380`.
pub fn peer_url(node: &Node) -> String {
    format!("https://{}:{PEER_PORT}", node.internal_address())
}

/// `https://<internal address>:2379`.
pub fn client_url(node: &Node) -> String {
    format!("https://{}:{CLIENT_PORT}", node.internal_address())
}

/// `etcd-a=https://a:2380,etcd-b=https://b:2380` over the given members.
pub fn initial_cluster<'a>(members: impl IntoIterator<Item = &'a Node>) -> String {
    members.into_iter().map(|n| format!("{}={}", member_name(n), peer_url(n))).collect::<Vec<_>>().join(",")
}

/// The initial cluster of every etcd node of cluster.yml.
pub fn cluster_initial_cluster(cluster: &Cluster) -> String {
    initial_cluster(cluster.etcd_nodes())
}

/// The `--initial-cluster` string of a plan's symbolic initial cluster.
pub fn resolve_initial_cluster(cluster: &Cluster, ic: &crate::model::InitialCluster) -> String {
    use crate::model::InitialCluster;
    match ic {
        InitialCluster::AllEtcdNodes => cluster_initial_cluster(cluster),
        InitialCluster::Hosts { hosts } => initial_cluster(hosts.iter().filter_map(|h| cluster.node(h))),
    }
}
