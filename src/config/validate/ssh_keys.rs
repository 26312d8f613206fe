//! The SSH key and certificate files cluster.yml names: each must be readable (a
//! certificate an OpenSSH one) before a host is dialed, and a refusal points at the line
//! that names it. These read the workstation's files, so they run after cluster.yml is
//! loaded, only for commands that dial.

use crate::config::{CertSource, ConfigError, LoadedConfig, SshAuth};

/// Checks that every SSH key and certificate file cluster.yml names can be read, pointing
/// at the line.
pub fn check_ssh_keys(cfg: &LoadedConfig) -> Result<(), ConfigError> {
    check_node_keys(cfg)?;
    if let Some(b) = &cfg.cluster.bastion
        && b.ssh.key.is_none()
        && b.ssh.key_path_explicit
        && let Err(e) = std::fs::read(&b.ssh.key_path)
    {
        let at = if cfg.is_written("bastion_host.ssh_key_path") { "bastion_host.ssh_key_path" } else { "ssh_key_path" };
        return Err(cfg.problem_at(
            at,
            format!("SSH key {} for the bastion host {} {} ({e})", b.ssh.key_path.display(), b.address, unreadable(&e)),
            "this key",
            Some("fix ssh_key_path under bastion_host (the cluster's applies when it names none)".into()),
        ));
    }
    let nodes = cfg.cluster.nodes.iter().map(|n| (format!("node {}", n.address), &n.ssh));
    let bastion = cfg.cluster.bastion.iter().map(|b| (format!("the bastion host {}", b.address), &b.ssh));
    for (who, auth) in nodes.chain(bastion) {
        check_cert_file(cfg, &who, auth)?;
    }
    Ok(())
}

fn unreadable(e: &std::io::Error) -> &'static str {
    if e.kind() == std::io::ErrorKind::NotFound { "does not exist" } else { "cannot be read" }
}

/// A certificate file must hold an OpenSSH certificate: ssh would skip anything else without
/// a word, and the login would fail for a reason nobody sees.
fn check_cert_file(cfg: &LoadedConfig, who: &str, auth: &SshAuth) -> Result<(), ConfigError> {
    let Some(cert) = &auth.cert else { return Ok(()) };
    let CertSource::File(path) = &cert.source else { return Ok(()) };
    let problem = match std::fs::read_to_string(path) {
        Err(e) => format!("SSH certificate {} for {who} {} ({e})", path.display(), unreadable(&e)),
        Ok(text) if !crate::config::is_openssh_cert(text.trim()) => {
            format!("{} (the SSH certificate for {who}) is not an OpenSSH certificate", path.display())
        }
        Ok(_) => return Ok(()),
    };
    Err(cfg.problem_at(
        &cert.at,
        problem,
        "this certificate",
        Some("name the `-cert.pub` file that `ssh-keygen -s` wrote for the key".into()),
    ))
}

fn check_node_keys(cfg: &LoadedConfig) -> Result<(), ConfigError> {
    for n in &cfg.cluster.nodes {
        // A key cluster.yml does not name is ssh's to find (agent, ~/.ssh/config, id_*).
        if n.ssh.key.is_some() || !n.ssh.key_path_explicit {
            continue;
        }
        let p = &n.ssh.key_path;
        if let Err(e) = std::fs::read(p) {
            // The node's own key when it names one, else the top-level ssh_key_path.
            let node_key = format!("nodes[{}].ssh_key_path", n.index);
            let path = if !cfg.source.contains("ssh_key_path") {
                format!("nodes[{}]", n.index)
            } else if cfg.is_written(&node_key) {
                node_key
            } else {
                "ssh_key_path".to_string()
            };
            return Err(cfg.problem_at(
                &path,
                format!("SSH key {} for node {} {} ({e})", p.display(), n.address, unreadable(&e)),
                "this key",
                Some("fix ssh_key_path, or use --ssh-agent-auth".into()),
            ));
        }
    }
    Ok(())
}
