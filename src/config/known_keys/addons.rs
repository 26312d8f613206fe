//! The add-ons RKE deploys into the cluster: `ingress`, `dns` and `monitoring`.

use super::Shape::*;
use super::root::TOLERATION;
use super::{Key, k};

/// `IngressConfig`.
pub(super) const INGRESS_CONFIG: &[Key] = &[
    k("provider", Value),
    k("options", Free),
    k("node_selector", Free),
    k("extra_args", Free),
    k("dns_policy", Value),
    k("extra_envs", Free),
    k("extra_volumes", Free),
    k("extra_volume_mounts", Free),
    k("update_strategy", Free),
    k("http_port", Value),
    k("https_port", Value),
    k("network_mode", Value),
    k("tolerations", List(TOLERATION)),
    k("default_backend", Value),
    k("default_http_backend_priority_class_name", Value),
    k("nginx_ingress_controller_priority_class_name", Value),
    k("default_ingress_class", Value),
];

/// `MonitoringConfig`.
pub(super) const MONITORING_CONFIG: &[Key] = &[
    k("provider", Value),
    k("options", Free),
    k("node_selector", Free),
    k("update_strategy", Free),
    k("replicas", Value),
    k("tolerations", List(TOLERATION)),
    k("metrics_server_priority_class_name", Value),
];

/// `DNSConfig`.
pub(super) const DNS_CONFIG: &[Key] = &[
    k("provider", Value),
    k("options", Free),
    k("upstreamnameservers", Value),
    k("reversecidrs", Value),
    k("stubdomains", Free),
    k("node_selector", Free),
    k("nodelocal", Struct(NODELOCAL)),
    k("update_strategy", Free),
    k("linear_autoscaler_params", Struct(LINEAR_AUTOSCALER_PARAMS)),
    k("tolerations", List(TOLERATION)),
];

/// `Nodelocal`.
pub(super) const NODELOCAL: &[Key] = &[
    k("ip_address", Value),
    k("update_strategy", Free),
    k("node_selector", Free),
    k("node_local_dns_priority_class_name", Value),
];

/// `LinearAutoscalerParams`.
pub(super) const LINEAR_AUTOSCALER_PARAMS: &[Key] = &[
    k("cores_per_replica", Value),
    k("nodes_per_replica", Value),
    k("min", Value),
    k("max", Value),
    k("prevent_single_point_failure", Value),
];
