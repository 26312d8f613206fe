//! The bottom layer: the words every other module shares (snapshot names, formats and
//! checksums, an etcd member's start-up terms). It imports nothing of rkectl but `config`'s
//! host address, so no arrow runs from a lower module up into `plan` to borrow them.

pub mod member;
pub mod snapshot;

pub use member::{ClusterState, InitialCluster};
pub use snapshot::{
    Checksum, PARTIAL_SUFFIX, RollingSettings, SnapshotFacts, SnapshotFormat, SnapshotLocation, SnapshotName,
    SnapshotNameError, TEMP_MARK, is_partial_file, is_recurring_name, name_time,
};
