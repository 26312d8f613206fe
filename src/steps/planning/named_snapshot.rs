//! A snapshot the user names must exist: deleting a name that is nowhere is a typo, not
//! "no changes", and the refusal says where rkectl looked and which names are near.

use super::{Builder, CompileError};
use crate::model::SnapshotName;

/// How many near names a refusal offers.
const NEAREST: usize = 3;

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
            "did you mean s3one, s3two, base.db? `rkectl etcd snapshot-list` lists every snapshot"
        );
        assert!(nearest("x", std::iter::empty()).starts_with("there are no snapshots there"));
    }
}
