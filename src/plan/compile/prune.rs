//! What a prune deletes: the recurring snapshots its policy lets go, except the newest one.
//!
//! The newest recurring snapshot is never a prune's to delete, wherever its copies are: a
//! cluster whose recurring saves have failed for longer than the retention (expired
//! certificates, full disks) would otherwise lose every backup it has to one
//! `snapshot-prune --retention`. The recurring service follows the same rule on each node
//! (`agent::rolling`). The plan says when the rule keeps a snapshot the policy would take.

use super::*;

/// Snapshots a prune deletes: by age, or all but the newest `keep`. Only recurring snapshots
/// (`<time>_etcd`) are candidates, as in rke-tools' retention: a one-time snapshot, even
/// with RKE's default name, was taken on purpose (before an upgrade, say) and is kept.
/// Their age is read from the name, as rke-tools reads it, else taken from the file.
pub fn prune_candidates<'a>(
    snapshots: impl Iterator<Item = (&'a SnapshotName, i64)>,
    policy: &PrunePolicy,
    now: i64,
) -> Vec<SnapshotName> {
    let mut auto: Vec<(&SnapshotName, i64)> =
        snapshots.filter(|(n, _)| is_recurring_name(n)).map(|(n, m)| (n, name_time(n).unwrap_or(m))).collect();
    match policy {
        PrunePolicy::Age { seconds, .. } => {
            // A retention longer than i64 seconds keeps everything (it must never wrap negative).
            let keep_for = i64::try_from(*seconds).unwrap_or(i64::MAX);
            auto.into_iter().filter(|(_, m)| now.saturating_sub(*m) > keep_for).map(|(n, _)| n.clone()).collect()
        }
        PrunePolicy::Count { keep } => {
            auto.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| b.0.cmp(a.0)));
            auto.into_iter().skip(*keep as usize).map(|(n, _)| n.clone()).collect()
        }
    }
}

/// The newest recurring snapshot of `listed` (name, file time): by the time its name
/// carries, as rke-tools reads it, else the file's; a tie goes to the greater name, as the
/// count policy orders them.
pub fn newest_recurring<'a>(listed: impl Iterator<Item = (&'a SnapshotName, i64)>) -> Option<SnapshotName> {
    listed
        .filter(|(n, _)| is_recurring_name(n))
        .map(|(n, m)| (name_time(n).unwrap_or(m), n))
        .max()
        .map(|(_, n)| n.clone())
}

impl Builder<'_> {
    /// Chooses the snapshot a prune keeps whatever its policy says: the newest recurring
    /// one over the etcd hosts (copies not known to be bad) and, when the prune covers it,
    /// S3. Says so in the plan when the policy would have deleted it somewhere.
    pub(super) fn keep_newest_snapshot(&mut self, policy: &PrunePolicy, in_s3: bool) {
        let obs = self.input.observed;
        let mut places: Vec<(String, Vec<(&SnapshotName, i64)>)> = Vec::new();
        let mut good: Vec<(&SnapshotName, i64)> = Vec::new();
        for n in self.etcd_nodes() {
            let Some(f) = obs.host(&n.address) else { continue };
            good.extend(
                f.snapshots.iter().filter(|(_, c)| c.etcd_ok != Some(false)).map(|(name, c)| (name, c.modified)),
            );
            places.push((n.address.to_string(), f.snapshots.iter().map(|(name, c)| (name, c.modified)).collect()));
        }
        if let Some(s3) = obs.s3().filter(|_| in_s3) {
            let listed: Vec<_> = s3.snapshots.iter().map(|(name, c)| (name, c.modified)).collect();
            good.extend(listed.iter().copied());
            places.push((s3.target.to_string(), listed));
        }
        let Some(newest) = newest_recurring(good.into_iter()) else { return };
        let would: Vec<&str> = places
            .iter()
            .filter(|(_, l)| prune_candidates(l.iter().copied(), policy, self.input.now).contains(&newest))
            .map(|(p, _)| p.as_str())
            .collect();
        if !would.is_empty() {
            let policy = match policy {
                PrunePolicy::Age { text, .. } => format!("older than the retention ({text})"),
                PrunePolicy::Count { keep } => format!("beyond the newest {keep}"),
            };
            self.notes.push(format!(
                "Kept snapshot {newest} on {}, though it is {policy}: it is the newest recurring snapshot, and a prune never deletes the last copy of the newest snapshot.",
                would.join(", ")
            ));
        }
        self.prune_keeps = Some(newest);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::observed::{HostFacts, S3Copy, S3Facts, Seen};

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
        let note =
            plan.notes.iter().find(|n| n.starts_with("Kept snapshot")).unwrap_or_else(|| panic!("{:?}", plan.notes));
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
}
