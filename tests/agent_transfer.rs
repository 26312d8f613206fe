//! The agent's host-to-host copy on loopback: the file arrives whole and private, and only a
//! peer with a certificate of the cluster's CA, from the listed address, gets it.

use rkectl::agent::transfer::{self, FetchError, TlsFiles};
use rkectl::rke::pki::Pki;
use std::net::{IpAddr, SocketAddr};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

const CLUSTER: &str = "nodes:\n  - address: 10.0.0.1\n    user: u\n    role: [etcd]\n  - address: 10.0.0.2\n    user: u\n    role: [etcd]\n";

/// A member's certificate files of a new PKI, written into `dir`.
fn member_files(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let cluster = rkectl::config::parse(Path::new("cluster.yml"), CLUSTER.to_string()).unwrap().cluster;
    let pki = Pki::generate(&cluster).unwrap();
    let member = pki.etcd.values().next().unwrap();
    let (ca, cert, key) = (dir.join("ca.pem"), dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&ca, &pki.ca.cert).unwrap();
    std::fs::write(&cert, &member.cert).unwrap();
    std::fs::write(&key, member.key.expose()).unwrap();
    (ca, cert, key)
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
        let server = transfer::Server::bind(&file, LOOPBACK, &files).await?;
        let _ = tx.send(server.port());
        server.serve(peer, Duration::from_secs(5)).await
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
