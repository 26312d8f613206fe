//! What RKE made, read and written the way RKE does: its state file (`cluster.rkestate`,
//! the source of truth for the PKI), its certificates, and the archives rke-tools writes
//! snapshots as.
//!
//! Clusters rkectl meets were built by RKE and will be managed by RKE again (`rke up`
//! after a restore is the reference's own procedure). So rkectl keeps RKE's formats and
//! names exactly, and writes back into RKE's files only what it added (a certificate for a
//! member that joined), leaving every other byte as RKE wrote it.

pub mod archive;
pub mod pki;
pub mod seal;
pub mod state;
