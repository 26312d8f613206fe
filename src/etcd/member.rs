//! The `etcd` container exactly as RKE runs it (`BuildEtcdProcess`), and how a running one
//! differs from it.
//!
//! rkectl creates the member container RKE would create, flag for flag, so that a cluster
//! RKE built is not churned by rkectl and the next `rke up` finds nothing to replace. RKE
//! decides to replace a container by comparing the image, the command and the binds as
//! sets (its flag order is Go's random map order) and the environment; rkectl compares the
//! same way, except for the flags that matter only when a member first starts
//! (`--initial-cluster`, `--initial-cluster-state`), which etcd ignores once it has data.

use super::{CLIENT_PORT, CLUSTER_TOKEN, PEER_PORT, listen_address, member_name, names, paths};
use crate::config::{Cluster, Node};
use crate::host::{ContainerSpec, RestartPolicy};
use crate::model::ClusterState;
use crate::model::observed::{ContainerFacts, EnvValue};
use crate::rke::pki::{CA_NAME, cert_path, etcd_cert_name, key_path};
use std::collections::BTreeSet;

/// The only label RKE puts on its containers.
pub const RKE_NAME_LABEL: &str = "io.rancher.rke.container.name";
/// The etcd binary in every etcd image.
pub const ETCD_BIN: &str = "/usr/local/bin/etcd";
/// Flags that matter only at a member's first start.
const FIRST_START_FLAGS: [&str; 2] = ["--initial-cluster=", "--initial-cluster-state="];

/// Paths of a member's TLS files on the host (and, mounted at the same place, in containers).
pub struct TlsFiles {
    pub ca: String,
    pub cert: String,
    pub key: String,
}

/// The TLS files of `node`, by RKE's names.
pub fn tls_files(node: &Node) -> TlsFiles {
    let name = etcd_cert_name(node);
    TlsFiles { ca: cert_path(CA_NAME), cert: cert_path(&name), key: key_path(&name) }
}

/// `(major, minor, patch, suffix)` of an image tag such as `v3.5.16` or `v3.4.3-rancher1`.
fn tag_version(image: &str) -> Option<(u32, u32, u32, String)> {
    let tag = image.rsplit_once(':').map(|(_, t)| t).filter(|t| !t.contains('/'))?;
    let (nums, suffix) = tag.trim_start_matches('v').split_once('-').unwrap_or((tag.trim_start_matches('v'), ""));
    let mut it = nums.split('.').map(|p| p.parse::<u32>());
    Some((it.next()?.ok()?, it.next()?.ok()?, it.next().unwrap_or(Ok(0)).ok()?, suffix.to_string()))
}

/// Whether the image's etcd is at least `v` (RKE's cut-offs are `vX.Y.Z-rancher99`, which
/// any release `X.Y.Z` passes; an unreadable tag counts as new).
fn etcd_at_least(image: &str, v: (u32, u32, u32)) -> bool {
    match tag_version(image) {
        Some((a, b, c, suffix)) => {
            (a, b, c) > v || ((a, b, c) == v && (suffix.is_empty() || suffix.as_str() >= "rancher99"))
        }
        None => true,
    }
}

/// The Kubernetes minor version of `kubernetes_version` (`v1.30.5-rancher1-1` → 30).
fn kubernetes_minor(cluster: &Cluster) -> Option<u32> {
    let v = cluster.kubernetes_version.as_deref()?;
    v.trim_start_matches('v').split('.').nth(1)?.parse().ok()
}

/// The member's command: the binary, then its flags sorted (RKE's order is random).
pub fn args(cluster: &Cluster, node: &Node, initial_cluster: &str, state: ClusterState) -> Vec<String> {
    let t = tls_files(node);
    let listen = listen_address(node);
    let internal = node.internal_address();
    let image = &cluster.etcd.image;
    let mut flags: Vec<(String, String)> = vec![
        ("name".into(), member_name(node)),
        ("data-dir".into(), format!("{}/", paths::DATA_DIR_IN_CONTAINER)),
        ("listen-client-urls".into(), format!("https://{listen}:{CLIENT_PORT}")),
        ("initial-advertise-peer-urls".into(), format!("https://{internal}:{PEER_PORT}")),
        ("listen-peer-urls".into(), format!("https://{listen}:{PEER_PORT}")),
        ("initial-cluster-token".into(), CLUSTER_TOKEN.into()),
        ("initial-cluster".into(), initial_cluster.into()),
        ("initial-cluster-state".into(), state.to_string()),
        ("trusted-ca-file".into(), t.ca.clone()),
        ("peer-trusted-ca-file".into(), t.ca),
        ("cert-file".into(), t.cert.clone()),
        ("key-file".into(), t.key.clone()),
        ("peer-cert-file".into(), t.cert),
        ("peer-key-file".into(), t.key),
    ];
    let advertise = if etcd_at_least(image, (3, 4, 3)) {
        format!("https://{internal}:{CLIENT_PORT}")
    } else {
        format!("https://{internal}:{CLIENT_PORT},https://{internal}:4001")
    };
    flags.push(("advertise-client-urls".into(), advertise));
    if etcd_at_least(image, (3, 4, 14)) {
        flags.push((
            "cipher-suites".into(),
            "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384".into(),
        ));
    }
    // Kubernetes' own etcd options, as RKE's metadata gives them per version.
    let minor = kubernetes_minor(cluster);
    if minor.is_none_or(|m| m >= 23) {
        flags.push(("client-cert-auth".into(), "true".into()));
        flags.push(("peer-client-cert-auth".into(), "true".into()));
    } else if minor.is_some_and(|m| (17..=21).contains(&m)) {
        flags.push(("enable-v2".into(), "true".into()));
    }
    // RKE's defaults, then the user's extra_args over everything.
    let mut extra: Vec<(String, String)> =
        vec![("election-timeout".into(), "5000".into()), ("heartbeat-interval".into(), "500".into())];
    extra.extend(cluster.etcd.extra_args.iter().map(|(k, v)| (k.trim_start_matches('-').to_string(), v.clone())));
    for (k, v) in extra {
        flags.retain(|(f, _)| f != &k);
        if !v.is_empty() {
            flags.push((k, v));
        }
    }
    let mut out: Vec<String> = flags.into_iter().map(|(k, v)| format!("--{k}={v}")).collect();
    if !out.iter().any(|f| f.starts_with("--client-cert-auth")) {
        out.push("--client-cert-auth".into());
    }
    if !out.iter().any(|f| f.starts_with("--peer-client-cert-auth")) {
        out.push("--peer-client-cert-auth".into());
    }
    out.sort();
    out.insert(0, ETCD_BIN.into());
    out
}

/// The member's environment, in RKE's order. `arch` is Docker's name for the machine.
pub fn env(cluster: &Cluster, node: &Node, arch: &str) -> Vec<String> {
    let t = tls_files(node);
    let endpoint = if node.has_own_internal_address() { node.internal_address() } else { "127.0.0.1" };
    let arch = if arch == "aarch64" { "arm64" } else { arch };
    let mut env = vec![
        "ETCDCTL_API=3".to_string(),
        format!("ETCDCTL_CACERT={}", t.ca),
        format!("ETCDCTL_CERT={}", t.cert),
        format!("ETCDCTL_KEY={}", t.key),
        format!("ETCDCTL_ENDPOINTS=https://{endpoint}:{CLIENT_PORT}"),
        format!("ETCD_UNSUPPORTED_ARCH={arch}"),
    ];
    env.extend(cluster.etcd.extra_env.iter().cloned());
    env
}

/// The member's binds: data and certificates, then `extra_binds`.
pub fn binds(cluster: &Cluster) -> Vec<String> {
    let z = if cluster.binds_with_z() { ":z" } else { "" };
    let mut b = vec![
        format!("{}:{}/{z}", paths::DATA_DIR, paths::DATA_DIR_IN_CONTAINER),
        format!("/etc/kubernetes:/etc/kubernetes{z}"),
    ];
    for e in &cluster.etcd.extra_binds {
        if !b.contains(e) {
            b.push(e.clone());
        }
    }
    b
}

/// The `etcd` member container.
pub fn spec(cluster: &Cluster, node: &Node, initial_cluster: &str, state: ClusterState, arch: &str) -> ContainerSpec {
    let mut spec = ContainerSpec::new(names::ETCD, &cluster.etcd.image);
    spec.cmd = args(cluster, node, initial_cluster, state);
    spec.env = env(cluster, node, arch);
    spec.binds = binds(cluster);
    spec.network_host = true;
    spec.restart = RestartPolicy::Always;
    spec.labels.insert(RKE_NAME_LABEL.into(), names::ETCD.into());
    // RKE compares no label, so rkectl's own mark costs nothing and says who made it.
    spec.labels.insert(super::containers::MANAGED_LABEL.into(), "true".into());
    spec
}

/// How the running `etcd` container differs from what cluster.yml asks for, in words;
/// empty when it does not. `arch` is the host's, as Docker names it.
pub fn differences(cluster: &Cluster, node: &Node, arch: &str, running: &ContainerFacts) -> Vec<String> {
    let mut out = Vec::new();
    if running.image != cluster.etcd.image {
        out.push(format!("image {} instead of {}", running.image, cluster.etcd.image));
    }
    let comparable = |a: &[String]| -> BTreeSet<String> {
        a.iter().filter(|f| !FIRST_START_FLAGS.iter().any(|p| f.starts_with(p))).cloned().collect()
    };
    // The initial cluster does not matter here; any value gives the same comparable set.
    let want = comparable(&args(cluster, node, "", ClusterState::New));
    let have = comparable(&running.args);
    for f in want.difference(&have) {
        out.push(format!("adds {f}"));
    }
    for f in have.difference(&want) {
        out.push(format!("drops {f}"));
    }
    // Docker adds the image's own environment (PATH…); only what rkectl sets must match.
    // Refresh compared each value with this same environment (`expected_env`): the facts
    // hold how each compared, never the values.
    for e in env(cluster, node, arch) {
        let k = e.split_once('=').map_or(e.as_str(), |(k, _)| k);
        match running.env.get(k) {
            Some(EnvValue::Matches) => {}
            Some(_) => out.push(format!("changes {k}")),
            None => out.push(format!("adds {k}")),
        }
    }
    let want: BTreeSet<String> = binds(cluster).into_iter().collect();
    let have: BTreeSet<String> = running.binds.iter().cloned().collect();
    for b in want.difference(&have) {
        out.push(format!("adds bind {b}"));
    }
    for b in have.difference(&want) {
        out.push(format!("drops bind {b}"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::observed::{MadeBy, compare_env};
    use std::path::Path;

    fn cluster(extra: &str) -> Cluster {
        let yaml = format!(
            "nodes:\n  - address: 10.0.0.1\n    user: u\n    role: [etcd]\n  - address: 1.2.3.4\n    internal_address: 10.0.0.2\n    hostname_override: Node2\n    user: u\n    role: [etcd]\nsystem_images:\n  etcd: rancher/mirrored-coreos-etcd:v3.5.12\n{extra}"
        );
        crate::config::parse(Path::new("cluster.yml"), yaml).unwrap().cluster
    }

    fn facts(spec: &ContainerSpec) -> ContainerFacts {
        ContainerFacts {
            image: spec.image.clone(),
            running: true,
            spec_hash: None,
            made_by: MadeBy::Rke,
            args: spec.cmd.clone(),
            // Observed against its own environment: every value as rkectl would set it.
            env: compare_env(&spec.env, &spec.env),
            binds: spec.binds.clone(),
        }
    }

    #[test]
    fn the_member_runs_with_rke_flags_names_and_binds() {
        let c = cluster("");
        let n2 = &c.nodes[1];
        let s = spec(
            &c,
            n2,
            "etcd-10.0.0.1=https://10.0.0.1:2380,etcd-node2=https://10.0.0.2:2380",
            ClusterState::New,
            "x86_64",
        );
        assert_eq!(s.entrypoint, None, "RKE sets no entrypoint: the etcd binary is the command's first word");
        assert_eq!(s.cmd[0], ETCD_BIN);
        for f in [
            "--name=etcd-node2",
            "--data-dir=/var/lib/rancher/etcd/",
            "--listen-client-urls=https://10.0.0.2:2379",
            "--advertise-client-urls=https://10.0.0.2:2379",
            "--cert-file=/etc/kubernetes/ssl/kube-etcd-10-0-0-2.pem",
            "--key-file=/etc/kubernetes/ssl/kube-etcd-10-0-0-2-key.pem",
            "--client-cert-auth=true",
            "--election-timeout=5000",
            "--heartbeat-interval=500",
            "--initial-cluster-token=etcd-cluster-1",
        ] {
            assert!(s.cmd.contains(&f.to_string()), "{f} missing from {:?}", s.cmd);
        }
        let n1 = spec(&c, &c.nodes[0], "", ClusterState::New, "x86_64");
        assert!(n1.cmd.contains(&"--listen-client-urls=https://0.0.0.0:2379".to_string()));
        assert!(n1.env.contains(&"ETCDCTL_ENDPOINTS=https://127.0.0.1:2379".to_string()));
        assert_eq!(s.binds, ["/var/lib/etcd:/var/lib/rancher/etcd/", "/etc/kubernetes:/etc/kubernetes"]);
        assert_eq!(s.labels.get(RKE_NAME_LABEL).map(String::as_str), Some("etcd"));
    }

    #[test]
    fn a_container_like_rkes_in_another_flag_order_has_no_differences() {
        let c = cluster("");
        let n = &c.nodes[0];
        let s = spec(&c, n, "etcd-a=https://x:2380", ClusterState::Existing, "x86_64");
        let mut f = facts(&s);
        f.args[1..].reverse();
        f.env.insert("PATH".into(), EnvValue::NotCompared);
        assert_eq!(differences(&c, n, "x86_64", &f), Vec::<String>::new());
    }

    #[test]
    fn differences_are_named() {
        let c = cluster("");
        let n = &c.nodes[0];
        let s = spec(&c, n, "", ClusterState::New, "x86_64");
        let changed = cluster("services:\n  etcd:\n    extra_args:\n      election-timeout: \"6000\"\n");
        let d = differences(&changed, n, "x86_64", &facts(&s));
        assert_eq!(d, ["adds --election-timeout=6000", "drops --election-timeout=5000"]);
    }

    #[test]
    fn old_kubernetes_keeps_selinux_labels_on_binds() {
        let c = cluster("kubernetes_version: v1.21.14-rancher1-1\n");
        assert_eq!(binds(&c), ["/var/lib/etcd:/var/lib/rancher/etcd/:z", "/etc/kubernetes:/etc/kubernetes:z"]);
        let a = args(&c, &c.nodes[0], "", ClusterState::New);
        assert!(a.contains(&"--client-cert-auth".to_string()) && a.contains(&"--enable-v2=true".to_string()));
    }
}
