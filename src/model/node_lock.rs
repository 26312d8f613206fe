//! The node-lock protocol's words, shared by the node's side (`agent::node_lock`, which takes
//! the lock) and the workstation's (`host::ssh`, which asks for it and reads the answer),
//! and by the apply lock beside cluster.yml, whose holder record is the same.

use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The first line printed when the claims are taken.
pub const LOCKED: &str = "locked";
/// The start of the first line printed when another apply holds the node lock (its record
/// follows).
pub const HELD: &str = "held ";
/// How long the claims outlive the workstation's last word.
pub const LEASE_SECS: u64 = 60;
/// How often the workstation speaks: several beats fit in a lease.
pub const BEAT: Duration = Duration::from_secs(10);

/// Who holds (or last held) the lock.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Holder {
    pub pid: u32,
    pub host: String,
    pub since: String,
    pub command: String,
}

impl Holder {
    /// As one line of JSON (the record in lock files).
    pub fn to_line(&self) -> String {
        serde_json::to_string(self).expect("holder serialises")
    }
}

/// What the node lock's file says of its holder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeLockRecord {
    /// The workstation's record (its pid, host, time and command).
    pub holder: String,
    /// The invocation holding it.
    pub owner: String,
    /// The `hold-lock` process on the node: killing it breaks the lock.
    pub pid: u32,
}
