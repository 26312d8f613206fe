//! What the snapshot kinds share: rkectl's record beside a snapshot, the state inside an
//! archive read in ranges, and the errors they report alike.

use crate::agent::report::SnapshotReport;
use crate::config::HostAddr;
use crate::host::Host;
use crate::layout;
use crate::model::{SnapshotFormat, SnapshotLocation, SnapshotName};
use crate::secret::Secret;
use crate::steps::context::StepError;
use std::sync::Arc;

/// Whether a record describes a file of the snapshot folder's listing: the record's
/// format, under the snapshot's name, of the record's size.
fn record_describes(record: &SnapshotReport, name: &SnapshotName, listing: &[crate::host::DirEntry]) -> bool {
    let file = record.format.file_name(name);
    listing.iter().any(|e| e.name == file && e.size == record.size)
}

/// rkectl's record of a snapshot on a host, when the file it describes is there. A record
/// outlives its file when the file is deleted by hand, by RKE's retention or by `rke etcd
/// snapshot-remove`: what is on disk decides, and a record never stands in for a file.
pub async fn read_record(host: &dyn Host, name: &SnapshotName) -> Result<Option<SnapshotReport>, StepError> {
    let Some(r) = crate::host::records::read(host, name).await? else { return Ok(None) };
    let listing = host.list_dir(layout::SNAPSHOT_DIR).await?;
    Ok(record_describes(&r, name, &listing).then_some(r))
}

/// A host's file, read in ranges.
struct HostFile {
    host: Arc<dyn Host>,
    path: String,
    size: u64,
}

#[async_trait::async_trait]
impl crate::rke::archive::RangeSource for HostFile {
    fn size(&self) -> u64 {
        self.size
    }
    async fn read_range(&self, offset: u64, len: u64) -> std::io::Result<Vec<u8>> {
        self.host.read_range(&self.path, offset, len).await.map_err(std::io::Error::other)
    }
}

/// The cluster state inside snapshot `name`'s archive on a host, if it has one; only the
/// archive's directory and that entry cross the network.
pub async fn archive_state(host: Arc<dyn Host>, name: &SnapshotName) -> Result<Option<Secret>, StepError> {
    let file = SnapshotFormat::Zip.file_name(name);
    let Some(entry) = host.list_dir(layout::SNAPSHOT_DIR).await?.into_iter().find(|e| e.name == file) else {
        return Ok(None);
    };
    let path = layout::snapshot_file(name, SnapshotFormat::Zip, SnapshotLocation::Listed);
    let source = Arc::new(HostFile { host, path, size: entry.size });
    let state = crate::rke::archive::remote_state(source, name.as_str())
        .await
        .map_err(|e| StepError::fatal(format!("cannot read the archive of {name}: {e}")))?;
    Ok(state.map(|b| Secret::new(String::from_utf8_lossy(&b).into_owned())))
}

/// A copy that is not what the plan pinned.
pub(super) fn mismatch(host: &HostAddr, name: &str, what: &str, found: &str, want: &str) -> StepError {
    StepError::fatal(format!(
        "the copy of snapshot {name} on host {host} has {what} {found}, but the plan expects {want}: it changed since the plan was made; plan again"
    ))
}

/// The folder of a path.
pub(super) fn parent(path: &str) -> &str {
    path.rsplit_once('/').map_or(".", |(d, _)| d)
}

/// An S3 failure as a step error.
pub fn s3_error(e: crate::s3::S3Error) -> StepError {
    StepError { transient: e.is_transient(), message: e.to_string(), logs: None }
}
