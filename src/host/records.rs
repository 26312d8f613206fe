//! rkectl's record beside a snapshot on a host (`layout::record`): reading it. The agent
//! writes it (`agent::report::SnapshotReport` is its format); refresh and the snapshot
//! steps read it through here.

use super::{Host, HostResult};
use crate::agent::report::SnapshotReport;
use crate::layout;
use crate::model::SnapshotName;

/// rkectl's record of a snapshot on a host, if there is one, whether or not its file is
/// still there: callers match it to the file themselves. A record that does not parse is
/// no record.
pub async fn read(host: &dyn Host, name: &SnapshotName) -> HostResult<Option<SnapshotReport>> {
    Ok(host.read_file(&layout::record(name)).await?.and_then(|b| serde_json::from_slice(&b).ok()))
}

/// The record, ignoring any error: for refresh, which holds the listing and matches each
/// record to the file it saw.
pub async fn read_quiet(host: &dyn Host, name: &SnapshotName) -> Option<SnapshotReport> {
    read(host, name).await.ok().flatten()
}
