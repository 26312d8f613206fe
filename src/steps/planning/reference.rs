//! A restore's reference: which copy of the snapshot every member is restored from, which
//! hosts already hold it, and where the others get theirs.

use super::*;
use crate::model::{Checksum, SnapshotLocation};

impl Builder<'_> {
    /// The copy every member is restored from, and which hosts already hold it.
    pub(super) fn choose_reference(
        &self,
        name: &SnapshotName,
        search: &RestoreSearch,
    ) -> Result<Reference, CompileError> {
        let obs = self.input.observed;
        if let Observed::Offline = obs {
            return Ok(Reference::Unknown);
        }
        let copies: Vec<(HostAddr, &SnapshotCopy)> = self
            .etcd_nodes()
            .iter()
            .filter_map(|n| Some((n.address.clone(), obs.host(&n.address)?.snapshots.get(name)?)))
            .collect();
        let in_s3 = obs.s3().and_then(|s| s.snapshots.get(name));
        match (search, in_s3) {
            (RestoreSearch::S3 { target } | RestoreSearch::S3ThenHosts { target }, Some(copy)) => {
                let pin = match &copy.checksum {
                    Some(checksum) => {
                        Pin::Checksum { facts: SnapshotFacts { size: copy.size, checksum: checksum.clone() } }
                    }
                    None => Pin::S3Object { size: copy.size, etag: copy.etag.clone() },
                };
                let good: Vec<HostAddr> = copies
                    .iter()
                    .filter(|(_, c)| {
                        c.format == copy.format
                            && c.checksum.is_some()
                            && c.checksum.as_ref() == pin.checksum()
                            && c.etcd_ok != Some(false)
                    })
                    .map(|(h, _)| h.clone())
                    .collect();
                let db = copies.iter().find(|(h, _)| good.contains(h)).and_then(|(_, c)| c.db.clone());
                Ok(Reference::Chosen(Chosen {
                    pin,
                    format: copy.format,
                    db,
                    from_s3: Some(target.clone()),
                    good_set: good.iter().cloned().collect(),
                    good,
                    why: Vec::new(),
                }))
            }
            (RestoreSearch::S3 { target }, None) => {
                let in_bucket = obs.s3().into_iter().flat_map(|s| s.snapshots.keys().chain(&s.other_snapshots));
                let near = super::named_snapshot::nearest(name.as_str(), in_bucket.map(|n| n.as_str()));
                Err(CompileError::S3SnapshotMissing {
                    name: name.clone(),
                    target: target.to_string(),
                    nearest: format!("{near}; check --bucket-name and --folder too"),
                })
            }
            (RestoreSearch::S3ThenHosts { target }, None) => {
                let mut r = self.reference_on_hosts(name, &copies).map_err(|e| match e {
                    // Both places were looked in: the nearest names of both, and no advice
                    // to add the --s3 that cluster.yml already stands for.
                    CompileError::SnapshotMissing { name, dir, hosts, .. } => {
                        let in_bucket = obs.s3().into_iter().flat_map(|s| s.snapshots.keys().chain(&s.other_snapshots));
                        let mut known: Vec<&str> = self.names_on_hosts();
                        known.extend(in_bucket.map(|n| n.as_str()));
                        known.sort();
                        known.dedup();
                        let near = super::named_snapshot::nearest(name.as_str(), known.into_iter());
                        let nearest = format!("it is not in {target} (cluster.yml's s3backupconfig) either; {near}");
                        CompileError::SnapshotMissing { name, dir, hosts, nearest }
                    }
                    e => e,
                })?;
                r.why.insert(
                    0,
                    format!("Snapshot {name} is not in {target} (cluster.yml's s3backupconfig); restoring from the etcd hosts' copies, as RKE falls back to them."),
                );
                Ok(Reference::Chosen(r))
            }
            (RestoreSearch::Hosts, _) => self.reference_on_hosts(name, &copies).map(Reference::Chosen),
        }
    }

    /// The refusal of a snapshot that no etcd host holds, with the nearest names they do.
    fn missing_on_hosts(&self, name: &SnapshotName) -> CompileError {
        let nodes = self.etcd_nodes();
        let near = super::named_snapshot::nearest(name.as_str(), self.names_on_hosts().into_iter());
        CompileError::SnapshotMissing {
            name: name.clone(),
            dir: crate::layout::SNAPSHOT_DIR,
            hosts: nodes.iter().map(|n| n.address.to_string()).collect::<Vec<_>>().join(", "),
            nearest: format!("{near}; to restore from S3, add --s3"),
        }
    }

    /// The names of the snapshots on the etcd hosts, each once.
    fn names_on_hosts(&self) -> Vec<&str> {
        let obs = self.input.observed;
        let mut there: Vec<&str> = self
            .etcd_nodes()
            .iter()
            .filter_map(|n| obs.host(&n.address))
            .flat_map(|f| f.snapshots.keys().chain(&f.other_snapshots).map(|k| k.as_str()))
            .collect();
        there.sort();
        there.dedup();
        there
    }

    /// The reference among the hosts' copies: the one copy they agree on, or, for copies
    /// that are each host's own snapshot (RKE's, recurring ones), the first etcd host's
    /// valid copy, as RKE's restore serves the first host's copy to the others.
    pub(super) fn reference_on_hosts(
        &self,
        name: &SnapshotName,
        copies: &[(HostAddr, &SnapshotCopy)],
    ) -> Result<Chosen, CompileError> {
        if copies.is_empty() {
            return Err(self.missing_on_hosts(name));
        }
        let mut groups: Vec<((SnapshotFormat, Checksum), Vec<HostAddr>)> = Vec::new();
        let mut problems = Vec::new();
        for (h, c) in copies {
            match (&c.checksum, c.etcd_ok) {
                (Some(sum), ok) if ok != Some(false) => {
                    let key = (c.format, sum.clone());
                    match groups.iter_mut().find(|(k, _)| *k == key) {
                        Some((_, hosts)) => hosts.push(h.clone()),
                        None => groups.push((key, vec![h.clone()])),
                    }
                }
                _ => problems.push(format!("{h}: {}", c.problem.as_deref().unwrap_or("fails etcd's hash check"))),
            }
        }
        let copy_of = |h: &HostAddr| copies.iter().find(|(c, _)| c == h).map(|(_, c)| *c).expect("a copy of each host");
        let mut why = Vec::new();
        let (key, good) = match groups.len() {
            0 => return Err(CompileError::SnapshotCorrupt { name: name.clone(), problems: problems.join("; ") }),
            1 => groups.remove(0),
            _ => {
                let one_time: Vec<&HostAddr> =
                    groups.iter().flat_map(|(_, hs)| hs).filter(|h| copy_of(h).identical_everywhere).collect();
                if !one_time.is_empty() {
                    return Err(CompileError::SnapshotInconsistent {
                        name: name.clone(),
                        groups: groups
                            .iter()
                            .map(|((_, sum), hosts)| {
                                format!(
                                    "{} on {}",
                                    sum.short(),
                                    hosts.iter().map(|h| h.to_string()).collect::<Vec<_>>().join(", ")
                                )
                            })
                            .collect::<Vec<_>>()
                            .join("; "),
                    });
                }
                let (key, good) = groups.remove(0);
                why.push(format!(
                    "The copies of snapshot {name} differ from host to host, as RKE's do (each host snapshots its own member): every member is restored from {}'s copy ({}), the first etcd host with a valid one, as RKE's restore does. The other hosts keep their own copy; the chosen one is staged beside it and removed after the restore.",
                    good[0],
                    key.1.short()
                ));
                (key, good)
            }
        };
        let size = copy_of(&good[0]).size;
        let db = copy_of(&good[0]).db.clone();
        Ok(Chosen {
            pin: Pin::Checksum { facts: SnapshotFacts { size, checksum: key.1 } },
            format: key.0,
            db,
            from_s3: None,
            good_set: good.iter().cloned().collect(),
            good,
            why,
        })
    }

    /// Where a host's copy of the reference goes: the snapshot folder if the host has no
    /// file of that name, else beside it (never over it).
    pub(crate) fn fetch_location(&self, host: &HostAddr, name: &SnapshotName) -> SnapshotLocation {
        match self.facts(host).and_then(|f| f.snapshots.get(name)) {
            Some(_) => SnapshotLocation::Staged,
            None => SnapshotLocation::Listed,
        }
    }

    /// Where the restore on `host` finds the reference copy, once distributed.
    pub(crate) fn reference_location(&self, host: &HostAddr, name: &SnapshotName) -> SnapshotLocation {
        match &self.reference {
            Some(Reference::Chosen(r)) if r.good_set.contains(host) => SnapshotLocation::Listed,
            _ => self.fetch_location(host, name),
        }
    }
}
