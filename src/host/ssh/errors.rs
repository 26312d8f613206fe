//! What went wrong, in words a user can act on: SSH's and Docker's failures classified
//! (unreachable, host key, auth, Docker down or too old, a program missing from an image).

use super::*;

/// What a failed dial needs to explain itself.
pub(super) struct DialContext<'a> {
    pub(super) host: &'a HostAddr,
    pub(super) user: &'a str,
    pub(super) port: u16,
    pub(super) known_hosts: &'a KnownHostsPolicy,
    pub(super) identity: &'a Identity,
}

/// Turns a failed master launch into a precise error.
pub(super) fn connect_error(ctx: &DialContext<'_>, e: openssh::Error) -> HostError {
    if let openssh::Error::Connect(io) | openssh::Error::Master(io) = &e
        && io.raw_os_error().is_some()
    {
        // An OS error here is local: no `ssh` binary, or no room for the control socket.
        return HostError::Unreachable {
            host: ctx.host.clone(),
            reason: format!("cannot start the local ssh client: {io}"),
            transient: false,
        };
    }
    let text = match &e {
        openssh::Error::Connect(io) | openssh::Error::Master(io) => io.to_string(),
        other => chain(other),
    };
    classify_ssh_failure(ctx, &text)
}

/// Classifies what `ssh` printed when it could not open a session.
pub(super) fn classify_ssh_failure(ctx: &DialContext<'_>, stderr: &str) -> HostError {
    let host = ctx.host.clone();
    let kh = ctx.known_hosts.display_file();
    let text = clean_ssh_text(stderr);
    let has = |s: &str| text.contains(s);

    if has("REMOTE HOST IDENTIFICATION HAS CHANGED") || has("has changed and you have requested") {
        let fingerprint = text
            .split_whitespace()
            .find(|w| w.starts_with("SHA256:"))
            .map(|f| format!(" (it now presents {})", f.trim_end_matches('.')))
            .unwrap_or_default();
        return HostError::HostKey {
            host: host.clone(),
            reason: format!(
                "its host key has CHANGED since it was recorded in {kh}{fingerprint}: the node \
                 was reinstalled, or someone is intercepting the connection. Check the new key \
                 out of band, then remove the old one with `ssh-keygen -f {kh} -R {host}`"
            ),
        };
    }
    if has("Host key verification failed") || has("host key is known for") {
        let hint = match ctx.known_hosts {
            KnownHostsPolicy::Strict { .. } => format!(
                "; check its fingerprint and add it to {kh} (ssh-keyscan -p {} {host}), or pass \
                 --accept-new-host-keys to trust unknown keys on first use",
                ctx.port
            ),
            KnownHostsPolicy::AcceptNew { .. } => String::new(),
        };
        return HostError::HostKey {
            host,
            reason: format!("no trusted host key for it in {kh} ({}){hint}", one_line(&text)),
        };
    }
    let connect_failure = has("connect to host");
    if !connect_failure
        && (has("Permission denied")
            || has("Load key")
            || has("UNPROTECTED PRIVATE KEY FILE")
            || has("Too many authentication failures"))
    {
        let load = text
            .lines()
            .find(|l| l.contains("Load key") || l.contains("bad permissions"))
            .map(|l| format!(" (the key could not be loaded: {})", l.trim()))
            .unwrap_or_default();
        let denied = text
            .lines()
            .find(|l| l.contains("Permission denied") || l.contains("Too many authentication"))
            .map(|l| l.trim().to_string())
            .unwrap_or_else(|| one_line(&text));
        return HostError::Auth {
            host,
            reason: format!("user {} was refused with {}{load}: {denied}", ctx.user, ctx.identity.0),
        };
    }
    let (reason, transient) = if has("Connection refused") {
        (format!("connection refused on port {} (is sshd running there?)", ctx.port), false)
    } else if has("timed out") || has("Timeout") {
        (format!("no answer on port {}: {}", ctx.port, one_line(&text)), true)
    } else if has("Connection reset")
        || has("Connection closed")
        || has("closed by remote host")
        || has("kex_exchange_identification")
        || has("Broken pipe")
    {
        (one_line(&text), true)
    } else if text.is_empty() {
        ("ssh failed without saying why".to_string(), false)
    } else {
        (one_line(&text), false)
    };
    HostError::Unreachable { host, reason, transient }
}

/// Drops ssh's noise (banners, "Permanently added") and the `ssh: ` prefix.
pub(super) fn clean_ssh_text(stderr: &str) -> String {
    stderr
        .lines()
        .map(|l| l.trim().trim_start_matches("ssh: ").trim())
        .filter(|l| !l.is_empty() && !l.starts_with("Warning: Permanently added") && !l.chars().all(|c| c == '@'))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Several lines as one, for an error message.
pub(super) fn one_line(text: &str) -> String {
    text.lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join("; ")
}

/// Refuses Docker releases older than 1.13.1 (API 1.24), whichever of the two can be read.
pub(super) fn check_docker_version(host: &HostAddr, version: &str, api: Option<&str>) -> HostResult<()> {
    let release = parse_version(version);
    let api_version = api.and_then(parse_version);
    let too_old_release = release.is_some_and(|v| v < MIN_DOCKER_VERSION);
    let too_old_api = api_version.is_some_and(|(a, b, _)| (a, b) < MIN_DOCKER_API);
    if too_old_release || too_old_api {
        let (a, b, c) = MIN_DOCKER_VERSION;
        let (x, y) = MIN_DOCKER_API;
        return Err(HostError::DockerDown {
            host: host.clone(),
            reason: format!(
                "Docker {version} (API {}) on {host} is older than the oldest supported, \
                 {a}.{b}.{c} (API {x}.{y}); upgrade Docker, or pass --ignore-docker-version \
                 to use it anyway",
                api.unwrap_or("unknown")
            ),
        });
    }
    Ok(())
}

/// `20.10.24+dfsg1` → (20, 10, 24); `17.03.2-ce` → (17, 3, 2); missing parts are 0.
pub(super) fn parse_version(s: &str) -> Option<(u64, u64, u64)> {
    let core = s.trim().trim_start_matches('v');
    let core = core.split(['-', '+', '~', ' ']).next()?;
    let mut parts = core.split('.').map(|p| p.parse::<u64>());
    let major = parts.next()?.ok()?;
    let minor = parts.next().unwrap_or(Ok(0)).ok()?;
    let patch = parts.next().unwrap_or(Ok(0)).ok()?;
    Some((major, minor, patch))
}

/// Says why the node's Docker socket may not answer, as a suffix for the error.
pub(super) async fn diagnose_docker_socket(conn: &ConnRef, socket: &str) -> String {
    let out = Session::to_raw_command(conn.clone(), remote_command(SOCKET_SCRIPT, &[socket])).output().await;
    let verdict = match out {
        Ok(o) => String::from_utf8_lossy(&o.stdout).trim().to_string(),
        Err(_) => return String::new(),
    };
    match verdict.as_str() {
        "missing" => {
            format!(" ({socket} does not exist on the node: is Docker installed and running?)")
        }
        "notsocket" => format!(" ({socket} on the node is not a socket)"),
        "denied" => format!(" (the SSH user may not use {socket}: add it to the `docker` group)"),
        "ok" => " (the socket exists: is dockerd answering?)".to_string(),
        _ => String::new(),
    }
}

/// Docker's HTTP status for an error, if it came from the daemon.
pub(super) fn status_of(e: &DockerError) -> Option<u16> {
    match e {
        DockerError::DockerResponseServerError { status_code, .. } => Some(*status_code),
        _ => None,
    }
}

/// Pulling a bare name would pull every tag of it.
pub(super) fn with_default_tag(image: &str) -> String {
    let last = image.rsplit('/').next().unwrap_or(image);
    if last.contains(':') || last.contains('@') { image.to_string() } else { format!("{image}:latest") }
}

/// Scrubs secrets from an error's reason.
pub(super) fn redact_error(e: HostError, secrets: &[&Secret]) -> HostError {
    match e {
        HostError::Docker { host, op, reason, transient } => {
            HostError::Docker { host, op, reason: redact(&reason, secrets), transient }
        }
        HostError::ProgramMissing { host, op, reason } => {
            HostError::ProgramMissing { host, op, reason: redact(&reason, secrets) }
        }
        HostError::Unreachable { host, reason, transient } => {
            HostError::Unreachable { host, reason: redact(&reason, secrets), transient }
        }
        other => other,
    }
}

pub(super) fn transient_io(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::TimedOut
            | io::ErrorKind::UnexpectedEof
    )
}

pub(super) fn is_transient_text(s: &str) -> bool {
    ["Connection reset", "Broken pipe", "timed out", "Timeout", "closed by remote host", "master"]
        .iter()
        .any(|p| s.contains(p))
}

/// An error and its sources, each said once.
/// Whether Docker refused to start a container because its program is not in the image
/// (runc: `exec: "/usr/local/bin/etcdutl": stat …: no such file or directory`, or
/// `executable file not found in $PATH`).
pub(super) fn program_missing(message: &str) -> bool {
    message.contains("executable file not found")
        || (message.contains("exec: \"") && message.contains("no such file or directory"))
}

pub(super) fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !text.is_empty() && !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr() -> HostAddr {
        HostAddr("10.0.0.1".into())
    }

    fn ctx<'a>(host: &'a HostAddr, policy: &'a KnownHostsPolicy, identity: &'a Identity) -> DialContext<'a> {
        DialContext { host, user: "root", port: 22, known_hosts: policy, identity }
    }

    #[test]
    fn runcs_words_for_a_program_not_in_the_image() {
        let etcd34 = "failed to create task for container: failed to create shim task: OCI runtime create failed: runc create failed: unable to start container process: exec: \"/usr/local/bin/etcdutl\": stat /usr/local/bin/etcdutl: no such file or directory: unknown";
        assert!(program_missing(etcd34));
        assert!(program_missing("exec: \"etcdutl\": executable file not found in $PATH: unknown"));
        assert!(!program_missing("error while creating mount source path '/opt/rke': no such file or directory"));
        assert!(!program_missing("No such image: rancher/mirrored-coreos-etcd:v3.5.16"));
    }

    #[test]
    fn versions() {
        assert_eq!(parse_version("20.10.24+dfsg1"), Some((20, 10, 24)));
        assert_eq!(parse_version("17.03.2-ce"), Some((17, 3, 2)));
        assert_eq!(parse_version("1.41"), Some((1, 41, 0)));
        assert_eq!(parse_version("garbage"), None);
        let h = addr();
        assert!(check_docker_version(&h, "20.10.24+dfsg1", Some("1.41")).is_ok());
        assert!(check_docker_version(&h, "1.13.1", Some("1.26")).is_ok());
        let e = check_docker_version(&h, "1.12.6", Some("1.24")).unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, HostError::DockerDown { .. }));
        assert!(msg.contains("1.12.6") && msg.contains("10.0.0.1"), "{msg}");
        assert!(msg.contains("--ignore-docker-version"), "{msg}");
        assert!(check_docker_version(&h, "weird", Some("1.23")).is_err());
        assert!(check_docker_version(&h, "weird", None).is_ok());
    }

    #[test]
    fn default_tag() {
        assert_eq!(with_default_tag("busybox"), "busybox:latest");
        assert_eq!(with_default_tag("10.77.0.1:5999/missing"), "10.77.0.1:5999/missing:latest");
        assert_eq!(with_default_tag("10.77.0.1:5999/missing:1"), "10.77.0.1:5999/missing:1");
        assert_eq!(with_default_tag("a/b@sha256:00"), "a/b@sha256:00");
    }

    #[test]
    fn ssh_failures_are_classified() {
        let h = addr();
        let strict = KnownHostsPolicy::Strict { file: Some("/kh".into()) };
        let accept = KnownHostsPolicy::AcceptNew { file: None };
        let id = Identity("the key /k".into());

        let unknown = "No ED25519 host key is known for 10.0.0.1 and you have requested strict checking.\nHost key verification failed.\n";
        let e = classify_ssh_failure(&ctx(&h, &strict, &id), unknown);
        let msg = e.to_string();
        assert!(matches!(e, HostError::HostKey { .. }), "{e:?}");
        assert!(msg.contains("/kh") && msg.contains("--accept-new-host-keys"), "{msg}");

        let changed = "@@@@@@@@@@@\n@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @\n@@@@@@@@\nThe fingerprint for the ED25519 key sent by the remote host is\nSHA256:3fJ7Nm.\nHost key for 10.0.0.1 has changed and you have requested strict checking.\nHost key verification failed.\n";
        for policy in [&strict, &accept] {
            let e = classify_ssh_failure(&ctx(&h, policy, &id), changed);
            let msg = e.to_string();
            assert!(matches!(e, HostError::HostKey { .. }), "{e:?}");
            assert!(msg.contains("CHANGED") && msg.contains("SHA256:3fJ7Nm"), "{msg}");
            assert!(!msg.contains("accept-new"), "{msg}");
        }

        let denied = "root@10.0.0.1: Permission denied (publickey,password).\n";
        let e = classify_ssh_failure(&ctx(&h, &strict, &id), denied);
        assert!(matches!(e, HostError::Auth { .. }), "{e:?}");
        assert!(e.to_string().contains("the key /k"));

        let bad = "Load key \"/k\": error in libcrypto\nroot@10.0.0.1: Permission denied (publickey).";
        let e = classify_ssh_failure(&ctx(&h, &strict, &id), bad);
        assert!(e.to_string().contains("could not be loaded"), "{e}");

        let cases = [
            ("ssh: connect to host 10.0.0.1 port 22: Connection refused", false),
            ("ssh: connect to host 10.0.0.1 port 22: No route to host", false),
            ("ssh: connect to host 10.0.0.1 port 22: Connection timed out", true),
            ("ssh: connect to host 10.0.0.1 port 22: Permission denied", false),
            ("kex_exchange_identification: read: Connection reset by peer", true),
            ("ssh: Could not resolve hostname x: Name or service not known", false),
        ];
        for (text, want) in cases {
            match classify_ssh_failure(&ctx(&h, &strict, &id), text) {
                HostError::Unreachable { transient, host, .. } => {
                    assert_eq!(transient, want, "{text}");
                    assert_eq!(host, h);
                }
                other => panic!("{text}: {other:?}"),
            }
        }
    }

    #[test]
    fn secrets_are_scrubbed_from_docker_errors() {
        let s = Secret::new("supersecretvalue");
        let e = HostError::Docker {
            host: addr(),
            op: "create container".into(),
            reason: "bad env X=supersecretvalue".into(),
            transient: false,
        };
        assert!(!redact_error(e, &[&s]).to_string().contains("supersecretvalue"));
    }
}
