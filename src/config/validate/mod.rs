//! Validation: checking the raw config against what RKE and rkectl accept, and building
//! the typed [`Cluster`] from it.
//!
//! # What it owns
//! Every rule about a value of cluster.yml once it has parsed: a node needs an address, a
//! user and a role, names are DNS-1123 and unique, durations and counts are positive, the
//! recurring snapshots' S3 target is complete. It does not read the text (that is
//! `config::read`'s job, whose YAML and type errors never reach here) and does no I/O:
//! whether an `ssh_key_path` can be read is checked later, through
//! [`LoadedConfig::problem_at`](super::LoadedConfig::problem_at).
//!
//! # How data flows through it
//! 1. cluster.yml's text is parsed by [`super::yaml`] and, merge keys applied, deserialised
//!    into [`RawConfig`] (RKE's field names, everything optional, scalars as written);
//!    alongside, [`super::spans::SpanIndex`] records where every value sits in the text.
//! 2. [`Validator::cluster`] walks the raw config section by section: `nodes.rs` for the
//!    nodes, `etcd.rs` for `services.etcd` and its `backup_config` (with `s3backupconfig`),
//!    this file for the rest it reads (service IP range, cluster domain, ignored keys). SSH
//!    access and private registries are checked by `impl Validator` blocks in
//!    `config/ssh_access.rs` and `config/registries.rs`.
//! 3. Each check that fails names the path of the value (`nodes[2].role[1]`); the
//!    [`Locator`] turns it into a [`ConfigProblem`] with span, line and column, through the
//!    span index (the closest parent when the value is missing). Problems and warnings are
//!    collected, never returned early, so one run reports them all.
//! 4. With no problem, the typed [`Cluster`] comes out, RKE's defaults applied; with any,
//!    `None`, and the caller reports every problem at once.

mod etcd;
pub(super) mod flags;
mod nodes;
pub(super) mod ssh_keys;

use super::ConfigProblem;
use super::lenient::ScalarString;
use super::locate::Locator;
use super::model::{Cluster, DEFAULT_CLUSTER_DOMAIN, DEFAULT_SERVICE_CLUSTER_IP_RANGE, SshAuth};
use super::raw::RawConfig;

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

    /// The whole of cluster.yml; `None` when any of it is a problem.
    pub(super) fn cluster(&mut self, raw: RawConfig) -> Option<Cluster> {
        let cluster_ssh = self.cluster_ssh(&raw.ssh_key_path, &raw.ssh_cert_path, raw.ssh_agent_auth);
        let nodes = self.nodes(raw.nodes.unwrap_or_default(), &cluster_ssh);
        let services = raw.services.unwrap_or_default();
        let etcd_raw = services.etcd.unwrap_or_default();
        let bastion = raw.bastion_host.and_then(|b| self.bastion(b, &cluster_ssh));
        let auths: Vec<&SshAuth> = nodes.iter().map(|n| &n.ssh).chain(bastion.iter().map(|b| &b.ssh)).collect();
        self.unused_cluster_cert(&cluster_ssh, &auths);
        let registries = self.registries(raw.private_registries.unwrap_or_default());
        let images = raw.system_images.unwrap_or_default();
        let image = self.etcd_image(&images.etcd, &etcd_raw.image, &registries);
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
        let etcd = self.etcd_service(etcd_raw, image);
        if !self.problems.is_empty() {
            return None;
        }
        Some(Cluster {
            name: s(&raw.cluster_name).unwrap_or_else(|| "local".to_string()),
            nodes,
            ignore_docker_version: raw.ignore_docker_version.map(|b| b.0).unwrap_or(false),
            etcd: etcd?,
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
