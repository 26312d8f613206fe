//! The snapshot inventory: every snapshot on every etcd host and in S3, one row per name
//! with each copy, and the verdict on whether the copies agree (or differ only because each
//! host took its own). `rkectl etcd snapshot-list` shows it as a table or JSON.

use crate::config::{Cluster, S3Settings};
use crate::host::Connector;
use crate::model::observed::{Seen, SnapshotCopy};
use crate::model::step::human_bytes;
use crate::model::{Checksum, SnapshotFormat, SnapshotName};
use crate::refresh::{self, Hashing, Needs, RefreshError, SnapshotNeeds};
use miette::Diagnostic;
use std::collections::BTreeMap;
use std::sync::Arc;

/// One row of the listing.
#[derive(Debug, serde::Serialize)]
pub struct Row {
    pub name: SnapshotName,
    /// `zip` when any copy is rke-tools' archive, else `raw`.
    pub format: SnapshotFormat,
    /// Some copy carries the cluster state (RKE's state file, every private key in clear).
    pub has_state: bool,
    pub modified: i64,
    pub size: u64,
    /// Where a copy is (host addresses and `s3`), as refresh saw it: one snapshot-copy
    /// type from the hosts to this listing (an S3 copy has no etcd check of its own).
    pub copies: BTreeMap<String, SnapshotCopy>,
    /// Every copy has the same size and checksum.
    pub consistent: bool,
    /// The copies differ because each host took its own (RKE's, recurring ones), not
    /// because one of them changed.
    pub per_host: bool,
}

/// Why the snapshots could not be listed; nothing was changed.
#[derive(Debug, thiserror::Error, Diagnostic)]
pub enum InventoryError {
    #[error(transparent)]
    #[diagnostic(transparent)]
    AgentBinary(#[from] crate::agent_binary::AgentBinaryError),
    #[error(transparent)]
    #[diagnostic(transparent)]
    Refresh(#[from] RefreshError),
}

impl InventoryError {
    /// The S3 error refresh met, when that is why listing failed.
    pub fn s3(&self) -> Option<&crate::s3::S3Error> {
        match self {
            InventoryError::Refresh(r) => r.s3(),
            InventoryError::AgentBinary(_) => None,
        }
    }
}

/// Looks at every snapshot on the etcd hosts and in `s3` (read-only; hashed in full with
/// `verify`), and makes the rows of the inventory, in name order.
pub async fn list(
    cluster: &Cluster,
    connector: Arc<dyn Connector>,
    s3: Option<&S3Settings>,
    verify: bool,
) -> Result<Vec<Row>, InventoryError> {
    let pool = crate::prepare::pool(connector, cluster, &[], None)?;
    let hash = if verify { Hashing::Full } else { Hashing::Checksum };
    let needs = Needs { snapshots: Some(SnapshotNeeds::All { hash }), certs: false, members: false, agents: false };
    let observed = refresh::refresh(cluster, &pool, &needs, s3, &[]).await?;
    Ok(rows(&observed))
}

/// The rows of what refresh saw, each with its verdict.
pub fn rows(observed: &Seen) -> Vec<Row> {
    let mut rows = gather_rows(observed);
    for row in rows.values_mut() {
        settle_agreement(row);
    }
    rows.into_values().collect()
}

/// One row per snapshot name, with every copy seen on a host or in S3.
fn gather_rows(observed: &Seen) -> BTreeMap<SnapshotName, Row> {
    let mut rows: BTreeMap<SnapshotName, Row> = BTreeMap::new();
    for (host, facts) in &observed.hosts {
        for (name, c) in &facts.snapshots {
            add_copy(&mut rows, name, host.to_string(), c.clone());
        }
    }
    if let Some(s) = &observed.s3 {
        for (name, c) in &s.snapshots {
            let copy = SnapshotCopy {
                format: c.format,
                size: c.size,
                modified: c.modified,
                checksum: c.checksum.clone(),
                etcd_ok: None,
                problem: None,
                db: None,
                has_state: c.has_state,
                identical_everywhere: false,
            };
            add_copy(&mut rows, name, "s3".into(), copy);
        }
    }
    rows
}

/// Adds a copy found at `place` to its snapshot's row, starting the row with the first.
fn add_copy(rows: &mut BTreeMap<SnapshotName, Row>, name: &SnapshotName, place: String, copy: SnapshotCopy) {
    let modified = copy.modified;
    let row = rows.entry(name.clone()).or_insert_with(|| Row {
        name: name.clone(),
        format: copy.format,
        has_state: false,
        modified,
        size: copy.size,
        copies: BTreeMap::new(),
        consistent: true,
        per_host: false,
    });
    row.modified = row.modified.max(modified);
    row.has_state |= copy.has_state;
    if copy.format == SnapshotFormat::Zip {
        row.format = SnapshotFormat::Zip;
    }
    row.copies.insert(place, copy);
}

/// Sets whether a row's copies agree (or differ only because each host took its own), and its size.
fn settle_agreement(row: &mut Row) {
    let sizes: std::collections::BTreeSet<u64> = row.copies.values().map(|c| c.size).collect();
    let sums: std::collections::BTreeSet<&Checksum> = row.copies.values().filter_map(|c| c.checksum.as_ref()).collect();
    let corrupt = row.copies.values().any(|c| c.etcd_ok == Some(false));
    row.consistent = sizes.len() <= 1 && sums.len() <= 1 && !corrupt;
    row.per_host = !row.consistent && !corrupt && row.copies.values().all(|c| !c.identical_everywhere);
    row.size = sizes.iter().next().copied().unwrap_or(row.size);
}

/// The rows as a table, a line each; `hosts` are the etcd hosts a copy may be missing from.
pub fn table(rows: &[Row], hosts: &[String]) -> String {
    let mut out = format!(
        "{:<48} {:<20} {:<9} {:>10}  {:<20} {:<8} WHERE\n",
        "NAME", "TIME", "FORMAT", "SIZE", "CHECKSUM", "COPIES"
    );
    for row in rows {
        out.push_str(&table_row(row, hosts));
        out.push('\n');
    }
    // The marks a row may carry, said once in words under the table.
    let unknown = |on_host: bool| {
        rows.iter()
            .any(|r| !r.consistent && r.copies.iter().any(|(p, c)| c.checksum.is_none() && (p != "s3") == on_host))
    };
    if unknown(true) {
        out.push_str(
            "(?) on a host: no checksum is known for that copy: rkectl did not write it; `--verify` hashes it\n",
        );
    }
    if unknown(false) {
        out.push_str("s3(?): the bucket holds no checksum for that object (rkectl did not upload it), and rkectl never downloads to list\n");
    }
    if rows.iter().any(|r| r.per_host) {
        out.push_str("per-host: each host took its own snapshot at that time (RKE's and recurring ones), so their bytes differ\n");
    }
    out
}

/// One row of the table.
fn table_row(row: &Row, hosts: &[String]) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp(row.modified)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_default();
    let sum = row
        .copies
        .values()
        .find_map(|c| c.checksum.as_ref())
        .map(|c| c.short().to_string())
        .unwrap_or_else(|| "-".into());
    let agree = match (row.consistent, row.per_host) {
        (true, _) => "agree",
        (false, true) => "per-host",
        (false, false) => "DIFFER",
    };
    let w = where_column(row, hosts);
    let format = match (row.format, row.has_state) {
        (SnapshotFormat::Zip, true) => "zip+state".to_string(),
        (f, _) => f.to_string(),
    };
    format!(
        "{:<48} {:<20} {:<9} {:>10}  {:<20} {:<8} {w}",
        row.name.as_str(),
        t,
        format,
        human_bytes(row.size),
        sum,
        agree
    )
}

/// The WHERE column: each copy's place (with its checksum when the copies differ), then
/// the etcd hosts that have none.
fn where_column(row: &Row, hosts: &[String]) -> String {
    let mut where_: Vec<String> = Vec::new();
    for (place, c) in &row.copies {
        let mut w = place.clone();
        if !row.consistent {
            let s = c.checksum.as_ref().map(|c| c.short().to_string()).unwrap_or_else(|| "?".into());
            w.push_str(&format!("({s}{})", if c.etcd_ok == Some(false) { ", CORRUPT" } else { "" }));
        }
        where_.push(w);
    }
    let missing: Vec<&String> = hosts.iter().filter(|h| !row.copies.contains_key(*h)).collect();
    let mut w = where_.join(" ");
    if !missing.is_empty() {
        w.push_str(&format!("  (not on {})", missing.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")));
    }
    w
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::HostAddr;
    use crate::model::observed::{HostFacts, SnapshotCopy};

    fn copy(sum: &[u8], identical_everywhere: bool, etcd_ok: Option<bool>) -> SnapshotCopy {
        SnapshotCopy {
            format: SnapshotFormat::Raw,
            size: 3,
            modified: 10,
            checksum: Some(Checksum::of(sum)),
            etcd_ok,
            problem: None,
            db: None,
            has_state: false,
            identical_everywhere,
        }
    }

    /// Two hosts, each with its copy of `a.db`.
    fn seen(one: SnapshotCopy, two: SnapshotCopy) -> Seen {
        let mut seen = Seen::default();
        for (host, c) in [("10.0.0.1", one), ("10.0.0.2", two)] {
            let mut facts = HostFacts::default();
            facts.snapshots.insert(SnapshotName::new("a.db").unwrap(), c);
            seen.hosts.insert(HostAddr(host.into()), facts);
        }
        seen
    }

    #[test]
    fn copies_that_differ_are_per_host_only_when_each_host_took_its_own_and_none_is_corrupt() {
        let verdict = |s: Seen| {
            let [row] = &rows(&s)[..] else { panic!("one row") };
            (row.consistent, row.per_host)
        };
        assert_eq!(verdict(seen(copy(b"x", true, None), copy(b"x", true, None))), (true, false));
        assert_eq!(verdict(seen(copy(b"x", false, None), copy(b"y", false, None))), (false, true));
        assert_eq!(verdict(seen(copy(b"x", true, None), copy(b"y", true, None))), (false, false));
        assert_eq!(verdict(seen(copy(b"x", false, None), copy(b"x", false, Some(false)))), (false, false));
        let hosts = ["10.0.0.1".to_string(), "10.0.0.2".to_string(), "10.0.0.3".to_string()];
        let table = table(&rows(&seen(copy(b"x", false, None), copy(b"y", false, None))), &hosts);
        assert!(
            table.lines().nth(1).is_some_and(|l| l.contains("per-host") && l.ends_with("(not on 10.0.0.3)")),
            "{table}"
        );
    }

    #[test]
    fn the_table_says_what_its_marks_mean_under_it() {
        let mut unknown = copy(b"x", false, None);
        unknown.checksum = None;
        unknown.size = 4;
        let rows = rows(&seen(copy(b"a", false, None), unknown));
        let hosts = ["10.0.0.1".to_string(), "10.0.0.2".to_string()];
        let t = table(&rows, &hosts);
        assert!(t.contains("(?)") && t.contains("(?) on a host: no checksum is known for that copy"), "{t}");
        assert!(!t.contains("s3(?):"), "no S3 copy here: {t}");
        // Every host copy hashed (as with --verify), the bucket's object without a checksum.
        let mut with_s3 = seen(copy(b"a", false, None), copy(b"a", false, None));
        let object = crate::model::observed::S3Copy {
            format: SnapshotFormat::Raw,
            size: 5,
            etag: "e".into(),
            modified: 10,
            checksum: None,
            has_sealed_state: false,
            has_state: false,
        };
        with_s3.s3 = Some(crate::model::observed::S3Facts {
            target: crate::model::S3Target { endpoint: "e".into(), bucket: "b".into(), region: None, folder: None },
            snapshots: [(SnapshotName::new("a.db").unwrap(), object)].into(),
            other_snapshots: Vec::new(),
        });
        let t = table(&super::rows(&with_s3), &hosts);
        assert!(t.contains("s3(?)") && t.contains("s3(?): the bucket holds no checksum for that object"), "{t}");
        assert!(!t.contains("(?) on a host"), "every host copy has its checksum: {t}");
        let agreeing = table(&super::rows(&seen(copy(b"a", true, None), copy(b"a", true, None))), &hosts);
        assert!(!agreeing.contains("(?):") && !agreeing.contains("per-host:"), "no legend without marks: {agreeing}");
    }
}
