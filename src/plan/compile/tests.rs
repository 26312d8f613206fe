use super::*;
use crate::config::Cluster;
use crate::etcd;
use crate::etcd::names;
use crate::model::ClusterState;
use crate::model::action::PrunePolicy;
use crate::model::observed::{CertFiles, ContainerFacts, HostFacts, MadeBy, compare_env};
use crate::model::observed::{Observed, SnapshotCopy};
use crate::model::{SnapshotFormat, is_recurring_name, name_time};
use crate::rke::pki::{Pki, SanSet};
use crate::steps::planning::prune_candidates;

fn cluster(node2: &str) -> Cluster {
    let mut yaml = String::from("nodes:\n");
    for (i, name) in [(1, "node1"), (2, node2), (3, "node3")] {
        yaml.push_str(&format!(
            "  - address: 10.0.0.{i}\n    hostname_override: {name}\n    user: u\n    role: [etcd]\n"
        ));
    }
    crate::config::parse(std::path::Path::new("cluster.yml"), yaml).unwrap().cluster
}

/// Every member running as `cluster` asks, with the certificates of `pki` on its host.
fn observed(cluster: &Cluster, pki: &Pki) -> Observed {
    let mut o = crate::model::observed::Seen::default();
    for n in cluster.etcd_nodes() {
        let spec = crate::etcd::member::spec(cluster, n, "", ClusterState::Existing, "x86_64");
        let etcd = ContainerFacts {
            image: spec.image.clone(),
            running: true,
            spec_hash: None,
            made_by: MadeBy::Rkectl,
            args: spec.cmd.clone(),
            env: compare_env(&spec.env, &spec.env),
            binds: spec.binds.clone(),
        };
        let cert = &pki.member(n).unwrap().cert;
        let certs = CertFiles {
            ca: Some(pki.ca_fingerprint()),
            cert: true,
            key: true,
            cert_sans: SanSet::of_pem(cert.as_bytes()),
        };
        let members = cluster.etcd_nodes().map(etcd::member_name).collect();
        let facts = HostFacts {
            containers: [(names::ETCD.to_string(), etcd)].into(),
            certs: Some(certs),
            members: Some(members),
            ..Default::default()
        };
        o.hosts.insert(n.address.clone(), facts);
    }
    Observed::Online(o)
}

fn up(cluster: &Cluster, observed: &Observed, ca: &crate::rke::pki::Fingerprint) -> Plan {
    compile(&CompileInput {
        cluster,
        cluster_hash: "h",
        action: &ActionSpec::Up,
        observed,
        removed_members: &[],
        pki_ca: Some(ca),
        now: 0,
    })
    .unwrap()
}

fn on(plan: &Plan, kind: StepKind) -> Vec<&Step> {
    plan.steps.iter().filter(|s| s.kind() == kind).collect()
}

#[test]
fn a_member_whose_certificate_lacks_its_new_name_gets_the_reissued_one_and_restarts() {
    let before = cluster("node2");
    let pki = Pki::generate(&before).unwrap();
    let ca = pki.ca_fingerprint();
    assert!(!up(&before, &observed(&before, &pki), &ca).has_changes(), "as deployed: nothing to do");

    // node2's hostname_override changed: its certificate does not name it.
    let renamed = cluster("node2b");
    let plan = up(&renamed, &observed(&before, &pki), &ca);
    let deploys = on(&plan, StepKind::DeployCerts);
    assert_eq!(deploys.len(), 1, "only the host whose certificate lacks its own name: {deploys:?}");
    assert_eq!(deploys[0].host.as_ref().map(HostAddr::as_str), Some("10.0.0.2"));
    let r = deploys[0].action.replaces().expect("a replacement the user confirms");
    assert_eq!(r.what, "the certificate /etc/kubernetes/ssl/kube-etcd-10-0-0-2.pem");
    assert!(r.why.contains("does not name node2b"), "{}", r.why);
    assert!(plan.needs_confirmation());
    let starts = on(&plan, StepKind::StartEtcd);
    assert_eq!(starts.len(), 1);
    assert_eq!(starts[0].host, deploys[0].host);
    assert!(
        matches!(starts[0].action, StepAction::StartEtcd(crate::steps::StartEtcd { restart: false, .. })),
        "its container changes (--name): it is recreated, not restarted"
    );
    // The member stays (etcd takes the new name when it starts with it): adding it again
    // beside itself would fail half-way, with its peer URL already a member's.
    assert!(on(&plan, StepKind::MemberAdd).is_empty(), "{:?}", on(&plan, StepKind::MemberAdd));
    let rename = starts[0].action.replaces().expect("a rename the user confirms");
    assert!(rename.what.contains("its member's name etcd-node2"), "{}", rename.what);
    assert!(rename.why.contains("names the member etcd-node2b"), "{}", rename.why);

    // The same names, but the file on node2 is an old certificate without its address:
    // its container stays as it is, so it restarts to load the new one.
    let Observed::Online(mut stale) = observed(&before, &pki) else { unreachable!("observed online") };
    let certs = stale.hosts.get_mut(&HostAddr("10.0.0.2".into())).unwrap().certs.as_mut().unwrap();
    certs.cert_sans.as_mut().unwrap().ips.retain(|ip| ip != "10.0.0.2");
    let plan = up(&before, &Observed::Online(stale), &ca);
    let starts = on(&plan, StepKind::StartEtcd);
    assert_eq!(starts.len(), 1);
    assert!(
        matches!(starts[0].action, StepAction::StartEtcd(crate::steps::StartEtcd { restart: true, .. })),
        "{}",
        starts[0].action.describe()
    );
    assert!(on(&plan, StepKind::DeployCerts)[0].action.replaces().unwrap().why.contains("10.0.0.2"));
}

#[test]
fn automatic_names_carry_their_time_as_rke_tools_reads_it() {
    let n = |s: &str| SnapshotName::new(s).unwrap();
    assert_eq!(name_time(&n("1970-01-01T00:01:00Z_etcd")), Some(60));
    assert_eq!(name_time(&n("rke_etcd_snapshot_1970-01-01T01:00:00+01:00")), Some(0));
    assert_eq!(name_time(&n("before-upgrade")), None);
    assert!(is_recurring_name(&n("2024-10-04T22:40:30Z_etcd")));
    assert!(!is_recurring_name(&n("before-upgrade.db")));
    let policy = PrunePolicy::Age { seconds: 30, text: "30s".into() };
    let old = n("1970-01-01T00:00:10Z_etcd");
    let new = n("1970-01-01T00:01:00Z_etcd");
    // The file times (100) say both are new; the names say the first is old.
    let got = prune_candidates([(&old, 100), (&new, 100)].into_iter(), &policy, 80);
    assert_eq!(got, std::slice::from_ref(&old));
    // A retention too long for the clock keeps everything instead of wrapping negative.
    let forever = PrunePolicy::Age { seconds: u64::MAX, text: "forever".into() };
    assert!(prune_candidates([(&old, 0), (&new, 0)].into_iter(), &forever, 1_800_000_000).is_empty());
    // RKE's one-time default name is never pruned, however old.
    let one_time = n("rke_etcd_snapshot_1970-01-01T00:00:00Z");
    let everything = PrunePolicy::Count { keep: 0 };
    assert_eq!(prune_candidates([(&one_time, 0), (&old, 0)].into_iter(), &everything, 80), std::slice::from_ref(&old));
}

#[test]
fn a_prune_by_age_compiled_again_with_the_clock_it_was_made_with_has_the_same_steps() {
    let c = cluster("node2");
    let recurring = SnapshotName::new("1970-01-01T00:00:10Z_etcd").unwrap();
    let newest = SnapshotName::new("1970-01-01T00:59:50Z_etcd").unwrap();
    let copy = listed_copy(SnapshotFormat::Raw);
    let mut seen = crate::model::observed::Seen::default();
    for n in c.etcd_nodes() {
        // A newer recurring snapshot beside it: prune never takes the newest.
        let snapshots =
            [(recurring.clone(), copy.clone()), (newest.clone(), SnapshotCopy { modified: 3_590, ..copy.clone() })];
        let facts = HostFacts { snapshots: snapshots.into(), ..Default::default() };
        seen.hosts.insert(n.address.clone(), facts);
    }
    let observed = Observed::Online(seen);
    let action =
        ActionSpec::EtcdSnapshotPrune { policy: PrunePolicy::Age { seconds: 60, text: "1m".into() }, s3: None };
    let at = |now| compile_at(&c, &action, &observed, now).unwrap();
    let saved = at(40);
    assert_eq!(saved.made_at, 40, "the plan records its clock");
    assert!(!saved.has_changes(), "the snapshot is 30s old: kept");
    assert_eq!(crate::plan::saved::check_as_compiled(&saved, &at(saved.made_at)), Ok(()));
    // An hour later the same inputs prune it: the saved plan's own clock is what makes it again.
    let later = crate::plan::saved::check_as_compiled(&saved, &at(3_600)).unwrap_err();
    assert!(matches!(later, crate::plan::saved::Difference::Missing { .. }), "{later}");
}

#[test]
fn deleting_a_name_that_is_nowhere_is_refused_naming_where_it_looked_and_the_near_names() {
    let c = cluster("node2");
    let copy = listed_copy(SnapshotFormat::Zip);
    let mut seen = crate::model::observed::Seen::default();
    for n in c.etcd_nodes() {
        let snapshots = [(SnapshotName::new("s3one").unwrap(), copy.clone())].into();
        seen.hosts.insert(n.address.clone(), HostFacts { snapshots, ..Default::default() });
    }
    let observed = Observed::Online(seen);
    let delete = |name: &str| {
        let action = ActionSpec::EtcdSnapshotDelete { name: SnapshotName::new(name).unwrap(), s3: None };
        compile_at(&c, &action, &observed, 100)
    };
    let e = delete("no-such-snap").unwrap_err();
    let (text, help) = (e.to_string(), miette::Diagnostic::help(&e).map(|h| h.to_string()).unwrap_or_default());
    assert!(
        text.contains("no snapshot no-such-snap to delete") && text.contains("/opt/rke/etcd-snapshots on 10.0.0.1"),
        "{text}"
    );
    assert!(help.starts_with("the only snapshot there is s3one;"), "{help}");
    let known = delete("s3one").unwrap();
    assert!(known.has_changes(), "a snapshot that is there is deleted");
    // Offline, nothing was seen: the name is not checked (the plan cannot be applied anyway).
    let action = ActionSpec::EtcdSnapshotDelete { name: SnapshotName::new("anything").unwrap(), s3: None };
    let offline = compile_at(&c, &action, &Observed::Offline, 100);
    assert!(offline.is_ok(), "{offline:?}");
}

/// A copy of a snapshot as a listing sees it (no hashes), written at second 10.
fn listed_copy(format: SnapshotFormat) -> SnapshotCopy {
    SnapshotCopy {
        format,
        size: 1,
        modified: 10,
        checksum: None,
        etcd_ok: None,
        problem: None,
        db: None,
        has_state: false,
        identical_everywhere: false,
    }
}

/// `action` compiled on `observed` at `now`, with nothing else to it (no PKI, no members removed).
fn compile_at(c: &Cluster, action: &ActionSpec, observed: &Observed, now: i64) -> Result<Plan, CompileError> {
    compile(&CompileInput { cluster: c, cluster_hash: "h", action, observed, removed_members: &[], pki_ca: None, now })
}

#[test]
fn restoring_or_drilling_a_name_that_is_nowhere_offers_the_near_names() {
    let c = cluster("node2");
    let mut seen = crate::model::observed::Seen::default();
    // As refresh sees them for a restore: the named one is not there, the others are names.
    for n in c.etcd_nodes() {
        let other_snapshots = vec![SnapshotName::new("before-upgrade").unwrap()];
        seen.hosts.insert(n.address.clone(), HostFacts { other_snapshots, ..Default::default() });
    }
    let target =
        crate::model::S3Target { endpoint: "s3.example".into(), bucket: "b".into(), region: None, folder: None };
    let in_bucket = crate::model::observed::S3Copy {
        format: SnapshotFormat::Zip,
        size: 1,
        etag: "e".into(),
        modified: 10,
        checksum: None,
        has_sealed_state: false,
        has_state: false,
    };
    let snapshots = [(SnapshotName::new("nightly-s3").unwrap(), in_bucket)].into();
    let other_snapshots = vec![SnapshotName::new("weekly-s3").unwrap()];
    seen.s3 = Some(crate::model::observed::S3Facts { target: target.clone(), snapshots, other_snapshots });
    let observed = Observed::Online(seen);
    let name = SnapshotName::new("before-upgrad").unwrap();
    let help = |e: CompileError| miette::Diagnostic::help(&e).map(|h| h.to_string()).unwrap_or_default();
    let hosts = crate::model::action::RestoreSearch::Hosts;
    for action in [
        ActionSpec::EtcdSnapshotRestore { name: name.clone(), from: hosts.clone() },
        ActionSpec::EtcdSnapshotDrill { name: name.clone(), from: hosts, host: None, compare_live: false },
    ] {
        let e = compile_at(&c, &action, &observed, 100).unwrap_err();
        assert!(matches!(e, CompileError::SnapshotMissing { .. }), "{e}");
        let help = help(e);
        assert!(help.starts_with("did you mean before-upgrade?") && help.contains("--s3"), "{help}");
    }
    let from_s3 = crate::model::action::RestoreSearch::S3 { target };
    let action = ActionSpec::EtcdSnapshotRestore { name: SnapshotName::new("nightly-s4").unwrap(), from: from_s3 };
    let e = compile_at(&c, &action, &observed, 100).unwrap_err();
    assert!(matches!(e, CompileError::S3SnapshotMissing { .. }), "{e}");
    let help = help(e);
    assert!(help.starts_with("did you mean nightly-s3?") && help.contains("--bucket-name"), "{help}");
}
