//! `services`: the Kubernetes components RKE runs (etcd has its own file).

use super::Shape::*;
use super::etcd::ETCD_SERVICE;
use super::{Key, k};

/// `RKEConfigServices`.
pub(super) const RKE_CONFIG_SERVICES: &[Key] = &[
    k("etcd", Struct(ETCD_SERVICE)),
    k("kube-api", Struct(KUBE_API_SERVICE)),
    k("kube-controller", Struct(KUBE_CONTROLLER_SERVICE)),
    k("scheduler", Struct(SCHEDULER_SERVICE)),
    k("kubelet", Struct(KUBELET_SERVICE)),
    k("kubeproxy", Struct(KUBEPROXY_SERVICE)),
];

/// `KubeAPIService`.
pub(super) const KUBE_API_SERVICE: &[Key] = &[
    k("image", Value),
    k("extra_args", Free),
    k("extra_args_array", Free),
    k("extra_binds", Value),
    k("extra_env", Value),
    k("win_extra_args", Free),
    k("win_extra_args_array", Free),
    k("win_extra_binds", Value),
    k("win_extra_env", Value),
    k("service_cluster_ip_range", Value),
    k("service_node_port_range", Value),
    k("pod_security_configuration", Value),
    k("always_pull_images", Value),
    k("secrets_encryption_config", Struct(SECRETS_ENCRYPTION_CONFIG)),
    k("audit_log", Struct(AUDIT_LOG)),
    k("admission_configuration", Free),
    k("event_rate_limit", Struct(EVENT_RATE_LIMIT)),
];

/// `SecretsEncryptionConfig`.
pub(super) const SECRETS_ENCRYPTION_CONFIG: &[Key] = &[k("enabled", Value), k("custom_config", Free)];

/// `AuditLog`.
pub(super) const AUDIT_LOG: &[Key] = &[k("enabled", Value), k("configuration", Struct(AUDIT_LOG_CONFIG))];

/// `AuditLogConfig`.
pub(super) const AUDIT_LOG_CONFIG: &[Key] = &[
    k("max_age", Value),
    k("max_backup", Value),
    k("max_size", Value),
    k("path", Value),
    k("format", Value),
    k("policy", Free),
];

/// `EventRateLimit`.
pub(super) const EVENT_RATE_LIMIT: &[Key] = &[k("enabled", Value), k("configuration", Free)];

/// `KubeControllerService`.
pub(super) const KUBE_CONTROLLER_SERVICE: &[Key] = &[
    k("image", Value),
    k("extra_args", Free),
    k("extra_args_array", Free),
    k("extra_binds", Value),
    k("extra_env", Value),
    k("win_extra_args", Free),
    k("win_extra_args_array", Free),
    k("win_extra_binds", Value),
    k("win_extra_env", Value),
    k("cluster_cidr", Value),
    k("service_cluster_ip_range", Value),
];

/// `SchedulerService`.
pub(super) const SCHEDULER_SERVICE: &[Key] = &[
    k("image", Value),
    k("extra_args", Free),
    k("extra_args_array", Free),
    k("extra_binds", Value),
    k("extra_env", Value),
    k("win_extra_args", Free),
    k("win_extra_args_array", Free),
    k("win_extra_binds", Value),
    k("win_extra_env", Value),
];

/// `KubeletService`.
pub(super) const KUBELET_SERVICE: &[Key] = &[
    k("image", Value),
    k("extra_args", Free),
    k("extra_args_array", Free),
    k("extra_binds", Value),
    k("extra_env", Value),
    k("win_extra_args", Free),
    k("win_extra_args_array", Free),
    k("win_extra_binds", Value),
    k("win_extra_env", Value),
    k("cluster_domain", Value),
    k("infra_container_image", Value),
    k("cluster_dns_server", Value),
    k("fail_swap_on", Value),
    k("generate_serving_certificate", Value),
];

/// `KubeproxyService`.
pub(super) const KUBEPROXY_SERVICE: &[Key] = &[
    k("image", Value),
    k("extra_args", Free),
    k("extra_args_array", Free),
    k("extra_binds", Value),
    k("extra_env", Value),
    k("win_extra_args", Free),
    k("win_extra_args_array", Free),
    k("win_extra_binds", Value),
    k("win_extra_env", Value),
];
