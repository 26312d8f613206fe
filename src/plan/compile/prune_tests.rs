//! The newest recurring snapshot is never a prune's to delete: what the compiled plans say.

use super::*;
use crate::model::action::PrunePolicy;
use crate::model::observed::{HostFacts, Observed, S3Copy, S3Facts, Seen, SnapshotCopy};
use crate::model::{S3Target, SnapshotFormat, name_time};
use crate::steps::planning::newest_recurring;

const OLD: &str = "2026-01-01T00:00:00Z_etcd";
const NEWEST: &str = "2026-01-02T00:00:00Z_etcd";

fn copy(etcd_ok: Option<bool>) -> SnapshotCopy {
    SnapshotCopy {
        format: SnapshotFormat::Zip,
        size: 1,
        modified: 0,
        checksum: None,
        etcd_ok,
        problem: None,
        db: None,
        has_state: false,
        identical_everywhere: false,
    }
}

/// A prune of two etcd hosts and S3, a week after the newest recurring snapshot was
/// taken: host 1 holds both snapshots, host 2 the old one (and a bad copy of the newest),
/// S3 both.
fn prune_plan(policy: PrunePolicy) -> Plan {
    let yaml = "nodes:\n  - address: 10.0.0.1\n    user: u\n    role: [etcd]\n  - address: 10.0.0.2\n    user: u\n    role: [etcd]\n";
    let cluster = crate::config::parse(std::path::Path::new("cluster.yml"), yaml.into()).unwrap().cluster;
    let target = S3Target { endpoint: "http://s3".into(), bucket: "b".into(), region: None, folder: None };
    let mut seen = Seen::default();
    let host = |copies: &[(&str, Option<bool>)]| HostFacts {
        snapshots: copies.iter().map(|(name, ok)| (n(name), copy(*ok))).collect(),
        ..Default::default()
    };
    seen.hosts.insert(HostAddr("10.0.0.1".into()), host(&[(OLD, Some(true)), (NEWEST, Some(true))]));
    seen.hosts.insert(HostAddr("10.0.0.2".into()), host(&[(OLD, Some(true)), (NEWEST, Some(false))]));
    let s3_copy = S3Copy {
        format: SnapshotFormat::Zip,
        size: 1,
        etag: String::new(),
        modified: 0,
        checksum: None,
        has_sealed_state: false,
        has_state: false,
    };
    seen.s3 = Some(S3Facts {
        target: target.clone(),
        snapshots: [(n(OLD), s3_copy.clone()), (n(NEWEST), s3_copy)].into(),
        other_snapshots: Vec::new(),
    });
    let week_later = name_time(&n(NEWEST)).unwrap() + 7 * 86_400;
    compile(&CompileInput {
        cluster: &cluster,
        cluster_hash: "h",
        action: &ActionSpec::EtcdSnapshotPrune { policy, s3: Some(target) },
        observed: &Observed::Online(seen),
        removed_members: &[],
        pki_ca: None,
        now: week_later,
    })
    .unwrap()
}

fn deletes(plan: &Plan) -> Vec<String> {
    plan.steps.iter().filter(|s| s.kind() == StepKind::DeleteSnapshot).map(|s| s.action.describe()).collect()
}

#[test]
fn a_prune_past_every_snapshots_retention_keeps_the_newest_and_says_why() {
    let plan = prune_plan(PrunePolicy::Age { seconds: 86_400, text: "24h0m0s".into() });
    let gone = deletes(&plan);
    assert_eq!(gone.len(), 3, "the old snapshot on both hosts and in S3: {gone:?}");
    assert!(gone.iter().all(|d| d.contains(OLD)), "{gone:?}");
    let note = plan.notes.iter().find(|n| n.starts_with("Kept snapshot")).unwrap_or_else(|| panic!("{:?}", plan.notes));
    assert!(
        note.contains(NEWEST)
            && note.contains("on 10.0.0.1, 10.0.0.2, s3://b/ at http://s3,")
            && note.contains("older than the retention (24h0m0s)")
            && note.contains("never deletes the last copy of the newest snapshot"),
        "{note}"
    );
}

#[test]
fn a_prune_that_keeps_the_newest_anyway_says_nothing_of_it() {
    let plan = prune_plan(PrunePolicy::Count { keep: 1 });
    assert_eq!(deletes(&plan).len(), 3, "{:?}", deletes(&plan));
    assert!(!plan.notes.iter().any(|n| n.starts_with("Kept snapshot")), "{:?}", plan.notes);
}

fn n(s: &str) -> SnapshotName {
    SnapshotName::new(s).unwrap()
}

#[test]
fn the_newest_recurring_snapshot_is_read_from_the_names_and_one_time_ones_do_not_count() {
    let (old, new, one_time) = (n("1970-01-01T00:00:10Z_etcd"), n("1970-01-01T00:01:00Z_etcd"), n("later.db"));
    // File times say the old one is newer; names decide, as for the policies.
    let listed = [(&old, 500), (&new, 100), (&one_time, 900)];
    assert_eq!(newest_recurring(listed.into_iter()), Some(new));
    assert_eq!(newest_recurring([(&one_time, 900)].into_iter()), None);
}
