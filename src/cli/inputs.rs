//! Turning flags and cluster.yml into the inputs of an action, refusing bad ones before
//! anything is dialed: snapshot names, S3 settings, SSH key files.

use super::CliError;
use super::args::{EtcdAction, S3Flags};
use crate::config::{CertSource, Cluster, GoDuration, LoadedConfig, RecurringSnapshots, S3Settings, S3Use, SshAuth};
use crate::plan::step::SnapshotName;
use crate::plan::{ActionSpec, PrunePolicy, RestoreSearch};
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
    let s3 = s3(S3Use::FlagsOrConfigured, flags, cluster)?;
    let from = match (&s3, flags.s3) {
        (Some(s), true) => RestoreSearch::S3 { target: s.target() },
        (Some(s), false) => RestoreSearch::S3ThenHosts { target: s.target() },
        (None, _) => RestoreSearch::Hosts,
    };
    Ok((from, s3))
}

/// S3 settings for `wanted`: the flags over cluster.yml over this workstation's environment.
pub fn s3(wanted: S3Use<'_>, flags: &S3Flags, cluster: &Cluster) -> Result<Option<S3Settings>, CliError> {
    Ok(S3Settings::resolve(wanted, &flags.library(), cluster.configured_s3(), &crate::s3::environment::Workstation)?)
}

/// S3 settings for a plan made earlier: its place, keys from the flags or cluster.yml.
pub fn s3_for_plan(spec: &ActionSpec, flags: &S3Flags, cluster: &Cluster) -> Result<Option<S3Settings>, CliError> {
    match spec.s3() {
        Some(target) => s3(S3Use::Target(target), flags, cluster),
        None => Ok(None),
    }
}

/// A sentence naming where the S3 keys came from, for the help of an error about them.
pub fn key_sources_help(flags: &S3Flags, cluster: &Cluster) -> String {
    flags.library().key_sources_help(cluster.configured_s3())
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
    crate::state::seal::check_passphrase(&passphrase).map_err(|e| {
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
            let s3 = s3(S3Use::FlagsOrConfigured, flags, cluster)?;
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
            let s3 = self::s3(S3Use::Flags, s3, cluster)?;
            (ActionSpec::EtcdSnapshotDelete { name: snapshot_name(name)?, s3: s3.as_ref().map(S3Settings::target) }, s3)
        }
        EtcdAction::SnapshotPrune { retention, keep, s3 } => {
            let s3 = self::s3(S3Use::Flags, s3, cluster)?;
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
    let doc = serde_yaml::from_str::<serde_yaml::Value>(&cfg.source).ok();
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
    serde_yaml::from_str::<serde_yaml::Value>(&cfg.source)
        .ok()
        .and_then(|v| v.get("nodes")?.get(index)?.get("ssh_key_path").cloned())
        .is_some()
}
