//! The bottom layer: the words every other module shares. It imports nothing of rkectl,
//! so any layer may use it and no arrow has to run up to borrow a word.
//!
//! What it owns, and who fills it in:
//! - [`address`]: a host's address and an S3 location (`config` reads them from cluster.yml
//!   and the flags);
//! - [`snapshot`]: snapshot names, formats, checksums and where a copy lives;
//! - [`member`]: an etcd member's start-up terms (`--initial-cluster`, new or existing);
//! - [`pki`]: a certificate's fingerprint and names (`rke::pki` reads them);
//! - [`observed`]: what refresh saw on the hosts and in S3, the "before" of a plan, and
//!   the facts of a container (who made it, how its environment compares);
//! - [`node_lock`]: the node lock's protocol and the record of who holds a lock;
//! - [`step`]: the words a plan's steps are written in (ids, pins, what a step replaces);
//! - [`action`]: the action the user asked for, with no secret in it.
//!
//! Data flows up from here: `config` and `refresh` produce these values, `steps` and `plan`
//! read them, and plans, the journal and `--json` serialise them.

pub mod action;
pub mod address;
pub mod member;
pub mod node_lock;
pub mod observed;
pub mod pki;
pub mod snapshot;
pub mod step;

pub use address::{HostAddr, S3Target};

/// `n` and a noun, plural unless one: `1 host`, `3 hosts`.
pub fn counted(n: usize, noun: &str) -> String {
    if n == 1 { format!("1 {noun}") } else { format!("{n} {noun}s") }
}
pub use member::{ClusterState, InitialCluster};
pub use snapshot::{
    Checksum, PARTIAL_SUFFIX, RollingSettings, SnapshotFacts, SnapshotFormat, SnapshotLocation, SnapshotName,
    SnapshotNameError, TEMP_MARK, is_partial_file, is_recurring_name, name_time,
};
pub use step::StepId;
