//! Every key RKE's cluster.yml knows, at every depth, and a walker that names the keys of a
//! document that neither RKE nor rkectl reads.
//!
//! RKE reads cluster.yml with gopkg.in/yaml.v2 into its Go type `RancherKubernetesEngineConfig`
//! and silently drops every key it does not know: `s3_backup_config:` (the key is
//! `s3backupconfig`) leaves snapshots on the hosts while the user believes they go to S3.
//! rkectl reads a subset of the same file, so a key unknown to RKE is unknown to rkectl too.
//!
//! The table below mirrors the Go types of rancher/rke v1.6.3 (commit 40c5dd4, 2024-10-04):
//! `types/rke_types.go`, `types/backup_types.go` and `types/update_strategy_types.go`, from
//! `RancherKubernetesEngineConfig` down, one constant per Go struct, named after it. It was
//! derived once from their yaml tags, with yaml.v2's rules:
//!
//! - a field's key is its `yaml:"name"` tag; a tag with no name (`yaml:",omitempty"`), or no
//!   yaml tag at all, gives the field name lower-cased (`S3BackupConfig` → `s3backupconfig`,
//!   `Iface` → `iface`); `yaml:"-"` is no key;
//! - `yaml:",inline"` splices the embedded struct's keys (`BaseService` into every service);
//! - maps with free keys (`extra_args`, `labels`, `node_selector`, `options`…) are
//!   [`Shape::Free`]: keys below them are the user's own;
//! - sections RKE re-reads with Kubernetes' JSON decoders after yaml.v2
//!   (`admission_configuration`, `audit_log.configuration.policy`,
//!   `event_rate_limit.configuration`, `secrets_encryption_config.custom_config`, every
//!   `update_strategy`, `ingress.extra_envs`/`extra_volumes`/`extra_volume_mounts`) are
//!   [`Shape::Free`] too: Kubernetes checks them, with its own spelling rules;
//! - `tolerations` are Kubernetes' `core/v1.Toleration`, which has no yaml tags: yaml.v2
//!   knows its fields by their lower-cased names (`tolerationseconds`), as RKE's own
//!   reference writes them.
//!
//! Two keys are rkectl's own (RKE ignores both, `--strict` refuses neither, and each has its
//! own warning): `system_images.rkectl_tools`, the image older rkectl versions ran their
//! helpers in, no longer used; and `services.etcd.backup_config.rkectl_drill`, a drill of each
//! recurring snapshot.

use super::yaml::{Mapping, Value};

/// A key RKE knows, and what its value holds.
#[derive(Debug, Clone, Copy)]
pub struct Key {
    /// The key as cluster.yml spells it.
    pub name: &'static str,
    /// What is below it.
    pub shape: Shape,
}

/// What a key's value holds, as far as keys go.
#[derive(Debug, Clone, Copy)]
pub enum Shape {
    /// A scalar, or a list of scalars: no keys below.
    Value,
    /// Anything: a map whose keys the user chooses, or a Kubernetes object RKE re-reads.
    /// Keys below are not checked.
    Free,
    /// A mapping with these keys (a Go struct).
    Struct(&'static [Key]),
    /// A list of mappings with these keys (a Go slice of structs).
    List(&'static [Key]),
    /// A mapping from names the user chooses to mappings with these keys (a Go map of structs).
    Map(&'static [Key]),
}

impl Shape {
    /// The shape of `key`'s value in a mapping of this shape (`Value` for a key RKE does not
    /// know: nothing below it is read).
    pub fn child(self, key: &str) -> Shape {
        match self {
            Shape::Struct(keys) => keys.iter().find(|k| k.name == key).map_or(Shape::Value, |k| k.shape),
            Shape::Map(keys) => Shape::Struct(keys),
            Shape::Free => Shape::Free,
            Shape::Value | Shape::List(_) => Shape::Value,
        }
    }

    /// The shape of each element of a list of this shape.
    pub fn element(self) -> Shape {
        match self {
            Shape::List(keys) => Shape::Struct(keys),
            Shape::Free => Shape::Free,
            _ => Shape::Value,
        }
    }
}

/// The top level of cluster.yml.
pub const ROOT: Shape = Shape::Struct(table::ROOT_KEYS);

/// A key of the document that neither RKE nor rkectl reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownKey {
    /// Where the key is, as [`super::spans::SpanIndex`] names it:
    /// `services.etcd.backup_config.s3_backup_config`, `nodes[1].usr`.
    pub path: String,
    /// Where the mapping holding it is (empty at the top level).
    pub parent: String,
    /// The key as written.
    pub key: String,
    /// The known key closest to it at that place, when one is close enough to be a typo.
    pub suggestion: Option<&'static str>,
    /// Every key RKE knows at that place.
    pub known: Vec<&'static str>,
}

/// Every key of `doc` (merge keys already applied) that RKE does not know, in document order.
pub fn unknown_keys(doc: &Value) -> Vec<UnknownKey> {
    let mut out = Vec::new();
    walk(doc, ROOT, "", &mut out);
    out
}

fn walk(v: &Value, shape: Shape, path: &str, out: &mut Vec<UnknownKey>) {
    match (shape, untagged(v)) {
        (Shape::Struct(keys), Value::Mapping(m)) => walk_struct(m, keys, path, out),
        (Shape::List(keys), Value::Sequence(items)) => {
            for (i, item) in items.iter().enumerate() {
                if let Value::Mapping(m) = untagged(item) {
                    walk_struct(m, keys, &format!("{path}[{i}]"), out);
                }
            }
        }
        (Shape::Map(keys), Value::Mapping(m)) => {
            for (k, item) in m {
                if let Value::Mapping(inner) = untagged(item) {
                    walk_struct(inner, keys, &join(path, &key_text(k)), out);
                }
            }
        }
        // Free-form, scalars, and values of the wrong type (RKE refuses those itself).
        _ => {}
    }
}

fn walk_struct(m: &Mapping, keys: &'static [Key], path: &str, out: &mut Vec<UnknownKey>) {
    for (k, v) in m {
        let name = key_text(k);
        let here = join(path, &name);
        match keys.iter().find(|key| key.name == name) {
            Some(key) => walk(v, key.shape, &here, out),
            None => out.push(UnknownKey {
                path: here,
                parent: path.to_string(),
                suggestion: suggest(&name, keys),
                known: keys.iter().map(|k| k.name).collect(),
                key: name,
            }),
        }
    }
}

fn untagged(v: &Value) -> &Value {
    match v {
        Value::Tagged(t) => untagged(&t.value),
        v => v,
    }
}

/// A mapping key as text, as the span index names it (keys are strings in cluster.yml;
/// other scalars are written out, anything else is a placeholder).
pub fn key_text(k: &Value) -> String {
    match untagged(k) {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Null => "null".to_string(),
        Value::Sequence(_) => "[…]".to_string(),
        Value::Mapping(_) => "{…}".to_string(),
        Value::Tagged(_) => unreachable!("untagged"),
    }
}

/// `path.key`, or `key` at the top level.
pub fn join(path: &str, key: &str) -> String {
    if path.is_empty() { key.to_string() } else { format!("{path}.{key}") }
}

/// The known key most like `key`, if it is like enough to be what was meant: the same
/// letters once case, `_` and `-` are set aside, a few letters off (Damerau-Levenshtein,
/// normalised to the length), or a start of it (`bucket` for `bucket_name`).
pub fn suggest(key: &str, known: &[Key]) -> Option<&'static str> {
    fn norm(s: &str) -> String {
        s.chars().filter(|c| *c != '_' && *c != '-').flat_map(char::to_lowercase).collect()
    }
    let typed = norm(key);
    let mut best: Option<(f64, &'static str)> = None;
    for k in known {
        let candidate = norm(k.name);
        let mut score = strsim::normalized_damerau_levenshtein(&typed, &candidate);
        let shorter = typed.chars().count().min(candidate.chars().count());
        if shorter >= 4 && (candidate.starts_with(&typed) || typed.starts_with(&candidate)) {
            score = score.max(SIMILAR);
        }
        if best.is_none_or(|(b, _)| score > b) {
            best = Some((score, k.name));
        }
    }
    best.filter(|(score, _)| *score >= SIMILAR).map(|(_, name)| name)
}

/// How alike (1 is the same) two keys must be for one to be suggested for the other.
const SIMILAR: f64 = 0.7;

/// The table: one constant per Go struct of RKE, in the order RKE declares its fields.
mod table {
    use super::Key;
    use super::Shape::*;

    const fn k(name: &'static str, shape: super::Shape) -> Key {
        Key { name, shape }
    }

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

    /// `RKEConfigNode`.
    const RKE_CONFIG_NODE: &[Key] = &[
        k("nodeName", Value),
        k("address", Value),
        k("port", Value),
        k("internal_address", Value),
        k("role", Value),
        k("hostname_override", Value),
        k("user", Value),
        k("docker_socket", Value),
        k("ssh_agent_auth", Value),
        k("ssh_key", Value),
        k("ssh_key_path", Value),
        k("ssh_cert", Value),
        k("ssh_cert_path", Value),
        k("labels", Free),
        k("taints", List(RKE_TAINT)),
    ];

    /// `RKETaint`.
    const RKE_TAINT: &[Key] = &[k("key", Value), k("value", Value), k("effect", Value), k("timeAdded", Value)];

    /// `RKEConfigServices`.
    const RKE_CONFIG_SERVICES: &[Key] = &[
        k("etcd", Struct(ETCD_SERVICE)),
        k("kube-api", Struct(KUBE_API_SERVICE)),
        k("kube-controller", Struct(KUBE_CONTROLLER_SERVICE)),
        k("scheduler", Struct(SCHEDULER_SERVICE)),
        k("kubelet", Struct(KUBELET_SERVICE)),
        k("kubeproxy", Struct(KUBEPROXY_SERVICE)),
    ];

    /// `ETCDService`.
    const ETCD_SERVICE: &[Key] = &[
        k("image", Value),
        k("extra_args", Free),
        k("extra_args_array", Free),
        k("extra_binds", Value),
        k("extra_env", Value),
        k("win_extra_args", Free),
        k("win_extra_args_array", Free),
        k("win_extra_binds", Value),
        k("win_extra_env", Value),
        k("external_urls", Value),
        k("ca_cert", Value),
        k("cert", Value),
        k("key", Value),
        k("path", Value),
        k("uid", Value),
        k("gid", Value),
        k("snapshot", Value),
        k("retention", Value),
        k("creation", Value),
        k("backup_config", Struct(BACKUP_CONFIG)),
    ];

    /// `BackupConfig`.
    const BACKUP_CONFIG: &[Key] = &[
        k("enabled", Value),
        k("interval_hours", Value),
        k("retention", Value),
        k("s3backupconfig", Struct(S3_BACKUP_CONFIG)),
        k("safe_timestamp", Value),
        k("timeout", Value),
        // rkectl's own key (RKE ignores it): its warning says so where it is read.
        k("rkectl_drill", Value),
    ];

    /// `S3BackupConfig`.
    const S3_BACKUP_CONFIG: &[Key] = &[
        k("access_key", Value),
        k("secret_key", Value),
        k("bucket_name", Value),
        k("region", Value),
        k("endpoint", Value),
        k("custom_ca", Value),
        k("folder", Value),
    ];

    /// `KubeAPIService`.
    const KUBE_API_SERVICE: &[Key] = &[
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
    const SECRETS_ENCRYPTION_CONFIG: &[Key] = &[k("enabled", Value), k("custom_config", Free)];

    /// `AuditLog`.
    const AUDIT_LOG: &[Key] = &[k("enabled", Value), k("configuration", Struct(AUDIT_LOG_CONFIG))];

    /// `AuditLogConfig`.
    const AUDIT_LOG_CONFIG: &[Key] = &[
        k("max_age", Value),
        k("max_backup", Value),
        k("max_size", Value),
        k("path", Value),
        k("format", Value),
        k("policy", Free),
    ];

    /// `EventRateLimit`.
    const EVENT_RATE_LIMIT: &[Key] = &[k("enabled", Value), k("configuration", Free)];

    /// `KubeControllerService`.
    const KUBE_CONTROLLER_SERVICE: &[Key] = &[
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
    const SCHEDULER_SERVICE: &[Key] = &[
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
    const KUBELET_SERVICE: &[Key] = &[
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
    const KUBEPROXY_SERVICE: &[Key] = &[
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

    /// `NetworkConfig`.
    const NETWORK_CONFIG: &[Key] = &[
        k("plugin", Value),
        k("options", Free),
        k("mtu", Value),
        k("calico_network_provider", Struct(CALICO_NETWORK_PROVIDER)),
        k("canal_network_provider", Struct(CANAL_NETWORK_PROVIDER)),
        k("flannel_network_provider", Struct(FLANNEL_NETWORK_PROVIDER)),
        k("weave_network_provider", Struct(WEAVE_NETWORK_PROVIDER)),
        k("aci_network_provider", Struct(ACI_NETWORK_PROVIDER)),
        k("node_selector", Free),
        k("update_strategy", Free),
        k("tolerations", List(TOLERATION)),
    ];

    /// `CalicoNetworkProvider`.
    const CALICO_NETWORK_PROVIDER: &[Key] = &[k("cloudprovider", Value)];

    /// `CanalNetworkProvider`.
    const CANAL_NETWORK_PROVIDER: &[Key] = &[k("iface", Value)];

    /// `FlannelNetworkProvider`.
    const FLANNEL_NETWORK_PROVIDER: &[Key] = &[k("iface", Value)];

    /// `WeaveNetworkProvider`.
    const WEAVE_NETWORK_PROVIDER: &[Key] = &[k("password", Value)];

    /// `AciNetworkProvider`.
    const ACI_NETWORK_PROVIDER: &[Key] = &[
        k("system_id", Value),
        k("apic_hosts", Value),
        k("token", Value),
        k("apic_user_name", Value),
        k("apic_user_key", Value),
        k("apic_user_crt", Value),
        k("apic_refresh_time", Value),
        k("vmm_domain", Value),
        k("vmm_controller", Value),
        k("encap_type", Value),
        k("node_subnet", Value),
        k("mcast_range_start", Value),
        k("mcast_range_end", Value),
        k("aep", Value),
        k("vrf_name", Value),
        k("vrf_tenant", Value),
        k("l3out", Value),
        k("l3out_external_networks", Value),
        k("extern_dynamic", Value),
        k("extern_static", Value),
        k("node_svc_subnet", Value),
        k("kube_api_vlan", Value),
        k("service_vlan", Value),
        k("infra_vlan", Value),
        k("tenant", Value),
        k("ovs_memory_limit", Value),
        k("ovs_memory_request", Value),
        k("image_pull_policy", Value),
        k("image_pull_secret", Value),
        k("service_monitor_interval", Value),
        k("pbr_tracking_non_snat", Value),
        k("install_istio", Value),
        k("istio_profile", Value),
        k("drop_log_enable", Value),
        k("controller_log_level", Value),
        k("host_agent_log_level", Value),
        k("opflex_log_level", Value),
        k("use_aci_cni_priority_class", Value),
        k("no_priority_class", Value),
        k("max_nodes_svc_graph", Value),
        k("snat_contract_scope", Value),
        k("pod_subnet_chunk_size", Value),
        k("enable_endpoint_slice", Value),
        k("snat_namespace", Value),
        k("ep_registry", Value),
        k("opflex_mode", Value),
        k("snat_port_range_start", Value),
        k("snat_port_range_end", Value),
        k("snat_ports_per_node", Value),
        k("opflex_client_ssl", Value),
        k("use_privileged_container", Value),
        k("use_host_netns_volume", Value),
        k("use_opflex_server_volume", Value),
        k("subnet_domain_name", Value),
        k("kafka_brokers", Value),
        k("kafka_client_crt", Value),
        k("kafka_client_key", Value),
        k("capic", Value),
        k("use_aci_anywhere_crd", Value),
        k("overlay_vrf_name", Value),
        k("gbp_pod_subnet", Value),
        k("run_gbp_container", Value),
        k("run_opflex_server_container", Value),
        k("opflex_server_port", Value),
        k("duration_wait_for_network", Value),
        k("disable_wait_for_network", Value),
        k("apic_subscription_delay", Value),
        k("apic_refresh_ticker_adjust", Value),
        k("disable_periodic_snat_global_info_sync", Value),
        k("opflex_device_delete_timeout", Value),
        k("mtu_head_room", Value),
        k("node_pod_if_enable", Value),
        k("sriov_enable", Value),
        k("multus_disable", Value),
        k("use_cluster_role", Value),
        k("no_wait_for_service_ep_readiness", Value),
        k("add_external_subnets_to_rdconfig", Value),
        k("service_graph_endpoint_add_delay", Value),
        k("service_graph_endpoint_add_services", Free),
        k("hpp_optimization", Value),
        k("sleep_time_snat_global_info_sync", Value),
        k("opflex_agent_opflex_asyncjson_enabled", Value),
        k("opflex_agent_ovs_asyncjson_enabled", Value),
        k("opflex_agent_policy_retry_delay_timer", Value),
        k("aci_multipod", Value),
        k("opflex_device_reconnect_wait_timeout", Value),
        k("aci_multipod_ubuntu", Value),
        k("dhcp_renew_max_retry_count", Value),
        k("dhcp_delay", Value),
        k("use_system_node_priority_class", Value),
        k("aci_containers_controller_memory_request", Value),
        k("aci_containers_controller_memory_limit", Value),
        k("aci_containers_host_memory_request", Value),
        k("aci_containers_host_memory_limit", Value),
        k("mcast_daemon_memory_request", Value),
        k("mcast_daemon_memory_limit", Value),
        k("opflex_agent_memory_request", Value),
        k("opflex_agent_memory_limit", Value),
        k("aci_containers_memory_request", Value),
        k("aci_containers_memory_limit", Value),
        k("opflex_agent_statistics", Value),
        k("add_external_contract_to_default_epg", Value),
        k("enable_opflex_agent_reconnect", Value),
        k("opflex_openssl_compat", Value),
        k("node_snat_redirect_exclude", Free),
        k("toleration_seconds", Value),
        k("disable_hpp_rendering", Value),
        k("apic_connection_retry_limit", Value),
        k("taint_not_ready_node", Value),
        k("drop_log_disable_events", Value),
        k("opflex_startup_enabled", Value),
        k("opflex_startup_policy_duration", Value),
        k("opflex_startup_resolve_aft_conn", Value),
        k("opflex_switch_sync_delay", Value),
        k("opflex_switch_sync_dynamic", Value),
        k("unknown_mac_unicast_action", Value),
        k("enable_hpp_direct", Value),
        k("opflex_agent_reset_wait_delay", Value),
    ];

    /// Kubernetes' `core/v1.Toleration`, whose fields have no yaml tags: yaml.v2 lower-cases their names.
    const TOLERATION: &[Key] =
        &[k("key", Value), k("operator", Value), k("value", Value), k("effect", Value), k("tolerationseconds", Value)];

    /// `AuthnConfig`.
    const AUTHN_CONFIG: &[Key] = &[k("strategy", Value), k("sans", Value), k("webhook", Struct(AUTH_WEBHOOK_CONFIG))];

    /// `AuthWebhookConfig`.
    const AUTH_WEBHOOK_CONFIG: &[Key] = &[k("config_file", Value), k("cache_timeout", Value)];

    /// `RKESystemImages`.
    const RKE_SYSTEM_IMAGES: &[Key] = &[
        k("etcd", Value),
        k("alpine", Value),
        k("nginx_proxy", Value),
        k("cert_downloader", Value),
        k("kubernetes_services_sidecar", Value),
        k("kubedns", Value),
        k("dnsmasq", Value),
        k("kubedns_sidecar", Value),
        k("kubedns_autoscaler", Value),
        k("coredns", Value),
        k("coredns_autoscaler", Value),
        k("nodelocal", Value),
        k("kubernetes", Value),
        k("flannel", Value),
        k("flannel_cni", Value),
        k("calico_node", Value),
        k("calico_cni", Value),
        k("calico_controllers", Value),
        k("calico_ctl", Value),
        k("calico_flexvol", Value),
        k("canal_node", Value),
        k("canal_cni", Value),
        k("canal_controllers", Value),
        k("canal_flannel", Value),
        k("canal_flexvol", Value),
        k("weave_node", Value),
        k("weave_cni", Value),
        k("pod_infra_container", Value),
        k("ingress", Value),
        k("ingress_backend", Value),
        k("ingress_webhook", Value),
        k("metrics_server", Value),
        k("windows_pod_infra_container", Value),
        k("aci_cni_deploy_container", Value),
        k("aci_host_container", Value),
        k("aci_opflex_container", Value),
        k("aci_mcast_container", Value),
        k("aci_ovs_container", Value),
        k("aci_controller_container", Value),
        k("aci_gbp_server_container", Value),
        k("aci_opflex_server_container", Value),
        // rkectl's former helper image (RKE ignores the key; config warns it is unused).
        k("rkectl_tools", Value),
    ];

    /// `AuthzConfig`.
    const AUTHZ_CONFIG: &[Key] = &[k("mode", Value), k("options", Free)];

    /// `PrivateRegistry`.
    const PRIVATE_REGISTRY: &[Key] = &[
        k("url", Value),
        k("user", Value),
        k("password", Value),
        k("is_default", Value),
        k("ecr_credential_plugin", Struct(ECR_CREDENTIAL_PLUGIN)),
    ];

    /// `ECRCredentialPlugin`.
    const ECR_CREDENTIAL_PLUGIN: &[Key] =
        &[k("aws_access_key_id", Value), k("aws_secret_access_key", Value), k("aws_session_token", Value)];

    /// `IngressConfig`.
    const INGRESS_CONFIG: &[Key] = &[
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

    /// `CloudProvider`.
    const CLOUD_PROVIDER: &[Key] = &[
        k("name", Value),
        k("useInstanceMetadataHostname", Value),
        k("awsCloudProvider", Struct(AWS_CLOUD_PROVIDER)),
        k("azureCloudProvider", Struct(AZURE_CLOUD_PROVIDER)),
        k("openstackCloudProvider", Struct(OPENSTACK_CLOUD_PROVIDER)),
        k("vsphereCloudProvider", Struct(VSPHERE_CLOUD_PROVIDER)),
        k("harvesterCloudProvider", Struct(HARVESTER_CLOUD_PROVIDER)),
        k("customCloudProvider", Value),
    ];

    /// `AWSCloudProvider`.
    const AWS_CLOUD_PROVIDER: &[Key] =
        &[k("global", Struct(GLOBAL_AWS_OPTS)), k("service_override", Map(SERVICE_OVERRIDE))];

    /// `GlobalAwsOpts`.
    const GLOBAL_AWS_OPTS: &[Key] = &[
        k("zone", Value),
        k("vpc", Value),
        k("subnet-id", Value),
        k("routetable-id", Value),
        k("role-arn", Value),
        k("kubernetes-cluster-tag", Value),
        k("kubernetes-cluster-id", Value),
        k("disable-security-group-ingress", Value),
        k("elb-security-group", Value),
        k("disable-strict-zone-check", Value),
    ];

    /// `ServiceOverride`.
    const SERVICE_OVERRIDE: &[Key] = &[
        k("service", Value),
        k("region", Value),
        k("url", Value),
        k("signing-region", Value),
        k("signing-method", Value),
        k("signing-name", Value),
    ];

    /// `AzureCloudProvider`.
    const AZURE_CLOUD_PROVIDER: &[Key] = &[
        k("cloud", Value),
        k("tenantId", Value),
        k("subscriptionId", Value),
        k("resourceGroup", Value),
        k("location", Value),
        k("vnetName", Value),
        k("vnetResourceGroup", Value),
        k("subnetName", Value),
        k("securityGroupName", Value),
        k("securityGroupResourceGroup", Value),
        k("routeTableName", Value),
        k("primaryAvailabilitySetName", Value),
        k("vmType", Value),
        k("primaryScaleSetName", Value),
        k("aadClientId", Value),
        k("aadClientSecret", Value),
        k("aadClientCertPath", Value),
        k("aadClientCertPassword", Value),
        k("cloudProviderBackoff", Value),
        k("cloudProviderBackoffRetries", Value),
        k("cloudProviderBackoffExponent", Value),
        k("cloudProviderBackoffDuration", Value),
        k("cloudProviderBackoffJitter", Value),
        k("cloudProviderRateLimit", Value),
        k("cloudProviderRateLimitQPS", Value),
        k("cloudProviderRateLimitBucket", Value),
        k("useInstanceMetadata", Value),
        k("useManagedIdentityExtension", Value),
        k("userAssignedIdentityID", Value),
        k("maximumLoadBalancerRuleCount", Value),
        k("loadBalancerSku", Value),
        k("excludeMasterFromStandardLB", Value),
        k("tags", Value),
    ];

    /// `OpenstackCloudProvider`.
    const OPENSTACK_CLOUD_PROVIDER: &[Key] = &[
        k("global", Struct(GLOBAL_OPENSTACK_OPTS)),
        k("load_balancer", Struct(LOAD_BALANCER_OPENSTACK_OPTS)),
        k("block_storage", Struct(BLOCK_STORAGE_OPENSTACK_OPTS)),
        k("route", Struct(ROUTE_OPENSTACK_OPTS)),
        k("metadata", Struct(METADATA_OPENSTACK_OPTS)),
    ];

    /// `GlobalOpenstackOpts`.
    const GLOBAL_OPENSTACK_OPTS: &[Key] = &[
        k("auth-url", Value),
        k("username", Value),
        k("user-id", Value),
        k("password", Value),
        k("tenant-id", Value),
        k("tenant-name", Value),
        k("trust-id", Value),
        k("domain-id", Value),
        k("domain-name", Value),
        k("region", Value),
        k("ca-file", Value),
    ];

    /// `LoadBalancerOpenstackOpts`.
    const LOAD_BALANCER_OPENSTACK_OPTS: &[Key] = &[
        k("lb-version", Value),
        k("use-octavia", Value),
        k("subnet-id", Value),
        k("floating-network-id", Value),
        k("lb-method", Value),
        k("lb-provider", Value),
        k("create-monitor", Value),
        k("monitor-delay", Value),
        k("monitor-timeout", Value),
        k("monitor-max-retries", Value),
        k("manage-security-groups", Value),
    ];

    /// `BlockStorageOpenstackOpts`.
    const BLOCK_STORAGE_OPENSTACK_OPTS: &[Key] =
        &[k("bs-version", Value), k("trust-device-path", Value), k("ignore-volume-az", Value)];

    /// `RouteOpenstackOpts`.
    const ROUTE_OPENSTACK_OPTS: &[Key] = &[k("router-id", Value)];

    /// `MetadataOpenstackOpts`.
    const METADATA_OPENSTACK_OPTS: &[Key] = &[k("search-order", Value), k("request-timeout", Value)];

    /// `VsphereCloudProvider`.
    const VSPHERE_CLOUD_PROVIDER: &[Key] = &[
        k("global", Struct(GLOBAL_VSPHERE_OPTS)),
        k("virtual_center", Map(VIRTUAL_CENTER_CONFIG)),
        k("network", Struct(NETWORK_VSHPERE_OPTS)),
        k("disk", Struct(DISK_VSPHERE_OPTS)),
        k("workspace", Struct(WORKSPACE_VSPHERE_OPTS)),
    ];

    /// `GlobalVsphereOpts`.
    const GLOBAL_VSPHERE_OPTS: &[Key] = &[
        k("user", Value),
        k("password", Value),
        k("server", Value),
        k("port", Value),
        k("insecure-flag", Value),
        k("datacenter", Value),
        k("datacenters", Value),
        k("datastore", Value),
        k("working-dir", Value),
        k("soap-roundtrip-count", Value),
        k("vm-uuid", Value),
        k("vm-name", Value),
    ];

    /// `VirtualCenterConfig`.
    const VIRTUAL_CENTER_CONFIG: &[Key] = &[
        k("user", Value),
        k("password", Value),
        k("port", Value),
        k("datacenters", Value),
        k("soap-roundtrip-count", Value),
    ];

    /// `NetworkVshpereOpts`.
    const NETWORK_VSHPERE_OPTS: &[Key] = &[k("public-network", Value)];

    /// `DiskVsphereOpts`.
    const DISK_VSPHERE_OPTS: &[Key] = &[k("scsicontrollertype", Value)];

    /// `WorkspaceVsphereOpts`.
    const WORKSPACE_VSPHERE_OPTS: &[Key] = &[
        k("server", Value),
        k("datacenter", Value),
        k("folder", Value),
        k("default-datastore", Value),
        k("resourcepool-path", Value),
    ];

    /// `HarvesterCloudProvider`.
    const HARVESTER_CLOUD_PROVIDER: &[Key] = &[k("cloud_config", Value)];

    /// `BastionHost`.
    const BASTION_HOST: &[Key] = &[
        k("address", Value),
        k("port", Value),
        k("user", Value),
        k("ssh_agent_auth", Value),
        k("ssh_key", Value),
        k("ssh_key_path", Value),
        k("ssh_cert", Value),
        k("ssh_cert_path", Value),
        k("ignore_proxy_env_vars", Value),
    ];

    /// `MonitoringConfig`.
    const MONITORING_CONFIG: &[Key] = &[
        k("provider", Value),
        k("options", Free),
        k("node_selector", Free),
        k("update_strategy", Free),
        k("replicas", Value),
        k("tolerations", List(TOLERATION)),
        k("metrics_server_priority_class_name", Value),
    ];

    /// `RestoreConfig`.
    const RESTORE_CONFIG: &[Key] = &[k("restore", Value), k("snapshot_name", Value)];

    /// `RotateCertificates`.
    const ROTATE_CERTIFICATES: &[Key] = &[k("cacertificates", Value), k("services", Value)];

    /// `DNSConfig`.
    const DNS_CONFIG: &[Key] = &[
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
    const NODELOCAL: &[Key] = &[
        k("ip_address", Value),
        k("update_strategy", Free),
        k("node_selector", Free),
        k("node_local_dns_priority_class_name", Value),
    ];

    /// `LinearAutoscalerParams`.
    const LINEAR_AUTOSCALER_PARAMS: &[Key] = &[
        k("cores_per_replica", Value),
        k("nodes_per_replica", Value),
        k("min", Value),
        k("max", Value),
        k("prevent_single_point_failure", Value),
    ];

    /// `NodeUpgradeStrategy`.
    const NODE_UPGRADE_STRATEGY: &[Key] = &[
        k("max_unavailable_worker", Value),
        k("max_unavailable_controlplane", Value),
        k("drain", Value),
        k("node_drain_input", Struct(NODE_DRAIN_INPUT)),
    ];

    /// `NodeDrainInput`.
    const NODE_DRAIN_INPUT: &[Key] = &[
        k("force", Value),
        k("ignore_daemonsets", Value),
        k("delete_local_data", Value),
        k("grace_period", Value),
        k("timeout", Value),
    ];
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unknown(yaml: &str) -> Vec<(String, Option<&'static str>)> {
        let doc: Value = crate::config::yaml::from_str(yaml).unwrap();
        unknown_keys(&doc).into_iter().map(|u| (u.path, u.suggestion)).collect()
    }

    #[test]
    fn a_misspelled_s3backupconfig_is_named_with_the_key_meant() {
        let found = unknown(
            "services:\n  etcd:\n    backup_config:\n      interval_hours: 6\n      s3_backup_config:\n        bucket_name: b\n",
        );
        assert_eq!(found, [("services.etcd.backup_config.s3_backup_config".to_string(), Some("s3backupconfig"))]);
    }

    #[test]
    fn a_typo_in_a_node_is_named_with_its_index() {
        let found = unknown(
            "nodes:\n  - address: 10.0.0.1\n    user: root\n    role: [etcd]\n  - address: 10.0.0.2\n    usr: root\n    role: [etcd]\n    ssh_keypath: /k\n",
        );
        assert_eq!(
            found,
            [("nodes[1].usr".to_string(), Some("user")), ("nodes[1].ssh_keypath".to_string(), Some("ssh_key_path"))]
        );
    }

    #[test]
    fn keys_under_free_form_maps_are_the_users_own() {
        let found = unknown(
            "nodes:\n  - address: a\n    labels: {anything: goes, s3_backup_config: x}\nservices:\n  etcd:\n    extra_args: {listen-metrics-urls: x}\n  kube-api:\n    admission_configuration: {apiVersion: v1, plugins: [{name: x, configuration: {whatever: 1}}]}\n    audit_log:\n      configuration:\n        policy: {rules: [{level: Metadata}]}\nnetwork:\n  update_strategy: {rollingUpdate: {maxUnavailable: 6}}\n",
        );
        assert_eq!(found, []);
    }

    #[test]
    fn maps_of_structs_check_the_keys_of_each_entry() {
        let found = unknown(
            "cloud_provider:\n  vsphereCloudProvider:\n    virtual_center:\n      vc1.example: {user: u, pasword: p}\n",
        );
        assert_eq!(
            found,
            [("cloud_provider.vsphereCloudProvider.virtual_center.vc1.example.pasword".to_string(), Some("password"))]
        );
    }

    #[test]
    fn every_part_of_the_full_example_is_known() {
        let text = include_str!("../../examples/rke-cluster-full.yml");
        assert_eq!(unknown(text), []);
    }

    #[test]
    fn tolerations_are_read_by_their_lower_cased_field_names() {
        // yaml.v2 knows Kubernetes' Toleration by its Go field names, lower-cased: RKE drops
        // the JSON spelling `tolerationSeconds`.
        let found = unknown("network:\n  tolerations:\n    - {key: k, operator: Exists, tolerationSeconds: 300}\n");
        assert_eq!(found, [("network.tolerations[0].tolerationSeconds".to_string(), Some("tolerationseconds"))]);
    }

    #[test]
    fn suggestions_are_made_only_for_near_misses() {
        let top = match ROOT {
            Shape::Struct(keys) => keys,
            _ => unreachable!(),
        };
        assert_eq!(suggest("cluster-name", top), Some("cluster_name"));
        assert_eq!(suggest("Nodes", top), Some("nodes"));
        assert_eq!(suggest("sytem_images", top), Some("system_images"));
        assert_eq!(suggest("former_nodes", top), None);
        assert_eq!(suggest("x", top), None);
        assert_eq!(suggest("", top), None);
    }

    #[test]
    fn the_table_has_no_duplicate_key_at_any_place() {
        fn check(keys: &'static [Key], path: &str, count: &mut usize) {
            for (i, k) in keys.iter().enumerate() {
                assert!(!keys[..i].iter().any(|o| o.name == k.name), "{path}.{} twice", k.name);
                *count += 1;
                match k.shape {
                    Shape::Struct(sub) | Shape::List(sub) | Shape::Map(sub) => check(sub, &join(path, k.name), count),
                    Shape::Value | Shape::Free => {}
                }
            }
        }
        let mut count = 0;
        check(table::ROOT_KEYS, "", &mut count);
        assert_eq!(count, 558, "keys at every depth, rkectl_tools and rkectl_drill included");
    }
}
