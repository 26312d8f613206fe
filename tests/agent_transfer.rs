//! The agent's host-to-host copy on loopback: the file arrives whole and private, and only a
//! peer with an etcd member certificate of the cluster's CA, from the listed address, gets
//! it; a connection that never handshakes does not hold up the peer.

use rkectl::agent::transfer::{self, FetchError, TlsFiles};
use rkectl::rke::pki::Pki;
use std::net::{IpAddr, SocketAddr};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

const CLUSTER: &str = "nodes:\n  - address: 10.0.0.1\n    user: u\n    role: [etcd]\n  - address: 10.0.0.2\n    user: u\n    role: [etcd]\n";

/// A member's certificate files of a new PKI, written into `dir`.
fn member_files(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let pki = new_pki();
    let member = pki.etcd.values().next().unwrap();
    write_files(dir, &pki.ca.cert, &member.cert, member.key.expose())
}

fn new_pki() -> Pki {
    let cluster = rkectl::config::parse(Path::new("cluster.yml"), CLUSTER.to_string()).unwrap().cluster;
    Pki::generate(&cluster).unwrap()
}

fn write_files(dir: &Path, ca_pem: &str, cert_pem: &str, key_pem: &str) -> (PathBuf, PathBuf, PathBuf) {
    std::fs::create_dir_all(dir).unwrap();
    let (ca, cert, key) = (dir.join("ca.pem"), dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&ca, ca_pem).unwrap();
    std::fs::write(&cert, cert_pem).unwrap();
    std::fs::write(&key, key_pem).unwrap();
    (ca, cert, key)
}

/// A certificate of `pki`'s CA that is not an etcd one, as `kube-apiserver`'s is: its own
/// common name, loopback among its addresses, for clients and servers alike.
fn apiserver_like(pki: &Pki) -> (String, String) {
    use rcgen::{
        CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, Issuer, KeyPair, PKCS_RSA_SHA256,
        SanType,
    };
    use rustls_pki_types::pem::PemObject;
    let ca_der = rustls_pki_types::PrivateKeyDer::from_pem_slice(pki.ca.key.expose().as_bytes()).unwrap();
    let ca_key = KeyPair::from_der_and_sign_algo(&ca_der, &PKCS_RSA_SHA256).unwrap();
    let issuer = Issuer::from_ca_cert_pem(&pki.ca.cert, ca_key).unwrap();
    let mut p = CertificateParams::default();
    p.distinguished_name = DistinguishedName::new();
    p.distinguished_name.push(DnType::CommonName, "kube-apiserver");
    p.subject_alt_names = vec![SanType::IpAddress(LOOPBACK), SanType::IpAddress("10.0.0.1".parse().unwrap())];
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth, ExtendedKeyUsagePurpose::ServerAuth];
    let key = KeyPair::generate().unwrap();
    let cert = p.signed_by(&key, &issuer).unwrap();
    (cert.pem(), key.serialize_pem())
}

fn files(f: &(PathBuf, PathBuf, PathBuf)) -> TlsFiles<'_> {
    TlsFiles { ca: &f.0, cert: &f.1, key: &f.2 }
}

const LOOPBACK: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

/// Starts a server for `file`; returns its port and its outcome.
async fn serve(
    file: PathBuf,
    tls: (PathBuf, PathBuf, PathBuf),
    peer: IpAddr,
) -> (u16, tokio::task::JoinHandle<Result<transfer::ServeReport, rkectl::agent::AgentError>>) {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(async move {
        let files = files(&tls);
        let server = transfer::Server::bind(&file, LOOPBACK, peer, &files).await?;
        let _ = tx.send(server.port());
        server.serve(Duration::from_secs(5)).await
    });
    (rx.await.expect("the server listens"), task)
}

#[tokio::test]
async fn a_peer_of_the_cluster_gets_the_file_whole_and_private() {
    let dir = tempfile::tempdir().unwrap();
    let tls = member_files(dir.path());
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let src = dir.path().join("snap.zip");
    std::fs::write(&src, &data).unwrap();
    let (port, server) = serve(src, tls.clone(), LOOPBACK).await;
    let out = dir.path().join("copy.zip");
    let got = transfer::fetch(SocketAddr::new(LOOPBACK, port), &out, &files(&tls), data.len() as u64).await;
    let got = got.unwrap_or_else(|e| panic!("fetch failed: {e:?}"));
    assert_eq!(got.size, data.len() as u64);
    assert_eq!(got.checksum, rkectl::model::Checksum::from_hasher(&blake3::Hasher::new().update(&data).clone()));
    assert_eq!(std::fs::read(&out).unwrap(), data);
    assert_eq!(std::fs::metadata(&out).unwrap().permissions().mode() & 0o777, 0o600);
    assert!(!dir.path().join("copy.zip.part").exists());
    let served = server.await.unwrap().unwrap();
    assert_eq!(served.bytes, data.len() as u64);
}

#[tokio::test]
async fn a_client_certificate_of_another_ca_gets_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    std::fs::create_dir_all(&a).unwrap();
    std::fs::create_dir_all(&b).unwrap();
    let (ours, theirs) = (member_files(&a), member_files(&b));
    let ours_ca = ours.0.clone();
    let src = dir.path().join("snap.zip");
    std::fs::write(&src, b"secret bytes").unwrap();
    let (port, server) = serve(src, ours, LOOPBACK).await;
    let out = dir.path().join("copy.zip");
    // The client trusts the server; the server must refuse the client.
    let client = TlsFiles { ca: &ours_ca, cert: &theirs.1, key: &theirs.2 };
    let got = transfer::fetch(SocketAddr::new(LOOPBACK, port), &out, &client, 12).await;
    assert!(matches!(got, Err(FetchError::Unreachable(ref why)) if why.contains("TLS")), "{got:?}");
    assert!(!out.exists() && !dir.path().join("copy.zip.part").exists());
    let served = server.await.unwrap();
    assert!(served.is_err(), "the server must not count a refused peer as served: {served:?}");
}

/// The cluster's CA signs more than the members' certificates: `kube-node` (kube-apiserver's
/// etcd client) and `kube-apiserver`'s (which names hosts by address, loopback too) chain to
/// it as well, and neither may fetch a snapshot.
#[tokio::test]
async fn a_certificate_of_the_cluster_ca_that_is_not_a_member_one_gets_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let pki = new_pki();
    let member = pki.etcd.values().next().unwrap();
    let ours = write_files(&dir.path().join("member"), &pki.ca.cert, &member.cert, member.key.expose());
    let node = pki.node.as_ref().unwrap();
    let (api_cert, api_key) = apiserver_like(&pki);
    let others = [
        ("kube-node", write_files(&dir.path().join("node"), &pki.ca.cert, &node.cert, node.key.expose())),
        ("kube-apiserver", write_files(&dir.path().join("api"), &pki.ca.cert, &api_cert, &api_key)),
    ];
    let src = dir.path().join("snap.zip");
    std::fs::write(&src, b"secret bytes").unwrap();
    for (what, theirs) in others {
        let (port, server) = serve(src.clone(), ours.clone(), LOOPBACK).await;
        let out = dir.path().join("copy.zip");
        let got = transfer::fetch(SocketAddr::new(LOOPBACK, port), &out, &files(&theirs), 12).await;
        assert!(matches!(got, Err(FetchError::Unreachable(ref why)) if why.contains("TLS")), "{what}: {got:?}");
        assert!(!out.exists() && !dir.path().join("copy.zip.part").exists(), "{what}");
        let served = server.await.unwrap();
        assert!(served.is_err(), "{what} was served: {served:?}");
    }
}

/// The destination checks the source the same way: a server with the CA's `kube-apiserver`
/// certificate, valid for the address dialled, is not the source's member.
#[tokio::test]
async fn a_server_that_is_not_a_member_is_not_fetched_from() {
    let dir = tempfile::tempdir().unwrap();
    let pki = new_pki();
    let member = pki.etcd.values().next().unwrap();
    let ours = write_files(&dir.path().join("member"), &pki.ca.cert, &member.cert, member.key.expose());
    let (api_cert, api_key) = apiserver_like(&pki);
    let theirs = write_files(&dir.path().join("api"), &pki.ca.cert, &api_cert, &api_key);
    let src = dir.path().join("snap.zip");
    std::fs::write(&src, b"planted bytes").unwrap();
    let (port, server) = serve(src, theirs, LOOPBACK).await;
    let out = dir.path().join("copy.zip");
    let got = transfer::fetch(SocketAddr::new(LOOPBACK, port), &out, &files(&ours), 13).await;
    let why = match &got {
        Err(FetchError::Unreachable(why)) => why.clone(),
        other => panic!("{other:?}"),
    };
    assert!(why.contains("not an etcd member's"), "{why}");
    assert!(!out.exists());
    server.abort();
}

/// A connection from the peer's address that never starts its TLS handshake (a port scan,
/// another user of the peer host) is handshaken beside the real fetch, which is served at
/// once, not after the stalled one gives up.
#[tokio::test]
async fn a_connection_that_never_handshakes_does_not_hold_up_the_peer() {
    let dir = tempfile::tempdir().unwrap();
    let tls = member_files(dir.path());
    let data = vec![7u8; 100_000];
    let src = dir.path().join("snap.zip");
    std::fs::write(&src, &data).unwrap();
    let (port, server) = serve(src, tls.clone(), LOOPBACK).await;
    let to = SocketAddr::new(LOOPBACK, port);
    let _stalled =
        [tokio::net::TcpStream::connect(to).await.unwrap(), tokio::net::TcpStream::connect(to).await.unwrap()];
    tokio::time::sleep(Duration::from_millis(100)).await;
    let t = std::time::Instant::now();
    let out = dir.path().join("copy.zip");
    let got = transfer::fetch(to, &out, &files(&tls), data.len() as u64).await;
    let took = t.elapsed();
    got.unwrap_or_else(|e| panic!("fetch failed after {took:?}: {e:?}"));
    assert!(took < Duration::from_secs(2), "the fetch waited {took:?} behind the stalled connections");
    assert_eq!(std::fs::read(&out).unwrap(), data);
    assert_eq!(server.await.unwrap().unwrap().bytes, data.len() as u64);
}

#[tokio::test]
async fn a_connection_from_an_address_not_listed_gets_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let tls = member_files(dir.path());
    let src = dir.path().join("snap.zip");
    std::fs::write(&src, b"secret bytes").unwrap();
    let (port, server) = serve(src, tls.clone(), "10.9.9.9".parse().unwrap()).await;
    let out = dir.path().join("copy.zip");
    let got = transfer::fetch(SocketAddr::new(LOOPBACK, port), &out, &files(&tls), 12).await;
    assert!(got.is_err(), "{got:?}");
    assert!(!out.exists());
    assert!(server.await.unwrap().is_err());
}

#[tokio::test]
async fn a_source_that_does_not_listen_is_unreachable_not_failed() {
    let dir = tempfile::tempdir().unwrap();
    let tls = member_files(dir.path());
    let port = {
        let l = std::net::TcpListener::bind((LOOPBACK, 0)).unwrap();
        l.local_addr().unwrap().port()
    };
    let got = transfer::fetch(SocketAddr::new(LOOPBACK, port), &dir.path().join("x"), &files(&tls), 1).await;
    assert!(matches!(got, Err(FetchError::Unreachable(_))), "{got:?}");
}
