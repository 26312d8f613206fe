//! Where snapshot files live on a node, in one place.
//!
//! - `/opt/rke/etcd-snapshots/<name>` or `<name>.zip`: the snapshot as RKE and rkectl list it
//!   (plain database, or rke-tools' archive);
//! - `/opt/rke/etcd-snapshots/.rkectl/<name>.json`: rkectl's record of a copy it made or
//!   checked (size, checksum), out of RKE's way (RKE only looks at regular files it names);
//! - `/opt/rke/etcd-snapshots/.rkectl/restore/`: what a restore stages and removes when it is
//!   done: a copy of the chosen snapshot for a host whose own copy differs (a host's own
//!   snapshot is never overwritten), and the database unpacked from an archive.

use crate::model::{SnapshotFormat, SnapshotLocation, SnapshotName};

/// The snapshot folder (the reference's).
pub const SNAPSHOT_DIR: &str = crate::config::SNAPSHOT_DIR;
/// rkectl's records beside the snapshots.
pub const RECORDS_DIR: &str = "/opt/rke/etcd-snapshots/.rkectl";
/// What a restore stages.
pub const STAGING_DIR: &str = "/opt/rke/etcd-snapshots/.rkectl/restore";

/// The file of snapshot `name` in `format` at `location`.
pub fn snapshot_file(name: &SnapshotName, format: SnapshotFormat, location: SnapshotLocation) -> String {
    let dir = match location {
        SnapshotLocation::Listed => SNAPSHOT_DIR,
        SnapshotLocation::Staged => STAGING_DIR,
    };
    format!("{dir}/{}", format.file_name(name))
}

/// The database unpacked from snapshot `name`'s archive, for a restore.
pub fn unpacked_db(name: &SnapshotName) -> String {
    format!("{STAGING_DIR}/{name}.db")
}

/// rkectl's record of snapshot `name` on a node.
pub fn record(name: &SnapshotName) -> String {
    format!("{RECORDS_DIR}/{name}.json")
}
