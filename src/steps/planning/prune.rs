//! What a prune deletes: the recurring snapshots its policy lets go, except the newest one.
//!
//! The newest recurring snapshot is never a prune's to delete, wherever its copies are: a
//! cluster whose recurring saves have failed for longer than the retention (expired
//! certificates, full disks) would otherwise lose every backup it has to one
//! `snapshot-prune --retention`. The recurring service follows the same rule on each node
//! (`agent::rolling`). The plan says when the rule keeps a snapshot the policy would take.

use super::*;
use crate::model::{is_recurring_name, name_time};

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
    /// Says which snapshots a prune never takes because they are one-time ones: a prune
    /// that leaves them, by design, must not read as if there were nothing to prune.
    pub(super) fn note_one_time_snapshots(&mut self, in_s3: bool) {
        let obs = self.input.observed;
        let on_hosts =
            self.etcd_nodes().into_iter().filter_map(|n| obs.host(&n.address)).flat_map(|f| f.snapshots.keys());
        let in_bucket = obs.s3().filter(|_| in_s3).into_iter().flat_map(|s| s.snapshots.keys());
        let mut one_time: Vec<&str> =
            on_hosts.chain(in_bucket).filter(|n| !is_recurring_name(n)).map(|n| n.as_str()).collect();
        one_time.sort();
        one_time.dedup();
        let (n, names) = (one_time.len(), one_time.join(", "));
        if n > 0 {
            let them = if n == 1 { "1 one-time snapshot is" } else { &format!("{n} one-time snapshots are") };
            self.notes.push(format!(
                "{them} never pruned ({names}): a prune, like rke-tools' retention, takes only recurring snapshots (`<time>_etcd`). Delete one with `rkectl etcd snapshot-delete --name NAME`."
            ));
        }
    }

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
