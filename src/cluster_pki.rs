//! Which PKI an action works with, and the rule that no CA is ever replaced silently.
//!
//! The PKI comes from RKE's state, in this order of preference:
//! 1. `cluster.rkestate` beside cluster.yml (RKE's own file);
//! 2. for a restore on a workstation that has no such file: the state stored with the
//!    snapshot (inside RKE's archive, as `rke etcd snapshot-restore` takes it by default,
//!    or sealed in rkectl's S3 manifest); `--use-local-state` refuses this fallback, as
//!    RKE's flag of that name does;
//! 3. a new PKI, only when asked with `--new-pki`.
//!
//! Whatever the source, the CA it holds is compared with `/etc/kubernetes/ssl/kube-ca.pem`
//! on every etcd host before anything is planned: a host that trusts another CA (or any
//! CA, when there is no PKI) stops the action, naming the host and both fingerprints.
//! Only `--new-pki` lets a plan replace a CA, and such a plan says so and asks first.

use crate::config::{Cluster, HostAddr};
use crate::model::observed::Observed;
use crate::rke::pki::{Fingerprint, Pki, PkiError};
use crate::rke::state::{RkeState, RkeStateError};
use miette::Diagnostic;
use std::fmt;
use std::path::{Path, PathBuf};

/// Where a snapshot's copy of the cluster state was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SnapshotStateOrigin {
    /// Inside the snapshot's archive on this etcd host.
    Host(HostAddr),
    /// Inside the snapshot's archive in S3.
    S3Archive,
    /// Sealed in rkectl's manifest beside the snapshot in S3, bound to what it says.
    S3Sealed(crate::rke::seal::Bound),
}

impl fmt::Display for SnapshotStateOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SnapshotStateOrigin::Host(h) => write!(f, "the snapshot's archive on host {h}"),
            SnapshotStateOrigin::S3Archive => f.write_str("the snapshot's archive in S3"),
            SnapshotStateOrigin::S3Sealed(_) => f.write_str("rkectl's sealed copy beside the snapshot in S3"),
        }
    }
}

/// Where the PKI of an action came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PkiSource {
    /// RKE's state file beside cluster.yml.
    LocalState(PathBuf),
    /// The state stored with the snapshot being restored.
    Snapshot(SnapshotStateOrigin),
    /// Made now (`--new-pki`).
    New,
}

impl fmt::Display for PkiSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PkiSource::LocalState(p) => write!(f, "{}", p.display()),
            PkiSource::Snapshot(o) => write!(f, "the cluster state stored with the snapshot ({o})"),
            PkiSource::New => f.write_str("a new PKI (--new-pki)"),
        }
    }
}

/// The PKI an action works with, and the state file it lives in.
#[derive(Debug, Clone)]
pub struct ClusterPki {
    pub pki: Pki,
    /// RKE's state, to be written beside cluster.yml when `write` is set.
    pub state: RkeState,
    pub source: PkiSource,
    /// The state file must be written before anything is applied: it is new, it comes
    /// from a snapshot, or certificates were issued into it.
    pub write: bool,
    /// Certificates issued now (members that join).
    pub issued: Vec<String>,
    /// Certificates reissued now, with their keys, because the names of the etcd nodes
    /// changed (an address, internal address or hostname_override).
    pub reissued: Vec<String>,
}

/// What the user asked about the PKI.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PkiFlags {
    /// `--new-pki`: make a new CA, replacing what hosts trust.
    pub new_pki: bool,
    /// `--use-local-state`: only the state beside cluster.yml.
    pub use_local_state: bool,
}

/// Why no PKI can be used; nothing has been changed.
#[derive(Debug, thiserror::Error, Diagnostic)]
pub enum ClusterPkiError {
    #[error(transparent)]
    #[diagnostic(transparent)]
    State(#[from] RkeStateError),
    #[error(transparent)]
    #[diagnostic(transparent)]
    Pki(#[from] PkiError),
    #[error("there is no cluster PKI: {} does not exist{}", path.display(), describe_hosts(hosts))]
    #[diagnostic(
        code(rkectl::pki::missing),
        help(
            "put RKE's state file (cluster.rkestate, written by `rke up`) beside cluster.yml; for a cluster that never had one, pass --new-pki to create a new CA and certificates (a plan that replaces a CA on a host asks before it does)"
        )
    )]
    NoPki { path: PathBuf, hosts: Vec<(HostAddr, Fingerprint)> },
    #[error("{} trusts another CA than the cluster's PKI: {} has kube-ca.pem {}, the PKI from {source_} has {pki}", plural(hosts.len()), hosts.iter().map(|(h, _)| h.to_string()).collect::<Vec<_>>().join(", "), hosts.first().map(|h| h.1.to_string()).unwrap_or_default())]
    #[diagnostic(
        code(rkectl::pki::ca_mismatch),
        help(
            "nothing was changed. Replacing a CA breaks every kubelet and kube-apiserver that trusts it: use the state file of this cluster (RKE's cluster.rkestate), or, if these hosts belong to no cluster any more, pass --new-pki and confirm the plan"
        )
    )]
    CaMismatch { hosts: Vec<(HostAddr, Fingerprint)>, pki: Fingerprint, source_: PkiSource },
    #[error(
        "the cluster state stored with the snapshot ({origin}) has another CA ({snapshot}) than {} ({local})",
        path.display()
    )]
    #[diagnostic(
        code(rkectl::pki::states_differ),
        help(
            "nothing was changed. RKE restores with the snapshot's state; the etcd hosts trust the local one: pass --use-local-state to restore with the CA the hosts have, or move the local file away to restore with the snapshot's"
        )
    )]
    StatesDiffer { path: PathBuf, local: Fingerprint, snapshot: Fingerprint, origin: SnapshotStateOrigin },
    #[error("--use-local-state was given but {} does not exist", path.display())]
    #[diagnostic(
        code(rkectl::pki::no_local_state),
        help(
            "put RKE's cluster.rkestate beside cluster.yml, or drop --use-local-state to use the state stored with the snapshot"
        )
    )]
    NoLocalState { path: PathBuf },
}

fn plural(n: usize) -> String {
    if n == 1 { "an etcd host".into() } else { format!("{n} etcd hosts") }
}

fn describe_hosts(hosts: &[(HostAddr, Fingerprint)]) -> String {
    match hosts.first() {
        None => ", and no etcd host has a CA".into(),
        Some((h, fp)) => {
            let more = if hosts.len() > 1 { format!(" (and {} more)", hosts.len() - 1) } else { String::new() };
            format!(", but {h} already trusts the CA {fp} in /etc/kubernetes/ssl/kube-ca.pem{more}")
        }
    }
}

/// The CA file of each host that has one.
fn host_cas(observed: &Observed) -> Vec<(HostAddr, Fingerprint)> {
    let hosts = observed.seen().into_iter().flat_map(|s| &s.hosts);
    hosts.filter_map(|(h, f)| Some((h.clone(), f.certs.as_ref()?.ca.clone()?))).collect()
}

/// Chooses the PKI. `local` is RKE's state beside cluster.yml, `from_snapshot` the state
/// stored with the snapshot a restore uses, `state_path` where the state file belongs.
pub fn choose(
    cluster: &Cluster,
    state_path: &Path,
    local: Option<RkeState>,
    from_snapshot: Option<(RkeState, SnapshotStateOrigin)>,
    flags: PkiFlags,
    observed: &Observed,
) -> Result<ClusterPki, ClusterPkiError> {
    if flags.use_local_state && local.is_none() {
        return Err(ClusterPkiError::NoLocalState { path: state_path.to_path_buf() });
    }
    if flags.new_pki {
        // Not checked against the hosts: replacing their CA is what --new-pki is for (the plan asks first).
        return new_pki(cluster, state_path, local);
    }
    let mut chosen = existing_pki(state_path, local, from_snapshot, flags, observed)?;
    check_hosts(&chosen, observed)?;
    issue_for_members(&mut chosen, cluster)?;
    Ok(chosen)
}

/// A new PKI (`--new-pki`), put into the local state when there is one.
fn new_pki(cluster: &Cluster, state_path: &Path, local: Option<RkeState>) -> Result<ClusterPki, ClusterPkiError> {
    let pki = Pki::generate(cluster)?;
    let state = match local {
        // The file keeps what RKE wrote; only the certificates change.
        Some(mut s) => {
            let names: Vec<String> = std::iter::once(crate::rke::pki::CA_NAME.to_string())
                .chain(std::iter::once(crate::rke::pki::NODE_NAME.to_string()))
                .chain(pki.etcd.keys().cloned())
                .collect();
            s.put_pki(&pki, &names);
            s
        }
        None => RkeState::new(state_path, &pki),
    };
    Ok(ClusterPki { pki, state, source: PkiSource::New, write: true, issued: Vec::new(), reissued: Vec::new() })
}

/// The PKI of the local state, else of the snapshot's; refused when they hold different
/// CAs, or when there is neither.
fn existing_pki(
    state_path: &Path,
    local: Option<RkeState>,
    from_snapshot: Option<(RkeState, SnapshotStateOrigin)>,
    flags: PkiFlags,
    observed: &Observed,
) -> Result<ClusterPki, ClusterPkiError> {
    let local_pki = match &local {
        Some(s) => s.pki()?,
        None => None,
    };
    let snapshot = match (&from_snapshot, flags.use_local_state) {
        (Some((s, origin)), false) => s.pki()?.map(|p| (p, origin.clone())),
        _ => None,
    };
    let chosen = match (local, local_pki, snapshot) {
        (Some(state), Some(pki), Some((snap, origin))) => {
            if snap.ca_fingerprint() != pki.ca_fingerprint() {
                return Err(ClusterPkiError::StatesDiffer {
                    path: state_path.to_path_buf(),
                    local: pki.ca_fingerprint(),
                    snapshot: snap.ca_fingerprint(),
                    origin,
                });
            }
            local_state_pki(pki, state, state_path)
        }
        (Some(state), Some(pki), None) => local_state_pki(pki, state, state_path),
        (_, _, Some((pki, origin))) => {
            let (state, _) = from_snapshot.expect("a snapshot state was found");
            ClusterPki {
                pki,
                state: state.at(state_path),
                source: PkiSource::Snapshot(origin),
                write: true,
                issued: Vec::new(),
                reissued: Vec::new(),
            }
        }
        (_, None, None) => {
            return Err(ClusterPkiError::NoPki { path: state_path.to_path_buf(), hosts: host_cas(observed) });
        }
        (None, Some(_), None) => unreachable!("a PKI without a state file"),
    };
    Ok(chosen)
}

/// The PKI of RKE's state file beside cluster.yml, as it is (nothing to write).
fn local_state_pki(pki: Pki, state: RkeState, state_path: &Path) -> ClusterPki {
    ClusterPki {
        pki,
        state,
        source: PkiSource::LocalState(state_path.to_path_buf()),
        write: false,
        issued: Vec::new(),
        reissued: Vec::new(),
    }
}

/// Issues certificates for members that join and reissues those whose names changed,
/// marking the state file to be written when any was.
fn issue_for_members(chosen: &mut ClusterPki, cluster: &Cluster) -> Result<(), ClusterPkiError> {
    chosen.issued = chosen.pki.ensure_members(cluster)?;
    chosen.reissued = chosen.pki.reissue_stale(cluster)?;
    if !chosen.issued.is_empty() || !chosen.reissued.is_empty() {
        let pki = chosen.pki.clone();
        chosen.state.put_pki(&pki, &chosen.reissued);
        chosen.write = true;
    }
    Ok(())
}

/// Refuses a PKI whose CA is not the one every host that has a CA trusts.
fn check_hosts(chosen: &ClusterPki, observed: &Observed) -> Result<(), ClusterPkiError> {
    let want = chosen.pki.ca_fingerprint();
    let wrong: Vec<(HostAddr, Fingerprint)> = host_cas(observed).into_iter().filter(|(_, fp)| *fp != want).collect();
    if wrong.is_empty() {
        Ok(())
    } else {
        Err(ClusterPkiError::CaMismatch { hosts: wrong, pki: want, source_: chosen.source.clone() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::observed::{CertFiles, HostFacts};

    fn cluster() -> Cluster {
        crate::config::parse(Path::new("cluster.yml"), "nodes:\n  - address: 10.0.0.1\n    user: u\n    role: [etcd]\n  - address: 10.0.0.2\n    user: u\n    role: [etcd]\n".into())
            .unwrap()
            .cluster
    }

    fn observed(cas: &[(&str, Option<&Fingerprint>)]) -> Observed {
        let mut o = crate::model::observed::Seen::default();
        for (h, ca) in cas {
            let certs = CertFiles { ca: ca.cloned(), cert: ca.is_some(), key: ca.is_some(), cert_sans: None };
            o.hosts.insert(HostAddr(h.to_string()), HostFacts { certs: Some(certs), ..Default::default() });
        }
        Observed::Online(o)
    }

    #[test]
    fn without_any_state_a_pki_is_made_only_when_asked() {
        let c = cluster();
        let o = observed(&[("10.0.0.1", None), ("10.0.0.2", None)]);
        let p = Path::new("cluster.rkestate");
        let e = choose(&c, p, None, None, PkiFlags::default(), &o).unwrap_err();
        assert!(matches!(e, ClusterPkiError::NoPki { .. }), "{e}");
        let made = choose(&c, p, None, None, PkiFlags { new_pki: true, ..Default::default() }, &o).unwrap();
        assert_eq!(made.source, PkiSource::New);
        assert!(made.write);
        assert_eq!(made.pki.etcd.len(), 2);
        assert_eq!(made.state.pki().unwrap().unwrap(), made.pki, "the new PKI is in the state that will be written");
    }

    #[test]
    fn a_host_that_trusts_another_ca_is_named_with_both_fingerprints() {
        let c = cluster();
        let theirs = Pki::generate(&c).unwrap();
        let ours = Pki::generate(&c).unwrap();
        let p = Path::new("cluster.rkestate");
        let local = RkeState::new(p, &ours);
        let o = observed(&[("10.0.0.1", Some(&ours.ca_fingerprint())), ("10.0.0.2", Some(&theirs.ca_fingerprint()))]);
        let e = choose(&c, p, Some(local.clone()), None, PkiFlags::default(), &o).unwrap_err();
        let text = e.to_string();
        assert!(text.contains("10.0.0.2") && !text.contains("10.0.0.1,"), "{text}");
        assert!(text.contains(&theirs.ca_fingerprint().0) && text.contains(&ours.ca_fingerprint().0), "{text}");
        // With no PKI at all, a host's CA is named too.
        let e = choose(&c, p, None, None, PkiFlags::default(), &o).unwrap_err();
        assert!(e.to_string().contains("already trusts the CA"), "{e}");
    }

    #[test]
    fn a_restore_takes_the_snapshots_state_only_without_a_local_one() {
        let c = cluster();
        let pki = Pki::generate(&c).unwrap();
        let other = Pki::generate(&c).unwrap();
        let p = Path::new("cluster.rkestate");
        let snap = (RkeState::new(Path::new("inside.rkestate"), &pki), SnapshotStateOrigin::S3Archive);
        let o = observed(&[("10.0.0.1", Some(&pki.ca_fingerprint())), ("10.0.0.2", None)]);
        let got = choose(&c, p, None, Some(snap.clone()), PkiFlags::default(), &o).unwrap();
        assert_eq!(got.source, PkiSource::Snapshot(SnapshotStateOrigin::S3Archive));
        assert!(got.write && got.state.path() == p, "it becomes the local state file");
        let e = choose(&c, p, None, Some(snap.clone()), PkiFlags { use_local_state: true, ..Default::default() }, &o);
        assert!(matches!(e, Err(ClusterPkiError::NoLocalState { .. })));
        let local = RkeState::new(p, &other);
        let e = choose(&c, p, Some(local), Some(snap), PkiFlags::default(), &o).unwrap_err();
        assert!(matches!(e, ClusterPkiError::StatesDiffer { .. }), "{e}");
    }

    #[test]
    fn a_member_that_joins_gets_a_certificate_written_back_to_the_state() {
        let c = cluster();
        let mut pki = Pki::generate(&c).unwrap();
        pki.etcd.remove("kube-etcd-10-0-0-2");
        let p = Path::new("cluster.rkestate");
        let o = observed(&[("10.0.0.1", Some(&pki.ca_fingerprint()))]);
        let got = choose(&c, p, Some(RkeState::new(p, &pki)), None, PkiFlags::default(), &o).unwrap();
        assert_eq!(got.issued, ["kube-etcd-10-0-0-2"]);
        assert!(got.write);
        assert!(got.state.pki().unwrap().unwrap().etcd.contains_key("kube-etcd-10-0-0-2"));
    }

    #[test]
    fn certificates_whose_names_changed_are_reissued_into_the_state() {
        let c = cluster();
        let pki = Pki::generate(&c).unwrap();
        let p = Path::new("cluster.rkestate");
        let o = observed(&[("10.0.0.1", Some(&pki.ca_fingerprint()))]);
        let same = choose(&c, p, Some(RkeState::new(p, &pki)), None, PkiFlags::default(), &o).unwrap();
        assert!(same.reissued.is_empty() && !same.write, "nothing changed, nothing to write");
        let text = "nodes:\n  - address: 10.0.0.1\n    user: u\n    role: [etcd]\n  - address: 10.0.0.2\n    hostname_override: renamed\n    user: u\n    role: [etcd]\n";
        let renamed = crate::config::parse(Path::new("cluster.yml"), text.into()).unwrap().cluster;
        let got = choose(&renamed, p, Some(RkeState::new(p, &pki)), None, PkiFlags::default(), &o).unwrap();
        assert_eq!(got.reissued, ["kube-etcd-10-0-0-1", "kube-etcd-10-0-0-2"]);
        assert!(got.write, "the state file is written before anything is deployed");
        let written = got.state.pki().unwrap().unwrap();
        assert_eq!(written, got.pki);
        let sans = crate::rke::pki::SanSet::of_pem(written.etcd["kube-etcd-10-0-0-2"].cert.as_bytes()).unwrap();
        assert!(sans.dns.contains(&"renamed".to_string()), "{sans:?}");
    }
}
