//! Turning flags and cluster.yml into the inputs of an action, refusing bad ones before
//! anything is dialed: snapshot names, S3 settings, SSH key files.

use super::CliError;
use super::args::{EtcdAction, S3Flags};
use crate::config::{CertSource, Cluster, GoDuration, LoadedConfig, RecurringSnapshots, S3Settings, SshAuth};
use crate::model::SnapshotName;
use crate::model::action::{ActionSpec, PrunePolicy, RestoreSearch};
use crate::secret::Secret;

/// A snapshot name from the command line.
pub fn snapshot_name(name: &str) -> Result<SnapshotName, CliError> {
    SnapshotName::new(name).map_err(|e| {
        let shown: String = name.chars().take(60).map(|c| if c.is_control() { '?' } else { c }).collect();
        CliError::input(
            format!("invalid snapshot name `{shown}`: {e}"),
            "choose a plain file name such as `before-upgrade.db`",
        )
    })
}

/// Where a restore (or a drill) looks for its snapshot: RKE's restore takes it from
/// cluster.yml's S3 when there is one and falls back to the hosts; `--s3` insists on S3.
fn restore_search(flags: &S3Flags, cluster: &Cluster) -> Result<(RestoreSearch, Option<S3Settings>), CliError> {
    let (s3, explicit) = s3_or_configured(flags, cluster)?;
    let from = match (&s3, explicit) {
        (Some(s), true) => RestoreSearch::S3 { target: s.target() },
        (Some(s), false) => RestoreSearch::S3ThenHosts { target: s.target() },
        (None, _) => RestoreSearch::Hosts,
    };
    Ok((from, s3))
}

/// S3 settings as RKE's one-time save and restore take them: from `--s3` and its flags over
/// cluster.yml's `s3backupconfig`, or, without `--s3`, from `s3backupconfig` alone. The
/// flag says whether `--s3` was given.
pub fn s3_or_configured(flags: &S3Flags, cluster: &Cluster) -> Result<(Option<S3Settings>, bool), CliError> {
    if flags.s3 {
        return Ok((s3_settings(flags, cluster)?, true));
    }
    s3_settings(flags, cluster)?;
    let configured = match cluster.configured_s3() {
        Some(base) => {
            let (access_key, secret_key, custom_ca) = credentials(flags, Some(base))?;
            let region = base.region.clone().or_else(|| environment_region(&base.endpoint));
            Some(S3Settings { access_key, secret_key, custom_ca, region, ..base.clone() })
        }
        None => None,
    };
    Ok((configured, false))
}

/// S3 settings from flags over cluster.yml's `s3backupconfig`; `None` without `--s3`.
pub fn s3_settings(flags: &S3Flags, cluster: &Cluster) -> Result<Option<S3Settings>, CliError> {
    let any_flag = flags.s3_endpoint.is_some()
        || flags.bucket_name.is_some()
        || flags.region.is_some()
        || flags.folder.is_some()
        || flags.s3_endpoint_ca.is_some();
    if !flags.s3 {
        if any_flag {
            return Err(CliError::input(
                "S3 flags were given without --s3",
                "add --s3 to use S3, or drop the S3 flags",
            ));
        }
        return Ok(None);
    }
    let base = cluster.configured_s3();
    let bucket = flags.bucket_name.clone().or_else(|| base.map(|b| b.bucket.clone())).filter(|b| !b.trim().is_empty());
    let Some(bucket) = bucket else {
        return Err(CliError::input(
            "--s3 needs a bucket: no --bucket-name and no services.etcd.backup_config.s3backupconfig.bucket_name",
            "pass --bucket-name <bucket>",
        ));
    };
    let (access_key, secret_key, custom_ca) = credentials(flags, base)?;
    let endpoint = flags
        .s3_endpoint
        .clone()
        .or_else(|| base.map(|b| b.endpoint.clone()))
        .unwrap_or_else(|| crate::config::DEFAULT_S3_ENDPOINT.into());
    let region =
        flags.region.clone().or_else(|| base.and_then(|b| b.region.clone())).or_else(|| environment_region(&endpoint));
    Ok(Some(S3Settings {
        endpoint,
        bucket,
        region,
        folder: flags.folder.clone().or_else(|| base.and_then(|b| b.folder.clone())),
        custom_ca,
        access_key,
        secret_key,
        session_token: None,
    }))
}

/// The region when neither the flag nor cluster.yml names one: the endpoint's (AWS regional
/// endpoints), `AWS_REGION`/`AWS_DEFAULT_REGION` or the AWS profile's, so that the plan shows
/// it and the helpers on the nodes, which see neither this environment nor the profile,
/// sign for the same region. `None` leaves the S3 client's default.
fn environment_region(endpoint: &str) -> Option<String> {
    // The providers read only the environment and the profile files (synchronously):
    // nothing here needs the runtime's I/O.
    futures::executor::block_on(crate::s3::default_region(endpoint))
}

/// Keys and CA for S3: flags over cluster.yml's `s3backupconfig`; empty keys leave the AWS
/// credentials chain (`AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`, profiles…) to the S3
/// client. The secret key comes from `--secret-key-file` or `--secret-key` (which warns:
/// see [`command_line_secret_warning`]).
///
/// `AWS_CA_BUNDLE` is not folded in here: it often names the whole system bundle (200 KB
/// and more), and the CA travels to the helpers on the nodes in one environment variable,
/// which the kernel caps at 128 KiB. The S3 client on this machine reads it itself.
pub fn credentials(flags: &S3Flags, base: Option<&S3Settings>) -> Result<(Secret, Secret, Option<String>), CliError> {
    let custom_ca = match &flags.s3_endpoint_ca {
        Some(p) => Some(std::fs::read_to_string(p).map_err(|e| {
            CliError::input(format!("cannot read --s3-endpoint-ca {}: {e}", p.display()), "give the path of a PEM file")
        })?),
        None => base.and_then(|b| b.custom_ca.clone()),
    };
    let access_key =
        flags.access_key.clone().map(Secret::new).or_else(|| base.map(|b| b.access_key.clone())).unwrap_or_default();
    let secret_key = match &flags.secret_key_file {
        Some(p) => secret_key_file(p)?,
        None => {
            flags.secret_key.clone().map(Secret::new).or_else(|| base.map(|b| b.secret_key.clone())).unwrap_or_default()
        }
    };
    Ok((access_key, secret_key, custom_ca))
}

/// The secret key in `path`: its first line, without the line break an editor adds.
/// Errors name the file, never what is in it.
fn secret_key_file(path: &std::path::Path) -> Result<Secret, CliError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        CliError::input(
            format!("cannot read --secret-key-file {}: {e}", path.display()),
            "give the path of a file that holds the S3 secret key (and nothing else)",
        )
    })?;
    let key = text.trim_end_matches(['\n', '\r']);
    if key.is_empty() || key.contains('\n') {
        return Err(CliError::input(
            format!("--secret-key-file {} does not hold one S3 secret key on one line", path.display()),
            "put the secret key alone in the file",
        ));
    }
    Ok(Secret::new(key.to_string()))
}

/// Where an S3 key of an action comes from, for an error that asks to check it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyFrom {
    /// A flag's value (`--access-key`, `--secret-key`).
    Flag(&'static str),
    /// `--secret-key-file`.
    File(std::path::PathBuf),
    /// cluster.yml's `s3backupconfig`.
    ClusterYml(&'static str),
    /// None is given: the AWS credentials chain on this machine finds them.
    Chain,
}

impl std::fmt::Display for KeyFrom {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeyFrom::Flag(flag) => f.write_str(flag),
            KeyFrom::File(p) => write!(f, "--secret-key-file {}", p.display()),
            KeyFrom::ClusterYml(key) => write!(f, "cluster.yml (s3backupconfig.{key})"),
            KeyFrom::Chain => f.write_str(
                "the AWS credentials chain (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, ~/.aws profiles, instance role)",
            ),
        }
    }
}

/// Where the access key and the secret key of `flags` over cluster.yml come from, as
/// [`credentials`] takes them.
pub fn key_sources(flags: &S3Flags, cluster: &Cluster) -> (KeyFrom, KeyFrom) {
    let base = cluster.configured_s3();
    let configured = |key: &'static str, secret: Option<&Secret>| match secret {
        Some(s) if !s.is_empty() => KeyFrom::ClusterYml(key),
        _ => KeyFrom::Chain,
    };
    let access = match &flags.access_key {
        Some(_) => KeyFrom::Flag("--access-key"),
        None => configured("access_key", base.map(|b| &b.access_key)),
    };
    let secret = match (&flags.secret_key_file, &flags.secret_key) {
        (Some(p), _) => KeyFrom::File(p.clone()),
        (None, Some(_)) => KeyFrom::Flag("--secret-key"),
        (None, None) => configured("secret_key", base.map(|b| &b.secret_key)),
    };
    (access, secret)
}

/// A sentence naming where the S3 keys came from, for the help of an error about them.
pub fn key_sources_help(flags: &S3Flags, cluster: &Cluster) -> String {
    match key_sources(flags, cluster) {
        (KeyFrom::Chain, KeyFrom::Chain) => format!("the S3 keys came from {}", KeyFrom::Chain),
        (access, secret) => format!("the S3 access key came from {access}, the secret key from {secret}"),
    }
}

/// The warning for a secret given as a flag's value, if one is: every local user can read
/// a command line (`ps`, `/proc/PID/cmdline`), for as long as rkectl runs.
pub fn command_line_secret_warning(flags: &S3Flags) -> Option<&'static str> {
    flags.secret_key.is_some().then_some(
        "--secret-key puts the S3 secret key on the command line, where every user of this machine can read it (ps); \
         use --secret-key-file FILE, or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY in the environment",
    )
}

/// The environment variable that may hold the state passphrase itself (never a flag: argv
/// is visible to every user of the machine).
pub const STATE_PASSPHRASE_ENV: &str = "RKECTL_STATE_PASSPHRASE";

/// The passphrase that seals RKE's state beside S3 snapshots: `--state-passphrase-file`,
/// else `RKECTL_STATE_PASSPHRASE`; `None` when neither is given.
pub fn state_passphrase(flags: &S3Flags) -> Result<Option<Secret>, CliError> {
    let passphrase = match &flags.state_passphrase_file {
        Some(p) => {
            let text = std::fs::read_to_string(p).map_err(|e| {
                CliError::input(
                    format!("cannot read --state-passphrase-file {}: {e}", p.display()),
                    "give the path of a file that holds the passphrase",
                )
            })?;
            // An editor's final newline is not part of the passphrase.
            Secret::new(text.trim_end_matches(['\n', '\r']).to_string())
        }
        None => match std::env::var(STATE_PASSPHRASE_ENV) {
            Ok(v) if !v.is_empty() => Secret::new(v),
            _ => return Ok(None),
        },
    };
    crate::rke::seal::check_passphrase(&passphrase).map_err(|e| {
        CliError::input(
            format!("the state passphrase is too weak: {e}"),
            "it protects every private key of the cluster: use a long passphrase, kept where you keep your other recovery secrets",
        )
    })?;
    Ok(Some(passphrase))
}

/// The action an `etcd …` command asks for.
pub fn etcd_action(cmd: &EtcdAction, cluster: &Cluster) -> Result<(ActionSpec, Option<S3Settings>), CliError> {
    Ok(match cmd {
        EtcdAction::SnapshotSave { name, include_state, s3: flags } => {
            // RKE's one-time save uploads when cluster.yml has an s3backupconfig.
            let (s3, _) = s3_or_configured(flags, cluster)?;
            let seal_state = s3.is_some() && state_passphrase(flags)?.is_some();
            let (name, generated) = match name {
                Some(n) => (snapshot_name(n)?, false),
                None => (SnapshotName::timestamped(time::OffsetDateTime::now_utc()), true),
            };
            (
                ActionSpec::EtcdSnapshotSave {
                    name,
                    generated_name: generated,
                    s3: s3.as_ref().map(S3Settings::target),
                    include_state: *include_state,
                    seal_state,
                },
                s3,
            )
        }
        EtcdAction::SnapshotRestore { name, s3, .. } => {
            let (from, s3) = restore_search(s3, cluster)?;
            (ActionSpec::EtcdSnapshotRestore { name: snapshot_name(name)?, from }, s3)
        }
        EtcdAction::SnapshotDrill { name, host, compare_live, s3 } => {
            // Where the snapshot is looked for, as a restore looks.
            let (from, s3) = restore_search(s3, cluster)?;
            let host = host.as_ref().map(|h| crate::config::HostAddr(h.clone()));
            (ActionSpec::EtcdSnapshotDrill { name: snapshot_name(name)?, from, host, compare_live: *compare_live }, s3)
        }
        EtcdAction::SnapshotDelete { name, s3 } => {
            let s3 = s3_settings(s3, cluster)?;
            (ActionSpec::EtcdSnapshotDelete { name: snapshot_name(name)?, s3: s3.as_ref().map(S3Settings::target) }, s3)
        }
        EtcdAction::SnapshotPrune { retention, keep, s3 } => {
            let s3 = s3_settings(s3, cluster)?;
            let policy = match (retention, keep) {
                (Some(r), _) => {
                    let d = GoDuration::parse(r).map_err(|e| {
                        CliError::input(format!("invalid --retention `{r}`: {e}"), "use a Go duration such as `24h`")
                    })?;
                    if d.0.is_zero() {
                        return Err(CliError::input(
                            "--retention must be longer than zero",
                            "use a Go duration such as `24h`",
                        ));
                    }
                    PrunePolicy::Age { seconds: d.0.as_secs(), text: d.to_string() }
                }
                (None, Some(k)) => PrunePolicy::Count { keep: *k },
                (None, None) => match &cluster.etcd.recurring {
                    RecurringSnapshots::BackupConfig { retention, .. } => PrunePolicy::Count { keep: *retention },
                    RecurringSnapshots::Legacy { retention, .. } => {
                        PrunePolicy::Age { seconds: retention.0.as_secs(), text: retention.to_string() }
                    }
                    RecurringSnapshots::Disabled => {
                        let d = GoDuration(crate::config::DEFAULT_RETENTION);
                        PrunePolicy::Age { seconds: d.0.as_secs(), text: d.to_string() }
                    }
                },
            };
            (ActionSpec::EtcdSnapshotPrune { policy, s3: s3.as_ref().map(S3Settings::target) }, s3)
        }
        EtcdAction::SnapshotList { .. } => unreachable!("snapshot-list is not a planned action"),
    })
}

/// Checks that every SSH key and certificate file cluster.yml names can be read, pointing at
/// the line.
pub fn check_ssh_keys(cfg: &LoadedConfig) -> Result<(), CliError> {
    check_node_keys(cfg)?;
    if let Some(b) = &cfg.cluster.bastion
        && b.ssh.key.is_none()
        && b.ssh.key_path_explicit
        && let Err(e) = std::fs::read(&b.ssh.key_path)
    {
        let at =
            if written(cfg, &["bastion_host", "ssh_key_path"]) { "bastion_host.ssh_key_path" } else { "ssh_key_path" };
        let what = if e.kind() == std::io::ErrorKind::NotFound { "does not exist" } else { "cannot be read" };
        return Err(CliError::Config(cfg.problem_at(
            at,
            format!("SSH key {} for the bastion host {} {what} ({e})", b.ssh.key_path.display(), b.address),
            "this key",
            Some("fix ssh_key_path under bastion_host (the cluster's applies when it names none)".into()),
        )));
    }
    let nodes = cfg.cluster.nodes.iter().map(|n| (format!("node {}", n.address), &n.ssh));
    let bastion = cfg.cluster.bastion.iter().map(|b| (format!("the bastion host {}", b.address), &b.ssh));
    for (who, auth) in nodes.chain(bastion) {
        check_cert_file(cfg, &who, auth)?;
    }
    Ok(())
}

/// A certificate file must hold an OpenSSH certificate: ssh would skip anything else without
/// a word, and the login would fail for a reason nobody sees.
fn check_cert_file(cfg: &LoadedConfig, who: &str, auth: &SshAuth) -> Result<(), CliError> {
    let Some(cert) = &auth.cert else { return Ok(()) };
    let CertSource::File(path) = &cert.source else { return Ok(()) };
    let problem = match std::fs::read_to_string(path) {
        Err(e) => {
            let what = if e.kind() == std::io::ErrorKind::NotFound { "does not exist" } else { "cannot be read" };
            format!("SSH certificate {} for {who} {what} ({e})", path.display())
        }
        Ok(text) if !crate::config::is_openssh_cert(text.trim()) => {
            format!("{} (the SSH certificate for {who}) is not an OpenSSH certificate", path.display())
        }
        Ok(_) => return Ok(()),
    };
    Err(CliError::Config(cfg.problem_at(
        &cert.at,
        problem,
        "this certificate",
        Some("name the `-cert.pub` file that `ssh-keygen -s` wrote for the key".into()),
    )))
}

/// Whether the key at `path` is written in cluster.yml itself (not only defaulted).
fn written(cfg: &LoadedConfig, path: &[&str]) -> bool {
    let doc = crate::config::yaml::from_str::<crate::config::yaml::Value>(&cfg.source).ok();
    path.iter().try_fold(doc, |v, k| Some(v?.get(k).cloned())).flatten().is_some()
}

fn check_node_keys(cfg: &LoadedConfig) -> Result<(), CliError> {
    for n in &cfg.cluster.nodes {
        // A key cluster.yml does not name is ssh's to find (agent, ~/.ssh/config, id_*).
        if n.ssh.key.is_some() || !n.ssh.key_path_explicit {
            continue;
        }
        let p = &n.ssh.key_path;
        if let Err(e) = std::fs::read(p) {
            let path = if cfg.source.contains("ssh_key_path") {
                let node_key = format!("nodes[{}].ssh_key_path", n.index);
                if cfg.source.lines().count() > 0 && node_key_present(cfg, n.index) {
                    node_key
                } else {
                    "ssh_key_path".to_string()
                }
            } else {
                format!("nodes[{}]", n.index)
            };
            let what = if e.kind() == std::io::ErrorKind::NotFound { "does not exist" } else { "cannot be read" };
            return Err(CliError::Config(cfg.problem_at(
                &path,
                format!("SSH key {} for node {} {what} ({e})", p.display(), n.address),
                "this key",
                Some("fix ssh_key_path, or use --ssh-agent-auth".into()),
            )));
        }
    }
    Ok(())
}

fn node_key_present(cfg: &LoadedConfig, index: usize) -> bool {
    // Whether the node itself names a key (else the top-level ssh_key_path applies).
    crate::config::yaml::from_str::<crate::config::yaml::Value>(&cfg.source)
        .ok()
        .and_then(|v| v.get("nodes")?.get(index)?.get("ssh_key_path").cloned())
        .is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster(s3_keys: &str) -> Cluster {
        let yaml = format!(
            "nodes:\n  - address: 10.0.0.1\n    user: u\n    role: [etcd]\nservices:\n  etcd:\n    backup_config:\n      s3backupconfig:\n        bucket_name: b\n        endpoint: s3.example.com\n{s3_keys}"
        );
        crate::config::parse(std::path::Path::new("cluster.yml"), yaml).unwrap().cluster
    }

    #[test]
    fn the_secret_key_file_gives_the_key_without_its_final_newline() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("secret");
        std::fs::write(&file, "s3cr3t-from-a-file\n").unwrap();
        let c = cluster("        access_key: AKIAYML\n        secret_key: yml-secret\n");
        let flags = S3Flags { secret_key_file: Some(file.clone()), ..Default::default() };
        let (access, secret, _) = credentials(&flags, c.configured_s3()).unwrap();
        assert_eq!((access.expose(), secret.expose()), ("AKIAYML", "s3cr3t-from-a-file"));
        assert_eq!(key_sources(&flags, &c), (KeyFrom::ClusterYml("access_key"), KeyFrom::File(file.clone())));
        assert!(command_line_secret_warning(&flags).is_none());
        std::fs::write(&file, "two\nlines\n").unwrap();
        let e = credentials(&flags, None).unwrap_err().to_string();
        assert!(e.contains("does not hold one S3 secret key on one line") && !e.contains("two"), "{e}");
        let gone = S3Flags { secret_key_file: Some(dir.path().join("gone")), ..Default::default() };
        let e = credentials(&gone, None).unwrap_err().to_string();
        assert!(e.starts_with("cannot read --secret-key-file ") && e.contains("gone"), "{e}");
    }

    #[test]
    fn errors_about_the_keys_say_where_each_came_from() {
        let flags = S3Flags {
            access_key: Some("AKIAFLAG".into()),
            secret_key: Some("flag-secret".into()),
            ..Default::default()
        };
        let help = key_sources_help(&flags, &cluster(""));
        assert_eq!(help, "the S3 access key came from --access-key, the secret key from --secret-key");
        assert!(command_line_secret_warning(&flags).is_some_and(|w| w.contains("--secret-key-file")));
        let configured =
            key_sources_help(&S3Flags::default(), &cluster("        access_key: A\n        secret_key: S\n"));
        assert_eq!(
            configured,
            "the S3 access key came from cluster.yml (s3backupconfig.access_key), the secret key from cluster.yml (s3backupconfig.secret_key)"
        );
        assert!(
            key_sources_help(&S3Flags::default(), &cluster(""))
                .starts_with("the S3 keys came from the AWS credentials chain")
        );
    }
}
