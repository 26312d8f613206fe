//! Which certificate may take part in a host-to-host copy: an etcd member certificate of
//! the cluster's CA that names the other host, on both ends.
//!
//! Every certificate of RKE's bundle is signed by the one `kube-ca`, so a chain to it
//! alone admits `kube-admin`, `kube-node`, `kube-apiserver`, the proxies'... What sets the
//! members' certificates apart, as RKE issues them (`GenerateEtcdCertificates`, and
//! [`crate::rke::pki`] the same way):
//! - the common name `kube-etcd` ([`ETCD_CN`]), which no other certificate of the bundle
//!   has (the bundle name `kube-etcd-<address with dashes>` is a file name, not in the
//!   certificate);
//! - as IP subject alternative names, the addresses of every etcd node (RKE's
//!   `GetAltNames` over the etcd hosts), loopback and the Kubernetes service addresses.
//!
//! So a certificate is accepted for a peer when it chains to the CA (rustls' WebPKI
//! verifier, which also checks the validity period and the client or server usage), its
//! common name is `kube-etcd`, and the peer's cluster address is among its IP names.
//! The common name keeps out `kube-apiserver`'s certificate, which names the control plane
//! hosts by address too; the address keeps out a member certificate of the same CA issued
//! before this host was an etcd node. Because RKE gives every member the same names, the
//! certificate cannot tell one member from another: the source address check of
//! [`super::transfer`] narrows "a member" to "the peer".

use crate::rke::pki::ETCD_CN;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, Error, OtherError, SignatureScheme};
use std::net::IpAddr;
use std::sync::Arc;

/// Why a certificate that chains to the CA is still not the peer's member certificate.
#[derive(Debug, thiserror::Error)]
pub enum NotMember {
    #[error("the certificate cannot be read: {0}")]
    Unreadable(String),
    #[error("the certificate's subject is {found}, not an etcd member's (CN=kube-etcd)")]
    NotEtcd { found: String },
    #[error("the etcd certificate does not name {peer} among its addresses ({names})")]
    NotNamed { peer: IpAddr, names: String },
}

/// Checks that `cert` (DER) is an etcd member certificate that names `peer`.
pub fn names_member(cert: &[u8], peer: IpAddr) -> Result<(), NotMember> {
    let (_, c) = x509_parser::parse_x509_certificate(cert).map_err(|e| NotMember::Unreadable(e.to_string()))?;
    let cns: Vec<&str> = c.subject().iter_common_name().filter_map(|a| a.as_str().ok()).collect();
    if cns != [ETCD_CN] {
        return Err(NotMember::NotEtcd { found: c.subject().to_string() });
    }
    let ips: Vec<IpAddr> = match c.subject_alternative_name() {
        Ok(Some(san)) => san
            .value
            .general_names
            .iter()
            .filter_map(|n| match n {
                x509_parser::extensions::GeneralName::IPAddress(b) => ip_of(b),
                _ => None,
            })
            .collect(),
        Ok(None) => Vec::new(),
        Err(e) => return Err(NotMember::Unreadable(e.to_string())),
    };
    if ips.contains(&peer) {
        return Ok(());
    }
    let names = ips.iter().map(IpAddr::to_string).collect::<Vec<_>>().join(", ");
    Err(NotMember::NotNamed { peer, names: if names.is_empty() { "none".into() } else { names } })
}

fn ip_of(b: &[u8]) -> Option<IpAddr> {
    match b.len() {
        4 => <[u8; 4]>::try_from(b).ok().map(IpAddr::from),
        16 => <[u8; 16]>::try_from(b).ok().map(IpAddr::from),
        _ => None,
    }
}

fn refused(e: NotMember) -> Error {
    Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(e))))
}

/// The source's check of the destination's client certificate: the CA's chain, then
/// [`names_member`] for the one peer.
#[derive(Debug)]
pub struct MemberClientVerifier {
    pub inner: Arc<dyn ClientCertVerifier>,
    pub peer: IpAddr,
}

impl ClientCertVerifier for MemberClientVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        let verified = self.inner.verify_client_cert(end_entity, intermediates, now)?;
        names_member(end_entity, self.peer).map_err(refused)?;
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// The destination's check of the source's certificate: the CA's chain and the address
/// dialled (rustls' WebPKI verifier), then [`names_member`] for that address.
#[derive(Debug)]
pub struct MemberServerVerifier {
    pub inner: Arc<dyn ServerCertVerifier>,
}

impl ServerCertVerifier for MemberServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        let verified = self.inner.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)?;
        // Copies dial addresses only; a name would already have failed the chain's check.
        let ServerName::IpAddress(ip) = server_name else {
            return Err(Error::InvalidCertificate(CertificateError::NotValidForName));
        };
        names_member(end_entity, IpAddr::from(*ip)).map_err(refused)?;
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rke::pki::Pki;

    const CLUSTER: &str = "nodes:\n  - address: 10.0.0.1\n    user: u\n    role: [etcd]\n  - address: 10.0.0.2\n    user: u\n    role: [etcd, controlplane]\n";

    fn der(pem: &str) -> Vec<u8> {
        use rustls::pki_types::pem::PemObject;
        CertificateDer::from_pem_slice(pem.as_bytes()).unwrap().to_vec()
    }

    fn pki() -> Pki {
        let cluster = crate::config::parse(std::path::Path::new("cluster.yml"), CLUSTER.to_string()).unwrap().cluster;
        Pki::generate(&cluster).unwrap()
    }

    #[test]
    fn a_member_certificate_as_rke_issues_it_names_every_etcd_node() {
        let pki = pki();
        let member = der(&pki.etcd["kube-etcd-10-0-0-1"].cert);
        for peer in ["10.0.0.1", "10.0.0.2"] {
            names_member(&member, peer.parse().unwrap()).unwrap_or_else(|e| panic!("{peer}: {e}"));
        }
        let other = names_member(&member, "10.0.0.9".parse().unwrap()).unwrap_err();
        assert!(matches!(other, NotMember::NotNamed { .. }), "{other}");
        assert!(other.to_string().contains("10.0.0.9") && other.to_string().contains("10.0.0.2"), "{other}");
    }

    #[test]
    fn the_node_certificate_of_the_same_ca_is_not_a_member_one() {
        let pki = pki();
        let node = der(&pki.node.as_ref().unwrap().cert);
        let e = names_member(&node, "10.0.0.1".parse().unwrap()).unwrap_err();
        assert!(matches!(e, NotMember::NotEtcd { .. }), "{e}");
        assert!(e.to_string().contains("system:node"), "{e}");
    }

    #[test]
    fn a_certificate_that_is_not_one_is_unreadable() {
        let e = names_member(b"not a certificate", "10.0.0.1".parse().unwrap()).unwrap_err();
        assert!(matches!(e, NotMember::Unreadable(_)), "{e}");
    }
}
