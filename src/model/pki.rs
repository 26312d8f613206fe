//! A certificate as plans and the observed state speak of it: its fingerprint and the
//! names it carries. Reading them from a certificate is `rke::pki`'s job.

use std::fmt;

/// A certificate's SHA-256 fingerprint, as `openssl x509 -fingerprint -sha256` prints it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct Fingerprint(pub String);

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A certificate's subject alternative names as RKE compares them: DNS names and IP
/// addresses, each list sorted.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SanSet {
    pub dns: Vec<String>,
    pub ips: Vec<String>,
}
