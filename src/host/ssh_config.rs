//! The ssh_config files a session is dialed with when cluster.yml asks for more than ssh's
//! command line carries: a certificate (`CertificateFile`) or a bastion host.
//!
//! The bastion is a `ProxyCommand ssh -F BASTION_CONFIG -W [%h]:%p BASTION`, which is what
//! `-J`/`ProxyJump` runs, spelled out: the ssh that `-J` starts reads none of the options
//! given to the first one, so the bastion would be dialed without rkectl's host-key policy,
//! known_hosts file, BatchMode, timeouts, key or certificate. With a config file of its own,
//! the bastion gets all of them, and its errors go to a log rkectl reads (the first ssh only
//! sees the proxy's pipe close).
//!
//! `-F` replaces the user's and the system's configuration, so each file ends by including
//! both: rkectl's settings come first and win (ssh keeps the first value it reads), and
//! everything else in `~/.ssh/config` applies as it does to a hand-typed `ssh`.
//!
//! Rendering is pure; the files are written into the session's private folder by the caller.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

/// The two includes that stand for the configuration `-F` would otherwise skip.
const INCLUDES: &str = "Include ~/.ssh/config\nInclude /etc/ssh/ssh_config\n";

/// A value that cannot be written into an ssh_config file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} {value:?} cannot be given to ssh: it contains {why}")]
pub struct Unwritable {
    /// What the value is ("the certificate file").
    pub what: String,
    /// The value.
    pub value: String,
    /// What in it is the problem.
    pub why: &'static str,
}

/// A path as an ssh_config argument: quoted, with `%` escaped (ssh expands `%` tokens in
/// file names); what cannot be escaped is refused.
pub fn quoted_path(what: &str, path: &Path) -> Result<String, Unwritable> {
    let text = path.to_string_lossy();
    let why = if text.contains('"') {
        Some("a double quote")
    } else if text.contains(['\n', '\r']) {
        Some("a line break")
    } else if text.contains("${") {
        // ssh expands environment variables in file names, and has no escape for them.
        Some("`${`")
    } else {
        None
    };
    match why {
        Some(why) => Err(Unwritable { what: what.to_string(), value: text.into_owned(), why }),
        None => Ok(format!("\"{}\"", text.replace('%', "%%"))),
    }
}

/// Single-quotes `s` for the POSIX shell that runs a ProxyCommand, with `%` escaped for ssh.
fn shell_word(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''").replace('%', "%%"))
}

/// How the node's ssh reaches it through the bastion.
#[derive(Debug, Clone)]
pub struct Proxy<'a> {
    /// The bastion's config file (see [`bastion_config`]).
    pub config: &'a Path,
    /// Where the bastion's ssh writes its errors.
    pub log: &'a Path,
    /// The bastion's address.
    pub address: &'a str,
}

/// The node's config file: its certificate and the way through the bastion, if any.
pub fn node_config(cert: Option<&Path>, proxy: Option<&Proxy<'_>>) -> Result<String, Unwritable> {
    let mut out = String::from("# rkectl: one SSH session, removed with it\n");
    if let Some(cert) = cert {
        let _ = writeln!(out, "CertificateFile {}", quoted_path("the certificate file", cert)?);
    }
    if let Some(p) = proxy {
        // `[%h]:%p` is ProxyJump's own forward: it keeps an IPv6 address in one piece.
        let _ = writeln!(
            out,
            "ProxyCommand ssh -F {} -E {} -W '[%h]:%p' {}",
            shell_word(&p.config.to_string_lossy()),
            shell_word(&p.log.to_string_lossy()),
            shell_word(p.address)
        );
    }
    out.push_str(INCLUDES);
    Ok(out)
}

/// Everything the bastion's ssh is dialed with.
#[derive(Debug, Clone)]
pub struct BastionSettings<'a> {
    pub port: u16,
    pub user: &'a str,
    /// `StrictHostKeyChecking`: `yes`, or `accept-new` with `--accept-new-host-keys`.
    pub strict_host_key_checking: &'static str,
    pub known_hosts: Option<&'a Path>,
    pub connect_timeout: Duration,
    pub server_alive_interval: Duration,
    /// The key offered alone (`IdentitiesOnly`), when cluster.yml names one.
    pub key: Option<&'a Path>,
    pub cert: Option<&'a Path>,
}

/// The bastion's config file: the same checks and limits as the nodes', its own identity.
pub fn bastion_config(b: &BastionSettings<'_>) -> Result<String, Unwritable> {
    let mut out = String::from("# rkectl: the bastion host of one SSH session, removed with it\n");
    let _ = writeln!(out, "Port {}", b.port);
    let _ = writeln!(out, "User {}", shell_free(b.user)?);
    out.push_str("BatchMode yes\n");
    let _ = writeln!(out, "StrictHostKeyChecking {}", b.strict_host_key_checking);
    if let Some(kh) = b.known_hosts {
        let _ = writeln!(out, "UserKnownHostsFile {}", quoted_path("the known_hosts file", kh)?);
    }
    let _ = writeln!(out, "ConnectTimeout {}", b.connect_timeout.as_secs().max(1));
    let _ = writeln!(out, "ServerAliveInterval {}", b.server_alive_interval.as_secs().max(1));
    if let Some(key) = b.key {
        out.push_str("IdentitiesOnly yes\n");
        let _ = writeln!(out, "IdentityFile {}", quoted_path("the bastion's key file", key)?);
    }
    if let Some(cert) = b.cert {
        let _ = writeln!(out, "CertificateFile {}", quoted_path("the bastion's certificate file", cert)?);
    }
    out.push_str(INCLUDES);
    Ok(out)
}

/// A user name as a bare ssh_config word.
fn shell_free(user: &str) -> Result<String, Unwritable> {
    if user.is_empty() || user.contains(|c: char| c.is_whitespace() || c == '"' || c == '\'' || c == '#') {
        return Err(Unwritable {
            what: "the bastion user".into(),
            value: user.to_string(),
            why: "spaces, quotes or `#`",
        });
    }
    Ok(user.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_quoted_and_percent_signs_escaped() {
        assert_eq!(quoted_path("x", Path::new("/a b/100%.pub")).unwrap(), "\"/a b/100%%.pub\"");
        for bad in ["/a\"b", "/a\nb", "/${HOME}/k"] {
            let e = quoted_path("the key", Path::new(bad)).unwrap_err();
            assert!(e.to_string().starts_with("the key "), "{e}");
        }
    }

    #[test]
    fn the_node_goes_through_the_bastion_with_its_certificate_then_the_users_config() {
        let proxy = Proxy {
            config: Path::new("/tmp/rkectl-1/bastion.conf"),
            log: Path::new("/tmp/rkectl-1/bastion.log"),
            address: "jump.example.com",
        };
        let text = node_config(Some(Path::new("/tmp/rkectl-1/node-cert.pub")), Some(&proxy)).unwrap();
        assert_eq!(
            text.lines().skip(1).collect::<Vec<_>>(),
            [
                "CertificateFile \"/tmp/rkectl-1/node-cert.pub\"",
                "ProxyCommand ssh -F '/tmp/rkectl-1/bastion.conf' -E '/tmp/rkectl-1/bastion.log' -W '[%h]:%p' 'jump.example.com'",
                "Include ~/.ssh/config",
                "Include /etc/ssh/ssh_config",
            ]
        );
        // An address cannot break out of its quotes or bring its own `%` tokens.
        let odd = Proxy { address: "fe80::1%eth0'x", ..proxy };
        assert!(node_config(None, Some(&odd)).unwrap().contains("'fe80::1%%eth0'\\''x'"));
    }

    #[test]
    fn the_bastion_is_checked_like_the_nodes_with_its_own_identity() {
        let b = BastionSettings {
            port: 2222,
            user: "jump",
            strict_host_key_checking: "yes",
            known_hosts: Some(Path::new("/lab/known_hosts")),
            connect_timeout: Duration::from_secs(15),
            server_alive_interval: Duration::from_secs(10),
            key: Some(Path::new("/keys/jump")),
            cert: Some(Path::new("/keys/jump-cert.pub")),
        };
        let text = bastion_config(&b).unwrap();
        assert_eq!(
            text.lines().skip(1).collect::<Vec<_>>(),
            [
                "Port 2222",
                "User jump",
                "BatchMode yes",
                "StrictHostKeyChecking yes",
                "UserKnownHostsFile \"/lab/known_hosts\"",
                "ConnectTimeout 15",
                "ServerAliveInterval 10",
                "IdentitiesOnly yes",
                "IdentityFile \"/keys/jump\"",
                "CertificateFile \"/keys/jump-cert.pub\"",
                "Include ~/.ssh/config",
                "Include /etc/ssh/ssh_config",
            ]
        );
        let no_key = BastionSettings { key: None, cert: None, known_hosts: None, ..b };
        assert!(!bastion_config(&no_key).unwrap().contains("Identit"), "ssh chooses, as for nodes");
        assert!(bastion_config(&BastionSettings { user: "a b", ..b.clone() }).is_err());
    }
}
