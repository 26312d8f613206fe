//! What a dial needs besides the address: the key or agent, SSH certificates, the bastion,
//! and the private 0700 folder that holds a session's sockets and files.

use super::*;

/// What to say about the identity used, in authentication errors (never key material).
pub(super) struct Identity(pub(super) String);

/// Sets the key file and agent on `builder`; says which identity will be offered.
pub(super) fn configure_auth(
    node: &Node,
    options: &SshOptions,
    dir: &PrivateDir,
    builder: &mut SessionBuilder,
) -> HostResult<Identity> {
    let auth_err = |reason: String| HostError::Auth { host: node.address.clone(), reason };
    let agent = node.ssh.agent || options.ssh_agent_auth;
    let agent_sock = if agent { Some(agent_socket().map_err(auth_err)?) } else { None };
    if let Some(sock) = &agent_sock {
        builder.ssh_auth_sock(sock);
    }
    let (key, identity) = choose_key(&node.ssh, agent_sock.as_deref(), dir, "id").map_err(|e| match e {
        KeyError::Missing(reason) => auth_err(reason),
        KeyError::Write(e) => HostError::Io {
            host: node.address.clone(),
            op: "write the inline ssh_key to a private file".into(),
            reason: e.to_string(),
            transient: false,
        },
    })?;
    if let Some(key) = key {
        builder.keyfile(key);
    }
    Ok(identity)
}

/// `SSH_AUTH_SOCK`, or why the agent that cluster.yml or `--ssh-agent-auth` asks for is missing.
pub(super) fn agent_socket() -> Result<PathBuf, String> {
    std::env::var_os("SSH_AUTH_SOCK").filter(|s| !s.is_empty()).map(PathBuf::from).ok_or_else(|| {
        "SSH agent authentication was asked for (ssh_agent_auth or --ssh-agent-auth) \
         but SSH_AUTH_SOCK is not set; start an agent and add the key \
         (eval \"$(ssh-agent)\"; ssh-add KEY)"
            .to_string()
    })
}

/// Why no key file could be chosen.
pub(super) enum KeyError {
    /// The key cluster.yml names does not exist and no agent is asked for.
    Missing(String),
    /// The inline key could not be written.
    Write(io::Error),
}

/// The key file to offer alone (`None`: ssh chooses, as for a hand-typed `ssh`), and what
/// to call it in errors.
pub(super) fn choose_key(
    auth: &SshAuth,
    agent_sock: Option<&Path>,
    dir: &PrivateDir,
    file_name: &str,
) -> Result<(Option<PathBuf>, Identity), KeyError> {
    // The inline key is node-specific, so it wins over a (possibly defaulted) key path, as in RKE.
    if let Some(key) = auth.key.as_ref().filter(|k| !k.is_empty()) {
        let path = dir.write_private(file_name, key.expose()).map_err(KeyError::Write)?;
        return Ok((Some(path), Identity("the inline ssh_key from cluster.yml".into())));
    }
    if !auth.key_path_explicit {
        // cluster.yml names no key: ssh chooses, as it does for a hand-typed `ssh` (the
        // agent, IdentityFile of ~/.ssh/config for this host, ~/.ssh/id_ed25519, id_rsa…),
        // rather than one file offered alone.
        return Ok((
            None,
            Identity(match agent_sock {
                Some(s) => format!("the keys of the SSH agent at {} and those ssh finds itself", s.display()),
                None => "the keys ssh finds itself (SSH agent, ~/.ssh/config, ~/.ssh/id_*)".into(),
            }),
        ));
    }
    let path = &auth.key_path;
    if path.exists() {
        // The key cluster.yml names is the one offered (IdentitiesOnly), as RKE offers it.
        return Ok((Some(path.clone()), Identity(format!("the key {}", path.display()))));
    }
    if let Some(sock) = agent_sock {
        return Ok((None, Identity(format!("the keys of the SSH agent at {}", sock.display()))));
    }
    Err(KeyError::Missing(format!(
        "the SSH key {} does not exist; set ssh_key_path or ssh_key for this node, \
         or use --ssh-agent-auth",
        path.display()
    )))
}

/// How a certificate is named in errors (never its text).
pub(super) fn cert_name(cert: &SshCert) -> String {
    match &cert.source {
        CertSource::Inline(_) => format!("the inline certificate {}", cert.at),
        CertSource::File(p) => format!("the certificate {}", p.display()),
    }
}

/// The certificate as a file ssh can read: an inline one is written into the private folder.
pub(super) fn cert_file(cert: &SshCert, dir: &PrivateDir, file_name: &str) -> io::Result<PathBuf> {
    match &cert.source {
        CertSource::Inline(text) => dir.write_private(file_name, text),
        CertSource::File(p) => std::path::absolute(p),
    }
}

/// Writes the session's ssh_config when the node has a certificate or a bastion is in the
/// way (otherwise ssh reads the user's configuration as usual); the bastion's, if any, is
/// returned to explain a failed dial.
pub(super) fn configure_access(
    node: &Node,
    options: &SshOptions,
    dir: &PrivateDir,
    builder: &mut SessionBuilder,
) -> HostResult<Option<BastionDial>> {
    let local = |op: &str, reason: String| HostError::Io {
        host: node.address.clone(),
        op: op.to_string(),
        reason,
        transient: false,
    };
    let unwritable = |e: Unwritable| local("write the SSH configuration", e.to_string());
    let cert = match &node.ssh.cert {
        Some(c) => {
            Some(cert_file(c, dir, "id-cert.pub").map_err(|e| local("write the SSH certificate", e.to_string()))?)
        }
        None => None,
    };
    let bastion = match &options.bastion {
        Some(b) => Some(bastion_files(node, b, options, dir)?),
        None => None,
    };
    if cert.is_none() && bastion.is_none() {
        return Ok(None);
    }
    let proxy = bastion.as_ref().map(|b| Proxy { config: &b.config, log: &b.log, address: &b.bastion.address });
    let text = ssh_config::node_config(cert.as_deref(), proxy.as_ref()).map_err(unwritable)?;
    let path = dir.write_private("ssh.conf", &text).map_err(|e| local("write the SSH configuration", e.to_string()))?;
    builder.config_file(path);
    Ok(bastion)
}

/// Writes the bastion's config (and its inline key and certificate) into the private folder.
pub(super) fn bastion_files(
    node: &Node,
    b: &Bastion,
    options: &SshOptions,
    dir: &PrivateDir,
) -> HostResult<BastionDial> {
    let at_bastion = |reason: String| HostError::Auth {
        host: node.address.clone(),
        reason: format!("at the bastion host {}: {reason}", b.address),
    };
    let local = |op: &str, e: String| HostError::Io {
        host: node.address.clone(),
        op: format!("{op} of the bastion host"),
        reason: e,
        transient: false,
    };
    let agent = b.ssh.agent || options.ssh_agent_auth;
    let agent_sock = if agent { Some(agent_socket().map_err(at_bastion)?) } else { None };
    let (key, mut identity) = choose_key(&b.ssh, agent_sock.as_deref(), dir, "bastion-id").map_err(|e| match e {
        KeyError::Missing(_) => at_bastion(format!(
            "the SSH key {} does not exist; set bastion_host.ssh_key_path or ssh_key, or use --ssh-agent-auth",
            b.ssh.key_path.display()
        )),
        KeyError::Write(e) => local("write the inline ssh_key", e.to_string()),
    })?;
    let cert = match &b.ssh.cert {
        Some(c) => {
            identity.0.push_str(&format!(" with {}", cert_name(c)));
            Some(cert_file(c, dir, "bastion-id-cert.pub").map_err(|e| local("write the certificate", e.to_string()))?)
        }
        None => None,
    };
    let settings = BastionSettings {
        port: b.port,
        user: &b.user,
        strict_host_key_checking: match options.known_hosts {
            KnownHostsPolicy::Strict { .. } => "yes",
            KnownHostsPolicy::AcceptNew { .. } => "accept-new",
        },
        known_hosts: options.known_hosts.file(),
        connect_timeout: options.connect_timeout,
        server_alive_interval: SERVER_ALIVE_INTERVAL,
        key: key.as_deref(),
        cert: cert.as_deref(),
    };
    let text =
        ssh_config::bastion_config(&settings).map_err(|e| local("write the SSH configuration", e.to_string()))?;
    let config =
        dir.write_private("bastion.conf", &text).map_err(|e| local("write the SSH configuration", e.to_string()))?;
    Ok(BastionDial {
        bastion: b.clone(),
        config,
        log: dir.path().join("bastion.log"),
        identity,
        known_hosts: options.known_hosts.clone(),
    })
}

/// A dial through the bastion: its files, and what explains its failures.
pub(super) struct BastionDial {
    pub(super) bastion: Bastion,
    pub(super) config: PathBuf,
    /// What the bastion's ssh said (`-E`); the node's ssh never sees it.
    pub(super) log: PathBuf,
    pub(super) identity: Identity,
    pub(super) known_hosts: KnownHostsPolicy,
}

impl BastionDial {
    /// The bastion's part in a failed dial of `node`, if it said anything.
    pub(super) fn failure(&self, node: &Node) -> Option<HostError> {
        let said = std::fs::read_to_string(&self.log).ok()?;
        let text = clean_ssh_text(&said);
        if text.is_empty() {
            return None;
        }
        let b = &self.bastion;
        if text.contains("open failed") || text.contains("stdio forwarding failed") {
            // The bastion is in; the node does not answer it.
            return Some(HostError::Unreachable {
                host: node.address.clone(),
                reason: format!(
                    "the bastion host {} cannot reach it on port {}: {}",
                    b.address,
                    node.port,
                    one_line(&text)
                ),
                transient: !text.contains("Connection refused"),
            });
        }
        let addr = HostAddr(b.address.clone());
        let ctx = DialContext {
            host: &addr,
            user: &b.user,
            port: b.port,
            known_hosts: &self.known_hosts,
            identity: &self.identity,
        };
        let at = |reason: String| format!("at the bastion host {}: {reason}", b.address);
        let host = node.address.clone();
        Some(match classify_ssh_failure(&ctx, &text) {
            HostError::HostKey { reason, .. } => HostError::HostKey { host, reason: at(reason) },
            HostError::Auth { reason, .. } => HostError::Auth { host, reason: at(reason) },
            HostError::Unreachable { reason, transient, .. } => {
                HostError::Unreachable { host, reason: at(reason), transient }
            }
            other => other,
        })
    }
}

/// A 0700 folder for one session's sockets and key, removed on drop.
pub(super) struct PrivateDir {
    pub(super) path: PathBuf,
}

impl PrivateDir {
    pub(super) fn create() -> io::Result<PrivateDir> {
        let mut base = std::env::temp_dir();
        // Unix socket paths are limited to 108 bytes and ssh adds its own suffixes.
        if base.as_os_str().len() > 40 {
            base = PathBuf::from("/tmp");
        }
        let mut last = None;
        for _ in 0..16 {
            let path = base.join(format!("rkectl-{:012x}", random_u64() & 0xffff_ffff_ffff));
            match std::fs::DirBuilder::new().mode(0o700).create(&path) {
                Ok(()) => return Ok(PrivateDir { path }),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| io::Error::other("no free temporary folder name")))
    }

    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    /// Removes the inline keys (the node's and the bastion's), if any were written.
    pub(super) fn forget_key(&self) {
        for name in ["id", "bastion-id"] {
            let _ = std::fs::remove_file(self.path.join(name));
        }
    }

    /// Writes `name` where only this user can read it (ssh refuses a key file anything
    /// looser can read).
    pub(super) fn write_private(&self, name: &str, text: &str) -> io::Result<PathBuf> {
        use std::io::Write;
        let path = self.path.join(name);
        let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path)?;
        f.write_all(text.as_bytes())?;
        // OpenSSH rejects a key file whose last line has no newline.
        if !text.ends_with('\n') {
            f.write_all(b"\n")?;
        }
        Ok(path)
    }
}

impl Drop for PrivateDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_dir_is_private_and_removed() {
        use std::os::unix::fs::PermissionsExt;
        let d = PrivateDir::create().unwrap();
        let p = d.path().to_path_buf();
        assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o700);
        let key = d.write_private("id", "KEY").unwrap();
        assert_eq!(std::fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(std::fs::read_to_string(&key).unwrap(), "KEY\n");
        drop(d);
        assert!(!p.exists());
    }
}
