//! What one invocation asks for, turned once into the library's inputs.
//!
//! The command line (or another tool) says what it wants as a [`Request`] with the
//! [`S3Flags`] and the state passphrase file it was given; [`resolve`] decides, once per
//! run, the [`ActionSpec`], its S3 settings ([`S3Settings::resolve`]), the PKI flags and
//! the state passphrase, refusing bad input before anything is dialed. [`for_plan`] does
//! the same for a plan made earlier (a saved plan, an unfinished apply), whose action is
//! already decided.

use crate::cluster_pki::PkiFlags;
use crate::config::{BadInput, Cluster, GoDuration, RecurringSnapshots, S3Flags, S3Settings, S3Use};
use crate::model::SnapshotName;
use crate::model::action::{ActionSpec, PrunePolicy, RestoreSearch};
use crate::secret::Secret;
use std::path::Path;

/// An action as asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// `up`, with `--new-pki` or not.
    Up { new_pki: bool },
    /// `cleanup`.
    Cleanup,
    /// `etcd snapshot-save`.
    Save { name: Option<String>, include_state: bool },
    /// `etcd snapshot-restore`.
    Restore { name: String, use_local_state: bool, new_pki: bool },
    /// `etcd snapshot-drill`.
    Drill { name: String, host: Option<String>, compare_live: bool },
    /// `etcd snapshot-delete`.
    Delete { name: String },
    /// `etcd snapshot-prune` (`--retention` or `--keep`, else cluster.yml's retention).
    Prune { retention: Option<String>, keep: Option<u32> },
}

/// An action with everything it is prepared from decided.
#[derive(Debug)]
pub struct Resolved {
    pub spec: ActionSpec,
    /// S3 settings with keys, when the action uses S3.
    pub s3: Option<S3Settings>,
    pub pki_flags: PkiFlags,
    /// The passphrase that seals (and opens) RKE's state beside S3 snapshots.
    pub state_passphrase: Option<Secret>,
    /// Where the S3 keys came from, for the help of an error about them.
    pub keys_from: String,
}

impl Resolved {
    /// The secrets an error message must never quote back.
    pub fn secrets(&self) -> Vec<Secret> {
        let keys = self.s3.iter().flat_map(|s| [s.access_key.clone(), s.secret_key.clone()]);
        keys.chain(self.state_passphrase.clone()).collect()
    }
}

/// The environment variable that may hold the state passphrase itself (never a flag: argv
/// is visible to every user of the machine).
pub const STATE_PASSPHRASE_ENV: &str = "RKECTL_STATE_PASSPHRASE";

/// Decides what `request` means with these flags and this cluster.yml (S3 settings from
/// the flags over `s3backupconfig` over this workstation's environment).
pub fn resolve(
    request: &Request,
    flags: &S3Flags,
    passphrase_file: Option<&Path>,
    cluster: &Cluster,
) -> Result<Resolved, BadInput> {
    let s3 = |wanted| S3Settings::resolve(wanted, flags, cluster.configured_s3(), &crate::s3::environment::Workstation);
    let mut passphrase = None;
    let (spec, s3, pki_flags) = match request {
        Request::Up { new_pki } => (ActionSpec::Up, None, PkiFlags { new_pki: *new_pki, use_local_state: false }),
        Request::Cleanup => (ActionSpec::Cleanup, None, PkiFlags::default()),
        Request::Save { name, include_state } => {
            // RKE's one-time save uploads when cluster.yml has an s3backupconfig.
            let s3 = s3(S3Use::FlagsOrConfigured)?;
            if s3.is_some() {
                passphrase = Some(state_passphrase(passphrase_file)?);
            }
            let (name, generated_name) = match name {
                Some(n) => (snapshot_name(n)?, false),
                None => (SnapshotName::timestamped(time::OffsetDateTime::now_utc()), true),
            };
            let seal_state = matches!(passphrase, Some(Some(_)));
            let target = s3.as_ref().map(S3Settings::target);
            let spec = ActionSpec::EtcdSnapshotSave {
                name,
                generated_name,
                s3: target,
                include_state: *include_state,
                seal_state,
            };
            (spec, s3, PkiFlags::default())
        }
        Request::Restore { name, use_local_state, new_pki } => {
            let s3 = s3(S3Use::FlagsOrConfigured)?;
            let spec = ActionSpec::EtcdSnapshotRestore { name: snapshot_name(name)?, from: restore_search(&s3, flags) };
            (spec, s3, PkiFlags { new_pki: *new_pki, use_local_state: *use_local_state })
        }
        Request::Drill { name, host, compare_live } => {
            // Where the snapshot is looked for, as a restore looks.
            let s3 = s3(S3Use::FlagsOrConfigured)?;
            let from = restore_search(&s3, flags);
            let host = host.as_ref().map(|h| crate::config::HostAddr(h.clone()));
            let spec =
                ActionSpec::EtcdSnapshotDrill { name: snapshot_name(name)?, from, host, compare_live: *compare_live };
            (spec, s3, PkiFlags::default())
        }
        Request::Delete { name } => {
            let s3 = s3(S3Use::Flags)?;
            let spec =
                ActionSpec::EtcdSnapshotDelete { name: snapshot_name(name)?, s3: s3.as_ref().map(S3Settings::target) };
            (spec, s3, PkiFlags::default())
        }
        Request::Prune { retention, keep } => {
            let s3 = s3(S3Use::Flags)?;
            let policy = prune_policy(retention.as_deref(), *keep, &cluster.etcd.recurring)?;
            (ActionSpec::EtcdSnapshotPrune { policy, s3: s3.as_ref().map(S3Settings::target) }, s3, PkiFlags::default())
        }
    };
    let state_passphrase = match (passphrase, request) {
        (Some(read), _) => read,
        (None, Request::Up { .. } | Request::Cleanup) => None,
        (None, _) => state_passphrase(passphrase_file)?,
    };
    let keys_from = flags.key_sources_help(cluster.configured_s3());
    Ok(Resolved { spec, s3, pki_flags, state_passphrase, keys_from })
}

/// What a plan made earlier is applied with: its own action, S3 keys from the flags or
/// cluster.yml for the place it names, and the state passphrase. The PKI flags are the
/// plan's to decide again (see [`crate::prepare::PrepareInput::again`]).
pub fn for_plan(
    spec: &ActionSpec,
    flags: &S3Flags,
    passphrase_file: Option<&Path>,
    cluster: &Cluster,
) -> Result<Resolved, BadInput> {
    let env = crate::s3::environment::Workstation;
    let s3 = match spec.s3() {
        Some(target) => S3Settings::resolve(S3Use::Target(target), flags, cluster.configured_s3(), &env)?,
        None => None,
    };
    Ok(Resolved {
        spec: spec.clone(),
        s3,
        pki_flags: PkiFlags::default(),
        state_passphrase: state_passphrase(passphrase_file)?,
        keys_from: flags.key_sources_help(cluster.configured_s3()),
    })
}

/// A snapshot name from the command line.
pub fn snapshot_name(name: &str) -> Result<SnapshotName, BadInput> {
    SnapshotName::new(name).map_err(|e| {
        let shown: String = name.chars().take(60).map(|c| if c.is_control() { '?' } else { c }).collect();
        BadInput::new(
            format!("invalid snapshot name `{shown}`: {e}"),
            "choose a plain file name such as `before-upgrade.db`",
        )
    })
}

/// Where a restore (or a drill) looks for its snapshot: RKE's restore takes it from
/// cluster.yml's S3 when there is one and falls back to the hosts; `--s3` insists on S3.
fn restore_search(s3: &Option<S3Settings>, flags: &S3Flags) -> RestoreSearch {
    match (s3, flags.s3) {
        (Some(s), true) => RestoreSearch::S3 { target: s.target() },
        (Some(s), false) => RestoreSearch::S3ThenHosts { target: s.target() },
        (None, _) => RestoreSearch::Hosts,
    }
}

/// What a prune deletes: `--retention` (an age), `--keep` (a count), else what the recurring
/// snapshots of cluster.yml keep (RKE's default retention when they are off).
pub fn prune_policy(
    retention: Option<&str>,
    keep: Option<u32>,
    recurring: &RecurringSnapshots,
) -> Result<PrunePolicy, BadInput> {
    let age = |d: GoDuration| PrunePolicy::Age { seconds: d.0.as_secs(), text: d.to_string() };
    Ok(match (retention, keep) {
        (Some(r), _) => age(crate::config::retention(r)?),
        (None, Some(keep)) => PrunePolicy::Count { keep },
        (None, None) => match recurring {
            RecurringSnapshots::BackupConfig { retention, .. } => PrunePolicy::Count { keep: *retention },
            RecurringSnapshots::Legacy { retention, .. } => age(*retention),
            RecurringSnapshots::Disabled => age(GoDuration(crate::config::DEFAULT_RETENTION)),
        },
    })
}

/// The passphrase that seals RKE's state beside S3 snapshots: the file's, else
/// `RKECTL_STATE_PASSPHRASE`; `None` when neither is given. A weak one is refused.
pub fn state_passphrase(file: Option<&Path>) -> Result<Option<Secret>, BadInput> {
    let passphrase = match file {
        Some(p) => {
            let text = std::fs::read_to_string(p).map_err(|e| {
                BadInput::new(
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
        BadInput::new(
            format!("the state passphrase is too weak: {e}"),
            "it protects every private key of the cluster: use a long passphrase, kept where you keep your other recovery secrets",
        )
    })?;
    Ok(Some(passphrase))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster(etcd: &str) -> Cluster {
        let yaml = format!("nodes:\n  - address: 10.0.0.1\n    user: u\n    role: [etcd]\n{etcd}");
        crate::config::parse(Path::new("cluster.yml"), yaml).unwrap().cluster
    }

    #[test]
    fn a_prune_without_flags_keeps_what_the_recurring_snapshots_keep() {
        let prune = Request::Prune { retention: None, keep: None };
        let spec = |c: &Cluster| resolve(&prune, &S3Flags::default(), None, c).unwrap().spec;
        let kept = cluster("services:\n  etcd:\n    backup_config:\n      retention: 4\n");
        assert!(matches!(spec(&kept), ActionSpec::EtcdSnapshotPrune { policy: PrunePolicy::Count { keep: 4 }, .. }));
        let legacy = cluster("services:\n  etcd:\n    snapshot: true\n    creation: 1h\n    retention: 6h\n");
        let ActionSpec::EtcdSnapshotPrune { policy: PrunePolicy::Age { seconds, .. }, .. } = spec(&legacy) else {
            panic!("{:?}", spec(&legacy))
        };
        assert_eq!(seconds, 6 * 3600);
        let off = spec(&cluster(""));
        let default = crate::config::DEFAULT_RETENTION.as_secs();
        assert!(
            matches!(off, ActionSpec::EtcdSnapshotPrune { policy: PrunePolicy::Age { seconds, .. }, .. } if seconds == default)
        );
        let e = prune_policy(Some("0s"), None, &RecurringSnapshots::Disabled).unwrap_err();
        assert_eq!(e.message, "--retention must be longer than zero");
    }

    #[test]
    fn a_restore_insists_on_s3_only_with_the_flag() {
        let c = cluster(
            "services:\n  etcd:\n    backup_config:\n      s3backupconfig:\n        bucket_name: b\n        endpoint: s3.example.com\n        region: r\n",
        );
        let restore = Request::Restore { name: "x.db".into(), use_local_state: true, new_pki: false };
        let r = resolve(&restore, &S3Flags::default(), None, &c).unwrap();
        assert!(matches!(r.spec, ActionSpec::EtcdSnapshotRestore { from: RestoreSearch::S3ThenHosts { .. }, .. }));
        assert!(r.pki_flags.use_local_state && r.s3.is_some());
        let r = resolve(&restore, &S3Flags { s3: true, ..Default::default() }, None, &c).unwrap();
        assert!(matches!(r.spec, ActionSpec::EtcdSnapshotRestore { from: RestoreSearch::S3 { .. }, .. }));
        let e = resolve(&Request::Delete { name: "../x".into() }, &S3Flags::default(), None, &c).unwrap_err();
        assert!(e.message.starts_with("invalid snapshot name `../x`"), "{e}");
    }
}
