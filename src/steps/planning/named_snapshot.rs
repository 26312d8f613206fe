//! A snapshot the user names must exist: deleting a name that is nowhere is a typo, not
//! "no changes", and the refusal says where rkectl looked and which names are near.

use super::{Builder, CompileError};
use crate::model::SnapshotName;

/// How many near names a refusal offers.
const NEAREST: usize = 3;
/// How alike (0 to 1, Damerau-Levenshtein) a name must be to be offered.
const NEAR: f64 = 0.5;

impl Builder<'_> {
    /// Refuses `name` when refresh saw it on no etcd host and (with `in_s3`) not in the
    /// bucket. Offline plans saw nothing and check nothing.
    pub(super) fn check_named_snapshot(&self, name: &SnapshotName, in_s3: bool) -> Result<(), CompileError> {
        let Some(seen) = self.input.observed.seen() else { return Ok(()) };
        let on_hosts = seen.hosts.values().flat_map(|f| f.snapshots.keys());
        let s3 = seen.s3.as_ref().filter(|_| in_s3);
        let in_bucket = s3.into_iter().flat_map(|s| s.snapshots.keys());
        let mut known: Vec<&SnapshotName> = on_hosts.chain(in_bucket).collect();
        if known.contains(&name) {
            return Ok(());
        }
        known.sort();
        known.dedup();
        let hosts = self.etcd_nodes().iter().map(|n| n.address.to_string()).collect::<Vec<_>>().join(", ");
        let mut looked = format!("{} on {hosts}", crate::layout::SNAPSHOT_DIR);
        if let Some(s) = s3 {
            looked.push_str(&format!(" and {}", s.target));
        }
        Err(CompileError::UnknownSnapshot {
            name: name.clone(),
            looked,
            nearest: nearest(name.as_str(), known.iter().map(|n| n.as_str())),
        })
    }
}

/// The help of an unknown name: the names nearest to it, best first.
pub(super) fn nearest<'a>(typed: &str, known: impl Iterator<Item = &'a str>) -> String {
    let mut scored: Vec<(f64, &str)> = known.map(|k| (strsim::normalized_damerau_levenshtein(typed, k), k)).collect();
    if scored.is_empty() {
        return "there are no snapshots there; `rkectl etcd snapshot-list` lists what there is".into();
    }
    let there = scored.len();
    if there <= NEAREST && scored.iter().all(|(score, _)| *score < NEAR) {
        let mut names: Vec<&str> = scored.iter().map(|(_, n)| *n).collect();
        names.sort();
        let only = if there == 1 { "the only snapshot there is" } else { "the only snapshots there are" };
        return format!("{only} {}; `rkectl etcd snapshot-list` lists them", names.join(", "));
    }
    // A name is offered only when it is near: a list of unrelated names reads as a guess.
    scored.retain(|(score, k)| *score >= NEAR || k.contains(typed) || typed.contains(*k));
    if scored.is_empty() {
        return format!(
            "no name there is near it ({} in all); `rkectl etcd snapshot-list` lists them",
            crate::model::counted(there, "snapshot")
        );
    }
    scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(b.1)));
    let names: Vec<&str> = scored.iter().take(NEAREST).map(|(_, n)| *n).collect();
    format!("did you mean {}? `rkectl etcd snapshot-list` lists every snapshot", names.join(", "))
}

#[cfg(test)]
mod tests {
    use super::nearest;

    #[test]
    fn the_nearest_names_come_first_and_none_is_said_plainly() {
        let known = ["s3one", "base.db", "2026-12-07T03:00:00Z_etcd", "s3two"];
        assert_eq!(
            nearest("s3on", known.into_iter()),
            "did you mean s3one? `rkectl etcd snapshot-list` lists every snapshot"
        );
        assert_eq!(
            nearest("weekly", known.into_iter()),
            "no name there is near it (4 snapshots in all); `rkectl etcd snapshot-list` lists them"
        );
        assert!(nearest("etcd", known.into_iter()).starts_with("did you mean 2026-12-07T03:00:00Z_etcd?"));
        assert!(nearest("weekly", ["s3one"].into_iter()).starts_with("the only snapshot there is s3one;"));
        assert!(nearest("x", std::iter::empty()).starts_with("there are no snapshots there"));
    }
}
