//! The top level of cluster.yml, and its sections of a few keys: `restore`,
//! `rotate_certificates`, `upgrade_strategy`; and Kubernetes' tolerations, which several
//! sections list.

use super::Shape::*;
use super::access::{AUTHN_CONFIG, AUTHZ_CONFIG, BASTION_HOST, PRIVATE_REGISTRY};
use super::addons::{DNS_CONFIG, INGRESS_CONFIG, MONITORING_CONFIG};
use super::cloud_provider::CLOUD_PROVIDER;
use super::network::NETWORK_CONFIG;
use super::nodes::RKE_CONFIG_NODE;
use super::services::RKE_CONFIG_SERVICES;
use super::system_images::RKE_SYSTEM_IMAGES;
use super::{Key, k};

/// RKE's `RancherKubernetesEngineConfig`: the top level of cluster.yml.
pub(super) const ROOT_KEYS: &[Key] = &[
    k("nodes", List(RKE_CONFIG_NODE)),
    k("services", Struct(RKE_CONFIG_SERVICES)),
    k("network", Struct(NETWORK_CONFIG)),
    k("authentication", Struct(AUTHN_CONFIG)),
    k("addons", Value),
    k("addons_include", Value),
    k("system_images", Struct(RKE_SYSTEM_IMAGES)),
    k("ssh_key_path", Value),
    k("ssh_cert_path", Value),
    k("ssh_agent_auth", Value),
    k("authorization", Struct(AUTHZ_CONFIG)),
    k("ignore_docker_version", Value),
    k("enable_cri_dockerd", Value),
    k("kubernetes_version", Value),
    k("private_registries", List(PRIVATE_REGISTRY)),
    k("ingress", Struct(INGRESS_CONFIG)),
    k("cluster_name", Value),
    k("cloud_provider", Struct(CLOUD_PROVIDER)),
    k("prefix_path", Value),
    k("win_prefix_path", Value),
    k("addon_job_timeout", Value),
    k("bastion_host", Struct(BASTION_HOST)),
    k("monitoring", Struct(MONITORING_CONFIG)),
    k("restore", Struct(RESTORE_CONFIG)),
    k("rotate_certificates", Struct(ROTATE_CERTIFICATES)),
    k("rotate_encryption_key", Value),
    k("dns", Struct(DNS_CONFIG)),
    k("upgrade_strategy", Struct(NODE_UPGRADE_STRATEGY)),
    k("cri_dockerd_stream_server_address", Value),
    k("cri_dockerd_stream_server_port", Value),
];

/// Kubernetes' `core/v1.Toleration`, whose fields have no yaml tags: yaml.v2 lower-cases their names.
pub(super) const TOLERATION: &[Key] =
    &[k("key", Value), k("operator", Value), k("value", Value), k("effect", Value), k("tolerationseconds", Value)];

/// `RestoreConfig`.
pub(super) const RESTORE_CONFIG: &[Key] = &[k("restore", Value), k("snapshot_name", Value)];

/// `RotateCertificates`.
pub(super) const ROTATE_CERTIFICATES: &[Key] = &[k("cacertificates", Value), k("services", Value)];

/// `NodeUpgradeStrategy`.
pub(super) const NODE_UPGRADE_STRATEGY: &[Key] = &[
    k("max_unavailable_worker", Value),
    k("max_unavailable_controlplane", Value),
    k("drain", Value),
    k("node_drain_input", Struct(NODE_DRAIN_INPUT)),
];

/// `NodeDrainInput`.
pub(super) const NODE_DRAIN_INPUT: &[Key] = &[
    k("force", Value),
    k("ignore_daemonsets", Value),
    k("delete_local_data", Value),
    k("grace_period", Value),
    k("timeout", Value),
];
