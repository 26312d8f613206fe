//! cluster.yml exactly as RKE spells it, before defaults and validation.
//!
//! Every field is optional so that `key:` with no value (YAML null) is accepted, as RKE
//! accepts it. Keys we do not model (Kubernetes services, network, addons, …) are ignored
//! by serde, which is what "read real RKE files unchanged" needs; keys RKE does not know
//! either are named by [`super::known_keys`].

use super::lenient::{LenientBool, LenientInt, ScalarString};
use serde::Deserialize;
use std::collections::BTreeMap;

/// The whole file.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawConfig {
    pub nodes: Option<Vec<RawNode>>,
    pub services: Option<RawServices>,
    pub system_images: Option<RawSystemImages>,
    pub ssh_key_path: Option<ScalarString>,
    pub ssh_cert_path: Option<ScalarString>,
    pub ssh_agent_auth: Option<LenientBool>,
    pub bastion_host: Option<RawBastion>,
    pub private_registries: Option<Vec<RawRegistry>>,
    pub cluster_name: Option<ScalarString>,
    pub ignore_docker_version: Option<LenientBool>,
    pub kubernetes_version: Option<ScalarString>,
}

/// One entry of `nodes:`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawNode {
    pub address: Option<ScalarString>,
    pub port: Option<ScalarString>,
    pub internal_address: Option<ScalarString>,
    pub role: Option<Vec<ScalarString>>,
    pub hostname_override: Option<ScalarString>,
    pub user: Option<ScalarString>,
    pub docker_socket: Option<ScalarString>,
    pub ssh_agent_auth: Option<LenientBool>,
    pub ssh_key: Option<ScalarString>,
    pub ssh_key_path: Option<ScalarString>,
    pub ssh_cert: Option<ScalarString>,
    pub ssh_cert_path: Option<ScalarString>,
}

/// `bastion_host:` (RKE's `BastionHost`): the jump host every node is reached through.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawBastion {
    pub address: Option<ScalarString>,
    pub port: Option<ScalarString>,
    pub user: Option<ScalarString>,
    pub ssh_agent_auth: Option<LenientBool>,
    pub ssh_key: Option<ScalarString>,
    pub ssh_key_path: Option<ScalarString>,
    pub ssh_cert: Option<ScalarString>,
    pub ssh_cert_path: Option<ScalarString>,
    pub ignore_proxy_env_vars: Option<LenientBool>,
}

/// One entry of `private_registries:` (RKE's `PrivateRegistry`).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawRegistry {
    pub url: Option<ScalarString>,
    pub user: Option<ScalarString>,
    pub password: Option<ScalarString>,
    pub is_default: Option<LenientBool>,
    /// Present (even empty) means RKE asks AWS for a token; `null` means absent, as in Go.
    pub ecr_credential_plugin: Option<RawEcrPlugin>,
}

/// `private_registries[].ecr_credential_plugin`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawEcrPlugin {
    pub aws_access_key_id: Option<ScalarString>,
    pub aws_secret_access_key: Option<ScalarString>,
    pub aws_session_token: Option<ScalarString>,
}

/// `services:`; etcd matters to us, and two settings of other services that RKE writes
/// into every etcd certificate.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawServices {
    pub etcd: Option<RawEtcd>,
    #[serde(rename = "kube-api")]
    pub kube_api: Option<RawKubeApi>,
    pub kubelet: Option<RawKubelet>,
}

/// `services.kube-api`: the service range (its first address is in the certificates).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawKubeApi {
    pub service_cluster_ip_range: Option<ScalarString>,
}

/// `services.kubelet`: the cluster domain (in the certificates' DNS names).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawKubelet {
    pub cluster_domain: Option<ScalarString>,
}

/// `services.etcd`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawEtcd {
    pub image: Option<ScalarString>,
    pub extra_args: Option<BTreeMap<String, ScalarString>>,
    pub extra_binds: Option<Vec<ScalarString>>,
    pub extra_env: Option<Vec<ScalarString>>,
    pub snapshot: Option<LenientBool>,
    pub creation: Option<ScalarString>,
    pub retention: Option<ScalarString>,
    pub backup_config: Option<RawBackupConfig>,
}

/// `services.etcd.backup_config`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawBackupConfig {
    pub enabled: Option<LenientBool>,
    pub interval_hours: Option<LenientInt>,
    pub retention: Option<LenientInt>,
    pub s3backupconfig: Option<RawS3>,
    pub safe_timestamp: Option<LenientBool>,
    pub timeout: Option<LenientInt>,
    /// rkectl's own: drill each recurring snapshot after it is taken (RKE ignores it).
    pub rkectl_drill: Option<LenientBool>,
}

/// `services.etcd.backup_config.s3backupconfig`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawS3 {
    pub access_key: Option<ScalarString>,
    pub secret_key: Option<ScalarString>,
    pub bucket_name: Option<ScalarString>,
    pub region: Option<ScalarString>,
    pub endpoint: Option<ScalarString>,
    pub folder: Option<ScalarString>,
    pub custom_ca: Option<ScalarString>,
}

/// `system_images:`; `rkectl_tools` named rkectl's image before it needed none.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawSystemImages {
    pub etcd: Option<ScalarString>,
    pub alpine: Option<ScalarString>,
    pub rkectl_tools: Option<ScalarString>,
}
