//! How nodes are reached over SSH, as RKE reads it: each node's key and certificate with the
//! cluster's defaults (`hosts/dialer.go`, `cluster/defaults.go`), and `bastion_host`.
//!
//! One difference from RKE, on purpose: RKE reads the top-level `ssh_cert_path` into its
//! config but never uses it. rkectl offers it with the cluster's key (to the nodes and the
//! bastion that have no key of their own), which is what the key means; ssh still offers the
//! plain key after the certificate, so a server that accepted RKE accepts rkectl.

use super::expand_home;
use super::lenient::{LenientBool, ScalarString};
use super::model::{Bastion, CertSource, DEFAULT_SSH_PORT, SshAuth, SshCert};
use super::raw::RawBastion;
use super::validate::{Validator, s};
use crate::secret::Secret;

/// The cluster-level SSH settings that nodes and the bastion inherit.
pub(super) struct ClusterSsh {
    /// Top-level `ssh_key_path`.
    pub key_path: Option<String>,
    /// Top-level `ssh_cert_path`.
    pub cert: Option<SshCert>,
    /// Top-level `ssh_agent_auth`.
    pub agent: bool,
}

/// A node's or the bastion's own SSH settings, as written.
pub(super) struct OwnSsh<'a> {
    pub key: &'a Option<ScalarString>,
    pub key_path: &'a Option<ScalarString>,
    pub cert: &'a Option<ScalarString>,
    pub cert_path: &'a Option<ScalarString>,
    pub agent: Option<LenientBool>,
}

/// Whether `text` is an OpenSSH certificate line (`ssh-…-cert-v01@openssh.com BASE64 [comment]`),
/// the form RKE parses with `ssh.ParseAuthorizedKey`.
pub fn is_openssh_cert(text: &str) -> bool {
    let mut words = text.split_whitespace();
    let kind = words.next().unwrap_or_default();
    let blob = words.next().unwrap_or_default();
    kind.ends_with("-cert-v01@openssh.com")
        && !blob.is_empty()
        && blob.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '/' | '='))
}

impl Validator<'_> {
    /// The cluster-level settings (`ssh_key_path`, `ssh_cert_path`, `ssh_agent_auth`).
    pub(super) fn cluster_ssh(
        &mut self,
        key_path: &Option<ScalarString>,
        cert_path: &Option<ScalarString>,
        agent: Option<LenientBool>,
    ) -> ClusterSsh {
        ClusterSsh {
            key_path: s(key_path),
            cert: s(cert_path)
                .map(|p| SshCert { source: CertSource::File(expand_home(&p)), at: "ssh_cert_path".into() }),
            agent: agent.is_some_and(|b| b.0),
        }
    }

    /// A node's or the bastion's key and certificate, the cluster's filling what it leaves out.
    pub(super) fn ssh_auth(&mut self, base: &str, own: OwnSsh<'_>, cluster: &ClusterSsh) -> SshAuth {
        // Repeating the cluster's key path on a node is still the cluster's key.
        let own_key = s(own.key).is_some() || s(own.key_path).is_some_and(|p| Some(&p) != cluster.key_path.as_ref());
        let key_path = s(own.key_path);
        let key_path_explicit = key_path.is_some() || cluster.key_path.is_some();
        let key_path = key_path.or_else(|| cluster.key_path.clone()).unwrap_or_else(|| "~/.ssh/id_rsa".to_string());
        // The cluster's certificate goes with the cluster's key, not with a key of the node's.
        let cert = self.own_cert(base, own.cert, own.cert_path).or_else(|| cluster.cert.clone().filter(|_| !own_key));
        SshAuth {
            key: s(own.key).map(Secret::new),
            key_path: expand_home(&key_path),
            key_path_explicit,
            agent: own.agent.is_some_and(|b| b.0) || cluster.agent,
            cert,
        }
    }

    /// Warns when the top-level `ssh_cert_path` goes with no key that is used.
    pub(super) fn unused_cluster_cert(&mut self, cluster: &ClusterSsh, used: &[&SshAuth]) {
        let Some(cert) = &cluster.cert else { return };
        if used.iter().any(|a| a.cert.as_ref().is_some_and(|c| c.at == cert.at)) {
            return;
        }
        self.warning(
            &cert.at,
            "ssh_cert_path is offered with no key: every node (and the bastion) names a key of its own",
            "used by no node",
            Some("the top-level ssh_cert_path goes with the top-level ssh_key_path; put it on the nodes whose key it certifies"),
        );
    }

    /// `ssh_cert` or `ssh_cert_path` under `base`; the inline certificate wins, as in RKE.
    fn own_cert(&mut self, base: &str, inline: &Option<ScalarString>, path: &Option<ScalarString>) -> Option<SshCert> {
        if let Some(text) = s(inline) {
            let at = format!("{base}.ssh_cert");
            if !is_openssh_cert(&text) {
                self.problem(
                    &at,
                    "ssh_cert is not an OpenSSH certificate",
                    "not a certificate",
                    Some(
                        "paste the one line of the `-cert.pub` file that `ssh-keygen -s` wrote \
                         (it starts with ssh-ed25519-cert-v01@openssh.com or the like), or name \
                         the file with ssh_cert_path",
                    ),
                );
                return None;
            }
            return Some(SshCert { source: CertSource::Inline(text), at });
        }
        s(path).map(|p| SshCert { source: CertSource::File(expand_home(&p)), at: format!("{base}.ssh_cert_path") })
    }

    /// An SSH port: 1 to 65535, 22 when not written.
    pub(super) fn ssh_port(&mut self, path: &str, raw: &Option<ScalarString>) -> Option<u16> {
        let Some(p) = s(raw) else { return Some(DEFAULT_SSH_PORT) };
        match p.parse::<u16>() {
            Ok(n) if n > 0 => Some(n),
            _ => {
                self.problem(
                    path,
                    format!("`{p}` is not a valid SSH port"),
                    "not a port",
                    Some("ports are 1 to 65535; the default is 22"),
                );
                None
            }
        }
    }

    /// `bastion_host`: `None` when it has no address (RKE then dials nodes directly).
    pub(super) fn bastion(&mut self, raw: RawBastion, cluster: &ClusterSsh) -> Option<Bastion> {
        let base = "bastion_host";
        let Some(address) = s(&raw.address) else {
            // `rke config` writes every key of it, empty: that is no bastion, and says nothing.
            let written = [&raw.port, &raw.user, &raw.ssh_key, &raw.ssh_key_path, &raw.ssh_cert, &raw.ssh_cert_path];
            if written.iter().any(|v| s(v).is_some()) {
                let w = self.loc.at_key(
                    base,
                    "bastion_host has settings but no address, so nodes are dialed directly, as RKE does".into(),
                    "no address",
                    Some("add `address:` to reach the nodes through the bastion, or remove bastion_host".into()),
                );
                self.warnings.push(w);
            }
            return None;
        };
        if address.contains(char::is_whitespace) || address.contains('/') || address.starts_with('-') {
            self.problem(
                &format!("{base}.address"),
                format!("`{address}` is not a host address"),
                "bad address",
                Some("an IP address or a host name"),
            );
        }
        let port = self.ssh_port(&format!("{base}.port"), &raw.port);
        let user = s(&raw.user);
        if user.is_none() {
            let p = self.loc.at_key(
                base,
                "bastion_host has no user".into(),
                "user missing",
                Some("add `user:` with the SSH user on the bastion (RKE cannot log in without one either)".into()),
            );
            self.problems.push(p);
        }
        // `ignore_proxy_env_vars` keeps RKE's Kubernetes client from sending what should go
        // through the bastion to an HTTP proxy; rkectl sends nothing through the bastion but
        // SSH, which no proxy variable diverts, so there is nothing for it to change.
        let own = OwnSsh {
            key: &raw.ssh_key,
            key_path: &raw.ssh_key_path,
            cert: &raw.ssh_cert,
            cert_path: &raw.ssh_cert_path,
            agent: raw.ssh_agent_auth,
        };
        let ssh = self.ssh_auth(base, own, cluster);
        Some(Bastion { address, port: port?, user: user?, ssh })
    }
}

#[cfg(test)]
mod tests {
    use super::is_openssh_cert;
    use crate::config::{CertSource, LoadedConfig, parse};
    use std::path::{Path, PathBuf};

    const CERT: &str = "ssh-ed25519-cert-v01@openssh.com AAAAIHNzaC1lZDI1NTE5LWNlcnQ= ops";

    fn load(text: &str) -> LoadedConfig {
        parse(Path::new("cluster.yml"), text.to_string()).unwrap_or_else(|e| panic!("{:?}", e.problems()))
    }

    fn problems(text: &str) -> Vec<(String, Option<usize>, Option<usize>)> {
        let err = parse(Path::new("cluster.yml"), text.to_string()).expect_err("refused");
        err.problems().iter().map(|p| (p.message.clone(), p.line, p.column)).collect()
    }

    #[test]
    fn the_bastion_takes_the_clusters_key_agent_and_certificate_unless_it_has_its_own() {
        let text = "ssh_key_path: /keys/cluster\nssh_cert_path: /keys/cluster-cert.pub\nssh_agent_auth: true\n\
            bastion_host:\n  address: 10.0.0.9\n  user: jump\n\
            nodes:\n  - address: 10.0.0.1\n    user: root\n    role: [etcd]\n";
        let b = load(text).cluster.bastion.expect("a bastion");
        assert_eq!((b.address.as_str(), b.port, b.user.as_str()), ("10.0.0.9", 22, "jump"));
        assert_eq!(b.ssh.key_path, PathBuf::from("/keys/cluster"));
        assert!(b.ssh.key_path_explicit && b.ssh.agent);
        assert_eq!(b.ssh.cert.map(|c| c.source), Some(CertSource::File("/keys/cluster-cert.pub".into())));

        let own = text.replace("  user: jump\n", "  user: jump\n  port: 2222\n  ssh_key_path: /keys/jump\n");
        let b = load(&own).cluster.bastion.expect("a bastion");
        assert_eq!((b.port, b.ssh.key_path.as_path()), (2222, Path::new("/keys/jump")));
        assert_eq!(b.ssh.cert, None, "the cluster's certificate is for the cluster's key");
        let own_cert = own.replace("  port: 2222\n", &format!("  ssh_cert: {CERT}\n"));
        let b = load(&own_cert).cluster.bastion.expect("a bastion");
        let cert = b.ssh.cert.expect("its own certificate");
        assert_eq!((cert.source, cert.at.as_str()), (CertSource::Inline(CERT.into()), "bastion_host.ssh_cert"));
    }

    #[test]
    fn the_clusters_certificate_goes_with_the_clusters_key_and_is_named_when_nothing_uses_it() {
        let node = |key: &str| {
            format!("  - address: 10.0.0.{key}\n    user: root\n    role: [etcd]\n    ssh_key_path: /keys/{key}\n")
        };
        let text =
            format!("ssh_key_path: /keys/1\nssh_cert_path: /keys/1-cert.pub\nnodes:\n{}{}", node("1"), node("2"));
        let cfg = load(&text);
        let certs: Vec<bool> = cfg.cluster.nodes.iter().map(|n| n.ssh.cert.is_some()).collect();
        assert_eq!(certs, [true, false], "node 1 repeats the cluster's key, node 2 has its own");
        assert!(cfg.warnings.is_empty(), "{:?}", cfg.warnings);

        let cfg = load(&text.replacen("/keys/1\n", "/keys/0\n", 1));
        assert!(cfg.cluster.nodes.iter().all(|n| n.ssh.cert.is_none()));
        let [w] = &cfg.warnings[..] else { panic!("{:?}", cfg.warnings) };
        assert!(w.message.contains("ssh_cert_path is offered with no key"), "{}", w.message);
        assert_eq!((w.line, w.column), (Some(2), Some(16)));
    }

    #[test]
    fn a_bastion_without_address_is_no_bastion_and_says_so_only_when_it_has_settings() {
        let nodes = "nodes:\n  - address: 10.0.0.1\n    user: root\n    role: [etcd]\n";
        // What `rke config` writes when no bastion is asked for.
        let empty = format!(
            "{nodes}bastion_host:\n  address: \"\"\n  port: \"\"\n  user: \"\"\n  ssh_key: \"\"\n  ssh_key_path: \"\"\n  ignore_proxy_env_vars: false\n"
        );
        let cfg = load(&empty);
        assert!(cfg.cluster.bastion.is_none());
        assert!(cfg.warnings.is_empty(), "{:?}", cfg.warnings);

        let half = format!("{nodes}bastion_host:\n  user: jump\n");
        let cfg = load(&half);
        assert!(cfg.cluster.bastion.is_none());
        let [w] = &cfg.warnings[..] else { panic!("{:?}", cfg.warnings) };
        assert!(w.message.contains("no address, so nodes are dialed directly"), "{}", w.message);
        assert_eq!((w.line, w.column), (Some(5), Some(1)));
    }

    #[test]
    fn a_bastion_needs_a_user_a_port_and_an_address() {
        let nodes = "nodes:\n  - address: 10.0.0.1\n    user: root\n    role: [etcd]\n";
        let p = problems(&format!("{nodes}bastion_host:\n  address: 10.0.0.9\n  port: 99999\n"));
        assert_eq!(
            p,
            vec![
                ("`99999` is not a valid SSH port".to_string(), Some(7), Some(9)),
                ("bastion_host has no user".to_string(), Some(5), Some(1)),
            ]
        );
        let p = problems(&format!("{nodes}bastion_host:\n  address: -oProxyCommand=x\n  user: u\n"));
        assert_eq!(p, vec![("`-oProxyCommand=x` is not a host address".to_string(), Some(6), Some(12))]);
    }

    #[test]
    fn node_certificates_inline_from_a_file_or_the_clusters() {
        let node = "user: root\n    role: [etcd]\n";
        let text = format!(
            "ssh_cert_path: ~/c.pub\nnodes:\n  - address: 10.0.0.1\n    {node}\
             \x20 - address: 10.0.0.2\n    {node}    ssh_key_path: /k2\n\
             \x20 - address: 10.0.0.3\n    {node}    ssh_cert: {CERT}\n\
             \x20 - address: 10.0.0.4\n    {node}    ssh_cert_path: /c4.pub\n"
        );
        let c = load(&text).cluster;
        let certs: Vec<_> = c.nodes.iter().map(|n| n.ssh.cert.clone().map(|c| (c.source, c.at))).collect();
        let home = std::env::var("HOME").map(PathBuf::from).unwrap_or_default();
        assert_eq!(
            certs,
            vec![
                Some((CertSource::File(home.join("c.pub")), "ssh_cert_path".into())),
                None,
                Some((CertSource::Inline(CERT.into()), "nodes[2].ssh_cert".into())),
                Some((CertSource::File("/c4.pub".into()), "nodes[3].ssh_cert_path".into())),
            ]
        );
        let bad = "nodes:\n  - address: 10.0.0.1\n    user: root\n    role: [etcd]\n    ssh_cert: ~/.ssh/id-cert.pub\n";
        assert_eq!(problems(bad), vec![("ssh_cert is not an OpenSSH certificate".to_string(), Some(5), Some(15))]);
    }

    #[test]
    fn certificates_are_told_from_keys_and_paths() {
        assert!(is_openssh_cert("ssh-ed25519-cert-v01@openssh.com AAAAIHNzaC1lZDI1NTE5LWNlcnQ= user@host"));
        assert!(is_openssh_cert("ssh-rsa-cert-v01@openssh.com AAAA+/=="));
        assert!(!is_openssh_cert("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAA user@host"));
        assert!(!is_openssh_cert("~/.ssh/id_ed25519-cert.pub"));
        assert!(!is_openssh_cert("ssh-ed25519-cert-v01@openssh.com"));
        assert!(!is_openssh_cert("ssh-ed25519-cert-v01@openssh.com not*base64"));
    }
}
