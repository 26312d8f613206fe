//! Refresh: what the hosts and S3 look like now, read-only.
//!
//! Every etcd host is dialed in parallel; for each we read Docker's version, the
//! containers rkectl cares about, which images are missing, whether there is etcd data,
//! the certificate files, and the snapshots the action is about (hashed and checked by the
//! checksum checker when the action depends on their content). A host that cannot be
//! reached stops the plan here, before anything has changed anywhere.

use crate::agent::report::{self, HealthReport, SnapshotReport};
use crate::config::{Cluster, HostAddr, Node, S3Settings};
use crate::etcd::{containers, names, paths};
use crate::host::{Host, HostError, HostPool, Owner, run_once};
use crate::model::action::{ActionSpec, RemovedMember};
use crate::model::observed::{
    CertFiles, ContainerFacts, HostFacts, MadeBy, S3Copy, S3Facts, Seen, SnapshotCopy, compare_env,
};
use crate::model::{SnapshotFormat, SnapshotName};
use crate::rke::pki::Fingerprint;
use futures::future::join_all;
use miette::Diagnostic;
use std::collections::BTreeMap;

/// Why the world could not be observed; nothing was changed.
#[derive(Debug, thiserror::Error, Diagnostic)]
pub enum RefreshError {
    #[error("{0}")]
    #[diagnostic(
        code(rkectl::refresh::host),
        help("nothing was changed on any host; fix the host (or cluster.yml) and plan again")
    )]
    Host(HostError),
    #[error("{} hosts cannot be used: {}", .0.len(), .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; "))]
    #[diagnostic(
        code(rkectl::refresh::hosts),
        help("nothing was changed on any host; fix the hosts (or cluster.yml) and plan again")
    )]
    Hosts(Vec<HostError>),
    #[error("cannot check the snapshots on {host}: {reason}")]
    #[diagnostic(code(rkectl::refresh::snapshot), help("nothing was changed; the checksum checker's output is above"))]
    Checker { host: HostAddr, reason: String },
    #[error(transparent)]
    #[diagnostic(code(rkectl::refresh::s3), help("nothing was changed; check the S3 endpoint, bucket and keys"))]
    S3(#[from] crate::s3::S3Error),
}

impl RefreshError {
    /// Whether a host refused the SSH login (a key, a user, an agent).
    pub fn auth_failed(&self) -> bool {
        let auth = |e: &HostError| matches!(e, HostError::Auth { .. });
        match self {
            RefreshError::Host(e) => auth(e),
            RefreshError::Hosts(es) => es.iter().any(auth),
            _ => false,
        }
    }

    /// The S3 error refresh met, when that is why it failed.
    pub fn s3(&self) -> Option<&crate::s3::S3Error> {
        match self {
            RefreshError::S3(e) => Some(e),
            _ => None,
        }
    }
}

/// What to look at besides containers.
#[derive(Debug, Clone, Default)]
pub struct Needs {
    /// Snapshot names to list (all when `None`), and whether to hash them.
    pub snapshots: Option<SnapshotNeeds>,
    pub certs: bool,
    pub members: bool,
    /// rkectl's helper binaries on the hosts.
    pub agents: bool,
}

/// Which snapshots to look at.
#[derive(Debug, Clone)]
pub enum SnapshotNeeds {
    /// One snapshot, hashed and checked where present.
    One(SnapshotName),
    /// Every name, with the one snapshot named hashed and checked where present (delete:
    /// a name that is not there is refused with the near ones).
    Named(SnapshotName),
    /// All of them.
    All { hash: Hashing },
}

/// How much to compute about each snapshot file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hashing {
    /// Names, sizes and times only (with checksums from rkectl's records).
    None,
    /// BLAKE3 of every copy (fast), so differing copies show.
    Checksum,
    /// BLAKE3, etcd's SHA-256 trailer and `etcdctl snapshot status`.
    Full,
}

impl Needs {
    /// What an action needs to be planned.
    pub fn for_action(action: &ActionSpec) -> Needs {
        match action {
            ActionSpec::Up => Needs { snapshots: None, certs: true, members: true, agents: false },
            ActionSpec::EtcdSnapshotRestore { name, .. } => {
                Needs { snapshots: Some(SnapshotNeeds::One(name.clone())), certs: true, members: false, agents: false }
            }
            ActionSpec::EtcdSnapshotSave { name, .. } | ActionSpec::EtcdSnapshotDrill { name, .. } => {
                Needs { snapshots: Some(SnapshotNeeds::One(name.clone())), certs: false, members: false, agents: false }
            }
            ActionSpec::Cleanup => Needs { snapshots: None, certs: false, members: false, agents: true },
            ActionSpec::EtcdSnapshotDelete { name, .. } => Needs {
                snapshots: Some(SnapshotNeeds::Named(name.clone())),
                certs: false,
                members: false,
                agents: false,
            },
            ActionSpec::EtcdSnapshotPrune { .. } => Needs {
                snapshots: Some(SnapshotNeeds::All { hash: Hashing::None }),
                certs: false,
                members: false,
                agents: false,
            },
        }
    }
}

/// Observes the etcd hosts (and members leaving), and S3 when `s3` is given.
pub async fn refresh(
    cluster: &Cluster,
    pool: &HostPool,
    needs: &Needs,
    s3: Option<&S3Settings>,
    removed: &[RemovedMember],
) -> Result<Seen, RefreshError> {
    let nodes: Vec<&Node> = cluster.etcd_nodes().collect();
    let results = join_all(nodes.iter().map(|n| observe_host(cluster, pool, n, needs))).await;
    let mut observed = Seen::default();
    let mut errors = Vec::new();
    for (n, r) in nodes.iter().zip(results) {
        match r {
            Ok(f) => {
                observed.hosts.insert(n.address.clone(), f);
            }
            Err(Failure::Host(e)) => errors.push(e),
            Err(Failure::Checker(reason)) => return Err(RefreshError::Checker { host: n.address.clone(), reason }),
        }
    }
    match errors.len() {
        0 => {}
        1 => return Err(RefreshError::Host(errors.remove(0))),
        _ => return Err(RefreshError::Hosts(errors)),
    }
    // Members leaving may be gone for good (the disaster-recovery case): observe them if
    // they answer, and plan around them if not.
    for m in removed {
        if let Ok(host) = pool.get(&m.address).await
            && let Ok(Some(c)) = host.inspect_container(names::ETCD).await
        {
            let facts = observed.hosts.entry(m.address.clone()).or_default();
            // A member leaving is not in cluster.yml: nothing to compare its environment with.
            facts.containers.insert(names::ETCD.into(), container_facts(c, &[]));
        }
    }
    if needs.members {
        observe_members(cluster, pool, &mut observed).await;
    }
    if let Some(s3) = s3 {
        observed.s3 = Some(observe_s3(s3, needs).await?);
    }
    Ok(observed)
}

fn file_name(path: &str) -> &str {
    path.rsplit_once('/').map_or(path, |(_, f)| f)
}

/// What rkectl keeps of a container: no environment value (some are secrets), only how each
/// compares with `expected` (`NAME=value` entries).
fn container_facts(c: crate::host::ContainerInfo, expected: &[String]) -> ContainerFacts {
    ContainerFacts {
        made_by: MadeBy::of(&c.labels, &c.args),
        spec_hash: c.labels.get(containers::SPEC_HASH_LABEL).cloned(),
        image: c.image,
        running: c.running && !c.restarting,
        env: compare_env(&c.env, expected),
        args: c.args,
        binds: c.binds,
    }
}

enum Failure {
    Host(HostError),
    Checker(String),
}

impl From<HostError> for Failure {
    fn from(e: HostError) -> Self {
        Failure::Host(e)
    }
}

async fn observe_host(cluster: &Cluster, pool: &HostPool, node: &Node, needs: &Needs) -> Result<HostFacts, Failure> {
    let host = pool.get(&node.address).await?;
    let info = host.docker_info().await?;
    let mut f = HostFacts { docker_version: info.server_version, arch: info.architecture, ..Default::default() };
    for name in std::iter::once(names::ETCD)
        .chain(std::iter::once(names::ROLLING_SNAPSHOTS))
        .chain(names::TEMPORARY.iter().copied())
    {
        if let Some(c) = host.inspect_container(name).await? {
            let expected = crate::etcd::expected_env(cluster, node, name, &f.arch);
            f.containers.insert(name.to_string(), container_facts(c, &expected));
        }
    }
    // Helpers run in the etcd image too: it is the only image rkectl needs.
    if !host.image_present(&cluster.etcd.image).await? {
        f.missing_images.push(cluster.etcd.image.clone());
    }
    // Only shown in plans: an SSH user who may run Docker but not read the data folder
    // (RKE's etcd-fix-perm makes it 0700) gets "unknown", not a refused plan.
    f.has_etcd_data =
        host.list_dir(&format!("{}/member/snap", paths::DATA_DIR)).await.ok().map(|l| l.iter().any(|e| e.name == "db"));
    if needs.certs {
        let t = crate::etcd::member::tls_files(node);
        let ca = host.read_file(&t.ca).await?.map(|pem| {
            // A file that holds no certificate still counts: it is something rkectl would replace.
            Fingerprint::of_pem(&pem).unwrap_or_else(|| Fingerprint("not a certificate".into()))
        });
        let listed = host.list_dir(crate::rke::pki::CERT_DIR).await?;
        let present = |p: &str| listed.iter().any(|e| e.name == file_name(p));
        let cert_sans = match present(&t.cert) {
            true => host.read_file(&t.cert).await?.and_then(|pem| crate::rke::pki::SanSet::of_pem(&pem)),
            false => None,
        };
        f.certs = Some(CertFiles { ca, cert: present(&t.cert), key: present(&t.key), cert_sans });
    }
    if needs.agents {
        // Hidden folders there are not binaries (the invocations' claims live in one).
        let dirs = host.list_dirs(crate::agent_binary::REMOTE_ROOT).await?;
        f.agents = dirs.into_iter().filter(|d| !d.starts_with('.')).collect();
    }
    if let Some(want) = &needs.snapshots {
        (f.snapshots, f.other_snapshots) = observe_snapshots(cluster, pool.owner(), host.as_ref(), want).await?;
    }
    Ok(f)
}

async fn observe_snapshots(
    cluster: &Cluster,
    owner: &Owner,
    host: &dyn Host,
    want: &SnapshotNeeds,
) -> Result<(BTreeMap<SnapshotName, SnapshotCopy>, Vec<SnapshotName>), Failure> {
    let (mut out, others) = list_snapshots(host, want).await?;
    let recorded = read_records(host, want, &mut out).await;
    check_snapshots(cluster, owner, host, want, &mut out, &recorded).await?;
    Ok((out, others))
}

/// The wanted snapshots in the host's snapshot folder, one copy each, as listed, and the
/// names of the others.
async fn list_snapshots(
    host: &dyn Host,
    want: &SnapshotNeeds,
) -> Result<(BTreeMap<SnapshotName, SnapshotCopy>, Vec<SnapshotName>), Failure> {
    let listing = host.list_dir(crate::layout::SNAPSHOT_DIR).await?;
    let mut out: BTreeMap<SnapshotName, SnapshotCopy> = BTreeMap::new();
    let mut others: Vec<SnapshotName> = Vec::new();
    for e in listing {
        if e.name.ends_with(".part") {
            continue;
        }
        let Some((name, format)) = SnapshotFormat::parse_file_name(&e.name) else { continue };
        let wanted = match want {
            SnapshotNeeds::One(n) => &name == n,
            SnapshotNeeds::Named(_) | SnapshotNeeds::All { .. } => true,
        };
        // A host with both keeps RKE's choice: the archive (rke-tools unpacks it over the
        // plain file when it serves a restore).
        if !wanted {
            others.push(name);
            continue;
        }
        if out.get(&name).is_some_and(|c| c.format == SnapshotFormat::Zip) {
            continue;
        }
        out.insert(
            name,
            SnapshotCopy {
                format,
                size: e.size,
                modified: e.modified,
                checksum: None,
                etcd_ok: None,
                problem: None,
                db: None,
                has_state: false,
                identical_everywhere: false,
            },
        );
    }
    others.sort();
    others.dedup();
    Ok((out, others))
}

/// Takes what rkectl's records say of the listed copies; returns the checksum each record
/// gives.
async fn read_records(
    host: &dyn Host,
    want: &SnapshotNeeds,
    out: &mut BTreeMap<SnapshotName, SnapshotCopy>,
) -> BTreeMap<SnapshotName, crate::model::Checksum> {
    // rkectl's records say which copies are one save copied everywhere; listings without
    // hashing take checksums from them. A record only describes a file that is there, of
    // the same format and size.
    let mut recorded: BTreeMap<SnapshotName, crate::model::Checksum> = BTreeMap::new();
    for (name, copy) in out.iter_mut() {
        if let Some(r) = crate::host::records::read_quiet(host, name).await
            && r.format == copy.format
            && r.size == copy.size
        {
            copy.identical_everywhere = r.identical_everywhere;
            recorded.insert(name.clone(), r.checksum.clone());
            if matches!(want, SnapshotNeeds::All { hash: Hashing::None | Hashing::Checksum }) {
                copy.checksum = Some(r.checksum);
                copy.etcd_ok = Some(r.etcd_ok);
                copy.db = r.db;
                copy.has_state = r.has_state;
            }
        }
    }
    recorded
}

/// Hashes the listed copies with the checksum checker, and checks them too unless only
/// checksums are wanted; nothing runs when no hashing is wanted. The checker is this
/// invocation's own (see [`Owner::helper`]): an apply running beside a read-only look
/// keeps its own.
async fn check_snapshots(
    cluster: &Cluster,
    owner: &Owner,
    host: &dyn Host,
    want: &SnapshotNeeds,
    out: &mut BTreeMap<SnapshotName, SnapshotCopy>,
    recorded: &BTreeMap<SnapshotName, crate::model::Checksum>,
) -> Result<(), Failure> {
    let quick = matches!(want, SnapshotNeeds::All { hash: Hashing::Checksum });
    let to_hash: Vec<(SnapshotName, SnapshotFormat)> = match want {
        SnapshotNeeds::All { hash: Hashing::None } => Vec::new(),
        SnapshotNeeds::Named(named) => out.get(named).map(|c| (named.clone(), c.format)).into_iter().collect(),
        _ => out.iter().map(|(n, c)| (n.clone(), c.format)).collect(),
    };
    if !to_hash.is_empty() {
        let files: Vec<String> = to_hash.iter().map(|(n, f)| f.file_name(n)).collect();
        let spec = owner.helper(if quick {
            containers::checksum_only(cluster, &files)
        } else {
            containers::checksum_checker(cluster, &files)
        });
        let out_run = run_once(host, &spec).await?;
        let reports: Vec<SnapshotReport> = report::parse_all(&out_run.logs);
        for (name, _) in &to_hash {
            let copy = out.get_mut(name).expect("listed");
            match reports.iter().find(|r| r.name == name.as_str()) {
                Some(r) => take_report(copy, r, recorded.get(name), quick),
                None => {
                    return Err(Failure::Checker(format!(
                        "the checksum checker gave no result for {name} (exit code {}): {}",
                        out_run.exit_code,
                        out_run.logs.lines().last().unwrap_or("")
                    )));
                }
            }
        }
    }
    Ok(())
}

/// Takes the checker's report of a copy: its checksum, and etcd's checks unless `quick`.
fn take_report(copy: &mut SnapshotCopy, r: &SnapshotReport, recorded: Option<&crate::model::Checksum>, quick: bool) {
    if recorded != Some(&r.checksum) {
        // The record described other bytes: it says nothing about these.
        copy.identical_everywhere = false;
    }
    copy.checksum = Some(r.checksum.clone());
    copy.has_state = r.has_state;
    if !quick {
        copy.etcd_ok = Some(r.etcd_ok);
        copy.problem = r.problem.clone();
        copy.db = r.db.clone();
    }
}

async fn observe_members(cluster: &Cluster, pool: &HostPool, observed: &mut Seen) {
    let running: Vec<&Node> = cluster
        .etcd_nodes()
        .filter(|n| {
            observed.hosts.get(&n.address).and_then(|f| f.containers.get(names::ETCD)).is_some_and(|c| c.running)
        })
        .collect();
    for via in &running {
        let Ok(host) = pool.get(&via.address).await else { continue };
        let spec = pool.owner().helper(containers::health_check(cluster, via, &[via]));
        let Ok(out) = run_once(host.as_ref(), &spec).await else { continue };
        if let Ok(r) = report::parse::<HealthReport>(&out.logs)
            && !r.member_names.is_empty()
        {
            for n in &running {
                if let Some(f) = observed.hosts.get_mut(&n.address) {
                    f.members = Some(r.member_names.clone());
                }
            }
            return;
        }
    }
}

async fn observe_s3(s3: &S3Settings, needs: &Needs) -> Result<S3Facts, RefreshError> {
    let client = crate::s3::S3Client::new(s3).await?;
    client.check().await?;
    let mut snapshots: BTreeMap<SnapshotName, S3Copy> = BTreeMap::new();
    let mut others: Vec<SnapshotName> = Vec::new();
    for o in client.list().await? {
        let Some((name, format)) = SnapshotFormat::parse_file_name(o.name.as_str()) else { continue };
        let wanted = match &needs.snapshots {
            Some(SnapshotNeeds::One(n)) => &name == n,
            _ => true,
        };
        if !wanted {
            others.push(name);
            continue;
        }
        if snapshots.get(&name).is_some_and(|c| c.format == SnapshotFormat::Zip) {
            continue;
        }
        let (checksum, has_sealed_state) = if o.has_manifest {
            match client.get_manifest(&o.name).await? {
                Some(m) => (Some(m.checksum), m.sealed_state.is_some()),
                None => (None, false),
            }
        } else {
            (None, false)
        };
        snapshots.insert(
            name,
            S3Copy {
                format,
                size: o.size,
                etag: o.etag,
                modified: o.modified,
                checksum,
                has_sealed_state,
                has_state: false,
            },
        );
    }
    others.sort();
    others.dedup();
    Ok(S3Facts { target: s3.target(), snapshots, other_snapshots: others })
}
