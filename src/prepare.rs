//! From inputs to a plan: read what rkectl and RKE keep beside cluster.yml, observe the
//! hosts (read-only), choose the PKI and refuse one the hosts do not trust, compile.
//!
//! Nothing here changes a host. Everything an apply needs afterwards (the PKI and the state
//! file to write first, the host pool already dialed, S3 settings with keys) comes back in
//! [`Prepared`], so the apply never has to decide anything again.

use crate::cluster_pki::{self, ClusterPki, ClusterPkiError, PkiFlags, SnapshotStateOrigin};
use crate::config::{Cluster, LoadedConfig, Node, Role, S3Settings};
use crate::etcd::names;
use crate::host::{Connector, HostPool};
use crate::model::action::{ActionSpec, RemovedMember};
use crate::model::observed::Observed;
use crate::model::{SnapshotFormat, SnapshotName};
use crate::plan::{self, Plan};
use crate::refresh::{self, Needs, RefreshError};
use crate::rke::state::{RkeState, RkeStateError};
use crate::secret::Secret;
use crate::state::StatePaths;
use crate::state::cluster_state::{RkectlState, StateError};
use crate::steps::planning::CompileError;
use miette::Diagnostic;
use std::sync::Arc;

/// What an action is prepared from.
pub struct PrepareInput {
    pub cfg: LoadedConfig,
    pub spec: ActionSpec,
    /// S3 settings with keys, when the action uses S3.
    pub s3: Option<S3Settings>,
    /// The user's passphrase that seals (and opens) RKE's state beside S3 snapshots.
    pub state_passphrase: Option<Secret>,
    pub pki_flags: PkiFlags,
    /// Plan without contacting anything (for review only).
    pub offline: bool,
    /// Lock every host dialed for this holder (an apply), from before it is looked at.
    pub lock_nodes: Option<String>,
    pub connector: Arc<dyn Connector>,
    /// The clock to compile with (seconds since the Unix epoch): now for a new plan, the
    /// saved plan's own for one compiled again to check it.
    pub now: i64,
}

impl PrepareInput {
    /// The inputs a saved plan was made from, to compile it again: its action and clock,
    /// under the node locks of `lock_holder`. A local state file, once there, is the PKI
    /// (the plan may have written it from the snapshot's).
    pub fn again(
        cfg: LoadedConfig,
        saved: &Plan,
        s3: Option<S3Settings>,
        state_passphrase: Option<Secret>,
        connector: Arc<dyn Connector>,
        lock_holder: String,
    ) -> PrepareInput {
        let use_local_state = crate::rke::state::path_for(&cfg.path).exists();
        PrepareInput {
            cfg,
            spec: saved.action.clone(),
            s3,
            state_passphrase,
            pki_flags: PkiFlags { new_pki: false, use_local_state },
            offline: false,
            lock_nodes: Some(lock_holder),
            connector,
            now: saved.made_at,
        }
    }
}

/// Everything needed to apply a plan.
pub struct Prepared {
    pub plan: Plan,
    pub cfg: LoadedConfig,
    pub paths: StatePaths,
    pub state: RkectlState,
    /// The PKI, for actions that place certificates (and the state file it lives in).
    pub pki: Option<ClusterPki>,
    /// RKE's state beside cluster.yml as it was read (sealed with S3 snapshots for DR).
    pub rke_state: Option<RkeState>,
    pub s3: Option<S3Settings>,
    pub state_passphrase: Option<Secret>,
    pub pool: Option<Arc<HostPool>>,
}

/// Why an action cannot be planned; nothing has been changed.
#[derive(Debug, thiserror::Error, Diagnostic)]
pub enum PrepareError {
    #[error(transparent)]
    #[diagnostic(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    #[diagnostic(transparent)]
    RkeState(#[from] RkeStateError),
    #[error(transparent)]
    #[diagnostic(transparent)]
    Refresh(#[from] RefreshError),
    #[error(transparent)]
    #[diagnostic(transparent)]
    Pki(#[from] ClusterPkiError),
    #[error(transparent)]
    #[diagnostic(transparent)]
    Compile(#[from] CompileError),
    #[error(transparent)]
    #[diagnostic(transparent)]
    AgentBinary(#[from] crate::agent_binary::AgentBinaryError),
    #[error("this plan stores the cluster state sealed beside the S3 copy, and no passphrase was given")]
    #[diagnostic(
        code(rkectl::seal::no_passphrase),
        help("give the passphrase the plan was made with: --state-passphrase-file FILE, or RKECTL_STATE_PASSPHRASE")
    )]
    SealNeedsPassphrase,
    #[error("a passphrase to seal the cluster state was given, but there is no {} to seal", path.display())]
    #[diagnostic(
        code(rkectl::seal::no_state),
        help("put RKE's cluster.rkestate beside cluster.yml, or save without a state passphrase")
    )]
    NothingToSeal { path: std::path::PathBuf },
    #[error("snapshot {name} carries the cluster state sealed with a passphrase, and none was given")]
    #[diagnostic(
        code(rkectl::seal::locked),
        help(
            "there is no cluster.rkestate beside cluster.yml, so the restore needs the sealed one: give its passphrase with --state-passphrase-file FILE (or RKECTL_STATE_PASSPHRASE), or put the cluster's cluster.rkestate beside cluster.yml"
        )
    )]
    SealedStateLocked { name: SnapshotName },
    #[error("the cluster state sealed beside snapshot {name} does not open: {problem}")]
    #[diagnostic(
        code(rkectl::seal::does_not_open),
        help(
            "nothing was changed. Give the passphrase used when the snapshot was saved, or put the cluster's cluster.rkestate beside cluster.yml and pass --use-local-state"
        )
    )]
    SealedStateDoesNotOpen { name: SnapshotName, problem: crate::rke::seal::SealError },
    #[error("{refused}")]
    #[diagnostic(code(rkectl::refresh::auth_after_ignored_key))]
    AuthAfterIgnoredKey {
        /// Not a `source`: its text is this error's own, and miette would print it twice.
        refused: RefreshError,
        /// The refusal's own help, then the ignored keys that may be why.
        #[help]
        help: String,
    },
    #[error("a snapshot named {name} already exists on {place}")]
    #[diagnostic(code(rkectl::plan::name_taken), help("choose another --name (rkectl never overwrites a snapshot)"))]
    NameTaken { name: String, place: String },
}

impl PrepareError {
    /// The S3 error refresh met, when that is why preparing failed.
    pub fn s3(&self) -> Option<&crate::s3::S3Error> {
        match self {
            PrepareError::Refresh(r) => r.s3(),
            _ => None,
        }
    }
}

/// Whether an action places certificates (and so needs the cluster's PKI).
fn places_certificates(spec: &ActionSpec) -> bool {
    matches!(spec, ActionSpec::Up | ActionSpec::EtcdSnapshotRestore { .. })
}

/// The files beside cluster.yml: rkectl's state and RKE's.
pub fn local_state(cfg: &LoadedConfig) -> Result<(StatePaths, RkectlState, Option<RkeState>), PrepareError> {
    let paths = StatePaths::beside(&cfg.dir(), &cfg.stem());
    let state = RkectlState::load(&paths.state)?;
    let rke = RkeState::load(&crate::rke::state::path_for(&cfg.path))?;
    Ok((paths, state, rke))
}

/// Plans the action.
pub async fn prepare(input: PrepareInput) -> Result<Prepared, PrepareError> {
    let PrepareInput { cfg, spec, s3, state_passphrase, pki_flags, offline, lock_nodes, connector, now } = input;
    let (paths, state, rke_state) = local_state(&cfg)?;
    if let ActionSpec::EtcdSnapshotSave { seal_state: true, .. } = &spec {
        if state_passphrase.is_none() {
            return Err(PrepareError::SealNeedsPassphrase);
        }
        if rke_state.is_none() {
            return Err(PrepareError::NothingToSeal { path: crate::rke::state::path_for(&cfg.path) });
        }
    }
    let removed = if matches!(spec, ActionSpec::Up) {
        removed_members(&cfg.cluster, &state, rke_state.as_ref())
    } else {
        Vec::new()
    };
    let (observed, pool) = if offline {
        (Observed::Offline, None)
    } else {
        // Cleanup too copies the binary first: the node lock is held by it, and cleanup
        // takes the node locks as any apply does (it removes what another's helpers run).
        let pool = pool(connector, &cfg.cluster, &removed, lock_nodes)?;
        let observed = refresh::refresh(&cfg.cluster, &pool, &Needs::for_action(&spec), s3.as_ref(), &removed)
            .await
            .map_err(|e| after_ignored_keys(e, &cfg))?;
        (Observed::Online(observed), Some(pool))
    };
    check_save_name(&spec, &observed)?;
    let pki = if places_certificates(&spec) && !offline {
        let from_snapshot = match (&spec, pki_flags.use_local_state) {
            (ActionSpec::EtcdSnapshotRestore { name, .. }, false) => {
                let sealed = SealedSource { passphrase: state_passphrase.as_ref(), needed: rke_state.is_none() };
                snapshot_state(&cfg, name, pool.as_deref(), s3.as_ref(), sealed, &observed).await?
            }
            _ => None,
        };
        let state_path = crate::rke::state::path_for(&cfg.path);
        Some(cluster_pki::choose(&cfg.cluster, &state_path, rke_state.clone(), from_snapshot, pki_flags, &observed)?)
    } else {
        None
    };
    let pki_ca = pki.as_ref().map(|p| p.pki.ca_fingerprint());
    let input = crate::steps::planning::CompileInput {
        cluster: &cfg.cluster,
        cluster_hash: &cfg.hash,
        action: &spec,
        observed: &observed,
        removed_members: &removed,
        pki_ca: pki_ca.as_ref(),
        now,
    };
    let mut plan = plan::compile(&input)?;
    if let (ActionSpec::Up, Some(note)) = (&spec, renamed_after_ignored_keys(&cfg, &observed)) {
        plan.notes.insert(0, note);
    }
    if let Some(p) = &pki {
        let placed = plan.steps.iter().filter(|s| s.kind() == crate::steps::StepKind::DeployCerts).count();
        let notes = pki_notes(p, plan.has_changes(), placed);
        plan.notes.extend(notes);
    }
    Ok(Prepared { plan, cfg, paths, state, pki, rke_state, s3, state_passphrase, pool })
}

/// What the plan should say about the PKI; `applied` when the plan changes anything (the
/// state file is written only then), `placed` the hosts it places certificates on.
fn pki_notes(p: &ClusterPki, applied: bool, placed: usize) -> Vec<String> {
    let mut notes = Vec::new();
    match &p.source {
        cluster_pki::PkiSource::LocalState(_) => {}
        // A new CA is made each time a plan is prepared: the fingerprint of this one would
        // not be the one a later apply deploys, so the plan does not show it.
        cluster_pki::PkiSource::New => notes.push(format!(
            "A new CA and new certificates are generated (--new-pki) and written to {} before anything else; the apply prints the new CA's fingerprint when it writes them.",
            p.state.path().display()
        )),
        source => notes.push(format!(
            "The cluster's PKI comes from {source} (CA {}); it will be written to {} before anything else.",
            p.pki.ca_fingerprint(),
            p.state.path().display()
        )),
    }
    if p.source == cluster_pki::PkiSource::Snapshot(SnapshotStateOrigin::S3Sealed(crate::rke::seal::Bound::NameOnly)) {
        notes.push(
            "WARNING: the cluster state sealed beside this snapshot in S3 was sealed by an earlier rkectl, bound to the snapshot's name only, not to its archive: it does not prove that the archive in the bucket is the one it was saved with (whoever can write the bucket could have put another database beside it). Restore it only if you trust the bucket; snapshots saved by this rkectl bind both.".into(),
        );
    }
    if !p.issued.is_empty() {
        notes.push(format!(
            "New certificates signed by the cluster's CA: {}; they are added to {} first, as `rke up` would add them.",
            p.issued.join(", "),
            p.state.path().display()
        ));
    }
    if !p.reissued.is_empty() && applied {
        notes.push(format!(
            "The etcd nodes' names changed, so their certificates are reissued by the cluster's CA with the same keys, as `rke up` would: {}; they are written to {} first, {}.",
            p.reissued.join(", "),
            p.state.path().display(),
            match placed {
                0 => "and the hosts keep theirs (each already carries its own member's names)".to_string(),
                n => format!("and placed on the {} whose certificate lacks its own names", crate::model::counted(n, "host")),
            }
        ));
    }
    notes
}

/// How the state sealed beside an S3 snapshot may be opened.
#[derive(Clone, Copy)]
struct SealedSource<'a> {
    passphrase: Option<&'a Secret>,
    /// There is no other state: a sealed one that cannot be opened stops the restore.
    needed: bool,
}

/// The cluster state stored with snapshot `name`, for a restore: inside RKE's archive on
/// the first etcd host that has one (the host RKE would read it from), else in S3 (inside
/// the archive, or sealed in rkectl's manifest). Only the archive's directory and the state
/// entry are read, never the database.
async fn snapshot_state(
    cfg: &LoadedConfig,
    name: &SnapshotName,
    pool: Option<&HostPool>,
    s3: Option<&S3Settings>,
    sealed: SealedSource<'_>,
    observed: &Observed,
) -> Result<Option<(RkeState, SnapshotStateOrigin)>, PrepareError> {
    let path = std::path::Path::new("(snapshot)");
    let parse = |text: &Secret| RkeState::parse(path, text.expose()).ok();
    if let Some(pool) = pool {
        for node in cfg.cluster.etcd_nodes() {
            let has_state =
                observed.host(&node.address).and_then(|f| f.snapshots.get(name)).is_some_and(|c| c.has_state);
            if !has_state {
                continue;
            }
            let Ok(host) = pool.get(&node.address).await else { continue };
            if let Ok(Some(text)) = crate::steps::archive_state(host, name).await
                && let Some(state) = parse(&text)
            {
                return Ok(Some((state, SnapshotStateOrigin::Host(node.address.clone()))));
            }
        }
    }
    let Some(s3) = s3 else { return Ok(None) };
    let Some(copy) = observed.s3().and_then(|f| f.snapshots.get(name)) else { return Ok(None) };
    let Ok(object) = SnapshotName::new(copy.format.file_name(name)) else { return Ok(None) };
    let Ok(client) = crate::s3::S3Client::new(s3).await else { return Ok(None) };
    if copy.format == SnapshotFormat::Zip {
        let source = Arc::new(S3Object { client: client.clone(), object: object.clone(), size: copy.size });
        if let Ok(Some(bytes)) = crate::rke::archive::remote_state(source, name.as_str()).await {
            let text = Secret::new(String::from_utf8_lossy(&bytes).into_owned());
            if let Some(state) = parse(&text) {
                return Ok(Some((state, SnapshotStateOrigin::S3Archive)));
            }
        }
    }
    if !copy.has_sealed_state {
        return Ok(None);
    }
    let Some(passphrase) = sealed.passphrase else {
        return if sealed.needed { Err(PrepareError::SealedStateLocked { name: name.clone() }) } else { Ok(None) };
    };
    // The checksum refresh read is the one the plan pins and the download is checked
    // against: the seal opens only if it was made beside those very bytes.
    let Some(archive) = &copy.checksum else { return Ok(None) };
    let Ok(Some(manifest)) = client.get_manifest(&object).await else { return Ok(None) };
    let Some(blob) = &manifest.sealed_state else { return Ok(None) };
    // A passphrase given that does not open the state is a mistake to report, whether or
    // not another state exists: the user expects this one to be used.
    let opened = crate::rke::seal::open(passphrase, name, archive, blob)
        .map_err(|problem| PrepareError::SealedStateDoesNotOpen { name: name.clone(), problem })?;
    Ok(parse(&opened.state).map(|state| (state, SnapshotStateOrigin::S3Sealed(opened.bound))))
}

/// An S3 object, read in ranges.
struct S3Object {
    client: crate::s3::S3Client,
    object: SnapshotName,
    size: u64,
}

#[async_trait::async_trait]
impl crate::rke::archive::RangeSource for S3Object {
    fn size(&self) -> u64 {
        self.size
    }
    async fn read_range(&self, offset: u64, len: u64) -> std::io::Result<Vec<u8>> {
        self.client.read_range(&self.object, offset, len).await.map_err(std::io::Error::other)
    }
}

/// A pool over cluster.yml's nodes and the members leaving it, which installs rkectl's
/// helper binary on each host it dials. Members that left are dialed (to remove them) with
/// the first etcd node's SSH settings, which is what a cluster of one kind of host has.
pub fn pool(
    connector: Arc<dyn Connector>,
    cluster: &Cluster,
    removed: &[RemovedMember],
    lock: Option<String>,
) -> Result<Arc<HostPool>, crate::agent_binary::AgentBinaryError> {
    let agent = crate::agent_binary::AgentBinary::usable()?;
    let mut nodes: Vec<Node> = cluster.nodes.clone();
    if let Some(template) = cluster.etcd_nodes().next() {
        for m in removed {
            if cluster.node(&m.address).is_none() {
                let mut n = template.clone();
                n.address = m.address.clone();
                n.hostname_override = None;
                n.hostname = m.address.as_str().to_lowercase();
                n.internal_address = None;
                nodes.push(n);
            }
        }
    }
    let pool = HostPool::new(connector, nodes).with_agent(agent);
    Ok(Arc::new(match lock {
        Some(holder) => pool.with_lock(holder),
        None => pool,
    }))
}

/// Members that were deployed (by rkectl, or by RKE per its current state) but are no
/// longer etcd nodes of cluster.yml.
pub fn removed_members(cluster: &Cluster, state: &RkectlState, rke: Option<&RkeState>) -> Vec<RemovedMember> {
    let mut out: Vec<RemovedMember> = Vec::new();
    let deployed = state.members.iter().map(|m| (m.address.clone(), m.member.clone())).chain(
        rke.map(RkeState::deployed_etcd_nodes)
            .unwrap_or_default()
            .into_iter()
            .map(|(a, m)| (crate::config::HostAddr(a), m)),
    );
    for (address, member) in deployed {
        let still = cluster.node(&address).is_some_and(|n| n.has_role(Role::Etcd));
        if !still && !out.iter().any(|m| m.address == address) {
            out.push(RemovedMember { address, member });
        }
    }
    out
}

fn check_save_name(spec: &ActionSpec, observed: &Observed) -> Result<(), PrepareError> {
    if let ActionSpec::EtcdSnapshotSave { name, .. } = spec {
        let on: Vec<String> = observed
            .seen()
            .into_iter()
            .flat_map(|s| &s.hosts)
            .filter(|(_, f)| f.snapshots.contains_key(name))
            .map(|(h, _)| h.to_string())
            .collect();
        if !on.is_empty() {
            return Err(PrepareError::NameTaken { name: name.to_string(), place: on.join(", ") });
        }
        if observed.s3().is_some_and(|s| s.snapshots.contains_key(name)) {
            return Err(PrepareError::NameTaken { name: name.to_string(), place: "S3".into() });
        }
    }
    Ok(())
}

/// The keys cluster.yml had that rkectl ignored and whose name (or the one suggested for
/// it) contains `about`, as the warnings described them.
fn ignored_keys_about(cfg: &LoadedConfig, about: &str) -> Vec<String> {
    cfg.ignored_keys
        .iter()
        .filter(|k| k.path.contains(about) || k.suggestion.is_some_and(|s| s.contains(about)))
        .map(|k| k.describe())
        .collect()
}

/// An SSH login that failed while cluster.yml had keys rkectl ignored about SSH: the help
/// says which, since a misspelt `ssh_key_path` is the likely reason the login failed.
fn after_ignored_keys(e: RefreshError, cfg: &LoadedConfig) -> PrepareError {
    let about_ssh = ignored_keys_about(cfg, "ssh");
    if !e.auth_failed() || about_ssh.is_empty() {
        return e.into();
    }
    let own = miette::Diagnostic::help(&e).map(|h| h.to_string()).unwrap_or_default();
    let help = format!(
        "{own}. cluster.yml has keys rkectl ignored (see the warnings above), and the login may have failed because of them: {}",
        about_ssh.join("; ")
    );
    PrepareError::AuthAfterIgnoredKey { refused: e, help }
}

/// A member that `up` renames while cluster.yml had keys rkectl ignored about its name: the
/// plan says so first, since a misspelt `hostname_override` is the likely reason.
fn renamed_after_ignored_keys(cfg: &LoadedConfig, observed: &Observed) -> Option<String> {
    let about_name = ignored_keys_about(cfg, "hostname_override");
    let renamed: Vec<String> = cfg
        .cluster
        .etcd_nodes()
        .filter_map(|n| {
            let now = crate::etcd::renamed_member(n, observed.host(&n.address)?.containers.get(names::ETCD)?)?;
            Some(format!("{now} on {} becomes {}", n.address, crate::etcd::member_name(n)))
        })
        .collect();
    if about_name.is_empty() || renamed.is_empty() {
        return None;
    }
    Some(format!(
        "WARNING: cluster.yml has keys rkectl ignored (see the warnings above), and they change the names of members: {}. If that is not what you mean, fix them and plan again: {}.",
        renamed.join(", "),
        about_name.join("; ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rke::seal::Bound;

    #[test]
    fn a_login_refused_after_an_ignored_ssh_key_says_which_key_was_ignored() {
        let yaml = "nodes:\n  - address: 10.0.0.1\n    user: root\n    role: [etcd]\n    ssh_key_pth: /k\n";
        let cfg = crate::config::parse(std::path::Path::new("cluster.yml"), yaml.into()).unwrap();
        let refused = || {
            RefreshError::Host(crate::host::HostError::Auth {
                host: crate::model::HostAddr("10.0.0.1".into()),
                reason: "Permission denied (publickey)".into(),
            })
        };
        let e = after_ignored_keys(refused(), &cfg);
        let help = miette::Diagnostic::help(&e).map(|h| h.to_string()).unwrap_or_default();
        assert!(help.contains("nodes[0].ssh_key_pth (line 5, did you mean ssh_key_path?)"), "{help}");
        assert!(help.starts_with("nothing was changed on any host"), "the refusal's own help stays first: {help}");
        // Without an ignored key about SSH, the refusal is as it was.
        let plain =
            crate::config::parse(std::path::Path::new("cluster.yml"), yaml.replace("ssh_key_pth: /k", "usr: x"))
                .unwrap();
        assert!(matches!(after_ignored_keys(refused(), &plain), PrepareError::Refresh(_)));
    }

    fn pki_from(origin: SnapshotStateOrigin) -> ClusterPki {
        let yaml = "nodes:\n  - address: 10.0.0.1\n    user: root\n    role: [etcd]\n";
        let cfg = crate::config::parse(std::path::Path::new("cluster.yml"), yaml.into()).unwrap();
        let pki = crate::rke::pki::Pki::generate(&cfg.cluster).unwrap();
        let state = RkeState::new(std::path::Path::new("cluster.rkestate"), &pki);
        ClusterPki {
            pki,
            state,
            source: cluster_pki::PkiSource::Snapshot(origin),
            write: true,
            issued: Vec::new(),
            reissued: Vec::new(),
        }
    }

    #[test]
    fn a_state_sealed_by_an_earlier_rkectl_opens_with_a_warning_that_the_archive_is_not_bound() {
        let warned = |notes: &[String]| notes.iter().any(|n| n.starts_with("WARNING") && n.contains("name only"));
        let old = pki_notes(&pki_from(SnapshotStateOrigin::S3Sealed(Bound::NameOnly)), true, 0);
        assert!(warned(&old), "{old:?}");
        let bound = pki_notes(&pki_from(SnapshotStateOrigin::S3Sealed(Bound::NameAndArchive)), true, 0);
        assert!(!warned(&bound) && bound.iter().any(|n| n.contains("sealed copy")), "{bound:?}");
    }
}
