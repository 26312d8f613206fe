//! `rkectl etcd snapshot-list`: every snapshot on every etcd host and in S3, and whether
//! the copies agree.

use super::args::{Common, S3Flags};
use super::{CliError, connector, inputs, keys_hint, load_config, redact_refusal};
use crate::config::LoadedConfig;
use crate::plan::observed::Seen;
use crate::plan::step::{Checksum, SnapshotFormat, SnapshotName, human_bytes};
use crate::refresh::{self, Hashing, Needs, SnapshotNeeds};
use crate::secret::Secret;
use std::collections::BTreeMap;

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
    /// Where a copy is: host addresses and `s3`.
    pub copies: BTreeMap<String, ListedCopy>,
    /// Every copy has the same size and checksum.
    pub consistent: bool,
    /// The copies differ because each host took its own (RKE's, recurring ones), not
    /// because one of them changed.
    pub per_host: bool,
}

/// One copy.
#[derive(Debug, serde::Serialize)]
pub struct ListedCopy {
    /// rkectl copied this one save to every host (copies must agree); else each host's own.
    pub identical_everywhere: bool,
    pub format: SnapshotFormat,
    pub has_state: bool,
    pub size: u64,
    pub checksum: Option<Checksum>,
    pub etcd_ok: Option<bool>,
}

/// Lists snapshots.
pub async fn run(common: &Common, verify: bool, s3_flags: &S3Flags) -> Result<(), CliError> {
    let cfg = load_config(common)?;
    let observed = observe_snapshots(common, &cfg, verify, s3_flags).await?;
    let mut rows = gather_rows(&observed);
    for row in rows.values_mut() {
        settle_agreement(row);
    }
    if common.json {
        super::json_line("snapshots", &rows.values().collect::<Vec<_>>());
        return Ok(());
    }
    let hosts: Vec<String> = cfg.cluster.etcd_nodes().map(|n| n.address.to_string()).collect();
    print_table(&rows, &hosts);
    Ok(())
}

/// Refreshes every snapshot on the etcd hosts and in S3 (hashed in full with `verify`).
async fn observe_snapshots(
    common: &Common,
    cfg: &LoadedConfig,
    verify: bool,
    s3_flags: &S3Flags,
) -> Result<Seen, CliError> {
    // As RKE's own commands do, cluster.yml's s3backupconfig counts without --s3.
    let s3 = inputs::s3(crate::config::S3Use::FlagsOrConfigured, s3_flags, &cfg.cluster)?;
    let pool =
        crate::prepare::pool(connector(common, &cfg.cluster), &cfg.cluster, &[], None).map_err(CliError::refused)?;
    let secrets: Vec<Secret> = s3.iter().flat_map(|s| [s.access_key.clone(), s.secret_key.clone()]).collect();
    let hash = if verify { Hashing::Full } else { Hashing::Checksum };
    let needs = Needs { snapshots: Some(SnapshotNeeds::All { hash }), certs: false, members: false, agents: false };
    refresh::refresh(&cfg.cluster, &pool, &needs, s3.as_ref(), &[]).await.map_err(|e| {
        let hint = keys_hint(e.s3(), s3_flags.library().key_sources_help(cfg.cluster.configured_s3()));
        redact_refusal(e, &secrets, hint)
    })
}

/// One row per snapshot name, with every copy seen on a host or in S3.
fn gather_rows(observed: &Seen) -> BTreeMap<SnapshotName, Row> {
    let mut rows: BTreeMap<SnapshotName, Row> = BTreeMap::new();
    for (host, facts) in &observed.hosts {
        for (name, c) in &facts.snapshots {
            add_copy(
                &mut rows,
                name,
                host.to_string(),
                c.modified,
                ListedCopy {
                    identical_everywhere: c.identical_everywhere,
                    format: c.format,
                    has_state: c.has_state,
                    size: c.size,
                    checksum: c.checksum.clone(),
                    etcd_ok: c.etcd_ok,
                },
            );
        }
    }
    if let Some(s) = &observed.s3 {
        for (name, c) in &s.snapshots {
            let copy = ListedCopy {
                identical_everywhere: false,
                format: c.format,
                has_state: c.has_state,
                size: c.size,
                checksum: c.checksum.clone(),
                etcd_ok: None,
            };
            add_copy(&mut rows, name, "s3".into(), c.modified, copy);
        }
    }
    rows
}

/// Adds a copy found at `place` to its snapshot's row, starting the row with the first.
fn add_copy(
    rows: &mut BTreeMap<SnapshotName, Row>,
    name: &SnapshotName,
    place: String,
    modified: i64,
    copy: ListedCopy,
) {
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

/// Prints the rows as a table; `hosts` are the etcd hosts a copy may be missing from.
fn print_table(rows: &BTreeMap<SnapshotName, Row>, hosts: &[String]) {
    println!("{:<48} {:<20} {:<9} {:>10}  {:<20} {:<8} WHERE", "NAME", "TIME", "FORMAT", "SIZE", "CHECKSUM", "COPIES");
    for row in rows.values() {
        print_row(row, hosts);
    }
}

/// Prints one row of the table.
fn print_row(row: &Row, hosts: &[String]) {
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
    println!(
        "{:<48} {:<20} {:<9} {:>10}  {:<20} {:<8} {w}",
        row.name.as_str(),
        t,
        format,
        human_bytes(row.size),
        sum,
        agree
    );
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
