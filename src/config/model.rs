//! The typed cluster: what cluster.yml means once defaults are applied and it is valid.

use super::duration::GoDuration;
use crate::secret::Secret;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

pub use crate::model::{HostAddr, S3Target};

/// Where snapshots live on every etcd host (the reference's folder).
pub const SNAPSHOT_DIR: &str = "/opt/rke/etcd-snapshots";
/// Default SSH port.
pub const DEFAULT_SSH_PORT: u16 = 22;
/// Default Docker socket on a node.
pub const DEFAULT_DOCKER_SOCKET: &str = "/var/run/docker.sock";
/// Default S3 endpoint (the reference's `--s3-endpoint` default).
pub const DEFAULT_S3_ENDPOINT: &str = "s3.amazonaws.com";
/// RKE's default `services.kube-api.service_cluster_ip_range`.
pub const DEFAULT_SERVICE_CLUSTER_IP_RANGE: &str = "10.43.0.0/16";
/// RKE's default `services.kubelet.cluster_domain`.
pub const DEFAULT_CLUSTER_DOMAIN: &str = "cluster.local";
/// Default etcd image when cluster.yml names none.
pub const DEFAULT_ETCD_IMAGE: &str = "rancher/mirrored-coreos-etcd:v3.5.16";
/// Legacy recurring snapshot interval default (reference: `5m0s`).
pub const DEFAULT_CREATION: Duration = Duration::from_secs(5 * 60);
/// Legacy recurring snapshot retention default (reference: `24h`).
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(24 * 3600);
/// `backup_config.interval_hours` default (RKE's).
pub const DEFAULT_INTERVAL_HOURS: u32 = 12;
/// `backup_config.retention` default (RKE's).
pub const DEFAULT_RETENTION_COUNT: u32 = 6;

/// A node role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Etcd,
    Controlplane,
    Worker,
}

impl Role {
    /// Parses RKE's role names.
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "etcd" => Some(Role::Etcd),
            "controlplane" => Some(Role::Controlplane),
            "worker" => Some(Role::Worker),
            _ => None,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Etcd => "etcd",
            Role::Controlplane => "controlplane",
            Role::Worker => "worker",
        })
    }
}

/// How to authenticate to a node over SSH.
#[derive(Debug, Clone)]
pub struct SshAuth {
    /// A private key given inline in cluster.yml (`ssh_key`).
    pub key: Option<Secret>,
    /// A private key file (`ssh_key_path`, node's or the cluster's; default `~/.ssh/id_rsa`).
    pub key_path: PathBuf,
    /// Whether `ssh_key_path` was written in cluster.yml (a missing default key is not an error
    /// when the agent is used).
    pub key_path_explicit: bool,
    /// Use the SSH agent at `SSH_AUTH_SOCK`.
    pub agent: bool,
    /// An OpenSSH certificate for the key (`ssh_cert` or `ssh_cert_path`).
    pub cert: Option<SshCert>,
}

/// An OpenSSH user certificate, signed for the key it goes with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshCert {
    /// Where it comes from.
    pub source: CertSource,
    /// The cluster.yml path that sets it (`nodes[1].ssh_cert_path`), for diagnostics.
    pub at: String,
}

/// Where an SSH certificate is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertSource {
    /// `ssh_cert`: the certificate itself, one `ssh-…-cert-v01@openssh.com …` line.
    Inline(String),
    /// `ssh_cert_path`: a file holding it (`~/` expanded).
    File(PathBuf),
}

/// `bastion_host`: the jump host through which every node is reached.
#[derive(Debug, Clone)]
pub struct Bastion {
    pub address: String,
    pub port: u16,
    pub user: String,
    /// Its own key and certificate (the cluster's `ssh_key_path` unless it names one).
    pub ssh: SshAuth,
}

/// One node of cluster.yml.
#[derive(Debug, Clone)]
pub struct Node {
    /// Position in `nodes:` (for diagnostics).
    pub index: usize,
    pub address: HostAddr,
    pub port: u16,
    pub user: String,
    pub roles: Vec<Role>,
    pub hostname_override: Option<String>,
    /// `hostname_override` or the address, lower-cased, as RKE defaults it.
    pub hostname: String,
    pub internal_address: Option<String>,
    pub ssh: SshAuth,
    pub docker_socket: String,
}

impl Node {
    /// Whether the node has `role`.
    pub fn has_role(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }

    /// The name RKE gives the node: `hostname_override`, else the address, lower-cased
    /// (RKE's defaults lower-case it; member names and certificates follow).
    pub fn hostname(&self) -> &str {
        &self.hostname
    }

    /// The address other members use to reach this one (`internal_address`, else `address`).
    pub fn internal_address(&self) -> &str {
        self.internal_address.as_deref().unwrap_or(&self.address.0)
    }

    /// Whether the node has an `internal_address` of its own (RKE then binds etcd to it
    /// instead of 0.0.0.0, and names the node's certificates after it).
    pub fn has_own_internal_address(&self) -> bool {
        self.internal_address.as_deref().is_some_and(|i| i != self.address.0)
    }
}

/// S3 connection settings (keys included, which is why this is not `Serialize`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Settings {
    pub endpoint: String,
    pub bucket: String,
    pub region: Option<String>,
    pub folder: Option<String>,
    pub custom_ca: Option<String>,
    pub access_key: Secret,
    pub secret_key: Secret,
    /// With temporary keys (STS, SSO): their session token.
    pub session_token: Option<Secret>,
}

impl S3Settings {
    /// The public part, for plans and the journal.
    pub fn target(&self) -> S3Target {
        S3Target {
            endpoint: self.endpoint.clone(),
            bucket: self.bucket.clone(),
            region: self.region.clone(),
            folder: self.folder.clone(),
        }
    }
}

/// Recurring snapshots (the `etcd-rolling-snapshots` service).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecurringSnapshots {
    /// Off (the default).
    Disabled,
    /// `snapshot: true` with `creation`/`retention` durations.
    Legacy { creation: GoDuration, retention: GoDuration },
    /// `backup_config`: every `interval_hours`, keeping `retention` snapshots; uploaded to S3
    /// when `services.etcd.backup_config.s3backupconfig` is set.
    BackupConfig {
        interval_hours: u32,
        retention: u32,
        /// The legacy settings it overrides, when both were written.
        overrides_legacy: Option<(GoDuration, GoDuration)>,
        /// `rkectl_drill: true` (rkectl's own key): each snapshot is drilled after it is taken.
        drill: bool,
    },
}

/// `services.etcd`.
#[derive(Debug, Clone)]
pub struct EtcdService {
    pub image: String,
    pub extra_args: BTreeMap<String, String>,
    pub extra_binds: Vec<String>,
    pub extra_env: Vec<String>,
    pub recurring: RecurringSnapshots,
    /// `backup_config.s3backupconfig`: where snapshots go in S3 unless flags say otherwise.
    pub s3: Option<S3Settings>,
}

/// A valid cluster.yml with defaults applied.
#[derive(Debug, Clone)]
pub struct Cluster {
    pub name: String,
    pub nodes: Vec<Node>,
    pub ignore_docker_version: bool,
    pub etcd: EtcdService,
    /// `kubernetes_version`, when written: RKE's etcd binds depend on it.
    pub kubernetes_version: Option<String>,
    /// The first address of each `services.kube-api.service_cluster_ip_range` range (RKE
    /// puts them in every etcd certificate).
    pub kubernetes_service_ips: Vec<std::net::IpAddr>,
    /// `services.kubelet.cluster_domain` (in the certificates' DNS names).
    pub cluster_domain: String,
    /// `bastion_host`, when it has an address.
    pub bastion: Option<Bastion>,
    /// `private_registries`: credentials for image pulls.
    pub registries: super::registries::Registries,
}

impl Cluster {
    /// The etcd nodes, in cluster.yml order.
    pub fn etcd_nodes(&self) -> impl Iterator<Item = &Node> {
        self.nodes.iter().filter(|n| n.has_role(Role::Etcd))
    }

    /// The node with this address.
    pub fn node(&self, addr: &HostAddr) -> Option<&Node> {
        self.nodes.iter().find(|n| &n.address == addr)
    }

    /// The registry whose credentials pull `image`, if one matches (RKE's rule).
    pub fn registry_for(&self, image: &str) -> Option<&super::registries::PrivateRegistry> {
        self.registries.for_image(image)
    }

    /// S3 settings from `backup_config.s3backupconfig`, if any.
    pub fn configured_s3(&self) -> Option<&S3Settings> {
        self.etcd.s3.as_ref()
    }

    /// Whether the etcd container's binds carry SELinux's `:z` (RKE drops it from
    /// Kubernetes 1.22 on; a cluster.yml without `kubernetes_version` gets RKE's current
    /// default, which is newer).
    pub fn binds_with_z(&self) -> bool {
        let Some(v) = &self.kubernetes_version else { return false };
        let mut parts = v.trim_start_matches('v').split(['.', '-']);
        let major: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(1);
        let minor: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(99);
        (major, minor) < (1, 22)
    }
}
