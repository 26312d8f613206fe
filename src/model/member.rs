//! An etcd member's start-up terms as plans and containers share them.

use super::address::HostAddr;
use serde::{Deserialize, Serialize};
use std::fmt;

/// `--initial-cluster-state` of an etcd member.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ClusterState {
    New,
    Existing,
}

impl fmt::Display for ClusterState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ClusterState::New => "new",
            ClusterState::Existing => "existing",
        })
    }
}

/// The members an etcd member starts with (`--initial-cluster`).
///
/// Kept symbolic so a plan over a thousand hosts does not carry a thousand copies of a
/// thousand-member string; it is resolved against cluster.yml, which a plan pins by hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "of")]
pub enum InitialCluster {
    /// Every etcd node of cluster.yml.
    AllEtcdNodes,
    /// These hosts (a member joining a running cluster: the current members and itself).
    Hosts { hosts: Vec<HostAddr> },
}

impl fmt::Display for InitialCluster {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InitialCluster::AllEtcdNodes => f.write_str("every etcd host of cluster.yml"),
            InitialCluster::Hosts { hosts } => f.write_str(&super::counted(hosts.len(), "member")),
        }
    }
}
