//! Where things are: a host's address and an S3 location, as cluster.yml and the flags
//! name them. Words every layer shares; the values come from `config`.

use serde::Serialize;
use std::fmt;

/// A node's address as written in cluster.yml (IP or resolvable name); it identifies a host.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct HostAddr(pub String);

impl fmt::Display for HostAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl HostAddr {
    /// The address as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What is safe to show of S3 settings in a plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct S3Target {
    pub endpoint: String,
    pub bucket: String,
    pub region: Option<String>,
    pub folder: Option<String>,
}

impl fmt::Display for S3Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "s3://{}/", self.bucket)?;
        if let Some(folder) = &self.folder {
            write!(f, "{}/", folder.trim_matches('/'))?;
        }
        write!(f, " at {}", self.endpoint)
    }
}
