//! The cluster's PKI: a CA, a certificate per etcd member (server and peer, also usable as
//! a client), and a client certificate for tools.
//!
//! Created once by `up` (or a restore onto a cluster nobody deployed) and kept in the
//! cluster state file. Certificates are public; private keys are [`Secret`]s. Names follow
//! RKE: `kube-ca.pem`, `kube-etcd-<address>.pem`, `kube-etcd-<address>-key.pem`.

use super::{cert_stem, paths};
use crate::config::{Cluster, HostAddr, Node};
use crate::secret::Secret;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use std::collections::BTreeMap;
use std::net::IpAddr;

/// A certificate and its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertPair {
    pub cert: String,
    pub key: Secret,
}

/// The cluster's PKI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pki {
    pub ca: CertPair,
    pub client: CertPair,
    pub members: BTreeMap<HostAddr, CertPair>,
}

/// Why certificates could not be made.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
#[error("cannot create certificates: {0}")]
#[diagnostic(code(rkectl::pki))]
pub struct PkiError(String);

impl From<rcgen::Error> for PkiError {
    fn from(e: rcgen::Error) -> Self {
        PkiError(e.to_string())
    }
}

fn ca_params() -> CertificateParams {
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "kube-ca");
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    p.not_before = time::OffsetDateTime::now_utc() - time::Duration::hours(1);
    p.not_after = p.not_before + time::Duration::days(3650);
    p
}

fn leaf(cn: &str, sans: Vec<SanType>, server: bool) -> CertificateParams {
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    p.distinguished_name = dn;
    p.subject_alt_names = sans;
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
    p.extended_key_usages = if server {
        vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth]
    } else {
        vec![ExtendedKeyUsagePurpose::ClientAuth]
    };
    p.use_authority_key_identifier_extension = true;
    p.not_before = time::OffsetDateTime::now_utc() - time::Duration::hours(1);
    p.not_after = p.not_before + time::Duration::days(3650);
    p
}

fn san(s: &str) -> SanType {
    match s.parse::<IpAddr>() {
        Ok(ip) => SanType::IpAddress(ip),
        Err(_) => SanType::DnsName(s.try_into().unwrap_or_else(|_| "invalid".try_into().expect("valid dns name"))),
    }
}

impl Pki {
    /// A new CA, client certificate and a certificate for every etcd node.
    pub fn generate(cluster: &Cluster) -> Result<Pki, PkiError> {
        let ca_key = KeyPair::generate()?;
        let ca_cert = ca_params().self_signed(&ca_key)?;
        let mut pki = Pki {
            ca: CertPair { cert: ca_cert.pem(), key: Secret::new(ca_key.serialize_pem()) },
            client: CertPair { cert: String::new(), key: Secret::default() },
            members: BTreeMap::new(),
        };
        let key = KeyPair::generate()?;
        let cert = leaf("kube-etcd-client", Vec::new(), false).signed_by(&key, &pki.issuer()?)?;
        pki.client = CertPair { cert: cert.pem(), key: Secret::new(key.serialize_pem()) };
        pki.ensure_members(cluster)?;
        Ok(pki)
    }

    fn issuer(&self) -> Result<Issuer<'static, KeyPair>, PkiError> {
        // The issuer is rebuilt from the CA's fixed parameters and stored key; its name and
        // key identifier are derived the same way as when the CA was made.
        let key = KeyPair::from_pem(self.ca.key.expose())?;
        Ok(Issuer::new(ca_params(), key))
    }

    /// Issues certificates for etcd nodes that have none; returns whether any was issued.
    pub fn ensure_members(&mut self, cluster: &Cluster) -> Result<bool, PkiError> {
        let mut issued = false;
        let issuer = self.issuer()?;
        for node in cluster.etcd_nodes() {
            if self.members.contains_key(&node.address) {
                continue;
            }
            let mut names = vec![
                node.address.0.clone(),
                node.internal_address().to_string(),
                "127.0.0.1".into(),
                "localhost".into(),
            ];
            if let Some(h) = &node.hostname_override {
                names.push(h.clone());
            }
            names.sort();
            names.dedup();
            let key = KeyPair::generate()?;
            let cert = leaf(&super::member_name(node), names.iter().map(|n| san(n)).collect(), true)
                .signed_by(&key, &issuer)?;
            self.members
                .insert(node.address.clone(), CertPair { cert: cert.pem(), key: Secret::new(key.serialize_pem()) });
            issued = true;
        }
        Ok(issued)
    }

    /// The files a member's host needs: (path, contents, mode).
    pub fn member_files(&self, node: &Node) -> Option<Vec<(String, Secret, u32)>> {
        let m = self.members.get(&node.address)?;
        let stem = cert_stem(node);
        Some(vec![
            (format!("{}/kube-ca.pem", paths::CERT_DIR), Secret::new(self.ca.cert.clone()), 0o644),
            (format!("{}/{stem}.pem", paths::CERT_DIR), Secret::new(m.cert.clone()), 0o644),
            (format!("{}/{stem}-key.pem", paths::CERT_DIR), m.key.clone(), 0o600),
        ])
    }

    /// Hash of a member's files, compared with what refresh reads on the host.
    pub fn member_files_hash(&self, node: &Node) -> Option<String> {
        let files = self.member_files(node)?;
        Some(files_hash(files.iter().map(|(_, c, _)| Some(c.expose().as_bytes()))))
    }
}

/// Hash of certificate files in order; a missing file makes a different hash.
pub fn files_hash<'a>(files: impl Iterator<Item = Option<&'a [u8]>>) -> String {
    let mut h = blake3::Hasher::new();
    for f in files {
        match f {
            Some(b) => {
                h.update(&(b.len() as u64).to_le_bytes());
                h.update(b);
            }
            None => {
                h.update(b"missing");
            }
        }
    }
    h.finalize().to_hex()[..16].to_string()
}
