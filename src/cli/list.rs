//! `rkectl etcd snapshot-list`: every snapshot on every etcd host and in S3, and whether
//! the copies agree.

use super::args::{Common, S3Flags};
use super::{CliError, inputs, load_config, pool_for, redact_refusal};
use crate::plan::step::{Checksum, SnapshotName, human_bytes};
use crate::refresh::{self, Hashing, Needs, SnapshotNeeds};
use crate::state::StatePaths;
use crate::state::cluster_state::ClusterState;
use std::collections::BTreeMap;

/// One row of the listing.
#[derive(Debug, serde::Serialize)]
pub struct Row {
    pub name: SnapshotName,
    pub modified: i64,
    pub size: u64,
    /// Where a copy is: host addresses and `s3`.
    pub copies: BTreeMap<String, Copy>,
    /// Every copy has the same size and checksum.
    pub consistent: bool,
}

/// One copy.
#[derive(Debug, serde::Serialize)]
pub struct Copy {
    pub size: u64,
    pub checksum: Option<Checksum>,
    pub etcd_ok: Option<bool>,
}

/// Lists snapshots.
pub async fn run(common: &Common, verify: bool, s3_flags: &S3Flags) -> Result<(), CliError> {
    let cfg = load_config(common)?;
    let s3 = inputs::s3_settings(s3_flags, &cfg.cluster)?;
    let paths = StatePaths::beside(&cfg.dir(), &cfg.stem());
    let state = ClusterState::load(&paths.state).map_err(CliError::refused)?;
    let pool = pool_for(common, &cfg.cluster, &state);
    let hash = if verify { Hashing::Full } else { Hashing::Checksum };
    let needs = Needs { snapshots: Some(SnapshotNeeds::All { hash }), certs: false, members: false };
    let observed = refresh::refresh(&cfg.cluster, &pool, &needs, s3.as_ref(), &[])
        .await
        .map_err(|e| redact_refusal(e, s3.as_ref()))?;
    let mut rows: BTreeMap<SnapshotName, Row> = BTreeMap::new();
    let mut add = |name: &SnapshotName, place: String, modified: i64, copy: Copy| {
        let row = rows.entry(name.clone()).or_insert_with(|| Row {
            name: name.clone(),
            modified,
            size: copy.size,
            copies: BTreeMap::new(),
            consistent: true,
        });
        row.modified = row.modified.max(modified);
        row.copies.insert(place, copy);
    };
    for (host, facts) in &observed.hosts {
        for (name, c) in &facts.snapshots {
            add(
                name,
                host.to_string(),
                c.modified,
                Copy { size: c.size, checksum: c.checksum.clone(), etcd_ok: c.etcd_ok },
            );
        }
    }
    if let Some(s) = &observed.s3 {
        for (name, c) in &s.snapshots {
            add(name, "s3".into(), c.modified, Copy { size: c.size, checksum: c.checksum.clone(), etcd_ok: None });
        }
    }
    for row in rows.values_mut() {
        let sizes: std::collections::BTreeSet<u64> = row.copies.values().map(|c| c.size).collect();
        let sums: std::collections::BTreeSet<&Checksum> =
            row.copies.values().filter_map(|c| c.checksum.as_ref()).collect();
        let corrupt = row.copies.values().any(|c| c.etcd_ok == Some(false));
        row.consistent = sizes.len() <= 1 && sums.len() <= 1 && !corrupt;
        row.size = sizes.iter().next().copied().unwrap_or(row.size);
    }
    if common.json {
        println!("{}", serde_json::to_string_pretty(&rows.values().collect::<Vec<_>>()).expect("rows serialise"));
        return Ok(());
    }
    let hosts: Vec<String> = cfg.cluster.etcd_nodes().map(|n| n.address.to_string()).collect();
    println!("{:<48} {:<20} {:>10}  {:<20} {:<8} WHERE", "NAME", "TIME", "SIZE", "CHECKSUM", "COPIES");
    for row in rows.values() {
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
        let agree = if row.consistent { "agree".to_string() } else { "DIFFER".to_string() };
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
        println!("{:<48} {:<20} {:>10}  {:<20} {:<8} {w}", row.name.as_str(), t, human_bytes(row.size), sum, agree);
    }
    Ok(())
}
