//! The certificates an S3 endpoint's TLS certificate is checked against.
//!
//! The workstation's own trust store when it has one (rustls-native-certs: the system
//! bundle, or `SSL_CERT_FILE`/`SSL_CERT_DIR`). The node-side agent runs inside the
//! cluster's etcd image, which has no CA bundle at all: there, Mozilla's roots built into
//! the binary (webpki-root-certs) stand in. A `custom_ca` is trusted on top of either.

use aws_smithy_http_client::tls::TrustStore;
use base64::Engine;
use std::sync::LazyLock;

/// Whether the machine's trust store holds at least one usable certificate.
static HAS_NATIVE_ROOTS: LazyLock<bool> = LazyLock::new(|| {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = rustls::RootCertStore::empty();
    roots.add_parsable_certificates(found.certs).0 > 0
});

/// The built-in roots as one PEM bundle (the SDK's trust store takes PEM).
static BUILT_IN_PEM: LazyLock<Vec<u8>> = LazyLock::new(|| {
    let mut pem = String::new();
    for cert in webpki_root_certs::TLS_SERVER_ROOT_CERTS {
        pem.push_str("-----BEGIN CERTIFICATE-----\n");
        let b64 = base64::engine::general_purpose::STANDARD.encode(cert.as_ref());
        for line in b64.as_bytes().chunks(64) {
            pem.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
            pem.push('\n');
        }
        pem.push_str("-----END CERTIFICATE-----\n");
    }
    pem.into_bytes()
});

/// Which roots are used where: said in errors about TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Roots {
    /// The machine's trust store.
    Native,
    /// Mozilla's roots, built in (the machine has none).
    BuiltIn,
}

/// The roots this process uses.
pub fn roots() -> Roots {
    if *HAS_NATIVE_ROOTS { Roots::Native } else { Roots::BuiltIn }
}

/// The trust store for S3 clients: the machine's or the built-in roots, and `extra` PEM
/// bundles (`custom_ca`, `AWS_CA_BUNDLE`).
pub(crate) fn trust_store(extra: impl IntoIterator<Item = String>) -> TrustStore {
    let mut trust = match roots() {
        Roots::Native => TrustStore::empty().with_native_roots(true),
        Roots::BuiltIn => TrustStore::empty().with_native_roots(false).with_pem_certificate(BUILT_IN_PEM.clone()),
    };
    for pem in extra {
        trust.add_pem_certificate(pem.into_bytes());
    }
    trust
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;

    #[test]
    fn the_built_in_bundle_is_pem_every_certificate_of_which_parses() {
        let certs: Vec<_> = CertificateDer::pem_slice_iter(&BUILT_IN_PEM).collect::<Result<_, _>>().unwrap();
        assert_eq!(certs.len(), webpki_root_certs::TLS_SERVER_ROOT_CERTS.len());
        assert!(certs.len() > 100, "Mozilla's store has well over 100 roots");
        let mut store = rustls::RootCertStore::empty();
        assert_eq!(store.add_parsable_certificates(certs), (webpki_root_certs::TLS_SERVER_ROOT_CERTS.len(), 0));
    }
}
