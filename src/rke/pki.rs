//! The cluster's PKI as RKE makes it: `kube-ca`, one `kube-etcd-<address>` certificate per
//! etcd node, and `kube-node` (the client certificate kube-apiserver talks to etcd with).
//!
//! RKE's state file holds it (see [`super::state`]); rkectl reads it from there and issues
//! only what is missing (a member that joins), signed by RKE's own CA, with RKE's names,
//! common name and subject alternative names, so that the next `rke up` finds a certificate
//! it would have made itself. Keys are RSA 2048, written as PKCS#1 (`RSA PRIVATE KEY`), as
//! RKE writes them. Certificates are public; private keys are [`Secret`]s.

use crate::config::{Cluster, Node};
pub use crate::model::pki::{Fingerprint, SanSet};
use crate::secret::Secret;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PKCS_RSA_SHA256, SanType, SerialNumber,
};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::net::IpAddr;

/// Where RKE keeps certificates on a node.
pub const CERT_DIR: &str = "/etc/kubernetes/ssl";
/// The bundle name of the cluster CA.
pub const CA_NAME: &str = "kube-ca";
/// The bundle name of the node client certificate (kube-apiserver's etcd client).
pub const NODE_NAME: &str = "kube-node";
/// Prefix of the etcd members' certificate names.
pub const ETCD_PREFIX: &str = "kube-etcd";
/// The common name RKE gives every etcd member certificate.
pub const ETCD_CN: &str = "kube-etcd";
/// RKE's certificates (CA included) are valid for ten years of 365 days.
const VALIDITY: time::Duration = time::Duration::days(10 * 365);

/// A certificate and its key, both PEM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertPair {
    pub cert: String,
    pub key: Secret,
}

/// The certificates rkectl needs of RKE's bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pki {
    /// `kube-ca`, with its key (rkectl signs new member certificates with it).
    pub ca: CertPair,
    /// `kube-node`, when the bundle has it.
    pub node: Option<CertPair>,
    /// `kube-etcd-<address>` by bundle name.
    pub etcd: BTreeMap<String, CertPair>,
}

/// Why certificates could not be read or made.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum PkiError {
    #[error("cannot create certificates: {0}")]
    #[diagnostic(code(rkectl::pki::issue))]
    Issue(String),
    #[error("{what} is not usable: {why}")]
    #[diagnostic(
        code(rkectl::pki::invalid),
        help("the certificate bundle is RKE's; check it with `openssl x509 -noout -text`")
    )]
    Invalid { what: String, why: String },
}

impl From<rcgen::Error> for PkiError {
    fn from(e: rcgen::Error) -> Self {
        PkiError::Issue(e.to_string())
    }
}

// Fingerprint and SanSet are shared words (model::pki); how they are read from a
// certificate is here, where certificates are parsed.
impl Fingerprint {
    /// The fingerprint of the first certificate in `pem`; `None` if there is none.
    pub fn of_pem(pem: &[u8]) -> Option<Fingerprint> {
        let der = first_cert_der(pem)?;
        let hex: Vec<String> = Sha256::digest(&der).iter().map(|b| format!("{b:02X}")).collect();
        Some(Fingerprint(format!("SHA256:{}", hex.join(":"))))
    }

    /// The first 8 bytes, for one-line messages (`SHA256:AB:CD:…`).
    pub fn short(&self) -> &str {
        let end = self.0.len().min("SHA256:".len() + 8 * 3 - 1);
        &self.0[..end]
    }
}

fn first_cert_der(pem: &[u8]) -> Option<Vec<u8>> {
    x509_parser::pem::Pem::iter_from_buffer(pem)
        .filter_map(Result::ok)
        .find(|p| p.label == "CERTIFICATE")
        .map(|p| p.contents)
}

/// The bundle name of a node's etcd certificate (RKE's `GetCrtNameForHost`): after the
/// `internal_address` when it differs from the address, dots made dashes, lower-cased.
pub fn etcd_cert_name(node: &Node) -> String {
    let addr = if node.has_own_internal_address() { node.internal_address() } else { node.address.as_str() };
    format!("{ETCD_PREFIX}-{}", addr.replace('.', "-").to_lowercase())
}

/// Path of a bundle entry's certificate on a node.
pub fn cert_path(name: &str) -> String {
    format!("{CERT_DIR}/{name}.pem")
}

/// Path of a bundle entry's key on a node.
pub fn key_path(name: &str) -> String {
    format!("{CERT_DIR}/{name}-key.pem")
}

/// The subject alternative names RKE gives every etcd certificate (`GetAltNames` over the
/// etcd nodes): each node's address, internal address and hostname override where they
/// differ, then loopback and the Kubernetes service addresses and names. DNS names first,
/// then IP addresses, the order Go writes them in.
pub fn etcd_alt_names(cluster: &Cluster) -> Vec<SanType> {
    let mut ips: Vec<IpAddr> = Vec::new();
    let mut dns: Vec<String> = Vec::new();
    for n in cluster.etcd_nodes() {
        let mut names = vec![n.address.as_str()];
        if n.has_own_internal_address() {
            names.push(n.internal_address());
        }
        for name in names {
            match name.parse::<IpAddr>() {
                Ok(ip) => ips.push(ip),
                Err(_) => dns.push(name.to_string()),
            }
        }
        if n.hostname() != n.address.as_str() {
            dns.push(n.hostname().to_string());
        }
    }
    ips.push(IpAddr::from([127, 0, 0, 1]));
    ips.extend(cluster.kubernetes_service_ips.iter().copied());
    for d in ["localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"] {
        dns.push(d.to_string());
    }
    dns.push(format!("kubernetes.default.svc.{}", cluster.cluster_domain));
    dns.into_iter()
        .filter_map(|d| d.try_into().ok().map(SanType::DnsName))
        .chain(ips.into_iter().map(SanType::IpAddress))
        .collect()
}

/// The subject of every etcd member certificate: `CN=kube-etcd`.
fn etcd_subject() -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, ETCD_CN);
    dn
}

/// The names a member is reached by, which its own certificate must carry (RKE's
/// per-host part of `GetAltNames`): its address, its internal address when it has its
/// own, its hostname_override when it differs from the address. The rest of RKE's names
/// (the other etcd nodes', loopback, Kubernetes') concern other hosts or no connection.
pub fn member_names(node: &Node) -> Vec<String> {
    let mut names = vec![node.address.as_str().to_string()];
    if node.has_own_internal_address() {
        names.push(node.internal_address().to_string());
    }
    if node.hostname() != node.address.as_str() {
        names.push(node.hostname().to_string());
    }
    names
}

impl SanSet {
    /// The set of `sans`.
    pub fn of(sans: &[SanType]) -> SanSet {
        let mut set = SanSet { dns: Vec::new(), ips: Vec::new() };
        for san in sans {
            match san {
                SanType::DnsName(d) => set.dns.push(d.as_str().to_string()),
                SanType::IpAddress(ip) => set.ips.push(ip.to_string()),
                _ => {}
            }
        }
        set.dns.sort();
        set.ips.sort();
        set
    }

    /// The names of the first certificate in `pem`; `None` if it holds none that parses.
    pub fn of_pem(pem: &[u8]) -> Option<SanSet> {
        use x509_parser::extensions::GeneralName;
        let der = first_cert_der(pem)?;
        let (_, cert) = x509_parser::parse_x509_certificate(&der).ok()?;
        let mut set = SanSet { dns: Vec::new(), ips: Vec::new() };
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for n in &san.value.general_names {
                match n {
                    GeneralName::DNSName(d) => set.dns.push(d.to_string()),
                    GeneralName::IPAddress(b) => {
                        let ip = match b.len() {
                            4 => IpAddr::from(<[u8; 4]>::try_from(*b).ok()?),
                            16 => IpAddr::from(<[u8; 16]>::try_from(*b).ok()?),
                            _ => continue,
                        };
                        set.ips.push(ip.to_string());
                    }
                    _ => {}
                }
            }
        }
        set.dns.sort();
        set.ips.sort();
        Some(set)
    }

    /// Which of `names` (IP addresses or DNS names) the set does not carry. DNS names
    /// compare without regard to case, as TLS clients compare them.
    pub fn missing<'a>(&self, names: &'a [String]) -> Vec<&'a str> {
        names
            .iter()
            .filter(|n| match n.parse::<IpAddr>() {
                Ok(ip) => !self.ips.iter().any(|i| i.parse::<IpAddr>().ok() == Some(ip)),
                Err(_) => !self.dns.iter().any(|d| d.eq_ignore_ascii_case(n)),
            })
            .map(String::as_str)
            .collect()
    }
}

fn random_serial() -> SerialNumber {
    let mut b = [0u8; 8];
    crate::secret::random_bytes(&mut b);
    // Go's [0, MaxInt64): a positive 63-bit number.
    SerialNumber::from(u64::from_be_bytes(b) & (i64::MAX as u64))
}

fn rsa_key() -> Result<KeyPair, PkiError> {
    Ok(KeyPair::generate_for(&PKCS_RSA_SHA256)?)
}

/// A key as RKE writes keys: PKCS#1 PEM (`RSA PRIVATE KEY`).
fn key_pem(key: &KeyPair) -> Result<Secret, PkiError> {
    let der = pkcs1_from_pkcs8(key.serialized_der())
        .ok_or_else(|| PkiError::Issue("the new RSA key has no PKCS#1 form".into()))?;
    Ok(Secret::new(pem::encode(&pem::Pem::new("RSA PRIVATE KEY", der))))
}

/// The PKCS#1 `RSAPrivateKey` inside a PKCS#8 `PrivateKeyInfo` (its `privateKey` octets).
fn pkcs1_from_pkcs8(der: &[u8]) -> Option<Vec<u8>> {
    use x509_parser::der_parser::der::parse_der_sequence;
    let (_, seq) = parse_der_sequence(der).ok()?;
    let items = seq.as_sequence().ok()?;
    items.get(2)?.as_slice().ok().map(<[u8]>::to_vec)
}

/// Reads a private key in any PEM form RKE or a user may have written (PKCS#1 or PKCS#8).
fn parse_key(pem_text: &str, what: &str) -> Result<KeyPair, PkiError> {
    let invalid = |why: String| PkiError::Invalid { what: what.to_string(), why };
    use rustls_pki_types::pem::PemObject;
    let der = rustls_pki_types::PrivateKeyDer::from_pem_slice(pem_text.as_bytes())
        .map_err(|e| invalid(format!("no private key in it ({e:?})")))?;
    match &der {
        rustls_pki_types::PrivateKeyDer::Pkcs1(_) => KeyPair::from_der_and_sign_algo(&der, &PKCS_RSA_SHA256),
        _ => KeyPair::try_from(&der),
    }
    .map_err(|e| invalid(e.to_string()))
}

fn now() -> time::OffsetDateTime {
    time::OffsetDateTime::now_utc().replace_nanosecond(0).unwrap_or_else(|_| time::OffsetDateTime::now_utc())
}

impl Pki {
    /// A new PKI as RKE makes one for a new cluster: `kube-ca`, `kube-node` and a
    /// certificate for every etcd node.
    pub fn generate(cluster: &Cluster) -> Result<Pki, PkiError> {
        let ca_key = rsa_key()?;
        let mut p = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, CA_NAME);
        p.distinguished_name = dn;
        p.serial_number = Some(SerialNumber::from(vec![0]));
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.key_usages =
            vec![KeyUsagePurpose::KeyEncipherment, KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyCertSign];
        p.not_before = now();
        p.not_after = p.not_before + VALIDITY;
        let ca_cert = p.self_signed(&ca_key)?;
        let mut pki =
            Pki { ca: CertPair { cert: ca_cert.pem(), key: key_pem(&ca_key)? }, node: None, etcd: BTreeMap::new() };
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "system:node");
        dn.push(DnType::OrganizationName, "system:nodes");
        pki.node = Some(pki.sign(dn, Vec::new(), false, None)?);
        pki.ensure_members(cluster)?;
        Ok(pki)
    }

    /// Signs a new leaf certificate with the CA, as RKE's `newSignedCert` does, for `key`
    /// (RKE keeps a certificate's key when it regenerates it) or a new one.
    fn sign(
        &self,
        subject: DistinguishedName,
        sans: Vec<SanType>,
        server: bool,
        key: Option<(KeyPair, Secret)>,
    ) -> Result<CertPair, PkiError> {
        let ca_key = parse_key(self.ca.key.expose(), "the key of kube-ca")?;
        let ca_der = first_cert_der(self.ca.cert.as_bytes())
            .ok_or_else(|| PkiError::Invalid { what: "kube-ca".into(), why: "no certificate in it".into() })?;
        let ca_not_before = x509_parser::parse_x509_certificate(&ca_der)
            .map(|(_, c)| c.validity().not_before.timestamp())
            .map_err(|e| PkiError::Invalid { what: "kube-ca".into(), why: e.to_string() })?;
        let issuer = Issuer::from_ca_cert_pem(&self.ca.cert, ca_key)?;
        let (key, key_pem) = match key {
            Some(k) => k,
            None => {
                let k = rsa_key()?;
                let pem = key_pem(&k)?;
                (k, pem)
            }
        };
        let mut p = CertificateParams::default();
        p.distinguished_name = subject;
        p.subject_alt_names = sans;
        p.serial_number = Some(random_serial());
        p.key_usages = vec![KeyUsagePurpose::KeyEncipherment, KeyUsagePurpose::DigitalSignature];
        p.extended_key_usages = if server {
            vec![ExtendedKeyUsagePurpose::ClientAuth, ExtendedKeyUsagePurpose::ServerAuth]
        } else {
            vec![ExtendedKeyUsagePurpose::ClientAuth]
        };
        p.use_authority_key_identifier_extension = true;
        // RKE starts a leaf's validity at its CA's, and ends it ten years from now.
        p.not_before = time::OffsetDateTime::from_unix_timestamp(ca_not_before).unwrap_or_else(|_| now());
        p.not_after = now() + VALIDITY;
        let cert = p.signed_by(&key, &issuer)?;
        Ok(CertPair { cert: cert.pem(), key: key_pem })
    }

    /// Issues a certificate for every etcd node that has none; returns the names issued.
    pub fn ensure_members(&mut self, cluster: &Cluster) -> Result<Vec<String>, PkiError> {
        let mut issued = Vec::new();
        for node in cluster.etcd_nodes() {
            let name = etcd_cert_name(node);
            if self.etcd.contains_key(&name) {
                continue;
            }
            let pair = self.sign(etcd_subject(), etcd_alt_names(cluster), true, None)?;
            self.etcd.insert(name.clone(), pair);
            issued.push(name);
        }
        Ok(issued)
    }

    /// Reissues, with the same key, every etcd node's certificate whose subject alternative
    /// names are not those the cluster's etcd nodes have now, by RKE's rule
    /// (`GenerateEtcdCertificates`: the sorted DNS names and the sorted IP addresses must
    /// equal the new ones): an address, internal address or hostname_override changed, or
    /// an etcd node came or went. Returns the names reissued.
    pub fn reissue_stale(&mut self, cluster: &Cluster) -> Result<Vec<String>, PkiError> {
        let wanted = SanSet::of(&etcd_alt_names(cluster));
        let mut reissued = Vec::new();
        for node in cluster.etcd_nodes() {
            let name = etcd_cert_name(node);
            let Some(current) = self.etcd.get(&name) else { continue };
            if SanSet::of_pem(current.cert.as_bytes()).as_ref() == Some(&wanted) {
                continue;
            }
            let key = parse_key(current.key.expose(), &name)?;
            let pair = self.sign(etcd_subject(), etcd_alt_names(cluster), true, Some((key, current.key.clone())))?;
            self.etcd.insert(name.clone(), pair);
            reissued.push(name);
        }
        Ok(reissued)
    }

    /// The CA's fingerprint.
    pub fn ca_fingerprint(&self) -> Fingerprint {
        Fingerprint::of_pem(self.ca.cert.as_bytes()).unwrap_or_else(|| Fingerprint("unreadable".into()))
    }

    /// The certificate of a member, if the PKI has one.
    pub fn member(&self, node: &Node) -> Option<&CertPair> {
        self.etcd.get(&etcd_cert_name(node))
    }

    /// The files a member's host needs for etcd: the CA certificate, the member's
    /// certificate and key (path, contents, mode 0600 as RKE's cert-deployer writes them).
    pub fn member_files(&self, node: &Node) -> Option<Vec<(String, Secret, u32)>> {
        let m = self.member(node)?;
        let name = etcd_cert_name(node);
        Some(vec![
            (cert_path(CA_NAME), Secret::new(self.ca.cert.clone()), 0o600),
            (cert_path(&name), Secret::new(m.cert.clone()), 0o600),
            (key_path(&name), m.key.clone(), 0o600),
        ])
    }

    /// Hash of a member's files, compared with what refresh reads on the host.
    pub fn member_files_hash(&self, node: &Node) -> Option<String> {
        let files = self.member_files(node)?;
        Some(files_hash(files.iter().map(|(_, c, _)| Some(c.expose().as_bytes()))))
    }

    /// Every private key, for redacting text that might quote one.
    pub fn secrets(&self) -> Vec<Secret> {
        let mut s = vec![self.ca.key.clone()];
        s.extend(self.node.iter().map(|n| n.key.clone()));
        s.extend(self.etcd.values().map(|m| m.key.clone()));
        s
    }
}

/// Hash of certificate files in order; a missing file makes a different hash. Trailing
/// line breaks do not count: RKE's cert-deployer writes `echo "$PEM"`.
pub fn files_hash<'a>(files: impl Iterator<Item = Option<&'a [u8]>>) -> String {
    let mut h = blake3::Hasher::new();
    for f in files {
        match f {
            Some(b) => {
                let end = b.iter().rposition(|c| !c.is_ascii_whitespace()).map_or(0, |i| i + 1);
                h.update(&(end as u64).to_le_bytes());
                h.update(&b[..end]);
            }
            None => {
                h.update(b"missing");
            }
        }
    }
    h.finalize().to_hex()[..16].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn cluster(yaml: &str) -> Cluster {
        crate::config::parse(Path::new("cluster.yml"), yaml.to_string()).unwrap().cluster
    }

    const TWO: &str = "nodes:\n  - address: 1.2.3.4\n    internal_address: 10.0.0.1\n    user: u\n    role: [etcd]\n  - address: Node2.Example.com\n    hostname_override: n2\n    user: u\n    role: [etcd, controlplane]\n  - address: 1.2.3.9\n    user: u\n    role: [worker]\n";

    #[test]
    fn certificate_names_follow_the_internal_address_as_rke_does() {
        let c = cluster(TWO);
        let names: Vec<String> = c.etcd_nodes().map(etcd_cert_name).collect();
        assert_eq!(names, ["kube-etcd-10-0-0-1", "kube-etcd-node2-example-com"]);
    }

    #[test]
    fn a_new_pki_is_rsa_signed_by_its_ca_with_rke_names_and_sans() {
        let c = cluster(TWO);
        let pki = Pki::generate(&c).unwrap();
        assert!(pki.ca.key.expose().starts_with("-----BEGIN RSA PRIVATE KEY-----"));
        let m = pki.etcd.get("kube-etcd-10-0-0-1").unwrap();
        assert!(m.key.expose().starts_with("-----BEGIN RSA PRIVATE KEY-----"));
        let der = first_cert_der(m.cert.as_bytes()).unwrap();
        let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
        assert_eq!(cert.subject().to_string(), "CN=kube-etcd");
        assert_eq!(cert.issuer().to_string(), "CN=kube-ca");
        let san = cert.subject_alternative_name().unwrap().unwrap();
        use x509_parser::extensions::GeneralName;
        let names: Vec<String> = san
            .value
            .general_names
            .iter()
            .map(|n| match n {
                GeneralName::DNSName(d) => d.to_string(),
                GeneralName::IPAddress(b) if b.len() == 4 => IpAddr::from(<[u8; 4]>::try_from(*b).unwrap()).to_string(),
                other => other.to_string(),
            })
            .collect();
        let want = [
            "Node2.Example.com",
            "n2",
            "localhost",
            "kubernetes",
            "kubernetes.default",
            "kubernetes.default.svc",
            "kubernetes.default.svc.cluster.local",
            "1.2.3.4",
            "10.0.0.1",
            "127.0.0.1",
            "10.43.0.1",
        ];
        assert_eq!(names, want, "RKE's names, in Go's order (DNS names, then IPs); no worker");
        // The member key and certificate belong together, and the CA signed it.
        let ca_der = first_cert_der(pki.ca.cert.as_bytes()).unwrap();
        let (_, ca) = x509_parser::parse_x509_certificate(&ca_der).unwrap();
        cert.verify_signature(Some(ca.public_key())).unwrap();
        assert_eq!(cert.validity().not_before, ca.validity().not_before);
    }

    #[test]
    fn a_joining_member_gets_a_certificate_from_the_existing_ca() {
        let c = cluster(TWO);
        let mut pki = Pki::generate(&c).unwrap();
        let before = pki.clone();
        pki.etcd.remove("kube-etcd-node2-example-com");
        let issued = pki.ensure_members(&c).unwrap();
        assert_eq!(issued, ["kube-etcd-node2-example-com"]);
        assert_eq!(pki.ca, before.ca);
        assert_eq!(pki.etcd["kube-etcd-10-0-0-1"], before.etcd["kube-etcd-10-0-0-1"]);
        assert!(pki.ensure_members(&c).unwrap().is_empty());
    }

    #[test]
    fn a_certificate_whose_names_changed_is_reissued_with_the_same_key() {
        let c = cluster(TWO);
        let mut pki = Pki::generate(&c).unwrap();
        assert!(pki.reissue_stale(&c).unwrap().is_empty(), "RKE's names already: nothing to reissue");
        let before = pki.clone();
        let renamed = cluster(&TWO.replace("hostname_override: n2", "hostname_override: n2b"));
        let reissued = pki.reissue_stale(&renamed).unwrap();
        // Every etcd certificate names every etcd node: both change.
        assert_eq!(reissued, ["kube-etcd-10-0-0-1", "kube-etcd-node2-example-com"]);
        for name in &reissued {
            let (old, new) = (&before.etcd[name], &pki.etcd[name]);
            assert_ne!(old.cert, new.cert);
            assert_eq!(old.key, new.key, "RKE keeps the key when it regenerates a certificate");
            let sans = SanSet::of_pem(new.cert.as_bytes()).unwrap();
            assert_eq!(sans, SanSet::of(&etcd_alt_names(&renamed)));
            assert!(sans.dns.contains(&"n2b".to_string()) && !sans.dns.contains(&"n2".to_string()), "{sans:?}");
            let der = first_cert_der(new.cert.as_bytes()).unwrap();
            let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
            let ca_der = first_cert_der(pki.ca.cert.as_bytes()).unwrap();
            let (_, ca) = x509_parser::parse_x509_certificate(&ca_der).unwrap();
            cert.verify_signature(Some(ca.public_key())).unwrap();
            assert_eq!(cert.subject().to_string(), "CN=kube-etcd");
        }
        assert_eq!(pki.ca, before.ca);
        assert!(pki.reissue_stale(&renamed).unwrap().is_empty());
    }

    #[test]
    fn a_member_needs_its_own_names_in_its_certificate() {
        let c = cluster(TWO);
        let nodes: Vec<&Node> = c.etcd_nodes().collect();
        assert_eq!(member_names(nodes[0]), ["1.2.3.4", "10.0.0.1"]);
        assert_eq!(member_names(nodes[1]), ["Node2.Example.com", "n2"]);
        let pki = Pki::generate(&c).unwrap();
        let sans = SanSet::of_pem(pki.etcd["kube-etcd-node2-example-com"].cert.as_bytes()).unwrap();
        assert!(sans.missing(&member_names(nodes[1])).is_empty());
        let renamed = cluster(&TWO.replace("hostname_override: n2", "hostname_override: n2b"));
        let node = renamed.etcd_nodes().nth(1).unwrap();
        assert_eq!(sans.missing(&member_names(node)), ["n2b"]);
        let moved = cluster(&TWO.replace("internal_address: 10.0.0.1", "internal_address: 10.0.0.7"));
        assert_eq!(sans.missing(&member_names(moved.etcd_nodes().next().unwrap())), ["10.0.0.7"]);
    }

    #[test]
    fn files_hash_ignores_the_line_break_rke_adds() {
        let a = files_hash([Some(&b"PEM\n"[..])].into_iter());
        let b = files_hash([Some(&b"PEM\n\n"[..])].into_iter());
        let c = files_hash([Some(&b"PEM"[..])].into_iter());
        assert_eq!(a, b);
        assert_eq!(a, c);
        assert_ne!(a, files_hash([None].into_iter()));
    }
}
