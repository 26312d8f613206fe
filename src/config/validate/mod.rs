//! Checking the raw config against what RKE and rkectl accept, and building the typed
//! [`Cluster`] from it.

mod etcd;
mod nodes;

use super::lenient::ScalarString;
use super::locate::Locator;
use super::model::{
    Cluster, DEFAULT_CLUSTER_DOMAIN, DEFAULT_CREATION, DEFAULT_ETCD_IMAGE, DEFAULT_RETENTION,
    DEFAULT_SERVICE_CLUSTER_IP_RANGE, EtcdService, RecurringSnapshots, Role, SshAuth,
};
use super::raw::RawConfig;
use super::{ConfigProblem, registries};
use std::collections::{BTreeMap, HashMap};

/// Collects every problem and warning while it builds the typed config, so that all of
/// them are reported at once.
pub(super) struct Validator<'a> {
    pub(super) loc: &'a Locator<'a>,
    pub(super) problems: Vec<ConfigProblem>,
    pub(super) warnings: Vec<ConfigProblem>,
}

/// A scalar's text, trimmed; `None` when it is missing or blank.
pub(super) fn s(v: &Option<ScalarString>) -> Option<String> {
    v.as_ref().map(|x| x.0.trim().to_string()).filter(|x| !x.is_empty())
}

impl Validator<'_> {
    pub(super) fn problem(&mut self, path: &str, message: impl Into<String>, label: &str, help: Option<&str>) {
        let p = self.loc.at(path, message.into(), label, help.map(str::to_string));
        self.problems.push(p);
    }

    pub(super) fn warning(&mut self, path: &str, message: impl Into<String>, label: &str, help: Option<&str>) {
        let p = self.loc.at(path, message.into(), label, help.map(str::to_string));
        self.warnings.push(p);
    }

    pub(super) fn cluster(&mut self, raw: RawConfig) -> Option<Cluster> {
        let cluster_ssh = self.cluster_ssh(&raw.ssh_key_path, &raw.ssh_cert_path, raw.ssh_agent_auth);
        let raw_nodes = raw.nodes.unwrap_or_default();
        if raw_nodes.is_empty() {
            let p = self.loc.at_key(
                "nodes",
                "cluster.yml lists no nodes".into(),
                "no nodes here",
                Some("add at least one node with the etcd role under `nodes:`".into()),
            );
            self.problems.push(p);
        }
        let mut nodes = Vec::new();
        let mut seen: HashMap<String, usize> = HashMap::new();
        let mut seen_names: HashMap<String, usize> = HashMap::new();
        for (i, rn) in raw_nodes.into_iter().enumerate() {
            if let Some(n) = self.node(i, rn, &cluster_ssh) {
                if let Some(first) = seen.insert(n.address.0.clone(), i) {
                    self.problem(
                        &format!("nodes[{i}].address"),
                        format!("duplicate node address {} (also nodes[{first}])", n.address),
                        "duplicate address",
                        Some("every node must have its own address; remove or change one of them"),
                    );
                }
                // RKE compares hostnames after lower-casing them (its defaults do), across
                // every node: two of them would be the same Kubernetes node and etcd member.
                if let Some(first) = seen_names.insert(n.hostname().to_string(), i) {
                    self.problem(
                        &format!("nodes[{i}]"),
                        format!(
                            "duplicate node name {} (also nodes[{first}]); as an etcd member it would be etcd-{}",
                            n.hostname(),
                            n.hostname()
                        ),
                        "duplicate node name",
                        Some("RKE refuses it too: give each node its own hostname_override"),
                    );
                }
                nodes.push(n);
            }
        }
        if !nodes.is_empty() && !nodes.iter().any(|n| n.has_role(Role::Etcd)) {
            let p = self.loc.at_key(
                "nodes",
                "no node has the etcd role".into(),
                "no etcd node among these",
                Some("add `etcd` to the `role:` list of at least one node".into()),
            );
            self.problems.push(p);
        }
        let services = raw.services.unwrap_or_default();
        let etcd_raw = services.etcd.unwrap_or_default();
        let bastion = raw.bastion_host.and_then(|b| self.bastion(b, &cluster_ssh));
        let auths: Vec<&SshAuth> = nodes.iter().map(|n| &n.ssh).chain(bastion.iter().map(|b| &b.ssh)).collect();
        self.unused_cluster_cert(&cluster_ssh, &auths);
        let registries = self.registries(raw.private_registries.unwrap_or_default());
        let images = raw.system_images.unwrap_or_default();
        // RKE takes the etcd image from system_images and overwrites services.etcd.image; a
        // default registry goes in front of the default image only.
        let image = s(&images.etcd)
            .unwrap_or_else(|| registries::with_default_registry(DEFAULT_ETCD_IMAGE, registries.default_url()));
        self.registry_for_pulls(&registries, &image);
        if let Some(ignored) = s(&etcd_raw.image).filter(|i| i != &image) {
            self.warning(
                "services.etcd.image",
                format!("services.etcd.image `{ignored}` is ignored, as RKE ignores it: etcd runs {image}"),
                "ignored",
                Some("set the image under system_images.etcd"),
            );
        }
        let kube_api = services.kube_api.unwrap_or_default();
        let kubernetes_service_ips = self.service_ips(&kube_api.service_cluster_ip_range);
        let cluster_domain = s(&services.kubelet.unwrap_or_default().cluster_domain)
            .unwrap_or_else(|| DEFAULT_CLUSTER_DOMAIN.to_string());
        if s(&images.rkectl_tools).is_some() {
            self.warning(
                "system_images.rkectl_tools",
                "system_images.rkectl_tools is ignored: rkectl needs no image of its own any more",
                "ignored",
                Some("helpers run in the etcd image, with rkectl's binary copied to the nodes; remove the line"),
            );
        }
        let extra_args: BTreeMap<String, String> =
            etcd_raw.extra_args.unwrap_or_default().into_iter().map(|(k, v)| (k, v.0)).collect();
        let extra_binds = etcd_raw.extra_binds.unwrap_or_default().into_iter().map(|v| v.0).collect();
        let extra_env = etcd_raw.extra_env.unwrap_or_default().into_iter().map(|v| v.0).collect();

        let legacy_on = etcd_raw.snapshot.map(|b| b.0).unwrap_or(false);
        let creation = self.duration("services.etcd.creation", &etcd_raw.creation, DEFAULT_CREATION);
        let retention = self.duration("services.etcd.retention", &etcd_raw.retention, DEFAULT_RETENTION);
        let (recurring, s3) = match etcd_raw.backup_config {
            Some(bc) => self.backup_config(bc, legacy_on, creation, retention),
            None if legacy_on => (RecurringSnapshots::Legacy { creation: creation?, retention: retention? }, None),
            None => (RecurringSnapshots::Disabled, None),
        };
        if !self.problems.is_empty() {
            return None;
        }
        Some(Cluster {
            name: s(&raw.cluster_name).unwrap_or_else(|| "local".to_string()),
            nodes,
            ignore_docker_version: raw.ignore_docker_version.map(|b| b.0).unwrap_or(false),
            etcd: EtcdService { image, extra_args, extra_binds, extra_env, recurring, s3 },
            kubernetes_version: s(&raw.kubernetes_version),
            kubernetes_service_ips: kubernetes_service_ips?,
            cluster_domain,
            bastion,
            registries,
        })
    }

    /// The first address of each range of `service_cluster_ip_range` (RKE's
    /// `GetKubernetesServiceIP`: the network address plus one).
    fn service_ips(&mut self, raw: &Option<ScalarString>) -> Option<Vec<std::net::IpAddr>> {
        let text = s(raw).unwrap_or_else(|| DEFAULT_SERVICE_CLUSTER_IP_RANGE.to_string());
        let mut out = Vec::new();
        for range in text.split(',').map(str::trim) {
            match first_service_ip(range) {
                Some(ip) => out.push(ip),
                None => {
                    self.problem(
                        "services.kube-api.service_cluster_ip_range",
                        format!("`{range}` is not a CIDR range"),
                        "not a CIDR",
                        Some("write it as RKE does, e.g. 10.43.0.0/16"),
                    );
                    return None;
                }
            }
        }
        Some(out)
    }
}

/// The network address of `cidr` plus one.
fn first_service_ip(cidr: &str) -> Option<std::net::IpAddr> {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
    let (addr, bits) = cidr.split_once('/')?;
    let bits: u32 = bits.parse().ok()?;
    match addr.parse::<IpAddr>().ok()? {
        IpAddr::V4(a) if bits <= 32 => {
            let mask = if bits == 0 { 0 } else { u32::MAX << (32 - bits) };
            Some(IpAddr::V4(Ipv4Addr::from((u32::from(a) & mask).wrapping_add(1))))
        }
        IpAddr::V6(a) if bits <= 128 => {
            let mask = if bits == 0 { 0 } else { u128::MAX << (128 - bits) };
            Some(IpAddr::V6(Ipv6Addr::from((u128::from(a) & mask).wrapping_add(1))))
        }
        _ => None,
    }
}
